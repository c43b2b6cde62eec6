/* Query-string scanner and percent-decoder. announce.c walks a request's query with
 * query_next() and decodes only the values it reads. Every function works on (pointer, length)
 * and never reads past it: parser tests put the input right before an unmapped page. */
#include "lib/query.h"

#include <string.h>

int query_next(const char *q, size_t len, size_t *pos, struct query_param *p)
{
    size_t i = *pos;

    while (i < len && q[i] == '&')
        i++;
    if (i >= len) {
        *pos = len;
        return 0;
    }

    const char *start = q + i;
    const char *amp = memchr(start, '&', len - i);
    size_t pair_len = amp ? (size_t)(amp - start) : len - i;
    const char *eq = memchr(start, '=', pair_len);

    p->key = start;
    if (eq) {
        p->key_len = (size_t)(eq - start);
        p->val = eq + 1;
        p->val_len = pair_len - p->key_len - 1;
    } else {
        p->key_len = pair_len;
        p->val = start + pair_len;
        p->val_len = 0;
    }
    *pos = i + pair_len;
    return 1;
}

int query_key_is(const struct query_param *p, const char *name)
{
    size_t n = strlen(name);

    return p->key_len == n && memcmp(p->key, name, n) == 0;
}

/* Value of one hex digit, or -1. */
static int query_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;                   /* ASCII lower case; maps no non-letter into a..f */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

long query_decoded_len(const char *src, size_t len)
{
    long n = 0;
    size_t i = 0;

    while (i < len) {
        if (src[i] == '%') {
            if (len - i < 3 || query_hex((unsigned char)src[i + 1]) < 0 ||
                query_hex((unsigned char)src[i + 2]) < 0)
                return -1;
            i += 3;
        } else {
            i++;
        }
        n++;
    }
    return n;
}

int query_decode(const char *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t i = 0, n = 0;

    while (i < len) {
        unsigned char c = (unsigned char)src[i];

        if (n == cap)
            return -1;
        if (c == '%') {
            int hi, lo;

            if (len - i < 3 || (hi = query_hex((unsigned char)src[i + 1])) < 0 ||
                (lo = query_hex((unsigned char)src[i + 2])) < 0)
                return -1;
            dst[n++] = (uint8_t)(hi << 4 | lo);
            i += 3;
        } else {
            dst[n++] = c == '+' ? ' ' : c;
            i++;
        }
    }
    /* Query strings are capped far below INT_MAX (QUERY_MAX_LEN), but stay correct anyway. */
    return n > 0x7fffffff ? -1 : (int)n;
}

int query_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';

        if (d > 9)
            return -1;
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}
