#!/usr/bin/env bash
# The layers keep to their doors (issue 17 item 3, doc/architecture.md):
#   - a file under formats/ includes, of the library's own headers, only
#     lib/driver.h (and headers of formats/ itself);
#   - no format touches the core's part of a device or request (->core),
#     or calls another driver's functions (->drv->fn());
#   - requests carry no untyped scratch slots: a driver's per-request state
#     is the typed area it declares (req_state_size);
#   - snapshot operations are named (enum snapshot_op), not 0/1/2;
#   - sizes are parsed in one place (size_parse, lib/size.c).
#   tests/layering.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: layering.sh SOURCE_DIR}
cd "$src"
fail=0
bad() { echo "layering: $*" >&2; fail=1; }

libh=$(cd lib && ls ./*.h | sed 's|^\./||')
for f in formats/*/*.[ch]; do
  dir=$(dirname "$f")
  while IFS= read -r inc; do
    name=${inc#\"}; name=${name%\"}
    if [ "$name" = driver.h ]; then continue; fi
    if [ -f "$dir/$name" ]; then continue; fi
    case $name in ../*/*.h) [ -f "$dir/$name" ] && continue ;; esac
    if printf '%s\n' $libh | grep -qx -- "$name"; then
      bad "$f includes lib/$name; formats include lib/driver.h alone"
    else
      bad "$f includes \"$name\", which is neither lib/driver.h nor a header of formats/"
    fi
  done < <(grep -o '^#include "[^"]*"' "$f" | sed 's/^#include //')
done

if grep -nE -- '->core\b' formats/*/*.[ch]; then
  bad "the lines above reach into the core's state"
fi
if grep -nE -- '->drv->[a-z_]+\(|->drv->[a-z_]+ *\?' formats/*/*.[ch]; then
  bad "the lines above call another driver's functions; use the dev_*() calls"
fi
if grep -nE '\b(uint64_t +u|void \*p)\[[0-9]+\];' lib/driver.h lib/internal.h; then
  bad "untyped scratch slots in a request"
fi
if grep -nE 'snapshot_op\((dev|d), *[0-9]' lib/*.c formats/*/*.c; then
  bad "snapshot operations by number"
fi
for d in $(grep -lE 'req_state\(' formats/*/*.c formats/*/*.h | xargs -n1 dirname | sort -u); do
  grep -qE '\.req_state_size *=' "$d"/*.c || bad "$d uses req_state() but its driver declares no req_state_size"
done

# One size parser: size_parse() is defined in lib/size.c alone.
defs=$(grep -lE '^int size_parse\(' lib/*.c formats/*/*.c tools/*/*.c 2>/dev/null || true)
[ "$defs" = lib/size.c ] || bad "size_parse is defined in: ${defs:-nowhere} (only lib/size.c should)"

[ $fail -eq 0 ] && echo "layering: all checks passed"
exit $fail
