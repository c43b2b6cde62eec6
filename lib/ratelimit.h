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

/* Other budgets in the same table: each kind counts apart from the others (its own hash), with
 * the same rules. RATELIMIT_ANNOUNCES is what ratelimit_allow() charges. */
enum ratelimit_kind { RATELIMIT_ANNOUNCES = 0, RATELIMIT_UNKNOWN_PASSKEYS = 1 };

bool ratelimit_allow_kind(struct ratelimit *rl, enum ratelimit_kind kind, const struct peer_addr *addr,
                          int64_t now_s, unsigned limit, unsigned window_s, unsigned cost);

/* True when one more unit would still be allowed, counting nothing: a check before work whose
 * outcome decides whether to charge (an unknown passkey is charged only once Redis said so). */
bool ratelimit_would_allow(struct ratelimit *rl, enum ratelimit_kind kind, const struct peer_addr *addr,
                           int64_t now_s, unsigned limit, unsigned window_s);

#endif
