#!/usr/bin/env bash
# Issue 18 item 1, F6 (CONTRACT C1, C5-C7, C18; rows 5 and 15): the Raft
# leader partitioned away while four NBD clients write unique stamped
# values to 32 blocks and read them back.  Every process runs in its own
# network namespace (cluster_init --netns).  Three faults, each held 5 s:
#   leader-peers  the leader cut from the other proxies only: the agent and
#                 blob servers still reach it, so it may keep getting
#                 writes; it must acknowledge none and commit nothing, and
#                 a client that reaches only it (volcli, on another volume)
#                 must have its attach and writes refused (C18);
#   leader        the leader cut from everything;
#   oneway        the leader's packets to its peers dropped (nftables), one
#                 way: they still hear it, it never hears back.
# Each must elect a new leader (the time is reported) and heal on its own.
# Then every block is read once more, and the history checker decides that
# each block behaved as a linearizable register (C7), that no flushed
# write was lost (C1, C5) and that no read was torn (C6).  Prints the
# partitions survived, the operations checked, the time to a new leader
# and the longest I/O stall.
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
tmp=$(mktmp)
seed=$(test_seed)

cluster_init "$tmp/c" --netns --proxies 3 --blobs 3 --agents 1 --set agent.flush_age_ms=300
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
cluster_create_volume probe 16M --attach volcli   # the probe client's own
NEMESIS_PROBE_VOL=probe
nemesis_workload_start vol0 32 "$seed"
sleep 3
for kind in leader-peers leader oneway; do
    nemesis_run "$kind" 5
    sleep 2
done
sleep 2
nemesis_workload_check vol0 32
nemesis_summary
echo "F6: $NEMESIS_FAULTS partitions survived; $NEMESIS_CHECK (seed $seed)"
cluster_stop_all
