#!/usr/bin/env bash
# vmm-bad-guest: the hostile test guest (tests/guest/hostile.c, built as
# guest-hostile.bin) under vdisk-vmm: issue 8 item 6, "bad guests".
#
#   bad-guest-test.sh VDISK_VMM GUEST_HOSTILE_BIN VDISK [OUTDIR]
#
# The VMM gets the guest as --firmware, an empty 64 MiB qcow2 disk, a
# read-only qcow2 disk (its first MiB 0x3c) and an ISO as the CD-ROM.  The
# guest makes mistakes on purpose (features not offered, queue sizes that
# are zero, not powers of two or too large, rings outside RAM, MMIO of odd
# widths and to unknown registers, buffers and indirect tables outside RAM,
# looping chains, requests beyond the disk, unknown request types, writes
# to the read-only disk, an available entry beyond the table, SCSI commands
# to a missing target, beyond the medium and writes to the CD) and prints
# what the devices answered; every line of its output is checked, then:
# vdisk-vmm exited 0; its stderr logged each kind of mistake once per
# device, and nothing else; qemu-img check of both disks; the guest's one
# good write is on the disk and nothing else is; the read-only disk and the
# ISO are unchanged.
#
# OUTDIR (default ./vmm-bad-guest) keeps serial.log and vmm.err; the images
# are deleted unless VDISK_TEST_KEEP=1.  Exits 77 (skipped) as vmm-guest
# does: /dev/kvm missing or unusable, KVM refusing a VM, or a tool missing.
set -euo pipefail
: "${VDISK_TEST_NAME:=vmm-bad-guest}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../linux/lib.sh
. "$here/../linux/lib.sh" # new_work_dir, check, exit_if_failed

usage="usage: bad-guest-test.sh VDISK_VMM GUEST_HOSTILE_BIN VDISK [OUTDIR]"
vmm=${1:?$usage}
guest=${2:?$usage}
vdisk=${3:?$usage}
out=${4:-$PWD/vmm-bad-guest}

vmm_test_begin "$vmm" "$guest" "$out"

# --- images ----------------------------------------------------------------------
make_guest_images "$work" # test.iso (and base/overlay, unused here)
cd "$work"
qemu-img create -q -f qcow2 d.qcow2 64M
qemu-img create -q -f qcow2 ro.qcow2 16M
qemu-io -f qcow2 -c "write -q -P 0x3c 0 1M" ro.qcow2 >/dev/null
ro_sum=$(sha256sum ro.qcow2 | cut -d' ' -f1)
iso_sum=$(sha256sum test.iso | cut -d' ' -f1)

# --- the run ------------------------------------------------------------------------
vmm_run_firmware "$vmm" "$guest" "$out" --disk d.qcow2 --disk ro.qcow2,readonly --cdrom test.iso

# --- the serial output, line by line (exact) ----------------------------------------
q="QueueNumMax 256): QueueReady reads 0 ok"
expected=(
  "GUEST: vdisk hostile guest"
  "GUEST: info block: 3 virtio-mmio device(s), 64 MiB of memory"
  "GUEST: blk0: feature bit 60 (not offered): FEATURES_OK refused ok"
  "GUEST: blk0: QueueNum 0 (zero, $q"
  "GUEST: blk0: QueueNum 100 (not a power of two, $q"
  "GUEST: blk0: QueueNum 512 (above QueueNumMax, $q"
  "GUEST: blk0: QueueNum 64 (rings at 0xf0000000, outside RAM, $q"
  "GUEST: blk0: QueueNum 64 (descriptor table not 16-byte aligned, $q"
  "GUEST: blk0: queue 5 (the device has 1): QueueNumMax 0, QueueReady stays 0 ok"
  "GUEST: blk0: init ok, INDIRECT_DESC, queue size 64"
  "GUEST: blk0: MMIO reads of 1, 2 and 4 unaligned bytes read 0 ok"
  "GUEST: blk0: MMIO writes of 1 and 2 bytes ignored (status 0x0f, queue 0 ready) ok"
  "GUEST: blk0: QueueNotify of queue 7 (the device has 1) ignored ok"
  "GUEST: blk0: unknown register 0x0c8 and config offset 0x0f0 (0x1f0) read 0 ok"
  "GUEST: blk0: read into 0xf0000000 (outside RAM): status IOERR, used length 1 ok"
  "GUEST: blk0: write from 0xf0000000 (outside RAM): status IOERR, used length 1 ok"
  "GUEST: blk0: read into a buffer across the end of RAM: status IOERR, used length 1 ok"
  "GUEST: blk0: read across the end of the disk: status IOERR ok"
  "GUEST: blk0: write past the end of the disk: status IOERR ok"
  "GUEST: blk0: write at sector 2^63-1: status IOERR ok"
  "GUEST: blk0: request type 127: status UNSUPP ok"
  "GUEST: blk0: looping descriptor chain: completed, used length 0 ok"
  "GUEST: blk0: next index 200 beyond the table of 64: completed, used length 0 ok"
  "GUEST: blk0: indirect table at 0xf0000000 (outside RAM): completed, used length 0 ok"
  "GUEST: blk0: indirect table across the end of RAM: completed, used length 0 ok"
  "GUEST: blk0: available entry 999: DEVICE_NEEDS_RESET, after a reset a read ok"
  "GUEST: blk1: init ok, RO, queue size 64"
  "GUEST: blk1: write to the read-only disk: status IOERR ok"
  "GUEST: blk1: read of sector 0: status OK, data 0x3c ok"
  "GUEST: scsi0: init ok, queue size 32"
  "GUEST: scsi0: command to target 5: response BAD_TARGET ok"
  "GUEST: scsi0: READ(10) past the end: CHECK CONDITION, ILLEGAL REQUEST, asc 0x21 ok"
  "GUEST: scsi0: READ(10) across the end: CHECK CONDITION, ILLEGAL REQUEST, asc 0x21 ok"
  "GUEST: scsi0: WRITE(10): CHECK CONDITION, DATA PROTECT, asc 0x27 ok"
  "GUEST: scsi0: READ(10) into 0xf0000000 (outside RAM): response FAILURE ok"
  "GUEST: scsi0: after all that, READ(10) of block 16: CD001 ok"
  "GUEST: blk0: after all that, wrote and read back 4096 bytes at sector 4096 ok"
  "GUEST: hostile done"
)

check "vdisk-vmm exited 0 after the guest's power-off (status $rc; 124: timed out after ${VDISK_TEST_TIMEOUT:-30}s)" test "$rc" = 0
check "the guest's serial output, all ${#expected[@]} lines" serial_lines_ok "$out/serial.log" exact

# --- vdisk-vmm's stderr: each kind of mistake logged once per device ------------------
# DEVICE COUNT REGEX...: the log lines of DEVICE are exactly COUNT, and each
# REGEX matches exactly one of them.
logged_once() {
  local dev=$1 count=$2 n bad=0
  shift 2
  n=$(grep -c "^vdisk-vmm: $dev: " "$out/vmm.err" || true)
  if [ "$n" != "$count" ]; then
    echo "$n lines for $dev, expected $count"
    bad=1
  fi
  local re
  for re in "$@"; do
    n=$(grep -cE "^vdisk-vmm: $dev: $re" "$out/vmm.err" || true)
    if [ "$n" != 1 ]; then
      echo "$n lines for $dev match /$re/, expected 1"
      bad=1
    fi
  done
  return $bad
}
check "vdisk-vmm's stderr: no line twice" bash -c "[ -z \"\$(sort '$out/vmm.err' | uniq -d)\" ]"
check "vdisk-vmm's stderr: only the three devices' lines" \
  bash -c "! grep -vE '^vdisk-vmm: (disk0|disk1|cdrom): ' '$out/vmm.err'"
check "disk0: each kind of mistake logged once" logged_once disk0 14 \
  "features 0x[0-9a-f]+ refused: .*not offered" \
  "queue 0: size 0 is not a power of two in 1\.\.256: not made ready" \
  "queue 0: not made ready: .*not inside guest memory" \
  "queue register 0x038 written for queue 5 " \
  "read of 1 bytes at register 0x000: reads 0" \
  "QueueNotify for queue 7, which is not ready" \
  "read of unknown register 0x0c8" \
  "virtio-blk: queue 0: buffer at 0xf0000000 \(512 bytes\) is outside guest memory" \
  "virtio-blk: request for [0-9]+ bytes at sector [0-9]+ is beyond the device" \
  "virtio-blk: request type 127 is not supported" \
  "virtio-blk: queue 0: the chain at descriptor 0 loops" \
  "virtio-blk: queue 0: indirect table at 0xf0000000 \(48 bytes\) is outside guest memory" \
  "virtio-blk: queue 0: available ring entry names a descriptor beyond the table \(999\)" \
  "a queue is broken: DEVICE_NEEDS_RESET"
check "disk1: the write to the read-only disk logged once" logged_once disk1 1 \
  "virtio-blk: write to a read-only device"
check "cdrom: the buffer outside RAM logged once" logged_once cdrom 1 \
  "virtio-scsi: queue 2: buffer at 0xf0000000 \(2048 bytes\) is outside guest memory"
if [ -s "$out/vmm.err" ]; then
  echo "   vdisk-vmm's stderr:"
  sed 's/^/     /' "$out/vmm.err"
fi

# --- the images on the host ------------------------------------------------------------
check "qemu-img check d.qcow2" qemu-img check -f qcow2 d.qcow2
check "qemu-img check ro.qcow2" qemu-img check -f qcow2 ro.qcow2
check_vdisk_check "$vdisk" d.qcow2
check "d.qcow2 holds the guest's good write (0xa5 at 2 MiB) and zeroes elsewhere (qemu-io)" \
  qemu-io -r -f qcow2 -c "read -P 0 0 2M" -c "read -P 0xa5 2M 4K" -c "read -P 0 2052K 63484K" d.qcow2
check "the read-only disk is unchanged" test "$(sha256sum ro.qcow2 | cut -d' ' -f1)" = "$ro_sum"
check "the ISO is unchanged" test "$(sha256sum test.iso | cut -d' ' -f1)" = "$iso_sum"

exit_if_failed "serial output" "$out/serial.log" "vdisk-vmm's stderr" "$out/vmm.err"
echo "PASSED (vdisk-vmm with the hostile guest: start to exit $ms ms)"
