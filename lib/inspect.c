/* `tyto swarm` and `tyto swarms`: read-only inspection of the swarms in Redis for operators.
 * cmd/tyto.c calls inspect_main() instead of starting the master. Keys follow the README's
 * schema: "<prefix>{<hex>}:seeders" / ":leechers" (sorted sets scored by expiry time) and
 * "<prefix>{<hex>}:info" (hash with "downloaded"). Synchronous hiredis; nothing is written.
 * With redis.cluster the slot map is read first (blocking, bounded by redis.timeout_ms per node
 * asked: storage/redis_cluster_seed.c): a one-swarm command, or one reading the {stats} keys,
 * connects to the primary that owns its key's slot; `tyto swarms` walks every primary. A MOVED
 * (the slot moved since the map was read) reads the map again and runs the command again. */
#include "lib/inspect.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "lib/anomaly.h"
#include "lib/peer_client.h"
#include "lib/stats_fields.h"
#include "storage/redis_cluster.h"
#include "storage/redis_cluster_seed.h"
#include "storage/redis_sentinel.h"

#define INSPECT_HEX_LEN 40
#define INSPECT_KEY_MAX 160
#define INSPECT_BATCH 512              /* swarms counted per pipeline in `swarms` */

struct inspect_swarm {
    char hex[INSPECT_HEX_LEN + 1];
    long long seeders, leechers;       /* live members (score > now) */
    long long downloaded;
};

/* ---- connection -------------------------------------------------------------------------- */

/* Sends one command (argv form) and returns its reply, or NULL with a message on errout. An
 * error reply is turned into NULL too. */
static redisReply *inspect_command(redisContext *c, FILE *errout, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);

    if (r == NULL) {
        fprintf(errout, "tyto: redis: %s\n", c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(errout, "tyto: redis %s: %.*s\n", argv[0], (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* One try of inspect_connect. *again is set when the node the sentinels named is not a master
 * (a failover in progress): worth asking them again. */
static redisContext *inspect_connect_once(const struct config *cfg, FILE *errout, bool *again)
{
    struct config_redis_target t;
    char err[256];
    int ms = cfg->redis_timeout_ms < 1000 ? 1000 : cfg->redis_timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    redisContext *c;

    if (config_parse_redis_url(cfg->redis_url, &t, err, sizeof(err)) < 0) {
        fprintf(errout, "tyto: redis.url: %s\n", err);
        return NULL;
    }
    if (redis_sentinel_resolve(cfg, &t, err, sizeof(err)) < 0) {
        fprintf(errout, "tyto: redis sentinel: %s\n", err);
        return NULL;
    }
    if (t.unix_socket)
        c = redisConnectUnixWithTimeout(t.path, tv);
    else
        c = redisConnectWithTimeout(t.host, t.port, tv);
    if (c == NULL || c->err) {
        fprintf(errout, "tyto: cannot connect to Redis at %s: %s\n", cfg->redis_url,
                c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        fprintf(errout, "tyto: redis: cannot set a timeout\n");
        goto fail;
    }
    if (t.password[0] != '\0') {
        const char *argv[] = { "AUTH", t.password };
        redisReply *r = inspect_command(c, errout, 2, argv);
        if (r == NULL)
            goto fail;
        freeReplyObject(r);
    }
    if (t.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", t.db);
        const char *argv[] = { "SELECT", db };
        redisReply *r = inspect_command(c, errout, 2, argv);
        if (r == NULL)
            goto fail;
        freeReplyObject(r);
    }
    if (redis_sentinel_enabled(cfg)) {
        const char *argv[] = { "ROLE" };
        redisReply *r = inspect_command(c, errout, 1, argv);
        int role;

        if (r == NULL)
            goto fail;
        role = redis_sentinel_parse_role(r);
        freeReplyObject(r);
        if (role != 1) {
            fprintf(errout, "tyto: redis %s:%d is not a master (yet?): asking the sentinels again\n",
                    t.host, t.port);
            *again = true;
            goto fail;
        }
    }
    return c;
fail:
    if (c != NULL)
        redisFree(c);
    return NULL;
}

redisContext *inspect_connect(const struct config *cfg, FILE *errout)
{
    /* A failover names the new master before it has finished becoming one: a few tries, a
     * second apart, cover Sentinel's promotion. */
    for (int tries = 0; tries < 5; tries++) {
        bool again = false;
        redisContext *c = inspect_connect_once(cfg, errout, &again);

        if (c != NULL || !again)
            return c;
        sleep(1);
    }
    return NULL;
}

/* With redis.cluster: a connection to the primary that owns key's slot in *m. NULL after a
 * message. */
static redisContext *inspect_connect_node(const struct config *cfg, const struct redis_cluster_map *m, int node,
                                          FILE *errout)
{
    char err[256];
    redisContext *c = redis_cluster_connect(cfg, m->node[node].host, m->node[node].port, err, sizeof(err));

    if (c == NULL)
        fprintf(errout, "tyto: redis cluster: %s\n", err);
    return c;
}

static redisContext *inspect_connect_key(const struct config *cfg, const struct redis_cluster_map *m,
                                         const char *key, FILE *errout)
{
    int node = redis_cluster_node_for_slot(m, redis_cluster_keyslot(key, strlen(key)));

    if (node < 0) {
        fprintf(errout, "tyto: redis cluster: no primary serves the slot of %s\n", key);
        return NULL;
    }
    return inspect_connect_node(cfg, m, node, errout);
}

redisContext *inspect_connect_for(const struct config *cfg, const char *key, FILE *errout)
{
    struct redis_cluster_map *m;
    redisContext *c = NULL;
    char err[320];

    if (!cfg->redis_cluster)
        return inspect_connect(cfg, errout);
    if (!(m = malloc(sizeof(*m)))) {
        fprintf(errout, "tyto: out of memory\n");
        return NULL;
    }
    if (redis_cluster_fetch_map(cfg, NULL, m, err, sizeof(err)) < 0)
        fprintf(errout, "tyto: redis cluster: %s\n", err);
    else
        c = inspect_connect_key(cfg, m, key, errout);
    free(m);
    return c;
}

/* ---- helpers ----------------------------------------------------------------------------- */

/* Copies a 40-digit hex info_hash in lowercase (the form keys use). 0 or -1. */
static int inspect_parse_hex(const char *s, char out[INSPECT_HEX_LEN + 1])
{
    if (strlen(s) != INSPECT_HEX_LEN)
        return -1;
    for (size_t i = 0; i < INSPECT_HEX_LEN; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return -1;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[INSPECT_HEX_LEN] = '\0';
    return 0;
}

static void inspect_key(char *dst, const struct config *cfg, const char *hex, const char *kind)
{
    snprintf(dst, INSPECT_KEY_MAX, "%s{%s}:%s", cfg->redis_prefix, hex, kind);
}

static long long inspect_reply_int(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;                          /* nil: no such field */
}

/* Writes a member as text: members are "a.b.c.d:port" / "[v6]:port", but a byte that is not
 * printable is shown as \xNN rather than sent to the terminal. */
static void inspect_put_member(FILE *out, const char *s, size_t len, int width)
{
    int n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isprint(ch) && ch != '\\')
            n += fprintf(out, "%c", ch);
        else
            n += fprintf(out, "\\x%02x", ch);
    }
    for (; n < width; n++)
        fputc(' ', out);
}

static void inspect_put_left(FILE *out, long long left_s)
{
    if (left_s > 0)
        fprintf(out, "expires in %llds\n", left_s);
    else
        fprintf(out, "EXPIRED %llds ago (not yet reaped)\n", -left_s);
}

/* ---- tyto swarm <hex> -------------------------------------------------------------------- */

/* Counts the members of one ZRANGE ... WITHSCORES reply that are live at now. */
static long long inspect_live(const redisReply *r, long long now)
{
    long long live = 0;

    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (strtod(r->element[i + 1]->str, NULL) > (double)now)
            live++;
    return live;
}

static void inspect_print_peers(FILE *out, const char *role, const redisReply *r, long long now)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *m = r->element[i], *s = r->element[i + 1];
        long long expiry = (long long)strtod(s->str, NULL);
        fprintf(out, "  %-8s ", role);
        inspect_put_member(out, m->str, m->len, 48);
        inspect_put_left(out, expiry - now);
    }
}

/* Live peers by address family (an IPv6 member is "[addr]:port"). */
static void inspect_print_family(FILE *out, const redisReply *rs, const redisReply *rl, long long now)
{
    long long n[2][2] = { { 0, 0 }, { 0, 0 } };
    const redisReply *sets[2] = { rs, rl };

    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i + 1 < sets[k]->elements; i += 2)
            if (strtod(sets[k]->element[i + 1]->str, NULL) > (double)now)
                n[k][sets[k]->element[i]->str[0] == '[']++;
    fprintf(out, "  ipv4        %lld seeders, %lld leechers\n", n[0][0], n[1][0]);
    fprintf(out, "  ipv6        %lld seeders, %lld leechers\n", n[0][1], n[1][1]);
}

/* The swarm's statistics hash (README "Statistics"), when stats are on. */
static void inspect_print_stats(const struct config *cfg, redisContext *c, const char *hex, FILE *out, long long now)
{
    char key[INSPECT_KEY_MAX];
    const char *argv[] = { "HGETALL", key };
    struct stats_fields f;
    redisReply *r;

    inspect_key(key, cfg, hex, "stats");
    r = redisCommandArgv(c, 2, argv, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        if (r)
            freeReplyObject(r);
        return;
    }
    stats_fields_parse(r, now, cfg->interval_s, &f, NULL, NULL);
    fprintf(out, "statistics:\n");
    if (f.first_s > 0)
        fprintf(out, "  first seen  %lld s ago\n", now - (long long)f.first_s);
    if (f.last_minute > 0)
        fprintf(out, "  last seen   %lld s ago (minute)\n",
                now - f.last_minute * 60 > 0 ? now - (long long)f.last_minute * 60 : 0);
    fprintf(out, "  announces   %llu in the last interval, %llu in the last hour\n",
            (unsigned long long)f.announces_interval, (unsigned long long)f.announces_hour);
    fprintf(out, "  too fast    %llu announces sooner than min interval; phantom uploads %llu\n",
            (unsigned long long)f.fast, (unsigned long long)f.phantom);
    fprintf(out, "  clients    ");
    bool any = false;
    for (unsigned i = 0; i < f.nclients; i++) {
        const char *code = f.clients[i].code, *name = peer_client_name(code, strlen(code));

        fprintf(out, "%s %s (%llu)", any ? "," : "", name ? name : code, (unsigned long long)f.clients[i].peers);
        any = true;
    }
    fprintf(out, "%s\n", any ? "" : " none heard this interval");
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (strncmp(r->element[i]->str, "anomaly:", 8) == 0)
            fprintf(out, "  ANOMALY     %s: %s\n", r->element[i]->str + 8, r->element[i + 1]->str);
    freeReplyObject(r);
}

static int inspect_swarm(const struct config *cfg, redisContext *c, const char *hex, FILE *out, FILE *errout)
{
    char seeders_key[INSPECT_KEY_MAX], leechers_key[INSPECT_KEY_MAX], info_key[INSPECT_KEY_MAX];
    const char *zs[] = { "ZRANGE", seeders_key, "0", "-1", "WITHSCORES" };
    const char *zl[] = { "ZRANGE", leechers_key, "0", "-1", "WITHSCORES" };
    const char *hg[] = { "HGET", info_key, "downloaded" };
    redisReply *rs = NULL, *rl = NULL, *rd = NULL;
    long long now = (long long)time(NULL);
    int status = 1;

    inspect_key(seeders_key, cfg, hex, "seeders");
    inspect_key(leechers_key, cfg, hex, "leechers");
    inspect_key(info_key, cfg, hex, "info");
    if ((rs = inspect_command(c, errout, 5, zs)) == NULL || (rl = inspect_command(c, errout, 5, zl)) == NULL ||
        (rd = inspect_command(c, errout, 3, hg)) == NULL)
        goto out;
    if (rs->type != REDIS_REPLY_ARRAY || rl->type != REDIS_REPLY_ARRAY) {
        fprintf(errout, "tyto: %s or %s is not a sorted set\n", seeders_key, leechers_key);
        goto out;
    }
    if (rs->elements == 0 && rl->elements == 0 && rd->type == REDIS_REPLY_NIL) {
        fprintf(errout, "tyto: no swarm %s in Redis (no keys %s{%s}:*)\n", hex, cfg->redis_prefix, hex);
        goto out;
    }
    long long s_all = (long long)rs->elements / 2, l_all = (long long)rl->elements / 2;
    long long s_live = inspect_live(rs, now), l_live = inspect_live(rl, now);
    fprintf(out, "swarm %s\n", hex);
    fprintf(out, "  seeders     %lld", s_live);
    if (s_all > s_live)
        fprintf(out, " (+%lld expired)", s_all - s_live);
    fprintf(out, "\n  leechers    %lld", l_live);
    if (l_all > l_live)
        fprintf(out, " (+%lld expired)", l_all - l_live);
    fprintf(out, "\n  downloaded  %lld\n", inspect_reply_int(rd));
    inspect_print_family(out, rs, rl, now);
    inspect_print_stats(cfg, c, hex, out, now);
    if (s_all + l_all > 0)
        fprintf(out, "peers:\n");
    inspect_print_peers(out, "seeder", rs, now);
    inspect_print_peers(out, "leecher", rl, now);
    status = 0;
out:
    if (rs)
        freeReplyObject(rs);
    if (rl)
        freeReplyObject(rl);
    if (rd)
        freeReplyObject(rd);
    return status;
}

/* ---- tyto swarms [N] --------------------------------------------------------------------- */

struct inspect_list {
    struct inspect_swarm *v;
    size_t len, cap;
};

static int inspect_list_add(struct inspect_list *l, const char *hex)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        struct inspect_swarm *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    memset(&l->v[l->len], 0, sizeof(l->v[0]));
    memcpy(l->v[l->len].hex, hex, INSPECT_HEX_LEN + 1);
    l->len++;
    return 0;
}

static int inspect_cmp_hex(const void *a, const void *b)
{
    return strcmp(((const struct inspect_swarm *)a)->hex, ((const struct inspect_swarm *)b)->hex);
}

static int inspect_cmp_busy(const void *a, const void *b)
{
    const struct inspect_swarm *x = a, *y = b;
    long long px = x->seeders + x->leechers, py = y->seeders + y->leechers;

    if (px != py)
        return px > py ? -1 : 1;
    if (x->seeders != y->seeders)
        return x->seeders > y->seeders ? -1 : 1;
    return strcmp(x->hex, y->hex);
}

/* The info_hash of a key "<prefix>{<hex>}:<kind>", or -1 if key is not of that shape. */
static int inspect_key_hex(const struct config *cfg, const char *key, size_t len, char hex[INSPECT_HEX_LEN + 1])
{
    size_t plen = strlen(cfg->redis_prefix);
    char tmp[INSPECT_HEX_LEN + 1];

    if (len < plen + INSPECT_HEX_LEN + 3 || memcmp(key, cfg->redis_prefix, plen) != 0 || key[plen] != '{' ||
        key[plen + 1 + INSPECT_HEX_LEN] != '}' || key[plen + 2 + INSPECT_HEX_LEN] != ':')
        return -1;
    memcpy(tmp, key + plen + 1, INSPECT_HEX_LEN);
    tmp[INSPECT_HEX_LEN] = '\0';
    return inspect_parse_hex(tmp, hex);
}

/* Removes the repeated swarms of l->v[from ..], sorting them by hex. */
static void inspect_dedupe(struct inspect_list *l, size_t from)
{
    if (l->len - from > 1) {
        qsort(l->v + from, l->len - from, sizeof(l->v[0]), inspect_cmp_hex);
        size_t w = from + 1;
        for (size_t i = from + 1; i < l->len; i++)
            if (strcmp(l->v[i].hex, l->v[w - 1].hex) != 0)
                l->v[w++] = l->v[i];
        l->len = w;
    }
}

/* Adds to l every swarm with at least one key on c, deduplicated and sorted by hex. 0 or -1. */
static int inspect_scan(const struct config *cfg, redisContext *c, struct inspect_list *l, FILE *errout)
{
    size_t from = l->len;
    char pattern[INSPECT_KEY_MAX], cursor[32] = "0";

    snprintf(pattern, sizeof(pattern), "%s{*}:*", cfg->redis_prefix);
    do {
        const char *argv[] = { "SCAN", cursor, "MATCH", pattern, "COUNT", INSPECT_SCAN_COUNT };
        redisReply *r = inspect_command(c, errout, 6, argv);
        if (r == NULL)
            return -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            fprintf(errout, "tyto: redis: unexpected SCAN reply\n");
            freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const redisReply *k = r->element[1]->element[i];
            char hex[INSPECT_HEX_LEN + 1];
            if (k->type != REDIS_REPLY_STRING || inspect_key_hex(cfg, k->str, k->len, hex) < 0)
                continue;
            if (inspect_list_add(l, hex) < 0) {
                fprintf(errout, "tyto: out of memory\n");
                freeReplyObject(r);
                return -1;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);

    /* SCAN may return a key more than once, and each swarm has up to three keys. */
    inspect_dedupe(l, from);
    return 0;
}

/* Fills the counts of l->v[from .. to) with one pipeline: ZCOUNT live seeders, live leechers,
 * HGET downloaded for each. 0 or -1. */
static int inspect_count_batch(const struct config *cfg, redisContext *c, struct inspect_list *l, size_t from,
                               size_t to, const char *now, FILE *errout)
{
    char key[INSPECT_KEY_MAX];

    for (size_t i = from; i < to; i++) {
        inspect_key(key, cfg, l->v[i].hex, "seeders");
        const char *zs[] = { "ZCOUNT", key, now, "+inf" };
        redisAppendCommandArgv(c, 4, zs, NULL);
        inspect_key(key, cfg, l->v[i].hex, "leechers");
        const char *zl[] = { "ZCOUNT", key, now, "+inf" };
        redisAppendCommandArgv(c, 4, zl, NULL);
        inspect_key(key, cfg, l->v[i].hex, "info");
        const char *hg[] = { "HGET", key, "downloaded" };
        redisAppendCommandArgv(c, 3, hg, NULL);
    }
    bool reported = false;
    for (size_t i = from; i < to; i++) {
        long long *slot[3] = { &l->v[i].seeders, &l->v[i].leechers, &l->v[i].downloaded };
        for (int j = 0; j < 3; j++) {
            void *p = NULL;
            if (redisGetReply(c, &p) != REDIS_OK || p == NULL) {
                fprintf(errout, "tyto: redis: %s\n", c->errstr[0] ? c->errstr : "no reply");
                return -1;         /* the connection is unusable now: no point draining it */
            }
            redisReply *r = p;
            if (r->type == REDIS_REPLY_ERROR) {
                /* A key of another type (WRONGTYPE): report once, count it as 0. */
                if (!reported)
                    fprintf(errout, "tyto: redis (swarm %s): %.*s\n", l->v[i].hex, (int)r->len, r->str);
                reported = true;
            } else {
                *slot[j] = inspect_reply_int(r);
            }
            freeReplyObject(r);
        }
    }
    return 0;
}

/* Adds the swarms of one node to l, counted on that node: a key SCAN found on a node lives there.
 * 0 or -1. */
static int inspect_collect(const struct config *cfg, redisContext *c, struct inspect_list *l, const char *now,
                           FILE *errout)
{
    size_t from = l->len;

    if (inspect_scan(cfg, c, l, errout) < 0)
        return -1;
    for (size_t i = from; i < l->len; i += INSPECT_BATCH) {
        size_t to = i + INSPECT_BATCH < l->len ? i + INSPECT_BATCH : l->len;
        if (inspect_count_batch(cfg, c, l, i, to, now, errout) < 0)
            return -1;
    }
    return 0;
}

/* c: the one Redis; or, with a cluster (m not NULL), every primary of m in turn. */
static int inspect_swarms(const struct config *cfg, redisContext *c, const struct redis_cluster_map *m, long limit,
                          FILE *out, FILE *errout)
{
    struct inspect_list l = { 0 };
    char now[32];
    int status = 1;

    /* "(" + now: strictly later than now, the same rule as the workers' reaping. */
    snprintf(now, sizeof(now), "(%lld", (long long)time(NULL));
    if (m == NULL) {
        if (inspect_collect(cfg, c, &l, now, errout) < 0)
            goto out;
    } else {
        for (unsigned n = 0; n < m->nnodes; n++) {
            redisContext *nc = inspect_connect_node(cfg, m, (int)n, errout);
            int rc = nc ? inspect_collect(cfg, nc, &l, now, errout) : -1;

            if (nc)
                redisFree(nc);
            if (rc < 0)
                goto out;
        }
        inspect_dedupe(&l, 0);         /* a swarm met twice: its slot moved during the walk */
    }
    if (l.len > 1)
        qsort(l.v, l.len, sizeof(l.v[0]), inspect_cmp_busy);
    size_t shown = (size_t)limit < l.len ? (size_t)limit : l.len;
    fprintf(out, "%-40s  %9s  %9s  %10s\n", "info_hash", "seeders", "leechers", "downloaded");
    for (size_t i = 0; i < shown; i++)
        fprintf(out, "%-40s  %9lld  %9lld  %10lld\n", l.v[i].hex, l.v[i].seeders, l.v[i].leechers,
                l.v[i].downloaded);
    fprintf(out, "%zu swarm%s under prefix \"%s\", %zu shown (busiest first, live peers)\n", l.len,
            l.len == 1 ? "" : "s", cfg->redis_prefix, shown);
    status = 0;
out:
    free(l.v);
    return status;
}

/* ---- tyto swarms --anomalies ---------------------------------------------------------------- */

/* The swarms the aggregator flagged in its last pass (<prefix>{stats}:flagged and :board). */
static int inspect_anomalies(const struct config *cfg, redisContext *c, long limit, FILE *out, FILE *errout)
{
    char kf[INSPECT_KEY_MAX], kb[INSPECT_KEY_MAX], kt[INSPECT_KEY_MAX], stop[24];
    redisReply *f, *snap;
    int status = 1;

    snprintf(kf, sizeof(kf), "%s{stats}:flagged", cfg->redis_prefix);
    snprintf(kb, sizeof(kb), "%s{stats}:board", cfg->redis_prefix);
    snprintf(kt, sizeof(kt), "%s{stats}:snapshot", cfg->redis_prefix);
    snprintf(stop, sizeof(stop), "%ld", limit - 1);
    const char *zr[] = { "ZREVRANGE", kf, "0", stop };
    const char *ht[] = { "HGET", kt, "time" };
    if (!(snap = inspect_command(c, errout, 3, ht)))
        return 1;
    if (snap->type != REDIS_REPLY_STRING) {
        fprintf(errout, "tyto: no statistics snapshot under prefix \"%s\" yet (stats.enabled, and a worker "
                        "running for one pass)\n", cfg->redis_prefix);
        freeReplyObject(snap);
        return 1;
    }
    if (!(f = inspect_command(c, errout, 4, zr)))
        goto out_snap;
    fprintf(out, "%-40s  %9s  %9s  %s\n", "info_hash", "seeders", "leechers", "anomalies");
    for (size_t i = 0; i < f->elements; i++) {
        const char *hg[] = { "HGET", kb, f->element[i]->str };
        redisReply *v = inspect_command(c, errout, 3, hg);
        unsigned long long se = 0, le = 0, dl = 0, an = 0;
        unsigned flags = 0;
        int used = 0;
        if (!v)
            goto out_f;
        if (v->type == REDIS_REPLY_STRING &&
            sscanf(v->str, "%llu %llu %llu %llu %u %n", &se, &le, &dl, &an, &flags, &used) >= 5) {
            fprintf(out, "%-40s  %9llu  %9llu ", f->element[i]->str, se, le);
            for (int k = 0; k < ANOMALY_KINDS; k++)
                if (flags & (1u << k))
                    fprintf(out, " %s", anomaly_kind_name((enum anomaly_kind)k));
            fprintf(out, "\n    %s\n", used > 0 ? v->str + used : "");
        }
        freeReplyObject(v);
    }
    fprintf(out, "%zu flagged swarm%s shown, from the aggregator's pass of %lld s ago\n", f->elements,
            f->elements == 1 ? "" : "s", (long long)time(NULL) - strtoll(snap->str, NULL, 10));
    status = 0;
out_f:
    freeReplyObject(f);
out_snap:
    freeReplyObject(snap);
    return status;
}

/* ---- entry ------------------------------------------------------------------------------- */

/* One run of a command with redis.cluster: the slot map first (asking the primaries of *hint
 * first, when there is one), then the primary (or primaries) to ask. */
static int inspect_cluster_run(const struct config *cfg, bool one, bool anomalies, const char *hex, long limit,
                               const struct redis_cluster_map *hint, FILE *out, FILE *errout)
{
    struct redis_cluster_map *m = malloc(sizeof(*m));
    char err[320], key[INSPECT_KEY_MAX];
    redisContext *c = NULL;
    int status = 1;

    if (m == NULL) {
        fprintf(errout, "tyto: out of memory\n");
        return 1;
    }
    if (redis_cluster_fetch_map(cfg, hint, m, err, sizeof(err)) < 0) {
        fprintf(errout, "tyto: redis cluster: %s\n", err);
        goto out;
    }
    if (one || anomalies) {
        /* Every key a command reads shares one slot: the swarm's, or {stats}'s. */
        if (one)
            inspect_key(key, cfg, hex, "info");
        else
            snprintf(key, sizeof(key), "%s{stats}:snapshot", cfg->redis_prefix);
        if ((c = inspect_connect_key(cfg, m, key, errout)) == NULL)
            goto out;
        status = one ? inspect_swarm(cfg, c, hex, out, errout) : inspect_anomalies(cfg, c, limit, out, errout);
        redisFree(c);
    } else {
        status = inspect_swarms(cfg, NULL, m, limit, out, errout);
    }
out:
    free(m);
    return status;
}

/* The redirection a failed run's messages hold, if any: every Redis error is printed with
 * Redis's own words, so a "MOVED 3999 host:port" (or ASK, TRYAGAIN, CLUSTERDOWN) is there to be
 * found without threading it back through every reader above. Fills *at for a MOVED or ASK. */
static bool inspect_redirected(const char *errtext, struct redis_cluster_redirect *at)
{
    static const char *const words[] = { "MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN" };

    at->port = 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        const char *w = errtext ? strstr(errtext, words[i]) : NULL;

        if (!w)
            continue;
        if (i < 2)
            (void)redis_cluster_parse_redirect(w, strcspn(w, "\n"), at);
        return true;
    }
    return false;
}

/* inspect_main with redis.cluster. A slot that moves between the map's read and the command (a
 * failover, a reshard) answers MOVED: the map is read again, from the node the MOVED named
 * first, and the command run again; a slot in migration or a cluster electing a primary (ASK,
 * TRYAGAIN, CLUSTERDOWN) is tried again after a pause. A run's output is held until it is known
 * not to be tried again, so nothing is printed twice. */
static int inspect_cluster_main(const struct config *cfg, bool one, bool anomalies, const char *hex, long limit,
                                FILE *out, FILE *errout)
{
    struct redis_cluster_map *hint = NULL;
    int status = 1;

    for (int attempt = 1;; attempt++) {
        char *obuf = NULL, *ebuf = NULL;
        size_t olen = 0, elen = 0;
        FILE *o = open_memstream(&obuf, &olen), *e = open_memstream(&ebuf, &elen);
        struct redis_cluster_redirect at;
        bool again;

        if (!o || !e) {                /* no memory to hold it: one run, printed as it goes */
            if (o)
                fclose(o);
            if (e)
                fclose(e);
            free(obuf);
            free(ebuf);
            status = inspect_cluster_run(cfg, one, anomalies, hex, limit, hint, out, errout);
            break;
        }
        status = inspect_cluster_run(cfg, one, anomalies, hex, limit, hint, o, e);
        fclose(o);
        fclose(e);
        again = status != 0 && attempt < REDIS_CLUSTER_CLI_TRIES && inspect_redirected(ebuf, &at);
        if (!again) {
            fwrite(obuf, 1, olen, out);
            fwrite(ebuf, 1, elen, errout);
        }
        free(obuf);
        free(ebuf);
        if (!again)
            break;
        if (at.port != 0 && at.kind == REDIS_CLUSTER_ERR_MOVED) {
            if (at.host[0] != '\0' && (hint || (hint = malloc(sizeof(*hint))))) {
                hint->nnodes = 1;
                hint->node[0] = (struct redis_cluster_node){ .port = at.port };
                snprintf(hint->node[0].host, sizeof(hint->node[0].host), "%s", at.host);
            }
        } else {
            usleep(REDIS_CLUSTER_CLI_PAUSE_MS * 1000);
        }
    }
    free(hint);
    fflush(out);
    return status;
}

static void inspect_usage(FILE *errout)
{
    fprintf(errout,
            "usage: tyto [-c PATH] swarm <info_hash as 40 hex digits>\n"
            "       tyto [-c PATH] swarms [N]     (the N busiest swarms, default %d)\n"
            "       tyto [-c PATH] swarms --anomalies [N]   (the swarms flagged by the statistics)\n",
            INSPECT_SWARMS_DEFAULT);
}

int inspect_main(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errout)
{
    char hex[INSPECT_HEX_LEN + 1];
    long limit = INSPECT_SWARMS_DEFAULT;
    bool one, anomalies = false;
    redisContext *c;
    int status;

    if (argc < 1 || argv == NULL || argv[0] == NULL)
        goto usage;
    if (strcmp(argv[0], "swarm") == 0) {
        one = true;
        if (argc != 2)
            goto usage;
        if (inspect_parse_hex(argv[1], hex) < 0) {
            fprintf(errout, "tyto: swarm: '%s' is not an info_hash (40 hex digits)\n", argv[1]);
            return 2;
        }
    } else if (strcmp(argv[0], "swarms") == 0) {
        one = false;
        if (argc >= 2 && strcmp(argv[1], "--anomalies") == 0) {
            anomalies = true;
            argv++;
            argc--;
        }
        if (argc > 2)
            goto usage;
        if (argc == 2) {
            char *end;
            errno = 0;
            limit = strtol(argv[1], &end, 10);
            if (errno != 0 || end == argv[1] || *end != '\0' || limit < 1 || limit > 1000000) {
                fprintf(errout, "tyto: swarms: N must be a number from 1 to 1000000, not '%s'\n", argv[1]);
                return 2;
            }
        }
    } else {
        goto usage;
    }
    if (cfg->storage != CONFIG_STORAGE_REDIS)
        fprintf(errout, "tyto: note: storage.backend is memory; reading Redis at %s anyway\n", cfg->redis_url);
    if (cfg->redis_cluster)
        return inspect_cluster_main(cfg, one, anomalies, hex, limit, out, errout);
    if ((c = inspect_connect(cfg, errout)) == NULL)
        return 1;
    status = one ? inspect_swarm(cfg, c, hex, out, errout)
         : anomalies ? inspect_anomalies(cfg, c, limit, out, errout)
         : inspect_swarms(cfg, c, NULL, limit, out, errout);
    redisFree(c);
    fflush(out);
    return status;
usage:
    inspect_usage(errout);
    return 2;
}
