/* errors-oversize-write.c: CONTRACT.md §3 4.2 "WRITE len > advertised max
 * payload": up to 32 MiB the payload is read and dropped and the reply is
 * NBD_EINVAL, no disconnect ("SHOULD NOT be considered a denial of
 * service"); larger (0xFFFFFFFF) may close, but must not allocate
 * (CVE-2005-3534, CVE-2011-0530). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, false);
    int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    nbd_close(h);
    int64_t size = 0;
    int fd = t_connect();
    t_raw_go(fd, t_export, false, false, (uint64_t *)&size);
    if (max > 0 && max < (32 << 20) && size > 2 * max) {
        uint32_t len = (uint32_t)(max * 2);
        char *buf = calloc(1, len);
        t_req(fd, T_CMD_WRITE, 0, 1, 0, len);
        t_send(fd, buf, len);
        uint64_t ck;
        T_CHECK(t_simple(fd, &ck) == 22 && ck == 1);
        t_req(fd, T_CMD_FLUSH, 0, 2, 0, 0); /* in sync: the payload was dropped */
        T_CHECK(t_simple(fd, &ck) == 0 && ck == 2);
        free(buf);
    } else {
        fprintf(stderr, "max payload %lld: no WRITE between it and 32 MiB to try\n",
                (long long)max);
    }
    long rss0 = t_server_rss_kb();
    t_req(fd, T_CMD_WRITE, 0, 3, 0, 0xffffffffu);
    t_send(fd, "partial", 7);
    if (!t_closed_within(fd, 3000)) T_FAIL("a 4 GiB WRITE did not close the connection");
    long rss1 = t_server_rss_kb();
    if (rss0 > 0 && rss1 - rss0 > 16 * 1024) T_FAIL("server RSS grew by %ld KiB", rss1 - rss0);
    close(fd);
    return 0;
}
