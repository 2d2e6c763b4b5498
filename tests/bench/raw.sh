#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/raw.sh: vdisk bench against fio (and qemu-img bench) on a raw
# image, with O_DIRECT (cache=none) and the io_uring engine.
#
# usage: tests/bench/raw.sh [VDISK]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_ENGINES    vdisk engines to measure (default "io_uring"; e.g.
#                    "io_uring threads").  fio always runs io_uring.
#   BENCH_RUNTIME    seconds of each fio run (default 2)
#   BENCH_REPEAT     rounds per row; the medians are shown (default 4)
#   BENCH_SIZE       image size (default 1G)
#   BENCH_DIR        where the scratch directory goes (default /var/tmp)
#
# Per row, a first fio run of BENCH_RUNTIME seconds (time based, so the
# request count adapts to the machine; not counted, it also warms up)
# finds the request count.  Then BENCH_REPEAT rounds of fio, vdisk bench
# and (on the sequential rows, since it has no random mode) qemu-img bench
# each send exactly that many requests of the same size at the same depth
# to the same file.  The table shows each tool's median IOPS and MiB/s
# next to fio's, the ratio tool/fio of each round, which shows how noisy the
# machine is, and their median (target: vdisk >= 0.95 on every row).
#
# Installs nothing.  Exits 77 (skipped) when fio is missing; qemu-img rows
# are left out when qemu-img is missing.  Takes about 2.5 minutes with the
# defaults (about 3.5 with BENCH_ENGINES="io_uring threads").
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
ENGINES=${BENCH_ENGINES:-io_uring}
RUNTIME=${BENCH_RUNTIME:-2}
REPEAT=${BENCH_REPEAT:-4}
SIZE=${BENCH_SIZE:-1G}
BASE_DIR=${BENCH_DIR:-/var/tmp}

die() { echo "raw.sh: $*" >&2; exit 1; }

if ! command -v fio >/dev/null 2>&1; then
    echo "raw.sh: fio is not installed; skipping the benchmark" >&2
    exit 77
fi
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
HAVE_QEMU=0
command -v qemu-img >/dev/null 2>&1 && HAVE_QEMU=1
for e in $ENGINES; do
    case $e in
    io_uring | threads) ;;
    *) die "unknown engine '$e' in BENCH_ENGINES (io_uring or threads)" ;;
    esac
done
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNTIME must be a whole number of seconds"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"

SCRATCH=$(mktemp -d "$BASE_DIR/vdisk-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
IMG=$SCRATCH/disk.raw
LOG=$SCRATCH/log

# ---- The image: SIZE bytes of random data, really allocated ----------------
fio --name=prep --filename="$IMG" --size="$SIZE" --bs=1M --rw=write --direct=1 \
    --ioengine=io_uring --iodepth=4 --refill_buffers --end_fsync=1 \
    --output="$LOG" >/dev/null ||
    { cat "$LOG" >&2; die "could not write the image"; }

# ---- Runners: each prints "IOS SECONDS" --------------------------------------

# bytes SIZE: 4k -> 4096, 1M -> 1048576
bytes() {
    case $1 in
    *k) echo $((${1%k} * 1024)) ;;
    *M) echo $((${1%M} * 1048576)) ;;
    *) echo "$1" ;;
    esac
}

# fio_run RW BS DEPTH [COUNT]: a fio run on the image, of COUNT requests, or
# of RUNTIME seconds without COUNT.
fio_run() {
    local rw=$1 bs=$2 depth=$3 count=${4:-} extra=()
    [[ $rw == rand* ]] && extra+=(--norandommap)
    if [[ -n $count ]]; then
        # io_size beyond the image makes fio go round it again.
        extra+=(--io_size=$((count * $(bytes "$bs"))))
    else
        extra+=(--time_based --runtime="$RUNTIME")
    fi
    if ! fio --name=bench --filename="$IMG" --size="$SIZE" --rw="$rw" --bs="$bs" \
        --iodepth="$depth" --ioengine=io_uring --direct=1 "${extra[@]}" \
        --output-format=terse --terse-version=3 --output="$LOG" >/dev/null; then
        cat "$LOG" >&2
        die "fio failed"
    fi
    # Terse v3: field 5 error; 6/9 read KiB/runtime ms; 47/50 the same for writes.
    awk -F';' -v bs="$(bytes "$bs")" -v rw="$rw" '
        {
            if ($5 != 0) exit 1
            kb = rw ~ /write/ ? $47 : $6; ms = rw ~ /write/ ? $50 : $9
            printf "%d %.6f\n", kb * 1024 / bs, ms / 1000
        }' "$LOG" || die "fio reported an error: $(cat "$LOG")"
}

# bench_time TOOL_OUTPUT: the seconds of "Run completed in X seconds."
bench_time() {
    sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$1"
}

# vdisk_run ENGINE RW BS DEPTH COUNT
vdisk_run() {
    local engine=$1 rw=$2 bs=$3 depth=$4 count=$5 args=()
    [[ $rw == *write ]] && args+=(-w)
    [[ $rw == rand* ]] && args+=(--random)
    if ! "$VDISK" bench -f raw -t none -i "$engine" -s "$bs" -d "$depth" -c "$count" \
        "${args[@]}" "$IMG" >"$LOG" 2>&1; then
        cat "$LOG" >&2
        die "vdisk bench failed"
    fi
    echo "$count $(bench_time "$LOG")"
}

# qemu_run ENGINE RW BS DEPTH COUNT (sequential rows only)
qemu_run() {
    local engine=$1 rw=$2 bs=$3 depth=$4 count=$5 args=()
    [[ $rw == write ]] && args+=(-w)
    if ! qemu-img bench -f raw -t none -i "$engine" -s "$bs" -d "$depth" -c "$count" \
        "${args[@]}" "$IMG" >"$LOG" 2>&1; then
        cat "$LOG" >&2
        die "qemu-img bench failed"
    fi
    echo "$count $(bench_time "$LOG")"
}

# ---- The rows -----------------------------------------------------------------
#        label                  fio rw     bs   depth
ROWS=(
    "4k randread QD1|randread|4k|1"
    "4k randread QD32|randread|4k|32"
    "4k randwrite QD1|randwrite|4k|1"
    "4k randwrite QD32|randwrite|4k|32"
    "1M seqread QD4|read|1M|4"
    "1M seqwrite QD4|write|1M|4"
)

# iops IOS SECONDS: requests per second
iops() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }'; }
# mibs IOPS BS: MiB/s
mibs() {
    awk -v i="$1" -v bs="$2" 'BEGIN {
        b = bs ~ /k$/ ? bs * 1024 : bs ~ /M$/ ? bs * 1048576 : bs
        printf "%.1f", i * b / 1048576 }'
}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

echo "vdisk bench vs fio: raw image of $SIZE in $BASE_DIR ($(findmnt -no FSTYPE -T "$SCRATCH" 2>/dev/null || echo '?')), cache=none"
echo "$("$VDISK" --version), $(fio --version), $( ((HAVE_QEMU)) && qemu-img --version | head -1 || echo 'no qemu-img')"
echo "kernel $(uname -r), $(nproc) CPUs; $REPEAT rounds of ${RUNTIME}s per row, medians shown"
echo

line() { printf '%-17s %-17s %8s %8s %9s %8s %9s %6s  %s\n' "$@"; }
line "row" "tool" "requests" "IOPS" "MiB/s" "fio IOPS" "fio MiB/s" "ratio" "per-round ratios"
line "---" "----" "--------" "----" "-----" "--------" "---------" "-----" "----------------"

below=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label rw bs depth <<<"$row"
    tools=()
    for e in $ENGINES; do tools+=("vdisk $e"); done
    if ((HAVE_QEMU)) && [[ $rw != rand* ]]; then
        for e in $ENGINES; do tools+=("qemu-img $e"); done
    fi
    declare -A runs=() rounds=()
    fio_runs=()
    # A first fio run of RUNTIME seconds finds the request count N (and
    # warms the device up after the previous row); it is not counted.  In
    # each round every tool and fio then send N requests, fio first in even
    # rounds and last in odd ones, so that a slow spell of the machine
    # (other load, host caching) hits them alike.
    out=$(fio_run "$rw" "$bs" "$depth")
    read -r n t <<<"$out"
    for ((rep = 0; rep < REPEAT; rep++)); do
        if ((rep % 2 == 0)); then
            out=$(fio_run "$rw" "$bs" "$depth" "$n")
            read -r c t <<<"$out"
            fio_iops=$(iops "$c" "$t")
        fi
        results=()
        for tool in "${tools[@]}"; do
            engine=${tool#* }
            if [[ $tool == vdisk* ]]; then
                out=$(vdisk_run "$engine" "$rw" "$bs" "$depth" "$n")
            else
                out=$(qemu_run "$engine" "$rw" "$bs" "$depth" "$n")
            fi
            read -r c s <<<"$out"
            results+=("$(iops "$c" "$s")")
        done
        if ((rep % 2 == 1)); then
            out=$(fio_run "$rw" "$bs" "$depth" "$n")
            read -r c t <<<"$out"
            fio_iops=$(iops "$c" "$t")
        fi
        fio_runs+=("$fio_iops")
        for ((k = 0; k < ${#tools[@]}; k++)); do
            tool=${tools[k]}
            runs[$tool]="${runs[$tool]:-} ${results[k]}"
            rounds[$tool]="${rounds[$tool]:-} $(ratio "${results[k]}" "$fio_iops")"
        done
    done
    fio_med=$(median %.0f "${fio_runs[@]}")
    for tool in "${tools[@]}"; do
        # shellcheck disable=SC2086 # the list is meant to be split
        med=$(median %.0f ${runs[$tool]})
        # The median of the rounds' ratios: each round's tools run back to
        # back, so this resists load that changes from one round to the next.
        # shellcheck disable=SC2086
        r=$(median %.2f ${rounds[$tool]})
        mark=""
        if [[ $tool == "vdisk io_uring" ]] && awk -v r="$r" 'BEGIN { exit !(r < 0.95) }'; then
            mark="<"
            below=$((below + 1))
        fi
        line "$label" "$tool" "$n" "$med" "$(mibs "$med" "$bs")" "$fio_med" \
            "$(mibs "$fio_med" "$bs")" "$r$mark" "${rounds[$tool]# }"
    done
    unset runs rounds
done

echo
echo "Per row, a first fio run of ${RUNTIME}s (not counted) finds the request count; then in"
echo "each round fio (io_uring, direct=1) and every tool send that many requests of the"
echo "same size at the same depth to the same file, fio first in even rounds and last"
echo "in odd ones.  IOPS are medians over the rounds; ratio = the median of the"
echo "per-round ratios tool IOPS / fio IOPS (target >= 0.95)."
if ((below)); then
    echo "vdisk io_uring is below 95% of fio on $below row(s) (marked <)."
else
    echo "vdisk io_uring is at or above 95% of fio on every row."
fi
