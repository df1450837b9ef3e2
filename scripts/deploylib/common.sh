# shellcheck shell=bash disable=SC2034  # the dt_* settings are used by the other modules
# scripts/deploylib/common.sh: settings and helpers shared by scripts/deploy-test
# and its modules (sourced, never run).
#
# Contract: defines the dt_* settings below (each overridable from the
# environment) and the helpers dt_log, dt_die, dt_need_root, dt_ensure_pkgs,
# dt_wait_until and dt_apt_mirror.  Sourcing it changes nothing on the machine.

# Where the debootstrapped rootfs tarballs and the apt proxy's package cache
# live: outside the source tree and kept between runs, so only the first run
# pays for debootstrap and for downloading packages.
dt_cache=${BLOCKD_DEPLOY_CACHE:-/var/cache/blockd-deploy}
# Per-run state: the hosts' overlay directories, pid files, the controller's
# ssh key, the apt proxy's logs.  `hosts down` removes all of it.
dt_state=${BLOCKD_DEPLOY_STATE:-/var/tmp/blockd-deploy}
# The hosts' /24: the bridge takes .1, host i takes .(10+i).
dt_subnet=${BLOCKD_DEPLOY_SUBNET:-10.77.0}
dt_bridge=${BLOCKD_DEPLOY_BRIDGE:-bdt0}
# Names of the network namespaces and host-side veths: PREFIX-hostI (at most
# 15 characters for an interface name).
dt_prefix=bdt
dt_suite=bookworm
dt_acng_port=3142

dt_log() { printf 'deploy-test: %s\n' "$*" >&2; }
dt_die() { dt_log "error: $*"; exit 1; }

dt_need_root() {
    [ "$(id -u)" -eq 0 ] || dt_die "needs root (network namespaces, mounts, systemd-nspawn)"
}

# dt_ensure_pkgs PKG...: install the Debian packages that are missing.
dt_ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    dt_log "installing ${missing[*]}"
    mkdir -p "$dt_cache"
    # A package's daemon must not start at install (apt-cacher-ng would serve
    # every address of this machine; the script runs its own on the bridge):
    # Debian's way is a policy-rc.d that answers 101, put there for the
    # install only, and only if the machine has none.
    local policy=/usr/sbin/policy-rc.d ours=0 rc=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && ours=1
    fi
    dt__apt_install "${missing[@]}" ||
        { timeout 300 apt-get update -qq >/dev/null 2>&1; dt__apt_install "${missing[@]}"; } ||
        rc=$?
    [ $ours -eq 1 ] && rm -f $policy
    [ $rc -eq 0 ] || dt_die "apt-get install ${missing[*]} failed; see $dt_cache/apt-install.log"
}

dt__apt_install() {
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        "$@" >"$dt_cache/apt-install.log" 2>&1
}

# dt_wait_until SECONDS WHAT CMD...: run CMD every half second until it
# succeeds; fail naming WHAT after SECONDS.
dt_wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { dt_log "timed out after ${secs}s waiting for $what"; return 1; }
        sleep 0.5
    done
}

# dt_stop_pid PID COMM SIGNAL SECONDS: send SIGNAL to PID if it is still the
# COMM this script started (a pid file can outlive its process and the pid
# be reused), wait SECONDS for it to exit, then SIGKILL it.
dt_stop_pid() {
    local pid=$1 comm=$2 sig=$3 secs=$4
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || return 0
    dt_wait_until "$secs" "$comm ($pid) to exit" dt_pid_gone "$pid" && return 0
    dt_log "$comm ($pid) did not exit after SIG$sig; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    dt_wait_until 5 "$comm ($pid) to die" dt_pid_gone "$pid" || true
}

# dt_pid_gone PID: PID has exited (a zombie whose parent has not reaped it
# yet counts as exited).
dt_pid_gone() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 0
    [ -z "$st" ] || [ "$st" = Z ]
}

# dt_apt_mirror: the Debian archive URI this machine's apt uses for the
# suite (the hosts get packages from the same place, through the proxy).
dt_apt_mirror() {
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
        awk -v s="$dt_suite" '$2 == s { print $1; exit }'
}
