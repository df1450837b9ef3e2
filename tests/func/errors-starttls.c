/* errors-starttls.c: CONTRACT.md §3 4.1 "NBD_OPT_STARTTLS with a payload,
 * twice, or when TLS is not configured": ERR_INVALID with a payload,
 * ERR_POLICY (NOTLS mode, every time) without; a libnbd client that only
 * prefers TLS falls back to plaintext, one that requires it fails. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_greeting(fd, 1);
    t_opt(fd, T_OPT_STARTTLS, "x", 1);
    T_CHECK(t_reply(fd, T_OPT_STARTTLS, NULL, 0, NULL) == T_REP_ERR_INVALID);
    for (int i = 0; i < 2; i++) {
        t_opt(fd, T_OPT_STARTTLS, NULL, 0);
        uint32_t t = t_reply(fd, T_OPT_STARTTLS, NULL, 0, NULL);
        if (t != T_REP_ERR_POLICY && t != T_REP_ERR_UNSUP) T_FAIL("STARTTLS: reply %#x", t);
    }
    close(fd);

    char port[16];
    snprintf(port, sizeof(port), "%d", t_port);
    struct nbd_handle *h = nbd_create();
    T_NBD(nbd_set_export_name(h, t_export));
    T_NBD(nbd_set_tls(h, LIBNBD_TLS_ALLOW));
    T_NBD(nbd_connect_tcp(h, t_host, port));
    T_CHECK(nbd_get_tls_negotiated(h) == 0);
    nbd_close(h);
    h = nbd_create();
    T_NBD(nbd_set_export_name(h, t_export));
    if (nbd_set_tls(h, LIBNBD_TLS_REQUIRE) == 0) /* fails only if libnbd lacks TLS */
        T_CHECK(nbd_connect_tcp(h, t_host, port) == -1);
    nbd_close(h);
    return 0;
}
