/* The Redis connections of the admin API (lib/admin_api.c) and the statistics (lib/stats.c):
 * opened from redis.url on a worker's event loop, with AUTH, SELECT and the function library
 * (redis/tyto.lua) queued first, so that every command after them sees the library. The
 * announce path's connection (storage/redis.c) has reconnection and deadlines of its own. */
#ifndef TYTO_REDIS_CONN_H
#define TYTO_REDIS_CONN_H

#include <stdbool.h>

#include <hiredis/async.h>

struct config;
struct event_base;

/* data goes in ac->data. NULL if the connection cannot even start (a bad URL, no memory). */
redisAsyncContext *redis_conn_open(const struct config *cfg, struct event_base *base, void *data,
                                   redisConnectCallback *on_connect, redisDisconnectCallback *on_disconnect);

/* True for Redis 7's answer to an FCALL of a function it lacks: the library was flushed
 * (FUNCTION FLUSH, a restore) since the connection loaded it. */
bool redis_conn_library_missing(const redisReply *reply);

/* Lets ac go (redisAsyncDisconnect: once its pending replies are in) when reply says its node
 * is no longer a usable master: READONLY, LOADING, MASTERDOWN (storage/redis_sentinel.h). The
 * owner's next use opens a new connection, through the sentinels in Sentinel mode. Reply
 * callbacks call it with every non-NULL reply. */
void redis_conn_check_failover(redisAsyncContext *ac, const redisReply *reply);

/* FUNCTION LOAD REPLACE of the library on ac (its reply is not waited for). */
void redis_conn_load_library(redisAsyncContext *ac);

/* ---- a set of connections: one per primary (redis.cluster), or the one Redis -------------------
 * lib/stats.c and the statistics aggregator talk to Redis through this: without redis.cluster it
 * holds the single connection redis_conn_open makes (node 0, every key's), so nothing changes;
 * with redis.cluster it holds the slot map (storage/redis_cluster.h) and one connection per
 * primary, each opened with AUTH and the function library, and answers which one serves a key.
 *
 * The map is read once with redis_cluster_fetch_map, which BLOCKS the caller's event loop (a
 * worker's) for up to redis.timeout_ms per address asked: at the first use, and again only when
 * every node of the map failed to answer an asynchronous refresh. A refresh is asked for by a
 * MOVED or READONLY reply (redis_conns_check) or a lost connection, and is a CLUSTER SLOTS sent
 * asynchronously (at most one at a time) to the owner the last MOVED named (it knows its own
 * slots; a one-question connection if the map does not list it), else to the map's nodes in
 * turn; the new map replaces the old
 * when it comes, keeping the connections of the primaries still in it and letting the others go
 * (their pending replies are delivered first). The map's generation counts these replacements. */
struct redis_conns;

/* Called when one of the connections (ac) goes, after hiredis answered its pending commands with
 * NULL. data is redis_conns_new's. */
typedef void redis_conns_lost_fn(void *data, const redisAsyncContext *ac);

struct redis_conns *redis_conns_new(const struct config *cfg, struct event_base *base, void *data,
                                    redis_conns_lost_fn *lost);
/* Disconnects everything (pending commands are answered NULL, lost is called for each). */
void redis_conns_free(struct redis_conns *c);

/* The nodes: 1 without a cluster; with one, the primaries of the map (read now if there is none,
 * blocking: see above), 0 if it cannot be read. */
unsigned redis_conns_count(struct redis_conns *c);
unsigned redis_conns_generation(const struct redis_conns *c);
/* The connection of node i (< redis_conns_count), opened now if there is none; NULL if it cannot
 * be started. */
redisAsyncContext *redis_conns_node(struct redis_conns *c, unsigned i);
/* The node that serves key's slot (0 without a cluster), or -1 (no map, an unowned slot). */
int redis_conns_node_of(struct redis_conns *c, const char *key);
/* Node i's address as the map has it ("none" without one), for log lines. */
void redis_conns_node_name(const struct redis_conns *c, int i, char *buf, size_t len);
/* redis_conns_node of redis_conns_node_of: the connection to send key's commands on, or NULL. */
redisAsyncContext *redis_conns_for_key(struct redis_conns *c, const char *key);

/* The map is to be read again at the next use (a caller saw a node stop answering: a hung
 * primary, which a cluster fails over without anything telling these connections). */
void redis_conns_stale(struct redis_conns *c);

/* What reply callbacks of these connections call with every non-NULL reply (ac->data is the
 * set): redis_conn_check_failover, and with a cluster a refresh of the map on MOVED (the command
 * was not run: its caller counts it as failed, and the next one goes to the new owner; the
 * connection stays, as the node still owns the slots the map gives it, or the refresh lets it
 * go). ASK and
 * TRYAGAIN (a slot in migration) fail the one command too; the map is right, so it stays. */
void redis_conns_check(redisAsyncContext *ac, const redisReply *reply);

#endif
