/* libFuzzer target for http_parse_head() in lib/http.c: the input is the start of a connection's
 * byte stream. A complete head lies inside the input, its spans are well formed (tchar method
 * and names, no spaces in the target, values trimmed and free of line ends), every proper prefix
 * of it is "incomplete", the header count obeys max_headers, and writing the parsed head out
 * again in canonical form parses to the same spans. */
#include "fuzz/fuzz.h"

#include "lib/http.h"

#define FUZZ_SLOTS 64             /* struct http_head's arrays */

/* RFC 9110 tchar. */
static int fuzz_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int fuzz_span_in(const struct http_span *s, const char *buf, size_t len)
{
    return s->p >= buf && s->len <= len && s->p + s->len <= buf + len;
}

static void fuzz_well_formed(const char *buf, size_t n, const struct http_head *h, unsigned max)
{
    FUZZ_CHECK(h->minor_version == 0 || h->minor_version == 1);
    FUZZ_CHECK(h->nheaders <= max && h->nheaders <= FUZZ_SLOTS);
    FUZZ_CHECK(fuzz_span_in(&h->method, buf, n) && h->method.len > 0);
    FUZZ_CHECK(fuzz_span_in(&h->target, buf, n) && h->target.len > 0);
    for (size_t i = 0; i < h->method.len; i++)
        FUZZ_CHECK(fuzz_tchar((unsigned char)h->method.p[i]));
    for (size_t i = 0; i < h->target.len; i++) {
        unsigned char c = (unsigned char)h->target.p[i];

        FUZZ_CHECK(c > 0x20 && c != 0x7f);
    }
    for (unsigned k = 0; k < h->nheaders; k++) {
        const struct http_span *name = &h->names[k], *val = &h->values[k];

        FUZZ_CHECK(fuzz_span_in(name, buf, n) && name->len > 0);
        FUZZ_CHECK(fuzz_span_in(val, buf, n));
        FUZZ_CHECK(name->p[name->len] == ':');
        for (size_t i = 0; i < name->len; i++)
            FUZZ_CHECK(fuzz_tchar((unsigned char)name->p[i]));
        for (size_t i = 0; i < val->len; i++) {
            unsigned char c = (unsigned char)val->p[i];

            FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (val->len) {
            FUZZ_CHECK(val->p[0] != ' ' && val->p[0] != '\t');
            FUZZ_CHECK(val->p[val->len - 1] != ' ' && val->p[val->len - 1] != '\t');
        }
        /* Headers come in order. */
        if (k > 0)
            FUZZ_CHECK(name->p > h->values[k - 1].p);
    }
    /* The head ends with an empty line. */
    FUZZ_CHECK(buf[n - 1] == '\n');
}

/* Writes h out as "M T HTTP/1.x\r\n" + "name: value\r\n"... + "\r\n" and parses it again. */
static void fuzz_reparse(const struct http_head *h)
{
    size_t cap = h->method.len + 1 + h->target.len + 11 + 2, n = 0;
    struct http_head *h2 = malloc(sizeof(*h2));
    char *out;
    int rc;

    for (unsigned k = 0; k < h->nheaders; k++)
        cap += h->names[k].len + h->values[k].len + 4;
    out = malloc(cap);
    FUZZ_CHECK(out != NULL && h2 != NULL);
#define PUT(p, l) (memcpy(out + n, (p), (l)), n += (l))
    PUT(h->method.p, h->method.len);
    PUT(" ", 1);
    PUT(h->target.p, h->target.len);
    PUT(h->minor_version ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
    for (unsigned k = 0; k < h->nheaders; k++) {
        PUT(h->names[k].p, h->names[k].len);
        PUT(": ", 2);
        PUT(h->values[k].p, h->values[k].len);
        PUT("\r\n", 2);
    }
    PUT("\r\n", 2);
#undef PUT
    FUZZ_CHECK(n == cap);
    rc = http_parse_head(out, n, FUZZ_SLOTS, h2);
    FUZZ_CHECK(rc == (int)n);
    FUZZ_CHECK(h2->nheaders == h->nheaders && h2->minor_version == h->minor_version);
    FUZZ_CHECK(h2->method.len == h->method.len &&
               memcmp(h2->method.p, h->method.p, h->method.len) == 0);
    FUZZ_CHECK(h2->target.len == h->target.len &&
               memcmp(h2->target.p, h->target.p, h->target.len) == 0);
    for (unsigned k = 0; k < h->nheaders; k++) {
        FUZZ_CHECK(h2->names[k].len == h->names[k].len &&
                   memcmp(h2->names[k].p, h->names[k].p, h->names[k].len) == 0);
        FUZZ_CHECK(h2->values[k].len == h->values[k].len &&
                   (h->values[k].len == 0 ||
                    memcmp(h2->values[k].p, h->values[k].p, h->values[k].len) == 0));
    }
    free(out);
    free(h2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    struct http_head *h = malloc(sizeof(*h)), *h2 = malloc(sizeof(*h2));
    int rc;

    FUZZ_CHECK(h != NULL && h2 != NULL);
    rc = http_parse_head(buf, size, FUZZ_SLOTS, h);
    FUZZ_CHECK(rc > 0 || rc == -1 || rc == -2 || rc == -3);
    /* A max_headers above the arrays' size is capped, never overrun. */
    FUZZ_CHECK(http_parse_head(buf, size, 1000, h2) == rc);
    if (rc > 0) {
        size_t n = (size_t)rc;

        FUZZ_CHECK(n <= size);
        fuzz_well_formed(buf, n, h, FUZZ_SLOTS);
        /* Bytes after the head (a pipelined request) change nothing. */
        FUZZ_CHECK(http_parse_head(buf, n, FUZZ_SLOTS, h2) == rc && h2->nheaders == h->nheaders);
        /* Any proper prefix is incomplete: the parser must ask for more, not refuse. */
        FUZZ_CHECK(http_parse_head(buf, n - 1, FUZZ_SLOTS, h2) == -2);
        FUZZ_CHECK(http_parse_head(buf, n / 2, FUZZ_SLOTS, h2) == -2);
        FUZZ_CHECK(http_parse_head(buf, size % n, FUZZ_SLOTS, h2) == -2);
        /* The header limit: exactly enough is fine, one less is -3. */
        FUZZ_CHECK(http_parse_head(buf, n, h->nheaders, h2) == rc);
        if (h->nheaders > 0)
            FUZZ_CHECK(http_parse_head(buf, n, h->nheaders - 1, h2) == -3);
        fuzz_reparse(h);
    } else if (rc == -2) {
        /* Incomplete stays incomplete or becomes an answer; a prefix never becomes -1. */
        for (size_t k = size; k > 0 && k + 8 > size; k--)
            FUZZ_CHECK(http_parse_head(buf, k - 1, FUZZ_SLOTS, h2) == -2);
    }
    free(h2);
    free(h);
    free(buf);
    return 0;
}
