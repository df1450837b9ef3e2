/* errors-past-end.c: CONTRACT.md §3 4.2 "WRITE or WRITE_ZEROES with
 * offset+len past the end; also offset = 2^64 - 512": NBD_ENOSPC, by an
 * overflow-safe check; "READ or TRIM past the end": NBD_EINVAL. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, true);
    T_NBD(nbd_set_strict_mode(h, 0));
    int64_t size = nbd_get_size(h);
    T_CHECK(size > 8192);
    static char buf[8192];
    uint64_t end = (uint64_t)size;
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, end, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 8192, end - 4096, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 512, UINT64_MAX - 511, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, UINT64_MAX - 4095, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 8192, UINT64_MAX - 4095, 0), ENOSPC); /* wraps to 4096 */
    T_EXPECT_ERRNO(h, nbd_zero(h, 4096, end, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_zero(h, 8192, UINT64_MAX - 4095, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 4096, end, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 8192, UINT64_MAX - 4095, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_trim(h, 8192, end - 4096, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_trim(h, 4096, UINT64_MAX - 4095, 0), EINVAL);
    /* the last block itself is fine */
    T_NBD(nbd_pwrite(h, buf, 4096, end - 4096, 0));
    T_NBD(nbd_pread(h, buf, 4096, end - 4096, 0));
    nbd_close(h);
    return 0;
}
