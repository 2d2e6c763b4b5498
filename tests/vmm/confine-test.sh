#!/usr/bin/env bash
# vmm-confine: vdisk-vmm opens its disks with backing-confine=on unless
# --disk ...,backing-confine=off (issue 13 item 3): the guest writes the
# image, so a backing file name in it that leads out of the image's folder
# (here an absolute name, as a guest's qcow2 header over a raw disk opened
# with -f raw would carry) must not open a host file.
#
#   confine-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]
#
# Exits 77 (skipped) as vmm-guest does: without a usable /dev/kvm the VMM
# stops before it opens its disks.
set -euo pipefail
: "${VDISK_TEST_NAME:=vmm-confine}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../linux/lib.sh
. "$here/../linux/lib.sh" # new_work_dir

vmm=${1:?usage: confine-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]}
guest=${2:?usage: confine-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]}
vdisk=${3:?usage: confine-test.sh VDISK_VMM GUEST_BIN VDISK [OUTDIR]}
out=${4:-$PWD/vmm-confine}
vmm_test_begin "$vmm" "$guest" "$out"

mkdir -p "$work/host" "$work/vm"
qemu-img create -q -f raw "$work/host/secret.raw" 1M
qemu-img create -q -f qcow2 -b "$work/host/secret.raw" -F raw "$work/vm/disk.qcow2" 1M
"$vdisk" info "$work/vm/disk.qcow2" >/dev/null

fail=0
# The default: refused before the guest runs.
VDISK_TEST_TIMEOUT=30 vmm_run_firmware "$vmm" "$guest" "$out" --disk "$work/vm/disk.qcow2"
want="the backing file name '$work/host/secret.raw' leads outside the image's folder, which backing-confine=on forbids"
if [ "$rc" != 1 ] || ! grep -qF -- "$want" "$out/vmm.err"; then
  echo "FAIL: vdisk-vmm opened a backing file outside the image's folder (exit $rc):"
  cat "$out/vmm.err"
  fail=1
fi
# backing-confine=off: the disk opens (the guest then runs as it can).
VDISK_TEST_TIMEOUT=10 vmm_run_firmware "$vmm" "$guest" "$out" \
  --disk "$work/vm/disk.qcow2,backing-confine=off"
if grep -qF -- "backing-confine" "$out/vmm.err"; then
  echo "FAIL: backing-confine=off did not lift the rule:"
  cat "$out/vmm.err"
  fail=1
fi
# A bad value is an option error.
rc=0
"$vmm" --mem 64M --firmware "$guest" --disk "$work/vm/disk.qcow2,backing-confine=maybe" \
  >/dev/null 2>"$out/vmm.err" || rc=$?
if [ "$rc" != 1 ] || ! grep -qF "unknown option 'backing-confine=maybe'" "$out/vmm.err"; then
  echo "FAIL: backing-confine=maybe was accepted (exit $rc):"
  cat "$out/vmm.err"
  fail=1
fi
[ "$fail" = 0 ] && echo "vmm-confine: ok"
exit "$fail"
