/* errors-read-only.c: CONTRACT.md §3 4.2 "any write on a read-only
 * export": NBD_EPERM; reads still work. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    if (!t_ro_export) T_SKIP("NBD_TEST_RO_EXPORT not set");
    struct nbd_handle *h = t_open(t_ro_export, true, false);
    T_CHECK(nbd_is_read_only(h) == 1);
    T_NBD(nbd_set_strict_mode(h, 0));
    static char buf[8192];
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 4096, 0, 0), EPERM);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 8192, 4096, LIBNBD_CMD_FLAG_FUA), EPERM);
    T_EXPECT_ERRNO(h, nbd_trim(h, 4096, 0, 0), EPERM);
    T_EXPECT_ERRNO(h, nbd_zero(h, 4096, 0, 0), EPERM);
    T_NBD(nbd_pread(h, buf, 4096, 0, 0));
    T_NBD(nbd_flush(h, 0));
    nbd_close(h);
    return 0;
}
