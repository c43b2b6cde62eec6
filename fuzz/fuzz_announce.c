/* libFuzzer target for lib/announce.c: the input is the query string of an announce and of a
 * scrape. A refusal must name a reason and its failure reply must be canonical bencoding; an
 * accepted request must hold what the query said (20-byte hashes, port 1..65535, numwant capped)
 * and its reply, built from a synthetic storage answer with peers, must be one canonical
 * bencoded value that fills the buffer exactly and carries those peers. */
#include "fuzz/fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "lib/announce.h"
#include "lib/bencode.h"
#include "lib/query.h"

/* The reply in buf, copied out to an exact-size buffer (*len bytes); the caller frees it. */
static uint8_t *fuzz_take(struct evbuffer *buf, size_t *len)
{
    *len = evbuffer_get_length(buf);
    uint8_t *b = (uint8_t *)fuzz_dup(evbuffer_pullup(buf, -1), *len);

    evbuffer_drain(buf, *len);
    return b;
}

/* bencode_check() accepts exactly the whole reply. */
static void fuzz_check_whole(const uint8_t *b, size_t len)
{
    FUZZ_CHECK(len > 0);
    FUZZ_CHECK(bencode_check(b, len) == (int)len);
}

static void fuzz_failure(struct evbuffer *buf, enum announce_err err)
{
    const uint8_t *v, *s;
    size_t len, vlen, slen;
    const char *reason = announce_reason(err);
    uint8_t *b;

    FUZZ_CHECK(err > ANNOUNCE_OK && err < ANNOUNCE_ERR_COUNT);
    FUZZ_CHECK(reason != NULL && reason[0] != '\0' && strcmp(reason, "unknown error") != 0);
    announce_write_failure(buf, err);
    b = fuzz_take(buf, &len);
    fuzz_check_whole(b, len);
    FUZZ_CHECK(bencode_dict_get(b, len, "failure reason", &v, &vlen) == 0);
    FUZZ_CHECK(bencode_get_str(v, vlen, &s, &slen) == 0);
    FUZZ_CHECK(slen == strlen(reason) && memcmp(s, reason, slen) == 0);
    free(b);
}

static int64_t fuzz_int(const uint8_t *d, size_t len, const char *key)
{
    const uint8_t *v;
    size_t vlen;
    int64_t i;

    FUZZ_CHECK(bencode_dict_get(d, len, key, &v, &vlen) == 0);
    FUZZ_CHECK(bencode_get_int(v, vlen, &i) == 0);
    return i;
}

/* Peers and counts for the reply, derived from the request so that they vary with the input. */
static void fuzz_announce_reply(struct evbuffer *buf, const struct announce_req *req)
{
    uint8_t peers4[8 * PEER_COMPACT4_LEN], peers6[4 * PEER_COMPACT6_LEN];
    struct announce_reply rep;
    struct announce_timing t = { .interval_s = 1800, .min_interval_s = 900 };
    size_t n4 = req->numwant % 9, n6 = req->info_hash[0] % 5;
    const uint8_t *v, *s;
    size_t len, vlen, slen;
    uint8_t *b;

    for (size_t i = 0; i < sizeof(peers4); i++)
        peers4[i] = (uint8_t)(req->peer_id[i % ANNOUNCE_HASH_LEN] + i);
    for (size_t i = 0; i < sizeof(peers6); i++)
        peers6[i] = (uint8_t)(req->info_hash[i % ANNOUNCE_HASH_LEN] ^ (i * 7));
    memset(&rep, 0, sizeof(rep));
    rep.stats.complete = (uint32_t)req->uploaded;
    rep.stats.incomplete = (uint32_t)req->downloaded;
    rep.stats.downloaded = UINT32_MAX - (uint32_t)req->left;
    rep.peers4 = peers4;
    rep.peers4_count = n4;
    rep.peers6 = peers6;
    rep.peers6_count = n6;

    announce_write_reply(buf, req, &rep, &t);
    b = fuzz_take(buf, &len);
    fuzz_check_whole(b, len);
    FUZZ_CHECK(fuzz_int(b, len, "complete") == rep.stats.complete);
    FUZZ_CHECK(fuzz_int(b, len, "incomplete") == rep.stats.incomplete);
    FUZZ_CHECK(fuzz_int(b, len, "downloaded") == rep.stats.downloaded);
    FUZZ_CHECK(fuzz_int(b, len, "interval") == 1800);
    FUZZ_CHECK(fuzz_int(b, len, "min interval") == 900);
    FUZZ_CHECK(bencode_dict_get(b, len, "peers", &v, &vlen) == 0);
    if (req->compact) {
        /* BEP 23 / BEP 7: the compact entries exactly as storage gave them. */
        FUZZ_CHECK(bencode_get_str(v, vlen, &s, &slen) == 0);
        FUZZ_CHECK(slen == n4 * PEER_COMPACT4_LEN && (slen == 0 || memcmp(s, peers4, slen) == 0));
        if (n6) {
            FUZZ_CHECK(bencode_dict_get(b, len, "peers6", &v, &vlen) == 0);
            FUZZ_CHECK(bencode_get_str(v, vlen, &s, &slen) == 0);
            FUZZ_CHECK(slen == n6 * PEER_COMPACT6_LEN && memcmp(s, peers6, slen) == 0);
        }
    } else {
        /* A list of {ip, port}: IPv4 peers first, then IPv6, each with its own address. */
        FUZZ_CHECK(v[0] == 'l');
        for (size_t i = 0; i < n4 + n6; i++) {
            const uint8_t *e, *ip;
            size_t elen, iplen;
            const uint8_t *entry = i < n4 ? peers4 + i * PEER_COMPACT4_LEN
                                          : peers6 + (i - n4) * PEER_COMPACT6_LEN;
            size_t alen = i < n4 ? 4 : 16;
            char text[INET6_ADDRSTRLEN + 1];
            uint8_t addr[16];

            FUZZ_CHECK(bencode_list_get(v, vlen, i, &e, &elen) == 0);
            FUZZ_CHECK(bencode_dict_get(e, elen, "ip", &ip, &iplen) == 0);
            FUZZ_CHECK(bencode_get_str(ip, iplen, &s, &slen) == 0);
            FUZZ_CHECK(slen < sizeof(text));
            memcpy(text, s, slen);
            text[slen] = '\0';
            FUZZ_CHECK(inet_pton(i < n4 ? AF_INET : AF_INET6, text, addr) == 1);
            FUZZ_CHECK(memcmp(addr, entry, alen) == 0);
            FUZZ_CHECK(fuzz_int(e, elen, "port") == (entry[alen] << 8 | entry[alen + 1]));
        }
        FUZZ_CHECK(bencode_list_get(v, vlen, n4 + n6, &v, &vlen) == -1);
    }
    free(b);
}

static void fuzz_announce(struct evbuffer *buf, const char *q, size_t len, bool allow_ip)
{
    struct announce_limits lim = {
        .numwant_default = 50, .numwant_max = 200, .scrape_max_hashes = 64,
        .allow_ip_param = allow_ip,
    };
    struct announce_req req, before;
    enum announce_err err;

    memset(&req, 0xa5, sizeof(req));
    req.peer.family = AF_INET6;
    memset(req.peer.addr, 0x20, sizeof(req.peer.addr));
    req.peer.port = 0;
    req.now_s = 1700000000;
    before = req;

    err = announce_parse(q, len, &lim, &req);
    if (err != ANNOUNCE_OK) {
        FUZZ_CHECK(memcmp(&req, &before, sizeof(req)) == 0);   /* written only on success */
        fuzz_failure(buf, err);
        return;
    }
    FUZZ_CHECK(len <= QUERY_MAX_LEN);
    FUZZ_CHECK(req.now_s == before.now_s);
    FUZZ_CHECK(req.peer.port != 0);
    FUZZ_CHECK(req.numwant <= lim.numwant_max);
    FUZZ_CHECK(req.event <= ANNOUNCE_EVENT_STOPPED);
    FUZZ_CHECK(req.peer.family == AF_INET || req.peer.family == AF_INET6);
    if (!allow_ip)
        FUZZ_CHECK(req.peer.family == before.peer.family &&
                   memcmp(req.peer.addr, before.peer.addr, sizeof(req.peer.addr)) == 0);
    fuzz_announce_reply(buf, &req);
    /* Both reply shapes, whatever compact= said. */
    req.compact = !req.compact;
    fuzz_announce_reply(buf, &req);
}

static void fuzz_scrape(struct evbuffer *buf, const char *q, size_t len, unsigned max)
{
    struct announce_limits lim = {
        .numwant_default = 50, .numwant_max = 200, .scrape_max_hashes = max,
    };
    struct scrape_req *req = malloc(sizeof(*req));
    struct swarm_stats stats[SCRAPE_MAX_HASHES];
    struct scrape_reply rep;
    enum announce_err err;
    const uint8_t *files;
    size_t blen, flen;
    uint8_t *b;

    FUZZ_CHECK(req != NULL);
    req->now_s = 42;
    err = scrape_parse(q, len, &lim, req);
    if (err != ANNOUNCE_OK) {
        fuzz_failure(buf, err);
        free(req);
        return;
    }
    FUZZ_CHECK(req->now_s == 42);
    FUZZ_CHECK(req->count >= 1 && req->count <= max && req->count <= SCRAPE_MAX_HASHES);
    for (unsigned i = 0; i < req->count; i++) {
        for (unsigned j = 0; j < i; j++)
            FUZZ_CHECK(memcmp(req->info_hash[i], req->info_hash[j], ANNOUNCE_HASH_LEN) != 0);
        stats[i].complete = req->info_hash[i][0] * 1000u + i;
        stats[i].incomplete = UINT32_MAX - i;
        stats[i].downloaded = req->info_hash[i][19];
    }
    rep.count = req->count;
    rep.stats = stats;
    scrape_write_reply(buf, req, &rep);
    b = fuzz_take(buf, &blen);
    fuzz_check_whole(b, blen);
    FUZZ_CHECK(bencode_dict_get(b, blen, "files", &files, &flen) == 0);
    /* Every requested hash is a key of "files" with its own counts. */
    for (unsigned i = 0; i < req->count; i++) {
        char key[ANNOUNCE_HASH_LEN + 1];
        const uint8_t *fv = NULL;
        size_t fvlen = 0;

        /* bencode_dict_get() takes a C string, so only hashes without a NUL are looked up. */
        if (memchr(req->info_hash[i], 0, ANNOUNCE_HASH_LEN))
            continue;
        memcpy(key, req->info_hash[i], ANNOUNCE_HASH_LEN);
        key[ANNOUNCE_HASH_LEN] = '\0';
        FUZZ_CHECK(bencode_dict_get(files, flen, key, &fv, &fvlen) == 0);
        FUZZ_CHECK(fuzz_int(fv, fvlen, "complete") == stats[i].complete);
        FUZZ_CHECK(fuzz_int(fv, fvlen, "incomplete") == stats[i].incomplete);
        FUZZ_CHECK(fuzz_int(fv, fvlen, "downloaded") == stats[i].downloaded);
    }
    free(b);
    free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *q = fuzz_dup(data, size);
    struct evbuffer *buf = evbuffer_new();

    FUZZ_CHECK(buf != NULL);
    fuzz_announce(buf, q, size, false);
    fuzz_announce(buf, q, size, true);
    fuzz_scrape(buf, q, size, 64);
    fuzz_scrape(buf, q, size, 3);
    fuzz_scrape(buf, q, size, SCRAPE_MAX_HASHES);
    evbuffer_free(buf);
    free(q);
    return 0;
}
