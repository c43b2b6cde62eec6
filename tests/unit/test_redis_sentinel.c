/* Unit tests for storage/redis_sentinel.c: the seed address parser (redis.sentinels entries), the
 * SENTINEL get-master-addr-by-name and ROLE reply readers on hand-built replies shaped as Redis 7
 * sends them, and which error replies mean "ask the sentinels again". Needs no Redis. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "lib/config.h"
#include "storage/redis_sentinel.h"

/* ---- hand-built reply trees (calloc'd here, freed by r_free) -------------------------------- */

static redisReply *r_new(int type)
{
    redisReply *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *r_typed(int type, const char *s)
{
    redisReply *r = r_new(type);

    r->len = strlen(s);
    r->str = strdup(s);
    assert_non_null(r->str);
    return r;
}

static redisReply *r_str(const char *s)
{
    return r_typed(REDIS_REPLY_STRING, s);
}

static redisReply *r_int(long long v)
{
    redisReply *r = r_new(REDIS_REPLY_INTEGER);

    r->integer = v;
    return r;
}

static redisReply *r_arr(size_t n, ...)
{
    redisReply *r = r_new(REDIS_REPLY_ARRAY);
    va_list ap;

    r->elements = n;
    r->element = n ? calloc(n, sizeof(*r->element)) : NULL;
    assert_true(n == 0 || r->element);
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static void r_free(redisReply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->elements; i++)
        r_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* Parses reply as a get-master-addr-by-name answer, then frees it. */
static int master(redisReply *reply, char *host, size_t hostcap, int *port, char *err, size_t errlen)
{
    int rc = redis_sentinel_parse_master(reply, host, hostcap, port, err, errlen);

    r_free(reply);
    return rc;
}

/* Asserts that reply is refused with message want and leaves host/port untouched. */
static void expect_master_error(redisReply *reply, const char *want)
{
    char host[64] = "untouched", err[256] = "";
    int port = 7;

    assert_int_equal(master(reply, host, sizeof(host), &port, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_string_equal(host, "untouched");
    assert_int_equal(port, 7);
}

static void test_redis_sentinel_master_reply(void **state)
{
    char host[64], err[256];
    int port = 0;
    (void)state;

    assert_int_equal(master(r_arr(2, r_str("127.0.0.1"), r_str("6380")), host, sizeof(host), &port, err,
                            sizeof(err)), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(master(r_arr(2, r_str("::1"), r_str("65535")), host, sizeof(host), &port, err,
                            sizeof(err)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
}

static void test_redis_sentinel_master_reply_refused(void **state)
{
    char host[8], err[256];
    int port = 0;
    (void)state;

    expect_master_error(r_new(REDIS_REPLY_NIL), "no master of that name is watched");
    expect_master_error(r_typed(REDIS_REPLY_ERROR, "NOAUTH Authentication required."),
                        "NOAUTH Authentication required.");
    expect_master_error(NULL, "no reply");
    expect_master_error(r_str("127.0.0.1:6380"), "not an [ip, port] reply");
    expect_master_error(r_arr(0), "not an [ip, port] reply");
    expect_master_error(r_arr(1, r_str("127.0.0.1")), "not an [ip, port] reply");
    expect_master_error(r_arr(3, r_str("127.0.0.1"), r_str("6380"), r_str("x")), "not an [ip, port] reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_int(6380)), "not an [ip, port] reply");
    expect_master_error(r_arr(2, r_str(""), r_str("6380")), "not an [ip, port] reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), NULL), "not an [ip, port] reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_str("")), "not an [ip, port] reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_str("0")), "bad port '0' in the reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_str("65536")), "bad port '65536' in the reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_str("-1")), "bad port '-1' in the reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_str("63 79")), "bad port '63 79' in the reply");
    expect_master_error(r_arr(2, r_str("127.0.0.1"), r_str("12345678")), "not an [ip, port] reply");
    {
        /* A host that does not fit the caller's buffer is refused, not cut. */
        redisReply *r = r_arr(2, r_str("10.200.200.200"), r_str("6379"));

        assert_int_equal(master(r, host, sizeof(host), &port, err, sizeof(err)), -1);
        assert_string_equal(err, "not an [ip, port] reply");
    }
    {
        /* A NUL inside the host cannot be handed to connect(). */
        redisReply *h = r_str("10.0.0.1x");

        h->str[8] = '\0';
        assert_int_equal(master(r_arr(2, h, r_str("6379")), host, sizeof(host), &port, err, sizeof(err)), -1);
    }
}

static void test_redis_sentinel_role(void **state)
{
    redisReply *r;
    (void)state;

    /* ROLE on a master: ["master", offset, [[ip, port, offset], ...]]. */
    r = r_arr(3, r_str("master"), r_int(3129659), r_arr(1, r_arr(3, r_str("127.0.0.1"), r_str("9001"),
                                                                     r_str("3129242"))));
    assert_int_equal(redis_sentinel_parse_role(r), 1);
    r_free(r);
    /* On a replica: ["slave", ip, port, state, offset]. */
    r = r_arr(5, r_str("slave"), r_str("127.0.0.1"), r_int(9000), r_str("connected"), r_int(3167038));
    assert_int_equal(redis_sentinel_parse_role(r), 0);
    r_free(r);
    /* On a sentinel: ["sentinel", [names]]. */
    r = r_arr(2, r_str("sentinel"), r_arr(1, r_str("mymaster")));
    assert_int_equal(redis_sentinel_parse_role(r), 0);
    r_free(r);
    r = r_arr(1, r_str("masters"));
    assert_int_equal(redis_sentinel_parse_role(r), 0);
    r_free(r);
    r = r_arr(1, r_str("maste"));
    assert_int_equal(redis_sentinel_parse_role(r), 0);
    r_free(r);
    r = r_typed(REDIS_REPLY_ERROR, "NOAUTH Authentication required.");
    assert_int_equal(redis_sentinel_parse_role(r), -1);
    r_free(r);
    r = r_arr(0);
    assert_int_equal(redis_sentinel_parse_role(r), -1);
    r_free(r);
    r = r_arr(1, r_int(1));
    assert_int_equal(redis_sentinel_parse_role(r), -1);
    r_free(r);
    r = r_str("master");
    assert_int_equal(redis_sentinel_parse_role(r), -1);
    r_free(r);
    assert_int_equal(redis_sentinel_parse_role(NULL), -1);
}

static void test_redis_sentinel_failover_errors(void **state)
{
    static const struct { const char *text; bool failover; } cases[] = {
        { "READONLY You can't write against a read only replica.", true },
        { "LOADING Redis is loading the dataset in memory", true },
        { "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", true },
        { "READONLY", true },
        { "READONLYX", false },
        { "ERR wrong number of arguments", false },
        { "OOM command not allowed when used memory > 'maxmemory'.", false },
        { "NOSCRIPT No matching script.", false },
        { "EXECABORT Transaction discarded because of previous errors.", false },
        { "readonly lower case is not Redis's", false },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redisReply *r = r_typed(REDIS_REPLY_ERROR, cases[i].text);

        if (redis_sentinel_failover_error(r) != cases[i].failover)
            fail_msg("'%s': expected %d", cases[i].text, cases[i].failover);
        r_free(r);
    }
    {
        /* The same words in a non-error reply (a stored value) mean nothing. */
        redisReply *r = r_str("READONLY value");

        assert_false(redis_sentinel_failover_error(r));
        r_free(r);
    }
    assert_false(redis_sentinel_failover_error(NULL));
}

static void test_redis_sentinel_addr(void **state)
{
    static const struct { const char *in, *host; int port; const char *err; } cases[] = {
        { "127.0.0.1:26379", "127.0.0.1", 26379, NULL },
        { "[::1]:26380", "::1", 26380, NULL },
        { "[fe80::1:2]:1", "fe80::1:2", 1, NULL },
        { "sentinel-1.internal:65535", "sentinel-1.internal", 65535, NULL },
        { "localhost:26379", "localhost", 26379, NULL },
        { "127.0.0.1", NULL, 0, "'127.0.0.1' has no :PORT" },
        { ":26379", NULL, 0, "':26379' has no usable host" },
        { "[]:26379", NULL, 0, "'[]:26379' has no usable host" },
        { "127.0.0.1:", NULL, 0, "the port in '127.0.0.1:' must be 1 to 65535" },
        { "127.0.0.1:65536", NULL, 0, "the port in '127.0.0.1:65536' must be 1 to 65535" },
        { "127.0.0.1:+1", NULL, 0, "the port in '127.0.0.1:+1' must be 1 to 65535" },
        { "127.0.0.1:1x", NULL, 0, "the port in '127.0.0.1:1x' must be 1 to 65535" },
        { "::1:26379", NULL, 0, "'::1:26379': the host must be a name or an IPv4 address (IPv6 in brackets)" },
        { "a b:1", NULL, 0, "'a b:1': the host must be a name or an IPv4 address (IPv6 in brackets)" },
        { "[::1]26379", NULL, 0, "'[::1]26379' is not [IPV6]:PORT" },
        { "[::1", NULL, 0, "'[::1' is not [IPV6]:PORT" },
        { "[host]:1", NULL, 0, "'[host]:1' is not an IPv6 address in brackets" },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64] = "", err[256] = "";
        int port = 0;
        int rc = redis_sentinel_parse_addr(cases[i].in, host, sizeof(host), &port, err, sizeof(err));

        if (cases[i].err == NULL) {
            if (rc != 0)
                fail_msg("'%s' refused: %s", cases[i].in, err);
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
        } else {
            if (rc != -1)
                fail_msg("'%s' accepted", cases[i].in);
            assert_string_equal(err, cases[i].err);
        }
    }
    {
        char host[4], err[256];
        int port;

        assert_int_equal(redis_sentinel_parse_addr("abcd:1", host, sizeof(host), &port, err, sizeof(err)), -1);
        assert_int_equal(redis_sentinel_parse_addr("abc:1", host, sizeof(host), &port, err, sizeof(err)), 0);
    }
}

static void test_redis_sentinel_enabled(void **state)
{
    struct config cfg;
    (void)state;

    memset(&cfg, 0, sizeof(cfg));
    assert_false(redis_sentinel_enabled(&cfg));
    cfg.redis_sentinels_count = 1;
    assert_false(redis_sentinel_enabled(&cfg));
    strcpy(cfg.redis_master_name, "mymaster");
    assert_true(redis_sentinel_enabled(&cfg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_sentinel_master_reply),
        cmocka_unit_test(test_redis_sentinel_master_reply_refused),
        cmocka_unit_test(test_redis_sentinel_role),
        cmocka_unit_test(test_redis_sentinel_failover_errors),
        cmocka_unit_test(test_redis_sentinel_addr),
        cmocka_unit_test(test_redis_sentinel_enabled),
    };

    return cmocka_run_group_tests_name("redis_sentinel", tests, NULL, NULL);
}
