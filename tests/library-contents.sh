#!/usr/bin/env bash
# What the shipped library holds (issue 17 item 5):
#   - libvdisk.so exports only vdisk_* functions, each one declared in a
#     public header;
#   - no test code: neither libvdisk.so nor libvdisk.a holds the
#     fault-injecting device of the reliability tests (tests/common/fault.c)
#     or any symbol of it, and the public headers do not mention it;
#   - with SOURCE_DIR, no product source (lib/, formats/, tools/, include/)
#     refers to it.
# Run by CTest on the build tree (library-contents) and by
# tests/install-check.sh on the installed files.
#   tests/library-contents.sh LIBVDISK_SO LIBVDISK_A INCLUDE_DIR [SOURCE_DIR]
set -euo pipefail
so=$1 a=$2 inc=$3 src=${4:-}
fail=0
bad() { echo "library-contents: $*" >&2; fail=1; }

for f in "$so" "$a"; do
  [ -f "$f" ] || { echo "library-contents: $f: no such file" >&2; exit 1; }
done
headers=("$inc"/vdisk/*.h)
[ -f "${headers[0]}" ] || { echo "library-contents: no headers in $inc/vdisk" >&2; exit 1; }

# 1. The exported functions: vdisk_* and declared in a public header.  (The
#    version node VDISK_0 is an absolute symbol, not a function.)
exported=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || bad "$so exports nothing"
for s in $exported; do
  case $s in
    vdisk_*) grep -qw -- "$s" "${headers[@]}" || bad "$s is exported but no header in $inc/vdisk declares it" ;;
    *) bad "$s is exported without the vdisk_ prefix" ;;
  esac
done

# 2. No fault-device code or symbol in either library, whether exported or
#    not.  Its functions are fault_*, its driver vdisk_driver_fault, its
#    object fault.c.o; `default` and the like do not match.
fault_re='(^|[^[:alnum:]])(fault_[[:alnum:]_]*|[[:alnum:]_]*_fault|fault\.c(\.o)?)$'
syms=$(nm -a "$so" 2>/dev/null | awk '{print $NF}' | grep -E "$fault_re" | sort -u || true)
[ -z "$syms" ] || bad "$so holds fault-device symbols:" $syms
# A stripped library has no local symbols left: its strings tell too.
if grep -qa 'the fault disk is already open' "$so"; then
  bad "$so holds the fault device's messages"
fi
members=$(ar t "$a" | grep -E "$fault_re" || true)
[ -z "$members" ] || bad "$a holds the fault device's object:" $members
syms=$(nm -A "$a" 2>/dev/null | awk '{print $NF}' | grep -E "$fault_re" | sort -u || true)
[ -z "$syms" ] || bad "$a holds fault-device symbols:" $syms

# 3. The public headers, and with SOURCE_DIR the product sources, do not
#    mention the fault device's calls or header.
ref_re='(^|[^[:alnum:]_])(fault_[a-z_]+|fault\.h|formats/fault)'
hits=$(grep -rEln "$ref_re" "$inc" || true)
[ -z "$hits" ] || bad "the headers in $inc refer to the fault device:" $hits
if [ -n "$src" ]; then
  hits=$(cd "$src" && grep -rEln "$ref_re" lib formats tools include CMakeLists.txt || true)
  [ -z "$hits" ] || bad "product sources refer to the fault device:" $hits
  [ -z "$(ls -A "$src/formats/fault" 2>/dev/null)" ] ||
    bad "$src/formats/fault holds files: the fault device is test code (tests/common)"
fi

if [ $fail = 0 ]; then
  echo "library-contents: $(echo "$exported" | wc -l) exported functions, all declared; no fault device"
fi
exit $fail
