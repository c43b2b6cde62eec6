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

#endif
