#!/usr/bin/env bash
# blockd under a stand-in for systemd's notification socket (Type=notify;
# src/runtime/sd_notify.h): a blob server says READY=1 as soon as it
# started; a proxy only once it knows a leader and applied the log, so one
# proxy of three alone says STATUS= (why it waits) and never READY=1 until
# a second one comes; WATCHDOG=1 comes every WATCHDOG_USEC/2 and only for
# the pid WATCHDOG_PID names; SIGTERM sends STOPPING=1 before the drain.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
requires python3 --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 1 --agents 0

# listen NAME: a notify socket for process NAME, its address in $sock;
# its messages go to $tmp/NAME.notify, one line each ("MS MESSAGE",
# newlines as '|').  Run in this shell, so the listener's pid is ours to
# stop at exit.
listen() {
    sock="@blockd-test-$$-$1"
    : >"$tmp/$1.notify"
    python3 "$SRCDIR/tests/func/notify_listen.py" "$sock" "$tmp/$1.notify" >"$tmp/$1.listen" 2>&1 &
    cleanup_fn "kill $! 2>/dev/null"
    wait_for 10 "grep -q listening $tmp/$1.listen"
}
got() { grep -q -- "$2" "$tmp/$1.notify"; }
# wait_got SECS NAME PATTERN: until NAME's messages match PATTERN; 1 after SECS.
wait_got() {
    local end=$((SECONDS + $1))
    until got "$2" "$3"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}
show() { echo "--- $1:"; sed 's/^/    /' "$tmp/$1.notify"; }

# A blob server serves once started: READY=1 with no proxy up at all.
listen blob1
NOTIFY_SOCKET=$sock cluster_start blob1
wait_got 10 blob1 READY=1 || { show blob1; fail "blob1 sent no READY=1"; }
got blob1 'STATUS=starting blob instance 1 of 1' || { show blob1; fail "blob1 sent no start STATUS"; }
got blob1 'READY=1|STATUS=serving: blob\.' || { show blob1; fail "blob1's READY=1 has no serving STATUS"; }

# One proxy of three: no quorum, no leader, so no READY=1; STATUS says why.
# Its watchdog pings every 100 ms (WATCHDOG_USEC 200 ms, its own pid).
listen proxy1
WATCHDOG_USEC=200000 NOTIFY_SOCKET=$sock cluster_start proxy1
wait_got 10 proxy1 'STATUS=waiting: proxy.1: no Raft leader known' ||
    { show proxy1; fail "proxy1 did not say it waits for a leader"; }
sleep 3
got proxy1 READY=1 && { show proxy1; fail "proxy1 said READY=1 without a quorum"; }
pings=$(grep -c 'WATCHDOG=1$' "$tmp/proxy1.notify")
[ "$pings" -ge 10 ] || { show proxy1; fail "proxy1 sent $pings watchdog pings in 3 s, want >= 10"; }

# A second proxy makes a quorum: proxy1 then knows a leader and applies
# the log, and says READY=1.  proxy2's watchdog belongs to another pid:
# it must not ping.
listen proxy2
WATCHDOG_USEC=200000 WATCHDOG_PID=1 NOTIFY_SOCKET=$sock cluster_start proxy2
wait_got 30 proxy1 READY=1 || { show proxy1; fail "proxy1 sent no READY=1 with a quorum"; }
wait_got 30 proxy2 READY=1 || { show proxy2; fail "proxy2 sent no READY=1"; }
got proxy1 'READY=1|STATUS=serving: proxy\.1' || { show proxy1; fail "no serving STATUS"; }
got proxy2 WATCHDOG=1 && { show proxy2; fail "proxy2 pinged for WATCHDOG_PID=1"; }
raft=$(cluster_field proxy1 /v1/status '"\(.raft.leader_id) \(.raft.applied_index) \(.raft.commit_index)"')
read -r leader applied commit <<<"$raft"
[ "$leader" != 0 ] && [ "$applied" -ge 1 ] || fail "proxy1 ready with raft $raft"
echo "proxy1 ready: leader $leader, applied $applied, commit $commit"

# SIGTERM: STOPPING=1 first, then the drain; the process exits cleanly.
cluster_stop proxy1 || fail "proxy1 did not stop cleanly"
got proxy1 'STOPPING=1' || { show proxy1; fail "proxy1 sent no STOPPING=1"; }
stop_line=$(grep -n 'STOPPING=1' "$tmp/proxy1.notify" | head -n 1 | cut -d: -f1)
ready_line=$(grep -n 'READY=1' "$tmp/proxy1.notify" | head -n 1 | cut -d: -f1)
[ "$stop_line" -gt "$ready_line" ] || { show proxy1; fail "STOPPING=1 before READY=1"; }
cluster_stop_all || fail "a process did not stop cleanly"
show proxy1 | grep -v 'WATCHDOG=1$'
echo "notifications: blob READY at once, proxy READY only with a quorum, watchdog, STOPPING"
