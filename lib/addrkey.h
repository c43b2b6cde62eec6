/* The key a client address is counted by, for the per-host shared tables (lib/ratelimit.c,
 * lib/peercap.c): an IPv4 address whole, an IPv6 address by its /64 (which one subscriber
 * usually holds whole), hashed with a per-table random key so that nobody outside can aim
 * addresses at one place. One function for both tables, so they always count a client alike. */
#ifndef TYTO_ADDRKEY_H
#define TYTO_ADDRKEY_H

#include <stdint.h>

#include "lib/announce.h"

/* Fills key with random words (getrandom); with no entropy yet (early boot), from the clock
 * and pid, which a remote client still cannot guess in advance. */
void addrkey_seed(uint64_t key[2]);

/* The splitmix64 finaliser: every input bit moves every output bit. */
static inline uint64_t addrkey_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* The first round of a table's keyed hash: addr's counting key (IPv4 whole, IPv6 by its first
 * 64 bits, the family folded in so the two never meet) mixed with key. A table mixes in its
 * second key word and whatever else it counts by (peercap: the swarm). */
uint64_t addrkey_hash(const struct peer_addr *addr, uint64_t key);

#endif
