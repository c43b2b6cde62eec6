/* Redis Cluster routing for the workers (issue 12, redis.cluster: true).
 *
 * The router is a storage (storage/storage.h) made of node storages (storage/redis_node.h): one
 * storage/redis.c connection per primary of the slot map, so each node keeps the pipelining, the
 * deadlines and the backlog accounting a single Redis has. An announce goes whole to the primary
 * that owns its swarm's slot (every key of a swarm is tagged "{<hex>}": one slot); a scrape is
 * split by owner and joined. A node that did not run a request (MOVED, ASK, TRYAGAIN, READONLY)
 * finishes it with STORAGE_ERR_REDIRECT once every reply of it came, and the router resends it:
 *   MOVED     the slot has a new owner: point the slot there (the whole map is read again soon)
 *             and resend;
 *   ASK       the slot is migrating and a key is on the target already: resend there with ASKING;
 *   TRYAGAIN  a multi-key command found its keys split by a migration: resend shortly;
 *   READONLY  the node is a replica now: read the map again, resend.
 * CLUSTERDOWN and a lost node fail fast (the cluster heals in seconds, after its failover) and
 * make the router read the map again, at most once a ROUTER_REFRESH_MS.
 *
 * A resend never counts twice. A node checks where a command's keys live before it runs the
 * command, so a redirected command did not run (storage/redis_cluster.h). Of an announce only
 * its MULTI ... EXEC is not idempotent (the completed move's count): a redirection inside it
 * aborts the whole transaction, and when the EXEC did run and a later command (a read) was
 * redirected, the resend carries no completed event, so the same sets are written and nothing is
 * counted again. The statistics' counters are added up only after a request succeeded.
 *
 * Reading the map is synchronous and bounded (storage/redis_cluster_seed.c: redis.timeout_ms an
 * address): at start, and after a redirection or a failure, at most once a ROUTER_REFRESH_MS. */
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

enum router_kind { ROUTER_ANNOUNCE, ROUTER_SCRAPE, ROUTER_HEALTH };

struct redis_router;

/* One user request; a scrape's parts (one per node) point back to it. */
struct router_req {
    struct router_req *prev, *next;        /* rt->reqs */
    struct redis_router *rt;
    enum router_kind kind;
    unsigned sends;                        /* sends so far (a scrape: rounds of parts) */
    uint64_t deadline_ms;                  /* monotonic: no resend after this */
    unsigned parts;                        /* scrape and health: parts not answered yet */
    int status;                            /* first failure wins */
    struct event *ev;                      /* deferred delivery or a delayed resend */
    void *arg;
    /* announce */
    storage_announce_cb *announce_cb;
    struct announce_req areq;
    struct storage *sent_to;
    struct storage *ask_to;                /* the next send goes here with ASKING; NULL: the owner */
    /* scrape */
    storage_scrape_cb *scrape_cb;
    struct scrape_req *sreq;
    struct swarm_stats *stats;             /* sreq->count */
    /* health */
    storage_health_cb *health_cb;
};

/* A part of a scrape: the hashes (indexes into the request) one node answers. */
struct router_part {
    struct router_req *q;
    struct storage *sent_to;
    bool asking;
    struct event *ev;                      /* a delayed resend */
    unsigned count;
    uint16_t idx[SCRAPE_MAX_HASHES];
};

struct redis_router {
    struct storage base;                   /* first: the interface */
    struct event_base *evbase;
    struct config *cfg;                    /* a copy: the map is read with it again */
    struct redis_cluster_map *map;         /* NULL until the first map was read */
    struct storage *node[REDIS_CLUSTER_MAX_NODES]; /* by map->node index */
    uint64_t refreshed_ms;                 /* monotonic: the last read of the map (tried) */
    bool refresh_due;                      /* refresh_ev is armed */
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

/* Reads the map now (blocking, bounded). */
static void router_refresh_now(struct redis_router *rt)
{
    struct redis_cluster_map *m = malloc(sizeof(*m));
    char err[512];

    rt->refreshed_ms = router_now_ms();
    if (!m) {
        log_error("redis cluster: out of memory");
        return;
    }
    if (redis_cluster_fetch_map(rt->cfg, rt->map, m, err, sizeof(err)) < 0) {
        log_warn("redis cluster: %s", err);
        free(m);
        return;
    }
    if (!redis_cluster_map_complete(m))
        log_warn("redis cluster: some slots have no primary (the cluster is down or being set up)");
    router_apply(rt, m);
}

static void router_refresh_soon(struct redis_router *rt);

static void router_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_router *rt = arg;
    (void)fd;
    (void)what;

    rt->refresh_due = false;
    if (!rt->freeing)
        router_refresh_now(rt);
    if (!rt->map)
        router_refresh_soon(rt);           /* no map yet: try again */
}

/* Asks for the map to be read again, from the loop's top level, at most once a ROUTER_REFRESH_MS. */
static void router_refresh_soon(struct redis_router *rt)
{
    uint64_t since = router_now_ms() - rt->refreshed_ms;
    struct timeval tv = router_tv(since >= ROUTER_REFRESH_MS ? 0 : (int)(ROUTER_REFRESH_MS - since));

    if (rt->refresh_due || rt->freeing)
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

/* The node storage that owns the swarm of info_hash, or NULL (no map, an unowned slot). */
static struct storage *router_owner(struct redis_router *rt, const uint8_t *info_hash)
{
    int i;

    if (!rt->map)
        return NULL;
    i = redis_cluster_node_for_slot(rt->map, router_slot(info_hash));
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

static void router_req_ev_cb(evutil_socket_t fd, short what, void *arg);

static struct router_req *router_req_new(struct redis_router *rt, enum router_kind kind, void *arg)
{
    struct router_req *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    if (!(q->ev = evtimer_new(rt->evbase, router_req_ev_cb, q))) {
        free(q);
        return NULL;
    }
    q->rt = rt;
    q->deadline_ms = router_now_ms() + (uint64_t)(rt->cfg->redis_timeout_ms > 0 ? rt->cfg->redis_timeout_ms : 1000);
    q->kind = kind;
    q->arg = arg;
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
    event_free(q->ev);
    free(q->sreq);
    free(q->stats);
    free(q);
}

/* Runs the user's callback once, then frees q. */
static void router_deliver(struct router_req *q, const struct announce_reply *rep)
{
    if (q->status != STORAGE_OK)
        q->rt->failed++;
    router_sum(q->rt);
    switch (q->kind) {
    case ROUTER_ANNOUNCE:
        q->announce_cb(q->status == STORAGE_OK ? rep : NULL, q->status, q->arg);
        break;
    case ROUTER_SCRAPE:
        if (q->status == STORAGE_OK) {
            struct scrape_reply srep = { .count = q->sreq->count, .stats = q->stats };

            q->scrape_cb(&srep, STORAGE_OK, q->arg);
        } else {
            q->scrape_cb(NULL, q->status, q->arg);
        }
        break;
    case ROUTER_HEALTH:
        q->health_cb(q->status, q->arg);
        break;
    }
    router_req_free(q);
}

static void router_fail(struct router_req *q, int status)
{
    if (q->status == STORAGE_OK)
        q->status = status;
}

static void router_announce_send(struct router_req *q);

/* q->ev fired: a failure to deliver (never from inside the user's call) or a delayed resend. */
static void router_req_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct router_req *q = arg;
    (void)fd;
    (void)what;

    if (q->status == STORAGE_OK && q->kind == ROUTER_ANNOUNCE && !q->rt->freeing) {
        router_announce_send(q);
        return;
    }
    router_fail(q, STORAGE_ERR_UNAVAILABLE);
    router_deliver(q, NULL);
}

/* Runs router_req_ev_cb after ms. */
static void router_req_later(struct router_req *q, int ms)
{
    struct timeval tv = router_tv(ms);

    evtimer_add(q->ev, &tv);
}

/* After a node's failure (not a redirection): the map may be stale (a primary died). */
static void router_suspect(struct redis_router *rt, int status)
{
    if (status == STORAGE_ERR_UNAVAILABLE || status == STORAGE_ERR_TIMEOUT)
        router_refresh_soon(rt);
}

/* What a request does after a node did not run it. */
enum router_next {
    ROUTER_FAIL,                           /* deliver the failure (CLUSTERDOWN, out of budget) */
    ROUTER_NOW,                            /* resend at once (MOVED: to the new owner; ASK: to *ask_to) */
    ROUTER_LATER,                          /* resend to the owner after a back-off: a migration
                                            * has the request's keys split between two nodes */
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
    return sends >= 6 ? ROUTER_BACKOFF_MAX_MS : (5 << sends) > ROUTER_BACKOFF_MAX_MS ? ROUTER_BACKOFF_MAX_MS : 5 << sends;
}

/* The next step after rd, what node `from` said. ASK sends a request to the importing node only
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

/* ---- announce ------------------------------------------------------------------------------ */

static void router_announce_cb(const struct announce_reply *rep, int status, void *arg)
{
    struct router_req *q = arg;
    struct redis_router *rt = q->rt;

    if (status == STORAGE_ERR_REDIRECT && router_may_resend(q)) {
        struct redis_node_redirect rd;
        struct storage *ask_to;
        enum router_next next;

        storage_redis_node_redirect(q->sent_to, &rd);
        /* The EXEC ran (its completion counted) before a later command was redirected: the
         * resend writes the same sets without the event, so nothing is counted twice. */
        if (rd.exec_applied && q->areq.event == ANNOUNCE_EVENT_COMPLETED)
            q->areq.event = ANNOUNCE_EVENT_NONE;
        next = router_redirected(rt, q->sent_to, &rd, &ask_to);
        q->ask_to = next == ROUTER_NOW ? ask_to : NULL;
        if (next == ROUTER_NOW) {
            router_announce_send(q);
            return;
        }
        if (next == ROUTER_LATER) {
            router_req_later(q, router_backoff_ms(q->sends));
            return;
        }
    }
    router_suspect(rt, status);
    router_fail(q, status == STORAGE_ERR_REDIRECT ? STORAGE_ERR_UNAVAILABLE : status);
    router_deliver(q, rep);
}

static void router_announce_send(struct router_req *q)
{
    struct redis_router *rt = q->rt;
    struct storage *st = q->ask_to ? q->ask_to : router_owner(rt, q->areq.info_hash);
    int rc;

    q->sends++;
    if (!st) {
        router_refresh_soon(rt);
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
        router_req_later(q, 0);
        return;
    }
    q->sent_to = st;
    rc = q->ask_to ? storage_redis_node_announce_asking(st, &q->areq, router_announce_cb, q)
                   : storage_announce(st, &q->areq, router_announce_cb, q);
    if (rc < 0) {
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
        router_req_later(q, 0);
    }
}

static int router_announce(struct storage *st, const struct announce_req *req, storage_announce_cb *cb, void *arg)
{
    struct redis_router *rt = (struct redis_router *)st;
    struct router_req *q;

    if (rt->freeing || !(q = router_req_new(rt, ROUTER_ANNOUNCE, arg)))
        return -1;
    q->announce_cb = cb;
    q->areq = *req;
    router_announce_send(q);
    return 0;
}

/* ---- scrape: one part per node, joined ----------------------------------------------------- */

/* How router_scrape_split places the hashes of a migrating slot (the others go to their owner). */
enum router_split {
    ROUTER_SPLIT_OWNER,                    /* to the owner too */
    ROUTER_SPLIT_ASK,                      /* to the importing node, with ASKING */
    ROUTER_SPLIT_SINGLES,                  /* to the owner, one hash a part: each learns on its own
                                            * whether its keys moved (a part's keys answered by
                                            * one hash say nothing of another's) */
};

static void router_part_cb(const struct scrape_reply *rep, int status, void *arg);

/* Sends part p (its hashes copied into a request of their own). A part that cannot go out is
 * counted done at once; the caller holds q (q->parts), so it is never the last. */
static void router_part_send(struct router_part *p)
{
    struct scrape_req *part = malloc(sizeof(*part));
    struct router_req *q = p->q;
    int rc = -1;

    if (part) {
        part->count = p->count;
        part->now_s = q->sreq->now_s;
        for (unsigned i = 0; i < p->count; i++)
            memcpy(part->info_hash[i], q->sreq->info_hash[p->idx[i]], ANNOUNCE_HASH_LEN);
        rc = p->asking ? storage_redis_node_scrape_asking(p->sent_to, part, router_part_cb, p)
                       : storage_scrape(p->sent_to, part, router_part_cb, p);
        free(part);
    }
    if (rc < 0) {
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
        q->parts--;
        free(p);
    }
}

static struct router_part *router_part_new(struct router_req *q, struct storage *to, bool asking)
{
    struct router_part *p = calloc(1, sizeof(*p));

    if (!p) {
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
        return NULL;
    }
    p->q = q;
    p->sent_to = to;
    p->asking = asking;
    q->parts++;
    return p;
}

/* Sends the hashes idx[0..count) of q as parts, one per node (see enum router_split for the
 * hashes of slot `slot`). The caller holds q. */
static void router_scrape_split(struct router_req *q, const uint16_t *idx, unsigned count, enum router_split how,
                                uint16_t slot, struct storage *ask_to)
{
    struct redis_router *rt = q->rt;
    struct router_part *group[REDIS_CLUSTER_MAX_NODES + 1];
    unsigned ngroups = 0;

    q->sends++;
    for (unsigned i = 0; i < count; i++) {
        const uint8_t *h = q->sreq->info_hash[idx[i]];
        bool migrating = how != ROUTER_SPLIT_OWNER && router_slot(h) == slot;
        bool asking = migrating && how == ROUTER_SPLIT_ASK && ask_to;
        struct storage *st = asking ? ask_to : router_owner(rt, h);
        struct router_part *p = NULL;
        unsigned k;

        if (!st) {
            router_refresh_soon(rt);
            router_fail(q, STORAGE_ERR_UNAVAILABLE);
            continue;
        }
        if (migrating && how == ROUTER_SPLIT_SINGLES) {
            if ((p = router_part_new(q, st, false))) {
                p->idx[p->count++] = idx[i];
                router_part_send(p);
            }
            continue;
        }
        for (k = 0; k < ngroups && !(group[k]->sent_to == st && group[k]->asking == asking); k++)
            ;
        if (k == ngroups) {
            if (ngroups == REDIS_CLUSTER_MAX_NODES + 1 || !(group[k] = router_part_new(q, st, asking))) {
                router_fail(q, STORAGE_ERR_UNAVAILABLE);
                continue;
            }
            ngroups++;
        }
        group[k]->idx[group[k]->count++] = idx[i];
    }
    for (unsigned k = 0; k < ngroups; k++)
        router_part_send(group[k]);
}

/* A part's delayed resend: its hashes go out again by the map as it is now. */
static void router_part_later_cb(evutil_socket_t fd, short what, void *arg)
{
    struct router_part *p = arg;
    struct router_req *q = p->q;
    (void)fd;
    (void)what;

    if (!q->rt->freeing)
        router_scrape_split(q, p->idx, p->count, ROUTER_SPLIT_OWNER, 0, NULL);
    else
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
    event_free(p->ev);
    free(p);
    if (--q->parts == 0)
        router_deliver(q, NULL);
}

/* Resends p after ms, or fails it (no event). Returns true if p was kept for that. */
static bool router_part_later(struct router_part *p, int ms)
{
    struct timeval tv = router_tv(ms);

    if (!(p->ev = evtimer_new(p->q->rt->evbase, router_part_later_cb, p)) || evtimer_add(p->ev, &tv) < 0) {
        if (p->ev)
            event_free(p->ev);
        p->ev = NULL;
        return false;
    }
    return true;
}

static void router_part_cb(const struct scrape_reply *rep, int status, void *arg)
{
    struct router_part *p = arg;
    struct router_req *q = p->q;
    struct redis_router *rt = q->rt;

    if (status == STORAGE_OK) {
        for (unsigned i = 0; i < p->count && i < rep->count; i++)
            q->stats[p->idx[i]] = rep->stats[i];
    } else if (status == STORAGE_ERR_REDIRECT && q->status == STORAGE_OK && router_may_resend(q)) {
        /* Scrapes are reads: any of their hashes may be asked again. */
        struct redis_node_redirect rd;
        struct storage *ask_to;
        enum router_next next;

        storage_redis_node_redirect(p->sent_to, &rd);
        next = router_redirected(rt, p->sent_to, &rd, &ask_to);
        if (next == ROUTER_NOW && rd.kind == REDIS_CLUSTER_ERR_ASK)
            router_scrape_split(q, p->idx, p->count, ROUTER_SPLIT_ASK, rd.at.slot, ask_to);
        else if (next == ROUTER_LATER && rd.kind == REDIS_CLUSTER_ERR_ASK && p->count > 1)
            router_scrape_split(q, p->idx, p->count, ROUTER_SPLIT_SINGLES, rd.at.slot, NULL);
        else if (next == ROUTER_NOW)
            router_scrape_split(q, p->idx, p->count, ROUTER_SPLIT_OWNER, 0, NULL);
        else if (next == ROUTER_LATER && router_part_later(p, router_backoff_ms(q->sends)))
            return;                        /* p still counts in q->parts */
        else
            router_fail(q, STORAGE_ERR_UNAVAILABLE);
    } else {
        router_suspect(rt, status);
        router_fail(q, status == STORAGE_ERR_REDIRECT ? STORAGE_ERR_UNAVAILABLE : status);
    }
    free(p);
    if (--q->parts == 0)                   /* this part held q while its resends went out */
        router_deliver(q, NULL);
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
    if (!q->sreq || !q->stats) {
        router_fail(q, STORAGE_ERR_INTERNAL);
        router_req_later(q, 0);
        return 0;
    }
    *q->sreq = *req;
    q->sreq->count = count;
    for (unsigned i = 0; i < count; i++)
        idx[i] = (uint16_t)i;
    q->parts = 1;                          /* held while the parts go out: none finishes q early */
    router_scrape_split(q, idx, count, ROUTER_SPLIT_OWNER, 0, NULL);
    if (--q->parts == 0)
        router_req_later(q, 0);            /* nothing went out (no hashes, no map) */
    return 0;
}

/* ---- health: every primary answers -------------------------------------------------------- */

static void router_health_cb(int status, void *arg)
{
    struct router_req *q = arg;

    router_suspect(q->rt, status);
    router_fail(q, status == STORAGE_ERR_REDIRECT ? STORAGE_ERR_UNAVAILABLE : status);
    if (--q->parts == 0)
        router_deliver(q, NULL);
}

static int router_health(struct storage *st, storage_health_cb *cb, void *arg)
{
    struct redis_router *rt = (struct redis_router *)st;
    struct router_req *q;

    if (rt->freeing || !(q = router_req_new(rt, ROUTER_HEALTH, arg)))
        return -1;
    q->health_cb = cb;
    q->parts = 1;
    if (!rt->map || !redis_cluster_map_complete(rt->map)) {
        router_refresh_soon(rt);
        router_fail(q, STORAGE_ERR_UNAVAILABLE);
    }
    for (unsigned i = 0; q->status == STORAGE_OK && rt->map && i < rt->map->nnodes; i++) {
        if (!rt->node[i]) {
            router_fail(q, STORAGE_ERR_UNAVAILABLE);
        } else {
            q->parts++;
            if (storage_health(rt->node[i], router_health_cb, q) < 0) {
                q->parts--;
                router_fail(q, STORAGE_ERR_UNAVAILABLE);
            }
        }
    }
    if (--q->parts == 0)
        router_req_later(q, 0);
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
    while (rt->reqs) {                     /* waiting for a timer: deliver now */
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
    .lookup = NULL,                        /* private mode: refused with redis.cluster (config) */
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
