/* SPDX-License-Identifier: MIT */
/*
 * formats/offset/offset.c: a byte range of another device as a device.
 *
 * Byte N of the range is byte START + N of the parent.  The core has already
 * checked each request against the range's size, so mapping it is an
 * addition; the parent checks it again against its own size at its
 * boundary.  Partitions (MBR, GPT) are opened as ranges.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

struct range {
    struct vdisk_dev *parent;
    uint64_t start;
};

static void offset_submit(struct vdisk_req *req)
{
    struct range *r = req->dev->priv;
    uint64_t off = req->op == VDISK_OP_FLUSH ? 0 : r->start + req->offset;
    req_send_child(req, r->parent, req->op, off, req->length, req->iov, req->iovcnt,
                   req->flags & (VDISK_REQ_FUA | VDISK_REQ_MAY_UNMAP | VDISK_REQ_NO_FALLBACK));
}

static int offset_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                               struct vdisk_extent *ext)
{
    struct range *r = dev->priv;
    return dev_block_status(r->parent, r->start + off, len, ext);
}

static int offset_map_file(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                           struct dev_file_run *run)
{
    struct range *r = dev->priv;
    return dev_map_file(r->parent, r->start + off, len, run);
}

static int64_t offset_allocated_size(struct vdisk_dev *dev)
{
    struct range *r = dev->priv;
    int64_t a = dev_allocated_size(r->parent);
    if (a == -ENOTSUP)
        return err_set(-ENOTSUP, "%s: cannot tell the allocated size", dev->filename);
    return a;
}

static void offset_close(struct vdisk_dev *dev)
{
    struct range *r = dev->priv;
    dev_remove_upper(r->parent, dev);
    dev_unref(r->parent);
    free(r);
}

const struct vdisk_driver vdisk_driver_offset = {
    .name = "offset",
    .submit = offset_submit,
    .block_status = offset_block_status,
    .map_file = offset_map_file,
    .allocated_size = offset_allocated_size,
    .close = offset_close,
};

VDISK_EXPORT int vdisk_open_range(vdisk_dev **devp, vdisk_dev *parent, uint64_t offset,
                                  uint64_t length, unsigned flags)
{
    err_enter(__func__);
    *devp = NULL;
    if (!parent)
        return err_set(-EINVAL, "no parent device");
    if (flags & ~VDISK_OPEN_RDONLY)
        return err_set(-EINVAL, "unknown flags 0x%x", flags & ~VDISK_OPEN_RDONLY);
    if (!range_inside(offset, length, parent->size))
        return err_set(-EINVAL, "%s: the range of %" PRIu64 " bytes at offset %" PRIu64
                       " does not fit in the device (%" PRIu64 " bytes)",
                       parent->filename, length, offset, parent->size);
    char *name = str_printf("%s[%" PRIu64 "+%" PRIu64 "]", parent->filename, offset, length);
    struct range *r = calloc(1, sizeof *r);
    struct vdisk_open_params params = parent->params;
    struct vdisk_dev *dev = name && r ? dev_alloc(&vdisk_driver_offset, name, &params) : NULL;
    free(name);
    if (!dev) {
        free(r);
        return err_set(-ENOMEM, "out of memory");
    }
    dev->engine = parent->engine;
    r->parent = parent;
    r->start = offset;
    dev->priv = r;
    dev->size = length;
    dev->block_size = parent->block_size;
    /* The parent's alignment only when the range keeps whole blocks; else
     * the parent reads, modifies and writes them. */
    dev->align = parent->align > 1 && offset % parent->align == 0 &&
                 length % parent->align == 0 ? parent->align : 1;
    dev->caps = parent->caps;
    if (flags & VDISK_OPEN_RDONLY)
        dev->caps &= ~VDISK_CAN_WRITE;
    dev->params.read_only = !(dev->caps & VDISK_CAN_WRITE);
    dev_ref(parent);
    dev_add_upper(parent, dev);
    *devp = dev;
    return 0;
}
