/* Query-string scanner: splits "a=1&b=2" into raw (still percent-encoded) key/value pairs and
 * decodes values on demand. Sits between the HTTP front end and announce.c. Nothing here
 * allocates, copies the input, or needs it NUL-terminated: every input is (pointer, length). */
#ifndef TYTO_QUERY_H
#define TYTO_QUERY_H

#include <stddef.h>
#include <stdint.h>

/* Longest query string the announce and scrape parsers accept (bytes after '?'). */
#define QUERY_MAX_LEN 8192

/* One key=value pair, pointing into the query string. Both halves are raw (not decoded). */
struct query_param {
    const char *key;
    size_t key_len;
    const char *val;             /* empty (val_len 0) when the pair has no '=' */
    size_t val_len;
};

/* Returns 1 and fills *p with the next '&'-separated pair of q[0..len) starting at *pos (start
 * with *pos = 0), advancing *pos past it; empty pairs ("&&", a leading or trailing '&') are
 * skipped. Returns 0 when no pair is left. The pair is split at its first '='. */
int query_next(const char *q, size_t len, size_t *pos, struct query_param *p);

/* Returns 1 if p's raw key is exactly name (keys are compared as sent, not decoded), else 0. */
int query_key_is(const struct query_param *p, const char *name);

/* Percent-decodes src[0..len) into dst (at most cap bytes); '+' becomes a space (form
 * encoding, which clients use). dst is raw bytes, not a string: info_hash may contain %00.
 * Returns the decoded length, or -1 on a bad escape ('%' not followed by two hex digits) or when
 * the result would not fit in cap bytes (query_decoded_len() tells the two apart). */
int query_decode(const char *src, size_t len, uint8_t *dst, size_t cap);

/* Length src[0..len) decodes to, or -1 on a bad escape. Writes nothing. */
long query_decoded_len(const char *src, size_t len);

/* Parses s[0..len) as a strict decimal: 1 to 20 digits, no sign, no spaces, no other bytes.
 * Returns 0 with *out set, or -1 (*out untouched) if malformed, past UINT64_MAX or above max. */
int query_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);

#endif
