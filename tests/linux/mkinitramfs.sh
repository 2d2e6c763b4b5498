#!/usr/bin/env bash
# Builds the test guest's initramfs: busybox-static, the kernel modules for
# virtio-mmio disks and SCSI CD-ROMs, two small static helpers
# (guest-eject.c, guest-randread.c) and /init (the file `init` next to this
# script). A gzip'ed cpio archive in the newc format.
#
#   mkinitramfs.sh OUTPUT MODULES_DIR [DATA_DIR]
#
# DATA_DIR, when given, is copied to /data in the archive (files the guest
# writes to its disk, for the host to compare: tests/linux/nbd-test.sh).
# MODULES_DIR is the kernel's lib/modules/VERSION (scripts/fetch-guest-kernel.sh
# leaves it at $VDISK_GUEST_KERNEL_DIR/modules). The modules are loaded with
# busybox insmod, which neither resolves dependencies nor (in every build)
# decompresses, so the order is computed here with `modinfo -F depends` and
# .ko.xz / .ko.zst / .ko.gz modules are decompressed here.
# Needs: busybox (static), cpio, gzip, modinfo (kmod), cc with a static libc.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: mkinitramfs.sh OUTPUT MODULES_DIR [DATA_DIR]}
moddir=${2:?usage: mkinitramfs.sh OUTPUT MODULES_DIR [DATA_DIR]}
datadir=${3:-}
[ -d "$moddir/kernel" ] || { echo "mkinitramfs.sh: $moddir has no kernel/ tree" >&2; exit 1; }

# The modules the tests need; their dependencies are added before them.
wanted=(virtio_ring virtio virtio_mmio virtio_blk cdrom isofs scsi_common scsi_mod virtio_scsi sr_mod)

busybox=
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || { echo "mkinitramfs.sh: no static busybox (apt-get install busybox-static)" >&2; exit 1; }
for tool in cpio gzip modinfo "${CC:-cc}"; do
  command -v "$tool" >/dev/null || { echo "mkinitramfs.sh: $tool not found" >&2; exit 1; }
done

root=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules,mnt/cd}

cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init" "$root/init"
if [ -n "$datadir" ]; then
  cp -R "$datadir" "$root/data"
fi
chmod 0755 "$root/init"
for prog in guest-eject guest-randread; do
  "${CC:-cc}" -static -O2 -Wall -o "$root/bin/$prog" "$here/$prog.c"
done
# The kernel opens /dev/console for init before anything is mounted. mknod
# needs root; without it /init reopens the console once devtmpfs is up.
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || true

# Find a module file by name (file names use - and _ interchangeably).
find_module() {
  local alt=${1//_/-}
  find "$moddir/kernel" \( -name "$1.ko" -o -name "$1.ko.*" -o -name "$alt.ko" -o -name "$alt.ko.*" \) | head -n1
}

order=()
declare -A state=()
visit() { # depth-first: dependencies first
  local m=$1 f dep
  case "${state[$m]:-}" in
    done) return ;;
    active) echo "mkinitramfs.sh: module dependency cycle at $m" >&2; exit 1 ;;
  esac
  if grep -qE "/$m\.ko" "$moddir/modules.builtin" 2>/dev/null; then
    state[$m]="done" # built into the kernel
    return
  fi
  f=$(find_module "$m")
  [ -n "$f" ] || { echo "mkinitramfs.sh: module $m not found under $moddir" >&2; exit 1; }
  state[$m]=active
  for dep in $(modinfo -F depends "$f" | tr ',' ' '); do
    visit "$dep"
  done
  state[$m]="done"
  case "$f" in
    *.ko) cp "$f" "$root/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" > "$root/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *) echo "mkinitramfs.sh: unknown module file $f" >&2; exit 1 ;;
  esac
  order+=("$m")
}
for m in "${wanted[@]}"; do visit "$m"; done
printf '%s\n' "${order[@]}" > "$root/etc/modules.order"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$out.tmp"
mv "$out.tmp" "$out"
echo "initramfs: $out ($(du -k "$out" | cut -f1) KiB), modules: ${order[*]}"
