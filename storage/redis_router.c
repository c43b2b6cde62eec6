/* Redis Cluster routing for the workers (issue 12, redis.cluster: true).
 *
 * The router is a storage (storage/storage.h) made of node storages (storage/redis_node.h): one
 * storage/redis.c connection per primary of the slot map, so each node keeps the pipelining, the
 * deadlines and the backlog accounting a single Redis has. A request is cut into parts, each for
 * one node: an announce's swarm commands go whole to the primary that owns its swarm's slot
 * (every key of a swarm is tagged "{<hex>}": one slot), its private-mode account call to the
 * owner of the {private} slot; a lookup's user half there and its torrent half to the swarm's; a
 * scrape's hashes split by owner. The parts go out at once and the request is answered when the
 * last is over. A node that did not run a part (MOVED, ASK, TRYAGAIN, READONLY) finishes it with
 * STORAGE_ERR_REDIRECT once every reply of it came, and the router resends that part alone:
 *   MOVED     the slot has a new owner: point the slot there (the whole map is read again soon)
 *             and resend;
 *   ASK       the slot is migrating: resend to the importing node behind ASKING if none of the
 *             part's keys answered on the old one (else its keys are split: wait, as TRYAGAIN);
 *             a scrape resends exactly the commands not run, as reads of single keys may;
 *   TRYAGAIN  a multi-key command found its keys split by a migration: resend after a back-off;
 *   READONLY  the node is a replica now: read the map again, resend after a back-off.
 * Resends stop at redis.timeout_ms after the request came. CLUSTERDOWN and a lost node fail fast
 * (the cluster heals in seconds, after its failover) and make the router read the map again.
 *
 * A resend never counts twice. A node checks where a command's keys live before it runs the
 * command, so a redirected command did not run (storage/redis_cluster.h). Of an announce only
 * its MULTI ... EXEC is not idempotent (the completed move's count): a redirection inside it
 * aborts the whole transaction, and when the EXEC did run and a later command (a read) was
 * redirected, the resend carries no completed event, so the same sets are written and nothing is
 * counted again; the account call is its own part, resent only when it was not run. The
 * statistics' counters are added up only after a request succeeded.
 *
 * The map is read synchronously at start (storage/redis_cluster_seed.c: bounded, redis.timeout_ms
 * an address), and later asynchronously, at most once a ROUTER_REFRESH_MS: CLUSTER SLOTS on a
 * primary's connection after a redirection, a failure, or while a primary's connection is down. */
#include "storage/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "lib/config.h"
#include "lib/log.h"
#include "storage/redis_cluster.h"
#include "storage/redis_cluster_seed.h"
#include "storage/redis_node.h"

#define ROUTER_REFRESH_MS 1000         /* the map is read again at most this often */
#define ROUTER_MAX_SENDS 16            /* a request's sends (first and resends) at most ... */
                                       /* ... within redis.timeout_ms of its arrival */
#define ROUTER_BACKOFF_MAX_MS 200      /* a resend that waits for a migration waits at most this */
#define ROUTER_RETIRED_MAX 64

enum router_kind { ROUTER_ANNOUNCE, ROUTER_SCRAPE, ROUTER_HEALTH, ROUTER_LOOKUP };

/* What a part sends: each goes to one node and is resent alone. */
enum router_part_kind {
    PART_SWARM,                            /* an announce's swarm commands (not its {private} call) */
    PART_ACCOUNT,                          /* FCALL tyto_account: the {private} slot's owner */
    PART_SCRAPE,                           /* a scrape's hashes that one node has */
    PART_USER,                             /* a lookup's passkey half: the {private} slot's owner */
    PART_TORRENT,                          /* a lookup's torrent half: the swarm's slot's owner */
    PART_HEALTH,                           /* a PING to one primary (never resent) */
};

struct redis_router;
struct router_part;

/* One user request: its parts (one per node it needs) point back to it. */
struct router_req {
    struct router_req *prev, *next;        /* rt->reqs */
    struct redis_router *rt;
    enum router_kind kind;
    unsigned sends;                        /* part sends so far, first ones and resends */
    uint64_t deadline_ms;                  /* monotonic: no resend after this */
    unsigned parts;                        /* parts not over, + 1 while a caller holds q */
    int status;                            /* first failure wins */
    struct router_part *waiting;           /* parts waiting for a back-off (ev) */
    struct event *ev;                      /* the back-off, or the deferred delivery */
    void *arg;
    /* announce */
    storage_announce_cb *announce_cb;
    struct announce_req areq;              /* the swarm part's (event NONE once its completion counted) */
    enum announce_event event;             /* as the client sent it: the account call's */
    bool snatch_sent;
    struct swarm_stats astats;             /* the swarm part's reply, kept while the account ... */
    uint8_t *peers;                        /* ... call is still out: IPv4 then IPv6 peers */
    size_t peers4_count, peers6_count;
    /* scrape */
    storage_scrape_cb *scrape_cb;
    struct scrape_req *sreq;
    struct swarm_stats *stats;             /* sreq->count: the answers of every part, added up */
    uint8_t *unapproved;                   /* sreq->count: private mode, a part's EXISTS said 0 */
    uint8_t full_mask;                     /* a hash's commands: 0x7, 0xf in private mode */
    /* lookup */
    storage_lookup_cb *lookup_cb;
    struct storage_lookup_req lreq;
    struct storage_lookup_reply lrep;
    /* health */
    storage_health_cb *health_cb;
};

struct router_part {
    struct router_part *next_waiting;      /* on q->waiting */
    struct router_req *q;
    enum router_part_kind kind;
    uint16_t slot;                         /* where its keys are (a scrape's: its first hash's) */
    struct storage *sent_to;               /* the node it went to last */
    struct storage *ask_to;                /* its next send goes here with ASKING; NULL: the owner */
    struct storage *fixed_to;              /* health: this node, whatever the map says */
    unsigned count;                        /* scrape: hashes in idx */
    uint8_t *mask;                         /* scrape: per hash, its commands still unanswered */
    uint16_t idx[];                        /* scrape: indexes into q->sreq (then mask's bytes) */
};

struct redis_router {
    struct storage base;                   /* first: the interface */
    struct event_base *evbase;
    struct config *cfg;                    /* a copy: the map is read with it again */
    struct redis_cluster_map *map;         /* NULL until the first map was read */
    struct storage *node[REDIS_CLUSTER_MAX_NODES]; /* by map->node index */
    uint64_t refreshed_ms;                 /* monotonic: the last read of the map (tried) */
    bool refresh_due;                      /* refresh_ev is armed */
    bool refresh_inflight;                 /* a CLUSTER SLOTS is out on a node's connection ... */
    unsigned refresh_tries;                /* ... the how-many-th node of this refresh asked */
    unsigned refresh_next;                 /* the node the next refresh asks first (rotates) */
    char refresh_host[REDIS_CLUSTER_HOST_MAX + 1]; /* ... the one asked (an empty host in the
                                            * reply means this one) */
    struct event *refresh_ev;
    struct event *watch_ev;                /* each ROUTER_REFRESH_MS: a node lost? read the map */
    /* Node storages no longer in the map, freed from the loop's top level (sweep_ev): a node's
     * callback must not free its own storage. */
    struct storage *retired[ROUTER_RETIRED_MAX];
    unsigned nretired;
    struct event *sweep_ev;
    struct storage_counters gone;          /* counters of node storages freed */
    struct router_req *reqs;
    uint64_t failed;                       /* requests delivered with a failure */
    bool freeing;
};

static uint64_t router_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timeval router_tv(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    return tv;
}

/* ---- counters: the sum of the nodes' ---------------------------------------------------- */

static void router_counters_add(struct storage_counters *to, const struct storage_counters *c)
{
    to->round_trips += c->round_trips;
    to->commands += c->commands;
    to->errors += c->errors;
    to->timeouts += c->timeouts;
    to->reconnects += c->reconnects;
    to->completed += c->completed;
    to->redirects += c->redirects;
}

/* The worker reads base.counters and base.backlog directly: kept as the nodes' sums, brought up
 * to date whenever a request passes through the router. */
static void router_sum(struct redis_router *rt)
{
    struct storage_counters c = rt->gone;
    unsigned backlog = 0;

    for (unsigned i = 0; rt->map && i < rt->map->nnodes; i++) {
        if (rt->node[i]) {
            router_counters_add(&c, &rt->node[i]->counters);
            backlog += rt->node[i]->backlog;
        }
    }
    for (unsigned i = 0; i < rt->nretired; i++) {
        router_counters_add(&c, &rt->retired[i]->counters);
        backlog += rt->retired[i]->backlog;
    }
    c.errors = rt->failed;                 /* the requests that failed, not their sends */
    rt->base.counters = c;
    rt->base.backlog = backlog;
}

/* ---- the map and the node storages -------------------------------------------------------- */

static void router_retire(struct redis_router *rt, struct storage *st)
{
    if (rt->nretired == ROUTER_RETIRED_MAX) {
        /* Never expected (a sweep runs at the loop's next turn); keep it rather than free it
         * under a callback: a few connections more until the router is freed. */
        log_warn("redis cluster: too many node connections waiting to close");
        return;
    }
    rt->retired[rt->nretired++] = st;
    event_active(rt->sweep_ev, EV_TIMEOUT, 1);
}

static void router_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_router *rt = arg;
    (void)fd;
    (void)what;

    while (rt->nretired > 0) {
        struct storage *st = rt->retired[--rt->nretired];

        router_counters_add(&rt->gone, &st->counters);
        storage_free(st);                  /* its requests come back UNAVAILABLE or resent */
    }
}

/* The node storage of host:port in the current map, or NULL. */
static struct storage *router_node_at(struct redis_router *rt, const char *host, uint16_t port)
{
    int i = rt->map ? redis_cluster_map_find(rt->map, host, port) : -1;

    return i < 0 ? NULL : rt->node[i];
}

static struct storage *router_node_new(struct redis_router *rt, const struct redis_cluster_node *n)
{
    char err[256];
    struct storage *st = storage_redis_node_new(rt->cfg, rt->evbase, n->host, n->port, err, sizeof(err));
    int64_t offset_ms;

    if (!st) {
        log_error("redis cluster: node %s:%u: %s", n->host, n->port, err);
        return NULL;
    }
    for (unsigned i = 0; rt->map && i < rt->map->nnodes; i++) {
        if (rt->node[i] && storage_redis_node_clock(rt->node[i], &offset_ms)) {
            storage_redis_node_seed_clock(st, offset_ms);
            break;
        }
    }
    return st;
}

/* Installs a new map: node storages of primaries still in it are kept, new primaries get one,
 * and the others are retired. */
static void router_apply(struct redis_router *rt, struct redis_cluster_map *m)
{
    struct storage *node[REDIS_CLUSTER_MAX_NODES] = { 0 };
    struct redis_cluster_map *old = rt->map;

    for (unsigned i = 0; i < m->nnodes; i++) {
        int j = old ? redis_cluster_map_find(old, m->node[i].host, m->node[i].port) : -1;

        if (j >= 0) {
            node[i] = rt->node[j];
            rt->node[j] = NULL;
        }
    }
    for (unsigned i = 0; old && i < old->nnodes; i++) {
        if (rt->node[i]) {
            log_info("redis cluster: %s:%u serves no slot now", old->node[i].host, old->node[i].port);
            router_retire(rt, rt->node[i]);
            rt->node[i] = NULL;
        }
    }
    rt->map = m;
    memcpy(rt->node, node, sizeof(node));
    for (unsigned i = 0; i < m->nnodes; i++) {
        if (!rt->node[i]) {
            rt->node[i] = router_node_new(rt, &m->node[i]);
            log_info("redis cluster: primary %s:%u", m->node[i].host, m->node[i].port);
        }
    }
    free(old);
}

/* Reads the map now (blocking, bounded): at start, and when no primary of the map answered. */
static void router_refresh_now(struct redis_router *rt)
{
    struct redis_cluster_map *m = malloc(sizeof(*m));
    char err[512];

    rt->refreshed_ms = router_now_ms();
    if (!m) {
        log_error("redis cluster: out of memory");
        return;
    }
    /* The map's own primaries were asked already (router_refresh_async): the seeds only. */
    if (redis_cluster_fetch_map(rt->cfg, NULL, m, err, sizeof(err)) < 0) {
        log_warn("redis cluster: %s", err);
        free(m);
        return;
    }
    if (!redis_cluster_map_complete(m))
        log_warn("redis cluster: some slots have no primary (the cluster is down or being set up)");
    router_apply(rt, m);
}

static void router_refresh_soon(struct redis_router *rt);
static void router_refresh_async(struct redis_router *rt);

/* The answer to an asynchronous CLUSTER SLOTS: a map to install, or the next node to ask. */
static void router_slots_cb(const redisReply *reply, int status, void *arg)
{
    struct redis_router *rt = arg;
    struct redis_cluster_map *m;
    char err[256];

    rt->refresh_inflight = false;
    if (rt->freeing)
        return;
    if (status == STORAGE_OK && (m = malloc(sizeof(*m)))) {
        if (redis_cluster_map_parse(reply, rt->refresh_host, m, err, sizeof(err)) == 0 && m->nnodes > 0) {
            if (!redis_cluster_map_complete(m))
                log_warn("redis cluster: some slots have no primary (the cluster is down or being set up)");
            router_apply(rt, m);
            return;
        }
        log_warn("redis cluster: %s: CLUSTER SLOTS: %s", rt->refresh_host, m->nnodes ? err : "no slots");
        free(m);
    }
    rt->refresh_tries++;
    router_refresh_async(rt);              /* the next node, or the seeds */
}

/* Reads the map again without blocking: CLUSTER SLOTS on the connection of one primary of the
 * map after another (each bounded by redis.timeout_ms: a hung node delays the refresh, never the
 * worker). Only when none answers are the seeds asked, synchronously (router_refresh_now). */
static void router_refresh_async(struct redis_router *rt)
{
    static const char *argv[] = { "CLUSTER", "SLOTS" };

    rt->refreshed_ms = router_now_ms();
    while (rt->map && rt->refresh_tries < rt->map->nnodes) {
        unsigned i = (rt->refresh_next + rt->refresh_tries) % rt->map->nnodes;

        if (rt->node[i] && storage_redis_node_connected(rt->node[i])) {
            snprintf(rt->refresh_host, sizeof(rt->refresh_host), "%s", rt->map->node[i].host);
            rt->refresh_inflight = true;
            if (storage_redis_node_raw(rt->node[i], 2, argv, router_slots_cb, rt) == 0)
                return;
            rt->refresh_inflight = false;
        }
        rt->refresh_tries++;
    }
    router_refresh_now(rt);
}

static void router_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_router *rt = arg;
    (void)fd;
    (void)what;

    rt->refresh_due = false;
    if (rt->freeing || rt->refresh_inflight)
        return;
    if (rt->map) {
        rt->refresh_tries = 0;
        rt->refresh_next++;                /* not always the same node first */
        router_refresh_async(rt);
        return;
    }
    router_refresh_now(rt);
    if (!rt->map)
        router_refresh_soon(rt);           /* no map yet: try again */
}

/* Asks for the map to be read again, from the loop's top level, at most once a ROUTER_REFRESH_MS. */
static void router_refresh_soon(struct redis_router *rt)
{
    uint64_t since = router_now_ms() - rt->refreshed_ms;
    struct timeval tv = router_tv(since >= ROUTER_REFRESH_MS ? 0 : (int)(ROUTER_REFRESH_MS - since));

    if (rt->refresh_due || rt->refresh_inflight || rt->freeing)
        return;
    rt->refresh_due = true;
    evtimer_add(rt->refresh_ev, &tv);
}

/* A primary whose connection is down may be failing over: its replica's promotion shows only in
 * a new map. Requests to its slots would ask for one too, but a worker that gets none of them
 * (the load balancer sent it other swarms) would keep the dead node until one came. */
static void router_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_router *rt = arg;
    (void)fd;
    (void)what;

    for (unsigned i = 0; rt->map && i < rt->map->nnodes; i++) {
        if (rt->node[i] && !storage_redis_node_connected(rt->node[i])) {
            router_refresh_soon(rt);
            break;
        }
    }
    router_sum(rt);                        /* the counters, also while no request passes */
}

/* The slot of a swarm's keys: their hash tag is the info-hash in lowercase hex. */
static uint16_t router_slot(const uint8_t *info_hash)
{
    static const char digits[] = "0123456789abcdef";
    char hex[2 * ANNOUNCE_HASH_LEN];

    for (int i = 0; i < ANNOUNCE_HASH_LEN; i++) {
        hex[2 * i] = digits[info_hash[i] >> 4];
        hex[2 * i + 1] = digits[info_hash[i] & 15];
    }
    return redis_cluster_keyslot(hex, sizeof(hex));
}

/* Private mode's keys ("<prefix>{private}:...") are all in the slot of "private". */
static uint16_t router_private_slot(void)
{
    return redis_cluster_keyslot("private", 7);
}

/* The node storage that owns slot, or NULL (no map, an unowned slot). */
static struct storage *router_owner_slot(struct redis_router *rt, uint16_t slot)
{
    int i;

    if (!rt->map)
        return NULL;
    i = redis_cluster_node_for_slot(rt->map, slot);
    return i < 0 ? NULL : rt->node[i];
}

/* A MOVED: the slot is served at host:port now. The map learns it at once (a reshard moves slots
 * one by one: each MOVED fixes its own) and is read whole again soon. */
static void router_moved(struct redis_router *rt, const struct redis_cluster_redirect *at, struct storage *from)
{
    int i;

    router_refresh_soon(rt);
    if (!rt->map)
        return;
    i = redis_cluster_map_find(rt->map, at->host, at->port);
    if (i < 0 && at->host[0] == '\0') {
        /* ":port": the host of the node that answered */
        for (unsigned k = 0; k < rt->map->nnodes; k++) {
            if (rt->node[k] == from) {
                struct redis_cluster_redirect same = *at;

                snprintf(same.host, sizeof(same.host), "%s", rt->map->node[k].host);
                i = redis_cluster_map_find(rt->map, same.host, same.port);
                break;
            }
        }
    }
    if (i < 0 && rt->map->nnodes < REDIS_CLUSTER_MAX_NODES && at->host[0] != '\0') {
        struct redis_cluster_node *n = &rt->map->node[rt->map->nnodes];

        memset(n, 0, sizeof(*n));
        snprintf(n->host, sizeof(n->host), "%s", at->host);
        n->port = at->port;
        rt->node[rt->map->nnodes] = router_node_new(rt, n);
        i = (int)rt->map->nnodes++;
    }
    if (i >= 0)
        rt->map->owner[at->slot] = (uint8_t)i;
}

/* ---- requests ------------------------------------------------------------------------------ */

static void router_wake_cb(evutil_socket_t fd, short what, void *arg);

static struct router_req *router_req_new(struct redis_router *rt, enum router_kind kind, void *arg)
{
    struct router_req *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    if (!(q->ev = evtimer_new(rt->evbase, router_wake_cb, q))) {
        free(q);
        return NULL;
    }
    q->rt = rt;
    q->deadline_ms = router_now_ms() + (uint64_t)(rt->cfg->redis_timeout_ms > 0 ? rt->cfg->redis_timeout_ms : 1000);
    q->kind = kind;
    q->arg = arg;
    q->parts = 1;                          /* the caller's hold: released by router_release */
    q->next = rt->reqs;
    if (rt->reqs)
        rt->reqs->prev = q;
    rt->reqs = q;
    return q;
}

static void router_req_free(struct router_req *q)
{
    struct redis_router *rt = q->rt;

    if (q->prev)
        q->prev->next = q->next;
    else
        rt->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    while (q->waiting) {                   /* only when the router is freed */
        struct router_part *p = q->waiting;

        q->waiting = p->next_waiting;
        free(p);
    }
    event_free(q->ev);
    free(q->sreq);
    free(q->stats);
    free(q->unapproved);
    free(q->peers);
    free(q);
}

static void router_fail(struct router_req *q, int status)
{
    if (q->status == STORAGE_OK)
        q->status = status;
}

/* Runs the user's callback once, then frees q. rep: an announce's reply when the last part's
 * callback delivers it itself (borrowed), else NULL (the copy in q is used). */
static void router_deliver(struct router_req *q, const struct announce_reply *rep)
{
    if (q->status != STORAGE_OK)
        q->rt->failed++;
    router_sum(q->rt);
    switch (q->kind) {
    case ROUTER_ANNOUNCE:
        if (q->status == STORAGE_OK && !rep) {
            struct announce_reply copy = {
                .stats = q->astats,
                .peers4 = q->peers, .peers4_count = q->peers4_count,
                .peers6 = q->peers + q->peers4_count * PEER_COMPACT4_LEN, .peers6_count = q->peers6_count,
            };

            q->announce_cb(&copy, STORAGE_OK, q->arg);
        } else {
            q->announce_cb(q->status == STORAGE_OK ? rep : NULL, q->status, q->arg);
        }
        break;
    case ROUTER_SCRAPE:
        if (q->status == STORAGE_OK) {
            struct scrape_reply srep = { .count = q->sreq->count, .stats = q->stats };

            for (unsigned i = 0; i < q->sreq->count; i++)  /* one part's EXISTS said no */
                if (q->unapproved[i])
                    memset(&q->stats[i], 0, sizeof(q->stats[i]));

            q->scrape_cb(&srep, STORAGE_OK, q->arg);
        } else {
            q->scrape_cb(NULL, q->status, q->arg);
        }
        break;
    case ROUTER_HEALTH:
        q->health_cb(q->status, q->arg);
        break;
    case ROUTER_LOOKUP:
        q->lookup_cb(q->status == STORAGE_OK ? &q->lrep : NULL, q->status, q->arg);
        break;
    }
    router_req_free(q);
}

/* Drops the hold router_req_new took: inside the user's call, so the callback, if nothing is
 * left in flight, comes from the loop (never before the call returns). */
static void router_release(struct router_req *q)
{
    struct timeval tv = router_tv(0);

    if (--q->parts == 0)
        evtimer_add(q->ev, &tv);
}

/* After a node's failure (not a redirection): the map may be stale (a primary died). */
static void router_suspect(struct redis_router *rt, int status)
{
    if (status == STORAGE_ERR_UNAVAILABLE || status == STORAGE_ERR_TIMEOUT)
        router_refresh_soon(rt);
}

/* What a request does after a node did not run one of its parts. */
enum router_next {
    ROUTER_FAIL,                           /* deliver the failure (CLUSTERDOWN, out of budget) */
    ROUTER_NOW,                            /* resend at once (MOVED: to the new owner; ASK: to *ask_to) */
    ROUTER_LATER,                          /* resend to the owner after a back-off: a migration
                                            * has the part's keys split between two nodes */
};

/* A resend is allowed while the request is young (redis.timeout_ms since it came) and has not
 * been sent ROUTER_MAX_SENDS times. */
static bool router_may_resend(const struct router_req *q)
{
    return !q->rt->freeing && q->sends < ROUTER_MAX_SENDS && router_now_ms() < q->deadline_ms;
}

/* 5, 10, 20, ... ms, at most ROUTER_BACKOFF_MAX_MS: a migration moves a slot's keys in batches. */
static int router_backoff_ms(unsigned sends)
{
    int ms = sends >= 6 ? ROUTER_BACKOFF_MAX_MS : 5 << sends;

    return ms > ROUTER_BACKOFF_MAX_MS ? ROUTER_BACKOFF_MAX_MS : ms;
}

/* The next step after rd, what node `from` said. ASK sends a part to the importing node only
 * when none of its keys answered on the migrating one (rd->served == 0): the importing node runs
 * a command after ASKING on whatever it has, so a swarm whose seeders were still on the old node
 * would read as empty there. Keys split between the two wait for the migration instead. */
static enum router_next router_redirected(struct redis_router *rt, struct storage *from,
                                          const struct redis_node_redirect *rd, struct storage **ask_to)
{
    *ask_to = NULL;
    switch (rd->kind) {
    case REDIS_CLUSTER_ERR_MOVED:
        router_moved(rt, &rd->at, from);
        return ROUTER_NOW;
    case REDIS_CLUSTER_ERR_ASK: {
        char host[REDIS_CLUSTER_HOST_MAX + 1];

        snprintf(host, sizeof(host), "%s", rd->at.host);
        for (unsigned k = 0; host[0] == '\0' && rt->map && k < rt->map->nnodes; k++)
            if (rt->node[k] == from)
                snprintf(host, sizeof(host), "%s", rt->map->node[k].host);
        *ask_to = router_node_at(rt, host, rd->at.port);
        if (!*ask_to)                      /* a target the map does not know yet */
            router_refresh_soon(rt);
        return *ask_to && rd->served == 0 ? ROUTER_NOW : ROUTER_LATER;
    }
    case REDIS_CLUSTER_ERR_TRYAGAIN:
        return ROUTER_LATER;
    case REDIS_CLUSTER_ERR_READONLY:       /* a demoted primary: the map is stale */
        router_refresh_soon(rt);
        return ROUTER_LATER;
    default:                               /* CLUSTERDOWN: heals only with a failover */
        router_refresh_soon(rt);
        return ROUTER_FAIL;
    }
}

/* ---- parts: what one node answers ---------------------------------------------------------- */

static struct router_part *router_part_new(struct router_req *q, enum router_part_kind kind, uint16_t slot,
                                           unsigned hashes)
{
    struct router_part *p = calloc(1, sizeof(*p) + hashes * (sizeof(p->idx[0]) + 1));

    if (!p) {
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
        return NULL;
    }
    p->mask = (uint8_t *)(p->idx + hashes);
    p->q = q;
    p->kind = kind;
    p->slot = slot;
    q->parts++;
    return p;
}

/* A part is over (status recorded); the last one delivers. Never inside the user's call: the
 * caller's hold (q->parts) is dropped only by router_release. */
static void router_part_finish(struct router_part *p, int status)
{
    struct router_req *q = p->q;

    if (status != STORAGE_OK)
        router_fail(q, status);
    free(p);
    if (--q->parts == 0)
        router_deliver(q, NULL);
}

/* Sends p again after ms (it still counts in q->parts). */
static void router_part_wait(struct router_part *p, int ms)
{
    struct timeval tv = router_tv(ms);

    p->next_waiting = p->q->waiting;
    p->q->waiting = p;
    evtimer_add(p->q->ev, &tv);
}

static void router_part_send(struct router_part *p);
static void router_scrape_split(struct router_req *q, const uint16_t *idx, const uint8_t *mask, unsigned count,
                                int ask_slot, struct storage *ask_to);

/* A part's node answered. Anything but a redirection ends it; a redirection resends it. */
static void router_part_outcome(struct router_part *p, int status)
{
    struct router_req *q = p->q;
    struct redis_router *rt = q->rt;

    if (status == STORAGE_ERR_REDIRECT && p->kind != PART_HEALTH && p->kind != PART_SCRAPE &&
        router_may_resend(q)) {
        struct redis_node_redirect rd;
        struct storage *ask_to;
        enum router_next next;

        storage_redis_node_report(p->sent_to, &rd);
        next = router_redirected(rt, p->sent_to, &rd, &ask_to);
        if (next == ROUTER_NOW) {
            p->ask_to = ask_to;
            router_part_send(p);
            return;
        }
        if (next == ROUTER_LATER) {
            p->ask_to = NULL;
            router_part_wait(p, router_backoff_ms(q->sends));
            return;
        }
    }
    router_suspect(rt, status);
    router_part_finish(p, status == STORAGE_ERR_REDIRECT ? STORAGE_ERR_UNAVAILABLE : status);
}

/* The announce's swarm commands answered. */
static void router_swarm_cb(const struct announce_reply *rep, int status, void *arg)
{
    struct router_part *p = arg;
    struct router_req *q = p->q;
    struct redis_node_redirect rd = { 0 };

    if (status == STORAGE_OK || status == STORAGE_ERR_REDIRECT)
        storage_redis_node_report(p->sent_to, &rd);
    /* The completed move counted: in private mode the user's snatch goes out now, once, to the
     * {private} slot's owner (not waited for), whatever becomes of the rest of the request. */
    if (rd.snatched && q->areq.account.user[0] && !q->snatch_sent) {
        struct storage *st = router_owner_slot(q->rt, router_private_slot());

        q->snatch_sent = true;
        if (st)
            storage_redis_node_snatch(st, &q->areq);
    }
    /* The completion counted (the EXEC ran, its EVAL took the peer out of leechers) before a
     * later command was redirected: the resend writes the same sets without the event, so nothing
     * is counted twice. Not merely "the EXEC ran": an EXEC whose EVAL did not count (an error
     * inside it) must be resent with the event, or the completion is lost. */
    if (status == STORAGE_ERR_REDIRECT && rd.snatched && q->areq.event == ANNOUNCE_EVENT_COMPLETED)
        q->areq.event = ANNOUNCE_EVENT_NONE;
    if (status == STORAGE_OK) {
        if (q->parts == 1 && q->status == STORAGE_OK) {  /* the last part: deliver rep as it is */
            free(p);
            q->parts = 0;
            router_deliver(q, rep);
            return;
        }
        /* The account call is still out: keep a copy of the reply until it answers. */
        q->astats = rep->stats;
        q->peers = malloc(rep->peers4_count * PEER_COMPACT4_LEN + rep->peers6_count * PEER_COMPACT6_LEN + 1);
        if (!q->peers) {
            router_part_finish(p, STORAGE_ERR_INTERNAL);
            return;
        }
        memcpy(q->peers, rep->peers4, rep->peers4_count * PEER_COMPACT4_LEN);
        memcpy(q->peers + rep->peers4_count * PEER_COMPACT4_LEN, rep->peers6, rep->peers6_count * PEER_COMPACT6_LEN);
        q->peers4_count = rep->peers4_count;
        q->peers6_count = rep->peers6_count;
    }
    router_part_outcome(p, status);
}

static void router_status_cb(int status, void *arg)
{
    router_part_outcome(arg, status);
}

static void router_lookup_cb(const struct storage_lookup_reply *rep, int status, void *arg)
{
    struct router_part *p = arg;
    struct storage_lookup_reply *l = &p->q->lrep;

    if (status == STORAGE_OK && p->kind == PART_USER) {
        l->user = rep->user;
        memcpy(l->name, rep->name, sizeof(l->name));
        l->can_leech = rep->can_leech;
        l->expires_s = rep->expires_s;
        l->redis_now_s = rep->redis_now_s;
    } else if (status == STORAGE_OK) {
        l->torrent_approved = rep->torrent_approved;
        l->freeleech = rep->freeleech;
        l->neutral = rep->neutral;
        memcpy(l->up_mult, rep->up_mult, sizeof(l->up_mult));
        memcpy(l->down_mult, rep->down_mult, sizeof(l->down_mult));
    }
    router_part_outcome(p, status);
}

/* A scrape's part answered: what its node answered is added in (every (hash, command) is
 * answered once, by the node that has the key, or 0 for a key that is nowhere), and the commands
 * it did not run go again: to the slot's new owner (MOVED), to the importing node with ASKING
 * (ASK: for a read that is right whatever the rest of the swarm's keys are), or to the owner
 * after a back-off. */
static void router_scrape_cb(const struct scrape_reply *rep, int status, void *arg)
{
    struct router_part *p = arg;
    struct router_req *q = p->q;
    struct redis_router *rt = q->rt;
    const uint8_t *flags = status == STORAGE_OK || status == STORAGE_ERR_REDIRECT
                               ? storage_redis_node_scrape_flags(p->sent_to) : NULL;
    unsigned left = 0;

    if (rep) {
        for (unsigned i = 0; i < p->count && i < rep->count; i++) {
            struct swarm_stats *s = &q->stats[p->idx[i]];

            s->complete += rep->stats[i].complete;
            s->incomplete += rep->stats[i].incomplete;
            s->downloaded += rep->stats[i].downloaded;
            if (flags && (flags[i] & REDIS_NODE_UNAPPROVED))
                q->unapproved[p->idx[i]] = 1;
        }
    }
    if (status != STORAGE_ERR_REDIRECT || !rep || !flags) {
        router_suspect(rt, status);
        router_part_finish(p, status == STORAGE_ERR_REDIRECT ? STORAGE_ERR_UNAVAILABLE : status);
        return;
    }
    for (unsigned i = 0; i < p->count; i++) {  /* keep the hashes with commands unanswered */
        uint8_t m = p->mask[i] & flags[i] & q->full_mask;

        if (m) {
            p->idx[left] = p->idx[i];
            p->mask[left++] = m;
        }
    }
    p->count = left;
    if (left == 0) {
        router_part_finish(p, STORAGE_OK);
        return;
    }
    if (router_may_resend(q)) {
        struct redis_node_redirect rd;
        struct storage *ask_to;
        enum router_next next;

        storage_redis_node_report(p->sent_to, &rd);
        next = router_redirected(rt, p->sent_to, &rd, &ask_to);
        if (rd.kind == REDIS_CLUSTER_ERR_ASK && ask_to) {
            router_scrape_split(q, p->idx, p->mask, p->count, rd.at.slot, ask_to);
            router_part_finish(p, STORAGE_OK);
            return;
        }
        if (next == ROUTER_NOW) {
            router_scrape_split(q, p->idx, p->mask, p->count, -1, NULL);
            router_part_finish(p, STORAGE_OK);
            return;
        }
        if (next == ROUTER_LATER) {
            router_part_wait(p, router_backoff_ms(q->sends));
            return;
        }
    }
    router_part_finish(p, STORAGE_ERR_UNAVAILABLE);
}

/* Sends p to the owner of its slot, or with ASKING to p->ask_to. A part that cannot go out
 * ends with UNAVAILABLE. */
static void router_part_send(struct router_part *p)
{
    struct router_req *q = p->q;
    struct redis_router *rt = q->rt;
    struct storage *st = p->fixed_to ? p->fixed_to : p->ask_to ? p->ask_to : router_owner_slot(rt, p->slot);
    bool asking = p->ask_to != NULL;
    int rc = -1;

    q->sends++;
    if (!st) {
        router_refresh_soon(rt);
        router_part_finish(p, STORAGE_ERR_UNAVAILABLE);
        return;
    }
    p->sent_to = st;
    switch (p->kind) {
    case PART_SWARM:
        rc = asking ? storage_redis_node_announce_asking(st, &q->areq, router_swarm_cb, p)
                    : storage_announce(st, &q->areq, router_swarm_cb, p);
        break;
    case PART_ACCOUNT: {
        struct announce_req acct = q->areq;

        acct.event = q->event;             /* as the client sent it, whatever the swarm part's */
        rc = storage_redis_node_account(st, &acct, asking, router_status_cb, p);
        break;
    }
    case PART_USER:
    case PART_TORRENT:
        rc = storage_redis_node_lookup(st, &q->lreq, p->kind == PART_USER, asking, router_lookup_cb, p);
        break;
    case PART_HEALTH:
        rc = storage_health(st, router_status_cb, p);
        break;
    case PART_SCRAPE: {
        struct scrape_req *part = malloc(sizeof(*part));

        if (part) {
            bool some = false;             /* only some commands of a hash: send the masks */

            part->count = p->count;
            part->now_s = q->sreq->now_s;
            for (unsigned i = 0; i < p->count; i++) {
                memcpy(part->info_hash[i], q->sreq->info_hash[p->idx[i]], ANNOUNCE_HASH_LEN);
                some |= p->mask[i] != q->full_mask;
            }
            rc = storage_redis_node_scrape(st, part, some ? p->mask : NULL, asking, router_scrape_cb, p);
            free(part);
        }
        break;
    }
    }
    if (rc < 0)
        router_part_finish(p, STORAGE_ERR_UNAVAILABLE);
}

/* q->ev: the parts waiting for a back-off go out again; a request with nothing left in flight
 * (everything failed inside the user's call) is delivered. */
static void router_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct router_req *q = arg;
    struct router_part *p;
    (void)fd;
    (void)what;

    q->parts++;                            /* hold q while the resends go out */
    while ((p = q->waiting)) {
        q->waiting = p->next_waiting;
        if (q->rt->freeing) {
            router_part_finish(p, STORAGE_ERR_UNAVAILABLE);
        } else if (p->kind == PART_SCRAPE) {   /* by the map as it is now */
            router_scrape_split(q, p->idx, p->mask, p->count, -1, NULL);
            router_part_finish(p, STORAGE_OK);
        } else {
            router_part_send(p);
        }
    }
    if (--q->parts == 0)
        router_deliver(q, NULL);
}

/* ---- the operations ------------------------------------------------------------------------ */

static int router_announce(struct storage *st, const struct announce_req *req, storage_announce_cb *cb, void *arg)
{
    struct redis_router *rt = (struct redis_router *)st;
    struct router_part *swarm, *acct = NULL;
    struct router_req *q;

    if (rt->freeing || !(q = router_req_new(rt, ROUTER_ANNOUNCE, arg)))
        return -1;
    q->announce_cb = cb;
    q->areq = *req;
    q->event = req->event;
    swarm = router_part_new(q, PART_SWARM, router_slot(req->info_hash), 0);
    if (req->account.user[0])              /* private mode: the user's credit, another slot */
        acct = router_part_new(q, PART_ACCOUNT, router_private_slot(), 0);
    if (swarm)
        router_part_send(swarm);
    if (acct)
        router_part_send(acct);
    router_release(q);
    return 0;
}

/* Sends the hashes idx[0..count) of q, each with the commands mask gives (NULL: all), as parts,
 * one per node: the owner of the hash's slot, or ask_to with ASKING for slot ask_slot (-1: none).
 * The caller holds q. */
static void router_scrape_split(struct router_req *q, const uint16_t *idx, const uint8_t *mask, unsigned count,
                                int ask_slot, struct storage *ask_to)
{
    struct redis_router *rt = q->rt;
    struct router_part *group[REDIS_CLUSTER_MAX_NODES + 1];
    struct storage *dest[REDIS_CLUSTER_MAX_NODES + 1];
    unsigned ngroups = 0;

    for (unsigned i = 0; i < count; i++) {
        uint16_t s = router_slot(q->sreq->info_hash[idx[i]]);
        bool asking = ask_to && (int)s == ask_slot;
        struct storage *st = asking ? ask_to : router_owner_slot(rt, s);
        unsigned k;

        if (!st) {
            router_refresh_soon(rt);
            router_fail(q, STORAGE_ERR_UNAVAILABLE);
            continue;
        }
        for (k = 0; k < ngroups && !(dest[k] == st && (group[k]->ask_to != NULL) == asking); k++)
            ;
        if (k == ngroups) {
            if (ngroups == REDIS_CLUSTER_MAX_NODES + 1 || !(group[k] = router_part_new(q, PART_SCRAPE, s, count))) {
                router_fail(q, STORAGE_ERR_UNAVAILABLE);
                continue;
            }
            group[k]->ask_to = asking ? ask_to : NULL;
            dest[k] = st;
            ngroups++;
        }
        group[k]->mask[group[k]->count] = mask ? mask[i] : q->full_mask;
        group[k]->idx[group[k]->count++] = idx[i];
    }
    for (unsigned k = 0; k < ngroups; k++)
        router_part_send(group[k]);        /* to its slot's owner: every hash of it has that one */
}

static int router_scrape(struct storage *st, const struct scrape_req *req, storage_scrape_cb *cb, void *arg)
{
    struct redis_router *rt = (struct redis_router *)st;
    unsigned count = req->count > SCRAPE_MAX_HASHES ? SCRAPE_MAX_HASHES : req->count;
    uint16_t idx[SCRAPE_MAX_HASHES];
    struct router_req *q;

    if (rt->freeing || !(q = router_req_new(rt, ROUTER_SCRAPE, arg)))
        return -1;
    q->scrape_cb = cb;
    q->sreq = malloc(sizeof(*q->sreq));
    q->stats = calloc(count ? count : 1, sizeof(*q->stats));
    q->unapproved = calloc(count ? count : 1, 1);
    q->full_mask = rt->cfg->private_enabled ? 0xf : 0x7;
    if (!q->sreq || !q->stats || !q->unapproved) {
        router_fail(q, STORAGE_ERR_INTERNAL);
    } else {
        *q->sreq = *req;
        q->sreq->count = count;
        for (unsigned i = 0; i < count; i++)
            idx[i] = (uint16_t)i;
        router_scrape_split(q, idx, NULL, count, -1, NULL);
    }
    router_release(q);
    return 0;
}

/* Private mode: the passkey's user from the {private} slot's owner and, for an announce, the
 * torrent's rules from the swarm's, at once. */
static int router_lookup(struct storage *st, const struct storage_lookup_req *req, storage_lookup_cb *cb, void *arg)
{
    struct redis_router *rt = (struct redis_router *)st;
    struct router_part *user, *torrent = NULL;
    struct router_req *q;

    if (rt->freeing || !(q = router_req_new(rt, ROUTER_LOOKUP, arg)))
        return -1;
    q->lookup_cb = cb;
    q->lreq = *req;
    user = router_part_new(q, PART_USER, router_private_slot(), 0);
    if (req->with_torrent)
        torrent = router_part_new(q, PART_TORRENT, router_slot(req->info_hash), 0);
    if (user)
        router_part_send(user);
    if (torrent)
        router_part_send(torrent);
    router_release(q);
    return 0;
}

/* Every primary answers a PING. */
static int router_health(struct storage *st, storage_health_cb *cb, void *arg)
{
    struct redis_router *rt = (struct redis_router *)st;
    struct router_req *q;

    if (rt->freeing || !(q = router_req_new(rt, ROUTER_HEALTH, arg)))
        return -1;
    q->health_cb = cb;
    if (!rt->map || !redis_cluster_map_complete(rt->map)) {
        router_refresh_soon(rt);
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
    }
    for (unsigned i = 0; q->status == STORAGE_OK && rt->map && i < rt->map->nnodes; i++) {
        struct router_part *p;

        if (!rt->node[i])
            router_fail(q, STORAGE_ERR_UNAVAILABLE);
        else if ((p = router_part_new(q, PART_HEALTH, 0, 0))) {
            p->fixed_to = rt->node[i];
            router_part_send(p);
        }
    }
    router_release(q);
    return 0;
}

/* ---- life ---------------------------------------------------------------------------------- */

static void router_free(struct storage *st)
{
    struct redis_router *rt = (struct redis_router *)st;

    rt->freeing = true;
    /* The nodes call back their requests with UNAVAILABLE: the router delivers them as they come
     * (no resend while freeing). */
    for (unsigned i = 0; rt->map && i < rt->map->nnodes; i++) {
        struct storage *node = rt->node[i];

        rt->node[i] = NULL;                /* out of the sums before its callbacks run */
        storage_free(node);
    }
    router_sweep_cb(-1, 0, rt);
    while (rt->reqs) {                     /* waiting for a back-off or their deferred callback */
        router_fail(rt->reqs, STORAGE_ERR_UNAVAILABLE);
        router_deliver(rt->reqs, NULL);
    }
    event_free(rt->refresh_ev);
    event_free(rt->watch_ev);
    event_free(rt->sweep_ev);
    free(rt->map);
    free(rt->cfg);
    free(rt);
}

static const struct storage_ops router_ops = {
    .announce = router_announce,
    .scrape = router_scrape,
    .health = router_health,
    .lookup = router_lookup,
    .free = router_free,
};

struct storage *storage_redis_cluster_new(const struct config *cfg, struct event_base *base, char *err,
                                          size_t errlen)
{
    struct redis_router *rt = calloc(1, sizeof(*rt));

    if (!rt || !(rt->cfg = malloc(sizeof(*rt->cfg)))) {
        free(rt);
        snprintf(err, errlen, "redis cluster: out of memory");
        return NULL;
    }
    *rt->cfg = *cfg;
    rt->base.ops = &router_ops;
    rt->evbase = base;
    rt->refresh_ev = evtimer_new(base, router_refresh_cb, rt);
    rt->sweep_ev = event_new(base, -1, 0, router_sweep_cb, rt);
    rt->watch_ev = event_new(base, -1, EV_PERSIST, router_watch_cb, rt);
    {
        struct timeval tv = router_tv(ROUTER_REFRESH_MS);

        if (rt->watch_ev && evtimer_add(rt->watch_ev, &tv) < 0) {
            event_free(rt->watch_ev);
            rt->watch_ev = NULL;
        }
    }
    if (!rt->refresh_ev || !rt->sweep_ev || !rt->watch_ev) {
        if (rt->refresh_ev)
            event_free(rt->refresh_ev);
        if (rt->watch_ev)
            event_free(rt->watch_ev);
        if (rt->sweep_ev)
            event_free(rt->sweep_ev);
        free(rt->cfg);
        free(rt);
        snprintf(err, errlen, "redis cluster: out of memory");
        return NULL;
    }
    /* Like a single Redis that is down, a cluster that does not answer yet is no reason not to
     * start: requests fail fast until a map is read (tried again each ROUTER_REFRESH_MS). */
    router_refresh_now(rt);
    if (!rt->map)
        router_refresh_soon(rt);
    return &rt->base;
}
