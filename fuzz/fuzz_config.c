/* libFuzzer target for lib/config.c: the input is a tyto.yaml. config_parse() must never crash
 * or leak; a refusal leaves *cfg untouched and says "fuzz.yaml:..." in a NUL-terminated message
 * (also into a tiny buffer); an accepted configuration obeys every documented bound and cross-key
 * rule, config_validate() on it succeeds and changes nothing (idempotent), its redis.url parses
 * and its proxy.trusted entries load into lib/clientip.c. The input is also tried as a redis.url
 * and as lines of TYTO_* environment variables. */
#include "fuzz/fuzz.h"

#include "lib/clientip.h"
#include "lib/config.h"

#define FUZZ_NAME "fuzz.yaml"

/* A char array field holds a NUL-terminated string. */
#define FUZZ_STR_OK(a) (memchr((a), '\0', sizeof(a)) != NULL)

/* Properties of every configuration that config_validate() accepted. */
static void fuzz_accepted(const struct config *cfg)
{
    struct config again = *cfg;
    struct config_redis_target t;
    struct clientip_trust *trust;
    char err[512];

    FUZZ_CHECK(cfg->port >= 1 && cfg->port <= 65535);
    FUZZ_CHECK(cfg->workers >= 0 && cfg->workers <= 256);
    FUZZ_CHECK(config_worker_count(cfg) >= 1);
    FUZZ_CHECK(cfg->storage == CONFIG_STORAGE_REDIS || cfg->storage == CONFIG_STORAGE_MEMORY);
    FUZZ_CHECK(cfg->storage != CONFIG_STORAGE_MEMORY || cfg->workers == 1);
    FUZZ_CHECK(cfg->redis_timeout_ms >= 10 && cfg->redis_timeout_ms <= 60000);
    FUZZ_CHECK(cfg->interval_s >= 60 && cfg->interval_s <= 86400);
    FUZZ_CHECK(cfg->min_interval_s >= 1 && cfg->min_interval_s <= cfg->interval_s);
    FUZZ_CHECK(cfg->peer_ttl_s >= 60 && cfg->peer_ttl_s <= 172800);
    FUZZ_CHECK(cfg->numwant_max >= 1 && cfg->numwant_max <= 1000);
    FUZZ_CHECK(cfg->numwant_default >= 0 && cfg->numwant_default <= cfg->numwant_max);
    FUZZ_CHECK(cfg->scrape_max_hashes >= 1 && cfg->scrape_max_hashes <= SCRAPE_MAX_HASHES);
    FUZZ_CHECK(cfg->http_max_header_bytes >= 1024 && cfg->http_max_header_bytes <= 65536);
    FUZZ_CHECK(cfg->http_idle_timeout_s >= 1 && cfg->http_idle_timeout_s <= 3600);
    FUZZ_CHECK(cfg->http_max_connections >= 1 && cfg->http_max_connections <= 1000000);
    FUZZ_CHECK(cfg->http_head_timeout_ms >= 100 && cfg->http_head_timeout_ms <= 600000);
    FUZZ_CHECK(cfg->http_max_requests_per_conn >= 1 && cfg->http_max_requests_per_conn <= 10000000);
    FUZZ_CHECK(cfg->shutdown_timeout_s >= 1 && cfg->shutdown_timeout_s <= 3600);
    FUZZ_CHECK(cfg->log_level >= LOG_LEVEL_ERROR && cfg->log_level <= LOG_LEVEL_DEBUG);
    FUZZ_CHECK(config_log_level_name(cfg->log_level) != NULL);
    FUZZ_CHECK(cfg->proxy_trusted_count >= 0 && cfg->proxy_trusted_count <= CONFIG_MAX_TRUSTED);
    FUZZ_CHECK(FUZZ_STR_OK(cfg->listen_ipv4) && FUZZ_STR_OK(cfg->listen_ipv6));
    FUZZ_CHECK(cfg->listen_ipv4[0] != '\0' || cfg->listen_ipv6[0] != '\0');
    FUZZ_CHECK(FUZZ_STR_OK(cfg->redis_url) && FUZZ_STR_OK(cfg->redis_prefix));
    FUZZ_CHECK(FUZZ_STR_OK(cfg->pid_file) && FUZZ_STR_OK(cfg->log_file));
    FUZZ_CHECK(FUZZ_STR_OK(cfg->access_log));
    for (int i = 0; i < cfg->proxy_trusted_count; i++)
        FUZZ_CHECK(FUZZ_STR_OK(cfg->proxy_trusted[i]));

    /* Idempotent: a valid configuration validates again, unchanged. */
    FUZZ_CHECK(config_validate(&again, err, sizeof(err)) == 0);
    FUZZ_CHECK(memcmp(&again, cfg, sizeof(again)) == 0);

    FUZZ_CHECK(config_parse_redis_url(cfg->redis_url, &t, err, sizeof(err)) == 0);
    trust = malloc(sizeof(*trust));
    FUZZ_CHECK(trust != NULL);
    /* What `tyto -t` accepts, every worker must accept (it once did not: "10.0.0.0/0008"). */
    FUZZ_CHECK(clientip_trust_init(trust, cfg, err, sizeof(err)) == 0);
    FUZZ_CHECK(trust->count == (unsigned)cfg->proxy_trusted_count);
    free(trust);
}

/* A refusal's message: NUL-terminated inside errlen bytes, naming the file. */
static void fuzz_refused(const char *err, size_t errlen)
{
    FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
    if (errlen > strlen(FUZZ_NAME ":"))
        FUZZ_CHECK(strncmp(err, FUZZ_NAME ":", strlen(FUZZ_NAME ":")) == 0);
}

static void fuzz_yaml(const char *text, size_t len)
{
    struct config *cfg = malloc(sizeof(*cfg)), *before = malloc(sizeof(*before));
    char err[512];
    char *tiny = malloc(12);
    int rc;

    FUZZ_CHECK(cfg != NULL && before != NULL && tiny != NULL);
    memset(cfg, 0x5a, sizeof(*cfg));
    *before = *cfg;
    err[0] = '\0';
    rc = config_parse(FUZZ_NAME, text, len, cfg, err, sizeof(err));
    if (rc == 0) {
        fuzz_accepted(cfg);
    } else {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(memcmp(cfg, before, sizeof(*cfg)) == 0);       /* untouched on error */
        FUZZ_CHECK(err[0] != '\0');
        fuzz_refused(err, sizeof(err));
    }
    /* The same verdict with a message buffer far too small for it. */
    memset(tiny, 'x', 12);
    FUZZ_CHECK(config_parse(FUZZ_NAME, text, len, before, tiny, 12) == rc);
    if (rc < 0)
        fuzz_refused(tiny, 12);
    free(tiny);
    free(before);
    free(cfg);
}

static void fuzz_url(const char *text, size_t len)
{
    struct config_redis_target t;
    char err[256];
    char *url;

    if (len > 2 * CONFIG_STR_MAX || memchr(text, '\0', len))
        return;
    url = malloc(len + 1);
    FUZZ_CHECK(url != NULL);
    memcpy(url, text, len);
    url[len] = '\0';
    err[0] = '\0';
    if (config_parse_redis_url(url, &t, err, sizeof(err)) == 0) {
        FUZZ_CHECK(FUZZ_STR_OK(t.host) && FUZZ_STR_OK(t.path) && FUZZ_STR_OK(t.password));
        FUZZ_CHECK(t.db >= 0);
        if (t.unix_socket)
            FUZZ_CHECK(t.path[0] != '\0');
        else
            FUZZ_CHECK(t.host[0] != '\0' && t.port >= 1 && t.port <= 65535);
    } else {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
    }
    free(url);
}

/* Each input line becomes one "NAME=value" environment string. */
static void fuzz_env(const char *text, size_t len)
{
    char *env[17], *copy = malloc(len + 1);
    struct config *cfg = malloc(sizeof(*cfg)), *before = malloc(sizeof(*before));
    char err[512];
    size_t n = 0, start = 0;

    FUZZ_CHECK(copy != NULL && cfg != NULL && before != NULL);
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (size_t i = 0; i <= len && n < 16; i++) {
        if (i == len || copy[i] == '\n') {
            copy[i] = '\0';
            env[n++] = copy + start;
            start = i + 1;
        }
    }
    env[n] = NULL;
    config_defaults(cfg);
    *before = *cfg;
    if (config_apply_env(cfg, env, err, sizeof(err)) == 0) {
        /* May break a cross-key rule; validating must then say so, not crash. */
        if (config_validate(cfg, err, sizeof(err)) == 0)
            fuzz_accepted(cfg);
    } else {
        FUZZ_CHECK(memcmp(cfg, before, sizeof(*cfg)) == 0);
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && strncmp(err, "TYTO_", 5) == 0);
    }
    free(before);
    free(cfg);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_dup(data, size);

    fuzz_yaml(text, size);
    fuzz_url(text, size);
    if (size >= 5 && memcmp(text, "TYTO_", 5) == 0)
        fuzz_env(text, size);
    free(text);
    return 0;
}
