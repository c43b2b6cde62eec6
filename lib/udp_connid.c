/* Connection ids: issue time and a keyed MAC of (issue time, client address). See udp_connid.h. */
#include "lib/udp_connid.h"

#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

static void udp_connid_derive(uint8_t key[UDP_CONNID_KEY_LEN], const char *secret, size_t len)
{
    /* BLAKE2b of the operator's text: any length of secret becomes a uniform SipHash key. */
    crypto_generichash(key, UDP_CONNID_KEY_LEN, (const unsigned char *)secret, len, NULL, 0);
}

int udp_connid_init(struct udp_connid_keys *k, const char *secret, size_t secret_len, const char *prev,
                    size_t prev_len)
{
    _Static_assert(crypto_shorthash_KEYBYTES == UDP_CONNID_KEY_LEN, "SipHash key size");
    if (sodium_init() < 0)
        return -1;
    memset(k, 0, sizeof(*k));
    udp_connid_derive(k->cur, secret, secret_len);
    if (prev && prev_len) {
        udp_connid_derive(k->prev, prev, prev_len);
        k->has_prev = true;
    }
    return 0;
}

/* The MAC's 4 bytes: SipHash of time (4 bytes), family (1), address (4 or 16). */
static void udp_connid_mac(const uint8_t key[UDP_CONNID_KEY_LEN], uint32_t t, const struct peer_addr *client,
                           uint8_t mac[4])
{
    uint8_t msg[4 + 1 + 16], h[crypto_shorthash_BYTES];
    size_t alen = client->family == AF_INET6 ? 16 : 4;

    msg[0] = (uint8_t)(t >> 24);
    msg[1] = (uint8_t)(t >> 16);
    msg[2] = (uint8_t)(t >> 8);
    msg[3] = (uint8_t)t;
    msg[4] = client->family == AF_INET6 ? 6 : 4;
    memcpy(msg + 5, client->addr, alen);
    crypto_shorthash(h, msg, 5 + alen, key);
    memcpy(mac, h, 4);
}

uint64_t udp_connid_issue(const struct udp_connid_keys *k, const struct peer_addr *client, int64_t now_s)
{
    uint32_t t = (uint32_t)now_s;
    uint8_t mac[4];

    udp_connid_mac(k->cur, t, client, mac);
    return (uint64_t)t << 32 | (uint64_t)mac[0] << 24 | (uint64_t)mac[1] << 16 | (uint64_t)mac[2] << 8 | mac[3];
}

enum udp_connid_status udp_connid_check(const struct udp_connid_keys *k, uint64_t id,
                                        const struct peer_addr *client, int64_t now_s, unsigned ttl_s)
{
    uint32_t t = (uint32_t)(id >> 32);
    uint8_t got[4] = { (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id };
    uint8_t want[4];
    bool ok;

    udp_connid_mac(k->cur, t, client, want);
    ok = sodium_memcmp(got, want, 4) == 0;
    if (!ok && k->has_prev) {
        udp_connid_mac(k->prev, t, client, want);
        ok = sodium_memcmp(got, want, 4) == 0;
    }
    if (!ok)
        return UDP_CONNID_FORGED;
    if ((int64_t)t > now_s + UDP_CONNID_SKEW_S)
        return UDP_CONNID_FUTURE;
    if (now_s - (int64_t)t > (int64_t)ttl_s)
        return UDP_CONNID_EXPIRED;
    return UDP_CONNID_OK;
}
