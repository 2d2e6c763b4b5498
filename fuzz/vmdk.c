/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vmdk.c: the fuzz input is a VMDK image: a sparse extent file or a
 * text descriptor.  It is opened read-write over a memory device (as vmdk,
 * whatever its first bytes), written, zeroed and flushed where the input
 * chooses, and whole grains written plainly and compressed (as a
 * streamOptimized image takes them); then read-only, read (the first
 * megabytes and a few places the input chooses), block-status'd and
 * checked.  The extent files a descriptor names, and a parent, are the
 * input itself again, in memory (the open_backing hook; never a host
 * file).  Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct vdisk_dev *dev = fuzz_open_image(&in, "vmdk", true);
    if (!dev)
        return 0;
    /* Written too, where vdisk writes (sparse and flat extents): the same
     * input opened read-write, written, flushed and closed (the new grains
     * and tables written back) before the read-only pass. */
    struct vdisk_dev *wdev = fuzz_open_image(&in, "vmdk", false);
    if (wdev) {
        fuzz_format_ops(wdev, data, size, 3, true);
        /* Whole 64 KiB grains where the input picks, as a streamOptimized
         * image takes them: written plainly, and compressed. */
        uint64_t vsize = dev_size(wdev);
        uint8_t *grain = calloc(1, 1 << 16);
        if (!grain)
            abort();
        for (size_t i = 0; i < 2 && vsize; i++) {
            uint64_t off = fuzz_pick(data, size, 420 + i * 8) % vsize & ~(uint64_t)0xffff;
            size_t len = vsize - off < (1 << 16) ? (size_t)(vsize - off) : 1 << 16;
            memset(grain, 0x3c + (int)i, len);
            if (i == 0)
                dev_pwrite(wdev, grain, len, off);
            else
                vdisk_pwrite_compressed(wdev, grain, len, off);
            dev_pread(wdev, grain, len, off);
        }
        free(grain);
        dev_flush(wdev);
        dev_unref(wdev);
    }
    fuzz_format_ops(dev, data, size, 3, false);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    dev->drv->check(dev, 0, &res, NULL, NULL);
    dev_unref(dev);
    return 0;
}
