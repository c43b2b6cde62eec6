/* A worker: one libevent loop that reads HTTP requests and UDP (BEP 15) datagrams from the
 * inherited sockets, decodes them into typed requests, hands them to storage, and encodes
 * storage's answer back. It keeps no swarm state. One request path, two fronts:
 *   HTTP: worker_on_request (lib/http.c parsed it) -> worker_announce -> worker_client_addr
 *         -> announce_decode_query
 *   UDP:  worker_on_udp (recvmmsg) -> worker_udp_datagram -> udp_connid_check
 *         -> udp_decode_announce
 *   both: worker_announce_submit -> ratelimit_allow -> announce_validate -> peercap_admit
 *         -> storage_announce -> worker_announce_done -> the front's announce_done / fail
 *   HTTP: announce_write_reply -> worker_send -> http_reply
 *   UDP:  udp_write_announce -> worker_udp_queue -> sendmmsg (worker_udp_flush)
 * Operator routes (/metrics, /stats) are served only on the admin listener. The map of the
 * whole path: docs/architecture.md. */
#include "lib/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <sodium.h>

#include "lib/admin_api.h"
#include "lib/accesslog.h"
#include "lib/announce.h"
#include "lib/clientfilter.h"
#include "lib/clientip.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/peercap.h"
#include "lib/private.h"
#include "lib/ratelimit.h"
#include "lib/stats.h"
#include "lib/udp.h"
#include "lib/udp_connid.h"
#include "storage/redis_sentinel.h"
#include "storage/storage.h"

#define WORKER_MAX_UDP 4               /* UDP sockets a worker reads (its lanes' addresses) */
#ifndef WORKER_UDP_BATCH                /* -DWORKER_UDP_BATCH=1 builds the one-datagram baseline */
#define WORKER_UDP_BATCH 32            /* datagrams per recvmmsg / sendmmsg */
#endif
#define WORKER_UDP_RECV_CAP 2048       /* the largest request is 16 + 74 x 20 bytes, or 98 + options */
#define WORKER_UDP_REPLY_CAP 8192      /* an announce reply carries the peers that fit */
#define WORKER_UDP_BATCHES_PER_WAKE 8  /* then back to the loop: HTTP and storage get their turn */

/* One reply waiting for the next sendmmsg. */
struct worker_udp_msg {
    int fd;
    socklen_t salen;
    struct sockaddr_storage sa;
    size_t len;
    uint8_t buf[WORKER_UDP_REPLY_CAP];
};

/* The UDP front's part of a worker. */
struct worker_udp {
    int fds[WORKER_MAX_UDP];
    struct event *ev[WORKER_MAX_UDP];
    int nfds;
    struct udp_connid_keys keys;
    struct event *flush_ev;            /* sends what storage callbacks queued, once per loop turn */
    struct worker_udp_msg *out;        /* WORKER_UDP_BATCH */
    unsigned nout;
    uint8_t (*in)[WORKER_UDP_RECV_CAP]; /* WORKER_UDP_BATCH */
};

struct worker {
    const struct config *cfg;
    struct event_base *base;
    struct http_server *http;
    struct http_server *admin;         /* admin.listen: /metrics, /stats, /healthz; NULL when off */
    struct admin_api *api;             /* the admin listener's /api/ (lib/admin_api.c) */
    struct clientip_trust trust;
    struct accesslog *access;          /* NULL when log.access is "" */
    struct storage *st;
    struct stats *stats;               /* swarm statistics, the aggregator (lib/stats.c); NULL off */
    struct announce_limits lim;
    struct announce_timing timing;
    struct metrics *metrics;
    struct ratelimit *rl;              /* the host's counters (rate_limit.announces 0: off), or NULL */
    struct peercap *pc;                /* the host's ports per (address, swarm), or NULL */
    struct private_ctx *priv;          /* private.enabled (lib/private.c), else NULL */
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
    struct worker_udp udp;             /* the UDP sockets, read once ready */
    unsigned inflight;                 /* requests waiting for storage */
    int failed;                        /* could not start serving: exit 1 */
    int draining;
    struct timespec drain_start;
};

struct worker_call;

/* How a front answers: the shared path calls exactly one of these, once, then frees the call. */
struct worker_front {
    void (*announce_done)(struct worker_call *call, const struct announce_reply *rep);
    void (*scrape_done)(struct worker_call *call, const struct scrape_reply *rep);
    void (*fail)(struct worker_call *call, enum announce_err err);
};

/* The UDP front's reply address and what its reply needs. */
struct worker_udp_peer {
    int fd;
    socklen_t salen;
    struct sockaddr_storage sa;
    uint32_t transaction_id;
    unsigned nhashes;                  /* scrape: hashes asked, in request order ... */
    uint8_t hash_index[UDP_SCRAPE_MAX_HASHES]; /* ... each one's index in scrape->info_hash */
};

/* One request waiting for storage; freed when its reply is sent. */
struct worker_call {
    struct worker *w;
    const struct worker_front *front;
    enum metrics_route route;
    struct timespec start;
    struct announce_req announce;
    struct scrape_req *scrape;         /* separate: 256 hashes would bloat every announce */
    struct http_request *req;          /* HTTP front */
    struct worker_udp_peer udp;        /* UDP front */
    /* Private mode: the URL's passkey (has_passkey false: a public URL; "" malformed). */
    bool has_passkey;
    char passkey[PRIVATE_PASSKEY_LEN + 1];
    char reason[CLIENTFILTER_REASON_MAX]; /* a failure reason composed at run time, or "" */
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
    w->slot->storage_redirects = w->counted.redirects + c->redirects;
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
static struct worker_call *worker_call_new(struct worker *w, const struct worker_front *front,
                                           enum metrics_route route, const struct timespec *start)
{
    if (w->inflight + w->st->backlog >= (unsigned)w->cfg->http_max_pending)
        return NULL;
    struct worker_call *call = malloc(sizeof(*call));
    if (!call)
        return NULL;
    call->w = w;
    call->front = front;
    call->req = NULL;
    call->route = route;
    call->start = *start;
    call->scrape = NULL;
    call->has_passkey = false;
    call->passkey[0] = '\0';
    call->reason[0] = '\0';
    w->inflight++;
    w->slot->inflight = w->inflight;
    return call;
}

static void worker_call_free(struct worker_call *call)
{
    struct worker *w = call->w;
    free(call->scrape);
    sodium_memzero(call->passkey, sizeof(call->passkey));  /* a secret: not left in freed memory */
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

/* ---- the shared request path ---- */

static void worker_announce_done(const struct announce_reply *rep, int status, void *arg)
{
    struct worker_call *call = arg;
    if (status != STORAGE_OK)
        call->front->fail(call, storage_status_err(status));
    else
        call->front->announce_done(call, rep);
    worker_call_free(call);
}

static void worker_announce_admitted(enum announce_err err, void *arg);

/* Every front's announce after decoding: the rate limit (by the client's address, before ip=
 * may replace it; a flood costs a table lookup, not storage), then the front's decoding result,
 * then the shared validation, the peer cap, storage. client: the address storage records unless
 * ip= is allowed. Answers through call->front on every path. */
static void worker_announce_submit(struct worker_call *call, const struct peer_addr *client,
                                   enum announce_err decoded, const struct announce_fields *f)
{
    struct worker *w = call->w;
    struct announce_req *areq = &call->announce;
    enum announce_err err = decoded;
    memset(areq, 0, sizeof(*areq));
    areq->peer = *client;
    areq->now_s = worker_now_s(w);
    if (w->rl && !ratelimit_allow(w->rl, client, areq->now_s, (unsigned)w->cfg->rate_limit_announces,
                                  (unsigned)w->cfg->rate_limit_window_s, 1))
        err = ANNOUNCE_ERR_RATE_LIMITED;
    if (err == ANNOUNCE_OK)
        err = announce_validate(f, &w->lim, areq);
    if (err == ANNOUNCE_OK && !clientfilter_allows(w->cfg, areq->peer_id, call->reason, sizeof(call->reason)))
        err = ANNOUNCE_ERR_CLIENT_NOT_ALLOWED;
    if (err == ANNOUNCE_OK && w->priv) {
        /* Private mode: the passkey's user and the torrent's rules (cached, or one lookup). */
        private_check_announce(w->priv, call->has_passkey ? call->passkey : NULL, client, areq,
                               worker_announce_admitted, call);
        return;
    }
    worker_announce_admitted(err, call);
}

/* The announce past its front's rules (and private mode's): the peer cap, then storage. */
static void worker_announce_admitted(enum announce_err err, void *arg)
{
    struct worker_call *call = arg;
    struct worker *w = call->w;
    struct announce_req *areq = &call->announce;
    /* The cap counts the address storage records (after ip=), so that Redis never holds more
     * than cap members of one address in one swarm from this host. */
    if (err == ANNOUNCE_OK && w->pc &&
        !peercap_admit(w->pc, &areq->peer, areq->info_hash, areq->peer.port, areq->event == ANNOUNCE_EVENT_STOPPED,
                       areq->now_s, (unsigned)w->cfg->peer_ttl_s, (unsigned)w->cfg->swarm_max_peers_per_address))
        err = ANNOUNCE_ERR_PEER_CAP;
    if (err != ANNOUNCE_OK) {
        call->front->fail(call, err);
        worker_call_free(call);
        return;
    }
    storage_announce(w->st, areq, worker_announce_done, call);
}

static void worker_scrape_done(const struct scrape_reply *rep, int status, void *arg)
{
    struct worker_call *call = arg;
    if (status != STORAGE_OK)
        call->front->fail(call, storage_status_err(status));
    else
        call->front->scrape_done(call, rep);
    worker_call_free(call);
}

static void worker_scrape_admitted(enum announce_err err, void *arg);

/* Every front's scrape after decoding into call->scrape (decoded: the front's result). One unit
 * of the announce rate limit per info_hash, as each costs storage about what a small announce
 * does; a malformed scrape weighs 1, as a malformed announce does. */
static void worker_scrape_submit(struct worker_call *call, const struct peer_addr *client,
                                 enum announce_err decoded)
{
    struct worker *w = call->w;
    struct scrape_req *sreq = call->scrape;
    enum announce_err err = decoded;
    unsigned cost = decoded == ANNOUNCE_OK ? sreq->count : 1;
    if (w->rl && !ratelimit_allow(w->rl, client, sreq->now_s, (unsigned)w->cfg->rate_limit_announces,
                                  (unsigned)w->cfg->rate_limit_window_s, cost))
        err = ANNOUNCE_ERR_RATE_LIMITED;
    if (err == ANNOUNCE_OK && w->priv) {
        private_check_scrape(w->priv, call->has_passkey ? call->passkey : NULL, client, sreq->now_s,
                             worker_scrape_admitted, call);
        return;
    }
    worker_scrape_admitted(err, call);
}

static void worker_scrape_admitted(enum announce_err err, void *arg)
{
    struct worker_call *call = arg;
    if (err != ANNOUNCE_OK) {
        call->front->fail(call, err);
        worker_call_free(call);
        return;
    }
    storage_scrape(call->w->st, call->scrape, worker_scrape_done, call);
}

/* A call with its scrape request, or NULL (the caller answers "overloaded"). */
static struct worker_call *worker_scrape_call_new(struct worker *w, const struct worker_front *front,
                                                  const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, front, METRICS_ROUTE_SCRAPE, start);
    if (!call)
        return NULL;
    call->scrape = malloc(sizeof(*call->scrape));
    if (!call->scrape) {
        worker_call_free(call);
        return NULL;
    }
    call->scrape->count = 0;
    call->scrape->now_s = worker_now_s(w);
    return call;
}

/* ---- the HTTP front ---- */

static void worker_http_announce_done(struct worker_call *call, const struct announce_reply *rep)
{
    announce_write_reply(http_reply_body(call->req), &call->announce, rep, &call->w->timing);
    worker_send(call->w, call->req, 200, "text/plain", call->route, &call->start);
}

static void worker_http_scrape_done(struct worker_call *call, const struct scrape_reply *rep)
{
    scrape_write_reply(http_reply_body(call->req), call->scrape, rep);
    worker_send(call->w, call->req, 200, "text/plain", call->route, &call->start);
}

static void worker_http_fail(struct worker_call *call, enum announce_err err)
{
    if (call->reason[0]) {             /* a reason naming its rule (the client filter) */
        announce_write_failure_text(http_reply_body(call->req), call->reason);
        if (err > 0 && err < ANNOUNCE_ERR_COUNT)
            call->w->slot->failures[err]++;
        worker_send(call->w, call->req, 200, "text/plain", call->route, &call->start);
        return;
    }
    worker_send_failure(call->w, call->req, err, call->route, &call->start);
}

/* Private mode: the passkey from the URL goes with the call (NULL: a public URL). */
static void worker_call_set_passkey(struct worker_call *call, const char *passkey)
{
    if (!passkey)
        return;
    call->has_passkey = true;
    snprintf(call->passkey, sizeof(call->passkey), "%s", passkey);
}

static const struct worker_front worker_http_front = {
    worker_http_announce_done, worker_http_scrape_done, worker_http_fail,
};

static void worker_announce(struct worker *w, struct http_request *req, const char *query,
                            size_t query_len, const char *passkey, const struct timespec *start)
{
    struct worker_call *call = worker_call_new(w, &worker_http_front, METRICS_ROUTE_ANNOUNCE, start);
    if (!call) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_ANNOUNCE, start);
        return;
    }
    call->req = req;
    worker_call_set_passkey(call, passkey);
    struct peer_addr client;
    enum announce_err err = worker_client_addr(w, req, &client);
    if (err != ANNOUNCE_OK) {
        worker_http_fail(call, err);
        worker_call_free(call);
        return;
    }
    struct announce_fields f;
    err = announce_decode_query(query, query_len, w->lim.allow_ip_param, &f);
    worker_announce_submit(call, &client, err, &f);
}

static void worker_scrape(struct worker *w, struct http_request *req, const char *query,
                          size_t query_len, const char *passkey, const struct timespec *start)
{
    struct worker_call *call = worker_scrape_call_new(w, &worker_http_front, start);
    if (!call) {
        worker_send_failure(w, req, ANNOUNCE_ERR_OVERLOADED, METRICS_ROUTE_SCRAPE, start);
        return;
    }
    call->req = req;
    worker_call_set_passkey(call, passkey);
    struct peer_addr client;
    enum announce_err err = worker_client_addr(w, req, &client);
    if (err != ANNOUNCE_OK) {
        worker_http_fail(call, err);
        worker_call_free(call);
        return;
    }
    /* Parsed first (pure, no storage) for its weight in the rate limit. */
    enum announce_err parsed = scrape_parse(query, query_len, &w->lim, call->scrape);
    if (parsed == ANNOUNCE_ERR_FULL_SCRAPE_DISABLED && w->stats && w->cfg->stats_full_scrape && !passkey) {
        /* BEP 48 without info_hash: every swarm, from the aggregator's last pass. */
        worker_call_free(call);
        w->slot->requests[METRICS_ROUTE_SCRAPE]++;
        stats_handle_full_scrape(w->stats, req, &client, worker_now_s(w));
        return;
    }
    worker_scrape_submit(call, &client, parsed);
}

/* ---- the UDP front (BEP 15) ---- */

static void worker_udp_flush(struct worker *w)
{
    struct mmsghdr msgs[WORKER_UDP_BATCH];
    struct iovec iov[WORKER_UDP_BATCH];
    unsigned i = 0;
    while (i < w->udp.nout) {
        /* One sendmmsg per run of replies on the same socket. */
        unsigned n = 0;
        int fd = w->udp.out[i].fd;
        while (i + n < w->udp.nout && w->udp.out[i + n].fd == fd) {
            struct worker_udp_msg *m = &w->udp.out[i + n];
            iov[n].iov_base = m->buf;
            iov[n].iov_len = m->len;
            memset(&msgs[n], 0, sizeof(msgs[n]));
            msgs[n].msg_hdr.msg_name = &m->sa;
            msgs[n].msg_hdr.msg_namelen = m->salen;
            msgs[n].msg_hdr.msg_iov = &iov[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            n++;
        }
        unsigned sent = 0;
        while (sent < n) {
            int r = sendmmsg(fd, msgs + sent, n - sent, MSG_DONTWAIT);
            if (r <= 0) {
                /* A full socket buffer or an unreachable client: UDP replies are best effort;
                 * skip the one that failed (the client retries). */
                sent++;
                continue;
            }
            sent += (unsigned)r;
        }
        i += n;
    }
    w->udp.nout = 0;
}

static void worker_on_udp_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_udp_flush(arg);
}

/* A reply slot for peer, sent at the end of this read batch or loop turn. */
static struct worker_udp_msg *worker_udp_queue(struct worker *w, const struct worker_udp_peer *peer)
{
    if (w->udp.nout == WORKER_UDP_BATCH)
        worker_udp_flush(w);
    struct worker_udp_msg *m = &w->udp.out[w->udp.nout++];
    m->fd = peer->fd;
    m->salen = peer->salen;
    memcpy(&m->sa, &peer->sa, peer->salen);
    m->len = 0;
    if (w->udp.nout == 1 && w->udp.flush_ev)
        event_active(w->udp.flush_ev, EV_TIMEOUT, 0);
    return m;
}

static void worker_udp_log(struct worker *w, const struct worker_udp_peer *peer, const char *action, int status,
                           size_t bytes, const struct timespec *start)
{
    if (!w->access)
        return;
    accesslog_write(w->access, worker_now_s(w), (const struct sockaddr *)&peer->sa, status, bytes,
                    worker_elapsed_us(start), action, strlen(action));
}

/* An error action. cap_len: the request's length when the sender has not proved it receives
 * at its address (no valid connection id yet): the reply is never larger (no amplification). */
static void worker_udp_error(struct worker *w, const struct worker_udp_peer *peer, const char *action,
                             const char *msg, size_t cap_len, const struct timespec *start)
{
    struct worker_udp_msg *m = worker_udp_queue(w, peer);
    m->len = udp_write_error(m->buf, cap_len < sizeof(m->buf) ? cap_len : sizeof(m->buf), peer->transaction_id,
                             msg);
    if (m->len == 0)
        w->udp.nout--;
    worker_udp_log(w, peer, action, 400, m->len, start);
}

static void worker_udp_announce_done(struct worker_call *call, const struct announce_reply *rep)
{
    struct worker *w = call->w;
    struct worker_udp_msg *m = worker_udp_queue(w, &call->udp);
    /* The socket's family decides: 6-byte peers over IPv4, 18-byte peers over IPv6 (BEP 15). */
    if (call->udp.sa.ss_family == AF_INET6)
        m->len = udp_write_announce(m->buf, sizeof(m->buf), call->udp.transaction_id, w->timing.interval_s,
                                    &rep->stats, rep->peers6, rep->peers6_count, PEER_COMPACT6_LEN);
    else
        m->len = udp_write_announce(m->buf, sizeof(m->buf), call->udp.transaction_id, w->timing.interval_s,
                                    &rep->stats, rep->peers4, rep->peers4_count, PEER_COMPACT4_LEN);
    w->slot->udp_requests[METRICS_UDP_ANNOUNCE]++;
    worker_udp_log(w, &call->udp, "udp:announce", 200, m->len, &call->start);
}

static void worker_udp_scrape_done(struct worker_call *call, const struct scrape_reply *rep)
{
    struct worker *w = call->w;
    struct swarm_stats st[UDP_SCRAPE_MAX_HASHES];
    for (unsigned i = 0; i < call->udp.nhashes; i++) {
        unsigned k = call->udp.hash_index[i];
        if (k < rep->count)
            st[i] = rep->stats[k];
        else
            memset(&st[i], 0, sizeof(st[i]));
    }
    struct worker_udp_msg *m = worker_udp_queue(w, &call->udp);
    m->len = udp_write_scrape(m->buf, sizeof(m->buf), call->udp.transaction_id, st, call->udp.nhashes);
    w->slot->udp_requests[METRICS_UDP_SCRAPE]++;
    worker_udp_log(w, &call->udp, "udp:scrape", 200, m->len, &call->start);
}

static void worker_udp_fail(struct worker_call *call, enum announce_err err)
{
    struct worker *w = call->w;
    if (err > 0 && err < ANNOUNCE_ERR_COUNT)
        w->slot->failures[err]++;
    worker_udp_error(w, &call->udp, call->route == METRICS_ROUTE_SCRAPE ? "udp:scrape" : "udp:announce",
                     call->reason[0] ? call->reason : announce_reason(err), SIZE_MAX, &call->start);
}

static const struct worker_front worker_udp_front = {
    worker_udp_announce_done, worker_udp_scrape_done, worker_udp_fail,
};

/* The checks before any work: a valid connection id for this address. Returns true, or answers
 * (an error no larger than the request) and returns false. */
static bool worker_udp_connid_ok(struct worker *w, const struct worker_udp_peer *peer, const struct udp_head *h,
                                 const struct peer_addr *client, const char *action, size_t len,
                                 const struct timespec *start)
{
    switch (udp_connid_check(&w->udp.keys, h->connection_id, client, worker_now_s(w),
                             (unsigned)w->cfg->udp_connection_id_ttl_s)) {
    case UDP_CONNID_OK:
        return true;
    case UDP_CONNID_EXPIRED:
        w->slot->udp_refused[METRICS_UDP_CONNID_EXPIRED]++;
        worker_udp_error(w, peer, action, "connection id expired", len, start);
        return false;
    case UDP_CONNID_FUTURE:
        w->slot->udp_refused[METRICS_UDP_CONNID_FUTURE]++;
        worker_udp_error(w, peer, action, "connection id issued in the future", len, start);
        return false;
    case UDP_CONNID_FORGED:
    default:
        w->slot->udp_refused[METRICS_UDP_CONNID_FORGED]++;
        worker_udp_error(w, peer, action, "invalid connection id", len, start);
        return false;
    }
}

static void worker_udp_announce(struct worker *w, const struct worker_udp_peer *peer, const struct udp_head *h,
                                const struct peer_addr *client, const uint8_t *buf, size_t len,
                                const struct timespec *start)
{
    struct udp_announce a;
    enum udp_err uerr;
    if (!worker_udp_connid_ok(w, peer, h, client, "udp:announce", len, start))
        return;
    if ((uerr = udp_decode_announce(buf, len, &a)) != UDP_OK) {
        w->slot->udp_malformed[uerr]++;
        worker_udp_error(w, peer, "udp:announce", udp_reason(uerr), SIZE_MAX, start);
        return;
    }
    /* Private mode: BEP 41's /<passkey>/announce; any other path is a public URL to it. */
    char passkey[PRIVATE_PASSKEY_LEN + 1];
    bool has_passkey = w->priv && a.has_url &&
                       private_udp_route(a.url, a.url_len, passkey) == PRIVATE_ROUTE_ANNOUNCE;
    if (!w->priv && !udp_url_is_announce(&a)) {
        w->slot->udp_refused[METRICS_UDP_PATH]++;
        worker_udp_error(w, peer, "udp:announce",
                         "this tracker serves udp://host:port/announce only (no passkey paths)", SIZE_MAX, start);
        return;
    }
    struct worker_call *call = worker_call_new(w, &worker_udp_front, METRICS_ROUTE_ANNOUNCE, start);
    if (!call) {
        worker_udp_error(w, peer, "udp:announce", announce_reason(ANNOUNCE_ERR_OVERLOADED), SIZE_MAX, start);
        return;
    }
    call->udp = *peer;
    worker_call_set_passkey(call, has_passkey ? passkey : NULL);
    worker_announce_submit(call, client, ANNOUNCE_OK, &a.fields);
}

static void worker_udp_scrape(struct worker *w, const struct worker_udp_peer *peer, const struct udp_head *h,
                              const struct peer_addr *client, const uint8_t *buf, size_t len,
                              const struct timespec *start)
{
    static struct udp_scrape s;        /* 1.5 KB; the worker is single-threaded */
    enum udp_err uerr;
    if (!worker_udp_connid_ok(w, peer, h, client, "udp:scrape", len, start))
        return;
    if ((uerr = udp_decode_scrape(buf, len, &s)) != UDP_OK) {
        w->slot->udp_malformed[uerr]++;
        worker_udp_error(w, peer, "udp:scrape", udp_reason(uerr), SIZE_MAX, start);
        return;
    }
    if (w->priv) {                     /* BEP 41 gives a scrape no URL: no passkey to check */
        w->slot->failures[ANNOUNCE_ERR_PRIVATE_UDP_SCRAPE]++;
        worker_udp_error(w, peer, "udp:scrape", announce_reason(ANNOUNCE_ERR_PRIVATE_UDP_SCRAPE), SIZE_MAX,
                         start);
        return;
    }
    struct worker_call *call = worker_scrape_call_new(w, &worker_udp_front, start);
    if (!call) {
        worker_udp_error(w, peer, "udp:scrape", announce_reason(ANNOUNCE_ERR_OVERLOADED), SIZE_MAX, start);
        return;
    }
    call->udp = *peer;
    call->udp.nhashes = s.count;
    /* The shared rules (scrape.max_hashes distinct hashes); the reply keeps request order. */
    enum announce_err err = ANNOUNCE_OK;
    for (unsigned i = 0; i < s.count && err == ANNOUNCE_OK; i++) {
        unsigned k = 0;
        err = scrape_add(call->scrape, &w->lim, s.info_hash[i], &k);
        call->udp.hash_index[i] = (uint8_t)k;
    }
    worker_scrape_submit(call, client, err);
}

/* One datagram from sa. Dropped without a word: no transaction id (shorter than 16 bytes), a
 * source port 0, a connect that is not BEP 15's. Everything else is answered. */
static void worker_udp_datagram(struct worker *w, int fd, const uint8_t *buf, size_t len,
                                const struct sockaddr_storage *sa, socklen_t salen)
{
    struct timespec start;
    struct worker_udp_peer peer;
    struct peer_addr client;
    struct udp_head h;
    enum udp_err uerr;
    clock_gettime(CLOCK_MONOTONIC, &start);
    memset(&client, 0, sizeof(client));
    if (clientip_from_sockaddr((const struct sockaddr *)sa, &client) < 0)
        return;
    /* Source port 0: nowhere to answer (and a sign of a forged source). */
    if ((sa->ss_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                  : ((const struct sockaddr_in6 *)sa)->sin6_port) == 0) {
        w->slot->udp_refused[METRICS_UDP_SOURCE_PORT_0]++;
        return;
    }
    if ((uerr = udp_decode_head(buf, len, &h)) != UDP_OK) {
        w->slot->udp_malformed[uerr]++;
        return;
    }
    peer.fd = fd;
    peer.salen = salen;
    memcpy(&peer.sa, sa, salen);
    peer.transaction_id = h.transaction_id;
    peer.nhashes = 0;
    switch (h.action) {
    case UDP_ACTION_CONNECT:
        if ((uerr = udp_decode_connect(buf, len)) != UDP_OK) {
            w->slot->udp_malformed[uerr]++;
            return;
        }
        struct worker_udp_msg *m = worker_udp_queue(w, &peer);
        m->len = udp_write_connect(m->buf, sizeof(m->buf), h.transaction_id,
                                   udp_connid_issue(&w->udp.keys, &client, worker_now_s(w)));
        w->slot->udp_requests[METRICS_UDP_CONNECT]++;
        worker_udp_log(w, &peer, "udp:connect", 200, m->len, &start);
        return;
    case UDP_ACTION_ANNOUNCE:
        worker_udp_announce(w, &peer, &h, &client, buf, len, &start);
        return;
    case UDP_ACTION_SCRAPE:
        worker_udp_scrape(w, &peer, &h, &client, buf, len, &start);
        return;
    default:
        w->slot->udp_malformed[UDP_ERR_ACTION]++;
        worker_udp_error(w, &peer, "udp:unknown", udp_reason(UDP_ERR_ACTION), len, &start);
        return;
    }
}

static void worker_on_udp(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    struct mmsghdr msgs[WORKER_UDP_BATCH];
    struct iovec iov[WORKER_UDP_BATCH];
    struct sockaddr_storage sa[WORKER_UDP_BATCH];
    for (int batch = 0; batch < WORKER_UDP_BATCHES_PER_WAKE; batch++) {
        memset(msgs, 0, sizeof(msgs));
        for (int i = 0; i < WORKER_UDP_BATCH; i++) {
            iov[i].iov_base = w->udp.in[i];
            iov[i].iov_len = WORKER_UDP_RECV_CAP;
            msgs[i].msg_hdr.msg_name = &sa[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(sa[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, WORKER_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                w->slot->udp_refused[METRICS_UDP_OVERSIZE]++;
                continue;
            }
            worker_udp_datagram(w, fd, w->udp.in[i], msgs[i].msg_len, &sa[i], msgs[i].msg_hdr.msg_namelen);
        }
        worker_udp_flush(w);
        if (n < WORKER_UDP_BATCH)
            break;
    }
}

/* Splits the inherited sockets: the TCP listeners stay in w->fds for lib/http.c, the UDP ones
 * go to the UDP front. */
static int worker_setup_udp(struct worker *w, const int *fds, int nfds, int *tcp_fds, int *ntcp)
{
    const struct config *cfg = w->cfg;
    *ntcp = 0;
    for (int i = 0; i < nfds; i++) {
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
            if (w->udp.nfds < WORKER_MAX_UDP)
                w->udp.fds[w->udp.nfds++] = fds[i];
        } else {
            tcp_fds[(*ntcp)++] = fds[i];
        }
    }
    if (w->udp.nfds == 0)
        return 0;
    if (udp_connid_init(&w->udp.keys, cfg->udp_secret, strlen(cfg->udp_secret), cfg->udp_secret_previous,
                        strlen(cfg->udp_secret_previous)) < 0) {
        log_error("cannot start libsodium");
        return -1;
    }
    w->udp.out = malloc(sizeof(*w->udp.out) * WORKER_UDP_BATCH);
    w->udp.in = malloc(sizeof(*w->udp.in) * WORKER_UDP_BATCH);
    w->udp.flush_ev = event_new(w->base, -1, 0, worker_on_udp_flush, w);
    if (!w->udp.out || !w->udp.in || !w->udp.flush_ev)
        return -1;
    for (int i = 0; i < w->udp.nfds; i++) {
        w->udp.ev[i] = event_new(w->base, w->udp.fds[i], EV_READ | EV_PERSIST, worker_on_udp, w);
        if (!w->udp.ev[i])
            return -1;
    }
    return 0;
}

static int worker_udp_start(struct worker *w)
{
    for (int i = 0; i < w->udp.nfds; i++)
        if (event_add(w->udp.ev[i], NULL) < 0)
            return -1;
    return 0;
}

static void worker_udp_stop(struct worker *w)
{
    for (int i = 0; i < w->udp.nfds; i++)
        if (w->udp.ev[i])
            event_del(w->udp.ev[i]);
}

static void worker_udp_free(struct worker *w)
{
    for (int i = 0; i < w->udp.nfds; i++)
        if (w->udp.ev[i])
            event_free(w->udp.ev[i]);
    if (w->udp.flush_ev)
        event_free(w->udp.flush_ev);
    free(w->udp.out);
    free(w->udp.in);
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
    struct worker_call *call = worker_call_new(w, &worker_http_front, METRICS_ROUTE_HEALTHZ, start);
    if (call)
        call->req = req;
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
    if (json && w->stats) {
        /* The host's counters, with the whole tracker's figures as "tracker". */
        struct evbuffer *host = evbuffer_new();
        if (host) {
            metrics_write_json(w->metrics, host);
            size_t len = evbuffer_get_length(host);
            evbuffer_remove_buffer(host, out, len >= 2 ? len - 2 : 0);   /* all but "}\n" */
            evbuffer_free(host);
        }
        evbuffer_add(out, ",\"tracker\":", 11);
        stats_write_json(w->stats, out);
        evbuffer_add(out, "}\n", 2);
        worker_send(w, req, 200, "application/json", METRICS_ROUTE_STATS, start);
    } else if (json) {
        metrics_write_json(w->metrics, out);
        worker_send(w, req, 200, "application/json", METRICS_ROUTE_STATS, start);
    } else {
        metrics_write_prometheus(w->metrics, out);
        if (w->stats)
            stats_write_prometheus(w->stats, out);
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

    char passkey[PRIVATE_PASSKEY_LEN + 1];
    enum private_route pr = w->priv ? private_route(path, path_len, passkey) : PRIVATE_ROUTE_NONE;

    /* In private mode the public paths are answered with where to go (lib/private.c). */
    if (worker_path_is(path, path_len, "/announce")) {
        worker_announce(w, req, query, query_len, NULL, &start);
    } else if (worker_path_is(path, path_len, "/scrape")) {
        worker_scrape(w, req, query, query_len, NULL, &start);
    } else if (pr == PRIVATE_ROUTE_ANNOUNCE) {
        worker_announce(w, req, query, query_len, passkey, &start);
    } else if (pr == PRIVATE_ROUTE_SCRAPE) {
        worker_scrape(w, req, query, query_len, passkey, &start);
    } else if (worker_path_is(path, path_len, "/healthz")) {
        worker_healthz(w, req, &start);
    } else {
        /* /metrics and /stats live on the admin listener only: the tracker port faces the
         * Internet, and its numbers (failure reasons, workers) are the operator's. */
        evbuffer_add_printf(http_reply_body(req), "not found\n");
        worker_send(w, req, 404, "text/plain", METRICS_ROUTE_NOT_FOUND, &start);
    }
}

/* /stats?info_hash=<40 hex>: 1 with the hex (lowercased) in hex, 0 when the query has no
 * info_hash, -1 when it is not 40 hex digits. */
static int worker_query_hex(const struct http_request *req, char hex[41])
{
    size_t len;
    const char *q = http_request_query(req, &len), *v = NULL;

    for (size_t i = 0; i + 10 <= len; i++)
        if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "info_hash=", 10) == 0) {
            v = q + i + 10;
            break;
        }
    if (!v)
        return 0;
    for (int i = 0; i < 40; i++) {
        char c = v + i < q + len ? v[i] : '\0';
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        hex[i] = c;
    }
    hex[40] = '\0';
    return v + 40 == q + len || v[40] == '&' ? 1 : -1;
}

static void worker_send_json_error(struct worker *w, struct http_request *req, int status, const char *text,
                                   const struct timespec *start)
{
    evbuffer_add_printf(http_reply_body(req), "{\"error\":\"%s\"}\n", text);
    worker_send(w, req, status, "application/json", METRICS_ROUTE_STATS, start);
}

/* The admin listener's routes: /metrics, /stats, and /healthz (also on the tracker port, for
 * load balancers). */
static void worker_on_admin_request(struct http_request *req, void *arg)
{
    struct worker *w = arg;
    char hex[41];
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    size_t path_len;
    const char *path = http_request_path(req, &path_len);
    if (worker_path_is(path, path_len, "/metrics") && w->metrics) {
        worker_metrics(w, req, 0, &start);
    } else if (worker_path_is(path, path_len, "/stats") && w->stats &&
               worker_query_hex(req, hex) != 0) {
        if (worker_query_hex(req, hex) < 0)
            worker_send_json_error(w, req, 400, "info_hash must be 40 hex digits", &start);
        else
            stats_handle_swarm(w->stats, req, hex);
    } else if (worker_path_is(path, path_len, "/stats") && w->metrics) {
        worker_metrics(w, req, 1, &start);
    } else if (worker_path_is(path, path_len, "/") && w->stats) {
        stats_handle_page(w->stats, req);
    } else if (worker_path_is(path, path_len, "/healthz")) {
        worker_healthz(w, req, &start);
    } else if (path_len >= 5 && memcmp(path, "/api/", 5) == 0) {
        admin_api_handle(w->api, req);
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
        if (worker_udp_start(w) < 0) {
            log_error("cannot serve UDP on the inherited sockets");
            w->failed = 1;
            event_base_loopexit(w->base, NULL);
            return;
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
    if (strcmp(w->slot->redis_master, redis_sentinel_master()) != 0)
        snprintf(w->slot->redis_master, sizeof(w->slot->redis_master), "%s", redis_sentinel_master());
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
        worker_udp_flush(w);
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
    worker_udp_stop(w);    /* the datagrams queued stay for the next worker on this lane */
    if (w->admin)
        http_server_stop_accepting(w->admin);
    stats_stop(w->stats);  /* a draining worker hands the aggregator's lease on at once */
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
        lim.max_body_bytes = ADMIN_API_MAX_BODY;
        w->api = admin_api_new(w->base, cfg);
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
    w.counted.redirects = w.slot->storage_redirects;
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
        accesslog_set_private(w.access, cfg->private_enabled);
    }
    w.st = storage_new(cfg, w.base, err, sizeof(err));
    if (!w.st) {
        log_error("storage: %s", err);
        goto out_base;
    }
    w.stats = stats_new(w.base, cfg, metrics, w.slot, w.st);
    if (cfg->private_enabled && !(w.priv = private_new(cfg, w.st, rl))) {
        log_error("private mode: out of memory");
        goto out_http;
    }
    int tcp_fds[256], ntcp = 0;      /* MASTER_MAX_LANES x MASTER_MAX_LISTENERS */
    if (nfds > 256 || worker_setup_udp(&w, fds, nfds, tcp_fds, &ntcp) < 0) {
        log_error("cannot serve UDP on the inherited sockets");
        goto out_http;
    }
    if (worker_setup_http(&w, tcp_fds, ntcp, admin_fd) < 0) {
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
    stats_free(w.stats);
    storage_free(w.st);
    private_free(w.priv);            /* after storage: its lookups were answered */
    worker_udp_flush(&w);            /* the answers storage_free gave */
    worker_udp_free(&w);
    if (w.http)
        http_server_free(w.http);
    admin_api_free(w.api);           /* its waiting calls are answered first */
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
