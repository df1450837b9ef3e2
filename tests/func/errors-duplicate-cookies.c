/* errors-duplicate-cookies.c: CONTRACT.md §3 4.2 "duplicate cookies in
 * flight": every reply echoes the cookie; no crash. */
#include "nbdtest.h"

int main(void)
{
    t_init();
    int fd = t_connect();
    t_raw_go(fd, t_export, false, false, NULL);
    static uint8_t data[4096];
    for (int i = 0; i < 64; i++) {
        t_req(fd, i % 2 ? T_CMD_WRITE : T_CMD_FLUSH, 0, 0xc0ffee, i % 2 ? 4096u * (uint64_t)i : 0,
              i % 2 ? 4096 : 0);
        if (i % 2) t_send(fd, data, sizeof(data));
    }
    for (int i = 0; i < 64; i++) {
        uint64_t ck = 0;
        T_CHECK(t_simple(fd, &ck) == 0);
        T_CHECK(ck == 0xc0ffee);
    }
    t_req(fd, T_CMD_FLUSH, 0, 1, 0, 0);
    T_CHECK(t_simple(fd, NULL) == 0);
    close(fd);
    return 0;
}
