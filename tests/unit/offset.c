/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/offset.c: ranges of devices (vdisk_open_range): where reads and
 * writes land in the underlying file, requests outside the range, ranges
 * that do not fit, read-only ranges, the reference a range holds on its
 * parent, nested ranges, block status through a range, and ranges over an
 * O_DIRECT (cache=none) parent at offsets that are not block aligned.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static void ignore_done(void *user, int result)
{
    (void)user;
    (void)result;
}

#define KiB 1024ull
#define MiB (1024 * KiB)

/* ---- Helpers -------------------------------------------------------------- */

/* Opens PATH with the options LIST; returns NULL (with *err) on failure
 * when ERR is given. */
static vdisk_dev *open_dev_err(const char *path, const char *list, int *err)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (list)
        ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    vdisk_dev *dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    if (err) {
        *err = r;
        return dev;
    }
    ck_assert_msg(r == 0, "open %s (%s): %s", path, list ? list : "", vdisk_get_error());
    return dev;
}

static vdisk_dev *open_dev(const char *path, const char *list)
{
    return open_dev_err(path, list, NULL);
}

/* A file of SIZE random bytes (returned in *MODELP). */
static const char *random_file(const char *name, size_t size, uint64_t seed, uint8_t **modelp)
{
    const char *path = scratch(name);
    uint8_t *model = malloc(size);
    fill_random(model, size, &seed);
    write_file(path, model, size);
    *modelp = model;
    return path;
}

static vdisk_dev *range(vdisk_dev *parent, uint64_t off, uint64_t len, unsigned flags)
{
    vdisk_dev *r = NULL;
    int ret = vdisk_open_range(&r, parent, off, len, flags);
    ck_assert_msg(ret == 0, "range %" PRIu64 "+%" PRIu64 ": %s", off, len, vdisk_get_error());
    ck_assert_ptr_nonnull(r);
    return r;
}

/* The whole file is MODEL (LEN bytes), read with plain pread. */
static void assert_file(const char *path, const uint8_t *model, size_t len)
{
    size_t flen;
    uint8_t *f = read_file(path, &flen);
    ck_assert_uint_eq(flen, len);
    assert_same_bytes(f, model, len, 0, path);
    free(f);
}

/* ---- Mapping -------------------------------------------------------------- */

START_TEST(reads_and_writes_land_at_offset)
{
    const size_t size = 4 * MiB;
    uint8_t *model;
    const char *path = random_file("p.raw", size, 1, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    const uint64_t start = 1 * MiB + 4096, len = 1 * MiB;
    vdisk_dev *r = range(parent, start, len, 0);

    ck_assert_uint_eq(vdisk_get_size(r), len);
    ck_assert_uint_eq(vdisk_get_block_size(r), vdisk_get_block_size(parent));
    ck_assert_str_eq(vdisk_get_format(r), "offset");
    ck_assert_str_eq(vdisk_get_filename(r), fmt("%s[%" PRIu64 "+%" PRIu64 "]", path, start, len));
    ck_assert_str_eq(vdisk_get_engine(r), vdisk_get_engine(parent));
    ck_assert_uint_eq(vdisk_can(r), vdisk_can(parent));
    ck_assert_int_eq(vdisk_is_read_only(r), 0);

    /* Reads come from parent offset + N. */
    uint8_t *buf = malloc(len);
    ck_assert_int_eq(vdisk_pread(r, buf, len, 0), 0);
    assert_same_bytes(buf, model + start, len, start, "range read");
    ck_assert_int_eq(vdisk_pread(r, buf, 3, len - 3), 0);
    assert_same_bytes(buf, model + start + len - 3, 3, start + len - 3, "range read");

    /* Writes go to parent offset + N, and nowhere else. */
    uint64_t seed = 77;
    static const struct { uint64_t off, len; } w[] = {
        {0, 1}, {1, 4095}, {511, 1000}, {65536, 65536}, {len - 1, 1}, {len - 70000, 70000},
        {12345, 54321},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        fill_random(buf, w[i].len, &seed);
        ck_assert_msg(vdisk_pwrite(r, buf, w[i].len, w[i].off) == 0, "%s", vdisk_get_error());
        memcpy(model + start + w[i].off, buf, w[i].len);
    }
    ck_assert_int_eq(vdisk_flush(r), 0);
    assert_file(path, model, size);

    /* The parent sees the range's writes. */
    ck_assert_int_eq(vdisk_pread(parent, buf, len, start), 0);
    assert_same_bytes(buf, model + start, len, start, "parent read");

    /* Vectored requests too. */
    struct iovec v[3] = {{buf, 10}, {buf + 10, 5000}, {buf + 5010, 3}};
    fill_random(buf, 5013, &seed);
    ck_assert_int_eq(vdisk_pwritev(r, v, 3, 99999), 0);
    memcpy(model + start + 99999, buf, 5013);
    assert_file(path, model, size);
    memset(buf, 0, 5013);
    ck_assert_int_eq(vdisk_preadv(r, v, 3, 99999), 0);
    assert_same_bytes(buf, model + start + 99999, 5013, start + 99999, "range readv");

    /* Discard and write zeroes map too. */
    ck_assert_int_eq(vdisk_write_zeroes(r, 8192, 8192, 0), 0);
    memset(model + start + 8192, 0, 8192);
    ck_assert_int_eq(vdisk_write_zeroes(r, 64 * KiB, 64 * KiB, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + start + 64 * KiB, 0, 64 * KiB);
    assert_file(path, model, size);

    vdisk_close(r);
    vdisk_close(parent);
    free(buf);
    free(model);
}
END_TEST

START_TEST(outside_the_range)
{
    const size_t size = 2 * MiB;
    uint8_t *model;
    const char *path = random_file("p.raw", size, 2, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    vdisk_dev *r = range(parent, 1 * MiB, 64 * KiB, 0);
    const char *name = vdisk_get_filename(r);
    uint8_t buf[8192];
    memset(buf, 0xab, sizeof buf);

    ck_assert_int_eq(vdisk_pread(r, buf, 4096, 64 * KiB), -EIO);
    ck_assert_int_eq(vdisk_get_errno(), EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pread: %s: read of 4096 bytes at offset "
                                            "65536 is beyond the end of the device (65536 bytes)",
                                            name));
    ck_assert_int_eq(vdisk_pread(r, buf, 2, 64 * KiB - 1), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pread: %s: read of 2 bytes at offset "
                                            "65535 is beyond the end of the device (65536 bytes)",
                                            name));
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xab);

    /* A write that reaches past the range writes nothing at all. */
    ck_assert_int_eq(vdisk_pwrite(r, buf, 8192, 64 * KiB - 4096), -EIO);
    ck_assert_int_eq(vdisk_get_errno(), EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pwrite: %s: write of 8192 bytes at offset "
                                            "61440 is beyond the end of the device (65536 bytes)",
                                            name));
    ck_assert_int_eq(vdisk_write_zeroes(r, 0, 64 * KiB + 1, 0), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_write_zeroes: %s: write_zeroes of 65537 bytes "
                                            "at offset 0 is beyond the end of the device "
                                            "(65536 bytes)", name));
    ck_assert_int_eq(vdisk_discard(r, 64 * KiB, 512), -EIO);
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(r, 64 * KiB, 512, &e), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_block_status: %s: block status at offset "
                                            "65536 is beyond the end of the device (65536 bytes)",
                                            name));
    assert_file(path, model, size);

    /* The same through a queue: refused before any I/O. */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, r, 4), 0);
    struct iovec v = {buf, 4096};
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, 64 * KiB - 1, 0, ignore_done, NULL), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_aio_pwritev: %s: write of 4096 bytes at offset "
                                            "65535 is beyond the end of the device (65536 bytes)",
                                            name));
    ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
    vdisk_queue_free(q);
    assert_file(path, model, size);

    vdisk_close(r);
    vdisk_close(parent);
    free(model);
}
END_TEST

START_TEST(range_must_fit)
{
    uint8_t *model;
    const char *path = random_file("p.raw", 1 * MiB, 3, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    vdisk_dev *r = (vdisk_dev *)&r;

    ck_assert_int_eq(vdisk_open_range(&r, parent, 1 * MiB - 100, 101, 0), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(vdisk_get_errno(), EINVAL);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open_range: %s: the range of 101 bytes at "
                                            "offset 1048476 does not fit in the device "
                                            "(1048576 bytes)", path));
    ck_assert_int_eq(vdisk_open_range(&r, parent, 2 * MiB, 0, 0), -EINVAL);
    ck_assert_int_eq(vdisk_open_range(&r, parent, 0, 2 * MiB, 0), -EINVAL);
    /* offset + length wraps around 64 bits */
    ck_assert_int_eq(vdisk_open_range(&r, parent, UINT64_MAX - 10, 100, 0), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(vdisk_open_range(&r, parent, 100, UINT64_MAX, 0), -EINVAL);

    ck_assert_int_eq(vdisk_open_range(&r, parent, 0, 512, 0x4), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open_range: unknown flags 0x4");
    ck_assert_int_eq(vdisk_open_range(&r, NULL, 0, 512, 0), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open_range: no parent device");

    /* The whole device, and an empty range at its end, fit. */
    r = range(parent, 0, 1 * MiB, 0);
    ck_assert_uint_eq(vdisk_get_size(r), 1 * MiB);
    vdisk_close(r);
    r = range(parent, 1 * MiB, 0, 0);
    ck_assert_uint_eq(vdisk_get_size(r), 0);
    uint8_t b;
    ck_assert_int_eq(vdisk_pread(r, &b, 1, 0), -EIO);
    vdisk_close(r);
    vdisk_close(parent);
    free(model);
}
END_TEST

/* ---- Read-only ranges ----------------------------------------------------- */

START_TEST(read_only_ranges)
{
    const size_t size = 1 * MiB;
    uint8_t *model;
    const char *path = random_file("p.raw", size, 4, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    vdisk_dev *r = range(parent, 4096, 65536, VDISK_OPEN_RDONLY);
    const char *name = vdisk_get_filename(r);
    ck_assert_int_eq(vdisk_is_read_only(r), 1);
    ck_assert_uint_eq(vdisk_can(r) & VDISK_CAN_WRITE, 0);
    ck_assert_int_eq(vdisk_is_read_only(parent), 0);

    uint8_t buf[4096];
    ck_assert_int_eq(vdisk_pread(r, buf, 4096, 100), 0);
    assert_same_bytes(buf, model + 4196, 4096, 4196, "read-only range read");
    ck_assert_int_eq(vdisk_pwrite(r, buf, 4096, 100), -EROFS);
    ck_assert_int_eq(vdisk_get_errno(), EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pwrite: %s: write of 4096 bytes at offset 100 "
                                            "refused: the device is read-only", name));
    ck_assert_int_eq(vdisk_write_zeroes(r, 0, 512, 0), -EROFS);
    ck_assert_int_eq(vdisk_discard(r, 0, 512), -EROFS);
    ck_assert_int_eq(vdisk_flush(r), 0);

    /* A range of a read-only range, and of a read-only parent, is
     * read-only without the flag. */
    vdisk_dev *rr = range(r, 512, 1024, 0);
    ck_assert_int_eq(vdisk_is_read_only(rr), 1);
    ck_assert_int_eq(vdisk_pwrite(rr, buf, 1, 0), -EROFS);
    vdisk_close(rr);
    vdisk_close(r);

    /* The parent is still writable. */
    ck_assert_int_eq(vdisk_pwrite(parent, buf, 100, 4096), 0);
    memcpy(model + 4096, buf, 100);
    vdisk_close(parent);
    assert_file(path, model, size);

    parent = open_dev(path, "read-only=on");
    r = range(parent, 0, 512, 0);
    ck_assert_int_eq(vdisk_is_read_only(r), 1);
    ck_assert_int_eq(vdisk_pwrite(r, buf, 512, 0), -EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pwrite: %s[0+512]: write of 512 bytes at "
                                            "offset 0 refused: the device is read-only", path));
    vdisk_close(r);
    vdisk_close(parent);
    assert_file(path, model, size);
    free(model);
}
END_TEST

/* ---- Lifetime and nesting ------------------------------------------------- */

START_TEST(parent_closed_first)
{
    const size_t size = 1 * MiB;
    uint8_t *model;
    const char *path = random_file("p.raw", size, 5, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    vdisk_dev *r = range(parent, 3000, 500000, 0);
    /* The caller's reference goes; the range's keeps the parent open. */
    vdisk_close(parent);

    uint8_t buf[10000];
    uint64_t seed = 55;
    fill_random(buf, sizeof buf, &seed);
    ck_assert_int_eq(vdisk_pwrite(r, buf, sizeof buf, 7777), 0);
    memcpy(model + 3000 + 7777, buf, sizeof buf);
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(vdisk_pread(r, buf, sizeof buf, 7777), 0);
    assert_same_bytes(buf, model + 3000 + 7777, sizeof buf, 3000 + 7777, "range read");
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(r, 0, 500000, &e), 0);
    ck_assert_int_gt(vdisk_get_allocated_size(r), 0);

    /* A queue on the range holds a reference too. */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, r, 8), 0);
    vdisk_close(r);
    struct iovec v = {buf, 4096};
    fill_random(buf, 4096, &seed);
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, 0, 0, ignore_done, NULL), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    memcpy(model + 3000, buf, 4096);
    vdisk_queue_free(q);
    /* The last reference is gone: everything is written. */
    assert_file(path, model, size);
    free(model);
}
END_TEST

START_TEST(nested_ranges)
{
    const size_t size = 4 * MiB;
    uint8_t *model;
    const char *path = random_file("p.raw", size, 6, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    vdisk_dev *r1 = range(parent, 1 * MiB, 2 * MiB, 0);
    vdisk_dev *r2 = range(r1, 65536 + 7, 1 * MiB, 0);
    vdisk_dev *r3 = range(r2, 1000, 4000, 0);
    const uint64_t base2 = 1 * MiB + 65536 + 7, base3 = base2 + 1000;
    ck_assert_str_eq(vdisk_get_filename(r3),
                     fmt("%s[1048576+2097152][65543+1048576][1000+4000]", path));

    /* A range of a range must fit the range, not the file. */
    vdisk_dev *bad = (vdisk_dev *)&bad;
    ck_assert_int_eq(vdisk_open_range(&bad, r1, 1 * MiB, 1 * MiB + 1, 0), -EINVAL);
    ck_assert_ptr_null(bad);

    vdisk_close(parent);
    vdisk_close(r1);

    uint8_t buf[4000];
    ck_assert_int_eq(vdisk_pread(r3, buf, 4000, 0), 0);
    assert_same_bytes(buf, model + base3, 4000, base3, "nested read");
    uint64_t seed = 66;
    fill_random(buf, sizeof buf, &seed);
    ck_assert_int_eq(vdisk_pwrite(r3, buf, 3999, 1), 0);
    memcpy(model + base3 + 1, buf, 3999);
    ck_assert_int_eq(vdisk_pwrite(r2, buf, 100, 1 * MiB - 100), 0);
    memcpy(model + base2 + 1 * MiB - 100, buf, 100);
    ck_assert_int_eq(vdisk_pwrite(r3, buf, 1, 4000), -EIO);

    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(r3, 10, 100, &e), 0);
    ck_assert_uint_eq(e.offset, 10);
    ck_assert_uint_eq(e.length, 100);
    ck_assert_uint_eq(e.host_offset, base3 + 10);
    ck_assert_str_eq(e.host_file, path);

    vdisk_close(r2);
    vdisk_close(r3);
    assert_file(path, model, size);
    free(model);
}
END_TEST

/* ---- Block status --------------------------------------------------------- */

START_TEST(block_status_through_range)
{
    const char *path = scratch("bs.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", 8 * MiB, NULL), 0);
    vdisk_dev *parent = open_dev(path, NULL);
    static uint8_t data[128 * KiB];
    memset(data, 0x42, sizeof data);
    /* Parent: data at [1M+64K, 1M+192K) and [2M, 2M+64K). */
    ck_assert_int_eq(vdisk_pwrite(parent, data, 128 * KiB, 1 * MiB + 64 * KiB), 0);
    ck_assert_int_eq(vdisk_pwrite(parent, data, 64 * KiB, 2 * MiB), 0);
    ck_assert_int_eq(vdisk_flush(parent), 0);

    /* The range [1M, 1M+1M+32K) ends inside the second data extent. */
    vdisk_dev *r = range(parent, 1 * MiB, 1 * MiB + 32 * KiB, 0);
    static const struct { uint64_t off, len; uint32_t kind; } want[] = {
        {0, 64 * KiB, VDISK_EXT_ZERO},
        {64 * KiB, 128 * KiB, VDISK_EXT_DATA},
        {192 * KiB, 1 * MiB - 192 * KiB, VDISK_EXT_ZERO},
        {1 * MiB, 32 * KiB, VDISK_EXT_DATA},
    };
    uint64_t off = 0;
    size_t i = 0;
    while (off < vdisk_get_size(r)) {
        struct vdisk_extent e;
        ck_assert_msg(vdisk_block_status(r, off, UINT64_MAX, &e) == 0, "%s", vdisk_get_error());
        ck_assert_uint_lt(i, sizeof want / sizeof want[0]);
        ck_assert_uint_eq(e.offset, want[i].off);
        ck_assert_uint_eq(e.length, want[i].len);
        ck_assert_uint_eq(e.flags, want[i].kind | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET);
        ck_assert_uint_eq(e.host_offset, 1 * MiB + want[i].off);
        ck_assert_str_eq(e.host_file, path);
        off += e.length;
        i++;
    }
    ck_assert_uint_eq(i, sizeof want / sizeof want[0]);

    /* Clipped to the length asked for. */
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(r, 64 * KiB + 5, 100, &e), 0);
    ck_assert_uint_eq(e.offset, 64 * KiB + 5);
    ck_assert_uint_eq(e.length, 100);
    ck_assert_uint_eq(e.flags & VDISK_EXT_DATA, VDISK_EXT_DATA);
    ck_assert_uint_eq(e.host_offset, 1 * MiB + 64 * KiB + 5);

    ck_assert_int_eq(vdisk_get_allocated_size(r), vdisk_get_allocated_size(parent));
    vdisk_close(r);
    vdisk_close(parent);
}
END_TEST

/* ---- Ranges and queues ---------------------------------------------------- */

struct counter { int done, failed; };

static void count_cb(void *user, int result)
{
    struct counter *c = user;
    c->done++;
    if (result < 0)
        c->failed++;
}

START_TEST(queue_on_range)
{
    const size_t size = 4 * MiB;
    uint8_t *model;
    const char *path = random_file("p.raw", size, 8, &model);
    vdisk_dev *parent = open_dev(path, NULL);
    const uint64_t start = 333333, len = 3 * MiB;
    vdisk_dev *r = range(parent, start, len, 0);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, r, 16), 0);

    /* 256 writes of 4 KiB at distinct, unaligned places, all in flight at
     * once. */
    enum { N = 256 };
    uint8_t *bufs = malloc(N * 4096);
    uint64_t seed = 88;
    fill_random(bufs, N * 4096, &seed);
    struct counter c = {0, 0};
    for (int i = 0; i < N; i++) {
        struct iovec v = {bufs + i * 4096, 4096};
        uint64_t off = (uint64_t)((i * 37) % 512) * 4099;
        ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, off, 0, count_cb, &c), 0);
        memcpy(model + start + off, bufs + i * 4096, 4096);
    }
    ck_assert_int_eq(vdisk_queue_drain(q), N);
    ck_assert_int_eq(c.done, N);
    ck_assert_int_eq(c.failed, 0);
    vdisk_queue_free(q);
    vdisk_close(r);
    vdisk_close(parent);
    assert_file(path, model, size);
    free(bufs);
    free(model);
}
END_TEST

/* ---- Over an O_DIRECT parent ---------------------------------------------- */

/* Opens PATH with cache=none, or returns NULL when the file system cannot. */
static vdisk_dev *open_direct(const char *path)
{
    int err;
    vdisk_dev *dev = open_dev_err(path, "cache=none", &err);
    if (err == -EINVAL) {
        printf("O_DIRECT is not supported here: %s\n", vdisk_get_error());
        return NULL;
    }
    ck_assert_msg(err == 0, "%s", vdisk_get_error());
    return dev;
}

/* Writes and reads random pieces of R (at START in the file) and checks the
 * file byte for byte. */
static void exercise_range(vdisk_dev *r, const char *path, uint8_t *model, size_t fsize,
                           uint64_t start, uint64_t seed)
{
    uint64_t len = vdisk_get_size(r);
    uint8_t *buf = malloc(20000 + 1);
    for (int i = 0; i < 120; i++) {
        uint64_t l = 1 + rng_next(&seed) % 20000;
        if (l > len)
            l = len;
        uint64_t off = rng_next(&seed) % (len - l + 1);
        if (i == 0)
            off = 0;
        if (i == 1)
            off = len - l;
        /* Buffers at odd addresses as well. */
        uint8_t *b = buf + (i % 2);
        fill_random(b, l, &seed);
        ck_assert_msg(vdisk_pwrite(r, b, l, off) == 0, "write %" PRIu64 "+%" PRIu64 ": %s", off,
                      l, vdisk_get_error());
        memcpy(model + start + off, b, l);
        uint64_t ro = off >= 7 ? off - 7 : 0;
        uint64_t rl = l + 14 <= len - ro ? l + 14 : len - ro;
        ck_assert_msg(vdisk_pread(r, buf, rl, ro) == 0, "read %" PRIu64 "+%" PRIu64 ": %s", ro,
                      rl, vdisk_get_error());
        assert_same_bytes(buf, model + start + ro, rl, start + ro, "range read");
    }
    free(buf);
    assert_file(path, model, fsize);
}

START_TEST(unaligned_range_over_direct_parent)
{
    const size_t size = 2 * MiB;
    uint8_t *model;
    const char *path = random_file("d.raw", size, 9, &model);
    vdisk_dev *parent = open_direct(path);
    if (!parent) {
        free(model);
        return;
    }
    static const struct { uint64_t off, len; } ranges[] = {
        {1000, 65536},            /* unaligned start */
        {4096, 65536},            /* aligned */
        {1 * MiB + 3, 100000},    /* unaligned start and end */
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        vdisk_dev *r = range(parent, ranges[i].off, ranges[i].len, 0);
        exercise_range(r, path, model, size, ranges[i].off, 100 + i);
        vdisk_close(r);
    }
    vdisk_close(parent);
    free(model);
}
END_TEST

START_TEST(aligned_range_with_unaligned_length_over_direct_parent)
{
    /* A range at a block-aligned offset whose length is not a multiple of
     * the block size: "any byte range is allowed", so its last bytes read
     * and write like the others. */
    const size_t size = 1 * MiB;
    uint8_t *model;
    const char *path = random_file("d.raw", size, 10, &model);
    vdisk_dev *parent = open_direct(path);
    if (!parent) {
        free(model);
        return;
    }
    vdisk_dev *r = range(parent, 8192, 1000, 0);
    uint8_t buf[100];
    int ret = vdisk_pread(r, buf, 100, 900);
    ck_assert_msg(ret == 0, "read of the last 100 bytes of a 1000-byte range: %s",
                  vdisk_get_error());
    assert_same_bytes(buf, model + 8192 + 900, 100, 8192 + 900, "range read");
    memset(buf, 0x3c, sizeof buf);
    ret = vdisk_pwrite(r, buf, 100, 900);
    ck_assert_msg(ret == 0, "write of the last 100 bytes of a 1000-byte range: %s",
                  vdisk_get_error());
    memcpy(model + 8192 + 900, buf, 100);
    exercise_range(r, path, model, size, 8192, 11);
    vdisk_close(r);
    vdisk_close(parent);
    free(model);
}
END_TEST

START_TEST(concurrent_unaligned_writes_through_range)
{
    /* Many small writes into the same blocks of a cache=none parent, through
     * a range at an unaligned offset: every one of them survives. */
    const size_t size = 1 * MiB;
    uint8_t *model;
    const char *path = random_file("d.raw", size, 12, &model);
    vdisk_dev *parent = open_direct(path);
    if (!parent) {
        free(model);
        return;
    }
    const uint64_t start = 12345;
    vdisk_dev *r = range(parent, start, 64 * KiB, 0);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, r, 32), 0);
    enum { N = 512, PIECE = 100 };
    uint8_t *bufs = malloc(N * PIECE);
    uint64_t seed = 13;
    fill_random(bufs, N * PIECE, &seed);
    struct counter c = {0, 0};
    for (int i = 0; i < N; i++) {
        struct iovec v = {bufs + i * PIECE, PIECE};
        uint64_t off = (uint64_t)i * PIECE;
        ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, off, 0, count_cb, &c), 0);
        memcpy(model + start + off, bufs + i * PIECE, PIECE);
    }
    ck_assert_int_eq(vdisk_queue_drain(q), N);
    ck_assert_int_eq(c.done, N);
    ck_assert_int_eq(c.failed, 0);
    vdisk_queue_free(q);
    vdisk_close(r);
    vdisk_close(parent);
    assert_file(path, model, size);
    free(bufs);
    free(model);
}
END_TEST

static Suite *offset_suite(void)
{
    Suite *s = suite_create("offset");
    TCase *tc = tcase_create("mapping");
    tcase_add_test(tc, reads_and_writes_land_at_offset);
    tcase_add_test(tc, outside_the_range);
    tcase_add_test(tc, range_must_fit);
    tcase_add_test(tc, read_only_ranges);
    tcase_add_test(tc, parent_closed_first);
    tcase_add_test(tc, nested_ranges);
    tcase_add_test(tc, block_status_through_range);
    tcase_add_test(tc, queue_on_range);
    suite_add_tcase(s, tc);
    tc = tcase_create("direct");
    tcase_add_test(tc, unaligned_range_over_direct_parent);
    tcase_add_test(tc, aligned_range_with_unaligned_length_over_direct_parent);
    tcase_add_test(tc, concurrent_unaligned_writes_through_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(offset_suite());
}
