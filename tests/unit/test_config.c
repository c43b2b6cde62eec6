/* Unit tests of lib/config.c: defaults, a full file, every error kind with its exact line, the
 * TYTO_* environment, cross-key rules, redis.url forms, and garbage input. Run from the repo
 * root (the shipped tyto.yaml is loaded by relative path). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/announce.h"
#include "lib/config.h"

/* Parses text with config_parse() under the name "t.yaml"; returns its result. */
static int parse(const char *text, struct config *cfg, char *err, size_t errlen)
{
    err[0] = '\0';
    return config_parse("t.yaml", text, strlen(text), cfg, err, errlen);
}

/* Asserts that text fails with exactly the message want. */
static void expect_error(const char *text, const char *want)
{
    struct config cfg;
    char err[512];

    if (parse(text, &cfg, err, sizeof(err)) == 0)
        fail_msg("accepted:\n%s\nexpected: %s", text, want);
    assert_string_equal(err, want);
}

/* The defaults after config_validate(), i.e. what an empty file gives. */
static void validated_defaults(struct config *cfg)
{
    char err[256];

    config_defaults(cfg);
    assert_int_equal(config_validate(cfg, err, sizeof(err)), 0);
}

/* Removes every TYTO_* variable of this process so config_load() sees only what a test sets. */
static void clear_tyto_env(void)
{
    for (;;) {
        char name[128];
        char **e;

        for (e = environ; *e != NULL; e++)
            if (strncmp(*e, "TYTO_", 5) == 0)
                break;
        if (*e == NULL)
            return;
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
        assert_int_equal(unsetenv(name), 0);
    }
}

/* Writes text to a fresh temporary file; the caller unlinks path. */
static void write_temp(char *path, size_t cap, const char *text)
{
    FILE *f;
    int fd;

    snprintf(path, cap, "/tmp/tyto-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_config_defaults(void **state)
{
    struct config c;

    (void)state;
    config_defaults(&c);
    assert_int_equal(c.port, 6969);
    assert_string_equal(c.listen_ipv4, "0.0.0.0");
    assert_string_equal(c.listen_ipv6, "::");
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.storage, CONFIG_STORAGE_REDIS);
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(c.redis_prefix, "tyto:");
    assert_int_equal(c.redis_timeout_ms, 1000);
    assert_int_equal(c.interval_s, 1800);
    assert_int_equal(c.min_interval_s, 900);
    assert_int_equal(c.peer_ttl_s, 0);
    assert_int_equal(c.numwant_default, 50);
    assert_int_equal(c.numwant_max, 200);
    assert_false(c.allow_ip_param);
    assert_int_equal(c.scrape_max_hashes, 64);
    assert_int_equal(c.http_max_header_bytes, 8192);
    assert_int_equal(c.http_idle_timeout_s, 30);
    assert_int_equal(c.http_max_connections, 10000);
    assert_int_equal(c.shutdown_timeout_s, 10);
    assert_string_equal(c.pid_file, "");
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    assert_string_equal(c.log_file, "");
    assert_string_equal(c.access_log, "");
    assert_int_equal(c.proxy_trusted_count, 0);
}

static void test_config_empty_file_is_all_defaults(void **state)
{
    static const char *const texts[] = { "", "\n", "# nothing but a comment\n", "---\n", "---\n...\n",
                                         "~\n" };
    struct config want, got;
    char err[256];

    (void)state;
    validated_defaults(&want);
    assert_int_equal(want.peer_ttl_s, 3600);        /* 0 resolved to 2 x interval */
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        memset(&got, 0xa5, sizeof(got));
        if (parse(texts[i], &got, err, sizeof(err)) != 0)
            fail_msg("'%s': %s", texts[i], err);
        assert_memory_equal(&got, &want, sizeof(want));
    }
}

static void test_config_full_file(void **state)
{
    static const char text[] =
        "# every key, none at its default\n"
        "listen:\n"
        "  port: 8080\n"
        "  ipv4: 127.0.0.1\n"
        "  ipv6: ''\n"
        "workers: 1\n"
        "storage:\n"
        "  backend: memory\n"
        "redis:\n"
        "  url: \"redis://:s3cret@[::1]:6380/2\"\n"
        "  prefix: 't.x-1_:'\n"
        "  timeout_ms: 250\n"
        "announce:\n"
        "  interval_s: 600\n"
        "  min_interval_s: 60\n"
        "  peer_ttl_s: 1500\n"
        "  numwant_default: 0\n"
        "  numwant_max: 1000\n"
        "  allow_ip_param: yes\n"
        "scrape:\n"
        "  max_hashes: 256\n"
        "http:\n"
        "  max_header_bytes: 1024\n"
        "  idle_timeout_s: 3600\n"
        "  max_connections: 1000000\n"
        "shutdown:\n"
        "  timeout_s: 1\n"
        "pid_file: /run/tyto.pid\n"
        "log:\n"
        "  level: debug\n"
        "  file: '/var/log/tyto/tyto.log'\n"
        "  access: \"-\"\n"
        "proxy:\n"
        "  trusted:\n"
        "    - 127.0.0.1\n"
        "    - 10.0.0.0/8\n"
        "    - \"::1\"\n"
        "    - 2001:db8::/32\n";
    struct config c;
    char err[256];

    (void)state;
    if (parse(text, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.listen_ipv4, "127.0.0.1");
    assert_string_equal(c.listen_ipv6, "");
    assert_int_equal(c.workers, 1);
    assert_int_equal(c.storage, CONFIG_STORAGE_MEMORY);
    assert_string_equal(c.redis_url, "redis://:s3cret@[::1]:6380/2");
    assert_string_equal(c.redis_prefix, "t.x-1_:");
    assert_int_equal(c.redis_timeout_ms, 250);
    assert_int_equal(c.interval_s, 600);
    assert_int_equal(c.min_interval_s, 60);
    assert_int_equal(c.peer_ttl_s, 1500);
    assert_int_equal(c.numwant_default, 0);
    assert_int_equal(c.numwant_max, 1000);
    assert_true(c.allow_ip_param);
    assert_int_equal(c.scrape_max_hashes, SCRAPE_MAX_HASHES);
    assert_int_equal(c.http_max_header_bytes, 1024);
    assert_int_equal(c.http_idle_timeout_s, 3600);
    assert_int_equal(c.http_max_connections, 1000000);
    assert_int_equal(c.shutdown_timeout_s, 1);
    assert_string_equal(c.pid_file, "/run/tyto.pid");
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(c.log_file, "/var/log/tyto/tyto.log");
    assert_string_equal(c.access_log, "-");
    assert_int_equal(c.proxy_trusted_count, 4);
    assert_string_equal(c.proxy_trusted[0], "127.0.0.1");
    assert_string_equal(c.proxy_trusted[1], "10.0.0.0/8");
    assert_string_equal(c.proxy_trusted[2], "::1");
    assert_string_equal(c.proxy_trusted[3], "2001:db8::/32");
}

static void test_config_value_forms(void **state)
{
    struct config c;
    char err[256];

    (void)state;
    /* Quoted numbers and booleans, flow style, YAML nulls for strings and lists, "auto". */
    if (parse("listen: {port: \"7000\"}\n"
              "workers: AUTO\n"
              "announce: {allow_ip_param: On}\n"
              "pid_file:\n"
              "log: {level: WARN, file: ~}\n"
              "proxy:\n"
              "  trusted: [10.1.2.3, 'fe80::/10']\n", &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.port, 7000);
    assert_int_equal(c.workers, 0);
    assert_true(c.allow_ip_param);
    assert_string_equal(c.pid_file, "");
    assert_int_equal(c.log_level, LOG_LEVEL_WARN);
    assert_string_equal(c.log_file, "");
    assert_int_equal(c.proxy_trusted_count, 2);
    assert_string_equal(c.proxy_trusted[1], "fe80::/10");

    for (const char *const *b = (const char *const[]){ "true", "yes", "on", "True", NULL }; *b; b++) {
        char text[128];

        snprintf(text, sizeof(text), "announce:\n  allow_ip_param: %s\n", *b);
        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_true(c.allow_ip_param);
    }
    for (const char *const *b = (const char *const[]){ "false", "no", "off", "NO", NULL }; *b; b++) {
        char text[128];

        snprintf(text, sizeof(text), "announce:\n  allow_ip_param: %s\n", *b);
        assert_int_equal(parse(text, &c, err, sizeof(err)), 0);
        assert_false(c.allow_ip_param);
    }

    /* An empty section (every key commented out) and an empty list. */
    assert_int_equal(parse("proxy:\n#  trusted: [1.2.3.4]\nlisten:\n", &c, err, sizeof(err)), 0);
    assert_int_equal(parse("proxy:\n  trusted:\n", &c, err, sizeof(err)), 0);
    assert_int_equal(c.proxy_trusted_count, 0);
    /* Leading zeros are still decimal. */
    assert_int_equal(parse("listen:\n  port: 0080\n", &c, err, sizeof(err)), 0);
    assert_int_equal(c.port, 80);
}

static void test_config_unknown_key_line(void **state)
{
    (void)state;
    expect_error("listen:\n  port: 6969\n\nwokers: 4\n", "t.yaml:4: unknown key 'wokers'");
    expect_error("listen:\n  port: 6969\n  prot: 1\n", "t.yaml:3: unknown key 'listen.prot'");
    expect_error("# a comment\nlistn:\n  port: 1\n", "t.yaml:2: unknown key 'listn'");
    /* A section key at the top level, and a top-level key inside a section. */
    expect_error("port: 6969\n", "t.yaml:1: unknown key 'port'");
    expect_error("log:\n  workers: 2\n", "t.yaml:2: unknown key 'log.workers'");
    expect_error("listen:\n  port: 1\n  port.x: 2\n", "t.yaml:3: unknown key 'listen.port.x'");
    expect_error("? [a, b]\n: 1\n", "t.yaml:1: keys must be plain words, got a sequence");
}

static void test_config_bad_int(void **state)
{
    (void)state;
    expect_error("listen:\n  port: abc\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got 'abc'");
    expect_error("listen:\n  ipv4: 0.0.0.0\n  port: 80x\n",
                 "t.yaml:3: listen.port must be an integer from 1 to 65535, got '80x'");
    expect_error("listen:\n  port: 8 0\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '8 0'");
    expect_error("listen:\n  port: +80\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '+80'");
    expect_error("listen:\n  port: 0x50\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '0x50'");
    expect_error("listen:\n  port: 1.5\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '1.5'");
    expect_error("listen:\n  port:\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got ''");
    expect_error("listen:\n  port:\n    - 1\n",
                 "t.yaml:3: listen.port must be an integer from 1 to 65535, got a sequence");
    expect_error("workers:\n  n: 1\n",
                 "t.yaml:2: workers must be auto or an integer from 1 to 256, got a mapping");
}

static void test_config_out_of_range(void **state)
{
    (void)state;
    expect_error("listen:\n  port: 0\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '0'");
    expect_error("listen:\n  port: 65536\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '65536'");
    expect_error("listen:\n  port: -1\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got '-1'");
    expect_error("rate_limit:\n  announces: 65536\n",
                 "t.yaml:2: rate_limit.announces must be an integer from 0 to 65535, got '65536'");
    expect_error("rate_limit:\n  announces: 10\n  window_s: 0\n",
                 "t.yaml:3: rate_limit.window_s must be an integer from 1 to 3600, got '0'");
    expect_error("listen:\n  port: 99999999999999999999999999\n",
                 "t.yaml:2: listen.port must be an integer from 1 to 65535, got "
                 "'99999999999999999999999999'");
    expect_error("workers: 0\n", "t.yaml:1: workers must be auto or an integer from 1 to 256, got '0'");
    expect_error("workers: 257\n",
                 "t.yaml:1: workers must be auto or an integer from 1 to 256, got '257'");
    expect_error("announce:\n  peer_ttl_s: 59\n",
                 "t.yaml:2: announce.peer_ttl_s must be 0 or an integer from 60 to 172800, got '59'");
    expect_error("scrape:\n  max_hashes: 257\n",
                 "t.yaml:2: scrape.max_hashes must be an integer from 1 to 256, got '257'");
    expect_error("redis:\n  timeout_ms: 9\n",
                 "t.yaml:2: redis.timeout_ms must be an integer from 10 to 60000, got '9'");
    expect_error("http:\n  max_header_bytes: 65537\n",
                 "t.yaml:2: http.max_header_bytes must be an integer from 1024 to 65536, got '65537'");
}

static void test_config_bad_enum(void **state)
{
    (void)state;
    expect_error("log:\n  file: ''\n\n  level: loud\n",
                 "t.yaml:4: log.level must be one of error, warn, info, debug, got 'loud'");
    expect_error("storage:\n  backend: mysql\n",
                 "t.yaml:2: storage.backend must be one of redis, memory, got 'mysql'");
}

static void test_config_bad_bool(void **state)
{
    (void)state;
    expect_error("announce:\n  allow_ip_param: maybe\n",
                 "t.yaml:2: announce.allow_ip_param must be true or false (or yes/no, on/off), got "
                 "'maybe'");
    expect_error("announce:\n  allow_ip_param: 1\n",
                 "t.yaml:2: announce.allow_ip_param must be true or false (or yes/no, on/off), got '1'");
}

static void test_config_bad_string(void **state)
{
    char text[600];

    (void)state;
    expect_error("listen:\n  ipv4: '::'\n",
                 "t.yaml:2: listen.ipv4 must be an IPv4 address or empty, got '::'");
    expect_error("listen:\n  ipv6: 0.0.0.0\n",
                 "t.yaml:2: listen.ipv6 must be an IPv6 address or empty, got '0.0.0.0'");
    expect_error("redis:\n  prefix: 'a b'\n",
                 "t.yaml:2: redis.prefix must be 1 to 32 characters of A-Z a-z 0-9 : _ . -, got 'a b'");
    expect_error("redis:\n  prefix: ''\n",
                 "t.yaml:2: redis.prefix must be 1 to 32 characters of A-Z a-z 0-9 : _ . -, got ''");
    expect_error("redis:\n  url: http://x\n",
                 "t.yaml:2: redis.url: unsupported scheme 'http' (use redis:// or unix://)");
    expect_error("pid_file: \"a\\0b\"\n", "t.yaml:1: pid_file must not contain NUL bytes");
    snprintf(text, sizeof(text), "pid_file: /%0300d\n", 0);
    expect_error(text, "t.yaml:1: pid_file must be at most 255 bytes long, got 301");
}

static void test_config_not_a_mapping(void **state)
{
    (void)state;
    expect_error("listen: 6969\n", "t.yaml:1: 'listen' must be a mapping");
    expect_error("workers: 2\nlisten:\n  - 6969\n", "t.yaml:3: 'listen' must be a mapping");
    expect_error("- a\n- b\n", "t.yaml:1: the top level must be a mapping of keys (key: value), got a sequence");
    expect_error("\n\nhello\n", "t.yaml:3: the top level must be a mapping of keys (key: value), got a scalar");
    expect_error("proxy:\n  trusted: 10.0.0.1\n",
                 "t.yaml:2: proxy.trusted must be a sequence of addresses or CIDR blocks (- item lines or [a, b])");
    expect_error("proxy:\n  trusted:\n    - [10.0.0.1]\n",
                 "t.yaml:3: proxy.trusted entries must be addresses, got a sequence");
}

static void test_config_duplicate_key(void **state)
{
    (void)state;
    expect_error("listen:\n  port: 1\n  ipv4: ''\n  port: 2\n", "t.yaml:4: duplicate key 'listen.port'");
    expect_error("workers: 1\nworkers: 2\n", "t.yaml:2: duplicate key 'workers'");
    expect_error("listen:\n  port: 1\nlog:\n  level: info\nlisten:\n  ipv4: ''\n",
                 "t.yaml:5: duplicate key 'listen'");
}

static void test_config_yaml_syntax_error(void **state)
{
    struct config c;
    char err[256];

    (void)state;
    expect_error("listen:\n  port: 1\n   ipv4: x\n",
                 "t.yaml:3: mapping values are not allowed in this context");
    expect_error("listen:\n  port: 1\nlog:\n  level: [info\n",
                 "t.yaml:5: did not find expected ',' or ']'");
    expect_error("listen: &a\n  port: *b\n", "t.yaml:2: found undefined alias");
    expect_error("a: \"unterminated\n", "t.yaml:2: found unexpected end of stream");
    /* The reader reports an offset; it is turned into a line. */
    assert_int_equal(parse("workers: 1\n\nlog:\n  file: \xff\n", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "t.yaml:4: invalid leading UTF-8 octet");
    /* One document only. */
    expect_error("workers: 1\n---\nworkers: 2\n", "t.yaml:3: only one YAML document is allowed");
}

static void test_config_bad_cidr(void **state)
{
    char text[2048];
    size_t n;

    (void)state;
    expect_error("proxy:\n  trusted:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n",
                 "t.yaml:4: proxy.trusted entry '10.0.0.0/33' is not an IPv4/IPv6 address or CIDR block");
    expect_error("proxy:\n  trusted: ['::1/129']\n",
                 "t.yaml:2: proxy.trusted entry '::1/129' is not an IPv4/IPv6 address or CIDR block");
    expect_error("proxy:\n  trusted:\n    - example.com\n",
                 "t.yaml:3: proxy.trusted entry 'example.com' is not an IPv4/IPv6 address or CIDR block");
    expect_error("proxy:\n  trusted:\n    - 10.0.0.0/\n",
                 "t.yaml:3: proxy.trusted entry '10.0.0.0/' is not an IPv4/IPv6 address or CIDR block");
    expect_error("proxy:\n  trusted:\n    - 10.0.0.0/-1\n",
                 "t.yaml:3: proxy.trusted entry '10.0.0.0/-1' is not an IPv4/IPv6 address or CIDR block");
    /* Found by fuzz_config: accepted here, refused by every worker (lib/clientip.c). */
    expect_error("proxy:\n  trusted:\n    - 10.0.0.0/0008\n",
                 "t.yaml:3: proxy.trusted entry '10.0.0.0/0008' is not an IPv4/IPv6 address or CIDR block");
    expect_error("proxy:\n  trusted:\n    - /8\n",
                 "t.yaml:3: proxy.trusted entry '/8' is not an IPv4/IPv6 address or CIDR block");
    expect_error("proxy:\n  trusted:\n    - ''\n",
                 "t.yaml:3: proxy.trusted entry '' is not an IPv4/IPv6 address or CIDR block");
    /* One entry more than CONFIG_MAX_TRUSTED, reported on the extra entry's line. */
    n = (size_t)snprintf(text, sizeof(text), "proxy:\n  trusted:\n");
    for (int i = 0; i <= CONFIG_MAX_TRUSTED; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "    - 10.0.0.%d\n", i);
    snprintf(text + n, sizeof(text) - n, "%s", "");
    {
        char want[128];

        snprintf(want, sizeof(want), "t.yaml:%d: proxy.trusted must have at most %d entries",
                 CONFIG_MAX_TRUSTED + 3, CONFIG_MAX_TRUSTED);
        expect_error(text, want);
    }
}

static void test_config_validate_rules(void **state)
{
    struct config c;
    char err[256];

    (void)state;
    expect_error("announce:\n  min_interval_s: 2000\n",
                 "t.yaml: announce.min_interval_s (2000) must not exceed announce.interval_s (1800)");
    expect_error("announce:\n  numwant_default: 300\n",
                 "t.yaml: announce.numwant_default (300) must not exceed announce.numwant_max (200)");
    expect_error("listen:\n  ipv4: ''\n  ipv6: \"\"\n", "t.yaml: listen.ipv4 and listen.ipv6 are both empty");
    expect_error("storage:\n  backend: memory\n",
                 "t.yaml: storage.backend memory needs workers: 1 (swarms would be split between workers)");
    expect_error("storage:\n  backend: memory\nworkers: 2\n",
                 "t.yaml: storage.backend memory needs workers: 1 (swarms would be split between workers)");
    assert_int_equal(parse("storage:\n  backend: memory\nworkers: 1\n", &c, err, sizeof(err)), 0);

    /* config_validate() itself: no prefix, and it re-checks fields set by hand. */
    config_defaults(&c);
    c.min_interval_s = 2000;
    assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "announce.min_interval_s (2000) must not exceed announce.interval_s (1800)");
    config_defaults(&c);
    c.port = 0;
    assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "listen.port must be an integer from 1 to 65535, got '0'");
    config_defaults(&c);
    snprintf(c.redis_url, sizeof(c.redis_url), "http://x");
    assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "redis.url: unsupported scheme 'http' (use redis:// or unix://)");
    config_defaults(&c);
    c.proxy_trusted_count = 1;
    snprintf(c.proxy_trusted[0], sizeof(c.proxy_trusted[0]), "1.2.3.4/40");
    assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "proxy.trusted entry '1.2.3.4/40' is not an IPv4/IPv6 address or CIDR block");
    config_defaults(&c);
    snprintf(c.listen_ipv4, sizeof(c.listen_ipv4), "::");
    assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "listen.ipv4 must be an IPv4 address or empty, got '::'");
    config_defaults(&c);
    c.log_level = (enum config_log_level)9;
    assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "log.level must be one of error, warn, info, debug, got '9'");

    /* peer_ttl_s: 0 becomes 2 x interval; an explicit value stays; validating twice is stable. */
    config_defaults(&c);
    c.interval_s = 86400;
    c.min_interval_s = 60;
    assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(c.peer_ttl_s, 172800);
    assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(c.peer_ttl_s, 172800);
    assert_int_equal(parse("announce:\n  peer_ttl_s: 100\n", &c, err, sizeof(err)), 0);
    assert_int_equal(c.peer_ttl_s, 100);
}

static void test_config_env_overrides(void **state)
{
    char *const envp[] = {
        "PATH=/usr/bin",
        "TYTO_BIN=build/tyto",                      /* not a key: ignored */
        "TYTO_TEST_REDIS=/tmp/x.sock",
        "TYTO_LISTEN_PORT=7000",
        "TYTO_LISTEN_IPV6=",
        "TYTO_WORKERS=3",
        "TYTO_REDIS_URL=unix:///tmp/r.sock?db=2",
        "TYTO_ANNOUNCE_INTERVAL_S=600",
        "TYTO_ANNOUNCE_MIN_INTERVAL_S=300",
        "TYTO_ANNOUNCE_ALLOW_IP_PARAM=on",
        "TYTO_LOG=error",
        "TYTO_PROXY_TRUSTED= 10.0.0.0/8 , ::1,,",
        "TYTO_LISTEN_PORT=7001",                    /* the first one counts, as with getenv() */
        NULL,
    };
    struct config c;
    char err[256];

    (void)state;
    config_defaults(&c);
    assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), 0);
    assert_int_equal(c.port, 7000);
    assert_string_equal(c.listen_ipv4, "0.0.0.0");
    assert_string_equal(c.listen_ipv6, "");
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.redis_url, "unix:///tmp/r.sock?db=2");
    assert_int_equal(c.interval_s, 600);
    assert_int_equal(c.min_interval_s, 300);
    assert_true(c.allow_ip_param);
    assert_int_equal(c.log_level, LOG_LEVEL_ERROR);
    assert_int_equal(c.proxy_trusted_count, 2);
    assert_string_equal(c.proxy_trusted[0], "10.0.0.0/8");
    assert_string_equal(c.proxy_trusted[1], "::1");

    /* TYTO_LOG_LEVEL wins over the TYTO_LOG alias whatever the order. */
    {
        char *const e2[] = { "TYTO_LOG=error", "TYTO_LOG_LEVEL=debug", NULL };

        config_defaults(&c);
        assert_int_equal(config_apply_env(&c, e2, err, sizeof(err)), 0);
        assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    }
    /* An empty TYTO_PROXY_TRUSTED empties the list. */
    {
        char *const e3[] = { "TYTO_PROXY_TRUSTED=", NULL };

        c.proxy_trusted_count = 1;
        snprintf(c.proxy_trusted[0], sizeof(c.proxy_trusted[0]), "1.2.3.4");
        assert_int_equal(config_apply_env(&c, e3, err, sizeof(err)), 0);
        assert_int_equal(c.proxy_trusted_count, 0);
    }
    /* NULL envp and an environment without TYTO_ keys change nothing. */
    {
        char *const e4[] = { "HOME=/root", "TYTO_=1", "TYTO_LISTEN=1", NULL };
        struct config before;

        config_defaults(&c);
        before = c;
        assert_int_equal(config_apply_env(&c, NULL, err, sizeof(err)), 0);
        assert_int_equal(config_apply_env(&c, e4, err, sizeof(err)), 0);
        assert_memory_equal(&c, &before, sizeof(c));
    }
}

static void expect_env_error(char *const *envp, const char *want)
{
    struct config c, before;
    char err[256] = "";

    config_defaults(&c);
    before = c;
    assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_memory_equal(&c, &before, sizeof(c));    /* untouched, even by earlier good variables */
}

static void test_config_env_errors(void **state)
{
    (void)state;
    expect_env_error((char *const[]){ "TYTO_WORKERS=2", "TYTO_LISTEN_PORT=x", NULL },
                     "TYTO_LISTEN_PORT: must be an integer from 1 to 65535, got 'x'");
    expect_env_error((char *const[]){ "TYTO_WORKERS=many", NULL },
                     "TYTO_WORKERS: must be auto or an integer from 1 to 256, got 'many'");
    expect_env_error((char *const[]){ "TYTO_LOG=loud", NULL },
                     "TYTO_LOG: must be one of error, warn, info, debug, got 'loud'");
    expect_env_error((char *const[]){ "TYTO_LOG_LEVEL=", NULL },
                     "TYTO_LOG_LEVEL: must be one of error, warn, info, debug, got ''");
    expect_env_error((char *const[]){ "TYTO_ANNOUNCE_ALLOW_IP_PARAM=2", NULL },
                     "TYTO_ANNOUNCE_ALLOW_IP_PARAM: must be true or false (or yes/no, on/off), got '2'");
    expect_env_error((char *const[]){ "TYTO_REDIS_URL=http://x", NULL },
                     "TYTO_REDIS_URL: unsupported scheme 'http' (use redis:// or unix://)");
    expect_env_error((char *const[]){ "TYTO_PROXY_TRUSTED=10.0.0.1,10.0.0.0/99", NULL },
                     "TYTO_PROXY_TRUSTED: entry '10.0.0.0/99' is not an IPv4/IPv6 address or CIDR block");
    expect_env_error((char *const[]){ "TYTO_LISTEN_PORT= 80", NULL },
                     "TYTO_LISTEN_PORT: must be an integer from 1 to 65535, got ' 80'");
}

static void test_config_redis_url_forms(void **state)
{
    struct config_redis_target t;
    char err[256];

    (void)state;
    assert_int_equal(config_parse_redis_url("redis://h", &t, err, sizeof(err)), 0);
    assert_false(t.unix_socket);
    assert_string_equal(t.host, "h");
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
    assert_string_equal(t.password, "");

    assert_int_equal(config_parse_redis_url("redis://127.0.0.1:6380", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(t.port, 6380);

    assert_int_equal(config_parse_redis_url("redis://cache.example.net:7000/3", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "cache.example.net");
    assert_int_equal(t.port, 7000);
    assert_int_equal(t.db, 3);

    assert_int_equal(config_parse_redis_url("redis://h/5", &t, err, sizeof(err)), 0);
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 5);
    assert_int_equal(config_parse_redis_url("redis://h/", &t, err, sizeof(err)), 0);
    assert_int_equal(t.db, 0);

    assert_int_equal(config_parse_redis_url("redis://[::1]:6380", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 6380);
    assert_int_equal(config_parse_redis_url("redis://[2001:db8::5]", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "2001:db8::5");
    assert_int_equal(t.port, 6379);

    assert_int_equal(config_parse_redis_url("redis://:s3cret@h:1/2", &t, err, sizeof(err)), 0);
    assert_string_equal(t.password, "s3cret");
    assert_string_equal(t.host, "h");
    assert_int_equal(t.port, 1);
    assert_int_equal(t.db, 2);
    assert_int_equal(config_parse_redis_url("redis://alice:p%40ss:w@[::1]", &t, err, sizeof(err)), 0);
    assert_string_equal(t.password, "p@ss:w");
    assert_string_equal(t.host, "::1");
    assert_int_equal(config_parse_redis_url("REDIS://H", &t, err, sizeof(err)), 0);

    assert_int_equal(config_parse_redis_url("unix:///tmp/r.sock?db=2", &t, err, sizeof(err)), 0);
    assert_true(t.unix_socket);
    assert_string_equal(t.path, "/tmp/r.sock");
    assert_int_equal(t.db, 2);
    assert_int_equal(config_parse_redis_url("unix:///var/run/redis.sock", &t, err, sizeof(err)), 0);
    assert_string_equal(t.path, "/var/run/redis.sock");
    assert_int_equal(t.db, 0);
    assert_int_equal(config_parse_redis_url("unix://:pw@/tmp/r.sock", &t, err, sizeof(err)), 0);
    assert_string_equal(t.password, "pw");
    assert_string_equal(t.path, "/tmp/r.sock");
}

static void expect_url_error(const char *url, const char *want)
{
    struct config_redis_target t;
    char err[256] = "";

    if (config_parse_redis_url(url, &t, err, sizeof(err)) == 0)
        fail_msg("accepted '%s'", url);
    assert_string_equal(err, want);
}

static void test_config_redis_url_errors(void **state)
{
    char url[300];

    (void)state;
    expect_url_error("http://h", "redis.url: unsupported scheme 'http' (use redis:// or unix://)");
    expect_url_error("rediss://h", "redis.url: unsupported scheme 'rediss' (use redis:// or unix://)");
    expect_url_error("127.0.0.1:6379",
                     "redis.url: '127.0.0.1:6379' is not a URL (use redis://host:port or unix:///path/to.sock)");
    expect_url_error("redis://h:0", "redis.url: bad port '0' (1 to 65535)");
    expect_url_error("redis://h:65536", "redis.url: bad port '65536' (1 to 65535)");
    expect_url_error("redis://h:x", "redis.url: bad port 'x' (1 to 65535)");
    expect_url_error("redis://h:", "redis.url: bad port '' (1 to 65535)");
    expect_url_error("redis://h:-1", "redis.url: bad port '-1' (1 to 65535)");
    expect_url_error("redis://h/x", "redis.url: bad database number 'x'");
    expect_url_error("redis://h/1/2", "redis.url: bad database number '1/2'");
    expect_url_error("redis://", "redis.url: missing host");
    expect_url_error("redis://:pw@", "redis.url: missing host");
    expect_url_error("redis://::1", "redis.url: missing host");
    expect_url_error("redis://[::1", "redis.url: missing ']' after the IPv6 address");
    expect_url_error("redis://[nope]:1", "redis.url: bad IPv6 address 'nope'");
    expect_url_error("redis://h?db=1", "redis.url: unexpected '?db=1' after the host");
    expect_url_error("redis://a b", "redis.url: bad host 'a b'");
    expect_url_error("redis://pw@h", "redis.url: a user name without a password (use redis://:PASSWORD@host)");
    expect_url_error("redis://:%zz@h", "redis.url: bad password (too long, or a bad %-escape; at most 127 bytes)");
    expect_url_error("unix://tmp/r.sock",
                     "redis.url: unix:// needs an absolute socket path (unix:///path/to.sock)");
    expect_url_error("unix://", "redis.url: unix:// needs an absolute socket path (unix:///path/to.sock)");
    expect_url_error("unix:///tmp/r.sock?database=2", "redis.url: unknown parameter 'database=2' (only ?db=N)");
    expect_url_error("unix:///tmp/r.sock?db=", "redis.url: bad database number ''");
    snprintf(url, sizeof(url), "unix:///%0120d", 0);
    expect_url_error(url, "redis.url: socket path longer than 107 bytes");
}

static void test_config_untouched_on_error(void **state)
{
    static const char *const bad[] = {
        "listen:\n  port: 1\nwokers: 2\n",          /* unknown key after a good one */
        "workers: 2\nlog:\n  level: loud\n",
        "listen:\n  port: 7\n  [\n",
        "announce:\n  min_interval_s: 2000\n",      /* only cross-key validation fails */
    };
    struct config c, sentinel;
    char err[256], path[64];

    (void)state;
    memset(&sentinel, 0x5a, sizeof(sentinel));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = sentinel;
        assert_int_equal(parse(bad[i], &c, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        assert_memory_equal(&c, &sentinel, sizeof(c));
    }

    /* config_load: a missing file, a bad file, a bad environment. */
    c = sentinel;
    assert_int_equal(config_load("/nonexistent/tyto.yaml", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/tyto.yaml: cannot read: No such file or directory");
    assert_memory_equal(&c, &sentinel, sizeof(c));
    assert_int_equal(config_load("/tmp", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
    assert_memory_equal(&c, &sentinel, sizeof(c));

    clear_tyto_env();
    write_temp(path, sizeof(path), "workers: 1\nlisten:\n  port: 0\n");
    assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
    {
        char want[256];

        snprintf(want, sizeof(want), "%s:3: listen.port must be an integer from 1 to 65535, got '0'", path);
        assert_string_equal(err, want);
    }
    assert_memory_equal(&c, &sentinel, sizeof(c));
    unlink(path);

    write_temp(path, sizeof(path), "workers: 1\n");
    setenv("TYTO_REDIS_TIMEOUT_MS", "5", 1);
    assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
    assert_string_equal(err, "TYTO_REDIS_TIMEOUT_MS: must be an integer from 10 to 60000, got '5'");
    assert_memory_equal(&c, &sentinel, sizeof(c));
    unsetenv("TYTO_REDIS_TIMEOUT_MS");
    unlink(path);
}

static void test_config_load_applies_env_then_validates(void **state)
{
    struct config c;
    char err[256], path[64], want[256];

    (void)state;
    clear_tyto_env();
    write_temp(path, sizeof(path), "listen:\n  port: 7000\nannounce:\n  interval_s: 600\n  min_interval_s: 300\n");
    setenv("TYTO_LISTEN_PORT", "7100", 1);
    setenv("TYTO_BIN", "build/tyto", 1);
    assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
    assert_int_equal(c.port, 7100);                 /* env over file */
    assert_int_equal(c.interval_s, 600);            /* file over default */
    assert_int_equal(c.peer_ttl_s, 1200);           /* validated: 2 x interval */

    /* The cross-key rules see the environment: 700 > 600 only once TYTO_ is applied. */
    setenv("TYTO_ANNOUNCE_MIN_INTERVAL_S", "700", 1);
    assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
    snprintf(want, sizeof(want),
             "%s: announce.min_interval_s (700) must not exceed announce.interval_s (600)", path);
    assert_string_equal(err, want);
    unsetenv("TYTO_ANNOUNCE_MIN_INTERVAL_S");
    unsetenv("TYTO_LISTEN_PORT");
    unsetenv("TYTO_BIN");
    unlink(path);

    /* An empty file loads. */
    write_temp(path, sizeof(path), "");
    assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
    unlink(path);
}

static void test_config_shipped_file_is_the_defaults(void **state)
{
    struct config got, want;
    char err[256];

    (void)state;
    clear_tyto_env();
    memset(&got, 0, sizeof(got));
    if (config_load("tyto.yaml", &got, err, sizeof(err)) != 0)
        fail_msg("%s (tests run from the repo root)", err);
    validated_defaults(&want);
    assert_memory_equal(&got, &want, sizeof(want));
}

/* private.*, admin.token: defaults, the client list, the rules across keys. */
static void test_config_private_keys(void **state)
{
    static const char ok[] = "admin:\n  token: \"t0k\"\nprivate:\n  enabled: true\n  cache_ms: 0\n"
                             "  clients_mode: deny\n  clients: [\"-qB\", \"-TR2940-\", \"M7-\"]\n";
    char *const envp[] = { "TYTO_ADMIN_TOKEN=from-env", "TYTO_PRIVATE_CLIENTS=-lt,-DE", NULL };
    struct config c;
    char err[256];

    (void)state;
    config_defaults(&c);
    assert_false(c.private_enabled);
    assert_int_equal(c.private_cache_ms, 1000);
    assert_int_equal(c.private_unknown_passkey_limit, 10);
    assert_int_equal(c.clients_mode, CONFIG_CLIENTS_OFF);
    assert_int_equal(c.clients_count, 0);
    assert_string_equal(c.admin_token, "");
    if (parse(ok, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_true(c.private_enabled);
    assert_int_equal(c.private_cache_ms, 0);
    assert_int_equal(c.clients_mode, CONFIG_CLIENTS_DENY);
    assert_int_equal(c.clients_count, 3);
    assert_string_equal(c.clients[1], "-TR2940-");
    assert_string_equal(c.admin_token, "t0k");
    assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), 0);
    assert_string_equal(c.admin_token, "from-env");
    assert_int_equal(c.clients_count, 2);
    assert_string_equal(c.clients[1], "-DE");
    expect_error("private:\n  clients: [\"-TR1234567\"]\n",
                 "t.yaml:2: private.clients entry '-TR1234567' is longer than 8 characters");
    expect_error("private:\n  clients: [\"a b\"]\n",
                 "t.yaml:2: private.clients entry 'a b' is not a peer_id prefix (printable characters, no spaces)");
    expect_error("private:\n  clients_mode: allow\n",
                 "t.yaml: private.clients_mode allow needs at least one prefix in private.clients");
    expect_error("workers: 1\nstorage:\n  backend: memory\nprivate:\n  enabled: true\n",
                 "t.yaml: private.enabled needs storage.backend redis (users and their totals live in Redis)");
    expect_error("private:\n  cache_ms: 1001\n", "t.yaml:2: private.cache_ms must be an integer from 0 to 1000, got '1001'");
}

/* listen.udp_port and udp.*: defaults, 0 turns UDP off, bounds, the secret's sources. */
static void test_config_udp_keys(void **state)
{
    static const char ok[] = "listen:\n  udp_port: 0\nudp:\n  secret: \"s\"\n  secret_previous: \"p\"\n"
                             "  connection_id_ttl_s: 10\n";
    static const char both[] = "udp:\n  secret: \"s\"\n  secret_file: \"/etc/tyto/udp.secret\"\n";
    char *const envp[] = { "TYTO_UDP_SECRET=from-env", "TYTO_LISTEN_UDP_PORT=7000", NULL };
    struct config c;
    char err[256];

    (void)state;
    config_defaults(&c);
    assert_int_equal(c.udp_port, 6969);
    assert_int_equal(c.udp_connection_id_ttl_s, 300);
    assert_string_equal(c.udp_secret, "");
    assert_int_equal(config_parse("t.yaml", ok, strlen(ok), &c, err, sizeof(err)), 0);
    assert_int_equal(c.udp_port, 0);
    assert_string_equal(c.udp_secret, "s");
    assert_string_equal(c.udp_secret_previous, "p");
    assert_int_equal(c.udp_connection_id_ttl_s, 10);
    assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), 0);
    assert_string_equal(c.udp_secret, "from-env");
    assert_int_equal(c.udp_port, 7000);
    assert_int_equal(config_parse("t.yaml", both, strlen(both), &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "udp.secret and udp.secret_file are both set"));
    static const char ttl[] = "udp:\n  connection_id_ttl_s: 9\n";
    assert_int_equal(config_parse("t.yaml", ttl, strlen(ttl), &c, err, sizeof(err)), -1);
    static const char port[] = "listen:\n  udp_port: 65536\n";
    assert_int_equal(config_parse("t.yaml", port, strlen(port), &c, err, sizeof(err)), -1);
}

static void test_config_worker_count(void **state)
{
    struct config c;

    (void)state;
    config_defaults(&c);
    assert_true(config_worker_count(&c) >= 1);
    assert_int_equal(config_worker_count(&c), (int)(sysconf(_SC_NPROCESSORS_ONLN) < 1 ? 1 :
                                                    sysconf(_SC_NPROCESSORS_ONLN)));
    c.workers = 3;
    assert_int_equal(config_worker_count(&c), 3);
}

static void test_config_log_level_name(void **state)
{
    (void)state;
    assert_string_equal(config_log_level_name(LOG_LEVEL_ERROR), "error");
    assert_string_equal(config_log_level_name(LOG_LEVEL_WARN), "warn");
    assert_string_equal(config_log_level_name(LOG_LEVEL_INFO), "info");
    assert_string_equal(config_log_level_name(LOG_LEVEL_DEBUG), "debug");
    assert_string_equal(config_log_level_name((enum config_log_level)42), "unknown");
}

/* Parses text and checks the contract: 0, or -1 with a message; never a crash. */
static void parse_anything(const char *text, size_t len)
{
    struct config c;
    char err[256] = "";

    if (config_parse("fuzz", text, len, &c, err, sizeof(err)) != 0)
        assert_true(strncmp(err, "fuzz", 4) == 0);
    /* A tiny buffer truncates, never overflows. */
    config_parse("fuzz", text, len, &c, err, 3);
    config_parse("fuzz", text, len, &c, NULL, 0);
}

static void test_config_garbage_input(void **state)
{
    static const char *const nasty[] = {
        "\0\0\0", "\xff\xfe\x00", "\xef\xbb\xbf", ":", "::::", "-", "- - -", "? ", "[", "]", "{", "}",
        "&a [*a]", "&a {proxy: {trusted: *a}}", "listen: &x {port: 1}\nlog: *x\n",
        "a: !!binary AAAA", "%YAML 1.1\n---\n", "%TAG ! tag:x:\n--- !foo\n", "\t\t\n",
        "listen:\n\tport: 1\n", "listen: {port: 1, port: 2}", "proxy: {trusted: [[], {}, 1]}",
        "'", "\"\\", "|\n  x", ">\n", "workers: *", "!!", "--- |", "...\n---\n...\n",
        "listen:\n  port: 1\n  port:\n", "? listen\n: port\n", "{? {a: b}: c}",
    };
    static const char alphabet[] = " \n\t:-[]{},#&*!|>'\"%@`?~.0123456789abclnoprstw\x01\xc3\xa9";
    char buf[256], deep[4096];
    unsigned seed = 12345;

    (void)state;
    for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++)
        parse_anything(nasty[i], i == 0 ? 3 : i == 1 ? 3 : strlen(nasty[i]));
    memset(deep, '[', sizeof(deep));
    parse_anything(deep, sizeof(deep));
    memset(deep, '{', sizeof(deep));
    parse_anything(deep, sizeof(deep));
    for (int round = 0; round < 3000; round++) {
        size_t len;

        seed = seed * 1103515245u + 12345u;
        len = (seed >> 16) % sizeof(buf);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = round % 4 == 0 ? (char)(seed >> 16) : alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        parse_anything(buf, len);
    }
    /* Garbage through the environment and the URL parser too. */
    {
        char *const envp[] = { "TYTO_LISTEN_PORT", "TYTO_", "=", "", "TYTO_PROXY_TRUSTED=,,,", NULL };
        struct config c;
        char err[128];

        config_defaults(&c);
        assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), 0);
    }
    for (const char *const *u = (const char *const[]){ "", "://", "redis://@", "redis://[]", "redis://[",
                                                       "redis://:@:", "unix://@", "unix://:@/", "unix:///?",
                                                       "redis://%", "redis://:%4", NULL }; *u; u++) {
        struct config_redis_target t;
        char err[128];

        config_parse_redis_url(*u, &t, err, sizeof(err));
    }
}

/* redis.sentinels and redis.master_name (issue 12, Sentinel): entries checked with their line, the
 * pair required together, and the environment's comma-separated form. */
static void test_config_sentinel_keys(void **state)
{
    struct config c;
    char err[512];
    (void)state;

    assert_int_equal(parse("redis:\n  master_name: mymaster\n  sentinels:\n    - 127.0.0.1:26379\n"
                           "    - \"[::1]:26380\"\n    - sentinel-3.example:26381\n", &c, err, sizeof(err)), 0);
    assert_int_equal(c.redis_sentinels_count, 3);
    assert_string_equal(c.redis_sentinels[0], "127.0.0.1:26379");
    assert_string_equal(c.redis_sentinels[1], "[::1]:26380");
    assert_string_equal(c.redis_sentinels[2], "sentinel-3.example:26381");
    assert_string_equal(c.redis_master_name, "mymaster");
    assert_int_equal(parse("redis:\n  sentinels: [127.0.0.1:26379]\n  master_name: m\n", &c, err, sizeof(err)), 0);
    assert_int_equal(c.redis_sentinels_count, 1);
    /* Off by default. */
    validated_defaults(&c);
    assert_int_equal(c.redis_sentinels_count, 0);
    assert_string_equal(c.redis_master_name, "");

    expect_error("redis:\n  master_name: m\n  sentinels:\n    - 127.0.0.1:26379\n    - 127.0.0.1\n",
                 "t.yaml:5: redis.sentinels entries must be HOST:PORT or [IPV6]:PORT: '127.0.0.1' has no :PORT");
    expect_error("redis:\n  sentinels:\n    - 127.0.0.1:0\n",
                 "t.yaml:3: redis.sentinels entries must be HOST:PORT or [IPV6]:PORT: the port in "
                 "'127.0.0.1:0' must be 1 to 65535");
    expect_error("redis:\n  sentinels:\n    - ::1:26379\n",
                 "t.yaml:3: redis.sentinels entries must be HOST:PORT or [IPV6]:PORT: '::1:26379': the "
                 "host must be a name or an IPv4 address (IPv6 in brackets)");
    expect_error("redis:\n  sentinels:\n    - \"[::1:26379\"\n",
                 "t.yaml:3: redis.sentinels entries must be HOST:PORT or [IPV6]:PORT: '[::1:26379' is not "
                 "[IPV6]:PORT");
    expect_error("redis:\n  sentinels: 127.0.0.1:26379\n",
                 "t.yaml:2: redis.sentinels must be a sequence of addresses or CIDR blocks (- item lines or [a, b])");
    expect_error("redis:\n  url: redis://127.0.0.1\n  master_name: my master\n",
                 "t.yaml:3: redis.master_name must be one word (no spaces or control characters), got 'my master'");
    expect_error("redis:\n  master_name: [a]\n", "t.yaml:2: redis.master_name must be a string, got a sequence");
    /* One without the other: a cross-key rule, so no line (an environment variable may supply
     * the other half). */
    expect_error("redis:\n  sentinels: [127.0.0.1:26379]\n",
                 "t.yaml: redis.sentinels is set but redis.master_name is not: Sentinel mode needs both "
                 "(the sentinels to ask, and the name of the master they watch)");
    expect_error("redis:\n  master_name: mymaster\n",
                 "t.yaml: redis.master_name is set but redis.sentinels is not: Sentinel mode needs both "
                 "(the sentinels to ask, and the name of the master they watch)");
    /* The sentinels' own password: only with sentinels, off by default, from the environment too. */
    assert_int_equal(parse("redis:\n  sentinels: [127.0.0.1:26379]\n  master_name: m\n"
                           "  sentinel_password: \"s3cr et\"\n", &c, err, sizeof(err)), 0);
    assert_string_equal(c.redis_sentinel_password, "s3cr et");
    validated_defaults(&c);
    assert_string_equal(c.redis_sentinel_password, "");
    expect_error("redis:\n  sentinel_password: pw\n",
                 "t.yaml: redis.sentinel_password is set but redis.sentinels is not: the password is for "
                 "the sentinels (the data nodes' is in redis.url)");
    {
        char *const envp[] = { "TYTO_REDIS_SENTINELS=127.0.0.1:1, [::1]:2", "TYTO_REDIS_MASTER_NAME=m", NULL };

        validated_defaults(&c);
        assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), 0);
        assert_int_equal(c.redis_sentinels_count, 2);
        assert_string_equal(c.redis_sentinels[1], "[::1]:2");
        assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
    }
    {
        char *const envp[] = { "TYTO_REDIS_SENTINELS=127.0.0.1", NULL };

        validated_defaults(&c);
        assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), -1);
        assert_string_equal(err, "TYTO_REDIS_SENTINELS: entries must be HOST:PORT or [IPV6]:PORT: "
                                 "'127.0.0.1' has no :PORT");
    }
}

/* redis.cluster and redis.nodes (issue 12, Cluster): seeds checked with their line, the pair
 * required together, and the modes a cluster does not combine with. */
static void test_config_cluster_keys(void **state)
{
    struct config c;
    char err[512];
    (void)state;

    assert_int_equal(parse("redis:\n  cluster: true\n  nodes:\n    - 127.0.0.1:7000\n    - \"[::1]:7001\"\n",
                           &c, err, sizeof(err)), 0);
    assert_true(c.redis_cluster);
    assert_int_equal(c.redis_nodes_count, 2);
    assert_string_equal(c.redis_nodes[0], "127.0.0.1:7000");
    assert_string_equal(c.redis_nodes[1], "[::1]:7001");
    validated_defaults(&c);
    assert_false(c.redis_cluster);
    assert_int_equal(c.redis_nodes_count, 0);

    expect_error("redis:\n  cluster: true\n  nodes:\n    - 127.0.0.1:7000\n    - 127.0.0.1\n",
                 "t.yaml:5: redis.nodes entries must be HOST:PORT or [IPV6]:PORT: '127.0.0.1' has no :PORT");
    expect_error("redis:\n  cluster: true\n",
                 "t.yaml: redis.cluster is true but redis.nodes is empty: Redis Cluster mode needs both "
                 "redis.cluster: true and redis.nodes (at least one node to read the slot map from)");
    expect_error("redis:\n  nodes: [127.0.0.1:7000]\n",
                 "t.yaml: redis.nodes is set but redis.cluster is not true: Redis Cluster mode needs both "
                 "redis.cluster: true and redis.nodes (at least one node to read the slot map from)");
    expect_error("redis:\n  cluster: true\n  nodes: [127.0.0.1:7000]\n  sentinels: [127.0.0.1:26379]\n"
                 "  master_name: m\n",
                 "t.yaml: redis.cluster and redis.sentinels are both set: a cluster fails over by itself "
                 "(choose one)");
    expect_error("redis:\n  cluster: true\n  nodes: [127.0.0.1:7000]\n  url: redis://127.0.0.1/2\n",
                 "t.yaml: redis.url selects database 2, but a Redis Cluster has database 0 only (with "
                 "redis.cluster, redis.url gives the password)");
    {
        char *const envp[] = { "TYTO_REDIS_CLUSTER=true", "TYTO_REDIS_NODES=127.0.0.1:7000,127.0.0.1:7001", NULL };

        validated_defaults(&c);
        assert_int_equal(config_apply_env(&c, envp, err, sizeof(err)), 0);
        assert_int_equal(c.redis_nodes_count, 2);
        assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_empty_file_is_all_defaults),
        cmocka_unit_test(test_config_full_file),
        cmocka_unit_test(test_config_value_forms),
        cmocka_unit_test(test_config_unknown_key_line),
        cmocka_unit_test(test_config_bad_int),
        cmocka_unit_test(test_config_out_of_range),
        cmocka_unit_test(test_config_bad_enum),
        cmocka_unit_test(test_config_bad_bool),
        cmocka_unit_test(test_config_bad_string),
        cmocka_unit_test(test_config_not_a_mapping),
        cmocka_unit_test(test_config_duplicate_key),
        cmocka_unit_test(test_config_yaml_syntax_error),
        cmocka_unit_test(test_config_bad_cidr),
        cmocka_unit_test(test_config_validate_rules),
        cmocka_unit_test(test_config_env_overrides),
        cmocka_unit_test(test_config_env_errors),
        cmocka_unit_test(test_config_redis_url_forms),
        cmocka_unit_test(test_config_redis_url_errors),
        cmocka_unit_test(test_config_untouched_on_error),
        cmocka_unit_test(test_config_load_applies_env_then_validates),
        cmocka_unit_test(test_config_shipped_file_is_the_defaults),
        cmocka_unit_test(test_config_worker_count),
        cmocka_unit_test(test_config_udp_keys),
        cmocka_unit_test(test_config_private_keys),
        cmocka_unit_test(test_config_log_level_name),
        cmocka_unit_test(test_config_garbage_input),
        cmocka_unit_test(test_config_sentinel_keys),
        cmocka_unit_test(test_config_cluster_keys),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
