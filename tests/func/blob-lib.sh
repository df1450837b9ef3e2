# blob-lib.sh: helpers for the blob server's end-to-end tests (source it
# after functions.sh; it is not a test itself).
#
#   blob_setup DIR [EXTRA_JSON]   write DIR/blob.json: fresh ports, data in
#                                 DIR/data, log in DIR/blob.log; EXTRA_JSON
#                                 is spliced into the "blob" object, e.g.
#                                 '"compression": "auto"'
#   blob_run                      start blockd --role=blob on it (BLOB_PID),
#                                 wait until it answers on the wire
#   cli ARGS...                   blobcli against it
#   status_field NAME             a top-level number or bool of /v1/status
#
# The proxies the server heartbeats to are a port where nothing listens:
# its links keep retrying, as they do before the proxies exist.

: "${BLOBCLI:?BLOBCLI must point at the blobcli tool}"

blob_setup() {
    local dir=$1 extra=${2:-}
    BLOB_DIR=$dir
    BLOB_PORT=$(free_port)
    BLOB_ADMIN_PORT=$(free_port)
    local proxy_port
    proxy_port=$(free_port)
    BLOB_ADDR=127.0.0.1:$BLOB_PORT
    BLOB_ADMIN=127.0.0.1:$BLOB_ADMIN_PORT
    cat >"$dir/blob.json" <<JSON
{
  "cluster_id": "functest",
  "log": {"file": "$dir/blob.log", "level": "info"},
  "blob": {"id": 7, "listen": "$BLOB_ADDR", "admin": "$BLOB_ADMIN",
           "data_dir": "$dir/data", "proxies": ["127.0.0.1:$proxy_port"],
           "heartbeat_ms": 100${extra:+, $extra}}
}
JSON
}

# A port free_port found may still be taken as the local port of an
# outgoing connection before we bind it: then pick new ports and retry.
blob_repick_ports() {
    local old_port=$BLOB_PORT old_admin=$BLOB_ADMIN_PORT
    BLOB_PORT=$(free_port)
    BLOB_ADMIN_PORT=$(free_port)
    BLOB_ADDR=127.0.0.1:$BLOB_PORT
    BLOB_ADMIN=127.0.0.1:$BLOB_ADMIN_PORT
    sed -i "s/127.0.0.1:$old_port\"/$BLOB_ADDR\"/; s/127.0.0.1:$old_admin\"/$BLOB_ADMIN\"/" \
        "$BLOB_DIR/blob.json"
}

blob_run() {
    local attempt
    for attempt in 1 2 3; do
        "$BLOCKD" --role=blob --config "$BLOB_DIR/blob.json" &
        BLOB_PID=$!
        cleanup_fn kill_pid "$BLOB_PID"
        local end=$((SECONDS + 20))
        until "$BLOBCLI" --cluster functest --addr "$BLOB_ADDR" --timeout-ms 1000 report >/dev/null 2>&1; do
            if ! kill -0 "$BLOB_PID" 2>/dev/null; then
                if tail -2 "$BLOB_DIR/blob.log" | grep -q "Address already in use"; then
                    blob_repick_ports
                    continue 2
                fi
                fail "blockd exited at start: $(tail -5 "$BLOB_DIR/blob.log")"
            fi
            [ $SECONDS -lt $end ] || fail "blockd did not answer within 20 s"
            sleep 0.1
        done
        return 0
    done
    fail "no free ports after 3 attempts"
}

cli() {
    "$BLOBCLI" --cluster functest --addr "$BLOB_ADDR" "$@"
}

status_field() {
    curl -sf "http://$BLOB_ADMIN/v1/status" |
        python3 -c "import json,sys; v=json.load(sys.stdin)['$1']; print(str(v).lower() if isinstance(v,bool) else v)"
}
