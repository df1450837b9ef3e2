/* errors-no-attach-before-go.c: CONTRACT.md §3 4.1 "any option before GO
 * succeeds": no volume opened, no attach, until NBD_OPT_GO succeeds
 * (nbdkit CVE-2019-14850, CVE-2019-14851).  Needs the server's status
 * endpoint (the test server counts opens); skips without one. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    if (!t_admin) T_SKIP("NBD_TEST_ADMIN not set");
    double opens0 = t_status_num("opens");
    if (opens0 < 0) T_SKIP("the status endpoint does not count opens");
    int fd = t_connect();
    t_greeting(fd, 1);
    uint8_t b[256];
    uint32_t n = t_go_payload(b, t_export, (uint32_t)strlen(t_export));
    t_opt(fd, T_OPT_INFO, b, n);
    uint32_t t;
    while ((t = t_reply(fd, T_OPT_INFO, NULL, 0, NULL)) == T_REP_INFO) {}
    T_CHECK(t == T_REP_ACK);
    t_opt(fd, T_OPT_LIST, NULL, 0);
    while ((t = t_reply(fd, T_OPT_LIST, NULL, 0, NULL)) == T_REP_SERVER) {}
    T_CHECK(t == T_REP_ACK);
    t_opt(fd, T_OPT_STRUCTURED_REPLY, NULL, 0);
    T_CHECK(t_reply(fd, T_OPT_STRUCTURED_REPLY, NULL, 0, NULL) == T_REP_ACK);
    uint32_t nl = (uint32_t)strlen(t_export);
    t_put_be32(b, nl);
    memcpy(b + 4, t_export, nl);
    t_put_be32(b + 4 + nl, 0);
    t_opt(fd, T_OPT_LIST_META, b, 8 + nl);
    while ((t = t_reply(fd, T_OPT_LIST_META, NULL, 0, NULL)) == T_REP_META) {}
    T_CHECK(t == T_REP_ACK);
    n = t_go_payload(b, "missing", 7);
    t_opt(fd, T_OPT_GO, b, n);
    T_CHECK(t_reply(fd, T_OPT_GO, NULL, 0, NULL) == T_REP_ERR_UNKNOWN);
    if (t_status_num("opens") != opens0) T_FAIL("a volume was opened before GO succeeded");
    n = t_go_payload(b, t_export, (uint32_t)strlen(t_export));
    t_opt(fd, T_OPT_GO, b, n);
    while ((t = t_reply(fd, T_OPT_GO, NULL, 0, NULL)) == T_REP_INFO) {}
    T_CHECK(t == T_REP_ACK);
    t_req(fd, T_CMD_FLUSH, 0, 1, 0, 0);
    T_CHECK(t_simple(fd, NULL) == 0);
    if (t_status_num("opens") != opens0 + 1) T_FAIL("GO did not open exactly one volume");
    close(fd);
    return 0;
}
