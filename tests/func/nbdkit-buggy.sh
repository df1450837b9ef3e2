#!/usr/bin/env bash
# nbdkit-buggy.sh: an nbdkit "sh" plugin serving a file with one chosen,
# deterministic bug, so the self-tests can prove that blockd-fsx catches
# each kind of corruption with the right diagnosis (a checker that cannot
# fail is worse than none).
#
#   BUGGY_IMG=disk.img BUGGY_STATE=dir BUGGY_MODE=drop-overwrite BUGGY_AFTER=40 \
#       nbdkit -U sock -P pidfile sh tests/func/nbdkit-buggy.sh
#
# The bug starts after BUGGY_AFTER writes (write modes) or reads (read
# modes); before that the server is correct.  BUGGY_MODE:
#   none             a correct server (the control case)
#   drop-overwrite   a write over a block that holds data is acked, not stored  -> stale
#   drop-new         a write to a block that holds zeros is acked, not stored   -> lost-write
#   torn-write       a write over data stores only the first 2048 bytes         -> torn
#   trim-noop        trim and write_zeroes are acked and ignored                -> resurrected
#   misdirect-read   a read of block B returns block B^1 when both hold
#                    different data                                             -> misdirected
#   garbage-read     a read of a block holding data returns random bytes        -> garbage
#   extents-lie      block status reports every extent as a hole of zeros       -> bstatus-zero
#   private-conns    CAN_MULTI_CONN is advertised but every connection has its
#                    own copy of the disk                                       -> multiconn (C8)
#   lag-until-flush  a connection's writes reach the other connections only at
#                    the next flush (on any connection): the NBD multi-conn
#                    minimum, not linearizable                                  -> stale (C7)
#                    (passes with blockd-fsx --consistency flush)
set -u
BS=4096
img=${BUGGY_IMG:?}
state=${BUGGY_STATE:?}
mode=${BUGGY_MODE:-none}
after=${BUGGY_AFTER:-0}
method=$1
h=${2:-}

# The file a connection's handle uses.
file_of() {
    if [ "$mode" = private-conns ] && [ -n "$1" ]; then echo "$state/conn-$1.img"; else echo "$img"; fi
}

# bump NAME: increment a counter; succeed if the bug is active after it.
bump() {
    local n=0
    [ -f "$state/$1" ] && n=$(<"$state/$1")
    n=$((n + 1))
    echo "$n" >"$state/$1"
    [ "$n" -gt "$after" ]
}

# is_zero FILE BLOCK
is_zero() { cmp -s -n $BS -i "$(($2 * BS)):0" "$1" /dev/zero; }

# lag-until-flush: writes are journal entries J/SEQ.CONN.BLOCK (4096 bytes,
# or empty for zeros) applied to the image, in order, at the next flush; a
# connection's reads see its own entries on top of the image.
journal=$state/journal
journal_add() { # CONN BLOCK [DATAFILE INDEX]
    local n=0
    mkdir -p "$journal"
    [ -f "$state/jseq" ] && n=$(<"$state/jseq")
    n=$((n + 1))
    echo $n >"$state/jseq"
    if [ $# -gt 2 ]; then
        dd if="$3" of="$journal/$(printf %09d $n).$1.$2" bs=$BS skip="$4" count=1 status=none
    else
        : >"$journal/$(printf %09d $n).$1.$2"
    fi
}
journal_apply() { # apply every entry to the image, in order
    local e b
    for e in $(ls "$journal" | sort); do
        b=${e##*.}
        if [ -s "$journal/$e" ]; then
            dd if="$journal/$e" of="$img" bs=$BS seek="$b" count=1 conv=notrunc status=none
        else
            dd if=/dev/zero of="$img" bs=$BS seek="$b" count=1 conv=notrunc status=none
        fi
    done
}

case "$method" in
thread_model) echo serialize_all_requests ;;
open)
    n=$(($( [ -f "$state/conns" ] && cat "$state/conns" || echo 0) + 1))
    echo "$n" >"$state/conns"
    [ "$mode" = private-conns ] && cp "$img" "$state/conn-$n.img"
    echo "$n"
    ;;
get_size) stat -L -c %s "$img" ;;
can_write | can_flush | can_trim | can_zero | can_multi_conn) exit 0 ;;
can_extents) [ "$mode" = extents-lie ] && exit 0 || exit 3 ;;
can_fua) echo native ;;
flush)
    if [ "$mode" = lag-until-flush ] && [ -d "$journal" ]; then
        journal_apply
        rm -rf "$journal"
    fi
    ;;
extents)
    echo "$4 $3 hole,zero"
    ;;
pread)
    count=$3 off=$4 f=$(file_of "$h")
    out="$state/read.$$"
    dd if="$f" of="$out" bs=$BS skip=$((off / BS)) count=$((count / BS)) status=none
    nblocks=$(($(stat -L -c %s "$f") / BS))
    if [ "$mode" = lag-until-flush ] && [ -d "$journal" ]; then
        for e in $(ls "$journal" | sort); do
            c=${e#*.}; c=${c%%.*}; b=${e##*.}
            [ "$c" = "$h" ] && [ "$b" -ge $((off / BS)) ] && [ "$b" -lt $(((off + count) / BS)) ] || continue
            if [ -s "$journal/$e" ]; then
                dd if="$journal/$e" of="$out" bs=$BS seek=$((b - off / BS)) count=1 conv=notrunc status=none
            else
                dd if=/dev/zero of="$out" bs=$BS seek=$((b - off / BS)) count=1 conv=notrunc status=none
            fi
        done
    fi
    if { [ "$mode" = misdirect-read ] || [ "$mode" = garbage-read ]; } && bump reads; then
        for ((i = 0; i < count / BS; i++)); do
            b=$((off / BS + i))
            is_zero "$f" $b && continue
            if [ "$mode" = garbage-read ]; then
                dd if=/dev/urandom of="$out" bs=$BS seek=$i count=1 conv=notrunc status=none
                continue
            fi
            p=$((b ^ 1))
            [ $p -lt "$nblocks" ] || continue
            is_zero "$f" $p && continue
            cmp -s -n $BS -i "$((b * BS)):$((p * BS))" "$f" "$f" && continue
            dd if="$f" of="$out" bs=$BS skip=$p seek=$i count=1 conv=notrunc status=none
        done
    fi
    cat "$out"
    rm -f "$out"
    ;;
pwrite)
    count=$3 off=$4 f=$(file_of "$h")
    in="$state/write.$$"
    cat >"$in"
    active=false
    case "$mode" in drop-overwrite | drop-new | torn-write) bump writes && active=true ;; esac
    for ((i = 0; i < count / BS; i++)); do
        b=$((off / BS + i))
        if [ "$mode" = lag-until-flush ]; then
            journal_add "$h" $b "$in" $i
            continue
        fi
        if $active; then
            if is_zero "$f" $b; then
                [ "$mode" = drop-new ] && continue
            else
                [ "$mode" = drop-overwrite ] && continue
                if [ "$mode" = torn-write ]; then
                    dd if="$in" of="$f" bs=2048 skip=$((2 * i)) seek=$((2 * b)) count=1 \
                        conv=notrunc status=none
                    continue
                fi
            fi
        fi
        dd if="$in" of="$f" bs=$BS skip=$i seek=$b count=1 conv=notrunc status=none
    done
    rm -f "$in"
    ;;
trim | zero)
    count=$3 off=$4 f=$(file_of "$h")
    if [ "$mode" = trim-noop ] && bump writes; then exit 0; fi
    if [ "$mode" = lag-until-flush ]; then
        for ((b = off / BS; b < (off + count) / BS; b++)); do journal_add "$h" $b; done
        exit 0
    fi
    dd if=/dev/zero of="$f" bs=$BS seek=$((off / BS)) count=$((count / BS)) conv=notrunc status=none
    ;;
*) exit 2 ;;
esac
