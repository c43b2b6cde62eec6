/* peer_id -> client: one table of clients (code, display name), one of Azureus-style two-letter
 * ids with how each writes its version, one of Shadow-style letters, and the few odd forms
 * (Mainline "M7-2-0--", aria2 "A2-1-36-0-", BitComet "exbc"). The statistics count peers by
 * code, so a code is lowercase [a-z0-9], stable, and one of this file's table only. */
#include "lib/peer_client.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum pc_id {
    PC_OTHER, PC_ABC, PC_ARIA2, PC_BIGLYBT, PC_BITCOMET, PC_BITTORNADO, PC_BITTORRENT, PC_BTQUEUE,
    PC_DELUGE, PC_FDM, PC_FROSTWIRE, PC_HALITE, PC_KTORRENT, PC_LIBTORRENT, PC_MONOTORRENT,
    PC_OSPREY, PC_PICOTORRENT, PC_QBITTORRENT, PC_RTORRENT, PC_SHADOW, PC_TIXATI, PC_TRANSMISSION,
    PC_TRIBLER, PC_UTORRENT, PC_VUZE, PC_WEBTORRENT, PC_XUNLEI, PC_COUNT
};

static const struct {
    const char *code, *name;
} pc_clients[PC_COUNT] = {
    [PC_OTHER] = { "other", "Other" },
    [PC_ABC] = { "abc", "ABC" },
    [PC_ARIA2] = { "aria2", "aria2" },
    [PC_BIGLYBT] = { "biglybt", "BiglyBT" },
    [PC_BITCOMET] = { "bitcomet", "BitComet" },
    [PC_BITTORNADO] = { "bittornado", "BitTornado" },
    [PC_BITTORRENT] = { "bittorrent", "BitTorrent" },      /* Mainline and its -BT successor */
    [PC_BTQUEUE] = { "btqueue", "BTQueue" },
    [PC_DELUGE] = { "deluge", "Deluge" },
    [PC_FDM] = { "fdm", "Free Download Manager" },
    [PC_FROSTWIRE] = { "frostwire", "FrostWire" },
    [PC_HALITE] = { "halite", "Halite" },
    [PC_KTORRENT] = { "ktorrent", "KTorrent" },
    [PC_LIBTORRENT] = { "libtorrent", "libtorrent (Rasterbar)" },
    [PC_MONOTORRENT] = { "monotorrent", "MonoTorrent" },
    [PC_OSPREY] = { "osprey", "Osprey Permaseed" },
    [PC_PICOTORRENT] = { "picotorrent", "PicoTorrent" },
    [PC_QBITTORRENT] = { "qbittorrent", "qBittorrent" },
    [PC_RTORRENT] = { "rtorrent", "rTorrent (libTorrent)" },
    [PC_SHADOW] = { "shadow", "Shad0w's client" },
    [PC_TIXATI] = { "tixati", "Tixati" },
    [PC_TRANSMISSION] = { "transmission", "Transmission" },
    [PC_TRIBLER] = { "tribler", "Tribler" },
    [PC_UTORRENT] = { "utorrent", "\xc2\xb5Torrent" },     /* UTF-8 micro sign */
    [PC_VUZE] = { "vuze", "Vuze (Azureus)" },
    [PC_WEBTORRENT] = { "webtorrent", "WebTorrent" },
    [PC_XUNLEI] = { "xunlei", "Xunlei (Thunder)" },
};

/* How the four characters after "-XX" carry the version ("d" is a base-62 digit, 0-9 A-Z a-z). */
enum pc_style {
    PC_V_NONE,      /* scheme not known to us: no guess */
    PC_V_DDDD,      /* libtorrent's fingerprint (and Azureus): major.minor.tiny[.build], build if not 0 */
    PC_V_DDDX,      /* major.minor.tiny, the fourth a release letter we drop (uTorrent, BitTorrent) */
    PC_V_TR,        /* Transmission, below */
    PC_V_NNNN,      /* two decimal digits major, two minor: "0211" -> 2.11 (BitComet) */
    PC_V_WW,        /* WebTorrent: two decimal digits a component: "0105" -> 1.5 */
    PC_V_NNNX,      /* PicoTorrent: major, two-digit minor, patch: "0091" -> 0.9.1 */
};

static const struct {
    char id[3];
    enum pc_id client;
    enum pc_style style;
} pc_azureus[] = {
    { "AZ", PC_VUZE, PC_V_DDDD },        { "BC", PC_BITCOMET, PC_V_NNNN },
    { "BI", PC_BIGLYBT, PC_V_DDDD },     { "BT", PC_BITTORRENT, PC_V_DDDX },
    { "DE", PC_DELUGE, PC_V_DDDD },      { "FD", PC_FDM, PC_V_NONE },
    { "FW", PC_FROSTWIRE, PC_V_DDDD },   { "HL", PC_HALITE, PC_V_DDDD },
    { "KT", PC_KTORRENT, PC_V_DDDD },    { "LT", PC_LIBTORRENT, PC_V_DDDD },
    { "lt", PC_RTORRENT, PC_V_DDDD },    { "MO", PC_MONOTORRENT, PC_V_DDDD },
    { "PI", PC_PICOTORRENT, PC_V_NNNX }, { "qB", PC_QBITTORRENT, PC_V_DDDD },
    { "SD", PC_XUNLEI, PC_V_NONE },      { "TR", PC_TRANSMISSION, PC_V_TR },
    { "TX", PC_TIXATI, PC_V_NONE },      { "UM", PC_UTORRENT, PC_V_DDDX },  /* uTorrent for Mac */
    { "UT", PC_UTORRENT, PC_V_DDDX },    { "UW", PC_UTORRENT, PC_V_DDDX },  /* uTorrent Web */
    { "WW", PC_WEBTORRENT, PC_V_WW },    { "XL", PC_XUNLEI, PC_V_NONE },
};

/* Shadow style (BEP 20): one letter, up to five base-64 version digits padded with '-'. */
static const struct {
    char letter;
    enum pc_id client;
} pc_shadow[] = {
    { 'A', PC_ABC }, { 'O', PC_OSPREY }, { 'Q', PC_BTQUEUE }, { 'R', PC_TRIBLER },
    { 'S', PC_SHADOW }, { 'T', PC_BITTORNADO },
};

/* A base-62 digit as libtorrent and Transmission write them; '.' is Shadow's 62nd. PC_BAD if none. */
#define PC_BAD 0xff
static uint8_t pc_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0');
    if (c >= 'A' && c <= 'Z')
        return (uint8_t)(c - 'A' + 10);
    if (c >= 'a' && c <= 'z')
        return (uint8_t)(c - 'a' + 36);
    return c == '.' ? 62 : PC_BAD;
}

static bool pc_decimal(const uint8_t *p, size_t n, int *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        *v = *v * 10 + (p[i] - '0');
    }
    return true;
}

/* Writes the version of an Azureus-style id (v: its four version bytes); leaves "" when they do
 * not follow the client's scheme. */
static void pc_azureus_version(enum pc_style style, const uint8_t *v, char *out, size_t cap)
{
    uint8_t d[4];
    int a, b;

    for (int i = 0; i < 4; i++)
        d[i] = pc_digit(v[i]);
    switch (style) {
    case PC_V_NONE:
        break;
    case PC_V_DDDD:
        if (d[0] == PC_BAD || d[1] == PC_BAD || d[2] == PC_BAD || d[3] == PC_BAD)
            break;
        if (d[3])
            snprintf(out, cap, "%d.%d.%d.%d", d[0], d[1], d[2], d[3]);
        else
            snprintf(out, cap, "%d.%d.%d", d[0], d[1], d[2]);
        break;
    case PC_V_DDDX:
        if (d[0] != PC_BAD && d[1] != PC_BAD && d[2] != PC_BAD)
            snprintf(out, cap, "%d.%d.%d", d[0], d[1], d[2]);
        break;
    case PC_V_TR: {
        /* Up to 2.x: one digit major, two digits minor, then 'Z' or 'X' for a dev build
         * ("-TR294Z-" 2.94-dev). Since 3.00: major, minor, patch in base 62, then '0' release,
         * 'B' beta, 'Z' dev ("-TR400B-" 4.0.0-beta). */
        const char *sfx = v[3] == 'Z' || v[3] == 'X' ? "-dev" : v[3] == 'B' ? "-beta" : "";
        if (v[0] >= '0' && v[0] <= '2' && pc_decimal(v + 1, 2, &b))
            snprintf(out, cap, "%d.%02d%s", v[0] - '0', b, sfx);
        else if (d[0] != PC_BAD && d[1] != PC_BAD && d[2] != PC_BAD)
            snprintf(out, cap, "%d.%d.%d%s", d[0], d[1], d[2], sfx);
        break;
    }
    case PC_V_NNNN:
    case PC_V_WW:
        if (pc_decimal(v, 2, &a) && pc_decimal(v + 2, 2, &b))
            snprintf(out, cap, style == PC_V_WW ? "%d.%d" : "%d.%02d", a, b);
        break;
    case PC_V_NNNX:
        if (pc_decimal(v, 1, &a) && pc_decimal(v + 1, 2, &b) && d[3] <= 9)
            snprintf(out, cap, "%d.%d.%d", a, b, d[3]);
        break;
    }
}

/* "7-2-0-": three decimal groups of 1 to 3 digits, each closed by '-', within n bytes. Returns
 * the bytes used, or 0 when p does not start so; the version goes in out. */
static size_t pc_dashed(const uint8_t *p, size_t n, char *out, size_t cap)
{
    int part[3];
    size_t i = 0;

    for (int k = 0; k < 3; k++) {
        size_t start = i;
        while (i < n && i - start < 3 && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == start || i >= n || p[i] != '-' || !pc_decimal(p + start, i - start, &part[k]))
            return 0;
        i++;
    }
    snprintf(out, cap, "%d.%d.%d", part[0], part[1], part[2]);
    return i;
}

static bool pc_shadow_style(const uint8_t *id, char *out, size_t cap)
{
    uint8_t d[5];
    size_t n = 0, i;

    for (i = 1; i <= 5 && id[i] != '-'; i++) {
        if ((d[n++] = pc_digit(id[i])) == PC_BAD)
            return false;
    }
    for (; i <= 5; i++)
        if (id[i] != '-')
            return false;
    /* Then "---" for a single download, or a base-64 count for multi-torrent clients. */
    for (i = 6; i < 9; i++)
        if (id[i] != '-' && pc_digit(id[i]) == PC_BAD)
            return false;
    if (n == 0)
        return false;
    size_t len = 0;
    for (i = 0; i < n && len < cap; i++)   /* at most "62.62.62.62.62": never truncated */
        len += (size_t)snprintf(out + len, cap - len, i ? ".%d" : "%d", d[i]);
    return true;
}

static void pc_set(struct peer_client *out, enum pc_id c)
{
    out->code = pc_clients[c].code;
    out->name = pc_clients[c].name;
}

void peer_client_identify(const uint8_t peer_id[20], struct peer_client *out)
{
    char *ver = out->version;
    size_t cap = sizeof(out->version);

    pc_set(out, PC_OTHER);
    ver[0] = '\0';
    if (peer_id[0] == '-' && peer_id[7] == '-') {
        for (size_t i = 0; i < sizeof(pc_azureus) / sizeof(pc_azureus[0]); i++) {
            if (memcmp(peer_id + 1, pc_azureus[i].id, 2) == 0) {
                pc_set(out, pc_azureus[i].client);
                pc_azureus_version(pc_azureus[i].style, peer_id + 3, ver, cap);
                return;
            }
        }
        return;         /* an Azureus-style id we do not know: "other", no version */
    }
    if (memcmp(peer_id, "exbc", 4) == 0) {
        /* Old BitComet (and BitLord, built on it): the version as two raw bytes. */
        pc_set(out, PC_BITCOMET);
        snprintf(ver, cap, "%u.%02u", (unsigned)peer_id[4], (unsigned)peer_id[5]);
        return;
    }
    if (memcmp(peer_id, "A2-", 3) == 0 && pc_dashed(peer_id + 3, 17, ver, cap)) {
        pc_set(out, PC_ARIA2);
        return;
    }
    if (peer_id[0] == 'M') {
        /* "M4-20-8-", "M7-2-0--": the version, then '-' up to byte 8. */
        size_t n = pc_dashed(peer_id + 1, 7, ver, cap);
        bool padded = n > 0;
        for (size_t i = 1 + n; padded && i < 8; i++)
            padded = peer_id[i] == '-';
        if (padded) {
            pc_set(out, PC_BITTORRENT);
            return;
        }
        ver[0] = '\0';
    }
    for (size_t i = 0; i < sizeof(pc_shadow) / sizeof(pc_shadow[0]); i++) {
        if (peer_id[0] == pc_shadow[i].letter && pc_shadow_style(peer_id, ver, cap)) {
            pc_set(out, pc_shadow[i].client);
            return;
        }
    }
    ver[0] = '\0';
}

const char *peer_client_name(const char *code, size_t len)
{
    for (int i = 0; i < PC_COUNT; i++)
        if (strlen(pc_clients[i].code) == len && memcmp(pc_clients[i].code, code, len) == 0)
            return pc_clients[i].name;
    return NULL;
}
