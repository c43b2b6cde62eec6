/* Unit tests for lib/query.c: pair scanning, percent-decoding, strict decimals, and no read past
 * the end of the input (inputs placed right before a PROT_NONE page). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/query.h"

/* ---- guard page: input ends exactly where an unmapped page begins ---- */

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

/* ---- query_next ---- */

static void expect_pair(const char *q, size_t *pos, const char *key, const char *val)
{
    struct query_param p;

    assert_int_equal(query_next(q, strlen(q), pos, &p), 1);
    assert_int_equal(p.key_len, strlen(key));
    assert_memory_equal(p.key, key, p.key_len);
    assert_int_equal(p.val_len, strlen(val));
    if (p.val_len)
        assert_memory_equal(p.val, val, p.val_len);
}

static void test_query_next_splits_pairs(void **state)
{
    const char *q = "a=1&bb=&c&&d=4&";
    size_t pos = 0;
    struct query_param p;

    (void)state;
    expect_pair(q, &pos, "a", "1");
    expect_pair(q, &pos, "bb", "");
    expect_pair(q, &pos, "c", "");
    expect_pair(q, &pos, "d", "4");
    assert_int_equal(query_next(q, strlen(q), &pos, &p), 0);
    assert_int_equal(query_next(q, strlen(q), &pos, &p), 0);
}

static void test_query_next_empty_and_separators_only(void **state)
{
    struct query_param p;
    size_t pos = 0;

    (void)state;
    assert_int_equal(query_next("", 0, &pos, &p), 0);
    pos = 0;
    assert_int_equal(query_next("&&&", 3, &pos, &p), 0);
    pos = 0;
    assert_int_equal(query_next(NULL, 0, &pos, &p), 0);
}

static void test_query_next_splits_at_first_equals(void **state)
{
    const char *q = "a=b=c&=x&&&k=%26";
    size_t pos = 0;

    (void)state;
    expect_pair(q, &pos, "a", "b=c");
    expect_pair(q, &pos, "", "x");
    expect_pair(q, &pos, "k", "%26");
}

static void test_query_next_respects_len(void **state)
{
    const char *q = "a=12345&b=2";
    size_t pos = 0;
    struct query_param p;

    (void)state;
    assert_int_equal(query_next(q, 4, &pos, &p), 1);
    assert_int_equal(p.val_len, 2);
    assert_memory_equal(p.val, "12", 2);
    assert_int_equal(query_next(q, 4, &pos, &p), 0);
}

static void test_query_key_is_compares_raw_keys(void **state)
{
    const char *q = "info_hash=x&info%5Fhash=y&info=z";
    size_t pos = 0;
    struct query_param p;

    (void)state;
    assert_int_equal(query_next(q, strlen(q), &pos, &p), 1);
    assert_true(query_key_is(&p, "info_hash"));
    assert_false(query_key_is(&p, "info"));
    assert_false(query_key_is(&p, "info_hash2"));
    assert_int_equal(query_next(q, strlen(q), &pos, &p), 1);
    assert_false(query_key_is(&p, "info_hash"));
    assert_int_equal(query_next(q, strlen(q), &pos, &p), 1);
    assert_true(query_key_is(&p, "info"));
}

/* ---- query_decode ---- */

static int decode(const char *s, uint8_t *dst, size_t cap)
{
    return query_decode(s, strlen(s), dst, cap);
}

static void test_query_decode_plain_and_escapes(void **state)
{
    uint8_t b[32];

    (void)state;
    assert_int_equal(decode("abc", b, sizeof(b)), 3);
    assert_memory_equal(b, "abc", 3);
    assert_int_equal(decode("%41%62%7e%7E", b, sizeof(b)), 4);
    assert_memory_equal(b, "Ab~~", 4);
    assert_int_equal(decode("a+b%2B", b, sizeof(b)), 4);
    assert_memory_equal(b, "a b+", 4);
    assert_int_equal(decode("", b, sizeof(b)), 0);
    assert_int_equal(query_decode("", 0, NULL, 0), 0);
}

static void test_query_decode_allows_nul_and_high_bytes(void **state)
{
    uint8_t b[8];
    static const uint8_t want[] = { 0x00, 0xff, 0x80, 'x', 0x00 };

    (void)state;
    assert_int_equal(decode("%00%FF%80x%00", b, sizeof(b)), 5);
    assert_memory_equal(b, want, 5);
}

static void test_query_decode_rejects_bad_escapes(void **state)
{
    uint8_t b[32];
    static const char *const bad[] = { "%", "%4", "%zz", "%4g", "%g4", "ab%", "ab%4", "%%41",
                                       "%-1", "%+1", "% 1", "%0x" };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode(bad[i], b, sizeof(b)), -1);
        assert_int_equal(query_decoded_len(bad[i], strlen(bad[i])), -1);
    }
}

static void test_query_decode_respects_cap(void **state)
{
    uint8_t b[4] = { 0 };

    (void)state;
    assert_int_equal(decode("abcd", b, 4), 4);
    assert_int_equal(decode("abcde", b, 4), -1);
    assert_int_equal(decode("%41%42%43%44%45", b, 4), -1);
    assert_int_equal(query_decoded_len("%41%42%43%44%45", 15), 5);
    assert_int_equal(decode("a", b, 0), -1);
    /* cap bytes only: a byte past cap is never written */
    uint8_t big[6] = { 9, 9, 9, 9, 9, 9 };
    assert_int_equal(decode("abcdef", big, 3), -1);
    assert_int_equal(big[3], 9);
}

static void test_query_decoded_len_counts(void **state)
{
    (void)state;
    assert_int_equal(query_decoded_len("", 0), 0);
    assert_int_equal(query_decoded_len("a%20b+", 6), 4);
    assert_int_equal(query_decoded_len("%00%00", 6), 2);
}

/* ---- query_parse_u64 ---- */

static int u64(const char *s, uint64_t max, uint64_t *out)
{
    return query_parse_u64(s, strlen(s), max, out);
}

static void test_query_parse_u64_accepts_decimals(void **state)
{
    uint64_t v = 7;

    (void)state;
    assert_int_equal(u64("0", UINT64_MAX, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(u64("123", UINT64_MAX, &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(u64("18446744073709551615", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(u64("00000000000000000042", UINT64_MAX, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(u64("65535", 65535, &v), 0);
    assert_int_equal(v, 65535);
}

static void test_query_parse_u64_rejects_malformed(void **state)
{
    uint64_t v = 7;
    static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "1a", "a1", "0x10", "1.5",
                                       "18446744073709551616", "99999999999999999999",
                                       "000000000000000000001", "123456789012345678901" };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(u64(bad[i], UINT64_MAX, &v), -1);
    assert_int_equal(v, 7);      /* untouched on error */
    assert_int_equal(u64("65536", 65535, &v), -1);
    assert_int_equal(query_parse_u64("12", 1, 100, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(query_parse_u64("1\0", 2, 100, &v), -1);
}

/* ---- no overread ---- */

static void test_query_no_overread_at_page_end(void **state)
{
    static const char *const inputs[] = { "%", "%4", "a=%", "a=%4", "a", "a=", "&", "a=1&",
                                          "info_hash=%41%4", "18446744073709551615", "%41" };
    struct guard g;
    uint8_t b[64];
    uint64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t n = strlen(inputs[i]);
        const char *s = guard_put(&g, inputs[i], n);
        struct query_param p;
        size_t pos = 0, pairs = 0;

        while (query_next(s, n, &pos, &p)) {
            pairs++;
            assert_true(p.key + p.key_len <= s + n);
            assert_true(p.val + p.val_len <= s + n);
            (void)query_decode(p.val, p.val_len, b, sizeof(b));
            (void)query_decoded_len(p.val, p.val_len);
        }
        assert_true(pairs <= n);
        (void)query_decode(s, n, b, sizeof(b));
        (void)query_decoded_len(s, n);
        (void)query_parse_u64(s, n, UINT64_MAX, &v);
        guard_free(&g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_next_splits_pairs),
        cmocka_unit_test(test_query_next_empty_and_separators_only),
        cmocka_unit_test(test_query_next_splits_at_first_equals),
        cmocka_unit_test(test_query_next_respects_len),
        cmocka_unit_test(test_query_key_is_compares_raw_keys),
        cmocka_unit_test(test_query_decode_plain_and_escapes),
        cmocka_unit_test(test_query_decode_allows_nul_and_high_bytes),
        cmocka_unit_test(test_query_decode_rejects_bad_escapes),
        cmocka_unit_test(test_query_decode_respects_cap),
        cmocka_unit_test(test_query_decoded_len_counts),
        cmocka_unit_test(test_query_parse_u64_accepts_decimals),
        cmocka_unit_test(test_query_parse_u64_rejects_malformed),
        cmocka_unit_test(test_query_no_overread_at_page_end),
    };

    return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
