/* Swarm anomaly rules: five pure checks over one swarm's figures, each giving a flag and a reason
 * a person can read. The statistics aggregator calls anomaly_check once per swarm per pass; the
 * names and sentences below are the only home of each kind's definition. */
#include "lib/anomaly.h"

#include <stdio.h>
#include <string.h>

/* Fewer full minutes of history than this and a swarm is too young to have a rate to compare. */
#define ANOMALY_SPIKE_MIN_BASELINE 5

static const struct {
    const char *name;
    const char *text;
} anomaly_kinds[ANOMALY_KINDS] = {
    [ANOMALY_FAST_ANNOUNCE] = { "fast_announce",
        "Peers re-announced sooner than the minimum interval, without an event, many times in the last interval." },
    [ANOMALY_CROWDED_ADDRESS] = { "crowded_address",
        "One IP address holds many live peers (different ports) of the swarm." },
    [ANOMALY_STUCK_LEECHERS] = { "stuck_leechers",
        "Many leechers, in a swarm seen for long, and not one download has ever completed." },
    [ANOMALY_PHANTOM_UPLOAD] = { "phantom_upload",
        "Seeders reported uploading while the swarm had no leecher to upload to." },
    [ANOMALY_ANNOUNCE_SPIKE] = { "announce_spike",
        "The last full minute had many times more announces than the swarm's average minute before it." },
};

const char *anomaly_kind_name(enum anomaly_kind k)
{
    return (unsigned)k < ANOMALY_KINDS ? anomaly_kinds[k].name : "unknown";
}

const char *anomaly_kind_text(enum anomaly_kind k)
{
    return (unsigned)k < ANOMALY_KINDS ? anomaly_kinds[k].text : "Unknown anomaly.";
}

int anomaly_kind_parse(const char *name, size_t len)
{
    for (int k = 0; k < ANOMALY_KINDS; k++)
        if (strlen(anomaly_kinds[k].name) == len && memcmp(anomaly_kinds[k].name, name, len) == 0)
            return k;
    return -1;
}

/* "45 s", "12 min", "26 h", "9 d": whole units, floored, switching unit at two of the next. */
static void anomaly_duration(char *buf, size_t cap, int64_t d)
{
    if (d < 120)
        snprintf(buf, cap, "%lld s", (long long)d);
    else if (d < 2 * 3600)
        snprintf(buf, cap, "%lld min", (long long)(d / 60));
    else if (d < 2 * 86400)
        snprintf(buf, cap, "%lld h", (long long)(d / 3600));
    else
        snprintf(buf, cap, "%lld d", (long long)(d / 86400));
}

static const char *anomaly_s(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

/* Mean announces a minute over minute[2..] that started at or after first_seen (minutes before it
 * hold 0 and would drag the mean down); *n gets how many minutes counted. */
static double anomaly_baseline(const struct anomaly_swarm *s, unsigned *n)
{
    uint64_t sum = 0;
    int64_t this_min = s->now_s / 60;

    *n = 0;
    for (int i = 2; i < ANOMALY_MINUTES; i++) {
        if (s->first_seen_s > 0 && (this_min - i) * 60 < s->first_seen_s)
            break;              /* older minutes start earlier still */
        sum += s->minute[i];
        (*n)++;
    }
    return *n ? (double)sum / *n : 0.0;
}

static void anomaly_spike(const struct anomaly_limits *lim, const struct anomaly_swarm *s, struct anomaly_result *out)
{
    unsigned n;
    double base = anomaly_baseline(s, &n);
    uint32_t last = s->minute[1];
    /* Below 1/min a ratio says nothing (0.1 -> 3 would be 30x): compare with at least 1/min. */
    double ref = base > 1.0 ? base : 1.0;
    char span[32];

    if (lim->spike_min == 0 || lim->spike_factor <= 0 || n < ANOMALY_SPIKE_MIN_BASELINE)
        return;
    if (last < lim->spike_min || last < lim->spike_factor * ref)
        return;
    if (n == ANOMALY_MINUTES - 2)
        snprintf(span, sizeof(span), "the hour before");
    else
        snprintf(span, sizeof(span), "the %u minutes before", n);
    out->flags |= 1u << ANOMALY_ANNOUNCE_SPIKE;
    snprintf(out->reason[ANOMALY_ANNOUNCE_SPIKE], ANOMALY_REASON_MAX,
             "%u announce%s in the last minute, %.1fx the %.1f/min of %s",
             (unsigned)last, anomaly_s(last), last / ref, base, span);
}

unsigned anomaly_check(const struct anomaly_limits *lim, const struct anomaly_swarm *s, struct anomaly_result *out)
{
    memset(out, 0, sizeof(*out));

    if (lim->fast_announces && s->fast_announces >= lim->fast_announces) {
        out->flags |= 1u << ANOMALY_FAST_ANNOUNCE;
        snprintf(out->reason[ANOMALY_FAST_ANNOUNCE], ANOMALY_REASON_MAX,
                 "%u announce%s sooner than min interval in the last interval",
                 s->fast_announces, anomaly_s(s->fast_announces));
    }
    if (lim->peers_per_address && s->max_peers_per_address >= lim->peers_per_address) {
        /* The field may be full to its last byte: never read past it. */
        int alen = (int)strnlen(s->crowded_address, sizeof(s->crowded_address));
        out->flags |= 1u << ANOMALY_CROWDED_ADDRESS;
        snprintf(out->reason[ANOMALY_CROWDED_ADDRESS], ANOMALY_REASON_MAX, "address %.*s holds %u peer%s",
                 alen ? alen : 1, alen ? s->crowded_address : "?", s->max_peers_per_address,
                 anomaly_s(s->max_peers_per_address));
    }
    /* Both thresholds are needed: with no age limit every new swarm would be "stuck". */
    if (lim->stuck_leechers && lim->stuck_age_s > 0 && s->leechers >= lim->stuck_leechers &&
        s->downloaded == 0 && s->first_seen_s > 0 && s->now_s - s->first_seen_s >= lim->stuck_age_s) {
        char age[24];
        anomaly_duration(age, sizeof(age), s->now_s - s->first_seen_s);
        out->flags |= 1u << ANOMALY_STUCK_LEECHERS;
        snprintf(out->reason[ANOMALY_STUCK_LEECHERS], ANOMALY_REASON_MAX,
                 "%llu leecher%s, no completed download in %s", (unsigned long long)s->leechers,
                 anomaly_s(s->leechers), age);
    }
    if (lim->phantom_uploads && s->phantom_uploads >= lim->phantom_uploads) {
        out->flags |= 1u << ANOMALY_PHANTOM_UPLOAD;
        snprintf(out->reason[ANOMALY_PHANTOM_UPLOAD], ANOMALY_REASON_MAX,
                 "%u seeder announce%s reported upload while the swarm had no leecher",
                 s->phantom_uploads, anomaly_s(s->phantom_uploads));
    }
    anomaly_spike(lim, s, out);
    return out->flags;
}
