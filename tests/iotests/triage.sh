#!/usr/bin/env bash
# Sorts the vdisk failures of a run.sh work folder by cause: for each failed
# test, the distinct signatures of the lines vdisk printed that QEMU's .out
# does not have (a qemu-io command vdisk lacks, a flag it refuses, a message
# worded differently, ...), then the signatures with how many tests each
# one appears in, most first.  A help for writing FAILURES.md, not a test.
#
#   tests/iotests/triage.sh WORK [IOTESTS_DIR]
set -uo pipefail
work=$1
iotests=${2:-${VDISK_QEMU_IOTESTS:-/var/cache/vdisk/qemu-iotests}/tests/qemu-iotests}
awk '$1 == "vdisk" && $4 == "fail" {print $2, $3}' "$work/vdisk.results" |
while read -r fmt t; do
  bad=$work/vdisk/$fmt/scratch/$t/$t.out.bad
  if [ ! -f "$bad" ]; then
    echo "$fmt $t|no output (stopped early)"
    continue
  fi
  diff "$iotests/$t.out" "$bad" | sed -n 's/^> //p' | sed -E \
    -e 's/^command "([^"]*)" not found.*/qemu-io command "\1" missing/' \
    -e "s/^([a-z_]+): invalid option -- '(.)'.*/qemu-io \"\1 -\2\" missing/" \
    -e 's/[0-9]+/N/g' -e 's#/[^ ]*/##g' | sort -u | sed "s/^/$fmt $t|/"
done >"$work/triage.lines"
# Per test, a signature once; then count tests per signature.
cut -d'|' -f2 "$work/triage.lines" | sort | uniq -c | sort -rn
