/* config_keys.c: the configuration keys, one row each (see config_keys.h).
 *
 * This file is only data.  A row names its key, type and field with one
 * of the macros below, then gives what applies of .required or .def, .min
 * and .max, and .doc.  The macros take the field from its struct and check
 * its C type at compile time, so a row cannot fill a field of the wrong
 * type; the JSON name is the field's name except where a row says
 * otherwise (secret_file fills secret, log.level fills log_level, ...).
 *
 * Rows are in the order the parser reads them.  That order is part of the
 * behaviour: a file with two errors reports the first key in this order,
 * so moving a row changes which message such a file gets.
 *
 * Rejected: an X-macro list (one macro call per key, expanded once for the
 * parser and once for the docs).  Designated initializers say the same
 * with named columns, and a key needs no column it does not use.
 * Rejected too: generating C from a YAML or JSON description; it would add
 * a build step and a language, and the struct fields are C anyway. */
#include "config/config_keys.h"
#include "base/bd.h"
#include "config/config.h"
#include "runtime/log.h"

#include <string.h>

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)
#define DAY_MS 86400000ull

/* The offset of field F of struct S, which must be of type T.  The
 * static assertion inside the discarded sizeof is what turns a row naming
 * the wrong field type into a compile error. */
#define FIELD(S, F, T)                                                                     \
    (offsetof(struct S, F) +                                                               \
     0 * sizeof(struct {                                                                   \
         _Static_assert(__builtin_types_compatible_p(__typeof__(((struct S *)0)->F), T),   \
                        "struct " #S " field " #F " is not " #T);                          \
         int unused_;                                                                      \
     }))
/* The same for an array field F whose elements are of type T. */
#define ARRAY_OF(S, F, T)                                                                  \
    (offsetof(struct S, F) +                                                               \
     0 * sizeof(struct {                                                                   \
         _Static_assert(__builtin_types_compatible_p(__typeof__(((struct S *)0)->F[0]), T), \
                        "struct " #S " field " #F " is not an array of " #T);              \
         int unused_;                                                                      \
     }))
#define LENGTH(S, F) BD_ARRAY_SIZE(((struct S *)0)->F)

/* Row heads: JSON name, type and field.  The _AS forms name the key
 * differently from its field. */
#define U64(S, F) .name = #F, .type = CFG_KEY_U64, .off = FIELD(S, F, uint64_t)
#define SIZE(S, F) .name = #F, .type = CFG_KEY_SIZE, .off = FIELD(S, F, uint64_t)
#define BOOL(S, F) .name = #F, .type = CFG_KEY_BOOL, .off = FIELD(S, F, bool)
#define ENUM_AS(N, S, F, T, NAMES)                                                         \
    .name = N, .type = CFG_KEY_ENUM, .off = FIELD(S, F, T), .names = NAMES
#define NAME(S, F)                                                                         \
    .name = #F, .type = CFG_KEY_NAME, .off = ARRAY_OF(S, F, char), .size = LENGTH(S, F)
#define ADDR(S, F)                                                                         \
    .name = #F, .type = CFG_KEY_ADDR, .off = FIELD(S, F, char[CFG_ADDR_MAX]), .min = 1,    \
    .max = CFG_ADDR_MAX - 1
#define PATH_AS(N, S, F)                                                                   \
    .name = N, .type = CFG_KEY_PATH, .off = FIELD(S, F, char[CFG_PATH_MAX]), .min = 1,     \
    .max = CFG_PATH_MAX - 1
#define PATH(S, F) PATH_AS(#F, S, F)
#define SECRET_AS(N, S, F)                                                                 \
    .name = N, .type = CFG_KEY_SECRET, .off = FIELD(S, F, char[CFG_SECRET_MAX]), .min = 16,  \
    .max = CFG_SECRET_MAX - 1
/* Arrays held in the struct: the count is field N, at most the array's length. */
#define ADDRS(S, F, N)                                                                     \
    .name = #F, .type = CFG_KEY_ADDRS, .off = ARRAY_OF(S, F, char[CFG_ADDR_MAX]),          \
    .count_off = FIELD(S, N, unsigned), .min = 1, .max = LENGTH(S, F)
#define LIST(S, F, N, E, SUB)                                                              \
    .name = #F, .type = CFG_KEY_LIST, .off = ARRAY_OF(S, F, struct E),                     \
    .size = sizeof(struct E), .count_off = FIELD(S, N, unsigned), .min = 1,                \
    .max = LENGTH(S, F), .sub = &SUB
#define OBJECT(S, F, E, SUB) .name = #F, .type = CFG_KEY_OBJECT, .off = FIELD(S, F, struct E), \
    .sub = &SUB
/* A role section: a calloc'd array of 1 to 16 instances, pointer F, count N. */
#define SECTION_AS(NM, S, F, N, E, SUB)                                                    \
    .name = NM, .type = CFG_KEY_SECTION, .off = FIELD(S, F, struct E *),                   \
    .size = sizeof(struct E), .count_off = FIELD(S, N, unsigned), .min = 1, .max = 16,     \
    .sub = &SUB

/* ENUM names, in the order of the C enums their fields hold. */
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
_Static_assert(LOG_DEBUG == 0 && LOG_INFO == 1 && LOG_WARN == 2 && LOG_ERROR == 3,
               "log_levels[] follows enum log_level");
static const char *const log_formats[] = {"text", "json", NULL};
_Static_assert(LOG_FORMAT_TEXT == 0 && LOG_FORMAT_JSON == 1,
               "log_formats[] follows enum log_format");
static const char *const compressions[] = {"off", "auto", NULL};
_Static_assert(CFG_COMPRESS_OFF == 0 && CFG_COMPRESS_AUTO == 1,
               "compressions[] follows enum cfg_compression");
static const char *const nbd_tls_modes[] = {"off", "on", "require", NULL};
_Static_assert(CFG_NBD_TLS_OFF == 0 && CFG_NBD_TLS_ON == 1 && CFG_NBD_TLS_REQUIRE == 2,
               "nbd_tls_modes[] follows enum cfg_nbd_tls");

#define SECTION_OF(KEYS) .keys = KEYS, .n_keys = BD_ARRAY_SIZE(KEYS)
#define CHECK_WIDTH(KEYS)                                                                  \
    _Static_assert(BD_ARRAY_SIZE(KEYS) <= CFG_KEY_MAX, #KEYS " has more than CFG_KEY_MAX rows")

/* --- fault: test-build knobs (struct cfg_fault), CONTRACT rows 6 and 12 ---- */

static const struct cfg_key fault_keys[] = {
    {U64(cfg_fault, seed), .min = 0, .max = UINT64_MAX,
     .doc = "seeds every random choice below"},
    {U64(cfg_fault, socket_failure_every), .min = 0, .max = 1u << 30,
     .doc = "close a wire connection every N frames; 0 = never"},
    {U64(cfg_fault, delay_ms), .min = 0, .max = 60000,
     .doc = "delay every wire reply by this much"},
    {U64(cfg_fault, fsync_eio_after), .min = 0, .max = 1u << 30,
     .doc = "fail the Nth fdatasync of store I/O with EIO; 0 = never"},
};
CHECK_WIDTH(fault_keys);

const struct cfg_key_section cfg_key_fault = {
    .path = "fault",
    .title = "fault",
    .doc = "`fault` (in proxy, blob and agent; test builds only, CONTRACT rows 6 and 12): "
           "seeded fault injection, all 0 = off.  A build with -Dfault_injection=false "
           "refuses the key.",
    SECTION_OF(fault_keys),
    .test_build_only = true,
};

/* --- the top level (struct cfg) -------------------------------------------- */

static const struct cfg_key log_keys[] = {
    {PATH_AS("file", cfg, log_file), .def_str = "-",
     .doc = "`-` for stderr, or a file; SIGHUP reopens it"},
    {ENUM_AS("level", cfg, log_level, enum log_level, log_levels), .def = LOG_INFO,
     .doc = "the least severe level written", .ansible = "info"},
    {ENUM_AS("format", cfg, log_format, enum log_format, log_formats), .def = LOG_FORMAT_TEXT,
     .doc = "`text` for people, `json` (one object per line) for log shippers; "
            "blockd --log-format overrides it"},
};
CHECK_WIDTH(log_keys);

const struct cfg_key_section cfg_key_log = {
    .path = "log",
    .title = "log",
    .doc = "`log`: where each process writes its log.",
    SECTION_OF(log_keys),
};

static const struct cfg_key root_keys[] = {
    {NAME(cfg, cluster_id), .required = true, .min = 1, .max = 64, .pattern = "[a-z0-9_-]",
     .expect = "expected [a-z0-9_-]{1,64}",
     .doc = "names the cluster; every node of a cluster agrees, and peers from another "
            "cluster are refused"},
    {PATH(cfg, tls_ca_file),
     .doc = "the cluster CA certificate (`blockd cert ca`); every node's certificate must "
            "chain to it; required unless `insecure_plaintext`"},
    {BOOL(cfg, insecure_plaintext), .def = false,
     .doc = "INSECURE: no TLS and no authentication at all on wire, admin and NBD "
            "listeners; for a throwaway cluster on one host (`--check` warns about every "
            "listener not on loopback)"},
    {SECRET_AS("admin_token_file", cfg, admin_token),
     .doc = "file holding the admin bearer token (every admin call); without it only "
            "`/metrics` and `/healthz` answer"},
    {SECRET_AS("admin_read_token_file", cfg, admin_read_token),
     .doc = "file holding a read-only bearer token (GET calls only)"},
    /* log's keys are fields of struct cfg itself, hence offset 0. */
    {.name = "log", .type = CFG_KEY_OBJECT, .off = 0, .sub = &cfg_key_log,
     .doc = "where the log goes (below)"},
    {SECTION_AS("proxy", cfg, proxies, n_proxies, cfg_proxy, cfg_key_proxy),
     .doc = "a proxy, or an array of them to run several in one process (`--role=all`)"},
    {SECTION_AS("blob", cfg, blobs, n_blobs, cfg_blob, cfg_key_blob),
     .doc = "a blob server, or an array of them"},
    {SECTION_AS("agent", cfg, agents, n_agents, cfg_agent, cfg_key_agent),
     .doc = "an agent, or an array of them"},
};
CHECK_WIDTH(root_keys);

const struct cfg_key_section cfg_key_root = {
    .path = "",
    .title = "top level",
    .doc = "Top level.  At least one of proxy, blob and agent is required; `blockd "
           "--role=R` starts every instance of section R, `--role=all` every instance of "
           "every section, on one reactor.",
    SECTION_OF(root_keys),
};

/* --- proxy (struct cfg_proxy) ----------------------------------------------- */

static const struct cfg_key peer_keys[] = {
    {U64(cfg_peer, id), .required = true, .min = 1, .max = UINT32_MAX,
     .doc = "Raft server id"},
    {ADDR(cfg_peer, addr), .required = true, .doc = "its wire address"},
};
CHECK_WIDTH(peer_keys);

const struct cfg_key_section cfg_key_peer = {
    .path = "proxy.peers[]",
    .title = "proxy.peers[]",
    .doc = "`proxy.peers[]`: one member of the Raft group.  Ids and addresses are unique; "
           "this proxy's own entry has `id` equal to its id and `addr` equal to its "
           "`listen`.",
    SECTION_OF(peer_keys),
};

static const struct cfg_key proxy_keys[] = {
    {U64(cfg_proxy, id), .required = true, .min = 1, .max = UINT32_MAX,
     .doc = "Raft server id; must appear in `peers`"},
    {ADDR(cfg_proxy, listen), .required = true,
     .doc = "wire address for agents, blob servers and peer proxies"},
    {ADDR(cfg_proxy, admin), .doc = "admin HTTPS address; none if absent"},
    {PATH(cfg_proxy, data_dir), .required = true, .doc = "LMDB index, Raft log, snapshots"},
    {BOOL(cfg_proxy, join), .def = false,
     .doc = "start as a new member of an existing group: never bootstrap, wait for `blockd "
            "ctl proxy add` on the group (README \"Adding and removing proxies\")"},
    {PATH(cfg_proxy, cert_file),
     .doc = "this node's certificate (`blockd cert issue --role proxy`); required unless "
            "`insecure_plaintext`"},
    {PATH(cfg_proxy, key_file), .doc = "its private key: owned by the user running blockd, mode 0600"},
    {U64(cfg_proxy, max_connections), .def = 4096, .min = 1, .max = 1000000,
     .doc = "wire connections (agents, blob servers, peers)"},
    {U64(cfg_proxy, max_handshakes), .def = 256, .min = 1, .max = 100000,
     .doc = "wire connections that have not finished TLS and HELLO; at most "
            "`max_connections`"},
    /* Read after the rules below it in config.c, which want the keys above. */
    {LIST(cfg_proxy, peers, n_peers, cfg_peer, cfg_key_peer), .required = true,
     .after_rules = true,
     .doc = "the Raft group, this proxy included: an odd number of members (1, 3, 5 or 7); "
            "with `join`, this proxy and any members it may hear from first (the group's "
            "configuration, once it arrives, is the truth)"},
    {SIZE(cfg_proxy, blob_max_bytes), .def = 1 * MiB, .min = BD_BLOCK_SIZE, .max = 16 * MiB,
     .doc = "largest blob a write becomes; a multiple of 4096"},
    {U64(cfg_proxy, node_timeout_ms), .def = 3000, .min = 100, .max = 600000,
     .doc = "a blob server is down after this long without a heartbeat"},
    {U64(cfg_proxy, election_timeout_ms), .def = 1000, .min = 50, .max = 60000,
     .doc = "Raft election timeout"},
    {U64(cfg_proxy, raft_heartbeat_ms), .def = 100, .min = 10, .max = 10000,
     .doc = "Raft heartbeat; at most half of `election_timeout_ms`"},
    {U64(cfg_proxy, snapshot_threshold), .def = 8192, .min = 16, .max = 1u << 30,
     .doc = "Raft entries between snapshots"},
    {U64(cfg_proxy, snapshot_trailing), .def = 2048, .min = 0, .max = 1u << 30,
     .doc = "Raft entries kept after a snapshot"},
    {U64(cfg_proxy, gc_grace_ms), .def = 30000, .min = 0, .max = DAY_MS,
     .doc = "a dead blob is deleted this long after it died (C13)"},
    {U64(cfg_proxy, read_timeout_ms), .def = 10000, .min = 100, .max = 600000,
     .doc = "a read gives up after this; below `gc_grace_ms` unless that is 0, so a read "
            "never outlives the deletion of a blob it resolved"},
    {U64(cfg_proxy, map_lease_ms), .def = 3000, .min = 0, .max = 60000,
     .doc = "how long an agent may read blobs straight from the blob servers under a map "
            "this proxy resolved (VOL_LEASE, README \"Reads in two hops\"); 0 turns map "
            "leases off; `map_lease_ms` + `read_timeout_ms` must stay below `gc_grace_ms` "
            "(C13): when the key is absent and 3000 does not fit, half the room left is "
            "used"},
    {SIZE(cfg_proxy, index_map_bytes), .def = 16 * GiB, .min = 1 * MiB, .max = 4 * TiB,
     .doc = "LMDB map size"},
    {SIZE(cfg_proxy, partition_bytes), .def = 100 * GiB, .min = 1 * MiB, .max = 1ull << 50,
     .doc = "a partition's size: a blob server of capacity C holds C / this many "
            "partitions (at least one), and partitions are kept in proportion to capacity"},
    {U64(cfg_proxy, fill_limit_pct), .def = 90, .min = 1, .max = 99,
     .doc = "a blob server more than this full (percent of its capacity) takes no new blobs; "
            "the rest is room for repair and moves"},
    {BOOL(cfg_proxy, allow_tmpfs), .def = false,
     .doc = "tests only: permit the index on tmpfs"},
    {U64(cfg_proxy, repair_interval_ms), .def = 60000, .min = 100, .max = DAY_MS,
     .doc = "a full anti-entropy pass over every partition this often"},
    {U64(cfg_proxy, orphan_grace_ms), .def = 600000, .min = CFG_ORPHAN_GRACE_MIN_MS,
     .max = 7 * DAY_MS,
     .doc = "a copy the index does not know is deleted only after being seen this long; a "
            "write may take up to 20 s from its blob puts to its index commit, and the "
            "minimum is twice that so an in-flight write is never taken for garbage"},
    {U64(cfg_proxy, replace_after_ms), .def = 600000, .min = 1000, .max = 7 * DAY_MS,
     .doc = "a blob server down this long is replaced in each of its partitions"},
    {SIZE(cfg_proxy, write_turn_cap_bytes), .def = 2 * MiB, .min = 0, .max = 1 * GiB,
     .doc = "while more than one volume writes through this proxy, the payload bytes of writes "
            "in progress, all volumes together, and volumes take turns (deficit round robin): "
            "another volume's write waits behind at most this much; a lone writing volume is "
            "never held; 0 = no turns, every write starts as it arrives"},
    {SIZE(cfg_proxy, rebuild_bytes_per_sec), .def = 64 * MiB, .min = 0, .max = 1 * TiB,
     .doc = "how fast replicas are copied to the servers that replace, drain or rebalance "
            "(all moves together; what it costs client p99: scripts/bench --jobs rebuild, "
            "README \"The cluster's shape\"); 0 = as fast as they go"},
    {U64(cfg_proxy, rebalance_moves), .def = 1, .min = 0, .max = 64,
     .doc = "replicas moved at once to keep partitions in proportion to capacity; 0 = no "
            "rebalancing (drains and lost servers still move)"},
    {U64(cfg_proxy, rewrite_live_pct), .def = 65, .min = 0, .max = 100,
     .doc = "the leader rewrites the live ranges of blobs whose live share is below this "
            "percentage into new blobs, so partly overwritten blobs can be freed; 0 = never"},
    {SIZE(cfg_proxy, rewrite_bytes_per_sec), .def = 16 * MiB, .min = 0, .max = 1 * TiB,
     .doc = "the blob rewrite's budget: bytes copied per second; 0 = off"},
    {SIZE(cfg_proxy, flatten_bytes_per_sec), .def = 64 * MiB, .min = BD_BLOCK_SIZE,
     .max = 1 * TiB, .doc = "bytes per second a clone's flatten copies from its parent"},
    {OBJECT(cfg_proxy, fault, cfg_fault, cfg_key_fault), .doc = "test builds only (below)"},
};
CHECK_WIDTH(proxy_keys);

const struct cfg_key_section cfg_key_proxy = {
    .path = "proxy",
    .title = "proxy",
    .doc = "`proxy`: a member of the Raft group that holds the index.  Repair runs on the "
           "Raft leader (see \"Repair\" below).",
    SECTION_OF(proxy_keys),
};

/* --- blob (struct cfg_blob) ------------------------------------------------- */

static const struct cfg_key blob_keys[] = {
    {U64(cfg_blob, id), .required = true, .min = 1, .max = UINT32_MAX,
     .doc = "node id, unique in the cluster"},
    {ADDR(cfg_blob, listen), .required = true,
     .doc = "wire address for proxies and repair peers"},
    {ADDR(cfg_blob, admin), .doc = "admin HTTPS address; none if absent"},
    {PATH(cfg_blob, data_dir), .required = true, .doc = "partitions and segments"},
    {PATH(cfg_blob, cert_file),
     .doc = "this node's certificate (`blockd cert issue --role blob`); required unless "
            "`insecure_plaintext`"},
    {PATH(cfg_blob, key_file), .doc = "its private key: owned by the user running blockd, mode 0600"},
    {U64(cfg_blob, max_connections), .def = 1024, .min = 1, .max = 1000000,
     .doc = "wire connections (proxies, repair peers)"},
    {U64(cfg_blob, max_handshakes), .def = 256, .min = 1, .max = 100000,
     .doc = "wire connections that have not finished TLS and HELLO; at most "
            "`max_connections`"},
    {ADDRS(cfg_blob, proxies, n_proxies), .required = true,
     .doc = "proxy wire addresses to register with"},
    {SIZE(cfg_blob, capacity_bytes), .def = 0, .min = 0, .max = 1ull << 60,
     .doc = "advertised capacity; 0 = the size of the filesystem of `data_dir`"},
    {SIZE(cfg_blob, segment_bytes), .def = 256 * MiB, .min = 1 * MiB, .max = 4 * GiB,
     .doc = "a segment is sealed at this size", .ansible = "256M"},
    {ENUM_AS("compression", cfg_blob, compression, int, compressions),
     .def = CFG_COMPRESS_OFF, .doc = "`auto` stores a blob zstd-compressed when that saves "
                                     "`compress_min_saving_pct`", .ansible = "off"},
    {U64(cfg_blob, compress_min_saving_pct), .def = 10, .min = 0, .max = 99,
     .doc = "the least saving, in percent, worth storing compressed"},
    {SIZE(cfg_blob, scrub_bytes_per_sec), .def = 16 * MiB, .min = 0, .max = 1 * TiB,
     .doc = "background scrub rate; 0 = off", .ansible = "16M"},
    {U64(cfg_blob, compact_live_pct), .def = 50, .min = 0, .max = 100,
     .doc = "compact a sealed segment whose live share falls below this percentage"},
    {U64(cfg_blob, heartbeat_ms), .def = 500, .min = 10, .max = 60000,
     .doc = "heartbeat to the proxies"},
    {SIZE(cfg_blob, max_blob_bytes), .def = 16 * MiB, .min = BD_BLOCK_SIZE, .max = 64 * MiB,
     .doc = "largest blob accepted; at most half of `segment_bytes`"},
    {SIZE(cfg_blob, put_turn_cap_bytes), .def = 2 * MiB, .min = 0, .max = 1 * GiB,
     .doc = "while more than one connection (proxy) puts blobs here, the bytes of puts in "
            "progress, all connections together, and connections take turns (deficit round "
            "robin): another proxy's put waits behind at most this much; a lone connection "
            "is never held; 0 = no turns, every put starts as it arrives"},
    {SIZE(cfg_blob, direct_io_min_bytes), .def = 128 * KiB, .min = 0, .max = 64 * MiB,
     .doc = "blobs stored in records at least this large are written with O_DIRECT, "
            "bypassing the page cache (smaller ones stay cached for reads); 0 = never, "
            "1 = always; off by itself where the filesystem refuses O_DIRECT"},
    {NAME(cfg_blob, zone), .min = 0, .max = 64, .pattern = "[A-Za-z0-9._-]",
     .expect = "expected letters, digits, '-', '_' or '.'",
     .doc = "failure domain: the zone (a site or availability zone); no partition puts two "
            "replicas in one zone while three zones have room"},
    {NAME(cfg_blob, rack), .min = 0, .max = 64, .pattern = "[A-Za-z0-9._-]",
     .expect = "expected letters, digits, '-', '_' or '.'",
     .doc = "failure domain: the rack, within its zone"},
    {NAME(cfg_blob, host), .min = 0, .max = 64, .pattern = "[A-Za-z0-9._-]",
     .expect = "expected letters, digits, '-', '_' or '.'",
     .doc = "failure domain: the machine; empty for this machine's host name, so several "
            "blob servers of one machine share it"},
    {OBJECT(cfg_blob, fault, cfg_fault, cfg_key_fault), .doc = "test builds only (below)"},
};
CHECK_WIDTH(blob_keys);

const struct cfg_key_section cfg_key_blob = {
    .path = "blob",
    .title = "blob",
    .doc = "`blob`: a storage server; each blob is kept on three of them.",
    SECTION_OF(blob_keys),
};

/* --- agent (struct cfg_agent) ----------------------------------------------- */

static const struct cfg_key agent_keys[] = {
    {NAME(cfg_agent, id), .required = true, .min = 1, .max = 64, .pattern = "[A-Za-z0-9._-]",
     .expect = "expected letters, digits, '-', '_' or '.'",
     .doc = "attach identity, unique per hypervisor"},
    {ADDR(cfg_agent, nbd_listen),
     .doc = "NBD over TCP, e.g. 127.0.0.1:10809; at least one of `nbd_listen` and "
            "`nbd_unix` is required"},
    {PATH(cfg_agent, nbd_unix),
     .doc = "NBD over a Unix socket at this path, serving every volume of the agent (for the "
            "operator; a VM gets its volume's own socket, `nbd_volume_dir`)"},
    {ADDR(cfg_agent, admin), .doc = "admin HTTPS address; none if absent"},
    {PATH(cfg_agent, cert_file),
     .doc = "this node's certificate (`blockd cert issue --role agent`); required unless "
            "`insecure_plaintext`"},
    {PATH(cfg_agent, key_file), .doc = "its private key: owned by the user running blockd, mode 0600"},

    {ADDRS(cfg_agent, proxies, n_proxies), .required = true, .doc = "proxy wire addresses"},
    {PATH(cfg_agent, cache_dir), .required = true,
     .doc = "the write-back journals, one per volume"},
    {SIZE(cfg_agent, cache_bytes), .def = 256 * MiB, .min = 4 * MiB, .max = 1 * TiB,
     .doc = "journal bound per volume", .ansible = "1G"},
    {U64(cfg_agent, cache_high_water_pct), .def = 50, .min = 1, .max = 100,
     .doc = "start shipping above this fill, in percent"},
    {U64(cfg_agent, flush_age_ms), .def = 5000, .min = 1, .max = 3600000,
     .doc = "ship dirty data older than this"},
    {U64(cfg_agent, io_timeout_ms), .def = 30000, .min = 100, .max = 3600000,
     .doc = "I/O fails with EIO when no proxy answers this long"},
    {U64(cfg_agent, handshake_timeout_ms), .def = 10000, .min = 100, .max = 600000,
     .doc = "NBD handshake deadline"},
    {U64(cfg_agent, max_handshakes), .def = 100, .min = 1, .max = 100000,
     .doc = "connections still in the handshake; at most `max_connections`"},
    {U64(cfg_agent, max_connections), .def = 1024, .min = 1, .max = 100000,
     .doc = "NBD connections"},
    {SIZE(cfg_agent, ship_bytes), .def = 1 * MiB, .min = BD_BLOCK_SIZE, .max = 16 * MiB,
     .doc = "largest extent shipped in one write; a multiple of 4096"},
    {ENUM_AS("nbd_tls", cfg_agent, nbd_tls, int, nbd_tls_modes), .def = CFG_NBD_TLS_ON,
     .doc = "TLS for NBD over TCP (NBD_OPT_STARTTLS, with this agent's certificate and the "
            "PSKs of `nbd_tls_psk_file`): `on` when the client asks, `require` before any "
            "other option, and then a volume opens only for the client its attachment "
            "names; Unix sockets offer it and never require it; needs TLS "
            "(no `insecure_plaintext`)", .ansible = "on"},
    {PATH(cfg_agent, nbd_tls_psk_file),
     .doc = "NBD clients' pre-shared keys, one `identity:hexkey` line each (qemu's and "
            "nbdkit's format; at least 16 bytes of key): owned by the user running blockd, "
            "mode 0600"},
    {PATH(cfg_agent, nbd_volume_dir),
     .doc = "a Unix socket `DIR/VOLUME.sock` for each volume attached to this agent, made "
            "and removed as volumes are attached and detached: serves that volume alone"},
    {NAME(cfg_agent, nbd_volume_owner), .min = 1, .max = 32, .pattern = "[A-Za-z0-9._-]",
     .expect = "expected a user name or uid",
     .doc = "owner of the volume sockets (a user name or uid; needs root or CAP_CHOWN); "
            "none: the agent's user"},
    {NAME(cfg_agent, nbd_volume_group), .min = 1, .max = 32, .pattern = "[A-Za-z0-9._-]",
     .expect = "expected a group name or gid",
     .doc = "group of the volume sockets (a group name or gid); none: the agent's group"},
    {NAME(cfg_agent, nbd_volume_mode), .min = 3, .max = 4, .pattern = "[0-7]",
     .def_str = "0600", .expect = "expected an octal mode such as \"0660\"",
     .doc = "mode of the volume sockets, octal; a client needs write permission to connect"},
    {U64(cfg_agent, qos_stats_keep_ms), .def = 300000, .min = 0, .max = DAY_MS,
     .doc = "a volume's per-volume metrics (QoS, I/O, latency) stay this long after it "
            "detaches, then stop being exported"},
    {SIZE(cfg_agent, map_cache_bytes), .def = 16 * MiB, .min = 0, .max = 1024 * MiB,
     .doc = "memory for the blob maps proxies lease (README \"Reads in two hops\"): a read "
            "under a cached map goes straight to a blob server; least recently used maps go "
            "first; 0 reads everything through the proxies"},
    {SIZE(cfg_agent, direct_write_bytes), .def = 256 * KiB, .min = 0, .max = 1 * TiB,
     .doc = "a block-aligned write of at least this many bytes skips the journal (README "
            "\"Large writes\"): it is shipped as it arrives and answered once the cluster "
            "holds it durably, when nothing older of its blocks waits in the journal; 0 "
            "journals every write"},
    {OBJECT(cfg_agent, fault, cfg_fault, cfg_key_fault), .doc = "test builds only (below)"},
};
CHECK_WIDTH(agent_keys);

const struct cfg_key_section cfg_key_agent = {
    .path = "agent",
    .title = "agent",
    .doc = "`agent`: the NBD server on a hypervisor, with its write-back cache.",
    SECTION_OF(agent_keys),
};

const struct cfg_key_section *const cfg_key_sections[] = {
    &cfg_key_root, &cfg_key_log,   &cfg_key_proxy, &cfg_key_peer,
    &cfg_key_blob, &cfg_key_agent, &cfg_key_fault, NULL,
};

const struct cfg_key *cfg_key_find(const struct cfg_key_section *section, const char *name)
{
    for (unsigned i = 0; i < section->n_keys; i++)
        if (strcmp(section->keys[i].name, name) == 0) return &section->keys[i];
    return NULL;
}
