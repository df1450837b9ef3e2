# shellcheck shell=bash disable=SC2154  # the dt_* settings come from common.sh
# scripts/deploylib/aptproxy.sh: the hosts' way to Debian's archive (sourced
# by scripts/deploy-test, after common.sh).
#
# The hosts have no route off the bridge.  Their apt talks to apt-cacher-ng
# (Debian's caching apt proxy), run here as a plain process listening only on
# the bridge address, which fetches from the archive this machine's apt uses
# and keeps what it fetched in $dt_cache/apt-cacher-ng, so the second run
# installs from the cache.
#
# Contract: aptproxy_start starts it (needs the bridge address up) and waits
# until it answers, at most 30 s; aptproxy_url prints the URL the hosts set
# as Acquire::http::Proxy; aptproxy_stop stops it by its pid and is a no-op
# when it is not running.

aptproxy__dir() { echo "$dt_state/apt-cacher-ng"; }
aptproxy_url() { echo "http://$dt_subnet.1:$dt_acng_port"; }

aptproxy_start() {
    dt_ensure_pkgs apt-cacher-ng
    local d
    d=$(aptproxy__dir)
    mkdir -p "$d" "$dt_cache/apt-cacher-ng"
    # A config of its own: the system one (/etc/apt-cacher-ng) remaps
    # Debian's archive to the backends its debconf chose, which need not be
    # an archive this machine reaches (here it could not resolve them).  With
    # no remapping the proxy fetches each URL from the host the hosts' apt
    # names, the archive this machine's apt uses.  Socket, pid and logs stay
    # in this run's state.
    mkdir -p "$d/conf"
    cat >"$d/conf/acng.conf" <<EOF
CacheDir: $dt_cache/apt-cacher-ng
LogDir: $d
SupportDir: /usr/lib/apt-cacher-ng
SocketPath: $d/socket
PidFile: $d/pid.acng
BindAddress: $dt_subnet.1
Port: $dt_acng_port
ForeGround: 1
ReportPage: acng-report.html
EOF
    setsid apt-cacher-ng -c "$d/conf" >"$d/stdout.log" 2>&1 </dev/null 9>&- &
    echo $! >"$d/pid"
    dt_wait_until 30 "apt-cacher-ng on $(aptproxy_url)" \
        curl -sf -o /dev/null "$(aptproxy_url)/acng-report.html" ||
        { cat "$d/stdout.log" >&2; return 1; }
}

aptproxy_stop() {
    local pidf
    pidf="$(aptproxy__dir)/pid"
    [ -f "$pidf" ] || return 0
    dt_stop_pid "$(cat "$pidf")" apt-cacher-ng TERM 10
    rm -f "$pidf"
}
