/* errors-long-export-name.c: CONTRACT.md §3 4.1 "export name > 256 bytes,
 * or > 4096 bytes": up to 4096 NBD_REP_ERR_UNKNOWN (no such volume), over
 * 4096 NBD_REP_ERR_INVALID; the error text quotes at most ~80 bytes of
 * the name (qemu CVE-2017-15118, CVE-2020-10761). */
#include "nbdtest.h"

static void try_name(uint32_t len, uint32_t expect)
{
    static uint8_t b[8192];
    static char name[5000];
    memset(name, 'z', sizeof(name));
    int fd = t_connect();
    t_greeting(fd, 1);
    for (uint32_t opt = T_OPT_INFO; opt <= T_OPT_GO; opt++) {
        uint32_t n = t_go_payload(b, name, len);
        t_opt(fd, opt, b, n);
        uint32_t rlen = 0;
        uint32_t t = t_reply(fd, opt, b, sizeof(b), &rlen);
        if (t != expect) T_FAIL("name of %u bytes: reply %#x, expected %#x", len, t, expect);
        unsigned zs = 0;
        for (uint32_t i = 0; i < rlen && i < sizeof(b); i++) zs += b[i] == 'z';
        if (zs > 100) T_FAIL("name of %u bytes: error text quotes %u bytes of it", len, zs);
    }
    /* in sync afterwards */
    t_opt(fd, T_OPT_ABORT, NULL, 0);
    T_CHECK(t_reply(fd, T_OPT_ABORT, NULL, 0, NULL) == T_REP_ACK);
    close(fd);
}

int main(void)
{
    t_init();
    try_name(257, T_REP_ERR_UNKNOWN);
    try_name(1024, T_REP_ERR_UNKNOWN);
    try_name(4096, T_REP_ERR_UNKNOWN);
    try_name(4097, T_REP_ERR_INVALID);
    try_name(4500, T_REP_ERR_INVALID);
    /* libnbd agrees: a missing export of 4096 bytes fails cleanly */
    struct nbd_handle *h = nbd_create();
    static char name[4097];
    memset(name, 'y', 4096);
    T_NBD(nbd_set_export_name(h, name));
    char port[16];
    snprintf(port, sizeof(port), "%d", t_port);
    T_CHECK(nbd_connect_tcp(h, t_host, port) == -1);
    nbd_close(h);
    return 0;
}
