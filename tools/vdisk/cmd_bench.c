/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_bench.c: vdisk bench, qemu-img bench on the asynchronous
 * queue.
 *
 * COUNT requests of BUFFER_SIZE bytes, DEPTH of them in flight at once:
 * each completion callback starts the next request, and the main loop only
 * reaps.  Offsets step by STEP_SIZE from OFFSET and wrap before the end of
 * the image as qemu-img bench's do (qemu master: modulo image size minus
 * buffer size); --random picks them uniformly at random instead.  Flushes
 * every FLUSH_INTERVAL requests follow qemu-img's bench_cb() exactly,
 * including the drained flush that waits for the queue to empty.
 *
 * Output is qemu-img bench's:
 *   Sending 75000 read requests, 4096 bytes each, 64 in parallel (starting at
 *   offset 0, step size 4096)
 *   [Sending flush every N requests]
 *   Run completed in 1.234 seconds.
 * plus, with --random, a line with IOPS and MiB/s.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define BUF_ALIGN 4096
#define QUEUE_DEPTH_MAX 4096 /* vdisk_queue_new's limit; the rest waits in the queue */
#define DEFAULT_SEED 1

struct bench;

/* One in-flight slot: a buffer that one request at a time uses. */
struct slot {
    struct bench *b;
    struct iovec iov;
};

struct bench {
    vdisk_queue *q;
    uint64_t image_size;
    uint64_t bufsize;
    uint64_t step;
    uint64_t offset;         /* the next sequential offset */
    int nrreq;               /* depth */
    int n;                   /* requests not yet completed */
    int in_flight;
    bool write;
    int flush_interval;
    bool drain_on_flush;
    bool failed;

    bool random;
    uint64_t rand_base;      /* random offsets: rand_base + k * bufsize */
    uint64_t rand_slots;     /* ... for k in [0, rand_slots) */
    uint64_t rng[4];         /* xoshiro256** state */

    struct slot *slots;
    int *free_slots;         /* a stack of free slot indices */
    int nfree;
};

/* ---- Random offsets --------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, n), n > 0, without modulo bias (Lemire's method). */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    unsigned __int128 m = (unsigned __int128)rng_next(s) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (unsigned __int128)rng_next(s) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

static uint64_t next_offset(struct bench *b)
{
    if (b->random)
        return b->rand_base + rng_below(b->rng, b->rand_slots) * b->bufsize;
    uint64_t off = b->offset;
    /* As current qemu-img bench: wrap so that the next request fits (older
     * versions wrap at the image size and fail on a request crossing it). */
    b->offset += b->step;
    if (b->image_size <= b->bufsize)
        b->offset = 0;
    else
        b->offset %= b->image_size - b->bufsize;
    return off;
}

/* ---- The request machine (qemu-img's bench_cb) ------------------------------ */

static void fail(struct bench *b, const char *what)
{
    if (!b->failed)
        cli_error("%s: %s", what, vdisk_get_error());
    b->failed = true;
}

static void rw_done(void *user, int ret);

/*
 * Starts requests until DEPTH are in flight (or none are left to start) and
 * hands them to the kernel, as an event loop does.  From a completion
 * callback, vdisk_queue_submit() leaves them to the reap, which hands what
 * the batch of callbacks started to the kernel in one system call when the
 * batch has run.
 */
static void submit_more(struct bench *b)
{
    bool started = false;
    while (!b->failed && b->n > b->in_flight && b->in_flight < b->nrreq) {
        struct slot *s = &b->slots[b->free_slots[--b->nfree]];
        uint64_t off = next_offset(b);
        b->in_flight++;
        int r = b->write ? vdisk_aio_pwritev(b->q, &s->iov, 1, off, 0, rw_done, s)
                         : vdisk_aio_preadv(b->q, &s->iov, 1, off, 0, rw_done, s);
        if (r < 0) {
            b->in_flight--;
            b->free_slots[b->nfree++] = (int)(s - b->slots);
            fail(b, "Failed request");
            return;
        }
        started = true;
    }
    if (started && vdisk_queue_submit(b->q) < 0)
        fail(b, "Failed to submit requests");
}

static void undrained_flush_done(void *user, int ret)
{
    if (ret < 0)
        fail(user, "Failed flush request");
}

static void drained_flush_done(void *user, int ret)
{
    struct bench *b = user;
    if (ret < 0) {
        fail(b, "Failed flush request");
        return;
    }
    submit_more(b);
}

static void rw_done(void *user, int ret)
{
    struct slot *s = user;
    struct bench *b = s->b;
    b->free_slots[b->nfree++] = (int)(s - b->slots);
    if (ret < 0) {
        b->in_flight--;
        fail(b, "Failed request");
        return;
    }
    int remaining = b->n - b->in_flight;
    b->n--;
    b->in_flight--;
    /* Time for a flush?  Drain the queue first unless --no-drain. */
    if (b->flush_interval && remaining % b->flush_interval == 0) {
        if (!b->in_flight || !b->drain_on_flush) {
            int r;
            if (b->drain_on_flush) {
                r = vdisk_aio_flush(b->q, drained_flush_done, b);
            } else {
                r = vdisk_aio_flush(b->q, undrained_flush_done, b);
            }
            if (r < 0 || (r = vdisk_queue_submit(b->q)) < 0) {
                fail(b, "Failed to issue flush request");
                return;
            }
        }
        if (b->drain_on_flush)
            return;
    }
    submit_more(b);
}

/* ---- Options ---------------------------------------------------------------- */

/* A plain integer (decimal, 0x hex or 0 octal) in [MIN, MAX], as qemu-img
 * parses counts; prints qemu-img's message and returns -1 otherwise. */
static int64_t parse_int(const char *name, const char *s, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-' || *s == ' ') {
        cli_error("Invalid %s specified: '%s'.", name, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 0);
    if (*end || end == s) {
        cli_error("Invalid %s specified: '%s'.", name, s);
        return -1;
    }
    if (errno == ERANGE || v < (unsigned long long)min || v > (unsigned long long)max) {
        cli_error("Invalid %s specified. Must be between %" PRId64 " and %" PRId64 ".", name,
                  min, max);
        return -1;
    }
    return (int64_t)v;
}

/* A size with an optional suffix (k, M, G, ...) in [MIN, MAX]. */
static int64_t parse_sz(const char *name, const char *s, int64_t min, int64_t max)
{
    uint64_t v;
    int r = vdisk_parse_size(s, 1, &v);
    if (r == -EINVAL) {
        cli_error("Invalid %s specified: '%s'.", name, s);
        return -1;
    }
    if (r < 0 || v < (uint64_t)min || v > (uint64_t)max) {
        cli_error("Invalid %s specified. Must be between %" PRId64 " and %" PRId64 ".", name,
                  min, max);
        return -1;
    }
    return (int64_t)v;
}

static const char *parse_cache(const char *v)
{
    static const char *const modes[] = {"none", "writeback", "writethrough", "directsync",
                                        "unsafe"};
    if (strcmp(v, "off") == 0)
        return "none";
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(v, modes[i]) == 0)
            return modes[i];
    return NULL;
}

static void help(void)
{
    printf(
        "usage: vdisk bench [-c COUNT] [-d DEPTH] [-f FMT] [--flush-interval=N] [-i AIO]\n"
        "                   [-n] [--no-drain] [-o OFFSET] [--pattern=BYTE] [-q]\n"
        "                   [-s BUFFER_SIZE] [-S STEP_SIZE] [-t CACHE] [-w] [-U] [--image-opts]\n"
        "                   [--random[=SEED]] FILE\n"
        "\n"
        "Runs a simple I/O benchmark on the image FILE, as qemu-img bench does:\n"
        "COUNT read requests (write requests with -w) of BUFFER_SIZE bytes each,\n"
        "DEPTH of them in flight at once on one asynchronous queue.  The first\n"
        "request starts at OFFSET and each following one STEP_SIZE bytes further,\n"
        "wrapping back before the end of the image.  Prints the time the run took.\n"
        "\n"
        "  -c COUNT          number of requests (default 75000)\n"
        "  -d DEPTH          requests in flight at once (default 64)\n"
        "  -f FMT            the image's format (probed when not given)\n"
        "  --flush-interval=N  (with -w) flush whenever the number of requests\n"
        "                    left is a multiple of N (N >= DEPTH), first waiting\n"
        "                    for the queue to drain\n"
        "  --no-drain        flush without draining the queue first\n"
        "  -i AIO            I/O engine: io_uring, native (the same as io_uring),\n"
        "                    threads, or auto (default: auto, or VDISK_ENGINE)\n"
        "  -n                native AIO: the io_uring engine; like qemu-img, which\n"
        "                    needs O_DIRECT for native AIO, it implies -t none\n"
        "                    unless -t is given\n"
        "  -o OFFSET         offset of the first request (default 0)\n"
        "  --pattern=BYTE    byte that write buffers are filled with (default 0)\n"
        "  -q                quiet; accepted for compatibility (as in qemu-img\n"
        "                    bench, the results are still printed)\n"
        "  -s BUFFER_SIZE    bytes per request (default 4K)\n"
        "  -S STEP_SIZE      bytes between the offsets of consecutive requests\n"
        "                    (default: BUFFER_SIZE)\n"
        "  -t CACHE          none, writeback (default), writethrough, directsync or\n"
        "                    unsafe; none and directsync bypass the page cache\n"
        "  -w                write instead of read (the image is opened read-only\n"
        "                    otherwise)\n"
        "  -U                force share: read even while another process writes\n"
        "                    FILE (not with -w)\n"
        "  --random[=SEED]   (vdisk only) each request's offset is drawn uniformly\n"
        "                    at random among the multiples of BUFFER_SIZE past\n"
        "                    OFFSET that fit in the image, from a generator seeded\n"
        "                    with SEED (default 1): the same seed gives the same\n"
        "                    offsets.  STEP_SIZE is ignored.  Also prints IOPS and\n"
        "                    MiB/s.\n"
        "\n"
        "Sizes take the suffixes k, M, G, T, P and E (powers of 1024).  Buffers are\n"
        "aligned to 4096 bytes, one per request in flight.  Exits 1 on any error.\n");
}

/* ---- The command ------------------------------------------------------------ */

enum {
    OPT_FLUSH_INTERVAL = 256,
    OPT_NO_DRAIN,
    OPT_PATTERN,
    OPT_RANDOM,
};

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cmd_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL},
        {"no-drain", no_argument, NULL, OPT_NO_DRAIN},
        {"pattern", required_argument, NULL, OPT_PATTERN},
        {"force-share", no_argument, NULL, 'U'},
        {"random", optional_argument, NULL, OPT_RANDOM},
        {NULL, 0, NULL, 0},
    };
    int64_t count = 75000, depth = 64, offset = 0, bufsize = 4096, step = 0;
    int64_t pattern = 0, flush_interval = 0;
    bool drain_on_flush = true, is_write = false, native = false, random = false;
    uint64_t seed = DEFAULT_SEED;
    struct open_args oa = {0};
    int c;

    bool image_opts = false;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hc:d:f:i:no:qs:S:t:wU", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case 'h':
            help();
            return 0;
        case 'c':
            if ((count = parse_int("request count", optarg, 1, INT_MAX)) < 0)
                return 1;
            break;
        case 'd':
            if ((depth = parse_int("queue depth", optarg, 1, INT_MAX)) < 0)
                return 1;
            break;
        case 'f':
            oa.format = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "io_uring") == 0 || strcmp(optarg, "native") == 0 ||
                strcmp(optarg, "uring") == 0) {
                oa.engine = "uring";
            } else if (strcmp(optarg, "threads") == 0 || strcmp(optarg, "auto") == 0) {
                oa.engine = optarg;
            } else {
                cli_error("Invalid aio option: %s", optarg);
                return 1;
            }
            break;
        case 'n':
            native = true;
            break;
        case 'o':
            if ((offset = parse_sz("offset", optarg, 0, INT64_MAX)) < 0)
                return 1;
            break;
        case 'q':
            break;
        case 's':
            if ((bufsize = parse_sz("buffer size", optarg, 1, INT_MAX)) < 0)
                return 1;
            break;
        case 'S':
            if ((step = parse_sz("step size", optarg, 0, INT_MAX)) < 0)
                return 1;
            break;
        case 't':
            if (!(oa.cache = parse_cache(optarg))) {
                cli_error("Invalid cache mode: %s", optarg);
                return 1;
            }
            break;
        case 'w':
            is_write = true;
            break;
        case 'U':
            oa.force_share = true;
            break;
        case OPT_FLUSH_INTERVAL:
            if ((flush_interval = parse_int("flush interval", optarg, 0, INT_MAX)) < 0)
                return 1;
            break;
        case OPT_NO_DRAIN:
            drain_on_flush = false;
            break;
        case OPT_PATTERN:
            if ((pattern = parse_int("pattern byte", optarg, 0, 0xff)) < 0)
                return 1;
            break;
        case OPT_RANDOM:
            random = true;
            if (optarg) {
                int64_t s = parse_int("random seed", optarg, 0, INT64_MAX);
                if (s < 0)
                    return 1;
                seed = (uint64_t)s;
            }
            break;
        case ':':
            cli_error("option '%s' requires an argument (see 'vdisk bench --help')",
                      argv[optind - 1]);
            return 1;
        default:
            if (optopt && optopt < 256)
                cli_error("invalid option -- '%c' (see 'vdisk bench --help')", optopt);
            else
            {
                cli_error("unrecognized option '%s' (see 'vdisk bench --help')",
                          argv[optind - 1]);
                cli_print_option_hint();
            }
            return 1;
        }
    }
    if (optind != argc - 1) {
        cli_error("Expecting one image file name");
        return 1;
    }
    if (native) {
        if (!oa.engine)
            oa.engine = "uring";
        if (!oa.cache)
            oa.cache = "none";
    }
    if (flush_interval && !is_write) {
        cli_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        cli_error("Flush interval can't be smaller than depth");
        return 1;
    }
    oa.read_only = !is_write;

    if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
        return 1;
    vdisk_dev *dev = cli_open(argv[optind], &oa);
    if (!dev)
        return 1;

    int ret = 1;
    struct bench b = {
        .image_size = vdisk_get_size(dev),
        .bufsize = (uint64_t)bufsize,
        .step = step ? (uint64_t)step : (uint64_t)bufsize,
        .offset = (uint64_t)offset,
        .nrreq = (int)depth,
        .n = (int)count,
        .write = is_write,
        .flush_interval = (int)flush_interval,
        .drain_on_flush = drain_on_flush,
        .random = random,
    };
    uint8_t *bufs = NULL;
    if (random) {
        b.rand_base = (uint64_t)offset;
        b.rand_slots = b.image_size > b.rand_base ? (b.image_size - b.rand_base) / b.bufsize : 0;
        if (b.rand_slots == 0) {
            cli_error("%s: no room for a %" PRIu64 "-byte request between offset %" PRIu64
                      " and the end of the image (%" PRIu64 " bytes)",
                      argv[optind], b.bufsize, b.rand_base, b.image_size);
            goto out;
        }
        uint64_t x = seed;
        for (int i = 0; i < 4; i++)
            b.rng[i] = splitmix64(&x);
    }

    /* One buffer per request that can be in flight. */
    int nslots = count < depth ? (int)count : (int)depth;
    size_t stride = ((size_t)bufsize + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
    b.slots = calloc((size_t)nslots, sizeof *b.slots);
    b.free_slots = calloc((size_t)nslots, sizeof *b.free_slots);
    if (!b.slots || !b.free_slots || (size_t)nslots > SIZE_MAX / stride ||
        posix_memalign((void **)&bufs, BUF_ALIGN, (size_t)nslots * stride) != 0) {
        bufs = NULL;
        cli_error("Out of memory for %d buffers of %" PRId64 " bytes", nslots, bufsize);
        goto out;
    }
    memset(bufs, (int)pattern, (size_t)nslots * stride);
    for (int i = 0; i < nslots; i++) {
        b.slots[i].b = &b;
        b.slots[i].iov.iov_base = bufs + (size_t)i * stride;
        b.slots[i].iov.iov_len = (size_t)bufsize;
        b.free_slots[i] = nslots - 1 - i;
    }
    b.nfree = nslots;

    int r = vdisk_queue_new(&b.q, dev, depth > QUEUE_DEPTH_MAX ? QUEUE_DEPTH_MAX
                                                               : (unsigned)depth);
    if (r < 0) {
        cli_lib_error();
        goto out;
    }

    if (random)
        printf("Sending %d %s requests, %" PRIu64 " bytes each, %d in parallel "
               "(random offsets from %" PRIu64 " to %" PRIu64 ", seed %" PRIu64 ")\n",
               b.n, is_write ? "write" : "read", b.bufsize, b.nrreq, b.rand_base,
               b.rand_base + b.rand_slots * b.bufsize, seed);
    else
        printf("Sending %d %s requests, %" PRIu64 " bytes each, %d in parallel "
               "(starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
               b.n, is_write ? "write" : "read", b.bufsize, b.nrreq, b.offset, b.step);
    if (flush_interval)
        printf("Sending flush every %d requests\n", b.flush_interval);
    fflush(stdout);

    double t0 = now_sec();
    submit_more(&b);
    while (b.n > 0 && !b.failed) {
        r = vdisk_queue_reap(b.q, 1, -1);
        if (r < 0) {
            fail(&b, "Failed to reap requests");
        } else if (r == 0 && vdisk_queue_in_flight(b.q) == 0) {
            cli_error("bench: %d requests left but none in flight", b.n);
            b.failed = true;
        }
    }
    double t1 = now_sec();
    /* A flush may still be in flight (the last drained one, or --no-drain's);
     * like qemu-img, the run's time does not include it. */
    if (!b.failed && (r = vdisk_queue_drain(b.q)) < 0)
        fail(&b, "Failed to drain the queue");
    if (b.failed)
        goto out;

    double secs = t1 - t0;
    printf("Run completed in %3.3f seconds.\n", secs);
    if (random) {
        double iops = secs > 0 ? (double)count / secs : 0;
        printf("IOPS: %.0f, bandwidth: %.2f MiB/s\n", iops,
               iops * (double)b.bufsize / (1024.0 * 1024.0));
    }
    ret = 0;
out:
    vdisk_queue_free(b.q); /* completes what is still in flight */
    free(bufs);
    free(b.slots);
    free(b.free_slots);
    vdisk_close(dev);
    return ret;
}
