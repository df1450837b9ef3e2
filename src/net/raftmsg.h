/* raftmsg.h: the byte encoding of libraft's struct raft_message.
 *
 * rio.c sends every Raft RPC as the `chunk` of one or more WIRE_RAFT frames
 * (wire.h); this codec turns a message into those bytes and back.  The
 * sender and receiver ids are NOT part of the encoding: they travel in
 * struct wire_raft_req, and the receiver fills message->server_id/address
 * from its own table of known servers.
 *
 * All integers little endian, written and read with the bytes.h
 * cursors in the order of these tables.  Every message starts with
 *
 *  OFFSET SIZE FIELD
 *    0     2   type       RAFT_IO_* (1..6)
 *    2     2   version    RAFTMSG_VERSION
 *
 * followed by the body of its type (offsets from the message's start):
 *
 *  APPEND_ENTRIES (1)                   APPEND_ENTRIES_RESULT (2)
 *  OFFSET SIZE  FIELD                   OFFSET SIZE FIELD
 *    4     8    term                      4     8   term
 *   12     8    prev_log_index           12     8   rejected
 *   20     8    prev_log_term            20     8   last_log_index
 *   28     8    leader_commit
 *   36     4    n_entries (<= RAFTMSG_MAX_ENTRIES)
 *   40    16n   n entry headers, each:
 *                 0  8  term (not 0)
 *                 8  2  type (RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE)
 *                10  2  zero
 *                12  4  len
 *   40+16n  -   the n entries' data, back to back (the lengths' sum)
 *
 *  REQUEST_VOTE (3)                     REQUEST_VOTE_RESULT (4)
 *  OFFSET SIZE FIELD                    OFFSET SIZE FIELD
 *    4     8   term                       4     8   term
 *   12     8   candidate_id              12     1   vote_granted (0 or 1)
 *   20     8   last_log_index            13     1   pre_vote (raft_tribool:
 *   28     8   last_log_term                          0 unknown, 1 true, 2 false)
 *   36     1   flags (1 disrupt_leader,
 *                     2 pre_vote)
 *
 *  INSTALL_SNAPSHOT (5)                 TIMEOUT_NOW (6)
 *  OFFSET SIZE FIELD                    OFFSET SIZE FIELD
 *    4     8   term                       4     8   term
 *   12     8   last_index                12     8   last_log_index
 *   20     8   last_term                 20     8   last_log_term
 *   28     8   conf_index
 *   36     c   conf (below)
 *   36+c   8   data_len (the rest)
 *   44+c   -   data
 *
 *  conf (also in raftlog snapshot files)
 *  OFFSET SIZE FIELD
 *    0     4   n (<= RAFTMSG_MAX_SERVERS)
 *    4     -   n servers, each:
 *                0  8  id (not 0)
 *                8  1  role (RAFT_STANDBY, RAFT_VOTER, RAFT_SPARE)
 *                9  2  addr_len (1..RAFTMSG_ADDR_MAX)
 *               11  -  address, addr_len bytes (no NUL)
 *
 * The encoding is canonical: the decoder rejects anything the encoder
 * cannot produce (reserved bits, booleans other than 0/1, trailing bytes,
 * entry term 0, unknown entry types or roles, server id 0, duplicate ids or
 * addresses), so decode-then-encode reproduces the input byte for byte;
 * the fuzz target checks exactly that.  Every count and length is checked
 * against the bytes that remain BEFORE anything is allocated, so a hostile
 * message can make us allocate at most about its own size.
 *
 * Ownership of decoded messages follows libraft (raft.h, struct raft_entry
 * and src/recv.c): the entries array is raft_malloc'ed, and all entries'
 * data live in ONE raft_malloc'ed batch that every entry's `batch` points
 * to, which libraft frees once no entry references it; an install
 * snapshot's configuration is built with raft_configuration_add and its
 * data is one raft_malloc'ed buffer, both freed by libraft.  A decoded
 * message that is not handed to libraft is released with raftmsg_free().
 *
 * CHECKLIST when changing the layout: bump RAFTMSG_VERSION (peers with the
 * old version then fail to decode and drop our messages, which is safe for
 * Raft but means a rolling upgrade needs both versions here), update the
 * tables above and the golden bytes in tests/unit/test_raftmsg.c, and
 * regenerate tests/fuzz/corpus/raftmsg with test_raftmsg. */
#ifndef BD_RAFTMSG_H
#define BD_RAFTMSG_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define RAFTMSG_VERSION 1
#define RAFTMSG_MAX_ENTRIES 65536u /* entries in one AppendEntries */
#define RAFTMSG_MAX_SERVERS 64u    /* servers in one configuration */
#define RAFTMSG_ADDR_MAX 255u      /* bytes of one server address */

/* An encoded message as a gather list: iov[0] is `head` (type, fixed
 * fields, entry headers or configuration), the following iovs borrow the
 * message's entry buffers or snapshot data without copying. */
struct raftmsg_enc {
    uint8_t *head;      /* owned (raftmsg_enc_free) */
    size_t head_len;
    struct iovec *iov;  /* owned array; iov[1..] borrow the message's buffers */
    int n_iov;
    size_t total_len;   /* sum of all iov lengths */
};

/* Encode M into ENC.  The data iovs borrow M's buffers: keep them alive
 * while ENC is in use.  Returns 0, -EINVAL if M cannot be encoded (unknown
 * type, too many entries or servers, entry term 0, an address too long or
 * empty, a boolean field out of range), or -ENOMEM.  On error ENC holds
 * nothing to free. */
int raftmsg_encode(const struct raft_message *m, struct raftmsg_enc *enc);
void raftmsg_enc_free(struct raftmsg_enc *enc);

/* Copy an encoded message into one buffer BUF of CAP >= enc->total_len
 * bytes (tests, fuzzing). */
void raftmsg_enc_flatten(const struct raftmsg_enc *enc, uint8_t *buf);

/* Decode the whole message BUF[LEN] (borrowed) into *M.  Sets every field
 * but server_id and server_address, which stay as the caller set them.
 * Returns 0, -EPROTO if BUF is not a canonical message, or -ENOMEM.  On 0
 * M owns raft-heap memory as described above; on error it owns nothing. */
int raftmsg_decode(const uint8_t *buf, size_t len, struct raft_message *m);

/* Like raftmsg_decode, but an INSTALL_SNAPSHOT's data (when not empty)
 * is not copied: TAKE(TAKE_ARG, P, LEN, OUT) is called with the data's
 * place in BUF and must fill *OUT with a buffer libraft may raft_free
 * (rio: BUF is a mapped message and OUT the data's part of the mapping,
 * snapmem.h), returning 0 or -errno (the decode fails with it).  TAKE is
 * the last step of a successful decode, so on any error nothing was
 * taken. */
typedef int raftmsg_take_fn(void *arg, const uint8_t *p, size_t len, struct raft_buffer *out);
int raftmsg_decode_take(const uint8_t *buf, size_t len, struct raft_message *m,
                        raftmsg_take_fn *take, void *take_arg);

/* Release what raftmsg_decode allocated for M (when M is not given to
 * libraft's recv callback, which takes it). */
void raftmsg_free(struct raft_message *m);

/* The configuration codec on its own (also used by raftlog's snapshot
 * files).  conf_size: encoded bytes, or 0 if C cannot be encoded.
 * conf_encode writes exactly conf_size(C) bytes; conf_decode consumes
 * exactly LEN bytes into *C (initialised here; raft_configuration_close it)
 * and returns 0, -EPROTO or -ENOMEM. */
size_t raftmsg_conf_size(const struct raft_configuration *c);
void raftmsg_conf_encode(const struct raft_configuration *c, uint8_t *buf);
int raftmsg_conf_decode(const uint8_t *buf, size_t len, struct raft_configuration *c);

/* A short name for a message type ("append_entries"), for logs. */
const char *raftmsg_type_name(unsigned type);

#endif
