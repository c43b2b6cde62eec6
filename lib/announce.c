/* Announce and scrape: the query string of a request becomes a typed struct announce_req or
 * struct scrape_req (or the one enum announce_err that names what is wrong), and storage's answer
 * becomes a bencoded reply. Pure: no I/O, no clock, no allocation. The reasons table below is the
 * only home of the "failure reason" strings clients see. */
#include "lib/announce.h"

#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "lib/bencode.h"
#include "lib/query.h"

static const char *const announce_reasons[] = {
    [ANNOUNCE_OK] = "ok",
    [ANNOUNCE_ERR_INFO_HASH_MISSING] = "info_hash is missing",
    [ANNOUNCE_ERR_INFO_HASH_LENGTH] = "info_hash must be 20 bytes (percent-encoded)",
    [ANNOUNCE_ERR_INFO_HASH_REPEATED] = "info_hash is given more than once",
    [ANNOUNCE_ERR_PEER_ID_MISSING] = "peer_id is missing",
    [ANNOUNCE_ERR_PEER_ID_LENGTH] = "peer_id must be 20 bytes (percent-encoded)",
    [ANNOUNCE_ERR_PORT_MISSING] = "port is missing",
    [ANNOUNCE_ERR_PORT_INVALID] = "port must be a number from 1 to 65535",
    [ANNOUNCE_ERR_UPLOADED_INVALID] = "uploaded must be a non-negative decimal number",
    [ANNOUNCE_ERR_DOWNLOADED_INVALID] = "downloaded must be a non-negative decimal number",
    [ANNOUNCE_ERR_LEFT_INVALID] = "left must be a non-negative decimal number",
    [ANNOUNCE_ERR_NUMWANT_INVALID] = "numwant must be a decimal number (negative or empty: the default)",
    [ANNOUNCE_ERR_COMPACT_INVALID] = "compact must be 0 or 1",
    [ANNOUNCE_ERR_EVENT_INVALID] = "event must be started, completed, stopped or empty",
    [ANNOUNCE_ERR_IP_INVALID] = "ip must be a literal IPv4 or IPv6 address",
    [ANNOUNCE_ERR_ENCODING] = "bad percent-encoding: '%' must be followed by two hex digits",
    [ANNOUNCE_ERR_PARAM_REPEATED] = "a parameter is given more than once",
    [ANNOUNCE_ERR_TOO_LONG] = "query string is too long (at most 8192 bytes)",
    [ANNOUNCE_ERR_SCRAPE_TOO_MANY] = "too many info_hash values in one scrape; split the request",
    [ANNOUNCE_ERR_FULL_SCRAPE_DISABLED] = "full scrape is not allowed; give info_hash",
    [ANNOUNCE_ERR_STORAGE_UNAVAILABLE] = "tracker storage is unavailable, retry later",
    [ANNOUNCE_ERR_STORAGE_TIMEOUT] = "tracker storage timed out, retry later",
    [ANNOUNCE_ERR_STORAGE_FULL] = "tracker storage is full",
    [ANNOUNCE_ERR_STORAGE_INTERNAL] = "tracker storage failed, retry later",
    [ANNOUNCE_ERR_OVERLOADED] = "tracker is overloaded, retry later",
    [ANNOUNCE_ERR_SHUTTING_DOWN] = "tracker is shutting down, retry later",
    [ANNOUNCE_ERR_RATE_LIMITED] = "too many requests from this address, retry later",
    [ANNOUNCE_ERR_FORWARDED_INVALID] = "the proxy's X-Forwarded-For or X-Real-IP header is malformed",
    [ANNOUNCE_ERR_CLIENT_ADDRESS] = "the client's address is not IPv4 or IPv6",
    [ANNOUNCE_ERR_PEER_CAP] = "too many ports from this address in this swarm",
    [ANNOUNCE_ERR_PRIVATE_PUBLIC_URL] = "this tracker is private: use your personal announce URL with its passkey",
    [ANNOUNCE_ERR_PASSKEY_UNKNOWN] = "unknown passkey",
    [ANNOUNCE_ERR_PASSKEY_EXPIRED] = "passkey expired",
    [ANNOUNCE_ERR_ACCOUNT_DISABLED] = "account disabled",
    [ANNOUNCE_ERR_TORRENT_UNREGISTERED] = "torrent not registered with this tracker",
    [ANNOUNCE_ERR_SEED_ONLY] = "your account may only seed (left must be 0)",
    [ANNOUNCE_ERR_CLIENT_NOT_ALLOWED] = "client not allowed",
    [ANNOUNCE_ERR_PASSKEY_RATE_LIMITED] = "too many unknown passkeys from this address, retry later",
    [ANNOUNCE_ERR_PRIVATE_UDP_SCRAPE] = "this tracker is private: scrape over HTTP with your personal scrape URL",
};

_Static_assert(sizeof(announce_reasons) / sizeof(announce_reasons[0]) == ANNOUNCE_ERR_COUNT,
               "announce_reasons[] needs one entry per enum announce_err");
_Static_assert(QUERY_MAX_LEN == 8192, "update ANNOUNCE_ERR_TOO_LONG's reason");

const char *announce_reason(enum announce_err err)
{
    if ((unsigned)err >= ANNOUNCE_ERR_COUNT || !announce_reasons[err])
        return "unknown error";
    return announce_reasons[err];
}

/* ---- parsing ---- */

/* The parameters announce_parse() reads; each is single-valued. */
enum announce_param {
    ANNOUNCE_P_INFO_HASH,
    ANNOUNCE_P_PEER_ID,
    ANNOUNCE_P_PORT,
    ANNOUNCE_P_UPLOADED,
    ANNOUNCE_P_DOWNLOADED,
    ANNOUNCE_P_LEFT,
    ANNOUNCE_P_NUMWANT,
    ANNOUNCE_P_COMPACT,
    ANNOUNCE_P_NO_PEER_ID,
    ANNOUNCE_P_EVENT,
    ANNOUNCE_P_IP,
};

#define ANNOUNCE_KEY(p, s) ((p)->key_len == sizeof(s) - 1 && memcmp((p)->key, s, sizeof(s) - 1) == 0)

/* Which parameter p is, or -1 for one we ignore (key, trackerid, supportcrypto, ...). */
static int announce_param_id(const struct query_param *p)
{
    switch (p->key_len) {
    case 2:
        return ANNOUNCE_KEY(p, "ip") ? ANNOUNCE_P_IP : -1;
    case 4:
        if (ANNOUNCE_KEY(p, "port"))
            return ANNOUNCE_P_PORT;
        return ANNOUNCE_KEY(p, "left") ? ANNOUNCE_P_LEFT : -1;
    case 5:
        return ANNOUNCE_KEY(p, "event") ? ANNOUNCE_P_EVENT : -1;
    case 7:
        if (ANNOUNCE_KEY(p, "peer_id"))
            return ANNOUNCE_P_PEER_ID;
        if (ANNOUNCE_KEY(p, "numwant"))
            return ANNOUNCE_P_NUMWANT;
        return ANNOUNCE_KEY(p, "compact") ? ANNOUNCE_P_COMPACT : -1;
    case 8:
        return ANNOUNCE_KEY(p, "uploaded") ? ANNOUNCE_P_UPLOADED : -1;
    case 9:
        return ANNOUNCE_KEY(p, "info_hash") ? ANNOUNCE_P_INFO_HASH : -1;
    case 10:
        if (ANNOUNCE_KEY(p, "downloaded"))
            return ANNOUNCE_P_DOWNLOADED;
        return ANNOUNCE_KEY(p, "no_peer_id") ? ANNOUNCE_P_NO_PEER_ID : -1;
    default:
        return -1;
    }
}

#define ANNOUNCE_BAD_ESCAPE (-1)
#define ANNOUNCE_TOO_LONG (-2)

/* Decodes p's value into buf (cap bytes). Returns its length, ANNOUNCE_BAD_ESCAPE, or
 * ANNOUNCE_TOO_LONG when the escapes are valid but the value does not fit. */
static int announce_decode(const struct query_param *p, uint8_t *buf, size_t cap)
{
    int n = query_decode(p->val, p->val_len, buf, cap);

    if (n >= 0)
        return n;
    return query_decoded_len(p->val, p->val_len) < 0 ? ANNOUNCE_BAD_ESCAPE : ANNOUNCE_TOO_LONG;
}

/* A 20-byte binary value (info_hash, peer_id) into out. */
static enum announce_err announce_hash(const struct query_param *p, uint8_t *out,
                                       enum announce_err bad_length)
{
    int n = announce_decode(p, out, ANNOUNCE_HASH_LEN);

    if (n == ANNOUNCE_BAD_ESCAPE)
        return ANNOUNCE_ERR_ENCODING;
    return n == ANNOUNCE_HASH_LEN ? ANNOUNCE_OK : bad_length;
}

/* A decimal value from 0 to max into *out. */
static enum announce_err announce_number(const struct query_param *p, uint64_t max, uint64_t *out,
                                         enum announce_err bad)
{
    uint8_t buf[20];             /* UINT64_MAX has 20 digits; longer is refused anyway */
    int n = announce_decode(p, buf, sizeof(buf));

    if (n == ANNOUNCE_BAD_ESCAPE)
        return ANNOUNCE_ERR_ENCODING;
    if (n < 0 || query_parse_u64((const char *)buf, (size_t)n, max, out) < 0)
        return bad;
    return ANNOUNCE_OK;
}

/* numwant: a 1..20-digit number up to UINT64_MAX (capped later). Empty, or '-' and 1..20 digits,
 * means the default (*dflt set): BEP 15 sends -1 for "default" and clients carry that over to
 * HTTP, and some send "numwant=" with nothing. Anything else (letters, "-", "+5") is refused. */
static enum announce_err announce_numwant(const struct query_param *p, bool *dflt, uint64_t *out)
{
    uint8_t buf[21];             /* '-' and 20 digits */
    uint64_t ignored;
    int n = announce_decode(p, buf, sizeof(buf));

    if (n == ANNOUNCE_BAD_ESCAPE)
        return ANNOUNCE_ERR_ENCODING;
    if (n == 0 || (n > 1 && buf[0] == '-' &&
                   query_parse_u64((const char *)buf + 1, (size_t)n - 1, UINT64_MAX, &ignored) == 0)) {
        *dflt = true;
        return ANNOUNCE_OK;
    }
    if (n < 0 || query_parse_u64((const char *)buf, (size_t)n, UINT64_MAX, out) < 0)
        return ANNOUNCE_ERR_NUMWANT_INVALID;
    *dflt = false;
    return ANNOUNCE_OK;
}

static enum announce_err announce_parse_event(const struct query_param *p, enum announce_event *ev)
{
    uint8_t buf[16];
    int n = announce_decode(p, buf, sizeof(buf));

#define ANNOUNCE_IS(s) ((size_t)n == sizeof(s) - 1 && memcmp(buf, s, sizeof(s) - 1) == 0)
    if (n == ANNOUNCE_BAD_ESCAPE)
        return ANNOUNCE_ERR_ENCODING;
    if (n == 0 || ANNOUNCE_IS("paused"))        /* BEP 21 "paused": an ordinary re-announce */
        *ev = ANNOUNCE_EVENT_NONE;
    else if (ANNOUNCE_IS("started"))
        *ev = ANNOUNCE_EVENT_STARTED;
    else if (ANNOUNCE_IS("completed"))
        *ev = ANNOUNCE_EVENT_COMPLETED;
    else if (ANNOUNCE_IS("stopped"))
        *ev = ANNOUNCE_EVENT_STOPPED;
    else
        return ANNOUNCE_ERR_EVENT_INVALID;
#undef ANNOUNCE_IS
    return ANNOUNCE_OK;
}

/* A one-byte flag: "0" or "1" into *flag, else bad. */
static enum announce_err announce_flag(const struct query_param *p, bool *flag,
                                       enum announce_err bad)
{
    uint8_t buf[1];
    int n = announce_decode(p, buf, sizeof(buf));

    if (n == ANNOUNCE_BAD_ESCAPE)
        return ANNOUNCE_ERR_ENCODING;
    if (n != 1 || (buf[0] != '0' && buf[0] != '1'))
        return bad;
    *flag = buf[0] == '1';
    return ANNOUNCE_OK;
}

/* ip=: a literal address only (inet_pton, never DNS). An IPv4-mapped IPv6 address is stored as
 * IPv4, so the peer is handed to IPv4 clients in "peers" where it is reachable. */
static enum announce_err announce_ip(const struct query_param *p, struct peer_addr *peer)
{
    char buf[INET6_ADDRSTRLEN + 1];
    uint8_t a[16];
    int n = announce_decode(p, (uint8_t *)buf, sizeof(buf) - 1);

    if (n == ANNOUNCE_BAD_ESCAPE)
        return ANNOUNCE_ERR_ENCODING;
    if (n <= 0 || memchr(buf, '\0', (size_t)n))
        return ANNOUNCE_ERR_IP_INVALID;
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1) {
        peer->family = AF_INET;
        memset(peer->addr, 0, sizeof(peer->addr));
        memcpy(peer->addr, a, 4);
    } else if (inet_pton(AF_INET6, buf, a) == 1) {
        static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        memset(peer->addr, 0, sizeof(peer->addr));
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            peer->family = AF_INET;
            memcpy(peer->addr, a + 12, 4);
        } else {
            peer->family = AF_INET6;
            memcpy(peer->addr, a, 16);
        }
    } else {
        return ANNOUNCE_ERR_IP_INVALID;
    }
    return ANNOUNCE_OK;
}

/* Order of checks, so that a request with several problems always gets the same answer:
 *   1. a query longer than QUERY_MAX_LEN: ANNOUNCE_ERR_TOO_LONG;
 *   2. the parameters in query order; the first that is repeated (INFO_HASH_REPEATED for
 *      info_hash, else PARAM_REPEATED), badly escaped (ENCODING) or invalid stops the decode
 *      (port=0 is refused here, in query order, as well as by announce_validate());
 *   3. then, in announce_validate(), missing ones: info_hash, peer_id, port, in that order.
 * Parameters we do not read (and ip= unless allow_ip) are skipped whatever they hold, even
 * broken escapes. *f is written only on success. */
enum announce_err announce_decode_query(const char *query, size_t len, bool allow_ip,
                                        struct announce_fields *f)
{
    struct announce_fields r;
    struct query_param p;
    size_t pos = 0;
    unsigned seen = 0;
    uint64_t v = 0;

    if (len > QUERY_MAX_LEN)
        return ANNOUNCE_ERR_TOO_LONG;

    memset(&r, 0, sizeof(r));
    r.left = UINT64_MAX;         /* unknown: not a seeder */
    r.event = ANNOUNCE_EVENT_NONE;
    r.numwant_default = true;
    r.compact = true;

    while (query_next(query, len, &pos, &p)) {
        enum announce_err err = ANNOUNCE_OK;
        int id = announce_param_id(&p);

        if (id < 0 || (id == ANNOUNCE_P_IP && !allow_ip))
            continue;
        if (seen & (1u << id))
            return id == ANNOUNCE_P_INFO_HASH ? ANNOUNCE_ERR_INFO_HASH_REPEATED
                                              : ANNOUNCE_ERR_PARAM_REPEATED;
        seen |= 1u << id;

        switch ((enum announce_param)id) {
        case ANNOUNCE_P_INFO_HASH:
            err = announce_hash(&p, r.info_hash, ANNOUNCE_ERR_INFO_HASH_LENGTH);
            r.has_info_hash = true;
            break;
        case ANNOUNCE_P_PEER_ID:
            err = announce_hash(&p, r.peer_id, ANNOUNCE_ERR_PEER_ID_LENGTH);
            r.has_peer_id = true;
            break;
        case ANNOUNCE_P_PORT:
            err = announce_number(&p, 65535, &v, ANNOUNCE_ERR_PORT_INVALID);
            if (!err && v == 0)
                err = ANNOUNCE_ERR_PORT_INVALID;
            r.port = (uint16_t)v;
            r.has_port = true;
            break;
        case ANNOUNCE_P_UPLOADED:
            err = announce_number(&p, UINT64_MAX, &r.uploaded, ANNOUNCE_ERR_UPLOADED_INVALID);
            break;
        case ANNOUNCE_P_DOWNLOADED:
            err = announce_number(&p, UINT64_MAX, &r.downloaded, ANNOUNCE_ERR_DOWNLOADED_INVALID);
            break;
        case ANNOUNCE_P_LEFT:
            err = announce_number(&p, UINT64_MAX, &r.left, ANNOUNCE_ERR_LEFT_INVALID);
            break;
        case ANNOUNCE_P_NUMWANT:
            err = announce_numwant(&p, &r.numwant_default, &r.numwant);
            break;
        case ANNOUNCE_P_COMPACT:
            err = announce_flag(&p, &r.compact, ANNOUNCE_ERR_COMPACT_INVALID);
            break;
        case ANNOUNCE_P_NO_PEER_ID: {
            /* Replies never carry peer ids, so any value is harmless; only "1" sets the flag. */
            uint8_t buf[1];
            int n = announce_decode(&p, buf, sizeof(buf));

            if (n == ANNOUNCE_BAD_ESCAPE)
                err = ANNOUNCE_ERR_ENCODING;
            r.no_peer_id = n == 1 && buf[0] == '1';
            break;
        }
        case ANNOUNCE_P_EVENT:
            err = announce_parse_event(&p, &r.event);
            break;
        case ANNOUNCE_P_IP:
            err = announce_ip(&p, &r.ip);
            r.has_ip = true;
            break;
        }
        if (err != ANNOUNCE_OK)
            return err;
    }
    *f = r;
    return ANNOUNCE_OK;
}

/* The tracker's rules, the same for every front: required fields (info_hash, peer_id, port, in
 * that order), port 1..65535, numwant defaulted and capped, a client-given address only when
 * allowed. */
enum announce_err announce_validate(const struct announce_fields *f, const struct announce_limits *lim,
                                    struct announce_req *req)
{
    struct announce_req r;
    uint64_t numwant = f->numwant_default ? lim->numwant_default : f->numwant;

    if (!f->has_info_hash)
        return ANNOUNCE_ERR_INFO_HASH_MISSING;
    if (!f->has_peer_id)
        return ANNOUNCE_ERR_PEER_ID_MISSING;
    if (!f->has_port)
        return ANNOUNCE_ERR_PORT_MISSING;
    if (f->port == 0)
        return ANNOUNCE_ERR_PORT_INVALID;

    memset(&r, 0, sizeof(r));
    memcpy(r.info_hash, f->info_hash, ANNOUNCE_HASH_LEN);
    memcpy(r.peer_id, f->peer_id, ANNOUNCE_HASH_LEN);
    r.peer = req->peer;
    if (f->has_ip && lim->allow_ip_param)
        r.peer = f->ip;
    r.peer.port = f->port;
    r.now_s = req->now_s;
    r.uploaded = f->uploaded;
    r.downloaded = f->downloaded;
    r.left = f->left;
    r.event = f->event;
    r.compact = f->compact;
    r.no_peer_id = f->no_peer_id;
    if (numwant > lim->numwant_max)
        numwant = lim->numwant_max;
    r.numwant = (unsigned)numwant;
    *req = r;
    return ANNOUNCE_OK;
}

enum announce_err announce_parse(const char *query, size_t len, const struct announce_limits *lim,
                                 struct announce_req *req)
{
    struct announce_fields f;
    enum announce_err err = announce_decode_query(query, len, lim->allow_ip_param, &f);

    return err != ANNOUNCE_OK ? err : announce_validate(&f, lim, req);
}

enum announce_err scrape_add(struct scrape_req *req, const struct announce_limits *lim, const uint8_t *hash,
                             unsigned *index)
{
    unsigned max = lim->scrape_max_hashes < SCRAPE_MAX_HASHES ? lim->scrape_max_hashes : SCRAPE_MAX_HASHES;
    unsigned i;

    /* Linear search: at most SCRAPE_MAX_HASHES hashes, and QUERY_MAX_LEN caps them lower. */
    for (i = 0; i < req->count; i++)
        if (memcmp(req->info_hash[i], hash, ANNOUNCE_HASH_LEN) == 0)
            break;
    if (i == req->count) {
        if (req->count >= max)
            return ANNOUNCE_ERR_SCRAPE_TOO_MANY;
        memcpy(req->info_hash[req->count++], hash, ANNOUNCE_HASH_LEN);
    }
    if (index)
        *index = i;
    return ANNOUNCE_OK;
}

/* Same order rule as announce_parse(): TOO_LONG first, then the info_hash values in query order
 * (ENCODING, INFO_HASH_LENGTH, SCRAPE_TOO_MANY when a new distinct hash would pass the limit),
 * then FULL_SCRAPE_DISABLED if there was none. Other parameters are ignored. req->now_s is kept;
 * on error req->count and req->info_hash are unspecified. */
enum announce_err scrape_parse(const char *query, size_t len, const struct announce_limits *lim,
                               struct scrape_req *req)
{
    struct query_param p;
    size_t pos = 0;

    if (len > QUERY_MAX_LEN)
        return ANNOUNCE_ERR_TOO_LONG;
    req->count = 0;
    while (query_next(query, len, &pos, &p)) {
        uint8_t h[ANNOUNCE_HASH_LEN];
        enum announce_err err;

        if (!ANNOUNCE_KEY(&p, "info_hash"))
            continue;
        if ((err = announce_hash(&p, h, ANNOUNCE_ERR_INFO_HASH_LENGTH)) != ANNOUNCE_OK)
            return err;
        if ((err = scrape_add(req, lim, h, NULL)) != ANNOUNCE_OK)
            return err;
    }
    return req->count ? ANNOUNCE_OK : ANNOUNCE_ERR_FULL_SCRAPE_DISABLED;
}

/* ---- replies ---- */

/* Appends the string literal s at p; evaluates to the new end. */
#define ANNOUNCE_LIT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

/* One non-compact peer: d2:ip<len>:<text>4:porti<port>ee, from a compact entry. */
static void announce_write_peer_dict(struct evbuffer *out, int family, const uint8_t *entry)
{
    char text[INET6_ADDRSTRLEN];
    char b[8 + BENCODE_STRHDR_MAX_LEN + INET6_ADDRSTRLEN + BENCODE_INT_MAX_LEN];
    size_t alen = family == AF_INET ? 4 : 16;
    uint16_t port = (uint16_t)(entry[alen] << 8 | entry[alen + 1]);
    char *p = b;
    size_t tlen;

    if (!inet_ntop(family, entry, text, sizeof(text)))
        return;                  /* cannot happen with a valid family and buffer */
    tlen = strlen(text);
    p = ANNOUNCE_LIT(p, "d2:ip");
    p = bencode_put_strhdr(p, tlen);
    memcpy(p, text, tlen);
    p += tlen;
    p = ANNOUNCE_LIT(p, "4:port");
    p = bencode_put_int(p, port);
    *p++ = 'e';
    evbuffer_add(out, b, (size_t)(p - b));
}

/* Keys in bytewise order: complete, downloaded, incomplete, interval, min interval, peers,
 * peers6. Compact: "peers" is always there (maybe empty), "peers6" only when there are IPv6
 * peers (saves 9 bytes on most replies; BEP 7 clients treat a missing key as none). compact=0:
 * "peers" lists every peer, IPv4 then IPv6, as {ip, port}; there is no "peers6" and never a
 * "peer id" (storage does not keep peer ids). */
void announce_write_reply(struct evbuffer *out, const struct announce_req *req,
                          const struct announce_reply *rep, const struct announce_timing *t)
{
    char head[64 + 5 * BENCODE_INT_MAX_LEN + BENCODE_STRHDR_MAX_LEN];
    char *p = head;
    size_t n4 = rep->peers4_count * PEER_COMPACT4_LEN;
    size_t n6 = rep->peers6_count * PEER_COMPACT6_LEN;

    p = ANNOUNCE_LIT(p, "d8:complete");
    p = bencode_put_int(p, rep->stats.complete);
    p = ANNOUNCE_LIT(p, "10:downloaded");
    p = bencode_put_int(p, rep->stats.downloaded);
    p = ANNOUNCE_LIT(p, "10:incomplete");
    p = bencode_put_int(p, rep->stats.incomplete);
    p = ANNOUNCE_LIT(p, "8:interval");
    p = bencode_put_int(p, t->interval_s);
    p = ANNOUNCE_LIT(p, "12:min interval");
    p = bencode_put_int(p, t->min_interval_s);
    p = ANNOUNCE_LIT(p, "5:peers");

    if (!req->compact) {
        *p++ = 'l';
        evbuffer_add(out, head, (size_t)(p - head));
        for (size_t i = 0; i < rep->peers4_count; i++)
            announce_write_peer_dict(out, AF_INET, rep->peers4 + i * PEER_COMPACT4_LEN);
        for (size_t i = 0; i < rep->peers6_count; i++)
            announce_write_peer_dict(out, AF_INET6, rep->peers6 + i * PEER_COMPACT6_LEN);
        evbuffer_add(out, "ee", 2);
        return;
    }

    p = bencode_put_strhdr(p, n4);
    /* One allocation for the whole reply instead of one per piece. */
    evbuffer_expand(out, (size_t)(p - head) + n4 + (n6 ? 8 + BENCODE_STRHDR_MAX_LEN + n6 : 0) + 1);
    evbuffer_add(out, head, (size_t)(p - head));
    if (n4)
        evbuffer_add(out, rep->peers4, n4);
    if (n6) {
        p = ANNOUNCE_LIT(head, "6:peers6");
        p = bencode_put_strhdr(p, n6);
        evbuffer_add(out, head, (size_t)(p - head));
        evbuffer_add(out, rep->peers6, n6);
    }
    evbuffer_add(out, "e", 1);
}

void announce_write_failure(struct evbuffer *out, enum announce_err err)
{
    announce_write_failure_text(out, announce_reason(err));
}

void announce_write_failure_text(struct evbuffer *out, const char *reason)
{
    size_t len = strlen(reason);
    char head[32 + BENCODE_STRHDR_MAX_LEN];
    char *p = head;

    p = ANNOUNCE_LIT(p, "d14:failure reason");
    p = bencode_put_strhdr(p, len);
    evbuffer_expand(out, (size_t)(p - head) + len + 1);
    evbuffer_add(out, head, (size_t)(p - head));
    evbuffer_add(out, reason, len);
    evbuffer_add(out, "e", 1);
}

struct announce_scrape_entry {
    const uint8_t *hash;
    const struct swarm_stats *stats;
};

static int announce_scrape_cmp(const void *a, const void *b)
{
    const struct announce_scrape_entry *x = a, *y = b;

    return memcmp(x->hash, y->hash, ANNOUNCE_HASH_LEN);
}

/* Bencoding wants the "files" keys sorted, so the hashes are sorted here; should a caller pass
 * the same hash twice, it is written once (a repeated key is not valid bencoding). */
void scrape_write_reply(struct evbuffer *out, const struct scrape_req *req,
                        const struct scrape_reply *rep)
{
    struct announce_scrape_entry e[SCRAPE_MAX_HASHES];
    unsigned n = req->count < rep->count ? req->count : rep->count;
    /* "20:<hash>d8:complete" ... "e" */
    char b[64 + ANNOUNCE_HASH_LEN + 3 * BENCODE_INT_MAX_LEN];

    if (n > SCRAPE_MAX_HASHES)
        n = SCRAPE_MAX_HASHES;
    for (unsigned i = 0; i < n; i++) {
        e[i].hash = req->info_hash[i];
        e[i].stats = &rep->stats[i];
    }
    if (n > 1)
        qsort(e, n, sizeof(e[0]), announce_scrape_cmp);

    evbuffer_expand(out, 11 + (size_t)n * sizeof(b));
    evbuffer_add(out, "d5:filesd", 9);
    for (unsigned i = 0; i < n; i++) {
        char *p = b;

        if (i > 0 && memcmp(e[i].hash, e[i - 1].hash, ANNOUNCE_HASH_LEN) == 0)
            continue;
        p = ANNOUNCE_LIT(p, "20:");
        memcpy(p, e[i].hash, ANNOUNCE_HASH_LEN);
        p += ANNOUNCE_HASH_LEN;
        p = ANNOUNCE_LIT(p, "d8:complete");
        p = bencode_put_int(p, e[i].stats->complete);
        p = ANNOUNCE_LIT(p, "10:downloaded");
        p = bencode_put_int(p, e[i].stats->downloaded);
        p = ANNOUNCE_LIT(p, "10:incomplete");
        p = bencode_put_int(p, e[i].stats->incomplete);
        *p++ = 'e';
        evbuffer_add(out, b, (size_t)(p - b));
    }
    evbuffer_add(out, "ee", 2);
}
