#!/usr/bin/env bash
# shellcheck disable=SC2016 # the patterns match a literal $
# Sorts QEMU's iotests into the ones vdisk can stand in for (bash tests that
# run only qemu-img and qemu-io) and the excluded classes, one line a test:
#   TEST  CLASS
# CLASS is "candidate" or the reason it is left out:
#   python     a Python test (iotests.py drives qemu-system over QMP)
#   qemu       runs qemu-system ($QEMU, common.qemu, _launch_qemu,
#              _require_drivers/_require_devices ask qemu-system)
#   nbd        runs qemu-nbd or qemu-storage-daemon (or FUSE exports); a
#              test that only names them in _supported_proto stays in
#
#   tests/iotests/select.sh IOTESTS_DIR
set -euo pipefail
cd "$1"
for t in [0-9][0-9][0-9] tests/*; do
  case $t in *.out|*.out.*|*.py) continue ;; esac
  [ -f "$t" ] || continue
  name=${t#tests/}
  if head -n 1 "$t" | grep -q python; then
    class=python
  elif grep -Eq '(\$QEMU|\$\{QEMU\})([^_A-Za-z]|$)|common\.qemu|_launch_qemu|_require_drivers|_require_devices|_require_one_device_of|QEMU_PROG' "$t"; then
    class=qemu
  elif grep -Ev '^[[:space:]]*#|_(un)?supported_proto' "$t" |
       grep -E 'QEMU_NBD|\$QSD|_launch_qsd|common\.nbd|qemu-nbd|QSD_PROG|fuse' >/dev/null; then
    class=nbd
  else
    class=candidate
  fi
  printf '%s %s\n' "$name" "$class"
done
