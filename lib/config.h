/* tyto.yaml -> struct config. One table of keys (in config.c) gives each key's type, default,
 * bounds and environment name; the loader applies defaults, then the file, then TYTO_* variables,
 * then cross-key rules. Errors read "FILE:LINE: what is wrong". */
#ifndef TYTO_CONFIG_H
#define TYTO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_STR_MAX 256
#define CONFIG_MAX_TRUSTED 32
#define CONFIG_MAX_CLIENTS 64
#define CONFIG_MAX_SENTINELS 16
#define CONFIG_SENTINEL_ADDR_MAX 80    /* "host:port", "[v6]:port" of one sentinel, with the NUL */
#define CONFIG_MAX_CLUSTER_NODES 16
#define CONFIG_CLIENT_PREFIX_MAX 8     /* a peer_id prefix such as "-qB", "-TR2" or "M7-" */

enum config_storage { CONFIG_STORAGE_REDIS, CONFIG_STORAGE_MEMORY };
enum config_clients_mode { CONFIG_CLIENTS_OFF, CONFIG_CLIENTS_ALLOW, CONFIG_CLIENTS_DENY };
enum config_log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

struct config {
    /* listen */
    int port;                          /* listen.port: HTTP port on every address below */
    char listen_ipv4[64];              /* listen.ipv4: "" disables IPv4 */
    char listen_ipv6[64];              /* listen.ipv6: "" disables IPv6 */
    int workers;                       /* workers: 0 means auto (one per CPU) */
    int udp_port;                      /* listen.udp_port: BEP 15 UDP port on the same addresses; 0 off */

    /* udp */
    char udp_secret[CONFIG_STR_MAX];   /* udp.secret: connection-id key shared by every host; "" none */
    char udp_secret_file[CONFIG_STR_MAX]; /* udp.secret_file: read by the master at start and reload */
    char udp_secret_previous[CONFIG_STR_MAX]; /* udp.secret_previous: still accepted (rotation) */
    int udp_connection_id_ttl_s;       /* udp.connection_id_ttl_s */

    /* storage */
    enum config_storage storage;       /* storage.backend: redis | memory */
    char redis_url[CONFIG_STR_MAX];    /* redis.url: redis://host:port[/db] or unix:///path[?db=N] */
    char redis_prefix[64];             /* redis.prefix: key prefix, "tyto:" */
    int redis_timeout_ms;              /* redis.timeout_ms: deadline of one request's commands */
    int storage_sample_cache_ms;       /* redis.sample_cache_ms: how long a worker draws a hot
                                        * swarm's samples from members it read; 0 off */
    int redis_sentinels_count;         /* redis.sentinels: seed addresses of Redis Sentinels ... */
    char redis_sentinels[CONFIG_MAX_SENTINELS][CONFIG_SENTINEL_ADDR_MAX];
    char redis_master_name[64];        /* redis.master_name: ... asked for this master; both set =
                                        * Sentinel mode (redis.url gives password and db only) */
    char redis_sentinel_password[CONFIG_STR_MAX]; /* redis.sentinel_password: AUTH to the
                                        * sentinels (their requirepass); "" none */
    bool redis_cluster;                /* redis.cluster: Redis Cluster mode, routed by key slot */
    int redis_nodes_count;             /* redis.nodes: seed addresses of cluster nodes (the slot */
    char redis_nodes[CONFIG_MAX_CLUSTER_NODES][CONFIG_SENTINEL_ADDR_MAX]; /* map is read from one) */

    /* announce */
    int interval_s;                    /* announce.interval_s */
    int min_interval_s;                /* announce.min_interval_s */
    int peer_ttl_s;                    /* announce.peer_ttl_s: 0 in the file means 2 x interval */
    int numwant_default;               /* announce.numwant_default */
    int numwant_max;                   /* announce.numwant_max */
    bool allow_ip_param;               /* announce.allow_ip_param: honour ip= */

    /* swarm */
    int swarm_max_peers_per_address;   /* swarm.max_peers_per_address: ports one address may hold
                                        * in one swarm; 0 off */
    int swarm_downloaded_ttl_s;        /* swarm.downloaded_ttl_s: how long a swarm's completed
                                        * count outlives its last announce; 0 forever */

    /* scrape */
    int scrape_max_hashes;             /* scrape.max_hashes */

    /* http */
    int http_max_header_bytes;         /* http.max_header_bytes: request line + headers */
    int http_idle_timeout_s;           /* http.idle_timeout_s: keep-alive idle and read timeout */
    int http_max_connections;          /* http.max_connections: per worker */
    int http_max_pending;              /* http.max_pending: requests waiting for storage, per worker */
    int http_head_timeout_ms;          /* http.head_timeout_ms: whole request head must arrive (slowloris) */
    int http_max_requests_per_conn;    /* http.max_requests_per_connection: then Connection: close */
    int http_max_output_bytes;         /* http.max_output_bytes: reply bytes a worker holds for slow
                                        * readers, all connections together */
    int http_write_timeout_ms;         /* http.write_timeout_ms: a reply must be fully written by then */

    /* admin */
    char admin_listen[80];             /* admin.listen: "ADDR:PORT" or "[V6]:PORT" of the operator
                                        * routes (/metrics, /stats, /healthz); "" off */
    char admin_token[CONFIG_STR_MAX];  /* admin.token (TYTO_ADMIN_TOKEN): bearer token of the
                                        * management API under /api/; "" turns the API off */

    /* private (BEP 27 private tracker mode) */
    bool private_enabled;              /* private.enabled: /<passkey>/announce, approved torrents */
    int private_cache_ms;              /* private.cache_ms: how long a worker trusts a looked-up
                                        * passkey or torrent rule; 0 looks up every request */
    int private_events_maxlen;         /* private.events_maxlen: ~length of the snatch stream */
    bool private_mirror_credits;       /* private.mirror_credits: credits also go to the stream */
    int private_unknown_passkey_limit; /* private.unknown_passkey_limit: unknown-passkey requests
                                        * per address and rate_limit.window_s; 0 off */
    enum config_clients_mode clients_mode; /* private.clients_mode: off | allow | deny */
    int clients_count;                 /* private.clients: peer_id prefixes */
    char clients[CONFIG_MAX_CLIENTS][CONFIG_CLIENT_PREFIX_MAX + 1];

    /* stats (swarm statistics, the aggregator, anomalies: lib/stats.c) */
    bool stats_enabled;                /* stats.enabled: per-swarm figures in the announce pipeline,
                                        * the aggregator lease on every worker (Redis only) */
    int stats_pass_s;                  /* stats.pass_s: the aggregator starts a pass this often */
    int stats_lease_ms;                /* stats.lease_ms: the aggregator's lease; another host takes
                                        * over within it when the holder dies */
    bool stats_full_scrape;            /* stats.full_scrape: BEP 48 scrape without info_hash, from
                                        * the aggregator's snapshot */
    int stats_full_scrape_interval_s;  /* stats.full_scrape_interval_s: one full scrape an address
                                        * per this many seconds */
    int stats_fast_announces;          /* stats.fast_announces: anomaly thresholds; 0 turns one off */
    int stats_peers_per_address;       /* stats.peers_per_address */
    int stats_stuck_leechers;          /* stats.stuck_leechers */
    int stats_stuck_age_s;             /* stats.stuck_age_s */
    int stats_phantom_uploads;         /* stats.phantom_uploads */
    int stats_spike_min;               /* stats.spike_min */
    int stats_spike_factor;            /* stats.spike_factor */

    /* rate_limit */
    int rate_limit_announces;          /* rate_limit.announces: per client address and window; 0 off */
    int rate_limit_window_s;           /* rate_limit.window_s */

    /* process */
    int shutdown_timeout_s;            /* shutdown.timeout_s: drain bound on SIGTERM */
    char pid_file[CONFIG_STR_MAX];     /* pid_file: "" for none */

    /* log */
    enum config_log_level log_level;   /* log.level: error | warn | info | debug */
    char log_file[CONFIG_STR_MAX];     /* log.file: "" is stderr */
    char access_log[CONFIG_STR_MAX];   /* log.access: "" off, "-" stdout, else a file */

    /* proxy */
    int proxy_trusted_count;           /* proxy.trusted: addresses or CIDR blocks */
    char proxy_trusted[CONFIG_MAX_TRUSTED][64];
    bool proxy_protocol;               /* proxy.protocol: trusted peers send a PROXY v1/v2 header */
};

/* Fills cfg with every key's default. */
void config_defaults(struct config *cfg);

/* Loads PATH into *cfg: defaults, then the file, then TYTO_* environment variables, then
 * config_validate(). Returns 0, or -1 with "PATH:LINE: what is wrong" in err; *cfg is untouched
 * on error. A missing file is an error. */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* The same from a string already in memory (tests, fuzzing); name is used in messages. Does not
 * read the environment. */
int config_parse(const char *name, const char *text, size_t len, struct config *cfg, char *err, size_t errlen);

/* Applies TYTO_* variables from envp (NULL-terminated "NAME=value" strings) over *cfg.
 * Returns 0, or -1 with "TYTO_X: what is wrong" in err. */
int config_apply_env(struct config *cfg, char *const *envp, char *err, size_t errlen);

/* Cross-key rules: min_interval <= interval, numwant_default <= numwant_max, at least one listen
 * address, storage memory only with workers 1, a parseable redis.url, valid proxy.trusted
 * entries. Also resolves peer_ttl_s 0 to 2 x interval. Returns 0, or -1 with a message. */
int config_validate(struct config *cfg, char *err, size_t errlen);

/* Number of workers to start: cfg->workers, or the CPU count when it is 0 (auto). */
int config_worker_count(const struct config *cfg);

const char *config_log_level_name(enum config_log_level level);

/* Splits "a.b.c.d:PORT", "[v6]:PORT" (admin.listen) into host (no brackets) and port.
 * Returns 0, or -1 with a message in err. */
int config_parse_hostport(const char *s, char *host, size_t hostcap, int *port, char *err, size_t errlen);

/* Where redis.url points. */
struct config_redis_target {
    bool unix_socket;                  /* true: path holds the socket path */
    char host[CONFIG_STR_MAX];         /* host name or address (IPv6 without brackets) */
    char path[CONFIG_STR_MAX];
    int port;                          /* default 6379 */
    int db;                            /* /N or ?db=N, default 0 */
    char password[128];                /* redis://:PASSWORD@host or redis://user:PASSWORD@host; "" none */
};

/* Parses redis://[[user]:password@]host[:port][/db] (host may be [v6]) and
 * unix://[:password@]/path/to.sock[?db=N]. Returns 0, or -1 with a message in err. */
int config_parse_redis_url(const char *url, struct config_redis_target *t, char *err, size_t errlen);

#endif
