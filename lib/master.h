/* The master process: opens the listeners, forks the workers and supervises them. It serves no
 * requests and never talks to Redis. */
#ifndef TYTO_MASTER_H
#define TYTO_MASTER_H

#include "lib/config.h"

/* Runs the master with cfg (already loaded from config_path, or from defaults and the environment
 * when config_path is NULL; reloads read the same source) until SIGTERM/SIGINT, and returns
 * the process exit status: 0 after a clean drain, 1 when start-up failed. */
int master_run(const char *config_path, const struct config *cfg);

#endif
