/* The storage seam's two shared pieces: storage_new() picks the backend the configuration names,
 * and storage_status_err() turns a callback status into the failure reason a worker sends. The
 * backends themselves live in storage/redis.c and storage/memory.c. */
#include "storage/storage.h"

#include <stdio.h>

#include "lib/config.h"

struct storage *storage_new(const struct config *cfg, struct event_base *base, char *err, size_t errlen)
{
    switch (cfg->storage) {
    case CONFIG_STORAGE_REDIS:
        return cfg->redis_cluster ? storage_redis_cluster_new(cfg, base, err, errlen)
                                  : storage_redis_new(cfg, base, err, errlen);
    case CONFIG_STORAGE_MEMORY:
        return storage_memory_new(cfg, base, err, errlen);
    }
    snprintf(err, errlen, "unknown storage backend %d", (int)cfg->storage);
    return NULL;
}

enum announce_err storage_status_err(int status)
{
    switch (status) {
    case STORAGE_OK:
        return ANNOUNCE_OK;
    case STORAGE_ERR_UNAVAILABLE:
        return ANNOUNCE_ERR_STORAGE_UNAVAILABLE;
    case STORAGE_ERR_TIMEOUT:
        return ANNOUNCE_ERR_STORAGE_TIMEOUT;
    case STORAGE_ERR_FULL:
        return ANNOUNCE_ERR_STORAGE_FULL;
    default:
        return ANNOUNCE_ERR_STORAGE_INTERNAL;
    }
}
