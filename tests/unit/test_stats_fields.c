/* lib/stats_fields.c: the one reader of a swarm's stats hash (the aggregator's pass, the
 * /stats?info_hash route and `tyto swarm` all take their figures from it). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/stats_fields.h"

#define NOW 1796300000LL       /* a Thursday in December 2026 */
#define INTERVAL 1800

struct hash {
    redisReply arr;
    redisReply *el[96];
    redisReply items[96];
    char text[96][48];
};

/* Adds field name = value (a bulk string, or an integer when as_int). */
static void put(struct hash *h, bool as_int, long long value, const char *fmt, ...)
{
    size_t n = h->arr.elements;

    assert_true(n + 2 <= sizeof(h->items) / sizeof(h->items[0]));
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(h->text[n], sizeof(h->text[n]), fmt, ap);
    va_end(ap);
    h->items[n] = (redisReply){ .type = REDIS_REPLY_STRING, .str = h->text[n], .len = strlen(h->text[n]) };
    if (as_int) {
        h->items[n + 1] = (redisReply){ .type = REDIS_REPLY_INTEGER, .integer = value };
    } else {
        snprintf(h->text[n + 1], sizeof(h->text[n + 1]), "%lld", value);
        h->items[n + 1] = (redisReply){ .type = REDIS_REPLY_STRING, .str = h->text[n + 1],
                                        .len = strlen(h->text[n + 1]) };
    }
    h->el[n] = &h->items[n];
    h->el[n + 1] = &h->items[n + 1];
    h->arr.elements = n + 2;
}

static void hash_init(struct hash *h)
{
    memset(h, 0, sizeof(*h));
    h->arr.type = REDIS_REPLY_ARRAY;
    h->arr.element = h->el;
}

struct stale_log {
    char names[16][48];
    int n;
};

static void on_stale(const char *name, size_t len, void *arg)
{
    struct stale_log *l = arg;

    assert_true(l->n < 16 && len < sizeof(l->names[0]));
    memcpy(l->names[l->n], name, len);
    l->names[l->n++][len] = '\0';
}

static bool stale_has(const struct stale_log *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

static void test_minutes_by_age_hour_and_interval(void **state)
{
    struct hash h;
    struct stats_fields f;
    struct stale_log st = { .n = 0 };
    long long m = NOW / 60, since = (NOW - INTERVAL) / 60;
    char name[48];

    (void)state;
    hash_init(&h);
    put(&h, false, 3, "s:%lld", m);
    put(&h, false, 2, "l:%lld", m);
    put(&h, true, 4, "l:%lld", m - 1);
    put(&h, false, 6, "s:%lld", since);          /* the minute the interval began in: in it */
    put(&h, false, 5, "s:%lld", since - 1);      /* before the interval, in the hour */
    put(&h, false, 1, "s:%lld", m - 59);
    put(&h, false, 7, "l:%lld", m - 60);         /* an hour old: stale, counted nowhere */
    stats_fields_parse(&h.arr, NOW, INTERVAL, &f, on_stale, &st);
    assert_int_equal(f.minute[0], 5);
    assert_int_equal(f.minute[1], 4);
    assert_int_equal(f.minute[59], 1);
    assert_int_equal(f.minute[m - since], 6);
    assert_int_equal(f.announces_hour, 3 + 2 + 4 + 6 + 5 + 1);
    assert_int_equal(f.announces_interval, 3 + 2 + 4 + 6);
    assert_int_equal(f.last_minute, m);
    assert_int_equal(st.n, 1);
    snprintf(name, sizeof(name), "l:%lld", m - 60);
    assert_true(stale_has(&st, name));
}

static void test_interval_counters_take_the_larger_of_two(void **state)
{
    struct hash h;
    struct stats_fields f;
    struct stale_log st = { .n = 0 };
    long long k = NOW / INTERVAL;
    char name[48];

    (void)state;
    hash_init(&h);
    put(&h, false, 3, "c:%lld:qbittorrent", k);
    put(&h, false, 5, "c:%lld:qbittorrent", k - 1);
    put(&h, true, 1, "c:%lld:transmission", k);
    put(&h, false, 9, "c:%lld:deluge", k - 2);     /* stale */
    put(&h, false, 2, "fast:%lld", k);
    put(&h, false, 7, "fast:%lld", k - 1);
    put(&h, false, 1, "fast:%lld", k - 3);         /* stale */
    put(&h, true, 3, "phantom:%lld", k);
    put(&h, false, 4, "c:%lld:aria2", k + 1);      /* a clock ahead: ignored, kept */
    stats_fields_parse(&h.arr, NOW, INTERVAL, &f, on_stale, &st);
    assert_int_equal(f.nclients, 2);
    assert_string_equal(f.clients[0].code, "qbittorrent");
    assert_int_equal(f.clients[0].peers, 5);
    assert_string_equal(f.clients[1].code, "transmission");
    assert_int_equal(f.clients[1].peers, 1);
    assert_int_equal(f.fast, 7);
    assert_int_equal(f.phantom, 3);
    assert_int_equal(st.n, 2);
    snprintf(name, sizeof(name), "c:%lld:deluge", k - 2);
    assert_true(stale_has(&st, name));
    snprintf(name, sizeof(name), "fast:%lld", k - 3);
    assert_true(stale_has(&st, name));
}

static void test_other_fields_and_junk_are_skipped(void **state)
{
    struct hash h;
    struct stats_fields f;
    struct stale_log st = { .n = 0 };

    (void)state;
    hash_init(&h);
    put(&h, false, 1796000000LL, "first");
    put(&h, false, 9, "seeders4");
    put(&h, false, 9, "anomaly:fast_announce");
    put(&h, false, 9, "s:abc");
    put(&h, false, 9, "s:");
    put(&h, false, 9, "c:%lld", NOW / INTERVAL);                  /* no client */
    put(&h, false, 9, "c:%lld:", NOW / INTERVAL);                 /* empty client */
    put(&h, false, 9, "c:%lld:a-client-code-too-long", NOW / INTERVAL);
    put(&h, false, 9, "fast:12x");
    put(&h, false, 9, "s:%lldz", NOW / 60);
    h.el[h.arr.elements++] = NULL;                                 /* a dangling name */
    stats_fields_parse(&h.arr, NOW, INTERVAL, &f, on_stale, &st);
    assert_int_equal(f.first_s, 1796000000LL);
    assert_int_equal(f.announces_hour, 0);
    assert_int_equal(f.last_minute, 0);
    assert_int_equal(f.nclients, 0);
    assert_int_equal(f.fast, 0);
    assert_int_equal(st.n, 0);
    /* not a hash at all */
    redisReply nil = { .type = REDIS_REPLY_NIL };
    stats_fields_parse(&nil, NOW, INTERVAL, &f, on_stale, &st);
    assert_int_equal(f.first_s, 0);
    stats_fields_parse(NULL, NOW, INTERVAL, &f, NULL, NULL);
    assert_int_equal(f.announces_interval, 0);
}

static void test_clients_bounded(void **state)
{
    struct hash h;
    struct stats_fields f;

    (void)state;
    hash_init(&h);
    for (int i = 0; i < STATS_FIELDS_CLIENTS + 4; i++)
        put(&h, false, i + 1, "c:%lld:x%d", NOW / INTERVAL, i);
    stats_fields_parse(&h.arr, NOW, INTERVAL, &f, NULL, NULL);
    assert_int_equal(f.nclients, STATS_FIELDS_CLIENTS);
    assert_string_equal(f.clients[STATS_FIELDS_CLIENTS - 1].code, "x31");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minutes_by_age_hour_and_interval),
        cmocka_unit_test(test_interval_counters_take_the_larger_of_two),
        cmocka_unit_test(test_other_fields_and_junk_are_skipped),
        cmocka_unit_test(test_clients_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
