/* errors-export-name-missing.c: CONTRACT.md §3 4.1 "NBD_OPT_EXPORT_NAME for
 * a missing volume, or a client closing mid-handshake": close that
 * connection only; the server keeps serving others (nbd-server
 * CVE-2013-7441). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, false);
    for (int i = 0; i < 5; i++) {
        int fd = t_connect();
        t_greeting(fd, 1);
        t_opt(fd, T_OPT_EXPORT_NAME, "no-such-volume", 14);
        if (!t_closed_within(fd, 3000)) T_FAIL("EXPORT_NAME of a missing volume: not closed");
        close(fd);
        /* a client that goes away at every stage of the handshake */
        fd = t_connect();
        if (i > 0) t_greeting(fd, 1);
        if (i > 1) t_opt(fd, T_OPT_INFO, "\0\0\0\4vol0\0\0", i > 2 ? 10 : 5);
        close(fd);
    }
    char buf[4096];
    T_NBD(nbd_pread(h, buf, sizeof(buf), 0, 0)); /* the first client never noticed */
    struct nbd_handle *h2 = t_open(t_export, false, false);
    T_NBD(nbd_pread(h2, buf, sizeof(buf), 0, 0));
    nbd_close(h2);
    nbd_close(h);
    return 0;
}
