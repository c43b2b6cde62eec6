/* The slot map, read synchronously: see storage/redis_cluster_seed.h. */
#include "storage/redis_cluster_seed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "storage/redis_sentinel.h"

redisContext *redis_cluster_connect(const struct config *cfg, const char *host, int port, char *err,
                                    size_t errlen)
{
    int timeout_ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 1000;
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    struct config_redis_target t;
    char msg[256];
    redisContext *c;

    if (config_parse_redis_url(cfg->redis_url, &t, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "redis.url: %s", msg);
        return NULL;
    }
    c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "%s:%d: %s", host, port, c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "%s:%d: cannot set a timeout", host, port);
        goto fail;
    }
    if (t.password[0] != '\0') {
        const char *argv[] = { "AUTH", t.password };
        redisReply *r = redisCommandArgv(c, 2, argv, NULL);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;

        if (!ok)
            snprintf(err, errlen, "%s:%d: AUTH failed: %s", host, port,
                     r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr[0] ? c->errstr : "no reply");
        if (r)
            freeReplyObject(r);
        if (!ok)
            goto fail;
    }
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}

/* Asks one node. Returns 0 with *out filled, or -1 with a message. */
static int redis_cluster_ask(const struct config *cfg, const char *host, int port, struct redis_cluster_map *out,
                             char *err, size_t errlen)
{
    const char *argv[] = { "CLUSTER", "SLOTS" };
    redisContext *c = redis_cluster_connect(cfg, host, port, err, errlen);
    redisReply *r;
    char msg[160];
    int rc = -1;

    if (!c)
        return -1;
    r = redisCommandArgv(c, 2, argv, NULL);
    if (r == NULL) {
        snprintf(err, errlen, "%s:%d: %s", host, port, c->errstr[0] ? c->errstr : "no reply");
    } else if (redis_cluster_map_parse(r, host, out, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "%s:%d: CLUSTER SLOTS: %s", host, port, msg);
    } else if (out->nnodes == 0) {
        snprintf(err, errlen, "%s:%d: the cluster has no slots assigned yet", host, port);
    } else {
        rc = 0;
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return rc;
}

int redis_cluster_fetch_map(const struct config *cfg, const struct redis_cluster_map *known,
                            struct redis_cluster_map *out, char *err, size_t errlen)
{
    struct redis_cluster_map *m = malloc(sizeof(*m));
    char msg[256] = "no address to ask";
    int rc = -1;

    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; known && i < known->nnodes && rc < 0; i++) {
        if (redis_cluster_ask(cfg, known->node[i].host, known->node[i].port, m, msg, sizeof(msg)) == 0)
            rc = 0;
        else
            log_debug("redis cluster: %s", msg);
    }
    for (int i = 0; i < cfg->redis_nodes_count && rc < 0; i++) {
        char host[CONFIG_SENTINEL_ADDR_MAX];
        int port;

        if (redis_sentinel_parse_addr(cfg->redis_nodes[i], host, sizeof(host), &port, msg, sizeof(msg)) == 0 &&
            redis_cluster_ask(cfg, host, port, m, msg, sizeof(msg)) == 0)
            rc = 0;
        else
            log_debug("redis cluster: %s", msg);
    }
    if (rc == 0)
        memcpy(out, m, sizeof(*m));
    else
        snprintf(err, errlen, "no cluster node answered with a slot map (last: %s)", msg);
    free(m);
    return rc;
}
