#!/usr/bin/env bash
# Builds every libFuzzer harness with clang, optimised (-O2 -g, the
# RelWithDebInfo flags: no -O0 Debug build) with ASan + UBSan, and runs each
# for a share of a total time budget from a copy of its committed corpus and
# crash folder.  Fails on any crash, leak, timeout or sanitizer report.  The
# repository's corpus is never written: the fuzzer works in a temporary copy
# (see fuzz/README.md for merging what it found back into fuzz/corpus).
#   tests/fuzz-ci.sh [TOTAL_SECONDS]   (default 480, or $VDISK_FUZZ_SECONDS)
# VDISK_FUZZ_ONLY="qcow2 iso9660" runs those harnesses only.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
total=${1:-${VDISK_FUZZ_SECONDS:-480}}
build=${VDISK_FUZZ_BUILD:-$src/build-fuzz}
CC=clang cmake -S "$src" -B "$build" -DVDISK_FUZZ=ON -DVDISK_SANITIZE=address,undefined \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
harnesses=${VDISK_FUZZ_ONLY:-$(cd "$src/fuzz" && ls *.c | grep -v '^replay\.c$' | sed 's/\.c$//')}
targets=
for h in $harnesses; do targets="$targets fuzz-$h"; done
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $targets >/dev/null
count=$(echo "$harnesses" | wc -w)
seconds=$((total / count))
if [ "$seconds" -lt 10 ]; then seconds=10; fi
echo "== fuzzing $count harnesses for ${seconds}s each (budget ${total}s)"
status=0
for h in $harnesses; do
  work=$(mktemp -d /var/tmp/vdisk-fuzz-XXXXXX)
  mkdir "$work/corpus"
  cp "$src/fuzz/corpus/$h/"* "$work/corpus/"
  find "$src/fuzz/crashes/$h" -maxdepth 1 -type f ! -name 'README*' \
    -exec cp {} "$work/corpus/" \;
  # -close_fd_mask=3: the harnesses' own output (vdisk io and part apply
  # print like the CLI) is dropped; libFuzzer's and the sanitizers' stays.
  if (cd "$work" && "$build/fuzz/fuzz-$h" -max_total_time="$seconds" -rss_limit_mb=3072 \
        -timeout=20 -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$work/" \
        "$work/corpus" > "$work/log" 2>&1); then
    echo "fuzz-$h: $(grep -E '^stat::number_of_executed_units' "$work/log" | awk '{print $2}') runs," \
      "$(grep -E '^stat::average_exec_per_sec' "$work/log" | awk '{print $2}')/s," \
      "corpus $(ls "$work/corpus" | wc -l) inputs"
    rm -rf "$work"
  else
    echo "fuzz-$h FAILED; the log and the input are in $work:" >&2
    tail -40 "$work/log" >&2
    status=1
  fi
done
exit $status
