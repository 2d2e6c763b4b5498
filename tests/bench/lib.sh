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

# bench_ramdisk MIB: takes the disk out of a disk-bound row.  Makes an ext4
# file system of MIB MiB on a loop device over a file in a tmpfs of its own
# (ext4 does O_DIRECT, tmpfs alone does not), mounts it in a new directory
# and sets BASE_DIR to it; bench_ramdisk_remove (call it from the EXIT trap)
# undoes all of it.  Needs root, losetup and mkfs.ext4, and MIB MiB of free
# memory.  What is measured there is each tool's own cost per byte (system
# calls, copies, the file system's work), which the shared virtual disk of a
# cloud machine hides: its speed swung 3x within minutes here.
RAMDISK_TOP= RAMDISK_LOOP=
bench_ramdisk() {
    local mib=$1
    ((EUID == 0)) || die "BENCH_RAMDISK needs root (a tmpfs, a loop device, mkfs.ext4)"
    command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null ||
        die "BENCH_RAMDISK needs losetup and mkfs.ext4"
    local avail_kib
    avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
    ((avail_kib / 1024 > mib + 1024)) ||
        die "BENCH_RAMDISK needs $mib MiB of memory and 1 GiB to spare; $((avail_kib / 1024)) MiB are available"
    RAMDISK_TOP=$(mktemp -d /tmp/vdisk-bench-ram.XXXXXX)
    mkdir "$RAMDISK_TOP/mem" "$RAMDISK_TOP/fs"
    mount -t tmpfs -o "size=$((mib + 64))m" tmpfs "$RAMDISK_TOP/mem" || die "cannot mount a tmpfs"
    # Every page now, so that the first round does not pay for them.
    fallocate -l "${mib}M" "$RAMDISK_TOP/mem/disk" || die "cannot fill the tmpfs"
    RAMDISK_LOOP=$(losetup -f --show "$RAMDISK_TOP/mem/disk") || die "no free loop device"
    mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$RAMDISK_LOOP" >"$RAMDISK_TOP/mkfs.log" 2>&1 ||
        die "mkfs.ext4 $RAMDISK_LOOP failed: $(cat "$RAMDISK_TOP/mkfs.log")"
    mount "$RAMDISK_LOOP" "$RAMDISK_TOP/fs" || die "cannot mount $RAMDISK_LOOP"
    BASE_DIR=$RAMDISK_TOP/fs
}
bench_ramdisk_remove() {
    [[ -n $RAMDISK_TOP ]] || return 0
    cd / # the caller may be in it
    mountpoint -q "$RAMDISK_TOP/fs" && umount "$RAMDISK_TOP/fs"
    [[ -n $RAMDISK_LOOP ]] && losetup -d "$RAMDISK_LOOP"
    mountpoint -q "$RAMDISK_TOP/mem" && umount "$RAMDISK_TOP/mem"
    rm -rf "$RAMDISK_TOP"
    RAMDISK_TOP=
}

# The server a bench started (its pid in SERVER_PID) stopped; nothing when
# none runs.
SERVER_PID=
bench_stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# bench_scratch NAME KIB: a new scratch folder under BASE_DIR in SCRATCH
# (the server stopped and the folder removed at exit), LOG in it, KIB free
# there or die, and the working folder moved into it.
bench_scratch() {
    SCRATCH=
    trap 'bench_stop_server; rm -rf "$SCRATCH"' EXIT
    mkdir -p "$BASE_DIR"
    SCRATCH=$(mktemp -d "$BASE_DIR/vdisk-bench-$1.XXXXXX")
    LOG=$SCRATCH/log
    bench_need_space "$2"
    cd "$SCRATCH"
}

# bench_cpu_ticks PID: its utime + stime (fields 14 and 15 after the name).
bench_cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# bench_fio URI ARGS: one fio run (nbd engine, SECS seconds) against the
# server SERVER_PID serves at URI; sets RATE (IOPS, or MiB/s with 1M
# blocks) and PER (the server's CPU, us per request).  Needs HZ.
bench_fio() {
    local uri=$1 args=$2 c0 c1 line
    c0=$(bench_cpu_ticks "$SERVER_PID")
    # shellcheck disable=SC2086 # ARGS is a list
    fio --name=nbd --ioengine=nbd "--uri=$uri" $args --time_based "--runtime=$SECS" \
        --output-format=terse --terse-version=3 >"$LOG" 2>&1 ||
        { cat "$LOG" >&2; die "fio failed: $args on $uri"; }
    c1=$(bench_cpu_ticks "$SERVER_PID")
    line=$(grep '^3;' "$LOG") || { cat "$LOG" >&2; die "no result from fio"; }
    # Terse v3: 6 read KiB, 8 read IOPS, 47 write KiB, 49 write IOPS.
    read -r RATE PER < <(awk -F';' -v t=$((c1 - c0)) -v hz="$HZ" -v args="$args" \
        -v secs="$SECS" '{
        kib = $6 + $47; iops = $8 + $49
        bs = (args ~ /--bs=1M/) ? 1024 : 4
        n = kib / bs
        rate = (bs == 1024) ? kib / 1024 / secs : iops
        printf "%.0f %.2f\n", rate, (n > 0 ? t / hz * 1e6 / n : 0) }' <<<"$line")
}
