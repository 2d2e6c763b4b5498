/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/queue_contract.c: what vdisk/queue.h promises a VMM, on one I/O
 * engine (TEST_ENGINE, as tests/unit/engine.c):
 *   - no vdisk_aio_*() call runs a callback inside itself, for every request
 *     type on raw, qcow2 and an offset range, succeeding or failing;
 *   - arguments are checked: unknown flags, FUA on reads, MAY_UNMAP on
 *     writes, NULL callbacks, too many iovecs are refused and never call
 *     back;
 *   - reaping with a budget (vdisk_queue_reap_max), and requests started by
 *     callbacks waiting for the next reap call;
 *   - the quiesce section (vdisk_dev_quiesce / vdisk_dev_resume): requests
 *     and synchronous calls of other threads wait, none fails; nesting; the
 *     calling thread's own requests in flight are moved on, their callbacks
 *     left for its next reap.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#ifndef TEST_ENGINE
#define TEST_ENGINE "threads"
#endif

#define KiB 1024ull
#define MiB (1024 * KiB)

/* Only a hang detector, never a performance check. */
#define HANG_MS 20000

static vdisk_dev *open_engine(const char *path, const char *list)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "engine", TEST_ENGINE), 0);
    if (list)
        ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    vdisk_dev *dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "open %s: %s", path, vdisk_get_error());
    return dev;
}

static vdisk_dev *new_image(const char *name, const char *format, uint64_t size,
                            const char *list)
{
    const char *path = scratch(name);
    ck_assert_msg(vdisk_create(path, format, size, NULL) == 0, "%s", vdisk_get_error());
    char opts[256];
    snprintf(opts, sizeof opts, "format=%s%s%s", format, list ? "," : "", list ? list : "");
    return open_engine(path, opts);
}

/* Waits until the queue's fd is readable (a hang detector only). */
static void wait_fd(vdisk_queue *q)
{
    struct pollfd p = {.fd = vdisk_queue_get_fd(q), .events = POLLIN};
    ck_assert_int_ge(p.fd, 0);
    ck_assert_msg(poll(&p, 1, HANG_MS) == 1, "the queue's fd never became readable");
}

/* ---- No callback inside a call -------------------------------------------- */

static bool inside;          /* a vdisk_aio_*() call is running */
static unsigned inside_calls, calls;
static int last_result;

static void note_cb(void *user, int result)
{
    (void)user;
    calls++;
    if (inside)
        inside_calls++;
    last_result = result;
}

static int start(vdisk_queue *q, enum aio_kind k, void *buf, uint64_t off, uint64_t len)
{
    inside = true;
    int r = aio_start(q, k, buf, off, len, note_cb, NULL);
    inside = false;
    return r;
}

/* Every kind of request, aligned and not, one at a time and in batches,
 * on DEV: every callback runs from reap, none inside a call. */
static void every_request(vdisk_dev *dev, const char *what)
{
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 64), 0);
    uint8_t *buf = malloc(256 * KiB);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0x5a, 256 * KiB);
    static const uint64_t shapes[][2] = {
        {0, 4096}, {512, 512}, {65536, 65536}, {1000, 3000}, {131072 - 512, 1024},
        {0, 256 * 1024}, {7 * 65536 + 17, 65536 + 100},
    };
    calls = inside_calls = 0;
    unsigned started = 0;
    for (int batch = 1; batch <= 8; batch *= 8)
        for (int k = 0; k < AIO_KINDS; k++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                for (int b = 0; b < batch; b++) {
                    int r = start(q, (enum aio_kind)k, buf, shapes[s][0], shapes[s][1]);
                    ck_assert_msg(r == 0, "%s: %s at %llu: %s", what, aio_kind_names[k],
                                  (unsigned long long)shapes[s][0], vdisk_get_error());
                    started++;
                }
                ck_assert_msg(inside_calls == 0, "%s: %s: a callback ran inside the call",
                              what, aio_kind_names[k]);
                ck_assert_int_eq(vdisk_queue_drain(q), batch);
                ck_assert_msg(last_result == 0, "%s: %s failed (%d): %s", what,
                              aio_kind_names[k], last_result, vdisk_get_error());
            }
    ck_assert_uint_eq(calls, started);
    ck_assert_uint_eq(inside_calls, 0);
    free(buf);
    vdisk_queue_free(q);
}

START_TEST(no_callback_inside_raw)
{
    vdisk_dev *dev = new_image("inside.raw", "raw", 4 * MiB, NULL);
    every_request(dev, "raw");
    vdisk_close(dev);
}
END_TEST

START_TEST(no_callback_inside_qcow2)
{
    vdisk_dev *dev = new_image("inside.qcow2", "qcow2", 4 * MiB, NULL);
    every_request(dev, "qcow2");
    vdisk_close(dev);
}
END_TEST

START_TEST(no_callback_inside_offset)
{
    const char *path = scratch("inside-off.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", 8 * MiB, NULL), 0);
    vdisk_dev *disk = open_engine(path, "format=raw");
    vdisk_dev *dev;
    /* An odd offset: the parent reads, modifies and writes whole blocks. */
    ck_assert_int_eq(vdisk_open_range(&dev, disk, 1 * MiB + 512, 4 * MiB, 0), 0);
    vdisk_close(disk);
    every_request(dev, "offset range");
    vdisk_close(dev);
}
END_TEST

/* Requests that fail in the driver at once: their callbacks wait for reap
 * too (a qcow2 image whose L1 table points at an unaligned L2 table fails
 * reads there in its submit path). */
START_TEST(no_callback_inside_failures)
{
    const char *path = scratch("bad-l1.qcow2");
    ck_assert_int_eq(vdisk_create(path, "qcow2", 4 * MiB, NULL), 0);
    vdisk_dev *dev = open_engine(path, "format=qcow2");
    uint8_t buf[4096];
    memset(buf, 0x11, sizeof buf);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 0), 0);
    vdisk_close(dev);
    size_t len;
    uint8_t *img = read_file(path, &len);
    uint64_t l1 = 0;
    for (int i = 0; i < 8; i++)
        l1 = l1 << 8 | img[40 + i];
    ck_assert_uint_lt(l1 + 8, len);
    /* L1[0] = 0x12345 | COPIED: an L2 table in the middle of a cluster. */
    static const uint8_t bad[8] = {0x80, 0, 0, 0, 0, 0x01, 0x23, 0x45};
    memcpy(img + l1, bad, sizeof bad);
    write_file(path, img, len);
    free(img);
    dev = open_engine(path, "format=qcow2,read-only=on");
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 8), 0);
    calls = inside_calls = 0;
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(start(q, AIO_READ, buf, (uint64_t)i * 512, sizeof buf), 0);
        ck_assert_uint_eq(inside_calls, 0);
        ck_assert_uint_eq(calls, 0);
        ck_assert_int_eq(vdisk_queue_drain(q), 1);
        ck_assert_uint_eq(calls, 1);
        ck_assert_msg(last_result == -EIO, "read %d: %d", i, last_result);
        calls = 0;
    }
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

/* ---- Arguments ------------------------------------------------------------- */

START_TEST(arguments_refused)
{
    vdisk_dev *dev = new_image("args.raw", "raw", 1 * MiB, NULL);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 8), 0);
    uint8_t buf[4096];
    struct iovec v = {buf, sizeof buf};
    calls = 0;
    ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 0, VDISK_REQ_FUA, note_cb, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_preadv: flags 0x1 are not valid for "
                                        "vdisk_aio_preadv (allowed: 0x0)");
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, 0, VDISK_REQ_MAY_UNMAP, note_cb, NULL),
                     -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_pwritev: flags 0x2 are not valid for "
                                        "vdisk_aio_pwritev (allowed: 0x1)");
    ck_assert_int_eq(vdisk_aio_pwritev(q, &v, 1, 0, 0x100, note_cb, NULL), -EINVAL);
    ck_assert_int_eq(vdisk_aio_write_zeroes(q, 0, 4096, 0x8, note_cb, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_write_zeroes: flags 0x8 are not valid for "
                                        "vdisk_aio_write_zeroes (allowed: 0x7)");
    ck_assert_int_eq(vdisk_aio_flush(q, NULL, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_flush: no completion callback");
    ck_assert_int_eq(vdisk_aio_discard(q, 0, 4096, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vdisk_aio_pwritev(NULL, &v, 1, 0, 0, note_cb, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_pwritev: no queue");
    /* iovec limits */
    struct iovec *many = calloc(VDISK_AIO_IOV_MAX + 1, sizeof *many);
    ck_assert_ptr_nonnull(many);
    for (int i = 0; i <= VDISK_AIO_IOV_MAX; i++)
        many[i] = (struct iovec){buf, 1};
    ck_assert_int_eq(vdisk_aio_preadv(q, many, VDISK_AIO_IOV_MAX + 1, 0, 0, note_cb, NULL),
                     -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_preadv: invalid iovec (count 1025; 0 to 1024)");
    ck_assert_int_eq(vdisk_aio_preadv(q, many, VDISK_AIO_IOV_MAX, 0, 0, note_cb, NULL), 0);
    struct iovec bad[2] = {{buf, 512}, {NULL, 512}};
    ck_assert_int_eq(vdisk_aio_pwritev(q, bad, 2, 0, 0, note_cb, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_aio_pwritev: iovec 1 has 512 bytes at NULL");
    struct iovec huge[2] = {{buf, VDISK_AIO_LEN_MAX}, {buf, 1}};
    ck_assert_int_eq(vdisk_aio_preadv(q, huge, 2, 0, 0, note_cb, NULL), -EINVAL);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_uint_eq(calls, 1);
    ck_assert_int_eq(last_result, 0);
    /* min above max */
    ck_assert_int_eq(vdisk_queue_reap_max(q, 3, 2, 0), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_queue_reap_max: min_complete 3 is above max_complete 2");
    free(many);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

/* ---- Reaping with a budget ------------------------------------------------ */

struct chain {
    vdisk_queue *q;
    uint8_t buf[4096];
    unsigned left;       /* resubmissions still to do */
    unsigned *completed; /* shared count */
};

static void chain_cb(void *user, int result)
{
    struct chain *c = user;
    ck_assert_int_eq(result, 0);
    (*c->completed)++;
    if (c->left) {
        c->left--;
        struct iovec v = {c->buf, sizeof c->buf};
        ck_assert_int_eq(vdisk_aio_preadv(c->q, &v, 1, 0, 0, chain_cb, c), 0);
    }
}

/* 32 requests whose callbacks start the next one, 200 times each: no reap
 * call completes more than were in flight when it began, and with a budget
 * no more than the budget. */
START_TEST(reap_budget)
{
    vdisk_dev *dev = new_image("budget.raw", "raw", 1 * MiB, NULL);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 64), 0);
    enum { N = 32, ROUNDS = 200 };
    struct chain *c = calloc(N, sizeof *c);
    ck_assert_ptr_nonnull(c);
    unsigned completed = 0;
    for (int i = 0; i < N; i++) {
        c[i] = (struct chain){.q = q, .left = ROUNDS, .completed = &completed};
        struct iovec v = {c[i].buf, sizeof c[i].buf};
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 0, 0, chain_cb, &c[i]), 0);
    }
    ck_assert_int_ge(vdisk_queue_submit(q), 0);
    unsigned calls_made = 0, max_seen = 0;
    while (vdisk_queue_in_flight(q)) {
        wait_fd(q);
        unsigned before = vdisk_queue_in_flight(q);
        unsigned budget = calls_made % 2 ? 5 : 0; /* every other call: 5 at most */
        int n = vdisk_queue_reap_max(q, 0, budget, 0);
        ck_assert_int_ge(n, 0);
        ck_assert_msg((unsigned)n <= before, "one reap completed %d requests with %u in flight "
                      "when it began", n, before);
        if (budget)
            ck_assert_int_le(n, 5);
        if ((unsigned)n > max_seen)
            max_seen = (unsigned)n;
        calls_made++;
    }
    ck_assert_uint_eq(completed, N * (ROUNDS + 1));
    ck_assert_uint_le(max_seen, N);
    free(c);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

/* What a budget leaves keeps the fd readable, and goes first next time. */
START_TEST(reap_budget_leftovers)
{
    vdisk_dev *dev = new_image("left.raw", "raw", 1 * MiB, NULL);
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 16), 0);
    int fd = vdisk_queue_get_fd(q);
    ck_assert_int_ge(fd, 0);
    uint8_t buf[4096];
    struct iovec v = {buf, sizeof buf};
    calls = 0;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 0, 0, note_cb, NULL), 0);
    /* Wait for all ten without running any callback: min 1, budget 1
     * takes one; then the rest are there to take. */
    ck_assert_int_eq(vdisk_queue_reap_max(q, 1, 1, HANG_MS), 1);
    ck_assert_uint_eq(calls, 1);
    unsigned got = 1;
    while (got < 10) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ck_assert_msg(poll(&p, 1, HANG_MS) == 1, "requests left but the fd is not readable");
        int n = vdisk_queue_reap_max(q, 0, 3, 0);
        ck_assert_int_ge(n, 0);
        ck_assert_int_le(n, 3);
        got += (unsigned)n;
    }
    ck_assert_uint_eq(calls, 10);
    ck_assert_uint_eq(vdisk_queue_in_flight(q), 0);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

/* ---- Quiesce -------------------------------------------------------------- */

START_TEST(quiesce_rules)
{
    vdisk_dev *dev = new_image("rules.raw", "raw", 1 * MiB, NULL);
    ck_assert_int_eq(vdisk_dev_resume(dev), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_dev_resume: %s: this thread has not "
                                            "quiesced the device", vdisk_get_filename(dev)));
    ck_assert_int_eq(vdisk_dev_quiesce(dev), 0);
    ck_assert_int_eq(vdisk_dev_quiesce(dev), 0); /* nests */
    /* The holder's own requests go through. */
    uint8_t buf[4096] = {7};
    ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(vdisk_resize(dev, 2 * MiB, 0), 0);
    ck_assert_int_eq(vdisk_dev_resume(dev), 0);
    ck_assert_int_eq(vdisk_dev_resume(dev), 0);
    ck_assert_int_eq(vdisk_dev_resume(dev), -EINVAL);

    /* Requests of this thread in flight: the section moves them on (no
     * other thread would) and their callbacks wait for this thread's reap. */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 8), 0);
    struct iovec v = {buf, sizeof buf};
    calls = 0;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, (uint64_t)i * 4096, 0, note_cb, NULL), 0);
    ck_assert_int_eq(vdisk_dev_quiesce(dev), 0);
    ck_assert_uint_eq(calls, 0);
    ck_assert_int_eq(vdisk_resize(dev, 3 * MiB, 0), 0);
    ck_assert_int_eq(vdisk_dev_resume(dev), 0);
    ck_assert_int_eq(vdisk_aio_preadv(q, &v, 1, 0, 0, note_cb, NULL), 0);
    ck_assert_int_eq(vdisk_resize(dev, 4 * MiB, 0), 0);
    ck_assert_uint_eq(calls, 0);
    ck_assert_int_eq(vdisk_queue_drain(q), 6);
    ck_assert_uint_eq(calls, 6);
    ck_assert_uint_eq(vdisk_get_size(dev), 4 * MiB);
    vdisk_queue_free(q);
    vdisk_close(dev);
}
END_TEST

struct other {
    vdisk_dev *dev;     /* where the other threads send their requests */
    atomic_int stage;   /* 1: started its request; 2: saw nothing complete;
                           3: completed it after the resume */
    atomic_int sync_done;
    int result;
    unsigned early;     /* completions seen while quiesced */
};

static void other_cb(void *user, int result)
{
    struct other *o = user;
    o->result = result;
}

static void *other_thread(void *arg)
{
    struct other *o = arg;
    vdisk_queue *q;
    if (vdisk_queue_new(&q, o->dev, 8) < 0)
        return NULL;
    static uint8_t buf[4096];
    memset(buf, 0xab, sizeof buf);
    struct iovec v = {buf, sizeof buf};
    o->result = 1;
    if (vdisk_aio_pwritev(q, &v, 1, 8192, 0, other_cb, o) < 0)
        return NULL;
    atomic_store(&o->stage, 1);
    /* While the section holds: nothing completes, however long we wait. */
    int n = vdisk_queue_reap(q, 1, 300);
    o->early = n > 0 ? (unsigned)n : 0;
    atomic_store(&o->stage, 2);
    /* The resume makes the fd readable; the request then completes. */
    struct pollfd p = {.fd = vdisk_queue_get_fd(q), .events = POLLIN};
    while (vdisk_queue_in_flight(q)) {
        if (poll(&p, 1, HANG_MS) != 1)
            break;
        vdisk_queue_reap(q, 0, 0);
    }
    atomic_store(&o->stage, 3);
    vdisk_queue_free(q);
    return NULL;
}

static void *sync_thread(void *arg)
{
    struct other *o = arg;
    uint8_t buf[512];
    memset(buf, 0xcd, sizeof buf);
    int r = vdisk_pwrite(o->dev, buf, sizeof buf, 16384);
    atomic_store(&o->sync_done, r == 0 ? 1 : -1);
    return NULL;
}

/* Inside a section: starts another thread's request (other_thread) and
 * synchronous write (sync_thread) on O->dev, and sees both held back. */
static void others_held_back(struct other *o, pthread_t *t, pthread_t *s)
{
    ck_assert_int_eq(pthread_create(t, NULL, other_thread, o), 0);
    ck_assert_int_eq(pthread_create(s, NULL, sync_thread, o), 0);
    while (atomic_load(&o->stage) < 2)
        usleep(1000);
    ck_assert_uint_eq(o->early, 0);
    ck_assert_int_eq(atomic_load(&o->sync_done), 0);
}

/* After the resume: both completed, neither failed. */
static void others_done(struct other *o, pthread_t t, pthread_t s)
{
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(pthread_join(s, NULL), 0);
    ck_assert_int_eq(atomic_load(&o->stage), 3);
    ck_assert_int_eq(o->result, 0);
    ck_assert_int_eq(atomic_load(&o->sync_done), 1);
}

/* Another thread's requests and synchronous calls wait for the resume,
 * then complete; none fails. */
START_TEST(quiesce_holds_back_others)
{
    vdisk_dev *dev = new_image("hold.qcow2", "qcow2", 1 * MiB, NULL);
    struct other o = {.dev = dev};
    ck_assert_int_eq(vdisk_dev_quiesce(dev), 0);
    pthread_t t, s;
    others_held_back(&o, &t, &s);
    /* A snapshot inside the section. */
    ck_assert_msg(vdisk_snapshot_create(dev, "during") == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_dev_resume(dev), 0);
    others_done(&o, t, s);
    uint8_t back[4096], want[4096];
    memset(want, 0xab, sizeof want);
    ck_assert_int_eq(vdisk_pread(dev, back, sizeof back, 8192), 0);
    assert_same_bytes(back, want, sizeof back, 8192, "held-back write");
    memset(want, 0xcd, 512);
    ck_assert_int_eq(vdisk_pread(dev, back, 512, 16384), 0);
    assert_same_bytes(back, want, 512, 16384, "held-back synchronous write");
    vdisk_close(dev);
    if (have_program("qemu-img"))
        RUN_OK("qemu-img check -q '%s'", scratch("hold.qcow2"));
}
END_TEST

/* A section on a disk holds back requests on a range opened over it (a
 * partition), from queues and synchronous calls alike; the range's own
 * requests in flight when it begins are waited for. */
START_TEST(quiesce_holds_back_ranges)
{
    vdisk_dev *disk = new_image("hold-range.qcow2", "qcow2", 1 * MiB, NULL);
    vdisk_dev *range;
    ck_assert_int_eq(vdisk_open_range(&range, disk, 64 * KiB, 512 * KiB, 0), 0);
    /* One request of this thread's on the range, in flight as the section
     * begins: the section waits for it (it completes in a later reap). */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, range, 8), 0);
    static uint8_t mine[4096];
    memset(mine, 0x5e, sizeof mine);
    calls = 0;
    ck_assert_int_eq(vdisk_aio_pwritev(q, &(struct iovec){mine, sizeof mine}, 1, 0, 0, note_cb,
                                       NULL), 0);
    ck_assert_int_eq(vdisk_dev_quiesce(disk), 0);
    struct other o = {.dev = range};
    pthread_t t, s;
    others_held_back(&o, &t, &s);
    /* Inside the section, the disk is as the section found it: this
     * thread's write is there, the others' are not. */
    uint8_t back[4096], want[4096];
    ck_assert_int_eq(vdisk_pread(disk, back, sizeof back, 64 * KiB), 0);
    assert_same_bytes(back, mine, sizeof back, 64 * KiB, "write in flight at the section");
    memset(want, 0, sizeof want);
    ck_assert_int_eq(vdisk_pread(disk, back, sizeof back, 64 * KiB + 8192), 0);
    assert_same_bytes(back, want, sizeof back, 64 * KiB + 8192, "held-back write, not yet");
    ck_assert_msg(vdisk_snapshot_create(disk, "during") == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_dev_resume(disk), 0);
    others_done(&o, t, s);
    ck_assert_int_eq(vdisk_queue_drain(q), 1);
    ck_assert_uint_eq(calls, 1);
    memset(want, 0xab, sizeof want);
    ck_assert_int_eq(vdisk_pread(disk, back, sizeof back, 64 * KiB + 8192), 0);
    assert_same_bytes(back, want, sizeof back, 64 * KiB + 8192, "held-back write");
    memset(want, 0xcd, 512);
    ck_assert_int_eq(vdisk_pread(disk, back, 512, 64 * KiB + 16384), 0);
    assert_same_bytes(back, want, 512, 64 * KiB + 16384, "held-back synchronous write");
    vdisk_queue_free(q);
    vdisk_close(range);
    vdisk_close(disk);
    if (have_program("qemu-img")) {
        RUN_OK("qemu-img check -q '%s'", scratch("hold-range.qcow2"));
        /* The snapshot has this thread's write and not the held-back ones. */
        RUN_OK("qemu-img convert -l snapshot.name=during -O raw '%s' '%s'",
               scratch("hold-range.qcow2"), scratch("during.raw"));
        RUN_OK("qemu-io -f raw -r -c 'read -q -P 0x5e 64k 4k' -c 'read -q -P 0 72k 4k' "
               "-c 'read -q -P 0 80k 512' '%s'", scratch("during.raw"));
    }
}
END_TEST

/* ---- Main ------------------------------------------------------------------ */

static Suite *contract_suite(void)
{
    Suite *s = suite_create("queue-contract-" TEST_ENGINE);
    TCase *tc = tcase_create("contract");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, no_callback_inside_raw);
    tcase_add_test(tc, no_callback_inside_qcow2);
    tcase_add_test(tc, no_callback_inside_offset);
    tcase_add_test(tc, no_callback_inside_failures);
    tcase_add_test(tc, arguments_refused);
    tcase_add_test(tc, reap_budget);
    tcase_add_test(tc, reap_budget_leftovers);
    tcase_add_test(tc, quiesce_rules);
    tcase_add_test(tc, quiesce_holds_back_others);
    tcase_add_test(tc, quiesce_holds_back_ranges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_engine(TEST_ENGINE);
    return run_suite(contract_suite());
}
