/* One Redis Cluster primary as the router (storage/redis_router.c) sees it: a Redis storage
 * (storage/redis.c) connected to host:port that, instead of failing a request a node did not
 * run (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY), finishes it with STORAGE_ERR_REDIRECT and
 * keeps what the node said for the router to read inside that callback. */
#ifndef TYTO_REDIS_NODE_H
#define TYTO_REDIS_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/redis_cluster.h"
#include "storage/storage.h"

struct redis_node_redirect {
    enum redis_cluster_err kind;           /* the first MOVED/ASK, else the first other kind */
    struct redis_cluster_redirect at;      /* MOVED/ASK: slot and address */
    unsigned served;                       /* replies of commands with keys that ran on the node
                                            * (its keys were there): 0 = none of them was */
    bool snatched;                         /* an announce's completed move counted (any status):
                                            * a resend must not carry the event again, and
                                            * private mode's snatch call is the router's to send */
};

/* A node storage at host:port (redis.url gives only the password; database 0). */
struct storage *storage_redis_node_new(const struct config *cfg, struct event_base *base, const char *host,
                                       int port, char *err, size_t errlen);

/* The announce, each command preceded by ASKING (the answer to an ASK redirection). */
int storage_redis_node_announce_asking(struct storage *st, const struct announce_req *req,
                                       storage_announce_cb *cb, void *arg);

/* A scrape's commands per hash: j = 0 ZCOUNT seeders, 1 ZCOUNT leechers, 2 HGET downloaded; in
 * private mode 0 is EXISTS of the torrent's rules and the others follow (1, 2, 3). masks (NULL:
 * all) gives, per hash, the commands to send (bit j); asking puts ASKING before each. A node that
 * did not run some of them finishes with STORAGE_ERR_REDIRECT and still a reply: what the others
 * answered, 0 for the rest (so each (hash, command) is answered once, by whichever node has the
 * key: during a migration a key the old node lacks has moved, or never existed). */
int storage_redis_node_scrape(struct storage *st, const struct scrape_req *req, const uint8_t *masks, bool asking,
                              storage_scrape_cb *cb, void *arg);

/* Inside a scrape's callback: per hash, bit j set if the node did not run command j, and
 * REDIS_NODE_UNAPPROVED if its EXISTS said the torrent is not registered (private mode). */
#define REDIS_NODE_UNAPPROVED 0x40
const uint8_t *storage_redis_node_scrape_flags(const struct storage *st);

/* One command of the router's own (CLUSTER SLOTS) on the node's connection, with the same
 * deadline as a request: cb gets the reply (valid during the call; NULL unless status is 0). */
typedef void storage_redis_node_raw_cb(const redisReply *reply, int status, void *arg);
int storage_redis_node_raw(struct storage *st, int argc, const char **argv, storage_redis_node_raw_cb *cb,
                           void *arg);

/* True while its connection is up (connected and set up). */
bool storage_redis_node_connected(const struct storage *st);

/* Inside a callback: what the node said of that request (kind OTHER: no redirection). */
void storage_redis_node_report(const struct storage *st, struct redis_node_redirect *out);

/* Private mode on a cluster: a node's announce leaves out the {private} calls, which the router
 * sends to the {private} slot's owner with these. FCALL tyto_account, status only (cb runs once);
 * FCALL tyto_snatch, not waited for; and one half of a lookup: the user's (FCALL tyto_lookup),
 * or the torrent's rules (HMGET), filling those fields of the reply only. */
int storage_redis_node_account(struct storage *st, const struct announce_req *req, bool asking,
                               storage_health_cb *cb, void *arg);
void storage_redis_node_snatch(struct storage *st, const struct announce_req *req);
int storage_redis_node_lookup(struct storage *st, const struct storage_lookup_req *req, bool user, bool asking,
                              storage_lookup_cb *cb, void *arg);

/* Redis's clock as this node's connection measured it: true with the offset (ms to add to this
 * host's clock) once known. A new node storage seeded with a sibling's offset serves at once
 * instead of failing its first requests until its own TIME answered (one cluster, one clock,
 * within the cluster's own skew). */
bool storage_redis_node_clock(const struct storage *st, int64_t *offset_ms);
void storage_redis_node_seed_clock(struct storage *st, int64_t offset_ms);

#endif
