/* Counting key and keyed hash of a client address (lib/addrkey.h), shared by the rate limit
 * and the per-address peer cap. */
#include "lib/addrkey.h"

#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

void addrkey_seed(uint64_t key[2])
{
    if (getrandom(key, 2 * sizeof(key[0]), 0) == (ssize_t)(2 * sizeof(key[0])))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    key[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ull;
}

uint64_t addrkey_hash(const struct peer_addr *addr, uint64_t key)
{
    uint64_t v;
    if (addr->family == AF_INET6) {
        memcpy(&v, addr->addr, sizeof(v));
        v ^= 6;
    } else {
        uint32_t v4;
        memcpy(&v4, addr->addr, sizeof(v4));
        v = (uint64_t)v4 << 8 | 4;
    }
    return addrkey_mix(v ^ key);
}
