/* SPDX-License-Identifier: MIT */
/*
 * formats/blkdebug/limits.c: blkdebug's request limits over a format, as
 * QEMU's block layer and blkdebug together apply them.  A json: name
 * {"driver": "blkdebug", "image": {"driver": "qcow2", ...}, "align": ...,
 * "max-transfer": ..., "opt-write-zero": ..., "max-write-zero": ...,
 * "opt-discard": ..., "max-discard": ...} opens the image with this device
 * over it (lib/json_name.c hands the limits over as the open options
 * limits.align, ...).
 *
 * What the limits change, as in QEMU 7.2:
 *  - reads and writes go down in pieces of at most max-transfer bytes;
 *  - a write of zeroes is cut at multiples of Z = max(opt-write-zero,
 *    align), each piece at most max-write-zero (rounded down to Z) and a
 *    first piece that starts off a multiple of Z at most max-transfer
 *    bytes; a piece shorter than Z is not a write of zeroes below (blkdebug
 *    refuses it) but a write of zero bytes, in pieces of max-transfer,
 *    unless the request says VDISK_REQ_NO_FALLBACK (then -ENOTSUP);
 *  - a discard is cut at multiples of D = max(opt-discard, align) (opt-
 *    discard not given: qcow2's cluster size, which QEMU's blkdebug takes
 *    from the image below), each
 *    piece at most max-discard bytes, a piece that starts off a multiple
 *    of D ending on a multiple of align where it can; pieces shorter than
 *    align are dropped (a discard is advisory).
 * So the image below sees the requests a QEMU guest's would make it see
 * (qemu-iotests 204 compares the resulting maps).
 *
 * Everything runs on a worker thread with synchronous requests below: this
 * device is for tests, not speed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

/* QEMU's MAX_BOUNCE_BUFFER: the largest piece without a max-transfer. */
#define LIMITS_DEFAULT_TRANSFER (32768u * 512u)
/* The zero bytes one fallback write sends at most. */
#define LIMITS_ZERO_BUF (1u << 20)

struct limits {
    struct vdisk_dev *child; /* (first: filter_* in lib/device.c) */
    struct offload *offload;
    uint64_t align, max_transfer, zero_align, max_zero, discard_align, max_discard;
};

static const char *const limit_keys[] = {"limits.align", "limits.max-transfer",
                                         "limits.opt-write-zero", "limits.max-write-zero",
                                         "limits.opt-discard", "limits.max-discard"};

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Reads or writes REQ in pieces of max_transfer. */
static int rw_work(struct limits *s, struct vdisk_req *req)
{
    int r = 0;
    for (uint64_t done = 0; r == 0 && done < req->length;) {
        uint64_t n = min64(req->length - done, s->max_transfer);
        r = req->op == VDISK_OP_READ
                ? req_pread_slice(req, s->child, req->offset + done, done, n)
                : req_pwrite_slice(req, s->child, req->offset + done, done, n,
                                   req->flags & VDISK_REQ_FUA);
        done += n;
    }
    return r;
}

/* N zero bytes written at OFF (blkdebug refused the piece as a write of
 * zeroes: QEMU's block layer falls back to writing them). */
static int write_zero_bytes(struct limits *s, uint64_t off, uint64_t n, unsigned flags)
{
    uint64_t step = min64(s->max_transfer, LIMITS_ZERO_BUF);
    void *zero = calloc(1, (size_t)min64(step, n));
    if (!zero)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    for (uint64_t done = 0; r == 0 && done < n; done += step) {
        uint64_t len = min64(n - done, step);
        r = dev_pwritev(s->child, &(struct iovec){zero, (size_t)len}, 1, off + done,
                        flags & VDISK_REQ_FUA);
    }
    free(zero);
    return r;
}

static int zeroes_work(struct limits *s, struct vdisk_req *req)
{
    uint64_t z = s->zero_align, off = req->offset, left = req->length;
    uint64_t head = off % z, tail = (off + left) % z;
    uint64_t max = s->max_zero / z * z;
    int r = 0;
    while (r == 0 && left) {
        uint64_t n = left;
        if (head) {
            n = min64(min64(left, s->max_transfer), z - head);
            head = (head + n) % z;
        } else if (tail && n > z) {
            n -= tail;
        }
        n = min64(n, max);
        if (n >= z)
            r = dev_write_zeroes(s->child, off, n, req->flags & (VDISK_REQ_FUA | VDISK_REQ_MAY_UNMAP |
                                                             VDISK_REQ_NO_FALLBACK));
        else if (req->flags & VDISK_REQ_NO_FALLBACK)
            r = err_set(-ENOTSUP, "%s: zeroes cannot be written cheaply", req->dev->filename);
        else
            r = write_zero_bytes(s, off, n, req->flags);
        off += n;
        left -= n;
    }
    return r;
}

static int discard_work(struct limits *s, struct vdisk_req *req)
{
    uint64_t d = s->discard_align, a = s->align, off = req->offset, left = req->length;
    uint64_t head = off % d, tail = (off + left) % d;
    int r = 0;
    while (r == 0 && left) {
        uint64_t n = left;
        if (head) {
            n = min64(left, d - head);
            if (n % a)
                n %= a;
            head = (head + n) % d;
        } else if (tail) {
            if (n > d)
                n -= tail;
            else if (tail % a && tail > a) {
                tail %= a; /* (the last piece: the bytes past a multiple of align) */
                n -= tail;
            }
        }
        n = min64(n, s->max_discard);
        if (!n) /* (cannot be: every branch leaves a byte at least) */
            return err_set(-EIO, "%s: discard cut to nothing", req->dev->filename);
        if (n >= a) /* (shorter: dropped, as blkdebug drops it) */
            r = dev_discard(s->child, off, n);
        off += n;
        left -= n;
    }
    return r;
}

static int limits_work(struct vdisk_req *req)
{
    struct limits *s = req->dev->priv;
    int r;
    switch (req->op) {
    case VDISK_OP_READ:
    case VDISK_OP_WRITE:
        r = rw_work(s, req);
        break;
    case VDISK_OP_WRITE_ZEROES:
        r = zeroes_work(s, req);
        break;
    case VDISK_OP_DISCARD:
        r = discard_work(s, req);
        break;
    default:
        r = dev_flush(s->child);
        break;
    }
    if (r < 0) /* (the message, from this worker to the request, as compress does) */
        req_set_error(req, r, err_detail());
    return r;
}

static void limits_submit(struct vdisk_req *req)
{
    struct limits *s = req->dev->priv;
    if (req->flags & REQ_VMSTATE) { /* (not the disk's: whole) */
        req_send_child(req, s->child, req->op, req->offset, req->length, req->iov, req->iovcnt,
                       req->flags);
        return;
    }
    offload_req(s->offload, req, limits_work, NULL);
}

static void limits_close(struct vdisk_dev *dev)
{
    struct limits *s = dev->priv;
    offload_free(s->offload);
    dev_remove_upper(s->child, dev);
    dev_unref(s->child);
    free(s);
}

static const struct vdisk_driver vdisk_driver_limits = {
    .name = "blkdebug",
    .submit = limits_submit,
    .block_status = filter_block_status,
    .allocated_size = filter_allocated_size,
    .truncate = filter_truncate,
    .take_perms = filter_take_perms,
    .close = limits_close,
};

/* The limit KEY (QEMU's name after "limits."), V: a size, a multiple of
 * ALIGN when ALIGN is not 0. */
static int limit_value(const char *key, const char *v, uint64_t align, uint64_t *out)
{
    int r = opt_size(key, v, 0, UINT32_MAX, out);
    if (r == 0 && align && *out % align)
        r = err_set(-EINVAL, "Cannot meet constraints with %s %" PRIu64 " (a multiple of "
                    "align %" PRIu64 " is needed)", key, *out, align);
    return r;
}

int limits_wrap(struct vdisk_dev **devp, struct opt_set *os)
{
    const char *v[6];
    bool any = false;
    for (int i = 0; i < 6; i++)
        any |= (v[i] = opt_take(os, limit_keys[i])) != NULL;
    if (!any)
        return 0;
    struct vdisk_dev *child = *devp;
    uint64_t val[6] = {0};
    int r = 0;
    if (v[0] && (r = limit_value("align", v[0], 0, &val[0])) == 0 &&
        (val[0] == 0 || (val[0] & (val[0] - 1))))
        r = err_set(-EINVAL, "Cannot meet constraints with align %" PRIu64, val[0]);
    uint64_t a = val[0] ? val[0] : 1;
    for (int i = 1; r == 0 && i < 6; i++)
        if (v[i])
            r = limit_value(limit_keys[i] + 7, v[i], a, &val[i]);
    if (r < 0)
        return r;
    struct limits *s = calloc(1, sizeof *s);
    struct vdisk_open_params params = child->params;
    struct vdisk_dev *dev = s ? dev_alloc(&vdisk_driver_limits, child->filename, &params) : NULL;
    if (!dev || !(s->offload = offload_new())) {
        if (dev)
            dev_free(dev);
        free(s);
        return err_set(-ENOMEM, "out of memory");
    }
    s->child = child;
    s->align = a;
    s->max_transfer = val[1] ? val[1] : LIMITS_DEFAULT_TRANSFER;
    s->zero_align = val[2] > a ? val[2] : a;
    s->max_zero = val[3] ? val[3] : INT64_MAX;
    if (s->max_zero < s->zero_align)
        s->max_zero = s->zero_align;
    /* Without opt-discard blkdebug keeps the discard alignment it took
     * from the image below: qcow2's cluster size (QEMU's merged limits). */
    uint64_t d = val[4];
    if (!d && !strcmp(child->drv->name, "qcow2"))
        d = dev_cluster_size(child);
    s->discard_align = d > a ? d : a;
    s->max_discard = val[5] ? val[5] : INT64_MAX;
    dev->priv = s;
    dev->engine = child->engine;
    dev->size = dev_size(child);
    dev->file_length = child->file_length;
    dev->block_size = child->block_size;
    dev->align = child->align;
    dev->caps = child->caps;
    dev_add_upper(child, dev);
    *devp = dev;
    return 0;
}
