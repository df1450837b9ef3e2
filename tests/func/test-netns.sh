#!/usr/bin/env bash
# Self-test of netns.sh (CONTRACT.md row 5 tooling): two nbdkit memory
# servers in two namespaces, reached from a third; a full cut of one makes
# it unreachable (bounded wait) while the other stays reachable; healing
# brings it back; a per-peer cut and a one-way drop affect only the pair
# they name; cleanup leaves no namespace behind.  Skips (77) with the reason
# when namespaces cannot be created here.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/netns.sh"
set -e
requires nbdkit --version
requires nbdinfo --version
requires timeout --version
netns_requires

tmp=$(mktmp)
netns_init
for n in n1 n2 n3; do netns_add_node $n; done
echo "nodes: n1=${NETNS_IP[n1]} n2=${NETNS_IP[n2]} n3=${NETNS_IP[n3]} (drop method $NETNS_DROP_METHOD)"

for n in n1 n2; do
    netns_exec $n nbdkit --exit-with-parent -i "${NETNS_IP[$n]}" -p 10809 -P "$tmp/$n.pid" \
        memory 16M >"$tmp/$n.log" 2>&1 &
    cleanup_fn kill_pid $!
done
wait_for 10 "test -s $tmp/n1.pid -a -s $tmp/n2.pid"

# reach FROM TO: an NBD handshake from FROM to TO's server within 5 s.
reach() { netns_exec "$1" timeout 5 nbdinfo --size "nbd://${NETNS_IP[$2]}:10809" 2>/dev/null | grep -qx 16777216; }
expect_reach() { reach "$1" "$2" || fail "$3: $1 cannot reach $2"; }
expect_cut() { ! reach "$1" "$2" || fail "$3: $1 still reaches $2"; }

expect_reach n3 n1 "start"
expect_reach n3 n2 "start"
# The servers are NBD servers in earnest: a short fsx run across the bridge.
if [ -x "${BLOCKD_FSX:-}" ]; then
    netns_exec n3 "$BLOCKD_FSX" --uri "nbd://${NETNS_IP[n1]}:10809" --ops 300 --out-dir "$tmp" ||
        fail "fsx across the bridge"
fi

# Full cut of n1.
netns_cut n1
expect_cut n3 n1 "cut n1"
expect_reach n3 n2 "cut n1"
netns_heal n1
wait_for 10 "reach n3 n1"
echo "ok: full cut and heal"

# Per-peer cut n3<->n2: n1 still reaches n2, n3 still reaches n1.
netns_cut_peer n3 n2
expect_cut n3 n2 "cut n3-n2"
expect_reach n1 n2 "cut n3-n2"
expect_reach n3 n1 "cut n3-n2"
netns_heal_peer n3 n2
wait_for 10 "reach n3 n2"
echo "ok: per-peer cut and heal"

# One way: n2's packets to n3 are dropped, so n3's connection to n2 gets no
# reply; n1 still reaches n2.
netns_drop n2 n3
expect_cut n3 n2 "drop n2->n3"
expect_reach n1 n2 "drop n2->n3"
netns_heal n2
wait_for 10 "reach n3 n2"
echo "ok: one-way drop and heal"

# Cleanup removes every namespace this test created.
prefix=$NETNS_PREFIX
netns_cleanup
if ip netns list | grep -q "^$prefix-"; then fail "namespaces left: $(ip netns list | grep "^$prefix-")"; fi
echo "ok: cleanup removed every namespace"
