#!/usr/bin/env bash
# Runs a command against a throw-away Ceph cluster of its own (issue 19):
#
#   with-cluster.sh CMD [ARGS...]
#
# starts a cluster (tests/ceph/cluster.sh) in a new directory under $TMPDIR
# (default /tmp), runs CMD with the cluster's settings in the environment,
# then stops the cluster and removes the directory (kept with
# VDISK_TEST_KEEP=1).  Exits with CMD's status; 1, with the daemons' logs,
# when the cluster does not start (a failure, not a skip); 77 ("SKIP: ...",
# tests/common/skip.sh, a failure in CI) when Ceph is not installed.  When
# CMD fails, the end of the daemons' logs follows its output.
#
# CMD's environment (tests/ceph/README.md says more):
#   CEPH_CONF                 the cluster's ceph.conf: librados, librbd, the
#                             rbd and ceph commands and qemu-img's rbd: driver
#                             read it; it makes a client client.admin
#   VDISK_CEPH_DIR            the cluster's directory
#   VDISK_CEPH_SCRIPT         tests/ceph/cluster.sh, for
#                             "$VDISK_CEPH_SCRIPT" osd-stop "$VDISK_CEPH_DIR"
#                             (and osd-start, osd-kill, osd-freeze, osd-thaw)
#   VDISK_CEPH_MON            the monitor's address, v2:127.0.0.1:PORT
#   VDISK_CEPH_POOL           rbd: a pool initialised for RBD
#   VDISK_CEPH_ADMIN_KEYRING  client.admin's keyring
#   VDISK_CEPH_USER_KEYRING   client.vdisk's keyring (caps: profile rbd,
#                             pool rbd only)
#   VDISK_CEPH_BAD_KEYRING    a keyring for client.admin with a wrong key
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../common/skip.sh
. "$here/../common/skip.sh"

[ $# -ge 1 ] || { echo "usage: with-cluster.sh CMD [ARGS...]" >&2; exit 2; }
for tool in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd; do
  command -v "$tool" >/dev/null ||
    skip_test "$tool not found (apt-get install ceph-mon ceph-osd ceph-common; scripts/install-deps.sh installs them)"
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-ceph.XXXXXX")
watchdog=
# shellcheck disable=SC2317 # run by the trap
cleanup() {
  [ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null || true
  bash "$here/cluster.sh" stop "$dir" || true
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# Should this script be killed with SIGKILL (a CTest timeout), a process in a
# session of its own stops the cluster.
# shellcheck disable=SC2016 # the inner script's own arguments
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; bash "$2" stop "$3"' \
  watchdog $$ "$here/cluster.sh" "$dir" </dev/null >/dev/null 2>&1 &
watchdog=$!

bash "$here/cluster.sh" start "$dir" >/dev/null || exit 1
set -a
# shellcheck source=/dev/null
. "$dir/cluster.env"
set +a
export VDISK_CEPH_SCRIPT=$here/cluster.sh

rc=0
"$@" || rc=$?
if [ $rc != 0 ] && [ $rc != 77 ]; then
  echo "with-cluster.sh: '$*' exited with status $rc; the cluster's logs:" >&2
  bash "$here/cluster.sh" log-tail "$dir" 30 || true
fi
exit $rc
