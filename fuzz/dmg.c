/* SPDX-License-Identifier: MIT */
/*
 * fuzz/dmg.c: the fuzz input is a DMG (UDIF) image.  It is opened
 * read-only over a memory device (as dmg, whatever its name), read (the
 * first megabytes and a few places the input chooses) and block-status'd.
 * Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct vdisk_dev *dev = fuzz_open_image(&in, "dmg", true);
    if (!dev)
        return 0;
    fuzz_format_ops(dev, data, size, 3, false);
    dev_unref(dev);
    return 0;
}
