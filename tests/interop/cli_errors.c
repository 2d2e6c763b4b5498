/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_errors.c: the vdisk command's behaviour on bad input:
 * one-line errors, exit status 1, never a crash; --help for every verb.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The command fails with exit 1 and exactly the one-line message WANT
 * (or, when WANT is NULL, some single line). */
static void fails_with(const char *want, const char *args)
{
    struct run *r = run("%s %s", vdisk_bin(), args);
    ck_assert_msg(r->status == 1, "'vdisk %s' exited %d (expected 1)\nstderr: %s", args,
                  r->status, r->err);
    ck_assert_msg(count_lines(r->err) >= 1, "'vdisk %s': no error message", args);
    if (want)
        ck_assert_msg(strcmp(r->err, want) == 0, "'vdisk %s':\n got: %s want: %s", args, r->err,
                      want);
    else
        ck_assert_msg(count_lines(r->err) == 1 || strstr(r->err, "Try 'vdisk"),
                      "'vdisk %s': more than one line:\n%s", args, r->err);
}

START_TEST(help_for_every_verb)
{
    static const char *const verbs[] = {"create", "info", "map", "io", "bench"};
    struct run *r = run("%s --help", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    char *top = strdup(r->out);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        char word[64];
        snprintf(word, sizeof word, "vdisk %s ", verbs[i]);
        ck_assert_msg(strstr(top, word), "vdisk --help does not list %s", verbs[i]);
        struct run *h = run("%s %s --help", vdisk_bin(), verbs[i]);
        ck_assert_msg(h->status == 0, "vdisk %s --help exited %d", verbs[i], h->status);
        ck_assert_msg(strstr(h->out, "usage: vdisk"), "vdisk %s --help: %s", verbs[i], h->out);
    }
    free(top);
    r = run("%s", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    r = run("%s --version", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
}
END_TEST

START_TEST(bad_input)
{
    char args[1024], want[1024];
    const char *img = scratch("x.raw");
    RUN_OK("%s create -q -f raw '%s' 1M", vdisk_bin(), img);

    fails_with("vdisk: unknown command 'frobnicate' (see 'vdisk --help')\n", "frobnicate");
    snprintf(args, sizeof args, "create -f raw '%s' 1Q", img);
    fails_with("vdisk: Invalid image size specified: '1Q'. You may use k, M, G, T, P or E "
               "suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and "
               "exabytes.\n", args);
    snprintf(args, sizeof args, "create -f raw '%s' -5", img);
    fails_with(NULL, args);
    snprintf(args, sizeof args, "create -f raw '%s'", img);
    fails_with("vdisk: Image creation needs a size parameter\n", args);
    snprintf(args, sizeof args, "create -f nosuchformat '%s' 1M", img);
    fails_with("vdisk: vdisk_create: cannot create images of format 'nosuchformat'\n", args);
    snprintf(args, sizeof args, "create -f raw -o preallocation=sideways '%s' 1M", img);
    fails_with("vdisk: vdisk_create: invalid preallocation mode 'sideways' for raw (expected "
               "off, falloc or full)\n", args);
    snprintf(args, sizeof args, "create -f raw -o bogus=1 '%s' 1M", img);
    fails_with("vdisk: vdisk_create: raw does not support the option 'bogus'\n", args);
    snprintf(args, sizeof args, "create -f raw -o novalue '%s' 1M", img);
    fails_with("vdisk: vdisk_options_parse: option 'novalue' has no value (expected "
               "key=value)\n", args);

    const char *missing = scratch("missing.raw");
    snprintf(args, sizeof args, "info '%s'", missing);
    snprintf(want, sizeof want,
             "vdisk: vdisk_open: Could not open '%s': No such file or directory\n", missing);
    fails_with(want, args);
    snprintf(args, sizeof args, "info --output=xml '%s'", img);
    fails_with("vdisk: --output must be used with human or json as argument.\n", args);
    snprintf(args, sizeof args, "info --no-such-option '%s'", img);
    fails_with(NULL, args);
    snprintf(args, sizeof args, "info -f qcow99 '%s'", img);
    fails_with("vdisk: vdisk_open: unknown format 'qcow99'\n", args);
    snprintf(args, sizeof args, "info '%s'", scratch_dir());
    snprintf(want, sizeof want, "vdisk: vdisk_open: %s: is a directory, not an image\n",
             scratch_dir());
    fails_with(want, args);
    fails_with("vdisk: Expecting one image file name\n", "info");
    snprintf(args, sizeof args, "map --start-offset=zz '%s'", img);
    fails_with(NULL, args);
    snprintf(args, sizeof args, "io -t sideways -c flush '%s'", img);
    fails_with("vdisk: vdisk_open: invalid cache mode 'sideways' (expected writeback, none, "
               "writethrough, directsync or unsafe)\n", args);
    snprintf(args, sizeof args, "io -i fast -c flush '%s'", img);
    fails_with("vdisk: invalid aio engine 'fast' (expected io_uring, threads or auto)\n", args);
    fails_with("vdisk: Expecting an image file name\n", "io -c flush");
    snprintf(args, sizeof args, "io -c flush '%s'", missing);
    snprintf(want, sizeof want,
             "vdisk: vdisk_open: Could not open '%s': No such file or directory\n", missing);
    fails_with(want, args);
}
END_TEST

START_TEST(engine_selection)
{
    const char *img = scratch("e.raw");
    RUN_OK("%s create -q -f raw '%s' 1M", vdisk_bin(), img);
    struct run *r = run("VDISK_ENGINE=threads %s info --debug '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, "engine: threads\n"), "%s", r->out);
    r = run("VDISK_ENGINE=bogus %s info '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: vdisk_open: VDISK_ENGINE: unknown engine 'bogus' "
                             "(expected auto, uring or threads)\n");
    r = run("VDISK_ENGINE=uring %s info --debug '%s'", vdisk_bin(), img);
    if (r->status == 0)
        ck_assert_msg(strstr(r->out, "engine: io_uring\n"), "%s", r->out);
    else
        ck_assert_msg(strstr(r->err, "does not allow"), "%s", r->err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-errors");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, help_for_every_verb);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, engine_selection);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
