/* libFuzzer target for lib/clientip.c: X-Forwarded-For and X-Real-IP from a (maybe) trusted
 * proxy. The first two input bytes pick the socket peer and the PROXY source, the rest is
 * "XFF\nXRI". clientip_resolve() is compared with a model written from its header comment, and
 * the answer must never be a forwarded address unless every hop that vouched for it is trusted.
 * The input also goes through clientip_parse_entry() and clientip_parse_net() on its own. */
#include "fuzz/fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lib/clientip.h"

/* Trusted: 10/8, 127.0.0.1, 192.168.0.0/16, ::1, fd00::/8, ::ffff:172.16.0.0/108 (172.16/12). */
static const char *const fuzz_trusted[] = {
    "10.0.0.0/8", "127.0.0.1", "192.168.0.0/16", "::1", "fd00::/8", "::ffff:172.16.0.0/108",
};

/* Socket peers, picked by an input byte: trusted and untrusted, both families, mapped. */
static const char *const fuzz_peers[] = {
    "10.1.2.3", "127.0.0.1", "203.0.113.9", "::1", "fd12::5", "2001:db8::7",
    "::ffff:10.9.9.9", "::ffff:198.51.100.1", "172.16.4.4", "172.32.0.1",
};

static struct clientip_trust fuzz_trust;
static int fuzz_ready;

static void fuzz_init(void)
{
    struct config cfg;
    char err[256];

    memset(&cfg, 0, sizeof(cfg));
    cfg.proxy_trusted_count = (int)(sizeof(fuzz_trusted) / sizeof(fuzz_trusted[0]));
    for (int i = 0; i < cfg.proxy_trusted_count; i++)
        snprintf(cfg.proxy_trusted[i], sizeof(cfg.proxy_trusted[i]), "%s", fuzz_trusted[i]);
    FUZZ_CHECK(clientip_trust_init(&fuzz_trust, &cfg, err, sizeof(err)) == 0);
    FUZZ_CHECK(fuzz_trust.count == (unsigned)cfg.proxy_trusted_count);
    fuzz_ready = 1;
}

/* Fills ss with the address text (family by its form), or AF_UNSPEC for an index past the end. */
static const struct sockaddr *fuzz_sockaddr(unsigned idx, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (idx >= sizeof(fuzz_peers) / sizeof(fuzz_peers[0])) {
        ss->ss_family = idx & 1 ? AF_UNIX : AF_UNSPEC;
        return (const struct sockaddr *)ss;
    }
    if (strchr(fuzz_peers[idx], ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(443);
        FUZZ_CHECK(inet_pton(AF_INET6, fuzz_peers[idx], &s6->sin6_addr) == 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

        s4->sin_family = AF_INET;
        s4->sin_port = htons(443);
        FUZZ_CHECK(inet_pton(AF_INET, fuzz_peers[idx], &s4->sin_addr) == 1);
    }
    return (const struct sockaddr *)ss;
}

static int fuzz_same(const struct peer_addr *a, const struct peer_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static int fuzz_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The model of clientip_resolve(), from lib/clientip.h. */
static int fuzz_model(const struct sockaddr *peer, const struct sockaddr *proxied, const char *xff,
                      size_t xff_len, const char *xri, size_t xri_len, struct peer_addr *out)
{
    struct peer_addr cur, p;
    bool any = false;

    if (clientip_from_sockaddr(peer, &cur) < 0)
        return -1;
    *out = cur;
    if (!clientip_addr_is_trusted(&fuzz_trust, &cur))
        return 0;
    if (proxied && clientip_from_sockaddr(proxied, &p) == 0) {
        *out = cur = p;
        if (!clientip_addr_is_trusted(&fuzz_trust, &cur))
            return 0;
    }
    if (xff) {
        /* Right to left over the comma-separated entries; blank ones do not count. */
        size_t end = xff_len;

        for (;;) {
            size_t start = end, a, b;

            while (start > 0 && xff[start - 1] != ',')
                start--;
            a = start;
            b = end;
            while (a < b && fuzz_ows(xff[a]))
                a++;
            while (b > a && fuzz_ows(xff[b - 1]))
                b--;
            if (a < b) {
                any = true;
                if (clientip_parse_entry(xff + a, b - a, &p) < 0) {
                    *out = cur;
                    return 1;
                }
                *out = cur = p;
                if (!clientip_addr_is_trusted(&fuzz_trust, &cur))
                    return 0;
            }
            if (start == 0)
                break;
            end = start - 1;
        }
        if (any)
            return 0;
    }
    if (xri) {
        size_t a = 0, b = xri_len;

        while (a < b && fuzz_ows(xri[a]))
            a++;
        while (b > a && fuzz_ows(xri[b - 1]))
            b--;
        if (a < b) {
            if (clientip_parse_entry(xri + a, b - a, &p) < 0)
                return 1;
            *out = p;
        }
    }
    return 0;
}

/* Whether a (as parsed by clientip_parse_entry) appears as an entry of the span. */
static int fuzz_in_list(const char *s, size_t len, const struct peer_addr *a)
{
    size_t i = 0;

    while (i <= len) {
        size_t j = i, x, y;
        struct peer_addr e;

        while (j < len && s[j] != ',')
            j++;
        x = i;
        y = j;
        while (x < y && fuzz_ows(s[x]))
            x++;
        while (y > x && fuzz_ows(s[y - 1]))
            y--;
        if (x < y && clientip_parse_entry(s + x, y - x, &e) == 0 && fuzz_same(&e, a))
            return 1;
        i = j + 1;
    }
    return 0;
}

static void fuzz_resolve(const uint8_t *data, size_t size)
{
    struct sockaddr_storage peer_ss, prox_ss;
    const struct sockaddr *peer, *proxied = NULL;
    struct peer_addr got, want, peer_a, prox_a;
    const char *rest = (const char *)data + 2, *nl;
    size_t rest_len = size - 2, xff_len, xri_len;
    char *xff = NULL, *xri = NULL;
    uint8_t sel = data[0], psel = data[1];
    int rc, mrc;

    peer = fuzz_sockaddr(sel % 12, &peer_ss);
    if (psel & 0x80)
        proxied = fuzz_sockaddr(psel % 12, &prox_ss);
    nl = memchr(rest, '\n', rest_len);
    xff_len = nl ? (size_t)(nl - rest) : rest_len;
    xri_len = nl ? rest_len - xff_len - 1 : 0;
    /* Exact-size copies, so that a read past either header is caught. */
    if (!(sel & 0x40))
        xff = fuzz_dup(rest, xff_len);
    if (nl && !(sel & 0x20))
        xri = fuzz_dup(nl + 1, xri_len);

    memset(&got, 0x77, sizeof(got));
    rc = clientip_resolve(&fuzz_trust, peer, proxied, xff, xff_len, xri, xri_len, &got);
    mrc = fuzz_model(peer, proxied, xff, xff_len, xri, xri_len, &want);
    FUZZ_CHECK(rc == mrc);
    if (rc < 0)
        goto out;
    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(fuzz_same(&got, &want));
    FUZZ_CHECK(got.port == 0 && (got.family == AF_INET || got.family == AF_INET6));

    /* Security: the answer is the peer itself, or the peer was trusted and the answer is an
     * address someone on the trusted path named. */
    FUZZ_CHECK(clientip_from_sockaddr(peer, &peer_a) == 0);
    if (!fuzz_same(&got, &peer_a)) {
        FUZZ_CHECK(clientip_addr_is_trusted(&fuzz_trust, &peer_a));
        FUZZ_CHECK((proxied && clientip_from_sockaddr(proxied, &prox_a) == 0 &&
                    fuzz_same(&got, &prox_a)) ||
                   (xff && fuzz_in_list(xff, xff_len, &got)) ||
                   (xri && fuzz_in_list(xri, xri_len, &got)));
    }
out:
    free(xff);
    free(xri);
}

static void fuzz_parsers(const uint8_t *data, size_t size)
{
    char *s = fuzz_dup(data, size);
    struct peer_addr a;
    struct clientip_net net;

    if (clientip_parse_entry(s, size, &a) == 0) {
        static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        FUZZ_CHECK(size <= CLIENTIP_ENTRY_MAX);
        FUZZ_CHECK(a.port == 0 && (a.family == AF_INET || a.family == AF_INET6));
        FUZZ_CHECK(a.family == AF_INET || memcmp(a.addr, mapped, 12) != 0);
    }
    if (clientip_parse_net(s, size, &net) == 0) {
        size_t bytes = net.family == AF_INET ? 4 : 16;

        FUZZ_CHECK(net.family == AF_INET || net.family == AF_INET6);
        FUZZ_CHECK(net.prefix <= bytes * 8);
        /* Host bits are clear. */
        for (size_t bit = net.prefix; bit < bytes * 8; bit++)
            FUZZ_CHECK(!(net.addr[bit / 8] & (0x80 >> (bit % 8))));
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_ready)
        fuzz_init();
    fuzz_parsers(data, size);
    if (size >= 2)
        fuzz_resolve(data, size);
    return 0;
}
