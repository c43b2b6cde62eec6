/* libFuzzer target for lib/query.c: the input is a query string. It is walked with query_next()
 * (spans stay inside the input, the cursor always advances), every value is decoded with
 * query_decode() and cross-checked against query_decoded_len() and a re-encode/decode round
 * trip, and query_parse_u64() is compared with a reference on every value and on the input. */
#include "fuzz/fuzz.h"

#include "lib/query.h"

/* The reference: a strict 1..20-digit decimal, computed wide so that overflow is visible. */
static int fuzz_ref_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    unsigned __int128 v = 0;

    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static void fuzz_u64(const char *s, size_t len)
{
    static const uint64_t maxes[] = { UINT64_MAX, 65535, 0, 1000, UINT64_MAX - 1 };
    char *copy = fuzz_dup(s, len);

    for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
        uint64_t got = 0x5a5a5a5a5a5a5a5aull, want = 0;
        int rc = query_parse_u64(copy, len, maxes[i], &got);
        int ref = fuzz_ref_u64(copy, len, maxes[i], &want);

        FUZZ_CHECK(rc == ref);
        if (rc == 0)
            FUZZ_CHECK(got == want && got <= maxes[i]);
        else
            FUZZ_CHECK(got == 0x5a5a5a5a5a5a5a5aull);   /* *out untouched on error */
    }
    free(copy);
}

/* Percent-encodes every byte that is not unreserved, as a client would. */
static size_t fuzz_encode(const uint8_t *src, size_t len, char *dst)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = src[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            dst[n++] = (char)c;
        } else {
            dst[n++] = '%';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 15];
        }
    }
    return n;
}

static void fuzz_value(const struct query_param *p)
{
    long dlen = query_decoded_len(p->val, p->val_len);
    uint8_t *full = malloc(p->val_len + 1);
    uint8_t small[20];
    int n, ns;

    FUZZ_CHECK(full != NULL);
    n = query_decode(p->val, p->val_len, full, p->val_len);
    FUZZ_CHECK(dlen >= -1 && dlen <= (long)p->val_len);
    /* cap = val_len is always enough, so only a bad escape fails. */
    FUZZ_CHECK(n == (dlen < 0 ? -1 : dlen));

    ns = query_decode(p->val, p->val_len, small, sizeof(small));
    if (dlen >= 0 && dlen <= (long)sizeof(small)) {
        FUZZ_CHECK(ns == dlen);
        FUZZ_CHECK(ns == 0 || memcmp(small, full, (size_t)ns) == 0);
    } else {
        FUZZ_CHECK(ns == -1);
    }

    if (n >= 0) {
        /* Decoding what a client would send for these bytes gives the bytes back. */
        char *enc = malloc(3 * (size_t)n + 1);
        uint8_t *back = malloc((size_t)n + 1);
        size_t elen;

        FUZZ_CHECK(enc != NULL && back != NULL);
        elen = fuzz_encode(full, (size_t)n, enc);
        FUZZ_CHECK(query_decoded_len(enc, elen) == n);
        FUZZ_CHECK(query_decode(enc, elen, back, (size_t)n) == n);
        FUZZ_CHECK(n == 0 || memcmp(back, full, (size_t)n) == 0);
        /* One byte short of room must fail rather than write past dst. */
        if (n > 0)
            FUZZ_CHECK(query_decode(enc, elen, back, (size_t)n - 1) == -1);
        free(enc);
        free(back);
    }
    free(full);

    fuzz_u64(p->val, p->val_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *q = fuzz_dup(data, size);
    struct query_param p;
    size_t pos = 0, prev = 0, pairs = 0;

    while (query_next(q, size, &pos, &p)) {
        /* The pair lies inside the input, after the previous one, and ends where pos says. */
        FUZZ_CHECK(pos > prev && pos <= size);
        FUZZ_CHECK(p.key >= q + prev && p.key + p.key_len <= q + size);
        FUZZ_CHECK(p.val >= p.key + p.key_len && p.val + p.val_len <= q + pos);
        FUZZ_CHECK(p.val + p.val_len == q + pos);
        FUZZ_CHECK(q + pos > p.key);                 /* empty pairs are skipped */
        FUZZ_CHECK(memchr(p.key, '&', p.key_len) == NULL && memchr(p.key, '=', p.key_len) == NULL);
        FUZZ_CHECK(memchr(p.val, '&', p.val_len) == NULL);
        FUZZ_CHECK(pos == size || q[pos] == '&');
        /* The '=' (if any) separates key and value. */
        if (p.val != p.key + p.key_len)
            FUZZ_CHECK(p.val == p.key + p.key_len + 1 && p.key[p.key_len] == '=');
        else
            FUZZ_CHECK(p.val_len == 0);
        FUZZ_CHECK(query_key_is(&p, "info_hash") ==
                   (p.key_len == 9 && memcmp(p.key, "info_hash", 9) == 0));
        fuzz_value(&p);
        prev = pos;
        pairs++;
    }
    FUZZ_CHECK(pos == size);
    /* Every byte is either '&' or inside a pair: a pair-free input is all '&'. */
    if (pairs == 0)
        for (size_t i = 0; i < size; i++)
            FUZZ_CHECK(q[i] == '&');

    fuzz_u64(q, size);
    free(q);
    return 0;
}
