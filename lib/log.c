/* Levelled logging: "2026-11-25T11:20:03Z [1234] warn: message" on one line, written with one
 * write(2) so lines from many workers sharing a file do not interleave. */
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static struct {
    enum config_log_level level;
    int fd;                     /* 2 (stderr) or the opened file */
    char path[CONFIG_STR_MAX];  /* "" for stderr */
} log_state = { LOG_LEVEL_INFO, STDERR_FILENO, "" };

static int log_open(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int log_init(enum config_log_level level, const char *path, char *err, size_t errlen)
{
    log_state.level = level;
    if (!path || !*path) {
        if (log_state.fd != STDERR_FILENO)
            close(log_state.fd);
        log_state.fd = STDERR_FILENO;
        log_state.path[0] = '\0';
        return 0;
    }
    int fd = log_open(path);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open log file: %s", path, strerror(errno));
        return -1;
    }
    if (log_state.fd != STDERR_FILENO)
        close(log_state.fd);
    log_state.fd = fd;
    snprintf(log_state.path, sizeof(log_state.path), "%s", path);
    return 0;
}

int log_reopen(void)
{
    if (!log_state.path[0])
        return 0;
    int fd = log_open(log_state.path);
    if (fd < 0)
        return -1;
    /* dup2 keeps the descriptor number, so nothing holding it needs to know. */
    dup2(fd, log_state.fd);
    close(fd);
    return 0;
}

void log_set_level(enum config_log_level level)
{
    log_state.level = level;
}

int log_enabled(enum config_log_level level)
{
    return level <= log_state.level;
}

void log_msg(enum config_log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02dZ [%d] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)getpid(), config_log_level_name(level));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t rc = write(log_state.fd, line, len);
    (void)rc; /* nowhere left to report a failing log */
}
