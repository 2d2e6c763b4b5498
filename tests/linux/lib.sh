# shellcheck shell=bash
# Shared by tests/linux/guest-test.sh and tests/bench/vhost.sh (sourced, bash).
# Booting Debian's cloud kernel in qemu-system-x86_64 (microvm, TCG) with
# disks and CD-ROMs from vhost-user back ends or from QEMU itself.

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
