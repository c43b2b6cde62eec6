/* `tyto swarm <info_hash>` and `tyto swarms [N]`: an operator's read-only view of the swarms in
 * Redis, with the schema the workers write (README "Redis schema", docs/architecture.md).
 * Synchronous hiredis, one connection, never on the request path. */
#ifndef TYTO_INSPECT_H
#define TYTO_INSPECT_H

#include <stdio.h>

#include <hiredis/hiredis.h>

#include "lib/config.h"

#define INSPECT_SWARMS_DEFAULT 20      /* `tyto swarms` without N */
#define INSPECT_SCAN_COUNT "1000"      /* SCAN's COUNT hint */

/* Runs one inspection command. argv[0] is "swarm" or "swarms", the rest its arguments:
 *   swarm <40 hex digits>   counts, downloaded, and every peer with its role and time left
 *                           (expired members not yet reaped are marked)
 *   swarms [N]              the N busiest swarms by live peers (default 20)
 * Reads cfg->redis_url, redis_prefix and redis_timeout_ms. Writes the report to out and problems
 * to errout. Returns the exit status: 0, 1 (Redis unreachable or failing, unknown swarm) or
 * 2 (usage). */
int inspect_main(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errout);

/* Connects as the workers would (URL, password, database), with redis.timeout_ms (at least one
 * second: this is a person waiting, not a request deadline) for connect and for each command.
 * NULL with a message on errout. The operator commands (inspection, users, torrents) share it. */
redisContext *inspect_connect(const struct config *cfg, FILE *errout);

/* inspect_connect for commands on key: with redis.cluster, to the primary that owns key's slot
 * (the slot map read first); else the one Redis. */
redisContext *inspect_connect_for(const struct config *cfg, const char *key, FILE *errout);

#endif
