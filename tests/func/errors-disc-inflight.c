/* errors-disc-inflight.c: CONTRACT.md §3 4.2 "commands after NBD_CMD_DISC;
 * DISC with in-flight writes": the in-flight requests finish and are
 * answered, then the server closes; nothing after DISC is executed. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_raw_go(fd, t_export, false, false, NULL);
    static uint8_t data[65536];
    const uint64_t base = 2u << 20;
    for (int i = 0; i < 16; i++) {
        memset(data, 0x30 + i, sizeof(data));
        t_req(fd, T_CMD_WRITE, 0, (uint64_t)i, base + 65536u * (uint64_t)i, sizeof(data));
        t_send(fd, data, sizeof(data));
    }
    t_req(fd, T_CMD_DISC, 0, 100, 0, 0);
    memset(data, 0xff, sizeof(data));
    t_req(fd, T_CMD_WRITE, 0, 101, base, sizeof(data)); /* after DISC: must not run */
    t_send(fd, data, sizeof(data));
    unsigned seen = 0;
    for (int i = 0; i < 16; i++) {
        uint64_t ck;
        T_CHECK(t_simple(fd, &ck) == 0);
        T_CHECK(ck < 16);
        seen |= 1u << ck;
    }
    T_CHECK(seen == 0xffff);
    if (!t_closed_within(fd, 3000)) T_FAIL("not closed after DISC");
    close(fd);
    struct nbd_handle *h = t_open(t_export, true, false);
    for (int i = 0; i < 16; i++) {
        T_NBD(nbd_pread(h, data, sizeof(data), base + 65536u * (uint64_t)i, 0));
        for (size_t k = 0; k < sizeof(data); k++)
            if (data[k] != 0x30 + i) T_FAIL("write %d did not land (or the post-DISC one did)", i);
    }
    nbd_close(h);
    return 0;
}
