/* SPDX-License-Identifier: MIT */
/*
 * fuzz/qed.c: the fuzz input is a QED image.  It is opened read-only over a
 * memory device (as qed, whatever its first bytes: vdisk does not write
 * QED), read (the first megabytes and a few places the input chooses),
 * block-status'd and checked.  A backing file is the input itself again,
 * in memory (the open_backing hook; never a host file), down to the
 * chain's depth limit.  Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = {data, size};
    struct vdisk_dev *dev = fuzz_open_image(&in, "qed", true);
    if (!dev)
        return 0;
    fuzz_format_ops(dev, data, size, 3, false);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    dev->drv->check(dev, 0, &res, NULL, NULL);
    dev_unref(dev);
    return 0;
}
