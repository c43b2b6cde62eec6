/* Benchmark server for lib/http.c: answers every GET with a fixed 100-byte text/plain body on
 * 127.0.0.1:PORT, one thread, one event_base. Its twin bench/http/evhttp.c does the same with
 * libevent's evhttp, for comparison with wrk (see bench/http/README.md). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/http.h"

static char body[100]; /* filled with 'x' in main() */

static void bench_handler(struct http_request *r, void *arg)
{
    (void)arg;
    evbuffer_add(http_reply_body(r), body, sizeof(body));
    http_reply(r, 200, "text/plain");
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct http_limits lim = {
        .max_head_bytes = 8192, .max_headers = 64, .head_timeout_ms = 10000,
        .idle_timeout_ms = 30000, .max_connections = 10000, .max_requests_per_conn = 0,
    };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(body, 'x', sizeof(body));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 8080));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 1024) < 0) {
        perror("listen");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct http_server *s = http_server_new(base, &lim, bench_handler, NULL, NULL, NULL);
    if (!base || !s || http_server_listen(s, fd) < 0) {
        fprintf(stderr, "cannot start\n");
        return 1;
    }
    event_base_dispatch(base);
    http_server_free(s);
    event_base_free(base);
    close(fd);
    return 0;
}
