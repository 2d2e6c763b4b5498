# SPDX-License-Identifier: MIT
# tests/bench/lib.sh: checks the bench scripts share; sourced after they
# define die(), SCRATCH, BASE_DIR, LOG and VDISK.

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
