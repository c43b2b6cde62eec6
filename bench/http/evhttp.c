/* Benchmark server for libevent's evhttp: the same fixed 100-byte reply as bench/http/lean.c,
 * with the limits the worker used to set, for comparison with wrk (see bench/http/README.md). */
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
#include <event2/http.h>
#include <event2/util.h>

static char body[100]; /* filled with 'x' in main() */

static void bench_handler(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evbuffer_add(evhttp_request_get_output_buffer(req), body, sizeof(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_send_reply(req, 200, "OK", NULL);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(body, 'x', sizeof(body));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 8081));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 1024) < 0) {
        perror("listen");
        return 1;
    }
    evutil_make_socket_nonblocking(fd);
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http || !evhttp_accept_socket_with_handle(http, fd)) {
        fprintf(stderr, "cannot start\n");
        return 1;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
    evhttp_set_max_headers_size(http, 8192);
    evhttp_set_max_body_size(http, 0);
    evhttp_set_timeout(http, 30);
    evhttp_set_gencb(http, bench_handler, NULL);
    event_base_dispatch(base);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
