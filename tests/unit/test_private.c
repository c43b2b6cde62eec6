/* Unit tests for private mode's pure parts: lib/private.c's passkey routes (HTTP paths and BEP 41
 * URL data), lib/clientfilter.c's allow and deny rules and the reasons naming them, and
 * lib/ratelimit.c's separate budgets (the unknown-passkey count does not use up announces, and
 * ratelimit_would_allow counts nothing), and that a cached lookup is born when it was sent (a fake
 * storage holds the reply back). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include "lib/clientfilter.h"
#include "lib/config.h"
#include "lib/private.h"
#include "lib/ratelimit.h"
#include "storage/storage.h"

#define PK "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE"

static enum private_route route(const char *path, char *pk)
{
    return private_route(path, strlen(path), pk);
}

static void test_private_routes(void **state)
{
    char pk[PRIVATE_PASSKEY_LEN + 1];
    (void)state;
    assert_int_equal(route("/" PK "/announce", pk), PRIVATE_ROUTE_ANNOUNCE);
    assert_string_equal(pk, PK);
    assert_int_equal(route("/" PK "/scrape", pk), PRIVATE_ROUTE_SCRAPE);
    assert_string_equal(pk, PK);
    /* the route is known, the passkey malformed: "" (answered "unknown passkey") */
    assert_int_equal(route("/short/announce", pk), PRIVATE_ROUTE_ANNOUNCE);
    assert_string_equal(pk, "");
    assert_int_equal(route("/" PK "x/announce", pk), PRIVATE_ROUTE_ANNOUNCE);
    assert_string_equal(pk, "");
    assert_int_equal(route("/aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1d!/announce", pk), PRIVATE_ROUTE_ANNOUNCE);
    assert_string_equal(pk, "");
    /* not a private route at all */
    assert_int_equal(route("/announce", pk), PRIVATE_ROUTE_NONE);
    assert_int_equal(route("//announce", pk), PRIVATE_ROUTE_NONE);
    assert_int_equal(route("/" PK "/announcex", pk), PRIVATE_ROUTE_NONE);
    assert_int_equal(route("/" PK "/x/announce", pk), PRIVATE_ROUTE_NONE);
    assert_int_equal(route("/" PK, pk), PRIVATE_ROUTE_NONE);
    assert_int_equal(route("", pk), PRIVATE_ROUTE_NONE);
    char longseg[100];
    memset(longseg, 'a', sizeof(longseg));
    longseg[0] = '/';
    memcpy(longseg + 70, "/announce", 10);
    assert_int_equal(route(longseg, pk), PRIVATE_ROUTE_NONE);
    /* BEP 41: a query after the path is ignored; scrape paths are recognised (the worker refuses
     * UDP scrape in private mode anyway) */
    const char *u = "/" PK "/announce?x=1";
    assert_int_equal(private_udp_route(u, strlen(u), pk), PRIVATE_ROUTE_ANNOUNCE);
    assert_string_equal(pk, PK);
    assert_int_equal(private_udp_route("/announce", 9, pk), PRIVATE_ROUTE_NONE);
}

static void test_clientfilter(void **state)
{
    struct config cfg;
    char reason[CLIENTFILTER_REASON_MAX];
    const uint8_t qb[20] = "-qB4500-abcdefghijkl", tr[20] = "-TR3000-abcdefghijkl";
    uint8_t odd[20] = "\x01XY'123-abcdefghijkl";
    (void)state;
    config_defaults(&cfg);
    assert_true(clientfilter_allows(&cfg, odd, reason, sizeof(reason)));   /* off */
    cfg.clients_count = 2;
    strcpy(cfg.clients[0], "-qB");
    strcpy(cfg.clients[1], "-DE");
    cfg.clients_mode = CONFIG_CLIENTS_ALLOW;
    assert_true(clientfilter_allows(&cfg, qb, reason, sizeof(reason)));
    assert_false(clientfilter_allows(&cfg, tr, reason, sizeof(reason)));
    assert_string_equal(reason, "client not allowed: peer_id prefix '-TR3000-' is not on the allow list");
    assert_false(clientfilter_allows(&cfg, odd, reason, sizeof(reason)));
    assert_string_equal(reason, "client not allowed: peer_id prefix '?XY?123-' is not on the allow list");
    cfg.clients_mode = CONFIG_CLIENTS_DENY;
    assert_true(clientfilter_allows(&cfg, tr, reason, sizeof(reason)));
    assert_false(clientfilter_allows(&cfg, qb, reason, sizeof(reason)));
    assert_string_equal(reason, "client not allowed: peer_id prefix '-qB' is denied");
}

static void test_ratelimit_kinds(void **state)
{
    struct ratelimit *rl = ratelimit_new(8);
    struct peer_addr a;
    (void)state;
    assert_non_null(rl);
    memset(&a, 0, sizeof(a));
    a.family = AF_INET;
    inet_pton(AF_INET, "192.0.2.7", a.addr);
    for (int i = 0; i < 3; i++) {
        assert_true(ratelimit_would_allow(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1000, 3, 60));
        assert_true(ratelimit_allow_kind(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1000, 3, 60, 1));
    }
    assert_false(ratelimit_would_allow(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1000, 3, 60));
    assert_false(ratelimit_allow_kind(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1000, 3, 60, 1));
    /* the announce budget of the same address is untouched */
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_allow(rl, &a, 1000, 3, 60, 1));
    assert_false(ratelimit_allow(rl, &a, 1000, 3, 60, 1));
    /* the next window starts over; peeking counts nothing */
    for (int i = 0; i < 10; i++)
        assert_true(ratelimit_would_allow(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1060, 1, 60));
    assert_true(ratelimit_allow_kind(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1060, 1, 60, 1));
    assert_false(ratelimit_would_allow(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1060, 1, 60));
    assert_true(ratelimit_would_allow(rl, RATELIMIT_UNKNOWN_PASSKEYS, &a, 1060, 0, 60));   /* off */
    ratelimit_free(rl);
}

/* A storage whose lookups wait until the test answers them. */
struct held {
    struct storage st;
    int lookups;
    storage_lookup_cb *cb;
    void *arg;
};

static int held_lookup(struct storage *st, const struct storage_lookup_req *req, storage_lookup_cb *cb, void *arg)
{
    struct held *h = (struct held *)st;
    (void)req;
    h->lookups++;
    h->cb = cb;
    h->arg = arg;
    return 0;
}

static void held_answer(struct held *h)
{
    struct storage_lookup_reply rep;
    memset(&rep, 0, sizeof(rep));
    rep.user = STORAGE_USER_OK;
    strcpy(rep.name, "alice");
    rep.can_leech = true;
    storage_lookup_cb *cb = h->cb;
    h->cb = NULL;
    cb(&rep, STORAGE_OK, h->arg);
}

static void record(enum announce_err err, void *arg)
{
    *(int *)arg = (int)err;
}

/* The reply comes a cache time after the lookup went out: what it says is that old already, so
 * the next request asks again (the cache used to count from the reply, trusting it longer). */
static void test_cache_born_when_sent(void **state)
{
    static const struct storage_ops ops = { .lookup = held_lookup };
    struct held h;
    struct config cfg;
    struct peer_addr a;
    struct timespec wait = { 0, 300 * 1000000L };
    int res = -1;
    (void)state;

    memset(&h, 0, sizeof(h));
    h.st.ops = &ops;
    config_defaults(&cfg);
    cfg.private_cache_ms = 200;
    memset(&a, 0, sizeof(a));
    a.family = AF_INET;
    struct private_ctx *p = private_new(&cfg, &h.st, NULL);
    assert_non_null(p);
    private_check_scrape(p, PK, &a, 1000, record, &res);
    assert_int_equal(h.lookups, 1);
    nanosleep(&wait, NULL);            /* longer than cache_ms */
    held_answer(&h);
    assert_int_equal(res, ANNOUNCE_OK);
    res = -1;
    private_check_scrape(p, PK, &a, 1000, record, &res);
    assert_int_equal(h.lookups, 2);    /* stale: asked again, not answered from the cache */
    held_answer(&h);
    assert_int_equal(res, ANNOUNCE_OK);
    res = -1;
    private_check_scrape(p, PK, &a, 1000, record, &res);
    assert_int_equal(res, ANNOUNCE_OK); /* a prompt reply is cached */
    assert_int_equal(h.lookups, 2);
    private_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_private_routes),
        cmocka_unit_test(test_clientfilter),
        cmocka_unit_test(test_ratelimit_kinds),
        cmocka_unit_test(test_cache_born_when_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
