/* blob.h: the blob server role (DESIGN.md §1, §6).
 *
 * One `blockd --role=blob` per storage box.  It serves the blob store
 * (src/store/blob/blobstore.h) over the wire codec on `listen`: BLOB_PUT,
 * BLOB_GET, BLOB_DELETE, BLOB_STAT, BLOB_LIST, BLOB_REPORT and BLOB_PULL
 * (copy blobs from another blob server: blob_pull.h), to peers that
 * passed HELLO with the cluster id and secret.  It announces itself
 * with NODE_HEARTBEAT to every proxy in `proxies` every `heartbeat_ms`,
 * and serves GET /v1/status and /metrics on `admin`.
 *
 * Who may do what: proxies, blob servers (repair) and ctl tools may
 * mutate; agents may only read (GET, STAT), for the direct-read path of
 * DESIGN.md §4.
 *
 * Stop (SIGTERM): stop accepting, answer new requests ESHUTDOWN, let
 * queued puts finish (their fsync included) and every reply go out, then
 * close the connections. */
#ifndef BD_ROLE_BLOB_H
#define BD_ROLE_BLOB_H

#include "roles/role.h"

extern const struct role_ops blob_role_ops;

#endif
