/* fuzz_wire.c: libFuzzer target for the wire decoder (CONTRACT.md row 10).
 *
 * The first input byte picks a mode:
 *   0: a raw byte stream, cut into frames exactly as conn.c does: header
 *      checks (magic, version, checksum, bounds) then the fields checksum;
 *      frames that pass go on to the body decoders;
 *   1: a body with a chosen type: bytes 1-2 type, 3 response flag, 4-5
 *      payload length, the rest the body.  This skips the checksums, which
 *      a fuzzer cannot forge, to reach every body decoder.
 * Property: no crash, no leak, no undefined behaviour, and any body that
 * decodes re-encodes to the same bytes (wire_roundtrip says -EILSEQ
 * otherwise, and we abort). */
#include "net/wire.h"
#include "base/bytes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void body(uint16_t type, bool response, const uint8_t *b, size_t len, size_t plen)
{
    if (wire_roundtrip(type, response, b, len, plen) == -EILSEQ) abort();
    struct wire_error e;
    (void)wire_decode_error(b, len, plen, &e);
    /* Walk the counted arrays of list-like responses through their accessors. */
    if (type == WIRE_VOL_LIST && response) {
        struct wire_vol_list_resp r;
        if (wire_decode_vol_list_resp(b, len, plen, &r) == 0) {
            size_t pos = 0;
            struct wire_vol_entry ent;
            while (wire_vol_list_next(&r, &pos, &ent)) {}
        }
    }
    if (type == WIRE_VOL_MAP && response) {
        struct wire_vol_map_resp r;
        if (wire_decode_vol_map_resp(b, len, plen, &r) == 0)
            for (uint32_t i = 0; i < r.n; i++) {
                struct wire_map_range mr;
                wire_vol_map_range(&r, i, &mr);
            }
    }
    if (type == WIRE_VOL_LEASE && response) {
        struct wire_vol_lease_resp r;
        if (wire_decode_vol_lease_resp(b, len, plen, &r) == 0) {
            for (uint32_t i = 0; i < r.n; i++) {
                struct wire_lease_entry le;
                wire_vol_lease_entry(&r, i, &le);
            }
            size_t pos = 0;
            struct wire_lease_node ln;
            while (wire_vol_lease_node(&r, &pos, &ln)) {}
        }
    }
    if (type == WIRE_BLOB_LIST && response) {
        struct wire_blob_list_resp r;
        if (wire_decode_blob_list_resp(b, len, plen, &r) == 0)
            for (uint32_t i = 0; i < r.n; i++) {
                struct wire_blob_entry be;
                wire_blob_list_entry(&r, i, &be);
            }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0] % 2;
    data++;
    size--;
    if (mode == 1) {
        if (size < 5) return 0;
        uint16_t type = bytes_get_le16(data);
        bool response = data[2] & 1;
        size_t plen = bytes_get_le16(data + 3);
        data += 5;
        size -= 5;
        if (plen > size) plen = size;
        /* Copy so ASan catches any read past the body. */
        uint8_t *copy = malloc(size ? size : 1);
        memcpy(copy, data, size);
        body(type, response, copy, size, plen);
        free(copy);
        return 0;
    }
    while (size >= WIRE_HDR_LEN) {
        struct wire_hdr h;
        if (wire_decode_hdr(data, &h) < 0) return 0;
        data += WIRE_HDR_LEN;
        size -= WIRE_HDR_LEN;
        if (h.len > size) return 0; /* conn.c waits for more; here the stream ends */
        uint8_t *copy = malloc(h.len ? h.len : 1);
        memcpy(copy, data, h.len);
        if (wire_check_fields(&h, copy) == 0) {
            if (h.status != WIRE_OK) {
                struct wire_error e;
                (void)wire_decode_error(copy, h.len, h.payload_len, &e);
            } else {
                body(h.type, h.flags & WIRE_F_RESPONSE, copy, h.len, h.payload_len);
            }
        }
        free(copy);
        data += h.len;
        size -= h.len;
    }
    return 0;
}
