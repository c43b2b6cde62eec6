/* Buffered access log of one worker. Each flush is one write(2) of whole lines with O_APPEND,
 * so workers sharing a file never interleave inside a line. */
#include "lib/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/net.h"

#define ACCESSLOG_FLUSH_BYTES 65536
#define ACCESSLOG_FLUSH_MS 250
#define ACCESSLOG_MAX_TARGET 512        /* longer targets are cut: a log line stays readable */

struct accesslog {
    int fd;
    char *path;                         /* NULL for standard output */
    struct evbuffer *buf;
    struct event *timer;
    int timer_armed;
};

static int accesslog_open_fd(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void accesslog_flush(struct accesslog *al)
{
    while (evbuffer_get_length(al->buf) > 0) {
        int n = evbuffer_write(al->buf, al->fd);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            /* A full disk or a closed stdout must not stop the tracker: drop the lines. */
            evbuffer_drain(al->buf, evbuffer_get_length(al->buf));
            break;
        }
    }
}

static void accesslog_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct accesslog *al = arg;
    al->timer_armed = 0;
    accesslog_flush(al);
}

struct accesslog *accesslog_open(struct event_base *base, const char *path, char *err, size_t errlen)
{
    struct accesslog *al = calloc(1, sizeof(*al));
    if (!al)
        goto fail;
    al->fd = STDOUT_FILENO;
    if (strcmp(path, "-") != 0) {
        al->path = strdup(path);
        if (!al->path)
            goto fail;
        al->fd = accesslog_open_fd(path);
        if (al->fd < 0)
            goto fail;
    }
    al->buf = evbuffer_new();
    al->timer = evtimer_new(base, accesslog_on_timer, al);
    if (!al->buf || !al->timer)
        goto fail;
    return al;
fail:
    snprintf(err, errlen, "%s: cannot open access log: %s", path, strerror(errno));
    accesslog_free(al);
    return NULL;
}

void accesslog_write(struct accesslog *al, int64_t now_s, const struct sockaddr *client, int status,
                     size_t bytes, uint64_t latency_us, const char *target, size_t target_len)
{
    char when[32], who[64];
    struct tm tm;
    time_t t = (time_t)now_s;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (client)
        net_format_addr(client, who, sizeof(who));
    else
        snprintf(who, sizeof(who), "-");
    if (target_len > ACCESSLOG_MAX_TARGET)
        target_len = ACCESSLOG_MAX_TARGET;
    evbuffer_add_printf(al->buf, "%s %d %s %d %zu %llu ", when, (int)getpid(), who, status, bytes,
                        (unsigned long long)latency_us);
    /* The target is client-controlled: keep it to one printable line. */
    for (size_t i = 0; i < target_len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c < 0x20 || c >= 0x7f)
            evbuffer_add_printf(al->buf, "\\x%02x", c);
        else
            evbuffer_add(al->buf, &target[i], 1);
    }
    evbuffer_add(al->buf, "\n", 1);
    if (evbuffer_get_length(al->buf) >= ACCESSLOG_FLUSH_BYTES) {
        accesslog_flush(al);
    } else if (!al->timer_armed) {
        struct timeval tv = { 0, ACCESSLOG_FLUSH_MS * 1000 };
        evtimer_add(al->timer, &tv);
        al->timer_armed = 1;
    }
}

int accesslog_reopen(struct accesslog *al)
{
    accesslog_flush(al);
    if (!al->path)
        return 0;
    int fd = accesslog_open_fd(al->path);
    if (fd < 0)
        return -1;
    dup2(fd, al->fd);
    close(fd);
    return 0;
}

void accesslog_free(struct accesslog *al)
{
    if (!al)
        return;
    if (al->buf) {
        accesslog_flush(al);
        evbuffer_free(al->buf);
    }
    if (al->timer)
        event_free(al->timer);
    if (al->fd > STDERR_FILENO)
        close(al->fd);
    free(al->path);
    free(al);
}
