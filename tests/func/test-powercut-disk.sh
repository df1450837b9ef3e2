#!/usr/bin/env bash
# Self-test of the power-cut disk (tests/tools/powercut.c, CONTRACT row 7):
# a small program run under the shim makes some writes and directory
# entries durable (fsync of the file, of the directory) and leaves others
# pending, then cuts its own power.  Over 40 seeds every resulting disk
# must be a state a real power cut could leave: durable bytes and entries
# always there; each pending write wholly there, wholly absent, or torn at
# a 512-byte boundary (new sectors first, old after); pending entries
# present or absent as a prefix of their order.  And the shim must
# explore: some cuts must drop, some keep and some tear pending writes, and
# lose a pending entry, or the power-cut cluster test would prove nothing.
. "$(dirname "$0")/functions.sh"
set -e
: "${POWERCUT_LIB:?POWERCUT_LIB must point at libpowercut.so}"
# A shim built with the sanitizers needs their runtime first in line, which
# the uninstrumented victim (python3) does not load: the gcc build runs this.
if ldd "$POWERCUT_LIB" | grep -q 'libasan'; then skip "the power-cut shim of a sanitizer build cannot be preloaded into python3"; fi
requires /usr/bin/python3 --version
tmp=$(mktmp)

cat >"$tmp/victim.py" <<'PY'
import os, signal, sys, time
d = sys.argv[1]
def fsync_dir(p):
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)
# Durable: a (8 KiB of A) and d (old), entries synced.
fd = os.open(d + "/a", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"A" * 8192, 0); os.fsync(fd)
fd2 = os.open(d + "/d", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd2, b"old!" * 1024, 0); os.fsync(fd2); os.close(fd2)
fsync_dir(d)
# Pending: an overwrite of a's first 4 KiB, an append to it.
os.pwrite(fd, b"B" * 4096, 0)
os.pwrite(fd, b"C" * 4096, 8192)
# Pending entries, in this order: b created (its data fsynced), then a new
# d renamed over the old one (data fsynced, directory not).
fb = os.open(d + "/b", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fb, b"b" * 4096, 0); os.fsync(fb); os.close(fb)
ft = os.open(d + "/d.tmp", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(ft, b"new!" * 1024, 0); os.fsync(ft); os.close(ft)
os.rename(d + "/d.tmp", d + "/d")
os.kill(os.getpid(), signal.SIGUSR2)
time.sleep(10)
sys.exit(3)  # the cut did not happen
PY

cat >"$tmp/judge.py" <<'PY'
import os, sys
d = sys.argv[1]
a = open(d + "/a", "rb").read()
if len(a) < 8192 or len(a) > 12288 or len(a) % 512: sys.exit("a has size %d" % len(a))
head = a[:4096]
k = 0
while k < 4096 and head[k:k+1] == b"B": k += 1
if head[k:] != b"A" * (4096 - k) or k % 512: sys.exit("a's first block is not old, new or torn at a sector: B*%d then %r" % (k, head[k:k+8]))
if a[4096:8192] != b"A" * 4096: sys.exit("a's durable second block changed")
# The append: absent, whole, or its first sectors (a torn append).
if a[8192:] != b"C" * (len(a) - 8192): sys.exit("a's appended bytes are not a sector prefix of C")
dd = open(d + "/d", "rb").read()
if dd not in (b"old!" * 1024, b"new!" * 1024): sys.exit("d is neither old nor new")
b = os.path.exists(d + "/b")
if b and open(d + "/b", "rb").read() != b"b" * 4096: sys.exit("b exists with the wrong bytes")
if dd == b"new!" * 1024 and not b: sys.exit("the rename survived but the earlier create of b did not (not a prefix)")
if os.path.exists(d + "/d.tmp") and dd == b"new!" * 1024: sys.exit("d.tmp and the new d both exist")
tear = 0 < k < 4096
print("state", "B" if k == 4096 else "A" if k == 0 else "torn", "append" if len(a) == 12288 else "no-append" if len(a) == 8192 else "torn-append", "b" if b else "no-b", "new-d" if dd.startswith(b"new") else "old-d")
PY

declare -A seen=()
for seed in $(seq 1 40); do
    d=$tmp/disk$seed
    mkdir -p "$d" "$tmp/state$seed"
    rc=0
    # (In a group with stderr to a file: the shell's "Killed" goes there too.)
    { LD_PRELOAD=$POWERCUT_LIB POWERCUT_ROOTS=$d POWERCUT_STATE=$tmp/state$seed POWERCUT_SEED=$seed \
        POWERCUT_REPORT=$tmp/report timeout 20 /usr/bin/python3 "$tmp/victim.py" "$d"; } \
        2>"$tmp/err$seed" || rc=$?
    [ $rc -eq 137 ] || fail "seed $seed: the victim exited $rc, not by the cut's SIGKILL: $(cat "$tmp/err$seed")"
    out=$(/usr/bin/python3 "$tmp/judge.py" "$d") || fail "seed $seed: impossible crash state: $out"
    for w in $out; do seen[$w]=1; done
    [ -z "$(ls -A "$tmp/state$seed")" ] || fail "seed $seed: backups left in the state directory"
done
echo "states seen: ${!seen[*]}"
for want in B A torn append no-append b no-b new-d old-d; do
    [ -n "${seen[$want]:-}" ] || fail "40 cuts never produced '$want': the shim does not explore"
done
n=$(grep -c '^powercut pid' "$tmp/report")
[ "$n" -eq 40 ] || fail "the report has $n cut lines, not 40"
echo "ok: 40 power cuts, every state possible, durable data always kept; $(grep -c 'mode drop-all' "$tmp/report") drop-all"
