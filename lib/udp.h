/* The BEP 15 UDP tracker protocol, with BEP 41's option list: datagrams in, typed requests out,
 * and replies encoded into a caller's buffer. Pure: no I/O, no clock, no allocation. The worker
 * (lib/worker.c) checks connection ids (lib/udp_connid.c), runs the shared validation
 * (announce_validate) and storage, then encodes the reply here. */
#ifndef TYTO_UDP_H
#define TYTO_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/announce.h"

#define UDP_PROTOCOL_ID 0x41727101980ULL  /* the magic a connect carries */
#define UDP_CONNECT_LEN 16
#define UDP_ANNOUNCE_LEN 98                 /* without BEP 41 options */
#define UDP_SCRAPE_HEAD_LEN 16
#define UDP_SCRAPE_MAX_HASHES 74            /* what fits a 1500-byte datagram; more is refused */
#define UDP_HEAD_LEN 16                     /* connection id, action, transaction id */
#define UDP_ERROR_HEAD_LEN 8
#define UDP_URL_DATA_MAX 255                /* BEP 41 URL data kept, all options together */

enum udp_action {
    UDP_ACTION_CONNECT = 0,
    UDP_ACTION_ANNOUNCE = 1,
    UDP_ACTION_SCRAPE = 2,
    UDP_ACTION_ERROR = 3,
};

/* Why a datagram was not decoded. udp_reason() names each for error replies and metrics. */
enum udp_err {
    UDP_OK = 0,
    UDP_ERR_SHORT,               /* shorter than its action's fixed part (or than 16 bytes) */
    UDP_ERR_ACTION,              /* an action other than connect, announce, scrape */
    UDP_ERR_PROTOCOL_ID,         /* a connect without the BEP 15 magic */
    UDP_ERR_EVENT,               /* announce event not 0..3 */
    UDP_ERR_OPTIONS,             /* a BEP 41 option runs past the end of the datagram */
    UDP_ERR_URL_DATA_LONG,       /* BEP 41 URL data over UDP_URL_DATA_MAX bytes */
    UDP_ERR_SCRAPE_EMPTY,        /* a scrape with no info_hash */
    UDP_ERR_SCRAPE_TOO_MANY,     /* more than UDP_SCRAPE_MAX_HASHES */
    UDP_ERR_SCRAPE_PARTIAL,      /* the hashes are not a whole number of 20 bytes */
    UDP_ERR_COUNT
};

const char *udp_reason(enum udp_err err);
/* A short name for metrics labels ("short", "action", ...). */
const char *udp_err_name(enum udp_err err);

/* The 16 bytes every request starts with. */
struct udp_head {
    uint64_t connection_id;      /* for connect: the protocol id */
    uint32_t action;
    uint32_t transaction_id;
};

struct udp_announce {
    struct announce_fields fields;  /* for announce_validate(); has_ip when the IP field is not 0 */
    uint32_t key;
    size_t url_len;                 /* BEP 41 URL data, all URLData options concatenated */
    bool has_url;                   /* at least one URLData option (maybe empty) */
    char url[UDP_URL_DATA_MAX];
};

struct udp_scrape {
    unsigned count;
    uint8_t info_hash[UDP_SCRAPE_MAX_HASHES][ANNOUNCE_HASH_LEN];
};

/* Reads the 16-byte head. UDP_ERR_SHORT under 16 bytes; the action is not checked. When this
 * fails there is no transaction id to answer with: the caller drops the datagram. */
enum udp_err udp_decode_head(const uint8_t *buf, size_t len, struct udp_head *h);

/* The rest, by action. Each checks the head's action is its own (UDP_ERR_ACTION otherwise). */
enum udp_err udp_decode_connect(const uint8_t *buf, size_t len);
enum udp_err udp_decode_announce(const uint8_t *buf, size_t len, struct udp_announce *a);
enum udp_err udp_decode_scrape(const uint8_t *buf, size_t len, struct udp_scrape *s);

/* BEP 41 options (after an announce's 98 bytes): 0 end, 1 NOP, 2 URL data (a length byte and
 * that many bytes; several are concatenated); any other type has a length byte and is skipped.
 * An option running past the end is UDP_ERR_OPTIONS. */
enum udp_err udp_decode_options(const uint8_t *opt, size_t len, struct udp_announce *a);

/* True when BEP 41 URL data names the announce path: none, "" or "/announce", optionally with a
 * "?query" (ignored). Anything else (a passkey path) is refused until private mode exists. */
bool udp_url_is_announce(const struct udp_announce *a);

/* Encoders write into out (cap bytes) and return the length written, or 0 when it does not fit. */
size_t udp_write_connect(uint8_t *out, size_t cap, uint32_t transaction_id, uint64_t connection_id);
/* peers: count entries of peer_len (PEER_COMPACT4_LEN or PEER_COMPACT6_LEN) bytes; as many as fit
 * in cap are written. */
size_t udp_write_announce(uint8_t *out, size_t cap, uint32_t transaction_id, uint32_t interval_s,
                          const struct swarm_stats *st, const uint8_t *peers, size_t count, size_t peer_len);
/* stats[i] answers hash i of the request, in request order. */
size_t udp_write_scrape(uint8_t *out, size_t cap, uint32_t transaction_id, const struct swarm_stats *stats,
                        unsigned count);
/* The message is cut to fit cap (the caller passes a cap no larger than the request when the
 * sender has not proved it receives: no amplification). 0 when not even the head fits. */
size_t udp_write_error(uint8_t *out, size_t cap, uint32_t transaction_id, const char *msg);

#endif
