#!/usr/bin/env bash
# CTest's ceph-env (label ceph), run by tests/ceph/with-cluster.sh as a test
# of vdisk_ceph_add_test is: the environment it promises (CEPH_CONF, the
# VDISK_CEPH_* variables), and the OSD frozen with
# "$VDISK_CEPH_SCRIPT" osd-freeze: a client with an OSD timeout gets
# ETIMEDOUT, and after osd-thaw the same request succeeds.
set -euo pipefail
fail() {
  echo "FAIL: $*"
  exit 1
}
for v in CEPH_CONF VDISK_CEPH_DIR VDISK_CEPH_SCRIPT VDISK_CEPH_MON VDISK_CEPH_POOL \
  VDISK_CEPH_ADMIN_KEYRING VDISK_CEPH_USER_KEYRING VDISK_CEPH_BAD_KEYRING; do
  [ -n "${!v:-}" ] || fail "$v is not set"
  echo "$v=${!v}"
done
[ -r "$CEPH_CONF" ] || fail "cannot read $CEPH_CONF"
[[ $VDISK_CEPH_MON == v2:127.0.0.1:* ]] || fail "the monitor is not on 127.0.0.1: $VDISK_CEPH_MON"
t() { timeout -k 5 60 "$@"; }

t rbd create --size 1M "$VDISK_CEPH_POOL/img" || fail "rbd create"
t rbd --id vdisk info "$VDISK_CEPH_POOL/img" >/dev/null || fail "rbd info as client.vdisk"

"$VDISK_CEPH_SCRIPT" osd-freeze "$VDISK_CEPH_DIR" || fail "osd-freeze"
rc=0
t rbd --rados-osd-op-timeout 2 info "$VDISK_CEPH_POOL/img" >"$VDISK_CEPH_DIR/frozen.out" 2>&1 || rc=$?
"$VDISK_CEPH_SCRIPT" osd-thaw "$VDISK_CEPH_DIR" || fail "osd-thaw"
[ $rc != 0 ] || fail "rbd info succeeded with the OSD frozen"
grep -q "Connection timed out" "$VDISK_CEPH_DIR/frozen.out" ||
  fail "rbd info with the OSD frozen: exit status $rc, not a timeout: $(cat "$VDISK_CEPH_DIR/frozen.out")"
echo "the OSD frozen: rbd info timed out (exit status $rc)"
t rbd --rados-osd-op-timeout 20 info "$VDISK_CEPH_POOL/img" >/dev/null || fail "rbd info after osd-thaw"
echo "PASS"
