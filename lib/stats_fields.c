/* The stats hash's fields, read once for every reader (lib/stats_fields.h). */
#include "lib/stats_fields.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t stats_fields_value(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer > 0 ? (uint64_t)e->integer : 0;
    if (e->type == REDIS_REPLY_STRING)
        return strtoull(e->str, NULL, 10);
    return 0;
}

/* Parses "<digits>" right after prefix; *end is what follows. False if name is not prefix + a
 * number. */
static bool stats_fields_number(const char *name, const char *prefix, int64_t *out, const char **end)
{
    size_t plen = strlen(prefix);
    char *e;

    if (strncmp(name, prefix, plen) != 0 || name[plen] < '0' || name[plen] > '9')
        return false;
    *out = strtoll(name + plen, &e, 10);
    *end = e;
    return true;
}

static void stats_fields_client(struct stats_fields *out, const char *code, uint64_t peers)
{
    size_t len = strlen(code);
    unsigned i;

    if (len == 0 || len >= PEER_CLIENT_CODE_MAX)
        return;
    for (i = 0; i < out->nclients; i++)
        if (strcmp(out->clients[i].code, code) == 0) {
            if (peers > out->clients[i].peers)
                out->clients[i].peers = peers;
            return;
        }
    if (out->nclients == STATS_FIELDS_CLIENTS)
        return;
    memcpy(out->clients[out->nclients].code, code, len + 1);
    out->clients[out->nclients++].peers = peers;
}

void stats_fields_parse(const redisReply *hash, int64_t now_s, int interval_s, struct stats_fields *out,
                        stats_fields_stale_cb *stale, void *arg)
{
    int64_t now_m = now_s / 60, k = now_s / (interval_s > 0 ? interval_s : 1);
    int64_t since_m = (now_s - interval_s) / 60;
    uint64_t fast[2] = { 0, 0 }, phantom[2] = { 0, 0 };

    memset(out, 0, sizeof(*out));
    if (!hash || hash->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < hash->elements; i += 2) {
        const redisReply *name = hash->element[i];
        uint64_t v = stats_fields_value(hash->element[i + 1]);
        const char *n, *end;
        int64_t num;

        if (!name || name->type != REDIS_REPLY_STRING || !hash->element[i + 1])
            continue;
        n = name->str;
        if ((stats_fields_number(n, "s:", &num, &end) || stats_fields_number(n, "l:", &num, &end)) && !*end) {
            int64_t age = now_m - num;

            if (num > out->last_minute)
                out->last_minute = num;
            if (age >= ANOMALY_MINUTES) {
                if (stale)
                    stale(n, name->len, arg);
                continue;
            }
            if (age >= 0)
                out->minute[age] += (uint32_t)v;
            out->announces_hour += v;
            if (num >= since_m)
                out->announces_interval += v;
        } else if (stats_fields_number(n, "c:", &num, &end) && *end == ':') {
            if (num < k - 1) {
                if (stale)
                    stale(n, name->len, arg);
            } else if (num <= k) {
                stats_fields_client(out, end + 1, v);
            }
        } else if ((stats_fields_number(n, "fast:", &num, &end) || stats_fields_number(n, "phantom:", &num, &end)) &&
                   !*end) {
            if (num < k - 1) {
                if (stale)
                    stale(n, name->len, arg);
            } else if (num <= k) {
                (n[0] == 'f' ? fast : phantom)[k - num] = v;
            }
        } else if (strcmp(n, "first") == 0) {
            out->first_s = (int64_t)v;
        }
    }
    out->fast = fast[0] > fast[1] ? fast[0] : fast[1];
    out->phantom = phantom[0] > phantom[1] ? phantom[0] : phantom[1];
}
