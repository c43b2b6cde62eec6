/* The real client address behind reverse proxies. A worker starts from the TCP peer; when that
 * peer is a trusted proxy (config proxy.trusted), the PROXY protocol source, X-Forwarded-For or
 * X-Real-IP may name the client instead. Headers from anyone else are ignored, so a client can
 * never announce an address other than its own. Pure: no I/O, no allocation. */
#ifndef TYTO_CLIENTIP_H
#define TYTO_CLIENTIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/announce.h"
#include "lib/config.h"

#define CLIENTIP_ENTRY_MAX 64          /* longest forwarded entry accepted: "[v6]:port" fits */

/* One trusted block: addr has its host bits cleared. IPv4-mapped IPv6 blocks (::ffff:0:0/96 and
 * longer) are stored as IPv4, as addresses are. */
struct clientip_net {
    int family;                        /* AF_INET or AF_INET6 */
    uint8_t addr[16];                  /* 4 or 16 bytes used, network order */
    unsigned prefix;                   /* 0..32 or 0..128 */
};

struct clientip_trust {
    unsigned count;
    struct clientip_net nets[CONFIG_MAX_TRUSTED];
};

/* Fills t from cfg->proxy_trusted ("a.b.c.d", "a.b.c.d/n", "v6", "v6/n"). Returns 0, or -1 with
 * "proxy.trusted: entry 'x' is not an IPv4/IPv6 address or CIDR block" in err. */
int clientip_trust_init(struct clientip_trust *t, const struct config *cfg, char *err, size_t errlen);

/* Parses one block (len bytes, not NUL-terminated) into *net, host bits masked. 0 or -1. */
int clientip_parse_net(const char *s, size_t len, struct clientip_net *net);

/* Whether the socket address sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address is matched as
 * IPv4) lies in a trusted block. Any other family, or NULL, is not trusted. */
bool clientip_is_trusted(const struct clientip_trust *t, const struct sockaddr *sa);

/* The same for an address already in peer_addr form (port ignored). */
bool clientip_addr_is_trusted(const struct clientip_trust *t, const struct peer_addr *a);

/* Converts a socket address to a peer_addr with port 0 (IPv4-mapped IPv6 becomes IPv4).
 * Returns 0, or -1 for NULL or a family other than AF_INET / AF_INET6. */
int clientip_from_sockaddr(const struct sockaddr *sa, struct peer_addr *out);

/* Parses one forwarded entry (len bytes, no surrounding spaces): "a.b.c.d", "a.b.c.d:port",
 * "v6", "[v6]", "[v6]:port". The port is checked and dropped (out->port is 0); IPv4-mapped
 * IPv6 becomes IPv4. Returns 0, or -1 if it is none of these. */
int clientip_parse_entry(const char *s, size_t len, struct peer_addr *out);

/* Decides the client's address (out->port is left 0). From the socket peer: if it is trusted
 * and proxied (the PROXY protocol source) is non-NULL, the proxied address replaces it. Then,
 * while the address is trusted, X-Forwarded-For (xff, xff_len; may be NULL) is walked right to
 * left past trusted entries: the first untrusted entry is the client, or the leftmost if all are
 * trusted. Without X-Forwarded-For (absent or blank), X-Real-IP (xri, xri_len) is used. A
 * malformed entry stops the walk at the last trusted hop. Returns 0, 1 if a header was
 * malformed (out then holds that trusted hop, which is not the client: the worker refuses the
 * request rather than record it under a proxy's address), or -1 if peer is NULL or not
 * AF_INET/AF_INET6. */
int clientip_resolve(const struct clientip_trust *t, const struct sockaddr *peer,
                     const struct sockaddr *proxied, const char *xff, size_t xff_len,
                     const char *xri, size_t xri_len, struct peer_addr *out);

#endif
