/* libFuzzer target for storage/redis_keys.c. The input is tried as a member text, as the Redis
 * backend reads it back from ZRANDMEMBER: redis_keys_member_compact() must give 6 or 18 bytes or
 * refuse, and an accepted member, re-written with redis_keys_member() from those bytes, must
 * parse again to the same bytes. The other way round, a peer_addr made from the input bytes goes
 * member -> compact and must agree with redis_keys_peer_compact(); the input also serves as the
 * key prefix of redis_keys_swarm(). */
#include "fuzz/fuzz.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include "storage/redis_keys.h"

/* The peer_addr a compact entry (6 or 18 bytes) stands for. */
static void fuzz_peer_of(const uint8_t *c, int n, struct peer_addr *p)
{
    size_t alen = n == PEER_COMPACT4_LEN ? 4 : 16;

    memset(p, 0, sizeof(*p));
    p->family = n == PEER_COMPACT4_LEN ? AF_INET : AF_INET6;
    memcpy(p->addr, c, alen);
    p->port = (uint16_t)(c[alen] << 8 | c[alen + 1]);
}

static void fuzz_member_text(const char *s, size_t len)
{
    uint8_t out[REDIS_KEYS_PEER_MAX], again[REDIS_KEYS_PEER_MAX], direct[REDIS_KEYS_PEER_MAX];
    char text[REDIS_KEYS_MEMBER_MAX];
    struct peer_addr p;
    int n, m, tl;

    n = redis_keys_member_compact(s, len, out);
    FUZZ_CHECK(n == -1 || n == PEER_COMPACT4_LEN || n == PEER_COMPACT6_LEN);
    if (n < 0)
        return;
    fuzz_peer_of(out, n, &p);
    tl = redis_keys_member(text, sizeof(text), &p);
    FUZZ_CHECK(tl > 0 && (size_t)tl < sizeof(text) && text[tl] == '\0');
    FUZZ_CHECK(redis_keys_peer_compact(&p, direct) == n && memcmp(direct, out, (size_t)n) == 0);
    m = redis_keys_member_compact(text, (size_t)tl, again);
    FUZZ_CHECK(m == n && memcmp(again, out, (size_t)n) == 0);
    /* The header's "exactly the forms redis_keys_member writes": the text must be canonical. */
    FUZZ_CHECK((size_t)tl == len && memcmp(text, s, len) == 0);
    /* IPv4-mapped IPv6 addresses never come back as 18 bytes. */
    if (n == PEER_COMPACT6_LEN) {
        static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        FUZZ_CHECK(memcmp(out, mapped, sizeof(mapped)) != 0);
    }
}

/* A peer from the first 19 input bytes: family, address, port. */
static void fuzz_member_peer(const uint8_t *d, size_t size)
{
    uint8_t raw[19] = { 0 }, viatext[REDIS_KEYS_PEER_MAX], direct[REDIS_KEYS_PEER_MAX];
    char text[REDIS_KEYS_MEMBER_MAX], small[12];
    struct peer_addr p;
    int tl, n, c;

    memcpy(raw, d, size < sizeof(raw) ? size : sizeof(raw));
    memset(&p, 0, sizeof(p));
    p.family = raw[0] & 1 ? AF_INET6 : AF_INET;
    if (raw[0] & 2) {
        /* ::ffff:a.b.c.d, written and compacted as IPv4. */
        p.family = AF_INET6;
        memset(p.addr + 10, 0xff, 2);
        memcpy(p.addr + 12, raw + 1, 4);
    } else {
        memcpy(p.addr, raw + 1, p.family == AF_INET ? 4 : 16);
    }
    if (raw[0] & 4)
        p.family = raw[0] >> 3;                      /* an unknown family is refused */
    p.port = (uint16_t)(raw[17] << 8 | raw[18]);

    tl = redis_keys_member(text, sizeof(text), &p);
    c = redis_keys_peer_compact(&p, direct);
    if (p.family != AF_INET && p.family != AF_INET6) {
        FUZZ_CHECK(tl == -1 && c == -1);
        return;
    }
    FUZZ_CHECK(tl > 0 && (size_t)tl < sizeof(text));
    FUZZ_CHECK(c == PEER_COMPACT4_LEN || c == PEER_COMPACT6_LEN);
    n = redis_keys_member_compact(text, (size_t)tl, viatext);
    FUZZ_CHECK(n == c && memcmp(viatext, direct, (size_t)c) == 0);
    /* Too small a buffer is refused, never overrun. */
    n = redis_keys_member(small, sizeof(small), &p);
    FUZZ_CHECK(tl < (int)sizeof(small) ? n == tl : n == -1);
}

static void fuzz_swarm(const char *s, size_t len)
{
    static const uint8_t hash[ANNOUNCE_HASH_LEN] = { 0x00, 0x01, 0x7f, 0x80, 0xff, 0xab };
    char prefix[40], key[128];
    size_t plen = len < sizeof(prefix) - 1 ? len : sizeof(prefix) - 1;
    const char *tail;

    memcpy(prefix, s, plen);
    prefix[plen] = '\0';
    plen = strlen(prefix);
    static const char *const tails[] = { [REDIS_KEYS_SEEDERS] = ":seeders", [REDIS_KEYS_LEECHERS] = ":leechers",
                                         [REDIS_KEYS_INFO] = ":info", [REDIS_KEYS_STATS] = ":stats",
                                         [REDIS_KEYS_UPLOADS] = ":uploads" };

    for (int kind = REDIS_KEYS_SEEDERS; kind <= REDIS_KEYS_UPLOADS + 1; kind++) {
        int n = redis_keys_swarm(key, sizeof(key), prefix, hash, (enum redis_keys_kind)kind);

        if (kind > REDIS_KEYS_UPLOADS) {
            FUZZ_CHECK(n == -1);
            continue;
        }
        tail = tails[kind];
        FUZZ_CHECK(n == (int)(plen + 42 + strlen(tail)) && key[n] == '\0');
        FUZZ_CHECK(memcmp(key, prefix, plen) == 0 && key[plen] == '{' && key[plen + 41] == '}');
        FUZZ_CHECK(memcmp(key + plen + 1, "00017f80ffab", 12) == 0);
        FUZZ_CHECK(strcmp(key + plen + 42, tail) == 0);
        /* One byte short of room is refused. */
        FUZZ_CHECK(redis_keys_swarm(key, (size_t)n, prefix, hash, (enum redis_keys_kind)kind) == -1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_dup(data, size);

    fuzz_member_text(s, size);
    fuzz_member_peer(data, size);
    fuzz_swarm(s, size);
    free(s);
    return 0;
}
