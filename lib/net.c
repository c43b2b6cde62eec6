/* Listening sockets: bound by the master before fork so that every worker, including a respawned
 * one, accepts on sockets the master keeps open and no connection is refused while a worker
 * restarts (lib/master.c: one SO_REUSEPORT lane per worker). */
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NET_BACKLOG 4096 /* capped by net.core.somaxconn */

static int net_listen(const char *addr, int port, int type, bool reuseport, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*sin6);
    } else {
        snprintf(err, errlen, "listen address '%s' is not an IPv4 or IPv6 address", addr);
        return -1;
    }

    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0)
        goto fail;
    /* TCP_DEFER_ACCEPT: a connection is handed to accept() with its first data, not on the
     * handshake's last ACK, so the worker wakes once per connection with the request already
     * readable (measured: worker CPU per new-connection announce 27 -> 19 us, bench/RESULTS.md).
     * A client that sends nothing is still accepted after about a second (the kernel's SYN-ACK
     * retransmit), and then the head timeout applies as before. Best effort: not fatal. */
    int defer_s = 1;
    if (type == SOCK_STREAM)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s));
    if (type == SOCK_STREAM && listen(fd, NET_BACKLOG) < 0)
        goto fail;
    return fd;

fail:;
    int saved = errno; /* the caller tells a missing address family from other failures */
    snprintf(err, errlen, "cannot listen on %s%s%s:%d%s: %s", ss.ss_family == AF_INET6 ? "[" : "",
             addr, ss.ss_family == AF_INET6 ? "]" : "", port, type == SOCK_DGRAM ? "/udp" : "", strerror(saved));
    if (fd >= 0)
        close(fd);
    errno = saved;
    return -1;
}

int net_listen_tcp(const char *addr, int port, bool reuseport, char *err, size_t errlen)
{
    return net_listen(addr, port, SOCK_STREAM, reuseport, err, errlen);
}

int net_listen_udp(const char *addr, int port, bool reuseport, char *err, size_t errlen)
{
    return net_listen(addr, port, SOCK_DGRAM, reuseport, err, errlen);
}

void net_format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, cap, "%s:%u", host, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, cap, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, cap, "?");
    }
}
