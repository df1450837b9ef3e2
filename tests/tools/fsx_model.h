/* fsx_model.h: what each block of a device may hold, given the ops a test
 * issued (the fsx "good_buf", kept as windows of sequence numbers rather
 * than bytes, since a stamped block is fully determined by its seq).
 *
 * Per block the model keeps a window of allowed values: data stamps with
 * seq in [lo, hi], zeros if zero_ok, anything if any_ok.  An op updates the
 * window in one of two ways:
 *
 *   reset   the op is known to be visible (linearizable online checking) or
 *           durable (crash checking): the window becomes exactly that op's
 *           value.
 *   extend  the op may or may not be visible yet (multi-conn lag before a
 *           flush; a write that was not flushed before a crash): its value
 *           joins the window and older values stay allowed.
 *
 * fsx_model_settle() turns every extended block back into an exact one (a
 * flush reply, or a reconnect on one connection).  Windows are intervals
 * because seqs are unique and increasing and every stamp names its block,
 * so every stamp of this run for block B with lo <= seq <= hi is one of the
 * writes issued to B in that interval.
 *
 * TRIM is modelled as "reads zeros" (strict, what blockd promises: C9)
 * unless loose_trim, where the old data also stays allowed until the next
 * write (plain NBD leaves trimmed contents unspecified). */
#ifndef BD_FSX_MODEL_H
#define BD_FSX_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "stamp.h"

enum fsx_kind {
    FSX_NONE = 0,  /* never written */
    FSX_WRITE,     /* data */
    FSX_FUA,       /* data, with FUA */
    FSX_ZERO,      /* write_zeroes */
    FSX_TRIM,      /* trim */
};

/* One block's window (see the file comment). */
struct fsx_mblk {
    uint64_t lo, hi;       /* allowed data seqs; lo == 0: no data allowed */
    uint64_t last_seq;     /* newest op on the block; 0: none */
    uint8_t last_kind;     /* enum fsx_kind of that op */
    uint8_t zero_ok;       /* zeros allowed */
    uint8_t any_ok;        /* unknown initial contents still possible */
    uint8_t dirty;         /* extended since the last settle */
};

struct fsx_model {
    uint64_t nblocks;
    struct fsx_mblk *b;    /* nblocks entries, owned */
    bool loose_trim;
    uint64_t *dirty;       /* blocks extended since the last settle, owned */
    uint64_t n_dirty, cap_dirty;
};

/* Initialise for NBLOCKS blocks.  INIT_ANY: initial contents unknown (else
 * zeros, what a new volume must read: C11).  Returns 0 or -ENOMEM. */
int fsx_model_init(struct fsx_model *m, uint64_t nblocks, bool init_any, bool loose_trim);
void fsx_model_fini(struct fsx_model *m);

/* Record an op of KIND with SEQ over blocks [first, first+n).  RESET: see
 * the file comment.  Returns 0 or -ENOMEM (dirty list growth). */
int fsx_model_apply(struct fsx_model *m, uint64_t first, uint64_t n, uint64_t seq,
                    enum fsx_kind kind, bool reset);

/* Make every extended block exact again: it holds its newest op's value. */
void fsx_model_settle(struct fsx_model *m);

/* The window of BLOCK, for stamp_classify(). */
void fsx_model_expect(const struct fsx_model *m, uint64_t block, struct stamp_expect *out);

/* Fill BUF (STAMP_BLOCK bytes) with the newest value of BLOCK for the .good
 * image: the stamp of its newest write, or zeros.  ME gives the run's
 * identity (vol, seed, writer, gen). */
void fsx_model_good(const struct fsx_model *m, uint64_t block, const struct stamp *me,
                    uint8_t *buf);

#endif
