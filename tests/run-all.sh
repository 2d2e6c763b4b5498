#!/usr/bin/env bash
# Installs the dependencies, builds vdisk, and runs the whole test suite:
#   1. the normal build, every test on the io_uring engine (QEMU's iotests
#      included); the qcow2 unit tests once more with the qemu programs
#      hidden from the PATH; the library, tools and tests also built with
#      GCC at -O3 (Release) and with Clang, -Werror;
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build (GCC Debug,
#      -Werror), every test on the worker-thread engine: each engine sees
#      every test once, the threads engine under the sanitizers (the tests
#      labelled ceph, each against a throw-away Ceph cluster of its own
#      (tests/ceph/README.md), run here only: librbd does its own I/O);
#      a ThreadSanitizer build: the stress tests, the virtio models and
#      vdisk serve on both engines;
#   3. every libFuzzer harness from its corpus, the harnesses sharing 480
#      seconds (tests/fuzz-ci.sh);
#   4. installation into a prefix, and the README's C example built against
#      it with pkg-config.
# Each phase prints how long it took.  Exits non-zero when anything fails.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
bash scripts/install-deps.sh

jobs=$(nproc)
status=0
# "== PHASE" lines carry the time since the start, so that a CI log shows
# where the minutes go.
t0=$(date +%s)
phase() { echo "== $* (at $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s)"; }

phase "build"
bash scripts/build.sh build -DVDISK_WERROR=ON

# Other compilers and optimisation levels, warnings as errors: GCC warns at
# -O3 about things it does not see at -O2, Clang about others.  (GCC Debug
# is the ASan build below.)
phase "build matrix: gcc Release (-O3) and clang RelWithDebInfo, -Werror"
bash scripts/build-matrix.sh build-matrix || status=1

uring_ok=1
if ! VDISK_ENGINE=uring ./build/tools/vdisk info --debug README.md >/dev/null 2>&1; then
  uring_ok=0
  echo "io_uring is not available here: the io_uring pass is skipped"
fi
if [ $uring_ok = 1 ]; then
  phase "tests, io_uring engine"
  (cd build && VDISK_ENGINE=uring ctest -LE ceph -j "$jobs" --output-on-failure) || status=1
fi
# Without io_uring, the normal build runs every test on the threads engine
# here (the ASan pass below runs them on it too).
if [ $uring_ok = 0 ]; then
  phase "tests, threads engine"
  (cd build && VDISK_ENGINE=threads ctest -LE ceph -j "$jobs" --output-on-failure) || status=1
fi

# The qcow2 unit tests need no qemu-img: once more with the qemu programs
# hidden from the PATH, as on a machine without qemu-utils (issue 17 item 6).
phase "qcow2 unit tests without qemu-img (qemu programs hidden from the PATH)"
bash tests/no-qemu.sh build || status=1

phase "build with AddressSanitizer + UndefinedBehaviorSanitizer"
bash scripts/build.sh build-asan -DVDISK_WERROR=ON -DVDISK_SANITIZE=address,undefined \
  -DCMAKE_BUILD_TYPE=Debug
phase "tests under ASan + UBSan, threads engine"
(cd build-asan && VDISK_ENGINE=threads ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -LE iotests -j "$jobs" --output-on-failure) ||
  status=1

# The stress tests again under ThreadSanitizer (only what they need is
# built).  Both engines: io_uring's rings are shared with the kernel through
# memory that TSan does not see, but the library hands requests between
# threads with its own locks and atomics, and TSan reports nothing there; the
# threads engine is the one with worker threads of its own.
phase "build with ThreadSanitizer (stress tests)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVDISK_WERROR=ON \
  -DVDISK_SANITIZE=thread >/dev/null
cmake --build build-tsan -j "$jobs" --target test-stress-qcow2-async vdisk_cli \
  test-vhost-user test-virtio-blk test-virtio-scsi test-unit-queue-uring test-unit-queue-threads \
  test-never-blocks-uring test-never-blocks-threads test-abi test-vhost-api test-nbd-hostile
phase "stress tests, the queue contract (quiesce), the ABI, the virtio models, the vhost-user library (its helper thread), the NBD server (its helper thread) and vdisk serve (two queues) under ThreadSanitizer"
engines=threads
if [ $uring_ok = 1 ]; then engines="uring threads"; fi
for engine in $engines; do
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 VDISK_ENGINE=$engine VDISK_STRESS_OPS=4000 \
    ctest -R '^stress|^unit-queue-|^never-blocks-|^abi$|^vhost-user$|^vhost-api$|^nbd-hostile$|^virtio-blk$|^virtio-scsi$' --output-on-failure) || status=1
done

phase "fuzzing: every harness for a bounded time"
bash tests/fuzz-ci.sh || status=1

phase "install and pkg-config"
bash tests/install-check.sh build || status=1

phase "done"
if [ $status = 0 ]; then echo "ALL TESTS PASSED"; else echo "SOME TESTS FAILED"; fi
exit $status
