/* Reading a Redis Cluster's slot map (issue 12): the blocking, bounded part that every owner of
 * cluster connections shares (the workers' router in storage/redis_router.c, the CLI, the
 * statistics aggregator). It connects to one node after another, authenticates with redis.url's
 * password, asks CLUSTER SLOTS and parses the answer with storage/redis_cluster.c. */
#ifndef TYTO_REDIS_CLUSTER_SEED_H
#define TYTO_REDIS_CLUSTER_SEED_H

#include <hiredis/hiredis.h>

#include "lib/config.h"
#include "storage/redis_cluster.h"

/* A blocking connection to host:port with redis.url's password sent (AUTH), every call on it
 * bounded by redis.timeout_ms. NULL with a message in err. Free with redisFree. */
redisContext *redis_cluster_connect(const struct config *cfg, const char *host, int port, char *err,
                                    size_t errlen);

/* Reads the slot map into *out, asking first the primaries of *known (may be NULL: the map in use,
 * whose nodes are the likeliest to answer after a failover), then every redis.nodes seed, until
 * one answers with a map that parses. Blocks for at most redis.timeout_ms per address tried.
 * Returns 0, or -1 with the last address's failure in err (*out untouched). */
int redis_cluster_fetch_map(const struct config *cfg, const struct redis_cluster_map *known,
                            struct redis_cluster_map *out, char *err, size_t errlen);

#endif
