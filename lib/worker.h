/* One worker process: an event loop serving HTTP announces, scrapes and health checks on the
 * listening sockets it inherited from the master, with its own storage connection. */
#ifndef TYTO_WORKER_H
#define TYTO_WORKER_H

#include "lib/config.h"

struct metrics;

/* Serves on fds (already listening) until SIGTERM, then stops accepting, answers the
 * requests in flight (bounded by shutdown.timeout_s) and returns 0; returns 1 if it could not
 * start. metrics may be NULL; slot is this worker's index in it. */
struct ratelimit;
struct peercap;

/* rl: the host's shared rate-limit counters, or NULL; pc: the host's shared table of ports per
 * (address, swarm) for swarm.max_peers_per_address, or NULL (no cap).
 * admin_fd: the admin.listen socket (/metrics, /stats, /healthz), or -1. SIGTERM and SIGUSR1 may
 * arrive blocked: they are unblocked once their handlers are installed. */
int worker_run(const struct config *cfg, const int *fds, int nfds, struct metrics *metrics, int slot,
               struct ratelimit *rl, struct peercap *pc, int admin_fd);

#endif
