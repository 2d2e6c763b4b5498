#!/usr/bin/env bash
# tests/bench/convert.sh: vdisk convert against qemu-img convert, side by
# side in one run, on the same 2 GiB image of mixed content (one third
# random, one third zeroes, one third text):
#   raw -> qcow2, qcow2 -> raw, raw -> qcow2 -c (zstd), a depth-2 qcow2
#   chain -> qcow2.
# Each row runs BENCH_REPEAT rounds (tools alternating first); the table
# shows median times, the speed ratio (qemu-img time / vdisk time: above 1
# means vdisk is faster) and the output sizes.
#   tests/bench/convert.sh [VDISK]      (or $VDISK, or ./build/tools/vdisk)
# Environment: BENCH_SIZE (default 2G), BENCH_REPEAT (3), BENCH_DIR (/var/tmp).
set -euo pipefail

vdisk=${1:-${VDISK:-./build/tools/vdisk}}
[ -x "$vdisk" ] || { echo "convert.sh: no vdisk binary at $vdisk" >&2; exit 1; }
vdisk=$(cd "$(dirname "$vdisk")" && pwd)/$(basename "$vdisk")
command -v qemu-img >/dev/null || { echo "convert.sh: qemu-img is not installed; skipped"; exit 77; }
size=${BENCH_SIZE:-2G}
repeat=${BENCH_REPEAT:-3}
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vdisk-bench-convert-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

bytes=$(numfmt --from=iec "$size")
third=$((bytes / 3 / 1048576))
echo "making a $size image: ${third} MiB random, ${third} MiB zeroes, the rest text"
truncate -s "$bytes" mix.raw
{ head -c "$((third * 1048576))" /dev/urandom || true; } | dd of=mix.raw conv=notrunc bs=1M status=none
{ yes "The quick brown fox jumps over the lazy dog; 0123456789 $(date +%s)" || true; } |
  head -c "$((bytes - 2 * third * 1048576))" |
  dd of=mix.raw conv=notrunc bs=1M seek=$((2 * third)) status=none
qemu-img convert -f raw -O qcow2 mix.raw mix.qcow2
# A depth-2 chain: base, a middle layer, a top layer, each with changes.
qemu-img convert -f raw -O qcow2 mix.raw chain-base.qcow2
qemu-img create -q -f qcow2 -b chain-base.qcow2 -F qcow2 chain-mid.qcow2
qemu-io -c "write -q -P 0x42 0 64M" chain-mid.qcow2
qemu-img create -q -f qcow2 -b chain-mid.qcow2 -F qcow2 chain-top.qcow2
qemu-io -c "write -q -P 0x43 32M 64M" chain-top.qcow2
sync

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run NAME SRC_FMT SRC OUT_FMT ARGS...
rows=()
run_row() {
  local name=$1 sfmt=$2 src=$3 ofmt=$4; shift 4
  local qt=() vt=() i
  for ((i = 0; i < repeat; i++)); do
    local order=(q v)
    ((i % 2)) && order=(v q)
    for t in "${order[@]}"; do
      rm -f "out-$t"
      sync
      local s e
      s=$(now)
      if [ "$t" = q ]; then
        qemu-img convert -f "$sfmt" -O "$ofmt" "$@" "$src" "out-$t"
      else
        "$vdisk" convert -f "$sfmt" -O "$ofmt" "$@" "$src" "out-$t"
      fi
      e=$(now)
      if [ "$t" = q ]; then qt+=("$(echo "$e - $s" | bc -l)"); else vt+=("$(echo "$e - $s" | bc -l)"); fi
    done
    qemu-img compare -q "out-q" "out-v" || { echo "convert.sh: $name: outputs differ" >&2; qemu-img compare "out-q" "out-v" >&2; exit 1; }
  done
  local qm vm
  qm=$(printf '%s\n' "${qt[@]}" | median)
  vm=$(printf '%s\n' "${vt[@]}" | median)
  local qs vs
  qs=$(stat -c %s out-q)
  vs=$(stat -c %s out-v)
  rows+=("$(printf '%-28s %9.3f %9.3f %7.2f %14d %14d' "$name" "$qm" "$vm" \
    "$(echo "$qm / $vm" | bc -l)" "$qs" "$vs")")
}

echo "vdisk: $("$vdisk" --version); $(qemu-img --version | head -1); $(nproc) CPUs"
run_row "raw -> qcow2" raw mix.raw qcow2
run_row "qcow2 -> raw" qcow2 mix.qcow2 raw
run_row "raw -> qcow2 -c zstd" raw mix.raw qcow2 -c -o compression_type=zstd
run_row "raw -> qcow2 -c zlib" raw mix.raw qcow2 -c
run_row "qcow2 chain (depth 2) -> qcow2" qcow2 chain-top.qcow2 qcow2

echo
printf '%-28s %9s %9s %7s %14s %14s\n' "row" "qemu-img s" "vdisk s" "speed" "qemu-img bytes" "vdisk bytes"
printf '%-28s %9s %9s %7s %14s %14s\n' "---" "----------" "-------" "-----" "--------------" "-----------"
printf '%s\n' "${rows[@]}"
echo "(speed: qemu-img time / vdisk time, medians of $repeat rounds; targets: >= 1.5 on the zstd row at an output no larger, >= 1.0 elsewhere)"
