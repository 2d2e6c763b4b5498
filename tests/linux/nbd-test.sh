#!/usr/bin/env bash
# A real Linux guest on a disk served by `vdisk nbd` (issue 18 item 3):
# Debian's cloud kernel boots in qemu-system-x86_64 (microvm, TCG) whose
# virtio-blk disk is QEMU's NBD client (-blockdev driver=nbd) on a Unix
# socket, where `vdisk nbd` exports a qcow2 image made by `vdisk create`.
# The guest's /init (tests/linux/init, vdisk.mode=fs) makes an ext2 file
# system on the first part of /dev/vda, copies into it the files the host
# put into the initramfs (random data, one of them of an odd size), writes
# numbers.txt and a tree of 200 small files, fsyncs every file and the file
# system, unmounts, drops the page cache, mounts again read-only and prints
# each file's sha256 as read from the device; then writes a raw pattern
# after the file system with O_DIRECT and fsync, and powers off.
#
# The host then stops `vdisk nbd` (SIGTERM: status 0), runs `vdisk check`
# and `qemu-img check` on the qcow2 image, converts it to raw with qemu-img
# and with vdisk (the two must be the same bytes), runs `e2fsck -fn` on it,
# takes the files out with debugfs and compares them byte for byte with the
# host's, and checks the pattern and the zeros around it.
#
# VDISK_TEST_BACKING=nbd (CTest linux-nbd-backing): the image is instead a
# qcow2 overlay whose backing file is nbd://127.0.0.1:PORT/base, an export
# of base.qcow2 (128 MiB of 0x5a) by a second `vdisk nbd` (read-only, over
# TCP on loopback): the README's overlay whose backing file is on another
# machine. What the guest did not write then reads 0x5a, from the backing
# file; the host also checks with `qemu-img map` that the overlay holds
# only what the guest wrote, and that base.qcow2 did not change.
#
# VDISK_TEST_DISK=rbd (CTest linux-rbd, run by tests/ceph/with-cluster.sh
# against a throw-away Ceph cluster: CEPH_CONF, VDISK_CEPH_POOL): the disk
# is instead an RBD image, rbd:POOL/linux-rbd (raw, by `vdisk create`),
# served by `vdisk serve --vhost-user-blk` to QEMU's vhost-user-blk device.
# The guest does the same; the host stops `vdisk serve` (SIGTERM: status
# 0), takes the image out of the pool with `rbd export`, with
# `vdisk convert` and with qemu-img's rbd driver (the same bytes), and
# runs the same checks on it.  The default, VDISK_TEST_DISK=nbd, is the
# NBD disk above.
#
#   nbd-test.sh VDISK [OUTDIR]
#
# VDISK is the vdisk CLI. OUTDIR (default ./linux-nbd) keeps the serial
# console log (serial.log), the server's log (nbd.log; serve.log for rbd)
# and the initramfs; the images are deleted at the end unless
# VDISK_TEST_KEEP=1 (the RBD image goes with the cluster).
# VDISK_TEST_TIMEOUT bounds the guest's run (240 s).
# Exits 77 (skipped) when qemu-system-x86_64, the guest kernel, e2fsprogs'
# debugfs and e2fsck, or `vdisk nbd` is missing (for rbd: `vdisk serve`,
# rbd).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vdisk=${1:?usage: nbd-test.sh VDISK [OUTDIR]}
out=${2:-$PWD/linux-nbd}
case "$vdisk" in */*) vdisk=$(cd "$(dirname "$vdisk")" && pwd)/$(basename "$vdisk") ;; esac # the script cd's
backing=${VDISK_TEST_BACKING:-none}
disk=${VDISK_TEST_DISK:-nbd}
case "$disk/$backing" in
  nbd/none) : "${VDISK_TEST_NAME:=linux-nbd}" ;; # its CTest name (tests/ci-skips.txt)
  nbd/nbd) : "${VDISK_TEST_NAME:=linux-nbd-backing}" ;;
  rbd/none) : "${VDISK_TEST_NAME:=linux-rbd}" ;;
  rbd/*) echo "nbd-test.sh: VDISK_TEST_DISK=rbd takes no backing file (VDISK_TEST_BACKING=none, not '$backing')" >&2; exit 2 ;;
  nbd/*) echo "nbd-test.sh: VDISK_TEST_BACKING must be none or nbd, not '$backing'" >&2; exit 2 ;;
  *) echo "nbd-test.sh: VDISK_TEST_DISK must be nbd or rbd, not '$disk'" >&2; exit 2 ;;
esac
if [ "$disk" = rbd ] && [ -z "${VDISK_CEPH_POOL:-}" ]; then
  echo "nbd-test.sh: VDISK_TEST_DISK=rbd needs a cluster: run it under tests/ceph/with-cluster.sh (VDISK_CEPH_POOL is not set)" >&2
  exit 2
fi
export VDISK_TEST_NAME
# The overlays' backing files are nbd:// exports named in their headers,
# which vdisk follows only when allowed (backing-allow-network).
export VDISK_BACKING_ALLOW_NETWORK=on

command -v qemu-system-x86_64 >/dev/null || skip_test "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
why=$(find_guest_kernel) || skip_test "$why"
find_guest_kernel
for tool in qemu-img cpio modinfo busybox; do
  command -v "$tool" >/dev/null || skip_test "$tool not found (scripts/install-deps.sh installs it)"
done
# e2fsprogs is in every Debian system, but /sbin may not be on a user's PATH.
PATH=$PATH:/sbin:/usr/sbin
for tool in debugfs e2fsck; do
  command -v "$tool" >/dev/null || skip_test "$tool not found (apt-get install e2fsprogs)"
done
if [ "$disk" = rbd ]; then
  command -v rbd >/dev/null || skip_test "rbd not found (apt-get install ceph-common)"
  "$vdisk" serve --help >/dev/null 2>&1 || skip_test "'vdisk serve' does not exist ($vdisk serve --help fails)"
else
  "$vdisk" nbd --help >/dev/null 2>&1 || skip_test "'vdisk nbd' does not exist ($vdisk nbd --help fails)"
fi
t() { timeout -k 5 120 "$@"; } # a bound for what talks to the cluster

new_work_dir "$out"
# Unix socket paths must be short (108 bytes): they live in /tmp.
base_pid=
sockdir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-nbd.XXXXXX")
cleanup() {
  kill_bg_all
  rm -rf "$sockdir"
  [ "${VDISK_TEST_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

echo "== $disk guest test: backing file '$backing', kernel $(readlink -f "$GUEST_KERNEL"), output in $out"
cd "$work"

# --- the disk and the files -------------------------------------------------
# 128 MiB: the file system in the first 96 MiB, then what the disk held up
# to 112 MiB, the pattern (8 MiB of 0xc3) and what the disk held to the end:
# zeros, or 0x5a from the backing file.
mib=1048576
disk_size=$((128 * mib))
fs_kib=$((96 * 1024))
pat_off=$((112 * mib))
pat_len=$((8 * mib))
pat_byte=195 # 0xc3
mkdir data
head -c $((5 * mib)) /dev/urandom >data/random.bin
head -c $((mib + 4097)) /dev/urandom >data/odd.bin # not a whole number of blocks
seq 1 50000 >numbers.txt
mkdir -p small/deeper
for i in $(seq 1 100); do
  echo "small file $i" >"small/f$i"
  echo "deeper file $i" >"small/deeper/g$i"
done
sha() { sha256sum "$1" | cut -d' ' -f1; }
if [ "$backing" = nbd ]; then
  fill=0x5a
  "$vdisk" create -q -f qcow2 base.qcow2 "$disk_size"
  "$vdisk" io -c "write -P $fill 0 $disk_size" base.qcow2 >/dev/null
  base_sum=$(sha base.qcow2)
  # The backing file's server, on a free port of 127.0.0.1: vdisk nbd
  # exits when it cannot listen; then another port is tried.
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    start_bg "$out/nbd-base.log" "$vdisk" nbd -v -b 127.0.0.1 -p "$port" -r -t -e 0 -x base -f qcow2 base.qcow2
    for _ in $(seq 1 200); do
      kill -0 "$BG_PID" 2>/dev/null || break
      if qemu-img info "nbd://127.0.0.1:$port/base" >/dev/null 2>&1; then base_pid=$BG_PID; break; fi
      sleep 0.05
    done
    [ -n "$base_pid" ] && break
    kill -KILL "$BG_PID" 2>/dev/null || true
    wait "$BG_PID" 2>/dev/null || true
    echo "   (port $port, try $try: $(tail -n1 "$out/nbd-base.log"))"
  done
  [ -n "$base_pid" ] || { echo "the backing file's vdisk nbd did not start:"; cat "$out/nbd-base.log"; exit 1; }
  BG_PIDS=("$base_pid") # not the tries that exited
  "$vdisk" create -q -f qcow2 -b "nbd://127.0.0.1:$port/base" -F raw disk.qcow2
  echo "   disk: disk.qcow2, a qcow2 overlay ($disk_size bytes) on nbd://127.0.0.1:$port/base (base.qcow2, $fill everywhere), file system $fs_kib KiB, pattern at $pat_off+$pat_len"
elif [ "$disk" = rbd ]; then
  fill=0
  rbd_name=$VDISK_CEPH_POOL/linux-rbd
  t "$vdisk" create -q -f raw "rbd:$rbd_name" "$disk_size"
  echo "   disk: rbd:$rbd_name ($disk_size bytes, raw by vdisk create; CEPH_CONF=$CEPH_CONF), file system $fs_kib KiB, pattern at $pat_off+$pat_len"
else
  fill=0
  "$vdisk" create -q -f qcow2 disk.qcow2 "$disk_size"
  echo "   disk: disk.qcow2 ($disk_size bytes, qcow2 by vdisk create), file system $fs_kib KiB, pattern at $pat_off+$pat_len"
fi
# The image as vdisk names it, its format, and the raw copy checked below.
if [ "$disk" = rbd ]; then
  img=rbd:$rbd_name fmt=raw raw=rbd.raw
else
  img=disk.qcow2 fmt=qcow2 raw=qemu.raw
fi

bash "$here/mkinitramfs.sh" "$out/initramfs.gz" "$GUEST_MODULES" "$work/data"

# --- the server -------------------------------------------------------------
if [ "$disk" = rbd ]; then
  sock=$sockdir/blk.sock srv_name="vdisk serve" srv_log=$out/serve.log
  start_bg "$srv_log" "$vdisk" serve --vhost-user-blk "$sock" -f raw "$img"
  devices=$(vhost_blk_args "$sock")
else
  sock=$sockdir/nbd.sock srv_name="vdisk nbd" srv_log=$out/nbd.log
  start_bg "$srv_log" "$vdisk" nbd -v -t -k "$sock" -x disk -f qcow2 disk.qcow2
  devices=$(nbd_blk_args "$sock" disk)
fi
srv_pid=$BG_PID
wait_socket "$sock" "$srv_pid" || { cat "$srv_log"; exit 1; }

# --- the guest runs -------------------------------------------------------------
append="vdisk.mode=fs vdisk.cd=0 vdisk.fs_kib=$fs_kib"
append+=" vdisk.pattern_off=$pat_off vdisk.pattern_len=$pat_len vdisk.pattern_byte=$pat_byte"
qrc=0
# shellcheck disable=SC2086 # the device arguments are words
qemu_guest "$out/serial.log" "${VDISK_TEST_TIMEOUT:-240}" "$append" "$out/initramfs.gz" \
  $devices || qrc=$?
echo "   guest ran for $GUEST_MS ms (qemu exit status $qrc); serial console: $out/serial.log"

src=0
stop_bg "$srv_pid" 10 || src=$?
BG_PIDS=(${base_pid:+"$base_pid"})
check "$srv_name exits 0 on SIGTERM (status $src)" test "$src" = 0

# --- what the guest said ----------------------------------------------------------
log=$out/serial.log
check "qemu exited 0 after the guest powered off (status $qrc; 124: timed out after ${VDISK_TEST_TIMEOUT:-240}s)" test "$qrc" = 0
check "no FAIL marker" bash -c "! grep -a 'VDISK-TEST: FAIL' '$log'"
check "guest made the file system" grep -a "VDISK-TEST: mkfs ok kib=$fs_kib" "$log"
for f in random.bin odd.bin; do
  check "guest read back $f (sha256 after remount)" grep -a "VDISK-TEST: file $f sha256 $(sha "data/$f")" "$log"
done
check "guest read back numbers.txt (sha256 after remount)" grep -a "VDISK-TEST: file numbers.txt sha256 $(sha numbers.txt)" "$log"
check "guest read back 200 small files" grep -a "VDISK-TEST: small files 200" "$log"
check "guest's file system part finished" grep -a "VDISK-TEST: fs ok" "$log"
check "guest wrote the pattern (O_DIRECT, fsync)" grep -a "VDISK-TEST: write ok off=$pat_off len=$pat_len byte=$pat_byte" "$log"
check "guest finished" grep -a "VDISK-TEST: done" "$log"

# --- the image on the host ----------------------------------------------------------
if [ "$disk" = rbd ]; then
  check "rbd export $rbd_name" t rbd export --no-progress "$rbd_name" rbd.raw
  check "vdisk convert to raw" t "$vdisk" convert -f raw -O raw "$img" vdisk.raw
  check "qemu-img convert to raw (its rbd driver)" t qemu-img convert -f raw -O raw "rbd:$rbd_name:conf=$CEPH_CONF" qemu.raw
  check "rbd export and vdisk read the same bytes" cmp rbd.raw vdisk.raw
  check "rbd export and qemu-img read the same bytes" cmp rbd.raw qemu.raw
  check "the exported image is $disk_size bytes" test "$(stat -c %s rbd.raw)" = "$disk_size"
else
  check "vdisk check disk.qcow2" "$vdisk" check -f qcow2 disk.qcow2
  check "qemu-img check disk.qcow2" qemu-img check -f qcow2 disk.qcow2
  check "qemu-img convert to raw" qemu-img convert -f qcow2 -O raw disk.qcow2 qemu.raw
  check "vdisk convert to raw" "$vdisk" convert -f qcow2 -O raw disk.qcow2 vdisk.raw
  check "qemu-img and vdisk read the same bytes" cmp qemu.raw vdisk.raw
fi
check "e2fsck -fn finds the file system clean" e2fsck -fn "$raw"
dump_cmp() { # PATH-IN-FS HOST-FILE
  rm -f dumped
  debugfs -R "dump $1 dumped" "$raw" 2>/dev/null
  cmp dumped "$2"
}
check "random.bin: the host's bytes (debugfs)" dump_cmp /random.bin data/random.bin
check "odd.bin: the host's bytes (debugfs)" dump_cmp /odd.bin data/odd.bin
check "numbers.txt: the host's bytes (debugfs)" dump_cmp /numbers.txt numbers.txt
tree_same() {
  rm -rf dumped-tree
  mkdir dumped-tree
  debugfs -R "rdump /small dumped-tree" "$raw" 2>/dev/null
  diff -r dumped-tree/small small
}
check "the small files: the host's bytes (debugfs rdump, diff -r)" tree_same
pattern_ok() {
  cmp <(tail -c +$((pat_off + 1)) "$raw" | head -c "$pat_len") \
    <(head -c "$pat_len" /dev/zero | tr '\000' "\\$(printf '%03o' "$pat_byte")")
}
check "the pattern's bytes ($raw)" pattern_ok
check "the pattern reads back through vdisk" \
  t "$vdisk" io -r -f "$fmt" -c "read -P $(printf 0x%x "$pat_byte") $pat_off $pat_len" "$img"
fs_end=$((fs_kib * 1024))
check "$fill between the file system and the pattern, and after it" \
  t "$vdisk" io -r -f "$fmt" -c "read -P $fill $fs_end $((pat_off - fs_end))" \
  -c "read -P $fill $((pat_off + pat_len)) $((disk_size - pat_off - pat_len))" "$img"

if [ "$backing" = nbd ]; then
  # qemu-img map: past the file system, the overlay holds the pattern
  # (depth 0) and nothing else (depth 1: the backing file).
  map_ok() {
    local start length depth
    qemu-img map --output=json -f qcow2 disk.qcow2 >map.json || return 1
    sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), "depth": \([0-9]*\).*/\1 \2 \3/p' map.json |
      while read -r start length depth; do
        [ $((start + length)) -gt "$fs_end" ] || continue
        if [ "$start" -ge "$pat_off" ] && [ $((start + length)) -le $((pat_off + pat_len)) ]; then
          [ "$depth" = 0 ] || { echo "$start+$length at depth $depth"; exit 1; }
        elif [ "$start" -ge "$fs_end" ] && { [ $((start + length)) -le "$pat_off" ] || [ "$start" -ge $((pat_off + pat_len)) ]; }; then
          [ "$depth" = 1 ] || { echo "$start+$length at depth $depth"; exit 1; }
        else
          echo "$start+$length straddles the file system's end or the pattern"; exit 1
        fi
      done
  }
  check "past the file system, the overlay holds only the pattern (qemu-img map)" map_ok
  bsrc=0
  stop_bg "$base_pid" 10 || bsrc=$?
  check "the backing file's vdisk nbd exits 0 on SIGTERM (status $bsrc)" test "$bsrc" = 0
  check "the backing file is unchanged" test "$(sha base.qcow2)" = "$base_sum"
fi

if [ "$backing" = nbd ]; then
  exit_if_failed "serial console" "$log" "vdisk nbd" "$out/nbd.log" "vdisk nbd (backing file)" "$out/nbd-base.log"
else
  exit_if_failed "serial console" "$log" "$srv_name" "$srv_log"
fi
echo "PASSED ($disk disk, backing file '$backing', guest boot to power-off $GUEST_MS ms)"
