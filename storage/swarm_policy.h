/* The swarm rules, written once (docs/architecture.md "Storage"): who is a seeder, what
 * event=stopped and event=completed do, who receives whom, what counts as a download, how long a
 * peer and a swarm's completed count are kept, how many members a sample fetches. Pure: no I/O,
 * no clock (the time comes in the request). storage/redis.c turns a plan into commands,
 * storage/memory.c into list operations; tests/storage/test_contract.c checks both follow it. */
#ifndef TYTO_SWARM_POLICY_H
#define TYTO_SWARM_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/announce.h"

struct config;

/* The configured numbers, resolved once when a backend starts. */
struct swarm_policy {
    int64_t peer_ttl_s;                /* a peer is kept this long after its last announce */
    int64_t downloaded_ttl_s;          /* a swarm's count, after its last announce; 0 = forever */
    unsigned numwant_max;              /* sample cap whatever the request says */
};

enum swarm_role {
    SWARM_ROLE_LEECHER,                /* left > 0 */
    SWARM_ROLE_SEEDER,                 /* left == 0 */
};

/* What one announce does to its swarm. */
struct swarm_plan {
    bool stop;                         /* event=stopped: leave both sets, receive nobody */
    enum swarm_role role;              /* the set the peer is in afterwards (unless stop) */
    bool completing;                   /* event=completed with left == 0: a download if the peer
                                        * was a live leecher until this announce */
    unsigned numwant;                  /* peers to return, capped; 0 when stopping */
    bool sample_seeders;               /* a leecher receives seeders first ... */
    bool sample_leechers;              /* ... then leechers; a seeder only leechers */
    int64_t expiry_s;                  /* the peer's new expiry: now + peer_ttl */
    int64_t downloaded_expiry_s;       /* the count is forgotten at this time; 0 = never */
};

/* Resolves the configuration: peer_ttl_s 0 means 2 x interval, numwant_max 0 means 200. */
void swarm_policy_init(struct swarm_policy *p, const struct config *cfg);

void swarm_policy_plan(const struct swarm_policy *p, const struct announce_req *req, struct swarm_plan *out);

/* Whether the planned announce counts a download: only a move from leecher to seeder by
 * event=completed, once per move (a second completed finds the peer a seeder already). */
static inline bool swarm_policy_counts_download(const struct swarm_plan *plan, bool was_leecher)
{
    return !plan->stop && plan->completing && was_leecher;
}

/* A member whose expiry is expiry_s is alive at now_s (Redis: score > now; reaped when <= now). */
static inline bool swarm_policy_alive(int64_t expiry_s, int64_t now_s)
{
    return expiry_s > now_s;
}

/* A swarm's completed count at now_s, given the count and the time of the swarm's last
 * announce: 0 once downloaded_ttl_s has passed since then (Redis: the info key expired). */
uint32_t swarm_policy_downloaded(const struct swarm_policy *p, uint32_t downloaded, int64_t last_announce_s,
                                 int64_t now_s);

/* Members to fetch from one set so that numwant remain once the peer itself is dropped. */
static inline unsigned swarm_policy_fetch(unsigned numwant)
{
    return numwant + 1;
}

#endif
