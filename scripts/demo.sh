#!/usr/bin/env bash
# The main job end to end, as far as vdisk goes today: installs the
# dependencies, builds, then creates a raw image and a qcow2 image, writes
# them with vdisk and reads them back with qemu-io (and the reverse), makes
# a linked clone, writes compressed clusters, checks, describes and maps the
# images, takes and applies a snapshot, converts (compressed, and from a
# snapshot), compares, and does unaligned O_DIRECT I/O.  Partitions: a GPT
# on a qcow2 image, one partition written as a device and converted.
# Guests: a Linux kernel (Debian's, in QEMU with software emulation) gets a
# qcow2 clone as its disk and an ISO as its CD-ROM from `vdisk serve` over
# vhost-user, reads the CD and writes the disk; then vdisk-vmm runs the
# bundled test guest on the same kind of disk and CD where /dev/kvm can.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
bash scripts/install-deps.sh
bash scripts/build.sh build
vdisk=$src/build/tools/vdisk
work=$(mktemp -d /var/tmp/vdisk-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "create a 64 MiB raw image"
"$vdisk" create -f raw "$work/disk.img" 64M

step "write with vdisk io, read back with qemu-io"
"$vdisk" io -f raw -c 'write -P 0x5a 1M 256k' -c 'write -z 2M 64k' -c flush "$work/disk.img"
qemu-io -f raw -c 'read -P 0x5a 1M 256k' -c 'read -P 0 2M 64k' "$work/disk.img"

step "write with qemu-io, read back with vdisk io"
qemu-io -f raw -c 'write -P 0xa5 8M 1M' "$work/disk.img" >/dev/null
"$vdisk" io -f raw -c 'read -P 0xa5 8M 1M' "$work/disk.img"

step "unaligned writes with cache=none (O_DIRECT, read-modify-write)"
"$vdisk" io -f raw -n -c 'write -P 0x11 513 3000' -c 'read -P 0x11 513 3000' "$work/disk.img"

step "info, as qemu-img info prints it"
"$vdisk" info --debug "$work/disk.img"
"$vdisk" info --output=json "$work/disk.img"

step "map, as qemu-img map prints it"
"$vdisk" map "$work/disk.img"

step "a qcow2 image with zstd compression, a linked clone of it"
"$vdisk" create -f qcow2 -o compression_type=zstd "$work/base.qcow2" 64M
"$vdisk" io -c 'write -P 0x42 0 4M' -c 'write -c -P 0x43 4M 1M' "$work/base.qcow2"
"$vdisk" create -f qcow2 -b base.qcow2 -F qcow2 "$work/clone.qcow2"
"$vdisk" io -c 'write -P 0x44 1M 64k' -c 'read -P 0x42 0 1M' -c 'read -P 0x43 4M 1M' \
  "$work/clone.qcow2"

step "QEMU reads what vdisk wrote, and checks it"
qemu-io -c 'read -P 0x44 1M 64k' -c 'read -P 0x42 1114112 64k' "$work/clone.qcow2"
qemu-img check "$work/clone.qcow2"
"$vdisk" check "$work/base.qcow2"

step "a snapshot of the clone, a change, and back"
"$vdisk" snapshot -c before "$work/clone.qcow2"
"$vdisk" io -c 'write -P 0x66 0 1M' "$work/clone.qcow2"
"$vdisk" snapshot -l "$work/clone.qcow2"
"$vdisk" snapshot -a before "$work/clone.qcow2"
"$vdisk" io -c 'read -P 0x42 0 1M' "$work/clone.qcow2"

step "convert: a full, compressed copy of the clone, and a raw one of the snapshot"
"$vdisk" convert -p -c -O qcow2 -o compression_type=zstd "$work/clone.qcow2" "$work/full.qcow2"
"$vdisk" convert -l snapshot.name=before "$work/clone.qcow2" "$work/snap.raw"
"$vdisk" compare "$work/clone.qcow2" "$work/full.qcow2"
qemu-img compare "$work/clone.qcow2" "$work/snap.raw"

step "a GPT partition table on a qcow2 image, and a partition as a device"
"$vdisk" create -q -f qcow2 "$work/parts.qcow2" 256M
"$vdisk" part create --table=gpt "$work/parts.qcow2"
"$vdisk" part add --size=64M "$work/parts.qcow2"
"$vdisk" part add "$work/parts.qcow2"
"$vdisk" part list "$work/parts.qcow2"
"$vdisk" io -c 'write -P 0x77 0 1M' "$work/parts.qcow2:p2"
"$vdisk" convert "$work/parts.qcow2:p2" "$work/p2.raw"
qemu-io -f raw -c 'read -P 0x77 0 1M' "$work/p2.raw"

step "the backing chain, as qemu-img info --backing-chain prints it"
"$vdisk" info --backing-chain "$work/clone.qcow2"
"$vdisk" map --output=json "$work/clone.qcow2"

step "an ISO as a CD-ROM and a qcow2 clone as a disk, served by vdisk serve to a Linux guest"
# tests/linux/guest-test.sh builds the images and the ISO, starts
#   vdisk serve --vhost-user-blk SOCK overlay.qcow2
#   vdisk serve --vhost-user-scsi SOCK --cdrom test.iso
# and boots the guest, which mounts /dev/sr0, checks a file's sha256, writes
# the disk with O_DIRECT, ejects the CD and powers off; then the image is
# checked and read back on the host.
rc=0
bash tests/linux/guest-test.sh "$vdisk" "$work/linux-guest" || rc=$?
if [ $rc = 77 ]; then echo "(skipped: see the reason above)"; elif [ $rc != 0 ]; then exit $rc; fi
grep -a 'VDISK-TEST:' "$work/linux-guest/serial.log" || true

step "vdisk-vmm: the bundled guest reads the CD-ROM and writes the disk"
rc=0
bash tests/vmm/guest-test.sh "$src/build/tools/vmm/vdisk-vmm" "$src/build/tests/guest/guest.bin" \
  "$vdisk" "$work/vmm-guest" || rc=$?
if [ $rc = 77 ]; then echo "(skipped: see the reason above)"; elif [ $rc != 0 ]; then exit $rc; fi

step "benchmark: 4 KiB random reads, queue depth 32, io_uring"
"$vdisk" bench -f raw -n -d 32 -c 20000 --random=1 "$work/disk.img" || true

echo
echo "demo: done"
