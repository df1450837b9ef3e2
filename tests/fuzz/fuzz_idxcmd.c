/* fuzz_idxcmd.c: libFuzzer target for the index command codec (CONTRACT.md
 * row 10, §4.3).
 *
 * Byte 0 picks the mode: even, the rest is a command; odd, a result.
 * Property: no crash, leak or undefined behaviour, and anything that
 * decodes re-encodes to the same bytes (idxcmd_roundtrip says -EILSEQ
 * otherwise, and we abort).  Every write of a decoded WRITE_BATCH is read
 * back through the accessor. */
#include "store/index/idxcmd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] & 1;
    data++;
    size--;
    /* Copy so ASan catches any read past the input. */
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    if (mode == 0) {
        if (idxcmd_roundtrip(copy, size) == -EILSEQ) abort();
        struct idxcmd c;
        if (idxcmd_decode(copy, size, &c) == 0) {
            if (c.type == IDXCMD_WRITE_BATCH)
                for (uint32_t i = 0; i < c.u.write_batch.n; i++) {
                    struct idxcmd_write w;
                    idxcmd_write_get(&c, i, &w);
                    if (w.len == 0 || w.off + w.len < w.off) abort();
                }
            if (c.type == IDXCMD_GC_DONE)
                for (uint32_t i = 0; i < c.u.gc_done.n; i++)
                    if (idxcmd_gc_id(&c, i) == 0) abort();
        }
    } else {
        if (idxcmd_result_roundtrip(copy, size) == -EILSEQ) abort();
    }
    free(copy);
    return 0;
}
