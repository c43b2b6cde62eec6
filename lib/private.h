/* Private tracker mode (BEP 27, issue 14; the contract: PRIVATE.md): passkey URLs, the per-worker
 * cache of users and torrent rules, and the decision whether an announce or scrape may go on.
 * The worker calls private_check_announce / private_check_scrape between validation and
 * storage; the answer names the user to credit (req->account), or the failure. One lookup round
 * trip on a cache miss (storage_lookup), none on a hit. */
#ifndef TYTO_PRIVATE_H
#define TYTO_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/announce.h"

struct config;
struct storage;
struct ratelimit;
struct private_ctx;

#define PRIVATE_PASSKEY_LEN 32

enum private_route { PRIVATE_ROUTE_NONE, PRIVATE_ROUTE_ANNOUNCE, PRIVATE_ROUTE_SCRAPE };

/* "/<segment>/announce" or "/<segment>/scrape" (segment: 1-64 bytes without '/'): the route, and
 * in passkey the segment when it is a well-formed passkey (32 of [0-9A-Za-z]), else "".
 * Anything else is PRIVATE_ROUTE_NONE. Pure. */
enum private_route private_route(const char *path, size_t len, char passkey[PRIVATE_PASSKEY_LEN + 1]);

/* The same for BEP 41 URL data (UDP announce), a "?query" after the path ignored. */
enum private_route private_udp_route(const char *url, size_t len, char passkey[PRIVATE_PASSKEY_LEN + 1]);

/* The worker's context: cache (private.cache_ms, bounded), storage for lookups, the host's rate
 * limit table for private.unknown_passkey_limit. NULL when out of memory. */
struct private_ctx *private_new(const struct config *cfg, struct storage *st, struct ratelimit *rl);
void private_free(struct private_ctx *p);

/* Called exactly once with ANNOUNCE_OK or the failure; synchronously on a cache hit or an
 * immediate refusal, later after a lookup. */
typedef void private_done_cb(enum announce_err err, void *arg);

/* passkey: NULL for a public URL (/announce), "" for a malformed one, else the passkey. On
 * ANNOUNCE_OK req->account holds the user and the multipliers. req must live until
 * done runs. */
void private_check_announce(struct private_ctx *p, const char *passkey, const struct peer_addr *client,
                            struct announce_req *req, private_done_cb *done, void *arg);

/* A scrape needs a valid, enabled, unexpired user. */
void private_check_scrape(struct private_ctx *p, const char *passkey, const struct peer_addr *client,
                          int64_t now_s, private_done_cb *done, void *arg);

#endif
