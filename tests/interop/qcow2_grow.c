/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/qcow2_grow.c: cluster allocation when the refcount table
 * must grow, in the situation of QEMU's iotest 044 (issue 16, item 5):
 * an image with 512-byte clusters whose file is all in use, every entry of
 * its refcount table pointing to a full refcount block.  The image here is
 * a smaller twin of 044's (a 512 MiB file, 4,096 refcount blocks, a 2 GiB
 * disk), built by hand over a qemu-img create.
 *
 *   - vdisk io writes 1 MiB past the mapped data: the refcount table grows,
 *     qemu-img check finds no errors, qemu-io reads back exactly what was
 *     written (and zeroes around it and in the old data);
 *   - the metadata work of that write, counted in refcount cache lookups
 *     through the library: one lookup per refcount block for the search of
 *     a free cluster (4,096), not one per cluster (1 Mi, which took minutes
 *     with 044's 8 Mi clusters);
 *   - a second write in the same open looks up no block it already passed,
 *     and sequential allocation into an empty image costs the same per MiB
 *     at its end as at its start;
 *   - the file grows ahead of allocations (fallocate, so that writes into it
 *     do not extend the file one by one): while it is open the file is
 *     larger than its contents, and a copy taken then (a crash) is clean to
 *     qemu-img check and vdisk check; snapshots and a refcount table placed
 *     meanwhile go right after the contents, not past the grown part; at
 *     close the file ends where its last cluster does (qemu-img check's
 *     image end offset).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "../../formats/qcow2/qcow2.h"
#include "endian.h"
#include "harness.h"

#define CS 512ull
#define REFT_CLUSTERS 64ull                  /* 4,096 table entries */
#define REFT_ENTRIES (REFT_CLUSTERS * CS / 8)
#define RB_ENTRIES (CS / 2)                  /* 16-bit refcounts */
#define FILE_BYTES (REFT_ENTRIES * RB_ENTRIES * CS) /* 512 MiB */
#define DISK_BYTES (2ull << 30)
#define L1_ENTRIES (DISK_BYTES / (CS / 8 * CS)) /* 65,536 */
#define COPIED (1ull << 63)

static void put(int fd, const void *buf, uint64_t len, uint64_t off)
{
    ck_assert_int_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
}

/* The 044-like image at PATH; returns where the mapped guest data ends. */
static uint64_t make_full_image(const char *path)
{
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 %s %llu", path,
           (unsigned long long)DISK_BYTES);
    uint64_t reft = CS, rb = reft + REFT_CLUSTERS * CS, l1 = rb + REFT_ENTRIES * CS;
    uint64_t l2 = l1 + L1_ENTRIES * 8, data = l2 + L1_ENTRIES * CS;
    uint64_t ndata = (FILE_BYTES - data) / CS;
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t h[104];
    ck_assert_int_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    ck_assert_uint_eq(be32_load(h + 20), 9);
    be32_store(h + 36, (uint32_t)L1_ENTRIES);
    be64_store(h + 40, l1);
    be64_store(h + 48, reft);
    be32_store(h + 56, (uint32_t)REFT_CLUSTERS);
    put(fd, h, sizeof h, 0);

    uint64_t big = L1_ENTRIES * CS > REFT_ENTRIES * CS ? L1_ENTRIES * CS : REFT_ENTRIES * CS;
    uint8_t *b = calloc(1, big);
    ck_assert_ptr_nonnull(b);
    for (uint64_t i = 0; i < REFT_ENTRIES; i++)
        be64_store(b + i * 8, rb + i * CS);
    put(fd, b, REFT_ENTRIES * 8, reft);
    for (uint64_t i = 0; i < REFT_ENTRIES * RB_ENTRIES; i++)
        be16_store(b + i * 2, 1);
    put(fd, b, REFT_ENTRIES * CS, rb);
    for (uint64_t j = 0; j < L1_ENTRIES; j++)
        be64_store(b + j * 8, COPIED | (l2 + j * CS));
    put(fd, b, L1_ENTRIES * 8, l1);
    memset(b, 0, big);
    for (uint64_t k = 0; k < ndata; k++)
        be64_store(b + k * 8, COPIED | (data + k * CS));
    put(fd, b, ndata * 8, l2);
    free(b);
    ck_assert_int_eq(ftruncate(fd, (off_t)FILE_BYTES), 0);
    close(fd);
    return ndata * CS;
}

static uint64_t lookups(struct qcow2 *s)
{
    return s->rbc.hits + s->rbc.misses;
}

static uint32_t reft_clusters_of(const char *path)
{
    uint8_t h[60];
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    return be32_load(h + 56);
}

START_TEST(test_044_write)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *img = scratch("full.qcow2");
    uint64_t mapped = make_full_image(img);
    ck_assert_uint_lt(mapped, 1800ull << 20);
    RUN_OK("qemu-img check %s", img); /* the image as built is sound */

    RUN_OK("%s io -c 'write -P 0x5a 1800M 1M' %s", vdisk_bin(), img);
    ck_assert_uint_gt(reft_clusters_of(img), REFT_CLUSTERS);
    struct run *r = run("qemu-img check %s", img);
    ck_assert_msg(r->status == 0 && strstr(r->out, "No errors were found on the image."),
                  "qemu-img check (%d):\n%s%s", r->status, r->out, r->err);
    r = run("qemu-io -c 'read -P 0x5a 1800M 1M' -c 'read -P 0 1799M 1M' "
            "-c 'read -P 0 1801M 1M' -c 'read -P 0 0 1M' -c 'read -P 0 %llu 64k' %s",
            (unsigned long long)(mapped - 65536), img);
    ck_assert_msg(r->status == 0 && !strstr(r->out, "verification failed"),
                  "qemu-io read back (%d):\n%s%s", r->status, r->out, r->err);
}
END_TEST

START_TEST(test_044_lookups)
{
    require_program("qemu-img");
    const char *img = scratch("count.qcow2");
    make_full_image(img);
    vdisk_dev *dev = NULL;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    struct vdisk_dev *d = (struct vdisk_dev *)dev;
    ck_assert_str_eq(d->drv->name, "qcow2");
    struct qcow2 *s = d->priv;
    uint8_t *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0x5a, 1 << 20);

    /* The first allocation walks every refcount block once: 4,096 blocks,
     * plus a few lookups per cluster allocated (2,048 data clusters, 32 L2
     * tables are there already) and the new blocks. */
    uint64_t before = lookups(s);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 1 << 20, 1800ull << 20), 0);
    uint64_t first = lookups(s) - before;
    ck_assert_msg(first < 4 * REFT_ENTRIES + 8 * 2048,
                  "1 MiB written into the full image took %llu refcount cache lookups "
                  "(%llu refcount blocks, %llu clusters in the file)", (unsigned long long)first,
                  (unsigned long long)REFT_ENTRIES, (unsigned long long)(FILE_BYTES / CS));
    /* The next one starts where the first stopped. */
    before = lookups(s);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 1 << 20, 1900ull << 20), 0);
    uint64_t second = lookups(s) - before;
    ck_assert_msg(second < 8 * 2048, "the second 1 MiB took %llu refcount cache lookups",
                  (unsigned long long)second);
    free(buf);
    vdisk_close(dev);
    require_program("qemu-io");
    struct run *r = run("qemu-io -c 'read -P 0x5a 1800M 1M' -c 'read -P 0x5a 1900M 1M' %s", img);
    ck_assert_msg(r->status == 0 && !strstr(r->out, "verification failed"),
                  "qemu-io read back (%d):\n%s%s", r->status, r->out, r->err);
}
END_TEST

/* Sequential allocation into an empty image: the lookups of the last MiB
 * against the second (the first also makes the first tables). */
START_TEST(test_flat)
{
    require_program("qemu-img");
    const char *img = scratch("empty.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 %s 1G", img);
    vdisk_dev *dev = NULL;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    struct qcow2 *s = ((struct vdisk_dev *)dev)->priv;
    uint8_t *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    uint64_t seed = 44, per[48];
    for (unsigned i = 0; i < 48; i++) {
        fill_random(buf, 1 << 20, &seed);
        uint64_t before = lookups(s);
        ck_assert_int_eq(vdisk_pwrite(dev, buf, 1 << 20, (uint64_t)i << 20), 0);
        per[i] = lookups(s) - before;
    }
    ck_assert_msg(per[47] <= per[1] + per[1] / 4,
                  "refcount cache lookups per MiB: %llu at 1 MiB, %llu at 47 MiB",
                  (unsigned long long)per[1], (unsigned long long)per[47]);
    free(buf);
    vdisk_close(dev);
    RUN_OK("qemu-img check %s", img);
    /* Exact content: the same seeded data again, compared by qemu-img. */
    const char *raw = scratch("expect.raw");
    uint8_t *all = malloc(48 << 20);
    ck_assert_ptr_nonnull(all);
    seed = 44;
    for (unsigned i = 0; i < 48; i++)
        fill_random(all + ((size_t)i << 20), 1 << 20, &seed);
    write_file(raw, all, 48 << 20);
    free(all);
    RUN_OK("truncate -s 1G %s && qemu-img compare -f raw -F qcow2 %s %s", raw, raw, img);
}
END_TEST

static uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* qemu-img check's "Image end offset: N". */
static uint64_t image_end(const char *path)
{
    struct run *r = run("qemu-img check '%s'", path);
    ck_assert_msg(r->status == 0, "%s%s", r->out, r->err);
    const char *p = strstr(r->out, "Image end offset: ");
    ck_assert_msg(p, "%s", r->out);
    return strtoull(p + 18, NULL, 10);
}

START_TEST(test_grows_ahead)
{
    const char *img = scratch("ahead.qcow2"), *copy = scratch("ahead-crash.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 64M", img);
    uint64_t at_create = file_size(img);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    uint8_t *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    uint64_t seed = 7;
    fill_random(buf, 1 << 20, &seed);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(vdisk_pwrite(dev, buf, 1 << 20, (uint64_t)i << 20), 0);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    /* Grown ahead: more than the 4 MiB of data and their tables. */
    ck_assert_uint_ge(file_size(img), at_create + (16 << 20));
    /* A crash now: the copy is clean to both checkers. */
    RUN_OK("cp '%s' '%s'", img, copy);
    RUN_OK("qemu-img check -q '%s'", copy);
    RUN_OK("%s check -q '%s'", vdisk_bin(), copy);
    RUN_OK("qemu-img compare -U -q -f qcow2 -F qcow2 '%s' '%s'", img, copy);
    /* A snapshot and more data meanwhile. */
    ck_assert_msg(vdisk_snapshot_create(dev, "s1") == 0, "%s", vdisk_get_error());
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(vdisk_pwrite(dev, buf, 1 << 20, (uint64_t)(8 + i) << 20), 0);
    vdisk_close(dev);
    /* Closed: the file ends with its last cluster; nothing is past it, and
     * the snapshot's structures sit right after the first data. */
    uint64_t end = image_end(img);
    ck_assert_uint_eq(file_size(img), end);
    ck_assert_uint_lt(end, at_create + (9 << 20));
    RUN_OK("qemu-img check -q '%s'", img);
    RUN_OK("%s check -q '%s'", vdisk_bin(), img);
    RUN_OK("qemu-io -r -c 'read -q -P 0 4M 4M' '%s'", img);
    RUN_OK("qemu-img convert -O raw '%s' '%s'", img, scratch("ahead.raw"));
    size_t len;
    uint8_t *all = read_file(scratch("ahead.raw"), &len);
    ck_assert_uint_eq(len, 64 << 20);
    for (int i = 0; i < 12; i++)
        ck_assert_msg(i >= 4 && i < 8 ? all[(size_t)i << 20] == 0 :
                      memcmp(all + ((size_t)i << 20), buf, 1 << 20) == 0, "MiB %d", i);
    free(all);
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interop-qcow2-grow");
    TCase *tc = tcase_create("grow");
    tcase_add_test(tc, test_044_write);
    tcase_add_test(tc, test_044_lookups);
    tcase_add_test(tc, test_flat);
    tcase_add_test(tc, test_grows_ahead);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
