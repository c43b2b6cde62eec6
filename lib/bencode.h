/* Bencoding (BEP 3): a writer into a libevent evbuffer for the replies announce.c builds, and a
 * strict reader that accepts only canonical encodings (sorted unique dict keys, no leading zeros).
 * The reader serves tests and fuzzers; the request path only writes. */
#ifndef TYTO_BENCODE_H
#define TYTO_BENCODE_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define BENCODE_INT_MAX_LEN 22     /* "i-9223372036854775808e" */
#define BENCODE_STRHDR_MAX_LEN 21  /* "18446744073709551615:" */
#define BENCODE_MAX_DEPTH 64       /* deepest nesting bencode_check() accepts */

/* Writer. The caller writes dict keys in sorted order itself; nothing is checked here. */
void bencode_int(struct evbuffer *buf, int64_t v);
void bencode_str(struct evbuffer *buf, const void *s, size_t len);
void bencode_cstr(struct evbuffer *buf, const char *s);
void bencode_dict_begin(struct evbuffer *buf);
void bencode_list_begin(struct evbuffer *buf);
void bencode_end(struct evbuffer *buf);

/* The same into a caller's buffer, for batching many small items into one evbuffer_add(). Each
 * writes at p (room for BENCODE_INT_MAX_LEN / BENCODE_STRHDR_MAX_LEN bytes) and returns the end. */
char *bencode_put_int(char *p, int64_t v);
char *bencode_put_strhdr(char *p, size_t len);  /* "<len>:" */

/* Reader. Returns the length of the one complete value that starts at buf (bytes after it are
 * not looked at), or -1 if buf[0..len) does not start with a canonical value: truncation,
 * leading zeros, "-0", an integer outside int64_t, unsorted or duplicate or non-string dict keys,
 * nesting deeper than BENCODE_MAX_DEPTH, or a value longer than INT_MAX. */
int bencode_check(const uint8_t *buf, size_t len);

/* Looks key up in the dictionary dict[0..len) (which must be canonical). Returns 0 with *val
 * pointing at the raw encoded value and *vlen its length, or -1 if absent or malformed. */
int bencode_dict_get(const uint8_t *dict, size_t len, const char *key, const uint8_t **val,
                     size_t *vlen);

/* The index-th element (from 0) of the list list[0..len), as for bencode_dict_get(). */
int bencode_list_get(const uint8_t *list, size_t len, size_t index, const uint8_t **val,
                     size_t *vlen);

/* Decodes an encoded integer / string value (as bencode_dict_get() returns). 0 or -1. */
int bencode_get_int(const uint8_t *val, size_t vlen, int64_t *out);
int bencode_get_str(const uint8_t *val, size_t vlen, const uint8_t **s, size_t *slen);

#endif
