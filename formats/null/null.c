/* SPDX-License-Identifier: MIT */
/*
 * formats/null/null.c: QEMU's null block driver ("null-co", "null-aio"), a
 * protocol device that stores nothing: writes, discards and flushes succeed
 * and are dropped, reads return zeroes.  Named "null-co://" or "null-aio://"
 * (anything after the "//" is ignored, as QEMU does), or json:{"driver":
 * "null-co", "size": N, "read-zeroes": true}.
 *
 * Options (those of QEMU 7.2):
 *   size         bytes (default 1 GiB)
 *   read-zeroes  on/off (default off); vdisk zeroes the buffer either way
 *                (QEMU leaves it as it was), but block status tells it as
 *                QEMU does: with read-zeroes the device reads as zeroes,
 *                without it nothing is said
 *   latency-ns   taken and ignored (QEMU sleeps that long per request)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

struct null_dev {
    bool read_zeroes;
};

bool null_is_name(const char *filename)
{
    return !strncmp(filename, "null-co://", 10) || !strncmp(filename, "null-aio://", 11);
}

static int null_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)file;
    uint64_t size = 1ull << 30;
    bool zeroes = false;
    const char *v;
    int r;
    if ((v = opt_take(os, "null.size")) && (r = opt_size("size", v, 0, INT64_MAX, &size)) < 0)
        return r;
    if ((v = opt_take(os, "null.read-zeroes")) && (r = opt_bool("read-zeroes", v, &zeroes)) < 0)
        return r;
    if ((v = opt_take(os, "null.latency-ns"))) {
        uint64_t ns;
        if ((r = opt_uint("latency-ns", v, 0, INT64_MAX, &ns)) < 0)
            return r;
    }
    struct null_dev *n = calloc(1, sizeof *n);
    if (!n)
        return err_set(-ENOMEM, "out of memory");
    n->read_zeroes = zeroes;
    dev->priv = n;
    dev->size = size;
    dev->file_length = size;
    dev->block_size = 512;
    dev->align = 1;
    dev->caps = VDISK_CAN_FLUSH | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                VDISK_CAN_ZERO_UNMAP | (dev->params.read_only ? 0 : VDISK_CAN_WRITE);
    return 0;
}

static void null_submit(struct vdisk_req *req)
{
    if (req->op == VDISK_OP_READ)
        iov_memset(req->iov, req->iovcnt, 0, 0, req->length);
    req_complete(req, 0);
}

static int null_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                             struct vdisk_extent *ext)
{
    struct null_dev *n = dev->priv;
    ext->length = len;
    /* QEMU: without read-zeroes nothing is said (not allocated, neither
     * data nor zeroes) */
    ext->flags = n->read_zeroes ? VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET | VDISK_EXT_ZERO : 0;
    ext->host_offset = off;
    ext->host_file = dev->filename;
    return 0;
}

static int64_t null_allocated_size(struct vdisk_dev *dev)
{
    (void)dev;
    return 0;
}

static void null_close(struct vdisk_dev *dev)
{
    free(dev->priv);
}

const struct vdisk_driver vdisk_driver_null = {
    .name = "null-co",
    .protocol = true,
    .open = null_open,
    .submit = null_submit,
    .block_status = null_block_status,
    .allocated_size = null_allocated_size,
    .close = null_close,
};
