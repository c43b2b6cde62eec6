/* storage/swarm_policy: the swarm rules both backends follow, checked without a backend. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/config.h"
#include "storage/swarm_policy.h"

static struct swarm_policy policy_of(int peer_ttl_s, int interval_s, int downloaded_ttl_s, int numwant_max)
{
    struct config cfg;
    struct swarm_policy p;

    memset(&cfg, 0, sizeof(cfg));
    cfg.peer_ttl_s = peer_ttl_s;
    cfg.interval_s = interval_s;
    cfg.swarm_downloaded_ttl_s = downloaded_ttl_s;
    cfg.numwant_max = numwant_max;
    swarm_policy_init(&p, &cfg);
    return p;
}

static struct announce_req req_of(uint64_t left, enum announce_event event, unsigned numwant)
{
    struct announce_req r;

    memset(&r, 0, sizeof(r));
    r.left = left;
    r.event = event;
    r.numwant = numwant;
    r.now_s = 1000;
    return r;
}

static void test_policy_defaults(void **state)
{
    struct swarm_policy p = policy_of(0, 1800, 0, 0);

    (void)state;
    assert_int_equal(p.peer_ttl_s, 3600);
    assert_int_equal(p.downloaded_ttl_s, 0);
    assert_int_equal(p.numwant_max, 200);
}

static void test_policy_roles_and_samples(void **state)
{
    struct swarm_policy p = policy_of(600, 1800, 0, 50);
    struct announce_req r = req_of(0, ANNOUNCE_EVENT_NONE, 10);
    struct swarm_plan plan;

    (void)state;
    swarm_policy_plan(&p, &r, &plan);
    assert_false(plan.stop);
    assert_int_equal(plan.role, SWARM_ROLE_SEEDER);
    assert_false(plan.sample_seeders);          /* a seeder gets only leechers */
    assert_true(plan.sample_leechers);
    assert_int_equal(plan.numwant, 10);
    assert_int_equal(plan.expiry_s, 1600);
    assert_int_equal(plan.downloaded_expiry_s, 0);

    r = req_of(1, ANNOUNCE_EVENT_STARTED, 500);
    swarm_policy_plan(&p, &r, &plan);
    assert_int_equal(plan.role, SWARM_ROLE_LEECHER);
    assert_true(plan.sample_seeders);           /* a leecher gets seeders, then leechers */
    assert_true(plan.sample_leechers);
    assert_int_equal(plan.numwant, 50);         /* capped */

    r = req_of(1, ANNOUNCE_EVENT_NONE, 0);
    swarm_policy_plan(&p, &r, &plan);
    assert_false(plan.sample_seeders);
    assert_false(plan.sample_leechers);
    assert_int_equal(swarm_policy_fetch(7), 8);  /* room to drop the peer itself */
}

static void test_policy_stopped(void **state)
{
    struct swarm_policy p = policy_of(600, 1800, 0, 50);
    struct announce_req r = req_of(0, ANNOUNCE_EVENT_STOPPED, 30);
    struct swarm_plan plan;

    (void)state;
    swarm_policy_plan(&p, &r, &plan);
    assert_true(plan.stop);
    assert_int_equal(plan.numwant, 0);
    assert_false(plan.sample_seeders || plan.sample_leechers);
    assert_false(swarm_policy_counts_download(&plan, true));
}

static void test_policy_download_is_a_completed_move(void **state)
{
    struct swarm_policy p = policy_of(600, 1800, 0, 50);
    struct announce_req r = req_of(0, ANNOUNCE_EVENT_COMPLETED, 30);
    struct swarm_plan plan;

    (void)state;
    swarm_policy_plan(&p, &r, &plan);
    assert_true(plan.completing);
    assert_true(swarm_policy_counts_download(&plan, true));
    assert_false(swarm_policy_counts_download(&plan, false));   /* already a seeder, or new */

    r = req_of(5, ANNOUNCE_EVENT_COMPLETED, 30);                 /* completed with left > 0 */
    swarm_policy_plan(&p, &r, &plan);
    assert_false(plan.completing);
    assert_int_equal(plan.role, SWARM_ROLE_LEECHER);
    assert_false(swarm_policy_counts_download(&plan, true));

    r = req_of(0, ANNOUNCE_EVENT_NONE, 30);                      /* left == 0 without the event */
    swarm_policy_plan(&p, &r, &plan);
    assert_false(swarm_policy_counts_download(&plan, true));
}

static void test_policy_alive_and_retention(void **state)
{
    struct swarm_policy forever = policy_of(600, 1800, 0, 50), day = policy_of(600, 1800, 86400, 50);
    struct announce_req r = req_of(1, ANNOUNCE_EVENT_NONE, 30);
    struct swarm_plan plan;

    (void)state;
    assert_true(swarm_policy_alive(101, 100));
    assert_false(swarm_policy_alive(100, 100));  /* Redis reaps score <= now */
    assert_int_equal(swarm_policy_downloaded(&forever, 7, 0, 1000000000), 7);
    assert_int_equal(swarm_policy_downloaded(&day, 7, 1000, 1000 + 86399), 7);
    assert_int_equal(swarm_policy_downloaded(&day, 7, 1000, 1000 + 86400), 0);
    swarm_policy_plan(&day, &r, &plan);
    assert_int_equal(plan.downloaded_expiry_s, 1000 + 86400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_defaults),
        cmocka_unit_test(test_policy_roles_and_samples),
        cmocka_unit_test(test_policy_stopped),
        cmocka_unit_test(test_policy_download_is_a_completed_move),
        cmocka_unit_test(test_policy_alive_and_retention),
    };

    return cmocka_run_group_tests_name("swarm_policy", tests, NULL, NULL);
}
