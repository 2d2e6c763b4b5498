#!/usr/bin/env bash
# Fetches the sample images of QEMU's own tests
# (tests/qemu-iotests/sample_images: VHD, VHDX, VMDK, Parallels, bochs,
# cloop, DMG, ...) from Debian's qemu source package, the version of the
# installed qemu-utils, for the sample-images test.  apt reads a source
# list of its own in a scratch folder: the host's apt configuration and
# package database are not touched.
#
#   scripts/fetch-qemu-samples.sh [DIR]
#
# DIR defaults to $VDISK_QEMU_SAMPLES, else /var/cache/vdisk/qemu-samples.
# Afterwards DIR holds the sample images as they are in QEMU's tree
# (bzip2-compressed) and a file "version" naming the source package.
# Running it again does nothing when DIR is complete.
set -euo pipefail

dir=${1:-${VDISK_QEMU_SAMPLES:-/var/cache/vdisk/qemu-samples}}
if [ -f "$dir/complete" ]; then
  echo "QEMU sample images: $dir ($(cat "$dir/version"))"
  exit 0
fi
for tool in apt-get dpkg-query tar; do
  command -v "$tool" >/dev/null || { echo "fetch-qemu-samples.sh: $tool not found (Debian only)" >&2; exit 1; }
done
version=$(dpkg-query -W -f='${source:Version}' qemu-utils 2>/dev/null) ||
  { echo "fetch-qemu-samples.sh: qemu-utils is not installed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-qemu-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
mkdir -p "$work/lists/partial"
# The deb-src lines of the host's own suites (Debian 12's deb822 sources,
# or the one-line sources.list).
{
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" && echo
  done
} >"$work/src.sources"
: >"$work/src.list"
if [ -r /etc/apt/sources.list ]; then
  sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list >"$work/src.list"
fi
mkdir -p "$work/parts"
cp "$work/src.sources" "$work/parts/src.sources"
apt=(apt-get -q -o "Dir::Etc::SourceList=$work/src.list" -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::State::Lists=$work/lists" -o "Debug::NoLocking=1")
"${apt[@]}" update >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
(cd "$work" && "${apt[@]}" source --download-only "qemu=$version" >"$work/log" 2>&1) ||
  { cat "$work/log" >&2; exit 1; }
orig=$(ls "$work"/qemu_*.orig.tar.* | head -1)
tar -xf "$orig" -C "$work" --wildcards '*/tests/qemu-iotests/sample_images/*'
mkdir -p "$dir"
cp "$work"/qemu-*/tests/qemu-iotests/sample_images/* "$dir/"
echo "qemu $version" >"$dir/version"
touch "$dir/complete"
echo "QEMU sample images: $dir (qemu $version)"
