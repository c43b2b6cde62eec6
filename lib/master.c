/* The master: binds every listener before forking (so a respawned worker takes over the same
 * sockets and no connection is refused), forks the workers, then waits for signals with
 * sigtimedwait. Signals stay blocked in the master, so there are no handlers and no races:
 *   SIGCHLD  reap, respawn (at once, or with back-off for a worker that keeps dying)
 *   SIGHUP   re-read the configuration; if valid, start a new generation and drain the old one
 *   SIGTERM/SIGINT  drain every worker (bounded), remove the pid file, exit 0
 *   SIGUSR1  reopen the log file, here and in every worker */
#include "lib/master.h"

#include <errno.h>
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
#define MASTER_MAX_LISTENERS 2        /* addresses: IPv4 and IPv6 */
#define MASTER_MAX_LANES 64           /* SO_REUSEPORT sockets per address */
#define MASTER_RATELIMIT_ORDER 17     /* 2^17 addresses counted at once (1 MiB shared) */
#define MASTER_PEERCAP_ORDER 20       /* 2^20 words: ~1M (address, swarm, port) items (8 MiB shared) */
#define MASTER_STABLE_S 10            /* a worker that lived this long resets its back-off */
#define MASTER_BACKOFF_MAX_MS 10000
#define MASTER_KILL_GRACE_S 5         /* past shutdown.timeout_s, stragglers get SIGKILL */

struct master_slot {
    pid_t pid;                        /* 0: free */
    uint64_t generation;
    int active;                       /* part of the current generation (respawned if it dies) */
    int failures;                     /* consecutive early deaths */
    struct timespec started;
    struct timespec respawn_at;       /* pending respawn time when pid == 0 and active */
    int lane;                         /* index within its generation: which sockets it accepts on */
};

/* Listening sockets. Each address is bound once per lane, with SO_REUSEPORT, so the kernel
 * spreads new connections evenly over the lanes (a shared socket let one worker take every
 * keep-alive connection: bench/RESULTS.md). The master keeps every lane open, so a respawned
 * worker, or the next generation's, takes over the same queue and nothing queued is lost. */
struct master_lanes {
    int fds[MASTER_MAX_LANES][MASTER_MAX_LISTENERS];
    int nlanes;
    int nfds;                         /* per lane */
};

struct master {
    const char *config_path;
    struct config cfg;
    struct master_lanes lanes;
    struct metrics *metrics;
    struct ratelimit *ratelimit;      /* per-address announce counters, shared by the workers */
    struct peercap *peercap;          /* ports per (address, swarm), shared by the workers */
    struct master_slot slot[MASTER_MAX_SLOTS];
    uint64_t generation;
    int stopping;
};

static double master_since_s(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
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

/* Opens one lane: the HTTP listeners cfg asks for. The first lane decides which addresses the
 * host can serve (want6 < 0); later lanes open the same ones. Returns their number, or -1 with a
 * message. */
static int master_open_lane(const struct config *cfg, int *fds, int want6, char *err, size_t errlen)
{
    int n = 0;
    const char *addrs[MASTER_MAX_LISTENERS] = { cfg->listen_ipv4, cfg->listen_ipv6 };
    for (int i = 0; i < MASTER_MAX_LISTENERS; i++) {
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
    }
    return n;
}

/* SO_REUSEPORT would let this process join the sockets of another one of the same user on the
 * same port and silently share its traffic: at start-up, a plain bind must find the port free. */
static int master_check_port_free(const struct config *cfg, char *err, size_t errlen)
{
    const char *addrs[MASTER_MAX_LISTENERS] = { cfg->listen_ipv4, cfg->listen_ipv6 };
    for (int i = 0; i < MASTER_MAX_LISTENERS; i++) {
        if (!addrs[i][0])
            continue;
        int fd = net_listen_tcp(addrs[i], cfg->port, false, err, errlen);
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
        int want6 = l->nlanes == 0 ? -1 : l->nfds > 1 || !cfg->listen_ipv4[0];
        int n = master_open_lane(cfg, l->fds[l->nlanes], want6, err, errlen);
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

static int master_same_listeners(const struct config *a, const struct config *b)
{
    return a->port == b->port && strcmp(a->listen_ipv4, b->listen_ipv4) == 0 &&
           strcmp(a->listen_ipv6, b->listen_ipv6) == 0;
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

/* In the child: undo the master's signal set-up and become a worker. Never returns. */
static void master_become_worker(struct master *m, int i)
{
    sigset_t set;
    master_signal_mask(&set);
    /* Reloads are the master's business, and so is Ctrl-C: the terminal sends SIGINT to the
     * whole process group, and the master answers it by draining the workers with SIGTERM. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    /* A worker must not outlive its master (e.g. after SIGKILL of the master). */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        _exit(0);
    m->metrics->slot[i].pid = getpid();
    m->metrics->slot[i].generation = m->generation;
    m->metrics->slot[i].started++;
    int fds[MASTER_MAX_LANES * MASTER_MAX_LISTENERS];
    int nfds = master_lane_fds(&m->lanes, m->slot[i].lane, config_worker_count(&m->cfg), fds);
    int rc = worker_run(&m->cfg, fds, nfds, m->metrics, i, m->ratelimit, m->peercap);
    m->metrics->slot[i].pid = 0;
    _exit(rc);
}

static int master_spawn(struct master *m, int i)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0)
        master_become_worker(m, i);
    struct master_slot *s = &m->slot[i];
    s->pid = pid;
    s->generation = m->generation;
    s->active = 1;
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    log_info("worker %d started (pid %d, generation %llu)", i, (int)pid, (unsigned long long)m->generation);
    return 0;
}

/* Starts the current generation in free slots. */
static int master_spawn_generation(struct master *m)
{
    int want = config_worker_count(&m->cfg);
    int started = 0;
    for (int i = 0; i < MASTER_MAX_SLOTS && started < want; i++) {
        if (m->slot[i].pid != 0 || m->slot[i].active)
            continue;
        memset(&m->slot[i], 0, sizeof(m->slot[i]));
        m->slot[i].lane = started;
        if (master_spawn(m, i) < 0)
            return -1;
        started++;
    }
    return started == want ? 0 : -1;
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

/* Reaps every exited worker; schedules a respawn for those of the current generation. */
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
            m->metrics->slot[i].pid = 0;
            if (!s->active || m->stopping) {
                log_info("worker %d (pid %d) of generation %llu %s", i, (int)pid,
                         (unsigned long long)s->generation, how);
                s->active = 0;
                break;
            }
            /* Died on its own: respawn at once the first time, then back off. */
            double lived = master_since_s(&s->started);
            s->failures = lived >= MASTER_STABLE_S ? 1 : s->failures + 1;
            long delay_ms = 0;
            if (s->failures > 1) {
                delay_ms = 100L << (s->failures - 2 < 10 ? s->failures - 2 : 10);
                if (delay_ms > MASTER_BACKOFF_MAX_MS)
                    delay_ms = MASTER_BACKOFF_MAX_MS;
            }
            log_error("worker %d (pid %d) %s after %.1f s; respawning in %ld ms", i, (int)pid, how, lived,
                      delay_ms);
            clock_gettime(CLOCK_MONOTONIC, &s->respawn_at);
            s->respawn_at.tv_sec += delay_ms / 1000;
            s->respawn_at.tv_nsec += (delay_ms % 1000) * 1000000L;
            if (s->respawn_at.tv_nsec >= 1000000000L) {
                s->respawn_at.tv_sec++;
                s->respawn_at.tv_nsec -= 1000000000L;
            }
            break;
        }
    }
}

/* Respawns the slots whose back-off has passed; returns ms until the next one is due (or 1000). */
static long master_respawn_due(struct master *m)
{
    long next_ms = 1000;
    for (int i = 0; i < MASTER_MAX_SLOTS; i++) {
        struct master_slot *s = &m->slot[i];
        if (s->pid != 0 || !s->active || m->stopping)
            continue;
        double wait_s = -master_since_s(&s->respawn_at);
        if (wait_s <= 0) {
            int failures = s->failures;
            if (master_spawn(m, i) == 0)
                s->failures = failures;
        } else if ((long)(wait_s * 1000) + 1 < next_ms) {
            next_ms = (long)(wait_s * 1000) + 1;
        }
    }
    return next_ms;
}

static void master_signal_workers(struct master *m, int sig, int only_old)
{
    for (int i = 0; i < MASTER_MAX_SLOTS; i++) {
        struct master_slot *s = &m->slot[i];
        if (s->pid == 0 || (only_old && s->generation == m->generation))
            continue;
        kill(s->pid, sig);
    }
}

static int master_live_workers(const struct master *m)
{
    int n = 0;
    for (int i = 0; i < MASTER_MAX_SLOTS; i++)
        n += m->slot[i].pid != 0;
    return n;
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

/* SIGHUP: a valid new file starts a new generation, then the old one drains; an invalid one is
 * logged and changes nothing. */
static void master_reload(struct master *m)
{
    struct config next;
    char err[512];
    if (master_load_config(m->config_path, &next, err, sizeof(err)) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    /* Same addresses: the new generation takes over the running lanes (more if it has more
     * workers). New addresses: a new set of lanes; the old one closes once the new is open. */
    static struct master_lanes fresh; /* large; the master is single-threaded */
    int same = master_same_listeners(&m->cfg, &next);
    int had = m->lanes.nlanes;
    fresh.nlanes = 0;
    if (same ? master_open_lanes(&next, &m->lanes, master_lane_count(&next), err, sizeof(err)) < 0
             : master_open_lanes(&next, &fresh, master_lane_count(&next), err, sizeof(err)) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    if (log_init(next.log_level, next.log_file, err, sizeof(err)) < 0) {
        log_error("reload refused, keeping the running configuration: %s", err);
        if (!same)
            master_close_lanes(&fresh);
        while (m->lanes.nlanes > had)
            master_close_listeners(m->lanes.fds[--m->lanes.nlanes], m->lanes.nfds);
        return;
    }
    for (int i = 0; i < MASTER_MAX_SLOTS; i++)
        m->slot[i].active = 0; /* the old generation drains and is not respawned */
    m->cfg = next;
    if (!same) {
        master_close_lanes(&m->lanes);
        m->lanes = fresh;
    }
    m->generation++;
    log_info("configuration reloaded from %s: starting generation %llu", m->config_path ? m->config_path : "the environment",
             (unsigned long long)m->generation);
    if (master_spawn_generation(m) < 0)
        log_error("could not start every worker of generation %llu", (unsigned long long)m->generation);
    master_signal_workers(m, SIGTERM, 1);
}

/* SIGTERM/SIGINT: every worker drains; stragglers are killed after the configured bound. */
static void master_stop(struct master *m, sigset_t *set)
{
    m->stopping = 1;
    log_info("stopping: draining %d workers", master_live_workers(m));
    master_signal_workers(m, SIGTERM, 0);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int killed = 0;
    while (master_live_workers(m) > 0) {
        struct timespec tick = { 0, 100 * 1000000L };
        sigtimedwait(set, NULL, &tick);
        master_reap(m);
        if (!killed && master_since_s(&start) > m->cfg.shutdown_timeout_s + MASTER_KILL_GRACE_S) {
            log_error("workers did not drain in time: killing %d", master_live_workers(m));
            master_signal_workers(m, SIGKILL, 0);
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

int master_run(const char *config_path, const struct config *cfg)
{
    static struct master m; /* large (slot table); one per process */
    char err[512];
    int rc = 1;
    memset(&m, 0, sizeof(m));
    m.config_path = config_path;
    m.cfg = *cfg;
    m.generation = 1;

    sigset_t set;
    master_signal_mask(&set);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (master_check_port_free(&m.cfg, err, sizeof(err)) < 0 ||
        master_open_lanes(&m.cfg, &m.lanes, master_lane_count(&m.cfg), err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
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
    if (m.cfg.pid_file[0] && master_write_pid_file(m.cfg.pid_file, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out_metrics;
    }
    log_info("tyto master started: port %d, %d workers, storage %s", m.cfg.port, config_worker_count(&m.cfg),
             m.cfg.storage == CONFIG_STORAGE_REDIS ? m.cfg.redis_url : "memory");
    if (master_spawn_generation(&m) < 0)
        log_error("could not start every worker; retrying");

    while (!m.stopping) {
        long wait_ms = master_respawn_due(&m);
        struct timespec timeout = { wait_ms / 1000, (wait_ms % 1000) * 1000000L };
        int sig = sigtimedwait(&set, NULL, &timeout);
        master_reap(&m);
        switch (sig) {
        case SIGHUP:
            master_reload(&m);
            break;
        case SIGUSR1:
            if (log_reopen() < 0)
                log_error("cannot reopen log file: %s", strerror(errno));
            master_signal_workers(&m, SIGUSR1, 0);
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
    if (m.cfg.pid_file[0])
        unlink(m.cfg.pid_file);
out_metrics:
    peercap_free(m.peercap);
    ratelimit_free(m.ratelimit);
    metrics_free(m.metrics);
out_listeners:
    master_close_lanes(&m.lanes);
    return rc;
}
