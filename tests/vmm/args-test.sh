#!/usr/bin/env bash
# vmm-args: vdisk-vmm's --mem takes the one size grammar of the library
# (vdisk_parse_size, vdisk/options.h) with a bare number in MiB, as QEMU's
# -m; it had a parser of its own that refused fractions ("1.5G") and
# hexadecimal.  Needs no KVM: a size that parses gets past the options to
# the next error (no /dev/kvm, or the missing firmware); one that does not
# is refused with the option named and exit status 1.
#
#   args-test.sh VDISK_VMM
set -euo pipefail
vmm=${1:?usage: args-test.sh VDISK_VMM}
[ -x "$vmm" ] || { echo "vdisk-vmm is not built here (x86-64 Linux only)"; exit 77; }
fail=0

for mem in 1.5G 256 4.5 0x100 256M 256m 4M 4096K 4194304b 1T 1024G " 64M" +64M 4097K; do
  set +e
  out=$("$vmm" --mem "$mem" --firmware /nonexistent/firmware.bin 2>&1)
  set -e
  if grep -q -- "--mem" <<<"$out"; then
    echo "FAIL: --mem '$mem' refused: $out"
    fail=1
  fi
done

for mem in 1.5X 3M 3.99M 2T 1.1T 64MiB 64MB 1e3 -64M 64M. 0.5b "" 16E 18446744073709551616; do
  set +e
  out=$("$vmm" --mem "$mem" --firmware /nonexistent/firmware.bin 2>&1)
  rc=$?
  set -e
  want="vdisk-vmm: --mem $mem: a size from 4M to 1T"
  if [ "$rc" -ne 1 ] || [ "$out" != "$want" ]; then
    echo "FAIL: --mem '$mem': status $rc, output '$out', expected '$want'"
    fail=1
  fi
done

[ "$fail" -eq 0 ] && echo "vmm-args: ok"
exit "$fail"
