#!/usr/bin/env bash
# The test cluster itself (issue 19), CTest's ceph-cluster (label ceph):
# tests/ceph/cluster.sh starts a monitor and an OSD; then, with the rbd
# command and qemu-img's rbd: driver (exact bytes each time):
#   - rbd import of a file, read back by rbd export and by qemu-img convert;
#   - qemu-img convert into an image made by rbd create, read back by rbd
#     export;
#   - the restricted user client.vdisk lists the pool; a wrong key
#     (EACCES) and an unknown user (no keyring: ENOENT) cannot connect;
#   - cluster.sh osd-stop, an rbd export started while the OSD is down (it
#     waits), cluster.sh osd-start: the export completes with the data;
#   - cluster.sh stop: the daemons gone, the directory removed.
# Prints the start-up time and the daemons' RSS.  Fails (not a skip) when
# the cluster does not start, with the daemons' logs; skipped (77) when Ceph
# or qemu-img's rbd driver (qemu-block-extra) is not installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${VDISK_TEST_NAME:=ceph-cluster}"
export VDISK_TEST_NAME
# shellcheck source=SCRIPTDIR/../common/skip.sh
. "$here/../common/skip.sh"

for tool in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd; do
  command -v "$tool" >/dev/null ||
    skip_test "$tool not found (apt-get install ceph-mon ceph-osd ceph-common; scripts/install-deps.sh installs them)"
done
command -v qemu-img >/dev/null || skip_test "qemu-img not found (apt-get install qemu-utils)"
qemu-img --help | grep -q '^Supported formats:.* rbd' ||
  skip_test "qemu-img has no rbd driver (apt-get install qemu-block-extra)"

cluster() { bash "$here/cluster.sh" "$@"; }
# Every client bounded in time: a stuck cluster fails the test, never hangs it.
t() { timeout -k 5 60 "$@"; }
fail() {
  echo "FAIL: $*"
  cluster log-tail "$dir" 30 || true
  exit 1
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-ceph.XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-ceph-test.XXXXXX")
bg=
cleanup() {
  [ -z "$bg" ] || kill "$bg" 2>/dev/null || true
  cluster stop "$dir" || true
  rm -rf "$work"
}
trap cleanup EXIT

t0=$(date +%s.%N)
cluster start "$dir" >"$work/start.out" || { echo "FAIL: the cluster did not start (its logs above)"; exit 1; }
t1=$(date +%s.%N)
grep -qx "CEPH_CONF=$dir/ceph.conf" "$work/start.out" || fail "cluster.sh start printed $(cat "$work/start.out")"
set -a
# shellcheck source=/dev/null
. "$dir/cluster.env"
set +a
echo "cluster started in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
read -r _ mon_kb _ osd_kb < <(cluster rss "$dir")
echo "RSS after start-up: monitor $((mon_kb / 1024)) MiB, OSD $((osd_kb / 1024)) MiB"

# 3 MiB and a bit of random data: not a multiple of the 4 MiB object nor
# of 4 KiB; a multiple of 512, as qemu-img 7.2's rbd driver fails an
# assertion (offset + bytes <= s->image_size, in block status) on the tail
# of an image whose size is not.
head -c $((3 * 1024 * 1024 + 4096 + 512)) /dev/urandom >"$work/a.bin"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$work/b.bin"

t rbd import --no-progress "$work/a.bin" rbd/a || fail "rbd import"
t rbd export --no-progress rbd/a "$work/a.rbd-export" || fail "rbd export"
cmp "$work/a.bin" "$work/a.rbd-export" || fail "rbd export of rbd/a differs from what rbd import wrote"
t qemu-img convert -f raw -O raw "rbd:rbd/a:conf=$CEPH_CONF" "$work/a.qemu" || fail "qemu-img convert from rbd:rbd/a"
cmp "$work/a.bin" "$work/a.qemu" || fail "qemu-img's read of rbd/a differs from what rbd import wrote"

t rbd create --size 2M rbd/b || fail "rbd create"
t qemu-img convert -n -f raw -O raw "$work/b.bin" "rbd:rbd/b:conf=$CEPH_CONF" || fail "qemu-img convert into rbd:rbd/b"
t rbd export --no-progress rbd/b "$work/b.rbd-export" || fail "rbd export of rbd/b"
cmp "$work/b.bin" "$work/b.rbd-export" || fail "rbd export of rbd/b differs from what qemu-img wrote"
echo "rbd import/export and qemu-img's rbd driver: same bytes"

# Credentials: the restricted user, a wrong key, an unknown user.
[ "$(t rbd --id vdisk ls rbd | sort | tr '\n' ' ')" = "a b " ] || fail "client.vdisk cannot list pool rbd"
rc=0
t rbd --keyring "$VDISK_CEPH_BAD_KEYRING" ls rbd >"$work/bad.out" 2>&1 || rc=$?
[ $rc = 13 ] || fail "a wrong key: rbd exited with $rc, not 13 (EACCES): $(cat "$work/bad.out")"
rc=0
t qemu-img info "rbd:rbd/a:id=nobody:conf=$CEPH_CONF" >"$work/nobody.out" 2>&1 || rc=$?
[ $rc != 0 ] || fail "qemu-img opened rbd/a as the unknown client.nobody"
echo "credentials: client.vdisk reads, a wrong key and an unknown user are refused"

# The OSD stopped and started again: I/O started meanwhile waits, then
# completes with the data.
cluster osd-stop "$dir" || fail "cluster.sh osd-stop"
t rbd export --no-progress rbd/a "$work/a.during" >"$work/during.out" 2>&1 &
bg=$!
sleep 1
kill -0 "$bg" 2>/dev/null || fail "rbd export ended while the OSD was down: $(cat "$work/during.out")"
cluster osd-start "$dir" || fail "cluster.sh osd-start"
rc=0
wait "$bg" || rc=$?
bg=
[ $rc = 0 ] || fail "rbd export across the OSD's restart exited with $rc: $(cat "$work/during.out")"
cmp "$work/a.bin" "$work/a.during" || fail "rbd export across the OSD's restart differs"
echo "OSD stopped and started: the export waited and read the same bytes"
read -r _ mon_kb _ osd_kb < <(cluster rss "$dir")
echo "RSS at the end: monitor $((mon_kb / 1024)) MiB, OSD $((osd_kb / 1024)) MiB"

mon_pid=$(cat "$dir/run/mon.a.pid")
osd_pid=$(cat "$dir/run/osd.0.pid")
t2=$(date +%s.%N)
cluster stop "$dir" || fail "cluster.sh stop"
t3=$(date +%s.%N)
for pid in "$mon_pid" "$osd_pid"; do
  if [ -r "/proc/$pid/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status"; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/ceph.conf" && fail "pid $pid still runs after cluster.sh stop"
  fi
done
[ ! -e "$dir" ] || fail "cluster.sh stop left $dir"
echo "cluster stopped in $(awk -v a="$t2" -v b="$t3" 'BEGIN { printf "%.2f", b - a }') s"
echo "PASS"
