/* Unit tests of lib/private_admin.c's pure parts: user names, info_hash and multiplier checks,
 * passkeys (alphabet, length, distinct draws), the FCALL vectors of the management functions
 * (their exact key names and argument order), and the flat JSON reader (values, escapes, and a
 * reason with the byte offset for every malformed input the admin API must answer 400 to). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/private_admin.h"

static void test_names(void **state)
{
    (void)state;
    char n64[65];
    memset(n64, 'a', 64);
    n64[64] = '\0';
    assert_true(private_valid_name("alice"));
    assert_true(private_valid_name("A-b_c.9"));
    assert_true(private_valid_name(n64));
    n64[63] = '\0';
    assert_true(private_valid_name(n64));
    assert_false(private_valid_name(""));
    assert_false(private_valid_name("x y"));
    assert_false(private_valid_name("a/b"));
    assert_false(private_valid_name("\xc3\xa9"));
    char n65[66];
    memset(n65, 'a', 65);
    n65[65] = '\0';
    assert_false(private_valid_name(n65));
}

static void test_hex_and_multipliers(void **state)
{
    (void)state;
    char hex[PRIVATE_HEX_LEN + 1];
    assert_int_equal(private_parse_hex("0123456789ABCDEFabcdef0123456789abcdef01", hex), 0);
    assert_string_equal(hex, "0123456789abcdefabcdef0123456789abcdef01");
    assert_int_equal(private_parse_hex("0123", hex), -1);
    assert_int_equal(private_parse_hex("g123456789abcdefabcdef0123456789abcdef01", hex), -1);
    assert_true(private_valid_multiplier("1"));
    assert_true(private_valid_multiplier("0"));
    assert_true(private_valid_multiplier("0.5"));
    assert_true(private_valid_multiplier("2."));
    assert_false(private_valid_multiplier(""));
    assert_false(private_valid_multiplier("-1"));
    assert_false(private_valid_multiplier(".5"));
    assert_false(private_valid_multiplier("1e3"));
    assert_false(private_valid_multiplier("1.2.3"));
}

static void test_passkeys(void **state)
{
    (void)state;
    char a[PRIVATE_PASSKEY_LEN + 1], b[PRIVATE_PASSKEY_LEN + 1];
    assert_int_equal(private_new_passkey(a), 0);
    assert_int_equal(private_new_passkey(b), 0);
    assert_int_equal(strlen(a), PRIVATE_PASSKEY_LEN);
    assert_int_equal(strspn(a, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), PRIVATE_PASSKEY_LEN);
    assert_string_not_equal(a, b);
}

static void test_calls(void **state)
{
    (void)state;
    struct private_call c;
    private_call_user_add(&c, "tyto:", "alice", "K", 5, 7);
    assert_int_equal(c.argc, 10);
    const char *want[] = { "FCALL", "tyto_user_add", "3", "tyto:{private}:user:alice", "tyto:{private}:passkey:K",
                           "tyto:{private}:users", "alice", "K", "5", "7" };
    for (int i = 0; i < 10; i++)
        assert_string_equal(c.argv[i], want[i]);
    private_call_user_rekey(&c, "p:", "bob", "N");
    assert_int_equal(c.argc, 6);
    assert_string_equal(c.argv[3], "p:{private}:user:bob");
    assert_string_equal(c.argv[4], "p:{private}:passkey:N");
    assert_string_equal(c.argv[5], "N");
    private_call_torrent_add(&c, "tyto:", "ab", 9, true, false, "1", "0.5");
    const char *tw[] = { "FCALL", "tyto_torrent_add", "1", "tyto:{ab}:torrent", "9", "1", "0", "1", "0.5" };
    assert_int_equal(c.argc, 9);
    for (int i = 0; i < 9; i++)
        assert_string_equal(c.argv[i], tw[i]);
    private_call_user_list(&c, "tyto:");
    assert_int_equal(c.argc, 4);
    assert_string_equal(c.argv[3], "tyto:{private}:users");
}

static int parse(const char *s, struct pjson_field *f, int max, char *err)
{
    const char *p = s;
    return pjson_object(&p, s + strlen(s), s, f, max, err, 128);
}

static void test_json_ok(void **state)
{
    (void)state;
    struct pjson_field f[8];
    char err[128];
    int n = parse(" { \"name\" : \"a\\\"b\\u00e9\\n\", \"expires_days\": 30, \"x\": -1.5e3, \"t\": true,"
                  " \"f\": false, \"z\": null } ", f, 8, err);
    assert_int_equal(n, 6);
    assert_string_equal(pjson_get(f, n, "name")->text, "a\"b\xc3\xa9\n");
    assert_int_equal(pjson_get(f, n, "expires_days")->type, PJSON_NUMBER);
    assert_string_equal(pjson_get(f, n, "expires_days")->text, "30");
    assert_string_equal(pjson_get(f, n, "x")->text, "-1.5e3");
    assert_string_equal(pjson_get(f, n, "t")->text, "true");
    assert_string_equal(pjson_get(f, n, "f")->text, "false");
    assert_int_equal(pjson_get(f, n, "z")->type, PJSON_NULL);
    assert_null(pjson_get(f, n, "nope"));
    assert_int_equal(parse("{}", f, 8, err), 0);
}

static void test_json_malformed(void **state)
{
    (void)state;
    struct pjson_field f[2];
    char err[128];
    static const struct { const char *in, *why; } cases[] = {
        { "", "expected a JSON object at byte 0" },
        { "[1]", "expected a JSON object at byte 0" },
        { "{\"a\" 1}", "expected ':' at byte 5" },
        { "{\"a\":}", "bad number at byte 5" },
        { "{\"a\":01}", "expected ',' or '}' at byte 6" },
        { "{\"a\":1,}", "expected a member name at byte 7" },
        { "{\"a\":\"x", "unterminated string at byte 7" },
        { "{\"a\":{}}", "nested objects and arrays are not accepted at byte 5" },
        { "{\"a\":1,\"a\":2}", "duplicate member at byte 12" },
        { "{\"a\":1,\"b\":2,\"c\":3}", "too many members at byte 18" },
        { "{\"a\":\"\\q\"}", "bad escape at byte 7" },
        { "{\"a\":tru}", "bad number at byte 5" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i].in, f, 2, err), -1);
        assert_string_equal(err, cases[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_hex_and_multipliers),
        cmocka_unit_test(test_passkeys),      cmocka_unit_test(test_calls),
        cmocka_unit_test(test_json_ok),       cmocka_unit_test(test_json_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
