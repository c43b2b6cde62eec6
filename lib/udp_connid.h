/* BEP 15 connection ids that need no shared state: an id is the issue time (32 bits, unix
 * seconds) and a keyed MAC (32 bits of SipHash-2-4, libsodium's crypto_shorthash) of that time
 * and the client's address, not its port (a NAT may move the port between connect and
 * announce). Any worker of any host holding the same secret accepts an id another issued, and a
 * restart does not invalidate them. A previous secret keeps its ids valid during a rotation. */
#ifndef TYTO_UDP_CONNID_H
#define TYTO_UDP_CONNID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/announce.h"

#define UDP_CONNID_KEY_LEN 16
#define UDP_CONNID_SKEW_S 5      /* an issue time this far ahead of our clock: another host's */

struct udp_connid_keys {
    uint8_t cur[UDP_CONNID_KEY_LEN];
    uint8_t prev[UDP_CONNID_KEY_LEN];
    bool has_prev;
};

enum udp_connid_status {
    UDP_CONNID_OK,
    UDP_CONNID_FORGED,           /* the MAC does not match (forged, another address, another secret) */
    UDP_CONNID_EXPIRED,
    UDP_CONNID_FUTURE,           /* issued later than now + UDP_CONNID_SKEW_S */
};

/* Initialises libsodium (once per process) and derives the keys from the secrets (any length,
 * non-empty; prev may be NULL or ""). Returns 0, or -1 if libsodium cannot start. */
int udp_connid_init(struct udp_connid_keys *k, const char *secret, size_t secret_len, const char *prev,
                    size_t prev_len);

uint64_t udp_connid_issue(const struct udp_connid_keys *k, const struct peer_addr *client, int64_t now_s);

enum udp_connid_status udp_connid_check(const struct udp_connid_keys *k, uint64_t id,
                                        const struct peer_addr *client, int64_t now_s, unsigned ttl_s);

#endif
