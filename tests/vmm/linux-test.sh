#!/usr/bin/env bash
# vmm-linux: Debian's cloud kernel under vdisk-vmm with the initramfs of the
# vhost-user test (tests/linux/mkinitramfs.sh, tests/linux/init):
#   - a disk: a qcow2 overlay on a qcow2 backing file (--disk);
#   - a CD-ROM: an ISO built by xorriso (--cdrom).
# The guest finds the virtio-mmio devices in the VMM's ACPI tables, mounts
# /dev/sr0 and checks a file's sha256 against the host's, reads the backing
# file's data through the overlay, writes a pattern with O_DIRECT and
# fsync, ejects the CD and powers off.  The host checks the markers on the
# serial console, that vdisk-vmm exited 0, qemu-img check and vdisk check,
# the pattern read back, and that the backing file is unchanged.
#
#   linux-test.sh VDISK_VMM VDISK [OUTDIR]
#
# Skipped (exit 77), with the reason, where KVM cannot boot an unmodified
# Linux kernel: no /dev/kvm, no VMX/SVM in the host CPU's flags, or
# /dev/kvm served by kvm_pvm (a software hypervisor); and without the
# kernel (scripts/fetch-guest-kernel.sh) or the initramfs's tools.  Never
# reported as passed without the guest having run.
set -euo pipefail
: "${VDISK_TEST_NAME:=vmm-linux}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../linux/lib.sh
. "$here/../linux/lib.sh"

vmm=${1:?usage: linux-test.sh VDISK_VMM VDISK [OUTDIR]}
vdisk=${2:?usage: linux-test.sh VDISK_VMM VDISK [OUTDIR]}
out=${3:-$PWD/vmm-linux}


why=$(kvm_boots_linux) || skip_test "$why"
[ -x "$vmm" ] || skip_test "vdisk-vmm is not built ($vmm)"
[ -f "$here/../linux/mkinitramfs.sh" ] || skip_test "no initramfs builder (tests/linux/mkinitramfs.sh)"
why=$(find_guest_kernel) || skip_test "$why"
find_guest_kernel
for tool in qemu-img qemu-io xorriso cpio modinfo busybox timeout; do
  command -v "$tool" >/dev/null || skip_test "$tool not found (scripts/install-deps.sh installs it)"
done

new_work_dir "$out"
cleanup() { [ "${VDISK_TEST_KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

echo "== vmm-linux: kernel $(readlink -f "$GUEST_KERNEL"), output in $out"
bash "$here/../linux/mkinitramfs.sh" "$out/initramfs.gz" "$GUEST_MODULES"

# --- the disk: base.qcow2 (0x5a everywhere) <- overlay.qcow2; the CD -----------------
cd "$work"
make_linux_test_images qemu "vdisk-vmm guest test" "$out/xorriso.log"

# --- the guest runs ----------------------------------------------------------------------
append="console=ttyS0 reboot=t panic=-1 $test_append"
tmo=${VDISK_TEST_TIMEOUT:-120}
rc=0
t0=$(date +%s%N)
timeout -k 5 "$tmo" "$vmm" --mem 256M --kernel "$GUEST_KERNEL" --initrd "$out/initramfs.gz" \
  --cmdline "$append" --disk overlay.qcow2 --cdrom test.iso \
  >"$out/serial.log" 2>"$out/vmm.err" </dev/null || rc=$?
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
echo "   vdisk-vmm ran for $ms ms (exit status $rc); serial console: $out/serial.log"

log=$out/serial.log
check "vdisk-vmm exited 0 after the guest powered off (status $rc; 124: timed out after ${tmo}s)" test "$rc" = 0
check "the guest's /init ran" grep -a "VDISK-TEST: init start" "$log"
check "no FAIL marker" bash -c "! grep -a 'VDISK-TEST: FAIL' '$log'"
check "guest saw /dev/vda" grep -aE 'VDISK-TEST: disk /dev/vda 131072 sectors, ro=0' "$log"
check_test_markers "$log"

check "qemu-img check overlay.qcow2" qemu-img check -f qcow2 overlay.qcow2
check_vdisk_check "$vdisk" overlay.qcow2
check "the pattern reads back (qemu-io)" \
  qemu-io -r -f qcow2 -c "read -P 0xa5 $pat_off $pat_len" overlay.qcow2
check "the rest of the overlay reads the backing file's data (qemu-io)" \
  qemu-io -r -f qcow2 -c "read -P 0x5a 0 $pat_off" -c "read -P 0x5a $((pat_off + pat_len)) $((disk_size - pat_off - pat_len))" overlay.qcow2
check "the backing file is unchanged" test "$(sha256sum base.qcow2 | cut -d' ' -f1)" = "$base_sum"

exit_if_failed "serial console" "$log" "vdisk-vmm's stderr" "$out/vmm.err"
echo "PASSED (Linux under vdisk-vmm, start to power-off $ms ms)"
