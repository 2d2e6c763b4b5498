#!/usr/bin/env bash
# nbd-scale: many NBD clients on one machine, each in a network namespace of
# its own, reading one golden qcow2 chain that `vdisk nbd` exports read-only
# (multi-conn) from another namespace, while the server is killed (SIGKILL)
# and started again (issue 18 item 4).
#
#   scale-netns.sh VDISK WORKDIR [CLIENTS [DOWN]]
#
# (CLIENTS: 8 by default; DOWN: how long the server stays down, 1 s by
# default, to be kept well inside the reconnect's 5.5 s.)
#
# The network: a namespace holding a bridge, and one namespace for the
# server and for each client, each joined to the bridge by a veth pair
# made inside the namespaces (nothing is added to the host's namespace).
# Addresses are 10.200.0.0/24 inside them alone, with no default route
# and no IPv6; every namespace, link and process is removed on exit,
# failure or signal.
#
# The golden chain: base.qcow2 (0x11 everywhere) under mid.qcow2 (a 1 MiB
# stripe of 0x40+i in each client's 2 MiB, and 1 MiB of zeroes), served as
# nbd://10.200.0.1/golden (`vdisk nbd -r -e N -t`).  Each client makes a
# qcow2 overlay over that URI (backing format raw: the export is the
# chain's virtual disk) and runs one long `vdisk io` over it: in each round
# an 8 KiB write in the middle of a fresh cluster of its own stripe (the
# qcow2 copy-on-write reads the rest of the cluster from the server), a
# pattern-checked read of the next, untouched cluster (backing data), and
# pattern-checked reads of the write and of its copied neighbourhood.
# Rounds go on (reads alone once the clusters kept for them are used)
# until the server has been restarted, so every client has I/O waiting on
# the server when it dies.  After a few rounds of every client the server
# is killed and started again on the same port while the clients are
# waiting on it (and killed and started again once more as they
# reconnect): the nbd protocol driver (formats/nbd/nbd.c) reconnects (8
# attempts, 0.1 s doubling to 1 s between them: 5.5 s in all) and sends
# the unanswered commands again; each client does a few write rounds
# more.  Meanwhile, from the first two clients' namespaces, `vdisk bench`
# reads the export itself, 16 random 64 KiB reads at once, run after run
# until one that began after the restart has ended (the server dies under
# one of them, with many commands in flight): every run must succeed.
# Then every `vdisk io` must have succeeded with no pattern
# mismatch, every overlay must pass `vdisk check` and `qemu-img check`,
# and each overlay read whole by `vdisk convert` and by `qemu-img convert`
# must equal the expected bytes (golden.raw with the client's writes put
# in by qemu-io), as must the export read by nbdcopy (multi-conn) after
# the restart.
#
# Needs root, iproute2 (ip netns), qemu-img, qemu-io and nbdcopy: without
# them it exits 77 (a failure in CI unless tests/ci-skips.txt allows it).
# Every wait is bounded, and a watchdog ends the whole test after
# $VDISK_SCALE_LIMIT seconds (100); it takes about 20 s (80 s under
# ThreadSanitizer).  VDISK_SCALE_KEEP=1 keeps the files of a run that
# passed (those of a failed run are always kept).
set -euo pipefail
export VDISK_TEST_NAME=${VDISK_TEST_NAME:-nbd-scale}
# The overlays' backing files are nbd:// exports named in their headers,
# which vdisk follows only when allowed (backing-allow-network).
export VDISK_BACKING_ALLOW_NETWORK=on
# shellcheck source=tests/common/skip.sh
. "$(dirname "$0")/../common/skip.sh"

vdisk=${1:?usage: scale-netns.sh VDISK WORKDIR [CLIENTS [DOWN]]}
workdir=${2:?usage: scale-netns.sh VDISK WORKDIR [CLIENTS [DOWN]]}
nclients=${3:-8}
down=${4:-1}
vdisk=$(cd "$(dirname "$vdisk")" && pwd)/$(basename "$vdisk")

[ "$(id -u)" = 0 ] || skip_test "needs root (network namespaces)"
command -v ip >/dev/null || skip_test "ip (iproute2) is not installed"
for t in qemu-img qemu-io nbdcopy timeout cmp; do
  command -v "$t" >/dev/null || skip_test "$t is not installed"
done

MIB=$((1 << 20))
CL=65536                  # the overlays' cluster size
STRIPE=$((2 * MIB))       # each client's part of the disk
SIZE=$((nclients * STRIPE + 2 * MIB))
ZERO_OFF=$((nclients * STRIPE)) # 1 MiB of zeroes in mid.qcow2
MIN_ROUNDS=4              # rounds of every client before the kill
POST_ROUNDS=6             # rounds of each client after the restart
MAX_ROUNDS=$((STRIPE / CL - 2)) # write rounds (the last cluster is never written)
PORT=10809
SRV_IP=10.200.0.1
EXPORT=golden
URI=nbd://$SRV_IP:$PORT/$EXPORT

tag=vdscale$$
sw=$tag-sw
srv=$tag-srv
namespaces=()
dir=$workdir/run-$$
pids=()

cleanup() {
  local rc=$? ns p
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do
    # shellcheck disable=SC2046 # the children's ids, if any
    kill -9 $(pgrep -P "$p") "$p" 2>/dev/null || true
  done
  for ns in "${namespaces[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do
      kill -9 "$p" 2>/dev/null || true
    done
  done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ "$rc" = 0 ] && [ -z "${VDISK_SCALE_KEEP:-}" ]; then
    rm -rf "$dir"
  else
    echo "(the files are kept in $dir)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "FAIL: terminated (or over the time limit)"; exit 143' TERM
# The whole test within 100 s (CTest's limit is 120 s, and CTest's kill
# would leave the namespaces behind): the watchdog's TERM runs cleanup.
(
  sleep "${VDISK_SCALE_LIMIT:-100}"
  kill -TERM $$ 2>/dev/null
) </dev/null >/dev/null 2>&1 &
pids+=($!)
disown $! # no "Killed" line for it at the end

fail() {
  echo "FAIL: $*"
  exit 1
}

t0=$(date +%s.%N)
# phase WHAT: a line with the time since the start.
phase() {
  echo "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.2f", b - a }') s: $*"
}

# nsx NS CMD...: CMD inside the namespace NS, bounded to 60 s.
nsx() {
  local ns=$1
  shift
  timeout -k 5 60 ip netns exec "$ns" "$@"
}

# ---- The network -------------------------------------------------------------

mkdir -p "$dir"
if ! ip netns add "$sw" 2>"$dir/netns.err"; then
  skip_test "cannot make a network namespace: $(head -c 200 "$dir/netns.err")"
fi
namespaces+=("$sw")
nsx "$sw" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up

# join NS INDEX ADDR: NS, a new namespace, gets eth0 with ADDR/24, its peer
# on the bridge.
join() {
  local ns=$1 k=$2 addr=$3
  ip netns add "$ns"
  namespaces+=("$ns")
  nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$sw" link add "p$k" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "p$k" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}
join "$srv" 0 "$SRV_IP"
for ((i = 0; i < nclients; i++)); do
  join "$tag-c$i" $((i + 1)) "10.200.0.$((10 + i))"
done
# Nothing leads out: no namespace has a default route.
for ns in "${namespaces[@]}"; do
  if ip -n "$ns" route show default | grep -q .; then
    fail "namespace $ns has a default route"
  fi
done

phase "network: $((nclients + 2)) namespaces"

# ---- The golden chain and what every byte should be -------------------------

# fill FILE OFFSET LENGTH BYTE: LENGTH bytes of BYTE at OFFSET of FILE.
fill() {
  head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" |
    dd of="$1" bs=64k iflag=fullblock oflag=seek_bytes seek="$2" conv=notrunc status=none
}

# golden_byte OFFSET: the golden chain's byte at OFFSET, in $gb.
golden_byte() {
  local off=$1
  if ((off >= ZERO_OFF && off < ZERO_OFF + MIB)); then
    gb=0
  elif ((off < ZERO_OFF && off % STRIPE >= MIB && off % STRIPE < 2 * MIB)); then
    gb=$((0x40 + off / STRIPE))
  else
    gb=$((0x11))
  fi
}

cd "$dir"
timeout 60 "$vdisk" create -q -f qcow2 base.qcow2 "$SIZE"
timeout 60 "$vdisk" io -f qcow2 -c "write -P 0x11 0 $SIZE" base.qcow2 >/dev/null
timeout 60 "$vdisk" create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
head -c "$SIZE" /dev/zero | tr '\0' '\021' >golden.raw
cmds=()
for ((i = 0; i < nclients; i++)); do
  cmds+=(-c "write -P $((0x40 + i)) $((i * STRIPE + MIB)) $MIB")
  fill golden.raw $((i * STRIPE + MIB)) "$MIB" $((0x40 + i))
done
cmds+=(-c "write -z $ZERO_OFF $MIB")
fill golden.raw "$ZERO_OFF" "$MIB" 0
timeout 60 "$vdisk" io -f qcow2 "${cmds[@]}" mid.qcow2 >/dev/null
timeout 60 qemu-img compare -f qcow2 -F raw mid.qcow2 golden.raw >/dev/null ||
  fail "the golden chain does not hold the expected bytes"

phase "golden chain made"

# ---- The server --------------------------------------------------------------

start_server() {
  rm -f server.pid
  # --fork returns once the server listens.
  nsx "$srv" "$vdisk" nbd -r -e 64 -t -f qcow2 -b "$SRV_IP" -p "$PORT" -x "$EXPORT" \
    --fork --pid-file="$dir/server.pid" "$dir/mid.qcow2" >>server.log 2>&1 ||
    fail "vdisk nbd did not start: $(tail -5 server.log)"
  server_pid=$(cat server.pid)
  pids+=("$server_pid")
}
start_server

# ---- The clients -------------------------------------------------------------

for ((i = 0; i < nclients; i++)); do
  nsx "$tag-c$i" "$vdisk" create -q -f qcow2 -b "$URI" -F raw "c$i.qcow2" ||
    fail "client $i: vdisk create over $URI failed"
done

phase "server up, $nclients overlays made"

# feed I: client I's commands, one round at a time, each round once `vdisk
# io` has answered the previous one (read from the FIFO cI.out, copied to
# cI.log; every wait bounded).  A write round: an 8 KiB write into the next
# fresh cluster and the checked reads described above; its count goes to
# cI.rounds.  Until the server has been restarted the client never stops:
# once it has used the clusters kept for before the restart it goes on
# with read rounds (checked reads of backing data: of the mid image's
# stripe and zeroes, and of its own last write).  After the restart it does
# POST_ROUNDS write rounds more, then flushes and quits.
feed() {
  local i=$1 r=0 post=0 base=$(($1 * STRIPE)) w p line sent=0 nd=0 deadline
  local end=$((SECONDS + 80))
  exec 3>"c$i.log"
  while ((SECONDS < end)); do
    if [ -e restarted ]; then
      ((post < POST_ROUNDS)) || break
      post=$((post + 1))
    fi
    if ((post > 0 || r < MAX_ROUNDS - POST_ROUNDS)); then
      w=$((base + r * CL))
      p=$((0x80 + (i * 13 + r) % 120))
      echo "write -P $p $((w + 4096)) 8192"
      golden_byte $((w + CL))
      echo "read -P $gb $((w + CL)) $CL"
      golden_byte "$w"
      echo "read -P $gb $w 4096"
      echo "read -P $p $((w + 4096)) 8192"
      sent=$((sent + 4))
      r=$((r + 1))
    else
      w=$((base + STRIPE - CL))
      golden_byte "$w"
      echo "read -P $gb $w $CL"
      echo "read -P 0 $((ZERO_OFF + i * CL)) $CL"
      w=$((base + (r - 1) * CL))
      echo "read -P $((0x80 + (i * 13 + r - 1) % 120)) $((w + 4096)) 8192"
      sent=$((sent + 3))
    fi
    deadline=$((SECONDS + 30))
    while ((nd < sent)); do
      if ! IFS= read -r -t 30 line; then
        echo "client $i: no answer from vdisk io in 30 s" >&2
        return 1
      fi
      echo "$line" >&3
      if [[ $line =~ ^(read|wrote)\ [0-9]+/ || $line =~ ^[a-z]+\ failed: ]]; then
        nd=$((nd + 1))
      fi
      ((SECONDS < deadline)) || { echo "client $i: no progress in 30 s" >&2; return 1; }
    done
    echo "$r" >"c$i.rounds"
  done
  ((post == POST_ROUNDS)) || echo "client $i: the server was not restarted in time" >&2
  echo flush
  echo quit
  while IFS= read -r -t 30 line; do
    echo "$line" >&3
  done
}

for ((i = 0; i < nclients; i++)); do
  mkfifo "c$i.out"
  # shellcheck disable=SC2094 # cI.out is a FIFO: vdisk io's answers to feed
  feed "$i" <"c$i.out" 2>"c$i.feed.err" |
    timeout -k 5 90 ip netns exec "$tag-c$i" "$vdisk" io -f qcow2 "c$i.qcow2" \
      >"c$i.out" 2>"c$i.err" &
  pids+=($!)
  client_pids[i]=$!
done

# bench I: in client I's namespace, `vdisk bench` reads the export itself
# (random 64 KiB reads, 16 at once on one connection) over and over, until
# a run that began after the restart has ended: the server dies under one
# of them with many commands in flight.
# A run that starts while the server is down, or whose handshake the kill
# cuts short, cannot open the export (an open connects once, as QEMU's
# does): it starts again; one that fails after its open is a failure.
bench() {
  local i=$1 runs=0 after=0 refused=0
  while ((after < 2 && runs < 300)); do
    [ -e restarted ] && after=$((after + 1))
    if ! nsx "$tag-c$i" "$vdisk" bench -f raw -c 2000 -d 16 -s 64k --random=$runs "$URI" \
      >"b$i.run" 2>&1; then
      cat "b$i.run" >>"b$i.log"
      if grep -q -E "^vdisk: Could not open .*(Connection refused|Connection reset by peer|Broken pipe|disconnected unexpectedly|closed socket unexpectedly)" "b$i.run" &&
        ((refused++ < 100)); then
        sleep 0.1
        continue
      fi
      echo "client $i: vdisk bench run $runs failed"
      return 1
    fi
    cat "b$i.run" >>"b$i.log"
    runs=$((runs + 1))
  done
  echo "$runs" >"b$i.runs"
}
bench_pids=()
for ((i = 0; i < nclients && i < 2; i++)); do
  bench "$i" >"b$i.fail" 2>&1 &
  pids+=($!)
  bench_pids[i]=$!
done

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out ($what)"
    sleep 0.05
  done
}
all_rounds() {
  local i n
  for ((i = 0; i < nclients; i++)); do
    n=0
    [ -e "c$i.rounds" ] && read -r n <"c$i.rounds"
    ((${n:-0} >= $1)) || return 1
  done
}
wait_for "every client's first $MIN_ROUNDS rounds" 60 all_rounds "$MIN_ROUNDS"

phase "every client did $MIN_ROUNDS rounds"

# ---- Kill the server in the middle and start it again -------------------------

# Gone: no such process, or a zombie (the forked server is not our child).
gone() {
  local st
  st=$(awk '{ print $3 }' "/proc/$server_pid/stat" 2>/dev/null) || return 0
  [ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}
kill -9 "$server_pid"
wait_for "the killed server to go" 10 gone
phase "server killed"
sleep "$down" # the clients' commands meet a dead server: they reconnect
start_server
phase "server started again"
# Once more at once, as the clients are reconnecting (some in the middle
# of their handshake): the reconnect goes on with its next attempt.
sleep 0.05
kill -9 "$server_pid"
wait_for "the killed server to go" 10 gone
start_server
touch restarted
phase "server killed as the clients reconnected, and started again"

# The export after the restart, read with several connections (multi-conn).
nsx "$tag-c0" nbdcopy --connections=4 "$URI" golden-copy.raw ||
  fail "nbdcopy of the restarted export failed"
cmp golden.raw golden-copy.raw || fail "the restarted export does not hold the golden bytes"
phase "nbdcopy (multi-conn) of the restarted export: the golden bytes"

fail=0
for ((i = 0; i < nclients; i++)); do
  rc=0
  wait "${client_pids[i]}" || rc=$?
  rounds=$(cat "c$i.rounds" 2>/dev/null || echo 0)
  if [ "$rc" != 0 ] || grep -q "Pattern verification failed" "c$i.log" || [ -s "c$i.feed.err" ]; then
    echo "FAIL: client $i: vdisk io exited $rc after $rounds rounds"
    grep -v -E '^(read|wrote) |ops/sec' "c$i.log" | head -5 || true
    head -5 "c$i.err" "c$i.feed.err" || true
    fail=1
  fi
  if ((rounds < MIN_ROUNDS + POST_ROUNDS)); then
    echo "FAIL: client $i did only $rounds rounds"
    fail=1
  fi
done
for i in "${!bench_pids[@]}"; do
  if ! wait "${bench_pids[i]}"; then
    cat "b$i.fail"
    tail -5 "b$i.log"
    fail=1
  fi
done
[ "$fail" = 0 ] || exit 1
runs=0
for i in "${!bench_pids[@]}"; do
  read -r n <"b$i.runs"
  runs=$((runs + n))
done
phase "every client done (and $runs vdisk bench runs)"

# What each overlay should hold: the golden bytes and the client's writes
# (written by qemu-io into a copy of golden.raw).
for ((i = 0; i < nclients; i++)); do
  cp golden.raw "c$i.expected"
  read -r rounds <"c$i.rounds"
  cmds=()
  for ((r = 0; r < rounds; r++)); do
    cmds+=(-c "write -P $((0x80 + (i * 13 + r) % 120)) $((i * STRIPE + r * CL + 4096)) 8192")
  done
  timeout 60 qemu-io -f raw "${cmds[@]}" "c$i.expected" >/dev/null ||
    fail "qemu-io could not write c$i.expected"
done
phase "expected bytes of every overlay computed"

# ---- Every overlay checked, every byte compared --------------------------------

verify() {
  local i=$1 ns=$tag-c$1
  nsx "$ns" "$vdisk" check -f qcow2 "c$i.qcow2" >"c$i.check" 2>&1 ||
    { echo "client $i: vdisk check failed:"; cat "c$i.check"; return 1; }
  phase "client $i: vdisk check"
  nsx "$ns" qemu-img check -f qcow2 "c$i.qcow2" >"c$i.qcheck" 2>&1 ||
    { echo "client $i: qemu-img check failed:"; cat "c$i.qcheck"; return 1; }
  phase "client $i: qemu-img check"
  nsx "$ns" "$vdisk" convert -f qcow2 -O raw "c$i.qcow2" "c$i.vdisk.raw" ||
    { echo "client $i: vdisk convert failed"; return 1; }
  cmp "c$i.expected" "c$i.vdisk.raw" ||
    { echo "client $i: vdisk convert read wrong bytes"; return 1; }
  phase "client $i: vdisk convert"
  nsx "$ns" qemu-img convert -f qcow2 -O raw "c$i.qcow2" "c$i.qemu.raw" ||
    { echo "client $i: qemu-img convert failed"; return 1; }
  cmp "c$i.expected" "c$i.qemu.raw" ||
    { echo "client $i: qemu-img convert read wrong bytes"; return 1; }
  phase "client $i: qemu-img convert"
  rm -f "c$i.vdisk.raw" "c$i.qemu.raw"
}
vpids=()
for ((i = 0; i < nclients; i++)); do
  verify "$i" >"c$i.verify" 2>&1 &
  vpids[i]=$!
done
for ((i = 0; i < nclients; i++)); do
  if ! wait "${vpids[i]}"; then
    echo "FAIL: client $i:"
    cat "c$i.verify"
    fail=1
  fi
done
[ "$fail" = 0 ] || exit 1

kill -0 "$server_pid" 2>/dev/null || fail "the restarted server died"
cat c0.verify
phase "nbd-scale: ok ($nclients clients; every overlay checked and compared)"
