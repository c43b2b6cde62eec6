/* The Redis storage backend, the production path: one hiredis async connection per worker,
 * attached to the worker's libevent loop. Each request writes all of its commands at once with
 * redisAsyncCommandArgv, so hiredis pipelines them (and every request of one loop iteration shares
 * one write); a per-request context collects the replies in order and the user callback fires
 * after the last one. hiredis 0.14 has no async timeouts: each request carries a libevent timer,
 * and a connection that answers nothing for a whole deadline is dropped and reopened. This is the
 * only file that includes hiredis's libevent adapter. Schema: docs/architecture.md "Redis schema". */
#include "storage/storage.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/peer_client.h"
#include "storage/redis_cluster.h"
#include "storage/redis_keys.h"
#include "storage/redis_node.h"
#include "storage/redis_sentinel.h"
#include "storage/swarm_policy.h"

#include "storage/redis_functions.h"    /* redis/tyto.lua, loaded at connect in private mode */

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000
/* With Sentinel a failed connect is usually a failover in progress: the sentinels are asked again
 * at least once a second (a lookup is one round trip to a sentinel), not after 5 s. */
#define REDIS_SENTINEL_BACKOFF_MAX_MS 1000
#define REDIS_CONNECT_TIMEOUT_MIN_MS 1000  /* one lost SYN costs a 1 s retransmit */
#define REDIS_ANNOUNCE_MAX_CMDS 30     /* 14 + the account call + rank windows: (REDIS_WINDOWS + 1) a set,
                                        * two sets + 2 of the swarm statistics */
/* Swarm size hints (redis_hint_*): a direct-mapped table of the counts the last announce of a big
 * swarm returned, so that the next one can sample by rank instead of ZRANDMEMBER. */
#define REDIS_HINTS 1024
#define REDIS_HINT_MIN 129                 /* past zset-max-listpack-entries: a skiplist */
#define REDIS_HINT_MAX_AGE_MS 1000
#define REDIS_HINT_MARGIN 8                /* seeders beyond numwant + 1 to skip the leechers */
#define REDIS_WINDOWS 4                    /* rank windows a sample is split into */
/* Hot-swarm sample pools (redis_pool_*, storage.sample_cache_ms): per worker, direct-mapped. */
#define REDIS_POOLS 512                    /* entries (a swarm's seeders and leechers: two) ... */
#define REDIS_POOL_WAYS 4                  /* ... in sets of 4: hot swarms rarely evict each other */
#define REDIS_POOL_MEMBERS 384             /* a fill: about two numwant-200 samples */
#define REDIS_KEY_MAX 160                  /* prefix (< 64) + "{" + 40 hex + "}:leechers" */
/* A reply owed for this many deadlines means Redis is more than a whole deadline behind: every
 * request queued behind it times out anyway. The connection is dropped (redis_backlog_stale). */
#define REDIS_BACKLOG_DEADLINES 2
#define REDIS_CLOCK_PERIOD_MS 15000        /* TIME again this often (and at every connect) */
#define REDIS_CLOCK_WARN_MS 2000           /* warn when this host's clock is off by more */
#define REDIS_CLOCK_WARN_EVERY_MS 60000

/* ACCOUNT: FCALL tyto_account alone, a cluster node's part of a private announce (its keys are in
 * the {private} slot, not the swarm's: storage/redis_router.c sends it to that slot's owner). */
enum redis_kind {
    REDIS_REQ_ANNOUNCE, REDIS_REQ_SCRAPE, REDIS_REQ_HEALTH, REDIS_REQ_LOOKUP, REDIS_REQ_ACCOUNT,
    REDIS_REQ_RAW,                         /* a cluster router's own command: its reply handed over */
};

#define REDIS_COUNTS 16384                 /* distinct (swarm, field) counts a half of the table holds ... */
#define REDIS_COUNT_FIELD_MAX 47           /* ... each of a field this long at most ... */
#define REDIS_COUNT_FLUSH_MS 1000          /* ... for this long, or until 3/4 full */
#define REDIS_COUNT_INFLIGHT 256           /* a flush's HINCRBYs unanswered at a time, at most */
#define REDIS_PKEY_MAX 320                 /* prefix + "{private}:peer:" + name + 2 x 40 hex */

/* What one announce command's reply feeds. */
enum redis_slot {
    REDIS_SLOT_WRITE,                      /* ZADD, ZREM, ZREMRANGEBYSCORE, HINCRBY, EXPIRE: integer */
    REDIS_SLOT_SAMPLE,                     /* ZRANDMEMBER: array of members */
    REDIS_SLOT_SEEDERS,                    /* ZCARD seeders */
    REDIS_SLOT_LEECHERS,                   /* ZCARD leechers */
    REDIS_SLOT_DOWNLOADED,                 /* HGET info downloaded: string or nil */
    REDIS_SLOT_MULTI,                      /* MULTI: +OK */
    REDIS_SLOT_QUEUED,                     /* a command inside MULTI: +QUEUED */
    REDIS_SLOT_EXEC,                       /* EXEC: one integer per queued command */
    REDIS_SLOT_ACCOUNT,                    /* FCALL tyto_account: [credited up, credited down] */
    REDIS_SLOT_PRIOR,                      /* ZSCORE own member: its expiry before this announce */
    REDIS_SLOT_POOL_S,                     /* ZRANGE filling the seeders' sample pool ... */
    REDIS_SLOT_POOL_S_LAST,                /* ... its last one */
    REDIS_SLOT_POOL_L,                     /* the same for the leechers */
    REDIS_SLOT_POOL_L_LAST,
};

struct redis_storage;

/* One request in flight. It lives until both its user callback has run (done) and hiredis has
 * delivered every reply it owes (pending == 0), whichever comes last: a request that timed out
 * still receives its late replies, and they are dropped here, never matched to another request. */
struct redis_req {
    struct redis_req *prev, *next;         /* rs->reqs, while not done */
    struct redis_storage *rs;              /* NULL once done */
    enum redis_kind kind;
    int status;                            /* first failure wins */
    bool done;                             /* user callback has run */
    bool deferred;                         /* timer delivers status at once (nothing was sent) */
    unsigned pending;                      /* hiredis callbacks still owed */
    unsigned ncmds;                        /* commands accepted by hiredis */
    unsigned replies;                      /* replies seen: the index of the next one */
    struct redis_req *owed_prev, *owed_next; /* on owed_rs's list while pending > 0 */
    struct redis_storage *owed_rs;         /* NULL when off the list (or the storage is gone) */
    uint64_t sent_ms;                      /* monotonic: its first command was handed to hiredis */
    struct event *timer;                   /* deadline, or the zero-delay deferred delivery */
    storage_announce_cb *announce_cb;
    storage_scrape_cb *scrape_cb;
    storage_health_cb *health_cb;
    void *arg;
    /* announce */
    uint8_t slots[REDIS_ANNOUNCE_MAX_CMDS];
    uint8_t info_hash[ANNOUNCE_HASH_LEN];  /* for the size hint its counts refresh */
    char self[REDIS_KEYS_MEMBER_MAX];      /* own member, dropped from samples */
    size_t self_len;
    unsigned numwant;
    struct swarm_stats stats;
    size_t peers4_count, peers6_count;
    uint8_t *peers4, *peers6;              /* numwant entries each, in buf */
    bool completing;                       /* the EVAL counting a completed move is queued 2nd */
    bool snatched;                         /* ... and it counted (returned 1) */
    struct announce_req req;               /* private mode: what the snatch call needs */
    /* Redis Cluster (a node of storage/redis_router.c): ASKING goes before each command, and a
     * reply saying a command was not run where it was sent (MOVED, ASK, ...) is kept for the
     * router, which resends. */
    bool asking, cluster;
    struct redis_node_redirect redirect;
    /* swarm statistics (stats.enabled): what the anomaly checks after the reply need */
    int64_t prior_expiry_s;                /* ZSCORE's answer; 0: not in its set before */
    int64_t now_s;                         /* the announce's time on Redis's clock */
    uint64_t uploaded;
    enum announce_event event;
    const char *client;                    /* peer_client code of its peer_id (static) */
    bool seeder, stats_count, stats_after;
    /* sample pools: the fills this request claimed (their entries' filling_ms, 0 none), and the
     * leechers drawn from a pool, appended after the seeders when the request finishes */
    uint64_t pool_claim[2];
    uint8_t self_compact[REDIS_KEYS_PEER_MAX];
    int self_compact_len;
    uint8_t *lpool4, *lpool6;              /* numwant entries each, in buf */
    size_t lpool4_count, lpool6_count;
    /* raw */
    storage_redis_node_raw_cb *raw_cb;
    const redisReply *raw_reply;           /* valid in the reply callback that finishes r */
    /* lookup */
    storage_lookup_cb *lookup_cb;
    struct storage_lookup_reply lookup;
    unsigned lookup_first;                 /* the first reply's part: 0 the user's, 1 the torrent's */
    /* scrape */
    unsigned scrape_count;
    struct swarm_stats *scrape_stats;      /* in buf */
    unsigned scrape_stride;                /* commands per hash: 3, or 4 in private mode */
    uint8_t *scrape_unapproved;            /* private mode: per hash, in buf after the stats */
    /* A cluster node's scrape (storage/redis_node.h): per hash, the commands a node redirected
     * (bit j: the hash's command j) and REDIS_NODE_UNAPPROVED; and, when the router asked for
     * some of a hash's commands only, which hash and command each reply is (hash << 3 | j). */
    uint8_t *scrape_flags;
    uint16_t *scrape_cmds;
    uint8_t buf[];
};

struct redis_storage {
    struct storage base;                   /* first: the interface */
    struct event_base *evbase;
    struct config_redis_target target;
    struct config *sentinel_cfg;           /* a copy of the configuration in Sentinel mode, else NULL */
    char where[CONFIG_STR_MAX + 16];       /* for log lines: host:port or the socket path */
    char prefix[64];
    int timeout_ms;
    int connect_timeout_ms;
    bool private_enabled;                  /* load the function library at connect */
    uint64_t reload_ms;                    /* monotonic: the last FUNCTION LOAD after "not found" */
    bool reload_warned;                    /* ... warned about, once a connection */
    char ttl[16], maxlen[16];              /* announce.peer_ttl_s, private.events_maxlen as text */
    bool mirror_credits;
    bool stats_enabled;                    /* stats.enabled: the swarm statistics commands */
    int interval_s, min_interval_s, peer_ttl_s;
    char stats_ttl[16];                    /* a stats hash outlives its last announce by this */
    struct swarm_policy policy;            /* the swarm rules (storage/swarm_policy.h) */
    redisAsyncContext *ac;                 /* NULL while waiting to reconnect */
    bool connected;                        /* ac has finished connecting */
    bool drop_requested;                   /* AUTH/SELECT failed: reopen */
    bool freeing;
    bool cluster;                          /* a node of a cluster router: report redirections */
    bool asking_next;                      /* the request being built goes with ASKING */
    struct redis_node_redirect last_redirect; /* what the node said of the request finished last */
    const uint8_t *last_scrape_flags;      /* ... and of a scrape, per hash (its scrape_flags) */
    int backoff_ms;                        /* next reconnect delay */
    uint64_t last_reply_ms;                /* monotonic: last reply, or the connect */
    struct event *retry_ev;                /* back-off before the next connect */
    struct event *connect_ev;              /* connect deadline */
    struct event *reset_ev;                /* drops a stalled connection from the loop's top level */
    struct redis_req *reqs;                /* requests whose callback has not run */
    /* Requests owing replies (done or not), oldest first: replies come in order, so the head
     * is the one Redis answers next and its age is how far behind Redis is. */
    struct redis_req *owed_head, *owed_tail;
    /* Redis's clock: unix ms = the loop's cached time + clock_offset_ms (redis_req_now_s). */
    int64_t clock_offset_ms;
    bool clock_known;                      /* a TIME reply came (or TIME failed: host clock) */
    bool clock_pending;                    /* a TIME is on the connection */
    uint64_t clock_sent_ms;                /* monotonic: when it was written */
    uint64_t clock_warned_ms;              /* monotonic: last warning about this host's clock */
    struct event *clock_ev;                /* periodic TIME */
    uint64_t rng;                          /* xorshift64* state: rank windows */
    /* Counts of big swarms as their last announce saw them: only a hint (which sampling command
     * to send), never an answer: every reply's counts come from Redis. Bounded: REDIS_HINTS. */
    struct redis_hint {
        uint8_t info_hash[ANNOUNCE_HASH_LEN];
        uint32_t seeders, leechers;
        uint64_t at_ms;                    /* monotonic; 0 = empty */
    } hints[REDIS_HINTS];
    /* Members of a big set read at most sample_cache_ms ago: announces of a hot swarm draw their
     * sample from here instead of asking Redis for members each time (issue 10: Redis's cost is
     * per member returned). A cache, not swarm state: counts always come from Redis, a peer never
     * gets itself, and an entry is refilled (REDIS_POOL_MEMBERS from one uniform rank) once old.
     * Bounded: REDIS_POOLS entries of REDIS_POOL_MEMBERS members. NULL when off. */
    int sample_cache_ms;
    struct redis_pool {
        uint8_t info_hash[ANNOUNCE_HASH_LEN];
        uint8_t set;                       /* 0 seeders, 1 leechers */
        uint64_t at_ms;                    /* monotonic, when filled; 0 = empty or filling */
        uint64_t filling_ms;               /* monotonic, when a request claimed it to refill; 0 none */
        uint16_t n4, n6;
        uint8_t peers4[REDIS_POOL_MEMBERS * PEER_COMPACT4_LEN];
        uint8_t peers6[REDIS_POOL_MEMBERS * PEER_COMPACT6_LEN];
    } *pools;
    /* The statistics' counters (s:/l: minutes, c: clients, fast:) added up here and written as
     * one HINCRBY per swarm and field each REDIS_COUNT_FLUSH_MS: a hot swarm's hundred announces
     * a second cost Redis one command a field, not a hundred. Counting decides nothing, so a
     * count lost to a crash or an outage costs a figure, never a peer. NULL with stats off.
     * Two halves of REDIS_COUNTS entries: one counts (an open-addressing table, only ever
     * filled, then emptied whole) while the other is written out a part at a time. */
    struct redis_count {
        uint8_t info_hash[ANNOUNCE_HASH_LEN];
        uint8_t len;                       /* of field; 0 = empty */
        char field[REDIS_COUNT_FIELD_MAX];
        uint32_t n;
    } *counts;
    unsigned counts_active;                /* the half counted into: 0 or 1 */
    unsigned counts_used;                  /* its entries in use */
    struct event *count_ev;                /* periodic flush */
    bool counts_draining;                  /* the other half is being written out ... */
    unsigned counts_cursor;                /* ... and goes on from here */
    unsigned counts_unacked;               /* its HINCRBYs on the connection, not yet answered */
};

static uint64_t redis_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timeval redis_tv(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    return tv;
}

static uint32_t redis_u32(long long v)
{
    if (v < 0)
        return 0;
    if ((unsigned long long)v > UINT32_MAX)
        return UINT32_MAX;
    return (uint32_t)v;
}

static void redis_connect(struct redis_storage *rs);
static void redis_snatch(struct redis_storage *rs, const struct announce_req *req);
static void redis_stats_after(struct redis_storage *rs, const struct redis_req *r);
static void redis_count_add(struct redis_storage *rs, const uint8_t *info_hash, const char *field);
static void redis_pool_append_leechers(struct redis_req *r);

/* ---- requests ---------------------------------------------------------------------------- */

static void redis_req_timeout(evutil_socket_t fd, short what, void *arg);

/* The extra bytes (buf) are not zeroed: an announce writes its peers before counting them, and
 * zeroing ~2.4 KB a request was 5 % of a worker's instructions (bench/callgrind.sh steady). */
static struct redis_req *redis_req_new(struct redis_storage *rs, enum redis_kind kind, size_t extra,
                                       void *arg)
{
    struct redis_req *r = malloc(sizeof(*r) + extra);

    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->timer = evtimer_new(rs->evbase, redis_req_timeout, r);
    if (!r->timer) {
        free(r);
        return NULL;
    }
    r->kind = kind;
    r->arg = arg;
    r->rs = rs;
    r->cluster = rs->cluster;
    r->asking = rs->asking_next;
    r->next = rs->reqs;
    if (rs->reqs)
        rs->reqs->prev = r;
    rs->reqs = r;
    return r;
}

static void redis_req_fail(struct redis_req *r, int status)
{
    if (r->status == STORAGE_OK)
        r->status = status;
}

/* Puts r at the tail of the owed list as its first command goes out. */
static void redis_owed_add(struct redis_storage *rs, struct redis_req *r)
{
    r->owed_rs = rs;
    r->sent_ms = redis_now_ms();
    r->owed_prev = rs->owed_tail;
    r->owed_next = NULL;
    if (rs->owed_tail)
        rs->owed_tail->owed_next = r;
    else
        rs->owed_head = r;
    rs->owed_tail = r;
}

/* Takes r off the owed list once its last reply came (or the connection failed it); a request
 * already answered leaves the backlog. */
static void redis_owed_remove(struct redis_req *r)
{
    struct redis_storage *rs = r->owed_rs;

    if (!rs)
        return;
    if (r->owed_prev)
        r->owed_prev->owed_next = r->owed_next;
    else
        rs->owed_head = r->owed_next;
    if (r->owed_next)
        r->owed_next->owed_prev = r->owed_prev;
    else
        rs->owed_tail = r->owed_prev;
    r->owed_prev = r->owed_next = NULL;
    r->owed_rs = NULL;
    if (r->done)
        rs->base.backlog--;
}

/* The hint slot of a swarm: info-hashes are SHA-1 output, so their first bytes are uniform. */
static struct redis_hint *redis_hint_slot(struct redis_storage *rs, const uint8_t *info_hash)
{
    uint32_t h = (uint32_t)info_hash[0] | (uint32_t)info_hash[1] << 8 | (uint32_t)info_hash[2] << 16;

    return &rs->hints[h % REDIS_HINTS];
}

/* Remembers a big swarm's counts from an announce's reply; a small swarm does not evict a big
 * one (it samples with ZRANDMEMBER anyway) but refreshes its own entry when it shrank. */
static void redis_hint_store(struct redis_storage *rs, const uint8_t *info_hash, const struct swarm_stats *s)
{
    struct redis_hint *h = redis_hint_slot(rs, info_hash);
    bool same = h->at_ms != 0 && memcmp(h->info_hash, info_hash, ANNOUNCE_HASH_LEN) == 0;

    if (!same && s->complete < REDIS_HINT_MIN && s->incomplete < REDIS_HINT_MIN)
        return;
    memcpy(h->info_hash, info_hash, ANNOUNCE_HASH_LEN);
    h->seeders = s->complete;
    h->leechers = s->incomplete;
    h->at_ms = redis_now_ms();
}

/* The hint of a swarm if one younger than REDIS_HINT_MAX_AGE_MS is held, else NULL. */
static const struct redis_hint *redis_hint_get(struct redis_storage *rs, const uint8_t *info_hash)
{
    const struct redis_hint *h = redis_hint_slot(rs, info_hash);

    if (h->at_ms == 0 || memcmp(h->info_hash, info_hash, ANNOUNCE_HASH_LEN) != 0 ||
        redis_now_ms() - h->at_ms > REDIS_HINT_MAX_AGE_MS)
        return NULL;
    return h;
}

/* Runs the user callback once and detaches r from the storage; r itself stays until
 * redis_req_release finds nothing more owed. */
static void redis_req_finish(struct redis_req *r, int status)
{
    struct redis_storage *rs = r->rs;

    if (r->prev)
        r->prev->next = r->next;
    else
        rs->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->rs = NULL;
    r->done = true;
    if (r->pending > 0)
        rs->base.backlog++;                /* answered, but its replies are still owed */
    evtimer_del(r->timer);
    if (rs->cluster) {                     /* read by the router inside the callback below */
        rs->last_redirect = r->redirect;
        rs->last_redirect.snatched = r->snatched;
    }
    if (status == STORAGE_ERR_REDIRECT) {
        rs->base.counters.redirects++;
    } else if (status != STORAGE_OK) {
        rs->base.counters.errors++;
    }

    switch (r->kind) {
    case REDIS_REQ_ANNOUNCE:
        if (status == STORAGE_OK)
            redis_pool_append_leechers(r);
        if (status == STORAGE_OK) {
            struct announce_reply rep = {
                .stats = r->stats,
                .peers4 = r->peers4, .peers4_count = r->peers4_count,
                .peers6 = r->peers6, .peers6_count = r->peers6_count,
            };

            redis_hint_store(rs, r->info_hash, &r->stats);
            if (r->stats_count) {
                char minute[32];

                minute[0] = r->seeder ? 's' : 'l';
                minute[1] = ':';
                redis_keys_i64(minute + 2, r->now_s / 60);
                redis_count_add(rs, r->info_hash, minute);
            }
            if (r->stats_after)
                redis_stats_after(rs, r);
            r->announce_cb(&rep, status, r->arg);
        } else {
            r->announce_cb(NULL, status, r->arg);
        }
        break;
    case REDIS_REQ_SCRAPE:
        rs->last_scrape_flags = r->scrape_flags;
        /* A node's redirected scrape carries what the commands that ran answered (0 for the others). */
        if (status == STORAGE_OK || (status == STORAGE_ERR_REDIRECT && r->scrape_flags)) {
            struct scrape_reply rep = { .count = r->scrape_count, .stats = r->scrape_stats };

            r->scrape_cb(&rep, status, r->arg);
        } else {
            r->scrape_cb(NULL, status, r->arg);
        }
        break;
    case REDIS_REQ_HEALTH:
    case REDIS_REQ_ACCOUNT:
        r->health_cb(status, r->arg);
        break;
    case REDIS_REQ_LOOKUP:
        r->lookup_cb(status == STORAGE_OK ? &r->lookup : NULL, status, r->arg);
        break;
    case REDIS_REQ_RAW:
        r->raw_cb(status == STORAGE_OK ? r->raw_reply : NULL, status, r->arg);
        break;
    }
}

static void redis_req_release(struct redis_req *r)
{
    if (r->done && r->pending == 0) {
        event_free(r->timer);
        free(r);
    }
}

/* Hands one command to hiredis. Commands of a request go out in order and stop at the first
 * refusal, so reply i always belongs to command i. Returns 0 or -1. */
static int redis_send(struct redis_storage *rs, struct redis_req *r, enum redis_slot slot, int argc,
                      const char **argv, const size_t *lens);

/* Arms the request after its commands were handed over: the deadline, or, if nothing went out,
 * a zero-delay delivery of its status (never a synchronous callback). */
static void redis_req_start(struct redis_storage *rs, struct redis_req *r)
{
    struct timeval tv;

    if (r->pending == 0) {
        r->deferred = true;
        tv = redis_tv(0);
    } else {
        tv = redis_tv(rs->timeout_ms);
    }
    evtimer_add(r->timer, &tv);
}

/* The backlog is stale when the oldest reply still owed was asked for REDIS_BACKLOG_DEADLINES
 * deadlines ago or more. Redis is then behind by more than a whole deadline: whatever is queued
 * behind that reply will time out too, and the queue only grows while load exceeds what Redis
 * serves. Dropping the connection releases every owed callback and the memory they hold at
 * once (hiredis fails them with NULL replies) and starts over with an empty queue. Twice the
 * deadline rather than once leaves a connection that is merely slow for a moment alone. */
static bool redis_backlog_stale(const struct redis_storage *rs, uint64_t now_ms)
{
    return rs->owed_head &&
           now_ms - rs->owed_head->sent_ms >= (uint64_t)rs->timeout_ms * REDIS_BACKLOG_DEADLINES;
}

/* Arms reset_ev for when the oldest owed reply turns stale. Without it a backlog that fills
 * http.max_pending would never be dropped: every new request is refused before it reaches
 * storage, so no request deadline is left to notice. */
static void redis_watch_backlog(struct redis_storage *rs)
{
    uint64_t bound = (uint64_t)rs->timeout_ms * REDIS_BACKLOG_DEADLINES, age;
    struct timeval tv;

    if (!rs->owed_head || !rs->connected || event_pending(rs->reset_ev, EV_TIMEOUT, NULL))
        return;
    age = redis_now_ms() - rs->owed_head->sent_ms;
    tv = redis_tv(age >= bound ? 0 : (int)(bound - age) + 1);
    evtimer_add(rs->reset_ev, &tv);
}

static void redis_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_req *r = arg;
    struct redis_storage *rs = r->rs;
    int status = r->status;
    (void)fd;
    (void)what;

    if (!r->deferred) {
        status = STORAGE_ERR_TIMEOUT;
        rs->base.counters.timeouts++;
        /* No reply at all for a whole deadline: the connection is stuck (a paused or wedged
         * Redis, a black-holed route). Reopen it from the loop's top level. Likewise when the
         * backlog is stale; otherwise check again when it would be. */
        if (rs->ac && rs->connected && (redis_now_ms() - rs->last_reply_ms >= (uint64_t)rs->timeout_ms ||
                                        redis_backlog_stale(rs, redis_now_ms())))
            event_active(rs->reset_ev, EV_TIMEOUT, 1);
        else
            redis_watch_backlog(rs);
    }
    redis_req_finish(r, status);
    redis_req_release(r);
}

/* ---- replies ----------------------------------------------------------------------------- */

/* Sentinel mode: the node stopped being a usable master (why: its error, or ROLE's answer). The
 * connection is dropped from the loop's top level, failing its requests at once, and the next
 * connect asks the sentinels where the master is now. */
static void redis_request_drop(struct redis_storage *rs, const char *why)
{
    if (rs->drop_requested)
        return;
    log_warn("redis %s: %s: asking the sentinels again", rs->where, why);
    rs->drop_requested = true;
    event_active(rs->reset_ev, EV_TIMEOUT, 1);
}

/* ROLE, queued first on every connection in Sentinel mode (the clients' guidelines: the address a
 * sentinel gave may already be stale). Anything but "master" reopens the connection. */
static void redis_role_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct redis_storage *rs = ac->data;
    (void)privdata;

    if (rs && rs->ac == ac && reply_ptr && redis_sentinel_parse_role(reply_ptr) != 1)
        redis_request_drop(rs, "not a master (ROLE)");
}

static int redis_reply_status(const redisReply *reply)
{
    static const char execabort_oom[] = "EXECABORT Transaction discarded because of: OOM";

    if (reply->type == REDIS_REPLY_ERROR) {
        /* "OOM command not allowed when used memory > 'maxmemory'"; or, when memory ran out
         * between queueing the announce's MULTI and its EXEC, the EXEC refused with the same
         * reason behind "EXECABORT ... because of: " (nothing of the transaction was written). */
        if ((reply->len >= 3 && memcmp(reply->str, "OOM", 3) == 0) ||
            (reply->len >= sizeof(execabort_oom) - 1 &&
             memcmp(reply->str, execabort_oom, sizeof(execabort_oom) - 1) == 0))
            return STORAGE_ERR_FULL;
        return STORAGE_ERR_INTERNAL;
    }
    return STORAGE_OK;
}

/* HGET downloaded: a decimal string, or nil for a swarm without completions. */
static int redis_parse_downloaded(const redisReply *reply, uint32_t *out)
{
    unsigned long long v = 0;
    size_t i;

    if (reply->type == REDIS_REPLY_NIL) {
        *out = 0;
        return 0;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > 20)
        return -1;
    for (i = 0; i < reply->len; i++) {
        if (reply->str[i] < '0' || reply->str[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(reply->str[i] - '0');
    }
    *out = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return 0;
}

/* Copies a ZRANDMEMBER sample into the reply's compact arrays, without self, up to numwant. */
static int redis_parse_sample(struct redis_req *r, const redisReply *reply)
{
    size_t i;

    if (reply->type != REDIS_REPLY_ARRAY)
        return -1;
    for (i = 0; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        uint8_t peer[REDIS_KEYS_PEER_MAX];
        int n;

        if (r->peers4_count + r->peers6_count >= r->numwant)
            break;
        if (m->type != REDIS_REPLY_STRING)
            return -1;
        if (m->len == r->self_len && memcmp(m->str, r->self, m->len) == 0)
            continue;
        n = redis_keys_member_compact(m->str, m->len, peer);
        if (n == PEER_COMPACT4_LEN)
            memcpy(r->peers4 + PEER_COMPACT4_LEN * r->peers4_count++, peer, PEER_COMPACT4_LEN);
        else if (n == PEER_COMPACT6_LEN)
            memcpy(r->peers6 + PEER_COMPACT6_LEN * r->peers6_count++, peer, PEER_COMPACT6_LEN);
        /* else: a member some other writer put there; skip it rather than fail the swarm */
    }
    return 0;
}

/* EXEC's array: one reply per command queued since the MULTI before idx, all integers (ZADD,
 * ZREM, EVAL, EXPIREAT). A command that failed inside the transaction (WRONGTYPE: the others
 * still ran, Redis has no rollback) fails the request like a reply of its own would. */
static int redis_parse_exec(struct redis_req *r, unsigned idx, const redisReply *reply)
{
    size_t queued = 0, i;
    unsigned j = idx;

    while (j > 0 && r->slots[--j] == REDIS_SLOT_QUEUED)
        queued++;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != queued)
        return -1;
    for (i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];

        if (e->type == REDIS_REPLY_ERROR) {
            redis_req_fail(r, redis_reply_status(e));
            return 0;
        }
        if (e->type != REDIS_REPLY_INTEGER)
            return -1;
    }
    return 0;
}

/* The completed move's EVAL (queued right after the ZADD) returned 1: the download was counted
 * in the swarm, and a retry will not count it again, so the user's snatch goes out now, not
 * waited for, whatever becomes of the rest of the request (timed out, a later reply failed). */
static void redis_check_snatch(struct redis_storage *rs, struct redis_req *r, unsigned idx,
                               const redisReply *reply)
{
    if (r->kind != REDIS_REQ_ANNOUNCE || !r->completing || r->snatched || idx >= REDIS_ANNOUNCE_MAX_CMDS ||
        r->slots[idx] != REDIS_SLOT_EXEC)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[1]->type != REDIS_REPLY_INTEGER || reply->element[1]->integer != 1)
        return;
    r->snatched = true;
    rs->base.counters.completed++;
    if (r->req.account.user[0] && rs->ac && !rs->cluster)   /* a cluster: the router sends it */
        redis_snatch(rs, &r->req);
}

/* A reply element as text: a bulk/status string or an integer; "" for nil. */
static const char *redis_text(const redisReply *e, char *tmp, size_t cap)
{
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
        return e->str;
    if (e->type == REDIS_REPLY_INTEGER) {
        snprintf(tmp, cap, "%lld", e->integer);
        return tmp;
    }
    return "";
}

/* A multiplier is decimal text passed on to Lua as it is; anything else counts as "1" (an
 * operator's typo must not stop accounting, nor reach tonumber() as something odd). */
static void redis_copy_mult(char *dst, const redisReply *e)
{
    char tmp[24];
    const char *t = redis_text(e, tmp, sizeof(tmp));
    size_t n = strlen(t), dots = 0, i;
    bool ok = n > 0 && n <= ANNOUNCE_MULT_MAX;

    for (i = 0; ok && i < n; i++) {
        if (t[i] == '.')
            dots++;
        else if (t[i] < '0' || t[i] > '9')
            ok = false;
    }
    snprintf(dst, ANNOUNCE_MULT_MAX + 1, "%s", ok && dots <= 1 && t[0] != '.' ? t : "1");
}

/* Reply 0: tyto_lookup's [status, name, can_leech, expires]; reply 1: HMGET added freeleech
 * neutral up down (all nil: not approved). */
static int redis_parse_lookup(struct redis_req *r, unsigned idx, const redisReply *reply)
{
    struct storage_lookup_reply *l = &r->lookup;
    char tmp[24];

    if (reply->type != REDIS_REPLY_ARRAY)
        return -1;
    if (idx == 0) {
        const char *st;

        if (reply->elements != 4)
            return -1;
        st = redis_text(reply->element[0], tmp, sizeof(tmp));
        if (strcmp(st, "ok") == 0)
            l->user = STORAGE_USER_OK;
        else if (strcmp(st, "disabled") == 0)
            l->user = STORAGE_USER_DISABLED;
        else if (strcmp(st, "unknown") == 0)
            l->user = STORAGE_USER_UNKNOWN;
        else
            return -1;
        /* A name longer than the field (hand-written into Redis) is not cut to another
         * user's name: the lookup fails instead. */
        const char *name = redis_text(reply->element[1], tmp, sizeof(tmp));
        if (strlen(name) >= sizeof(l->name))
            return -1;
        memcpy(l->name, name, strlen(name) + 1);
        l->can_leech = strcmp(redis_text(reply->element[2], tmp, sizeof(tmp)), "1") == 0;
        l->expires_s = strtoll(redis_text(reply->element[3], tmp, sizeof(tmp)), NULL, 10);
        if (l->user == STORAGE_USER_OK && l->name[0] == '\0')
            return -1;
        return 0;
    }
    if (reply->elements != 5)
        return -1;
    for (size_t i = 0; i < 5; i++)
        if (reply->element[i]->type != REDIS_REPLY_NIL)
            l->torrent_approved = true;
    l->freeleech = strcmp(redis_text(reply->element[1], tmp, sizeof(tmp)), "1") == 0;
    l->neutral = strcmp(redis_text(reply->element[2], tmp, sizeof(tmp)), "1") == 0;
    redis_copy_mult(l->up_mult, reply->element[3]);
    redis_copy_mult(l->down_mult, reply->element[4]);
    if (reply->element[3]->type == REDIS_REPLY_NIL)
        snprintf(l->up_mult, sizeof(l->up_mult), "1");
    if (reply->element[4]->type == REDIS_REPLY_NIL)
        snprintf(l->down_mult, sizeof(l->down_mult), "1");
    return 0;
}

/* ---- hot-swarm sample pools ---------------------------------------------------------------- */

static uint64_t redis_rand(struct redis_storage *rs);

/* The entry of (info_hash, set): its own if the table has one, else (victim) the way to take over
 * in its group: an empty one, else the least recently filled one not being filled, else NULL. */
static struct redis_pool *redis_pool_slot(struct redis_storage *rs, const uint8_t *info_hash, unsigned set,
                                          bool victim)
{
    struct redis_pool *g, *best = NULL;
    uint32_t h;

    memcpy(&h, info_hash + 4, sizeof(h));  /* info_hashes are SHA-1 (or SHA-256) output: spread */
    g = &rs->pools[(h * 2u + set) % (REDIS_POOLS / REDIS_POOL_WAYS) * REDIS_POOL_WAYS];
    for (int i = 0; i < REDIS_POOL_WAYS; i++)
        if ((g[i].at_ms || g[i].filling_ms) && g[i].set == set &&
            memcmp(g[i].info_hash, info_hash, ANNOUNCE_HASH_LEN) == 0)
            return &g[i];
    if (!victim)
        return NULL;
    uint64_t now_ms = redis_now_ms();
    for (int i = 0; i < REDIS_POOL_WAYS; i++) {
        /* a fill older than a deadline was abandoned (its request timed out) */
        bool filling = g[i].filling_ms && now_ms - g[i].filling_ms < (uint64_t)rs->timeout_ms;
        if (!g[i].at_ms && !filling)
            return &g[i];
        if (!filling && (!best || g[i].at_ms < best->at_ms))
            best = &g[i];
    }
    return best;
}

/* The pool of one set if it is fresh, else NULL. */
static struct redis_pool *redis_pool_get(struct redis_storage *rs, const uint8_t *info_hash, unsigned set)
{
    struct redis_pool *p;

    if (!rs->pools || !(p = redis_pool_slot(rs, info_hash, set, false)))
        return NULL;
    if (p->at_ms == 0 || redis_now_ms() - p->at_ms > (uint64_t)rs->sample_cache_ms)
        return NULL;
    return p;
}

/* Draws up to want members of p, none of them self, uniformly without repetition (a partial
 * Fisher-Yates over the pool's indices), into dst4/dst6 after the n4/n6 entries there. */
static void redis_pool_draw(struct redis_storage *rs, const struct redis_pool *p, const struct redis_req *r,
                            size_t want, uint8_t *dst4, size_t *n4, uint8_t *dst6, size_t *n6)
{
    uint16_t idx[2 * REDIS_POOL_MEMBERS];
    size_t n = (size_t)p->n4 + p->n6, got = 0;

    for (size_t i = 0; i < n; i++)
        idx[i] = (uint16_t)i;
    for (size_t i = 0; i < n && got < want; i++) {
        size_t j = i + (size_t)(redis_rand(rs) % (n - i));
        uint16_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        if (idx[i] < p->n4) {
            const uint8_t *m = p->peers4 + (size_t)idx[i] * PEER_COMPACT4_LEN;
            if (r->self_compact_len == PEER_COMPACT4_LEN && memcmp(m, r->self_compact, PEER_COMPACT4_LEN) == 0)
                continue;
            memcpy(dst4 + PEER_COMPACT4_LEN * (*n4)++, m, PEER_COMPACT4_LEN);
        } else {
            const uint8_t *m = p->peers6 + (size_t)(idx[i] - p->n4) * PEER_COMPACT6_LEN;
            if (r->self_compact_len == PEER_COMPACT6_LEN && memcmp(m, r->self_compact, PEER_COMPACT6_LEN) == 0)
                continue;
            memcpy(dst6 + PEER_COMPACT6_LEN * (*n6)++, m, PEER_COMPACT6_LEN);
        }
        got++;
    }
}

/* A fill's ZRANGE reply. The request claimed the entry when it sent the fill (redis_sample), so
 * no other request reads it or refills it meanwhile; a reply whose claim was lost (the entry
 * taken by another swarm after a timed-out fill) is dropped. The last reply marks the entry fresh
 * and draws this request's own sample from it (seeders into the reply now, leechers after
 * whatever seeders came). */
static int redis_pool_parse(struct redis_req *r, const redisReply *reply, unsigned set, bool last)
{
    struct redis_storage *rs = r->rs;
    struct redis_pool *p;

    if (reply->type != REDIS_REPLY_ARRAY)
        return -1;
    if (!rs || !rs->pools || r->pool_claim[set] == 0)
        return 0;
    p = redis_pool_slot(rs, r->info_hash, set, false);
    if (!p || p->filling_ms != r->pool_claim[set] || p->set != set ||
        memcmp(p->info_hash, r->info_hash, ANNOUNCE_HASH_LEN) != 0) {
        r->pool_claim[set] = 0;
        return 0;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        uint8_t peer[REDIS_KEYS_PEER_MAX];
        int n;

        if (m->type != REDIS_REPLY_STRING)
            return -1;
        n = redis_keys_member_compact(m->str, m->len, peer);
        if (n == PEER_COMPACT4_LEN && p->n4 < REDIS_POOL_MEMBERS)
            memcpy(p->peers4 + PEER_COMPACT4_LEN * p->n4++, peer, PEER_COMPACT4_LEN);
        else if (n == PEER_COMPACT6_LEN && p->n6 < REDIS_POOL_MEMBERS)
            memcpy(p->peers6 + PEER_COMPACT6_LEN * p->n6++, peer, PEER_COMPACT6_LEN);
    }
    if (!last)
        return 0;
    p->at_ms = redis_now_ms();
    p->filling_ms = 0;
    r->pool_claim[set] = 0;
    size_t have = r->peers4_count + r->peers6_count;
    if (set == 0)
        redis_pool_draw(rs, p, r, r->numwant > have ? r->numwant - have : 0, r->peers4, &r->peers4_count,
                        r->peers6, &r->peers6_count);
    else
        redis_pool_draw(rs, p, r, r->numwant, r->lpool4, &r->lpool4_count, r->lpool6, &r->lpool6_count);
    return 0;
}

/* At the end: the leechers drawn from a pool go after the seeders, up to numwant. */
static void redis_pool_append_leechers(struct redis_req *r)
{
    for (size_t i = 0; i < r->lpool4_count && r->peers4_count + r->peers6_count < r->numwant; i++)
        memcpy(r->peers4 + PEER_COMPACT4_LEN * r->peers4_count++, r->lpool4 + PEER_COMPACT4_LEN * i,
               PEER_COMPACT4_LEN);
    for (size_t i = 0; i < r->lpool6_count && r->peers4_count + r->peers6_count < r->numwant; i++)
        memcpy(r->peers6 + PEER_COMPACT6_LEN * r->peers6_count++, r->lpool6 + PEER_COMPACT6_LEN * i,
               PEER_COMPACT6_LEN);
}

/* Stores reply number idx of r. Returns 0, or -1 for a reply of the wrong shape. */
static int redis_parse(struct redis_req *r, unsigned idx, const redisReply *reply)
{
    switch (r->kind) {
    case REDIS_REQ_ANNOUNCE:
        switch ((enum redis_slot)r->slots[idx]) {
        case REDIS_SLOT_WRITE:
            return reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
        case REDIS_SLOT_SAMPLE:
            return redis_parse_sample(r, reply);
        case REDIS_SLOT_SEEDERS:
            if (reply->type != REDIS_REPLY_INTEGER)
                return -1;
            r->stats.complete = redis_u32(reply->integer);
            return 0;
        case REDIS_SLOT_LEECHERS:
            if (reply->type != REDIS_REPLY_INTEGER)
                return -1;
            r->stats.incomplete = redis_u32(reply->integer);
            return 0;
        case REDIS_SLOT_DOWNLOADED:
            return redis_parse_downloaded(reply, &r->stats.downloaded);
        case REDIS_SLOT_MULTI:
        case REDIS_SLOT_QUEUED:
            /* An error here (OOM, NOPERM) never reaches us: redis_reply_cb fails the request,
             * and Redis answers the EXEC with EXECABORT, having written nothing. */
            return reply->type == REDIS_REPLY_STATUS ? 0 : -1;
        case REDIS_SLOT_EXEC:
            return redis_parse_exec(r, idx, reply);
        case REDIS_SLOT_ACCOUNT:
            return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 ? 0 : -1;
        case REDIS_SLOT_POOL_S:
        case REDIS_SLOT_POOL_S_LAST:
        case REDIS_SLOT_POOL_L:
        case REDIS_SLOT_POOL_L_LAST:
            return redis_pool_parse(r, reply, r->slots[idx] >= REDIS_SLOT_POOL_L,
                                    r->slots[idx] == REDIS_SLOT_POOL_S_LAST || r->slots[idx] == REDIS_SLOT_POOL_L_LAST);
        case REDIS_SLOT_PRIOR:
            if (reply->type == REDIS_REPLY_NIL)
                return 0;
            if (reply->type != REDIS_REPLY_STRING)
                return -1;
            r->prior_expiry_s = strtoll(reply->str, NULL, 10);
            return 0;
        }
        return -1;
    case REDIS_REQ_SCRAPE: {
        unsigned k = r->scrape_cmds ? r->scrape_cmds[idx] >> 3 : idx / r->scrape_stride;
        unsigned j = r->scrape_cmds ? r->scrape_cmds[idx] & 7u : idx % r->scrape_stride;
        struct swarm_stats *s = &r->scrape_stats[k];

        if (r->scrape_stride == 4) {       /* private mode: EXISTS torrent first */
            if (j == 0) {
                if (reply->type != REDIS_REPLY_INTEGER)
                    return -1;
                r->scrape_unapproved[k] = reply->integer == 0;
                if (r->scrape_flags && reply->integer == 0)
                    r->scrape_flags[k] |= REDIS_NODE_UNAPPROVED;
                return 0;
            }
            j--;
        }
        if (r->scrape_unapproved && r->scrape_unapproved[k])
            return 0;                      /* not approved: reported as empty, never as a swarm */
        switch (j) {
        case 0:
            if (reply->type != REDIS_REPLY_INTEGER)
                return -1;
            s->complete = redis_u32(reply->integer);
            return 0;
        case 1:
            if (reply->type != REDIS_REPLY_INTEGER)
                return -1;
            s->incomplete = redis_u32(reply->integer);
            return 0;
        default:
            return redis_parse_downloaded(reply, &s->downloaded);
        }
    }
    case REDIS_REQ_HEALTH:
        return reply->type == REDIS_REPLY_STATUS && reply->len == 4 && memcmp(reply->str, "PONG", 4) == 0
                   ? 0 : -1;
    case REDIS_REQ_LOOKUP:
        return idx + r->lookup_first < 2 ? redis_parse_lookup(r, idx + r->lookup_first, reply) : -1;
    case REDIS_REQ_ACCOUNT:
        return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 ? 0 : -1;
    case REDIS_REQ_RAW:
        r->raw_reply = reply;
        return 0;
    }
    return -1;
}

static void redis_reload_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct redis_storage *rs = ac->data;
    redisReply *reply = reply_ptr;
    (void)privdata;

    if (rs && reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("redis %s: FUNCTION LOAD failed: %s", rs->where, reply->str);
}

/* Redis 7 answers an FCALL of a function it does not have with this error: the library was
 * flushed (FUNCTION FLUSH, a restore) after the connect loaded it. Loading it again on the same
 * connection (so before the requests queued after) heals every later call; at most once a
 * second, so a library that will not load costs little. */
static void redis_check_library(struct redis_storage *rs, redisAsyncContext *ac, const redisReply *reply)
{
    static const char missing[] = "ERR Function not found";
    uint64_t now_ms;

    if (!rs->private_enabled || rs->ac != ac || reply->type != REDIS_REPLY_ERROR || !reply->str ||
        strncmp(reply->str, missing, sizeof(missing) - 1) != 0)
        return;
    now_ms = redis_now_ms();
    if (rs->reload_ms != 0 && now_ms - rs->reload_ms < 1000)
        return;
    if (!rs->reload_warned)
        log_warn("redis %s: the function library is gone (FUNCTION FLUSH?): loading it again", rs->where);
    rs->reload_warned = true;
    rs->reload_ms = now_ms;

    const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", redis_functions_lua };
    redisAsyncCommandArgv(ac, redis_reload_cb, NULL, 4, argv, NULL);
}

/* A cluster node's error reply that says the command was not run here (MOVED, ASK, TRYAGAIN,
 * CLUSTERDOWN, READONLY: storage/redis_cluster.h): kept for the router, the first MOVED or ASK
 * with its address (they tell where to resend). False for any other error. */
static bool redis_note_redirect(struct redis_req *r, const redisReply *reply)
{
    enum redis_cluster_err kind = redis_cluster_classify(reply->str, reply->len);
    bool addressed = kind == REDIS_CLUSTER_ERR_MOVED || kind == REDIS_CLUSTER_ERR_ASK;
    struct redis_cluster_redirect at;

    if (!redis_cluster_resend_safe(kind) ||
        (addressed && redis_cluster_parse_redirect(reply->str, reply->len, &at) < 0))
        return false;
    /* The first MOVED or ASK wins (it says where to resend); another kind only until one came. */
    if (r->redirect.kind != REDIS_CLUSTER_ERR_MOVED && r->redirect.kind != REDIS_CLUSTER_ERR_ASK) {
        r->redirect.kind = kind;
        if (addressed)
            r->redirect.at = at;
    }
    return true;
}

/* A cluster node's answer that is not an error came from a command whose keys were on that node
 * (MULTI has none; a +QUEUED passed the same check): during a migration the router resends a
 * request to the ASK target only if none of its keys answered here (storage/redis_router.c). */
static void redis_note_served(struct redis_req *r, unsigned idx, const redisReply *reply)
{
    bool announce = r->kind == REDIS_REQ_ANNOUNCE && idx < REDIS_ANNOUNCE_MAX_CMDS;

    if (reply->type == REDIS_REPLY_ERROR || r->kind == REDIS_REQ_HEALTH ||
        (announce && r->slots[idx] == REDIS_SLOT_MULTI))
        return;
    r->redirect.served++;
}

/* A command the node did not run: the request is redirected, and a scrape's goes on reading the
 * other replies, each (hash, command) being answered once, by whichever node has its key. */
static void redis_note_scrape_redirect(struct redis_req *r, unsigned idx)
{
    redis_req_fail(r, STORAGE_ERR_REDIRECT);
    if (r->scrape_flags) {
        unsigned k = r->scrape_cmds ? r->scrape_cmds[idx] >> 3 : idx / r->scrape_stride;
        unsigned j = r->scrape_cmds ? r->scrape_cmds[idx] & 7u : idx % r->scrape_stride;

        r->scrape_flags[k] |= (uint8_t)(1u << j);
    }
}

/* Every command's reply callback. reply is NULL when the connection goes away. */
static void redis_reply_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct redis_storage *rs = ac->data;   /* NULL once the connection was abandoned */
    struct redis_req *r = privdata;
    redisReply *reply = reply_ptr;
    unsigned idx = r->replies++;

    if (--r->pending == 0)
        redis_owed_remove(r);
    if (rs && reply) {
        rs->last_reply_ms = redis_now_ms();
        /* A connection that answers is healthy: only now does the back-off start over, so a
         * server that accepts and then hangs up (maxclients) is retried at the slow pace. */
        if (reply->type != REDIS_REPLY_ERROR)
            rs->backoff_ms = REDIS_BACKOFF_MIN_MS;
        redis_check_snatch(rs, r, idx, reply);
        redis_check_library(rs, ac, reply);
        if (r->cluster)
            redis_note_served(r, idx, reply);
        if (rs->sentinel_cfg && rs->ac == ac && redis_sentinel_failover_error(reply))
            redis_request_drop(rs, reply->str);
    }
    if (!r->done) {
        if (!reply)
            redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
        else if (r->cluster && reply->type == REDIS_REPLY_ERROR && redis_note_redirect(r, reply))
            redis_note_scrape_redirect(r, idx);
        else if (redis_reply_status(reply) != STORAGE_OK)
            redis_req_fail(r, redis_reply_status(reply));
        else if ((r->status == STORAGE_OK || (r->status == STORAGE_ERR_REDIRECT && r->scrape_flags)) &&
                 redis_parse(r, idx, reply) < 0)
            redis_req_fail(r, STORAGE_ERR_INTERNAL);
        if (r->pending == 0)
            redis_req_finish(r, r->status);
    }
    redis_req_release(r);
}

/* Writes "<c><decimal v>\r\n" at p, which has room for 24 bytes. Returns the end. */
static char *redis_format_header(char *p, char c, size_t v)
{
    *p++ = c;
    if (v < 10) {                          /* nearly every argument: no loop */
        *p++ = (char)('0' + v);
    } else if (v < 100) {
        *p++ = (char)('0' + v / 10);
        *p++ = (char)('0' + v % 10);
    } else {
        p += redis_keys_i64(p, (int64_t)v);
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Writes one command in RESP ("*N\r\n" then "$LEN\r\nARG\r\n" for each argument) into buf,
 * NUL-terminated.
 * hiredis's own formatter (sdscatfmt, one allocation per growth step) took 30 % of a worker's
 * instructions (bench/callgrind.sh, bench/RESULTS.md). Returns the length, or 0 if cap is too
 * small. */
static size_t redis_format(char *buf, size_t cap, int argc, const char **argv, const size_t *lens)
{
    char *p = buf, *end = buf + cap;
    int i;

    if (end - p < 24)
        return 0;
    p = redis_format_header(p, '*', (size_t)argc);
    for (i = 0; i < argc; i++) {
        /* header, argument, CRLF, and the NUL below */
        if ((size_t)(end - p) < 24 + lens[i] + 3)
            return 0;
        p = redis_format_header(p, '$', lens[i]);
        memcpy(p, argv[i], lens[i]);
        p += lens[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    /* hiredis looks one byte past the first argument (is there a second?), and with a
     * one-argument command that byte is the end: make it a NUL, as its own buffers have. */
    *p = '\0';
    return (size_t)(p - buf);
}

static int redis_send(struct redis_storage *rs, struct redis_req *r, enum redis_slot slot, int argc,
                      const char **argv, const size_t *lens)
{
    char cmd[1024];
    size_t len;
    int rc = REDIS_ERR;

    if (r->status != STORAGE_OK)
        return -1;
    if (r->kind == REDIS_REQ_ANNOUNCE && r->ncmds >= REDIS_ANNOUNCE_MAX_CMDS) {
        redis_req_fail(r, STORAGE_ERR_INTERNAL);   /* a plan longer than slots[]: a bug */
        return -1;
    }
    /* Until the first TIME reply this process does not know Redis's clock: rather than write
     * scores and reap by this host's, announces and scrapes fail (one round trip after the first
     * connect; reconnects keep the last offset). */
    if (rs->ac && (rs->clock_known || r->kind == REDIS_REQ_HEALTH || r->kind == REDIS_REQ_RAW)) {
        /* A slot being imported serves a key only to a command right after ASKING; inside
         * MULTI the flag lasts until EXEC, and an ASKING there would be queued itself. */
        if (r->asking && slot != REDIS_SLOT_QUEUED && slot != REDIS_SLOT_EXEC &&
            redisAsyncFormattedCommand(rs->ac, NULL, NULL, "*1\r\n$6\r\nASKING\r\n", 16) != REDIS_OK)
            goto refused;
        len = redis_format(cmd, sizeof(cmd), argc, argv, lens);
        rc = len > 0 ? redisAsyncFormattedCommand(rs->ac, redis_reply_cb, r, cmd, len)
                     : redisAsyncCommandArgv(rs->ac, redis_reply_cb, r, argc, argv, lens);
    }
refused:
    if (rc != REDIS_OK) {
        /* hiredis refused a command after taking earlier ones of this request (it is out of
         * memory): the connection may be left inside the request's MULTI, where the next
         * request's commands would join this one's transaction. Start over on a new one. */
        if (rs->ac && r->ncmds > 0) {
            rs->drop_requested = true;
            event_active(rs->reset_ev, EV_TIMEOUT, 1);
        }
        redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
        return -1;
    }
    if (r->kind == REDIS_REQ_ANNOUNCE)
        r->slots[r->ncmds] = (uint8_t)slot;
    if (r->pending == 0)
        redis_owed_add(rs, r);
    r->ncmds++;
    r->pending++;
    rs->base.counters.commands++;
    return 0;
}

/* Shorthand: a command from NUL-terminated strings. */
static int redis_sendv(struct redis_storage *rs, struct redis_req *r, enum redis_slot slot, int argc,
                       const char **argv)
{
    size_t lens[24];
    int i;

    for (i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return redis_send(rs, r, slot, argc, argv, lens);
}

/* ---- the operations ---------------------------------------------------------------------- */

static int redis_keys3(const struct redis_storage *rs, const uint8_t *info_hash, char *seeders,
                       char *leechers, char *info)
{
    return redis_keys_swarm3(seeders, leechers, info, REDIS_KEY_MAX, rs->prefix, info_hash);
}

/* The request's time on Redis's clock: req->now_s is the worker's loop time, and the offset the
 * last TIME measured moves it onto Redis's clock (rounded: the offset on one host is
 * milliseconds). Taking the request's time rather than reading the clock again keeps one time
 * per request and lets tests drive expiry with synthetic times. */
static int64_t redis_req_now_s(const struct redis_storage *rs, int64_t req_now_s)
{
    int64_t off = rs->clock_offset_ms;

    return req_now_s + (off >= 0 ? (off + 500) / 1000 : -((-off + 500) / 1000));
}

/* Writes 2 x len lowercase hex digits of b and a NUL. */
static void redis_hex(char *dst, const uint8_t *b, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        dst[2 * i] = hex[b[i] >> 4];
        dst[2 * i + 1] = hex[b[i] & 15];
    }
    dst[2 * len] = '\0';
}

/* P{private}:<what> (user:<name>, passkey:<pk>, events). -1 when it does not fit. */
static int redis_pkey(const struct redis_storage *rs, char *dst, const char *what, const char *arg)
{
    int n = snprintf(dst, REDIS_PKEY_MAX, "%s{private}:%s%s", rs->prefix, what, arg);

    return n < 0 || n >= REDIS_PKEY_MAX ? -1 : 0;
}

/* FCALL tyto_account (PRIVATE.md): the user's credit for this announce's counters, in the
 * announce's round trip. Its slot is {private}, not the swarm's: on a cluster it goes to another
 * node, which this single-connection backend does not route (see the notes). */
static void redis_account(struct redis_storage *rs, struct redis_req *r, const struct announce_req *req)
{
    static const char *const events[] = { "none", "started", "completed", "stopped" };
    char kuser[REDIS_PKEY_MAX], kpeer[REDIS_PKEY_MAX], kevents[REDIS_PKEY_MAX];
    char hex[41], pid[41], rest[ANNOUNCE_USER_MAX + 84], up[24], down[24], now[24];

    redis_hex(hex, req->info_hash, ANNOUNCE_HASH_LEN);
    redis_hex(pid, req->peer_id, ANNOUNCE_HASH_LEN);
    snprintf(rest, sizeof(rest), "%s:%s:%s", req->account.user, hex, pid);
    if (redis_pkey(rs, kuser, "user:", req->account.user) < 0 || redis_pkey(rs, kpeer, "peer:", rest) < 0 ||
        redis_pkey(rs, kevents, "events", "") < 0) {
        redis_req_fail(r, STORAGE_ERR_INTERNAL);
        return;
    }
    snprintf(up, sizeof(up), "%llu", (unsigned long long)req->uploaded);
    snprintf(down, sizeof(down), "%llu", (unsigned long long)req->downloaded);
    snprintf(now, sizeof(now), "%lld", (long long)req->now_s);
    const char *argv[] = { "FCALL", "tyto_account", "3", kuser, kpeer, kevents, up, down,
                           events[req->event <= ANNOUNCE_EVENT_STOPPED ? req->event : 0],
                           req->account.up_mult, req->account.down_mult, rs->ttl,
                           rs->mirror_credits ? "1" : "0", rs->maxlen, req->account.user, hex, now };

    redis_sendv(rs, r, REDIS_SLOT_ACCOUNT, (int)(sizeof(argv) / sizeof(argv[0])), argv);
}

/* A snatch's reply is only logged when it failed: the announce was answered already. */
static void redis_snatch_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    redisReply *reply = reply_ptr;
    struct redis_storage *rs = ac->data;
    (void)privdata;

    if (rs && reply && reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis %s: tyto_snatch failed: %s", rs->where, reply->str);
        redis_check_library(rs, ac, reply);
    }
}

/* FCALL tyto_snatch after the completed move counted: fire and forget. */
static void redis_snatch(struct redis_storage *rs, const struct announce_req *req)
{
    char kuser[REDIS_PKEY_MAX], kevents[REDIS_PKEY_MAX], hex[41], pid[41], now[24], ip[64], port[8];
    const char *argv[12];

    redis_hex(hex, req->info_hash, ANNOUNCE_HASH_LEN);
    redis_hex(pid, req->peer_id, ANNOUNCE_HASH_LEN);
    if (redis_pkey(rs, kuser, "user:", req->account.user) < 0 || redis_pkey(rs, kevents, "events", "") < 0 ||
        !inet_ntop(req->peer.family, req->peer.addr, ip, sizeof(ip)))
        return;
    snprintf(now, sizeof(now), "%lld", (long long)req->now_s);
    snprintf(port, sizeof(port), "%u", (unsigned)req->peer.port);
    argv[0] = "FCALL"; argv[1] = "tyto_snatch"; argv[2] = "2"; argv[3] = kuser; argv[4] = kevents;
    argv[5] = req->account.user; argv[6] = hex; argv[7] = now; argv[8] = ip; argv[9] = port;
    argv[10] = pid; argv[11] = rs->maxlen;
    if (redisAsyncCommandArgv(rs->ac, redis_snatch_cb, NULL, 12, argv, NULL) == REDIS_OK)
        rs->base.counters.commands++;
}

/* xorshift64* (Vigna): the rank windows' draw. Not for secrets; seeded per process. */
static uint64_t redis_rand(struct redis_storage *rs)
{
    rs->rng ^= rs->rng >> 12;
    rs->rng ^= rs->rng << 25;
    rs->rng ^= rs->rng >> 27;
    return rs->rng * 0x2545F4914F6CDD1DULL;
}

/* Sends the sample of one set: fetch members, from a set that held size members at the last
 * announce (0: not known). ZRANDMEMBER's cost grows with the set (a dictionary to keep the sample
 * unique, a fair random pick per member: 87 us for 51 of 300 k members), while ZRANGE by rank is
 * O(log N + fetch). A set known to be big (a skiplist, room for the windows) is therefore read as
 * REDIS_WINDOWS windows of consecutive ranks, spaced size / REDIS_WINDOWS apart from one rank u
 * drawn uniformly per request, wrapping past the end (one more ZRANGE). The windows never
 * overlap (no duplicates), and a member of rank x is in the sample iff (x - u) mod size falls in
 * one of them: probability windows * w / size, the same for every member, as a uniform sample's.
 * Ranks are positions, so disjoint windows are distinct members even when the hint is stale (a
 * set that shrank gives a shorter sample, never a repeated peer).
 * Members that joined since the hint (ranks past it) wait for the next hint, a second or less. */
static void redis_send_sample(struct redis_storage *rs, struct redis_req *r, const char *key, unsigned fetch,
                              uint32_t size, enum redis_slot slot, enum redis_slot last)
{
    char start[24], stop[24], count[24];
    const char *zrange[] = { "ZRANGE", key, start, stop };
    const char *zrand[] = { "ZRANDMEMBER", key, count };
    size_t lens[4] = { 6, strlen(key), 0, 0 };
    uint32_t w, spacing, u, j;

    w = (fetch + REDIS_WINDOWS - 1) / REDIS_WINDOWS;
    if (size < REDIS_HINT_MIN || size < REDIS_WINDOWS * (w + 1)) {
        lens[0] = 11;
        lens[2] = redis_keys_i64(count, fetch);
        redis_send(rs, r, last, 3, zrand, lens);
        return;
    }
    spacing = size / REDIS_WINDOWS;        /* > w: size >= REDIS_WINDOWS * (w + 1) */
    u = (uint32_t)(redis_rand(rs) % size);
    for (j = 0; j < REDIS_WINDOWS; j++) {
        uint32_t a = (u + j * spacing) % size, b = a + w - 1;

        bool wraps = b >= size;

        lens[2] = redis_keys_i64(start, a);
        lens[3] = redis_keys_i64(stop, b < size ? b : size - 1);
        redis_send(rs, r, j == REDIS_WINDOWS - 1 && !wraps ? last : slot, 4, zrange, lens);
        if (wraps) {
            lens[2] = redis_keys_i64(start, 0);
            lens[3] = redis_keys_i64(stop, b - size);
            redis_send(rs, r, j == REDIS_WINDOWS - 1 ? last : slot, 4, zrange, lens);
        }
    }
}

/* One set's sample (set 0 seeders, 1 leechers), of a set that held size members at the last
 * announce. A big set of a hot swarm is drawn from this worker's pool when it is fresh (no
 * command at all), else the pool is refilled with REDIS_POOL_MEMBERS members (rank windows, or
 * the set's first ranks when it is not much bigger) and this request draws from it; a small or
 * unknown set, or with the cache off, as before (redis_send_sample). */
static void redis_sample(struct redis_storage *rs, struct redis_req *r, const char *key, unsigned set,
                         unsigned fetch, uint32_t size)
{
    struct redis_pool *p;

    if (!rs->pools || size < REDIS_HINT_MIN) {
        redis_send_sample(rs, r, key, fetch, size, REDIS_SLOT_SAMPLE, REDIS_SLOT_SAMPLE);
        return;
    }
    if ((p = redis_pool_get(rs, r->info_hash, set))) {
        if (set == 0)
            redis_pool_draw(rs, p, r, r->numwant, r->peers4, &r->peers4_count, r->peers6, &r->peers6_count);
        else
            redis_pool_draw(rs, p, r, r->numwant, r->lpool4, &r->lpool4_count, r->lpool6, &r->lpool6_count);
        return;
    }
    /* Another request's fill is on its way (claimed less than a deadline ago): sample as without
     * the pool rather than pile up fills. */
    uint64_t now_ms = redis_now_ms();
    p = redis_pool_slot(rs, r->info_hash, set, false);
    if (p && p->filling_ms != 0 && now_ms - p->filling_ms < (uint64_t)rs->timeout_ms) {
        redis_send_sample(rs, r, key, fetch, size, REDIS_SLOT_SAMPLE, REDIS_SLOT_SAMPLE);
        return;
    }
    if (!p && !(p = redis_pool_slot(rs, r->info_hash, set, true))) {
        redis_send_sample(rs, r, key, fetch, size, REDIS_SLOT_SAMPLE, REDIS_SLOT_SAMPLE);
        return;                            /* its whole group is being filled */
    }
    memcpy(p->info_hash, r->info_hash, ANNOUNCE_HASH_LEN);
    p->set = (uint8_t)set;
    p->at_ms = 0;
    p->n4 = p->n6 = 0;
    p->filling_ms = now_ms ? now_ms : 1;
    r->pool_claim[set] = p->filling_ms;
    enum redis_slot slot = set ? REDIS_SLOT_POOL_L : REDIS_SLOT_POOL_S;
    enum redis_slot last = set ? REDIS_SLOT_POOL_L_LAST : REDIS_SLOT_POOL_S_LAST;
    if (size <= REDIS_WINDOWS * (REDIS_POOL_MEMBERS / REDIS_WINDOWS + 1)) {
        char stop[24];
        const char *zrange[] = { "ZRANGE", key, "0", stop };
        redis_keys_i64(stop, REDIS_POOL_MEMBERS - 1);
        redis_sendv(rs, r, last, 4, zrange);
        return;
    }
    redis_send_sample(rs, r, key, REDIS_POOL_MEMBERS, size, slot, last);
}

/* event=completed with left == 0 (rare): the leecher -> seeder move is counted here, atomically
 * across connections and hosts: only the announce whose ZREM took the peer out of leechers
 * counts, so two concurrent completed announces of one peer count once. */
static const char redis_complete_lua[] =
    "if redis.call('ZREM',KEYS[1],ARGV[1])==1 then "
    "redis.call('HINCRBY',KEYS[2],'downloaded',1) "
    "return 1 end return 0";

/* ---- swarm statistics (README "Statistics"), stats.enabled ---------------------------------- */

/* The stats hash of a swarm counts s:<unix minute> or l:<unix minute> (announces by seeders, by
 * leechers: the aggregator sums them, and the newest l: field says when a leecher was last
 * heard). What depends on the peer's last announce (ZSCORE of its own set, in the pipeline) is
 * decided after the reply (redis_stats_after). The counts go to the worker's table
 * (redis_count_add), the rest out fire and forget. */
static void redis_stats_count(struct redis_storage *rs, struct redis_req *r, const struct announce_req *req,
                              bool seeder)
{
    struct peer_client pc;

    (void)rs;
    peer_client_identify(req->peer_id, &pc);
    r->client = pc.code;
    r->now_s = req->now_s;
    r->uploaded = req->uploaded;
    r->event = req->event;
    r->seeder = seeder;
    r->stats_count = true;
    r->stats_after = req->event != ANNOUNCE_EVENT_STOPPED;
}

/* ---- the counters' table ------------------------------------------------------------------ */

static void redis_count_flush(struct redis_storage *rs);

/* A swarm's home slot, whatever the field: its fields sit next to each other (linear probing
 * from the same slot), so the flush, walking the table in order, sends a swarm's HINCRBYs one
 * after another, and only the first pays Redis's first touch of the key (0.7-1 µs more than the
 * next command on it: bench/key_touch.py). */
static unsigned redis_count_index(const uint8_t *info_hash)
{
    uint64_t h;

    memcpy(&h, info_hash, sizeof(h));      /* a SHA-1: its bytes are already uniform */
    return (unsigned)(h ^ h >> 29) & (REDIS_COUNTS - 1);
}

/* Adds one to field of the swarm's stats hash, in this worker's table until the next flush. */
static void redis_count_add(struct redis_storage *rs, const uint8_t *info_hash, const char *field)
{
    size_t len = strlen(field);
    unsigned i;

    if (!rs->counts || len == 0 || len > REDIS_COUNT_FIELD_MAX)
        return;
    if (rs->counts_used >= REDIS_COUNTS / 4 * 3)
        redis_count_flush(rs);             /* early: linear probing stays short */
    if (rs->counts_used >= REDIS_COUNTS / 4 * 3)
        return;                            /* no connection, or Redis behind: the count is lost */
    for (i = redis_count_index(info_hash);; i = (i + 1) & (REDIS_COUNTS - 1)) {
        struct redis_count *c = &rs->counts[rs->counts_active * REDIS_COUNTS + i];

        if (c->len == 0) {
            memcpy(c->info_hash, info_hash, ANNOUNCE_HASH_LEN);
            memcpy(c->field, field, len);
            c->len = (uint8_t)len;
            c->n = 1;
            rs->counts_used++;
            return;
        }
        if (c->len == len && memcmp(c->field, field, len) == 0 &&
            memcmp(c->info_hash, info_hash, ANNOUNCE_HASH_LEN) == 0) {
            c->n++;
            return;
        }
    }
}

static bool redis_stats_send(struct redis_storage *rs, int argc, const char **argv, const char *what);

static const char redis_count_what[] = "HINCRBY count";

/* One HINCRBY per swarm and field counted since the last flush, fire and forget; kept while
 * there is no connection (the table is bounded: counts beyond it are lost). A flush turns the
 * counting half over to writing and counts on in the other; at most inflight of its HINCRBYs wait
 * for Redis at a time, on the announces' connection: a whole half at once (up to 12,288
 * commands) would queue ahead of the announces sent after it, and while Redis is behind, what
 * waits for it must stay bounded by http.max_pending announces and this
 * (tests/e2e/test_overload.py). The writing goes on as the answers come (redis_stats_cb).
 * (Emptying the counting half a part at a time instead cut its probe chains: the half not yet
 * emptied filled up and every count probed through it, 74 % of a worker's time at 60 k UDP
 * announces a second over 100 k swarms.) */
static void redis_count_flush_upto(struct redis_storage *rs, unsigned inflight)
{
    char kstats[REDIS_KEY_MAX], field[REDIS_COUNT_FIELD_MAX + 1], n[24];

    if (!rs->counts || !rs->ac || !rs->connected)
        return;
    if (!rs->counts_draining) {
        if (rs->counts_used == 0)
            return;
        rs->counts_active ^= 1;            /* the other half was emptied by its last writing */
        rs->counts_used = 0;
        rs->counts_draining = true;
        rs->counts_cursor = 0;
    }
    struct redis_count *half = &rs->counts[(rs->counts_active ^ 1) * REDIS_COUNTS];

    while (rs->counts_cursor < REDIS_COUNTS && rs->counts_unacked < inflight) {
        struct redis_count *c = &half[rs->counts_cursor];

        if (c->len > 0 &&
            redis_keys_swarm(kstats, sizeof(kstats), rs->prefix, c->info_hash, REDIS_KEYS_STATS) >= 0) {
            memcpy(field, c->field, c->len);
            field[c->len] = '\0';
            redis_keys_i64(n, c->n);
            const char *argv[] = { "HINCRBY", kstats, field, n };
            if (!redis_stats_send(rs, 4, argv, redis_count_what))
                return;                    /* hiredis refused it: the count waits for a retry */
            rs->counts_unacked++;
        }
        c->len = 0;
        rs->counts_cursor++;
    }
    if (rs->counts_cursor >= REDIS_COUNTS)
        rs->counts_draining = false;
}

static void redis_count_flush(struct redis_storage *rs)
{
    redis_count_flush_upto(rs, REDIS_COUNT_INFLIGHT);
}

static void redis_count_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_count_flush(arg);
}

/* A seeder reporting more uploaded than at its last report, while no leecher was heard in the
 * swarm since (no l:<minute> field at or after that report's minute): the phantom-upload rule.
 * Only sent when the swarm has no leecher now, so it costs nothing in a healthy swarm. A last
 * report older than 55 minutes only becomes the new baseline: the minute fields it would be
 * checked against are pruned after the hour. */
static const char redis_phantom_lua[] =
    "local prev=redis.call('HGET',KEYS[2],ARGV[1]) "
    "redis.call('HSET',KEYS[2],ARGV[1],ARGV[2]..':'..ARGV[3]) "
    "redis.call('EXPIRE',KEYS[2],ARGV[5]) "
    "if not prev then return 0 end "
    "local up,t=string.match(prev,'^(%d+):(%d+)$') "
    "if not up or tonumber(ARGV[2])<=tonumber(up) or tonumber(ARGV[3])-tonumber(t)>3300 then return 0 end "
    "local since=math.floor(tonumber(t)/60) "
    "for _,k in ipairs(redis.call('HKEYS',KEYS[1])) do "
    "local m=string.match(k,'^l:(%d+)$') "
    "if m and tonumber(m)>=since then return 0 end end "
    "redis.call('HINCRBY',KEYS[1],'phantom:'..ARGV[4],1) return 1";

static void redis_stats_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    redisReply *reply = reply_ptr;
    struct redis_storage *rs = ac->data;

    /* A cluster's slot moving away: the count is lost, never run twice (counting decides nothing). */
    if (rs && reply && reply->type == REDIS_REPLY_ERROR && rs->cluster &&
        redis_cluster_resend_safe(redis_cluster_classify(reply->str, reply->len)))
        log_debug("redis %s: %s not run: %s", rs->where, (const char *)privdata, reply->str);
    else if (rs && reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("redis %s: %s failed: %s", rs->where, (const char *)privdata, reply->str);
    if (rs && privdata == redis_count_what && rs->counts_unacked > 0) {
        rs->counts_unacked--;
        /* a reply (not a connection going away): room again for the flush's next part */
        if (reply && rs->counts_draining && rs->counts_unacked <= REDIS_COUNT_INFLIGHT / 2)
            redis_count_flush(rs);
    }
}

/* Fire and forget, formatted by tyto like the announce's commands (hiredis's own formatter was
 * 17 % of a worker's instructions with the statistics on: bench/RESULTS.md). */
static bool redis_stats_send(struct redis_storage *rs, int argc, const char **argv, const char *what)
{
    char cmd[1024];
    size_t lens[12], len;
    int rc;

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    len = redis_format(cmd, sizeof(cmd), argc, argv, lens);
    rc = len > 0 ? redisAsyncFormattedCommand(rs->ac, redis_stats_cb, (void *)what, cmd, len)
                 : redisAsyncCommandArgv(rs->ac, redis_stats_cb, (void *)what, argc, argv, lens);
    if (rc != REDIS_OK)
        return false;
    rs->base.counters.commands++;
    return true;
}

/* After the reply, from the peer's last expiry (0: it was not in its set):
 *   a new peer: HSETNX first <now> (the swarm's first seen), EXPIRE of the stats hash (the
 *     aggregator refreshes it while the swarm lives);
 *   the peer's first announce of this interval: HINCRBY c:<interval number>:<client> (the client
 *     mix counts peers, once an interval each);
 *   no event, sooner than min interval after its last: HINCRBY fast:<interval number>;
 *   a seeder with uploaded > 0 in a swarm without leechers: the phantom-upload script.
 * A client that keeps to its interval costs one command here (the client count). */
static void redis_stats_after(struct redis_storage *rs, const struct redis_req *r)
{
    char kstats[REDIS_KEY_MAX], kuploads[REDIS_KEY_MAX], field[40], client[48], up[24], now[24], bucket[24];
    long long k = (long long)(r->now_s / rs->interval_s);
    int64_t last_s = r->prior_expiry_s - rs->peer_ttl_s;

    if (!rs->ac || redis_keys_swarm(kstats, sizeof(kstats), rs->prefix, r->info_hash, REDIS_KEYS_STATS) < 0)
        return;
    redis_keys_i64(now, r->now_s);
    if (r->prior_expiry_s == 0) {
        const char *first[] = { "HSETNX", kstats, "first", now };
        const char *expire[] = { "EXPIRE", kstats, rs->stats_ttl };
        redis_stats_send(rs, 4, first, "HSETNX first");
        redis_stats_send(rs, 3, expire, "EXPIRE stats");
    }
    /* A completion moves a leecher already counted this interval into the seeders. */
    if (r->prior_expiry_s == 0 ? r->event != ANNOUNCE_EVENT_COMPLETED : last_s / rs->interval_s < k) {
        snprintf(client, sizeof(client), "c:%lld:%s", k, r->client ? r->client : "other");
        redis_count_add(rs, r->info_hash, client);
    }
    if (r->event == ANNOUNCE_EVENT_NONE && r->prior_expiry_s > 0 && r->now_s - last_s < rs->min_interval_s) {
        memcpy(field, "fast:", 5);
        redis_keys_i64(field + 5, k);
        redis_count_add(rs, r->info_hash, field);
    }
    if (r->seeder && r->stats.incomplete == 0 && r->uploaded > 0 && r->event != ANNOUNCE_EVENT_STARTED &&
        redis_keys_swarm(kuploads, sizeof(kuploads), rs->prefix, r->info_hash, REDIS_KEYS_UPLOADS) >= 0) {
        snprintf(up, sizeof(up), "%llu", (unsigned long long)r->uploaded);
        snprintf(bucket, sizeof(bucket), "%lld", k);
        const char *argv[] = { "EVAL", redis_phantom_lua, "2", kstats, kuploads, r->self, up, now, bucket,
                               rs->stats_ttl };
        redis_stats_send(rs, 10, argv, "EVAL phantom");
    }
}

/* Announce pipeline (docs/architecture.md "Redis schema"), the rules from storage/swarm_policy.h:
 *   ZREMRANGEBYSCORE seeders and leechers -inf now      reap (idempotent, outside the unit)
 *   MULTI                                              one unit: no other client's command runs
 *     ZADD own score member                            in between, and a connection lost half-way
 *     ZREM other member | EVAL completed script         writes nothing (Redis drops the queue)
 *     EXPIREAT own score NX                            a new set gets its TTL...
 *     EXPIREAT own score GT                            ...an older one only ever grows it: never
 *                                                      below a member announced with a longer
 *                                                      peer_ttl_s before a reload
 *     EXPIREAT info downloaded_expiry | PERSIST info   swarm.downloaded_ttl_s > 0 | kept forever
 *   EXEC
 *   [ZRANDMEMBER seeders n+1] [ZRANDMEMBER leechers n+1]  ZCARD x2, HGET info downloaded
 *   (a set the hint table knows to be big: ZRANGE rank windows instead, redis_send_sample; no
 *   leechers' sample when the seeders the hint knows fill numwant)
 * Stopped: reap, ZREM from both sets, EXPIREAT | PERSIST info, counts; nothing is created, so
 * no unit.
 * A set's TTL is always its latest member's expiry: the other set needs no EXPIREAT. */
static int redis_announce(struct storage *st, const struct announce_req *req, storage_announce_cb *cb,
                          void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    char kseed[REDIS_KEY_MAX], kleech[REDIS_KEY_MAX], kinfo[REDIS_KEY_MAX];
    char now[24], score[24], dexp[24];
    struct swarm_plan plan;
    struct announce_req timed = *req;
    struct redis_req *r;
    int n;

    if (rs->freeing)
        return -1;
    timed.now_s = redis_req_now_s(rs, req->now_s);
    swarm_policy_plan(&rs->policy, &timed, &plan);
    /* The reply's peers; with the sample pools, room for leechers drawn from a pool too. */
    r = redis_req_new(rs, REDIS_REQ_ANNOUNCE,
                      (size_t)plan.numwant * (PEER_COMPACT4_LEN + PEER_COMPACT6_LEN) * (rs->pools ? 2 : 1), arg);
    if (!r)
        return -1;
    r->announce_cb = cb;
    r->numwant = plan.numwant;
    r->completing = plan.completing && !plan.stop;
    if (req->account.user[0])
        r->req = timed;
    r->peers4 = r->buf;
    r->peers6 = r->buf + (size_t)plan.numwant * PEER_COMPACT4_LEN;
    if (rs->pools) {                       /* only redis_sample draws into them, with pools */
        r->lpool4 = r->peers6 + (size_t)plan.numwant * PEER_COMPACT6_LEN;
        r->lpool6 = r->lpool4 + (size_t)plan.numwant * PEER_COMPACT4_LEN;
    }
    r->self_compact_len = redis_keys_peer_compact(&req->peer, r->self_compact);

    n = redis_keys_member(r->self, sizeof(r->self), &req->peer);
    if (n < 0 || redis_keys3(rs, req->info_hash, kseed, kleech, kinfo) < 0) {
        redis_req_fail(r, STORAGE_ERR_INTERNAL);
        goto out;
    }
    r->self_len = (size_t)n;
    memcpy(r->info_hash, req->info_hash, ANNOUNCE_HASH_LEN);
    redis_keys_i64(now, timed.now_s);
    redis_keys_i64(score, plan.expiry_s);
    redis_keys_i64(dexp, plan.downloaded_expiry_s);
    bool seeder = plan.role == SWARM_ROLE_SEEDER;
    {
        const char *own = seeder ? kseed : kleech, *other = seeder ? kleech : kseed;
        const char *reap_s[] = { "ZREMRANGEBYSCORE", kseed, "-inf", now };
        const char *reap_l[] = { "ZREMRANGEBYSCORE", kleech, "-inf", now };
        const char *multi[] = { "MULTI" };
        const char *zadd[] = { "ZADD", own, score, r->self };
        const char *zrem_own[] = { "ZREM", own, r->self };
        const char *zrem_other[] = { "ZREM", other, r->self };
        const char *complete[] = { "EVAL", redis_complete_lua, "2", kleech, kinfo, r->self };
        const char *exp_nx[] = { "EXPIREAT", own, score, "NX" };
        const char *exp_gt[] = { "EXPIREAT", own, score, "GT" };
        const char *exp_info[] = { "EXPIREAT", kinfo, dexp };
        /* Kept forever: an :info key may still carry a TTL from an older tyto (which set one on
         * every announce) or from a retention since turned off; clear it while the swarm lives,
         * or its count would vanish with the TTL. */
        const char *persist_info[] = { "PERSIST", kinfo };
        const char *exec[] = { "EXEC" };
        const char *prior[] = { "ZSCORE", own, r->self };
        const char *card_s[] = { "ZCARD", kseed };
        const char *card_l[] = { "ZCARD", kleech };
        const char *hget[] = { "HGET", kinfo, "downloaded" };

        if (!rs->ac) {
            redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
            goto out;
        }
        redis_sendv(rs, r, REDIS_SLOT_WRITE, 4, reap_s);
        redis_sendv(rs, r, REDIS_SLOT_WRITE, 4, reap_l);
        if (plan.stop) {
            redis_sendv(rs, r, REDIS_SLOT_WRITE, 3, zrem_own);
            redis_sendv(rs, r, REDIS_SLOT_WRITE, 3, zrem_other);
            if (plan.downloaded_expiry_s > 0)
                redis_sendv(rs, r, REDIS_SLOT_WRITE, 3, exp_info);
            else
                redis_sendv(rs, r, REDIS_SLOT_WRITE, 2, persist_info);
        } else {
            if (rs->stats_enabled)         /* the expiry its last announce set: too soon? */
                redis_sendv(rs, r, REDIS_SLOT_PRIOR, 3, prior);
            redis_sendv(rs, r, REDIS_SLOT_MULTI, 1, multi);
            redis_sendv(rs, r, REDIS_SLOT_QUEUED, 4, zadd);
            if (plan.completing)       /* left == 0: other is leechers */
                redis_sendv(rs, r, REDIS_SLOT_QUEUED, 6, complete);
            else
                redis_sendv(rs, r, REDIS_SLOT_QUEUED, 3, zrem_other);
            redis_sendv(rs, r, REDIS_SLOT_QUEUED, 4, exp_nx);
            redis_sendv(rs, r, REDIS_SLOT_QUEUED, 4, exp_gt);
            if (plan.downloaded_expiry_s > 0)
                redis_sendv(rs, r, REDIS_SLOT_QUEUED, 3, exp_info);
            else
                redis_sendv(rs, r, REDIS_SLOT_QUEUED, 2, persist_info);
            redis_sendv(rs, r, REDIS_SLOT_EXEC, 1, exec);
            const struct redis_hint *hint = redis_hint_get(rs, req->info_hash);
            unsigned fetch = swarm_policy_fetch(plan.numwant);

            if (plan.sample_seeders)
                redis_sample(rs, r, kseed, 0, fetch, hint ? hint->seeders : 0);
            /* A leecher gets seeders first: when the last count says they fill numwant with a
             * margin (peers that stopped since), the leechers' sample would be thrown away. */
            if (plan.sample_leechers &&
                !(plan.sample_seeders && hint && hint->seeders >= fetch + REDIS_HINT_MARGIN))
                redis_sample(rs, r, kleech, 1, fetch, hint ? hint->leechers : 0);
        }
        if (req->account.user[0] && !rs->cluster)  /* a cluster: the router sends it */
            redis_account(rs, r, &timed);
        if (rs->stats_enabled)
            redis_stats_count(rs, r, &timed, seeder);
        redis_sendv(rs, r, REDIS_SLOT_SEEDERS, 2, card_s);
        redis_sendv(rs, r, REDIS_SLOT_LEECHERS, 2, card_l);
        redis_sendv(rs, r, REDIS_SLOT_DOWNLOADED, 3, hget);
    }
out:
    redis_req_start(rs, r);
    return 0;
}

/* Scrape is read-only: ZCOUNT (now +inf of both sets (the members a reap would keep) and HGET; in
 * private mode first EXISTS of the torrent's rules: an unapproved hash is answered all zeros. */
/* masks (a cluster node's, or NULL): per hash, the commands to send (bit j: command j of the
 * hash's stride), for the router's resend of what another node did not answer. */
static int redis_scrape_masked(struct redis_storage *rs, const struct scrape_req *req, const uint8_t *masks,
                               storage_scrape_cb *cb, void *arg)
{
    unsigned count = req->count > SCRAPE_MAX_HASHES ? SCRAPE_MAX_HASHES : req->count;
    unsigned stride = rs->private_enabled ? 4 : 3;
    char kseed[REDIS_KEY_MAX], kleech[REDIS_KEY_MAX], kinfo[REDIS_KEY_MAX], min[24];
    /* stats, unapproved; a node's flags; with masks, the command map (aligned after the rest) */
    size_t base = count * (sizeof(struct swarm_stats) + 1 + (rs->cluster ? 1 : 0));
    size_t map_at = (base + 1) & ~(size_t)1;
    struct redis_req *r;
    unsigned i;

    if (rs->freeing)
        return -1;
    r = redis_req_new(rs, REDIS_REQ_SCRAPE, masks ? map_at + count * stride * sizeof(uint16_t) : base, arg);
    if (!r)
        return -1;
    r->scrape_cb = cb;
    r->scrape_count = count;
    memset(r->buf, 0, base);
    r->scrape_stats = (struct swarm_stats *)(void *)r->buf;
    r->scrape_stride = stride;
    if (rs->private_enabled)
        r->scrape_unapproved = r->buf + count * sizeof(struct swarm_stats);
    if (rs->cluster)
        r->scrape_flags = r->buf + count * (sizeof(struct swarm_stats) + 1);
    if (masks)
        r->scrape_cmds = (uint16_t *)(void *)(r->buf + map_at);
    snprintf(min, sizeof(min), "(%lld", (long long)redis_req_now_s(rs, req->now_s));  /* Redis's clock */
    if (count > 0 && !rs->ac)
        redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
    for (i = 0; i < count && r->status == STORAGE_OK; i++) {
        const char *zs[] = { "ZCOUNT", kseed, min, "+inf" };
        const char *zl[] = { "ZCOUNT", kleech, min, "+inf" };
        const char *hget[] = { "HGET", kinfo, "downloaded" };
        char ktorrent[REDIS_KEY_MAX], hex[41];
        const char *exists[] = { "EXISTS", ktorrent };

        if (redis_keys3(rs, req->info_hash[i], kseed, kleech, kinfo) < 0) {
            redis_req_fail(r, STORAGE_ERR_INTERNAL);
            break;
        }
        if (masks) {                       /* some commands only: the map says which replies */
            const char **cmds[4] = { exists, zs, zl, hget };
            const int argcs[4] = { 2, 4, 4, 3 };
            unsigned off = stride == 4 ? 0 : 1;

            redis_hex(hex, req->info_hash[i], ANNOUNCE_HASH_LEN);
            snprintf(ktorrent, sizeof(ktorrent), "%s{%s}:torrent", rs->prefix, hex);
            for (unsigned j = 0; j < stride && r->status == STORAGE_OK; j++) {
                if (!(masks[i] & (1u << j)))
                    continue;
                r->scrape_cmds[r->ncmds] = (uint16_t)(i << 3 | j);
                redis_sendv(rs, r, REDIS_SLOT_WRITE, argcs[j + off], cmds[j + off]);
            }
            continue;
        }
        if (rs->private_enabled) {         /* only approved torrents are scraped */
            redis_hex(hex, req->info_hash[i], ANNOUNCE_HASH_LEN);
            snprintf(ktorrent, sizeof(ktorrent), "%s{%s}:torrent", rs->prefix, hex);
            redis_sendv(rs, r, REDIS_SLOT_WRITE, 2, exists);
        }
        redis_sendv(rs, r, REDIS_SLOT_WRITE, 4, zs);
        redis_sendv(rs, r, REDIS_SLOT_WRITE, 4, zl);
        redis_sendv(rs, r, REDIS_SLOT_WRITE, 3, hget);
    }
    redis_req_start(rs, r);
    return 0;
}

static int redis_scrape(struct storage *st, const struct scrape_req *req, storage_scrape_cb *cb, void *arg)
{
    return redis_scrape_masked((struct redis_storage *)st, req, NULL, cb, arg);
}

static int redis_health(struct storage *st, storage_health_cb *cb, void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    const char *ping[] = { "PING" };
    struct redis_req *r;

    if (rs->freeing)
        return -1;
    r = redis_req_new(rs, REDIS_REQ_HEALTH, 0, arg);
    if (!r)
        return -1;
    r->health_cb = cb;
    if (!rs->ac)
        redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
    redis_sendv(rs, r, REDIS_SLOT_WRITE, 1, ping);
    redis_req_start(rs, r);
    return 0;
}

/* Private mode: FCALL tyto_lookup for the passkey's user and, for an announce, HMGET of the
 * torrent's rules; one round trip. */
static int redis_lookup_parts(struct redis_storage *rs, const struct storage_lookup_req *req, bool user,
                              bool torrent, storage_lookup_cb *cb, void *arg)
{
    char kpass[REDIS_PKEY_MAX], ktorrent[REDIS_KEY_MAX], hex[41];
    struct redis_req *r;

    if (rs->freeing)
        return -1;
    r = redis_req_new(rs, REDIS_REQ_LOOKUP, 0, arg);
    if (!r)
        return -1;
    r->lookup_cb = cb;
    r->lookup_first = user ? 0 : 1;
    r->lookup.redis_now_s = redis_req_now_s(rs, req->now_s);
    redis_hex(hex, req->info_hash, ANNOUNCE_HASH_LEN);
    if (redis_pkey(rs, kpass, "passkey:", req->passkey) < 0 ||
        snprintf(ktorrent, sizeof(ktorrent), "%s{%s}:torrent", rs->prefix, hex) >= (int)sizeof(ktorrent))
        redis_req_fail(r, STORAGE_ERR_INTERNAL);
    else if (!rs->ac)
        redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
    {
        const char *fcall[] = { "FCALL", "tyto_lookup", "1", kpass };
        const char *hmget[] = { "HMGET", ktorrent, "added", "freeleech", "neutral", "up", "down" };

        if (user)
            redis_sendv(rs, r, REDIS_SLOT_WRITE, 4, fcall);
        if (torrent)
            redis_sendv(rs, r, REDIS_SLOT_WRITE, 7, hmget);
    }
    redis_req_start(rs, r);
    return 0;
}

static int redis_lookup(struct storage *st, const struct storage_lookup_req *req, storage_lookup_cb *cb,
                        void *arg)
{
    return redis_lookup_parts((struct redis_storage *)st, req, true, req->with_torrent, cb, arg);
}

/* ---- the connection ---------------------------------------------------------------------- */

static void redis_schedule_retry(struct redis_storage *rs)
{
    struct timeval tv = redis_tv(rs->backoff_ms);
    int max_ms = rs->sentinel_cfg ? REDIS_SENTINEL_BACKOFF_MAX_MS : REDIS_BACKOFF_MAX_MS;

    evtimer_add(rs->retry_ev, &tv);
    rs->backoff_ms = rs->backoff_ms * 2 > max_ms ? max_ms : rs->backoff_ms * 2;
}

/* Abandons the connection: every request on it gets a NULL reply (UNAVAILABLE) and the next
 * connect is scheduled. Never called from inside a hiredis callback. redisAsyncFree comes last
 * because the callbacks it runs may free the storage. */
static void redis_drop(struct redis_storage *rs)
{
    redisAsyncContext *ac = rs->ac;

    rs->ac = NULL;
    rs->connected = false;
    rs->drop_requested = false;
    rs->counts_unacked = 0;                /* their callbacks find no storage (data is NULL) */
    evtimer_del(rs->connect_ev);
    redis_schedule_retry(rs);
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void redis_reset_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_storage *rs = arg;
    uint64_t now_ms;
    (void)fd;
    (void)what;

    if (!rs->ac)
        return;
    now_ms = redis_now_ms();
    if (rs->drop_requested) {
        redis_drop(rs);
    } else if (rs->connected && rs->owed_head &&
               now_ms - (rs->last_reply_ms > rs->owed_head->sent_ms ? rs->last_reply_ms : rs->owed_head->sent_ms) >=
                   (uint64_t)rs->timeout_ms) {
        /* Stuck only while a reply is owed: an idle connection (everything answered, nothing
         * asked since) is healthy however long ago its last reply was. */
        log_warn("redis %s: no reply for %d ms, reconnecting", rs->where, rs->timeout_ms);
        redis_drop(rs);
    } else if (rs->connected && redis_backlog_stale(rs, now_ms)) {
        log_warn("redis %s: %u timed-out requests still owed replies, the oldest asked %llu ms ago "
                 "(over %d x redis.timeout_ms): reconnecting to let them go", rs->where,
                 rs->base.backlog, (unsigned long long)(now_ms - rs->owed_head->sent_ms),
                 REDIS_BACKLOG_DEADLINES);
        redis_drop(rs);
    } else {
        redis_watch_backlog(rs);           /* not stale yet: look again when it would be */
    }
}

static void redis_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_storage *rs = arg;
    (void)fd;
    (void)what;

    if (rs->ac && !rs->connected) {
        log_warn("redis %s: connect timed out after %d ms", rs->where, rs->connect_timeout_ms);
        redis_drop(rs);
    }
}

static void redis_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_storage *rs = arg;
    (void)fd;
    (void)what;

    rs->base.counters.reconnects++;
    redis_connect(rs);
}

static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_storage *rs = ac->data;

    if (!rs || rs->ac != ac)
        return;
    evtimer_del(rs->connect_ev);
    if (status != REDIS_OK) {
        /* hiredis frees ac when this returns, failing its queued commands with NULL replies. */
        log_warn("redis %s: cannot connect: %s", rs->where, ac->errstr);
        rs->ac = NULL;
        redis_schedule_retry(rs);
        return;
    }
    rs->connected = true;
    rs->last_reply_ms = redis_now_ms();
    rs->clock_sent_ms = rs->last_reply_ms;  /* the TIME queued at connect leaves now */
    log_info("redis %s: connected", rs->where);
}

/* Runs for clean and error disconnects, after hiredis failed the pending commands; hiredis frees
 * ac afterwards. */
static void redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_storage *rs = ac->data;

    if (!rs || rs->ac != ac)
        return;
    rs->ac = NULL;
    rs->connected = false;
    rs->counts_unacked = 0;
    evtimer_del(rs->connect_ev);
    log_warn("redis %s: connection lost: %s", rs->where, status == REDIS_OK ? "closed" : ac->errstr);
    redis_schedule_retry(rs);
}

/* AUTH and SELECT replies. A refusal is a configuration problem: log it and reopen (with
 * back-off) rather than send every request into NOAUTH errors. */
static void redis_setup_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct redis_storage *rs = ac->data;
    redisReply *reply = reply_ptr;

    if (!rs || !reply || reply->type != REDIS_REPLY_ERROR)
        return;
    log_error("redis %s: %s failed: %s", rs->where, (const char *)privdata, reply->str);
    rs->drop_requested = true;
    event_active(rs->reset_ev, EV_TIMEOUT, 1);
}

/* TIME's reply, [seconds, microseconds] of Redis's clock, gives the offset of Redis's clock from
 * the loop's cached time at the reply, less half the round trip (Redis read its clock somewhere in
 * between). A sample slower than a deadline (TIME queued behind a backlog) is too imprecise and
 * is skipped, unless there is no offset yet. */
static void redis_clock_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct redis_storage *rs = ac->data;
    redisReply *reply = reply_ptr;
    uint64_t now_ms = redis_now_ms(), rtt_ms;
    int64_t host_ms, redis_ms, offset_ms;
    struct timeval tv;
    (void)privdata;

    if (!rs || rs->ac != ac)
        return;
    rs->clock_pending = false;
    if (!reply)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING) {
        if (!rs->clock_known)
            log_error("redis %s: TIME failed (%s): peer expiry uses this host's clock", rs->where,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        rs->clock_known = true;
        return;
    }
    rtt_ms = now_ms - rs->clock_sent_ms;
    if (rs->clock_known && rtt_ms > (uint64_t)rs->timeout_ms)
        return;
    redis_ms = strtoll(reply->element[0]->str, NULL, 10) * 1000 +
               strtoll(reply->element[1]->str, NULL, 10) / 1000;
    event_base_gettimeofday_cached(rs->evbase, &tv);
    host_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000 - (int64_t)(rtt_ms / 2);
    offset_ms = redis_ms - host_ms;
    rs->clock_offset_ms = offset_ms;
    rs->clock_known = true;
    if ((offset_ms > REDIS_CLOCK_WARN_MS || offset_ms < -REDIS_CLOCK_WARN_MS) &&
        (rs->clock_warned_ms == 0 || now_ms - rs->clock_warned_ms >= REDIS_CLOCK_WARN_EVERY_MS)) {
        log_warn("redis %s: this host's clock is %.1f s %s Redis's: peer expiry follows Redis's clock, "
                 "but fix this host's (NTP)", rs->where,
                 (double)(offset_ms < 0 ? -offset_ms : offset_ms) / 1000.0,
                 offset_ms < 0 ? "ahead of" : "behind");
        rs->clock_warned_ms = now_ms;
    }
}

/* Queues a TIME on the connection. */
static void redis_clock_ask(struct redis_storage *rs)
{
    const char *argv[] = { "TIME" };

    if (redisAsyncCommandArgv(rs->ac, redis_clock_cb, NULL, 1, argv, NULL) == REDIS_OK) {
        rs->clock_pending = true;
        rs->clock_sent_ms = redis_now_ms();
    }
}

/* Every REDIS_CLOCK_PERIOD_MS: clocks drift, and an operator may fix a host's at any time. */
static void redis_clock_tick(evutil_socket_t fd, short what, void *arg)
{
    struct redis_storage *rs = arg;
    (void)fd;
    (void)what;

    if (rs->ac && rs->connected && !rs->clock_pending)
        redis_clock_ask(rs);
}

/* Wraps the adapter's addWrite hook: the write event going from idle to armed is one pipeline
 * (hiredis calls the hook for every command; they all leave in that one write). An armed event
 * is left alone: the adapter's event_add on it again was 3 % of a worker's instructions. */
static void redis_add_write(void *privdata)
{
    redisLibeventEvents *e = privdata;
    struct redis_storage *rs = e->context->data;

    if (event_pending(e->wev, EV_WRITE, NULL))
        return;
    if (rs)
        rs->base.counters.round_trips++;
    redisLibeventAddWrite(privdata);
}

/* ---- reply objects ------------------------------------------------------------------------ */

/* hiredis's reply objects, in fewer allocations: a string and its text in one block, an array and
 * its element vector in one block (hiredis allocates each separately, and malloc/free were a
 * third of a churn announce's instructions: 50 sampled members are 50 strings). The layout stays
 * redisReply, so every reader of replies is unchanged. */
static void *redis_reply_link(const redisReadTask *task, redisReply *r)
{
    if (task->parent) {
        redisReply *parent = task->parent->obj;

        parent->element[task->idx] = r;
    }
    return r;
}

/* Small reply objects (integers, nils, strings up to REDIS_SMALL_TEXT bytes: every member, every
 * count) come from a free list instead of malloc: a sample's 51 strings are allocated and freed
 * together, which overflows glibc's per-size cache (7 blocks) every time, so each went through
 * _int_malloc and _int_free (17 % of a churn worker's instructions, bench/callgrind.sh). The
 * list keeps at most REDIS_SMALL_KEEP blocks (~460 KB); a worker is one thread. */
#define REDIS_SMALL_TEXT 63
#define REDIS_SMALL_KEEP 4096
union redis_small {
    union redis_small *next;               /* while on the free list */
    struct {
        redisReply reply;
        char text[REDIS_SMALL_TEXT + 1];
    } obj;
};
static union redis_small *redis_small_free;
static unsigned redis_small_kept;
static unsigned redis_storages;            /* live Redis storages: the last one drains the list */

static redisReply *redis_small_get(void)
{
    union redis_small *b = redis_small_free;

    if (b) {
        redis_small_free = b->next;
        redis_small_kept--;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    memset(&b->obj.reply, 0, sizeof(b->obj.reply));
    return &b->obj.reply;
}

static void redis_small_put(redisReply *r)
{
    union redis_small *b = (union redis_small *)(void *)r;

    if (redis_small_kept >= REDIS_SMALL_KEEP) {
        free(b);
        return;
    }
    b->next = redis_small_free;
    redis_small_free = b;
    redis_small_kept++;
}

/* Gives the kept blocks back to malloc (the last storage went away). */
static void redis_small_drain(void)
{
    while (redis_small_free) {
        union redis_small *b = redis_small_free;

        redis_small_free = b->next;
        free(b);
    }
    redis_small_kept = 0;
}

/* Whether r came from redis_small_get (decided by what it holds, as when it was made). */
static bool redis_small_is(const redisReply *r)
{
    return r->type == REDIS_REPLY_INTEGER || r->type == REDIS_REPLY_NIL ||
           (r->type != REDIS_REPLY_ARRAY && r->len <= REDIS_SMALL_TEXT);
}

static void *redis_reply_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r;

    if (len <= REDIS_SMALL_TEXT) {
        r = redis_small_get();
        if (!r)
            return NULL;
        r->type = task->type;
        r->str = ((union redis_small *)(void *)r)->obj.text;
        memcpy(r->str, str, len);
        r->str[len] = '\0';
        r->len = len;
        return redis_reply_link(task, r);
    }
    r = malloc(sizeof(*r) + len + 1);

    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->type = task->type;
    r->str = (char *)(r + 1);
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return redis_reply_link(task, r);
}

static void *redis_reply_array(const redisReadTask *task, int elements)
{
    size_t n = elements > 0 ? (size_t)elements : 0;
    redisReply *r = malloc(sizeof(*r) + n * sizeof(redisReply *));

    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r) + n * sizeof(redisReply *));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = n > 0 ? (redisReply **)(void *)(r + 1) : NULL;
    return redis_reply_link(task, r);
}

static void *redis_reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r = redis_small_get();

    if (!r)
        return NULL;
    r->type = REDIS_REPLY_INTEGER;
    r->integer = value;
    return redis_reply_link(task, r);
}

static void *redis_reply_nil(const redisReadTask *task)
{
    redisReply *r = redis_small_get();

    if (!r)
        return NULL;
    r->type = REDIS_REPLY_NIL;
    return redis_reply_link(task, r);
}

static void redis_reply_free(void *obj)
{
    redisReply *r = obj;
    size_t i;

    if (!r)
        return;
    if (r->type == REDIS_REPLY_ARRAY)
        for (i = 0; i < r->elements; i++)
            redis_reply_free(r->element[i]);
    if (redis_small_is(r))
        redis_small_put(r);
    else
        free(r);
}

static redisReplyObjectFunctions redis_reply_fns = {
    redis_reply_string, redis_reply_array, redis_reply_integer, redis_reply_nil, redis_reply_free,
};

/* "host:port", "[v6]:port" or the socket path, for log lines. */
static void redis_set_where(struct redis_storage *rs)
{
    if (rs->target.unix_socket)
        snprintf(rs->where, sizeof(rs->where), "%s", rs->target.path);
    else if (strchr(rs->target.host, ':'))
        snprintf(rs->where, sizeof(rs->where), "[%s]:%d", rs->target.host, rs->target.port);
    else
        snprintf(rs->where, sizeof(rs->where), "%s:%d", rs->target.host, rs->target.port);
}

static void redis_connect(struct redis_storage *rs)
{
    redisAsyncContext *ac;
    struct timeval tv;
    char msg[512];

    /* Sentinel mode: synchronous on purpose, and bounded: one round trip to the first sentinel
     * that answers (each has redis.timeout_ms to connect and to reply), only when there is no
     * connection, i.e. while every request fails fast anyway, and at most once a back-off. */
    if (rs->sentinel_cfg) {
        if (redis_sentinel_resolve(rs->sentinel_cfg, &rs->target, msg, sizeof(msg)) < 0) {
            log_warn("redis sentinel: %s", msg);
            redis_schedule_retry(rs);
            return;
        }
        redis_set_where(rs);
    }
    if (rs->target.unix_socket)
        ac = redisAsyncConnectUnix(rs->target.path);
    else
        ac = redisAsyncConnect(rs->target.host, rs->target.port);
    if (!ac) {
        log_warn("redis %s: out of memory", rs->where);
        redis_schedule_retry(rs);
        return;
    }
    if (ac->err) {
        log_warn("redis %s: cannot connect: %s", rs->where, ac->errstr);
        redisAsyncFree(ac);
        redis_schedule_retry(rs);
        return;
    }
    if (redisLibeventAttach(ac, rs->evbase) != REDIS_OK) {
        redisAsyncFree(ac);
        redis_schedule_retry(rs);
        return;
    }
    ac->data = rs;
    ac->c.reader->fn = &redis_reply_fns;   /* before anything is read */
    ac->ev.addWrite = redis_add_write;
    redisAsyncSetConnectCallback(ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
    rs->ac = ac;
    rs->connected = false;
    rs->reload_ms = 0;
    rs->reload_warned = false;
    /* Queued now, written first once the connect completes: every request follows them. */
    if (rs->target.password[0]) {
        const char *argv[] = { "AUTH", rs->target.password };

        redisAsyncCommandArgv(ac, redis_setup_cb, (void *)"AUTH", 2, argv, NULL);
    }
    if (rs->target.db != 0) {
        char db[16];
        const char *argv[] = { "SELECT", db };

        snprintf(db, sizeof(db), "%d", rs->target.db);
        redisAsyncCommandArgv(ac, redis_setup_cb, (void *)"SELECT", 2, argv, NULL);
    }
    if (rs->sentinel_cfg) {
        const char *argv[] = { "ROLE" };

        redisAsyncCommandArgv(ac, redis_role_cb, NULL, 1, argv, NULL);
    }
    /* Before TIME: a request is sent only after TIME answered, so after the library loaded. */
    if (rs->private_enabled) {
        const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", redis_functions_lua };

        redisAsyncCommandArgv(ac, redis_setup_cb, (void *)"FUNCTION LOAD", 4, argv, NULL);
    }
    rs->clock_pending = false;             /* a TIME on the last connection is gone with it */
    redis_clock_ask(rs);
    tv = redis_tv(rs->connect_timeout_ms);
    evtimer_add(rs->connect_ev, &tv);
}

static void redis_free(struct storage *st)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    redisAsyncContext *ac = rs->ac;

    /* The counters of the last second leave with the connection: written out now, since
     * redisAsyncFree drops what hiredis has not sent yet (a drain loses no counts). */
    redis_count_flush_upto(rs, UINT_MAX);  /* the half being written, all at once ... */
    redis_count_flush_upto(rs, UINT_MAX);  /* ... and the half counted into */
    if (ac && rs->connected)
        redisAsyncHandleWrite(ac);
    rs->freeing = true;
    rs->ac = NULL;
    if (ac)
        ac->data = NULL;               /* its remaining callbacks must not reach rs */
    while (rs->owed_head) {            /* nor the owed list: r outlives rs until its replies */
        struct redis_req *r = rs->owed_head;

        rs->owed_head = r->owed_next;
        r->owed_prev = r->owed_next = NULL;
        r->owed_rs = NULL;
    }
    rs->owed_tail = NULL;
    while (rs->reqs) {
        struct redis_req *r = rs->reqs;

        redis_req_finish(r, STORAGE_ERR_UNAVAILABLE);
        redis_req_release(r);
    }
    event_free(rs->retry_ev);
    event_free(rs->connect_ev);
    event_free(rs->reset_ev);
    event_free(rs->clock_ev);
    if (rs->count_ev)
        event_free(rs->count_ev);
    free(rs->counts);
    free(rs->pools);
    free(rs->sentinel_cfg);
    free(rs);
    if (--redis_storages == 0)
        redis_small_drain();
    /* Inside a hiredis callback this only marks ac; hiredis frees it when the callback returns. */
    if (ac)
        redisAsyncFree(ac);
}

static const struct storage_ops redis_ops = {
    .announce = redis_announce,
    .scrape = redis_scrape,
    .health = redis_health,
    .lookup = redis_lookup,
    .free = redis_free,
};

/* node_host: a Redis Cluster node (storage/redis_node.h) at node_host:node_port, else NULL. */
static struct storage *redis_storage_new(const struct config *cfg, struct event_base *base, const char *node_host,
                                         int node_port, char *err, size_t errlen)
{
    struct redis_storage *rs;
    struct timeval tv;
    char msg[256];

    if (strlen(cfg->redis_prefix) >= sizeof(rs->prefix)) {
        snprintf(err, errlen, "redis.prefix is too long");
        return NULL;
    }
    rs = calloc(1, sizeof(*rs));
    if (!rs) {
        snprintf(err, errlen, "redis storage: out of memory");
        return NULL;
    }
    if (config_parse_redis_url(cfg->redis_url, &rs->target, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "redis.url: %s", msg);
        goto fail_rs;
    }
    if (node_host) {
        rs->cluster = true;
        rs->target.unix_socket = false;
        rs->target.db = 0;
        rs->target.port = node_port;
        if (snprintf(rs->target.host, sizeof(rs->target.host), "%s", node_host) >= (int)sizeof(rs->target.host)) {
            snprintf(err, errlen, "redis cluster node %s: the host name is too long", node_host);
            goto fail_rs;
        }
    }
    rs->base.ops = &redis_ops;
    rs->evbase = base;
    snprintf(rs->prefix, sizeof(rs->prefix), "%s", cfg->redis_prefix);
    rs->timeout_ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 1000;
    rs->connect_timeout_ms = rs->timeout_ms > REDIS_CONNECT_TIMEOUT_MIN_MS ? rs->timeout_ms
                                                                          : REDIS_CONNECT_TIMEOUT_MIN_MS;
    swarm_policy_init(&rs->policy, cfg);
    rs->private_enabled = cfg->private_enabled;
    rs->mirror_credits = cfg->private_mirror_credits;
    rs->stats_enabled = cfg->stats_enabled;
    rs->sample_cache_ms = cfg->storage_sample_cache_ms;
    if (rs->sample_cache_ms > 0 && !(rs->pools = calloc(REDIS_POOLS, sizeof(*rs->pools)))) {
        snprintf(err, errlen, "redis storage: out of memory");
        goto fail_rs;
    }
    if (rs->stats_enabled && !(rs->counts = calloc(2 * REDIS_COUNTS, sizeof(*rs->counts)))) {
        snprintf(err, errlen, "redis storage: out of memory");
        goto fail_rs;
    }
    rs->interval_s = cfg->interval_s > 0 ? cfg->interval_s : 1800;
    rs->min_interval_s = cfg->min_interval_s;
    rs->peer_ttl_s = cfg->peer_ttl_s;
    snprintf(rs->stats_ttl, sizeof(rs->stats_ttl), "%d", 2 * cfg->peer_ttl_s);
    snprintf(rs->ttl, sizeof(rs->ttl), "%d", cfg->peer_ttl_s);
    snprintf(rs->maxlen, sizeof(rs->maxlen), "%d", cfg->private_events_maxlen);
    {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        rs->rng = ((uint64_t)ts.tv_sec << 32 ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 16 ^
                   (uint64_t)(uintptr_t)rs) | 1;
    }
    rs->backoff_ms = REDIS_BACKOFF_MIN_MS;
    redis_set_where(rs);
    if (!node_host && redis_sentinel_enabled(cfg)) {
        if (!(rs->sentinel_cfg = malloc(sizeof(*rs->sentinel_cfg)))) {
            snprintf(err, errlen, "redis storage: out of memory");
            goto fail_rs;
        }
        *rs->sentinel_cfg = *cfg;
        snprintf(rs->where, sizeof(rs->where), "sentinel master '%s'", cfg->redis_master_name);
    }
    rs->retry_ev = evtimer_new(base, redis_retry_cb, rs);
    rs->connect_ev = evtimer_new(base, redis_connect_timeout_cb, rs);
    rs->reset_ev = event_new(base, -1, 0, redis_reset_cb, rs);
    rs->clock_ev = event_new(base, -1, EV_PERSIST, redis_clock_tick, rs);
    tv = redis_tv(REDIS_CLOCK_PERIOD_MS);
    if (!rs->retry_ev || !rs->connect_ev || !rs->reset_ev || !rs->clock_ev || evtimer_add(rs->clock_ev, &tv) < 0) {
        snprintf(err, errlen, "redis storage: out of memory");
        goto fail_events;
    }
    if (rs->counts) {
        tv = redis_tv(REDIS_COUNT_FLUSH_MS);
        rs->count_ev = event_new(base, -1, EV_PERSIST, redis_count_tick, rs);
        if (!rs->count_ev || evtimer_add(rs->count_ev, &tv) < 0) {
            snprintf(err, errlen, "redis storage: out of memory");
            goto fail_events;
        }
    }
    redis_storages++;
    redis_connect(rs);
    return &rs->base;

fail_events:
    if (rs->retry_ev)
        event_free(rs->retry_ev);
    if (rs->connect_ev)
        event_free(rs->connect_ev);
    if (rs->reset_ev)
        event_free(rs->reset_ev);
    if (rs->clock_ev)
        event_free(rs->clock_ev);
    if (rs->count_ev)
        event_free(rs->count_ev);
fail_rs:
    free(rs->sentinel_cfg);
    free(rs->counts);
    free(rs->pools);
    free(rs);
    return NULL;
}

struct storage *storage_redis_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen)
{
    return redis_storage_new(cfg, base, NULL, 0, err, errlen);
}

/* ---- a Redis Cluster node (storage/redis_node.h) ------------------------------------------ */

struct storage *storage_redis_node_new(const struct config *cfg, struct event_base *base, const char *host,
                                       int port, char *err, size_t errlen)
{
    return redis_storage_new(cfg, base, host, port, err, errlen);
}

int storage_redis_node_announce_asking(struct storage *st, const struct announce_req *req,
                                       storage_announce_cb *cb, void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    int rc;

    rs->asking_next = true;
    rc = redis_announce(st, req, cb, arg);
    rs->asking_next = false;
    return rc;
}

int storage_redis_node_scrape(struct storage *st, const struct scrape_req *req, const uint8_t *masks, bool asking,
                              storage_scrape_cb *cb, void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    int rc;

    rs->asking_next = asking;
    rc = redis_scrape_masked(rs, req, masks, cb, arg);
    rs->asking_next = false;
    return rc;
}

const uint8_t *storage_redis_node_scrape_flags(const struct storage *st)
{
    return ((const struct redis_storage *)st)->last_scrape_flags;
}

int storage_redis_node_account(struct storage *st, const struct announce_req *req, bool asking,
                               storage_health_cb *cb, void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    struct announce_req timed = *req;
    struct redis_req *r;

    if (rs->freeing)
        return -1;
    rs->asking_next = asking;
    r = redis_req_new(rs, REDIS_REQ_ACCOUNT, 0, arg);
    rs->asking_next = false;
    if (!r)
        return -1;
    r->health_cb = cb;
    timed.now_s = redis_req_now_s(rs, req->now_s);
    if (!rs->ac)
        redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
    else
        redis_account(rs, r, &timed);
    redis_req_start(rs, r);
    return 0;
}

void storage_redis_node_snatch(struct storage *st, const struct announce_req *req)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    struct announce_req timed = *req;

    if (rs->ac && !rs->freeing) {
        timed.now_s = redis_req_now_s(rs, req->now_s);
        redis_snatch(rs, &timed);
    }
}

int storage_redis_node_lookup(struct storage *st, const struct storage_lookup_req *req, bool user, bool asking,
                              storage_lookup_cb *cb, void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    int rc;

    rs->asking_next = asking;
    rc = redis_lookup_parts(rs, req, user, !user, cb, arg);
    rs->asking_next = false;
    return rc;
}

int storage_redis_node_raw(struct storage *st, int argc, const char **argv, storage_redis_node_raw_cb *cb,
                           void *arg)
{
    struct redis_storage *rs = (struct redis_storage *)st;
    struct redis_req *r;

    if (rs->freeing || !(r = redis_req_new(rs, REDIS_REQ_RAW, 0, arg)))
        return -1;
    r->raw_cb = cb;
    if (!rs->ac)
        redis_req_fail(r, STORAGE_ERR_UNAVAILABLE);
    redis_sendv(rs, r, REDIS_SLOT_WRITE, argc, argv);
    redis_req_start(rs, r);
    return 0;
}

bool storage_redis_node_connected(const struct storage *st)
{
    return ((const struct redis_storage *)st)->connected;
}

void storage_redis_node_report(const struct storage *st, struct redis_node_redirect *out)
{
    *out = ((const struct redis_storage *)st)->last_redirect;
}

bool storage_redis_node_clock(const struct storage *st, int64_t *offset_ms)
{
    const struct redis_storage *rs = (const struct redis_storage *)st;

    if (!rs->clock_known)
        return false;
    *offset_ms = rs->clock_offset_ms;
    return true;
}

void storage_redis_node_seed_clock(struct storage *st, int64_t offset_ms)
{
    struct redis_storage *rs = (struct redis_storage *)st;

    if (!rs->clock_known) {
        rs->clock_offset_ms = offset_ms;
        rs->clock_known = true;
    }
}
