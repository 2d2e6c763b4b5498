#!/usr/bin/env bash
# tests/no-qemu.sh BUILD_DIR: runs the qcow2 unit tests (CTest unit-qcow2,
# tests/unit/qcow2.c, and unit-measure, tests/unit/measure.c) as on a
# machine without qemu-utils: with a PATH of links to every program of the
# real PATH except the qemu ones (qemu-img, qemu-io, qemu-nbd,
# qemu-storage-daemon, qemu-system-*, ...).  The tests must pass there: a
# skip (exit status 77) or any other status fails this script, whatever CI
# and tests/ci-skips.txt say.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
tests=(unit-qcow2 unit-measure)
for t in "${tests[@]}"; do
  [ -x "$build/tests/unit/test-$t" ] || { echo "no-qemu: $build/tests/unit/test-$t is not built"; exit 1; }
done

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

fail=0
for t in "${tests[@]}"; do
  status=0
  (cd "$build/tests/unit" && env PATH="$nobin" CK_DEFAULT_TIMEOUT=300 \
    VDISK_TEST_NAME=$t "$build/tests/unit/test-$t") || status=$?
  if [ $status = 0 ]; then
    echo "no-qemu: $t passed without the qemu programs"
  elif [ $status = 77 ]; then
    echo "no-qemu: $t skipped without the qemu programs: it must run there"
    fail=1
  else
    echo "no-qemu: $t failed without the qemu programs (exit status $status)"
    fail=1
  fi
done
exit $fail
