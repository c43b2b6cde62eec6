/* Bencoding writer (announce and scrape replies, the hot path: integers are formatted by hand and
 * small items go out in one evbuffer_add) and a strict, small, recursive reader for tests and
 * fuzzers that accepts only the canonical form BEP 3 requires. */
#include "lib/bencode.h"

#include <limits.h>
#include <string.h>

#include <event2/buffer.h>

/* Writes the decimal digits of u ending just before end; returns where they start. */
static char *bencode_digits(char *end, uint64_t u)
{
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

char *bencode_put_int(char *p, int64_t v)
{
    char tmp[20];
    /* Unsigned negation is defined for INT64_MIN, where -v is not. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *d = bencode_digits(tmp + sizeof(tmp), u);
    size_t n = (size_t)(tmp + sizeof(tmp) - d);

    *p++ = 'i';
    if (v < 0)
        *p++ = '-';
    memcpy(p, d, n);
    p += n;
    *p++ = 'e';
    return p;
}

char *bencode_put_strhdr(char *p, size_t len)
{
    char tmp[20];
    char *d = bencode_digits(tmp + sizeof(tmp), len);
    size_t n = (size_t)(tmp + sizeof(tmp) - d);

    memcpy(p, d, n);
    p += n;
    *p++ = ':';
    return p;
}

void bencode_int(struct evbuffer *buf, int64_t v)
{
    char b[BENCODE_INT_MAX_LEN];

    evbuffer_add(buf, b, (size_t)(bencode_put_int(b, v) - b));
}

/* Strings up to this long are copied behind their header and added in one call. */
#define BENCODE_SMALL_STR 64

void bencode_str(struct evbuffer *buf, const void *s, size_t len)
{
    char b[BENCODE_STRHDR_MAX_LEN + BENCODE_SMALL_STR];
    char *p = bencode_put_strhdr(b, len);

    if (len <= BENCODE_SMALL_STR) {
        if (len)
            memcpy(p, s, len);
        evbuffer_add(buf, b, (size_t)(p - b) + len);
        return;
    }
    evbuffer_add(buf, b, (size_t)(p - b));
    evbuffer_add(buf, s, len);
}

void bencode_cstr(struct evbuffer *buf, const char *s)
{
    bencode_str(buf, s, strlen(s));
}

void bencode_dict_begin(struct evbuffer *buf)
{
    evbuffer_add(buf, "d", 1);
}

void bencode_list_begin(struct evbuffer *buf)
{
    evbuffer_add(buf, "l", 1);
}

void bencode_end(struct evbuffer *buf)
{
    evbuffer_add(buf, "e", 1);
}

/* ---- reader ---- */

/* Parses the "<len>:" header of a string at b. Returns the header's length with *slen set, or -1
 * if malformed (no digits, a leading zero, no ':') or if the string runs past len. */
static int bencode_strhdr(const uint8_t *b, size_t len, size_t *slen)
{
    size_t i = 0, n = 0;

    if (len == 0 || b[0] < '0' || b[0] > '9')
        return -1;
    if (b[0] == '0' && (len < 2 || b[1] != ':'))
        return -1;
    while (i < len && b[i] >= '0' && b[i] <= '9') {
        n = n * 10 + (size_t)(b[i] - '0');
        if (n > len)             /* can never fit; also keeps n from overflowing */
            return -1;
        i++;
    }
    if (i >= len || b[i] != ':')
        return -1;
    i++;
    if (n > len - i)
        return -1;
    *slen = n;
    return (int)i;
}

/* Parses "i<n>e" at b. Returns its length with *out set, or -1. */
static int bencode_intval(const uint8_t *b, size_t len, int64_t *out)
{
    size_t i = 1;
    int neg = 0;
    uint64_t u = 0, limit;

    if (len < 3 || b[0] != 'i')
        return -1;
    if (b[i] == '-') {
        neg = 1;
        i++;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (i >= len || b[i] < '0' || b[i] > '9')
        return -1;
    if (b[i] == '0' && (neg || i + 1 >= len || b[i + 1] != 'e'))
        return -1;           /* leading zero or "-0" */
    while (i < len && b[i] >= '0' && b[i] <= '9') {
        unsigned d = (unsigned)(b[i] - '0');

        if (u > (limit - d) / 10)
            return -1;
        u = u * 10 + d;
        i++;
    }
    if (i >= len || b[i] != 'e')
        return -1;
    /* u <= INT64_MAX + 1 only when neg; the cast of -(u - 1) - 1 avoids signed overflow. */
    *out = neg ? -(int64_t)(u - 1) - 1 : (int64_t)u;
    return (int)(i + 1);
}

/* Memcmp order on byte strings, a proper prefix first (bencoding's dict key order). */
static int bencode_keycmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* One value at b; depth counts the containers around it. Returns its length or -1. */
static int bencode_value(const uint8_t *b, size_t len, int depth)
{
    size_t i, slen;
    int n;
    int64_t dummy;

    if (len == 0)
        return -1;
    switch (b[0]) {
    case 'i':
        return bencode_intval(b, len, &dummy);
    case 'l':
        if (depth >= BENCODE_MAX_DEPTH)
            return -1;
        for (i = 1; i < len && b[i] != 'e'; i += (size_t)n)
            if ((n = bencode_value(b + i, len - i, depth + 1)) < 0)
                return -1;
        return i < len ? (int)(i + 1) : -1;
    case 'd': {
        const uint8_t *prev = NULL;
        size_t prev_len = 0;

        if (depth >= BENCODE_MAX_DEPTH)
            return -1;
        for (i = 1; i < len && b[i] != 'e'; i += (size_t)n) {
            if ((n = bencode_strhdr(b + i, len - i, &slen)) < 0)
                return -1;
            if (prev && bencode_keycmp(prev, prev_len, b + i + n, slen) >= 0)
                return -1;   /* unsorted or duplicate key */
            prev = b + i + n;
            prev_len = slen;
            i += (size_t)n + slen;
            if ((n = bencode_value(b + i, len - i, depth + 1)) < 0)
                return -1;
        }
        return i < len ? (int)(i + 1) : -1;
    }
    default:
        if ((n = bencode_strhdr(b, len, &slen)) < 0)
            return -1;
        return (int)((size_t)n + slen);
    }
}

int bencode_check(const uint8_t *buf, size_t len)
{
    if (len > INT_MAX)
        len = INT_MAX;       /* a longer value cannot fit the return type: it will not end */
    return bencode_value(buf, len, 0);
}

int bencode_dict_get(const uint8_t *dict, size_t len, const char *key, const uint8_t **val,
                     size_t *vlen)
{
    size_t klen = strlen(key), i, slen;
    int total = bencode_check(dict, len), n;

    if (total < 0 || dict[0] != 'd')
        return -1;
    for (i = 1; dict[i] != 'e'; i += (size_t)n) {
        n = bencode_strhdr(dict + i, (size_t)total - i, &slen);
        const uint8_t *k = dict + i + n;

        i += (size_t)n + slen;
        n = bencode_value(dict + i, (size_t)total - i, 1);
        if (slen == klen && memcmp(k, key, klen) == 0) {
            *val = dict + i;
            *vlen = (size_t)n;
            return 0;
        }
    }
    return -1;
}

int bencode_list_get(const uint8_t *list, size_t len, size_t index, const uint8_t **val,
                     size_t *vlen)
{
    size_t i;
    int total = bencode_check(list, len), n;

    if (total < 0 || list[0] != 'l')
        return -1;
    for (i = 1; list[i] != 'e'; i += (size_t)n) {
        n = bencode_value(list + i, (size_t)total - i, 1);
        if (index-- == 0) {
            *val = list + i;
            *vlen = (size_t)n;
            return 0;
        }
    }
    return -1;
}

int bencode_get_int(const uint8_t *val, size_t vlen, int64_t *out)
{
    int64_t v;

    if (vlen > INT_MAX || bencode_intval(val, vlen, &v) != (int)vlen)
        return -1;
    *out = v;
    return 0;
}

int bencode_get_str(const uint8_t *val, size_t vlen, const uint8_t **s, size_t *slen)
{
    size_t n;
    int h = bencode_strhdr(val, vlen, &n);

    if (h < 0 || (size_t)h + n != vlen)
        return -1;
    *s = val + h;
    *slen = n;
    return 0;
}
