/* SPDX-License-Identifier: MIT */
/*
 * fuzz/parallels.c: the fuzz input is a Parallels image (either layout).
 * It is opened read-only over a memory device (as parallels, whatever its
 * first bytes), read (the first megabytes and a few places the input
 * chooses), block-status'd and checked.  Any crash, sanitizer report, leak
 * or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct vdisk_dev *dev = fuzz_open_image(&in, "parallels", true);
    if (!dev)
        return 0;
    fuzz_format_ops(dev, data, size, 3, false);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    dev->drv->check(dev, 0, &res, NULL, NULL);
    dev_unref(dev);
    return 0;
}
