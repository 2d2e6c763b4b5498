/* SPDX-License-Identifier: MIT */
/*
 * fuzz/vhdx.c: the fuzz input is a VHDX image, packed: a VHDX file is at
 * least a few MiB (1 MiB header section, regions at 1 MiB multiples) of
 * mostly zeroes, so the input is a list of 4 KiB pages, each a 16-bit
 * little-endian page number (modulo 4096: files up to 16 MiB) and the
 * page's bytes (a short last record fills part of its page).  The file is
 * as long as its last page reaches; the rest reads zero.  It is opened
 * read-write over a memory device (as vhdx, whatever its first bytes), so
 * that a log in it is searched and replayed, then read (the first
 * megabytes and a few places the input chooses), written (refused: the
 * device is read-only), zeroed, discarded and flushed.  Any crash,
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
    struct vdisk_dev *dev = fuzz_open_image(&in, "vhdx", false);
    if (dev) {
        fuzz_format_ops(dev, data, size, 3, true);
        dev_unref(dev);
    }
    free(img);
    return 0;
}
