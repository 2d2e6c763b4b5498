#!/usr/bin/env bash
# vmm-flood-guest: the flooding test guest (tests/guest/flood.c, built as
# guest-flood.bin) under vdisk-vmm: issue 14 item 1, "unbounded host
# memory".
#
#   flood-guest-test.sh VDISK_VMM GUEST_FLOOD_BIN VDISK [OUTDIR]
#
# The VMM gets the guest as --firmware, a 64 MiB qcow2 disk (its first MiB
# 0x5a) and an ISO as the CD-ROM.  The guest makes one head available again
# and again without waiting for the device to use it: a read of 1022
# buffers on the disk's queue, an event buffer on the CD-ROM's event queue
# (which the device holds), both chains of 1024 indirect descriptors.
# Before issue 14 every one of them was a new request in flight and
# vdisk-vmm grew by hundreds of MiB; now a queue that would have more
# requests in flight than its size breaks (DEVICE_NEEDS_RESET), and after a
# reset the devices serve again.  Checked: every line of the guest's serial
# output; vdisk-vmm exited 0; its peak RSS (GNU time) is below 200 MiB;
# "virtqueue size exceeded" was logged once for the event queue (and at
# most once for the disk, whose I/O may keep up with the guest); the disk
# passes qemu-img check and holds what it held; the ISO is unchanged.
#
# OUTDIR (default ./vmm-flood-guest) keeps serial.log, vmm.err and maxrss;
# the images are deleted unless VDISK_TEST_KEEP=1.  Exits 77 (skipped) as
# vmm-guest does, and without /usr/bin/time.
set -euo pipefail
: "${VDISK_TEST_NAME:=vmm-flood-guest}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../linux/lib.sh
. "$here/../linux/lib.sh" # new_work_dir, check, exit_if_failed

usage="usage: flood-guest-test.sh VDISK_VMM GUEST_FLOOD_BIN VDISK [OUTDIR]"
vmm=${1:?$usage}
guest=${2:?$usage}
vdisk=${3:?$usage}
out=${4:-$PWD/vmm-flood-guest}
rss_limit_kib=$((200 * 1024))

[ -x /usr/bin/time ] || skip_test "/usr/bin/time (GNU time) not found (scripts/install-deps.sh installs it)"
vmm_test_begin "$vmm" "$guest" "$out"

# --- images ----------------------------------------------------------------------
make_guest_images "$work" # test.iso (and base/overlay, unused here)
cd "$work"
qemu-img create -q -f qcow2 d.qcow2 64M
qemu-io -f qcow2 -c "write -q -P 0x5a 0 1M" d.qcow2 >/dev/null
iso_sum=$(sha256sum test.iso | cut -d' ' -f1)

# --- the run ------------------------------------------------------------------------
rm -f "$out/maxrss"
VMM_MAXRSS=1 VDISK_TEST_TIMEOUT=${VDISK_TEST_TIMEOUT:-60} \
  vmm_run_firmware "$vmm" "$guest" "$out" --disk d.qcow2 --cdrom test.iso
maxrss=$(tail -n1 "$out/maxrss" 2>/dev/null || true)
echo "   vdisk-vmm's peak RSS: ${maxrss:-unknown} KiB"

# --- the serial output, line by line (regular expressions) ---------------------------
expected=(
  "GUEST: vdisk flood guest"
  "GUEST: info block: 2 virtio-mmio device\(s\), 64 MiB of memory"
  "GUEST: blk0: init ok, EVENT_IDX, INDIRECT_DESC, queue size 256"
  "GUEST: blk0: a read of 1022 buffers made available again and again: (DEVICE_NEEDS_RESET|every one used) ok"
  "GUEST: blk0: after a reset, a read of sector 0: 0x5a ok"
  "GUEST: scsi0: init ok, EVENT_IDX, INDIRECT_DESC, event queue size 256"
  "GUEST: scsi0: an event buffer made available again and again: DEVICE_NEEDS_RESET in the second round ok"
  "GUEST: scsi0: after a reset, READ\(10\) of block 16: CD001 ok"
  "GUEST: flood done"
)

check "vdisk-vmm exited 0 after the guest's power-off (status $rc; 124: timed out after ${VDISK_TEST_TIMEOUT:-60}s)" test "$rc" = 0
check "the guest's serial output, all ${#expected[@]} lines" serial_lines_ok "$out/serial.log" regex
check "vdisk-vmm's peak RSS (${maxrss:-unknown} KiB) is below $rss_limit_kib KiB" \
  test "${maxrss:-999999999}" -lt "$rss_limit_kib"

# --- vdisk-vmm's stderr ------------------------------------------------------------------
# count REGEX: the number of lines of vmm.err that match REGEX.
count() { grep -cE "$1" "$out/vmm.err" || true; }
exceeded="virtqueue size exceeded: more requests in flight than the queue's size \(256\); the queue is stopped until the driver resets the device"
check "cdrom: \"virtqueue size exceeded\" logged once, for the event queue" \
  test "$(count "^vdisk-vmm: cdrom: virtio-scsi: queue 1: $exceeded\$")" = 1
check "disk0: \"virtqueue size exceeded\" logged at most once" \
  test "$(count "^vdisk-vmm: disk0: virtio-blk: queue 0: $exceeded\$")" -le 1
check "vdisk-vmm's stderr: no line twice" bash -c "[ -z \"\$(sort '$out/vmm.err' | uniq -d)\" ]"
check "vdisk-vmm's stderr: only the two devices' lines" \
  bash -c "! grep -vE '^vdisk-vmm: (disk0|cdrom): ' '$out/vmm.err'"
if [ -s "$out/vmm.err" ]; then
  echo "   vdisk-vmm's stderr:"
  sed 's/^/     /' "$out/vmm.err"
fi

# --- the images on the host ------------------------------------------------------------
check "qemu-img check d.qcow2" qemu-img check -f qcow2 d.qcow2
check_vdisk_check "$vdisk" d.qcow2
check "d.qcow2 holds 0x5a in its first MiB and zeroes elsewhere (qemu-io)" \
  qemu-io -r -f qcow2 -c "read -P 0x5a 0 1M" -c "read -P 0 1M 63M" d.qcow2
check "the ISO is unchanged" test "$(sha256sum test.iso | cut -d' ' -f1)" = "$iso_sum"

exit_if_failed "serial output" "$out/serial.log" "vdisk-vmm's stderr" "$out/vmm.err"
echo "PASSED (vdisk-vmm with the flood guest: start to exit $ms ms, peak RSS $maxrss KiB)"
