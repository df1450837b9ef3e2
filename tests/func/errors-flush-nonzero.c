/* errors-flush-nonzero.c: CONTRACT.md §3 4.2 "FLUSH with nonzero offset or
 * len": our choice, NBD_EINVAL; the connection stays usable. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_raw_go(fd, t_export, false, false, NULL);
    uint64_t ck;
    t_req(fd, T_CMD_FLUSH, 0, 1, 4096, 0);
    T_CHECK(t_simple(fd, &ck) == 22 && ck == 1);
    t_req(fd, T_CMD_FLUSH, 0, 2, 0, 4096);
    T_CHECK(t_simple(fd, &ck) == 22 && ck == 2);
    t_req(fd, T_CMD_FLUSH, 0, 3, 0, 0);
    T_CHECK(t_simple(fd, &ck) == 0 && ck == 3);
    close(fd);
    return 0;
}
