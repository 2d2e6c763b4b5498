/* SPDX-License-Identifier: MIT */
/*
 * formats/compress/compress.c: QEMU's "compress" filter.  Every write to
 * it is stored compressed by the image below (qcow2), cluster by cluster;
 * everything else passes through.  Opened as
 *   json:{"driver": "compress", "file": {"driver": "qcow2", "file": {...}}}
 * (or --image-opts driver=compress,file.driver=qcow2,...).
 *
 * A write covers whole clusters of the image below: the clusters it covers
 * in part are read first and merged (the filter's request alignment is the
 * cluster size in QEMU, which reads and merges the same way).  Writes run
 * on a worker thread, one at a time, so that two writes into one cluster
 * cannot lose each other's bytes; data that does not shrink is stored
 * uncompressed, as vdisk_pwrite_compressed stores it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

struct cfilter {
    struct vdisk_dev *child;   /* the image whose format compresses (first:
                                  filter_* in lib/device.c) */
    struct offload *offload;
    pthread_mutex_t lock;      /* one write at a time */
    uint64_t cluster;
    uint8_t *buf;              /* one cluster, under the lock */
};

/* On the worker: the write REQ, cluster by cluster. */
static int write_work(struct vdisk_req *req)
{
    struct cfilter *s = req->dev->priv;
    uint64_t cs = s->cluster, size = dev_size(s->child);
    uint64_t end = req->offset + req->length;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    for (uint64_t c = align_down(req->offset, cs); r == 0 && c < end; c += cs) {
        uint64_t clen = size - c < cs ? size - c : cs;
        uint64_t from = c > req->offset ? c : req->offset;
        uint64_t to = c + clen < end ? c + clen : end;
        if (from > c || to < c + clen)
            r = dev_pread(s->child, s->buf, clen, c); /* the rest of the cluster */
        if (r == 0) {
            iov_to_buf(req->iov, req->iovcnt, from - req->offset, s->buf + (from - c), to - from);
            r = dev_pwrite_compressed(s->child, s->buf, clen, c);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void cf_submit(struct vdisk_req *req)
{
    struct cfilter *s = req->dev->priv;
    if (req->op == VDISK_OP_WRITE) {
        offload_req(s->offload, req, write_work, NULL);
        return;
    }
    uint64_t off = req->op == VDISK_OP_FLUSH ? 0 : req->offset;
    req_send_child(req, s->child, req->op, off, req->length, req->iov, req->iovcnt,
                   req->flags & (VDISK_REQ_FUA | VDISK_REQ_MAY_UNMAP | VDISK_REQ_NO_FALLBACK));
}

static void cf_close(struct vdisk_dev *dev)
{
    struct cfilter *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->child)
        dev_unref(s->child);
    pthread_mutex_destroy(&s->lock);
    free(s->buf);
    free(s);
    dev->priv = NULL;
}

static int cf_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)os;
    uint32_t cs = dev_can_compress(file) ? dev_cluster_size(file) : 0;
    if (!cs)
        return err_set(-ENOTSUP, "Compression is not supported for underlying format: %s",
                       file->drv->name);
    struct cfilter *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    s->cluster = cs;
    pthread_mutex_init(&s->lock, NULL);
    dev->priv = s;
    if (!(s->buf = malloc(cs)) || !(s->offload = offload_new())) {
        cf_close(dev); /* (the caller keeps FILE on failure) */
        return err_set(-ENOMEM, "out of memory");
    }
    s->child = file;
    dev->size = dev_size(file);
    dev->block_size = file->block_size;
    dev->align = file->align;
    dev->caps = file->caps;
    return 0;
}

const struct vdisk_driver vdisk_driver_compress = {
    .name = "compress",
    .open = cf_open,
    .close = cf_close,
    .submit = cf_submit,
    .block_status = filter_block_status,
    .allocated_size = filter_allocated_size,
};
