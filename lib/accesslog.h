/* The access log: one line a request, "TIME PID CLIENT STATUS BYTES LATENCY_US TARGET", written
 * by each worker to a file or standard output. Lines are buffered in the worker and flushed a few
 * times a second (and when the buffer fills), so logging costs no write(2) per request. */
#ifndef TYTO_ACCESSLOG_H
#define TYTO_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct accesslog;

/* path "-" is standard output. Returns NULL with a message in err. */
struct accesslog *accesslog_open(struct event_base *base, const char *path, char *err, size_t errlen);

void accesslog_write(struct accesslog *al, int64_t now_s, const struct sockaddr *client, int status,
                     size_t bytes, uint64_t latency_us, const char *target, size_t target_len);

/* Flushes and reopens the file (SIGUSR1). */
int accesslog_reopen(struct accesslog *al);

/* Flushes and closes; NULL is a no-op. */
void accesslog_free(struct accesslog *al);

#endif
