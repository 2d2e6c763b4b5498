/* SPDX-License-Identifier: MIT */
/*
 * lib/request.c: requests and the layer boundary.
 *
 * Every request passes req_submit() before its driver sees it.  That is the
 * one place where ranges are checked against the device, writes refused on
 * read-only devices, and requests that do not fit the device's alignment
 * turned into aligned ones (read-modify-write, with overlapping writes kept
 * apart so that two partial writes of one block cannot undo each other).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FREE_LIST_MAX 256
#define RMW_MEM_ALIGN 4096

/* Internal request flags (above the public VDISK_REQ_* bits). */
#define REQ_NO_TRACK 0x10000u /* an RMW's own aligned I/O: not serialised */

const char *op_name(enum vdisk_op op)
{
    switch (op) {
    case VDISK_OP_READ: return "read";
    case VDISK_OP_WRITE: return "write";
    case VDISK_OP_FLUSH: return "flush";
    case VDISK_OP_DISCARD: return "discard";
    case VDISK_OP_WRITE_ZEROES: return "write_zeroes";
    }
    return "?";
}

/* ---- iovec helpers -------------------------------------------------------- */

size_t iov_length(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* Walks the iovec from byte POS, calling FN on each piece of at most LEN. */
#define IOV_WALK(iov, iovcnt, pos, len, BODY)                                  \
    do {                                                                       \
        size_t skip_ = (pos), left_ = (len), done_ = 0;                        \
        for (int i_ = 0; i_ < (iovcnt) && left_; i_++) {                       \
            size_t l_ = (iov)[i_].iov_len;                                     \
            if (skip_ >= l_) {                                                 \
                skip_ -= l_;                                                   \
                continue;                                                      \
            }                                                                  \
            uint8_t *base_ = (uint8_t *)(iov)[i_].iov_base + skip_;            \
            size_t n_ = l_ - skip_;                                            \
            if (n_ > left_)                                                    \
                n_ = left_;                                                    \
            BODY;                                                              \
            skip_ = 0;                                                         \
            left_ -= n_;                                                       \
            done_ += n_;                                                       \
        }                                                                      \
    } while (0)

void iov_to_buf(const struct iovec *iov, int iovcnt, size_t pos, void *buf, size_t len)
{
    IOV_WALK(iov, iovcnt, pos, len, memcpy((uint8_t *)buf + done_, base_, n_));
}

void iov_from_buf(const struct iovec *iov, int iovcnt, size_t pos, const void *buf,
                  size_t len)
{
    IOV_WALK(iov, iovcnt, pos, len, memcpy(base_, (const uint8_t *)buf + done_, n_));
}

void iov_memset(const struct iovec *iov, int iovcnt, size_t pos, int c, size_t len)
{
    IOV_WALK(iov, iovcnt, pos, len, (memset(base_, c, n_), (void)done_));
}

int iov_slice(const struct iovec *src, int cnt, size_t skip, size_t len, struct iovec *dst)
{
    int n = 0;
    for (int i = 0; i < cnt && len; i++) {
        size_t l = src[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        size_t take = l - skip < len ? l - skip : len;
        dst[n].iov_base = (uint8_t *)src[i].iov_base + skip;
        dst[n].iov_len = take;
        n++;
        len -= take;
        skip = 0;
    }
    return n;
}

void *aligned_alloc_or_null(size_t align, size_t size)
{
    void *p = NULL;
    if (size == 0)
        size = align;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
    return p;
}

/* ---- Allocation ----------------------------------------------------------- */

static struct vdisk_req *req_alloc(struct vdisk_queue *q)
{
    /* The request and the core's part of it are one allocation
     * (struct req_full); req_free() gives it back to the queue's list. */
    struct req_full *f = (struct req_full *)q->free_list;
    if (f) {
        q->free_list = f->req.next;
        q->free_count--;
        memset(f, 0, sizeof *f);
    } else {
        f = calloc(1, sizeof *f);
        if (!f)
            return NULL;
    }
    struct vdisk_req *req = &f->req;
    req->core = &f->core;
    req->q = q;
    req->core->fd = -1;

    return req;
}

static int req_set_iov(struct vdisk_req *req, const struct iovec *iov, int iovcnt)
{
    if (iovcnt <= REQ_INLINE_IOV) {
        req->iov = req->core->iov_inline;
    } else {
        req->iov = req->core->iov_alloc = malloc((size_t)iovcnt * sizeof *iov);
        if (!req->iov)
            return -ENOMEM;
    }
    if (iovcnt)
        memcpy(req->iov, iov, (size_t)iovcnt * sizeof *iov);
    req->iovcnt = iovcnt;
    return 0;
}

struct vdisk_req *req_new(struct vdisk_queue *q, struct vdisk_dev *dev, enum vdisk_op op,
                          uint64_t offset, uint64_t length, const struct iovec *iov,
                          int iovcnt, unsigned flags)
{
    struct vdisk_req *req = req_alloc(q);
    if (!req)
        return NULL;
    req->dev = dev;
    req->op = op;
    req->offset = offset;
    req->length = length;
    req->flags = flags;
    if (req_set_iov(req, iov, iovcnt) < 0) {
        req->iov = NULL;
        req_free(req);
        return NULL;
    }
    return req;
}

struct vdisk_req *req_new_child(struct vdisk_req *parent, struct vdisk_dev *dev,
                                enum vdisk_op op, uint64_t offset, uint64_t length,
                                const struct iovec *iov, int iovcnt, unsigned flags,
                                req_done_fn done, void *done_arg)
{
    struct vdisk_req *req = req_new(parent->q, dev, op, offset, length, iov, iovcnt, flags);
    if (!req)
        return NULL;
    req->parent = parent;
    req->done = done;
    req->done_arg = done_arg;
    return req;
}

void req_free(struct vdisk_req *req)
{
    struct vdisk_queue *q = req->q;
    free(req->core->iov_alloc);
    req->core->iov_alloc = NULL;
    free(req->core->guard_buf);
    req->core->guard_buf = NULL;
    free(req->core->owned_buf);
    req->core->owned_buf = NULL;
    free(req->errmsg);
    req->errmsg = NULL;
    if (q->free_count < FREE_LIST_MAX) {
        req->next = q->free_list;
        q->free_list = req;
        q->free_count++;
    } else {
        free((struct req_full *)req);
    }
}

/* ---- Errors --------------------------------------------------------------- */

static int req_failv(struct vdisk_req *req, int ret, const char *fmt, va_list ap)
{
    char *msg = str_vprintf(fmt, ap);
    free(req->errmsg);
    req->errmsg = str_printf("%s: %s", req->dev->filename, msg ? msg : "out of memory");
    free(msg);
    return ret;
}

int req_errorf(struct vdisk_req *req, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    req_failv(req, ret, fmt, ap);
    va_end(ap);
    return ret;
}

int req_fail(struct vdisk_req *req, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    req_failv(req, ret, fmt, ap);
    va_end(ap);
    req_complete(req, ret);
    return ret;
}

/* Like req_fail, but completes later (for use inside req_submit). */
static void req_fail_deferred(struct vdisk_req *req, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_fail_deferred(struct vdisk_req *req, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    req_failv(req, ret, fmt, ap);
    va_end(ap);
    queue_defer(req->q, req, ret);
}

void req_take_error(struct vdisk_req *parent, struct vdisk_req *child)
{
    if (child->errmsg && !parent->errmsg) {
        parent->errmsg = child->errmsg;
        child->errmsg = NULL;
    }
}

void req_child_finishes_parent(struct vdisk_req *child, int ret)
{
    struct vdisk_req *parent = child->parent;
    /* A filter passing a write past its end to the file below (blkdebug
     * under a format) grows with it. */
    if (ret >= 0 && parent->dev->growable &&
        (parent->op == VDISK_OP_WRITE || parent->op == VDISK_OP_WRITE_ZEROES))
        dev_size_grow(parent->dev, parent->offset + parent->length);
    req_take_error(parent, child);
    req_free(child);
    req_complete(parent, ret);
}

/* ---- Fan-out: a request that waits for several children ----------------- */

void req_hold(struct vdisk_req *req)
{
    req->core->pending++;
}

void req_release(struct vdisk_req *req, int ret)
{
    if (ret < 0 && !req->core->first_err)
        req->core->first_err = ret;
    if (--req->core->pending == 0)
        req_complete(req, req->core->first_err);
}

void req_child_releases_parent(struct vdisk_req *child, int ret)
{
    struct vdisk_req *parent = child->parent;
    req_take_error(parent, child);
    req_free(child);
    req_release(parent, ret);
}

void req_resume_later(struct vdisk_req *req, void (*fn)(struct vdisk_req *),
                      struct vdisk_queue *current)
{
    req->resume = fn;
    if (req->q == current)
        queue_defer(req->q, req, 0);
    else
        queue_post(req->q, req, 0);
}

int req_set_error(struct vdisk_req *req, int ret, const char *msg)
{
    if (!req->errmsg)
        req->errmsg = strdup(msg);
    if (ret < 0 && !req->core->first_err)
        req->core->first_err = ret;
    return ret;
}

/* ---- Serialising overlapping writes (devices with align > 1) -------------- */

struct write_track {
    uint64_t start, end;     /* aligned byte range */
    bool rmw;                /* a read-modify-write is in progress */
    struct vdisk_req *req;
    struct vdisk_req *waiters;
    struct write_track *next;
};

static bool is_write_op(enum vdisk_op op)
{
    return op == VDISK_OP_WRITE || op == VDISK_OP_WRITE_ZEROES || op == VDISK_OP_DISCARD;
}

static void req_dispatch(struct vdisk_req *req);

/*
 * Registers REQ's write range, or queues REQ behind a conflicting write and
 * returns false.
 */
static bool track_begin(struct vdisk_req *req, bool rmw)
{
    struct vdisk_dev *dev = req->dev;
    uint64_t start = align_down(req->offset, dev->align);
    uint64_t end = align_up(req->offset + req->length, dev->align);
    struct write_track *t = req->core->track;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t) {
            req_fail_deferred(req, -ENOMEM, "out of memory");
            return false;
        }
        req->core->track = t;
    }
    pthread_mutex_lock(&dev->core->track_lock);
    for (struct write_track *o = dev->core->tracks; o; o = o->next) {
        if (o->start < end && start < o->end && (rmw || o->rmw)) {
            req->next = o->waiters;
            o->waiters = req;
            pthread_mutex_unlock(&dev->core->track_lock);
            return false;
        }
    }
    t->start = start;
    t->end = end;
    t->rmw = rmw;
    t->req = req;
    t->waiters = NULL;
    t->next = dev->core->tracks;
    dev->core->tracks = t;
    pthread_mutex_unlock(&dev->core->track_lock);
    return true;
}

static void track_resume(struct vdisk_req *req)
{
    req_dispatch(req);
}

static void track_end(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    struct write_track *t = req->core->track;
    pthread_mutex_lock(&dev->core->track_lock);
    for (struct write_track **pp = &dev->core->tracks; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    struct vdisk_req *w = t->waiters;
    pthread_mutex_unlock(&dev->core->track_lock);
    free(t);
    req->core->track = NULL;
    /* Every waiter tries again, on its own queue's thread. */
    while (w) {
        struct vdisk_req *next = w->next;
        req_resume_later(w, track_resume, req->q);
        w = next;
    }
}

/* ---- Read-modify-write ---------------------------------------------------- */

/*
 * An unaligned read or write R becomes work on the aligned range around it,
 * through a bounce buffer B:
 *   read:  read the aligned range into B, copy R's part out.
 *   write: read the first and last blocks into B (when R covers them only
 *          in part), copy R's data in, write the aligned range.
 * State: rmw_buf = B, rmw_start / rmw_len = the aligned range, pending =
 * reads still in flight, first_err = the first error among them.
 */

static void rmw_finish(struct vdisk_req *req, int ret)
{
    free(req->core->rmw_buf);
    req->core->rmw_buf = NULL;
    req_complete(req, ret);
}

static void rmw_read_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    req_take_error(req, child);
    req_free(child);
    if (ret == 0)
        iov_from_buf(req->iov, req->iovcnt, 0,
                     (uint8_t *)req->core->rmw_buf + (req->offset - req->core->rmw_start), req->length);
    rmw_finish(req, ret);
}

static void rmw_write_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    req_take_error(req, child);
    req_free(child);
    rmw_finish(req, ret);
}

static void rmw_write_all(struct vdisk_req *req)
{
    iov_to_buf(req->iov, req->iovcnt, 0,
               (uint8_t *)req->core->rmw_buf + (req->offset - req->core->rmw_start), req->length);
    struct iovec v = {req->core->rmw_buf, req->core->rmw_len};
    struct vdisk_req *c = req_new_child(req, req->dev, VDISK_OP_WRITE, req->core->rmw_start,
                                        req->core->rmw_len, &v, 1,
                                        (req->flags & VDISK_REQ_FUA) | REQ_NO_TRACK,
                                        rmw_write_done, NULL);
    if (!c) {
        free(req->core->rmw_buf);
        req->core->rmw_buf = NULL;
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    req_submit(c);
}

/* Records a child's outcome; true when it was the last child in flight. */
static bool fanout_child_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    req_take_error(req, child);
    req_free(child);
    if (ret < 0 && !req->core->first_err)
        req->core->first_err = ret;
    return --req->core->pending == 0;
}

static void rmw_edge_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    if (!fanout_child_done(child, ret))
        return;
    if (req->core->first_err)
        rmw_finish(req, req->core->first_err);
    else
        rmw_write_all(req);
}

/*
 * A device that says blkdebug's events (formats/blkdebug, for QEMU's tests):
 * the edges are read one after the other, as QEMU's block layer reads them,
 * with its events around each read (pwritev_rmw_head, pwritev_rmw_after_head,
 * pwritev_rmw_tail, pwritev_rmw_after_tail), so that a breakpoint can hold
 * the request between them.  pending counts the steps done: 0 the head's
 * read to start, 1 the tail's, 2 the write.
 */
static void rmw_seq_step(struct vdisk_req *req);

static void rmw_seq_read_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    req_take_error(req, child);
    req_free(child);
    if (ret < 0) {
        rmw_finish(req, ret);
        return;
    }
    dev_debug_event(req->dev, req->core->pending == 0 ? "pwritev_rmw_after_head"
                                                      : "pwritev_rmw_after_tail");
    req->core->pending++;
    rmw_seq_step(req);
}

static void rmw_seq_step(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    uint64_t a = dev->align, start = req->core->rmw_start, end = start + req->core->rmw_len;
    for (;;) {
        unsigned step = req->core->pending;
        if (step >= 2) {
            rmw_write_all(req);
            return;
        }
        /* The head block (the whole range when it is one block), then the
         * tail block when it is another. */
        bool head = req->offset != start, tail = req->offset + req->length != end;
        uint64_t at = step == 0 ? start : end - a;
        bool need = step == 0 ? head : tail && !(head && end - a == start);
        if (!need) {
            req->core->pending++;
            continue;
        }
        dev_debug_event(dev, step == 0 ? "pwritev_rmw_head" : "pwritev_rmw_tail");
        struct iovec v = {(uint8_t *)req->core->rmw_buf + (at - start), a};
        struct vdisk_req *c = req_new_child(req, dev, VDISK_OP_READ, at, a, &v, 1, REQ_NO_TRACK,
                                            rmw_seq_read_done, NULL);
        if (!c) {
            rmw_finish(req, -ENOMEM);
            return;
        }
        req_submit(c);
        return;
    }
}

static void rmw_start(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    uint64_t a = dev->align;
    uint64_t start = align_down(req->offset, a);
    uint64_t end = align_up(req->offset + req->length, a);
    uint8_t *buf = aligned_alloc_or_null(RMW_MEM_ALIGN, end - start);
    if (!buf) {
        req_fail(req, -ENOMEM, "out of memory for a %" PRIu64 "-byte bounce buffer",
                 end - start);
        return;
    }
    req->core->rmw_buf = buf;
    req->core->rmw_start = start;
    req->core->rmw_len = end - start;
    req->core->pending = 0;
    req->core->first_err = 0;

    if (req->op == VDISK_OP_READ) {
        struct iovec v = {buf, end - start};
        struct vdisk_req *c = req_new_child(req, dev, VDISK_OP_READ, start, end - start, &v,
                                            1, REQ_NO_TRACK, rmw_read_done, NULL);
        if (!c) {
            rmw_finish(req, -ENOMEM);
            return;
        }
        req_submit(c);
        return;
    }

    if (dev->drv->debug_event) {
        rmw_seq_step(req);
        return;
    }
    /* A write: which edge blocks does it cover only partly? */
    bool head = req->offset != start;
    bool tail = req->offset + req->length != end;
    uint64_t edges[2];
    int n = 0;
    if (head)
        edges[n++] = start;
    if (tail && !(head && end - a == start))
        edges[n++] = end - a;
    if (n == 0) {
        rmw_write_all(req);
        return;
    }
    req->core->pending = (unsigned)n;
    for (int i = 0; i < n; i++) {
        struct iovec v = {buf + (edges[i] - start), a};
        struct vdisk_req *c = req_new_child(req, dev, VDISK_OP_READ, edges[i], a, &v, 1,
                                            REQ_NO_TRACK, rmw_edge_done, NULL);
        if (!c) {
            /* Let the children already started finish first. */
            req->core->first_err = -ENOMEM;
            req->core->pending -= (unsigned)(n - i);
            if (req->core->pending == 0)
                rmw_finish(req, -ENOMEM);
            return;
        }
        req_submit(c);
    }
}

/* Write zeroes at an unaligned range: zero-filled partial blocks around an
 * aligned middle that the driver zeroes. */
static void zeroes_part_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    if (fanout_child_done(child, ret))
        req_complete(req, req->core->first_err);
}

static void zeroes_split(struct vdisk_req *req)
{
    uint64_t a = req->dev->align;
    if (req->flags & VDISK_REQ_NO_FALLBACK) {
        /* The partial blocks would be written as data. */
        req_fail_deferred(req, -ENOTSUP, "write_zeroes of %" PRIu64 " bytes at offset %"
                          PRIu64 " is not aligned to %" PRIu64 " bytes: the edges would be "
                          "written as zeroes (no fallback asked)", req->length, req->offset, a);
        return;
    }
    uint64_t off = req->offset, end = req->offset + req->length;
    uint64_t mid_start = align_up(off, a), mid_end = align_down(end, a);
    struct zero_part { uint64_t off, len; bool data; } parts[3];
    int n = 0;
    if (mid_start >= mid_end) {
        parts[n++] = (struct zero_part){off, req->length, true};
    } else {
        if (off < mid_start)
            parts[n++] = (struct zero_part){off, mid_start - off, true};
        parts[n++] = (struct zero_part){mid_start, mid_end - mid_start, false};
        if (mid_end < end)
            parts[n++] = (struct zero_part){mid_end, end - mid_end, true};
    }
    req->core->pending = (unsigned)n;
    req->core->first_err = 0;
    for (int i = 0; i < n; i++) {
        struct vdisk_req *c;
        if (parts[i].data) {
            void *zero = calloc(1, parts[i].len);
            struct iovec v = {zero, parts[i].len};
            c = zero ? req_new_child(req, req->dev, VDISK_OP_WRITE, parts[i].off,
                                     parts[i].len, &v, 1, req->flags & VDISK_REQ_FUA,
                                     zeroes_part_done, NULL)
                     : NULL;
            if (c)
                c->core->owned_buf = zero; /* freed when the part completes (its
                                        read-modify-write uses rmw_buf) */
            else
                free(zero);
        } else {
            c = req_new_child(req, req->dev, VDISK_OP_WRITE_ZEROES, parts[i].off,
                              parts[i].len, NULL, 0, req->flags, zeroes_part_done, NULL);
        }
        if (!c) {
            req->core->first_err = -ENOMEM;
            req->core->pending -= (unsigned)(n - i);
            if (req->core->pending == 0)
                req_complete(req, -ENOMEM);
            return;
        }
        req_submit(c);
    }
}

/* ---- Block 0 of a probed raw image ----------------------------------------- */

/*
 * A raw image whose format was probed must not take a write that makes it
 * probe as another format next time (a guest writing a qcow2 header that
 * names a host file as its backing file), as in QEMU's raw driver.  Such a
 * device has align >= PROBE_SIZE (lib/device.c), so a write reaching block 0
 * is either aligned, and starts at 0 with at least the whole block, or goes
 * through read-modify-write, whose aligned write of the merged blocks comes
 * back here.  The check looks at the new block 0 as a whole and the write
 * then takes that checked copy, not the caller's buffer, which may change
 * while the write is in flight.  Returns false when REQ was failed.
 */
static bool block0_guard(struct vdisk_req *req)
{
    if (req->offset != 0 || req->length < PROBE_SIZE) {
        req_fail_deferred(req, -EPERM, "%s of %" PRIu64 " bytes at offset %" PRIu64
                          " refused: block 0 of an image whose raw format was probed takes "
                          "whole-block writes only", op_name(req->op), req->length,
                          req->offset);
        return false;
    }
    uint8_t *b = aligned_alloc_or_null(RMW_MEM_ALIGN, PROBE_SIZE);
    struct iovec *v = malloc(((size_t)req->iovcnt + 1) * sizeof *v);
    if (!b || !v) {
        free(b);
        free(v);
        req_fail_deferred(req, -ENOMEM, "out of memory");
        return false;
    }
    iov_to_buf(req->iov, req->iovcnt, 0, b, PROBE_SIZE);
    struct probe_result pr;
    probe_block(b, NULL, &pr);
    if (pr.drv || pr.foreign) {
        char what[64];
        if (pr.drv)
            snprintf(what, sizeof what, "%s", pr.drv->name);
        else
            snprintf(what, sizeof what, "%s (%s)", pr.foreign->human, pr.foreign->name);
        free(b);
        free(v);
        req_fail_deferred(req, -EPERM, "write to block 0 refused: the image's format was "
                          "probed as raw, not given, and the new block 0 would make it probe "
                          "as %s (give the format raw to allow such writes)", what);
        return false;
    }
    v[0].iov_base = b;
    v[0].iov_len = PROBE_SIZE;
    int n = iov_slice(req->iov, req->iovcnt, PROBE_SIZE, req->length - PROBE_SIZE, v + 1);
    free(req->core->iov_alloc);
    req->iov = req->core->iov_alloc = v;
    req->iovcnt = n + 1;
    req->core->guard_buf = b;
    return true;
}

/* ---- The layer boundary --------------------------------------------------- */

/* Sends a checked request to its driver (or to the RMW path). */
static void req_dispatch(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    bool aligned = dev->align <= 1 ||
                   (req->offset % dev->align == 0 && req->length % dev->align == 0);
    /* Unaligned write zeroes is split into parts that are tracked (and
     * serialised) one by one: the whole is not. */
    bool track = dev->align > 1 && is_write_op(req->op) && !(req->flags & REQ_NO_TRACK) &&
                 (aligned || req->op != VDISK_OP_WRITE_ZEROES);

    if (track && !track_begin(req, !aligned && req->op == VDISK_OP_WRITE))
        return;
    if (aligned) {
        dev->drv->submit(req);
    } else if (req->op == VDISK_OP_WRITE_ZEROES) {
        zeroes_split(req);
    } else {
        rmw_start(req);
    }
}

int dev_check_request(struct vdisk_dev *dev, enum vdisk_op op, uint64_t off, uint64_t len,
                      char **msg)
{
    return dev_check_request_flags(dev, op, off, len, 0, msg);
}

int dev_check_request_flags(struct vdisk_dev *dev, enum vdisk_op op, uint64_t off, uint64_t len,
                            unsigned flags, char **msg)
{
    uint64_t end;
    if (flags & REQ_VMSTATE) {
        /* The VM state area: reads and writes wholly past the disk's end,
         * on a driver that keeps one; never a byte of the disk itself. */
        if ((op != VDISK_OP_READ && op != VDISK_OP_WRITE) || !dev->drv->vmstate ||
            off < dev_size(dev) || add_overflows_u64(off, len, &end) ||
            end > (uint64_t)INT64_MAX) {
            *msg = str_printf("%s: %s of %" PRIu64 " bytes at offset %" PRIu64
                              " is not a request on the VM state area", dev->filename,
                              op_name(op), len, off);
            return -EIO;
        }
    } else if (op != VDISK_OP_FLUSH && dev->growable && !add_overflows_u64(off, len, &end) &&
        end <= (uint64_t)INT64_MAX) {
        /* A growable file: past its end reads zeroes and writes extend it. */
    } else if (op != VDISK_OP_FLUSH && !range_inside(off, len, dev_size(dev))) {
        *msg = str_printf("%s: %s of %" PRIu64 " bytes at offset %" PRIu64
                          " is beyond the end of the device (%" PRIu64 " bytes)",
                          dev->filename, op_name(op), len, off, dev_size(dev));
        return -EIO;
    }
    if (op != VDISK_OP_READ && op != VDISK_OP_FLUSH && !(dev->caps & VDISK_CAN_WRITE)) {
        *msg = str_printf("%s: %s of %" PRIu64 " bytes at offset %" PRIu64
                          " refused: the device is read-only", dev->filename, op_name(op), len,
                          off);
        return -EROFS;
    }
    *msg = NULL;
    return 0;
}

void req_submit(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    const char *what = op_name(req->op);
    char *msg;
    int r = dev_check_request_flags(dev, req->op, req->offset, req->length, req->flags, &msg);
    if (r < 0) {
        free(req->errmsg);
        req->errmsg = msg;
        queue_defer(req->q, req, r);
        return;
    }
    if ((req->op == VDISK_OP_READ || req->op == VDISK_OP_WRITE) &&
        iov_length(req->iov, req->iovcnt) < req->length) {
        req_fail_deferred(req, -EINVAL, "%s of %" PRIu64 " bytes with buffers of only %zu bytes",
                          what, req->length, iov_length(req->iov, req->iovcnt));
        return;
    }
    if (req->op != VDISK_OP_FLUSH && req->length == 0) {
        queue_defer(req->q, req, 0);
        return;
    }
    if (req->op == VDISK_OP_FLUSH && atomic_load(&dev->core->flush_error)) {
        req_fail_deferred(req, atomic_load(&dev->core->flush_error),
                          "an earlier flush failed (%s); data written before it may be lost, "
                          "so no later flush can succeed", strerror(-atomic_load(&dev->core->flush_error)));
        return;
    }
    if (req->op == VDISK_OP_FLUSH && dev->params.cache == VDISK_CACHE_UNSAFE) {
        queue_defer(req->q, req, 0);
        return;
    }
    if (req->op == VDISK_OP_DISCARD) {
        if (!(dev->caps & VDISK_CAN_DISCARD)) {
            queue_defer(req->q, req, 0);
            return;
        }
        /* Discard is advisory: keep only the whole blocks inside. */
        if (dev->align > 1) {
            uint64_t s = align_up(req->offset, dev->align);
            uint64_t e = align_down(req->offset + req->length, dev->align);
            if (s >= e) {
                queue_defer(req->q, req, 0);
                return;
            }
            req->offset = s;
            req->length = e - s;
        }
    }
    if (req->op == VDISK_OP_WRITE && (dev->params.cache == VDISK_CACHE_WRITETHROUGH ||
                                      dev->params.cache == VDISK_CACHE_DIRECTSYNC))
        req->flags |= VDISK_REQ_FUA;
    /* Block 0 of a probed raw image: aligned writes are checked here, the
     * others when their read-modify-write writes the merged blocks. */
    if (req->op == VDISK_OP_WRITE && dev->core->probed_raw && req->offset < PROBE_SIZE &&
        (dev->align <= 1 || (req->offset % dev->align == 0 && req->length % dev->align == 0)) &&
        !block0_guard(req))
        return;
    req_dispatch(req);
}

/* ---- Handing a request over whole ----------------------------------------- */

bool req_may_forward(const struct vdisk_req *req)
{
    const struct req_core *c = req->core;
    return c->pending == 1 && !c->first_err && !req->errmsg && !c->track && !c->fwd_done;
}

static void forward_done(struct vdisk_req *req, int ret)
{
    struct req_core *c = req->core;
    req_done_fn done = c->fwd_done;
    req->dev = c->fwd_dev;
    req->offset = c->fwd_offset;
    req->flags = c->fwd_flags;
    req->done = done;
    c->fwd_done = NULL;
    c->fwd_dev = NULL;
    done(req, ret);
}

void req_forward(struct vdisk_req *req, struct vdisk_dev *dev, uint64_t offset,
                 unsigned flags)
{
    struct req_core *c = req->core;
    c->fwd_dev = req->dev;
    c->fwd_offset = req->offset;
    c->fwd_flags = req->flags;
    c->fwd_done = req->done;
    c->pending = 0; /* the driver's hold goes with the request */
    memset(req->state, 0, sizeof req->state); /* the lower driver's now */
    req->dev = dev;
    req->offset = offset;
    req->flags = flags;
    req->done = forward_done;
    req_submit(req);
}

bool req_on_sync_queue(const struct vdisk_req *req)
{
    return !req->q->holds_ref;
}

void req_start_file_io(struct vdisk_req *req, const struct eng_file *file, enum eng_op op,
                       int mode, long (*call)(struct vdisk_req *req, int fd))
{
    struct req_core *c = req->core;
    c->eng_op = op;
    c->eng_mode = mode;
    c->eng_fn = call;
    c->fd = file->fd;
    c->file_id = file->id;
    c->eng_direct = file->direct;
    c->done_bytes = 0;
    req->q->eng->start(req->q, req);
}

void req_complete(struct vdisk_req *req, int ret)
{
    free(req->core->guard_buf); /* the write is done with them */
    req->core->guard_buf = NULL;
    free(req->core->owned_buf);
    req->core->owned_buf = NULL;
    if (req->core->track)
        track_end(req);
    if (req->op == VDISK_OP_FLUSH && ret < 0 && ret != -EROFS && req->dev->drv->protocol) {
        int none = 0;
        atomic_compare_exchange_strong(&req->dev->core->flush_error, &none, ret);
    }
    req->result = ret;
    req->done(req, ret);
}

/* The N bytes of REQ's buffers from SKIP on, as buffer pieces: in SMALL
 * (REQ_INLINE_IOV of them) when they fit, else in an array to free(); their
 * count in *CNT.  NULL when out of memory. */
static struct iovec *req_iov_slice(const struct vdisk_req *req, uint64_t skip, uint64_t n,
                                   struct iovec *small, int *cnt)
{
    struct iovec *v = small;
    if (req->iovcnt > REQ_INLINE_IOV && !(v = calloc((size_t)req->iovcnt, sizeof *v)))
        return NULL;
    *cnt = iov_slice(req->iov, req->iovcnt, (size_t)skip, (size_t)n, v);
    return v;
}

static int req_slice(struct vdisk_req *parent, struct vdisk_dev *dev, enum vdisk_op op,
                     uint64_t offset, uint64_t skip, uint64_t n, unsigned flags)
{
    struct iovec small[REQ_INLINE_IOV] = {{0}};
    int cnt;
    struct iovec *v = req_iov_slice(parent, skip, n, small, &cnt);
    if (!v)
        return -ENOMEM;
    struct vdisk_req *c = req_new_child(parent, dev, op, offset, n, v, cnt, flags,
                                        req_child_releases_parent, NULL);
    if (v != small)
        free(v);
    if (!c)
        return -ENOMEM;
    req_hold(parent);
    req_submit(c);
    return 0;
}

void req_send_child(struct vdisk_req *parent, struct vdisk_dev *dev, enum vdisk_op op,
                    uint64_t offset, uint64_t length, const struct iovec *iov, int iovcnt,
                    unsigned flags)
{
    struct vdisk_req *c = req_new_child(parent, dev, op, offset, length, iov, iovcnt, flags,
                                        req_child_finishes_parent, NULL);
    if (!c) {
        req_fail(parent, -ENOMEM, "out of memory");
        return;
    }
    req_submit(c);
}

int req_write_zeroes_child(struct vdisk_req *parent, struct vdisk_dev *dev, uint64_t offset,
                           uint64_t n, unsigned flags)
{
    struct vdisk_req *c = req_new_child(parent, dev, VDISK_OP_WRITE_ZEROES, offset, n, NULL, 0,
                                        flags, req_child_releases_parent, NULL);
    if (!c)
        return -ENOMEM;
    req_hold(parent);
    req_submit(c);
    return 0;
}

int req_read_slice(struct vdisk_req *parent, struct vdisk_dev *dev, uint64_t offset,
                   uint64_t skip, uint64_t n)
{
    return req_slice(parent, dev, VDISK_OP_READ, offset, skip, n, 0);
}

int req_write_slice(struct vdisk_req *parent, struct vdisk_dev *dev, uint64_t offset,
                    uint64_t skip, uint64_t n, unsigned flags)
{
    return req_slice(parent, dev, VDISK_OP_WRITE, offset, skip, n, flags);
}

/* The synchronous twin of req_slice(): the I/O is done on the caller's
 * thread, nothing is held or submitted. */
static int req_slice_sync(struct vdisk_req *req, struct vdisk_dev *dev, enum vdisk_op op,
                          uint64_t offset, uint64_t skip, uint64_t n, unsigned flags)
{
    /* Zeroed: GCC -O3 cannot see that iov_slice() fills what the I/O reads
     * (-Wmaybe-uninitialized); next to a system call it costs nothing. */
    struct iovec small[REQ_INLINE_IOV] = {{0}};
    int cnt;
    struct iovec *v = req_iov_slice(req, skip, n, small, &cnt);
    if (!v)
        return err_set(-ENOMEM, "out of memory for %d buffer pieces", req->iovcnt);
    int r = op == VDISK_OP_READ ? dev_preadv(dev, v, cnt, offset)
                                : dev_pwritev(dev, v, cnt, offset, flags);
    if (v != small)
        free(v);
    return r;
}

int req_pread_slice(struct vdisk_req *req, struct vdisk_dev *dev, uint64_t offset,
                    uint64_t skip, uint64_t n)
{
    return req_slice_sync(req, dev, VDISK_OP_READ, offset, skip, n, 0);
}

int req_pwrite_slice(struct vdisk_req *req, struct vdisk_dev *dev, uint64_t offset,
                     uint64_t skip, uint64_t n, unsigned flags)
{
    return req_slice_sync(req, dev, VDISK_OP_WRITE, offset, skip, n, flags);
}
