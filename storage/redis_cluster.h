/* The pure core of Redis Cluster routing (issue 12): the key -> slot hash, the slot map read from
 * a CLUSTER SLOTS reply, and the cluster errors a router must act on (MOVED, ASK, TRYAGAIN, ...).
 * No I/O, no clock, no async hiredis: the router that owns one connection per primary (storage/)
 * calls these, and the unit tests drive them with hand-built replies.
 *
 * Why resending after a redirection never double-counts (Redis Cluster specification, "MOVED
 * Redirection", "ASK redirection", "Multi-keys operations"): a node decides where a command's keys
 * live before it runs the command. MOVED, ASK, TRYAGAIN and CLUSTERDOWN are answers from that
 * check, so the node did not execute the command; READONLY (a write sent to what is now a replica)
 * is refused before execution the same way. A router may therefore resend exactly the commands
 * answered with one of these, and no others: in a pipeline each command is checked on its own, so
 * during a migration some commands of one request may have run on the old node (their keys were
 * still there) while others got ASK. Inside MULTI a redirected command is not queued and EXEC then
 * fails with EXECABORT: nothing of that transaction ran, so the whole MULTI ... EXEC is resent (ASK:
 * one ASKING before MULTI). Safe is not ordered: a resent command runs after whatever was already
 * sent to the new node for that slot (another announce of the same peer, say); a router that needs
 * the order holds a slot's later commands until its resends are answered. */
#ifndef TYTO_REDIS_CLUSTER_H
#define TYTO_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define REDIS_CLUSTER_SLOTS 16384      /* fixed by the cluster protocol */
#define REDIS_CLUSTER_MAX_NODES 64     /* primaries a map holds; owner[] indexes fit in a byte */
#define REDIS_CLUSTER_HOST_MAX 64      /* bytes of a host name or address, without the NUL */
#define REDIS_CLUSTER_ID_LEN 40        /* a node id: 40 lowercase hex characters */
#define REDIS_CLUSTER_UNOWNED 0xff     /* owner[] value of a slot no primary serves */
/* The command-line tools (tyto swarm, tyto user ...), which block: how many times a command a
 * cluster redirects is run in all, and the pause before running it again when the redirection
 * cannot be followed at once (TRYAGAIN, CLUSTERDOWN; `tyto swarm` also after ASK, as it reruns
 * a whole command of many calls rather than one call with ASKING). */
#define REDIS_CLUSTER_CLI_TRIES 4
#define REDIS_CLUSTER_CLI_PAUSE_MS 250

/* The slot of key (len bytes, binary-safe): CRC16/XMODEM mod 16384 of the hash tag if the key has
 * one (the bytes between the first '{' and the first '}' after it, when not empty), else of the
 * whole key. Every key of one swarm ("<prefix>{<40 hex>}:seeders" ...) therefore has one slot. */
uint16_t redis_cluster_keyslot(const char *key, size_t len);

struct redis_cluster_node {
    char host[REDIS_CLUSTER_HOST_MAX + 1]; /* as CLUSTER SLOTS gave it, or the seed host */
    uint16_t port;
    char id[REDIS_CLUSTER_ID_LEN + 1];     /* "" if the reply carried no id (Redis < 4) */
};

struct redis_cluster_map {
    unsigned nnodes;                       /* primaries in node[], each listed once */
    struct redis_cluster_node node[REDIS_CLUSTER_MAX_NODES];
    uint8_t owner[REDIS_CLUSTER_SLOTS];    /* index into node[], or REDIS_CLUSTER_UNOWNED */
};

/* Parses a CLUSTER SLOTS reply, an array of [start, end, [host, port, id, ...], replica, ...], into
 * *out (primaries only: tyto writes, so it never routes to replicas). A NULL or empty host means
 * "the address the reply came from" (Redis 7's unknown endpoint, older nodes that do not know
 * their own address), and seed_host is used for it; "?" (a hostname was preferred but the node has
 * none) is refused, as there is nothing to connect to. Strict: any other shape, a slot out of
 * range, a range in two entries, one address with two ids, or more than REDIS_CLUSTER_MAX_NODES
 * primaries returns -1 with a message in err. An error reply (cluster support disabled) is
 * refused with its text. An empty array is valid: a cluster with no slots assigned.
 * Returns 0; *out is untouched on error, so the caller keeps routing with the old map. */
int redis_cluster_map_parse(const redisReply *slots_reply, const char *seed_host,
                            struct redis_cluster_map *out, char *err, size_t errlen);

/* The node index that serves slot, or -1 (unowned, or slot >= REDIS_CLUSTER_SLOTS). */
int redis_cluster_node_for_slot(const struct redis_cluster_map *m, uint16_t slot);

/* The index of the primary at host:port, or -1: where a redirection's target is in the map. */
int redis_cluster_map_find(const struct redis_cluster_map *m, const char *host, uint16_t port);

/* True if every slot has an owner, i.e. the cluster can take any key. */
bool redis_cluster_map_complete(const struct redis_cluster_map *m);

enum redis_cluster_err {
    REDIS_CLUSTER_ERR_OTHER,       /* not a cluster error: the command's own answer, deliver it */
    REDIS_CLUSTER_ERR_MOVED,       /* the slot lives elsewhere now: refresh the map, resend there */
    REDIS_CLUSTER_ERR_ASK,         /* the slot is migrating and the key is not here: ASKING, then
                                    * resend to the target once; the map is unchanged */
    REDIS_CLUSTER_ERR_TRYAGAIN,    /* a multi-key command whose keys are split by a migration:
                                    * resend after a short wait */
    REDIS_CLUSTER_ERR_CLUSTERDOWN, /* the cluster is failed or the slot unbound: not run; heals
                                    * after a failover (seconds), so a router may fail fast */
    REDIS_CLUSTER_ERR_READONLY,    /* a write reached a replica (a failover demoted the node we
                                    * knew as primary): refresh the map, resend */
    REDIS_CLUSTER_ERR_CROSSSLOT,   /* keys of one command in different slots: a key-building bug,
                                    * not run, and resending would fail the same way */
};

/* The kind of an error reply (err is reply->str, without the '-'), from its first word. */
enum redis_cluster_err redis_cluster_classify(const char *err, size_t len);

/* True if a command answered with kind was not executed and resending it can succeed: MOVED, ASK,
 * TRYAGAIN, CLUSTERDOWN and READONLY (see the top of this file for why that is safe). False for
 * OTHER (the command ran, or may have) and CROSSSLOT (it would never succeed). */
bool redis_cluster_resend_safe(enum redis_cluster_err kind);

struct redis_cluster_redirect {
    enum redis_cluster_err kind;           /* REDIS_CLUSTER_ERR_MOVED or _ASK */
    uint16_t slot;
    char host[REDIS_CLUSTER_HOST_MAX + 1]; /* "" = the host of the node that answered */
    uint16_t port;
};

/* Parses "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381" (len bytes of reply->str). The
 * port follows the last ':', so an IPv6 host needs no brackets ("MOVED 3999 ::1:6381"); an empty
 * host (":6381", Redis 7's unknown endpoint) means the answering node's host. Returns 0 with *out
 * filled, or -1 if err is not exactly such a redirection (other errors, a bad slot or port, a host
 * over REDIS_CLUSTER_HOST_MAX, "?" for a host that has no endpoint); *out is untouched then. */
int redis_cluster_parse_redirect(const char *err, size_t len, struct redis_cluster_redirect *out);

#endif
