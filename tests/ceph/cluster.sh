#!/usr/bin/env bash
# A throw-away single-node Ceph cluster for the tests (issue 19): one monitor
# and one OSD (memstore), no manager, plain processes on 127.0.0.1 only, every
# file inside one directory.  Facts behind the settings:
# /work/shared/notes/ceph-single-node.md, and doc in tests/ceph/README.md.
#
#   cluster.sh start DIR      creates DIR (absent or empty), starts the
#                             cluster, creates and initialises pool "rbd",
#                             writes DIR/ceph.conf and DIR/cluster.env, and
#                             prints "CEPH_CONF=DIR/ceph.conf".  Fails (exit 1)
#                             with the daemons' log tails when the cluster
#                             does not come up within VDISK_CEPH_TIMEOUT
#                             seconds (default 60); nothing is left running.
#   cluster.sh stop DIR       SIGKILL to every daemon (by its pid file), waits
#                             for the exits, removes DIR (kept when
#                             VDISK_TEST_KEEP=1).
#   cluster.sh osd-stop DIR   SIGTERM to the OSD, waits for its exit: the OSD
#                             first tells the monitor it is going down, then
#                             memstore saves its objects in DIR, so osd-start
#                             brings it back with its data.  I/O to the pool
#                             blocks meanwhile (pool size 1).
#   cluster.sh osd-kill DIR   SIGKILL to the OSD and "ceph osd down 0": the
#                             memstore objects are lost, so it cannot come
#                             back (osd-start then fails: on disk is only the
#                             store of the last clean stop).
#   cluster.sh osd-freeze DIR SIGSTOP to the OSD: connections stay open, no
#                             answers (a hung OSD); osd-thaw sends SIGCONT.
#   cluster.sh osd-start DIR  starts the OSD again and waits until it is up
#                             and in.
#   cluster.sh rss DIR        prints "mon KB osd KB": the daemons' RSS.
#   cluster.sh log-tail DIR [LINES]  the end of every daemon log (stderr).
#
# Authentication is cephx.  DIR/ceph.conf names the keyrings, so a client
# that reads it (CEPH_CONF) is client.admin; DIR/cluster.env also lists a
# restricted user and a keyring with a wrong key, for the credential tests.
#
# Environment: VDISK_CEPH_TIMEOUT (seconds, default 60) bounds each wait;
# VDISK_CEPH_STORE_BYTES (default 4 GiB) is memstore's capacity: data past it
# marks the pool full and writes then block forever, so it must stay well
# above what a test writes (memory is only used for what is written).
set -euo pipefail

timeout_s=${VDISK_CEPH_TIMEOUT:-60}
store_bytes=${VDISK_CEPH_STORE_BYTES:-$((4 << 30))}

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

now() { date +%s.%N; }

# secs T0 T1: T1 - T0 with two decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ceph_cli ARGS...: the ceph command against the cluster, bounded in time.
ceph_cli() {
  timeout -k 5 "$timeout_s" ceph -c "$dir/ceph.conf" --connect-timeout "$timeout_s" "$@"
}

# port_in_use PORT: whether a TCP socket (v4 or v6) uses PORT locally.
port_in_use() {
  local hex
  hex=$(printf '%04X' "$1")
  grep -q ":$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# free_port: a port in 10000-29999 (below the kernel's ephemeral range and
# away from Ceph's 6800-7300) that no socket uses now.
free_port() {
  local p _
  for _ in $(seq 200); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 20000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free TCP port found in 10000-29999"
}

# listens PID PORT: whether process PID listens on 127.0.0.1:PORT (another
# process may have taken the port first).
listens() {
  local inode
  inode=$(awk -v a="$(printf '0100007F:%04X' "$2")" '$2 == a && $4 == "0A" { print $10 }' /proc/net/tcp)
  [ -n "$inode" ] && find "/proc/$1/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q .
}

# daemon_pid NAME: the pid recorded for daemon NAME (mon.a, osd.0), if any.
daemon_pid() {
  local f=$dir/run/$1.pid
  [ -s "$f" ] && cat "$f"
}

# is_ours PID: whether PID is still a daemon of this cluster (its command
# line names DIR/ceph.conf: not a reused pid) and not yet gone.  A killed
# process whose main thread is a zombie while other threads still exit (its
# sockets still open) counts as running until one thread is left.
is_ours() {
  local pid=$1 status
  status=$(cat "/proc/$pid/status" 2>/dev/null) || return 1
  if [[ $status == *$'\nState:\tZ'* ]]; then
    # A pid is not reused before its zombie is reaped.
    [[ $status != *$'\nThreads:\t1\n'* ]]
    return
  fi
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/ceph.conf"
}

# kill_daemon NAME SIGNAL [SECONDS]: sends SIGNAL to daemon NAME and waits
# (default 10 s) for its exit; SIGKILL when it does not exit in time.
kill_daemon() {
  local name=$1 sig=$2 tries=$((${3:-10} * 50)) pid
  pid=$(daemon_pid "$name") || return 0
  if is_ours "$pid"; then
    kill -"$sig" "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true # a frozen OSD (osd-freeze)
    while is_ours "$pid"; do
      tries=$((tries - 1))
      if [ $tries -le 0 ]; then
        echo "cluster.sh: $name (pid $pid) still runs after SIG$sig: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        # A killed OSD's objects are lost (osd-start refuses to start it).
        [ "$name" != osd.0 ] || : >"$dir/run/osd.0.killed"
        tries=500
        sig=KILL
      fi
      sleep 0.02
    done
  fi
  rm -f "$dir/run/$name.pid"
}

log_tail() {
  local lines=${1:-40} f
  for f in "$dir"/log/*; do
    if [ ! -s "$f" ] || [ "${f##*/}" = ceph.audit.log ]; then continue; fi
    echo "---- last $lines lines of $f" >&2
    tail -n "$lines" "$f" >&2
  done
}

# fail MESSAGE: the start failed: logs, then everything stopped.
fail() {
  echo "cluster.sh: $*" >&2
  log_tail 40
  stop_daemons
  exit 1
}

stop_daemons() {
  kill_daemon osd.0 KILL
  kill_daemon mon.a KILL
}

# start_daemon NAME PROGRAM ARGS...: starts a daemon in the foreground in the
# background, its output in DIR/log/NAME.out, its pid in DIR/run/NAME.pid.
start_daemon() {
  local name=$1
  shift
  "$@" -f -c "$dir/ceph.conf" </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo $! >"$dir/run/$name.pid"
}

# wait_osd_up FROM: until the OSD's log, from line FROM on, says that the
# OSD is active (the monitor marked it up: "state: booting -> active"), while
# the OSD runs; at most VDISK_CEPH_TIMEOUT seconds.  (The ceph command takes
# about a second a call, too slow to poll with.)  A new OSD is "in" from
# "ceph osd new" on; a restarted one has stayed in.
wait_osd_up() {
  local from=$1 deadline=$(($(date +%s) + timeout_s)) pid
  pid=$(daemon_pid osd.0) || fail "the OSD has no pid file"
  while ! tail -n "+$from" "$dir/log/osd.0.log" 2>/dev/null | grep -q 'state: booting -> active'; do
    is_ours "$pid" || fail "the OSD (pid $pid) exited"
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "the OSD is not up after ${timeout_s}s: $(ceph_cli osd stat 2>&1 || true)"
    fi
    sleep 0.05
  done
}

# log_lines NAME: the number of lines in the log of daemon NAME, plus one.
log_lines() {
  local n=0
  [ ! -f "$dir/log/$1.log" ] || n=$(wc -l <"$dir/log/$1.log")
  echo $((n + 1))
}

# new_key: a new cephx secret as Ceph encodes it (ceph-authtool --gen-key
# does the same in 0.2 s a call): base64 of type 1 (AES, le16), a creation
# time (le32 seconds, le32 nanoseconds; zero here), the length 16 (le16) and
# 16 random bytes.
new_key() {
  { printf '\001\000\000\000\000\000\000\000\000\000\020\000'; head -c 16 /dev/urandom; } | base64
}

# keyring_entry NAME CAPS: a keyring section for NAME with a new key and the
# caps lines CAPS.
keyring_entry() {
  printf '[%s]\n\tkey = %s\n%s\n' "$1" "$(new_key)" "$2"
}

write_conf() {
  local port=$1
  cat >"$dir/ceph.conf" <<EOF
# A throw-away test cluster (vdisk tests/ceph/cluster.sh); everything in $dir.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/\$cluster.\$name.keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.daemon.pid
log file = $dir/log/\$name.log
crash dir = $dir/crash
mon data = $dir/\$name
osd data = $dir/\$name
osd objectstore = memstore
memstore device bytes = $store_bytes
memstore page set = true
memstore page size = 4096
# SIGTERM (osd-stop): a clean stop, memstore saving its objects for the
# restart; the default fast shutdown exits without, and the OSD comes back
# with the store of its mkfs.
osd fast shutdown = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
# Paxos commits at once (default: start-up ~7.7 s instead of ~2 s).
paxos propose interval = 0.1
paxos min wait = 0.01
# Health noise of a single node without a manager on a nearly full disk.
mon warn on insecure global id reclaim allowed = false
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon mgr mkfs grace = 31536000
mon cluster log file = $dir/log/\$cluster.\$channel.log
# Clones of unprotected snapshots (issue 19: layered images).
rbd default clone format = 2

[client]
# Several client processes at once (a test and the rbd command it runs).
admin socket = $dir/run/\$name.\$pid.asok

[mon]
keyring = $dir/\$name/keyring
# A port taken since it was chosen: exit at once (default: 3 tries 5 s apart).
ms bind retry count = 1

[osd]
keyring = $dir/\$name/keyring
EOF
}

cmd_start() {
  [ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || die "$dir exists and is not empty"
  local tool
  for tool in ceph-mon ceph-osd ceph ceph-authtool monmaptool timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
  done
  local t0 t_mon t_osd port attempt pid
  t0=$(now)
  mkdir -p "$dir"/{run,log,crash}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  local osd_uuid
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)

  # The keys: the monitor's, client.admin's, osd.0's (all known to the
  # monitor from its mkfs on), and a client.admin keyring with a wrong key.
  local admin_caps osd_caps
  admin_caps=$'\tcaps mon = "allow *"\n\tcaps osd = "allow *"\n\tcaps mgr = "allow *"\n\tcaps mds = "allow *"'
  osd_caps=$'\tcaps mon = "allow profile osd"\n\tcaps osd = "allow *"\n\tcaps mgr = "allow profile osd"'
  keyring_entry client.admin "$admin_caps" >"$dir/ceph.client.admin.keyring"
  keyring_entry osd.0 "$osd_caps" >"$dir/osd.keyring"
  keyring_entry client.vdisk $'\tcaps mon = "profile rbd"\n\tcaps osd = "profile rbd pool=rbd"' \
    >"$dir/ceph.client.vdisk.keyring"
  {
    keyring_entry mon. $'\tcaps mon = "allow *"'
    cat "$dir/ceph.client.admin.keyring" "$dir/ceph.client.vdisk.keyring" "$dir/osd.keyring"
  } >"$dir/mon.keyring"
  keyring_entry client.admin "$admin_caps" >"$dir/bad.keyring"

  # The monitor, on a port free now; another process may take it before the
  # monitor binds: then again with another port.
  local osd_mkfs='' cli
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if [ -n "$osd_mkfs" ]; then # a retry: the conf changes
      wait "$osd_mkfs" || fail "ceph-osd --mkfs failed"
      osd_mkfs=finished
    fi
    write_conf "$port"
    if [ -z "$osd_mkfs" ]; then
      # The OSD's store, meanwhile (it needs no monitor without the
      # monitor's config).
      mkdir -p "$dir/osd.0"
      cp "$dir/osd.keyring" "$dir/osd.0/keyring"
      timeout -k 5 "$timeout_s" ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --no-mon-config \
        --osd-uuid "$osd_uuid" >>"$dir/log/osd.0.out" 2>&1 &
      osd_mkfs=$!
    fi
    rm -rf "$dir/mon.a" "$dir/monmap"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" \
      >>"$dir/log/mon.a.out" 2>&1 || fail "monmaptool failed"
    timeout -k 5 "$timeout_s" ceph-mon -c "$dir/ceph.conf" -i a --mkfs --monmap "$dir/monmap" \
      --keyring "$dir/mon.keyring" >>"$dir/log/mon.a.out" 2>&1 || fail "ceph-mon --mkfs failed"
    start_daemon mon.a ceph-mon -i a
    pid=$(daemon_pid mon.a)
    # The OSD's id, and the pool (it needs no OSD yet): one ceph command
    # (a second of Python's start-up, meanwhile), which runs the lines of
    # its standard input and then exits 0 whatever they did.
    printf 'osd new %s 0\nosd pool create rbd 8 8\n' "$osd_uuid" >"$dir/log/ceph-cli.in"
    timeout -k 5 "$timeout_s" ceph -c "$dir/ceph.conf" --connect-timeout "$timeout_s" \
      <"$dir/log/ceph-cli.in" >"$dir/log/ceph-cli.out" 2>&1 &
    cli=$!
    # Bound: listening, or exited (bind failure).
    local tries=$((timeout_s * 50))
    while is_ours "$pid" && ! listens "$pid" "$port"; do
      tries=$((tries - 1))
      [ $tries -gt 0 ] || fail "the monitor does not listen on 127.0.0.1:$port after ${timeout_s}s"
      sleep 0.02
    done
    if is_ours "$pid"; then break; fi
    if ! grep -q "Address already in use" "$dir/log/mon.a.log" "$dir/log/mon.a.out" 2>/dev/null ||
      [ $attempt = 5 ]; then
      fail "the monitor exited at start-up"
    fi
    echo "cluster.sh: port $port was taken, trying another" >&2
    kill "$cli" 2>/dev/null || true
    wait "$cli" || true
    rm -f "$dir/run/mon.a.pid"
  done
  t_mon=$(now)

  wait "$cli" || fail "ceph failed: $(cat "$dir/log/ceph-cli.out")"
  if ! grep -qx 0 "$dir/log/ceph-cli.out" || ! grep -q "pool 'rbd' created" "$dir/log/ceph-cli.out"; then
    fail "ceph osd new, ceph osd pool create failed: $(cat "$dir/log/ceph-cli.out")"
  fi
  if [ "$osd_mkfs" != finished ]; then
    wait "$osd_mkfs" || fail "ceph-osd --mkfs failed"
  fi
  local from
  from=$(log_lines osd.0)
  start_daemon osd.0 ceph-osd -i 0
  wait_osd_up "$from"
  t_osd=$(now)

  # rbd pool init returns once the pool takes writes.
  timeout -k 5 "$timeout_s" rbd -c "$dir/ceph.conf" pool init rbd 2>"$dir/log/pool.err" ||
    fail "rbd pool init failed: $(cat "$dir/log/pool.err")"

  local t_end
  t_end=$(now)
  cat >"$dir/cluster.env" <<EOF
CEPH_CONF=$dir/ceph.conf
VDISK_CEPH_DIR=$dir
VDISK_CEPH_MON=v2:127.0.0.1:$port
VDISK_CEPH_ADMIN_KEYRING=$dir/ceph.client.admin.keyring
VDISK_CEPH_USER_KEYRING=$dir/ceph.client.vdisk.keyring
VDISK_CEPH_BAD_KEYRING=$dir/bad.keyring
VDISK_CEPH_POOL=rbd
VDISK_CEPH_START_SECONDS=$(secs "$t0" "$t_end")
EOF
  echo "cluster.sh: started in $(secs "$t0" "$t_end") s (monitor $(secs "$t0" "$t_mon") s," \
    "OSD up $(secs "$t_mon" "$t_osd") s, pool $(secs "$t_osd" "$t_end") s), monitor on 127.0.0.1:$port" >&2
  echo "CEPH_CONF=$dir/ceph.conf"
}

cmd_stop() {
  [ -d "$dir" ] || return 0
  stop_daemons
  if [ "${VDISK_TEST_KEEP:-0}" != 1 ]; then
    rm -rf "$dir"
  fi
}

cmd_osd_start() {
  local pid
  if pid=$(daemon_pid osd.0) && is_ours "$pid"; then
    die "the OSD runs already (pid $pid)"
  fi
  # On disk is the store of the last clean stop (osd-stop, or mkfs): the
  # OSD would come back with old objects.
  [ ! -e "$dir/run/osd.0.killed" ] || die "the OSD was killed (osd-kill): its objects are lost, it cannot start again"
  local from
  from=$(log_lines osd.0)
  start_daemon osd.0 ceph-osd -i 0
  wait_osd_up "$from"
}

rss_kb() {
  local pid
  if ! pid=$(daemon_pid "$1") || ! is_ours "$pid"; then
    echo 0
    return
  fi
  sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status"
}

[ $# -ge 2 ] || die "usage: cluster.sh start|stop|osd-stop|osd-kill|osd-freeze|osd-thaw|osd-start|rss|log-tail DIR"
action=$1
dir=$2
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac
dir=${dir%/}
fsid=

case "$action" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  osd-stop) kill_daemon osd.0 TERM "$timeout_s" ;;
  osd-kill)
    kill_daemon osd.0 KILL
    : >"$dir/run/osd.0.killed"
    ceph_cli osd down 0 >/dev/null 2>&1 || die "ceph osd down 0 failed"
    ;;
  osd-freeze)
    if ! pid=$(daemon_pid osd.0) || ! is_ours "$pid"; then die "the OSD does not run"; fi
    kill -STOP "$pid"
    ;;
  osd-thaw)
    if ! pid=$(daemon_pid osd.0) || ! is_ours "$pid"; then die "the OSD does not run"; fi
    kill -CONT "$pid"
    ;;
  osd-start) cmd_osd_start ;;
  rss) echo "mon $(rss_kb mon.a) osd $(rss_kb osd.0)" ;;
  log-tail) log_tail "${3:-40}" ;;
  *) die "unknown action '$action'" ;;
esac
