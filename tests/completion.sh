#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/completion.sh SCRIPT VDISK: the bash completion SCRIPT, driven as
# bash drives it (COMP_WORDS/COMP_CWORD, then COMPREPLY), with the vdisk
# binary VDISK; every case compares the exact candidates.
set -u
script=$1 vdisk=$2
# shellcheck source=/dev/null
source "$script"
vdisk() { "$vdisk" "$@"; }
tmp=$(mktemp -d /var/tmp/vdisk-completion-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/a disk.img"
: > "$tmp/b.qcow2"
pass=0 fail=0
expect() {
  local want=$1; shift
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
  _vdisk
  local got="${COMPREPLY[*]}"
  if [ "$got" = "$want" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "completion: [$*] gave '$got', expected '$want'" >&2
  fi
}
expect "convert compare commit" vdisk co
expect "info" vdisk help in
expect "--backing-chain --debug --force-share --image-opts --output=" vdisk info --
expect "json" vdisk info --output=j
expect "vdi vmdk vpc vhdx" vdisk convert -O v
expect "cluster_size=" vdisk create -f qcow2 -o clu
expect "compat=v3,lazy_refcounts=" vdisk create -f qcow2 -o compat=v3,lazy
expect "static=" vdisk convert -f raw -O vdi -o st
expect "subformat=" vdisk create -f vpc -o sub
expect "leaks" vdisk check -r l
expect "list" vdisk part l
expect "extract" vdisk iso e
expect "writeback writethrough" vdisk convert -t w
expect "$tmp/a disk.img" vdisk info "$tmp/a"
expect "$tmp/b.qcow2" vdisk convert -O raw "$tmp/b"
echo "completion: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
