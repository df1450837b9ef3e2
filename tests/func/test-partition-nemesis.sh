#!/usr/bin/env bash
# Issue 18 item 1, F6 (CONTRACT C1, C3-C7, C10, C18; rows 4, 5 and 15): a
# seeded schedule of faults, each held 4 s, while four NBD clients write
# unique stamped values to 32 blocks and read them back, every process in
# its own network namespace: a follower proxy cut off, a blob server cut
# off, the agent cut from every proxy, one process's link slowed to
# 2 Mbit/s (tc tbf), a SIGSTOP/SIGCONT and a SIGKILL and restart of a
# proxy, blob server or agent (nemesis.sh has the list and what each
# checks).  Every fault must heal on its own (the cluster serves again
# within 60 s), and the history checker then decides per block that the
# register was linearizable (C7), no flushed write was lost (C1, C5), no
# read was torn (C6) or foreign (C5, C11).
# NEMESIS_FAULTS_N (default 6: each kind once) faults; scripts/soak --partitions N runs
# this with N faults, the leader faults of test-partition-leader.sh
# included.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/cluster.sh"
. "$(dirname "$0")/nemesis.sh"
set -e
[ -x "${BLOCKD_HIST:-}" ] || skip "blockd-hist was not built (libnbd-dev missing?)"
NETNS_DROP_METHOD=nft
netns_requires
requires nsenter --version
requires tc -V
tmp=$(mktmp)
seed=$(test_seed)
n=${NEMESIS_FAULTS_N:-6}
kinds=(${NEMESIS_KINDS:-proxy blob agent slow pause kill})

cluster_init "$tmp/c" --netns --proxies 3 --blobs 3 --agents 1 --set agent.flush_age_ms=300
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
cluster_create_volume probe 16M --attach volcli   # the probe client's own
NEMESIS_PROBE_VOL=probe
nemesis_workload_start vol0 32 "$seed"
sleep 3
nemesis_schedule "$seed" "$n" 4 "${kinds[@]}"
sleep 2
nemesis_workload_check vol0 32
nemesis_summary
echo "F6: $NEMESIS_FAULTS faults survived ($(awk '$2 ~ /:$/ && $3 != "healed" && $3 != "minority" {print $2}' "$NEMESIS_LOG" | tr -d : | sort | uniq -c | awk '{printf "%s%s x%d", s, $2, $1; s=", "}')); $NEMESIS_CHECK (seed $seed)"
cluster_stop_all
