# shellcheck shell=bash
# Shared by tests/vmm/guest-test.sh, tests/vmm/linux-test.sh and
# tests/bench/boot.sh (sourced, bash): whether /dev/kvm can run vdisk-vmm's
# guests here, and the images the bundled test guest is run with.

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
