#!/usr/bin/env bash
# tests/nbd/fio.sh VDISK: `vdisk nbd` driven by fio's nbd engine (libnbd),
# many requests in flight, over a Unix socket and TCP on 127.0.0.1: random
# writes of mixed sizes with checksums that fio verifies when it reads them
# back, then sequential reads; the qcow2 image behind the export is then
# checked clean by qemu-img and vdisk, and holds what fio wrote (qemu-img
# compare against an export of it by qemu-nbd is not needed: fio's own
# verification read the bytes through vdisk nbd, and qemu-img reads the
# image directly here).
set -euo pipefail
VDISK_TEST_NAME=${VDISK_TEST_NAME:-nbd-fio}
# shellcheck source=SCRIPTDIR/../common/skip.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/skip.sh"

VDISK=$(realpath "$1")
for t in fio qemu-img; do
  command -v "$t" >/dev/null || skip_test "$t is not installed"
done
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip_test "fio has no nbd engine"

W=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-nbd-fio.XXXXXX")
cleanup() {
  [ ! -s "$W/nbd.pid" ] || kill "$(cat "$W/nbd.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
fail() {
  echo "FAIL: $*"
  exit 1
}

# serve ARGS...: vdisk nbd in the background on disk.qcow2 (pid in nbd.pid).
serve() {
  rm -f nbd.pid
  "$VDISK" nbd -t -f qcow2 -x disk --fork --pid-file "$W/nbd.pid" "$@" disk.qcow2 ||
    fail "vdisk nbd $*"
}
stop() {
  local pid
  pid=$(cat nbd.pid)
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  fail "vdisk nbd did not stop"
}

for transport in unix tcp; do
  rm -f disk.qcow2
  "$VDISK" create -q -f qcow2 disk.qcow2 64M
  if [ "$transport" = unix ]; then
    serve -k "$W/s.sock"
    uri="nbd+unix:///disk?socket=$W/s.sock"
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    serve -b 127.0.0.1 -p "$port"
    uri="nbd://127.0.0.1:$port/disk"
  fi
  # Random writes of 4 KiB to 256 KiB, 32 in flight, each block with a
  # checksum and its offset; fio reads every block back and checks it.
  timeout -k 5 120 fio --name=w --ioengine=nbd --uri="$uri" --rw=randwrite \
    --bsrange=4k-256k --iodepth=32 --size=48M --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --randrepeat=1 --output=fio-w.txt >/dev/null 2>&1 ||
    fail "fio random writes with verification over $transport: $(tail -20 fio-w.txt)"
  timeout -k 5 120 fio --name=r --ioengine=nbd --uri="$uri" --rw=read --bs=1M \
    --iodepth=8 --size=64M --output=fio-r.txt >/dev/null 2>&1 ||
    fail "fio sequential reads over $transport: $(tail -20 fio-r.txt)"
  grep -q "err= 0" fio-w.txt || fail "fio reported errors: $(cat fio-w.txt)"
  stop
  qemu-img check -q -f qcow2 disk.qcow2 || fail "qemu-img check after fio over $transport"
  "$VDISK" check -f qcow2 disk.qcow2 >/dev/null || fail "vdisk check after fio over $transport"
  [ "$(qemu-img map -f qcow2 --output=json disk.qcow2 | grep -c '"data": true')" -gt 0 ] ||
    fail "nothing written over $transport"
  echo "fio over $transport: random writes verified, sequential reads, image clean"
done
echo PASS
