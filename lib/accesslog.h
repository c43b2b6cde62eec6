/* The access log: one line a request, "TIME PID CLIENT STATUS BYTES LATENCY_US TARGET", written
 * by each worker to a file or standard output. Lines are buffered in the worker and flushed a few
 * times a second (and when the buffer fills), so logging costs no write(2) per request. CLIENT
 * is "a.b.c.d:port", "[v6]:port", or the address alone when its port is unknown.
 * The worker never waits for the output: when a pipe or socket reader falls behind, up to 1 MiB
 * of lines wait for it, and further lines are dropped, counted, and warned about (at most once
 * a minute). */
#ifndef TYTO_ACCESSLOG_H
#define TYTO_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct accesslog;

/* path "-" is standard output. Returns NULL with a message in err. */
struct accesslog *accesslog_open(struct event_base *base, const char *path, char *err, size_t errlen);

/* Private mode: every run of exactly 32 letters and digits in a logged target (a passkey's
 * shape, wherever it sits) is written "<redacted>". */
void accesslog_set_private(struct accesslog *al, bool on);

void accesslog_write(struct accesslog *al, int64_t now_s, const struct sockaddr *client, int status,
                     size_t bytes, uint64_t latency_us, const char *target, size_t target_len);

/* Lines dropped so far because the output did not keep up (or failed). */
uint64_t accesslog_dropped(const struct accesslog *al);

/* Flushes and reopens the file (SIGUSR1). */
int accesslog_reopen(struct accesslog *al);

/* Flushes what the output takes at once, and closes; NULL is a no-op. */
void accesslog_free(struct accesslog *al);

#endif
