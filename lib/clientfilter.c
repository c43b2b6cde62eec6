/* The client filter: a linear scan of at most CONFIG_MAX_CLIENTS prefixes of at most 8 bytes,
 * cheaper than any lookup structure at that size. */
#include "lib/clientfilter.h"

#include <stdio.h>
#include <string.h>

#include "lib/announce.h"
#include "lib/config.h"

/* The first configured prefix peer_id starts with, or NULL. */
static const char *clientfilter_match(const struct config *cfg, const uint8_t *peer_id)
{
    for (int i = 0; i < cfg->clients_count; i++) {
        size_t n = strlen(cfg->clients[i]);
        if (n > 0 && n <= ANNOUNCE_HASH_LEN && memcmp(peer_id, cfg->clients[i], n) == 0)
            return cfg->clients[i];
    }
    return NULL;
}

bool clientfilter_allows(const struct config *cfg, const uint8_t *peer_id, char *reason, size_t cap)
{
    const char *m;

    if (cfg->clients_mode == CONFIG_CLIENTS_OFF)
        return true;
    m = clientfilter_match(cfg, peer_id);
    if (cfg->clients_mode == CONFIG_CLIENTS_DENY) {
        if (!m)
            return true;
        snprintf(reason, cap, "client not allowed: peer_id prefix '%s' is denied", m);
        return false;
    }
    if (m)
        return true;
    /* The peer_id is client-controlled bytes: show its first 8 as printable text only, and
     * never a quote that would make the reason ambiguous. */
    char shown[CONFIG_CLIENT_PREFIX_MAX + 1];
    size_t k = 0;
    for (size_t i = 0; i < CONFIG_CLIENT_PREFIX_MAX; i++) {
        uint8_t c = peer_id[i];
        shown[k++] = c >= 0x20 && c < 0x7f && c != '\'' && c != '\\' ? (char)c : '?';
    }
    shown[k] = '\0';
    snprintf(reason, cap, "client not allowed: peer_id prefix '%s' is not on the allow list", shown);
    return false;
}
