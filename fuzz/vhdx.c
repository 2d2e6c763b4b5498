/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vhdx.c: the fuzz input is a VHDX image, packed: a VHDX file is at
 * least a few MiB (1 MiB header section, regions at 1 MiB multiples) of
 * mostly zeroes, so the input is a list of 4 KiB pages, each a 16-bit
 * little-endian page number (modulo 4096: files up to 16 MiB) and the
 * page's bytes (a short last record fills part of its page).  The file is
 * as long as its last page reaches; the rest reads zero.  It is opened
 * over a memory device (as vhdx, whatever its first bytes) read-only;
 * read-write, so that a log in it is replayed and then writes allocate
 * blocks, commit BAT sectors through the log and close it; and read-write
 * for a repair (repair=on, as vdisk check -r opens it).  Each time it is
 * read (the first megabytes and a few places the input chooses), written,
 * zeroed, discarded, flushed and checked.  Any crash,
 * sanitizer report, leak or hang is a bug.  fuzz/vhdx_seeds.py packs
 * qemu-img's images (and one with a log to replay) as seeds.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define PAGE 4096u
#define MAX_PAGES 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;
    for (size_t at = 0; at + 2 < size; at += 2 + PAGE) {
        size_t page = (data[at] | (size_t)data[at + 1] << 8) % MAX_PAGES;
        size_t n = size - at - 2 < PAGE ? size - at - 2 : PAGE;
        if ((page + 1) * PAGE > len)
            len = page * PAGE + (n == PAGE ? PAGE : n);
    }
    uint8_t *img = calloc(len ? len : 1, 1);
    if (!img)
        return 0;
    for (size_t at = 0; at + 2 < size; at += 2 + PAGE) {
        size_t page = (data[at] | (size_t)data[at + 1] << 8) % MAX_PAGES;
        size_t n = size - at - 2 < PAGE ? size - at - 2 : PAGE;
        if (page * PAGE + n > len)
            n = len - page * PAGE;
        memcpy(img + page * PAGE, data + at + 2, n);
    }
    struct fuzz_input in = {img, len};
    struct vdisk_dev *dev = fuzz_open_image(&in, "vhdx", true);
    if (dev) {
        fuzz_format_ops(dev, data, size, 3, true);
        dev_unref(dev);
    }
    /* Writable: new blocks, BAT sectors through the log. */
    dev = fuzz_open_image(&in, "vhdx", false);
    if (dev) {
        fuzz_format_ops(dev, data, size, 3, true);
        struct vdisk_check_result res = {.struct_size = sizeof res};
        dev->drv->check(dev, 0, &res, NULL, NULL);
        dev_unref(dev);
    }
    /* A repair's writable open: the log replayed. */
    struct vdisk_open_params p = fuzz_params(false);
    p.no_backing = false;
    p.open_backing = fuzz_open_self;
    p.backing_opaque = &in;
    vdisk_options *o = NULL;
    struct opt_set os = {0};
    struct vdisk_dev *file = NULL;
    int r = vdisk_options_new(&o);
    if (r == 0)
        r = vdisk_options_set(o, "repair", "on");
    if (r == 0)
        r = opt_set_init(&os, o);
    if (r == 0)
        r = dev_open_memory(&file, img, len, 64u << 20, &p);
    if (r == 0 && dev_open_format(&dev, file, "vhdx", &p, &os) == 0) {
        struct vdisk_check_result res = {.struct_size = sizeof res};
        dev->drv->check(dev, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, &res, NULL,
                        NULL);
        fuzz_format_ops(dev, data, size, 2, false);
        dev_unref(dev);
    } else if (r == 0) {
        dev_unref(file);
    }
    opt_set_fini(&os);
    vdisk_options_free(o);
    free(img);
    return 0;
}
