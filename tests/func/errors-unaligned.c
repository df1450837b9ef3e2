/* errors-unaligned.c: CONTRACT.md §3 4.2 "offset or len not a multiple of
 * the advertised minimum block size": NBD_EINVAL (we advertise 4096 and do
 * no read-modify-write). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, true);
    int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    if (min <= 1) T_SKIP("the server advertises no minimum block size");
    T_NBD(nbd_set_strict_mode(h, 0));
    static char buf[8192];
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 4096, 512, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 512, 0, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, 1, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4095, 0, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_trim(h, 4096 + 512, 0, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_zero(h, 4096, 2048, 0), EINVAL);
    T_NBD(nbd_pread(h, buf, 8192, 0, 0));
    nbd_close(h);
    return 0;
}
