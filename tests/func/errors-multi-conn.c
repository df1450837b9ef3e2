/* errors-multi-conn.c: CONTRACT.md §3 4.2 "multi-conn: write on A, flush on
 * B, read on C": C sees the write when CAN_MULTI_CONN is advertised (C8). */
#include "nbdtest.h"

int main(void)
{
    t_init();
    struct nbd_handle *a = t_open(t_export, true, false), *b = t_open(t_export, false, false),
                      *c = t_open(t_export, true, true);
    if (nbd_can_multi_conn(a) != 1) T_SKIP("CAN_MULTI_CONN not advertised");
    static char w[65536], r[65536];
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof(w); i++) w[i] = (char)(i * 31 + round);
        uint64_t off = (uint64_t)(round % 8) * 65536 + (4u << 20);
        T_NBD(nbd_pwrite(a, w, sizeof(w), off, 0));
        T_NBD(nbd_flush(b, 0));
        T_NBD(nbd_pread(c, r, sizeof(r), off, 0));
        if (memcmp(w, r, sizeof(w)) != 0) T_FAIL("round %d: C did not see A's write", round);
    }
    nbd_close(a);
    nbd_close(b);
    nbd_close(c);
    return 0;
}
