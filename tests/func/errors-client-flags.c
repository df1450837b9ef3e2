/* errors-client-flags.c: CONTRACT.md §3 4.1 "client flags with unknown
 * bits": the server MUST drop the connection (proto.md "Client flags").
 * Also: a client without fixed newstyle, or without NO_ZEROES, still gets
 * in (EXPORT_NAME with the 124 zero bytes). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    static const uint32_t bad[] = {1u << 2, 1u << 31, 0xffffffffu, 3u | 1u << 5};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = t_connect();
        t_greeting(fd, bad[i]);
        if (!t_closed_within(fd, 3000)) T_FAIL("client flags %#x: connection not closed", bad[i]);
        close(fd);
    }
    /* libnbd with no handshake flags: non-fixed newstyle, EXPORT_NAME. */
    for (uint32_t hf = 0; hf <= LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE; hf++) {
        struct nbd_handle *h = nbd_create();
        T_NBD(nbd_set_handshake_flags(h, hf));
        T_NBD(nbd_set_export_name(h, t_export));
        char port[16];
        snprintf(port, sizeof(port), "%d", t_port);
        T_NBD(nbd_connect_tcp(h, t_host, port));
        char buf[4096];
        T_NBD(nbd_pread(h, buf, sizeof(buf), 0, 0));
        T_NBD(nbd_shutdown(h, 0));
        nbd_close(h);
    }
    return 0;
}
