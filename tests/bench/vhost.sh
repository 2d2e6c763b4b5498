#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/vhost.sh: a real Linux guest (Debian's cloud kernel in
# qemu-system-x86_64, microvm, TCG; see tests/linux/) reads a whole ISO
# from its CD-ROM (/dev/sr0, dd bs=1M) and does random 4 KiB O_DIRECT reads
# on its disk (/dev/vda, tests/linux/guest-randread.c, one at a time, timed
# with the guest's clock_gettime), with the devices served three ways, on
# the same files in the same run (the disk read-only in all three):
#   (a) vdisk      vdisk serve --vhost-user-blk SOCK --read-only DISK
#                  + vdisk serve --vhost-user-scsi SOCK --cdrom ISO
#   (b) qemu       QEMU's own virtio-blk-device + virtio-scsi-device/scsi-cd
#   (c) qsd        qemu-storage-daemon --export type=vhost-user-blk (disk only:
#                  it has no vhost-user-scsi export)
# It prints the guest's figures, the ratios, and each vhost-user back end's
# CPU time (utime + stime from /proc/PID/stat over the guest's run, boot
# included) per random read and per MiB of CD read. Under software emulation
# the guest is the bottleneck, so the CPU figures say more than the times.
# QEMU's own devices run inside the emulator: no separate CPU figure.
#
# usage: tests/bench/vhost.sh [VDISK]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_N          random reads per guest run (default 20000)
#   BENCH_ISO_MIB    size of the random file on the ISO (default 64)
#   BENCH_DISK_MIB   size of the disk, a qcow2 image full of random data (default 256)
#   BENCH_REPEAT     guest runs per back end, interleaved; medians shown (default 3)
#   BENCH_DIR        where the scratch directory goes (default /var/tmp)
#   VDISK_GUEST_KERNEL_DIR  the kernel (default /var/cache/vdisk/guest-kernel)
#
# Row (a) says "skipped" while `vdisk serve` does not exist. Exits 77 when
# qemu-system-x86_64 or the kernel is missing. Installs nothing.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../linux/lib.sh
. "$src/tests/linux/lib.sh"

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
N=${BENCH_N:-20000}
ISO_MIB=${BENCH_ISO_MIB:-64}
DISK_MIB=${BENCH_DISK_MIB:-256}
REPEAT=${BENCH_REPEAT:-3}
BASE_DIR=${BENCH_DIR:-/var/tmp}

die() { echo "vhost.sh: $*" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "vhost.sh: qemu-system-x86_64 not found, skipped"; exit 77; }
why=$(find_guest_kernel) || { echo "vhost.sh: $why, skipped"; exit 77; }
find_guest_kernel
[ -x "$VDISK" ] || die "no vdisk binary at $VDISK (pass it as the argument)"
VDISK=$(realpath "$VDISK") # the runs happen in the scratch directory

backends=()
if "$VDISK" serve --help >/dev/null 2>&1; then backends+=(vdisk); else vdisk_why="vdisk serve does not exist yet"; fi
backends+=(qemu)
if command -v qemu-storage-daemon >/dev/null; then backends+=(qsd); else qsd_why="qemu-storage-daemon not found"; fi

scratch=$(mktemp -d "$BASE_DIR/vdisk-bench-vhost.XXXXXX")
sockdir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-vhost.XXXXXX")
cleanup() {
  kill_bg_all
  rm -rf "$scratch" "$sockdir"
}
trap cleanup EXIT
cd "$scratch"

echo "== vhost.sh: $N random 4 KiB reads on a $DISK_MIB MiB qcow2 disk, a whole $ISO_MIB MiB ISO read; $REPEAT runs per back end"
bash "$src/tests/linux/mkinitramfs.sh" initramfs.gz "$GUEST_MODULES" >/dev/null
head -c $((DISK_MIB * 1048576)) /dev/urandom > disk.raw
"$VDISK" convert -O qcow2 disk.raw disk.qcow2
rm disk.raw
mkdir iso
head -c $((ISO_MIB * 1048576)) /dev/urandom > iso/random.bin
xorriso -as mkisofs -quiet -R -J -o test.iso iso 2>/dev/null
rm -rf iso
hz=$(getconf CLK_TCK)

# run BACKEND ROUND: one guest run; appends "backend cd_ns cd_bytes rr_ns
# blk_ticks scsi_ticks wall_ms" to results.
run() {
  local b=$1 r=$2 log=$scratch/serial-$1-$2.log devices append pids=() t0=() i rc=0
  local blk=$sockdir/blk.sock scsi=$sockdir/scsi.sock
  rm -f "$blk" "$scsi"
  append="vdisk.mode=bench vdisk.randread_n=$N"
  case $b in
    vdisk)
      start_bg "$scratch/serve-blk.log" "$VDISK" serve --vhost-user-blk "$blk" --read-only disk.qcow2; pids+=("$BG_PID")
      start_bg "$scratch/serve-scsi.log" "$VDISK" serve --vhost-user-scsi "$scsi" --cdrom test.iso; pids+=("$BG_PID")
      wait_socket "$blk" "${pids[0]}" || die "vdisk serve --vhost-user-blk: $(cat "$scratch/serve-blk.log")"
      wait_socket "$scsi" "${pids[1]}" || die "vdisk serve --vhost-user-scsi: $(cat "$scratch/serve-scsi.log")"
      devices="$(vhost_blk_args "$blk") $(vhost_scsi_args "$scsi")"
      ;;
    qemu)
      devices="$(qemu_blk_args "$scratch/disk.qcow2" qcow2 ro) $(qemu_cd_args "$scratch/test.iso")"
      ;;
    qsd)
      # shellcheck disable=SC2046
      start_bg "$scratch/qsd.log" $(qsd_blk_cmd "$blk" disk.qcow2 qcow2 ro); pids+=("$BG_PID")
      wait_socket "$blk" "${pids[0]}" || die "qemu-storage-daemon: $(cat "$scratch/qsd.log")"
      devices=$(vhost_blk_args "$blk")
      append+=" vdisk.cd=0"
      ;;
  esac
  for i in "${!pids[@]}"; do t0[$i]=$(cpu_ticks "${pids[$i]}"); done
  # shellcheck disable=SC2086
  qemu_guest "$log" 600 "$append" initramfs.gz $devices || rc=$?
  local ticks=(- -)
  for i in "${!pids[@]}"; do ticks[$i]=$(($(cpu_ticks "${pids[$i]}") - t0[i])); done
  for i in "${!pids[@]}"; do
    stop_bg "${pids[$i]}" 10 || die "$b back end $i did not exit 0 on SIGTERM"
  done
  BG_PIDS=()
  if [ $rc != 0 ] || ! grep -aq 'VDISK-TEST: done' "$log"; then
    cat "$log" >&2
    die "the guest run with back end $b failed (qemu status $rc)"
  fi
  local cd_ns=- cd_bytes=- rr_ns
  if [ "$b" != qsd ]; then
    cd_ns=$(sed -n 's/.*VDISK-BENCH: cdread bytes=\([0-9]*\) ns=\([0-9]*\).*/\2/p' "$log")
    cd_bytes=$(sed -n 's/.*VDISK-BENCH: cdread bytes=\([0-9]*\) ns=\([0-9]*\).*/\1/p' "$log")
  fi
  rr_ns=$(sed -n 's/.*VDISK-BENCH: randread count=[0-9]* bytes=4096 ns=\([0-9]*\).*/\1/p' "$log")
  echo "$b $cd_ns $cd_bytes $rr_ns ${ticks[0]} ${ticks[1]} $GUEST_MS" >> results
  printf '   run %d %-6s cd %s ns, randread %s ns, back end CPU ticks %s/%s, boot to power-off %s ms\n' \
    "$r" "$b" "$cd_ns" "$rr_ns" "${ticks[0]}" "${ticks[1]}" "$GUEST_MS"
}

: > results
for r in $(seq 1 "$REPEAT"); do
  for b in "${backends[@]}"; do run "$b" "$r"; done
done

median() { sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
col() { awk -v b="$1" -v c="$2" '$1 == b && $c != "-" {print $c}' results | median; }

declare -A cd_mibs rr_iops blk_us scsi_ms
for b in "${backends[@]}"; do
  cd_ns=$(col "$b" 2); cd_bytes=$(col "$b" 3); rr_ns=$(col "$b" 4)
  cd_mibs[$b]=$( [ "$cd_ns" = - ] && echo - || awk -v n="$cd_ns" -v b="$cd_bytes" 'BEGIN {printf "%.1f", b / 1048576 / (n / 1e9)}')
  rr_iops[$b]=$(awk -v n="$rr_ns" -v c="$N" 'BEGIN {printf "%.0f", c / (n / 1e9)}')
  blk_us[$b]=-; scsi_ms[$b]=-
  if [ "$b" != qemu ]; then
    t=$(col "$b" 5)
    blk_us[$b]=$(awk -v t="$t" -v hz="$hz" -v c="$N" 'BEGIN {printf "%.1f", t / hz * 1e6 / c}')
  fi
  if [ "$b" = vdisk ]; then
    t=$(col "$b" 6)
    scsi_ms[$b]=$(awk -v t="$t" -v hz="$hz" -v b="$cd_bytes" 'BEGIN {printf "%.2f", t / hz * 1e3 / (b / 1048576)}')
  fi
done

row() { # row LABEL BACKEND REASON-IF-SKIPPED
  if [ -z "${rr_iops[$2]:-}" ]; then
    printf '%-40s %s\n' "$1" "skipped ($3)"
  else
    printf '%-40s %12s %14s %18s %18s\n' "$1" "${cd_mibs[$2]}" "${rr_iops[$2]}" "${blk_us[$2]}" "${scsi_ms[$2]}"
  fi
}
ratio() { # ratio A B: A/B of the guest figures, or "-"
  local a=$1 b=$2
  if [ -z "${rr_iops[$a]:-}" ] || [ -z "${rr_iops[$b]:-}" ]; then echo "-"; return; fi
  awk -v ca="${cd_mibs[$a]}" -v cb="${cd_mibs[$b]}" -v ra="${rr_iops[$a]}" -v rb="${rr_iops[$b]}" 'BEGIN {
    if (ca == "-" || cb == "-") c = "-"; else c = sprintf("%.2f", ca / cb);
    printf "cd read %s, random reads %.2f", c, ra / rb }'
}

echo
echo "Guest figures are medians of $REPEAT runs; CPU is the back end's utime+stime over the whole guest run"
echo "(boot included, /proc/PID/stat, $hz ticks/s) divided by the $N random reads, or by the MiB of CD read."
printf '%-40s %12s %14s %18s %18s\n' "back end" "cd MiB/s" "4K rand IOPS" "blk CPU us/read" "scsi CPU ms/MiB"
row "(a) vdisk serve (vhost-user blk+scsi)" vdisk "${vdisk_why:-}"
row "(b) qemu virtio-blk + scsi-cd" qemu ""
row "(c) qemu-storage-daemon vhost-user-blk" qsd "${qsd_why:-}"
echo
echo "ratios (higher is better for the first):"
echo "  (a)/(b) vdisk / qemu: $(ratio vdisk qemu)"
echo "  (a)/(c) vdisk / qsd:  $(ratio vdisk qsd)"
echo "  (c)/(b) qsd / qemu:   $(ratio qsd qemu)"
if [ -n "${blk_us[vdisk]:-}" ] && [ -n "${blk_us[qsd]:-}" ] && [ "${blk_us[vdisk]}" != - ]; then
  echo "  back end CPU per random read, vdisk / qsd: $(awk -v a="${blk_us[vdisk]}" -v b="${blk_us[qsd]}" 'BEGIN {printf "%.2f (lower is better)", (b > 0 ? a / b : 0)}')"
fi
