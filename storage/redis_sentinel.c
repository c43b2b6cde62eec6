/* See storage/redis_sentinel.h. The lookup follows Sentinel's client guidelines
 * (redis.io/docs/reference/sentinel-clients): ask the sentinels one after another, keep the one
 * that answered first in line for next time, connect to the address it gave, and confirm with ROLE
 * on that connection (the owners do, with redis_sentinel_parse_role). */
#include "storage/redis_sentinel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "lib/log.h"

/* Per process, not per owner: the three connection owners of one worker share the order of the
 * sentinels and the last master they heard of, so a switch is logged once per process. */
static int sentinel_first;                   /* index of the sentinel that answered last */
static char sentinel_last[CONFIG_STR_MAX + 16]; /* "host:port" of the master resolved last */

int redis_sentinel_parse_addr(const char *s, char *host, size_t hostcap, int *port, char *err, size_t errlen)
{
    const char *h = s, *colon;
    size_t hlen;
    char *end;
    long p;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "'%.64s' is not [IPV6]:PORT", s);
            return -1;
        }
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (memchr(h, '[', hlen) != NULL || strspn(h, "0123456789abcdefABCDEF:.") < hlen) {
            snprintf(err, errlen, "'%.64s' is not an IPv6 address in brackets", s);
            return -1;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "'%.64s' has no :PORT", s);
            return -1;
        }
        hlen = (size_t)(colon - s);
        /* A host name or an IPv4 address; a bare IPv6 address is ambiguous without brackets. */
        if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") < hlen) {
            snprintf(err, errlen, "'%.64s': the host must be a name or an IPv4 address (IPv6 in brackets)", s);
            return -1;
        }
    }
    if (hlen == 0 || hlen >= hostcap) {
        snprintf(err, errlen, "'%.64s' has no usable host", s);
        return -1;
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || p < 1 || p > 65535) {
        snprintf(err, errlen, "the port in '%.64s' must be 1 to 65535", s);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

int redis_sentinel_parse_master(const redisReply *reply, char *host, size_t hostcap, int *port,
                                char *err, size_t errlen)
{
    const redisReply *h, *p;
    char buf[8];
    char *end;
    long v;

    if (reply == NULL) {
        snprintf(err, errlen, "no reply");
        return -1;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        snprintf(err, errlen, "no master of that name is watched");
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%.*s", (int)(reply->len > 200 ? 200 : reply->len), reply->str);
        return -1;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        snprintf(err, errlen, "not an [ip, port] reply");
        return -1;
    }
    h = reply->element[0];
    p = reply->element[1];
    if (h == NULL || p == NULL || h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING ||
        h->len == 0 || h->len >= hostcap || memchr(h->str, '\0', h->len) != NULL ||
        p->len == 0 || p->len >= sizeof(buf)) {
        snprintf(err, errlen, "not an [ip, port] reply");
        return -1;
    }
    memcpy(buf, p->str, p->len);
    buf[p->len] = '\0';
    errno = 0;
    v = strtol(buf, &end, 10);
    if (buf[0] < '0' || buf[0] > '9' || *end != '\0' || errno != 0 || v < 1 || v > 65535) {
        snprintf(err, errlen, "bad port '%s' in the reply", buf);
        return -1;
    }
    memcpy(host, h->str, h->len);
    host[h->len] = '\0';
    *port = (int)v;
    return 0;
}

int redis_sentinel_parse_role(const redisReply *reply)
{
    const redisReply *e;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
        return -1;
    e = reply->element[0];
    if (e == NULL || (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS))
        return -1;
    return e->len == 6 && memcmp(e->str, "master", 6) == 0 ? 1 : 0;
}

bool redis_sentinel_failover_error(const redisReply *reply)
{
    static const char *const words[] = { "READONLY", "LOADING", "MASTERDOWN" };

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || reply->str == NULL)
        return false;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);

        if (reply->len >= n && memcmp(reply->str, words[i], n) == 0 &&
            (reply->len == n || reply->str[n] == ' '))
            return true;
    }
    return false;
}

bool redis_sentinel_enabled(const struct config *cfg)
{
    return cfg->redis_sentinels_count > 0 && cfg->redis_master_name[0] != '\0';
}

/* Asks one sentinel (after AUTH with password, unless ""). Returns 0 with host/port, or -1 with a
 * message. */
static int sentinel_ask(const char *addr, const char *name, const char *password, int timeout_ms, char *host,
                        size_t hostcap, int *port, char *err, size_t errlen)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    char shost[CONFIG_SENTINEL_ADDR_MAX], msg[256];
    const char *argv[] = { "SENTINEL", "get-master-addr-by-name", name };
    redisContext *c;
    redisReply *reply;
    int sport, rc = -1;

    if (redis_sentinel_parse_addr(addr, shost, sizeof(shost), &sport, err, errlen) < 0)
        return -1;
    c = redisConnectWithTimeout(shost, sport, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
        goto out;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "cannot set a timeout");
        goto out;
    }
    if (password[0] != '\0') {
        const char *auth[] = { "AUTH", password };

        reply = redisCommandArgv(c, 2, auth, NULL);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            /* The reply names the problem (WRONGPASS, or "AUTH <password> called without any
             * password configured"), never the password. */
            snprintf(err, errlen, "AUTH (redis.sentinel_password): %s",
                     reply ? reply->str : c->errstr[0] ? c->errstr : "no reply");
            if (reply)
                freeReplyObject(reply);
            goto out;
        }
        freeReplyObject(reply);
    }
    reply = redisCommandArgv(c, 3, argv, NULL);
    if (reply == NULL) {
        snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "no reply");
        goto out;
    }
    rc = redis_sentinel_parse_master(reply, host, hostcap, port, msg, sizeof(msg));
    if (rc < 0)
        snprintf(err, errlen, "%s", msg);
    freeReplyObject(reply);
out:
    if (c != NULL)
        redisFree(c);
    return rc;
}

const char *redis_sentinel_master(void)
{
    return sentinel_last;
}

int redis_sentinel_resolve(const struct config *cfg, struct config_redis_target *t, char *err, size_t errlen)
{
    int n = cfg->redis_sentinels_count;
    int timeout_ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 1000;
    char msg[256] = "";

    if (!redis_sentinel_enabled(cfg))
        return 0;
    for (int k = 0; k < n; k++) {
        int i = (sentinel_first + k) % n;
        char host[sizeof(t->host)], now[CONFIG_STR_MAX + 16];
        int port;

        if (sentinel_ask(cfg->redis_sentinels[i], cfg->redis_master_name, cfg->redis_sentinel_password,
                         timeout_ms, host, sizeof(host), &port, msg, sizeof(msg)) < 0) {
            log_debug("redis sentinel %s: %s", cfg->redis_sentinels[i], msg);
            continue;
        }
        sentinel_first = i;
        if (strchr(host, ':') != NULL)
            snprintf(now, sizeof(now), "[%s]:%d", host, port);
        else
            snprintf(now, sizeof(now), "%s:%d", host, port);
        if (strcmp(now, sentinel_last) != 0) {
            if (sentinel_last[0] != '\0')
                log_info("redis sentinel %s: master '%s' is now at %s (was %s)", cfg->redis_sentinels[i],
                         cfg->redis_master_name, now, sentinel_last);
            else
                log_info("redis sentinel %s: master '%s' is at %s", cfg->redis_sentinels[i],
                         cfg->redis_master_name, now);
            snprintf(sentinel_last, sizeof(sentinel_last), "%s", now);
        }
        t->unix_socket = false;
        snprintf(t->host, sizeof(t->host), "%s", host);
        t->port = port;
        return 0;
    }
    snprintf(err, errlen, "no sentinel of %d knows master '%s' (last: %s)", n, cfg->redis_master_name, msg);
    return -1;
}
