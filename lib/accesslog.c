/* Buffered access log of one worker. The loop never waits for it: a pipe or a terminal on
 * standard output (docker, a shell) is written through a descriptor of our own opened
 * non-blocking, a socket (journald) with MSG_DONTWAIT; when the reader falls behind, lines wait
 * in a bounded buffer and are written once the output takes more, and past the bound new lines
 * are dropped and counted. Every write is whole lines: to a pipe or socket at most PIPE_BUF
 * bytes (atomic on a pipe, so workers sharing it never interleave inside a line), to a file one
 * write(2) with O_APPEND. */
#include "lib/accesslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/log.h"

#define ACCESSLOG_FLUSH_BYTES 65536
#define ACCESSLOG_MAX_BYTES (1024 * 1024) /* held while the output does not keep up; then drop */
#define ACCESSLOG_FLUSH_MS 250
#define ACCESSLOG_WARN_S 60                /* at most one "lines dropped" warning this often */
#define ACCESSLOG_PASSKEY_LEN 32           /* private mode: a passkey is 32 letters and digits */
#define ACCESSLOG_MAX_TARGET 512           /* longer targets are cut: a log line stays readable */
#define ACCESSLOG_LINE_MAX (160 + 4 * ACCESSLOG_MAX_TARGET) /* below PIPE_BUF: whole-line writes */

enum accesslog_kind {
    ACCESSLOG_FILE,                    /* a regular file: plain write(2), disks do not "block" */
    ACCESSLOG_PIPE,                    /* a pipe or character device, our own O_NONBLOCK fd */
    ACCESSLOG_SOCKET,                  /* send(MSG_DONTWAIT): no flag on a shared description */
};

struct accesslog {
    int fd;
    enum accesslog_kind kind;
    char *path;                        /* NULL for standard output */
    struct evbuffer *buf;
    struct event *timer;
    struct event *wev;                 /* pipe or socket: waits until it takes more */
    int timer_armed;
    int wev_armed;
    uint64_t dropped;                  /* lines dropped so far */
    uint64_t dropped_warned;           /* ... as of the last warning */
    int64_t warned_s;                  /* when that warning was logged */
    bool private_mode;                 /* redact every passkey-shaped run in the target */
};

static int accesslog_open_fd(const char *path)
{
    /* O_NONBLOCK: a FIFO must not stall the start (nor, later, the writes). */
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
}

static uint64_t accesslog_count_lines(struct evbuffer *b)
{
    size_t len = evbuffer_get_length(b);
    const char *p = len ? (const char *)evbuffer_pullup(b, -1) : NULL;
    uint64_t n = 0;
    if (!p)
        return 0;
    for (const char *end = p + len; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
        n++;
    return n;
}

/* How many bytes at the buffer's start one write takes: all of it for a file, else the whole
 * lines within PIPE_BUF. */
static size_t accesslog_chunk(struct accesslog *al)
{
    size_t len = evbuffer_get_length(al->buf);
    if (al->kind == ACCESSLOG_FILE || len <= PIPE_BUF)
        return len;
    const char *p = (const char *)evbuffer_pullup(al->buf, PIPE_BUF);
    const char *nl = p ? memrchr(p, '\n', PIPE_BUF) : NULL;
    return nl ? (size_t)(nl - p) + 1 : PIPE_BUF;
}

/* Writes what the output takes without waiting; if it is full, waits for it to be writable. */
static void accesslog_flush(struct accesslog *al)
{
    size_t chunk;
    while ((chunk = accesslog_chunk(al)) > 0) {
        const void *p = evbuffer_pullup(al->buf, (ev_ssize_t)chunk);
        ssize_t n;
        if (!p)
            n = -1;
        else if (al->kind == ACCESSLOG_SOCKET)
            n = send(al->fd, p, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
            n = write(al->fd, p, chunk);
        if (n > 0) {
            evbuffer_drain(al->buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && al->wev) {
            if (!al->wev_armed && event_add(al->wev, NULL) == 0)
                al->wev_armed = 1;
            return;
        }
        /* A full disk or a closed stdout must not stop the tracker: drop the lines. */
        al->dropped += accesslog_count_lines(al->buf);
        evbuffer_drain(al->buf, evbuffer_get_length(al->buf));
        return;
    }
}

static void accesslog_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct accesslog *al = arg;
    al->timer_armed = 0;
    if (!al->wev_armed)
        accesslog_flush(al);
}

static void accesslog_on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct accesslog *al = arg;
    al->wev_armed = 0;
    accesslog_flush(al);
}

/* Standard output: a pipe or terminal gets a description of its own (opening /proc/self/fd/1
 * makes one), so O_NONBLOCK does not surprise the master, the other workers or the shell that
 * share the original. Returns the fd (STDOUT_FILENO itself for files and sockets), or -1. */
static int accesslog_stdout(enum accesslog_kind *kind)
{
    struct stat st;
    int fd;
    if (fstat(STDOUT_FILENO, &st) < 0)
        return -1;
    if (S_ISSOCK(st.st_mode)) {
        *kind = ACCESSLOG_SOCKET;
        return STDOUT_FILENO;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        *kind = ACCESSLOG_FILE;
        return STDOUT_FILENO;
    }
    *kind = ACCESSLOG_PIPE;
    fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    /* No /proc: set the flag on the shared description, which is still better than blocking. */
    fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct accesslog *accesslog_open(struct event_base *base, const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct accesslog *al = calloc(1, sizeof(*al));
    if (!al)
        goto fail;
    al->fd = -1;
    if (strcmp(path, "-") == 0) {
        al->fd = accesslog_stdout(&al->kind);
    } else {
        al->path = strdup(path);
        if (!al->path)
            goto fail;
        al->fd = accesslog_open_fd(path);
        if (al->fd >= 0 && fstat(al->fd, &st) == 0 && !S_ISREG(st.st_mode))
            al->kind = S_ISSOCK(st.st_mode) ? ACCESSLOG_SOCKET : ACCESSLOG_PIPE;
    }
    if (al->fd < 0)
        goto fail;
    al->buf = evbuffer_new();
    al->timer = evtimer_new(base, accesslog_on_timer, al);
    if (!al->buf || !al->timer)
        goto fail;
    if (al->kind != ACCESSLOG_FILE) {
        al->wev = event_new(base, al->fd, EV_WRITE, accesslog_on_writable, al);
        if (!al->wev)
            goto fail;
    }
    return al;
fail:
    snprintf(err, errlen, "%s: cannot open access log: %s", path, strerror(errno));
    accesslog_free(al);
    return NULL;
}

/* "a.b.c.d:port", "[v6]:port", or the address alone when the port is unknown (0: a client
 * named by X-Forwarded-For). */
static void accesslog_format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        port = ntohs(sin->sin_port);
        if (port)
            snprintf(buf, cap, "%s:%u", ip, port);
        else
            snprintf(buf, cap, "%s", ip);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        port = ntohs(sin6->sin6_port);
        if (port)
            snprintf(buf, cap, "[%s]:%u", ip, port);
        else
            snprintf(buf, cap, "%s", ip);
    } else {
        snprintf(buf, cap, "-");
    }
}

/* Private mode's passkey is the first path segment (/<passkey>/announce): a secret, never
 * written. The first segment is replaced by "<redacted>" when another segment follows it, or when
 * it alone has a passkey's shape (32 letters and digits). Returns how many bytes of target the
 * redaction replaces (0: none). */
static size_t accesslog_secret_len(const char *target, size_t len)
{
    size_t end = 1, i;
    bool alnum = true;

    if (len < 2 || target[0] != '/')
        return 0;
    while (end < len && target[end] != '/' && target[end] != '?')
        end++;
    if (end > 1 && end < len && target[end] == '/')
        return end;
    for (i = 1; i < end; i++)
        if (!((target[i] >= '0' && target[i] <= '9') || (target[i] >= 'a' && target[i] <= 'z') ||
              (target[i] >= 'A' && target[i] <= 'Z')))
            alnum = false;
    return alnum && end == 33 ? end : 0;
}

static bool accesslog_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Private mode: a passkey may sit anywhere in a client's target (//<pk>/announce,
 * /tracker/<pk>/announce, ?passkey=<pk>), so every run of exactly 32 letters and digits bounded
 * by other bytes (or the ends) is a secret. Returns the run's length at i when it is one, else 0. */
static size_t accesslog_run_secret(const char *target, size_t len, size_t i)
{
    size_t j = i;

    if (i > 0 && accesslog_alnum((unsigned char)target[i - 1]))
        return 0;
    while (j < len && accesslog_alnum((unsigned char)target[j]))
        j++;
    return j - i == ACCESSLOG_PASSKEY_LEN ? j - i : 0;
}

void accesslog_set_private(struct accesslog *al, bool on)
{
    al->private_mode = on;
}

void accesslog_write(struct accesslog *al, int64_t now_s, const struct sockaddr *client, int status,
                     size_t bytes, uint64_t latency_us, const char *target, size_t target_len)
{
    char line[ACCESSLOG_LINE_MAX], when[32], who[64];
    struct tm tm;
    time_t t = (time_t)now_s;
    size_t n;

    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    accesslog_format_addr(client, who, sizeof(who));
    if (target_len > ACCESSLOG_MAX_TARGET)
        target_len = ACCESSLOG_MAX_TARGET;
    int k = snprintf(line, sizeof(line), "%s %d %s %d %zu %llu ", when, (int)getpid(), who, status,
                     bytes, (unsigned long long)latency_us);
    n = k < 0 ? 0 : (size_t)k;
    size_t secret = accesslog_secret_len(target, target_len);
    if (secret > 0) {
        memcpy(line + n, "/<redacted>", 11);
        n += 11;
        target += secret;
        target_len -= secret;
    }
    /* The target is client-controlled: keep it to one printable line. The line has room for
     * every byte escaped. */
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < target_len && n + 5 < sizeof(line); i++) {
        unsigned char c = (unsigned char)target[i];
        size_t run = al->private_mode ? accesslog_run_secret(target, target_len, i) : 0;
        if (run > 0) {
            memcpy(line + n, "<redacted>", 10);
            n += 10;
            i += run - 1;
            continue;
        }
        /* lib/http.c ends the path with a NUL where the '?' was (the query follows it): the
         * worker passes both as one target, so a NUL is that '?' (a request line holds no NUL). */
        if (c == 0) {
            line[n++] = '?';
        } else if (c < 0x20 || c >= 0x7f) {
            line[n++] = '\\';
            line[n++] = 'x';
            line[n++] = hex[c >> 4];
            line[n++] = hex[c & 15];
        } else {
            line[n++] = (char)c;
        }
    }
    line[n++] = '\n';

    if (evbuffer_get_length(al->buf) + n > ACCESSLOG_MAX_BYTES) {
        /* The output does not keep up: dropping a line beats holding the loop or memory. */
        al->dropped++;
        if (al->warned_s == 0 || now_s - al->warned_s >= ACCESSLOG_WARN_S) {
            log_warn("access log: the output does not keep up; %llu lines dropped (%llu in all)",
                     (unsigned long long)(al->dropped - al->dropped_warned),
                     (unsigned long long)al->dropped);
            al->dropped_warned = al->dropped;
            al->warned_s = now_s;
        }
        return;
    }
    evbuffer_add(al->buf, line, n);
    if (al->wev_armed)
        return; /* flushed when the output takes more */
    if (evbuffer_get_length(al->buf) >= ACCESSLOG_FLUSH_BYTES) {
        accesslog_flush(al);
    } else if (!al->timer_armed) {
        struct timeval tv = { 0, ACCESSLOG_FLUSH_MS * 1000 };
        evtimer_add(al->timer, &tv);
        al->timer_armed = 1;
    }
}

uint64_t accesslog_dropped(const struct accesslog *al)
{
    return al->dropped;
}

int accesslog_reopen(struct accesslog *al)
{
    if (!al->wev_armed)
        accesslog_flush(al);
    if (!al->path)
        return 0;
    int fd = accesslog_open_fd(al->path);
    if (fd < 0)
        return -1;
    if (al->wev_armed) {
        event_del(al->wev); /* it watches the old file */
        al->wev_armed = 0;
    }
    dup2(fd, al->fd);
    close(fd);
    accesslog_flush(al);
    return 0;
}

void accesslog_free(struct accesslog *al)
{
    if (!al)
        return;
    if (al->buf) {
        accesslog_flush(al); /* once, without waiting: what the output does not take is lost */
        al->dropped += accesslog_count_lines(al->buf);
        evbuffer_free(al->buf);
    }
    if (al->dropped)
        log_warn("access log: %llu lines dropped in all (the output did not keep up)",
                 (unsigned long long)al->dropped);
    if (al->wev)
        event_free(al->wev);
    if (al->timer)
        event_free(al->timer);
    if (al->fd > STDERR_FILENO)
        close(al->fd);
    free(al->path);
    free(al);
}
