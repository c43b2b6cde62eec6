/* Unit tests for lib/peercap.c: the cap per (address, swarm), known ports never refused, other
 * swarms and addresses apart, IPv6 counted by /64, expiry after peer_ttl_s, event=stopped
 * freeing a port, cap 0 off, a full table (lenient, never stricter), counting shared by forked
 * processes as the workers share it, and a lock left by a killed worker taken over. */
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
#include <time.h>
#include <unistd.h>

#include "lib/peercap.h"

#define TTL 3600
#define NOW 1700000000

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

static void hash_of(uint8_t ih[ANNOUNCE_HASH_LEN], unsigned n)
{
    memset(ih, 0xab, ANNOUNCE_HASH_LEN);
    memcpy(ih, &n, sizeof(n));
}

/* One announce (not stopped) of port by text in swarm n at now_s with the cap. */
static bool admit(struct peercap *pc, const char *text, unsigned swarm, uint16_t port, int64_t now_s, unsigned cap)
{
    struct peer_addr a = addr_of(text);
    uint8_t ih[ANNOUNCE_HASH_LEN];
    hash_of(ih, swarm);
    return peercap_admit(pc, &a, ih, port, false, now_s, TTL, cap);
}

static bool stop(struct peercap *pc, const char *text, unsigned swarm, uint16_t port, int64_t now_s, unsigned cap)
{
    struct peer_addr a = addr_of(text);
    uint8_t ih[ANNOUNCE_HASH_LEN];
    hash_of(ih, swarm);
    return peercap_admit(pc, &a, ih, port, true, now_s, TTL, cap);
}

static unsigned count(struct peercap *pc, const char *text, unsigned swarm, int64_t now_s)
{
    struct peer_addr a = addr_of(text);
    uint8_t ih[ANNOUNCE_HASH_LEN];
    hash_of(ih, swarm);
    return peercap_count(pc, &a, ih, now_s, TTL);
}

static void test_peercap_cap_and_known_ports(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(12);
    assert_non_null(pc);
    for (uint16_t p = 1; p <= 16; p++)
        assert_true(admit(pc, "192.0.2.1", 1, (uint16_t)(6880 + p), NOW, 16));
    /* the 17th port is refused, and refusing records nothing */
    assert_false(admit(pc, "192.0.2.1", 1, 7000, NOW, 16));
    assert_false(admit(pc, "192.0.2.1", 1, 7001, NOW + 10, 16));
    assert_int_equal(count(pc, "192.0.2.1", 1, NOW + 10), 16);
    /* every known port re-announces, again and again */
    for (int round = 0; round < 3; round++)
        for (uint16_t p = 1; p <= 16; p++)
            assert_true(admit(pc, "192.0.2.1", 1, (uint16_t)(6880 + p), NOW + 60 + round, 16));
    /* other swarms, other addresses: counted apart */
    for (uint16_t p = 1; p <= 16; p++) {
        assert_true(admit(pc, "192.0.2.1", 2, (uint16_t)(6880 + p), NOW, 16));
        assert_true(admit(pc, "192.0.2.2", 1, (uint16_t)(6880 + p), NOW, 16));
    }
    assert_false(admit(pc, "192.0.2.1", 2, 7000, NOW, 16));
    assert_false(admit(pc, "192.0.2.2", 1, 7000, NOW, 16));
    /* a lower cap after a reload: known ports still pass, new ones do not */
    assert_true(admit(pc, "192.0.2.1", 1, 6881, NOW + 100, 4));
    assert_false(admit(pc, "192.0.2.1", 1, 7002, NOW + 100, 4));
    /* cap 0 is off and records nothing */
    assert_true(admit(pc, "198.51.100.1", 1, 1, NOW, 0));
    assert_int_equal(count(pc, "198.51.100.1", 1, NOW), 0);
    peercap_free(pc);
}

static void test_peercap_ipv6_by_64(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(12);
    char text[64];
    /* one subscriber rotating addresses in its /64 is one address */
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof(text), "2001:db8:1:2::%x", i + 1);
        assert_true(admit(pc, text, 1, (uint16_t)(5000 + i), NOW, 4));
    }
    assert_false(admit(pc, "2001:db8:1:2:ffff::1", 1, 6000, NOW, 4));
    assert_true(admit(pc, "2001:db8:1:2:ffff::1", 1, 5000, NOW, 4));   /* a known port */
    /* the next /64 is another address */
    assert_true(admit(pc, "2001:db8:1:3::1", 1, 6000, NOW, 4));
    peercap_free(pc);
}

static void test_peercap_expiry_and_stopped(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(12);
    for (uint16_t p = 1; p <= 3; p++)
        assert_true(admit(pc, "203.0.113.7", 9, p, NOW, 3));
    assert_false(admit(pc, "203.0.113.7", 9, 4, NOW, 3));
    /* event=stopped frees its port at once (and is never refused, known or not) */
    assert_true(stop(pc, "203.0.113.7", 9, 2, NOW + 1, 3));
    assert_true(stop(pc, "203.0.113.7", 9, 99, NOW + 1, 3));
    assert_int_equal(count(pc, "203.0.113.7", 9, NOW + 1), 2);
    assert_true(admit(pc, "203.0.113.7", 9, 4, NOW + 1, 3));
    assert_false(admit(pc, "203.0.113.7", 9, 5, NOW + 1, 3));
    /* port 1 re-announces late; 3 and 4 expire after peer_ttl_s, as their peers in Redis do */
    assert_true(admit(pc, "203.0.113.7", 9, 1, NOW + TTL - 1, 3));
    assert_false(admit(pc, "203.0.113.7", 9, 5, NOW + TTL - 1, 3));
    assert_int_equal(count(pc, "203.0.113.7", 9, NOW + TTL + 1), 1);
    assert_true(admit(pc, "203.0.113.7", 9, 5, NOW + TTL + 1, 3));
    assert_true(admit(pc, "203.0.113.7", 9, 6, NOW + TTL + 1, 3));
    assert_false(admit(pc, "203.0.113.7", 9, 7, NOW + TTL + 1, 3));
    /* the 24-bit time wraps without trouble */
    int64_t wrap = (int64_t)0x1000000 * 101 - 5;
    for (uint16_t p = 1; p <= 3; p++)
        assert_true(admit(pc, "203.0.113.8", 9, p, wrap, 3));
    assert_false(admit(pc, "203.0.113.8", 9, 4, wrap + 10, 3));
    assert_int_equal(count(pc, "203.0.113.8", 9, wrap + 10), 3);
    assert_int_equal(count(pc, "203.0.113.8", 9, wrap + TTL + 10), 0);
    peercap_free(pc);
}

/* Workers read the clock once per loop iteration, so one may be a second behind another: an
 * item written "in the future" is live, not expired (nor 2^24 - 1 seconds old). */
static void test_peercap_worker_clocks_apart(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(12);
    for (uint16_t p = 1; p <= 4; p++)
        assert_true(admit(pc, "192.0.2.50", 4, p, NOW + 1, 4));
    assert_int_equal(count(pc, "192.0.2.50", 4, NOW), 4);
    assert_false(admit(pc, "192.0.2.50", 4, 5, NOW, 4));
    assert_true(admit(pc, "192.0.2.50", 4, 1, NOW, 4));
    assert_false(admit(pc, "192.0.2.50", 4, 5, NOW + 2, 4));
    peercap_free(pc);
}

/* A cap above PEERCAP_MAX_CAP counts as PEERCAP_MAX_CAP. */
static void test_peercap_cap_clamped(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(12);
    for (unsigned p = 1; p <= PEERCAP_MAX_CAP; p++)
        assert_true(admit(pc, "192.0.2.77", 3, (uint16_t)p, NOW, 1000));
    assert_false(admit(pc, "192.0.2.77", 3, 1000, NOW, 1000));
    peercap_free(pc);
}

/* The smallest table (16 buckets of 63) flooded by 20,000 other pairs: the flood never refuses
 * anyone (no pair there has two ports), and a pair that keeps announcing keeps its cap, or gets
 * more lenient, never stricter: its known ports always pass. */
static void test_peercap_full_table_lenient_never_stricter(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(10);
    char text[32];
    unsigned refused = 0, known_refused = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.%d", i / 65536, i / 256 % 256, i % 256);
        refused += !admit(pc, text, (unsigned)i, 6881, NOW + i / 100, 2);
        for (uint16_t p = 1; p <= 2; p++)
            known_refused += !admit(pc, "198.51.100.9", 5, p, NOW + i / 100, 2);
    }
    assert_int_equal(refused, 0);
    assert_int_equal(known_refused, 0);
    /* its items are always the freshest, so they stay: the cap still holds for it */
    assert_false(admit(pc, "198.51.100.9", 5, 3, NOW + 200, 2));
    peercap_free(pc);
}

/* Four processes, as four workers, announce 40 ports each for one address in one swarm, and
 * 40 ports each in swarms of their own: exactly cap ports of the shared pair pass. */
static void test_peercap_shared_by_forked_workers(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(12);
    pid_t pid[4];
    for (int k = 0; k < 4; k++) {
        pid[k] = fork();
        assert_true(pid[k] >= 0);
        if (pid[k] == 0) {
            unsigned ok = 0, own = 0;
            for (int i = 0; i < 40; i++) {
                ok += admit(pc, "203.0.113.5", 1, (uint16_t)(10000 + k * 100 + i), NOW, 16);
                own += admit(pc, "203.0.113.5", (unsigned)(100 + k), (uint16_t)(20000 + i), NOW, 16);
            }
            _exit(own == 16 ? (int)ok : 255);
        }
    }
    unsigned total = 0;
    for (int k = 0; k < 4; k++) {
        int status;
        assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 255);
        total += (unsigned)WEXITSTATUS(status);
    }
    assert_int_equal(total, 16);
    assert_int_equal(count(pc, "203.0.113.5", 1, NOW), 16);
    assert_false(admit(pc, "203.0.113.5", 1, 30000, NOW, 16));
    peercap_free(pc);
}

/* A worker killed while it holds a bucket's lock must not stop that bucket for good. White box:
 * the mapping starts with a 512-byte header, then 512-byte buckets whose first word is the lock
 * (0 free, else the holder's CLOCK_MONOTONIC_COARSE milliseconds + 1). Every lock is set as a
 * killed holder would leave it: an old one is taken over at once, a fresh one after about a
 * second, never earlier. */
static void test_peercap_lock_of_killed_process(void **state)
{
    (void)state;
    struct peercap *pc = peercap_new(10);     /* 16 buckets */
    uint64_t *words = (uint64_t *)pc;
    struct timespec ts, t0, t1;

    for (int i = 1; i <= 16; i++)
        words[i * 64] = 1;                    /* taken at 0 ms: long ago */
    assert_true(admit(pc, "192.0.2.200", 7, 1, NOW, 4));
    assert_true(admit(pc, "192.0.2.201", 7, 1, NOW, 4));

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    for (int i = 1; i <= 16; i++)
        words[i * 64] = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_true(admit(pc, "192.0.2.200", 7, 1, NOW, 4));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(waited >= 0.9);               /* a live holder is never overrun early */
    /* the lock was released: the next announce of that bucket does not wait */
    assert_true(admit(pc, "192.0.2.200", 7, 2, NOW, 4));
    assert_int_equal(count(pc, "192.0.2.200", 7, NOW), 2);
    peercap_free(pc);
}

static void test_peercap_bad_order(void **state)
{
    (void)state;
    assert_null(peercap_new(9));
    assert_null(peercap_new(27));
    peercap_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peercap_cap_and_known_ports),
        cmocka_unit_test(test_peercap_ipv6_by_64),
        cmocka_unit_test(test_peercap_expiry_and_stopped),
        cmocka_unit_test(test_peercap_worker_clocks_apart),
        cmocka_unit_test(test_peercap_cap_clamped),
        cmocka_unit_test(test_peercap_full_table_lenient_never_stricter),
        cmocka_unit_test(test_peercap_shared_by_forked_workers),
        cmocka_unit_test(test_peercap_lock_of_killed_process),
        cmocka_unit_test(test_peercap_bad_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
