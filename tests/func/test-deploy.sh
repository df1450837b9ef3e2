#!/usr/bin/env bash
# The quick slice of scripts/deploy-test (README, "Deploying a cluster"):
# the Debian package of this build, installed by the ansible role over ssh
# on a booted Debian 12 host (systemd-nspawn), as a proxy, three blob
# servers (one per data directory) and an agent, each a Type=notify unit
# that said READY=1; fio verify over NBD; a second playbook run changes
# nothing; the host is torn down.  The full proof (seven hosts, a rolling
# upgrade under fio) is `scripts/deploy-test cluster test`, a command of
# its own: it takes longer than this suite's budget.
#
# Skips, saying why, where it cannot run: not root, no systemd-nspawn,
# ansible or apt-cacher-ng (the suite installs nothing on this machine;
# scripts/deploy-test itself would), neither debootstrap nor a cached
# rootfs, no network to the Debian mirror (the host installs the package's
# libraries and fio through the apt proxy), too little disk, another
# deploy-test running, or BLOCKD_TEST_SKIP_DEPLOY=1.
. "$(dirname "$0")/functions.sh"
set -e

[ "${BLOCKD_TEST_SKIP_DEPLOY:-0}" != 1 ] || skip "BLOCKD_TEST_SKIP_DEPLOY=1"
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, mounts, systemd-nspawn)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (Debian: systemd-container)"
command -v ansible-playbook >/dev/null || skip "no ansible-playbook (Debian: ansible-core)"
command -v apt-cacher-ng >/dev/null || skip "no apt-cacher-ng (the hosts' apt proxy; Debian: apt-cacher-ng)"
cache=${BLOCKD_DEPLOY_CACHE:-/var/cache/blockd-deploy}
command -v debootstrap >/dev/null || compgen -G "$cache/rootfs-bookworm-*.tar" >/dev/null ||
    skip "no debootstrap and no cached rootfs in $cache (Debian: debootstrap)"
command -v flock >/dev/null || skip "no flock"
flock -n /run/lock/blockd-deploy-test.lock true || skip "another scripts/deploy-test is running"
[ -z "$("$SRCDIR/scripts/deploy-test" hosts list 2>/dev/null)" ] || skip "scripts/deploy-test hosts are up"
# shellcheck disable=SC2016  # apt's format, not the shell's
mirror=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
         awk '$2 == "bookworm" { print $1; exit }')
[ -n "$mirror" ] || skip "this machine's apt has no Debian 12 (bookworm) source"
curl -sfI --max-time 15 -o /dev/null "${mirror%/}/dists/bookworm/Release" ||
    skip "no network to the Debian mirror $mirror"
free=$(df -P -BG /var/tmp | awk 'NR == 2 { sub("G", "", $4); print $4 }')
[ "$free" -ge 4 ] || skip "only $free GiB free in /var/tmp"

tmp=$(mktmp)
# The release build when scripts/test made one, else this test build: the
# package is about installing and running, not about what is compiled in.
bin=${BLOCKD_RELEASE:-$BLOCKD}
deb=$(BLOCKD_PKG_BINARY=$bin BLOCKD_PKG_OUT=$tmp/pkg "$SRCDIR/scripts/package" 2>"$tmp/package.log" |
      tail -n 1) || { cat "$tmp/package.log"; fail "scripts/package failed"; }
BLOCKD_DEPLOY_RESULTS=$tmp/results BLOCKD_DEPLOY_MIN_FREE_GB=4 \
    timeout 1500 "$SRCDIR/scripts/deploy-test" cluster quick "$deb" ||
    fail "scripts/deploy-test cluster quick failed (its logs: above)"
