/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/format_powerloss.c: power cuts during allocating writes
 * to a new image of the format FORMAT (built as vdi-powerloss: a dynamic
 * VDI image; vmdk-powerloss: a monolithicSparse VMDK; vhdx-powerloss: a
 * dynamic VHDX image with 1 MiB blocks), at every write of
 * the workload, under every crash policy of the fault disk
 * (tests/common/fault.h), reordering ones included.  After each cut the
 * image opens, no map or grain table entry points at data that was not
 * written (each block reads as its pattern or as zeroes), every block
 * written before the last completed flush reads as written, and check
 * finds at most what the format allows: for VDI the header's count of
 * allocated blocks behind the map (a write-back cut between the two), for
 * VMDK and VHDX nothing.  A VHDX image cut with its log open is opened
 * writable (vdisk replays the log, as qemu-img check -r all does); a copy
 * of it is also replayed by qemu-img check -r all, which must then find
 * the image clean and read the same blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"

#ifndef FORMAT
#define FORMAT "vdi"
#endif
/* What the close after a cut warns, and how many corruptions check may
 * find after one. */
#define VDI (strcmp(FORMAT, "vdi") == 0)
#define VHDX (strcmp(FORMAT, "vhdx") == 0)
#define CLOSE_WARNING (VDI    ? "the block map could not be written at close"   \
                       : VHDX ? "the VHDX log could not be closed"             \
                              : "new grain table entries could not be written at close")
#define CORRUPTIONS_ALLOWED (VDI ? 1 : 0)

#define BLOCK (1u << 20)
#define NBLOCKS 6
#define LIMIT (64u << 20)

/* The workload: block i gets pattern i + 1 (a 64 KiB run in its middle),
 * in the order below, with a flush after every second write.  Returns the
 * number of blocks written and flushed before the first failure. */
static const unsigned order[NBLOCKS] = {3, 0, 5, 1, 4, 2};

static unsigned workload(struct vdisk_dev *dev, uint8_t *buf)
{
    unsigned durable = 0;
    for (unsigned i = 0; i < NBLOCKS; i++) {
        unsigned b = order[i];
        memset(buf, (int)(b + 1), 65536);
        if (dev_pwrite(dev, buf, 65536, (uint64_t)b * BLOCK + 300000) < 0)
            return durable;
        if (i % 2 == 1) {
            if (dev_flush(dev) < 0)
                return durable;
            durable = i + 1;
        }
    }
    return durable;
}

/* Every block of DEV reads as written or as zeroes, and those among the
 * first DURABLE of the workload as written. */
static void verify(struct vdisk_dev *dev, unsigned durable, uint8_t *buf, uint8_t *want,
                   uint64_t n, int pol, const char *who)
{
    for (unsigned b = 0; b < NBLOCKS; b++) {
        ck_assert_int_eq(dev_pread(dev, buf, BLOCK, (uint64_t)b * BLOCK), 0);
        bool must = false;
        for (unsigned i = 0; i < durable; i++)
            must |= order[i] == b;
        memset(want, 0, BLOCK);
        memset(want + 300000, (int)(b + 1), 65536);
        bool written = memcmp(buf, want, BLOCK) == 0;
        memset(want, 0, BLOCK);
        bool zero = memcmp(buf, want, BLOCK) == 0;
        ck_assert_msg(written || (!must && zero), "crash at write %llu (%s, %s): block %u "
                      "reads neither as written nor as zeroes%s", (unsigned long long)n,
                      fault_policy_name((enum fault_policy)pol), who, b,
                      must ? " (it was flushed)" : "");
    }
}

/* VHDX: the crashed image G replayed by qemu-img check -r all, then clean
 * for qemu-img check, and read by vdisk as the workload left it. */
static void qemu_replays(struct fault_disk *g, unsigned durable, uint8_t *buf, uint8_t *want,
                         uint64_t n, int pol)
{
    uint8_t *data;
    size_t len;
    ck_assert_int_eq(fault_current(g, &data, &len), 0);
    const char *copy = scratch("q.vhdx");
    write_file(copy, data, len);
    free(data);
    RUN_OK("qemu-img check -q -r all '%s' && qemu-img check -q '%s'", copy, copy);
    struct vdisk_open_params ro = fault_params(true);
    struct vdisk_dev *dev;
    ck_assert_int_eq(dev_open(&dev, copy, FORMAT, &ro, NULL), 0);
    verify(dev, durable, buf, want, n, pol, "replayed by qemu-img");
    dev_unref(dev);
}

/* The close after a cut warns that the map could not be written: counted. */
static unsigned warnings;
/* Recovered opens that replayed a log. */
static unsigned replays;

static void count_warning(void *opaque, const char *msg)
{
    (void)opaque;
    ck_assert_msg(strstr(msg, CLOSE_WARNING), "%s", msg);
    warnings++;
}

START_TEST(power_cut_at_every_write)
{
    vdisk_set_warning_handler(count_warning, NULL);
    const char *img = scratch("p.img");
    vdisk_options *o = NULL;
    if (VHDX) {
        require_program("qemu-img");
        ck_assert_int_eq(vdisk_options_new(&o), 0);
        ck_assert_int_eq(vdisk_options_set(o, "block_size", "1M"), 0);
    }
    ck_assert_int_eq(vdisk_create(img, FORMAT, NBLOCKS * (uint64_t)BLOCK, o), 0);
    vdisk_options_free(o);
    size_t len;
    uint8_t *fresh = read_file(img, &len);
    uint8_t *buf = malloc(BLOCK), *want = malloc(BLOCK);
    /* How many writes the workload makes. */
    struct fault_disk *f = fault_new(fresh, len, LIMIT);
    struct vdisk_open_params p = fault_params(false);
    struct vdisk_dev *file, *dev;
    ck_assert_int_eq(fault_open(&file, f, img, &p), 0);
    ck_assert_int_eq(dev_open_format(&dev, file, FORMAT, &p, NULL), 0);
    ck_assert_uint_eq(workload(dev, buf), NBLOCKS);
    dev_unref(dev);
    uint64_t total = fault_writes(f);
    fault_free(f);
    ck_assert_uint_gt(total, NBLOCKS);
    for (uint64_t n = 1; n <= total; n++) {
        for (int pol = 0; pol < FAULT_POLICIES; pol++) {
            f = fault_new(fresh, len, LIMIT);
            ck_assert_int_eq(fault_open(&file, f, img, &p), 0);
            ck_assert_int_eq(dev_open_format(&dev, file, FORMAT, &p, NULL), 0);
            fault_crash_at(f, n);
            unsigned durable = workload(dev, buf);
            dev_unref(dev);
            struct fault_disk *g = fault_after_crash(f, (enum fault_policy)pol, n * 7 + 1);
            ck_assert_ptr_nonnull(g);
            if (VHDX)
                qemu_replays(g, durable, buf, want, n, pol);
            /* A VHDX log is replayed by a writable open only. */
            struct vdisk_open_params ro = fault_params(!VHDX);
            ck_assert_int_eq(fault_open(&file, g, img, &ro), 0);
            int r = dev_open_format(&dev, file, FORMAT, &ro, NULL);
            ck_assert_msg(r == 0, "crash at write %llu (%s): %s", (unsigned long long)n,
                          fault_policy_name((enum fault_policy)pol), vdisk_get_error());
            verify(dev, durable, buf, want, n, pol, "replayed by vdisk");
            struct vdisk_check_result res = {.struct_size = sizeof res};
            ck_assert_int_eq(dev->drv->check(dev, 0, &res, NULL, NULL), 0);
            replays += res.corruptions_fixed > 0;
            ck_assert_msg(res.corruptions <= CORRUPTIONS_ALLOWED, "crash at write %llu (%s): %lld corruptions",
                          (unsigned long long)n, fault_policy_name((enum fault_policy)pol),
                          (long long)res.corruptions);
            dev_unref(dev);
            fault_free(g);
            fault_free(f);
        }
    }
    ck_assert_uint_gt(warnings, 0);
    /* VHDX: cuts left logs to replay (the log stays open while writing). */
    if (VHDX)
        ck_assert_uint_gt(replays, 0);
    free(fresh);
    free(buf);
    free(want);
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create(FORMAT "-powerloss");
    TCase *tc = tcase_create(FORMAT);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, power_cut_at_every_write);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(make_suite());
}
