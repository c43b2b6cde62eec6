/* The per-address cap of peers per swarm (swarm.max_peers_per_address): one client address (an
 * IPv6 client by its /64, as the rate limit counts it) may hold at most cap ports in one swarm,
 * so that one address cannot fill Redis with 65,535 ports in any number of swarms. Counting
 * exactly in Redis would need a (swarm, address) index costing memory per peer; instead each
 * host keeps a table in shared memory, mapped by the master before fork and shared by its
 * workers (like lib/ratelimit.c), of the ports it saw per (address, swarm) in the last
 * peer_ttl_s seconds. Hosts behind one load balancer count apart: N hosts allow up to N x cap.
 *
 * The table is a cache of fixed size: buckets of PEERCAP_BUCKET_ITEMS (address, swarm, port)
 * items, a (address, swarm) pair's items all in one bucket chosen by a keyed hash, each bucket
 * behind a tiny spin lock. What that gives:
 *   - an address with fewer than cap live ports in a swarm is never refused, and a port seen in
 *     the last peer_ttl_s is never refused (it is found, its time refreshed); the one exception
 *     is a tag collision: two pairs in one bucket with the same 24-bit tag share one count
 *     (about bucket items / 2^24, so under 4 in a million pairs);
 *   - counting is exact while a bucket has room: cap + 1 ports of one pair are never all
 *     admitted, whichever workers take them;
 *   - when a bucket is full of live items, a newcomer replaces another pair's item seen longest
 *     ago. The pair that loses it is undercounted by one, so the cap can only get more lenient: a pair
 *     holds at most cap + (its items evicted in the last peer_ttl_s) ports in Redis. With the
 *     master's table (2^20 words, 8 MiB, about 1M items) buckets stay far from full below
 *     ~500,000 live peers per host;
 *   - event=stopped forgets the port, as Redis does. */
#ifndef TYTO_PEERCAP_H
#define TYTO_PEERCAP_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/announce.h"

#define PEERCAP_BUCKET_ITEMS 63  /* a bucket is 64 words: its lock and 63 items (512 bytes) */
#define PEERCAP_MAX_CAP 32       /* largest cap: half a bucket, so other pairs keep room */

struct peercap;

/* Maps a shared anonymous table of 2^order 64-bit words (order 10..26) with a random hash key.
 * NULL on failure. */
struct peercap *peercap_new(unsigned order);
void peercap_free(struct peercap *pc);

/* Decides whether addr may announce port in the swarm info_hash at now_s: true if the port is
 * known (seen in the last ttl_s seconds; its time is refreshed) or the pair holds fewer than cap
 * live ports (the port is recorded). stopped: the port is forgotten if known, and the announce is
 * always let through (it only removes a peer). cap 0 means no cap, and nothing is recorded; cap
 * above PEERCAP_MAX_CAP counts as PEERCAP_MAX_CAP. ttl_s is 1..2^24-1 (peer_ttl_s). */
bool peercap_admit(struct peercap *pc, const struct peer_addr *addr, const uint8_t *info_hash, uint16_t port,
                   bool stopped, int64_t now_s, unsigned ttl_s, unsigned cap);

/* Live ports the table holds for (addr, info_hash) at now_s: for tests and diagnostics. */
unsigned peercap_count(struct peercap *pc, const struct peer_addr *addr, const uint8_t *info_hash, int64_t now_s,
                       unsigned ttl_s);

#endif
