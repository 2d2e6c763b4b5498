/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/qcow2_vmstate.c: qcow2's VM state area (vdisk_vmstate_*,
 * `vdisk io` read -b / write -b) against qemu-io 7.2's.
 *
 *   - what qemu-io writes there (next to the disk, at 1 TiB, at the start,
 *     across a cluster edge) vdisk io reads back, and the reverse; both
 *     tools then find the image clean, and vdisk's writes lay the image out
 *     as qemu-io's do (the same L1 table size, the same image end offset,
 *     the same info, check and map);
 *   - the disk is never touched: guest reads see zeroes after VM state
 *     writes, unallocated VM state reads zeroes even over a larger backing
 *     file, a snapshot keeps the VM state with the L1 table (029's case);
 *   - refused: raw images (-ENOTSUP, qemu-io's "Operation not supported"),
 *     read-only opens, qcow2 with an external data file, offsets past what
 *     an L1 table can reach, and the library's internal flag on a user's
 *     queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define TIB (1ull << 40)

/* The header's L1 table size (entries) of PATH. */
static uint32_t l1_size_of(const char *path)
{
    uint8_t *h = read_file_at(path, 36, 4);
    uint32_t v = be32_load(h);
    free(h);
    return v;
}

static const char *check_line(const char *tool, const char *img, const char *what)
{
    struct run *r = run("%s check '%s' 2>&1 | grep '%s'", tool, img, what);
    ck_assert_msg(r->status == 0, "%s check: no line with %s", tool, what);
    return fmt("%s", r->out);
}

static void no_cb(void *user, int ret)
{
    (void)user;
    (void)ret;
}

static void qemu_io_writes(const char *img)
{
    RUN_OK("qemu-io -c 'write -b -P 0x11 1T 4k' -c 'write -b -P 0x22 0 64k' "
           "-c 'write -b -P 0x33 126976 8k' '%s'", img);
}

static void vdisk_io_writes(const char *img)
{
    RUN_OK("%s io -c 'write -b -P 0x11 1T 4k' -c 'write -b -P 0x22 0 64k' "
           "-c 'write -b -P 0x33 126976 8k' '%s'", vdisk_bin(), img);
}

static const char *reads =
    "-c 'read -b -P 0x11 1T 4k' -c 'read -b -P 0 1099511631872 61440' "
    "-c 'read -b -P 0x22 0 64k' -c 'read -b -P 0 65536 61440' "
    "-c 'read -b -P 0x33 126976 8k' -c 'read -b -P 0 135168 4096' "
    "-c 'read -P 0 0 64M'";

START_TEST(test_qemu_writes_vdisk_reads)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *img = scratch("q.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", img);
    qemu_io_writes(img);
    struct run *r = run("%s io %s '%s'", vdisk_bin(), reads, img);
    ck_assert_msg(r->status == 0 && !strstr(r->out, "failed"), "%s\n%s", r->out, r->err);
    RUN_OK("%s check '%s'", vdisk_bin(), img);
    /* qemu-io's info: the VM state starts at the first L1 entry past the disk */
    r = run("%s io -c info '%s'", vdisk_bin(), img);
    ck_assert_msg(strstr(r->out, "vm state offset: 512 MiB"), "%s", r->out);
    reads_as_qemu_img("q.qcow2");
}
END_TEST

START_TEST(test_vdisk_writes_qemu_reads)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *q = scratch("q.qcow2"), *v = scratch("v.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", q);
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", v);
    qemu_io_writes(q);
    vdisk_io_writes(v);
    struct run *r = run("qemu-io %s '%s'", reads, v);
    ck_assert_msg(r->status == 0 && !strstr(r->out, "failed"), "%s\n%s", r->out, r->err);
    RUN_OK("qemu-img check '%s'", v);
    /* laid out as qemu-io lays it out */
    ck_assert_uint_eq(l1_size_of(v), l1_size_of(q));
    ck_assert_str_eq(check_line("qemu-img", v, "Image end offset"),
                     check_line("qemu-img", q, "Image end offset"));
    /* (the same clusters in use; their order differs: vdisk allocates a
     * write's data cluster before its L2 table, QEMU after) */
    ck_assert_str_eq(strtok((char *)check_line(vdisk_bin(), v, "allocated"), " "),
                     strtok((char *)check_line("qemu-img", q, "allocated"), " "));
    reads_as_qemu_img("v.qcow2");
    /* small clusters: the L1 table grows in several steps, as qemu-io's */
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 1M", q);
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 1M", v);
    for (int i = 0; i < 4; i++) {
        unsigned long long off = (unsigned long long)i << 16;
        RUN_OK("qemu-io -c 'write -b -P %d %llu 512' '%s'", i + 1, off, q);
        RUN_OK("%s io -c 'write -b -P %d %llu 512' '%s'", vdisk_bin(), i + 1, off, v);
        ck_assert_uint_eq(l1_size_of(v), l1_size_of(q));
    }
    RUN_OK("qemu-io -c 'read -b -P 4 196608 512' -c 'read -b -P 1 0 512' '%s'", v);
    RUN_OK("qemu-img check '%s'", v);
    ck_assert_str_eq(check_line("qemu-img", v, "Image end offset"),
                     check_line("qemu-img", q, "Image end offset"));
}
END_TEST

START_TEST(test_disk_untouched)
{
    require_program("qemu-img");
    const char *base = scratch("base.raw"), *img = scratch("top.qcow2");
    /* a backing file larger than the overlay, full of 0x5a */
    RUN_OK("qemu-img create -q -f raw '%s' 2G && qemu-io -f raw -c 'write -P 0x5a 0 1G' "
           "-c 'write -P 0x5a 1G 1G' '%s' >/dev/null", base, base);
    RUN_OK("qemu-img create -q -f qcow2 -b '%s' -F raw '%s' 1M", base, img);
    vdisk_dev *d;
    ck_assert_msg(vdisk_open(&d, img, NULL) == 0, "%s", vdisk_get_error());
    uint8_t buf[8192], pat[8192];
    memset(pat, 0x77, sizeof pat);
    /* the area is past the disk: unwritten, it reads zeroes, not the backing file */
    ck_assert_int_eq(vdisk_vmstate_pread(d, buf, sizeof buf, 0), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0);
    ck_assert_msg(vdisk_vmstate_pwrite(d, pat, 4096, 512) == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_vmstate_pread(d, buf, sizeof buf, 0), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], i >= 512 && i < 4608 ? 0x77 : 0);
    /* the disk still reads its backing file */
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, (1 << 20) - sizeof buf), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0x5a);
    /* the core's range check still holds for the disk */
    ck_assert_int_eq(vdisk_pread(d, buf, 512, 1 << 20), -EIO);
    /* the internal flag does not pass a user's queue */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, d, 4), 0);
    struct iovec v = {buf, 512};
    ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 1ull << 30, 0x20000u, no_cb, NULL), -EINVAL);
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, 1ull << 30, 0x20000u, no_cb, NULL), -EINVAL);
    vdisk_queue_free(q);
    /* past an L1 table's reach (32 MiB of entries) */
    ck_assert_int_eq(vdisk_vmstate_pwrite(d, pat, 512, 1ull << 62), -EFBIG);
    vdisk_close(d);
    RUN_OK("qemu-img check '%s'", img);
    RUN_OK("qemu-io -c 'read -b -P 0x77 512 4096' -c 'read -P 0x5a 0 1M' '%s'", img);

    /* read-only opens refuse writes; reads work */
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_msg(vdisk_open(&d, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    ck_assert_int_eq(vdisk_vmstate_pwrite(d, pat, 512, 0), -EROFS);
    ck_assert_int_eq(vdisk_vmstate_pread(d, buf, 4096, 512), 0);
    ck_assert_int_eq(memcmp(buf, pat, 4096), 0);
    vdisk_close(d);
}
END_TEST

START_TEST(test_snapshot_keeps_vmstate)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *img = scratch("s.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", img);
    RUN_OK("%s io -c 'write -b -P 0x11 1T 4k' '%s'", vdisk_bin(), img);
    RUN_OK("%s snapshot -c foo '%s'", vdisk_bin(), img);
    RUN_OK("%s io -c 'write -b -P 0x22 1T 4k' '%s'", vdisk_bin(), img);
    RUN_OK("qemu-io -c 'read -b -P 0x22 1T 4k' '%s'", img);
    RUN_OK("%s snapshot -a foo '%s'", vdisk_bin(), img);
    RUN_OK("qemu-io -c 'read -b -P 0x11 1T 4k' '%s'", img);
    RUN_OK("%s io -c 'read -b -P 0x11 1T 4k' '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
    RUN_OK("%s check '%s'", vdisk_bin(), img);
}
END_TEST

START_TEST(test_refused)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *raw = scratch("r.raw"), *df = scratch("d.qcow2");
    RUN_OK("qemu-img create -q -f raw '%s' 1M", raw);
    /* raw: as qemu-io */
    struct run *q = run("qemu-io -f raw -c 'write -b 0 512' -c 'read -b 0 512' '%s'", raw);
    char *qout = strdup(q->out);
    struct run *v = run("%s io -f raw -c 'write -b 0 512' -c 'read -b 0 512' '%s'",
                        vdisk_bin(), raw);
    ck_assert_str_eq(v->out, qout);
    free(qout);
    /* unaligned: qemu-io's messages */
    v = run("%s io -c 'write -b 100 512' -c 'read -b 0 100' '%s'", vdisk_bin(), raw);
    ck_assert_str_eq(v->out, "100 is not a sector-aligned value for 'offset'\n"
                             "100 is not a sector-aligned value for 'count'\n");
    /* an external data file: no VM state (the data file holds the disk) */
    RUN_OK("qemu-img create -q -f qcow2 -o data_file='%s',data_file_raw=on '%s' 1M",
           scratch("d.raw"), df);
    vdisk_dev *d;
    ck_assert_msg(vdisk_open(&d, df, NULL) == 0, "%s", vdisk_get_error());
    uint8_t buf[512] = {0};
    ck_assert_int_eq(vdisk_vmstate_pwrite(d, buf, 512, 0), -ENOTSUP);
    vdisk_close(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interop-qcow2-vmstate");
    TCase *tc = tcase_create("vmstate");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_qemu_writes_vdisk_reads);
    tcase_add_test(tc, test_vdisk_writes_qemu_reads);
    tcase_add_test(tc, test_disk_untouched);
    tcase_add_test(tc, test_snapshot_keeps_vmstate);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
