/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/raw.c: the raw driver on regular files (page cache): create,
 * reads and writes at any offset and length, vectored I/O, flush, discard,
 * write zeroes, block status, files whose size is not a multiple of 512,
 * read-only devices, capabilities and allocated size.
 *
 * Every write is checked byte for byte against the file itself, read with
 * plain pread(2).  Sizes and offsets that ext4 allocates in whole blocks are
 * multiples of 64 KiB, so that hole boundaries are exact.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define KiB 1024ull
#define MiB (1024 * KiB)

/* ---- Helpers -------------------------------------------------------------- */

static vdisk_dev *open_dev(const char *path, const char *list)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (list)
        ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    vdisk_dev *dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "open %s (%s): %s", path, list ? list : "", vdisk_get_error());
    return dev;
}

static vdisk_dev *create_open(const char *name, uint64_t size, const char *list)
{
    const char *path = scratch(name);
    ck_assert_msg(vdisk_create(path, "raw", size, NULL) == 0, "%s", vdisk_get_error());
    return open_dev(path, list);
}


static uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static int64_t file_allocated(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (int64_t)st.st_blocks * 512;
}

/* The file holds MODEL from offset 0 (LEN bytes). */
static void assert_file(const char *path, const uint8_t *model, size_t len)
{
    uint8_t *f = read_file_at(path, 0, len);
    assert_same_bytes(f, model, len, 0, path);
    free(f);
}

/* A hole of `freed` bytes was punched: st_blocks also counts the file
 * system's own extent blocks, and splitting an extent can add one (ext4
 * does when the file is fragmented), so allow a little metadata growth. */
static void assert_freed(vdisk_dev *dev, int64_t before, int64_t freed)
{
    int64_t now = vdisk_get_allocated_size(dev);
    ck_assert_msg(now >= before - freed && now <= before - freed + 16 * 1024,
                  "allocated %lld bytes after freeing %lld of %lld (expected %lld, "
                  "plus at most 16 KiB of file-system metadata)",
                  (long long)now, (long long)freed, (long long)before,
                  (long long)(before - freed));
}

static void assert_zero(const uint8_t *p, size_t len, uint64_t base, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            ck_abort_msg("%s: byte at offset %" PRIu64 " is 0x%02x, expected 0", what,
                         base + i, p[i]);
}

static off_t seek(const char *path, off_t off, int whence)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    off_t r = lseek(fd, off, whence);
    close(fd);
    return r;
}

/* ---- Create --------------------------------------------------------------- */

START_TEST(create_rounds_size_up)
{
    static const struct { uint64_t asked, size; } cases[] = {
        {0, 0}, {1, 512}, {511, 512}, {512, 512}, {1000, 1024}, {4097, 4608},
        {MiB + 1, MiB + 512},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = scratch("c.raw");
        ck_assert_int_eq(vdisk_create(path, "raw", cases[i].asked, NULL), 0);
        ck_assert_uint_eq(file_size(path), cases[i].size);
        vdisk_dev *dev = open_dev(path, NULL);
        ck_assert_uint_eq(vdisk_get_size(dev), cases[i].size);
        ck_assert_uint_eq(vdisk_get_block_size(dev), 512);
        ck_assert_str_eq(vdisk_get_format(dev), "raw");
        ck_assert_str_eq(vdisk_get_filename(dev), path);
        vdisk_close(dev);
    }
    /* The format defaults to raw. */
    ck_assert_int_eq(vdisk_create(scratch("d.raw"), NULL, 4096, NULL), 0);
    ck_assert_uint_eq(file_size(scratch("d.raw")), 4096);
    ck_assert_str_eq(vdisk_version(), "0.1.0");
}
END_TEST

START_TEST(create_allocates_first_block)
{
    const char *path = scratch("c.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", 16 * MiB, NULL), 0);
    /* Like QEMU: the first 4 KiB are written, the rest is a hole. */
    ck_assert_int_eq(seek(path, 0, SEEK_DATA), 0);
    ck_assert_int_eq(seek(path, 0, SEEK_HOLE), 4096);
    ck_assert_int_eq(seek(path, 4096, SEEK_DATA), -1);
    ck_assert_int_eq(file_allocated(path), 4096);
    uint8_t *f = read_file_at(path, 0, 64 * KiB);
    assert_zero(f, 64 * KiB, 0, path);
    free(f);

    vdisk_dev *dev = open_dev(path, NULL);
    ck_assert_int_eq(vdisk_get_allocated_size(dev), 4096);
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(dev, 0, 16 * MiB, &e), 0);
    ck_assert_uint_eq(e.offset, 0);
    ck_assert_uint_eq(e.length, 4096);
    ck_assert_uint_eq(e.flags, VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET);
    ck_assert_int_eq(vdisk_block_status(dev, 4096, 16 * MiB, &e), 0);
    ck_assert_uint_eq(e.offset, 4096);
    ck_assert_uint_eq(e.length, 16 * MiB - 4096);
    ck_assert_uint_eq(e.flags, VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET);
    vdisk_close(dev);

    /* A small image is written whole; an existing file is truncated. */
    write_file(path, "junk junk junk", 14);
    ck_assert_int_eq(vdisk_create(path, "raw", 1000, NULL), 0);
    ck_assert_uint_eq(file_size(path), 1024);
    f = read_file_at(path, 0, 1024);
    assert_zero(f, 1024, 0, path);
    free(f);
    ck_assert_int_eq(seek(path, 0, SEEK_HOLE), 1024);
}
END_TEST

/* ---- Reads and writes ----------------------------------------------------- */

START_TEST(odd_offsets_and_lengths)
{
    const size_t size = 1 * MiB;
    vdisk_dev *dev = create_open("rw.raw", size, NULL);
    const char *path = vdisk_get_filename(dev);
    uint8_t *model = calloc(1, size);
    uint8_t *buf = malloc(size);
    uint64_t seed = 0x1234567;

    static const struct { uint64_t off, len; } fixed[] = {
        {0, 1}, {1, 1}, {511, 2}, {513, 511}, {1023, 1025}, {4095, 3}, {4097, 8191},
        {65535, 65537}, {size - 1, 1}, {size - 513, 513}, {333333, 77777}, {0, size},
        {7, size - 14},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] + 200; i++) {
        uint64_t off, len;
        if (i < sizeof fixed / sizeof fixed[0]) {
            off = fixed[i].off;
            len = fixed[i].len;
        } else {
            len = 1 + rng_next(&seed) % 20000;
            off = rng_next(&seed) % (size - len + 1);
        }
        fill_random(model + off, len, &seed);
        ck_assert_msg(vdisk_pwrite(dev, model + off, len, off) == 0, "write %" PRIu64 "+%" PRIu64
                      ": %s", off, len, vdisk_get_error());
        /* Read back an odd window around it. */
        uint64_t roff = off > 3 ? off - 3 : 0;
        uint64_t rlen = off + len + 5 <= size ? off + len + 5 - roff : size - roff;
        memset(buf, 0xee, rlen);
        ck_assert_msg(vdisk_pread(dev, buf, rlen, roff) == 0, "%s", vdisk_get_error());
        assert_same_bytes(buf, model + roff, rlen, roff, "vdisk_pread");
        if (i % 20 == 0)
            assert_file(path, model, size);
    }
    assert_file(path, model, size);
    ck_assert_int_eq(vdisk_pread(dev, buf, size, 0), 0);
    assert_same_bytes(buf, model, size, 0, "whole device");

    /* Zero-length requests succeed anywhere inside, and at the end. */
    ck_assert_int_eq(vdisk_pread(dev, buf, 0, 12345), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 0, size), 0);
    ck_assert_int_eq(vdisk_pread(dev, buf, 0, size), 0);
    assert_file(path, model, size);
    free(model);
    free(buf);
    vdisk_close(dev);
}
END_TEST

START_TEST(large_offsets)
{
    /* A sparse 1 TiB image: offsets above 4 GiB and near the end. */
    const uint64_t size = 1024 * 1024 * MiB;
    vdisk_dev *dev = create_open("big.raw", size, NULL);
    const char *path = vdisk_get_filename(dev);
    uint64_t seed = 99;
    uint8_t a[8192], b[8192];
    static const uint64_t offs[] = {(4ull << 30) - 4096, (4ull << 30) + 1, size - 8192,
                                    size / 2 + 12345};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        fill_random(a, sizeof a, &seed);
        ck_assert_msg(vdisk_pwrite(dev, a, sizeof a, offs[i]) == 0, "%s", vdisk_get_error());
        ck_assert_int_eq(vdisk_pread(dev, b, sizeof b, offs[i]), 0);
        assert_same_bytes(b, a, sizeof a, offs[i], "vdisk_pread");
        uint8_t *f = read_file_at(path, offs[i], sizeof a);
        assert_same_bytes(f, a, sizeof a, offs[i], path);
        free(f);
    }
    ck_assert_uint_eq(file_size(path), size);
    vdisk_close(dev);
}
END_TEST

START_TEST(vectored_io)
{
    const size_t size = 4 * MiB;
    vdisk_dev *dev = create_open("v.raw", size, NULL);
    const char *path = vdisk_get_filename(dev);
    uint8_t *model = calloc(1, size);
    uint64_t seed = 42;

    for (int round = 0; round < 20; round++) {
        /* Up to 1024 iovecs (IOV_MAX) of 0 to 3000 bytes each. */
        int n = round == 0 ? 1024 : 1 + (int)(rng_next(&seed) % 600);
        struct iovec *v = calloc((size_t)n, sizeof *v);
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            size_t l = rng_next(&seed) % 8 == 0 ? 0 : rng_next(&seed) % 3000;
            v[i].iov_base = malloc(l ? l : 1);
            v[i].iov_len = l;
            fill_random(v[i].iov_base, l, &seed);
            total += l;
        }
        uint64_t off = rng_next(&seed) % (size - total + 1);
        ck_assert_msg(vdisk_pwritev(dev, v, n, off) == 0, "pwritev of %d iovecs: %s", n,
                      vdisk_get_error());
        size_t pos = off;
        for (int i = 0; i < n; i++) {
            memcpy(model + pos, v[i].iov_base, v[i].iov_len);
            pos += v[i].iov_len;
        }
        assert_file(path, model, size);

        /* Read it back into the same (scribbled over) buffers. */
        for (int i = 0; i < n; i++)
            memset(v[i].iov_base, 0xcc, v[i].iov_len);
        ck_assert_int_eq(vdisk_preadv(dev, v, n, off), 0);
        pos = off;
        for (int i = 0; i < n; i++) {
            assert_same_bytes(v[i].iov_base, model + pos, v[i].iov_len, pos, "vdisk_preadv");
            pos += v[i].iov_len;
        }
        for (int i = 0; i < n; i++)
            free(v[i].iov_base);
        free(v);
    }
    free(model);
    vdisk_close(dev);
}
END_TEST

START_TEST(more_iovecs_than_iov_max)
{
    /* Nothing in the API limits the number of iovecs: 1500 of them (more
     * than the kernel's IOV_MAX of 1024) are written and read like any. */
    vdisk_dev *dev = create_open("v.raw", 4 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);
    const int n = 1500;
    struct iovec *v = calloc(n, sizeof *v);
    uint8_t *data = malloc((size_t)n * 512);
    uint64_t seed = 7;
    fill_random(data, (size_t)n * 512, &seed);
    for (int i = 0; i < n; i++) {
        v[i].iov_base = data + (size_t)i * 512;
        v[i].iov_len = 512;
    }
    int r = vdisk_pwritev(dev, v, n, 4096);
    ck_assert_msg(r == 0, "pwritev of %d iovecs: %d (%s)", n, r, vdisk_get_error());
    uint8_t *f = read_file_at(path, 4096, (size_t)n * 512);
    assert_same_bytes(f, data, (size_t)n * 512, 4096, path);
    free(f);
    memset(data, 0, (size_t)n * 512);
    r = vdisk_preadv(dev, v, n, 4096);
    ck_assert_msg(r == 0, "preadv of %d iovecs: %d (%s)", n, r, vdisk_get_error());
    f = read_file_at(path, 4096, (size_t)n * 512);
    assert_same_bytes(data, f, (size_t)n * 512, 4096, "vdisk_preadv");
    free(f);
    free(data);
    free(v);
    vdisk_close(dev);
}
END_TEST

struct thread_io {
    vdisk_dev *dev;
    uint64_t base, len;
    uint64_t seed;
    int failures;
};

static void *thread_io(void *p)
{
    struct thread_io *t = p;
    uint8_t *model = calloc(1, t->len), *buf = malloc(t->len);
    for (int i = 0; i < 300; i++) {
        uint64_t len = 1 + rng_next(&t->seed) % 5000;
        uint64_t off = rng_next(&t->seed) % (t->len - len + 1);
        fill_random(model + off, len, &t->seed);
        if (vdisk_pwrite(t->dev, model + off, len, t->base + off) < 0)
            t->failures++;
        if (vdisk_pread(t->dev, buf, t->len, t->base) < 0 || memcmp(buf, model, t->len))
            t->failures++;
    }
    free(model);
    free(buf);
    return NULL;
}

START_TEST(sync_calls_from_threads)
{
    /* The synchronous calls are thread-safe: four threads, one device. */
    vdisk_dev *dev = create_open("t.raw", 1 * MiB, NULL);
    struct thread_io t[4];
    pthread_t tid[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct thread_io){dev, (uint64_t)i * 256 * KiB + (uint64_t)i * 7, 64 * KiB,
                                  (uint64_t)i + 1, 0};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, thread_io, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        ck_assert_int_eq(t[i].failures, 0);
    }
    vdisk_close(dev);
}
END_TEST

START_TEST(flush_and_cache_modes)
{
    static const char *const modes[] = {"cache=writeback", "cache=writethrough",
                                        "cache=unsafe"};
    const char *path = scratch("f.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", MiB, NULL), 0);
    uint64_t seed = 5;
    uint8_t buf[5000];
    for (size_t i = 0; i < 3; i++) {
        vdisk_dev *dev = open_dev(path, modes[i]);
        ck_assert_uint_eq(vdisk_can(dev) & VDISK_CAN_FLUSH, VDISK_CAN_FLUSH);
        fill_random(buf, sizeof buf, &seed);
        ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 777 * (i + 1)), 0);
        ck_assert_msg(vdisk_flush(dev) == 0, "%s: %s", modes[i], vdisk_get_error());
        ck_assert_int_eq(vdisk_flush(dev), 0);
        uint8_t *f = read_file_at(path, 777 * (i + 1), sizeof buf);
        assert_same_bytes(f, buf, sizeof buf, 777 * (i + 1), modes[i]);
        free(f);
        vdisk_close(dev);
    }
}
END_TEST

/* ---- Discard and write zeroes ---------------------------------------------- */

/* A 4 MiB image full of random data (MODEL), allocated everywhere. */
static vdisk_dev *filled_image(const char *name, uint8_t **modelp)
{
    const size_t size = 4 * MiB;
    vdisk_dev *dev = create_open(name, size, NULL);
    uint8_t *model = malloc(size);
    uint64_t seed = 0xfeed;
    fill_random(model, size, &seed);
    ck_assert_int_eq(vdisk_pwrite(dev, model, size, 0), 0);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    *modelp = model;
    return dev;
}

START_TEST(discard_punches_holes)
{
    uint8_t *model;
    vdisk_dev *dev = filled_image("d.raw", &model);
    const char *path = vdisk_get_filename(dev);
    ck_assert_uint_eq(vdisk_can(dev) & VDISK_CAN_DISCARD, VDISK_CAN_DISCARD);
    int64_t before = vdisk_get_allocated_size(dev);
    ck_assert_int_eq(before, file_allocated(path));
    ck_assert_int_ge(before, 4 * MiB);

    ck_assert_int_eq(vdisk_discard(dev, 1 * MiB, 256 * KiB), 0);
    memset(model + 1 * MiB, 0, 256 * KiB);
    assert_file(path, model, 4 * MiB);
    uint8_t *buf = malloc(4 * MiB);
    ck_assert_int_eq(vdisk_pread(dev, buf, 4 * MiB, 0), 0);
    assert_same_bytes(buf, model, 4 * MiB, 0, "vdisk_pread");
    ck_assert_int_eq(seek(path, 1 * MiB, SEEK_HOLE), 1 * MiB);
    ck_assert_int_eq(seek(path, 1 * MiB, SEEK_DATA), 1 * MiB + 256 * KiB);
    assert_freed(dev, before, 256 * KiB);
    ck_assert_int_eq(vdisk_get_allocated_size(dev), file_allocated(path));
    ck_assert_uint_eq(file_size(path), 4 * MiB);

    /* An unaligned discard leaves the bytes around it alone; inside, each
     * byte is the old one or zero. */
    ck_assert_int_eq(vdisk_discard(dev, 100, 9000), 0);
    uint8_t *f = read_file_at(path, 0, 4 * MiB);
    assert_same_bytes(f, model, 100, 0, "before the discarded range");
    assert_same_bytes(f + 9100, model + 9100, 4 * MiB - 9100, 9100, "after the discarded range");
    for (size_t i = 100; i < 9100; i++)
        if (f[i] != 0 && f[i] != model[i])
            ck_abort_msg("discarded byte %zu is 0x%02x: neither old (0x%02x) nor 0", i, f[i],
                         model[i]);
    free(f);

    /* Zero-length discards, and a discard of the whole device. */
    ck_assert_int_eq(vdisk_discard(dev, 0, 0), 0);
    ck_assert_int_eq(vdisk_discard(dev, 4 * MiB, 0), 0);
    ck_assert_int_eq(vdisk_discard(dev, 0, 4 * MiB), 0);
    ck_assert_int_eq(seek(path, 0, SEEK_DATA), -1);
    ck_assert_int_eq(vdisk_get_allocated_size(dev), 0);
    ck_assert_int_eq(vdisk_pread(dev, buf, 4 * MiB, 0), 0);
    assert_zero(buf, 4 * MiB, 0, "vdisk_pread after discarding everything");
    free(buf);
    free(model);
    vdisk_close(dev);
}
END_TEST

START_TEST(write_zeroes)
{
    uint8_t *model;
    vdisk_dev *dev = filled_image("z.raw", &model);
    const char *path = vdisk_get_filename(dev);
    unsigned caps = vdisk_can(dev);
    ck_assert_uint_eq(caps & VDISK_CAN_WRITE_ZEROES, VDISK_CAN_WRITE_ZEROES);
    ck_assert_uint_eq(caps & VDISK_CAN_ZERO_UNMAP, VDISK_CAN_ZERO_UNMAP);
    int64_t before = vdisk_get_allocated_size(dev);

    /* Without unmapping: zeroes, and the space stays allocated. */
    ck_assert_int_eq(vdisk_write_zeroes(dev, 2 * MiB, 128 * KiB, 0), 0);
    memset(model + 2 * MiB, 0, 128 * KiB);
    assert_file(path, model, 4 * MiB);
    ck_assert_int_ge(vdisk_get_allocated_size(dev), before);

    /* With unmapping allowed: a hole. */
    ck_assert_int_eq(vdisk_write_zeroes(dev, 3 * MiB, 128 * KiB, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 3 * MiB, 0, 128 * KiB);
    assert_file(path, model, 4 * MiB);
    ck_assert_int_eq(seek(path, 3 * MiB, SEEK_HOLE), 3 * MiB);
    ck_assert_int_eq(seek(path, 3 * MiB, SEEK_DATA), 3 * MiB + 128 * KiB);
    assert_freed(dev, before, 128 * KiB);

    /* Unaligned ranges, both ways: exactly the range becomes zero. */
    ck_assert_int_eq(vdisk_write_zeroes(dev, 5001, 10007, 0), 0);
    memset(model + 5001, 0, 10007);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 100003, 70001, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 100003, 0, 70001);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 4 * MiB - 3, 3, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 4 * MiB - 3, 0, 3);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 1, 1, 0), 0);
    model[1] = 0;
    assert_file(path, model, 4 * MiB);
    uint8_t *buf = malloc(4 * MiB);
    ck_assert_int_eq(vdisk_pread(dev, buf, 4 * MiB, 0), 0);
    assert_same_bytes(buf, model, 4 * MiB, 0, "vdisk_pread");
    ck_assert_uint_eq(file_size(path), 4 * MiB);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 12345, 0, 0), 0);
    free(buf);
    free(model);
    vdisk_close(dev);
}
END_TEST

/* ---- Block status ---------------------------------------------------------- */

struct ext { uint64_t off, len; bool data; };

/* Maps [0, size) of DEV and compares with WANT (N extents). */
static void assert_map(vdisk_dev *dev, const struct ext *want, size_t n)
{
    uint64_t size = vdisk_get_size(dev), off = 0;
    size_t i = 0;
    char got[4096] = "";
    size_t gl = 0;
    bool ok = true;
    while (off < size) {
        struct vdisk_extent e;
        ck_assert_msg(vdisk_block_status(dev, off, size - off, &e) == 0, "%s",
                      vdisk_get_error());
        ck_assert_uint_eq(e.offset, off);
        ck_assert_uint_gt(e.length, 0);
        ck_assert_uint_le(e.length, size - off);
        bool data = e.flags & VDISK_EXT_DATA;
        ck_assert_uint_eq(e.flags, (data ? VDISK_EXT_DATA : VDISK_EXT_ZERO) |
                                       VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET);
        ck_assert_int_eq(e.depth, 0);
        ck_assert_uint_eq(e.host_offset, off);
        ck_assert_ptr_nonnull(e.host_file);
        ck_assert_str_eq(e.host_file, vdisk_get_filename(dev));
        if (gl < sizeof got - 100)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, " [%" PRIu64 "+%" PRIu64 " %s]",
                                   off, e.length, data ? "data" : "zero");
        if (i >= n || want[i].off != off || want[i].len != e.length || want[i].data != data)
            ok = false;
        i++;
        off += e.length;
    }
    ck_assert_msg(ok && i == n, "unexpected map:%s", got);
}

START_TEST(block_status_extents)
{
    const uint64_t size = 16 * MiB;
    vdisk_dev *dev = create_open("bs.raw", size, NULL);
    uint8_t *buf = malloc(256 * KiB);
    memset(buf, 0x77, 256 * KiB);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 64 * KiB, 1 * MiB), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 192 * KiB, 4 * MiB), 0);
    /* Two writes side by side make one extent. */
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 64 * KiB, 8 * MiB), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 64 * KiB, 8 * MiB + 64 * KiB), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 64 * KiB, size - 64 * KiB), 0);
    const struct ext want[] = {
        {0, 4 * KiB, true},
        {4 * KiB, 1 * MiB - 4 * KiB, false},
        {1 * MiB, 64 * KiB, true},
        {1 * MiB + 64 * KiB, 3 * MiB - 64 * KiB, false},
        {4 * MiB, 192 * KiB, true},
        {4 * MiB + 192 * KiB, 4 * MiB - 192 * KiB, false},
        {8 * MiB, 128 * KiB, true},
        {8 * MiB + 128 * KiB, 8 * MiB - 192 * KiB, false},
        {size - 64 * KiB, 64 * KiB, true},
    };
    /* Unflushed (delayed allocation) and flushed. */
    assert_map(dev, want, sizeof want / sizeof want[0]);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    assert_map(dev, want, sizeof want / sizeof want[0]);

    /* Extents are clipped to the length asked for, and start anywhere. */
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(dev, 1 * MiB + 4 * KiB, 8 * KiB, &e), 0);
    ck_assert_uint_eq(e.offset, 1 * MiB + 4 * KiB);
    ck_assert_uint_eq(e.length, 8 * KiB);
    ck_assert_uint_eq(e.flags & (VDISK_EXT_DATA | VDISK_EXT_ZERO), VDISK_EXT_DATA);
    ck_assert_int_eq(vdisk_block_status(dev, 1 * MiB + 60 * KiB, 1 * MiB, &e), 0);
    ck_assert_uint_eq(e.length, 4 * KiB);
    ck_assert_uint_eq(e.flags & (VDISK_EXT_DATA | VDISK_EXT_ZERO), VDISK_EXT_DATA);
    ck_assert_int_eq(vdisk_block_status(dev, 2 * MiB + 1, 64 * KiB, &e), 0);
    ck_assert_uint_eq(e.offset, 2 * MiB + 1);
    ck_assert_uint_eq(e.length, 64 * KiB);
    ck_assert_uint_eq(e.flags & (VDISK_EXT_DATA | VDISK_EXT_ZERO), VDISK_EXT_ZERO);
    ck_assert_int_eq(vdisk_block_status(dev, 4 * MiB - 1, 1 * MiB, &e), 0);
    ck_assert_uint_eq(e.length, 1);
    ck_assert_uint_eq(e.flags & (VDISK_EXT_DATA | VDISK_EXT_ZERO), VDISK_EXT_ZERO);
    ck_assert_uint_eq(e.host_offset, 4 * MiB - 1);
    /* ...and to the device. */
    ck_assert_int_eq(vdisk_block_status(dev, size - 512, UINT64_MAX, &e), 0);
    ck_assert_uint_eq(e.length, 512);
    ck_assert_uint_eq(e.flags & (VDISK_EXT_DATA | VDISK_EXT_ZERO), VDISK_EXT_DATA);

    /* Discarding and zeroing with unmap make holes that the map shows. */
    ck_assert_int_eq(vdisk_discard(dev, 4 * MiB + 64 * KiB, 64 * KiB), 0);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 8 * MiB, 64 * KiB, VDISK_ZEROES_MAY_UNMAP), 0);
    const struct ext want2[] = {
        {0, 4 * KiB, true},
        {4 * KiB, 1 * MiB - 4 * KiB, false},
        {1 * MiB, 64 * KiB, true},
        {1 * MiB + 64 * KiB, 3 * MiB - 64 * KiB, false},
        {4 * MiB, 64 * KiB, true},
        {4 * MiB + 64 * KiB, 64 * KiB, false},
        {4 * MiB + 128 * KiB, 64 * KiB, true},
        {4 * MiB + 192 * KiB, 4 * MiB - 128 * KiB, false},
        {8 * MiB + 64 * KiB, 64 * KiB, true},
        {8 * MiB + 128 * KiB, 8 * MiB - 192 * KiB, false},
        {size - 64 * KiB, 64 * KiB, true},
    };
    assert_map(dev, want2, sizeof want2 / sizeof want2[0]);
    free(buf);
    vdisk_close(dev);
}
END_TEST

/* ---- Files whose size is not a multiple of 512 ----------------------------- */

static uint8_t tail_pattern[1000];

static const char *tail_file(const char *name)
{
    uint64_t seed = 1000;
    fill_random(tail_pattern, sizeof tail_pattern, &seed);
    const char *path = scratch(name);
    write_file(path, tail_pattern, sizeof tail_pattern);
    return path;
}

START_TEST(unaligned_file_size)
{
    const char *path = tail_file("t.raw");
    /* format=raw: a probed raw image takes whole 512-byte blocks (as in
     * QEMU), so the write into the tail below would extend it to 1024. */
    vdisk_dev *dev = open_dev(path, "format=raw");
    ck_assert_uint_eq(vdisk_get_size(dev), 1024);

    /* The tail reads as zeroes. */
    uint8_t buf[1024];
    memset(buf, 0xee, sizeof buf);
    ck_assert_int_eq(vdisk_pread(dev, buf, 1024, 0), 0);
    assert_same_bytes(buf, tail_pattern, 1000, 0, "vdisk_pread");
    assert_zero(buf + 1000, 24, 1000, "the tail");
    memset(buf, 0xee, sizeof buf);
    ck_assert_int_eq(vdisk_pread(dev, buf, 24, 1000), 0);
    assert_zero(buf, 24, 1000, "the tail");
    memset(buf, 0xee, sizeof buf);
    ck_assert_int_eq(vdisk_pread(dev, buf, 30, 990), 0);
    assert_same_bytes(buf, tail_pattern + 990, 10, 990, "vdisk_pread");
    assert_zero(buf + 10, 20, 1000, "the tail");
    ck_assert_int_eq(vdisk_pread(dev, buf, 1, 1024), -EIO);
    ck_assert_uint_eq(file_size(path), 1000);

    /* The last extent covers the tail too. */
    struct vdisk_extent e;
    ck_assert_int_eq(vdisk_block_status(dev, 1000, 24, &e), 0);
    ck_assert_uint_eq(e.length, 24);

    /* Writing into the tail extends the file. */
    uint8_t w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_int_eq(vdisk_pwrite(dev, w, 8, 1010), 0);
    ck_assert_uint_eq(file_size(path), 1018);
    uint8_t *f = read_file_at(path, 0, 1018);
    assert_same_bytes(f, tail_pattern, 1000, 0, path);
    assert_zero(f + 1000, 10, 1000, "the gap");
    assert_same_bytes(f + 1010, w, 8, 1010, path);
    free(f);
    ck_assert_int_eq(vdisk_pwrite(dev, w, 8, 1016), 0);
    ck_assert_uint_eq(file_size(path), 1024);
    ck_assert_uint_eq(vdisk_get_size(dev), 1024);
    vdisk_close(dev);
    dev = open_dev(path, NULL);
    ck_assert_uint_eq(vdisk_get_size(dev), 1024);
    vdisk_close(dev);

    /* A file truncated below the size the device was opened with: the
     * missing part reads as zeroes. */
    path = tail_file("t2.raw");
    dev = open_dev(path, NULL);
    ck_assert_int_eq(truncate(path, 300), 0);
    memset(buf, 0xee, sizeof buf);
    ck_assert_int_eq(vdisk_pread(dev, buf, 1024, 0), 0);
    assert_same_bytes(buf, tail_pattern, 300, 0, "vdisk_pread");
    assert_zero(buf + 300, 724, 300, "after the end of the file");
    vdisk_close(dev);
}
END_TEST

/* Vectored reads across the end of a 1000-byte file: the kernel returns a
 * short read, and the rest of the iovec array reads as zeroes. */
static void tail_preadv_child(void *arg)
{
    const char *path = arg;
    vdisk_dev *dev;
    CHILD_CHECK(vdisk_open(&dev, path, NULL) == 0, "open: %s", vdisk_get_error());
    static const int splits[][5] = {{512, 512}, {1000, 24}, {100, 900, 1, 23}, {999, 1, 24},
                                    {24, 1000}, {1, 1, 1, 1, 1020}};
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
        uint8_t buf[1024];
        memset(buf, 0xee, sizeof buf);
        struct iovec v[5];
        int n = 0;
        size_t pos = 0;
        while (n < 5 && splits[s][n]) {
            v[n].iov_base = buf + pos;
            v[n].iov_len = (size_t)splits[s][n];
            pos += v[n].iov_len;
            n++;
        }
        int r = vdisk_preadv(dev, v, n, 0);
        CHILD_CHECK(r == 0, "split %zu: preadv: %s", s, vdisk_get_error());
        CHILD_CHECK(memcmp(buf, tail_pattern, 1000) == 0, "split %zu: wrong data", s);
        for (int i = 1000; i < 1024; i++)
            CHILD_CHECK(buf[i] == 0, "split %zu: tail byte %d is 0x%02x", s, i, buf[i]);
    }
    vdisk_close(dev);
}

START_TEST(unaligned_file_size_vectored)
{
    const char *path = tail_file("tv.raw");
    in_child("vdisk_preadv across the end of a 1000-byte file", tail_preadv_child,
             (void *)path, 60);
}
END_TEST

/* ---- Read-only devices, capabilities, allocated size ----------------------- */

START_TEST(read_only_refuses_writes)
{
    const char *path = scratch("ro.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", MiB, NULL), 0);
    vdisk_dev *dev = open_dev(path, "read-only=on");
    ck_assert_int_eq(vdisk_is_read_only(dev), 1);
    ck_assert_uint_eq(vdisk_can(dev) & VDISK_CAN_WRITE, 0);
    ck_assert_uint_eq(vdisk_can(dev) & VDISK_CAN_FLUSH, VDISK_CAN_FLUSH);
    uint8_t buf[4096] = {1, 2, 3};

    ck_assert_int_eq(vdisk_pwrite(dev, buf, 4096, 8192), -EROFS);
    ck_assert_int_eq(vdisk_get_errno(), EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pwrite: %s: write of 4096 bytes at offset "
                                            "8192 refused: the device is read-only", path));
    struct iovec v = {buf, 100};
    ck_assert_int_eq(vdisk_pwritev(dev, &v, 1, 3), -EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pwritev: %s: write of 100 bytes at offset "
                                            "3 refused: the device is read-only", path));
    ck_assert_int_eq(vdisk_discard(dev, 0, 65536), -EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_discard: %s: discard of 65536 bytes at "
                                            "offset 0 refused: the device is read-only", path));
    ck_assert_int_eq(vdisk_write_zeroes(dev, 512, 512, VDISK_ZEROES_MAY_UNMAP), -EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_write_zeroes: %s: write_zeroes of 512 bytes "
                                            "at offset 512 refused: the device is read-only",
                                            path));
    /* Reads and flushes work. */
    ck_assert_int_eq(vdisk_pread(dev, buf, 4096, 8192), 0);
    assert_zero(buf, 4096, 8192, "vdisk_pread");
    ck_assert_int_eq(vdisk_flush(dev), 0);
    ck_assert_int_eq(file_allocated(path), 4096);
    vdisk_close(dev);

    /* The read-write device has every capability of a file. */
    dev = open_dev(path, NULL);
    ck_assert_int_eq(vdisk_is_read_only(dev), 0);
    ck_assert_uint_eq(vdisk_can(dev), VDISK_CAN_WRITE | VDISK_CAN_FLUSH | VDISK_CAN_DISCARD |
                                          VDISK_CAN_WRITE_ZEROES | VDISK_CAN_ZERO_UNMAP);
    vdisk_close(dev);
}
END_TEST

START_TEST(allocated_size)
{
    vdisk_dev *dev = create_open("a.raw", 8 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);
    ck_assert_int_eq(vdisk_get_allocated_size(dev), file_allocated(path));
    ck_assert_int_eq(vdisk_get_allocated_size(dev), 4096);
    uint8_t *buf = calloc(1, 1 * MiB);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 1 * MiB, 2 * MiB), 0);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    ck_assert_int_eq(vdisk_get_allocated_size(dev), file_allocated(path));
    ck_assert_int_eq(vdisk_get_allocated_size(dev), 4096 + 1 * MiB);
    ck_assert_int_eq(vdisk_discard(dev, 2 * MiB, 512 * KiB), 0);
    ck_assert_int_eq(vdisk_get_allocated_size(dev), 4096 + 512 * KiB);
    free(buf);
    vdisk_close(dev);
}
END_TEST

static Suite *raw_suite(void)
{
    Suite *s = suite_create("raw");
    TCase *tc = tcase_create("create");
    tcase_add_test(tc, create_rounds_size_up);
    tcase_add_test(tc, create_allocates_first_block);
    suite_add_tcase(s, tc);
    tc = tcase_create("io");
    tcase_add_test(tc, odd_offsets_and_lengths);
    tcase_add_test(tc, large_offsets);
    tcase_add_test(tc, vectored_io);
    tcase_add_test(tc, more_iovecs_than_iov_max);
    tcase_add_test(tc, sync_calls_from_threads);
    tcase_add_test(tc, flush_and_cache_modes);
    suite_add_tcase(s, tc);
    tc = tcase_create("space");
    tcase_add_test(tc, discard_punches_holes);
    tcase_add_test(tc, write_zeroes);
    tcase_add_test(tc, block_status_extents);
    tcase_add_test(tc, allocated_size);
    suite_add_tcase(s, tc);
    tc = tcase_create("tail");
    tcase_add_test(tc, unaligned_file_size);
    tcase_add_test(tc, unaligned_file_size_vectored);
    suite_add_tcase(s, tc);
    tc = tcase_create("read-only");
    tcase_add_test(tc, read_only_refuses_writes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(raw_suite());
}
