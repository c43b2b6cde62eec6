/* The storage contract: what every backend must do, written once and run against both, as the
 * groups "storage/memory" and "storage/redis". The Redis group needs a server named by
 * $TYTO_TEST_REDIS (a unix socket path or host:port); without one it fails, it does not skip.
 * A few Redis-only cases check the schema and the failure modes (down, paused, out of memory). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "lib/config.h"
#include "storage/redis_keys.h"
#include "storage/storage.h"

#define TEST_TTL_S 3600
#define TEST_WAIT_MS 5000
#define TEST_MAX_PEERS 200
/* Every request carries this synthetic clock (plus offsets), never the wall clock: expiry is
 * decided by the request's now_s, so no assertion depends on how long a test takes (valgrind on
 * a loaded box). It lies in the future so that Redis, which deletes keys by its own clock, keeps
 * every key for the whole run. */
#define TEST_EPOCH 2000000000LL

struct fx {
    struct event_base *base;
    struct storage *st;
    struct config cfg;
    bool redis;
    redisContext *side;                /* synchronous side connection (Redis group) */
    char prefix[48];                   /* unique per test, so tests never see each other's keys */
    int64_t now;
};

struct ann_result {
    bool returned;                     /* set right after the call returned */
    bool called;
    bool early;                        /* callback ran before the call returned */
    int calls;
    int status;
    struct swarm_stats stats;
    size_t n4, n6;
    uint8_t peers4[TEST_MAX_PEERS * PEER_COMPACT4_LEN];
    uint8_t peers6[TEST_MAX_PEERS * PEER_COMPACT6_LEN];
};

struct scrape_result {
    bool returned, called, early;
    int calls;
    int status;
    unsigned count;
    struct swarm_stats stats[8];
};

struct health_result {
    bool returned, called, early;
    int calls;
    int status;
};

static int fx_serial;

/* ---- fixtures ---------------------------------------------------------------------------- */

static void fx_config(struct fx *f)
{
    memset(&f->cfg, 0, sizeof(f->cfg));
    f->cfg.workers = 1;
    f->cfg.interval_s = 1800;
    f->cfg.min_interval_s = 900;
    f->cfg.peer_ttl_s = TEST_TTL_S;
    f->cfg.numwant_default = 50;
    f->cfg.numwant_max = TEST_MAX_PEERS;
    f->cfg.redis_timeout_ms = 2000;
    f->cfg.scrape_max_hashes = 64;
    snprintf(f->prefix, sizeof(f->prefix), "tytotest%d-%d:", (int)getpid(), ++fx_serial);
    snprintf(f->cfg.redis_prefix, sizeof(f->cfg.redis_prefix), "%s", f->prefix);
    f->now = TEST_EPOCH;
}

static int setup_memory(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    if (!f)
        return -1;
    fx_config(f);
    f->cfg.storage = CONFIG_STORAGE_MEMORY;
    f->base = event_base_new();
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));
    if (!f->st) {
        fprintf(stderr, "setup_memory: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

/* Fills the Redis URL from $TYTO_TEST_REDIS and opens the side connection. */
static int fx_redis_target(struct fx *f)
{
    const char *env = getenv("TYTO_TEST_REDIS");
    struct timeval tv = { 2, 0 };

    if (!env || !*env) {
        fprintf(stderr, "TYTO_TEST_REDIS is not set: the storage/redis group needs a Redis server\n");
        return -1;
    }
    if (env[0] == '/') {
        snprintf(f->cfg.redis_url, sizeof(f->cfg.redis_url), "unix://%s", env);
        f->side = redisConnectUnixWithTimeout(env, tv);
    } else {
        char host[128];
        const char *colon = strrchr(env, ':');
        size_t hlen = colon ? (size_t)(colon - env) : strlen(env);

        if (hlen >= sizeof(host))
            return -1;
        memcpy(host, env, hlen);
        host[hlen] = '\0';
        snprintf(f->cfg.redis_url, sizeof(f->cfg.redis_url), "redis://%s", env);
        f->side = redisConnectWithTimeout(host, colon ? atoi(colon + 1) : 6379, tv);
    }
    if (!f->side || f->side->err) {
        fprintf(stderr, "cannot reach Redis at %s: %s\n", env, f->side ? f->side->errstr : "no memory");
        return -1;
    }
    return 0;
}

/* Deletes every key under this test's prefix. */
static void fx_redis_flush(struct fx *f)
{
    redisReply *keys = redisCommand(f->side, "KEYS %s*", f->prefix);
    size_t i;

    if (!keys)
        return;
    if (keys->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < keys->elements; i++) {
            redisReply *r = redisCommand(f->side, "DEL %b", keys->element[i]->str,
                                         (size_t)keys->element[i]->len);
            if (r)
                freeReplyObject(r);
        }
    }
    freeReplyObject(keys);
}

static void health_wait_cb(int status, void *arg)
{
    *(int *)arg = status;
}

/* Waits for one health answer without cmocka asserts (fixtures). Returns 0 once it is OK. */
static int health_wait(struct storage *st, struct event_base *base)
{
    int status = 1;

    if (storage_health(st, health_wait_cb, &status) < 0)
        return -1;
    while (status == 1)
        event_base_loop(base, EVLOOP_ONCE);
    return status == STORAGE_OK ? 0 : -1;
}

static int setup_redis(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    if (!f)
        return -1;
    *state = f;
    fx_config(f);
    f->redis = true;
    f->cfg.storage = CONFIG_STORAGE_REDIS;
    f->base = event_base_new();
    if (fx_redis_target(f) < 0)
        return -1;
    fx_redis_flush(f);
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));
    if (!f->st) {
        fprintf(stderr, "setup_redis: %s\n", err);
        return -1;
    }
    /* Connected, and Redis's clock known (TIME goes out before the PING). */
    return health_wait(f->st, f->base);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (!f)
        return 0;
    storage_free(f->st);
    if (f->side) {
        fx_redis_flush(f);
        redisFree(f->side);
    }
    if (f->base)
        event_base_free(f->base);
    free(f);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until *flag is set or ms pass. Returns whether the flag was set. */
static bool run_until(struct event_base *base, const bool *flag, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    bool expired = false;
    struct event *t = evtimer_new(base, deadline_cb, &expired);

    evtimer_add(t, &tv);
    while (!*flag && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return *flag;
}

/* Runs the loop for ms milliseconds. */
static void run_for(struct event_base *base, int ms)
{
    bool never = false;

    run_until(base, &never, ms);
}

static void hash_of(uint8_t h[ANNOUNCE_HASH_LEN], int n)
{
    memset(h, n, ANNOUNCE_HASH_LEN);
    h[0] = 0xa5;
}

static struct peer_addr peer_of(const char *ip, uint16_t port)
{
    struct peer_addr p;

    memset(&p, 0, sizeof(p));
    p.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(p.family, ip, p.addr), 1);
    p.port = port;
    return p;
}

static struct announce_req req_of(int hash, const char *ip, uint16_t port, uint64_t left,
                                  enum announce_event event, unsigned numwant, int64_t now)
{
    struct announce_req r;

    memset(&r, 0, sizeof(r));
    hash_of(r.info_hash, hash);
    memset(r.peer_id, 'p', sizeof(r.peer_id));
    r.peer = peer_of(ip, port);
    r.left = left;
    r.event = event;
    r.numwant = numwant;
    r.compact = true;
    r.now_s = now;
    return r;
}

static void announce_cb(const struct announce_reply *rep, int status, void *arg)
{
    struct ann_result *res = arg;

    res->calls++;
    res->early = res->early || !res->returned;
    res->called = true;
    res->status = status;
    if (status != STORAGE_OK || !rep)
        return;
    res->stats = rep->stats;
    res->n4 = rep->peers4_count;
    res->n6 = rep->peers6_count;
    if (res->n4 <= TEST_MAX_PEERS && res->n4 > 0)
        memcpy(res->peers4, rep->peers4, res->n4 * PEER_COMPACT4_LEN);
    if (res->n6 <= TEST_MAX_PEERS && res->n6 > 0)
        memcpy(res->peers6, rep->peers6, res->n6 * PEER_COMPACT6_LEN);
}

/* One announce, run to its callback. Checks the callback ran exactly once, after the call. */
static void announce_on(struct storage *st, struct event_base *base, const struct announce_req *req,
                        struct ann_result *res)
{
    memset(res, 0, sizeof(*res));
    assert_int_equal(storage_announce(st, req, announce_cb, res), 0);
    res->returned = true;
    assert_true(run_until(base, &res->called, TEST_WAIT_MS));
    assert_false(res->early);
    assert_int_equal(res->calls, 1);
    assert_true(res->n4 <= TEST_MAX_PEERS && res->n6 <= TEST_MAX_PEERS);
}

static void announce(struct fx *f, const struct announce_req *req, struct ann_result *res)
{
    announce_on(f->st, f->base, req, res);
}

/* Announces and expects success. */
static void announce_ok(struct fx *f, int hash, const char *ip, uint16_t port, uint64_t left,
                        enum announce_event event, unsigned numwant, struct ann_result *res)
{
    struct announce_req req = req_of(hash, ip, port, left, event, numwant, f->now);

    announce(f, &req, res);
    assert_int_equal(res->status, STORAGE_OK);
}

/* Does res hold the peer ip:port (in the list its family belongs to)? */
static bool has_peer(const struct ann_result *res, const char *ip, uint16_t port)
{
    struct peer_addr p = peer_of(ip, port);
    uint8_t c[REDIS_KEYS_PEER_MAX];
    int n = redis_keys_peer_compact(&p, c);
    size_t i;

    if (n == PEER_COMPACT4_LEN) {
        for (i = 0; i < res->n4; i++)
            if (memcmp(res->peers4 + i * PEER_COMPACT4_LEN, c, PEER_COMPACT4_LEN) == 0)
                return true;
    } else {
        for (i = 0; i < res->n6; i++)
            if (memcmp(res->peers6 + i * PEER_COMPACT6_LEN, c, PEER_COMPACT6_LEN) == 0)
                return true;
    }
    return false;
}

static void assert_stats(const struct swarm_stats *s, uint32_t complete, uint32_t incomplete,
                         uint32_t downloaded)
{
    assert_int_equal(s->complete, complete);
    assert_int_equal(s->incomplete, incomplete);
    assert_int_equal(s->downloaded, downloaded);
}

static void scrape_cb(const struct scrape_reply *rep, int status, void *arg)
{
    struct scrape_result *res = arg;

    res->calls++;
    res->early = res->early || !res->returned;
    res->called = true;
    res->status = status;
    if (status != STORAGE_OK || !rep)
        return;
    res->count = rep->count;
    if (rep->count <= 8)
        memcpy(res->stats, rep->stats, rep->count * sizeof(*rep->stats));
}

static void health_cb(int status, void *arg)
{
    struct health_result *res = arg;

    res->calls++;
    res->early = res->early || !res->returned;
    res->called = true;
    res->status = status;
}

static int health_of(struct storage *st, struct event_base *base)
{
    struct health_result res;

    memset(&res, 0, sizeof(res));
    assert_int_equal(storage_health(st, health_cb, &res), 0);
    res.returned = true;
    assert_true(run_until(base, &res.called, TEST_WAIT_MS));
    assert_false(res.early);
    assert_int_equal(res.calls, 1);
    return res.status;
}

/* ---- the contract ------------------------------------------------------------------------ */

static void test_storage_first_announce_counts_itself(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 0, 1, 0);
    assert_int_equal(res.n4 + res.n6, 0);

    announce_ok(f, 2, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 1, 0, 0);
    assert_int_equal(res.n4 + res.n6, 0);
}

static void test_storage_second_peer_gets_first(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.2", 6882, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 0, 2, 0);
    assert_int_equal(res.n4, 1);
    assert_int_equal(res.n6, 0);
    assert_true(has_peer(&res, "10.0.0.1", 6881));
}

static void test_storage_never_returns_self(void **state)
{
    struct fx *f = *state;
    struct ann_result res;
    int i;

    for (i = 0; i < 3; i++) {
        announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_NONE, 50, &res);
        assert_stats(&res.stats, 0, 1, 0);
        assert_int_equal(res.n4 + res.n6, 0);
    }
    announce_ok(f, 1, "10.0.0.2", 6881, 100, ANNOUNCE_EVENT_NONE, 50, &res);
    for (i = 0; i < 10; i++) {
        announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_NONE, 1, &res);
        assert_int_equal(res.n4, 1);
        assert_true(has_peer(&res, "10.0.0.2", 6881));
        assert_false(has_peer(&res, "10.0.0.1", 6881));
    }
    /* Same address, other port: a different peer. */
    announce_ok(f, 1, "10.0.0.1", 6882, 100, ANNOUNCE_EVENT_NONE, 50, &res);
    assert_stats(&res.stats, 0, 3, 0);
    assert_int_equal(res.n4, 2);
    assert_false(has_peer(&res, "10.0.0.1", 6882));
}

static void test_storage_seeder_gets_only_leechers(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 1001, 0, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.2", 1002, 0, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.3", 1003, 5, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.4", 1004, 5, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.5", 1005, 0, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 3, 2, 0);
    assert_int_equal(res.n4, 2);
    assert_true(has_peer(&res, "10.0.0.3", 1003));
    assert_true(has_peer(&res, "10.0.0.4", 1004));
}

static void test_storage_leecher_gets_seeders_and_leechers(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 1001, 0, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.2", 1002, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.3", 1003, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 1, 2, 0);
    assert_int_equal(res.n4, 2);
    assert_true(has_peer(&res, "10.0.0.1", 1001));
    assert_true(has_peer(&res, "10.0.0.2", 1002));

    /* numwant 1: seeders come first. */
    announce_ok(f, 1, "10.0.0.3", 1003, 9, ANNOUNCE_EVENT_NONE, 1, &res);
    assert_int_equal(res.n4, 1);
    assert_true(has_peer(&res, "10.0.0.1", 1001));
}

static void test_storage_left_zero_moves_to_seeders(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 0, 1, 0);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_NONE, 50, &res);
    assert_stats(&res.stats, 1, 0, 0);
    /* And back (a re-check found a bad piece). */
    announce_ok(f, 1, "10.0.0.1", 6881, 7, ANNOUNCE_EVENT_NONE, 50, &res);
    assert_stats(&res.stats, 0, 1, 0);
}

static void test_storage_stopped_removes_peer(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.2", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.2", 6881, 0, ANNOUNCE_EVENT_STOPPED, 50, &res);
    assert_stats(&res.stats, 0, 1, 0);
    assert_int_equal(res.n4 + res.n6, 0);
    announce_ok(f, 1, "10.0.0.3", 6881, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 0, 2, 0);
    assert_int_equal(res.n4, 1);
    assert_true(has_peer(&res, "10.0.0.1", 6881));
    /* Stopping in an unknown swarm is fine and changes nothing. */
    announce_ok(f, 9, "10.0.0.3", 6881, 100, ANNOUNCE_EVENT_STOPPED, 50, &res);
    assert_stats(&res.stats, 0, 0, 0);
}

/* A download is a move from leecher to seeder by event=completed, counted once per move. */
static void test_storage_completed_counts_downloaded(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "10.0.0.1", 6881, 100, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    assert_stats(&res.stats, 1, 0, 1);
    /* The same completion announced again (a retry, a second tab): still one download. */
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    assert_stats(&res.stats, 1, 0, 1);
    /* A seeder that never leeched here (it had the data, or the tracker restarted). */
    announce_ok(f, 1, "10.0.0.2", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    assert_stats(&res.stats, 2, 0, 1);
    /* completed with left > 0 is not a download; the peer stays a leecher. */
    announce_ok(f, 1, "10.0.0.3", 6881, 50, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.3", 6881, 5, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    assert_stats(&res.stats, 2, 1, 1);
    /* A plain left == 0 re-announce moves the peer but is not a completion. */
    announce_ok(f, 1, "10.0.0.3", 6881, 0, ANNOUNCE_EVENT_NONE, 50, &res);
    assert_stats(&res.stats, 3, 0, 1);
    /* Back to leecher (a re-check found bad pieces), then done again: a second move. */
    announce_ok(f, 1, "10.0.0.1", 6881, 7, ANNOUNCE_EVENT_NONE, 50, &res);
    assert_stats(&res.stats, 2, 1, 1);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    assert_stats(&res.stats, 3, 0, 2);
    /* Stopping with event=stopped never counts. */
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_STOPPED, 50, &res);
    assert_stats(&res.stats, 2, 0, 2);
}

/* A leecher whose entry expired is no longer a leecher: its late completed is not a move. */
static void test_storage_completed_after_expiry_not_counted(void **state)
{
    struct fx *f = *state;
    struct announce_req req;
    struct ann_result res;

    req = req_of(1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, f->now);
    announce(f, &req, &res);
    req = req_of(1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, f->now + TEST_TTL_S);
    announce(f, &req, &res);
    assert_int_equal(res.status, STORAGE_OK);
    assert_stats(&res.stats, 1, 0, 0);
}

static void scrape_one(struct fx *f, int hash, int64_t now, struct swarm_stats *out)
{
    struct scrape_req *req = calloc(1, sizeof(*req));
    struct scrape_result res;

    assert_non_null(req);
    req->count = 1;
    hash_of(req->info_hash[0], hash);
    req->now_s = now;
    memset(&res, 0, sizeof(res));
    assert_int_equal(storage_scrape(f->st, req, scrape_cb, &res), 0);
    res.returned = true;
    assert_true(run_until(f->base, &res.called, TEST_WAIT_MS));
    assert_false(res.early);
    assert_int_equal(res.status, STORAGE_OK);
    assert_int_equal(res.count, 1);
    *out = res.stats[0];
    free(req);
}

/* Expires at (Redis EXPIRETIME: -1 no TTL, -2 no key). */
static long long side_expiretime(struct fx *f, int hash, enum redis_keys_kind kind);

/* swarm.downloaded_ttl_s 0 (the default): the count outlives every peer, and the swarm. */
static void test_storage_downloaded_kept_forever(void **state)
{
    struct fx *f = *state;
    struct announce_req req;
    struct ann_result res;
    struct swarm_stats s;

    announce_ok(f, 1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_STOPPED, 50, &res);
    assert_stats(&res.stats, 0, 0, 1);
    scrape_one(f, 1, f->now + 1, &s);
    assert_stats(&s, 0, 0, 1);
    /* Long after: the swarm's peers are long gone, the count is not. */
    scrape_one(f, 1, f->now + 100 * TEST_TTL_S, &s);
    assert_stats(&s, 0, 0, 1);
    req = req_of(1, "10.0.0.2", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, f->now + 100 * TEST_TTL_S);
    announce(f, &req, &res);
    assert_stats(&res.stats, 0, 1, 1);
    if (f->redis)
        assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_INFO), -1);
}

/* swarm.downloaded_ttl_s > 0: the count is forgotten that long after the swarm's last announce. */
static void test_storage_downloaded_ttl(void **state)
{
    struct fx *f = *state;
    const int64_t dttl = TEST_TTL_S + 1400;
    struct announce_req req;
    struct ann_result res;
    struct swarm_stats s;
    char err[256];

    storage_free(f->st);
    f->cfg.swarm_downloaded_ttl_s = (int)dttl;
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);

    announce_ok(f, 1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    assert_stats(&res.stats, 1, 0, 1);
    /* Any announce refreshes the retention, even after every peer expired. */
    req = req_of(1, "10.0.0.2", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, f->now + TEST_TTL_S + 100);
    announce(f, &req, &res);
    assert_stats(&res.stats, 0, 1, 1);
    if (f->redis) {
        /* Redis forgets by its own clock: check the deadline it was given. */
        assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_INFO), f->now + TEST_TTL_S + 100 + dttl);
    } else {
        scrape_one(f, 1, f->now + TEST_TTL_S + 100 + dttl - 1, &s);
        assert_stats(&s, 0, 0, 1);
        scrape_one(f, 1, f->now + TEST_TTL_S + 100 + dttl, &s);
        assert_stats(&s, 0, 0, 0);
        req = req_of(1, "10.0.0.3", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, f->now + TEST_TTL_S + 100 + dttl);
        announce(f, &req, &res);
        assert_stats(&res.stats, 0, 1, 0);
    }
}

/* The memory backend's peer index under churn: joins, moves, stops and expiry in one big swarm,
 * checked against a plain model (counts, and every sample drawn from the right sets). */
#define CHURN_PEERS 400
static void test_storage_churn_matches_model(void **state)
{
    struct fx *f = *state;
    int role[CHURN_PEERS];             /* 0 absent, 1 leecher, 2 seeder */
    int64_t seen[CHURN_PEERS];
    struct announce_req req;
    struct ann_result res;
    uint64_t x = 88172645463325252ULL;
    int step, i;

    memset(role, 0, sizeof(role));
    for (step = 0; step < 3000; step++) {
        int64_t now = f->now + step;   /* one second per step: TTL 3600 never passes */
        uint32_t s = 0, l = 0;
        int op;
        char ip[32];
        size_t k;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i = (int)(x % CHURN_PEERS);
        op = (int)((x >> 20) % 10);
        snprintf(ip, sizeof(ip), "10.2.%d.%d", i / 200, i % 200 + 1);
        if (op == 0) {
            req = req_of(1, ip, 6881, 0, ANNOUNCE_EVENT_STOPPED, 50, now);
            role[i] = 0;
        } else {
            req = req_of(1, ip, 6881, op < 5 ? 0 : 10, ANNOUNCE_EVENT_NONE, (unsigned)(x >> 40) % 60, now);
            role[i] = op < 5 ? 2 : 1;
            seen[i] = now;
        }
        announce(f, &req, &res);
        assert_int_equal(res.status, STORAGE_OK);
        for (k = 0; k < CHURN_PEERS; k++) {
            if (role[k] == 2)
                s++;
            else if (role[k] == 1)
                l++;
        }
        assert_int_equal(res.stats.complete, s);
        assert_int_equal(res.stats.incomplete, l);
        for (k = 0; k < res.n4; k++) {
            const uint8_t *c = res.peers4 + k * PEER_COMPACT4_LEN;
            int j = c[2] * 200 + c[3] - 1;
            size_t m;

            assert_true(j >= 0 && j < CHURN_PEERS && j != i);
            assert_true(role[j] == 1 || (role[j] == 2 && role[i] == 1));
            for (m = 0; m < k; m++)
                assert_memory_not_equal(res.peers4 + m * PEER_COMPACT4_LEN, c, PEER_COMPACT4_LEN);
        }
        if (role[i] != 0) {
            uint32_t want = req.numwant, avail = l - (role[i] == 1) + (role[i] == 1 ? s : 0);

            assert_int_equal(res.n4, want < avail ? want : avail);
        }
    }
    /* Everyone expires at once, long after the last step. */
    (void)seen;
    req = req_of(1, "10.3.0.1", 6881, 10, ANNOUNCE_EVENT_NONE, 50, f->now + 3000 + TEST_TTL_S);
    announce(f, &req, &res);
    assert_stats(&res.stats, 0, 1, 0);
}

static void test_storage_numwant_caps_sample(void **state)
{
    struct fx *f = *state;
    struct ann_result res;
    char ip[32];
    int i;

    for (i = 0; i < 10; i++) {
        snprintf(ip, sizeof(ip), "10.0.1.%d", i + 1);
        announce_ok(f, 1, ip, 6881, 0, ANNOUNCE_EVENT_STARTED, 0, &res);
        assert_int_equal(res.n4 + res.n6, 0);
    }
    announce_ok(f, 1, "10.0.2.1", 6881, 1, ANNOUNCE_EVENT_STARTED, 3, &res);
    assert_stats(&res.stats, 10, 1, 0);
    assert_int_equal(res.n4, 3);
    announce_ok(f, 1, "10.0.2.1", 6881, 1, ANNOUNCE_EVENT_NONE, 0, &res);
    assert_int_equal(res.n4 + res.n6, 0);
    announce_ok(f, 1, "10.0.2.1", 6881, 1, ANNOUNCE_EVENT_NONE, 200, &res);
    assert_int_equal(res.n4, 10);
    /* Past numwant_max the backend caps (and allocates nothing silly). */
    announce_ok(f, 1, "10.0.2.1", 6881, 1, ANNOUNCE_EVENT_NONE, 4000000000u, &res);
    assert_int_equal(res.n4, 10);
    /* Distinct peers. */
    for (i = 0; i < 10; i++) {
        snprintf(ip, sizeof(ip), "10.0.1.%d", i + 1);
        assert_true(has_peer(&res, ip, 6881));
    }
}

static void test_storage_expired_peers_vanish(void **state)
{
    struct fx *f = *state;
    struct announce_req req;
    struct ann_result res;
    int64_t t = f->now;

    req = req_of(1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, t);
    announce(f, &req, &res);
    assert_int_equal(res.status, STORAGE_OK);
    req = req_of(1, "10.0.0.2", 6881, 5, ANNOUNCE_EVENT_STARTED, 50, t + TEST_TTL_S - 1);
    announce(f, &req, &res);
    assert_stats(&res.stats, 1, 1, 0);
    assert_true(has_peer(&res, "10.0.0.1", 6881));

    req = req_of(1, "10.0.0.3", 6881, 5, ANNOUNCE_EVENT_STARTED, 50, t + TEST_TTL_S + 1);
    announce(f, &req, &res);
    assert_int_equal(res.status, STORAGE_OK);
    assert_stats(&res.stats, 0, 2, 0);
    assert_int_equal(res.n4, 1);
    assert_true(has_peer(&res, "10.0.0.2", 6881));
    assert_false(has_peer(&res, "10.0.0.1", 6881));
}

static void test_storage_ipv6_in_peers6(void **state)
{
    struct fx *f = *state;
    struct ann_result res;

    announce_ok(f, 1, "2001:db8::1", 6881, 5, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "10.0.0.2", 6882, 5, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "2001:db8::3", 6883, 5, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_stats(&res.stats, 0, 3, 0);
    assert_int_equal(res.n4, 1);
    assert_int_equal(res.n6, 1);
    assert_true(has_peer(&res, "10.0.0.2", 6882));
    assert_true(has_peer(&res, "2001:db8::1", 6881));
    assert_memory_equal(res.peers6, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\x1a\xe1", 18);
    assert_memory_equal(res.peers4, "\x0a\x00\x00\x02\x1a\xe2", 6);
}

static void test_storage_scrape_counts_hashes(void **state)
{
    struct fx *f = *state;
    struct scrape_result res;
    struct ann_result ares;
    struct scrape_req *req = calloc(1, sizeof(*req));

    assert_non_null(req);
    announce_ok(f, 1, "10.0.0.1", 6881, 3, ANNOUNCE_EVENT_STARTED, 50, &ares);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &ares);
    announce_ok(f, 1, "10.0.0.2", 6881, 3, ANNOUNCE_EVENT_STARTED, 50, &ares);
    announce_ok(f, 1, "10.0.0.3", 6881, 3, ANNOUNCE_EVENT_STARTED, 50, &ares);
    announce_ok(f, 2, "10.0.0.1", 6881, 3, ANNOUNCE_EVENT_STARTED, 50, &ares);
    req->count = 3;
    hash_of(req->info_hash[0], 2);
    hash_of(req->info_hash[1], 77);    /* unknown */
    hash_of(req->info_hash[2], 1);
    req->now_s = f->now;

    memset(&res, 0, sizeof(res));
    assert_int_equal(storage_scrape(f->st, req, scrape_cb, &res), 0);
    res.returned = true;
    assert_true(run_until(f->base, &res.called, TEST_WAIT_MS));
    assert_false(res.early);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, STORAGE_OK);
    assert_int_equal(res.count, 3);
    assert_stats(&res.stats[0], 0, 1, 0);
    assert_stats(&res.stats[1], 0, 0, 0);
    assert_stats(&res.stats[2], 1, 2, 1);

    /* Scrape counts only live peers, and does not need a reap to have happened. */
    req->count = 1;
    hash_of(req->info_hash[0], 1);
    req->now_s = f->now + TEST_TTL_S + 1;
    memset(&res, 0, sizeof(res));
    assert_int_equal(storage_scrape(f->st, req, scrape_cb, &res), 0);
    res.returned = true;
    assert_true(run_until(f->base, &res.called, TEST_WAIT_MS));
    assert_int_equal(res.status, STORAGE_OK);
    assert_stats(&res.stats[0], 0, 0, 1);
    free(req);
}

static void test_storage_health_ok(void **state)
{
    struct fx *f = *state;

    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
}

/* free() fails what is pending with UNAVAILABLE, each callback once. */
static void test_storage_free_fails_pending(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "10.0.0.1", 6881, 1, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct ann_result a, b;
    struct health_result h;

    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);   /* connected */
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&h, 0, sizeof(h));
    assert_int_equal(storage_announce(f->st, &req, announce_cb, &a), 0);
    a.returned = true;
    assert_int_equal(storage_announce(f->st, &req, announce_cb, &b), 0);
    b.returned = true;
    assert_int_equal(storage_health(f->st, health_cb, &h), 0);
    h.returned = true;
    storage_free(f->st);
    f->st = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(h.calls, 1);
    assert_int_equal(a.status, STORAGE_ERR_UNAVAILABLE);
    assert_int_equal(b.status, STORAGE_ERR_UNAVAILABLE);
    assert_int_equal(h.status, STORAGE_ERR_UNAVAILABLE);
    run_for(f->base, 50);
    assert_int_equal(a.calls, 1);
    assert_int_equal(h.calls, 1);
}

/* A callback may free the storage (a worker shutting down); the other pending call still gets
 * exactly one callback, and nothing touches freed memory (ASan/valgrind watch this one). */
struct free_in_cb {
    struct fx *f;
    struct ann_result *other;
    int calls;
};

static void free_in_cb_cb(const struct announce_reply *rep, int status, void *arg)
{
    struct free_in_cb *c = arg;

    (void)rep;
    (void)status;
    c->calls++;
    storage_free(c->f->st);
    c->f->st = NULL;
}

static void test_storage_free_from_callback(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "10.0.0.1", 6881, 1, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct ann_result other;
    struct free_in_cb c = { f, &other, 0 };

    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    memset(&other, 0, sizeof(other));
    assert_int_equal(storage_announce(f->st, &req, free_in_cb_cb, &c), 0);
    assert_int_equal(storage_announce(f->st, &req, announce_cb, &other), 0);
    other.returned = true;
    assert_true(run_until(f->base, &other.called, TEST_WAIT_MS));
    assert_int_equal(c.calls, 1);
    assert_null(f->st);
    run_for(f->base, 50);
    assert_int_equal(other.calls, 1);
    assert_false(other.early);
}

/* Calls made from inside a callback are answered too (the worker chains requests). */
struct chain {
    struct fx *f;
    struct ann_result second;
    bool first_done;
};

static void chain_cb(const struct announce_reply *rep, int status, void *arg)
{
    struct chain *c = arg;
    struct announce_req req = req_of(1, "10.0.0.2", 6881, 1, ANNOUNCE_EVENT_STARTED, 50, c->f->now);

    (void)rep;
    (void)status;
    c->first_done = true;
    memset(&c->second, 0, sizeof(c->second));
    storage_announce(c->f->st, &req, announce_cb, &c->second);
    c->second.returned = true;
}

static void test_storage_call_from_callback(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "10.0.0.1", 6881, 1, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct chain c;

    memset(&c, 0, sizeof(c));
    c.f = f;
    assert_int_equal(storage_announce(f->st, &req, chain_cb, &c), 0);
    assert_true(run_until(f->base, &c.first_done, TEST_WAIT_MS));
    assert_true(run_until(f->base, &c.second.called, TEST_WAIT_MS));
    assert_false(c.second.early);
    assert_int_equal(c.second.status, STORAGE_OK);
    assert_int_equal(c.second.n4, 1);
    assert_true(has_peer(&c.second, "10.0.0.1", 6881));
}

/* Many announces issued in one loop iteration all complete (Redis: one pipeline). */
static void test_storage_many_in_flight(void **state)
{
    struct fx *f = *state;
    struct ann_result *res = calloc(100, sizeof(*res));
    char ip[32];
    int i;

    assert_non_null(res);
    for (i = 0; i < 100; i++) {
        struct announce_req req;

        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 250, i % 250 + 1);
        req = req_of(1, ip, 6881, 1, ANNOUNCE_EVENT_STARTED, 5, f->now);
        assert_int_equal(storage_announce(f->st, &req, announce_cb, &res[i]), 0);
        res[i].returned = true;
    }
    assert_true(run_until(f->base, &res[99].called, TEST_WAIT_MS));
    for (i = 0; i < 100; i++) {
        assert_true(res[i].called);
        assert_false(res[i].early);
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].status, STORAGE_OK);
        /* Each reply counts the peers announced before it, plus itself. */
        assert_int_equal(res[i].stats.incomplete, (uint32_t)i + 1);
        assert_int_equal(res[i].n4, (size_t)(i < 5 ? i : 5));
    }
    free(res);
}

/* ---- Redis only -------------------------------------------------------------------------- */

static redisReply *side_cmd(struct fx *f, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(f->side, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static void key_of(struct fx *f, char *dst, int hash, enum redis_keys_kind kind)
{
    uint8_t h[ANNOUNCE_HASH_LEN];

    hash_of(h, hash);
    assert_true(redis_keys_swarm(dst, 160, f->prefix, h, kind) > 0);
}

static void test_storage_redis_schema(void **state)
{
    struct fx *f = *state;
    char kseed[160], kleech[160], kinfo[160], want[160];
    struct ann_result res;
    redisReply *r;
    size_t i;

    key_of(f, kseed, 1, REDIS_KEYS_SEEDERS);
    key_of(f, kleech, 1, REDIS_KEYS_LEECHERS);
    key_of(f, kinfo, 1, REDIS_KEYS_INFO);
    snprintf(want, sizeof(want), "%s{a5" "0101010101" "0101010101" "0101010101" "01010101" "}:seeders", f->prefix);
    assert_string_equal(kseed, want);

    announce_ok(f, 1, "1.2.3.4", 6881, 10, ANNOUNCE_EVENT_STARTED, 50, &res);
    announce_ok(f, 1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 50, &res);
    announce_ok(f, 1, "2001:db8::1", 51413, 10, ANNOUNCE_EVENT_STARTED, 50, &res);

    r = side_cmd(f, "ZRANGE %s 0 -1 WITHSCORES", kseed);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "1.2.3.4:6881");
    assert_int_equal(strtoll(r->element[1]->str, NULL, 10), f->now + TEST_TTL_S);
    freeReplyObject(r);

    r = side_cmd(f, "ZRANGE %s 0 -1 WITHSCORES", kleech);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "[2001:db8::1]:51413");
    assert_int_equal(strtoll(r->element[1]->str, NULL, 10), f->now + TEST_TTL_S);
    freeReplyObject(r);

    r = side_cmd(f, "HGET %s downloaded", kinfo);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1");
    freeReplyObject(r);

    /* A set expires with its last member; the count is kept (swarm.downloaded_ttl_s 0). */
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_SEEDERS), f->now + TEST_TTL_S);
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_LEECHERS), f->now + TEST_TTL_S);
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_INFO), -1);
    (void)i;
    r = side_cmd(f, "KEYS %s*", f->prefix);
    assert_int_equal(r->elements, 3);
    freeReplyObject(r);
}

static long long side_expiretime(struct fx *f, int hash, enum redis_keys_kind kind)
{
    char key[160];
    redisReply *r;
    long long t;

    key_of(f, key, hash, kind);
    r = side_cmd(f, "EXPIRETIME %s", key);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    t = r->integer;
    freeReplyObject(r);
    return t;
}

/* Every key under the test's prefix has a TTL, except the info hash of a swarm with a completion
 * in forever mode. Returns the number of keys. */
static size_t assert_every_key_has_ttl(struct fx *f)
{
    redisReply *keys = side_cmd(f, "KEYS %s*", f->prefix);
    size_t i, n;

    assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
    for (i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        redisReply *r = side_cmd(f, "TTL %s", k);

        if (!(f->cfg.swarm_downloaded_ttl_s == 0 && strstr(k, "}:info")))
            assert_true(r->integer > 0 || (fprintf(stderr, "key %s has TTL %lld\n", k, r->integer), 0));
        freeReplyObject(r);
    }
    n = keys->elements;
    freeReplyObject(keys);
    return n;
}

/* A set lives as long as its longest-lived member: a reload that shortens peer_ttl_s must not cut
 * the key's TTL below members announced with the old one; a set that somehow lacks a TTL gets one. */
static void test_storage_redis_set_ttl_covers_members(void **state)
{
    struct fx *f = *state;
    struct config shorter = f->cfg;
    struct announce_req req;
    struct ann_result res;
    struct storage *st;
    char err[256], kleech[160];

    announce_ok(f, 1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_LEECHERS), f->now + TEST_TTL_S);
    shorter.peer_ttl_s = 600;
    st = storage_new(&shorter, f->base, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(health_of(st, f->base), STORAGE_OK);
    req = req_of(1, "10.0.0.2", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, f->now + 10);
    announce_on(st, f->base, &req, &res);
    assert_int_equal(res.status, STORAGE_OK);
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_LEECHERS), f->now + TEST_TTL_S);
    /* And later announces still extend it. */
    req = req_of(1, "10.0.0.2", 6881, 9, ANNOUNCE_EVENT_NONE, 50, f->now + TEST_TTL_S);
    announce_on(st, f->base, &req, &res);
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_LEECHERS), f->now + TEST_TTL_S + 600);
    storage_free(st);

    /* A set without a TTL (left by an older tyto, or written by hand) is repaired. */
    key_of(f, kleech, 2, REDIS_KEYS_LEECHERS);
    freeReplyObject(side_cmd(f, "ZADD %s %lld 9.9.9.9:1", kleech, (long long)f->now + 60));
    assert_int_equal(side_expiretime(f, 2, REDIS_KEYS_LEECHERS), -1);
    announce_ok(f, 2, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_int_equal(side_expiretime(f, 2, REDIS_KEYS_LEECHERS), f->now + TEST_TTL_S);
}

/* Kept forever (swarm.downloaded_ttl_s 0): an :info key that still carries a TTL (an older tyto
 * set one on every announce; or a retention since turned off) loses it with the swarm's next
 * announce, a plain re-announce or a stop, not only with its next completion. */
static void test_storage_redis_forever_clears_an_old_info_ttl(void **state)
{
    struct fx *f = *state;
    struct ann_result res;
    char kinfo[160];

    for (int h = 1; h <= 2; h++) {
        key_of(f, kinfo, h, REDIS_KEYS_INFO);
        freeReplyObject(side_cmd(f, "HSET %s downloaded 7", kinfo));
        freeReplyObject(side_cmd(f, "EXPIRE %s 3600", kinfo));
        assert_true(side_expiretime(f, h, REDIS_KEYS_INFO) > 0);
    }
    announce_ok(f, 1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, &res);
    assert_int_equal(res.stats.downloaded, 7);
    assert_int_equal(side_expiretime(f, 1, REDIS_KEYS_INFO), -1);
    announce_ok(f, 2, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STOPPED, 50, &res);
    assert_int_equal(side_expiretime(f, 2, REDIS_KEYS_INFO), -1);
}

/* A write refused half-way (here: the ACL forbids EXPIREAT/EXPIRE, as a dropped connection would
 * cut the pipeline) must not leave a key without its TTL: the announce's writes are one unit. */
static void test_storage_redis_failed_write_leaves_no_key_without_ttl(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct ann_result res;

    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    freeReplyObject(side_cmd(f, "ACL SETUSER default -expire -expireat -pexpire -pexpireat"));
    announce(f, &req, &res);
    freeReplyObject(side_cmd(f, "ACL SETUSER default +@all"));
    assert_int_not_equal(res.status, STORAGE_OK);
    assert_every_key_has_ttl(f);
    /* And the next announce works and writes everything. */
    announce(f, &req, &res);
    assert_int_equal(res.status, STORAGE_OK);
    assert_int_equal(assert_every_key_has_ttl(f), 1);
}

/* A connection of its own with a deadline long enough for thousands of pipelined announces
 * under valgrind (the race needs volume; the deadline is not what these tests check). */
static struct storage *race_storage(struct fx *f)
{
    struct config cfg = f->cfg;
    struct storage *st;
    char err[256];

    cfg.redis_timeout_ms = 120000;
    st = storage_new(&cfg, f->base, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(health_of(st, f->base), STORAGE_OK);
    return st;
}

/* Two storages (two workers, or two hosts) announce the same peers at the same time with
 * different left: every peer ends in exactly one set, whatever the interleaving. */
#define RACE_PEERS 1500
static void test_storage_redis_concurrent_moves_keep_one_set(void **state)
{
    struct fx *f = *state;
    struct ann_result *a = calloc(RACE_PEERS, sizeof(*a)), *b = calloc(RACE_PEERS, sizeof(*b));
    char err[256], kseed[160], kleech[160], ip[32];
    struct storage *st1 = race_storage(f), *st2 = race_storage(f);
    int round, i, lost = 0, both = 0;

    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(st2);
    key_of(f, kseed, 1, REDIS_KEYS_SEEDERS);
    key_of(f, kleech, 1, REDIS_KEYS_LEECHERS);
    (void)err;
    for (round = 0; round < 4; round++) {
        for (i = 0; i < RACE_PEERS; i++) {
            struct announce_req ra, rb;

            snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
            ra = req_of(1, ip, 6881, round % 2 ? 0 : 5, ANNOUNCE_EVENT_NONE, 0, f->now + round);
            rb = req_of(1, ip, 6881, round % 2 ? 5 : 0, ANNOUNCE_EVENT_NONE, 0, f->now + round);
            memset(&a[i], 0, sizeof(a[i]));
            memset(&b[i], 0, sizeof(b[i]));
            assert_int_equal(storage_announce(st1, &ra, announce_cb, &a[i]), 0);
            assert_int_equal(storage_announce(st2, &rb, announce_cb, &b[i]), 0);
            a[i].returned = b[i].returned = true;
        }
        assert_true(run_until(f->base, &a[RACE_PEERS - 1].called, 10 * TEST_WAIT_MS));
        assert_true(run_until(f->base, &b[RACE_PEERS - 1].called, 10 * TEST_WAIT_MS));
        for (i = 0; i < RACE_PEERS; i++) {
            redisReply *s, *l;

            assert_int_equal(a[i].status, STORAGE_OK);
            assert_int_equal(b[i].status, STORAGE_OK);
            snprintf(ip, sizeof(ip), "10.%d.%d.1:6881", i / 250, i % 250);
            s = side_cmd(f, "ZSCORE %s %s", kseed, ip);
            l = side_cmd(f, "ZSCORE %s %s", kleech, ip);
            if (s->type == REDIS_REPLY_NIL && l->type == REDIS_REPLY_NIL)
                lost++;
            if (s->type != REDIS_REPLY_NIL && l->type != REDIS_REPLY_NIL)
                both++;
            freeReplyObject(s);
            freeReplyObject(l);
        }
    }
    if (lost || both)
        fprintf(stderr, "peers in neither set: %d, in both: %d\n", lost, both);
    assert_int_equal(lost, 0);
    assert_int_equal(both, 0);
    storage_free(st1);
    storage_free(st2);
    free(a);
    free(b);
}

/* Two storages send the same leechers' completed at the same time: each download counts once. */
static void test_storage_redis_concurrent_completed_counts_once(void **state)
{
    struct fx *f = *state;
    struct ann_result *a = calloc(RACE_PEERS, sizeof(*a)), *b = calloc(RACE_PEERS, sizeof(*b));
    struct ann_result res;
    char ip[32];
    struct storage *st1 = race_storage(f), *st2 = race_storage(f);
    struct swarm_stats s;
    int i;

    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(st2);
    for (i = 0; i < RACE_PEERS; i++) {
        struct announce_req r;

        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
        r = req_of(1, ip, 6881, 5, ANNOUNCE_EVENT_STARTED, 0, f->now);
        memset(&a[i], 0, sizeof(a[i]));
        assert_int_equal(storage_announce(st1, &r, announce_cb, &a[i]), 0);
        a[i].returned = true;
    }
    assert_true(run_until(f->base, &a[RACE_PEERS - 1].called, 10 * TEST_WAIT_MS));
    for (i = 0; i < RACE_PEERS; i++) {
        struct announce_req r;

        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 250, i % 250);
        r = req_of(1, ip, 6881, 0, ANNOUNCE_EVENT_COMPLETED, 0, f->now + 1);
        memset(&a[i], 0, sizeof(a[i]));
        memset(&b[i], 0, sizeof(b[i]));
        assert_int_equal(storage_announce(st1, &r, announce_cb, &a[i]), 0);
        assert_int_equal(storage_announce(st2, &r, announce_cb, &b[i]), 0);
        a[i].returned = b[i].returned = true;
    }
    assert_true(run_until(f->base, &a[RACE_PEERS - 1].called, 10 * TEST_WAIT_MS));
    assert_true(run_until(f->base, &b[RACE_PEERS - 1].called, 10 * TEST_WAIT_MS));
    for (i = 0; i < RACE_PEERS; i++) {
        assert_int_equal(a[i].status, STORAGE_OK);
        assert_int_equal(b[i].status, STORAGE_OK);
    }
    scrape_one(f, 1, f->now + 1, &s);
    assert_stats(&s, RACE_PEERS, 0, RACE_PEERS);
    announce_ok(f, 1, "10.200.0.1", 6881, 0, ANNOUNCE_EVENT_NONE, 0, &res);
    assert_stats(&res.stats, RACE_PEERS + 1, 0, RACE_PEERS);
    storage_free(st1);
    storage_free(st2);
    free(a);
    free(b);
}

/* maxmemory with the shipped redis/redis.conf policy: a full Redis evicts the stalest swarms'
 * peer sets and keeps answering announces, and never evicts a completed count. */
static void test_storage_redis_full_evicts_stale_swarms(void **state)
{
    struct fx *f = *state;
    char maxmemory[64], policy[64], line[256], want[64] = "", kinfo[160];
    struct ann_result res;
    long long used = 0, evicted0 = -1, evicted1 = -1;
    FILE *conf = fopen("redis/redis.conf", "r");
    redisReply *r;
    int i, failed = 0;

    assert_non_null(conf);             /* run from the repository root, as tests/run.sh does */
    while (fgets(line, sizeof(line), conf))
        if (sscanf(line, "maxmemory-policy %63s", want) == 1)
            break;
    fclose(conf);
    assert_true(want[0] != '\0');

    announce_ok(f, 1, "10.0.0.1", 6881, 9, ANNOUNCE_EVENT_STARTED, 0, &res);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_COMPLETED, 0, &res);
    announce_ok(f, 1, "10.0.0.1", 6881, 0, ANNOUNCE_EVENT_STOPPED, 0, &res);
    r = side_cmd(f, "CONFIG GET maxmemory");
    snprintf(maxmemory, sizeof(maxmemory), "%s", r->element[1]->str);
    freeReplyObject(r);
    r = side_cmd(f, "CONFIG GET maxmemory-policy");
    snprintf(policy, sizeof(policy), "%s", r->element[1]->str);
    freeReplyObject(r);
    r = side_cmd(f, "INFO");
    {
        const char *u = strstr(r->str, "\r\nused_memory:"), *e = strstr(r->str, "\r\nevicted_keys:");

        used = u ? atoll(u + 14) : 0;
        evicted0 = e ? atoll(e + 15) : -1;
    }
    freeReplyObject(r);
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory-policy %s", want));
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory %lld", used + 512 * 1024));
    /* 6000 one-peer swarms, each announced once, the oldest first: well over 512 kB of sets. */
    for (i = 0; i < 6000 && !failed; i++) {
        struct announce_req req;
        char ip[32];

        snprintf(ip, sizeof(ip), "10.9.%d.%d", i / 250, i % 250 + 1);
        req = req_of(2 + i % 250, ip, 6881, 5, ANNOUNCE_EVENT_STARTED, 0, f->now + i);
        req.info_hash[1] = (uint8_t)(i / 250);
        announce(f, &req, &res);
        failed = res.status != STORAGE_OK;
    }
    r = side_cmd(f, "INFO stats");
    {
        const char *e = strstr(r->str, "\r\nevicted_keys:");

        evicted1 = e ? atoll(e + 15) : -1;
    }
    freeReplyObject(r);
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory %s", maxmemory));
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory-policy %s", policy));
    if (failed)
        fprintf(stderr, "announce %d failed with %d under maxmemory-policy %s\n", i - 1, res.status, want);
    assert_false(failed);
    assert_true(evicted1 > evicted0);
    key_of(f, kinfo, 1, REDIS_KEYS_INFO);
    r = side_cmd(f, "HGET %s downloaded", kinfo);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1");
    freeReplyObject(r);
}

/* Scrape must not write: no key appears for an unknown swarm, and none is reaped. */
static void test_storage_redis_scrape_is_read_only(void **state)
{
    struct fx *f = *state;
    struct scrape_req *req = calloc(1, sizeof(*req));
    struct scrape_result res;
    struct ann_result ares;
    char kseed[160];
    redisReply *r;

    assert_non_null(req);
    announce_ok(f, 1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, &ares);
    req->count = 2;
    hash_of(req->info_hash[0], 1);
    hash_of(req->info_hash[1], 2);
    req->now_s = f->now + TEST_TTL_S + 5;
    memset(&res, 0, sizeof(res));
    assert_int_equal(storage_scrape(f->st, req, scrape_cb, &res), 0);
    res.returned = true;
    assert_true(run_until(f->base, &res.called, TEST_WAIT_MS));
    assert_int_equal(res.status, STORAGE_OK);
    assert_stats(&res.stats[0], 0, 0, 0);
    key_of(f, kseed, 1, REDIS_KEYS_SEEDERS);
    r = side_cmd(f, "ZCARD %s", kseed);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    r = side_cmd(f, "KEYS %s*", f->prefix);
    assert_int_equal(r->elements, 1);   /* only swarm 1's seeders: no info key without a completion */
    freeReplyObject(r);
    free(req);
}

static void test_storage_redis_wrong_type_is_internal(void **state)
{
    struct fx *f = *state;
    struct ann_result res;
    struct announce_req req = req_of(1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, f->now);
    char kseed[160];

    key_of(f, kseed, 1, REDIS_KEYS_SEEDERS);
    freeReplyObject(side_cmd(f, "SET %s oops", kseed));
    announce(f, &req, &res);
    assert_int_equal(res.status, STORAGE_ERR_INTERNAL);
    assert_int_equal(storage_status_err(res.status), ANNOUNCE_ERR_STORAGE_INTERNAL);
}

static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_storage_redis_unreachable_is_unavailable(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct config cfg = f->cfg;
    struct ann_result res;
    struct storage *st;
    char err[256];
    int i;

    snprintf(cfg.redis_url, sizeof(cfg.redis_url), "redis://127.0.0.1:%d", closed_port());
    st = storage_new(&cfg, f->base, err, sizeof(err));
    assert_non_null(st);
    for (i = 0; i < 3; i++) {
        announce_on(st, f->base, &req, &res);
        assert_int_equal(res.status, STORAGE_ERR_UNAVAILABLE);
        /* Refused at once, not after the deadline (checked by the counter, not the wall clock). */
        assert_int_equal(st->counters.timeouts, 0);
        assert_int_equal(health_of(st, f->base), STORAGE_ERR_UNAVAILABLE);
        run_for(f->base, 150);         /* let a reconnect attempt happen */
    }
    assert_true(st->counters.reconnects >= 1);
    assert_true(st->counters.errors >= 6);
    storage_free(st);
}

static void test_storage_redis_paused_times_out_then_recovers(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct config cfg = f->cfg;
    struct ann_result res;
    struct storage *st;
    char err[256];
    uint64_t t0;

    cfg.redis_timeout_ms = 200;
    st = storage_new(&cfg, f->base, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(health_of(st, f->base), STORAGE_OK);

    freeReplyObject(side_cmd(f, "CLIENT PAUSE 2000"));
    t0 = mono_ms();
    announce_on(st, f->base, &req, &res);
    assert_int_equal(res.status, STORAGE_ERR_TIMEOUT);
    assert_int_equal(storage_status_err(res.status), ANNOUNCE_ERR_STORAGE_TIMEOUT);
    assert_true(mono_ms() - t0 >= 150);   /* the deadline, not earlier; no upper bound */
    assert_true(st->counters.timeouts >= 1);

    /* Once the pause ends the backend answers again, on its own. */
    do {
        announce_on(st, f->base, &req, &res);
        if (res.status == STORAGE_OK)
            break;
        run_for(f->base, 50);
    } while (mono_ms() - t0 < 6000);
    assert_int_equal(res.status, STORAGE_OK);
    assert_true(mono_ms() - t0 >= 1500);
    assert_stats(&res.stats, 1, 0, 0);
    storage_free(st);
}

static void test_storage_redis_oom_is_full(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, f->now);
    char maxmemory[64], policy[64];
    struct ann_result res;
    redisReply *r;

    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    r = side_cmd(f, "CONFIG GET maxmemory");
    snprintf(maxmemory, sizeof(maxmemory), "%s", r->element[1]->str);
    freeReplyObject(r);
    r = side_cmd(f, "CONFIG GET maxmemory-policy");
    snprintf(policy, sizeof(policy), "%s", r->element[1]->str);
    freeReplyObject(r);

    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory-policy noeviction"));
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory 1"));
    announce(f, &req, &res);
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory %s", maxmemory));
    freeReplyObject(side_cmd(f, "CONFIG SET maxmemory-policy %s", policy));
    assert_int_equal(res.status, STORAGE_ERR_FULL);
    assert_int_equal(storage_status_err(res.status), ANNOUNCE_ERR_STORAGE_FULL);

    announce(f, &req, &res);
    assert_int_equal(res.status, STORAGE_OK);
}

/* The connection dies under the backend (CLIENT KILL): requests fail or succeed, each once,
 * and it reconnects by itself. */
static void test_storage_redis_reconnects_after_kill(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct ann_result res;
    uint64_t t0;

    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    freeReplyObject(side_cmd(f, "CLIENT KILL TYPE normal SKIPME yes"));
    announce(f, &req, &res);
    assert_true(res.status == STORAGE_ERR_UNAVAILABLE || res.status == STORAGE_OK);
    t0 = mono_ms();
    do {
        announce(f, &req, &res);
        if (res.status == STORAGE_OK)
            break;
        run_for(f->base, 20);
    } while (mono_ms() - t0 < 3000);
    assert_int_equal(res.status, STORAGE_OK);
    assert_true(f->st->counters.reconnects >= 1);
    assert_true(f->st->counters.round_trips >= 1);
    assert_true(f->st->counters.commands >= 10);
}

/* AUTH from the URL goes out first; a wrong password fails requests instead of hanging them. */
static void test_storage_redis_auth(void **state)
{
    struct fx *f = *state;
    struct announce_req req = req_of(1, "1.2.3.4", 6881, 0, ANNOUNCE_EVENT_STARTED, 50, f->now);
    struct config good = f->cfg, bad = f->cfg;
    const char *rest = strstr(f->cfg.redis_url, "://") + 3;
    struct storage *st_good, *st_bad;
    struct ann_result res_good, res_bad;
    int health_bad, health_good;
    char err[256];

    snprintf(good.redis_url, sizeof(good.redis_url), "%.*s:s3cret@%s",
             (int)(rest - f->cfg.redis_url), f->cfg.redis_url, rest);
    snprintf(bad.redis_url, sizeof(bad.redis_url), "%.*s:wrong@%s",
             (int)(rest - f->cfg.redis_url), f->cfg.redis_url, rest);
    freeReplyObject(side_cmd(f, "CONFIG SET requirepass s3cret"));
    st_good = storage_new(&good, f->base, err, sizeof(err));
    st_bad = storage_new(&bad, f->base, err, sizeof(err));
    if (st_good && st_bad) {
        health_good = health_of(st_good, f->base);   /* connected, Redis's clock known */
        announce_on(st_good, f->base, &req, &res_good);
        announce_on(st_bad, f->base, &req, &res_bad);
        health_bad = health_of(st_bad, f->base);
    }
    freeReplyObject(side_cmd(f, "CONFIG SET requirepass %s", ""));
    assert_non_null(st_good);
    assert_non_null(st_bad);
    assert_int_equal(health_good, STORAGE_OK);
    assert_int_equal(res_good.status, STORAGE_OK);
    assert_int_not_equal(res_bad.status, STORAGE_OK);
    assert_int_not_equal(health_bad, STORAGE_OK);
    storage_free(st_good);
    storage_free(st_bad);
}

/* A big swarm is sampled by rank windows once the worker holds its size (storage/redis.c,
 * redis_send_sample): the sample must still be fair. 600 leechers; 3000 announces of numwant 50
 * by members in turn. Every member's count must be near the mean and chi-square over all of them
 * below a bound a fair window sampler passes (the bounds' reasons are where they are checked); an
 * edge-biased or stuck window fails at once. Nobody ever receives itself, nobody twice, and
 * numwant is met exactly. The windows were really used: Redis counted the ZRANGE calls. */
#define FAIR_PEERS 600
#define FAIR_ANNOUNCES 3000
static long long cmd_calls(struct fx *f, const char *name)
{
    redisReply *r = side_cmd(f, "INFO commandstats");
    char needle[64];
    const char *p;
    long long calls = 0;

    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", name);
    p = strstr(r->str, needle);
    if (p)
        calls = strtoll(p + strlen(needle), NULL, 10);
    freeReplyObject(r);
    return calls;
}

static long long zrange_calls(struct fx *f)
{
    return cmd_calls(f, "zrange");
}

static void test_storage_redis_big_swarm_sample_is_fair(void **state)
{
    struct fx *f = *state;
    static unsigned seen[FAIR_PEERS];
    struct ann_result *res = malloc(sizeof(*res));
    long long zr0;
    double mean, chi2 = 0;
    char ip[32];
    int i, j, k;

    assert_non_null(res);
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < FAIR_PEERS; i++) {
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 200, i % 200 + 1);
        announce_ok(f, 7, ip, 6881, 1, ANNOUNCE_EVENT_STARTED, 0, res);
    }
    zr0 = zrange_calls(f);
    for (i = 0; i < FAIR_ANNOUNCES; i++) {
        int me = i % FAIR_PEERS;

        snprintf(ip, sizeof(ip), "10.1.%d.%d", me / 200, me % 200 + 1);
        announce_ok(f, 7, ip, 6881, 1, ANNOUNCE_EVENT_NONE, 50, res);
        assert_stats(&res->stats, 0, FAIR_PEERS, 0);
        assert_int_equal(res->n4, 50);
        for (j = 0; j < (int)res->n4; j++) {
            const uint8_t *p = res->peers4 + j * PEER_COMPACT4_LEN;
            int idx = p[2] * 200 + p[3] - 1;

            assert_true(p[0] == 10 && p[1] == 1 && idx >= 0 && idx < FAIR_PEERS);
            assert_int_not_equal(idx, me);                 /* never itself */
            for (k = 0; k < j; k++)                        /* never twice */
                assert_memory_not_equal(res->peers4 + k * PEER_COMPACT4_LEN, p, PEER_COMPACT4_LEN);
            seen[idx]++;
        }
    }
    mean = (double)FAIR_ANNOUNCES * 50 / (FAIR_PEERS - 1);
    /* Each announce draws its rank afresh, so a member's count is binomial: mean 250, sd 15.2;
     * 0.65..1.35 of the mean is 5.7 sd, for every one of the 600 members. */
    for (i = 0; i < FAIR_PEERS; i++) {
        assert_true(seen[i] > mean * 0.65 && seen[i] < mean * 1.35);
        chi2 += (seen[i] - mean) * (seen[i] - mean) / mean;
    }
    /* 599 degrees of freedom, but the counts are not independent: a window holds consecutive
     * ranks and the four windows move together, so rank neighbours are sampled together. That
     * leaves chi2's mean near 599 and widens its spread from binomial's 34.6 to about 140
     * (measured: 60 runs at 800 and 3000 announces, 258..887; the spread does not grow with the
     * announces). The bound is 5 of those; a bias does grow with the announces: half the
     * members 20% short adds about 3000. */
    assert_true(chi2 < 599 + 5 * 150);
    if (f->redis)
        assert_true(zrange_calls(f) - zr0 >= FAIR_ANNOUNCES);
    free(res);
}

/* redis.sample_cache_ms: a worker draws a big swarm's samples from the members it read within
 * the cache time. 600 leechers and 300 seeders; 600 leecher announces of numwant 200 cost Redis a
 * handful of ZRANGEs, and every reply is still right: 200 distinct peers, never itself, the
 * seeders first (300 of them fill numwant), exact counts; a seeder gets only leechers. The pool
 * is refilled once it is older than the cache time (one more ZRANGE batch). */
static void test_storage_redis_sample_pool(void **state)
{
    struct fx *f = *state;
    struct ann_result *res = malloc(sizeof(*res));
    unsigned seen_seeders[300];
    char ip[32], err[256];
    long long zr0;
    int i, j, k;

    assert_non_null(res);
    memset(seen_seeders, 0, sizeof(seen_seeders));
    storage_free(f->st);
    f->cfg.storage_sample_cache_ms = 1000;
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    for (i = 0; i < 600; i++) {
        snprintf(ip, sizeof(ip), "10.5.%d.%d", i / 200, i % 200 + 1);
        announce_ok(f, 11, ip, 6881, 1, ANNOUNCE_EVENT_STARTED, 0, res);
    }
    for (i = 0; i < 300; i++) {
        snprintf(ip, sizeof(ip), "10.6.%d.%d", i / 200, i % 200 + 1);
        announce_ok(f, 11, ip, 6881, 0, ANNOUNCE_EVENT_STARTED, 0, res);
    }
    zr0 = zrange_calls(f);
    for (i = 0; i < 600; i++) {
        snprintf(ip, sizeof(ip), "10.5.%d.%d", i / 200, i % 200 + 1);
        announce_ok(f, 11, ip, 6881, 1, ANNOUNCE_EVENT_NONE, 200, res);
        assert_stats(&res->stats, 300, 600, 0);
        assert_int_equal(res->n4, 200);
        assert_false(has_peer(res, ip, 6881));
        for (j = 0; j < 200; j++) {
            const uint8_t *p = res->peers4 + j * PEER_COMPACT4_LEN;
            assert_true(p[0] == 10 && p[1] == 6);                 /* seeders first */
            seen_seeders[p[2] * 200 + p[3] - 1]++;
            for (k = 0; k < j; k++)
                assert_memory_not_equal(res->peers4 + k * PEER_COMPACT4_LEN, p, PEER_COMPACT4_LEN);
        }
    }
    for (i = 0; i < 300; i++)                                     /* drawn from all of them */
        assert_true(seen_seeders[i] > 0);
    for (i = 0; i < 50; i++) {
        snprintf(ip, sizeof(ip), "10.6.0.%d", i + 1);
        announce_ok(f, 11, ip, 6881, 0, ANNOUNCE_EVENT_NONE, 200, res);
        assert_stats(&res->stats, 300, 600, 0);
        assert_int_equal(res->n4, 200);
        for (j = 0; j < 200; j++)
            assert_int_equal(res->peers4[j * PEER_COMPACT4_LEN + 1], 5); /* only leechers */
    }
    if (f->redis) {
        /* One fill of each set (a few ZRANGEs each), not one an announce; a second later the
         * pool is read again. */
        long long used = zrange_calls(f) - zr0;
        assert_true(used >= 2 && used <= 12);
        usleep(1100 * 1000);
        /* (the size hint is as old: the first announce reads the set's size again) */
        announce_ok(f, 11, "10.5.0.1", 6881, 1, ANNOUNCE_EVENT_NONE, 200, res);
        announce_ok(f, 11, "10.5.0.2", 6881, 1, ANNOUNCE_EVENT_NONE, 200, res);
        assert_int_equal(res->n4, 200);
        assert_true(zrange_calls(f) - zr0 > used);
    }
    free(res);
}

/* Sums the fields of the swarm's stats hash whose names start with what ("l:", "fast:", "c:"). */
static long long stats_sum_of(struct fx *f, const uint8_t ih[ANNOUNCE_HASH_LEN], const char *what)
{
    char key[200];
    long long sum = 0;
    redisReply *r;

    assert_true(redis_keys_swarm(key, sizeof(key), f->prefix, ih, REDIS_KEYS_STATS) > 0);
    r = side_cmd(f, "HGETALL %s", key);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (strncmp(r->element[i]->str, what, strlen(what)) == 0)
            sum += strtoll(r->element[i + 1]->str, NULL, 10);
    freeReplyObject(r);
    return sum;
}

static long long stats_sum(struct fx *f, int hash, const char *what)
{
    uint8_t ih[ANNOUNCE_HASH_LEN];

    hash_of(ih, hash);
    return stats_sum_of(f, ih, what);
}

/* The statistics' counters of a hot swarm are added up in the worker and written once a second:
 * exact figures, a few HINCRBYs instead of one or two an announce, and a storage freed right
 * after its announces (a draining worker) still writes them. */
static void test_storage_redis_stats_counts_batched(void **state)
{
    struct fx *f = *state;
    struct ann_result res;
    bool never = false;
    char ip[32], err[256];
    long long hincr0;
    int i;

    storage_free(f->st);
    f->cfg.stats_enabled = true;
    f->cfg.interval_s = 1800;
    f->cfg.min_interval_s = 60;
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(health_wait(f->st, f->base), 0);
    hincr0 = cmd_calls(f, "hincrby");
    for (i = 0; i < 100; i++) {    /* 50 leechers start, then each announces again at once */
        snprintf(ip, sizeof(ip), "10.7.0.%d", i % 50 + 1);
        announce_ok(f, 12, ip, 6881, 1, i < 50 ? ANNOUNCE_EVENT_STARTED : ANNOUNCE_EVENT_NONE, 10, &res);
    }
    run_until(f->base, &never, 1300);                   /* the flush */
    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    assert_int_equal(health_of(f->st, f->base), STORAGE_OK); /* its PING follows the HINCRBYs */
    assert_int_equal(stats_sum(f, 12, "l:"), 100);
    assert_int_equal(stats_sum(f, 12, "c:"), 50);       /* peers by client, once an interval */
    assert_int_equal(stats_sum(f, 12, "fast:"), 50);    /* the second announces: too soon */
    /* l: c: fast: one field each (two when a minute or an interval turned meanwhile) */
    assert_true(cmd_calls(f, "hincrby") - hincr0 <= 6);
    for (i = 0; i < 5; i++)
        announce_ok(f, 12, "10.7.1.1", 6881, 1, i == 0 ? ANNOUNCE_EVENT_STARTED : ANNOUNCE_EVENT_NONE, 10, &res);
    storage_free(f->st);
    f->st = NULL;
    for (i = 0; i < 50 && stats_sum(f, 12, "l:") < 105; i++)
        usleep(20 * 1000);
    assert_int_equal(stats_sum(f, 12, "l:"), 105);
    assert_int_equal(stats_sum(f, 12, "fast:"), 54);
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));   /* for teardown */
    assert_non_null(f->st);
}

/* More counted fields than a flush sends at once (REDIS_COUNT_INFLIGHT, 256): 300 swarms with
 * one announce each are 600 fields (l: and c:), written in parts as Redis answers, every one. */
static void test_storage_redis_stats_counts_flushed_in_parts(void **state)
{
    struct fx *f = *state;
    struct ann_result res;
    bool never = false;
    char err[256];
    long long hincr0;
    int i;

    storage_free(f->st);
    f->cfg.stats_enabled = true;
    f->st = storage_new(&f->cfg, f->base, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(health_wait(f->st, f->base), 0);
    hincr0 = cmd_calls(f, "hincrby");
    for (i = 0; i < 300; i++) {
        struct announce_req req = req_of(0, "10.8.0.1", 6881, 1, ANNOUNCE_EVENT_STARTED, 10, f->now);

        req.info_hash[1] = (uint8_t)(i >> 8);       /* 300 swarms of their own */
        req.info_hash[2] = (uint8_t)i;
        req.info_hash[3] = 0x5e;
        announce(f, &req, &res);
        assert_int_equal(res.status, STORAGE_OK);
    }
    run_until(f->base, &never, 1300);                   /* the flush, and its parts */
    assert_int_equal(health_of(f->st, f->base), STORAGE_OK);
    for (i = 0; i < 300; i++) {
        uint8_t ih[ANNOUNCE_HASH_LEN];

        hash_of(ih, 0);
        ih[1] = (uint8_t)(i >> 8);
        ih[2] = (uint8_t)i;
        ih[3] = 0x5e;
        assert_int_equal(stats_sum_of(f, ih, "l:"), 1);
        assert_int_equal(stats_sum_of(f, ih, "c:"), 1);
    }
    assert_true(cmd_calls(f, "hincrby") - hincr0 >= 600);
}

/* numwant 200 (libtorrent's default) from a swarm just big enough for the rank windows (220
 * members; 4 windows of 51): 200 distinct peers a reply, never the peer itself, by ZRANGE. */
static void test_storage_redis_windows_numwant_200(void **state)
{
    struct fx *f = *state;
    struct ann_result *res = malloc(sizeof(*res));
    long long zr0;
    char ip[32];
    int i, j, k;

    assert_non_null(res);
    for (i = 0; i < 220; i++) {
        snprintf(ip, sizeof(ip), "10.4.0.%d", i + 1);
        announce_ok(f, 9, ip, 6881, 1, ANNOUNCE_EVENT_STARTED, 0, res);
    }
    zr0 = zrange_calls(f);
    for (i = 0; i < 30; i++) {
        snprintf(ip, sizeof(ip), "10.4.0.%d", i * 7 % 220 + 1);
        announce_ok(f, 9, ip, 6881, 1, ANNOUNCE_EVENT_NONE, 200, res);
        assert_stats(&res->stats, 0, 220, 0);
        assert_int_equal(res->n4, 200);
        assert_false(has_peer(res, ip, 6881));
        for (j = 0; j < 200; j++)
            for (k = 0; k < j; k++)
                assert_memory_not_equal(res->peers4 + k * PEER_COMPACT4_LEN, res->peers4 + j * PEER_COMPACT4_LEN,
                                        PEER_COMPACT4_LEN);
    }
    assert_true(zrange_calls(f) - zr0 >= 4 * 29);
    free(res);
}

/* A leecher of a swarm whose last count showed seeders enough for numwant (plus a margin) gets
 * seeders only, without the leechers' sample being asked for; short of that, both. Counts stay
 * exact either way. */
static void test_storage_redis_seeders_fill_numwant(void **state)
{
    struct fx *f = *state;
    struct ann_result *res = malloc(sizeof(*res));
    long long zrand0;
    char ip[32];
    int i;

    assert_non_null(res);
    for (i = 0; i < 150; i++) {
        snprintf(ip, sizeof(ip), "10.2.0.%d", i + 1);
        announce_ok(f, 8, ip, 6881, 0, ANNOUNCE_EVENT_STARTED, 0, res);
    }
    for (i = 0; i < 20; i++) {
        snprintf(ip, sizeof(ip), "10.3.0.%d", i + 1);
        announce_ok(f, 8, ip, 6881, 1, ANNOUNCE_EVENT_STARTED, 0, res);
    }
    announce_ok(f, 8, "10.3.0.1", 6881, 1, ANNOUNCE_EVENT_NONE, 50, res);    /* hint now held */
    zrand0 = cmd_calls(f, "zrandmember");
    announce_ok(f, 8, "10.3.0.1", 6881, 1, ANNOUNCE_EVENT_NONE, 50, res);
    /* seeders by rank windows, the leechers (20: ZRANDMEMBER) not asked */
    assert_int_equal(cmd_calls(f, "zrandmember"), zrand0);
    assert_stats(&res->stats, 150, 20, 0);
    assert_int_equal(res->n4, 50);
    for (i = 0; i < 50; i++)
        assert_int_equal(res->peers4[i * PEER_COMPACT4_LEN + 1], 2);    /* all seeders */
    /* 150 seeders cannot fill 200: the leechers follow, the peer itself excluded. */
    announce_ok(f, 8, "10.3.0.1", 6881, 1, ANNOUNCE_EVENT_NONE, 200, res);
    assert_int_equal(cmd_calls(f, "zrandmember"), zrand0 + 2);   /* 150 < 2 x 201: both sets */
    assert_stats(&res->stats, 150, 20, 0);
    assert_int_equal(res->n4, 150 + 19);
    assert_false(has_peer(res, "10.3.0.1", 6881));
    assert_true(has_peer(res, "10.3.0.20", 6881));
    free(res);
}

#define CONTRACT_TESTS(setup)                                                                   \
    cmocka_unit_test_setup_teardown(test_storage_first_announce_counts_itself, setup, teardown), \
    cmocka_unit_test_setup_teardown(test_storage_second_peer_gets_first, setup, teardown),       \
    cmocka_unit_test_setup_teardown(test_storage_never_returns_self, setup, teardown),           \
    cmocka_unit_test_setup_teardown(test_storage_seeder_gets_only_leechers, setup, teardown),    \
    cmocka_unit_test_setup_teardown(test_storage_leecher_gets_seeders_and_leechers, setup, teardown), \
    cmocka_unit_test_setup_teardown(test_storage_left_zero_moves_to_seeders, setup, teardown),   \
    cmocka_unit_test_setup_teardown(test_storage_stopped_removes_peer, setup, teardown),         \
    cmocka_unit_test_setup_teardown(test_storage_completed_counts_downloaded, setup, teardown),  \
    cmocka_unit_test_setup_teardown(test_storage_completed_after_expiry_not_counted, setup, teardown), \
    cmocka_unit_test_setup_teardown(test_storage_downloaded_kept_forever, setup, teardown),       \
    cmocka_unit_test_setup_teardown(test_storage_downloaded_ttl, setup, teardown),                \
    cmocka_unit_test_setup_teardown(test_storage_churn_matches_model, setup, teardown),           \
    cmocka_unit_test_setup_teardown(test_storage_numwant_caps_sample, setup, teardown),          \
    cmocka_unit_test_setup_teardown(test_storage_expired_peers_vanish, setup, teardown),         \
    cmocka_unit_test_setup_teardown(test_storage_ipv6_in_peers6, setup, teardown),               \
    cmocka_unit_test_setup_teardown(test_storage_scrape_counts_hashes, setup, teardown),         \
    cmocka_unit_test_setup_teardown(test_storage_health_ok, setup, teardown),                    \
    cmocka_unit_test_setup_teardown(test_storage_free_fails_pending, setup, teardown),           \
    cmocka_unit_test_setup_teardown(test_storage_free_from_callback, setup, teardown),           \
    cmocka_unit_test_setup_teardown(test_storage_call_from_callback, setup, teardown),           \
    cmocka_unit_test_setup_teardown(test_storage_many_in_flight, setup, teardown)

int main(void)
{
    const struct CMUnitTest memory_tests[] = {
        CONTRACT_TESTS(setup_memory),
    };
    const struct CMUnitTest redis_tests[] = {
        CONTRACT_TESTS(setup_redis),
        cmocka_unit_test_setup_teardown(test_storage_redis_schema, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_big_swarm_sample_is_fair, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_sample_pool, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_stats_counts_batched, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_stats_counts_flushed_in_parts, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_seeders_fill_numwant, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_windows_numwant_200, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_set_ttl_covers_members, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_forever_clears_an_old_info_ttl, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_failed_write_leaves_no_key_without_ttl, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_concurrent_moves_keep_one_set, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_concurrent_completed_counts_once, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_scrape_is_read_only, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_wrong_type_is_internal, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_unreachable_is_unavailable, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_paused_times_out_then_recovers, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_oom_is_full, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_full_evicts_stale_swarms, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_reconnects_after_kill, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_storage_redis_auth, setup_redis, teardown),
    };
    int failed = 0;

    /* hiredis 0.14 writes with write(2): a dead connection must not kill us (the worker does the same). */
    signal(SIGPIPE, SIG_IGN);
    failed += cmocka_run_group_tests_name("storage/memory", memory_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("storage/redis", redis_tests, NULL, NULL);
    return failed;
}
