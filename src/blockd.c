/* blockd.c: the one binary.
 *
 *   blockd --role=agent|proxy|blob|all --config FILE [--log-format=text|json]
 *   blockd ctl ...            (the admin CLI, see ctl.c)
 *   blockd cert ...           (the cluster CA, see cert.c)
 *   blockd --config-doc=markdown|ansible   (config_doc.h)
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
 * Under systemd (Type=notify, sd_notify.h): STATUS= says what is starting;
 * once every instance has started, a timer asks each one's ready() every
 * 100 ms, STATUS= naming the first that waits and why, until all serve:
 * then READY=1.  STOPPING=1 goes out when the stop begins, and WATCHDOG=1
 * every WATCHDOG_USEC/2 from a reactor timer for as long as the loop runs
 * (a stuck loop stops the pings, and systemd restarts the unit).  None of
 * this happens, nor costs anything, outside systemd.
 *
 * Exit status: 0 clean stop, 1 runtime or start failure, 2 usage or config
 * error. */
#include "base/bd.h"
#include "config/config.h"
#include "cert.h"
#include "config/config_doc.h"
#include "ctl.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "runtime/reactor.h"
#include "runtime/sd_notify.h"
#include "roles/proxy/proxy.h"
#include "roles/blob/blob.h"
#include "roles/role.h"
#include "roles/agent/agent.h"

#include <getopt.h>
#include <malloc.h>
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
    struct event *ready_ev;   /* polls the instances' ready() until all serve */
    char ready_why[256];      /* the last STATUS= sent while waiting */
    struct sd_notify_watchdog *watchdog;
};

#define READY_POLL_MS 100

static struct run the_run;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: blockd --role=agent|proxy|blob|all --config FILE\n"
            "       blockd ctl COMMAND ...   (blockd ctl --help)\n"
            "       blockd cert COMMAND ...  (blockd cert --help)\n"
            "       blockd --config-doc=markdown|ansible\n"
            "       blockd --help | --version\n"
            "\n"
            "  --role ROLE     which role instances of the config to run; 'all' runs\n"
            "                  every section (a one-process development cluster)\n"
            "  --config FILE   JSON configuration (see README, Configuration)\n"
            "  --check         validate the config and exit (0 valid, 2 invalid)\n"
            "  --log-format=F  text or json (one object per line, for log shippers);\n"
            "                  overrides the config's log.format\n"
            "  --config-doc=F  print the config keys as the README's tables (markdown)\n"
            "                  or the ansible role's defaults (ansible)\n"
            "  --help          this text\n"
            "  --version       print the version\n");
}

static void stop_next(struct role *done_role);

static void log_exposed(void *arg, const char *key, const char *addr)
{
    (void)arg;
    log_warn("blockd", "%s = %s is not on loopback and insecure_plaintext is set: anyone who "
                       "reaches it is trusted, unauthenticated and unencrypted", key, addr);
}

static void log_exposed_nbd(void *arg, const char *key, const char *addr)
{
    (void)arg;
    log_warn("blockd", "%s = %s is not on loopback and nbd_tls is not \"require\": it accepts "
                       "plaintext NBD (other hosts open only volumes attached for their TLS "
                       "client id, but a client that does not ask for TLS talks in the clear)",
             key, addr);
}

/* insecure_plaintext with a listener others can reach: say so, every time
 * the config is checked and every start. */
static void warn_exposed(void *arg, const char *key, const char *addr)
{
    const char *path = arg;
    fprintf(stderr,
            "blockd: warning: %s: %s = %s is not on loopback and insecure_plaintext is set: "
            "anyone who reaches it is trusted, unauthenticated and unencrypted\n",
            path, key, addr);
}

/* An NBD TCP listener others can reach without nbd_tls: require. */
static void warn_exposed_nbd(void *arg, const char *key, const char *addr)
{
    const char *path = arg;
    fprintf(stderr,
            "blockd: warning: %s: %s = %s is not on loopback and nbd_tls is not \"require\": "
            "it accepts plaintext NBD (other hosts open only volumes attached for their TLS "
            "client id, but a client that does not ask for TLS talks in the clear)\n",
            path, key, addr);
}

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
    if (the_run.ready_ev) event_del(the_run.ready_ev);
    sd_notify_send("STOPPING=1\nSTATUS=stopping: draining");
    the_run.next_stop = (int)the_run.n_roles - 1;
    stop_next(NULL);
}

/* Every READY_POLL_MS until every instance serves (role.h ready). */
static void on_ready_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *run = arg;
    for (unsigned i = 0; i < run->n_roles; i++) {
        struct role *r = &run->roles[i];
        char why[192] = "";
        if (!r->ops->ready || r->ops->ready(r, why, sizeof(why))) continue;
        char status[sizeof(run->ready_why)];
        snprintf(status, sizeof(status), "%s: %s", r->tag, why[0] ? why : "not serving yet");
        if (strcmp(status, run->ready_why) != 0) {
            /* Each new reason once, in the log and in systemctl status. */
            memcpy(run->ready_why, status, sizeof(status));
            log_info("main", "waiting: %s", status);
            sd_notify_sendf("STATUS=waiting: %s", status);
        }
        return;
    }
    event_del(run->ready_ev);
    char tags[256] = "";
    size_t n = 0;
    for (unsigned i = 0; i < run->n_roles && n < sizeof(tags); i++)
        n += (size_t)snprintf(tags + n, sizeof(tags) - n, "%s%s", i ? " " : "", run->roles[i].tag);
    log_info("main", "ready: %s serve%s", tags, run->n_roles == 1 ? "s" : "");
    sd_notify_sendf("READY=1\nSTATUS=serving: %s", tags);
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
    if (argc >= 2 && strcmp(argv[1], "cert") == 0) return cert_main(argc - 1, argv + 1);
    const char *role_name = NULL, *config_path = NULL;
    bool check_only = false;
    const char *log_format = NULL;
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},   {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {"config-doc", required_argument, NULL, 'D'},
        {"log-format", required_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "r:c:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': role_name = optarg; break;
        case 'c': config_path = optarg; break;
        case 'k': check_only = true; break;
        case 'L': log_format = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("blockd %s\n", BD_VERSION); return 0;
        case 'D': {
            int rc = config_doc_write(stdout, optarg);
            if (rc == -EINVAL) {
                fprintf(stderr, "blockd: --config-doc must be markdown or ansible, not '%s'\n",
                        optarg);
                return 2;
            }
            return rc < 0 ? 1 : 0;
        }
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
    /* Frame bodies and blob buffers are allocated and freed per request, up
     * to a few MiB each.  glibc's defaults hand blocks of that size back to
     * the kernel (mmap/munmap, or a heap trim after the frees), so every
     * 1 MiB payload faulted in and zeroed 256 fresh pages (perf, 1M reads:
     * a fifth of the agent's CPU in page faults, 12 brk calls per MiB).
     * Keep them in the heap, and up to 32 MiB free there for reuse. */
    mallopt(M_MMAP_THRESHOLD, 16 << 20);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    bool all = role_name && strcmp(role_name, "all") == 0;
    if (role_name && !all && strcmp(role_name, "agent") && strcmp(role_name, "proxy") &&
        strcmp(role_name, "blob")) {
        fprintf(stderr, "blockd: --role must be agent, proxy, blob or all, not '%s'\n",
                role_name);
        return 2;
    }

    enum log_format flag_format = LOG_FORMAT_TEXT;
    if (log_format && log_format_parse(log_format, &flag_format) < 0) {
        fprintf(stderr, "blockd: --log-format must be text or json, not '%s'\n", log_format);
        return 2;
    }

    struct cfg cfg;
    char err[1024];
    if (config_load(config_path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "blockd: %s\n", err);
        return 2;
    }
    if (check_only) {
        config_exposed_plaintext(&cfg, warn_exposed, (void *)config_path);
        config_exposed_nbd(&cfg, warn_exposed_nbd, (void *)config_path);
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

    log_set_format(log_format ? flag_format : cfg.log_format);
    int rc = log_init(cfg.log_file, cfg.log_level);
    if (rc < 0) {
        fprintf(stderr, "blockd: cannot open log %s: %s\n", cfg.log_file, bd_strerror(rc));
        config_free(&cfg);
        return 1;
    }
    config_exposed_plaintext(&cfg, log_exposed, NULL);
    config_exposed_nbd(&cfg, log_exposed_nbd, NULL);
    struct run *run = &the_run;
    run->rx = reactor_new();
    run->roles = calloc(total, sizeof(*run->roles));
    if (!run->rx || !run->roles) {
        fprintf(stderr, "blockd: out of memory\n");
        return 1;
    }
    reactor_on_stop(run->rx, on_stop_signal, NULL);
    uint64_t wd_usec = sd_notify_watchdog_usec();
    if (wd_usec) {
        rc = sd_notify_watchdog_start(run->rx, wd_usec, &run->watchdog);
        if (rc < 0) log_warn("main", "no systemd watchdog pings: %s", bd_strerror(rc));
    }

    int status = 0;
    for (unsigned i = 0; i < 3 && status == 0; i++) {
        if (!mods[i]) continue;
        unsigned n = mods[i]->instances(&cfg);
        for (unsigned k = 0; k < n; k++) {
            struct role *r = &run->roles[run->n_roles];
            r->ops = mods[i];
            err[0] = 0;
            /* A blob server recovers its segments inside start(): minutes
             * on a large disk after a crash. */
            sd_notify_sendf("STATUS=starting %s instance %u of %u", mods[i]->name, k + 1, n);
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
        run->ready_ev = event_new(reactor_base(run->rx), -1, EV_PERSIST, on_ready_poll, run);
        struct timeval tv = {0, READY_POLL_MS * 1000};
        if (!run->ready_ev || event_add(run->ready_ev, &tv) < 0) {
            fprintf(stderr, "blockd: out of memory\n");
            status = 1;
            on_stop_signal(NULL);
            reactor_run(run->rx);
        } else {
            on_ready_poll(-1, 0, run); /* most processes serve at once: say so now */
            if (reactor_run(run->rx) < 0) status = 1;
        }
    }
    if (run->ready_ev) event_free(run->ready_ev);
    sd_notify_watchdog_free(run->watchdog);
    for (unsigned i = run->n_roles; i-- > 0;) run->roles[i].ops->free(&run->roles[i]);
    free(run->roles);
    reactor_free(run->rx);
    metrics_reset();
    config_free(&cfg);
    if (status == 0) log_info("main", "exiting");
    return status;
}
