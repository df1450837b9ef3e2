/* errors-read-error.c: CONTRACT.md §3 4.2 "READ with structured replies
 * and an error mid-read": an error chunk, never a simple reply; with
 * simple replies the error is in the reply header and no payload follows
 * (our READ data is sent only after the volume returned all of it, so an
 * error can never follow a successful header).  Needs an export whose
 * first 64 KiB fail reads (NBD_TEST_ERR_EXPORT, a test server knob). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    if (!t_err_export) T_SKIP("NBD_TEST_ERR_EXPORT not set");
    static char buf[131072];
    for (int structured = 0; structured <= 1; structured++) {
        struct nbd_handle *h = t_open(t_err_export, structured, false);
        T_CHECK(nbd_get_structured_replies_negotiated(h) == structured);
        T_EXPECT_ERRNO(h, nbd_pread(h, buf, 4096, 0, 0), EIO);
        T_EXPECT_ERRNO(h, nbd_pread(h, buf, 131072, 0, 0), EIO); /* spans the bad range */
        T_NBD(nbd_pread(h, buf, 4096, 1 << 20, 0));
        nbd_close(h);
    }
    /* raw, structured: the reply to a failed READ is one ERROR chunk */
    int fd = t_connect();
    t_raw_go(fd, t_err_export, true, false, NULL);
    t_req(fd, T_CMD_READ, 0, 9, 0, 4096);
    uint8_t c[20], p[1024];
    t_recv(fd, c, 20);
    T_CHECK(t_be32(c) == T_CHUNK_MAGIC);
    T_CHECK((c[6] << 8 | c[7]) == 0x8001 && (c[5] & 1) && t_be64(c + 8) == 9);
    uint32_t len = t_be32(c + 16);
    T_CHECK(len >= 6 && len <= sizeof(p));
    t_recv(fd, p, len);
    T_CHECK(t_be32(p) == 5);
    close(fd);
    return 0;
}
