/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_parallels.c: Parallels images, which vdisk reads
 * (it does not write them), against qemu-img 7.2 and qemu-io: images made
 * and written by QEMU with several cluster sizes (data across clusters,
 * zeroes written, the last cluster) read byte-identically with the same
 * info, map and check output; an old-style image ("WithoutFreeSpace", its
 * BAT in sectors) built here; a writable open refused with the command
 * that converts; hostile headers refused with exact messages, a BAT entry
 * past the file's end failing the read that meets it and counted by check
 * as qemu-img counts it.  QEMU's own samples are read in sample-images.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

START_TEST(qemu_images_read_identically)
{
    static const char *const clusters[] = {"4k", "64k", "1M"};
    for (size_t i = 0; i < sizeof clusters / sizeof clusters[0]; i++) {
        RUN_OK("cd '%s' && rm -f p.hdd && qemu-img create -q -f parallels -o cluster_size=%s "
               "p.hdd 10M && qemu-io -f parallels -c 'write -P 0x11 0 100k' "
               "-c 'write -P 0x22 5M 64k' -c 'write -z 8M 4k' -c 'write -P 0x33 10236k 4k' "
               "-c 'write -P 0x44 3M 1M' p.hdd >/dev/null", scratch_dir(), clusters[i]);
        reads_as_qemu_img("p.hdd");
    }
    /* The old layout: BAT entries in sectors, the clusters out of order. */
    enum { CL = 8192 };
    size_t n = 4096 + 3 * CL;
    uint8_t *b = calloc(1, n);
    memcpy(b, "WithoutFreeSpace", 16);
    le32_store(b + 16, 2);
    le32_store(b + 28, CL / 512);
    le32_store(b + 32, 6);
    le64_store(b + 36, 6 * CL / 512);
    le32_store(b + 48, 8);
    static const uint32_t bat[6] = {0, 8 + 2 * CL / 512, 8, 0, 0, 8 + CL / 512};
    for (int i = 0; i < 6; i++)
        le32_store(b + 64 + i * 4, bat[i]);
    uint64_t seed = 4;
    fill_random(b + 4096, 3 * CL, &seed);
    write_file(scratch("old.hdd"), b, n);
    free(b);
    reads_as_qemu_img("old.hdd");
    struct run *r = run("cd '%s' && '%s' io -c 'write 0 512' old.hdd", scratch_dir(),
                        vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: old.hdd: vdisk reads Parallels images but "
                             "does not write them (open it read-only, or convert it: vdisk "
                             "convert -f parallels -O qcow2 old.hdd IMAGE.qcow2)\n");
}
END_TEST

#define refused(...) open_refused("parallels", __VA_ARGS__)
START_TEST(hostile_images_refused)
{
    RUN_OK("cd '%s' && rm -f g.hdd && qemu-img create -q -f parallels -o cluster_size=4k g.hdd "
           "1M && qemu-io -f parallels -c 'write -P 0x11 0 8k' g.hdd >/dev/null", scratch_dir());
    const char *g = scratch("g.hdd");
    size_t n;
    free(read_file(g, &n));
#define P(name, off, len, v) patched_copy(g, name, off, len, v)
    refused(P("v.hdd", 16, 4, 3), -EINVAL, "not a Parallels image (no \"WithoutFreeSpace\" or "
            "\"WithouFreSpacExt\" with version 2 at offset 0)");
    refused(P("t0.hdd", 28, 4, 0), -EINVAL, "0 sectors per cluster (offset 28); expected 1 to "
            "4186127");
    refused(P("t1.hdd", 28, 4, 4186128), -EINVAL, "4186128 sectors per cluster (offset 28); "
            "expected 1 to 4186127");
    refused(P("s.hdd", 36, 8, 1ull << 60), -EINVAL, "a disk of 1152921504606846976 sectors "
            "(offset 36) is too large");
    refused(P("b.hdd", 32, 4, 0x40000000), -EINVAL,
            fmt("a BAT of 1073741824 entries (offset 32) does not lie in the file (%zu bytes), "
                "or is over vdisk's 67108864", n));
    /* A BAT entry past the end: the read that meets it fails; check counts
     * it as qemu-img does. */
    const char *far = P("far.hdd", 64 + 4, 4, 0x100000);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    ck_assert_msg(vdisk_open(&d, far, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    uint8_t buf[4096];
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 4096), -EIO);
    ck_assert_msg(strstr(vdisk_get_error(), fmt("%s: BAT entry 1 places cluster 1 at offset "
                                                "4294967296, which is not inside the file (%zu "
                                                "bytes)", far, n)) != NULL,
                  "%s", vdisk_get_error());
    vdisk_close(d);
    same_as_qemu_img("check", "far.hdd");
#undef P
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("interop-parallels");
    TCase *tc = tcase_create("parallels");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, qemu_images_read_identically);
    tcase_add_test(tc, hostile_images_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
