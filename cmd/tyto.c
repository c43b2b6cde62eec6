/* tyto: the tracker's command line. Loads and checks the configuration, then hands over to the
 * master (lib/master.c), which forks the workers. Foreground by default (containers, systemd);
 * -d detaches like a classic Unix daemon. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/inspect.h"
#include "lib/log.h"
#include "lib/master.h"
#include "lib/private_admin.h"

#define TYTO_VERSION "0.1.0"
#define TYTO_DEFAULT_CONFIG "tyto.yaml"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tyto [-c PATH] [-t] [-d]\n"
            "       tyto [-c PATH] swarm <hex info_hash>   peers of one swarm, read from Redis\n"
            "       tyto [-c PATH] swarms [N]              the N busiest swarms (default 20)\n"
            "       tyto [-c PATH] swarms --anomalies [N]  the swarms the statistics flagged\n"
            "       tyto [-c PATH] user|torrent ...        private tracker accounts and torrents\n"
            "                                              (tyto user, tyto torrent: their usage)\n"
            "  -c PATH  configuration file (default ./" TYTO_DEFAULT_CONFIG "; without it, defaults and TYTO_* variables)\n"
            "  -t       check the configuration and exit\n"
            "  -d       detach and run in the background (set log.file and pid_file)\n"
            "  -V       print the version\n");
}

/* Loads the configuration; a missing default file means "defaults + environment". */
static int load_config(const char *path, int explicit_path, struct config *cfg, char *err, size_t errlen)
{
    if (!explicit_path && access(path, F_OK) != 0) {
        config_defaults(cfg);
        if (config_apply_env(cfg, environ, err, errlen) < 0)
            return -1;
        return config_validate(cfg, err, errlen);
    }
    return config_load(path, cfg, err, errlen);
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -1;
    pid = fork(); /* no longer a session leader: can never reacquire a terminal */
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return -1;
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
    return chdir("/");
}

int main(int argc, char **argv)
{
    const char *path = TYTO_DEFAULT_CONFIG;
    int explicit_path = 0, check_only = 0, detach = 0, opt;
    while ((opt = getopt(argc, argv, "+c:tdVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            explicit_path = 1;
            break;
        case 't':
            check_only = 1;
            break;
        case 'd':
            detach = 1;
            break;
        case 'V':
            printf("tyto %s\n", TYTO_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int inspect = optind < argc && (strcmp(argv[optind], "swarm") == 0 || strcmp(argv[optind], "swarms") == 0);
    int manage = optind < argc && (strcmp(argv[optind], "user") == 0 || strcmp(argv[optind], "torrent") == 0);
    if (optind < argc && !inspect && !manage) {
        usage(stderr);
        return 2;
    }

    struct config cfg;
    char err[512];
    if (load_config(path, explicit_path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "tyto: %s\n", err);
        return 1;
    }
    if (inspect)
        return inspect_main(&cfg, argc - optind, argv + optind, stdout, stderr);
    if (manage)
        return private_admin_main(&cfg, argc - optind, argv + optind, stdout, stderr);
    if (check_only) {
        printf("tyto: configuration %s is valid\n", explicit_path || access(path, F_OK) == 0 ? path : "(defaults)");
        return 0;
    }

    /* Reloads re-read the file after a possible chdir: keep an absolute path. */
    char abs_path[PATH_MAX];
    if (explicit_path || access(path, F_OK) == 0) {
        if (!realpath(path, abs_path)) {
            fprintf(stderr, "tyto: %s: %s\n", path, strerror(errno));
            return 1;
        }
        path = abs_path;
    } else {
        path = NULL;
    }
    if (log_init(cfg.log_level, cfg.log_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "tyto: %s\n", err);
        return 1;
    }
    if (detach && daemonize() < 0) {
        fprintf(stderr, "tyto: cannot detach: %s\n", strerror(errno));
        return 1;
    }
    return master_run(path, &cfg);
}
