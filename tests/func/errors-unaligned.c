/* errors-unaligned.c: the agent advertises a minimum block size of 1
 * (preferred 4096): requests of any offset and length work (partial blocks
 * are read-modify-written in the agent), checked against a model here,
 * and unaligned requests past the end keep the errors aligned ones get
 * (CONTRACT.md §3 4.2: ENOSPC for WRITE and WRITE_ZEROES, EINVAL else). */
#include "nbdtest.h"

#include <string.h>

#define SPAN (64 * 1024)

int main(void)
{
    t_init();
    struct nbd_handle *h = t_open(t_export, true, true);
    T_CHECK(nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM) == 1);
    T_CHECK(nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED) == 4096);
    int64_t size = nbd_get_size(h);
    T_CHECK(size >= 2 * SPAN);
    static char model[SPAN], buf[SPAN];
    T_NBD(nbd_pread(h, model, SPAN, 0, 0)); /* whatever the export holds now */
    /* 512-byte and 1-byte aligned writes, some across block edges */
    static const struct { uint64_t off; size_t len; } w[] = {
        {512, 512}, {4096 - 512, 1024}, {100, 1}, {7, 3}, {8191, 2}, {9000, 6000},
        {3 * 4096 + 1, 4096 - 2}, {SPAN - 512, 512},
    };
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        for (size_t k = 0; k < w[i].len; k++) buf[k] = (char)(i * 41 + k + 3);
        memcpy(model + w[i].off, buf, w[i].len);
        T_NBD(nbd_pwrite(h, buf, w[i].len, w[i].off, i % 2 ? LIBNBD_CMD_FLAG_FUA : 0));
    }
    T_NBD(nbd_zero(h, 1000, 2048, 0)); /* inside one block */
    memset(model + 2048, 0, 1000);
    T_NBD(nbd_zero(h, 10000, 20000, 0)); /* head, whole blocks, tail */
    memset(model + 20000, 0, 10000);
    T_NBD(nbd_trim(h, 50, 100, 0)); /* no whole block inside: nothing happens */
    T_NBD(nbd_flush(h, 0));
    static const struct { uint64_t off; size_t len; } r[] = {
        {0, 1}, {100, 1}, {511, 2}, {512, 512}, {4000, 200}, {0, SPAN}, {8190, 5000}, {SPAN - 1, 1},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        memset(buf, 0x5a, r[i].len);
        T_NBD(nbd_pread(h, buf, r[i].len, r[i].off, 0));
        if (memcmp(buf, model + r[i].off, r[i].len) != 0)
            T_FAIL("read %zu at %llu differs from the model", r[i].len,
                   (unsigned long long)r[i].off);
    }
    /* past the end, unaligned: the same errors as ever */
    T_NBD(nbd_set_strict_mode(h, 0));
    T_EXPECT_ERRNO(h, nbd_pread(h, buf, 512, (uint64_t)size - 100, 0), EINVAL);
    T_EXPECT_ERRNO(h, nbd_pwrite(h, buf, 512, (uint64_t)size - 100, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_zero(h, 2, (uint64_t)size - 1, 0), ENOSPC);
    T_EXPECT_ERRNO(h, nbd_trim(h, 2, (uint64_t)size - 1, 0), EINVAL);
    T_NBD(nbd_pread(h, buf, 1, (uint64_t)size - 1, 0));
    nbd_close(h);
    return 0;
}
