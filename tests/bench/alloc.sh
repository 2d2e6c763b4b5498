#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/alloc.sh: cluster allocation as a qcow2 image grows, vdisk
# against QEMU (qemu-io, qemu-img bench), with O_DIRECT (cache=none) and
# the io_uring engine for both tools.
#
# usage: tests/bench/alloc.sh [VDISK]
#
#   VDISK              the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_REPEAT       rounds of the iotest 044 row; the medians are shown
#                      (default 5)
#   BENCH_ALLOC_SIZE   bytes the growth row writes (default 4G)
#   BENCH_ALLOC_STEP   the rate is shown per this many bytes (default 1G;
#                      a divisor of BENCH_ALLOC_SIZE, a multiple of 1M)
#   BENCH_ALLOC_REPEAT rounds of the growth row (default 1: a round of the
#                      default 4G takes ~10-25 minutes per tool here)
#   BENCH_ROWS         which rows: 044, grow or both (default both)
#   BENCH_CHECK        1 to have qemu-img check the image vdisk wrote in the
#                      044 row (takes ~1 minute: 8 million clusters), 0 not
#                      to (default 0)
#   BENCH_DIR          where the scratch directory goes (default /var/tmp)
#
# The rows:
#   iotest 044         QEMU's iotest 044: a 16 GiB image with 512-byte
#                      clusters whose 4 GiB file is all in use, every entry
#                      of its refcount table pointing to a full refcount
#                      block (made by tests/bench/make044.py), takes one
#                      1 MiB write at 3800 MiB: the refcount table must grow
#                      and 8 Mi refcounts are searched for a free cluster.
#                      Each round copies the image afresh (sparse) for each
#                      tool and times 'vdisk io -c "write -P 0x5a 3800M 1M"'
#                      and 'qemu-io' with the same command, open and close
#                      included, in one order in even rounds and the other
#                      in odd ones.  Target: vdisk/qemu-io >= 1.00.
#   growth             BENCH_ALLOC_SIZE written sequentially in 1 MiB
#                      requests (queue depth 1) into an empty qcow2 image of
#                      that size with 512-byte clusters: every 32 KiB of data
#                      needs an L2 table, every 128 KiB a refcount block, and
#                      the refcount table grows as the file does.  The image
#                      is written BENCH_ALLOC_STEP at a time, each step one
#                      'vdisk bench -w' / 'qemu-img bench -w' run at its
#                      offset (-o), the two tools alternating step by step on
#                      their own images.  Shown per step: each tool's MiB/s
#                      and the ratio; then each tool's last step against its
#                      first (target for vdisk: >= 0.80, allocation that
#                      stays flat as the image grows) and the whole write
#                      (target: vdisk/qemu-img >= 1.00).
#
# With 512-byte clusters both tools are bound by fsyncs (an allocated L2
# table and refcount block must be on disk before the table above points to
# it), so the growth row runs at a few MiB/s on a virtual disk.
#
# Installs nothing.  Exits 77 (skipped) when qemu-img, qemu-io or python3
# is missing.  Needs about 100 MiB plus BENCH_ALLOC_SIZE twice (plus their
# metadata, ~1/60) free in BENCH_DIR.
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
REPEAT=${BENCH_REPEAT:-5}
ASIZE=${BENCH_ALLOC_SIZE:-4G}
ASTEP=${BENCH_ALLOC_STEP:-1G}
AREPEAT=${BENCH_ALLOC_REPEAT:-1}
ROWS=${BENCH_ROWS:-both}
CHECK=${BENCH_CHECK:-0}
BASE_DIR=${BENCH_DIR:-/var/tmp}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "alloc.sh: $*" >&2; exit 1; }

for tool in qemu-img qemu-io python3; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "alloc.sh: $tool is not installed; skipping the benchmark" >&2
        exit 77
    fi
done
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
[[ $AREPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_ALLOC_REPEAT must be a positive number"
[[ $ROWS == 044 || $ROWS == grow || $ROWS == both ]] || die "BENCH_ROWS must be 044, grow or both"
[[ $CHECK == 0 || $CHECK == 1 ]] || die "BENCH_CHECK must be 0 or 1"

# bytes SIZE: 1M -> 1048576, 4G -> 4294967296
bytes() {
    case $1 in
    *k | *K) echo $((${1%[kK]} * 1024)) ;;
    *M) echo $((${1%M} * 1048576)) ;;
    *G) echo $((${1%G} * 1073741824)) ;;
    *) echo "$1" ;;
    esac
}
ASIZE_B=$(bytes "$ASIZE")
ASTEP_B=$(bytes "$ASTEP")
MIB=1048576
if ! [[ $ASIZE_B =~ ^[0-9]+$ && $ASTEP_B =~ ^[0-9]+$ ]] || ((ASTEP_B < MIB || ASTEP_B % MIB ||
    ASIZE_B < ASTEP_B || ASIZE_B % ASTEP_B)); then
    die "BENCH_ALLOC_STEP must be a multiple of 1M dividing BENCH_ALLOC_SIZE (e.g. 4G and 1G)"
fi
NSTEPS=$((ASIZE_B / ASTEP_B))
STEP_REQS=$((ASTEP_B / MIB))

mkdir -p "$BASE_DIR"
SCRATCH=$(mktemp -d "$BASE_DIR/vdisk-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
LOG=$SCRATCH/log

. "$(dirname "$0")/lib.sh"
bench_need_space $((ASIZE_B * 2 * 61 / 60 / 1024 + 300 * 1024))

bench_need_direct_uring

# ---- Arithmetic ----------------------------------------------------------------

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v m="$1" -v t="$2" 'BEGIN { printf "%.2f", (t > 0 ? m / t : 0) }'; }

echo "vdisk against QEMU: allocation as a qcow2 image with 512-byte clusters grows, in $BASE_DIR ($(findmnt -no FSTYPE -T "$SCRATCH" 2>/dev/null | head -1 || echo '?')), cache=none, io_uring"
echo "$("$VDISK" --version), $(qemu-img --version | head -1)"
echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
nbelow=0

# ---- iotest 044 ----------------------------------------------------------------

if [[ $ROWS != grow ]]; then
    BASE=$SCRATCH/044.qcow2
    IMG=$SCRATCH/044-run.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=512 "$BASE" 16G >"$LOG" 2>&1 ||
        { cat "$LOG" >&2; die "could not create the iotest 044 image"; }
    python3 "$HERE/make044.py" "$BASE" >"$LOG" 2>&1 ||
        { cat "$LOG" >&2; die "could not build the iotest 044 image"; }
    CMD="write -P 0x5a 3800M 1M"
    # run044 TOOL: one write into a fresh copy; prints its seconds.
    run044() {
        rm -f "$IMG"
        cp --sparse=always "$BASE" "$IMG"
        sync -f "$IMG"
        local t0 t1 cmd=("$VDISK" io)
        [[ $1 == qemu ]] && cmd=(qemu-io)
        t0=$(now)
        "${cmd[@]}" -f qcow2 -t none -i io_uring -c "$CMD" "$IMG" >"$LOG" 2>&1 ||
            { cat "$LOG" >&2; die "$1: ${cmd[*]} -c '$CMD' failed"; }
        t1=$(now)
        elapsed "$t0" "$t1"
    }
    vt=() qt=() rr=()
    for ((rep = 0; rep < REPEAT; rep++)); do
        if ((rep % 2)); then
            q=$(run044 qemu)
            v=$(run044 vdisk)
        else
            v=$(run044 vdisk)
            q=$(run044 qemu)
        fi
        vt+=("$v")
        qt+=("$q")
        rr+=("$(ratio "$q" "$v")")
    done
    if ((CHECK)); then
        run044 vdisk >/dev/null
        qemu-img check "$IMG" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "qemu-img check: vdisk's 044 image is not clean"; }
        if ! qemu-io -f qcow2 -c "read -P 0x5a 3800M 1M" -c "read -P 0 3799M 1M" \
            -c "read -P 0 3801M 1M" "$IMG" >"$LOG" 2>&1 ||
            grep -q "Pattern verification failed" "$LOG"; then
            cat "$LOG" >&2
            die "qemu-io reads back other data than vdisk wrote"
        fi
        checked="; qemu-img check: clean, content as written"
    fi
    vmed=$(median %.3f "${vt[@]}")
    qmed=$(median %.3f "${qt[@]}")
    r=$(median %.2f "${rr[@]}")
    mark=""
    if below "$r" 1.00; then
        mark="<"
        nbelow=$((nbelow + 1))
    fi
    printf '%-28s %9s %9s %7s %8s  %s\n' "row" "vdisk s" "qemu-io s" "ratio" "target" "per-round ratios (qemu-io time / vdisk time)"
    printf '%-28s %9s %9s %7s %8s  %s\n' "---" "-------" "---------" "-----" "------" "----------------"
    printf '%-28s %9s %9s %7s %8s  %s\n' "iotest 044: 1M at 3800M" "$vmed" "$qmed" "$r$mark" ">= 1.00" "${rr[*]}"
    echo "(medians of $REPEAT rounds; each run opens the image, writes, closes${checked:-})"
    echo
    rm -f "$BASE" "$IMG"
fi

# ---- Growth ----------------------------------------------------------------------

if [[ $ROWS != 044 ]]; then
    VIMG=$SCRATCH/grow-vdisk.qcow2
    QIMG=$SCRATCH/grow-qemu.qcow2
    # grow_step TOOL IMAGE STEP: writes step STEP; prints its seconds.
    grow_step() {
        local cmd=("$VDISK" bench)
        [[ $1 == qemu ]] && cmd=(qemu-img bench)
        "${cmd[@]}" -f qcow2 -t none -i io_uring -w -d 1 -s 1M -c "$STEP_REQS" \
            -o $(($3 * ASTEP_B)) "$2" >"$LOG" 2>&1 ||
            { cat "$LOG" >&2; die "$1 bench failed on step $3"; }
        local t
        t=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$LOG")
        [[ -n $t ]] || { cat "$LOG" >&2; die "no 'Run completed' line in the output"; }
        echo "$t"
    }
    declare -A vs=() qs=()
    for ((rep = 0; rep < AREPEAT; rep++)); do
        for img in "$VIMG" "$QIMG"; do
            rm -f "$img"
            qemu-img create -q -f qcow2 -o cluster_size=512 "$img" "$ASIZE_B" >"$LOG" 2>&1 ||
                { cat "$LOG" >&2; die "could not create an empty qcow2 image"; }
        done
        for ((g = 0; g < NSTEPS; g++)); do
            if (((g + rep) % 2)); then
                q=$(grow_step qemu "$QIMG" "$g")
                v=$(grow_step vdisk "$VIMG" "$g")
            else
                v=$(grow_step vdisk "$VIMG" "$g")
                q=$(grow_step qemu "$QIMG" "$g")
            fi
            vs[$g]="${vs[$g]:-} $v"
            qs[$g]="${qs[$g]:-} $q"
        done
    done
    rm -f "$VIMG" "$QIMG"
    step_mib=$((ASTEP_B / MIB))
    printf '%-28s %11s %11s %7s\n' "growth: bytes written" "vdisk MiB/s" "qemu MiB/s" "ratio"
    printf '%-28s %11s %11s %7s\n' "---" "-----------" "----------" "-----"
    vtot=0 qtot=0
    for ((g = 0; g < NSTEPS; g++)); do
        # shellcheck disable=SC2086 # the lists are meant to be split
        vsec=$(median %.3f ${vs[$g]})
        # shellcheck disable=SC2086
        qsec=$(median %.3f ${qs[$g]})
        vr[g]=$(rate "$step_mib" "$vsec")
        qr[g]=$(rate "$step_mib" "$qsec")
        vtot=$(awk -v a="$vtot" -v b="$vsec" 'BEGIN { print a + b }')
        qtot=$(awk -v a="$qtot" -v b="$qsec" 'BEGIN { print a + b }')
        printf '%-28s %11s %11s %7s\n' "$((g * step_mib))-$(((g + 1) * step_mib)) MiB" \
            "${vr[g]}" "${qr[g]}" "$(ratio "${vr[g]}" "${qr[g]}")"
    done
    echo
    vflat=$(ratio "${vr[NSTEPS - 1]}" "${vr[0]}")
    qflat=$(ratio "${qr[NSTEPS - 1]}" "${qr[0]}")
    whole=$(ratio "$qtot" "$vtot")
    m1="" m2=""
    if below "$vflat" 0.80; then m1="<"; nbelow=$((nbelow + 1)); fi
    if below "$whole" 1.00; then m2="<"; nbelow=$((nbelow + 1)); fi
    printf '%-40s %7s %8s  %s\n' "row" "value" "target" ""
    printf '%-40s %7s %8s  %s\n' "---" "-----" "------" ""
    printf '%-40s %7s %8s  %s\n' "growth: vdisk last step / first step" "$vflat$m1" ">= 0.80" "(qemu-img: $qflat)"
    printf '%-40s %7s %8s  %s\n' "growth: whole write, vdisk/qemu-img" "$whole$m2" ">= 1.00" \
        "($(rate $((ASIZE_B / MIB)) "$vtot") against $(rate $((ASIZE_B / MIB)) "$qtot") MiB/s)"
    echo "(per step: the median of $AREPEAT round(s) of one bench run of $STEP_REQS requests of 1 MiB at QD1)"
    echo
fi

if ((nbelow)); then
    echo "$nbelow row(s) miss their target (marked <)."
else
    echo "Every row meets its target."
fi
