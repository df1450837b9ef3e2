/* errors-list-with-data.c: CONTRACT.md §3 4.1 "NBD_OPT_LIST with nonzero
 * length": NBD_REP_ERR_INVALID; the session continues. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_greeting(fd, 1);
    t_opt(fd, T_OPT_LIST, "abcd", 4);
    T_CHECK(t_reply(fd, T_OPT_LIST, NULL, 0, NULL) == T_REP_ERR_INVALID);
    t_opt(fd, T_OPT_LIST, NULL, 0);
    uint32_t t;
    unsigned n = 0;
    while ((t = t_reply(fd, T_OPT_LIST, NULL, 0, NULL)) == T_REP_SERVER) n++;
    T_CHECK(t == T_REP_ACK);
    T_CHECK(n >= 1);
    close(fd);
    return 0;
}
