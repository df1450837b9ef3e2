/* snapmem.c: file-backed snapshot buffers for libraft (see snapmem.h).
 *
 * The table: SNAPMEM_SLOTS entries {user base, map base, map length},
 * guarded by one mutex, plus an atomic count of live entries that lets
 * raft_free skip the lock when nothing is mapped (the common case: every
 * log entry batch libraft frees passes here).  A snapshot in flight needs
 * one slot (one being made, one per follower being sent to, one being
 * received), so a small fixed table is plenty; a full one fails the map
 * with -ENOMEM and the snapshot is retried by libraft.
 *
 * Rejected: tagging mapped pointers with a header in front of the bytes
 * (the mapping's first bytes belong to the file), and an LD_PRELOAD-style
 * interposition on free (libraft calls its own raft_free, which goes
 * through the heap we install, so no interposition is needed). */
#include "store/raft/snapmem.h"
#include "base/bd.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAPMEM_SLOTS 64

struct slot {
    void *user;    /* what raft_free is called with; NULL = free slot */
    void *map;     /* mmap's address (page aligned) */
    size_t map_len;
};

static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER; /* protects tab, tab_bytes */
static struct slot tab[SNAPMEM_SLOTS];
static uint64_t tab_bytes;
static _Atomic unsigned tab_live; /* entries in tab; read without the lock */
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static atomic_uint spool_seq;

/* Remove P's entry; true (and the mapping) if it was one. */
static bool tab_take(const void *p, void **map, size_t *map_len)
{
    if (!p || atomic_load_explicit(&tab_live, memory_order_acquire) == 0) return false;
    bool found = false;
    pthread_mutex_lock(&tab_lock);
    for (unsigned i = 0; i < SNAPMEM_SLOTS; i++)
        if (tab[i].user == p) {
            *map = tab[i].map;
            *map_len = tab[i].map_len;
            tab_bytes -= tab[i].map_len;
            tab[i].user = NULL;
            atomic_fetch_sub(&tab_live, 1);
            found = true;
            break;
        }
    pthread_mutex_unlock(&tab_lock);
    return found;
}

/* ---- the raft heap ------------------------------------------------------------ */

static void *h_malloc(void *d, size_t size)
{
    (void)d;
    return malloc(size);
}

static void h_free(void *d, void *p)
{
    (void)d;
    void *map;
    size_t len;
    if (tab_take(p, &map, &len)) munmap(map, len);
    else free(p);
}

static void *h_calloc(void *d, size_t n, size_t size)
{
    (void)d;
    return calloc(n, size);
}

static void *h_realloc(void *d, void *p, size_t size)
{
    (void)d;
    void *map;
    size_t len;
    if (!tab_take(p, &map, &len)) return realloc(p, size);
    /* Not done by libraft 0.15; correct anyway: copy what the caller can
     * see (from P to the mapping's end) and unmap. */
    size_t have = len - (size_t)((uint8_t *)p - (uint8_t *)map);
    void *n = malloc(size ? size : 1);
    if (n) memcpy(n, p, BD_MIN(have, size));
    munmap(map, len);
    return n;
}

static void *h_aligned_alloc(void *d, size_t alignment, size_t size)
{
    (void)d;
    return aligned_alloc(alignment, size);
}

static void h_aligned_free(void *d, size_t alignment, void *p)
{
    (void)d;
    (void)alignment;
    free(p);
}

static struct raft_heap heap = {.malloc = h_malloc, .free = h_free, .calloc = h_calloc,
                                .realloc = h_realloc, .aligned_alloc = h_aligned_alloc,
                                .aligned_free = h_aligned_free};

static void heap_install(void)
{
    raft_heap_set(&heap);
}

void snapmem_heap_install(void)
{
    pthread_once(&heap_once, heap_install);
}

/* ---- mappings ------------------------------------------------------------------- */

int snapmem_map(int fd, uint64_t off, uint64_t len, struct raft_buffer *out)
{
    pthread_once(&heap_once, heap_install);
    *out = (struct raft_buffer){NULL, 0};
    if (len == 0) {
        out->base = raft_malloc(1);
        return out->base ? 0 : -ENOMEM;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off || len > SIZE_MAX / 2)
        return -EINVAL;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t start = off - off % page;
    size_t map_len = (size_t)(len + (off - start));
    void *map = mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, (off_t)start);
    if (map == MAP_FAILED) return -errno;
    madvise(map, map_len, MADV_SEQUENTIAL); /* read once, front to back */
    void *user = (uint8_t *)map + (off - start);
    int rc = -ENOMEM;
    pthread_mutex_lock(&tab_lock);
    for (unsigned i = 0; i < SNAPMEM_SLOTS; i++)
        if (!tab[i].user) {
            tab[i] = (struct slot){user, map, map_len};
            tab_bytes += map_len;
            atomic_fetch_add_explicit(&tab_live, 1, memory_order_release);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&tab_lock);
    if (rc) {
        munmap(map, map_len);
        return rc;
    }
    *out = (struct raft_buffer){user, (size_t)len};
    return 0;
}

int snapmem_rebase(void *old, void *new_base)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&tab_lock);
    for (unsigned i = 0; i < SNAPMEM_SLOTS; i++)
        if (tab[i].user && tab[i].user == old) {
            uint8_t *m = tab[i].map, *n = new_base;
            if (n < m || n >= m + tab[i].map_len) break;
            tab[i].user = new_base;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&tab_lock);
    return rc;
}

bool snapmem_is_mapped(const void *p)
{
    if (!p || atomic_load(&tab_live) == 0) return false;
    bool found = false;
    pthread_mutex_lock(&tab_lock);
    for (unsigned i = 0; i < SNAPMEM_SLOTS && !found; i++) found = tab[i].user == p;
    pthread_mutex_unlock(&tab_lock);
    return found;
}

void snapmem_counts(uint64_t *n, uint64_t *bytes)
{
    pthread_mutex_lock(&tab_lock);
    *n = atomic_load(&tab_live);
    *bytes = tab_bytes;
    pthread_mutex_unlock(&tab_lock);
}

void snapmem_consumed(const void *p, size_t len)
{
    if (!p || !len || atomic_load_explicit(&tab_live, memory_order_acquire) == 0) return;
    uintptr_t a = (uintptr_t)p, e = a + len;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    pthread_mutex_lock(&tab_lock);
    for (unsigned i = 0; i < SNAPMEM_SLOTS; i++) {
        uintptr_t m = (uintptr_t)tab[i].map, me = m + tab[i].map_len;
        if (!tab[i].user || a < m || a >= me) continue;
        uintptr_t from = (a + page - 1) & ~(page - 1);
        uintptr_t to = BD_MIN(e, me);
        if (to != me) to &= ~(page - 1); /* a partial last page stays, unless it ends the map */
        if (to > from) madvise((void *)from, to - from, MADV_DONTNEED);
        break;
    }
    pthread_mutex_unlock(&tab_lock);
}

/* ---- spool files --------------------------------------------------------------------- */

struct snapmem_spool {
    struct fileio *fio;
    int fd;
    uint64_t len;  /* bytes written */
    int err;       /* sticky first write error */
};

int snapmem_spool_open(struct fileio *fio, const char *dir, struct snapmem_spool **out)
{
    *out = NULL;
    struct snapmem_spool *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->fio = fio ? fio : &fileio_posix;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/snap-spool-%ld-%u.tmp", dir, (long)getpid(),
                     atomic_fetch_add(&spool_seq, 1));
    if (n < 0 || (size_t)n >= sizeof(path)) {
        free(s);
        return -ENAMETOOLONG;
    }
    s->fd = s->fio->ops->open(s->fio, path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (s->fd < 0) {
        int rc = s->fd;
        free(s);
        return rc;
    }
    /* Gone from the directory at once: the open fd (and mappings) keep it. */
    int rc = s->fio->ops->unlink(s->fio, path);
    if (rc < 0) {
        s->fio->ops->close(s->fio, s->fd);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int snapmem_spool_write(struct snapmem_spool *s, const void *p, size_t len)
{
    if (s->err) return s->err;
    int rc = fileio_pwrite_full(s->fio, s->fd, p, len, s->len);
    if (rc < 0) {
        s->err = rc;
        return rc;
    }
    s->len += len;
    return 0;
}

uint64_t snapmem_spool_len(const struct snapmem_spool *s)
{
    return s->len;
}

int snapmem_spool_map(struct snapmem_spool *s, uint64_t off, uint64_t len,
                      struct raft_buffer *out)
{
    if (s->err) return s->err;
    if (off > s->len || len > s->len - off) return -EINVAL;
    return snapmem_map(s->fd, off, len, out);
}

void snapmem_spool_close(struct snapmem_spool *s)
{
    if (!s) return;
    s->fio->ops->close(s->fio, s->fd);
    free(s);
}
