/* Per-(address, swarm) port sets in shared memory (lib/peercap.h). The table is an array of
 * 512-byte buckets: word 0 a spin lock, then PEERCAP_BUCKET_ITEMS items, each one 64-bit word
 *   tag (24 bits: the pair's hash, apart from the bits that chose the bucket) | port (16) |
 *   seen (24: unix seconds mod 2^24, ~194 days; ages are taken mod 2^24, peer_ttl_s < 2^24),
 * 0 for an empty place. One announce locks one bucket, reads its 63 words and writes one: O(1),
 * no allocation, no system call. The lock is held for those few hundred nanoseconds only; a
 * worker killed while holding it would stop every announce that hashes there, so a lock older
 * than PEERCAP_STALE_MS is taken over (the worst a wrongly taken-over lock can do is miscount
 * one pair, never touch memory outside the table). */
#include "lib/peercap.h"

#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "lib/addrkey.h"

#define PEERCAP_STALE_MS 1000    /* a lock held this long belongs to a dead or stopped worker */
#define PEERCAP_SPINS 64         /* failed tries between sched_yield() and a look at the clock */
#define PEERCAP_MASK24 0xffffffu
#define PEERCAP_SKEW_S 300       /* an item up to this far in the future is fresh, not expired */

struct peercap_bucket {
    uint64_t lock;               /* 0 free, else the holder's CLOCK_MONOTONIC_COARSE ms + 1 */
    uint64_t item[PEERCAP_BUCKET_ITEMS];
};

_Static_assert(sizeof(struct peercap_bucket) == 512, "a bucket is 64 words");
_Static_assert(PEERCAP_MAX_CAP < PEERCAP_BUCKET_ITEMS, "a pair at the cap leaves room in its bucket");

struct peercap {
    size_t map_len;
    uint64_t mask;               /* buckets - 1 */
    uint64_t key[2];             /* hash key: nobody outside can aim pairs at one bucket */
    struct peercap_bucket *bucket;
};

/* The header takes the first bucket's place, so buckets stay 512-byte aligned in the mapping. */
_Static_assert(sizeof(struct peercap) <= sizeof(struct peercap_bucket), "header fits in one bucket");

struct peercap *peercap_new(unsigned order)
{
    if (order < 10 || order > 26)
        return NULL;
    size_t buckets = (size_t)1 << (order - 6);
    size_t len = (buckets + 1) * sizeof(struct peercap_bucket);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct peercap *pc = p;      /* zeroed pages: every lock free, every place empty */
    pc->map_len = len;
    pc->mask = buckets - 1;
    pc->bucket = (struct peercap_bucket *)p + 1;
    addrkey_seed(pc->key);
    return pc;
}

void peercap_free(struct peercap *pc)
{
    if (pc)
        munmap(pc, pc->map_len);
}

/* A keyed hash of (address, info_hash), the address counted as lib/addrkey.h says (IPv6 by its
 * /64, as the rate limit counts it). */
static uint64_t peercap_hash(const struct peercap *pc, const struct peer_addr *addr, const uint8_t *info_hash)
{
    uint64_t ih[3] = { 0, 0, 0 };
    memcpy(ih, info_hash, ANNOUNCE_HASH_LEN);
    uint64_t h = addrkey_hash(addr, pc->key[0]);
    h = addrkey_mix(h + (ih[0] ^ pc->key[1]));
    h = addrkey_mix(h + ih[1]);
    return addrkey_mix(h + (ih[2] ^ pc->key[0]));
}

static uint64_t peercap_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Returns the value it locked with, for peercap_unlock. */
static uint64_t peercap_lock(struct peercap_bucket *b)
{
    uint64_t mine = peercap_ms() + 1;
    for (unsigned spins = 1;; spins++) {
        uint64_t cur = 0;
        if (__atomic_compare_exchange_n(&b->lock, &cur, mine, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return mine;
        if (spins % PEERCAP_SPINS)
            continue;
        sched_yield();           /* the holder may be waiting for this core */
        uint64_t now = peercap_ms();
        mine = now + 1;
        if (cur != 0 && now >= cur - 1 + PEERCAP_STALE_MS &&
            __atomic_compare_exchange_n(&b->lock, &cur, mine, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return mine;         /* taken over from a holder that died or was stopped */
    }
}

/* Frees the lock only if it is still ours: a holder that was stopped past PEERCAP_STALE_MS and
 * resumes must not free the lock of the worker that took it over. */
static void peercap_unlock(struct peercap_bucket *b, uint64_t mine)
{
    __atomic_compare_exchange_n(&b->lock, &mine, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

static uint32_t peercap_item_tag(uint64_t it)
{
    return (uint32_t)(it >> 40);
}

static uint16_t peercap_item_port(uint64_t it)
{
    return (uint16_t)(it >> 24);
}

/* How long ago the item was seen, in seconds mod 2^24. Each worker reads the time once per loop
 * iteration, so another worker may have written an item a second "after" now (or the clock was
 * stepped back): such an item is fresh, not 2^24 - 1 seconds old. */
static uint32_t peercap_item_age(uint64_t it, uint32_t now24)
{
    uint32_t age = (now24 - (uint32_t)it) & PEERCAP_MASK24;
    return age > PEERCAP_MASK24 - PEERCAP_SKEW_S ? 0 : age;
}

static uint64_t peercap_item(uint32_t tag, uint16_t port, uint32_t now24)
{
    return (uint64_t)tag << 40 | (uint64_t)port << 24 | now24;
}

/* Finds the pair's bucket and tag (never 0: a zero word is an empty place). */
static struct peercap_bucket *peercap_place(struct peercap *pc, const struct peer_addr *addr, const uint8_t *info_hash,
                                            uint32_t *tag)
{
    uint64_t h = peercap_hash(pc, addr, info_hash);
    *tag = (uint32_t)(h >> 40);
    if (*tag == 0)
        *tag = 1;
    return &pc->bucket[h & pc->mask];
}

bool peercap_admit(struct peercap *pc, const struct peer_addr *addr, const uint8_t *info_hash, uint16_t port,
                   bool stopped, int64_t now_s, unsigned ttl_s, unsigned cap)
{
    if (cap == 0 || ttl_s == 0 || now_s < 0)
        return true;
    if (cap > PEERCAP_MAX_CAP)
        cap = PEERCAP_MAX_CAP;
    if (ttl_s > PEERCAP_MASK24)
        ttl_s = PEERCAP_MASK24;
    uint32_t tag, now24 = (uint32_t)((uint64_t)now_s & PEERCAP_MASK24);
    struct peercap_bucket *b = peercap_place(pc, addr, info_hash, &tag);
    int found = -1, empty = -1, victim = -1, any_oldest = -1;
    uint32_t victim_age = 0, any_age = 0;
    unsigned count = 0;
    bool allowed = true;
    uint64_t lock = peercap_lock(b);
    for (int i = 0; i < PEERCAP_BUCKET_ITEMS; i++) {
        uint64_t it = __atomic_load_n(&b->item[i], __ATOMIC_RELAXED);
        if (it == 0) {
            if (empty < 0)
                empty = i;
            continue;
        }
        uint32_t age = peercap_item_age(it, now24);
        if (age >= ttl_s) {
            /* Expired, as the peer in Redis has: the place is free again. */
            __atomic_store_n(&b->item[i], 0, __ATOMIC_RELAXED);
            if (empty < 0)
                empty = i;
            continue;
        }
        if (peercap_item_tag(it) == tag) {
            count++;
            if (peercap_item_port(it) == port)
                found = i;
        } else if (victim < 0 || age > victim_age) {
            victim = i;
            victim_age = age;
        }
        if (any_oldest < 0 || age > any_age) {
            any_oldest = i;
            any_age = age;
        }
    }
    if (found >= 0) {
        __atomic_store_n(&b->item[found], stopped ? 0 : peercap_item(tag, port, now24), __ATOMIC_RELAXED);
    } else if (stopped) {
        /* Nothing to forget; the announce only removes a peer. */
    } else if (count >= cap) {
        allowed = false;
    } else {
        /* A free place, else the item of another pair seen longest ago (that pair is then
         * undercounted by one: lenient, never stricter). */
        int at = empty >= 0 ? empty : victim >= 0 ? victim : any_oldest;
        if (at >= 0)
            __atomic_store_n(&b->item[at], peercap_item(tag, port, now24), __ATOMIC_RELAXED);
    }
    peercap_unlock(b, lock);
    return allowed;
}

unsigned peercap_count(struct peercap *pc, const struct peer_addr *addr, const uint8_t *info_hash, int64_t now_s,
                       unsigned ttl_s)
{
    uint32_t tag, now24 = (uint32_t)((uint64_t)now_s & PEERCAP_MASK24);
    struct peercap_bucket *b = peercap_place(pc, addr, info_hash, &tag);
    unsigned count = 0;
    uint64_t lock = peercap_lock(b);

    for (int i = 0; i < PEERCAP_BUCKET_ITEMS; i++) {
        uint64_t it = __atomic_load_n(&b->item[i], __ATOMIC_RELAXED);
        if (it != 0 && peercap_item_tag(it) == tag && peercap_item_age(it, now24) < ttl_s)
            count++;
    }
    peercap_unlock(b, lock);
    return count;
}
