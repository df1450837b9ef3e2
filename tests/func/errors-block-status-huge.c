/* errors-block-status-huge.c: CONTRACT.md §3 4.2 "BLOCK_STATUS over a huge
 * range (up to 2^32-1 bytes) where our extent map has one extent longer
 * than the request": the server clips, never asserts (nbdkit
 * CVE-2025-47711).  With NBD_TEST_BIG_EXPORT (>= 4 GiB) the request is
 * 0xFFFFF000 bytes; the test server also runs with --long-extents, so its
 * back end reports extents running past every request.  libnbd checks
 * the reply's shape; we check the lengths. */
#include "nbdtest.h"

struct seen {
    uint64_t sum, first;
    size_t n;
};

static int extent_cb(void *data, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
    (void)ctx; (void)off; (void)err;
    struct seen *s = data;
    s->n = n / 2;
    s->sum = 0;
    for (size_t i = 0; i < n; i += 2) s->sum += e[i];
    s->first = n ? e[0] : 0;
    return 0;
}

static void query(struct nbd_handle *h, uint64_t off, uint64_t len, uint32_t flags)
{
    struct seen s = {0};
    T_NBD(nbd_block_status(h, len, off,
                           (nbd_extent_callback){.callback = extent_cb, .user_data = &s}, flags));
    if (s.n == 0)
        T_FAIL("no extents for %llu+%llu", (unsigned long long)off, (unsigned long long)len);
    if (s.sum > len)
        T_FAIL("extents cover %llu bytes of a %llu-byte request", (unsigned long long)s.sum,
               (unsigned long long)len);
    if ((flags & LIBNBD_CMD_FLAG_REQ_ONE) && (s.n != 1 || s.first > len))
        T_FAIL("REQ_ONE: %zu extents, first %llu", s.n, (unsigned long long)s.first);
}

int main(void)
{
    t_init();
    const char *big = t_env("NBD_TEST_BIG_EXPORT", NULL);
    struct nbd_handle *h = t_open(big ? big : t_export, true, true);
    T_CHECK(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1);
    uint64_t size = (uint64_t)nbd_get_size(h);
    char buf[4096] = {1};
    T_NBD(nbd_pwrite(h, buf, sizeof(buf), 8192, 0));
    query(h, 0, 4096, 0);
    query(h, 4096, 4096, LIBNBD_CMD_FLAG_REQ_ONE);
    query(h, 0, size < 0xfffff000u ? size : 0xfffff000u, 0);
    query(h, 0, size < 0xfffff000u ? size : 0xfffff000u, LIBNBD_CMD_FLAG_REQ_ONE);
    if (size > 0xfffff000u) query(h, size - 0xfffff000u, 0xfffff000u, 0);
    query(h, size - 4096, 4096, 0);
    T_NBD(nbd_pread(h, buf, sizeof(buf), 0, 0));
    nbd_close(h);
    return 0;
}
