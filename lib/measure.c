/* SPDX-License-Identifier: MIT */
/*
 * lib/measure.c: vdisk_measure, the size a new image needs (qemu-img
 * measure).  The checks every format shares and the count of a source's
 * data are here; each format driver does its own arithmetic (its measure
 * op), as create does its own layout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "abi.h"
#include "internal.h"
#include "options_internal.h"

int measure_data(struct vdisk_dev *src, uint64_t unit, uint64_t *bytes)
{
    uint64_t size = dev_size(src), data = 0;
    for (uint64_t off = 0; off < size;) {
        struct vdisk_extent e;
        /* Each query in its own request, as vdisk_block_status makes it:
         * a snapshot operation of another thread may come in between. */
        quiesce_sync_begin(src);
        int r = dev_block_status(src, off, size - off, &e);
        quiesce_sync_end(src);
        if (r < 0)
            return r;
        uint64_t n = e.length;
        if (!(e.flags & VDISK_EXT_ZERO) && (e.flags & VDISK_EXT_DATA)) {
            /* Whole clusters of the new image: from the start of the one
             * the extent starts in (a hole or zeroes may have ended
             * inside it) to the end of the one it ends in, which is
             * where the next query starts. */
            n = align_up(off + n, unit) - off;
            data += off % unit + n;
        }
        off += n;
    }
    *bytes = data;
    return 0;
}

VDISK_EXPORT int vdisk_measure(const char *format, uint64_t size, const vdisk_options *opts,
                               vdisk_dev *src, struct vdisk_measure_result *res)
{
    err_enter(__func__);
    size_t have;
    int r = ABI_SIZE(vdisk_measure_result, res, VDISK_MEASURE_RESULT_SIZE_V1, &have);
    if (r < 0)
        return r;
    if (!format)
        format = "raw";
    const struct vdisk_driver *drv = driver_by_name(format);
    if (!drv || !drv->measure)
        return err_set(-ENOTSUP, "Format '%s' does not support size measurement", format);
    if (src && size)
        return err_set(-EINVAL, "both a size (%" PRIu64 ") and a source image (%s) given: "
                       "the size of a source is its own", size, src->filename);
    if (src)
        size = dev_size(src);
    if (size > INT64_MAX)
        return err_set(-EFBIG, "size %" PRIu64 " is too large (at most %" PRId64 " bytes)",
                       size, INT64_MAX);
    size = align_up(size, 512);
    struct opt_set os;
    r = opt_set_init(&os, opts);
    if (r < 0)
        return r;
    struct vdisk_measure_result full;
    memset(&full, 0, sizeof full);
    r = drv->measure(size, src, &os, &full);
    if (r == 0)
        r = opt_check_all_taken(&os, drv->name);
    opt_set_fini(&os);
    if (r == 0)
        abi_copy_out(res, &full, have, sizeof full);
    return r;
}
