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
 * VDISK_STRESS_OPS sets the requests per thread (default 20000; the
 * ThreadSanitizer pass of tests/run-all.sh uses fewer).  Each run is bounded
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

static int OPS = 20000;

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

static void done(void *user, int ret)
{
    struct op *o = user;
    struct worker *w = o->w;
    if (ret < 0 && !w->failures++)
        snprintf(w->first_failure, sizeof w->first_failure, "op %d at %llu+%llu: %s", o->kind,
                 (unsigned long long)o->off, (unsigned long long)o->len, vdisk_get_error());
    if (ret == 0 && o->kind == 0 && memcmp(o->buf, model + o->off, o->len) != 0) {
        uint64_t i = 0;
        while (o->buf[i] == model[o->off + i])
            i++;
        if (!w->failures++)
            snprintf(w->first_failure, sizeof w->first_failure,
                     "read at %llu+%llu: byte %llu is 0x%02x, the model says 0x%02x",
                     (unsigned long long)o->off, (unsigned long long)o->len,
                     (unsigned long long)(o->off + i), o->buf[i], model[o->off + i]);
    }
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

static void run_on(const char *create_opts, uint64_t cluster)
{
    CLUSTER = cluster;
    const char *base = scratch("base.qcow2"), *img = scratch("top.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' %u", base, SIZE);
    RUN_OK("qemu-io -c 'write -q -P 0x5b 0 %u' '%s'", SIZE / 2, base);
    RUN_OK("%s create -q -f qcow2 %s -b base.qcow2 -F qcow2 '%s'", vdisk_bin(), create_opts, img);
    memset(model, 0, sizeof model);
    memset(model, 0x5b, SIZE / 2);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
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
    suite_add_tcase(s, tc);
    return run_suite(s);
}
