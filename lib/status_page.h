/* The admin listener's status page (GET /): one HTML document rendered by tyto itself, plain HTML
 * and CSS with inline SVG charts, no JavaScript, readable on a phone and on a wide screen. Pure:
 * the caller gathers every figure into a struct status_view (from the aggregator's snapshot in
 * Redis and this host's shared-memory counters) and the renderer only writes. */
#ifndef TYTO_STATUS_PAGE_H
#define TYTO_STATUS_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/anomaly.h"

struct evbuffer;

/* One point of a time series (the aggregator writes one a minute for a day, one an hour for a
 * month). */
struct status_point {
    int64_t t_s;                     /* unix seconds */
    uint64_t swarms, peers;
    double announces_per_s;
};

struct status_swarm {
    char hex[41];                    /* info_hash, 40 lowercase hex digits */
    uint64_t seeders, leechers, downloaded;
    uint64_t announces;              /* in the last interval */
    unsigned flags;                  /* bit (1u << enum anomaly_kind) */
    char reason[ANOMALY_REASON_MAX]; /* the first flagged kind's reason, "" if none */
};

struct status_worker {
    int slot;
    pid_t pid;                       /* 0: slot empty */
    bool ready;
    uint64_t generation;
    uint64_t requests;               /* answered, all routes */
    int64_t open_connections, inflight;
};

struct status_view {
    int64_t now_s;
    bool have_snapshot;              /* false: no aggregator has written one yet */
    int64_t snapshot_s;              /* when the aggregator wrote it */
    const char *aggregator;          /* the lease holder's id ("host:pid"), "" if none */
    uint64_t swarms, peers;
    uint64_t seeders4, seeders6, leechers4, leechers6;
    uint64_t downloaded;             /* completed downloads, all time */
    double announces_per_s, scrapes_per_s;
    uint64_t anomalies[ANOMALY_KINDS];  /* flagged swarms by kind */
    const struct status_point *day;  /* oldest first */
    size_t nday;
    const struct status_point *month;
    size_t nmonth;
    const struct status_swarm *busiest;  /* most announces first */
    size_t nbusiest;
    const struct status_swarm *flagged;
    size_t nflagged;
    const struct status_worker *workers; /* this host's */
    size_t nworkers;
    const char *host;                /* this host's name */
};

/* Writes the whole page (a complete HTML5 document, UTF-8) into out. */
void status_page_render(const struct status_view *v, struct evbuffer *out);

#endif
