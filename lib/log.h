/* Levelled logging for the master and the workers. Every line carries a timestamp, the level and
 * the pid, so lines of many workers in one file can be told apart. log_reopen() serves SIGUSR1
 * (logrotate). Logging is process-wide state, set once at start-up. */
#ifndef TYTO_LOG_H
#define TYTO_LOG_H

#include "lib/config.h"

/* Sets the level and the destination ("" or NULL: stderr). Returns 0, or -1 with a message. */
int log_init(enum config_log_level level, const char *path, char *err, size_t errlen);

/* Reopens the log file (no-op on stderr). Returns 0 or -1 (errno set; logging carries on). */
int log_reopen(void);

void log_set_level(enum config_log_level level);
int log_enabled(enum config_log_level level);

void log_msg(enum config_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

#endif
