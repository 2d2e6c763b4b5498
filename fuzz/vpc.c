/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vpc.c: the fuzz input is a VHD image (fixed, dynamic or
 * differencing).  It is opened read-write over a memory device (as vpc,
 * whatever its first bytes), read (the first megabytes and a few places the
 * input chooses), written, zeroed, discarded and flushed.  A differencing
 * image's parent is the input itself again, in memory (the open_backing
 * hook; never a host file), down to the chain's depth limit.  Any crash,
 * sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MEM_LIMIT (64u << 20)

struct input {
    const uint8_t *data;
    size_t size;
};

static int open_parent(void *opaque, const char *name, const struct vdisk_open_params *p,
                       struct vdisk_dev **filep)
{
    const struct input *in = opaque;
    (void)name;
    return dev_open_memory(filep, in->data, in->size, MEM_LIMIT, p);
}

static uint64_t pick(const uint8_t *data, size_t size, size_t at)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (size ? data[(at + i) % size] : 0);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct vdisk_open_params p = fuzz_params(false);
    p.no_backing = false;
    p.open_backing = open_parent;
    p.backing_opaque = &in;
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, data, size, MEM_LIMIT, &p) < 0)
        return 0;
    if (dev_open_format(&dev, file, "vpc", &p, NULL) < 0) {
        dev_unref(file);
        return 0;
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
        dev_pread(dev, buf, (size_t)len, off);
    }
    dev_flush(dev);
    free(buf);
    dev_unref(dev);
    return 0;
}
