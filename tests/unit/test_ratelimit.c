/* Unit tests for lib/ratelimit.c: the limit within a window and the next window, addresses
 * counted apart, an IPv6 /64 counted as one client, a table full of other addresses (a newcomer
 * is never refused), counting shared by forked processes, as the workers share it, and weighted
 * requests (a scrape costs its hash count). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/ratelimit.h"

static struct peer_addr addr_of(const char *text)
{
    struct peer_addr a;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, text, a.addr) == 1) {
        a.family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, a.addr), 1);
        a.family = AF_INET6;
    }
    return a;
}

/* How many of n requests at now_s are allowed. */
static unsigned allowed(struct ratelimit *rl, const char *text, int64_t now_s, unsigned n, unsigned limit)
{
    struct peer_addr a = addr_of(text);
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++)
        ok += ratelimit_allow(rl, &a, now_s, limit, 60, 1);
    return ok;
}

static void test_ratelimit_limit_per_window(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(10);
    assert_non_null(rl);
    /* window [1800, 1860): 5 of 8 pass, whenever in the window they come */
    assert_int_equal(allowed(rl, "192.0.2.1", 1800, 3, 5), 3);
    assert_int_equal(allowed(rl, "192.0.2.1", 1859, 5, 5), 2);
    /* the next window starts from zero */
    assert_int_equal(allowed(rl, "192.0.2.1", 1860, 8, 5), 5);
    /* limit 0 is off */
    assert_int_equal(allowed(rl, "192.0.2.1", 1860, 8, 0), 8);
    ratelimit_free(rl);
}

static void test_ratelimit_addresses_apart(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(10);
    assert_int_equal(allowed(rl, "192.0.2.1", 60, 10, 2), 2);
    assert_int_equal(allowed(rl, "192.0.2.2", 60, 10, 2), 2);
    assert_int_equal(allowed(rl, "2001:db8::1", 60, 10, 2), 2);
    assert_int_equal(allowed(rl, "2001:db8:0:1::1", 60, 10, 2), 2);
    ratelimit_free(rl);
}

static void test_ratelimit_ipv6_by_64(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(10);
    /* one subscriber rotating addresses inside its /64 is one client */
    assert_int_equal(allowed(rl, "2001:db8:1:2::1", 120, 2, 3), 2);
    assert_int_equal(allowed(rl, "2001:db8:1:2:ffff::9", 120, 2, 3), 1);
    assert_int_equal(allowed(rl, "2001:db8:1:2:1234:5678:9abc:def0", 120, 2, 3), 0);
    ratelimit_free(rl);
}

static void test_ratelimit_full_table_never_refuses_a_newcomer(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(4); /* 16 places */
    char text[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(text, sizeof(text), "10.0.%d.%d", i / 256, i % 256);
        assert_int_equal(allowed(rl, text, 600, 1, 1), 1);
    }
    /* a limit of 1 still holds for an address that keeps its place */
    assert_int_equal(allowed(rl, "198.51.100.7", 600, 3, 1), 1);
    ratelimit_free(rl);
}

static void test_ratelimit_shared_by_forked_workers(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(10);
    pid_t pid[4];
    for (int k = 0; k < 4; k++) {
        pid[k] = fork();
        assert_true(pid[k] >= 0);
        if (pid[k] == 0)
            _exit((int)allowed(rl, "203.0.113.5", 3000, 100, 150));
    }
    unsigned total = 0;
    for (int k = 0; k < 4; k++) {
        int status;
        assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
        assert_true(WIFEXITED(status));
        total += (unsigned)WEXITSTATUS(status);
    }
    /* 400 requests from four processes against a limit of 150: exactly 150 pass */
    assert_int_equal(total, 150);
    assert_int_equal(allowed(rl, "203.0.113.5", 3000, 1, 150), 0);
    ratelimit_free(rl);
}

/* Scrapes are charged by their hash count: 10 units a window, scrapes of 4 hashes. */
static void test_ratelimit_cost(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(10);
    struct peer_addr a = addr_of("192.0.2.9");
    assert_true(ratelimit_allow(rl, &a, 600, 10, 60, 4));    /* 4 */
    assert_true(ratelimit_allow(rl, &a, 600, 10, 60, 4));    /* 8 */
    /* 12 would pass the limit: refused, and nothing charged ... */
    assert_false(ratelimit_allow(rl, &a, 600, 10, 60, 4));
    /* ... so the two announces that still fit pass, and the next does not */
    assert_true(ratelimit_allow(rl, &a, 600, 10, 60, 1));
    assert_true(ratelimit_allow(rl, &a, 600, 10, 60, 1));
    assert_false(ratelimit_allow(rl, &a, 600, 10, 60, 1));
    /* the next window: a cost above the limit is charged as the whole limit, so it passes
     * only first in its window; cost 0 counts as 1 */
    assert_true(ratelimit_allow(rl, &a, 660, 10, 60, 64));
    assert_false(ratelimit_allow(rl, &a, 660, 10, 60, 0));
    struct peer_addr b = addr_of("192.0.2.10");
    assert_true(ratelimit_allow(rl, &b, 660, 10, 60, 0));
    for (int i = 0; i < 9; i++)
        assert_true(ratelimit_allow(rl, &b, 660, 10, 60, 1));
    assert_false(ratelimit_allow(rl, &b, 660, 10, 60, 1));
    /* a newcomer's first request may weigh the whole limit */
    struct peer_addr c = addr_of("2001:db8:5::1");
    assert_true(ratelimit_allow(rl, &c, 660, 10, 60, 10));
    assert_false(ratelimit_allow(rl, &c, 660, 10, 60, 1));
    /* the largest limit and cost do not overflow the 16-bit count */
    struct peer_addr d = addr_of("198.51.100.200");
    assert_true(ratelimit_allow(rl, &d, 660, RATELIMIT_MAX_LIMIT, 60, RATELIMIT_MAX_LIMIT - 1));
    assert_true(ratelimit_allow(rl, &d, 660, RATELIMIT_MAX_LIMIT, 60, 1));
    assert_false(ratelimit_allow(rl, &d, 660, RATELIMIT_MAX_LIMIT, 60, 1));
    ratelimit_free(rl);
}

static void test_ratelimit_bad_order(void **state)
{
    (void)state;
    assert_null(ratelimit_new(3));
    assert_null(ratelimit_new(25));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit_limit_per_window),
        cmocka_unit_test(test_ratelimit_addresses_apart),
        cmocka_unit_test(test_ratelimit_ipv6_by_64),
        cmocka_unit_test(test_ratelimit_full_table_never_refuses_a_newcomer),
        cmocka_unit_test(test_ratelimit_shared_by_forked_workers),
        cmocka_unit_test(test_ratelimit_cost),
        cmocka_unit_test(test_ratelimit_bad_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
