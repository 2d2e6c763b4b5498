#!/usr/bin/env bash
# The main job end to end, as far as vdisk goes today: installs the
# dependencies, builds, then creates an image, writes it with vdisk and reads
# it back with qemu-io (and the reverse), describes and maps it, and does
# unaligned O_DIRECT I/O.  Later steps (qcow2 snapshots and clones, convert,
# partitions, an ISO served as a CD-ROM to a guest) join as they land.
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

step "benchmark: 4 KiB random reads, queue depth 32, io_uring"
"$vdisk" bench -f raw -n -d 32 -c 20000 --random=1 "$work/disk.img" || true

echo
echo "demo: done"
