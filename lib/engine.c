/* SPDX-License-Identifier: MIT */
/*
 * lib/engine.c: what both I/O engines share: running an operation with
 * plain system calls, and finishing a transfer that the kernel cut short.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

long engine_do_sync(struct vdisk_req *req)
{
    ssize_t r;
    uint64_t off = req->offset + req->core->done_bytes;
    switch (req->core->eng_op) {
    case ENG_READ:
        r = preadv2(req->core->fd, req->iov, req->iovcnt, (off_t)off, 0);
        break;
    case ENG_WRITE:
        r = pwritev2(req->core->fd, req->iov, req->iovcnt, (off_t)off,
                     (req->flags & VDISK_REQ_FUA) ? RWF_DSYNC : 0);
        break;
    case ENG_FSYNC:
        r = req->core->eng_mode ? fdatasync(req->core->fd) : fsync(req->core->fd);
        break;
    case ENG_FALLOCATE:
        r = fallocate(req->core->fd, req->core->eng_mode, (off_t)req->offset, (off_t)req->length);
        break;
    case ENG_CALL:
        return req->core->eng_fn(req, req->core->fd);
    default:
        return -EINVAL;
    }
    return r < 0 ? -errno : (long)r;
}

static void engine_resume(struct vdisk_req *req)
{
    engine_complete(req, req->core->eng_res);
}

void engine_defer(struct vdisk_queue *q, struct vdisk_req *req, long res)
{
    req->core->eng_res = res;
    req->resume = engine_resume;
    queue_defer(q, req, 0);
}

void engine_post(struct vdisk_queue *q, struct vdisk_req *req, long res)
{
    req->core->eng_res = res;
    req->resume = engine_resume;
    queue_post(q, req, 0);
}

/* Drops the first N bytes of the request's (own copy of the) iovec. */
static void iov_consume(struct vdisk_req *req, size_t n)
{
    while (n && req->iovcnt) {
        if (req->iov[0].iov_len <= n) {
            n -= req->iov[0].iov_len;
            req->iov++;
            req->iovcnt--;
        } else {
            req->iov[0].iov_base = (uint8_t *)req->iov[0].iov_base + n;
            req->iov[0].iov_len -= n;
            n = 0;
        }
    }
}

void engine_complete(struct vdisk_req *req, long res)
{
    struct vdisk_queue *q = req->q;
    if (res == -EINTR || res == -EAGAIN) {
        q->eng->start(q, req);
        return;
    }
    if (res < 0) {
        if (req->core->eng_op == ENG_READ || req->core->eng_op == ENG_WRITE)
            req_fail(req, (int)res, "%s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                     op_name(req->op), req->length - req->core->done_bytes,
                     req->offset + req->core->done_bytes, strerror((int)-res));
        else
            req_fail(req, (int)res, "%s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                     op_name(req->op), req->length, req->offset, strerror((int)-res));
        return;
    }
    if (req->core->eng_op != ENG_READ && req->core->eng_op != ENG_WRITE) {
        if (req->core->eng_op == ENG_FALLOCATE && !(req->core->eng_mode & FALLOC_FL_KEEP_SIZE) &&
            req->dev->growable)
            dev_size_grow(req->dev, req->offset + req->length);
        req_complete(req, 0);
        return;
    }
    req->core->done_bytes += (uint64_t)res;
    if (req->core->done_bytes >= req->length) {
        if (req->core->eng_op == ENG_WRITE && req->dev->growable)
            dev_size_grow(req->dev, req->offset + req->length);
        req_complete(req, 0);
        return;
    }
    iov_consume(req, (size_t)res);
    if (req->core->eng_op == ENG_READ && (res == 0 || req->core->eng_direct)) {
        /* End of file: the rest of the device reads as zeroes. */
        iov_memset(req->iov, req->iovcnt, 0, 0, req->length - req->core->done_bytes);
        req_complete(req, 0);
        return;
    }
    if (req->core->eng_op == ENG_WRITE && res == 0) {
        req_fail(req, -EIO, "write of %" PRIu64 " bytes at offset %" PRIu64
                 " made no progress", req->length - req->core->done_bytes,
                 req->offset + req->core->done_bytes);
        return;
    }
    q->eng->start(q, req);
}
