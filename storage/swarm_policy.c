/* The swarm rules both backends follow; see storage/swarm_policy.h. */
#include "storage/swarm_policy.h"

#include "lib/config.h"

#define SWARM_NUMWANT_MAX_DEFAULT 200

void swarm_policy_init(struct swarm_policy *p, const struct config *cfg)
{
    p->peer_ttl_s = cfg->peer_ttl_s > 0 ? cfg->peer_ttl_s : 2 * (int64_t)cfg->interval_s;
    p->downloaded_ttl_s = cfg->swarm_downloaded_ttl_s > 0 ? cfg->swarm_downloaded_ttl_s : 0;
    p->numwant_max = cfg->numwant_max > 0 ? (unsigned)cfg->numwant_max : SWARM_NUMWANT_MAX_DEFAULT;
}

void swarm_policy_plan(const struct swarm_policy *p, const struct announce_req *req, struct swarm_plan *out)
{
    bool seeder = req->left == 0;

    out->stop = req->event == ANNOUNCE_EVENT_STOPPED;
    out->role = seeder ? SWARM_ROLE_SEEDER : SWARM_ROLE_LEECHER;
    /* completed with left > 0 is a client bug or a partial download: not a download. */
    out->completing = req->event == ANNOUNCE_EVENT_COMPLETED && seeder;
    out->numwant = out->stop ? 0 : req->numwant < p->numwant_max ? req->numwant : p->numwant_max;
    /* Seeders have nothing to gain from seeders. */
    out->sample_seeders = out->numwant > 0 && !seeder;
    out->sample_leechers = out->numwant > 0;
    out->expiry_s = req->now_s + p->peer_ttl_s;
    out->downloaded_expiry_s = p->downloaded_ttl_s > 0 ? req->now_s + p->downloaded_ttl_s : 0;
}

uint32_t swarm_policy_downloaded(const struct swarm_policy *p, uint32_t downloaded, int64_t last_announce_s,
                                 int64_t now_s)
{
    if (p->downloaded_ttl_s > 0 && now_s >= last_announce_s + p->downloaded_ttl_s)
        return 0;
    return downloaded;
}
