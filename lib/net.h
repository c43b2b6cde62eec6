/* Socket helpers for the listeners the master opens before forking. */
#ifndef TYTO_NET_H
#define TYTO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Opens a non-blocking TCP listener on addr:port (addr a literal IPv4 or IPv6 address). IPv6
 * listeners are v6-only so "0.0.0.0" and "::" can share one port. reuseport sets SO_REUSEPORT.
 * Returns the fd, or -1 with a message in err. */
int net_listen_tcp(const char *addr, int port, bool reuseport, char *err, size_t errlen);

/* The same for a UDP socket (bound, non-blocking; SO_REUSEPORT spreads datagrams over the
 * sockets of one address by source). */
int net_listen_udp(const char *addr, int port, bool reuseport, char *err, size_t errlen);

/* Formats a socket address as "a.b.c.d:port" or "[v6]:port". */
void net_format_addr(const struct sockaddr *sa, char *buf, size_t cap);

#endif
