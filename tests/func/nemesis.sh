# nemesis.sh: faults for the partition tests (CONTRACT rows 4, 5; issue 18
# item 1), on a cluster started with cluster_init --netns.  Source it after
# functions.sh, netns.sh and cluster.sh.
#
#   nemesis_run KIND HOLD_S     inject one fault, hold it HOLD_S seconds, heal
#                               it, wait (bounded) until the cluster serves
#   nemesis_schedule SEED N HOLD_S KIND...   N faults, every KIND once per
#                               round in a seeded order, each held HOLD_S,
#                               2 s apart
#   nemesis_summary             the figures, one line
#
# Kinds:
#   leader-peers   cut the Raft leader from the other proxies only: the
#                  agent and the blob servers still reach it, so it keeps
#                  receiving writes it must not acknowledge (a minority)
#   leader         cut the leader from everything (its bridge port down)
#   proxy          cut one follower proxy from everything
#   blob           cut one blob server from everything
#   agent          cut the agent from every proxy (blob servers still reach)
#   oneway         drop the leader's packets to the other proxies, one way
#                  (they still reach it): an asymmetric partition
#   slow           limit one blob server's or proxy's egress to 2 Mbit/s
#                  with tc's tbf (latency grows with the queue: a congested
#                  link; netem is not in this kernel)
#   pause          SIGSTOP one process (proxy, blob server or agent), SIGCONT
#   kill           SIGKILL one process, start it again after HOLD_S
#
# Checks made here (the history checker does the rest):
#   - no minority proxy acknowledges a mutation: for leader-peers and
#     oneway, the cut proxy's acknowledged writes
#     (blockd_proxy_write_seconds_count) and Raft commit index do not move
#     from 1 s after the cut (replies for entries committed before it have
#     gone by then) to the heal; and with NEMESIS_PROBE_VOL set, a volcli
#     client that reaches only the minority must have its read-write
#     attach and writes to that volume refused (the agent may happen to
#     send the minority nothing); the test fails at once otherwise;
#   - time to a new leader (leader, leader-peers, oneway): from the cut
#     until a proxy on the majority side reports itself leader (polled
#     every 100 ms, bounded by 30 s: a failure);
#   - every fault heals on its own: cluster_wait_ready within 60 s.
# Figures: NEMESIS_FAULTS (faults survived), NEMESIS_LEADER_MS (times to a
# new leader), NEMESIS_LOG (one line per fault in CLUSTER_DIR/nemesis.log).

NEMESIS_FAULTS=0
NEMESIS_LEADER_MS=()
NEMESIS_RECOVER_MS=()
NEMESIS_LOG=

_nemesis_ms() { date +%s%3N; }

_nemesis_log() {
    [ -n "$NEMESIS_LOG" ] || NEMESIS_LOG=$CLUSTER_DIR/nemesis.log
    echo "$(_nemesis_ms) $*" >>"$NEMESIS_LOG"
    echo "nemesis: $*"
}

# _nemesis_pick ROLE [EXCEPT]: a running process of ROLE, seeded by $RANDOM.
_nemesis_pick() {
    local c=() n
    for n in $(_cluster_live "$1"); do [ "$n" = "${2:-}" ] || c+=("$n"); done
    [ ${#c[@]} -gt 0 ] || return 1
    echo "${c[RANDOM % ${#c[@]}]}"
}

# _nemesis_acks PROXY: "ACKED_WRITES COMMIT_INDEX ERROR_REPLIES" from its
# metrics.
_nemesis_acks() {
    cluster_get "$1" /metrics | awk '
        /^blockd_proxy_write_seconds_count/ {a += $2}
        /^blockd_raft_commit_index/ {c = $2}
        /^blockd_proxy_errors_total/ {e += $2}
        END {printf "%d %d %d\n", a, c, e}'
}

# _nemesis_new_leader OLD T0: wait until a proxy other than OLD is leader;
# record the time since T0 (ms).
_nemesis_new_leader() {
    local old=$1 t0=$2 end=$((SECONDS + 30)) n st id
    while [ $SECONDS -lt $end ]; do
        for n in $(_cluster_live proxy); do
            [ "$n" = "$old" ] && continue
            read -r st id < <(_cluster_raft "$n") || continue
            if [ "$st" = leader ]; then
                local ms=$(($(_nemesis_ms) - t0))
                NEMESIS_LEADER_MS+=("$ms")
                _nemesis_log "new leader $n ${ms} ms after the cut of $old"
                return 0
            fi
        done
        sleep 0.1
    done
    fail "nemesis: no new leader within 30 s of cutting $old off"
}

# nemesis_run KIND HOLD_S
nemesis_run() {
    local kind=$1 hold=$2 t0 target peer minority= before after
    local others=()
    t0=$(_nemesis_ms)
    case "$kind" in
    leader-peers | leader | oneway)
        target=$(cluster_leader) || fail "nemesis $kind: no leader"
        for peer in $(_cluster_live proxy); do [ "$peer" = "$target" ] || others+=("$peer"); done
        case "$kind" in
        leader) netns_cut "$target" ;;
        leader-peers) for peer in "${others[@]}"; do netns_cut_peer "$target" "$peer"; done
            minority=$target ;;
        oneway) for peer in "${others[@]}"; do netns_drop "$target" "$peer"; done
            minority=$target ;;
        esac
        _nemesis_log "$kind: cut $target (hold ${hold}s)"
        _nemesis_new_leader "$target" "$t0"
        ;;
    proxy) target=$(_nemesis_pick proxy "$(cluster_leader)") || fail "nemesis: no follower"
        netns_cut "$target"; _nemesis_log "proxy: cut follower $target (hold ${hold}s)" ;;
    blob) target=$(_nemesis_pick blob) || fail "nemesis: no blob server"
        netns_cut "$target"; _nemesis_log "blob: cut $target (hold ${hold}s)" ;;
    agent) target=$(_nemesis_pick agent) || fail "nemesis: no agent"
        for peer in $(_cluster_live proxy); do netns_cut_peer "$target" "$peer"; done
        _nemesis_log "agent: cut $target from every proxy (hold ${hold}s)" ;;
    slow) target=$(_nemesis_pick "$( ((RANDOM % 2)) && echo blob || echo proxy)") || fail "nemesis: none to slow"
        ip netns exec "${NETNS_NS[$target]}" tc qdisc replace dev eth0 root tbf rate 2mbit burst 32kb latency 2s ||
            fail "nemesis slow: tc tbf on $target"
        _nemesis_log "slow: $target egress 2 Mbit/s (tbf; hold ${hold}s)" ;;
    pause) target=$(_nemesis_pick "$(echo proxy blob agent | tr ' ' '\n' | sed -n "$((RANDOM % 3 + 1))p")") ||
        fail "nemesis: none to pause"
        cluster_pause "$target"; _nemesis_log "pause: SIGSTOP $target (hold ${hold}s)" ;;
    kill) target=$(_nemesis_pick "$(echo proxy blob agent | tr ' ' '\n' | sed -n "$((RANDOM % 3 + 1))p")") ||
        fail "nemesis: none to kill"
        cluster_kill "$target"; _nemesis_log "kill: SIGKILL $target (restart after ${hold}s)" ;;
    *) fail "nemesis: unknown kind $kind" ;;
    esac
    if [ -n "$minority" ]; then
        sleep 1
        before=$(_nemesis_acks "$minority") || fail "nemesis: $minority does not answer its admin port"
        local t_probe=$SECONDS
        if [ -n "${NEMESIS_PROBE_VOL:-}" ]; then
            # A client of its own that reaches only the minority proxy: its
            # read-write attach (a Raft commit) and writes must be refused.
            # volcli bounds every call at 20 s.
            local pout
            if pout=$(cluster_volcli "$minority" write "$NEMESIS_PROBE_VOL" "$RANDOM" 1 2>&1); then
                fail "nemesis $kind: minority proxy $minority accepted an attach and writes: $pout"
            fi
            _nemesis_log "$kind: minority $minority refused a client's attach and writes: $(tail -1 <<<"$pout")"
        fi
        local left=$((hold - 1 - (SECONDS - t_probe)))
        sleep "$((left > 1 ? left : 1))"
        after=$(_nemesis_acks "$minority") || fail "nemesis: $minority does not answer its admin port"
        local b=($before) a=($after)
        [ "${b[0]} ${b[1]}" = "${a[0]} ${a[1]}" ] ||
            fail "nemesis $kind: minority proxy $minority acknowledged writes or committed while cut off (acks commit: ${b[0]} ${b[1]} -> ${a[0]} ${a[1]})"
        _nemesis_log "$kind: minority $minority acknowledged nothing and committed nothing while cut off (acks ${a[0]}, commit index ${a[1]}; it answered $((a[2] - b[2])) requests with an error meanwhile)"
    else
        sleep "$hold"
    fi
    case "$kind" in
    leader | proxy | blob | leader-peers | oneway | agent) netns_heal "$target" ;;
    slow) ip netns exec "${NETNS_NS[$target]}" tc qdisc del dev eth0 root ;;
    pause) cluster_resume "$target" ;;
    kill) cluster_start "$target" ;;
    esac
    local th
    th=$(_nemesis_ms)
    cluster_wait_ready 60
    NEMESIS_RECOVER_MS+=("$(($(_nemesis_ms) - th))")
    NEMESIS_FAULTS=$((NEMESIS_FAULTS + 1))
    _nemesis_log "$kind: healed $target; serving again $((${NEMESIS_RECOVER_MS[-1]})) ms after the heal"
}

# nemesis_schedule SEED N HOLD_S KIND...: N faults, in rounds that each
# run every KIND once in a seeded order (so N >= the number of kinds
# covers them all), targets drawn from the same seed.
nemesis_schedule() {
    local seed=$1 n=$2 hold=$3 i j t
    shift 3
    local kinds=("$@") order=()
    RANDOM=$((seed % 32768))
    while [ ${#order[@]} -lt "$n" ]; do
        local round=("${kinds[@]}")
        for ((i = ${#round[@]} - 1; i > 0; i--)); do
            j=$((RANDOM % (i + 1)))
            t=${round[i]}; round[i]=${round[j]}; round[j]=$t
        done
        order+=("${round[@]}")
    done
    for ((i = 0; i < n; i++)); do
        nemesis_run "${order[i]}" "$hold"
        sleep 2
    done
}

# nemesis_summary: faults survived; time to a new leader (max, mean);
# longest time from a heal until the cluster served again.
nemesis_summary() {
    local l=${NEMESIS_LEADER_MS[*]:-} r=${NEMESIS_RECOVER_MS[*]:-}
    echo "nemesis: $NEMESIS_FAULTS faults survived; time to a new leader (ms): ${l:-none} (max $(tr ' ' '\n' <<<"${l:-0}" | sort -n | tail -1)); ready after heal (ms): max $(tr ' ' '\n' <<<"${r:-0}" | sort -n | tail -1)"
}

# nemesis_workload_start VOLUME BLOCKS SEED: blockd-hist clients (4, each
# on its own connection) in agent1's namespace, writing unique stamped
# values to BLOCKS blocks of VOLUME and reading them back, until
# nemesis_workload_check; the history goes to CLUSTER_DIR/history.
nemesis_workload_start() {
    NEMESIS_HIST=$CLUSTER_DIR/history
    NEMESIS_SEED=$3
    cluster_spawn agent1 "$BLOCKD_HIST" run --uri "$(cluster_uri "$1")" --history "$NEMESIS_HIST" \
        --clients 4 --blocks "$2" --seed "$3" --duration 3600 --op-timeout 45 \
        >"$CLUSTER_DIR/hist-run.out" 2>&1
    NEMESIS_HIST_PID=$!
    cleanup_fn kill_pid $NEMESIS_HIST_PID
}

# nemesis_workload_check VOLUME BLOCKS: stop the clients (bounded), read
# every block once more through the agent, and check the history: prints
# the checker's line, sets NEMESIS_CHECK (that line); fails the test on
# any violation.
nemesis_workload_check() {
    kill -TERM "$NEMESIS_HIST_PID" 2>/dev/null || true
    wait_for 60 "! kill -0 $NEMESIS_HIST_PID"
    wait "$NEMESIS_HIST_PID" || fail "blockd-hist run failed: $(tail -5 "$CLUSTER_DIR/hist-run.out")"
    cat "$CLUSTER_DIR/hist-run.out"
    cluster_wait_ready 60
    cluster_exec agent1 "$BLOCKD_HIST" read-all --uri "$(cluster_uri "$1")" --history "$NEMESIS_HIST" \
        --blocks "$2" --seed "$NEMESIS_SEED" --retry-for 60 --op-timeout 45 ||
        fail "the final read of every block failed after the faults healed"
    local rc=0
    "$BLOCKD_HIST" check --history "$NEMESIS_HIST" >"$CLUSTER_DIR/check.out" 2>&1 || rc=$?
    cat "$CLUSTER_DIR/check.out"
    NEMESIS_CHECK=$(grep '^histcheck:' "$CLUSTER_DIR/check.out")
    [ $rc -eq 0 ] || fail "the history is not linearizable or lost data (history: $NEMESIS_HIST)"
}
