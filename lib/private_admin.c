/* Private tracker management (see lib/private_admin.h): checks, passkeys, the FCALL vectors of
 * redis/tyto.lua's management functions, a strict reader for flat JSON, and the CLI
 * (`tyto user ...`, `tyto torrent ...`), which talks to Redis with synchronous hiredis like
 * `tyto swarm` (lib/inspect.c): one connection, never on the request path. */
#include "lib/private_admin.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#include "lib/inspect.h"
#include "storage/redis_cluster.h"
#include "storage/redis_cluster_seed.h"
#include "storage/redis_functions.h"

#define PRIVATE_DAY_S 86400LL
#define PRIVATE_MAX_DAYS 36500LL       /* 100 years: beyond it is surely a typo */

/* ---- checks and passkeys ------------------------------------------------------------------- */

bool private_valid_name(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > PRIVATE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isascii(ch) && isalnum(ch)) && ch != '_' && ch != '.' && ch != '-')
            return false;
    }
    return true;
}

int private_parse_hex(const char *s, char out[PRIVATE_HEX_LEN + 1])
{
    if (strlen(s) != PRIVATE_HEX_LEN)
        return -1;
    for (size_t i = 0; i < PRIVATE_HEX_LEN; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return -1;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[PRIVATE_HEX_LEN] = '\0';
    return 0;
}

int private_new_passkey(char out[PRIVATE_PASSKEY_LEN + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    if (sodium_init() < 0)
        return -1;
    for (int i = 0; i < PRIVATE_PASSKEY_LEN; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[PRIVATE_PASSKEY_LEN] = '\0';
    return 0;
}

bool private_valid_multiplier(const char *s)
{
    size_t i = 0, n = strlen(s);

    if (n == 0 || n > 16 || !isdigit((unsigned char)s[0]))
        return false;
    while (i < n && isdigit((unsigned char)s[i]))
        i++;
    if (i < n && s[i] == '.')
        i++;
    while (i < n && isdigit((unsigned char)s[i]))
        i++;
    return i == n;
}

/* ---- FCALL vectors ------------------------------------------------------------------------- */

static void call_start(struct private_call *c, const char *fn, int nkeys)
{
    static const char *counts[] = { "0", "1", "2", "3" };

    c->argc = 0;
    c->argv[c->argc++] = "FCALL";
    c->argv[c->argc++] = fn;
    c->argv[c->argc++] = counts[nkeys];
}

static void call_key(struct private_call *c, int i, const char *prefix, const char *kind, const char *rest)
{
    snprintf(c->keys[i], PRIVATE_KEY_MAX, "%s{private}:%s%s", prefix, kind, rest);
    c->argv[c->argc++] = c->keys[i];
}

void private_call_user_add(struct private_call *c, const char *prefix, const char *name,
                           const char *passkey, long long expires, long long now)
{
    call_start(c, "tyto_user_add", 3);
    call_key(c, 0, prefix, "user:", name);
    call_key(c, 1, prefix, "passkey:", passkey);
    call_key(c, 2, prefix, "users", "");
    snprintf(c->args[0], PRIVATE_KEY_MAX, "%s", name);
    snprintf(c->args[1], PRIVATE_KEY_MAX, "%s", passkey);
    snprintf(c->nums[0], sizeof(c->nums[0]), "%lld", expires);
    snprintf(c->nums[1], sizeof(c->nums[1]), "%lld", now);
    c->argv[c->argc++] = c->args[0];
    c->argv[c->argc++] = c->args[1];
    c->argv[c->argc++] = c->nums[0];
    c->argv[c->argc++] = c->nums[1];
}

void private_call_user_show(struct private_call *c, const char *prefix, const char *name)
{
    call_start(c, "tyto_user_show", 1);
    call_key(c, 0, prefix, "user:", name);
}

void private_call_user_set(struct private_call *c, const char *prefix, const char *name,
                           const char *field, const char *value)
{
    call_start(c, "tyto_user_set", 1);
    call_key(c, 0, prefix, "user:", name);
    snprintf(c->args[0], PRIVATE_KEY_MAX, "%s", field);
    snprintf(c->args[1], PRIVATE_KEY_MAX, "%s", value);
    c->argv[c->argc++] = c->args[0];
    c->argv[c->argc++] = c->args[1];
}

void private_call_user_rekey(struct private_call *c, const char *prefix, const char *name, const char *passkey)
{
    call_start(c, "tyto_user_rekey", 2);
    call_key(c, 0, prefix, "user:", name);
    call_key(c, 1, prefix, "passkey:", passkey);
    snprintf(c->args[0], PRIVATE_KEY_MAX, "%s", passkey);
    c->argv[c->argc++] = c->args[0];
}

void private_call_user_list(struct private_call *c, const char *prefix)
{
    call_start(c, "tyto_user_list", 1);
    call_key(c, 0, prefix, "users", "");
}

static void call_torrent_key(struct private_call *c, const char *prefix, const char *hex)
{
    snprintf(c->keys[0], PRIVATE_KEY_MAX, "%s{%s}:torrent", prefix, hex);
    c->argv[c->argc++] = c->keys[0];
}

void private_call_torrent_add(struct private_call *c, const char *prefix, const char *hex, long long now,
                              bool freeleech, bool neutral, const char *up, const char *down)
{
    call_start(c, "tyto_torrent_add", 1);
    call_torrent_key(c, prefix, hex);
    snprintf(c->nums[0], sizeof(c->nums[0]), "%lld", now);
    snprintf(c->args[0], PRIVATE_KEY_MAX, "%s", up);
    snprintf(c->args[1], PRIVATE_KEY_MAX, "%s", down);
    c->argv[c->argc++] = c->nums[0];
    c->argv[c->argc++] = freeleech ? "1" : "0";
    c->argv[c->argc++] = neutral ? "1" : "0";
    c->argv[c->argc++] = c->args[0];
    c->argv[c->argc++] = c->args[1];
}

void private_call_torrent_remove(struct private_call *c, const char *prefix, const char *hex)
{
    call_start(c, "tyto_torrent_remove", 1);
    call_torrent_key(c, prefix, hex);
}

void private_call_torrent_show(struct private_call *c, const char *prefix, const char *hex)
{
    call_start(c, "tyto_torrent_show", 1);
    call_torrent_key(c, prefix, hex);
}

/* ---- flat JSON ----------------------------------------------------------------------------- */

static void skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
        (*p)++;
}

static int pjson_fail(char *err, size_t errlen, const char *what, const char *at, const char *start)
{
    snprintf(err, errlen, "%s at byte %td", what, at - start);
    return -1;
}

/* A JSON string at *p (on its '"') into dst (cap bytes, NUL-terminated): escapes decoded, \u to
 * UTF-8 (surrogate pairs are refused: none of our values need them). 0 or -1. */
static int pjson_string(const char **p, const char *end, const char *start, char *dst, size_t cap,
                        char *err, size_t errlen)
{
    size_t n = 0;
    const char *s = *p + 1;

    while (s < end && *s != '"') {
        unsigned char ch = (unsigned char)*s;
        char out[4];
        size_t k = 1;
        if (ch < 0x20)
            return pjson_fail(err, errlen, "control character in a string", s, start);
        if (ch == '\\') {
            if (++s >= end)
                break;
            switch (*s) {
            case '"': case '\\': case '/': out[0] = *s; break;
            case 'b': out[0] = '\b'; break;
            case 'f': out[0] = '\f'; break;
            case 'n': out[0] = '\n'; break;
            case 'r': out[0] = '\r'; break;
            case 't': out[0] = '\t'; break;
            case 'u': {
                unsigned v = 0;
                if (end - s < 5)
                    return pjson_fail(err, errlen, "short \\u escape", s, start);
                for (int i = 1; i <= 4; i++) {
                    char h = s[i];
                    if (!isxdigit((unsigned char)h))
                        return pjson_fail(err, errlen, "bad \\u escape", s, start);
                    v = v * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
                }
                s += 4;
                if (v >= 0xd800 && v <= 0xdfff)
                    return pjson_fail(err, errlen, "surrogate \\u escape", s, start);
                if (v < 0x80) {
                    out[0] = (char)v;
                } else if (v < 0x800) {
                    out[0] = (char)(0xc0 | (v >> 6));
                    out[1] = (char)(0x80 | (v & 0x3f));
                    k = 2;
                } else {
                    out[0] = (char)(0xe0 | (v >> 12));
                    out[1] = (char)(0x80 | ((v >> 6) & 0x3f));
                    out[2] = (char)(0x80 | (v & 0x3f));
                    k = 3;
                }
                break;
            }
            default:
                return pjson_fail(err, errlen, "bad escape", s, start);
            }
        } else {
            out[0] = (char)ch;
        }
        if (n + k >= cap)
            return pjson_fail(err, errlen, "string too long", s, start);
        memcpy(dst + n, out, k);
        n += k;
        s++;
    }
    if (s >= end)
        return pjson_fail(err, errlen, "unterminated string", s, start);
    dst[n] = '\0';
    *p = s + 1;
    return 0;
}

/* A JSON number's text (strict grammar) into dst. 0 or -1. */
static int pjson_number(const char **p, const char *end, const char *start, char *dst, size_t cap,
                        char *err, size_t errlen)
{
    const char *s = *p;

    if (s < end && *s == '-')
        s++;
    if (s < end && *s == '0') {
        s++;
    } else if (s < end && *s >= '1' && *s <= '9') {
        while (s < end && isdigit((unsigned char)*s))
            s++;
    } else {
        return pjson_fail(err, errlen, "bad number", s, start);
    }
    if (s < end && *s == '.') {
        if (++s >= end || !isdigit((unsigned char)*s))
            return pjson_fail(err, errlen, "bad number", s, start);
        while (s < end && isdigit((unsigned char)*s))
            s++;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (s >= end || !isdigit((unsigned char)*s))
            return pjson_fail(err, errlen, "bad number", s, start);
        while (s < end && isdigit((unsigned char)*s))
            s++;
    }
    if ((size_t)(s - *p) >= cap)
        return pjson_fail(err, errlen, "number too long", *p, start);
    memcpy(dst, *p, (size_t)(s - *p));
    dst[s - *p] = '\0';
    *p = s;
    return 0;
}

static bool pjson_word(const char **p, const char *end, const char *w)
{
    size_t n = strlen(w);

    if ((size_t)(end - *p) < n || memcmp(*p, w, n) != 0)
        return false;
    *p += n;
    return true;
}

int pjson_object(const char **p, const char *end, const char *start, struct pjson_field *f, int max,
                 char *err, size_t errlen)
{
    int n = 0;

    skip_ws(p, end);
    if (*p >= end || **p != '{')
        return pjson_fail(err, errlen, "expected a JSON object", *p, start);
    (*p)++;
    skip_ws(p, end);
    if (*p < end && **p == '}') {
        (*p)++;
        return 0;
    }
    for (;;) {
        struct pjson_field tmp, *d = n < max ? &f[n] : &tmp;
        skip_ws(p, end);
        if (*p >= end || **p != '"')
            return pjson_fail(err, errlen, "expected a member name", *p, start);
        if (pjson_string(p, end, start, d->key, sizeof(d->key), err, errlen) < 0)
            return -1;
        skip_ws(p, end);
        if (*p >= end || **p != ':')
            return pjson_fail(err, errlen, "expected ':'", *p, start);
        (*p)++;
        skip_ws(p, end);
        if (*p >= end)
            return pjson_fail(err, errlen, "expected a value", *p, start);
        if (**p == '"') {
            d->type = PJSON_STRING;
            if (pjson_string(p, end, start, d->text, sizeof(d->text), err, errlen) < 0)
                return -1;
        } else if (**p == '{' || **p == '[') {
            return pjson_fail(err, errlen, "nested objects and arrays are not accepted", *p, start);
        } else if (pjson_word(p, end, "true")) {
            d->type = PJSON_BOOL;
            snprintf(d->text, sizeof(d->text), "true");
        } else if (pjson_word(p, end, "false")) {
            d->type = PJSON_BOOL;
            snprintf(d->text, sizeof(d->text), "false");
        } else if (pjson_word(p, end, "null")) {
            d->type = PJSON_NULL;
            d->text[0] = '\0';
        } else {
            d->type = PJSON_NUMBER;
            if (pjson_number(p, end, start, d->text, sizeof(d->text), err, errlen) < 0)
                return -1;
        }
        if (pjson_get(f, n < max ? n : max, d->key) != NULL)
            return pjson_fail(err, errlen, "duplicate member", *p, start);
        if (n >= max)
            return pjson_fail(err, errlen, "too many members", *p, start);
        n++;
        skip_ws(p, end);
        if (*p < end && **p == ',') {
            (*p)++;
            continue;
        }
        if (*p < end && **p == '}') {
            (*p)++;
            return n;
        }
        return pjson_fail(err, errlen, "expected ',' or '}'", *p, start);
    }
}

const struct pjson_field *pjson_get(const struct pjson_field *f, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].key, key) == 0)
            return &f[i];
    return NULL;
}

/* ---- CLI: Redis ---------------------------------------------------------------------------- */

/* Loads the function library on c (a call's functions). false with the message printed. */
static bool cli_load_library(redisContext *c, const char *what, FILE *errout)
{
    redisReply *r = redisCommand(c, "FUNCTION LOAD REPLACE %s", redis_functions_lua);
    bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;

    if (!ok)
        fprintf(errout, "tyto: %s: cannot load the Redis function library (Redis 7 or newer is needed): %s\n",
                what, r ? r->str : c->errstr);
    freeReplyObject(r);
    return ok;
}

/* Connects as `tyto swarm` does, to the node of key (a call's first: {private} for a user, the
 * swarm's slot for a torrent, which on a cluster are different primaries), then loads the
 * function library there. */
static redisContext *cli_connect(const struct config *cfg, const char *key, const char *what, FILE *errout)
{
    redisContext *c = inspect_connect_for(cfg, key, errout);

    if (c != NULL && !cli_load_library(c, what, errout)) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Sends the call on *rcp. With redis.cluster, a call answered MOVED (its slot moved after the
 * map was read) or ASK (mid-migration) was not run: it is sent again to the node named (after
 * ASKING for an ASK), and *rcp replaced by that connection; TRYAGAIN and CLUSTERDOWN are sent
 * again after a pause. Up to REDIS_CLUSTER_CLI_TRIES sends; the last reply is returned (NULL: none). */
static redisReply *cli_send(const struct config *cfg, redisContext **rcp, const struct private_call *c,
                            const char *what, FILE *errout)
{
    for (int attempt = 1;; attempt++) {
        redisReply *r = redisCommandArgv(*rcp, c->argc, (const char **)c->argv, NULL);
        struct redis_cluster_redirect at;
        enum redis_cluster_err kind;
        char err[320];

        if (!cfg->redis_cluster || r == NULL || r->type != REDIS_REPLY_ERROR || attempt == REDIS_CLUSTER_CLI_TRIES)
            return r;
        kind = redis_cluster_classify(r->str, r->len);
        if (kind == REDIS_CLUSTER_ERR_MOVED || kind == REDIS_CLUSTER_ERR_ASK) {
            redisContext *next;

            if (redis_cluster_parse_redirect(r->str, r->len, &at) < 0)
                return r;
            next = redis_cluster_connect(cfg, at.host[0] ? at.host : (*rcp)->tcp.host, at.port, err, sizeof(err));
            if (next == NULL) {
                fprintf(errout, "tyto: %s: redis cluster: %s\n", what, err);
                return r;
            }
            if (!cli_load_library(next, what, errout)) {
                redisFree(next);
                return r;
            }
            redisFree(*rcp);
            *rcp = next;
            if (kind == REDIS_CLUSTER_ERR_ASK)
                freeReplyObject(redisCommand(next, "ASKING"));
        } else if (kind == REDIS_CLUSTER_ERR_TRYAGAIN || kind == REDIS_CLUSTER_ERR_CLUSTERDOWN) {
            usleep(REDIS_CLUSTER_CLI_PAUSE_MS * 1000);
        } else {
            return r;
        }
        freeReplyObject(r);
    }
}

/* Runs the call; returns its JSON text reply (caller frees with freeReplyObject) or NULL with
 * the message printed: "tyto: user show: no such user 'bob'". */
static redisReply *cli_call(const struct config *cfg, redisContext **rcp, const struct private_call *c,
                            const char *what, const char *subject, FILE *errout)
{
    redisReply *r = cli_send(cfg, rcp, c, what, errout);

    if (r == NULL) {
        fprintf(errout, "tyto: %s: redis: %s\n", what, (*rcp)->errstr[0] ? (*rcp)->errstr : "no reply");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        const char *msg = r->str;
        if (strncmp(msg, "ERR tyto: ", 10) == 0)
            msg += 10;
        if (subject)
            fprintf(errout, "tyto: %s: %s '%s'\n", what, msg, subject);
        else
            fprintf(errout, "tyto: %s: %s\n", what, msg);
        freeReplyObject(r);
        return NULL;
    }
    if (r->type != REDIS_REPLY_STRING) {
        fprintf(errout, "tyto: %s: unexpected reply from Redis\n", what);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* ---- CLI: output --------------------------------------------------------------------------- */

static const char *field_text(const struct pjson_field *f, int n, const char *key)
{
    const struct pjson_field *x = pjson_get(f, n, key);
    return x ? x->text : "";
}

static void put_time(FILE *out, const char *unix_s, const char *zero)
{
    long long t = strtoll(unix_s, NULL, 10);
    char buf[64];
    time_t tt = (time_t)t;
    struct tm tm;

    if (t == 0) {
        fprintf(out, "%s\n", zero);
        return;
    }
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
    fprintf(out, "%s\n", buf);
}

static void put_bytes(FILE *out, const char *text)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = strtod(text, NULL);
    int u = 0;

    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        fprintf(out, "%s B\n", text);
    else
        fprintf(out, "%s (%.1f %s)\n", text, v, units[u]);
}

static const char *yes_no(const char *b)
{
    return strcmp(b, "true") == 0 ? "yes" : "no";
}

static void put_user(FILE *out, const struct pjson_field *f, int n)
{
    const char *ratio = field_text(f, n, "ratio");
    fprintf(out, "name        %s\n", field_text(f, n, "name"));
    fprintf(out, "enabled     %s\n", yes_no(field_text(f, n, "enabled")));
    fprintf(out, "can_leech   %s\n", yes_no(field_text(f, n, "can_leech")));
    fprintf(out, "expires     ");
    put_time(out, field_text(f, n, "expires"), "never");
    fprintf(out, "uploaded    ");
    put_bytes(out, field_text(f, n, "uploaded"));
    fprintf(out, "downloaded  ");
    put_bytes(out, field_text(f, n, "downloaded"));
    fprintf(out, "ratio       %s\n", ratio[0] ? ratio : "-");
    fprintf(out, "snatches    %s\n", field_text(f, n, "snatches"));
    fprintf(out, "created     ");
    put_time(out, field_text(f, n, "created"), "-");
}

static void put_torrent(FILE *out, const struct pjson_field *f, int n)
{
    fprintf(out, "info_hash   %s\n", field_text(f, n, "info_hash"));
    fprintf(out, "added       ");
    put_time(out, field_text(f, n, "added"), "-");
    fprintf(out, "freeleech   %s\n", yes_no(field_text(f, n, "freeleech")));
    fprintf(out, "neutral     %s\n", yes_no(field_text(f, n, "neutral")));
    fprintf(out, "up          x%s\n", field_text(f, n, "up"));
    fprintf(out, "down        x%s\n", field_text(f, n, "down"));
}

/* Prints a reply: the JSON itself with --json, else the human form of an object (user or
 * torrent) or, for the list, one line per user. 0, or 1 if the reply is not what we expect. */
static int cli_print(FILE *out, FILE *errout, const char *what, const redisReply *r, bool json,
                     bool is_torrent, bool with_passkey)
{
    struct pjson_field f[16];
    char err[128];
    const char *p = r->str, *end = r->str + r->len;
    int n;

    if (json) {
        fprintf(out, "%.*s\n", (int)r->len, r->str);
        return 0;
    }
    n = pjson_object(&p, end, r->str, f, 16, err, sizeof(err));
    if (n < 0) {
        fprintf(errout, "tyto: %s: bad reply from Redis: %s\n", what, err);
        return 1;
    }
    if (is_torrent)
        put_torrent(out, f, n);
    else
        put_user(out, f, n);
    if (with_passkey)
        fprintf(out, "%s\n", field_text(f, n, "passkey"));   /* the last line: for scripts */
    return 0;
}

static int cli_print_list(FILE *out, FILE *errout, const redisReply *r, bool json)
{
    struct pjson_field f[16];
    char err[128];
    const char *p = r->str, *end = r->str + r->len;
    int count = 0;

    if (json) {
        fprintf(out, "%.*s\n", (int)r->len, r->str);
        return 0;
    }
    skip_ws(&p, end);
    if (p >= end || *p != '[')
        goto bad;
    p++;
    fprintf(out, "%-24s %-7s %-5s %20s %20s %8s %8s  %s\n", "NAME", "ENABLED", "LEECH", "UPLOADED",
            "DOWNLOADED", "RATIO", "SNATCHES", "EXPIRES");
    for (;;) {
        skip_ws(&p, end);
        if (p < end && *p == ']')
            break;
        if (count > 0) {
            if (p >= end || *p != ',')
                goto bad;
            p++;
        }
        int n = pjson_object(&p, end, r->str, f, 16, err, sizeof(err));
        if (n < 0)
            goto bad;
        const char *ratio = field_text(f, n, "ratio");
        fprintf(out, "%-24s %-7s %-5s %20s %20s %8s %8s  ", field_text(f, n, "name"),
                yes_no(field_text(f, n, "enabled")), yes_no(field_text(f, n, "can_leech")),
                field_text(f, n, "uploaded"), field_text(f, n, "downloaded"), ratio[0] ? ratio : "-",
                field_text(f, n, "snatches"));
        put_time(out, field_text(f, n, "expires"), "never");
        count++;
    }
    fprintf(out, "%d user%s\n", count, count == 1 ? "" : "s");
    return 0;
bad:
    fprintf(errout, "tyto: user list: bad reply from Redis\n");
    return 1;
}

/* ---- CLI: commands ------------------------------------------------------------------------- */

struct cli_args {
    const char *pos[4];               /* positional arguments after the command word */
    int npos;
    bool json, freeleech, neutral;
    const char *expires, *up, *down;  /* option values, NULL when not given */
};

static void cli_usage(FILE *out)
{
    fprintf(out,
            "usage: tyto [-c PATH] user add NAME [--expires DAYS]   (prints the passkey on its last line)\n"
            "       tyto [-c PATH] user show NAME [--json]\n"
            "       tyto [-c PATH] user list [--json]\n"
            "       tyto [-c PATH] user enable|disable|rekey NAME [--json]\n"
            "       tyto [-c PATH] user set NAME enabled|can_leech yes|no\n"
            "       tyto [-c PATH] user set NAME expires DAYS|never     (or: user set NAME --expires DAYS)\n"
            "       tyto [-c PATH] torrent add HEX [--freeleech|--neutral] [--up X] [--down Y] [--json]\n"
            "       tyto [-c PATH] torrent remove|show HEX [--json]\n");
}

/* Parses argv (after "user"/"torrent" and the verb). 0, or 2 with a message. */
static int cli_parse(int argc, char **argv, struct cli_args *a, const char *what, FILE *errout)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **val = NULL;
        if (strcmp(s, "--json") == 0)
            a->json = true;
        else if (strcmp(s, "--freeleech") == 0)
            a->freeleech = true;
        else if (strcmp(s, "--neutral") == 0)
            a->neutral = true;
        else if (strcmp(s, "--expires") == 0)
            val = &a->expires;
        else if (strcmp(s, "--up") == 0)
            val = &a->up;
        else if (strcmp(s, "--down") == 0)
            val = &a->down;
        else if (strncmp(s, "--", 2) == 0) {
            fprintf(errout, "tyto: %s: unknown option '%s'\n", what, s);
            return 2;
        } else if (a->npos < 4) {
            a->pos[a->npos++] = s;
        } else {
            fprintf(errout, "tyto: %s: too many arguments\n", what);
            return 2;
        }
        if (val) {
            if (i + 1 >= argc) {
                fprintf(errout, "tyto: %s: %s needs a value\n", what, s);
                return 2;
            }
            *val = argv[++i];
        }
    }
    return 0;
}

/* "DAYS" (1..36500) or "never"/"0" into an absolute unix time (0 = never). 0 or -1. */
static int cli_expires(const char *s, long long now, long long *out)
{
    char *e;
    long long days;

    if (strcmp(s, "never") == 0 || strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    days = strtoll(s, &e, 10);
    if (e == s || *e != '\0' || days < 1 || days > PRIVATE_MAX_DAYS || !isdigit((unsigned char)s[0]))
        return -1;
    *out = now + days * PRIVATE_DAY_S;
    return 0;
}

static int cli_need_name(const struct cli_args *a, int npos, const char *what, FILE *errout)
{
    if (a->npos != npos) {
        fprintf(errout, "tyto: %s: expected %s\n", what, npos == 1 ? "NAME" : "NAME FIELD VALUE");
        return 2;
    }
    if (!private_valid_name(a->pos[0])) {
        fprintf(errout, "tyto: %s: '%s' is not a user name (1-64 of A-Z a-z 0-9 _ . -)\n", what, a->pos[0]);
        return 2;
    }
    return 0;
}

/* Runs c and prints its reply. Returns the exit status. */
static int cli_run(const struct config *cfg, const struct private_call *c, const char *what, const char *subject,
                   bool json, bool is_torrent, bool with_passkey, FILE *out, FILE *errout)
{
    redisContext *rc = cli_connect(cfg, c->keys[0], what, errout);
    redisReply *r;
    int status = 1;

    if (rc == NULL)
        return 1;
    r = cli_call(cfg, &rc, c, what, subject, errout);
    if (r != NULL) {
        status = strcmp(c->argv[1], "tyto_user_list") == 0
                     ? cli_print_list(out, errout, r, json)
                     : cli_print(out, errout, what, r, json, is_torrent, with_passkey);
        freeReplyObject(r);
    }
    redisFree(rc);
    return status;
}

static int cli_user(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errout)
{
    struct cli_args a;
    struct private_call c;
    char what[32], passkey[PRIVATE_PASSKEY_LEN + 1];
    long long now = (long long)time(NULL), expires = 0;
    const char *verb = argc > 0 ? argv[0] : "";
    int st;

    snprintf(what, sizeof(what), "user %s", verb);
    if ((st = cli_parse(argc - 1, argv + 1, &a, what, errout)) != 0)
        return st;
    if (strcmp(verb, "add") == 0) {
        if ((st = cli_need_name(&a, 1, what, errout)) != 0)
            return st;
        if (a.expires && cli_expires(a.expires, now, &expires) < 0) {
            fprintf(errout, "tyto: %s: --expires wants DAYS (1-%lld) or never, not '%s'\n", what,
                    PRIVATE_MAX_DAYS, a.expires);
            return 2;
        }
        if (private_new_passkey(passkey) < 0) {
            fprintf(errout, "tyto: %s: libsodium failed to initialise\n", what);
            return 1;
        }
        private_call_user_add(&c, cfg->redis_prefix, a.pos[0], passkey, expires, now);
        return cli_run(cfg, &c, what, a.pos[0], a.json, false, true, out, errout);
    }
    if (strcmp(verb, "show") == 0) {
        if ((st = cli_need_name(&a, 1, what, errout)) != 0)
            return st;
        private_call_user_show(&c, cfg->redis_prefix, a.pos[0]);
        return cli_run(cfg, &c, what, a.pos[0], a.json, false, false, out, errout);
    }
    if (strcmp(verb, "list") == 0) {
        if (a.npos != 0) {
            fprintf(errout, "tyto: %s: takes no arguments\n", what);
            return 2;
        }
        private_call_user_list(&c, cfg->redis_prefix);
        return cli_run(cfg, &c, what, NULL, a.json, false, false, out, errout);
    }
    if (strcmp(verb, "enable") == 0 || strcmp(verb, "disable") == 0) {
        if ((st = cli_need_name(&a, 1, what, errout)) != 0)
            return st;
        private_call_user_set(&c, cfg->redis_prefix, a.pos[0], "enabled", verb[0] == 'e' ? "1" : "0");
        return cli_run(cfg, &c, what, a.pos[0], a.json, false, false, out, errout);
    }
    if (strcmp(verb, "rekey") == 0) {
        if ((st = cli_need_name(&a, 1, what, errout)) != 0)
            return st;
        if (private_new_passkey(passkey) < 0) {
            fprintf(errout, "tyto: %s: libsodium failed to initialise\n", what);
            return 1;
        }
        private_call_user_rekey(&c, cfg->redis_prefix, a.pos[0], passkey);
        return cli_run(cfg, &c, what, a.pos[0], a.json, false, true, out, errout);
    }
    if (strcmp(verb, "set") == 0) {
        const char *field, *value;
        char num[24];
        if (a.expires && a.npos == 1) {
            field = "expires";
            value = a.expires;
        } else {
            if ((st = cli_need_name(&a, 3, what, errout)) != 0)
                return st;
            field = a.pos[1];
            value = a.pos[2];
        }
        if (!private_valid_name(a.pos[0]))
            return cli_need_name(&a, 1, what, errout);
        if (strcmp(field, "expires") == 0) {
            if (cli_expires(value, now, &expires) < 0) {
                fprintf(errout, "tyto: %s: expires wants DAYS (1-%lld) or never, not '%s'\n", what,
                        PRIVATE_MAX_DAYS, value);
                return 2;
            }
            snprintf(num, sizeof(num), "%lld", expires);
            value = num;
        } else if (strcmp(field, "enabled") == 0 || strcmp(field, "can_leech") == 0) {
            if (strcmp(value, "yes") == 0 || strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
                value = "1";
            else if (strcmp(value, "no") == 0 || strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
                value = "0";
            else {
                fprintf(errout, "tyto: %s: %s wants yes or no, not '%s'\n", what, field, value);
                return 2;
            }
        } else {
            fprintf(errout, "tyto: %s: unknown field '%s' (enabled, can_leech, expires)\n", what, field);
            return 2;
        }
        private_call_user_set(&c, cfg->redis_prefix, a.pos[0], field, value);
        return cli_run(cfg, &c, what, a.pos[0], a.json, false, false, out, errout);
    }
    fprintf(errout, "tyto: user: unknown command '%s'\n", verb);
    cli_usage(errout);
    return 2;
}

static int cli_torrent(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errout)
{
    struct cli_args a;
    struct private_call c;
    char what[32], hex[PRIVATE_HEX_LEN + 1];
    const char *verb = argc > 0 ? argv[0] : "";
    int st;

    snprintf(what, sizeof(what), "torrent %s", verb);
    if ((st = cli_parse(argc - 1, argv + 1, &a, what, errout)) != 0)
        return st;
    if (strcmp(verb, "add") != 0 && strcmp(verb, "remove") != 0 && strcmp(verb, "show") != 0) {
        fprintf(errout, "tyto: torrent: unknown command '%s'\n", verb);
        cli_usage(errout);
        return 2;
    }
    if (a.npos != 1) {
        fprintf(errout, "tyto: %s: expected one info_hash (40 hex digits)\n", what);
        return 2;
    }
    if (private_parse_hex(a.pos[0], hex) < 0) {
        fprintf(errout, "tyto: %s: '%s' is not an info_hash (40 hex digits)\n", what, a.pos[0]);
        return 2;
    }
    if (strcmp(verb, "add") == 0) {
        const char *up = a.up ? a.up : "1", *down = a.down ? a.down : "1";
        if (a.freeleech && a.neutral) {
            fprintf(errout, "tyto: %s: --freeleech or --neutral, not both\n", what);
            return 2;
        }
        if (!private_valid_multiplier(up) || !private_valid_multiplier(down)) {
            fprintf(errout, "tyto: %s: --up and --down want a decimal multiplier such as 1, 0.5 or 2\n", what);
            return 2;
        }
        private_call_torrent_add(&c, cfg->redis_prefix, hex, (long long)time(NULL), a.freeleech, a.neutral, up, down);
    } else if (strcmp(verb, "remove") == 0) {
        private_call_torrent_remove(&c, cfg->redis_prefix, hex);
    } else {
        private_call_torrent_show(&c, cfg->redis_prefix, hex);
    }
    return cli_run(cfg, &c, what, hex, a.json, true, false, out, errout);
}

int private_admin_main(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errout)
{
    if (argc < 2) {
        cli_usage(errout);
        return 2;
    }
    if (strcmp(argv[0], "user") == 0)
        return cli_user(cfg, argc - 1, argv + 1, out, errout);
    return cli_torrent(cfg, argc - 1, argv + 1, out, errout);
}
