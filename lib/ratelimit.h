/* Per-address announce and scrape rate limiting, shared by the workers of one host: a table in shared
 * memory mapped by the master before fork, updated with atomic compare-and-swap, so a client is
 * counted once whichever worker its connections land on. Each address (an IPv6 client by its
 * /64, which one subscriber usually holds whole) has a counter for the current fixed window of
 * window_s seconds. The table is a cache: when two addresses compete for a place, one of them
 * is forgotten and starts again from zero, so a collision can make the limit more lenient,
 * never stricter. Hosts behind one load balancer count separately. */
#ifndef TYTO_RATELIMIT_H
#define TYTO_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/announce.h"

#define RATELIMIT_MAX_LIMIT 65535 /* counters saturate here */

struct ratelimit;

/* Maps a table of 2^order places (shared, anonymous) with a random hash key. NULL on failure. */
struct ratelimit *ratelimit_new(unsigned order);
void ratelimit_free(struct ratelimit *rl);

/* Charges cost units (an announce 1, a scrape its hash count) to addr at now_s. Returns true,
 * and counts them, if addr's units in the current window of window_s seconds stay at most limit
 * (1..RATELIMIT_MAX_LIMIT); otherwise returns false and counts nothing, so a refused scrape does
 * not also use up the announces that still fit. A cost above limit is charged as limit: such a
 * scrape passes only as the window's first request. Cost 0 counts as 1; limit 0 means no limit,
 * and nothing is counted. */
bool ratelimit_allow(struct ratelimit *rl, const struct peer_addr *addr, int64_t now_s, unsigned limit,
                     unsigned window_s, unsigned cost);

#endif
