#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/queue.sh: the queue's own overhead, without a disk: requests
# per second and CPU time per request at QD32 from one thread, vdisk against
# qemu-img bench side by side in one run, so that a regression in the core
# shows without the disk's noise.
#
# usage: tests/bench/queue.sh [VDISK [BENCH_QUEUE]]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#   BENCH_QUEUE      the bench-queue program (default: $BENCH_QUEUE, else
#                    bench-queue next to VDISK's build: build/tests/bench/)
#
# Environment:
#   BENCH_RUNTIME    seconds the faster tool's runs should take, roughly
#                    (default 1; may have decimals).  The request count of a
#                    row is set from a first, uncounted run of each tool.
#   BENCH_REPEAT     rounds per row; the medians are shown (default 9)
#   BENCH_DEPTH      requests in flight (default 32)
#   BENCH_SHM        directory on tmpfs for the memory-backed file (default
#                    /dev/shm)
#
# The rows, 4 KiB requests at offsets 4 KiB apart wrapping round 64 MiB:
#   memory read/write    vdisk: bench-queue (tests/bench/queue.c): a queue
#                        on the library's internal memory device, which
#                        completes each request inside the driver with one
#                        memcpy; the request loop is qemu-img bench's (each
#                        callback starts the next request, the main loop
#                        reaps).  qemu-img: qemu-img bench on QEMU's null-co
#                        driver (--image-opts driver=null-co, read-zeroes=on
#                        so that reads fill the buffer as vdisk's copy does;
#                        null-co's writes touch nothing, vdisk's copy 4 KiB).
#                        Neither makes a system call per request: this is
#                        the cost of the block layer and the queue alone.
#   tmpfs read/write     both tools' bench on the same 64 MiB raw file in
#                        BENCH_SHM, cache=writeback, io_uring engine: the
#                        queue, the engine and the kernel's copy from the
#                        page cache (memory), one system call per batch.
#
# In each of BENCH_REPEAT rounds both tools run once (qemu-img first in even
# rounds, vdisk first in odd ones), back to back, with the same request
# count.  Requests per second come from each tool's own "Run completed in"
# time.  CPU per request is measured the same way for both, from outside:
# the process's user + system time (GNU time) minus that of a run of the same
# tool with DEPTH * 4 requests (start-up and tear-down), over the count.
# The table shows the medians, the median of the per-round ratios
# vdisk/qemu-img of requests per second against the target (>= 1.00: the
# core is at least as fast as QEMU's) and of CPU per request.
#
# Installs nothing.  Exits 77 (skipped) when qemu-img, bench-queue or
# BENCH_SHM is missing.  Takes about 5 minutes with the defaults (qemu-img's
# runs on null-co take ~6 times vdisk's).
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
RUNTIME=${BENCH_RUNTIME:-1}
REPEAT=${BENCH_REPEAT:-9}
DEPTH=${BENCH_DEPTH:-32}
SHM=${BENCH_SHM:-/dev/shm}
SIZE=$((64 << 20))
TARGET=1.00

die() { echo "queue.sh: $*" >&2; exit 1; }
skip() { echo "queue.sh: $*; skipping the benchmark" >&2; exit 77; }

command -v qemu-img >/dev/null 2>&1 || skip "qemu-img is not installed"
if ! [[ -x /usr/bin/time ]] || ! /usr/bin/time -f %M true >/dev/null 2>&1; then
    die "GNU time (/usr/bin/time) is needed for the CPU time"
fi
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
VDISK=$(cd "$(dirname "$VDISK")" && pwd)/$(basename "$VDISK")
BQ=${2:-${BENCH_QUEUE:-$(dirname "$VDISK")/../tests/bench/bench-queue}}
[[ -x $BQ ]] || skip "no bench-queue program at '$BQ' (built with the tests: BUILD_TESTING)"
if ! [[ $RUNTIME =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] ||
    ! awk -v t="$RUNTIME" 'BEGIN { exit !(t > 0) }'; then
    die "BENCH_RUNTIME must be a positive number of seconds"
fi
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
[[ $DEPTH =~ ^[1-9][0-9]*$ ]] || die "BENCH_DEPTH must be a positive number"
[[ -d $SHM && -w $SHM ]] || skip "no writable $SHM"
[[ $(findmnt -no FSTYPE -T "$SHM" 2>/dev/null | head -1) == tmpfs ]] ||
    skip "$SHM is not a tmpfs"

SCRATCH=$(mktemp -d "$SHM/vdisk-bench-queue.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
FILE=$SCRATCH/disk.raw
LOG=$SCRATCH/log
head -c $SIZE /dev/urandom >"$FILE"

# cmdline TOOL ROW COUNT: the command of one run, into CMD.
cmdline() {
    local tool=$1 row=$2 count=$3 w=()
    [[ $row == *write ]] && w=(-w)
    case $tool/$row in
    vdisk/memory*) CMD=("$BQ" -i uring -c "$count" -d "$DEPTH" -s 4096 -z "$SIZE" "${w[@]}") ;;
    qemu/memory*)
        CMD=(qemu-img bench --image-opts -c "$count" -d "$DEPTH" -s 4096 "${w[@]}"
            "driver=null-co,size=$SIZE,read-zeroes=on")
        ;;
    vdisk/tmpfs*)
        CMD=("$VDISK" bench -f raw -t writeback -i io_uring -c "$count" -d "$DEPTH" -s 4096
            "${w[@]}" "$FILE")
        ;;
    qemu/tmpfs*)
        CMD=(qemu-img bench -f raw -t writeback -i io_uring -c "$count" -d "$DEPTH" -s 4096
            "${w[@]}" "$FILE")
        ;;
    esac
}

# run TOOL ROW COUNT: one run; sets SECS (the tool's own) and CPU (user +
# system seconds of the whole process).
run() {
    local u s
    cmdline "$@"
    /usr/bin/time -f '%U %S' -o "$SCRATCH/time" "${CMD[@]}" >"$LOG" 2>&1 ||
        { cat "$LOG" >&2; die "failed: ${CMD[*]}"; }
    SECS=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$LOG")
    [[ -n $SECS ]] || { cat "$LOG" >&2; die "no 'Run completed' line from ${CMD[*]}"; }
    read -r u s <"$SCRATCH/time"
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }'; }
# us_per CPU BASE_CPU COUNT BASE_COUNT: microseconds of CPU per request
us_per() {
    awk -v c="$1" -v b="$2" -v n="$3" -v m="$4" \
        'BEGIN { d = c - b; if (d < 0) d = 0; printf "%.3f", d * 1e6 / (n - m) }'
}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROWS=("memory read" "memory write" "tmpfs read" "tmpfs write")
BASE_N=$((DEPTH * 4))

echo "vdisk vs qemu-img: the queue's own overhead, 4 KiB requests at QD$DEPTH from one thread over 64 MiB"
echo "  memory: bench-queue (vdisk's queue on its memory device) vs qemu-img bench on null-co (read-zeroes=on)"
echo "  tmpfs:  vdisk bench vs qemu-img bench on one raw file in $SHM, cache=writeback, io_uring"
echo "$("$VDISK" --version), $(qemu-img --version | head -1)"
echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $REPEAT rounds, the faster tool's runs ~${RUNTIME}s, medians shown"
echo

line() { printf '%-13s %9s %10s %10s %6s %6s %8s %8s %7s  %s\n' "$@"; }
line "row" "requests" "req/s" "req/s" "ratio" "target" "CPU us" "CPU us" "CPU" "per-round ratios"
line "" "" "vdisk" "qemu" "" "" "/req v" "/req q" "q/v" "(req/s vdisk/qemu-img)"
line "---" "--------" "-----" "-----" "-----" "------" "------" "------" "---" "----------------------"

nbelow=0
for row in "${ROWS[@]}"; do
    # The count: a first run of growing size of each tool (uncounted); the
    # faster one's rate sets it, so that no run is shorter than RUNTIME.
    N=0
    for tool in qemu vdisk; do
        n=$((DEPTH * 1024))
        for (( ; ; )); do
            run "$tool" "$row" "$n"
            awk -v t="$SECS" -v r="$RUNTIME" 'BEGIN { exit !(t >= r / 4) }' && break
            n=$((n * 4))
        done
        n=$(awk -v p="$n" -v t="$SECS" -v r="$RUNTIME" -v d="$DEPTH" \
            'BEGIN { n = t > 0 ? int(p * r / t) : p; if (n < 64 * d) n = 64 * d; print n }')
        if ((n > N)); then N=$n; fi
    done
    # Start-up and tear-down CPU of each tool, subtracted from every run.
    declare -A base=()
    for tool in qemu vdisk; do
        run "$tool" "$row" "$BASE_N"
        base[$tool]=$CPU
    done
    declare -A rates=() cpus=()
    ratios=()
    cratios=()
    for ((rep = 0; rep < REPEAT; rep++)); do
        order=(qemu vdisk)
        ((rep % 2)) && order=(vdisk qemu)
        declare -A now=() nowc=()
        for tool in "${order[@]}"; do
            run "$tool" "$row" "$N"
            now[$tool]=$(rate "$N" "$SECS")
            nowc[$tool]=$(us_per "$CPU" "${base[$tool]}" "$N" "$BASE_N")
            rates[$tool]="${rates[$tool]:-} ${now[$tool]}"
            cpus[$tool]="${cpus[$tool]:-} ${nowc[$tool]}"
        done
        ratios+=("$(ratio "${now[vdisk]}" "${now[qemu]}")")
        cratios+=("$(ratio "${nowc[qemu]}" "${nowc[vdisk]}")")
        unset now nowc
    done
    r=$(median %.2f "${ratios[@]}")
    mark=""
    if below "$r" "$TARGET"; then
        mark="<"
        nbelow=$((nbelow + 1))
    fi
    # shellcheck disable=SC2086 # the lists are meant to be split
    line "$row" "$N" "$(median %.0f ${rates[vdisk]})" "$(median %.0f ${rates[qemu]})" \
        "$r$mark" ">=$TARGET" "$(median %.3f ${cpus[vdisk]})" "$(median %.3f ${cpus[qemu]})" \
        "$(median %.2f "${cratios[@]}")" "${ratios[*]}"
    unset base rates cpus
done

echo
echo "req/s from each tool's own run time, medians over the rounds; ratio = the"
echo "median of the per-round ratios vdisk/qemu-img (target >= $TARGET); CPU us/req ="
echo "(user + system time of the run - that of a $BASE_N-request run of the same tool)"
echo "/ the requests (GNU time, 10 ms resolution); CPU q/v = the median of the"
echo "per-round ratios qemu-img CPU / vdisk CPU per request (above 1: vdisk uses less)."
if ((nbelow)); then
    echo "vdisk is below its target on $nbelow row(s) (marked <)."
else
    echo "vdisk meets its target on every row."
fi
