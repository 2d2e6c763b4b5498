/* SPDX-License-Identifier: MIT */
/*
 * tests/stress/qcow2_async.c: the asynchronous queue on qcow2 images, with
 * many requests in flight from several threads, checked against a model.
 *
 * Several threads share one qcow2 image with a backing file; each has its
 * own queue, owns a part of the disk and keeps up to 64 requests in flight
 * there: reads, writes, discards, write zeroes and flushes at odd offsets
 * and lengths.  Requests in flight never overlap byte ranges when one of them
 * writes (as a guest behaves), but they share clusters all the time, so
 * allocations of one cluster from several requests race.  Every read is
 * compared with the model; at the end the image is checked by vdisk and
 * qemu-img and read back whole.
 *
 * The shared_metadata cases go further (see run_shared): threads on the
 * same clusters, compressed writes, and snapshots and resizes between
 * rounds, every snapshot left read back at the end.
 *
 * VDISK_STRESS_OPS sets the requests per thread (default 20000, 6000 in
 * sanitizer builds; the ThreadSanitizer pass of tests/run-all.sh sets 4000).  Each run is bounded
 * in time: a thread that makes no progress for a minute (a deadlock) fails
 * the test.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define SIZE (32u << 20)
#define THREADS 4
#define DEPTH 64

#if SANITIZED
static int OPS = 6000; /* the same coverage per round, a third of the rounds' length */
#else
static int OPS = 20000;
#endif

static uint8_t model[SIZE];
static uint64_t CLUSTER; /* of the image under test */

struct op {
    struct worker *w;
    int kind;          /* 0 read, 1 write, 2 discard, 3 zeroes, 4 flush */
    uint64_t off, len;
    uint8_t *buf;
    bool busy;
};

struct worker {
    vdisk_dev *dev;
    uint64_t lo, hi;   /* this thread's part of the disk */
    uint64_t seed;
    struct op ops[DEPTH];
    unsigned in_flight;
    int failures;
    char first_failure[512];
};

static bool overlaps(const struct op *a, uint64_t off, uint64_t len)
{
    return a->busy && a->off < off + len && off < a->off + a->len;
}

/* What a completed request OP says: its error, or a read that differs
 * from the model, recorded as the first failure. */
static void check_completion(const struct op *o, int ret, int *failures, char *first, size_t cap)
{
    if (ret < 0 && !(*failures)++)
        snprintf(first, cap, "op %d at %llu+%llu: %s", o->kind, (unsigned long long)o->off,
                 (unsigned long long)o->len, vdisk_get_error());
    if (ret == 0 && o->kind == 0 && memcmp(o->buf, model + o->off, o->len) != 0) {
        uint64_t i = 0;
        while (o->buf[i] == model[o->off + i])
            i++;
        if (!(*failures)++)
            snprintf(first, cap, "read at %llu+%llu: byte %llu is 0x%02x, the model says 0x%02x",
                     (unsigned long long)o->off, (unsigned long long)o->len,
                     (unsigned long long)(o->off + i), o->buf[i], model[o->off + i]);
    }
}

static void done(void *user, int ret)
{
    struct op *o = user;
    struct worker *w = o->w;
    check_completion(o, ret, &w->failures, w->first_failure, sizeof w->first_failure);
    free(o->buf);
    o->buf = NULL;
    o->busy = false;
    w->in_flight--;
}

static int start(struct worker *w, vdisk_queue *q, struct op *o)
{
    uint64_t span = w->hi - w->lo;
    for (int tries = 0; tries < 100; tries++) {
        uint64_t r = rng_next(&w->seed);
        uint64_t len = 1 + rng_next(&w->seed) % (r & 1 ? 4096 : 200000);
        uint64_t off = w->lo + rng_next(&w->seed) % (span - len);
        bool conflict = false;
        int kind = (int)(rng_next(&w->seed) % 20);
        kind = kind < 8 ? 0 : kind < 15 ? 1 : kind < 17 ? 2 : kind < 19 ? 3 : 4;
        if (kind == 4) {
            /* A flush touches no bytes: it conflicts with nothing. */
            o->kind = kind;
            o->off = o->len = 0;
            o->busy = true;
            o->w = w;
            o->buf = NULL;
            int ret = vdisk_aio_flush(q, done, o);
            if (ret < 0) {
                o->busy = false;
                return ret;
            }
            w->in_flight++;
            return 0;
        }
        for (int i = 0; i < DEPTH; i++)
            conflict |= overlaps(&w->ops[i], off, len) && (kind || w->ops[i].kind);
        if (conflict)
            continue;
        /* Discard and zeroes change whole clusters' metadata: keep them
         * off clusters that other requests in flight touch. */
        if (kind >= 2) {
            uint64_t c0 = off / CLUSTER * CLUSTER, c1 = (off + len + CLUSTER - 1) / CLUSTER * CLUSTER;
            for (int i = 0; i < DEPTH; i++)
                conflict |= overlaps(&w->ops[i], c0, c1 - c0);
            if (conflict)
                continue;
        }
        o->kind = kind;
        o->off = off;
        o->len = len;
        o->busy = true;
        o->w = w;
        int ret;
        if (kind == 0) {
            o->buf = malloc(len);
            struct iovec v[2] = {{o->buf, len / 2}, {o->buf + len / 2, len - len / 2}};
            ret = vdisk_aio_preadv(q, v, 2, off, 0, done, o);
        } else if (kind == 1) {
            o->buf = malloc(len);
            memset(o->buf, (int)(1 + r % 255), len);
            memcpy(model + off, o->buf, len);
            struct iovec v = {o->buf, len};
            ret = vdisk_aio_pwritev(q, &v, 1, off, 0, done, o);
        } else if (kind == 2) {
            /* qcow2 v3 with a backing file: whole clusters read as zeroes. */
            uint64_t s = (off + CLUSTER - 1) / CLUSTER * CLUSTER, e = (off + len) / CLUSTER * CLUSTER;
            if (s < e)
                memset(model + s, 0, e - s);
            ret = vdisk_aio_discard(q, off, len, done, o);
        } else {
            memset(model + off, 0, len);
            ret = vdisk_aio_write_zeroes(q, off, len, r & 2 ? VDISK_REQ_MAY_UNMAP : 0, done, o);
        }
        if (ret < 0) {
            o->busy = false;
            free(o->buf);
            o->buf = NULL;
            return ret;
        }
        w->in_flight++;
        return 0;
    }
    return 1; /* nothing fits now */
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    vdisk_queue *q;
    if (vdisk_queue_new(&q, w->dev, DEPTH) < 0) {
        w->failures++;
        snprintf(w->first_failure, sizeof w->first_failure, "%s", vdisk_get_error());
        return NULL;
    }
    int started = 0;
    while (started < OPS || w->in_flight) {
        for (int i = 0; i < DEPTH && started < OPS; i++) {
            if (w->ops[i].busy)
                continue;
            int r = start(w, q, &w->ops[i]);
            if (r < 0) {
                w->failures++;
                snprintf(w->first_failure, sizeof w->first_failure, "start: %s",
                         vdisk_get_error());
                started = OPS;
                break;
            }
            if (r == 0)
                started++;
        }
        if (w->in_flight) {
            int n = vdisk_queue_reap(q, 1, 60000);
            if (n < 0) {
                w->failures++;
                snprintf(w->first_failure, sizeof w->first_failure, "reap: %s",
                         vdisk_get_error());
                break;
            }
            if (n == 0) {
                w->failures++;
                snprintf(w->first_failure, sizeof w->first_failure,
                         "no request completed for a minute with %u in flight (deadlock)",
                         w->in_flight);
                break;
            }
        }
    }
    vdisk_queue_drain(q);
    vdisk_queue_free(q);
    return NULL;
}

/* A qcow2 overlay IMG (vdisk create CREATE_OPTS) on BASE (scratch name;
 * its first half 0x5b), opened; the model set to match. */
static vdisk_dev *open_overlay(const char *base, const char *img, const char *create_opts)
{
    RUN_OK("qemu-img create -q -f qcow2 '%s' %u", scratch(base), SIZE);
    RUN_OK("qemu-io -c 'write -q -P 0x5b 0 %u' '%s'", SIZE / 2, scratch(base));
    RUN_OK("%s create -q -f qcow2 %s -b %s -F qcow2 '%s'", vdisk_bin(), create_opts, base, img);
    memset(model, 0, sizeof model);
    memset(model, 0x5b, SIZE / 2);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    return dev;
}

static void run_on(const char *create_opts, uint64_t cluster)
{
    CLUSTER = cluster;
    const char *img = scratch("top.qcow2");
    vdisk_dev *dev = open_overlay("base.qcow2", img, create_opts);
    static struct worker w[THREADS];
    pthread_t t[THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].dev = dev;
        w[i].lo = (uint64_t)SIZE / THREADS * (uint64_t)i;
        w[i].hi = w[i].lo + SIZE / THREADS;
        w[i].seed = 0x1234567u + (uint64_t)i * 7919;
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(w[i].failures == 0, "%s: thread %d: %d failures, first: %s", create_opts, i,
                      w[i].failures, w[i].first_failure);
    }
    ck_assert_msg(vdisk_flush(dev) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    RUN_OK("%s check '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
    /* The whole image as QEMU reads it equals the model. */
    const char *raw = scratch("final.raw");
    RUN_OK("qemu-img convert -O raw '%s' '%s'", img, raw);
    size_t len;
    uint8_t *got = read_file(raw, &len);
    ck_assert_uint_eq(len, SIZE);
    if (memcmp(got, model, SIZE) != 0) {
        size_t i = 0;
        while (got[i] == model[i])
            i++;
        ck_abort_msg("%s: byte %zu is 0x%02x in the image, 0x%02x in the model", create_opts, i,
                     got[i], model[i]);
    }
    free(got);
}

START_TEST(many_in_flight)
{
    run_on("", 65536);
}
END_TEST

START_TEST(many_in_flight_small_clusters)
{
    run_on("-o cluster_size=4k", 4096);
}
END_TEST

START_TEST(many_in_flight_extended_l2)
{
    run_on("-o extended_l2=on", 65536);
}
END_TEST

/* ---- Shared metadata: threads on the same clusters, L2 tables and refcount
 * blocks, with compressed writes and whole-image operations between rounds -- */

/*
 * The first half of the disk is cut into 16 KiB stripes dealt to the
 * threads in turn, so that every 64 KiB cluster there is written by all of
 * them at once (its allocation and copy from the backing file race); the
 * second half is dealt cluster by cluster, and there each thread also
 * discards, zeroes and writes compressed whole clusters of its own, next to
 * the other threads' clusters in the same L2 tables and refcount blocks.
 * Between rounds the threads drain their queues and wait; the main thread
 * takes a snapshot (keeping the model's copy), deletes an older one, or
 * grows the disk; then the threads go on.  At the end every snapshot left
 * is read back by qemu-img and compared with its copy.
 */
#define STRIPE (16u << 10)
#define ROUNDS 12
#define SHARED_CLUSTER 65536u

struct sworker {
    vdisk_dev *dev;
    unsigned id;
    uint64_t seed;
    int ops;                 /* per round */
    struct op ops_[DEPTH];
    unsigned in_flight;
    int failures;
    char first_failure[512];
};

static pthread_barrier_t round_start, round_end;
static volatile int stop_rounds;

static void sdone(void *user, int ret)
{
    struct op *o = user;
    struct sworker *w = (struct sworker *)o->w;
    check_completion(o, ret, &w->failures, w->first_failure, sizeof w->first_failure);
    free(o->buf);
    o->buf = NULL;
    o->busy = false;
    w->in_flight--;
}

static bool sconflict(const struct sworker *w, uint64_t off, uint64_t len, bool writes)
{
    for (int i = 0; i < DEPTH; i++)
        if (overlaps(&w->ops_[i], off, len) && (writes || w->ops_[i].kind))
            return true;
    return false;
}

/* Starts one request of thread W: 0 started, 1 nothing fits, -1 failed. */
static int sstart(struct sworker *w, vdisk_queue *q, struct op *o)
{
    for (int tries = 0; tries < 100; tries++) {
        uint64_t r = rng_next(&w->seed);
        int kind = (int)(r % 20);
        uint64_t off, len;
        if (r & (1u << 8)) {
            /* A piece of one of my stripes in the first half. */
            uint64_t nstripes = SIZE / 2 / STRIPE / THREADS;
            uint64_t k = (rng_next(&w->seed) % nstripes) * THREADS + w->id;
            len = 1 + rng_next(&w->seed) % STRIPE;
            off = k * STRIPE + rng_next(&w->seed) % (STRIPE - len + 1);
            kind = kind < 9 ? 0 : kind < 19 ? 1 : 4;
        } else {
            /* One of my clusters in the second half, or a piece of it. */
            uint64_t nclusters = SIZE / 2 / SHARED_CLUSTER / THREADS;
            uint64_t c = SIZE / 2 / SHARED_CLUSTER +
                         (rng_next(&w->seed) % nclusters) * THREADS + w->id;
            off = c * SHARED_CLUSTER;
            len = SHARED_CLUSTER;
            kind = kind < 6 ? 0 : kind < 11 ? 1 : kind < 13 ? 2 : kind < 15 ? 3 : kind < 17 ? 5 : 4;
            if (kind <= 1 && (r & (1u << 9))) {
                len = 1 + rng_next(&w->seed) % SHARED_CLUSTER;
                off += rng_next(&w->seed) % (SHARED_CLUSTER - len + 1);
            }
        }
        o->w = (struct worker *)w;
        o->buf = NULL;
        if (kind == 4) {
            o->kind = 4;
            o->off = o->len = 0;
            o->busy = true;
            if (vdisk_aio_flush(q, sdone, o) < 0) {
                o->busy = false;
                return -1;
            }
            w->in_flight++;
            return 0;
        }
        if (sconflict(w, off, len, kind != 0))
            continue;
        o->kind = kind;
        o->off = off;
        o->len = len;
        int ret = 0;
        if (kind == 5) {
            /* A compressed cluster: synchronous, nothing of mine in flight
             * on it (checked above). */
            uint8_t *buf = malloc(len);
            for (uint64_t i = 0; i < len; i++)
                buf[i] = (uint8_t)((r >> 16) + i / 512);
            memcpy(model + off, buf, len);
            ret = vdisk_pwrite_compressed(w->dev, buf, len, off);
            free(buf);
            if (ret < 0 && !w->failures++)
                snprintf(w->first_failure, sizeof w->first_failure, "compressed write at %llu: %s",
                         (unsigned long long)off, vdisk_get_error());
            return ret < 0 ? -1 : 0;
        }
        o->busy = true;
        if (kind == 0) {
            o->buf = malloc(len);
            struct iovec v[2] = {{o->buf, len / 2}, {o->buf + len / 2, len - len / 2}};
            ret = vdisk_aio_preadv(q, v, 2, off, 0, sdone, o);
        } else if (kind == 1) {
            o->buf = malloc(len);
            memset(o->buf, (int)(1 + (r >> 24) % 255), len);
            memcpy(model + off, o->buf, len);
            struct iovec v = {o->buf, len};
            ret = vdisk_aio_pwritev(q, &v, 1, off, 0, sdone, o);
        } else if (kind == 2) {
            memset(model + off, 0, len); /* whole clusters; the backing file has zeroes here */
            ret = vdisk_aio_discard(q, off, len, sdone, o);
        } else {
            memset(model + off, 0, len);
            ret = vdisk_aio_write_zeroes(q, off, len, r & (1u << 10) ? VDISK_REQ_MAY_UNMAP : 0,
                                         sdone, o);
        }
        if (ret < 0) {
            o->busy = false;
            free(o->buf);
            o->buf = NULL;
            return -1;
        }
        w->in_flight++;
        return 0;
    }
    return 1;
}

static void *sworker_main(void *arg)
{
    struct sworker *w = arg;
    vdisk_queue *q;
    int qr = vdisk_queue_new(&q, w->dev, DEPTH);
    if (qr < 0) {
        w->failures++;
        snprintf(w->first_failure, sizeof w->first_failure, "%s", vdisk_get_error());
    }
    for (;;) {
        pthread_barrier_wait(&round_start);
        if (stop_rounds)
            break;
        int started = 0;
        while (qr == 0 && !w->failures && (started < w->ops || w->in_flight)) {
            for (int i = 0; i < DEPTH && started < w->ops; i++) {
                if (w->ops_[i].busy)
                    continue;
                int r = sstart(w, q, &w->ops_[i]);
                if (r < 0) {
                    if (!w->failures++)
                        snprintf(w->first_failure, sizeof w->first_failure, "start: %s",
                                 vdisk_get_error());
                    started = w->ops;
                    break;
                }
                if (r == 0)
                    started++;
            }
            if (w->in_flight) {
                int n = vdisk_queue_reap(q, 1, 60000);
                if (n <= 0) {
                    if (!w->failures++)
                        snprintf(w->first_failure, sizeof w->first_failure, n < 0 ? "reap: %s" :
                                 "no request completed for a minute (deadlock)%s",
                                 n < 0 ? vdisk_get_error() : "");
                    break;
                }
            }
        }
        if (qr == 0)
            vdisk_queue_drain(q);
        pthread_barrier_wait(&round_end);
    }
    if (qr == 0)
        vdisk_queue_free(q);
    return NULL;
}

struct saved {
    char name[16];
    uint8_t *data;     /* the model when it was taken */
    uint64_t size;
};

/*
 * LIVE: the whole-image operation of each round runs while the threads keep
 * their requests going (the library's quiesce section keeps them out of it);
 * a snapshot's expected content is what the disk holds inside the section.
 * Otherwise the threads drain and wait for it, and the model is the
 * expected content.
 */
static void run_shared(const char *create_opts, bool live)
{
    CLUSTER = SHARED_CLUSTER;
    const char *img = scratch("stop.qcow2");
    vdisk_dev *dev = open_overlay("sbase.qcow2", img, create_opts);
    static struct sworker w[THREADS];
    pthread_t t[THREADS];
    memset(w, 0, sizeof w);
    stop_rounds = 0;
    ck_assert_int_eq(pthread_barrier_init(&round_start, NULL, THREADS + 1), 0);
    ck_assert_int_eq(pthread_barrier_init(&round_end, NULL, THREADS + 1), 0);
    for (unsigned i = 0; i < THREADS; i++) {
        w[i].dev = dev;
        w[i].id = i;
        w[i].seed = 0xfeed5u + (uint64_t)i * 104729;
        w[i].ops = OPS / ROUNDS > 0 ? OPS / ROUNDS : 1;
        ck_assert_int_eq(pthread_create(&t[i], NULL, sworker_main, &w[i]), 0);
    }
    struct saved snaps[ROUNDS];
    unsigned nsnaps = 0, taken = 0;
    uint64_t vsize = SIZE, seed = 0x5eed;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&round_start);
        if (!live)
            pthread_barrier_wait(&round_end);
        bool failed = false;
        for (int i = 0; !live && i < THREADS; i++)
            failed |= w[i].failures != 0;
        if (failed)
            break;
        /* The whole-image operation of this round. */
        uint64_t r = rng_next(&seed) % 4;
        if (r <= 1 || nsnaps == 0) {
            struct saved *sn = &snaps[nsnaps++];
            snprintf(sn->name, sizeof sn->name, "s%u", taken++);
            sn->data = malloc(SIZE);
            ck_assert_ptr_nonnull(sn->data);
            sn->size = vsize;
            if (live) {
                ck_assert_msg(vdisk_dev_quiesce(dev) == 0, "%s", vdisk_get_error());
                ck_assert_msg(vdisk_pread(dev, sn->data, SIZE, 0) == 0, "%s",
                              vdisk_get_error());
            } else {
                memcpy(sn->data, model, SIZE);
            }
            ck_assert_msg(vdisk_snapshot_create(dev, sn->name) == 0, "%s", vdisk_get_error());
            if (live)
                ck_assert_msg(vdisk_dev_resume(dev) == 0, "%s", vdisk_get_error());
        } else if (r == 2) {
            unsigned k = (unsigned)(rng_next(&seed) % nsnaps);
            ck_assert_msg(vdisk_snapshot_delete(dev, snaps[k].name) == 0, "%s",
                          vdisk_get_error());
            free(snaps[k].data);
            snaps[k] = snaps[--nsnaps];
        } else {
            vsize += 3 * SHARED_CLUSTER;
            ck_assert_msg(vdisk_resize(dev, vsize, 0) == 0, "%s", vdisk_get_error());
        }
        if (live)
            pthread_barrier_wait(&round_end);
    }
    stop_rounds = 1;
    pthread_barrier_wait(&round_start);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(w[i].failures == 0, "%s: thread %d: %d failures, first: %s", create_opts, i,
                      w[i].failures, w[i].first_failure);
    }
    pthread_barrier_destroy(&round_start);
    pthread_barrier_destroy(&round_end);
    ck_assert_msg(vdisk_flush(dev) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    RUN_OK("%s check '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
    /* The disk now, then each snapshot left, as QEMU reads them. */
    const char *raw = scratch("sfinal.raw");
    for (int k = -1; k < (int)nsnaps; k++) {
        const uint8_t *want = k < 0 ? model : snaps[k].data;
        /* qemu-img reads a snapshot at the disk's size now (zeroes past
         * the snapshot's own), as it does for its own images. */
        uint64_t size = vsize;
        const char *what = k < 0 ? "the disk" : snaps[k].name;
        unlink(raw);
        if (k < 0)
            RUN_OK("qemu-img convert -O raw '%s' '%s'", img, raw);
        else
            RUN_OK("qemu-img convert -O raw -l snapshot.name=%s '%s' '%s'", snaps[k].name, img,
                   raw);
        size_t len;
        uint8_t *got = read_file(raw, &len);
        ck_assert_msg(len == size, "%s: %zu bytes, expected %llu", what, len,
                      (unsigned long long)size);
        for (size_t i = 0; i < len; i++) {
            uint8_t exp = i < SIZE ? want[i] : 0;
            if (got[i] != exp)
                ck_abort_msg("%s %s: byte %zu is 0x%02x, the model says 0x%02x", create_opts,
                             what, i, got[i], exp);
        }
        free(got);
    }
    for (unsigned k = 0; k < nsnaps; k++)
        free(snaps[k].data);
}

START_TEST(shared_metadata)
{
    run_shared("", false);
}
END_TEST

/* Snapshots and resizes while four threads keep writing (quiesce). */
START_TEST(shared_metadata_live)
{
    run_shared("", true);
}
END_TEST

START_TEST(shared_metadata_live_extended_l2)
{
    run_shared("-o extended_l2=on", true);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    const char *ops = getenv("VDISK_STRESS_OPS");
    if (ops && atoi(ops) > 0)
        OPS = atoi(ops);
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("stress-qcow2-async");
    TCase *tc = tcase_create("async");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, many_in_flight);
    tcase_add_test(tc, many_in_flight_small_clusters);
    tcase_add_test(tc, many_in_flight_extended_l2);
    tcase_add_test(tc, shared_metadata);
    tcase_add_test(tc, shared_metadata_live);
    tcase_add_test(tc, shared_metadata_live_extended_l2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
