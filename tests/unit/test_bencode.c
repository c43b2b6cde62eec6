/* Unit tests for lib/bencode.c: the writer's exact bytes, the strict reader's canonical checks,
 * the lookup helpers, and no read past the end (inputs placed before a PROT_NONE page). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "lib/bencode.h"

/* ---- helpers ---- */

struct guard {
    uint8_t *map;
    size_t map_len;
};

/* Copies s to the end of a mapping whose next page is PROT_NONE; returns the copy. */
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

/* Asserts that buf holds exactly want, then empties it. */
static void expect_buf(struct evbuffer *buf, const char *want, size_t want_len)
{
    size_t n = evbuffer_get_length(buf);

    assert_int_equal(n, want_len);
    if (n)
        assert_memory_equal(evbuffer_pullup(buf, -1), want, n);
    evbuffer_drain(buf, n);
}

#define EXPECT_BUF(buf, lit) expect_buf((buf), (lit), sizeof(lit) - 1)

static int check(const char *s)
{
    return bencode_check((const uint8_t *)s, strlen(s));
}

/* ---- writer ---- */

static void test_bencode_writes_integers(void **state)
{
    struct evbuffer *b = evbuffer_new();

    (void)state;
    bencode_int(b, 0);
    EXPECT_BUF(b, "i0e");
    bencode_int(b, 42);
    EXPECT_BUF(b, "i42e");
    bencode_int(b, -1);
    EXPECT_BUF(b, "i-1e");
    bencode_int(b, INT64_MAX);
    EXPECT_BUF(b, "i9223372036854775807e");
    bencode_int(b, INT64_MIN);
    EXPECT_BUF(b, "i-9223372036854775808e");
    bencode_int(b, 1000000);
    EXPECT_BUF(b, "i1000000e");
    evbuffer_free(b);
}

static void test_bencode_writes_strings(void **state)
{
    struct evbuffer *b = evbuffer_new();
    char big[300];
    char want[320];

    (void)state;
    bencode_str(b, "", 0);
    EXPECT_BUF(b, "0:");
    bencode_str(b, "spam", 4);
    EXPECT_BUF(b, "4:spam");
    bencode_str(b, "a\0b", 3);
    EXPECT_BUF(b, "3:a\0b");
    bencode_cstr(b, "min interval");
    EXPECT_BUF(b, "12:min interval");
    bencode_str(b, NULL, 0);
    EXPECT_BUF(b, "0:");

    /* both sides of the small-string path */
    for (size_t len = 60; len <= sizeof(big); len++) {
        memset(big, 'x', len);
        bencode_str(b, big, len);
        int h = snprintf(want, sizeof(want), "%zu:", len);
        memcpy(want + h, big, len);
        expect_buf(b, want, (size_t)h + len);
    }
    evbuffer_free(b);
}

static void test_bencode_writes_containers(void **state)
{
    struct evbuffer *b = evbuffer_new();

    (void)state;
    bencode_dict_begin(b);
    bencode_cstr(b, "a");
    bencode_list_begin(b);
    bencode_int(b, 1);
    bencode_cstr(b, "x");
    bencode_dict_begin(b);
    bencode_end(b);
    bencode_end(b);
    bencode_cstr(b, "b");
    bencode_int(b, -2);
    bencode_end(b);
    size_t n = evbuffer_get_length(b);
    const uint8_t *p = evbuffer_pullup(b, -1);
    assert_int_equal(bencode_check(p, n), (int)n);
    EXPECT_BUF(b, "d1:ali1e1:xdee1:bi-2ee");
    evbuffer_free(b);
}

static void test_bencode_put_helpers_return_end(void **state)
{
    char b[64];
    char *e;

    (void)state;
    e = bencode_put_int(b, -7);
    assert_int_equal(e - b, 4);
    assert_memory_equal(b, "i-7e", 4);
    e = bencode_put_strhdr(b, 0);
    assert_int_equal(e - b, 2);
    assert_memory_equal(b, "0:", 2);
    e = bencode_put_strhdr(b, SIZE_MAX);
    assert_true(e - b <= BENCODE_STRHDR_MAX_LEN);
    e = bencode_put_int(b, INT64_MIN);
    assert_int_equal(e - b, BENCODE_INT_MAX_LEN);
}

/* ---- reader: bencode_check ---- */

static void test_bencode_check_accepts_canonical(void **state)
{
    (void)state;
    assert_int_equal(check("i0e"), 3);
    assert_int_equal(check("i-1e"), 4);
    assert_int_equal(check("i10e"), 4);
    assert_int_equal(check("i9223372036854775807e"), 21);
    assert_int_equal(check("i-9223372036854775808e"), 22);
    assert_int_equal(check("0:"), 2);
    assert_int_equal(check("4:spam"), 6);
    assert_int_equal(check("10:0123456789"), 13);
    assert_int_equal(check("le"), 2);
    assert_int_equal(check("de"), 2);
    assert_int_equal(check("l4:spami42ee"), 12);
    assert_int_equal(check("d1:ai1e1:bi2ee"), 14);
    assert_int_equal(check("d1:ai1e2:aai2ee"), 15);   /* a proper prefix sorts first */
    assert_int_equal(check("d2:abi1e1:bi2ee"), 15);
    assert_int_equal(check("d0:i0e1:ale1:bdee"), 17);  /* empty key is a key */
    assert_int_equal(check("d1:\x01i0e1:\xffi0ee"), 14); /* bytewise, unsigned */
}

static void test_bencode_check_returns_length_of_first_value(void **state)
{
    (void)state;
    assert_int_equal(check("i1eXYZ"), 3);
    assert_int_equal(check("3:abcde"), 5);
    assert_int_equal(check("lei1e"), 2);
}

static void test_bencode_check_rejects_non_canonical(void **state)
{
    static const char *const bad[] = {
        "", "x", "e", "i", "ie", "i-e", "i1", "i01e", "i00e", "i-0e", "i-01e", "i+1e", "i 1e",
        "i1.0e", "i--1e", "i9223372036854775808e", "i-9223372036854775809e",
        "i99999999999999999999999e", "01:a", "00:", "-1:a", "5:abc", "1", "1a", ":", "4spam",
        "l", "li1e", "d", "d1:a", "d1:ai1e", "d1:ae", "di1ei2ee", "dlei1ee", "ddei1ee",
        "d1:bi1e1:ai2ee", "d1:ai1e1:ai2ee", "d2:aai1e1:ai2ee", "d1:\xffi0e1:\x01i0ee",
        "l4:spam", "lx", "99999999999999999999999:a",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (check(bad[i]) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    /* an empty input is truncation too */
    assert_int_equal(bencode_check((const uint8_t *)"i0e", 0), -1);
}

static void test_bencode_check_limits_nesting(void **state)
{
    char b[2 * (BENCODE_MAX_DEPTH + 1) + 1];
    int n;

    (void)state;
    for (n = 0; n < BENCODE_MAX_DEPTH; n++)
        b[n] = 'l';
    for (int i = 0; i < BENCODE_MAX_DEPTH; i++)
        b[n++] = 'e';
    assert_int_equal(bencode_check((const uint8_t *)b, (size_t)n), n);

    for (n = 0; n < BENCODE_MAX_DEPTH + 1; n++)
        b[n] = 'l';
    for (int i = 0; i < BENCODE_MAX_DEPTH + 1; i++)
        b[n++] = 'e';
    assert_int_equal(bencode_check((const uint8_t *)b, (size_t)n), -1);

    /* dicts count too */
    char d[5 * (BENCODE_MAX_DEPTH + 1) + 8];
    n = 0;
    for (int i = 0; i < BENCODE_MAX_DEPTH + 1; i++) {
        memcpy(d + n, "d1:a", 4);
        n += 4;
    }
    memcpy(d + n, "i0e", 3);
    n += 3;
    for (int i = 0; i < BENCODE_MAX_DEPTH + 1; i++)
        d[n++] = 'e';
    assert_int_equal(bencode_check((const uint8_t *)d, (size_t)n), -1);
    assert_int_equal(bencode_check((const uint8_t *)d + 4, (size_t)n - 5), n - 5);
}

/* ---- lookups ---- */

static void test_bencode_dict_get_finds_values(void **state)
{
    const char *s = "d8:completei5e4:listli1ei2ee5:peers6:abcdefe";
    const uint8_t *d = (const uint8_t *)s, *v, *str;
    size_t vlen, slen;
    int64_t i;

    (void)state;
    assert_int_equal(bencode_check(d, strlen(s)), (int)strlen(s));
    assert_int_equal(bencode_dict_get(d, strlen(s), "complete", &v, &vlen), 0);
    assert_int_equal(bencode_get_int(v, vlen, &i), 0);
    assert_int_equal(i, 5);
    assert_int_equal(bencode_dict_get(d, strlen(s), "peers", &v, &vlen), 0);
    assert_int_equal(bencode_get_str(v, vlen, &str, &slen), 0);
    assert_int_equal(slen, 6);
    assert_memory_equal(str, "abcdef", 6);
    assert_int_equal(bencode_get_int(v, vlen, &i), -1);
    assert_int_equal(bencode_dict_get(d, strlen(s), "list", &v, &vlen), 0);
    assert_int_equal(vlen, 8);
    assert_int_equal(bencode_list_get(v, vlen, 1, &v, &vlen), 0);
    assert_int_equal(bencode_get_int(v, vlen, &i), 0);
    assert_int_equal(i, 2);

    assert_int_equal(bencode_dict_get(d, strlen(s), "peer", &v, &vlen), -1);
    assert_int_equal(bencode_dict_get(d, strlen(s), "peers6", &v, &vlen), -1);
    assert_int_equal(bencode_dict_get((const uint8_t *)"de", 2, "a", &v, &vlen), -1);
    assert_int_equal(bencode_dict_get((const uint8_t *)"le", 2, "a", &v, &vlen), -1);
    assert_int_equal(bencode_dict_get((const uint8_t *)"d1:bi1e1:ai1ee", 14, "a", &v, &vlen), -1);
}

static void test_bencode_list_get_indexes(void **state)
{
    const char *s = "li1e3:abcdee";
    const uint8_t *v;
    size_t vlen;

    (void)state;
    assert_int_equal(bencode_list_get((const uint8_t *)s, strlen(s), 0, &v, &vlen), 0);
    assert_int_equal(vlen, 3);
    assert_int_equal(bencode_list_get((const uint8_t *)s, strlen(s), 1, &v, &vlen), 0);
    assert_memory_equal(v, "3:abc", 5);
    assert_int_equal(bencode_list_get((const uint8_t *)s, strlen(s), 2, &v, &vlen), 0);
    assert_memory_equal(v, "de", 2);
    assert_int_equal(bencode_list_get((const uint8_t *)s, strlen(s), 3, &v, &vlen), -1);
    assert_int_equal(bencode_list_get((const uint8_t *)"le", 2, 0, &v, &vlen), -1);
}

static void test_bencode_get_helpers_need_exact_values(void **state)
{
    const uint8_t *s;
    size_t slen;
    int64_t i;

    (void)state;
    assert_int_equal(bencode_get_int((const uint8_t *)"i-12e", 5, &i), 0);
    assert_int_equal(i, -12);
    assert_int_equal(bencode_get_int((const uint8_t *)"i-9223372036854775808e", 22, &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(bencode_get_int((const uint8_t *)"i1ex", 4, &i), -1);
    assert_int_equal(bencode_get_int((const uint8_t *)"i01e", 4, &i), -1);
    assert_int_equal(bencode_get_str((const uint8_t *)"2:ab", 4, &s, &slen), 0);
    assert_int_equal(slen, 2);
    assert_int_equal(bencode_get_str((const uint8_t *)"2:abc", 5, &s, &slen), -1);
    assert_int_equal(bencode_get_str((const uint8_t *)"3:ab", 4, &s, &slen), -1);
}

/* ---- no overread ---- */

/* Every proper prefix of a valid value is truncated: the reader must say so without touching the
 * byte after the input, which is the first byte of an unmapped page. */
static void test_bencode_check_no_overread_at_page_end(void **state)
{
    static const char *const vals[] = {
        ("d8:completei5e10:downloadedi0e10:incompletei3e8:intervali1800e12:min intervali900e"
         "5:peers12:abcdefghijkl6:peers60:e"),
        "li-9223372036854775808e0:d1:aleee",
        "i123e",
        "10:0123456789",
    };
    struct guard g;

    (void)state;
    for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
        size_t len = strlen(vals[v]);

        for (size_t k = 0; k <= len; k++) {
            const uint8_t *p = guard_put(&g, vals[v], k);
            const uint8_t *val;
            size_t vlen;

            assert_int_equal(bencode_check(p, k), k == len ? (int)len : -1);
            (void)bencode_dict_get(p, k, "peers", &val, &vlen);
            (void)bencode_list_get(p, k, 2, &val, &vlen);
            guard_free(&g);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bencode_writes_integers),
        cmocka_unit_test(test_bencode_writes_strings),
        cmocka_unit_test(test_bencode_writes_containers),
        cmocka_unit_test(test_bencode_put_helpers_return_end),
        cmocka_unit_test(test_bencode_check_accepts_canonical),
        cmocka_unit_test(test_bencode_check_returns_length_of_first_value),
        cmocka_unit_test(test_bencode_check_rejects_non_canonical),
        cmocka_unit_test(test_bencode_check_limits_nesting),
        cmocka_unit_test(test_bencode_dict_get_finds_values),
        cmocka_unit_test(test_bencode_list_get_indexes),
        cmocka_unit_test(test_bencode_get_helpers_need_exact_values),
        cmocka_unit_test(test_bencode_check_no_overread_at_page_end),
    };

    return cmocka_run_group_tests_name("bencode", tests, NULL, NULL);
}
