/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/never_blocks.c: the vdisk_aio_*() calls neither wait
 * for I/O nor run a callback inside themselves (nor do the reaps that
 * complete the requests wait), on both engines (TEST_ENGINE: CTest
 * never-blocks-uring and never-blocks-threads), on every driver, for every
 * request type, over a slow protocol device (the fault disk in slow mode:
 * each of its requests completes 50 ms later, from a thread of its own).
 *
 * Whether a call waited is not judged by a clock: the library counts every
 * synchronous wait made inside a vdisk_aio_*() call (a driver reading or
 * writing its metadata there), and each call must leave that count alone.
 * A callback run inside a call is caught by a flag.
 *
 * Covered: raw, an offset range (unaligned, so the core reads, modifies and
 * writes whole blocks), and qcow2 with its tables in the cache (reads and
 * overwrites of allocated clusters, allocating writes, flushes that write
 * tables back, discards and write zeroes, which walk the tables on the
 * image's worker thread), and qcow2 reads and overwrites whose L2 tables
 * are not cached: the table is read as a child request, once for all the
 * requests that need it, and requests on other tables are not held up
 * (counted in reads handed to the disk before anything completes);
 * allocating writes whose tables are not cached (the worker reads and
 * writes them); and requests on one thread's queue that go on while the
 * worker flushes, reads a table for a walk, or makes a new L2 table for
 * another (the image's lock is not held across that I/O).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "internal.h"
#include "options_internal.h"
#include "harness.h"

#ifndef TEST_ENGINE
#define TEST_ENGINE "threads"
#endif

#define KiB 1024ull
#define MiB (1024 * KiB)
#define VSIZE (8 * MiB)
#define DELAY_MS 50

static bool inside;
static unsigned inside_calls, calls;
static int last_result;

static void done(void *user, int result)
{
    (void)user;
    calls++;
    inside_calls += inside;
    last_result = result;
}

static struct vdisk_open_params params(void)
{
    struct vdisk_open_params p;
    memset(&p, 0, sizeof p);
    p.cache = VDISK_CACHE_WRITEBACK;
    p.engine = strcmp(TEST_ENGINE, "uring") == 0 ? VDISK_ENGINE_URING : VDISK_ENGINE_THREADS;
    p.locking = LOCK_OFF;
    return p;
}

/* One call: it must not wait (the audit count stays) nor call back. */
static void one(vdisk_queue *q, const char *what, enum aio_kind k, void *buf, uint64_t off,
                uint64_t len)
{
    unsigned long before = queue_sync_waits_in_submit();
    inside = true;
    int r = aio_start(q, k, buf, off, len, done, NULL);
    inside = false;
    unsigned long waits = queue_sync_waits_in_submit() - before;
    ck_assert_msg(r == 0, "%s: %s of %llu at %llu: %s", what, aio_kind_names[k],
                  (unsigned long long)len, (unsigned long long)off, vdisk_get_error());
    ck_assert_msg(waits == 0, "%s: %s of %llu bytes at %llu waited for I/O %lu time(s) inside "
                  "the call", what, aio_kind_names[k], (unsigned long long)len,
                  (unsigned long long)off, waits);
    ck_assert_msg(inside_calls == 0, "%s: %s: the callback ran inside the call", what,
                  aio_kind_names[k]);
    before = queue_sync_waits_in_reap();
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    waits = queue_sync_waits_in_reap() - before;
    ck_assert_msg(waits == 0, "%s: %s of %llu bytes at %llu: the reap that completed it waited "
                  "for I/O %lu time(s)", what, aio_kind_names[k], (unsigned long long)len,
                  (unsigned long long)off, waits);
    ck_assert_msg(last_result == 0, "%s: %s failed (%d): %s", what, aio_kind_names[k], last_result,
                  vdisk_get_error());
}

/* Every kind, at several offsets and lengths, one request at a time. */
static void every_kind(struct vdisk_dev *dev, const char *what, uint64_t size)
{
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 16), 0);
    uint8_t *buf = malloc(128 * KiB);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0x3c, 128 * KiB);
    static const uint64_t shapes[][2] = {
        {0, 4096}, {512, 1024}, {65536, 65536}, {3 * 65536 + 100, 70000}, {1 * MiB, 128 * KiB},
    };
    calls = inside_calls = 0;
    for (int k = 0; k < AIO_KINDS; k++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            ck_assert_uint_le(shapes[i][0] + shapes[i][1], size);
            one(q, what, (enum aio_kind)k, buf, shapes[i][0], shapes[i][1]);
        }
    free(buf);
    vdisk_queue_free(q);
}

static struct fault_disk *slow_disk(const char *format)
{
    const char *tmpl = scratch("tmpl.img");
    unlink(tmpl);
    ck_assert_msg(vdisk_create(tmpl, format, VSIZE, NULL) == 0, "%s", vdisk_get_error());
    size_t len;
    uint8_t *img = read_file(tmpl, &len);
    struct fault_disk *f = fault_new(img, len, 64 * MiB);
    free(img);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fault_set_delay(f, DELAY_MS), 0);
    return f;
}

static struct vdisk_dev *open_on(struct fault_disk *f, const char *format)
{
    struct vdisk_open_params p = params();
    struct vdisk_dev *file, *dev;
    ck_assert(fault_open(&file, f, scratch("slow.img"), &p) == 0);
    ck_assert_msg(dev_open_format(&dev, file, format, &p, NULL) == 0, "%s", vdisk_get_error());
    return dev;
}

START_TEST(raw_never_blocks)
{
    struct fault_disk *f = slow_disk("raw");
    struct vdisk_dev *dev = open_on(f, "raw");
    every_kind(dev, "raw", VSIZE);
    vdisk_close(dev);
    fault_free(f);
}
END_TEST

START_TEST(offset_range_never_blocks)
{
    struct fault_disk *f = slow_disk("raw");
    struct vdisk_dev *disk = open_on(f, "raw");
    vdisk_dev *range;
    ck_assert_int_eq(vdisk_open_range(&range, disk, 4096 + 512, 4 * MiB, 0), 0);
    vdisk_close(disk);
    every_kind(range, "offset range", 4 * MiB);
    vdisk_close(range);
    fault_free(f);
}
END_TEST

START_TEST(qcow2_cached_never_blocks)
{
    struct fault_disk *f = slow_disk("qcow2");
    struct vdisk_dev *dev = open_on(f, "qcow2");
    /* The tables this test touches, in the cache: one L2 table and one
     * refcount block cover the whole 8 MiB image with 64 KiB clusters. */
    uint8_t b[512];
    memset(b, 1, sizeof b);
    ck_assert_msg(vdisk_pwrite(dev, b, sizeof b, VSIZE - 512) == 0, "%s", vdisk_get_error());
    every_kind(dev, "qcow2", VSIZE);
    vdisk_close(dev);
    /* The image is sound. */
    uint8_t *img;
    size_t len;
    ck_assert_int_eq(fault_current(f, &img, &len), 0);
    write_file(scratch("after.qcow2"), img, len);
    free(img);
    if (have_program("qemu-img"))
        RUN_OK("qemu-img check -q '%s'", scratch("after.qcow2"));
    fault_free(f);
}
END_TEST

/* The image on F is sound to qemu-img check and reads as WANT (SIZE
 * bytes), through qemu-img; NAME names the scratch files. */
static void image_is(struct fault_disk *f, const uint8_t *want, uint64_t size, const char *name)
{
    uint8_t *img;
    size_t len;
    char q[64], r[64];
    snprintf(q, sizeof q, "%s.qcow2", name);
    snprintf(r, sizeof r, "%s.raw", name);
    ck_assert_int_eq(fault_current(f, &img, &len), 0);
    write_file(scratch(q), img, len);
    free(img);
    write_file(scratch(r), want, size);
    if (have_program("qemu-img")) {
        RUN_OK("qemu-img check -q '%s'", scratch(q));
        RUN_OK("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", scratch(q), scratch(r));
    }
}

/* Fills the 4 KiB block at OFF with its own number. */
static void block_pattern(uint8_t *b, uint64_t off)
{
    for (unsigned i = 0; i < 4096; i += 8) {
        uint64_t v = (off / 4096) << 16 | i;
        memcpy(b + i, &v, 8);
    }
}

static unsigned uncached_done;
static void count_done(void *user, int result)
{
    ck_assert_msg(result == 0, "request %p failed (%d): %s", user, result, vdisk_get_error());
    uncached_done++;
    inside_calls += inside;
}

/* Reaps until N requests are done; the reaps must not wait for I/O. */
static void reap_until(vdisk_queue *q, unsigned n)
{
    unsigned long before = queue_sync_waits_in_reap();
    while (uncached_done < n)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_msg(queue_sync_waits_in_reap() == before, "the reaps waited for I/O %lu time(s)",
                  queue_sync_waits_in_reap() - before);
}

/* Submits one request; it must neither wait nor call back inside. */
static void submit_one(vdisk_queue *q, enum aio_kind k, void *buf, uint64_t off)
{
    unsigned long before = queue_sync_waits_in_submit();
    inside = true;
    int r = aio_start(q, k, buf, off, 4096, count_done, buf);
    inside = false;
    ck_assert_msg(r == 0, "%s at %llu: %s", aio_kind_names[k], (unsigned long long)off,
                  vdisk_get_error());
    ck_assert_msg(queue_sync_waits_in_submit() == before, "%s of 4096 bytes at %llu waited for "
                  "I/O inside the call (its L2 table is not cached)", aio_kind_names[k],
                  (unsigned long long)off);
    ck_assert_msg(inside_calls == 0, "%s: the callback ran inside the call", aio_kind_names[k]);
}

/* A qcow2 image with 4 KiB clusters (each L2 table maps 2 MiB, four tables
 * for 8 MiB) on a fault disk, every block written with its pattern; *BP
 * gets the expected contents. */
static struct fault_disk *filled(uint8_t **bp, const char *opts, uint64_t filled_bytes);

static struct fault_disk *filled_4k(uint8_t **bp)
{
    return filled(bp, "cluster_size=4096", VSIZE);
}

/* The same with create options OPTS, and only the first FILLED_BYTES
 * written (the rest unallocated, zero in *BP). */
static struct fault_disk *filled(uint8_t **bp, const char *opts, uint64_t filled_bytes)
{
    const char *tmpl = scratch("tmpl.qcow2");
    unlink(tmpl);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_parse(o, opts), 0);
    ck_assert_msg(vdisk_create(tmpl, "qcow2", VSIZE, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    size_t len;
    uint8_t *img = read_file(tmpl, &len);
    struct fault_disk *f = fault_new(img, len, 64 * MiB);
    free(img);
    ck_assert_ptr_nonnull(f);
    uint8_t *b = malloc(VSIZE);
    ck_assert_ptr_nonnull(b);
    for (uint64_t off = 0; off < filled_bytes; off += 4096)
        block_pattern(b + off, off);
    memset(b + filled_bytes, 0, VSIZE - filled_bytes);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    ck_assert_msg(vdisk_pwrite(dev, b, filled_bytes, 0) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    *bp = b;
    return f;
}

START_TEST(qcow2_uncached_never_blocks)
{
    const uint64_t span = 2 * MiB;
    uint8_t *b;
    struct fault_disk *f = filled_4k(&b);

    /* Opened again, slowly: no L2 table is cached. */
    ck_assert_int_eq(fault_set_delay(f, DELAY_MS), 0);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    uint8_t one[4096];
    ck_assert_int_eq(vdisk_pread(dev, one, sizeof one, 3 * span), 0); /* table 3 cached */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 64), 0);
    enum { N = 8 };
    uint8_t *rbuf = malloc(2 * N * 4096), *wbuf = malloc(N * 4096);
    ck_assert(rbuf && wbuf);
    uncached_done = inside_calls = 0;
    uint64_t r0 = fault_reads_started(f);
    /* Eight reads in table 0: one read of the table for all of them. */
    for (int i = 0; i < N; i++)
        submit_one(q, AIO_READ, rbuf + i * 4096, (uint64_t)i * 61 * 4096);
    ck_assert_uint_eq(fault_reads_started(f) - r0, 1);
    /* A read in the cached table 3 goes to the disk at once. */
    submit_one(q, AIO_READ, rbuf + N * 4096, 3 * span + 5 * 4096);
    ck_assert_uint_eq(fault_reads_started(f) - r0, 2);
    /* Overwrites in table 1, reads in table 2: one table read each. */
    for (int i = 0; i < N; i++) {
        block_pattern(wbuf + i * 4096, span + (uint64_t)i * 37 * 4096);
        memset(wbuf + i * 4096, 0xa0 + i, 64);
        submit_one(q, AIO_WRITE, wbuf + i * 4096, span + (uint64_t)i * 37 * 4096);
    }
    for (int i = 1; i < N; i++)
        submit_one(q, AIO_READ, rbuf + (N + i) * 4096, 2 * span + (uint64_t)i * 29 * 4096);
    ck_assert_uint_eq(fault_reads_started(f) - r0, 4);
    ck_assert_uint_eq(uncached_done, 0);
    reap_until(q, 3 * N);
    ck_assert_uint_eq(inside_calls, 0);
    /* Three table reads and one data read per read: nothing read twice. */
    ck_assert_uint_eq(fault_reads_started(f) - r0, 3 + 2 * N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(memcmp(rbuf + i * 4096, b + (uint64_t)i * 61 * 4096, 4096) == 0,
                      "read %d of table 0", i);
    ck_assert(memcmp(rbuf + N * 4096, b + 3 * span + 5 * 4096, 4096) == 0);
    for (int i = 1; i < N; i++)
        ck_assert_msg(memcmp(rbuf + (N + i) * 4096, b + 2 * span + (uint64_t)i * 29 * 4096,
                             4096) == 0, "read %d of table 2", i);
    vdisk_queue_free(q);
    for (int i = 0; i < N; i++)
        memcpy(b + span + (uint64_t)i * 37 * 4096, wbuf + i * 4096, 4096);
    ck_assert_int_eq(fault_set_delay(f, 0), 0);
    uint8_t *back = malloc(VSIZE);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(vdisk_pread(dev, back, VSIZE, 0), 0);
    ck_assert(memcmp(back, b, VSIZE) == 0);
    vdisk_close(dev);

    /* What qemu-img reads is the same, and the image is sound. */
    image_is(f, b, VSIZE, "after");
    free(back);
    free(rbuf);
    free(wbuf);
    free(b);
    fault_free(f);
}
END_TEST

static int fail_result;
static unsigned fail_done;
static void fail_cb(void *user, int result)
{
    (void)user;
    fail_result = result;
    fail_done++;
}

/* The read of an L2 table fails: every request waiting for it fails with
 * the error and a message, none hangs; later requests read it again. */
START_TEST(qcow2_table_read_error)
{
    uint8_t *b;
    struct fault_disk *f = filled_4k(&b);
    ck_assert_int_eq(fault_set_delay(f, DELAY_MS), 0); /* the load stays in flight */
    struct vdisk_dev *dev = open_on(f, "qcow2");
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 8), 0);
    uint8_t r[3][4096];
    fault_fail_reads(f, fault_reads(f) + 1, 1, -EIO);
    fail_done = 0;
    ck_assert_int_eq(vdisk_aio_preadv(q, &(struct iovec){r[0], 4096}, 1, 64 * KiB, 0, fail_cb,
                                      NULL), 0);
    ck_assert_uint_eq(fail_done, 0);
    while (fail_done < 1)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(fail_result, -EIO);
    ck_assert_msg(strstr(vdisk_get_error(), "(injected)"), "%s", vdisk_get_error());
    fault_fail_reads(f, fault_reads(f) + 1, 1, -EIO);
    for (int i = 1; i < 3; i++)
        ck_assert_int_eq(vdisk_aio_preadv(q, &(struct iovec){r[i], 4096}, 1,
                                          (uint64_t)(i + 1) * 64 * KiB, 0, fail_cb, NULL), 0);
    ck_assert_uint_eq(fail_done, 1);
    /* The second and third wait for one load, which fails for both. */
    while (fail_done < 3)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(fail_result, -EIO);
    ck_assert_uint_eq(fail_done, 3);
    /* Read again, it works. */
    fault_fail_reads(f, 0, 0, 0);
    ck_assert_int_eq(vdisk_aio_preadv(q, &(struct iovec){r[0], 4096}, 1, 64 * KiB, 0, fail_cb,
                                      NULL), 0);
    while (fail_done < 4)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(fail_result, 0);
    ck_assert(memcmp(r[0], b + 64 * KiB, 4096) == 0);
    vdisk_queue_free(q);
    vdisk_close(dev);
    free(b);
    fault_free(f);
}
END_TEST

/* A thread with a request waiting for a table load on its queue calls
 * vdisk_pread() on the same table before reaping: the call reads the table
 * itself instead of waiting for a read only this thread would reap. */
START_TEST(qcow2_sync_call_while_loading)
{
    uint8_t *b;
    struct fault_disk *f = filled_4k(&b);
    ck_assert_int_eq(fault_set_delay(f, DELAY_MS), 0);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 8), 0);
    uint8_t r[4096], s[4096];
    uncached_done = inside_calls = 0;
    submit_one(q, AIO_READ, r, 64 * KiB);
    ck_assert_int_eq(vdisk_pread(dev, s, sizeof s, 128 * KiB), 0);
    ck_assert(memcmp(s, b + 128 * KiB, sizeof s) == 0);
    reap_until(q, 1);
    ck_assert(memcmp(r, b + 64 * KiB, sizeof r) == 0);
    vdisk_queue_free(q);
    vdisk_close(dev);
    free(b);
    fault_free(f);
}
END_TEST

/*
 * Allocating writes on a freshly opened image (no refcount block and no
 * L2 table cached; in the empty half, no L2 table at all): the refcount
 * blocks are read, new tables made and written, lazy refcounts' dirty bit
 * set, FUA's metadata flushed, on the image's worker; neither the calls
 * nor the reaps wait.  The image ends as written, and sound.
 */
static void allocating(const char *opts)
{
    uint8_t *b;
    struct fault_disk *f = filled(&b, opts, VSIZE / 2);
    /* A shorter delay: the worker's metadata I/O is many requests in a row
     * (the disk's thread serves one at a time). */
    ck_assert_int_eq(fault_set_delay(f, 5), 0);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 64), 0);
    enum { N = 12 };
    static const struct {
        enum aio_kind k;
        uint64_t off, len;
    } w[N] = { /* no two overlap: requests in flight together have no order */
        {AIO_WRITE, 4 * MiB, 4096},             /* first of a new table */
        {AIO_WRITE, 4 * MiB + 8192, 4096},      /* the same table, meanwhile */
        {AIO_WRITE, 6 * MiB + 512, 1024},       /* another new table, copy on write */
        {AIO_WRITE_FUA, 5 * MiB, 8192},         /* FUA: the metadata flushed */
        {AIO_WRITE, 7 * MiB - 4096, 12288},     /* across two new tables */
        {AIO_WRITE, 64 * KiB, 4096},            /* an overwrite */
        {AIO_WRITE, 3 * MiB + 100, 300},        /* an overwrite inside a cluster */
        {AIO_ZEROES, 4 * MiB + 65536, 8192},    /* zeroes in a new table */
        {AIO_WRITE, 4 * MiB + 65536 + 8192, 4096},
        {AIO_WRITE_FUA, 128 * KiB, 4096},       /* FUA overwrite */
        {AIO_WRITE, 8 * MiB - 512, 512},        /* the last sector */
        {AIO_WRITE, 5 * MiB + 8192, 4096},      /* next to the FUA write */
    };
    uint8_t *bufs[N];
    uncached_done = inside_calls = 0;
    for (int i = 0; i < N; i++) {
        bufs[i] = malloc(w[i].len);
        ck_assert_ptr_nonnull(bufs[i]);
        memset(bufs[i], 0x40 + i, w[i].len);
        unsigned long before = queue_sync_waits_in_submit();
        inside = true;
        int r = aio_start(q, w[i].k, bufs[i], w[i].off, w[i].len, count_done, bufs[i]);
        inside = false;
        ck_assert_msg(r == 0, "%s: %s", aio_kind_names[w[i].k], vdisk_get_error());
        ck_assert_msg(queue_sync_waits_in_submit() == before, "%s: %s of %llu bytes at %llu "
                      "waited for I/O inside the call", opts, aio_kind_names[w[i].k],
                      (unsigned long long)w[i].len, (unsigned long long)w[i].off);
        ck_assert_uint_eq(inside_calls, 0);
        if (w[i].k == AIO_ZEROES)
            memset(b + w[i].off, 0, w[i].len);
        else
            memcpy(b + w[i].off, bufs[i], w[i].len);
    }
    reap_until(q, N);
    ck_assert_uint_eq(inside_calls, 0);
    for (int i = 0; i < N; i++)
        free(bufs[i]);
    vdisk_queue_free(q);
    ck_assert_int_eq(fault_set_delay(f, 0), 0);
    uint8_t *back = malloc(VSIZE);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(vdisk_pread(dev, back, VSIZE, 0), 0);
    if (memcmp(back, b, VSIZE) != 0) {
        uint64_t k = 0;
        while (back[k] == b[k])
            k++;
        ck_abort_msg("%s: byte %llu: 0x%02x, want 0x%02x", opts, (unsigned long long)k, back[k],
                     b[k]);
    }
    vdisk_close(dev);
    image_is(f, b, VSIZE, "alloc");
    free(back);
    free(b);
    fault_free(f);
}

START_TEST(qcow2_allocating_never_blocks)
{
    allocating("cluster_size=4096");
    allocating("cluster_size=4096,lazy_refcounts=on");
    allocating("cluster_size=65536,extended_l2=on");
    allocating("cluster_size=512,refcount_bits=64");
}
END_TEST

/*
 * An L2 cache of four tables, all dirty (allocations not yet written
 * back), and a read whose table is not cached: the table cannot take a
 * slot until the dirty ones are written, which happens on the image's
 * worker thread, not in the submitting call nor in the reap.
 */
START_TEST(qcow2_uncached_dirty_cache)
{
    const char *tmpl = scratch("tmpl512.qcow2");
    unlink(tmpl);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "cluster_size", "512"), 0);
    ck_assert_msg(vdisk_create(tmpl, "qcow2", 1 * MiB, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    size_t len;
    uint8_t *img = read_file(tmpl, &len);
    struct fault_disk *f = fault_new(img, len, 64 * MiB);
    free(img);
    ck_assert_ptr_nonnull(f);
    /* 512-byte clusters: a table maps 32 KiB.  The second half allocated. */
    uint8_t *b = calloc(1, 1 * MiB);
    ck_assert_ptr_nonnull(b);
    for (uint64_t off = 0; off < 1 * MiB; off += 4096)
        block_pattern(b + off, off);
    memset(b, 0, 512 * KiB);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    ck_assert_int_eq(vdisk_pwrite(dev, b + 512 * KiB, 512 * KiB, 512 * KiB), 0);
    /* The first four tables of the first half exist, with one cluster. */
    for (int i = 0; i < 4; i++) {
        memset(b + i * 32 * KiB, 0x77, 512);
        ck_assert_int_eq(vdisk_pwrite(dev, b + i * 32 * KiB, 512, (uint64_t)i * 32 * KiB), 0);
    }
    vdisk_close(dev);

    struct vdisk_open_params p = params();
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "l2-cache-size", "2048"), 0);
    struct opt_set os;
    ck_assert(opt_set_init(&os, o) == 0);
    struct vdisk_dev *file;
    ck_assert(fault_open(&file, f, scratch("slow.img"), &p) == 0);
    ck_assert_msg(dev_open_format(&dev, file, "qcow2", &p, &os) == 0, "%s", vdisk_get_error());
    opt_set_fini(&os);
    vdisk_options_free(o);
    /* Four allocations in those four tables: four dirty tables fill the
     * cache (a new table would have had the others written first). */
    uint8_t w[512];
    for (int i = 0; i < 4; i++) {
        memset(w, 0x11 * (i + 1), sizeof w);
        ck_assert_int_eq(vdisk_pwrite(dev, w, sizeof w, (uint64_t)i * 32 * KiB + 1024), 0);
        memcpy(b + i * 32 * KiB + 1024, w, sizeof w);
    }
    ck_assert_int_eq(fault_set_delay(f, DELAY_MS), 0);
    uint64_t w0 = fault_writes(f);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 8), 0);
    /* Three reads in one table that is not cached (672-704 KiB). */
    uint8_t r[3][4096];
    static const uint64_t at[3] = {690 * KiB, 694 * KiB, 698 * KiB};
    uncached_done = inside_calls = 0;
    for (int i = 0; i < 3; i++)
        submit_one(q, AIO_READ, r[i], at[i]);
    ck_assert_uint_eq(fault_writes(f), w0);
    reap_until(q, 3);
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sizeof r[i]; k++)
            ck_assert_msg(r[i][k] == b[at[i] + k], "read %d, byte %zu: 0x%02x, want 0x%02x", i,
                          k, r[i][k], b[at[i] + k]);
    /* The tables went out (no flush was asked for): the write-back ran. */
    ck_assert_uint_ge(fault_writes(f) - w0, 4);
    ck_assert_uint_eq(inside_calls, 0);
    vdisk_queue_free(q);
    ck_assert_int_eq(fault_set_delay(f, 0), 0);
    vdisk_close(dev);
    image_is(f, b, 1 * MiB, "after512");
    free(b);
    fault_free(f);
}
END_TEST

/*
 * A flush on the image's worker writes the tables back and fsyncs without
 * holding the image's lock across the I/O: while the file's fsync is held
 * (fault_hold_flushes), another thread's reads and in-place overwrites of
 * cached clusters, and an allocating write next to cached tables, are
 * submitted and complete on that thread's own queue.  (The worker used to
 * hold the lock across the whole flush, so their submits waited for it.)
 * Once let go, the flush completes and what it covered is durable: the
 * durable image alone is sound and reads as written before the flush.
 */
struct beside {
    struct vdisk_dev *dev;
    const uint8_t *b;
    bool alloc_write;       /* also an allocating write next to cached tables */
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool done;
    int err;
    char msg[256];
};

static void beside_done(void *user, int result)
{
    int *r = user;
    *r = result;
}

static void *beside_thread(void *arg)
{
    struct beside *x = arg;
    vdisk_queue *q;
    int err = vdisk_queue_new(&q, x->dev, 16);
    int N = x->alloc_write ? 6 : 5;
    static const uint64_t rd[4] = {0, 64 * KiB, 1 * MiB + 4096, 2 * MiB - 4096};
    uint8_t *buf = malloc(6 * 4096);
    int res[6];
    for (int i = 0; i < N; i++)
        res[i] = 1;
    if (err == 0 && !buf)
        err = -ENOMEM;
    for (int i = 0; err == 0 && i < 4; i++)
        err = aio_start(q, AIO_READ, buf + i * 4096, rd[i], 4096, beside_done, &res[i]);
    if (err == 0) { /* in place, the bytes it holds already */
        memcpy(buf + 4 * 4096, x->b + 1 * MiB, 4096);
        err = aio_start(q, AIO_WRITE, buf + 4 * 4096, 1 * MiB, 4096, beside_done, &res[4]);
    }
    if (err == 0 && x->alloc_write) { /* zeroes, as the unallocated cluster reads */
        memset(buf + 5 * 4096, 0, 4096);
        err = aio_start(q, AIO_WRITE, buf + 5 * 4096, 6 * MiB + 128 * KiB, 4096, beside_done,
                        &res[5]);
    }
    if (err == 0)
        err = vdisk_queue_drain(q) < 0 ? -EIO : 0;
    for (int i = 0; err == 0 && i < N; i++)
        if (res[i] != 0)
            err = res[i] < 0 ? res[i] : -EIO;
    for (int i = 0; err == 0 && i < 4; i++)
        if (memcmp(buf + i * 4096, x->b + rd[i], 4096) != 0)
            err = -EILSEQ;
    pthread_mutex_lock(&x->m);
    x->err = err;
    if (err)
        snprintf(x->msg, sizeof x->msg, "%s", vdisk_get_error());
    x->done = true;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->m);
    free(buf);
    if (q)
        vdisk_queue_free(q);
    return NULL;
}

/* Starts the thread of requests beside held I/O and waits for it: whether
 * it finished while the I/O was still held.  A watchdog, not a timing
 * assertion: requests that wait for the held I/O never finish before it
 * is let go. */
static bool beside_run(struct beside *x, pthread_t *t)
{
    pthread_mutex_init(&x->m, NULL);
    pthread_cond_init(&x->cv, NULL);
    ck_assert_int_eq(pthread_create(t, NULL, beside_thread, x), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&x->m);
    while (!x->done && pthread_cond_timedwait(&x->cv, &x->m, &until) == 0)
        ;
    bool in_time = x->done;
    pthread_mutex_unlock(&x->m);
    return in_time;
}

static void beside_end(struct beside *x, pthread_t t, bool in_time, const char *held)
{
    pthread_join(t, NULL);
    ck_assert_msg(in_time, "requests on another thread's queue waited for %s", held);
    ck_assert_msg(x->err == 0, "beside %s: %d: %s", held, x->err, x->msg);
    pthread_mutex_destroy(&x->m);
    pthread_cond_destroy(&x->cv);
}

/* Reaps Q (nothing may complete) until the disk holds the I/O (a read with
 * READS, else a flush), runs the thread beside it, lets the I/O go, and
 * checks that the thread finished while it was held; HELD names it. */
static void beside_held_io(vdisk_queue *q, struct fault_disk *f, bool reads, struct beside *x,
                           const char *held)
{
    for (int i = 0; (reads ? fault_reads_held(f) : fault_flushes_held(f)) == 0; i++) {
        ck_assert_msg(i < 60000, "%s: the I/O never reached the disk", held);
        ck_assert_int_ge(vdisk_queue_reap(q, 0, 0), 0);
        usleep(1000);
    }
    pthread_t t;
    bool in_time = beside_run(x, &t);
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 0); /* still held */
    if (reads)
        fault_hold_reads(f, 0, 0);
    else
        fault_hold_flushes(f, false);
    beside_end(x, t, in_time, held);
}

/* The durable image alone (a power cut now) is sound and reads as WANT;
 * then DEV is closed and the image is the same.  NAME names the files. */
static void durable_then_closed(struct fault_disk *f, struct vdisk_dev *dev, const uint8_t *want,
                                const char *name)
{
    char closed[64];
    struct fault_disk *after = fault_after_crash(f, FAULT_DROP_ALL, 1);
    ck_assert_ptr_nonnull(after);
    image_is(after, want, VSIZE, name);
    fault_free(after);
    vdisk_close(dev);
    snprintf(closed, sizeof closed, "%s-closed", name);
    image_is(f, want, VSIZE, closed);
}

START_TEST(qcow2_not_held_behind_flush)
{
    uint8_t *b;
    struct fault_disk *f = filled(&b, "cluster_size=4096", VSIZE / 2);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    uint8_t *all = malloc(VSIZE);
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(vdisk_pread(dev, all, VSIZE, 0), 0); /* every table cached */
    free(all);
    /* Tables made dirty: an allocation in the empty half. */
    memset(b + 6 * MiB, 0x5a, 64 * KiB);
    ck_assert_int_eq(vdisk_pwrite(dev, b + 6 * MiB, 64 * KiB, 6 * MiB), 0);

    fault_hold_flushes(f, true);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 4), 0);
    int fres = 1;
    ck_assert_int_eq(aio_start(q, AIO_FLUSH, NULL, 0, 0, beside_done, &fres), 0);
    struct beside x = {.dev = dev, .b = b, .alloc_write = true};
    beside_held_io(q, f, false, &x, "the worker's flush (the image's lock held across the fsync)");
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_msg(fres == 0, "the flush failed (%d): %s", fres, vdisk_get_error());
    vdisk_queue_free(q);

    durable_then_closed(f, dev, b, "beside"); /* what the flush covered survives */
    free(b);
    fault_free(f);
}
END_TEST

/*
 * The worker's table walk for a discard reads the L2 table it needs
 * without holding the image's lock: while that read is held by the disk,
 * another thread's reads and in-place writes of clusters under a cached
 * table complete.  (The walk used to read it under the lock.)
 */
START_TEST(qcow2_not_held_behind_walk)
{
    uint8_t *b;
    struct fault_disk *f = filled_4k(&b);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    uint8_t one[4096];
    ck_assert_int_eq(vdisk_pread(dev, one, sizeof one, 0), 0); /* table 0 cached */
    /* Where table 3 (6-8 MiB) lies: the L1 table's fourth entry. */
    uint8_t *img;
    size_t len;
    ck_assert_int_eq(fault_current(f, &img, &len), 0);
    uint64_t l1 = 0, e = 0;
    for (int i = 0; i < 8; i++)
        l1 = l1 << 8 | img[40 + i];
    ck_assert_uint_lt(l1 + 32, len);
    for (int i = 0; i < 8; i++)
        e = e << 8 | img[l1 + 24 + i];
    free(img);
    uint64_t t3 = e & 0x00fffffffffffe00ull;
    ck_assert_uint_ne(t3, 0);

    fault_hold_reads(f, t3, 4096);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 4), 0);
    int dres = 1;
    ck_assert_int_eq(aio_start(q, AIO_DISCARD, NULL, 6 * MiB, 64 * KiB, beside_done, &dres), 0);
    struct beside x = {.dev = dev, .b = b};
    beside_held_io(q, f, true, &x, "the worker's walk (the image's lock held across a table read)");
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_msg(dres == 0, "the discard failed (%d): %s", dres, vdisk_get_error());
    vdisk_queue_free(q);
    memset(b + 6 * MiB, 0, 64 * KiB);
    vdisk_close(dev);
    image_is(f, b, VSIZE, "walk");
    free(b);
    fault_free(f);
}
END_TEST

/*
 * An allocating write where no L2 table exists yet: the worker makes the
 * table (its refcount and the table written and fsynced, then the L1
 * entry) without holding the image's lock across that I/O.  While the
 * fsync is held, another thread's reads and in-place writes under a
 * cached table complete.  (qcow2_l2_for_write made it under the lock.)
 */
START_TEST(qcow2_not_held_behind_new_table)
{
    uint8_t *b;
    struct fault_disk *f = filled(&b, "cluster_size=4096", VSIZE / 2);
    struct vdisk_dev *dev = open_on(f, "qcow2");
    uint8_t *all = malloc(VSIZE / 2);
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(vdisk_pread(dev, all, VSIZE / 2, 0), 0); /* tables 0 and 1 cached */
    free(all);

    fault_hold_flushes(f, true);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 4), 0);
    int wres = 1;
    uint8_t w[4096];
    memset(w, 0x6b, sizeof w);
    ck_assert_int_eq(aio_start(q, AIO_WRITE, w, 6 * MiB + 8192, sizeof w, beside_done, &wres),
                     0);
    struct beside x = {.dev = dev, .b = b};
    beside_held_io(q, f, false, &x, "the worker making an L2 table (the lock held across its I/O)");
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_msg(wres == 0, "the write failed (%d): %s", wres, vdisk_get_error());
    vdisk_queue_free(q);
    memcpy(b + 6 * MiB + 8192, w, sizeof w);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    /* The table, its refcount and the L1 entry are durable, in that order. */
    durable_then_closed(f, dev, b, "newtable");
    free(b);
    fault_free(f);
}
END_TEST

int main(void)
{
    require_engine(TEST_ENGINE);
    Suite *s = suite_create("never-blocks-" TEST_ENGINE);
    TCase *tc = tcase_create("slow-device");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, raw_never_blocks);
    tcase_add_test(tc, offset_range_never_blocks);
    tcase_add_test(tc, qcow2_cached_never_blocks);
    tcase_add_test(tc, qcow2_uncached_never_blocks);
    tcase_add_test(tc, qcow2_uncached_dirty_cache);
    tcase_add_test(tc, qcow2_table_read_error);
    tcase_add_test(tc, qcow2_sync_call_while_loading);
    tcase_add_test(tc, qcow2_allocating_never_blocks);
    tcase_add_test(tc, qcow2_not_held_behind_flush);
    tcase_add_test(tc, qcow2_not_held_behind_walk);
    tcase_add_test(tc, qcow2_not_held_behind_new_table);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
