/* blockd.c: the one binary.
 *
 *   blockd --role=agent|proxy|blob|all --config FILE
 *   blockd ctl ...            (the admin CLI, see ctl.c)
 *   blockd --help | --version
 *
 * Order of events: parse flags; load and validate the config (any error is
 * one line on stderr and exit status 2, before a port is bound); open the
 * log; build the reactor; start every role instance the --role asks for,
 * storage first (blob, proxy, agent); run the loop.  SIGTERM/SIGINT stop
 * the instances in reverse order, each asynchronously, and the loop ends
 * when the last one reports done.  A failed start stops what already
 * started and exits 1.
 *
 * Exit status: 0 clean stop, 1 runtime or start failure, 2 usage or config
 * error. */
#include "bd.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "net/metrics.h"
#include "net/reactor.h"
#include "roles/proxy.h"
#include "roles/blob.h"
#include "roles/role.h"
#include "roles/agent.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Role modules compiled into this binary, in start order. */
static const struct role_ops *const role_modules[] = {
    &blob_role_ops,
    &proxy_role_ops,
    &agent_role_ops,
};

struct run {
    struct reactor *rx;
    struct role *roles;   /* started instances, in start order */
    unsigned n_roles;
    unsigned stopping;    /* instances whose stop has not reported done */
    int next_stop;        /* index of the next instance to stop (reverse order) */
};

static struct run the_run;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: blockd --role=agent|proxy|blob|all --config FILE\n"
            "       blockd ctl COMMAND ...   (blockd ctl --help)\n"
            "       blockd --help | --version\n"
            "\n"
            "  --role ROLE     which role instances of the config to run; 'all' runs\n"
            "                  every section (a one-process development cluster)\n"
            "  --config FILE   JSON configuration (see README, Configuration)\n"
            "  --check         validate the config and exit (0 valid, 2 invalid)\n"
            "  --help          this text\n"
            "  --version       print the version\n");
}

static void stop_next(struct role *done_role);

/* Stop instances one at a time, last started first: an agent flushes its
 * cache to the proxies before they go away. */
static void stop_next(struct role *done_role)
{
    struct run *run = &the_run;
    if (done_role) log_info(done_role->tag, "stopped");
    if (run->next_stop < 0) {
        reactor_break(run->rx);
        return;
    }
    struct role *r = &run->roles[run->next_stop--];
    log_info(r->tag, "stopping");
    r->ops->stop(r, stop_next);
}

static void on_stop_signal(void *arg)
{
    (void)arg;
    the_run.next_stop = (int)the_run.n_roles - 1;
    stop_next(NULL);
}

static const struct role_ops *find_role(const char *name)
{
    for (unsigned i = 0; i < BD_ARRAY_SIZE(role_modules); i++)
        if (role_modules[i] && strcmp(role_modules[i]->name, name) == 0) return role_modules[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0) return ctl_main(argc - 1, argv + 1);
    const char *role_name = NULL, *config_path = NULL;
    bool check_only = false;
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},   {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "r:c:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': role_name = optarg; break;
        case 'c': config_path = optarg; break;
        case 'k': check_only = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("blockd %s\n", BD_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "blockd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!config_path || (!role_name && !check_only)) {
        fprintf(stderr, "blockd: --config and --role are required\n");
        usage(stderr);
        return 2;
    }
    bool all = role_name && strcmp(role_name, "all") == 0;
    if (role_name && !all && strcmp(role_name, "agent") && strcmp(role_name, "proxy") &&
        strcmp(role_name, "blob")) {
        fprintf(stderr, "blockd: --role must be agent, proxy, blob or all, not '%s'\n",
                role_name);
        return 2;
    }

    struct bd_config cfg;
    char err[1024];
    if (config_load(config_path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "blockd: %s\n", err);
        return 2;
    }
    if (check_only) {
        printf("%s: valid\n", config_path);
        config_free(&cfg);
        return 0;
    }

    /* Which modules, and how many instances of each. */
    static const char *const order[] = {"blob", "proxy", "agent"};
    const struct role_ops *mods[3] = {NULL, NULL, NULL};
    unsigned total = 0;
    for (unsigned i = 0; i < 3; i++) {
        if (!all && strcmp(order[i], role_name) != 0) continue;
        const struct role_ops *m = find_role(order[i]);
        unsigned n = m ? m->instances(&cfg) : 0;
        if (!all && n == 0) {
            fprintf(stderr, "blockd: %s: no \"%s\" section for --role=%s\n", config_path,
                    order[i], role_name);
            config_free(&cfg);
            return 2;
        }
        if (!all && !m) {
            fprintf(stderr, "blockd: the %s role is not built into this binary\n", order[i]);
            config_free(&cfg);
            return 2;
        }
        mods[i] = m;
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "blockd: %s: nothing to run\n", config_path);
        config_free(&cfg);
        return 2;
    }

    int rc = log_init(cfg.log_file, cfg.log_level);
    if (rc < 0) {
        fprintf(stderr, "blockd: cannot open log %s: %s\n", cfg.log_file, bd_strerror(rc));
        config_free(&cfg);
        return 1;
    }
    struct run *run = &the_run;
    run->rx = reactor_new();
    run->roles = calloc(total, sizeof(*run->roles));
    if (!run->rx || !run->roles) {
        fprintf(stderr, "blockd: out of memory\n");
        return 1;
    }
    reactor_on_stop(run->rx, on_stop_signal, NULL);

    int status = 0;
    for (unsigned i = 0; i < 3 && status == 0; i++) {
        if (!mods[i]) continue;
        unsigned n = mods[i]->instances(&cfg);
        for (unsigned k = 0; k < n; k++) {
            struct role *r = &run->roles[run->n_roles];
            r->ops = mods[i];
            err[0] = 0;
            rc = mods[i]->start(r, run->rx, &cfg, k, err, sizeof(err));
            if (rc < 0) {
                fprintf(stderr, "blockd: %s: %s\n", r->tag[0] ? r->tag : mods[i]->name,
                        err[0] ? err : bd_strerror(rc));
                log_error(r->tag[0] ? r->tag : mods[i]->name, "start failed: %s",
                          err[0] ? err : bd_strerror(rc));
                status = 1;
                break;
            }
            run->n_roles++;
            log_info(r->tag, "started (blockd %s)", BD_VERSION);
        }
    }
    if (status != 0) {
        /* Unwind what started, through the same asynchronous stop path. */
        if (run->n_roles > 0) {
            on_stop_signal(NULL);
            reactor_run(run->rx);
        }
    } else {
        if (reactor_run(run->rx) < 0) status = 1;
    }
    for (unsigned i = run->n_roles; i-- > 0;) run->roles[i].ops->free(&run->roles[i]);
    free(run->roles);
    reactor_free(run->rx);
    metrics_reset();
    config_free(&cfg);
    if (status == 0) log_info("main", "exiting");
    return status;
}
