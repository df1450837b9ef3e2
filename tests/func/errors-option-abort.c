/* errors-option-abort.c: CONTRACT.md §3 4.1 "NBD_OPT_ABORT": reply ACK and
 * close; tolerate the client closing first. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    /* libnbd's opt mode: connect, abort */
    struct nbd_handle *h = nbd_create();
    T_NBD(nbd_set_opt_mode(h, true));
    char port[16];
    snprintf(port, sizeof(port), "%d", t_port);
    T_NBD(nbd_connect_tcp(h, t_host, port));
    T_CHECK(nbd_aio_is_negotiating(h));
    T_NBD(nbd_opt_abort(h));
    T_CHECK(nbd_aio_is_closed(h));
    nbd_close(h);
    /* raw: ABORT with (ignored) data is acknowledged, then the server closes */
    int fd = t_connect();
    t_greeting(fd, 1);
    t_opt(fd, T_OPT_ABORT, "junk", 4);
    T_CHECK(t_reply(fd, T_OPT_ABORT, NULL, 0, NULL) == T_REP_ACK);
    if (!t_closed_within(fd, 3000)) T_FAIL("not closed after ABORT");
    close(fd);
    /* raw: ABORT and hang up at once, many times; the server carries on */
    for (int i = 0; i < 50; i++) {
        fd = t_connect();
        t_greeting(fd, 1);
        t_opt(fd, T_OPT_ABORT, NULL, 0);
        close(fd);
    }
    h = t_open(t_export, true, false);
    char buf[512 * 8];
    T_NBD(nbd_pread(h, buf, sizeof(buf), 0, 0));
    nbd_close(h);
    return 0;
}
