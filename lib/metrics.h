/* Counters shared by all workers: one region mapped by the master before fork, one slot a
 * worker, each slot written only by its own worker, so /metrics needs no Redis and no locks.
 * A respawned worker takes over its predecessor's slot and keeps counting (Prometheus counters
 * must not go backwards). */
#ifndef TYTO_METRICS_H
#define TYTO_METRICS_H

#include <stdint.h>
#include <sys/types.h>

#include "lib/announce.h"
#include "lib/udp.h"

struct evbuffer;

enum metrics_route {
    METRICS_ROUTE_ANNOUNCE,
    METRICS_ROUTE_SCRAPE,
    METRICS_ROUTE_HEALTHZ,
    METRICS_ROUTE_METRICS,
    METRICS_ROUTE_STATS,
    METRICS_ROUTE_NOT_FOUND,
    METRICS_ROUTE_COUNT
};

/* UDP (BEP 15) datagrams, kept apart from the HTTP series above. */
enum metrics_udp_action { METRICS_UDP_CONNECT, METRICS_UDP_ANNOUNCE, METRICS_UDP_SCRAPE, METRICS_UDP_ACTIONS };
enum metrics_udp_refusal {
    METRICS_UDP_CONNID_FORGED,     /* MAC mismatch: forged, another address, another secret */
    METRICS_UDP_CONNID_EXPIRED,
    METRICS_UDP_CONNID_FUTURE,
    METRICS_UDP_SOURCE_PORT_0,     /* dropped: nowhere to answer */
    METRICS_UDP_OVERSIZE,          /* dropped: larger than any request */
    METRICS_UDP_PATH,              /* BEP 41 URL data other than /announce */
    METRICS_UDP_REFUSALS
};

/* Upper bounds of the latency histogram buckets, in microseconds (the last bucket is +Inf). */
#define METRICS_LATENCY_BUCKETS 12

struct metrics_slot {
    volatile pid_t pid;                               /* 0 while no worker holds the slot */
    volatile int ready;                               /* 1 once its worker serves (listeners and
                                                       * signal handlers set up): the master drains
                                                       * the old generation only when every new
                                                       * worker is ready */
    uint64_t generation;                              /* config generation of the holder */
    uint64_t started;                                 /* workers started in this slot */
    uint64_t requests[METRICS_ROUTE_COUNT];           /* answered, by route */
    uint64_t failures[ANNOUNCE_ERR_COUNT];            /* bencoded failure replies, by reason */
    uint64_t latency_bucket[METRICS_LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us;
    uint64_t latency_count;
    uint64_t storage_round_trips, storage_commands, storage_errors, storage_timeouts, storage_reconnects;
    uint64_t storage_redirects;                       /* Redis Cluster: sends a node redirected */
    uint64_t http_slow_closes;                        /* connections cut as slow readers */
    uint64_t access_log_dropped;                      /* access-log lines dropped (log full) */
    uint64_t udp_requests[METRICS_UDP_ACTIONS];       /* UDP requests answered, by action */
    uint64_t udp_malformed[UDP_ERR_COUNT];            /* undecodable datagrams, by enum udp_err */
    uint64_t udp_refused[METRICS_UDP_REFUSALS];
    /* Gauges: each worker refreshes its own (lib/worker.c, a short timer); the master zeroes a
     * slot's when it reaps its worker. */
    int64_t open_connections;                         /* on the tracker port */
    int64_t inflight;
    int64_t storage_backlog;                          /* timed out, replies still owed */
    int64_t http_output_bytes;                        /* replies held for slow readers */
    char redis_master[128];                           /* Sentinel mode: the master this worker
                                                       * resolved last ("host:port"); "" none */
};

struct metrics {
    int nslots;
    size_t map_len;
    struct metrics_slot slot[];
};

/* Maps a shared anonymous region for nslots workers (before fork). NULL on failure. */
struct metrics *metrics_new(int nslots);
void metrics_free(struct metrics *m);

/* Counts one answered request. */
void metrics_count_request(struct metrics_slot *s, enum metrics_route route, uint64_t latency_us);

/* Writes the Prometheus text exposition of every slot, summed and by worker. */
void metrics_write_prometheus(const struct metrics *m, struct evbuffer *out);

/* Writes a JSON summary (totals; workers: live processes, ready, and live by generation) for
 * /stats. */
void metrics_write_json(const struct metrics *m, struct evbuffer *out);

#endif
