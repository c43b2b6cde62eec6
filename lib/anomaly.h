/* Swarm anomalies: pure rules that turn one swarm's figures (read by the statistics aggregator,
 * lib/stats_aggregator.c) into flags, each with a reason a person can read. No I/O, no clock:
 * the caller passes now_s. Each kind is defined once here and in the README's table. */
#ifndef TYTO_ANOMALY_H
#define TYTO_ANOMALY_H

#include <stddef.h>
#include <stdint.h>

enum anomaly_kind {
    ANOMALY_FAST_ANNOUNCE,      /* peers re-announcing sooner than min interval (no event) */
    ANOMALY_CROWDED_ADDRESS,    /* one IP address holding many peers (ports) of the swarm */
    ANOMALY_STUCK_LEECHERS,     /* leechers present for long, no download ever completed */
    ANOMALY_PHANTOM_UPLOAD,     /* seeders' uploaded grew while the swarm had no leecher */
    ANOMALY_ANNOUNCE_SPIKE,     /* last minute's announces far above the swarm's recent rate */
    ANOMALY_KINDS
};

#define ANOMALY_MINUTES 60          /* per-minute announce counts kept per swarm */
#define ANOMALY_REASON_MAX 160

/* Thresholds (tyto.yaml stats.anomalies.*). A zero threshold turns its rule off. */
struct anomaly_limits {
    unsigned fast_announces;        /* flag at >= this many too-fast announces in the last interval */
    unsigned peers_per_address;     /* flag when one address holds >= this many live peers */
    unsigned stuck_leechers;        /* flag when >= this many leechers ... */
    int64_t stuck_age_s;            /* ... in a swarm first seen >= this long ago, downloaded == 0 */
    unsigned phantom_uploads;       /* flag at >= this many phantom-upload reports in the last interval */
    unsigned spike_min;             /* flag when the last full minute has >= this many announces ... */
    double spike_factor;            /* ... and >= factor x the mean of the minutes before it */
};

/* One swarm as the aggregator read it. */
struct anomaly_swarm {
    int64_t now_s;
    int64_t first_seen_s;           /* 0: unknown */
    uint64_t seeders, leechers, downloaded;
    unsigned fast_announces;        /* too-fast announces counted in the last interval */
    unsigned phantom_uploads;       /* phantom-upload reports counted in the last interval */
    unsigned max_peers_per_address; /* the most live peers one address holds */
    char crowded_address[48];       /* that address, text ("" if none) */
    /* Announces per minute: minute[0] is the current (incomplete) minute, minute[1] the last full
     * one, ... minute[ANOMALY_MINUTES - 1] the oldest. Minutes before first_seen are 0. */
    uint32_t minute[ANOMALY_MINUTES];
};

struct anomaly_result {
    unsigned flags;                              /* bit (1u << kind) per flagged kind */
    char reason[ANOMALY_KINDS][ANOMALY_REASON_MAX]; /* "" unless flagged */
};

/* Applies every rule. Returns the flags (also in out->flags). */
unsigned anomaly_check(const struct anomaly_limits *lim, const struct anomaly_swarm *s, struct anomaly_result *out);

/* "fast_announce", "crowded_address", "stuck_leechers", "phantom_upload", "announce_spike":
 * the label in /metrics (tyto_anomalies{kind=...}), /stats and the Redis flags field. */
const char *anomaly_kind_name(enum anomaly_kind k);

/* One sentence that defines the kind, for the status page and `tyto swarms --anomalies`. */
const char *anomaly_kind_text(enum anomaly_kind k);

/* Parses a name back; -1 if unknown. */
int anomaly_kind_parse(const char *name, size_t len);

#endif
