/* config.c: parse and validate a blockd config file (see config.h).
 *
 * Structure: one parse_* function per object kind, each listing the keys it
 * allows (jsonv_check_keys rejects the rest, so a typo such as "replicaton"
 * stops start-up instead of being ignored) and reading each key with its
 * type and range.  Defaults are set before reading, so an absent optional
 * key keeps its default.  Cross-field rules (own id among peers, no
 * duplicate ids or addresses, read timeout below the GC grace) run after
 * the fields.  Nothing here binds a port or touches a data directory. */
#include "config.h"
#include "bd.h"
#include "jsonv.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_MAX_FILE (1u << 20)
#define CFG_MAX_DEPTH 8

static int get_addr(struct jsonv_doc *d, const cJSON *o, const char *path, const char *key,
                    bool required, char *out)
{
    const char *s;
    int rc = jsonv_get_str(d, o, path, key, required, 1, CFG_ADDR_MAX - 1, &s);
    if (rc != 0) return rc;
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(s, &ss, &len) < 0) {
        char p[256];
        snprintf(p, sizeof(p), "%s.%s", path, key);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, key);
        return jsonv_fail(d, n, p,
                          "expected an address \"host:port\" with a numeric host and a port "
                          "in 1..65535, or \"unix:/path\"");
    }
    util_strlcpy(out, s, CFG_ADDR_MAX);
    return 0;
}

static int get_path(struct jsonv_doc *d, const cJSON *o, const char *path, const char *key,
                    bool required, char *out)
{
    const char *s;
    int rc = jsonv_get_str(d, o, path, key, required, 1, CFG_PATH_MAX - 1, &s);
    if (rc == 0) util_strlcpy(out, s, CFG_PATH_MAX);
    return rc;
}

/* get_* return 1 for "absent, optional": only negatives are errors. */
#define TRY(x)                                                                             \
    do {                                                                                   \
        int rc_ = (x);                                                                     \
        if (rc_ < 0) return rc_;                                                           \
    } while (0)

static int parse_fault(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_fault *f)
{
    const cJSON *fo;
    int rc = jsonv_get_object(d, o, path, "fault", false, &fo);
    if (rc != 0) return rc < 0 ? rc : 0;
    char p[256];
    snprintf(p, sizeof(p), "%s.fault", path);
#ifndef BD_FAULT_INJECTION
    return jsonv_fail(d, fo, p, "fault injection is not compiled into this build");
#endif
    static const char *const keys[] = {"seed", "socket_failure_every", "delay_ms",
                                       "fsync_eio_after", NULL};
    TRY(jsonv_check_keys(d, fo, p, keys));
    TRY(jsonv_get_u64(d, fo, p, "seed", false, 0, UINT64_MAX, &f->seed));
    TRY(jsonv_get_u64(d, fo, p, "socket_failure_every", false, 0, 1u << 30,
                      &f->socket_failure_every));
    TRY(jsonv_get_u64(d, fo, p, "delay_ms", false, 0, 60000, &f->delay_ms));
    TRY(jsonv_get_u64(d, fo, p, "fsync_eio_after", false, 0, 1u << 30, &f->fsync_eio_after));
    return 0;
}

static int parse_addr_list(struct jsonv_doc *d, const cJSON *o, const char *path,
                           const char *key, char out[][CFG_ADDR_MAX], unsigned *n)
{
    const cJSON *arr;
    TRY(jsonv_get_array(d, o, path, key, true, 1, CFG_MAX_PEERS, &arr));
    unsigned i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s.%s[%u]", path, key, i);
        struct sockaddr_storage ss;
        socklen_t len;
        if (!cJSON_IsString(e) || strlen(e->valuestring) >= CFG_ADDR_MAX ||
            util_parse_addr(e->valuestring, &ss, &len) < 0)
            return jsonv_fail(d, e, p, "expected an address \"host:port\"");
        util_strlcpy(out[i], e->valuestring, CFG_ADDR_MAX);
        for (unsigned j = 0; j < i; j++)
            if (strcmp(out[j], out[i]) == 0)
                return jsonv_fail(d, e, p, "duplicate address %s", out[i]);
    }
    *n = i;
    return 0;
}

static int parse_proxy(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_proxy *c)
{
    static const char *const keys[] = {
        "id", "listen", "admin", "data_dir", "peers", "blob_max_bytes", "node_timeout_ms",
        "election_timeout_ms", "raft_heartbeat_ms", "snapshot_threshold", "snapshot_trailing",
        "gc_grace_ms", "read_timeout_ms", "index_map_bytes", "partitions_per_node",
        "allow_tmpfs", "fault", "repair_interval_ms", "orphan_grace_ms", "replace_after_ms",
        NULL};
    TRY(jsonv_check_keys(d, o, path, keys));
    c->blob_max_bytes = 1u << 20;
    c->node_timeout_ms = 3000;
    c->election_timeout_ms = 1000;
    c->raft_heartbeat_ms = 100;
    c->snapshot_threshold = 8192;
    c->snapshot_trailing = 2048;
    c->gc_grace_ms = 30000;
    c->read_timeout_ms = 10000;
    c->index_map_bytes = 16ull << 30;
    c->partitions_per_node = 8;
    c->repair_interval_ms = 60000;
    c->orphan_grace_ms = 600000;
    c->replace_after_ms = 600000;
    TRY(jsonv_get_u64(d, o, path, "id", true, 1, UINT32_MAX, &c->id));
    TRY(get_addr(d, o, path, "listen", true, c->listen));
    TRY(get_addr(d, o, path, "admin", false, c->admin));
    TRY(get_path(d, o, path, "data_dir", true, c->data_dir));
    TRY(jsonv_get_size(d, o, path, "blob_max_bytes", false, BD_BLOCK_SIZE, 16u << 20,
                       &c->blob_max_bytes));
    TRY(jsonv_get_u64(d, o, path, "node_timeout_ms", false, 100, 600000, &c->node_timeout_ms));
    TRY(jsonv_get_u64(d, o, path, "election_timeout_ms", false, 50, 60000,
                      &c->election_timeout_ms));
    TRY(jsonv_get_u64(d, o, path, "raft_heartbeat_ms", false, 10, 10000, &c->raft_heartbeat_ms));
    TRY(jsonv_get_u64(d, o, path, "snapshot_threshold", false, 16, 1u << 30,
                      &c->snapshot_threshold));
    TRY(jsonv_get_u64(d, o, path, "snapshot_trailing", false, 0, 1u << 30,
                      &c->snapshot_trailing));
    TRY(jsonv_get_u64(d, o, path, "gc_grace_ms", false, 0, 86400000, &c->gc_grace_ms));
    TRY(jsonv_get_u64(d, o, path, "read_timeout_ms", false, 100, 600000, &c->read_timeout_ms));
    TRY(jsonv_get_size(d, o, path, "index_map_bytes", false, 1u << 20, 1ull << 42,
                       &c->index_map_bytes));
    TRY(jsonv_get_u64(d, o, path, "partitions_per_node", false, 1, 1024,
                      &c->partitions_per_node));
    TRY(jsonv_get_bool(d, o, path, "allow_tmpfs", false, &c->allow_tmpfs));
    TRY(jsonv_get_u64(d, o, path, "repair_interval_ms", false, 100, 86400000,
                      &c->repair_interval_ms));
    TRY(jsonv_get_u64(d, o, path, "orphan_grace_ms", false, CFG_ORPHAN_GRACE_MIN_MS,
                      7 * 86400000ull, &c->orphan_grace_ms));
    TRY(jsonv_get_u64(d, o, path, "replace_after_ms", false, 1000, 7 * 86400000ull,
                      &c->replace_after_ms));
    TRY(parse_fault(d, o, path, &c->fault));
    if (c->blob_max_bytes % BD_BLOCK_SIZE)
        return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(o, "blob_max_bytes"), path,
                          "blob_max_bytes must be a multiple of %u", BD_BLOCK_SIZE);
    if (c->raft_heartbeat_ms * 2 > c->election_timeout_ms)
        return jsonv_fail(d, o, path,
                          "raft_heartbeat_ms (%llu) must be at most half of "
                          "election_timeout_ms (%llu)",
                          (unsigned long long)c->raft_heartbeat_ms,
                          (unsigned long long)c->election_timeout_ms);
    if (c->gc_grace_ms && c->read_timeout_ms >= c->gc_grace_ms)
        return jsonv_fail(d, o, path,
                          "read_timeout_ms (%llu) must be below gc_grace_ms (%llu): a read "
                          "must never outlive the deletion of a blob it resolved",
                          (unsigned long long)c->read_timeout_ms,
                          (unsigned long long)c->gc_grace_ms);

    const cJSON *peers;
    TRY(jsonv_get_array(d, o, path, "peers", true, 1, CFG_MAX_PEERS, &peers));
    unsigned i = 0;
    bool self = false;
    for (const cJSON *e = peers->child; e; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s.peers[%u]", path, i);
        static const char *const pkeys[] = {"id", "addr", NULL};
        TRY(jsonv_check_keys(d, e, p, pkeys));
        TRY(jsonv_get_u64(d, e, p, "id", true, 1, UINT32_MAX, &c->peers[i].id));
        TRY(get_addr(d, e, p, "addr", true, c->peers[i].addr));
        for (unsigned j = 0; j < i; j++) {
            if (c->peers[j].id == c->peers[i].id)
                return jsonv_fail(d, e, p, "duplicate peer id %llu",
                                  (unsigned long long)c->peers[i].id);
            if (strcmp(c->peers[j].addr, c->peers[i].addr) == 0)
                return jsonv_fail(d, e, p, "duplicate peer address %s", c->peers[i].addr);
        }
        if (c->peers[i].id == c->id) {
            if (strcmp(c->peers[i].addr, c->listen) != 0)
                return jsonv_fail(d, e, p,
                                  "this proxy's own entry has addr %s but listen is %s",
                                  c->peers[i].addr, c->listen);
            self = true;
        }
    }
    c->n_peers = i;
    if (!self)
        return jsonv_fail(d, peers, path, "peers must include this proxy (id %llu)",
                          (unsigned long long)c->id);
    if (c->n_peers % 2 == 0)
        return jsonv_fail(d, peers, path,
                          "peers must list an odd number of proxies (1, 3, 5 or 7), got %u",
                          c->n_peers);
    return 0;
}

static int parse_blob(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_blob *c)
{
    static const char *const keys[] = {
        "id", "listen", "admin", "data_dir", "proxies", "capacity_bytes", "segment_bytes",
        "compression", "compress_min_saving_pct", "scrub_bytes_per_sec", "compact_live_pct",
        "heartbeat_ms", "max_blob_bytes", "fault", NULL};
    static const char *const comp[] = {"off", "auto", NULL};
    TRY(jsonv_check_keys(d, o, path, keys));
    c->segment_bytes = 256u << 20;
    c->compression = CFG_COMPRESS_OFF;
    c->compress_min_saving_pct = 10;
    c->scrub_bytes_per_sec = 16u << 20;
    c->compact_live_pct = 50;
    c->heartbeat_ms = 500;
    c->max_blob_bytes = 16u << 20;
    TRY(jsonv_get_u64(d, o, path, "id", true, 1, UINT32_MAX, &c->id));
    TRY(get_addr(d, o, path, "listen", true, c->listen));
    TRY(get_addr(d, o, path, "admin", false, c->admin));
    TRY(get_path(d, o, path, "data_dir", true, c->data_dir));
    TRY(parse_addr_list(d, o, path, "proxies", c->proxies, &c->n_proxies));
    TRY(jsonv_get_size(d, o, path, "capacity_bytes", false, 0, 1ull << 60, &c->capacity_bytes));
    TRY(jsonv_get_size(d, o, path, "segment_bytes", false, 1u << 20, 1ull << 32,
                       &c->segment_bytes));
    TRY(jsonv_get_enum(d, o, path, "compression", false, comp, &c->compression));
    TRY(jsonv_get_u64(d, o, path, "compress_min_saving_pct", false, 0, 99,
                      &c->compress_min_saving_pct));
    TRY(jsonv_get_size(d, o, path, "scrub_bytes_per_sec", false, 0, 1ull << 40,
                       &c->scrub_bytes_per_sec));
    TRY(jsonv_get_u64(d, o, path, "compact_live_pct", false, 0, 100, &c->compact_live_pct));
    TRY(jsonv_get_u64(d, o, path, "heartbeat_ms", false, 10, 60000, &c->heartbeat_ms));
    TRY(jsonv_get_size(d, o, path, "max_blob_bytes", false, BD_BLOCK_SIZE, 64u << 20,
                       &c->max_blob_bytes));
    TRY(parse_fault(d, o, path, &c->fault));
    if (c->max_blob_bytes > c->segment_bytes / 2)
        return jsonv_fail(d, o, path, "max_blob_bytes must be at most half of segment_bytes");
    return 0;
}

static int parse_agent(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_agent *c)
{
    static const char *const keys[] = {
        "id", "nbd_listen", "nbd_unix", "admin", "proxies", "cache_dir", "cache_bytes",
        "cache_high_water_pct", "flush_age_ms", "io_timeout_ms", "handshake_timeout_ms",
        "max_handshakes", "max_connections", "ship_bytes", "fault", NULL};
    TRY(jsonv_check_keys(d, o, path, keys));
    c->cache_bytes = 256u << 20;
    c->cache_high_water_pct = 50;
    c->flush_age_ms = 5000;
    c->io_timeout_ms = 30000;
    c->handshake_timeout_ms = 10000;
    c->max_handshakes = 100;
    c->max_connections = 1024;
    c->ship_bytes = 1u << 20;
    const char *id;
    TRY(jsonv_get_str(d, o, path, "id", true, 1, 64, &id));
    for (const char *s = id; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.')) {
            char p[256];
            snprintf(p, sizeof(p), "%s.id", path);
            return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(o, "id"), p,
                              "expected letters, digits, '-', '_' or '.'");
        }
    util_strlcpy(c->id, id, sizeof(c->id));
    TRY(get_addr(d, o, path, "nbd_listen", false, c->nbd_listen));
    TRY(get_path(d, o, path, "nbd_unix", false, c->nbd_unix));
    TRY(get_addr(d, o, path, "admin", false, c->admin));
    TRY(parse_addr_list(d, o, path, "proxies", c->proxies, &c->n_proxies));
    TRY(get_path(d, o, path, "cache_dir", true, c->cache_dir));
    TRY(jsonv_get_size(d, o, path, "cache_bytes", false, 4u << 20, 1ull << 40, &c->cache_bytes));
    TRY(jsonv_get_u64(d, o, path, "cache_high_water_pct", false, 1, 100,
                      &c->cache_high_water_pct));
    TRY(jsonv_get_u64(d, o, path, "flush_age_ms", false, 1, 3600000, &c->flush_age_ms));
    TRY(jsonv_get_u64(d, o, path, "io_timeout_ms", false, 100, 3600000, &c->io_timeout_ms));
    TRY(jsonv_get_u64(d, o, path, "handshake_timeout_ms", false, 100, 600000,
                      &c->handshake_timeout_ms));
    TRY(jsonv_get_u64(d, o, path, "max_handshakes", false, 1, 100000, &c->max_handshakes));
    TRY(jsonv_get_u64(d, o, path, "max_connections", false, 1, 100000, &c->max_connections));
    TRY(jsonv_get_size(d, o, path, "ship_bytes", false, BD_BLOCK_SIZE, 16u << 20,
                       &c->ship_bytes));
    TRY(parse_fault(d, o, path, &c->fault));
    if (!c->nbd_listen[0] && !c->nbd_unix[0])
        return jsonv_fail(d, o, path, "at least one of nbd_listen and nbd_unix is required");
    if (c->ship_bytes % BD_BLOCK_SIZE)
        return jsonv_fail(d, o, path, "ship_bytes must be a multiple of %u", BD_BLOCK_SIZE);
    if (c->max_handshakes > c->max_connections)
        return jsonv_fail(d, o, path, "max_handshakes must not exceed max_connections");
    return 0;
}

/* A section is one object or an array of them; returns the count in *N and
 * an array allocated with calloc in *OUT. */
static int parse_section(struct jsonv_doc *d, const cJSON *root, const char *key, size_t elem,
                         int (*fn)(struct jsonv_doc *, const cJSON *, const char *, void *),
                         void **out, unsigned *n)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = NULL;
    *n = 0;
    if (!s) return 0;
    unsigned cnt = cJSON_IsArray(s) ? (unsigned)cJSON_GetArraySize(s) : 1;
    if (!cJSON_IsArray(s) && !cJSON_IsObject(s))
        return jsonv_fail(d, s, key, "expected an object or an array of objects");
    if (cnt == 0 || cnt > 16)
        return jsonv_fail(d, s, key, "expected 1 to 16 instances, got %u", cnt);
    uint8_t *arr = calloc(cnt, elem);
    if (!arr) return -ENOMEM;
    *out = arr;
    *n = cnt;
    if (cJSON_IsObject(s)) return fn(d, s, key, arr);
    unsigned i = 0;
    for (const cJSON *e = s->child; e; e = e->next, i++) {
        char p[64];
        snprintf(p, sizeof(p), "%s[%u]", key, i);
        TRY(fn(d, e, p, arr + i * elem));
    }
    return 0;
}

static int proxy_fn(struct jsonv_doc *d, const cJSON *o, const char *p, void *out)
{
    return parse_proxy(d, o, p, out);
}
static int blob_fn(struct jsonv_doc *d, const cJSON *o, const char *p, void *out)
{
    return parse_blob(d, o, p, out);
}
static int agent_fn(struct jsonv_doc *d, const cJSON *o, const char *p, void *out)
{
    return parse_agent(d, o, p, out);
}

/* Read a secret file, refusing one that others may read (nbdkit's rule for
 * key files).  Trailing newlines are dropped. */
static int read_secret(struct jsonv_doc *d, const cJSON *root, const char *key, char *out)
{
    const char *path;
    int rc = jsonv_get_str(d, root, "", key, false, 1, CFG_PATH_MAX - 1, &path);
    if (rc != 0) return rc < 0 ? rc : 0;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, key);
    struct stat st;
    if (stat(path, &st) < 0)
        return jsonv_fail(d, n, key, "cannot read %s: %s", path, strerror(errno));
    if (st.st_mode & 077)
        return jsonv_fail(d, n, key, "%s is readable by group or others (mode %03o); "
                                     "chmod 0600 it",
                          path, (unsigned)(st.st_mode & 0777));
    char *buf;
    size_t len;
    rc = util_read_file(path, CFG_SECRET_MAX - 1, &buf, &len);
    if (rc < 0) return jsonv_fail(d, n, key, "cannot read %s: %s", path, bd_strerror(rc));
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = 0;
    if (len < 16 || strlen(buf) != len) {
        free(buf);
        return jsonv_fail(d, n, key, "%s must hold at least 16 printable bytes", path);
    }
    util_strlcpy(out, buf, CFG_SECRET_MAX);
    free(buf);
    return 0;
}

static int parse_root(struct jsonv_doc *d, struct bd_config *cfg)
{
    static const char *const keys[] = {"cluster_id", "secret_file", "admin_token_file", "log",
                                       "agent", "proxy", "blob", NULL};
    const cJSON *root = d->root;
    TRY(jsonv_check_keys(d, root, "", keys));
    const char *cid;
    TRY(jsonv_get_str(d, root, "", "cluster_id", true, 1, 64, &cid));
    for (const char *s = cid; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(root, "cluster_id"),
                              "cluster_id", "expected [a-z0-9_-]{1,64}");
    util_strlcpy(cfg->cluster_id, cid, sizeof(cfg->cluster_id));
    TRY(read_secret(d, root, "secret_file", cfg->secret));
    TRY(read_secret(d, root, "admin_token_file", cfg->admin_token));

    util_strlcpy(cfg->log_file, "-", sizeof(cfg->log_file));
    cfg->log_level = LOG_INFO;
    const cJSON *log;
    int rc = jsonv_get_object(d, root, "", "log", false, &log);
    if (rc < 0) return rc;
    if (rc == 0) {
        static const char *const lkeys[] = {"file", "level", NULL};
        static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
        TRY(jsonv_check_keys(d, log, "log", lkeys));
        TRY(get_path(d, log, "log", "file", false, cfg->log_file));
        int lv = LOG_INFO;
        TRY(jsonv_get_enum(d, log, "log", "level", false, levels, &lv));
        cfg->log_level = (enum log_level)lv;
    }
    /* Store each array before checking the result, so config_free() frees
     * it when a later instance in the section fails. */
    void *p = NULL;
    rc = parse_section(d, root, "proxy", sizeof(struct cfg_proxy), proxy_fn, &p, &cfg->n_proxies);
    cfg->proxies = p;
    TRY(rc);
    rc = parse_section(d, root, "blob", sizeof(struct cfg_blob), blob_fn, &p, &cfg->n_blobs);
    cfg->blobs = p;
    TRY(rc);
    rc = parse_section(d, root, "agent", sizeof(struct cfg_agent), agent_fn, &p, &cfg->n_agents);
    cfg->agents = p;
    TRY(rc);
    if (!cfg->n_proxies && !cfg->n_blobs && !cfg->n_agents)
        return jsonv_fail(d, root, "(top)", "no role section: expected agent, proxy or blob");

    /* Instances in one process must not collide on ids or addresses. */
    for (unsigned i = 0; i < cfg->n_blobs; i++)
        for (unsigned j = 0; j < i; j++)
            if (cfg->blobs[i].id == cfg->blobs[j].id)
                return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(root, "blob"), "blob",
                                  "duplicate blob id %llu", (unsigned long long)cfg->blobs[i].id);
    for (unsigned i = 0; i < cfg->n_proxies; i++)
        for (unsigned j = 0; j < i; j++)
            if (cfg->proxies[i].id == cfg->proxies[j].id)
                return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(root, "proxy"), "proxy",
                                  "duplicate proxy id %llu",
                                  (unsigned long long)cfg->proxies[i].id);
    return 0;
}

int config_parse(const char *source, const char *text, size_t len, struct bd_config *cfg,
                 char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    util_strlcpy(cfg->path, source, sizeof(cfg->path));
    struct jsonv_doc d;
    int rc = jsonv_parse(&d, source, text, len, CFG_MAX_DEPTH);
    if (rc == 0) rc = parse_root(&d, cfg);
    if (rc < 0) {
        snprintf(err, errlen, "%s", d.err[0] ? d.err : bd_strerror(rc));
        jsonv_free(&d);
        config_free(cfg);
        return -BD_ECONFIG;
    }
    jsonv_free(&d);
    return 0;
}

int config_load(const char *path, struct bd_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    char *text;
    size_t len;
    int rc = util_read_file(path, CFG_MAX_FILE, &text, &len);
    if (rc < 0) {
        if (rc == -EFBIG) snprintf(err, errlen, "%s: larger than %u bytes", path, CFG_MAX_FILE);
        else snprintf(err, errlen, "%s: cannot read: %s", path, bd_strerror(rc));
        return -BD_ECONFIG;
    }
    rc = config_parse(path, text, len, cfg, err, errlen);
    free(text);
    return rc;
}

void config_free(struct bd_config *cfg)
{
    free(cfg->proxies);
    free(cfg->blobs);
    free(cfg->agents);
    cfg->proxies = NULL;
    cfg->blobs = NULL;
    cfg->agents = NULL;
    cfg->n_proxies = cfg->n_blobs = cfg->n_agents = 0;
}
