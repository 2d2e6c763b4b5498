/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/metaio.c: the metadata I/O of qcow2 check, counted on
 * the fault-injecting device (tests/common/fault.h), and the COPIED-flag
 * report that the check makes on its way against qemu-img check's.
 *
 * check on a sound image reads each L2 table once and each refcount block
 * once (it used to read every L2 table of the active L1 table twice: once
 * to count references, once for the COPIED flags).  The COPIED flags are
 * checked during the first walk; a table with something to report is read
 * again, so the report keeps qemu-img's order: the cases below break flags
 * in some tables and not in others, and compare the whole output.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "fault.h"
#include "harness.h"

#define CS 4096u

/* The image at PATH on a fault disk, opened as qcow2 (*FP: the disk). */
static struct vdisk_dev *open_on_fault(const char *path, struct fault_disk **fp)
{
    size_t len;
    uint8_t *img = read_file(path, &len);
    struct fault_disk *f = fault_new(img, len, len);
    free(img);
    ck_assert(f != NULL);
    struct vdisk_open_params p = fault_params(true);
    struct vdisk_dev *file, *dev;
    ck_assert(fault_open(&file, f, scratch("disk.img"), &p) == 0);
    ck_assert_msg(dev_open_format(&dev, file, "qcow2", &p, NULL) == 0, "%s", vdisk_get_error());
    *fp = f;
    return dev;
}

static uint64_t load64(int fd, uint64_t off)
{
    uint8_t b[8];
    ck_assert_int_eq(pread(fd, b, 8, (off_t)off), 8);
    return be64_load(b);
}

static void store64(int fd, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    be64_store(b, v);
    ck_assert_int_eq(pwrite(fd, b, 8, (off_t)off), 8);
}

START_TEST(check_reads_each_table_once)
{
    require_program("qemu-img");
    require_program("qemu-io");
    /* 64 MiB of 4 KiB clusters: 32 L2 tables, data in every one of them
     * (a run of 1 MiB in each 2 MiB, the rest unallocated). */
    const char *img = scratch("t.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 64M", img);
    char cmd[8192] = "";
    for (unsigned i = 0; i < 32; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " -c 'write -q -P %u %uM 1M'",
                 i + 1, 2 * i);
    RUN_OK("qemu-io%s '%s'", cmd, img);
    RUN_OK("qemu-img check -q '%s'", img);

    /* The tables: the L2 tables the L1 table points to, the refcount
     * blocks the refcount table points to. */
    int fd = open(img, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    uint64_t l1_size = 0, l1_off = load64(fd, 40), reft_off = load64(fd, 48), tables = 0;
    uint8_t b4[4];
    ck_assert_int_eq(pread(fd, b4, 4, 36), 4);
    l1_size = be32_load(b4);
    for (uint64_t i = 0; i < l1_size; i++)
        tables += (load64(fd, l1_off + 8 * i) & 0x00fffffffffffe00ull) != 0;
    uint64_t blocks = 0;
    for (uint64_t i = 0; i < CS / 8; i++)
        blocks += load64(fd, reft_off + 8 * i) != 0;
    close(fd);
    ck_assert_uint_eq(tables, 32);

    struct fault_disk *f;
    struct vdisk_dev *dev = open_on_fault(img, &f);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    uint64_t before = fault_reads(f);
    ck_assert_msg(vdisk_check(dev, 0, &res, NULL, NULL) == 0, "%s", vdisk_get_error());
    uint64_t reads = fault_reads(f) - before;
    ck_assert_int_eq(res.corruptions, 0);
    ck_assert_int_eq(res.leaks, 0);
    ck_assert_int_eq(res.check_errors, 0);
    ck_assert_int_eq(res.allocated_clusters, 32 * 256);
    /* Each table once, and the L1 table (two with the old code's count:
     * 32 more reads). */
    ck_assert_msg(reads <= tables + blocks + 1,
                  "check made %llu reads for %llu L2 tables and %llu refcount blocks",
                  (unsigned long long)reads, (unsigned long long)tables,
                  (unsigned long long)blocks);
    vdisk_close(dev);
    fault_free(f);
}
END_TEST

/* vdisk check and qemu-img check on IMG: the same status, output, errors. */
static void same_check(const char *img)
{
    struct run *q = run("qemu-img check '%s'", img);
    int qs = q->status;
    char *qout = strdup(q->out), *qerr = strdup(q->err);
    struct run *v = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(v->status, qs);
    ck_assert_str_eq(v->err, qerr);
    ck_assert_str_eq(v->out, qout);
    free(qout);
    free(qerr);
}

START_TEST(copied_flags_reported_like_qemu)
{
    require_program("qemu-img");
    require_program("qemu-io");
    /* 16 MiB of 4 KiB clusters, data in each of the 8 L2 tables. */
    const char *img = scratch("c.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 16M", img);
    RUN_OK("qemu-io -c 'write -q -P 1 0 64k' -c 'write -q -P 2 2M 64k' -c 'write -q -P 3 4M 8k' "
           "-c 'write -q -P 4 6M 64k' -c 'write -q -P 5 8M 4k' -c 'write -q -P 6 10M 64k' "
           "-c 'write -q -P 7 12M 64k' -c 'write -q -P 8 14M 1M' '%s'", img);
    same_check(img);
    int fd = open(img, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint64_t l1_off = load64(fd, 40);
    const uint64_t copied = 1ull << 63;
    /* Table 1: the COPIED flag of its third data cluster cleared; table 3:
     * the flag of the L1 entry cleared; table 6: the flags of two data
     * clusters cleared; tables 0, 2, 4, 5 and 7 sound. */
    uint64_t l2 = load64(fd, l1_off + 8) & 0x00fffffffffffe00ull;
    store64(fd, l2 + 2 * 8, load64(fd, l2 + 2 * 8) & ~copied);
    store64(fd, l1_off + 3 * 8, load64(fd, l1_off + 3 * 8) & ~copied);
    l2 = load64(fd, l1_off + 6 * 8) & 0x00fffffffffffe00ull;
    store64(fd, l2, load64(fd, l2) & ~copied);
    store64(fd, l2 + 15 * 8, load64(fd, l2 + 15 * 8) & ~copied);
    close(fd);
    same_check(img);
    struct run *v = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(v->status, 2);
    ck_assert_msg(strstr(v->err, "ERROR OFLAG_COPIED L2 cluster: l1_index=3 "), "%s", v->err);
    /* Repaired, as qemu-img repairs them. */
    RUN_OK("cp '%s' '%s'", img, scratch("twin.qcow2"));
    struct run *q = run("qemu-img check -r all '%s'", scratch("twin.qcow2"));
    char *qout = strdup(q->out), *qerr = strdup(q->err);
    int qs = q->status;
    v = run("%s check -r all '%s'", vdisk_bin(), img);
    ck_assert_int_eq(v->status, qs);
    ck_assert_str_eq(v->err, qerr);
    free(qout);
    free(qerr);
    same_check(img);
    RUN_OK("qemu-img check -q '%s'", img);
}
END_TEST

START_TEST(copied_flags_shared_table)
{
    require_program("qemu-img");
    require_program("qemu-io");
    /* Two L1 entries point to one L2 table: its refcount (1) is below the
     * references (2), and the COPIED flags of the L1 entry and of its
     * data clusters, checked once per table, are reported as qemu-img
     * does. */
    const char *img = scratch("s.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 16M", img);
    RUN_OK("qemu-io -c 'write -q -P 1 0 64k' -c 'write -q -P 2 2M 64k' -c 'write -q -P 3 4M 8k' "
           "'%s'", img);
    int fd = open(img, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint64_t l1_off = load64(fd, 40);
    store64(fd, l1_off + 5 * 8, load64(fd, l1_off + 1 * 8));
    close(fd);
    same_check(img);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metaio");
    TCase *tc = tcase_create("check");
    tcase_add_test(tc, check_reads_each_table_once);
    tcase_add_test(tc, copied_flags_reported_like_qemu);
    tcase_add_test(tc, copied_flags_shared_table);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
