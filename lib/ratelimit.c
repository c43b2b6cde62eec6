/* Per-address counters in shared memory (lib/ratelimit.h). A place is one 64-bit word,
 *   tag (32 bits: the rest of the address's hash) | window (16 bits) | units (16 bits: an
 *   announce is 1, a scrape its hash count; never above the limit),
 * changed only by compare-and-swap, so workers need no lock. An address may live in one of two
 * places (two hashes); a newcomer takes a place that is empty or belongs to an older window, and
 * evicts the first place's owner only when both are busy in the current window. */
#include "lib/ratelimit.h"

#include <stddef.h>
#include <sys/mman.h>

#include "lib/addrkey.h"

#define RATELIMIT_CAS_TRIES 8

struct ratelimit {
    size_t map_len;
    uint64_t mask;            /* places - 1 */
    uint64_t key[2];          /* hash key: nobody outside can aim two addresses at one place */
    uint64_t place[];
};

struct ratelimit *ratelimit_new(unsigned order)
{
    if (order < 4 || order > 24)
        return NULL;
    size_t places = (size_t)1 << order;
    size_t len = offsetof(struct ratelimit, place) + places * sizeof(uint64_t);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct ratelimit *rl = p;           /* mmap gives zeroed pages: every place empty */
    rl->map_len = len;
    rl->mask = places - 1;
    addrkey_seed(rl->key);
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl)
        munmap(rl, rl->map_len);
}

/* A keyed hash of the address, counted as lib/addrkey.h says (IPv6 by its /64); each kind of
 * budget hashes apart (kind 0 keeps the original hash). */
static uint64_t ratelimit_hash(const struct ratelimit *rl, enum ratelimit_kind kind, const struct peer_addr *addr)
{
    return addrkey_mix(addrkey_hash(addr, rl->key[0]) + rl->key[1] + (uint64_t)kind * 0x9e3779b97f4a7c15ull);
}

static uint64_t ratelimit_word(uint32_t tag, uint16_t window, uint16_t count)
{
    return (uint64_t)tag << 32 | (uint64_t)window << 16 | count;
}

bool ratelimit_allow(struct ratelimit *rl, const struct peer_addr *addr, int64_t now_s, unsigned limit,
                     unsigned window_s, unsigned cost)
{
    return ratelimit_allow_kind(rl, RATELIMIT_ANNOUNCES, addr, now_s, limit, window_s, cost);
}

bool ratelimit_would_allow(struct ratelimit *rl, enum ratelimit_kind kind, const struct peer_addr *addr,
                           int64_t now_s, unsigned limit, unsigned window_s)
{
    if (limit == 0 || window_s == 0 || now_s < 0)
        return true;
    if (limit > RATELIMIT_MAX_LIMIT)
        limit = RATELIMIT_MAX_LIMIT;
    uint64_t h = ratelimit_hash(rl, kind, addr);
    uint32_t tag = (uint32_t)(h >> 32) | 1;
    uint16_t window = (uint16_t)((uint64_t)now_s / window_s);
    uint64_t w[2] = {
        __atomic_load_n(&rl->place[h & rl->mask], __ATOMIC_ACQUIRE),
        __atomic_load_n(&rl->place[(h >> 16 ^ h >> 40) & rl->mask], __ATOMIC_ACQUIRE),
    };
    for (int i = 0; i < 2; i++)
        if ((uint32_t)(w[i] >> 32) == tag && (uint16_t)(w[i] >> 16) == window && (uint16_t)w[i] + 1u > limit)
            return false;
    return true;
}

bool ratelimit_allow_kind(struct ratelimit *rl, enum ratelimit_kind kind, const struct peer_addr *addr,
                          int64_t now_s, unsigned limit, unsigned window_s, unsigned cost)
{
    if (limit == 0 || window_s == 0 || now_s < 0)
        return true;
    if (limit > RATELIMIT_MAX_LIMIT)
        limit = RATELIMIT_MAX_LIMIT;
    if (cost == 0)
        cost = 1;
    if (cost > limit)
        cost = limit;
    uint64_t h = ratelimit_hash(rl, kind, addr);
    uint32_t tag = (uint32_t)(h >> 32) | 1;   /* never 0: a zero word is an empty place */
    uint16_t window = (uint16_t)((uint64_t)now_s / window_s);
    uint64_t *places[2] = {
        &rl->place[h & rl->mask],
        &rl->place[(h >> 16 ^ h >> 40) & rl->mask],
    };

    for (int tries = 0; tries < RATELIMIT_CAS_TRIES; tries++) {
        uint64_t old[2], *target = NULL, next = 0;
        for (int i = 0; i < 2; i++)
            old[i] = __atomic_load_n(places[i], __ATOMIC_ACQUIRE);
        int i;
        for (i = 0; i < 2; i++)
            if ((uint32_t)(old[i] >> 32) == tag)
                break;
        if (i < 2) {
            /* Known address: count in its window, or start the new window. Counts stay at most
             * limit (<= RATELIMIT_MAX_LIMIT), so the 16 bits never overflow. */
            unsigned count = (uint16_t)old[i];
            if ((uint16_t)(old[i] >> 16) != window)
                count = 0;
            if (count + cost > limit)
                return false;
            target = places[i];
            next = ratelimit_word(tag, window, (uint16_t)(count + cost));
            if (__atomic_compare_exchange_n(target, &old[i], next, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return true;
            continue;
        }
        /* Newcomer: an empty or stale place, else evict the first one. */
        for (i = 0; i < 2; i++)
            if (old[i] == 0 || (uint16_t)(old[i] >> 16) != window)
                break;
        if (i == 2)
            i = 0;
        next = ratelimit_word(tag, window, (uint16_t)cost);
        if (__atomic_compare_exchange_n(places[i], &old[i], next, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return true;             /* cost <= limit */
    }
    return true; /* contended past all retries: let it through rather than spin */
}
