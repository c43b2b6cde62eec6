/* bench/memory_announce_cost.c: time per announce of the memory backend in one swarm of N peers
 * (re-announces of random members, numwant 50), to show the cost does not grow with N.
 *   make BUILD=build tyto && cc -O2 -I. -D_GNU_SOURCE -o build/memory_announce_cost \
 *       bench/memory_announce_cost.c build/libtyto.a $(pkg-config --libs libevent hiredis yaml-0.1 libsodium)
 *   build/memory_announce_cost 1000 100000 200000
 * Prints, for each N given, nanoseconds per announce (wall clock; run on an idle machine). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>

#include "lib/config.h"
#include "storage/storage.h"

static int outstanding;

static void done(const struct announce_reply *rep, int status, void *arg)
{
    (void)rep;
    (void)status;
    (void)arg;
    outstanding--;
}

static void announce(struct storage *st, struct event_base *base, unsigned i, uint64_t left, unsigned numwant)
{
    struct announce_req r;

    memset(&r, 0, sizeof(r));
    memset(r.info_hash, 0xab, sizeof(r.info_hash));
    r.peer.family = AF_INET;
    r.peer.addr[0] = 10;
    r.peer.addr[1] = (uint8_t)(i >> 16);
    r.peer.addr[2] = (uint8_t)(i >> 8);
    r.peer.addr[3] = (uint8_t)i;
    r.peer.port = 6881;
    r.left = left;
    r.numwant = numwant;
    r.now_s = 1000000;
    outstanding++;
    storage_announce(st, &r, done, NULL);
    if (outstanding >= 1000)
        while (outstanding > 0)
            event_base_loop(base, EVLOOP_ONCE);
}

int main(int argc, char **argv)
{
    int a;

    for (a = 1; a < argc; a++) {
        unsigned n = (unsigned)strtoul(argv[a], NULL, 10), i, m = 200000;
        struct event_base *base = event_base_new();
        struct config cfg;
        struct timespec t0, t1;
        struct storage *st;
        char err[256];

        memset(&cfg, 0, sizeof(cfg));
        cfg.storage = CONFIG_STORAGE_MEMORY;
        cfg.interval_s = 1800;
        cfg.numwant_max = 200;
        st = storage_new(&cfg, base, err, sizeof(err));
        if (!st)
            return 1;
        for (i = 0; i < n; i++)
            announce(st, base, i, i % 3 ? 100 : 0, 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < m; i++)
            announce(st, base, (unsigned)(((uint64_t)i * 2654435761u) % n), i % 3 ? 100 : 0, 50);
        while (outstanding > 0)
            event_base_loop(base, EVLOOP_ONCE);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("swarm of %u peers: %.0f ns per announce\n", n,
               ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / m);
        storage_free(st);
        event_base_free(base);
    }
    return 0;
}
