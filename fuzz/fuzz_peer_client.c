/* libFuzzer target for lib/peer_client.c: the input's first 20 bytes (zero-padded) are a peer_id,
 * any bytes a client may send. The answer is always a known code with its display name, the
 * code is a safe Redis field name ([a-z0-9], short), and the version is NUL-terminated printable
 * text that fits its buffer. */
#include "fuzz/fuzz.h"

#include <string.h>

#include "lib/peer_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t id[20] = { 0 };
    struct peer_client pc;
    size_t len;

    memcpy(id, data, size < sizeof(id) ? size : sizeof(id));
    memset(&pc, 0x5a, sizeof(pc));
    peer_client_identify(id, &pc);
    FUZZ_CHECK(pc.code && pc.name);
    len = strlen(pc.code);
    FUZZ_CHECK(len > 0 && len < PEER_CLIENT_CODE_MAX);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK((pc.code[i] >= 'a' && pc.code[i] <= 'z') || (pc.code[i] >= '0' && pc.code[i] <= '9'));
    FUZZ_CHECK(peer_client_name(pc.code, len) != NULL && strcmp(peer_client_name(pc.code, len), pc.name) == 0);
    FUZZ_CHECK(memchr(pc.version, '\0', sizeof(pc.version)) != NULL);
    for (size_t i = 0; pc.version[i]; i++)
        FUZZ_CHECK(pc.version[i] > 0x20 && pc.version[i] < 0x7f);
    return 0;
}
