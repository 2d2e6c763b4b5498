#!/usr/bin/env bash
# Builds vdisk (library, tools and tests) with -Werror with GCC at -O3
# (Release: GCC warns there about what it does not see at -O2) and with Clang
# (RelWithDebInfo); VDISK_MATRIX="gcc:Debug clang:Release ..." picks others:
#   scripts/build-matrix.sh [WORK_DIR]
# Each build goes to WORK_DIR/<compiler>-<type> (default: build-matrix/).
# The normal build (gcc RelWithDebInfo) and the sanitizer builds (gcc Debug,
# gcc RelWithDebInfo, clang RelWithDebInfo for the fuzzers) are made by
# tests/run-all.sh itself.  Exits non-zero when any
# build fails, after trying them all.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$src/build-matrix}
status=0
mkdir -p "$work"
for build in ${VDISK_MATRIX:-gcc:Release clang:RelWithDebInfo}; do
  cc=${build%%:*} type=${build#*:}
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
exit $status
