#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/rbd.sh: vdisk on RBD images (the rbd: protocol, issue 19 item
# 6) against qemu-img's rbd driver, Ceph's own rbd import/export and fio's
# rbd engine, side by side in one run, on a throw-away single-node cluster
# that the script starts and stops itself (tests/ceph/with-cluster.sh: one
# monitor, one OSD on memstore, 127.0.0.1 only).
#
# usage: tests/bench/rbd.sh [VDISK]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_SIZE       the images' size (default 256M; memstore keeps every
#                    image in the OSD's memory)
#   BENCH_REPEAT     rounds per row; the medians are shown (default 3)
#   BENCH_COUNT      requests per run of the random I/O rows (default 50000)
#   BENCH_DIR        where the scratch directory (the raw files) goes
#                    (default /var/tmp)
#   BENCH_ROWS       only the rows whose label matches this extended regular
#                    expression (default: every row), e.g. '^rbd -> raw$'
#
# The rows and their targets (issue 19 item 6):
#   raw -> rbd   vdisk convert -W -t none -O raw SRC rbd:rbd/X
#                  vs qemu-img convert -m 16 -W -t none    speed >= 1.20
#                  vs rbd import SRC rbd/X                  speed >= 1.00
#   rbd -> raw   vdisk convert -W -t none -O raw rbd:rbd/X OUT
#                  vs qemu-img convert -m 16 -W -t none    speed >= 1.20
#                  vs rbd export rbd/X OUT, then fsync(OUT) speed >= 1.00
#   randwrite 4k QD32 / randread 4k QD32
#                vdisk bench -f raw -t none [-w] --random -d 32 -c COUNT
#                  vs fio --ioengine=rbd, the same COUNT of 4 KiB requests
#                  at iodepth 32 (number_ios)          IOPS ratio >= 0.95
# speed = the other tool's time / vdisk's time; IOPS ratio = vdisk's / fio's
# (each tool's own figure: vdisk bench's IOPS line, fio's job IOPS).  Above
# 1: vdisk is faster.
#
# SRC is a raw file of BENCH_SIZE in BENCH_DIR, one third random, one third
# zeroes, one third text (as tests/bench/convert.sh), read through the page
# cache (warm after the first run).  Every convert into the pool goes to a
# new image name; the images are removed (rbd rm) between the runs, untimed.
# Out of the pool, vdisk and qemu-img write OUT with O_DIRECT (-t none), as
# in convert.sh (through the page cache the time depends on how much the
# kernel writes back before the process exits); rbd export has no such
# option, so its time includes an fsync of OUT (coreutils' sync FILE).  Into
# the pool, -t none is librbd's cache off for both vdisk and qemu-img (as
# QEMU maps it); rbd import runs at its defaults.  fio reads a copy of the
# cluster's conf with "rbd cache = false" (vdisk bench runs -t none: the
# same); its image is written in full first (rbd import of random data), so
# that the reads find data.
#
# Each row starts with one untimed run of each tool (a warm-up: in the first
# round, the first tool to write paid for the OSD's new memory).  Then, in
# each of BENCH_REPEAT rounds every tool of the row runs twice, back to
# back in mirrored order (A B C C B A; the order rotating from round to
# round), and counts with the mean of its two runs: the memstore OSD slows
# as it fills, so a tool that ran later in more rounds lost by order alone
# (randwrite's per-round ratios were 0.92-0.95 in one order, 0.83-0.86 in
# the other).  Times are wall clock (bash's
# EPOCHREALTIME); CPU (user + system, the whole process: connecting to the
# cluster included) comes from GNU time.  The first round's outputs are
# checked against SRC (qemu-img compare / cmp).
#
# Installs nothing.  Exits 77 (skipped) when qemu-img, fio or Ceph is
# missing.  Needs about 3 times BENCH_SIZE free in BENCH_DIR and, for the
# OSD, a few times BENCH_SIZE of memory.  Takes about 5 minutes with the
# defaults on 2 shared CPUs.
#
# Found with it (2 shared CPUs, other jobs running): writes of a whole
# 4 MiB object take about 3 to 4 times as long on this memstore OSD as
# writes of 1-3 MiB (vdisk bench -w -s 4M -d 8 vs -s 2M, rbd bench alike),
# and vdisk convert's chunk is the target's cluster size, which for RBD is
# the object size (4 MiB); qemu-img writes 2 MiB.  So the raw -> rbd row
# against qemu-img swings between runs (0.68, 1.22, 1.41); with 2 MiB
# chunks vdisk convert took 0.46-0.61 s for 192 MiB of random data where
# it took 1.0-2.3 s with 4 MiB and qemu-img 0.8-1.0 s.  A BlueStore OSD may
# behave differently.  The random I/O rows swing too: per-round ratios of
# randwrite from 0.83 to 1.37 over four runs, medians 0.90-1.08.
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
SIZE=${BENCH_SIZE:-256M}
REPEAT=${BENCH_REPEAT:-3}
COUNT=${BENCH_COUNT:-50000}
BASE_DIR=${BENCH_DIR:-/var/tmp}
DEPTH=32

die() { echo "rbd.sh: $*" >&2; exit 1; }

for tool in qemu-img fio rbd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "rbd.sh: $tool is not installed; skipping the benchmark" >&2
        exit 77
    fi
done
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
VDISK=$(cd "$(dirname "$VDISK")" && pwd)/$(basename "$VDISK")
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "BENCH_COUNT must be a positive number"
SIZE_BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || die "BENCH_SIZE: not a size: $SIZE"
((SIZE_BYTES >= 3 * 1048576 && SIZE_BYTES % 1048576 == 0)) ||
    die "BENCH_SIZE must be a multiple of 1M, at least 3M"

# ---- The cluster: this script again, under with-cluster.sh -------------------
if [[ -z ${VDISK_CEPH_DIR:-} ]]; then
    here=$(cd "$(dirname "$0")" && pwd)
    # At most two images of BENCH_SIZE in the pool at a time, plus the
    # source of rbd -> raw: memstore's capacity well above that.
    export VDISK_CEPH_STORE_BYTES=${VDISK_CEPH_STORE_BYTES:-$((SIZE_BYTES * 8 + (1 << 30)))}
    exec bash "$here/../ceph/with-cluster.sh" bash "$here/rbd.sh" "$VDISK"
fi

TIME=/usr/bin/time
if ! [[ -x $TIME ]] || ! $TIME -f %M true >/dev/null 2>&1; then TIME=; fi
POOL=${VDISK_CEPH_POOL:-rbd}
TMO=300 # seconds: a bound on every command (a full pool blocks writes)

. "$(dirname "$0")/lib.sh"
SCRATCH=
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$BASE_DIR"
SCRATCH=$(mktemp -d "$BASE_DIR/vdisk-bench-rbd.XXXXXX")
LOG=$SCRATCH/log
bench_need_space $((SIZE_BYTES * 3 / 1024 + 65536))
cd "$SCRATCH"

# fio's conf: the cluster's, librbd's cache off.
cp "$CEPH_CONF" fio.conf
printf '\n[client]\nrbd cache = false\n' >>fio.conf

rbdq() { timeout -k 5 "$TMO" rbd "$@"; }
# vname IMAGE: the rbd: name vdisk and qemu-img open.
vname() { echo "rbd:$POOL/$1:conf=$CEPH_CONF"; }

# ---- The images --------------------------------------------------------------
third=$((SIZE_BYTES / 3 / 1048576))
truncate -s "$SIZE_BYTES" mix.raw
{ head -c "$((third * 1048576))" /dev/urandom || true; } | dd of=mix.raw conv=notrunc bs=1M status=none
{ yes "The quick brown fox jumps over the lazy dog; 0123456789 $(date +%s)" || true; } |
    head -c "$((SIZE_BYTES - 2 * third * 1048576))" |
    dd of=mix.raw conv=notrunc bs=1M seek=$((2 * third)) status=none
rbdq import --no-progress mix.raw "$POOL/src" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "rbd import of the source failed"; }
head -c "$SIZE_BYTES" /dev/urandom >rand.raw
rbdq import --no-progress rand.raw "$POOL/io" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "rbd import of the I/O image failed"; }
rm -f rand.raw
sync

# ---- Runners -----------------------------------------------------------------

# timed CMD...: runs CMD (bounded in time); sets SECS and CPU (seconds; CPU
# "-" without GNU time); dies with its output when it fails.
timed() {
    local t0 t1 u s
    CPU=-
    t0=$EPOCHREALTIME
    if [[ -n $TIME ]]; then
        timeout -k 5 "$TMO" $TIME -f '%U %S' -o "$SCRATCH/time" "$@" >"$LOG" 2>&1 ||
            { cat "$LOG" >&2; die "failed: $*"; }
    else
        timeout -k 5 "$TMO" "$@" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "failed: $*"; }
    fi
    t1=$EPOCHREALTIME
    if [[ -n $TIME ]]; then
        read -r u s <"$SCRATCH/time"
        CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    fi
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

# The runners: run_KIND TOOL ROUND; each sets VAL (the row's measure: seconds,
# or IOPS) and CPU.

# raw -> rbd: into a new image per run, removed after the round.
run_import() {
    local tool=$1 rep=$2 img=dst-$1-${2#-}
    case $tool in
        vdisk) timed "$VDISK" convert -W -t none -f raw -O raw mix.raw "$(vname "$img")" ;;
        qemu) timed qemu-img convert -m 16 -W -t none -f raw -O raw mix.raw "$(vname "$img")" ;;
        rbd) timed rbd import --no-progress mix.raw "$POOL/$img" ;;
    esac
    VAL=$SECS
    if ((rep == 0)); then
        qemu-img compare -q -f raw -F raw mix.raw "$(vname "$img")" ||
            die "raw -> rbd: $tool's image $POOL/$img differs from the source"
    fi
    rbdq rm --no-progress "$POOL/$img" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "rbd rm $POOL/$img failed"; }
}

# rbd -> raw: into a new file per run.
run_export() {
    local tool=$1 rep=$2 out=out-$1.raw
    rm -f "$out"
    sync
    # shellcheck disable=SC2016 # the inner shell's own arguments
    case $tool in
        vdisk) timed "$VDISK" convert -W -t none -f raw -O raw "$(vname src)" "$out" ;;
        qemu) timed qemu-img convert -m 16 -W -t none -f raw -O raw "$(vname src)" "$out" ;;
        rbd) timed sh -c 'rbd export --no-progress "$1" "$2" && sync "$2"' sh "$POOL/src" "$out" ;;
    esac
    VAL=$SECS
    if ((rep == 0)); then
        cmp -s mix.raw "$out" || die "rbd -> raw: $tool's output differs from the source"
    fi
    rm -f "$out"
}

# randwrite / randread: COUNT requests of 4 KiB at DEPTH on the image io;
# VAL is the tool's own IOPS figure.
run_rand() {
    local rw=$1 tool=$2 w=()
    case $tool in
        vdisk)
            [[ $rw == write ]] && w=(-w)
            timed "$VDISK" bench -f raw -t none "${w[@]}" --random="$((RANDOM + 1))" -d "$DEPTH" -c "$COUNT" "$(vname io)"
            VAL=$(awk '$1 == "IOPS:" { sub(/,$/, "", $2); print $2; exit }' "$LOG")
            ;;
        fio)
            timed env CEPH_CONF="$SCRATCH/fio.conf" fio --name=rbd --ioengine=rbd --clientname=admin \
                --pool="$POOL" --rbdname=io --rw="rand$rw" --bs=4k --iodepth="$DEPTH" --direct=1 \
                --size="$SIZE_BYTES" --number_ios="$COUNT" --norandommap --randrepeat=0 \
                --output-format=json
            VAL=$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print("%.0f" % d["jobs"][0][sys.argv[2]]["iops"])' "$LOG" "$rw") || die "cannot read fio's IOPS: $(cat "$LOG")"
            ;;
    esac
    [[ $VAL =~ ^[0-9.]+$ ]] || { cat "$LOG" >&2; die "no IOPS figure from $tool"; }
}
run_randwrite() { run_rand write "$1"; }
run_randread() { run_rand read "$1"; }

# ---- The rows ------------------------------------------------------------------
#   label|runner|unit (s: time, lower is better; iops: higher)|tools (vdisk first)|targets (one per other tool)
ROWS=(
    "raw -> rbd|import|s|vdisk qemu rbd|1.20 1.00"
    "rbd -> raw|export|s|vdisk qemu rbd|1.20 1.00"
    "randwrite 4k QD32|randwrite|iops|vdisk fio|0.95"
    "randread 4k QD32|randread|iops|vdisk fio|0.95"
)
bench_pick_rows "${BENCH_ROWS:-}"

declare -A NAME=(
    [vdisk]="vdisk"
    [qemu]="qemu-img -m 16 -W"
    [rbd]="rbd import/export"
    [fio]="fio rbd engine"
)

echo "vdisk on RBD vs qemu-img (rbd:), rbd import/export and fio (ioengine=rbd): a $SIZE image (1/3 random, 1/3 zeroes, 1/3 text) from/to $BASE_DIR ($(findmnt -no FSTYPE -T "$SCRATCH" 2>/dev/null | head -1 || echo "?")); random I/O: $COUNT requests of 4 KiB at QD$DEPTH on a $SIZE image"
echo "cluster: one monitor, one OSD on memstore ($((VDISK_CEPH_STORE_BYTES / 1048576)) MiB), 127.0.0.1, pool size 1 (tests/ceph/cluster.sh), started in ${VDISK_CEPH_START_SECONDS:-?} s"
echo "$("$VDISK" --version), $(qemu-img --version | head -1), $(rbd --version | sed 's/ (.*//'), $(fio --version)"
echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $REPEAT rounds, medians shown"
echo

line() { printf '%-18s %-18s %9s %9s %6s %6s %7s %7s  %s\n' "$@"; }
line "row" "against" "vdisk" "other" "ratio" "target" "vdisk" "other" "per-round ratio"
line "" "" "s | IOPS" "s | IOPS" "" "" "CPU us/req" "" "(other time / vdisk time; vdisk IOPS / other IOPS)"
line "---" "-------" "-----" "-----" "-----" "------" "-----" "-----" "---------------"

nbelow=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label runner unit toolstr targetstr <<<"$row"
    read -r -a tools <<<"$toolstr"
    read -r -a targets <<<"$targetstr"
    declare -A val=() cpu=() ratios=()
    ntools=${#tools[@]}
    # The warm-up: each tool once, untimed (the OSD's memory for new
    # objects, librbd's and the page cache's first touches).
    for tool in "${tools[@]}"; do "run_$runner" "$tool" -1; done
    for ((rep = 0; rep < REPEAT; rep++)); do
        declare -A now=() first=() cpu1=()
        # Each tool twice, in mirrored order (A B C C B A): the cluster
        # slows down as the OSD fills, and a tool run late in every round
        # would lose by it; the mean of the two runs cancels that.
        for ((k = 0; k < 2 * ntools; k++)); do
            kk=$k
            ((k >= ntools)) && kk=$((2 * ntools - 1 - k))
            tool=${tools[(kk + rep) % ntools]}
            "run_$runner" "$tool" "$rep"
            if [[ -z ${first[$tool]:-} ]]; then
                first[$tool]=$VAL
                cpu1[$tool]=$CPU
                continue
            fi
            VAL=$(awk -v a="${first[$tool]}" -v b="$VAL" 'BEGIN { printf "%.4f", (a + b) / 2 }')
            [[ $CPU != - && ${cpu1[$tool]} != - ]] &&
                CPU=$(awk -v a="${cpu1[$tool]}" -v b="$CPU" 'BEGIN { printf "%.4f", (a + b) / 2 }')
            now[$tool]=$VAL
            val[$tool]="${val[$tool]:-} $VAL"
            cpu[$tool]="${cpu[$tool]:-} $CPU"
        done
        unset first cpu1
        for tool in "${tools[@]:1}"; do
            if [[ $unit == s ]]; then
                r=$(ratio "${now[$tool]}" "${now[vdisk]}")
            else
                r=$(ratio "${now[vdisk]}" "${now[$tool]}")
            fi
            ratios[$tool]="${ratios[$tool]:-} $r"
        done
        unset now
    done
    fmt=%.3f
    [[ $unit == iops ]] && fmt=%.0f
    # CPU per request (random rows), else CPU seconds.
    cpucol() {
        local c
        # shellcheck disable=SC2086 # the list is meant to be split
        c=$(median %.4f ${cpu[$1]})
        if [[ $c == - ]]; then echo -; return; fi
        if [[ $unit == iops ]]; then
            awk -v c="$c" -v n="$COUNT" 'BEGIN { printf "%.1f", c * 1e6 / n }'
        else
            printf '%.2fs' "$c"
        fi
    }
    for ((k = 1; k < ntools; k++)); do
        tool=${tools[k]} target=${targets[k - 1]}
        # shellcheck disable=SC2086 # the lists are meant to be split
        r=$(median %.2f ${ratios[$tool]})
        mark=""
        if below "$r" "$target"; then
            mark="<"
            nbelow=$((nbelow + 1))
        fi
        # shellcheck disable=SC2086
        line "$label" "${NAME[$tool]}" "$(median "$fmt" ${val[vdisk]})" "$(median "$fmt" ${val[$tool]})" \
            "$r$mark" ">=$target" "$(cpucol vdisk)" "$(cpucol "$tool")" "${ratios[$tool]# }"
    done
    unset val cpu ratios
done

echo
echo "convert rows: wall-clock seconds, medians; ratio = the median of the per-round"
echo "ratios other time / vdisk time; CPU = user + system seconds of the process."
echo "Random I/O rows: each tool's own IOPS figure, medians; ratio = the median of"
echo "vdisk IOPS / other IOPS; CPU = user + system microseconds per request of the"
echo "whole process (connecting to the cluster included).  Above 1: vdisk is faster."
echo "OSD memory at the end: $("$VDISK_CEPH_SCRIPT" rss "$VDISK_CEPH_DIR")"
if ((nbelow)); then
    echo "vdisk is below its target on $nbelow row(s) (marked <)."
else
    echo "vdisk meets its target on every row."
fi
