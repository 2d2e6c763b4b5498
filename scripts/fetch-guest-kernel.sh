#!/usr/bin/env bash
# Fetches Debian's cloud kernel (linux-image-cloud-amd64) for the tests that
# boot a real Linux guest, without installing it: `apt-get download` of the
# meta package and of the versioned linux-image-*-cloud-amd64 package it
# depends on, then `dpkg -x` into a cache directory. Nothing goes to /boot or
# /lib/modules, and the host's package database is not touched.
#
#   scripts/fetch-guest-kernel.sh [DIR]
#
# DIR defaults to $VDISK_GUEST_KERNEL_DIR, else /var/cache/vdisk/guest-kernel.
# Afterwards DIR holds:
#   vmlinuz   the kernel (a symbolic link into root/boot/)
#   modules   its module tree (a symbolic link to root/lib/modules/VERSION/)
#   version   the kernel release, e.g. 6.1.0-28-cloud-amd64
# Running it again does nothing when DIR is already complete.
set -euo pipefail

dir=${1:-${VDISK_GUEST_KERNEL_DIR:-/var/cache/vdisk/guest-kernel}}

report() {
  echo "guest kernel: $dir/vmlinuz -> $(readlink -f "$dir/vmlinuz")"
  echo "guest modules: $dir/modules -> $(readlink -f "$dir/modules")"
}

if [ -f "$dir/complete" ] && [ -e "$dir/vmlinuz" ] && [ -d "$dir/modules" ]; then
  report
  exit 0
fi

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "fetch-guest-kernel.sh: $tool not found (Debian only)" >&2; exit 1; }
done

mkdir -p "$dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download drops privileges to _apt when it can; let it write here.
chmod 0777 "$work"

download() {
  # A stale package list names a version the mirror no longer has: update
  # the lists once and try again.
  if ! (cd "$work" && apt-get download -q "$1"); then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -q
      (cd "$work" && apt-get download -q "$1")
    else
      echo "fetch-guest-kernel.sh: apt-get download $1 failed" >&2
      return 1
    fi
  fi
}

download linux-image-cloud-amd64
meta=$(ls "$work"/linux-image-cloud-amd64_*.deb)
# Depends: linux-image-6.1.0-28-cloud-amd64 (= 6.1.119-1)
pkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' |
      sed -n 's/^ *\(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' | head -n1)
if [ -z "$pkg" ]; then
  echo "fetch-guest-kernel.sh: no linux-image-*-cloud-amd64 in the Depends of $(basename "$meta")" >&2
  exit 1
fi
download "$pkg"
deb=$(ls "$work/${pkg}"_*.deb)

# Unpack into a fresh directory, then switch it in, so an interrupted run
# never leaves a half-filled tree that looks complete.
rm -rf "$dir/root.new"
dpkg -x "$deb" "$dir/root.new"
kernel=$(ls "$dir"/root.new/boot/vmlinuz-* | head -n1)
release=${kernel##*/vmlinuz-}
[ -d "$dir/root.new/lib/modules/$release" ] || {
  echo "fetch-guest-kernel.sh: $deb has no lib/modules/$release" >&2
  exit 1
}
rm -rf "$dir/root" "$dir/complete"
mv "$dir/root.new" "$dir/root"
ln -sfn "root/boot/vmlinuz-$release" "$dir/vmlinuz"
ln -sfn "root/lib/modules/$release" "$dir/modules"
echo "$release" > "$dir/version"
echo "$pkg $(dpkg-deb -f "$deb" Version)" > "$dir/complete"
report
