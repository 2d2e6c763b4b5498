# shellcheck shell=bash
# Shared by tests/linux/guest-test.sh, tests/linux/nbd-test.sh,
# tests/vmm/guest-test.sh, tests/vmm/linux-test.sh, tests/bench/vhost.sh and
# tests/bench/boot.sh (sourced, bash).  Booting Debian's cloud kernel in
# qemu-system-x86_64 (microvm, TCG) with disks and CD-ROMs from vhost-user
# back ends, from an NBD server or from QEMU itself; the test scripts' work
# directory, checks, and the images of the Linux guest's test mode.

# shellcheck source=SCRIPTDIR/../common/skip.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common/skip.sh" # skip_test

# Processes started with start_bg; killed (by pid) on exit.
BG_PIDS=()

# find_guest_kernel: sets GUEST_KERNEL and GUEST_MODULES, or prints why not
# and returns 1.
find_guest_kernel() {
  local dir=${VDISK_GUEST_KERNEL_DIR:-/var/cache/vdisk/guest-kernel}
  GUEST_KERNEL=$dir/vmlinuz
  GUEST_MODULES=$dir/modules
  if [ ! -e "$GUEST_KERNEL" ] || [ ! -d "$GUEST_MODULES/kernel" ]; then
    echo "no guest kernel in $dir (run scripts/fetch-guest-kernel.sh, or set VDISK_GUEST_KERNEL_DIR)"
    return 1
  fi
}

# start_bg LOG CMD...: starts CMD in the background with its output in LOG;
# the pid is in BG_PID.
start_bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 </dev/null &
  BG_PID=$!
  BG_PIDS+=("$BG_PID")
}

# wait_socket PATH PID [SECONDS]: waits for a listening unix socket at PATH
# while the process PID is alive.
wait_socket() {
  local path=$1 pid=$2 tries=$((${3:-20} * 20))
  while [ ! -S "$path" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited before creating $path"
      return 1
    fi
    tries=$((tries - 1))
    [ $tries -gt 0 ] || { echo "no socket at $path after ${3:-20}s"; return 1; }
    sleep 0.05
  done
}

# stop_bg PID [SECONDS]: sends SIGTERM and waits for the exit; returns the
# process's exit status, or 124 (after SIGKILL) when it did not exit in time.
stop_bg() {
  local pid=$1 tries=$((${2:-10} * 20)) rc=0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$(proc_state "$pid")" != Z ]; do
    tries=$((tries - 1))
    if [ $tries -le 0 ]; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 124
    fi
    sleep 0.05
  done
  wait "$pid" || rc=$?
  return $rc
}

proc_state() { # the state letter of /proc/PID/stat
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo gone; return; }
  s=${s##*) }
  echo "${s%% *}"
}

# cpu_ticks PID: utime + stime of a live process, in clock ticks.
cpu_ticks() {
  local s f
  s=$(cat "/proc/$1/stat")
  s=${s##*) } # fields from 3 (state) on; comm may contain spaces
  read -r -a f <<<"$s"
  echo $((f[11] + f[12])) # fields 14 and 15
}

kill_bg_all() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BG_PIDS=()
}

# qemu_guest LOG TIMEOUT APPEND INITRD DEVICE-ARGS...: boots the guest; the
# serial console goes to LOG. Returns QEMU's exit status (0 after the
# guest's poweroff; 124 on timeout). Sets GUEST_MS to the wall time.
qemu_guest() {
  local log=$1 tmo=$2 append=$3 initrd=$4 rc=0 t0 t1
  shift 4
  t0=$(date +%s%N)
  timeout -k 5 "$tmo" qemu-system-x86_64 \
    -M microvm,memory-backend=mem -accel tcg -cpu max -m 256M \
    -object memory-backend-memfd,id=mem,size=256M,share=on \
    -global virtio-mmio.force-legacy=false \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$GUEST_KERNEL" -initrd "$initrd" \
    -append "console=ttyS0 reboot=t panic=-1 tsc_early_khz=2500000 $append" \
    "$@" >"$log" 2>&1 </dev/null || rc=$?
  t1=$(date +%s%N)
  GUEST_MS=$(((t1 - t0) / 1000000))
  return $rc
}

# The device arguments for each way of giving the guest its disk and CD.
vhost_blk_args() { echo "-chardev socket,id=blk0,path=$1 -device vhost-user-blk,chardev=blk0,num-queues=1"; }
vhost_scsi_args() { echo "-chardev socket,id=scsi0,path=$1 -device vhost-user-scsi,chardev=scsi0"; }
qemu_blk_args() { # IMAGE FORMAT [ro]
  local ro=off
  [ "${3:-}" = ro ] && ro=on
  echo "-blockdev driver=file,node-name=dfile,filename=$1,read-only=$ro" \
    "-blockdev driver=$2,node-name=disk0,file=dfile,read-only=$ro -device virtio-blk-device,drive=disk0"
}
nbd_blk_args() { # SOCKET EXPORT: QEMU's NBD client on a Unix socket, as a virtio-blk disk
  echo "-blockdev driver=nbd,node-name=disk0,server.type=unix,server.path=$1,export=$2" \
    "-device virtio-blk-device,drive=disk0"
}
qemu_cd_args() { # ISO
  echo "-blockdev driver=file,node-name=cdfile,filename=$1,read-only=on -blockdev driver=raw,node-name=cd0,file=cdfile,read-only=on -device virtio-scsi-device,id=vscsi -device scsi-cd,drive=cd0,bus=vscsi.0"
}

# qsd_blk_cmd SOCKET IMAGE FORMAT [ro]: qemu-storage-daemon exporting IMAGE
# over vhost-user-blk.
qsd_blk_cmd() {
  local writable=on
  [ "${4:-}" = ro ] && writable=off
  echo "qemu-storage-daemon --blockdev driver=file,node-name=file0,filename=$2" \
    "--blockdev driver=$3,node-name=disk0,file=file0" \
    "--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$1,writable=$writable"
}

# new_work_dir OUT: makes the output directory OUT, removes its old logs
# (OUT/*.log) and makes the work directory OUT/work afresh; sets work.
new_work_dir() {
  mkdir -p "$1"
  rm -f "$1"/*.log
  work=$1/work
  rm -rf "$work"
  mkdir -p "$work"
}

# check DESCRIPTION CMD...: runs CMD, reports, remembers a failure in
# failed (CMD's output goes to $work/check.out, and is shown on a failure).
# shellcheck disable=SC2034 # failed is for the callers
failed=0
# shellcheck disable=SC2034
check() {
  local desc=$1
  shift
  if "$@" >"$work/check.out" 2>&1; then
    echo "ok   $desc"
  else
    echo "FAIL $desc"
    sed 's/^/     /' "$work/check.out"
    failed=1
  fi
}

# exit_if_failed TITLE FILE [TITLE FILE]...: when a check failed, shows
# each FILE under "== TITLE (FILE):", prints FAILED and exits 1.
exit_if_failed() {
  [ "$failed" != 0 ] || return 0
  while [ $# -ge 2 ]; do
    echo "== $1 ($2):"
    cat "$2"
    shift 2
  done
  echo "FAILED"
  exit 1
}

# make_linux_test_images MAKER README LOG: in the current directory, the
# disk and the CD of the Linux guest's test mode (tests/linux/init,
# vdisk.mode=test):
#   base.qcow2     64 MiB of 0x5a
#   overlay.qcow2  an empty qcow2 overlay on base.qcow2
#   test.iso       an ISO (xorriso, Rock Ridge and Joliet, volume VDISKTEST)
#                  with README.TXT (the line README), data/random.bin
#                  (6 MiB of random data) and data/nested/numbers.txt
# The qcow2 images are made by MAKER: a vdisk CLI, or "qemu" for qemu-img
# and qemu-io.  xorriso's messages go to LOG.  Sets mib, disk_size, the
# pattern the guest writes (pat_off, pat_len, pat_byte), base_sum (the
# sha256 of base.qcow2), before_sha (of the disk's first MiB), iso_sha (of
# data/random.bin) and test_append (the guest's vdisk.* kernel parameters).
# shellcheck disable=SC2034 # the variables are for the callers
make_linux_test_images() {
  local maker=$1 readme=$2 log=$3
  mib=1048576
  disk_size=$((64 * mib))
  pat_off=$((16 * mib))
  pat_len=$((4 * mib))
  pat_byte=165 # 0xa5
  if [ "$maker" = qemu ]; then
    qemu-img create -q -f qcow2 base.qcow2 "$disk_size"
    qemu-io -f qcow2 -c "write -q -P 0x5a 0 $disk_size" base.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
  else
    "$maker" create -f qcow2 base.qcow2 "$disk_size" >/dev/null
    "$maker" io -c "write -P 0x5a 0 $disk_size" base.qcow2 >/dev/null
    "$maker" create -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2 >/dev/null
  fi
  base_sum=$(sha256sum base.qcow2 | cut -d' ' -f1)
  before_sha=$(head -c $mib /dev/zero | tr '\000' '\132' | sha256sum | cut -d' ' -f1)
  mkdir -p iso/data/nested
  echo "$readme" >iso/README.TXT
  head -c $((6 * mib)) /dev/urandom >iso/data/random.bin
  seq 1 20000 >iso/data/nested/numbers.txt
  xorriso -as mkisofs -quiet -R -J -V VDISKTEST -o test.iso iso 2>"$log"
  iso_sha=$(sha256sum iso/data/random.bin | cut -d' ' -f1)
  test_append="vdisk.mode=test vdisk.sha_file=data/random.bin vdisk.sha_expect=$iso_sha"
  test_append+=" vdisk.before_sha=$before_sha vdisk.pattern_off=$pat_off vdisk.pattern_len=$pat_len vdisk.pattern_byte=$pat_byte"
}

# check_test_markers LOG: checks the serial console LOG of the Linux guest's
# test mode (tests/linux/init) for the markers of each step on the images
# of make_linux_test_images: the CD, its file's sha256, the disk's read and
# write, the eject, the end.
check_test_markers() {
  local log=$1
  check "guest saw /dev/sr0 as a CD-ROM (type 5, removable)" grep -aE 'VDISK-TEST: cdrom /dev/sr0 type=5 .*removable=1' "$log"
  check "guest's sha256 of data/random.bin is the host's" grep -a "VDISK-TEST: sha256 $iso_sha data/random.bin" "$log"
  check "guest read the backing file through the overlay" grep -a "VDISK-TEST: disk read ok" "$log"
  check "guest wrote the pattern (O_DIRECT, fsync)" grep -a "VDISK-TEST: write ok off=$pat_off len=$pat_len byte=$pat_byte" "$log"
  check "guest ejected the CD" grep -a "VDISK-TEST: eject ok" "$log"
  check "guest finished" grep -a "VDISK-TEST: done" "$log"
}

# check_vdisk_check VDISK IMAGE: `vdisk check` of IMAGE as a check (a
# failed one when there is no vdisk CLI at VDISK).
check_vdisk_check() {
  check "vdisk check $2" "$1" check -f qcow2 "$2"
}
