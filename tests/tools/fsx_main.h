/* fsx_main.h: state shared by blockd-fsx.c (options, the random-op run)
 * and fsx_check.c (the verify-log, poke and inspect modes).  One run per
 * process, so the state is one global, g. */
#ifndef BD_FSX_MAIN_H
#define BD_FSX_MAIN_H

#include <libnbd.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "fsx_log.h"
#include "fsx_model.h"
#include "stamp.h"

#define BS STAMP_BLOCK
#define MAX_CONNS 16
#define EXIT_VERIFY 1
#define EXIT_USAGE 2
#define EXIT_IO 3

/* ---- ops and their weights ---------------------------------------------- */

#define OPS(X)                  \
    X(READ, "read", 30)         \
    X(WRITE, "write", 30)       \
    X(FUA, "fua", 5)            \
    X(TRIM, "trim", 5)          \
    X(ZERO, "zero", 5)          \
    X(FLUSH, "flush", 8)        \
    X(BSTATUS, "bstatus", 5)    \
    X(RECONNECT, "reconnect", 1) \
    X(MULTICONN, "multiconn", 4)

enum op {
#define OP_ENUM(n, s, w) OP_##n,
    OPS(OP_ENUM)
#undef OP_ENUM
    OP_FINAL, /* the final whole-range read */
    N_OPS
};
/* One entry of the op history (the last --history ops). */
struct hist {
    uint64_t n;            /* op number, 1-based */
    uint64_t seq;          /* seq of the write/zero/trim/flush; 0 for reads */
    uint64_t first, count; /* block range */
    uint8_t op;            /* enum op */
    uint8_t conn, conn2, conn3;
};

/* ---- global state (one run per process) --------------------------------- */

struct conn {
    struct nbd_handle *h;
    const char *uri;
};

struct fsx_state {
    /* options */
    const char *uris[3];
    unsigned n_uris, n_conns;
    uint64_t seed, ops, duration_s;
    bool seed_set;
    struct stamp me;       /* identity: vol, seed, writer, gen */
    uint64_t max_blocks, range_first, range_count;
    bool lag;              /* --consistency=flush */
    bool init_any, loose_trim, final_check, final_flush, verbose;
    const char *log_path, *verify_path, *from_log, *out_dir;
    unsigned log_sync;
    enum fsx_require require;
    int64_t poke_block, inspect_block;
    uint64_t poke_count, poke_seq, inspect_count;
    unsigned history;
    uint64_t op_timeout_s;  /* --op-timeout; 0: none */
    bool timed_out;         /* the last I/O failed by timing out */

    /* run state */
    struct conn c[MAX_CONNS];
    uint64_t size, nblocks;
    bool can_fua, can_trim, can_zero, can_flush, can_bstatus, can_multi;
    uint64_t server_max_blocks; /* largest request the server takes, in blocks */
    struct fsx_model model;
    struct fsx_log log;
    bool logging;
    uint64_t s[4];         /* xoshiro256** state */
    uint64_t seq, op_no;
    uint8_t *buf, *rbuf;
    struct hist *hist;
    uint64_t n_hist;
    uint64_t count[N_OPS], bytes_written, bytes_verified;
    struct timespec t0;
};

extern struct fsx_state g;

/* "blockd-fsx: " + printf + newline on stderr. */
void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Open g.n_conns connections to g.uris; fills g.size, g.nblocks, the
 * server's capabilities and the default range.  0, or -1 after a message. */
int open_all(void);
/* Close every connection and the log. */
void close_all(void);
/* Report an NBD error on OP (libnbd's message and errno), print the
 * summary, close everything and exit 3. */
void fail_io(enum op op, unsigned conn, const char *what) __attribute__((noreturn));

/* Requests with the --op-timeout deadline: 0, or -1 with the libnbd error
 * set or g.timed_out. */
int io_connect(struct nbd_handle *h, const char *uri);
int io_pread(struct nbd_handle *h, void *buf, uint64_t len, uint64_t off);
int io_pwrite(struct nbd_handle *h, const void *buf, uint64_t len, uint64_t off, uint32_t flags);
int io_flush(struct nbd_handle *h);
int io_disconnect(struct nbd_handle *h);

/* The modes of fsx_check.c; each returns the exit status. */
int fsx_verify_log(void);
int fsx_poke(void);
int fsx_inspect(void);

#endif
