/* The in-process storage backend (workers: 1): swarms in a chained hash table keyed by info_hash.
 * It follows the swarm rules of storage/swarm_policy.h, as the Redis backend does, so that either
 * can serve the contract tests (tests/storage/test_contract.c). Per swarm, each peer is one node
 * in three structures, so that an announce costs O(1) whatever the swarm's size:
 *   - a hash index by compact address (keyed hashing: clients choose addresses), for lookups;
 *   - its role's array (seeders or leechers), for uniform sampling by position;
 *   - a list in expiry order, oldest first, so reaping pops expired peers from the front.
 * A swarm with no peer stays as a record of its completed count while swarm.downloaded_ttl_s
 * keeps it (Redis: the info hash). State changes happen in the call; the answer is queued and
 * delivered from the event loop, so a callback never runs before the call returns. There is no
 * background reaper: expired peers go when their swarm is touched, and each announce also sweeps
 * one hash bucket. */
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
#include "storage/swarm_policy.h"

#define MEMORY_BUCKETS_MIN 64
#define MEMORY_INDEX_MIN 8

struct memory_peer {
    struct memory_peer *hnext;         /* index chain */
    struct memory_peer *older, *newer; /* expiry order */
    int64_t expiry_s;                  /* unix seconds; alive while > now */
    uint32_t pos;                      /* position in its role's array */
    uint8_t role;                      /* enum swarm_role */
    uint8_t len;                       /* 6 or 18 */
    uint8_t addr[REDIS_KEYS_PEER_MAX]; /* compact form */
};

struct memory_set {
    struct memory_peer **v;
    size_t count, cap;
};

struct memory_swarm {
    struct memory_swarm *next;         /* bucket chain */
    uint8_t info_hash[ANNOUNCE_HASH_LEN];
    uint32_t downloaded;
    int64_t last_announce_s;           /* for swarm.downloaded_ttl_s */
    struct memory_set sets[2];         /* by enum swarm_role */
    struct memory_peer *oldest, *newest;
    struct memory_peer **index;        /* index_n chains (a power of two), or NULL */
    size_t index_n;
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
    struct swarm_policy policy;
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

static uint64_t memory_hash(uint64_t seed, const uint8_t *p, size_t len)
{
    uint64_t h = seed;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 31;
    h *= 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    return h;
}

static size_t memory_bucket(const struct memory_storage *ms, const uint8_t *info_hash)
{
    return (size_t)memory_hash(ms->hash_seed, info_hash, ANNOUNCE_HASH_LEN) & (ms->nbuckets - 1);
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
    struct memory_peer *p, *next;

    for (p = sw->oldest; p; p = next) {
        next = p->newer;
        free(p);
    }
    free(sw->sets[0].v);
    free(sw->sets[1].v);
    free(sw->index);
    free(sw);
}

static size_t memory_peers(const struct memory_swarm *sw)
{
    return sw->sets[SWARM_ROLE_LEECHER].count + sw->sets[SWARM_ROLE_SEEDER].count;
}

/* Whether sw is only a record that nobody needs any more. */
static bool memory_swarm_idle(const struct memory_storage *ms, const struct memory_swarm *sw, int64_t now_s)
{
    return memory_peers(sw) == 0 &&
           swarm_policy_downloaded(&ms->policy, sw->downloaded, sw->last_announce_s, now_s) == 0;
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

/* ---- one swarm's peers ------------------------------------------------------------------- */

static struct memory_peer **memory_chain(const struct memory_storage *ms, const struct memory_swarm *sw,
                                         const uint8_t *addr, size_t len)
{
    return &sw->index[memory_hash(ms->hash_seed, addr, len) & (sw->index_n - 1)];
}

static struct memory_peer *memory_peer_find(const struct memory_storage *ms, const struct memory_swarm *sw,
                                            const uint8_t *addr, size_t len)
{
    struct memory_peer *p;

    if (!sw->index)
        return NULL;
    for (p = *memory_chain(ms, sw, addr, len); p; p = p->hnext)
        if (p->len == len && memcmp(p->addr, addr, len) == 0)
            return p;
    return NULL;
}

/* Doubles the index (or makes the first one). Returns 0, or -1 when out of memory. */
static int memory_index_grow(const struct memory_storage *ms, struct memory_swarm *sw)
{
    size_t n = sw->index_n ? sw->index_n * 2 : MEMORY_INDEX_MIN, i;
    struct memory_peer **old = sw->index, **fresh = calloc(n, sizeof(*fresh));

    if (!fresh)
        return -1;
    sw->index = fresh;
    sw->index_n = n;
    for (i = 0; old && i < n / 2; i++) {
        struct memory_peer *p = old[i], *next;

        for (; p; p = next) {
            struct memory_peer **chain = memory_chain(ms, sw, p->addr, p->len);

            next = p->hnext;
            p->hnext = *chain;
            *chain = p;
        }
    }
    free(old);
    return 0;
}

static int memory_set_push(struct memory_set *set, struct memory_peer *p)
{
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 4;
        struct memory_peer **v = realloc(set->v, cap * sizeof(*v));

        if (!v)
            return -1;
        set->v = v;
        set->cap = cap;
    }
    p->pos = (uint32_t)set->count;
    set->v[set->count++] = p;
    return 0;
}

static void memory_set_swap(struct memory_set *set, size_t i, size_t j)
{
    struct memory_peer *t = set->v[i];

    set->v[i] = set->v[j];
    set->v[j] = t;
    set->v[i]->pos = (uint32_t)i;
    set->v[j]->pos = (uint32_t)j;
}

static void memory_set_remove(struct memory_set *set, struct memory_peer *p)
{
    memory_set_swap(set, p->pos, set->count - 1);
    set->count--;
}

/* Places p in expiry order, searching from the newest end: expiries nearly always grow. */
static void memory_order_insert(struct memory_swarm *sw, struct memory_peer *p)
{
    struct memory_peer *after = sw->newest;

    while (after && after->expiry_s > p->expiry_s)
        after = after->older;
    p->older = after;
    p->newer = after ? after->newer : sw->oldest;
    if (p->newer)
        p->newer->older = p;
    else
        sw->newest = p;
    if (after)
        after->newer = p;
    else
        sw->oldest = p;
}

static void memory_order_remove(struct memory_swarm *sw, struct memory_peer *p)
{
    if (p->older)
        p->older->newer = p->newer;
    else
        sw->oldest = p->newer;
    if (p->newer)
        p->newer->older = p->older;
    else
        sw->newest = p->older;
    p->older = p->newer = NULL;
}

/* Takes p out of all three structures and frees it. */
static void memory_peer_drop(const struct memory_storage *ms, struct memory_swarm *sw, struct memory_peer *p)
{
    struct memory_peer **pp = memory_chain(ms, sw, p->addr, p->len);

    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    memory_set_remove(&sw->sets[p->role], p);
    memory_order_remove(sw, p);
    free(p);
}

/* A new peer in role, expiring at expiry_s. Returns it, or NULL when out of memory (then
 * nothing changed). */
static struct memory_peer *memory_peer_add(const struct memory_storage *ms, struct memory_swarm *sw,
                                           const uint8_t *addr, size_t len, enum swarm_role role,
                                           int64_t expiry_s)
{
    struct memory_peer *p, **chain;

    if (memory_peers(sw) + 1 > sw->index_n && memory_index_grow(ms, sw) < 0 && !sw->index)
        return NULL;                   /* a failed growth keeps the longer chains */
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (memory_set_push(&sw->sets[role], p) < 0) {
        free(p);
        return NULL;
    }
    p->role = (uint8_t)role;
    p->len = (uint8_t)len;
    memcpy(p->addr, addr, len);
    p->expiry_s = expiry_s;
    chain = memory_chain(ms, sw, addr, len);
    p->hnext = *chain;
    *chain = p;
    memory_order_insert(sw, p);
    return p;
}

/* Moves p to role with a new expiry. Returns 0, or -1 when out of memory (then unchanged). */
static int memory_peer_refresh(struct memory_swarm *sw, struct memory_peer *p, enum swarm_role role,
                               int64_t expiry_s)
{
    if (p->role != role) {
        memory_set_remove(&sw->sets[p->role], p);
        if (memory_set_push(&sw->sets[role], p) < 0) {
            memory_set_push(&sw->sets[p->role], p);   /* cannot fail: it just left, room stays */
            return -1;
        }
        p->role = (uint8_t)role;
    }
    memory_order_remove(sw, p);
    p->expiry_s = expiry_s;
    memory_order_insert(sw, p);
    return 0;
}

/* Drops the peers whose expiry is <= now (Redis: ZREMRANGEBYSCORE key -inf now): they are at the
 * front of the expiry order. */
static void memory_reap(const struct memory_storage *ms, struct memory_swarm *sw, int64_t now_s)
{
    while (sw->oldest && !swarm_policy_alive(sw->oldest->expiry_s, now_s))
        memory_peer_drop(ms, sw, sw->oldest);
}

/* Live peers of each role at now, without reaping (scrape is read-only). */
static void memory_alive(const struct memory_swarm *sw, int64_t now_s, uint32_t out[2])
{
    const struct memory_peer *p;

    out[SWARM_ROLE_LEECHER] = (uint32_t)sw->sets[SWARM_ROLE_LEECHER].count;
    out[SWARM_ROLE_SEEDER] = (uint32_t)sw->sets[SWARM_ROLE_SEEDER].count;
    for (p = sw->oldest; p && !swarm_policy_alive(p->expiry_s, now_s); p = p->newer)
        out[p->role]--;
}

static void memory_emit(struct memory_done *d, const struct memory_peer *p)
{
    if (p->len == PEER_COMPACT4_LEN)
        memcpy(d->peers4 + PEER_COMPACT4_LEN * d->peers4_count++, p->addr, PEER_COMPACT4_LEN);
    else
        memcpy(d->peers6 + PEER_COMPACT6_LEN * d->peers6_count++, p->addr, PEER_COMPACT6_LEN);
}

/* Emits up to want uniformly drawn members of set, never self, by a partial Fisher-Yates shuffle
 * of the array itself (order means nothing in a set; positions are kept in step). Returns the
 * number emitted. */
static size_t memory_sample(struct memory_storage *ms, struct memory_set *set, const struct memory_peer *self,
                            size_t want, struct memory_done *d)
{
    size_t n = set->count, i;

    if (self) {                        /* self is in this set */
        /* Park self at the end, outside the range we draw from. */
        memory_set_swap(set, self->pos, n - 1);
        n--;
    }
    if (want > n)
        want = n;
    for (i = 0; i < want; i++) {
        memory_set_swap(set, i, i + memory_random_below(ms, n - i));
        memory_emit(d, set->v[i]);
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

/* Visits one bucket: reaps its swarms and frees those nobody needs any more, so abandoned swarms
 * go away without a reaper. */
static void memory_sweep(struct memory_storage *ms, int64_t now_s)
{
    struct memory_swarm **pp = &ms->buckets[ms->gc_cursor & (ms->nbuckets - 1)];

    ms->gc_cursor = (ms->gc_cursor + 1) & (ms->nbuckets - 1);
    while (*pp) {
        struct memory_swarm *sw = *pp;

        memory_reap(ms, sw, now_s);
        if (memory_swarm_idle(ms, sw, now_s)) {
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
    uint8_t self_addr[REDIS_KEYS_PEER_MAX];
    struct memory_peer *self;
    struct swarm_plan plan;
    struct memory_swarm *sw;
    struct memory_done *d;
    int self_len;

    if (ms->freeing)
        return -1;
    swarm_policy_plan(&ms->policy, req, &plan);
    d = calloc(1, sizeof(*d) + plan.numwant * (PEER_COMPACT4_LEN + PEER_COMPACT6_LEN));
    if (!d)
        return -1;
    d->kind = MEMORY_ANNOUNCE;
    d->announce_cb = cb;
    d->arg = arg;
    d->peers4 = d->buf;
    d->peers6 = d->buf + plan.numwant * PEER_COMPACT4_LEN;
    ms->base.counters.commands++;

    memory_sweep(ms, req->now_s);
    self_len = redis_keys_peer_compact(&req->peer, self_addr);
    if (self_len < 0) {
        d->status = STORAGE_ERR_INTERNAL;
        goto out;
    }
    sw = memory_find(ms, req->info_hash);
    if (!sw && plan.stop)
        goto out;                      /* stopped in an unknown swarm: all zero, nothing kept */
    if (!sw) {
        sw = memory_create(ms, req->info_hash);
        if (!sw) {
            d->status = STORAGE_ERR_FULL;
            goto out;
        }
    }
    memory_reap(ms, sw, req->now_s);
    sw->downloaded = swarm_policy_downloaded(&ms->policy, sw->downloaded, sw->last_announce_s, req->now_s);
    sw->last_announce_s = req->now_s;
    self = memory_peer_find(ms, sw, self_addr, (size_t)self_len);
    if (plan.stop) {
        if (self)
            memory_peer_drop(ms, sw, self);
    } else {
        bool was_leecher = self && self->role == SWARM_ROLE_LEECHER;
        size_t want = plan.numwant;

        if (self ? memory_peer_refresh(sw, self, plan.role, plan.expiry_s) < 0
                 : !(self = memory_peer_add(ms, sw, self_addr, (size_t)self_len, plan.role, plan.expiry_s))) {
            d->status = STORAGE_ERR_FULL;
            goto stats;
        }
        if (swarm_policy_counts_download(&plan, was_leecher))
            sw->downloaded++;
        if (plan.sample_seeders)
            want -= memory_sample(ms, &sw->sets[SWARM_ROLE_SEEDER],
                                  plan.role == SWARM_ROLE_SEEDER ? self : NULL, want, d);
        if (plan.sample_leechers)
            memory_sample(ms, &sw->sets[SWARM_ROLE_LEECHER], plan.role == SWARM_ROLE_LEECHER ? self : NULL,
                          want, d);
    }
stats:
    d->stats.complete = (uint32_t)sw->sets[SWARM_ROLE_SEEDER].count;
    d->stats.incomplete = (uint32_t)sw->sets[SWARM_ROLE_LEECHER].count;
    d->stats.downloaded = sw->downloaded;
    if (memory_swarm_idle(ms, sw, req->now_s))
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
        uint32_t alive[2];

        if (!sw)
            continue;
        memory_alive(sw, req->now_s, alive);
        d->scrape_stats[i].complete = alive[SWARM_ROLE_SEEDER];
        d->scrape_stats[i].incomplete = alive[SWARM_ROLE_LEECHER];
        d->scrape_stats[i].downloaded = swarm_policy_downloaded(&ms->policy, sw->downloaded,
                                                                sw->last_announce_s, req->now_s);
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
    swarm_policy_init(&ms->policy, cfg);
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
