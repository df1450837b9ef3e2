/* errors-unknown-option.c: CONTRACT.md §3 4.1 "unknown option number":
 * NBD_REP_ERR_UNSUP, its payload consumed, the next option accepted
 * (nbd-server 381eca1, 2ab3a2d). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_greeting(fd, 1);
    static const uint32_t opts[] = {0, 4, 11, 12, 0x7fffffffu, 0xffffffffu};
    uint8_t payload[1000];
    /* a payload that looks like an option header: if it were not
     * consumed, it would be taken for one */
    for (unsigned i = 0; i + 16 <= sizeof(payload); i += 16) {
        t_put_be64(payload + i, T_IHAVEOPT);
        t_put_be32(payload + i + 8, T_OPT_ABORT);
        t_put_be32(payload + i + 12, 0);
    }
    for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        t_opt(fd, opts[i], payload, i * 100);
        uint32_t t = t_reply(fd, opts[i], NULL, 0, NULL);
        if (t != T_REP_ERR_UNSUP) T_FAIL("option %#x: reply %#x, expected ERR_UNSUP", opts[i], t);
    }
    t_opt(fd, T_OPT_STRUCTURED_REPLY, NULL, 0);
    T_CHECK(t_reply(fd, T_OPT_STRUCTURED_REPLY, NULL, 0, NULL) == T_REP_ACK);
    close(fd);
    return 0;
}
