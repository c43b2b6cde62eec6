/* libFuzzer target for lib/bencode.c, both ways round.
 *   Reader: bencode_check() on the input. What it accepts must be canonical, which is checked by
 *   walking the value with a separate lenient walker that re-writes it through the writer (any
 *   leading zero, "-0" or unsorted key would come out different) and that looks every dict key
 *   and list element up through bencode_dict_get() / bencode_list_get().
 *   Writer: a value tree is derived from the input bytes and written with the writer (dict keys
 *   sorted and unique); bencode_check() must accept exactly those bytes, unless the nesting
 *   passes BENCODE_MAX_DEPTH, and no proper prefix of them. */
#include "fuzz/fuzz.h"

#include <limits.h>

#include <event2/buffer.h>

#include "lib/bencode.h"

/* ---- reader side ---- */

/* Walks the value at b (already accepted by bencode_check, so structure is trusted but bounds
 * are still checked) and writes it again into out. Returns its length. */
static size_t fuzz_rewrite(const uint8_t *b, size_t len, struct evbuffer *out)
{
    FUZZ_CHECK(len > 0);
    if (b[0] == 'i') {
        const uint8_t *e = memchr(b, 'e', len);
        char num[32];
        size_t n;
        int64_t v, got;

        FUZZ_CHECK(e != NULL);
        n = (size_t)(e - b) - 1;
        FUZZ_CHECK(n > 0 && n < sizeof(num));
        memcpy(num, b + 1, n);
        num[n] = '\0';
        v = strtoll(num, NULL, 10);
        bencode_int(out, v);
        FUZZ_CHECK(bencode_get_int(b, n + 2, &got) == 0 && got == v);
        return n + 2;
    }
    if (b[0] == 'l' || b[0] == 'd') {
        size_t i = 1, count = 0;
        const uint8_t *prev = NULL;
        size_t prev_len = 0;

        if (b[0] == 'l')
            bencode_list_begin(out);
        else
            bencode_dict_begin(out);
        while (i < len && b[i] != 'e') {
            if (b[0] == 'd') {
                const uint8_t *k, *val;
                size_t klen, vlen, kl = fuzz_rewrite(b + i, len - i, out), vl;

                FUZZ_CHECK(bencode_get_str(b + i, kl, &k, &klen) == 0);
                if (prev) {
                    /* Keys strictly increasing in bytewise order, a prefix first. */
                    size_t m = prev_len < klen ? prev_len : klen;
                    int c = memcmp(prev, k, m);

                    FUZZ_CHECK(c < 0 || (c == 0 && prev_len < klen));
                }
                prev = k;
                prev_len = klen;
                i += kl;
                vl = fuzz_rewrite(b + i, len - i, out);
                if (memchr(k, '\0', klen) == NULL && klen < 256) {
                    char key[256];

                    memcpy(key, k, klen);
                    key[klen] = '\0';
                    FUZZ_CHECK(bencode_dict_get(b, len, key, &val, &vlen) == 0);
                    FUZZ_CHECK(val == b + i && vlen == vl);
                }
                i += vl;
            } else {
                const uint8_t *val;
                size_t vlen, vl = fuzz_rewrite(b + i, len - i, out);

                /* Quadratic, so only the first elements of long lists. */
                if (count < 16) {
                    FUZZ_CHECK(bencode_list_get(b, len, count, &val, &vlen) == 0);
                    FUZZ_CHECK(val == b + i && vlen == vl);
                }
                i += vl;
            }
            count++;
        }
        FUZZ_CHECK(i < len);
        if (b[0] == 'l' && count < 16) {
            const uint8_t *val;
            size_t vlen;

            FUZZ_CHECK(bencode_list_get(b, len, count, &val, &vlen) == -1);
        }
        bencode_end(out);
        return i + 1;
    }
    {
        const uint8_t *s;
        size_t n = 0, i = 0;

        while (i < len && b[i] >= '0' && b[i] <= '9')
            n = n * 10 + (size_t)(b[i++] - '0');
        FUZZ_CHECK(i < len && b[i] == ':' && n <= len - i - 1);
        bencode_str(out, b + i + 1, n);
        FUZZ_CHECK(bencode_get_str(b, i + 1 + n, &s, &n) == 0 && s == b + i + 1);
        return i + 1 + n;
    }
}

static void fuzz_reader(const uint8_t *data, size_t size)
{
    uint8_t *b = (uint8_t *)fuzz_dup(data, size);
    int rc = bencode_check(b, size);

    if (rc > 0) {
        struct evbuffer *out = evbuffer_new();
        size_t n = (size_t)rc;

        FUZZ_CHECK(n <= size);
        /* Bytes after the value are not looked at; a proper prefix is never a value. */
        FUZZ_CHECK(bencode_check(b, n) == rc);
        FUZZ_CHECK(bencode_check(b, n - 1) == -1);
        FUZZ_CHECK(bencode_check(b, n / 2) == -1);
        FUZZ_CHECK(out != NULL);
        FUZZ_CHECK(fuzz_rewrite(b, n, out) == n);
        FUZZ_CHECK(evbuffer_get_length(out) == n);
        FUZZ_CHECK(memcmp(evbuffer_pullup(out, -1), b, n) == 0);
        evbuffer_free(out);
    } else {
        FUZZ_CHECK(rc == -1);
    }
    free(b);
}

/* ---- writer side ---- */

struct fuzz_src {
    const uint8_t *p;
    size_t len, pos;
    unsigned nodes;
};

static int fuzz_more(const struct fuzz_src *s)
{
    return s->pos < s->len && s->nodes < 20000;
}

static uint8_t fuzz_byte(struct fuzz_src *s)
{
    return s->pos < s->len ? s->p[s->pos++] : 0;
}

struct fuzz_key {
    const uint8_t *p;
    size_t len;
};

static int fuzz_keycmp(const void *a, const void *b)
{
    const struct fuzz_key *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = m ? memcmp(x->p, y->p, m) : 0;

    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Writes a string whose bytes come from the input (repeated when the input runs short). */
static void fuzz_gen_str(struct fuzz_src *s, struct evbuffer *out, uint8_t tag)
{
    size_t n = fuzz_byte(s) % 24;
    uint8_t tmp[600];

    if (tag & 0x40)
        n = (size_t)fuzz_byte(s) << 1 | (tag & 1);   /* up to 511: the long-string path */
    for (size_t i = 0; i < n; i++)
        tmp[i] = s->len ? s->p[(s->pos + i) % s->len] : (uint8_t)i;
    s->pos += n < s->len - s->pos ? n : s->len - s->pos;
    if (tag & 0x20) {
        char hdr[BENCODE_STRHDR_MAX_LEN];
        char *e = bencode_put_strhdr(hdr, n);

        evbuffer_add(out, hdr, (size_t)(e - hdr));
        evbuffer_add(out, tmp, n);
    } else {
        bencode_str(out, tmp, n);
    }
}

static void fuzz_gen_int(struct fuzz_src *s, struct evbuffer *out, uint8_t tag)
{
    uint64_t u = 0;
    size_t nbytes = (size_t)(tag >> 5) + 1;           /* 1..8 bytes: small and large values */
    char b[BENCODE_INT_MAX_LEN + 1];
    char *e;
    int64_t v, back;

    for (size_t i = 0; i < nbytes; i++)
        u = u << 8 | fuzz_byte(s);
    if (nbytes < 8 && (tag & 0x10))
        u = 0 - u;                                   /* negatives of every size */
    memcpy(&v, &u, sizeof(v));
    e = bencode_put_int(b, v);
    FUZZ_CHECK(e - b <= BENCODE_INT_MAX_LEN);
    FUZZ_CHECK(bencode_get_int((uint8_t *)b, (size_t)(e - b), &back) == 0 && back == v);
    if (tag & 0x08)
        evbuffer_add(out, b, (size_t)(e - b));
    else
        bencode_int(out, v);
}

/* Writes one value; *deepest gets the largest number of nested containers seen. */
static void fuzz_gen(struct fuzz_src *s, struct evbuffer *out, unsigned depth, unsigned *deepest)
{
    uint8_t tag = fuzz_byte(s);

    s->nodes++;
    switch (tag & 3) {
    case 0:
        fuzz_gen_int(s, out, tag);
        return;
    case 1:
        fuzz_gen_str(s, out, tag);
        return;
    case 2: {
        unsigned n = (tag >> 2) % 6;

        if (depth + 1 > *deepest)
            *deepest = depth + 1;
        bencode_list_begin(out);
        for (unsigned i = 0; i < n && fuzz_more(s); i++)
            fuzz_gen(s, out, depth + 1, deepest);
        bencode_end(out);
        return;
    }
    default: {
        struct fuzz_key keys[8];
        unsigned n = (tag >> 2) % 8, k = 0;

        if (depth + 1 > *deepest)
            *deepest = depth + 1;
        for (unsigned i = 0; i < n && fuzz_more(s); i++) {
            keys[i].len = fuzz_byte(s) % 6;
            keys[i].p = s->p + s->pos;
            if (keys[i].len > s->len - s->pos)
                keys[i].len = s->len - s->pos;
            s->pos += keys[i].len;
            k++;
        }
        qsort(keys, k, sizeof(keys[0]), fuzz_keycmp);
        bencode_dict_begin(out);
        for (unsigned i = 0; i < k; i++) {
            if (i > 0 && fuzz_keycmp(&keys[i - 1], &keys[i]) == 0)
                continue;                            /* a key once */
            if (keys[i].len && !memchr(keys[i].p, '\0', keys[i].len) && (tag & 0x80)) {
                char key[8];

                memcpy(key, keys[i].p, keys[i].len);
                key[keys[i].len] = '\0';
                bencode_cstr(out, key);
            } else {
                bencode_str(out, keys[i].p, keys[i].len);
            }
            if (fuzz_more(s))
                fuzz_gen(s, out, depth + 1, deepest);
            else
                bencode_int(out, i);
        }
        bencode_end(out);
        return;
    }
    }
}

static void fuzz_writer(const uint8_t *data, size_t size)
{
    struct fuzz_src s = { .p = data, .len = size };
    struct evbuffer *out = evbuffer_new();
    unsigned deepest = 0;
    size_t n;
    uint8_t *b;
    int rc;

    FUZZ_CHECK(out != NULL);
    fuzz_gen(&s, out, 0, &deepest);
    n = evbuffer_get_length(out);
    /* Room for one byte of trailing junk after the value. */
    b = malloc(n + 1);
    FUZZ_CHECK(b != NULL && n > 0);
    memcpy(b, evbuffer_pullup(out, -1), n);
    evbuffer_free(out);

    rc = bencode_check(b, n);
    if (deepest <= BENCODE_MAX_DEPTH) {
        FUZZ_CHECK(rc == (int)n);
        FUZZ_CHECK(bencode_check(b, n - 1) == -1);
        b[n] = size ? data[size - 1] : 'x';
        FUZZ_CHECK(bencode_check(b, n + 1) == (int)n);
    } else {
        FUZZ_CHECK(rc == -1);
    }
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader(data, size);
    fuzz_writer(data, size);
    return 0;
}
