#!/usr/bin/env bash
# Issue 18 item 5 (CONTRACT C4, C5): qemu's NBD client with
# reconnect-delay rides through an agent restart with no error reaching
# the guest.
#   1. qemu-io writes 1 MiB patterns one after another with short sleeps
#      between them while the agent is SIGKILLed and restarted: the writes
#      issued while it is down wait for the reconnect, and every pattern
#      then reads back (acked writes survive the kill from the journal).
#   2. qemu-img convert copies 48 MiB into the volume while the agent is
#      stopped (SIGTERM) and started again mid-copy; qemu-img compare then
#      finds the volume equal to the source.
# Both clients must exit 0 and print no error; the agent must have been
# down while they ran (the test fails if the restart missed them).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires qemu-io --version
requires qemu-img --version
qemu-io --help 2>&1 | grep -q image-opts || skip "qemu-io has no --image-opts"
tmp=$(mktmp)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set agent.flush_age_ms=500
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
host=${CLUSTER_NBD[agent1]%:*}
port=${CLUSTER_NBD[agent1]##*:}
# reconnect-delay: requests issued while the connection is down wait this
# long for it to come back instead of failing.
opts="driver=nbd,server.type=inet,server.host=$host,server.port=$port,export=vol0,reconnect-delay=20"

# --- 1. qemu-io through a SIGKILL of the agent -----------------------------------
n=24
cmds=()
for ((i = 0; i < n; i++)); do
    cmds+=(-c "write -P $((i + 1)) $((i * 2))M 1M" -c "sleep 250")
done
for ((i = 0; i < n; i++)); do cmds+=(-c "read -P $((i + 1)) $((i * 2))M 1M"); done
t0=$SECONDS
timeout 120 qemu-io --image-opts "$opts" "${cmds[@]}" >"$tmp/qio.out" 2>&1 &
qio=$!
cleanup_fn kill_pid $qio
sleep 2
old=${CLUSTER_PID[agent1]}
cluster_kill agent1
down_at=$((SECONDS - t0))
sleep 1
cluster_start agent1
cluster_wait_ready 30
echo "agent1 SIGKILLed (pid $old) ${down_at}s into qemu-io, restarted as pid ${CLUSTER_PID[agent1]}"
rc=0
wait $qio || rc=$?
took=$((SECONDS - t0))
[ $rc -eq 0 ] || { cat "$tmp/qio.out"; fail "qemu-io exited $rc across the agent restart"; }
if grep -qiE 'fail|error|verification|abort' "$tmp/qio.out"; then
    cat "$tmp/qio.out"
    fail "an error reached qemu-io across the agent restart"
fi
wrote=$(grep -c '^wrote 1048576/1048576' "$tmp/qio.out" || true)
read=$(grep -c '^read 1048576/1048576' "$tmp/qio.out" || true)
[ "$wrote" -eq $n ] && [ "$read" -eq $n ] ||
    { cat "$tmp/qio.out"; fail "qemu-io: $wrote of $n writes and $read of $n reads completed"; }
# The writes take n x 250 ms; the kill at 2 s must have landed inside them.
[ $took -gt $((down_at + 1)) ] || fail "qemu-io finished ${took}s in, before the restart mattered"
echo "ok: qemu-io: $n writes and $n pattern reads across an agent SIGKILL, no error (${took}s)"

# --- 2. qemu-img convert through a SIGTERM restart -------------------------------
head -c 48M /dev/urandom >"$tmp/src.img"
truncate -s 64M "$tmp/src.img"
t0=$SECONDS
# -r 6M: 48 MiB take about 8 s at most, so the restart lands inside the
# copy on a fast machine too (it once finished within the first second).
timeout 180 qemu-img convert -p -n -r 6M -f raw "$tmp/src.img" --target-image-opts "$opts" \
    >"$tmp/convert.out" 2>&1 &
conv=$!
cleanup_fn kill_pid $conv
sleep 1
kill -0 $conv 2>/dev/null || { cat "$tmp/convert.out"; fail "qemu-img convert ended within 1 s: the restart would miss it"; }
cluster_stop agent1 || fail "agent1 did not stop cleanly"
sleep 1
cluster_start agent1
cluster_wait_ready 30
rc=0
wait $conv || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/convert.out"; fail "qemu-img convert exited $rc across the agent restart"; }
! grep -qiE 'fail|error' "$tmp/convert.out" || { cat "$tmp/convert.out"; fail "qemu-img convert reported an error"; }
timeout 120 qemu-img compare --image-opts "driver=raw,file.driver=file,file.filename=$tmp/src.img" "$opts" >"$tmp/compare.out" 2>&1 ||
    { cat "$tmp/compare.out"; fail "the volume differs from the source after the convert"; }
echo "ok: qemu-img convert of 48 MiB across an agent stop and start, compare equal ($((SECONDS - t0))s)"
cluster_stop_all
