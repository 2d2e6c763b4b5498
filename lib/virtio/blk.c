/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/blk.c: virtio-blk (virtio 1.x, 5.2) over any vdisk device.
 *
 * A request is a 16-byte header {type, reserved, sector} in the driver's
 * buffers, data, and a status byte as the last device-writable byte.
 * Sectors are always 512 bytes; ranges are checked against the device size
 * before any I/O.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "error_internal.h"
#include "virtio_internal.h"

#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WZ_UNMAP 1

#define BLK_CONFIG_SIZE 60
#define BLK_SIZE_MAX (1u << 20)         /* largest data segment advertised */
#define BLK_ZERO_SECTORS_MAX (1u << 22) /* 2 GiB per discard / write_zeroes */
#define BLK_ID_BYTES 20

struct blk {
    char serial[BLK_ID_BYTES + 1];
    unsigned seg_max;
    int read_only;
    unsigned caps;
};

static int blk_config_read(struct vdisk_virtio *v, uint32_t off, void *buf, uint32_t len)
{
    struct blk *b = v->priv;
    uint8_t c[BLK_CONFIG_SIZE] = {0};
    uint32_t bs = vdisk_get_block_size(v->dev);
    le64_store(c + 0, vdisk_get_size(v->dev) / 512);
    le32_store(c + 8, BLK_SIZE_MAX);
    le32_store(c + 12, b->seg_max);
    le32_store(c + 20, bs);
    /* topology: one logical block per physical block, minimum I/O one block */
    le16_store(c + 26, 1);
    le16_store(c + 34, (uint16_t)(v->nq));
    le32_store(c + 36, BLK_ZERO_SECTORS_MAX);
    le32_store(c + 40, 1);
    le32_store(c + 44, bs / 512);
    le32_store(c + 48, BLK_ZERO_SECTORS_MAX);
    le32_store(c + 52, 1);
    c[56] = (b->caps & VDISK_CAN_ZERO_UNMAP) ? 1 : 0;
    memcpy(buf, c + off, len);
    return 0;
}

static void blk_done(struct vq_req *r, uint8_t status)
{
    if (status != VIRTIO_BLK_S_OK)
        r->v->stats.errors++;
    if (r->status) {
        *r->status = status;
        r->used_len += 1;
    }
    vq_complete(r);
}

static void blk_io_done(void *user, int result)
{
    struct vq_req *r = user;
    if (result < 0)
        vlog(r->v, VLOG_IO, "I/O error: %s", vdisk_get_error());
    blk_done(r, result < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

/* The range of NSECT 512-byte sectors at SECTOR, checked against the device. */
static int blk_range(struct vdisk_virtio *v, uint64_t sector, uint64_t nbytes, uint64_t *off)
{
    uint64_t size = vdisk_get_size(v->dev);
    if (sector > UINT64_MAX / 512 || sector * 512 > size || nbytes > size - sector * 512) {
        vlog(v, VLOG_RANGE, "request for %llu bytes at sector %llu is beyond the device "
             "(%llu bytes)", (unsigned long long)nbytes, (unsigned long long)sector,
             (unsigned long long)size);
        return -1;
    }
    *off = sector * 512;
    return 0;
}

static void blk_zeroes(struct vdisk_virtio *v, struct vq_req *r, uint32_t type)
{
    struct blk *b = v->priv;
    vdisk_queue *aq = v->q[r->q].aq;
    uint8_t seg[16];
    size_t data = r->out_len - 16;
    if (data == 0 || data % 16 || data / 16 > 1) {
        vlog(v, VLOG_REQUEST, "%s with %zu bytes of segments (expected one 16-byte segment)",
             type == VIRTIO_BLK_T_DISCARD ? "discard" : "write_zeroes", data);
        blk_done(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    iov_to_buf(r->out, (int)r->nout, 16, seg, 16);
    uint64_t sector = le64_load(seg);
    uint32_t nsect = le32_load(seg + 8), flags = le32_load(seg + 12);
    uint64_t off;
    if (b->read_only) {
        blk_done(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if ((flags & ~(uint32_t)VIRTIO_BLK_WZ_UNMAP) ||
        (type == VIRTIO_BLK_T_DISCARD && (flags & VIRTIO_BLK_WZ_UNMAP))) {
        blk_done(r, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    if (nsect > BLK_ZERO_SECTORS_MAX || blk_range(v, sector, (uint64_t)nsect * 512, &off) < 0) {
        blk_done(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (nsect == 0) {
        blk_done(r, VIRTIO_BLK_S_OK);
        return;
    }
    int e;
    if (type == VIRTIO_BLK_T_DISCARD)
        e = vdisk_aio_discard(aq, off, (uint64_t)nsect * 512, blk_io_done, r);
    else
        e = vdisk_aio_write_zeroes(aq, off, (uint64_t)nsect * 512,
                                   (flags & VIRTIO_BLK_WZ_UNMAP) ? VDISK_REQ_MAY_UNMAP : 0,
                                   blk_io_done, r);
    if (e < 0)
        blk_io_done(r, e);
}

static void blk_request(struct vdisk_virtio *v, struct vq_req *r)
{
    struct blk *b = v->priv;
    vdisk_queue *aq = v->q[r->q].aq;
    uint8_t hdr[16];
    if (r->in_len == 0) {
        vlog(v, VLOG_REQUEST, "request without a device-writable status byte");
        v->stats.errors++;
        vq_complete(r);
        return;
    }
    r->status = iov_byte(r->in, r->nin, r->in_len - 1);
    if (r->out_len < 16) {
        vlog(v, VLOG_REQUEST, "request header of %zu bytes (expected 16)", r->out_len);
        blk_done(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    iov_to_buf(r->out, (int)r->nout, 0, hdr, 16);
    uint32_t type = le32_load(hdr);
    uint64_t sector = le64_load(hdr + 8), off;
    size_t din = r->in_len - 1, dout = r->out_len - 16;
    switch (type) {
    case VIRTIO_BLK_T_IN: {
        if (dout || din % 512 || blk_range(v, sector, din, &off) < 0) {
            if (din % 512)
                vlog(v, VLOG_REQUEST, "read of %zu bytes (not a multiple of 512)", din);
            blk_done(r, VIRTIO_BLK_S_IOERR);
            return;
        }
        if (din == 0) {
            blk_done(r, VIRTIO_BLK_S_OK);
            return;
        }
        /* The data buffers are IN minus the status byte: cut the last entry. */
        unsigned n = r->nin;
        if (r->in[n - 1].iov_len == 1)
            n--;
        else
            r->in[n - 1].iov_len--;
        r->used_len = (uint32_t)din;
        v->stats.bytes_read += din;
        int e = vdisk_aio_preadv(aq, r->in, (int)n, off, 0, blk_io_done, r);
        if (e < 0) {
            r->used_len = 0;
            blk_io_done(r, e);
        }
        return;
    }
    case VIRTIO_BLK_T_OUT: {
        if (b->read_only) {
            vlog(v, VLOG_REQUEST, "write to a read-only device");
            blk_done(r, VIRTIO_BLK_S_IOERR);
            return;
        }
        if (din || dout % 512 || blk_range(v, sector, dout, &off) < 0) {
            if (dout % 512)
                vlog(v, VLOG_REQUEST, "write of %zu bytes (not a multiple of 512)", dout);
            blk_done(r, VIRTIO_BLK_S_IOERR);
            return;
        }
        if (dout == 0) {
            blk_done(r, VIRTIO_BLK_S_OK);
            return;
        }
        /* Skip the header: it may share the first buffer with data. */
        struct iovec *out = r->out;
        unsigned n = r->nout;
        size_t skip = 16;
        while (n && skip >= out->iov_len) {
            skip -= out->iov_len;
            out++;
            n--;
        }
        out->iov_base = (char *)out->iov_base + skip;
        out->iov_len -= skip;
        v->stats.bytes_written += dout;
        int e = vdisk_aio_pwritev(aq, out, (int)n, off, 0, blk_io_done, r);
        if (e < 0)
            blk_io_done(r, e);
        return;
    }
    case VIRTIO_BLK_T_FLUSH: {
        int e = vdisk_aio_flush(aq, blk_io_done, r);
        if (e < 0)
            blk_io_done(r, e);
        return;
    }
    case VIRTIO_BLK_T_GET_ID: {
        size_t k = din < BLK_ID_BYTES ? din : BLK_ID_BYTES;
        char id[BLK_ID_BYTES] = {0};
        memcpy(id, b->serial, strnlen(b->serial, BLK_ID_BYTES));
        iov_from_buf(r->in, (int)r->nin, 0, id, k);
        r->used_len = (uint32_t)k;
        blk_done(r, VIRTIO_BLK_S_OK);
        return;
    }
    case VIRTIO_BLK_T_DISCARD:
        if (!virtio_has(v, VIRTIO_BLK_F_DISCARD))
            break;
        blk_zeroes(v, r, type);
        return;
    case VIRTIO_BLK_T_WRITE_ZEROES:
        if (!virtio_has(v, VIRTIO_BLK_F_WRITE_ZEROES))
            break;
        blk_zeroes(v, r, type);
        return;
    default:
        break;
    }
    vlog(v, VLOG_UNSUPPORTED, "request type %u is not supported", type);
    blk_done(r, VIRTIO_BLK_S_UNSUPP);
}

/* A buffer was outside guest memory: IOERR when the status byte is valid. */
static void blk_fail(struct vdisk_virtio *v, struct vq_req *r)
{
    (void)v;
    if (r->nin && r->in[r->nin - 1].iov_len) {
        r->status = iov_byte(r->in, r->nin, r->in_len - 1);
        r->used_len = 0;
        blk_done(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    vq_complete(r);
}

static void blk_free(struct vdisk_virtio *v)
{
    free(v->priv);
}

static const struct virtio_model blk_model = {
    .name = "virtio-blk",
    .config_read = blk_config_read,
    .request = blk_request,
    .fail = blk_fail,
    .free = blk_free,
};

VDISK_EXPORT int vdisk_virtio_blk_new(vdisk_virtio **out, vdisk_dev *dev,
                         const struct vdisk_virtio_blk_params *p)
{
    err_enter(__func__);
    if (!out || !dev)
        return err_set(-EINVAL, "no device given");
    *out = NULL;
    /* The caller's parameters; those its version lacks take their defaults. */
    struct vdisk_virtio_blk_params in = {.struct_size = sizeof in};
    if (p) {
        int r = ABI_IN(vdisk_virtio_blk_params, &in, p, VDISK_VIRTIO_BLK_PARAMS_SIZE_V1);
        if (r < 0)
            return r;
    }
    p = &in;
    unsigned nq = p->num_queues ? p->num_queues : 1;
    unsigned qsize = p->queue_size ? p->queue_size : 256;
    unsigned seg_max = p->seg_max ? p->seg_max : 254;
    if (nq > 64)
        return err_set(-EINVAL, "%u queues asked for (at most 64)", nq);
    if (seg_max > VQ_SEGS_MAX - 2)
        return err_set(-EINVAL, "seg_max %u is above %d", seg_max, VQ_SEGS_MAX - 2);
    if (p->serial && strlen(p->serial) > BLK_ID_BYTES)
        return err_set(-EINVAL, "serial \"%s\" is longer than %d bytes", p->serial,
                       BLK_ID_BYTES);
    struct vdisk_virtio *v;
    int r = virtio_alloc(&v, sizeof(struct blk), qsize);
    if (r < 0)
        return r;
    struct blk *b = v->priv;
    strcpy(b->serial, p->serial ? p->serial : "vdisk");
    b->seg_max = seg_max;
    b->caps = vdisk_can(dev);
    b->read_only = p->read_only || vdisk_is_read_only(dev);
    uint64_t f = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
                 1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
                 1ull << VIRTIO_BLK_F_TOPOLOGY;
    if (nq > 1)
        f |= 1ull << VIRTIO_BLK_F_MQ;
    if (b->read_only)
        f |= 1ull << VIRTIO_BLK_F_RO;
    else
        f |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
    r = virtio_init(v, &blk_model, dev, VDISK_VIRTIO_ID_BLOCK, f, nq, qsize);
    for (unsigned i = 0; r == 0 && i < nq; i++)
        r = virtio_attach_aq(v, i);
    if (r < 0) {
        vdisk_virtio_free(v);
        return r;
    }
    v->config_size = BLK_CONFIG_SIZE;
    *out = v;
    return 0;
}
