/* SPDX-License-Identifier: MIT */
/*
 * formats/memory/memory.c: a protocol device backed by memory, for fuzzing
 * and tests: the formats run over it exactly as over a file.  It grows on
 * writes past its end up to a fixed limit (writes beyond fail with
 * -ENOSPC), so that a hostile image cannot make it allocate without bound.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

struct mem {
    pthread_mutex_t lock;
    uint8_t *data;
    uint64_t len;     /* bytes stored */
    uint64_t cap;     /* bytes allocated (grown by doubling: ASan's realloc copies) */
    uint64_t limit;   /* the most it may grow to */
};

static int mem_grow(struct vdisk_dev *dev, struct mem *m, uint64_t end)
{
    if (end <= m->len)
        return 0;
    if (end > m->limit)
        return -ENOSPC;
    if (end > m->cap) {
        uint64_t cap = m->cap < m->limit / 2 ? m->cap * 2 : m->limit;
        uint8_t *d = realloc(m->data, cap > end ? cap : end);
        if (!d)
            return -ENOMEM;
        m->data = d;
        m->cap = cap > end ? cap : end;
    }
    memset(m->data + m->len, 0, end - m->len);
    m->len = end;
    dev_size_grow(dev, align_up(end, 512));
    return 0;
}

static void mem_submit(struct vdisk_req *req)
{
    struct mem *m = req->dev->priv;
    uint64_t off = req->offset, len = req->length;
    int r = 0;
    pthread_mutex_lock(&m->lock);
    switch (req->op) {
    case VDISK_OP_READ: {
        uint64_t have = off < m->len ? (m->len - off < len ? m->len - off : len) : 0;
        if (have)
            iov_from_buf(req->iov, req->iovcnt, 0, m->data + off, have);
        if (have < len)
            iov_memset(req->iov, req->iovcnt, have, 0, len - have);
        break;
    }
    case VDISK_OP_WRITE:
        r = mem_grow(req->dev, m, off + len);
        if (r == 0)
            iov_to_buf(req->iov, req->iovcnt, 0, m->data + off, len);
        break;
    case VDISK_OP_WRITE_ZEROES:
    case VDISK_OP_DISCARD:
        if (req->op == VDISK_OP_WRITE_ZEROES && !(req->flags & VDISK_REQ_MAY_UNMAP))
            r = mem_grow(req->dev, m, off + len);
        if (r == 0 && off < m->len)
            memset(m->data + off, 0, m->len - off < len ? m->len - off : len);
        break;
    case VDISK_OP_FLUSH:
        break;
    }
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        req_fail(req, r, "%s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                 op_name(req->op), len, off, strerror(-r));
    else
        req_complete(req, 0);
}

static int mem_truncate(struct vdisk_dev *dev, uint64_t size)
{
    struct mem *m = dev->priv;
    pthread_mutex_lock(&m->lock);
    int r = size > m->len ? mem_grow(dev, m, size) : 0;
    if (r == 0 && size < m->len) {
        m->len = size;
        __atomic_store_n(&dev->size, align_up(size, 512), __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&m->lock);
    return r < 0 ? err_set(r, "%s: cannot resize to %" PRIu64 " bytes", dev->filename, size) : 0;
}

static int64_t mem_allocated(struct vdisk_dev *dev)
{
    struct mem *m = dev->priv;
    return (int64_t)m->len;
}

static void mem_close(struct vdisk_dev *dev)
{
    struct mem *m = dev->priv;
    pthread_mutex_destroy(&m->lock);
    free(m->data);
    free(m);
}

const struct vdisk_driver vdisk_driver_memory = {
    .name = "memory",
    .protocol = true,
    .submit = mem_submit,
    .truncate = mem_truncate,
    .allocated_size = mem_allocated,
    .close = mem_close,
};

int dev_open_memory(struct vdisk_dev **devp, const void *data, size_t len, uint64_t limit,
                    const struct vdisk_open_params *params)
{
    struct mem *m = calloc(1, sizeof *m);
    struct vdisk_dev *dev = m ? dev_alloc(&vdisk_driver_memory, "memory", params) : NULL;
    if (m)
        m->data = malloc(len ? len : 1);
    if (!dev || !m->data) {
        if (m)
            free(m->data);
        free(m);
        dev_free(dev);
        return err_set(-ENOMEM, "out of memory");
    }
    if (len)
        memcpy(m->data, data, len);
    pthread_mutex_init(&m->lock, NULL);
    m->len = len;
    m->cap = len ? len : 1;
    m->limit = limit < len ? len : limit;
    dev->priv = m;
    dev->size = align_up(len, 512);
    dev->file_length = len;
    dev->caps = VDISK_CAN_FLUSH | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                VDISK_CAN_ZERO_UNMAP | (params->read_only ? 0 : VDISK_CAN_WRITE);
    *devp = dev;
    return 0;
}
