/* SPDX-License-Identifier: MIT */
/*
 * fuzz/qcow2.c: the fuzz input is a qcow2 image.  It is opened read-write
 * over a memory device, read (the first megabytes and a few places the
 * input chooses), written, discarded, zeroed, flushed, checked and
 * repaired; and opened as qemu-img check opens it (the check reads the
 * snapshot table), checked, and where the open refuses it, repaired.  Any
 * crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "options_internal.h"

#define MEM_LIMIT (64u << 20)

/* FILE opened as qemu-img check opens it ("check": the check reads the
 * snapshot table itself, cutting what it cannot keep when FIX), checked,
 * and with FIX repaired. */
static void check_mode(struct vdisk_dev *file, bool fix)
{
    struct vdisk_open_params p = fuzz_params(!fix);
    vdisk_options *o = NULL;
    struct opt_set os = {0};
    struct vdisk_dev *dev;
    int r = vdisk_options_new(&o);
    if (r == 0)
        r = vdisk_options_set(o, "check", "on");
    if (r == 0 && fix)
        r = vdisk_options_set(o, "repair", "on");
    if (r == 0)
        r = opt_set_init(&os, o);
    dev_ref(file);
    if (r == 0 && dev_open_format(&dev, file, "qcow2", &p, &os) == 0) {
        struct vdisk_check_result res = {.struct_size = sizeof res};
        dev->drv->check(dev, fix ? VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS : 0,
                        &res, NULL, NULL);
        dev_unref(dev);
    } else {
        dev_unref(file);
    }
    opt_set_fini(&os);
    vdisk_options_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, data, size, MEM_LIMIT, &p) < 0)
        return 0;
    check_mode(file, false);
    if (dev_open_format(&dev, file, "qcow2", &p, NULL) < 0) {
        /* Images whose persistent bitmaps cannot be kept (a bad bitmap
         * table, extra data) open read-only, or read-write when the
         * bitmaps are dropped: both ways are exercised.  Sound bitmaps
         * open read-write above, and the writes below set their bits. */
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
            check_mode(file, true); /* (what the open refuses, a check may mend) */
            dev_unref(file);
            return 0;
        }
        opt_set_fini(&os);
        vdisk_options_free(o);
    }
    fuzz_format_ops(dev, data, size, 4, false);
    struct vdisk_check_result res = {.struct_size = sizeof res};
    if (dev->drv->check) {
        dev->drv->check(dev, 0, &res, NULL, NULL);
        dev->drv->check(dev, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, &res, NULL,
                        NULL);
    }
    dev_unref(dev);
    return 0;
}
