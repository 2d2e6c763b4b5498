/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/datafile_powerloss.c: power cuts during writes to a
 * qcow2 image with an external data file (data_file, with and without
 * data_file_raw), made by vdisk as qemu-img makes them.
 *
 * Both files live on one fault disk (tests/common/fault.h): the image file
 * in its first IMG_AREA bytes, the data file after it, each a range device
 * over the disk; the data file reaches the driver through the open
 * parameters' open_backing call, as a fuzzer's files do.  So one power cut
 * ends both files' writes at the same moment and one volatile cache holds
 * the writes of both, in the order they were made, which the crash
 * policies keep, drop, reorder and tear.  (A flush of either file makes
 * the writes of both durable: the test cannot see an image flush standing
 * in for a missing data-file flush, only wrong orders within one.)
 *
 * The workload allocates clusters (data, then the L2 entry), overwrites
 * flushed and unflushed data in place, writes zeroes, discards whole
 * clusters (which, without a raw data file, discards in the data file
 * too) and writes again where it discarded.  It is cut at every write it
 * makes, under every crash policy.  After each cut:
 *   - the image opens and vdisk's check finds no corruption (leaks are
 *     allowed; a data-file image has no refcounts for data);
 *   - every 512-byte sector of the disk reads as its value at the last
 *     completed flush or as one written since, never anything else;
 *   - a copy of the two files (one in VDISK_DATAFILE_POWERLOSS_QEMU_EVERY)
 *     is checked by qemu-img check (clean, or leaks) and read by qemu-io:
 *     every run of sectors as vdisk read it;
 *   - with data_file_raw=on, the data file holds the disk's data wherever
 *     the disk reads data (where it reads zeroes, a write whose L2 entry
 *     the cut lost may have landed in the data file).
 *
 * Environment:
 *   VDISK_DATAFILE_POWERLOSS_QEMU_EVERY  qemu on one crash image in N
 *                                        (default 5, 11 in sanitizer
 *                                        builds; 1: every image)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"
#include "sectors.h"
#include "options_internal.h"

#define KIB (1u << 10)
#define MIB (1u << 20)
#define VSIZE (4u * MIB)
#define SECTORS (VSIZE / FAULT_SECTOR)
#define IMG_AREA (4u * MIB) /* the image file's room on the disk */
#define DISK (IMG_AREA + VSIZE)

enum { OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH };

struct op {
    int kind;
    unsigned pat;      /* the byte written (OP_ZERO, OP_DISCARD: 0) */
    uint64_t off, len; /* whole sectors; discards whole clusters */
};

/* Patterns are 1..7; a sector's allowed values are a mask of them and 0. */
static const struct op ops[] = {
    {OP_WRITE, 1, 1 * MIB + 586 * 512, 64 * KIB},  /* allocating, mid-cluster */
    {OP_WRITE, 2, 0 * MIB + 3 * 512, 100 * KIB},   /* two clusters and a part */
    {OP_FLUSH, 0, 0, 0},
    {OP_WRITE, 3, 3 * MIB + 586 * 512, 64 * KIB},
    {OP_WRITE, 4, 1 * MIB + 602 * 512, 16 * KIB},  /* overwrite, flushed data */
    {OP_FLUSH, 0, 0, 0},
    {OP_ZERO, 0, 0 * MIB + 590 * 512, 4 * KIB},    /* zeroes over flushed data */
    {OP_ZERO, 0, 64 * KIB, 64 * KIB},              /* a whole cluster of zeroes */
    {OP_DISCARD, 0, 1 * MIB + 256 * KIB, 64 * KIB}, /* a flushed cluster let go */
    {OP_WRITE, 5, 2 * MIB + 3 * 512, 200 * KIB},   /* several clusters */
    {OP_WRITE, 6, 3 * MIB + 600 * 512, 128 * KIB}, /* overwrite, unflushed data */
    {OP_FLUSH, 0, 0, 0},
    {OP_WRITE, 7, 1 * MIB + 260 * KIB, 8 * KIB},   /* into the discarded cluster */
    {OP_DISCARD, 0, 3 * MIB + 320 * KIB, 128 * KIB},
};
#define NOPS (sizeof ops / sizeof ops[0])

struct state {
    uint8_t cur[SECTORS];  /* what the guest wrote last */
    uint8_t dur[SECTORS];  /* the value at the last completed flush */
    uint8_t pend[SECTORS]; /* values written since (bit v: value v) */
};

/* The fault disk's device while an image is open over it. */
static struct vdisk_dev *disk_dev;

/* The data file, for the qcow2 driver: the disk's second part. */
static int open_data(void *opaque, const char *name, const struct vdisk_open_params *p,
                     struct vdisk_dev **filep)
{
    (void)opaque;
    (void)p;
    ck_assert_str_eq(name, "d.raw");
    return vdisk_open_range(filep, disk_dev, IMG_AREA, VSIZE,
                            p->read_only ? VDISK_OPEN_RDONLY : 0);
}

/* The image over a new device on F (opened read-only with RO); NULL when
 * it does not open. */
static struct vdisk_dev *open_on(struct fault_disk *f, bool ro)
{
    struct vdisk_open_params p = fault_params(ro);
    p.open_backing = open_data;
    struct vdisk_dev *img, *dev;
    ck_assert_int_eq(fault_open(&disk_dev, f, "disk", &p), 0);
    ck_assert_int_eq(vdisk_open_range(&img, disk_dev, 0, IMG_AREA, ro ? VDISK_OPEN_RDONLY : 0),
                     0);
    int r = dev_open_format(&dev, img, "qcow2", &p, NULL); /* (takes IMG) */
    if (r < 0)
        dev_unref(img);
    dev_unref(disk_dev); /* (the ranges hold it) */
    return r < 0 ? NULL : dev;
}

/* The workload on DEV, tracking S; stops at the first failure. */
static void workload(struct vdisk_dev *dev, struct state *s, uint8_t *buf)
{
    for (size_t i = 0; i < NOPS; i++) {
        const struct op *o = &ops[i];
        if (o->kind == OP_FLUSH) {
            if (dev_flush(dev) < 0)
                return;
            memcpy(s->dur, s->cur, SECTORS);
            memset(s->pend, 0, SECTORS);
            continue;
        }
        uint64_t s0 = o->off / FAULT_SECTOR, n = o->len / FAULT_SECTOR;
        for (uint64_t k = s0; k < s0 + n; k++)
            s->pend[k] |= (uint8_t)(1u << o->pat);
        int r;
        if (o->kind == OP_WRITE) {
            memset(buf, (int)o->pat, o->len);
            r = dev_pwrite(dev, buf, o->len, o->off);
        } else if (o->kind == OP_ZERO) {
            r = dev_write_zeroes(dev, o->off, o->len, 0);
        } else {
            r = dev_discard(dev, o->off, o->len);
        }
        if (r < 0)
            return;
        memset(s->cur + s0, (int)o->pat, n);
    }
}

/* Each sector of DATA (the whole disk) holds one allowed value of S. */
static void verify(const uint8_t *data, const struct state *s, const char *what)
{
    sectors_verify(data, s->dur, s->pend, SECTORS, what);
}

static unsigned qemu_reads;

/* The two files of DISK (the crash image) in q/, checked by qemu-img and
 * read by qemu-io as vdisk read them (DATA). */
static void qemu_agrees(const uint8_t *disk, const uint8_t *data, const char *what)
{
    RUN_OK("cd '%s' && rm -rf q && mkdir q", scratch_dir());
    write_file(scratch("q/i.qcow2"), disk, IMG_AREA);
    write_file(scratch("q/d.raw"), disk + IMG_AREA, VSIZE);
    struct run *q = run("cd '%s/q' && qemu-img check i.qcow2", scratch_dir());
    ck_assert_msg(q->status == 0 || q->status == 3, "%s: qemu-img check exited %d: %s %s", what,
                  q->status, q->out, q->err);
    char *cmds = sectors_qemu_reads(data, SECTORS);
    q = run("cd '%s/q' && qemu-io -r%s i.qcow2", scratch_dir(), cmds);
    ck_assert_msg(q->status == 0 && !strstr(q->out, "failed") && !strstr(q->err, "failed"),
                  "%s: qemu-io reads other data than vdisk (exit %d): %s %s", what, q->status,
                  q->out, q->err);
    qemu_reads++;
    free(cmds);
}

static void ignore_warning(void *opaque, const char *msg)
{
    (void)opaque;
    (void)msg;
}

static void power_cuts(bool raw)
{
    vdisk_set_warning_handler(ignore_warning, NULL);
    unsigned every = SANITIZED ? 11 : 5;
    const char *e = getenv("VDISK_DATAFILE_POWERLOSS_QEMU_EVERY");
    if (e && atoi(e) > 0)
        every = (unsigned)atoi(e);
    /* The image and its (empty) data file, as qemu-img makes them. */
    RUN_OK("cd '%s' && rm -f i.qcow2 d.raw", scratch_dir());
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "data_file", "d.raw"), 0);
    if (raw)
        ck_assert_int_eq(vdisk_options_set(o, "data_file_raw", "on"), 0);
    ck_assert_msg(vdisk_create(scratch("i.qcow2"), "qcow2", VSIZE, o) == 0, "%s",
                  vdisk_get_error());
    vdisk_options_free(o);
    size_t ilen, dlen;
    uint8_t *img = read_file(scratch("i.qcow2"), &ilen);
    uint8_t *dfile = read_file(scratch("d.raw"), &dlen);
    ck_assert_uint_le(ilen, IMG_AREA);
    ck_assert_uint_le(dlen, VSIZE);
    uint8_t *fresh = calloc(1, DISK);
    ck_assert_ptr_nonnull(fresh);
    memcpy(fresh, img, ilen);
    if (dlen)
        memcpy(fresh + IMG_AREA, dfile, dlen);
    free(img);
    free(dfile);
    uint8_t *buf = malloc(VSIZE), *cur;
    struct state *s0 = calloc(1, sizeof *s0), *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(s0);
    ck_assert_ptr_nonnull(s);
    const char *name = raw ? "data_file_raw=on" : "data_file";
    /* The whole workload: how many writes it makes; every value lands. */
    struct fault_disk *f = fault_new(fresh, DISK, DISK);
    struct vdisk_dev *dev = open_on(f, false);
    ck_assert_msg(dev != NULL, "%s", vdisk_get_error());
    *s = *s0;
    workload(dev, s, buf);
    dev_unref(dev);
    uint64_t total = fault_writes(f);
    struct fault_disk *g = fault_after_crash(f, FAULT_DROP_ALL, 1);
    ck_assert_ptr_nonnull(dev = open_on(g, true));
    ck_assert_int_eq(dev_pread(dev, buf, VSIZE, 0), 0);
    dev_unref(dev);
    memcpy(s->dur, s->cur, SECTORS);
    memset(s->pend, 0, SECTORS);
    verify(buf, s, name);
    fault_free(g);
    fault_free(f);
    ck_assert_uint_ge(total, NOPS - 3);
    unsigned images = 0, leaks = 0;
    for (uint64_t n = 1; n <= total; n++) {
        for (int pol = 0; pol < FAULT_POLICIES; pol++) {
            char what[160];
            snprintf(what, sizeof what, "%s: crash at write %llu of %llu (%s)", name,
                     (unsigned long long)n, (unsigned long long)total,
                     fault_policy_name((enum fault_policy)pol));
            f = fault_new(fresh, DISK, DISK);
            *s = *s0;
            fault_crash_at(f, n);
            dev = open_on(f, false);
            if (dev) {
                workload(dev, s, buf);
                dev_unref(dev);
            }
            g = fault_after_crash(f, (enum fault_policy)pol, n * 7 + 1);
            ck_assert_ptr_nonnull(g);
            dev = open_on(g, true);
            ck_assert_msg(dev != NULL, "%s: the image does not open: %s", what,
                          vdisk_get_error());
            struct vdisk_check_result res = {.struct_size = sizeof res};
            ck_assert_int_eq(dev->drv->check(dev, 0, &res, NULL, NULL), 0);
            ck_assert_msg(res.corruptions == 0, "%s: %lld corruptions", what,
                          (long long)res.corruptions);
            leaks += res.leaks > 0;
            ck_assert_int_eq(dev_pread(dev, buf, VSIZE, 0), 0);
            dev_unref(dev);
            verify(buf, s, what);
            size_t clen;
            ck_assert_int_eq(fault_current(g, &cur, &clen), 0);
            ck_assert_uint_ge(clen, IMG_AREA);
            if (raw) {
                /* The raw data file holds the disk's data where the image
                 * maps data (where the disk reads zeroes, a write whose
                 * L2 entry the cut lost may have landed). */
                uint8_t *d = calloc(1, VSIZE);
                ck_assert_ptr_nonnull(d);
                if (clen > IMG_AREA)
                    memcpy(d, cur + IMG_AREA, clen - IMG_AREA < VSIZE ? clen - IMG_AREA : VSIZE);
                for (unsigned k = 0; k < SECTORS; k++)
                    if (buf[(size_t)k * FAULT_SECTOR])
                        ck_assert_msg(!memcmp(buf + (size_t)k * FAULT_SECTOR,
                                              d + (size_t)k * FAULT_SECTOR, FAULT_SECTOR),
                                      "%s: sector %u of the raw data file is not the disk's",
                                      what, k);
                free(d);
            }
            if (images++ % every == 0) {
                uint8_t *full = calloc(1, DISK);
                ck_assert_ptr_nonnull(full);
                memcpy(full, cur, clen < DISK ? clen : DISK);
                qemu_agrees(full, buf, what);
                free(full);
            }
            free(cur);
            fault_free(g);
            fault_free(f);
        }
    }
    printf("%s: %llu crash points x %d policies: %u images (%u with leaks), %u read by "
           "qemu-io\n", name, (unsigned long long)total, (int)FAULT_POLICIES, images, leaks,
           qemu_reads);
    ck_assert_uint_gt(qemu_reads, 0);
    qemu_reads = 0;
    free(fresh);
    free(buf);
    free(s0);
    free(s);
}

START_TEST(data_file)
{
    power_cuts(false);
}
END_TEST

START_TEST(data_file_raw)
{
    power_cuts(true);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("datafile-powerloss");
    TCase *tc = tcase_create("datafile");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, data_file);
    tcase_add_test(tc, data_file_raw);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
