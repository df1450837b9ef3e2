#!/usr/bin/env bash
# Issue 20 item 4: a VM boots from a volume.
#   1. A small bootable system (Debian's kernel, a tiny initramfs, and an
#      ext4 root filesystem holding busybox) is built once and cached
#      outside the source tree, keyed by the package versions and by this
#      script's build recipe.
#   2. qemu-img convert writes the root filesystem to a volume attached
#      to the agent for client "vmboot", through the volume's own Unix
#      socket; qemu-system-x86_64 (TCG) boots with the disk on the agent's
#      TCP export with TLS, as README "A VM's disk under libvirt" sets it
#      up (tls-creds-x509 on a directory holding ca-cert.pem and a client
#      certificate naming vmboot; qemu's nbd driver, cache=none).  The
#      guest writes a random token (passed on the kernel command line) to
#      /token, syncs, remounts read-only and powers off.
#   3. The volume is snapshotted, the snapshot cloned and the clone
#      attached; a second boot, from the clone's own Unix socket and with
#      a command line that does not carry the token, reads /token and
#      prints it on the serial console: the test finds it in the log.
# Every boot is bounded by VM_BOOT_TIMEOUT seconds.  Skipped (77) only
# where qemu-system-x86_64 or the tools to build the image are missing,
# or the packages cannot be downloaded and nothing is cached.
#
# The cache: $BLOCKD_VM_CACHE, else ${XDG_CACHE_HOME:-/var/cache}/blockd-test/vm
# (~/.cache/blockd-test/vm when that cannot be created); one directory
# per key holding kernel, initrd.img and rootfs.img (about 70 MB: the
# kernel is kept uncompressed, see vm_build).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires qemu-system-x86_64 --version
requires qemu-img --version
requires jq --version
boot_timeout=${VM_BOOT_TIMEOUT:-240}
tmp=$(mktmp)

# vm_module_file DIR NAME: print the path of module NAME's file under DIR
# (lib/modules/VERSION), .ko or compressed; empty when there is none.
vm_module_file() {
    find "$1/kernel" \( -name "$2.ko*" -o -name "${2//_/-}.ko*" \) -print -quit
}

# vm_module_cat FILE: a module's bytes, decompressed.
vm_module_cat() {
    case $1 in
    *.ko.xz) xz -dc "$1" ;;
    *.ko.zst) zstd -qdc "$1" ;;
    *.ko.gz) gzip -dc "$1" ;;
    *) cat "$1" ;;
    esac
}

# vm_module_info FILE KEY: the values of KEY in a module's .modinfo
# section (NUL-separated key=value strings), one a line.
vm_module_info() {
    vm_module_cat "$1" | tr '\0' '\n' | sed -n "s/^$2=//p"
}

# vm_module_resolve DIR NAME: append NAME and, before it, what it needs
# (depends=, and softdep pre: modules, such as ext4's crypto-crc32c) to
# vm_order, each once; built-in modules are skipped.  An alias
# (crypto-crc32c) resolves to a module of kernel/crypto declaring it: the
# generic C implementations, not the arch ones needing CPU features TCG
# may lack.  modules.dep is not in the package (depmod writes it at
# install), so the dependencies come from the modules themselves.
declare -A vm_seen=()
vm_order=()
vm_module_resolve() {
    local dir=$1 name=${2//-/_} file dep f
    [ -z "${vm_seen[$name]:-}" ] || return 0
    vm_seen[$name]=1
    grep -q "/${name}\.ko\|/${name//_/-}\.ko" "$dir/modules.builtin" && return 0
    file=$(vm_module_file "$dir" "$name")
    if [ -z "$file" ]; then
        for f in "$dir"/kernel/crypto/*.ko*; do
            if vm_module_info "$f" alias | grep -qx "$2"; then file=$f; break; fi
        done
        [ -n "$file" ] || fail "module $2: not in the kernel package"
        name=$(basename "${file%%.ko*}")
        name=${name//-/_}
        [ -z "${vm_seen[$name]:-}" ] || return 0
        vm_seen[$name]=1
    fi
    for dep in $(vm_module_info "$file" depends | tr ',' ' ') \
        $(vm_module_info "$file" softdep | sed -n 's/.*pre:\(.*\)/\1/p' | sed 's/post:.*//'); do
        vm_module_resolve "$dir" "$dep"
    done
    vm_order+=("$name:$file")
}

# vm_build OUT KERNEL_DEB BUSYBOX_DEB: build kernel, initrd.img and
# rootfs.img in OUT.  The packages are unpacked under the test's temp dir
# (400 MB, removed at exit).
vm_build() {
    local out=$1 x=$tmp/vm-build kdir m name file a off
    mkdir -p "$x/k" "$x/bb" "$x/initrd/bin" "$x/initrd/lib/modules" "$x/root/bin"
    dpkg-deb -x "$2" "$x/k"
    dpkg-deb -x "$3" "$x/bb"
    # The kernel: the uncompressed ELF vmlinux when it has a PVH entry
    # (CONFIG_PVH), which qemu's -kernel starts directly; a bzImage spends
    # most of a TCG boot decompressing itself (25 of 40 s, measured).
    # Debian's is xz-compressed: the payload is the first xz stream in the
    # bzImage.  Otherwise the bzImage as it is.
    cp "$x"/k/boot/vmlinuz-* "$out/kernel"
    if grep -qx 'CONFIG_PVH=y' "$x"/k/boot/config-* &&
        grep -qx 'CONFIG_KERNEL_XZ=y' "$x"/k/boot/config-* && command -v xz >/dev/null; then
        off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$out/kernel" | head -1 | cut -d: -f1)
        if [ -n "$off" ] &&
            tail -c +$((off + 1)) "$out/kernel" | xz -dc --single-stream >"$x/vmlinux" 2>/dev/null &&
            cmp -s -n 4 <(printf '\177ELF') "$x/vmlinux"; then
            mv "$x/vmlinux" "$out/kernel"
        fi
    fi
    kdir=$(echo "$x"/k/lib/modules/*)
    [ -d "$kdir/kernel" ] || fail "no modules in $2"

    # Stage 1, the initramfs: load what a virtio disk holding ext4 needs,
    # mount /dev/vda and switch_root into it.
    for m in virtio_pci virtio_blk ext4; do vm_module_resolve "$kdir" "$m"; done
    for m in "${vm_order[@]}"; do
        name=${m%%:*} file=${m#*:}
        vm_module_cat "$file" >"$x/initrd/lib/modules/$name.ko"
        echo "$name" >>"$x/initrd/modules"
    done
    cp "$x/bb/bin/busybox" "$x/initrd/bin/busybox"
    cp "$x/bb/bin/busybox" "$x/root/bin/busybox"
    for a in $("$x/bb/bin/busybox" --list); do
        [ "$a" = busybox ] && continue
        ln -s busybox "$x/initrd/bin/$a"
        ln -s busybox "$x/root/bin/$a"
    done
    cat >"$x/initrd/init" <<'EOF'
#!/bin/busybox sh
# blockd test VM, stage 1: load the modules, mount /dev/vda, switch_root.
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
die() { echo "BLOCKD-VM: FAIL: $*"; poweroff -f; }
for m in $(cat /modules); do insmod "/lib/modules/$m.ko" || die "insmod $m"; done
n=0
while [ ! -b /dev/vda ]; do
    n=$((n + 1))
    [ $n -le 300 ] || die "no /dev/vda after 30 s"
    sleep 0.1
done
mount -t ext4 /dev/vda /newroot || die "mount /dev/vda"
umount /proc /sys
mount -o move /dev /newroot/dev || die "move /dev"
exec switch_root /newroot /init
die "switch_root"
EOF
    # Stage 2, on the volume: write or read /token, then power off.
    cat >"$x/root/init" <<'EOF'
#!/bin/sh
# blockd test VM, stage 2 (on the volume).  blockd_mode=write writes
# blockd_token to /token; blockd_mode=read prints /token.
export PATH=/bin
mount -t proc proc /proc
mode= token=
for w in $(cat /proc/cmdline); do
    case $w in
    blockd_mode=*) mode=${w#*=} ;;
    blockd_token=*) token=${w#*=} ;;
    esac
done
case $mode in
write)
    if [ -e /token ]; then
        echo "BLOCKD-VM: FAIL: /token exists before the first boot"
    else
        echo "$token" >/token
        sync
        echo "BLOCKD-VM: wrote $token"
    fi
    ;;
read)
    if [ -e /token ]; then
        echo "BLOCKD-VM: read $(cat /token)"
        echo read >/clone-booted
        sync
    else
        echo "BLOCKD-VM: FAIL: no /token"
    fi
    ;;
*) echo "BLOCKD-VM: FAIL: blockd_mode=$mode" ;;
esac
mount -o remount,ro /
echo "BLOCKD-VM: done"
poweroff -f
EOF
    chmod 755 "$x/initrd/init" "$x/root/init"
    mkdir -p "$x/root/proc" "$x/root/sys" "$x/root/dev" "$x/root/tmp"
    (cd "$x/initrd" && find . | "$x/bb/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -9 >"$out/initrd.img"
    mke2fs -q -t ext4 -b 4096 -L blockd-vm -E root_owner=0:0 -d "$x/root" "$out/rootfs.img" 64M \
        >/dev/null
    rm -rf "$x"
}

# vm_image: set VM_DIR to the cached image directory, building it when
# missing.  The key names the kernel and busybox packages and versions
# and a hash of the build recipe above, so a new kernel or a changed
# recipe builds a new image.
vm_image() {
    local base kpkg kver bver key build debs
    requires apt-cache --version
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
    [ -n "$kpkg" ] || skip "apt-cache does not name the kernel of linux-image-amd64"
    kver=$(apt-cache policy "$kpkg" | sed -n 's/^ *Candidate: //p')
    bver=$(apt-cache policy busybox-static | sed -n 's/^ *Candidate: //p')
    if [ -z "$kver" ] || [ "$kver" = "(none)" ]; then skip "no candidate version of $kpkg"; fi
    if [ -z "$bver" ] || [ "$bver" = "(none)" ]; then skip "no candidate version of busybox-static"; fi
    key=$(printf '%s\n' "$kpkg=$kver" "busybox-static=$bver" \
        "$(declare -f vm_build vm_module_resolve vm_module_info vm_module_cat vm_module_file)" |
        sha256sum | cut -c1-16)
    # The cache, or ~/.cache when it is not ours to write and holds no
    # image for this key.
    base=${BLOCKD_VM_CACHE:-${XDG_CACHE_HOME:-/var/cache}/blockd-test/vm}
    VM_DIR=$base/$kpkg-${kver//[:~]/_}-$key
    [ -r "$VM_DIR/rootfs.img" ] && return 0
    if ! { mkdir -p "$base" 2>/dev/null && [ -w "$base" ]; }; then
        base=$HOME/.cache/blockd-test/vm
        mkdir -p "$base"
        VM_DIR=$base/${VM_DIR##*/}
        [ -r "$VM_DIR/rootfs.img" ] && return 0
    fi

    requires dpkg-deb --version
    requires mke2fs -V
    requires gzip --version
    echo "building the VM image in $VM_DIR ($kpkg $kver, busybox-static $bver)"
    # (As root, apt warns that it downloads unsandboxed: _apt cannot
    # write the test's temp dir.  The download is the same.)
    (cd "$tmp" && timeout 300 apt-get download "$kpkg=$kver" "busybox-static=$bver") \
        >"$tmp/download.log" 2>&1 ||
        { cat "$tmp/download.log"; skip "cannot download $kpkg and busybox-static"; }
    # A build is made beside the cache entries and renamed into place when
    # whole; one left by a test killed mid-build is removed a day later.
    find "$base" -maxdepth 1 -name '.build.*' -mmin +1440 -exec rm -rf {} +
    build=$(mktemp -d "$base/.build.XXXXXX")
    cleanup_fn rm -rf "$build"
    debs=("$tmp"/linux-image-*.deb "$tmp"/busybox-static_*.deb)
    vm_build "$build" "${debs[@]}"
    chmod 755 "$build"
    # Another test may have built the same key meanwhile: keep the first.
    mv -T "$build" "$VM_DIR" 2>/dev/null || rm -rf "$build"
    [ -f "$VM_DIR/rootfs.img" ] || fail "building the VM image left no $VM_DIR/rootfs.img"
}

# vm_boot VOLUME LOG CMDLINE_EXTRA QEMU_ARGS...: boot with the disk
# QEMU_ARGS give (an -drive, and its -object if any), serial console to
# LOG, until the guest powers off (qemu exits) or boot_timeout seconds;
# VM_TOOK is the time taken.
vm_boot() {
    local t0=$SECONDS rc=0 pid vol=$1 log=$2 append=$3
    shift 3
    timeout "$boot_timeout" qemu-system-x86_64 -accel tcg -machine pc -m 256M -smp 1 \
        -nodefaults -display none -no-reboot -monitor none -serial "file:$log" \
        -kernel "$VM_DIR/kernel" -initrd "$VM_DIR/initrd.img" \
        -append "console=ttyS0 panic=1 $append" "$@" >"$log.qemu" 2>&1 &
    pid=$!
    cleanup_fn kill_pid $pid
    wait $pid || rc=$?
    if [ $rc -ne 0 ]; then
        cat "$log.qemu" "$log" >&2
        [ $rc -eq 124 ] && fail "the boot from $vol did not power off within ${boot_timeout}s"
        fail "qemu-system-x86_64 exited $rc booting from $vol"
    fi
    if grep -q "BLOCKD-VM: FAIL" "$log"; then
        cat "$log" >&2
        fail "the guest booted from $vol reports: $(grep -m1 'BLOCKD-VM: FAIL' "$log" | tr -d '\r')"
    fi
    VM_TOOK=$((SECONDS - t0))
}

vm_image
echo "image: $VM_DIR"

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1
cluster_start
cluster_wait_ready 30
# vm0 opens over TCP only for client vmboot's certificate (README "A
# VM's disk under libvirt": the directory libvirt's nbd_tls_x509_cert_dir
# names).
cluster_create_volume vm0 64M --client vmboot
pki=$tmp/pki
mkdir -p "$pki"
cp "$CLUSTER_CA" "$pki/ca-cert.pem"
"$BLOCKD" cert issue --ca "$CLUSTER_TLS_DIR/ca" --role client --id vmboot --out "$pki/client" \
    >/dev/null || fail "blockd cert issue --role client"
mv "$pki/client.pem" "$pki/client-cert.pem"
mv "$pki/client.key" "$pki/client-key.pem"
timeout 120 qemu-img convert -n -f raw -O raw "$VM_DIR/rootfs.img" \
    "nbd+unix:///vm0?socket=$(cluster_vol_socket vm0)" ||
    fail "qemu-img convert of the root filesystem into vm0"
echo "ok: the root filesystem is on vm0 (through its Unix socket)"

token=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
vm_boot vm0 "$tmp/boot1.log" "blockd_mode=write blockd_token=$token" \
    -object "tls-creds-x509,id=tls0,dir=$pki,endpoint=client" \
    -drive "driver=nbd,server.type=inet,server.host=${CLUSTER_NBD[agent1]%:*},server.port=${CLUSTER_NBD[agent1]##*:},export=vm0,tls-creds=tls0,if=virtio,cache=none"
grep -q "BLOCKD-VM: wrote $token" "$tmp/boot1.log" ||
    { cat "$tmp/boot1.log" >&2; fail "the first boot did not write the token"; }
grep -qE "nbd conn .*attached.*TLSv1\.[23] .*client certificate vmboot" "$CLUSTER_DIR/agent1/blockd.log" ||
    fail "the agent logged no TLS connection of client vmboot"
echo "ok: booted from vm0 over TCP with TLS, the guest wrote /token and powered off (${VM_TOOK}s)"

cluster_ctl snapshot create vm0 s1 | grep -q "snapshot s1 of vm0 created" || fail "snapshot create"
cluster_ctl volume clone vm0 s1 vm1 | grep -q "^vm1 " || fail "volume clone"
# A volume is served only where it is attached.
cluster_attach vm1 agent1
vm_boot vm1 "$tmp/boot2.log" "blockd_mode=read" \
    -drive "file=nbd+unix:///vm1?socket=$(cluster_vol_socket vm1),format=raw,if=virtio,cache=none"
grep -q "blockd_token" "$tmp/boot2.log" && fail "the second boot's command line carries the token"
grep -q "BLOCKD-VM: read $token" "$tmp/boot2.log" ||
    { cat "$tmp/boot2.log" >&2; fail "the boot from the clone did not read the token"; }
echo "ok: booted from vm1, a clone of snapshot s1 of vm0, over its Unix socket: the guest read the token (${VM_TOOK}s)"
cluster_stop_all
