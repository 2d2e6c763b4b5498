/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/format_powerloss.c: power cuts during allocating writes
 * to a new image of the format FORMAT (built as vdi-powerloss: a dynamic
 * VDI image; vmdk-powerloss: a monolithicSparse VMDK), at every write of
 * the workload, under every crash policy of the fault disk
 * (tests/common/fault.h), reordering ones included.  After each cut the
 * image opens, no map or grain table entry points at data that was not
 * written (each block reads as its pattern or as zeroes), every block
 * written before the last completed flush reads as written, and check
 * finds at most what the format allows: for VDI the header's count of
 * allocated blocks behind the map (a write-back cut between the two), for
 * VMDK nothing.
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
#define CLOSE_WARNING (VDI ? "the block map could not be written at close" \
                           : "new grain table entries could not be written at close")
#define CORRUPTIONS_ALLOWED (VDI ? 1 : 0)

#define BLOCK (1u << 20)
#define NBLOCKS 6
#define LIMIT (64u << 20)

static struct vdisk_open_params params(bool ro)
{
    struct vdisk_open_params p = {
        .read_only = ro,
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = VDISK_ENGINE_THREADS,
        .threads = 1,
    };
    return p;
}

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

/* The close after a cut warns that the map could not be written: counted. */
static unsigned warnings;

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
    ck_assert_int_eq(vdisk_create(img, FORMAT, NBLOCKS * (uint64_t)BLOCK, NULL), 0);
    size_t len;
    uint8_t *fresh = read_file(img, &len);
    uint8_t *buf = malloc(BLOCK), *want = malloc(BLOCK);
    /* How many writes the workload makes. */
    struct fault_disk *f = fault_new(fresh, len, LIMIT);
    struct vdisk_open_params p = params(false);
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
            struct vdisk_open_params ro = params(true);
            ck_assert_int_eq(fault_open(&file, g, img, &ro), 0);
            int r = dev_open_format(&dev, file, FORMAT, &ro, NULL);
            ck_assert_msg(r == 0, "crash at write %llu (%s): %s", (unsigned long long)n,
                          fault_policy_name((enum fault_policy)pol), vdisk_get_error());
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
                ck_assert_msg(written || (!must && zero), "crash at write %llu (%s): block %u "
                              "reads neither as written nor as zeroes%s", (unsigned long long)n,
                              fault_policy_name((enum fault_policy)pol), b,
                              must ? " (it was flushed)" : "");
            }
            struct vdisk_check_result res = {.struct_size = sizeof res};
            ck_assert_int_eq(dev->drv->check(dev, 0, &res, NULL, NULL), 0);
            ck_assert_msg(res.corruptions <= CORRUPTIONS_ALLOWED, "crash at write %llu (%s): %lld corruptions",
                          (unsigned long long)n, fault_policy_name((enum fault_policy)pol),
                          (long long)res.corruptions);
            dev_unref(dev);
            fault_free(g);
            fault_free(f);
        }
    }
    ck_assert_uint_gt(warnings, 0);
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
