/* A worker: one libevent loop that reads HTTP requests from the inherited listeners, parses them
 * into typed requests (lib/announce.c), hands them to storage, and bencodes storage's answer
 * back. It keeps no swarm state. Request path, top to bottom:
 *   worker_on_request (lib/http.c parsed it) -> worker_announce -> worker_client_addr
 *   -> ratelimit_allow -> announce_parse -> peercap_admit -> storage_announce
 *   -> worker_announce_done -> announce_write_reply -> worker_send -> http_reply
 * Operator routes (/metrics, /stats) are served only on the admin listener. The map of the
 * whole path: docs/architecture.md. */
#include "lib/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/accesslog.h"
#include "lib/announce.h"
#include "lib/clientip.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/peercap.h"
#include "lib/ratelimit.h"
#include "storage/storage.h"

struct worker {
    const struct config *cfg;
    struct event_base *base;
    struct http_server *http;
    struct http_server *admin;         /* admin.listen: /metrics, /stats, /healthz; NULL when off */
    struct clientip_trust trust;
    struct accesslog *access;          /* NULL when log.access is "" */
    struct storage *st;
    struct announce_limits lim;
    struct announce_timing timing;
    struct metrics *metrics;
    struct ratelimit *rl;              /* the host's counters (rate_limit.announces 0: off), or NULL */
    struct peercap *pc;                /* the host's ports per (address, swarm), or NULL */
    struct metrics_slot *slot;         /* this worker's counters, or a private dummy */
    struct metrics_slot dummy_slot;
    struct storage_counters counted;   /* the slot's storage counts before this process */
    uint64_t counted_slow_closes;      /* ... and its slow-reader closes and dropped log lines */
    uint64_t counted_log_dropped;
    struct event *sig_term, *sig_usr1, *drain_timer;
    struct event *gauge_timer;         /* refreshes this worker's gauges in its metrics slot */
    struct event *ready_timer;         /* re-probes storage until this worker is ready */
    struct timespec ready_start;
    const int *fds;                    /* the tracker listeners, accepted on once ready */
    int nfds;
    unsigned inflight;                 /* requests waiting for storage */
    int failed;                        /* could not start serving: exit 1 */
    int draining;
    struct timespec drain_start;
};

/* One request waiting for storage; freed when its reply is sent. */
struct worker_call {
    struct worker *w;
    struct http_request *req;
    enum metrics_route route;
    struct timespec start;
    struct announce_req announce;
    struct scrape_req *scrape;         /* separate: 256 hashes would bloat every announce */
};

static int64_t worker_now_s(struct worker *w)
{
    struct timeval tv;
    /* The loop's cached time: one clock read per iteration, not per request. */
    event_base_gettimeofday_cached(w->base, &tv);
    return (int64_t)tv.tv_sec;
}

static uint64_t worker_elapsed_us(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - start->tv_sec) * 1000000 + (now.tv_nsec - start->tv_nsec) / 1000;
    return us < 0 ? 0 : (uint64_t)us;
}

static void worker_copy_storage_counters(struct worker *w)
{
    /* A respawned worker continues its slot's counts: Prometheus counters never go backwards. */
    const struct storage_counters *c = &w->st->counters;
    w->slot->storage_round_trips = w->counted.round_trips + c->round_trips;
    w->slot->storage_commands = w->counted.commands + c->commands;
    w->slot->storage_errors = w->counted.errors + c->errors;
    w->slot->storage_timeouts = w->counted.timeouts + c->timeouts;
    w->slot->storage_reconnects = w->counted.reconnects + c->reconnects;
    w->slot->storage_backlog = w->st->backlog;  /* a gauge: as of this worker's last request */
}

/* The HTTP servers' and the access log's numbers, read on the gauge timer (they change inside
 * lib/http.c and lib/accesslog.c without a callback); counters continue the slot's, as above. */
static void worker_copy_http_counters(struct worker *w)
{
    size_t held = http_server_output_bytes(w->http);
    uint64_t slow = http_server_slow_closes(w->http);
    if (w->admin) {
        held += http_server_output_bytes(w->admin);
        slow += http_server_slow_closes(w->admin);
    }
    w->slot->http_output_bytes = (int64_t)held;
    w->slot->http_slow_closes = w->counted_slow_closes + slow;
    w->slot->access_log_dropped = w->counted_log_dropped + (w->access ? accesslog_dropped(w->access) : 0);
}

static bool worker_same_addr(const struct sockaddr *sa, const struct peer_addr *a)
{
    struct peer_addr b;
    return sa && clientip_from_sockaddr(sa, &b) == 0 && b.family == a->family &&
           memcmp(b.addr, a->addr, a->family == AF_INET ? 4 : 16) == 0;
}

/* The client the access log names: as resolved through trusted proxies (PROXY header,
 * X-Forwarded-For, X-Real-IP), not the proxy. With its port when it is the socket peer or the
 * PROXY source; a forwarded address has none (port 0). */
static const struct sockaddr *worker_log_client(struct worker *w, struct http_request *req,
                                                struct sockaddr_storage *ss)
{
    const struct sockaddr *peer = http_request_peer(req), *src = http_request_proxied(req);
    size_t xff_len = 0, xri_len = 0;
    const char *xff = NULL, *xri = NULL;
    struct peer_addr a;
    if (w->trust.count == 0 || !clientip_is_trusted(&w->trust, peer))
        return peer;
    xff = http_request_header(req, "X-Forwarded-For", &xff_len);
    xri = http_request_header(req, "X-Real-IP", &xri_len);
    /* A malformed header (1) still leaves the last trusted hop in a: log that. */
    if (clientip_resolve(&w->trust, peer, src, xff, xff_len, xri, xri_len, &a) < 0 ||
        worker_same_addr(peer, &a))
        return peer;
    if (worker_same_addr(src, &a))
        return src;
    memset(ss, 0, sizeof(*ss));
    if (a.family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, a.addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, a.addr, 16);
    }
    return (const struct sockaddr *)ss;
}

/* Sends the reply already in req's body buffer and does the bookkeeping common to all routes. */
static void worker_send(struct worker *w, struct http_request *req, int code, const char *content_type,
                        enum metrics_route route, const struct timespec *start)
{
    uint64_t latency_us = worker_elapsed_us(start);
    if (w->access) {
        struct sockaddr_storage ss;
        size_t path_len, query_len;
        const char *path = http_request_path(req, &path_len);
        http_request_query(req, &query_len);
        /* path and query are contiguous in the request line: log the whole target */
        size_t target_len = query_len ? path_len + 1 + query_len : path_len;
        accesslog_write(w->access, worker_now_s(w), worker_log_client(w, req, &ss), code,
                        evbuffer_get_length(http_reply_body(req)), latency_us, path, target_len);
    }
    http_reply(req, code, content_type);
    metrics_count_request(w->slot, route, latency_us);
}

static void worker_send_failure(struct worker *w, struct http_request *req, enum announce_err err,
                                enum metrics_route route, const struct timespec *start)
{
    announce_write_failure(http_reply_body(req), err);
    if (err > 0 && err < ANNOUNCE_ERR_COUNT)
        w->slot->failures[err]++;
    worker_send(w, req, 200, "text/plain", route, start);
}

/* NULL when the worker already has http.max_pending requests waiting (load shedding: a fast
 * failure beats a queue that grows while Redis falls behind) or memory is short. Waiting
 * includes storage's backlog: requests answered "timed out" whose commands are still queued at
 * Redis. Without it every timeout freed a slot while the queue kept growing. */
static struct worker_call *worker_call_new(struct worker *w, struct http_request *req,
                                           enum metrics_route route, const struct timespec *start)
{
    if (w->inflight + w->st->backlog >= (unsigned)w->cfg->http_max_pending)
        return NULL;
    struct worker_call *call = malloc(sizeof(*call));
    if (!call)
        return NULL;
    call->w = w;
    call->req = req;
    call->route = route;
    call->start = *start;
    call->scrape = NULL;
    w->inflight++;
    w->slot->inflight = w->inflight;
    return call;
}

static void worker_call_free(struct worker_call *call)
{
    struct worker *w = call->w;
    free(call->scrape);
    free(call);
    w->inflight--;
    w->slot->inflight = w->inflight;
    worker_copy_storage_counters(w);
}

/* The client's address as storage records it: the socket peer, or what a trusted proxy says
 * (PROXY header, X-Forwarded-For, X-Real-IP). A malformed header from a trusted proxy refuses
 * the request: falling back to the last trusted hop would store every client behind that
 * proxy under the proxy's own address. */
static enum announce_err worker_client_addr(struct worker *w, struct http_request *req, struct peer_addr *peer)
{
    const struct sockaddr *sa = http_request_peer(req);
    size_t xff_len = 0, xri_len = 0;
    const char *xff = NULL, *xri = NULL;
    if (w->trust.count > 0 && clientip_is_trusted(&w->trust, sa)) {
        xff = http_request_header(req, "X-Forwarded-For", &xff_len);
        xri = http_request_header(req, "X-Real-IP", &xri_len);
    }
    memset(peer, 0, sizeof(*peer));
    int rc = clientip_resolve(&w->trust, sa, http_request_proxied(req), xff, xff_len, xri, xri_len, peer);
    return rc < 0 ? ANNOUNCE_ERR_CLIENT_ADDRESS : rc > 0 ? ANNOUNCE_ERR_FORWARDED_INVALID : ANNOUNCE_OK;
}

static void worker_announce_done(const struct announce_reply *rep, int status, void *arg)
{
    struct worker_call *call = arg;
    struct worker *w = call->w;
    if (status != STORAGE_OK) {
        worker_send_failure(w, call->req, storage_status_err(status), call->route, &call->start);
    } else {
        announce_write_reply(http_reply_body(call->req), &call->announce, rep, &w->timing);
        worker_send(w, call->req, 200, "text/plain", call->route, &call->start);
    }
    worker_call_free(call);
}

static void worker_announce(struct worker *w, struct http_request *req, const char *query,
                            size_t query_len, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, req, METRICS_ROUTE_ANNOUNCE, start);
    if (!call) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_ANNOUNCE, start);
        return;
    }
    struct announce_req *areq = &call->announce;
    memset(areq, 0, sizeof(*areq));
    areq->now_s = worker_now_s(w);
    enum announce_err err = worker_client_addr(w, req, &areq->peer);
    if (err == ANNOUNCE_OK) {
        /* Counted by the connection's client address, before ip= may replace it, and before
         * parsing: a flood costs a table lookup, not storage. */
        if (w->rl && !ratelimit_allow(w->rl, &areq->peer, areq->now_s, (unsigned)w->cfg->rate_limit_announces,
                                      (unsigned)w->cfg->rate_limit_window_s, 1))
            err = ANNOUNCE_ERR_RATE_LIMITED;
        else
            err = announce_parse(query, query_len, &w->lim, areq);
    }
    /* The cap counts the address storage records (after ip=), so that Redis never holds more
     * than cap members of one address in one swarm from this host. */
    if (err == ANNOUNCE_OK && w->pc &&
        !peercap_admit(w->pc, &areq->peer, areq->info_hash, areq->peer.port, areq->event == ANNOUNCE_EVENT_STOPPED,
                       areq->now_s, (unsigned)w->cfg->peer_ttl_s, (unsigned)w->cfg->swarm_max_peers_per_address))
        err = ANNOUNCE_ERR_PEER_CAP;
    if (err != ANNOUNCE_OK) {
        worker_send_failure(w, req, err, METRICS_ROUTE_ANNOUNCE, start);
        worker_call_free(call);
        return;
    }
    storage_announce(w->st, areq, worker_announce_done, call);
}

static void worker_scrape_done(const struct scrape_reply *rep, int status, void *arg)
{
    struct worker_call *call = arg;
    struct worker *w = call->w;
    if (status != STORAGE_OK) {
        worker_send_failure(w, call->req, storage_status_err(status), call->route, &call->start);
    } else {
        scrape_write_reply(http_reply_body(call->req), call->scrape, rep);
        worker_send(w, call->req, 200, "text/plain", call->route, &call->start);
    }
    worker_call_free(call);
}

static void worker_scrape(struct worker *w, struct http_request *req, const char *query,
                          size_t query_len, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, req, METRICS_ROUTE_SCRAPE, start);
    if (!call) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_SCRAPE, start);
        return;
    }
    struct scrape_req *sreq = call->scrape = malloc(sizeof(*sreq));
    if (!sreq) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_SCRAPE, start);
        worker_call_free(call);
        return;
    }
    sreq->count = 0;
    sreq->now_s = worker_now_s(w);
    struct peer_addr client;
    enum announce_err err = worker_client_addr(w, req, &client);
    if (err == ANNOUNCE_OK) {
        /* Parsed first (pure, no storage) for its weight: one unit of the announce rate limit
         * per info_hash, as each costs storage about what a small announce does; a malformed
         * scrape weighs 1, as a malformed announce does. */
        enum announce_err perr = scrape_parse(query, query_len, &w->lim, sreq);
        unsigned cost = perr == ANNOUNCE_OK ? sreq->count : 1;
        if (w->rl && !ratelimit_allow(w->rl, &client, sreq->now_s, (unsigned)w->cfg->rate_limit_announces,
                                      (unsigned)w->cfg->rate_limit_window_s, cost))
            err = ANNOUNCE_ERR_RATE_LIMITED;
        else
            err = perr;
    }
    if (err != ANNOUNCE_OK) {
        worker_send_failure(w, req, err, METRICS_ROUTE_SCRAPE, start);
        worker_call_free(call);
        return;
    }
    storage_scrape(w->st, sreq, worker_scrape_done, call);
}

static void worker_health_done(int status, void *arg)
{
    struct worker_call *call = arg;
    struct evbuffer *out = http_reply_body(call->req);
    if (status == STORAGE_OK) {
        evbuffer_add_printf(out, "ok\n");
        worker_send(call->w, call->req, 200, "text/plain", call->route, &call->start);
    } else {
        evbuffer_add_printf(out, "storage unavailable: %s\n", announce_reason(storage_status_err(status)));
        worker_send(call->w, call->req, 503, "text/plain", call->route, &call->start);
    }
    worker_call_free(call);
}

static void worker_healthz(struct worker *w, struct http_request *req, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, req, METRICS_ROUTE_HEALTHZ, start);
    if (!call) {
        worker_send(w, req, 503, "text/plain", METRICS_ROUTE_HEALTHZ, start);
        return;
    }
    storage_health(w->st, worker_health_done, call);
}

static void worker_metrics(struct worker *w, struct http_request *req, int json,
                           const struct timespec *start)
{
    worker_copy_storage_counters(w);
    worker_copy_http_counters(w);
    w->slot->open_connections = http_server_connections(w->http);
    struct evbuffer *out = http_reply_body(req);
    if (json) {
        metrics_write_json(w->metrics, out);
        worker_send(w, req, 200, "application/json", METRICS_ROUTE_STATS, start);
    } else {
        metrics_write_prometheus(w->metrics, out);
        worker_send(w, req, 200, "text/plain; version=0.0.4", METRICS_ROUTE_METRICS, start);
    }
}

static int worker_path_is(const char *path, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len == n && memcmp(path, name, n) == 0;
}

/* Dispatches on the path. */
static void worker_on_request(struct http_request *req, void *arg)
{
    struct worker *w = arg;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    size_t path_len, query_len;
    const char *path = http_request_path(req, &path_len);
    const char *query = http_request_query(req, &query_len);

    if (worker_path_is(path, path_len, "/announce")) {
        worker_announce(w, req, query, query_len, &start);
    } else if (worker_path_is(path, path_len, "/scrape")) {
        worker_scrape(w, req, query, query_len, &start);
    } else if (worker_path_is(path, path_len, "/healthz")) {
        worker_healthz(w, req, &start);
    } else {
        /* /metrics and /stats live on the admin listener only: the tracker port faces the
         * Internet, and its numbers (failure reasons, workers) are the operator's. */
        evbuffer_add_printf(http_reply_body(req), "not found\n");
        worker_send(w, req, 404, "text/plain", METRICS_ROUTE_NOT_FOUND, &start);
    }
}

/* The admin listener's routes: /metrics, /stats, and /healthz (also on the tracker port, for
 * load balancers). */
static void worker_on_admin_request(struct http_request *req, void *arg)
{
    struct worker *w = arg;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    size_t path_len;
    const char *path = http_request_path(req, &path_len);
    if (worker_path_is(path, path_len, "/metrics") && w->metrics) {
        worker_metrics(w, req, 0, &start);
    } else if (worker_path_is(path, path_len, "/stats") && w->metrics) {
        worker_metrics(w, req, 1, &start);
    } else if (worker_path_is(path, path_len, "/healthz")) {
        worker_healthz(w, req, &start);
    } else {
        evbuffer_add_printf(http_reply_body(req), "not found\n");
        worker_send(w, req, 404, "text/plain", METRICS_ROUTE_NOT_FOUND, &start);
    }
}

#define WORKER_GAUGE_MS 100
#define WORKER_READY_PROBE_MS 50
#define WORKER_READY_MAX_MS 3000

static void worker_on_ready_probe(int status, void *arg);

/* Ready once storage answers: only then does the worker accept on the tracker listeners (a worker
 * still connecting to Redis would answer "storage unavailable" to whatever it takes from a
 * queue it shares with a working one), and set slot->ready, which lets the master drain the
 * previous generation. With storage down for good it starts after WORKER_READY_MAX_MS anyway:
 * the old generation is no better off, and a reload must not wait for Redis. */
static void worker_on_ready_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    /* Calls back (never before it returns) unless it cannot start a probe at all (memory
     * short): then try again later rather than wait for a callback that will not come. */
    if (storage_health(w->st, worker_on_ready_probe, w) < 0)
        worker_on_ready_probe(STORAGE_ERR_UNAVAILABLE, w);
}

static void worker_on_ready_probe(int status, void *arg)
{
    struct worker *w = arg;
    if (w->slot->ready || w->draining)
        return;
    if (status == STORAGE_OK || worker_elapsed_us(&w->ready_start) / 1000 >= WORKER_READY_MAX_MS) {
        if (status != STORAGE_OK)
            log_warn("storage does not answer yet: serving anyway");
        for (int i = 0; i < w->nfds; i++) {
            if (http_server_listen(w->http, w->fds[i]) < 0) {
                log_error("cannot serve HTTP on the inherited listeners: %s", strerror(errno));
                w->failed = 1;
                event_base_loopexit(w->base, NULL);
                return;
            }
        }
        w->slot->ready = 1;
        return;
    }
    struct timeval tv = { 0, WORKER_READY_PROBE_MS * 1000 };
    if (evtimer_add(w->ready_timer, &tv) < 0) {
        log_error("cannot re-arm the readiness probe");
        w->failed = 1;
        event_base_loopexit(w->base, NULL);
    }
}

/* Every worker keeps its own gauges current (not only the one that happens to serve /metrics):
 * connections open and close inside lib/http.c without a callback, so a short timer reads them. */
static void worker_on_gauge_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    w->slot->open_connections = http_server_connections(w->http);
    w->slot->inflight = w->inflight;
    w->slot->storage_backlog = w->st->backlog;  /* falls to 0 on a reconnect, with no request */
    worker_copy_http_counters(w);
}

static bool worker_is_trusted(const struct sockaddr *peer, void *arg)
{
    struct worker *w = arg;
    return clientip_is_trusted(&w->trust, peer);
}

#define WORKER_DRAIN_POLL_MS 20

/* While draining: leave the loop once every reply has been written and every connection closed
 * (a reply still in a socket buffer is not yet an answered request), or at the deadline. */
static void worker_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    int64_t waited_ms = (int64_t)worker_elapsed_us(&w->drain_start) / 1000;
    if (w->inflight == 0 && http_server_connections(w->http) == 0 &&
        (!w->admin || http_server_connections(w->admin) == 0)) {
        event_base_loopexit(w->base, NULL);
    } else if (waited_ms >= (int64_t)w->cfg->shutdown_timeout_s * 1000) {
        log_warn("drain timeout: %u requests in flight, %u connections open; exiting", w->inflight,
                 http_server_connections(w->http));
        event_base_loopexit(w->base, NULL);
    }
}

/* SIGTERM (from the master): stop accepting, answer what is in flight, then leave the loop. */
static void worker_on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (w->draining)
        return;
    w->draining = 1;
    clock_gettime(CLOCK_MONOTONIC, &w->drain_start);
    log_info("signal %d: draining %u requests in flight on %u connections", (int)sig, w->inflight,
             http_server_connections(w->http));
    http_server_stop_accepting(w->http);
    if (w->admin)
        http_server_stop_accepting(w->admin);
    struct timeval tv = { 0, WORKER_DRAIN_POLL_MS * 1000 };
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, worker_on_drain_tick, w);
    if (!w->drain_timer || evtimer_add(w->drain_timer, &tv) < 0)
        event_base_loopexit(w->base, NULL);
    else
        worker_on_drain_tick(-1, 0, w);
}

static void worker_on_usr1(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct worker *w = arg;
    if (log_reopen() < 0)
        log_error("cannot reopen log file: %s", strerror(errno));
    if (w->access && accesslog_reopen(w->access) < 0)
        log_error("cannot reopen access log: %s", strerror(errno));
}

static void worker_fill_limits(struct worker *w)
{
    const struct config *cfg = w->cfg;
    w->lim.numwant_default = (unsigned)cfg->numwant_default;
    w->lim.numwant_max = (unsigned)cfg->numwant_max;
    w->lim.scrape_max_hashes = (unsigned)cfg->scrape_max_hashes;
    w->lim.allow_ip_param = cfg->allow_ip_param;
    w->timing.interval_s = (unsigned)cfg->interval_s;
    w->timing.min_interval_s = (unsigned)cfg->min_interval_s;
}

static int worker_setup_http(struct worker *w, const int *fds, int nfds, int admin_fd)
{
    const struct config *cfg = w->cfg;
    struct http_limits lim = {
        .max_head_bytes = (size_t)cfg->http_max_header_bytes,
        .max_headers = 64,
        .head_timeout_ms = (unsigned)cfg->http_head_timeout_ms,
        .idle_timeout_ms = (unsigned)cfg->http_idle_timeout_s * 1000u,
        .max_connections = (unsigned)cfg->http_max_connections,
        .max_requests_per_conn = (unsigned)cfg->http_max_requests_per_conn,
        .proxy_protocol = cfg->proxy_protocol,
        .max_output_bytes = (size_t)cfg->http_max_output_bytes,
        .write_timeout_ms = (unsigned)cfg->http_write_timeout_ms,
    };
    w->http = http_server_new(w->base, &lim, worker_on_request, w, worker_is_trusted, w);
    if (!w->http)
        return -1;
    /* The tracker listeners are accepted on once storage answers (worker_on_ready_probe). */
    w->fds = fds;
    w->nfds = nfds;
    if (admin_fd >= 0) {
        /* The same limits; no PROXY header: scrapers connect directly. */
        lim.proxy_protocol = false;
        w->admin = http_server_new(w->base, &lim, worker_on_admin_request, w, NULL, NULL);
        if (!w->admin || http_server_listen(w->admin, admin_fd) < 0)
            return -1;
    }
    return 0;
}

int worker_run(const struct config *cfg, const int *fds, int nfds, struct metrics *metrics, int slot,
               struct ratelimit *rl, struct peercap *pc, int admin_fd)
{
    struct worker w;
    char err[512];
    int rc = 1;
    memset(&w, 0, sizeof(w));
    w.cfg = cfg;
    w.metrics = metrics;
    w.rl = rl;
    w.pc = pc;
    w.slot = metrics && slot >= 0 && slot < metrics->nslots ? &metrics->slot[slot] : &w.dummy_slot;
    worker_fill_limits(&w);
    w.counted.round_trips = w.slot->storage_round_trips;
    w.counted.commands = w.slot->storage_commands;
    w.counted.errors = w.slot->storage_errors;
    w.counted.timeouts = w.slot->storage_timeouts;
    w.counted.reconnects = w.slot->storage_reconnects;
    w.counted_slow_closes = w.slot->http_slow_closes;
    w.counted_log_dropped = w.slot->access_log_dropped;
    /* Workers are forked copies: without a reseed they would all sample the same "random" peers. */
    srandom((unsigned)getpid() ^ (unsigned)time(NULL));

    w.base = event_base_new();
    if (!w.base) {
        log_error("cannot create event base");
        return 1;
    }
    if (clientip_trust_init(&w.trust, cfg, err, sizeof(err)) < 0) {
        log_error("proxy.trusted: %s", err);
        goto out_base;
    }
    if (cfg->access_log[0]) {
        w.access = accesslog_open(w.base, cfg->access_log, err, sizeof(err));
        if (!w.access) {
            log_error("%s", err);
            goto out_base;
        }
    }
    w.st = storage_new(cfg, w.base, err, sizeof(err));
    if (!w.st) {
        log_error("storage: %s", err);
        goto out_base;
    }
    if (worker_setup_http(&w, fds, nfds, admin_fd) < 0) {
        log_error("cannot serve HTTP on the inherited listeners: %s", strerror(errno));
        goto out_http;
    }
    w.sig_term = evsignal_new(w.base, SIGTERM, worker_on_stop_signal, &w);
    w.sig_usr1 = evsignal_new(w.base, SIGUSR1, worker_on_usr1, &w);
    if (!w.sig_term || !w.sig_usr1 || evsignal_add(w.sig_term, NULL) < 0 || evsignal_add(w.sig_usr1, NULL) < 0) {
        log_error("cannot install signal handlers");
        goto out_http;
    }
    /* The master forks workers with SIGTERM and SIGUSR1 blocked (their default action kills);
     * now that libevent handles them, let them in, pending ones included. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct timeval gauge_tv = { 0, WORKER_GAUGE_MS * 1000 };
    w.gauge_timer = event_new(w.base, -1, EV_PERSIST, worker_on_gauge_tick, &w);
    if (!w.gauge_timer || evtimer_add(w.gauge_timer, &gauge_tv) < 0) {
        log_error("cannot start the gauge timer");
        goto out_http;
    }
    clock_gettime(CLOCK_MONOTONIC, &w.ready_start);
    w.ready_timer = evtimer_new(w.base, worker_on_ready_tick, &w);
    if (!w.ready_timer) {
        log_error("cannot start the readiness probe");
        goto out_http;
    }
    worker_on_ready_tick(-1, 0, &w);
    log_info("worker serving (%s storage)", cfg->storage == CONFIG_STORAGE_REDIS ? "redis" : "memory");

    event_base_dispatch(w.base);
    worker_copy_http_counters(&w);   /* what the last gauge tick missed */
    rc = w.failed;

out_http:
    /* Freeing the signal events below restores the default actions, which kill: a SIGUSR1 (a
     * logrotate storm) or a second SIGTERM from here on must wait, blocked, until _exit. */
    {
        sigset_t late;
        sigemptyset(&late);
        sigaddset(&late, SIGTERM);
        sigaddset(&late, SIGUSR1);
        sigprocmask(SIG_BLOCK, &late, NULL);
    }
    /* Storage first: freeing it answers pending requests while their connections still exist. */
    storage_free(w.st);
    if (w.http)
        http_server_free(w.http);
    if (w.admin)
        http_server_free(w.admin);
    if (w.gauge_timer)
        event_free(w.gauge_timer);
    if (w.ready_timer)
        event_free(w.ready_timer);
    if (w.sig_term)
        event_free(w.sig_term);
    if (w.sig_usr1)
        event_free(w.sig_usr1);
    if (w.drain_timer)
        event_free(w.drain_timer);
out_base:
    accesslog_free(w.access);
    event_base_free(w.base);
    if (rc == 0)
        log_info("worker stopped");
    return rc;
}
