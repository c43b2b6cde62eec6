/* Unit tests for storage/redis_cluster.c: key slots against numbers a real Redis gave, the CLUSTER
 * SLOTS parser on hand-built and real reply trees (good maps, every malformed shape it refuses),
 * and the classification and parsing of cluster error replies. Needs no Redis. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "storage/redis_cluster.h"
#include "storage/redis_keys.h"

/* ---- hand-built reply trees (calloc'd here and freed by r_free, never by freeReplyObject) ---- */

static redisReply *r_new(int type)
{
    redisReply *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *r_int(long long v)
{
    redisReply *r = r_new(REDIS_REPLY_INTEGER);

    r->integer = v;
    return r;
}

static redisReply *r_strn(int type, const char *s, size_t len)
{
    redisReply *r = r_new(type);

    r->str = malloc(len + 1);
    assert_non_null(r->str);
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static redisReply *r_str(const char *s)
{
    return r_strn(REDIS_REPLY_STRING, s, strlen(s));
}

/* An array of n elements, given as redisReply * arguments (NULL allowed: a hole in the tree). */
static redisReply *r_arr(size_t n, ...)
{
    redisReply *r = r_new(REDIS_REPLY_ARRAY);
    va_list ap;
    size_t i;

    r->elements = n;
    r->element = n ? calloc(n, sizeof(*r->element)) : NULL;
    assert_true(n == 0 || r->element);
    va_start(ap, n);
    for (i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static void r_free(redisReply *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->elements; i++)
        r_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* A node as Redis 7 writes it: [host, port, id, {} (networking metadata, an array in RESP2)]. */
static redisReply *r_node(const char *host, long long port, const char *id)
{
    return r_arr(4, host ? r_str(host) : r_new(REDIS_REPLY_NIL), r_int(port), r_str(id), r_arr(0));
}

#define ID_A "005b83093993fd973b709edff8c58afb6106dc34"
#define ID_B "46714ad4ed5802aa7d6a7324bc13829576d3c2e1"
#define ID_C "b20f523206f0a3fed1e2f58bd3a5d81f91d3f3d6"
#define ID_R "8f1ac35f3ab400fddeb49dbbc14449fe955af537"

/* Parses reply (then frees it) into m; returns the parser's result and leaves its message in err. */
static int parse(redisReply *reply, const char *seed, struct redis_cluster_map *m, char *err, size_t errlen)
{
    int rc;

    err[0] = '\0';
    rc = redis_cluster_map_parse(reply, seed, m, err, errlen);
    r_free(reply);
    return rc;
}

/* Asserts that reply is refused with a message containing want, and that *out is untouched. */
static void expect_refused(redisReply *reply, const char *seed, const char *want)
{
    static struct redis_cluster_map m, before;
    char err[256];

    memset(&m, 0x5a, sizeof(m));
    before = m;
    assert_int_equal(parse(reply, seed, &m, err, sizeof(err)), -1);
    if (!strstr(err, want))
        fail_msg("message '%s' lacks '%s'", err, want);
    assert_memory_equal(&m, &before, sizeof(m));
}

/* ---- key slots ---- */

struct slot_case {
    const char *key;
    size_t len;
    uint16_t slot;
};

#define K(lit, slot) { lit, sizeof(lit) - 1, slot }

/* Expected slots from a real Redis 7.0.15 (redis-server --port 0 --unixsocket ... --cluster-enabled
 * yes --save ''), one `redis-cli -s SOCK CLUSTER KEYSLOT <key>` per key; the binary keys were fed
 * with `printf '\x00\xff...' | redis-cli -s SOCK -x CLUSTER KEYSLOT`. */
static const struct slot_case slot_cases[] = {
    K("", 0),
    K("123456789", 12739),         /* the spec's check value, 0x31C3 */
    K("somekey", 11058),
    K("foo{hash_tag}", 2515),
    K("bar{hash_tag}", 2515),
    K("{user1000}.following", 3443),
    K("{user1000}.followers", 3443),
    K("user1000", 3443),
    K("foo{}{bar}", 8363),         /* first tag empty: the whole key */
    K("foo{{bar}}zap", 4015),      /* the tag is "{bar" */
    K("{bar", 4015),
    K("foo{bar}{zap}", 5061),      /* only the first tag counts */
    K("bar", 5061),
    K("{}", 15257),
    K("foo{", 7673),               /* no closing brace */
    K("foo}bar{", 11073),          /* '}' before '{' is no tag */
    K("a}b{c}d", 7365),            /* ... and the '}' that ends a tag comes after the '{' */
    K("c", 7365),
    K("}{x}", 16287),
    K("x", 16287),
    K("{a}", 15495),
    K("a", 15495),
    K("a{b}c", 3300),
    K("b", 3300),
    K("{{}}", 4092),               /* the tag is "{" */
    K("{", 4092),
    K("ab{}{}", 14925),
    K("{}x{y}", 2166),
    K("tyto:{}:x", 6207),
    K("tyto:{0123456789abcdef0123456789abcdef01234567}:seeders", 6930),
    K("tyto:{0123456789abcdef0123456789abcdef01234567}:leechers", 6930),
    K("tyto:{0123456789abcdef0123456789abcdef01234567}:info", 6930),
    K("tyto:{0123456789abcdef0123456789abcdef01234567}:stats", 6930),
    K("0123456789abcdef0123456789abcdef01234567", 6930),
    K("\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", 10303), /* "ключ" in UTF-8 */
    K("\x00\xff{\x01\x00}\xfe", 13105),           /* NULs inside and outside the tag */
    K("\x01\x00", 13105),
    K("\x00\x01\x02\xff\x80", 2723),
};

static void test_redis_cluster_keyslot_matches_redis(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(slot_cases) / sizeof(slot_cases[0]); i++) {
        uint16_t got = redis_cluster_keyslot(slot_cases[i].key, slot_cases[i].len);

        if (got != slot_cases[i].slot)
            fail_msg("case %zu: slot %u, Redis says %u", i, got, slot_cases[i].slot);
    }
}

/* 1000-byte keys: "0123456789" x 100 (14898), and x 99 + "{tag}6789" (8338, as "tag"). */
static void test_redis_cluster_keyslot_long_keys(void **state)
{
    char key[1001];
    int i;

    (void)state;
    for (i = 0; i < 100; i++)
        memcpy(key + 10 * i, "0123456789", 10);
    assert_int_equal(redis_cluster_keyslot(key, 1000), 14898);
    memcpy(key + 990, "{tag}6789", 9);
    assert_int_equal(redis_cluster_keyslot(key, 999), 8338);
    assert_int_equal(redis_cluster_keyslot("tag", 3), 8338);
}

/* The key builder the backend uses puts every key of a swarm in the slot of its hex hash. */
static void test_redis_cluster_keyslot_swarm_keys_share_a_slot(void **state)
{
    static const uint8_t ih[ANNOUNCE_HASH_LEN] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                                   0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                                   0x01, 0x23, 0x45, 0x67 };
    static const enum redis_keys_kind kinds[] = { REDIS_KEYS_SEEDERS, REDIS_KEYS_LEECHERS, REDIS_KEYS_INFO,
                                                  REDIS_KEYS_STATS, REDIS_KEYS_UPLOADS };
    char key[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        int n = redis_keys_swarm(key, sizeof(key), "tyto:", ih, kinds[i]);

        assert_true(n > 0);
        assert_int_equal(redis_cluster_keyslot(key, (size_t)n), 6930);
    }
}

/* The length is honoured: bytes past it (here a tag) do not count. */
static void test_redis_cluster_keyslot_uses_len(void **state)
{
    (void)state;
    assert_int_equal(redis_cluster_keyslot("somekey{x}", 7), 11058);
    assert_int_equal(redis_cluster_keyslot("foo{hash_tag}", 4), 7673); /* "foo{" */
    assert_int_equal(redis_cluster_keyslot(NULL, 0), 0);
}

/* ---- slot map ---- */

/* The three-primary layout `redis-cli --cluster create` makes, one replica each. */
static redisReply *r_three(void)
{
    return r_arr(3,
                 r_arr(4, r_int(0), r_int(5460), r_node("127.0.0.1", 7000, ID_A),
                       r_node("127.0.0.1", 7003, ID_R)),
                 r_arr(4, r_int(5461), r_int(10922), r_node("127.0.0.1", 7001, ID_B),
                       r_node("127.0.0.1", 7004, ID_R)),
                 r_arr(4, r_int(10923), r_int(16383), r_node("127.0.0.1", 7002, ID_C),
                       r_node("127.0.0.1", 7005, ID_R)));
}

static void test_redis_cluster_map_three_primaries(void **state)
{
    static struct redis_cluster_map m;
    char err[128];

    (void)state;
    assert_int_equal(parse(r_three(), "10.0.0.9", &m, err, sizeof(err)), 0);
    assert_int_equal(m.nnodes, 3);
    assert_string_equal(m.node[0].host, "127.0.0.1");
    assert_int_equal(m.node[0].port, 7000);
    assert_string_equal(m.node[0].id, ID_A);
    assert_int_equal(m.node[1].port, 7001);
    assert_string_equal(m.node[1].id, ID_B);
    assert_int_equal(m.node[2].port, 7002);
    assert_string_equal(m.node[2].id, ID_C);
    assert_int_equal(redis_cluster_node_for_slot(&m, 0), 0);
    assert_int_equal(redis_cluster_node_for_slot(&m, 5460), 0);
    assert_int_equal(redis_cluster_node_for_slot(&m, 5461), 1);
    assert_int_equal(redis_cluster_node_for_slot(&m, 10922), 1);
    assert_int_equal(redis_cluster_node_for_slot(&m, 10923), 2);
    assert_int_equal(redis_cluster_node_for_slot(&m, 16383), 2);
    assert_int_equal(redis_cluster_node_for_slot(&m, 16384), -1);
    assert_int_equal(redis_cluster_node_for_slot(&m, 65535), -1);
    assert_true(redis_cluster_map_complete(&m));
    /* "foo" hashes to 12182 (CLUSTER KEYSLOT foo), the third range. */
    assert_int_equal(redis_cluster_node_for_slot(&m, redis_cluster_keyslot("foo", 3)), 2);
    assert_int_equal(redis_cluster_map_find(&m, "127.0.0.1", 7001), 1);
    assert_int_equal(redis_cluster_map_find(&m, "127.0.0.1", 7003), -1); /* a replica */
    assert_int_equal(redis_cluster_map_find(&m, "127.0.0.2", 7001), -1);
}

/* A primary with two ranges (after a resharding) is one node; a gap leaves the map incomplete. */
static void test_redis_cluster_map_split_ranges_and_gaps(void **state)
{
    static struct redis_cluster_map m;
    char err[128];
    redisReply *r = r_arr(3,
                          r_arr(3, r_int(0), r_int(99), r_node("10.0.0.1", 6379, ID_A)),
                          r_arr(3, r_int(100), r_int(100), r_node("10.0.0.2", 6379, ID_B)),
                          r_arr(3, r_int(101), r_int(16000), r_node("10.0.0.1", 6379, ID_A)));

    (void)state;
    assert_int_equal(parse(r, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.nnodes, 2);
    assert_int_equal(redis_cluster_node_for_slot(&m, 99), 0);
    assert_int_equal(redis_cluster_node_for_slot(&m, 100), 1);
    assert_int_equal(redis_cluster_node_for_slot(&m, 101), 0);
    assert_int_equal(redis_cluster_node_for_slot(&m, 16000), 0);
    assert_int_equal(redis_cluster_node_for_slot(&m, 16001), -1);
    assert_int_equal(redis_cluster_node_for_slot(&m, 16383), -1);
    assert_false(redis_cluster_map_complete(&m));
}

/* No slots assigned yet (a fresh node): an empty array, a valid map that owns nothing. */
static void test_redis_cluster_map_empty(void **state)
{
    static struct redis_cluster_map m;
    char err[128];

    (void)state;
    assert_int_equal(parse(r_arr(0), NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.nnodes, 0);
    assert_int_equal(redis_cluster_node_for_slot(&m, 0), -1);
    assert_false(redis_cluster_map_complete(&m));
}

/* NULL (Redis 7 unknown endpoint) and "" (a node that does not know its address) are the seed. */
static void test_redis_cluster_map_unknown_host_is_seed(void **state)
{
    static struct redis_cluster_map m;
    char err[128];
    redisReply *r = r_arr(2,
                          r_arr(3, r_int(0), r_int(8191), r_node(NULL, 7000, ID_A)),
                          r_arr(3, r_int(8192), r_int(16383), r_node("", 7001, ID_B)));

    (void)state;
    assert_int_equal(parse(r, "redis.example.net", &m, err, sizeof(err)), 0);
    assert_int_equal(m.nnodes, 2);
    assert_string_equal(m.node[0].host, "redis.example.net");
    assert_int_equal(m.node[0].port, 7000);
    assert_string_equal(m.node[1].host, "redis.example.net");
    assert_int_equal(m.node[1].port, 7001);
    assert_true(redis_cluster_map_complete(&m));

    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node("", 7000, ID_A))), NULL, "no seed host");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node(NULL, 7000, ID_A))), "", "no seed host");
}

static void test_redis_cluster_map_ipv6_and_hostnames(void **state)
{
    static struct redis_cluster_map m;
    char host64[65];
    char err[128];
    redisReply *r;

    (void)state;
    memset(host64, 'h', 64);
    host64[64] = '\0';
    r = r_arr(3,
              r_arr(3, r_int(0), r_int(1000), r_node("::1", 7000, ID_A)),
              r_arr(3, r_int(1001), r_int(2000), r_node("2001:db8::7", 7000, ID_B)),
              r_arr(3, r_int(2001), r_int(16383), r_node(host64, 65535, ID_C)));
    assert_int_equal(parse(r, NULL, &m, err, sizeof(err)), 0);
    assert_string_equal(m.node[0].host, "::1");
    assert_string_equal(m.node[1].host, "2001:db8::7");
    assert_string_equal(m.node[2].host, host64);
    assert_int_equal(m.node[2].port, 65535);
    assert_int_equal(redis_cluster_map_find(&m, "2001:db8::7", 7000), 1);
    assert_int_equal(redis_cluster_map_find(&m, "::1", 7000), 0);
}

/* Redis < 4 gave [host, port] only: no id, still a node. */
static void test_redis_cluster_map_without_ids(void **state)
{
    static struct redis_cluster_map m;
    char err[128];
    redisReply *r = r_arr(2,
                          r_arr(3, r_int(0), r_int(8191), r_arr(2, r_str("10.0.0.1"), r_int(6379))),
                          r_arr(3, r_int(8192), r_int(16383), r_arr(2, r_str("10.0.0.2"), r_int(6379))));

    (void)state;
    assert_int_equal(parse(r, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.nnodes, 2);
    assert_string_equal(m.node[0].id, "");
    assert_string_equal(m.node[1].host, "10.0.0.2");
}

/* The exact bytes a three-primary Redis 7.0.15 cluster (tests/cluster.sh) answered to CLUSTER SLOTS,
 * read by hiredis's own reader, so the real shape (metadata arrays, replicas) is covered too. */
static void test_redis_cluster_map_real_reply(void **state)
{
    static const char resp[] =
        "*3\r\n"
        "*4\r\n:0\r\n:5460\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:33781\r\n$40\r\n005b83093993fd973b709edff8c58afb6106dc34\r\n*0\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:30734\r\n$40\r\n8f1ac35f3ab400fddeb49dbbc14449fe955af537\r\n*0\r\n"
        "*4\r\n:5461\r\n:10922\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:24055\r\n$40\r\n46714ad4ed5802aa7d6a7324bc13829576d3c2e1\r\n*0\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:21708\r\n$40\r\n159164b89318e18d486ebf1943e0f0a20e84d4e3\r\n*0\r\n"
        "*4\r\n:10923\r\n:16383\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:33951\r\n$40\r\nb20f523206f0a3fed1e2f58bd3a5d81f91d3f3d6\r\n*0\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:23242\r\n$40\r\nb4ee838e8cbf1410c28a868bf2c0bf31aedd1467\r\n*0\r\n";
    static struct redis_cluster_map m;
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;
    char err[128];

    (void)state;
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, sizeof(resp) - 1), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    assert_int_equal(redis_cluster_map_parse(reply, "127.0.0.1", &m, err, sizeof(err)), 0);
    freeReplyObject(reply);
    redisReaderFree(rd);
    assert_int_equal(m.nnodes, 3);
    assert_int_equal(m.node[0].port, 33781);
    assert_int_equal(m.node[1].port, 24055);
    assert_int_equal(m.node[2].port, 33951);
    assert_string_equal(m.node[2].id, "b20f523206f0a3fed1e2f58bd3a5d81f91d3f3d6");
    /* That cluster answered "MOVED 12182 127.0.0.1:33951" to SET foo on the first node. */
    assert_int_equal(redis_cluster_node_for_slot(&m, redis_cluster_keyslot("foo", 3)), 2);
    assert_true(redis_cluster_map_complete(&m));
}

#define DISABLED "ERR This instance has cluster support disabled"

static void test_redis_cluster_map_refuses_bad_tops(void **state)
{
    static struct redis_cluster_map m;
    char err[128];

    (void)state;
    expect_refused(NULL, NULL, "no reply");
    expect_refused(r_strn(REDIS_REPLY_ERROR, DISABLED, strlen(DISABLED)), NULL,
                   "CLUSTER SLOTS failed: ERR This instance has cluster support disabled");
    expect_refused(r_strn(REDIS_REPLY_STATUS, "OK", 2), NULL, "not an array");
    expect_refused(r_int(3), NULL, "not an array");
    expect_refused(r_arr(1, NULL), NULL, "entry 0: not [start, end, primary");
    expect_refused(r_arr(1, r_int(0)), NULL, "entry 0: not [start, end, primary");
    expect_refused(r_arr(1, r_arr(2, r_int(0), r_int(5))), NULL, "entry 0: not [start, end, primary");
    /* A short err buffer is cut, never overrun; a NULL one is allowed. */
    err[5] = 'x';
    assert_int_equal(redis_cluster_map_parse(NULL, NULL, &m, err, 5), -1);
    assert_int_equal(strlen(err), 4);
    assert_int_equal(err[5], 'x');
    assert_int_equal(redis_cluster_map_parse(NULL, NULL, &m, NULL, 0), -1);
}

static void test_redis_cluster_map_refuses_bad_ranges(void **state)
{
    (void)state;
    expect_refused(r_arr(1, r_arr(3, r_int(5), r_int(4), r_node("a", 1, ID_A))), NULL, "entry 0: slot range");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(16384), r_node("a", 1, ID_A))), NULL, "slot range");
    expect_refused(r_arr(1, r_arr(3, r_int(-1), r_int(10), r_node("a", 1, ID_A))), NULL, "slot range");
    expect_refused(r_arr(1, r_arr(3, r_str("0"), r_int(10), r_node("a", 1, ID_A))), NULL, "slot range");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_new(REDIS_REPLY_NIL), r_node("a", 1, ID_A))), NULL,
                   "slot range");
    /* Overlaps, with another node or the same one. */
    expect_refused(r_arr(2, r_arr(3, r_int(0), r_int(100), r_node("a", 1, ID_A)),
                         r_arr(3, r_int(100), r_int(200), r_node("b", 1, ID_B))),
                   NULL, "entry 1: slot 100 is already in an earlier range");
    expect_refused(r_arr(2, r_arr(3, r_int(50), r_int(60), r_node("a", 1, ID_A)),
                         r_arr(3, r_int(0), r_int(16383), r_node("a", 1, ID_A))),
                   NULL, "entry 1: slot 50 is already");
}

static void test_redis_cluster_map_refuses_bad_nodes(void **state)
{
    char host65[66];

    (void)state;
    memset(host65, 'h', 65);
    host65[65] = '\0';
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), NULL)), NULL, "primary is missing");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_str("127.0.0.1:7000"))), NULL,
                   "primary is not [host, port");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_arr(1, r_str("a")))), NULL,
                   "primary is not [host, port");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_arr(2, r_int(1), r_int(7000)))), NULL,
                   "host is not a string");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_arr(2, r_str("a"), r_str("7000")))), NULL,
                   "port is not 1..65535");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node("a", 0, ID_A))), NULL, "port is not 1..65535");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node("a", 65536, ID_A))), NULL, "port is not");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node(host65, 1, ID_A))), NULL, "longer than 64");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1),
                                  r_arr(2, r_strn(REDIS_REPLY_STRING, "a\0b", 3), r_int(1)))),
                   NULL, "not text");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node("?", 7000, ID_A))), "seed",
                   "endpoint is unknown");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_node("a", 1, "abc"))), NULL, "not 40 characters");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1),
                                  r_node("a", 1, "005B83093993FD973B709EDFF8C58AFB6106DC34"))),
                   NULL, "not hex");
    expect_refused(r_arr(1, r_arr(3, r_int(0), r_int(1), r_arr(3, r_str("a"), r_int(1), r_int(5)))), NULL,
                   "not 40 characters");
    /* A replica that is not [host, port, ...]. */
    expect_refused(r_arr(1, r_arr(4, r_int(0), r_int(1), r_node("a", 1, ID_A), r_str("b"))), NULL,
                   "replica 1 is not");
    expect_refused(r_arr(1, r_arr(5, r_int(0), r_int(1), r_node("a", 1, ID_A), r_node("b", 1, ID_R), NULL)),
                   NULL, "replica 2 is not");
}

/* One address with two ids, or one id at two addresses: two views of the cluster mixed up. */
static void test_redis_cluster_map_refuses_inconsistent_nodes(void **state)
{
    (void)state;
    expect_refused(r_arr(2, r_arr(3, r_int(0), r_int(1), r_node("a", 1, ID_A)),
                         r_arr(3, r_int(2), r_int(3), r_node("a", 1, ID_B))),
                   NULL, "entry 1: a:1 and node id '" ID_B "' do not match");
    expect_refused(r_arr(2, r_arr(3, r_int(0), r_int(1), r_node("a", 1, ID_A)),
                         r_arr(3, r_int(2), r_int(3), r_node("b", 1, ID_A))),
                   NULL, "entry 1: b:1 and node id");
}

/* REDIS_CLUSTER_MAX_NODES primaries fit; one more is refused. */
static void test_redis_cluster_map_node_limit(void **state)
{
    static struct redis_cluster_map m;
    redisReply *r;
    char err[128], id[REDIS_CLUSTER_ID_LEN + 1];
    size_t n, i;

    (void)state;
    for (n = REDIS_CLUSTER_MAX_NODES; n <= REDIS_CLUSTER_MAX_NODES + 1; n++) {
        r = r_arr(0);
        r->elements = n;
        r->element = calloc(n, sizeof(*r->element));
        assert_non_null(r->element);
        for (i = 0; i < n; i++) {
            snprintf(id, sizeof(id), "%040zx", i);
            r->element[i] = r_arr(3, r_int((long long)i), r_int((long long)i), r_node("10.1.1.1", (long long)(7000 + i), id));
        }
        if (n == REDIS_CLUSTER_MAX_NODES) {
            assert_int_equal(parse(r, NULL, &m, err, sizeof(err)), 0);
            assert_int_equal(m.nnodes, REDIS_CLUSTER_MAX_NODES);
            assert_int_equal(redis_cluster_node_for_slot(&m, 63), 63);
            assert_int_equal(m.node[63].port, 7063);
            assert_int_equal(redis_cluster_node_for_slot(&m, 64), -1);
        } else {
            expect_refused(r, NULL, "more than 64 primaries");
        }
    }
}

/* ---- cluster errors ---- */

static enum redis_cluster_err classify(const char *s)
{
    return redis_cluster_classify(s, strlen(s));
}

/* The texts are the ones Redis 7.0.15 sent in tests/cluster.sh's cluster (a slot set MIGRATING
 * for ASK and TRYAGAIN, CLUSTER DELSLOTS for CLUSTERDOWN, MSET a 1 b 2 for CROSSSLOT), and READONLY
 * from SET on a plain (non-cluster) replica; "The cluster is down" is the other CLUSTERDOWN text. */
static void test_redis_cluster_classify(void **state)
{
    (void)state;
    assert_int_equal(classify("MOVED 12182 127.0.0.1:33951"), REDIS_CLUSTER_ERR_MOVED);
    assert_int_equal(classify("ASK 12182 127.0.0.1:24055"), REDIS_CLUSTER_ERR_ASK);
    assert_int_equal(classify("TRYAGAIN Multiple keys request during rehashing of slot"), REDIS_CLUSTER_ERR_TRYAGAIN);
    assert_int_equal(classify("CLUSTERDOWN Hash slot not served"), REDIS_CLUSTER_ERR_CLUSTERDOWN);
    assert_int_equal(classify("CLUSTERDOWN The cluster is down"), REDIS_CLUSTER_ERR_CLUSTERDOWN);
    assert_int_equal(classify("READONLY You can't write against a read only replica."), REDIS_CLUSTER_ERR_READONLY);
    assert_int_equal(classify("CROSSSLOT Keys in request don't hash to the same slot"), REDIS_CLUSTER_ERR_CROSSSLOT);
    assert_int_equal(classify("MOVED"), REDIS_CLUSTER_ERR_MOVED); /* the word alone; parse refuses it */
    assert_int_equal(classify("ERR unknown command 'ASK'"), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(classify("EXECABORT Transaction discarded because of previous errors."), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(classify("ASKING"), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(classify("MOVEDX 1 a:1"), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(classify("moved 1 a:1"), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(classify(" MOVED 1 a:1"), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(classify(""), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(redis_cluster_classify(NULL, 0), REDIS_CLUSTER_ERR_OTHER);
    assert_int_equal(redis_cluster_classify("ASKX", 3), REDIS_CLUSTER_ERR_ASK); /* len, not NUL, ends it */
}

static void test_redis_cluster_resend_safe(void **state)
{
    (void)state;
    assert_true(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_MOVED));
    assert_true(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_ASK));
    assert_true(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_TRYAGAIN));
    assert_true(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_CLUSTERDOWN));
    assert_true(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_READONLY));
    assert_false(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_OTHER));
    assert_false(redis_cluster_resend_safe(REDIS_CLUSTER_ERR_CROSSSLOT));
    assert_false(redis_cluster_resend_safe((enum redis_cluster_err)99));
}

static void expect_redirect(const char *s, enum redis_cluster_err kind, unsigned slot, const char *host,
                            unsigned port)
{
    struct redis_cluster_redirect r;

    memset(&r, 0x5a, sizeof(r));
    if (redis_cluster_parse_redirect(s, strlen(s), &r) != 0)
        fail_msg("'%s' not parsed", s);
    assert_int_equal(r.kind, kind);
    assert_int_equal(r.slot, slot);
    assert_string_equal(r.host, host);
    assert_int_equal(r.port, port);
}

static void test_redis_cluster_parse_redirect(void **state)
{
    char host64[65], s[128];

    (void)state;
    expect_redirect("MOVED 3999 127.0.0.1:6381", REDIS_CLUSTER_ERR_MOVED, 3999, "127.0.0.1", 6381);
    expect_redirect("ASK 3999 127.0.0.1:6381", REDIS_CLUSTER_ERR_ASK, 3999, "127.0.0.1", 6381);
    expect_redirect("ASK 12182 127.0.0.1:24055", REDIS_CLUSTER_ERR_ASK, 12182, "127.0.0.1", 24055);
    expect_redirect("MOVED 3999 ::1:6381", REDIS_CLUSTER_ERR_MOVED, 3999, "::1", 6381);
    expect_redirect("MOVED 1 2001:db8::1:7000", REDIS_CLUSTER_ERR_MOVED, 1, "2001:db8::1", 7000);
    expect_redirect("MOVED 3999 :6381", REDIS_CLUSTER_ERR_MOVED, 3999, "", 6381);
    expect_redirect("ASK 0 redis-1.example.com:1", REDIS_CLUSTER_ERR_ASK, 0, "redis-1.example.com", 1);
    expect_redirect("MOVED 16383 a:65535", REDIS_CLUSTER_ERR_MOVED, 16383, "a", 65535);
    memset(host64, 'h', 64);
    host64[64] = '\0';
    snprintf(s, sizeof(s), "MOVED 7 %s:80", host64);
    expect_redirect(s, REDIS_CLUSTER_ERR_MOVED, 7, host64, 80);
}

static void test_redis_cluster_parse_redirect_refuses(void **state)
{
    static const char *const bad[] = {
        "", "MOVED", "MOVED ", "MOVED 3999", "MOVED 3999 ", "MOVED 3999 127.0.0.1", "MOVED 3999 127.0.0.1:",
        "MOVED 16384 a:1", "MOVED 123456 a:1", "MOVED -1 a:1", "MOVED x a:1", "MOVED  3999 a:1",
        "MOVED 3999 a:0", "MOVED 3999 a:65536", "MOVED 3999 a:123456", "MOVED 3999 a:1x", "MOVED 3999 a:1 ",
        "MOVED 3999 a:1 extra", "MOVED 3999 a b:1", "MOVED 3999 ?:6381", "ASKING 1 a:1", "TRYAGAIN 1 a:1",
        "CLUSTERDOWN The cluster is down", "ERR MOVED 1 a:1", "moved 1 a:1",
        "MOVED 7 hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh:80", /* 65 bytes */
    };
    struct redis_cluster_redirect r, before;
    size_t i;

    (void)state;
    memset(&r, 0x5a, sizeof(r));
    before = r;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (redis_cluster_parse_redirect(bad[i], strlen(bad[i]), &r) != -1)
            fail_msg("'%s' parsed", bad[i]);
        assert_memory_equal(&r, &before, sizeof(r));
    }
    /* A NUL inside the text, and a len that stops before the port. */
    assert_int_equal(redis_cluster_parse_redirect("MOVED 1 a\0b:1", 13, &r), -1);
    assert_int_equal(redis_cluster_parse_redirect("MOVED 1 a:1", 10, &r), -1);
    /* ... and one that stops after it: the rest is not read. */
    assert_int_equal(redis_cluster_parse_redirect("MOVED 1 a:6381garbage", 14, &r), 0);
    assert_int_equal(r.port, 6381);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_redis_cluster_keyslot_matches_redis),
        cmocka_unit_test(test_redis_cluster_keyslot_long_keys),
        cmocka_unit_test(test_redis_cluster_keyslot_swarm_keys_share_a_slot),
        cmocka_unit_test(test_redis_cluster_keyslot_uses_len),
        cmocka_unit_test(test_redis_cluster_map_three_primaries),
        cmocka_unit_test(test_redis_cluster_map_split_ranges_and_gaps),
        cmocka_unit_test(test_redis_cluster_map_empty),
        cmocka_unit_test(test_redis_cluster_map_unknown_host_is_seed),
        cmocka_unit_test(test_redis_cluster_map_ipv6_and_hostnames),
        cmocka_unit_test(test_redis_cluster_map_without_ids),
        cmocka_unit_test(test_redis_cluster_map_real_reply),
        cmocka_unit_test(test_redis_cluster_map_refuses_bad_tops),
        cmocka_unit_test(test_redis_cluster_map_refuses_bad_ranges),
        cmocka_unit_test(test_redis_cluster_map_refuses_bad_nodes),
        cmocka_unit_test(test_redis_cluster_map_refuses_inconsistent_nodes),
        cmocka_unit_test(test_redis_cluster_map_node_limit),
        cmocka_unit_test(test_redis_cluster_classify),
        cmocka_unit_test(test_redis_cluster_resend_safe),
        cmocka_unit_test(test_redis_cluster_parse_redirect),
        cmocka_unit_test(test_redis_cluster_parse_redirect_refuses),
    };

    return cmocka_run_group_tests_name("redis_cluster", t, NULL, NULL);
}
