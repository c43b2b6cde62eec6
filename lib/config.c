/* tyto.yaml -> struct config. The keys[] table below is the only description of the
 * configuration: name, type, field, bounds and default text. Defaults, the YAML walk, TYTO_*
 * environment overrides and re-validation all go through the same setter, so a key cannot be
 * parsed two different ways. The master calls config_load() at start-up, on SIGHUP and for -t. */
#include "lib/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "lib/announce.h"
#include "lib/clientip.h"
#include "storage/redis_sentinel.h"

#define CONFIG_FILE_MAX (1024 * 1024)   /* a configuration file larger than this is a mistake */
#define CONFIG_SHOW_MAX 64              /* bytes of a bad value quoted back in a message */
#define CONFIG_NAME_MAX 64              /* longest dotted key name */
#define CONFIG_PREFIX_MAX 32            /* redis.prefix length bound */
#define CONFIG_SUN_PATH_MAX 107         /* sizeof(sockaddr_un.sun_path) - 1 on Linux */

enum config_type { CONFIG_INT, CONFIG_BOOL, CONFIG_STR, CONFIG_ENUM, CONFIG_LIST };

/* Flags of CONFIG_INT keys. */
#define CONFIG_AUTO 1                   /* the word "auto" is accepted and stored as 0 */
#define CONFIG_ZERO 2                   /* 0 is accepted besides [min, max] */

/* Checks a string value beyond its length. subject is the key name for messages from the file,
 * NULL for messages about an environment variable (the caller names the variable). */
typedef int config_check_fn(const char *val, const char *subject, char *err, size_t errlen);

struct config_key {
    const char *name;                   /* "section.key", or "key" at the top level */
    enum config_type type;
    size_t off;                         /* offsetof(struct config, field) */
    size_t size;                        /* sizeof the field (of one element for lists) */
    long min, max;                      /* INT: bounds; LIST: max = most entries */
    const char *def;                    /* default, parsed like any other value */
    int flags;                          /* CONFIG_AUTO, CONFIG_ZERO */
    const char *const *words;           /* ENUM: accepted names, in enum order, NULL-ended */
    config_check_fn *check;             /* STR, LIST entries: extra check */
    size_t count_off;                   /* LIST: offsetof the entry count */
    const char *env_alias;              /* another variable name, weaker than the canonical one */
};

static config_check_fn config_check_ipv4, config_check_ipv6, config_check_prefix,
    config_check_redis_url, config_check_cidr, config_check_hostport, config_check_client_prefix,
    config_check_sentinel, config_check_master_name;

static const char *const config_storage_words[] = { "redis", "memory", NULL };
static const char *const config_level_words[] = { "error", "warn", "info", "debug", NULL };
static const char *const config_clients_words[] = { "off", "allow", "deny", NULL };

#define CONFIG_FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

/* Entries name their optional fields; the rest are zero by design. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct config_key keys[] = {
    { "listen.port",              CONFIG_INT,  CONFIG_FIELD(port), 1, 65535, "6969" },
    { "listen.ipv4",              CONFIG_STR,  CONFIG_FIELD(listen_ipv4), 0, 0, "0.0.0.0",
      .check = config_check_ipv4 },
    { "listen.ipv6",              CONFIG_STR,  CONFIG_FIELD(listen_ipv6), 0, 0, "::",
      .check = config_check_ipv6 },
    { "workers",                  CONFIG_INT,  CONFIG_FIELD(workers), 1, 256, "auto",
      .flags = CONFIG_AUTO },
    { "listen.udp_port",          CONFIG_INT,  CONFIG_FIELD(udp_port), 1, 65535, "6969",
      .flags = CONFIG_ZERO },
    { "udp.secret",               CONFIG_STR,  CONFIG_FIELD(udp_secret), 0, 0, "" },
    { "udp.secret_file",          CONFIG_STR,  CONFIG_FIELD(udp_secret_file), 0, 0, "" },
    { "udp.secret_previous",      CONFIG_STR,  CONFIG_FIELD(udp_secret_previous), 0, 0, "" },
    { "udp.connection_id_ttl_s",  CONFIG_INT,  CONFIG_FIELD(udp_connection_id_ttl_s), 10, 86400, "300" },
    { "storage.backend",          CONFIG_ENUM, CONFIG_FIELD(storage), 0, 0, "redis",
      .words = config_storage_words },
    { "redis.url",                CONFIG_STR,  CONFIG_FIELD(redis_url), 0, 0, "redis://127.0.0.1:6379",
      .check = config_check_redis_url },
    { "redis.prefix",             CONFIG_STR,  CONFIG_FIELD(redis_prefix), 0, 0, "tyto:",
      .check = config_check_prefix },
    { "redis.timeout_ms",         CONFIG_INT,  CONFIG_FIELD(redis_timeout_ms), 10, 60000, "1000" },
    { "redis.sample_cache_ms",    CONFIG_INT,  CONFIG_FIELD(storage_sample_cache_ms), 0, 1000, "1000" },
    { "redis.sentinels",          CONFIG_LIST, CONFIG_FIELD(redis_sentinels[0]), 0, CONFIG_MAX_SENTINELS, "",
      .check = config_check_sentinel, .count_off = offsetof(struct config, redis_sentinels_count) },
    { "redis.master_name",        CONFIG_STR,  CONFIG_FIELD(redis_master_name), 0, 0, "",
      .check = config_check_master_name },
    { "redis.sentinel_password",  CONFIG_STR,  CONFIG_FIELD(redis_sentinel_password), 0, 0, "" },
    { "redis.cluster",            CONFIG_BOOL, CONFIG_FIELD(redis_cluster), 0, 0, "false" },
    { "redis.nodes",              CONFIG_LIST, CONFIG_FIELD(redis_nodes[0]), 0, CONFIG_MAX_CLUSTER_NODES, "",
      .check = config_check_sentinel, .count_off = offsetof(struct config, redis_nodes_count) },
    { "announce.interval_s",      CONFIG_INT,  CONFIG_FIELD(interval_s), 60, 86400, "1800" },
    { "announce.min_interval_s",  CONFIG_INT,  CONFIG_FIELD(min_interval_s), 1, 86400, "900" },
    { "announce.peer_ttl_s",      CONFIG_INT,  CONFIG_FIELD(peer_ttl_s), 60, 172800, "0",
      .flags = CONFIG_ZERO },
    { "announce.numwant_default", CONFIG_INT,  CONFIG_FIELD(numwant_default), 0, 1000, "50" },
    { "announce.numwant_max",     CONFIG_INT,  CONFIG_FIELD(numwant_max), 1, 1000, "200" },
    { "announce.allow_ip_param",  CONFIG_BOOL, CONFIG_FIELD(allow_ip_param), 0, 0, "false" },
    { "swarm.max_peers_per_address", CONFIG_INT, CONFIG_FIELD(swarm_max_peers_per_address), 0, 32, "16" }, /* PEERCAP_MAX_CAP */
    { "swarm.downloaded_ttl_s",   CONFIG_INT,  CONFIG_FIELD(swarm_downloaded_ttl_s), 3600, 2147483647, "0",
      .flags = CONFIG_ZERO },
    { "scrape.max_hashes",        CONFIG_INT,  CONFIG_FIELD(scrape_max_hashes), 1, SCRAPE_MAX_HASHES, "64" },
    { "http.max_header_bytes",    CONFIG_INT,  CONFIG_FIELD(http_max_header_bytes), 1024, 65536, "8192" },
    { "http.idle_timeout_s",      CONFIG_INT,  CONFIG_FIELD(http_idle_timeout_s), 1, 3600, "30" },
    { "http.max_connections",     CONFIG_INT,  CONFIG_FIELD(http_max_connections), 1, 1000000, "10000" },
    { "http.max_pending",         CONFIG_INT,  CONFIG_FIELD(http_max_pending), 1, 1000000, "4096" },
    { "http.head_timeout_ms",     CONFIG_INT,  CONFIG_FIELD(http_head_timeout_ms), 100, 600000, "5000" },
    { "http.max_requests_per_connection", CONFIG_INT, CONFIG_FIELD(http_max_requests_per_conn), 1, 10000000,
      "10000" },
    { "http.max_output_bytes",    CONFIG_INT,  CONFIG_FIELD(http_max_output_bytes), 65536, 1073741824, "67108864" },
    { "http.write_timeout_ms",    CONFIG_INT,  CONFIG_FIELD(http_write_timeout_ms), 100, 600000, "10000" },
    { "admin.listen",             CONFIG_STR,  CONFIG_FIELD(admin_listen), 0, 0, "127.0.0.1:6970",
      .check = config_check_hostport },
    { "admin.token",              CONFIG_STR,  CONFIG_FIELD(admin_token), 0, 0, "" },
    { "private.enabled",          CONFIG_BOOL, CONFIG_FIELD(private_enabled), 0, 0, "false" },
    { "private.cache_ms",         CONFIG_INT,  CONFIG_FIELD(private_cache_ms), 0, 1000, "1000" },
    { "private.events_maxlen",    CONFIG_INT,  CONFIG_FIELD(private_events_maxlen), 1000, 100000000, "1000000" },
    { "private.mirror_credits",   CONFIG_BOOL, CONFIG_FIELD(private_mirror_credits), 0, 0, "false" },
    { "private.unknown_passkey_limit", CONFIG_INT, CONFIG_FIELD(private_unknown_passkey_limit), 0, 65535, "10" },
    { "private.clients_mode",     CONFIG_ENUM, CONFIG_FIELD(clients_mode), 0, 0, "off",
      .words = config_clients_words },
    { "private.clients",          CONFIG_LIST, CONFIG_FIELD(clients[0]), 0, CONFIG_MAX_CLIENTS, "",
      .check = config_check_client_prefix, .count_off = offsetof(struct config, clients_count) },
    { "stats.enabled",            CONFIG_BOOL, CONFIG_FIELD(stats_enabled), 0, 0, "true" },
    { "stats.pass_s",             CONFIG_INT,  CONFIG_FIELD(stats_pass_s), 1, 3600, "60" },
    { "stats.lease_ms",           CONFIG_INT,  CONFIG_FIELD(stats_lease_ms), 500, 600000, "10000" },
    { "stats.full_scrape",        CONFIG_BOOL, CONFIG_FIELD(stats_full_scrape), 0, 0, "false" },
    { "stats.full_scrape_interval_s", CONFIG_INT, CONFIG_FIELD(stats_full_scrape_interval_s), 1, 86400, "60" },
    { "stats.fast_announces",     CONFIG_INT,  CONFIG_FIELD(stats_fast_announces), 0, 1000000, "10" },
    { "stats.peers_per_address",  CONFIG_INT,  CONFIG_FIELD(stats_peers_per_address), 0, 1000000, "8" },
    { "stats.stuck_leechers",     CONFIG_INT,  CONFIG_FIELD(stats_stuck_leechers), 0, 1000000, "5" },
    { "stats.stuck_age_s",        CONFIG_INT,  CONFIG_FIELD(stats_stuck_age_s), 60, 31536000, "86400" },
    { "stats.phantom_uploads",    CONFIG_INT,  CONFIG_FIELD(stats_phantom_uploads), 0, 1000000, "3" },
    { "stats.spike_min",          CONFIG_INT,  CONFIG_FIELD(stats_spike_min), 0, 100000000, "300" },
    { "stats.spike_factor",       CONFIG_INT,  CONFIG_FIELD(stats_spike_factor), 2, 1000000, "10" },
    { "rate_limit.announces",     CONFIG_INT,  CONFIG_FIELD(rate_limit_announces), 0, 65535, "0" },
    { "rate_limit.window_s",      CONFIG_INT,  CONFIG_FIELD(rate_limit_window_s), 1, 3600, "60" },
    { "shutdown.timeout_s",       CONFIG_INT,  CONFIG_FIELD(shutdown_timeout_s), 1, 3600, "10" },
    { "pid_file",                 CONFIG_STR,  CONFIG_FIELD(pid_file), 0, 0, "" },
    { "log.level",                CONFIG_ENUM, CONFIG_FIELD(log_level), 0, 0, "info",
      .words = config_level_words, .env_alias = "TYTO_LOG" },
    { "log.file",                 CONFIG_STR,  CONFIG_FIELD(log_file), 0, 0, "" },
    { "log.access",               CONFIG_STR,  CONFIG_FIELD(access_log), 0, 0, "" },
    { "proxy.trusted",            CONFIG_LIST, CONFIG_FIELD(proxy_trusted[0]), 0, CONFIG_MAX_TRUSTED, "",
      .check = config_check_cidr, .count_off = offsetof(struct config, proxy_trusted_count) },
    { "proxy.protocol",           CONFIG_BOOL, CONFIG_FIELD(proxy_protocol), 0, 0, "false" },
};
#pragma GCC diagnostic pop

#define CONFIG_NKEYS (sizeof(keys) / sizeof(keys[0]))

/* ---- messages ---------------------------------------------------------------------------- */

/* Writes "SUBJECT<sep>WHAT" (or just WHAT when subject is NULL) into err. Returns -1. */
__attribute__((format(printf, 5, 6)))
static int config_fail(char *err, size_t errlen, const char *subject, const char *sep,
                       const char *fmt, ...)
{
    char what[512];
    va_list ap;

    if (err == NULL || errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (subject != NULL)
        snprintf(err, errlen, "%s%s%s", subject, sep, what);
    else
        snprintf(err, errlen, "%s", what);
    return -1;
}

/* Prefixes err with "prefix: ", in place (the file name before a rule that has no line). */
static void config_prefix_err(char *err, size_t errlen, const char *prefix)
{
    char tmp[1024];

    if (err == NULL || errlen == 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s", err);
    snprintf(err, errlen, "%s: %s", prefix, tmp);
}

/* Length of a bad value as quoted back: long values are cut, not the message. */
static int config_show_len(size_t len)
{
    return len > CONFIG_SHOW_MAX ? CONFIG_SHOW_MAX : (int)len;
}

/* ---- value parsers ----------------------------------------------------------------------- */

/* Strict decimal: an optional '-', then digits, nothing else. Returns 0 or -1. A long run of
 * digits stops growing near LONG_MAX / 2: still far outside every bound in the table. */
static int config_parse_long(const char *s, size_t len, long *out)
{
    size_t i = 0;
    int neg = 0;
    long v = 0;

    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len)
        return -1;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v < LONG_MAX / 20)
            v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static int config_word_eq(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static int config_parse_bool(const char *s, size_t len, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on" };
    static const char *const no[] = { "false", "no", "off" };

    for (size_t i = 0; i < 3; i++) {
        if (config_word_eq(s, len, yes[i])) {
            *out = true;
            return 0;
        }
        if (config_word_eq(s, len, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* ---- string checks ----------------------------------------------------------------------- */

static int config_check_addr(int family, const char *val, const char *subject, char *err,
                             size_t errlen)
{
    unsigned char buf[sizeof(struct in6_addr)];

    if (val[0] == '\0' || inet_pton(family, val, buf) == 1)
        return 0;
    return config_fail(err, errlen, subject, " ", "must be an %s address or empty, got '%.*s'",
                       family == AF_INET ? "IPv4" : "IPv6",
                       config_show_len(strlen(val)), val);
}

static int config_check_ipv4(const char *val, const char *subject, char *err, size_t errlen)
{
    return config_check_addr(AF_INET, val, subject, err, errlen);
}

static int config_check_ipv6(const char *val, const char *subject, char *err, size_t errlen)
{
    return config_check_addr(AF_INET6, val, subject, err, errlen);
}

int config_parse_hostport(const char *s, char *host, size_t hostcap, int *port, char *err, size_t errlen)
{
    unsigned char buf[sizeof(struct in6_addr)];
    const char *colon, *h = s;
    size_t hlen;
    char *end;
    long p;
    int family = AF_INET;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close || close[1] != ':')
            return config_fail(err, errlen, NULL, "", "'%.*s' is not [IPV6]:PORT", config_show_len(strlen(s)), s);
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return config_fail(err, errlen, NULL, "", "'%.*s' is not ADDRESS:PORT", config_show_len(strlen(s)), s);
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostcap)
        return config_fail(err, errlen, NULL, "", "'%.*s' has no usable address", config_show_len(strlen(s)), s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (inet_pton(family, host, buf) != 1)
        return config_fail(err, errlen, NULL, "", "'%s' is not an %s address", host,
                           family == AF_INET ? "IPv4" : "IPv6");
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno || p < 1 || p > 65535)
        return config_fail(err, errlen, NULL, "", "port in '%.*s' must be 1 to 65535", config_show_len(strlen(s)), s);
    *port = (int)p;
    return 0;
}

static int config_check_hostport(const char *val, const char *subject, char *err, size_t errlen)
{
    char host[64], msg[256];
    int port;

    if (val[0] == '\0' || config_parse_hostport(val, host, sizeof(host), &port, msg, sizeof(msg)) == 0)
        return 0;
    return config_fail(err, errlen, subject, " ", "must be ADDRESS:PORT, [IPV6]:PORT or empty: %s", msg);
}

/* One redis.sentinels or redis.nodes entry: HOST:PORT or [IPV6]:PORT (storage/redis_sentinel.c
 * parses it). */
static int config_check_sentinel(const char *val, const char *subject, char *err, size_t errlen)
{
    char host[CONFIG_SENTINEL_ADDR_MAX], msg[256];
    int port;

    if (redis_sentinel_parse_addr(val, host, sizeof(host), &port, msg, sizeof(msg)) == 0)
        return 0;
    return config_fail(err, errlen, subject, " ", "entries must be HOST:PORT or [IPV6]:PORT: %s", msg);
}

/* Sentinel takes a master name as one word: no spaces or control characters. */
static int config_check_master_name(const char *val, const char *subject, char *err, size_t errlen)
{
    for (const char *p = val; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return config_fail(err, errlen, subject, " ", "must be one word (no spaces or control "
                               "characters), got '%.*s'", config_show_len(strlen(val)), val);
    return 0;
}

static int config_check_prefix(const char *val, const char *subject, char *err, size_t errlen)
{
    size_t len = strlen(val);
    size_t ok = strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.-");

    if (len >= 1 && len <= CONFIG_PREFIX_MAX && ok == len)
        return 0;
    return config_fail(err, errlen, subject, " ",
                       "must be 1 to %d characters of A-Z a-z 0-9 : _ . -, got '%.*s'",
                       CONFIG_PREFIX_MAX, config_show_len(len), val);
}

static int config_redis_url(const char *url, struct config_redis_target *t, char *err,
                            size_t errlen);

static int config_check_redis_url(const char *val, const char *subject, char *err, size_t errlen)
{
    struct config_redis_target t;
    char why[256];

    if (config_redis_url(val, &t, why, sizeof(why)) == 0)
        return 0;
    return config_fail(err, errlen, subject, ": ", "%s", why);
}

/* An IPv4/IPv6 address, or one with a /prefix of the family's range. */
static int config_check_cidr(const char *val, const char *subject, char *err, size_t errlen)
{
    struct clientip_net net;

    /* The workers' own parser decides: what `tyto -t` accepts, a worker must accept too. */
    if (clientip_parse_net(val, strlen(val), &net) == 0)
        return 0;
    return config_fail(err, errlen, subject, " ",
                       "entry '%.*s' is not an IPv4/IPv6 address or CIDR block",
                       config_show_len(strlen(val)), val);
}

/* A peer_id prefix of private.clients: printable ASCII without spaces, as client ids are written
 * ("-qB", "-TR", "-lt0D", "M7-"); the length bound is the field's. */
static int config_check_client_prefix(const char *val, const char *subject, char *err, size_t errlen)
{
    size_t len = strlen(val);

    if (len == 0)
        return config_fail(err, errlen, subject, " ", "entry is empty: a peer_id prefix is 1 to %d characters",
                           CONFIG_CLIENT_PREFIX_MAX);
    for (size_t i = 0; i < len; i++)
        if (val[i] <= ' ' || val[i] > '~')
            return config_fail(err, errlen, subject, " ",
                               "entry '%.*s' is not a peer_id prefix (printable characters, no spaces)",
                               config_show_len(len), val);
    return 0;
}

/* ---- the setter -------------------------------------------------------------------------- */

static char *config_field(struct config *cfg, const struct config_key *k)
{
    return (char *)cfg + k->off;
}

static void config_set_int(struct config *cfg, const struct config_key *k, int v)
{
    assert(k->size == sizeof(int));
    memcpy(config_field(cfg, k), &v, sizeof(v));
}

static int config_get_int(const struct config *cfg, const struct config_key *k)
{
    int v;

    memcpy(&v, (const char *)cfg + k->off, sizeof(v));
    return v;
}

/* What k accepts, for messages: "an integer from 1 to 65535", "one of error, warn, ...". */
static void config_describe(const struct config_key *k, char *buf, size_t cap)
{
    size_t used = 0;

    switch (k->type) {
    case CONFIG_INT:
        snprintf(buf, cap, "%san integer from %ld to %ld",
                 (k->flags & CONFIG_AUTO) ? "auto or " : (k->flags & CONFIG_ZERO) ? "0 or " : "",
                 k->min, k->max);
        break;
    case CONFIG_BOOL:
        snprintf(buf, cap, "true or false (or yes/no, on/off)");
        break;
    case CONFIG_ENUM:
        used = (size_t)snprintf(buf, cap, "one of ");
        for (size_t i = 0; k->words[i] != NULL && used < cap; i++)
            used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", k->words[i]);
        break;
    case CONFIG_STR:
        snprintf(buf, cap, "a string");
        break;
    case CONFIG_LIST:
        snprintf(buf, cap, "a sequence of addresses or CIDR blocks");
        break;
    }
}

static int config_value_fail(const struct config_key *k, const char *val, size_t len,
                             const char *subject, char *err, size_t errlen)
{
    char want[128];

    config_describe(k, want, sizeof(want));
    return config_fail(err, errlen, subject, " ", "must be %s, got '%.*s'", want,
                       config_show_len(len), val);
}

static int config_list_count(const struct config *cfg, const struct config_key *k)
{
    int count;

    memcpy(&count, (const char *)cfg + k->count_off, sizeof(count));
    return count;
}

/* Appends one entry to a list key. */
static int config_list_add(struct config *cfg, const struct config_key *k, const char *val,
                           size_t len, const char *subject, char *err, size_t errlen)
{
    char tmp[CONFIG_STR_MAX];
    int count = config_list_count(cfg, k);

    if (memchr(val, '\0', len) != NULL)
        return config_fail(err, errlen, subject, " ", "entry holds a NUL byte");
    if (len >= k->size || len >= sizeof(tmp))
        return config_fail(err, errlen, subject, " ", "entry '%.*s' is longer than %zu characters",
                           config_show_len(len), val, k->size - 1);
    memcpy(tmp, val, len);
    tmp[len] = '\0';
    if (k->check != NULL && k->check(tmp, subject, err, errlen) < 0)
        return -1;
    if (count >= k->max)
        return config_fail(err, errlen, subject, " ", "must have at most %ld entries", k->max);
    memset(config_field(cfg, k) + (size_t)count * k->size, 0, k->size);
    memcpy(config_field(cfg, k) + (size_t)count * k->size, tmp, len);
    count++;
    memcpy((char *)cfg + k->count_off, &count, sizeof(count));
    return 0;
}

static void config_list_clear(struct config *cfg, const struct config_key *k)
{
    int zero = 0;

    memset(config_field(cfg, k), 0, k->size * (size_t)k->max);
    memcpy((char *)cfg + k->count_off, &zero, sizeof(zero));
}

/* Sets key k from the text val (len bytes, not necessarily NUL-terminated). A list takes a
 * comma-separated text (the environment form; blanks around entries are ignored) and replaces
 * the whole list. On error, err holds "SUBJECT must be ..." (or "must be ..." when subject is
 * NULL), and the field may be partly written: callers set into a scratch copy. */
static int config_set(struct config *cfg, const struct config_key *k, const char *val, size_t len,
                      const char *subject, char *err, size_t errlen)
{
    long v;
    bool b;

    switch (k->type) {
    case CONFIG_INT:
        if ((k->flags & CONFIG_AUTO) && config_word_eq(val, len, "auto")) {
            config_set_int(cfg, k, 0);
            return 0;
        }
        if (config_parse_long(val, len, &v) < 0 ||
            !((v >= k->min && v <= k->max) || (v == 0 && (k->flags & CONFIG_ZERO))))
            return config_value_fail(k, val, len, subject, err, errlen);
        config_set_int(cfg, k, (int)v);
        return 0;
    case CONFIG_BOOL:
        if (config_parse_bool(val, len, &b) < 0)
            return config_value_fail(k, val, len, subject, err, errlen);
        assert(k->size == sizeof(bool));
        memcpy(config_field(cfg, k), &b, sizeof(b));
        return 0;
    case CONFIG_ENUM:
        for (int i = 0; k->words[i] != NULL; i++) {
            if (config_word_eq(val, len, k->words[i])) {
                config_set_int(cfg, k, i);
                return 0;
            }
        }
        return config_value_fail(k, val, len, subject, err, errlen);
    case CONFIG_STR: {
        char tmp[CONFIG_STR_MAX];

        if (memchr(val, '\0', len) != NULL)
            return config_fail(err, errlen, subject, " ", "must not contain NUL bytes");
        if (len >= k->size || len >= sizeof(tmp))
            return config_fail(err, errlen, subject, " ", "must be at most %zu bytes long, got %zu",
                               k->size - 1, len);
        memcpy(tmp, val, len);
        tmp[len] = '\0';
        if (k->check != NULL && k->check(tmp, subject, err, errlen) < 0)
            return -1;
        memset(config_field(cfg, k), 0, k->size);
        memcpy(config_field(cfg, k), tmp, len + 1);
        return 0;
    }
    case CONFIG_LIST: {
        size_t i = 0;

        config_list_clear(cfg, k);
        while (i < len) {
            size_t start, end;

            while (i < len && (val[i] == ' ' || val[i] == '\t'))
                i++;
            start = i;
            while (i < len && val[i] != ',')
                i++;
            end = i;
            while (end > start && (val[end - 1] == ' ' || val[end - 1] == '\t'))
                end--;
            if (i < len)
                i++;                    /* the comma */
            if (end == start)
                continue;               /* "a,,b" or a trailing comma */
            if (config_list_add(cfg, k, val + start, end - start, subject, err, errlen) < 0)
                return -1;
        }
        return 0;
    }
    }
    return config_fail(err, errlen, subject, " ", "has an unknown type");
}

/* Writes the text form of k's current value into buf (lists excepted). */
static void config_render(const struct config *cfg, const struct config_key *k, char *buf,
                          size_t cap)
{
    const char *field = (const char *)cfg + k->off;
    bool b;
    int v;

    switch (k->type) {
    case CONFIG_INT:
        v = config_get_int(cfg, k);
        if ((k->flags & CONFIG_AUTO) && v == 0)
            snprintf(buf, cap, "auto");
        else
            snprintf(buf, cap, "%d", v);
        break;
    case CONFIG_BOOL:
        memcpy(&b, field, sizeof(b));
        snprintf(buf, cap, "%s", b ? "true" : "false");
        break;
    case CONFIG_ENUM: {
        size_t n = 0;

        v = config_get_int(cfg, k);
        while (k->words[n] != NULL)
            n++;
        if (v >= 0 && (size_t)v < n)
            snprintf(buf, cap, "%s", k->words[v]);
        else
            snprintf(buf, cap, "%d", v);
        break;
    }
    case CONFIG_STR:
        snprintf(buf, cap, "%.*s", (int)strnlen(field, k->size), field);
        break;
    case CONFIG_LIST:
        buf[0] = '\0';
        break;
    }
}

/* Re-checks k's current value by running it through the setter on a scratch copy. */
static int config_recheck(const struct config *cfg, const struct config_key *k, char *err,
                          size_t errlen)
{
    struct config scratch = *cfg;
    char text[CONFIG_STR_MAX + 16];

    if (k->type == CONFIG_LIST) {
        int count = config_list_count(cfg, k);

        if (count < 0 || count > k->max)
            return config_fail(err, errlen, k->name, " ", "must have at most %ld entries", k->max);
        config_list_clear(&scratch, k);
        for (int i = 0; i < count; i++) {
            const char *e = (const char *)cfg + k->off + (size_t)i * k->size;

            if (config_list_add(&scratch, k, e, strnlen(e, k->size), k->name, err, errlen) < 0)
                return -1;
        }
        return 0;
    }
    config_render(cfg, k, text, sizeof(text));
    return config_set(&scratch, k, text, strlen(text), k->name, err, errlen);
}

/* ---- public: defaults, validation, small helpers ----------------------------------------- */

void config_defaults(struct config *cfg)
{
    char err[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        int rc = config_set(cfg, &keys[i], keys[i].def, strlen(keys[i].def), keys[i].name, err,
                            sizeof(err));
        assert(rc == 0);        /* a bad default is a bug in keys[] */
        (void)rc;
    }
}

int config_validate(struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (config_recheck(cfg, &keys[i], err, errlen) < 0)
            return -1;
    if (cfg->min_interval_s > cfg->interval_s)
        return config_fail(err, errlen, NULL, "",
                           "announce.min_interval_s (%d) must not exceed announce.interval_s (%d)",
                           cfg->min_interval_s, cfg->interval_s);
    if (cfg->numwant_default > cfg->numwant_max)
        return config_fail(err, errlen, NULL, "",
                           "announce.numwant_default (%d) must not exceed announce.numwant_max (%d)",
                           cfg->numwant_default, cfg->numwant_max);
    if (cfg->listen_ipv4[0] == '\0' && cfg->listen_ipv6[0] == '\0')
        return config_fail(err, errlen, NULL, "", "listen.ipv4 and listen.ipv6 are both empty");
    if (cfg->udp_secret[0] && cfg->udp_secret_file[0])
        return config_fail(err, errlen, NULL, "", "udp.secret and udp.secret_file are both set: choose one");
    if (cfg->private_enabled && cfg->storage != CONFIG_STORAGE_REDIS)
        return config_fail(err, errlen, NULL, "",
                           "private.enabled needs storage.backend redis (users and their totals "
                           "live in Redis)");
    if (cfg->clients_mode != CONFIG_CLIENTS_OFF && cfg->clients_count == 0)
        return config_fail(err, errlen, NULL, "",
                           "private.clients_mode %s needs at least one prefix in private.clients",
                           config_clients_words[cfg->clients_mode]);
    if ((cfg->redis_sentinels_count > 0) != (cfg->redis_master_name[0] != '\0'))
        return config_fail(err, errlen, NULL, "", "%s is set but %s is not: Sentinel mode needs both "
                           "(the sentinels to ask, and the name of the master they watch)",
                           cfg->redis_sentinels_count > 0 ? "redis.sentinels" : "redis.master_name",
                           cfg->redis_sentinels_count > 0 ? "redis.master_name" : "redis.sentinels");
    if (cfg->redis_sentinel_password[0] != '\0' && cfg->redis_sentinels_count == 0)
        return config_fail(err, errlen, NULL, "", "redis.sentinel_password is set but redis.sentinels is "
                           "not: the password is for the sentinels (the data nodes' is in redis.url)");
    if (cfg->redis_cluster != (cfg->redis_nodes_count > 0))
        return config_fail(err, errlen, NULL, "", "%s: Redis Cluster mode needs both redis.cluster: true "
                           "and redis.nodes (at least one node to read the slot map from)",
                           cfg->redis_cluster ? "redis.cluster is true but redis.nodes is empty"
                                              : "redis.nodes is set but redis.cluster is not true");
    if (cfg->redis_cluster && cfg->redis_sentinels_count > 0)
        return config_fail(err, errlen, NULL, "", "redis.cluster and redis.sentinels are both set: a "
                           "cluster fails over by itself (choose one)");
    if (cfg->redis_cluster) {
        struct config_redis_target t;
        char msg[256];

        if (config_parse_redis_url(cfg->redis_url, &t, msg, sizeof(msg)) == 0 && t.db != 0)
            return config_fail(err, errlen, NULL, "", "redis.url selects database %d, but a Redis Cluster has "
                               "database 0 only (with redis.cluster, redis.url gives the password)", t.db);
    }
    if (cfg->storage == CONFIG_STORAGE_MEMORY && cfg->workers != 1)
        return config_fail(err, errlen, NULL, "",
                           "storage.backend memory needs workers: 1 (swarms would be split between "
                           "workers)");
    /* 2 x the largest interval (86400) is exactly the largest peer_ttl_s. */
    if (cfg->peer_ttl_s == 0)
        cfg->peer_ttl_s = 2 * cfg->interval_s;
    return 0;
}

int config_worker_count(const struct config *cfg)
{
    long n;

    if (cfg->workers > 0)
        return cfg->workers;
    n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 256 ? 256 : (int)n;
}

const char *config_log_level_name(enum config_log_level level)
{
    if ((int)level < 0 || (size_t)level >= sizeof(config_level_words) / sizeof(config_level_words[0]) - 1)
        return "unknown";
    return config_level_words[level];
}

/* ---- environment ------------------------------------------------------------------------- */

/* "TYTO_" + the dotted name upper-cased, '.' -> '_'. */
static void config_env_name(const struct config_key *k, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "TYTO_");

    for (const char *p = k->name; *p != '\0' && n + 1 < cap; p++)
        buf[n++] = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    buf[n] = '\0';
}

/* The value of the first NAME=value in envp, as getenv() would pick it, or NULL. */
static const char *config_env_get(char *const *envp, const char *name)
{
    size_t len = strlen(name);

    for (; envp != NULL && *envp != NULL; envp++)
        if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
            return *envp + len + 1;
    return NULL;
}

int config_apply_env(struct config *cfg, char *const *envp, char *err, size_t errlen)
{
    struct config tmp = *cfg;

    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &keys[i];
        char name[CONFIG_NAME_MAX + 8];
        const char *val;

        config_env_name(k, name, sizeof(name));
        val = config_env_get(envp, name);
        if (val == NULL && k->env_alias != NULL) {
            val = config_env_get(envp, k->env_alias);
            snprintf(name, sizeof(name), "%s", k->env_alias);
        }
        if (val == NULL)
            continue;
        if (config_set(&tmp, k, val, strlen(val), NULL, err, errlen) < 0) {
            config_prefix_err(err, errlen, name);
            return -1;
        }
    }
    *cfg = tmp;
    return 0;
}

/* ---- YAML -------------------------------------------------------------------------------- */

struct config_walk {
    const char *name;                   /* file name for messages */
    yaml_document_t *doc;
    struct config *cfg;
    bool seen[CONFIG_NKEYS];            /* keys set by the file: a second time is a duplicate */
    bool section_seen[CONFIG_NKEYS];    /* indexed by the section's first key */
    char *err;
    size_t errlen;
};

static long config_line(const yaml_node_t *node)
{
    return (long)node->start_mark.line + 1;
}

/* Formats "NAME:LINE: what" into the walk's err. Returns -1. */
__attribute__((format(printf, 3, 4)))
static int config_walk_fail(struct config_walk *w, const yaml_node_t *node, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (w->err != NULL && w->errlen > 0)
        snprintf(w->err, w->errlen, "%s:%ld: %s", w->name, config_line(node), what);
    return -1;
}

/* A plain "", "~" or "null": YAML's null, which an empty "key:" gives. */
static int config_is_null(const yaml_node_t *node)
{
    const char *v;
    size_t len;

    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    v = (const char *)node->data.scalar.value;
    len = node->data.scalar.length;
    return len == 0 || config_word_eq(v, len, "~") || config_word_eq(v, len, "null");
}

static const char *config_node_kind(const yaml_node_t *node)
{
    return node->type == YAML_MAPPING_NODE ? "a mapping" :
           node->type == YAML_SEQUENCE_NODE ? "a sequence" : "nothing";
}

/* Index of the key whose full name is prefix "." name (or name alone when plen is 0), or -1. */
static int config_find(const char *prefix, size_t plen, const char *name, size_t nlen)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const char *kn = keys[i].name;
        size_t klen = strlen(kn);

        if (plen > 0) {
            if (klen != plen + 1 + nlen || memcmp(kn, prefix, plen) != 0 || kn[plen] != '.' ||
                memcmp(kn + plen + 1, name, nlen) != 0)
                continue;
        } else if (klen != nlen || memcmp(kn, name, nlen) != 0) {
            continue;
        }
        return (int)i;
    }
    return -1;
}

/* Index of the first key in section name, or -1 when name is not a section. */
static int config_find_section(const char *name, size_t nlen)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const char *dot = strchr(keys[i].name, '.');

        if (dot != NULL && (size_t)(dot - keys[i].name) == nlen &&
            memcmp(keys[i].name, name, nlen) == 0)
            return (int)i;
    }
    return -1;
}

/* Sets key k from a YAML value node. */
static int config_walk_value(struct config_walk *w, const struct config_key *k, yaml_node_t *val)
{
    char msg[512];

    if (k->type == CONFIG_LIST) {
        if (config_is_null(val)) {
            config_list_clear(w->cfg, k);
            return 0;
        }
        if (val->type != YAML_SEQUENCE_NODE)
            return config_walk_fail(w, val, "%s must be a sequence of addresses or CIDR blocks "
                                    "(- item lines or [a, b])", k->name);
        config_list_clear(w->cfg, k);
        for (yaml_node_item_t *it = val->data.sequence.items.start;
             it < val->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(w->doc, *it);

            if (item == NULL)
                continue;
            if (item->type != YAML_SCALAR_NODE)
                return config_walk_fail(w, item, "%s entries must be addresses, got %s", k->name,
                                        config_node_kind(item));
            if (config_list_add(w->cfg, k, (const char *)item->data.scalar.value,
                                item->data.scalar.length, k->name, msg, sizeof(msg)) < 0)
                return config_walk_fail(w, item, "%s", msg);
        }
        return 0;
    }
    if (val->type != YAML_SCALAR_NODE) {
        config_describe(k, msg, sizeof(msg));
        return config_walk_fail(w, val, "%s must be %s, got %s", k->name, msg,
                                config_node_kind(val));
    }
    if (k->type == CONFIG_STR && config_is_null(val))
        return config_set(w->cfg, k, "", 0, k->name, msg, sizeof(msg)) < 0 ?
               config_walk_fail(w, val, "%s", msg) : 0;
    if (config_set(w->cfg, k, (const char *)val->data.scalar.value, val->data.scalar.length,
                   k->name, msg, sizeof(msg)) < 0)
        return config_walk_fail(w, val, "%s", msg);
    return 0;
}

/* Walks one mapping: the root (prefix NULL) or a section. */
static int config_walk_mapping(struct config_walk *w, yaml_node_t *map, const char *prefix,
                               size_t plen)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *val = yaml_document_get_node(w->doc, p->value);
        const char *name;
        size_t nlen;
        int idx;

        if (key == NULL || val == NULL)
            continue;
        if (key->type != YAML_SCALAR_NODE)
            return config_walk_fail(w, key, "keys must be plain words, got %s",
                                    config_node_kind(key));
        name = (const char *)key->data.scalar.value;
        nlen = key->data.scalar.length;
        if (memchr(name, '\0', nlen) != NULL || nlen > CONFIG_NAME_MAX)
            goto unknown;
        idx = config_find(prefix, plen, name, nlen);
        if (idx >= 0) {
            if (w->seen[idx])
                return config_walk_fail(w, key, "duplicate key '%s'", keys[idx].name);
            w->seen[idx] = true;
            if (config_walk_value(w, &keys[idx], val) < 0)
                return -1;
            continue;
        }
        if (plen == 0 && (idx = config_find_section(name, nlen)) >= 0) {
            if (w->section_seen[idx])
                return config_walk_fail(w, key, "duplicate key '%.*s'", (int)nlen, name);
            w->section_seen[idx] = true;
            if (config_is_null(val))
                continue;               /* "proxy:" with every key commented out */
            if (val->type != YAML_MAPPING_NODE)
                return config_walk_fail(w, val, "'%.*s' must be a mapping", (int)nlen, name);
            if (config_walk_mapping(w, val, name, nlen) < 0)
                return -1;
            continue;
        }
unknown:
        if (plen > 0)
            return config_walk_fail(w, key, "unknown key '%.*s.%.*s'", (int)plen, prefix,
                                    config_show_len(nlen), name);
        return config_walk_fail(w, key, "unknown key '%.*s'", config_show_len(nlen), name);
    }
    return 0;
}

/* "NAME:LINE: problem" for a libyaml error. */
static void config_yaml_err(const yaml_parser_t *p, const char *name, const char *text, size_t len,
                            char *err, size_t errlen)
{
    long line = (long)p->problem_mark.line + 1;
    const char *problem = p->problem ? p->problem : "invalid YAML";

    if (err == NULL || errlen == 0)
        return;
    if (p->error == YAML_MEMORY_ERROR) {
        snprintf(err, errlen, "%s: out of memory", name);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++)
            line += text[i] == '\n';
    }
    snprintf(err, errlen, "%s:%ld: %s", name, line, problem);
}

/* Defaults, then the YAML text, into *cfg (no environment, no cross-key rules). */
static int config_parse_text(const char *name, const char *text, size_t len, struct config *cfg,
                             char *err, size_t errlen)
{
    struct config_walk walk = { .name = name, .cfg = cfg, .err = err, .errlen = errlen };
    struct config_walk *w = &walk;
    yaml_parser_t parser;
    yaml_document_t doc, next;
    yaml_node_t *root;
    int rc = -1;

    if (!yaml_parser_initialize(&parser))
        return config_fail(err, errlen, name, ": ", "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        config_yaml_err(&parser, name, text, len, err, errlen);
        goto out_parser;
    }
    config_defaults(cfg);
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        rc = 0;                         /* an empty file: every default */
        goto out_doc;
    }
    /* A second document is refused rather than silently ignored. */
    if (!yaml_parser_load(&parser, &next)) {
        config_yaml_err(&parser, name, text, len, err, errlen);
        goto out_doc;
    }
    if (yaml_document_get_root_node(&next) != NULL) {
        config_walk_fail(w, yaml_document_get_root_node(&next), "only one YAML document is allowed");
        yaml_document_delete(&next);
        goto out_doc;
    }
    yaml_document_delete(&next);
    if (config_is_null(root)) {
        rc = 0;
        goto out_doc;
    }
    w->doc = &doc;
    if (root->type != YAML_MAPPING_NODE) {
        config_walk_fail(w, root, "the top level must be a mapping of keys (key: value), got %s",
                         root->type == YAML_SCALAR_NODE ? "a scalar" : config_node_kind(root));
        goto out_doc;
    }
    rc = config_walk_mapping(w, root, NULL, 0);
out_doc:
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
    return rc;
}

int config_parse(const char *name, const char *text, size_t len, struct config *cfg, char *err,
                 size_t errlen)
{
    struct config tmp;

    if (config_parse_text(name, text, len, &tmp, err, errlen) < 0)
        return -1;
    if (config_validate(&tmp, err, errlen) < 0) {
        config_prefix_err(err, errlen, name);
        return -1;
    }
    *cfg = tmp;
    return 0;
}

/* Reads all of path into a malloc'd buffer. */
static char *config_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto fail;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        goto fail;
    }
    for (;;) {
        ssize_t n;

        if (used == cap) {
            char *nb;

            if (cap >= CONFIG_FILE_MAX) {
                config_fail(err, errlen, path, ": ", "cannot read: larger than %d bytes",
                            CONFIG_FILE_MAX);
                goto out;
            }
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (nb == NULL)
                goto fail;
            buf = nb;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    *len = used;
    return buf ? buf : calloc(1, 1);
fail:
    config_fail(err, errlen, path, ": ", "cannot read: %s", strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    struct config tmp;
    size_t len = 0;
    char *text;
    int rc = -1;

    text = config_read_file(path, &len, err, errlen);
    if (text == NULL)
        return -1;
    if (config_parse_text(path, text, len, &tmp, err, errlen) < 0)
        goto out;
    if (config_apply_env(&tmp, environ, err, errlen) < 0)
        goto out;
    if (config_validate(&tmp, err, errlen) < 0) {
        config_prefix_err(err, errlen, path);
        goto out;
    }
    *cfg = tmp;
    rc = 0;
out:
    free(text);
    return rc;
}

/* ---- redis.url --------------------------------------------------------------------------- */

/* Percent-decodes src[0..len) into dst (cap bytes with the NUL). Returns 0 or -1. */
static int config_pct_decode(const char *src, size_t len, char *dst, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)src[i];

        if (c == '%') {
            unsigned v = 0;

            if (i + 2 >= len)
                return -1;
            for (int j = 1; j <= 2; j++) {
                char h = src[i + (size_t)j];

                v <<= 4;
                if (h >= '0' && h <= '9')
                    v |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f')
                    v |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                    v |= (unsigned)(h - 'A' + 10);
                else
                    return -1;
            }
            if (v == 0)
                return -1;
            c = v;
            i += 2;
        }
        if (n + 1 >= cap)
            return -1;
        dst[n++] = (char)c;
    }
    dst[n] = '\0';
    return 0;
}

/* Parses "[user]:password" (the part before '@'); user is ignored. */
static int config_url_userinfo(const char *s, size_t len, struct config_redis_target *t, char *err,
                               size_t errlen)
{
    const char *colon = memchr(s, ':', len);

    if (colon == NULL)
        return config_fail(err, errlen, NULL, "",
                           "a user name without a password (use redis://:PASSWORD@host)");
    if (config_pct_decode(colon + 1, len - (size_t)(colon + 1 - s), t->password,
                          sizeof(t->password)) < 0)
        return config_fail(err, errlen, NULL, "",
                           "bad password (too long, or a bad %%-escape; at most %zu bytes)",
                           sizeof(t->password) - 1);
    return 0;
}

static int config_url_number(const char *s, size_t len, long lo, long hi, long *out)
{
    return config_parse_long(s, len, out) < 0 || s[0] == '-' || *out < lo || *out > hi ? -1 : 0;
}

static int config_url_db(const char *s, size_t len, struct config_redis_target *t, char *err,
                         size_t errlen)
{
    long v;

    if (config_url_number(s, len, 0, INT_MAX, &v) < 0)
        return config_fail(err, errlen, NULL, "", "bad database number '%.*s'",
                           config_show_len(len), s);
    t->db = (int)v;
    return 0;
}

/* redis://[[user]:password@]host[:port][/db], after the scheme. */
static int config_url_tcp(const char *s, struct config_redis_target *t, char *err, size_t errlen)
{
    const char *at = strrchr(s, '@');
    const char *host, *hend, *p;
    bool bracketed = false;
    long v;

    if (at != NULL) {
        if (config_url_userinfo(s, (size_t)(at - s), t, err, errlen) < 0)
            return -1;
        s = at + 1;
    }
    if (*s == '[') {
        char a[INET6_ADDRSTRLEN + 1];
        unsigned char buf[sizeof(struct in6_addr)];

        bracketed = true;
        host = s + 1;
        hend = strchr(host, ']');
        if (hend == NULL)
            return config_fail(err, errlen, NULL, "", "missing ']' after the IPv6 address");
        if ((size_t)(hend - host) >= sizeof(a))
            return config_fail(err, errlen, NULL, "", "bad IPv6 address '%.*s'",
                               config_show_len((size_t)(hend - host)), host);
        memcpy(a, host, (size_t)(hend - host));
        a[hend - host] = '\0';
        if (inet_pton(AF_INET6, a, buf) != 1)
            return config_fail(err, errlen, NULL, "", "bad IPv6 address '%s'", a);
        p = hend + 1;
    } else {
        host = s;
        hend = host + strcspn(host, ":/?#");
        p = hend;
    }
    if (hend == host)
        return config_fail(err, errlen, NULL, "", "missing host");
    if ((size_t)(hend - host) >= sizeof(t->host))
        return config_fail(err, errlen, NULL, "", "host name too long");
    for (const char *c = host; c < hend && !bracketed; c++)
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_", *c) == NULL)
            return config_fail(err, errlen, NULL, "", "bad host '%.*s'",
                               config_show_len((size_t)(hend - host)), host);
    memcpy(t->host, host, (size_t)(hend - host));
    t->host[hend - host] = '\0';
    if (*p == ':') {
        size_t plen = strcspn(p + 1, "/");

        if (config_url_number(p + 1, plen, 1, 65535, &v) < 0)
            return config_fail(err, errlen, NULL, "", "bad port '%.*s' (1 to 65535)",
                               config_show_len(plen), p + 1);
        t->port = (int)v;
        p += 1 + plen;
    }
    if (*p == '/') {
        p++;
        if (*p != '\0' && config_url_db(p, strlen(p), t, err, errlen) < 0)
            return -1;
        return 0;
    }
    if (*p != '\0')
        return config_fail(err, errlen, NULL, "", "unexpected '%.*s' after the host",
                           config_show_len(strlen(p)), p);
    return 0;
}

/* unix://[[user]:password@]/path[?db=N], after the scheme. */
static int config_url_unix(const char *s, struct config_redis_target *t, char *err, size_t errlen)
{
    const char *q;
    size_t plen;

    if (*s != '/') {
        const char *at = strchr(s, '@');

        if (at == NULL || at[1] != '/')
            return config_fail(err, errlen, NULL, "",
                               "unix:// needs an absolute socket path (unix:///path/to.sock)");
        if (config_url_userinfo(s, (size_t)(at - s), t, err, errlen) < 0)
            return -1;
        s = at + 1;
    }
    q = strchr(s, '?');
    plen = q ? (size_t)(q - s) : strlen(s);
    if (plen < 2)
        return config_fail(err, errlen, NULL, "", "missing socket path");
    if (plen > CONFIG_SUN_PATH_MAX)
        return config_fail(err, errlen, NULL, "", "socket path longer than %d bytes",
                           CONFIG_SUN_PATH_MAX);
    memcpy(t->path, s, plen);
    t->path[plen] = '\0';
    if (q != NULL) {
        if (strncmp(q + 1, "db=", 3) != 0)
            return config_fail(err, errlen, NULL, "", "unknown parameter '%.*s' (only ?db=N)",
                               config_show_len(strlen(q + 1)), q + 1);
        if (config_url_db(q + 4, strlen(q + 4), t, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* The parser proper, with messages that do not name the key. */
static int config_redis_url(const char *url, struct config_redis_target *t, char *err,
                            size_t errlen)
{
    const char *sep = strstr(url, "://");

    memset(t, 0, sizeof(*t));
    t->port = 6379;
    if (sep == NULL)
        return config_fail(err, errlen, NULL, "",
                           "'%.*s' is not a URL (use redis://host:port or unix:///path/to.sock)",
                           config_show_len(strlen(url)), url);
    if (sep - url == 5 && strncasecmp(url, "redis", 5) == 0)
        return config_url_tcp(sep + 3, t, err, errlen);
    if (sep - url == 4 && strncasecmp(url, "unix", 4) == 0) {
        t->unix_socket = true;
        return config_url_unix(sep + 3, t, err, errlen);
    }
    return config_fail(err, errlen, NULL, "", "unsupported scheme '%.*s' (use redis:// or unix://)",
                       config_show_len((size_t)(sep - url)), url);
}

int config_parse_redis_url(const char *url, struct config_redis_target *t, char *err,
                           size_t errlen)
{
    char why[256];

    if (config_redis_url(url, t, why, sizeof(why)) == 0)
        return 0;
    memset(t, 0, sizeof(*t));
    return config_fail(err, errlen, "redis.url", ": ", "%s", why);
}
