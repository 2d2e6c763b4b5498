# shellcheck shell=bash
# tests/common/skip.sh: skips for the shell tests (sourced, bash), with the
# policy of the libcheck harness (tests/common/harness.h): a test that cannot
# run what it claims exits 77 with "SKIP: reason"; in CI (CI=true) that is a
# failure (exit status 1) unless tests/ci-skips.txt (or $VDISK_CI_SKIPS)
# allows the test to skip for that reason.  The test's name is
# $VDISK_TEST_NAME (each test script sets its CTest name as the default).

skip_sh_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ci_mode: whether CI=true (or CI=1) is in the environment.
ci_mode() {
  [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]
}

# ci_skip_allowed TEST REASON: whether a line "TEST-GLOB REASON-GLOB" of the
# allow-list matches TEST and the whole of REASON.
ci_skip_allowed() {
  local list=${VDISK_CI_SKIPS:-$skip_sh_dir/../ci-skips.txt} line t r
  [ -r "$list" ] || { echo "cannot read the CI allow-list $list"; return 1; }
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"} # leading blanks
    if [ -z "$line" ] || [ "${line:0:1}" = "#" ]; then
      continue
    fi
    t=${line%%[[:space:]]*}
    r=${line#"$t"}
    r=${r#"${r%%[![:space:]]*}"}
    r=${r%"${r##*[![:space:]]}"} # trailing blanks
    [ -n "$r" ] || continue
    # shellcheck disable=SC2053 # the list's fields are patterns
    if [[ $1 == $t && $2 == $r ]]; then
      return 0
    fi
  done <"$list"
  return 1
}

# skip_test REASON...: ends the test as skipped (exit status 77) with the
# reason, or, in CI when the allow-list does not allow it, as failed.
skip_test() {
  local name=${VDISK_TEST_NAME:-$(basename "$0" .sh)} reason="$*"
  echo "SKIP: $reason"
  if ci_mode && ! ci_skip_allowed "$name" "$reason"; then
    echo "FAIL: $name skipped in CI (CI=true), where every tool is installed, and ${VDISK_CI_SKIPS:-tests/ci-skips.txt} does not allow it: $reason"
    exit 1
  fi
  exit 77
}
