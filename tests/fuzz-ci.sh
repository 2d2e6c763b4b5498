#!/usr/bin/env bash
# Builds every libFuzzer harness with clang (ASan + UBSan) and runs each for
# a bounded time from its committed corpus.  Fails on any crash, leak,
# timeout or sanitizer report.
#   tests/fuzz-ci.sh [SECONDS_PER_HARNESS]   (default 60, or $VDISK_FUZZ_SECONDS)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-${VDISK_FUZZ_SECONDS:-60}}
build=$src/build-fuzz
CC=clang cmake -S "$src" -B "$build" -DVDISK_FUZZ=ON -DVDISK_SANITIZE=address,undefined \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
harnesses=$(cd "$src/fuzz" && ls *.c | grep -v '^replay\.c$' | sed 's/\.c$//')
for h in $harnesses; do
  cmake --build "$build" -j "$(nproc)" --target "fuzz-$h" >/dev/null
done
status=0
for h in $harnesses; do
  work=$(mktemp -d /var/tmp/vdisk-fuzz-XXXXXX)
  cp "$src/fuzz/corpus/$h/"* "$work/"
  echo "== fuzz-$h for ${seconds}s"
  if (cd "$work" && "$build/fuzz/fuzz-$h" -max_total_time="$seconds" -rss_limit_mb=3072 \
        -timeout=20 -print_final_stats=1 "$work" > "$work/log" 2>&1); then
    grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE" "$work/log" | tail -2
    rm -rf "$work"
  else
    echo "fuzz-$h FAILED; the log and the input are in $work:" >&2
    tail -40 "$work/log" >&2
    status=1
  fi
done
exit $status
