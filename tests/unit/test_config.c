/* test_config.c: config validation (src/config.c), CONTRACT.md §3 config files. */
#include "bd.h"
#include "config.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *good =
    "{\n"
    "  \"cluster_id\": \"test\",\n"
    "  \"proxy\": {\"id\": 1, \"listen\": \"127.0.0.1:7001\", \"data_dir\": \"/tmp/p1\",\n"
    "            \"peers\": [{\"id\": 1, \"addr\": \"127.0.0.1:7001\"}]},\n"
    "  \"blob\": [{\"id\": 11, \"listen\": \"127.0.0.1:7101\", \"data_dir\": \"/tmp/b1\",\n"
    "             \"proxies\": [\"127.0.0.1:7001\"]}],\n"
    "  \"agent\": {\"id\": \"hv1\", \"nbd_listen\": \"127.0.0.1:10809\", \"cache_dir\": \"/tmp/c\",\n"
    "             \"proxies\": [\"127.0.0.1:7001\"], \"cache_bytes\": \"64M\"}\n"
    "}\n";

static int parse_with(const char *text, char *err, size_t errlen)
{
    struct bd_config cfg;
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
    struct bd_config cfg;
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
    struct bd_config cfg;
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

/* A world-readable secret file is refused. */
TEST(secret_mode)
{
    char path[512], text[1024], err[512];
    snprintf(path, sizeof(path), "%s/secret", tap_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("0123456789abcdef0123\n", f);
    fclose(f);
    CHECK(chmod(path, 0644) == 0);
    snprintf(text, sizeof(text), "{\"cluster_id\": \"x\", \"secret_file\": \"%s\", %s", path,
             strchr(good, '"') + strlen("\"cluster_id\": \"test\",") + 1);
    CHECK(parse_with(text, err, sizeof(err)) < 0);
    CHECK(strstr(err, "chmod 0600") != NULL);
    CHECK(chmod(path, 0600) == 0);
    struct bd_config cfg;
    CHECK_EQ(config_parse("c.json", text, strlen(text), &cfg, err, sizeof(err)), 0);
    CHECK(strcmp(cfg.secret, "0123456789abcdef0123") == 0);
    config_free(&cfg);
}
