/* The storage interface: where swarms live. lib/ includes only this header; each backend
 * (storage/redis.c, storage/memory.c) embeds struct storage first and exports only its
 * constructor. Every call is asynchronous: its callback runs exactly once, success or failure,
 * and never before the call returns. */
#ifndef TYTO_STORAGE_H
#define TYTO_STORAGE_H

#include "lib/announce.h"

struct event_base;
struct config;
struct storage;

/* Callback status: 0 on success, else one of these (rep is then NULL). */
enum storage_status {
    STORAGE_OK = 0,
    STORAGE_ERR_UNAVAILABLE = -1,  /* not connected (Redis down or reconnecting) */
    STORAGE_ERR_TIMEOUT = -2,      /* no answer within the configured deadline */
    STORAGE_ERR_FULL = -3,         /* Redis refused a write: maxmemory reached (OOM) */
    STORAGE_ERR_INTERNAL = -4,     /* unexpected reply; a bug or a foreign key of the wrong type */
    STORAGE_ERR_REDIRECT = -5,     /* a Redis Cluster node did not run it (MOVED, ASK, ...): only
                                    * between a node and storage/redis_router.c, which resends */
};

/* The announce_err a worker sends for a failed status. */
enum announce_err storage_status_err(int status);

typedef void storage_announce_cb(const struct announce_reply *rep, int status, void *arg);
typedef void storage_scrape_cb(const struct scrape_reply *rep, int status, void *arg);
typedef void storage_health_cb(int status, void *arg);

/* Private mode (BEP 27): one round trip that looks up a passkey's user and a torrent's rules
 * (FCALL tyto_lookup + HMGET of the torrent hash, redis/tyto.lua). */
enum storage_user_status { STORAGE_USER_OK, STORAGE_USER_UNKNOWN, STORAGE_USER_DISABLED };

struct storage_lookup_req {
    char passkey[33];                    /* 32 chars [0-9A-Za-z], NUL-terminated */
    uint8_t info_hash[ANNOUNCE_HASH_LEN];
    bool with_torrent;                   /* also read the torrent's rules (announce; not scrape) */
    int64_t now_s;                       /* the worker's loop time */
};

struct storage_lookup_reply {
    enum storage_user_status user;
    char name[ANNOUNCE_USER_MAX + 1];
    bool can_leech;
    int64_t expires_s;                   /* unix s on Redis's clock; 0 never */
    bool torrent_approved;               /* the torrent hash exists */
    bool freeleech, neutral;
    char up_mult[ANNOUNCE_MULT_MAX + 1], down_mult[ANNOUNCE_MULT_MAX + 1];
    int64_t redis_now_s;                 /* now_s on Redis's clock: expiry is judged by it */
};

typedef void storage_lookup_cb(const struct storage_lookup_reply *rep, int status, void *arg);

/* Counters a backend keeps for /metrics (monotonic, per process). */
struct storage_counters {
    uint64_t round_trips;          /* pipelines sent (Redis) */
    uint64_t commands;             /* commands sent */
    uint64_t errors;               /* failed requests, any reason */
    uint64_t timeouts;
    uint64_t reconnects;
    uint64_t completed;            /* completed downloads this process counted in a swarm */
    uint64_t redirects;            /* Redis Cluster: requests a node sent elsewhere (resent) */
};

struct storage_ops {
    /* The request is borrowed for the call only; the backend copies what it keeps. Returns 0. */
    int (*announce)(struct storage *st, const struct announce_req *req, storage_announce_cb *cb, void *arg);
    int (*scrape)(struct storage *st, const struct scrape_req *req, storage_scrape_cb *cb, void *arg);
    /* Asks the backend whether it answers now (Redis: a PING within the deadline). */
    int (*health)(struct storage *st, storage_health_cb *cb, void *arg);
    /* Private mode; NULL when the backend has none (memory: config refuses private.enabled).
     * An announce whose req->account.user is set also runs FCALL tyto_account in its own round
     * trip, and FCALL tyto_snatch (not waited for) when its completed move counted. */
    int (*lookup)(struct storage *st, const struct storage_lookup_req *req, storage_lookup_cb *cb, void *arg);
    /* Calls every pending callback with STORAGE_ERR_UNAVAILABLE, then frees. */
    void (*free)(struct storage *st);
};

struct storage {
    const struct storage_ops *ops;
    struct storage_counters counters;
    /* A gauge: requests whose callback has run (timed out) while the backend still owes their
     * replies. Their commands still wait in Redis's queue and their state in memory, so the
     * worker counts them against http.max_pending with the requests in flight. 0 for memory. */
    unsigned backlog;
};

static inline int storage_announce(struct storage *st, const struct announce_req *req,
                                   storage_announce_cb *cb, void *arg)
{
    return st->ops->announce(st, req, cb, arg);
}

static inline int storage_scrape(struct storage *st, const struct scrape_req *req,
                                 storage_scrape_cb *cb, void *arg)
{
    return st->ops->scrape(st, req, cb, arg);
}

static inline int storage_health(struct storage *st, storage_health_cb *cb, void *arg)
{
    return st->ops->health(st, cb, arg);
}

/* -1 (nothing called back) when the backend has no private mode. */
static inline int storage_lookup(struct storage *st, const struct storage_lookup_req *req,
                                 storage_lookup_cb *cb, void *arg)
{
    return st->ops->lookup ? st->ops->lookup(st, req, cb, arg) : -1;
}

/* NULL is a no-op. */
static inline void storage_free(struct storage *st)
{
    if (st)
        st->ops->free(st);
}

/* Constructors. On failure they return NULL with a message in err. The Redis backend does not
 * fail because Redis is down: it starts disconnected and keeps reconnecting with back-off. */
struct storage *storage_redis_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen);
/* Redis Cluster (redis.cluster: true): storage/redis_router.c. */
struct storage *storage_redis_cluster_new(const struct config *cfg, struct event_base *base, char *err,
                                          size_t errlen);
struct storage *storage_memory_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen);

/* Picks the backend the configuration names. */
struct storage *storage_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen);

#endif
