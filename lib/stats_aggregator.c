/* The statistics aggregator (see lib/stats_aggregator.h). A pass reads the keyspace in SCAN
 * batches: every key of a batch is asked for at once (pipelined), the next SCAN goes out when the
 * batch's last reply came, so a pass costs Redis a steady trickle, never a burst. Every reply
 * callback carries its pass number: a reply of an abandoned pass is dropped.
 *
 * Redis Cluster (redis.cluster; lib/redis_conn.h's connection set): a pass SCANs every primary in
 * turn, starting with the one that owns the {stats} slot. A key SCAN finds on a primary lives on
 * it, so the batch's per-swarm commands (FCALL tyto_census, HGET, the HSET/HDEL/EXPIRE of the
 * swarm's stats hash) go on that same connection. The keys that are not per-swarm all carry the
 * hash tag {stats} and so share one slot, CRC16("stats") mod 16384 = 7650: the lease
 * (<prefix>{stats}:lease), the workers' per-minute counts ({stats}:counts:<minute>), the snapshot,
 * the series ({stats}:minutes, :hours), the board ({stats}:busiest, :flagged, :board: one MULTI,
 * which a cluster allows because its keys share the slot) and the full scrape ({stats}:fullscrape,
 * with lib/stats.c's per-address {stats}:fullscrape:<addr>). They are sent to that slot's owner. A
 * pass whose map changed between two primaries (a MOVED, a lost node) is abandoned: the next one
 * walks the new map. */
#include "lib/stats_aggregator.h"
#include "lib/stats_fields.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "lib/anomaly.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/redis_conn.h"

#define AGG_SCAN_COUNT "200"
#define AGG_CENSUS_MAX "10000"         /* members of one set a census counts (README) */
#define AGG_BUSIEST 20
#define AGG_FLAGGED_MAX 200
#define AGG_DAY_S 86400
#define AGG_MONTH_S (31 * 86400)
#define AGG_FULL_SCRAPE_MAX 2000000    /* swarms one full scrape lists */

struct agg_swarm {                     /* one swarm as the board keeps it */
    char hex[41];
    uint64_t seeders, leechers, downloaded, announces;
    unsigned flags;
    char reason[ANOMALY_REASON_MAX];
};

struct agg_file {                      /* one entry of the full scrape */
    uint8_t hash[20];
    uint32_t complete, incomplete, downloaded;
};

struct stats_aggregator {
    const struct config *cfg;
    char holder[96];
    char prefix[64];
    struct anomaly_limits limits;
    bool holding;
    int64_t hold_until_ms;             /* the lease as last renewed, on this host's clock */
    int64_t next_pass_ms;
    redisAsyncContext *ac;             /* the connection of the pass in progress */
    struct redis_conns *conns;         /* every connection (one per primary of a cluster) */
    unsigned gen;                      /* the map's generation when the pass started */
    unsigned nodes, first, visited;    /* the nodes to SCAN, from first ({stats}'s), done */
    /* the pass in progress */
    uint64_t pass;                     /* its number; 0 none running */
    uint64_t passes;                   /* passes started (numbers them) */
    int64_t now_s, started_ms;
    int64_t heard_ms;                  /* the pass's last reply (wall clock, as started_ms) */
    char cursor[24];
    bool scan_done;
    unsigned outstanding;              /* replies of the batch still owed */
    uint64_t foreign;                  /* keys SCAN found on a node not their slot's owner */
    char foreign_eg[400];              /* the first of them, where it was and whose the map says */
    uint64_t swarms, seeders, leechers, s4, s6, l4, l6, downloaded, announces_min;
    uint64_t scrapes_min, completed_min;
    uint64_t anomalies[ANOMALY_KINDS];
    struct agg_swarm busiest[AGG_BUSIEST];
    size_t nbusiest;
    struct agg_swarm *flagged;         /* AGG_FLAGGED_MAX */
    size_t nflagged;
    struct agg_file *files;            /* stats.full_scrape */
    size_t nfiles, files_cap;
};

struct agg_call {                      /* privdata of one reply */
    struct stats_aggregator *a;
    uint64_t pass;
    char hex[41];
};

static int64_t agg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct stats_aggregator *stats_aggregator_new(const struct config *cfg, const char *holder_id)
{
    struct stats_aggregator *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->flagged = calloc(AGG_FLAGGED_MAX, sizeof(*a->flagged));
    if (!a->flagged) {
        free(a);
        return NULL;
    }
    a->cfg = cfg;
    snprintf(a->holder, sizeof(a->holder), "%s", holder_id);
    snprintf(a->prefix, sizeof(a->prefix), "%s", cfg->redis_prefix);
    a->limits = (struct anomaly_limits){
        .fast_announces = (unsigned)cfg->stats_fast_announces,
        .peers_per_address = (unsigned)cfg->stats_peers_per_address,
        .stuck_leechers = (unsigned)cfg->stats_stuck_leechers,
        .stuck_age_s = cfg->stats_stuck_age_s,
        .phantom_uploads = (unsigned)cfg->stats_phantom_uploads,
        .spike_min = (unsigned)cfg->stats_spike_min,
        .spike_factor = (double)cfg->stats_spike_factor,
    };
    return a;
}

void stats_aggregator_free(struct stats_aggregator *a)
{
    if (!a)
        return;
    free(a->flagged);
    free(a->files);
    free(a);
}

int stats_aggregator_period_ms(const struct stats_aggregator *a)
{
    int ms = a->cfg->stats_lease_ms / 3;
    return ms > 1000 ? 1000 : ms;
}

bool stats_aggregator_holding(const struct stats_aggregator *a)
{
    return a->holding;
}

static void agg_abandon(struct stats_aggregator *a)
{
    a->pass = 0;
    a->ac = NULL;
    a->outstanding = 0;
}

void stats_aggregator_lost(struct stats_aggregator *a)
{
    if (a->holding)
        log_info("stats: aggregator lease no longer known to be held (Redis connection lost)");
    a->holding = false;
    agg_abandon(a);
}

static void agg_key(char *dst, size_t cap, const struct stats_aggregator *a, const char *what)
{
    snprintf(dst, cap, "%s{stats}:%s", a->prefix, what);
}

/* The connection that serves the {stats} slot (see the top of this file), or NULL. */
static redisAsyncContext *agg_stats_conn(const struct stats_aggregator *a, struct redis_conns *conns)
{
    char key[128];

    agg_key(key, sizeof(key), a, "lease");
    return redis_conns_for_key(conns, key);
}

static void agg_swarm_key(char *dst, size_t cap, const struct stats_aggregator *a, const char *hex,
                          const char *what)
{
    snprintf(dst, cap, "%s{%s}:%s", a->prefix, hex, what);
}

static struct agg_call *agg_call_new(struct stats_aggregator *a, const char *hex)
{
    struct agg_call *c = malloc(sizeof(*c));

    if (!c)
        return NULL;
    c->a = a;
    c->pass = a->pass;
    snprintf(c->hex, sizeof(c->hex), "%s", hex ? hex : "");
    return c;
}

/* A write whose reply only matters when it failed. */
static void agg_write_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    redisReply *reply = reply_ptr;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_warn("stats: aggregator write %s failed: %s", (const char *)privdata, reply->str);
        redis_conns_check(ac, reply);
    }
}

static void agg_send(struct stats_aggregator *a, int argc, const char **argv, const size_t *lens, const char *what)
{
    redisAsyncCommandArgv(a->ac, agg_write_cb, (void *)what, argc, argv, lens);
}

/* ---- the lease ------------------------------------------------------------------------------ */

static const char agg_renew_lua[] =
    "if redis.call('GET',KEYS[1])==ARGV[1] then return redis.call('PEXPIRE',KEYS[1],ARGV[2]) end return 0";

struct agg_lease_call {
    struct stats_aggregator *a;
    int64_t sent_ms;
};

static void agg_lease_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct agg_lease_call *c = privdata;
    struct stats_aggregator *a = c->a;
    redisReply *reply = reply_ptr;
    bool held = reply && ((reply->type == REDIS_REPLY_STATUS && strcasecmp(reply->str, "OK") == 0) ||
                          (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1));

    if (reply)
        redis_conns_check(ac, reply);
    if (held) {
        if (!a->holding) {
            log_info("stats: %s holds the aggregator lease", a->holder);
            a->next_pass_ms = 0;       /* the new holder starts a pass at once */
        }
        a->holding = true;
        a->hold_until_ms = c->sent_ms + a->cfg->stats_lease_ms;
    } else if (reply && a->holding) {
        log_info("stats: %s lost the aggregator lease", a->holder);
        a->holding = false;
        agg_abandon(a);
    }
    free(c);
}

static void agg_lease(struct stats_aggregator *a, redisAsyncContext *ac, int64_t now_ms)
{
    char key[128], ms[16];
    struct agg_lease_call *c = malloc(sizeof(*c));

    if (!c)
        return;
    c->a = a;
    c->sent_ms = now_ms;
    agg_key(key, sizeof(key), a, "lease");
    snprintf(ms, sizeof(ms), "%d", a->cfg->stats_lease_ms);
    if (a->holding) {
        const char *argv[] = { "EVAL", agg_renew_lua, "1", key, a->holder, ms };
        if (redisAsyncCommandArgv(ac, agg_lease_cb, c, 6, argv, NULL) != REDIS_OK)
            free(c);
    } else {
        const char *argv[] = { "SET", key, a->holder, "NX", "PX", ms };
        if (redisAsyncCommandArgv(ac, agg_lease_cb, c, 6, argv, NULL) != REDIS_OK)
            free(c);
    }
}

static const char agg_release_lua[] =
    "if redis.call('GET',KEYS[1])==ARGV[1] then return redis.call('DEL',KEYS[1]) end return 0";

void stats_aggregator_release(struct stats_aggregator *a, struct redis_conns *conns)
{
    redisAsyncContext *ac;
    char key[128];

    if (!a->holding || !(ac = agg_stats_conn(a, conns)))
        return;
    agg_key(key, sizeof(key), a, "lease");
    const char *argv[] = { "EVAL", agg_release_lua, "1", key, a->holder };
    redisAsyncCommandArgv(ac, NULL, NULL, 5, argv, NULL);
    log_info("stats: %s gives the aggregator lease up (draining)", a->holder);
    a->holding = false;
    agg_abandon(a);
}

/* ---- one swarm ------------------------------------------------------------------------------ */

static uint64_t agg_int(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer > 0 ? (uint64_t)e->integer : 0;
    if (e->type == REDIS_REPLY_STRING)
        return strtoull(e->str, NULL, 10);
    return 0;
}

static int agg_hex_ok(const char *hex, size_t len)
{
    if (len != 40)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return 0;
    return 1;
}

/* Keeps the AGG_BUSIEST swarms with the most announces (a small array: insertion). */
static void agg_keep_busiest(struct stats_aggregator *a, const struct agg_swarm *s)
{
    size_t i = a->nbusiest < AGG_BUSIEST ? a->nbusiest++ : AGG_BUSIEST - 1;

    if (i == AGG_BUSIEST - 1 && a->nbusiest == AGG_BUSIEST && a->busiest[i].announces >= s->announces &&
        a->busiest[i].hex[0])
        return;
    while (i > 0 && a->busiest[i - 1].announces < s->announces) {
        a->busiest[i] = a->busiest[i - 1];
        i--;
    }
    a->busiest[i] = *s;
}

/* Keeps up to AGG_FLAGGED_MAX flagged swarms, the busiest of them when there are more. */
static void agg_keep_flagged(struct stats_aggregator *a, const struct agg_swarm *s)
{
    size_t low = 0;

    if (a->nflagged < AGG_FLAGGED_MAX) {
        a->flagged[a->nflagged++] = *s;
        return;
    }
    for (size_t i = 1; i < a->nflagged; i++)
        if (a->flagged[i].announces < a->flagged[low].announces)
            low = i;
    if (a->flagged[low].announces < s->announces)
        a->flagged[low] = *s;
}

static void agg_keep_file(struct stats_aggregator *a, const char *hex, const struct agg_swarm *s)
{
    if (!a->cfg->stats_full_scrape || a->nfiles >= AGG_FULL_SCRAPE_MAX)
        return;
    if (a->nfiles == a->files_cap) {
        size_t cap = a->files_cap ? 2 * a->files_cap : 1024;
        struct agg_file *f = realloc(a->files, cap * sizeof(*f));
        if (!f)
            return;
        a->files = f;
        a->files_cap = cap;
    }
    struct agg_file *f = &a->files[a->nfiles++];
    for (int i = 0; i < 20; i++) {
        unsigned hi = (unsigned)(hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10);
        unsigned lo = (unsigned)(hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10);
        f->hash[i] = (uint8_t)(hi << 4 | lo);
    }
    f->complete = s->seeders > UINT32_MAX ? UINT32_MAX : (uint32_t)s->seeders;
    f->incomplete = s->leechers > UINT32_MAX ? UINT32_MAX : (uint32_t)s->leechers;
    f->downloaded = s->downloaded > UINT32_MAX ? UINT32_MAX : (uint32_t)s->downloaded;
}

/* Counters of the stats hash, and the fields the pass prunes. */
struct agg_fields {
    struct anomaly_swarm an;
    uint64_t announces;                /* in the last interval */
    const char *stale[512];            /* fields to delete (borrowed from the reply) */
    size_t stale_len[512];
    size_t nstale;
};

static void agg_stale(const char *name, size_t len, void *arg)
{
    struct agg_fields *f = arg;

    if (f->nstale < sizeof(f->stale) / sizeof(f->stale[0])) {
        f->stale[f->nstale] = name;
        f->stale_len[f->nstale++] = len;
    }
}

/* The stats hash's fields (lib/stats_fields.c) as the anomaly rules take them; the stale ones
 * are pruned by agg_write_swarm, as are kept anomaly:<kind> reasons of kinds no longer flagged. */
static void agg_read_fields(const struct stats_aggregator *a, const redisReply *h, struct agg_fields *f)
{
    struct stats_fields sf;

    stats_fields_parse(h, a->now_s, a->cfg->interval_s, &sf, agg_stale, f);
    memcpy(f->an.minute, sf.minute, sizeof(f->an.minute));
    f->an.first_seen_s = sf.first_s;
    f->an.fast_announces = (unsigned)sf.fast;
    f->an.phantom_uploads = (unsigned)sf.phantom;
    f->announces = sf.announces_interval;
}

/* Writes what the pass learnt back into the swarm's stats hash (so `tyto swarm` and
 * /stats?info_hash show it), and prunes the stale fields. */
static void agg_write_swarm(struct stats_aggregator *a, const char *hex, const redisReply *h,
                            const struct agg_fields *f, const struct anomaly_result *res, const uint64_t fam[4])
{
    char key[160], v[8][24], flags[128] = "";
    const char *argv[16 + 2 * ANOMALY_KINDS];
    size_t lens[16 + 2 * ANOMALY_KINDS];
    char names[ANOMALY_KINDS][40];
    int n = 0;

    agg_swarm_key(key, sizeof(key), a, hex, "stats");
    for (int i = 0; i < 4; i++)
        snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)fam[i]);
    snprintf(v[4], sizeof(v[4]), "%u", f->an.max_peers_per_address);
    snprintf(v[5], sizeof(v[5]), "%llu", (unsigned long long)f->announces);
    snprintf(v[6], sizeof(v[6]), "%lld", (long long)a->now_s);
    for (int kind = 0; kind < ANOMALY_KINDS; kind++)
        if (res->flags & (1u << kind))
            snprintf(flags + strlen(flags), sizeof(flags) - strlen(flags), "%s%s", flags[0] ? "," : "",
                     anomaly_kind_name((enum anomaly_kind)kind));
    static const char *const fields[] = { "seeders4", "seeders6", "leechers4", "leechers6", "max_per_address",
                                          "announces", "checked" };
    argv[n++] = "HSET";
    argv[n++] = key;
    for (int i = 0; i < 7; i++) {
        argv[n++] = fields[i];
        argv[n++] = v[i];
    }
    argv[n++] = "flags";
    argv[n++] = flags;
    for (int kind = 0; kind < ANOMALY_KINDS; kind++) {
        if (!(res->flags & (1u << kind)))
            continue;
        snprintf(names[kind], sizeof(names[kind]), "anomaly:%s", anomaly_kind_name((enum anomaly_kind)kind));
        argv[n++] = names[kind];
        argv[n++] = res->reason[kind];
    }
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    agg_send(a, n, argv, lens, "HSET stats");
    if (fam[0] + fam[1] + fam[2] + fam[3] > 0) {   /* a live swarm's statistics live on */
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%d", 2 * a->cfg->peer_ttl_s);
        const char *exp[] = { "EXPIRE", key, ttl };
        agg_send(a, 3, exp, NULL, "EXPIRE stats");
    }

    /* Stale counters, and reasons of kinds no longer flagged. */
    const char *del[2 + 512 + ANOMALY_KINDS];
    size_t dlen[2 + 512 + ANOMALY_KINDS];
    int d = 0;
    del[d] = "HDEL"; dlen[d++] = 4;
    del[d] = key; dlen[d++] = strlen(key);
    for (size_t i = 0; i < f->nstale; i++) {
        del[d] = f->stale[i];
        dlen[d++] = f->stale_len[i];
    }
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *name = h->element[i];
        int kind;
        if (name->type != REDIS_REPLY_STRING || name->len <= 8 || strncmp(name->str, "anomaly:", 8) != 0)
            continue;
        kind = anomaly_kind_parse(name->str + 8, name->len - 8);
        if (kind < 0 || !(res->flags & (1u << kind))) {
            del[d] = name->str;
            dlen[d++] = name->len;
        }
    }
    if (d > 2)
        agg_send(a, d, del, dlen, "HDEL stats");
}

/* FCALL tyto_census's reply for one swarm (redis/tyto.lua). */
static void agg_census(struct stats_aggregator *a, const char *hex, const redisReply *r)
{
    struct agg_fields f;
    struct anomaly_result res;
    struct agg_swarm s = { 0 };
    uint64_t fam[4];

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 10 || r->element[0]->type != REDIS_REPLY_ARRAY) {
        if (r->type == REDIS_REPLY_ERROR)
            log_warn("stats: tyto_census of %s failed: %s", hex, r->str);
        return;
    }
    memset(&f, 0, sizeof(f));
    f.an.now_s = a->now_s;
    agg_read_fields(a, r->element[0], &f);
    s.seeders = agg_int(r->element[1]);
    s.leechers = agg_int(r->element[2]);
    s.downloaded = agg_int(r->element[3]);
    for (int i = 0; i < 4; i++)
        fam[i] = agg_int(r->element[4 + i]);
    f.an.seeders = s.seeders;
    f.an.leechers = s.leechers;
    f.an.downloaded = s.downloaded;
    f.an.max_peers_per_address = (unsigned)agg_int(r->element[8]);
    if (r->element[9]->type == REDIS_REPLY_STRING)
        snprintf(f.an.crowded_address, sizeof(f.an.crowded_address), "%s", r->element[9]->str);
    anomaly_check(&a->limits, &f.an, &res);
    agg_write_swarm(a, hex, r->element[0], &f, &res, fam);

    a->announces_min += f.an.minute[1];
    if (s.seeders + s.leechers == 0 && res.flags == 0)
        return;                        /* a swarm everyone left: its stats hash expires by itself */
    snprintf(s.hex, sizeof(s.hex), "%s", hex);
    s.announces = f.announces;
    s.flags = res.flags;
    a->swarms++;
    a->seeders += s.seeders;
    a->leechers += s.leechers;
    a->s4 += fam[0];
    a->s6 += fam[1];
    a->l4 += fam[2];
    a->l6 += fam[3];
    for (int kind = 0; kind < ANOMALY_KINDS; kind++) {
        if (!(res.flags & (1u << kind)))
            continue;
        a->anomalies[kind]++;
        if (!s.reason[0])
            snprintf(s.reason, sizeof(s.reason), "%s", res.reason[kind]);
    }
    agg_keep_busiest(a, &s);
    if (res.flags)
        agg_keep_flagged(a, &s);
    agg_keep_file(a, hex, &s);
}

/* ---- the pass ------------------------------------------------------------------------------- */

static void agg_scan(struct stats_aggregator *a);
static void agg_finish(struct stats_aggregator *a);

/* A reply of the batch; when it is the last, the next SCAN (or the end of the pass). */
static bool agg_batch_reply(struct agg_call *c, redisAsyncContext *ac, const redisReply *reply)
{
    struct stats_aggregator *a = c->a;

    if (reply)
        redis_conns_check(ac, reply);
    if (c->pass != a->pass || a->pass == 0)
        return false;                  /* an abandoned pass */
    a->heard_ms = agg_wall_ms();
    if (!reply) {
        agg_abandon(a);
        return false;
    }
    return true;
}

/* The next primary to SCAN (a cluster's), or false when every one was. */
static bool agg_next_node(struct stats_aggregator *a)
{
    if (++a->visited >= a->nodes)
        return false;
    if (redis_conns_generation(a->conns) != a->gen) {
        log_info("stats: the cluster's slot map changed during pass %llu: abandoned",
                 (unsigned long long)a->pass);
        agg_abandon(a);
        return true;
    }
    a->ac = redis_conns_node(a->conns, (a->first + a->visited) % a->nodes);
    snprintf(a->cursor, sizeof(a->cursor), "0");
    a->scan_done = false;
    if (!a->ac)
        agg_abandon(a);
    else
        agg_scan(a);
    return true;
}

static void agg_batch_done(struct stats_aggregator *a)
{
    if (--a->outstanding > 0)
        return;
    if (!a->scan_done)
        agg_scan(a);
    else if (!agg_next_node(a))
        agg_finish(a);
}

static void agg_census_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct agg_call *c = privdata;
    if (agg_batch_reply(c, ac, reply_ptr)) {
        agg_census(c->a, c->hex, reply_ptr);
        agg_batch_done(c->a);
    }
    free(c);
}

static void agg_downloaded_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct agg_call *c = privdata;
    redisReply *reply = reply_ptr;
    if (agg_batch_reply(c, ac, reply)) {
        c->a->downloaded += agg_int(reply);
        agg_batch_done(c->a);
    }
    free(c);
}

static void agg_counts_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct agg_call *c = privdata;
    redisReply *reply = reply_ptr;
    if (agg_batch_reply(c, ac, reply)) {
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
            c->a->scrapes_min = agg_int(reply->element[0]);
            c->a->completed_min = agg_int(reply->element[1]);
        }
    }
    free(c);
}

/* Sends what one key of a SCAN batch needs: a census for a swarm's stats hash, the downloaded
 * count for its info hash (kept after the swarm died: the all-time total sums them all). */
static void agg_visit(struct stats_aggregator *a, const char *key, size_t len)
{
    size_t plen = strlen(a->prefix);
    char hex[41], now[24], k[4][160];
    struct agg_call *c;
    const char *kind;

    if (len < plen + 44 || key[plen] != '{' || key[plen + 41] != '}' || key[plen + 42] != ':' ||
        !agg_hex_ok(key + plen + 1, 40))
        return;
    /* Only the keys of the slots the map gives this node: a node that holds others' (a replica
     * the map still lists as a primary, a node importing a slot) would have them counted twice,
     * or its census answered MOVED. */
    int owner = redis_conns_node_of(a->conns, key);
    unsigned here = (a->first + a->visited) % a->nodes;
    if (owner != (int)here) {
        if (a->foreign++ == 0) {
            char o[80], h[80];

            redis_conns_node_name(a->conns, owner, o, sizeof(o));
            redis_conns_node_name(a->conns, (int)here, h, sizeof(h));
            snprintf(a->foreign_eg, sizeof(a->foreign_eg), "%.*s on %s (the map's owner of its slot: %s)",
                     (int)(len < 100 ? len : 100), key, h, o);
        }
        return;
    }
    memcpy(hex, key + plen + 1, 40);
    hex[40] = '\0';
    kind = key + plen + 43;
    if (len - plen - 43 == 5 && memcmp(kind, "stats", 5) == 0) {
        static const char *const what[] = { "stats", "seeders", "leechers", "info" };
        for (int i = 0; i < 4; i++)
            agg_swarm_key(k[i], sizeof(k[i]), a, hex, what[i]);
        snprintf(now, sizeof(now), "%lld", (long long)a->now_s);
        const char *argv[] = { "FCALL", "tyto_census", "4", k[0], k[1], k[2], k[3], now, AGG_CENSUS_MAX };
        if (!(c = agg_call_new(a, hex)))
            return;
        if (redisAsyncCommandArgv(a->ac, agg_census_cb, c, 9, argv, NULL) == REDIS_OK)
            a->outstanding++;
        else
            free(c);
    } else if (len - plen - 43 == 4 && memcmp(kind, "info", 4) == 0) {
        agg_swarm_key(k[0], sizeof(k[0]), a, hex, "info");
        const char *argv[] = { "HGET", k[0], "downloaded" };
        if (!(c = agg_call_new(a, hex)))
            return;
        if (redisAsyncCommandArgv(a->ac, agg_downloaded_cb, c, 3, argv, NULL) == REDIS_OK)
            a->outstanding++;
        else
            free(c);
    }
}

static void agg_scan_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct agg_call *c = privdata;
    struct stats_aggregator *a = c->a;
    redisReply *reply = reply_ptr;

    if (!agg_batch_reply(c, ac, reply)) {
        free(c);
        return;
    }
    free(c);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        log_warn("stats: SCAN failed%s%s", reply->type == REDIS_REPLY_ERROR ? ": " : "",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        agg_abandon(a);
        return;
    }
    snprintf(a->cursor, sizeof(a->cursor), "%s", reply->element[0]->str);
    a->scan_done = strcmp(a->cursor, "0") == 0;
    a->outstanding++;                  /* this batch's own, released below */
    for (size_t i = 0; i < reply->element[1]->elements; i++) {
        const redisReply *k = reply->element[1]->element[i];
        if (k->type == REDIS_REPLY_STRING)
            agg_visit(a, k->str, k->len);
    }
    agg_batch_done(a);
}

static void agg_scan(struct stats_aggregator *a)
{
    char match[80];
    struct agg_call *c = agg_call_new(a, NULL);

    if (!c) {
        agg_abandon(a);
        return;
    }
    snprintf(match, sizeof(match), "%s{*}:*", a->prefix);
    const char *argv[] = { "SCAN", a->cursor, "MATCH", match, "COUNT", AGG_SCAN_COUNT };
    if (redisAsyncCommandArgv(a->ac, agg_scan_cb, c, 6, argv, NULL) != REDIS_OK) {
        free(c);
        agg_abandon(a);
    }
}

static void agg_start(struct stats_aggregator *a, struct redis_conns *conns, redisAsyncContext *ac, int64_t now_ms)
{
    char key[128], scrapes[40], completed[40];
    struct agg_call *c;
    int64_t last_m = now_ms / 60000 - 1;

    /* ac serves the {stats} slot: its primary is SCANned first (so the counts' reply below comes
     * before the first SCAN's), then the others of the map in order. */
    agg_key(key, sizeof(key), a, "lease");
    a->conns = conns;
    a->nodes = redis_conns_count(conns);
    a->gen = redis_conns_generation(conns);
    a->first = (unsigned)redis_conns_node_of(conns, key);
    a->visited = 0;
    if (redis_conns_node(conns, a->first) != ac)
        return;                        /* the map changed under the lease's tick: next time */
    a->ac = ac;
    a->pass = ++a->passes;
    a->now_s = now_ms / 1000;
    a->started_ms = now_ms;
    a->heard_ms = now_ms;
    a->next_pass_ms = now_ms + (int64_t)a->cfg->stats_pass_s * 1000;
    snprintf(a->cursor, sizeof(a->cursor), "0");
    a->scan_done = false;
    a->outstanding = 0;
    a->swarms = a->seeders = a->leechers = a->s4 = a->s6 = a->l4 = a->l6 = 0;
    a->downloaded = a->announces_min = a->scrapes_min = a->completed_min = 0;
    a->foreign = 0;
    memset(a->anomalies, 0, sizeof(a->anomalies));
    a->nbusiest = a->nflagged = a->nfiles = 0;

    /* The workers' per-minute counts of the last full minute (lib/stats.c flushes them). Not
     * counted in the batch: its reply comes before the first SCAN's (one connection, in order). A
     * {stats} key: ac. */
    snprintf(key, sizeof(key), "%s{stats}:counts:%lld", a->prefix, (long long)last_m);
    snprintf(scrapes, sizeof(scrapes), "scrapes");
    snprintf(completed, sizeof(completed), "completed");
    const char *argv[] = { "HMGET", key, scrapes, completed };
    if ((c = agg_call_new(a, NULL)) && redisAsyncCommandArgv(ac, agg_counts_cb, c, 4, argv, NULL) != REDIS_OK)
        free(c);
    agg_scan(a);
}

void stats_aggregator_tick(struct stats_aggregator *a, struct redis_conns *conns, int64_t now_ms)
{
    redisAsyncContext *ac = agg_stats_conn(a, conns);

    if (!ac)
        return;
    if (a->holding && now_ms > a->hold_until_ms) {
        log_info("stats: %s: the aggregator lease ran out before a renewal came back", a->holder);
        a->holding = false;
        agg_abandon(a);
    }
    /* A node that stopped answering (hung, not closed: nothing fails the pass's commands) would
     * hold the pass, and every pass after it, until it wakes up. Given up after 3 x
     * redis.timeout_ms without a reply; the next pass starts on the map as it is by then (a
     * cluster fails a hung primary over by itself). */
    if (a->pass != 0 && now_ms - a->heard_ms > 3 * (int64_t)a->cfg->redis_timeout_ms) {
        log_warn("stats: pass %llu: no reply from Redis for %lld ms: abandoned", (unsigned long long)a->pass,
                 (long long)(now_ms - a->heard_ms));
        agg_abandon(a);
        redis_conns_stale(conns);
    }
    agg_lease(a, ac, now_ms);
    if (a->holding && a->pass == 0 && now_ms >= a->next_pass_ms)
        agg_start(a, conns, ac, now_ms);
}

/* ---- the end of a pass ---------------------------------------------------------------------- */

static void agg_u64(char *dst, size_t cap, uint64_t v)
{
    snprintf(dst, cap, "%llu", (unsigned long long)v);
}

static void agg_write_snapshot(struct stats_aggregator *a, int64_t pass_ms)
{
    char key[128], v[20 + ANOMALY_KINDS][24], names[ANOMALY_KINDS][40];
    const char *argv[2 + 2 * (20 + ANOMALY_KINDS)];
    static const char *const fields[] = { "time", "pass_ms", "swarms", "peers", "seeders", "leechers",
                                          "seeders4", "seeders6", "leechers4", "leechers6", "downloaded",
                                          "announces_per_min", "scrapes_per_min", "completed_per_min" };
    const uint64_t vals[] = { (uint64_t)a->now_s, (uint64_t)pass_ms, a->swarms, a->seeders + a->leechers,
                              a->seeders, a->leechers, a->s4, a->s6, a->l4, a->l6, a->downloaded,
                              a->announces_min, a->scrapes_min, a->completed_min };
    int n = 0, nf = (int)(sizeof(fields) / sizeof(fields[0]));

    agg_key(key, sizeof(key), a, "snapshot");
    argv[n++] = "HSET";
    argv[n++] = key;
    for (int i = 0; i < nf; i++) {
        agg_u64(v[i], sizeof(v[i]), vals[i]);
        argv[n++] = fields[i];
        argv[n++] = v[i];
    }
    argv[n++] = "holder";
    argv[n++] = a->holder;
    for (int kind = 0; kind < ANOMALY_KINDS; kind++) {
        snprintf(names[kind], sizeof(names[kind]), "anomalies:%s", anomaly_kind_name((enum anomaly_kind)kind));
        agg_u64(v[nf + kind], sizeof(v[nf + kind]), a->anomalies[kind]);
        argv[n++] = names[kind];
        argv[n++] = v[nf + kind];
    }
    agg_send(a, n, argv, NULL, "HSET snapshot");
}

/* One point of a series: replaces the point of the same minute (or hour), trims what is older
 * than the series keeps, and keeps the key alive twice that long. */
static void agg_write_point(struct stats_aggregator *a, const char *what, int64_t t, int64_t keep_s)
{
    char key[128], ts[24], member[200], oldest[24], ttl[24];

    agg_key(key, sizeof(key), a, what);
    snprintf(ts, sizeof(ts), "%lld", (long long)t);
    snprintf(member, sizeof(member), "%lld %llu %llu %llu %llu %llu %llu", (long long)t,
             (unsigned long long)a->swarms, (unsigned long long)(a->seeders + a->leechers),
             (unsigned long long)a->seeders, (unsigned long long)a->leechers,
             (unsigned long long)a->announces_min, (unsigned long long)a->scrapes_min);
    snprintf(oldest, sizeof(oldest), "(%lld", (long long)(a->now_s - keep_s));
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(2 * keep_s));
    const char *del[] = { "ZREMRANGEBYSCORE", key, ts, ts };
    const char *add[] = { "ZADD", key, ts, member };
    const char *trim[] = { "ZREMRANGEBYSCORE", key, "-inf", oldest };
    const char *exp[] = { "EXPIRE", key, ttl };
    agg_send(a, 4, del, NULL, "series");
    agg_send(a, 4, add, NULL, "series");
    agg_send(a, 4, trim, NULL, "series");
    agg_send(a, 3, exp, NULL, "series");
}

/* The busiest and flagged swarms, replaced as one unit (MULTI) so a reader never sees a half. */
static void agg_write_board(struct stats_aggregator *a)
{
    char kb[128], kf[128], kboard[128], score[24], value[ANOMALY_REASON_MAX + 120];
    const char *multi[] = { "MULTI" }, *exec[] = { "EXEC" };

    agg_key(kb, sizeof(kb), a, "busiest");
    agg_key(kf, sizeof(kf), a, "flagged");
    agg_key(kboard, sizeof(kboard), a, "board");
    const char *del[] = { "DEL", kb, kf, kboard };
    agg_send(a, 1, multi, NULL, "MULTI");
    agg_send(a, 4, del, NULL, "DEL board");
    for (int list = 0; list < 2; list++) {
        const struct agg_swarm *v = list ? a->flagged : a->busiest;
        size_t n = list ? a->nflagged : a->nbusiest;
        for (size_t i = 0; i < n; i++) {
            agg_u64(score, sizeof(score), v[i].announces);
            snprintf(value, sizeof(value), "%llu %llu %llu %llu %u %s", (unsigned long long)v[i].seeders,
                     (unsigned long long)v[i].leechers, (unsigned long long)v[i].downloaded,
                     (unsigned long long)v[i].announces, v[i].flags, v[i].reason);
            const char *zadd[] = { "ZADD", list ? kf : kb, score, v[i].hex };
            const char *hset[] = { "HSET", kboard, v[i].hex, value };
            agg_send(a, 4, zadd, NULL, "ZADD board");
            agg_send(a, 4, hset, NULL, "HSET board");
        }
    }
    agg_send(a, 1, exec, NULL, "EXEC");
}

static int agg_file_cmp(const void *x, const void *y)
{
    return memcmp(((const struct agg_file *)x)->hash, ((const struct agg_file *)y)->hash, 20);
}

/* The full scrape's body, BEP 48 with every swarm: files sorted by info_hash (bencoding sorts
 * dictionary keys), written whole with one SET. */
static void agg_write_full_scrape(struct stats_aggregator *a)
{
    char key[128];
    struct evbuffer *b;
    size_t len;

    if (!a->cfg->stats_full_scrape || !(b = evbuffer_new()))
        return;
    qsort(a->files, a->nfiles, sizeof(*a->files), agg_file_cmp);
    evbuffer_add(b, "d5:filesd", 9);
    for (size_t i = 0; i < a->nfiles; i++) {
        const struct agg_file *f = &a->files[i];
        evbuffer_add(b, "20:", 3);
        evbuffer_add(b, f->hash, 20);
        evbuffer_add_printf(b, "d8:completei%ue10:downloadedi%ue10:incompletei%uee", f->complete, f->downloaded,
                            f->incomplete);
    }
    evbuffer_add(b, "ee", 2);
    agg_key(key, sizeof(key), a, "fullscrape");
    len = evbuffer_get_length(b);
    const char *argv[] = { "SET", key, (const char *)evbuffer_pullup(b, -1) };
    size_t lens[] = { 3, strlen(key), len };
    agg_send(a, 3, argv, lens, "SET fullscrape");
    evbuffer_free(b);
}

static void agg_finish(struct stats_aggregator *a)
{
    int64_t end_ms = agg_wall_ms(), pass_ms = end_ms - a->started_ms;

    /* Every key written from here on is a {stats} key: on that slot's owner (the first node). */
    if (redis_conns_generation(a->conns) != a->gen || !(a->ac = agg_stats_conn(a, a->conns))) {
        agg_abandon(a);
        return;
    }
    agg_write_snapshot(a, pass_ms);
    agg_write_point(a, "minutes", a->now_s / 60 * 60, AGG_DAY_S);
    agg_write_point(a, "hours", a->now_s / 3600 * 3600, AGG_MONTH_S);
    agg_write_board(a);
    agg_write_full_scrape(a);
    if (a->foreign)
        log_info("stats: pass %llu left out %llu keys found on a node the slot map does not give them to, e.g. %s",
                 (unsigned long long)a->pass, (unsigned long long)a->foreign, a->foreign_eg);
    log_debug("stats: pass %llu: %llu swarms, %llu peers in %lld ms", (unsigned long long)a->pass,
              (unsigned long long)a->swarms, (unsigned long long)(a->seeders + a->leechers), (long long)pass_ms);
    a->pass = 0;
    a->ac = NULL;
}
