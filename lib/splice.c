/* SPDX-License-Identifier: MIT */
/*
 * lib/splice.c: zero-copy reads (dev_splice_read): a device range whose
 * bytes lie as they are in host files, all of it in their page cache now,
 * spliced into a pipe: the pipe takes references to the cached pages, no
 * byte is copied, and a socket takes them from the pipe the same way (the
 * NBD server's large reads, lib/nbd).
 *
 * The drivers say where the bytes are without I/O (dev_map_file: cached
 * tables only); cachestat(2) says whether the pages are cached, so that the
 * splice, which is synchronous, does not wait for the disk on the caller's
 * loop.  Anything else (a table to read, pages not cached, compressed or
 * encrypted clusters, O_DIRECT files, filters, a kernel without cachestat)
 * is the caller's usual read through memory.  The range is one top-level
 * request of the queue while it is mapped and spliced: a quiesce section
 * (a snapshot, a resize) waits for it, and it does not run during one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "splice.h"

/* cachestat(2), Linux 6.5 (the same number on every architecture);
 * Debian 12's headers predate it. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

struct cachestat_range {
    uint64_t off, len;
};

struct cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* The kernel has no cachestat (or the file system refuses it everywhere). */
static atomic_bool no_cachestat;

/* Runs of one read, at most. */
#define SPLICE_MAX_RUNS 16u

/* Whether every page of FD's bytes HOST..HOST+LEN is in the page cache. */
static bool cached(int fd, uint64_t host, uint64_t len)
{
    struct cachestat_range r = {host, len};
    struct cachestat cs;
    if (syscall(__NR_cachestat, fd, &r, &cs, 0) < 0) {
        if (errno == ENOSYS)
            atomic_store(&no_cachestat, true);
        return false;
    }
    return cs.nr_cache >= splice_pages(host, len);
}

/* The runs of OFF..OFF+LEN on DEV into RUNS (contiguous ones of a file
 * merged).  Returns their count, or -EAGAIN / -ENOTSUP. */
static int map_runs(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                    struct dev_file_run *runs)
{
    int n = 0;
    for (uint64_t pos = off, end = off + len; pos < end;) {
        struct dev_file_run run;
        int r = dev_map_file(dev, pos, end - pos, &run);
        if (r < 0)
            return r == -EAGAIN ? -EAGAIN : -ENOTSUP;
        struct dev_file_run *last = n ? &runs[n - 1] : NULL;
        if (last && last->fd == run.fd && (run.fd < 0 || last->host + last->len == run.host)) {
            last->len += run.len;
        } else {
            if ((unsigned)n == SPLICE_MAX_RUNS)
                return -ENOTSUP;
            runs[n++] = run;
        }
        pos += run.len;
    }
    return n;
}

static int splice_runs(const struct dev_file_run *runs, int n, int pipe_wr)
{
    for (int i = 0; i < n; i++) {
        loff_t at = (loff_t)runs[i].host;
        for (uint64_t left = runs[i].len; left;) {
            ssize_t w = splice(runs[i].fd, &at, pipe_wr, NULL, left, SPLICE_F_NONBLOCK);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            if (w == 0)
                return -ENODATA; /* the file's end: zeroes past it (read as usual) */
            left -= (uint64_t)w;
        }
    }
    return 0;
}

/* The N runs of data (none reading as zeroes: they would need pages of
 * zeroes), all cached and taking at most MAX_BUFS pipe buffers (*BUFS),
 * spliced into PIPE_WR.  Returns 0 or what dev_splice_read returns. */
static int splice_data(const struct dev_file_run *runs, int n, int pipe_wr, unsigned max_bufs,
                       unsigned *bufs)
{
    uint64_t b = 0;
    for (int i = 0; i < n; i++) {
        if (runs[i].fd < 0)
            return -ENOTSUP;
        b += splice_pages(runs[i].host, runs[i].len);
    }
    if (b > max_bufs)
        return -ENOSPC;
    for (int i = 0; i < n; i++)
        if (!cached(runs[i].fd, runs[i].host, runs[i].len))
            return -EAGAIN;
    int r = splice_runs(runs, n, pipe_wr);
    if (r == 0)
        *bufs = (unsigned)b;
    return r;
}

int dev_splice_read(vdisk_queue *q, uint64_t off, uint64_t len, int pipe_wr,
                    unsigned max_bufs, unsigned *bufs, bool *zero)
{
    *zero = false;
    *bufs = 0;
    if (atomic_load_explicit(&no_cachestat, memory_order_relaxed))
        return -ENOTSUP;
    struct vdisk_dev *dev = q->dev;
    if (len == 0 || off >= dev_size(dev) || len > dev_size(dev) - off)
        return -EINVAL;
    if (!quiesce_enter(q))
        return -EAGAIN; /* a section is held: the usual read waits for it */
    struct dev_file_run runs[SPLICE_MAX_RUNS];
    int n = map_runs(dev, off, len, runs), r = n;
    if (n == 1 && runs[0].fd < 0) {
        *zero = true; /* (map_runs merges the zero runs) */
        r = 0;
    } else if (n > 0) {
        r = splice_data(runs, n, pipe_wr, max_bufs, bufs);
    }
    quiesce_leave(q);
    return r;
}
