#!/usr/bin/env bash
# Installs the dependencies, builds vdisk, and runs the whole test suite:
#   1. the normal build, every test on the io_uring engine, then again on the
#      worker-thread engine (the tests labelled ceph, each against a
#      throw-away Ceph cluster of its own (tests/ceph/README.md), run in the
#      threads pass and under ASan: librbd does its own I/O, the engine
#      plays no part in them); the qcow2 unit tests once more with the qemu
#      programs hidden from the PATH; the library, tools and tests also built with
#      GCC and Clang in Debug, RelWithDebInfo and Release with -Werror;
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build, every test;
#      a ThreadSanitizer build: the stress tests, the virtio models and
#      vdisk serve on both engines;
#   3. every libFuzzer harness from its corpus, the harnesses sharing 480
#      seconds (tests/fuzz-ci.sh);
#   4. installation into a prefix, and the README's C example built against
#      it with pkg-config.
# Exits non-zero when anything fails.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
bash scripts/install-deps.sh

jobs=$(nproc)
status=0

echo "== build"
bash scripts/build.sh build -DVDISK_WERROR=ON

# The build types users and distributions build (Debug, RelWithDebInfo,
# Release) with GCC and Clang, warnings as errors: GCC warns at -O3 about
# things it does not see at -O2.
echo "== build matrix: gcc and clang, Debug / RelWithDebInfo / Release, -Werror"
bash scripts/build-matrix.sh build-matrix || status=1

uring_ok=1
if ! VDISK_ENGINE=uring ./build/tools/vdisk info --debug README.md >/dev/null 2>&1; then
  uring_ok=0
  echo "io_uring is not available here: the io_uring pass is skipped"
fi
if [ $uring_ok = 1 ]; then
  echo "== tests, io_uring engine"
  (cd build && VDISK_ENGINE=uring ctest -LE ceph -j "$jobs" --output-on-failure) || status=1
fi
# QEMU's iotests (label iotests, a few minutes of qemu-img and qemu-io runs)
# run once: with the io_uring pass, or here when that one is skipped.
again=()
if [ $uring_ok = 1 ]; then again=(-LE iotests); fi
echo "== tests, threads engine"
(cd build && VDISK_ENGINE=threads ctest "${again[@]}" -j "$jobs" --output-on-failure) || status=1

# The qcow2 unit tests need no qemu-img: once more with the qemu programs
# hidden from the PATH, as on a machine without qemu-utils (issue 17 item 6).
echo "== qcow2 unit tests without qemu-img (qemu programs hidden from the PATH)"
bash tests/no-qemu.sh build || status=1

echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer"
bash scripts/build.sh build-asan -DVDISK_WERROR=ON -DVDISK_SANITIZE=address,undefined \
  -DCMAKE_BUILD_TYPE=Debug
echo "== tests under ASan + UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -LE iotests -j "$jobs" --output-on-failure) ||
  status=1

# The stress tests again under ThreadSanitizer (only what they need is
# built).  Both engines: io_uring's rings are shared with the kernel through
# memory that TSan does not see, but the library hands requests between
# threads with its own locks and atomics, and TSan reports nothing there; the
# threads engine is the one with worker threads of its own.
echo "== build with ThreadSanitizer (stress tests)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVDISK_WERROR=ON \
  -DVDISK_SANITIZE=thread >/dev/null
cmake --build build-tsan -j "$jobs" --target test-stress-qcow2-async vdisk_cli \
  test-vhost-user test-virtio-blk test-virtio-scsi test-unit-queue-uring test-unit-queue-threads \
  test-never-blocks-uring test-never-blocks-threads test-abi test-vhost-api test-nbd-hostile
echo "== stress tests, the queue contract (quiesce), the ABI, the virtio models, the vhost-user library (its helper thread), the NBD server (its helper thread) and vdisk serve (two queues) under ThreadSanitizer"
engines=threads
if [ $uring_ok = 1 ]; then engines="uring threads"; fi
for engine in $engines; do
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 VDISK_ENGINE=$engine VDISK_STRESS_OPS=4000 \
    ctest -R '^stress|^unit-queue-|^never-blocks-|^abi$|^vhost-user$|^vhost-api$|^nbd-hostile$|^virtio-blk$|^virtio-scsi$' --output-on-failure) || status=1
done

echo "== fuzzing: every harness for a bounded time"
bash tests/fuzz-ci.sh || status=1

echo "== install and pkg-config"
bash tests/install-check.sh build || status=1

if [ $status = 0 ]; then echo "ALL TESTS PASSED"; else echo "SOME TESTS FAILED"; fi
exit $status
