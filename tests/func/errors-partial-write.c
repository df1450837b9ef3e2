/* errors-partial-write.c: CONTRACT.md §3 4.2 "WRITE header with fewer
 * payload bytes than len, then close": the partial write is dropped, not
 * acknowledged, and none of its bytes reach the volume. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, false);
    static char before[65536], after[65536], junk[40000];
    const uint64_t off = 1u << 20;
    memset(before, 0x11, sizeof(before));
    T_NBD(nbd_pwrite(h, before, sizeof(before), off, 0));
    T_NBD(nbd_flush(h, 0));
    for (int i = 0; i < 3; i++) {
        int fd = t_connect();
        t_raw_go(fd, t_export, i == 1, false, NULL);
        memset(junk, 0xee, sizeof(junk));
        t_req(fd, T_CMD_WRITE, 0, 1, off, sizeof(before));
        t_send(fd, junk, i == 2 ? 0 : sizeof(junk));
        usleep(20000);
        close(fd);
    }
    usleep(50000);
    T_NBD(nbd_pread(h, after, sizeof(after), off, 0));
    if (memcmp(before, after, sizeof(after)) != 0) T_FAIL("a partial WRITE changed the volume");
    nbd_close(h);
    return 0;
}
