/* Redis Cluster routing, the pure part: CRC16 key slots with hash tags, the CLUSTER SLOTS parser
 * that builds the slot -> primary map, and the parsing of MOVED/ASK and the other cluster errors.
 * The router in storage/ owns the connections; everything here is string and array work, written
 * from the Redis Cluster specification (docs at redis.io, "Redis cluster specification"). */
#include "storage/redis_cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC-16/XMODEM (poly 0x1021, init 0, no reflection, no final xor), one bit at a time: keys are
 * about 60 bytes, so a table would save well under a microsecond per announce and cost a global. */
static uint16_t redis_cluster_crc16(const unsigned char *p, size_t len)
{
    uint16_t crc = 0;
    size_t i;
    int bit;

    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t redis_cluster_keyslot(const char *key, size_t len)
{
    const char *open = len ? memchr(key, '{', len) : NULL;

    if (open) {
        size_t after = (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', len - after);

        /* "{}" is no tag: the spec hashes the whole key then, so "foo{}{bar}" is not "bar". */
        if (close && close > open + 1)
            return redis_cluster_crc16((const unsigned char *)open + 1, (size_t)(close - open - 1)) &
                   (REDIS_CLUSTER_SLOTS - 1);
    }
    return redis_cluster_crc16((const unsigned char *)key, len) & (REDIS_CLUSTER_SLOTS - 1);
}

__attribute__((format(printf, 3, 4)))
static void redis_cluster_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* True if r is an integer in [lo, hi]. */
static bool redis_cluster_int_in(const redisReply *r, long long lo, long long hi)
{
    return r && r->type == REDIS_REPLY_INTEGER && r->integer >= lo && r->integer <= hi;
}

/* Copies the host of a node entry (a string, or NULL/"" for the seed host) into dst.
 * Returns 0, or -1 with a message naming entry i. */
static int redis_cluster_host(const redisReply *r, const char *seed_host, size_t i,
                              char dst[REDIS_CLUSTER_HOST_MAX + 1], char *err, size_t errlen)
{
    const char *s;
    size_t len;

    if (r->type == REDIS_REPLY_NIL || (r->type == REDIS_REPLY_STRING && r->len == 0)) {
        if (!seed_host || !*seed_host) {
            redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: node has no address and no seed host was given", i);
            return -1;
        }
        s = seed_host;
        len = strlen(seed_host);
    } else if (r->type == REDIS_REPLY_STRING) {
        s = r->str;
        len = r->len;
    } else {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: node host is not a string", i);
        return -1;
    }
    if (len == 1 && s[0] == '?') {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: node endpoint is unknown ('?': "
                           "cluster-preferred-endpoint-type hostname, but no hostname set)", i);
        return -1;
    }
    if (len > REDIS_CLUSTER_HOST_MAX || memchr(s, '\0', len)) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: node host is longer than %d bytes or not text",
                           i, REDIS_CLUSTER_HOST_MAX);
        return -1;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

/* Copies an optional node id (40 lowercase hex) into dst; "" if r is NULL. Returns 0 or -1. */
static int redis_cluster_id(const redisReply *r, size_t i, char dst[REDIS_CLUSTER_ID_LEN + 1],
                            char *err, size_t errlen)
{
    size_t k;

    dst[0] = '\0';
    if (!r)
        return 0;
    if (r->type != REDIS_REPLY_STRING || r->len != REDIS_CLUSTER_ID_LEN) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: node id is not %d characters", i,
                           REDIS_CLUSTER_ID_LEN);
        return -1;
    }
    for (k = 0; k < REDIS_CLUSTER_ID_LEN; k++) {
        char c = r->str[k];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: node id is not hex", i);
            return -1;
        }
    }
    memcpy(dst, r->str, REDIS_CLUSTER_ID_LEN);
    dst[REDIS_CLUSTER_ID_LEN] = '\0';
    return 0;
}

/* Finds or adds the primary of entry i (its [host, port, id, ...] array) in m. Returns its index,
 * or -1 with a message. */
static int redis_cluster_add_node(struct redis_cluster_map *m, const redisReply *n, const char *seed_host,
                                  size_t i, char *err, size_t errlen)
{
    struct redis_cluster_node node;
    unsigned k;

    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: primary is not [host, port, ...]", i);
        return -1;
    }
    if (redis_cluster_host(n->element[0], seed_host, i, node.host, err, errlen) < 0)
        return -1;
    if (!redis_cluster_int_in(n->element[1], 1, 65535)) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: primary port is not 1..65535", i);
        return -1;
    }
    node.port = (uint16_t)n->element[1]->integer;
    if (redis_cluster_id(n->elements > 2 ? n->element[2] : NULL, i, node.id, err, errlen) < 0)
        return -1;

    /* A primary with several ranges appears once per range; it must look the same each time. */
    for (k = 0; k < m->nnodes; k++) {
        const struct redis_cluster_node *o = &m->node[k];
        bool same_addr = o->port == node.port && strcmp(o->host, node.host) == 0;
        bool same_id = node.id[0] && strcmp(o->id, node.id) == 0;

        if (same_addr && strcmp(o->id, node.id) == 0)
            return (int)k;
        if (same_addr || same_id) {
            redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: %s:%u and node id '%s' do not match an earlier entry",
                               i, node.host, (unsigned)node.port, node.id);
            return -1;
        }
    }
    if (m->nnodes == REDIS_CLUSTER_MAX_NODES) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS: more than %d primaries", REDIS_CLUSTER_MAX_NODES);
        return -1;
    }
    m->node[m->nnodes] = node;
    return (int)m->nnodes++;
}

/* Adds entry i ([start, end, primary, replica...]) to m. Returns 0 or -1 with a message. */
static int redis_cluster_add_range(struct redis_cluster_map *m, const redisReply *e, const char *seed_host,
                                   size_t i, char *err, size_t errlen)
{
    unsigned start, end, s;
    size_t k;
    int idx;

    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: not [start, end, primary, ...]", i);
        return -1;
    }
    if (!redis_cluster_int_in(e->element[0], 0, REDIS_CLUSTER_SLOTS - 1) ||
        !redis_cluster_int_in(e->element[1], e->element[0]->integer, REDIS_CLUSTER_SLOTS - 1)) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: slot range is not 0 <= start <= end <= %d",
                           i, REDIS_CLUSTER_SLOTS - 1);
        return -1;
    }
    start = (unsigned)e->element[0]->integer;
    end = (unsigned)e->element[1]->integer;
    /* Replicas are not routed to, but a malformed one still means we misread the reply. */
    for (k = 3; k < e->elements; k++) {
        if (!e->element[k] || e->element[k]->type != REDIS_REPLY_ARRAY || e->element[k]->elements < 2) {
            redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: replica %zu is not [host, port, ...]", i, k - 2);
            return -1;
        }
    }
    if (!e->element[2]) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: primary is missing", i);
        return -1;
    }
    idx = redis_cluster_add_node(m, e->element[2], seed_host, i, err, errlen);
    if (idx < 0)
        return -1;
    for (s = start; s <= end; s++) {
        if (m->owner[s] != REDIS_CLUSTER_UNOWNED) {
            redis_cluster_errf(err, errlen, "CLUSTER SLOTS entry %zu: slot %u is already in an earlier range", i, s);
            return -1;
        }
        m->owner[s] = (uint8_t)idx;
    }
    return 0;
}

int redis_cluster_map_parse(const redisReply *slots_reply, const char *seed_host,
                            struct redis_cluster_map *out, char *err, size_t errlen)
{
    struct redis_cluster_map *m;
    size_t i;

    if (!slots_reply) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS: no reply");
        return -1;
    }
    if (slots_reply->type == REDIS_REPLY_ERROR) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS failed: %.*s", (int)slots_reply->len,
                           slots_reply->str ? slots_reply->str : "");
        return -1;
    }
    if (slots_reply->type != REDIS_REPLY_ARRAY) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS: reply is not an array");
        return -1;
    }
    /* Built aside (about 23 KB, so not on the stack) so that *out stays valid on error. */
    m = malloc(sizeof(*m));
    if (!m) {
        redis_cluster_errf(err, errlen, "CLUSTER SLOTS: out of memory");
        return -1;
    }
    m->nnodes = 0;
    memset(m->owner, REDIS_CLUSTER_UNOWNED, sizeof(m->owner));
    for (i = 0; i < slots_reply->elements; i++) {
        if (redis_cluster_add_range(m, slots_reply->element[i], seed_host, i, err, errlen) < 0) {
            free(m);
            return -1;
        }
    }
    memcpy(out, m, sizeof(*m));
    free(m);
    return 0;
}

int redis_cluster_node_for_slot(const struct redis_cluster_map *m, uint16_t slot)
{
    if (slot >= REDIS_CLUSTER_SLOTS || m->owner[slot] == REDIS_CLUSTER_UNOWNED)
        return -1;
    return m->owner[slot];
}

int redis_cluster_map_find(const struct redis_cluster_map *m, const char *host, uint16_t port)
{
    unsigned k;

    for (k = 0; k < m->nnodes; k++)
        if (m->node[k].port == port && strcmp(m->node[k].host, host) == 0)
            return (int)k;
    return -1;
}

bool redis_cluster_map_complete(const struct redis_cluster_map *m)
{
    size_t s;

    for (s = 0; s < REDIS_CLUSTER_SLOTS; s++)
        if (m->owner[s] == REDIS_CLUSTER_UNOWNED)
            return false;
    return true;
}

static const struct {
    const char *word;
    enum redis_cluster_err kind;
} redis_cluster_errs[] = {
    { "MOVED", REDIS_CLUSTER_ERR_MOVED },
    { "ASK", REDIS_CLUSTER_ERR_ASK },
    { "TRYAGAIN", REDIS_CLUSTER_ERR_TRYAGAIN },
    { "CLUSTERDOWN", REDIS_CLUSTER_ERR_CLUSTERDOWN },
    { "READONLY", REDIS_CLUSTER_ERR_READONLY },
    { "CROSSSLOT", REDIS_CLUSTER_ERR_CROSSSLOT },
};

enum redis_cluster_err redis_cluster_classify(const char *err, size_t len)
{
    const char *sp = err ? memchr(err, ' ', len) : NULL;
    size_t wlen = sp ? (size_t)(sp - err) : len;
    size_t k;

    if (!err)
        return REDIS_CLUSTER_ERR_OTHER;
    /* The whole first word, so "ASKING..." is not ASK. */
    for (k = 0; k < sizeof(redis_cluster_errs) / sizeof(redis_cluster_errs[0]); k++)
        if (strlen(redis_cluster_errs[k].word) == wlen && memcmp(err, redis_cluster_errs[k].word, wlen) == 0)
            return redis_cluster_errs[k].kind;
    return REDIS_CLUSTER_ERR_OTHER;
}

bool redis_cluster_resend_safe(enum redis_cluster_err kind)
{
    switch (kind) {
    case REDIS_CLUSTER_ERR_MOVED:
    case REDIS_CLUSTER_ERR_ASK:
    case REDIS_CLUSTER_ERR_TRYAGAIN:
    case REDIS_CLUSTER_ERR_CLUSTERDOWN:
    case REDIS_CLUSTER_ERR_READONLY:
        return true;
    case REDIS_CLUSTER_ERR_OTHER:
    case REDIS_CLUSTER_ERR_CROSSSLOT:
        break;
    }
    return false;
}

/* Parses len bytes of decimal digits (1..5 of them) into *v. Returns 0 or -1. */
static int redis_cluster_digits(const char *s, size_t len, unsigned *v)
{
    size_t i;

    if (len == 0 || len > 5)
        return -1;
    *v = 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *v = *v * 10 + (unsigned)(s[i] - '0');
    }
    return 0;
}

int redis_cluster_parse_redirect(const char *err, size_t len, struct redis_cluster_redirect *out)
{
    enum redis_cluster_err kind = redis_cluster_classify(err, len);
    const char *p, *end, *sp, *colon;
    unsigned slot, port;
    size_t hlen;

    if (kind != REDIS_CLUSTER_ERR_MOVED && kind != REDIS_CLUSTER_ERR_ASK)
        return -1;
    end = err + len;
    sp = memchr(err, ' ', len);        /* NULL for a bare "MOVED" */
    if (!sp)
        return -1;
    p = sp + 1;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || redis_cluster_digits(p, (size_t)(sp - p), &slot) < 0 || slot >= REDIS_CLUSTER_SLOTS)
        return -1;
    p = sp + 1;
    /* The port follows the last ':': IPv6 addresses come without brackets ("::1:6381"). */
    colon = NULL;
    for (sp = p; sp < end; sp++) {
        if (*sp == ' ' || *sp == '\0')
            return -1;
        if (*sp == ':')
            colon = sp;
    }
    if (!colon || redis_cluster_digits(colon + 1, (size_t)(end - colon - 1), &port) < 0 ||
        port == 0 || port > 65535)
        return -1;
    hlen = (size_t)(colon - p);
    if (hlen > REDIS_CLUSTER_HOST_MAX || (hlen == 1 && p[0] == '?'))
        return -1;
    out->kind = kind;
    out->slot = (uint16_t)slot;
    memcpy(out->host, p, hlen);
    out->host[hlen] = '\0';
    out->port = (uint16_t)port;
    return 0;
}
