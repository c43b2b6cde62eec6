/* Pure builders for the Redis schema (docs/architecture.md "Redis schema"): the key names of a swarm, the
 * text member that names a peer ("a.b.c.d:port" or "[v6]:port"), and the way back from a member
 * to the compact bytes a reply carries. No I/O, no clock; storage/redis.c and storage/memory.c
 * use them, and so can tools that read the keys. */
#ifndef TYTO_REDIS_KEYS_H
#define TYTO_REDIS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/announce.h"

#define REDIS_KEYS_MEMBER_MAX 64       /* "[" + 45-char IPv6 text + "]:" + 5 digits + NUL fits */
#define REDIS_KEYS_PEER_MAX PEER_COMPACT6_LEN

enum redis_keys_kind {
    REDIS_KEYS_SEEDERS,                /* sorted set, member -> expiry (unix seconds) */
    REDIS_KEYS_LEECHERS,               /* the same for peers with left > 0 */
    REDIS_KEYS_INFO,                   /* hash: downloaded */
    REDIS_KEYS_STATS,                  /* hash: the swarm's statistics (README "Statistics") */
    REDIS_KEYS_UPLOADS,                /* hash: member -> "uploaded:unix s" of seeders heard while
                                        * the swarm had no leecher (phantom-upload rule) */
};

/* Writes "<prefix>{<40 lowercase hex>}:seeders|:leechers|:info" into dst (NUL-terminated).
 * Returns the length without the NUL, or -1 if it does not fit in cap bytes. */
int redis_keys_swarm(char *dst, size_t cap, const char *prefix,
                     const uint8_t info_hash[ANNOUNCE_HASH_LEN], enum redis_keys_kind kind);

/* The seeders', leechers' and info keys of one swarm at once, each in cap bytes: the same text
 * as three redis_keys_swarm calls, with the hex written once (a scrape of ten hashes builds 30
 * keys). Returns 0, or -1 if one does not fit. */
int redis_keys_swarm3(char *seeders, char *leechers, char *info, size_t cap, const char *prefix,
                      const uint8_t info_hash[ANNOUNCE_HASH_LEN]);

/* Writes v in decimal ("-12", "1733480000") into dst, NUL-terminated; dst has room for 21 bytes.
 * Returns the length. snprintf did this for every command argument at 3-9 % of a worker's
 * instructions (bench/RESULTS.md). */
size_t redis_keys_i64(char *dst, int64_t v);

/* Writes the member text of peer ("1.2.3.4:6881", "[2001:db8::1]:6881") into dst. An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is written as IPv4, so a dual-stack socket's peers land in
 * "peers". Returns the length without the NUL, or -1 (unknown family, cap too small). */
int redis_keys_member(char *dst, size_t cap, const struct peer_addr *peer);

/* The compact form of peer (BEP 23 / BEP 7: address then port, network order), with the same
 * IPv4-mapped rule as redis_keys_member. Returns 6 or 18, or -1 for an unknown family. */
int redis_keys_peer_compact(const struct peer_addr *peer, uint8_t out[REDIS_KEYS_PEER_MAX]);

/* Parses a member (len bytes, not NUL-terminated) back into compact bytes. Strict: exactly the
 * forms redis_keys_member writes (port 0..65535 in decimal without leading zeros, IPv6 as
 * inet_ntop writes it, never IPv4-mapped). Returns 6 or 18, or -1 if member is not one. */
int redis_keys_member_compact(const char *member, size_t len, uint8_t out[REDIS_KEYS_PEER_MAX]);

#endif
