#!/usr/bin/env bash
# Builds vdisk (library, tools and tests) with -Werror in the build types that
# users and distributions use, with GCC and with Clang:
#   scripts/build-matrix.sh [WORK_DIR]
# Each build goes to WORK_DIR/<compiler>-<type> (default: build-matrix/).
# The normal build (gcc RelWithDebInfo) and the sanitizer builds are made by
# tests/run-all.sh itself; this covers the rest.  Exits non-zero when any
# build fails, after trying them all.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$src/build-matrix}
status=0
mkdir -p "$work"
for cc in gcc clang; do
  for type in Debug RelWithDebInfo Release; do
    [ $cc = gcc ] && [ $type = RelWithDebInfo ] && continue
    dir=$work/$cc-$type
    echo "-- $cc $type"
    if ! cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER=$cc -DCMAKE_BUILD_TYPE=$type \
         -DVDISK_WERROR=ON >"$dir.log" 2>&1 ||
       ! cmake --build "$dir" -j "$(nproc)" >>"$dir.log" 2>&1; then
      echo "build failed: $cc $type (log follows)"
      grep -E "error|warning" "$dir.log" | head -40
      status=1
    fi
  done
done
exit $status
