/* The admin listener's management API (see lib/admin_api.h). Routes, all JSON:
 *   GET    /api/users                          list of users
 *   POST   /api/users          {"name": "..", "expires_days": N}   the new user, with passkey (201)
 *   GET    /api/users/NAME                     the user
 *   PUT|POST /api/users/NAME   {"enabled": b, "can_leech": b, "expires_days": N}  (any of them)
 *   POST   /api/users/NAME/enable|disable      the user
 *   POST   /api/users/NAME/rekey               the user with the new passkey
 *   GET    /api/torrents/HEX                   the torrent's rules
 *   PUT|POST /api/torrents/HEX {"freeleech": b, "neutral": b, "up": "X", "down": "Y"}  registers
 *   DELETE /api/torrents/HEX                   unregisters
 * Errors: {"error": "..."} with 400 (bad request or JSON, with the reason), 401 (token), 404
 * (route, user, torrent; and every route when admin.token is empty), 405, 409 (exists), 503
 * (Redis down or past redis.timeout_ms), 502 (any other Redis error). The FCALLs are built by
 * lib/private_admin.c; several for one request (PUT user) are pipelined and answered by the last. */
#include "lib/admin_api.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sodium.h>

#include "lib/http.h"
#include "lib/log.h"
#include "lib/private_admin.h"
#include "lib/redis_conn.h"
#include "storage/redis_functions.h"

#define ADMIN_MAX_CALLS 3              /* FCALLs one request may need (PUT user: 3 fields) */

struct admin_api {
    struct event_base *base;
    const struct config *cfg;
    struct redis_conns *conns;         /* one Redis, or a cluster's primaries (lib/redis_conn.h) */
    uint64_t reload_ms;                /* monotonic: the last FUNCTION LOAD after "not found" */
    bool reload_warned;                /* ... warned about, once a connection */
    unsigned char token_hash[crypto_generichash_BYTES];
};

struct admin_call {
    struct admin_api *api;
    struct http_request *req;          /* NULL once answered */
    struct event *timer;
    int outstanding;                   /* FCALL replies still to come */
    int ok_status;                     /* 200, or 201 for a new user */
    int err_status;                    /* the first error's status, 0 if none */
    char err[160];
    struct evbuffer *last;             /* the last successful reply's JSON */
};

/* ---- replies ------------------------------------------------------------------------------- */

/* {"error": "<text>"} with text escaped (it may quote Redis). */
static void admin_reply_error(struct http_request *req, int status, const char *text)
{
    struct evbuffer *b = http_reply_body(req);

    evbuffer_add(b, "{\"error\":\"", 10);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            evbuffer_add_printf(b, "\\u%04x", *p);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"}\n", 3);
    http_reply(req, status, "application/json");
}

static void admin_call_finish(struct admin_call *c)
{
    if (c->req) {
        if (c->err_status) {
            admin_reply_error(c->req, c->err_status, c->err);
        } else {
            evbuffer_add_buffer(http_reply_body(c->req), c->last);
            evbuffer_add(http_reply_body(c->req), "\n", 1);
            http_reply(c->req, c->ok_status, "application/json");
        }
        c->req = NULL;
    }
    if (c->outstanding == 0) {
        event_free(c->timer);
        evbuffer_free(c->last);
        free(c);
    }
}

/* Maps a Redis error reply ("ERR tyto: no such user") to a status and a message. */
static int admin_error_status(const char *msg)
{
    if (strncmp(msg, "ERR tyto: ", 10) != 0)
        return 502;
    msg += 10;
    if (strncmp(msg, "no such ", 8) == 0)
        return 404;
    if (strcmp(msg, "user exists") == 0 || strcmp(msg, "passkey in use") == 0)
        return 409;
    return 400;
}

static uint64_t admin_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Redis 7's answer to an FCALL of a function it lacks: the library was flushed after the
 * connect loaded it. It is loaded again on this connection, so the calls after it find it; at
 * most once a second. */
static void admin_check_library(struct admin_api *a, redisAsyncContext *ac, const redisReply *reply)
{
    uint64_t now_ms;

    if (!redis_conn_library_missing(reply))
        return;
    now_ms = admin_now_ms();
    if (a->reload_ms != 0 && now_ms - a->reload_ms < 1000)
        return;
    if (!a->reload_warned)
        log_warn("admin: the function library is gone (FUNCTION FLUSH?): loading it again");
    a->reload_warned = true;
    a->reload_ms = now_ms;
    redis_conn_load_library(ac);
}

static void admin_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct admin_call *c = privdata;
    redisReply *reply = r;

    if (reply && c->api) {
        admin_check_library(c->api, ac, reply);
        redis_conns_check(ac, reply);      /* a lost master, or a cluster's MOVED: the next call goes right */
    }
    c->outstanding--;
    if (c->err_status == 0) {
        if (reply == NULL) {
            c->err_status = 503;
            snprintf(c->err, sizeof(c->err), "storage unavailable");
        } else if (reply->type == REDIS_REPLY_ERROR) {
            c->err_status = admin_error_status(reply->str);
            snprintf(c->err, sizeof(c->err), "%s",
                     strncmp(reply->str, "ERR tyto: ", 10) == 0 ? reply->str + 10 : reply->str);
        } else if (reply->type == REDIS_REPLY_STRING) {
            evbuffer_drain(c->last, evbuffer_get_length(c->last));
            evbuffer_add(c->last, reply->str, reply->len);
        } else {
            c->err_status = 502;
            snprintf(c->err, sizeof(c->err), "unexpected reply from Redis");
        }
    }
    if (c->outstanding == 0)
        admin_call_finish(c);
}

static void admin_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admin_call *c = arg;

    /* Answered now; the struct lives on until Redis replies (or the connection is freed). */
    if (c->req)
        admin_reply_error(c->req, 503, "storage timeout");
    c->req = NULL;
}

/* ---- the connections ----------------------------------------------------------------------- */

/* A connection went: its calls were answered (NULL replies: 503); the next call reconnects. */
static void admin_lost(void *data, const redisAsyncContext *ac)
{
    struct admin_api *a = data;
    (void)ac;

    a->reload_ms = 0;
    a->reload_warned = false;
}

/* Sends the calls (n of them) for req and answers it when the last replies. */
static void admin_send(struct admin_api *a, struct http_request *req, struct private_call *calls, int n,
                       int ok_status)
{
    struct admin_call *c;
    int ms = a->cfg->redis_timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->last = evbuffer_new()) == NULL ||
        (c->timer = evtimer_new(a->base, admin_on_timeout, c)) == NULL) {
        if (c && c->last)
            evbuffer_free(c->last);
        free(c);
        admin_reply_error(req, 503, "out of memory");
        return;
    }
    c->api = a;
    c->req = req;
    c->ok_status = ok_status;
    for (int i = 0; i < n; i++) {
        /* Each call to its first key's node: {private} for a user, the swarm's slot for a
         * torrent (on a cluster they are different primaries; on one Redis, the same one). */
        redisAsyncContext *ac = redis_conns_for_key(a->conns, calls[i].keys[0]);

        if (ac == NULL ||
            redisAsyncCommandArgv(ac, admin_on_reply, c, calls[i].argc, (const char **)calls[i].argv, NULL) !=
                REDIS_OK) {
            c->err_status = 503;
            snprintf(c->err, sizeof(c->err), "storage unavailable");
            break;
        }
        c->outstanding++;
    }
    if (c->outstanding == 0) {
        admin_call_finish(c);
        return;
    }
    evtimer_add(c->timer, &tv);
}

/* ---- routes -------------------------------------------------------------------------------- */

/* The body as a flat JSON object (an empty body is {}). n fields, or -1 after answering 400. */
static int admin_body(struct http_request *req, struct pjson_field *f, int max)
{
    size_t len;
    const char *b = http_request_body(req, &len), *p = b, *end = b + len;
    char err[128], msg[160];
    int n;

    if (len == 0)
        return 0;
    n = pjson_object(&p, end, b, f, max, err, sizeof(err));
    if (n >= 0) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
            p++;
        if (p != end) {
            snprintf(err, sizeof(err), "trailing data at byte %td", p - b);
            n = -1;
        }
    }
    if (n < 0) {
        snprintf(msg, sizeof(msg), "malformed JSON body: %s", err);
        admin_reply_error(req, 400, msg);
    }
    return n;
}

/* Members other than the allowed ones are refused: a typo must not pass silently. */
static int admin_only(struct http_request *req, const struct pjson_field *f, int n, const char *const *allowed)
{
    for (int i = 0; i < n; i++) {
        bool ok = false;
        for (const char *const *k = allowed; *k; k++)
            ok = ok || strcmp(f[i].key, *k) == 0;
        if (!ok) {
            char msg[96];
            snprintf(msg, sizeof(msg), "unknown member '%.40s'", f[i].key);
            admin_reply_error(req, 400, msg);
            return -1;
        }
    }
    return 0;
}

/* "expires_days": N (0 = never, 1..36500) into an absolute unix time. 0, or -1 after 400. */
static int admin_expires(struct http_request *req, const struct pjson_field *x, long long now, long long *out)
{
    char *e;
    long long days;

    if (x->type != PJSON_NUMBER || (days = strtoll(x->text, &e, 10), *e != '\0') || days < 0 || days > 36500) {
        admin_reply_error(req, 400, "expires_days must be an integer from 0 (never) to 36500");
        return -1;
    }
    *out = days ? now + days * 86400 : 0;
    return 0;
}

static int admin_bool(struct http_request *req, const struct pjson_field *x, const char *name, bool *out)
{
    char msg[64];

    if (x->type != PJSON_BOOL) {
        snprintf(msg, sizeof(msg), "%.32s must be true or false", name);
        admin_reply_error(req, 400, msg);
        return -1;
    }
    *out = strcmp(x->text, "true") == 0;
    return 0;
}

static void admin_users(struct admin_api *a, struct http_request *req, const char *method)
{
    static const char *const allowed[] = { "name", "expires_days", NULL };
    struct private_call call;
    struct pjson_field f[4];
    const struct pjson_field *name, *exp;
    char passkey[PRIVATE_PASSKEY_LEN + 1];
    long long now = (long long)time(NULL), expires = 0;
    int n;

    if (strcmp(method, "GET") == 0) {
        private_call_user_list(&call, a->cfg->redis_prefix);
        admin_send(a, req, &call, 1, 200);
        return;
    }
    if (strcmp(method, "POST") != 0) {
        admin_reply_error(req, 405, "GET or POST");
        return;
    }
    if ((n = admin_body(req, f, 4)) < 0 || admin_only(req, f, n, allowed) < 0)
        return;
    name = pjson_get(f, n, "name");
    if (name == NULL || name->type != PJSON_STRING || !private_valid_name(name->text)) {
        admin_reply_error(req, 400, "name must be a user name (1-64 of A-Z a-z 0-9 _ . -)");
        return;
    }
    if ((exp = pjson_get(f, n, "expires_days")) != NULL && admin_expires(req, exp, now, &expires) < 0)
        return;
    if (private_new_passkey(passkey) < 0) {
        admin_reply_error(req, 503, "libsodium failed");
        return;
    }
    private_call_user_add(&call, a->cfg->redis_prefix, name->text, passkey, expires, now);
    admin_send(a, req, &call, 1, 201);
}

static void admin_user(struct admin_api *a, struct http_request *req, const char *method, const char *name,
                       const char *action)
{
    static const char *const allowed[] = { "enabled", "can_leech", "expires_days", NULL };
    struct private_call calls[ADMIN_MAX_CALLS];
    struct pjson_field f[4];
    char passkey[PRIVATE_PASSKEY_LEN + 1], num[24];
    int n, nc = 0;

    if (!private_valid_name(name)) {
        admin_reply_error(req, 404, "not a user name");
        return;
    }
    if (action != NULL) {
        if (strcmp(method, "POST") != 0) {
            admin_reply_error(req, 405, "POST");
            return;
        }
        if (strcmp(action, "enable") == 0 || strcmp(action, "disable") == 0) {
            private_call_user_set(&calls[0], a->cfg->redis_prefix, name, "enabled", action[0] == 'e' ? "1" : "0");
        } else if (strcmp(action, "rekey") == 0) {
            if (private_new_passkey(passkey) < 0) {
                admin_reply_error(req, 503, "libsodium failed");
                return;
            }
            private_call_user_rekey(&calls[0], a->cfg->redis_prefix, name, passkey);
        } else {
            admin_reply_error(req, 404, "no such route");
            return;
        }
        admin_send(a, req, calls, 1, 200);
        return;
    }
    if (strcmp(method, "GET") == 0) {
        private_call_user_show(&calls[0], a->cfg->redis_prefix, name);
        admin_send(a, req, calls, 1, 200);
        return;
    }
    if (strcmp(method, "PUT") != 0 && strcmp(method, "POST") != 0) {
        admin_reply_error(req, 405, "GET, PUT or POST");
        return;
    }
    if ((n = admin_body(req, f, 4)) < 0 || admin_only(req, f, n, allowed) < 0)
        return;
    for (int i = 0; i < n; i++) {
        bool b;
        if (strcmp(f[i].key, "expires_days") == 0) {
            long long expires;
            if (admin_expires(req, &f[i], (long long)time(NULL), &expires) < 0)
                return;
            snprintf(num, sizeof(num), "%lld", expires);
            private_call_user_set(&calls[nc++], a->cfg->redis_prefix, name, "expires", num);
        } else {
            if (admin_bool(req, &f[i], f[i].key, &b) < 0)
                return;
            private_call_user_set(&calls[nc++], a->cfg->redis_prefix, name, f[i].key, b ? "1" : "0");
        }
    }
    if (nc == 0)                       /* nothing to change: the user as it is */
        private_call_user_show(&calls[nc++], a->cfg->redis_prefix, name);
    admin_send(a, req, calls, nc, 200);
}

static void admin_torrent(struct admin_api *a, struct http_request *req, const char *method, const char *arg)
{
    static const char *const allowed[] = { "freeleech", "neutral", "up", "down", NULL };
    struct private_call call;
    struct pjson_field f[6];
    const struct pjson_field *x;
    char hex[PRIVATE_HEX_LEN + 1];
    bool freeleech = false, neutral = false;
    const char *mult[2] = { "1", "1" }, *names[2] = { "up", "down" };
    int n;

    if (private_parse_hex(arg, hex) < 0) {
        admin_reply_error(req, 404, "not an info_hash (40 hex digits)");
        return;
    }
    if (strcmp(method, "GET") == 0) {
        private_call_torrent_show(&call, a->cfg->redis_prefix, hex);
    } else if (strcmp(method, "DELETE") == 0) {
        private_call_torrent_remove(&call, a->cfg->redis_prefix, hex);
    } else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        if ((n = admin_body(req, f, 6)) < 0 || admin_only(req, f, n, allowed) < 0)
            return;
        if ((x = pjson_get(f, n, "freeleech")) && admin_bool(req, x, "freeleech", &freeleech) < 0)
            return;
        if ((x = pjson_get(f, n, "neutral")) && admin_bool(req, x, "neutral", &neutral) < 0)
            return;
        for (int i = 0; i < 2; i++) {
            if ((x = pjson_get(f, n, names[i])) == NULL)
                continue;
            if ((x->type != PJSON_STRING && x->type != PJSON_NUMBER) || !private_valid_multiplier(x->text)) {
                admin_reply_error(req, 400, "up and down must be decimal multipliers such as \"1\", \"0.5\" or 2");
                return;
            }
            mult[i] = x->text;
        }
        private_call_torrent_add(&call, a->cfg->redis_prefix, hex, (long long)time(NULL), freeleech, neutral,
                                 mult[0], mult[1]);
    } else {
        admin_reply_error(req, 405, "GET, PUT, POST or DELETE");
        return;
    }
    admin_send(a, req, &call, 1, 200);
}

/* 1 if the request carries "Authorization: Bearer <admin.token>". Both sides are hashed to a
 * fixed length first, so that the comparison's time says nothing about either's length. */
static bool admin_authorized(const struct admin_api *a, const struct http_request *req)
{
    size_t len;
    const char *h = http_request_header(req, "Authorization", &len);
    unsigned char got[crypto_generichash_BYTES];

    if (h == NULL || len < 7 || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    crypto_generichash(got, sizeof(got), (const unsigned char *)h + 7, len - 7, NULL, 0);
    return sodium_memcmp(got, a->token_hash, sizeof(got)) == 0;
}

void admin_api_handle(struct admin_api *a, struct http_request *req)
{
    size_t len;
    const char *path = http_request_path(req, &len), *method = http_request_method(req);
    char buf[160], *parts[4] = { NULL, NULL, NULL, NULL };
    int np = 0;

    if (a == NULL || a->cfg->admin_token[0] == '\0') {
        admin_reply_error(req, 404, "the admin API is off: set admin.token (TYTO_ADMIN_TOKEN)");
        return;
    }
    if (!admin_authorized(a, req)) {
        admin_reply_error(req, 401, "missing or wrong bearer token");
        return;
    }
    if (len >= sizeof(buf)) {
        admin_reply_error(req, 404, "no such route");
        return;
    }
    memcpy(buf, path, len);
    buf[len] = '\0';
    /* "/api/a/b/c" -> parts "a", "b", "c" (a trailing '/' is not a route). */
    for (char *s = buf + 5; np < 4;) {
        char *slash = strchr(s, '/');
        parts[np++] = s;
        if (!slash)
            break;
        *slash = '\0';
        s = slash + 1;
    }
    if (np == 1 && strcmp(parts[0], "users") == 0)
        admin_users(a, req, method);
    else if ((np == 2 || np == 3) && strcmp(parts[0], "users") == 0)
        admin_user(a, req, method, parts[1], np == 3 ? parts[2] : NULL);
    else if (np == 2 && strcmp(parts[0], "torrents") == 0)
        admin_torrent(a, req, method, parts[1]);
    else
        admin_reply_error(req, 404, "no such route");
}

struct admin_api *admin_api_new(struct event_base *base, const struct config *cfg)
{
    struct admin_api *a;

    if (sodium_init() < 0 || (a = calloc(1, sizeof(*a))) == NULL)
        return NULL;
    a->base = base;
    a->cfg = cfg;
    if (!(a->conns = redis_conns_new(cfg, base, a, admin_lost))) {
        free(a);
        return NULL;
    }
    crypto_generichash(a->token_hash, sizeof(a->token_hash), (const unsigned char *)cfg->admin_token,
                       strlen(cfg->admin_token), NULL, 0);
    return a;
}

void admin_api_free(struct admin_api *a)
{
    if (a == NULL)
        return;
    redis_conns_free(a->conns);        /* waiting calls get a NULL reply: 503 */
    sodium_memzero(a->token_hash, sizeof(a->token_hash));
    free(a);
}
