/* Key names and peer members of the Redis schema, and their decoding into compact peers. Pure
 * string work: storage/redis.c builds every command's arguments with these, and decodes the
 * members ZRANDMEMBER returns; storage/memory.c shares the compact encoding. */
#include "storage/redis_keys.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char *const redis_keys_suffix[] = {
    [REDIS_KEYS_SEEDERS] = "seeders",
    [REDIS_KEYS_LEECHERS] = "leechers",
    [REDIS_KEYS_INFO] = "info",
    [REDIS_KEYS_STATS] = "stats",
    [REDIS_KEYS_UPLOADS] = "uploads",
};

int redis_keys_swarm(char *dst, size_t cap, const char *prefix,
                     const uint8_t info_hash[ANNOUNCE_HASH_LEN], enum redis_keys_kind kind)
{
    static const char hex[] = "0123456789abcdef";
    size_t plen = strlen(prefix);
    const char *suffix;
    size_t slen, len, i;
    char *p;

    if ((unsigned)kind > REDIS_KEYS_UPLOADS)
        return -1;
    suffix = redis_keys_suffix[kind];
    slen = strlen(suffix);
    /* prefix + "{" + 40 hex + "}:" + suffix + NUL */
    len = plen + 1 + 2 * ANNOUNCE_HASH_LEN + 2 + slen;
    if (len + 1 > cap)
        return -1;
    p = dst;
    memcpy(p, prefix, plen);
    p += plen;
    *p++ = '{';
    for (i = 0; i < ANNOUNCE_HASH_LEN; i++) {
        *p++ = hex[info_hash[i] >> 4];
        *p++ = hex[info_hash[i] & 0x0f];
    }
    *p++ = '}';
    *p++ = ':';
    memcpy(p, suffix, slen + 1);
    return (int)len;
}

int redis_keys_swarm3(char *seeders, char *leechers, char *info, size_t cap, const char *prefix,
                      const uint8_t info_hash[ANNOUNCE_HASH_LEN])
{
    int n = redis_keys_swarm(leechers, cap, prefix, info_hash, REDIS_KEYS_LEECHERS);
    size_t base;                           /* through "}:", shared by the three */

    if (n < 0)
        return -1;
    base = (size_t)n - strlen(redis_keys_suffix[REDIS_KEYS_LEECHERS]);
    /* "leechers" is the longest suffix: the other two fit where it did */
    memcpy(seeders, leechers, base);
    memcpy(seeders + base, redis_keys_suffix[REDIS_KEYS_SEEDERS], sizeof("seeders"));
    memcpy(info, leechers, base);
    memcpy(info + base, redis_keys_suffix[REDIS_KEYS_INFO], sizeof("info"));
    return 0;
}

/* True for ::ffff:a.b.c.d (RFC 4291 2.5.5.2). */
static int redis_keys_v4_mapped(const uint8_t addr[16])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    return memcmp(addr, mapped, sizeof(mapped)) == 0;
}

/* Writes the decimal digits of v (no sign) at dst, not terminated. Returns their count. */
static size_t redis_keys_digits(char *dst, uint64_t v)
{
    char rev[20];
    size_t d = 0, n = 0;

    do {
        rev[d++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (d > 0)
        dst[n++] = rev[--d];
    return n;
}

size_t redis_keys_i64(char *dst, int64_t v)
{
    size_t n = 0;

    if (v < 0)
        dst[n++] = '-';
    /* the magnitude as unsigned: -INT64_MIN does not fit an int64_t */
    n += redis_keys_digits(dst + n, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
    dst[n] = '\0';
    return n;
}

int redis_keys_member(char *dst, size_t cap, const struct peer_addr *peer)
{
    char text[INET6_ADDRSTRLEN];
    int n;

    if (peer->family == AF_INET || (peer->family == AF_INET6 && redis_keys_v4_mapped(peer->addr))) {
        const uint8_t *a = peer->family == AF_INET ? peer->addr : peer->addr + 12;
        char v4[sizeof("255.255.255.255:65535")];
        size_t len = 0;

        /* by hand: snprintf was 3 % of a worker's instructions, one member an announce */
        for (int i = 0; i < 4; i++) {
            len += redis_keys_digits(v4 + len, a[i]);
            v4[len++] = i < 3 ? '.' : ':';
        }
        len += redis_keys_digits(v4 + len, peer->port);
        if (len >= cap)
            return -1;
        memcpy(dst, v4, len);
        dst[len] = '\0';
        return (int)len;
    } else if (peer->family == AF_INET6) {
        if (!inet_ntop(AF_INET6, peer->addr, text, sizeof(text)))
            return -1;
        n = snprintf(dst, cap, "[%s]:%u", text, (unsigned)peer->port);
    } else {
        return -1;
    }
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

int redis_keys_peer_compact(const struct peer_addr *peer, uint8_t out[REDIS_KEYS_PEER_MAX])
{
    if (peer->family == AF_INET || (peer->family == AF_INET6 && redis_keys_v4_mapped(peer->addr))) {
        memcpy(out, peer->family == AF_INET ? peer->addr : peer->addr + 12, 4);
        out[4] = (uint8_t)(peer->port >> 8);
        out[5] = (uint8_t)(peer->port & 0xff);
        return PEER_COMPACT4_LEN;
    }
    if (peer->family == AF_INET6) {
        memcpy(out, peer->addr, 16);
        out[16] = (uint8_t)(peer->port >> 8);
        out[17] = (uint8_t)(peer->port & 0xff);
        return PEER_COMPACT6_LEN;
    }
    return -1;
}

/* Parses 1 to 5 decimal digits, at most 65535. Returns 0 or -1. */
static int redis_keys_port(const char *s, size_t len, uint16_t *port)
{
    unsigned v = 0;
    size_t i;

    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* "a.b.c.d:port" in one pass, with the rules inet_ntop's dotted quad and redis_keys_port follow (decimal,
 * no leading zeros, octets <= 255, port <= 65535): every sampled member goes through here, and
 * the separate memchr, octet and port passes were 11 % of a churn worker's instructions
 * (bench/callgrind.sh). Returns 6, or -1 if member is not that form. */
static int redis_keys_member_v4(const char *member, size_t len, uint8_t out[PEER_COMPACT4_LEN])
{
    const char *p = member, *end = member + len;
    unsigned field;

    for (field = 0; field < 5; field++) {
        const char *start = p;
        unsigned v = 0;

        unsigned c;

        /* A long run wraps v (unsigned: defined), and its length refuses it below. */
        while (p < end && (c = (unsigned)(unsigned char)*p - '0') < 10) {
            v = v * 10 + c;
            p++;
        }
        if (p == start || (p - start > 1 && *start == '0'))
            return -1;
        if (field == 4) {
            if (p - start > 5 || v > 65535 || p != end)
                return -1;
            out[4] = (uint8_t)(v >> 8);
            out[5] = (uint8_t)(v & 0xff);
            return PEER_COMPACT4_LEN;
        }
        if (p - start > 3 || v > 255 || p == end || *p != (field < 3 ? '.' : ':'))
            return -1;
        out[field] = (uint8_t)v;
        p++;
    }
    return -1;
}

int redis_keys_member_compact(const char *member, size_t len, uint8_t out[REDIS_KEYS_PEER_MAX])
{
    char text[INET6_ADDRSTRLEN];
    uint8_t addr[16];
    uint16_t port;
    size_t alen;

    if (len == 0)
        return -1;
    if (member[0] == '[') {
        const char *close = memchr(member, ']', len);

        if (!close || close + 1 >= member + len || close[1] != ':')
            return -1;
        alen = (size_t)(close - member - 1);
        if (alen == 0 || alen >= sizeof(text))
            return -1;
        memcpy(text, member + 1, alen);
        text[alen] = '\0';
        if (inet_pton(AF_INET6, text, addr) != 1)
            return -1;
        if (redis_keys_port(close + 2, len - (size_t)(close + 2 - member), &port) < 0)
            return -1;
        /* Only the text redis_keys_member writes: a mapped address is written as IPv4, and an
         * IPv6 address in inet_ntop's form (lower case, zeros compressed), so that one peer
         * can never be two members of a set (fuzz/README.md). */
        if (redis_keys_v4_mapped(addr))
            return -1;
        char canon[INET6_ADDRSTRLEN];
        if (!inet_ntop(AF_INET6, addr, canon, sizeof(canon)) || strlen(canon) != alen ||
            memcmp(canon, text, alen) != 0)
            return -1;
        memcpy(out, addr, 16);
        out[16] = (uint8_t)(port >> 8);
        out[17] = (uint8_t)(port & 0xff);
        return PEER_COMPACT6_LEN;
    }
    return redis_keys_member_v4(member, len, out);
}
