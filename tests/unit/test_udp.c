/* Unit tests for lib/udp.c (BEP 15 packets, BEP 41 options: every malformed case) and
 * lib/udp_connid.c (ids across "hosts", expiry, forgery, other addresses, rotation). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/socket.h>

#include "lib/udp.h"
#include "lib/udp_connid.h"

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    return put32(put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A 98-byte announce: event, IP, numwant, port as given. */
static size_t announce_pkt(uint8_t *b, uint32_t event, uint32_t ip, int32_t numwant, uint16_t port)
{
    uint8_t *p = b;
    p = put64(p, 0x1122334455667788ULL);
    p = put32(p, UDP_ACTION_ANNOUNCE);
    p = put32(p, 0xdeadbeef);
    memset(p, 0xAA, 20);
    p += 20;
    memset(p, 0xBB, 20);
    p += 20;
    p = put64(p, 10);   /* downloaded */
    p = put64(p, 20);   /* left */
    p = put64(p, 30);   /* uploaded */
    p = put32(p, event);
    p = put32(p, ip);
    p = put32(p, 7);    /* key */
    p = put32(p, (uint32_t)numwant);
    *p++ = (uint8_t)(port >> 8);
    *p++ = (uint8_t)port;
    return (size_t)(p - b);
}

static void test_head_and_connect(void **state)
{
    (void)state;
    uint8_t b[32];
    struct udp_head h;

    put32(put32(put64(b, UDP_PROTOCOL_ID), UDP_ACTION_CONNECT), 42);
    assert_int_equal(udp_decode_head(b, 15, &h), UDP_ERR_SHORT);
    assert_int_equal(udp_decode_head(b, 16, &h), UDP_OK);
    assert_int_equal(h.action, 0);
    assert_int_equal(h.transaction_id, 42);
    assert_int_equal(udp_decode_connect(b, 16), UDP_OK);
    assert_int_equal(udp_decode_connect(b, 20), UDP_OK);   /* longer is allowed (BEP 15) */
    assert_int_equal(udp_decode_connect(b, 12), UDP_ERR_SHORT);
    put64(b, UDP_PROTOCOL_ID + 1);
    assert_int_equal(udp_decode_connect(b, 16), UDP_ERR_PROTOCOL_ID);
    put32(put64(b, UDP_PROTOCOL_ID), 9);
    assert_int_equal(udp_decode_connect(b, 16), UDP_ERR_ACTION);
}

static void test_announce_fields(void **state)
{
    (void)state;
    uint8_t b[128];
    struct udp_announce a;
    size_t n = announce_pkt(b, 2, 0, -1, 6881);

    assert_int_equal(n, UDP_ANNOUNCE_LEN);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(a.fields.event, ANNOUNCE_EVENT_STARTED);
    assert_true(a.fields.numwant_default);
    assert_int_equal(a.fields.port, 6881);
    assert_int_equal(a.fields.downloaded, 10);
    assert_int_equal(a.fields.left, 20);
    assert_int_equal(a.fields.uploaded, 30);
    assert_int_equal(a.key, 7);
    assert_false(a.fields.has_ip);
    assert_false(a.has_url);
    assert_true(udp_url_is_announce(&a));
    assert_int_equal(a.fields.info_hash[0], 0xAA);
    assert_int_equal(a.fields.peer_id[19], 0xBB);

    announce_pkt(b, 1, 0x01020304, 33, 1);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(a.fields.event, ANNOUNCE_EVENT_COMPLETED);
    assert_false(a.fields.numwant_default);
    assert_int_equal(a.fields.numwant, 33);
    assert_true(a.fields.has_ip);
    assert_int_equal(a.fields.ip.family, AF_INET);
    assert_int_equal(a.fields.ip.addr[0], 1);
    assert_int_equal(a.fields.ip.addr[3], 4);
    announce_pkt(b, 3, 0, -5, 1);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(a.fields.event, ANNOUNCE_EVENT_STOPPED);
    assert_true(a.fields.numwant_default);
    announce_pkt(b, 0, 0, 0, 1);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(a.fields.event, ANNOUNCE_EVENT_NONE);
}

static void test_announce_malformed(void **state)
{
    (void)state;
    uint8_t b[128];
    struct udp_announce a;
    size_t n = announce_pkt(b, 4, 0, -1, 6881);

    assert_int_equal(udp_decode_announce(b, n, &a), UDP_ERR_EVENT);
    announce_pkt(b, 0, 0, -1, 6881);
    assert_int_equal(udp_decode_announce(b, n - 1, &a), UDP_ERR_SHORT);
    assert_int_equal(udp_decode_announce(b, 16, &a), UDP_ERR_SHORT);
    put32(b + 8, UDP_ACTION_SCRAPE);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_ERR_ACTION);
}

static void test_announce_validate_shared(void **state)
{
    (void)state;
    uint8_t b[128];
    struct udp_announce a;
    struct announce_limits lim = { .numwant_default = 50, .numwant_max = 200, .scrape_max_hashes = 64 };
    struct announce_req req;
    size_t n = announce_pkt(b, 0, 0, -1, 0);

    memset(&req, 0, sizeof(req));
    req.peer.family = AF_INET;
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(announce_validate(&a.fields, &lim, &req), ANNOUNCE_ERR_PORT_INVALID);
    announce_pkt(b, 0, 0, -1, 9);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(announce_validate(&a.fields, &lim, &req), ANNOUNCE_OK);
    assert_int_equal(req.numwant, 50);
    assert_int_equal(req.peer.port, 9);
    announce_pkt(b, 0, 0x0a000001, 100000, 9);
    assert_int_equal(udp_decode_announce(b, n, &a), UDP_OK);
    assert_int_equal(announce_validate(&a.fields, &lim, &req), ANNOUNCE_OK);
    assert_int_equal(req.numwant, 200);      /* capped */
    assert_int_equal(req.peer.addr[0], 0);   /* IP field ignored without allow_ip_param */
    lim.allow_ip_param = true;
    assert_int_equal(announce_validate(&a.fields, &lim, &req), ANNOUNCE_OK);
    assert_int_equal(req.peer.addr[0], 10);
}

static void test_options(void **state)
{
    (void)state;
    uint8_t b[512];
    struct udp_announce a;
    size_t n = announce_pkt(b, 0, 0, -1, 1);

    /* NOP, URLData "/ann", URLData "ounce", End, garbage after End */
    static const uint8_t opt[] = { 1, 2, 4, '/', 'a', 'n', 'n', 2, 5, 'o', 'u', 'n', 'c', 'e', 0, 0xff, 0xff };
    memcpy(b + n, opt, sizeof(opt));
    assert_int_equal(udp_decode_announce(b, n + sizeof(opt), &a), UDP_OK);
    assert_true(a.has_url);
    assert_int_equal(a.url_len, 9);
    assert_memory_equal(a.url, "/announce", 9);
    assert_true(udp_url_is_announce(&a));

    /* "/announce?x=1" is the announce path; "/secret/announce" is not (yet) */
    static const uint8_t q[] = { 2, 13, '/', 'a', 'n', 'n', 'o', 'u', 'n', 'c', 'e', '?', 'x', '=', '1' };
    memcpy(b + n, q, sizeof(q));
    assert_int_equal(udp_decode_announce(b, n + sizeof(q), &a), UDP_OK);
    assert_true(udp_url_is_announce(&a));
    static const uint8_t pk[] = { 2, 16, '/', 's', 'e', 'c', 'r', 'e', 't', '/', 'a', 'n', 'n', 'o', 'u', 'n', 'c', 'e' };
    memcpy(b + n, pk, sizeof(pk));
    assert_int_equal(udp_decode_announce(b, n + sizeof(pk), &a), UDP_OK);
    assert_false(udp_url_is_announce(&a));
    static const uint8_t empty[] = { 2, 0 };
    memcpy(b + n, empty, sizeof(empty));
    assert_int_equal(udp_decode_announce(b, n + sizeof(empty), &a), UDP_OK);
    assert_true(a.has_url);
    assert_true(udp_url_is_announce(&a));

    /* malformed: a URLData without its length byte, a length past the end, an unknown option
     * cut short; an unknown option that fits is skipped */
    static const uint8_t nolen[] = { 2 };
    memcpy(b + n, nolen, sizeof(nolen));
    assert_int_equal(udp_decode_announce(b, n + sizeof(nolen), &a), UDP_ERR_OPTIONS);
    static const uint8_t past[] = { 2, 5, 'a', 'b' };
    memcpy(b + n, past, sizeof(past));
    assert_int_equal(udp_decode_announce(b, n + sizeof(past), &a), UDP_ERR_OPTIONS);
    static const uint8_t unk_short[] = { 9, 3, 0 };
    memcpy(b + n, unk_short, sizeof(unk_short));
    assert_int_equal(udp_decode_announce(b, n + sizeof(unk_short), &a), UDP_ERR_OPTIONS);
    static const uint8_t unk[] = { 9, 2, 0, 0, 1 };
    memcpy(b + n, unk, sizeof(unk));
    assert_int_equal(udp_decode_announce(b, n + sizeof(unk), &a), UDP_OK);
    assert_false(a.has_url);

    /* URL data over UDP_URL_DATA_MAX in total */
    size_t m = n;
    for (int i = 0; i < 2; i++) {
        b[m++] = 2;
        b[m++] = 200;
        memset(b + m, 'x', 200);
        m += 200;
    }
    assert_int_equal(udp_decode_announce(b, m, &a), UDP_ERR_URL_DATA_LONG);
}

static void test_scrape(void **state)
{
    (void)state;
    uint8_t b[16 + 75 * 20];
    struct udp_scrape s;

    put32(put32(put64(b, 1), UDP_ACTION_SCRAPE), 5);
    assert_int_equal(udp_decode_scrape(b, 15, &s), UDP_ERR_SHORT);
    assert_int_equal(udp_decode_scrape(b, 16, &s), UDP_ERR_SCRAPE_EMPTY);
    assert_int_equal(udp_decode_scrape(b, 16 + 19, &s), UDP_ERR_SCRAPE_PARTIAL);
    memset(b + 16, 0x11, 20);
    memset(b + 36, 0x22, 20);
    assert_int_equal(udp_decode_scrape(b, 56, &s), UDP_OK);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.info_hash[1][0], 0x22);
    assert_int_equal(udp_decode_scrape(b, 16 + 74 * 20, &s), UDP_OK);
    assert_int_equal(s.count, 74);
    assert_int_equal(udp_decode_scrape(b, 16 + 75 * 20, &s), UDP_ERR_SCRAPE_TOO_MANY);
    put32(b + 8, UDP_ACTION_ANNOUNCE);
    assert_int_equal(udp_decode_scrape(b, 56, &s), UDP_ERR_ACTION);
}

static void test_encoders(void **state)
{
    (void)state;
    uint8_t out[64];
    struct swarm_stats st = { .complete = 3, .incomplete = 4, .downloaded = 5 };
    uint8_t peers[3 * 6];

    assert_int_equal(udp_write_connect(out, 15, 1, 2), 0);
    assert_int_equal(udp_write_connect(out, 16, 1, 0x0102030405060708ULL), 16);
    assert_int_equal(get32(out), 0);
    assert_int_equal(get32(out + 4), 1);
    assert_int_equal(get32(out + 8), 0x01020304);

    memset(peers, 7, sizeof(peers));
    assert_int_equal(udp_write_announce(out, sizeof(out), 9, 1800, &st, peers, 3, 6), 38);
    assert_int_equal(get32(out), 1);
    assert_int_equal(get32(out + 8), 1800);
    assert_int_equal(get32(out + 12), 4);   /* leechers */
    assert_int_equal(get32(out + 16), 3);   /* seeders */
    assert_int_equal(udp_write_announce(out, 31, 9, 1800, &st, peers, 3, 6), 26);  /* as many as fit */
    assert_int_equal(udp_write_announce(out, 19, 9, 1800, &st, peers, 3, 6), 0);

    struct swarm_stats two[2] = { st, { 1, 2, 3 } };
    assert_int_equal(udp_write_scrape(out, sizeof(out), 9, two, 2), 32);
    assert_int_equal(get32(out + 8), 3);    /* seeders */
    assert_int_equal(get32(out + 12), 5);   /* completed */
    assert_int_equal(get32(out + 16), 4);   /* leechers */
    assert_int_equal(udp_write_scrape(out, 31, 9, two, 2), 0);

    assert_int_equal(udp_write_error(out, sizeof(out), 9, "nope"), 12);
    assert_int_equal(get32(out), 3);
    assert_memory_equal(out + 8, "nope", 4);
    assert_int_equal(udp_write_error(out, 10, 9, "nope"), 10);  /* cut: no amplification */
    assert_int_equal(udp_write_error(out, 7, 9, "nope"), 0);
    assert_string_equal(udp_reason(UDP_ERR_COUNT), "unknown error");
    for (int i = 1; i < UDP_ERR_COUNT; i++)
        assert_true(strlen(udp_reason((enum udp_err)i)) > 5);
}

static void test_connid(void **state)
{
    (void)state;
    struct udp_connid_keys a, b, other, rotated;
    struct peer_addr c4 = { .family = AF_INET, .addr = { 192, 0, 2, 1 }, .port = 1000 };
    struct peer_addr c4b = c4, c4port = c4;
    struct peer_addr c6 = { .family = AF_INET6, .addr = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 } };
    int64_t now = 1700000000;

    c4b.addr[3] = 2;
    c4port.port = 2000;
    assert_int_equal(udp_connid_init(&a, "s3cret", 6, NULL, 0), 0);
    assert_int_equal(udp_connid_init(&b, "s3cret", 6, "", 0), 0);      /* another host, same secret */
    assert_int_equal(udp_connid_init(&other, "other", 5, NULL, 0), 0);
    assert_int_equal(udp_connid_init(&rotated, "new", 3, "s3cret", 6), 0);

    uint64_t id = udp_connid_issue(&a, &c4, now);
    assert_int_equal(id >> 32, (uint64_t)now);
    assert_int_equal(udp_connid_check(&a, id, &c4, now, 120), UDP_CONNID_OK);
    assert_int_equal(udp_connid_check(&b, id, &c4, now + 100, 120), UDP_CONNID_OK);
    assert_int_equal(udp_connid_check(&b, id, &c4port, now, 120), UDP_CONNID_OK);   /* port moved */
    assert_int_equal(udp_connid_check(&a, id, &c4b, now, 120), UDP_CONNID_FORGED);  /* other address */
    assert_int_equal(udp_connid_check(&other, id, &c4, now, 120), UDP_CONNID_FORGED);
    assert_int_equal(udp_connid_check(&rotated, id, &c4, now, 120), UDP_CONNID_OK); /* previous secret */
    assert_int_equal(udp_connid_check(&a, id, &c4, now + 120, 120), UDP_CONNID_OK);
    assert_int_equal(udp_connid_check(&a, id, &c4, now + 121, 120), UDP_CONNID_EXPIRED);
    assert_int_equal(udp_connid_check(&a, id, &c4, now - UDP_CONNID_SKEW_S, 120), UDP_CONNID_OK);
    assert_int_equal(udp_connid_check(&a, id, &c4, now - UDP_CONNID_SKEW_S - 1, 120), UDP_CONNID_FUTURE);
    assert_int_equal(udp_connid_check(&a, id ^ 1, &c4, now, 120), UDP_CONNID_FORGED);
    /* a time moved forward with the old MAC is a forgery, not an extension */
    assert_int_equal(udp_connid_check(&a, id + (1ULL << 32), &c4, now, 120), UDP_CONNID_FORGED);

    uint64_t id6 = udp_connid_issue(&a, &c6, now);
    assert_int_equal(udp_connid_check(&b, id6, &c6, now, 120), UDP_CONNID_OK);
    assert_int_equal(udp_connid_check(&b, id6, &c4, now, 120), UDP_CONNID_FORGED);
    uint64_t idr = udp_connid_issue(&rotated, &c4, now);
    assert_int_equal(udp_connid_check(&a, idr, &c4, now, 120), UDP_CONNID_FORGED);  /* old hosts: not yet */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_and_connect),
        cmocka_unit_test(test_announce_fields),
        cmocka_unit_test(test_announce_malformed),
        cmocka_unit_test(test_announce_validate_shared),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_scrape),
        cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_connid),
    };

    return cmocka_run_group_tests_name("udp", tests, NULL, NULL);
}
