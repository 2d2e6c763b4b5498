/* SPDX-License-Identifier: MIT */
/*
 * tests/common/skips.c (CTest harness-skips): a test that cannot run what it
 * claims is skipped with its reason, never passed, and in CI (CI=true) a
 * skip fails unless tests/ci-skips.txt allows it (issue 15 item 7).
 *
 * Tools are hidden with a PATH of links to every program of the real PATH but
 * qemu-img, qemu-io and xorriso.  The programs run:
 *   test-skip-probe      (tests/common/skip_probe.c) one case needs qemu-img,
 *                        another does not
 *   test-hostile-qcow2   two of its 13 cases need qemu-img: the other 11 run
 *   test-unit-mmc        one of its cases needs xorriso: the others run
 *   test-ioerror         as an unprivileged user (setpriv, when run as root):
 *                        real_enospc cannot mount its tmpfs
 *   tests/common/skip.sh the shell tests' skip_test
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* A PATH without qemu-img, qemu-io and xorriso. */
static const char *hidden_path(void)
{
    const char *dir = scratch("nobin");
    static bool done;
    if (!done) {
        RUN_OK("mkdir -p '%s' && IFS=:; for d in $PATH; do for f in \"$d\"/*; do "
               "b=${f##*/}; [ -x \"$f\" ] && [ ! -d \"$f\" ] && [ ! -e '%s'/\"$b\" ] && "
               "[ \"$b\" != qemu-img ] && [ \"$b\" != qemu-io ] && [ \"$b\" != xorriso ] && ln -s \"$f\" '%s'/\"$b\"; "
               "done; done; true", dir, dir, dir);
        done = true;
    }
    ck_assert_int_ne(run("PATH='%s' command -v qemu-img", dir)->status, 0);
    ck_assert_int_eq(run("PATH='%s' command -v cp", dir)->status, 0);
    return dir;
}

/* Runs the probe with the environment ENV (assignments for env(1)). */
static struct run *probe(const char *env)
{
    const char *mark = scratch("mark");
    unlink(mark);
    return run("env -u CI -u VDISK_TEST_NAME -u VDISK_CI_SKIPS SKIP_PROBE_MARK='%s' %s '%s'",
               mark, env, SKIP_PROBE);
}

static bool probe_ran_the_other_case(void)
{
    return access(scratch("mark"), F_OK) == 0;
}

START_TEST(case_skip_is_not_a_pass)
{
    const char *nobin = hidden_path();
    /* Outside CI: exit 77, the skipped case and why, the other case ran. */
    struct run *r = probe(fmt("PATH='%s'", nobin));
    ck_assert_msg(r->status == 77, "exit %d (77 expected): %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "\nSKIP: needs_tool: qemu-img is not installed\n") &&
                  strstr(r->out, "1 part(s) of the cases did not run:\n"
                                 "SKIP: needs_tool: qemu-img is not installed\n"), "%s", r->out);
    ck_assert_msg(!strstr(r->out, "FAIL"), "%s", r->out);
    ck_assert_msg(probe_ran_the_other_case(), "runs_anyway did not run: %s", r->out);
    /* In CI: a failure, naming the test, the list and the reason. */
    r = probe(fmt("PATH='%s' CI=true", nobin));
    ck_assert_msg(r->status == 1, "CI=true: exit %d (1 expected): %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "FAIL: skip-probe skipped in CI (CI=true), where every tool is "
                                 "installed, and " VDISK_SOURCE_DIR "/tests/ci-skips.txt does "
                                 "not allow it: needs_tool: qemu-img is not installed\n"),
                  "%s", r->out);
    ck_assert(probe_ran_the_other_case());
    /* With the tool: a pass, nothing skipped, in CI too. */
    r = probe("CI=true");
    ck_assert_msg(r->status == 0, "exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_msg(!strstr(r->out, "SKIP"), "%s", r->out);
}
END_TEST

START_TEST(failure_wins_over_skip)
{
    struct run *r = probe(fmt("PATH='%s' SKIP_PROBE_MODE=fail", hidden_path()));
    ck_assert_msg(r->status == 1, "exit %d (1 expected): %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "this case fails") &&
                  strstr(r->out, "SKIP: needs_tool: qemu-img is not installed\n"), "%s", r->out);
}
END_TEST

START_TEST(program_skip)
{
    const char *nobin = hidden_path();
    struct run *r = probe(fmt("PATH='%s' SKIP_PROBE_MODE=require", nobin));
    ck_assert_msg(r->status == 77, "exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_str_eq(r->out, "SKIP: qemu-img is not installed\n");
    r = probe(fmt("PATH='%s' SKIP_PROBE_MODE=require CI=true", nobin));
    ck_assert_msg(r->status == 1, "exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_str_eq(r->out, "SKIP: qemu-img is not installed\n"
                             "FAIL: skip-probe skipped in CI (CI=true), where every tool is "
                             "installed, and " VDISK_SOURCE_DIR "/tests/ci-skips.txt does not "
                             "allow it: qemu-img is not installed\n");
    r = probe("SKIP_PROBE_MODE=require CI=true");
    ck_assert_msg(r->status == 0, "exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_str_eq(r->out, "qemu-img is there\n");
}
END_TEST

START_TEST(allow_list)
{
    const char *nobin = hidden_path(), *list = scratch("ci-skips.txt");
    const char *text = "# a comment\n\n"
                       "other-test   needs_tool: qemu-img is not installed\n"
                       "skip-*\t needs_tool: qemu-img is not *  \n";
    write_file(list, text, strlen(text));
    struct run *r = probe(fmt("PATH='%s' CI=true VDISK_CI_SKIPS='%s'", nobin, list));
    ck_assert_msg(r->status == 77, "allowed: exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_msg(!strstr(r->out, "FAIL"), "%s", r->out);
    /* The reason's pattern matches the whole reason, the test's the name. */
    text = "skip-probe needs_tool: qemu-img\nskip-probes needs_tool: *\n";
    write_file(list, text, strlen(text));
    r = probe(fmt("PATH='%s' CI=true VDISK_CI_SKIPS='%s'", nobin, list));
    ck_assert_msg(r->status == 1, "not allowed: exit %d: %s%s", r->status, r->out, r->err);
    /* An allow-list that cannot be read allows nothing. */
    r = probe(fmt("PATH='%s' CI=true VDISK_CI_SKIPS='%s.none'", nobin, list));
    ck_assert_msg(r->status == 1, "no list: exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "cannot read the CI allow-list"), "%s", r->out);

    /* The shipped list: the few skips CI accepts, nothing else. */
    ck_assert(ci_skip_allowed("vmm-guest", "/dev/kvm does not exist (no KVM on this host: load "
                                           "kvm_intel or kvm_amd, or run where KVM is available)"));
    ck_assert(ci_skip_allowed("vmm-watchdog", "KVM cannot run the guest here: vdisk-vmm: "
                                              "KVM_CREATE_VM: Operation not permitted"));
    ck_assert(ci_skip_allowed("vmm-linux", "the host CPU has no VMX or SVM (no vmx/svm in "
                                           "/proc/cpuinfo flags): KVM here cannot run an "
                                           "unmodified Linux kernel"));
    ck_assert(ci_skip_allowed("unit-engine-uring", "the uring engine is not available here: "
                                                   "io_uring_setup: Operation not permitted"));
    ck_assert(!ci_skip_allowed("vmm-guest", "xorriso not found (scripts/install-deps.sh "
                                            "installs it)"));
    ck_assert(!ci_skip_allowed("vmm-guest", "the host CPU has no VMX or SVM (no vmx/svm)"));
    ck_assert(!ci_skip_allowed("linux-vhost", "/dev/kvm does not exist (no KVM)"));
    ck_assert(!ci_skip_allowed("ioerror", "real_enospc: cannot mount a 2 MiB tmpfs at /x "
                                          "(Operation not permitted; it needs root)"));
    ck_assert(!ci_skip_allowed("hostile-qcow2", "compressed: qemu-img is not installed"));
}
END_TEST

/* hostile-qcow2 without qemu-img: its 2 cases that need it skip, and
 * check_survives leaves out qemu-img's check; the others run (they used to
 * be skipped all with the program). */
START_TEST(hostile_qcow2_without_qemu_img)
{
    const char *nobin = hidden_path();
    struct run *r = run("env -u CI -u VDISK_TEST_NAME PATH='%s' '%s'", nobin, HOSTILE_QCOW2);
    ck_assert_msg(r->status == 77, "exit %d (77 expected): %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "100%: Checks: 14, Failures: 0, Errors: 0\n"), "%s", r->out);
    ck_assert_msg(strstr(r->out, "3 part(s) of the cases did not run:\n"
                                 "SKIP: compressed: qemu-img is not installed\n"
                                 "SKIP: bitmaps: qemu-img is not installed\n"
                                 "SKIP: check_survives: qemu-img is not installed; its check of "
                                 "the repaired image was left out\n"), "%s", r->out);
    r = run("env -u VDISK_TEST_NAME CI=true PATH='%s' '%s'", nobin, HOSTILE_QCOW2);
    ck_assert_msg(r->status == 1, "CI=true: exit %d (1 expected): %s%s", r->status, r->out,
                  r->err);
    ck_assert_msg(strstr(r->out, "FAIL: hostile-qcow2 skipped in CI (CI=true)"), "%s", r->out);
}
END_TEST

/* unit-mmc without xorriso: xorriso_iso skips, the other cases run (it used
 * to pass without running). */
START_TEST(mmc_without_xorriso)
{
    struct run *r = run("env -u CI -u VDISK_TEST_NAME PATH='%s' '%s'", hidden_path(), UNIT_MMC);
    ck_assert_msg(r->status == 77, "exit %d (77 expected): %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "Failures: 0, Errors: 0\n") &&
                  strstr(r->out, "1 part(s) of the cases did not run:\n"
                                 "SKIP: xorriso_iso: xorriso is not installed\n"), "%s", r->out);
}
END_TEST

/* ioerror where no tmpfs can be mounted (an unprivileged user): real_enospc
 * is a skip with its reason, not a pass. */
START_TEST(real_enospc_without_tmpfs)
{
    const char *as_user = "";
    if (geteuid() == 0) {
        if (!have_program("setpriv"))
            SKIP_CASE("setpriv is not installed (to run test-ioerror unprivileged)");
        as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups";
        /* The user must reach the program. */
        if (run("%s test -x '%s'", as_user, IOERROR)->status != 0)
            SKIP_CASE("user 65534 cannot run %s", IOERROR);
    }
    struct run *r = run("env -u CI -u VDISK_TEST_NAME VDISK_TEST_TMPDIR=/tmp %s '%s'", as_user,
                        IOERROR);
    ck_assert_msg(r->status == 77, "exit %d (77 expected): %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "\nSKIP: real_enospc: cannot mount a 2 MiB tmpfs at ") &&
                  strstr(r->out, " (Operation not permitted; it needs root)\n"), "%s", r->out);
    ck_assert_msg(strstr(r->out, "100%: Checks: 6, Failures: 0, Errors: 0\n"), "%s", r->out);
    r = run("env -u VDISK_TEST_NAME CI=true VDISK_TEST_TMPDIR=/tmp %s '%s'", as_user, IOERROR);
    ck_assert_msg(r->status == 1, "CI=true: exit %d (1 expected): %s%s", r->status, r->out,
                  r->err);
}
END_TEST

/* The shell tests' skip_test: the same policy, the same list. */
START_TEST(shell_skip)
{
    const char *sh = VDISK_SOURCE_DIR "/tests/common/skip.sh";
    static const struct {
        const char *ci, *test, *reason;
        int status;
    } cases[] = {
        {"", "vmm-guest", "xorriso not found (scripts/install-deps.sh installs it)", 77},
        {"true", "vmm-guest", "xorriso not found (scripts/install-deps.sh installs it)", 1},
        {"true", "vmm-guest", "/dev/kvm does not exist (no KVM on this host)", 77},
        {"true", "vmm-linux", "/dev/kvm is kvm_pvm, a software hypervisor that cannot run an "
                              "unmodified Linux kernel", 77},
        {"true", "linux-vhost", "no guest kernel in /var/cache/vdisk/guest-kernel (run "
                                "scripts/fetch-guest-kernel.sh)", 1},
        {"1", "vmm-guest", "the test guest is not built (x)", 1},
        {"false", "vmm-guest", "the test guest is not built (x)", 77},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run *r = run("env CI='%s' VDISK_TEST_NAME='%s' bash -c '. \"$0\"; skip_test \"$1\"; "
                            "echo not reached' '%s' '%s'", cases[i].ci, cases[i].test, sh,
                            cases[i].reason);
        ck_assert_msg(r->status == cases[i].status, "CI=%s %s '%s': exit %d (%d expected): %s%s",
                      cases[i].ci, cases[i].test, cases[i].reason, r->status, cases[i].status,
                      r->out, r->err);
        char want[1024];
        snprintf(want, sizeof want, "SKIP: %s\n", cases[i].reason);
        if (cases[i].status == 77)
            ck_assert_str_eq(r->out, want);
        else
            ck_assert_msg(strncmp(r->out, want, strlen(want)) == 0 &&
                          strstr(r->out, fmt("FAIL: %s skipped in CI (CI=true)", cases[i].test)),
                          "%s", r->out);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("harness-skips");
    TCase *tc = tcase_create("skips");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, case_skip_is_not_a_pass);
    tcase_add_test(tc, failure_wins_over_skip);
    tcase_add_test(tc, program_skip);
    tcase_add_test(tc, allow_list);
    tcase_add_test(tc, hostile_qcow2_without_qemu_img);
    tcase_add_test(tc, mmc_without_xorriso);
    tcase_add_test(tc, real_enospc_without_tmpfs);
    tcase_add_test(tc, shell_skip);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
