/* fuzz_segment.c: libFuzzer target for the blob store's bytes on disk
 * (CONTRACT.md row 10, §3 "bytes on disk"): the record parser, the
 * recovery scan, index files and bounded zstd decompression.
 *
 * The first input byte picks a mode; the rest is:
 *   0: a segment file (store 0x5151..., partition 7), scanned as recovery
 *      does, verifying every chunk; every record found must lie inside
 *      the input, in order, and re-encode to the very same header and
 *      table (round trip), and compressed records are decompressed
 *      through the bounded decoder;
 *   1: one record header and table;
 *   2: an index file: header, entries checksum, every entry, round trip;
 *   3: a zstd frame preceded by a u32 claimed raw length (<= 1 MiB):
 *      decompression must refuse frames that lie about their size.
 * Property: no crash, hang, leak or undefined behaviour; the round trips
 * hold (abort otherwise).  Seeds come from tests/unit/test_segment.c
 * (tests/fuzz/gen-corpus). */
#include "base/bd.h"
#include "base/bytes.h"
#include "store/blob/blobstore_int.h"
#include "store/blob/segment.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define STORE 0x5151515151515151ull
#define PART 7
#define MAX_DATA (1u << 20)

static void *dctx;

static void fuzz_scan(const uint8_t *data, size_t size)
{
    struct seg_hdr sh;
    if (size >= SEG_HDR_LEN) (void)seg_hdr_decode(data, &sh);
    struct seg_mem m = {data, size};
    struct seg_src src = {.pread = seg_mem_pread, .arg = &m, .size = size};
    struct seg_scan s = {.src = &src, .store_id = STORE, .partition = PART,
                         .max_data = MAX_DATA, .verify_data = true, .start = SEG_HDR_LEN};
    if (seg_scan_init(&s) < 0) return;
    struct seg_scan_rec r;
    uint64_t last_end = SEG_HDR_LEN;
    uint8_t *meta = malloc(BLOBSTORE_META_MAX);
    while (seg_scan_next(&s, &r) == 1) {
        if (r.off < last_end || r.off + r.len > size || r.len != seg_rec_total_len(r.h.stored_len))
            abort();
        last_end = r.off + r.len;
        size_t ml = seg_rec_meta_len(r.h.stored_len);
        const uint8_t *stored = data + r.off + ml;
        if (r.data_ok) {
            seg_rec_encode(meta, &r.h, stored);
            if (memcmp(meta, r.meta, ml) != 0) abort();
            if ((r.h.flags & SEG_REC_F_COMPRESSED) && dctx) {
                uint8_t *raw = malloc(r.h.raw_len + 1);
                if (blobstore_read_decompress(dctx, raw, r.h.raw_len, stored, r.h.stored_len) == 0)
                    (void)util_xxh3(raw, r.h.raw_len);
                free(raw);
            }
        }
    }
    if (s.good_end > size) abort();
    free(meta);
    seg_scan_fini(&s);
}

static void fuzz_record(const uint8_t *data, size_t size)
{
    struct seg_rec_hdr h;
    if (size < SEG_REC_HDR_LEN || seg_rec_decode_hdr(data, MAX_DATA, &h) < 0) return;
    size_t ml = seg_rec_meta_len(h.stored_len);
    if (ml > size || seg_rec_check_meta(data, &h) < 0) return;
    size_t avail = BD_MIN(size - ml, (size_t)h.stored_len);
    (void)seg_rec_check_chunks(data, &h, 0, data + ml, avail);
}

static void fuzz_idx(const uint8_t *data, size_t size)
{
    struct seg_idx_hdr h;
    if (size < SEG_IDX_HDR_LEN || seg_idx_decode_hdr(data, size, &h) < 0) return;
    if (seg_idx_check_entries(&h, data + SEG_IDX_HDR_LEN) < 0) return;
    struct seg_idx_entry *e = malloc((size_t)BD_MAX(h.count, 1u) * sizeof(*e));
    bool all = true;
    for (uint32_t i = 0; i < h.count; i++)
        all &= seg_idx_entry_decode(data + SEG_IDX_HDR_LEN + (size_t)i * SEG_IDX_ENTRY_LEN, &h,
                                    MAX_DATA, &e[i]) == 0;
    if (all) {
        uint8_t *out = malloc(size);
        struct seg_idx_hdr h2 = h;
        seg_idx_encode(out, &h2, e, h.count);
        if (memcmp(out, data, size) != 0) abort();
        free(out);
    }
    free(e);
}

static void fuzz_zstd(const uint8_t *data, size_t size)
{
    struct bytes_r in;
    br_init(&in, data, size);
    uint32_t raw_len = br_u32(&in) % (MAX_DATA + 1);
    if (in.err || !dctx) return;
    uint8_t *raw = malloc(raw_len + 1);
    (void)blobstore_read_decompress(dctx, raw, raw_len, in.p, (uint32_t)in.left);
    free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dctx) dctx = ZSTD_createDCtx();
    if (size < 1) return 0;
    uint8_t mode = data[0] % 4;
    /* Copy so ASan catches any read past the input. */
    uint8_t *copy = malloc(size);
    memcpy(copy, data + 1, size - 1);
    switch (mode) {
    case 0: fuzz_scan(copy, size - 1); break;
    case 1: fuzz_record(copy, size - 1); break;
    case 2: fuzz_idx(copy, size - 1); break;
    default: fuzz_zstd(copy, size - 1); break;
    }
    free(copy);
    return 0;
}
