/* Redis Sentinel (issue 12, high availability without sharding): which Redis is the master now.
 * With redis.sentinels and redis.master_name set, every owner of a Redis connection (the workers'
 * announce path in storage/redis.c, the admin API and statistics in lib/redis_conn.c, the CLI in
 * lib/inspect.c) asks the sentinels before each connect, checks with ROLE that the node it reached
 * is a master, and drops the connection to ask again when the node says it is not one any more
 * (READONLY, LOADING, MASTERDOWN) or goes away. The reply parsers are pure (unit-tested with
 * hand-built replies); redis_sentinel_resolve() does the lookup, synchronously and bounded. */
#ifndef TYTO_REDIS_SENTINEL_H
#define TYTO_REDIS_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

struct config;
struct config_redis_target;

/* Splits one redis.sentinels entry, "HOST:PORT" (a name or an IPv4 address) or "[IPV6]:PORT",
 * into host (no brackets, hostcap bytes at most with the NUL) and port 1..65535. Returns 0, or -1
 * with a message in err. */
int redis_sentinel_parse_addr(const char *s, char *host, size_t hostcap, int *port, char *err, size_t errlen);

/* Reads the reply to SENTINEL get-master-addr-by-name: [ip, port] as two strings. Returns 0 with
 * host and port set; -1 with a message in err for a nil reply (the sentinel watches no master of
 * that name), an error reply (its text) or any other shape. host/port are untouched on error. */
int redis_sentinel_parse_master(const redisReply *reply, char *host, size_t hostcap, int *port,
                                char *err, size_t errlen);

/* Reads a ROLE reply: 1 if its first element is "master", 0 for another role ("slave",
 * "sentinel"), -1 for an error reply or a malformed one. */
int redis_sentinel_parse_role(const redisReply *reply);

/* True for the error replies of a node that is no longer (or not yet) a usable master: READONLY
 * (a write reached a replica: a failover demoted it), LOADING (a restarted node reading its
 * dataset) and MASTERDOWN (a replica that lost its master). The owner drops its connection and
 * asks the sentinels again. */
bool redis_sentinel_failover_error(const redisReply *reply);

/* True when cfg asks for Sentinel mode (redis.sentinels and redis.master_name both set). */
bool redis_sentinel_enabled(const struct config *cfg);

/* Asks the sentinels of cfg in turn (the one that answered last first) for the master's address,
 * each with a connect and read deadline of redis.timeout_ms, and writes it into t->host/t->port
 * (t->unix_socket false; password and db from redis.url stay). Logs one line when the master
 * differs from the one this process resolved before. Blocks for at most
 * count x 2 x redis.timeout_ms, and returns as soon as one sentinel answers (loopback: about a
 * millisecond). Returns 0, or -1 with a message in err (no sentinel answered, none knows the
 * name). A no-op returning 0 when Sentinel mode is off. */
int redis_sentinel_resolve(const struct config *cfg, struct config_redis_target *t, char *err, size_t errlen);

/* "host:port" ("[v6]:port") of the master this process resolved last; "" before the first. */
const char *redis_sentinel_master(void);

#endif
