/* SPDX-License-Identifier: MIT */
/*
 * fuzz/qcow2.c: the fuzz input is a qcow2 image.  It is opened read-write
 * over a memory device, read (the first megabytes and a few places the
 * input chooses), written, discarded, zeroed, flushed, checked and
 * repaired.  Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "options_internal.h"

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
    if (dev_open_format(&dev, file, "qcow2", &p, NULL) < 0) {
        /* Images with persistent bitmaps open read-only, or read-write
         * when the bitmaps are dropped: both ways are exercised. */
        struct vdisk_open_params ro = fuzz_params(true);
        if (dev_open_format(&dev, file, "qcow2", &ro, NULL) == 0) {
            uint8_t b[4096];
            for (uint64_t off = 0; off < dev_size(dev) && off < (1u << 20); off += sizeof b)
                dev_pread(dev, b, dev_size(dev) - off < sizeof b ? dev_size(dev) - off : sizeof b,
                          off);
            struct vdisk_check_result res = {.struct_size = sizeof res};
            dev->drv->check(dev, 0, &res, NULL, NULL);
            dev_ref(file);
            dev_unref(dev);
        }
        vdisk_options *o = NULL;
        struct opt_set os = {0};
        int r = vdisk_options_new(&o);
        if (r == 0)
            r = vdisk_options_set(o, "drop-bitmaps", "on");
        if (r == 0)
            r = opt_set_init(&os, o);
        if (r < 0 || dev_open_format(&dev, file, "qcow2", &p, &os) < 0) {
            opt_set_fini(&os);
            vdisk_options_free(o);
            dev_unref(file);
            return 0;
        }
        opt_set_fini(&os);
        vdisk_options_free(o);
    }
    uint64_t vsize = dev_size(dev);
    uint8_t *buf = malloc(1 << 16);
    if (!buf)
        abort();
    /* Reads: the start, and places the input picks. */
    for (uint64_t off = 0; off < vsize && off < (4u << 20); off += 1 << 16)
        dev_pread(dev, buf, vsize - off < (1 << 16) ? (size_t)(vsize - off) : 1 << 16, off);
    for (size_t i = 0; i < 4 && vsize; i++) {
        uint64_t off = pick(data, size, 200 + i * 8) % vsize;
        uint64_t len = 1 + pick(data, size, 240 + i * 8) % (1 << 16);
        if (len > vsize - off)
            len = vsize - off;
        dev_pread(dev, buf, (size_t)len, off);
    }
    /* Writes, discards, zeroes, where the input picks. */
    memset(buf, 0xa5, 1 << 16);
    for (size_t i = 0; i < 4 && vsize; i++) {
        uint64_t off = pick(data, size, 300 + i * 8) % vsize;
        uint64_t len = 1 + pick(data, size, 340 + i * 8) % (1 << 16);
        if (len > vsize - off)
            len = vsize - off;
        switch (pick(data, size, 380 + i) % 4) {
        case 0: dev_pwrite(dev, buf, (size_t)len, off); break;
        case 1: dev_discard(dev, off, len); break;
        case 2: dev_write_zeroes(dev, off, len, 0); break;
        default: dev_write_zeroes(dev, off, len, VDISK_REQ_MAY_UNMAP); break;
        }
    }
    dev_flush(dev);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    if (dev->drv->check) {
        dev->drv->check(dev, 0, &res, NULL, NULL);
        dev->drv->check(dev, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, &res, NULL,
                        NULL);
    }
    free(buf);
    dev_unref(dev);
    return 0;
}
