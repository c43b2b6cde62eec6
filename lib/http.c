/* The worker's HTTP/1.1 front: a small server on raw libevent events (no evhttp). Each connection
 * reads into one contiguous buffer, parses request heads in place, copies each head into a
 * reusable request object, hands it to the handler, and writes replies strictly in request
 * order from one contiguous output buffer (one send() per batch). Limits, timeouts, PROXY
 * headers from trusted peers and back-pressure are enforced here; routing is the caller's.
 * Slow readers: a connection whose client does not take its output stops being read, its
 * buffer counts against the server's max_output_bytes (a connection that would take the total
 * past it is closed), and what it has queued must be sent within write_timeout_ms.
 *
 * Lifetimes: a request belongs to its connection's queue until the connection closes; then it
 * is "orphaned" (kept on the server's orphan list) until the handler calls http_reply(), which
 * only frees it. Connection state is freed only at the end of its own callbacks
 * (http_conn_run), never while the handler is on the stack. Zero in a time or count limit
 * means "no limit"; zero max_head_bytes means 8192 (at most 64 KiB), zero max_headers means
 * 64 (also the maximum).
 * The server never calls back into the caller except through the handler; do not free the
 * server from inside the handler. */
#include "lib/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define HTTP_HEAD_SLOTS 64            /* size of struct http_head's header arrays */
#define HTTP_DEFAULT_HEAD_BYTES 8192
#define HTTP_MAX_HEAD_BYTES (64 * 1024)
#define HTTP_PROXY_V1_MAX 107         /* haproxy's spec: the longest v1 line, CRLF included */
#define HTTP_PROXY_V2_MAX_ADDR 2048   /* our bound on a v2 header's address + TLV length */
#define HTTP_PROXY_MAX (16 + HTTP_PROXY_V2_MAX_ADDR)
#define HTTP_PIPELINE_MAX 16          /* requests queued per connection before reading pauses */
#define HTTP_EAGER_PARSE 1024         /* heads up to this long are parsed on every read */
#define HTTP_IN_INITIAL 2048          /* first input buffer; grows up to the head limit */
#define HTTP_OUT_HIGH (256 * 1024)    /* output queued beyond this is sent before parsing more */
#define HTTP_OUT_KEEP 4096            /* an emptied output buffer larger than this is freed */
#define HTTP_OUT_MAP (64 * 1024)      /* output buffers larger than this are mmap()ed */
#define HTTP_LINGER_MS 1000           /* after an error reply: read and drop until EOF, this long */
#define HTTP_LINGER_BYTES (64 * 1024)
#define HTTP_ACCEPT_PAUSE_MS 100      /* after EMFILE and the like */
#define HTTP_MAX_LISTENERS 128 /* SO_REUSEPORT lanes x addresses (lib/master.c) */
#define HTTP_CONN_CACHE 64            /* freed connections kept for reuse */
#define HTTP_REQ_CACHE 256            /* freed requests kept for reuse */

enum http_timer { HTTP_T_NONE, HTTP_T_HEAD, HTTP_T_IDLE, HTTP_T_WRITE, HTTP_T_LINGER, HTTP_T_DRAIN };

struct http_request {
    struct http_server *srv;          /* NULL once the server is freed */
    struct http_conn *conn;           /* NULL once the connection closed */
    struct http_request *next;        /* connection queue, orphan list or free list */
    struct http_request *prev;        /* orphan list only */
    struct evbuffer *body;
    const char *content_type;
    int status;
    bool replied;                     /* http_reply() was called (or a server-made error) */
    bool keep_alive;
    bool head_only;                   /* HEAD: headers only */
    bool has_proxied;
    struct http_span path, query;
    struct http_head h;               /* spans point into buf */
    struct sockaddr_storage peer, proxied;
    char *buf;                        /* this request's copy of its head (and its body) */
    size_t buf_cap;
    size_t head_len, body_len;        /* the body follows the head in buf */
};

struct http_conn {
    struct http_server *srv;
    struct http_conn *prev, *next;    /* the server's open connections, or its cache */
    struct event *rev, *wev, *tmo;    /* carved from this allocation (event_assign) */
    int fd;
    struct sockaddr_storage peer;
    struct sockaddr_storage proxied;
    char *in;                         /* unparsed input is in[in_off..in_len) */
    size_t in_off, in_len, in_cap;
    size_t scan;                      /* end-of-head search resumes here (relative to in_off) */
    char *out;                        /* unsent output is out[out_off..out_len) */
    size_t out_off, out_len, out_cap;
    size_t held;                      /* out_cap as counted in the server's out_held */
    uint64_t sent_total;              /* bytes sent on this connection */
    uint64_t write_mark;              /* the write deadline is for output up to this byte */
    struct http_request *qhead, *qtail;
    unsigned qlen;
    unsigned nreq;                    /* request heads parsed on this connection */
    size_t lingered;                  /* bytes dropped while lingering */
    enum http_timer timer;
    bool idle_armed;                  /* tmo is pending with the idle timeout (see set_timer) */
    uint64_t idle_since_us;           /* when the idle period began (loop's cached clock) */
    bool has_proxied;
    bool need_proxy;                  /* a PROXY header must come first */
    bool reading;                     /* rev is added */
    bool writing;                     /* wev is added: the socket buffer was full */
    bool flush_scheduled;             /* wev was activated by http_reply() */
    bool in_cb;                       /* http_conn_run() is on the stack */
    bool closing;                     /* free at the end of http_conn_run() */
    bool last;                        /* no more requests are read; close once answered */
    bool eof;                         /* the peer sent FIN */
    bool linger_wanted;               /* unread input may remain: linger before closing */
    bool no_linger;                   /* close right after the final reply (timeouts) */
    bool linger;                      /* shut down for writing; dropping input until EOF */
    bool reset;                       /* close with a reset: drop what the kernel still holds */
};

struct http_server {
    struct event_base *base;
    struct http_limits lim;
    size_t max_head;                  /* effective head limit */
    unsigned max_headers;             /* effective header count limit */
    size_t in_max;                    /* input buffer bound */
    size_t max_body;                  /* lim.max_body_bytes */
    http_handler *handler;
    void *handler_arg;
    http_trust_fn *trusted;
    void *trust_arg;
    struct evconnlistener *lev[HTTP_MAX_LISTENERS];
    unsigned nlev;
    struct event *resume;             /* re-enables accepting after an accept error */
    const struct timeval *tv_head, *tv_idle, *tv_write, *tv_linger;
    size_t out_held;                  /* output buffers waiting for slow clients, all together */
    uint64_t slow_closes;             /* connections cut: output bound or write timeout */
    struct http_conn *conns;
    unsigned nconns;
    unsigned npending;
    struct http_request *orphans;
    struct http_conn *free_conns;
    unsigned nfree_conns;
    struct http_request *free_reqs;
    unsigned nfree_reqs;
    size_t event_size;                /* event_get_struct_event_size(), rounded up */
    bool stopping;
    bool paused_full;                 /* accepting paused at max_connections */
    bool paused_err;                  /* accepting paused after an accept error */
};

static void http_conn_on_read(evutil_socket_t fd, short what, void *arg);
static void http_conn_on_write(evutil_socket_t fd, short what, void *arg);
static void http_conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void http_conn_free(struct http_conn *c);

/* ------------------------------------------------------------------------------------------ */
/* Parsers: pure functions over (buf, len); they never read past buf + len. */

/* RFC 9110 tchar: the bytes of a method or a header name. */
static const unsigned char http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* Consumes a line end at *i: CRLF, or a bare LF (RFC 9112 allows accepting it). A CR not
 * followed by LF is invalid. 0, -1 or -2. */
static int http_eol(const unsigned char *p, size_t len, size_t *i)
{
    if (*i >= len)
        return -2;
    if (p[*i] == '\n') {
        *i += 1;
        return 0;
    }
    if (p[*i] != '\r')
        return -1;
    if (*i + 1 >= len)
        return -2;
    if (p[*i + 1] != '\n')
        return -1;
    *i += 2;
    return 0;
}

int http_parse_head(const char *buf, size_t len, unsigned max_headers, struct http_head *h)
{
    const unsigned char *p = (const unsigned char *)buf;
    static const char version[] = "HTTP/1.";
    size_t i = 0, start, end;
    int rc;

    if (len > (size_t)INT32_MAX)
        len = (size_t)INT32_MAX; /* the return value is an int; heads are far shorter */
    if (max_headers > HTTP_HEAD_SLOTS)
        max_headers = HTTP_HEAD_SLOTS;
    h->nheaders = 0;
    h->minor_version = -1;

    /* RFC 9112 2.2: ignore empty lines before the request line. */
    while (i < len && (p[i] == '\r' || p[i] == '\n')) {
        if ((rc = http_eol(p, len, &i)) < 0)
            return rc;
    }

    start = i;
    while (i < len && http_tchar[p[i]])
        i++;
    if (i >= len)
        return -2;
    if (i == start || p[i] != ' ')
        return -1;
    h->method.p = buf + start;
    h->method.len = i - start;
    i++;

    /* The target: visible ASCII; bytes >= 0x80 are tolerated (some clients send raw bytes).
     * An announce's target is ~200 bytes: eight at a time while none is a control byte, space
     * or DEL (bytes below 0x21: (x - 0x21..) & ~x & 0x80..; DEL: a zero byte in x ^ 0x7f..),
     * then byte by byte to the end. */
    start = i;
    while (i + 8 <= len) {
        uint64_t x, y;
        const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        memcpy(&x, p + i, 8);
        y = x ^ (0x7f * ones);
        if (((x - 0x21 * ones) & ~x & highs) | ((y - ones) & ~y & highs))
            break;
        i += 8;
    }
    while (i < len && p[i] > 0x20 && p[i] != 0x7f)
        i++;
    if (i >= len)
        return -2;
    if (i == start || p[i] != ' ')
        return -1;
    h->target.p = buf + start;
    h->target.len = i - start;
    i++;

    for (size_t k = 0; k < sizeof(version) - 1; k++, i++) {
        if (i >= len)
            return -2;
        if (p[i] != (unsigned char)version[k])
            return -1;
    }
    if (i >= len)
        return -2;
    if (p[i] != '0' && p[i] != '1')
        return -1;
    h->minor_version = p[i] - '0';
    i++;
    if ((rc = http_eol(p, len, &i)) < 0)
        return rc;

    for (;;) {
        if (i >= len)
            return -2;
        if (p[i] == '\r' || p[i] == '\n') {
            if ((rc = http_eol(p, len, &i)) < 0)
                return rc;
            return (int)i;
        }
        if (h->nheaders >= max_headers)
            return -3;
        /* A line starting with SP or HT (obsolete folding) fails here: neither is a tchar. */
        start = i;
        while (i < len && http_tchar[p[i]])
            i++;
        if (i >= len)
            return -2;
        if (i == start || p[i] != ':')
            return -1;
        h->names[h->nheaders].p = buf + start;
        h->names[h->nheaders].len = i - start;
        i++;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        start = end = i;
        for (; i < len; i++) {
            unsigned char ch = p[i];
            if (ch == '\r' || ch == '\n')
                break;
            if (ch == ' ' || ch == '\t')
                continue;
            if (ch < 0x20 || ch == 0x7f)
                return -1;
            end = i + 1;
        }
        if (i >= len)
            return -2;
        h->values[h->nheaders].p = buf + start;
        h->values[h->nheaders].len = end - start;
        if ((rc = http_eol(p, len, &i)) < 0)
            return rc;
        h->nheaders++;
    }
}

/* Parses a decimal port of at most 5 digits, no leading zero, up to 65535. */
static int http_parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned v = 0;
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Parses an address literal of the family into dst (in_addr or in6_addr). */
static int http_parse_ip(int family, const char *s, size_t len, void *dst)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(family, tmp, dst) == 1 ? 0 : -1;
}

/* v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n" or "PROXY UNKNOWN...\r\n". */
static int http_proxy_v1(const uint8_t *buf, size_t len, struct sockaddr_storage *src)
{
    static const char sig[] = "PROXY ";
    const char *s = (const char *)buf;
    const char *tok[5];
    size_t toklen[5], i, eol, pos;
    int family;

    for (i = 0; i < sizeof(sig) - 1; i++) {
        if (i >= len)
            return -2;
        if (s[i] != sig[i])
            return -1;
    }
    for (eol = i; eol < len && eol < HTTP_PROXY_V1_MAX; eol++) {
        if (s[eol] == '\n')
            return -1; /* LF without CR */
        if (s[eol] == '\r')
            break;
    }
    if (eol >= HTTP_PROXY_V1_MAX - 1)
        return -1; /* no room left for the LF */
    if (eol >= len || eol + 1 >= len)
        return -2;
    if (s[eol + 1] != '\n')
        return -1;

    memset(src, 0, sizeof(*src));
    if (eol - i >= 7 && memcmp(s + i, "UNKNOWN", 7) == 0 && (eol - i == 7 || s[i + 7] == ' ')) {
        src->ss_family = AF_UNSPEC; /* the spec: ignore whatever follows UNKNOWN */
        return (int)(eol + 2);
    }
    if (eol - i < 5 || (memcmp(s + i, "TCP4 ", 5) != 0 && memcmp(s + i, "TCP6 ", 5) != 0))
        return -1;
    family = s[i + 3] == '4' ? AF_INET : AF_INET6;
    /* Exactly four fields separated by single spaces. */
    pos = i + 5;
    for (int t = 0; t < 4; t++) {
        tok[t] = s + pos;
        while (pos < eol && s[pos] != ' ')
            pos++;
        toklen[t] = (size_t)(s + pos - tok[t]);
        if (toklen[t] == 0)
            return -1;
        if (t < 3) {
            if (pos >= eol)
                return -1;
            pos++; /* the space */
        }
    }
    if (pos != eol)
        return -1;

    uint16_t sport, dport;
    if (http_parse_port(tok[2], toklen[2], &sport) < 0 || http_parse_port(tok[3], toklen[3], &dport) < 0)
        return -1;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)src;
        struct in_addr dst;
        if (http_parse_ip(AF_INET, tok[0], toklen[0], &sin->sin_addr) < 0 ||
            http_parse_ip(AF_INET, tok[1], toklen[1], &dst) < 0)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(sport);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)src;
        struct in6_addr dst;
        if (http_parse_ip(AF_INET6, tok[0], toklen[0], &sin6->sin6_addr) < 0 ||
            http_parse_ip(AF_INET6, tok[1], toklen[1], &dst) < 0)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(sport);
    }
    (void)dport;
    return (int)(eol + 2);
}

/* v2: 12-byte signature, version/command, family/protocol, 16-bit length, addresses, TLVs. */
static int http_proxy_v2(const uint8_t *buf, size_t len, struct sockaddr_storage *src)
{
    static const uint8_t sig[12] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };
    size_t alen, i;

    for (i = 0; i < sizeof(sig); i++) {
        if (i >= len)
            return -2;
        if (buf[i] != sig[i])
            return -1;
    }
    if (len < 16)
        return -2;
    uint8_t ver_cmd = buf[12], fam = buf[13];
    if ((ver_cmd & 0xf0) != 0x20 || (ver_cmd & 0x0f) > 1)
        return -1;
    alen = (size_t)buf[14] << 8 | buf[15];
    if (alen > HTTP_PROXY_V2_MAX_ADDR)
        return -1;

    memset(src, 0, sizeof(*src));
    src->ss_family = AF_UNSPEC;
    if ((ver_cmd & 0x0f) == 0) {
        /* LOCAL (health checks from the proxy itself): the address block is ignored. */
        if (len < 16 + alen)
            return -2;
        return (int)(16 + alen);
    }
    switch (fam) {
    case 0x00: /* UNSPEC */
        break;
    case 0x11: /* TCP over IPv4: src 4, dst 4, sport 2, dport 2 */
        if (alen < 12)
            return -1;
        break;
    case 0x21: /* TCP over IPv6: src 16, dst 16, sport 2, dport 2 */
        if (alen < 36)
            return -1;
        break;
    case 0x31: /* UNIX stream: no IP source; the real peer stands */
        if (alen < 216)
            return -1;
        break;
    default:   /* UDP and unknown families cannot carry an HTTP connection */
        return -1;
    }
    if (len < 16 + alen)
        return -2;
    if (fam == 0x11) {
        struct sockaddr_in *sin = (struct sockaddr_in *)src;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, buf + 16, 4);
        memcpy(&sin->sin_port, buf + 24, 2); /* network order on the wire and in sin_port */
    } else if (fam == 0x21) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)src;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, buf + 16, 16);
        memcpy(&sin6->sin6_port, buf + 48, 2);
    }
    return (int)(16 + alen); /* TLVs, if any, are skipped */
}

int http_proxy_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src)
{
    if (len == 0)
        return -2;
    if (buf[0] == 'P')
        return http_proxy_v1(buf, len, src);
    if (buf[0] == '\r')
        return http_proxy_v2(buf, len, src);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests */

static const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default:  return status >= 500 ? "Error" : "Status";
    }
}

static void http_req_destroy(struct http_request *r)
{
    if (r->body)
        evbuffer_free(r->body);
    free(r->buf);
    free(r);
}

static struct http_request *http_req_get(struct http_server *s)
{
    struct http_request *r = s->free_reqs;
    if (r) {
        s->free_reqs = r->next;
        s->nfree_reqs--;
    } else {
        r = malloc(sizeof(*r));
        if (!r)
            return NULL;
        r->body = evbuffer_new();
        r->buf = NULL;
        r->buf_cap = 0;
        if (!r->body) {
            free(r);
            return NULL;
        }
    }
    r->srv = s;
    r->conn = NULL;
    r->next = r->prev = NULL;
    r->content_type = NULL;
    r->status = 0;
    r->replied = r->keep_alive = r->head_only = r->has_proxied = false;
    r->h.nheaders = 0;
    return r;
}

/* Returns r to the server's cache (or frees it when there is no server or the cache is full). */
static void http_req_release(struct http_server *s, struct http_request *r)
{
    if (!s || s->nfree_reqs >= HTTP_REQ_CACHE) {
        http_req_destroy(r);
        return;
    }
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    if (r->buf_cap > 2 * HTTP_DEFAULT_HEAD_BYTES) {
        free(r->buf); /* an unusually large head: do not keep its buffer */
        r->buf = NULL;
        r->buf_cap = 0;
    }
    r->next = s->free_reqs;
    s->free_reqs = r;
    s->nfree_reqs++;
}

static void http_orphan_link(struct http_server *s, struct http_request *r)
{
    r->prev = NULL;
    r->next = s->orphans;
    if (s->orphans)
        s->orphans->prev = r;
    s->orphans = r;
}

static void http_orphan_unlink(struct http_server *s, struct http_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        s->orphans = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

const char *http_request_path(const struct http_request *r, size_t *len)
{
    if (len)
        *len = r->path.len;
    return r->path.p;
}

const char *http_request_query(const struct http_request *r, size_t *len)
{
    if (len)
        *len = r->query.len;
    return r->query.p;
}

const char *http_request_header(const struct http_request *r, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (unsigned i = r->h.nheaders; i-- > 0;) {
        if (r->h.names[i].len == n && strncasecmp(r->h.names[i].p, name, n) == 0) {
            if (len)
                *len = r->h.values[i].len;
            return r->h.values[i].p;
        }
    }
    return NULL;
}

const struct sockaddr *http_request_peer(const struct http_request *r)
{
    return (const struct sockaddr *)&r->peer;
}

const struct sockaddr *http_request_proxied(const struct http_request *r)
{
    return r->has_proxied ? (const struct sockaddr *)&r->proxied : NULL;
}

bool http_request_keep_alive(const struct http_request *r)
{
    return r->keep_alive;
}

const char *http_request_method(const struct http_request *r)
{
    return r->h.method.p;
}

const char *http_request_body(const struct http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->buf + r->head_len;
}

struct evbuffer *http_reply_body(struct http_request *r)
{
    return r->body;
}

void http_reply(struct http_request *r, int status, const char *content_type)
{
    struct http_server *s = r->srv;
    struct http_conn *c = r->conn;

    assert(!r->replied);
    r->status = status;
    r->content_type = content_type;
    r->replied = true;
    if (s)
        s->npending--;
    if (!c) {
        /* The connection is gone: nothing to send. */
        if (s)
            http_orphan_unlink(s, r);
        http_req_release(s, r);
        return;
    }
    /* Inside the connection's own callback http_conn_run() collects the reply; otherwise one
     * write per loop iteration sends every reply that became ready, in order. Also while the
     * socket is full: collecting moves the reply into the output buffer, where it counts
     * against max_output_bytes (a reply left in its request would escape the bound). */
    if (c->in_cb || c->flush_scheduled || r != c->qhead)
        return;
    c->flush_scheduled = true;
    event_active(c->wev, EV_WRITE, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Connections */

static const char http_root[] = "/";  /* the path of "http://host" and "http://host?q" */

static bool http_token_in_list(const char *v, size_t len, const char *tok)
{
    size_t n = strlen(tok), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == n && strncasecmp(v + start, tok, n) == 0)
            return true;
    }
    return false;
}

static bool http_span_is(const struct http_span *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->len == n && strncasecmp(s->p, lit, n) == 0;
}

/* Checks the parsed head of r (already in r->buf) and splits its target into path and
 * query. Returns 0, or the status to answer. */
static int http_conn_check_request(struct http_request *r, size_t max_body, bool *ka_hdr, bool *close_hdr)
{
    struct http_head *h = &r->h;
    const char *t = h->target.p, *end = h->target.p + h->target.len, *path;

    r->body_len = 0;
    if (h->method.len == 3 && memcmp(h->method.p, "GET", 3) == 0) {
        r->head_only = false;
    } else if (h->method.len == 4 && memcmp(h->method.p, "HEAD", 4) == 0) {
        r->head_only = true;
    } else if (max_body && ((h->method.len == 4 && memcmp(h->method.p, "POST", 4) == 0) ||
                            (h->method.len == 3 && memcmp(h->method.p, "PUT", 3) == 0) ||
                            (h->method.len == 6 && memcmp(h->method.p, "DELETE", 6) == 0))) {
        r->head_only = false;
    } else {
        return 405; /* methods are case-sensitive: "get" is not GET */
    }

    *ka_hdr = *close_hdr = false;
    bool have_length = false;
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_span *n = &h->names[i], *v = &h->values[i];
        if (http_span_is(n, "content-length")) {
            bool nonzero = false;
            size_t blen = 0;
            if (v->len == 0)
                return 400;
            for (size_t k = 0; k < v->len; k++) {
                if (v->p[k] < '0' || v->p[k] > '9')
                    return 400;
                if (v->p[k] != '0')
                    nonzero = true;
                if (blen <= max_body)          /* stops growing past the bound: no overflow */
                    blen = blen * 10 + (size_t)(v->p[k] - '0');
            }
            if (nonzero && (max_body == 0 || blen > max_body))
                return 413; /* a tracker takes no request bodies; the admin API small ones */
            /* Lengths that disagree make the body's end a guess (request smuggling behind a
             * proxy that picks the other one): refused (RFC 9112 6.3). */
            if (have_length && blen != r->body_len)
                return 400;
            have_length = true;
            r->body_len = blen;
        } else if (http_span_is(n, "transfer-encoding")) {
            return 400;
        } else if (http_span_is(n, "connection")) {
            if (http_token_in_list(v->p, v->len, "close"))
                *close_hdr = true;
            if (http_token_in_list(v->p, v->len, "keep-alive"))
                *ka_hdr = true;
        }
    }

    /* origin-form "/p?q", or absolute-form "http://host/p?q" (RFC 9112 3.2.2). */
    if (*t == '/') {
        path = t;
    } else {
        size_t skip;
        if (h->target.len > 7 && strncasecmp(t, "http://", 7) == 0)
            skip = 7;
        else if (h->target.len > 8 && strncasecmp(t, "https://", 8) == 0)
            skip = 8;
        else
            return 400;
        path = t + skip;
        while (path < end && *path != '/' && *path != '?')
            path++;
        if (path == t + skip)
            return 400; /* no authority */
        if (path == end || *path == '?') {
            /* "http://host" or "http://host?q": the path is "/" */
            r->path.p = http_root;
            r->path.len = 1;
            r->query.p = path < end ? path + 1 : end;
            r->query.len = (size_t)(end - r->query.p);
            return 0;
        }
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    r->path.p = path;
    r->path.len = (size_t)((q ? q : end) - path);
    r->query.p = q ? q + 1 : end;
    r->query.len = (size_t)(end - r->query.p);
    return 0;
}

/* Copies the head at src (n bytes, parsed into r->h) into r->buf and moves r->h's spans there. */
static int http_req_take_head(struct http_request *r, const char *src, size_t n)
{
    if (r->buf_cap < n + 1) {
        size_t cap = n + 1 < 512 ? 512 : n + 1;
        char *b = malloc(cap);
        if (!b)
            return -1;
        free(r->buf);
        r->buf = b;
        r->buf_cap = cap;
    }
    memcpy(r->buf, src, n);
    r->buf[n] = '\0';
    r->h.method.p = r->buf + (r->h.method.p - src);
    r->h.target.p = r->buf + (r->h.target.p - src);
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        r->h.names[i].p = r->buf + (r->h.names[i].p - src);
        r->h.values[i].p = r->buf + (r->h.values[i].p - src);
    }
    return 0;
}

static void http_span_move(struct http_span *sp, const char *from, char *to)
{
    sp->p = to + (sp->p - from);
}

/* Appends the body (n bytes at src) to r's copy of its head (head_len bytes), moving every span
 * into a larger buffer when it does not fit. 0 or -1. */
static int http_req_take_body(struct http_request *r, const char *src, size_t n)
{
    size_t need = r->head_len + n + 1;
    if (r->buf_cap < need) {
        char *b = malloc(need);
        if (!b)
            return -1;
        memcpy(b, r->buf, r->head_len);
        http_span_move(&r->h.method, r->buf, b);
        http_span_move(&r->h.target, r->buf, b);
        for (unsigned i = 0; i < r->h.nheaders; i++) {
            http_span_move(&r->h.names[i], r->buf, b);
            http_span_move(&r->h.values[i], r->buf, b);
        }
        if (r->path.p != http_root)
            http_span_move(&r->path, r->buf, b);
        http_span_move(&r->query, r->buf, b);
        free(r->buf);
        r->buf = b;
        r->buf_cap = need;
    }
    memcpy(r->buf + r->head_len, src, n);
    r->buf[r->head_len + n] = '\0';
    return 0;
}

/* NUL-terminates every span in the copy: each is followed by a delimiter inside the head
 * (' ', '?', ':', OWS, CR or LF) that is no longer needed. */
static void http_req_terminate(struct http_request *r)
{
    char *b = r->buf;
    b[r->h.method.p + r->h.method.len - b] = '\0';
    b[r->h.target.p + r->h.target.len - b] = '\0'; /* also ends the query */
    if (r->path.p != http_root)
        b[r->path.p + r->path.len - b] = '\0'; /* the '?', or the target's end */
    for (unsigned i = 0; i < r->h.nheaders; i++) {
        b[r->h.names[i].p + r->h.names[i].len - b] = '\0';
        b[r->h.values[i].p + r->h.values[i].len - b] = '\0';
    }
}

static void http_conn_enqueue(struct http_conn *c, struct http_request *r)
{
    r->conn = c;
    r->next = NULL;
    if (c->qtail)
        c->qtail->next = r;
    else
        c->qhead = r;
    c->qtail = r;
    c->qlen++;
}

/* Queues a reply made by the server itself (parse errors, limits, timeouts) and stops reading:
 * the connection closes once everything before it and it are sent. */
static void http_conn_error(struct http_conn *c, int status, const char *text)
{
    struct http_request *r = http_req_get(c->srv);
    c->last = true;
    c->linger_wanted = true;
    c->in_off = c->in_len = 0;
    c->scan = 0;
    if (!r || evbuffer_add(r->body, text, strlen(text)) < 0) {
        if (r)
            http_req_release(c->srv, r);
        c->closing = c->qlen == 0;
        return;
    }
    r->path.p = r->query.p = "";
    r->path.len = r->query.len = 0;
    memcpy(&r->peer, &c->peer, sizeof(r->peer));
    r->status = status;
    r->content_type = "text/plain";
    r->replied = true;
    r->keep_alive = false;
    http_conn_enqueue(c, r);
}

static char *http_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *http_put_uint(char *p, size_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Output buffers larger than HTTP_OUT_MAP are mapped rather than taken from the heap, so that
 * a slow reader's buffer goes back to the system when it is freed: in the heap, the buffers of
 * many slow readers, coming and going between small allocations, would leave the worker's RSS
 * at their fragmented high-water mark (measured: 19 MiB of heap for 3 MiB in use). Sizes past
 * HTTP_OUT_MAP are powers of two, so whole pages. */
static char *http_out_resize(char *out, size_t cap, size_t new_cap)
{
    void *p;
    if (new_cap <= HTTP_OUT_MAP)
        return realloc(out, new_cap);
    if (cap > HTTP_OUT_MAP) {
        p = mremap(out, cap, new_cap, MREMAP_MAYMOVE);
        return p == MAP_FAILED ? NULL : p;
    }
    p = mmap(NULL, new_cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (out)
        memcpy(p, out, cap);
    free(out);
    return p;
}

static void http_out_free(char *out, size_t cap)
{
    if (cap > HTTP_OUT_MAP)
        munmap(out, cap);
    else
        free(out);
}

/* Makes room for n more output bytes. */
static int http_conn_out_reserve(struct http_conn *c, size_t n)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len >= n)
        return 0;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= n)
            return 0;
    }
    size_t cap = c->out_cap ? c->out_cap : 1024;
    while (cap - c->out_len < n) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *o = http_out_resize(c->out, c->out_cap, cap);
    if (!o)
        return -1;
    c->out = o;
    c->out_cap = cap;
    return 0;
}

/* Moves every reply that is ready, in request order, into the output buffer. */
static void http_conn_collect(struct http_conn *c)
{
    struct http_request *r;
    while ((r = c->qhead) && r->replied) {
        size_t blen = evbuffer_get_length(r->body);
        const char *ctype = r->content_type ? r->content_type : "text/plain";
        size_t clen = strlen(ctype);
        bool keep = r->keep_alive;
        int status = r->status >= 100 && r->status <= 999 ? r->status : 500;
        const char *reason = http_reason(status);
        size_t need = 128 + strlen(reason) + clen + (r->head_only ? 0 : blen);

        c->qhead = r->next;
        if (!c->qhead)
            c->qtail = NULL;
        c->qlen--;
        if (!keep)
            c->last = true;
        if (http_conn_out_reserve(c, need) < 0) {
            c->closing = true;
            http_req_release(c->srv, r);
            return;
        }
        char *p = c->out + c->out_len;
        p = http_put(p, "HTTP/1.1 ", 9);
        p = http_put_uint(p, (size_t)status);
        *p++ = ' ';
        p = http_put(p, reason, strlen(reason));
        p = http_put(p, "\r\nContent-Type: ", 16);
        p = http_put(p, ctype, clen);
        p = http_put(p, "\r\nContent-Length: ", 18);
        p = http_put_uint(p, blen);
        if (status == 405)
            p = http_put(p, "\r\nAllow: GET, HEAD", 18);
        if (!keep)
            p = http_put(p, "\r\nConnection: close", 19);
        else if (r->h.minor_version == 0)
            p = http_put(p, "\r\nConnection: keep-alive", 24);
        p = http_put(p, "\r\n\r\n", 4);
        if (!r->head_only && blen && evbuffer_copyout(r->body, p, blen) == (ev_ssize_t)blen)
            p += blen;
        c->out_len = (size_t)(p - c->out);
        http_req_release(c->srv, r);
    }
}

/* Parses every complete request head in the input (up to the queue bound) and hands each to
 * the handler; replies given synchronously are collected at once. Returns true if it stopped
 * for lack of room (queue or output full) rather than for lack of input. */
static bool http_conn_parse(struct http_conn *c)
{
    struct http_server *s = c->srv;

    for (;;) {
        if (c->closing || c->last)
            return false;
        if (c->qlen >= HTTP_PIPELINE_MAX || c->out_len - c->out_off > HTTP_OUT_HIGH)
            return true;
        if (c->need_proxy) {
            struct sockaddr_storage ss;
            int rc;
            if (c->in_len == c->in_off)
                return false;
            rc = http_proxy_parse((const uint8_t *)c->in + c->in_off, c->in_len - c->in_off, &ss);
            if (rc == -2)
                return false;
            if (rc < 0) {
                http_conn_error(c, 400, "bad PROXY header\n");
                return false;
            }
            c->in_off += (size_t)rc;
            c->need_proxy = false;
            if (ss.ss_family != AF_UNSPEC) {
                memcpy(&c->proxied, &ss, sizeof(ss));
                c->has_proxied = true;
            }
            continue;
        }

        /* Empty lines between requests are ignored (RFC 9112 2.2). */
        while (c->in_off < c->in_len) {
            size_t left = c->in_len - c->in_off;
            if (c->in[c->in_off] == '\n')
                c->in_off += 1;
            else if (left >= 2 && c->in[c->in_off] == '\r' && c->in[c->in_off + 1] == '\n')
                c->in_off += 2;
            else
                break;
            c->scan = 0;
        }
        size_t avail = c->in_len - c->in_off;
        if (avail == 0)
            return false;
        size_t lim = avail < s->max_head ? avail : s->max_head;
        const char *p = c->in + c->in_off;

        /* A long head trickling in is scanned for its end once, not re-parsed on every read;
         * a short one is parsed at once, so that garbage is refused without waiting. */
        size_t i = c->scan;
        bool ended = false;
        while (i < lim) {
            const char *nl = memchr(p + i, '\n', lim - i);
            if (!nl)
                break;
            i = (size_t)(nl - p) + 1;
            if ((i < lim && p[i] == '\n') || (i + 1 < lim && p[i] == '\r' && p[i + 1] == '\n')) {
                ended = true;
                break;
            }
        }
        if (!ended)
            c->scan = lim > 2 ? lim - 2 : 0;
        if (!ended && lim > HTTP_EAGER_PARSE) {
            if (avail >= s->max_head)
                http_conn_error(c, 431, "request head too large\n");
            return false;
        }

        struct http_request *r = http_req_get(s);
        if (!r) {
            http_conn_error(c, 503, "out of memory\n");
            return false;
        }
        int rc = http_parse_head(p, lim, s->max_headers, &r->h);
        if (rc <= 0) {
            http_req_release(s, r);
            if (rc == -2) {
                if (avail >= s->max_head)
                    http_conn_error(c, 431, "request head too large\n");
            } else if (rc == -3) {
                http_conn_error(c, 431, "too many headers\n");
            } else {
                http_conn_error(c, 400, "malformed request\n");
            }
            return false;
        }
        if (http_req_take_head(r, p, (size_t)rc) < 0) {
            http_req_release(s, r);
            http_conn_error(c, 503, "out of memory\n");
            return false;
        }
        bool ka_hdr, close_hdr;
        int status = http_conn_check_request(r, s->max_body, &ka_hdr, &close_hdr);
        if (status) {
            http_req_release(s, r);
            http_conn_error(c, status, status == 405 ? "method not allowed\n" :
                       status == 413 ? "request bodies are not accepted\n" : "bad request\n");
            return false;
        }
        if (r->body_len > 0) {
            /* The body is not all here yet: wait, and parse the head again when it is. */
            if (avail < (size_t)rc + r->body_len) {
                http_req_release(s, r);
                c->scan = 0;
                return false;
            }
            r->head_len = (size_t)rc;
            if (http_req_take_body(r, p + rc, r->body_len) < 0) {
                http_req_release(s, r);
                http_conn_error(c, 503, "out of memory\n");
                return false;
            }
            rc += (int)r->body_len;
        }
        r->head_len = (size_t)rc - r->body_len;
        http_req_terminate(r);
        c->in_off += (size_t)rc;
        c->scan = 0;
        c->nreq++;

        memcpy(&r->peer, &c->peer, sizeof(r->peer));
        if (c->has_proxied) {
            memcpy(&r->proxied, &c->proxied, sizeof(r->proxied));
            r->has_proxied = true;
        }
        r->keep_alive = r->h.minor_version == 1 ? !close_hdr : (ka_hdr && !close_hdr);
        if (s->lim.max_requests_per_conn && c->nreq >= s->lim.max_requests_per_conn)
            r->keep_alive = false;
        if (s->stopping)
            r->keep_alive = false;
        if (!r->keep_alive) {
            c->last = true;
            if (c->in_off < c->in_len)
                c->linger_wanted = true; /* the client sent more than we will read */
        }
        http_conn_enqueue(c, r);
        s->npending++;
        s->handler(r, s->handler_arg);
        http_conn_collect(c);
    }
}

/* Sends queued output; on a full socket buffer waits for EV_WRITE. Returns bytes sent. */
static size_t http_conn_write(struct http_conn *c)
{
    size_t sent = 0;
    /* The final reply of a connection that closes (or shuts down for writing) right after it:
     * MSG_MORE holds the last segment, so the close()'s FIN leaves in the same packet as the
     * reply, one packet (and one delivery to the client) fewer per connection. Not after a
     * timeout (no_linger): input may have arrived since, and a close with unread input sends a
     * reset that would discard the held reply. */
    int flags = MSG_NOSIGNAL;
    if (c->qlen == 0 && (c->eof || (c->last && !c->no_linger)))
        flags |= MSG_MORE;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, flags);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->sent_total += (uint64_t)n;
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->writing = true;
            event_add(c->wev, NULL);
            return sent;
        }
        c->closing = true; /* EPIPE, ECONNRESET: the client is gone */
        return sent;
    }
    c->out_off = c->out_len = 0;
    return sent;
}

static uint64_t http_now_us(struct http_conn *c)
{
    struct timeval now;
    if (event_base_gettimeofday_cached(c->srv->base, &now) < 0)
        return 0;
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_usec;
}

/* Keep-alive goes idle -> busy -> idle once per request. Rather than deleting and re-adding
 * the idle timer each time (two libevent calls, ~600 instructions a request), the timer stays
 * pending while the request is served, and going idle again only notes the time: when the old
 * timer fires, http_conn_on_timer re-arms it for what is left of the new idle period. */
static void http_conn_set_timer(struct http_conn *c, enum http_timer t, bool rearm)
{
    const struct timeval *tv = NULL;
    if (t == c->timer && !rearm)
        return;
    if (t == HTTP_T_IDLE)
        c->idle_since_us = http_now_us(c);
    if (c->idle_armed && ((t == HTTP_T_NONE && c->timer == HTTP_T_IDLE) ||
                          (t == HTTP_T_IDLE && c->timer == HTTP_T_NONE))) {
        c->timer = t; /* the pending idle timer is checked when it fires */
        return;
    }
    c->idle_armed = t == HTTP_T_IDLE && c->srv->tv_idle;
    c->timer = t;
    switch (t) {
    case HTTP_T_HEAD:   tv = c->srv->tv_head; break;
    case HTTP_T_IDLE:   tv = c->srv->tv_idle; break;
    case HTTP_T_WRITE:  tv = c->srv->tv_write; break;
    case HTTP_T_LINGER: tv = c->srv->tv_linger; break;
    case HTTP_T_DRAIN:  tv = c->srv->tv_linger; break;
    case HTTP_T_NONE:   break;
    }
    if (tv)
        event_add(c->tmo, tv);
    else
        event_del(c->tmo);
}

static void http_conn_set_reading(struct http_conn *c, bool on)
{
    if (on == c->reading)
        return;
    c->reading = on;
    if (on)
        event_add(c->rev, NULL);
    else
        event_del(c->rev);
}

/* After a connection's callback: read only while the client keeps up (back-pressure) and
 * the pipeline has room, and keep the one timer that fits the state. */
static void http_conn_update(struct http_conn *c)
{
    if (c->linger) {
        http_conn_set_reading(c, true);
        http_conn_set_timer(c, HTTP_T_LINGER, false);
        return;
    }
    http_conn_set_reading(c, !c->last && !c->eof && !c->writing && c->qlen < HTTP_PIPELINE_MAX &&
                        c->out_len - c->out_off <= HTTP_OUT_HIGH);
    if (c->writing) {
        /* The deadline is for the output queued when it was set: progress does not re-arm it
         * (a client reading a byte now and then would hold its buffers forever). Once all of
         * that is sent, a new deadline covers what is queued then. */
        if (c->timer != HTTP_T_WRITE || c->sent_total >= c->write_mark) {
            c->write_mark = c->sent_total + (c->out_len - c->out_off);
            http_conn_set_timer(c, HTTP_T_WRITE, true);
        }
    } else if (c->qlen > 0 || c->last || c->eof)
        http_conn_set_timer(c, HTTP_T_NONE, false);
    else if (c->srv->stopping)
        http_conn_set_timer(c, HTTP_T_DRAIN, false);
    else if (c->in_len > c->in_off || c->nreq == 0 || c->need_proxy)
        http_conn_set_timer(c, HTTP_T_HEAD, false);
    else
        http_conn_set_timer(c, HTTP_T_IDLE, false);
}

/* Counts c's output buffer in the server's total while output waits for the client (a client
 * that keeps up is never counted), and frees a large buffer once it is empty. -1 if holding it
 * would take the total past max_output_bytes: the caller closes c. Closing the connection that
 * needs more, rather than pausing it, is what bounds memory: a paused slow reader would keep
 * what it holds, and each new one would add to it. */
static int http_conn_account(struct http_conn *c)
{
    struct http_server *s = c->srv;
    size_t want = 0;

    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > HTTP_OUT_KEEP) {
            http_out_free(c->out, c->out_cap);
            c->out = NULL;
            c->out_cap = 0;
        }
    } else {
        want = c->out_cap;
    }
    if (want > c->held && s->lim.max_output_bytes &&
        s->out_held - c->held + want > s->lim.max_output_bytes)
        return -1;
    s->out_held = s->out_held - c->held + want;
    c->held = want;
    return 0;
}

/* Everything a connection does after an event: parse, collect, write, and close when done.
 * Frees c when it closes: the caller must not touch c afterwards. */
static void http_conn_run(struct http_conn *c)
{
    bool stalled;

    c->in_cb = true;
    for (;;) {
        stalled = http_conn_parse(c);
        if (c->closing)
            break;
        http_conn_collect(c);
        if (c->closing)
            break;
        if (c->out_off < c->out_len && !c->writing) {
            http_conn_write(c);
            if (c->closing)
                break;
        }
        if (c->qlen == 0 && c->out_off == c->out_len && (c->last || c->eof)) {
            /* Everything answered. Close, or first linger if unread input may remain: closing
             * with unread data sends a reset, which can destroy our reply in flight. */
            if (c->eof || !c->linger_wanted || c->no_linger) {
                c->closing = true;
                break;
            }
            shutdown(c->fd, SHUT_WR);
            c->linger = true;
            c->in_off = c->in_len = 0;
            break;
        }
        /* Parsing stopped for room (queue or output full) and the write made room: go on. */
        if (!stalled || c->writing || c->qlen >= HTTP_PIPELINE_MAX ||
            c->out_len - c->out_off > HTTP_OUT_HIGH)
            break;
    }
    c->in_cb = false;
    if (!c->closing && http_conn_account(c) < 0) {
        c->srv->slow_closes++;
        c->closing = c->reset = true;
    }
    if (c->closing) {
        http_conn_free(c);
        return;
    }
    http_conn_update(c);
}

/* Reads once into the input buffer (level-triggered: more data wakes us again). */
static void http_conn_read(struct http_conn *c)
{
    struct http_server *s = c->srv;
    ssize_t n;

    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap * 2 : HTTP_IN_INITIAL;
        if (cap > s->in_max)
            cap = s->in_max;
        if (cap <= c->in_cap)
            return; /* full: the parser has already answered 431 */
        char *b = realloc(c->in, cap);
        if (!b) {
            c->closing = true;
            return;
        }
        c->in = b;
        c->in_cap = cap;
    }
    n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
    } else if (n == 0) {
        c->eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        c->closing = true; /* ECONNRESET: pending requests are orphaned */
    }
}

static void http_conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->linger) {
        char drop[4096];
        ssize_t n = recv(c->fd, drop, sizeof(drop), 0);
        if (n > 0)
            c->lingered += (size_t)n;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
            c->lingered > HTTP_LINGER_BYTES)
            http_conn_free(c);
        return;
    }
    http_conn_read(c);
    http_conn_run(c);
}

static void http_conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    c->writing = false;
    c->flush_scheduled = false;
    http_conn_run(c);
}

static void http_conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->idle_armed) {
        c->idle_armed = false;
        if (c->timer == HTTP_T_NONE)
            return; /* an idle timer left pending while a request is served (set_timer) */
        /* c->timer is HTTP_T_IDLE: the idle period may have begun after this timer was set. */
        uint64_t idle_us = (uint64_t)c->srv->lim.idle_timeout_ms * 1000u, now = http_now_us(c);
        uint64_t idle_for = now > c->idle_since_us ? now - c->idle_since_us : 0;
        if (idle_for + 1000 < idle_us) {
            uint64_t left = idle_us - idle_for;
            struct timeval tv = { (time_t)(left / 1000000u), (suseconds_t)(left % 1000000u) };
            c->idle_armed = true;
            event_add(c->tmo, &tv);
            return;
        }
    }
    if ((c->timer == HTTP_T_HEAD || c->timer == HTTP_T_DRAIN) && c->in_len > c->in_off && c->qlen == 0) {
        /* A head started but did not finish in time (slowloris): say so, then close. */
        c->timer = HTTP_T_NONE;
        http_conn_error(c, 408, "request head timeout\n");
        c->no_linger = true;
        http_conn_run(c);
        return;
    }
    if (c->timer == HTTP_T_WRITE) {
        c->srv->slow_closes++;
        c->reset = true;
    }
    http_conn_free(c); /* idle, stalled writes, the end of lingering, an empty first head */
}

/* ------------------------------------------------------------------------------------------ */
/* The server: accepting, limits, shutdown */

static void http_server_set_accepting(struct http_server *s)
{
    bool on = !s->stopping && !s->paused_full && !s->paused_err;
    for (unsigned i = 0; i < s->nlev; i++) {
        if (on)
            evconnlistener_enable(s->lev[i]);
        else
            evconnlistener_disable(s->lev[i]);
    }
}

/* Closes c now: pending requests become orphans, replied ones are dropped. */
static void http_conn_free(struct http_conn *c)
{
    struct http_server *s = c->srv;
    struct http_request *r, *next;

    event_del(c->rev);
    event_del(c->wev);
    event_del(c->tmo);
    if (c->reset) {
        /* A slow reader: a plain close would leave its unsent output in the kernel (an orphan
         * socket retrying for minutes); a reset frees it now. */
        struct linger lg = { 1, 0 };
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    s->out_held -= c->held;
    c->held = 0;
    for (r = c->qhead; r; r = next) {
        next = r->next;
        r->conn = NULL;
        if (r->replied)
            http_req_release(s, r);
        else
            http_orphan_link(s, r);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    if (s->paused_full && (!s->lim.max_connections || s->nconns < s->lim.max_connections)) {
        s->paused_full = false;
        http_server_set_accepting(s);
    }

    if (s->nfree_conns < HTTP_CONN_CACHE && c->in_cap <= HTTP_IN_INITIAL && c->out_cap <= 4096) {
        c->next = s->free_conns;
        s->free_conns = c;
        s->nfree_conns++;
        return;
    }
    free(c->in);
    http_out_free(c->out, c->out_cap);
    free(c);
}

static struct http_conn *http_conn_new(struct http_server *s, evutil_socket_t fd)
{
    struct http_conn *c = s->free_conns;
    char *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;

    if (c) {
        s->free_conns = c->next;
        s->nfree_conns--;
        in = c->in;
        in_cap = c->in_cap;
        out = c->out;
        out_cap = c->out_cap;
    } else {
        /* The connection and its three events in one allocation. */
        size_t head = (sizeof(*c) + 15) & ~(size_t)15;
        c = malloc(head + 3 * s->event_size);
        if (!c)
            return NULL;
        c->rev = (struct event *)((char *)c + head);
        c->wev = (struct event *)((char *)c + head + s->event_size);
        c->tmo = (struct event *)((char *)c + head + 2 * s->event_size);
    }
    struct event *rev = c->rev, *wev = c->wev, *tmo = c->tmo;
    memset(c, 0, sizeof(*c));
    c->rev = rev;
    c->wev = wev;
    c->tmo = tmo;
    c->in = in;
    c->in_cap = in_cap;
    c->out = out;
    c->out_cap = out_cap;
    c->srv = s;
    c->fd = fd;
    c->timer = HTTP_T_NONE;
    event_assign(c->rev, s->base, fd, EV_READ | EV_PERSIST, http_conn_on_read, c);
    event_assign(c->wev, s->base, fd, EV_WRITE, http_conn_on_write, c);
    event_assign(c->tmo, s->base, -1, 0, http_conn_on_timer, c);
    return c;
}

static void http_server_on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                             int salen, void *arg)
{
    struct http_server *s = arg;
    struct http_conn *c;
    (void)lev;

    if (s->stopping || !(c = http_conn_new(s, fd))) {
        close(fd);
        return;
    }
    if (salen > 0 && (size_t)salen <= sizeof(c->peer))
        memcpy(&c->peer, sa, (size_t)salen);
    c->need_proxy = s->lim.proxy_protocol && s->trusted &&
                    s->trusted((const struct sockaddr *)&c->peer, s->trust_arg);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (s->lim.max_connections && s->nconns >= s->lim.max_connections && !s->paused_full) {
        s->paused_full = true;
        http_server_set_accepting(s);
    }
    /* Clients send their request right after connecting, so it is usually here already:
     * reading now saves a loop round, and for "Connection: close" the epoll registration. */
    http_conn_read(c);
    http_conn_run(c);
}

static void http_server_on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    s->paused_err = false;
    http_server_set_accepting(s);
}

static void http_server_on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct http_server *s = arg;
    struct timeval tv = { 0, HTTP_ACCEPT_PAUSE_MS * 1000 };
    int e = EVUTIL_SOCKET_ERROR();
    (void)lev;
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM)
        return; /* ECONNABORTED and the like: nothing to wait for */
    /* Out of descriptors: a level-triggered listener would spin; pause accepting briefly. */
    s->paused_err = true;
    http_server_set_accepting(s);
    evtimer_add(s->resume, &tv);
}

struct http_server *http_server_new(struct event_base *base, const struct http_limits *lim,
                                    http_handler *handler, void *handler_arg,
                                    http_trust_fn *trusted, void *trust_arg)
{
    struct http_server *s;
    struct timeval tv;

    if (!base || !lim || !handler)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base = base;
    s->lim = *lim;
    s->handler = handler;
    s->handler_arg = handler_arg;
    s->trusted = trusted;
    s->trust_arg = trust_arg;
    s->max_head = lim->max_head_bytes ? lim->max_head_bytes : HTTP_DEFAULT_HEAD_BYTES;
    if (s->max_head > HTTP_MAX_HEAD_BYTES)
        s->max_head = HTTP_MAX_HEAD_BYTES;
    s->max_headers = lim->max_headers && lim->max_headers < HTTP_HEAD_SLOTS ? lim->max_headers
                                                                            : HTTP_HEAD_SLOTS;
    s->in_max = s->max_head > HTTP_PROXY_MAX ? s->max_head : HTTP_PROXY_MAX;
    s->max_body = lim->max_body_bytes;
    s->in_max += s->max_body;
    s->event_size = (event_get_struct_event_size() + 15) & ~(size_t)15;

    /* Common timeouts: every connection's timer of one kind shares a queue (O(1) re-arm). */
    if (lim->head_timeout_ms) {
        tv.tv_sec = lim->head_timeout_ms / 1000;
        tv.tv_usec = (lim->head_timeout_ms % 1000) * 1000;
        s->tv_head = event_base_init_common_timeout(base, &tv);
    }
    if (lim->idle_timeout_ms) {
        tv.tv_sec = lim->idle_timeout_ms / 1000;
        tv.tv_usec = (lim->idle_timeout_ms % 1000) * 1000;
        s->tv_idle = event_base_init_common_timeout(base, &tv);
    }
    s->tv_write = s->tv_idle;
    if (lim->write_timeout_ms) {
        tv.tv_sec = lim->write_timeout_ms / 1000;
        tv.tv_usec = (lim->write_timeout_ms % 1000) * 1000;
        s->tv_write = event_base_init_common_timeout(base, &tv);
    }
    tv.tv_sec = HTTP_LINGER_MS / 1000;
    tv.tv_usec = (HTTP_LINGER_MS % 1000) * 1000;
    s->tv_linger = event_base_init_common_timeout(base, &tv);
    s->resume = evtimer_new(base, http_server_on_resume, s);
    if ((lim->head_timeout_ms && !s->tv_head) || (lim->idle_timeout_ms && !s->tv_idle) ||
        (lim->write_timeout_ms && !s->tv_write) || !s->tv_linger || !s->resume) {
        if (s->resume)
            event_free(s->resume);
        free(s);
        return NULL;
    }
    return s;
}

int http_server_listen(struct http_server *s, int fd)
{
    struct evconnlistener *lev;
    int one = 1, dfd;

    if (s->stopping || s->nlev >= HTTP_MAX_LISTENERS)
        return -1;
    dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -1;
    if (evutil_make_socket_nonblocking(dfd) < 0) {
        close(dfd);
        return -1;
    }
    /* Accepted sockets inherit TCP_NODELAY on Linux: no setsockopt per connection. Each reply
     * batch is one send(), so Nagle would only delay pipelined replies. Fails harmlessly on
     * non-TCP sockets. */
    (void)setsockopt(dfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Backlog 0: the socket already listens (the master's backlog); -1 would shrink it to 128. */
    lev = evconnlistener_new(s->base, http_server_on_accept, s,
                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, dfd);
    if (!lev) {
        close(dfd);
        return -1;
    }
    evconnlistener_set_error_cb(lev, http_server_on_accept_error);
    s->lev[s->nlev++] = lev;
    if (s->paused_full || s->paused_err)
        evconnlistener_disable(lev);
    return 0;
}

void http_server_stop_accepting(struct http_server *s)
{
    struct http_conn *c, *next;

    if (s->stopping)
        return;
    s->stopping = true;
    for (unsigned i = 0; i < s->nlev; i++)
        evconnlistener_free(s->lev[i]);
    s->nlev = 0;
    event_del(s->resume);
    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->linger)
            continue;
        if (c->qlen == 0 && c->out_off == c->out_len) {
            /* Idle, or a head on its way. Closing now would drop a request the client has
             * already sent (or is sending on a connection just accepted): give it a short
             * grace to arrive. Its reply then says "Connection: close" (s->stopping). */
            if (!c->in_cb)
                http_conn_update(c);
            continue;
        }
        c->last = true;
        if (c->qtail)
            c->qtail->keep_alive = false;
        if (!c->in_cb)
            http_conn_update(c); /* answer what is queued, then close */
    }
}

unsigned http_server_connections(const struct http_server *s)
{
    return s->nconns;
}

unsigned http_server_pending(const struct http_server *s)
{
    return s->npending;
}

size_t http_server_output_bytes(const struct http_server *s)
{
    return s->out_held;
}

uint64_t http_server_slow_closes(const struct http_server *s)
{
    return s->slow_closes;
}

void http_server_free(struct http_server *s)
{
    struct http_request *r, *rnext;
    struct http_conn *c, *cnext;

    if (!s)
        return;
    for (unsigned i = 0; i < s->nlev; i++)
        evconnlistener_free(s->lev[i]);
    s->nlev = 0;
    s->stopping = true;
    while (s->conns)
        http_conn_free(s->conns);
    /* Requests still with the handler outlive the server: http_reply() then only frees. */
    for (r = s->orphans; r; r = rnext) {
        rnext = r->next;
        r->srv = NULL;
        r->next = r->prev = NULL;
    }
    for (r = s->free_reqs; r; r = rnext) {
        rnext = r->next;
        http_req_destroy(r);
    }
    for (c = s->free_conns; c; c = cnext) {
        cnext = c->next;
        free(c->in);
        http_out_free(c->out, c->out_cap);
        free(c);
    }
    event_free(s->resume);
    free(s);
}
