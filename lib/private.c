/* Private mode's data path. A worker keeps two 4-way set-associative caches, users by passkey
 * and torrent rules by info_hash, each PRIVATE_CACHE_ENTRIES places whose set is picked by a
 * keyed SipHash (libsodium), so nobody can aim keys at one set. (Direct-mapped, 2,000 torrents
 * in 4,096 places collided often enough that a third of announces under bench/private.sh
 * missed.) An entry is trusted for private.cache_ms
 * (monotonic), never longer: a disabled user, a removed torrent or a rekeyed passkey is refused
 * by every worker within that time. Unknown passkeys are not cached (a user added a moment ago
 * works at once) and are charged to private.unknown_passkey_limit instead. Expiry is judged on
 * Redis's clock: each lookup reply brings Redis's time, whose offset from the loop's clock is
 * kept for cache hits. */
#include "lib/private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "lib/config.h"
#include "lib/ratelimit.h"
#include "storage/storage.h"

#define PRIVATE_CACHE_SETS 4096u               /* a power of two */
#define PRIVATE_CACHE_WAYS 4u
#define PRIVATE_CACHE_ENTRIES (PRIVATE_CACHE_SETS * PRIVATE_CACHE_WAYS)
#define PRIVATE_SEGMENT_MAX 64

struct private_user {
    uint64_t born_ms;                          /* 0: empty */
    char passkey[PRIVATE_PASSKEY_LEN];
    bool disabled, can_leech;
    int64_t expires_s;
    char name[ANNOUNCE_USER_MAX + 1];
};

struct private_torrent {
    uint64_t born_ms;                          /* 0: empty */
    uint8_t hash[ANNOUNCE_HASH_LEN];
    bool approved, freeleech, neutral;
    char up[ANNOUNCE_MULT_MAX + 1], down[ANNOUNCE_MULT_MAX + 1];
};

struct private_ctx {
    const struct config *cfg;
    struct storage *st;
    struct ratelimit *rl;
    uint8_t key[crypto_shorthash_KEYBYTES];
    int64_t clock_offset_s;                    /* Redis's clock - the loop's, from the last lookup */
    struct private_user *users;                /* PRIVATE_CACHE_ENTRIES each */
    struct private_torrent *torrents;
};

/* One lookup in flight. */
struct private_pending {
    struct private_ctx *p;
    char passkey[PRIVATE_PASSKEY_LEN];
    struct peer_addr client;                   /* a copy: the front's may be on its stack */
    struct announce_req *req;                  /* NULL: a scrape */
    int64_t now_s;
    uint64_t sent_ms;                          /* when the lookup went out: the cache's birth */
    private_done_cb *done;
    void *arg;
};

static bool private_passkey_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

enum private_route private_route(const char *path, size_t len, char passkey[PRIVATE_PASSKEY_LEN + 1])
{
    const char *slash;
    size_t seg, rest;
    enum private_route route;

    passkey[0] = '\0';
    if (len < 2 || path[0] != '/' || !(slash = memchr(path + 1, '/', len - 1)))
        return PRIVATE_ROUTE_NONE;
    seg = (size_t)(slash - path - 1);
    rest = len - 1 - seg;
    if (rest == 9 && memcmp(slash, "/announce", 9) == 0)
        route = PRIVATE_ROUTE_ANNOUNCE;
    else if (rest == 7 && memcmp(slash, "/scrape", 7) == 0)
        route = PRIVATE_ROUTE_SCRAPE;
    else
        return PRIVATE_ROUTE_NONE;
    if (seg == 0 || seg > PRIVATE_SEGMENT_MAX)
        return PRIVATE_ROUTE_NONE;
    if (seg == PRIVATE_PASSKEY_LEN) {
        size_t i;
        for (i = 0; i < seg && private_passkey_char(path[1 + i]); i++)
            ;
        if (i == seg) {
            memcpy(passkey, path + 1, seg);
            passkey[seg] = '\0';
        }
    }
    return route;
}

enum private_route private_udp_route(const char *url, size_t len, char passkey[PRIVATE_PASSKEY_LEN + 1])
{
    const char *q = memchr(url, '?', len);

    return private_route(url, q ? (size_t)(q - url) : len, passkey);
}

struct private_ctx *private_new(const struct config *cfg, struct storage *st, struct ratelimit *rl)
{
    struct private_ctx *p = calloc(1, sizeof(*p));

    if (!p || sodium_init() < 0)
        goto fail;
    p->cfg = cfg;
    p->st = st;
    p->rl = rl;
    crypto_shorthash_keygen(p->key);
    if (cfg->private_cache_ms > 0) {
        p->users = calloc(PRIVATE_CACHE_ENTRIES, sizeof(*p->users));
        p->torrents = calloc(PRIVATE_CACHE_ENTRIES, sizeof(*p->torrents));
        if (!p->users || !p->torrents)
            goto fail;
    }
    return p;
fail:
    private_free(p);
    return NULL;
}

void private_free(struct private_ctx *p)
{
    if (!p)
        return;
    if (p->users)
        sodium_memzero(p->users, PRIVATE_CACHE_ENTRIES * sizeof(*p->users));  /* passkeys */
    free(p->users);
    free(p->torrents);
    free(p);
}

static uint64_t private_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;  /* never 0 */
}

/* The first of the PRIVATE_CACHE_WAYS places of key's set. */
static unsigned private_set(const struct private_ctx *p, const void *key, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint32_t v;
    crypto_shorthash(h, key, len, p->key);
    memcpy(&v, h, sizeof(v));
    return (v & (PRIVATE_CACHE_SETS - 1)) * PRIVATE_CACHE_WAYS;
}

static bool private_fresh(const struct private_ctx *p, uint64_t born_ms, uint64_t now_ms)
{
    return born_ms != 0 && now_ms - born_ms < (uint64_t)p->cfg->private_cache_ms;
}

/* Which of a set's places a new entry takes: the one holding the same key (same >= 0), else
 * an empty or stale one, else the oldest. born[] is the set's born_ms. */
static unsigned private_victim(const struct private_ctx *p, const uint64_t *born, int same, uint64_t now_ms)
{
    unsigned best = 0;

    if (same >= 0)
        return (unsigned)same;
    for (unsigned i = 0; i < PRIVATE_CACHE_WAYS; i++) {
        if (!private_fresh(p, born[i], now_ms))
            return i;
        if (born[i] < born[best])
            best = i;
    }
    return best;
}

static struct private_user *private_cached_user(struct private_ctx *p, const char *passkey, uint64_t now_ms)
{
    if (!p->users)
        return NULL;
    unsigned base = private_set(p, passkey, PRIVATE_PASSKEY_LEN);
    for (unsigned i = base; i < base + PRIVATE_CACHE_WAYS; i++) {
        struct private_user *u = &p->users[i];
        /* Constant time: the comparison must not tell a prober how much of a passkey matched. */
        if (private_fresh(p, u->born_ms, now_ms) && sodium_memcmp(u->passkey, passkey, PRIVATE_PASSKEY_LEN) == 0)
            return u;
    }
    return NULL;
}

static struct private_torrent *private_cached_torrent(struct private_ctx *p, const uint8_t *hash, uint64_t now_ms)
{
    if (!p->torrents)
        return NULL;
    unsigned base = private_set(p, hash, ANNOUNCE_HASH_LEN);
    for (unsigned i = base; i < base + PRIVATE_CACHE_WAYS; i++) {
        struct private_torrent *t = &p->torrents[i];
        if (private_fresh(p, t->born_ms, now_ms) && memcmp(t->hash, hash, ANNOUNCE_HASH_LEN) == 0)
            return t;
    }
    return NULL;
}

/* The user's verdict, on Redis's clock. */
static enum announce_err private_judge_user(const struct private_ctx *p, const struct private_user *u,
                                            int64_t now_s)
{
    if (u->disabled)
        return ANNOUNCE_ERR_ACCOUNT_DISABLED;
    if (u->expires_s != 0 && u->expires_s <= now_s + p->clock_offset_s)
        return ANNOUNCE_ERR_PASSKEY_EXPIRED;
    return ANNOUNCE_OK;
}

/* The announce's verdict; on ANNOUNCE_OK fills req->account. */
static enum announce_err private_judge(const struct private_ctx *p, const struct private_user *u,
                                       const struct private_torrent *t, struct announce_req *req)
{
    enum announce_err err = private_judge_user(p, u, req->now_s);
    if (err != ANNOUNCE_OK)
        return err;
    if (!t->approved)
        return ANNOUNCE_ERR_TORRENT_UNREGISTERED;
    if (!u->can_leech && req->left > 0)
        return ANNOUNCE_ERR_SEED_ONLY;
    struct announce_account *a = &req->account;
    memcpy(a->user, u->name, sizeof(a->user));
    snprintf(a->up_mult, sizeof(a->up_mult), "%s", t->neutral ? "0" : t->up);
    snprintf(a->down_mult, sizeof(a->down_mult), "%s", t->neutral || t->freeleech ? "0" : t->down);
    return ANNOUNCE_OK;
}

/* An unknown (or malformed) passkey: counted against the address; past the limit the address
 * is told to wait rather than which passkeys are wrong. */
static enum announce_err private_unknown(struct private_ctx *p, const struct peer_addr *client, int64_t now_s)
{
    if (p->rl && !ratelimit_allow_kind(p->rl, RATELIMIT_UNKNOWN_PASSKEYS, client, now_s,
                                       (unsigned)p->cfg->private_unknown_passkey_limit,
                                       (unsigned)p->cfg->rate_limit_window_s, 1))
        return ANNOUNCE_ERR_PASSKEY_RATE_LIMITED;
    return ANNOUNCE_ERR_PASSKEY_UNKNOWN;
}

static void private_on_lookup(const struct storage_lookup_reply *rep, int status, void *arg)
{
    struct private_pending *pd = arg;
    struct private_ctx *p = pd->p;
    uint64_t now_ms = private_now_ms();
    struct private_user u;
    struct private_torrent t;
    enum announce_err err;

    if (status != STORAGE_OK) {
        err = storage_status_err(status);
        goto out;
    }
    p->clock_offset_s = rep->redis_now_s - pd->now_s;
    if (rep->user == STORAGE_USER_UNKNOWN) {
        err = private_unknown(p, &pd->client, pd->now_s);
        /* A rekeyed passkey: forget it now rather than at the end of its cache time. */
        struct private_user *old = private_cached_user(p, pd->passkey, now_ms);
        if (old)
            old->born_ms = 0;
        goto out;
    }
    memset(&u, 0, sizeof(u));
    /* Born when asked, not when answered: the data may have changed since it was read, so a
     * slow reply must not stretch the cache past cache_ms. */
    u.born_ms = pd->sent_ms;
    memcpy(u.passkey, pd->passkey, PRIVATE_PASSKEY_LEN);
    u.disabled = rep->user == STORAGE_USER_DISABLED;
    u.can_leech = rep->can_leech;
    u.expires_s = rep->expires_s;
    memcpy(u.name, rep->name, sizeof(u.name));
    if (p->users) {
        unsigned base = private_set(p, u.passkey, PRIVATE_PASSKEY_LEN);
        uint64_t born[PRIVATE_CACHE_WAYS];
        int same = -1;
        for (unsigned i = 0; i < PRIVATE_CACHE_WAYS; i++) {
            born[i] = p->users[base + i].born_ms;
            if (born[i] != 0 && sodium_memcmp(p->users[base + i].passkey, u.passkey, PRIVATE_PASSKEY_LEN) == 0)
                same = (int)i;
        }
        p->users[base + private_victim(p, born, same, now_ms)] = u;
    }
    if (!pd->req) {
        err = private_judge_user(p, &u, pd->now_s);
        goto out;
    }
    memset(&t, 0, sizeof(t));
    t.born_ms = pd->sent_ms;
    memcpy(t.hash, pd->req->info_hash, ANNOUNCE_HASH_LEN);
    t.approved = rep->torrent_approved;
    t.freeleech = rep->freeleech;
    t.neutral = rep->neutral;
    memcpy(t.up, rep->up_mult, sizeof(t.up));
    memcpy(t.down, rep->down_mult, sizeof(t.down));
    if (p->torrents) {
        unsigned base = private_set(p, t.hash, ANNOUNCE_HASH_LEN);
        uint64_t born[PRIVATE_CACHE_WAYS];
        int same = -1;
        for (unsigned i = 0; i < PRIVATE_CACHE_WAYS; i++) {
            born[i] = p->torrents[base + i].born_ms;
            if (born[i] != 0 && memcmp(p->torrents[base + i].hash, t.hash, ANNOUNCE_HASH_LEN) == 0)
                same = (int)i;
        }
        p->torrents[base + private_victim(p, born, same, now_ms)] = t;
    }
    err = private_judge(p, &u, &t, pd->req);
out:
    sodium_memzero(pd->passkey, sizeof(pd->passkey));
    pd->done(err, pd->arg);
    free(pd);
}

/* The common front half: the URL's passkey, the cache, else one lookup. */
static void private_check(struct private_ctx *p, const char *passkey, const struct peer_addr *client,
                          struct announce_req *req, int64_t now_s, private_done_cb *done, void *arg)
{
    uint64_t now_ms = private_now_ms();

    if (!passkey) {
        done(ANNOUNCE_ERR_PRIVATE_PUBLIC_URL, arg);
        return;
    }
    if (strlen(passkey) != PRIVATE_PASSKEY_LEN) {
        done(private_unknown(p, client, now_s), arg);
        return;
    }
    struct private_user *u = private_cached_user(p, passkey, now_ms);
    if (u && !req) {
        done(private_judge_user(p, u, now_s), arg);
        return;
    }
    if (u) {
        struct private_torrent *t = private_cached_torrent(p, req->info_hash, now_ms);
        if (t) {
            done(private_judge(p, u, t, req), arg);
            return;
        }
    }
    /* A miss costs Redis a call: an address already past its unknown-passkey budget gets none. */
    if (!u && p->rl && !ratelimit_would_allow(p->rl, RATELIMIT_UNKNOWN_PASSKEYS, client, now_s,
                                              (unsigned)p->cfg->private_unknown_passkey_limit,
                                              (unsigned)p->cfg->rate_limit_window_s)) {
        done(ANNOUNCE_ERR_PASSKEY_RATE_LIMITED, arg);
        return;
    }
    struct private_pending *pd = malloc(sizeof(*pd));
    if (!pd) {
        done(ANNOUNCE_ERR_OVERLOADED, arg);
        return;
    }
    pd->p = p;
    memcpy(pd->passkey, passkey, PRIVATE_PASSKEY_LEN);
    pd->client = *client;
    pd->req = req;
    pd->now_s = now_s;
    pd->done = done;
    pd->arg = arg;
    struct storage_lookup_req lr;
    memset(&lr, 0, sizeof(lr));
    memcpy(lr.passkey, passkey, PRIVATE_PASSKEY_LEN);
    if (req)
        memcpy(lr.info_hash, req->info_hash, ANNOUNCE_HASH_LEN);
    lr.with_torrent = req != NULL;
    lr.now_s = now_s;
    pd->sent_ms = private_now_ms();
    int rc = storage_lookup(p->st, &lr, private_on_lookup, pd);
    sodium_memzero(&lr, sizeof(lr));
    if (rc < 0) {
        free(pd);
        done(ANNOUNCE_ERR_STORAGE_INTERNAL, arg);
    }
}

void private_check_announce(struct private_ctx *p, const char *passkey, const struct peer_addr *client,
                            struct announce_req *req, private_done_cb *done, void *arg)
{
    private_check(p, passkey, client, req, req->now_s, done, arg);
}

void private_check_scrape(struct private_ctx *p, const char *passkey, const struct peer_addr *client,
                          int64_t now_s, private_done_cb *done, void *arg)
{
    private_check(p, passkey, client, NULL, now_s, done, arg);
}
