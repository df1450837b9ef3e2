/* errors-go-name-length.c: CONTRACT.md §3 4.1 "NBD_OPT_GO/INFO name length
 * > option length - 6, or 0xFFFFFFFF": NBD_REP_ERR_INVALID and the session
 * stays in sync (nbd-server CVE-2022-26495): the next option works. */
#include "nbdtest.h"

static void bad_go(int fd, uint32_t opt, uint32_t name_len, uint32_t optlen)
{
    uint8_t b[64] = {0};
    t_put_be32(b, name_len);
    memcpy(b + 4, "vol0vol0vol0", 12);
    t_opt(fd, opt, b, optlen);
    uint32_t t = t_reply(fd, opt, NULL, 0, NULL);
    if (t != T_REP_ERR_INVALID)
        T_FAIL("opt %u name_len %#x optlen %u: reply %#x, expected ERR_INVALID", opt, name_len,
               optlen, t);
}

int main(void)
{
    t_init();
    int fd = t_connect();
    t_greeting(fd, 1);
    bad_go(fd, T_OPT_GO, 0xffffffffu, 10);
    bad_go(fd, T_OPT_INFO, 0xffffffffu, 10);
    bad_go(fd, T_OPT_GO, 5, 10);      /* needs 4 + 5 + 2 = 11 */
    bad_go(fd, T_OPT_GO, 0xfffffffau, 6);
    bad_go(fd, T_OPT_GO, 0, 5);       /* shorter than 6 */
    bad_go(fd, T_OPT_GO, 0, 9);       /* an odd byte where info requests go */
    /* still in sync: LIST, then GO, then I/O */
    t_opt(fd, T_OPT_LIST, NULL, 0);
    uint32_t t;
    unsigned n = 0;
    while ((t = t_reply(fd, T_OPT_LIST, NULL, 0, NULL)) == T_REP_SERVER) n++;
    T_CHECK(t == T_REP_ACK && n >= 1);
    close(fd);
    fd = t_connect();
    t_raw_go(fd, t_export, false, false, NULL);
    t_req(fd, T_CMD_FLUSH, 0, 1, 0, 0);
    T_CHECK(t_simple(fd, NULL) == 0);
    close(fd);
    return 0;
}
