# shellcheck shell=bash disable=SC2154  # the dt_* settings come from common.sh
# scripts/deploylib/cluster.sh: a blockd cluster on the booted hosts, made
# by the ansible role over ssh, and the I/O that proves it (sourced by
# scripts/deploy-test, after hosts.sh).
#
# Layout on seven hosts: host1..3 proxies (Raft ids 1..3), host4..6 one
# blob server each (node ids 11..13, data in /srv/disk1/blockd: outside
# /var/lib/blockd, so the role's sandbox drop-in is exercised), host7 the
# agent, with volume vol0 (1G, created by the role).  On one host (the
# quick slice): host1 is everything, with three blob servers, one per
# "disk" (/srv/diskN/blockd).  The controller is this
# machine: the playbook runs here, the CA and every certificate are made
# here (in $dt_state/tls), the tokens are random per cluster and passed in a
# vars file (mode 0600) that never reaches a log.
#
# Contract:
#   cluster_check_space   die unless $cluster_min_free_gb GiB are free for
#                         the hosts' data
#   cluster_files DEB [one]  write the inventory and the vars file for the
#                         hosts that are up (7 needed; with one, 1), package
#                         DEB; sets cluster_agent_host
#   cluster_play LOG [ARGS...]  run site.yml against them (ARGS go to
#                         ansible-playbook); its status, its output in LOG
#                         (and on stderr when it fails); prints the recap
#   cluster_changed LOG   the sum of changed= over the hosts of LOG's recap
#   cluster_fio_install   install fio on the agent's host (from Debian,
#                         through the apt proxy)
#   cluster_fio_start NAME  start fio loops (write, FLUSH every 16 writes,
#                         verify; 64M a run) on the agent's host in the
#                         background;
#                         cluster_fio_stop NAME ends them after the current
#                         run, waits (bounded) and prints the summary line
#                         "runs N errors N max_lat_ms X max_gap_ms Y"
#   cluster_fio_once NAME [ARGS...]  one fio run in the foreground, summary
#                         as above
#   cluster_pids          "HOST UNIT MAINPID" of every blockd unit
# Every wait is bounded.

cluster__dir() { echo "$dt_state/cluster"; }
# The agent's host: host7, or host1 on one host (cluster_files records it
# for the commands that follow).
cluster_agent_host=$(cat "$dt_state/cluster/agent_host" 2>/dev/null || echo host7)
cluster_vol=vol0

# The hosts' data (three copies of everything fio writes, Raft logs,
# journals) is on the filesystem of $dt_state: refuse to start with less
# than this free (GiB).
cluster_min_free_gb=${BLOCKD_DEPLOY_MIN_FREE_GB:-8}

cluster_check_space() {
    local free
    mkdir -p "$dt_state"
    free=$(df -P -BG "$dt_state" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
    [ "$free" -ge "$cluster_min_free_gb" ] ||
        dt_die "$free GiB free under $dt_state; the cluster needs $cluster_min_free_gb (BLOCKD_DEPLOY_MIN_FREE_GB)"
}

cluster_files() {
    local deb=$1 layout=${2:-seven} d sd i want=7
    d=$(cluster__dir)
    sd=$(hosts__ssh_dir)
    mkdir -p "$d"
    [ "$layout" = one ] && want=1
    [ "$(hosts_names | wc -l)" -eq $want ] || dt_die "the cluster needs $want hosts up, not $(hosts_names | wc -l)"
    {
        echo "# scripts/deploy-test: the blockd cluster on the booted hosts"
        echo "all:"
        echo "  vars:"
        echo "    ansible_user: deploy"
        echo "    ansible_become: true"
        echo "    ansible_python_interpreter: /usr/bin/python3"
        echo "    ansible_ssh_private_key_file: $sd/id_ed25519"
        echo "    ansible_ssh_common_args: '-F $sd/config'"
        echo "  children:"
        if [ "$layout" = one ]; then
            echo "    blockd_proxies:"
            echo "      hosts:"
            echo "        host1: {blockd_addr: $dt_subnet.11, blockd_node_id: 1}"
            echo "    blockd_blobs:"
            echo "      hosts:"
            echo "        host1:"
            echo "          blockd_blob_servers:"
            for i in 1 2 3; do
                echo "            - {id: $((10 + i)), data_dir: /srv/disk$i/blockd}"
            done
            echo "    blockd_agents:"
            echo "      hosts:"
            echo "        host1:"
            echo "          blockd_agent_volumes: [{name: $cluster_vol, size: 1G}]"
        else
            echo "    blockd_proxies:"
            echo "      hosts:"
            for i in 1 2 3; do
                echo "        host$i: {blockd_addr: $dt_subnet.$((10 + i)), blockd_node_id: $i}"
            done
            echo "    blockd_blobs:"
            echo "      hosts:"
            for i in 4 5 6; do
                echo "        host$i:"
                echo "          blockd_addr: $dt_subnet.$((10 + i))"
                echo "          blockd_blob_servers: [{id: $((7 + i)), data_dir: /srv/disk1/blockd}]"
            done
            echo "    blockd_agents:"
            echo "      hosts:"
            echo "        host7:"
            echo "          blockd_addr: $dt_subnet.17"
            echo "          blockd_agent_volumes: [{name: $cluster_vol, size: 1G}]"
        fi
    } >"$d/inventory.yml"
    cluster_agent_host=host7
    [ "$layout" = one ] && cluster_agent_host=host1
    echo "$cluster_agent_host" >"$d/agent_host"
    (
        umask 077
        {
            echo "blockd_package: $deb"
            echo "blockd_tls_dir: $d/tls"
            echo "blockd_admin_token: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            echo "blockd_read_token: $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            # A small journal per volume, so fio's data goes to the cluster
            # (shipping at half of it) and not only to the agent's cache.
            echo "blockd_agent_cache_bytes: 64M"
            # Smaller segments: compaction gives back overwritten space
            # sooner (the hosts share this machine's disk).
            echo "blockd_blob_segment_bytes: 32M"
            echo "blockd_health_timeout: 300"
        } >"$d/vars.yml"
    )
}

# cluster_set_var NAME VALUE: set (or replace) a variable in the vars file.
cluster_set_var() {
    local f
    f="$(cluster__dir)/vars.yml"
    sed -i "/^$1: /d" "$f"
    echo "$1: $2" >>"$f"
}

cluster_play() {
    local log=$1 d rc=0
    shift
    d=$(cluster__dir)
    ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=false ANSIBLE_HOST_KEY_CHECKING=false \
        ANSIBLE_FORKS=7 ANSIBLE_PIPELINING=true \
        timeout 3600 ansible-playbook -i "$d/inventory.yml" -e "@$d/vars.yml" \
        "$top/scripts/ansible/site.yml" "$@" >"$log" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        tail -n 60 "$log" >&2
        dt_log "ansible-playbook failed ($rc); the whole output is in $log"
    fi
    sed -n '/^PLAY RECAP/,$p' "$log" | sed '/^$/d'
    return $rc
}

cluster_changed() {
    sed -n '/^PLAY RECAP/,$p' "$1" | sed -n 's/.* changed=\([0-9]*\) .*/\1/p' |
        awk '{ s += $1 } END { print s + 0 }'
}

cluster_pids() {
    local h
    for h in $(hosts_names); do
        hosts_ssh "$h" "for u in \$(systemctl list-units --plain --no-legend 'blockd-*' | awk '{print \$1}');" \
            "do echo \"$h \$u \$(systemctl show -p MainPID --value \$u)\"; done"
    done
}

cluster_fio_install() {
    hosts_ssh "$cluster_agent_host" "command -v fio >/dev/null ||" \
        "{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq" \
        "--no-install-recommends fio python3 >/var/tmp/fio-install.log 2>&1; } ||" \
        "{ tail -n 20 /var/tmp/fio-install.log; exit 1; }"
    # The job and the loop that runs it, and a summary of what fio logged.
    hosts_ssh "$cluster_agent_host" "mkdir -p /var/tmp/fio && cat >/var/tmp/fio/job.fio" <<EOF
# Random 64K writes over 64M of $cluster_vol through the agent's NBD
# server, a FLUSH every 16 writes (shipped to three blob servers and
# committed in Raft before it returns), then every block read back and
# checked (crc32c with its offset), and any error is fatal.  Writes are
# held to 2 MB/s: every host's data is on this machine's one disk, three
# times over, and a loop of runs must not fill it (a full disk fail-stops
# every node, as it should).
[global]
ioengine=nbd
uri=nbd://127.0.0.1:10809/$cluster_vol
rw=randwrite
bs=64k
size=64M
rate=,2m
iodepth=8
fsync=16
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1
[vol]
EOF
    hosts_ssh "$cluster_agent_host" "cat >/var/tmp/fio/loop.sh && chmod +x /var/tmp/fio/loop.sh" <<'EOF'
#!/bin/bash
# loop.sh NAME [FIO ARGS...]: run the job again and again until
# /var/tmp/fio/NAME.stop exists (at least once), each run's JSON and
# latency log in /var/tmp/fio/NAME.N.*; then summary.py's line in
# /var/tmp/fio/NAME.summary.
name=$1
shift
cd /var/tmp/fio || exit 1
i=0
while :; do
    i=$((i + 1))
    timeout 600 fio --output-format=json --output="$name.$i.json" \
        --write_lat_log="$name.$i" --log_avg_msec=0 "$@" job.fio >"$name.$i.out" 2>&1
    echo "$?" >"$name.$i.rc"
    [ -e "$name.stop" ] && break
done
python3 summary.py "$name" >"$name.summary" 2>&1
EOF
    hosts_ssh "$cluster_agent_host" "cat >/var/tmp/fio/summary.py" <<'EOF'
"""summary.py NAME: one line over the runs of loop.sh NAME: runs, errors
(non-zero exit statuses and fio's own error counts), the longest single
I/O (write, read or FLUSH, from fio's JSON) and the longest gap between two
I/O completions inside a run (from the latency logs: how long the volume
answered nothing)."""
import glob
import json
import sys

name = sys.argv[1]
runs = errors = 0
max_lat_ns = 0
max_gap_ms = 0
for rcf in sorted(glob.glob(name + ".*.rc")):
    n = rcf[len(name) + 1:-3]
    runs += 1
    if open(rcf).read().strip() != "0":
        errors += 1
    try:
        js = json.load(open("%s.%s.json" % (name, n)))
    except (OSError, ValueError):
        errors += 1
        continue
    for job in js.get("jobs", []):
        if job.get("error"):
            errors += 1
        for d in ("read", "write", "sync"):
            lat = job.get(d, {}).get("lat_ns", {})
            max_lat_ns = max(max_lat_ns, lat.get("max", 0))
    times = []
    for lf in glob.glob("%s.%s_clat.*.log" % (name, n)):
        for line in open(lf):
            try:
                times.append(int(line.split(",")[0]))
            except ValueError:
                pass
    times.sort()
    for a, b in zip(times, times[1:]):
        max_gap_ms = max(max_gap_ms, b - a)
print("runs %d errors %d max_lat_ms %.1f max_gap_ms %d" % (runs, errors, max_lat_ns / 1e6, max_gap_ms))
EOF
}

cluster_fio_start() {
    hosts_ssh "$cluster_agent_host" "rm -f /var/tmp/fio/$1.*; setsid nohup /var/tmp/fio/loop.sh $1" \
        ">/var/tmp/fio/$1.loop.log 2>&1 </dev/null & echo started"
}

cluster_fio_stop() {
    hosts_ssh "$cluster_agent_host" "touch /var/tmp/fio/$1.stop"
    dt_wait_until 900 "fio ($1) to finish its last run" \
        hosts_ssh "$cluster_agent_host" test -s "/var/tmp/fio/$1.summary" || return 1
    hosts_ssh "$cluster_agent_host" cat "/var/tmp/fio/$1.summary"
}

cluster_fio_once() {
    local name=$1
    shift
    hosts_ssh "$cluster_agent_host" "cd /var/tmp/fio && rm -f $name.* && touch $name.stop &&" \
        "./loop.sh $name $*" &&
        hosts_ssh "$cluster_agent_host" cat "/var/tmp/fio/$name.summary"
}
