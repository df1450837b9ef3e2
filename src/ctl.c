/* ctl.c: `blockd ctl`, a CLI over the proxies' admin HTTP API.
 *
 *   blockd ctl [--url HOST:PORT]... [--token-file F] [--ca F] [--json] COMMAND
 *     volume create NAME SIZE [QOS]  SIZE in bytes or with a unit: 10G, 512M
 *     volume set-qos NAME QOS     its QoS, applied live by the agent serving it
 *     volume stats NAME           its limits and its agent's last I/O and throttle figures
 *     qos-profile list | info NAME | create NAME [--default] QOS |
 *                 set NAME [--default|--no-default] QOS | rm NAME
 *     volume list
 *     volume info NAME
 *     volume resize NAME SIZE     grow only
 *     volume rm NAME
 *     volume attach NAME AGENT [--read-only] [--client ID] [--force]
 *                                 attach it to an agent (like a disk to an instance)
 *     volume detach NAME [--force]  detach it (--force also fences its holder, C10)
 *     volume clone VOLUME SNAP NEW   a new volume from a snapshot
 *     snapshot create VOLUME SNAP
 *     snapshot list VOLUME
 *     snapshot rm VOLUME SNAP
 *     cluster status
 *     node list
 *     node status ID
 *     node drain ID [--no-wait]  move every replica off it, printing progress
 *     node undrain ID
 *     node remove ID              forget a drained server
 *     proxy list
 *     proxy add ID ADDR           a new proxy joins the Raft group
 *     proxy remove ID             a proxy leaves it
 *     health                      named checks: what is wrong, since when, what to do
 *   QOS is --profile NAME and --FIELD VALUE for base/qos.h's fields
 *   (--iops 500 --bps 100M --iops-burst 2000 ...; --burst is --iops-burst),
 *   VALUE "none" unsetting a field in set-qos and set.
 *     (and the data-lifecycle commands of ctl_life.c: rollback, flatten,
 *     snapshot group, export, import, export-diff, import-diff)
 *
 * Finding the cluster, first match wins: --url (repeatable), $BLOCKD_URL
 * (comma-separated), or the proxies listed in the local cluster's
 * cluster.json ($BLOCKD_DATA/cluster.json, default ./data/cluster.json),
 * written by scripts/quickstart.  HTTPS when the cluster CA is known
 * (--ca, $BLOCKD_CA, cluster.json's ca_file): the proxy must present a
 * proxy certificate of that CA.  The token comes from --token-file,
 * $BLOCKD_TOKEN, or cluster.json's token_file.
 *
 * Any proxy can answer (followers forward mutations to the leader), so a
 * request goes to the first proxy that accepts the connection; a proxy that
 * cannot be reached is skipped.  Output is a table for people or, with
 * --json, the server's JSON unchanged for scripts.  A server error is one
 * line on stderr and exit status 1; a usage error exits 2. */
#include "ctl.h"
#include "ctl_progress.h"
#include "ctl_life.h"
#include "base/bd.h"
#include "net/httpc.h"
#include "net/wire.h"
#include "base/qos.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CTL_TIMEOUT_MS 30000
#define CTL_MAX_URLS 16

struct ctl {
    char urls[CTL_MAX_URLS][128];
    int n_urls;
    char token[512];
    char ca_file[1024];  /* the cluster CA: HTTPS when set */
    bool json;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: blockd ctl [--url HOST:PORT] [--token-file FILE] [--ca FILE] [--json] "
               "COMMAND\n"
               "\n"
               "commands:\n"
               "  volume create NAME SIZE [QOS]  create a volume (SIZE like 10G, 512M, or\n"
               "                             bytes); without QOS it gets the default profile\n"
               "  volume set-qos NAME QOS    change its QoS; the agent applies it live\n"
               "  volume stats NAME          its limits in force and its agent's figures\n"
               "                             (I/Os, bytes, latency, throttling)\n"
               "  qos-profile list | info NAME | rm NAME\n"
               "  qos-profile create NAME [--default] QOS\n"
               "  qos-profile set NAME [--default|--no-default] QOS\n"
               "                             QoS profiles (storage classes); a change applies\n"
               "                             to every volume using the profile\n"
               "  volume list                list volumes\n"
               "  volume info NAME           show one volume\n"
               "  volume resize NAME SIZE    grow a volume\n"
               "  volume rm NAME             delete a volume (must be detached)\n"
               "  volume attach NAME AGENT [--read-only] [--client ID] [--force]\n"
               "                             attach it to agent AGENT, which alone may then\n"
               "                             serve it (read-only: no writes); --client: over\n"
               "                             TCP only to the NBD client with this PSK identity\n"
               "                             or certificate id; --force: take it from the\n"
               "                             agent that has it (fences that agent)\n"
               "  volume detach NAME [--force]  detach it from its agent (--force: and fence\n"
               "                             the agent at once instead of letting it ship\n"
               "                             what it still holds)\n"
               "  volume clone VOL SNAP NEW  a new volume NEW from snapshot SNAP of VOL\n"
               "  snapshot create VOL SNAP   snapshot a volume (crash-consistent: every write\n"
               "                             its agent acknowledged, after a barrier)\n"
               "  snapshot list VOL          list a volume's snapshots\n"
               "  snapshot rm VOL SNAP       delete a snapshot\n"
               "  cluster status             proxies, raft state, blob servers, partitions,\n"
               "                             placement, rebuild progress\n"
               "  health                     what is wrong, since when and what to do\n"
               "                             (HEALTH_OK, HEALTH_WARN or HEALTH_ERR)\n"
               "  node list                  blob servers: domains, state, partitions, fill\n"
               "  node status ID             one blob server, with its drain's progress\n"
               "  node drain ID [--no-wait]  move every replica off a blob server; prints\n"
               "                             progress and ETA until it is drained\n"
               "  node undrain ID            stop draining: it takes partitions again\n"
               "  node remove ID             forget a drained blob server\n"
               "  proxy list                 the Raft group: ids, addresses, roles\n"
               "  proxy add ID ADDR          add a proxy started with \"join\": true; it\n"
               "                             votes once it has caught up\n"
               "  proxy remove ID            take a proxy out of the Raft group\n"
               "%s"
               "\n"
               "QOS: --profile NAME, and --iops, --read-iops, --write-iops (I/Os per second),\n"
               "--bps, --read-bps, --write-bps (bytes per second: 100M), each also with\n"
               "-burst (a peak rate; --burst is --iops-burst), --burst-seconds N, --io-size\n"
               "SIZE (larger I/Os count as several); \"none\" unsets a field (set-qos, set)\n"
               "and --profile none leaves the volume without a profile.\n"
               "\n"
               "The cluster is found from --url, $BLOCKD_URL, or $BLOCKD_DATA/cluster.json\n"
               "(default ./data/cluster.json); the token from --token-file, $BLOCKD_TOKEN,\n"
               "or cluster.json; the cluster CA (HTTPS) from --ca, $BLOCKD_CA or\n"
               "cluster.json's ca_file (without one, plain HTTP).\n", ctl_life_usage);
}

static int read_token_file(struct ctl *c, const char *path)
{
    char *buf;
    size_t len;
    int rc = util_read_file(path, sizeof(c->token) - 1, &buf, &len);
    if (rc < 0) {
        fprintf(stderr, "blockd ctl: cannot read token file %s: %s\n", path, bd_strerror(rc));
        return rc;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = 0;
    util_strlcpy(c->token, buf, sizeof(c->token));
    free(buf);
    return 0;
}

static void add_url(struct ctl *c, const char *u)
{
    if (strncmp(u, "http://", 7) == 0) u += 7;
    else if (strncmp(u, "https://", 8) == 0) u += 8;
    if (c->n_urls >= CTL_MAX_URLS) return;
    util_strlcpy(c->urls[c->n_urls], u, sizeof(c->urls[0]));
    char *slash = strchr(c->urls[c->n_urls], '/');
    if (slash) *slash = 0;
    c->n_urls++;
}

/* Read proxies (and the token file) from cluster.json. */
static int load_cluster_json(struct ctl *c, bool want_token)
{
    const char *dir = getenv("BLOCKD_DATA");
    char path[1024];
    snprintf(path, sizeof(path), "%s/cluster.json", dir && *dir ? dir : "data");
    char *text;
    size_t len;
    if (util_read_file(path, 1 << 20, &text, &len) < 0) return -ENOENT;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) {
        fprintf(stderr, "blockd ctl: %s is not valid JSON\n", path);
        return -EINVAL;
    }
    int rc = 0;
    if (c->n_urls == 0) {
        const cJSON *procs = cJSON_GetObjectItemCaseSensitive(root, "processes");
        const cJSON *p;
        cJSON_ArrayForEach(p, procs) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(p, "role");
            const cJSON *admin = cJSON_GetObjectItemCaseSensitive(p, "admin");
            if (cJSON_IsString(role) && strcmp(role->valuestring, "proxy") == 0 &&
                cJSON_IsString(admin))
                add_url(c, admin->valuestring);
        }
    }
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(root, "ca_file");
    if (!c->ca_file[0] && cJSON_IsString(ca)) util_strlcpy(c->ca_file, ca->valuestring, sizeof(c->ca_file));
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(root, "token_file");
    if (want_token && !c->token[0] && cJSON_IsString(tf)) rc = read_token_file(c, tf->valuestring);
    cJSON_Delete(root);
    return rc;
}

/* Send to the first reachable proxy: 0 with RESP filled, or the last
 * proxy's -errno.  Prints nothing (it may run on a progress thread). */
static int request_quiet(struct ctl *c, const char *method, const char *path, const char *body,
                         struct httpc_resp *resp)
{
    int last = -ENOENT;
    for (int i = 0; i < c->n_urls; i++) {
        struct httpc_target t = {.addr = c->urls[i],
                                 .ca_file = c->ca_file[0] ? c->ca_file : NULL,
                                 .expect_role = WIRE_ROLE_PROXY,
                                 .token = c->token[0] ? c->token : NULL,
                                 .timeout_ms = CTL_TIMEOUT_MS};
        last = httpc_request(&t, method, path, body, resp);
        /* 421: only the Raft leader does this (membership): the next one. */
        if (last == 0 && resp->status == 421 && i + 1 < c->n_urls) {
            httpc_resp_free(resp);
            continue;
        }
        if (last == 0) return 0;
    }
    return last;
}

static int no_answer(struct ctl *c, int err)
{
    fprintf(stderr, "blockd ctl: no proxy answered (%d tried): %s\n", c->n_urls,
            bd_strerror(err));
    return err;
}

/* Send to the first reachable proxy.  Returns 0 with RESP filled, or -errno
 * after printing why no proxy answered. */
static int request(struct ctl *c, const char *method, const char *path, const char *body,
                   struct httpc_resp *resp)
{
    int rc = request_quiet(c, method, path, body, resp);
    return rc < 0 ? no_answer(c, rc) : 0;
}

struct waited_request {
    struct ctl *c;
    const char *method, *path, *body;
    struct httpc_resp *resp;
};

static int run_waited(void *arg)
{
    struct waited_request *w = arg;
    return request_quiet(w->c, w->method, w->path, w->body, w->resp);
}

/* A request that waits on the cluster (a Raft commit, a leader): the same
 * as request(), showing LABEL's progress while it waits (ctl_progress.h:
 * nothing when it answers within a second). */
static int request_waiting(struct ctl *c, const char *label, const char *method,
                           const char *path, const char *body, struct httpc_resp *resp)
{
    struct ctl_progress *pg = ctl_progress_start(stderr, label, 0, "");
    struct waited_request w = {.c = c, .method = method, .path = path, .body = body,
                               .resp = resp};
    int rc = ctl_progress_wait(pg, run_waited, &w);
    ctl_progress_finish(pg, rc == 0, rc == 0 ? "answered (HTTP %d)" : NULL,
                        rc == 0 ? resp->status : 0);
    return rc < 0 ? no_answer(c, rc) : 0;
}

/* A non-2xx reply: print its "error" message as one line. */
static int server_error(const struct httpc_resp *r)
{
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
    fprintf(stderr, "blockd ctl: %s (HTTP %d)\n",
            cJSON_IsString(e) ? e->valuestring : "request failed", r->status);
    cJSON_Delete(j);
    return 1;
}

static const char *str_field(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num_field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_volume_row(const cJSON *v)
{
    char sz[32], att[160];
    const char *agent = str_field(v, "attached_to", ""), *client = str_field(v, "client", "");
    const char *writer = str_field(v, "writer", "");
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(v, "read_only");
    if (*agent)
        snprintf(att, sizeof(att), "%s%s%s%s", agent, cJSON_IsTrue(ro) ? " (read-only)" : "",
                 *client ? ", client " : "", client);
    else
        snprintf(att, sizeof(att), "-");
    printf("%-32s %12s %6.0f %10.0f  %-30s %s\n", str_field(v, "name", "?"),
           util_fmt_size((uint64_t)num_field(v, "size"), sz, sizeof(sz)), num_field(v, "id"),
           num_field(v, "generation"), att, *writer ? writer : "-");
}

static void print_volume_header(void)
{
    printf("%-32s %12s %6s %10s  %-30s %s\n", "NAME", "SIZE", "ID", "GENERATION", "ATTACHED",
           "WRITER");
}

/* Print R's body as JSON or with FN; map the status to an exit code. */
static int finish(struct ctl *c, struct httpc_resp *r, void (*fn)(const cJSON *))
{
    int rc = 0;
    if (r->status < 200 || r->status >= 300) {
        rc = server_error(r);
    } else if (c->json || !fn) {
        if (r->body_len) fputs(r->body, stdout);
        if (r->body_len && r->body[r->body_len - 1] != '\n') putchar('\n');
    } else {
        cJSON *j = cJSON_Parse(r->body);
        if (!j) {
            fprintf(stderr, "blockd ctl: the server sent invalid JSON\n");
            rc = 1;
        } else {
            fn(j);
            cJSON_Delete(j);
        }
    }
    httpc_resp_free(r);
    return rc;
}

/* "iops=500 bps=100M ..." of a limit set's JSON into BUF. */
static void limits_line(const cJSON *l, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, l) {
        if (!cJSON_IsNumber(f) || f->valuedouble == 0) continue;
        char v[32];
        if (strstr(f->string, "bps") || strcmp(f->string, "io_size") == 0)
            util_fmt_size((uint64_t)f->valuedouble, v, sizeof(v));
        else snprintf(v, sizeof(v), "%.0f", f->valuedouble);
        n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s=%s", n ? " " : "",
                              f->string, v);
        if (n >= len) break;
    }
    if (!buf[0]) snprintf(buf, len, "none");
}

static void show_volume(const cJSON *v)
{
    print_volume_header();
    print_volume_row(v);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(v, "qos");
    if (!q) return;
    char own[512], eff[512];
    limits_line(cJSON_GetObjectItemCaseSensitive(q, "limits"), own, sizeof(own));
    limits_line(cJSON_GetObjectItemCaseSensitive(q, "effective"), eff, sizeof(eff));
    printf("\nQOS profile: %s\n    own limits: %s\n    in force:   %s\n",
           str_field(q, "profile", "none"), own, eff);
}

static void show_stats(const cJSON *v)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(v, "qos");
    char eff[512];
    limits_line(cJSON_GetObjectItemCaseSensitive(q, "effective"), eff, sizeof(eff));
    printf("%s: QoS %s\n", str_field(v, "name", "?"), eff);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(q, "agent");
    if (!a) {
        printf("no figures: no agent has reported this volume to the proxy that answered\n");
        return;
    }
    const cJSON *ios = cJSON_GetObjectItemCaseSensitive(a, "ios");
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(a, "bytes");
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(a, "latency_us");
    printf("agent %s, reported %.1f s ago\n", str_field(a, "agent", "?"),
           num_field(a, "age_ms") / 1000);
    printf("%-6s %14s %12s %10s %10s\n", "", "IOS", "BYTES", "P50 (us)", "P99 (us)");
    static const char *const dirs[] = {"read", "write"};
    for (int d = 0; d < 2; d++) {
        char b[32];
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(lat, dirs[d]);
        printf("%-6s %14.0f %12s %10.0f %10.0f\n", dirs[d], num_field(ios, dirs[d]),
               util_fmt_size((uint64_t)num_field(bytes, dirs[d]), b, sizeof(b)),
               num_field(l, "p50"), num_field(l, "p99"));
    }
    printf("delayed %.0f I/Os, throttled %.1f s, waiting now %.0f\n", num_field(a, "delayed"),
           num_field(a, "throttled_seconds"), num_field(a, "waiting"));
}

static void show_profile_row(const cJSON *p)
{
    char l[512];
    limits_line(cJSON_GetObjectItemCaseSensitive(p, "limits"), l, sizeof(l));
    printf("%-24s %-7s %7.0f  %s\n", str_field(p, "name", "?"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "default")) ? "yes" : "-",
           num_field(p, "volumes"), l);
}

static void show_profile(const cJSON *p)
{
    printf("%-24s %-7s %7s  %s\n", "NAME", "DEFAULT", "VOLUMES", "LIMITS");
    show_profile_row(p);
}

static void show_profiles(const cJSON *j)
{
    printf("%-24s %-7s %7s  %s\n", "NAME", "DEFAULT", "VOLUMES", "LIMITS");
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "profiles")) show_profile_row(p);
}

static void show_volumes(const cJSON *j)
{
    print_volume_header();
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "volumes")) print_volume_row(v);
}

/* "12 MiB", "3.4 GiB". */
static const char *size_str(double v, char *buf, size_t len)
{
    return util_fmt_size(v > 0 ? (uint64_t)v : 0, buf, len);
}

/* "1h02m", "4m10s", "17s", or "unknown". */
static const char *eta_str(const cJSON *o, char *buf, size_t len)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "eta_s");
    if (!cJSON_IsNumber(e)) return "unknown";
    uint64_t s = (uint64_t)(e->valuedouble + 0.5);
    if (s >= 3600) snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
                            (unsigned long long)(s % 3600 / 60));
    else if (s >= 60) snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
                               (unsigned long long)(s % 60));
    else snprintf(buf, len, "%llus", (unsigned long long)s);
    return buf;
}

/* One line of progress: moves, bytes done and left, rate, ETA. */
static void print_progress(const char *what, const cJSON *o)
{
    char d[32], l[32], r[32], e[32];
    printf("%s: %.0f move(s), %s copied, %s left, %s/s, ETA %s\n", what, num_field(o, "moves"),
           size_str(num_field(o, "bytes_done"), d, sizeof(d)),
           size_str(num_field(o, "bytes_left"), l, sizeof(l)),
           size_str(num_field(o, "rate_bytes_per_sec"), r, sizeof(r)), eta_str(o, e, sizeof(e)));
}

static void print_node_row(const cJSON *n)
{
    char cap[32], used[32], dom[200];
    snprintf(dom, sizeof(dom), "%s/%s/%s", *str_field(n, "zone", "") ? str_field(n, "zone", "") : "-",
             *str_field(n, "rack", "") ? str_field(n, "rack", "") : "-",
             *str_field(n, "host", "") ? str_field(n, "host", "") : "-");
    printf("%-6.0f %-22s %-4s %-9s %-28s %5.0f %5.0f %10s %10s\n", num_field(n, "id"),
           str_field(n, "addr", "?"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "up")) ? "yes" : "NO",
           str_field(n, "state", "?"), dom, num_field(n, "slots"), num_field(n, "partitions"),
           size_str(num_field(n, "used"), used, sizeof(used)),
           size_str(num_field(n, "capacity"), cap, sizeof(cap)));
}

static void print_node_header(void)
{
    printf("%-6s %-22s %-4s %-9s %-28s %5s %5s %10s %10s\n", "ID", "ADDRESS", "UP", "STATE",
           "ZONE/RACK/HOST", "SLOTS", "PARTS", "USED", "CAPACITY");
}

static void show_nodes(const cJSON *j)
{
    print_node_header();
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(j, "nodes")) print_node_row(n);
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(j, "nodes")) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(n, "drain");
        char what[64];
        snprintf(what, sizeof(what), "drain of %.0f", num_field(n, "id"));
        if (d) print_progress(what, d);
    }
}

static void show_node(const cJSON *n)
{
    print_node_header();
    print_node_row(n);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(n, "drain");
    if (d) {
        char what[64];
        snprintf(what, sizeof(what), "drain: %.0f partition(s) left",
                 num_field(d, "partitions_left"));
        print_progress(what, d);
    }
}

static void show_cluster(const cJSON *j)
{
    const cJSON *p;
    printf("PROXIES\n%-4s %-22s %-10s %6s %12s %12s\n", "ID", "ADDRESS", "STATE", "TERM",
           "COMMIT", "APPLIED");
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "proxies")) {
        printf("%-4.0f %-22s %-10s %6.0f %12.0f %12.0f\n", num_field(p, "id"),
               str_field(p, "addr", "?"), str_field(p, "state", "unreachable"),
               num_field(p, "term"), num_field(p, "commit_index"), num_field(p, "applied_index"));
    }
    printf("\nBLOB SERVERS\n%-6s %-22s %-5s %12s %12s %10s %5s\n", "ID", "ADDRESS", "UP",
           "CAPACITY", "USED", "BLOBS", "BAD");
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "nodes")) {
        char cap[32], used[32];
        const cJSON *up = cJSON_GetObjectItemCaseSensitive(p, "up");
        printf("%-6.0f %-22s %-5s %12s %12s %10.0f %5.0f\n", num_field(p, "id"),
               str_field(p, "addr", "?"), cJSON_IsTrue(up) ? "yes" : "NO",
               util_fmt_size((uint64_t)num_field(p, "capacity"), cap, sizeof(cap)),
               util_fmt_size((uint64_t)num_field(p, "used"), used, sizeof(used)),
               num_field(p, "blobs"), num_field(p, "bad_blobs"));
    }
    int np = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "partitions"));
    printf("\nPARTITIONS: %d\n", np);
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(j, "placement");
    if (pl) {
        char pb[32];
        printf("placement: partitions of %s, %.0f wanted; servers take no new blobs above "
               "%.0f%% full; replicas apart by %s (%.0f below that)\n  %s\n",
               size_str(num_field(pl, "partition_bytes"), pb, sizeof(pb)),
               num_field(pl, "partitions_wanted"), num_field(pl, "fill_limit_pct"),
               str_field(pl, "separation", "?"), num_field(pl, "partitions_below_separation"),
               str_field(pl, "note", ""));
    }
    const cJSON *rb = cJSON_GetObjectItemCaseSensitive(j, "rebuild");
    if (rb) {
        print_progress("\nREBUILD", rb);
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(rb, "list")) {
            char what[160];
            snprintf(what, sizeof(what), "  partition %.0f: %s %.0f -> %.0f",
                     num_field(m, "partition"), str_field(m, "reason", "?"), num_field(m, "from"),
                     num_field(m, "node"));
            print_progress(what, m);
        }
    }
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "nodes")) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(p, "drain");
        if (!d) continue;
        char what[96];
        snprintf(what, sizeof(what), "drain of %.0f (%.0f partitions left)", num_field(p, "id"),
                 num_field(d, "partitions_left"));
        print_progress(what, d);
    }
}

static void show_proxies(const cJSON *j)
{
    printf("%-6s %-22s %-8s %-12s %s\n", "ID", "ADDRESS", "ROLE", "STATE", "LEADER");
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "proxies"))
        printf("%-6.0f %-22s %-8s %-12s %s\n", num_field(p, "id"), str_field(p, "addr", "?"),
               str_field(p, "role", "?"), str_field(p, "state", "?"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "leader")) ? "yes" : "");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "changing")))
        printf("(a membership change is in progress)\n");
}

/* `ctl health`: the status line, then each check with since when and what
 * to do, then how old the inputs are where that matters. */
static void show_health(const cJSON *j)
{
    printf("%s  %s\n", str_field(j, "status", "HEALTH_UNKNOWN"), str_field(j, "summary", ""));
    printf("(as seen by proxy %.0f)\n", num_field(j, "proxy_id"));
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "checks")) {
        double since = num_field(c, "since_seconds");
        char ago[32];
        if (since >= 3600) snprintf(ago, sizeof(ago), "%.1f h", since / 3600);
        else if (since >= 60) snprintf(ago, sizeof(ago), "%.0f min", since / 60);
        else snprintf(ago, sizeof(ago), "%.0f s", since);
        printf("\n[%s] %s (for %s)\n    %s\n    what to do: %s\n", str_field(c, "severity", "?"),
               str_field(c, "code", "?"), ago, str_field(c, "summary", ""),
               str_field(c, "action", ""));
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(in, "partitions");
    if (pt && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pt, "current")))
        printf("\nnote: this proxy's index may be stale (no leader for %.0f s): partition "
               "figures are as of raft index %.0f\n",
               num_field(cJSON_GetObjectItemCaseSensitive(in, "raft"), "no_leader_ms") / 1000,
               num_field(pt, "applied_index"));
    const cJSON *aj = cJSON_GetObjectItemCaseSensitive(in, "agent_journals");
    if (aj && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(aj, "available")))
        printf("note: agent journals not checked: %s\n", str_field(aj, "why", "not reported"));
}

static void show_snapshots(const cJSON *j)
{
    printf("%-32s %12s %14s\n", "SNAPSHOT", "SIZE", "CREATED_INDEX");
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "snapshots")) {
        char sz[32];
        printf("%-32s %12s %14.0f\n", str_field(v, "name", "?"),
               util_fmt_size((uint64_t)num_field(v, "size"), sz, sizeof(sz)),
               num_field(v, "created_index"));
    }
}

/* A size argument: "10G", "512M", "4096". */
static int parse_size_arg(const char *s, uint64_t *out)
{
    if (util_parse_size(s, out) < 0 || *out == 0) {
        fprintf(stderr, "blockd ctl: invalid size '%s' (use bytes or a unit: 10G, 512M)\n", s);
        return -EINVAL;
    }
    return 0;
}

/* Percent-encode a volume name for a URL path (names are [A-Za-z0-9._-],
 * but never trust that here). */
static void path_for(char *buf, size_t len, const char *prefix, const char *name)
{
    size_t n = (size_t)snprintf(buf, len, "%s", prefix);
    for (const unsigned char *p = (const unsigned char *)name; *p && n + 4 < len; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '.' || *p == '_' || *p == '-')
            buf[n++] = (char)*p;
        else
            n += (size_t)snprintf(buf + n, len - n, "%%%02X", *p);
    }
    buf[n] = 0;
}

/* POST O (consumed) as JSON to PATH, showing LABEL's progress. */
static int post_json(struct ctl *c, const char *label, const char *path, cJSON *o,
                     struct httpc_resp *r)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "blockd ctl: out of memory\n");
        return -ENOMEM;
    }
    int rc = request_waiting(c, label, "POST", path, s, r);
    free(s);
    return rc;
}

/* QoS options A[0..N) into BODY: "profile" and a "limits" object.
 * UNSET: "none" unsets (JSON null); PROFILE_FLAGS: --default and
 * --no-default set "default" (profiles), else --profile is allowed
 * (volumes).  0, or 2 (usage) after saying why. */
static int qos_opts(int n, char **a, cJSON *body, bool unset, bool profile_flags)
{
    cJSON *lim = NULL;
    for (int i = 0; i < n; i++) {
        const char *o = a[i];
        if (profile_flags && (strcmp(o, "--default") == 0 || strcmp(o, "--no-default") == 0)) {
            cJSON_AddBoolToObject(body, "default", strcmp(o, "--default") == 0);
            continue;
        }
        if (strncmp(o, "--", 2) != 0 || i + 1 >= n) {
            fprintf(stderr, "blockd ctl: expected --FIELD VALUE, got '%s'\n", o);
            return 2;
        }
        const char *v = a[++i];
        bool none = unset && strcmp(v, "none") == 0;
        if (!profile_flags && strcmp(o, "--profile") == 0) {
            if (none) cJSON_AddNullToObject(body, "profile");
            else cJSON_AddStringToObject(body, "profile", v);
            continue;
        }
        char f[48];
        util_strlcpy(f, strcmp(o, "--burst") == 0 ? "iops_burst" : o + 2, sizeof(f));
        for (char *p = f; *p; p++)
            if (*p == '-') *p = '_';
        uint32_t bit = qos_field_bit(f);
        if (!bit) {
            fprintf(stderr, "blockd ctl: unknown option '%s'\n", o);
            return 2;
        }
        if (!lim) lim = cJSON_AddObjectToObject(body, "limits");
        if (none) {
            cJSON_AddNullToObject(lim, f);
        } else if (strstr(f, "bps") || bit == QOS_SET_IO_SIZE) {
            cJSON_AddStringToObject(lim, f, v); /* "100M": the server parses sizes */
        } else {
            char *end;
            unsigned long long x = strtoull(v, &end, 10);
            if (!*v || *end || *v == '-') {
                fprintf(stderr, "blockd ctl: %s: expected a whole number, got '%s'\n", o, v);
                return 2;
            }
            cJSON_AddNumberToObject(lim, f, (double)x);
        }
    }
    return 0;
}

static void append(char *buf, size_t len, const char *tail)
{
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s", tail);
}

int ctl_main(int argc, char **argv)
{
    struct ctl c;
    memset(&c, 0, sizeof(c));
    int i = 1;
    const char *token_file = NULL;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c.json = true;
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            add_url(&c, argv[++i]);
        } else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc) {
            token_file = argv[++i];
        } else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc) {
            util_strlcpy(c.ca_file, argv[++i], sizeof(c.ca_file));
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "blockd ctl: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    int nargs = argc - i;
    char **a = argv + i;
    /* Flags may follow the command too (`ctl health --json`). */
    for (int k = i; k < argc; k++)
        if (strcmp(argv[k], "--json") == 0) {
            c.json = true;
            memmove(&argv[k], &argv[k + 1], (size_t)(argc - k - 1) * sizeof(*argv));
            argc--;
            k--;
        }
    nargs = argc - i;
    if (nargs < 1 || (nargs < 2 && strcmp(a[0], "health") != 0)) {
        usage(stderr);
        return 2;
    }
    const char *env = getenv("BLOCKD_URL");
    if (c.n_urls == 0 && env && *env) {
        char tmp[1024];
        util_strlcpy(tmp, env, sizeof(tmp));
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
            add_url(&c, t);
    }
    if (token_file && read_token_file(&c, token_file) < 0) return 1;
    const char *ca = getenv("BLOCKD_CA");
    if (!c.ca_file[0] && ca && *ca) util_strlcpy(c.ca_file, ca, sizeof(c.ca_file));
    const char *tok = getenv("BLOCKD_TOKEN");
    if (!c.token[0] && tok) util_strlcpy(c.token, tok, sizeof(c.token));
    if (load_cluster_json(&c, true) == -EINVAL) return 1;
    if (c.n_urls == 0) {
        fprintf(stderr, "blockd ctl: no cluster: use --url, $BLOCKD_URL or run "
                        "./scripts/quickstart (which writes data/cluster.json)\n");
        return 2;
    }

    struct httpc_resp r;
    char path[1024], body[512], label[600];
    uint64_t size;
    if (strcmp(a[0], "volume") == 0) {
        if (strcmp(a[1], "list") == 0 && nargs == 2) {
            if (request(&c, "GET", "/v1/volumes", NULL, &r) < 0) return 1;
            return finish(&c, &r, show_volumes);
        }
        if (strcmp(a[1], "info") == 0 && nargs == 3) {
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            if (request(&c, "GET", path, NULL, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "create") == 0 && nargs >= 4) {
            if (parse_size_arg(a[3], &size) < 0) return 2;
            cJSON *o = cJSON_CreateObject();
            int qrc = qos_opts(nargs - 4, a + 4, o, false, false);
            if (qrc) {
                cJSON_Delete(o);
                return qrc;
            }
            cJSON_AddStringToObject(o, "name", a[2]);
            snprintf(body, sizeof(body), "%llu", (unsigned long long)size);
            cJSON_AddStringToObject(o, "size", body); /* a string: exact at any size */
            snprintf(label, sizeof(label), "volume create %s", a[2]);
            if (post_json(&c, label, "/v1/volumes", o, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "resize") == 0 && nargs == 4) {
            if (parse_size_arg(a[3], &size) < 0) return 2;
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            snprintf(body, sizeof(body), "{\"size\": \"%llu\"}", (unsigned long long)size);
            snprintf(label, sizeof(label), "volume resize %s", a[2]);
            if (request_waiting(&c, label, "PATCH", path, body, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "stats") == 0 && nargs == 3) {
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            if (request(&c, "GET", path, NULL, &r) < 0) return 1;
            return finish(&c, &r, show_stats);
        }
        if (strcmp(a[1], "set-qos") == 0 && nargs >= 4) {
            cJSON *o = cJSON_CreateObject();
            int qrc = qos_opts(nargs - 3, a + 3, o, true, false);
            char *s = qrc ? NULL : cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (qrc) return qrc;
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            snprintf(label, sizeof(label), "volume set-qos %s", a[2]);
            int rc = request_waiting(&c, label, "PATCH", path, s, &r);
            free(s);
            if (rc < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "rm") == 0 && nargs == 3) {
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            snprintf(label, sizeof(label), "volume rm %s", a[2]);
            if (request_waiting(&c, label, "DELETE", path, NULL, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("deleted %s\n", a[2]);
            return rc;
        }
        if (strcmp(a[1], "attach") == 0 && nargs >= 4) {
            bool ro = false, force = false;
            const char *client = NULL;
            for (int k = 4; k < nargs; k++) {
                if (strcmp(a[k], "--read-only") == 0) ro = true;
                else if (strcmp(a[k], "--force") == 0) force = true;
                else if (strcmp(a[k], "--client") == 0 && k + 1 < nargs) client = a[++k];
                else {
                    fprintf(stderr, "blockd ctl: volume attach: unknown option '%s'\n", a[k]);
                    return 2;
                }
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "agent", a[3]);
            cJSON_AddBoolToObject(o, "read_only", ro);
            if (client) cJSON_AddStringToObject(o, "client", client);
            cJSON_AddBoolToObject(o, "force", force);
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            append(path, sizeof(path), "/attach");
            snprintf(label, sizeof(label), "volume attach %s %s", a[2], a[3]);
            if (post_json(&c, label, path, o, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "detach") == 0 && (nargs == 3 || nargs == 4)) {
            if (nargs == 4 && strcmp(a[3], "--force") != 0) {
                fprintf(stderr, "blockd ctl: volume detach: unknown option '%s'\n", a[3]);
                return 2;
            }
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            append(path, sizeof(path), nargs == 4 ? "/attach?force=1" : "/attach");
            snprintf(label, sizeof(label), "volume detach %s", a[2]);
            if (request_waiting(&c, label, "DELETE", path, NULL, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "clone") == 0 && nargs == 5) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", a[4]);
            cJSON *snap = cJSON_AddObjectToObject(o, "snapshot");
            cJSON_AddStringToObject(snap, "volume", a[2]);
            cJSON_AddStringToObject(snap, "name", a[3]);
            snprintf(label, sizeof(label), "volume clone %s/%s -> %s", a[2], a[3], a[4]);
            if (post_json(&c, label, "/v1/volumes", o, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
    } else if (strcmp(a[0], "snapshot") == 0) {
        if (nargs >= 3) {
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            append(path, sizeof(path), "/snapshots");
        }
        if (strcmp(a[1], "list") == 0 && nargs == 3) {
            if (request(&c, "GET", path, NULL, &r) < 0) return 1;
            return finish(&c, &r, show_snapshots);
        }
        if (strcmp(a[1], "create") == 0 && nargs == 4) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", a[3]);
            snprintf(label, sizeof(label), "snapshot create %s/%s", a[2], a[3]);
            if (post_json(&c, label, path, o, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("snapshot %s of %s created\n", a[3], a[2]);
            return rc;
        }
        if (strcmp(a[1], "rm") == 0 && nargs == 4) {
            char snap[512];
            path_for(snap, sizeof(snap), "/", a[3]);
            append(path, sizeof(path), snap);
            snprintf(label, sizeof(label), "snapshot rm %s/%s", a[2], a[3]);
            if (request_waiting(&c, label, "DELETE", path, NULL, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("deleted snapshot %s of %s\n", a[3], a[2]);
            return rc;
        }
    } else if (strcmp(a[0], "node") == 0) {
        if (strcmp(a[1], "list") == 0 && nargs == 2) {
            if (request(&c, "GET", "/v1/nodes", NULL, &r) < 0) return 1;
            return finish(&c, &r, show_nodes);
        }
        if (nargs >= 3) {
            char *end;
            unsigned long long id = strtoull(a[2], &end, 10);
            if (*end || !id) {
                fprintf(stderr, "blockd ctl: a blob server id is a number, not '%s'\n", a[2]);
                return 2;
            }
            snprintf(path, sizeof(path), "/v1/nodes/%llu", id);
            if (strcmp(a[1], "status") == 0 && nargs == 3) {
                if (request(&c, "GET", path, NULL, &r) < 0) return 1;
                return finish(&c, &r, show_node);
            }
            if (strcmp(a[1], "remove") == 0 && nargs == 3) {
                if (request(&c, "DELETE", path, NULL, &r) < 0) return 1;
                int rc = finish(&c, &r, NULL);
                if (rc == 0 && !c.json) printf("removed blob server %llu\n", id);
                return rc;
            }
            if (strcmp(a[1], "undrain") == 0 && nargs == 3) {
                append(path, sizeof(path), "/undrain");
                if (request(&c, "POST", path, "{}", &r) < 0) return 1;
                return finish(&c, &r, show_node);
            }
            bool no_wait = nargs == 4 && strcmp(a[3], "--no-wait") == 0;
            if (strcmp(a[1], "drain") == 0 && (nargs == 3 || no_wait)) {
                char drain[1100];
                snprintf(drain, sizeof(drain), "%s/drain", path);
                if (request(&c, "POST", drain, "{}", &r) < 0) return 1;
                if (c.json || no_wait) return finish(&c, &r, show_node);
                int rc = finish(&c, &r, show_node);
                if (rc) return rc;
                /* Follow it until nothing is left on the server. */
                for (;;) {
                    if (request(&c, "GET", path, NULL, &r) < 0) return 1;
                    if (r.status != 200) return finish(&c, &r, NULL);
                    cJSON *j = cJSON_Parse(r.body);
                    httpc_resp_free(&r);
                    const cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "drain") : NULL;
                    double left = d ? num_field(d, "partitions_left") + num_field(d, "moves") : 0;
                    if (d) {
                        char what[64];
                        snprintf(what, sizeof(what), "drain of %llu: %.0f partition(s) left", id,
                                 num_field(d, "partitions_left"));
                        print_progress(what, d);
                        fflush(stdout);
                    }
                    cJSON_Delete(j);
                    if (!d || left == 0) break;
                    usleep(2000 * 1000);
                }
                printf("blob server %llu is drained: `blockd ctl node remove %llu` forgets it\n",
                       id, id);
                return 0;
            }
        }
    } else if (strcmp(a[0], "proxy") == 0) {
        if (strcmp(a[1], "list") == 0 && nargs == 2) {
            if (request(&c, "GET", "/v1/proxies", NULL, &r) < 0) return 1;
            return finish(&c, &r, show_proxies);
        }
        if (strcmp(a[1], "add") == 0 && nargs == 4) {
            char *end;
            unsigned long long id = strtoull(a[2], &end, 10);
            if (*end || !id) {
                fprintf(stderr, "blockd ctl: a proxy id is a number, not '%s'\n", a[2]);
                return 2;
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", (double)id);
            cJSON_AddStringToObject(o, "addr", a[3]);
            snprintf(label, sizeof(label), "adding proxy %llu", id);
            if (post_json(&c, label, "/v1/proxies", o, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json)
                printf("proxy %llu at %s added; it votes once caught up (blockd ctl proxy list)\n",
                       id, a[3]);
            return rc;
        }
        if (strcmp(a[1], "remove") == 0 && nargs == 3) {
            path_for(path, sizeof(path), "/v1/proxies/", a[2]);
            if (request(&c, "DELETE", path, NULL, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("proxy %s removed from the Raft group\n", a[2]);
            return rc;
        }
    } else if (strcmp(a[0], "qos-profile") == 0) {
        if (nargs >= 3) path_for(path, sizeof(path), "/v1/qos-profiles/", a[2]);
        if (strcmp(a[1], "list") == 0 && nargs == 2) {
            if (request(&c, "GET", "/v1/qos-profiles", NULL, &r) < 0) return 1;
            return finish(&c, &r, show_profiles);
        }
        if (strcmp(a[1], "info") == 0 && nargs == 3) {
            if (request(&c, "GET", path, NULL, &r) < 0) return 1;
            return finish(&c, &r, show_profile);
        }
        if ((strcmp(a[1], "create") == 0 || strcmp(a[1], "set") == 0) && nargs >= 4) {
            bool create = a[1][0] == 'c';
            cJSON *o = cJSON_CreateObject();
            int qrc = qos_opts(nargs - 3, a + 3, o, !create, true);
            if (qrc) {
                cJSON_Delete(o);
                return qrc;
            }
            snprintf(label, sizeof(label), "qos-profile %s %s", a[1], a[2]);
            if (create) {
                cJSON_AddStringToObject(o, "name", a[2]);
                if (!cJSON_GetObjectItemCaseSensitive(o, "limits"))
                    cJSON_AddObjectToObject(o, "limits"); /* required: may be empty */
                if (post_json(&c, label, "/v1/qos-profiles", o, &r) < 0) return 1;
                return finish(&c, &r, show_profile);
            }
            char *s = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            int rc = request_waiting(&c, label, "PATCH", path, s, &r);
            free(s);
            if (rc < 0) return 1;
            return finish(&c, &r, show_profile);
        }
        if (strcmp(a[1], "rm") == 0 && nargs == 3) {
            snprintf(label, sizeof(label), "qos-profile rm %s", a[2]);
            if (request_waiting(&c, label, "DELETE", path, NULL, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("deleted QoS profile %s\n", a[2]);
            return rc;
        }
    } else if (strcmp(a[0], "health") == 0 && nargs == 1) {
        if (request(&c, "GET", "/v1/health", NULL, &r) < 0) return 1;
        return finish(&c, &r, show_health);
    } else if (strcmp(a[0], "cluster") == 0 && strcmp(a[1], "status") == 0 && nargs == 2) {
        if (request(&c, "GET", "/v1/cluster", NULL, &r) < 0) return 1;
        return finish(&c, &r, show_cluster);
    }
    struct ctl_life_ctx lx = {.n_urls = c.n_urls, .token = c.token, .ca_file = c.ca_file,
                              .json = c.json};
    for (int k = 0; k < c.n_urls; k++) lx.urls[k] = c.urls[k];
    int life = ctl_life_main(&lx, nargs, a);
    if (life >= 0) return life;
    fprintf(stderr, "blockd ctl: unknown command\n");
    usage(stderr);
    return 2;
}
