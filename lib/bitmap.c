/* SPDX-License-Identifier: MIT */
/*
 * lib/bitmap.c: persistent dirty bitmaps (vdisk/bitmap.h): argument checks,
 * the quiesce section, and the format driver's bitmap op.
 */
#include <errno.h>
#include <inttypes.h>

#include <vdisk/bitmap.h>

#include "internal.h"

static int call(vdisk_dev *dev, struct bitmap_args *a)
{
    if (!dev)
        return err_set(-EINVAL, "no device given (NULL)");
    if (!a->name)
        return err_set(-EINVAL, "no bitmap name given (NULL)");
    if (!dev->drv->bitmap)
        return err_set(-ENOTSUP, "Can't store persistent bitmaps to %s: the %s format has "
                       "no persistent dirty bitmaps", dev->filename, dev->drv->name);
    if (a->op == BITMAP_STATUS)
        return dev->drv->bitmap(dev, a);
    int r = quiesce_begin_op(dev);
    if (r < 0)
        return r;
    r = dev->drv->bitmap(dev, a);
    quiesce_end_op(dev);
    return r;
}

VDISK_EXPORT int vdisk_bitmap_add(vdisk_dev *dev, const char *name, uint64_t granularity,
                                  unsigned flags)
{
    err_enter(__func__);
    if (flags & ~VDISK_BITMAP_ADD_DISABLED)
        return err_set(-EINVAL, "unknown flags 0x%x", flags);
    struct bitmap_args a = {.op = BITMAP_ADD, .name = name, .granularity = granularity,
                            .flags = flags};
    return call(dev, &a);
}

VDISK_EXPORT int vdisk_bitmap_checkpoint(vdisk_dev *dev, const char *name, const char *previous,
                                         uint64_t granularity)
{
    err_enter(__func__);
    struct bitmap_args a = {.op = BITMAP_ADD, .name = name, .other = previous,
                            .granularity = granularity};
    return call(dev, &a);
}

static int simple(vdisk_dev *dev, enum bitmap_op op, const char *name)
{
    struct bitmap_args a = {.op = op, .name = name};
    return call(dev, &a);
}

VDISK_EXPORT int vdisk_bitmap_remove(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return simple(dev, BITMAP_REMOVE, name);
}

VDISK_EXPORT int vdisk_bitmap_clear(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return simple(dev, BITMAP_CLEAR, name);
}

VDISK_EXPORT int vdisk_bitmap_enable(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return simple(dev, BITMAP_ENABLE, name);
}

VDISK_EXPORT int vdisk_bitmap_disable(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return simple(dev, BITMAP_DISABLE, name);
}

VDISK_EXPORT int vdisk_bitmap_merge(vdisk_dev *dev, const char *name, vdisk_dev *src_dev,
                                    const char *src_name)
{
    err_enter(__func__);
    if (!src_dev || !src_name)
        return err_set(-EINVAL, "no source bitmap given (NULL)");
    struct bitmap_args a = {.op = BITMAP_MERGE, .name = name, .other = src_name,
                            .src = src_dev};
    return call(dev, &a);
}

VDISK_EXPORT int vdisk_bitmap_status(vdisk_dev *dev, const char *name, uint64_t offset,
                                     uint64_t length, uint64_t *plen, bool *dirty)
{
    err_enter(__func__);
    if (!plen || !dirty)
        return err_set(-EINVAL, "no result pointers given (NULL)");
    struct bitmap_args a = {.op = BITMAP_STATUS, .name = name, .offset = offset,
                            .length = length};
    int r = call(dev, &a);
    if (r == 0) {
        *plen = a.out_len;
        *dirty = a.out_dirty;
    }
    return r;
}
