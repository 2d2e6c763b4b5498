#!/usr/bin/env bash
# Installs a build into a scratch prefix, then builds and runs the README's
# C example against it with pkg-config, and a CMake project that uses
# find_package(vdisk).
#   tests/install-check.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
tmp=$(mktemp -d /var/tmp/vdisk-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig"
libdir=$(pkg-config --variable=libdir vdisk)

# The example between the markers in README.md.
sed -n '/<!-- example:begin -->/,/<!-- example:end -->/p' "$src/README.md" |
  sed '/^<!--/d; /^```/d' > "$tmp/example.c"
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$tmp/example.c" \
  $(pkg-config --cflags --libs vdisk)
"$build/tools/vdisk" create -q -f raw "$tmp/disk.img" 1M
"$build/tools/vdisk" io -f raw -c 'write -q -P 0x41 0 512' "$tmp/disk.img"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/example" "$tmp/disk.img")
expected="size 1048576 bytes, first byte 0x41"
if [ "$out" != "$expected" ]; then
  echo "install-check: example printed '$out', expected '$expected'" >&2
  exit 1
fi

# The bash completion is installed where bash-completion looks for it, and
# completes with the installed vdisk.
comp="$tmp/prefix/share/bash-completion/completions/vdisk"
out=$(PATH="$tmp/prefix/bin:$PATH" LD_LIBRARY_PATH="$libdir" bash -c 'source "$1"; COMP_WORDS=(vdisk conv)
  COMP_CWORD=1; _vdisk; echo "${COMPREPLY[*]}"' sh "$comp")
[ "$out" = "convert" ] || { echo "install-check: completion gave '$out'" >&2; exit 1; }

# Only vdisk_* functions declared in the installed headers leave the shared
# library, and no test code (the fault-injecting device) is installed.
bash "$src/tests/library-contents.sh" "$libdir/libvdisk.so" "$libdir/libvdisk.a" \
  "$(pkg-config --variable=includedir vdisk)" >/dev/null
# Nor do the tools: no installed file names its source, its type or its
# driver.  (Broader patterns would match the kernel's headers, as
# kvm_run's fault_ipa in vdisk-vmm's debug information.)
fault_re='fault\.[ch]|fault_disk|fault_policy|vdisk_driver_fault|the fault disk'
if grep -rlaE "$fault_re" "$tmp/prefix" >/dev/null; then
  echo "install-check: installed files hold the fault device:" \
    $(grep -rlaE "$fault_re" "$tmp/prefix") >&2
  exit 1
fi
soname=$(objdump -p "$libdir/libvdisk.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "libvdisk.so.0" ] || { echo "install-check: SONAME is '$soname'" >&2; exit 1; }

# find_package(vdisk) from a CMake project.
mkdir -p "$tmp/cm"
cp "$tmp/example.c" "$tmp/cm/example.c"
cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(example C)
find_package(vdisk REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE vdisk::vdisk)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/cm/build/example" "$tmp/disk.img")
[ "$out" = "$expected" ] || { echo "install-check: CMake example printed '$out'" >&2; exit 1; }
echo "install-check: 4 passed, 0 failed"
