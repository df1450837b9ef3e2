/* snapmem.h: a Raft snapshot's bytes in a file, handed to libraft as
 * read-only mappings instead of anonymous heap.
 *
 * Why: libraft 0.15 holds a snapshot as a list of struct raft_buffer that
 * it frees with raft_free() (snapshot.c snapshotClose, replication.c, the
 * install path, recv.c).  Heap buffers made a 10 M extent index cost
 * 844 MiB of RSS on the leader while the snapshot was made and sent, and
 * as much (twice, while reassembled) on a proxy receiving it; 100 M
 * extents would not fit in this machine's memory.  Here the bytes live in
 * a file (the page cache, which the kernel can write back and drop), and
 * libraft gets a pointer into a MAP_SHARED, PROT_READ mapping of it.
 *
 * How libraft frees a mapping: snapmem installs a raft heap
 * (raft_heap_set) whose free() looks the pointer up in a table of live
 * mappings and munmaps a registered one; every other pointer goes to the
 * C library as with libraft's default heap.  The table is empty almost
 * always, and then free() costs one atomic load more.  NOBODY ELSE in the
 * process may call raft_heap_set / raft_heap_set_default while a mapping
 * is live (nothing does: tests use libraft's default heap, which is the
 * same C library).  raft_realloc of a mapping copies it to the heap and
 * unmaps it (nothing in libraft 0.15 reallocates snapshot data).
 *
 * RSS: pages of a file mapping that were read count in VmRSS (as RssFile)
 * until unmapped.  Consumers that read a mapping once, front to back (the
 * sender, the file writer, a checksum pass) call snapmem_consumed() behind
 * them, which drops those pages from this process (MADV_DONTNEED; they
 * stay in the page cache), so a multi-GiB snapshot never sits in RSS.
 *
 * Spool files are temporary: created in a directory (the raft log's),
 * unlinked at once, never fsynced (nothing needs them after a crash; the
 * snapshot file raftlog writes from them is fsynced as before).  Their
 * names start "snap-spool-" and end ".tmp", so raftlog_load's cleanup of
 * leftover snap-*.tmp files removes one a crash left between create and
 * unlink.
 *
 * Threads: every function is thread-safe (the table has a mutex); a spool
 * is used by one thread at a time.
 *
 * Failure: a mapping over a file that another process truncates under it
 * raises SIGBUS on access; blockd never truncates a file it mapped (spool
 * files are unlinked, snapshot files are replaced by rename and unlink). */
#ifndef BD_SNAPMEM_H
#define BD_SNAPMEM_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/fileio.h"

/* Install the raft heap described above (idempotent).  Call it on the
 * main thread before libraft or other threads run (rio_new does): libraft
 * reads its heap pointer without a lock.  snapmem_map installs it too, as
 * a safety net. */
void snapmem_heap_install(void);

/* Map LEN bytes of FD from OFF, read-only, and register the mapping:
 * OUT->base points at the byte at OFF (OFF need not be page aligned) and
 * raft_free(OUT->base) unmaps it.  FD is borrowed (the mapping outlives
 * its close).  LEN 0 gives a 1-byte raft_malloc buffer.  Installs the
 * heap on first use.  0, -EINVAL (the range passes the file's end: a
 * short file), -ENOMEM or -errno from mmap. */
int snapmem_map(int fd, uint64_t off, uint64_t len, struct raft_buffer *out);

/* Hand the mapping registered under OLD to NEW_BASE, a pointer inside it:
 * raft_free(NEW_BASE) then unmaps it, and OLD no longer names it.  Used
 * when a decoder keeps only part of a mapped message.  0 or -ENOENT. */
int snapmem_rebase(void *old, void *new_base);

/* True if P is the registered base of a live mapping (tests, asserts). */
bool snapmem_is_mapped(const void *p);
/* Live mappings and their bytes (a gauge for tests and /metrics). */
void snapmem_counts(uint64_t *n, uint64_t *bytes);

/* The bytes [P, P+LEN) were read and are not needed again soon: if they
 * lie in a live mapping, drop its whole pages inside the range from this
 * process's RSS (they refault from the page cache if read again).  Any
 * other pointer: nothing happens. */
void snapmem_consumed(const void *p, size_t len);

/* A temporary file filled front to back, then mapped. */
struct snapmem_spool;

/* Create and unlink a spool file in DIR (which must exist), written
 * through FIO (borrowed; NULL = fileio_posix; it must hand out real file
 * descriptors).  0 with *OUT owned (snapmem_spool_close) or -errno. */
int snapmem_spool_open(struct fileio *fio, const char *dir, struct snapmem_spool **out);
/* Append LEN bytes of P.  0 or -errno (-ENOSPC, -EIO); after an error the
 * spool refuses further writes with the same code. */
int snapmem_spool_write(struct snapmem_spool *s, const void *p, size_t len);
/* Bytes written so far. */
uint64_t snapmem_spool_len(const struct snapmem_spool *s);
/* Map [OFF, OFF+LEN) of what was written (snapmem_map's contract). */
int snapmem_spool_map(struct snapmem_spool *s, uint64_t off, uint64_t len,
                      struct raft_buffer *out);
/* Close the file (mappings made from it stay valid).  NULL is a no-op. */
void snapmem_spool_close(struct snapmem_spool *s);

#endif
