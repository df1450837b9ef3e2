# shellcheck shell=bash disable=SC2154  # the dt_* settings come from common.sh
# scripts/deploylib/hosts.sh: N booted Debian 12 test hosts on this machine
# (sourced by scripts/deploy-test, after common.sh, rootfs.sh, aptproxy.sh).
#
# A host is `systemd-nspawn --boot` of an overlay over the cached rootfs (so
# every host starts clean and the rootfs is shared read-only), in its own
# network namespace whose eth0 is one end of a veth pair, the other end in the
# bridge $dt_bridge on this machine.  This machine is $dt_subnet.1 on the
# bridge and runs the apt proxy there; host I is hostI at $dt_subnet.(10+I),
# with its own ssh host keys, the controller's key for root and for the sudo
# user "deploy", and /etc/hosts naming every host.
#
# Contract:
#   hosts_up N        boot host1..hostN, return once each answers ssh; on any
#                     failure everything it made is torn down.  Refuses when
#                     hosts are already up.
#   hosts_down        stop every host's container (by its pid, then whatever
#                     is left in its cgroup), unmount, remove its namespace,
#                     veth and cgroups, stop the apt proxy, remove the bridge
#                     and $dt_state; safe to run twice or after a partial up.
#   hosts_names       the names of the hosts that are up, one a line.
#   hosts_ssh NAME CMD...  run CMD on NAME as root (ssh's own quoting: the
#                     words are joined with spaces); CMD's exit status.
#   hosts_scp SRC... NAME:DST  copy files to a host.
#   hosts_inventory   an ansible INI inventory of the hosts that are up.
# Every wait is bounded: boot 120 s per host, ssh commands
# $BLOCKD_DEPLOY_SSH_TIMEOUT (600 s), a container's shutdown 30 s.

hosts__ssh_dir() { echo "$dt_state/ssh"; }
hosts__dir() { echo "$dt_state/hosts/$1"; }
hosts__ns() { echo "$dt_prefix-$1"; }

hosts_names() {
    local d
    for d in "$dt_state"/hosts/*/; do
        [ -f "$d/ip" ] && basename "$d"
    done | sort -V
}

# The cgroup directories a host's container runs under: one per mounted
# hierarchy that systemd uses (cgroup2 alone, or the hybrid pair of the
# named systemd v1 hierarchy and the v2 one, or v1 alone).
hosts__cgroups() {
    local name=$1 fs
    fs=$(stat -fc %T /sys/fs/cgroup)
    if [ "$fs" = cgroup2fs ]; then
        echo "/sys/fs/cgroup/$dt_prefix-$name"
        return
    fi
    [ "$(stat -fc %T /sys/fs/cgroup/systemd 2>/dev/null)" = cgroupfs ] &&
        echo "/sys/fs/cgroup/systemd/$dt_prefix-$name"
    [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] &&
        echo "/sys/fs/cgroup/unified/$dt_prefix-$name"
    return 0
}

# The rootfs unpacked once next to its tarball: the overlays' shared,
# read-only lower layer.
hosts__lower() {
    local tar dir
    tar=$(rootfs_tarball) || return 1
    dir=${tar%.tar}.d
    if [ ! -d "$dir" ]; then
        rm -rf "$dir.tmp" "${tar%-*}"-*.d
        mkdir "$dir.tmp"
        tar --numeric-owner --xattrs --acls -xf "$tar" -C "$dir.tmp" || return 1
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

# hosts__prepare NAME INDEX N LOWER: the overlay root and its per-host files,
# the network namespace and the veth.
hosts__prepare() {
    local name=$1 i=$2 n=$3 lower=$4
    local d ns ip r
    d=$(hosts__dir "$name")
    ns=$(hosts__ns "$name")
    ip="$dt_subnet.$((10 + i))"
    mkdir -p "$d/upper" "$d/work" "$d/root"
    echo "$ip" >"$d/ip"
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$d/root"
    r=$d/root
    echo "$name" >"$r/etc/hostname"
    {
        printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
        local j
        for j in $(seq 1 "$n"); do
            printf '%s\thost%s\n' "$dt_subnet.$((10 + j))" "$j"
        done
        printf '%s\tcontroller\n' "$dt_subnet.1"
    } >"$r/etc/hosts"
    ssh-keygen -q -A -f "$r" >/dev/null
    local pub uid gid
    pub=$(cat "$(hosts__ssh_dir)/id_ed25519.pub")
    install -d -m 0700 "$r/root/.ssh"
    echo "$pub" >"$r/root/.ssh/authorized_keys"
    uid=$(awk -F: '$1 == "deploy" { print $3 }' "$r/etc/passwd")
    gid=$(awk -F: '$1 == "deploy" { print $4 }' "$r/etc/passwd")
    install -d -m 0700 -o "$uid" -g "$gid" "$r/home/deploy/.ssh"
    echo "$pub" >"$r/home/deploy/.ssh/authorized_keys"
    chown "$uid:$gid" "$r/home/deploy/.ssh/authorized_keys"
    printf 'Acquire::http::Proxy "%s";\n' "$(aptproxy_url)" >"$r/etc/apt/apt.conf.d/01proxy"
    local k
    for k in "$r"/etc/ssh/ssh_host_*_key.pub; do
        printf '%s,%s %s\n' "$name" "$ip" "$(cut -d' ' -f1,2 "$k")"
    done >>"$(hosts__ssh_dir)/known_hosts"

    ip netns add "$ns"
    ip link add "$ns" type veth peer name eth0 netns "$ns"
    ip link set "$ns" master "$dt_bridge" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    # A default route makes ansible's ansible_default_ipv4 this address; it
    # leads nowhere past this machine, which forwards nothing.
    ip -n "$ns" route add default via "$dt_subnet.1"
}

# hosts__boot NAME: start the container in the background.  It runs in a
# cgroup of its own: with --keep-unit and no systemd on this machine,
# systemd-nspawn stays in the cgroup it was started in and makes its payload
# cgroup there, so two containers started from one cgroup would share it.
hosts__boot() {
    local name=$1 d ns
    d=$(hosts__dir "$name")
    ns=$(hosts__ns "$name")
    (
        for cg in $(hosts__cgroups "$name"); do
            mkdir -p "$cg"
            echo "$BASHPID" >"$cg/cgroup.procs"
        done
        exec setsid systemd-nspawn --boot --register=no --keep-unit \
            --machine="$name" --hostname="$name" --directory="$d/root" \
            --network-namespace-path="/run/netns/$ns" --console=read-only
    ) >"$d/console.log" 2>&1 </dev/null 9>&- &
    echo $! >"$d/nspawn.pid"
}

hosts__ssh_ready() {
    timeout 10 ssh -F "$(hosts__ssh_dir)/config" "$1" true
}

hosts_up() {
    local n=$1 t0=$SECONDS
    [[ $n =~ ^[1-9][0-9]?$ ]] && [ "$n" -le 200 ] || dt_die "hosts up N: N is 1..200, not '$n'"
    if [ -n "$(hosts_names)" ]; then
        dt_die "hosts are up already ($(hosts_names | tr '\n' ' ')); run: scripts/deploy-test hosts down"
    fi
    dt_ensure_pkgs systemd-container iproute2 openssh-client curl
    local lower
    lower=$(hosts__lower) || dt_die "no rootfs"
    dt_log "rootfs ready ($((SECONDS - t0))s)"
    mkdir -p "$dt_state/hosts" "$(hosts__ssh_dir)"
    local sd
    sd=$(hosts__ssh_dir)
    ssh-keygen -q -t ed25519 -N '' -C "blockd deploy-test controller" -f "$sd/id_ed25519"
    : >"$sd/known_hosts"
    {
        local i
        for i in $(seq 1 "$n"); do
            printf 'Host host%s\n    HostName %s\n' "$i" "$dt_subnet.$((10 + i))"
        done
        printf 'Host *\n    User root\n    IdentityFile %s\n    IdentitiesOnly yes\n' "$sd/id_ed25519"
        printf '    UserKnownHostsFile %s\n    GlobalKnownHostsFile /dev/null\n' "$sd/known_hosts"
        printf '    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 5\n'
        printf '    LogLevel ERROR\n'
    } >"$sd/config"

    if ip link show "$dt_bridge" >/dev/null 2>&1; then
        dt_die "the bridge $dt_bridge exists (left by an earlier run?); run: scripts/deploy-test hosts down"
    fi
    ip link add "$dt_bridge" type bridge
    ip addr add "$dt_subnet.1/24" dev "$dt_bridge"
    ip link set "$dt_bridge" up
    aptproxy_start || dt_die "the apt proxy did not start"

    local i
    for i in $(seq 1 "$n"); do
        hosts__prepare "host$i" "$i" "$n" "$lower"
    done
    local t1=$SECONDS
    for i in $(seq 1 "$n"); do
        hosts__boot "host$i"
    done
    for i in $(seq 1 "$n"); do
        if ! dt_wait_until 120 "host$i to answer ssh" hosts__ssh_ready "host$i"; then
            tail -n 30 "$(hosts__dir "host$i")/console.log" >&2
            dt_die "host$i did not come up"
        fi
    done
    dt_log "$n hosts up: booted in $((SECONDS - t1))s, $((SECONDS - t0))s in all"
}

# hosts__reap NAME: kill, by pid, whatever still runs in the host's cgroups
# (a container whose systemd-nspawn died or was killed), then remove them.
hosts__reap() {
    local name=$1 cg p
    for cg in $(hosts__cgroups "$name"); do
        [ -d "$cg" ] || continue
        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null |
            while read -r p; do kill -KILL "$p" 2>/dev/null || true; done
        dt_wait_until 10 "the processes of $cg to exit" \
            bash -c "! find '$cg' -name cgroup.procs -exec cat {} + | grep -q ." || true
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$cg" ] && dt_log "warning: cannot remove cgroup $cg"
    done
    return 0
}

hosts__stop_one() {
    local name=$1 d ns pid
    d=$(hosts__dir "$name")
    ns=$(hosts__ns "$name")
    if [ -f "$d/nspawn.pid" ]; then
        pid=$(cat "$d/nspawn.pid")
        # SIGTERM asks the container's systemd to shut down (a clean halt).
        dt_stop_pid "$pid" systemd-nspawn TERM 30
        rm -f "$d/nspawn.pid"
    fi
    hosts__reap "$name"
    if mountpoint -q "$d/root"; then
        umount "$d/root" 2>/dev/null || { sleep 1; umount "$d/root"; } ||
            dt_log "warning: cannot unmount $d/root"
    fi
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$ns" 2>/dev/null || true
}

hosts_down() {
    local name
    for name in $(cd "$dt_state/hosts" 2>/dev/null && ls); do
        hosts__stop_one "$name"
    done
    aptproxy_stop
    # Cgroups, namespaces and veths named like ours but without a host
    # directory (an up that died between making them and recording them, or
    # a state directory removed by hand).
    local ns cg
    for cg in /sys/fs/cgroup/"$dt_prefix"-host* /sys/fs/cgroup/*/"$dt_prefix"-host*; do
        [ -d "$cg" ] && hosts__reap "${cg##*/"$dt_prefix"-}"
    done
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^$dt_prefix-host"); do
        ip netns del "$ns" 2>/dev/null || true
    done
    for ns in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//' |
                grep "^$dt_prefix-host"); do
        ip link del "$ns" 2>/dev/null || true
    done
    ip link del "$dt_bridge" 2>/dev/null || true
    if [ -d "$dt_state" ]; then
        if grep -q " $dt_state/" /proc/self/mounts; then
            dt_log "error: still mounted under $dt_state; not removing it"
            return 1
        fi
        rm -rf "$dt_state"
    fi
}

hosts_ssh() {
    local name=$1
    shift
    [ -f "$(hosts__dir "$name")/ip" ] || dt_die "no host '$name' is up"
    timeout "${BLOCKD_DEPLOY_SSH_TIMEOUT:-600}" ssh -F "$(hosts__ssh_dir)/config" "$name" -- "$@"
}

hosts_scp() {
    timeout "${BLOCKD_DEPLOY_SSH_TIMEOUT:-600}" scp -q -F "$(hosts__ssh_dir)/config" "$@"
}

hosts_inventory() {
    local names name sd
    names=$(hosts_names)
    [ -n "$names" ] || dt_die "no hosts are up"
    sd=$(hosts__ssh_dir)
    echo "# scripts/deploy-test hosts: ansible logs in as deploy (sudo without a password)"
    echo "[deploy_test]"
    for name in $names; do
        printf '%s ansible_host=%s\n' "$name" "$(cat "$(hosts__dir "$name")/ip")"
    done
    echo
    echo "[deploy_test:vars]"
    echo "ansible_user=deploy"
    echo "ansible_become=true"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "ansible_ssh_private_key_file=$sd/id_ed25519"
    echo "ansible_ssh_common_args='-F $sd/config'"
}
