/* Unit tests for lib/announce.c: every way a query can be wrong, the defaults and caps, ip=,
 * scrape hash lists, the reasons table, and that every reply is canonical bencoding with the
 * expected content. Parser inputs are also placed before a PROT_NONE page to catch overreads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "lib/announce.h"
#include "lib/bencode.h"
#include "lib/query.h"

/* 20 bytes 0x00..0x13, so %00 is inside; and a 20-byte peer id. */
#define IH "info_hash=%00%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13"
#define PID "peer_id=-TY0001-abcdefghijkl"
#define BASE IH "&" PID "&port=6881"

static const struct announce_limits lim_default = {
    .numwant_default = 50, .numwant_max = 200, .scrape_max_hashes = 64, .allow_ip_param = false,
};

/* ---- helpers ---- */

struct guard {
    uint8_t *map;
    size_t map_len;
};

static void *guard_put(struct guard *g, const void *s, size_t n)
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
    return dst;
}

static void guard_free(struct guard *g)
{
    munmap(g->map, g->map_len);
}

/* A request as the worker hands it over: client 10.0.0.1, a time, the rest garbage. */
static void req_init(struct announce_req *r)
{
    memset(r, 0xa5, sizeof(*r));
    memset(&r->peer, 0, sizeof(r->peer));
    r->peer.family = AF_INET;
    r->peer.addr[0] = 10;
    r->peer.addr[3] = 1;
    r->peer.port = 0;
    r->now_s = 1700000000;
}

static enum announce_err parse_lim(const char *q, const struct announce_limits *lim,
                                   struct announce_req *r)
{
    req_init(r);
    return announce_parse(q, strlen(q), lim, r);
}

static enum announce_err parse(const char *q, struct announce_req *r)
{
    return parse_lim(q, &lim_default, r);
}

static enum announce_err parse_only(const char *q)
{
    struct announce_req r;

    return parse(q, &r);
}

static enum announce_err parse_ip(const char *q, struct announce_req *r)
{
    struct announce_limits lim = lim_default;

    lim.allow_ip_param = true;
    return parse_lim(q, &lim, r);
}

static enum announce_err scrape(const char *q, unsigned max, struct scrape_req *r)
{
    struct announce_limits lim = lim_default;

    lim.scrape_max_hashes = max;
    r->now_s = 1234;
    return scrape_parse(q, strlen(q), &lim, r);
}

/* Checks that out holds exactly one canonical bencoded value; returns it flattened. */
static const uint8_t *flat_checked(struct evbuffer *out, size_t *len)
{
    *len = evbuffer_get_length(out);
    const uint8_t *p = evbuffer_pullup(out, -1);
    assert_non_null(p);
    assert_int_equal(bencode_check(p, *len), (int)*len);
    return p;
}

static int64_t dict_int(const uint8_t *d, size_t len, const char *key)
{
    const uint8_t *v;
    size_t vlen;
    int64_t i;

    if (bencode_dict_get(d, len, key, &v, &vlen) < 0)
        fail_msg("no key %s", key);
    assert_int_equal(bencode_get_int(v, vlen, &i), 0);
    return i;
}

static const uint8_t *dict_str(const uint8_t *d, size_t len, const char *key, size_t *slen)
{
    const uint8_t *v, *s;
    size_t vlen;

    if (bencode_dict_get(d, len, key, &v, &vlen) < 0)
        fail_msg("no key %s", key);
    assert_int_equal(bencode_get_str(v, vlen, &s, slen), 0);
    return s;
}

static int dict_has(const uint8_t *d, size_t len, const char *key)
{
    const uint8_t *v;
    size_t vlen;

    return bencode_dict_get(d, len, key, &v, &vlen) == 0;
}

/* ---- announce_parse: good requests ---- */

static void test_announce_parses_minimal_request(void **state)
{
    struct announce_req r;
    uint8_t want_ih[20];

    (void)state;
    for (int i = 0; i < 20; i++)
        want_ih[i] = (uint8_t)i;
    assert_int_equal(parse(BASE, &r), ANNOUNCE_OK);
    assert_memory_equal(r.info_hash, want_ih, 20);        /* %00 inside is fine */
    assert_memory_equal(r.peer_id, "-TY0001-abcdefghijkl", 20);
    assert_int_equal(r.peer.port, 6881);
    assert_int_equal(r.peer.family, AF_INET);
    assert_int_equal(r.peer.addr[0], 10);
    assert_int_equal(r.peer.addr[3], 1);
    assert_true(r.uploaded == 0);
    assert_true(r.downloaded == 0);
    assert_true(r.left == UINT64_MAX);                    /* unknown: not a seeder */
    assert_int_equal(r.event, ANNOUNCE_EVENT_NONE);
    assert_int_equal(r.numwant, 50);
    assert_true(r.compact);
    assert_false(r.no_peer_id);
    assert_true(r.now_s == 1700000000);
}

static void test_announce_parses_full_request(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse("port=65535&uploaded=18446744073709551615&downloaded=2&left=0"
                           "&event=completed&numwant=10&compact=1&no_peer_id=1&key=%zz"
                           "&trackerid=x&supportcrypto=1&corrupt=0&ipv4=%&ipv6=::1&requirecrypto"
                           "&&" PID "&" IH, &r),
                     ANNOUNCE_OK);
    assert_int_equal(r.peer.port, 65535);
    assert_true(r.uploaded == UINT64_MAX);
    assert_true(r.downloaded == 2);
    assert_true(r.left == 0);
    assert_int_equal(r.event, ANNOUNCE_EVENT_COMPLETED);
    assert_int_equal(r.numwant, 10);
    assert_true(r.compact);
    assert_true(r.no_peer_id);
}

static void test_announce_decodes_plain_and_plus(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse("info_hash=aaaaaaaaaaaaaaaaaaa+&" PID "&port=%36%38%38%31", &r),
                     ANNOUNCE_OK);
    assert_memory_equal(r.info_hash, "aaaaaaaaaaaaaaaaaaa ", 20);
    assert_int_equal(r.peer.port, 6881);
}

static void test_announce_parses_events(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse(BASE "&event=started", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_STARTED);
    assert_int_equal(parse(BASE "&event=stopped", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_STOPPED);
    assert_int_equal(parse(BASE "&event=completed", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_COMPLETED);
    assert_int_equal(parse(BASE "&event=paused", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_NONE);
    assert_int_equal(parse(BASE "&event=", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_NONE);
    assert_int_equal(parse(BASE "&event", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_NONE);
    assert_int_equal(parse(BASE "&event=%73tarted", &r), ANNOUNCE_OK);
    assert_int_equal(r.event, ANNOUNCE_EVENT_STARTED);
}

static void test_announce_numwant_default_and_cap(void **state)
{
    struct announce_req r;
    struct announce_limits lim = lim_default;

    (void)state;
    assert_int_equal(parse(BASE "&numwant=0", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 0);
    assert_int_equal(parse(BASE "&numwant=200", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 200);
    assert_int_equal(parse(BASE "&numwant=201", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 200);
    assert_int_equal(parse(BASE "&numwant=4294967296", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 200);
    assert_int_equal(parse(BASE "&numwant=18446744073709551615", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 200);
    /* missing, empty or negative (BEP 15's -1, which clients send over HTTP too): the default */
    assert_int_equal(parse(BASE, &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    assert_int_equal(parse(BASE "&numwant=-1", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    assert_int_equal(parse(BASE "&numwant=", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    assert_int_equal(parse(BASE "&numwant", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    assert_int_equal(parse(BASE "&numwant=%2D1", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    assert_int_equal(parse(BASE "&numwant=-0", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    assert_int_equal(parse(BASE "&numwant=-18446744073709551615", &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 50);
    /* a default above the maximum is capped too, also when asked for with -1 */
    lim.numwant_default = 500;
    assert_int_equal(parse_lim(BASE, &lim, &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 200);
    assert_int_equal(parse_lim(BASE "&numwant=-1", &lim, &r), ANNOUNCE_OK);
    assert_int_equal(r.numwant, 200);
}

/* uploaded, downloaded and left take every value from 0 to 2^64 - 1, and nothing past it. */
static void test_announce_counters_full_range(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse(BASE "&uploaded=18446744073709551615&downloaded=18446744073709551615"
                                "&left=18446744073709551615", &r), ANNOUNCE_OK);
    assert_true(r.uploaded == UINT64_MAX && r.downloaded == UINT64_MAX && r.left == UINT64_MAX);
    assert_int_equal(parse(BASE "&uploaded=0&downloaded=00000000000000000000&left=0", &r), ANNOUNCE_OK);
    assert_true(r.uploaded == 0 && r.downloaded == 0 && r.left == 0);
    assert_int_equal(parse(BASE "&left=18446744073709551614", &r), ANNOUNCE_OK);
    assert_true(r.left == UINT64_MAX - 1);
    assert_int_equal(parse_only(BASE "&uploaded=18446744073709551616"), ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&downloaded=18446744073709551616"), ANNOUNCE_ERR_DOWNLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&left=18446744073709551616"), ANNOUNCE_ERR_LEFT_INVALID);
    assert_int_equal(parse_only(BASE "&left=99999999999999999999"), ANNOUNCE_ERR_LEFT_INVALID);
    assert_int_equal(parse_only(BASE "&downloaded=-1"), ANNOUNCE_ERR_DOWNLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&downloaded="), ANNOUNCE_ERR_DOWNLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&left="), ANNOUNCE_ERR_LEFT_INVALID);
}

static void test_announce_compact_zero(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse(BASE "&compact=0", &r), ANNOUNCE_OK);
    assert_false(r.compact);
    assert_int_equal(parse(BASE "&compact=1", &r), ANNOUNCE_OK);
    assert_true(r.compact);
    assert_int_equal(parse_only(BASE "&compact=2"), ANNOUNCE_ERR_COMPACT_INVALID);
    assert_int_equal(parse_only(BASE "&compact="), ANNOUNCE_ERR_COMPACT_INVALID);
    assert_int_equal(parse_only(BASE "&compact=01"), ANNOUNCE_ERR_COMPACT_INVALID);
    assert_int_equal(parse_only(BASE "&compact=true"), ANNOUNCE_ERR_COMPACT_INVALID);
    assert_int_equal(parse_only(BASE "&compact=%4"), ANNOUNCE_ERR_ENCODING);
}

static void test_announce_no_peer_id_values(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse(BASE "&no_peer_id=0", &r), ANNOUNCE_OK);
    assert_false(r.no_peer_id);
    assert_int_equal(parse(BASE "&no_peer_id=yes", &r), ANNOUNCE_OK);
    assert_false(r.no_peer_id);
    assert_int_equal(parse_only(BASE "&no_peer_id=%z1"), ANNOUNCE_ERR_ENCODING);
    assert_int_equal(parse_only(BASE "&no_peer_id=1&no_peer_id=1"), ANNOUNCE_ERR_PARAM_REPEATED);
}

/* ---- announce_parse: info_hash and peer_id ---- */

static void test_announce_rejects_missing_info_hash(void **state)
{
    (void)state;
    assert_int_equal(parse_only(PID "&port=1"), ANNOUNCE_ERR_INFO_HASH_MISSING);
    assert_int_equal(parse_only(""), ANNOUNCE_ERR_INFO_HASH_MISSING);
    assert_int_equal(parse_only("info_hash2=aaaaaaaaaaaaaaaaaaaa&" PID "&port=1"),
                     ANNOUNCE_ERR_INFO_HASH_MISSING);
    /* keys are compared raw: an encoded key is some other parameter */
    assert_int_equal(parse_only("info%5Fhash=aaaaaaaaaaaaaaaaaaaa&" PID "&port=1"),
                     ANNOUNCE_ERR_INFO_HASH_MISSING);
}

static void test_announce_rejects_bad_info_hash_length(void **state)
{
    (void)state;
    assert_int_equal(parse_only("info_hash=aaaaaaaaaaaaaaaaaaa&" PID "&port=1"),
                     ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(parse_only("info_hash=aaaaaaaaaaaaaaaaaaaaa&" PID "&port=1"),
                     ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(parse_only("info_hash=&" PID "&port=1"), ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(parse_only("info_hash&" PID "&port=1"), ANNOUNCE_ERR_INFO_HASH_LENGTH);
    /* 40 hex digits are 40 bytes, not a hash */
    assert_int_equal(parse_only("info_hash=000102030405060708090a0b0c0d0e0f10111213&" PID
                                "&port=1"),
                     ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(parse_only("info_hash=%00%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10"
                                "%11%12&" PID "&port=1"),
                     ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(parse_only(IH "%14&" PID "&port=1"), ANNOUNCE_ERR_INFO_HASH_LENGTH);
}

/* Concatenates a, b and c into q (no format strings: the queries are full of '%'). */
static const char *cat3(char *q, size_t cap, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);

    assert_true(la + lb + lc < cap);
    memcpy(q, a, la);
    memcpy(q + la, b, lb);
    memcpy(q + la + lb, c, lc + 1);
    return q;
}

static void test_announce_rejects_broken_escapes(void **state)
{
    static const char *const bad[] = { "%", "%4", "%zz", "%4g" };
    char q[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* a broken escape wins over a wrong length, in any position */
        cat3(q, sizeof(q), "info_hash=", bad[i], "&" PID "&port=1");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), "info_hash=aaaaaaaaaaaaaaaaaaaa", bad[i], "&" PID "&port=1");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), "info_hash=aaaaaaaaaaaaaaaaaaa", bad[i], "&" PID "&port=1");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), IH "&peer_id=", bad[i], "&port=1");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), BASE "&uploaded=1", bad[i], "");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), BASE "&event=", bad[i], "");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), IH "&" PID "&port=", bad[i], "");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
        cat3(q, sizeof(q), BASE "&numwant=12345678901234567890123", bad[i], "");
        assert_int_equal(parse_only(q), ANNOUNCE_ERR_ENCODING);
    }
}

static void test_announce_rejects_bad_peer_id(void **state)
{
    (void)state;
    assert_int_equal(parse_only(IH "&port=1"), ANNOUNCE_ERR_PEER_ID_MISSING);
    assert_int_equal(parse_only(IH "&peer_id=-TY0001-abcdefghijk&port=1"),
                     ANNOUNCE_ERR_PEER_ID_LENGTH);
    assert_int_equal(parse_only(IH "&peer_id=-TY0001-abcdefghijklm&port=1"),
                     ANNOUNCE_ERR_PEER_ID_LENGTH);
    assert_int_equal(parse_only(IH "&peer_id=&port=1"), ANNOUNCE_ERR_PEER_ID_LENGTH);
}

/* ---- announce_parse: numbers ---- */

static void test_announce_rejects_bad_port(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse_only(IH "&" PID), ANNOUNCE_ERR_PORT_MISSING);
    assert_int_equal(parse_only(IH "&" PID "&port=0"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port=65536"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port=-1"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port=abc"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port="), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port=+1"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port=1%20"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only(IH "&" PID "&port=18446744073709551617"),
                     ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse(IH "&" PID "&port=1", &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.port, 1);
    assert_int_equal(parse(IH "&" PID "&port=00080", &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.port, 80);
}

static void test_announce_rejects_bad_counters(void **state)
{
    (void)state;
    assert_int_equal(parse_only(BASE "&uploaded=-1"), ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&uploaded=x"), ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&uploaded="), ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&uploaded=18446744073709551616"),
                     ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&uploaded=100000000000000000000"),  /* 21 digits */
                     ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&uploaded=000000000000000000001"),  /* 21 digits */
                     ANNOUNCE_ERR_UPLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&downloaded=-5"), ANNOUNCE_ERR_DOWNLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&downloaded=1.5"), ANNOUNCE_ERR_DOWNLOADED_INVALID);
    assert_int_equal(parse_only(BASE "&left=-1"), ANNOUNCE_ERR_LEFT_INVALID);
    assert_int_equal(parse_only(BASE "&left=100000000000000000000"), ANNOUNCE_ERR_LEFT_INVALID);
    assert_int_equal(parse_only(BASE "&left=%2B1"), ANNOUNCE_ERR_LEFT_INVALID);
    /* numwant: garbage is still refused (negative and empty mean the default) */
    assert_int_equal(parse_only(BASE "&numwant=abc"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=-"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=--1"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=-x"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=-1x"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=1-"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=%2B5"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=+5"), ANNOUNCE_ERR_NUMWANT_INVALID);  /* '+' is a space */
    assert_int_equal(parse_only(BASE "&numwant=1.5"), ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=100000000000000000000"),
                     ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=-100000000000000000000"),
                     ANNOUNCE_ERR_NUMWANT_INVALID);
    assert_int_equal(parse_only(BASE "&numwant=-18446744073709551616"),
                     ANNOUNCE_ERR_NUMWANT_INVALID);
}

static void test_announce_rejects_unknown_event(void **state)
{
    (void)state;
    assert_int_equal(parse_only(BASE "&event=start"), ANNOUNCE_ERR_EVENT_INVALID);
    assert_int_equal(parse_only(BASE "&event=STARTED"), ANNOUNCE_ERR_EVENT_INVALID);
    assert_int_equal(parse_only(BASE "&event=started%00"), ANNOUNCE_ERR_EVENT_INVALID);
    assert_int_equal(parse_only(BASE "&event=none"), ANNOUNCE_ERR_EVENT_INVALID);
    assert_int_equal(parse_only(BASE "&event=completedcompletedcompleted"),
                     ANNOUNCE_ERR_EVENT_INVALID);
}

/* ---- announce_parse: repeats, order, length ---- */

static void test_announce_rejects_repeated_params(void **state)
{
    (void)state;
    assert_int_equal(parse_only(BASE "&" IH), ANNOUNCE_ERR_INFO_HASH_REPEATED);
    assert_int_equal(parse_only(BASE "&info_hash=x"), ANNOUNCE_ERR_INFO_HASH_REPEATED);
    assert_int_equal(parse_only(BASE "&" PID), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&port=6881"), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&event=started&event=started"), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&numwant=1&numwant=2"), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&left=1&left=1"), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&compact=1&compact=1"), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&uploaded=1&uploaded=1"), ANNOUNCE_ERR_PARAM_REPEATED);
    assert_int_equal(parse_only(BASE "&downloaded=1&downloaded=1"), ANNOUNCE_ERR_PARAM_REPEATED);
    /* repeated parameters we ignore are fine */
    assert_int_equal(parse_only(BASE "&key=1&key=2&ip=1.2.3.4&ip=5.6.7.8"), ANNOUNCE_OK);
}

static void test_announce_reports_first_problem_in_query_order(void **state)
{
    (void)state;
    assert_int_equal(parse_only("port=0&info_hash=short"), ANNOUNCE_ERR_PORT_INVALID);
    assert_int_equal(parse_only("info_hash=short&port=0"), ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(parse_only("event=x&port=%zz"), ANNOUNCE_ERR_EVENT_INVALID);
    assert_int_equal(parse_only("port=%zz&event=x"), ANNOUNCE_ERR_ENCODING);
    assert_int_equal(parse_only("port=1&port=0"), ANNOUNCE_ERR_PARAM_REPEATED);
    /* a bad value beats a missing parameter */
    assert_int_equal(parse_only("numwant=x"), ANNOUNCE_ERR_NUMWANT_INVALID);
    /* missing ones: info_hash, then peer_id, then port */
    assert_int_equal(parse_only("port=1"), ANNOUNCE_ERR_INFO_HASH_MISSING);
    assert_int_equal(parse_only(IH), ANNOUNCE_ERR_PEER_ID_MISSING);
    assert_int_equal(parse_only(PID), ANNOUNCE_ERR_INFO_HASH_MISSING);
    assert_int_equal(parse_only(PID "&" IH), ANNOUNCE_ERR_PORT_MISSING);
}

static void test_announce_rejects_too_long_query(void **state)
{
    char *q = malloc(QUERY_MAX_LEN + 2);
    struct announce_req r;
    size_t n = strlen(BASE "&pad=");

    (void)state;
    assert_non_null(q);
    memcpy(q, BASE "&pad=", n);
    memset(q + n, 'x', QUERY_MAX_LEN + 1 - n);
    q[QUERY_MAX_LEN + 1] = '\0';
    req_init(&r);
    assert_int_equal(announce_parse(q, QUERY_MAX_LEN + 1, &lim_default, &r),
                     ANNOUNCE_ERR_TOO_LONG);
    assert_int_equal(announce_parse(q, QUERY_MAX_LEN, &lim_default, &r), ANNOUNCE_OK);
    free(q);
}

static void test_announce_leaves_req_untouched_on_error(void **state)
{
    struct announce_req r, before;

    (void)state;
    req_init(&r);
    memcpy(&before, &r, sizeof(r));
    assert_int_equal(announce_parse(BASE "&event=bad", strlen(BASE "&event=bad"), &lim_default,
                                    &r),
                     ANNOUNCE_ERR_EVENT_INVALID);
    assert_memory_equal(&r, &before, sizeof(r));
}

/* ---- announce_parse: ip= ---- */

static void test_announce_ignores_ip_by_default(void **state)
{
    struct announce_req r;

    (void)state;
    assert_int_equal(parse(BASE "&ip=1.2.3.4", &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.family, AF_INET);
    assert_int_equal(r.peer.addr[0], 10);
    assert_int_equal(parse(BASE "&ip=not-an-address&ip=%zz", &r), ANNOUNCE_OK);
}

static void test_announce_honours_ip_when_allowed(void **state)
{
    struct announce_req r;
    uint8_t v6[16];

    (void)state;
    assert_int_equal(parse_ip(BASE "&ip=1.2.3.4", &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.family, AF_INET);
    assert_memory_equal(r.peer.addr, "\x01\x02\x03\x04", 4);
    assert_int_equal(r.peer.port, 6881);

    assert_int_equal(parse_ip(BASE "&ip=2001%3Adb8%3A%3A1", &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.family, AF_INET6);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", v6), 1);
    assert_memory_equal(r.peer.addr, v6, 16);

    assert_int_equal(parse_ip(BASE "&ip=::ffff:192.0.2.7", &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.family, AF_INET);
    assert_memory_equal(r.peer.addr, "\xc0\x00\x02\x07", 4);

    assert_int_equal(parse_ip(BASE, &r), ANNOUNCE_OK);     /* no ip=: socket address kept */
    assert_int_equal(r.peer.family, AF_INET);
    assert_int_equal(r.peer.addr[0], 10);
}

static void test_announce_rejects_bad_ip_when_allowed(void **state)
{
    static const char *const bad[] = { "ip=", "ip", "ip=example.com", "ip=1.2.3", "ip=1.2.3.4.5",
                                       "ip=256.1.1.1", "ip=1.2.3.4%00x", "ip=1.2.3.4%20",
                                       "ip=fe80::1%25eth0", "ip=::g",
                                       "ip=1111:2222:3333:4444:5555:6666:7777:8888:9999" };
    struct announce_req r;
    char q[512];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cat3(q, sizeof(q), BASE "&", bad[i], "");
        if (parse_ip(q, &r) != ANNOUNCE_ERR_IP_INVALID)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(parse_ip(BASE "&ip=1.2.3.4%", &r), ANNOUNCE_ERR_ENCODING);
    assert_int_equal(parse_ip(BASE "&ip=1.2.3.4&ip=1.2.3.4", &r), ANNOUNCE_ERR_PARAM_REPEATED);
}

/* ---- scrape_parse ---- */

static void test_scrape_needs_an_info_hash(void **state)
{
    struct scrape_req r;

    (void)state;
    assert_int_equal(scrape("", 64, &r), ANNOUNCE_ERR_FULL_SCRAPE_DISABLED);
    assert_int_equal(scrape("peer_id=x&port=%zz", 64, &r), ANNOUNCE_ERR_FULL_SCRAPE_DISABLED);
}

static void test_scrape_parses_one_and_many(void **state)
{
    struct scrape_req r;

    (void)state;
    assert_int_equal(scrape(IH, 64, &r), ANNOUNCE_OK);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.info_hash[0][19], 0x13);
    assert_true(r.now_s == 1234);

    assert_int_equal(scrape("info_hash=cccccccccccccccccccc&x=1&info_hash=aaaaaaaaaaaaaaaaaaaa"
                            "&info_hash=bbbbbbbbbbbbbbbbbbbb", 64, &r),
                     ANNOUNCE_OK);
    assert_int_equal(r.count, 3);
    assert_memory_equal(r.info_hash[0], "cccccccccccccccccccc", 20);
    assert_memory_equal(r.info_hash[1], "aaaaaaaaaaaaaaaaaaaa", 20);
    assert_memory_equal(r.info_hash[2], "bbbbbbbbbbbbbbbbbbbb", 20);
    assert_true(r.now_s == 1234);
}

static void test_scrape_drops_duplicates_keeping_order(void **state)
{
    struct scrape_req r;

    (void)state;
    assert_int_equal(scrape("info_hash=bbbbbbbbbbbbbbbbbbbb&info_hash=aaaaaaaaaaaaaaaaaaaa"
                            "&info_hash=bbbbbbbbbbbbbbbbbbbb&info_hash=%61aaaaaaaaaaaaaaaaaaa"
                            "&info_hash=cccccccccccccccccccc", 64, &r),
                     ANNOUNCE_OK);
    assert_int_equal(r.count, 3);
    assert_memory_equal(r.info_hash[0], "bbbbbbbbbbbbbbbbbbbb", 20);
    assert_memory_equal(r.info_hash[1], "aaaaaaaaaaaaaaaaaaaa", 20);
    assert_memory_equal(r.info_hash[2], "cccccccccccccccccccc", 20);
    /* duplicates do not count toward the limit */
    assert_int_equal(scrape("info_hash=bbbbbbbbbbbbbbbbbbbb&info_hash=bbbbbbbbbbbbbbbbbbbb", 1, &r),
                     ANNOUNCE_OK);
    assert_int_equal(r.count, 1);
}

static void test_scrape_rejects_too_many(void **state)
{
    struct scrape_req r;
    const char *q3 = "info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=bbbbbbbbbbbbbbbbbbbb"
                     "&info_hash=cccccccccccccccccccc";
    char q[8192];
    size_t n = 0;

    (void)state;
    assert_int_equal(scrape(q3, 3, &r), ANNOUNCE_OK);
    assert_int_equal(scrape(q3, 2, &r), ANNOUNCE_ERR_SCRAPE_TOO_MANY);
    assert_int_equal(scrape(q3, 0, &r), ANNOUNCE_ERR_SCRAPE_TOO_MANY);

    /* a limit above SCRAPE_MAX_HASHES is held to SCRAPE_MAX_HASHES */
    for (unsigned i = 0; i < SCRAPE_MAX_HASHES + 1; i++)
        n += (size_t)snprintf(q + n, sizeof(q) - n, "%sinfo_hash=%020u", i ? "&" : "", i);
    assert_true(n < sizeof(q) - 1);
    assert_int_equal(scrape_parse(q, n, &(struct announce_limits){ .scrape_max_hashes = 100000 },
                                  &r),
                     ANNOUNCE_ERR_SCRAPE_TOO_MANY);
    assert_int_equal(scrape_parse(q, n - 31, &(struct announce_limits){ .scrape_max_hashes = 100000 },
                                  &r),
                     ANNOUNCE_OK);
    assert_int_equal(r.count, SCRAPE_MAX_HASHES);
}

static void test_scrape_rejects_bad_hashes(void **state)
{
    struct scrape_req r;

    (void)state;
    assert_int_equal(scrape("info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=short", 64, &r),
                     ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(scrape("info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=%zz", 64, &r),
                     ANNOUNCE_ERR_ENCODING);
    assert_int_equal(scrape("info_hash=aaaaaaaaaaaaaaaaaaaaa", 64, &r),
                     ANNOUNCE_ERR_INFO_HASH_LENGTH);
    assert_int_equal(scrape("info_hash", 64, &r), ANNOUNCE_ERR_INFO_HASH_LENGTH);
}

static void test_scrape_rejects_too_long_query(void **state)
{
    char *q = malloc(QUERY_MAX_LEN + 1);
    struct scrape_req r;

    (void)state;
    assert_non_null(q);
    memcpy(q, IH "&", strlen(IH "&"));
    memset(q + strlen(IH "&"), 'x', QUERY_MAX_LEN + 1 - strlen(IH "&"));
    assert_int_equal(scrape_parse(q, QUERY_MAX_LEN + 1, &lim_default, &r), ANNOUNCE_ERR_TOO_LONG);
    assert_int_equal(scrape_parse(q, QUERY_MAX_LEN, &lim_default, &r), ANNOUNCE_OK);
    free(q);
}

/* ---- reasons ---- */

static void test_announce_reason_table_is_complete(void **state)
{
    (void)state;
    for (int i = 0; i < ANNOUNCE_ERR_COUNT; i++) {
        const char *s = announce_reason((enum announce_err)i);

        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown error");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(s, announce_reason((enum announce_err)j));
    }
    assert_string_equal(announce_reason(ANNOUNCE_OK), "ok");
    assert_string_equal(announce_reason(ANNOUNCE_ERR_COUNT), "unknown error");
    assert_string_equal(announce_reason((enum announce_err)-1), "unknown error");
    assert_string_equal(announce_reason(ANNOUNCE_ERR_INFO_HASH_MISSING), "info_hash is missing");
    assert_string_equal(announce_reason(ANNOUNCE_ERR_PORT_INVALID),
                        "port must be a number from 1 to 65535");
    assert_string_equal(announce_reason(ANNOUNCE_ERR_FULL_SCRAPE_DISABLED),
                        "full scrape is not allowed; give info_hash");
    /* an address that cannot be used is not a storage failure, and a bad forwarded header is
     * neither (issue 9) */
    assert_string_equal(announce_reason(ANNOUNCE_ERR_FORWARDED_INVALID),
                        "the proxy's X-Forwarded-For or X-Real-IP header is malformed");
    assert_string_equal(announce_reason(ANNOUNCE_ERR_CLIENT_ADDRESS), "the client's address is not IPv4 or IPv6");
    assert_string_equal(announce_reason(ANNOUNCE_ERR_PEER_CAP), "too many ports from this address in this swarm");
    /* metrics count failures by index: the reasons that existed keep theirs */
    assert_int_equal(ANNOUNCE_ERR_RATE_LIMITED, 26);
    assert_true(ANNOUNCE_ERR_FORWARDED_INVALID > ANNOUNCE_ERR_RATE_LIMITED);
}

/* ---- replies ---- */

static void test_announce_failure_reply_is_canonical(void **state)
{
    (void)state;
    for (int i = 0; i <= ANNOUNCE_ERR_COUNT; i++) {
        struct evbuffer *out = evbuffer_new();
        size_t len, slen;
        const uint8_t *p, *s;

        announce_write_failure(out, (enum announce_err)i);
        p = flat_checked(out, &len);
        s = dict_str(p, len, "failure reason", &slen);
        assert_int_equal(slen, strlen(announce_reason((enum announce_err)i)));
        assert_memory_equal(s, announce_reason((enum announce_err)i), slen);
        evbuffer_free(out);
    }

    struct evbuffer *out = evbuffer_new();
    const char want[] = "d14:failure reason20:info_hash is missinge";
    announce_write_failure(out, ANNOUNCE_ERR_INFO_HASH_MISSING);
    assert_int_equal(evbuffer_get_length(out), sizeof(want) - 1);
    assert_memory_equal(evbuffer_pullup(out, -1), want, sizeof(want) - 1);
    evbuffer_free(out);
}

static const uint8_t peers4[] = { 1, 2, 3, 4, 0x1a, 0xe1,  192, 168, 0, 1, 0, 80 };
static const uint8_t peers6[] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                                  0xff, 0xff };

static void test_announce_compact_reply(void **state)
{
    struct announce_req req;
    struct announce_reply rep = { .stats = { .complete = 3, .incomplete = 7, .downloaded = 11 },
                                  .peers4 = peers4, .peers4_count = 2 };
    struct announce_timing t = { .interval_s = 1800, .min_interval_s = 900 };
    struct evbuffer *out = evbuffer_new();
    const uint8_t *p, *s;
    size_t len, slen;

    (void)state;
    assert_int_equal(parse(BASE, &req), ANNOUNCE_OK);
    announce_write_reply(out, &req, &rep, &t);
    p = flat_checked(out, &len);
    assert_int_equal(dict_int(p, len, "complete"), 3);
    assert_int_equal(dict_int(p, len, "incomplete"), 7);
    assert_int_equal(dict_int(p, len, "downloaded"), 11);
    assert_int_equal(dict_int(p, len, "interval"), 1800);
    assert_int_equal(dict_int(p, len, "min interval"), 900);
    s = dict_str(p, len, "peers", &slen);
    assert_int_equal(slen, sizeof(peers4));
    assert_memory_equal(s, peers4, sizeof(peers4));
    assert_false(dict_has(p, len, "peers6"));
    assert_false(dict_has(p, len, "peer id"));
    const char want[] = "d8:completei3e10:downloadedi11e10:incompletei7e8:intervali1800e"
                        "12:min intervali900e5:peers12:\x01\x02\x03\x04\x1a\xe1\xc0\xa8\x00\x01"
                        "\x00\x50" "e";
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(p, want, len);
    evbuffer_drain(out, len);

    /* with IPv6 peers: peers6 appears */
    rep.peers6 = peers6;
    rep.peers6_count = 1;
    announce_write_reply(out, &req, &rep, &t);
    p = flat_checked(out, &len);
    s = dict_str(p, len, "peers6", &slen);
    assert_int_equal(slen, 18);
    assert_memory_equal(s, peers6, 18);
    s = dict_str(p, len, "peers", &slen);
    assert_int_equal(slen, 12);
    evbuffer_drain(out, len);

    /* no peers at all: an empty peers string */
    memset(&rep, 0, sizeof(rep));
    announce_write_reply(out, &req, &rep, &t);
    p = flat_checked(out, &len);
    s = dict_str(p, len, "peers", &slen);
    assert_int_equal(slen, 0);
    assert_false(dict_has(p, len, "peers6"));
    evbuffer_free(out);
}

static void test_announce_non_compact_reply(void **state)
{
    struct announce_req req;
    struct announce_reply rep = { .stats = { .complete = 1, .incomplete = 2, .downloaded = 0 },
                                  .peers4 = peers4, .peers4_count = 2,
                                  .peers6 = peers6, .peers6_count = 1 };
    struct announce_timing t = { .interval_s = 60, .min_interval_s = 30 };
    struct evbuffer *out = evbuffer_new();
    const uint8_t *p, *list, *peer, *s;
    size_t len, llen, plen, slen;
    static const struct { const char *ip; int64_t port; } want[] = {
        { "1.2.3.4", 6881 }, { "192.168.0.1", 80 }, { "2001:db8::1", 65535 },
    };

    (void)state;
    assert_int_equal(parse(BASE "&compact=0", &req), ANNOUNCE_OK);
    announce_write_reply(out, &req, &rep, &t);
    p = flat_checked(out, &len);
    assert_int_equal(dict_int(p, len, "interval"), 60);
    assert_false(dict_has(p, len, "peers6"));
    assert_int_equal(bencode_dict_get(p, len, "peers", &list, &llen), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(bencode_list_get(list, llen, i, &peer, &plen), 0);
        s = dict_str(peer, plen, "ip", &slen);
        assert_int_equal(slen, strlen(want[i].ip));
        assert_memory_equal(s, want[i].ip, slen);
        assert_int_equal(dict_int(peer, plen, "port"), want[i].port);
        assert_false(dict_has(peer, plen, "peer id"));
    }
    assert_int_equal(bencode_list_get(list, llen, 3, &peer, &plen), -1);
    evbuffer_drain(out, len);

    /* no peers: an empty list */
    memset(&rep, 0, sizeof(rep));
    announce_write_reply(out, &req, &rep, &t);
    p = flat_checked(out, &len);
    assert_int_equal(bencode_dict_get(p, len, "peers", &list, &llen), 0);
    assert_int_equal(llen, 2);
    assert_memory_equal(list, "le", 2);
    evbuffer_free(out);
}

static void test_announce_reply_with_extreme_values(void **state)
{
    struct announce_req req;
    uint8_t many4[200 * PEER_COMPACT4_LEN], many6[200 * PEER_COMPACT6_LEN];
    struct announce_reply rep = { .stats = { UINT32_MAX, UINT32_MAX, UINT32_MAX },
                                  .peers4 = many4, .peers4_count = 200,
                                  .peers6 = many6, .peers6_count = 200 };
    struct announce_timing t = { .interval_s = UINT32_MAX, .min_interval_s = 0 };
    struct evbuffer *out = evbuffer_new();
    const uint8_t *p;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(many4); i++)
        many4[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(many6); i++)
        many6[i] = (uint8_t)(i * 7);
    for (int compact = 0; compact <= 1; compact++) {
        assert_int_equal(parse(compact ? BASE : BASE "&compact=0", &req), ANNOUNCE_OK);
        announce_write_reply(out, &req, &rep, &t);
        p = flat_checked(out, &len);
        assert_true(dict_int(p, len, "complete") == UINT32_MAX);
        assert_true(dict_int(p, len, "interval") == UINT32_MAX);
        assert_int_equal(dict_int(p, len, "min interval"), 0);
        evbuffer_drain(out, len);
    }
    evbuffer_free(out);
}

static void test_scrape_reply_sorted_and_canonical(void **state)
{
    struct scrape_req req;
    struct swarm_stats st[3] = { { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } };
    struct scrape_reply rep = { .count = 3, .stats = st };
    struct evbuffer *out = evbuffer_new();
    const uint8_t *p, *files, *f;
    size_t len, flen, fl;

    (void)state;
    assert_int_equal(scrape("info_hash=cccccccccccccccccccc&info_hash=aaaaaaaaaaaaaaaaaaaa"
                            "&info_hash=bbbbbbbbbbbbbbbbbbbb", 64, &req),
                     ANNOUNCE_OK);
    scrape_write_reply(out, &req, &rep);
    p = flat_checked(out, &len);
    assert_int_equal(bencode_dict_get(p, len, "files", &files, &flen), 0);
    assert_int_equal(bencode_dict_get(files, flen, "cccccccccccccccccccc", &f, &fl), 0);
    assert_int_equal(dict_int(f, fl, "complete"), 1);
    assert_int_equal(dict_int(f, fl, "incomplete"), 2);
    assert_int_equal(dict_int(f, fl, "downloaded"), 3);
    assert_int_equal(bencode_dict_get(files, flen, "aaaaaaaaaaaaaaaaaaaa", &f, &fl), 0);
    assert_int_equal(dict_int(f, fl, "complete"), 4);
    assert_int_equal(bencode_dict_get(files, flen, "bbbbbbbbbbbbbbbbbbbb", &f, &fl), 0);
    assert_int_equal(dict_int(f, fl, "downloaded"), 9);
    const char want_prefix[] = "d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei4e10:downloadedi6e"
                               "10:incompletei5ee20:bbbb";
    assert_memory_equal(p, want_prefix, sizeof(want_prefix) - 1);
    evbuffer_drain(out, len);

    /* a caller passing one hash twice still gets canonical output */
    memcpy(req.info_hash[2], req.info_hash[0], 20);
    scrape_write_reply(out, &req, &rep);
    p = flat_checked(out, &len);
    evbuffer_drain(out, len);

    /* bytes that sort differently as signed chars */
    memset(req.info_hash[0], 0xff, 20);
    memset(req.info_hash[1], 0x01, 20);
    memset(req.info_hash[2], 0x80, 20);
    scrape_write_reply(out, &req, &rep);
    p = flat_checked(out, &len);
    evbuffer_drain(out, len);

    /* no hashes */
    rep.count = 0;
    scrape_write_reply(out, &req, &rep);
    p = flat_checked(out, &len);
    assert_int_equal(len, strlen("d5:filesdee"));
    assert_memory_equal(p, "d5:filesdee", len);
    evbuffer_free(out);
}

static void test_scrape_reply_with_max_hashes(void **state)
{
    static struct scrape_req req;
    static struct swarm_stats st[SCRAPE_MAX_HASHES];
    struct scrape_reply rep = { .count = SCRAPE_MAX_HASHES, .stats = st };
    struct evbuffer *out = evbuffer_new();
    const uint8_t *p, *files, *f;
    size_t len, flen, fl;

    (void)state;
    req.count = SCRAPE_MAX_HASHES;
    for (unsigned i = 0; i < SCRAPE_MAX_HASHES; i++) {
        /* reverse order, so the writer must sort */
        memset(req.info_hash[i], (int)(SCRAPE_MAX_HASHES - 1 - i), 20);
        st[i].complete = i;
    }
    scrape_write_reply(out, &req, &rep);
    p = flat_checked(out, &len);
    assert_int_equal(bencode_dict_get(p, len, "files", &files, &flen), 0);
    for (unsigned i = 0; i < SCRAPE_MAX_HASHES; i += 37) {
        char key[21];

        memcpy(key, req.info_hash[i], 20);
        key[20] = '\0';
        if (memchr(key, 0, 20))
            continue;            /* dict_get takes a C string key */
        assert_int_equal(bencode_dict_get(files, flen, key, &f, &fl), 0);
        assert_int_equal(dict_int(f, fl, "complete"), i);
    }
    evbuffer_free(out);
}

/* ---- no overread ---- */

static void test_announce_parse_no_overread_at_page_end(void **state)
{
    static const char *const inputs[] = {
        BASE, BASE "&event=started", BASE "&ip=1.2.3.4", BASE "&ip=1.2.3.%", BASE "&port=%",
        BASE "&numwant=%4", "info_hash", "info_hash=", "info_hash=%", "info_hash=%4",
        "info_hash=aaaaaaaaaaaaaaaaaaaa%", "&", "=", "port", "event=complete", "compact=%3",
        BASE "&numwant=-", BASE "&numwant=-1", BASE "&numwant=", BASE "&numwant",
    };
    struct announce_limits lim = lim_default;
    struct guard g;

    (void)state;
    lim.allow_ip_param = true;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t len = strlen(inputs[i]);

        /* the whole input and every prefix of it */
        for (size_t k = 0; k <= len; k++) {
            const char *q = guard_put(&g, inputs[i], k);
            struct announce_req r;
            struct scrape_req sr;

            req_init(&r);
            (void)announce_parse(q, k, &lim, &r);
            (void)scrape_parse(q, k, &lim, &sr);
            guard_free(&g);
        }
    }
    const char *q = guard_put(&g, BASE, strlen(BASE));
    struct announce_req r;
    req_init(&r);
    assert_int_equal(announce_parse(q, strlen(BASE), &lim, &r), ANNOUNCE_OK);
    assert_int_equal(r.peer.port, 6881);
    guard_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_announce_parses_minimal_request),
        cmocka_unit_test(test_announce_parses_full_request),
        cmocka_unit_test(test_announce_decodes_plain_and_plus),
        cmocka_unit_test(test_announce_parses_events),
        cmocka_unit_test(test_announce_numwant_default_and_cap),
        cmocka_unit_test(test_announce_counters_full_range),
        cmocka_unit_test(test_announce_compact_zero),
        cmocka_unit_test(test_announce_no_peer_id_values),
        cmocka_unit_test(test_announce_rejects_missing_info_hash),
        cmocka_unit_test(test_announce_rejects_bad_info_hash_length),
        cmocka_unit_test(test_announce_rejects_broken_escapes),
        cmocka_unit_test(test_announce_rejects_bad_peer_id),
        cmocka_unit_test(test_announce_rejects_bad_port),
        cmocka_unit_test(test_announce_rejects_bad_counters),
        cmocka_unit_test(test_announce_rejects_unknown_event),
        cmocka_unit_test(test_announce_rejects_repeated_params),
        cmocka_unit_test(test_announce_reports_first_problem_in_query_order),
        cmocka_unit_test(test_announce_rejects_too_long_query),
        cmocka_unit_test(test_announce_leaves_req_untouched_on_error),
        cmocka_unit_test(test_announce_ignores_ip_by_default),
        cmocka_unit_test(test_announce_honours_ip_when_allowed),
        cmocka_unit_test(test_announce_rejects_bad_ip_when_allowed),
        cmocka_unit_test(test_scrape_needs_an_info_hash),
        cmocka_unit_test(test_scrape_parses_one_and_many),
        cmocka_unit_test(test_scrape_drops_duplicates_keeping_order),
        cmocka_unit_test(test_scrape_rejects_too_many),
        cmocka_unit_test(test_scrape_rejects_bad_hashes),
        cmocka_unit_test(test_scrape_rejects_too_long_query),
        cmocka_unit_test(test_announce_reason_table_is_complete),
        cmocka_unit_test(test_announce_failure_reply_is_canonical),
        cmocka_unit_test(test_announce_compact_reply),
        cmocka_unit_test(test_announce_non_compact_reply),
        cmocka_unit_test(test_announce_reply_with_extreme_values),
        cmocka_unit_test(test_scrape_reply_sorted_and_canonical),
        cmocka_unit_test(test_scrape_reply_with_max_hashes),
        cmocka_unit_test(test_announce_parse_no_overread_at_page_end),
    };

    return cmocka_run_group_tests_name("announce", tests, NULL, NULL);
}
