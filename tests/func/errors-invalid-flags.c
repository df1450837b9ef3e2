/* errors-invalid-flags.c: CONTRACT.md §3 4.2 "unknown flag, or a flag not
 * valid for the command (DF on WRITE, FAST_ZERO when not advertised, ...)":
 * NBD_EINVAL and the connection stays usable. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, true);
    T_NBD(nbd_set_strict_mode(h, 0));
    char buf[4096] = {0};
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 4096, 0, 1u << 9), EINVAL);               /* unknown */
    if (nbd_can_df(h) > 0) T_NBD(nbd_pread(h, buf, 4096, 0, LIBNBD_CMD_FLAG_DF));
    else T_EXPECT_ERRNO(h, nbd_pread(h, buf, 4096, 0, LIBNBD_CMD_FLAG_DF), EINVAL);
    if (nbd_can_cache(h) > 0) {
        T_NBD(nbd_cache(h, 4096, 0, 0));
        T_EXPECT_ERRNO(h, nbd_cache(h, 4096, 0, 1u << 9), EINVAL); /* unknown */
    }
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 4096, 0, LIBNBD_CMD_FLAG_REQ_ONE), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, 0, LIBNBD_CMD_FLAG_DF), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, 0, LIBNBD_CMD_FLAG_NO_HOLE), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, 0, LIBNBD_CMD_FLAG_FAST_ZERO), EINVAL);
    T_EXPECT_ERRNO(h, nbd_trim(h, 4096, 0, LIBNBD_CMD_FLAG_NO_HOLE), EINVAL);
    T_EXPECT_ERRNO(h, nbd_flush(h, LIBNBD_CMD_FLAG_REQ_ONE), EINVAL);
    T_EXPECT_ERRNO(h, nbd_zero(h, 4096, 0, 1u << 12), EINVAL);
    if (!nbd_can_fast_zero(h))
        T_EXPECT_ERRNO(h, nbd_zero(h, 4096, 0, LIBNBD_CMD_FLAG_FAST_ZERO), EINVAL);
    if (!nbd_can_fua(h))
        T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, 0, LIBNBD_CMD_FLAG_FUA), EINVAL);
    /* the valid ones still work */
    T_NBD(nbd_pwrite(h, buf, 4096, 0, nbd_can_fua(h) ? LIBNBD_CMD_FLAG_FUA : 0));
    T_NBD(nbd_zero(h, 4096, 0, LIBNBD_CMD_FLAG_NO_HOLE));
    T_NBD(nbd_pread(h, buf, 4096, 0, 0));
    nbd_close(h);
    return 0;
}
