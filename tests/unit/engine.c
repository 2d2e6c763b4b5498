/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/engine.c: the asynchronous queue (vdisk/queue.h) on one I/O
 * engine, TEST_ENGINE ("uring" or "threads", given to vdisk_open as the
 * "engine" option; CMake builds this file once for each).
 *
 * Hundreds of requests in flight checked against an in-memory model,
 * callbacks that start requests, the pollable fd, reaping with timeouts,
 * requests refused up front, I/O errors in callbacks, drain, freeing a
 * queue with requests in flight, registered buffers, and several queues on
 * one device.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"
#include "internal.h" /* engine_uring_submit_calls */

#ifndef TEST_ENGINE
#define TEST_ENGINE "threads"
#endif

#define KiB 1024ull
#define MiB (1024 * KiB)
#define BLK 4096

/* How long a poll may wait for something that must happen: only a hang
 * detector, never a performance check. */
#define HANG_MS 10000

static const char *engine_name(void)
{
    return strcmp(TEST_ENGINE, "uring") == 0 ? "io_uring" : "threads";
}

/* ---- Helpers -------------------------------------------------------------- */

/* Opens PATH on the engine under test, with the extra options LIST. */
static int open_engine(vdisk_dev **dev, const char *path, const char *list)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "engine", TEST_ENGINE), 0);
    if (list)
        ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    int r = vdisk_open(dev, path, o);
    vdisk_options_free(o);
    return r;
}

static vdisk_dev *new_dev(const char *name, uint64_t size, const char *list)
{
    const char *path = scratch(name);
    ck_assert_msg(vdisk_create(path, "raw", size, NULL) == 0, "%s", vdisk_get_error());
    vdisk_dev *dev;
    int r = open_engine(&dev, path, list);
    ck_assert_msg(r == 0, "open %s: %s", path, vdisk_get_error());
    ck_assert_str_eq(vdisk_get_engine(dev), engine_name());
    return dev;
}

/* The device's file name, in storage that outlives the device. */
static const char *name_of(vdisk_dev *dev)
{
    static char names[4][512];
    static int next;
    char *b = names[next++ % 4];
    snprintf(b, sizeof names[0], "%s", vdisk_get_filename(dev));
    return b;
}

static vdisk_queue *new_queue(vdisk_dev *dev, unsigned depth)
{
    vdisk_queue *q = NULL;
    ck_assert_msg(vdisk_queue_new(&q, dev, depth) == 0, "%s", vdisk_get_error());
    ck_assert_ptr_nonnull(q);
    ck_assert_str_eq(vdisk_queue_engine(q), engine_name());
    return q;
}

static void assert_file(const char *path, const uint8_t *model, size_t len)
{
    size_t flen;
    uint8_t *f = read_file(path, &flen);
    ck_assert_uint_ge(flen, len);
    assert_same_bytes(f, model, len, 0, path);
    free(f);
}

/* Polls FD for POLLIN for at most MS milliseconds: 1 readable, 0 not. */
static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    ck_assert_int_ge(r, 0);
    return r > 0 && (p.revents & POLLIN);
}

/* Set while a vdisk_aio_*() call runs: callbacks must never see it. */
static bool in_aio_call;
static int callbacks_inside_aio;

/* A request of the tests: where, what, and what happened. */
struct req {
    int result;
    int done;          /* times the callback ran */
    uint64_t off;
    uint8_t *buf;
    size_t len;
};

static void req_cb(void *user, int result)
{
    struct req *r = user;
    if (in_aio_call)
        callbacks_inside_aio++;
    r->result = result;
    r->done++;
}

static int aio_write(vdisk_queue *q, struct req *r, unsigned flags)
{
    struct iovec v = {r->buf, r->len};
    in_aio_call = true;
    int ret = vdisk_aio_pwritev(q, &v, 1, r->off, flags, req_cb, r);
    in_aio_call = false;
    return ret;
}

static int aio_read(vdisk_queue *q, struct req *r)
{
    struct iovec v = {r->buf, r->len};
    in_aio_call = true;
    int ret = vdisk_aio_preadv(q, &v, 1, r->off, 0, req_cb, r);
    in_aio_call = false;
    return ret;
}

/* Reaps until nothing is in flight (callbacks may start more). */
static void drain_all(vdisk_queue *q)
{
    while (vdisk_queue_in_flight(q)) {
        int r = vdisk_queue_drain(q);
        ck_assert_msg(r >= 0, "%s", vdisk_get_error());
    }
}

/* ---- Names ---------------------------------------------------------------- */

START_TEST(engine_names)
{
    vdisk_dev *dev = new_dev("n.raw", MiB, NULL);
    vdisk_queue *a = new_queue(dev, 1), *b = new_queue(dev, 4096);
    ck_assert_str_eq(vdisk_queue_engine(a), vdisk_get_engine(dev));
    ck_assert_str_eq(vdisk_queue_engine(b), engine_name());
    ck_assert_uint_eq(vdisk_queue_in_flight(a), 0);
    vdisk_queue_free(a);
    vdisk_queue_free(b);
    vdisk_close(dev);
}
END_TEST

/* ---- Many requests against a model ---------------------------------------- */

START_TEST(random_writes_then_reads)
{
    const unsigned nblocks = 2048; /* 8 MiB */
    vdisk_dev *dev = new_dev("m.raw", (uint64_t)nblocks * BLK, NULL);
    const char *path = name_of(dev);
    vdisk_queue *q = new_queue(dev, 0);
    uint8_t *model = calloc(nblocks, BLK);
    uint8_t *bufs = malloc((size_t)nblocks * BLK);
    struct req *reqs = calloc(nblocks, sizeof *reqs);
    uint64_t seed = 0xabcdef;
    callbacks_inside_aio = 0;

    for (int round = 0; round < 4; round++) {
        /* 512 writes to distinct random blocks, all started before any is
         * reaped; some as two iovecs. */
        unsigned *perm = permutation(nblocks, &seed);
        const unsigned n = 512;
        for (unsigned i = 0; i < n; i++) {
            struct req *r = &reqs[i];
            *r = (struct req){.off = (uint64_t)perm[i] * BLK, .buf = bufs + (size_t)i * BLK,
                              .len = BLK};
            fill_random(r->buf, BLK, &seed);
            memcpy(model + r->off, r->buf, BLK);
            if (i % 5 == 0) {
                struct iovec v[2] = {{r->buf, 1000}, {r->buf + 1000, BLK - 1000}};
                in_aio_call = true;
                ck_assert_int_eq(vdisk_aio_pwritev(q, v, 2, r->off, 0, req_cb, r), 0);
                in_aio_call = false;
            } else {
                ck_assert_msg(aio_write(q, r, i % 7 == 0 ? VDISK_REQ_FUA : 0) == 0, "%s",
                              vdisk_get_error());
            }
        }
        ck_assert_uint_eq(vdisk_queue_in_flight(q), n);
        ck_assert_int_ge(vdisk_queue_submit(q), 0);
        ck_assert_int_eq(vdisk_queue_drain(q), (int)n);
        ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
        for (unsigned i = 0; i < n; i++) {
            ck_assert_int_eq(reqs[i].done, 1);
            ck_assert_int_eq(reqs[i].result, 0);
        }
        free(perm);
    }
    assert_file(path, model, (size_t)nblocks * BLK);

    /* Read every block back, 2048 requests in flight. */
    memset(bufs, 0xee, (size_t)nblocks * BLK);
    unsigned *perm = permutation(nblocks, &seed);
    for (unsigned i = 0; i < nblocks; i++) {
        reqs[i] = (struct req){.off = (uint64_t)perm[i] * BLK, .buf = bufs + (size_t)i * BLK,
                               .len = BLK};
        ck_assert_int_eq(aio_read(q, &reqs[i]), 0);
    }
    ck_assert_uint_eq(vdisk_queue_in_flight(q), nblocks);
    int total = 0;
    while (total < (int)nblocks) {
        int r = vdisk_queue_reap(q, 1, -1);
        ck_assert_int_ge(r, 1);
        total += r;
    }
    ck_assert_int_eq(total, nblocks);
    for (unsigned i = 0; i < nblocks; i++) {
        ck_assert_int_eq(reqs[i].done, 1);
        ck_assert_int_eq(reqs[i].result, 0);
        assert_same_bytes(reqs[i].buf, model + reqs[i].off, BLK, reqs[i].off, "aio read");
    }
    ck_assert_int_eq(callbacks_inside_aio, 0);
    free(perm);
    free(reqs);
    free(bufs);
    free(model);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

/* ---- Callbacks that start requests ----------------------------------------- */

struct chain {
    vdisk_queue *q;
    uint8_t *model;
    uint64_t seed;
    unsigned first_block, nblocks; /* the chain's own blocks */
    unsigned step, steps;
    bool reading;
    uint8_t wbuf[BLK], rbuf[BLK];
    uint64_t off;
    int errors, mismatches, finished;
};

static void chain_next(struct chain *c);

static void chain_cb(void *user, int result)
{
    struct chain *c = user;
    if (in_aio_call)
        callbacks_inside_aio++;
    if (result < 0)
        c->errors++;
    if (c->reading) {
        if (memcmp(c->rbuf, c->model + c->off, BLK))
            c->mismatches++;
        c->step++;
    }
    c->reading = !c->reading;
    chain_next(c);
}

static void chain_next(struct chain *c)
{
    if (c->step == c->steps) {
        c->finished++;
        return;
    }
    int r;
    in_aio_call = true;
    if (!c->reading) {
        c->off = (uint64_t)(c->first_block + rng_next(&c->seed) % c->nblocks) * BLK;
        fill_random(c->wbuf, BLK, &c->seed);
        memcpy(c->model + c->off, c->wbuf, BLK);
        struct iovec v = {c->wbuf, BLK};
        r = vdisk_aio_pwritev(c->q, &v, 1, c->off, 0, chain_cb, c);
    } else {
        memset(c->rbuf, 0, BLK);
        struct iovec v = {c->rbuf, BLK};
        r = vdisk_aio_preadv(c->q, &v, 1, c->off, 0, chain_cb, c);
    }
    in_aio_call = false;
    if (r < 0)
        c->errors++;
}

START_TEST(callbacks_start_requests)
{
    enum { CHAINS = 16, STEPS = 100 };
    vdisk_dev *dev = new_dev("c.raw", CHAINS * 16 * BLK, NULL);
    const char *path = name_of(dev);
    /* A depth smaller than the number of chains: requests wait their turn. */
    vdisk_queue *q = new_queue(dev, 4);
    uint8_t *model = calloc(CHAINS * 16, BLK);
    struct chain *c = calloc(CHAINS, sizeof *c);
    callbacks_inside_aio = 0;
    for (unsigned i = 0; i < CHAINS; i++) {
        c[i] = (struct chain){.q = q, .model = model, .seed = i + 1, .first_block = i * 16,
                              .nblocks = 16, .steps = STEPS};
        chain_next(&c[i]);
    }
    ck_assert_uint_eq(vdisk_queue_in_flight(q), CHAINS);
    drain_all(q);
    for (unsigned i = 0; i < CHAINS; i++) {
        ck_assert_int_eq(c[i].errors, 0);
        ck_assert_int_eq(c[i].mismatches, 0);
        ck_assert_int_eq(c[i].finished, 1);
        ck_assert_uint_eq(c[i].step, STEPS);
    }
    ck_assert_int_eq(callbacks_inside_aio, 0);
    vdisk_queue_free(q);
    vdisk_close(dev);
    assert_file(path, model, CHAINS * 16 * BLK);
    free(c);
    free(model);
}
END_TEST

/* A reader that keeps DEPTH reads in flight, starting each new one from a
 * completion callback followed by vdisk_queue_submit(), as an event loop
 * or vdisk bench does. */
struct relay {
    vdisk_queue *q;
    uint8_t *buf;
    unsigned left, done, errors;
};

static void relay_cb(void *user, int result);

static void relay_start(struct relay *r)
{
    struct iovec v = {r->buf, BLK};
    in_aio_call = true;
    int ret = vdisk_aio_preadv(r->q, &v, 1, (uint64_t)(r->left % 64) * BLK, 0, relay_cb, r);
    ck_assert_int_ge(vdisk_queue_submit(r->q), 0);
    in_aio_call = false;
    if (ret < 0)
        r->errors++;
    else
        r->left--;
}

static void relay_cb(void *user, int result)
{
    struct relay *r = user;
    if (in_aio_call)
        callbacks_inside_aio++;
    if (result < 0)
        r->errors++;
    r->done++;
    if (r->left)
        relay_start(r);
}

/*
 * The requests that the callbacks of one reap start reach the kernel
 * together, in one io_uring_enter when the batch of callbacks has run, not
 * in one each (the file's data is in the page cache, so a batch of reads
 * completes at once).
 */
START_TEST(callbacks_submit_once_per_batch)
{
    enum { DEPTH = 32, TOTAL = 2048 };
    vdisk_dev *dev = new_dev("batch.raw", 64 * BLK, NULL);
    vdisk_queue *q = new_queue(dev, DEPTH);
    uint8_t *buf = calloc(1, BLK);
    struct relay r = {.q = q, .buf = buf, .left = TOTAL};
    callbacks_inside_aio = 0;
    unsigned long before = engine_uring_submit_calls(q);
    for (unsigned i = 0; i < DEPTH; i++)
        relay_start(&r);
    drain_all(q);
    unsigned long calls = engine_uring_submit_calls(q) - before;
    ck_assert_uint_eq(r.done, TOTAL);
    ck_assert_uint_eq(r.errors, 0);
    ck_assert_int_eq(callbacks_inside_aio, 0);
    if (strcmp(TEST_ENGINE, "uring") == 0)
        ck_assert_msg(calls <= TOTAL / 4,
                      "%lu io_uring_enter calls handed %d reads to the kernel "
                      "(expected one per batch of callbacks, at most %d)",
                      calls, TOTAL, TOTAL / 4);
    vdisk_queue_free(q);
    vdisk_close(dev);
    free(buf);
}
END_TEST

/* ---- The pollable fd ------------------------------------------------------- */

START_TEST(fd_readable_on_completion)
{
    vdisk_dev *dev = new_dev("f.raw", 4 * MiB, NULL);
    vdisk_queue *q = new_queue(dev, 8);
    int fd = vdisk_queue_get_fd(q);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(vdisk_queue_get_fd(q), fd);
    ck_assert_int_eq(readable(fd, 0), 0);

    /* One request: the fd becomes readable, reap(0, 0) completes it and
     * clears the fd. */
    uint8_t buf[BLK];
    memset(buf, 0x11, sizeof buf);
    struct req r = {.off = 8192, .buf = buf, .len = BLK};
    for (int i = 0; i < 3; i++) {
        r.done = 0;
        ck_assert_int_eq(aio_write(q, &r, 0), 0);
        ck_assert_int_ge(vdisk_queue_submit(q), 0);
        ck_assert_msg(readable(fd, HANG_MS), "the fd did not become readable with a request "
                                             "in flight");
        ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 1);
        ck_assert_int_eq(r.done, 1);
        ck_assert_int_eq(r.result, 0);
        ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
        ck_assert_int_eq(readable(fd, 0), 0);
    }

    vdisk_queue_free(q);

    /* Many requests (fewer than the depth), an event loop: poll, reap
     * without waiting. */
    enum { N = 200 };
    q = new_queue(dev, 256);
    fd = vdisk_queue_get_fd(q);
    ck_assert_int_ge(fd, 0);
    struct req *reqs = calloc(N, sizeof *reqs);
    uint8_t *bufs = malloc(N * BLK);
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct req){.off = (uint64_t)i * BLK, .buf = bufs + i * BLK, .len = BLK};
        ck_assert_int_eq(aio_write(q, &reqs[i], 0), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    int total = 0;
    while (total < N) {
        ck_assert_msg(readable(fd, HANG_MS), "the fd did not become readable with %u requests "
                                             "in flight", vdisk_queue_in_flight(q));
        int n = vdisk_queue_reap(q, 0, 0);
        ck_assert_int_ge(n, 0);
        total += n;
    }
    ck_assert_int_eq(total, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(reqs[i].done, 1);
    free(reqs);
    free(bufs);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

START_TEST(fd_event_loop_beyond_depth)
{
    /* More requests than the queue's depth: the excess waits inside the
     * queue and is started as earlier ones complete.  An event loop that
     * only polls the fd and reaps without waiting still sees every one of
     * them complete. */
    vdisk_dev *dev = new_dev("f.raw", 1 * MiB, NULL);
    vdisk_queue *q = new_queue(dev, 1);
    int fd = vdisk_queue_get_fd(q);
    ck_assert_int_ge(fd, 0);
    enum { N = 3 };
    static uint8_t bufs[N][BLK];
    struct req reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct req){.off = (uint64_t)i * BLK, .buf = bufs[i], .len = BLK};
        ck_assert_int_eq(aio_write(q, &reqs[i], 0), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    int total = 0;
    while (total < N) {
        ck_assert_msg(readable(fd, HANG_MS), "the fd did not become readable with %u requests "
                      "in flight (%d completed)", vdisk_queue_in_flight(q), total);
        int n = vdisk_queue_reap(q, 0, 0);
        ck_assert_int_ge(n, 0);
        total += n;
    }
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(reqs[i].done, 1);
        ck_assert_int_eq(reqs[i].result, 0);
    }
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

START_TEST(fd_readable_for_requests_without_io)
{
    /* Requests that need no I/O (zero length, a flush with cache=unsafe)
     * complete like the others: the fd says so. */
    vdisk_dev *dev = new_dev("f.raw", 1 * MiB, "cache=unsafe");
    vdisk_queue *q = new_queue(dev, 8);
    int fd = vdisk_queue_get_fd(q);
    ck_assert_int_ge(fd, 0);
    struct req r[4] = {{0}};
    uint8_t b;
    struct iovec v = {&b, 0};

    ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 4096, 0, req_cb, &r[0]), 0);
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    ck_assert_msg(readable(fd, HANG_MS), "zero-length read: the fd did not become readable");
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 1);
    ck_assert_int_eq(r[0].done, 1);
    ck_assert_int_eq(r[0].result, 0);

    ck_assert_int_eq(vdisk_aio_flush(q, req_cb, &r[1]), 0);
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    ck_assert_msg(readable(fd, HANG_MS), "flush with cache=unsafe: the fd did not become "
                                         "readable");
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 1);
    ck_assert_int_eq(r[1].done, 1);

    ck_assert_int_eq(vdisk_aio_discard(q, 0, 0, req_cb, &r[2]), 0);
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, 512, 0, 0, req_cb, &r[3]), 0);
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    ck_assert_msg(readable(fd, HANG_MS), "zero-length discard: the fd did not become readable");
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 2);
    ck_assert_int_eq(r[2].done, 1);
    ck_assert_int_eq(r[3].done, 1);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

START_TEST(fd_asked_for_after_completion)
{
    /* The fd is asked for only when a completion is already waiting: it
     * must show it. */
    vdisk_dev *dev = new_dev("f.raw", 1 * MiB, NULL);
    vdisk_queue *q = new_queue(dev, 8);
    uint8_t buf[BLK] = {1};
    struct req r = {.off = 0, .buf = buf, .len = BLK};
    ck_assert_int_eq(aio_write(q, &r, 0), 0);
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    /* Give the kernel time to finish the write (if it is slower, the test
     * checks less, but cannot fail because of it). */
    usleep(200 * 1000);
    int fd = vdisk_queue_get_fd(q);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(readable(fd, HANG_MS), "the fd did not become readable for a completion "
                                         "that was waiting when it was asked for");
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 1);
    ck_assert_int_eq(r.done, 1);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

/* ---- Reaping with a timeout ------------------------------------------------ */

START_TEST(reap_timeout_returns)
{
    vdisk_dev *dev = new_dev("t.raw", 1 * MiB, NULL);
    vdisk_queue *q = new_queue(dev, 8);
    /* Nothing in flight: nothing to wait for. */
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 0);
    ck_assert_int_eq(vdisk_queue_reap(q, 1, 50), 0);
    ck_assert_int_eq(vdisk_queue_reap(q, 5, -1), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 0);
    vdisk_queue_free(q);
    vdisk_close(dev);

    /* A request that cannot complete yet: on a cache=none device, a partial
     * write of a block waits for another queue's partial write of the same
     * block, which completes only when that queue is reaped. */
    const char *path = scratch("dt.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", 1 * MiB, NULL), 0);
    int err = open_engine(&dev, path, "cache=none");
    if (err == -EINVAL)
        SKIP_CASE("its cache=none half: O_DIRECT is not supported here (%s)", vdisk_get_error());
    ck_assert_msg(err == 0, "%s", vdisk_get_error());
    vdisk_queue *a = new_queue(dev, 8), *b = new_queue(dev, 8);
    int fdb = vdisk_queue_get_fd(b);
    uint8_t x[100], y[100];
    memset(x, 0x61, sizeof x);
    memset(y, 0x62, sizeof y);
    struct req ra = {.off = 1000, .buf = x, .len = 100};
    struct req rb = {.off = 1200, .buf = y, .len = 100};
    ck_assert_int_eq(aio_write(a, &ra, 0), 0);
    ck_assert_int_ge(vdisk_queue_submit(a), 0);
    ck_assert_int_eq(aio_write(b, &rb, 0), 0);
    ck_assert_int_eq(vdisk_queue_reap(b, 1, 100), 0);
    ck_assert_int_eq(vdisk_queue_reap(b, 0, 0), 0);
    ck_assert_uint_eq(vdisk_queue_in_flight(b), 1);
    ck_assert_int_eq(rb.done, 0);

    /* Queue A completes its write; B's can go on, and B's fd says so. */
    ck_assert_int_eq(vdisk_queue_drain(a), 1);
    ck_assert_int_eq(ra.done, 1);
    ck_assert_int_eq(ra.result, 0);
    ck_assert_msg(readable(fdb, HANG_MS), "the fd of the waiting queue did not become readable");
    while (vdisk_queue_in_flight(b))
        ck_assert_int_ge(vdisk_queue_reap(b, 1, HANG_MS), 0);
    ck_assert_int_eq(rb.done, 1);
    ck_assert_int_eq(rb.result, 0);
    vdisk_queue_free(a);
    vdisk_queue_free(b);
    vdisk_close(dev);
    uint8_t *f = read_file(path, NULL);
    for (int i = 0; i < 2048; i++) {
        uint8_t want = i >= 1000 && i < 1100 ? 0x61 : i >= 1200 && i < 1300 ? 0x62 : 0;
        ck_assert_msg(f[i] == want, "byte %d is 0x%02x, expected 0x%02x", i, f[i], want);
    }
    free(f);
}
END_TEST

/* ---- Requests refused up front --------------------------------------------- */

START_TEST(refused_requests_never_call_back)
{
    vdisk_dev *dev = new_dev("r.raw", 1 * MiB, NULL);
    const char *path = name_of(dev);
    vdisk_queue *q = new_queue(dev, 8);
    uint8_t buf[BLK];
    struct req r = {.off = 1 * MiB, .buf = buf, .len = BLK};

    ck_assert_int_eq(aio_read(q, &r), -EIO);
    ck_assert_int_eq(vdisk_get_errno(), EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_aio_preadv: %s: read of 4096 bytes at "
                                            "offset 1048576 is beyond the end of the device "
                                            "(1048576 bytes)", path));
    r.off = 1 * MiB - 1;
    ck_assert_int_eq(aio_write(q, &r, 0), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_aio_pwritev: %s: write of 4096 bytes at "
                                            "offset 1048575 is beyond the end of the device "
                                            "(1048576 bytes)", path));
    ck_assert_int_eq(vdisk_aio_discard(q, 0, 2 * MiB, req_cb, &r), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_aio_discard: %s: discard of 2097152 bytes at "
                                            "offset 0 is beyond the end of the device "
                                            "(1048576 bytes)", path));
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, UINT64_MAX, 2, 0, req_cb, &r), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_aio_write_zeroes: %s: write_zeroes of 2 bytes "
                                            "at offset %" PRIu64 " is beyond the end of the "
                                            "device (1048576 bytes)", path, UINT64_MAX));
    in_aio_call = true;
    ck_assert_int_eq(vdisk_aio_preadv(q, NULL, -1, 0, 0, req_cb, &r), -EINVAL);
    in_aio_call = false;
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_preadv: invalid iovec (count -1; 0 to 1024)");

    ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
    ck_assert_int_eq(vdisk_queue_reap(q, 0, 0), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 0);
    vdisk_queue_free(q);
    ck_assert_int_eq(r.done, 0);
    vdisk_close(dev);

    /* Writes to a read-only device. */
    vdisk_dev *ro;
    ck_assert_int_eq(open_engine(&ro, path, "read-only=on"), 0);
    q = new_queue(ro, 8);
    r.off = 0;
    ck_assert_int_eq(aio_write(q, &r, 0), -EROFS);
    ck_assert_int_eq(vdisk_get_errno(), EROFS);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_aio_pwritev: %s: write of 4096 bytes at "
                                            "offset 0 refused: the device is read-only", path));
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, 0, 512, VDISK_REQ_MAY_UNMAP, req_cb, &r),
                     -EROFS);
    ck_assert_int_eq(vdisk_aio_discard(q, 0, 512, req_cb, &r), -EROFS);
    /* Reads and flushes are fine. */
    ck_assert_int_eq(aio_read(q, &r), 0);
    ck_assert_int_eq(vdisk_aio_flush(q, req_cb, &r), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 2);
    ck_assert_int_eq(r.done, 2);
    ck_assert_int_eq(r.result, 0);
    vdisk_queue_free(q);
    vdisk_close(ro);
}
END_TEST

/* ---- I/O errors ------------------------------------------------------------ */

/* Writes that take a file beyond LIMIT bytes fail with EFBIG. */
static struct rlimit saved_fsize;

static void limit_file_size(rlim_t limit)
{
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {limit, saved_fsize.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void unlimit_file_size(void)
{
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
}

struct err_req {
    int result, done;
    int err;
    char msg[1024];
};

static void err_cb(void *user, int result)
{
    struct err_req *e = user;
    e->result = result;
    e->done++;
    e->err = vdisk_get_errno();
    snprintf(e->msg, sizeof e->msg, "%s", vdisk_get_error());
}

START_TEST(io_error_reaches_callback)
{
    vdisk_dev *dev = new_dev("e.raw", 4 * MiB, NULL);
    const char *path = name_of(dev);
    ck_assert_int_eq(truncate(path, 2 * MiB), 0);
    vdisk_queue *q = new_queue(dev, 8);
    static uint8_t good[BLK], bad[BLK];
    memset(good, 0x67, sizeof good);
    memset(bad, 0x62, sizeof bad);
    struct err_req e[3] = {{0}};
    struct iovec vg = {good, BLK}, vb = {bad, BLK};

    limit_file_size(2 * MiB);
    int r0 = vdisk_aio_pwritev(q, &vg, 1, 0, 0, err_cb, &e[0]);
    int r1 = vdisk_aio_pwritev(q, &vb, 1, 2 * MiB, 0, err_cb, &e[1]);
    int r2 = vdisk_aio_pwritev(q, &vg, 1, 2 * MiB - BLK, 0, err_cb, &e[2]);
    int n = r0 == 0 && r1 == 0 && r2 == 0 ? vdisk_queue_drain(q) : -1;
    unlimit_file_size();

    ck_assert_int_eq(r0, 0);
    ck_assert_int_eq(r1, 0);
    ck_assert_int_eq(r2, 0);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(e[0].done, 1);
    ck_assert_int_eq(e[0].result, 0);
    ck_assert_int_eq(e[2].done, 1);
    ck_assert_int_eq(e[2].result, 0);
    ck_assert_int_eq(e[1].done, 1);
    ck_assert_int_eq(e[1].result, -EFBIG);
    ck_assert_int_eq(e[1].err, EFBIG);
    ck_assert_str_eq(e[1].msg, fmt("vdisk_aio_pwritev: %s: write of 4096 bytes at offset "
                                   "2097152 failed: File too large", path));
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 2 * MiB);

    /* The queue goes on working. */
    struct err_req ok = {0};
    ck_assert_int_eq(vdisk_aio_pwritev(q, &vb, 1, 3 * MiB, 0, err_cb, &ok), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_int_eq(ok.result, 0);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

START_TEST(truncated_file_reads_zeroes)
{
    vdisk_dev *dev = new_dev("tr.raw", 1 * MiB, NULL);
    const char *path = name_of(dev);
    uint8_t *data = malloc(1 * MiB);
    uint64_t seed = 3;
    fill_random(data, 1 * MiB, &seed);
    ck_assert_int_eq(vdisk_pwrite(dev, data, 1 * MiB, 0), 0);
    /* The file shrinks under the open device. */
    ck_assert_int_eq(truncate(path, 300000), 0);
    vdisk_queue *q = new_queue(dev, 8);
    enum { N = 8 };
    struct req r[N];
    uint8_t *bufs = malloc(N * 65536);
    memset(bufs, 0xee, N * 65536);
    for (int i = 0; i < N; i++) {
        r[i] = (struct req){.off = 250000 + (uint64_t)i * 100000, .buf = bufs + i * 65536,
                            .len = 65536};
        ck_assert_int_eq(aio_read(q, &r[i]), 0);
    }
    ck_assert_int_eq(vdisk_queue_drain(q), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(r[i].result, 0);
        for (size_t j = 0; j < r[i].len; j++) {
            uint64_t o = r[i].off + j;
            uint8_t want = o < 300000 ? data[o] : 0;
            ck_assert_msg(r[i].buf[j] == want, "byte %" PRIu64 " is 0x%02x, expected 0x%02x", o,
                          r[i].buf[j], want);
        }
    }
    vdisk_queue_free(q);
    vdisk_close(dev);
    free(bufs);
    free(data);
}
END_TEST

/* ---- Drain, free, other operations ------------------------------------------ */

static int counter_calls;

static void counter_cb(void *user, int result)
{
    (void)user;
    if (result == 0)
        counter_calls++;
}

START_TEST(drain_completes_everything)
{
    vdisk_dev *dev = new_dev("d.raw", 4 * MiB, NULL);
    vdisk_queue *q = new_queue(dev, 16);
    static uint8_t buf[BLK];
    struct iovec v = {buf, BLK};
    counter_calls = 0;
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, (uint64_t)(i % 1000) * BLK, 0, counter_cb,
                                           NULL), 0);
    ck_assert_uint_eq(vdisk_queue_in_flight(q), 300);
    ck_assert_int_eq(vdisk_queue_drain(q), 300);
    ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
    ck_assert_int_eq(counter_calls, 300);
    ck_assert_int_eq(vdisk_queue_drain(q), 0);

    /* Requests without a callback are refused before any I/O. */
    ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 0, 0, NULL, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_preadv: no completion callback");
    ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

START_TEST(free_with_requests_in_flight)
{
    vdisk_dev *dev = new_dev("fr.raw", 4 * MiB, NULL);
    const char *path = name_of(dev);
    vdisk_queue *q = new_queue(dev, 16);
    enum { N = 256 };
    uint8_t *model = calloc(1, 4 * MiB);
    uint8_t *bufs = malloc(N * BLK);
    uint64_t seed = 9;
    fill_random(bufs, N * BLK, &seed);
    struct req *reqs = calloc(N, sizeof *reqs);
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct req){.off = (uint64_t)((i * 7) % 1024) * BLK, .buf = bufs + i * BLK,
                               .len = BLK};
        memcpy(model + reqs[i].off, reqs[i].buf, BLK);
        ck_assert_int_eq(aio_write(q, &reqs[i], 0), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    /* The device's last reference is the queue's. */
    vdisk_close(dev);
    vdisk_queue_free(q);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(reqs[i].done, 1);
        ck_assert_int_eq(reqs[i].result, 0);
    }
    assert_file(path, model, 4 * MiB);
    free(reqs);
    free(bufs);
    free(model);
}
END_TEST

START_TEST(flush_discard_write_zeroes)
{
    vdisk_dev *dev = new_dev("o.raw", 4 * MiB, NULL);
    const char *path = name_of(dev);
    uint8_t *model = malloc(4 * MiB);
    uint64_t seed = 10;
    fill_random(model, 4 * MiB, &seed);
    ck_assert_int_eq(vdisk_pwrite(dev, model, 4 * MiB, 0), 0);
    vdisk_queue *q = new_queue(dev, 8);
    struct req r[5] = {{0}};
    ck_assert_int_eq(vdisk_aio_flush(q, req_cb, &r[0]), 0);
    ck_assert_int_eq(vdisk_aio_discard(q, 1 * MiB, 64 * KiB, req_cb, &r[1]), 0);
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, 2 * MiB, 64 * KiB, 0, req_cb, &r[2]), 0);
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, 3 * MiB, 64 * KiB, VDISK_REQ_MAY_UNMAP, req_cb,
                                            &r[3]), 0);
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, 12345, 6789, 0, req_cb, &r[4]), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(r[i].done, 1);
        ck_assert_int_eq(r[i].result, 0);
    }
    memset(model + 1 * MiB, 0, 64 * KiB);
    memset(model + 2 * MiB, 0, 64 * KiB);
    memset(model + 3 * MiB, 0, 64 * KiB);
    memset(model + 12345, 0, 6789);
    assert_file(path, model, 4 * MiB);
    int fd = open(path, O_RDONLY);
    ck_assert_int_eq(lseek(fd, 1 * MiB, SEEK_HOLE), 1 * MiB);
    ck_assert_int_eq(lseek(fd, 3 * MiB, SEEK_HOLE), 3 * MiB);
    close(fd);
    /* A FUA write. */
    uint8_t buf[BLK];
    fill_random(buf, BLK, &seed);
    struct req w = {.off = 5 * BLK, .buf = buf, .len = BLK};
    ck_assert_int_eq(aio_write(q, &w, VDISK_REQ_FUA), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_int_eq(w.result, 0);
    memcpy(model + 5 * BLK, buf, BLK);
    assert_file(path, model, 4 * MiB);
    vdisk_queue_free(q);
    vdisk_close(dev);
    free(model);
}
END_TEST

/* ---- Registered buffers ----------------------------------------------------- */

START_TEST(registered_buffers)
{
    vdisk_dev *dev = new_dev("rb.raw", 4 * MiB, NULL);
    const char *path = name_of(dev);
    vdisk_queue *q = new_queue(dev, 32);
    const size_t mem_size = 1 * MiB;
    uint8_t *mem = aligned_alloc(4096, mem_size);
    uint8_t *mem2 = aligned_alloc(4096, 64 * KiB);
    uint8_t *other = malloc(2 * BLK);
    struct iovec regions[2] = {{mem2, 64 * KiB}, {mem, mem_size}};
    int r = vdisk_queue_register_buffers(q, regions, 2);
    ck_assert_msg(r == 0, "%s", vdisk_get_error());

    uint8_t *model = calloc(1, 4 * MiB);
    uint64_t seed = 11;
    fill_random(mem, mem_size, &seed);
    fill_random(mem2, 64 * KiB, &seed);
    fill_random(other, 2 * BLK, &seed);
    /* Inside the regions, at their edges, and outside. */
    struct { uint8_t *p; size_t len; uint64_t off; } w[] = {
        {mem, BLK, 0},
        {mem + mem_size - BLK, BLK, 1 * MiB},
        {mem + 12345, 100000, 2 * MiB + 1},
        {mem2, 64 * KiB, 3 * MiB},
        {mem2 + 64 * KiB - 512, 512, 3 * MiB + 64 * KiB},
        {other, 2 * BLK, 3 * MiB + 128 * KiB},
        {mem + mem_size - 100, 100, 3 * MiB + 200 * KiB},
    };
    struct req reqs[7];
    for (int i = 0; i < 7; i++) {
        reqs[i] = (struct req){.off = w[i].off, .buf = w[i].p, .len = w[i].len};
        ck_assert_int_eq(aio_write(q, &reqs[i], 0), 0);
        memcpy(model + w[i].off, w[i].p, w[i].len);
    }
    ck_assert_int_eq(vdisk_queue_drain(q), 7);
    for (int i = 0; i < 7; i++)
        ck_assert_msg(reqs[i].result == 0, "write %d: %d", i, reqs[i].result);
    assert_file(path, model, 4 * MiB);

    /* Read into the registered memory. */
    memset(mem, 0, mem_size);
    for (int i = 0; i < 4; i++) {
        reqs[i] = (struct req){.off = (uint64_t)i * 256 * KiB + 7, .buf = mem + i * 256 * KiB,
                               .len = 256 * KiB};
        ck_assert_int_eq(aio_read(q, &reqs[i]), 0);
    }
    ck_assert_int_eq(vdisk_queue_drain(q), 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(reqs[i].result, 0);
        assert_same_bytes(reqs[i].buf, model + reqs[i].off, reqs[i].len, reqs[i].off, "fixed read");
    }

    /* Bad sets are refused and the old set stays usable. */
    struct iovec bad = {mem, 0};
    ck_assert_int_eq(vdisk_queue_register_buffers(q, &bad, 1), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_queue_register_buffers: buffer 0 (0 bytes) cannot "
                                        "be registered: it must be 1 byte to 1 GiB long");
    ck_assert_int_eq(vdisk_queue_register_buffers(q, regions, 1025), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_queue_register_buffers: cannot register 1025 "
                                        "buffers (1024 at most)");
    ck_assert_int_eq(vdisk_queue_register_buffers(q, NULL, 1), -EINVAL);
    reqs[0] = (struct req){.off = 0, .buf = mem, .len = BLK};
    ck_assert_int_eq(aio_read(q, &reqs[0]), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_int_eq(reqs[0].result, 0);
    assert_same_bytes(mem, model, BLK, 0, "fixed read");

    /* Replaced by none: I/O goes on as before. */
    ck_assert_int_eq(vdisk_queue_register_buffers(q, NULL, 0), 0);
    reqs[0] = (struct req){.off = 4096, .buf = mem, .len = BLK};
    ck_assert_int_eq(aio_read(q, &reqs[0]), 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    assert_same_bytes(mem, model + 4096, BLK, 4096, "read");

    vdisk_queue_free(q);
    vdisk_close(dev);
    free(mem);
    free(mem2);
    free(other);
    free(model);
}
END_TEST

/* ---- Several queues, several threads ---------------------------------------- */

struct worker {
    vdisk_dev *dev;
    unsigned first_block, nblocks;
    uint64_t seed;
    uint8_t *model; /* the worker's own part of the shared model */
    int errors, mismatches;
};

static void *queue_worker(void *p)
{
    struct worker *w = p;
    vdisk_queue *q;
    if (vdisk_queue_new(&q, w->dev, 32) < 0) {
        w->errors++;
        return NULL;
    }
    enum { N = 128 };
    uint8_t *bufs = malloc(N * BLK);
    struct req reqs[N];
    for (int round = 0; round < 4; round++) {
        unsigned *perm = permutation(w->nblocks, &w->seed);
        for (int i = 0; i < N; i++) {
            reqs[i] = (struct req){.off = (uint64_t)(w->first_block + perm[i]) * BLK,
                                   .buf = bufs + i * BLK, .len = BLK};
            fill_random(reqs[i].buf, BLK, &w->seed);
            memcpy(w->model + reqs[i].off, reqs[i].buf, BLK);
            struct iovec v = {reqs[i].buf, BLK};
            if (vdisk_aio_pwritev(q, &v, 1, reqs[i].off, 0, req_cb, &reqs[i]) < 0)
                w->errors++;
        }
        if (vdisk_queue_drain(q) != N)
            w->errors++;
        for (int i = 0; i < N; i++) {
            if (reqs[i].result < 0 || reqs[i].done != 1)
                w->errors++;
            reqs[i].done = 0;
            memset(reqs[i].buf, 0, BLK);
            struct iovec v = {reqs[i].buf, BLK};
            if (vdisk_aio_preadv(q, &v, 1, reqs[i].off, 0, req_cb, &reqs[i]) < 0)
                w->errors++;
        }
        if (vdisk_queue_drain(q) != N)
            w->errors++;
        for (int i = 0; i < N; i++)
            if (reqs[i].result < 0 || memcmp(reqs[i].buf, w->model + reqs[i].off, BLK))
                w->mismatches++;
        free(perm);
    }
    free(bufs);
    vdisk_queue_free(q);
    return NULL;
}

START_TEST(queues_on_threads)
{
    enum { T = 4, PER = 256 };
    vdisk_dev *dev = new_dev("qt.raw", (uint64_t)T * PER * BLK, NULL);
    const char *path = name_of(dev);
    uint8_t *model = calloc(T * PER, BLK);
    struct worker w[T];
    pthread_t tid[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){dev, (unsigned)i * PER, PER, (uint64_t)i + 100, model, 0, 0};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, queue_worker, &w[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(tid[i], NULL);
        ck_assert_int_eq(w[i].errors, 0);
        ck_assert_int_eq(w[i].mismatches, 0);
    }
    vdisk_close(dev);
    assert_file(path, model, (size_t)T * PER * BLK);
    free(model);
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine-" TEST_ENGINE);
    TCase *tc = tcase_create("io");
    tcase_add_test(tc, engine_names);
    tcase_add_test(tc, random_writes_then_reads);
    tcase_add_test(tc, callbacks_start_requests);
    tcase_add_test(tc, callbacks_submit_once_per_batch);
    tcase_add_test(tc, drain_completes_everything);
    tcase_add_test(tc, free_with_requests_in_flight);
    tcase_add_test(tc, flush_discard_write_zeroes);
    tcase_add_test(tc, registered_buffers);
    tcase_add_test(tc, queues_on_threads);
    suite_add_tcase(s, tc);
    tc = tcase_create("events");
    tcase_add_test(tc, fd_readable_on_completion);
    tcase_add_test(tc, fd_event_loop_beyond_depth);
    tcase_add_test(tc, fd_readable_for_requests_without_io);
    tcase_add_test(tc, fd_asked_for_after_completion);
    tcase_add_test(tc, reap_timeout_returns);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, refused_requests_never_call_back);
    tcase_add_test(tc, io_error_reaches_callback);
    tcase_add_test(tc, truncated_file_reads_zeroes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_engine(TEST_ENGINE);
    return run_suite(engine_suite());
}
