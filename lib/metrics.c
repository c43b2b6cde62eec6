/* Shared-memory counters and their Prometheus / JSON renderings. Slots are written without locks
 * by their single owner; readers may see a counter a moment old, which monitoring tolerates. */
#include "lib/metrics.h"

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/buffer.h>

static const uint64_t metrics_bucket_us[METRICS_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,
};

static const char *const metrics_route_names[METRICS_ROUTE_COUNT] = {
    "announce", "scrape", "healthz", "metrics", "stats", "not_found",
};

struct metrics *metrics_new(int nslots)
{
    size_t len = offsetof(struct metrics, slot) + (size_t)nslots * sizeof(struct metrics_slot);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct metrics *m = p;
    memset(m, 0, len);
    m->nslots = nslots;
    m->map_len = len;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m)
        munmap(m, m->map_len);
}

void metrics_count_request(struct metrics_slot *s, enum metrics_route route, uint64_t latency_us)
{
    s->requests[route]++;
    int b = 0;
    while (b < METRICS_LATENCY_BUCKETS && latency_us > metrics_bucket_us[b])
        b++;
    s->latency_bucket[b]++;
    s->latency_sum_us += latency_us;
    s->latency_count++;
}

/* Sums every slot into one. */
static void metrics_total(const struct metrics *m, struct metrics_slot *t)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < m->nslots; i++) {
        const struct metrics_slot *s = &m->slot[i];
        for (int r = 0; r < METRICS_ROUTE_COUNT; r++)
            t->requests[r] += s->requests[r];
        for (int e = 0; e < ANNOUNCE_ERR_COUNT; e++)
            t->failures[e] += s->failures[e];
        for (int b = 0; b <= METRICS_LATENCY_BUCKETS; b++)
            t->latency_bucket[b] += s->latency_bucket[b];
        t->latency_sum_us += s->latency_sum_us;
        t->latency_count += s->latency_count;
        t->storage_round_trips += s->storage_round_trips;
        t->storage_commands += s->storage_commands;
        t->storage_errors += s->storage_errors;
        t->storage_timeouts += s->storage_timeouts;
        t->storage_reconnects += s->storage_reconnects;
        t->storage_redirects += s->storage_redirects;
        t->http_slow_closes += s->http_slow_closes;
        t->access_log_dropped += s->access_log_dropped;
        for (int a = 0; a < METRICS_UDP_ACTIONS; a++)
            t->udp_requests[a] += s->udp_requests[a];
        for (int e = 0; e < UDP_ERR_COUNT; e++)
            t->udp_malformed[e] += s->udp_malformed[e];
        for (int r = 0; r < METRICS_UDP_REFUSALS; r++)
            t->udp_refused[r] += s->udp_refused[r];
        t->http_output_bytes += s->http_output_bytes;
        t->open_connections += s->open_connections;
        t->inflight += s->inflight;
        t->storage_backlog += s->storage_backlog;
        t->started += s->started;
    }
}

static void metrics_counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

/* Worker processes alive (any generation) and, of those, serving. */
static void metrics_count_workers(const struct metrics *m, int *live, int *ready)
{
    *live = *ready = 0;
    for (int i = 0; i < m->nslots; i++) {
        *live += m->slot[i].pid != 0;
        *ready += m->slot[i].pid != 0 && m->slot[i].ready;
    }
}

#define METRICS_MAX_MASTERS 8           /* distinct addresses listed, at most */

/* A slot's master address as it reads now: the worker may be rewriting it (shared memory, no
 * lock), so anything but a terminated "host:port" of address characters is skipped this time. */
static bool metrics_master_of(const struct metrics_slot *s, char *buf, size_t cap)
{
    size_t n = 0;

    memcpy(buf, (const char *)s->redis_master, cap);
    for (; n < cap && buf[n] != '\0'; n++)
        if (!isalnum((unsigned char)buf[n]) && strchr(".:-[]", buf[n]) == NULL)
            return false;
    return n > 0 && n < cap;
}

/* Sentinel mode: the master each live worker resolved last, one series an address with the
 * number of workers on it (two addresses while the workers move over after a failover). Nothing
 * without Sentinel. */
static void metrics_write_sentinel_master(const struct metrics *m, struct evbuffer *out)
{
    char seen[METRICS_MAX_MASTERS][sizeof(m->slot[0].redis_master)];
    int count[METRICS_MAX_MASTERS], nseen = 0;

    for (int i = 0; i < m->nslots; i++) {
        char a[sizeof(m->slot[0].redis_master)];
        int k;

        if (m->slot[i].pid == 0 || !metrics_master_of(&m->slot[i], a, sizeof(a)))
            continue;
        for (k = 0; k < nseen && strcmp(seen[k], a) != 0; k++)
            ;
        if (k == nseen) {
            if (nseen == METRICS_MAX_MASTERS)
                continue;
            memcpy(seen[nseen], a, sizeof(a));
            count[nseen++] = 0;
        }
        count[k]++;
    }
    if (nseen == 0)
        return;
    evbuffer_add_printf(out, "# HELP tyto_redis_sentinel_master Workers whose last Sentinel lookup named "
                             "this Redis master.\n# TYPE tyto_redis_sentinel_master gauge\n");
    for (int k = 0; k < nseen; k++)
        evbuffer_add_printf(out, "tyto_redis_sentinel_master{address=\"%s\"} %d\n", seen[k], count[k]);
}

void metrics_write_prometheus(const struct metrics *m, struct evbuffer *out)
{
    struct metrics_slot t;
    metrics_total(m, &t);

    evbuffer_add_printf(out, "# HELP tyto_requests_total HTTP requests answered, by route.\n"
                             "# TYPE tyto_requests_total counter\n");
    for (int r = 0; r < METRICS_ROUTE_COUNT; r++)
        evbuffer_add_printf(out, "tyto_requests_total{route=\"%s\"} %llu\n", metrics_route_names[r],
                            (unsigned long long)t.requests[r]);

    evbuffer_add_printf(out, "# HELP tyto_failures_total Bencoded failure replies, by reason.\n"
                             "# TYPE tyto_failures_total counter\n");
    for (int e = 1; e < ANNOUNCE_ERR_COUNT; e++) {
        /* Label values are the reason texts; they hold no quote or backslash. */
        evbuffer_add_printf(out, "tyto_failures_total{reason=\"%s\"} %llu\n", announce_reason((enum announce_err)e),
                            (unsigned long long)t.failures[e]);
    }

    evbuffer_add_printf(out, "# HELP tyto_request_duration_seconds Time from request to reply.\n"
                             "# TYPE tyto_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (int b = 0; b < METRICS_LATENCY_BUCKETS; b++) {
        cumulative += t.latency_bucket[b];
        evbuffer_add_printf(out, "tyto_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            (double)metrics_bucket_us[b] / 1e6, (unsigned long long)cumulative);
    }
    cumulative += t.latency_bucket[METRICS_LATENCY_BUCKETS];
    evbuffer_add_printf(out, "tyto_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                             "tyto_request_duration_seconds_sum %.6f\n"
                             "tyto_request_duration_seconds_count %llu\n",
                        (unsigned long long)cumulative, (double)t.latency_sum_us / 1e6,
                        (unsigned long long)t.latency_count);

    metrics_counter(out, "tyto_storage_round_trips_total", "Pipelines written to storage.", t.storage_round_trips);
    metrics_counter(out, "tyto_storage_commands_total", "Commands sent to storage.", t.storage_commands);
    metrics_counter(out, "tyto_storage_errors_total", "Storage requests that failed.", t.storage_errors);
    metrics_counter(out, "tyto_storage_timeouts_total", "Storage requests that timed out.", t.storage_timeouts);
    metrics_counter(out, "tyto_storage_reconnects_total", "Storage reconnections.", t.storage_reconnects);
    metrics_counter(out, "tyto_storage_redirects_total",
                    "Redis Cluster: sends a node did not run (MOVED, ASK, TRYAGAIN, ...), then resent.",
                    t.storage_redirects);
    metrics_counter(out, "tyto_worker_starts_total", "Worker processes started.", t.started);
    metrics_write_sentinel_master(m, out);
    metrics_counter(out, "tyto_http_slow_closes_total",
                    "Connections cut as slow readers (past http.max_output_bytes or http.write_timeout_ms).",
                    t.http_slow_closes);
    metrics_counter(out, "tyto_access_log_dropped_total", "Access-log lines dropped: the log did not keep up.",
                    t.access_log_dropped);

    static const char *const udp_actions[METRICS_UDP_ACTIONS] = { "connect", "announce", "scrape" };
    static const char *const udp_refusals[METRICS_UDP_REFUSALS] = {
        "connection_id_forged", "connection_id_expired", "connection_id_future", "source_port_0", "oversize",
        "path",
    };
    evbuffer_add_printf(out, "# HELP tyto_udp_requests_total UDP (BEP 15) requests answered, by action.\n"
                             "# TYPE tyto_udp_requests_total counter\n");
    for (int a = 0; a < METRICS_UDP_ACTIONS; a++)
        evbuffer_add_printf(out, "tyto_udp_requests_total{action=\"%s\"} %llu\n", udp_actions[a],
                            (unsigned long long)t.udp_requests[a]);
    evbuffer_add_printf(out, "# HELP tyto_udp_malformed_total UDP datagrams that do not decode, by kind.\n"
                             "# TYPE tyto_udp_malformed_total counter\n");
    for (int e = 1; e < UDP_ERR_COUNT; e++)
        evbuffer_add_printf(out, "tyto_udp_malformed_total{kind=\"%s\"} %llu\n", udp_err_name((enum udp_err)e),
                            (unsigned long long)t.udp_malformed[e]);
    evbuffer_add_printf(out, "# HELP tyto_udp_refused_total UDP datagrams refused or dropped, by why.\n"
                             "# TYPE tyto_udp_refused_total counter\n");
    for (int r = 0; r < METRICS_UDP_REFUSALS; r++)
        evbuffer_add_printf(out, "tyto_udp_refused_total{why=\"%s\"} %llu\n", udp_refusals[r],
                            (unsigned long long)t.udp_refused[r]);

    evbuffer_add_printf(out, "# HELP tyto_inflight_requests Requests waiting for storage.\n"
                             "# TYPE tyto_inflight_requests gauge\ntyto_inflight_requests %lld\n",
                        (long long)t.inflight);
    evbuffer_add_printf(out, "# HELP tyto_storage_backlog_requests Requests answered (timed out) whose "
                             "storage replies are still owed; counted with the in-flight ones against "
                             "http.max_pending.\n# TYPE tyto_storage_backlog_requests gauge\n"
                             "tyto_storage_backlog_requests %lld\n", (long long)t.storage_backlog);
    evbuffer_add_printf(out, "# HELP tyto_open_connections Open client connections.\n"
                             "# TYPE tyto_open_connections gauge\ntyto_open_connections %lld\n",
                        (long long)t.open_connections);
    evbuffer_add_printf(out, "# HELP tyto_http_output_bytes Reply bytes held for clients that do not keep "
                             "up (each worker's bounded by http.max_output_bytes).\n"
                             "# TYPE tyto_http_output_bytes gauge\ntyto_http_output_bytes %lld\n",
                        (long long)t.http_output_bytes);

    int live, ready;
    metrics_count_workers(m, &live, &ready);
    evbuffer_add_printf(out, "# HELP tyto_workers Worker processes alive (every generation).\n"
                             "# TYPE tyto_workers gauge\ntyto_workers %d\n"
                             "# HELP tyto_workers_ready Worker processes serving.\n"
                             "# TYPE tyto_workers_ready gauge\ntyto_workers_ready %d\n", live, ready);

    evbuffer_add_printf(out, "# HELP tyto_worker_requests_total HTTP requests answered, by worker slot.\n"
                             "# TYPE tyto_worker_requests_total counter\n");
    for (int i = 0; i < m->nslots; i++) {
        if (m->slot[i].started == 0)
            continue; /* never used: the table has room for reload generations */
        uint64_t n = 0;
        for (int r = 0; r < METRICS_ROUTE_COUNT; r++)
            n += m->slot[i].requests[r];
        evbuffer_add_printf(out, "tyto_worker_requests_total{worker=\"%d\"} %llu\n", i, (unsigned long long)n);
    }
    evbuffer_add_printf(out, "# HELP tyto_worker_up 1 while a worker process holds the slot.\n"
                             "# TYPE tyto_worker_up gauge\n");
    for (int i = 0; i < m->nslots; i++)
        if (m->slot[i].started != 0)
            evbuffer_add_printf(out, "tyto_worker_up{worker=\"%d\"} %d\n", i, m->slot[i].pid != 0);
}

void metrics_write_json(const struct metrics *m, struct evbuffer *out)
{
    struct metrics_slot t;
    metrics_total(m, &t);
    /* Live workers, not the slot table's size: the table has room for two generations. */
    int live, ready;
    metrics_count_workers(m, &live, &ready);
    evbuffer_add_printf(out, "{\"workers\":%d,\"ready\":%d,\"generations\":{", live, ready);
    /* At most a few generations are alive at once (serving, starting, draining). */
    int first = 1;
    for (int i = 0; i < m->nslots; i++) {
        if (m->slot[i].pid == 0)
            continue;
        uint64_t g = m->slot[i].generation;
        int seen = 0, n = 0;
        for (int j = 0; j < m->nslots; j++) {
            if (m->slot[j].pid == 0 || m->slot[j].generation != g)
                continue;
            if (j < i) {
                seen = 1;
                break;
            }
            n++;
        }
        if (!seen) {
            evbuffer_add_printf(out, "%s\"%llu\":%d", first ? "" : ",", (unsigned long long)g, n);
            first = 0;
        }
    }
    evbuffer_add_printf(out, "},\"requests\":{");
    for (int r = 0; r < METRICS_ROUTE_COUNT; r++)
        evbuffer_add_printf(out, "%s\"%s\":%llu", r ? "," : "", metrics_route_names[r],
                            (unsigned long long)t.requests[r]);
    uint64_t failures = 0;
    for (int e = 0; e < ANNOUNCE_ERR_COUNT; e++)
        failures += t.failures[e];
    evbuffer_add_printf(out,
                        "},\"failures\":%llu,\"storage\":{\"round_trips\":%llu,\"commands\":%llu,"
                        "\"errors\":%llu,\"timeouts\":%llu,\"reconnects\":%llu},"
                        "\"http\":{\"output_bytes\":%lld,\"slow_closes\":%llu},\"access_log_dropped\":%llu,"
                        "\"inflight\":%lld,\"backlog\":%lld,\"mean_latency_us\":%llu}\n",
                        (unsigned long long)failures, (unsigned long long)t.storage_round_trips,
                        (unsigned long long)t.storage_commands, (unsigned long long)t.storage_errors,
                        (unsigned long long)t.storage_timeouts, (unsigned long long)t.storage_reconnects,
                        (long long)t.http_output_bytes, (unsigned long long)t.http_slow_closes,
                        (unsigned long long)t.access_log_dropped, (long long)t.inflight, (long long)t.storage_backlog,
                        (unsigned long long)(t.latency_count ? t.latency_sum_us / t.latency_count : 0));
}
