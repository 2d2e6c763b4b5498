/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_convert.c: vdisk convert, as qemu-img convert.
 *
 * The sources (concatenated) are copied to the target in chunks.  Chunks
 * whose source extents read as zeroes are skipped (or zeroed on an existing
 * target); runs of zeroes of at least -S bytes inside read data are not
 * written, so the output stays sparse.  -S 0 reads and writes everything,
 * so that the output is fully allocated.  Reads and writes run on
 * asynchronous queues, many chunks in flight.  With -c, a pool of threads
 * (one per core) reads and compresses 4 MiB at a time, and the main
 * thread stores it in order, runs of compressed clusters with one write,
 * so that the output is the same whatever the timing.  With -B, only clusters
 * that differ from the given backing file are written.
 *
 * -C copies the sources' data as it is (no zero detection inside it, as
 * qemu-img's copy offloading), with copy_file_range(2) from a raw file to
 * a raw file; where the kernel refuses it (another file system, an old
 * kernel), by reading and writing.  --salvage reads a range that fails
 * again a sector at a time, warns of each sector that cannot be read and
 * writes zeroes for it.  --target-is-zero (with -n) writes no zeroes.
 * -r limits the bytes of data written per second.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "partpath.h"

#define MAX_SOURCES 64

struct src {
    vdisk_dev *dev;
    uint64_t start, size;   /* where it lies in the concatenation */
};

/* Files that the target must not be: the sources and their backing files. */
struct file_id {
    dev_t dev;
    ino_t ino;
    const char *name;        /* the source (or -B file) it belongs to */
    int kind;                /* 0 a source, 1 a backing file of one, 2 -B's chain */
};
#define MAX_INPUT_FILES (MAX_SOURCES * 8)

struct conv {
    struct src srcs[MAX_SOURCES];
    int nsrc;
    uint64_t total;
    vdisk_dev *dst;
    vdisk_dev *backing;      /* -B: compare with it */
    uint64_t cluster;        /* the target's cluster (or 64 KiB) */
    uint64_t chunk;
    uint64_t sparse;         /* -S */
    bool target_fresh;       /* created now: unwritten areas read as zeroes */
    bool compress;
    bool progress;
    unsigned parallel;       /* -m */
    bool out_of_order;       /* -W: a chunk is written as soon as it is read */
    struct slot *slots;      /* the plain copy's chunks in work */
    bool copy_range;         /* -C */
    int cr_src[MAX_SOURCES]; /* -C: the raw sources' files, or -1 */
    int cr_dst;              /* -C: the raw target's file, or -1 */
    bool salvage;            /* --salvage */
    bool quiet;              /* -q */
    uint64_t rate;           /* -r: bytes of data per second, 0 no limit */
    uint64_t rate_bytes;     /* written so far under -r */
    struct timespec rate_start;
    int error;
    uint64_t done;           /* -p: data bytes copied so far */
    uint64_t data_total;     /* -p: the data bytes to copy */
    float last_print;        /* -p: the share printed last */
};

/* ---- Progress ------------------------------------------------------------- */

/* -p as qemu-img prints it: "    (N.NN/100%)" and a carriage return, when
 * the share moved by more than one point since the last print, and at 0 and
 * 100; the share is of the sources' data (zero extents count only with
 * -S 0, where they are written), as qemu-img counts it. */
static void progress_print(struct conv *c, float current)
{
    if (!c->progress)
        return;
    if (current > c->last_print + 1.0f || current < c->last_print - 1.0f || current == 0.0f ||
        current == 100.0f) {
        c->last_print = current;
        printf("    (%3.2f/100%%)\r", (double)current);
        fflush(stdout);
    }
}

static uint64_t data_bytes(struct conv *c, uint64_t off, uint64_t len);

/* The data bytes of a chunk of LEN bytes at OFF, for the progress. */
static uint64_t chunk_data(struct conv *c, uint64_t off, uint64_t len)
{
    return c->progress ? data_bytes(c, off, len) : 0;
}

/* N bytes of data are done (chunk_data()). */
static void progress(struct conv *c, uint64_t n)
{
    if (!c->progress || !n || !c->data_total)
        return;
    c->done += n;
    progress_print(c, (float)(100.0 * (double)c->done / (double)c->data_total));
}

/* ---- Reading the concatenated sources ------------------------------------ */

static struct src *source_at(struct conv *c, uint64_t off)
{
    for (int i = 0; i < c->nsrc; i++)
        if (off >= c->srcs[i].start && off < c->srcs[i].start + c->srcs[i].size)
            return &c->srcs[i];
    return NULL;
}

/* The status of the sources at OFF: 1 zeroes (for *len bytes), 0 data. */
static int source_zero(struct conv *c, uint64_t off, uint64_t max, uint64_t *len)
{
    struct src *s = source_at(c, off);
    uint64_t in = off - s->start, n = s->size - in < max ? s->size - in : max;
    struct vdisk_extent e;
    if (vdisk_block_status(s->dev, in, n, &e) < 0) {
        *len = n;
        return 0;
    }
    *len = e.length;
    return (e.flags & VDISK_EXT_ZERO) && !(e.flags & VDISK_EXT_DATA) ? 1 : 0;
}

/* The bytes of LEN at OFF (in the concatenation) that are the sources'
 * data (all of them with -S 0: zeroes are written too). */
static uint64_t data_bytes(struct conv *c, uint64_t off, uint64_t len)
{
    if (c->sparse == UINT64_MAX)
        return len;
    uint64_t n = 0;
    while (len) {
        uint64_t z = 0;
        int zero = source_zero(c, off, len, &z);
        if (!z || z > len) {
            z = len;
            zero = 0;
        }
        if (!zero)
            n += z;
        off += z;
        len -= z;
    }
    return n;
}

/* A read of the sources failed at OFF (in the concatenation): qemu-img's
 * words, then the library's detail. */
static void read_error_at(uint64_t off)
{
    cli_error("error while reading at byte %" PRIu64 ": %s", off, cli_lib_detail());
}

/* A read of LEN bytes at OFF (in the concatenation) failed: the error of
 * its first sector that fails alone, as qemu-img, whose reads follow the
 * sources' extents, names where the bad data begins. */
static void read_error(struct conv *c, uint64_t off, uint64_t len)
{
    uint8_t sector[512];
    for (uint64_t pos = 0; pos < len; pos += 512) {
        struct src *s = source_at(c, off + pos);
        uint64_t in = off + pos - s->start;
        uint64_t n = len - pos < 512 ? len - pos : 512;
        if (s->size - in < n)
            n = s->size - in;
        if (vdisk_pread(s->dev, sector, n, in) < 0) {
            read_error_at(off + pos);
            return;
        }
    }
    read_error_at(off); /* (it failed once: the first read's words are gone) */
}

/* --salvage: LEN bytes at IN of source S, whose read failed, again a
 * sector at a time; a sector that cannot be read reads as zeroes, with
 * qemu-img's warning (its offset in the source). */
static void salvage(struct conv *c, struct src *s, uint8_t *buf, uint64_t in, uint64_t len)
{
    for (uint64_t pos = 0; pos < len; pos += 512) {
        uint64_t n = len - pos < 512 ? len - pos : 512;
        int r = vdisk_pread(s->dev, buf + pos, n, in + pos);
        if (r < 0) {
            if (!c->quiet)
                fprintf(stderr, "%s: warning: error while reading offset %" PRIu64 ": %s\n", cli_progname,
                        in + pos, strerror(-r));
            memset(buf + pos, 0, n);
        }
    }
}

/* Reads LEN bytes at OFF of the sources; a failure is reported (with
 * --salvage, none fails). */
static int read_sources(struct conv *c, uint8_t *buf, uint64_t off, uint64_t len)
{
    while (len) {
        struct src *s = source_at(c, off);
        uint64_t in = off - s->start, n = s->size - in < len ? s->size - in : len;
        if (vdisk_pread(s->dev, buf, n, in) < 0) {
            if (c->salvage) {
                salvage(c, s, buf, in, n);
                goto next;
            }
            read_error(c, off, n);
            return -1;
        }
    next:
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* -B's view of LEN bytes at OFF into BUF: the backing file's data, zeroes
 * past its end.  Returns 0, or -1 (the library's message). */
static int read_backing(struct conv *c, uint8_t *buf, uint64_t off, uint64_t len)
{
    uint64_t bsize = vdisk_get_size(c->backing);
    uint64_t have = off < bsize ? (bsize - off < len ? bsize - off : len) : 0;
    memset(buf + have, 0, len - have);
    return have && vdisk_pread(c->backing, buf, have, off) < 0 ? -1 : 0;
}

/* -r: waits until the data written so far is paid for at the rate, then
 * counts BYTES more (so the first write goes at once, as in qemu-img's
 * throttling). */
static void throttle(struct conv *c, uint64_t bytes)
{
    if (!c->rate)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!c->rate_bytes)
        c->rate_start = now;
    double due = (double)c->rate_bytes / (double)c->rate;
    double elapsed = (double)(now.tv_sec - c->rate_start.tv_sec) +
                     (double)(now.tv_nsec - c->rate_start.tv_nsec) / 1e9;
    if (due > elapsed) {
        double wait = due - elapsed;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    c->rate_bytes += bytes;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[4096];
    while (n >= sizeof zero) {
        if (memcmp(p, zero, sizeof zero))
            return false;
        p += sizeof zero;
        n -= sizeof zero;
    }
    return n == 0 || memcmp(p, zero, n) == 0;
}

/* ---- Plain copies: reads and writes on queues ------------------------------ */

/*
 * Up to -m chunks are in work at once, each in a slot: its reads run on the
 * sources' queues (one per source, made when first read), its writes on the
 * target's.  A chunk whose reads are all done is written from the read
 * callback; the main loop waits on every queue's fd at once.  So a source
 * over the network (nbd://, rbd:) has -m reads in flight, not one.
 *
 * Writes go in the target's order, as qemu-img writes without -W: a chunk
 * is written when every chunk before it is, so the clusters a qcow2 target
 * allocates lie in guest order, the same on every run.  With -W a chunk is
 * written as soon as it is read.
 */

struct slot {
    struct conv *c;
    vdisk_queue *wq;
    uint8_t *buf;
    uint8_t *cmp;            /* -B: the backing file's data */
    uint64_t off, len;
    uint64_t scan;           /* where the search for its next run goes on */
    int scan_kind;           /* unit_kind() of the unit at scan, or -1 */
    uint64_t data;           /* -p: the data bytes in it (chunk_data()) */
    unsigned reads;          /* in flight */
    unsigned writes;         /* in flight */
    bool busy;
    bool ready;              /* read (or a zero run): its writes may start */
    bool zeroes;             /* the chunk is a zero run, written as one */
    bool salvage;            /* --salvage: a read failed */
};

static void write_chunk(struct slot *s);
static void start_writes(struct conv *c);

static void fail(struct conv *c, int r)
{
    if (!c->error) {
        c->error = r;
        cli_lib_error();
    }
}

/* The chunk in S is written: its slot is free, the next chunk's turn. */
static void chunk_done(struct slot *s)
{
    progress(s->c, s->data);
    s->busy = false;
    start_writes(s->c);
}

static void write_done(void *user, int ret)
{
    struct slot *s = user;
    if (ret < 0)
        fail(s->c, ret);
    if (--s->writes == 0)
        chunk_done(s);
}

static int put(struct slot *s, uint64_t off, uint64_t len, bool zero,
               void (*done)(void *user, int ret))
{
    struct conv *c = s->c;
    int r;
    s->writes++;
    if (zero) {
        r = vdisk_aio_write_zeroes(s->wq, off, len, VDISK_REQ_MAY_UNMAP, done, s);
    } else {
        throttle(c, len);
        struct iovec v = {s->buf + (off - s->off), len};
        r = vdisk_aio_pwritev(s->wq, &v, 1, off, 0, done, s);
    }
    if (r < 0) {
        s->writes--;
        fail(c, r);
    }
    return r;
}

/* Starts the writes of the chunks that are ready and whose turn it is:
 * with -W every ready one, else the first chunk in work (the lowest
 * offset) once it is ready, the others waiting for it. */
static void start_writes(struct conv *c)
{
    for (;;) {
        struct slot *first = NULL, *go = NULL;
        for (unsigned i = 0; i < c->parallel; i++) {
            struct slot *s = &c->slots[i];
            if (!s->busy)
                continue;
            if (c->out_of_order && s->ready) {
                go = s;
                break;
            }
            if (!first || s->off < first->off)
                first = s;
        }
        if (!go && first && first->ready)
            go = first;
        if (!go || c->error)
            return;
        go->ready = false;
        write_chunk(go);
        if (!c->out_of_order && go->busy)
            return; /* in flight: the next chunk waits for it */
    }
}

/* What a unit of the chunk in S needs: 0 nothing, 1 its data, 2 zeroes. */
static int unit_kind(struct slot *s, uint64_t pos, uint64_t n)
{
    struct conv *c = s->c;
    if (c->backing && memcmp(s->buf + pos, s->cmp + pos, n) == 0)
        return 0; /* the backing file shows the same */
    if (all_zero(s->buf + pos, n))
        return c->target_fresh ? 0 : 2;
    return 1;
}

/* The next run of the chunk in S that needs writing, from s->scan on:
 * *OFF, *LEN and whether it is zeroes; false when none is left.  The
 * chunk is looked at in units of -S bytes (the cluster with -B): the
 * data, less the zero runs (and, with -B, less what the backing file shows
 * already); the last unit may be shorter.  With -S 0 (and -C) the whole
 * chunk is one run of data, zeroes too; a chunk of zeroes (s->zeroes) is
 * one run of zeroes. */
static bool next_run(struct slot *s, uint64_t *off, uint64_t *len, bool *zero)
{
    struct conv *c = s->c;
    bool whole = s->zeroes || c->sparse == UINT64_MAX || (c->copy_range && !c->backing);
    uint64_t unit = whole ? s->len : c->backing ? c->cluster : c->sparse;
    while (s->scan < s->len) {
        uint64_t start = s->scan, n = s->len - start < unit ? s->len - start : unit;
        int kind = whole ? (s->zeroes ? 2 : 1)
                   : s->scan_kind >= 0 ? s->scan_kind : unit_kind(s, start, n);
        s->scan += n;
        s->scan_kind = -1;
        while (!whole && s->scan < s->len) {
            n = s->len - s->scan < unit ? s->len - s->scan : unit;
            int k = unit_kind(s, s->scan, n);
            if (k != kind) {
                s->scan_kind = k; /* (the next run's first unit) */
                break;
            }
            s->scan += n;
        }
        if (kind > 0) {
            *off = s->off + start;
            *len = s->scan - start;
            *zero = kind == 2;
            return true;
        }
    }
    return false;
}

static void seq_done(void *user, int ret);

/* In order (no -W): the chunk's runs one after the other, each started
 * when the one before it is written, as qemu-img writes them. */
static void write_step(struct slot *s)
{
    uint64_t off, len;
    bool zero;
    while (!s->c->error && next_run(s, &off, &len, &zero))
        if (put(s, off, len, zero, seq_done) == 0)
            return; /* seq_done goes on */
    chunk_done(s);
}

static void seq_done(void *user, int ret)
{
    struct slot *s = user;
    s->writes--;
    if (ret < 0)
        fail(s->c, ret);
    write_step(s);
}

/* Writes what the chunk in S needs (next_run()): with -W its runs all at
 * once, else one after the other. */
static void write_chunk(struct slot *s)
{
    struct conv *c = s->c;
    s->scan = 0;
    s->scan_kind = -1;
    if (!c->out_of_order) {
        write_step(s);
        return;
    }
    s->writes = 1; /* a guard while the writes are started */
    uint64_t off, len;
    bool zero;
    while (!c->error && next_run(s, &off, &len, &zero))
        put(s, off, len, zero, write_done);
    write_done(s, 0);
}

/* The chunk in S is read: -B's data next to it, then its writes. */
static void read_done(void *user, int ret)
{
    struct slot *s = user;
    struct conv *c = s->c;
    if (ret < 0 && c->salvage)
        s->salvage = true; /* read again below, a sector at a time where it fails */
    else if (ret < 0 && !c->error) {
        c->error = ret;
        read_error(c, s->off, s->len);
    }
    if (--s->reads)
        return;
    if (s->salvage && !c->error) {
        s->salvage = false;
        read_sources(c, s->buf, s->off, s->len); /* (never fails with --salvage) */
    }
    if (c->error) {
        s->busy = false;
        return;
    }
    if (c->backing && read_backing(c, s->cmp, s->off, s->len) < 0) {
        fail(c, -EIO); /* (the message is the backing file's) */
        s->busy = false;
        return;
    }
    s->ready = true;
    start_writes(c);
}

/* Starts the reads of the chunk in S from the sources. */
static void read_chunk(struct slot *s, vdisk_queue **rq)
{
    struct conv *c = s->c;
    uint64_t off = s->off, len = s->len;
    uint8_t *buf = s->buf;
    s->reads = 1; /* a guard while the reads are started */
    while (len && !c->error) {
        struct src *src = source_at(c, off);
        int i = (int)(src - c->srcs);
        uint64_t in = off - src->start, n = src->size - in < len ? src->size - in : len;
        if (!rq[i] && vdisk_queue_new(&rq[i], src->dev, c->parallel * 2) < 0) {
            fail(c, -EIO);
            break;
        }
        struct iovec v = {buf, n};
        s->reads++;
        int r = vdisk_aio_preadv(rq[i], &v, 1, in, 0, read_done, s);
        if (r < 0) {
            s->reads--;
            fail(c, r);
            break;
        }
        buf += n;
        off += n;
        len -= n;
    }
    read_done(s, 0);
}

/* Hands what was started to the engines, waits until a queue has
 * completions (when WAIT), and reaps them all. */
static int run_queues(struct conv *c, vdisk_queue *wq, vdisk_queue **rq, bool wait)
{
    struct pollfd pfd[MAX_SOURCES + 1];
    vdisk_queue *qs[MAX_SOURCES + 1];
    int n = 0;
    for (int i = 0; i < c->nsrc; i++)
        if (rq[i])
            qs[n++] = rq[i];
    qs[n++] = wq;
    for (int i = 0; i < n; i++) {
        if (vdisk_queue_submit(qs[i]) < 0)
            return -1;
        pfd[i].fd = vdisk_queue_get_fd(qs[i]);
        pfd[i].events = POLLIN;
        if (pfd[i].fd < 0)
            return -1;
    }
    if (wait && poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR) {
        cli_error("poll: %s", strerror(errno));
        return -1;
    }
    /* The reads first: the writes they start are reaped (or submitted) next. */
    for (int i = 0; i < n; i++)
        if (vdisk_queue_reap(qs[i], 0, 0) < 0)
            return -1;
    return vdisk_queue_submit(wq) < 0 ? -1 : 0;
}

/* -C: copies LEN bytes at OFF of the sources to the target with
 * copy_file_range(2), when they are raw files and the target is one.
 * Returns 0, or -1 to copy them by reading and writing instead (after any
 * refusal of the kernel, -C is given up for the rest, as qemu-img gives
 * it up). */
static int copy_range(struct conv *c, uint64_t off, uint64_t len)
{
    if (!c->copy_range || c->backing || c->cr_dst < 0)
        return -1;
    while (len) {
        struct src *s = source_at(c, off);
        int fd = c->cr_src[s - c->srcs];
        if (fd < 0)
            return -1;
        loff_t in = (loff_t)(off - s->start), out = (loff_t)off;
        uint64_t n = s->size - (uint64_t)in < len ? s->size - (uint64_t)in : len;
        throttle(c, n);
        while (n) {
            ssize_t r = copy_file_range(fd, &in, c->cr_dst, &out, n, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                c->copy_range = false;
                return -1;
            }
            if (r == 0)
                return -1; /* past the file's end (a size not of whole sectors) */
            n -= (uint64_t)r;
            off += (uint64_t)r;
            len -= (uint64_t)r;
        }
    }
    return 0;
}

static int copy_plain(struct conv *c)
{
    vdisk_queue *wq;
    vdisk_queue *rq[MAX_SOURCES] = {NULL};
    if (vdisk_queue_new(&wq, c->dst, c->parallel * 4) < 0) {
        cli_lib_error();
        return -1;
    }
    struct slot *slots = calloc(c->parallel, sizeof *slots);
    bool oom = !slots;
    for (unsigned i = 0; !oom && i < c->parallel; i++) {
        slots[i].c = c;
        slots[i].wq = wq;
        slots[i].buf = cli_page_alloc(c->chunk);
        slots[i].cmp = c->backing ? cli_page_alloc(c->chunk) : NULL;
        oom = !slots[i].buf || (c->backing && !slots[i].cmp);
    }
    if (oom) {
        for (unsigned i = 0; slots && i < c->parallel; i++) {
            free(slots[i].buf);
            free(slots[i].cmp);
        }
        free(slots);
        vdisk_queue_free(wq);
        cli_error("Out of memory for %u buffers of %" PRIu64 " bytes", c->parallel, c->chunk);
        return -1;
    }
    c->slots = slots;
    uint64_t off = 0;
    for (;;) {
        struct slot *s = NULL;
        bool busy = false;
        for (unsigned i = 0; i < c->parallel; i++) {
            if (slots[i].busy)
                busy = true;
            else if (!s)
                s = &slots[i];
        }
        if (c->error || (off >= c->total && !busy))
            break;
        if (!s || off >= c->total) {
            if (run_queues(c, wq, rq, true) < 0) {
                fail(c, -EIO);
                break;
            }
            continue;
        }
        uint64_t len = c->total - off < c->chunk ? c->total - off : c->chunk;
        /* Whole zero extents of the sources cost no read; on a new target
         * they cost nothing at all, however long (an image claiming an
         * exabyte converts in time proportional to what it holds). */
        uint64_t zlen = len;
        s->busy = true;
        s->off = off;
        int zero = !c->backing && c->sparse != UINT64_MAX
                   ? source_zero(c, off, c->target_fresh ? c->total - off : len, &zlen) : 0;
        /* -C copies the data extents as they are, and only them. */
        if (zero == 0 && c->copy_range && !c->backing && zlen && zlen < len)
            len = zlen;
        if (zero == 1) {
            len = c->target_fresh || zlen < len ? zlen : len;
            s->len = len;
            s->data = 0;
            if (!c->target_fresh) {
                s->zeroes = true;
                s->ready = true;
                start_writes(c);
            } else {
                /* Nothing to do: no system call either (an empty image of
                 * 2^60 bytes is millions of extents). */
                s->busy = false;
                off += len;
                continue;
            }
        } else if (copy_range(c, off, len) == 0) {
            progress(c, chunk_data(c, off, len));
            s->busy = false;
        } else {
            s->len = len;
            s->data = chunk_data(c, off, len);
            s->zeroes = false;
            read_chunk(s, rq);
        }
        off += len;
        /* What is started goes to the engines now; what completed is
         * reaped without waiting (its slot is free for the next chunk). */
        if (run_queues(c, wq, rq, false) < 0) {
            fail(c, -EIO);
            break;
        }
    }
    /* Reads still in flight (after an error) end without writing. */
    for (int i = 0; i < c->nsrc; i++)
        vdisk_queue_free(rq[i]);
    vdisk_queue_drain(wq);
    vdisk_queue_free(wq);
    for (unsigned i = 0; i < c->parallel; i++) {
        free(slots[i].buf);
        free(slots[i].cmp);
    }
    free(slots);
    c->slots = NULL;
    return c->error ? -1 : 0;
}

/* ---- Compressed copies: a pool reads and compresses, one thread stores ---- */

/*
 * The image is cut into jobs of 4 MiB (or one cluster, when clusters
 * are larger), in the file's order: the main thread lays them out (a whole
 * zero extent of the sources is one job that needs no read), the pool's
 * threads read and compress them, each cluster on its own, and the main
 * thread stores them in order: a run of compressed clusters with one call
 * (they are packed one after the other in the file, so one write), a run
 * of clusters that do not shrink with one uncompressed write.  The order
 * of the stores is fixed, so the output is the same whatever the timing.
 */

enum ckind {
    CK_PACKED,               /* compressed: clen bytes in out */
    CK_RAW,                  /* does not shrink: written as it is */
    CK_ZERO,                 /* zeroes */
    CK_SAME,                 /* -B: what the backing file shows */
};

struct cjob {
    uint64_t off, len;       /* cluster aligned; len is short only at the end */
    bool zero;               /* a zero extent of the sources: no read */
    int state;               /* 0 free, 1 to do, 2 in work, 3 done */
    int err;
    uint8_t *in, *out, *cmp; /* the data, its clusters compressed, -B's data */
    size_t *clen;
    uint8_t *kind;           /* enum ckind, per cluster */
};

struct cpool {
    struct conv *c;
    struct cjob *jobs;
    unsigned n;
    uint64_t job_size;
    uint64_t issued;         /* jobs laid out so far */
    uint64_t next_work;      /* the next job for the pool */
    bool stop;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
};

/* Reads the job's data and sorts and compresses its clusters. */
static int run_job(struct conv *c, struct cjob *j)
{
    if (read_sources(c, j->in, j->off, j->len) < 0)
        return -1; /* reported */
    if (c->backing) {
        if (read_backing(c, j->cmp, j->off, j->len) < 0) {
            cli_lib_error(); /* the message is this thread's */
            return -1;
        }
    }
    bool sparse = c->sparse != UINT64_MAX; /* -S 0 compresses zeroes too */
    for (uint64_t i = 0, pos = 0; pos < j->len; i++, pos += c->cluster) {
        uint64_t n = j->len - pos < c->cluster ? j->len - pos : c->cluster;
        if (sparse && c->backing && memcmp(j->in + pos, j->cmp + pos, n) == 0) {
            j->kind[i] = CK_SAME;
        } else if (sparse && all_zero(j->in + pos, n)) {
            j->kind[i] = CK_ZERO;
        } else {
            if (vdisk_compress(c->dst, j->in + pos, n, j->out + pos, c->cluster, &j->clen[i]) < 0) {
                cli_lib_error();
                return -1;
            }
            j->kind[i] = j->clen[i] ? CK_PACKED : CK_RAW;
        }
    }
    return 0;
}

static void *compressor(void *arg)
{
    struct cpool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->next_work >= p->issued)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stop)
            break;
        struct cjob *j = &p->jobs[p->next_work++ % p->n];
        if (j->state != 1)
            continue; /* a zero extent: nothing to do */
        j->state = 2;
        pthread_mutex_unlock(&p->lock);
        int r = run_job(p->c, j); /* (a failure is reported) */
        pthread_mutex_lock(&p->lock);
        j->err = r;
        j->state = 3;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Stores a finished job, a run of clusters of one kind at a time. */
static int store_job(struct conv *c, struct cjob *j, struct iovec *iov)
{
    if (j->zero)
        return c->target_fresh ? 0 : vdisk_write_zeroes(c->dst, j->off, j->len,
                                                        VDISK_ZEROES_MAY_UNMAP);
    uint64_t nclusters = (j->len + c->cluster - 1) / c->cluster;
    for (uint64_t i = 0; i < nclusters;) {
        uint64_t e = i + 1;
        while (e < nclusters && j->kind[e] == j->kind[i])
            e++;
        uint64_t pos = i * c->cluster;
        uint64_t len = (e == nclusters ? j->len : e * c->cluster) - pos;
        int r = 0;
        switch (j->kind[i]) {
        case CK_PACKED:
            throttle(c, len);
            for (uint64_t k = i; k < e; k++)
                iov[k - i] = (struct iovec){j->out + k * c->cluster, j->clen[k]};
            r = vdisk_pwrite_compressed_datav(c->dst, iov, (int)(e - i), j->off + pos);
            break;
        case CK_RAW:
            throttle(c, len);
            r = vdisk_pwrite(c->dst, j->in + pos, len, j->off + pos);
            break;
        case CK_ZERO:
            if (!c->target_fresh)
                r = vdisk_write_zeroes(c->dst, j->off + pos, len, VDISK_ZEROES_MAY_UNMAP);
            break;
        case CK_SAME:
            break;
        }
        if (r < 0)
            return r;
        i = e;
    }
    return 0;
}

/* Lays out the job at OFF: a whole zero extent of the sources (on a new
 * target however long; an exabyte of nothing costs nothing), or data. */
static void plan_job(struct conv *c, struct cjob *j, uint64_t off, uint64_t job_size)
{
    j->off = off;
    j->len = c->total - off < job_size ? c->total - off : job_size;
    j->zero = false;
    j->err = 0;
    uint64_t zlen;
    if (c->sparse == UINT64_MAX || c->backing ||
        source_zero(c, off, c->target_fresh ? c->total - off : j->len, &zlen) != 1)
        return;
    /* Whole clusters only (the sources may end anywhere in one); the
     * last cluster of the image may be short. */
    if (off + zlen < c->total)
        zlen -= zlen % c->cluster;
    else
        zlen = c->total - off;
    if (zlen) {
        j->zero = true;
        j->len = zlen;
    }
}

static int copy_compressed(struct conv *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned workers = cores > 0 ? (unsigned)cores : 1;
    struct cpool p = {.c = c, .n = workers * 3};
    enum { JOB_SIZE = 4 << 20 };
    p.job_size = c->cluster > JOB_SIZE ? c->cluster : JOB_SIZE - JOB_SIZE % c->cluster;
    uint64_t per_job = p.job_size / c->cluster;
    p.jobs = calloc(p.n, sizeof *p.jobs);
    struct iovec *iov = calloc(per_job, sizeof *iov);
    bool oom = !p.jobs || !iov;
    for (unsigned i = 0; !oom && i < p.n; i++) {
        struct cjob *j = &p.jobs[i];
        j->in = cli_page_alloc(p.job_size);
        j->out = cli_page_alloc(p.job_size);
        j->cmp = c->backing ? cli_page_alloc(p.job_size) : NULL;
        j->clen = calloc(per_job, sizeof *j->clen);
        j->kind = calloc(per_job, 1);
        oom = !j->in || !j->out || (c->backing && !j->cmp) || !j->clen || !j->kind;
    }
    if (oom) {
        for (unsigned i = 0; p.jobs && i < p.n; i++) {
            free(p.jobs[i].in);
            free(p.jobs[i].out);
            free(p.jobs[i].cmp);
            free(p.jobs[i].clen);
            free(p.jobs[i].kind);
        }
        free(p.jobs);
        free(iov);
        cli_error("Out of memory for %u buffers of %" PRIu64 " bytes", p.n, p.job_size);
        return -1;
    }
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.work, NULL);
    pthread_cond_init(&p.done, NULL);
    pthread_t *tids = calloc(workers, sizeof *tids);
    unsigned started = 0;
    while (tids && started < workers &&
           pthread_create(&tids[started], NULL, compressor, &p) == 0)
        started++;
    int r = 0;
    if (started == 0) {
        cli_error("Could not start a compression thread");
        r = -1;
    }

    uint64_t next_off = 0, stored = 0; /* stored: jobs written */
    while (r == 0 && (next_off < c->total || stored < p.issued)) {
        /* Lay out jobs while there is room. */
        pthread_mutex_lock(&p.lock);
        bool more = false;
        while (next_off < c->total && p.issued - stored < p.n) {
            struct cjob *j = &p.jobs[p.issued % p.n];
            pthread_mutex_unlock(&p.lock);
            plan_job(c, j, next_off, p.job_size);
            next_off += j->len;
            pthread_mutex_lock(&p.lock);
            j->state = j->zero ? 3 : 1;
            p.issued++;
            more = true;
        }
        if (more)
            pthread_cond_broadcast(&p.work);
        /* Store the next job in order once it is done. */
        struct cjob *j = &p.jobs[stored % p.n];
        while (j->state != 3)
            pthread_cond_wait(&p.done, &p.lock);
        pthread_mutex_unlock(&p.lock);
        if (j->err < 0) {
            r = -1; /* reported by the thread */
        } else if (store_job(c, j, iov) < 0) {
            cli_lib_error();
            r = -1;
        }
        pthread_mutex_lock(&p.lock);
        j->state = 0;
        pthread_mutex_unlock(&p.lock);
        progress(c, j->zero ? 0 : chunk_data(c, j->off, j->len));
        stored++;
    }
    pthread_mutex_lock(&p.lock);
    p.stop = true;
    pthread_cond_broadcast(&p.work);
    pthread_mutex_unlock(&p.lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    for (unsigned i = 0; i < p.n; i++) {
        free(p.jobs[i].in);
        free(p.jobs[i].out);
        free(p.jobs[i].cmp);
        free(p.jobs[i].clen);
        free(p.jobs[i].kind);
    }
    free(p.jobs);
    free(iov);
    free(tids);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.work);
    pthread_cond_destroy(&p.done);
    return r;
}

/* ---- The command ---------------------------------------------------------- */

static void help(void)
{
    printf("usage: vdisk convert [-f FMT] [-O FMT] [-o OPTIONS] [-c] [-p] [-q] [-n]\n"
           "                     [-S SPARSE_SIZE] [-B BACKING -F BACKING_FMT]\n"
           "                     [-l snapshot.name=NAME] [-m N] [-W] [-t CACHE] [-T CACHE]\n"
           "                     [--image-opts] [--target-image-opts] [-U] [-C]\n"
           "                     [--salvage] [--target-is-zero] [-r RATE]\n"
           "                     [--bitmaps [--skip-broken-bitmaps]]\n"
           "                     SRC... DST\n"
           "\n"
           "Copies the images SRC (concatenated) to DST, as qemu-img convert does.\n"
           "Every option is checked before DST is touched; DST may not be a source\n"
           "or a backing file of one; a failed convert removes DST only if it made it.\n"
           "\n"
           "  -f FMT          the sources' format (probed when not given)\n"
           "  --image-opts    the sources are given as options (driver=qcow2,\n"
           "                  file.filename=F,...), as qemu-img takes them\n"
           "  --target-image-opts  DST too (with -n)\n"
           "  -O FMT          the output format: raw (default), qcow2, vdi, vpc or\n"
           "                  vmdk\n"
           "  -o OPTIONS      options for creating DST (see vdisk create --help)\n"
           "  -c              compress the output (qcow2: zstd or zlib as\n"
           "                  compression_type says; a streamOptimized vmdk,\n"
           "                  always compressed, -c or not), on every core\n"
           "  -p              show progress\n"
           "  -q              quiet\n"
           "  -n              DST exists already: do not create it (no -o then)\n"
           "  -S SIZE         runs of zeroes of at least SIZE bytes are not written\n"
           "                  (default 4k; 0 writes everything, zeroes too: DST is\n"
           "                  fully allocated)\n"
           "  -B BACKING      DST is an overlay of BACKING holding only the clusters\n"
           "                  that differ from it\n"
           "  -F FMT          BACKING's format (required with -B)\n"
           "  -l snapshot.name=NAME, -l snapshot.id=ID, -l NAME\n"
           "                  convert a snapshot of the (single) source\n"
           "  -m N            requests in flight (default 8)\n"
           "  -W              write each chunk as soon as it is read (default: in the\n"
           "                  target's order, as qemu-img)\n"
           "  -t CACHE        the target's cache mode (default unsafe, as qemu-img)\n"
           "  -T CACHE        the sources' cache mode (default writeback)\n"
           "  -U, --force-share  read the sources even while another process writes\n"
           "                  them (see IMAGE LOCKING in vdisk(1))\n"
           "  -C              copy offloading: the data copied as it is, with\n"
           "                  copy_file_range(2) from raw files to a raw file where the\n"
           "                  kernel can (not with -c, -S or --salvage)\n"
           "  --salvage       a sector that cannot be read is written as zeroes, with\n"
           "                  a warning (none with -q); the convert goes on\n"
           "  --target-is-zero  DST (with -n) reads as zeroes already: zeroes are not\n"
           "                  written to it\n"
           "  -r RATE         write at most RATE bytes of data per second (suffixes k,\n"
           "                  M, G; 0 no limit)\n"
           "  --bitmaps       copy the persistent dirty bitmaps too (qcow2 to qcow2)\n"
           "  --skip-broken-bitmaps  with --bitmaps: inconsistent ones are skipped\n");
}

/* PATH opened with FLAGS when it is a regular file, else -1. */
static int open_regular(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* getopt_long values of the long options without a letter. */
enum { OPT_SALVAGE = 0x1100, OPT_TARGET_IS_ZERO, OPT_BITMAPS, OPT_SKIP_BROKEN };

int cmd_convert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"target-image-opts", no_argument, NULL, CLI_OPT_TARGET_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {"salvage", no_argument, NULL, OPT_SALVAGE},
        {"target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO},
        {"bitmaps", no_argument, NULL, OPT_BITMAPS},
        {"skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {NULL, 0, NULL, 0},
    };
    const char *fmt = NULL, *out_fmt = "raw", *backing = NULL, *backing_fmt = NULL;
    /* As qemu-img convert: the target is written with cache=unsafe (no
     * flushes; a failed convert is run again). */
    const char *snap = NULL, *dst_cache = "unsafe", *src_cache = NULL;
    bool quiet = false, no_create = false, have_o = false, created = false;
    struct file_id inputs[MAX_INPUT_FILES];
    int ninputs = 0;
    bool src_share = false; /* -U: read the sources with force-share=on */
    struct conv c = {.sparse = 4096, .parallel = 8, .cr_dst = -1};
    for (int i = 0; i < MAX_SOURCES; i++)
        c.cr_src[i] = -1;
    bool explicit_sparse = false, target_is_zero = false;
    bool bitmaps = false, skip_broken = false; /* --bitmaps (cmd_bitmap.c) */
    vdisk_options *opts = NULL;
    int ret = 1;
    bool help_opts = false;
    if (vdisk_options_new(&opts) < 0) {
        cli_lib_error();
        return 1;
    }
    int ch;
    bool image_opts = false, target_image_opts = false, have_O = false;
    char *dst_plain = NULL;
    optind = 0;
    while ((ch = getopt_long(argc, argv, ":hf:O:o:cpqnS:B:F:l:s:m:Wt:T:UCr:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; have_O = true; break;
        case CLI_OPT_IMAGE_OPTS: image_opts = true; break;
        case CLI_OPT_TARGET_IMAGE_OPTS: target_image_opts = true; break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                goto out;
            break;
        case 'o':
            if (!cli_valid_option_list(optarg))
                goto out;
            if (cli_is_help_option(optarg)) {
                help_opts = true;
                break;
            }
            if (vdisk_options_parse(opts, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            have_o = true;
            break;
        case 'c': c.compress = true; break;
        case 'p': c.progress = true; break;
        case 'q': quiet = true; break;
        case 'n': no_create = true; break;
        case 'S':
            if (vdisk_parse_size(optarg, 1, &c.sparse) < 0) {
                cli_error("Invalid buffer size for sparse output specified. Valid sizes are "
                          "multiples of 512 up to 16 MiB, or 0.");
                goto out;
            }
            explicit_sparse = true;
            break;
        case 'B': backing = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'l':
        case 's':
            snap = strncmp(optarg, "snapshot.name=", 14) == 0 ? optarg + 14
                   : strncmp(optarg, "snapshot.id=", 12) == 0 ? optarg + 12 : optarg;
            break;
        case 'm': {
            uint64_t m;
            if (vdisk_parse_size(optarg, 1, &m) < 0 || m < 1 || m > 16) {
                cli_error("Invalid number of coroutines. Allowed number of coroutines is "
                          "between 1 and 16");
                goto out;
            }
            c.parallel = (unsigned)m;
            break;
        }
        case 'W': c.out_of_order = true; break;
        case 't': dst_cache = optarg; break;
        case 'T': src_cache = optarg; break;
        case 'U': src_share = true; break;
        case 'C': c.copy_range = true; break;
        case OPT_SALVAGE: c.salvage = true; break;
        case OPT_TARGET_IS_ZERO: target_is_zero = true; break;
        case OPT_BITMAPS: bitmaps = true; break;
        case OPT_SKIP_BROKEN: skip_broken = true; break;
        case 'r': {
            int64_t rate = cli_cvtnum("rate limit", optarg, 0, INT64_MAX);
            if (rate < 0)
                goto out;
            c.rate = (uint64_t)rate;
            break;
        }
        case ':':
            /* qemu-img's words (the ':' above keeps getopt's own quiet) */
            cli_error("missing argument for option '%s'", argv[optind - 1]);
            fprintf(stderr, "Try 'vdisk --help' for more information\n");
            goto out;
        default:
            cli_error("unrecognized option '%s'", argv[optind - 1]);
            cli_print_option_hint();
            fprintf(stderr, "Try 'vdisk --help' for more information\n");
            goto out;
        }
    }
    c.quiet = quiet;
    if (skip_broken && !bitmaps) {
        cli_error("Use of --skip-broken-bitmaps requires --bitmaps");
        goto out;
    }
    /* What qemu-img refuses before it looks at the file names, in its
     * order and words. */
    if (c.compress && c.copy_range) {
        cli_error("Cannot enable copy offloading when -c is used");
        goto out;
    }
    if (explicit_sparse && c.copy_range) {
        cli_error("Cannot enable copy offloading when -S is used");
        goto out;
    }
    if (c.copy_range && c.salvage) {
        cli_error("Cannot use copy offloading in salvaging mode");
        goto out;
    }
    if (target_image_opts && !no_create) {
        cli_error("--target-image-opts requires use of -n flag");
        goto out;
    }
    if (no_create && (have_o || help_opts)) {
        cli_error("-o has no effect when skipping image creation");
        goto out;
    }
    if (target_is_zero && !no_create) {
        cli_error("--target-is-zero requires use of -n flag");
        goto out;
    }
    if (help_opts) {
        /* -o help: the output format's create options, as qemu-img. */
        ret = cli_print_create_options(out_fmt);
        goto out;
    }
    if (argc - optind < 2) {
        cli_error("Must specify image file name");
        goto out;
    }
    if (c.sparse % 512 || c.sparse > (16u << 20)) {
        cli_error("Invalid buffer size for sparse output specified. Valid sizes are multiples "
                  "of 512 up to 16 MiB, or 0.");
        goto out;
    }
    if (c.sparse == 0)
        c.sparse = UINT64_MAX; /* no zero detection */
    if (image_opts)
        for (int i = optind; i < argc - 1; i++)
            if (!(argv[i] = cli_image_opts(argv[i], fmt)))
                goto out;
    if (target_image_opts) {
        if (!(argv[argc - 1] = cli_image_opts(argv[argc - 1], have_O ? out_fmt : NULL)))
            goto out;
        out_fmt = NULL; /* the name says */
    }
    const char *dst_name = argv[argc - 1];
    /* The file a json: name stands for, for the checks on the target. */
    if (vdisk_plain_name(dst_name, &dst_plain) < 0) {
        cli_lib_error();
        goto out;
    }
    if (argc - optind - 1 > MAX_SOURCES) {
        cli_error("too many source images (at most %d)", MAX_SOURCES);
        goto out;
    }
    if (snap && argc - optind - 1 != 1) {
        cli_error("No support for concatenating multiple snapshot");
        goto out;
    }
    /* Everything is checked before the target is touched. */
    if (cli_check_cache(dst_cache) < 0 || (src_cache && cli_check_cache(src_cache) < 0))
        goto out;
    if (c.compress && (!out_fmt || (strcmp(out_fmt, "qcow2") != 0 &&
                                    strcmp(out_fmt, "vmdk") != 0))) {
        cli_error("Compression not supported for this file format");
        goto out;
    }
    if (!no_create) {
        if (!backing)
            backing = vdisk_options_get(opts, "backing_file");
        if (!backing_fmt)
            backing_fmt = vdisk_options_get(opts, "backing_fmt");
        if (backing && !*backing)
            backing = NULL;
        if (backing && argc - optind - 1 > 1) {
            cli_error("Having a backing file for the target makes no sense when concatenating "
                      "multiple input images");
            goto out;
        }
        if (backing_fmt && !backing) {
            cli_error("%s: Backing format cannot be used without backing file", dst_name);
            goto out;
        }
        if (backing && !backing_fmt) {
            cli_error("Use of backing file requires explicit backing format");
            goto out;
        }
    }
    /* Open the sources. */
    for (int i = optind; i < argc - 1; i++) {
        vdisk_options *so = NULL;
        vdisk_options_new(&so);
        vdisk_options_set(so, "read-only", "on");
        if (fmt)
            vdisk_options_set(so, "format", fmt);
        if (src_cache)
            vdisk_options_set(so, "cache", src_cache);
        if (src_share)
            vdisk_options_set(so, "force-share", "on");
        if (snap)
            vdisk_options_set(so, "snapshot.name", snap);
        cli_secrets_apply(so);
        /* IMAGE:pN converts a partition. */
        char *image = NULL;
        unsigned part = 0;
        if (cli_split_path(argv[i], &image, &part) < 0) {
            vdisk_options_free(so);
            goto out;
        }
        vdisk_dev *d = NULL;
        int r = vdisk_open(&d, image ? image : argv[i], so);
        vdisk_options_free(so);
        free(image);
        /* The image and its backing chain are inputs the target must not be. */
        for (vdisk_dev *b = r == 0 ? d : NULL; b && ninputs < MAX_INPUT_FILES;
             b = vdisk_get_backing(b)) {
            struct stat st;
            if (stat(vdisk_get_filename(b), &st) == 0)
                inputs[ninputs++] = (struct file_id){st.st_dev, st.st_ino, argv[i], b != d};
        }
        if (r == 0 && part) {
            vdisk_dev *disk = d;
            r = vdisk_open_partition(&d, disk, part, VDISK_OPEN_RDONLY);
            vdisk_close(disk);
        }
        if (r < 0) {
            cli_lib_error();
            goto out;
        }
        /* -C: a raw file, named as it is, is copied with copy_file_range. */
        if (c.copy_range && !part && strncmp(argv[i], "json:", 5) != 0 &&
            !strcmp(vdisk_get_format(d), "raw"))
            c.cr_src[c.nsrc] = open_regular(vdisk_get_filename(d), O_RDONLY);
        c.srcs[c.nsrc].dev = d;
        c.srcs[c.nsrc].start = c.total;
        c.srcs[c.nsrc].size = vdisk_get_size(d);
        c.total += c.srcs[c.nsrc].size;
        c.nsrc++;
    }
    if (bitmaps && cli_convert_bitmaps_check(c.nsrc, c.srcs[0].dev, out_fmt, skip_broken) < 0)
        goto out;
    if (target_is_zero && backing) {
        /* (qemu-img 7.2 exits 0 after this message) */
        cli_error("Cannot use --target-is-zero when the destination image has a backing file");
        ret = 0;
        goto out;
    }
    if (!no_create && backing) {
        /* The backing file must open (as the new image will open it). */
        vdisk_dev *b = cli_open_beside(dst_name, backing, backing_fmt);
        if (!b)
            goto out;
        for (vdisk_dev *f = b; f && ninputs < MAX_INPUT_FILES; f = vdisk_get_backing(f)) {
            struct stat st;
            if (stat(vdisk_get_filename(f), &st) == 0)
                inputs[ninputs++] = (struct file_id){st.st_dev, st.st_ino, backing, 2};
        }
        vdisk_close(b);
        if (vdisk_options_set(opts, "backing_file", backing) < 0 ||
            vdisk_options_set(opts, "backing_fmt", backing_fmt) < 0) {
            cli_lib_error();
            goto out;
        }
    }
    /* Never write over an input: a source, the -B file, or a file of their
     * backing chains. */
    struct stat dst_st;
    bool existed = lstat(dst_plain, &dst_st) == 0;
    if (existed && stat(dst_plain, &dst_st) == 0) {
        for (int i = 0; i < ninputs; i++) {
            if (inputs[i].dev != dst_st.st_dev || inputs[i].ino != dst_st.st_ino)
                continue;
            static const char *const what[] = {"the source", "a backing file of the source",
                                               "in the backing chain of -B"};
            cli_error("%s: the target is %s %s; converting would overwrite it", dst_name,
                      what[inputs[i].kind], inputs[i].name);
            goto out;
        }
    }
    /* Create the target (vdisk_create checks its options before it touches
     * the file).  From here on, a failure removes a file that this command
     * created, never one that was there before. */
    if (!no_create) {
        if (cli_secrets_apply(opts) < 0 || vdisk_create(dst_name, out_fmt, c.total, opts) < 0) {
            cli_lib_error();
            goto out;
        }
        created = !existed;
        c.target_fresh = true;
    }
    struct open_args oa = {.format = out_fmt, .cache = dst_cache};
    /* An encrypted target opens with the key it was created with. */
    if (out_fmt) /* (-n without -O: the target's own name says it) */
        oa.key_secret = vdisk_options_get(opts, strcmp(out_fmt, "luks") ? "encrypt.key-secret"
                                                                        : "key-secret");
    c.dst = cli_open(dst_name, &oa);
    if (!c.dst)
        goto out;
    if (c.copy_range && !target_image_opts && !strcmp(vdisk_get_format(c.dst), "raw")) {
        char *image = NULL;
        unsigned part = 0;
        if (cli_split_path(dst_name, &image, &part) == 0 && !part &&
            strncmp(dst_name, "json:", 5) != 0)
            c.cr_dst = open_regular(dst_plain, O_WRONLY);
        free(image);
    }
    if (vdisk_get_size(c.dst) < c.total) {
        cli_error("%s: the target (%" PRIu64 " bytes) is smaller than the sources (%" PRIu64
                  " bytes)", dst_name, vdisk_get_size(c.dst), c.total);
        goto out;
    }
    c.backing = vdisk_get_backing(c.dst);
    if (c.backing)
        c.target_fresh = false; /* the backing file shows through */
    struct vdisk_info in = {.struct_size = sizeof in};
    vdisk_get_info(c.dst, &in);
    c.cluster = in.cluster_size ? in.cluster_size : 65536;
    /* A target that stores only compressed data (a streamOptimized VMDK)
     * is written compressed, as qemu-img writes it, -c or not. */
    for (uint32_t i = 0; i < in.nb_extents && in.extents; i++)
        if (in.extents[i].compressed)
            c.compress = true;
    /* A raw target's "cluster" (an RBD image's 4 MiB objects) only sets
     * the unit of zero detection: writes of whole objects were 3 to 4 times
     * slower than 2 MiB ones on Ceph (tests/bench/rbd.sh), so at most 2 MiB,
     * as qemu-img writes. */
    if (!strcmp(vdisk_get_format(c.dst), "raw") && c.cluster > (2u << 20))
        c.cluster = 2u << 20;
    c.chunk = c.cluster > (1u << 20) ? c.cluster : (1u << 20);
    if (c.sparse != UINT64_MAX && c.sparse > c.chunk)
        c.chunk = c.sparse;
    /* -p: qemu-img's steps, its 2 MiB buffer a step (the progress lines
     * are the same as its lines). */
    if (c.progress && c.chunk < (2u << 20))
        c.chunk = 2u << 20;
    if (c.backing && !backing)
        c.backing = NULL; /* -n on an existing overlay: copy everything */
    if (!c.backing && !no_create)
        c.target_fresh = true;
    /* A new LUKS image reads as noise, not zeroes; so do the clusters an
     * encrypted qcow2 image has preallocated. */
    const char *prealloc = vdisk_options_get(opts, "preallocation");
    if (!strcmp(vdisk_get_format(c.dst), "luks") ||
        (in.encrypt && prealloc && strcmp(prealloc, "off")))
        c.target_fresh = false;
    if (target_is_zero)
        c.target_fresh = true; /* the user says so: zeroes are not written */
    if (c.progress) {
        c.data_total = data_bytes(&c, 0, c.total);
        progress_print(&c, 0.0f);
    }
    int r = c.compress ? copy_compressed(&c) : copy_plain(&c);
    if (r == 0 && bitmaps && cli_convert_bitmaps(c.srcs[0].dev, c.dst, skip_broken) < 0)
        r = -1;
    if (r == 0 && vdisk_flush(c.dst) < 0) {
        cli_lib_error();
        r = -1;
    }
    if (c.progress) {
        /* As qemu-img: 100 once more at the end, then the line ends. */
        if (r == 0)
            progress_print(&c, 100.0f);
        printf("\n");
    }
    ret = r < 0 ? 1 : 0;
out:
    for (int i = 0; i < MAX_SOURCES; i++)
        if (c.cr_src[i] >= 0)
            close(c.cr_src[i]);
    if (c.cr_dst >= 0)
        close(c.cr_dst);
    if (c.dst)
        vdisk_close(c.dst);
    for (int i = 0; i < c.nsrc; i++)
        vdisk_close(c.srcs[i].dev);
    vdisk_options_free(opts);
    if (ret != 0 && created)
        unlink(dst_plain);
    free(dst_plain);
    return ret;
}
