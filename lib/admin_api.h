/* The management API on the admin listener (admin.listen): JSON over HTTP under /api/, doing what
 * `tyto user ...` / `tyto torrent ...` do, through the same Redis functions (lib/private_admin.h).
 * Bearer token admin.token, compared in constant time; no token configured, no API (404). It has
 * its own async hiredis connection on the worker's event_base, made on first use, so that it
 * never blocks the worker's loop; each call has a deadline of redis.timeout_ms (503 past it, or
 * when Redis is down). */
#ifndef TYTO_ADMIN_API_H
#define TYTO_ADMIN_API_H

#include "lib/config.h"

#define ADMIN_API_MAX_BODY 4096       /* request bodies the admin listener takes (http_limits) */

struct event_base;
struct http_request;
struct admin_api;

/* cfg must outlive the API. NULL when out of memory. */
struct admin_api *admin_api_new(struct event_base *base, const struct config *cfg);

/* Answers one request whose path starts with /api/ (always replies, now or later). */
void admin_api_handle(struct admin_api *a, struct http_request *req);

/* Closes the connection; calls still waiting are answered 503. NULL is a no-op. */
void admin_api_free(struct admin_api *a);

#endif
