/* A worker: one libevent loop that reads HTTP requests from the inherited listeners, parses them
 * into typed requests (lib/announce.c), hands them to storage, and bencodes storage's answer
 * back. It keeps no swarm state. Request path, top to bottom:
 *   worker_on_request -> worker_route -> worker_announce -> storage_announce
 *   -> worker_announce_done -> announce_write_reply -> worker_finish */
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
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "lib/announce.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "storage/storage.h"

#define WORKER_MAX_LISTENERS 8

struct worker {
    const struct config *cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound[WORKER_MAX_LISTENERS];
    int nbound;
    struct storage *st;
    struct announce_limits lim;
    struct announce_timing timing;
    struct metrics *metrics;
    struct metrics_slot *slot;         /* this worker's counters, or a private dummy */
    struct metrics_slot dummy_slot;
    struct storage_counters counted;   /* the slot's storage counts before this process */
    struct event *sig_term, *sig_int, *sig_usr1, *drain_timer;
    unsigned inflight;                 /* requests waiting for storage */
    int draining;
};

/* One request waiting for storage; freed when its reply is sent. */
struct worker_call {
    struct worker *w;
    struct evhttp_request *req;
    enum metrics_route route;
    struct timespec start;
    union {
        struct announce_req announce;
        struct scrape_req scrape;
    } u;
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
}

/* Sends the reply already in req's output buffer and does the bookkeeping common to all routes. */
static void worker_send(struct worker *w, struct evhttp_request *req, int code, const char *reason,
                        const char *content_type, enum metrics_route route, const struct timespec *start)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    if (w->draining)
        evhttp_add_header(headers, "Connection", "close");
    evhttp_send_reply(req, code, reason, NULL);
    metrics_count_request(w->slot, route, worker_elapsed_us(start));
}

static void worker_send_failure(struct worker *w, struct evhttp_request *req, enum announce_err err,
                                enum metrics_route route, const struct timespec *start)
{
    announce_write_failure(evhttp_request_get_output_buffer(req), err);
    if (err > 0 && err < ANNOUNCE_ERR_COUNT)
        w->slot->failures[err]++;
    worker_send(w, req, HTTP_OK, "OK", "text/plain", route, start);
}

static struct worker_call *worker_call_new(struct worker *w, struct evhttp_request *req,
                                           enum metrics_route route, const struct timespec *start)
{
    struct worker_call *call = malloc(sizeof(*call));
    if (!call)
        return NULL;
    call->w = w;
    call->req = req;
    call->route = route;
    call->start = *start;
    w->inflight++;
    w->slot->inflight = w->inflight;
    return call;
}

/* Frees call; the last one out of a draining worker ends the loop. */
static void worker_call_free(struct worker_call *call)
{
    struct worker *w = call->w;
    free(call);
    w->inflight--;
    w->slot->inflight = w->inflight;
    worker_copy_storage_counters(w);
    if (w->draining && w->inflight == 0)
        event_base_loopexit(w->base, NULL);
}

/* The client's address as storage records it. IPv4-mapped IPv6 addresses become IPv4, so one
 * host is one member whichever socket it came in on. */
static int worker_peer_addr(struct evhttp_request *req, struct peer_addr *peer)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
    memset(peer, 0, sizeof(*peer));
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        peer->family = AF_INET;
        memcpy(peer->addr, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            peer->family = AF_INET;
            memcpy(peer->addr, &sin6->sin6_addr.s6_addr[12], 4);
        } else {
            peer->family = AF_INET6;
            memcpy(peer->addr, &sin6->sin6_addr, 16);
        }
        return 0;
    }
    return -1;
}

static void worker_announce_done(const struct announce_reply *rep, int status, void *arg)
{
    struct worker_call *call = arg;
    struct worker *w = call->w;
    if (status != STORAGE_OK) {
        worker_send_failure(w, call->req, storage_status_err(status), call->route, &call->start);
    } else {
        announce_write_reply(evhttp_request_get_output_buffer(call->req), &call->u.announce, rep, &w->timing);
        worker_send(w, call->req, HTTP_OK, "OK", "text/plain", call->route, &call->start);
    }
    worker_call_free(call);
}

static void worker_announce(struct worker *w, struct evhttp_request *req, const char *query,
                            size_t query_len, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, req, METRICS_ROUTE_ANNOUNCE, start);
    if (!call) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_ANNOUNCE, start);
        return;
    }
    struct announce_req *areq = &call->u.announce;
    memset(areq, 0, sizeof(*areq));
    areq->now_s = worker_now_s(w);
    enum announce_err err = ANNOUNCE_ERR_STORAGE_INTERNAL;
    if (worker_peer_addr(req, &areq->peer) == 0)
        err = announce_parse(query, query_len, &w->lim, areq);
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
        scrape_write_reply(evhttp_request_get_output_buffer(call->req), &call->u.scrape, rep);
        worker_send(w, call->req, HTTP_OK, "OK", "text/plain", call->route, &call->start);
    }
    worker_call_free(call);
}

static void worker_scrape(struct worker *w, struct evhttp_request *req, const char *query,
                          size_t query_len, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, req, METRICS_ROUTE_SCRAPE, start);
    if (!call) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_SCRAPE, start);
        return;
    }
    struct scrape_req *sreq = &call->u.scrape;
    sreq->count = 0;
    sreq->now_s = worker_now_s(w);
    enum announce_err err = scrape_parse(query, query_len, &w->lim, sreq);
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
    struct evbuffer *out = evhttp_request_get_output_buffer(call->req);
    if (status == STORAGE_OK) {
        evbuffer_add_printf(out, "ok\n");
        worker_send(call->w, call->req, HTTP_OK, "OK", "text/plain", call->route, &call->start);
    } else {
        evbuffer_add_printf(out, "storage unavailable: %s\n", announce_reason(storage_status_err(status)));
        worker_send(call->w, call->req, 503, "Service Unavailable", "text/plain", call->route, &call->start);
    }
    worker_call_free(call);
}

static void worker_healthz(struct worker *w, struct evhttp_request *req, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, req, METRICS_ROUTE_HEALTHZ, start);
    if (!call) {
        worker_send(w, req, 503, "Service Unavailable", "text/plain", METRICS_ROUTE_HEALTHZ, start);
        return;
    }
    storage_health(w->st, worker_health_done, call);
}

static void worker_metrics(struct worker *w, struct evhttp_request *req, int json,
                           const struct timespec *start)
{
    worker_copy_storage_counters(w);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    if (json) {
        metrics_write_json(w->metrics, out);
        worker_send(w, req, HTTP_OK, "OK", "application/json", METRICS_ROUTE_STATS, start);
    } else {
        metrics_write_prometheus(w->metrics, out);
        worker_send(w, req, HTTP_OK, "OK", "text/plain; version=0.0.4", METRICS_ROUTE_METRICS, start);
    }
}

static int worker_path_is(const char *path, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len == n && memcmp(path, name, n) == 0;
}

/* Splits the request target into path and query and dispatches on the path. */
static void worker_on_request(struct evhttp_request *req, void *arg)
{
    struct worker *w = arg;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    const char *uri = evhttp_request_get_uri(req);
    const char *q = strchr(uri, '?');
    size_t path_len = q ? (size_t)(q - uri) : strlen(uri);
    const char *query = q ? q + 1 : "";
    size_t query_len = strlen(query);

    if (worker_path_is(uri, path_len, "/announce")) {
        worker_announce(w, req, query, query_len, &start);
    } else if (worker_path_is(uri, path_len, "/scrape")) {
        worker_scrape(w, req, query, query_len, &start);
    } else if (worker_path_is(uri, path_len, "/healthz")) {
        worker_healthz(w, req, &start);
    } else if (worker_path_is(uri, path_len, "/metrics") && w->metrics) {
        worker_metrics(w, req, 0, &start);
    } else if (worker_path_is(uri, path_len, "/stats") && w->metrics) {
        worker_metrics(w, req, 1, &start);
    } else {
        evbuffer_add_printf(evhttp_request_get_output_buffer(req), "not found\n");
        worker_send(w, req, HTTP_NOTFOUND, "Not Found", "text/plain", METRICS_ROUTE_NOT_FOUND, &start);
    }
}

static void worker_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    log_warn("drain timeout: %u requests still in flight, exiting", w->inflight);
    event_base_loopexit(w->base, NULL);
}

/* SIGTERM / SIGINT: stop accepting, answer what is in flight, then leave the loop. */
static void worker_on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (w->draining)
        return;
    w->draining = 1;
    log_info("signal %d: draining %u requests in flight", (int)sig, w->inflight);
    for (int i = 0; i < w->nbound; i++)
        evhttp_del_accept_socket(w->http, w->bound[i]); /* closes our copy of the listener */
    w->nbound = 0;
    if (w->inflight == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = { w->cfg->shutdown_timeout_s, 0 };
    w->drain_timer = evtimer_new(w->base, worker_on_drain_timeout, w);
    if (w->drain_timer)
        evtimer_add(w->drain_timer, &tv);
}

static void worker_on_usr1(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    if (log_reopen() < 0)
        log_error("cannot reopen log file: %s", strerror(errno));
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

static int worker_setup_http(struct worker *w, const int *fds, int nfds)
{
    w->http = evhttp_new(w->base);
    if (!w->http)
        return -1;
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET);
    evhttp_set_max_headers_size(w->http, w->cfg->http_max_header_bytes);
    evhttp_set_max_body_size(w->http, 0); /* GET only: any body is refused */
    evhttp_set_timeout(w->http, w->cfg->http_idle_timeout_s);
    evhttp_set_gencb(w->http, worker_on_request, w);
    for (int i = 0; i < nfds && i < WORKER_MAX_LISTENERS; i++) {
        /* A worker owns a dup of the listener, so that dropping it while draining leaves the
         * master's copy (and a new generation's) open. */
        int fd = dup(fds[i]);
        if (fd < 0)
            return -1;
        evutil_make_socket_nonblocking(fd);
        w->bound[w->nbound] = evhttp_accept_socket_with_handle(w->http, fd);
        if (!w->bound[w->nbound]) {
            close(fd);
            return -1;
        }
        w->nbound++;
    }
    return 0;
}

int worker_run(const struct config *cfg, const int *fds, int nfds, struct metrics *metrics, int slot)
{
    struct worker w;
    char err[512];
    int rc = 1;
    memset(&w, 0, sizeof(w));
    w.cfg = cfg;
    w.metrics = metrics;
    w.slot = metrics && slot >= 0 && slot < metrics->nslots ? &metrics->slot[slot] : &w.dummy_slot;
    worker_fill_limits(&w);
    w.counted.round_trips = w.slot->storage_round_trips;
    w.counted.commands = w.slot->storage_commands;
    w.counted.errors = w.slot->storage_errors;
    w.counted.timeouts = w.slot->storage_timeouts;
    w.counted.reconnects = w.slot->storage_reconnects;
    /* Workers are forked copies: without a reseed they would all sample the same "random" peers. */
    srandom((unsigned)getpid() ^ (unsigned)time(NULL));

    w.base = event_base_new();
    if (!w.base) {
        log_error("cannot create event base");
        return 1;
    }
    w.st = storage_new(cfg, w.base, err, sizeof(err));
    if (!w.st) {
        log_error("storage: %s", err);
        goto out_base;
    }
    if (worker_setup_http(&w, fds, nfds) < 0) {
        log_error("cannot serve HTTP on the inherited listeners: %s", strerror(errno));
        goto out_http;
    }
    w.sig_term = evsignal_new(w.base, SIGTERM, worker_on_stop_signal, &w);
    w.sig_int = evsignal_new(w.base, SIGINT, worker_on_stop_signal, &w);
    w.sig_usr1 = evsignal_new(w.base, SIGUSR1, worker_on_usr1, &w);
    if (!w.sig_term || !w.sig_int || !w.sig_usr1 || evsignal_add(w.sig_term, NULL) < 0 ||
        evsignal_add(w.sig_int, NULL) < 0 || evsignal_add(w.sig_usr1, NULL) < 0) {
        log_error("cannot install signal handlers");
        goto out_http;
    }
    signal(SIGPIPE, SIG_IGN);
    log_info("worker serving (%s storage)", cfg->storage == CONFIG_STORAGE_REDIS ? "redis" : "memory");

    event_base_dispatch(w.base);
    rc = 0;

out_http:
    /* Storage first: freeing it answers pending requests while their connections still exist. */
    storage_free(w.st);
    if (w.http)
        evhttp_free(w.http);
    if (w.sig_term)
        event_free(w.sig_term);
    if (w.sig_int)
        event_free(w.sig_int);
    if (w.sig_usr1)
        event_free(w.sig_usr1);
    if (w.drain_timer)
        event_free(w.drain_timer);
out_base:
    event_base_free(w.base);
    if (rc == 0)
        log_info("worker stopped");
    return rc;
}
