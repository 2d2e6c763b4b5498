#!/usr/bin/env bash
# Fetches QEMU's own block-layer tests (tests/qemu-iotests, and the python/
# folder its "check" script imports) from Debian's qemu source package, the
# version of the installed qemu-utils, with Debian's patches (the stable
# v7.2.x updates change tests and their expected outputs) applied to these
# folders only.  apt reads a source list of its own in a scratch folder, as
# scripts/fetch-qemu-samples.sh does: the host's apt setup is not touched.
#
#   tests/iotests/fetch.sh [DIR]
#
# DIR defaults to $VDISK_QEMU_IOTESTS, else /var/cache/vdisk/qemu-iotests.
# Afterwards DIR/tests/qemu-iotests holds the tests and DIR/version names the
# source package.  Running it again does nothing when DIR is complete.
set -euo pipefail

dir=${1:-${VDISK_QEMU_IOTESTS:-/var/cache/vdisk/qemu-iotests}}
if [ -f "$dir/complete" ]; then
  echo "qemu-iotests: $dir ($(cat "$dir/version"))"
  exit 0
fi
for tool in apt-get dpkg-query tar patch awk; do
  command -v "$tool" >/dev/null || { echo "fetch.sh: $tool not found (Debian only)" >&2; exit 1; }
done
version=$(dpkg-query -W -f='${source:Version}' qemu-utils 2>/dev/null) ||
  { echo "fetch.sh: qemu-utils is not installed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-qemu-iotests.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
mkdir -p "$work/lists/partial" "$work/parts"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" && echo
done >"$work/parts/src.sources"
: >"$work/src.list"
if [ -r /etc/apt/sources.list ]; then
  sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list >"$work/src.list"
fi
apt=(apt-get -q -o "Dir::Etc::SourceList=$work/src.list" -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::State::Lists=$work/lists" -o "Debug::NoLocking=1")
"${apt[@]}" update >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
(cd "$work" && "${apt[@]}" source --download-only "qemu=$version" >"$work/log" 2>&1) ||
  { cat "$work/log" >&2; exit 1; }
orig=$(find "$work" -maxdepth 1 -name 'qemu_*.orig.tar.*' | head -n 1)
debian=$(find "$work" -maxdepth 1 -name 'qemu_*.debian.tar.*' | head -n 1)
mkdir "$work/src" "$work/deb"
tar -xf "$orig" -C "$work/src" --strip-components=1 --wildcards \
  '*/tests/qemu-iotests/*' '*/python/*'
tar -xf "$debian" -C "$work/deb"
# Each patch of the series, cut down to the files under tests/qemu-iotests/
# and python/ (git-style diffs: one "diff --git a/X b/X" header a file).
grep -v '^#' "$work/deb/debian/patches/series" | while read -r p _; do
  [ -n "$p" ] || continue
  awk '/^diff --git /{keep = ($4 ~ /^b\/(tests\/qemu-iotests|python)\//)} keep' \
    "$work/deb/debian/patches/$p" >"$work/part.diff"
  [ -s "$work/part.diff" ] || continue
  patch -s -p1 -d "$work/src" <"$work/part.diff" >>"$work/patch.log" 2>&1 ||
    { echo "fetch.sh: $p does not apply:" >&2; cat "$work/patch.log" >&2; exit 1; }
done
mkdir -p "$dir"
rm -rf "$dir/tests" "$dir/python"
mkdir -p "$dir/tests"
cp -a "$work/src/tests/qemu-iotests" "$dir/tests/"
cp -a "$work/src/python" "$dir/"
echo "qemu $version" >"$dir/version"
touch "$dir/complete"
echo "qemu-iotests: $dir (qemu $version)"
