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
    fuzz_format_ops(dev, data, size, 3, false);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    dev->drv->check(dev, 0, &res, NULL, NULL);
    dev_unref(dev);
    return 0;
}
