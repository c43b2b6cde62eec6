/* Unit tests of the two pure parsers in lib/http.c: http_parse_head (request line + headers)
 * and http_proxy_parse (PROXY v1/v2). Every input is placed at the very end of a readable page
 * followed by a PROT_NONE page, so a single byte of overread crashes the test (picohttpparser's
 * technique); a seeded random and mutation pass checks that no byte sequence misbehaves. */
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

#include "lib/http.h"

#define GUARD_AREA (64 * 1024)

static char *guard_base; /* GUARD_AREA readable bytes, then one PROT_NONE page */

/* Copies len bytes to the end of the readable area, so buf + len is the guard page. */
static const char *guarded(const void *data, size_t len)
{
    if (!guard_base) {
        long page = sysconf(_SC_PAGESIZE);
        char *m = mmap(NULL, GUARD_AREA + (size_t)page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(m != MAP_FAILED);
        assert_int_equal(mprotect(m + GUARD_AREA, (size_t)page, PROT_NONE), 0);
        guard_base = m;
    }
    assert_true(len <= GUARD_AREA);
    char *p = guard_base + GUARD_AREA - len;
    if (len)
        memcpy(p, data, len);
    return p;
}

static int parse(const char *s, size_t len, unsigned max_headers, struct http_head *h)
{
    return http_parse_head(guarded(s, len), len, max_headers, h);
}

static int parse_str(const char *s, struct http_head *h)
{
    return parse(s, strlen(s), 64, h);
}

static int proxy(const void *s, size_t len, struct sockaddr_storage *ss)
{
    return http_proxy_parse((const uint8_t *)guarded(s, len), len, ss);
}

static void assert_span(struct http_span sp, const char *want)
{
    assert_int_equal(sp.len, strlen(want));
    assert_memory_equal(sp.p, want, sp.len);
}

/* ---- http_parse_head ---- */

static void test_http_parse_simple_get(void **state)
{
    (void)state;
    struct http_head h;
    const char *req = "GET /announce?info_hash=%12%34&port=1 HTTP/1.1\r\n"
                      "Host: tracker.example\r\n"
                      "User-Agent: qBittorrent/4.5\r\n"
                      "Accept-Encoding: gzip\r\n"
                      "\r\n";
    assert_int_equal(parse_str(req, &h), (int)strlen(req));
    assert_span(h.method, "GET");
    assert_span(h.target, "/announce?info_hash=%12%34&port=1");
    assert_int_equal(h.minor_version, 1);
    assert_int_equal(h.nheaders, 3);
    assert_span(h.names[0], "Host");
    assert_span(h.values[0], "tracker.example");
    assert_span(h.names[2], "Accept-Encoding");
    assert_span(h.values[2], "gzip");
}

static void test_http_parse_returns_head_length_only(void **state)
{
    (void)state;
    struct http_head h;
    const char *two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_str(two, &h), 19);
    assert_span(h.target, "/a");
    assert_int_equal(h.nheaders, 0);
}

static void test_http_parse_http10_and_bare_lf(void **state)
{
    (void)state;
    struct http_head h;
    const char *req = "GET / HTTP/1.0\nHost: x\n\n";
    assert_int_equal(parse_str(req, &h), (int)strlen(req));
    assert_int_equal(h.minor_version, 0);
    assert_int_equal(h.nheaders, 1);
    assert_span(h.values[0], "x");
}

static void test_http_parse_trims_value_whitespace(void **state)
{
    (void)state;
    struct http_head h;
    const char *req = "GET / HTTP/1.1\r\nA:   spaced  value \t \r\nB:\r\nC: \t\r\n\r\n";
    assert_int_equal(parse_str(req, &h), (int)strlen(req));
    assert_int_equal(h.nheaders, 3);
    assert_span(h.values[0], "spaced  value");
    assert_span(h.values[1], "");
    assert_span(h.values[2], "");
}

static void test_http_parse_leading_empty_lines(void **state)
{
    (void)state;
    struct http_head h;
    const char *req = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_str(req, &h), (int)strlen(req));
    assert_span(h.method, "GET");
}

static void test_http_parse_every_prefix_is_incomplete(void **state)
{
    (void)state;
    struct http_head h;
    const char *req = "GET /scrape?info_hash=abc HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n";
    size_t len = strlen(req);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(parse(req, n, 64, &h), -2);
    assert_int_equal(parse(req, len, 64, &h), (int)len);
    /* the same with bare LFs */
    const char *lf = "GET / HTTP/1.0\nA: b\n\n";
    len = strlen(lf);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(parse(lf, n, 64, &h), -2);
}

static void test_http_parse_rejects_malformed(void **state)
{
    (void)state;
    struct http_head h;
    static const char *const bad[] = {
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1x\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET /  HTTP/1.1\r\n\r\n",           /* two spaces */
        "GET  / HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",            /* '(' is no tchar */
        "GET /a\x01 HTTP/1.1\r\n\r\n",       /* CTL in the target */
        "GET /a\x7f HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\rX\n\r\n",           /* CR not followed by LF */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n", /* space before the colon */
        "GET / HTTP/1.1\r\n: x\r\n\r\n",      /* empty name */
        "GET / HTTP/1.1\r\nHost x\r\n\r\n",   /* no colon */
        "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", /* obsolete line folding */
        "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n",
        "GET / HTTP/1.1\r\n x: y\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",  /* CR inside a value */
        "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\x0b\r\n\r\n",
        "GET / HTTP/1.1\r\nA\x80: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\r\n",
        "\rGET / HTTP/1.1\r\n\r\n",
        "/ HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_str(bad[i], &h);
        if (rc != -1)
            fail_msg("case %zu (%s): got %d", i, bad[i], rc);
    }
    /* NUL inside a value and inside the target */
    static const char nul_value[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    assert_int_equal(parse(nul_value, sizeof(nul_value) - 1, 64, &h), -1);
    static const char nul_target[] = "GET /\0 HTTP/1.1\r\n\r\n";
    assert_int_equal(parse(nul_target, sizeof(nul_target) - 1, 64, &h), -1);
    /* a malformed request is refused before it is complete */
    assert_int_equal(parse_str("GET / HTTP/1.9", &h), -1);
    assert_int_equal(parse_str("\x16\x03\x01\x02", &h), -1); /* a TLS hello */
}

static void test_http_parse_accepts_high_bytes(void **state)
{
    (void)state;
    struct http_head h;
    const char *req = "GET /a\xc3\xa9?x=\xff HTTP/1.1\r\nUA: caf\xc3\xa9\r\n\r\n";
    assert_int_equal(parse_str(req, &h), (int)strlen(req));
    assert_span(h.target, "/a\xc3\xa9?x=\xff");
    assert_span(h.values[0], "caf\xc3\xa9");
}

/* The target is scanned eight bytes at a time: every byte value at every offset of a target
 * longer than two blocks must be judged as the byte-by-byte rule does (> 0x20 and not DEL
 * is part of the target; a space ends it; anything else is malformed). */
static void test_http_parse_target_every_byte_at_every_offset(void **state)
{
    (void)state;
    struct http_head h;
    char req[128];
    const char *tail = " HTTP/1.1\r\n\r\n";
    for (size_t off = 0; off < 24; off++) {
        for (int b = 0; b < 256; b++) {
            size_t n = 0;
            memcpy(req + n, "GET /", 5);
            n += 5;
            for (size_t k = 0; k < 24; k++)
                req[n++] = k == off ? (char)b : 'a';
            memcpy(req + n, tail, strlen(tail));
            n += strlen(tail);
            int rc = http_parse_head(req, n, 64, &h);
            if (b > 0x20 && b != 0x7f) {
                assert_int_equal(rc, (int)n);
                assert_int_equal(h.target.len, 25);
            } else {
                /* a space: "/aa.. aa.. HTTP/1.1" has no version where it must be */
                assert_int_equal(rc, -1);
            }
        }
    }
}

static void test_http_parse_too_many_headers(void **state)
{
    (void)state;
    struct http_head h;
    char req[4096];
    size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 5; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n");
    assert_int_equal(parse(req, n, 5, &h), (int)n);
    assert_int_equal(h.nheaders, 5);
    assert_int_equal(parse(req, n, 4, &h), -3);
    assert_int_equal(parse(req, n, 0, &h), -3);
    /* -3 comes as soon as the extra line starts, even before the head is complete */
    assert_int_equal(parse(req, 16 + 4 * 7 + 1, 4, &h), -3);

    /* more than the 64 slots: clamped, never written past the arrays */
    n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n");
    assert_int_equal(parse(req, n, 1000, &h), -3);
    assert_int_equal(h.nheaders, 64);
}

static void test_http_parse_random_bytes_never_overread(void **state)
{
    (void)state;
    struct http_head h;
    unsigned char buf[512];
    static const char alphabet[] = "GET /?HTP1.0\r\n: \tA\x00\x7f\x80z";
    srand(12345);
    for (int iter = 0; iter < 100000; iter++) {
        size_t len = (size_t)(rand() % 200);
        for (size_t i = 0; i < len; i++)
            buf[i] = (iter & 1) ? (unsigned char)rand() : (unsigned char)alphabet[rand() % (sizeof(alphabet) - 1)];
        int rc = parse((const char *)buf, len, (unsigned)(rand() % 80), &h);
        assert_true(rc == -1 || rc == -2 || rc == -3 || (rc > 0 && (size_t)rc <= len));
        if (rc > 0)
            assert_true(h.nheaders <= 64);
    }
}

static void test_http_parse_mutations_never_overread(void **state)
{
    (void)state;
    struct http_head h;
    const char *base = "GET /announce?a=1&b=%20 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
    size_t blen = strlen(base);
    char buf[256];
    srand(777);
    for (int iter = 0; iter < 100000; iter++) {
        memcpy(buf, base, blen);
        int nmut = 1 + rand() % 3;
        for (int m = 0; m < nmut; m++)
            buf[rand() % blen] = (char)(rand() % 256);
        size_t len = (size_t)(rand() % (int)(blen + 1));
        int rc = parse(buf, len, 64, &h);
        assert_true(rc == -1 || rc == -2 || rc == -3 || (rc > 0 && (size_t)rc <= len));
        if (rc > 0) {
            /* every span lies inside the input */
            assert_true(h.method.p >= guard_base && h.target.p + h.target.len <= guard_base + GUARD_AREA);
            for (unsigned i = 0; i < h.nheaders; i++)
                assert_true(h.values[i].p + h.values[i].len <= guard_base + GUARD_AREA);
        }
    }
}

/* ---- http_proxy_parse ---- */

static void assert_v4(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];
    assert_int_equal(ss->ss_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(sin->sin_port), port);
}

static void assert_v6(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(ss->ss_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(sin6->sin6_port), port);
}

static void test_http_proxy_v1_tcp4(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy(h, strlen(h), &ss), (int)(strchr(h, '\n') - h + 1));
    assert_v4(&ss, "192.0.2.7", 56324);
}

static void test_http_proxy_v1_tcp6(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    const char *h = "PROXY TCP6 2001:db8::1 ::ffff:198.51.100.1 65535 0\r\n";
    assert_int_equal(proxy(h, strlen(h), &ss), (int)strlen(h));
    assert_v6(&ss, "2001:db8::1", 65535);
}

static void test_http_proxy_v1_unknown(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(proxy("PROXY UNKNOWN\r\n", 15, &ss), 15);
    assert_int_equal(ss.ss_family, AF_UNSPEC);
    const char *h = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_int_equal(proxy(h, strlen(h), &ss), (int)strlen(h));
    assert_int_equal(ss.ss_family, AF_UNSPEC);
}

static void test_http_proxy_v1_longest_line(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    /* The spec's worst case is 107 bytes; UNKNOWN lets us build exactly that. */
    char h[200];
    memset(h, 'x', sizeof(h));
    memcpy(h, "PROXY UNKNOWN ", 14);
    h[105] = '\r';
    h[106] = '\n';
    assert_int_equal(proxy(h, 107, &ss), 107);
    h[105] = 'x';
    h[106] = '\r';
    h[107] = '\n';
    assert_int_equal(proxy(h, 108, &ss), -1);
    assert_int_equal(proxy(h, 106, &ss), -1); /* 106 bytes without CR: cannot fit any more */
    assert_int_equal(proxy(h, 105, &ss), -2);
}

static void test_http_proxy_v1_every_prefix_is_incomplete(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    const char *h = "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n";
    size_t len = strlen(h);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(proxy(h, n, &ss), -2);
    assert_int_equal(proxy(h, len, &ss), (int)len);
}

static void test_http_proxy_v1_rejects_malformed(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY\r\n",
        "PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = proxy(bad[i], strlen(bad[i]), &ss);
        if (rc != -1)
            fail_msg("case %zu (%s): got %d", i, bad[i], rc);
    }
}

static const uint8_t v2sig[12] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };

static size_t v2_build(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const void *addr, size_t alen, size_t declared)
{
    memcpy(b, v2sig, 12);
    b[12] = ver_cmd;
    b[13] = fam;
    b[14] = (uint8_t)(declared >> 8);
    b[15] = (uint8_t)declared;
    if (alen)
        memcpy(b + 16, addr, alen);
    return 16 + alen;
}

static void test_http_proxy_v2_tcp4_with_tlvs(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    uint8_t b[256], a[12 + 7];
    memcpy(a, "\xc0\x00\x02\x07", 4);       /* 192.0.2.7 */
    memcpy(a + 4, "\xc6\x33\x64\x01", 4);   /* 198.51.100.1 */
    memcpy(a + 8, "\xdc\x04\x01\xbb", 4);   /* 56324, 443 */
    memcpy(a + 12, "\x04\x00\x04WXYZ", 7);  /* a NOOP TLV: skipped */
    size_t n = v2_build(b, 0x21, 0x11, a, sizeof(a), sizeof(a));
    memcpy(b + n, "GET", 3);
    assert_int_equal(proxy(b, n + 3, &ss), (int)n);
    assert_v4(&ss, "192.0.2.7", 56324);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(proxy(b, k, &ss), -2);
}

static void test_http_proxy_v2_tcp6(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    uint8_t b[256], a[36];
    struct in6_addr src, dst;
    inet_pton(AF_INET6, "2001:db8::42", &src);
    inet_pton(AF_INET6, "2001:db8::1", &dst);
    memcpy(a, &src, 16);
    memcpy(a + 16, &dst, 16);
    memcpy(a + 32, "\x1f\x90\x00\x50", 4);  /* 8080, 80 */
    size_t n = v2_build(b, 0x21, 0x21, a, sizeof(a), sizeof(a));
    assert_int_equal(proxy(b, n, &ss), (int)n);
    assert_v6(&ss, "2001:db8::42", 8080);
}

static void test_http_proxy_v2_local_and_unspec(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    uint8_t b[256];
    size_t n = v2_build(b, 0x20, 0x00, NULL, 0, 0);         /* LOCAL: a health check */
    assert_int_equal(proxy(b, n, &ss), 16);
    assert_int_equal(ss.ss_family, AF_UNSPEC);
    uint8_t junk[12] = { 1, 2, 3 };
    n = v2_build(b, 0x20, 0x11, junk, sizeof(junk), sizeof(junk)); /* LOCAL ignores the block */
    assert_int_equal(proxy(b, n, &ss), 28);
    assert_int_equal(ss.ss_family, AF_UNSPEC);
    n = v2_build(b, 0x21, 0x00, NULL, 0, 0);                 /* PROXY with UNSPEC */
    assert_int_equal(proxy(b, n, &ss), 16);
    assert_int_equal(ss.ss_family, AF_UNSPEC);
}

static void test_http_proxy_v2_rejects_malformed(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    uint8_t b[4096], a[64];
    memset(a, 1, sizeof(a));
    assert_int_equal(proxy(b, v2_build(b, 0x11, 0x11, a, 12, 12), &ss), -1); /* version 1 */
    assert_int_equal(proxy(b, v2_build(b, 0x31, 0x11, a, 12, 12), &ss), -1); /* version 3 */
    assert_int_equal(proxy(b, v2_build(b, 0x22, 0x11, a, 12, 12), &ss), -1); /* command 2 */
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x11, a, 11, 11), &ss), -1); /* short IPv4 */
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x21, a, 35, 35), &ss), -1); /* short IPv6 */
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x12, a, 12, 12), &ss), -1); /* UDP */
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x22, a, 36, 36), &ss), -1);
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x41, a, 12, 12), &ss), -1); /* unknown family */
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x11, a, 0, 65535), &ss), -1); /* length sanity */
    assert_int_equal(proxy(b, v2_build(b, 0x20, 0x00, a, 0, 2049), &ss), -1);
    /* a declared length not yet received is incomplete, never read past what is there */
    assert_int_equal(proxy(b, v2_build(b, 0x21, 0x11, a, 12, 40), &ss), -2);
    /* a broken signature */
    size_t n = v2_build(b, 0x21, 0x11, a, 12, 12);
    b[7] = 'q';
    assert_int_equal(proxy(b, n, &ss), -1);
    assert_int_equal(proxy(b, 7, &ss), -2);
    assert_int_equal(proxy(b, 8, &ss), -1);
}

static void test_http_proxy_random_bytes_never_overread(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    uint8_t buf[600];
    const char *v1 = "PROXY TCP4 10.0.0.1 10.0.0.2 1234 80\r\n";
    srand(4242);
    for (int iter = 0; iter < 200000; iter++) {
        size_t len;
        switch (iter % 3) {
        case 0: /* v1 mutated */
            len = strlen(v1);
            memcpy(buf, v1, len);
            buf[rand() % (int)len] = (uint8_t)rand();
            len = (size_t)(rand() % (int)(len + 1));
            break;
        case 1: /* v2 with random family, command and length */
            memcpy(buf, v2sig, 12);
            len = 12 + (size_t)(rand() % 300);
            for (size_t i = 12; i < len; i++)
                buf[i] = (uint8_t)rand();
            if (rand() & 1)
                buf[14] = 0;
            break;
        default:
            len = (size_t)(rand() % 130);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)rand();
            if (len)
                buf[0] = (rand() & 1) ? 'P' : '\r';
            break;
        }
        int rc = proxy(buf, len, &ss);
        assert_true(rc == -1 || rc == -2 || (rc > 0 && (size_t)rc <= len));
        if (rc > 0)
            assert_true(ss.ss_family == AF_UNSPEC || ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_parse_simple_get),
        cmocka_unit_test(test_http_parse_returns_head_length_only),
        cmocka_unit_test(test_http_parse_http10_and_bare_lf),
        cmocka_unit_test(test_http_parse_trims_value_whitespace),
        cmocka_unit_test(test_http_parse_leading_empty_lines),
        cmocka_unit_test(test_http_parse_every_prefix_is_incomplete),
        cmocka_unit_test(test_http_parse_rejects_malformed),
        cmocka_unit_test(test_http_parse_accepts_high_bytes),
        cmocka_unit_test(test_http_parse_target_every_byte_at_every_offset),
        cmocka_unit_test(test_http_parse_too_many_headers),
        cmocka_unit_test(test_http_parse_random_bytes_never_overread),
        cmocka_unit_test(test_http_parse_mutations_never_overread),
        cmocka_unit_test(test_http_proxy_v1_tcp4),
        cmocka_unit_test(test_http_proxy_v1_tcp6),
        cmocka_unit_test(test_http_proxy_v1_unknown),
        cmocka_unit_test(test_http_proxy_v1_longest_line),
        cmocka_unit_test(test_http_proxy_v1_every_prefix_is_incomplete),
        cmocka_unit_test(test_http_proxy_v1_rejects_malformed),
        cmocka_unit_test(test_http_proxy_v2_tcp4_with_tlvs),
        cmocka_unit_test(test_http_proxy_v2_tcp6),
        cmocka_unit_test(test_http_proxy_v2_local_and_unspec),
        cmocka_unit_test(test_http_proxy_v2_rejects_malformed),
        cmocka_unit_test(test_http_proxy_random_bytes_never_overread),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
