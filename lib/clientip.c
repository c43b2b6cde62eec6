/* The real client address behind reverse proxies (docs/architecture.md, "The request path").
 * The worker calls clientip_resolve() once per announce with the socket peer, the PROXY protocol
 * source and the forwarding headers; only a trusted peer's claims are believed. Works on
 * (pointer, length) spans of the request head and never reads past them. */
#include "lib/clientip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* ---- blocks ------------------------------------------------------------------------------ */

/* Clears every bit of addr past the first prefix bits (addr is bytes bytes long). */
static void clientip_mask(uint8_t *addr, size_t bytes, unsigned prefix)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned first = (unsigned)i * 8;
        if (prefix >= first + 8)
            continue;
        if (prefix <= first)
            addr[i] = 0;
        else
            addr[i] &= (uint8_t)(0xff00u >> (prefix - first));
    }
}

static bool clientip_is_mapped(const uint8_t a[16])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    return memcmp(a, mapped, sizeof(mapped)) == 0;
}

/* Parses 1 to 3 decimal digits no larger than max. 0 or -1. */
static int clientip_parse_prefix(const char *s, size_t len, unsigned max, unsigned *out)
{
    unsigned v = 0;

    if (len == 0 || len > 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* inet_pton on a span: the span is copied so that it need not be NUL-terminated, and a NUL
 * inside it is refused rather than silently ending the text. */
static int clientip_pton(int family, const char *s, size_t len, uint8_t *dst)
{
    char buf[INET6_ADDRSTRLEN + 1];

    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(family, buf, dst) == 1 ? 0 : -1;
}

int clientip_parse_net(const char *s, size_t len, struct clientip_net *net)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    uint8_t a[16];
    unsigned prefix;

    memset(net, 0, sizeof(*net));
    if (clientip_pton(AF_INET, s, alen, a) == 0) {
        net->family = AF_INET;
        prefix = 32;
        if (slash && clientip_parse_prefix(slash + 1, len - alen - 1, 32, &prefix) < 0)
            return -1;
        memcpy(net->addr, a, 4);
    } else if (clientip_pton(AF_INET6, s, alen, a) == 0) {
        prefix = 128;
        if (slash && clientip_parse_prefix(slash + 1, len - alen - 1, 128, &prefix) < 0)
            return -1;
        if (prefix >= 96 && clientip_is_mapped(a)) {
            /* Addresses are matched in their IPv4 form, so the block must be too. */
            net->family = AF_INET;
            memcpy(net->addr, a + 12, 4);
            prefix -= 96;
        } else {
            net->family = AF_INET6;
            memcpy(net->addr, a, 16);
        }
    } else {
        return -1;
    }
    net->prefix = prefix;
    clientip_mask(net->addr, net->family == AF_INET ? 4 : 16, prefix);
    return 0;
}

int clientip_trust_init(struct clientip_trust *t, const struct config *cfg, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    if (cfg->proxy_trusted_count < 0 || cfg->proxy_trusted_count > CONFIG_MAX_TRUSTED) {
        if (err && errlen)
            snprintf(err, errlen, "proxy.trusted: %d entries (at most %d)", cfg->proxy_trusted_count,
                     CONFIG_MAX_TRUSTED);
        return -1;
    }
    for (int i = 0; i < cfg->proxy_trusted_count; i++) {
        const char *s = cfg->proxy_trusted[i];
        size_t len = strnlen(s, sizeof(cfg->proxy_trusted[i]));
        if (clientip_parse_net(s, len, &t->nets[t->count]) < 0) {
            if (err && errlen)
                snprintf(err, errlen, "proxy.trusted: entry '%.*s' is not an IPv4/IPv6 address or CIDR block",
                         (int)len, s);
            memset(t, 0, sizeof(*t));
            return -1;
        }
        t->count++;
    }
    return 0;
}

/* ---- addresses --------------------------------------------------------------------------- */

static bool clientip_net_contains(const struct clientip_net *n, const struct peer_addr *a)
{
    uint8_t masked[16];
    size_t bytes = a->family == AF_INET ? 4 : 16;

    if (n->family != a->family)
        return false;
    memcpy(masked, a->addr, bytes);
    clientip_mask(masked, bytes, n->prefix);
    return memcmp(masked, n->addr, bytes) == 0;
}

bool clientip_addr_is_trusted(const struct clientip_trust *t, const struct peer_addr *a)
{
    if (t == NULL || a == NULL || (a->family != AF_INET && a->family != AF_INET6))
        return false;
    for (unsigned i = 0; i < t->count && i < CONFIG_MAX_TRUSTED; i++)
        if (clientip_net_contains(&t->nets[i], a))
            return true;
    return false;
}

int clientip_from_sockaddr(const struct sockaddr *sa, struct peer_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        out->family = AF_INET;
        memcpy(out->addr, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = sin6->sin6_addr.s6_addr;
        if (clientip_is_mapped(a)) {
            out->family = AF_INET;
            memcpy(out->addr, a + 12, 4);
        } else {
            out->family = AF_INET6;
            memcpy(out->addr, a, 16);
        }
        return 0;
    }
    return -1;
}

bool clientip_is_trusted(const struct clientip_trust *t, const struct sockaddr *sa)
{
    struct peer_addr a;

    if (clientip_from_sockaddr(sa, &a) < 0)
        return false;
    return clientip_addr_is_trusted(t, &a);
}

/* A port after "]:" or "v4:": 1 to 5 digits, at most 65535. */
static int clientip_check_port(const char *s, size_t len)
{
    unsigned v = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535 ? 0 : -1;
}

int clientip_parse_entry(const char *s, size_t len, struct peer_addr *out)
{
    const char *host = s, *port = NULL;
    size_t host_len = len, port_len = 0;
    int family;
    uint8_t a[16];

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > CLIENTIP_ENTRY_MAX)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return -1;
        host = s + 1;
        host_len = (size_t)(close - host);
        size_t rest = len - (size_t)(close - s) - 1;
        if (rest > 0) {
            if (close[1] != ':')
                return -1;
            port = close + 2;
            port_len = rest - 1;
        }
        family = AF_INET6;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon == NULL) {
            family = AF_INET;
        } else if (memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) == NULL) {
            /* Exactly one colon: "a.b.c.d:port" (an IPv6 literal has at least two). */
            family = AF_INET;
            host_len = (size_t)(colon - s);
            port = colon + 1;
            port_len = len - host_len - 1;
        } else {
            family = AF_INET6;
        }
    }
    if (port != NULL && clientip_check_port(port, port_len) < 0)
        return -1;
    if (clientip_pton(family, host, host_len, a) < 0)
        return -1;
    if (family == AF_INET6 && !clientip_is_mapped(a)) {
        out->family = AF_INET6;
        memcpy(out->addr, a, 16);
    } else {
        out->family = AF_INET;
        memcpy(out->addr, family == AF_INET6 ? a + 12 : a, 4);
    }
    return 0;
}

/* ---- forwarding headers ------------------------------------------------------------------ */

static bool clientip_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims optional white space off both ends of [*start, *end). */
static void clientip_trim(const char *s, size_t *start, size_t *end)
{
    while (*start < *end && clientip_is_ows(s[*start]))
        (*start)++;
    while (*end > *start && clientip_is_ows(s[*end - 1]))
        (*end)--;
}

enum clientip_walk { CLIENTIP_WALK_OK, CLIENTIP_WALK_MALFORMED, CLIENTIP_WALK_BLANK };

/* Walks X-Forwarded-For right to left, starting from the trusted address *cur: each entry that
 * parses becomes *cur; the walk stops after the first untrusted one. Empty list elements are
 * skipped (RFC 9110 5.6.1 lets a recipient see "a, , b"). A malformed entry leaves *cur at the
 * last trusted hop. */
static enum clientip_walk clientip_walk_xff(const struct clientip_trust *t, const char *xff, size_t len,
                                            struct peer_addr *cur)
{
    size_t end = len;
    bool any = false;

    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t next_end = start;           /* the comma before this entry, if any */
        size_t a = start, b = end;
        clientip_trim(xff, &a, &b);
        if (a < b) {
            struct peer_addr e;
            any = true;
            if (clientip_parse_entry(xff + a, b - a, &e) < 0)
                return CLIENTIP_WALK_MALFORMED;
            *cur = e;
            if (!clientip_addr_is_trusted(t, &e))
                return CLIENTIP_WALK_OK;
        }
        if (next_end == 0)
            break;
        end = next_end - 1;
    }
    return any ? CLIENTIP_WALK_OK : CLIENTIP_WALK_BLANK;
}

int clientip_resolve(const struct clientip_trust *t, const struct sockaddr *peer,
                     const struct sockaddr *proxied, const char *xff, size_t xff_len,
                     const char *xri, size_t xri_len, struct peer_addr *out)
{
    struct peer_addr cur, p;

    if (clientip_from_sockaddr(peer, &cur) < 0) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    *out = cur;
    if (!clientip_addr_is_trusted(t, &cur))
        return 0;
    if (proxied != NULL && clientip_from_sockaddr(proxied, &p) == 0) {
        cur = p;
        *out = cur;
        if (!clientip_addr_is_trusted(t, &cur))
            return 0;
    }
    if (xff != NULL) {
        enum clientip_walk w = clientip_walk_xff(t, xff, xff_len, &cur);
        *out = cur;
        if (w == CLIENTIP_WALK_MALFORMED)
            return 1;
        if (w == CLIENTIP_WALK_OK)
            return 0;
    }
    if (xri != NULL) {
        size_t a = 0, b = xri_len;
        clientip_trim(xri, &a, &b);
        if (a < b) {
            if (clientip_parse_entry(xri + a, b - a, &p) < 0)
                return 1;
            *out = p;
        }
    }
    return 0;
}
