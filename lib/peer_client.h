/* Which BitTorrent client a peer_id names (the conventions of BEP 20 and the clients' own:
 * Azureus style "-qB4650-", Shadow style "S58B-----", Mainline "M7-2-0--", and the odd ones).
 * Pure: no I/O, no allocation. The short code is what the statistics keep in Redis (one hash
 * field a client in a swarm), so the set of codes is small, fixed, and safe as a Redis field. */
#ifndef TYTO_PEER_CLIENT_H
#define TYTO_PEER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define PEER_CLIENT_CODE_MAX 16      /* longest code, with its NUL */
#define PEER_CLIENT_VERSION_MAX 24

struct peer_client {
    const char *code;                /* "qbittorrent", "transmission", "libtorrent", ... "other" */
    const char *name;                /* "qBittorrent", "Transmission", "libtorrent (Rasterbar)" ... "Other" */
    char version[PEER_CLIENT_VERSION_MAX]; /* "4.6.5", "" when the id carries none */
};

/* Classifies the 20-byte peer_id. Never fails: an unknown id gives code "other". */
void peer_client_identify(const uint8_t peer_id[20], struct peer_client *out);

/* The display name for a code ("qbittorrent" -> "qBittorrent"); NULL if it is not a known code. */
const char *peer_client_name(const char *code, size_t len);

#endif
