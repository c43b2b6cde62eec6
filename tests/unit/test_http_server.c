/* Tests of lib/http.c's server: a real http_server on an event_base with a loopback listener,
 * driven by plain client sockets in the same thread (the test pumps the loop while it waits).
 * Covers pipelining order with out-of-order asynchronous replies, keep-alive, every limit and
 * timeout, PROXY v1/v2 from trusted and untrusted peers, clients that vanish before their
 * reply, back-pressure, stop_accepting and freeing with requests pending. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/http.h"

#define MAX_HELD 256

enum mode { MODE_SYNC, MODE_DELAY, MODE_HOLD, MODE_BIG };

struct ctx {
    struct event_base *base;
    struct http_server *srv;
    struct http_limits lim;
    int lfd;
    uint16_t port;
    enum mode mode;
    bool trust;                       /* what the trust callback answers */
    unsigned calls;                   /* handler invocations */
    struct http_request *held[MAX_HELD];
    unsigned nheld;
    size_t big_len;                   /* MODE_BIG body size */
};

struct client {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
};

struct resp {
    int status;
    char head[1024];
    char body[8192];
    size_t body_len;
    size_t content_length;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the handler ---- */

static void write_echo(struct http_request *r)
{
    size_t plen, qlen;
    const char *path = http_request_path(r, &plen);
    const char *query = http_request_query(r, &qlen);
    struct evbuffer *b = http_reply_body(r);
    evbuffer_add_printf(b, "path=%.*s query=%.*s", (int)plen, path, (int)qlen, query);
    const struct sockaddr *src = http_request_proxied(r);
    if (src) {
        char ip[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (src->sa_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)src;
            inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
            port = ntohs(sin->sin_port);
        } else if (src->sa_family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)src;
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
            port = ntohs(sin6->sin6_port);
        }
        evbuffer_add_printf(b, " src=%s:%u", ip, port);
    }
    size_t ulen;
    const char *ua = http_request_header(r, "user-agent", &ulen);
    if (ua)
        evbuffer_add_printf(b, " ua=%.*s", (int)ulen, ua);
}

static void on_delayed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_request *r = arg;
    write_echo(r);
    http_reply(r, 200, "text/plain");
}

static void handler(struct http_request *r, void *arg)
{
    struct ctx *x = arg;
    x->calls++;
    /* The returned strings are NUL-terminated copies: check that on every request. */
    size_t plen, qlen;
    const char *path = http_request_path(r, &plen);
    const char *query = http_request_query(r, &qlen);
    assert_int_equal(strlen(path), plen);
    assert_int_equal(strlen(query), qlen);
    const struct sockaddr *peer = http_request_peer(r);
    assert_int_equal(peer->sa_family, AF_INET);

    switch (x->mode) {
    case MODE_SYNC:
        write_echo(r);
        http_reply(r, plen == 9 && memcmp(path, "/notfound", 9) == 0 ? 404 : 200, "text/plain");
        break;
    case MODE_DELAY: {
        /* "d=NN" in the query: reply after NN ms */
        const char *d = strstr(query, "d=");
        struct timeval tv = { 0, (d ? atoi(d + 2) : 0) * 1000 };
        assert_int_equal(event_base_once(x->base, -1, EV_TIMEOUT, on_delayed, r, &tv), 0);
        break;
    }
    case MODE_HOLD:
        assert_true(x->nheld < MAX_HELD);
        x->held[x->nheld++] = r;
        break;
    case MODE_BIG: {
        struct evbuffer *b = http_reply_body(r);
        char chunk[1024];
        if (plen == 6 && memcmp(path, "/small", 6) == 0) {
            evbuffer_add(b, "small", 5);
            http_reply(r, 200, "text/plain");
            break;
        }
        memset(chunk, 'b', sizeof(chunk));
        for (size_t n = 0; n < x->big_len; n += sizeof(chunk))
            evbuffer_add(b, chunk, x->big_len - n < sizeof(chunk) ? x->big_len - n : sizeof(chunk));
        http_reply(r, 200, "application/octet-stream");
        break;
    }
    }
}

static bool trust_cb(const struct sockaddr *peer, void *arg)
{
    struct ctx *x = arg;
    assert_int_equal(peer->sa_family, AF_INET);
    return x->trust;
}

/* ---- fixture ---- */

static struct http_limits default_limits(void)
{
    struct http_limits lim = {
        .max_head_bytes = 4096,
        .max_headers = 32,
        .head_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .max_connections = 100,
        .max_requests_per_conn = 1000,
        .proxy_protocol = false,
    };
    return lim;
}

static void start(struct ctx *x, const struct http_limits *lim, enum mode mode)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    memset(x, 0, sizeof(*x));
    x->lim = *lim;
    x->mode = mode;
    x->base = event_base_new();
    assert_non_null(x->base);
    x->srv = http_server_new(x->base, lim, handler, x, trust_cb, x);
    assert_non_null(x->srv);

    x->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(x->lfd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(x->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(x->lfd, 64), 0);
    assert_int_equal(getsockname(x->lfd, (struct sockaddr *)&sin, &sl), 0);
    x->port = ntohs(sin.sin_port);
    assert_int_equal(http_server_listen(x->srv, x->lfd), 0);
}

static void stop(struct ctx *x)
{
    http_server_free(x->srv);
    close(x->lfd);
    event_base_free(x->base);
}

static void pump(struct ctx *x, int ms)
{
    int64_t end = now_ms() + ms;
    do {
        event_base_loop(x->base, EVLOOP_NONBLOCK);
        poll(NULL, 0, 1);
    } while (now_ms() < end);
    event_base_loop(x->base, EVLOOP_NONBLOCK);
}

static void client_open(struct ctx *x, struct client *c)
{
    struct sockaddr_in sin;
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(x->port);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    assert_non_null(c->buf);
}

/* A client with a small receive buffer and segment size: the server's socket buffer stays
 * small (on loopback, with the 64 KiB MSS, it grows to megabytes), so its output backs up. */
static void client_open_small(struct ctx *x, struct client *c)
{
    struct sockaddr_in sin;
    int rcv = 4096, mss = 536;
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
    assert_int_equal(setsockopt(c->fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss)), 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(x->port);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    assert_non_null(c->buf);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

/* Closes with a reset (SO_LINGER 0) instead of a FIN. */
static void client_reset(struct client *c)
{
    struct linger lg = { 1, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    client_close(c);
}

static void client_send(struct client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void client_sends(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Reads what is there without blocking. */
static void client_poll(struct client *c)
{
    for (;;) {
        if (c->len == c->cap) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            assert_non_null(c->buf);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            c->eof = true;
        return;
    }
}

/* Takes one complete response off the front of c->buf; false if none is complete yet. */
static bool client_take(struct client *c, struct resp *r)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t hl = (size_t)(end - c->buf) + 4;
    assert_true(hl < sizeof(r->head));
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    const char *cl = strstr(r->head, "\r\nContent-Length: ");
    assert_non_null(cl);
    r->content_length = strtoul(cl + 18, NULL, 10);
    size_t bl = r->content_length;
    if (c->len < hl + bl)
        return false;
    r->body_len = bl;
    memcpy(r->body, c->buf + hl, bl < sizeof(r->body) - 1 ? bl : sizeof(r->body) - 1);
    r->body[bl < sizeof(r->body) - 1 ? bl : sizeof(r->body) - 1] = '\0';
    memmove(c->buf, c->buf + hl + bl, c->len - hl - bl);
    c->len -= hl + bl;
    return true;
}

/* Pumps the loop until n responses arrived (or EOF, or timeout); returns how many. */
static int client_read(struct ctx *x, struct client *c, struct resp *out, int n, int timeout_ms)
{
    int got = 0;
    int64_t end = now_ms() + timeout_ms;
    while (got < n) {
        event_base_loop(x->base, EVLOOP_NONBLOCK);
        client_poll(c);
        while (got < n && client_take(c, &out[got]))
            got++;
        if (got == n || c->eof || now_ms() > end)
            break;
        struct pollfd pfd = { c->fd, POLLIN, 0 };
        poll(&pfd, 1, 1);
    }
    return got;
}

/* Pumps until the server closes c (true) or timeout (false). */
static bool client_wait_eof(struct ctx *x, struct client *c, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (!c->eof && now_ms() <= end) {
        event_base_loop(x->base, EVLOOP_NONBLOCK);
        client_poll(c);
        if (!c->eof) {
            struct pollfd pfd = { c->fd, POLLIN, 0 };
            poll(&pfd, 1, 1);
        }
    }
    return c->eof;
}

static bool has_header(const struct resp *r, const char *line)
{
    return strstr(r->head, line) != NULL;
}

/* ---- tests ---- */

static void test_http_server_keep_alive(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[2];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);

    client_sends(&c, "GET /announce?a=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: test/1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, r, 1, 2000), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "path=/announce query=a=1 ua=test/1");
    assert_true(has_header(&r[0], "\r\nContent-Type: text/plain\r\n"));
    assert_false(has_header(&r[0], "Connection:"));
    assert_int_equal(http_server_connections(x.srv), 1);

    client_sends(&c, "GET /notfound HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[1], 1, 2000), 1);
    assert_int_equal(r[1].status, 404);
    assert_true(has_header(&r[1], "HTTP/1.1 404 Not Found\r\n"));
    assert_string_equal(r[1].body, "path=/notfound query=");
    assert_false(c.eof);
    assert_int_equal(x.calls, 2);
    assert_int_equal(http_server_pending(x.srv), 0);

    client_close(&c);
    pump(&x, 20);
    assert_int_equal(http_server_connections(x.srv), 0);
    stop(&x);
}

static void test_http_server_pipelining_async_out_of_order(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[5];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_DELAY);
    client_open(&x, &c);

    /* Five requests in one segment; the first answers last. */
    client_sends(&c, "GET /1?d=400 HTTP/1.1\r\n\r\n"
                     "GET /2?d=300 HTTP/1.1\r\n\r\n"
                     "GET /3?d=5 HTTP/1.1\r\n\r\n"
                     "GET /4?d=200 HTTP/1.1\r\n\r\n"
                     "GET /5?d=0 HTTP/1.1\r\n\r\n");
    pump(&x, 30);
    assert_int_equal(x.calls, 5);
    assert_int_equal(http_server_pending(x.srv), 3); /* /3 and /5 replied, waiting for /1 */
    client_poll(&c);
    assert_int_equal(c.len, 0);                     /* nothing may overtake /1 */

    assert_int_equal(client_read(&x, &c, r, 5, 3000), 5);
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof(want), "path=/%d query=d=", i + 1);
        assert_int_equal(r[i].status, 200);
        assert_memory_equal(r[i].body, want, strlen(want));
    }
    assert_int_equal(http_server_pending(x.srv), 0);
    client_close(&c);
    stop(&x);
}

static void test_http_server_pipelining_deep(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    static struct resp r[40];
    struct http_limits lim = default_limits();

    /* more requests than the per-connection queue holds, both sync and async */
    for (int m = 0; m < 2; m++) {
        start(&x, &lim, m == 0 ? MODE_SYNC : MODE_DELAY);
        client_open(&x, &c);
        char all[4096];
        size_t n = 0;
        for (int i = 0; i < 40; i++)
            n += (size_t)snprintf(all + n, sizeof(all) - n, "GET /%d?d=%d HTTP/1.1\r\nHost: h\r\n\r\n",
                                  i, (i * 7) % 11);
        client_send(&c, all, n);
        assert_int_equal(client_read(&x, &c, r, 40, 5000), 40);
        for (int i = 0; i < 40; i++) {
            char want[64];
            snprintf(want, sizeof(want), "path=/%d query=d=%d", i, (i * 7) % 11);
            assert_string_equal(r[i].body, want);
        }
        assert_int_equal(x.calls, 40);
        client_close(&c);
        stop(&x);
    }
}

static void test_http_server_byte_at_a_time(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[2];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    const char *req = "GET /slow?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    for (size_t i = 0; req[i]; i++) {
        client_send(&c, req + i, 1);
        pump(&x, 0);
    }
    assert_int_equal(client_read(&x, &c, r, 2, 2000), 2);
    assert_string_equal(r[0].body, "path=/slow query=x=1");
    assert_string_equal(r[1].body, "path=/b query=");
    client_close(&c);
    stop(&x);
}

static void test_http_server_oversized_head_431(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.max_head_bytes = 1024;
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    char big[3000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX-Big: ", 23);
    client_send(&c, big, sizeof(big));
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 431);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    assert_true(client_wait_eof(&x, &c, 3000));
    assert_int_equal(x.calls, 0);
    assert_int_equal(http_server_connections(x.srv), 1); /* lingering: waits for our close */
    client_close(&c);
    pump(&x, 20);
    assert_int_equal(http_server_connections(x.srv), 0);

    /* a head of exactly the limit is fine */
    client_open(&x, &c);
    char exact[1024];
    memset(exact, 'a', sizeof(exact));
    memcpy(exact, "GET / HTTP/1.1\r\nX: ", 19);
    memcpy(exact + sizeof(exact) - 4, "\r\n\r\n", 4);
    client_send(&c, exact, sizeof(exact));
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 200);
    client_close(&c);
    stop(&x);
}

static void test_http_server_too_many_headers_431(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.max_headers = 3;
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    client_sends(&c, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 431);
    assert_true(client_wait_eof(&x, &c, 3000));
    client_close(&c);

    client_open(&x, &c);
    client_sends(&c, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 200);
    client_close(&c);
    stop(&x);
}

static void test_http_server_head_timeout(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.head_timeout_ms = 150;
    lim.idle_timeout_ms = 10000;
    start(&x, &lim, MODE_SYNC);

    /* slowloris: a partial head, then a byte now and then */
    client_open(&x, &c);
    int64_t t0 = now_ms();
    client_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\n");
    pump(&x, 60);
    client_sends(&c, "X");
    pump(&x, 60);
    client_sends(&c, "Y");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 408);
    assert_true(client_wait_eof(&x, &c, 2000));
    int64_t dt = now_ms() - t0;
    assert_true(dt >= 140 && dt < 1000);
    client_close(&c);

    /* a connection that never sends anything is closed after the head timeout too */
    client_open(&x, &c);
    t0 = now_ms();
    assert_true(client_wait_eof(&x, &c, 2000));
    dt = now_ms() - t0;
    assert_true(dt >= 140 && dt < 1000);
    assert_int_equal(c.len, 0);
    client_close(&c);

    /* the head timer restarts with each request on a keep-alive connection */
    client_open(&x, &c);
    for (int i = 0; i < 3; i++) {
        pump(&x, 60);
        client_sends(&c, "GET / HTTP/1.1\r\n\r\n");
        assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
        assert_int_equal(r.status, 200);
    }
    client_close(&c);
    stop(&x);
}

static void test_http_server_idle_timeout(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.idle_timeout_ms = 120;
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    client_sends(&c, "GET / HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    int64_t t0 = now_ms();
    assert_true(client_wait_eof(&x, &c, 2000));
    int64_t dt = now_ms() - t0;
    assert_true(dt >= 100 && dt < 1000);
    assert_int_equal(c.len, 0); /* closed silently */
    pump(&x, 5);
    assert_int_equal(http_server_connections(x.srv), 0);
    client_close(&c);
    stop(&x);
}

static void test_http_server_max_requests_per_conn(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[3];
    struct http_limits lim = default_limits();
    lim.max_requests_per_conn = 3;
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    for (int i = 0; i < 3; i++) {
        client_sends(&c, "GET /x HTTP/1.1\r\n\r\n");
        assert_int_equal(client_read(&x, &c, &r[i], 1, 2000), 1);
        assert_int_equal(r[i].status, 200);
    }
    assert_false(has_header(&r[0], "Connection: close"));
    assert_false(has_header(&r[1], "Connection: close"));
    assert_true(has_header(&r[2], "\r\nConnection: close\r\n"));
    assert_true(client_wait_eof(&x, &c, 2000));
    client_close(&c);
    stop(&x);
}

static void test_http_server_max_connections(void **state)
{
    (void)state;
    struct ctx x;
    struct client c[3];
    struct resp r;
    struct http_limits lim = default_limits();
    lim.max_connections = 2;
    start(&x, &lim, MODE_SYNC);
    for (int i = 0; i < 3; i++) {
        client_open(&x, &c[i]);
        pump(&x, 10);
    }
    for (int i = 0; i < 3; i++)
        client_sends(&c[i], "GET /m HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c[0], &r, 1, 2000), 1);
    assert_int_equal(client_read(&x, &c[1], &r, 1, 2000), 1);
    assert_int_equal(http_server_connections(x.srv), 2);
    /* the third waits in the backlog */
    assert_int_equal(client_read(&x, &c[2], &r, 1, 200), 0);
    assert_false(c[2].eof);
    assert_int_equal(http_server_connections(x.srv), 2);
    assert_int_equal(x.calls, 2);

    client_close(&c[0]);
    assert_int_equal(client_read(&x, &c[2], &r, 1, 2000), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(http_server_connections(x.srv), 2);
    client_close(&c[1]);
    client_close(&c[2]);
    pump(&x, 20);
    assert_int_equal(http_server_connections(x.srv), 0);
    stop(&x);
}

static void test_http_server_client_reset_before_reply(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_HOLD);
    client_open(&x, &c);
    client_sends(&c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    pump(&x, 20);
    assert_int_equal(x.nheld, 2);
    assert_int_equal(http_server_pending(x.srv), 2);
    client_reset(&c);
    pump(&x, 20);
    assert_int_equal(http_server_connections(x.srv), 0);
    assert_int_equal(http_server_pending(x.srv), 2); /* still with the handler */

    /* the requests stay readable until replied; replying only frees them */
    size_t len;
    assert_string_equal(http_request_path(x.held[1], &len), "/b");
    evbuffer_add(http_reply_body(x.held[1]), "late", 4);
    http_reply(x.held[1], 200, "text/plain");
    http_reply(x.held[0], 500, NULL);
    assert_int_equal(http_server_pending(x.srv), 0);
    pump(&x, 10);
    assert_int_equal(x.calls, 2);
    stop(&x);
}

static void test_http_server_client_close_before_reply(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_HOLD);
    client_open(&x, &c);
    client_sends(&c, "GET /a HTTP/1.1\r\n\r\n");
    pump(&x, 20);
    assert_int_equal(x.nheld, 1);
    client_close(&c); /* a FIN: the server answers what it has, then closes */
    pump(&x, 20);
    evbuffer_add(http_reply_body(x.held[0]), "late", 4);
    http_reply(x.held[0], 200, "text/plain");
    pump(&x, 50);
    assert_int_equal(http_server_connections(x.srv), 0);
    assert_int_equal(http_server_pending(x.srv), 0);
    assert_int_equal(x.calls, 1);
    stop(&x);
}

static void test_http_server_half_close_still_answered(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[2];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_DELAY);
    client_open(&x, &c);
    client_sends(&c, "GET /a?d=30 HTTP/1.1\r\n\r\nGET /b?d=1 HTTP/1.1\r\n\r\n");
    shutdown(c.fd, SHUT_WR);
    assert_int_equal(client_read(&x, &c, r, 2, 2000), 2);
    assert_string_equal(r[0].body, "path=/a query=d=30");
    assert_string_equal(r[1].body, "path=/b query=d=1");
    assert_true(client_wait_eof(&x, &c, 2000));
    client_close(&c);
    stop(&x);
}

static const char proxy_v2_tcp4[] =
    "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"
    "\xc0\x00\x02\x07\x7f\x00\x00\x01\xdc\x04\x1a\xe9";

static void test_http_server_proxy_v1_trusted(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[2];
    struct http_limits lim = default_limits();
    lim.proxy_protocol = true;
    start(&x, &lim, MODE_SYNC);
    x.trust = true;
    client_open(&x, &c);
    client_sends(&c, "PROXY TCP4 203.0.113.9 127.0.0.1 40000 6969\r\nGET /p HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[0], 1, 2000), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "path=/p query= src=203.0.113.9:40000");
    /* later requests on the connection keep the source */
    client_sends(&c, "GET /q HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[1], 1, 2000), 1);
    assert_string_equal(r[1].body, "path=/q query= src=203.0.113.9:40000");
    client_close(&c);

    /* IPv6, and the header split across segments */
    client_open(&x, &c);
    client_sends(&c, "PROXY TCP6 2001:db8::5 ::1 1234 ");
    pump(&x, 10);
    client_sends(&c, "6969\r\nGET /six HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[0], 1, 2000), 1);
    assert_string_equal(r[0].body, "path=/six query= src=2001:db8::5:1234");
    client_close(&c);

    /* UNKNOWN: no source, the peer stands */
    client_open(&x, &c);
    client_sends(&c, "PROXY UNKNOWN\r\nGET /u HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[0], 1, 2000), 1);
    assert_string_equal(r[0].body, "path=/u query=");
    client_close(&c);
    stop(&x);
}

static void test_http_server_proxy_v2_trusted(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.proxy_protocol = true;
    start(&x, &lim, MODE_SYNC);
    x.trust = true;
    client_open(&x, &c);
    client_send(&c, proxy_v2_tcp4, sizeof(proxy_v2_tcp4) - 1);
    client_sends(&c, "GET /v2 HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_string_equal(r.body, "path=/v2 query= src=192.0.2.7:56324");
    client_close(&c);

    /* LOCAL (a proxy health check): no source */
    client_open(&x, &c);
    client_send(&c, "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16);
    client_sends(&c, "GET /local HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_string_equal(r.body, "path=/local query=");
    client_close(&c);
    stop(&x);
}

static void test_http_server_proxy_untrusted_is_malformed(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.proxy_protocol = true;
    start(&x, &lim, MODE_SYNC);
    x.trust = false;
    client_open(&x, &c);
    client_sends(&c, "PROXY TCP4 203.0.113.9 127.0.0.1 40000 6969\r\nGET /p HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 400);
    assert_true(client_wait_eof(&x, &c, 3000));
    client_close(&c);

    client_open(&x, &c);
    client_send(&c, proxy_v2_tcp4, sizeof(proxy_v2_tcp4) - 1);
    client_sends(&c, "GET /v2 HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 400);
    assert_true(client_wait_eof(&x, &c, 3000));
    client_close(&c);

    /* untrusted peers are served normally without a header */
    client_open(&x, &c);
    client_sends(&c, "GET /plain HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_string_equal(r.body, "path=/plain query=");
    client_close(&c);
    assert_int_equal(x.calls, 1);
    stop(&x);
}

static void test_http_server_proxy_malformed(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    lim.proxy_protocol = true;
    lim.head_timeout_ms = 150;
    start(&x, &lim, MODE_SYNC);
    x.trust = true;
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4\r\nGET / HTTP/1.1\r\n\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        "GET / HTTP/1.1\r\n\r\n", /* a trusted peer must send the header */
        "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x02xx",
    };
    for (size_t i = 0; i < 4; i++) {
        client_open(&x, &c);
        client_send(&c, bad[i], i == 3 ? 18 : strlen(bad[i]));
        assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
        assert_int_equal(r.status, 400);
        assert_true(client_wait_eof(&x, &c, 3000));
        client_close(&c);
    }
    /* truncated: the head timeout closes it */
    client_open(&x, &c);
    client_sends(&c, "PROXY TCP4 1.2.3");
    assert_true(client_wait_eof(&x, &c, 2000));
    client_close(&c);
    assert_int_equal(x.calls, 0);
    pump(&x, 10);
    assert_int_equal(http_server_connections(x.srv), 0);
    stop(&x);
}

static void test_http_server_method_not_allowed(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    client_sends(&c, "POST /announce HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "\r\nAllow: GET, HEAD\r\n"));
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    assert_true(client_wait_eof(&x, &c, 3000));
    client_close(&c);
    assert_int_equal(x.calls, 0);
    stop(&x);
}

static void test_http_server_rejects_bodies_and_garbage(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_SYNC);
    static const struct { const char *req; int status; } cases[] = {
        { "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413 },
        { "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400 },
        { "GET / HTTP/2.0\r\n\r\n", 400 },
        { "GET * HTTP/1.1\r\n\r\n", 400 },
        { "GET ftp://h/x HTTP/1.1\r\n\r\n", 400 },
        { "GET http:///x HTTP/1.1\r\n\r\n", 400 },
        { "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400 },
        { "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        client_open(&x, &c);
        client_sends(&c, cases[i].req);
        assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
        if (r.status != cases[i].status)
            fail_msg("case %zu: status %d", i, r.status);
        assert_true(client_wait_eof(&x, &c, 3000));
        client_close(&c);
    }
    /* Content-Length: 0 is no body */
    client_open(&x, &c);
    client_sends(&c, "GET /z HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r, 1, 2000), 1);
    assert_int_equal(r.status, 200);
    client_close(&c);
    assert_int_equal(x.calls, 1);
    stop(&x);
}

static void test_http_server_error_after_pipelined_requests(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[3];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_DELAY);
    client_open(&x, &c);
    /* the error reply waits for the replies before it */
    client_sends(&c, "GET /1?d=40 HTTP/1.1\r\n\r\nGET /2?d=1 HTTP/1.1\r\n\r\n"
                     "BREW /pot HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, r, 3, 2000), 3);
    assert_string_equal(r[0].body, "path=/1 query=d=40");
    assert_string_equal(r[1].body, "path=/2 query=d=1");
    assert_int_equal(r[2].status, 405);
    assert_true(client_wait_eof(&x, &c, 3000));
    assert_int_equal(x.calls, 2);
    client_close(&c);
    stop(&x);
}

static void test_http_server_http10(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[2];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_SYNC);

    client_open(&x, &c);
    client_sends(&c, "GET /old HTTP/1.0\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[0], 1, 2000), 1);
    assert_true(has_header(&r[0], "\r\nConnection: close\r\n"));
    assert_true(client_wait_eof(&x, &c, 2000));
    client_close(&c);

    client_open(&x, &c);
    client_sends(&c, "GET /ka HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[0], 1, 2000), 1);
    assert_true(has_header(&r[0], "\r\nConnection: keep-alive\r\n"));
    client_sends(&c, "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[1], 1, 2000), 1);
    assert_string_equal(r[1].body, "path=/ka2 query=");
    assert_false(c.eof);
    client_close(&c);

    /* HTTP/1.1 with Connection: close */
    client_open(&x, &c);
    client_sends(&c, "GET /bye HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
    assert_int_equal(client_read(&x, &c, &r[0], 1, 2000), 1);
    assert_true(has_header(&r[0], "\r\nConnection: close\r\n"));
    assert_true(client_wait_eof(&x, &c, 2000));
    client_close(&c);
    stop(&x);
}

static void test_http_server_absolute_form_and_head(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r[3];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_SYNC);
    client_open(&x, &c);
    client_sends(&c, "GET http://tracker.example:6969/announce?x=1&y=2 HTTP/1.1\r\n\r\n"
                     "GET HTTP://host?only=query HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &c, r, 2, 2000), 2);
    assert_string_equal(r[0].body, "path=/announce query=x=1&y=2");
    assert_string_equal(r[1].body, "path=/ query=only=query");

    client_sends(&c, "HEAD /h HTTP/1.1\r\n\r\n");
    /* no body follows the head of a HEAD reply; mark the head for client_take */
    pump(&x, 30);
    client_poll(&c);
    char *end = memmem(c.buf, c.len, "\r\n\r\n", 4);
    assert_non_null(end);
    assert_int_equal(c.len, (size_t)(end - c.buf) + 4);
    assert_non_null(memmem(c.buf, c.len, "Content-Length: 14\r\n", 20));
    client_close(&c);
    stop(&x);
}

static void test_http_server_backpressure(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    struct resp r;
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_BIG);
    x.big_len = 256 * 1024;
    client_open(&x, &c);
    /* 200 pipelined requests whose replies (50 MiB) cannot all fit in socket buffers */
    char all[200 * 32];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(all + n, sizeof(all) - n, "GET /%03d HTTP/1.1\r\n\r\n", i);
    client_send(&c, all, n);
    pump(&x, 200);
    /* the server stopped reading: few requests were handed over */
    assert_true(x.calls > 0 && x.calls < 40);
    unsigned seen = x.calls;
    pump(&x, 100);
    assert_int_equal(x.calls, seen);
    /* a reading client gets everything, in order */
    int got = 0;
    while (got < 200) {
        event_base_loop(x.base, EVLOOP_NONBLOCK);
        client_poll(&c);
        char *end = memmem(c.buf, c.len, "\r\n\r\n", 4);
        if (end && c.len >= (size_t)(end - c.buf) + 4 + x.big_len) {
            size_t hl = (size_t)(end - c.buf) + 4;
            assert_true(memmem(c.buf, hl, "200 OK", 6) != NULL);
            memmove(c.buf, c.buf + hl + x.big_len, c.len - hl - x.big_len);
            c.len -= hl + x.big_len;
            got++;
            continue;
        }
        assert_false(c.eof);
        struct pollfd pfd = { c.fd, POLLIN, 0 };
        poll(&pfd, 1, 1);
    }
    assert_int_equal(x.calls, 200);
    (void)r;
    client_close(&c);
    stop(&x);
}

/* n pipelined "GET /%03d" requests into buf; returns the length. */
static size_t pipelined(char *buf, size_t cap, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "GET /%03d HTTP/1.1\r\n\r\n", i);
    return len;
}

/* Slow readers together may hold at most max_output_bytes of output: past it, the connection
 * that needs more is closed, and the server still serves others. Before the bound, 16 clients
 * that read nothing held 16 x (256 KiB + a batch of replies) for as long as they stayed. */
static void test_http_server_output_bound(void **state)
{
    (void)state;
    enum { N = 16 };
    struct ctx x;
    struct client c[N], fresh;
    struct resp r;
    char all[20 * 32];
    struct http_limits lim = default_limits();
    lim.max_output_bytes = 1024 * 1024;
    lim.write_timeout_ms = 60000; /* only the bound cuts here */
    lim.idle_timeout_ms = 60000;
    start(&x, &lim, MODE_BIG);
    x.big_len = 128 * 1024;
    size_t n = pipelined(all, sizeof(all), 20);
    for (int i = 0; i < N; i++) {
        client_open_small(&x, &c[i]);
        client_send(&c[i], all, n);
    }
    /* Pump until every connection has been read and has either backed up or been cut. */
    int64_t end = now_ms() + 5000;
    size_t peak = 0;
    while (now_ms() < end && (x.calls < N || http_server_connections(x.srv) == N)) {
        event_base_loop(x.base, EVLOOP_NONBLOCK);
        if (http_server_output_bytes(x.srv) > peak)
            peak = http_server_output_bytes(x.srv);
        poll(NULL, 0, 1);
    }
    pump(&x, 100);
    if (http_server_output_bytes(x.srv) > peak)
        peak = http_server_output_bytes(x.srv);
    unsigned open = http_server_connections(x.srv);
    assert_true(open < N);
    assert_true(open > 0); /* the first ones fit */
    assert_true(peak > 0 && peak <= lim.max_output_bytes);
    assert_int_equal(http_server_slow_closes(x.srv), N - open);
    /* another client is served meanwhile */
    client_open(&x, &fresh);
    client_sends(&fresh, "GET /small HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &fresh, &r, 1, 3000), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "small");
    client_close(&fresh);
    for (int i = 0; i < N; i++)
        client_close(&c[i]);
    pump(&x, 50);
    assert_int_equal(http_server_connections(x.srv), 0);
    assert_int_equal(http_server_output_bytes(x.srv), 0);
    stop(&x);
}

/* A client that reads a little now and then is cut at the write timeout: progress does not
 * re-arm it. Before, every write that made progress re-armed the timer (the idle timeout, 5 s
 * here), so 1 KiB a tenth of a second kept 2 MiB of replies queued for minutes. */
static void test_http_server_write_deadline_not_rearmed(void **state)
{
    (void)state;
    struct ctx x;
    struct client c;
    char all[8 * 32], drop[1024];
    struct http_limits lim = default_limits();
    lim.write_timeout_ms = 1000;
    start(&x, &lim, MODE_BIG);
    x.big_len = 256 * 1024;
    client_open_small(&x, &c);
    client_send(&c, all, pipelined(all, sizeof(all), 8));
    int64_t t0 = now_ms(), next = t0, end = t0 + 15000;
    size_t got = 0;
    bool closed = false;
    while (!closed && now_ms() < end) {
        event_base_loop(x.base, EVLOOP_NONBLOCK);
        if (now_ms() >= next) {
            next += 100;
            ssize_t k = recv(c.fd, drop, sizeof(drop), MSG_DONTWAIT);
            if (k > 0)
                got += (size_t)k;
            else if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                closed = true;
        }
        poll(NULL, 0, 1);
    }
    int64_t took = now_ms() - t0;
    assert_true(closed);
    assert_true(got > 0);               /* it did read: progress was made */
    assert_true(got < 8 * x.big_len);   /* and it was cut, not done */
    assert_true(took >= 900);           /* not before the timeout */
    assert_int_equal(http_server_slow_closes(x.srv), 1);
    assert_int_equal(http_server_connections(x.srv), 0);
    assert_int_equal(http_server_output_bytes(x.srv), 0);
    client_close(&c);
    stop(&x);
}

/* The deadline moves on once the output it covered is sent: a client that keeps taking its
 * replies is not cut, however long the whole exchange lasts. */
static void test_http_server_write_deadline_moves_on(void **state)
{
    (void)state;
    enum { N = 100 };
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                               "Content-Length: 262144\r\n\r\n";
    struct ctx x;
    struct client c;
    char all[N * 32], drop[65536];
    struct http_limits lim = default_limits();
    lim.write_timeout_ms = 2000;
    start(&x, &lim, MODE_BIG);
    x.big_len = 256 * 1024;
    client_open(&x, &c);
    client_send(&c, all, pipelined(all, sizeof(all), N));
    /* Counts bytes rather than parsing: cheap enough under valgrind to keep the pace. */
    size_t want = N * (sizeof(head) - 1 + x.big_len), got = 0, next_pause = x.big_len;
    int64_t t0 = now_ms(), pause_until = 0;
    while (got < want) {
        event_base_loop(x.base, EVLOOP_NONBLOCK);
        if (now_ms() >= pause_until) {
            ssize_t k = recv(c.fd, drop, sizeof(drop), MSG_DONTWAIT);
            assert_true(k != 0 && (k > 0 || errno == EAGAIN || errno == EWOULDBLOCK));
            if (k > 0)
                got += (size_t)k;
            if (got >= next_pause) {
                next_pause += x.big_len;
                pause_until = now_ms() + 30; /* 8 MiB/s: slower than loopback, fast enough */
            }
        }
        poll(NULL, 0, 1);
    }
    assert_int_equal(got, want);
    assert_true(now_ms() - t0 > (int64_t)lim.write_timeout_ms); /* outlasted one deadline */
    assert_int_equal(http_server_slow_closes(x.srv), 0);
    assert_int_equal(x.calls, N);
    client_close(&c);
    stop(&x);
}

static void test_http_server_stop_accepting(void **state)
{
    (void)state;
    struct ctx x;
    struct client idle, busy, late;
    struct resp r;
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_HOLD);
    client_open(&x, &idle);
    client_open(&x, &busy);
    pump(&x, 10);
    client_sends(&busy, "GET /slow HTTP/1.1\r\n\r\n");
    pump(&x, 20);
    assert_int_equal(x.nheld, 1);
    assert_int_equal(http_server_connections(x.srv), 2);

    http_server_stop_accepting(x.srv);
    /* idle: closed after the drain grace (HTTP_LINGER_MS, 1 s) in which a request it may have
     * sent can still arrive; a 1 s wait raced that grace under ASan */
    assert_true(client_wait_eof(&x, &idle, 3000));
    assert_false(busy.eof);
    /* new connections are not served (the test's own listener keeps the port) */
    client_open(&x, &late);
    client_sends(&late, "GET /late HTTP/1.1\r\n\r\n");
    assert_int_equal(client_read(&x, &late, &r, 1, 100), 0);
    assert_int_equal(http_server_connections(x.srv), 1);

    /* the pending request is answered with Connection: close, then the connection closes */
    evbuffer_add(http_reply_body(x.held[0]), "done", 4);
    http_reply(x.held[0], 200, "text/plain");
    assert_int_equal(client_read(&x, &busy, &r, 1, 2000), 1);
    assert_string_equal(r.body, "done");
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    assert_true(client_wait_eof(&x, &busy, 2000));
    assert_int_equal(http_server_connections(x.srv), 0);
    assert_int_equal(x.calls, 1);
    client_close(&idle);
    client_close(&busy);
    client_close(&late);
    stop(&x);
}

static void test_http_server_free_with_pending(void **state)
{
    (void)state;
    struct ctx x;
    struct client c[3];
    struct http_limits lim = default_limits();
    start(&x, &lim, MODE_HOLD);
    for (int i = 0; i < 3; i++) {
        client_open(&x, &c[i]);
        client_sends(&c[i], "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    }
    pump(&x, 30);
    assert_int_equal(x.nheld, 6);
    /* one reply is ready but blocked behind an earlier one when the server goes */
    http_reply(x.held[1], 200, "text/plain");
    http_server_free(x.srv);
    for (int i = 0; i < 3; i++) {
        client_poll(&c[i]);
        assert_true(client_wait_eof(&x, &c[i], 1000));
        client_close(&c[i]);
    }
    /* requests outlive the server; their replies only free them */
    for (unsigned i = 0; i < x.nheld; i++) {
        if (i == 1)
            continue;
        size_t len;
        assert_non_null(http_request_path(x.held[i], &len));
        evbuffer_add(http_reply_body(x.held[i]), "x", 1);
        http_reply(x.held[i], 200, "text/plain");
    }
    close(x.lfd);
    event_base_free(x.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_server_keep_alive),
        cmocka_unit_test(test_http_server_pipelining_async_out_of_order),
        cmocka_unit_test(test_http_server_pipelining_deep),
        cmocka_unit_test(test_http_server_byte_at_a_time),
        cmocka_unit_test(test_http_server_oversized_head_431),
        cmocka_unit_test(test_http_server_too_many_headers_431),
        cmocka_unit_test(test_http_server_head_timeout),
        cmocka_unit_test(test_http_server_idle_timeout),
        cmocka_unit_test(test_http_server_max_requests_per_conn),
        cmocka_unit_test(test_http_server_max_connections),
        cmocka_unit_test(test_http_server_client_reset_before_reply),
        cmocka_unit_test(test_http_server_client_close_before_reply),
        cmocka_unit_test(test_http_server_half_close_still_answered),
        cmocka_unit_test(test_http_server_proxy_v1_trusted),
        cmocka_unit_test(test_http_server_proxy_v2_trusted),
        cmocka_unit_test(test_http_server_proxy_untrusted_is_malformed),
        cmocka_unit_test(test_http_server_proxy_malformed),
        cmocka_unit_test(test_http_server_method_not_allowed),
        cmocka_unit_test(test_http_server_rejects_bodies_and_garbage),
        cmocka_unit_test(test_http_server_error_after_pipelined_requests),
        cmocka_unit_test(test_http_server_http10),
        cmocka_unit_test(test_http_server_absolute_form_and_head),
        cmocka_unit_test(test_http_server_backpressure),
        cmocka_unit_test(test_http_server_output_bound),
        cmocka_unit_test(test_http_server_write_deadline_not_rearmed),
        cmocka_unit_test(test_http_server_write_deadline_moves_on),
        cmocka_unit_test(test_http_server_stop_accepting),
        cmocka_unit_test(test_http_server_free_with_pending),
    };
    return cmocka_run_group_tests_name("http_server", tests, NULL, NULL);
}
