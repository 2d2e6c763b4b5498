#!/usr/bin/env bash
# tests/no-qemu.sh BUILD_DIR: runs the qcow2 unit tests (CTest unit-qcow2,
# tests/unit/qcow2.c) as on a machine without qemu-utils: with a PATH of
# links to every program of the real PATH except the qemu ones (qemu-img,
# qemu-io, qemu-nbd, qemu-storage-daemon, qemu-system-*, ...).  The test
# must pass there: a skip (exit status 77) or any other status fails this
# script, whatever CI and tests/ci-skips.txt say.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
test_bin=$build/tests/unit/test-unit-qcow2
[ -x "$test_bin" ] || { echo "no-qemu: $test_bin is not built"; exit 1; }

nobin=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-noqemu.XXXXXX")
trap 'rm -rf "$nobin"' EXIT
IFS=: read -r -a dirs <<<"$PATH"
declare -A seen
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  links=()
  for f in "$d"/*; do
    b=${f##*/}
    case $b in qemu*) continue ;; esac
    # The first of a name on the PATH wins, as in a lookup.
    if [ -x "$f" ] && [ ! -d "$f" ] && [ -z "${seen[$b]:-}" ]; then
      seen[$b]=1
      links+=("$f")
    fi
  done
  if [ ${#links[@]} -gt 0 ]; then
    ln -s -t "$nobin" -- "${links[@]}"
  fi
done
if PATH=$nobin command -v qemu-img >/dev/null 2>&1; then
  echo "no-qemu: qemu-img is still on the PATH"
  exit 1
fi

status=0
(cd "$build/tests/unit" && env PATH="$nobin" CK_DEFAULT_TIMEOUT=300 \
  VDISK_TEST_NAME=unit-qcow2 "$test_bin") || status=$?
if [ $status = 0 ]; then
  echo "no-qemu: unit-qcow2 passed without the qemu programs"
  exit 0
fi
if [ $status = 77 ]; then
  echo "no-qemu: unit-qcow2 skipped without the qemu programs: it must run there"
else
  echo "no-qemu: unit-qcow2 failed without the qemu programs (exit status $status)"
fi
exit 1
