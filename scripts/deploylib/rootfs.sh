# shellcheck shell=bash disable=SC2154  # the dt_* settings come from common.sh
# scripts/deploylib/rootfs.sh: the cached Debian 12 root filesystem every test
# host boots from (sourced by scripts/deploy-test, after common.sh).
#
# Contract: rootfs_tarball prints the path of a tarball under $dt_cache
# holding a debootstrapped bookworm with rootfs_pkgs installed and
# rootfs_customize applied, building it first if no tarball exists for the
# current key.  The key is a hash of the suite, the package list, the apt
# sources and the text of rootfs_customize, so changing any of them builds a
# new tarball (and removes the old ones); nothing else does.

# What a host needs: systemd as init (systemd-sysv) and dbus for systemctl
# and hostnamectl, sshd and sudo for ansible, python3 and python3-apt for its
# modules (apt without python3-apt makes ansible install it first, on every
# host), iproute2 and curl to look at the network and the admin API by hand.
rootfs_pkgs=(systemd-sysv dbus openssh-server sudo python3 python3-apt iproute2 curl procps less)

# The hosts' apt sources: the archives this machine's apt uses for the suite
# (main, updates, security), one-line format.
rootfs__sources() {
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' |
        awk -v s="$dt_suite" '$2 ~ "^" s { print "deb " $1 " " $2 " " $3 }' | sort -u
}

# rootfs_customize DIR: make the debootstrapped tree a host image.
rootfs_customize() {
    local r=$1
    rootfs__sources >"$r/etc/apt/sources.list"
    # Release files of a dated mirror snapshot count as expired; the hosts
    # accept them when this machine's apt does.
    if apt-config dump | grep -q '^Acquire::Check-Valid-Until "false"'; then
        echo 'Acquire::Check-Valid-Until "false";' >"$r/etc/apt/apt.conf.d/50blockd-deploy"
    fi
    # Package lists baked in, so a host's first `apt-get update` fetches only
    # what changed since.
    timeout 600 chroot "$r" apt-get update -qq
    timeout 60 chroot "$r" apt-get clean
    # Each host gets its own ssh host keys and machine id at `hosts up`.
    rm -f "$r"/etc/ssh/ssh_host_*
    : >"$r/etc/machine-id"
    # Timers that would run apt (and take the dpkg lock) in the middle of a
    # test.
    ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
    ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
    # The account ansible logs in with: key only, sudo without a password.
    chroot "$r" useradd --create-home --shell /bin/bash --groups sudo deploy
    echo 'deploy ALL=(ALL) NOPASSWD:ALL' >"$r/etc/sudoers.d/deploy"
    chmod 0440 "$r/etc/sudoers.d/deploy"
    printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n' \
        >"$r/etc/ssh/sshd_config.d/blockd-deploy.conf"
    # No name server is reachable from the hosts; /etc/hosts names them.
    rm -f "$r/etc/resolv.conf"
    : >"$r/etc/resolv.conf"
}

rootfs__key() {
    {
        echo "$dt_suite minbase ${rootfs_pkgs[*]}"
        rootfs__sources
        declare -f rootfs_customize
    } | sha256sum | cut -c1-12
}

rootfs_tarball() {
    local key tar
    key=$(rootfs__key)
    tar="$dt_cache/rootfs-$dt_suite-$key.tar"
    if [ -s "$tar" ]; then
        echo "$tar"
        return 0
    fi
    dt_ensure_pkgs debootstrap
    local mirror tmp t0=$SECONDS
    mirror=$(dt_apt_mirror)
    [ -n "$mirror" ] || dt_die "this machine's apt has no source for $dt_suite"
    mkdir -p "$dt_cache"
    tmp=$(mktemp -d "$dt_cache/build.XXXXXX")
    dt_log "debootstrap $dt_suite into $tmp (once; cached as $tar)"
    local include
    include=$(IFS=,; echo "${rootfs_pkgs[*]}")
    if ! timeout 1800 debootstrap --variant=minbase --include="$include" \
            "$dt_suite" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        tail -n 20 "$tmp/debootstrap.log" >&2
        rm -rf "$tmp"
        dt_die "debootstrap failed"
    fi
    if ! rootfs_customize "$tmp/root" >>"$tmp/debootstrap.log" 2>&1; then
        tail -n 20 "$tmp/debootstrap.log" >&2
        rm -rf "$tmp"
        dt_die "customizing the rootfs failed"
    fi
    tar --numeric-owner --xattrs --acls -C "$tmp/root" -cf "$tmp/rootfs.tar" .
    rm -f "$dt_cache"/rootfs-"$dt_suite"-*.tar
    mv "$tmp/rootfs.tar" "$tar"
    rm -rf "$tmp"
    dt_log "rootfs built in $((SECONDS - t0))s: $tar ($(du -h "$tar" | cut -f1))"
    echo "$tar"
}
