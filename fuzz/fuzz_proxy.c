/* libFuzzer target for http_proxy_parse() in lib/http.c (PROXY protocol v1 and v2): the input is
 * what a trusted proxy sends first. An accepted header lies inside the input and within the
 * protocol's size limits, yields AF_UNSPEC, AF_INET or AF_INET6, and every proper prefix of it
 * is "incomplete". The source it gave is written again as a canonical v1 line and as a v2 block,
 * and both must parse back to the same address and port. The bytes after the header go on to
 * http_parse_head(), as they do on a connection. */
#include "fuzz/fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lib/http.h"

static const uint8_t fuzz_v2_sig[12] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };

/* Same family, address and port. */
static int fuzz_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 1;
}

/* Parses buf[0..len) from an exact-size copy and expects all of it to be consumed. */
static void fuzz_expect(const void *buf, size_t len, const struct sockaddr_storage *want)
{
    char *copy = fuzz_dup(buf, len);
    struct sockaddr_storage got;

    memset(&got, 0x33, sizeof(got));
    FUZZ_CHECK(http_proxy_parse((const uint8_t *)copy, len, &got) == (int)len);
    FUZZ_CHECK(fuzz_same(&got, want));
    FUZZ_CHECK(http_proxy_parse((const uint8_t *)copy, len - 1, &got) == -2);
    free(copy);
}

static void fuzz_rewrite(const struct sockaddr_storage *ss)
{
    char line[128], a[INET6_ADDRSTRLEN];
    uint8_t v2[16 + 36 + 8];
    int n;

    memcpy(v2, fuzz_v2_sig, 12);
    v2[12] = 0x21;                                   /* version 2, PROXY */
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)ss;

        FUZZ_CHECK(inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a)) != NULL);
        n = snprintf(line, sizeof(line), "PROXY TCP4 %s 192.0.2.1 %u 6969\r\n", a,
                     (unsigned)ntohs(s4->sin_port));
        v2[13] = 0x11;
        v2[14] = 0;
        v2[15] = 12 + 5;                             /* and a 5-byte TLV, to be skipped */
        memcpy(v2 + 16, &s4->sin_addr, 4);
        memcpy(v2 + 20, "\xc0\x00\x02\x01", 4);
        memcpy(v2 + 24, &s4->sin_port, 2);
        memcpy(v2 + 26, "\x1b\x39", 2);
        memcpy(v2 + 28, "\x04\x00\x02hi", 5);
        fuzz_expect(v2, 16 + 12 + 5, ss);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;

        FUZZ_CHECK(inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a)) != NULL);
        n = snprintf(line, sizeof(line), "PROXY TCP6 %s 2001:db8::1 %u 6969\r\n", a,
                     (unsigned)ntohs(s6->sin6_port));
        v2[13] = 0x21;
        v2[14] = 0;
        v2[15] = 36;
        memcpy(v2 + 16, &s6->sin6_addr, 16);
        memset(v2 + 32, 0x20, 16);
        memcpy(v2 + 48, &s6->sin6_port, 2);
        memcpy(v2 + 50, "\x1b\x39", 2);
        fuzz_expect(v2, 16 + 36, ss);
    } else {
        FUZZ_CHECK(ss->ss_family == AF_UNSPEC);
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
        v2[12] = 0x20;                               /* LOCAL */
        v2[13] = 0;
        v2[14] = 0;
        v2[15] = 0;
        fuzz_expect(v2, 16, ss);
    }
    FUZZ_CHECK(n > 0 && n <= 107);
    fuzz_expect(line, (size_t)n, ss);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = (uint8_t *)fuzz_dup(data, size);
    struct sockaddr_storage ss, ss2;
    int rc;

    memset(&ss, 0x33, sizeof(ss));
    rc = http_proxy_parse(buf, size, &ss);
    FUZZ_CHECK(rc > 0 || rc == -1 || rc == -2);
    if (rc > 0) {
        size_t n = (size_t)rc;
        struct http_head *h = malloc(sizeof(*h));

        FUZZ_CHECK(n <= size && h != NULL);
        FUZZ_CHECK(ss.ss_family == AF_UNSPEC || ss.ss_family == AF_INET ||
                   ss.ss_family == AF_INET6);
        if (buf[0] == 'P') {
            FUZZ_CHECK(n <= 107 && buf[n - 2] == '\r' && buf[n - 1] == '\n');
        } else {
            FUZZ_CHECK(n >= 16 && memcmp(buf, fuzz_v2_sig, 12) == 0);
            FUZZ_CHECK(n == 16 + ((size_t)buf[14] << 8 | buf[15]));
        }
        /* Bytes after the header are not looked at; a proper prefix is incomplete. */
        FUZZ_CHECK(http_proxy_parse(buf, n, &ss2) == rc && fuzz_same(&ss, &ss2));
        FUZZ_CHECK(http_proxy_parse(buf, n - 1, &ss2) == -2);
        FUZZ_CHECK(http_proxy_parse(buf, n / 2, &ss2) == -2);
        fuzz_rewrite(&ss);
        /* What follows is the first request's head. */
        (void)http_parse_head((const char *)buf + n, size - n, 64, h);
        free(h);
    } else if (rc == -2) {
        for (size_t k = size; k > 0 && k + 8 > size; k--)
            FUZZ_CHECK(http_proxy_parse(buf, k - 1, &ss2) == -2);
    }
    free(buf);
    return 0;
}
