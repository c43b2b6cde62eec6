/* Announce and scrape requests: the typed form of a client's query string, its validation, and
 * the bencoded replies. Pure: no I/O, no clock. The worker parses with announce_parse() or
 * scrape_parse(), hands the typed request to storage, then writes the reply with
 * announce_write_reply() / scrape_write_reply() / announce_write_failure(). */
#ifndef TYTO_ANNOUNCE_H
#define TYTO_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define ANNOUNCE_HASH_LEN 20
#define SCRAPE_MAX_HASHES 256    /* hard cap; config scrape.max_hashes may lower it */
#define PEER_COMPACT4_LEN 6      /* BEP 23: 4 address bytes + 2 port bytes, network order */
#define PEER_COMPACT6_LEN 18     /* BEP 7: 16 address bytes + 2 port bytes, network order */

/* A peer's transport address. addr holds 4 bytes (AF_INET) or 16 (AF_INET6), network order. */
struct peer_addr {
    int family;                  /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint16_t port;               /* host order */
};

enum announce_event {
    ANNOUNCE_EVENT_NONE,         /* regular re-announce (also BEP 21 "paused") */
    ANNOUNCE_EVENT_STARTED,
    ANNOUNCE_EVENT_COMPLETED,
    ANNOUNCE_EVENT_STOPPED,
};

#define ANNOUNCE_USER_MAX 64      /* private mode: user names are 1-64 chars */
#define ANNOUNCE_MULT_MAX 15      /* a multiplier's decimal text ("1", "0.5", "2") */

/* Private mode: the user an announce is credited to and the torrent's multipliers, as decimal
 * text passed on to Redis ("0" for freeleech downloads; both "0" when neutral). */
struct announce_account {
    char user[ANNOUNCE_USER_MAX + 1];
    char up_mult[ANNOUNCE_MULT_MAX + 1];
    char down_mult[ANNOUNCE_MULT_MAX + 1];
};

struct announce_req {
    uint8_t info_hash[ANNOUNCE_HASH_LEN];
    uint8_t peer_id[ANNOUNCE_HASH_LEN];
    struct peer_addr peer;       /* address stored and never returned to this peer; port from query */
    uint64_t uploaded, downloaded, left;
    enum announce_event event;
    unsigned numwant;            /* already defaulted (missing, empty or negative) and capped */
    bool compact;                /* false only for an explicit compact=0 */
    bool no_peer_id;
    int64_t now_s;               /* unix seconds, set by the worker once per loop iteration */
    struct announce_account account; /* private mode: whom to credit (account.user[0] == 0: none) */
};

struct scrape_req {
    unsigned count;
    uint8_t info_hash[SCRAPE_MAX_HASHES][ANNOUNCE_HASH_LEN];
    int64_t now_s;
};

/* What storage answers for one swarm. */
struct swarm_stats {
    uint32_t complete;           /* seeders */
    uint32_t incomplete;         /* leechers */
    uint32_t downloaded;         /* completed events ever counted */
};

/* Storage's answer to an announce. Peer arrays are borrowed until the callback returns. */
struct announce_reply {
    struct swarm_stats stats;
    const uint8_t *peers4;       /* peers4_count * PEER_COMPACT4_LEN bytes */
    size_t peers4_count;
    const uint8_t *peers6;       /* peers6_count * PEER_COMPACT6_LEN bytes */
    size_t peers6_count;
};

/* Storage's answer to a scrape: stats[i] belongs to req->info_hash[i]. */
struct scrape_reply {
    unsigned count;
    const struct swarm_stats *stats;
};

/* Every reason a request can be refused. announce_reason() maps each to the one string that is
 * sent as the bencoded "failure reason"; the table in announce.c is the only home of those. */
enum announce_err {
    ANNOUNCE_OK = 0,
    ANNOUNCE_ERR_INFO_HASH_MISSING,
    ANNOUNCE_ERR_INFO_HASH_LENGTH,
    ANNOUNCE_ERR_INFO_HASH_REPEATED,
    ANNOUNCE_ERR_PEER_ID_MISSING,
    ANNOUNCE_ERR_PEER_ID_LENGTH,
    ANNOUNCE_ERR_PORT_MISSING,
    ANNOUNCE_ERR_PORT_INVALID,
    ANNOUNCE_ERR_UPLOADED_INVALID,
    ANNOUNCE_ERR_DOWNLOADED_INVALID,
    ANNOUNCE_ERR_LEFT_INVALID,
    ANNOUNCE_ERR_NUMWANT_INVALID,
    ANNOUNCE_ERR_COMPACT_INVALID,
    ANNOUNCE_ERR_EVENT_INVALID,
    ANNOUNCE_ERR_IP_INVALID,
    ANNOUNCE_ERR_ENCODING,       /* broken percent-encoding anywhere in the query */
    ANNOUNCE_ERR_PARAM_REPEATED, /* a single-valued parameter given twice */
    ANNOUNCE_ERR_TOO_LONG,       /* request line over the limit */
    ANNOUNCE_ERR_SCRAPE_TOO_MANY,
    ANNOUNCE_ERR_FULL_SCRAPE_DISABLED,
    ANNOUNCE_ERR_STORAGE_UNAVAILABLE,
    ANNOUNCE_ERR_STORAGE_TIMEOUT,
    ANNOUNCE_ERR_STORAGE_FULL,
    ANNOUNCE_ERR_STORAGE_INTERNAL,
    ANNOUNCE_ERR_OVERLOADED,
    ANNOUNCE_ERR_SHUTTING_DOWN,
    ANNOUNCE_ERR_RATE_LIMITED,   /* announces and scrapes (a scrape weighs its hash count) */
    /* Added after the first release: metrics count failures by index, so new ones go last. */
    ANNOUNCE_ERR_FORWARDED_INVALID, /* a trusted proxy's X-Forwarded-For / X-Real-IP is malformed */
    ANNOUNCE_ERR_CLIENT_ADDRESS, /* the connection's address is neither IPv4 nor IPv6 */
    ANNOUNCE_ERR_PEER_CAP,       /* a new port past swarm.max_peers_per_address */
    /* Private tracker mode (lib/private.c) and the client filter (lib/clientfilter.c). */
    ANNOUNCE_ERR_PRIVATE_PUBLIC_URL, /* /announce or /scrape while private.enabled */
    ANNOUNCE_ERR_PASSKEY_UNKNOWN,    /* malformed or not a user's */
    ANNOUNCE_ERR_PASSKEY_EXPIRED,
    ANNOUNCE_ERR_ACCOUNT_DISABLED,
    ANNOUNCE_ERR_TORRENT_UNREGISTERED,
    ANNOUNCE_ERR_SEED_ONLY,          /* can_leech 0 and left > 0 */
    ANNOUNCE_ERR_CLIENT_NOT_ALLOWED, /* the reply names the rule: worker_call's reason text */
    ANNOUNCE_ERR_PASSKEY_RATE_LIMITED, /* private.unknown_passkey_limit */
    ANNOUNCE_ERR_PRIVATE_UDP_SCRAPE, /* BEP 41 has no URL on scrape: no passkey to check */
    ANNOUNCE_ERR_COUNT
};

/* Human-readable failure reason for err (never NULL, even for out-of-range values). */
const char *announce_reason(enum announce_err err);

/* Limits the parser applies; the worker fills them from the configuration. */
struct announce_limits {
    unsigned numwant_default;
    unsigned numwant_max;        /* larger requests are capped, not refused */
    unsigned scrape_max_hashes;  /* <= SCRAPE_MAX_HASHES */
    bool allow_ip_param;         /* honour ip= (else ignored) */
};

/* An announce as a front decoded it (HTTP query string, BEP 15 packet), before the tracker's
 * rules: announce_validate() turns it into a struct announce_req the same way for every front. */
struct announce_fields {
    uint8_t info_hash[ANNOUNCE_HASH_LEN];
    uint8_t peer_id[ANNOUNCE_HASH_LEN];
    bool has_info_hash, has_peer_id, has_port;
    uint16_t port;               /* 0 is refused by announce_validate() */
    uint64_t uploaded, downloaded, left;
    enum announce_event event;
    bool numwant_default;        /* the client asked for the default (missing, empty, negative) */
    uint64_t numwant;            /* otherwise: what it asked for, not yet capped */
    bool compact;
    bool no_peer_id;
    bool has_ip;                 /* the client named its address (ip=, BEP 15's IP field) */
    struct peer_addr ip;         /* used only when announce.allow_ip_param is on */
};

/* Decodes an announce's query string (the part after '?', not including it; may be empty) into
 * *f: syntax only (escapes, lengths, numbers, repeats). allow_ip: read ip= (else it is skipped,
 * whatever it holds). Returns ANNOUNCE_OK or the first problem in query order. */
enum announce_err announce_decode_query(const char *query, size_t len, bool allow_ip,
                                        struct announce_fields *f);

/* Applies the tracker's rules to decoded fields: required fields, port 1..65535, numwant default
 * and cap, the client-given address only under allow_ip_param. req->peer must already hold the
 * client's address (its port is replaced), and req->now_s the time; everything else is set
 * here. *req is written only on success. */
enum announce_err announce_validate(const struct announce_fields *f, const struct announce_limits *lim,
                                    struct announce_req *req);

/* announce_decode_query() then announce_validate(). */
enum announce_err announce_parse(const char *query, size_t len, const struct announce_limits *lim,
                                 struct announce_req *req);

/* Parses a scrape query: every info_hash, in order, duplicates kept out. No info_hash at all
 * returns ANNOUNCE_ERR_FULL_SCRAPE_DISABLED (full scrape is not offered). */
enum announce_err scrape_parse(const char *query, size_t len, const struct announce_limits *lim,
                               struct scrape_req *req);

/* Adds one info_hash to a scrape (shared by the fronts): a repeat is kept once (*index, when not
 * NULL, tells where it is); a new one past scrape.max_hashes is ANNOUNCE_ERR_SCRAPE_TOO_MANY. */
enum announce_err scrape_add(struct scrape_req *req, const struct announce_limits *lim, const uint8_t *hash,
                             unsigned *index);

/* Timing fields every successful announce reply carries. */
struct announce_timing {
    unsigned interval_s;
    unsigned min_interval_s;
};

/* Writes the bencoded announce reply (keys sorted). Compact requests get "peers"/"peers6" byte
 * strings (BEP 23, BEP 7); compact=0 gets lists of {ip, port} dictionaries. */
void announce_write_reply(struct evbuffer *out, const struct announce_req *req,
                          const struct announce_reply *rep, const struct announce_timing *t);

/* Writes d14:failure reason<len>:<reason>e. */
void announce_write_failure(struct evbuffer *out, enum announce_err err);

/* The same with a reason composed at run time (the client filter names its rule). */
void announce_write_failure_text(struct evbuffer *out, const char *reason);

/* Writes the BEP 48 scrape reply: d5:filesd<hash>d8:completei..e10:downloadedi..e10:incompletei..eeee,
 * hashes sorted bytewise as bencoding requires. */
void scrape_write_reply(struct evbuffer *out, const struct scrape_req *req,
                        const struct scrape_reply *rep);

#endif
