/* The in-process storage backend (workers: 1): swarms in a chained hash table keyed by info_hash,
 * each with a seeders and a leechers array of {compact peer, expiry}. It follows the Redis
 * backend's semantics (see storage/redis.c) so that either can serve the contract tests. State
 * changes happen in the call; the answer is queued and delivered from the event loop, so a
 * callback never runs before the call returns. There is no background reaper: expired peers go
 * when their swarm is touched, and each announce also sweeps one hash bucket. */
#include "storage/storage.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/config.h"
#include "storage/redis_keys.h"

#define MEMORY_BUCKETS_MIN 64

struct memory_peer {
    int64_t expiry_s;                  /* unix seconds; alive while > now */
    uint8_t len;                       /* 6 or 18 */
    uint8_t addr[REDIS_KEYS_PEER_MAX]; /* compact form */
};

struct memory_list {
    struct memory_peer *v;
    size_t count, cap;
};

struct memory_swarm {
    struct memory_swarm *next;         /* bucket chain */
    uint8_t info_hash[ANNOUNCE_HASH_LEN];
    uint32_t downloaded;
    struct memory_list seeders, leechers;
};

enum memory_kind { MEMORY_ANNOUNCE, MEMORY_SCRAPE, MEMORY_HEALTH };

/* A finished call waiting for its callback. */
struct memory_done {
    struct memory_done *next;
    enum memory_kind kind;
    int status;
    storage_announce_cb *announce_cb;
    storage_scrape_cb *scrape_cb;
    storage_health_cb *health_cb;
    void *arg;
    struct swarm_stats stats;          /* announce */
    size_t peers4_count, peers6_count;
    uint8_t *peers4, *peers6;          /* point into buf */
    unsigned scrape_count;
    struct swarm_stats *scrape_stats;  /* points into buf */
    uint8_t buf[];
};

struct memory_storage {
    struct storage base;               /* first: the interface */
    struct event_base *evbase;
    struct event *dispatch_ev;         /* zero-timeout timer that delivers the queue */
    struct memory_done *head, **tail;
    size_t queued;
    bool *dispatch_freed;              /* set while dispatching; free() raises it */
    bool freeing;
    struct memory_swarm **buckets;
    size_t nbuckets, nswarms;          /* nbuckets is a power of two */
    size_t gc_cursor;                  /* next bucket the incremental sweep visits */
    uint64_t hash_seed;                /* keyed hashing: clients choose info_hash freely */
    uint64_t rng;                      /* xorshift64* state for sampling */
    int peer_ttl_s;
    unsigned numwant_max;              /* sample cap whatever the request says */
};

static uint64_t memory_random(struct memory_storage *ms)
{
    uint64_t x = ms->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ms->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n) for n > 0 (multiply-shift; the bias is below 2^-32 for swarm sizes). */
static size_t memory_random_below(struct memory_storage *ms, size_t n)
{
    return (size_t)(((memory_random(ms) >> 32) * (uint64_t)n) >> 32);
}

static size_t memory_bucket(const struct memory_storage *ms, const uint8_t *info_hash)
{
    uint64_t h = ms->hash_seed;
    size_t i;

    for (i = 0; i < ANNOUNCE_HASH_LEN; i++)
        h = (h ^ info_hash[i]) * 0x100000001b3ULL;
    h ^= h >> 31;
    h *= 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    return (size_t)h & (ms->nbuckets - 1);
}

static struct memory_swarm *memory_find(struct memory_storage *ms, const uint8_t *info_hash)
{
    struct memory_swarm *sw;

    for (sw = ms->buckets[memory_bucket(ms, info_hash)]; sw; sw = sw->next)
        if (memcmp(sw->info_hash, info_hash, ANNOUNCE_HASH_LEN) == 0)
            return sw;
    return NULL;
}

static void memory_grow(struct memory_storage *ms)
{
    size_t old_n = ms->nbuckets, i;
    struct memory_swarm **old = ms->buckets, **fresh;

    fresh = calloc(old_n * 2, sizeof(*fresh));
    if (!fresh)
        return;                        /* keep the longer chains; still correct */
    ms->buckets = fresh;
    ms->nbuckets = old_n * 2;
    for (i = 0; i < old_n; i++) {
        struct memory_swarm *sw = old[i], *next;

        for (; sw; sw = next) {
            size_t b = memory_bucket(ms, sw->info_hash);

            next = sw->next;
            sw->next = fresh[b];
            fresh[b] = sw;
        }
    }
    free(old);
}

static struct memory_swarm *memory_create(struct memory_storage *ms, const uint8_t *info_hash)
{
    struct memory_swarm *sw = calloc(1, sizeof(*sw));
    size_t b;

    if (!sw)
        return NULL;
    memcpy(sw->info_hash, info_hash, ANNOUNCE_HASH_LEN);
    if (ms->nswarms + 1 > ms->nbuckets)
        memory_grow(ms);
    b = memory_bucket(ms, info_hash);
    sw->next = ms->buckets[b];
    ms->buckets[b] = sw;
    ms->nswarms++;
    return sw;
}

static void memory_swarm_free(struct memory_swarm *sw)
{
    free(sw->seeders.v);
    free(sw->leechers.v);
    free(sw);
}

/* Unlinks and frees sw, which must be in its bucket. */
static void memory_remove(struct memory_storage *ms, struct memory_swarm *sw)
{
    struct memory_swarm **pp = &ms->buckets[memory_bucket(ms, sw->info_hash)];

    while (*pp != sw)
        pp = &(*pp)->next;
    *pp = sw->next;
    ms->nswarms--;
    memory_swarm_free(sw);
}

/* Drops members whose expiry is <= now (Redis: ZREMRANGEBYSCORE key -inf now). */
static void memory_list_reap(struct memory_list *l, int64_t now_s)
{
    size_t i = 0;

    while (i < l->count) {
        if (l->v[i].expiry_s <= now_s)
            l->v[i] = l->v[--l->count];
        else
            i++;
    }
}

static uint32_t memory_list_alive(const struct memory_list *l, int64_t now_s)
{
    uint32_t n = 0;
    size_t i;

    for (i = 0; i < l->count; i++)
        if (l->v[i].expiry_s > now_s)
            n++;
    return n;
}

static ssize_t memory_list_find(const struct memory_list *l, const uint8_t *addr, size_t len)
{
    size_t i;

    for (i = 0; i < l->count; i++)
        if (l->v[i].len == len && memcmp(l->v[i].addr, addr, len) == 0)
            return (ssize_t)i;
    return -1;
}

static void memory_list_remove(struct memory_list *l, const uint8_t *addr, size_t len)
{
    ssize_t i = memory_list_find(l, addr, len);

    if (i >= 0)
        l->v[i] = l->v[--l->count];
}

/* Adds or refreshes a member. Returns 0, or -1 when out of memory. */
static int memory_list_upsert(struct memory_list *l, const uint8_t *addr, size_t len, int64_t expiry_s)
{
    ssize_t i = memory_list_find(l, addr, len);

    if (i >= 0) {
        l->v[i].expiry_s = expiry_s;
        return 0;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct memory_peer *v = realloc(l->v, cap * sizeof(*v));

        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->count].expiry_s = expiry_s;
    l->v[l->count].len = (uint8_t)len;
    memcpy(l->v[l->count].addr, addr, len);
    l->count++;
    return 0;
}

static void memory_emit(struct memory_done *d, const struct memory_peer *p)
{
    if (p->len == PEER_COMPACT4_LEN)
        memcpy(d->peers4 + PEER_COMPACT4_LEN * d->peers4_count++, p->addr, PEER_COMPACT4_LEN);
    else
        memcpy(d->peers6 + PEER_COMPACT6_LEN * d->peers6_count++, p->addr, PEER_COMPACT6_LEN);
}

/* Emits up to want random members of l, skipping self (when it is in l), by a partial
 * Fisher-Yates shuffle of the list itself: order means nothing in a set. Returns the number. */
static size_t memory_sample(struct memory_storage *ms, struct memory_list *l, const uint8_t *self,
                            size_t self_len, size_t want, struct memory_done *d)
{
    ssize_t si = memory_list_find(l, self, self_len);
    size_t n = l->count, i;

    if (si >= 0) {
        /* Park self at the end, outside the range we draw from. */
        struct memory_peer t = l->v[si];

        l->v[si] = l->v[n - 1];
        l->v[n - 1] = t;
        n--;
    }
    if (want > n)
        want = n;
    for (i = 0; i < want; i++) {
        size_t j = i + memory_random_below(ms, n - i);
        struct memory_peer t = l->v[i];

        l->v[i] = l->v[j];
        l->v[j] = t;
        memory_emit(d, &l->v[i]);
    }
    return want;
}

static void memory_deliver(struct memory_done *d, int status)
{
    switch (d->kind) {
    case MEMORY_ANNOUNCE:
        if (status == STORAGE_OK) {
            struct announce_reply rep = {
                .stats = d->stats,
                .peers4 = d->peers4, .peers4_count = d->peers4_count,
                .peers6 = d->peers6, .peers6_count = d->peers6_count,
            };

            d->announce_cb(&rep, status, d->arg);
        } else {
            d->announce_cb(NULL, status, d->arg);
        }
        break;
    case MEMORY_SCRAPE:
        if (status == STORAGE_OK) {
            struct scrape_reply rep = { .count = d->scrape_count, .stats = d->scrape_stats };

            d->scrape_cb(&rep, status, d->arg);
        } else {
            d->scrape_cb(NULL, status, d->arg);
        }
        break;
    case MEMORY_HEALTH:
        d->health_cb(status, d->arg);
        break;
    }
}

static struct memory_done *memory_pop(struct memory_storage *ms)
{
    struct memory_done *d = ms->head;

    if (d) {
        ms->head = d->next;
        if (!ms->head)
            ms->tail = &ms->head;
        ms->queued--;
    }
    return d;
}

/* Delivers what was queued when this pass began; later calls wait for the next pass. */
static void memory_dispatch(evutil_socket_t fd, short what, void *arg)
{
    static const struct timeval zero = { 0, 0 };
    struct memory_storage *ms = arg;
    size_t n = ms->queued;
    bool freed = false;
    (void)fd;
    (void)what;

    ms->dispatch_freed = &freed;
    while (n-- > 0) {
        struct memory_done *d = memory_pop(ms);
        int status;

        if (!d)
            break;
        status = d->status;
        if (status != STORAGE_OK)
            ms->base.counters.errors++;
        memory_deliver(d, status);
        free(d);
        if (freed)
            return;                    /* the callback freed the storage */
    }
    ms->dispatch_freed = NULL;
    if (ms->head)
        evtimer_add(ms->dispatch_ev, &zero);
}

static void memory_enqueue(struct memory_storage *ms, struct memory_done *d)
{
    static const struct timeval zero = { 0, 0 };

    d->next = NULL;
    *ms->tail = d;
    ms->tail = &d->next;
    ms->queued++;
    if (!evtimer_pending(ms->dispatch_ev, NULL))
        evtimer_add(ms->dispatch_ev, &zero);
}

/* Visits one bucket: reaps its swarms and frees the empty ones, so abandoned swarms go away
 * without a reaper. */
static void memory_sweep(struct memory_storage *ms, int64_t now_s)
{
    struct memory_swarm **pp = &ms->buckets[ms->gc_cursor & (ms->nbuckets - 1)];

    ms->gc_cursor = (ms->gc_cursor + 1) & (ms->nbuckets - 1);
    while (*pp) {
        struct memory_swarm *sw = *pp;

        memory_list_reap(&sw->seeders, now_s);
        memory_list_reap(&sw->leechers, now_s);
        if (sw->seeders.count == 0 && sw->leechers.count == 0) {
            *pp = sw->next;
            ms->nswarms--;
            memory_swarm_free(sw);
        } else {
            pp = &sw->next;
        }
    }
}

static int memory_announce(struct storage *st, const struct announce_req *req,
                           storage_announce_cb *cb, void *arg)
{
    struct memory_storage *ms = (struct memory_storage *)st;
    bool stopped = req->event == ANNOUNCE_EVENT_STOPPED;
    size_t numwant = stopped ? 0 : req->numwant;
    uint8_t self[REDIS_KEYS_PEER_MAX];
    struct memory_swarm *sw;
    struct memory_done *d;
    int self_len;

    if (ms->freeing)
        return -1;
    if (numwant > ms->numwant_max)
        numwant = ms->numwant_max;
    d = calloc(1, sizeof(*d) + numwant * (PEER_COMPACT4_LEN + PEER_COMPACT6_LEN));
    if (!d)
        return -1;
    d->kind = MEMORY_ANNOUNCE;
    d->announce_cb = cb;
    d->arg = arg;
    d->peers4 = d->buf;
    d->peers6 = d->buf + numwant * PEER_COMPACT4_LEN;
    ms->base.counters.commands++;

    memory_sweep(ms, req->now_s);
    self_len = redis_keys_peer_compact(&req->peer, self);
    if (self_len < 0) {
        d->status = STORAGE_ERR_INTERNAL;
        goto out;
    }
    sw = memory_find(ms, req->info_hash);
    if (!sw && !stopped) {
        sw = memory_create(ms, req->info_hash);
        if (!sw) {
            d->status = STORAGE_ERR_FULL;
            goto out;
        }
    }
    if (!sw)
        goto out;                      /* stopped in an unknown swarm: all zero */

    memory_list_reap(&sw->seeders, req->now_s);
    memory_list_reap(&sw->leechers, req->now_s);
    if (stopped) {
        memory_list_remove(&sw->seeders, self, (size_t)self_len);
        memory_list_remove(&sw->leechers, self, (size_t)self_len);
    } else {
        bool seeder = req->left == 0;
        struct memory_list *own = seeder ? &sw->seeders : &sw->leechers;
        struct memory_list *other = seeder ? &sw->leechers : &sw->seeders;

        memory_list_remove(other, self, (size_t)self_len);
        if (memory_list_upsert(own, self, (size_t)self_len, req->now_s + ms->peer_ttl_s) < 0)
            d->status = STORAGE_ERR_FULL;
        else if (req->event == ANNOUNCE_EVENT_COMPLETED)
            sw->downloaded++;
        /* A seeder gets only leechers; a leecher gets seeders first, then leechers. */
        if (!seeder)
            numwant -= memory_sample(ms, &sw->seeders, self, (size_t)self_len, numwant, d);
        memory_sample(ms, &sw->leechers, self, (size_t)self_len, numwant, d);
    }
    d->stats.complete = (uint32_t)sw->seeders.count;
    d->stats.incomplete = (uint32_t)sw->leechers.count;
    d->stats.downloaded = sw->downloaded;
    if (sw->seeders.count == 0 && sw->leechers.count == 0)
        memory_remove(ms, sw);
out:
    memory_enqueue(ms, d);
    return 0;
}

static int memory_scrape(struct storage *st, const struct scrape_req *req, storage_scrape_cb *cb, void *arg)
{
    struct memory_storage *ms = (struct memory_storage *)st;
    unsigned count = req->count > SCRAPE_MAX_HASHES ? SCRAPE_MAX_HASHES : req->count;
    struct memory_done *d;
    unsigned i;

    if (ms->freeing)
        return -1;
    d = calloc(1, sizeof(*d) + count * sizeof(struct swarm_stats));
    if (!d)
        return -1;
    d->kind = MEMORY_SCRAPE;
    d->scrape_cb = cb;
    d->arg = arg;
    d->scrape_count = count;
    d->scrape_stats = (struct swarm_stats *)(void *)d->buf;
    ms->base.counters.commands++;
    /* Read-only, like the Redis backend's ZCOUNT: count the live members, reap nothing. */
    for (i = 0; i < count; i++) {
        const struct memory_swarm *sw = memory_find(ms, req->info_hash[i]);

        if (!sw)
            continue;
        d->scrape_stats[i].complete = memory_list_alive(&sw->seeders, req->now_s);
        d->scrape_stats[i].incomplete = memory_list_alive(&sw->leechers, req->now_s);
        d->scrape_stats[i].downloaded = sw->downloaded;
    }
    memory_enqueue(ms, d);
    return 0;
}

static int memory_health(struct storage *st, storage_health_cb *cb, void *arg)
{
    struct memory_storage *ms = (struct memory_storage *)st;
    struct memory_done *d;

    if (ms->freeing)
        return -1;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->kind = MEMORY_HEALTH;
    d->health_cb = cb;
    d->arg = arg;
    memory_enqueue(ms, d);
    return 0;
}

static void memory_free(struct storage *st)
{
    struct memory_storage *ms = (struct memory_storage *)st;
    struct memory_done *d;
    size_t i;

    ms->freeing = true;
    if (ms->dispatch_freed)
        *ms->dispatch_freed = true;
    while ((d = memory_pop(ms)) != NULL) {
        memory_deliver(d, STORAGE_ERR_UNAVAILABLE);
        free(d);
    }
    for (i = 0; i < ms->nbuckets; i++) {
        struct memory_swarm *sw = ms->buckets[i], *next;

        for (; sw; sw = next) {
            next = sw->next;
            memory_swarm_free(sw);
        }
    }
    free(ms->buckets);
    event_free(ms->dispatch_ev);
    free(ms);
}

static const struct storage_ops memory_ops = {
    .announce = memory_announce,
    .scrape = memory_scrape,
    .health = memory_health,
    .free = memory_free,
};

static uint64_t memory_seed(void)
{
    struct timespec ts;
    uint64_t seed;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed) && seed != 0)
        return seed;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return seed ? seed : 0x9e3779b97f4a7c15ULL;
}

struct storage *storage_memory_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen)
{
    struct memory_storage *ms = calloc(1, sizeof(*ms));

    if (!ms)
        goto fail;
    ms->base.ops = &memory_ops;
    ms->evbase = base;
    ms->tail = &ms->head;
    ms->peer_ttl_s = cfg->peer_ttl_s > 0 ? cfg->peer_ttl_s : 2 * cfg->interval_s;
    ms->numwant_max = cfg->numwant_max > 0 ? (unsigned)cfg->numwant_max : 200;
    ms->hash_seed = memory_seed();
    ms->rng = memory_seed();
    ms->nbuckets = MEMORY_BUCKETS_MIN;
    ms->buckets = calloc(ms->nbuckets, sizeof(*ms->buckets));
    if (!ms->buckets)
        goto fail_ms;
    ms->dispatch_ev = evtimer_new(base, memory_dispatch, ms);
    if (!ms->dispatch_ev)
        goto fail_buckets;
    return &ms->base;

fail_buckets:
    free(ms->buckets);
fail_ms:
    free(ms);
fail:
    snprintf(err, errlen, "memory storage: out of memory");
    return NULL;
}
