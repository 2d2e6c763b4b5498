/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/ioerror.c: I/O errors and full disks.
 *
 * On the fault-injecting device (tests/common/fault.h): EIO and ENOSPC on
 * data writes, on each metadata write of an allocating qcow2 write, and on
 * flushes, through qcow2 and directly (raw).  The caller gets the error
 * with a message naming the file and the offset; the image stays
 * consistent (check); later writes work and are kept.  A flush that fails
 * after the cache lost the writes (as Linux after a failed fsync) must not
 * be followed by a flush that reports success while the data is gone (the
 * fsync-gate class).  On a real 2 MiB tmpfs: ENOSPC through raw and qcow2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"

#define VSIZE (4u << 20)
#define CS 4096u

static struct fault_disk *new_qcow2_disk(void)
{
    const char *tmpl = scratch("tmpl.qcow2");
    unlink(tmpl);
    vdisk_options *o;
    ck_assert(vdisk_options_new(&o) == 0);
    vdisk_options_set(o, "cluster_size", "4096");
    ck_assert_msg(vdisk_create(tmpl, "qcow2", VSIZE, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    size_t len;
    uint8_t *img = read_file(tmpl, &len);
    struct fault_disk *f = fault_new(img, len, 64u << 20);
    free(img);
    ck_assert(f != NULL);
    return f;
}

static struct vdisk_dev *open_on(struct fault_disk *f, const char *format)
{
    struct vdisk_open_params p = fault_params(false);
    struct vdisk_dev *file, *dev;
    ck_assert(fault_open(&file, f, scratch("disk.img"), &p) == 0);
    ck_assert_msg(dev_open_format(&dev, file, format, &p, NULL) == 0, "%s", vdisk_get_error());
    return dev;
}

/* The message names the file and an offset. */
static void assert_message(const char *what)
{
    const char *m = vdisk_get_error();
    ck_assert_msg(strstr(m, scratch("disk.img")) != NULL, "%s: the message '%s' does not name "
                  "the file", what, m);
    ck_assert_msg(strstr(m, "offset") != NULL, "%s: the message '%s' names no offset", what, m);
}

static void assert_consistent(struct vdisk_dev *dev, const char *what)
{
    struct vdisk_check_result res = {.struct_size = sizeof res};
    ck_assert_msg(vdisk_check(dev, 0, &res, NULL, NULL) == 0, "%s: %s", what, vdisk_get_error());
    ck_assert_msg(res.corruptions == 0 && res.check_errors == 0,
                  "%s: check finds %lld corruptions, %lld check errors", what,
                  (long long)res.corruptions, (long long)res.check_errors);
}

/* Reopens the durable image (what a crash leaves) and reads LEN at OFF. */
static void assert_durable(struct fault_disk *f, const char *format, const uint8_t *want,
                           size_t len, uint64_t off, const char *what)
{
    struct fault_disk *g = fault_after_crash(f, FAULT_DROP_ALL, 0);
    ck_assert(g != NULL);
    struct vdisk_dev *dev = open_on(g, format);
    uint8_t *got = malloc(len);
    ck_assert(dev_pread(dev, got, len, off) == 0);
    ck_assert_msg(memcmp(got, want, len) == 0, "%s: the data at %llu is not durable", what,
                  (unsigned long long)off);
    if (strcmp(format, "qcow2") == 0)
        assert_consistent(dev, what);
    free(got);
    dev_unref(dev);
    fault_free(g);
}

/*
 * Each write of an allocating qcow2 write fails in turn (data, L2 table,
 * refcount block, ...), with EIO and with ENOSPC.
 */
START_TEST(qcow2_write_errors)
{
    static const int errs[] = {-EIO, -ENOSPC};
    for (int e = 0; e < 2; e++) {
        for (unsigned k = 1; k <= 8; k++) {
            struct fault_disk *f = new_qcow2_disk();
            struct vdisk_dev *dev = open_on(f, "qcow2");
            uint8_t a[CS], b[CS];
            memset(a, 0x11, sizeof a);
            memset(b, 0x22, sizeof b);
            ck_assert(dev_pwrite(dev, a, CS, 0) == 0);
            ck_assert(dev_flush(dev) == 0);
            uint64_t w0 = fault_writes(f);
            fault_fail_writes(f, w0 + k, 1, errs[e]);
            /* An allocating write in a new L2 table's range, then a flush. */
            int r = dev_pwrite(dev, b, CS, 3u << 20);
            if (r == 0)
                r = dev_flush(dev);
            char what[96];
            snprintf(what, sizeof what, "%s on write %u", strerror(-errs[e]), k);
            if (fault_writes(f) < w0 + k) { /* fewer writes than k: nothing failed */
                ck_assert_int_eq(r, 0);
            } else {
                ck_assert_msg(r == errs[e], "%s: the caller gets %d", what, r);
                assert_message(what);
            }
            fault_fail_writes(f, 0, 0, 0);
            assert_consistent(dev, what);
            /* Later writes work and are kept. */
            memset(b, 0x33, sizeof b);
            ck_assert_msg(dev_pwrite(dev, b, CS, 3u << 20) == 0, "%s: %s", what,
                          vdisk_get_error());
            ck_assert_msg(dev_pwrite(dev, b, CS, 1u << 20) == 0, "%s: %s", what,
                          vdisk_get_error());
            ck_assert_msg(dev_flush(dev) == 0, "%s: %s", what, vdisk_get_error());
            assert_consistent(dev, what);
            assert_durable(f, "qcow2", b, CS, 3u << 20, what);
            assert_durable(f, "qcow2", b, CS, 1u << 20, what);
            assert_durable(f, "qcow2", a, CS, 0, what);
            dev_unref(dev);
            fault_free(f);
        }
    }
}
END_TEST

/* The disk is full: allocating writes fail with ENOSPC, overwrites work. */
START_TEST(qcow2_disk_full)
{
    struct fault_disk *f = new_qcow2_disk();
    struct vdisk_dev *dev = open_on(f, "qcow2");
    uint8_t a[CS];
    memset(a, 0x44, sizeof a);
    ck_assert(dev_pwrite(dev, a, CS, 0) == 0);
    ck_assert(dev_flush(dev) == 0);
    uint8_t *cur;
    size_t len;
    ck_assert(fault_current(f, &cur, &len) == 0);
    free(cur);
    fault_set_limit(f, len);
    int r = dev_pwrite(dev, a, CS, 2u << 20);
    ck_assert_msg(r == -ENOSPC, "an allocating write on a full disk returns %d", r);
    assert_message("full disk");
    memset(a, 0x55, sizeof a);
    ck_assert_msg(dev_pwrite(dev, a, CS, 0) == 0, "an overwrite on a full disk: %s",
                  vdisk_get_error());
    ck_assert(dev_flush(dev) == 0);
    assert_consistent(dev, "full disk");
    fault_set_limit(f, 64u << 20);
    ck_assert_msg(dev_pwrite(dev, a, CS, 2u << 20) == 0, "after space is freed: %s",
                  vdisk_get_error());
    ck_assert(dev_flush(dev) == 0);
    assert_consistent(dev, "full disk, then space");
    assert_durable(f, "qcow2", a, CS, 0, "full disk");
    assert_durable(f, "qcow2", a, CS, 2u << 20, "full disk");
    dev_unref(dev);
    fault_free(f);
}
END_TEST

/* Raw (the fault device itself): the error reaches the caller. */
START_TEST(raw_write_errors)
{
    uint8_t *zero = calloc(1, VSIZE);
    struct fault_disk *f = fault_new(zero, VSIZE, VSIZE);
    free(zero);
    struct vdisk_dev *dev = open_on(f, "raw");
    uint8_t a[CS];
    memset(a, 0x66, sizeof a);
    fault_fail_writes(f, fault_writes(f) + 1, 1, -EIO);
    ck_assert_int_eq(dev_pwrite(dev, a, CS, 8192), -EIO);
    assert_message("raw EIO");
    ck_assert(dev_pwrite(dev, a, CS, 8192) == 0);
    ck_assert(dev_flush(dev) == 0);
    assert_durable(f, "raw", a, CS, 8192, "raw");
    dev_unref(dev);
    fault_free(f);
}
END_TEST

/*
 * fsync-gate: a flush fails and the cache lost the writes (Linux marks the
 * pages clean).  A later flush that succeeds must mean the data is on the
 * disk; reporting success while it is gone is the bug.
 */
static void flush_gate(const char *format)
{
    struct fault_disk *f;
    if (strcmp(format, "qcow2") == 0) {
        f = new_qcow2_disk();
    } else {
        uint8_t *zero = calloc(1, VSIZE);
        f = fault_new(zero, VSIZE, VSIZE);
        free(zero);
    }
    struct vdisk_dev *dev = open_on(f, format);
    uint8_t a[CS];
    memset(a, 0x77, sizeof a);
    ck_assert(dev_pwrite(dev, a, CS, 1u << 20) == 0);
    fault_fail_flushes(f, fault_flushes(f) + 1, 1, -EIO, true);
    int r = dev_flush(dev);
    ck_assert_msg(r == -EIO, "%s: the failed flush returns %d", format, r);
    ck_assert_msg(strstr(vdisk_get_error(), scratch("disk.img")) != NULL,
                  "%s: the flush error '%s' does not name the file", format, vdisk_get_error());
    fault_fail_flushes(f, 0, 0, 0, false);
    r = dev_flush(dev);
    if (r == 0) {
        /* Success is only honest if the data reached the disk. */
        struct fault_disk *g = fault_after_crash(f, FAULT_DROP_ALL, 0);
        struct vdisk_open_params p = fault_params(false);
        struct vdisk_dev *file, *d2;
        ck_assert(fault_open(&file, g, scratch("disk.img"), &p) == 0);
        int o = dev_open_format(&d2, file, format, &p, NULL);
        uint8_t got[CS] = {0};
        bool ok = o == 0 && dev_pread(d2, got, CS, 1u << 20) == 0 && !memcmp(got, a, CS);
        if (o == 0)
            dev_unref(d2);
        else
            dev_unref(file);
        fault_free(g);
        ck_assert_msg(ok, "%s: a flush after a failed flush reports success, but the data "
                      "written before the failure is not on the disk (fsync-gate)", format);
    }
    dev_unref(dev);
    fault_free(f);
}

START_TEST(flush_error_qcow2)
{
    flush_gate("qcow2");
}
END_TEST

/* A flush error, even one after which the cache happens to survive: the
 * device does not pretend later flushes succeed (the fsync-gate rule:
 * what the failed flush covered may be lost).  Reopened, the image is
 * consistent and holds the data once a flush succeeds there. */
START_TEST(flush_error_retry)
{
    struct fault_disk *f = new_qcow2_disk();
    struct vdisk_dev *dev = open_on(f, "qcow2");
    uint8_t a[CS];
    memset(a, 0x78, sizeof a);
    ck_assert(dev_pwrite(dev, a, CS, 1u << 20) == 0);
    fault_fail_flushes(f, fault_flushes(f) + 1, 1, -EIO, false);
    ck_assert_int_eq(dev_flush(dev), -EIO);
    fault_fail_flushes(f, 0, 0, 0, false);
    ck_assert_int_eq(dev_flush(dev), -EIO);
    ck_assert_msg(strstr(vdisk_get_error(), "an earlier flush failed (Input/output error); data "
                                            "written before it may be lost"),
                  "%s", vdisk_get_error());
    dev_unref(dev);
    dev = open_on(f, "qcow2");
    ck_assert_int_eq(dev_pwrite(dev, a, CS, 1u << 20), 0);
    ck_assert_msg(dev_flush(dev) == 0, "%s", vdisk_get_error());
    assert_consistent(dev, "flush retry");
    assert_durable(f, "qcow2", a, CS, 1u << 20, "flush retry");
    dev_unref(dev);
    fault_free(f);
}
END_TEST

/* A real full file system: a 2 MiB tmpfs, mounted by the test (as root, as
 * in CI); NULL with errno set when it cannot be mounted. */
static const char *mount_small_tmpfs(const char *name)
{
    const char *mnt = scratch(name);
    if (mkdir(mnt, 0755) != 0 && errno != EEXIST)
        return NULL;
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0)
        return NULL;
    return mnt;
}

START_TEST(real_enospc)
{
    const char *mnt = mount_small_tmpfs("tmpfs1");
    const char *mnt2 = mnt ? mount_small_tmpfs("tmpfs2") : NULL;
    if (!mnt2) {
        int err = errno;
        if (mnt)
            umount2(mnt, MNT_DETACH);
        SKIP_CASE("cannot mount a 2 MiB tmpfs at %s (%s%s)", scratch(mnt ? "tmpfs2" : "tmpfs1"),
                  strerror(err), geteuid() != 0 ? "; it needs root" : "");
    }
    char raw[600], qc[600];
    snprintf(raw, sizeof raw, "%s/disk.raw", mnt);
    snprintf(qc, sizeof qc, "%s/disk.qcow2", mnt2);
    uint8_t *buf = malloc(1 << 20);
    memset(buf, 0x5a, 1 << 20);
    /* Raw: a sparse 8 MiB file; the third MiB does not fit. */
    ck_assert_msg(vdisk_create(raw, "raw", 8u << 20, NULL) == 0, "%s", vdisk_get_error());
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, raw, NULL) == 0, "%s", vdisk_get_error());
    int r = 0;
    uint64_t off = 0;
    for (; off < (8u << 20) && r == 0; off += 1 << 20)
        r = vdisk_pwrite(dev, buf, 1 << 20, off);
    if (r == 0)
        r = vdisk_flush(dev);
    ck_assert_msg(r == -ENOSPC, "raw on a full tmpfs: %d", r);
    ck_assert_msg(strstr(vdisk_get_error(), raw) && strstr(vdisk_get_error(), "offset"),
                  "the message '%s' names neither the file nor the offset", vdisk_get_error());
    /* Written space still takes writes. */
    memset(buf, 0x5b, 4096);
    ck_assert_msg(vdisk_pwrite(dev, buf, 4096, 0) == 0, "%s", vdisk_get_error());
    ck_assert(vdisk_flush(dev) == 0);
    vdisk_close(dev);
    unlink(raw);
    /* qcow2: allocating writes fail, the image stays consistent. */
    ck_assert_msg(vdisk_create(qc, "qcow2", 8u << 20, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_open(&dev, qc, NULL) == 0, "%s", vdisk_get_error());
    memset(buf, 0x5c, 1 << 20);
    r = 0;
    for (off = 0; off < (8u << 20) && r == 0; off += 1 << 20)
        r = vdisk_pwrite(dev, buf, 1 << 20, off);
    if (r == 0)
        r = vdisk_flush(dev);
    ck_assert_msg(r == -ENOSPC, "qcow2 on a full tmpfs: %d", r);
    ck_assert_msg(strstr(vdisk_get_error(), qc) != NULL, "the message '%s' does not name the "
                  "file", vdisk_get_error());
    memset(buf, 0x5d, 4096);
    ck_assert_msg(vdisk_pwrite(dev, buf, 4096, 0) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_flush(dev) == 0, "%s", vdisk_get_error());
    struct vdisk_check_result res = {.struct_size = sizeof res};
    ck_assert(vdisk_check(dev, 0, &res, NULL, NULL) == 0);
    ck_assert_msg(res.corruptions == 0 && res.check_errors == 0, "%lld corruptions",
                  (long long)res.corruptions);
    vdisk_close(dev);
    if (have_program("qemu-img")) {
        struct run *q = run("qemu-img check -q '%s'", qc);
        ck_assert_msg(q->status == 0 || q->status == 3, "qemu-img check: %d %s%s", q->status,
                      q->out, q->err);
    } else {
        skip_note("real_enospc: qemu-img check of the qcow2 image: qemu-img is not installed");
    }
    ck_assert_msg(vdisk_open(&dev, qc, NULL) == 0, "%s", vdisk_get_error());
    uint8_t got[4096];
    ck_assert(vdisk_pread(dev, got, 4096, 0) == 0);
    ck_assert(memcmp(got, buf, 4096) == 0);
    vdisk_close(dev);
    free(buf);
    umount2(mnt, MNT_DETACH);
    umount2(mnt2, MNT_DETACH);
}
END_TEST

int main(void)
{
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("ioerror");
    TCase *tc = tcase_create("ioerror");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, qcow2_write_errors);
    tcase_add_test(tc, qcow2_disk_full);
    tcase_add_test(tc, raw_write_errors);
    tcase_add_test(tc, flush_error_qcow2);
    tcase_add_test(tc, flush_error_retry);
    tcase_add_test(tc, real_enospc);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
