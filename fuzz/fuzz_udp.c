/* libFuzzer target for lib/udp.c: the input is one datagram. It is decoded as the worker does
 * (head, then by action) from an exact-size copy, so a read past the end is an ASan report.
 * Properties: a decode that succeeds respects its action's sizes (scrape: 1..74 whole hashes;
 * announce: the URL data fits its buffer), udp_url_is_announce() is total, announce_validate()
 * accepts or refuses without crashing, and every encoder stays within its cap. */
#include "fuzz/fuzz.h"

#include "lib/udp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = (uint8_t *)fuzz_dup(data, size);
    struct udp_head h;
    static struct udp_announce a;
    static struct udp_scrape s;
    static uint8_t out[2048];

    if (udp_decode_head(buf, size, &h) != UDP_OK) {
        FUZZ_CHECK(size < UDP_HEAD_LEN);
        free(buf);
        return 0;
    }
    if (udp_decode_connect(buf, size) == UDP_OK)
        FUZZ_CHECK(h.action == UDP_ACTION_CONNECT && h.connection_id == UDP_PROTOCOL_ID);
    if (udp_decode_announce(buf, size, &a) == UDP_OK) {
        struct announce_limits lim = { .numwant_default = 50, .numwant_max = 200, .scrape_max_hashes = 64 };
        struct announce_req req;

        FUZZ_CHECK(h.action == UDP_ACTION_ANNOUNCE && size >= UDP_ANNOUNCE_LEN);
        FUZZ_CHECK(a.url_len <= sizeof(a.url));
        (void)udp_url_is_announce(&a);
        memset(&req, 0, sizeof(req));
        req.peer.family = 2;
        if (announce_validate(&a.fields, &lim, &req) == ANNOUNCE_OK)
            FUZZ_CHECK(req.peer.port != 0 && req.numwant <= 200);
    }
    if (udp_decode_scrape(buf, size, &s) == UDP_OK) {
        FUZZ_CHECK(h.action == UDP_ACTION_SCRAPE);
        FUZZ_CHECK(s.count >= 1 && s.count <= UDP_SCRAPE_MAX_HASHES);
        FUZZ_CHECK(size == UDP_SCRAPE_HEAD_LEN + (size_t)s.count * 20);
    }
    /* Encoders with a cap from the input: never past it. */
    size_t cap = size < sizeof(out) ? size : sizeof(out);
    struct swarm_stats st[UDP_SCRAPE_MAX_HASHES];
    memset(st, 0, sizeof(st));
    FUZZ_CHECK(udp_write_error(out, cap, h.transaction_id, "a reason of some length") <= cap);
    FUZZ_CHECK(udp_write_connect(out, cap, h.transaction_id, h.connection_id) <= cap);
    FUZZ_CHECK(udp_write_announce(out, cap, h.transaction_id, 1, st, buf, size / 6, 6) <= cap);
    FUZZ_CHECK(udp_write_scrape(out, cap, h.transaction_id, st, (unsigned)(size % 75)) <= cap);
    free(buf);
    return 0;
}
