/* Unit tests for lib/peer_client.c: real-looking peer_ids of each style (Azureus, Shadow, Mainline,
 * aria2, exbc) with their versions, unknown and garbage ids as "other", and every code a safe
 * Redis field that maps back to its name. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/peer_client.h"

/* The 20-byte id: prefix then filler the way clients pad with random bytes. */
static void id_of(uint8_t id[20], const char *prefix, size_t len)
{
    static const uint8_t fill[20] = "k3Xq9Zr0pLm7Wv2Ty8Nb";
    memcpy(id, fill, 20);
    memcpy(id, prefix, len);
}

static void expect(const char *prefix, size_t len, const char *code, const char *version)
{
    uint8_t id[20];
    struct peer_client c;

    id_of(id, prefix, len);
    memset(&c, 0x55, sizeof(c));
    peer_client_identify(id, &c);
    assert_string_equal(c.code, code);
    assert_string_equal(c.version, version);
    assert_ptr_equal(c.name, peer_client_name(code, strlen(code)));
}

#define EXPECT(prefix, code, version) expect(prefix, sizeof(prefix) - 1, code, version)

static void test_peer_client_azureus_style(void **state)
{
    (void)state;
    EXPECT("-qB4650-", "qbittorrent", "4.6.5");
    EXPECT("-qB4191-", "qbittorrent", "4.1.9.1");
    EXPECT("-qB5010-", "qbittorrent", "5.0.1");
    EXPECT("-LT2080-", "libtorrent", "2.0.8");    /* python3-libtorrent 2.0.8's default fingerprint */
    EXPECT("-LT12J0-", "libtorrent", "1.2.19");   /* libtorrent writes 10+ as 'A'.. */
    EXPECT("-lt0D80-", "rtorrent", "0.13.8");
    EXPECT("-DE2110-", "deluge", "2.1.1");
    EXPECT("-DE13F0-", "deluge", "1.3.15");
    EXPECT("-UT355W-", "utorrent", "3.5.5");
    EXPECT("-UW1420-", "utorrent", "1.4.2");
    EXPECT("-BT7A5S-", "bittorrent", "7.10.5");
    EXPECT("-BC0211-", "bitcomet", "2.11");
    EXPECT("-AZ5770-", "vuze", "5.7.7");
    EXPECT("-BI3190-", "biglybt", "3.1.9");
    EXPECT("-KT4310-", "ktorrent", "4.3.1");
    EXPECT("-WW0105-", "webtorrent", "1.5");
    EXPECT("-PI0091-", "picotorrent", "0.9.1");
    EXPECT("-HL0290-", "halite", "0.2.9");
    EXPECT("-FW6710-", "frostwire", "6.7.1");
    EXPECT("-MO3000-", "monotorrent", "3.0.0");
    /* Known clients whose version scheme we do not know: no guess. */
    EXPECT("-TX3190-", "tixati", "");
    EXPECT("-XL0012-", "xunlei", "");
    EXPECT("-SD0100-", "xunlei", "");
    EXPECT("-FD51R\xff-", "fdm", "");
}

static void test_peer_client_transmission_versions(void **state)
{
    (void)state;
    EXPECT("-TR4040-", "transmission", "4.0.4");
    EXPECT("-TR400B-", "transmission", "4.0.0-beta");
    EXPECT("-TR410Z-", "transmission", "4.1.0-dev");
    EXPECT("-TR3000-", "transmission", "3.0.0");
    EXPECT("-TR2940-", "transmission", "2.94");
    EXPECT("-TR294Z-", "transmission", "2.94-dev");
    EXPECT("-TR133X-", "transmission", "1.33-dev");
}

static void test_peer_client_odd_styles(void **state)
{
    (void)state;
    EXPECT("M7-2-0--", "bittorrent", "7.2.0");
    EXPECT("M4-20-8-", "bittorrent", "4.20.8");
    EXPECT("A2-1-36-0-", "aria2", "1.36.0");
    EXPECT("A2-1-18-10-", "aria2", "1.18.10");
    EXPECT("exbc\x00\x3a", "bitcomet", "0.58");
    EXPECT("exbc\x01\x05LORD", "bitcomet", "1.05");
    EXPECT("S58B-----", "shadow", "5.8.11");
    EXPECT("T03A0---", "bittornado", "0.3.10.0");
    EXPECT("T03I--000", "bittornado", "0.3.18");  /* multi-torrent: a counter after the header */
    EXPECT("A310----", "abc", "3.1.0");
    EXPECT("O0202---", "osprey", "0.2.0.2");
    EXPECT("Q1B0----", "btqueue", "1.11.0");
    EXPECT("R5700---", "tribler", "5.7.0.0");
}

static void test_peer_client_unknown_is_other(void **state)
{
    uint8_t id[20];
    struct peer_client c;
    (void)state;

    memset(id, 0x00, sizeof(id));
    peer_client_identify(id, &c);
    assert_string_equal(c.code, "other");
    assert_string_equal(c.name, "Other");
    assert_string_equal(c.version, "");
    memset(id, 0xff, sizeof(id));
    peer_client_identify(id, &c);
    assert_string_equal(c.code, "other");
    assert_string_equal(c.version, "");

    EXPECT("-ZZ1234-", "other", "");              /* Azureus style, letters nobody uses */
    EXPECT("-qB4650X", "other", "");              /* no closing '-' */
    EXPECT("-TY0001-", "other", "");              /* tyto's own example id: not a client */
    EXPECT("abcdefghijklmnopqrst", "other", "");
    EXPECT("M7-2-0-x", "other", "");              /* mainline needs '-' up to byte 8 */
    EXPECT("M7-2", "other", "");
    EXPECT("M1234-5-6-", "other", "");
    EXPECT("A2-1-36", "other", "");               /* not aria2, and not ABC's Shadow style either */
    EXPECT("S5-8----", "other", "");              /* a digit after the padding */
    EXPECT("S-------", "other", "");              /* no version digit */
    EXPECT("T03A0\x01--", "other", "");
    EXPECT("\xffqB4650-", "other", "");

    /* A known client with bytes that are not its version scheme keeps the client. */
    EXPECT("-qB\xff\x00\x01\x02-", "qbittorrent", "");
    EXPECT("-BC02x1-", "bitcomet", "");
    EXPECT("-TR4\xff" "40-", "transmission", "");
    EXPECT("-PI00A1-", "picotorrent", "");
}

static void test_peer_client_codes_round_trip(void **state)
{
    static const char *const codes[] = {
        "other", "abc", "aria2", "biglybt", "bitcomet", "bittornado", "bittorrent", "btqueue",
        "deluge", "fdm", "frostwire", "halite", "ktorrent", "libtorrent", "monotorrent", "osprey",
        "picotorrent", "qbittorrent", "rtorrent", "shadow", "tixati", "transmission", "tribler",
        "utorrent", "vuze", "webtorrent", "xunlei",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        size_t n = strlen(codes[i]);
        assert_true(n > 0 && n < PEER_CLIENT_CODE_MAX);
        for (size_t k = 0; k < n; k++)
            assert_true((codes[i][k] >= 'a' && codes[i][k] <= 'z') || (codes[i][k] >= '0' && codes[i][k] <= '9'));
        assert_non_null(peer_client_name(codes[i], n));
    }
    assert_string_equal(peer_client_name("qbittorrent", 11), "qBittorrent");
    assert_string_equal(peer_client_name("libtorrent", 10), "libtorrent (Rasterbar)");
    assert_string_equal(peer_client_name("utorrent", 8), "\xc2\xb5Torrent");
    assert_string_equal(peer_client_name("other", 5), "Other");
    assert_string_equal(peer_client_name("vuzeX", 4), "Vuze (Azureus)");   /* length, not NUL */
    assert_null(peer_client_name("vuz", 3));
    assert_null(peer_client_name("qBittorrent", 11));
    assert_null(peer_client_name("", 0));
    assert_null(peer_client_name("tyto", 4));
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_peer_client_azureus_style),
        cmocka_unit_test(test_peer_client_transmission_versions),
        cmocka_unit_test(test_peer_client_odd_styles),
        cmocka_unit_test(test_peer_client_unknown_is_other),
        cmocka_unit_test(test_peer_client_codes_round_trip),
    };
    return cmocka_run_group_tests_name("peer_client", t, NULL, NULL);
}
