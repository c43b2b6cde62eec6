/* The statistics aggregator: one for the whole tracker, elected with a lease in Redis
 * (<prefix>{stats}:lease, SET NX PX, renewed while held; when the holder dies, another worker of
 * any host takes it within stats.lease_ms). The holder walks the keyspace incrementally (SCAN),
 * reads each swarm with one FCALL tyto_census, flags its anomalies (lib/anomaly.c), prunes its
 * old counters, and at the end of the pass writes the snapshot, the time series, the busiest and
 * flagged swarms and (stats.full_scrape) the full scrape. Rides the connections of lib/stats.c
 * (lib/redis_conn.h's set: the one Redis, or every primary of a Redis Cluster). */
#ifndef TYTO_STATS_AGGREGATOR_H
#define TYTO_STATS_AGGREGATOR_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct redis_conns;
struct stats_aggregator;

struct stats_aggregator *stats_aggregator_new(const struct config *cfg, const char *holder_id);
void stats_aggregator_free(struct stats_aggregator *a);

/* Called about every stats_aggregator_period_ms() with the live connection: takes or renews the
 * lease, and starts a pass when one is due. now_ms: unix milliseconds. */
void stats_aggregator_tick(struct stats_aggregator *a, struct redis_conns *conns, int64_t now_ms);

/* The connection went away: the lease is no longer known to be held, a pass in progress is
 * abandoned (its replies come back NULL). */
void stats_aggregator_lost(struct stats_aggregator *a);

/* Gives the lease up if this process holds it (DEL only if the holder is still us), abandoning
 * any pass in progress. */
void stats_aggregator_release(struct stats_aggregator *a, struct redis_conns *conns);

int stats_aggregator_period_ms(const struct stats_aggregator *a);
bool stats_aggregator_holding(const struct stats_aggregator *a);

#endif
