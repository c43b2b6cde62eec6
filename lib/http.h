/* A lean HTTP/1.1 server on libevent for the tracker's tiny GET requests: accepts on inherited
 * listeners, reads the PROXY protocol header (v1 or v2) from trusted proxies, parses request
 * line and headers in place, enforces every limit (head size, header count, head-read time,
 * idle time, requests per connection, connections per worker, output held for slow readers
 * and the time they get to take it), keeps connections alive, and
 * answers pipelined requests strictly in order. It knows nothing of trackers: the handler
 * gets a request, and replies later (asynchronously) with http_reply(). */
#ifndef TYTO_HTTP_H
#define TYTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;
struct http_server;
struct http_request;

/* Called once per complete request head. The request stays valid until http_reply(), which
 * must be called exactly once (also if the client went away meanwhile: then it only frees). */
typedef void http_handler(struct http_request *req, void *arg);

/* Decides whether a socket peer may send a PROXY header (and, for the caller's use, forwarding
 * headers). NULL: nobody is trusted and PROXY headers are never read. */
typedef bool http_trust_fn(const struct sockaddr *peer, void *arg);

struct http_limits {
    size_t max_head_bytes;            /* request line + headers; larger gets 431 and a close */
    unsigned max_headers;             /* header lines; more gets 431 */
    unsigned head_timeout_ms;         /* a request head must arrive within this (slowloris) */
    unsigned idle_timeout_ms;         /* keep-alive idle between requests */
    unsigned max_connections;         /* open connections; past it, accepting pauses */
    unsigned max_requests_per_conn;   /* then "Connection: close" */
    bool proxy_protocol;              /* trusted peers must (may) start with a PROXY header */
    /* Output buffers of connections whose client does not keep up, all together; a connection
     * that would take the total past it is closed. 0: no bound. */
    size_t max_output_bytes;
    /* Output that has to wait for a client must be sent within this; progress does not extend
     * it (a client reading a byte now and then is cut). 0: the idle timeout. */
    unsigned write_timeout_ms;
    /* Request bodies (Content-Length only) up to this many bytes, and the methods POST, PUT and
     * DELETE with them; the whole request must fit in max_head_bytes + this. 0: GET and HEAD
     * only and no bodies (413), as the tracker port wants. The admin API sets it. */
    size_t max_body_bytes;
};

struct http_server *http_server_new(struct event_base *base, const struct http_limits *lim,
                                    http_handler *handler, void *handler_arg,
                                    http_trust_fn *trusted, void *trust_arg);

/* Accepts on fd (a listening socket; the server takes a dup, the caller keeps fd). 0 or -1. */
int http_server_listen(struct http_server *s, int fd);

/* Stops accepting (closes its listener dups); open connections go on until their replies are
 * sent, then close. Idle keep-alive connections are closed at once. */
void http_server_stop_accepting(struct http_server *s);

/* Connections open now and requests handed to the handler but not yet replied. */
unsigned http_server_connections(const struct http_server *s);
unsigned http_server_pending(const struct http_server *s);

/* Output bytes held now for clients that do not keep up (counted against max_output_bytes), and
 * connections closed so far for slow reading (the bound, or the write timeout). */
size_t http_server_output_bytes(const struct http_server *s);
uint64_t http_server_slow_closes(const struct http_server *s);

/* Closes every connection; requests not yet replied stay valid until their http_reply(). */
void http_server_free(struct http_server *s);

/* Request accessors; pointers are valid until http_reply(). */
const char *http_request_path(const struct http_request *r, size_t *len);   /* before '?' */
const char *http_request_query(const struct http_request *r, size_t *len);  /* after '?', "" if none */
/* Case-insensitive lookup of the LAST header named name (for X-Forwarded-For, the line the
 * nearest proxy added: earlier lines may be a client's forgeries); NULL if absent. */
const char *http_request_header(const struct http_request *r, const char *name, size_t *len);
/* The TCP peer (the proxy, for proxied connections). */
const struct sockaddr *http_request_peer(const struct http_request *r);
/* The source the PROXY header announced, or NULL if there was none (or it was LOCAL/UNKNOWN). */
const struct sockaddr *http_request_proxied(const struct http_request *r);
bool http_request_keep_alive(const struct http_request *r);
/* The method ("GET", "POST", ...), NUL-terminated. */
const char *http_request_method(const struct http_request *r);
/* The request body (len 0 without one; only with http_limits.max_body_bytes). Not terminated. */
const char *http_request_body(const struct http_request *r, size_t *len);

/* Output buffer for the body; write into it, then call http_reply(). */
struct evbuffer *http_reply_body(struct http_request *r);

/* Sends status + headers (Content-Type, Content-Length, Connection) + body, then frees r. */
void http_reply(struct http_request *r, int status, const char *content_type);

/* The PROXY protocol parser (exposed for unit tests and the fuzzer). Parses a v1 or v2 header at
 * buf: returns bytes consumed (>0) and fills *src (family AF_UNSPEC for LOCAL / UNKNOWN),
 * -2 if more bytes are needed, -1 if invalid. */
int http_proxy_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src);

/* The request head parser (exposed for tests and the fuzzer): parses "GET /path?q HTTP/1.1\r\n
 * headers \r\n\r\n" at buf. Returns head length (>0), -2 if incomplete, -1 if malformed, -3 if
 * over max_headers. Fills the method/target/version spans and up to max_headers header spans. */
struct http_span { const char *p; size_t len; };
struct http_head {
    struct http_span method, target;
    int minor_version;                /* HTTP/1.x */
    unsigned nheaders;
    struct http_span names[64], values[64];
};
int http_parse_head(const char *buf, size_t len, unsigned max_headers, struct http_head *h);

#endif
