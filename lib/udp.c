/* BEP 15 datagrams and BEP 41 options: strict decoding into typed requests (every malformed case
 * has its enum udp_err), and reply encoding into a caller's buffer. Integers are big-endian. */
#include "lib/udp.h"

#include <string.h>
#include <sys/socket.h>

static const char *const udp_reasons[] = {
    [UDP_OK] = "ok",
    [UDP_ERR_SHORT] = "packet too short for its action",
    [UDP_ERR_ACTION] = "unknown action",
    [UDP_ERR_PROTOCOL_ID] = "connect without the BEP 15 protocol id",
    [UDP_ERR_EVENT] = "event must be 0 to 3",
    [UDP_ERR_OPTIONS] = "malformed BEP 41 option",
    [UDP_ERR_URL_DATA_LONG] = "BEP 41 URL data is too long",
    [UDP_ERR_SCRAPE_EMPTY] = "scrape without info_hash",
    [UDP_ERR_SCRAPE_TOO_MANY] = "too many info_hash values in one scrape (at most 74)",
    [UDP_ERR_SCRAPE_PARTIAL] = "scrape info_hash values must be 20 bytes each",
};
static const char *const udp_err_names[] = {
    [UDP_OK] = "ok",
    [UDP_ERR_SHORT] = "short",
    [UDP_ERR_ACTION] = "action",
    [UDP_ERR_PROTOCOL_ID] = "protocol_id",
    [UDP_ERR_EVENT] = "event",
    [UDP_ERR_OPTIONS] = "options",
    [UDP_ERR_URL_DATA_LONG] = "url_data_long",
    [UDP_ERR_SCRAPE_EMPTY] = "scrape_empty",
    [UDP_ERR_SCRAPE_TOO_MANY] = "scrape_too_many",
    [UDP_ERR_SCRAPE_PARTIAL] = "scrape_partial",
};
_Static_assert(sizeof(udp_reasons) / sizeof(udp_reasons[0]) == UDP_ERR_COUNT, "one reason per udp_err");
_Static_assert(sizeof(udp_err_names) / sizeof(udp_err_names[0]) == UDP_ERR_COUNT, "one name per udp_err");

const char *udp_reason(enum udp_err err)
{
    return (unsigned)err < UDP_ERR_COUNT ? udp_reasons[err] : "unknown error";
}

const char *udp_err_name(enum udp_err err)
{
    return (unsigned)err < UDP_ERR_COUNT ? udp_err_names[err] : "unknown";
}

static uint32_t udp_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t udp_get64(const uint8_t *p)
{
    return (uint64_t)udp_get32(p) << 32 | udp_get32(p + 4);
}

static uint8_t *udp_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *udp_put64(uint8_t *p, uint64_t v)
{
    return udp_put32(udp_put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

enum udp_err udp_decode_head(const uint8_t *buf, size_t len, struct udp_head *h)
{
    if (len < UDP_HEAD_LEN)
        return UDP_ERR_SHORT;
    h->connection_id = udp_get64(buf);
    h->action = udp_get32(buf + 8);
    h->transaction_id = udp_get32(buf + 12);
    return UDP_OK;
}

enum udp_err udp_decode_connect(const uint8_t *buf, size_t len)
{
    if (len < UDP_CONNECT_LEN)
        return UDP_ERR_SHORT;
    if (udp_get32(buf + 8) != UDP_ACTION_CONNECT)
        return UDP_ERR_ACTION;
    if (udp_get64(buf) != UDP_PROTOCOL_ID)
        return UDP_ERR_PROTOCOL_ID;
    return UDP_OK;
}

enum udp_err udp_decode_options(const uint8_t *opt, size_t len, struct udp_announce *a)
{
    size_t i = 0;

    while (i < len) {
        uint8_t type = opt[i++];
        size_t n;

        if (type == 0)           /* EndOfOptions: the rest is padding */
            break;
        if (type == 1)           /* NOP */
            continue;
        if (i >= len)
            return UDP_ERR_OPTIONS;
        n = opt[i++];
        if (n > len - i)
            return UDP_ERR_OPTIONS;
        if (type == 2) {         /* URLData: concatenated in order */
            if (n > sizeof(a->url) - a->url_len)
                return UDP_ERR_URL_DATA_LONG;
            memcpy(a->url + a->url_len, opt + i, n);
            a->url_len += n;
            a->has_url = true;
        }
        i += n;
    }
    return UDP_OK;
}

/* Offsets in an announce: connection id 0, action 8, transaction id 12, info_hash 16, peer_id 36,
 * downloaded 56, left 64, uploaded 72, event 80, IP 84, key 88, num_want 92, port 96. */
enum udp_err udp_decode_announce(const uint8_t *buf, size_t len, struct udp_announce *a)
{
    struct announce_fields *f = &a->fields;
    uint32_t event, ip;
    int32_t numwant;

    if (len < UDP_ANNOUNCE_LEN)
        return UDP_ERR_SHORT;
    if (udp_get32(buf + 8) != UDP_ACTION_ANNOUNCE)
        return UDP_ERR_ACTION;
    memset(a, 0, sizeof(*a));
    memcpy(f->info_hash, buf + 16, ANNOUNCE_HASH_LEN);
    memcpy(f->peer_id, buf + 36, ANNOUNCE_HASH_LEN);
    f->has_info_hash = f->has_peer_id = f->has_port = true;
    f->downloaded = udp_get64(buf + 56);
    f->left = udp_get64(buf + 64);
    f->uploaded = udp_get64(buf + 72);
    event = udp_get32(buf + 80);
    switch (event) {
    case 0: f->event = ANNOUNCE_EVENT_NONE; break;
    case 1: f->event = ANNOUNCE_EVENT_COMPLETED; break;
    case 2: f->event = ANNOUNCE_EVENT_STARTED; break;
    case 3: f->event = ANNOUNCE_EVENT_STOPPED; break;
    default: return UDP_ERR_EVENT;
    }
    ip = udp_get32(buf + 84);
    if (ip != 0) {
        f->has_ip = true;
        f->ip.family = AF_INET;
        memcpy(f->ip.addr, buf + 84, 4);
    }
    a->key = udp_get32(buf + 88);
    numwant = (int32_t)udp_get32(buf + 92);
    f->numwant_default = numwant < 0;    /* -1, as BEP 15 says; any negative the same */
    f->numwant = numwant < 0 ? 0 : (uint64_t)numwant;
    f->port = (uint16_t)(buf[96] << 8 | buf[97]);
    f->compact = true;
    return udp_decode_options(buf + UDP_ANNOUNCE_LEN, len - UDP_ANNOUNCE_LEN, a);
}

enum udp_err udp_decode_scrape(const uint8_t *buf, size_t len, struct udp_scrape *s)
{
    size_t n;

    if (len < UDP_SCRAPE_HEAD_LEN)
        return UDP_ERR_SHORT;
    if (udp_get32(buf + 8) != UDP_ACTION_SCRAPE)
        return UDP_ERR_ACTION;
    n = len - UDP_SCRAPE_HEAD_LEN;
    if (n == 0)
        return UDP_ERR_SCRAPE_EMPTY;
    if (n % ANNOUNCE_HASH_LEN)
        return UDP_ERR_SCRAPE_PARTIAL;
    if (n / ANNOUNCE_HASH_LEN > UDP_SCRAPE_MAX_HASHES)
        return UDP_ERR_SCRAPE_TOO_MANY;
    s->count = (unsigned)(n / ANNOUNCE_HASH_LEN);
    memcpy(s->info_hash, buf + UDP_SCRAPE_HEAD_LEN, n);
    return UDP_OK;
}

bool udp_url_is_announce(const struct udp_announce *a)
{
    size_t path_len = a->url_len;
    const char *q = memchr(a->url, '?', a->url_len);

    if (!a->has_url)
        return true;
    if (q)
        path_len = (size_t)(q - a->url);
    return path_len == 0 || (path_len == 9 && memcmp(a->url, "/announce", 9) == 0);
}

size_t udp_write_connect(uint8_t *out, size_t cap, uint32_t transaction_id, uint64_t connection_id)
{
    if (cap < 16)
        return 0;
    udp_put64(udp_put32(udp_put32(out, UDP_ACTION_CONNECT), transaction_id), connection_id);
    return 16;
}

size_t udp_write_announce(uint8_t *out, size_t cap, uint32_t transaction_id, uint32_t interval_s,
                          const struct swarm_stats *st, const uint8_t *peers, size_t count, size_t peer_len)
{
    uint8_t *p = out;

    if (cap < 20)
        return 0;
    if (count > (cap - 20) / peer_len)
        count = (cap - 20) / peer_len;
    p = udp_put32(p, UDP_ACTION_ANNOUNCE);
    p = udp_put32(p, transaction_id);
    p = udp_put32(p, interval_s);
    p = udp_put32(p, st->incomplete);   /* leechers */
    p = udp_put32(p, st->complete);     /* seeders */
    if (count)
        memcpy(p, peers, count * peer_len);
    return 20 + count * peer_len;
}

size_t udp_write_scrape(uint8_t *out, size_t cap, uint32_t transaction_id, const struct swarm_stats *stats,
                        unsigned count)
{
    uint8_t *p = out;

    if (cap < 8 + (size_t)count * 12)
        return 0;
    p = udp_put32(p, UDP_ACTION_SCRAPE);
    p = udp_put32(p, transaction_id);
    for (unsigned i = 0; i < count; i++) {
        p = udp_put32(p, stats[i].complete);
        p = udp_put32(p, stats[i].downloaded);
        p = udp_put32(p, stats[i].incomplete);
    }
    return (size_t)(p - out);
}

size_t udp_write_error(uint8_t *out, size_t cap, uint32_t transaction_id, const char *msg)
{
    size_t n = strlen(msg);

    if (cap < UDP_ERROR_HEAD_LEN)
        return 0;
    if (n > cap - UDP_ERROR_HEAD_LEN)
        n = cap - UDP_ERROR_HEAD_LEN;
    udp_put32(udp_put32(out, UDP_ACTION_ERROR), transaction_id);
    memcpy(out + UDP_ERROR_HEAD_LEN, msg, n);
    return UDP_ERROR_HEAD_LEN + n;
}
