#!/usr/bin/env bash
# vmm-guest: the bundled test guest (tests/guest/) under vdisk-vmm.
#
#   guest-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]
#
# The VMM gets the guest as --firmware, a qcow2 overlay (on a qcow2 backing
# file) as --disk and an ISO made by xorriso as --cdrom.  The guest drives
# the virtio-mmio devices itself and reports on the serial port; every line
# of its output is checked (the values the host knows exactly: capacities,
# CRC-32s, the file's place on the ISO, the disk's serial), then that the
# VMM exited 0 after the guest's power-off, and on the host: qemu-img check
# and vdisk check of the overlay, the guest's pattern read back by
# qemu-img, the backing file's data still seen through the overlay, the
# backing file unchanged.
#
# OUTDIR (default ./vmm-guest) keeps serial.log and vmm.err; the images are
# deleted unless VDISK_TEST_KEEP=1.
# Exits 77 (skipped) when /dev/kvm is missing or unusable, when KVM refuses
# the VMM a VM, or when vdisk-vmm, the guest or a tool is missing.
set -euo pipefail
: "${VDISK_TEST_NAME:=vmm-guest}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../linux/lib.sh
. "$here/../linux/lib.sh" # new_work_dir, check, exit_if_failed

vmm=${1:?usage: guest-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]}
guest=${2:?usage: guest-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]}
vdisk=${3:?usage: guest-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]}
out=${4:-$PWD/vmm-guest}

vmm_test_begin "$vmm" "$guest" "$out"

# --- images ----------------------------------------------------------------------
make_guest_images "$work"
cd "$work"
base_sum=$(sha256sum base.qcow2 | cut -d' ' -f1)
serial=VDISK-GUEST-01
iso_blocks=$(($(stat -c %s test.iso) / 2048))
file_size=$(stat -c %s "$ISO_FILE")
file_crc=$(crc32_of "$ISO_FILE")
file_lba=$(xorriso -indev test.iso -find /HELLO.TXT -exec report_lba -- 2>/dev/null |
           sed -n "s/^File data lba: *0 *, *\([0-9]*\) *,.*'\/HELLO.TXT'.*/\1/p")
[ -n "$file_lba" ] || { echo "cannot find HELLO.TXT's block with xorriso"; exit 1; }
head -c 512 /dev/zero | tr '\000' '\132' >first.bin
first_crc=$(crc32_of first.bin)

# --- the run ------------------------------------------------------------------------
vmm_run_firmware "$vmm" "$guest" "$out" --disk "overlay.qcow2,serial=$serial" --cdrom test.iso

# --- the serial output, line by line (bash regular expressions) ----------------------
x() { printf '%s' "$1" | sed 's/[][\.*^$()+?{}|]/\\&/g'; } # a literal in a regex
expected=(
  "$(x "GUEST: vdisk test guest")"
  "$(x "GUEST: info block: 2 virtio-mmio device(s), 64 MiB of memory")"
  "$(x "GUEST: blk0: virtio-blk at 0xd0000000 irq 5")"
  "GUEST: blk0: init ok, features VERSION_1( [A-Z_]+)* FLUSH( [A-Z_]+)*, queue size 64"
  "$(x "GUEST: blk0: capacity 131072 sectors (64 MiB), block size 512")"
  "$(x "GUEST: blk0: GET_ID serial '$serial' ok")"
  "$(x "GUEST: blk0: read 512 bytes at sector 0, crc32 $first_crc ok")"
  "$(x "GUEST: blk0: wrote 65536 bytes at sector 2048 ok")"
  "$(x "GUEST: blk0: flush ok")"
  "$(x "GUEST: blk0: read back 65536 bytes at sector 2048, pattern ok")"
  "$(x "GUEST: blk0: read past the end: status IOERR ok")"
  "$(x "GUEST: scsi0: virtio-scsi at 0xd0001000 irq 6")"
  "$(x "GUEST: scsi0: init ok, 1 request queue(s), cdb size 32, sense size 96, queue size 32")"
  "GUEST: scsi0: TEST UNIT READY: unit attention \\(asc 0x[0-9a-f]{2} ascq 0x[0-9a-f]{2}\\), then GOOD ok"
  "GUEST: scsi0: INQUIRY: peripheral type 5 \\(CD/DVD\\), removable, vendor '[^']+' product '[^']+' ok"
  "$(x "GUEST: scsi0: READ CAPACITY(10): $iso_blocks blocks of 2048 bytes ok")"
  "$(x "GUEST: scsi0: primary volume descriptor: CD001, volume 'VDISKGUEST' ok")"
  "GUEST: scsi0: HELLO\\.TXT(;1)?: $file_size bytes at block $file_lba, crc32 $file_crc ok"
  "$(x "GUEST: scsi0: READ(10) past the end: ILLEGAL REQUEST (asc 0x21) ok")"
  "$(x "GUEST: done")"
)

check "vdisk-vmm exited 0 after the guest's power-off (status $rc; 124: timed out after ${VDISK_TEST_TIMEOUT:-30}s)" test "$rc" = 0
check "the guest's serial output, all ${#expected[@]} lines" serial_lines_ok "$out/serial.log" regex
if [ -s "$out/vmm.err" ]; then # the guest's deliberate mistakes are logged there
  echo "   vdisk-vmm's stderr:"
  sed 's/^/     /' "$out/vmm.err"
fi

# --- the images on the host ------------------------------------------------------------
check "qemu-img check overlay.qcow2" qemu-img check -f qcow2 overlay.qcow2
check_vdisk_check "$vdisk" overlay.qcow2
pattern_bytes 65536 >pattern.bin
check "the guest's pattern reads back (qemu-img convert, 64 KiB at sector 2048)" \
  bash -c "qemu-img convert -f qcow2 -O raw overlay.qcow2 got.raw && cmp -i 1048576:0 -n 65536 got.raw pattern.bin"
check "the backing file's data still shows through the overlay (qemu-io read -P 0x5a)" \
  qemu-io -r -f qcow2 -c "read -P 0x5a 0 1M" -c "read -P 0x5a 1088K 960K" -c "read -P 0 2M 62M" overlay.qcow2
check "the pattern is in the overlay only (the backing file still reads 0x5a there)" \
  qemu-io -r -f qcow2 -c "read -P 0x5a 1M 64K" base.qcow2
check "the backing file is unchanged" test "$(sha256sum base.qcow2 | cut -d' ' -f1)" = "$base_sum"

exit_if_failed "serial output" "$out/serial.log" "vdisk-vmm's stderr" "$out/vmm.err"
echo "PASSED (vdisk-vmm with the test guest: start to exit $ms ms)"
