/* The master: binds every listener before forking (so a respawned worker takes over the same
 * sockets and no connection is refused), forks the workers, then waits for signals with
 * sigtimedwait. Signals stay blocked in the master, so there are no handlers and no races:
 *   SIGCHLD  reap, respawn (at once, or with back-off for a worker that keeps dying)
 *   SIGHUP   re-read the configuration; if valid, start a new generation, and drain the old
 *            one only once every new worker is ready (serving, its signal handlers installed)
 *   SIGTERM/SIGINT  drain every worker (bounded), remove the pid file, exit 0
 *   SIGUSR1  reopen the log file, here and in every worker
 *
 * A slot is wanted ("active") from the moment its generation needs it, before any fork: a fork
 * that fails (EAGAIN, ENOMEM) and a slot table that is full are retried, with back-off, and the
 * serving generation is never drained for a new one that is not complete. */
#include "lib/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "lib/peercap.h"
#include "lib/ratelimit.h"
#include "lib/worker.h"

extern char **environ;

#define MASTER_MAX_SLOTS 512          /* worker slots in the shared metrics region */
#define MASTER_MAX_ADDRS 2            /* addresses: IPv4 and IPv6 */
#define MASTER_MAX_LISTENERS 4        /* sockets a lane: TCP and UDP on each address */
#define MASTER_MAX_LANES 64           /* SO_REUSEPORT sockets per address */
#define MASTER_RATELIMIT_ORDER 17     /* 2^17 addresses counted at once (1 MiB shared) */
#define MASTER_PEERCAP_ORDER 20       /* 2^20 words: ~1M (address, swarm, port) items (8 MiB shared) */
#define MASTER_STABLE_S 10            /* a worker that lived this long resets its back-off */
#define MASTER_BACKOFF_MAX_MS 10000
#define MASTER_KILL_GRACE_S 5         /* past shutdown.timeout_s, stragglers get SIGKILL */
#define MASTER_READY_POLL_MS 20       /* a starting generation is checked this often */

struct master_slot {
    pid_t pid;                        /* 0: no process */
    uint64_t generation;
    int active;                       /* wanted by the serving or the starting generation: (re)spawned
                                       * whenever pid is 0 and respawn_at has passed */
    int failures;                     /* consecutive early deaths or failed forks */
    struct timespec started;
    struct timespec respawn_at;       /* next (re)spawn attempt when pid == 0 and active */
    int lane;                         /* index within its generation: which sockets it accepts on */
};

/* Listening sockets. Each address is bound once per lane, with SO_REUSEPORT, so the kernel
 * spreads new connections evenly over the lanes (a shared socket let one worker take every
 * keep-alive connection: bench/RESULTS.md). The master keeps every lane open, so a respawned
 * worker, or the next generation's, takes over the same queue and nothing queued is lost. */
struct master_lanes {
    int fds[MASTER_MAX_LANES][MASTER_MAX_LISTENERS];
    int nlanes;
    int nfds;                         /* per lane: TCP listeners, then UDP sockets */
    int has6;                         /* the first lane opened IPv6 */
};

/* One generation: the configuration its workers run and the sockets they serve. Each generation
 * owns its descriptors; a socket it shares with another generation is a dup, so closing one
 * generation's set never closes a socket the other still serves. */
struct master_gen {
    uint64_t id;                      /* 0: none */
    struct config cfg;
    struct master_lanes lanes;
    int admin_fd;                     /* the admin.listen socket, or -1 (off) */
};

struct master {
    const char *config_path;
    pid_t pid;                        /* workers compare getppid() with it */
    struct master_gen cur;            /* serving */
    struct master_gen next;           /* started by a reload, not yet complete (id 0: none) */
    struct metrics *metrics;
    struct ratelimit *ratelimit;      /* per-address announce counters, shared by the workers */
    struct peercap *peercap;          /* ports per (address, swarm), shared by the workers */
    struct master_slot slot[MASTER_MAX_SLOTS];
    uint64_t last_generation;
    uint64_t no_slot_logged;          /* generation whose "no free slot" was logged */
    char udp_random_secret[65];       /* drawn at start when no udp.secret is configured */
    int stopping;
};

static double master_since_s(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void master_after_ms(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* 0 for the first failure, then 100 ms doubling up to MASTER_BACKOFF_MAX_MS. */
static long master_backoff_ms(int failures)
{
    if (failures <= 1)
        return 0;
    long ms = 100L << (failures - 2 < 10 ? failures - 2 : 10);
    return ms > MASTER_BACKOFF_MAX_MS ? MASTER_BACKOFF_MAX_MS : ms;
}

static void master_close_listeners(int *fds, int nfds)
{
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
}

static void master_close_lanes(struct master_lanes *l)
{
    for (int i = 0; i < l->nlanes; i++)
        master_close_listeners(l->fds[i], l->nfds);
    l->nlanes = 0;
}

static void master_close_gen(struct master_gen *g)
{
    master_close_lanes(&g->lanes);
    if (g->admin_fd >= 0)
        close(g->admin_fd);
    g->admin_fd = -1;
    g->id = 0;
}

/* Opens one lane: the HTTP listeners cfg asks for, then a UDP socket on each of the same
 * addresses (listen.udp_port, unless 0). The first lane decides which addresses the host can
 * serve (want6 < 0; *has6 tells the result); later lanes open the same ones. Returns their
 * number, or -1 with a message. */
static int master_open_lane(const struct config *cfg, int *fds, int want6, int *has6, char *err, size_t errlen)
{
    int n = 0, v6 = 0;
    const char *addrs[MASTER_MAX_ADDRS] = { cfg->listen_ipv4, cfg->listen_ipv6 };
    const char *served[MASTER_MAX_ADDRS];
    int nserved = 0;
    for (int i = 0; i < MASTER_MAX_ADDRS; i++) {
        if (!addrs[i][0] || (i == 1 && want6 == 0))
            continue;
        int fd = net_listen_tcp(addrs[i], cfg->port, true, err, errlen);
        if (fd < 0 && i == 1 && n > 0 && want6 < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
            /* A host (or container) without IPv6 still serves IPv4. */
            log_warn("%s; serving IPv4 only", err);
            continue;
        }
        if (fd < 0) {
            master_close_listeners(fds, n);
            return -1;
        }
        fds[n++] = fd;
        served[nserved++] = addrs[i];
        if (i == 1)
            v6 = 1;
    }
    for (int i = 0; cfg->udp_port && i < nserved; i++) {
        int fd = net_listen_udp(served[i], cfg->udp_port, true, err, errlen);
        if (fd < 0) {
            master_close_listeners(fds, n);
            return -1;
        }
        fds[n++] = fd;
    }
    if (has6)
        *has6 = v6;
    return n;
}

/* SO_REUSEPORT would let this process join the sockets of another one of the same user on the
 * same port and silently share its traffic: at start-up, a plain bind must find the port free. */
static int master_check_port_free(const struct config *cfg, char *err, size_t errlen)
{
    const char *addrs[MASTER_MAX_ADDRS] = { cfg->listen_ipv4, cfg->listen_ipv6 };
    for (int i = 0; i < MASTER_MAX_ADDRS; i++) {
        if (!addrs[i][0])
            continue;
        int fd = net_listen_tcp(addrs[i], cfg->port, false, err, errlen);
        if (fd < 0 && errno == EADDRINUSE)
            return -1;
        if (fd >= 0)
            close(fd);
        if (!cfg->udp_port)
            continue;
        fd = net_listen_udp(addrs[i], cfg->udp_port, false, err, errlen);
        if (fd < 0 && errno == EADDRINUSE)
            return -1;
        if (fd >= 0)
            close(fd);
    }
    return 0;
}

static int master_lane_count(const struct config *cfg)
{
    int n = config_worker_count(cfg);
    return n < MASTER_MAX_LANES ? n : MASTER_MAX_LANES;
}

/* Adds lanes to l until it has want (l may be empty). Returns 0, or -1 with a message and l as
 * it was. */
static int master_open_lanes(const struct config *cfg, struct master_lanes *l, int want, char *err,
                             size_t errlen)
{
    int before = l->nlanes;
    while (l->nlanes < want) {
        int want6 = l->nlanes == 0 ? -1 : l->has6;
        int n = master_open_lane(cfg, l->fds[l->nlanes], want6, l->nlanes == 0 ? &l->has6 : NULL, err, errlen);
        if (n < 0) {
            while (l->nlanes > before)
                master_close_listeners(l->fds[--l->nlanes], l->nfds);
            return -1;
        }
        l->nfds = n;
        l->nlanes++;
    }
    return 0;
}

/* dst = dups of every socket of src. 0, or -1 with a message and dst empty. */
static int master_dup_lanes(const struct master_lanes *src, struct master_lanes *dst, char *err, size_t errlen)
{
    dst->nlanes = 0;
    dst->nfds = src->nfds;
    dst->has6 = src->has6;
    for (int i = 0; i < src->nlanes; i++) {
        for (int k = 0; k < src->nfds; k++) {
            int fd = fcntl(src->fds[i][k], F_DUPFD_CLOEXEC, 0);
            if (fd < 0) {
                snprintf(err, errlen, "cannot duplicate a listener: %s", strerror(errno));
                master_close_listeners(dst->fds[i], k);
                master_close_lanes(dst);
                return -1;
            }
            dst->fds[i][k] = fd;
        }
        dst->nlanes++;
    }
    return 0;
}

/* The admin.listen socket: a plain bind (no SO_REUSEPORT), so an address in use is an error,
 * never a silently shared socket. *fd = -1 when admin.listen is "". */
static int master_open_admin(const struct config *cfg, int *fd, char *err, size_t errlen)
{
    char host[64], msg[256];
    int port;
    *fd = -1;
    if (!cfg->admin_listen[0])
        return 0;
    if (config_parse_hostport(cfg->admin_listen, host, sizeof(host), &port, msg, sizeof(msg)) < 0) {
        snprintf(err, errlen, "admin.listen: %s", msg);
        return -1;
    }
    *fd = net_listen_tcp(host, port, false, msg, sizeof(msg));
    if (*fd < 0) {
        snprintf(err, errlen, "admin.listen: %s", msg);
        return -1;
    }
    return 0;
}

static int master_same_listeners(const struct config *a, const struct config *b)
{
    return a->port == b->port && a->udp_port == b->udp_port && strcmp(a->listen_ipv4, b->listen_ipv4) == 0 &&
           strcmp(a->listen_ipv6, b->listen_ipv6) == 0;
}

/* The sockets of a new generation running cfg. Addresses that the starting or the serving
 * generation already listens on are dups of its sockets (binding them again would fail for the
 * admin socket, and for the lanes would open queues nobody may ever serve); the rest are
 * opened. Returns 0, or -1 with a message and nothing left open. */
static int master_open_gen(struct master *m, const struct config *cfg, struct master_gen *g, char *err,
                           size_t errlen)
{
    const struct master_gen *base = NULL;
    if (m->next.id && master_same_listeners(&m->next.cfg, cfg))
        base = &m->next;
    else if (master_same_listeners(&m->cur.cfg, cfg))
        base = &m->cur;
    g->cfg = *cfg;
    g->admin_fd = -1;
    g->lanes.nlanes = 0;
    if (base && master_dup_lanes(&base->lanes, &g->lanes, err, errlen) < 0)
        return -1;
    if (master_open_lanes(cfg, &g->lanes, master_lane_count(cfg), err, errlen) < 0)
        goto fail;

    const struct master_gen *abase = NULL;
    if (m->next.id && strcmp(m->next.cfg.admin_listen, cfg->admin_listen) == 0)
        abase = &m->next;
    else if (strcmp(m->cur.cfg.admin_listen, cfg->admin_listen) == 0)
        abase = &m->cur;
    if (abase && abase->admin_fd >= 0) {
        g->admin_fd = fcntl(abase->admin_fd, F_DUPFD_CLOEXEC, 0);
        if (g->admin_fd < 0) {
            snprintf(err, errlen, "cannot duplicate the admin listener: %s", strerror(errno));
            goto fail;
        }
    } else if (master_open_admin(cfg, &g->admin_fd, err, errlen) < 0) {
        goto fail;
    }
    return 0;

fail:
    master_close_lanes(&g->lanes);
    return -1;
}

/* The sockets the worker in lane `lane` of a generation of `workers` accepts on: its own lane,
 * and every lane beyond the generation's size that maps to it (after a reload to fewer workers,
 * the extra lanes stay open and are served, never closed with connections queued on them).
 * With more workers than lanes, workers share lanes. Returns the number of descriptors. */
static int master_lane_fds(const struct master_lanes *l, int lane, int workers, int *fds)
{
    int n = 0;
    if (workers >= l->nlanes) {
        memcpy(fds, l->fds[lane % l->nlanes], sizeof(int) * (size_t)l->nfds);
        return l->nfds;
    }
    for (int i = lane; i < l->nlanes; i += workers)
        for (int k = 0; k < l->nfds; k++)
            fds[n++] = l->fds[i][k];
    return n;
}

static void master_signal_mask(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGUSR1);
}

static int master_fd_in(int fd, const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] == fd)
            return 1;
    return 0;
}

/* Closes, in a new worker, every listener it does not serve: a copy held by a worker would keep
 * a socket the master closed listening, with nobody accepting on it. */
static void master_close_others(const struct master_gen *g, const int *keep, int nkeep, int keep_admin)
{
    for (int i = 0; i < g->lanes.nlanes; i++)
        for (int k = 0; k < g->lanes.nfds; k++)
            if (!master_fd_in(g->lanes.fds[i][k], keep, nkeep))
                close(g->lanes.fds[i][k]);
    if (g->admin_fd >= 0 && !keep_admin)
        close(g->admin_fd);
}

/* In the child: undo the master's signal set-up and become a worker of g. Never returns. */
static void master_become_worker(struct master *m, int i, struct master_gen *g)
{
    sigset_t set;
    /* Reloads are the master's business, and so is Ctrl-C: the terminal sends SIGINT to the
     * whole process group, and the master answers it by draining the workers with SIGTERM. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    /* SIGTERM and SIGUSR1 stay blocked: their default action would kill this process until the
     * worker's libevent handlers are installed, and worker_run unblocks them then (a logrotate
     * SIGUSR1, or a drain, arriving meanwhile waits, pending, instead). */
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    /* A worker must not outlive its master (e.g. after SIGKILL of the master). The parent may
     * already be gone before prctl: then getppid() is whoever adopted us (init, or a subreaper
     * such as systemd --user or tini), never the master's pid. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->pid)
        _exit(0);
    int fds[MASTER_MAX_LANES * MASTER_MAX_LISTENERS];
    int nfds = master_lane_fds(&g->lanes, m->slot[i].lane, config_worker_count(&g->cfg), fds);
    master_close_others(g, fds, nfds, 1);
    master_close_others(g == &m->cur ? &m->next : &m->cur, NULL, 0, 0);
    struct metrics_slot *ms = &m->metrics->slot[i];
    ms->generation = g->id;
    ms->started++;
    ms->pid = getpid();
    int rc = worker_run(&g->cfg, fds, nfds, m->metrics, i, m->ratelimit, m->peercap, g->admin_fd);
    ms->ready = 0;
    ms->open_connections = 0;
    ms->inflight = 0;
    ms->http_output_bytes = 0;
    ms->pid = 0;
    _exit(rc);
}

static struct master_gen *master_gen_of(struct master *m, uint64_t id)
{
    if (id && id == m->cur.id)
        return &m->cur;
    if (id && id == m->next.id)
        return &m->next;
    return NULL;
}

/* Forks the worker of slot i (active, of a live generation). A failed fork is retried with
 * back-off: the slot stays active with its next attempt scheduled. */
static int master_spawn(struct master *m, int i)
{
    struct master_slot *s = &m->slot[i];
    struct master_gen *g = master_gen_of(m, s->generation);
    if (!g) {
        s->active = 0;
        return -1;
    }
    struct metrics_slot *ms = &m->metrics->slot[i];
    ms->ready = 0;
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        s->failures++;
        long delay_ms = master_backoff_ms(s->failures + 1);
        master_after_ms(&s->respawn_at, delay_ms);
        log_error("fork for worker %d of generation %llu: %s; retrying in %ld ms", i,
                  (unsigned long long)g->id, strerror(saved), delay_ms);
        return -1;
    }
    if (pid == 0)
        master_become_worker(m, i, g);
    s->pid = pid;
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    log_info("worker %d started (pid %d, generation %llu)", i, (int)pid, (unsigned long long)g->id);
    return 0;
}

/* Gives every lane of g a wanted slot, forking its worker at once. A lane without a free slot
 * (two generations of workers: 256 fill the table) waits for a draining worker to exit; the
 * serving generation meanwhile goes on. Returns -1 if some worker could not be started now. */
static int master_fill_gen(struct master *m, struct master_gen *g)
{
    if (!g->id || m->stopping)
        return 0;
    int want = config_worker_count(&g->cfg);
    unsigned char have[256 + 1];
    memset(have, 0, sizeof(have));
    for (int i = 0; i < MASTER_MAX_SLOTS; i++)
        if (m->slot[i].active && m->slot[i].generation == g->id && m->slot[i].lane < want)
            have[m->slot[i].lane] = 1;
    int rc = 0, free_slot = 0;
    for (int lane = 0; lane < want; lane++) {
        if (have[lane])
            continue;
        while (free_slot < MASTER_MAX_SLOTS && (m->slot[free_slot].pid != 0 || m->slot[free_slot].active))
            free_slot++;
        if (free_slot == MASTER_MAX_SLOTS) {
            if (m->no_slot_logged != g->id)
                log_warn("no free worker slot for generation %llu (old workers still draining): "
                         "retrying as they exit", (unsigned long long)g->id);
            m->no_slot_logged = g->id;
            return -1;
        }
        struct master_slot *s = &m->slot[free_slot];
        memset(s, 0, sizeof(*s));
        s->generation = g->id;
        s->lane = lane;
        s->active = 1;
        if (master_spawn(m, free_slot) < 0)
            rc = -1;
    }
    return rc;
}

static void master_describe_exit(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "stopped (status 0x%x)", status);
}

/* Reaps every exited worker; schedules a respawn for those still wanted. */
static void master_reap(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MASTER_MAX_SLOTS; i++) {
            struct master_slot *s = &m->slot[i];
            if (s->pid != pid)
                continue;
            char how[96];
            master_describe_exit(status, how, sizeof(how));
            s->pid = 0;
            /* A dead worker's gauges would otherwise count its connections forever. */
            struct metrics_slot *ms = &m->metrics->slot[i];
            ms->pid = 0;
            ms->ready = 0;
            ms->open_connections = 0;
            ms->inflight = 0;
            ms->storage_backlog = 0;
            ms->http_output_bytes = 0;
            ms->redis_master[0] = '\0';
            if (!s->active || m->stopping) {
                log_info("worker %d (pid %d) of generation %llu %s", i, (int)pid,
                         (unsigned long long)s->generation, how);
                s->active = 0;
                break;
            }
            /* Died on its own: respawn at once the first time, then back off. */
            double lived = master_since_s(&s->started);
            s->failures = lived >= MASTER_STABLE_S ? 1 : s->failures + 1;
            long delay_ms = master_backoff_ms(s->failures);
            log_error("worker %d (pid %d) %s after %.1f s; respawning in %ld ms", i, (int)pid, how, lived,
                      delay_ms);
            master_after_ms(&s->respawn_at, delay_ms);
            break;
        }
    }
}

/* (Re)spawns the wanted slots whose time has come; returns ms until the next one is due (at
 * most 1000). */
static long master_respawn_due(struct master *m)
{
    long next_ms = 1000;
    for (int i = 0; i < MASTER_MAX_SLOTS && !m->stopping; i++) {
        struct master_slot *s = &m->slot[i];
        if (s->pid != 0 || !s->active)
            continue;
        double wait_s = -master_since_s(&s->respawn_at);
        if (wait_s <= 0) {
            if (master_spawn(m, i) < 0 && s->active)
                wait_s = -master_since_s(&s->respawn_at);
        }
        if (s->pid == 0 && s->active && wait_s > 0 && (long)(wait_s * 1000) + 1 < next_ms)
            next_ms = (long)(wait_s * 1000) + 1;
    }
    return next_ms;
}

static void master_signal_workers(struct master *m, int sig)
{
    for (int i = 0; i < MASTER_MAX_SLOTS; i++)
        if (m->slot[i].pid != 0)
            kill(m->slot[i].pid, sig);
}

/* Stops wanting generation id's slots and tells its workers to drain. */
static void master_retire(struct master *m, uint64_t id)
{
    for (int i = 0; i < MASTER_MAX_SLOTS; i++) {
        struct master_slot *s = &m->slot[i];
        if (s->generation != id)
            continue;
        s->active = 0;
        if (s->pid != 0)
            kill(s->pid, SIGTERM);
    }
}

static int master_live_workers(const struct master *m)
{
    int n = 0;
    for (int i = 0; i < MASTER_MAX_SLOTS; i++)
        n += m->slot[i].pid != 0;
    return n;
}

/* A starting generation is complete when a worker of it is ready in every lane: then, and only
 * then, the serving one (and anything older) drains. */
static void master_check_ready(struct master *m)
{
    if (!m->next.id || m->stopping)
        return;
    int want = config_worker_count(&m->next.cfg), ready = 0;
    for (int i = 0; i < MASTER_MAX_SLOTS; i++) {
        const struct master_slot *s = &m->slot[i];
        const struct metrics_slot *ms = &m->metrics->slot[i];
        if (s->active && s->generation == m->next.id && s->pid != 0 && ms->pid == s->pid && ms->ready &&
            ms->generation == m->next.id)
            ready++;
    }
    if (ready < want)
        return;
    uint64_t old = m->cur.id;
    for (int i = 0; i < MASTER_MAX_SLOTS; i++) {
        struct master_slot *s = &m->slot[i];
        if (s->generation == m->next.id)
            continue;
        s->active = 0;
        if (s->pid != 0)
            kill(s->pid, SIGTERM);
    }
    master_close_gen(&m->cur);
    m->cur = m->next;
    m->next.id = 0;
    m->next.admin_fd = -1;
    m->next.lanes.nlanes = 0;
    log_info("generation %llu ready (%d workers): draining generation %llu", (unsigned long long)m->cur.id,
             want, (unsigned long long)old);
}

/* Loads path, or with no file the defaults and TYTO_* variables, as at start-up. */
static int master_load_config(const char *path, struct config *cfg, char *err, size_t errlen)
{
    if (path)
        return config_load(path, cfg, err, errlen);
    config_defaults(cfg);
    if (config_apply_env(cfg, environ, err, errlen) < 0)
        return -1;
    return config_validate(cfg, err, errlen);
}

/* Resolves the UDP connection-id secret into cfg->udp_secret for the workers: udp.secret_file is
 * read here (at start and on every reload, so a rotation is a file change and a SIGHUP); with
 * neither, the host's random secret drawn at start (the same for every worker and generation, so
 * a reload keeps ids valid; not across hosts or restarts). Returns 0, or -1 with a message. */
static int master_udp_secret(struct master *m, struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->udp_port)
        return 0;
    if (cfg->udp_secret_file[0]) {
        FILE *f = fopen(cfg->udp_secret_file, "r");
        size_t n;
        if (!f) {
            snprintf(err, errlen, "udp.secret_file %s: %s", cfg->udp_secret_file, strerror(errno));
            return -1;
        }
        n = fread(cfg->udp_secret, 1, sizeof(cfg->udp_secret) - 1, f);
        fclose(f);
        while (n > 0 && (cfg->udp_secret[n - 1] == '\n' || cfg->udp_secret[n - 1] == '\r' ||
                         cfg->udp_secret[n - 1] == ' '))
            n--;
        cfg->udp_secret[n] = '\0';
        if (n == 0 || memchr(cfg->udp_secret, '\0', n)) {
            snprintf(err, errlen, "udp.secret_file %s: empty, or holds a NUL byte", cfg->udp_secret_file);
            return -1;
        }
        return 0;
    }
    if (cfg->udp_secret[0])
        return 0;
    if (!m->udp_random_secret[0]) {
        uint8_t r[32];
        FILE *f = fopen("/dev/urandom", "r");
        if (!f || fread(r, 1, sizeof(r), f) != sizeof(r)) {
            if (f)
                fclose(f);
            snprintf(err, errlen, "cannot read /dev/urandom for the UDP secret");
            return -1;
        }
        fclose(f);
        for (size_t i = 0; i < sizeof(r); i++)
            snprintf(m->udp_random_secret + 2 * i, 3, "%02x", r[i]);
        log_warn("udp.secret is not set: this host drew a random one; UDP connection ids will not be "
                 "accepted by other hosts or after a restart (set udp.secret or udp.secret_file on every host)");
    }
    snprintf(cfg->udp_secret, sizeof(cfg->udp_secret), "%s", m->udp_random_secret);
    return 0;
}

/* SIGHUP: a valid new file starts a new generation; the serving one drains when the new one is
 * complete (master_check_ready); an invalid one is logged and changes nothing. A reload while
 * an earlier one is still starting supersedes it: the unfinished generation drains at once and
 * the serving one keeps serving until the newest is complete. (Deferring instead would leave a
 * reload that can never complete, e.g. workers that crash at start, in the way of the fix.) */
static void master_reload(struct master *m)
{
    static struct master_gen g; /* large; the master is single-threaded */
    struct config next;
    char err[512];
    if (master_load_config(m->config_path, &next, err, sizeof(err)) < 0 ||
        master_udp_secret(m, &next, err, sizeof(err)) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    if (master_open_gen(m, &next, &g, err, sizeof(err)) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    if (log_init(next.log_level, next.log_file, err, sizeof(err)) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        master_close_gen(&g);
        return;
    }
    if (m->next.id) {
        log_info("generation %llu had not started every worker yet: superseded, draining it",
                 (unsigned long long)m->next.id);
        master_retire(m, m->next.id);
        master_close_gen(&m->next);
    }
    g.id = ++m->last_generation;
    m->next = g;
    log_info("configuration reloaded from %s: starting generation %llu (generation %llu serves until it is ready)",
             m->config_path ? m->config_path : "the environment", (unsigned long long)m->next.id,
             (unsigned long long)m->cur.id);
    if (master_fill_gen(m, &m->next) < 0)
        log_error("could not start every worker of generation %llu yet; retrying", (unsigned long long)m->next.id);
}

/* SIGTERM/SIGINT: every worker drains; stragglers are killed after the configured bound. */
static void master_stop(struct master *m, sigset_t *set)
{
    m->stopping = 1;
    log_info("stopping: draining %d workers", master_live_workers(m));
    master_signal_workers(m, SIGTERM);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int killed = 0;
    while (master_live_workers(m) > 0) {
        struct timespec tick = { 0, 100 * 1000000L };
        sigtimedwait(set, NULL, &tick);
        master_reap(m);
        if (!killed && master_since_s(&start) > m->cur.cfg.shutdown_timeout_s + MASTER_KILL_GRACE_S) {
            log_error("workers did not drain in time: killing %d", master_live_workers(m));
            master_signal_workers(m, SIGKILL);
            killed = 1;
        }
    }
}

static int master_write_pid_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
        snprintf(err, errlen, "%s: cannot write pid file: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Where the storage is, for the start line: never redis.url's password. */
static void master_storage_text(const struct config *cfg, char *buf, size_t cap)
{
    struct config_redis_target t;
    char msg[256];

    if (cfg->storage != CONFIG_STORAGE_REDIS)
        snprintf(buf, cap, "memory");
    else if (cfg->redis_cluster)
        snprintf(buf, cap, "redis cluster (seed %s%s)", cfg->redis_nodes[0], cfg->redis_nodes_count > 1 ? ", ..." : "");
    else if (cfg->redis_sentinels_count > 0)
        snprintf(buf, cap, "redis sentinel master '%s'", cfg->redis_master_name);
    else if (config_parse_redis_url(cfg->redis_url, &t, msg, sizeof(msg)) == 0 && !t.unix_socket)
        snprintf(buf, cap, "redis %s%s%s:%d/%d", strchr(t.host, ':') ? "[" : "", t.host, strchr(t.host, ':') ? "]" : "",
                 t.port, t.db);
    else if (config_parse_redis_url(cfg->redis_url, &t, msg, sizeof(msg)) == 0)
        snprintf(buf, cap, "redis unix:%s?db=%d", t.path, t.db);
    else
        snprintf(buf, cap, "redis");
}

int master_run(const char *config_path, const struct config *cfg)
{
    static struct master m; /* large (slot table); one per process */
    char err[512], storage[CONFIG_STR_MAX + 64];
    int rc = 1;
    memset(&m, 0, sizeof(m));
    m.config_path = config_path;
    m.pid = getpid();
    m.cur.cfg = *cfg;
    m.cur.admin_fd = -1;
    m.next.admin_fd = -1;

    sigset_t set;
    master_signal_mask(&set);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (master_udp_secret(&m, &m.cur.cfg, err, sizeof(err)) < 0 ||
        master_check_port_free(&m.cur.cfg, err, sizeof(err)) < 0 ||
        master_open_lanes(&m.cur.cfg, &m.cur.lanes, master_lane_count(&m.cur.cfg), err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    if (master_open_admin(&m.cur.cfg, &m.cur.admin_fd, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out_listeners;
    }
    m.metrics = metrics_new(MASTER_MAX_SLOTS);
    if (!m.metrics) {
        log_error("cannot map shared memory for metrics: %s", strerror(errno));
        goto out_listeners;
    }
    /* Mapped even while rate_limit.announces is 0, so that a reload can turn the limit on. */
    m.ratelimit = ratelimit_new(MASTER_RATELIMIT_ORDER);
    m.peercap = peercap_new(MASTER_PEERCAP_ORDER);   /* also while the cap is 0: a reload may set it */
    if (!m.ratelimit || !m.peercap) {
        log_error("cannot map shared memory for the rate limit and the peer cap: %s", strerror(errno));
        goto out_metrics;
    }
    if (m.cur.cfg.pid_file[0] && master_write_pid_file(m.cur.cfg.pid_file, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out_metrics;
    }
    master_storage_text(&m.cur.cfg, storage, sizeof(storage));
    log_info("tyto master started: port %d, %d workers, storage %s, admin %s", m.cur.cfg.port,
             config_worker_count(&m.cur.cfg), storage, m.cur.cfg.admin_listen[0] ? m.cur.cfg.admin_listen : "off");
    m.cur.id = m.last_generation = 1;
    if (master_fill_gen(&m, &m.cur) < 0)
        log_error("could not start every worker; retrying");

    while (!m.stopping) {
        long wait_ms = master_respawn_due(&m);
        if (m.next.id && wait_ms > MASTER_READY_POLL_MS)
            wait_ms = MASTER_READY_POLL_MS;
        struct timespec timeout = { wait_ms / 1000, (wait_ms % 1000) * 1000000L };
        int sig = sigtimedwait(&set, NULL, &timeout);
        master_reap(&m);
        master_fill_gen(&m, &m.cur);
        master_fill_gen(&m, &m.next);
        master_check_ready(&m);
        switch (sig) {
        case SIGHUP:
            master_reload(&m);
            break;
        case SIGUSR1:
            if (log_reopen() < 0)
                log_error("cannot reopen log file: %s", strerror(errno));
            master_signal_workers(&m, SIGUSR1);
            break;
        case SIGTERM:
        case SIGINT:
            master_stop(&m, &set);
            break;
        default:
            break;
        }
    }
    rc = 0;
    log_info("tyto master stopped");
    if (m.cur.cfg.pid_file[0])
        unlink(m.cur.cfg.pid_file);
out_metrics:
    peercap_free(m.peercap);
    ratelimit_free(m.ratelimit);
    metrics_free(m.metrics);
out_listeners:
    master_close_gen(&m.next);
    master_close_gen(&m.cur);
    return rc;
}
