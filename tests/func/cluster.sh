# cluster.sh: a multi-process blockd cluster for end-to-end and fault tests
# (CONTRACT.md §2 rows 3-5).  Source it after functions.sh.
#
#   cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 [--secret] \
#                [--fault key=val] [--fault NAME.key=val] [--log-level debug] \
#                [--set ROLE.key=JSON] [--set NAME.key=JSON]
#   (--set merges a config key into a role's section, e.g.
#    --set proxy.snapshot_threshold=64, --set agent1.flush_age_ms=200,
#    --set 'blob.compression="auto"')
#   cluster_start                      # blobs, then proxies, then agents
#   cluster_wait_ready 30              # admin answers; one proxy is leader
#   cluster_create_volume vol0 64M
#   "$BLOCKD_FSX" --uri "$(cluster_uri vol0)" --ops 2000
#   cluster_kill "$(cluster_leader)"; cluster_start proxy1; cluster_pause blob2 ...
#
# Process names are blob1.., proxy1.., agent1..  Each has a directory
# DIR/NAME holding its config NAME.json, data, blockd's log (blockd.log)
# and its stdout/stderr (out.log).  Every port comes from free_port.  The
# admin bearer token is DIR/admin.token (0600), named in every config as
# admin_token_file; --secret adds DIR/cluster.secret (0600) as secret_file.
#
# Every process is started in the background by pid and stopped by pid;
# every wait is bounded; at exit the logs are printed if the test failed
# and every process still running is stopped (SIGCONT, SIGTERM, 5 s, then
# SIGKILL).
#
# Adapting to the roles as they land: the shape of GET /v1/status that the
# harness reads is confined to cluster_status_raft (Raft state and leader);
# the start command to cluster_launch; the create call to
# cluster_create_volume.
#
# Public state (read-only for tests):
#   CLUSTER_DIR, CLUSTER_NAMES (all names, in start order),
#   CLUSTER_ROLE[name], CLUSTER_PID[name] (empty when not running),
#   CLUSTER_ADMIN[name] (host:port), CLUSTER_WIRE[name] (proxies, blobs),
#   CLUSTER_NBD[name] (agents: host:port), CLUSTER_TOKEN_FILE.

CLUSTER_DIR=
CLUSTER_NAMES=()
CLUSTER_TOKEN_FILE=
declare -gA CLUSTER_ROLE=() CLUSTER_PID=() CLUSTER_ADMIN=() CLUSTER_WIRE=() CLUSTER_NBD=()
declare -gA CLUSTER_PAUSED=()
CLUSTER_STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-10}
CLUSTER_HTTP_TIMEOUT=${CLUSTER_HTTP_TIMEOUT:-5}
_cluster_ports=()

# cluster_launch NAME ROLE CONFIG: start one process in the background, in
# the current shell (so $! is its pid), output to DIR/NAME/out.log.  Tests
# of the harness itself may redefine it.
cluster_launch() {
    "$BLOCKD" --role="$2" --config "$3" >>"$CLUSTER_DIR/$1/out.log" 2>&1 &
}

# cluster_init DIR [options]: write one config per process.  Starts nothing.
cluster_init() {
    local dir=$1
    shift
    local n_proxies=3 n_blobs=3 n_agents=1 secret=false level=info
    local faults=() sets=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --set) sets+=("$2"); shift 2 ;;
        --proxies) n_proxies=$2; shift 2 ;;
        --blobs) n_blobs=$2; shift 2 ;;
        --agents) n_agents=$2; shift 2 ;;
        --secret) secret=true; shift ;;
        --fault) faults+=("$2"); shift 2 ;;
        --log-level) level=$2; shift 2 ;;
        *) fail "cluster_init: unknown option $1" ;;
        esac
    done
    case "$n_proxies" in 1 | 3 | 5 | 7) ;; *) fail "cluster_init: --proxies must be 1, 3, 5 or 7" ;; esac
    [ "$n_blobs" -ge 1 ] && [ "$n_agents" -ge 0 ] || fail "cluster_init: bad counts"
    command -v jq >/dev/null || fail "cluster.sh needs jq"
    [ -z "$CLUSTER_DIR" ] || fail "cluster_init: one cluster per test"

    mkdir -p "$dir"
    CLUSTER_DIR=$(cd "$dir" && pwd)
    cleanup_fn cluster_cleanup
    CLUSTER_TOKEN_FILE=$CLUSTER_DIR/admin.token
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_TOKEN_FILE")
    local secret_json=null
    if $secret; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_DIR/cluster.secret")
        secret_json=$(jq -n --arg f "$CLUSTER_DIR/cluster.secret" '$f')
    fi
    local tmpfs=false
    [ "$(stat -f -c %T "$CLUSTER_DIR")" = tmpfs ] && tmpfs=true

    # Names and ports first: every config lists its peers.
    local i name
    for ((i = 1; i <= n_blobs; i++)); do _cluster_add "blob$i" blob; done
    for ((i = 1; i <= n_proxies; i++)); do _cluster_add "proxy$i" proxy; done
    for ((i = 1; i <= n_agents; i++)); do _cluster_add "agent$i" agent; done

    local peers proxies
    peers=$(for ((i = 1; i <= n_proxies; i++)); do
        jq -n --argjson id "$i" --arg a "${CLUSTER_WIRE[proxy$i]}" '{id: $id, addr: $a}'
    done | jq -s .)
    proxies=$(for ((i = 1; i <= n_proxies; i++)); do echo "\"${CLUSTER_WIRE[proxy$i]}\""; done | jq -s .)

    for name in "${CLUSTER_NAMES[@]}"; do
        local d=$CLUSTER_DIR/$name role=${CLUSTER_ROLE[$name]} section fault
        mkdir -p "$d"
        fault=$(_cluster_faults "$name" "${faults[@]}") || fail "cluster_init: bad --fault"
        case "$role" in
        blob)
            section=$(jq -n --argjson id "$((10 + ${name#blob}))" --arg l "${CLUSTER_WIRE[$name]}" \
                --arg a "${CLUSTER_ADMIN[$name]}" --arg dd "$d/data" --argjson p "$proxies" \
                '{id: $id, listen: $l, admin: $a, data_dir: $dd, proxies: $p}') ;;
        proxy)
            section=$(jq -n --argjson id "${name#proxy}" --arg l "${CLUSTER_WIRE[$name]}" \
                --arg a "${CLUSTER_ADMIN[$name]}" --arg dd "$d/data" --argjson p "$peers" \
                --argjson t "$tmpfs" \
                '{id: $id, listen: $l, admin: $a, data_dir: $dd, peers: $p}
                 + (if $t then {allow_tmpfs: true} else {} end)') ;;
        agent)
            section=$(jq -n --arg id "$name" --arg n "${CLUSTER_NBD[$name]}" \
                --arg a "${CLUSTER_ADMIN[$name]}" --arg cd "$d/cache" --argjson p "$proxies" \
                '{id: $id, nbd_listen: $n, admin: $a, proxies: $p, cache_dir: $cd}') ;;
        esac
        [ "$fault" = "{}" ] || section=$(jq --argjson f "$fault" '. + {fault: $f}' <<<"$section")
        local spec target kv
        for spec in "${sets[@]}"; do
            target=${spec%%.*}
            kv=${spec#*.}
            [ "$target" = "$role" ] || [ "$target" = "$name" ] || continue
            section=$(jq --arg k "${kv%%=*}" --argjson v "${kv#*=}" '. + {($k): $v}' \
                <<<"$section") || fail "cluster_init: bad --set $spec"
        done
        jq -n --arg cid "c$$" --arg tok "$CLUSTER_TOKEN_FILE" --argjson sec "$secret_json" \
            --arg log "$d/blockd.log" --arg lvl "$level" --arg role "$role" \
            --argjson s "$section" \
            '{cluster_id: $cid, admin_token_file: $tok} +
             (if $sec == null then {} else {secret_file: $sec} end) +
             {log: {file: $log, level: $lvl}, ($role): $s}' >"$d/$name.json" ||
            fail "cluster_init: writing $d/$name.json"
    done
}

_cluster_add() {
    local name=$1 role=$2 p
    CLUSTER_NAMES+=("$name")
    CLUSTER_ROLE[$name]=$role
    CLUSTER_PID[$name]=
    p=$(free_port); _cluster_ports+=("$p"); CLUSTER_ADMIN[$name]=127.0.0.1:$p
    if [ "$role" = agent ]; then
        p=$(free_port); _cluster_ports+=("$p"); CLUSTER_NBD[$name]=127.0.0.1:$p
    else
        p=$(free_port); _cluster_ports+=("$p"); CLUSTER_WIRE[$name]=127.0.0.1:$p
    fi
}

# _cluster_faults NAME SPEC...: the fault object for NAME from key=val
# (every process) and NAME.key=val (that process) specs.
_cluster_faults() {
    local name=$1 spec key val obj='{}'
    shift
    for spec in "$@"; do
        key=${spec%%=*}
        val=${spec#*=}
        [[ $key == *.* ]] && { [ "${key%%.*}" = "$name" ] || continue; key=${key#*.}; }
        [[ $key =~ ^[a-z_]+$ && $val =~ ^[0-9]+$ ]] || return 1
        obj=$(jq --arg k "$key" --argjson v "$val" '. + {($k): $v}' <<<"$obj")
    done
    echo "$obj"
}

_cluster_check_name() {
    [ -n "${CLUSTER_ROLE[$1]:-}" ] || fail "no cluster process named '$1'"
}

# cluster_running NAME: true if NAME has a live pid.
cluster_running() {
    local pid=${CLUSTER_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# cluster_start [NAME...]: start the named processes (default all) in start
# order: blobs, proxies, agents.  A process that dies within 0.2 s fails the
# test with its log.
cluster_start() {
    local want=("$@") name pid
    [ ${#want[@]} -gt 0 ] || want=("${CLUSTER_NAMES[@]}")
    for name in "${want[@]}"; do _cluster_check_name "$name"; done
    local role
    for role in blob proxy agent; do
        for name in "${want[@]}"; do
            [ "${CLUSTER_ROLE[$name]}" = "$role" ] || continue
            cluster_running "$name" && fail "cluster_start: $name is already running"
            cluster_launch "$name" "$role" "$CLUSTER_DIR/$name/$name.json"
            pid=$!
            CLUSTER_PID[$name]=$pid
            CLUSTER_PAUSED[$name]=
            echo "cluster: started $name pid $pid"
        done
    done
    sleep 0.2
    for name in "${want[@]}"; do
        cluster_running "$name" || { cluster_logs "$name"; fail "cluster: $name exited at start"; }
    done
}

# cluster_kill NAME: SIGKILL (a crash), bounded wait until it is gone.
cluster_kill() {
    _cluster_check_name "$1"
    local pid=${CLUSTER_PID[$1]}
    [ -n "$pid" ] || fail "cluster_kill: $1 is not running"
    kill -KILL "$pid" 2>/dev/null || true
    _cluster_wait_gone "$pid" 10 || fail "cluster_kill: $1 (pid $pid) survived SIGKILL"
    CLUSTER_PID[$1]=
    CLUSTER_PAUSED[$1]=
    echo "cluster: killed $1 pid $pid"
}

# cluster_stop NAME: SIGTERM, wait up to CLUSTER_STOP_TIMEOUT s; if it is
# still there, SIGKILL it and return 1 (a clean stop is part of the contract).
cluster_stop() {
    _cluster_check_name "$1"
    local pid=${CLUSTER_PID[$1]} rc=0
    [ -n "$pid" ] || return 0
    [ -n "${CLUSTER_PAUSED[$1]}" ] && kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null || true
    if ! _cluster_wait_gone "$pid" "$CLUSTER_STOP_TIMEOUT"; then
        echo "cluster: $1 (pid $pid) ignored SIGTERM for ${CLUSTER_STOP_TIMEOUT}s; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        _cluster_wait_gone "$pid" 10
        rc=1
    fi
    CLUSTER_PID[$1]=
    CLUSTER_PAUSED[$1]=
    echo "cluster: stopped $1 pid $pid"
    return $rc
}

# cluster_restart NAME: stop (if running), then start.
cluster_restart() {
    cluster_stop "$1" || true
    cluster_start "$1"
}

# cluster_pause / cluster_resume NAME: SIGSTOP / SIGCONT (row 4).  Both
# return once the process is stopped / running again (signals take effect
# asynchronously), or fail the test after 5 s.
cluster_pause() {
    _cluster_check_name "$1"
    cluster_running "$1" || fail "cluster_pause: $1 is not running"
    kill -STOP "${CLUSTER_PID[$1]}"
    _cluster_wait_state "${CLUSTER_PID[$1]}" stopped || fail "cluster_pause: $1 did not stop"
    CLUSTER_PAUSED[$1]=1
    echo "cluster: paused $1"
}
cluster_resume() {
    _cluster_check_name "$1"
    cluster_running "$1" || fail "cluster_resume: $1 is not running"
    kill -CONT "${CLUSTER_PID[$1]}"
    _cluster_wait_state "${CLUSTER_PID[$1]}" running || fail "cluster_resume: $1 did not resume"
    CLUSTER_PAUSED[$1]=
    echo "cluster: resumed $1"
}

# _cluster_wait_state PID stopped|running: poll ps for up to 5 s.
_cluster_wait_state() {
    local end=$((SECONDS + 5)) st
    while :; do
        st=$(ps -o stat= -p "$1" 2>/dev/null)
        case "$2:$st" in stopped:T*) return 0 ;; running:[^T]*) return 0 ;; esac
        [ $SECONDS -lt $end ] || return 1
        sleep 0.02
    done
}

# _cluster_wait_gone PID SECS: true once PID is gone (reaped or not ours).
_cluster_wait_gone() {
    local pid=$1 end=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        # A child that died is a zombie until waited for.
        [ "$(ps -o stat= -p "$pid" 2>/dev/null)" = Z ] && { wait "$pid" 2>/dev/null; return 0; }
        [ $SECONDS -lt $end ] || return 1
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
    return 0
}

# cluster_status NAME: GET /v1/status of NAME (JSON on stdout).
cluster_status() {
    _cluster_check_name "$1"
    curl -sf --max-time "$CLUSTER_HTTP_TIMEOUT" "http://${CLUSTER_ADMIN[$1]}/v1/status"
}

# cluster_status_raft NAME: "STATE LEADER_ID" of a proxy, from its
# /v1/status {"raft": {"state": "leader"|"follower"|..., "leader_id": N}};
# fails if NAME does not answer.  The one place that knows this shape.
cluster_status_raft() {
    local js
    js=$(cluster_status "$1") || return 1
    jq -r '"\(.raft.state // "unknown") \(.raft.leader_id // 0)"' <<<"$js" 2>/dev/null
}

# cluster_wait_ready [SECS]: every running, unpaused process answers
# /v1/status, and (if proxies run) one of them is leader.  Default 30 s.
cluster_wait_ready() {
    local secs=${1:-30} end name left
    end=$((SECONDS + secs))
    while :; do
        left=()
        for name in "${CLUSTER_NAMES[@]}"; do
            cluster_running "$name" && [ -z "${CLUSTER_PAUSED[$name]}" ] || continue
            cluster_status "$name" >/dev/null 2>&1 || left+=("$name")
        done
        if [ ${#left[@]} -eq 0 ] && { ! _cluster_has_proxies || cluster_leader >/dev/null 2>&1; } &&
            _cluster_has_partitions; then
            return 0
        fi
        if [ $SECONDS -ge $end ]; then
            [ ${#left[@]} -gt 0 ] && echo "cluster: not answering /v1/status: ${left[*]}" >&2
            [ ${#left[@]} -eq 0 ] && echo "cluster: no proxy is leader" >&2
            cluster_logs
            fail "cluster_wait_ready: not ready after ${secs}s"
        fi
        sleep 0.2
    done
}

# With three or more blob servers running, the leader has created at least
# one partition (writes need one whose three servers are up).
_cluster_has_partitions() {
    local name n=0 leader
    for name in "${CLUSTER_NAMES[@]}"; do
        [ "${CLUSTER_ROLE[$name]}" = blob ] && cluster_running "$name" && n=$((n + 1))
    done
    [ $n -ge 3 ] && _cluster_has_proxies || return 0
    leader=$(cluster_leader 2>/dev/null) || return 1
    # (A status without an index section, e.g. the harness's stand-in, has none to wait for.)
    [ "$(cluster_status "$leader" 2>/dev/null | jq 'if .index then (.index.partitions // 0) else 1 end')" -gt 0 ]
}

_cluster_has_proxies() {
    local name
    for name in "${CLUSTER_NAMES[@]}"; do
        [ "${CLUSTER_ROLE[$name]}" = proxy ] && cluster_running "$name" &&
            [ -z "${CLUSTER_PAUSED[$name]}" ] && return 0
    done
    return 1
}

# cluster_leader: print the name of the leader proxy; fail (1) if none.
# Several self-declared leaders (a paused or cut-off old leader): the one
# that most followers name wins.
cluster_leader() {
    local name state id leaders=() votes best= bestn=-1
    declare -A named=()
    for name in "${CLUSTER_NAMES[@]}"; do
        [ "${CLUSTER_ROLE[$name]}" = proxy ] && cluster_running "$name" &&
            [ -z "${CLUSTER_PAUSED[$name]}" ] || continue
        read -r state id < <(cluster_status_raft "$name") || continue
        [ "$state" = leader ] && leaders+=("$name")
        [ "${id:-0}" != 0 ] && named[proxy$id]=$(( ${named[proxy$id]:-0} + 1 ))
    done
    [ ${#leaders[@]} -gt 0 ] || return 1
    for name in "${leaders[@]}"; do
        votes=${named[$name]:-0}
        [ "$votes" -gt "$bestn" ] && best=$name bestn=$votes
    done
    echo "$best"
}

# cluster_uri VOLUME [AGENT]: the NBD URI of VOLUME on AGENT (default agent1).
cluster_uri() {
    local agent=${2:-agent1}
    _cluster_check_name "$agent"
    echo "nbd://${CLUSTER_NBD[$agent]}/$1"
}

# cluster_create_volume NAME SIZE: POST /v1/volumes {"name", "size"} with
# the bearer token to the leader (or any proxy that answers; followers
# forward or redirect).  SIZE takes K/M/G/T suffixes.  Retries 503 and
# connection errors for up to 30 s; any other non-2xx fails the test.
cluster_create_volume() {
    local name=$1 bytes target body code end=$((SECONDS + 30))
    bytes=$(_cluster_size "$2") || fail "cluster_create_volume: bad size '$2'"
    body=$(jq -cn --arg n "$name" --argjson s "$bytes" '{name: $n, size: $s}')
    while :; do
        target=$(cluster_leader 2>/dev/null) || target=$(_cluster_first_running proxy) ||
            fail "cluster_create_volume: no proxy running"
        code=$(curl -s -o "$CLUSTER_DIR/last-response" -w '%{http_code}' \
            --max-time "$CLUSTER_HTTP_TIMEOUT" --location-trusted \
            -H "Authorization: Bearer $(<"$CLUSTER_TOKEN_FILE")" \
            -H "Content-Type: application/json" -X POST --data "$body" \
            "http://${CLUSTER_ADMIN[$target]}/v1/volumes") || code=000
        case "$code" in
        2??) echo "cluster: created volume $name ($bytes bytes) via $target"; return 0 ;;
        000 | 503) ;;
        *) fail "cluster_create_volume $name: HTTP $code from $target: $(cat "$CLUSTER_DIR/last-response")" ;;
        esac
        [ $SECONDS -lt $end ] || fail "cluster_create_volume $name: no proxy accepted it in 30 s"
        sleep 0.3
    done
}

_cluster_first_running() {
    local name
    for name in "${CLUSTER_NAMES[@]}"; do
        [ "${CLUSTER_ROLE[$name]}" = "$1" ] && cluster_running "$name" && { echo "$name"; return 0; }
    done
    return 1
}

# _cluster_size 64M -> 67108864
_cluster_size() {
    local s=$1 n mult=1
    [[ $s =~ ^([0-9]+)([KMGT]?)$ ]] || return 1
    n=${BASH_REMATCH[1]}
    case "${BASH_REMATCH[2]}" in K) mult=1024 ;; M) mult=$((1 << 20)) ;; G) mult=$((1 << 30)) ;; T) mult=$((1 << 40)) ;; esac
    echo $((n * mult))
}

# cluster_logs [NAME...] : the last CLUSTER_LOG_LINES (40) lines of each log.
cluster_logs() {
    local names=("$@") name f
    [ ${#names[@]} -gt 0 ] || names=("${CLUSTER_NAMES[@]}")
    for name in "${names[@]}"; do
        local shown=false
        for f in "$CLUSTER_DIR/$name/out.log" "$CLUSTER_DIR/$name/blockd.log"; do
            [ -s "$f" ] || continue
            echo "----- $name: $f (pid ${CLUSTER_PID[$name]:-none}) -----" >&2
            tail -n "${CLUSTER_LOG_LINES:-40}" "$f" >&2
            shown=true
        done
        $shown || echo "----- $name: no output (pid ${CLUSTER_PID[$name]:-none}) -----" >&2
    done
}

# cluster_cleanup: at exit (registered by cluster_init).  Logs first if the
# test failed, then stop every process by pid.
cluster_cleanup() {
    local name pid p
    [ "${TEST_EXIT_STATUS:-0}" -eq 0 ] || cluster_logs
    for name in "${CLUSTER_NAMES[@]}"; do
        pid=${CLUSTER_PID[$name]:-}
        [ -n "$pid" ] || continue
        kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
    done
    for name in "${CLUSTER_NAMES[@]}"; do
        pid=${CLUSTER_PID[$name]:-}
        [ -n "$pid" ] || continue
        _cluster_wait_gone "$pid" 5 || { kill -KILL "$pid" 2>/dev/null; _cluster_wait_gone "$pid" 5; }
        CLUSTER_PID[$name]=
    done
    for p in "${_cluster_ports[@]}"; do rm -f "${TMPDIR:-/tmp}/blockd-port-$p"; done
}
