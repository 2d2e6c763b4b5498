/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vdi.c: the fuzz input is a VDI image.  It is opened read-write over
 * a memory device (read-only when its map is damaged), read (the first
 * megabytes and a few places the input chooses), written (allocating
 * blocks), zeroed, discarded, flushed, block-status'd and checked.  Any
 * crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MEM_LIMIT (64u << 20)

static uint64_t pick(const uint8_t *data, size_t size, size_t at)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (size ? data[(at + i) % size] : 0);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, data, size, MEM_LIMIT, &p) < 0)
        return 0;
    if (dev_open_format(&dev, file, "vdi", &p, NULL) < 0) {
        /* A damaged map opens read-only. */
        struct vdisk_open_params ro = fuzz_params(true);
        if (dev_open_format(&dev, file, "vdi", &ro, NULL) < 0) {
            dev_unref(file);
            return 0;
        }
    }
    uint64_t vsize = dev_size(dev);
    uint8_t *buf = malloc(1 << 16);
    if (!buf)
        abort();
    for (uint64_t off = 0; off < vsize && off < (4u << 20); off += 1 << 16)
        dev_pread(dev, buf, vsize - off < (1 << 16) ? (size_t)(vsize - off) : 1 << 16, off);
    for (size_t i = 0; i < 4 && vsize; i++) {
        uint64_t off = pick(data, size, 200 + i * 8) % vsize;
        uint64_t len = 1 + pick(data, size, 240 + i * 8) % (1 << 16);
        if (len > vsize - off)
            len = vsize - off;
        dev_pread(dev, buf, (size_t)len, off);
        struct vdisk_extent ext;
        dev_block_status(dev, off, len, &ext);
    }
    if (dev->caps & VDISK_CAN_WRITE) {
        memset(buf, 0xa5, 1 << 16);
        for (size_t i = 0; i < 4 && vsize; i++) {
            uint64_t off = pick(data, size, 300 + i * 8) % vsize;
            uint64_t len = 1 + pick(data, size, 340 + i * 8) % (1 << 16);
            if (len > vsize - off)
                len = vsize - off;
            switch (pick(data, size, 380 + i) % 3) {
            case 0: dev_pwrite(dev, buf, (size_t)len, off); break;
            case 1: dev_discard(dev, off, len); break;
            default: dev_write_zeroes(dev, off, len, 0); break;
            }
        }
        dev_flush(dev);
    }
    struct vdisk_check_result res = {.struct_size = sizeof res};
    dev->drv->check(dev, 0, &res, NULL, NULL);
    free(buf);
    dev_unref(dev);
    return 0;
}
