# cluster-lib.sh: a real cluster of 3 proxies and N blob servers for the
# end-to-end tests (source it after functions.sh; it is not a test itself).
#
#   cluster_setup DIR NBLOB [PROXY_JSON] [BLOB_JSON]
#                          write DIR/proxyI.json and DIR/blobJ.json with fresh
#                          ports; data in DIR/pI and DIR/bJ, logs beside them.
#                          PROXY_JSON / BLOB_JSON are spliced into every
#                          "proxy" / "blob" object, e.g. '"repair_interval_ms": 500'
#   cluster_start          start every process (PROXY_PID[i], BLOB_PID[j]) and
#                          wait for a raft leader
#   blob_start J / blob_stop J / blob_kill J
#                          start, SIGTERM or SIGKILL blob server J (by pid)
#   leader_admin           print the admin address of the current leader
#   ctl ARGS...            blockd ctl against the proxies, with the token
#   vol_create NAME SIZE   create a volume (retried until a leader takes it)
#   vol_write / vol_verify volcli write / verify (see below)
#   cluster_json           GET /v1/cluster from the leader
#   status_json            GET /v1/status from the leader
#   blob_cli J ARGS...     blobcli against blob server J
#   cluster_stop           stop every process (SIGTERM, by pid) and fail if any
#                          printed a sanitizer report (ASan, LSan, UBSan)
#
# Blob server J has node id 10+J; proxies are 1..3.  Every process is
# stopped by pid at exit (functions.sh cleanup_fn).  Helpers for the
# repair tests:
#
#   part_members P         the node ids of partition P (one line)
#   part_ids               every partition id
#   blob_ids J P           the blob ids server J lists in partition P, sorted
#   repair_field NAME      a field of the leader's /v1/status "repair" object

: "${BLOBCLI:?BLOBCLI must point at the blobcli tool}"
: "${VOLCLI:?VOLCLI must point at the volcli tool}"

# A cluster id of our own: a blob server left over from another test on this
# machine that heartbeats to a port we now listen on is refused at HELLO.
CLUSTER_ID=ft$$r$RANDOM

# cl_port VAR: a free loopback port below the kernel's ephemeral range (so
# no outgoing connection can take it before we bind it), marked as taken
# for other tests as free_port does; sets VAR in the calling shell.
cl_port() {
    local low p
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 21000 ] || low=32768
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % (low - 20000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && port_claim "$p"; then
            printf -v "$1" %s "$p"
            return 0
        fi
    done
    fail "no free port"
}

cluster_setup() {
    local dir=$1 nblob=$2 pextra=${3:-} bextra=${4:-}
    CL_DIR=$dir
    CL_NBLOB=$nblob
    (umask 077 && echo "functest-token-$RANDOM$RANDOM" >"$dir/token")
    local i peers="" proxies="" port
    for i in 1 2 3; do
        cl_port port
        PROXY_WIRE[$i]=127.0.0.1:$port
        cl_port port
        PROXY_ADMIN[$i]=127.0.0.1:$port
        peers+="${peers:+, }{\"id\": $i, \"addr\": \"${PROXY_WIRE[$i]}\"}"
        proxies+="${proxies:+, }\"${PROXY_WIRE[$i]}\""
    done
    for i in 1 2 3; do
        cat >"$dir/proxy$i.json" <<JSON
{
  "cluster_id": "$CLUSTER_ID",
  "admin_token_file": "$dir/token",
  "log": {"file": "$dir/proxy$i.log", "level": "info"},
  "proxy": {"id": $i, "listen": "${PROXY_WIRE[$i]}", "admin": "${PROXY_ADMIN[$i]}",
            "data_dir": "$dir/p$i", "peers": [$peers], "allow_tmpfs": true,
            "node_timeout_ms": 1500, "election_timeout_ms": 1000${pextra:+, $pextra}}
}
JSON
    done
    for ((i = 1; i <= nblob; i++)); do
        cl_port port
        BLOB_WIRE[$i]=127.0.0.1:$port
        cl_port port
        BLOB_ADM[$i]=127.0.0.1:$port
        cat >"$dir/blob$i.json" <<JSON
{
  "cluster_id": "$CLUSTER_ID",
  "log": {"file": "$dir/blob$i.log", "level": "info"},
  "blob": {"id": $((10 + i)), "listen": "${BLOB_WIRE[$i]}", "admin": "${BLOB_ADM[$i]}",
           "data_dir": "$dir/b$i", "proxies": [$proxies], "heartbeat_ms": 200,
           "segment_bytes": "32M", "max_blob_bytes": "4M"${bextra:+, $bextra}}
}
JSON
    done
}

# _start_proc NAME ROLE CONFIG: start one process, print its pid.
_start_proc() {
    "$BLOCKD" --role="$2" --config "$3" </dev/null >>"$CL_DIR/$1.stderr" 2>&1 &
    echo $!
}

blob_start() {
    local j=$1
    BLOB_PID[$j]=$(_start_proc "blob$j" blob "$CL_DIR/blob$j.json")
    cleanup_fn kill_pid "${BLOB_PID[$j]}"
    local end=$((SECONDS + 20))
    until blob_cli "$j" --timeout-ms 1000 report >/dev/null 2>&1; do
        kill -0 "${BLOB_PID[$j]}" 2>/dev/null ||
            fail "blob$j exited at start: $(tail -n 3 "$CL_DIR/blob$j.stderr" "$CL_DIR/blob$j.log")"
        [ $SECONDS -lt $end ] || fail "blob$j does not answer within 20 s"
        sleep 0.1
    done
}

blob_stop() { kill_pid "${BLOB_PID[$1]}"; }
blob_kill() {
    kill -KILL "${BLOB_PID[$1]}" 2>/dev/null || true
    wait "${BLOB_PID[$1]}" 2>/dev/null || true
}

cluster_start() {
    local i
    for i in 1 2 3; do
        PROXY_PID[$i]=$(_start_proc "proxy$i" proxy "$CL_DIR/proxy$i.json")
        cleanup_fn kill_pid "${PROXY_PID[$i]}"
    done
    for ((i = 1; i <= CL_NBLOB; i++)); do blob_start "$i"; done
    local end=$((SECONDS + 30))
    until CL_LEADER=$(leader_admin); do
        for i in 1 2 3; do
            kill -0 "${PROXY_PID[$i]}" 2>/dev/null ||
                fail "proxy$i exited: $(tail -n 3 "$CL_DIR/proxy$i.stderr" "$CL_DIR/proxy$i.log")"
        done
        [ $SECONDS -lt $end ] || fail "no raft leader within 30 s"
        sleep 0.2
    done
    # Writes need a partition whose three servers are up.
    wait_for 30 "cluster_json | python3 -c 'import json,sys; sys.exit(0 if any(p[\"replicas_up\"] == 3 for p in json.load(sys.stdin)[\"partitions\"]) else 1)'"
}

# The leader's admin address; the last one found is tried first.
CL_LEADER=
leader_admin() {
    local a
    for a in $CL_LEADER "${PROXY_ADMIN[@]}"; do
        if curl -sf --max-time 5 "http://$a/v1/status" 2>/dev/null |
            python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["raft"]["state"] == "leader" else 1)' \
                2>/dev/null; then
            CL_LEADER=$a
            echo "$a"
            return 0
        fi
    done
    return 1
}

ctl() {
    "$BLOCKD" ctl --url "${PROXY_ADMIN[1]}" --url "${PROXY_ADMIN[2]}" --url "${PROXY_ADMIN[3]}" \
        --token-file "$CL_DIR/token" "$@"
}

vol_create() {
    local end=$((SECONDS + 30))
    until ctl volume create "$1" "$2" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || fail "could not create volume $1: $(ctl volume create "$1" "$2" 2>&1)"
        sleep 0.3
    done
}

cluster_json() { curl -sf --max-time 5 "http://$(leader_admin)/v1/cluster"; }
status_json() { curl -sf --max-time 5 "http://$(leader_admin)/v1/status"; }

blob_cli() {
    local j=$1
    shift
    "$BLOBCLI" --cluster "$CLUSTER_ID" --addr "${BLOB_WIRE[$j]}" "$@"
}

# volcli against proxy I (default 1).
vol_cli() {
    "$VOLCLI" --cluster "$CLUSTER_ID" "${PROXY_WIRE[${VOLCLI_PROXY:-1}]}" "$@"
}

# vol_write NAME SEED MIB [OFF_MIB]: volcli write; remembers the highest raft
# index acknowledged so far in VOL_INDEX.
VOL_INDEX=0
vol_write() {
    local out idx
    out=$(vol_cli write "$@" 2>&1) || fail "volcli write $*: $out"
    echo "$out" | grep '^ok'
    idx=$(echo "$out" | sed -n 's/.*max raft index \([0-9]*\).*/\1/p')
    [ "${idx:-0}" -gt "$VOL_INDEX" ] && VOL_INDEX=$idx
    return 0
}

# vol_verify NAME SEED MIB [OFF_MIB]: volcli verify (read-only attach), reading
# at least at VOL_INDEX (read-your-writes across volcli processes).
vol_verify() {
    local out
    out=$(vol_cli verify "$1" "$2" "$3" "${4:-0}" "$VOL_INDEX" 2>&1) || fail "volcli verify $*: $out"
    echo "$out" | grep '^ok'
}

part_ids() {
    cluster_json | python3 -c 'import json,sys; [print(p["id"]) for p in json.load(sys.stdin)["partitions"]]'
}

part_members() {
    cluster_json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["partitions"]:
    if p["id"] == int(sys.argv[1]): print(" ".join(str(n) for n in p["nodes"]))' "$1"
}

blob_ids() {
    blob_cli "$1" list --partition "$2" --max 1000 | awk '{print $1}' | sort -n
}

repair_field() {
    status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["repair"][sys.argv[1]])' "$1"
}

# every_partition_in_sync: each partition's three members list the same ids,
# and at least MIN_BLOBS blobs in all (default 1).  Prints a line per
# partition on failure.
every_partition_in_sync() {
    local min=${1:-1} total=0 p m a b c parts
    parts=$(cluster_json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["partitions"]: print(p["id"], *p["nodes"])') || return 1
    while read -r p m[0] m[1] m[2]; do
        a=$(blob_ids $((m[0] - 10)) "$p") || return 1
        b=$(blob_ids $((m[1] - 10)) "$p") || return 1
        c=$(blob_ids $((m[2] - 10)) "$p") || return 1
        if [ "$a" != "$b" ] || [ "$a" != "$c" ]; then
            echo "partition $p: members ${m[*]} list $(wc -w <<<"$a") / $(wc -w <<<"$b") / $(wc -w <<<"$c") blobs"
            return 1
        fi
        total=$((total + $(wc -w <<<"$a")))
    done <<<"$parts"
    [ "$total" -ge "$min" ] || { echo "only $total blobs in all partitions"; return 1; }
}

cluster_stop() {
    local pid f
    for pid in "${BLOB_PID[@]}" "${PROXY_PID[@]}"; do kill_pid "$pid"; done
    for f in "$CL_DIR"/*.stderr; do
        [ -e "$f" ] || continue
        if grep -q "Sanitizer\|runtime error:" "$f"; then
            head -n 40 "$f"
            fail "sanitizer report in $(basename "$f")"
        fi
    done
}
