/* The fields of a swarm's stats hash (README "Statistics"), read from an HGETALL reply: the one
 * reader behind the aggregator's pass, the /stats?info_hash route and `tyto swarm`, so the three
 * agree on what "the last interval", "too fast" and "clients" mean. Pure: no I/O, no allocation.
 *
 * Interval counters (c:<k>:<client>, fast:<k>, phantom:<k>) count per interval number k (unix
 * time / announce.interval_s); a figure is the larger of this interval's and the last one's (a
 * rule judges a whole interval, and the current one has only begun). Older ones are stale. */
#ifndef TYTO_STATS_FIELDS_H
#define TYTO_STATS_FIELDS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "lib/anomaly.h"
#include "lib/peer_client.h"

#define STATS_FIELDS_CLIENTS 32        /* distinct client codes kept (27 known + "other" fit) */

struct stats_fields {
    int64_t first_s;                   /* "first": when the swarm was first seen; 0 unknown */
    int64_t last_minute;               /* newest s:/l: minute (unix minute); 0 none */
    uint64_t announces_interval;       /* s:/l: of the minutes that overlap the last interval */
    uint64_t announces_hour;           /* s:/l: of the last 60 minutes */
    uint32_t minute[ANOMALY_MINUTES];  /* s:/l: by age: [0] this minute, [1] the last one, ... */
    uint64_t fast, phantom;            /* fast:<k>, phantom:<k> */
    unsigned nclients;
    struct stats_fields_client {
        char code[PEER_CLIENT_CODE_MAX];
        uint64_t peers;                /* c:<k>:<code> */
    } clients[STATS_FIELDS_CLIENTS];   /* in the order the hash gave them */
};

/* Called for each field old enough to delete (s:/l: an hour old, interval counters before the
 * last interval); name is borrowed from the reply. */
typedef void stats_fields_stale_cb(const char *name, size_t len, void *arg);

/* Reads hash (an HGETALL reply: name, value, ...; values as strings or integers) as of now_s
 * into *out. Fields it does not know (the aggregator's own: seeders4, flags, anomaly:<kind>, ...)
 * are skipped; stale may be NULL. */
void stats_fields_parse(const redisReply *hash, int64_t now_s, int interval_s, struct stats_fields *out,
                        stats_fields_stale_cb *stale, void *arg);

#endif
