/* errors-set-meta-before-structured.c: CONTRACT.md §3 4.1
 * "SET_META_CONTEXT before STRUCTURED_REPLY": NBD_REP_ERR_INVALID; after
 * STRUCTURED_REPLY the same option selects base:allocation. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_greeting(fd, 1);
    uint8_t b[128];
    uint32_t nl = (uint32_t)strlen(t_export);
    t_put_be32(b, nl);
    memcpy(b + 4, t_export, nl);
    t_put_be32(b + 4 + nl, 1);
    t_put_be32(b + 8 + nl, 15);
    memcpy(b + 12 + nl, "base:allocation", 15);
    t_opt(fd, T_OPT_SET_META, b, 27 + nl);
    T_CHECK(t_reply(fd, T_OPT_SET_META, NULL, 0, NULL) == T_REP_ERR_INVALID);
    t_opt(fd, T_OPT_STRUCTURED_REPLY, NULL, 0);
    T_CHECK(t_reply(fd, T_OPT_STRUCTURED_REPLY, NULL, 0, NULL) == T_REP_ACK);
    t_opt(fd, T_OPT_SET_META, b, 27 + nl);
    uint8_t r[64];
    uint32_t len;
    T_CHECK(t_reply(fd, T_OPT_SET_META, r, sizeof(r), &len) == T_REP_META);
    T_CHECK(len == 4 + 15 && memcmp(r + 4, "base:allocation", 15) == 0);
    T_CHECK(t_reply(fd, T_OPT_SET_META, NULL, 0, NULL) == T_REP_ACK);
    close(fd);
    return 0;
}
