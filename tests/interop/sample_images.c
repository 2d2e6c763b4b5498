/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/sample_images.c: the sample images of QEMU's own tests
 * (tests/qemu-iotests/sample_images in QEMU 7.2's source, fetched from
 * Debian's qemu source package by scripts/fetch-qemu-samples.sh into
 * $VDISK_QEMU_SAMPLES, default /var/cache/vdisk/qemu-samples), against
 * qemu-img 7.2:
 *   - those of formats vdisk reads (VHD from Virtual PC, Hyper-V and
 *     disk2vhd, a VMDK of version 3, a raw MBR, bochs, cloop,
 *     Parallels of both layouts and with a dirty bitmap, VHDX from QEMU and
 *     disk2vhd, a DMG of zlib, zero and ignore chunks) give the same info
 *     (human
 *     and JSON), map and check as with qemu-img, and vdisk's raw copy is
 *     what qemu-img reads in them;
 *   - the two that fuzzers made (afl5.img, afl9.vmdk), which qemu-img
 *     refuses, vdisk refuses too, with its reason;
 *   - a VHDX with a log to replay is refused read-only, in qemu-img's
 *     words, and replayed by check -r all as qemu-img replays it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const char *samples_dir(void)
{
    const char *d = getenv("VDISK_QEMU_SAMPLES");
    return d && *d ? d : "/var/cache/vdisk/qemu-samples";
}

/* The sample NAME unpacked into the scratch folder (as NAME). */
static void unpack(const char *name)
{
    RUN_OK("cd '%s' && bunzip2 -c '%s/%s.bz2' > '%s'", scratch_dir(), samples_dir(), name, name);
}

START_TEST(read_as_qemu_img_reads_them)
{
    static const char *const names[] = {"virtualpc-dynamic.vhd", "hyperv2012r2-dynamic.vhd",
                                        "d2v-zerofilled.vhd", "iotest-version3.vmdk",
                                        "grub_mbr.raw", "empty.bochs",
                                        "simple-pattern.cloop", "parallels-v1",
                                        "parallels-v2", "parallels-with-bitmap",
                                        "iotest-dynamic-1G.vhdx", "test-disk2vhd.vhdx",
                                        "simple-dmg.dmg"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        unpack(names[i]);
        same_as_qemu_img("info", names[i]);
        same_as_qemu_img("info", fmt("--output=json %s", names[i]));
        same_as_qemu_img("map", fmt("--output=json %s", names[i]));
        same_as_qemu_img("check", names[i]);
        /* Up to 127 GiB, nearly all of it unallocated: vdisk's raw copy
         * (sparse) compared by qemu-img with its own reading of the image,
         * extent by extent. */
        RUN_OK("cd '%s' && rm -f v.raw && '%s' convert -O raw '%s' v.raw && qemu-img compare "
               "-F raw '%s' v.raw && rm -f '%s' v.raw", scratch_dir(), vdisk_bin(), names[i],
               names[i], names[i]);
    }
}
END_TEST

START_TEST(fuzzed_images_refused_as_qemu_img_refuses_them)
{
    static const struct {
        const char *name, *why;
    } cases[] = {
        {"afl5.img", "vdisk: afl5.img: the VHD footer's data offset 512 (the dynamic "
                     "disk header) is not a sector inside the file (1028 bytes) with room for "
                     "1024 bytes\n"},
        {"afl9.vmdk", "vdisk: afl9.vmdk: a grain directory of 34489028508660 "
                      "entries; vdisk holds at most 67108864 bytes of it\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unpack(cases[i].name);
        struct run *q = run("cd '%s' && qemu-img info '%s'", scratch_dir(), cases[i].name);
        ck_assert_int_eq(q->status, 1);
        struct run *v = run("cd '%s' && '%s' info '%s'", scratch_dir(), vdisk_bin(),
                            cases[i].name);
        ck_assert_int_eq(v->status, 1);
        ck_assert_str_eq(v->err, cases[i].why);
        ck_assert_str_eq(v->out, "");
    }
}
END_TEST

/* A VHDX left with a log to replay: a read-only open is refused in
 * qemu-img's words; check -r all replays it as qemu-img's does (the same
 * report, the same disk afterwards). */
START_TEST(vhdx_log_replayed_as_qemu_img_replays_it)
{
    const char *name = "iotest-dirtylog-10G-4M.vhdx";
    unpack(name);
    struct run *v = run("cd '%s' && '%s' info '%s'", scratch_dir(), vdisk_bin(), name);
    ck_assert_int_eq(v->status, 1);
    ck_assert_str_eq(v->err, fmt("vdisk: VHDX image file '%s' opened read-only, "
                                 "but contains a log that needs to be replayed (to replay the "
                                 "log, run: vdisk check -r all '%s')\n", name, name));
    RUN_OK("cd '%s' && cp '%s' q.vhdx && cp '%s' v.vhdx", scratch_dir(), name, name);
    struct run *q = run("cd '%s' && qemu-img check -r all q.vhdx", scratch_dir());
    char *qout = strdup(q->out);
    int qstatus = q->status;
    v = run("cd '%s' && '%s' check -r all v.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(v->status, qstatus);
    ck_assert_str_eq(v->out, qout);
    free(qout);
    RUN_OK("cd '%s' && qemu-img compare q.vhdx v.vhdx && qemu-img check v.vhdx && rm -f q.vhdx "
           "v.vhdx '%s'", scratch_dir(), name);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("bunzip2");
    if (access(fmt("%s/complete", samples_dir()), F_OK) != 0)
        skip_test("QEMU's sample images are not in %s (scripts/fetch-qemu-samples.sh fetches "
                  "them)", samples_dir());
    Suite *s = suite_create("sample-images");
    TCase *tc = tcase_create("samples");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, read_as_qemu_img_reads_them);
    tcase_add_test(tc, fuzzed_images_refused_as_qemu_img_refuses_them);
    tcase_add_test(tc, vhdx_log_replayed_as_qemu_img_replays_it);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
