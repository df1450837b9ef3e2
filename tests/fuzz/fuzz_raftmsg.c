/* fuzz_raftmsg.c: libFuzzer target for the Raft message codec
 * (src/net/raftmsg.c; CONTRACT.md row 10).
 *
 * Input: one whole encoded message, as rio.c hands it to the decoder after
 * reassembling WIRE_RAFT frames.  Property: no crash, leak or undefined
 * behaviour; and any input that decodes re-encodes to exactly the same
 * bytes (the encoding is canonical), else abort.  Seeds in
 * tests/fuzz/corpus/raftmsg come from test_raftmsg's vectors
 * (tests/fuzz/gen-corpus). */
#include "net/raftmsg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    if (raftmsg_decode(data, size, &m) != 0) return 0;
    struct raftmsg_enc enc;
    if (raftmsg_encode(&m, &enc) != 0) abort(); /* decoded but cannot re-encode */
    if (enc.total_len != size) abort();
    uint8_t *b = malloc(size ? size : 1);
    raftmsg_enc_flatten(&enc, b);
    if (memcmp(b, data, size) != 0) abort();
    free(b);
    raftmsg_enc_free(&enc);
    raftmsg_free(&m);
    return 0;
}
