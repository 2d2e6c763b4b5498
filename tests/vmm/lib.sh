# shellcheck shell=bash
# Shared by tests/vmm/guest-test.sh, tests/vmm/linux-test.sh and
# tests/bench/boot.sh (sourced, bash): whether /dev/kvm can run vdisk-vmm's
# guests here, and the images the bundled test guest is run with.

# shellcheck source=SCRIPTDIR/../common/skip.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/skip.sh" # skip_test

# kvm_usable: /dev/kvm exists and can be opened read-write; else prints why
# not and returns 1.
kvm_usable() {
  if [ ! -e /dev/kvm ]; then
    echo "/dev/kvm does not exist (no KVM on this host: load kvm_intel or kvm_amd, or run where KVM is available)"
    return 1
  fi
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "/dev/kvm is not readable and writable by $(id -un) (add the user to the kvm group)"
    return 1
  fi
}

# vmm_test_begin VMM GUEST OUT: the start of a test that runs GUEST (a
# --firmware binary) under VMM: exits 77 (skipped) with the reason unless
# both are built, KVM is usable and the tools are installed; then makes the
# work directory (new_work_dir OUT, from tests/linux/lib.sh), removed at
# exit unless VDISK_TEST_KEEP=1.
vmm_test_begin() {
  local vmm=$1 guest=$2 out=$3 why tool
  [ -x "$vmm" ] || skip_test "vdisk-vmm is not built ($vmm)"
  [ -s "$guest" ] || skip_test "the test guest is not built ($guest): the C compiler cannot make -m32 freestanding code (see the CMake warning)"
  why=$(kvm_usable) || skip_test "$why"
  for tool in qemu-img qemu-io xorriso gzip perl timeout; do
    command -v "$tool" >/dev/null || skip_test "$tool not found (scripts/install-deps.sh installs it)"
  done
  new_work_dir "$out"
  trap '[ "${VDISK_TEST_KEEP:-0}" = 1 ] || rm -rf "$work"' EXIT
}

# vmm_run_firmware VMM GUEST OUT DEVICE-ARGS...: runs GUEST under VMM with
# 64 MiB and the devices given, serial output to OUT/serial.log and stderr to
# OUT/vmm.err, within $VDISK_TEST_TIMEOUT seconds (default 30); sets rc to
# the exit status and ms to the run's wall time. Exits 77 (skipped) when KVM refused to run the guest.
# With VMM_MAXRSS=1 the VMM runs under GNU time (/usr/bin/time), which
# writes its peak resident set size in KiB to OUT/maxrss.
vmm_run_firmware() {
  local vmm=$1 guest=$2 out=$3 t0 t1
  local -a wrap=()
  shift 3
  [ "${VMM_MAXRSS:-0}" = 1 ] && wrap=(/usr/bin/time -f %M -o "$out/maxrss")
  rc=0
  t0=$(date +%s%N)
  timeout -k 5 "${VDISK_TEST_TIMEOUT:-30}" "${wrap[@]}" "$vmm" --mem 64M --firmware "$guest" "$@" \
    >"$out/serial.log" 2>"$out/vmm.err" </dev/null || rc=$?
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  echo "   vdisk-vmm ran for $ms ms (exit status $rc); serial output: $out/serial.log"
  if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" != 137 ] && vmm_kvm_failure "$out/vmm.err"; then
    cat "$out/vmm.err"
    skip_test "KVM cannot run the guest here: $(head -n1 "$out/vmm.err")"
  fi
}

# serial_lines_ok LOG MODE: every line of LOG (carriage returns dropped)
# equals (MODE exact) or matches as an anchored regular expression (MODE
# regex) the same line of the array `expected`, with no line missing or
# extra; prints each difference and returns 1 when there is one.
serial_lines_ok() {
  local log=$1 mode=$2 i bad=0 n=${#expected[@]} ok
  local -a got
  mapfile -t got < <(tr -d '\r' <"$log")
  for ((i = 0; i < n || i < ${#got[@]}; i++)); do
    if [ $i -ge ${#got[@]} ]; then
      echo "line $((i + 1)) missing, expected: ${expected[$i]}"
      bad=1
    elif [ "$i" -ge "$n" ]; then
      echo "line $((i + 1)) unexpected: ${got[$i]}"
      bad=1
    else
      if [ "$mode" = regex ]; then
        [[ ${got[$i]} =~ ^${expected[$i]}$ ]] && ok=1 || ok=0
      else
        [ "${got[$i]}" = "${expected[$i]}" ] && ok=1 || ok=0
      fi
      if [ $ok = 0 ]; then
        echo "line $((i + 1)): ${got[$i]}"
        echo "   expected: ${expected[$i]}"
        bad=1
      fi
    fi
  done
  return $bad
}

# kvm_boots_linux: whether KVM here can run an unmodified Linux kernel;
# else prints why not and returns 1.
kvm_boots_linux() {
  kvm_usable || return 1
  if [ -d /sys/module/kvm_pvm ]; then
    echo "/dev/kvm is kvm_pvm, a software hypervisor that cannot run an unmodified Linux kernel"
    return 1
  fi
  if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "the host CPU has no VMX or SVM (no vmx/svm in /proc/cpuinfo flags): KVM here cannot run an unmodified Linux kernel"
    return 1
  fi
}

# vmm_kvm_failure FILE: whether the VMM's stderr in FILE says that KVM itself
# could not give it a VM (/dev/kvm, KVM_CREATE_VM, the irqchip, the memory,
# a vCPU): not the guest's or the VMM's fault.  A guest that KVM fails to
# run (an emulation failure) is a failure, not a reason to skip.
vmm_kvm_failure() {
  grep -qE '^vdisk-vmm: (/dev/kvm|KVM_GET_API_VERSION|KVM_CREATE_VM|KVM_SET_TSS_ADDR|KVM_SET_IDENTITY_MAP_ADDR|KVM_CREATE_IRQCHIP|KVM_CREATE_PIT2|KVM_SET_USER_MEMORY_REGION|KVM_CREATE_VCPU|KVM_GET_VCPU_MMAP_SIZE)' "$1"
}

# crc32_of FILE: the CRC-32 of FILE as zlib computes it, 8 hex digits (from
# gzip's trailer, so that no extra tool is needed).
crc32_of() {
  gzip -c <"$1" | tail -c 8 | od -An -tx4 -N4 | tr -d ' \n'
}

# pattern_bytes N: the test guest's disk pattern, byte i = (i * 7 + 3) & 0xff.
pattern_bytes() {
  perl -e 'print pack("C*", map { ($_ * 7 + 3) & 255 } 0 .. $ARGV[0] - 1)' "$1"
}

# make_guest_images DIR: the images of the bundled guest's test, in DIR:
#   base.qcow2     64 MiB, its first 2 MiB 0x5a (the rest reads zeroes)
#   overlay.qcow2  an empty qcow2 overlay on base.qcow2
#   test.iso       an ISO (xorriso, Rock Ridge and Joliet, volume
#                  VDISKGUEST) with HELLO.TXT (2722 bytes, 2 blocks) and
#                  a subdirectory
# and sets ISO_FILE (DIR/iso/HELLO.TXT).
make_guest_images() {
  local dir=$1
  mkdir -p "$dir/iso/SUB"
  qemu-img create -q -f qcow2 "$dir/base.qcow2" 64M
  qemu-io -f qcow2 -c "write -q -P 0x5a 0 2M" "$dir/base.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$dir/overlay.qcow2"
  { echo "Hello from the vdisk test ISO"; seq 1 700; } >"$dir/iso/HELLO.TXT"
  echo "another file" >"$dir/iso/SUB/OTHER.TXT"
  xorriso -as mkisofs -quiet -R -J -V VDISKGUEST -o "$dir/test.iso" "$dir/iso" 2>"$dir/xorriso.log"
  # shellcheck disable=SC2034 # for the callers
  ISO_FILE=$dir/iso/HELLO.TXT
}
