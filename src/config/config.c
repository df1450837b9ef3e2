/* config.c: parse and validate a blockd config file (see config.h).
 *
 * Structure: one generic reader walks the key tables of config_keys.c.
 * read_object() takes one JSON object and its table: it rejects keys the
 * table does not list (jsonv_check_keys, so a typo such as "replicaton"
 * stops start-up instead of being ignored), sets every default, reads each
 * row in table order with its type and range (read_key), and last runs the
 * object's cross-field rules (run_rules).  Nested objects (log, fault),
 * arrays of objects (peers) and role sections (one object or an array of
 * them) recurse into the same reader.
 *
 * Cross-field rules are the one part written by hand: own id among peers,
 * no duplicate ids or addresses, a read timeout below the GC grace, ...
 * Each is stated in the doc of the key it constrains (config_keys.c), and
 * each runs at the point the hand-written parser before the key tables ran
 * it, so a file with several errors still reports the same first one.
 *
 * Nothing here binds a port or touches a data directory. */
#include "config/config.h"
#include "base/bd.h"
#include "base/jsonv.h"
#include "base/util.h"
#include "config/config_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_MAX_FILE (1u << 20)
#define CFG_MAX_DEPTH 8

/* jsonv_get_* return 1 for "absent, optional": only negatives are errors. */
#define TRY(x)                                                                             \
    do {                                                                                   \
        int rc_ = (x);                                                                     \
        if (rc_ < 0) return rc_;                                                           \
    } while (0)

static int read_object(struct jsonv_doc *d, const cJSON *o, const char *path,
                       const struct cfg_key_section *s, void *obj);

/* "path.key", or "key" at the top: the key path of messages, as jsonv writes it. */
static const char *join(char *buf, size_t len, const char *path, const char *key)
{
    if (*path) snprintf(buf, len, "%s.%s", path, key);
    else snprintf(buf, len, "%s", key);
    return buf;
}

static void *field(void *obj, const struct cfg_key *k)
{
    return (char *)obj + k->off;
}

static unsigned *count_field(void *obj, const struct cfg_key *k)
{
    return (unsigned *)(void *)((char *)obj + k->count_off);
}

/* Is C in PATTERN, a byte class like "[A-Za-z0-9._-]" (a '-' between two
 * bytes is a range, elsewhere itself)? */
static bool in_class(const char *pattern, char c)
{
    for (const char *p = pattern + 1; *p && *p != ']';) {
        if (p[1] == '-' && p[2] && p[2] != ']') {
            if (c >= p[0] && c <= p[2]) return true;
            p += 3;
        } else {
            if (c == p[0]) return true;
            p++;
        }
    }
    return false;
}

/* ---- Readers of the key types that need more than one jsonv call -------- */

static int read_addr(struct jsonv_doc *d, const cJSON *o, const char *path,
                     const struct cfg_key *k, char *out)
{
    const char *s;
    int rc = jsonv_get_str(d, o, path, k->name, k->required, k->min, k->max, &s);
    if (rc != 0) return rc;
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_parse_addr(s, &ss, &len) < 0) {
        char p[256];
        return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(o, k->name),
                          join(p, sizeof(p), path, k->name),
                          "expected an address \"host:port\" with a numeric host and a port "
                          "in 1..65535, or \"unix:/path\"");
    }
    util_strlcpy(out, s, CFG_ADDR_MAX);
    return 0;
}

static int read_name(struct jsonv_doc *d, const cJSON *o, const char *path,
                     const struct cfg_key *k, char *out)
{
    const char *s;
    int rc = jsonv_get_str(d, o, path, k->name, k->required, k->min, k->max, &s);
    if (rc != 0) return rc;
    for (const char *c = s; *c; c++)
        if (!in_class(k->pattern, *c)) {
            char p[256];
            return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(o, k->name),
                              join(p, sizeof(p), path, k->name), "%s", k->expect);
        }
    util_strlcpy(out, s, k->size);
    return 0;
}

/* Read a secret file, refusing one that others may read or another user
 * owns (nbdkit's rule for key files, util_check_private_file).  Trailing newlines are dropped; K's range bounds the rest. */
static int read_secret(struct jsonv_doc *d, const cJSON *o, const char *path,
                       const struct cfg_key *k, char *out)
{
    const char *file;
    int rc = jsonv_get_str(d, o, path, k->name, k->required, 1, CFG_PATH_MAX - 1, &file);
    if (rc != 0) return rc;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, k->name);
    char p[256];
    join(p, sizeof(p), path, k->name);
    char why[CFG_PATH_MAX + 160];
    if (util_check_private_file(file, why, sizeof(why)) < 0) return jsonv_fail(d, n, p, "%s", why);
    char *buf;
    size_t len;
    rc = util_read_file(file, k->max, &buf, &len);
    if (rc < 0) return jsonv_fail(d, n, p, "cannot read %s: %s", file, bd_strerror(rc));
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = 0;
    if (len < k->min || strlen(buf) != len) {
        free(buf);
        return jsonv_fail(d, n, p, "%s must hold at least %llu printable bytes", file,
                          (unsigned long long)k->min);
    }
    util_strlcpy(out, buf, CFG_SECRET_MAX);
    free(buf);
    return 0;
}

static int read_addrs(struct jsonv_doc *d, const cJSON *o, const char *path,
                      const struct cfg_key *k, void *obj)
{
    const cJSON *arr;
    int rc = jsonv_get_array(d, o, path, k->name, k->required, k->min, k->max, &arr);
    if (rc != 0) return rc;
    char(*out)[CFG_ADDR_MAX] = field(obj, k);
    unsigned i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s.%s[%u]", path, k->name, i);
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
    *count_field(obj, k) = i;
    return 0;
}

static int check_element(struct jsonv_doc *d, const cJSON *e, const char *path,
                         const struct cfg_key *k, void *owner, unsigned i);

/* An array of objects held in the struct (peers): each element is read,
 * then checked against the ones before it (check_element). */
static int read_list(struct jsonv_doc *d, const cJSON *o, const char *path,
                     const struct cfg_key *k, void *obj)
{
    const cJSON *arr;
    int rc = jsonv_get_array(d, o, path, k->name, k->required, k->min, k->max, &arr);
    if (rc != 0) return rc;
    uint8_t *elems = field(obj, k);
    unsigned i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s.%s[%u]", path, k->name, i);
        TRY(read_object(d, e, p, k->sub, elems + i * k->size));
        TRY(check_element(d, e, p, k, obj, i));
    }
    *count_field(obj, k) = i;
    return 0;
}

static void set_defaults(const struct cfg_key_section *s, void *obj);

/* A nested object (log, fault): absent leaves its defaults. */
static int read_nested(struct jsonv_doc *d, const cJSON *o, const char *path,
                       const struct cfg_key *k, void *obj)
{
    const cJSON *n;
    set_defaults(k->sub, field(obj, k));
    int rc = jsonv_get_object(d, o, path, k->name, k->required, &n);
    if (rc != 0) return rc;
    char p[256];
    join(p, sizeof(p), path, k->name);
#ifndef BD_FAULT_INJECTION
    if (k->sub->test_build_only)
        return jsonv_fail(d, n, p, "fault injection is not compiled into this build");
#endif
    return read_object(d, n, p, k->sub, field(obj, k));
}

/* A role section: one object, or an array of them, into an array
 * allocated with calloc.  The array and its count are stored before any
 * instance is read, so config_free() frees it when one fails. */
static int read_section(struct jsonv_doc *d, const cJSON *o, const char *path,
                        const struct cfg_key *k, void *obj)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, k->name);
    void **out = field(obj, k);
    unsigned *n = count_field(obj, k);
    *out = NULL;
    *n = 0;
    if (!s) return 0;
    char p[256];
    join(p, sizeof(p), path, k->name);
    unsigned cnt = cJSON_IsArray(s) ? (unsigned)cJSON_GetArraySize(s) : 1;
    if (!cJSON_IsArray(s) && !cJSON_IsObject(s))
        return jsonv_fail(d, s, p, "expected an object or an array of objects");
    if (cnt < k->min || cnt > k->max)
        return jsonv_fail(d, s, p, "expected %llu to %llu instances, got %u",
                          (unsigned long long)k->min, (unsigned long long)k->max, cnt);
    uint8_t *arr = calloc(cnt, k->size);
    if (!arr) return -ENOMEM;
    *out = arr;
    *n = cnt;
    if (cJSON_IsObject(s)) return read_object(d, s, p, k->sub, arr);
    unsigned i = 0;
    for (const cJSON *e = s->child; e; e = e->next, i++) {
        char ep[300];
        snprintf(ep, sizeof(ep), "%s[%u]", p, i);
        TRY(read_object(d, e, ep, k->sub, arr + i * k->size));
    }
    return 0;
}

/* ---- One key, one object ------------------------------------------------- */

/* Read row K of object O (at PATH) into OBJ.  0 stored, 1 absent and
 * optional, or -EINVAL with the message in D. */
static int read_key(struct jsonv_doc *d, const cJSON *o, const char *path,
                    const struct cfg_key *k, void *obj)
{
    void *f = field(obj, k);
    switch (k->type) {
    case CFG_KEY_U64:
        return jsonv_get_u64(d, o, path, k->name, k->required, k->min, k->max, f);
    case CFG_KEY_SIZE:
        return jsonv_get_size(d, o, path, k->name, k->required, k->min, k->max, f);
    case CFG_KEY_BOOL: return jsonv_get_bool(d, o, path, k->name, k->required, f);
    case CFG_KEY_ENUM: {
        int v;
        int rc = jsonv_get_enum(d, o, path, k->name, k->required, k->names, &v);
        if (rc == 0) memcpy(f, &v, sizeof(v)); /* the field is int-sized, maybe an enum */
        return rc;
    }
    case CFG_KEY_NAME: return read_name(d, o, path, k, f);
    case CFG_KEY_ADDR: return read_addr(d, o, path, k, f);
    case CFG_KEY_PATH: {
        const char *s;
        int rc = jsonv_get_str(d, o, path, k->name, k->required, k->min, k->max, &s);
        if (rc == 0) util_strlcpy(f, s, CFG_PATH_MAX);
        return rc;
    }
    case CFG_KEY_SECRET: return read_secret(d, o, path, k, f);
    case CFG_KEY_ADDRS: return read_addrs(d, o, path, k, obj);
    case CFG_KEY_LIST: return read_list(d, o, path, k, obj);
    case CFG_KEY_OBJECT: return read_nested(d, o, path, k, obj);
    case CFG_KEY_SECTION: return read_section(d, o, path, k, obj);
    }
    assert(!"a key type without a reader"); /* -Wswitch proves the switch complete */
    return -EINVAL;
}

static void set_defaults(const struct cfg_key_section *s, void *obj)
{
    for (unsigned i = 0; i < s->n_keys; i++) {
        const struct cfg_key *k = &s->keys[i];
        void *f = field(obj, k);
        switch (k->type) {
        case CFG_KEY_U64:
        case CFG_KEY_SIZE: memcpy(f, &k->def, sizeof(uint64_t)); break;
        case CFG_KEY_BOOL: *(bool *)f = k->def != 0; break;
        case CFG_KEY_ENUM: {
            int v = (int)k->def;
            memcpy(f, &v, sizeof(v));
            break;
        }
        case CFG_KEY_PATH:
            if (k->def_str) util_strlcpy(f, k->def_str, CFG_PATH_MAX);
            break;
        case CFG_KEY_NAME:
            if (k->def_str) util_strlcpy(f, k->def_str, k->size);
            break;
        default: break; /* no default: stays zero; nested objects set theirs when read */
        }
    }
}

static int run_rules(struct jsonv_doc *d, const cJSON *o, const char *path,
                     const struct cfg_key_section *s, void *obj);

static int read_object(struct jsonv_doc *d, const cJSON *o, const char *path,
                       const struct cfg_key_section *s, void *obj)
{
    const char *allowed[CFG_KEY_MAX + 1];
    if (BD_NEVER(s->n_keys > CFG_KEY_MAX)) return -EINVAL;
    for (unsigned i = 0; i < s->n_keys; i++) allowed[i] = s->keys[i].name;
    allowed[s->n_keys] = NULL;
    TRY(jsonv_check_keys(d, o, path, allowed));
    set_defaults(s, obj);
    for (unsigned i = 0; i < s->n_keys; i++)
        if (!s->keys[i].after_rules) TRY(read_key(d, o, path, &s->keys[i], obj));
    return run_rules(d, o, path, s, obj);
}

/* ---- Cross-field rules ----------------------------------------------------- */

/* A Raft peer against those before it and the proxy that lists it. */
static int check_peer(struct jsonv_doc *d, const cJSON *e, const char *p, struct cfg_proxy *c,
                      unsigned i)
{
    for (unsigned j = 0; j < i; j++) {
        if (c->peers[j].id == c->peers[i].id)
            return jsonv_fail(d, e, p, "duplicate peer id %llu",
                              (unsigned long long)c->peers[i].id);
        if (strcmp(c->peers[j].addr, c->peers[i].addr) == 0)
            return jsonv_fail(d, e, p, "duplicate peer address %s", c->peers[i].addr);
    }
    if (c->peers[i].id == c->id && strcmp(c->peers[i].addr, c->listen) != 0)
        return jsonv_fail(d, e, p, "this proxy's own entry has addr %s but listen is %s",
                          c->peers[i].addr, c->listen);
    return 0;
}

static int check_element(struct jsonv_doc *d, const cJSON *e, const char *path,
                         const struct cfg_key *k, void *owner, unsigned i)
{
    if (k->sub == &cfg_key_peer) return check_peer(d, e, path, owner, i);
    return 0;
}

static int proxy_rules(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_proxy *c)
{
    if (c->blob_max_bytes % BD_BLOCK_SIZE)
        return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(o, "blob_max_bytes"), path,
                          "blob_max_bytes must be a multiple of %u", BD_BLOCK_SIZE);
    if (c->max_handshakes > c->max_connections)
        return jsonv_fail(d, o, path, "max_handshakes must not exceed max_connections");
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
    if (c->map_lease_ms && c->gc_grace_ms &&
        c->map_lease_ms + c->read_timeout_ms >= c->gc_grace_ms &&
        !cJSON_GetObjectItemCaseSensitive(o, "map_lease_ms")) {
        /* The default does not fit a short gc_grace_ms: shorten it to half
         * the room left (none: leases off). */
        c->map_lease_ms = c->gc_grace_ms > c->read_timeout_ms
                              ? (c->gc_grace_ms - c->read_timeout_ms) / 2
                              : 0;
    }
    if (c->map_lease_ms && c->gc_grace_ms &&
        c->map_lease_ms + c->read_timeout_ms >= c->gc_grace_ms)
        return jsonv_fail(d, o, path,
                          "map_lease_ms (%llu) + read_timeout_ms (%llu) must be below "
                          "gc_grace_ms (%llu): an agent's direct read under a map lease must "
                          "never outlive the deletion of a blob the map names (C13)",
                          (unsigned long long)c->map_lease_ms,
                          (unsigned long long)c->read_timeout_ms,
                          (unsigned long long)c->gc_grace_ms);

    /* Each peer is checked against the ones before it as it is read
     * (check_peer); then the group as a whole. */
    TRY(read_key(d, o, path, cfg_key_find(&cfg_key_proxy, "peers"), c));
    const cJSON *peers = cJSON_GetObjectItemCaseSensitive(o, "peers");
    bool self = false;
    for (unsigned i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == c->id) self = true;
    if (!self)
        return jsonv_fail(d, peers, path, "peers must include this proxy (id %llu)",
                          (unsigned long long)c->id);
    if (c->n_peers % 2 == 0 && !c->join)
        return jsonv_fail(d, peers, path,
                          "peers must list an odd number of proxies (1, 3, 5 or 7), got %u",
                          c->n_peers);
    return 0;
}

static int blob_rules(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_blob *c)
{
    if (c->max_handshakes > c->max_connections)
        return jsonv_fail(d, o, path, "max_handshakes must not exceed max_connections");
    if (c->max_blob_bytes > c->segment_bytes / 2)
        return jsonv_fail(d, o, path, "max_blob_bytes must be at most half of segment_bytes");
    return 0;
}

static int agent_rules(struct jsonv_doc *d, const cJSON *o, const char *path, struct cfg_agent *c)
{
    if (!c->nbd_listen[0] && !c->nbd_unix[0])
        return jsonv_fail(d, o, path, "at least one of nbd_listen and nbd_unix is required");
    if (c->ship_bytes % BD_BLOCK_SIZE)
        return jsonv_fail(d, o, path, "ship_bytes must be a multiple of %u", BD_BLOCK_SIZE);
    if (c->max_handshakes > c->max_connections)
        return jsonv_fail(d, o, path, "max_handshakes must not exceed max_connections");
    if ((c->nbd_volume_owner[0] || c->nbd_volume_group[0] ||
         cJSON_GetObjectItemCaseSensitive(o, "nbd_volume_mode")) &&
        !c->nbd_volume_dir[0])
        return jsonv_fail(d, o, path, "nbd_volume_owner, _group and _mode need nbd_volume_dir");
    return 0;
}

/* NBD over TLS needs TLS (no insecure_plaintext).  The PSK file, like the
 * certificate and key files, is read and checked when the agent starts
 * (net/nbd_tls.h), so --check passes on a host that does not hold it. */
static int check_nbd_tls(struct jsonv_doc *d, const cJSON *root, const struct cfg *cfg)
{
    for (unsigned i = 0; i < cfg->n_agents; i++) {
        const struct cfg_agent *a = &cfg->agents[i];
        char p[64];
        snprintf(p, sizeof(p), cfg->n_agents > 1 ? "agent[%u]" : "agent", i);
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(root, "agent");
        if (cfg->insecure_plaintext &&
            (a->nbd_tls == CFG_NBD_TLS_REQUIRE || a->nbd_tls_psk_file[0]))
            return jsonv_fail(d, node, p, "%s needs TLS, which \"insecure_plaintext\": true "
                              "turns off", a->nbd_tls_psk_file[0] ? "nbd_tls_psk_file"
                                                                 : "nbd_tls \"require\"");
    }
    return 0;
}

/* Every instance needs a certificate unless the file says, in so many
 * words, that it runs without authentication. */
static int check_tls(struct jsonv_doc *d, const cJSON *root, const struct cfg *cfg)
{
    if (cfg->insecure_plaintext) return 0;
    if (!cfg->tls_ca_file[0])
        return jsonv_fail(d, root, "tls_ca_file",
                          "required: the cluster CA (blockd cert ca), unless "
                          "\"insecure_plaintext\": true");
    static const char *const names[] = {"proxy", "blob", "agent"};
    unsigned counts[] = {cfg->n_proxies, cfg->n_blobs, cfg->n_agents};
    for (unsigned r = 0; r < 3; r++) {
        for (unsigned i = 0; i < counts[r]; i++) {
            const char *cert = r == 0 ? cfg->proxies[i].cert_file
                             : r == 1 ? cfg->blobs[i].cert_file : cfg->agents[i].cert_file;
            const char *key = r == 0 ? cfg->proxies[i].key_file
                            : r == 1 ? cfg->blobs[i].key_file : cfg->agents[i].key_file;
            if (!cert[0] || !key[0]) {
                char p[64];
                snprintf(p, sizeof(p), counts[r] > 1 ? "%s[%u]" : "%s", names[r], i);
                return jsonv_fail(d, cJSON_GetObjectItemCaseSensitive(root, names[r]), p,
                                  "%s required: this node's certificate (blockd cert issue), "
                                  "unless \"insecure_plaintext\": true",
                                  !cert[0] ? "cert_file" : "key_file");
            }
        }
    }
    return 0;
}

static int root_rules(struct jsonv_doc *d, const cJSON *root, struct cfg *cfg)
{
    if (!cfg->n_proxies && !cfg->n_blobs && !cfg->n_agents)
        return jsonv_fail(d, root, "(top)", "no role section: expected agent, proxy or blob");
    TRY(check_tls(d, root, cfg));
    TRY(check_nbd_tls(d, root, cfg));

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

static int run_rules(struct jsonv_doc *d, const cJSON *o, const char *path,
                     const struct cfg_key_section *s, void *obj)
{
    if (s == &cfg_key_root) return root_rules(d, o, obj);
    if (s == &cfg_key_proxy) return proxy_rules(d, o, path, obj);
    if (s == &cfg_key_blob) return blob_rules(d, o, path, obj);
    if (s == &cfg_key_agent) return agent_rules(d, o, path, obj);
    return 0;
}

/* ---- Entry points ---------------------------------------------------------- */

int config_parse(const char *source, const char *text, size_t len, struct cfg *cfg,
                 char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    util_strlcpy(cfg->path, source, sizeof(cfg->path));
    struct jsonv_doc d;
    int rc = jsonv_parse(&d, source, text, len, CFG_MAX_DEPTH);
    const cJSON *gone = rc == 0 ? cJSON_GetObjectItemCaseSensitive(d.root, "secret_file") : NULL;
    if (gone)
        /* A replayable shared secret is not authentication: say what took
         * its place rather than "unknown key". */
        rc = jsonv_fail(&d, gone, "secret_file",
                        "no longer used: nodes prove who they are with certificates of the "
                        "cluster CA (tls_ca_file, and cert_file and key_file in each role)");
    if (rc == 0) rc = read_object(&d, d.root, "", &cfg_key_root, cfg);
    if (rc < 0) {
        snprintf(err, errlen, "%s", d.err[0] ? d.err : bd_strerror(rc));
        jsonv_free(&d);
        config_free(cfg);
        return -BD_ECONFIG;
    }
    jsonv_free(&d);
    return 0;
}

int config_load(const char *path, struct cfg *cfg, char *err, size_t errlen)
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

void config_free(struct cfg *cfg)
{
    free(cfg->proxies);
    free(cfg->blobs);
    free(cfg->agents);
    cfg->proxies = NULL;
    cfg->blobs = NULL;
    cfg->agents = NULL;
    cfg->n_proxies = cfg->n_blobs = cfg->n_agents = 0;
}

/* ---- Plaintext exposure ---------------------------------------------------- */

static bool on_loopback(const char *addr)
{
    if (!addr[0] || strncmp(addr, "unix:", 5) == 0) return true;
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]:", 6) == 0 ||
           strncmp(addr, "localhost:", 10) == 0;
}

unsigned config_exposed_plaintext(const struct cfg *cfg,
                                  void (*warn)(void *arg, const char *key, const char *addr),
                                  void *arg)
{
    if (!cfg->insecure_plaintext) return 0;
    unsigned n = 0;
    char key[64];
#define CHECK_ADDR(sec, i, field, value)                                                   \
    do {                                                                                   \
        if (!on_loopback(value)) {                                                         \
            snprintf(key, sizeof(key), "%s[%u]." field, sec, i);                           \
            warn(arg, key, value);                                                         \
            n++;                                                                           \
        }                                                                                  \
    } while (0)
    for (unsigned i = 0; i < cfg->n_proxies; i++) {
        CHECK_ADDR("proxy", i, "listen", cfg->proxies[i].listen);
        CHECK_ADDR("proxy", i, "admin", cfg->proxies[i].admin);
    }
    for (unsigned i = 0; i < cfg->n_blobs; i++) {
        CHECK_ADDR("blob", i, "listen", cfg->blobs[i].listen);
        CHECK_ADDR("blob", i, "admin", cfg->blobs[i].admin);
    }
    for (unsigned i = 0; i < cfg->n_agents; i++) {
        CHECK_ADDR("agent", i, "nbd_listen", cfg->agents[i].nbd_listen);
        CHECK_ADDR("agent", i, "admin", cfg->agents[i].admin);
    }
#undef CHECK_ADDR
    return n;
}

unsigned config_exposed_nbd(const struct cfg *cfg,
                            void (*warn)(void *arg, const char *key, const char *addr),
                            void *arg)
{
    unsigned n = 0;
    char key[64];
    for (unsigned i = 0; i < cfg->n_agents; i++) {
        const struct cfg_agent *a = &cfg->agents[i];
        if (on_loopback(a->nbd_listen) || a->nbd_tls == CFG_NBD_TLS_REQUIRE) continue;
        snprintf(key, sizeof(key), "agent[%u].nbd_listen", i);
        warn(arg, key, a->nbd_listen);
        n++;
    }
    return n;
}
