#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/meta.sh: the metadata-heavy verbs, vdisk against qemu-img side
# by side in one run: check, map --output=json and info on a qcow2 image of
# 4 KiB clusters (2 GiB: 524,288 clusters) and on its twin of 64 KiB
# clusters.
#
# usage: tests/bench/meta.sh [VDISK]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_REPEAT     rounds per row; the medians are shown (default 15)
#   BENCH_SIZE       the image's virtual size (default 2G)
#   BENCH_DIR        where the scratch directory goes (default /var/tmp)
#
# The images: a raw file of BENCH_SIZE bytes made deterministically (a
# xorshift generator, the same bytes every run) of runs of 1 to 32 clusters
# of 4 KiB, each run random data (45%), zeroes written out (20%) or a hole
# (35%), converted by qemu-img convert -O qcow2 -o cluster_size=4096 (and
# 65536): qemu-img allocates the data clusters in guest order and leaves
# the zeroes and holes unallocated, so the 4 KiB image has ~235,000 data
# clusters in ~16,000 extents and an L2 table per 2 MiB of guest.
#
# The rows, each tool reading the same image from the page cache (a first,
# uncounted run of each warms it):
#   check            qemu-img check / vdisk check: outputs compared once
#   map --output=json                          (they must be identical)
#   info
# In each of BENCH_REPEAT rounds both tools run once, qemu-img first in
# even rounds and vdisk first in odd ones, back to back, so a slow spell of
# the machine hits both alike.  Times are wall clock (bash's
# EPOCHREALTIME around the run), the peak RSS and the CPU time (user +
# system) come from GNU time (/usr/bin/time, "-" without it; 10 ms
# resolution).  The table shows each tool's median time, the median of the
# per-round ratios qemu-img time / vdisk time (above 1: vdisk is faster)
# against the row's target, the median CPU time and the peak RSS of each.
#
# Installs nothing.  Exits 77 (skipped) when qemu-img is missing.  Needs
# about 4.5 GB free in BENCH_DIR (the raw file ~1.3 GB allocated, the qcow2
# images ~1 GB and ~1.4 GB).  Takes about a minute with the defaults.
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
REPEAT=${BENCH_REPEAT:-15}
SIZE=${BENCH_SIZE:-2G}
BASE_DIR=${BENCH_DIR:-/var/tmp}

die() { echo "meta.sh: $*" >&2; exit 1; }

if ! command -v qemu-img >/dev/null 2>&1; then
    echo "meta.sh: qemu-img is not installed; skipping the benchmark" >&2
    exit 77
fi
command -v perl >/dev/null 2>&1 || die "perl is needed to make the image"
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
VDISK=$(cd "$(dirname "$VDISK")" && pwd)/$(basename "$VDISK")
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
SIZE_BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || die "BENCH_SIZE: not a size: $SIZE"
if ((SIZE_BYTES < 64 * 1048576 || SIZE_BYTES % 65536)); then
    die "BENCH_SIZE must be a multiple of 64k, at least 64M (e.g. 1G, 2G)"
fi
TIME=/usr/bin/time
[[ -x $TIME ]] && $TIME -f %M true >/dev/null 2>&1 || TIME=

mkdir -p "$BASE_DIR"
SCRATCH=$(mktemp -d "$BASE_DIR/vdisk-bench-meta.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
RAW=$SCRATCH/mix.raw
LOG=$SCRATCH/log

. "$(dirname "$0")/lib.sh"
bench_need_space $((SIZE_BYTES * 9 / 4 / 1024 + 65536))

# ---- The images --------------------------------------------------------------
truncate -s "$SIZE_BYTES" "$RAW"
perl -e '
    use strict; use warnings; no warnings "portable";
    my ($path, $size) = @ARGV;
    my $cs = 4096;
    my $n = int($size / $cs);
    my $m = 0xFFFFFFFFFFFFFFFF;
    my $x = 0x9E3779B97F4A7C15;
    sub rnd { $x ^= ($x << 13) & $m; $x ^= $x >> 7; $x ^= ($x << 17) & $m; return $x; }
    my $pool = 4 << 20;                 # 4 MiB of random bytes to copy from
    my $buf = "";
    $buf .= pack("Q<", rnd()) for 1 .. $pool / 8;
    my $zero = "\0" x (32 * $cs);
    open(my $f, "+<", $path) or die "$path: $!";
    binmode $f;
    for (my $c = 0; $c < $n;) {
        my $r = rnd();
        my $len = 1 + $r % 32;
        $len = $n - $c if $c + $len > $n;
        my $kind = ($r >> 8) % 20;      # 0-8 random, 9-12 zeroes, 13-19 hole
        if ($kind < 13) {
            sysseek($f, $c * $cs, 0) or die "seek: $!";
            my $w = $kind < 9 ? syswrite($f, $buf, $len * $cs, (($r >> 16) % ($pool / $cs - 32)) * $cs)
                              : syswrite($f, $zero, $len * $cs);
            die "write: $!" unless defined $w && $w == $len * $cs;
        }
        $c += $len;
    }
    close $f or die "close: $!";
' "$RAW" "$SIZE_BYTES" || die "could not write the raw image"
declare -A IMG=()
for cs in 4096 65536; do
    IMG[$cs]=$SCRATCH/mix-$cs.qcow2
    qemu-img convert -f raw -O qcow2 -o cluster_size=$cs "$RAW" "${IMG[$cs]}" >"$LOG" 2>&1 ||
        { cat "$LOG" >&2; die "could not convert the image to qcow2 ($cs-byte clusters)"; }
done
rm -f "$RAW"

# ---- Runners -----------------------------------------------------------------

# cmdline TOOL VERB IMAGE: the command of one run, into CMD.
cmdline() {
    local tool=$1 verb=$2 img=$3
    if [[ $tool == qemu ]]; then CMD=(qemu-img); else CMD=("$VDISK"); fi
    case $verb in
    check) CMD+=(check -f qcow2 "$img") ;;
    map) CMD+=(map -f qcow2 --output=json "$img") ;;
    info) CMD+=(info -f qcow2 "$img") ;;
    esac
}

# run TOOL VERB IMAGE: one run; sets SECS, RSS (KiB) and CPU (seconds), "-"
# for the last two without GNU time.
run() {
    cmdline "$@"
    local t0 t1 u s
    RSS=-
    CPU=-
    if [[ -n $TIME ]]; then
        t0=$EPOCHREALTIME
        $TIME -f '%M %U %S' -o "$SCRATCH/time" "${CMD[@]}" >"$SCRATCH/out" 2>&1 ||
            { cat "$SCRATCH/out" >&2; die "failed: ${CMD[*]}"; }
        t1=$EPOCHREALTIME
        read -r RSS u s <"$SCRATCH/time"
        CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    else
        t0=$EPOCHREALTIME
        "${CMD[@]}" >"$SCRATCH/out" 2>&1 || { cat "$SCRATCH/out" >&2; die "failed: ${CMD[*]}"; }
        t1=$EPOCHREALTIME
    fi
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
}


# ---- The rows ------------------------------------------------------------------
#   label|verb|cluster size|target (qemu-img time / vdisk time)
ROWS=(
    "check, 4k clusters|check|4096|1.5"
    "map json, 4k clusters|map|4096|1.5"
    "info, 4k clusters|info|4096|1.0"
    "check, 64k clusters|check|65536|1.0"
    "map json, 64k clusters|map|65536|1.0"
    "info, 64k clusters|info|65536|1.0"
)

echo "vdisk vs qemu-img: check, map --output=json, info on a $SIZE qcow2 image of mixed data in $BASE_DIR ($(findmnt -no FSTYPE -T "$SCRATCH" 2>/dev/null | head -1 || echo '?'))"
echo "$("$VDISK" --version), $(qemu-img --version | head -1)"
echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $REPEAT rounds, medians shown"
for cs in 4096 65536; do
    alloc=$(qemu-img check "${IMG[$cs]}" 2>/dev/null | sed -n 's/^\([0-9]*\/[0-9]*\) = .*/\1/p')
    echo "image, $cs-byte clusters: $(stat -c %s "${IMG[$cs]}") bytes, $alloc clusters allocated, $(qemu-img map --output=json "${IMG[$cs]}" | wc -l) map extents"
done
echo

line() { printf '%-23s %8s %8s %6s %6s %7s %7s %8s %8s  %s\n' "$@"; }
line "row" "vdisk" "qemu" "ratio" "target" "vdisk" "qemu" "vdisk" "qemu" "per-round ratios"
line "" "s" "s" "" "" "CPU s" "CPU s" "RSS KiB" "RSS KiB" "(qemu-img time / vdisk time)"
line "---" "-----" "----" "-----" "------" "-----" "-----" "-------" "-------" "----------------"

nbelow=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label verb cs target <<<"$row"
    img=${IMG[$cs]}
    # The outputs must agree, and both runs warm the page cache.
    run qemu "$verb" "$img"
    cp "$SCRATCH/out" "$SCRATCH/out.qemu"
    run vdisk "$verb" "$img"
    if ! cmp -s "$SCRATCH/out" "$SCRATCH/out.qemu"; then
        diff "$SCRATCH/out.qemu" "$SCRATCH/out" | head -20 >&2
        die "$label: vdisk's output differs from qemu-img's"
    fi
    declare -A t=() rss=() cpu=()
    ratios=()
    for ((rep = 0; rep < REPEAT; rep++)); do
        order=(qemu vdisk)
        ((rep % 2)) && order=(vdisk qemu)
        declare -A now=()
        for tool in "${order[@]}"; do
            run "$tool" "$verb" "$img"
            now[$tool]=$SECS
            t[$tool]="${t[$tool]:-} $SECS"
            rss[$tool]="${rss[$tool]:-} $RSS"
            cpu[$tool]="${cpu[$tool]:-} $CPU"
        done
        ratios+=("$(ratio "${now[qemu]}" "${now[vdisk]}")")
        unset now
    done
    # shellcheck disable=SC2086 # the lists are meant to be split
    r=$(median %.2f "${ratios[@]}")
    mark=""
    if below "$r" "$target"; then
        mark="<"
        nbelow=$((nbelow + 1))
    fi
    # shellcheck disable=SC2086
    line "$label" "$(median %.3f ${t[vdisk]})" "$(median %.3f ${t[qemu]})" "$r$mark" \
        ">=$target" "$(median %.2f ${cpu[vdisk]})" "$(median %.2f ${cpu[qemu]})" \
        "$(median %.0f ${rss[vdisk]})" "$(median %.0f ${rss[qemu]})" "${ratios[*]}"
    unset t rss cpu
done

echo
echo "Each round runs both tools back to back on the same image (qemu-img first in"
echo "even rounds, vdisk first in odd ones), the image in the page cache; times are"
echo "wall clock, medians over the rounds; ratio = the median of the per-round"
echo "ratios qemu-img time / vdisk time (above 1: vdisk is faster), against the"
echo "row's target; CPU = user + system time, RSS = peak resident set (GNU time)."
if ((nbelow)); then
    echo "vdisk is below its target on $nbelow row(s) (marked <)."
else
    echo "vdisk meets its target on every row."
fi
