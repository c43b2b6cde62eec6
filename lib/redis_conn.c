/* See lib/redis_conn.h. */
#include "lib/redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "lib/config.h"
#include "lib/log.h"
#include "storage/redis_cluster.h"
#include "storage/redis_cluster_seed.h"
#include "storage/redis_functions.h"
#include "storage/redis_sentinel.h"

/* ROLE's reply on a Sentinel-mode connection: a node that is not a master (the sentinels'
 * answer went stale) is let go; the owner's disconnect callback clears it and the next use
 * asks the sentinels again. */
static void redis_conn_role_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    if (reply != NULL && redis_sentinel_parse_role(reply) != 1) {
        log_warn("redis: the node the sentinels named is not a master (ROLE): reconnecting");
        redisAsyncDisconnect(ac);
    }
}

/* An async connection to t's address on base, with AUTH, SELECT, ROLE (Sentinel mode) and the
 * library queued first. */
static redisAsyncContext *redis_conn_open_target(const struct config *cfg, const struct config_redis_target *t,
                                                 struct event_base *base, void *data,
                                                 redisConnectCallback *on_connect,
                                                 redisDisconnectCallback *on_disconnect)
{
    redisAsyncContext *ac = t->unix_socket ? redisAsyncConnectUnix(t->path) : redisAsyncConnect(t->host, t->port);

    if (ac == NULL)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    if (redisLibeventAttach(ac, base) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (t->password[0] != '\0') {
        const char *argv[] = { "AUTH", t->password };
        redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, NULL);
    }
    if (t->db != 0)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", t->db);
    if (redis_sentinel_enabled(cfg))
        redisAsyncCommand(ac, redis_conn_role_cb, NULL, "ROLE");
    redis_conn_load_library(ac);
    return ac;
}

redisAsyncContext *redis_conn_open(const struct config *cfg, struct event_base *base, void *data,
                                   redisConnectCallback *on_connect, redisDisconnectCallback *on_disconnect)
{
    struct config_redis_target t;
    char err[256];

    if (config_parse_redis_url(cfg->redis_url, &t, err, sizeof(err)) < 0)
        return NULL;
    if (redis_sentinel_resolve(cfg, &t, err, sizeof(err)) < 0) {
        log_warn("redis sentinel: %s", err);
        return NULL;
    }
    return redis_conn_open_target(cfg, &t, base, data, on_connect, on_disconnect);
}

bool redis_conn_library_missing(const redisReply *reply)
{
    static const char missing[] = "ERR Function not found";

    return reply->type == REDIS_REPLY_ERROR && reply->str &&
           strncmp(reply->str, missing, sizeof(missing) - 1) == 0;
}

void redis_conn_check_failover(redisAsyncContext *ac, const redisReply *reply)
{
    if (!redis_sentinel_failover_error(reply) || (ac->c.flags & REDIS_DISCONNECTING))
        return;
    log_warn("redis: %s: reconnecting", reply->str);
    redisAsyncDisconnect(ac);
}

void redis_conn_load_library(redisAsyncContext *ac)
{
    const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", redis_functions_lua };

    redisAsyncCommandArgv(ac, NULL, NULL, 4, argv, NULL);
}

/* ---- a set of connections -------------------------------------------------------------------- */

struct redis_conns {
    const struct config *cfg;
    struct event_base *base;
    void *data;
    redis_conns_lost_fn *lost;
    struct redis_cluster_map *map;     /* redis.cluster: NULL until read */
    unsigned generation;               /* maps put in use */
    bool stale;                        /* a MOVED or a lost connection: refresh the map */
    bool refreshing;                   /* a CLUSTER SLOTS is out ... */
    redisAsyncContext *refresh_ac;     /* ... on this connection ... */
    uint64_t refresh_ms;               /* ... since (monotonic) */
    unsigned refresh_next;             /* the node the next refresh asks */
    unsigned refresh_failed;           /* refreshes in a row that got no map */
    uint64_t fetch_ms;                 /* monotonic: the last blocking read (one a second at most) */
    struct redis_cluster_redirect moved; /* the last MOVED's slot and owner: asked next (port 0: none) */
    int moved_from;                    /* the map's node that answered it (-1: not in the map) */
    redisAsyncContext *probe;          /* a connection to a MOVED's owner outside the map, for one
                                        * CLUSTER SLOTS */
    redisAsyncContext *ac[REDIS_CLUSTER_MAX_NODES]; /* by node; [0] alone without a cluster */
};

static int redis_conns_find(const struct redis_conns *c, const redisAsyncContext *ac)
{
    for (int i = 0; i < REDIS_CLUSTER_MAX_NODES; i++)
        if (c->ac[i] == ac)
            return i;
    return -1;
}

/* The connection ac went (or never came): hiredis frees it, the next use of its node reopens. */
static void redis_conns_gone(const redisAsyncContext *ac)
{
    struct redis_conns *c = ac->data;
    int i;

    if (ac == c->probe) {              /* its CLUSTER SLOTS was answered (NULL if not) */
        c->probe = NULL;
        return;
    }
    i = redis_conns_find(c, ac);

    if (i >= 0) {
        c->ac[i] = NULL;
        c->stale = c->cfg->redis_cluster;
    }
    if (c->lost)
        c->lost(c->data, ac);
}

static void redis_conns_on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        redis_conns_gone(ac);
}

static void redis_conns_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    redis_conns_gone(ac);
}

struct redis_conns *redis_conns_new(const struct config *cfg, struct event_base *base, void *data,
                                    redis_conns_lost_fn *lost)
{
    struct redis_conns *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->cfg = cfg;
    c->base = base;
    c->data = data;
    c->lost = lost;
    c->moved_from = -1;
    return c;
}

void redis_conns_free(struct redis_conns *c)
{
    if (!c)
        return;
    if (c->probe)
        redisAsyncFree(c->probe);      /* its callback runs now with NULL, then gone clears it */
    for (int i = 0; i < REDIS_CLUSTER_MAX_NODES; i++) {
        redisAsyncContext *ac = c->ac[i];
        if (ac) {
            c->ac[i] = NULL;
            redisAsyncFree(ac);        /* its callbacks run now, with NULL replies */
        }
    }
    free(c->map);
    free(c);
}

static bool redis_conns_same_map(const struct redis_cluster_map *a, const struct redis_cluster_map *b)
{
    if (a->nnodes != b->nnodes || memcmp(a->owner, b->owner, sizeof(a->owner)) != 0)
        return false;
    for (unsigned i = 0; i < a->nnodes; i++)
        if (a->node[i].port != b->node[i].port || strcmp(a->node[i].host, b->node[i].host) != 0)
            return false;
    return true;
}

/* Puts *m in use: the connections of primaries still in it move to their new index, the others
 * are let go (redisAsyncDisconnect: once their pending replies are in). The same map again (a
 * refresh after a lost connection, before any failover) changes nothing. */
static void redis_conns_apply(struct redis_conns *c, const struct redis_cluster_map *m)
{
    redisAsyncContext *keep[REDIS_CLUSTER_MAX_NODES] = { 0 };

    if (c->map && redis_conns_same_map(c->map, m))
        return;

    for (unsigned i = 0; c->map && i < c->map->nnodes; i++) {
        redisAsyncContext *ac = c->ac[i];
        int j = ac ? redis_cluster_map_find(m, c->map->node[i].host, c->map->node[i].port) : -1;

        c->ac[i] = NULL;
        if (j >= 0)
            keep[j] = ac;
        else if (ac)
            redisAsyncDisconnect(ac);
    }
    memcpy(c->ac, keep, sizeof(keep));
    if (!c->map)
        c->map = malloc(sizeof(*c->map));
    if (c->map) {
        char list[512] = "";

        memcpy(c->map, m, sizeof(*m));
        c->generation++;
        for (unsigned i = 0; i < m->nnodes; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), " %s:%u", m->node[i].host,
                     (unsigned)m->node[i].port);
        log_info("redis cluster: slot map %u: primaries%s", c->generation, list);
    }
}

static uint64_t redis_conns_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The blocking read of the map (see redis_conn.h): the first, or when no node answered. */
static void redis_conns_fetch(struct redis_conns *c)
{
    struct redis_cluster_map *m;
    uint64_t now_ms = redis_conns_now_ms();
    char err[320];

    if (c->fetch_ms != 0 && now_ms - c->fetch_ms < 1000)
        return;
    c->fetch_ms = now_ms;
    if (!(m = malloc(sizeof(*m))))
        return;
    if (redis_cluster_fetch_map(c->cfg, c->map, m, err, sizeof(err)) == 0) {
        redis_conns_apply(c, m);
        c->stale = false;
        c->refresh_failed = 0;
    } else {
        log_warn("redis cluster: %s", err);
    }
    free(m);
}

/* The connection to ask for the map after a MOVED: the owner it named knows its own slots best
 * (a node the map wrongly lists as their owner, a replica among them, may keep naming it). Its
 * connection of the set, or a one-question connection when the map does not list it. NULL: no
 * MOVED to follow (the caller asks the map's nodes in turn). */
static redisAsyncContext *redis_conns_moved_owner(struct redis_conns *c)
{
    struct config_redis_target t;
    char err[256];
    int i;

    if (c->moved.port == 0)
        return NULL;
    i = redis_cluster_map_find(c->map, c->moved.host, c->moved.port);
    if (i >= 0)
        return redis_conns_node(c, (unsigned)i);
    if (c->probe || config_parse_redis_url(c->cfg->redis_url, &t, err, sizeof(err)) < 0)
        return NULL;
    t.unix_socket = false;
    t.db = 0;
    snprintf(t.host, sizeof(t.host), "%s", c->moved.host);
    t.port = c->moved.port;
    c->probe = redis_conn_open_target(c->cfg, &t, c->base, c, redis_conns_on_connect, redis_conns_on_disconnect);
    if (c->probe)
        log_info("redis cluster: asking %s:%u, which a MOVED named and the map lacks, for the slot map", t.host,
                 (unsigned)t.port);
    return c->probe;
}

/* A map read after a MOVED that still gives the MOVED's slot to the node that answered it: the
 * cluster's nodes disagree (or the answer came from a node that has not heard yet). Said with the
 * addresses: the next MOVED asks again. */
static void redis_conns_note_contradiction(struct redis_conns *c, const struct redis_cluster_map *m,
                                           const redisAsyncContext *from)
{
    int owner;

    if (c->moved.port == 0)
        return;
    owner = redis_cluster_node_for_slot(m, c->moved.slot);
    if (owner >= 0 && c->moved_from >= 0 && c->map && (unsigned)c->moved_from < c->map->nnodes &&
        m->node[owner].port == c->map->node[c->moved_from].port &&
        strcmp(m->node[owner].host, c->map->node[c->moved_from].host) == 0)
        log_warn("redis cluster: CLUSTER SLOTS from %s:%d gives slot %u to %s:%u, which answered MOVED %u %s:%u",
                 from->c.tcp.host ? from->c.tcp.host : "?", from->c.tcp.port, (unsigned)c->moved.slot,
                 m->node[owner].host, (unsigned)m->node[owner].port, (unsigned)c->moved.slot, c->moved.host,
                 (unsigned)c->moved.port);
}

static void redis_conns_slots_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct redis_conns *c = privdata;
    redisReply *reply = reply_ptr;
    struct redis_cluster_map *m;
    char err[160];

    c->refreshing = false;
    c->refresh_ac = NULL;
    if (ac == c->probe && reply)
        redisAsyncDisconnect(ac);      /* one question only */
    if (!reply || !(m = malloc(sizeof(*m)))) {  /* gone with its connection: ask another node */
        c->moved.port = 0;
        c->stale = true;
        c->refresh_failed++;
        return;
    }
    if (redis_cluster_map_parse(reply, ac->c.tcp.host ? ac->c.tcp.host : "", m, err, sizeof(err)) == 0 &&
        m->nnodes > 0) {
        c->refresh_failed = 0;
        redis_conns_note_contradiction(c, m, ac);
        redis_conns_apply(c, m);
    } else {
        log_warn("redis cluster: CLUSTER SLOTS from %s:%d: %s", ac->c.tcp.host ? ac->c.tcp.host : "?",
                 ac->c.tcp.port, m->nnodes == 0 ? "no slots assigned" : err);
        c->stale = true;
        c->refresh_failed++;
    }
    c->moved.port = 0;
    c->moved_from = -1;
    free(m);
}

/* A stale map is asked again of one node (the next in turn), asynchronously; after every node of
 * the map failed in a row, blocking from the seeds too. */
static void redis_conns_refresh(struct redis_conns *c)
{
    redisAsyncContext *ac;

    /* A node that accepted the CLUSTER SLOTS and never answers (hung: its connection stays open)
     * would stop every refresh after it: past redis.timeout_ms its connection is let go (its
     * pending commands are answered NULL, the refresh's callback among them: another node is
     * asked next). */
    if (c->refreshing && redis_conns_now_ms() - c->refresh_ms > (uint64_t)c->cfg->redis_timeout_ms) {
        redisAsyncContext *hung = c->refresh_ac;
        int i = redis_conns_find(c, hung);

        log_warn("redis cluster: CLUSTER SLOTS to %s:%d unanswered after %d ms: closing that connection",
                 hung->c.tcp.host ? hung->c.tcp.host : "?", hung->c.tcp.port, c->cfg->redis_timeout_ms);
        /* Out of the set first: hiredis calls no disconnect callback for a connection that never
         * connected (a SYN nobody answers), which would leave a freed pointer here. */
        if (hung == c->probe)
            c->probe = NULL;
        else if (i >= 0)
            c->ac[i] = NULL;
        c->stale = true;
        redisAsyncFree(hung);          /* the refresh's callback runs, with NULL */
    }
    if (!c->stale || c->refreshing)
        return;
    if (!c->map || c->refresh_failed >= c->map->nnodes) {
        redis_conns_fetch(c);
        return;
    }
    c->stale = false;
    ac = redis_conns_moved_owner(c);
    if (!ac)
        ac = redis_conns_node(c, c->refresh_next++ % c->map->nnodes);
    if (ac && redisAsyncCommand(ac, redis_conns_slots_cb, c, "CLUSTER SLOTS") == REDIS_OK) {
        c->refreshing = true;
        c->refresh_ac = ac;
        c->refresh_ms = redis_conns_now_ms();
    } else {
        c->moved.port = 0;             /* the next try asks the map's nodes in turn */
        c->stale = true;
        c->refresh_failed++;
    }
}

unsigned redis_conns_count(struct redis_conns *c)
{
    if (!c->cfg->redis_cluster)
        return 1;
    if (!c->map)
        redis_conns_fetch(c);
    else
        redis_conns_refresh(c);
    return c->map ? c->map->nnodes : 0;
}

unsigned redis_conns_generation(const struct redis_conns *c)
{
    return c->generation;
}

redisAsyncContext *redis_conns_node(struct redis_conns *c, unsigned i)
{
    if (i >= REDIS_CLUSTER_MAX_NODES || (c->cfg->redis_cluster ? !c->map || i >= c->map->nnodes : i > 0))
        return NULL;
    if (c->ac[i])
        return c->ac[i];
    if (!c->cfg->redis_cluster) {
        c->ac[0] = redis_conn_open(c->cfg, c->base, c, redis_conns_on_connect, redis_conns_on_disconnect);
    } else {
        struct config_redis_target t;
        char err[256];

        if (config_parse_redis_url(c->cfg->redis_url, &t, err, sizeof(err)) < 0)
            return NULL;
        t.unix_socket = false;         /* the password (and database 0) only: the address is the map's */
        t.db = 0;
        snprintf(t.host, sizeof(t.host), "%s", c->map->node[i].host);
        t.port = c->map->node[i].port;
        c->ac[i] = redis_conn_open_target(c->cfg, &t, c->base, c, redis_conns_on_connect, redis_conns_on_disconnect);
    }
    return c->ac[i];
}

void redis_conns_node_name(const struct redis_conns *c, int i, char *buf, size_t len)
{
    if (c->map && i >= 0 && (unsigned)i < c->map->nnodes)
        snprintf(buf, len, "%s:%u", c->map->node[i].host, (unsigned)c->map->node[i].port);
    else
        snprintf(buf, len, "none");
}

int redis_conns_node_of(struct redis_conns *c, const char *key)
{
    if (!c->cfg->redis_cluster)
        return 0;
    if (redis_conns_count(c) == 0)
        return -1;
    return redis_cluster_node_for_slot(c->map, redis_cluster_keyslot(key, strlen(key)));
}

redisAsyncContext *redis_conns_for_key(struct redis_conns *c, const char *key)
{
    int i = redis_conns_node_of(c, key);

    return i < 0 ? NULL : redis_conns_node(c, (unsigned)i);
}

void redis_conns_stale(struct redis_conns *c)
{
    c->stale = c->cfg->redis_cluster;
}

void redis_conns_check(redisAsyncContext *ac, const redisReply *reply)
{
    struct redis_conns *c = ac->data;
    struct redis_cluster_redirect at;

    redis_conn_check_failover(ac, reply);
    if (c->cfg->redis_cluster && reply->type == REDIS_REPLY_ERROR && reply->str &&
        redis_cluster_classify(reply->str, reply->len) == REDIS_CLUSTER_ERR_MOVED &&
        redis_cluster_parse_redirect(reply->str, reply->len, &at) == 0) {
        /* Said once per map refresh (a pass's census can meet one per swarm). */
        if (!c->stale)
            log_info("redis cluster: %s (from %s:%d, node %d of the map): reading the slot map again",
                     reply->str, ac->c.tcp.host ? ac->c.tcp.host : "?", ac->c.tcp.port, redis_conns_find(c, ac));
        if (at.host[0] == '\0')
            snprintf(at.host, sizeof(at.host), "%s", ac->c.tcp.host ? ac->c.tcp.host : "");
        c->moved = at;
        c->moved_from = redis_conns_find(c, ac);
        c->stale = true;
    }
}
