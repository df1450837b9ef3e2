/* errors-option-huge-length.c: CONTRACT.md §3 4.1 "option length huge
 * (0xFFFFFFFF)": NBD_REP_ERR_INVALID (then close) without reading or
 * allocating the payload (qemu CVE-2017-15119).  We send no payload at
 * all: the reply must come anyway, quickly, and the server's memory must
 * not grow. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    static const uint32_t opts[] = {T_OPT_GO, T_OPT_INFO, T_OPT_LIST, 4242};
    long rss0 = t_server_rss_kb();
    for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        int fd = t_connect();
        t_greeting(fd, 1);
        t_opt(fd, opts[i], NULL, 0xffffffffu);
        uint32_t t = t_reply(fd, opts[i], NULL, 0, NULL);
        if (t != T_REP_ERR_INVALID)
            T_FAIL("option %u: reply %#x, expected ERR_INVALID", opts[i], t);
        if (!t_closed_within(fd, 3000)) T_FAIL("option %u: connection not closed", opts[i]);
        close(fd);
    }
    /* 64 KiB + 1: over the cap as well. */
    int fd = t_connect();
    t_greeting(fd, 1);
    t_opt(fd, 4242, NULL, 65537);
    T_CHECK(t_reply(fd, 4242, NULL, 0, NULL) == T_REP_ERR_INVALID);
    close(fd);
    long rss1 = t_server_rss_kb();
    if (rss0 > 0 && rss1 - rss0 > 16 * 1024) T_FAIL("server RSS grew %ld KiB", rss1 - rss0);
    return 0;
}
