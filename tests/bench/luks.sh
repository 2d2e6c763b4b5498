#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tests/bench/luks.sh: encrypted images (issue 23: "encrypted 4 KiB random
# reads/writes and convert at >= 1.2x qemu-img, using AES-NI through the
# library"), vdisk against QEMU side by side in one run, in interleaved
# rounds, on the same images: a qcow2 with encrypt.format=luks and a raw
# LUKS image, both AES-256-XTS-plain64 (qemu-img's default cipher), full of
# random data (every cluster allocated).
#
# usage: tests/bench/luks.sh [VDISK]
#
#   VDISK            the vdisk binary (default: $VDISK, else ./build/tools/vdisk)
#
# Environment:
#   BENCH_SIZE       the images' virtual size (default 512M)
#   BENCH_REPEAT     rounds; the medians are shown (default 3; 5 or more on
#                    a busy machine)
#   BENCH_SECS       seconds per fio run (default 2)
#   BENCH_ROWS       only the rows whose label matches this extended regular
#                    expression (default: every row), e.g. 'randread|-> raw'
#   BENCH_DIR        where the scratch directory goes (default /var/tmp)
#
# First a check that the AES-NI code of GnuTLS does the encryption: vdisk's
# user CPU encrypting the image, as it runs and with GNUTLS_CPUID_OVERRIDE=0x1
# (GnuTLS's generic AES).
#
# 4 KiB random I/O.  qemu-img bench cannot open an encrypted image: in 7.2
# it takes --image-opts but no --object, and the key-secret option of an
# encrypted image names a secret object ("No secret with id 's0'").  So
# both sides are driven by the same client, fio with its nbd engine (one
# connection, 4 KiB requests, 32 in flight, uniform random offsets over
# the whole disk), over a Unix socket, against the servers exporting the
# image with its passphrase:
#   vdisk     vdisk nbd -t -e 8 --cache=writeback --aio=io_uring -x disk
#             -k SOCK --object secret,id=s0,file=PW --image-opts
#             driver=FMT,file.filename=IMG,(encrypt.)key-secret=s0
#   qemu-nbd  qemu-nbd with the same arguments
#   qsd       qemu-storage-daemon --object secret,... --blockdev file
#             (cache.direct=off, aio=io_uring) --blockdev FMT
#             (encrypt.)key-secret=s0 --nbd-server --export writable=on
# The peers run at their fastest settings here (nbd.sh): the image in the
# page cache, io_uring.  Each server's CPU time (utime + stime from
# /proc/PID/stat over the run) is shown per request in us: on this 2-CPU
# machine fio takes one CPU, so the CPU per request says more than the rate
# when the machine is busy.
#
# Convert.  vdisk convert -W against qemu-img convert -m 16 -W (its fastest),
# both -t none (the target written with O_DIRECT, as convert.sh: through
# the page cache the time depends on the kernel's write-back), the source
# through the page cache.  Into encryption the target is made before each
# run (qemu-img create, untimed) and written with -n --target-image-opts:
# creating a LUKS header times PBKDF2 for a while (qemu-img about a second,
# vdisk less), which is not what the row measures.
#
# The rows and their targets (ratio: vdisk's rate / the faster peer's for
# fio, qemu-img time / vdisk time for convert; above 1: vdisk is faster):
#   qcow2-luks randread 4k QD32, qcow2-luks randwrite 4k QD32,
#   luks randread 4k QD32, luks randwrite 4k QD32        IOPS  >= 1.20
#   raw -> qcow2-luks, qcow2-luks -> raw, raw -> luks, luks -> raw
#                                                        time  >= 1.20
#
# In each round every server runs once per image, in an order that rotates
# from round to round, and each convert runs once per tool (qemu-img first
# in even rounds); the first round's outputs are compared.  Installs
# nothing.  Exits 77 (skipped) when fio (with its nbd engine), qemu-nbd,
# qemu-img or nbdinfo is missing; qemu-storage-daemon is optional (its
# column says "-").  Needs about 5 times BENCH_SIZE free in BENCH_DIR.
# Takes about 4 minutes with the defaults (2 CPUs).
set -euo pipefail

VDISK=${1:-${VDISK:-./build/tools/vdisk}}
SIZE=${BENCH_SIZE:-512M}
REPEAT=${BENCH_REPEAT:-3}
SECS=${BENCH_SECS:-2}
BASE_DIR=${BENCH_DIR:-/var/tmp}

die() { echo "luks.sh: $*" >&2; exit 1; }
skip() { echo "luks.sh: $*; skipping the benchmark" >&2; exit 77; }

for tool in fio qemu-nbd qemu-img nbdinfo; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "fio has no nbd engine"
QSD=1
command -v qemu-storage-daemon >/dev/null 2>&1 || QSD=0
[[ -x $VDISK ]] || die "no vdisk binary at '$VDISK' (give it as argument 1 or in \$VDISK)"
VDISK=$(cd "$(dirname "$VDISK")" && pwd)/$(basename "$VDISK")
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECS must be a positive number"
SIZE_BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || die "BENCH_SIZE: not a size: $SIZE"
((SIZE_BYTES >= 64 * 1048576 && SIZE_BYTES % 1048576 == 0)) ||
    die "BENCH_SIZE must be a multiple of 1M, at least 64M"
TIME=/usr/bin/time
if ! [[ -x $TIME ]] || ! $TIME -f %M true >/dev/null 2>&1; then TIME=; fi

. "$(dirname "$0")/lib.sh"
bench_scratch luks $((SIZE_BYTES * 5 / 1024 + 65536))
SOCK=$SCRATCH/nbd.sock
HZ=$(getconf CLK_TCK)
printf 'bench passphrase' >pw
OBJ=(--object "secret,id=s0,file=$SCRATCH/pw")

# ---- The images --------------------------------------------------------------
# qemu-img's creates may fail while timing PBKDF2 on a busy machine
# ("Unable to get accurate CPU usage"): tried again.
qemu_create() {
    local try
    for ((try = 0; try < 10; try++)); do
        "$@" >"$LOG" 2>&1 && return 0
        grep -q "accurate CPU" "$LOG" || break
    done
    cat "$LOG" >&2
    die "failed: $*"
}
# ENC_OPTS FMT: qemu-img's -o for an encrypted image of FMT.
enc_opts() {
    if [[ $1 == qcow2 ]]; then
        echo "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"
    else
        echo "key-secret=s0,iter-time=10"
    fi
}
# IMAGE_OPTS FMT FILE: the encrypted image as --image-opts.
image_opts() {
    local ks=key-secret
    [[ $1 == qcow2 ]] && ks=encrypt.key-secret
    echo "driver=$1,file.driver=file,file.filename=$2,$ks=s0"
}
{ head -c "$SIZE_BYTES" /dev/urandom || true; } >src.raw
qemu_create qemu-img convert "${OBJ[@]}" -f raw -O qcow2 -o "$(enc_opts qcow2)" src.raw disk.qcow2
qemu_create qemu-img convert "${OBJ[@]}" -f raw -O luks -o "$(enc_opts luks)" src.raw disk.luks
qemu-img check -q "${OBJ[@]}" --image-opts "$(image_opts qcow2 disk.qcow2)" ||
    die "qemu-img check fails on the image"
sync

# ---- Servers -----------------------------------------------------------------
URI="nbd+unix:///disk?socket=$SOCK"

# start_server NAME FMT: starts it on disk.FMT and waits until it answers;
# sets SERVER_PID.
start_server() {
    local name=$1 f=$2 cmd i ks=key-secret
    # (blockdev's qcow2 wants the encryption format named as well)
    [[ $f == qcow2 ]] && ks=encrypt.format=luks,encrypt.key-secret
    rm -f "$SOCK"
    case $name in
        vdisk | qemu-nbd)
            cmd=(qemu-nbd)
            [[ $name == vdisk ]] && cmd=("$VDISK" nbd)
            cmd+=(-t -e 8 --cache=writeback --aio=io_uring -x disk -k "$SOCK" "${OBJ[@]}"
                --image-opts "$(image_opts "$f" "disk.$f")")
            ;;
        qsd)
            cmd=(qemu-storage-daemon "${OBJ[@]}"
                --blockdev "driver=file,node-name=file0,filename=disk.$f,cache.direct=off,aio=io_uring"
                --blockdev "driver=$f,node-name=disk0,file=file0,$ks=s0"
                --nbd-server "addr.type=unix,addr.path=$SOCK,max-connections=8"
                --export "type=nbd,id=exp0,node-name=disk0,name=disk,writable=on")
            ;;
    esac
    "${cmd[@]}" >"$SCRATCH/server.log" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        if nbdinfo --size "$URI" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$SCRATCH/server.log" >&2
    die "$name does not serve: ${cmd[*]}"
}

# run_convert TOOL KIND SFMT: one convert; KIND enc (src.raw into a new
# encrypted image of SFMT, made beforehand) or dec (disk.SFMT into raw);
# RATE in MiB/s, PER the tool's CPU ms per MiB.
run_convert() {
    local tool=$1 kind=$2 f=$3 t0 t1 cmd out
    out=out-$tool
    cmd=("$VDISK" convert -W)
    [[ $tool == qemu-img ]] && cmd=(qemu-img convert -m 16 -W)
    rm -f "$out"
    if [[ $kind == enc ]]; then
        qemu_create qemu-img create "${OBJ[@]}" -f "$f" -o "$(enc_opts "$f")" "$out" "$SIZE_BYTES"
        cmd+=(-t none "${OBJ[@]}" -n -f raw --target-image-opts src.raw "$(image_opts "$f" "$out")")
    else
        cmd+=(-t none "${OBJ[@]}" --image-opts -O raw "$(image_opts "$f" "disk.$f")" "$out")
    fi
    sync
    t0=$EPOCHREALTIME
    if [[ -n $TIME ]]; then
        $TIME -f '%U %S' -o "$SCRATCH/time" "${cmd[@]}" >"$LOG" 2>&1 ||
            { cat "$LOG" >&2; die "failed: ${cmd[*]}"; }
    else
        "${cmd[@]}" >"$LOG" 2>&1 || { cat "$LOG" >&2; die "failed: ${cmd[*]}"; }
        echo "- -" >"$SCRATCH/time"
    fi
    t1=$EPOCHREALTIME
    read -r RATE PER < <(awk -v a="$t0" -v b="$t1" -v s="$SIZE_BYTES" '
        { mib = s / 1048576; printf "%.0f %s\n", mib / (b - a), ($1 == "-" ? "-" : sprintf("%.3f", ($1 + $2) * 1e3 / mib)) }' \
        "$SCRATCH/time")
}

# The first round's outputs of a convert row are the same.
same_outputs() {
    local kind=$1 f=$2
    if [[ $kind == enc ]]; then
        qemu-img compare -q "${OBJ[@]}" --image-opts "driver=raw,file.filename=src.raw" \
            "$(image_opts "$f" out-vdisk)" || die "raw -> $f: vdisk's image does not read as the source"
        qemu-img compare -q "${OBJ[@]}" --image-opts "driver=raw,file.filename=src.raw" \
            "$(image_opts "$f" out-qemu-img)" || die "raw -> $f: qemu-img's image does not read as the source"
    else
        # (the randwrite rows changed the image: the outputs against each other)
        cmp -s out-vdisk out-qemu-img || die "$f -> raw: vdisk's output differs from qemu-img's"
    fi
}

# ---- Rows ----------------------------------------------------------------------
#   label|target|kind|format|args
ROWS=(
    "qcow2-luks randread 4k QD32|1.20|fio|qcow2|--rw=randread --bs=4k --iodepth=32"
    "qcow2-luks randwrite 4k QD32|1.20|fio|qcow2|--rw=randwrite --bs=4k --iodepth=32"
    "luks randread 4k QD32|1.20|fio|luks|--rw=randread --bs=4k --iodepth=32"
    "luks randwrite 4k QD32|1.20|fio|luks|--rw=randwrite --bs=4k --iodepth=32"
    "raw -> qcow2-luks|1.20|enc|qcow2|"
    "qcow2-luks -> raw|1.20|dec|qcow2|"
    "raw -> luks|1.20|enc|luks|"
    "luks -> raw|1.20|dec|luks|"
)
bench_pick_rows "${BENCH_ROWS:-}"
SERVERS=(vdisk qemu-nbd)
((QSD)) && SERVERS+=(qsd)

echo "encrypted images (AES-256-XTS-plain64): vdisk against qemu-nbd/qemu-storage-daemon (fio --ioengine=nbd over a Unix socket) and qemu-img convert; $SIZE of random data in $BASE_DIR ($(findmnt -no FSTYPE -T "$SCRATCH" 2>/dev/null | head -1 || echo "?"))"
echo "$("$VDISK" --version), $(qemu-img --version | head -1), $(fio --version)"
echo "kernel $(uname -r), $(nproc) CPUs ($(grep -qw aes /proc/cpuinfo && echo AES-NI || echo "no AES-NI")), load average $(cut -d' ' -f1-3 /proc/loadavg); $REPEAT rounds, $SECS s fio runs, medians shown"
echo

# AES-NI through the library: vdisk's user CPU time encrypting the image
# (raw -> luks) as it runs, and with GnuTLS's CPU-specific code turned off
# (GNUTLS_CPUID_OVERRIDE=0x1: its generic AES); the first well below the
# second says the AES-NI code does the work.
if [[ -n $TIME ]]; then
    aesni=()
    for o in "" 0x1; do
        rm -f aes.luks
        qemu_create qemu-img create "${OBJ[@]}" -f luks -o "$(enc_opts luks)" aes.luks "$SIZE_BYTES"
        env ${o:+GNUTLS_CPUID_OVERRIDE=$o} $TIME -f '%U' -o "$SCRATCH/time" "$VDISK" convert \
            "${OBJ[@]}" -n -f raw --target-image-opts src.raw "$(image_opts luks aes.luks)" \
            >"$LOG" 2>&1 || { cat "$LOG" >&2; die "the AES-NI check's convert failed"; }
        aesni+=("$(cat "$SCRATCH/time")")
    done
    rm -f aes.luks
    echo "AES-NI: vdisk convert raw -> luks takes ${aesni[0]} s of user CPU, ${aesni[1]} s with GnuTLS's generic AES (GNUTLS_CPUID_OVERRIDE=0x1)"
    echo
fi

# Results: "label|server or tool|round|rate|per" lines.
: >results
for ((round = 0; round < REPEAT; round++)); do
    cat disk.qcow2 disk.luks src.raw >/dev/null
    for f in qcow2 luks; do
        want=0
        for row in "${ROWS[@]}"; do
            IFS='|' read -r _ _ kind rf _ <<<"$row"
            [[ $kind == fio && $rf == "$f" ]] && want=1
        done
        ((want)) || continue
        n=${#SERVERS[@]}
        for ((k = 0; k < n; k++)); do
            srv=${SERVERS[(k + round) % n]}
            start_server "$srv" "$f"
            for row in "${ROWS[@]}"; do
                IFS='|' read -r label _ kind rf args <<<"$row"
                [[ $kind == fio && $rf == "$f" ]] || continue
                bench_fio "$URI" "$args"
                echo "$label|$srv|$round|$RATE|$PER" >>results
            done
            bench_stop_server
        done
    done
    for row in "${ROWS[@]}"; do
        IFS='|' read -r label _ kind f _ <<<"$row"
        [[ $kind == fio ]] && continue
        order=(qemu-img vdisk)
        ((round % 2)) && order=(vdisk qemu-img)
        for tool in "${order[@]}"; do
            run_convert "$tool" "$kind" "$f"
            echo "$label|$tool|$round|$RATE|$PER" >>results
        done
        ((round == 0)) && same_outputs "$kind" "$f"
        rm -f out-vdisk out-qemu-img
    done
    echo "round $((round + 1)) of $REPEAT done (load average $(cut -d' ' -f1 /proc/loadavg))"
done
echo

# col LABEL WHO FIELD [ROUND]: the values (4 rate, 5 per).
col() {
    awk -F'|' -v l="$1" -v s="$2" -v f="$3" -v r="${4:-}" \
        '$1 == l && $2 == s && (r == "" || $3 == r) { print $f }' results
}

line() { printf '%-30s %9s %9s %9s %7s %7s %8s %8s %8s  %s\n' "$@"; }
line "row" "vdisk" "qemu" "qsd" "ratio" "target" "vdisk" "qemu" "qsd" "per-round ratios"
line "" "" "" "" "" "" "CPU" "CPU" "CPU" "(vdisk / faster peer)"
line "---" "-----" "----" "---" "-----" "------" "---" "---" "---" "----------------"
nbelow=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label target kind _ <<<"$row"
    peers=(qemu-nbd)
    ((QSD)) && peers+=(qsd)
    [[ $kind == fio ]] || peers=(qemu-img)
    ratios=()
    for ((round = 0; round < REPEAT; round++)); do
        v=$(col "$label" vdisk 4 "$round")
        best=0
        for p in "${peers[@]}"; do
            x=$(col "$label" "$p" 4 "$round")
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
    q=qemu-nbd
    [[ $kind == fio ]] || q=qemu-img
    qsd_rate=- qsd_cpu=-
    if [[ $kind == fio ]] && ((QSD)); then
        # shellcheck disable=SC2046 # the lists are meant to be split
        qsd_rate=$(median %.0f $(col "$label" qsd 4))
        # shellcheck disable=SC2046
        qsd_cpu=$(median %.2f $(col "$label" qsd 5))
    fi
    # shellcheck disable=SC2046 # the lists are meant to be split
    line "$label" "$(median %.0f $(col "$label" vdisk 4))" "$(median %.0f $(col "$label" "$q" 4))" \
        "$qsd_rate" "$r$mark" ">=$target" "$(median %.2f $(col "$label" vdisk 5))" \
        "$(median %.2f $(col "$label" "$q" 5))" "$qsd_cpu" "${ratios[*]}"
done

echo
echo "Rates: IOPS for the fio rows (qemu: qemu-nbd; CPU: the server's utime +"
echo "stime, us per request), MiB/s for the convert rows (qemu: qemu-img convert"
echo "-m 16 -W; CPU: the tool's own, ms per MiB).  Ratio: the median of the"
echo "per-round ratios of vdisk's rate to the faster peer's (above 1: vdisk is"
echo "faster), against the row's target."
if ((nbelow)); then
    echo "vdisk is below its target on $nbelow row(s) (marked <)."
else
    echo "vdisk meets its target on every row."
fi
