/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/direct.c: cache=none (O_DIRECT) on regular files: offsets and
 * lengths that are not block aligned (read-modify-write), memory that is
 * not aligned (bounce buffers), many concurrent partial writes of the same
 * blocks from one queue and from two queues on two threads (write
 * serialisation), write zeroes and discard at unaligned ranges, and files
 * whose size is not a multiple of 512.
 *
 * Results are checked byte for byte against the file, read with plain
 * pread(2).  The scratch directory is under /var/tmp; the program is skipped
 * where the file system refuses O_DIRECT.  VDISK_ENGINE picks the engine.
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

static int open_with(vdisk_dev **dev, const char *path, const char *list)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    int r = vdisk_open(dev, path, o);
    vdisk_options_free(o);
    return r;
}

/* A file of SIZE random bytes (*MODELP), opened with cache=none. */
static vdisk_dev *direct_file(const char *name, size_t size, uint64_t seed, uint8_t **modelp,
                              const char **pathp)
{
    const char *path = scratch(name);
    uint8_t *model = malloc(size ? size : 1);
    fill_random(model, size, &seed);
    write_file(path, model, size);
    vdisk_dev *dev;
    int r = open_with(&dev, path, "cache=none");
    ck_assert_msg(r == 0, "open %s with cache=none: %s", path, vdisk_get_error());
    *modelp = model;
    *pathp = path;
    return dev;
}

/* The file holds exactly MODEL (LEN bytes). */
static void assert_file(const char *path, const uint8_t *model, size_t len)
{
    size_t flen;
    uint8_t *f = read_file(path, &flen);
    ck_assert_uint_eq(flen, len);
    assert_same_bytes(f, model, len, 0, path);
    free(f);
}

/* ---- Synchronous I/O ------------------------------------------------------ */

/* Random writes and reads of DEV; ALIGNED_MEM says whether buffers are
 * page aligned or at odd addresses. */
static void random_io(vdisk_dev *dev, const char *path, uint8_t *model, size_t size,
                      bool aligned_mem, uint64_t seed)
{
    uint8_t *mem = aligned_alloc(4096, 64 * KiB);
    uint8_t *buf = aligned_mem ? mem : mem + 1 + seed % 511;
    const size_t max = 64 * KiB - 512;
    for (int i = 0; i < 300; i++) {
        size_t len = 1 + rng_next(&seed) % (i % 10 == 0 ? max : 3000);
        uint64_t off = rng_next(&seed) % (size - len + 1);
        if (i % 4 == 0) /* block-aligned offset, odd length */
            off -= off % 512;
        fill_random(buf, len, &seed);
        ck_assert_msg(vdisk_pwrite(dev, buf, len, off) == 0, "write %" PRIu64 "+%zu: %s", off,
                      len, vdisk_get_error());
        memcpy(model + off, buf, len);
        size_t rlen = 1 + rng_next(&seed) % max;
        if (rlen > size)
            rlen = size;
        uint64_t roff = rng_next(&seed) % (size - rlen + 1);
        memset(buf, 0xee, rlen);
        ck_assert_msg(vdisk_pread(dev, buf, rlen, roff) == 0, "read %" PRIu64 "+%zu: %s", roff,
                      rlen, vdisk_get_error());
        assert_same_bytes(buf, model + roff, rlen, roff, "vdisk_pread");
        if (i % 50 == 0)
            assert_file(path, model, size);
    }
    assert_file(path, model, size);
    free(mem);
}

START_TEST(unaligned_offsets_and_lengths)
{
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("u.raw", 2 * MiB, 1, &model, &path);
    ck_assert_uint_eq(vdisk_get_size(dev), 2 * MiB);
    random_io(dev, path, model, 2 * MiB, true, 2);

    /* The edges of the device. */
    uint8_t *mem = aligned_alloc(4096, 8192);
    memset(mem, 0x5e, 8192);
    ck_assert_int_eq(vdisk_pwrite(dev, mem, 1, 0), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, mem, 3, 2 * MiB - 3), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, mem, 513, 2 * MiB - 513), 0);
    memset(model, 0x5e, 1);
    memset(model + 2 * MiB - 513, 0x5e, 513);
    assert_file(path, model, 2 * MiB);
    ck_assert_int_eq(vdisk_pread(dev, mem, 7, 2 * MiB - 7), 0);
    assert_same_bytes(mem, model + 2 * MiB - 7, 7, 2 * MiB - 7, "vdisk_pread");
    free(mem);
    vdisk_close(dev);
    free(model);
}
END_TEST

START_TEST(unaligned_memory)
{
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("m.raw", 2 * MiB, 3, &model, &path);
    random_io(dev, path, model, 2 * MiB, false, 4);

    /* Aligned offsets and lengths, memory at odd addresses: single buffers
     * and vectors whose pieces are not block multiples. */
    uint8_t *mem = malloc(64 * KiB + 16);
    uint64_t seed = 5;
    for (int i = 0; i < 16; i++) {
        uint8_t *b = mem + 1 + i % 15;
        uint64_t off = (uint64_t)(rng_next(&seed) % 4000) * 512;
        size_t len = (size_t)(2 + rng_next(&seed) % 127) * 512;
        fill_random(b, len, &seed);
        if (i % 2) {
            ck_assert_int_eq(vdisk_pwrite(dev, b, len, off), 0);
        } else {
            struct iovec v[3] = {{b, 100}, {b + 100, len - 612}, {b + len - 512, 512}};
            ck_assert_msg(vdisk_pwritev(dev, v, 3, off) == 0, "%s", vdisk_get_error());
        }
        memcpy(model + off, b, len);
        memset(b, 0, len);
        struct iovec v[2] = {{b, 7}, {b + 7, len - 7}};
        ck_assert_int_eq(vdisk_preadv(dev, v, 2, off), 0);
        assert_same_bytes(b, model + off, len, off, "vdisk_preadv");
    }
    assert_file(path, model, 2 * MiB);
    free(mem);
    vdisk_close(dev);
    free(model);
}
END_TEST

START_TEST(directsync_and_aligned_io)
{
    const char *path = scratch("s.raw");
    uint8_t *model = malloc(1 * MiB);
    uint64_t seed = 6;
    fill_random(model, 1 * MiB, &seed);
    write_file(path, model, 1 * MiB);
    vdisk_dev *dev;
    int r = open_with(&dev, path, "cache=directsync");
    ck_assert_msg(r == 0, "%s", vdisk_get_error());
    uint8_t *mem = aligned_alloc(4096, 64 * KiB);
    for (int i = 0; i < 32; i++) {
        uint64_t off = (uint64_t)(rng_next(&seed) % 240) * 4096;
        size_t len = (size_t)(1 + rng_next(&seed) % 16) * 4096;
        fill_random(mem, len, &seed);
        ck_assert_int_eq(vdisk_pwrite(dev, mem, len, off), 0);
        memcpy(model + off, mem, len);
        ck_assert_int_eq(vdisk_pread(dev, mem, 4096, off), 0);
        assert_same_bytes(mem, model + off, 4096, off, "vdisk_pread");
    }
    ck_assert_int_eq(vdisk_pwrite(dev, mem, 10, 4095), 0);
    memcpy(model + 4095, mem, 10);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    assert_file(path, model, 1 * MiB);
    free(mem);
    vdisk_close(dev);
    free(model);
}
END_TEST

/* ---- Concurrent partial writes of the same blocks ------------------------- */

struct piece {
    uint64_t off;
    size_t len;
    uint8_t *data;
    int result, done;
};

static void piece_cb(void *user, int result)
{
    struct piece *p = user;
    p->result = result;
    p->done++;
}

START_TEST(concurrent_partial_writes_one_queue)
{
    /* 16 blocks of 4 KiB, each cut in 64 pieces of 64 bytes; 7 more blocks
     * get 512-byte pieces at offsets 256 + 512 * i; 2 blocks get 100-byte
     * pieces that straddle block boundaries.  Every piece is in flight at
     * the same time, in random order; every byte must survive. */
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("c.raw", 1 * MiB, 7, &model, &path);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 64), 0);
    enum { MAXP = 16 * 64 + 7 * 7 + 100 };
    struct piece *p = calloc(MAXP, sizeof *p);
    uint8_t *data = malloc(128 * KiB);
    uint64_t seed = 8;

    for (int round = 0; round < 3; round++) {
        unsigned n = 0;
        uint64_t base = (uint64_t)round * 256 * KiB;
        for (unsigned b = 0; b < 16; b++)
            for (unsigned i = 0; i < 64; i++, n++)
                p[n] = (struct piece){base + b * 4096 + i * 64, 64, NULL, 0, 0};
        for (unsigned b = 0; b < 7; b++)
            for (unsigned i = 0; i < 7; i++, n++)
                p[n] = (struct piece){base + 64 * KiB + b * 4096 + 256 + i * 512, 512, NULL, 0,
                                      0};
        for (unsigned i = 0; i < 100; i++, n++)
            p[n] = (struct piece){base + 128 * KiB + 50 + i * 100, 100, NULL, 0, 0};
        ck_assert_uint_eq(n, MAXP);
        size_t pos = 0;
        for (unsigned i = 0; i < n; i++) {
            p[i].data = data + pos;
            pos += p[i].len;
            fill_random(p[i].data, p[i].len, &seed);
            memcpy(model + p[i].off, p[i].data, p[i].len);
        }
        unsigned *order = permutation(n, &seed);
        for (unsigned i = 0; i < n; i++) {
            struct piece *x = &p[order[i]];
            struct iovec v = {x->data, x->len};
            ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, x->off, 0, piece_cb, x), 0);
        }
        ck_assert_uint_eq(vdisk_queue_in_flight(q), n);
        ck_assert_int_eq(vdisk_queue_drain(q), (int)n);
        for (unsigned i = 0; i < n; i++) {
            ck_assert_int_eq(p[i].done, 1);
            ck_assert_int_eq(p[i].result, 0);
        }
        free(order);
        assert_file(path, model, 1 * MiB);
    }

    /* Reads of odd pieces, all in flight together. */
    uint8_t *rb = malloc(64 * KiB);
    size_t pos = 0;
    for (unsigned i = 0; i < 200; i++) {
        size_t len = 1 + rng_next(&seed) % 300;
        p[i] = (struct piece){rng_next(&seed) % (1 * MiB - len), len, rb + pos, 0, 0};
        pos += len;
        struct iovec v = {p[i].data, len};
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, p[i].off, 0, piece_cb, &p[i]), 0);
    }
    ck_assert_int_eq(vdisk_queue_drain(q), 200);
    for (unsigned i = 0; i < 200; i++) {
        ck_assert_int_eq(p[i].result, 0);
        assert_same_bytes(p[i].data, model + p[i].off, p[i].len, p[i].off, "aio read");
    }
    free(rb);
    vdisk_queue_free(q);
    vdisk_close(dev);
    free(p);
    free(data);
    free(model);
}
END_TEST

struct writer {
    vdisk_dev *dev;
    unsigned parity;   /* writes the pieces i with i % 2 == parity */
    uint8_t *model;
    uint64_t seed;
    int errors;
};

static void *writer_thread(void *arg)
{
    struct writer *w = arg;
    vdisk_queue *q;
    if (vdisk_queue_new(&q, w->dev, 32) < 0) {
        w->errors++;
        return NULL;
    }
    enum { BLOCKS = 32, PER = 16, LEN = 4096 / PER };
    struct piece *p = calloc(BLOCKS * PER / 2, sizeof *p);
    uint8_t *data = malloc(BLOCKS * 4096 / 2);
    for (int round = 0; round < 4; round++) {
        unsigned n = 0;
        for (unsigned b = 0; b < BLOCKS; b++) {
            for (unsigned i = w->parity; i < PER; i += 2, n++) {
                p[n] = (struct piece){(uint64_t)b * 4096 + i * LEN + 3, LEN,
                                      data + n * LEN, 0, 0};
                fill_random(p[n].data, LEN, &w->seed);
                memcpy(w->model + p[n].off, p[n].data, LEN);
                struct iovec v = {p[n].data, LEN};
                if (vdisk_aio_pwritev(q, &v, 1, p[n].off, 0, piece_cb, &p[n]) < 0)
                    w->errors++;
            }
        }
        if (vdisk_queue_drain(q) != (int)n)
            w->errors++;
        for (unsigned i = 0; i < n; i++)
            if (p[i].done != 1 || p[i].result)
                w->errors++;
    }
    free(p);
    free(data);
    vdisk_queue_free(q);
    return NULL;
}

START_TEST(concurrent_partial_writes_two_queues)
{
    /* Two threads, each with its own queue, write interleaved 256-byte
     * pieces (at unaligned offsets) of the same 32 blocks. */
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("t.raw", 256 * KiB, 9, &model, &path);
    struct writer w[2] = {{dev, 0, model, 10, 0}, {dev, 1, model, 11, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].errors, 0);
    }
    vdisk_close(dev);
    assert_file(path, model, 256 * KiB);
    free(model);
}
END_TEST

/* ---- Write zeroes and discard ---------------------------------------------- */

struct zero_case {
    const char *path;
    uint8_t *model;
    size_t size;
};

static void write_zeroes_child(void *arg)
{
    struct zero_case *z = arg;
    vdisk_dev *dev;
    CHILD_CHECK(open_with(&dev, z->path, "cache=none") == 0, "open: %s", vdisk_get_error());
    static const struct { uint64_t off, len; unsigned flags; } c[] = {
        {64 * KiB, 64 * KiB, 0},                      /* aligned */
        {128 * KiB, 64 * KiB, VDISK_ZEROES_MAY_UNMAP},
        {1000, 10000, 0},                             /* unaligned both ends */
        {20000, 3000, VDISK_ZEROES_MAY_UNMAP},
        {300 * KiB + 100, 200, 0},                    /* inside one block */
        {400 * KiB, 700, 0},                          /* aligned start only */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int r = vdisk_write_zeroes(dev, c[i].off, c[i].len, c[i].flags);
        CHILD_CHECK(r == 0, "write_zeroes %" PRIu64 "+%" PRIu64 ": %s", c[i].off, c[i].len,
                    vdisk_get_error());
        memset(z->model + c[i].off, 0, c[i].len);
    }
    vdisk_close(dev);
    size_t flen;
    int fd = open(z->path, O_RDONLY);
    CHILD_CHECK(fd >= 0, "open %s", z->path);
    uint8_t *f = malloc(z->size);
    flen = (size_t)pread(fd, f, z->size, 0);
    close(fd);
    CHILD_CHECK(flen == z->size, "short file");
    for (size_t i = 0; i < z->size; i++)
        CHILD_CHECK(f[i] == z->model[i], "byte %zu is 0x%02x, expected 0x%02x", i, f[i],
                    z->model[i]);
    free(f);
}

START_TEST(write_zeroes_unaligned)
{
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("z.raw", 1 * MiB, 12, &model, &path);
    vdisk_close(dev);
    struct zero_case z = {path, model, 1 * MiB};
    in_child("vdisk_write_zeroes with cache=none", write_zeroes_child, &z, 30);
    free(model);
}
END_TEST

START_TEST(discard_unaligned)
{
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("d.raw", 1 * MiB, 13, &model, &path);
    ck_assert_int_eq(vdisk_discard(dev, 1000, 100000), 0);
    ck_assert_int_eq(vdisk_discard(dev, 200 * KiB + 1, 10), 0);
    ck_assert_int_eq(vdisk_discard(dev, 512 * KiB, 64 * KiB), 0);
    vdisk_close(dev);
    size_t flen;
    uint8_t *f = read_file(path, &flen);
    ck_assert_uint_eq(flen, 1 * MiB);
    for (size_t i = 0; i < flen; i++) {
        bool inside = (i >= 1000 && i < 101000) || (i >= 200 * KiB + 1 && i < 200 * KiB + 11) ||
                      (i >= 512 * KiB && i < 576 * KiB);
        if (inside)
            ck_assert_msg(f[i] == model[i] || f[i] == 0,
                          "discarded byte %zu is 0x%02x: neither old (0x%02x) nor 0", i, f[i],
                          model[i]);
        else
            ck_assert_msg(f[i] == model[i], "byte %zu next to a discard is 0x%02x, expected "
                          "0x%02x", i, f[i], model[i]);
    }
    /* The whole blocks inside were freed. */
    int fd = open(path, O_RDONLY);
    ck_assert_int_eq(lseek(fd, 512 * KiB, SEEK_HOLE), 512 * KiB);
    close(fd);
    free(f);
    free(model);
}
END_TEST

/* ---- Files whose size is not a multiple of 512 ------------------------------ */

START_TEST(unaligned_file_size)
{
    uint8_t *model;
    const char *path;
    vdisk_dev *dev = direct_file("tail.raw", 1000, 14, &model, &path);
    ck_assert_uint_eq(vdisk_get_size(dev), 1024);
    uint8_t *mem = aligned_alloc(4096, 4096);
    memset(mem, 0xee, 4096);
    ck_assert_int_eq(vdisk_pread(dev, mem, 1024, 0), 0);
    assert_same_bytes(mem, model, 1000, 0, "vdisk_pread");
    for (int i = 1000; i < 1024; i++)
        ck_assert_msg(mem[i] == 0, "tail byte %d is 0x%02x", i, mem[i]);
    memset(mem, 0xee, 4096);
    ck_assert_int_eq(vdisk_pread(dev, mem, 20, 995), 0);
    assert_same_bytes(mem, model + 995, 5, 995, "vdisk_pread");
    for (int i = 5; i < 20; i++)
        ck_assert_uint_eq(mem[i], 0);

    /* Writing into the tail extends the file. */
    uint8_t w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_msg(vdisk_pwrite(dev, w, 8, 1010) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    size_t flen;
    uint8_t *f = read_file(path, &flen);
    ck_assert_uint_ge(flen, 1018);
    ck_assert_uint_le(flen, 1024);
    assert_same_bytes(f, model, 1000, 0, path);
    for (size_t i = 1000; i < flen; i++)
        ck_assert_uint_eq(f[i], i >= 1010 && i < 1018 ? w[i - 1010] : 0);
    free(f);
    free(mem);
    free(model);
}
END_TEST

static Suite *direct_suite(void)
{
    Suite *s = suite_create("direct");
    TCase *tc = tcase_create("sync");
    tcase_add_test(tc, unaligned_offsets_and_lengths);
    tcase_add_test(tc, unaligned_memory);
    tcase_add_test(tc, directsync_and_aligned_io);
    tcase_add_test(tc, unaligned_file_size);
    suite_add_tcase(s, tc);
    tc = tcase_create("concurrent");
    tcase_add_test(tc, concurrent_partial_writes_one_queue);
    tcase_add_test(tc, concurrent_partial_writes_two_queues);
    suite_add_tcase(s, tc);
    tc = tcase_create("space");
    tcase_add_test(tc, discard_unaligned);
    tcase_add_test(tc, write_zeroes_unaligned);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Skip where the file system has no O_DIRECT. */
    const char *path = scratch("probe.raw");
    if (vdisk_create(path, "raw", 4096, NULL) < 0) {
        fprintf(stderr, "vdisk_create: %s\n", vdisk_get_error());
        return 1;
    }
    int fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0 && errno == EINVAL)
        skip_test("%s does not support O_DIRECT", scratch_dir());
    if (fd >= 0)
        close(fd);
    vdisk_options *o;
    vdisk_options_new(&o);
    vdisk_options_set(o, "cache", "none");
    vdisk_dev *dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    if (r < 0) {
        fprintf(stderr, "vdisk_open with cache=none: %s\n", vdisk_get_error());
        return 1;
    }
    vdisk_close(dev);
    return run_suite(direct_suite());
}
