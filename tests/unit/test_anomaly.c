/* Unit tests for lib/anomaly.c: each rule one below its threshold, at it, and off at 0; the spike
 * baseline for a young swarm, flat traffic and a sudden jump; the exact reasons; names and texts
 * round-trip. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/anomaly.h"

/* 12:00:30 on some day: half way through the current minute. */
#define NOW (1700000000 / 60 * 60 + 30)

static struct anomaly_limits limits(void)
{
    struct anomaly_limits l = { .fast_announces = 12, .peers_per_address = 9, .stuck_leechers = 25,
                                .stuck_age_s = 86400, .phantom_uploads = 4, .spike_min = 100,
                                .spike_factor = 10.0 };
    return l;
}

/* A quiet, old, healthy swarm that trips nothing. */
static struct anomaly_swarm swarm(void)
{
    struct anomaly_swarm s;
    memset(&s, 0, sizeof(s));
    s.now_s = NOW;
    s.first_seen_s = NOW - 7 * 86400;
    s.seeders = 3;
    s.leechers = 30;
    s.downloaded = 5;
    s.max_peers_per_address = 1;
    strcpy(s.crowded_address, "10.0.0.1");
    for (int i = 0; i < ANOMALY_MINUTES; i++)
        s.minute[i] = 40;
    return s;
}

static unsigned check(const struct anomaly_limits *l, const struct anomaly_swarm *s, struct anomaly_result *r)
{
    unsigned f = anomaly_check(l, s, r);
    assert_int_equal(f, r->flags);
    for (int k = 0; k < ANOMALY_KINDS; k++)
        if (!(f & (1u << k)))
            assert_string_equal(r->reason[k], "");
    return f;
}

static void test_anomaly_quiet_swarm_flags_nothing(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_fast_announce(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    s.fast_announces = 11;
    assert_int_equal(check(&l, &s, &r), 0);
    s.fast_announces = 12;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_FAST_ANNOUNCE);
    assert_string_equal(r.reason[ANOMALY_FAST_ANNOUNCE], "12 announces sooner than min interval in the last interval");
    l.fast_announces = 0;
    assert_int_equal(check(&l, &s, &r), 0);
    l.fast_announces = 1;
    s.fast_announces = 1;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_FAST_ANNOUNCE);
    assert_string_equal(r.reason[ANOMALY_FAST_ANNOUNCE], "1 announce sooner than min interval in the last interval");
}

static void test_anomaly_crowded_address(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    s.max_peers_per_address = 8;
    assert_int_equal(check(&l, &s, &r), 0);
    s.max_peers_per_address = 9;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_CROWDED_ADDRESS);
    assert_string_equal(r.reason[ANOMALY_CROWDED_ADDRESS], "address 10.0.0.1 holds 9 peers");
    strcpy(s.crowded_address, "2001:db8::1");
    check(&l, &s, &r);
    assert_string_equal(r.reason[ANOMALY_CROWDED_ADDRESS], "address 2001:db8::1 holds 9 peers");
    /* An address field without its NUL is read only to its end. */
    memset(s.crowded_address, 'a', sizeof(s.crowded_address));
    check(&l, &s, &r);
    assert_int_equal(strlen(r.reason[ANOMALY_CROWDED_ADDRESS]), strlen("address  holds 9 peers") + 48);
    l.peers_per_address = 0;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_stuck_leechers(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    s.downloaded = 0;
    s.first_seen_s = NOW - 26 * 3600;
    s.leechers = 24;
    assert_int_equal(check(&l, &s, &r), 0);
    s.leechers = 25;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_STUCK_LEECHERS);
    assert_string_equal(r.reason[ANOMALY_STUCK_LEECHERS], "25 leechers, no completed download in 26 h");
    /* Age one second short, exactly at the limit, and long ago. */
    s.first_seen_s = NOW - 86399;
    assert_int_equal(check(&l, &s, &r), 0);
    s.first_seen_s = NOW - 86400;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_STUCK_LEECHERS);
    assert_string_equal(r.reason[ANOMALY_STUCK_LEECHERS], "25 leechers, no completed download in 24 h");
    s.first_seen_s = NOW - 9 * 86400 - 5;
    check(&l, &s, &r);
    assert_string_equal(r.reason[ANOMALY_STUCK_LEECHERS], "25 leechers, no completed download in 9 d");
    /* One completed download, or an unknown first_seen, and it is not stuck. */
    s.downloaded = 1;
    assert_int_equal(check(&l, &s, &r), 0);
    s.downloaded = 0;
    s.first_seen_s = 0;
    assert_int_equal(check(&l, &s, &r), 0);
    /* Short ages in seconds and minutes. */
    s.first_seen_s = NOW - 90;
    l.stuck_age_s = 60;
    check(&l, &s, &r);
    assert_string_equal(r.reason[ANOMALY_STUCK_LEECHERS], "25 leechers, no completed download in 90 s");
    s.first_seen_s = NOW - 45 * 60;
    check(&l, &s, &r);
    assert_string_equal(r.reason[ANOMALY_STUCK_LEECHERS], "25 leechers, no completed download in 45 min");
    /* Either threshold 0 turns the rule off. */
    l.stuck_leechers = 0;
    assert_int_equal(check(&l, &s, &r), 0);
    l.stuck_leechers = 25;
    l.stuck_age_s = 0;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_phantom_upload(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    s.phantom_uploads = 3;
    assert_int_equal(check(&l, &s, &r), 0);
    s.phantom_uploads = 4;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_PHANTOM_UPLOAD);
    assert_string_equal(r.reason[ANOMALY_PHANTOM_UPLOAD],
                        "4 seeder announces reported upload while the swarm had no leecher");
    l.phantom_uploads = 0;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_spike_sudden_jump_flags(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    s.minute[1] = 480;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_ANNOUNCE_SPIKE);
    assert_string_equal(r.reason[ANOMALY_ANNOUNCE_SPIKE],
                        "480 announces in the last minute, 12.0x the 40.0/min of the hour before");
    /* The current, incomplete minute does not count either way. */
    s.minute[0] = 100000;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_ANNOUNCE_SPIKE);
    s.minute[1] = 40;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_spike_thresholds(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    /* factor: 399 < 10 x 40, 400 = 10 x 40. */
    s.minute[1] = 399;
    assert_int_equal(check(&l, &s, &r), 0);
    s.minute[1] = 400;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_ANNOUNCE_SPIKE);
    /* spike_min: a dead swarm waking to 99 then 100 a minute; the baseline counts as 1/min. */
    for (int i = 2; i < ANOMALY_MINUTES; i++)
        s.minute[i] = 0;
    s.minute[1] = 99;
    assert_int_equal(check(&l, &s, &r), 0);
    s.minute[1] = 100;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_ANNOUNCE_SPIKE);
    assert_string_equal(r.reason[ANOMALY_ANNOUNCE_SPIKE],
                        "100 announces in the last minute, 100.0x the 0.0/min of the hour before");
    l.spike_min = 0;
    assert_int_equal(check(&l, &s, &r), 0);
    l.spike_min = 100;
    l.spike_factor = 0;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_spike_flat_traffic_no_flag(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    for (int i = 0; i < ANOMALY_MINUTES; i++)
        s.minute[i] = 5000;
    assert_int_equal(check(&l, &s, &r), 0);
    /* Noisy but flat: alternating 3000 and 7000, last minute at the high end. */
    for (int i = 1; i < ANOMALY_MINUTES; i++)
        s.minute[i] = i % 2 ? 7000 : 3000;
    assert_int_equal(check(&l, &s, &r), 0);
}

static void test_anomaly_spike_young_swarm(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    /* First seen 3 minutes ago: one full minute of history, too young to judge. */
    memset(s.minute, 0, sizeof(s.minute));
    s.first_seen_s = NOW - 180;
    s.minute[3] = 2;
    s.minute[2] = 5;
    s.minute[1] = 1000;
    assert_int_equal(check(&l, &s, &r), 0);
    /* 8 minutes old: minutes 2..7 began after it (6 of them), minutes before it are not zeros to
     * average in: 6 x 10 gives 10.0/min, not 60/58. */
    s.first_seen_s = NOW - 8 * 60;
    for (int i = 2; i <= 7; i++)
        s.minute[i] = 10;
    s.minute[1] = 100;
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_ANNOUNCE_SPIKE);
    assert_string_equal(r.reason[ANOMALY_ANNOUNCE_SPIKE],
                        "100 announces in the last minute, 10.0x the 10.0/min of the 6 minutes before");
    s.minute[1] = 99;
    l.spike_min = 50;
    assert_int_equal(check(&l, &s, &r), 0);
    /* Exactly 5 baseline minutes is enough, 4 is not. */
    s.minute[1] = 1000;
    s.first_seen_s = NOW - 30 - 6 * 60;      /* minutes 2..6 start at or after it */
    assert_int_equal(check(&l, &s, &r), 1u << ANOMALY_ANNOUNCE_SPIKE);
    s.first_seen_s = NOW - 30 - 6 * 60 + 1;  /* minute 6 began a second before it */
    assert_int_equal(check(&l, &s, &r), 0);
    /* first_seen unknown: all 58 minutes count. */
    s.first_seen_s = 0;
    for (int i = 2; i < ANOMALY_MINUTES; i++)
        s.minute[i] = 20;
    check(&l, &s, &r);
    assert_string_equal(r.reason[ANOMALY_ANNOUNCE_SPIKE],
                        "1000 announces in the last minute, 50.0x the 20.0/min of the hour before");
}

static void test_anomaly_all_at_once_and_truncation(void **state)
{
    struct anomaly_limits l = limits();
    struct anomaly_swarm s = swarm();
    struct anomaly_result r;
    (void)state;
    s.fast_announces = 4000000000u;
    s.max_peers_per_address = 4000000000u;
    s.leechers = UINT64_MAX;
    s.downloaded = 0;
    s.first_seen_s = 1;
    s.phantom_uploads = 4000000000u;
    s.minute[1] = UINT32_MAX;
    memset(s.crowded_address, 'f', sizeof(s.crowded_address) - 1);
    s.crowded_address[sizeof(s.crowded_address) - 1] = '\0';
    assert_int_equal(check(&l, &s, &r), (1u << ANOMALY_KINDS) - 1);
    for (int k = 0; k < ANOMALY_KINDS; k++)
        assert_true(strlen(r.reason[k]) > 0 && strlen(r.reason[k]) < ANOMALY_REASON_MAX);
    assert_string_equal(r.reason[ANOMALY_STUCK_LEECHERS],
                        "18446744073709551615 leechers, no completed download in 19675 d");
}

static void test_anomaly_names_round_trip(void **state)
{
    static const char *const names[ANOMALY_KINDS] = { "fast_announce", "crowded_address", "stuck_leechers",
                                                      "phantom_upload", "announce_spike" };
    (void)state;
    for (int k = 0; k < ANOMALY_KINDS; k++) {
        assert_string_equal(anomaly_kind_name((enum anomaly_kind)k), names[k]);
        assert_int_equal(anomaly_kind_parse(names[k], strlen(names[k])), k);
        const char *t = anomaly_kind_text((enum anomaly_kind)k);
        assert_true(strlen(t) > 20);
        assert_int_equal(t[strlen(t) - 1], '.');
    }
    assert_int_equal(anomaly_kind_parse("fast_announces", 14), -1);
    assert_int_equal(anomaly_kind_parse("fast_announce", 12), -1);
    assert_int_equal(anomaly_kind_parse("fast_announceX", 13), ANOMALY_FAST_ANNOUNCE);
    assert_int_equal(anomaly_kind_parse("", 0), -1);
    assert_int_equal(anomaly_kind_parse("FAST_ANNOUNCE", 13), -1);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_anomaly_quiet_swarm_flags_nothing),
        cmocka_unit_test(test_anomaly_fast_announce),
        cmocka_unit_test(test_anomaly_crowded_address),
        cmocka_unit_test(test_anomaly_stuck_leechers),
        cmocka_unit_test(test_anomaly_phantom_upload),
        cmocka_unit_test(test_anomaly_spike_sudden_jump_flags),
        cmocka_unit_test(test_anomaly_spike_thresholds),
        cmocka_unit_test(test_anomaly_spike_flat_traffic_no_flag),
        cmocka_unit_test(test_anomaly_spike_young_swarm),
        cmocka_unit_test(test_anomaly_all_at_once_and_truncation),
        cmocka_unit_test(test_anomaly_names_round_trip),
    };
    return cmocka_run_group_tests_name("anomaly", t, NULL, NULL);
}
