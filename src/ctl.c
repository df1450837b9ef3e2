/* ctl.c: `blockd ctl`, a CLI over the proxies' admin HTTP API.
 *
 *   blockd ctl [--url HOST:PORT]... [--token-file F] [--json] COMMAND
 *     volume create NAME SIZE     SIZE in bytes or with a unit: 10G, 512M
 *     volume list
 *     volume info NAME
 *     volume resize NAME SIZE     grow only
 *     volume rm NAME
 *     volume detach NAME          force-detach a dead agent (fences it, C10)
 *     volume clone VOLUME SNAP NEW   a new volume from a snapshot
 *     snapshot create VOLUME SNAP
 *     snapshot list VOLUME
 *     snapshot rm VOLUME SNAP
 *     cluster status
 *
 * Finding the cluster, first match wins: --url (repeatable), $BLOCKD_URL
 * (comma-separated), or the proxies listed in the local cluster's
 * cluster.json ($BLOCKD_DATA/cluster.json, default ./data/cluster.json),
 * written by scripts/quickstart.  The token comes from --token-file,
 * $BLOCKD_TOKEN, or cluster.json's token_file.
 *
 * Any proxy can answer (followers forward mutations to the leader), so a
 * request goes to the first proxy that accepts the connection; a proxy that
 * cannot be reached is skipped.  Output is a table for people or, with
 * --json, the server's JSON unchanged for scripts.  A server error is one
 * line on stderr and exit status 1; a usage error exits 2. */
#include "ctl.h"
#include "bd.h"
#include "net/httpc.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_TIMEOUT_MS 30000
#define CTL_MAX_URLS 16

struct ctl {
    char urls[CTL_MAX_URLS][128];
    int n_urls;
    char token[512];
    bool json;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: blockd ctl [--url HOST:PORT] [--token-file FILE] [--json] COMMAND\n"
               "\n"
               "commands:\n"
               "  volume create NAME SIZE    create a volume (SIZE like 10G, 512M, or bytes)\n"
               "  volume list                list volumes\n"
               "  volume info NAME           show one volume\n"
               "  volume resize NAME SIZE    grow a volume\n"
               "  volume rm NAME             delete a volume (must not be attached)\n"
               "  volume detach NAME         force-detach its agent (fences it: its later\n"
               "                             writes are refused)\n"
               "  volume clone VOL SNAP NEW  a new volume NEW from snapshot SNAP of VOL\n"
               "  snapshot create VOL SNAP   snapshot a volume (crash-consistent: what its\n"
               "                             agent has shipped; flush first)\n"
               "  snapshot list VOL          list a volume's snapshots\n"
               "  snapshot rm VOL SNAP       delete a snapshot\n"
               "  cluster status             proxies, raft state, blob servers, partitions\n"
               "\n"
               "The cluster is found from --url, $BLOCKD_URL, or $BLOCKD_DATA/cluster.json\n"
               "(default ./data/cluster.json); the token from --token-file, $BLOCKD_TOKEN,\n"
               "or cluster.json.\n");
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
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(root, "token_file");
    if (want_token && !c->token[0] && cJSON_IsString(tf)) rc = read_token_file(c, tf->valuestring);
    cJSON_Delete(root);
    return rc;
}

/* Send to the first reachable proxy.  Returns 0 with RESP filled, or -errno
 * after printing why no proxy answered. */
static int request(struct ctl *c, const char *method, const char *path, const char *body,
                   struct httpc_resp *resp)
{
    int last = -ENOENT;
    for (int i = 0; i < c->n_urls; i++) {
        last = httpc_request(c->urls[i], method, path, body, c->token[0] ? c->token : NULL,
                             CTL_TIMEOUT_MS, resp);
        if (last == 0) return 0;
    }
    fprintf(stderr, "blockd ctl: no proxy answered (%d tried): %s\n", c->n_urls,
            bd_strerror(last));
    return last;
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
    char sz[32];
    const char *att = str_field(v, "attached_to", "");
    printf("%-32s %12s %6.0f %10.0f  %s\n", str_field(v, "name", "?"),
           util_fmt_size((uint64_t)num_field(v, "size"), sz, sizeof(sz)), num_field(v, "id"),
           num_field(v, "generation"), *att ? att : "-");
}

static void print_volume_header(void)
{
    printf("%-32s %12s %6s %10s  %s\n", "NAME", "SIZE", "ID", "GENERATION", "ATTACHED");
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

static void show_volume(const cJSON *v)
{
    print_volume_header();
    print_volume_row(v);
}

static void show_volumes(const cJSON *j)
{
    print_volume_header();
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "volumes")) print_volume_row(v);
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

/* POST O (consumed) as JSON to PATH. */
static int post_json(struct ctl *c, const char *path, cJSON *o, struct httpc_resp *r)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "blockd ctl: out of memory\n");
        return -ENOMEM;
    }
    int rc = request(c, "POST", path, s, r);
    free(s);
    return rc;
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
    if (nargs < 2) {
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
    const char *tok = getenv("BLOCKD_TOKEN");
    if (!c.token[0] && tok) util_strlcpy(c.token, tok, sizeof(c.token));
    if (load_cluster_json(&c, true) == -EINVAL) return 1;
    if (c.n_urls == 0) {
        fprintf(stderr, "blockd ctl: no cluster: use --url, $BLOCKD_URL or run "
                        "./scripts/quickstart (which writes data/cluster.json)\n");
        return 2;
    }

    struct httpc_resp r;
    char path[1024], body[512];
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
        if (strcmp(a[1], "create") == 0 && nargs == 4) {
            if (parse_size_arg(a[3], &size) < 0) return 2;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", a[2]);
            snprintf(body, sizeof(body), "%llu", (unsigned long long)size);
            cJSON_AddStringToObject(o, "size", body); /* a string: exact at any size */
            if (post_json(&c, "/v1/volumes", o, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "resize") == 0 && nargs == 4) {
            if (parse_size_arg(a[3], &size) < 0) return 2;
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            snprintf(body, sizeof(body), "{\"size\": \"%llu\"}", (unsigned long long)size);
            if (request(&c, "PATCH", path, body, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "rm") == 0 && nargs == 3) {
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            if (request(&c, "DELETE", path, NULL, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("deleted %s\n", a[2]);
            return rc;
        }
        if (strcmp(a[1], "detach") == 0 && nargs == 3) {
            path_for(path, sizeof(path), "/v1/volumes/", a[2]);
            append(path, sizeof(path), "/attachment");
            if (request(&c, "DELETE", path, NULL, &r) < 0) return 1;
            return finish(&c, &r, show_volume);
        }
        if (strcmp(a[1], "clone") == 0 && nargs == 5) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", a[4]);
            cJSON *snap = cJSON_AddObjectToObject(o, "snapshot");
            cJSON_AddStringToObject(snap, "volume", a[2]);
            cJSON_AddStringToObject(snap, "name", a[3]);
            if (post_json(&c, "/v1/volumes", o, &r) < 0) return 1;
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
            if (post_json(&c, path, o, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("snapshot %s of %s created\n", a[3], a[2]);
            return rc;
        }
        if (strcmp(a[1], "rm") == 0 && nargs == 4) {
            char snap[512];
            path_for(snap, sizeof(snap), "/", a[3]);
            append(path, sizeof(path), snap);
            if (request(&c, "DELETE", path, NULL, &r) < 0) return 1;
            int rc = finish(&c, &r, NULL);
            if (rc == 0 && !c.json) printf("deleted snapshot %s of %s\n", a[3], a[2]);
            return rc;
        }
    } else if (strcmp(a[0], "cluster") == 0 && strcmp(a[1], "status") == 0 && nargs == 2) {
        if (request(&c, "GET", "/v1/cluster", NULL, &r) < 0) return 1;
        return finish(&c, &r, show_cluster);
    }
    fprintf(stderr, "blockd ctl: unknown command\n");
    usage(stderr);
    return 2;
}
