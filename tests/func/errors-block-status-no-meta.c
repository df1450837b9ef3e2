/* errors-block-status-no-meta.c: CONTRACT.md §3 4.2 "BLOCK_STATUS without
 * a selected meta context": NBD_EINVAL; the connection stays usable.
 * Also without structured replies at all (raw). */
#include "nbdtest.h"

static int extent_cb(void *data, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
    (void)data; (void)ctx; (void)off; (void)e; (void)n; (void)err;
    return 0;
}

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, false);
    T_NBD(nbd_set_strict_mode(h, 0));
    T_EXPECT_ERRNO(h, nbd_block_status(h, 4096, 0, (nbd_extent_callback){.callback = extent_cb}, 0),
                   EINVAL);
    char buf[4096];
    T_NBD(nbd_pread(h, buf, sizeof(buf), 0, 0));
    nbd_close(h);
    int fd = t_connect();
    t_raw_go(fd, t_export, false, false, NULL);
    uint64_t ck;
    t_req(fd, T_CMD_BLOCK_STATUS, 0, 5, 0, 4096);
    T_CHECK(t_simple(fd, &ck) == 22 && ck == 5);
    t_req(fd, T_CMD_FLUSH, 0, 6, 0, 0);
    T_CHECK(t_simple(fd, &ck) == 0 && ck == 6);
    close(fd);
    return 0;
}
