#!/usr/bin/env bash
# vmm-watchdog: vdisk-vmm ends a guest that makes no progress (issue 14
# item 9).  On a KVM that cannot run the guest, or with a guest spinning in
# KVM_RUN, the VMM used to wait for ever with no output and no error.
#
#   watchdog-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]
#
# Three firmware guests, each run with --watchdog 2:
#   spin.bin     cli; jmp $ from its first instruction: no exit to the VMM
#                at all.  Exit status 2, and stderr says the guest showed
#                no sign of life in its first 2 s and names a likely cause.
#   hi-spin.bin  writes "hi" to the serial port, then spins: the serial
#                output is kept, exit status 2, and stderr says no sign of
#                life for 2 s since it last showed one.
#   GUEST_BIN    the bundled test guest with its disk and CD-ROM: it shows
#                life all along and powers off (exit status 0), so the
#                watchdog does not end a guest that works.
# Exits 77 (skipped) as vmm-guest does: without a usable /dev/kvm.
set -euo pipefail
: "${VDISK_TEST_NAME:=vmm-watchdog}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../linux/lib.sh
. "$here/../linux/lib.sh" # new_work_dir

usage="usage: watchdog-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]"
vmm=${1:?$usage}
guest=${2:?$usage}
vdisk=${3:?$usage}
out=${4:-$PWD/vmm-watchdog}
vmm_test_begin "$vmm" "$guest" "$out"
"$vdisk" --version >/dev/null

# 32-bit code loaded at 0x100000.
printf '\xfa\xeb\xfe' >"$work/spin.bin"                      # cli; jmp $
printf '\x66\xba\xf8\x03\xb0h\xee\xb0i\xee\xb0\n\xee\xfa\xeb\xfe' >"$work/hi-spin.bin"
#        mov dx, 0x3f8; mov al, 'h'; out dx, al; ... '\n'; cli; jmp $

fail=0
expect() { # WHAT STATUS PATTERN...: the last run ended with STATUS, vmm.err holds each PATTERN
  local what=$1 want=$2 p
  shift 2
  if [ "$rc" != "$want" ]; then
    echo "FAIL: $what: exit status $rc (expected $want; 124: still running after ${VDISK_TEST_TIMEOUT:-30} s)"
    cat "$out/vmm.err"
    fail=1
    return
  fi
  for p in "$@"; do
    if ! grep -qF -- "$p" "$out/vmm.err"; then
      echo "FAIL: $what: stderr lacks '$p':"
      cat "$out/vmm.err"
      fail=1
    fi
  done
  echo "ok: $what"
}

vmm_run_firmware "$vmm" "$work/spin.bin" "$out" --watchdog 2
expect "a guest that never exits to the VMM is ended" 2 \
  "vdisk-vmm: watchdog: the guest has shown no sign of life in its first 2 s" "Likely cause: "
if [ -s "$out/serial.log" ]; then
  echo "FAIL: spin.bin wrote to the serial port:"; cat "$out/serial.log"; fail=1
fi

vmm_run_firmware "$vmm" "$work/hi-spin.bin" "$out" --watchdog 2
expect "a guest that stops showing life is ended" 2 \
  "vdisk-vmm: watchdog: the guest has shown no sign of life for 2 s" "Likely cause: the guest hung"
if [ "$(tr -d '\r' <"$out/serial.log")" != hi ]; then
  echo "FAIL: hi-spin.bin's serial output: '$(cat "$out/serial.log")' (expected hi)"; fail=1
fi

make_guest_images "$work"
cd "$work"
vmm_run_firmware "$vmm" "$guest" "$out" --watchdog 2 --disk overlay.qcow2 --cdrom test.iso
expect "the bundled guest runs to its end under --watchdog 2" 0
if grep -q watchdog "$out/vmm.err"; then
  echo "FAIL: the watchdog spoke for a guest that works:"; cat "$out/vmm.err"; fail=1
fi

exit $fail
