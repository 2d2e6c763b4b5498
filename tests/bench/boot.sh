#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/boot.sh: how fast vdisk-vmm starts guests.
#
# usage: tests/bench/boot.sh [BUILD_DIR]
#
#   BUILD_DIR        the CMake build directory (default ./build): vdisk-vmm
#                    is BUILD_DIR/tools/vmm/vdisk-vmm, the test guest
#                    BUILD_DIR/tests/guest/guest.bin
#
# Environment:
#   VDISK_VMM, VDISK_GUEST_BIN   override those paths
#   VDISK_GUEST_KERNEL_DIR       Debian's cloud kernel
#                    (scripts/fetch-guest-kernel.sh; default
#                    /var/cache/vdisk/guest-kernel)
#   BENCH_RUNS       runs of each row; medians are shown (default 11)
#   BENCH_DIR        where the scratch directory goes (default /var/tmp)
#
# Rows:
#   - Linux (Debian's cloud kernel with the initramfs of tests/linux/, in
#     its bench mode with no devices: it loads the virtio modules and powers
#     off) under vdisk-vmm and under `qemu-system-x86_64 -M microvm -accel
#     kvm`, alternating, measured in the same run: from process start to the
#     guest's /init (its first "VDISK-TEST: init start" line on the serial
#     console) and to the process's exit.  Only where KVM can boot an
#     unmodified Linux (VMX/SVM in the CPU flags, not kvm_pvm); elsewhere
#     the rows say "skipped" and why.
#   - the bundled test guest (tests/guest/) under vdisk-vmm with a qcow2
#     overlay and an ISO, as in the vmm-guest test: from process start to
#     its first serial line and to the process's exit.  Wherever /dev/kvm
#     can run it.
# Times are wall-clock: the start just before the process is started, each
# serial line when it reaches the reading end of a pipe (perl's
# Time::HiRes, else bash's EPOCHREALTIME), the exit when the process has
# been reaped.  Target: vdisk-vmm faster than QEMU microvm
# (Firecracker publishes about 125 ms from start to init).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
# shellcheck source=../vmm/lib.sh
. "$src/tests/vmm/lib.sh"
# shellcheck source=../linux/lib.sh
. "$src/tests/linux/lib.sh"

build=${1:-./build}
vmm=${VDISK_VMM:-$build/tools/vmm/vdisk-vmm}
guest=${VDISK_GUEST_BIN:-$build/tests/guest/guest.bin}
runs=${BENCH_RUNS:-11}

if [ -z "${EPOCHREALTIME:-}" ]; then
  echo "boot.sh needs bash 5 (EPOCHREALTIME)" >&2
  exit 1
fi
[ -x "$vmm" ] || { echo "boot.sh: no vdisk-vmm at $vmm (build the vdisk_vmm target)" >&2; exit 1; }

scratch=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vdisk-boot.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$((10#$t))"; }

# stamp: copies stdin to stdout, each line prefixed by the microseconds since
# the epoch when it arrived and a space (perl when it has Time::HiRes: bash
# reads a pipe a byte at a time and would lag behind).
if perl -MTime::HiRes -e 1 2>/dev/null; then
  stamp() {
    perl -MTime::HiRes=time -ne 'BEGIN { $| = 1 } s/\r$//; printf "%.0f %s", time() * 1e6, $_'
  }
else
  stamp() {
    local line t
    while IFS= read -r line; do
      t=${EPOCHREALTIME/[.,]/}
      printf '%s %s\n' "$((10#$t))" "${line%$'\r'}"
    done
  }
fi

# timed_run OUT CMD...: runs CMD with its stdout (the guest's serial
# console) stamped line by line into OUT and its stderr in OUT.err; the last
# line of OUT is "<t> EXIT <status> <time of the exit>".  Prints the start
# time.
timed_run() {
  local out=$1
  shift
  local t0
  t0=$(now_us)
  {
    local rc=0
    "$@" 2>"$out.err" </dev/null || rc=$?
    echo "EXIT $rc $(now_us)"
  } | stamp >"$out"
  echo "$t0"
}

# ms_after START OUT REGEX: milliseconds (3 decimals) from START to the first
# line of OUT that matches REGEX; "-" when none does.
ms_after() {
  local t
  t=$(grep -m1 -E "^[0-9]+ $3" "$2" | cut -d' ' -f1) || true
  [ -n "$t" ] || { echo -; return; }
  local d=$((t - $1))
  printf '%d.%03d\n' $((d / 1000)) $((d % 1000))
}

# ms_exit START OUT: milliseconds from START to the process's exit.
ms_exit() {
  local t
  t=$(tail -n1 "$2" | sed -n 's/^[0-9]* EXIT [0-9]* //p')
  [ -n "$t" ] || { echo -; return; }
  local d=$((t - $1))
  printf '%d.%03d\n' $((d / 1000)) $((d % 1000))
}

exit_status() { tail -n1 "$1" | sed -n 's/^[0-9]* EXIT \([0-9]*\) .*/\1/p'; }

# stats V...: "median (min..max)" of numbers with decimals; "-" entries are
# failures and make the row "failed".
stats() {
  local v
  for v in "$@"; do [ "$v" != - ] || { echo "failed"; return; }; done
  printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
    printf "%.1f ms (%.1f..%.1f)\n", m, a[1], a[NR] }'
}

rows=()   # "name|to first line or init|to exit"

# linux_run_times WHAT I OUT T0 INIT EXIT: the times of WHAT's Linux run I
# (started at T0, stamped into OUT by timed_run), appended to the arrays
# named INIT (to the guest's /init) and EXIT (to the process's exit); when
# the run failed, its last lines are printed and "-" goes to both.
linux_run_times() {
  local what=$1 i=$2 out=$3 t0=$4
  local -n to_init=$5 to_exit=$6
  if [ "$(exit_status "$out")" = 0 ]; then
    to_init+=("$(ms_after "$t0" "$out" 'VDISK-TEST: init start')")
    to_exit+=("$(ms_exit "$t0" "$out")")
  else
    echo "$what run $i failed (status $(exit_status "$out")):"; tail -n5 "$out" "$out.err"
    to_init+=(-) to_exit+=(-)
  fi
}

# --- Linux: vdisk-vmm and QEMU microvm -------------------------------------------
linux_why=
if ! linux_why=$(kvm_boots_linux); then
  :
elif ! command -v qemu-system-x86_64 >/dev/null; then
  linux_why="qemu-system-x86_64 not found"
elif ! linux_why=$(find_guest_kernel); then
  :
elif ! command -v busybox >/dev/null || ! command -v cpio >/dev/null || ! command -v modinfo >/dev/null; then
  linux_why="busybox, cpio or modinfo missing (the initramfs)"
else
  linux_why=
fi
if [ -z "$linux_why" ]; then
  find_guest_kernel
  echo "Linux: kernel $(readlink -f "$GUEST_KERNEL"), $runs runs each, alternating"
  bash "$src/tests/linux/mkinitramfs.sh" "$scratch/initramfs.gz" "$GUEST_MODULES" >/dev/null
  cmdline="console=ttyS0 reboot=t panic=-1 vdisk.mode=bench vdisk.disk=0 vdisk.cd=0"
  v_init=() v_exit=() q_init=() q_exit=()
  for ((i = 0; i < runs; i++)); do
    t0=$(timed_run "$scratch/vmm.out" timeout 60 "$vmm" --mem 256M --kernel "$GUEST_KERNEL" \
         --initrd "$scratch/initramfs.gz" --cmdline "$cmdline")
    linux_run_times vdisk-vmm "$i" "$scratch/vmm.out" "$t0" v_init v_exit
    t0=$(timed_run "$scratch/qemu.out" timeout 60 qemu-system-x86_64 -M microvm -accel kvm \
         -cpu host -m 256M -nodefaults -no-user-config -display none -serial stdio -no-reboot \
         -kernel "$GUEST_KERNEL" -initrd "$scratch/initramfs.gz" -append "$cmdline")
    linux_run_times qemu "$i" "$scratch/qemu.out" "$t0" q_init q_exit
  done
  rows+=("vdisk-vmm, Linux|$(stats "${v_init[@]}")|$(stats "${v_exit[@]}")")
  rows+=("qemu microvm -accel kvm, Linux|$(stats "${q_init[@]}")|$(stats "${q_exit[@]}")")
else
  rows+=("vdisk-vmm, Linux|skipped: $linux_why|")
  rows+=("qemu microvm -accel kvm, Linux|skipped: $linux_why|")
fi

# --- the bundled test guest ----------------------------------------------------------
guest_why=
if ! guest_why=$(kvm_usable); then
  :
elif [ ! -s "$guest" ]; then
  guest_why="no test guest at $guest (build the vdisk_guest target)"
else
  for tool in qemu-img qemu-io xorriso; do
    command -v "$tool" >/dev/null || guest_why="$tool not found"
  done
fi
if [ -z "$guest_why" ]; then
  echo "test guest: $guest, $runs runs"
  make_guest_images "$scratch/g"
  g_first=() g_exit=()
  for ((i = 0; i < runs; i++)); do
    rm -f "$scratch/g/overlay.qcow2"
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$scratch/g/overlay.qcow2"
    t0=$(timed_run "$scratch/guest.out" timeout 30 "$vmm" --mem 64M --firmware "$guest" \
         --disk "$scratch/g/overlay.qcow2" --cdrom "$scratch/g/test.iso")
    if [ "$(exit_status "$scratch/guest.out")" = 0 ] && grep -q ' GUEST: done$' "$scratch/guest.out"; then
      g_first+=("$(ms_after "$t0" "$scratch/guest.out" 'GUEST: ')")
      g_exit+=("$(ms_exit "$t0" "$scratch/guest.out")")
    else
      if vmm_kvm_failure "$scratch/guest.out.err"; then
        guest_why="KVM cannot run the guest here: $(head -n1 "$scratch/guest.out.err")"
        break
      fi
      echo "test guest run $i failed (status $(exit_status "$scratch/guest.out")):"; tail -n5 "$scratch/guest.out" "$scratch/guest.out.err"
      g_first+=(-) g_exit+=(-)
    fi
  done
fi
if [ -z "$guest_why" ]; then
  rows+=("vdisk-vmm, test guest|$(stats "${g_first[@]}") (first line)|$(stats "${g_exit[@]}")")
else
  rows+=("vdisk-vmm, test guest|skipped: $guest_why|")
fi

# --- the table --------------------------------------------------------------------------
echo
printf '%-32s %-34s %s\n' "boot (median of $runs, min..max)" "start -> init (Linux) / first line" "start -> exit"
for row in "${rows[@]}"; do
  IFS='|' read -r name a b <<<"$row"
  printf '%-32s %-34s %s\n' "$name" "$a" "$b"
done
echo
kvm=none
[ -e /dev/kvm ] && kvm=yes
[ -d /sys/module/kvm_pvm ] && kvm=kvm_pvm
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, KVM: $kvm, load average $(cut -d' ' -f1-3 /proc/loadavg)"
