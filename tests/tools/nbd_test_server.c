/* nbd_test_server.c: the agent's NBD server over the in-memory volume back
 * end (tests/unit/agent_vol_mem.c), for protocol tests and benchmarks.
 *
 *   nbd_test_server --listen 127.0.0.1:PORT --export vol0:64M \
 *                   [--export ro0:16M:ro] [--unix PATH] [--admin ADDR] ...
 *
 * Runs until SIGTERM/SIGINT, then stops as the agent role does (drain the
 * NBD connections, stop the volumes) and exits 0, or 3 if the server ever
 * broke the volume interface's preconditions (agent_vol_mem counts them:
 * unaligned or oversized requests, a put with requests in flight).
 * GET /v1/status on --admin shows the server and back-end counters,
 * including how many volumes were opened (the CVE-2019-14850 tests check
 * that INFO and LIST open none). */
#include "base/bd.h"
#include "runtime/log.h"
#include "net/admin.h"
#include "runtime/metrics.h"
#include "runtime/reactor.h"
#include "roles/agent/agent_nbd.h"
#include "../unit/agent_vol_mem.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct reactor *rx;
static struct agent_vols *vols;
static struct agent_nbd *srv;
static struct admin *adm;

static void usage(void)
{
    fprintf(stderr,
            "usage: nbd_test_server [--listen HOST:PORT] [--unix PATH]\n"
            "         --export NAME:SIZE[:ro] ... [--admin HOST:PORT]\n"
            "         [--max-handshakes N] [--max-connections N] [--handshake-timeout-ms N]\n"
            "         [--max-inflight N] [--max-io BYTES] [--delay-ms N]\n"
            "         [--fail NAME:OPS:ERRNO:OFF:LEN[:COUNT]] [--fast-zero-enotsup]\n"
            "         [--long-extents] [--fail-lookups ERRNO] [--log-level LEVEL]\n"
            "OPS is a sum of read=1 write=2 flush=4 trim=8 zero=16 block_status=32;\n"
            "NAME '*' matches every export.\n");
}

static void on_status(struct admin_req *r, void *arg)
{
    (void)arg;
    cJSON *o = cJSON_CreateObject();
    agent_nbd_status(srv, o);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    cJSON *m = cJSON_AddObjectToObject(o, "mem");
    static const char *const ops[] = {"read", "write", "flush", "trim", "zero", "block_status"};
    for (unsigned i = 0; i < 6; i++) cJSON_AddNumberToObject(m, ops[i], (double)st.ops[i]);
    cJSON_AddNumberToObject(m, "fua", (double)st.fua);
    cJSON_AddNumberToObject(m, "no_hole", (double)st.no_hole);
    cJSON_AddNumberToObject(m, "fast_zero", (double)st.fast_zero);
    cJSON_AddNumberToObject(m, "infos", (double)st.infos);
    cJSON_AddNumberToObject(m, "opens", (double)st.opens);
    cJSON_AddNumberToObject(m, "lists", (double)st.lists);
    cJSON_AddNumberToObject(m, "puts", (double)st.puts);
    cJSON_AddNumberToObject(m, "violations", (double)st.violations);
    cJSON_AddNumberToObject(m, "attached", st.attached);
    cJSON_AddNumberToObject(m, "inflight", st.inflight);
    cJSON *v = cJSON_AddObjectToObject(o, "volumes");
    agent_vols_status(vols, v);
    admin_reply_json(r, 200, o);
}

static void on_vols_stopped(void *arg)
{
    (void)arg;
    reactor_break(rx);
}

static void on_nbd_stopped(void *arg)
{
    (void)arg;
    agent_vols_stop(vols, on_vols_stopped, NULL);
}

static void on_stop(void *arg)
{
    (void)arg;
    agent_nbd_stop(srv, 5000, on_nbd_stopped, NULL);
}

static int add_export(const char *spec)
{
    char name[AGENT_VOL_NAME_MAX + 1], size[64], flag[8] = "";
    if (sscanf(spec, "%255[^:]:%63[^:]:%7s", name, size, flag) < 2) return -EINVAL;
    uint64_t bytes;
    if (util_parse_size(size, &bytes) < 0) return -EINVAL;
    return agent_vol_mem_add(vols, name, bytes, strcmp(flag, "ro") == 0);
}

static int add_fault(const char *spec)
{
    char name[AGENT_VOL_NAME_MAX + 1];
    unsigned ops, count = 0;
    int err;
    unsigned long long off, len;
    if (sscanf(spec, "%255[^:]:%u:%d:%llu:%llu:%u", name, &ops, &err, &off, &len, &count) < 5)
        return -EINVAL;
    return agent_vol_mem_inject(vols, strcmp(name, "*") ? name : NULL, ops, off, len,
                                -abs(err), count);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"unix", required_argument, NULL, 'u'},
        {"export", required_argument, NULL, 'e'},
        {"admin", required_argument, NULL, 'a'},
        {"max-handshakes", required_argument, NULL, 'H'},
        {"max-connections", required_argument, NULL, 'C'},
        {"handshake-timeout-ms", required_argument, NULL, 'T'},
        {"max-inflight", required_argument, NULL, 'I'},
        {"max-io", required_argument, NULL, 'M'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"fail", required_argument, NULL, 'f'},
        {"fast-zero-enotsup", no_argument, NULL, 'z'},
        {"long-extents", no_argument, NULL, 'x'},
        {"fail-lookups", required_argument, NULL, 'L'},
        {"log-level", required_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *unix_path = NULL, *admin_addr = NULL;
    struct agent_nbd_opts o = {.tag = "agent"};
    enum log_level level = LOG_WARN;
    rx = reactor_new();
    vols = agent_vol_mem_new(rx);
    if (!rx || !vols) return 1;
    int ch;
    uint64_t n;
    const char *exports[64];
    unsigned n_exports = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen = optarg; break;
        case 'u':
            unix_path = optarg;
            break;
        case 'a': admin_addr = optarg; break;
        case 'e': /* added after every option: --max-io applies to all */
            if (n_exports < BD_ARRAY_SIZE(exports)) exports[n_exports++] = optarg;
            break;
        case 'f':
            if (add_fault(optarg) < 0) {
                fprintf(stderr, "bad --fail %s\n", optarg);
                return 2;
            }
            break;
        case 'z': agent_vol_mem_set_fast_zero_enotsup(vols, true); break;
        case 'x': agent_vol_mem_set_long_extents(vols, true); break;
        case 'v':
            if (log_level_parse(optarg, &level) < 0) return 2;
            break;
        case 'H': case 'C': case 'T': case 'I': case 'M': case 'd': case 'L':
            if (util_parse_size(optarg, &n) < 0) {
                fprintf(stderr, "bad number %s\n", optarg);
                return 2;
            }
            if (ch == 'H') o.max_handshakes = (uint32_t)n;
            if (ch == 'C') o.max_connections = (uint32_t)n;
            if (ch == 'T') o.handshake_timeout_ms = n;
            if (ch == 'I') o.max_inflight = (uint32_t)n;
            if (ch == 'M') agent_vol_mem_set_max_io(vols, (uint32_t)n);
            if (ch == 'd') agent_vol_mem_set_delay(vols, n);
            if (ch == 'L') agent_vol_mem_fail_lookups(vols, -(int)n);
            break;
        default: usage(); return 2;
        }
    }
    if (optind < argc || (!listen && !unix_path)) {
        usage();
        return 2;
    }
    for (unsigned i = 0; i < n_exports; i++) {
        if (add_export(exports[i]) < 0) {
            fprintf(stderr, "bad --export %s\n", exports[i]);
            return 2;
        }
    }
    log_init("-", level);
    o.listen = listen;
    o.unix_path = unix_path;
    char err[256];
    if (agent_nbd_new(rx, vols, &o, &srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "nbd_test_server: %s\n", err);
        return 1;
    }
    if (admin_addr) {
        if (admin_new(rx, admin_addr, "agent", &(struct admin_auth){0}, &adm) < 0 ||
            /* A test server: its status is open, it has no token. */
            admin_route(adm, "GET", "/v1/status", ADMIN_PUBLIC, on_status, NULL) < 0) {
            fprintf(stderr, "nbd_test_server: admin %s failed\n", admin_addr);
            return 1;
        }
    }
    reactor_on_stop(rx, on_stop, NULL);
    reactor_run(rx);
    struct agent_vol_mem_stats st;
    agent_vol_mem_stats(vols, &st);
    admin_free(adm);
    agent_nbd_free(srv);
    agent_vols_free(vols);
    reactor_free(rx);
    metrics_reset();
    if (st.violations) {
        fprintf(stderr, "nbd_test_server: %llu volume interface violations\n",
                (unsigned long long)st.violations);
        return 3;
    }
    return 0;
}
