/* A worker's side of the statistics (see lib/stats.h): its Redis connection, the copy of the
 * snapshot, the per-minute counts it adds, and the routes that read Redis. Every route sends one
 * command (a read-only FCALL of redis/tyto.lua, or a GET) and answers from its reply, or with 503
 * when Redis does not answer within redis.timeout_ms. */
#include "lib/stats.h"
#include "lib/stats_fields.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "lib/config.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/peer_client.h"
#include "lib/redis_conn.h"
#include "lib/stats_aggregator.h"
#include "lib/status_page.h"
#include "storage/storage.h"

#define STATS_PAGE_SWARMS 20

struct stats {
    struct event_base *base;
    const struct config *cfg;
    const struct metrics *m;
    const struct metrics_slot *slot;
    const struct storage *st;
    struct redis_conns *conns;         /* the Redis connection, or one per primary of a cluster */
    redisAsyncContext *stats_ac;       /* the one the {stats} keys (snapshot, lease) went on last */
    struct event *tick;
    struct stats_aggregator *agg;
    struct stats_snapshot snap;
    bool snap_pending;                 /* a snapshot read is on the connection */
    char holder[96];
    char host[64];
    uint64_t scrapes_base, completed_base; /* counted before the last flush */
    uint64_t reload_ms;                /* monotonic: the last FUNCTION LOAD after "not found" */
};

/* One route waiting for its reply. */
enum stats_call_kind { STATS_CALL_SWARM, STATS_CALL_PAGE, STATS_CALL_FULL_SCRAPE };

struct stats_call {
    struct stats *s;
    struct http_request *req;          /* NULL once answered (timeout) */
    struct event *timer;
    enum stats_call_kind kind;
    char hex[41];
    int64_t now_s;
    bool replied_by_redis;             /* the reply callback ran */
};

static uint64_t stats_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t stats_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct stats_snapshot *stats_snapshot(const struct stats *s)
{
    return &s->snap;
}

const char *stats_holder_id(const struct stats *s)
{
    return s->holder;
}

/* ---- the connection ------------------------------------------------------------------------ */

/* The {stats} keys' name slot, for redis_conns_for_key: the snapshot, the lease, the counts, the
 * series, the board and the full scrape all have the hash tag {stats}, so they live in the one
 * slot CRC16("stats") mod 16384 = 7650, on whichever primary owns it (the only one without a
 * cluster). */
static void stats_key(char *dst, size_t cap, const struct stats *s, const char *what)
{
    snprintf(dst, cap, "%s{stats}:%s", s->cfg->redis_prefix, what);
}

/* A connection went (or never came): hiredis frees it, the next tick reconnects. If it carried
 * the {stats} keys, the aggregator no longer knows it holds the lease. */
static void stats_lost(void *data, const redisAsyncContext *ac)
{
    struct stats *s = data;

    if (s->stats_ac != ac)
        return;
    s->stats_ac = NULL;
    s->snap_pending = false;
    stats_aggregator_lost(s->agg);
}

/* The connection for the {stats} keys, made now if there is none (lib/redis_conn.c: the library is
 * loaded first). */
static redisAsyncContext *stats_connection(struct stats *s)
{
    char key[128];
    redisAsyncContext *ac;

    stats_key(key, sizeof(key), s, "snapshot");
    ac = redis_conns_for_key(s->conns, key);
    if (ac != s->stats_ac)
        s->snap_pending = false;       /* the slot moved: the read on the old node may never answer */
    s->stats_ac = ac;
    return ac;
}

/* The library was flushed since the connect loaded it: loaded again on ac, at most once a second. */
static void stats_check_library(struct stats *s, redisAsyncContext *ac, const redisReply *reply)
{
    uint64_t now_ms = stats_mono_ms();

    if (!redis_conn_library_missing(reply) || (s->reload_ms != 0 && now_ms - s->reload_ms < 1000))
        return;
    s->reload_ms = now_ms;
    redis_conn_load_library(ac);
}

/* ---- the snapshot and the counts ----------------------------------------------------------- */

static uint64_t stats_u64(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer > 0 ? (uint64_t)e->integer : 0;
    return e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
}

/* Fills a snapshot from HGETALL <prefix>{stats}:snapshot (README "Statistics"). */
static void stats_parse_snapshot(struct stats_snapshot *snap, const redisReply *h)
{
    static const struct { const char *name; size_t off; } fields[] = {
        { "swarms", offsetof(struct stats_snapshot, swarms) },
        { "peers", offsetof(struct stats_snapshot, peers) },
        { "seeders", offsetof(struct stats_snapshot, seeders) },
        { "leechers", offsetof(struct stats_snapshot, leechers) },
        { "seeders4", offsetof(struct stats_snapshot, seeders4) },
        { "seeders6", offsetof(struct stats_snapshot, seeders6) },
        { "leechers4", offsetof(struct stats_snapshot, leechers4) },
        { "leechers6", offsetof(struct stats_snapshot, leechers6) },
        { "downloaded", offsetof(struct stats_snapshot, downloaded) },
        { "announces_per_min", offsetof(struct stats_snapshot, announces_per_min) },
        { "scrapes_per_min", offsetof(struct stats_snapshot, scrapes_per_min) },
        { "completed_per_min", offsetof(struct stats_snapshot, completed_per_min) },
    };

    memset(snap, 0, sizeof(*snap));
    if (h->type != REDIS_REPLY_ARRAY || h->elements < 2)
        return;
    snap->present = true;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *n = h->element[i], *v = h->element[i + 1];
        if (n->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(n->str, "time") == 0)
            snap->time_s = (int64_t)stats_u64(v);
        else if (strcmp(n->str, "pass_ms") == 0)
            snap->pass_ms = (int64_t)stats_u64(v);
        else if (strcmp(n->str, "holder") == 0 && v->type == REDIS_REPLY_STRING)
            snprintf(snap->holder, sizeof(snap->holder), "%s", v->str);
        else if (strncmp(n->str, "anomalies:", 10) == 0) {
            int kind = anomaly_kind_parse(n->str + 10, n->len - 10);
            if (kind >= 0)
                snap->anomalies[kind] = stats_u64(v);
        } else {
            for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
                if (strcmp(n->str, fields[f].name) == 0)
                    *(uint64_t *)((char *)snap + fields[f].off) = stats_u64(v);
        }
    }
}

static void stats_snapshot_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct stats *s = privdata;
    redisReply *reply = reply_ptr;

    if (!reply)
        return;                        /* gone with the connection: s may be freeing */
    redis_conns_check(ac, reply);
    s->snap_pending = false;
    if (reply->type == REDIS_REPLY_ARRAY)
        stats_parse_snapshot(&s->snap, reply);
}

/* This worker's scrapes and completed downloads since its last flush, added to the minute's
 * <prefix>{stats}:counts:<unix minute> (a hash that expires after the hour). A flush that fails
 * is lost: these are rates, not totals. */
static void stats_flush(struct stats *s, redisAsyncContext *ac, int64_t now_ms)
{
    uint64_t scrapes = s->slot ? s->slot->requests[METRICS_ROUTE_SCRAPE] + s->slot->udp_requests[METRICS_UDP_SCRAPE]
                               : 0;
    uint64_t completed = s->st ? s->st->counters.completed : 0;
    char key[128], ds[24], dc[24];

    if (scrapes == s->scrapes_base && completed == s->completed_base)
        return;
    snprintf(key, sizeof(key), "%s{stats}:counts:%lld", s->cfg->redis_prefix, (long long)(now_ms / 60000));
    /* ac serves the {stats} slot: so does this key. */
    snprintf(ds, sizeof(ds), "%llu", (unsigned long long)(scrapes - s->scrapes_base));
    snprintf(dc, sizeof(dc), "%llu", (unsigned long long)(completed - s->completed_base));
    const char *inc_s[] = { "HINCRBY", key, "scrapes", ds };
    const char *inc_c[] = { "HINCRBY", key, "completed", dc };
    const char *exp[] = { "EXPIRE", key, "3600" };
    redisAsyncCommandArgv(ac, NULL, NULL, 4, inc_s, NULL);
    redisAsyncCommandArgv(ac, NULL, NULL, 4, inc_c, NULL);
    redisAsyncCommandArgv(ac, NULL, NULL, 3, exp, NULL);
    s->scrapes_base = scrapes;
    s->completed_base = completed;
}

static void stats_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stats *s = arg;
    redisAsyncContext *ac = stats_connection(s);
    int64_t now_ms = stats_wall_ms();
    char key[128];
    (void)fd;
    (void)what;

    if (!ac)
        return;
    stats_flush(s, ac, now_ms);
    if (!s->snap_pending) {
        stats_key(key, sizeof(key), s, "snapshot");
        const char *argv[] = { "HGETALL", key };
        if (redisAsyncCommandArgv(ac, stats_snapshot_cb, s, 2, argv, NULL) == REDIS_OK)
            s->snap_pending = true;
    }
    stats_aggregator_tick(s->agg, s->conns, now_ms);
}

struct stats *stats_new(struct event_base *base, const struct config *cfg, const struct metrics *m,
                        const struct metrics_slot *slot, const struct storage *st)
{
    struct stats *s;
    struct timeval tv;
    char host[64] = "localhost";

    if (!cfg->stats_enabled || cfg->storage != CONFIG_STORAGE_REDIS || !(s = calloc(1, sizeof(*s))))
        return NULL;
    s->base = base;
    s->cfg = cfg;
    s->m = m;
    s->slot = slot;
    s->st = st;
    gethostname(host, sizeof(host) - 1);
    snprintf(s->host, sizeof(s->host), "%s", host);
    snprintf(s->holder, sizeof(s->holder), "%s:%ld", host, (long)getpid());
    if (slot)
        s->scrapes_base = slot->requests[METRICS_ROUTE_SCRAPE] + slot->udp_requests[METRICS_UDP_SCRAPE];
    s->agg = stats_aggregator_new(cfg, s->holder);
    s->conns = redis_conns_new(cfg, base, s, stats_lost);
    s->tick = event_new(base, -1, EV_PERSIST, stats_tick_cb, s);
    if (!s->agg || !s->conns || !s->tick) {
        stats_free(s);
        return NULL;
    }
    int ms = stats_aggregator_period_ms(s->agg);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    event_add(s->tick, &tv);
    event_active(s->tick, EV_TIMEOUT, 0); /* connect and try for the lease at once */
    return s;
}

void stats_stop(struct stats *s)
{
    if (!s || !s->tick)
        return;
    event_free(s->tick);
    s->tick = NULL;
    if (s->stats_ac)
        stats_aggregator_release(s->agg, s->conns);
}

void stats_free(struct stats *s)
{
    if (!s)
        return;
    if (s->tick)
        event_free(s->tick);
    s->stats_ac = NULL;
    redis_conns_free(s->conns);        /* waiting routes are answered 503 by their callbacks */
    stats_aggregator_free(s->agg);
    free(s);
}

/* ---- /metrics and /stats -------------------------------------------------------------------- */

void stats_write_prometheus(const struct stats *s, struct evbuffer *out)
{
    const struct stats_snapshot *p = &s->snap;
    int64_t age = p->present ? stats_wall_ms() / 1000 - p->time_s : -1;

    evbuffer_add_printf(out,
                        "# HELP tyto_swarms Swarms with a live peer, every host together (aggregator snapshot).\n"
                        "# TYPE tyto_swarms gauge\ntyto_swarms %llu\n"
                        "# HELP tyto_peers Live peers, every host together (aggregator snapshot).\n"
                        "# TYPE tyto_peers gauge\n"
                        "tyto_peers{family=\"ipv4\",role=\"seeder\"} %llu\n"
                        "tyto_peers{family=\"ipv6\",role=\"seeder\"} %llu\n"
                        "tyto_peers{family=\"ipv4\",role=\"leecher\"} %llu\n"
                        "tyto_peers{family=\"ipv6\",role=\"leecher\"} %llu\n"
                        "# HELP tyto_downloads Completed downloads counted in every swarm, all time.\n"
                        "# TYPE tyto_downloads gauge\ntyto_downloads %llu\n"
                        "# HELP tyto_tracker_announces_per_minute Announces in the last full minute, every host.\n"
                        "# TYPE tyto_tracker_announces_per_minute gauge\ntyto_tracker_announces_per_minute %llu\n"
                        "# HELP tyto_tracker_scrapes_per_minute Scrapes in the last full minute, every host.\n"
                        "# TYPE tyto_tracker_scrapes_per_minute gauge\ntyto_tracker_scrapes_per_minute %llu\n"
                        "# HELP tyto_stats_snapshot_age_seconds Age of the aggregator's snapshot (-1: none yet).\n"
                        "# TYPE tyto_stats_snapshot_age_seconds gauge\ntyto_stats_snapshot_age_seconds %lld\n"
                        "# HELP tyto_stats_aggregator 1 if this worker holds the aggregator lease.\n"
                        "# TYPE tyto_stats_aggregator gauge\ntyto_stats_aggregator %d\n"
                        "# HELP tyto_anomalies Swarms flagged with an anomaly, by kind (README \"Anomalies\").\n"
                        "# TYPE tyto_anomalies gauge\n",
                        (unsigned long long)p->swarms, (unsigned long long)(p->seeders4),
                        (unsigned long long)p->seeders6, (unsigned long long)p->leechers4,
                        (unsigned long long)p->leechers6, (unsigned long long)p->downloaded,
                        (unsigned long long)p->announces_per_min, (unsigned long long)p->scrapes_per_min,
                        (long long)age, stats_aggregator_holding(s->agg) ? 1 : 0);
    for (int k = 0; k < ANOMALY_KINDS; k++)
        evbuffer_add_printf(out, "tyto_anomalies{kind=\"%s\"} %llu\n", anomaly_kind_name((enum anomaly_kind)k),
                            (unsigned long long)p->anomalies[k]);
}

/* A JSON string of s (ASCII control and quote characters escaped). */
static void stats_json_string(struct evbuffer *out, const char *s, size_t len)
{
    evbuffer_add(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            evbuffer_add_printf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            evbuffer_add_printf(out, "\\u%04x", c);
        else
            evbuffer_add(out, &s[i], 1);
    }
    evbuffer_add(out, "\"", 1);
}

void stats_write_json(const struct stats *s, struct evbuffer *out)
{
    const struct stats_snapshot *p = &s->snap;

    if (!p->present) {
        evbuffer_add_printf(out, "{\"snapshot\":false,\"aggregator_here\":%s}",
                            stats_aggregator_holding(s->agg) ? "true" : "false");
        return;
    }
    evbuffer_add_printf(out,
                        "{\"snapshot\":true,\"time\":%lld,\"age_s\":%lld,\"pass_ms\":%lld,\"holder\":",
                        (long long)p->time_s, (long long)(stats_wall_ms() / 1000 - p->time_s), (long long)p->pass_ms);
    stats_json_string(out, p->holder, strlen(p->holder));
    evbuffer_add_printf(out,
                        ",\"aggregator_here\":%s,\"swarms\":%llu,\"peers\":%llu,\"seeders\":%llu,\"leechers\":%llu,"
                        "\"ipv4\":{\"seeders\":%llu,\"leechers\":%llu},\"ipv6\":{\"seeders\":%llu,\"leechers\":%llu},"
                        "\"downloaded\":%llu,\"announces_per_s\":%.2f,\"scrapes_per_s\":%.2f,"
                        "\"completed_per_min\":%llu,\"anomalies\":{",
                        stats_aggregator_holding(s->agg) ? "true" : "false", (unsigned long long)p->swarms,
                        (unsigned long long)p->peers, (unsigned long long)p->seeders, (unsigned long long)p->leechers,
                        (unsigned long long)p->seeders4, (unsigned long long)p->leechers4,
                        (unsigned long long)p->seeders6, (unsigned long long)p->leechers6,
                        (unsigned long long)p->downloaded, (double)p->announces_per_min / 60.0,
                        (double)p->scrapes_per_min / 60.0, (unsigned long long)p->completed_per_min);
    for (int k = 0; k < ANOMALY_KINDS; k++)
        evbuffer_add_printf(out, "%s\"%s\":%llu", k ? "," : "", anomaly_kind_name((enum anomaly_kind)k),
                            (unsigned long long)p->anomalies[k]);
    evbuffer_add(out, "}}", 2);
}

/* ---- routes that wait for Redis ------------------------------------------------------------- */

static void stats_call_free(struct stats_call *c)
{
    event_free(c->timer);
    free(c);
}

static void stats_reply_json_error(struct http_request *req, int status, const char *text)
{
    struct evbuffer *b = http_reply_body(req);
    evbuffer_add(b, "{\"error\":", 9);
    stats_json_string(b, text, strlen(text));
    evbuffer_add(b, "}\n", 2);
    http_reply(req, status, "application/json");
}

/* A route's failure in its own format: a bencoded failure reason for the full scrape (clients
 * read the body), a small HTML page for the status page, JSON for /stats. */
static void stats_call_error(struct stats_call *c, int status, const char *text)
{
    if (c->kind == STATS_CALL_FULL_SCRAPE) {
        announce_write_failure_text(http_reply_body(c->req), text);
        http_reply(c->req, 200, "text/plain");
    } else if (c->kind == STATS_CALL_PAGE) {
        evbuffer_add_printf(http_reply_body(c->req),
                            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tyto</title>"
                            "</head><body><h1>Tyto</h1><p>The statistics cannot be read: %s.</p></body></html>\n",
                            status == 503 ? text : "Redis answered with an error");
        http_reply(c->req, status, "text/html; charset=utf-8");
    } else {
        stats_reply_json_error(c->req, status, text);
    }
}

static void stats_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct stats_call *c = arg;
    (void)fd;
    (void)what;
    if (c->req) {
        /* Nothing could be sent (replied_by_redis already): unavailable; else too slow. */
        stats_call_error(c, 503, c->replied_by_redis ? "storage unavailable" : "storage timeout");
        c->req = NULL;
    }
    if (c->replied_by_redis)
        stats_call_free(c);
}

/* Sends one command for a route; the reply callback answers it. */
static void stats_call_send(struct stats *s, struct stats_call *c, redisCallbackFn *fn, int argc, const char **argv)
{
    /* argv[3] is the first key of the FCALL / EVAL, and every key of one route shares its slot
     * (one swarm's, or {stats}'s): the node that owns it. */
    redisAsyncContext *ac = redis_conns_for_key(s->conns, argv[3]);
    int ms = s->cfg->redis_timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    c->timer = evtimer_new(s->base, stats_call_timeout, c);
    if (!c->timer || !ac || redisAsyncCommandArgv(ac, fn, c, argc, argv, NULL) != REDIS_OK) {
        c->replied_by_redis = true;    /* nothing will call back: the zero timer answers */
        tv.tv_sec = 0;
        tv.tv_usec = 0;
        if (!c->timer) {
            stats_reply_json_error(c->req, 503, "out of memory");
            free(c);
            return;
        }
    }
    evtimer_add(c->timer, &tv);
}

/* The reply callbacks' common start: false when there is no one left to answer. */
static bool stats_call_reply(struct stats_call *c, redisAsyncContext *ac, const redisReply *reply)
{
    c->replied_by_redis = true;
    if (reply) {
        stats_check_library(c->s, ac, reply);
        redis_conns_check(ac, reply);
    }
    if (!c->req) {
        stats_call_free(c);
        return false;
    }
    evtimer_del(c->timer);
    if (c->kind == STATS_CALL_FULL_SCRAPE && reply && reply->type == REDIS_REPLY_ERROR &&
        strstr(reply->str, "LIMITED") != NULL) {
        char reason[128];
        snprintf(reason, sizeof(reason), "full scrape: one every %d s per address, retry later",
                 c->s->cfg->stats_full_scrape_interval_s);
        announce_write_failure_text(http_reply_body(c->req), reason);
        http_reply(c->req, 200, "text/plain");
        stats_call_free(c);
        return false;
    }
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        stats_call_error(c, reply ? 502 : 503, reply ? reply->str : "storage unavailable");
        stats_call_free(c);
        return false;
    }
    return true;
}

/* One swarm's figures (README "Statistics"): live counts from the sets, counters of its stats
 * hash summed over the minutes and intervals that count, the aggregator's census and flags. */
static void stats_write_swarm(struct evbuffer *b, const struct stats_call *c, const redisReply *r, int interval_s,
                              int min_interval_s)
{
    const redisReply *h = r->element[0];
    struct stats_fields sf;

    stats_fields_parse(h, c->now_s, interval_s, &sf, NULL, NULL);
    evbuffer_add_printf(b, "{\"info_hash\":\"%s\",\"seeders\":%llu,\"leechers\":%llu,\"downloaded\":%llu", c->hex,
                        (unsigned long long)stats_u64(r->element[1]), (unsigned long long)stats_u64(r->element[2]),
                        (unsigned long long)stats_u64(r->element[3]));
    evbuffer_add_printf(b,
                        ",\"first_seen\":%llu,\"last_seen\":%lld,\"announces_last_interval\":%llu,"
                        "\"announces_last_hour\":%llu,\"interval_s\":%d,\"min_interval_s\":%d,"
                        "\"fast_announces\":%llu,\"phantom_uploads\":%llu",
                        (unsigned long long)sf.first_s,
                        (long long)(sf.last_minute * 60 > sf.first_s ? sf.last_minute * 60 : sf.first_s),
                        (unsigned long long)sf.announces_interval, (unsigned long long)sf.announces_hour,
                        interval_s, min_interval_s, (unsigned long long)sf.fast, (unsigned long long)sf.phantom);
    /* Client mix: peers by client, each counted at its first announce of an interval. */
    evbuffer_add(b, ",\"clients\":{", 12);
    for (unsigned i = 0; i < sf.nclients; i++) {
        const char *code = sf.clients[i].code, *name = peer_client_name(code, strlen(code));

        evbuffer_add_printf(b, "%s", i ? "," : "");
        stats_json_string(b, name ? name : code, strlen(name ? name : code));
        evbuffer_add_printf(b, ":%llu", (unsigned long long)sf.clients[i].peers);
    }
    evbuffer_add(b, "}", 1);
    /* What the aggregator's last census found (absent until its first pass over the swarm). */
    static const char *const census[] = { "seeders4", "seeders6", "leechers4", "leechers6", "max_per_address",
                                          "checked" };
    for (size_t f = 0; f < sizeof(census) / sizeof(census[0]); f++)
        for (size_t i = 0; i + 1 < h->elements; i += 2)
            if (strcmp(h->element[i]->str, census[f]) == 0)
                evbuffer_add_printf(b, ",\"%s\":%llu", census[f], (unsigned long long)stats_u64(h->element[i + 1]));
    evbuffer_add(b, ",\"anomalies\":{", 14);
    bool any = false;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *n = h->element[i], *v = h->element[i + 1];
        if (n->len <= 8 || strncmp(n->str, "anomaly:", 8) != 0 || v->type != REDIS_REPLY_STRING)
            continue;
        evbuffer_add_printf(b, "%s", any ? "," : "");
        stats_json_string(b, n->str + 8, n->len - 8);
        evbuffer_add(b, ":", 1);
        stats_json_string(b, v->str, v->len);
        any = true;
    }
    evbuffer_add(b, "}}\n", 3);
}

static void stats_swarm_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct stats_call *c = privdata;
    redisReply *r = reply_ptr;

    if (!stats_call_reply(c, ac, r))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->type != REDIS_REPLY_ARRAY) {
        stats_reply_json_error(c->req, 502, "unexpected reply from Redis");
    } else {
        for (size_t i = 0; i < r->element[0]->elements; i++)
            if (r->element[0]->element[i]->type != REDIS_REPLY_STRING) {
                stats_reply_json_error(c->req, 502, "unexpected reply from Redis");
                stats_call_free(c);
                return;
            }
        stats_write_swarm(http_reply_body(c->req), c, r, c->s->cfg->interval_s, c->s->cfg->min_interval_s);
        http_reply(c->req, 200, "application/json");
    }
    stats_call_free(c);
}

static struct stats_call *stats_call_new(struct stats *s, struct http_request *req, enum stats_call_kind kind)
{
    struct stats_call *c = calloc(1, sizeof(*c));

    if (!c) {
        stats_reply_json_error(req, 503, "out of memory");
        return NULL;
    }
    c->s = s;
    c->req = req;
    c->kind = kind;
    c->now_s = stats_wall_ms() / 1000;
    return c;
}

void stats_handle_swarm(struct stats *s, struct http_request *req, const char *hex)
{
    struct stats_call *c;
    char k[4][160], now[24];
    static const char *const what[] = { "stats", "seeders", "leechers", "info" };

    for (int i = 0; i < 40; i++)
        if (!hex[i] || !((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'))) {
            stats_reply_json_error(req, 400, "info_hash must be 40 lowercase hex digits");
            return;
        }
    if (hex[40] != '\0') {
        stats_reply_json_error(req, 400, "info_hash must be 40 lowercase hex digits");
        return;
    }
    if (!(c = stats_call_new(s, req, STATS_CALL_SWARM)))
        return;
    memcpy(c->hex, hex, 41);
    for (int i = 0; i < 4; i++)
        snprintf(k[i], sizeof(k[i]), "%s{%s}:%s", s->cfg->redis_prefix, hex, what[i]);
    snprintf(now, sizeof(now), "%lld", (long long)c->now_s);
    const char *argv[] = { "FCALL", "tyto_swarm_stats", "4", k[0], k[1], k[2], k[3], now };
    stats_call_send(s, c, stats_swarm_cb, 8, argv);
}

/* ---- the status page ------------------------------------------------------------------------ */

/* "t swarms peers seeders leechers announces_per_min scrapes_per_min" (lib/stats_aggregator.c). */
static size_t stats_parse_points(const redisReply *r, struct status_point *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < cap; i++) {
        unsigned long long t, sw, pe, se, le, an;
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            sscanf(r->element[i]->str, "%llu %llu %llu %llu %llu %llu", &t, &sw, &pe, &se, &le, &an) == 6) {
            out[n].t_s = (int64_t)t;
            out[n].swarms = sw;
            out[n].peers = pe;
            out[n].announces_per_s = (double)an / 60.0;
            n++;
        }
    }
    return n;
}

/* "seeders leechers downloaded announces flags reason" of <prefix>{stats}:board. */
static size_t stats_parse_board(const redisReply *hexes, const redisReply *values, struct status_swarm *out,
                                size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < hexes->elements && i < values->elements && n < cap; i++) {
        const redisReply *h = hexes->element[i], *v = values->element[i];
        unsigned long long se, le, dl, an;
        unsigned flags;
        int used = 0;
        if (h->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            sscanf(v->str, "%llu %llu %llu %llu %u %n", &se, &le, &dl, &an, &flags, &used) < 5)
            continue;
        snprintf(out[n].hex, sizeof(out[n].hex), "%s", h->str);
        out[n].seeders = se;
        out[n].leechers = le;
        out[n].downloaded = dl;
        out[n].announces = an;
        out[n].flags = flags;
        snprintf(out[n].reason, sizeof(out[n].reason), "%s", used > 0 ? v->str + used : "");
        n++;
    }
    return n;
}

static void stats_page_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct stats_call *c = privdata;
    struct stats *s = c->s;
    redisReply *r = reply_ptr;

    if (!stats_call_reply(c, ac, r))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
        stats_call_error(c, 502, "unexpected reply from Redis");
        stats_call_free(c);
        return;
    }
    for (size_t i = 0; i < 7; i++)
        if (r->element[i]->type != REDIS_REPLY_ARRAY) {
            stats_call_error(c, 502, "unexpected reply from Redis");
            stats_call_free(c);
            return;
        }
    struct stats_snapshot snap;
    static struct status_point day[1500], month[800];
    struct status_swarm busiest[STATS_PAGE_SWARMS], flagged[STATS_PAGE_SWARMS];
    struct status_worker workers[64];
    struct status_view v = { 0 };
    size_t nw = 0;

    stats_parse_snapshot(&snap, r->element[0]);
    v.now_s = c->now_s;
    v.have_snapshot = snap.present;
    v.snapshot_s = snap.time_s;
    v.aggregator = snap.holder;
    v.swarms = snap.swarms;
    v.peers = snap.peers;
    v.seeders4 = snap.seeders4;
    v.seeders6 = snap.seeders6;
    v.leechers4 = snap.leechers4;
    v.leechers6 = snap.leechers6;
    v.downloaded = snap.downloaded;
    v.announces_per_s = (double)snap.announces_per_min / 60.0;
    v.scrapes_per_s = (double)snap.scrapes_per_min / 60.0;
    memcpy(v.anomalies, snap.anomalies, sizeof(v.anomalies));
    v.day = day;
    v.nday = stats_parse_points(r->element[1], day, sizeof(day) / sizeof(day[0]));
    v.month = month;
    v.nmonth = stats_parse_points(r->element[2], month, sizeof(month) / sizeof(month[0]));
    v.busiest = busiest;
    v.nbusiest = stats_parse_board(r->element[3], r->element[5], busiest, STATS_PAGE_SWARMS);
    v.flagged = flagged;
    v.nflagged = stats_parse_board(r->element[4], r->element[6], flagged, STATS_PAGE_SWARMS);
    for (int i = 0; s->m && i < s->m->nslots && nw < sizeof(workers) / sizeof(workers[0]); i++) {
        const struct metrics_slot *sl = &s->m->slot[i];
        uint64_t req = 0;
        if (sl->pid == 0)
            continue;
        for (int k = 0; k < METRICS_ROUTE_COUNT; k++)
            req += sl->requests[k];
        for (int k = 0; k < METRICS_UDP_ACTIONS; k++)
            req += sl->udp_requests[k];
        workers[nw++] = (struct status_worker){ .slot = i, .pid = sl->pid, .ready = sl->ready != 0,
                                                .generation = sl->generation, .requests = req,
                                                .open_connections = sl->open_connections,
                                                .inflight = sl->inflight };
    }
    v.workers = workers;
    v.nworkers = nw;
    v.host = s->host;
    status_page_render(&v, http_reply_body(c->req));
    http_reply(c->req, 200, "text/html; charset=utf-8");
    stats_call_free(c);
}

void stats_handle_page(struct stats *s, struct http_request *req)
{
    struct stats_call *c = stats_call_new(s, req, STATS_CALL_PAGE);
    static const char *const what[] = { "snapshot", "minutes", "hours", "busiest", "flagged", "board" };
    char k[6][128], day[24], month[24], n[8];

    if (!c)
        return;
    for (int i = 0; i < 6; i++)
        snprintf(k[i], sizeof(k[i]), "%s{stats}:%s", s->cfg->redis_prefix, what[i]);
    snprintf(day, sizeof(day), "%lld", (long long)(c->now_s - 86400));
    snprintf(month, sizeof(month), "%lld", (long long)(c->now_s - 31 * 86400));
    snprintf(n, sizeof(n), "%d", STATS_PAGE_SWARMS);
    const char *argv[] = { "FCALL", "tyto_board", "6", k[0], k[1], k[2], k[3], k[4], k[5], day, month, n };
    stats_call_send(s, c, stats_page_cb, 12, argv);
}

/* ---- full scrape ------------------------------------------------------------------------------ */

static void stats_full_scrape_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct stats_call *c = privdata;
    redisReply *r = reply_ptr;
    struct evbuffer *b;

    if (!stats_call_reply(c, ac, r))
        return;
    b = http_reply_body(c->req);
    if (r->type == REDIS_REPLY_STRING)
        evbuffer_add(b, r->str, r->len);
    else
        announce_write_failure_text(b, "full scrape is not ready yet: the statistics aggregator has not "
                                       "finished a pass");
    http_reply(c->req, 200, "text/plain");
    stats_call_free(c);
}

/* One full scrape an address per stats.full_scrape_interval_s, for the whole tracker: a key
 * per address that asked (SET NX EX), in the {stats} slot with the body it guards. */
static const char stats_full_scrape_lua[] =
    "if not redis.call('SET',KEYS[2],'1','NX','EX',ARGV[1]) then return redis.error_reply('ERR LIMITED') end "
    "return redis.call('GET',KEYS[1])";

void stats_handle_full_scrape(struct stats *s, struct http_request *req, const struct peer_addr *client,
                              int64_t now_s)
{
    struct stats_call *c;
    char key[128], seen[192], addr[64], secs[16];
    (void)now_s;

    if (!inet_ntop(client->family, client->addr, addr, sizeof(addr)))
        snprintf(addr, sizeof(addr), "?");
    if (!(c = stats_call_new(s, req, STATS_CALL_FULL_SCRAPE)))
        return;
    snprintf(key, sizeof(key), "%s{stats}:fullscrape", s->cfg->redis_prefix);
    snprintf(seen, sizeof(seen), "%s{stats}:fullscrape:%s", s->cfg->redis_prefix, addr);
    snprintf(secs, sizeof(secs), "%d", s->cfg->stats_full_scrape_interval_s);
    const char *argv[] = { "EVAL", stats_full_scrape_lua, "2", key, seen, secs };
    stats_call_send(s, c, stats_full_scrape_cb, 6, argv);
}
