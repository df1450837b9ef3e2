# cluster.sh: the one harness for functional tests that run blockd: a
# cluster of proxies, blob servers and agents on loopback, or a lone blob
# server.  Source it after functions.sh.  tests/func/README has the guide.
#
#   cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 [--plaintext] \
#                [--fault key=N] [--fault NAME.key=N] [--log-level debug] \
#                [--set ROLE.key=JSON] [--set NAME.key=JSON]
#   cluster_start                      # every process: blobs, proxies, agents
#   cluster_wait_ready 30              # all answer; a leader; a writable partition
#   cluster_create_volume vol0 64M     # attached to agent1 (--attach A, --no-attach)
#   "$BLOCKD_FSX" --uri "$(cluster_uri vol0)" --ops 2000
#   nbdinfo "nbd+unix:///?socket=$(cluster_vol_socket vol0)"   # the volume's own socket
#   cluster_kill "$(cluster_leader)"; cluster_start proxy1; cluster_pause blob2
#   cluster_stop_all                   # every process stops cleanly on SIGTERM
#
# Names and ids: blob servers blob1.. (node id 10+J), proxies proxy1..
# (node id and Raft id J), agents agent1..; cluster_node_name maps a node
# id back to its name.  --proxies is 0 (a lone blob server, whose
# heartbeats go to a port where nothing listens), 1, 3, 5 or 7.
#
# Files: DIR/NAME/NAME.json (config), DIR/NAME/data (proxy and blob data;
# agents: DIR/NAME/cache, and DIR/NAME/vols/VOLUME.sock, the socket of
# each volume attached to the agent), DIR/NAME/blockd.log (blockd's log)
# and DIR/NAME/out.log (stdout and stderr, where sanitizer reports land).
# DIR/admin.token (0600) is every config's admin_token_file, DIR/read.token
# its admin_read_token_file.  TLS is on, as in production: DIR/tls/ca is
# the cluster's CA (blockd cert ca) and DIR/tls/NAME.{pem,key} each
# process's certificate, plus volcli (agent), blobcli (ctl) and
# blobcli-agent (agent) for the tools; admin calls go over HTTPS with the
# token.  --plaintext instead writes "insecure_plaintext": true and no
# certificates.  Each cluster gets its own cluster_id and CA, so a process
# left over from another test is refused at its TLS handshake.
#
# Ports come from free_port (claimed, so parallel tests never share one).
# Every process is started in the background of the test's shell and
# stopped by its pid; every wait is bounded; at exit the logs are printed
# if the test failed, every process still running is stopped (SIGCONT,
# SIGTERM, 5 s, SIGKILL), and a sanitizer report in any out.log fails the
# test.
#
# Public state (read-only for tests):
#   CLUSTER_DIR, CLUSTER_ID, CLUSTER_NAMES (all names, in start order),
#   CLUSTER_ROLE[name], CLUSTER_PID[name] (empty when not running),
#   CLUSTER_NODE_ID[name] (proxies, blobs), CLUSTER_ADMIN[name] (host:port),
#   CLUSTER_WIRE[name] (proxies, blobs), CLUSTER_NBD[name] (agents),
#   CLUSTER_EXIT[name] (exit status at its last stop or kill),
#   CLUSTER_TOKEN_FILE, CLUSTER_READ_TOKEN_FILE, CLUSTER_CA (the CA
#   certificate; empty with --plaintext), CLUSTER_TLS_DIR, CLUSTER_SCHEME
#   (https or http),
#   CLUSTER_VOL_INDEX (highest raft index cluster_vol_write saw acknowledged).
# Knobs: CLUSTER_STOP_TIMEOUT (10 s), CLUSTER_HTTP_TIMEOUT (5 s),
# CLUSTER_LOG_LINES (40).
#
# Network namespaces (--netns; source netns.sh first): every process runs
# in its own namespace (netns_add_node NAME: a veth into one bridge, its
# own address NETNS_IP[NAME]) and binds that address (wire port
# 7000, admin 7001, NBD 10809); certificates carry the address as a SAN
# for the admin host-name check (the wire checks identities, not names).
# The harness reaches each process from inside its own namespace, so a
# cut never hides a process from the test: cluster_curl (and everything
# built on it), cluster_blobcli, cluster_volcli and cluster_ctl enter the
# right one, and cluster_exec / cluster_spawn NAME CMD... run a client there (NBD
# clients run in the agent's namespace, as a VM beside its agent).
# Cut with netns_cut / netns_cut_peer / netns_drop NAME ... (netns.sh).
#
# Power cuts (--powercut; POWERCUT_LIB set by meson): every process runs
# with tests/tools/powercut.c preloaded over its data or cache directory
# (CLUSTER_DIR/powercut/NAME holds its state, CLUSTER_DIR/powercut.log a
# line per cut, seeded from CLUSTER_POWERCUT_SEED;
# CLUSTER_POWERCUT_NO_REORDER[NAME]=1 keeps NAME's pending writes in issue
# order), and cluster_powercut
# [NAME...] cuts the power of every running process (or those named) at
# once: SIGSTOP all, the cut signal to all, SIGCONT all; each rewrites its
# disk into a crash state and dies by SIGKILL.
#
# The shape of GET /v1/status the harness reads is confined to
# _cluster_raft (Raft state and leader), and of /v1/cluster to
# cluster_partitions and _cluster_writable.

: "${BLOBCLI:?BLOBCLI must point at the blobcli tool}"
: "${VOLCLI:?VOLCLI must point at the volcli tool}"

CLUSTER_DIR=
CLUSTER_ID=
CLUSTER_NAMES=()
CLUSTER_TOKEN_FILE=
CLUSTER_READ_TOKEN_FILE=
CLUSTER_CA=
CLUSTER_TLS_DIR=
CLUSTER_SCHEME=https
CLUSTER_VOL_INDEX=0
declare -gA CLUSTER_ROLE=() CLUSTER_PID=() CLUSTER_NODE_ID=() CLUSTER_ADMIN=() CLUSTER_WIRE=()
declare -gA CLUSTER_NBD=() CLUSTER_EXIT=() _cluster_paused=()
declare -gA _cluster_ip_name=() _cluster_starts=() CLUSTER_POWERCUT_NO_REORDER=()
_cluster_netns=false
_cluster_powercut=false
CLUSTER_POWERCUT_SEED=${CLUSTER_POWERCUT_SEED:-1}
CLUSTER_STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-10}
CLUSTER_HTTP_TIMEOUT=${CLUSTER_HTTP_TIMEOUT:-5}

# ---- Configuration ---------------------------------------------------------------

# cluster_init DIR [options]: choose ports and write one config per process.
# Starts nothing.  One cluster per test.
cluster_init() {
    local dir=$1
    shift
    local n_proxies=3 n_blobs=3 n_agents=1 plaintext=false level=info
    local faults=() sets=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --set) sets+=("$2"); shift 2 ;;
        --proxies) n_proxies=$2; shift 2 ;;
        --blobs) n_blobs=$2; shift 2 ;;
        --agents) n_agents=$2; shift 2 ;;
        --plaintext) plaintext=true; shift ;;
        --fault) faults+=("$2"); shift 2 ;;
        --log-level) level=$2; shift 2 ;;
        --netns) _cluster_netns=true; shift ;;
        --powercut) _cluster_powercut=true; shift ;;
        *) fail "cluster_init: unknown option $1" ;;
        esac
    done
    case "$n_proxies" in 0 | 1 | 3 | 5 | 7) ;; *) fail "cluster_init: --proxies must be 0, 1, 3, 5 or 7" ;; esac
    [ "$n_blobs" -ge 0 ] && [ "$n_agents" -ge 0 ] || fail "cluster_init: bad counts"
    [ "$n_proxies" -gt 0 ] || [ "$n_agents" -eq 0 ] || fail "cluster_init: agents need proxies"
    command -v jq >/dev/null || fail "cluster.sh needs jq"
    command -v curl >/dev/null || fail "cluster.sh needs curl"
    [ -z "$CLUSTER_DIR" ] || fail "cluster_init: one cluster per test"

    if $_cluster_netns; then
        declare -F netns_init >/dev/null || fail "cluster_init --netns: source netns.sh first"
        $plaintext && fail "cluster_init: --netns runs with TLS"
    fi
    if $_cluster_powercut; then
        [ -n "${POWERCUT_LIB:-}" ] && [ -f "$POWERCUT_LIB" ] || fail "cluster_init --powercut: POWERCUT_LIB not built"
    fi

    mkdir -p "$dir"
    CLUSTER_DIR=$(cd "$dir" && pwd)
    CLUSTER_ID=c$$r$RANDOM
    # Namespaces go after the processes at exit: register their cleanup first.
    ! $_cluster_netns || netns_init
    cleanup_fn _cluster_cleanup
    CLUSTER_TOKEN_FILE=$CLUSTER_DIR/admin.token
    CLUSTER_READ_TOKEN_FILE=$CLUSTER_DIR/read.token
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_TOKEN_FILE")
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_READ_TOKEN_FILE")
    if $plaintext; then
        CLUSTER_SCHEME=http
    else
        CLUSTER_TLS_DIR=$CLUSTER_DIR/tls
        CLUSTER_CA=$CLUSTER_TLS_DIR/ca/ca.pem
        "$BLOCKD" cert ca --dir "$CLUSTER_TLS_DIR/ca" --cluster "$CLUSTER_ID" >/dev/null ||
            fail "cluster_init: blockd cert ca"
        _cluster_cert agent volcli volcli
        _cluster_cert ctl blobcli blobcli
        _cluster_cert agent blobcli blobcli-agent
    fi
    local tmpfs=false
    [ "$(stat -f -c %T "$CLUSTER_DIR")" = tmpfs ] && tmpfs=true

    # Names and ports first: every config lists its peers.
    local i name
    for ((i = 1; i <= n_blobs; i++)); do _cluster_add "blob$i" blob $((10 + i)); done
    for ((i = 1; i <= n_proxies; i++)); do _cluster_add "proxy$i" proxy "$i"; done
    for ((i = 1; i <= n_agents; i++)); do _cluster_add "agent$i" agent ""; done

    local peers proxies
    peers=$(for ((i = 1; i <= n_proxies; i++)); do
        jq -n --argjson id "$i" --arg a "${CLUSTER_WIRE[proxy$i]}" '{id: $id, addr: $a}'
    done | jq -s .)
    proxies=$(for ((i = 1; i <= n_proxies; i++)); do echo "\"${CLUSTER_WIRE[proxy$i]}\""; done | jq -s .)
    # A lone blob server heartbeats to a claimed port nobody listens on: its
    # links keep retrying, as they do before the proxies exist.
    [ "$n_proxies" -gt 0 ] || proxies=$(jq -n --arg a "127.0.0.1:$(free_port)" '[$a]')

    for name in "${CLUSTER_NAMES[@]}"; do
        local d=$CLUSTER_DIR/$name role=${CLUSTER_ROLE[$name]} section fault
        mkdir -p "$d"
        fault=$(_cluster_faults "$name" "${faults[@]}") || fail "cluster_init: bad --fault"
        case "$role" in
        blob)
            section=$(jq -n --argjson id "${CLUSTER_NODE_ID[$name]}" --arg l "${CLUSTER_WIRE[$name]}" \
                --arg a "${CLUSTER_ADMIN[$name]}" --arg dd "$d/data" --argjson p "$proxies" \
                '{id: $id, listen: $l, admin: $a, data_dir: $dd, proxies: $p}') ;;
        proxy)
            section=$(jq -n --argjson id "${CLUSTER_NODE_ID[$name]}" --arg l "${CLUSTER_WIRE[$name]}" \
                --arg a "${CLUSTER_ADMIN[$name]}" --arg dd "$d/data" --argjson p "$peers" \
                --argjson t "$tmpfs" \
                '{id: $id, listen: $l, admin: $a, data_dir: $dd, peers: $p}
                 + (if $t then {allow_tmpfs: true} else {} end)') ;;
        agent)
            section=$(jq -n --arg id "$name" --arg n "${CLUSTER_NBD[$name]}" \
                --arg a "${CLUSTER_ADMIN[$name]}" --arg cd "$d/cache" --argjson p "$proxies" \
                --arg vd "$d/vols" \
                '{id: $id, nbd_listen: $n, admin: $a, proxies: $p, cache_dir: $cd,
                  nbd_volume_dir: $vd}') ;;
        esac
        [ "$fault" = "{}" ] || section=$(jq --argjson f "$fault" '. + {fault: $f}' <<<"$section")
        if ! $plaintext; then
            _cluster_cert "$role" "${CLUSTER_NODE_ID[$name]:-$name}" "$name"
            section=$(jq --arg c "$CLUSTER_TLS_DIR/$name.pem" --arg k "$CLUSTER_TLS_DIR/$name.key" \
                '. + {cert_file: $c, key_file: $k}' <<<"$section")
        fi
        local spec target kv
        for spec in "${sets[@]}"; do
            target=${spec%%.*}
            kv=${spec#*.}
            [ "$target" = "$role" ] || [ "$target" = "$name" ] || continue
            section=$(jq --arg k "${kv%%=*}" --argjson v "${kv#*=}" '. + {($k): $v}' \
                <<<"$section") || fail "cluster_init: bad --set $spec"
        done
        jq -n --arg cid "$CLUSTER_ID" --arg tok "$CLUSTER_TOKEN_FILE" \
            --arg rtok "$CLUSTER_READ_TOKEN_FILE" --arg ca "$CLUSTER_CA" \
            --arg log "$d/blockd.log" --arg lvl "$level" --arg role "$role" \
            --argjson s "$section" \
            '{cluster_id: $cid} +
             (if $ca == "" then {insecure_plaintext: true} else {tls_ca_file: $ca} end) +
             {admin_token_file: $tok, admin_read_token_file: $rtok,
              log: {file: $log, level: $lvl}, ($role): $s}' >"$d/$name.json" ||
            fail "cluster_init: writing $d/$name.json"
    done
}

# _cluster_cert ROLE ID NAME: a certificate of the cluster's CA for ROLE
# and ID in DIR/tls/NAME.{pem,key}; localhost names for host-name checks,
# and the process's namespace address with --netns.
_cluster_cert() {
    local san=(--san DNS:localhost --san IP:127.0.0.1)
    if $_cluster_netns && [ -n "${NETNS_IP[$3]:-}" ]; then san+=(--san "IP:${NETNS_IP[$3]}"); fi
    "$BLOCKD" cert issue --ca "$CLUSTER_TLS_DIR/ca" --role "$1" --id "$2" \
        --out "$CLUSTER_TLS_DIR/$3" "${san[@]}" >/dev/null ||
        fail "cluster_init: blockd cert issue $1 $2"
}

# _cluster_add NAME ROLE NODE_ID: register a process and pick its ports.
_cluster_add() {
    local name=$1 role=$2
    CLUSTER_NAMES+=("$name")
    CLUSTER_ROLE[$name]=$role
    CLUSTER_PID[$name]=
    CLUSTER_NODE_ID[$name]=$3
    if $_cluster_netns; then
        netns_add_node "$name"
        local ip=${NETNS_IP[$name]}
        _cluster_ip_name[$ip]=$name
        CLUSTER_ADMIN[$name]=$ip:7001
        if [ "$role" = agent ]; then CLUSTER_NBD[$name]=$ip:10809; else CLUSTER_WIRE[$name]=$ip:7000; fi
        return 0
    fi
    CLUSTER_ADMIN[$name]=127.0.0.1:$(free_port)
    if [ "$role" = agent ]; then
        CLUSTER_NBD[$name]=127.0.0.1:$(free_port)
    else
        CLUSTER_WIRE[$name]=127.0.0.1:$(free_port)
    fi
}

# _cluster_in NAME: the command prefix that runs a program inside NAME's
# network namespace (--netns), or nothing.
_cluster_in() {
    $_cluster_netns || return 0
    printf '%s\n' nsenter "--net=/run/netns/${NETNS_NS[$1]}" --
}

# cluster_exec NAME CMD...: run CMD where NAME runs (its namespace with
# --netns), e.g. cluster_exec agent1 "$BLOCKD_FSX" --uri "$(cluster_uri vol0)".
# cluster_spawn NAME CMD...: the same in the background of the test's
# shell; $! is then CMD's own pid (nsenter execs it), to stop it by pid.
cluster_exec() {
    local name=$1
    shift
    _cluster_check_name "$name"
    local pre
    mapfile -t pre < <(_cluster_in "$name")
    "${pre[@]}" "$@"
}
cluster_spawn() {
    local name=$1
    shift
    _cluster_check_name "$name"
    local pre
    mapfile -t pre < <(_cluster_in "$name")
    "${pre[@]}" "$@" &
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

# cluster_set NAME KEY=JSON / cluster_unset NAME KEY: change one key of
# NAME's role section (e.g. cluster_unset blob1 fault); takes effect at its
# next start.
cluster_set() {
    _cluster_check_name "$1"
    local f=$CLUSTER_DIR/$1/$1.json kv=$2
    jq --arg r "${CLUSTER_ROLE[$1]}" --arg k "${kv%%=*}" --argjson v "${kv#*=}" \
        '.[$r][$k] = $v' "$f" >"$f.new" && mv "$f.new" "$f" || fail "cluster_set $1 $2"
}
cluster_unset() {
    _cluster_check_name "$1"
    local f=$CLUSTER_DIR/$1/$1.json
    jq --arg r "${CLUSTER_ROLE[$1]}" --arg k "$2" 'del(.[$r][$k])' "$f" >"$f.new" &&
        mv "$f.new" "$f" || fail "cluster_unset $1 $2"
}

_cluster_check_name() {
    [ -n "${CLUSTER_ROLE[$1]:-}" ] || fail "no cluster process named '$1'"
}

# cluster_node_name ID: the name of the blob server or proxy with node id ID.
cluster_node_name() {
    local name
    for name in "${CLUSTER_NAMES[@]}"; do
        [ "${CLUSTER_NODE_ID[$name]}" = "$1" ] && { echo "$name"; return 0; }
    done
    fail "no cluster node with id $1"
}

# ---- Processes -------------------------------------------------------------------

# cluster_running NAME: true if NAME has a live pid.
cluster_running() {
    local pid=${CLUSTER_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# cluster_start [NAME...]: start the named processes (default all) in start
# order: blobs, proxies, agents.  A process that dies within 0.2 s fails
# the test with its log.  Use cluster_wait_ready to wait until they serve.
cluster_start() {
    local want=("$@") name role
    [ ${#want[@]} -gt 0 ] || want=("${CLUSTER_NAMES[@]}")
    for name in "${want[@]}"; do _cluster_check_name "$name"; done
    for role in blob proxy agent; do
        for name in "${want[@]}"; do
            [ "${CLUSTER_ROLE[$name]}" = "$role" ] || continue
            cluster_running "$name" && fail "cluster_start: $name is already running"
            # nsenter and env exec the next program: $! stays blockd's pid.
            local pre=()
            mapfile -t pre < <(_cluster_in "$name")
            if $_cluster_powercut; then
                local root=$CLUSTER_DIR/$name/data
                [ "$role" = agent ] && root=$CLUSTER_DIR/$name/cache
                mkdir -p "$root" "$CLUSTER_DIR/powercut/$name"
                _cluster_starts[$name]=$(( ${_cluster_starts[$name]:-0} + 1 ))
                pre+=(env "LD_PRELOAD=$POWERCUT_LIB" "POWERCUT_ROOTS=$root"
                    "POWERCUT_STATE=$CLUSTER_DIR/powercut/$name"
                    "POWERCUT_SEED=$((CLUSTER_POWERCUT_SEED * 1000 + ${_cluster_starts[$name]}))"
                    "POWERCUT_REPORT=$CLUSTER_DIR/powercut.log"
                    "POWERCUT_NO_REORDER=${CLUSTER_POWERCUT_NO_REORDER[$name]:-0}")
            fi
            # In this shell (not a subshell), so $! is blockd's own pid.
            "${pre[@]}" "$BLOCKD" --role="$role" --config "$CLUSTER_DIR/$name/$name.json" \
                </dev/null >>"$CLUSTER_DIR/$name/out.log" 2>&1 &
            CLUSTER_PID[$name]=$!
            _cluster_paused[$name]=
            echo "cluster: started $name pid ${CLUSTER_PID[$name]}"
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
    _cluster_wait_gone "$1" 10 || fail "cluster_kill: $1 (pid $pid) survived SIGKILL"
    echo "cluster: killed $1 pid $pid"
}

# cluster_stop NAME...: SIGTERM each, wait up to CLUSTER_STOP_TIMEOUT s.
# Returns 1 if any ignored it (it is then SIGKILLed) or exited non-zero: a
# clean stop is part of the contract.  Not running: nothing to do.
cluster_stop() {
    local name pid rc=0
    for name in "$@"; do
        _cluster_check_name "$name"
        pid=${CLUSTER_PID[$name]}
        [ -n "$pid" ] || continue
        [ -n "${_cluster_paused[$name]}" ] && kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null || true
        if ! _cluster_wait_gone "$name" "$CLUSTER_STOP_TIMEOUT"; then
            echo "cluster: $name (pid $pid) ignored SIGTERM for ${CLUSTER_STOP_TIMEOUT}s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            _cluster_wait_gone "$name" 10
            rc=1
        elif [ "${CLUSTER_EXIT[$name]}" != 0 ]; then
            echo "cluster: $name (pid $pid) exited with status ${CLUSTER_EXIT[$name]} on SIGTERM" >&2
            rc=1
        fi
        echo "cluster: stopped $name pid $pid"
    done
    return $rc
}

# cluster_stop_all: stop every running process, agents first, then
# proxies, then blobs (an agent ships what it holds before it goes; a
# proxy needs its blob servers); fail the test if one did not stop cleanly
# or any printed a sanitizer report (ASan, LSan, UBSan).
cluster_stop_all() {
    local i name bad=()
    for ((i = ${#CLUSTER_NAMES[@]} - 1; i >= 0; i--)); do
        name=${CLUSTER_NAMES[$i]}
        cluster_stop "$name" || bad+=("$name")
    done
    [ ${#bad[@]} -eq 0 ] || { cluster_logs "${bad[@]}"; fail "unclean stop: ${bad[*]}"; }
    _cluster_sanitizer_check || fail "sanitizer report (above)"
}

# cluster_powercut [NAME...]: cut the power of every running process (or
# those named) at the same moment (--powercut): freeze them all, send each
# the cut signal, thaw them; each writes its crash state and dies by
# SIGKILL.  Fails the test if one survives 10 s or dies otherwise.
cluster_powercut() {
    $_cluster_powercut || fail "cluster_powercut: cluster_init --powercut first"
    local names=("$@") name
    [ ${#names[@]} -gt 0 ] || mapfile -t names < <(for name in "${CLUSTER_NAMES[@]}"; do
        cluster_running "$name" && echo "$name"; done)
    for name in "${names[@]}"; do kill -STOP "${CLUSTER_PID[$name]}"; done
    for name in "${names[@]}"; do kill -USR2 "${CLUSTER_PID[$name]}"; done
    for name in "${names[@]}"; do kill -CONT "${CLUSTER_PID[$name]}"; done
    for name in "${names[@]}"; do
        _cluster_wait_gone "$name" 10 || fail "cluster_powercut: $name survived its power cut"
        [ "${CLUSTER_EXIT[$name]}" = 137 ] ||
            fail "cluster_powercut: $name exited ${CLUSTER_EXIT[$name]}, not by the cut"
    done
    echo "cluster: power cut: ${names[*]}"
}

# cluster_restart NAME: stop (if running), then start.
cluster_restart() {
    cluster_stop "$1" || true
    cluster_start "$1"
}

# cluster_pause / cluster_resume NAME: SIGSTOP / SIGCONT (row 4).  Both
# return once the process is stopped / running again (signals take effect
# asynchronously), or fail the test after 5 s.  A paused process is left
# out of cluster_wait_ready and cluster_leader.
cluster_pause() {
    _cluster_check_name "$1"
    cluster_running "$1" || fail "cluster_pause: $1 is not running"
    kill -STOP "${CLUSTER_PID[$1]}"
    _cluster_wait_state "${CLUSTER_PID[$1]}" stopped || fail "cluster_pause: $1 did not stop"
    _cluster_paused[$1]=1
    echo "cluster: paused $1"
}
cluster_resume() {
    _cluster_check_name "$1"
    cluster_running "$1" || fail "cluster_resume: $1 is not running"
    kill -CONT "${CLUSTER_PID[$1]}"
    _cluster_wait_state "${CLUSTER_PID[$1]}" running || fail "cluster_resume: $1 did not resume"
    _cluster_paused[$1]=
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

# _cluster_wait_gone NAME SECS: true once NAME's process is gone, within
# SECS; then its exit status is in CLUSTER_EXIT[NAME] and its pid cleared.
_cluster_wait_gone() {
    local pid=${CLUSTER_PID[$1]} end=$((SECONDS + $2)) st
    while kill -0 "$pid" 2>/dev/null; do
        # A child that died is a zombie until waited for.
        [ "$(ps -o stat= -p "$pid" 2>/dev/null)" = Z ] && break
        [ $SECONDS -lt $end ] || return 1
        sleep 0.05
    done
    st=0
    wait "$pid" 2>/dev/null || st=$?
    CLUSTER_EXIT[$1]=$st
    CLUSTER_PID[$1]=
    _cluster_paused[$1]=
    return 0
}

# ---- Readiness and status --------------------------------------------------------

# cluster_get NAME PATH: GET PATH (with any query) from NAME's admin
# endpoint; NAME "leader" is the current leader proxy.  The body on stdout;
# fails (1) on no answer or an HTTP error.
cluster_get() {
    local name=$1
    [ "$name" = leader ] && { name=$(cluster_leader) || return 1; }
    _cluster_check_name "$name"
    cluster_curl -f "$(cluster_url "$name" "$2")"
}

# cluster_metric NAME REGEX: the sum of NAME's /metrics samples whose line
# starts with REGEX (a metric name, optionally with labels), 0 if none.
cluster_metric() {
    cluster_get "$1" /metrics | awk -v re="$2" '$0 ~ "^" re {s += $NF} END {print s + 0}'
}

# cluster_url NAME PATH: NAME's admin URL for PATH (https unless --plaintext).
cluster_url() {
    _cluster_check_name "$1"
    echo "$CLUSTER_SCHEME://${CLUSTER_ADMIN[$1]}$2"
}

# cluster_curl ARGS...: curl with the cluster's CA, the admin token and the
# HTTP timeout; -s (add -f, -o, -w, -X as needed).  TOKEN=FILE in the
# environment picks another token (e.g. CLUSTER_READ_TOKEN_FILE), TOKEN=
# none.
cluster_curl() {
    local ca=() auth=() tok=${TOKEN-$CLUSTER_TOKEN_FILE} pre=() a
    [ -z "$CLUSTER_CA" ] || ca=(--cacert "$CLUSTER_CA")
    [ -z "$tok" ] || auth=(-H "Authorization: Bearer $(<"$tok")")
    # --netns: from inside the namespace of the process the URL names.
    if $_cluster_netns; then
        for a in "$@"; do
            [[ $a =~ ^https?://([0-9.]+): ]] || continue
            local n=${_cluster_ip_name[${BASH_REMATCH[1]}]:-}
            [ -z "$n" ] || mapfile -t pre < <(_cluster_in "$n")
        done
    fi
    "${pre[@]}" curl -s --max-time "$CLUSTER_HTTP_TIMEOUT" "${ca[@]}" "${auth[@]}" "$@"
}

# cluster_status NAME: GET /v1/status of NAME (JSON on stdout).
cluster_status() { cluster_get "$1" /v1/status; }

# cluster_field NAME PATH FILTER: jq -r FILTER of NAME's JSON at PATH, e.g.
# cluster_field leader /v1/status .repair.passes (booleans print as
# true/false).  Fails (1) if NAME does not answer.
cluster_field() {
    local js
    js=$(cluster_get "$1" "$2") || return 1
    jq -r "$3" <<<"$js"
}

# _cluster_raft NAME: "STATE LEADER_ID" of a proxy, from its /v1/status
# {"raft": {"state": "leader"|"follower"|..., "leader_id": N}}.
_cluster_raft() {
    cluster_field "$1" /v1/status '"\(.raft.state // "unknown") \(.raft.leader_id // 0)"' 2>/dev/null
}

# _cluster_live ROLE: the running, unpaused processes of ROLE.
_cluster_live() {
    local name
    for name in "${CLUSTER_NAMES[@]}"; do
        [ "${CLUSTER_ROLE[$name]}" = "$1" ] && cluster_running "$name" &&
            [ -z "${_cluster_paused[$name]}" ] && echo "$name"
    done
    return 0
}

# cluster_leader: print the name of the leader proxy; fail (1) if none.
# Several self-declared leaders (a paused or cut-off old leader that came
# back): the one that most proxies name wins.
cluster_leader() {
    local name state id leaders=() votes best= bestn=-1
    declare -A named=()
    for name in $(_cluster_live proxy); do
        read -r state id < <(_cluster_raft "$name") || continue
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

# cluster_wait_applied [SECS]: every live proxy's index has applied the
# leader's commit index as it is now (default 30 s; fails the test after).
# A follower's index may lag the commit by a heartbeat or more: wait for
# this before reading state through any proxy that must include what was
# just committed.
cluster_wait_applied() {
    local secs=${1:-30} leader commit name
    leader=$(cluster_leader) || fail "cluster_wait_applied: no leader"
    commit=$(cluster_field "$leader" /v1/status '.raft.commit_index') ||
        fail "cluster_wait_applied: $leader did not answer"
    for name in $(_cluster_live proxy); do
        wait_for "$secs" "[ \"\$(cluster_field $name /v1/status '.index.applied_index // 0')\" -ge $commit ]"
    done
}

# cluster_wait_ready [SECS]: every running, unpaused process answers
# /v1/status; if proxies run, one of them is leader; and if three or more
# blob servers run too, the leader has a partition whose three servers are
# up (writes need one).  Default 30 s; fails the test with the logs after.
cluster_wait_ready() {
    local secs=${1:-30} end name left why
    end=$((SECONDS + secs))
    while :; do
        left=()
        for name in "${CLUSTER_NAMES[@]}"; do
            cluster_running "$name" && [ -z "${_cluster_paused[$name]}" ] || continue
            cluster_status "$name" >/dev/null 2>&1 || left+=("$name")
        done
        why=
        if [ ${#left[@]} -gt 0 ]; then
            why="not answering /v1/status: ${left[*]}"
        elif [ -n "$(_cluster_live proxy)" ]; then
            if ! cluster_leader >/dev/null 2>&1; then
                why="no proxy is leader"
            elif [ "$(_cluster_live blob | wc -l)" -ge 3 ] && ! _cluster_writable; then
                why="no partition with three servers up"
            fi
        fi
        [ -n "$why" ] || return 0
        if [ $SECONDS -ge $end ]; then
            echo "cluster: $why" >&2
            cluster_logs
            fail "cluster_wait_ready: not ready after ${secs}s"
        fi
        sleep 0.2
    done
}

_cluster_writable() {
    cluster_field leader /v1/cluster '[.partitions[] | select(.replicas_up == 3)] | length' \
        2>/dev/null | grep -qv '^0$'
}

# ---- Volumes, data and placement -------------------------------------------------

# cluster_admin METHOD PATH [BODY]: an admin call to the leader (or any
# proxy that answers: followers forward or redirect), with the token,
# retried while the answer is 503 or none for up to 30 s.  Prints the
# HTTP status; the body is in $CLUSTER_DIR/last-response.  Fails the test
# only when no proxy answers in time.
cluster_admin() {
    local method=$1 path=$2 body=${3:-} target code end=$((SECONDS + 30)) data=()
    [ -z "$body" ] || data=(-H "Content-Type: application/json" --data "$body")
    while :; do
        target=$(cluster_leader 2>/dev/null) || target=$(_cluster_live proxy | head -1)
        [ -n "$target" ] || fail "cluster_admin: no proxy running"
        code=$(cluster_curl -o "$CLUSTER_DIR/last-response" -w '%{http_code}' \
            --location-trusted -X "$method" "${data[@]}" "$(cluster_url "$target" "$path")") ||
            code=000
        case "$code" in
        000 | 503) ;;
        *) echo "$code"; return 0 ;;
        esac
        [ $SECONDS -lt $end ] || fail "cluster_admin $method $path: no proxy answered in 30 s"
        sleep 0.3
    done
}

# cluster_create_volume NAME SIZE [--attach AGENT | --no-attach]
#                       [--read-only] [--client ID]: POST /v1/volumes
# {"name", "size"}, then attach it (cluster_attach) to AGENT, agent1 by
# default (tests of the proxy alone attach to volcli, the wire tool's
# agent identity).  SIZE takes K/M/G/T suffixes.  Any answer but 2xx fails
# the test.
cluster_create_volume() {
    local name=$1 bytes body code agent=agent1 opts=()
    bytes=$(_cluster_size "$2") || fail "cluster_create_volume: bad size '$2'"
    shift 2
    while [ $# -gt 0 ]; do
        case "$1" in
        --attach) agent=$2; shift 2 ;;
        --no-attach) agent=; shift ;;
        --read-only) opts+=(--read-only); shift ;;
        --client) opts+=(--client "$2"); shift 2 ;;
        *) fail "cluster_create_volume: unknown option $1" ;;
        esac
    done
    body=$(jq -cn --arg n "$name" --argjson s "$bytes" '{name: $n, size: $s}')
    code=$(cluster_admin POST /v1/volumes "$body")
    case "$code" in
    2??) echo "cluster: created volume $name ($bytes bytes)" ;;
    *) fail "cluster_create_volume $name: HTTP $code: $(cat "$CLUSTER_DIR/last-response")" ;;
    esac
    [ -z "$agent" ] || cluster_attach "$name" "$agent" "${opts[@]}"
}

# cluster_attach VOLUME AGENT [--read-only] [--client ID] [--force]: POST
# /v1/volumes/VOLUME/attach; any answer but 200 fails the test (call
# cluster_admin to see a refusal).  The agent learns of it within about a
# second (its volume socket appears then: cluster_vol_socket waits).
cluster_attach() {
    local name=$1 agent=$2 ro=false force=false client= body code
    shift 2
    while [ $# -gt 0 ]; do
        case "$1" in
        --read-only) ro=true; shift ;;
        --force) force=true; shift ;;
        --client) client=$2; shift 2 ;;
        *) fail "cluster_attach: unknown option $1" ;;
        esac
    done
    body=$(jq -cn --arg a "$agent" --argjson r "$ro" --argjson f "$force" --arg c "$client" \
        '{agent: $a, read_only: $r, force: $f} + (if $c == "" then {} else {client: $c} end)')
    code=$(cluster_admin POST "/v1/volumes/$name/attach" "$body")
    [ "$code" = 200 ] ||
        fail "cluster_attach $name $agent: HTTP $code: $(cat "$CLUSTER_DIR/last-response")"
    echo "cluster: attached $name to $agent${client:+ for client $client}$($ro && echo ' read-only')"
}

# cluster_detach VOLUME [--force]: DELETE /v1/volumes/VOLUME/attach; any
# answer but 200 fails the test.
cluster_detach() {
    local path=/v1/volumes/$1/attach code
    [ "${2:-}" = --force ] && path+="?force=1"
    code=$(cluster_admin DELETE "$path")
    [ "$code" = 200 ] || fail "cluster_detach $1: HTTP $code: $(cat "$CLUSTER_DIR/last-response")"
    echo "cluster: detached $1"
}

# _cluster_size 64M -> 67108864
_cluster_size() {
    local s=$1 n mult=1
    [[ $s =~ ^([0-9]+)([KMGT]?)$ ]] || return 1
    n=${BASH_REMATCH[1]}
    case "${BASH_REMATCH[2]}" in K) mult=1024 ;; M) mult=$((1 << 20)) ;; G) mult=$((1 << 30)) ;; T) mult=$((1 << 40)) ;; esac
    echo $((n * mult))
}

# cluster_uri VOLUME [AGENT]: the NBD URI of VOLUME on AGENT (default agent1).
cluster_uri() {
    local agent=${2:-agent1}
    _cluster_check_name "$agent"
    echo "nbd://${CLUSTER_NBD[$agent]}/$1"
}

# cluster_vol_socket VOLUME [AGENT]: the path of VOLUME's socket on AGENT
# (default agent1), once it exists (the agent makes it within about a
# second of the attach); fails the test after 10 s.
cluster_vol_socket() {
    local agent=${2:-agent1} path end=$((SECONDS + 10))
    _cluster_check_name "$agent"
    path=$CLUSTER_DIR/$agent/vols/$1.sock
    until [ -S "$path" ]; do
        [ $SECONDS -lt $end ] || fail "cluster_vol_socket: no $path after 10 s"
        sleep 0.1
    done
    echo "$path"
}

# cluster_ctl ARGS...: `blockd ctl` against every proxy (CLUSTER_CTL_VIA=NAME:
# that proxy only), with the token and the CA, bounded by
# CLUSTER_CTL_TIMEOUT seconds (60).
cluster_ctl() {
    local name urls=()
    for name in "${CLUSTER_NAMES[@]}"; do
        [ -z "${CLUSTER_CTL_VIA:-}" ] || [ "$name" = "$CLUSTER_CTL_VIA" ] || continue
        [ "${CLUSTER_ROLE[$name]}" = proxy ] && urls+=(--url "${CLUSTER_ADMIN[$name]}")
    done
    [ ${#urls[@]} -gt 0 ] || fail "cluster_ctl: no proxy named ${CLUSTER_CTL_VIA:-}"
    local ca=() pre=()
    [ -z "$CLUSTER_CA" ] || ca=(--ca "$CLUSTER_CA")
    # --netns: from the first live proxy's namespace (it reaches the others
    # unless it is cut off).
    ! $_cluster_netns || mapfile -t pre < <(_cluster_in "$(_cluster_live proxy | head -1)")
    "${pre[@]}" timeout "${CLUSTER_CTL_TIMEOUT:-60}" "$BLOCKD" ctl "${urls[@]}" "${ca[@]}" \
        --token-file "$CLUSTER_TOKEN_FILE" "$@"
}

# cluster_blobcli NAME ARGS...: tests/tools/blobcli against blob server NAME.
cluster_blobcli() {
    local name=$1
    shift
    _cluster_check_name "$name"
    local tls=() who=blobcli a
    for a in "$@"; do [ "$a" = --as-agent ] && who=blobcli-agent; done
    [ -z "$CLUSTER_CA" ] || tls=(--ca "$CLUSTER_CA" --cert "$CLUSTER_TLS_DIR/$who.pem"
        --key "$CLUSTER_TLS_DIR/$who.key")
    local pre
    mapfile -t pre < <(_cluster_in "$name")
    "${pre[@]}" "$BLOBCLI" --cluster "$CLUSTER_ID" "${tls[@]}" --addr "${CLUSTER_WIRE[$name]}" "$@"
}

# cluster_volcli PROXY ARGS...: tests/tools/volcli (an agent's side of the
# wire) against PROXY.
cluster_volcli() {
    local name=$1
    shift
    _cluster_check_name "$name"
    local tls=()
    [ -z "$CLUSTER_CA" ] || tls=(--ca "$CLUSTER_CA" --cert "$CLUSTER_TLS_DIR/volcli.pem"
        --key "$CLUSTER_TLS_DIR/volcli.key")
    local pre
    mapfile -t pre < <(_cluster_in "$name")
    "${pre[@]}" "$VOLCLI" --cluster "$CLUSTER_ID" "${tls[@]}" "${CLUSTER_WIRE[$name]}" "$@"
}

# cluster_vol_write VOLUME SEED MIB [OFF_MIB]: volcli write through proxy1
# (fails the test on error); prints its "ok" line and raises
# CLUSTER_VOL_INDEX to the highest raft index acknowledged so far.
cluster_vol_write() {
    local out
    out=$(cluster_volcli proxy1 write "$@" 2>&1) || fail "volcli write $*: $out"
    grep '^ok' <<<"$out"
    cluster_note_index <<<"$out"
}

# cluster_note_index: raise CLUSTER_VOL_INDEX to the "max raft index" in
# volcli write output on stdin (for writes run outside cluster_vol_write).
cluster_note_index() {
    local idx
    idx=$(sed -n 's/.*max raft index \([0-9]*\).*/\1/p' | sort -n | tail -1)
    [ "${idx:-0}" -gt "$CLUSTER_VOL_INDEX" ] && CLUSTER_VOL_INDEX=$idx
    return 0
}

# cluster_vol_verify VOLUME SEED MIB [OFF_MIB]: volcli verify (a read-only
# attach) through proxy1, reading at least at CLUSTER_VOL_INDEX
# (read-your-writes across volcli processes); fails the test on a mismatch.
cluster_vol_verify() {
    local out
    out=$(cluster_volcli proxy1 verify "$1" "$2" "$3" "${4:-0}" "$CLUSTER_VOL_INDEX" 2>&1) ||
        fail "volcli verify $*: $out"
    grep '^ok' <<<"$out"
}

# cluster_partitions: one line per partition on the leader, "ID EPOCH N1 N2 N3"
# (node ids of its three members).
cluster_partitions() {
    cluster_field leader /v1/cluster '.partitions[] | "\(.id) \(.epoch) \(.nodes | join(" "))"'
}

# cluster_blob_ids NAME PARTITION: the blob ids blob server NAME lists in
# PARTITION, sorted.
cluster_blob_ids() {
    cluster_blobcli "$1" list --partition "$2" --max 1000 | awk '{print $1}' | sort -n
}

# cluster_in_sync [MIN_BLOBS]: each partition's three members list the same
# blob ids, and at least MIN_BLOBS (default 1) in all.  Prints what differs.
cluster_in_sync() {
    local min=${1:-1} total=0 p e m a b c parts
    parts=$(cluster_partitions) || return 1
    while read -r p e m[0] m[1] m[2]; do
        a=$(cluster_blob_ids "$(cluster_node_name "${m[0]}")" "$p") || return 1
        b=$(cluster_blob_ids "$(cluster_node_name "${m[1]}")" "$p") || return 1
        c=$(cluster_blob_ids "$(cluster_node_name "${m[2]}")" "$p") || return 1
        if [ "$a" != "$b" ] || [ "$a" != "$c" ]; then
            echo "partition $p: members ${m[*]} list $(wc -w <<<"$a") / $(wc -w <<<"$b") / $(wc -w <<<"$c") blobs"
            return 1
        fi
        total=$((total + $(wc -w <<<"$a")))
    done <<<"$parts"
    [ "$total" -ge "$min" ] || { echo "only $total blobs in all partitions"; return 1; }
}

# ---- Logs and cleanup ------------------------------------------------------------

# cluster_logs [NAME...]: the last CLUSTER_LOG_LINES (40) lines of each
# process's out.log and blockd.log, on stderr.
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

# _cluster_sanitizer_check: false, with the report, if any out.log holds one.
_cluster_sanitizer_check() {
    local name f ok=0
    for name in "${CLUSTER_NAMES[@]}"; do
        f=$CLUSTER_DIR/$name/out.log
        if [ -f "$f" ] && grep -q "Sanitizer\|runtime error:" "$f"; then
            echo "----- $name: sanitizer report in $f -----" >&2
            grep -m1 -A 40 "Sanitizer\|runtime error:" "$f" >&2
            ok=1
        fi
    done
    return $ok
}

# _cluster_cleanup: at exit (registered by cluster_init).  Logs first if
# the test failed, then stop every process by pid; a sanitizer report
# fails the test.
_cluster_cleanup() {
    local name pid
    [ "${TEST_EXIT_STATUS:-0}" -eq 0 ] || [ "${TEST_EXIT_STATUS:-0}" -eq 77 ] || cluster_logs
    for name in "${CLUSTER_NAMES[@]}"; do
        pid=${CLUSTER_PID[$name]:-}
        [ -n "$pid" ] || continue
        kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
    done
    for name in "${CLUSTER_NAMES[@]}"; do
        [ -n "${CLUSTER_PID[$name]:-}" ] || continue
        pid=${CLUSTER_PID[$name]}
        _cluster_wait_gone "$name" 5 || { kill -KILL "$pid" 2>/dev/null; _cluster_wait_gone "$name" 5; }
    done
    if ! _cluster_sanitizer_check && [ "${TEST_EXIT_STATUS:-0}" -ne 1 ]; then
        echo "FAIL: sanitizer report (above)" >&2
        TEST_EXIT_STATUS=1
    fi
}
