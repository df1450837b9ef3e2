#!/usr/bin/env bash
# bench_nbd.sh BUILDDIR [SECONDS]: 4 KiB random reads and writes at QD1 and
# QD32 through the agent's NBD server on the in-memory back end
# (nbd_test_server) and through `nbdkit memory`, in the same run (PERF.md:
# figures move between hours, so only same-run ratios mean anything).
# Both exports are pre-filled first (nbdkit memory allocates on first
# write).  fio's nbd engine prints a line before its JSON: parse from the
# first '{'.
set -euo pipefail
builddir=${1:?usage: bench_nbd.sh BUILDDIR [SECONDS]}
secs=${2:-10}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-nbd.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

p1=$(port)
"$builddir/tests/nbd_test_server" --listen "127.0.0.1:$p1" --export vol0:1G 2>"$tmp/server.log" &
pids+=($!)
p2=$(port)
nbdkit -f -i 127.0.0.1 -p "$p2" memory 1G 2>"$tmp/nbdkit.log" &
pids+=($!)
sleep 1
declare -A uris=([blockd]="nbd://127.0.0.1:$p1/vol0" [nbdkit]="nbd://127.0.0.1:$p2")
size=256M
for s in blockd nbdkit; do
    fio --name=fill --ioengine=nbd --uri="${uris[$s]}" --rw=write --bs=1M --iodepth=8 \
        --size=$size --output=/dev/null >/dev/null 2>&1
done

run() { # SERVER RW QD -> IOPS
    fio --name=b --ioengine=nbd --uri="${uris[$1]}" --rw="$2" --bs=4k --iodepth="$3" \
        --size=$size --runtime="$secs" --time_based --output-format=json \
        --output="$tmp/fio.json" >/dev/null 2>&1
    /usr/bin/python3 -c '
import json, sys
s = open(sys.argv[1]).read()
j = json.loads(s[s.index("{"):])["jobs"][0]
print(int(j["read"]["iops"] + j["write"]["iops"]))' "$tmp/fio.json"
}

printf '%-18s %12s %12s %8s\n' "job (4 KiB)" "blockd IOPS" "nbdkit IOPS" "ratio"
for job in "randread 1" "randread 32" "randwrite 1" "randwrite 32"; do
    set -- $job
    a=$(run blockd "$1" "$2")
    b=$(run nbdkit "$1" "$2")
    printf '%-18s %12d %12d %8.2f\n' "$1 QD$2" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
