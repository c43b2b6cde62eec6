/* bench/udp_load: a BEP 15 load generator that behaves like clients. SOCKETS client sockets (each
 * its own source port, so SO_REUSEPORT spreads them over the workers) connect once, then announce
 * in a closed loop with WINDOW requests outstanding per socket, reusing the connection id for
 * REUSE_S seconds (libtorrent: 60) before connecting again, over SWARMS info-hashes. Every reply is
 * checked: its action, its transaction id, its length (20 + 6n bytes); an error action or a bad
 * reply is counted and printed at the end, and any makes the exit status 1.
 *
 *   cc -O2 -o build/udp_load bench/udp_load.c
 *   build/udp_load HOST PORT SECONDS [SOCKETS=16] [WINDOW=8] [SWARMS=1000] [REUSE_S=60] [HASHES]
 *
 * Info-hashes: the swarm number (4 bytes, big-endian) and 16 zero bytes; or, with HASHES (a file
 * of 40-hex-digit info-hashes, one a line: bench/run's steady pool), its first SWARMS lines.
 *
 * Prints one line: "udp_load: N announces in S s = R/s, connects C, errors E, bad B, lost L". A
 * request unanswered for 1 s is counted lost and sent again (UDP may drop under overload). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKETS 256
#define MAX_WINDOW 64

struct client {
    int fd;
    uint64_t cid;
    double cid_at;              /* when cid was issued; 0: none yet */
    int connecting;
    uint32_t tid[MAX_WINDOW];   /* outstanding transaction ids (0: free slot) */
    double sent_at[MAX_WINDOW];
    uint8_t peer_id[20];
    uint16_t port;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t rnd32(void)
{
    static uint64_t x = 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (uint32_t)(x >> 16);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t next_tid(void)
{
    uint32_t t;
    do
        t = rnd32();
    while (t == 0);
    return t;
}

static void send_connect(struct client *c)
{
    uint8_t b[16];
    uint32_t t = next_tid();
    put32(b, 0x417);
    put32(b + 4, 0x27101980);
    put32(b + 8, 0);
    put32(b + 12, t);
    c->tid[0] = t;              /* while connecting, slot 0 is the connect */
    c->sent_at[0] = now_s();
    c->connecting = 1;
    send(c->fd, b, sizeof(b), 0);
}

static uint8_t *hash_table;     /* SWARMS x 20 bytes from HASHES, or NULL */

/* Reads the first n info-hashes of path (40 hex digits a line); exits on a short or bad file. */
static void load_hashes(const char *path, unsigned n)
{
    FILE *f = fopen(path, "r");
    char line[128];
    unsigned i = 0;
    if (!f || !(hash_table = malloc((size_t)n * 20))) {
        perror("udp_load: hashes");
        exit(2);
    }
    while (i < n && fgets(line, sizeof(line), f)) {
        for (int k = 0; k < 20; k++) {
            unsigned v;
            if (sscanf(line + 2 * k, "%2x", &v) != 1) {
                fprintf(stderr, "udp_load: %s line %u is not 40 hex digits\n", path, i + 1);
                exit(2);
            }
            hash_table[(size_t)i * 20 + (size_t)k] = (uint8_t)v;
        }
        i++;
    }
    fclose(f);
    if (i < n) {
        fprintf(stderr, "udp_load: %s has %u info-hashes, SWARMS is %u\n", path, i, n);
        exit(2);
    }
}

static void send_announce(struct client *c, int slot, unsigned swarms)
{
    uint8_t b[98];
    uint32_t t = next_tid(), h = rnd32() % swarms;
    memset(b, 0, sizeof(b));
    put32(b, (uint32_t)(c->cid >> 32));
    put32(b + 4, (uint32_t)c->cid);
    put32(b + 8, 1);
    put32(b + 12, t);
    if (hash_table)
        memcpy(b + 16, hash_table + (size_t)h * 20, 20);
    else
        put32(b + 16, h);       /* info_hash: the swarm number, then zeros */
    memcpy(b + 36, c->peer_id, 20);
    put32(b + 64 + 4, rnd32() % 2 ? 0 : 1000);  /* left: half seeders */
    put32(b + 92, 0xffffffff);  /* num_want -1 */
    b[96] = (uint8_t)(c->port >> 8);
    b[97] = (uint8_t)c->port;
    c->tid[slot] = t;
    c->sent_at[slot] = now_s();
    send(c->fd, b, sizeof(b), 0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT SECONDS [SOCKETS] [WINDOW] [SWARMS] [REUSE_S] [HASHES]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[3]);
    int nsock = argc > 4 ? atoi(argv[4]) : 16, window = argc > 5 ? atoi(argv[5]) : 8;
    unsigned swarms = argc > 6 ? (unsigned)atoi(argv[6]) : 1000;
    double reuse_s = argc > 7 ? atof(argv[7]) : 60;
    if (argc > 8)
        load_hashes(argv[8], swarms);
    if (nsock < 1 || nsock > MAX_SOCKETS || window < 1 || window > MAX_WINDOW || swarms < 1) {
        fprintf(stderr, "udp_load: bad SOCKETS (1..%d), WINDOW (1..%d) or SWARMS\n", MAX_SOCKETS, MAX_WINDOW);
        return 2;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, argv[1], &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)atoi(argv[2]));
        sslen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, argv[1], &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)atoi(argv[2]));
        sslen = sizeof(*sin6);
    } else {
        fprintf(stderr, "udp_load: HOST must be a literal address\n");
        return 2;
    }
    size_t peer_len = ss.ss_family == AF_INET ? 6 : 18;
    static struct client cl[MAX_SOCKETS];
    struct pollfd pfd[MAX_SOCKETS];
    for (int i = 0; i < nsock; i++) {
        cl[i].fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (cl[i].fd < 0 || connect(cl[i].fd, (struct sockaddr *)&ss, sslen) < 0) {
            perror("udp_load: socket");
            return 2;
        }
        for (int k = 0; k < 20; k++)
            cl[i].peer_id[k] = (uint8_t)rnd32();
        cl[i].port = (uint16_t)(1024 + rnd32() % 60000);
        pfd[i].fd = cl[i].fd;
        pfd[i].events = POLLIN;
        send_connect(&cl[i]);
    }
    unsigned long long announces = 0, connects = 0, errors = 0, bad = 0, lost = 0, late = 0;
    char last_error[128] = "";
    double start = now_s(), end = start + seconds;
    uint8_t buf[65536];
    while (now_s() < end) {
        if (poll(pfd, (nfds_t)nsock, 100) < 0 && errno != EINTR)
            break;
        double t = now_s();
        for (int i = 0; i < nsock; i++) {
            struct client *c = &cl[i];
            ssize_t n;
            while ((n = recv(c->fd, buf, sizeof(buf), 0)) > 0) {
                if (n < 8) {
                    bad++;
                    continue;
                }
                uint32_t action = get32(buf), tid = get32(buf + 4);
                int slot = -1;
                for (int k = 0; k < (c->connecting ? 1 : window); k++)
                    if (c->tid[k] == tid)
                        slot = k;
                if (slot < 0) {
                    late++;     /* a reply after its request was counted lost */
                    continue;
                }
                c->tid[slot] = 0;
                if (action == 3) {
                    errors++;
                    snprintf(last_error, sizeof(last_error), "%.*s", (int)(n - 8), (char *)buf + 8);
                    if (c->connecting || strstr(last_error, "connection id")) {
                        c->cid_at = 0;
                        if (!c->connecting)
                            memset(c->tid, 0, sizeof(c->tid));
                        send_connect(c);
                    }
                    continue;
                }
                if (c->connecting) {
                    if (action != 0 || n != 16) {
                        bad++;
                        send_connect(c);
                        continue;
                    }
                    c->cid = (uint64_t)get32(buf + 8) << 32 | get32(buf + 12);
                    c->cid_at = t;
                    c->connecting = 0;
                    connects++;
                    continue;
                }
                if (action != 1 || n < 20 || (size_t)(n - 20) % peer_len != 0) {
                    bad++;
                    continue;
                }
                announces++;
            }
            if (c->connecting) {
                if (t - c->sent_at[0] > 1.0) {
                    lost++;
                    send_connect(c);
                }
                continue;
            }
            if (t - c->cid_at > reuse_s) {
                memset(c->tid, 0, sizeof(c->tid));
                send_connect(c);
                continue;
            }
            for (int k = 0; k < window; k++) {
                if (c->tid[k] && t - c->sent_at[k] > 1.0) {
                    lost++;
                    c->tid[k] = 0;
                }
                if (!c->tid[k])
                    send_announce(c, k, swarms);
            }
        }
    }
    double took = now_s() - start;
    printf("udp_load: %llu announces in %.1f s = %.0f/s, connects %llu, errors %llu, bad %llu, lost %llu, late %llu%s%s\n",
           announces, took, (double)announces / took, connects, errors, bad, lost, late,
           last_error[0] ? ", last error: " : "", last_error);
    return errors || bad ? 1 : 0;
}
