#!/usr/bin/env bash
# blockd-fsx against a correct server (nbdkit memory): a few thousand ops
# over three connections with every op kind, a duration-bounded run, the
# flush-consistency mode and a byte range, all must pass; and the summary
# must show that every op kind really ran and bytes were verified (a run
# that silently did nothing would also "pass").
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
set -e
fsx_requires

tmp=$(mktmp)
seed=$(test_seed)
nbdkit_start mem "$tmp/mem" memory 64M

out=$("$BLOCKD_FSX" --uri "$mem_uri" --conns 3 --ops 4000 --seed "$seed" --out-dir "$tmp")
echo "$out"
[[ $out == *"PASS seed=$seed ops=4001 "* ]] || fail "3-conn run did not pass: $out"
for kind in read write fua trim zero flush bstatus reconnect multiconn; do
    n=$(sed -n "s/.* $kind=\([0-9]*\) .*/\1/p" <<<"$out")
    [ "${n:-0}" -gt 0 ] || fail "op kind $kind never ran: $out"
done
verified=$(sed -n 's/.* bytes_verified=\([0-9]*\) .*/\1/p' <<<"$out")
[ "$verified" -gt $((64 << 20)) ] || fail "too few bytes verified: $verified"

# --uri2/--uri3: three URIs, one volume; flush consistency; a sub-range.
out=$("$BLOCKD_FSX" --uri "$mem_uri" --uri2 "$mem_uri" --uri3 "$mem_uri" --ops 1500 \
    --seed $((seed + 1)) --consistency flush --range 1000:500 --init any --out-dir "$tmp")
[[ $out == *PASS*"conns=3 blocks=500 "* ]] || fail "uri2/uri3 run: $out"

# --duration instead of --ops.
out=$("$BLOCKD_FSX" --uri "$mem_uri" --duration 2 --seed $((seed + 2)) --init any --out-dir "$tmp")
[[ $out == *PASS* ]] || fail "duration run: $out"

# Bad usage is exit 2, not a pass.
set +e
"$BLOCKD_FSX" --uri "$mem_uri" --mix bogus=1 2>/dev/null; [ $? -eq 2 ] || fail "--mix bogus"
"$BLOCKD_FSX" --ops 10 2>/dev/null; [ $? -eq 2 ] || fail "no --uri"
"$BLOCKD_FSX" --uri "nbd+unix:///?socket=$tmp/none.sock" --ops 10 2>/dev/null
[ $? -eq 2 ] || fail "unreachable server"
set -e
ls "$tmp"/blockd-fsx-*.good 2>/dev/null && fail "a passing run wrote a .good image"
echo "fsx against nbdkit memory: ok"
