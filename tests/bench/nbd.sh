#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/nbd.sh: `vdisk nbd` against qemu-nbd and qemu-storage-daemon
# serving the same qcow2 image, and vdisk's NBD client (vdisk convert from
# an nbd+unix:// export) against qemu-img convert; side by side in one run,
# in interleaved rounds.
#
# usage: tests/bench/nbd.sh [VDISK]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_SIZE       the image's virtual size (default 512M): a qcow2 full
#                    of random data (every cluster allocated)
#   BENCH_REPEAT     rounds; the medians are shown (default 3; 5 or more on
#                    a busy machine)
#   BENCH_SECS       seconds per fio run (default 1)
#   BENCH_CACHE      the servers' cache mode, writeback (default) or none
#                    (qemu-nbd --cache=, qemu-storage-daemon cache.direct=)
#   BENCH_AIO        the servers' I/O engine, io_uring (default) or threads
#   BENCH_SHARED     clients at once (-e, max-connections; default 8)
#   BENCH_TRANSPORTS unix, tcp or both (default "unix tcp")
#   BENCH_ROWS       only the rows whose label matches this extended regular
#                    expression (default: every row), e.g. 'randread|convert'
#   BENCH_DIR        where the scratch directory goes (default /var/tmp)
#
# The servers, one at a time on the same image (in BENCH_DIR: on disk):
#   vdisk     vdisk nbd -t -e N -f qcow2 --cache=C --aio=A -x disk
#   qemu-nbd  qemu-nbd -t -e N -f qcow2 --cache=C --aio=A -x disk
#   qsd       qemu-storage-daemon --blockdev file (cache.direct, aio)
#             --blockdev qcow2 --nbd-server (max-connections=N)
#             --export type=nbd,writable=on
# each over a Unix socket and over TCP on 127.0.0.1.  The defaults are the
# peers' fastest settings here: with --cache=writeback the image is read
# from the page cache, and with io_uring qemu-nbd was faster than with
# threads; with --cache=none every row measures the (virtual, shared) disk
# more than the servers.  All three advertise multi-conn.
#
# The rows and their targets (issue 18, item 5; ratio = vdisk's figure /
# the faster peer's, above 1: vdisk is faster):
#   randread 4k QD32     fio --ioengine=nbd, IOPS           >= 1.20
#   randwrite 4k QD32    fio --ioengine=nbd, IOPS           >= 1.20
#   read 1M QD8          fio --ioengine=nbd, MiB/s          >= 1.20
#   nbdcopy -> null:     nbdcopy URI null: (its defaults: 4 connections,
#                        64 requests of 256 KiB), MiB/s     >= 1.20
#   convert (client)     vdisk convert -W -f raw -O raw URI OUT against
#                        qemu-img convert -m 16 -W -f raw -O raw URI OUT, the
#                        export served by qemu-nbd over the Unix socket;
#                        ratio = qemu-img time / vdisk time  >= 1.00
# For the server rows each server's CPU time (utime + stime from
# /proc/PID/stat over the run) is shown per request (us) or per MiB (ms):
# on this 2-CPU machine the client takes one of them, so CPU per request
# says more than the rate when the machine is busy.
#
# In each round every server runs once per transport, in an order that
# rotates from round to round; the table shows each one's median and the
# median of the per-round ratios.  The convert outputs go to the scratch
# directory through the page cache (both tools' default -t unsafe), and the
# first round's are compared (qemu-img compare).
#
# Installs nothing.  Exits 77 (skipped) when fio (with its nbd engine),
# qemu-nbd, qemu-img or nbdcopy is missing; qemu-storage-daemon is
# optional (its column says "-").  Needs 2.5 times BENCH_SIZE free in
# BENCH_DIR.  Takes about 3 minutes with the defaults (2 CPUs), about 1
# more per extra round.
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
SIZE=${BENCH_SIZE:-512M}
REPEAT=${BENCH_REPEAT:-3}
SECS=${BENCH_SECS:-1}
CACHE=${BENCH_CACHE:-writeback}
AIO=${BENCH_AIO:-io_uring}
SHARED=${BENCH_SHARED:-8}
TRANSPORTS=${BENCH_TRANSPORTS:-unix tcp}
BASE_DIR=${BENCH_DIR:-/var/tmp}

die() { echo "nbd.sh: $*" >&2; exit 1; }
skip() { echo "nbd.sh: $*; skipping the benchmark" >&2; exit 77; }

for tool in fio qemu-nbd qemu-img nbdcopy nbdinfo; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "fio has no nbd engine"
QSD=1
command -v qemu-storage-daemon >/dev/null 2>&1 || QSD=0
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
VDISK=$(cd "$(dirname "$VDISK")" && pwd)/$(basename "$VDISK")
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECS must be a positive number"
[[ $SHARED =~ ^[1-9][0-9]*$ ]] || die "BENCH_SHARED must be a positive number"
[[ $CACHE == writeback || $CACHE == none ]] || die "BENCH_CACHE must be writeback or none"
[[ $AIO == io_uring || $AIO == threads ]] || die "BENCH_AIO must be io_uring or threads"
for t in $TRANSPORTS; do
    [[ $t == unix || $t == tcp ]] || die "BENCH_TRANSPORTS: unknown transport '$t'"
done
SIZE_BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || die "BENCH_SIZE: not a size: $SIZE"
((SIZE_BYTES >= 64 * 1048576 && SIZE_BYTES % 1048576 == 0)) ||
    die "BENCH_SIZE must be a multiple of 1M, at least 64M"

. "$(dirname "$0")/lib.sh"
bench_scratch nbd $((SIZE_BYTES * 5 / 2 / 1024 + 65536))
SOCK=$SCRATCH/nbd.sock
HZ=$(getconf CLK_TCK)

# A free TCP port on 127.0.0.1 (nothing answers a connection to it).
PORT=
for ((try = 0; try < 50; try++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        PORT=$p
        break
    fi
done
[[ -n $PORT ]] || die "no free TCP port found on 127.0.0.1"

# ---- The image ---------------------------------------------------------------
# Random data in every cluster (written by vdisk, checked by qemu-img).
{ head -c "$SIZE_BYTES" /dev/urandom || true; } >src.raw
"$VDISK" convert -q -f raw -O qcow2 src.raw disk.qcow2 >"$LOG" 2>&1 ||
    { cat "$LOG" >&2; die "cannot make the image"; }
rm -f src.raw
qemu-img check -q disk.qcow2 || die "qemu-img check fails on the image"
sync

# ---- Servers -----------------------------------------------------------------

# uri TRANSPORT
uri() {
    if [[ $1 == unix ]]; then echo "nbd+unix:///disk?socket=$SOCK"; else echo "nbd://127.0.0.1:$PORT/disk"; fi
}

# start_server NAME TRANSPORT: starts it on disk.qcow2 and waits until it
# answers; sets SERVER_PID.
start_server() {
    local name=$1 tr=$2 cmd listen=() i
    rm -f "$SOCK"
    case $name in
        vdisk | qemu-nbd)
            [[ $tr == unix ]] && listen=(-k "$SOCK") || listen=(-b 127.0.0.1 -p "$PORT")
            cmd=(qemu-nbd)
            [[ $name == vdisk ]] && cmd=("$VDISK" nbd)
            cmd+=(-t -e "$SHARED" -f qcow2 "--cache=$CACHE" "--aio=$AIO" -x disk "${listen[@]}" disk.qcow2)
            ;;
        qsd)
            local direct=off addr
            [[ $CACHE == none ]] && direct=on
            addr=addr.type=unix,addr.path=$SOCK
            [[ $tr == tcp ]] && addr=addr.type=inet,addr.host=127.0.0.1,addr.port=$PORT
            cmd=(qemu-storage-daemon
                --blockdev "driver=file,node-name=file0,filename=disk.qcow2,cache.direct=$direct,aio=$AIO"
                --blockdev "driver=qcow2,node-name=disk0,file=file0"
                --nbd-server "$addr,max-connections=$SHARED"
                --export "type=nbd,id=exp0,node-name=disk0,name=disk,writable=on")
            ;;
    esac
    "${cmd[@]}" >"$SCRATCH/server.log" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        if nbdinfo --size "$(uri "$tr")" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$SCRATCH/server.log" >&2
    die "$name does not serve over $tr: ${cmd[*]}"
}

# ---- Rows ----------------------------------------------------------------------
#   label|target|kind|args
ROWS=(
    "randread 4k QD32|1.20|fio|--rw=randread --bs=4k --iodepth=32"
    "randwrite 4k QD32|1.20|fio|--rw=randwrite --bs=4k --iodepth=32"
    "read 1M QD8|1.20|fio|--rw=read --bs=1M --iodepth=8"
    "nbdcopy -> null:|1.20|nbdcopy|"
    "convert (client)|1.00|convert|"
)
bench_pick_rows "${BENCH_ROWS:-}"
SERVERS=(vdisk qemu-nbd)
((QSD)) && SERVERS+=(qsd)

# run_copy TRANSPORT: nbdcopy of the export to null:; RATE in MiB/s, PER in
# server CPU ms per MiB.
run_copy() {
    local tr=$1 c0 c1 t0 t1
    c0=$(bench_cpu_ticks "$SERVER_PID")
    t0=$EPOCHREALTIME
    nbdcopy "$(uri "$tr")" null: >"$LOG" 2>&1 || { cat "$LOG" >&2; die "nbdcopy failed over $tr"; }
    t1=$EPOCHREALTIME
    c1=$(bench_cpu_ticks "$SERVER_PID")
    read -r RATE PER < <(awk -v a="$t0" -v b="$t1" -v t=$((c1 - c0)) -v hz="$HZ" -v s="$SIZE_BYTES" \
        'BEGIN { mib = s / 1048576; printf "%.0f %.3f\n", mib / (b - a), t / hz * 1e3 / mib }')
}

# run_convert TOOL: one convert of the export (qemu-nbd over the Unix
# socket) into out-TOOL; RATE in MiB/s, PER the tool's CPU ms per MiB.
run_convert() {
    local tool=$1 t0 t1 cmd
    cmd=("$VDISK" convert -W)
    [[ $tool == qemu-img ]] && cmd=(qemu-img convert -m 16 -W)
    cmd+=(-f raw -O raw "$(uri unix)" "out-$tool")
    rm -f "out-$tool"
    t0=$EPOCHREALTIME
    local t=/usr/bin/time
    if [[ -x $t ]]; then
        $t -f '%U %S' -o "$SCRATCH/time" "${cmd[@]}" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "failed: ${cmd[*]}"; }
    else
        "${cmd[@]}" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "failed: ${cmd[*]}"; }
        echo "- -" >"$SCRATCH/time"
    fi
    t1=$EPOCHREALTIME
    read -r RATE PER < <(awk -v a="$t0" -v b="$t1" -v s="$SIZE_BYTES" '
        { mib = s / 1048576; printf "%.0f %s\n", mib / (b - a), ($1 == "-" ? "-" : sprintf("%.3f", ($1 + $2) * 1e3 / mib)) }' \
        "$SCRATCH/time")
}

echo "vdisk nbd vs qemu-nbd vs qemu-storage-daemon: a $SIZE qcow2 of random data in $BASE_DIR ($(findmnt -no FSTYPE -T "$SCRATCH" 2>/dev/null | head -1 || echo "?")), --cache=$CACHE --aio=$AIO -e $SHARED"
echo "$("$VDISK" --version), $(qemu-nbd --version | head -1), $(fio --version), $(nbdcopy --version | head -1)"
echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $REPEAT rounds of $SECS s fio runs, medians shown"
echo

# Results: "label transport server round rate per" lines.
: >results
declare -A want_tr=()
for row in "${ROWS[@]}"; do
    IFS='|' read -r label _ kind _ <<<"$row"
    want_tr[$kind]=1
done

for ((round = 0; round < REPEAT; round++)); do
    # With --cache=writeback the image is read from the page cache by every
    # server alike: all of it is in there before each round.
    [[ $CACHE == writeback ]] && cat disk.qcow2 >/dev/null
    if [[ -n ${want_tr[fio]:-} || -n ${want_tr[nbdcopy]:-} ]]; then
        for tr in $TRANSPORTS; do
            n=${#SERVERS[@]}
            for ((k = 0; k < n; k++)); do
                srv=${SERVERS[(k + round) % n]}
                start_server "$srv" "$tr"
                for row in "${ROWS[@]}"; do
                    IFS='|' read -r label _ kind args <<<"$row"
                    case $kind in
                        fio) bench_fio "$(uri "$tr")" "$args" ;;
                        nbdcopy) run_copy "$tr" ;;
                        *) continue ;;
                    esac
                    echo "$label|$tr|$srv|$round|$RATE|$PER" >>results
                done
                bench_stop_server
            done
        done
    fi
    if [[ -n ${want_tr[convert]:-} ]]; then
        start_server qemu-nbd unix
        order=(qemu-img vdisk)
        ((round % 2)) && order=(vdisk qemu-img)
        for tool in "${order[@]}"; do
            run_convert "$tool"
            echo "convert (client)|unix|$tool|$round|$RATE|$PER" >>results
        done
        bench_stop_server
        if ((round == 0)) && ! qemu-img compare -q -f raw -F raw out-qemu-img out-vdisk; then
            die "convert: vdisk's output differs from qemu-img's"
        fi
        rm -f out-qemu-img out-vdisk
    fi
    echo "round $((round + 1)) of $REPEAT done (load average $(cut -d' ' -f1 /proc/loadavg))"
done
echo

# col LABEL TRANSPORT SERVER FIELD [ROUND]: the values (5 rate, 6 per).
col() {
    awk -F'|' -v l="$1" -v t="$2" -v s="$3" -v f="$4" -v r="${5:-}" \
        '$1 == l && $2 == t && $3 == s && (r == "" || $4 == r) { print $f }' results
}

line() { printf '%-18s %-4s %9s %9s %9s %7s %7s %8s %8s %8s  %s\n' "$@"; }
line "row" "" "vdisk" "qemu-nbd" "qsd" "ratio" "target" "vdisk" "qemu-nbd" "qsd" "per-round ratios"
line "" "" "" "" "" "" "" "CPU" "CPU" "CPU" "(vdisk / faster peer)"
line "---" "" "-----" "--------" "---" "-----" "------" "---" "---" "---" "----------------"
nbelow=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label target kind _ <<<"$row"
    trs=$TRANSPORTS
    peers=(qemu-nbd)
    ((QSD)) && peers+=(qsd)
    if [[ $kind == convert ]]; then
        trs=unix
        peers=(qemu-img)
    fi
    for tr in $trs; do
        ratios=()
        for ((round = 0; round < REPEAT; round++)); do
            v=$(col "$label" "$tr" vdisk 5 "$round")
            best=0
            for p in "${peers[@]}"; do
                x=$(col "$label" "$tr" "$p" 5 "$round")
                awk -v a="$x" -v b="$best" 'BEGIN { exit !(a > b) }' && best=$x
            done
            ratios+=("$(ratio "$v" "$best")")
        done
        r=$(median %.2f "${ratios[@]}")
        mark=""
        if below "$r" "$target"; then
            mark="<"
            nbelow=$((nbelow + 1))
        fi
        # shellcheck disable=SC2046 # the lists are meant to be split
        if [[ $kind == convert ]]; then
            line "$label" "$tr" "$(median %.0f $(col "$label" "$tr" vdisk 5))" \
                "$(median %.0f $(col "$label" "$tr" qemu-img 5))" "" "$r$mark" ">=$target" \
                "$(median %.2f $(col "$label" "$tr" vdisk 6))" "$(median %.2f $(col "$label" "$tr" qemu-img 6))" "" \
                "${ratios[*]}"
        else
            qsd_rate=- qsd_cpu=-
            if ((QSD)); then
                qsd_rate=$(median %.0f $(col "$label" "$tr" qsd 5))
                qsd_cpu=$(median %.2f $(col "$label" "$tr" qsd 6))
            fi
            line "$label" "$tr" "$(median %.0f $(col "$label" "$tr" vdisk 5))" \
                "$(median %.0f $(col "$label" "$tr" qemu-nbd 5))" "$qsd_rate" "$r$mark" ">=$target" \
                "$(median %.2f $(col "$label" "$tr" vdisk 6))" "$(median %.2f $(col "$label" "$tr" qemu-nbd 6))" \
                "$qsd_cpu" "${ratios[*]}"
        fi
    done
done

echo
echo "Rates: IOPS for the 4k rows, MiB/s for the others (fio --ioengine=nbd, one"
echo "connection; nbdcopy with its defaults).  Server CPU: utime + stime of the"
echo "server process over the run, in us per request for the fio rows and ms per"
echo "MiB for nbdcopy.  The convert row: qemu-img is the peer (-m 16 -W), the"
echo "export is served by qemu-nbd, the rates are MiB/s and the CPU is the"
echo "converting tool's own, ms per MiB.  Ratio: the median of the per-round"
echo "ratios of vdisk's rate to the faster peer's (above 1: vdisk is faster)."
if ((nbelow)); then
    echo "vdisk is below its target on $nbelow row(s) (marked <)."
else
    echo "vdisk meets its target on every row."
fi
