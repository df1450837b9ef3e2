/* test_config.c: config validation (src/config/config.c, the key tables of
 * config_keys.c, the docs of config_doc.c), CONTRACT.md §3 config files. */
#include "base/bd.h"
#include "config/config.h"
#include "config/config_doc.h"
#include "config/config_keys.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *good =
    "{\n"
    "  \"cluster_id\": \"test\",\n"
    "  \"insecure_plaintext\": true,\n"
    "  \"proxy\": {\"id\": 1, \"listen\": \"127.0.0.1:7001\", \"data_dir\": \"/tmp/p1\",\n"
    "            \"peers\": [{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}]},\n"
    "  \"blob\": [{\"id\": 11, \"listen\": \"127.0.0.1:7101\", \"data_dir\": \"/tmp/b1\",\n"
    "             \"proxies\": [\"127.0.0.1:7001\"]}],\n"
    "  \"agent\": {\"id\": \"hv1\", \"nbd_listen\": \"127.0.0.1:10809\", \"cache_dir\": \"/tmp/c\",\n"
    "             \"proxies\": [\"127.0.0.1:7001\"], \"cache_bytes\": \"64M\"}\n"
    "}\n";

static int parse_with(const char *text, char *err, size_t errlen)
{
    struct cfg cfg;
    int rc = config_parse("c.json", text, strlen(text), &cfg, err, errlen);
    if (rc == 0) config_free(&cfg);
    return rc;
}

/* Replace the first occurrence of FROM in GOOD by TO and parse that. */
static int parse_edit(const char *from, const char *to, char *err, size_t errlen)
{
    static char buf[8192];
    const char *p = strstr(good, from);
    if (!p) {
        snprintf(err, errlen, "test bug: '%s' not in fixture", from);
        return 12345;
    }
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(p - good), good, to, p + strlen(from));
    return parse_with(buf, err, errlen);
}

/* The fixture parses, with defaults filled in. */
TEST(good_config)
{
    struct cfg cfg;
    char err[512];
    CHECK_EQ(config_parse("c.json", good, strlen(good), &cfg, err, sizeof(err)), 0);
    CHECK_EQ(cfg.n_proxies, 1);
    CHECK_EQ(cfg.n_blobs, 1);
    CHECK_EQ(cfg.n_agents, 1);
    CHECK_EQ(cfg.proxies[0].blob_max_bytes, 1u << 20);
    CHECK_EQ(cfg.agents[0].cache_bytes, 64u << 20);
    CHECK(strcmp(cfg.blobs[0].proxies[0], "127.0.0.1:7001") == 0);
    config_free(&cfg);
}

#define EXPECT_ERR(from, to, needle)                                                       \
    do {                                                                                   \
        char err_[512] = "";                                                               \
        int rc_ = parse_edit(from, to, err_, sizeof(err_));                                \
        if (rc_ == 0 || !strstr(err_, needle)) printf("# got: %s\n", err_);                \
        CHECK(rc_ == -BD_ECONFIG);                                                         \
        CHECK(strstr(err_, needle) != NULL);                                               \
        CHECK(strchr(err_, '\n') == NULL);                                                 \
    } while (0)

/* A typo'd key stops start-up and is named with its line. */
TEST(unknown_key)
{
    EXPECT_ERR("\"cluster_id\"", "\"replicaton\": 3, \"cluster_id\"",
               "c.json:2: replicaton: unknown key");
}

/* A duplicate key is an error, not last-one-wins. */
TEST(duplicate_key)
{
    EXPECT_ERR("\"id\": 11,", "\"id\": 11, \"id\": 12,", "duplicate key");
}

/* A wrong type names the key path and what was expected. */
TEST(wrong_type)
{
    EXPECT_ERR("\"id\": 11", "\"id\": \"eleven\"", "blob[0].id: expected an integer");
}

/* A missing required key is named. */
TEST(missing_key)
{
    EXPECT_ERR("\"data_dir\": \"/tmp/p1\",", "", "proxy.data_dir: required key is missing");
}

/* Out-of-range values state the allowed range. */
TEST(out_of_range)
{
    EXPECT_ERR("127.0.0.1:7101", "127.0.0.1:70000", "blob[0].listen: expected an address");
    EXPECT_ERR("127.0.0.1:7101", "127.0.0.1:0", "blob[0].listen: expected an address");
    EXPECT_ERR("\"64M\"", "0", "agent.cache_bytes: expected an integer in [4194304");
    EXPECT_ERR("\"id\": 1,", "\"id\": 0,", "proxy.id: expected an integer in [1,");
}

/* The repair keys: defaults, and an orphan grace below twice the write
 * deadline is refused (an in-flight write's blob must never be taken for
 * an orphan). */
TEST(repair_keys)
{
    struct cfg cfg;
    char err[512];
    const char *dir = "\"data_dir\": \"/tmp/p1\",";
    CHECK_EQ(config_parse("c.json", good, strlen(good), &cfg, err, sizeof(err)), 0);
    CHECK_EQ(cfg.proxies[0].repair_interval_ms, 60000);
    CHECK_EQ(cfg.proxies[0].orphan_grace_ms, 600000);
    CHECK_EQ(cfg.proxies[0].replace_after_ms, 600000);
    CHECK(cfg.proxies[0].orphan_grace_ms >= CFG_ORPHAN_GRACE_MIN_MS);
    config_free(&cfg);
    CHECK_EQ(parse_edit(dir,
                        "\"data_dir\": \"/tmp/p1\", \"repair_interval_ms\": 500, "
                        "\"orphan_grace_ms\": 40000, \"replace_after_ms\": 3000,",
                        err, sizeof(err)),
             0);
    EXPECT_ERR(dir, "\"data_dir\": \"/tmp/p1\", \"orphan_grace_ms\": 39999,",
               "proxy.orphan_grace_ms: expected an integer in [40000,");
    EXPECT_ERR(dir, "\"data_dir\": \"/tmp/p1\", \"repair_interval_ms\": 0,",
               "proxy.repair_interval_ms: expected an integer in [100,");
    EXPECT_ERR(dir, "\"data_dir\": \"/tmp/p1\", \"replace_after_ms\": -1,",
               "proxy.replace_after_ms");
}

/* Raft peers: own entry required, ids and addresses unique, odd count. */
TEST(peers)
{
    EXPECT_ERR("[{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}]",
               "[{\"id\": 2, \"addr\": \"127.0.0.1:7002\"}]", "peers must include this proxy");
    EXPECT_ERR("[{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}]",
               "[{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}, {\"id\": 1, \"addr\": \"127.0.0.1:7002\"},"
               " {\"id\": 3, \"addr\": \"127.0.0.1:7003\"}]",
               "duplicate peer id 1");
    EXPECT_ERR("[{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}]",
               "[{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}, {\"id\": 2, \"addr\": \"127.0.0.1:7002\"}]",
               "odd number");
}

/* Invalid JSON and trailing garbage give file:line:col. */
TEST(syntax)
{
    char err[512];
    CHECK(parse_with("{\"cluster_id\": \"x\",\n}", err, sizeof(err)) < 0);
    CHECK(strstr(err, "c.json:2:") != NULL);
    CHECK(parse_with("{\"cluster_id\": \"x\"} trailing", err, sizeof(err)) < 0);
    CHECK(strstr(err, "invalid JSON") != NULL);
    CHECK(parse_with("", err, sizeof(err)) < 0);
    CHECK(strstr(err, "empty") != NULL);
}

/* No role section at all is refused. */
TEST(no_roles)
{
    char err[512];
    CHECK(parse_with("{\"cluster_id\": \"x\"}", err, sizeof(err)) < 0);
    CHECK(strstr(err, "no role section") != NULL);
}

/* A token file others may read is refused; so is one another user owns
 * (checked by util_check_private_file, here through its mode). */
TEST(secret_mode)
{
    char path[512], text[1024], err[512];
    snprintf(path, sizeof(path), "%s/token", tap_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("0123456789abcdef0123\n", f);
    fclose(f);
    CHECK(chmod(path, 0644) == 0);
    snprintf(text, sizeof(text), "{\"cluster_id\": \"x\", \"admin_token_file\": \"%s\", %s", path,
             strchr(good, '"') + strlen("\"cluster_id\": \"test\",") + 1);
    CHECK(parse_with(text, err, sizeof(err)) < 0);
    CHECK(strstr(err, "chmod 0600") != NULL);
    CHECK(chmod(path, 0600) == 0);
    struct cfg cfg;
    CHECK_EQ(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)), 0);
    CHECK(strcmp(cfg.admin_token, "0123456789abcdef0123") == 0);
    config_free(&cfg);
}

/* Without insecure_plaintext every node needs the CA and its certificate;
 * the replayable cluster secret of old is refused by name. */
TEST(tls_required)
{
    char err[512];
    CHECK(parse_edit("\"insecure_plaintext\": true,", "", err, sizeof(err)) < 0);
    CHECK(strstr(err, "tls_ca_file") != NULL);
    CHECK(parse_edit("\"insecure_plaintext\": true,", "\"tls_ca_file\": \"/etc/ca.pem\",", err,
                     sizeof(err)) < 0);
    CHECK(strstr(err, "proxy: cert_file required") != NULL);
    CHECK(parse_edit("\"insecure_plaintext\": true,", "\"secret_file\": \"/etc/s\",", err,
                     sizeof(err)) < 0);
    CHECK(strstr(err, "secret_file: no longer used") != NULL);
    /* The fixture with the CA at the top and a certificate in each role. */
    static char full[8192];
    const char *edits[][2] = {
        {"\"insecure_plaintext\": true,", "\"tls_ca_file\": \"/c\","},
        {"\"data_dir\": \"/tmp/p1\",", "\"data_dir\": \"/tmp/p1\", \"cert_file\": \"/p\", \"key_file\": \"/k\","},
        {"\"data_dir\": \"/tmp/b1\",", "\"data_dir\": \"/tmp/b1\", \"cert_file\": \"/b\", \"key_file\": \"/k\","},
        {"\"cache_dir\": \"/tmp/c\",", "\"cache_dir\": \"/tmp/c\", \"cert_file\": \"/a\", \"key_file\": \"/k\","},
    };
    snprintf(full, sizeof(full), "%s", good);
    for (unsigned i = 0; i < BD_ARRAY_SIZE(edits); i++) {
        char tmp[8192];
        char *at = strstr(full, edits[i][0]);
        CHECK(at != NULL);
        snprintf(tmp, sizeof(tmp), "%.*s%s%s", (int)(at - full), full, edits[i][1],
                 at + strlen(edits[i][0]));
        snprintf(full, sizeof(full), "%s", tmp);
    }
    int rc = parse_with(full, err, sizeof(err));
    if (rc) printf("# %s\n", err);
    CHECK_EQ(rc, 0);
}

/* ---- The key tables (config_keys.c) ---------------------------------------- */

/* Every role section as the fixture below writes it, with only its
 * required keys, so that every other key takes its default. */
static const char *minimal =
    "{\n"
    "  \"cluster_id\": \"test\",\n"
    "  \"insecure_plaintext\": true,\n"
    "  \"proxy\": {\"id\": 1, \"listen\": \"127.0.0.1:7001\", \"data_dir\": \"/tmp/p1\",\n"
    "            \"peers\": [{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}]},\n"
    "  \"blob\": {\"id\": 11, \"listen\": \"127.0.0.1:7101\", \"data_dir\": \"/tmp/b1\",\n"
    "           \"proxies\": [\"127.0.0.1:7001\"]},\n"
    "  \"agent\": {\"id\": \"hv1\", \"nbd_listen\": \"127.0.0.1:10809\",\n"
    "             \"cache_dir\": \"/tmp/c\", \"proxies\": [\"127.0.0.1:7001\"]}\n"
    "}\n";

/* Parse MINIMAL with "KEY": VALUE added to the object kind S: "log" at the
 * top, "fault" inside proxy, the rest in their role section.  *CFG is
 * filled on success (config_free it). */
static int parse_set(const struct cfg_key_section *s, const char *key, const char *value,
                     struct cfg *cfg, char *err, size_t errlen)
{
    char text[4096], add[256], head[64];
    const char *at;
    if (s == &cfg_key_log) {
        at = "{\n";
        snprintf(add, sizeof(add), "{\n\"log\": {\"%s\": %s},", key, value);
    } else if (s == &cfg_key_fault) {
        at = "\"proxy\": {";
        snprintf(add, sizeof(add), "\"proxy\": {\"fault\": {\"%s\": %s}, ", key, value);
    } else {
        snprintf(head, sizeof(head), "\"%s\": {", s->path);
        at = strstr(minimal, head) ? head : NULL;
        snprintf(add, sizeof(add), "\"%s\": {\"%s\": %s, ", s->path, key, value);
    }
    const char *p = at ? strstr(minimal, at) : NULL;
    if (!p) {
        snprintf(err, errlen, "test bug: no place for %s.%s", s->path, key);
        return 12345;
    }
    snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - minimal), minimal, add, p + strlen(at));
    return config_parse("c.json", text, strlen(text), cfg, err, errlen);
}

#ifdef BD_FAULT_INJECTION
static const bool fault_build = true;
#else
static const bool fault_build = false; /* fault.* keys are refused whatever their value */
#endif

/* The role sections, and the fault knobs: every key the parser reads with
 * a numeric range is in one of these. */
static const struct cfg_key_section *const ranged[] = {&cfg_key_proxy, &cfg_key_blob,
                                                       &cfg_key_agent, &cfg_key_fault};

/* The tables are consistent: names unique per object, defaults inside
 * their ranges, docs fit one table cell. */
TEST(tables_consistent)
{
    for (const struct cfg_key_section *const *sp = cfg_key_sections; *sp; sp++) {
        const struct cfg_key_section *s = *sp;
        CHECK(s->n_keys > 0 && s->n_keys <= CFG_KEY_MAX);
        for (unsigned i = 0; i < s->n_keys; i++) {
            const struct cfg_key *k = &s->keys[i];
            CHECK(cfg_key_find(s, k->name) == k);
            CHECK(k->doc && *k->doc && !strchr(k->doc, '|') && !strchr(k->doc, '\n'));
            CHECK(k->min <= k->max || k->type == CFG_KEY_BOOL || k->type == CFG_KEY_ENUM ||
                  k->type == CFG_KEY_OBJECT);
            if (k->type == CFG_KEY_U64 || k->type == CFG_KEY_SIZE)
                CHECK(k->required || (k->def >= k->min && k->def <= k->max));
            if (k->type == CFG_KEY_ENUM) {
                unsigned n = 0;
                while (k->names[n]) n++;
                CHECK(k->def < n);
            }
            if (k->type == CFG_KEY_NAME) CHECK(k->pattern && k->expect);
        }
    }
}

/* Absent keys take the defaults the tables declare.  The values are
 * written out by field name too: changing one is a change of behaviour
 * that this test makes visible. */
TEST(defaults_by_field)
{
    struct cfg cfg;
    char err[512];
    CHECK_EQ(config_parse("c.json", minimal, strlen(minimal), &cfg, err, sizeof(err)), 0);
    CHECK(strcmp(cfg.log_file, "-") == 0);
    CHECK_EQ(cfg.log_level, LOG_INFO);
    const struct cfg_proxy *p = &cfg.proxies[0];
    CHECK_EQ(p->blob_max_bytes, 1u << 20);
    CHECK_EQ(p->node_timeout_ms, 3000);
    CHECK_EQ(p->election_timeout_ms, 1000);
    CHECK_EQ(p->raft_heartbeat_ms, 100);
    CHECK_EQ(p->snapshot_threshold, 8192);
    CHECK_EQ(p->snapshot_trailing, 2048);
    CHECK_EQ(p->gc_grace_ms, 30000);
    CHECK_EQ(p->read_timeout_ms, 10000);
    CHECK_EQ(p->map_lease_ms, 3000);
    CHECK_EQ(cfg.agents[0].map_cache_bytes, 16u << 20);
    CHECK_EQ(p->index_map_bytes, 16ull << 30);
    CHECK_EQ(p->partition_bytes, 100ull << 30);
    CHECK_EQ(p->fill_limit_pct, 90);
    CHECK_EQ(p->allow_tmpfs, false);
    CHECK_EQ(p->fault.seed + p->fault.socket_failure_every + p->fault.delay_ms +
                 p->fault.fsync_eio_after,
             0);
    const struct cfg_blob *b = &cfg.blobs[0];
    CHECK_EQ(b->capacity_bytes, 0);
    CHECK_EQ(b->segment_bytes, 256u << 20);
    CHECK_EQ(b->compression, CFG_COMPRESS_OFF);
    CHECK_EQ(b->compress_min_saving_pct, 10);
    CHECK_EQ(b->scrub_bytes_per_sec, 16u << 20);
    CHECK_EQ(b->compact_live_pct, 50);
    CHECK_EQ(b->heartbeat_ms, 500);
    CHECK_EQ(b->max_blob_bytes, 16u << 20);
    const struct cfg_agent *a = &cfg.agents[0];
    CHECK_EQ(a->nbd_unix[0], 0);
    CHECK_EQ(a->cache_bytes, 256u << 20);
    CHECK_EQ(a->cache_high_water_pct, 50);
    CHECK_EQ(a->flush_age_ms, 5000);
    CHECK_EQ(a->io_timeout_ms, 30000);
    CHECK_EQ(a->handshake_timeout_ms, 10000);
    CHECK_EQ(a->max_handshakes, 100);
    CHECK_EQ(a->max_connections, 1024);
    CHECK_EQ(a->ship_bytes, 1u << 20);
    config_free(&cfg);
}

/* Key K of S set to BAD, outside its range, is refused with the range. */
static void expect_range_error(const struct cfg_key_section *s, const struct cfg_key *k,
                               uint64_t bad)
{
    const char *where = s == &cfg_key_fault ? "proxy.fault" : s->path;
    char value[32], want[256], err[512] = "";
    snprintf(value, sizeof(value), "%llu", (unsigned long long)bad);
    if (s == &cfg_key_fault && !fault_build)
        snprintf(want, sizeof(want), "fault injection is not compiled");
    else
        snprintf(want, sizeof(want), "%s.%s: expected an integer in [%llu, %llu]", where,
                 k->name, (unsigned long long)k->min, (unsigned long long)k->max);
    struct cfg cfg;
    int rc = parse_set(s, k->name, value, &cfg, err, sizeof(err));
    if (rc == 0) config_free(&cfg);
    if (rc != -BD_ECONFIG || !strstr(err, want))
        printf("# %s.%s = %s: got: %s\n", where, k->name, value, err);
    CHECK(rc == -BD_ECONFIG);
    CHECK(strstr(err, want) != NULL);
}

/* The parser refuses one past each end of every declared range, with the
 * range the README states. */
TEST(declared_ranges_enforced)
{
    unsigned checked = 0;
    for (unsigned r = 0; r < BD_ARRAY_SIZE(ranged); r++)
        for (unsigned i = 0; i < ranged[r]->n_keys; i++) {
            const struct cfg_key *k = &ranged[r]->keys[i];
            /* Required keys are in the fixture already (out_of_range tests ids). */
            if ((k->type != CFG_KEY_U64 && k->type != CFG_KEY_SIZE) || k->required) continue;
            if (k->min > 0) {
                expect_range_error(ranged[r], k, k->min - 1);
                checked++;
            }
            if (k->max < UINT64_MAX) {
                expect_range_error(ranged[r], k, k->max + 1);
                checked++;
            }
        }
    CHECK(checked > 50);
}

/* The ansible role's defaults are values blockd accepts for their keys. */
TEST(ansible_defaults_valid)
{
    unsigned n = 0;
    for (const struct cfg_key_section *const *sp = cfg_key_sections; *sp; sp++)
        for (unsigned i = 0; i < (*sp)->n_keys; i++) {
            const struct cfg_key *k = &(*sp)->keys[i];
            if (!k->ansible) continue;
            char value[128], err[512] = "";
            bool number = k->type == CFG_KEY_U64 || k->type == CFG_KEY_BOOL;
            snprintf(value, sizeof(value), number ? "%s" : "\"%s\"", k->ansible);
            struct cfg cfg;
            int rc = parse_set(*sp, k->name, value, &cfg, err, sizeof(err));
            if (rc != 0) printf("# %s.%s = %s: %s\n", (*sp)->path, k->name, value, err);
            CHECK_EQ(rc, 0);
            config_free(&cfg);
            n++;
        }
    CHECK(n > 0);
}

/* --config-doc writes a table row per key and a variable per exposed key,
 * and refuses an unknown format. */
TEST(config_doc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f);
    CHECK_EQ(config_doc_write(f, "markdown"), 0);
    CHECK_EQ(config_doc_write(f, "ansible"), 0);
    CHECK(config_doc_write(f, "html") == -EINVAL);
    fclose(f);
    for (const struct cfg_key_section *const *sp = cfg_key_sections; *sp; sp++)
        for (unsigned i = 0; i < (*sp)->n_keys; i++) {
            char row[128];
            snprintf(row, sizeof(row), "\n| `%s` | ", (*sp)->keys[i].name);
            CHECK(strstr(buf, row) != NULL);
        }
    CHECK(strstr(buf, "\nblockd_blob_segment_bytes: \"256M\"\n") != NULL);
    CHECK(strstr(buf, "\nblockd_log_level: \"info\"\n") != NULL);
    free(buf);
}

/* With insecure_plaintext, every listener off loopback is named (blockd
 * --check and every start warn about each); loopback and Unix sockets are
 * not; with TLS nothing is. */
static unsigned n_exposed;
static char exposed_keys[256];
static void on_exposed(void *arg, const char *key, const char *addr)
{
    (void)arg;
    (void)addr;
    n_exposed++;
    strncat(exposed_keys, key, sizeof(exposed_keys) - strlen(exposed_keys) - 2);
    strcat(exposed_keys, " ");
}

TEST(exposed_plaintext)
{
    char err[512];
    struct cfg cfg;
    const char *text =
        "{\"cluster_id\": \"t\", \"insecure_plaintext\": true,\n"
        " \"blob\": {\"id\": 1, \"listen\": \"0.0.0.0:7000\", \"admin\": \"127.0.0.1:8000\",\n"
        "          \"data_dir\": \"/tmp/x\", \"proxies\": [\"127.0.0.1:1\"]},\n"
        " \"agent\": {\"id\": \"a\", \"nbd_unix\": \"/tmp/s\", \"nbd_listen\": \"10.1.2.3:10809\",\n"
        "           \"cache_dir\": \"/tmp/c\", \"proxies\": [\"127.0.0.1:1\"]}}\n";
    CHECK_EQ(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)), 0);
    n_exposed = 0;
    exposed_keys[0] = 0;
    CHECK_EQ(config_exposed_plaintext(&cfg, on_exposed, NULL), 2);
    CHECK_EQ(n_exposed, 2);
    CHECK(strcmp(exposed_keys, "blob[0].listen agent[0].nbd_listen ") == 0);
    cfg.insecure_plaintext = false;
    CHECK_EQ(config_exposed_plaintext(&cfg, on_exposed, NULL), 0);
    config_free(&cfg);
}

/* An NBD TCP listener off loopback is named unless nbd_tls is `require`
 * (a volume attached without a client would open there in plaintext);
 * on loopback it never is. */
TEST(exposed_nbd)
{
    char err[512];
    struct cfg cfg;
    const char *text =
        "{\"cluster_id\": \"t\", \"insecure_plaintext\": true,\n"
        " \"agent\": [{\"id\": \"a\", \"nbd_unix\": \"/tmp/s\", \"nbd_listen\": \"10.1.2.3:10809\",\n"
        "            \"cache_dir\": \"/tmp/c\", \"proxies\": [\"127.0.0.1:1\"]},\n"
        "           {\"id\": \"b\", \"nbd_unix\": \"/tmp/t\", \"nbd_listen\": \"127.0.0.1:10810\",\n"
        "            \"cache_dir\": \"/tmp/d\", \"proxies\": [\"127.0.0.1:1\"]}]}\n";
    CHECK_EQ(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)), 0);
    n_exposed = 0;
    exposed_keys[0] = 0;
    CHECK_EQ(config_exposed_nbd(&cfg, on_exposed, NULL), 1);
    CHECK(strcmp(exposed_keys, "agent[0].nbd_listen ") == 0);
    cfg.agents[0].nbd_tls = CFG_NBD_TLS_REQUIRE;
    CHECK_EQ(config_exposed_nbd(&cfg, on_exposed, NULL), 0);
    config_free(&cfg);
}

/* Map leases (C13): lease + read timeout must stay below gc_grace_ms.  Set
 * explicitly past that: a clear error; absent: the default shrinks to fit
 * (half the room left), or turns off when there is none. */
TEST(map_lease_within_gc_grace)
{
    char err[512];
    struct cfg cfg;
    static const char *bad = "\"gc_grace_ms\": 5000, \"read_timeout_ms\": 1000, \"map_lease_ms\"";
    char text[2048];
    const char *at = strstr(minimal, "\"proxy\": {");
    CHECK(at);
    snprintf(text, sizeof(text), "%.*s\"proxy\": {%s: 4000, %s", (int)(at - minimal), minimal,
             bad, at + strlen("\"proxy\": {"));
    CHECK(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)) != 0);
    CHECK(strstr(err, "map_lease_ms (4000) + read_timeout_ms (1000) must be below gc_grace_ms"));
    snprintf(text, sizeof(text), "%.*s\"proxy\": {%s: 3000, %s", (int)(at - minimal), minimal,
             bad, at + strlen("\"proxy\": {"));
    CHECK_EQ(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)), 0);
    CHECK_EQ(cfg.proxies[0].map_lease_ms, 3000);
    config_free(&cfg);
    snprintf(text, sizeof(text),
             "%.*s\"proxy\": {\"gc_grace_ms\": 1500, \"read_timeout_ms\": 1000, %s",
             (int)(at - minimal), minimal, at + strlen("\"proxy\": {"));
    CHECK_EQ(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)), 0);
    CHECK_EQ(cfg.proxies[0].map_lease_ms, 250);
    config_free(&cfg);
}
