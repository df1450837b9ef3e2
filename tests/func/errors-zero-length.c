/* errors-zero-length.c: CONTRACT.md §3 4.2 "len = 0 for READ, WRITE, TRIM,
 * WRITE_ZEROES, BLOCK_STATUS": success or NBD_EINVAL, never a disconnect
 * (proto.md "SHOULD NOT disconnect"). */
#include "nbdtest.h"

static int extent_cb(void *data, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
    (void)data; (void)ctx; (void)off; (void)e; (void)n; (void)err;
    return 0;
}

#define ZERO_OK(h, call)                                                                   \
    do {                                                                                   \
        if ((call) == -1 && nbd_get_errno() != EINVAL)                                     \
            T_FAIL("%s: %s (expected success or EINVAL)", #call, nbd_get_error());         \
        if (!nbd_aio_is_ready(h)) T_FAIL("%s: disconnected", #call);                       \
    } while (0)

int main(void)
{
    t_init();
    for (int structured = 0; structured <= 1; structured++) {
        struct nbd_handle *h = t_open(t_export, structured, structured);
        T_NBD(nbd_set_strict_mode(h, 0));
        char buf[1];
        ZERO_OK(h, nbd_pread(h, buf, 0, 0, 0));
        ZERO_OK(h, nbd_pread(h, buf, 0, 4096, 0));
        ZERO_OK(h, nbd_pwrite(h, buf, 0, 0, 0));
        ZERO_OK(h, nbd_trim(h, 0, 0, 0));
        ZERO_OK(h, nbd_zero(h, 0, 0, 0));
        if (structured)
            ZERO_OK(h, nbd_block_status(h, 0, 0, (nbd_extent_callback){.callback = extent_cb}, 0));
        char b4[4096];
        T_NBD(nbd_pread(h, b4, sizeof(b4), 0, 0));
        nbd_close(h);
    }
    return 0;
}
