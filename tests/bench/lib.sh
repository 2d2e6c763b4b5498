# SPDX-License-Identifier: MIT
# tests/bench/lib.sh: checks and arithmetic the bench scripts share; the
# checks need die(), SCRATCH, BASE_DIR, LOG and VDISK defined when called.

# bench_need_space KIB: dies unless SCRATCH's file system has KIB free.
bench_need_space() {
    local need_kib=$1 avail_kib
    avail_kib=$(df -Pk "$SCRATCH" | awk 'NR == 2 { print $4 }')
    ((avail_kib >= need_kib)) ||
        die "$BASE_DIR has $((avail_kib / 1024)) MiB free; $((need_kib / 1024)) MiB are needed"
}

# bench_need_direct_uring: both tools must do O_DIRECT and io_uring in
# SCRATCH (qemu-img may be built without liburing; tmpfs has no O_DIRECT).
bench_need_direct_uring() {
    local probe=$SCRATCH/probe.raw tool
    truncate -s 1M "$probe"
    for tool in "qemu-img" "$VDISK"; do
        "$tool" bench -f raw -t none -i io_uring -c 1 "$probe" >"$LOG" 2>&1 ||
            { cat "$LOG" >&2; die "$tool bench -t none -i io_uring fails in $BASE_DIR"; }
    done
    rm -f "$probe"
}

# median FORMAT N...: the median (the mean of the middle two for an even
# count), printed with FORMAT; "-" when the first value is "-".
median() {
    local fmt=$1
    shift
    if [[ $1 == - ]]; then
        echo -
        return
    fi
    printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt" '{ a[NR] = $1 }
        END { printf fmt, NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# ratio A B: A / B to two decimals (0 when B is 0)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# below R T: true when R < T
below() { awk -v r="$1" -v t="$2" 'BEGIN { exit !(r < t) }'; }

# bench_pick_rows RE: keeps only the rows of the array ROWS whose label (the
# text before the first '|') matches the extended regular expression RE
# (BENCH_ROWS); every row when RE is empty.
bench_pick_rows() {
    local re=$1 row
    [[ -n $re ]] || return 0
    local picked=()
    for row in "${ROWS[@]}"; do
        if [[ ${row%%|*} =~ $re ]]; then picked+=("$row"); fi
    done
    ((${#picked[@]})) || die "BENCH_ROWS '$re' matches no row"
    ROWS=("${picked[@]}")
}
