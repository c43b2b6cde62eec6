/* See lib/redis_conn.h. */
#include "lib/redis_conn.h"

#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "lib/config.h"
#include "lib/log.h"
#include "storage/redis_functions.h"
#include "storage/redis_sentinel.h"

/* ROLE's reply on a Sentinel-mode connection: a node that is not a master (the sentinels'
 * answer went stale) is let go; the owner's disconnect callback clears it and the next use
 * asks the sentinels again. */
static void redis_conn_role_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    if (reply != NULL && redis_sentinel_parse_role(reply) != 1) {
        log_warn("redis: the node the sentinels named is not a master (ROLE): reconnecting");
        redisAsyncDisconnect(ac);
    }
}

redisAsyncContext *redis_conn_open(const struct config *cfg, struct event_base *base, void *data,
                                   redisConnectCallback *on_connect, redisDisconnectCallback *on_disconnect)
{
    struct config_redis_target t;
    char err[256];
    redisAsyncContext *ac;

    if (config_parse_redis_url(cfg->redis_url, &t, err, sizeof(err)) < 0)
        return NULL;
    if (redis_sentinel_resolve(cfg, &t, err, sizeof(err)) < 0) {
        log_warn("redis sentinel: %s", err);
        return NULL;
    }
    ac = t.unix_socket ? redisAsyncConnectUnix(t.path) : redisAsyncConnect(t.host, t.port);
    if (ac == NULL)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    if (redisLibeventAttach(ac, base) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (t.password[0] != '\0') {
        const char *argv[] = { "AUTH", t.password };
        redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, NULL);
    }
    if (t.db != 0)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", t.db);
    if (redis_sentinel_enabled(cfg))
        redisAsyncCommand(ac, redis_conn_role_cb, NULL, "ROLE");
    redis_conn_load_library(ac);
    return ac;
}

bool redis_conn_library_missing(const redisReply *reply)
{
    static const char missing[] = "ERR Function not found";

    return reply->type == REDIS_REPLY_ERROR && reply->str &&
           strncmp(reply->str, missing, sizeof(missing) - 1) == 0;
}

void redis_conn_check_failover(redisAsyncContext *ac, const redisReply *reply)
{
    if (!redis_sentinel_failover_error(reply) || (ac->c.flags & REDIS_DISCONNECTING))
        return;
    log_warn("redis: %s: reconnecting", reply->str);
    redisAsyncDisconnect(ac);
}

void redis_conn_load_library(redisAsyncContext *ac)
{
    const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", redis_functions_lua };

    redisAsyncCommandArgv(ac, NULL, NULL, 4, argv, NULL);
}
