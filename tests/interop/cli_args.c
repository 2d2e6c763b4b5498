/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_args.c: vdisk's arguments read as qemu-img reads them
 * (issue 21, item 1): options after the file names, "--" ending the
 * options, -o help and -o ? listing a format's create options in
 * qemu-img's layout, -o size=, and mistyped verbs and options.  Each case runs qemu-img and vdisk on
 * the same input and compares their outputs, exit statuses and images.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Options standing after the file names, as qemu-img (getopt) permutes
 * them. */
START_TEST(options_after_names)
{
    same_as_qemu_img("create", "q.qcow2 1M -f qcow2 -o cluster_size=4k");
    same_as_qemu_img("info", "q.qcow2 --output=json");
    same_as_qemu_img("info", "q.qcow2 -f qcow2");
    same_as_qemu_img("check", "q.qcow2 --output=json -f qcow2");
    same_as_qemu_img("map", "q.qcow2 --output=json");
    same_as_qemu_img("measure", "q.qcow2 -O qcow2 --output=json");
    same_as_qemu_img("compare", "q.qcow2 q.qcow2 -f qcow2 -F qcow2");
    RUN_OK("cd '%s' && qemu-io -f qcow2 -c 'write -P 7 4k 8k' q.qcow2 >/dev/null && "
           "qemu-img convert q.qcow2 qq.raw -O raw && '%s' convert q.qcow2 v.raw -O raw -f qcow2 "
           "&& cmp qq.raw v.raw", scratch_dir(), vdisk_bin());
    RUN_OK("cd '%s' && qemu-img convert q.qcow2 qc.qcow2 -O qcow2 -c && '%s' convert q.qcow2 "
           "vc.qcow2 -O qcow2 -c && qemu-img compare -q qc.qcow2 vc.qcow2", scratch_dir(),
           vdisk_bin());
    /* resize: the size is the last argument, whatever its sign; options
     * before and after the name. */
    RUN_OK("cd '%s' && cp q.qcow2 r.qcow2 && '%s' resize r.qcow2 -q +1M && '%s' resize -f qcow2 "
           "r.qcow2 --shrink -512k && '%s' resize r.qcow2 -- +4k", scratch_dir(), vdisk_bin(),
           vdisk_bin(), vdisk_bin());
    same_as_qemu_img("info", "r.qcow2 --output=json");
    struct run *r = run("cd '%s' && qemu-img info --output=json r.qcow2 | grep '\"virtual-size\"'",
                        scratch_dir());
    ck_assert_str_eq(r->out, "    \"virtual-size\": 1576960,\n");
    same_as_qemu_img("resize", "r.qcow2 -1k");
    /* "--" ends the options: a file whose name starts with '-'. */
    RUN_OK("cd '%s' && cp q.qcow2 ./-dash.qcow2", scratch_dir());
    same_as_qemu_img("info", "--output=json -- -dash.qcow2");
    same_as_qemu_img("check", "-f qcow2 -- -dash.qcow2");
}
END_TEST

/* The create options of FORMAT as vdisk lists them (VERB_ARGS with %s for
 * FORMAT) against qemu-img create -o help: qemu-img's layout
 * ("Supported F options:", then "  NAME=<TYPE>" padded to 22 and " - "
 * and a line of help), each NAME and TYPE one qemu-img lists too (raw's
 * and vpc's preallocation, which qemu-img keeps at the file protocol,
 * aside), in qemu-img's order. */
static void lists_like_qemu_img(const char *format, const char *verb_args)
{
    struct run *q = run("qemu-img create -f %s -o help 2>/dev/null", format);
    ck_assert_int_eq(q->status, 0);
    char *qout = strdup(q->out);
    struct run *v = run("'%s' %s", vdisk_bin(), fmt(verb_args, format));
    ck_assert_msg(v->status == 0, "%s", v->err);
    char *vout = strdup(v->out);
    char head[64];
    snprintf(head, sizeof head, "Supported %s options:\n", format);
    ck_assert_msg(strncmp(vout, head, strlen(head)) == 0, "%s", vout);
    char *save = NULL, *prev = NULL;
    unsigned n = 0;
    for (char *line = strtok_r(vout + strlen(head), "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '='), *dash = strstr(line, " - ");
        ck_assert_msg(!strncmp(line, "  ", 2) && eq && dash && eq < dash, "line '%s'", line);
        size_t left = (size_t)(dash - line);
        if (left > 24)
            ck_assert_msg(line[left - 1] != ' ', "line '%s' pads past its name", line);
        else
            ck_assert_msg(left == 24, "line '%s' is not padded to 22", line);
        char *spec = strndup(line + 2, (size_t)(strchr(line, '>') - line - 1));
        if (strncmp(spec, "preallocation=", 14) != 0) {
            char want[160];
            snprintf(want, sizeof want, "\n  %s", spec);
            ck_assert_msg(strstr(qout, want), "%s: qemu-img does not list '%s'", format, spec);
        }
        if (prev)
            ck_assert_msg(strcmp(prev, spec) < 0, "'%s' is listed after '%s'", spec, prev);
        free(prev);
        prev = spec;
        n++;
    }
    ck_assert_uint_gt(n, 1);
    free(prev);
    free(qout);
    free(vout);
}

START_TEST(o_help)
{
    static const char *const formats[] = {"qcow2", "raw", "vmdk", "vpc", "vdi", "vhdx"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        lists_like_qemu_img(formats[i], "create -f %s -o help");
        lists_like_qemu_img(formats[i], "create -o ? -f %s");
        lists_like_qemu_img(formats[i], "convert -O %s -o cluster_size=4k,help");
        /* (qemu-img 7.2 refuses "help" in measure's -o) */
        lists_like_qemu_img(formats[i], "measure -o help -O %s --size 1M");
    }
    /* Nothing is created; an unknown format and one that is only read are
     * refused as qemu-img refuses them. */
    RUN_OK("cd '%s' && '%s' create -f qcow2 -o help h.qcow2 1M >/dev/null && ! test -e h.qcow2",
           scratch_dir(), vdisk_bin());
    struct run *r = run("'%s' create -f nosuch -o help", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "Unknown file format 'nosuch'"), "%s", r->err);
    r = run("'%s' create -f bochs -o help", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "Format driver 'bochs' does not support image creation"), "%s",
                  r->err);
}
END_TEST

/* -o size= gives the size when none follows the name; a size after the
 * name wins, as in qemu-img. */
START_TEST(o_size)
{
    same_as_qemu_img("create", "-f qcow2 -o size=3M,cluster_size=4k s.qcow2");
    same_as_qemu_img("info", "--output=json s.qcow2");
    same_as_qemu_img("create", "-f qcow2 -o size=3M t.qcow2 5M");
    same_as_qemu_img("create", "-f raw -o size=1G5 u.raw");
    same_as_qemu_img("create", "-f raw -o size=2M u.raw");
    same_as_qemu_img("info", "--output=json u.raw");
}
END_TEST

/* The file's extent_size_hint option, for any format in a file: printed
 * last in bytes, too large and malformed values refused as qemu-img
 * refuses them (iotest 106 gives extent_size_hint=0). */
START_TEST(o_extent_size_hint)
{
    same_as_qemu_img("create", "-f raw -o preallocation=falloc,extent_size_hint=0 e.raw 128K");
    same_as_qemu_img("create", "-f raw -o extent_size_hint=2M e.raw 1M");
    same_as_qemu_img("create", "-f qcow2 -o extent_size_hint=1M,cluster_size=4k e.qcow2 1M");
    same_as_qemu_img("info", "--output=json e.qcow2");
    same_as_qemu_img("create", "-f vdi -o extent_size_hint=1k e.vdi 1M");
    same_as_qemu_img("create", "-f raw -o extent_size_hint=5G e.raw 1M");
    same_as_qemu_img("create", "-f raw -o extent_size_hint=-1 e.raw 1M");
    same_as_qemu_img("convert", "-O qcow2 -o extent_size_hint=64k e.qcow2 f.qcow2");
}
END_TEST

/* vdisk help [VERB]; a mistyped verb refused in qemu-img's words, with
 * the nearest verb named. */
START_TEST(help_and_mistyped_verbs)
{
    struct run *r = run("'%s' help", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    char *top = strdup(r->out);
    r = run("'%s' --help", vdisk_bin());
    ck_assert_str_eq(top, r->out);
    free(top);
    static const char *const verbs[] = {"convert", "info", "io", "part", "nbd"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        r = run("'%s' help %s", vdisk_bin(), verbs[i]);
        ck_assert_int_eq(r->status, 0);
        char *a = strdup(r->out);
        r = run("'%s' %s --help", vdisk_bin(), verbs[i]);
        ck_assert_str_eq(a, r->out);
        free(a);
    }
    r = run("qemu-img infoo x");
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "qemu-img: Command not found: infoo\nTry 'qemu-img --help' for "
                     "more information\n");
    r = run("'%s' infoo x", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: Command not found: infoo\nDid you mean 'vdisk info'?\n"
                     "Try 'vdisk --help' for more information\n");
    r = run("'%s' covnert x y", vdisk_bin());
    ck_assert_str_eq(r->err, "vdisk: Command not found: covnert\nDid you mean 'vdisk "
                     "convert'?\nTry 'vdisk --help' for more information\n");
    r = run("'%s' help nosuchverb", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: Command not found: nosuchverb\nTry 'vdisk --help' for "
                     "more information\n");
}
END_TEST

/* A mistyped long option: glibc's message as qemu-img's (same words), then
 * the nearest option of the verb named; none when nothing is near, and
 * none for a prefix glibc calls ambiguous. */
START_TEST(mistyped_options)
{
    struct run *r = run("qemu-img info --outptu=json x");
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "qemu-img: unrecognized option '--outptu=json'\nTry 'qemu-img "
                     "--help' for more information\n");
    r = run("'%s' info --outptu=json x", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "info: unrecognized option '--outptu=json'\nDid you mean "
                     "'--output'?\nTry 'vdisk info --help' for more information.\n");
    r = run("'%s' info --backing-chian x", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "info: unrecognized option '--backing-chian'\nDid you mean "
                     "'--backing-chain'?\nTry 'vdisk info --help' for more information.\n");
    r = run("'%s' convert --target-imgae-opts a b", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_ptr_nonnull(strstr(r->err, "Did you mean '--target-image-opts'?\n"));
    r = run("'%s' info --zzz x", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "info: unrecognized option '--zzz'\nTry 'vdisk info --help' for "
                     "more information.\n");
}
END_TEST

/* File names in JSON as qemu-img writes them: non-ASCII as \\uXXXX (a
 * surrogate pair past U+FFFF), U+FFFD for each sequence that is not UTF-8
 * (stray and missing continuation bytes, overlong forms but C0 80,
 * surrogates, noncharacters, values past U+10FFFF), the usual escapes:
 * valid JSON whatever bytes a name holds.  info and check, qcow2 images
 * with such backing files too. */
START_TEST(json_names)
{
    static const char *const names[] = {
        "caf\xc3\xa9\x7f", "bad\xff\xc3", "emoji\xf0\x9f\x98\x80", "q\"uote\\back\x01\x1b",
        "over\xc0\xafx", "nul\xc0\x80y", "sur\xed\xa0\x80z", "nonch\xef\xb7\x90", "cut\xe2\x82",
        "cut2\xe2\x82x", "big\xf4\x90\x80\x80", "six\xfc\x84\x80\x80\x80\x80",
        "ffff\xef\xbf\xbf", "tab\there"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *n = names[i];
        FILE *f = fopen(scratch("name.txt"), "w");
        ck_assert_ptr_nonnull(f);
        fputs(n, f);
        fclose(f);
        RUN_OK("cd '%s' && n=$(cat name.txt) && truncate -s 1M \"$n\" && qemu-img create -q -f "
               "qcow2 -b \"$n\" -F raw j.qcow2", scratch_dir());
        same_as_qemu_img("info", "--output=json \"$(cat name.txt)\"");
        same_as_qemu_img("info", "--output=json --backing-chain j.qcow2");
        same_as_qemu_img("check", "--output=json j.qcow2");
        RUN_OK("cd '%s' && rm -f \"$(cat name.txt)\" j.qcow2", scratch_dir());
    }
}
END_TEST

/* measure's argument checks in qemu-img's order and words (iotest 178),
 * --object and --image-opts, and -o lists qemu-img refuses in every verb
 * that takes one. */
START_TEST(measure_args)
{
    RUN_OK("cd '%s' && rm -f m.qcow2 && qemu-img create -q -f qcow2 m.qcow2 1G", scratch_dir());
    static const char *const cases[] = {
        "",
        "--size 2G m.qcow2",
        "m.qcow2 a",
        "--object secret,id=sec0,data=MTIzNDU2,format=base64",
        "--image-opts",
        "-f qcow2",
        "-l snap1",
        "-o ,",
        "-o a=b,",
        "-l snapshot.foo=bar",
        "-l snapshot.name=s,snapshot.bar=1",
        "--output foo",
        "--size -1",
        "--size 1Q",
        "-O foo m.qcow2",
        "-O qcow2 --size 1G -o cluster_size=4k",
        "--image-opts driver=qcow2,file.filename=m.qcow2 -O qcow2",
        "--image-opts driver=qcow2,file.filename=m.qcow2 -f qcow2",
        ("--output=json --object secret,id=sec0,data=base -o encrypt.format=luks,"
         "encrypt.key-secret=sec0,encrypt.iter-time=10 -f qcow2 -O qcow2 m.qcow2"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        same_as_qemu_img("measure", cases[i]);
    same_as_qemu_img("create", "-f qcow2 -o , c.qcow2 1M");
    same_as_qemu_img("create", "-f qcow2 -o ,, c.qcow2 1M");
    same_as_qemu_img("create", "-f qcow2 -o cluster_size=4k,,, c.qcow2 1M");
    same_as_qemu_img("convert", "-O qcow2 -o , m.qcow2 c.qcow2");
    same_as_qemu_img("amend", "-o , m.qcow2");
}
END_TEST

/* "file:" names (iotest 126): the file protocol named, a colon after it
 * part of the file's name; info shows "./NAME" where the name would read
 * as a protocol, and the backing file's actual path beside it.  And a
 * backing format that is one of QEMU's protocol drivers (031). */
START_TEST(file_prefix_names)
{
    RUN_OK("cd '%s' && rm -f 'a:b.qcow2' 'c:d.qcow2' base.qcow2 'top:x.qcow2'", scratch_dir());
    same_as_qemu_img("create", "-f qcow2 file:a:b.qcow2 1M");
    same_as_qemu_img("info", "file:a:b.qcow2");
    same_as_qemu_img("info", "\"file:$PWD/a:b.qcow2\"");
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 base.qcow2 1M", scratch_dir());
    same_as_qemu_img("create", "-f qcow2 -b base.qcow2 -F qcow2 file:top:x.qcow2");
    same_as_qemu_img("info", "file:top:x.qcow2");
    same_as_qemu_img("info", "--output=json file:top:x.qcow2");
    RUN_OK("cd '%s' && cp a:b.qcow2 c:d.qcow2 && qemu-img rebase -u -b /some/backing/file/path "
           "-F host_device file:a:b.qcow2 && '%s' rebase -u -b /some/backing/file/path -F "
           "host_device file:c:d.qcow2", scratch_dir(), vdisk_bin());
    struct run *r = run("cd '%s' && qemu-img info file:a:b.qcow2 | grep backing", scratch_dir());
    char *q = strdup(r->out);
    r = run("cd '%s' && qemu-img info file:c:d.qcow2 | grep backing", scratch_dir());
    ck_assert_str_eq(r->out, q);
    ck_assert_str_eq(q, "backing file: /some/backing/file/path\nbacking file format: "
                     "host_device\n");
    free(q);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    Suite *s = suite_create("cli-args");
    TCase *tc = tcase_create("cli-args");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, options_after_names);
    tcase_add_test(tc, o_help);
    tcase_add_test(tc, o_size);
    tcase_add_test(tc, o_extent_size_hint);
    tcase_add_test(tc, help_and_mistyped_verbs);
    tcase_add_test(tc, mistyped_options);
    tcase_add_test(tc, json_names);
    tcase_add_test(tc, measure_args);
    tcase_add_test(tc, file_prefix_names);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
