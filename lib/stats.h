/* The tracker's statistics, for the whole tracker (every host together), per worker: one Redis
 * connection of its own that
 *   - keeps a copy of the aggregator's snapshot (<prefix>{stats}:snapshot, read every second),
 *     so /metrics and /stats answer from memory;
 *   - adds this worker's scrapes and completed downloads to the per-minute counts
 *     (<prefix>{stats}:counts) every second;
 *   - carries the aggregator (lib/stats_aggregator.c) when this worker holds the lease;
 *   - answers the admin listener's GET / (status page), GET /stats?info_hash=<hex> and, with
 *     stats.full_scrape, the tracker port's full scrape, each with one command.
 * Schema and figures: README "Statistics". Off (NULL) unless stats.enabled and storage redis. */
#ifndef TYTO_STATS_H
#define TYTO_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/anomaly.h"
#include "lib/announce.h"

struct event_base;
struct evbuffer;
struct config;
struct http_request;
struct metrics;
struct metrics_slot;
struct storage;
struct stats;

/* Draining (SIGTERM, reload): no more ticks, and the aggregator's lease, if held, is given up
 * (deleted) so that a worker that stays takes it over at once. NULL is a no-op. */
void stats_stop(struct stats *s);

/* The aggregator's snapshot as this worker last read it. */
struct stats_snapshot {
    bool present;                    /* false until a snapshot was read */
    int64_t time_s;                  /* when the aggregator wrote it */
    int64_t pass_ms;                 /* how long its pass took */
    char holder[96];                 /* the aggregator that wrote it */
    uint64_t swarms, peers, seeders, leechers;
    uint64_t seeders4, seeders6, leechers4, leechers6;
    uint64_t downloaded;             /* completed downloads, all swarms, all time */
    uint64_t announces_per_min, scrapes_per_min, completed_per_min; /* the last full minute */
    uint64_t anomalies[ANOMALY_KINDS];
};

/* m: this host's workers (the status page; may be NULL); slot: this worker's counters (the
 * scrapes it flushes); st: its storage (the completed downloads it counted). NULL when stats are
 * off (stats.enabled false, or storage memory) or on failure. */
struct stats *stats_new(struct event_base *base, const struct config *cfg, const struct metrics *m,
                        const struct metrics_slot *slot, const struct storage *st);
void stats_free(struct stats *s);   /* NULL is a no-op; answers waiting requests with 503 */

const struct stats_snapshot *stats_snapshot(const struct stats *s);

/* The snapshot's gauges in Prometheus text (tyto_swarms, tyto_peers{family,role},
 * tyto_anomalies{kind}, ...), and as the members of a JSON object ("tracker": {...}). */
void stats_write_prometheus(const struct stats *s, struct evbuffer *out);
void stats_write_json(const struct stats *s, struct evbuffer *out);

/* GET /stats?info_hash=<40 hex>: one swarm's figures as JSON. Replies later. */
void stats_handle_swarm(struct stats *s, struct http_request *req, const char *hex);

/* GET / on the admin listener: the status page. Replies later. */
void stats_handle_page(struct stats *s, struct http_request *req);

/* Full scrape (BEP 48 without info_hash): the aggregator's last bencoded files dictionary, or
 * a failure reason (not ready, or this address asked within stats.full_scrape_interval_s, on
 * any host: <prefix>{stats}:fullscrape:<address>, SET NX EX). Replies later. */
void stats_handle_full_scrape(struct stats *s, struct http_request *req, const struct peer_addr *client,
                              int64_t now_s);

/* The lease holder's id of this process: "<host name>:<pid>". */
const char *stats_holder_id(const struct stats *s);

#endif
