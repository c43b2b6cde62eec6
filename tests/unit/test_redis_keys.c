/* Unit tests of storage/redis_keys.c: key names, member text and its decoding. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "storage/redis_keys.h"

static const uint8_t hash_bytes[ANNOUNCE_HASH_LEN] = {
    0x00, 0x01, 0x02, 0x0a, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff,
    0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0,
};
#define HASH_HEX "0001020a7f80abcdefff102030405060708090a0"

static struct peer_addr peer_v4(const char *text, uint16_t port)
{
    struct peer_addr p;

    memset(&p, 0, sizeof(p));
    p.family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, text, p.addr), 1);
    p.port = port;
    return p;
}

static struct peer_addr peer_v6(const char *text, uint16_t port)
{
    struct peer_addr p;

    memset(&p, 0, sizeof(p));
    p.family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, p.addr), 1);
    p.port = port;
    return p;
}

static void test_redis_keys_swarm_names(void **state)
{
    char buf[128];
    (void)state;

    assert_int_equal(redis_keys_swarm(buf, sizeof(buf), "tyto:", hash_bytes, REDIS_KEYS_SEEDERS),
                     (int)strlen("tyto:{" HASH_HEX "}:seeders"));
    assert_string_equal(buf, "tyto:{" HASH_HEX "}:seeders");
    redis_keys_swarm(buf, sizeof(buf), "tyto:", hash_bytes, REDIS_KEYS_LEECHERS);
    assert_string_equal(buf, "tyto:{" HASH_HEX "}:leechers");
    redis_keys_swarm(buf, sizeof(buf), "x", hash_bytes, REDIS_KEYS_INFO);
    assert_string_equal(buf, "x{" HASH_HEX "}:info");
    redis_keys_swarm(buf, sizeof(buf), "", hash_bytes, REDIS_KEYS_INFO);
    assert_string_equal(buf, "{" HASH_HEX "}:info");
    redis_keys_swarm(buf, sizeof(buf), "tyto:", hash_bytes, REDIS_KEYS_STATS);
    assert_string_equal(buf, "tyto:{" HASH_HEX "}:stats");
    redis_keys_swarm(buf, sizeof(buf), "tyto:", hash_bytes, REDIS_KEYS_UPLOADS);
    assert_string_equal(buf, "tyto:{" HASH_HEX "}:uploads");
}

static void test_redis_keys_swarm_too_small(void **state)
{
    const char *want = "tyto:{" HASH_HEX "}:info";
    char buf[128];
    (void)state;

    /* Exactly enough room (with the NUL) works; one byte less does not. */
    assert_int_equal(redis_keys_swarm(buf, strlen(want) + 1, "tyto:", hash_bytes, REDIS_KEYS_INFO),
                     (int)strlen(want));
    assert_int_equal(redis_keys_swarm(buf, strlen(want), "tyto:", hash_bytes, REDIS_KEYS_INFO), -1);
    assert_int_equal(redis_keys_swarm(buf, sizeof(buf), "tyto:", hash_bytes, (enum redis_keys_kind)7), -1);
}

static void test_redis_keys_member_v4(void **state)
{
    struct peer_addr p = peer_v4("1.2.3.4", 6881);
    char buf[REDIS_KEYS_MEMBER_MAX];
    (void)state;

    assert_int_equal(redis_keys_member(buf, sizeof(buf), &p), 12);
    assert_string_equal(buf, "1.2.3.4:6881");
    p = peer_v4("255.255.255.255", 65535);
    redis_keys_member(buf, sizeof(buf), &p);
    assert_string_equal(buf, "255.255.255.255:65535");
    p = peer_v4("0.0.0.0", 0);
    redis_keys_member(buf, sizeof(buf), &p);
    assert_string_equal(buf, "0.0.0.0:0");
}

static void test_redis_keys_member_v6(void **state)
{
    struct peer_addr p = peer_v6("2001:db8::1", 51413);
    char buf[REDIS_KEYS_MEMBER_MAX];
    (void)state;

    redis_keys_member(buf, sizeof(buf), &p);
    assert_string_equal(buf, "[2001:db8::1]:51413");
    p = peer_v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    redis_keys_member(buf, sizeof(buf), &p);
    assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

static void test_redis_keys_member_v4_mapped_is_v4(void **state)
{
    struct peer_addr p = peer_v6("::ffff:10.0.0.7", 80);
    uint8_t out[REDIS_KEYS_PEER_MAX];
    char buf[REDIS_KEYS_MEMBER_MAX];
    (void)state;

    redis_keys_member(buf, sizeof(buf), &p);
    assert_string_equal(buf, "10.0.0.7:80");
    assert_int_equal(redis_keys_peer_compact(&p, out), 6);
    assert_memory_equal(out, "\x0a\x00\x00\x07\x00\x50", 6);
}

static void test_redis_keys_member_rejects_bad_input(void **state)
{
    struct peer_addr p = peer_v6("2001:db8::1", 51413);
    char buf[REDIS_KEYS_MEMBER_MAX];
    (void)state;

    assert_int_equal(redis_keys_member(buf, 10, &p), -1);
    p.family = AF_UNIX;
    assert_int_equal(redis_keys_member(buf, sizeof(buf), &p), -1);
    assert_int_equal(redis_keys_peer_compact(&p, (uint8_t *)buf), -1);
}

static void test_redis_keys_compact_round_trip(void **state)
{
    static const char *const v4[] = { "1.2.3.4", "0.0.0.0", "255.255.255.255", "192.168.1.10" };
    static const char *const v6[] = { "::", "::1", "2001:db8::1", "fe80::1:2:3:4",
                                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" };
    static const uint16_t ports[] = { 0, 1, 80, 6881, 65535 };
    uint8_t want[REDIS_KEYS_PEER_MAX], got[REDIS_KEYS_PEER_MAX];
    char buf[REDIS_KEYS_MEMBER_MAX];
    struct peer_addr p;
    size_t i, j;
    int n;
    (void)state;

    for (i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        for (j = 0; j < sizeof(ports) / sizeof(ports[0]); j++) {
            p = peer_v4(v4[i], ports[j]);
            n = redis_keys_member(buf, sizeof(buf), &p);
            assert_true(n > 0);
            assert_int_equal(redis_keys_peer_compact(&p, want), 6);
            assert_int_equal(redis_keys_member_compact(buf, (size_t)n, got), 6);
            assert_memory_equal(got, want, 6);
        }
    }
    for (i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
        for (j = 0; j < sizeof(ports) / sizeof(ports[0]); j++) {
            p = peer_v6(v6[i], ports[j]);
            n = redis_keys_member(buf, sizeof(buf), &p);
            assert_true(n > 0);
            assert_int_equal(redis_keys_peer_compact(&p, want), 18);
            assert_int_equal(redis_keys_member_compact(buf, (size_t)n, got), 18);
            assert_memory_equal(got, want, 18);
        }
    }
}

static void test_redis_keys_compact_bytes(void **state)
{
    uint8_t out[REDIS_KEYS_PEER_MAX];
    (void)state;

    assert_int_equal(redis_keys_member_compact("1.2.3.4:6881", 12, out), 6);
    assert_memory_equal(out, "\x01\x02\x03\x04\x1a\xe1", 6);
    assert_int_equal(redis_keys_member_compact("[2001:db8::1]:256", 17, out), 18);
    assert_memory_equal(out, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\x01\x00", 18);
    /* Not NUL-terminated: only len bytes count. */
    assert_int_equal(redis_keys_member_compact("1.2.3.4:68819999", 12, out), 6);
    assert_memory_equal(out, "\x01\x02\x03\x04\x1a\xe1", 6);
}

static void test_redis_keys_compact_rejects_garbage(void **state)
{
    static const char *const bad[] = {
        "", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:123456", "1.2.3.4:-1", "1.2.3.4:+1",
        "1.2.3:80", "1.2.3.4.5:80", "256.1.1.1:80", "a.b.c.d:80", ":80", "1.2.3.4:8a",
        "[::1]", "[::1]:", "[::1]80", "::1:80", "[]:80", "[::g]:80", "[1.2.3.4]:80", "[::1:80",
        "1.2.3.4 :80", "1.2.3.4:80 ",
        /* non-canonical forms of members redis_keys_member writes (fuzz/README.md) */
        "1.2.3.4:0080", "1.2.3.4:00000", "01.2.3.4:80", "[::ffff:1.2.3.4]:80", "[2001:DB8:0::1]:6881",
        "[2001:db8:0:0:0:0:0:1]:6881",
    };
    /* a NUL inside the address (found by fuzz_redis_member) */
    static const char nul4[] = "192.0.3.1\0:881", nul6[] = "[::1\0]:80";
    uint8_t out[REDIS_KEYS_PEER_MAX];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (redis_keys_member_compact(bad[i], strlen(bad[i]), out) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(redis_keys_member_compact(nul4, sizeof(nul4) - 1, out), -1);
    assert_int_equal(redis_keys_member_compact(nul6, sizeof(nul6) - 1, out), -1);
}

/* The one-pass IPv4 parser against the writer: 200,000 random strings over "0123456789.:" (and
 * the digit runs that make octets and ports near their limits) are accepted exactly when they are
 * the text redis_keys_member writes for the bytes they parse to. Strict parsing means no second
 * spelling of a peer ever gets in. */
static void test_redis_keys_compact_v4_matches_writer(void **state)
{
    static const char *const parts[] = { "0", "1", "9", "00", "01", "25", "255", "256", "999", "1000",
                                         "65535", "65536", "6881", ".", ":", "" };
    unsigned long long x = 88172645463325252ULL;
    unsigned accepted = 0, i;
    (void)state;

    for (i = 0; i < 200000; i++) {
        char text[64], back[64];
        uint8_t out[REDIS_KEYS_PEER_MAX];
        struct peer_addr p;
        size_t len = 0;
        int k, n, pieces;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pieces = x % 2 ? 9 : 1 + (int)(x / 2 % 9);
        for (k = 0; k < pieces; k++) {
            const char *part;

            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly the well-formed skeleton a.b.c.d:p, with random fields */
            part = (pieces == 9 && k % 2 == 1) ? (k == 7 ? ":" : ".") : parts[x % 16];
            if (pieces == 9 && k % 2 == 0)
                part = parts[x % 12];
            if (len + strlen(part) >= sizeof(text))
                break;
            memcpy(text + len, part, strlen(part));
            len += strlen(part);
        }
        text[len] = '\0';
        n = redis_keys_member_compact(text, len, out);
        if (n < 0)
            continue;
        assert_int_equal(n, PEER_COMPACT4_LEN);
        memset(&p, 0, sizeof(p));
        p.family = AF_INET;
        memcpy(p.addr, out, 4);
        p.port = (uint16_t)(out[4] << 8 | out[5]);
        assert_int_equal(redis_keys_member(back, sizeof(back), &p), (int)len);
        assert_string_equal(back, text);
        accepted++;
    }
    assert_true(accepted > 1000);          /* the generator reaches the valid forms */
}

/* The three keys at once are the three keys one at a time, for any prefix; no room, no keys. */
static void test_redis_keys_swarm3_matches_swarm(void **state)
{
    static const char *const prefixes[] = { "", "tyto:", "a-much-longer-prefix-of-32-chars:" };
    uint8_t h[ANNOUNCE_HASH_LEN];
    char s[128], l[128], i3[128], want[128];
    (void)state;

    for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
        for (int k = 0; k < 50; k++) {
            for (size_t b = 0; b < sizeof(h); b++)
                h[b] = (uint8_t)(k * 37 + b * 11 + p);
            assert_int_equal(redis_keys_swarm3(s, l, i3, sizeof(s), prefixes[p], h), 0);
            redis_keys_swarm(want, sizeof(want), prefixes[p], h, REDIS_KEYS_SEEDERS);
            assert_string_equal(s, want);
            redis_keys_swarm(want, sizeof(want), prefixes[p], h, REDIS_KEYS_LEECHERS);
            assert_string_equal(l, want);
            redis_keys_swarm(want, sizeof(want), prefixes[p], h, REDIS_KEYS_INFO);
            assert_string_equal(i3, want);
        }
        /* exactly the leechers key's room, and one byte less */
        size_t need = strlen(l) + 1;
        assert_int_equal(redis_keys_swarm3(s, l, i3, need, prefixes[p], h), 0);
        assert_int_equal(redis_keys_swarm3(s, l, i3, need - 1, prefixes[p], h), -1);
    }
}

/* The hand-written writers against printf's: every port and address byte, and the edges of int64. */
static void test_redis_keys_writers_match_printf(void **state)
{
    static const int64_t edges[] = { 0, 1, -1, 9, 10, -10, 99, 100, 1733480000, -1733480000, INT64_MAX,
                                     INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 4294967295LL, 4294967296LL };
    char got[32], want[32];
    unsigned long long x = 88172645463325252ULL;
    struct peer_addr p;
    (void)state;

    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        snprintf(want, sizeof(want), "%lld", (long long)edges[i]);
        assert_int_equal(redis_keys_i64(got, edges[i]), strlen(want));
        assert_string_equal(got, want);
    }
    memset(&p, 0, sizeof(p));
    p.family = AF_INET;
    for (unsigned port = 0; port <= 65535; port++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(p.addr, &x, 4);
        p.addr[port % 4] = (uint8_t)(port % 256);      /* every byte value in every place */
        p.port = (uint16_t)port;
        snprintf(want, sizeof(want), "%u.%u.%u.%u:%u", p.addr[0], p.addr[1], p.addr[2], p.addr[3], port);
        assert_int_equal(redis_keys_member(got, sizeof(got), &p), (int)strlen(want));
        assert_string_equal(got, want);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(want, sizeof(want), "%lld", (long long)x);
        redis_keys_i64(got, (int64_t)x);
        assert_string_equal(got, want);
    }
    /* room for "255.255.255.255:65535" and its NUL, not one byte less */
    memset(p.addr, 255, 4);
    p.port = 65535;
    assert_int_equal(redis_keys_member(got, 22, &p), 21);
    assert_int_equal(redis_keys_member(got, 21, &p), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_keys_swarm_names),
        cmocka_unit_test(test_redis_keys_swarm_too_small),
        cmocka_unit_test(test_redis_keys_member_v4),
        cmocka_unit_test(test_redis_keys_member_v6),
        cmocka_unit_test(test_redis_keys_member_v4_mapped_is_v4),
        cmocka_unit_test(test_redis_keys_member_rejects_bad_input),
        cmocka_unit_test(test_redis_keys_compact_round_trip),
        cmocka_unit_test(test_redis_keys_compact_bytes),
        cmocka_unit_test(test_redis_keys_compact_rejects_garbage),
        cmocka_unit_test(test_redis_keys_compact_v4_matches_writer),
        cmocka_unit_test(test_redis_keys_writers_match_printf),
        cmocka_unit_test(test_redis_keys_swarm3_matches_swarm),
    };

    return cmocka_run_group_tests_name("redis_keys", tests, NULL, NULL);
}
