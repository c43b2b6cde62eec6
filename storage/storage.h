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
};

/* The announce_err a worker sends for a failed status. */
enum announce_err storage_status_err(int status);

typedef void storage_announce_cb(const struct announce_reply *rep, int status, void *arg);
typedef void storage_scrape_cb(const struct scrape_reply *rep, int status, void *arg);
typedef void storage_health_cb(int status, void *arg);

/* Counters a backend keeps for /metrics (monotonic, per process). */
struct storage_counters {
    uint64_t round_trips;          /* pipelines sent (Redis) */
    uint64_t commands;             /* commands sent */
    uint64_t errors;               /* failed requests, any reason */
    uint64_t timeouts;
    uint64_t reconnects;
};

struct storage_ops {
    /* The request is borrowed for the call only; the backend copies what it keeps. Returns 0. */
    int (*announce)(struct storage *st, const struct announce_req *req, storage_announce_cb *cb, void *arg);
    int (*scrape)(struct storage *st, const struct scrape_req *req, storage_scrape_cb *cb, void *arg);
    /* Asks the backend whether it answers now (Redis: a PING within the deadline). */
    int (*health)(struct storage *st, storage_health_cb *cb, void *arg);
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

/* NULL is a no-op. */
static inline void storage_free(struct storage *st)
{
    if (st)
        st->ops->free(st);
}

/* Constructors. On failure they return NULL with a message in err. The Redis backend does not
 * fail because Redis is down: it starts disconnected and keeps reconnecting with back-off. */
struct storage *storage_redis_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen);
struct storage *storage_memory_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen);

/* Picks the backend the configuration names. */
struct storage *storage_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen);

#endif
