#!/usr/bin/env bash
# Runs QEMU's own iotests (the bash ones that need only qemu-img and qemu-io,
# tests/iotests/README.md) with the real tools and/or with vdisk standing in
# for them (tests/iotests/qemu-img and qemu-io: "vdisk" and "vdisk io").
#
#   tests/iotests/run.sh [--real] [--vdisk] [--fmt raw|qcow2]... [--list FILE]
#                        [--expect FILE] [--work DIR] [-j N] [FMT:TEST | TEST]...
#
#   --real, --vdisk  the side(s) to run (default both)
#   --fmt FMT        the image formats (default raw and qcow2; format "file"
#                    protocol always)
#   --list FILE      the tests to run, "FMT TEST" a line (default: every
#                    candidate of select.sh on each format)
#   --expect FILE    "FMT TEST" lines that must pass with vdisk: the run fails
#                    (exit 1) when one of them does not, and only then
#   --work DIR       where scratch images and the .out.bad files go (default
#                    a new folder under $TMPDIR, kept for a look)
#   -j N             tests in parallel (default 2)
#   --recorded       the CTest run (iotests-vdisk, in CI): --vdisk on the
#                    tests recorded as passing with vdisk,
#                    lists/QEMU-VERSION/vdisk-pass, each of which must pass
#                    (QEMU-VERSION: the installed qemu-utils' upstream
#                    version, e.g. 7.2); about a minute
#   --recorded-all   the measurement: --vdisk on every test the real tools
#                    pass (lists/QEMU-VERSION/real-pass), expecting vdisk-pass
#                    to pass; prints the ratio to the real tools' count (tens
#                    of minutes)
#   TEST or FMT:TEST the tests to run instead of the list
#
# Prints "SIDE FMT TEST pass|fail|not run" per test, the counts per side and
# the ratio vdisk passes / real passes.  $VDISK or $VDISK_BUILD_DIR name the
# vdisk binary (see qemu-img here).  QEMU's tests come from
# $VDISK_QEMU_IOTESTS (default /var/cache/vdisk/qemu-iotests), fetched by
# fetch.sh when missing; a machine that cannot fetch them skips (exit 77).
# The vdisk side gets stand-ins for qemu-system, qemu-nbd and
# qemu-storage-daemon that refuse to run, so no real QEMU takes part in it.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
sides=() fmts=() list='' expect='' work='' jobs=2 tests=() recorded=''
while [ $# -gt 0 ]; do
  case $1 in
    --real) sides+=(real) ;;
    --vdisk) sides+=(vdisk) ;;
    --fmt) fmts+=("$2"); shift ;;
    --list) list=$2; shift ;;
    --expect) expect=$2; shift ;;
    --work) work=$2; shift ;;
    -j) jobs=$2; shift ;;
    --recorded) recorded=passing ;;
    --recorded-all) recorded=all ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) tests+=("$1") ;;
  esac
  shift
done
[ ${#sides[@]} -gt 0 ] || sides=(real vdisk)
[ ${#fmts[@]} -gt 0 ] || fmts=(raw qcow2)

# shellcheck source=../common/skip.sh
. "$here/../common/skip.sh"
export VDISK_TEST_NAME=${VDISK_TEST_NAME:-iotests-vdisk}
src=${VDISK_QEMU_IOTESTS:-/var/cache/vdisk/qemu-iotests}
if [ ! -f "$src/complete" ]; then
  "$here/fetch.sh" "$src" >&2 || skip_test "QEMU's iotests could not be fetched into $src"
fi
if [ -n "$recorded" ]; then
  # "qemu 1:7.2+dfsg-7+deb12u18" -> 7.2
  version=$(sed -n 's/^qemu \([0-9]*:\)\{0,1\}\([0-9]*\.[0-9]*\).*/\2/p' "$src/version")
  [ -f "$here/lists/$version/real-pass" ] ||
    skip_test "no recorded lists for QEMU $version ($src/version) in tests/iotests/lists"
  sides=(vdisk) list=$here/lists/$version/real-pass expect=$here/lists/$version/vdisk-pass
  [ "$recorded" = all ] || list=$expect
fi
iotests=$src/tests/qemu-iotests
command -v python3 >/dev/null || skip_test "python3 not found"

# The tests per format: "FMT TEST" lines.
# No dot in the name: iotests 197 and 215 refuse a TEST_DIR with anything
# but letters, digits, "-", "_" and "/".
auto_work=""
[ -n "$work" ] || { work=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-iotests-XXXXXX"); auto_work=1; }
mkdir -p "$work"
todo=$work/todo
if [ ${#tests[@]} -gt 0 ]; then
  for t in "${tests[@]}"; do
    case $t in
      *:*) echo "${t%%:*} ${t#*:}" ;;
      *) for f in "${fmts[@]}"; do echo "$f $t"; done ;;
    esac
  done >"$todo"
elif [ -n "$list" ]; then
  grep -Ev '^[[:space:]]*(#|$)' "$list" | awk '{print $1, $2}' >"$todo"
else
  "$here/select.sh" "$iotests" | awk '$2 == "candidate" {print $1}' |
    while read -r t; do for f in "${fmts[@]}"; do echo "$f $t"; done; done >"$todo"
fi

# Stand-ins for the programs the vdisk side must not use.
mkdir -p "$work/bin"
for p in qemu-system qemu-nbd qemu-storage-daemon; do
  cat >"$work/bin/$p" <<EOF
#!/bin/sh
[ "\$*" = "-machine help" ] && exit 0
echo "$p: not part of the vdisk iotests run" >&2
exit 1
EOF
  chmod +x "$work/bin/$p"
done

real_bin() { command -v "$1" || echo "$work/bin/$2"; }

# run_side SIDE: runs check once per format, writes "SIDE FMT TEST RESULT"
# lines to $work/SIDE.results.
run_side() {
  local side=$1 fmt out start
  : >"$work/$side.results"
  start=$(date +%s)
  # shellcheck disable=SC2013 # one word a line
  for fmt in $(awk '{print $1}' "$todo" | sort -u); do
    local names
    names=$(awk -v f="$fmt" '$1 == f {print $2}' "$todo")
    [ -n "$names" ] || continue
    out=$work/$side/$fmt
    rm -rf "$out"
    mkdir -p "$out"
    (
      export TEST_DIR=$out/scratch SOCK_DIR=$out/sock
      if [ "$side" = real ]; then
        QEMU_IMG_PROG=$(command -v qemu-img) QEMU_IO_PROG=$(command -v qemu-io)
        QEMU_PROG=$(real_bin "qemu-system-$(uname -m)" qemu-system)
        QEMU_NBD_PROG=$(real_bin qemu-nbd qemu-nbd)
        QSD_PROG=$(real_bin qemu-storage-daemon qemu-storage-daemon)
        export QEMU_IMG_PROG QEMU_IO_PROG QEMU_PROG QEMU_NBD_PROG QSD_PROG
      else
        export QEMU_IMG_PROG=$here/qemu-img QEMU_IO_PROG=$here/qemu-io
        export QEMU_PROG=$work/bin/qemu-system QEMU_NBD_PROG=$work/bin/qemu-nbd
        export QSD_PROG=$work/bin/qemu-storage-daemon
      fi
      cd "$iotests" || exit 1
      # shellcheck disable=SC2086 # one word a test
      nice -n 19 python3 check -tap -j "$jobs" "-$fmt" -file $names
    ) >"$out/tap" 2>&1
    # TAP: "ok FMT TEST", "ok FMT TEST # SKIP", "not ok FMT TEST".
    awk -v s="$side" '
      /^ok / && / # SKIP/ {print s, $2, $3, "not run"; next}
      /^ok / {print s, $2, $3, "pass"; next}
      /^not ok / {print s, $3, $4, "fail"}' "$out/tap" >>"$work/$side.results"
    # A test check did not report (it stopped early): a failure.
    for t in $names; do
      grep -q "^$side $fmt $t " "$work/$side.results" ||
        echo "$side $fmt $t fail" >>"$work/$side.results"
    done
  done
  echo $(($(date +%s) - start)) >"$work/$side.seconds"
}

status=0
for side in "${sides[@]}"; do
  if [ "$side" = real ]; then
    for p in qemu-img qemu-io; do
      command -v $p >/dev/null || skip_test "$p not found (the real side needs it)"
    done
  fi
  if [ "$side" = vdisk ]; then
    vdisk=${VDISK:-${VDISK_BUILD_DIR:-$here/../../build}/tools/vdisk}
    [ -x "$vdisk" ] || { echo "run.sh: $vdisk not found (set VDISK or VDISK_BUILD_DIR)" >&2; exit 2; }
    export VDISK=$vdisk
  fi
  run_side "$side"
  cat "$work/$side.results"
done

count() { grep -c " $2\$" "$work/$1.results"; }
echo "---"
for side in "${sides[@]}"; do
  printf '%s: %d pass, %d fail, %d not run (%d s); tap output and .out.bad files in %s/%s\n' \
    "$side" "$(count "$side" pass)" "$(count "$side" fail)" "$(count "$side" "not run")" \
    "$(cat "$work/$side.seconds")" "$work" "$side"
done
if [ -f "$work/real.results" ] && [ -f "$work/vdisk.results" ]; then
  real=$(count real pass)
  # vdisk passes among the tests the real tools pass.
  both=$(awk '$4 == "pass" && NF == 4 {k = $2 " " $3; if ($1 == "real") r[k] = 1; else v[k] = 1}
    END {for (k in v) if (k in r) n++; print n + 0}' "$work/real.results" "$work/vdisk.results")
  if [ "$real" -gt 0 ]; then
    echo "vdisk passes / real passes: $both / $real ($((100 * both / real))%)"
  fi
fi
if [ -n "$expect" ] && [ -f "$work/vdisk.results" ]; then
  while read -r f t _; do
    case $f in ''|'#'*) continue ;; esac
    if ! grep -q "^vdisk $f $t pass$" "$work/vdisk.results"; then
      echo "REGRESSION: $f $t is expected to pass with vdisk:" \
        "$(grep "^vdisk $f $t " "$work/vdisk.results" | cut -d' ' -f4- || echo 'not run')"
      status=1
    fi
  done <"$expect"
fi
# The CTest run leaves nothing behind when it passes.
if [ -n "$recorded" ] && [ $status -eq 0 ] && [ -n "$auto_work" ]; then
  rm -rf "$work"
fi
exit $status
