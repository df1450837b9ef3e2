/* config.h: the blockd configuration file, parsed and validated.
 *
 * Names: cfg_* / CFG_* is the agreed short form for config.[ch] (struct
 * cfg and its parts, CFG_* limits); the entry points are config_*.
 *
 * One JSON file per process.  Its top level holds cluster_id, secret_file,
 * admin_token_file, log, and the role sections agent, proxy and blob, each
 * an object (one instance) or an array of objects (several instances in
 * one process, for --role=all).  Every key, with its type, default, range
 * and doc, is declared once in config_keys.c; README "Configuration" is
 * generated from there (blockd --config-doc=markdown).
 *
 * Validation (CONTRACT.md §3, config files): unknown keys, duplicate keys,
 * wrong types, missing required keys and out-of-range values are rejected
 * with one line "FILE:LINE: key.path: what was expected", before any port
 * is bound.  The caller prints it and exits with status 2. */
#ifndef BD_CONFIG_H
#define BD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/log.h"

#define CFG_ADDR_MAX 128
#define CFG_PATH_MAX 1024
#define CFG_MAX_PEERS 7
#define CFG_SECRET_MAX 256

/* Test-build fault knobs (CONTRACT.md row 6).  All zero means off. */
struct cfg_fault {
    uint64_t seed;                 /* seeds every random choice below */
    uint64_t socket_failure_every; /* close a wire connection every N frames */
    uint64_t delay_ms;             /* delay every wire reply by this much */
    uint64_t fsync_eio_after;      /* fail the Nth fdatasync with EIO (store I/O) */
};

struct cfg_peer {
    uint64_t id;               /* raft server id, >= 1 */
    char addr[CFG_ADDR_MAX];   /* wire address "host:port" */
};

/* The shortest orphan grace: twice the proxy's write deadline
 * (PIO_WRITE_DEADLINE_MS, proxy_int.h), so a blob put by a write whose index
 * commit is still in flight is never taken for an orphan (proxy_resync.c
 * checks the relation at compile time). */
#define CFG_ORPHAN_GRACE_MIN_MS 40000u

struct cfg_proxy {
    uint64_t id;                       /* raft server id; must appear in peers */
    char listen[CFG_ADDR_MAX];         /* wire: agents, blob servers, peer proxies */
    char admin[CFG_ADDR_MAX];          /* admin HTTP; empty = none */
    char data_dir[CFG_PATH_MAX];       /* LMDB index, raft log, snapshots */
    char cert_file[CFG_PATH_MAX];      /* our certificate; empty with insecure_plaintext */
    char key_file[CFG_PATH_MAX];       /* its key */
    uint64_t max_connections;          /* wire connections at once */
    uint64_t max_handshakes;           /* ... of which not yet authenticated */
    struct cfg_peer peers[CFG_MAX_PEERS];
    unsigned n_peers;                  /* 1, 3, 5 or 7 (any count with join) */
    bool join;                         /* start as a new member of an existing group */
    uint64_t blob_max_bytes;           /* largest blob a write becomes */
    uint64_t node_timeout_ms;          /* blob server down after this long silent */
    uint64_t election_timeout_ms;      /* raft election timeout */
    uint64_t raft_heartbeat_ms;        /* raft heartbeat */
    uint64_t snapshot_threshold;       /* raft entries between snapshots */
    uint64_t snapshot_trailing;        /* entries kept after a snapshot */
    uint64_t gc_grace_ms;              /* blob deletion waits this long (C13) */
    uint64_t read_timeout_ms;          /* a read gives up after this; < gc_grace_ms */
    uint64_t map_lease_ms;             /* VOL_LEASE: how long an agent may use a map; 0 off */
    uint64_t index_map_bytes;          /* LMDB map size */
    uint64_t partition_bytes;          /* a partition's size: a server holds capacity / this */
    uint64_t fill_limit_pct;           /* a blob server fuller than this takes no new blobs */
    uint64_t repair_interval_ms;       /* anti-entropy: a pass over all partitions this often */
    uint64_t orphan_grace_ms;          /* a copy the index does not know is deleted after
                                          this long; >= CFG_ORPHAN_GRACE_MIN_MS */
    uint64_t replace_after_ms;         /* a blob server down this long is replaced */
    uint64_t rebuild_bytes_per_sec;    /* copy rate of moves and rebuilds; 0 = unlimited */
    uint64_t write_turn_cap_bytes;     /* writes in progress while volumes contend; 0 = no turns */
    uint64_t rebalance_moves;          /* rebalancing moves at once; 0 = no rebalancing */
    uint64_t rewrite_live_pct;         /* rewrite blobs whose live share is below; 0 = never */
    uint64_t rewrite_bytes_per_sec;    /* the blob rewrite's budget; 0 = off */
    uint64_t flatten_bytes_per_sec;    /* the rate a clone's flatten copies at */
    bool allow_tmpfs;                  /* tests only: permit the index on tmpfs */
    struct cfg_fault fault;
};

enum cfg_compression { CFG_COMPRESS_OFF, CFG_COMPRESS_AUTO };
/* NBD over TCP (README "Security"): no TLS, TLS when the client asks
 * (NBD_OPT_STARTTLS), or TLS before anything else (FORCEDTLS). */
enum cfg_nbd_tls { CFG_NBD_TLS_OFF, CFG_NBD_TLS_ON, CFG_NBD_TLS_REQUIRE };

struct cfg_blob {
    uint64_t id;                       /* node id, unique in the cluster */
    char listen[CFG_ADDR_MAX];         /* wire: proxies and repair peers */
    char admin[CFG_ADDR_MAX];
    char data_dir[CFG_PATH_MAX];       /* partitions and segments */
    char cert_file[CFG_PATH_MAX];      /* our certificate; empty with insecure_plaintext */
    char key_file[CFG_PATH_MAX];       /* its key */
    uint64_t max_connections;          /* wire connections at once */
    uint64_t max_handshakes;           /* ... of which not yet authenticated */
    char proxies[CFG_MAX_PEERS][CFG_ADDR_MAX]; /* proxy wire addresses to register with */
    unsigned n_proxies;
    uint64_t capacity_bytes;           /* advertised capacity; 0 = free space of data_dir */
    uint64_t segment_bytes;            /* a segment is sealed at this size */
    int compression;                   /* enum cfg_compression */
    uint64_t compress_min_saving_pct;  /* store compressed only if it saves this much */
    uint64_t scrub_bytes_per_sec;      /* background scrub rate; 0 = off */
    uint64_t compact_live_pct;         /* compact segments whose live share is below */
    uint64_t heartbeat_ms;             /* to the proxies */
    uint64_t max_blob_bytes;           /* largest blob accepted */
    uint64_t put_turn_cap_bytes;       /* puts in progress while connections contend; 0 = no turns */
    uint64_t direct_io_min_bytes;      /* records this large bypass the page cache; 0 = none */
    char zone[65];                     /* failure domains; empty = unset */
    char rack[65];
    char host[65];                     /* empty = this machine's host name */
    struct cfg_fault fault;
};

struct cfg_agent {
    char id[65];                       /* attach identity, unique per hypervisor */
    char nbd_listen[CFG_ADDR_MAX];     /* NBD over TCP; empty = none */
    char nbd_unix[CFG_PATH_MAX];       /* NBD over a Unix socket; empty = none */
    char admin[CFG_ADDR_MAX];
    char cert_file[CFG_PATH_MAX];      /* our certificate; empty with insecure_plaintext */
    char key_file[CFG_PATH_MAX];       /* its key */
    char proxies[CFG_MAX_PEERS][CFG_ADDR_MAX];
    unsigned n_proxies;
    char cache_dir[CFG_PATH_MAX];      /* write-back journal, one per volume */
    uint64_t cache_bytes;              /* journal bound per volume */
    uint64_t cache_high_water_pct;     /* start shipping above this fill */
    uint64_t flush_age_ms;             /* ship dirty data older than this */
    uint64_t io_timeout_ms;            /* I/O fails with EIO when no proxy answers this long */
    uint64_t handshake_timeout_ms;     /* NBD handshake deadline */
    uint64_t max_handshakes;           /* cap on connections that have not finished it */
    uint64_t max_connections;          /* cap on all NBD connections */
    uint64_t ship_bytes;               /* largest extent shipped in one write */
    int nbd_tls;                       /* enum cfg_nbd_tls */
    char nbd_tls_psk_file[CFG_PATH_MAX]; /* "username:hexkey" lines; empty = no PSK */
    char nbd_volume_dir[CFG_PATH_MAX]; /* a socket per attached volume here; empty = none */
    char nbd_volume_owner[33];         /* their owner (user name or uid); empty = ours */
    char nbd_volume_group[33];         /* their group (name or gid); empty = ours */
    char nbd_volume_mode[5];           /* their mode, octal ("0660") */
    uint64_t qos_stats_keep_ms;        /* a detached volume's QoS figures are kept this long */
    uint64_t map_cache_bytes;          /* leased blob maps kept for direct reads; 0 none */
    uint64_t direct_write_bytes;       /* writes this large skip the journal; 0 never */
    struct cfg_fault fault;
};

struct cfg {
    char path[CFG_PATH_MAX];          /* the file this came from */
    char cluster_id[65];
    char tls_ca_file[CFG_PATH_MAX];   /* the cluster CA; empty with insecure_plaintext */
    bool insecure_plaintext;          /* no TLS, no authentication (tests, demos) */
    char admin_token[CFG_SECRET_MAX]; /* admin bearer token; empty if none */
    char admin_read_token[CFG_SECRET_MAX]; /* read-only bearer token; empty if none */
    char log_file[CFG_PATH_MAX];      /* "-" for stderr */
    enum log_level log_level;
    enum log_format log_format;       /* text or json (blockd --log-format overrides) */
    struct cfg_proxy *proxies;
    unsigned n_proxies;
    struct cfg_blob *blobs;
    unsigned n_blobs;
    struct cfg_agent *agents;
    unsigned n_agents;
};

/* Load and validate PATH into *CFG.  Returns 0, or -BD_ECONFIG with a
 * one-line message in ERR.  On failure *CFG holds nothing to free. */
int config_load(const char *path, struct cfg *cfg, char *err, size_t errlen);
/* Same, from TEXT (SOURCE names it in messages).  Secret and token files
 * are read relative to the current directory. */
int config_parse(const char *source, const char *text, size_t len, struct cfg *cfg,
                 char *err, size_t errlen);
void config_free(struct cfg *cfg);

/* With insecure_plaintext, call WARN(ARG, KEY, ADDR) for every listener of
 * CFG that is not on loopback (a Unix socket, 127.0.0.0/8, ::1 or
 * localhost): anyone who reaches it speaks to this node unauthenticated.
 * KEY names the config key ("proxy[0].listen").  Returns how many. */
unsigned config_exposed_plaintext(const struct cfg *cfg,
                                  void (*warn)(void *arg, const char *key, const char *addr),
                                  void *arg);

/* For every agent whose NBD TCP listener is not on loopback and whose
 * nbd_tls is not `require`, call WARN(ARG, "agent[I].nbd_listen", ADDR):
 * there a volume attached without a named client opens, in plaintext, to
 * anyone who reaches the port (issue 12: on TCP a volume needs TLS with its
 * client's PSK identity or certificate).  Returns how many. */
unsigned config_exposed_nbd(const struct cfg *cfg,
                            void (*warn)(void *arg, const char *key, const char *addr),
                            void *arg);

#endif
