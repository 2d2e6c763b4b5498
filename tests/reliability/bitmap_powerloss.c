/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/bitmap_powerloss.c: power cuts while vdisk keeps the
 * persistent dirty bitmaps of a qcow2 image (issue 23), at every write of
 * the workload and under every crash policy of the fault disk
 * (tests/common/fault.h).
 *
 * The image (made by qemu-img) has bitmaps b0 (enabled, 64 KiB granules)
 * and b1 (enabled, 4 KiB).  The workload opens it read-write (the bitmaps
 * flagged in use), adds b2 (enabled, 512-byte granules), removes b1, writes
 * blocks with a flush after every second one, and closes it (the bitmaps
 * stored back).  After each cut the image must:
 *   - open, and have no corruption for vdisk's check (leaks are allowed);
 *   - have b0, and b1 and b2 as before or after their operation (never
 *     half of one);
 *   - never be silently wrong: every bitmap that is not flagged in use has
 *     every block that differs from the image before the workload dirty.
 * On a sample, qemu-img check agrees that nothing is corrupt and qemu-img
 * info reads the bitmaps.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"

#define BLOCK (1u << 20)
#define NBLOCKS 6
#define LIMIT (64u << 20)

static const unsigned order[NBLOCKS] = {3, 0, 5, 1, 4, 2};

/* Opens the image on F read-write, then the workload; false once a step
 * failed (the power is cut). */
static bool workload(struct fault_disk *f, const char *img, uint8_t *buf)
{
    struct vdisk_open_params p = fault_params(false);
    struct vdisk_dev *file, *dev;
    ck_assert_int_eq(fault_open(&file, f, img, &p), 0);
    if (dev_open_format(&dev, file, "qcow2", &p, NULL) < 0) {
        dev_unref(file);
        return false;
    }
    bool ok = vdisk_bitmap_add(dev, "b2", 512, 0) == 0 && vdisk_bitmap_remove(dev, "b1") == 0;
    for (unsigned i = 0; ok && i < NBLOCKS; i++) {
        unsigned b = order[i];
        memset(buf, (int)(b + 1), 4096);
        ok = dev_pwrite(dev, buf, 4096, (uint64_t)b * BLOCK + 300000) == 0;
        if (ok && i % 2 == 1)
            ok = dev_flush(dev) == 0;
    }
    dev_unref(dev);
    return ok;
}

static bool has_bitmap(const struct vdisk_info *in, const char *name, uint32_t *flags)
{
    for (uint32_t i = 0; i < in->nb_bitmaps; i++) {
        if (strcmp(in->bitmaps[i].name, name) == 0) {
            *flags = in->bitmaps[i].flags;
            return true;
        }
    }
    return false;
}

static bool is_dirty(struct vdisk_dev *dev, const char *name, uint64_t off, uint64_t len)
{
    for (uint64_t p = off; p < off + len;) {
        uint64_t n;
        bool dirty;
        ck_assert_msg(vdisk_bitmap_status(dev, name, p, off + len - p, &n, &dirty) == 0, "%s",
                      vdisk_get_error());
        if (!dirty)
            return false;
        p += n;
    }
    return true;
}

static unsigned in_use_seen, clean_seen, qemu_checks;

static void verify(struct fault_disk *g, const char *img, uint64_t n, int pol, uint8_t *buf)
{
    struct vdisk_open_params ro = fault_params(true);
    struct vdisk_dev *file, *dev;
    ck_assert_int_eq(fault_open(&file, g, img, &ro), 0);
    int r = dev_open_format(&dev, file, "qcow2", &ro, NULL);
    ck_assert_msg(r == 0, "crash at write %llu (%s): %s", (unsigned long long)n,
                  fault_policy_name((enum fault_policy)pol), vdisk_get_error());
    struct vdisk_check_result res = {.struct_size = sizeof res};
    ck_assert_int_eq(dev->drv->check(dev, 0, &res, NULL, NULL), 0);
    ck_assert_msg(res.corruptions == 0, "crash at write %llu (%s): %lld corruptions",
                  (unsigned long long)n, fault_policy_name((enum fault_policy)pol),
                  (long long)res.corruptions);
    struct vdisk_info in = {.struct_size = sizeof in};
    ck_assert_int_eq(vdisk_get_info(dev, &in), 0);
    uint32_t fl[3] = {0};
    bool have[3];
    have[0] = has_bitmap(&in, "b0", &fl[0]);
    have[1] = has_bitmap(&in, "b1", &fl[1]);
    have[2] = has_bitmap(&in, "b2", &fl[2]);
    ck_assert_msg(have[0] && in.nb_bitmaps == (uint32_t)(1 + have[1] + have[2]),
                  "crash at write %llu (%s): %u bitmaps", (unsigned long long)n,
                  fault_policy_name((enum fault_policy)pol), in.nb_bitmaps);
    /* b1 goes only after b2 came. */
    ck_assert(have[1] || have[2]);
    static const char *const names[3] = {"b0", "b1", "b2"};
    for (unsigned b = 0; b < NBLOCKS; b++) {
        uint64_t off = (uint64_t)b * BLOCK + 300000;
        ck_assert_int_eq(dev_pread(dev, buf, 4096, off), 0);
        bool changed = false;
        for (unsigned k = 0; k < 4096; k++)
            changed |= buf[k] != 0;
        for (int i = 0; i < 3; i++) {
            if (!have[i])
                continue;
            if (fl[i] & VDISK_BITMAP_IN_USE) {
                in_use_seen++;
                continue;
            }
            clean_seen++;
            ck_assert_msg(!changed || is_dirty(dev, names[i], off, 4096),
                          "crash at write %llu (%s): block %u changed, but bitmap %s (not in "
                          "use) has it clean", (unsigned long long)n,
                          fault_policy_name((enum fault_policy)pol), b, names[i]);
        }
    }
    dev_unref(dev);
    if ((n + (uint64_t)pol) % 23 == 0) {
        uint8_t *data;
        size_t len;
        ck_assert_int_eq(fault_current(g, &data, &len), 0);
        const char *copy = scratch("q.qcow2");
        write_file(copy, data, len);
        free(data);
        struct run *q = run("qemu-img check '%s'", copy);
        ck_assert_msg(q->status == 0 || q->status == 3, "crash at write %llu (%s): qemu-img "
                      "check exited %d: %s %s", (unsigned long long)n,
                      fault_policy_name((enum fault_policy)pol), q->status, q->out, q->err);
        RUN_OK("qemu-img info '%s' >/dev/null", copy);
        qemu_checks++;
    }
}

static void ignore_warning(void *opaque, const char *msg)
{
    (void)opaque;
    (void)msg;
}

START_TEST(power_cut_at_every_write)
{
    vdisk_set_warning_handler(ignore_warning, NULL);
    const char *img = scratch("p.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' %u", img, NBLOCKS * BLOCK);
    RUN_OK("qemu-img bitmap --add '%s' b0 && qemu-img bitmap --add -g 4k '%s' b1", img, img);
    size_t len;
    uint8_t *fresh = read_file(img, &len);
    uint8_t *buf = malloc(BLOCK);
    struct fault_disk *f = fault_new(fresh, len, LIMIT);
    ck_assert(workload(f, img, buf));
    uint64_t total = fault_writes(f);
    /* The finished workload: every bitmap stored, none in use. */
    struct fault_disk *g = fault_after_crash(f, FAULT_DROP_ALL, 1);
    verify(g, img, total + 1, 0, buf);
    ck_assert_uint_eq(in_use_seen, 0);
    fault_free(g);
    fault_free(f);
    for (uint64_t n = 1; n <= total; n++) {
        for (int pol = 0; pol < FAULT_POLICIES; pol++) {
            f = fault_new(fresh, len, LIMIT);
            fault_crash_at(f, n);
            workload(f, img, buf);
            g = fault_after_crash(f, (enum fault_policy)pol, n * 7 + 1);
            ck_assert_ptr_nonnull(g);
            verify(g, img, n, pol, buf);
            fault_free(g);
            fault_free(f);
        }
    }
    printf("%llu crash points x %d policies: bitmaps seen in use %u times, stored %u times; "
           "%u qemu-img checks\n", (unsigned long long)total, (int)FAULT_POLICIES, in_use_seen,
           clean_seen, qemu_checks);
    /* Both kinds of image were seen. */
    ck_assert_uint_gt(in_use_seen, 0);
    ck_assert_uint_gt(clean_seen, 0);
    ck_assert_uint_gt(qemu_checks, 0);
    free(fresh);
    free(buf);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    Suite *s = suite_create("bitmap-powerloss");
    TCase *tc = tcase_create("bitmaps");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, power_cut_at_every_write);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
