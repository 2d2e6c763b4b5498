/* SPDX-License-Identifier: MIT */
/*
 * tests/bench/queue.c: bench-queue, the asynchronous queue's own cost per
 * request, without a disk: requests on a memory device (the library's
 * internal "memory" protocol driver, which completes each request from
 * inside the driver's submit with one copy of its bytes), at a fixed depth
 * from one thread, in the request loop of qemu-img bench: each completion
 * callback starts the next request, the main loop only reaps.  So what the
 * run costs is the queue (vdisk_aio_*, submit, completion, reap, callback)
 * plus one memcpy per request: a regression in the core shows here without
 * the disk's noise.  tests/bench/queue.sh runs it against qemu-img bench on
 * QEMU's null-co driver.
 *
 * usage: bench-queue [-c COUNT] [-d DEPTH] [-s BUFFER_SIZE] [-S STEP]
 *                    [-z DEVICE_SIZE] [-i uring|threads] [-w]
 *
 * Output, like qemu-img bench's, then the rates:
 *   Sending 1000000 read requests, 4096 bytes each, 32 in parallel (...)
 *   Run completed in 0.512 seconds.
 *   requests/s: 1953125; CPU per request: 0.51 us (user 0.40, system 0.11)
 * The CPU time is getrusage(RUSAGE_SELF) across the run only (not the
 * device's setup).  Built with the tests, not run by CTest.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <vdisk/queue.h>
#include <vdisk/vdisk.h>

#include "internal.h"

struct bench;

struct slot {
    struct bench *b;
    struct iovec iov;
};

struct bench {
    vdisk_queue *q;
    uint64_t size, bufsize, step, offset;
    long n;          /* requests not yet completed */
    long in_flight;
    long depth;
    bool write;
    bool failed;
    struct slot *slots;
    int *free_slots;
    int nfree;
};

static void rw_done(void *user, int ret);

static void submit_more(struct bench *b)
{
    bool started = false;
    while (!b->failed && b->n > b->in_flight && b->in_flight < b->depth) {
        struct slot *s = &b->slots[b->free_slots[--b->nfree]];
        uint64_t off = b->offset;
        /* As vdisk bench and current qemu-img bench wrap. */
        b->offset += b->step;
        b->offset = b->size <= b->bufsize ? 0 : b->offset % (b->size - b->bufsize);
        b->in_flight++;
        int r = b->write ? vdisk_aio_pwritev(b->q, &s->iov, 1, off, 0, rw_done, s)
                         : vdisk_aio_preadv(b->q, &s->iov, 1, off, 0, rw_done, s);
        if (r < 0) {
            fprintf(stderr, "bench-queue: request at %" PRIu64 ": %s\n", off, vdisk_get_error());
            b->failed = true;
            return;
        }
        started = true;
    }
    if (started && vdisk_queue_submit(b->q) < 0) {
        fprintf(stderr, "bench-queue: submit: %s\n", vdisk_get_error());
        b->failed = true;
    }
}

static void rw_done(void *user, int ret)
{
    struct slot *s = user;
    struct bench *b = s->b;
    b->free_slots[b->nfree++] = (int)(s - b->slots);
    b->in_flight--;
    if (ret < 0) {
        fprintf(stderr, "bench-queue: request failed: %s\n", vdisk_get_error());
        b->failed = true;
        return;
    }
    b->n--;
    submit_more(b);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_sec(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static long long parse(const char *what, const char *s, long long min, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'M')
        mul = 1024 * 1024, end++;
    else if (*end == 'G')
        mul = 1024 * 1024 * 1024, end++;
    if (errno || end == s || *end || v < 0 || v > max / mul || v * mul < min) {
        fprintf(stderr, "bench-queue: invalid %s: '%s' (%lld..%lld)\n", what, s, min, max);
        exit(2);
    }
    return v * mul;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench-queue [-c COUNT] [-d DEPTH] [-s BUFFER_SIZE] [-S STEP]\n"
            "                   [-z DEVICE_SIZE] [-i uring|threads] [-w]\n"
            "COUNT requests (default 1000000) of BUFFER_SIZE bytes (default 4k), DEPTH\n"
            "(default 32) in flight, offsets STEP bytes apart (default BUFFER_SIZE)\n"
            "wrapping round a memory device of DEVICE_SIZE bytes (default 64M), on a\n"
            "queue of the given engine (default uring); -w writes.\n");
}

int main(int argc, char **argv)
{
    long long count = 1000000, depth = 32, bufsize = 4096, step = 0, size = 64 << 20;
    bool write = false;
    enum vdisk_engine_kind engine = VDISK_ENGINE_URING;
    int c;
    while ((c = getopt(argc, argv, "c:d:s:S:z:i:wh")) != -1) {
        switch (c) {
        case 'c': count = parse("count", optarg, 1, 1LL << 40); break;
        case 'd': depth = parse("depth", optarg, 1, 4096); break;
        case 's': bufsize = parse("buffer size", optarg, 1, 1 << 24); break;
        case 'S': step = parse("step", optarg, 0, 1LL << 40); break;
        case 'z': size = parse("device size", optarg, 4096, 1LL << 34); break;
        case 'i':
            if (strcmp(optarg, "uring") == 0 || strcmp(optarg, "io_uring") == 0) {
                engine = VDISK_ENGINE_URING;
            } else if (strcmp(optarg, "threads") == 0) {
                engine = VDISK_ENGINE_THREADS;
            } else {
                fprintf(stderr, "bench-queue: engine: uring or threads, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'w': write = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || bufsize > size) {
        usage(stderr);
        return 2;
    }

    /* The device's contents: a pattern, so that reads copy real bytes. */
    uint8_t *init = malloc((size_t)size);
    if (!init) {
        fprintf(stderr, "bench-queue: out of memory for %lld bytes\n", size);
        return 1;
    }
    for (long long i = 0; i < size; i++)
        init[i] = (uint8_t)(i * 131 + 7);
    struct vdisk_open_params p = {
        .read_only = !write,
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = engine,
        .threads = 1,
    };
    struct vdisk_dev *dev;
    if (dev_open_memory(&dev, init, (size_t)size, (uint64_t)size, &p) < 0) {
        fprintf(stderr, "bench-queue: memory device: %s\n", vdisk_get_error());
        free(init);
        return 1;
    }
    free(init);

    struct bench b = {
        .size = (uint64_t)size,
        .bufsize = (uint64_t)bufsize,
        .step = step ? (uint64_t)step : (uint64_t)bufsize,
        .n = (long)count,
        .depth = (long)depth,
        .write = write,
    };
    int nslots = (int)(count < depth ? count : depth);
    size_t stride = ((size_t)bufsize + 4095) / 4096 * 4096;
    uint8_t *bufs = NULL;
    b.slots = calloc((size_t)nslots, sizeof *b.slots);
    b.free_slots = calloc((size_t)nslots, sizeof *b.free_slots);
    if (!b.slots || !b.free_slots ||
        posix_memalign((void **)&bufs, 4096, (size_t)nslots * stride) != 0) {
        fprintf(stderr, "bench-queue: out of memory for the buffers\n");
        return 1;
    }
    memset(bufs, 0x5a, (size_t)nslots * stride);
    for (int i = 0; i < nslots; i++) {
        b.slots[i].b = &b;
        b.slots[i].iov.iov_base = bufs + (size_t)i * stride;
        b.slots[i].iov.iov_len = (size_t)bufsize;
        b.free_slots[i] = nslots - 1 - i;
    }
    b.nfree = nslots;
    int r = vdisk_queue_new(&b.q, dev, (unsigned)depth);
    if (r < 0) {
        fprintf(stderr, "bench-queue: queue: %s\n", vdisk_get_error());
        return 1;
    }

    printf("Sending %lld %s requests, %lld bytes each, %lld in parallel (starting at offset 0, "
           "step size %" PRIu64 "), memory device of %lld bytes, %s engine\n",
           count, write ? "write" : "read", bufsize, depth, b.step, size,
           vdisk_queue_engine(b.q));
    fflush(stdout);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_sec();
    submit_more(&b);
    while (b.n > 0 && !b.failed) {
        r = vdisk_queue_reap(b.q, 1, -1);
        if (r < 0) {
            fprintf(stderr, "bench-queue: reap: %s\n", vdisk_get_error());
            b.failed = true;
        } else if (r == 0 && vdisk_queue_in_flight(b.q) == 0) {
            fprintf(stderr, "bench-queue: %ld requests left but none in flight\n", b.n);
            b.failed = true;
        }
    }
    double t1 = now_sec();
    getrusage(RUSAGE_SELF, &ru1);
    int ret = b.failed ? 1 : 0;
    if (!b.failed) {
        double secs = t1 - t0;
        double user = tv_sec(ru1.ru_utime) - tv_sec(ru0.ru_utime);
        double sys = tv_sec(ru1.ru_stime) - tv_sec(ru0.ru_stime);
        printf("Run completed in %3.3f seconds.\n", secs);
        printf("requests/s: %.0f; CPU per request: %.3f us (user %.3f, system %.3f)\n",
               secs > 0 ? (double)count / secs : 0, (user + sys) * 1e6 / (double)count,
               user * 1e6 / (double)count, sys * 1e6 / (double)count);
    }
    vdisk_queue_free(b.q);
    vdisk_close(dev);
    free(bufs);
    free(b.slots);
    free(b.free_slots);
    return ret;
}
