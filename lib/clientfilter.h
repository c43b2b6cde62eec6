/* The client filter (private.clients_mode, private.clients): which BitTorrent clients may
 * announce, told by their peer_id prefix ("-qB", "-TR2", "M7-"). Applies in public and private
 * mode, over HTTP and UDP. Pure: no I/O. */
#ifndef TYTO_CLIENTFILTER_H
#define TYTO_CLIENTFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

#define CLIENTFILTER_REASON_MAX 96

/* True when the configuration lets peer_id (20 bytes) announce. Otherwise false, with the reply's
 * failure reason in reason (cap >= CLIENTFILTER_REASON_MAX), naming the rule:
 *   client not allowed: peer_id prefix '<prefix>' is denied            (deny: the matched prefix)
 *   client not allowed: peer_id prefix '<prefix>' is not on the allow list
 *                                                   (allow: the peer_id's first 8 printable chars) */
bool clientfilter_allows(const struct config *cfg, const uint8_t *peer_id, char *reason, size_t cap);

#endif
