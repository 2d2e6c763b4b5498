/* SPDX-License-Identifier: MIT */
/*
 * tests/common/skip_probe.c: a libcheck program that the harness-skips test
 * (tests/common/skips.c) runs to see what the harness makes of a skip.
 *
 * SKIP_PROBE_MODE selects what it does:
 *   cases    (the default) case needs_tool needs qemu-img (CASE_REQUIRE_PROGRAM),
 *            case runs_anyway writes "ran" to $SKIP_PROBE_MARK
 *   fail     as cases, and case fails fails
 *   require  main() requires qemu-img for the whole program
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

START_TEST(needs_tool)
{
    CASE_REQUIRE_PROGRAM("qemu-img");
    RUN_OK("qemu-img --version");
}
END_TEST

START_TEST(runs_anyway)
{
    const char *mark = getenv("SKIP_PROBE_MARK");
    ck_assert_ptr_nonnull(mark);
    write_file(mark, "ran", 3);
}
END_TEST

START_TEST(fails)
{
    ck_abort_msg("this case fails");
}
END_TEST

int main(void)
{
    const char *mode = getenv("SKIP_PROBE_MODE");
    if (!mode)
        mode = "cases";
    if (strcmp(mode, "require") == 0) {
        require_program("qemu-img");
        printf("qemu-img is there\n");
        return 0;
    }
    Suite *s = suite_create("skip-probe");
    TCase *tc = tcase_create("probe");
    tcase_add_test(tc, needs_tool);
    tcase_add_test(tc, runs_anyway);
    if (strcmp(mode, "fail") == 0)
        tcase_add_test(tc, fails);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
