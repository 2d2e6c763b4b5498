#!/usr/bin/env bash
# The real-Linux-guest test of issue 7: Debian's cloud kernel boots in
# qemu-system-x86_64 (microvm, TCG) with
#   - a disk over vhost-user-blk: a qcow2 overlay whose backing file is
#     another qcow2 image;
#   - a CD-ROM over vhost-user-scsi: an ISO built by xorriso.
# The guest's /init (tests/linux/init) mounts /dev/sr0, checks the sha256 of
# a file against the host's, reads the backing file's data through the
# overlay, writes a pattern with O_DIRECT and fsync, ejects the CD and powers
# off. The host then checks the markers on the serial console, runs
# `qemu-img check` and `vdisk check` on the overlay, reads the pattern back
# through vdisk, and checks that the backing file was not modified.
#
#   guest-test.sh VDISK [OUTDIR]
#
# VDISK is the vdisk CLI. OUTDIR (default ./linux-vhost) keeps the serial
# console log (serial.log), the back ends' logs and the initramfs; the
# images are deleted at the end unless VDISK_TEST_KEEP=1.
#
# VDISK_TEST_BACKEND picks who serves the devices:
#   vdisk (default)  vdisk serve --vhost-user-blk SOCK OVERLAY
#                    vdisk serve --vhost-user-scsi SOCK --cdrom ISO
#   qsd              qemu-storage-daemon's vhost-user-blk export for the disk;
#                    QEMU's own virtio-scsi-device + scsi-cd for the CD-ROM
#                    (qemu-storage-daemon has no vhost-user-scsi export)
# Exits 77 (skipped) when qemu-system-x86_64, the guest kernel or the chosen
# back end is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vdisk=${1:?usage: guest-test.sh VDISK [OUTDIR]}
out=${2:-$PWD/linux-vhost}
backend=${VDISK_TEST_BACKEND:-vdisk}
: "${VDISK_TEST_NAME:=linux-vhost$([ "$backend" = qsd ] && echo -qsd)}" # its CTest name (tests/ci-skips.txt)
export VDISK_TEST_NAME


command -v qemu-system-x86_64 >/dev/null || skip_test "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
why=$(find_guest_kernel) || skip_test "$why"
find_guest_kernel
for tool in qemu-img xorriso cpio modinfo busybox; do
  command -v "$tool" >/dev/null || skip_test "$tool not found (scripts/install-deps.sh installs it)"
done
case "$backend" in
  vdisk)
    "$vdisk" serve --help >/dev/null 2>&1 ||
      skip_test "'vdisk serve' does not exist yet ($vdisk serve --help fails); VDISK_TEST_BACKEND=qsd runs the guest side against qemu-storage-daemon"
    ;;
  qsd)
    command -v qemu-storage-daemon >/dev/null || skip_test "qemu-storage-daemon not found (apt-get install qemu-system-common)"
    ;;
  *) echo "guest-test.sh: VDISK_TEST_BACKEND must be vdisk or qsd, not '$backend'" >&2; exit 2 ;;
esac

new_work_dir "$out"
# Unix socket paths must be short (108 bytes): they live in /tmp.
sockdir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-vhost.XXXXXX")
cleanup() {
  kill_bg_all
  rm -rf "$sockdir"
  [ "${VDISK_TEST_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

echo "== guest test: back end '$backend', kernel $(readlink -f "$GUEST_KERNEL"), output in $out"

# --- the guest ------------------------------------------------------------
bash "$here/mkinitramfs.sh" "$out/initramfs.gz" "$GUEST_MODULES"

# --- the disk: base.qcow2 (0x5a everywhere) <- overlay.qcow2; the CD: a few
# files, one of 6 MiB of random data ------------------------------------------
cd "$work"
make_linux_test_images "$vdisk" "vdisk guest test" "$out/xorriso.log"
echo "   disk: overlay.qcow2 -> base.qcow2 ($disk_size bytes), cd: test.iso ($(stat -c %s test.iso) bytes), random.bin sha256 $iso_sha"

# --- the back ends ------------------------------------------------------------
blk_sock=$sockdir/blk.sock
scsi_sock=$sockdir/scsi.sock
servers=()   # pids
names=()
case "$backend" in
  vdisk)
    start_bg "$out/serve-blk.log" "$vdisk" serve --vhost-user-blk "$blk_sock" overlay.qcow2
    servers+=("$BG_PID"); names+=("vdisk serve --vhost-user-blk")
    start_bg "$out/serve-scsi.log" "$vdisk" serve --vhost-user-scsi "$scsi_sock" --cdrom test.iso
    servers+=("$BG_PID"); names+=("vdisk serve --vhost-user-scsi")
    wait_socket "$blk_sock" "${servers[0]}" || { cat "$out/serve-blk.log"; exit 1; }
    wait_socket "$scsi_sock" "${servers[1]}" || { cat "$out/serve-scsi.log"; exit 1; }
    devices="$(vhost_blk_args "$blk_sock") $(vhost_scsi_args "$scsi_sock")"
    ;;
  qsd)
    # shellcheck disable=SC2046
    start_bg "$out/qsd.log" $(qsd_blk_cmd "$blk_sock" overlay.qcow2 qcow2)
    servers+=("$BG_PID"); names+=("qemu-storage-daemon")
    wait_socket "$blk_sock" "${servers[0]}" || { cat "$out/qsd.log"; exit 1; }
    devices="$(vhost_blk_args "$blk_sock") $(qemu_cd_args "$work/test.iso")"
    ;;
esac

# --- the guest runs -----------------------------------------------------------
qrc=0
# shellcheck disable=SC2086
qemu_guest "$out/serial.log" "${VDISK_TEST_TIMEOUT:-240}" "$test_append" "$out/initramfs.gz" $devices || qrc=$?
echo "   guest ran for $GUEST_MS ms (qemu exit status $qrc); serial console: $out/serial.log"

# --- the back ends stop on SIGTERM with status 0 -------------------------------
for i in "${!servers[@]}"; do
  src=0
  stop_bg "${servers[$i]}" 10 || src=$?
  check "${names[$i]} exits 0 on SIGTERM (status $src)" test "$src" = 0
done
BG_PIDS=()

# --- what the guest said --------------------------------------------------------
log=$out/serial.log
check "qemu exited 0 after the guest powered off (status $qrc; 124: timed out after ${VDISK_TEST_TIMEOUT:-240}s)" test "$qrc" = 0
check "no FAIL marker" bash -c "! grep -a 'VDISK-TEST: FAIL' '$log'"
check_test_markers "$log"

# --- the images on the host ------------------------------------------------------
check "qemu-img check overlay.qcow2" qemu-img check -f qcow2 overlay.qcow2
check "vdisk check overlay.qcow2" "$vdisk" check -f qcow2 overlay.qcow2
check "the pattern reads back through vdisk" \
  "$vdisk" io -r -c "read -P 0xa5 $pat_off $pat_len" overlay.qcow2
check "the rest of the overlay reads the backing file's data" \
  "$vdisk" io -r -c "read -P 0x5a 0 $pat_off" -c "read -P 0x5a $((pat_off + pat_len)) $((disk_size - pat_off - pat_len))" overlay.qcow2
# qemu-img map: the pattern's range comes from the overlay (depth 0), all
# the rest from the backing file (depth 1).
map_ok() {
  local start length depth
  qemu-img map --output=json overlay.qcow2 |
    sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), "depth": \([0-9]*\).*/\1 \2 \3/p' |
    while read -r start length depth; do
      if [ "$start" -ge "$pat_off" ] && [ $((start + length)) -le $((pat_off + pat_len)) ]; then
        [ "$depth" = 0 ] || { echo "$start+$length at depth $depth"; exit 1; }
      elif [ $((start + length)) -le "$pat_off" ] || [ "$start" -ge $((pat_off + pat_len)) ]; then
        [ "$depth" = 1 ] || { echo "$start+$length at depth $depth"; exit 1; }
      else
        echo "$start+$length straddles the pattern"; exit 1
      fi
    done
}
check "the pattern is in the overlay, the rest in the backing file (qemu-img map)" map_ok
check "the backing file is unchanged" test "$(sha256sum base.qcow2 | cut -d' ' -f1)" = "$base_sum"
check "the backing file still reads 0x5a everywhere" "$vdisk" io -r -c "read -P 0x5a 0 $disk_size" base.qcow2

if [ $failed != 0 ]; then
  echo "== serial console ($log):"
  cat "$log"
  for f in "$out"/serve-*.log "$out"/qsd.log; do
    [ -s "$f" ] && { echo "== $f:"; cat "$f"; }
  done
  echo "FAILED"
  exit 1
fi
echo "PASSED (back end '$backend', guest boot to power-off $GUEST_MS ms)"
