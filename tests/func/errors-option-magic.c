/* errors-option-magic.c: CONTRACT.md §3 4.1 "option magic != IHAVEOPT":
 * the server closes the connection. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_greeting(fd, 1);
    uint8_t h[16];
    t_put_be64(h, 0x4948415645fe5054ull); /* one byte off */
    t_put_be32(h + 8, T_OPT_LIST);
    t_put_be32(h + 12, 0);
    t_send(fd, h, 16);
    if (!t_closed_within(fd, 3000)) T_FAIL("bad option magic: connection not closed");
    close(fd);
    return 0;
}
