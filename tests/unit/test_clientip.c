/* Unit tests for lib/clientip.c: trusted blocks (CIDR edges, IPv4-mapped forms), forwarded entry
 * forms, and the resolve rule: spoofing from untrusted clients, proxy chains, PROXY protocol
 * sources, malformed and oversized headers, IPv6. Header inputs end right before a PROT_NONE
 * page, so any read past their length crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/clientip.h"

/* ---- helpers ----------------------------------------------------------------------------- */

struct guard {
    uint8_t *map;
    size_t map_len;
};

static const char *guard_put(struct guard *g, const char *s, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + page - 1) / page + 1;

    g->map_len = (data_pages + 1) * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + data_pages * page, page, PROT_NONE), 0);
    uint8_t *dst = g->map + data_pages * page - n;
    if (n)
        memcpy(dst, s, n);
    return (const char *)dst;
}

static void guard_free(struct guard *g)
{
    munmap(g->map, g->map_len);
}

/* A socket address from text: IPv4 gives sockaddr_in, anything else sockaddr_in6. */
static const struct sockaddr *sa_of(struct sockaddr_storage *ss, const char *text)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(40000);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(40000);
    }
    return (const struct sockaddr *)ss;
}

/* The text of a resolved address, for readable assertions. */
static const char *addr_text(const struct peer_addr *a, char *buf, size_t cap)
{
    if (inet_ntop(a->family, a->addr, buf, (socklen_t)cap) == NULL)
        snprintf(buf, cap, "(family %d)", a->family);
    return buf;
}

static void trust_of(struct clientip_trust *t, const char *const *nets, int n)
{
    struct config cfg;
    char err[256];

    memset(&cfg, 0, sizeof(cfg));
    assert_true(n <= CONFIG_MAX_TRUSTED);
    for (int i = 0; i < n; i++)
        snprintf(cfg.proxy_trusted[i], sizeof(cfg.proxy_trusted[i]), "%s", nets[i]);
    cfg.proxy_trusted_count = n;
    if (clientip_trust_init(t, &cfg, err, sizeof(err)) != 0)
        fail_msg("trust init: %s", err);
}

static bool trusted(const struct clientip_trust *t, const char *addr)
{
    struct sockaddr_storage ss;
    return clientip_is_trusted(t, sa_of(&ss, addr));
}

/* Resolves with headers given as C strings (NULL: absent), each placed before a guard page, and
 * checks the result text and return code. */
static void check_resolve(const struct clientip_trust *t, const char *peer, const char *proxied,
                          const char *xff, const char *xri, const char *want, int want_rc)
{
    struct sockaddr_storage ps, xs;
    struct guard g1 = { 0 }, g2 = { 0 };
    const char *xffp = xff ? guard_put(&g1, xff, strlen(xff)) : NULL;
    const char *xrip = xri ? guard_put(&g2, xri, strlen(xri)) : NULL;
    struct peer_addr out;
    char buf[INET6_ADDRSTRLEN + 16];

    memset(&out, 0xa5, sizeof(out));
    int rc = clientip_resolve(t, sa_of(&ps, peer), proxied ? sa_of(&xs, proxied) : NULL, xffp,
                              xff ? strlen(xff) : 0, xrip, xri ? strlen(xri) : 0, &out);
    if (xff)
        guard_free(&g1);
    if (xri)
        guard_free(&g2);
    addr_text(&out, buf, sizeof(buf));
    if (rc != want_rc || strcmp(buf, want) != 0)
        fail_msg("peer %s proxied %s xff '%s' xri '%s': got %s rc %d, want %s rc %d", peer,
                 proxied ? proxied : "-", xff ? xff : "-", xri ? xri : "-", buf, rc, want, want_rc);
    assert_int_equal(out.port, 0);
}

static const char *const lb_nets[] = { "10.0.0.0/8", "fd00::/8" };

/* ---- trusted blocks ---------------------------------------------------------------------- */

static void test_clientip_trust_init_parses_and_masks(void **state)
{
    (void)state;
    static const char *const nets[] = { "192.168.1.77/24", "2001:db8::1/32", "127.0.0.1", "::1" };
    struct clientip_trust t;

    trust_of(&t, nets, 4);
    assert_int_equal(t.count, 4);
    assert_int_equal(t.nets[0].family, AF_INET);
    assert_int_equal(t.nets[0].prefix, 24);
    static const uint8_t n0[4] = { 192, 168, 1, 0 };
    assert_memory_equal(t.nets[0].addr, n0, 4);
    assert_int_equal(t.nets[1].family, AF_INET6);
    assert_int_equal(t.nets[1].prefix, 32);
    static const uint8_t n1[16] = { 0x20, 0x01, 0x0d, 0xb8 };
    assert_memory_equal(t.nets[1].addr, n1, 16);
    assert_int_equal(t.nets[2].prefix, 32);
    assert_int_equal(t.nets[3].family, AF_INET6);
    assert_int_equal(t.nets[3].prefix, 128);
}

static void test_clientip_trust_init_rejects_bad_entries(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0/8",
        "10.0.0.0/8/8", "localhost", "1.2.3.4 ", " 1.2.3.4", "010.1.1.1", "[::1]", "::1/1000",
        "1.2.3.4:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config cfg;
        struct clientip_trust t;
        char err[256] = "";
        memset(&cfg, 0, sizeof(cfg));
        snprintf(cfg.proxy_trusted[0], sizeof(cfg.proxy_trusted[0]), "%s", bad[i]);
        cfg.proxy_trusted_count = 1;
        if (clientip_trust_init(&t, &cfg, err, sizeof(err)) != -1)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(err, "proxy.trusted"));
        assert_int_equal(t.count, 0);
    }
    struct config cfg;
    struct clientip_trust t;
    char err[64];
    memset(&cfg, 0, sizeof(cfg));
    cfg.proxy_trusted_count = CONFIG_MAX_TRUSTED + 1;
    assert_int_equal(clientip_trust_init(&t, &cfg, err, sizeof(err)), -1);
}

static void test_clientip_trust_empty_trusts_nobody(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, NULL, 0);
    assert_false(trusted(&t, "127.0.0.1"));
    assert_false(trusted(&t, "::1"));
    check_resolve(&t, "127.0.0.1", "1.1.1.1", "2.2.2.2", "3.3.3.3", "127.0.0.1", 0);
}

static void test_clientip_cidr_edges(void **state)
{
    (void)state;
    struct clientip_trust t;

    static const char *const all4[] = { "0.0.0.0/0" };
    trust_of(&t, all4, 1);
    assert_true(trusted(&t, "0.0.0.0"));
    assert_true(trusted(&t, "255.255.255.255"));
    assert_true(trusted(&t, "::ffff:8.8.8.8"));     /* mapped: matched as IPv4 */
    assert_false(trusted(&t, "::1"));

    static const char *const all6[] = { "::/0" };
    trust_of(&t, all6, 1);
    assert_true(trusted(&t, "::"));
    assert_true(trusted(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(trusted(&t, "8.8.8.8"));

    static const char *const one4[] = { "192.0.2.7/32" };
    trust_of(&t, one4, 1);
    assert_true(trusted(&t, "192.0.2.7"));
    assert_false(trusted(&t, "192.0.2.6"));
    assert_false(trusted(&t, "192.0.2.8"));

    static const char *const one6[] = { "2001:db8::7/128" };
    trust_of(&t, one6, 1);
    assert_true(trusted(&t, "2001:db8::7"));
    assert_false(trusted(&t, "2001:db8::6"));
    assert_false(trusted(&t, "2001:db8::8"));

    static const char *const half4[] = { "128.0.0.0/1" };
    trust_of(&t, half4, 1);
    assert_true(trusted(&t, "128.0.0.0"));
    assert_true(trusted(&t, "255.1.2.3"));
    assert_false(trusted(&t, "127.255.255.255"));

    static const char *const half6[] = { "8000::/1" };
    trust_of(&t, half6, 1);
    assert_true(trusted(&t, "8000::"));
    assert_true(trusted(&t, "ffff::1"));
    assert_false(trusted(&t, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));

    static const char *const odd[] = { "172.16.0.0/12", "2001:db8:abcd:12::/63" };
    trust_of(&t, odd, 2);
    assert_true(trusted(&t, "172.31.255.255"));
    assert_false(trusted(&t, "172.32.0.0"));
    assert_false(trusted(&t, "172.15.255.255"));
    assert_true(trusted(&t, "2001:db8:abcd:13::1"));
    assert_false(trusted(&t, "2001:db8:abcd:14::1"));
    assert_false(trusted(&t, "2001:db8:abcd:11::1"));
}

static void test_clientip_mapped_addresses_match_as_ipv4(void **state)
{
    (void)state;
    struct clientip_trust t;

    static const char *const v4[] = { "127.0.0.1" };
    trust_of(&t, v4, 1);
    assert_true(trusted(&t, "::ffff:127.0.0.1"));
    assert_false(trusted(&t, "::ffff:127.0.0.2"));
    assert_false(trusted(&t, "::127.0.0.1"));         /* IPv4-compatible, not mapped */

    /* A block written in mapped form covers the IPv4 addresses. */
    static const char *const mapped[] = { "::ffff:10.1.0.0/112" };
    trust_of(&t, mapped, 1);
    assert_int_equal(t.nets[0].family, AF_INET);
    assert_int_equal(t.nets[0].prefix, 16);
    assert_true(trusted(&t, "10.1.200.3"));
    assert_true(trusted(&t, "::ffff:10.1.2.3"));
    assert_false(trusted(&t, "10.2.0.1"));

    /* A mapped socket peer resolves to IPv4 even when nobody is trusted. */
    trust_of(&t, NULL, 0);
    check_resolve(&t, "::ffff:198.51.100.9", NULL, NULL, NULL, "198.51.100.9", 0);
}

static void test_clientip_is_trusted_other_families(void **state)
{
    (void)state;
    struct clientip_trust t;
    struct sockaddr_storage ss;

    static const char *const all[] = { "0.0.0.0/0", "::/0" };
    trust_of(&t, all, 2);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_false(clientip_is_trusted(&t, (const struct sockaddr *)&ss));
    assert_false(clientip_is_trusted(&t, NULL));
}

/* ---- forwarded entries ------------------------------------------------------------------- */

static void test_clientip_parse_entry_forms(void **state)
{
    (void)state;
    static const struct { const char *in, *want; } ok[] = {
        { "1.2.3.4", "1.2.3.4" },
        { "1.2.3.4:8080", "1.2.3.4" },
        { "1.2.3.4:0", "1.2.3.4" },
        { "1.2.3.4:65535", "1.2.3.4" },
        { "2001:db8::1", "2001:db8::1" },
        { "[2001:db8::1]", "2001:db8::1" },
        { "[2001:db8::1]:443", "2001:db8::1" },
        { "::ffff:1.2.3.4", "1.2.3.4" },
        { "[::ffff:1.2.3.4]:99", "1.2.3.4" },
        { "::1", "::1" },
    };
    static const char *const bad[] = {
        "", "unknown", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1",
        "1.2.3.4:80:80", "1.2.3.4:123456", "[1.2.3.4]", "[2001:db8::1", "2001:db8::1]",
        "[2001:db8::1]443", "[2001:db8::1]:", "[2001:db8::1]:x", "[]", "[]:80", "fe80::1%eth0",
        "_hidden", "01.2.3.4", "1.2.3.4 ", "1.2.3.4;proto=https", "::1:80:x", "[::1]:80:80",
    };
    char buf[INET6_ADDRSTRLEN];
    struct peer_addr a;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct guard g;
        const char *p = guard_put(&g, ok[i].in, strlen(ok[i].in));
        if (clientip_parse_entry(p, strlen(ok[i].in), &a) != 0)
            fail_msg("'%s' refused", ok[i].in);
        guard_free(&g);
        assert_string_equal(addr_text(&a, buf, sizeof(buf)), ok[i].want);
        assert_int_equal(a.port, 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct guard g;
        const char *p = guard_put(&g, bad[i], strlen(bad[i]));
        if (clientip_parse_entry(p, strlen(bad[i]), &a) != -1)
            fail_msg("'%s' accepted as %s", bad[i], addr_text(&a, buf, sizeof(buf)));
        guard_free(&g);
    }
}

static void test_clientip_parse_entry_rejects_nul_and_length(void **state)
{
    (void)state;
    struct peer_addr a;
    static const char nul[] = "1.2.3.4\0garbage";
    assert_int_equal(clientip_parse_entry(nul, sizeof(nul) - 1, &a), -1);
    /* The span is what counts, not a terminator: a prefix of a longer text parses alone. */
    assert_int_equal(clientip_parse_entry("1.2.3.45", 7, &a), 0);
    char longtxt[200];
    memset(longtxt, '1', sizeof(longtxt));
    assert_int_equal(clientip_parse_entry(longtxt, sizeof(longtxt), &a), -1);
}

/* ---- resolve ----------------------------------------------------------------------------- */

static void test_clientip_resolve_untrusted_headers_ignored(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    /* A client talking to tyto directly cannot claim another address by any route. */
    check_resolve(&t, "203.0.113.5", NULL, "198.51.100.1", NULL, "203.0.113.5", 0);
    check_resolve(&t, "203.0.113.5", NULL, NULL, "198.51.100.1", "203.0.113.5", 0);
    check_resolve(&t, "203.0.113.5", "198.51.100.1", NULL, NULL, "203.0.113.5", 0);
    check_resolve(&t, "203.0.113.5", NULL, "10.0.0.1", "10.0.0.2", "203.0.113.5", 0);
    /* Even a malformed header from an untrusted peer is not looked at. */
    check_resolve(&t, "203.0.113.5", NULL, "garbage", "garbage", "203.0.113.5", 0);
    check_resolve(&t, "2001:db8::5", NULL, "198.51.100.1", NULL, "2001:db8::5", 0);
}

static void test_clientip_resolve_spoofed_xff_behind_proxy(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    /* The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real address. */
    check_resolve(&t, "10.0.0.2", NULL, "1.1.1.1, 203.0.113.5", NULL, "203.0.113.5", 0);
    /* Claiming to be a trusted proxy does not help: the proxy's entry is still rightmost. */
    check_resolve(&t, "10.0.0.2", NULL, "10.9.9.9, 10.0.0.3, 203.0.113.5", NULL, "203.0.113.5", 0);
    /* X-Real-IP is not consulted when X-Forwarded-For is present. */
    check_resolve(&t, "10.0.0.2", NULL, "203.0.113.5", "1.1.1.1", "203.0.113.5", 0);
}

static void test_clientip_resolve_proxy_chain(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    /* CDN edge (untrusted, so it is the client as far as we know) -> two proxies of ours. */
    check_resolve(&t, "10.0.0.2", NULL, "198.51.100.7, 10.1.1.1", NULL, "198.51.100.7", 0);
    check_resolve(&t, "10.0.0.2", NULL, "203.0.113.9,198.51.100.7,10.1.1.1,10.2.2.2", NULL, "198.51.100.7", 0);
    /* Several headers joined by ", ", with odd white space and empty elements. */
    check_resolve(&t, "10.0.0.2", NULL, "\t203.0.113.9 ,  , 10.1.1.1\t,", NULL, "203.0.113.9", 0);
    /* Every entry trusted: the leftmost is the best we know. */
    check_resolve(&t, "10.0.0.2", NULL, "10.3.3.3, 10.1.1.1", NULL, "10.3.3.3", 0);
    /* A single entry, with ports in both accepted forms. */
    check_resolve(&t, "10.0.0.2", NULL, "203.0.113.9:51000", NULL, "203.0.113.9", 0);
    check_resolve(&t, "10.0.0.2", NULL, "[2001:db8::9]:51000, 10.1.1.1", NULL, "2001:db8::9", 0);
}

static void test_clientip_resolve_x_real_ip(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    check_resolve(&t, "10.0.0.2", NULL, NULL, "203.0.113.5", "203.0.113.5", 0);
    check_resolve(&t, "10.0.0.2", NULL, NULL, "  2001:db8::5 ", "2001:db8::5", 0);
    check_resolve(&t, "10.0.0.2", NULL, NULL, "::ffff:203.0.113.5", "203.0.113.5", 0);
    /* A blank X-Forwarded-For counts as absent. */
    check_resolve(&t, "10.0.0.2", NULL, " , ", "203.0.113.5", "203.0.113.5", 0);
    check_resolve(&t, "10.0.0.2", NULL, "", "203.0.113.5", "203.0.113.5", 0);
    /* Blank or malformed X-Real-IP: the proxy's own address stays. */
    check_resolve(&t, "10.0.0.2", NULL, NULL, "", "10.0.0.2", 0);
    check_resolve(&t, "10.0.0.2", NULL, NULL, "not-an-ip", "10.0.0.2", 1);
    /* No header at all behind a trusted proxy: the proxy's address. */
    check_resolve(&t, "10.0.0.2", NULL, NULL, NULL, "10.0.0.2", 0);
}

static void test_clientip_resolve_malformed_stops_at_last_trusted_hop(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    check_resolve(&t, "10.0.0.2", NULL, "unknown", NULL, "10.0.0.2", 1);
    check_resolve(&t, "10.0.0.2", NULL, "203.0.113.5, 10.1.1.1, bogus", NULL, "10.0.0.2", 1);
    check_resolve(&t, "10.0.0.2", NULL, "bogus, 10.1.1.1", NULL, "10.1.1.1", 1);
    check_resolve(&t, "10.0.0.2", NULL, "203.0.113.5, 10.1.1.1:99999", NULL, "10.0.0.2", 1);
    /* Malformed to the left of the client does not matter: the walk ends before it. */
    check_resolve(&t, "10.0.0.2", NULL, "bogus, 203.0.113.5", NULL, "203.0.113.5", 0);
    check_resolve(&t, "10.0.0.2", NULL, "1.2.3.4\xff", NULL, "10.0.0.2", 1);
}

static void test_clientip_resolve_oversized_header(void **state)
{
    (void)state;
    struct clientip_trust t;
    size_t n = 70000;
    char *big = malloc(n + 64);

    assert_non_null(big);
    trust_of(&t, lb_nets, 2);
    /* One giant entry. */
    memset(big, '1', n);
    big[n] = '\0';
    check_resolve(&t, "10.0.0.2", NULL, big, NULL, "10.0.0.2", 1);
    /* Thousands of trusted entries, the client leftmost. */
    size_t len = (size_t)sprintf(big, "203.0.113.5");
    while (len + 12 < n)
        len += (size_t)sprintf(big + len, ", 10.0.0.1");
    check_resolve(&t, "10.0.0.2", NULL, big, NULL, "203.0.113.5", 0);
    /* Thousands of commas only: blank, so X-Real-IP is used. */
    memset(big, ',', n);
    big[n] = '\0';
    check_resolve(&t, "10.0.0.2", NULL, big, "203.0.113.5", "203.0.113.5", 0);
    free(big);
}

static void test_clientip_resolve_proxy_protocol_source(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    check_resolve(&t, "10.0.0.2", "203.0.113.5", NULL, NULL, "203.0.113.5", 0);
    check_resolve(&t, "10.0.0.2", "2001:db8::5", NULL, NULL, "2001:db8::5", 0);
    check_resolve(&t, "10.0.0.2", "::ffff:203.0.113.5", NULL, NULL, "203.0.113.5", 0);
    /* An untrusted PROXY source: its forwarding headers are the client's own, ignored. */
    check_resolve(&t, "10.0.0.2", "203.0.113.5", "1.1.1.1", "1.1.1.1", "203.0.113.5", 0);
    /* A trusted PROXY source (an inner proxy) passes the decision on to X-Forwarded-For. */
    check_resolve(&t, "10.0.0.2", "10.0.0.3", "203.0.113.5", NULL, "203.0.113.5", 0);
    check_resolve(&t, "10.0.0.2", "10.0.0.3", "bad", NULL, "10.0.0.3", 1);
}

static void test_clientip_resolve_ipv6_proxy(void **state)
{
    (void)state;
    struct clientip_trust t;

    trust_of(&t, lb_nets, 2);
    check_resolve(&t, "fd00::2", NULL, "2001:db8::77", NULL, "2001:db8::77", 0);
    check_resolve(&t, "fd00::2", NULL, "203.0.113.5, fd12::1", NULL, "203.0.113.5", 0);
    check_resolve(&t, "::ffff:10.0.0.2", NULL, "203.0.113.5", NULL, "203.0.113.5", 0);
    /* fc00::/8 is outside fd00::/8. */
    check_resolve(&t, "fc00::2", NULL, "203.0.113.5", NULL, "fc00::2", 0);
}

static void test_clientip_resolve_null_and_odd_peers(void **state)
{
    (void)state;
    struct clientip_trust t;
    struct peer_addr out;
    struct sockaddr_storage ss;

    trust_of(&t, lb_nets, 2);
    assert_int_equal(clientip_resolve(&t, NULL, NULL, NULL, 0, NULL, 0, &out), -1);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(clientip_resolve(&t, (const struct sockaddr *)&ss, NULL, "1.2.3.4", 7, NULL, 0, &out), -1);
    /* A PROXY source of an unknown family is ignored. */
    struct sockaddr_storage ps;
    assert_int_equal(clientip_resolve(&t, sa_of(&ps, "10.0.0.2"), (const struct sockaddr *)&ss, NULL, 0,
                                      NULL, 0, &out), 0);
    assert_int_equal(out.family, AF_INET);
    static const uint8_t want[4] = { 10, 0, 0, 2 };
    assert_memory_equal(out.addr, want, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clientip_trust_init_parses_and_masks),
        cmocka_unit_test(test_clientip_trust_init_rejects_bad_entries),
        cmocka_unit_test(test_clientip_trust_empty_trusts_nobody),
        cmocka_unit_test(test_clientip_cidr_edges),
        cmocka_unit_test(test_clientip_mapped_addresses_match_as_ipv4),
        cmocka_unit_test(test_clientip_is_trusted_other_families),
        cmocka_unit_test(test_clientip_parse_entry_forms),
        cmocka_unit_test(test_clientip_parse_entry_rejects_nul_and_length),
        cmocka_unit_test(test_clientip_resolve_untrusted_headers_ignored),
        cmocka_unit_test(test_clientip_resolve_spoofed_xff_behind_proxy),
        cmocka_unit_test(test_clientip_resolve_proxy_chain),
        cmocka_unit_test(test_clientip_resolve_x_real_ip),
        cmocka_unit_test(test_clientip_resolve_malformed_stops_at_last_trusted_hop),
        cmocka_unit_test(test_clientip_resolve_oversized_header),
        cmocka_unit_test(test_clientip_resolve_proxy_protocol_source),
        cmocka_unit_test(test_clientip_resolve_ipv6_proxy),
        cmocka_unit_test(test_clientip_resolve_null_and_odd_peers),
    };

    return cmocka_run_group_tests_name("clientip", tests, NULL, NULL);
}
