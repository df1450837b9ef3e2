/* errors-request-magic.c: CONTRACT.md §3 4.2 "request magic wrong": close
 * (proto.md "Request message").  The historic magic 0x12560953 and the
 * extended-header magic (not negotiated) are wrong too. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    static const uint32_t magics[] = {0x25609514u, 0x12560953u, 0x21e41c71u, 0};
    for (unsigned i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
        int fd = t_connect();
        t_raw_go(fd, t_export, i % 2, false, NULL);
        t_req(fd, T_CMD_FLUSH, 0, 1, 0, 0); /* one good request first */
        T_CHECK(t_simple(fd, NULL) == 0);
        uint8_t h[28] = {0};
        t_put_be32(h, magics[i]);
        t_put_be16(h + 6, T_CMD_READ);
        t_put_be32(h + 24, 4096);
        t_send(fd, h, 28);
        if (!t_closed_within(fd, 3000)) T_FAIL("magic %#x: connection not closed", magics[i]);
        close(fd);
    }
    return 0;
}
