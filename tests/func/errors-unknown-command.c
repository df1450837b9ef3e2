/* errors-unknown-command.c: CONTRACT.md §3 4.2 "unknown command type":
 * NBD_EINVAL, and the connection stays usable.  (CACHE, 5, is advertised
 * now: errors-invalid-flags.c and nbd_conformance.py cover it.) */
#include "nbdtest.h"

int main(void)
{
    t_init();
    for (int structured = 0; structured <= 1; structured++) {
        int fd = t_connect();
        t_raw_go(fd, t_export, structured, false, NULL);
        static const uint16_t cmds[] = {8, 9, 100, 0xffff};
        for (unsigned i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
            t_req(fd, cmds[i], 0, 1000 + i, 0, 4096);
            uint8_t h[20];
            t_recv(fd, h, 16);
            uint32_t err;
            if (t_be32(h) == T_SIMPLE_MAGIC) {
                err = t_be32(h + 4);
                T_CHECK(t_be64(h + 8) == 1000 + i);
            } else {
                T_CHECK(structured && t_be32(h) == T_CHUNK_MAGIC);
                t_recv(fd, h + 16, 4);
                T_CHECK(t_be64(h + 8) == 1000 + i);
                uint32_t len = t_be32(h + 16);
                uint8_t p[1024];
                T_CHECK(len >= 6 && len <= sizeof(p));
                t_recv(fd, p, len);
                err = t_be32(p);
            }
            if (err != 22) T_FAIL("command %u: error %u, expected EINVAL (22)", cmds[i], err);
        }
        t_req(fd, T_CMD_FLUSH, 0, 7, 0, 0);
        T_CHECK(t_simple(fd, NULL) == 0);
        close(fd);
    }
    return 0;
}
