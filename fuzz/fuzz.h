/* Shared by the libFuzzer targets in fuzz/: the entry point's prototype, a check that stays on
 * whatever NDEBUG says (a failed property is a finding, reported like a crash), and a copy of a
 * span into a buffer of exactly its size so that AddressSanitizer sees any read past the end. */
#ifndef TYTO_FUZZ_H
#define TYTO_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed condition and its place; libFuzzer then saves the input. */
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* A malloc'd copy of s[0..len) with no byte to spare (at least one byte is allocated, so that
 * an empty span still has a valid pointer). The caller frees it. */
static inline char *fuzz_dup(const void *s, size_t len)
{
    char *p = malloc(len ? len : 1);

    if (p == NULL)
        abort();
    if (len)
        memcpy(p, s, len);
    return p;
}

#endif
