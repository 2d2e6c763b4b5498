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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct vdisk_dev *dev = fuzz_open_image(&in, "vpc", false);
    if (!dev)
        return 0;
    fuzz_format_ops(dev, data, size, 3, true);
    dev_unref(dev);
    return 0;
}
