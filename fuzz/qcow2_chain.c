/* SPDX-License-Identifier: MIT */
/*
 * fuzz/qcow2_chain.c: the fuzz input is a qcow2 image with its backing
 * chain: images separated by the 8 bytes "VDISKIMG", the first the top.
 * Backing file names never reach the host: a name is resolved to one of
 * the input's images (a decimal name N to image N % count, any other name
 * to the sum of its bytes % count), each opened over a memory device, so
 * that chains, raw backing files, loops (an image naming itself or one
 * above it: the depth limit ends them) and short backing files are
 * exercised.  The top is opened read-write, read (the data comes through
 * the chain), its block status taken, written in part clusters (copy on
 * write from the backing file), zeroed, discarded, checked and repaired.
 * Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MEM_LIMIT (64u << 20)
#define MAX_IMAGES 8
#define SEP "VDISKIMG"

struct chain_input {
    const uint8_t *img[MAX_IMAGES];
    size_t len[MAX_IMAGES];
    unsigned count;
};

static int open_backing(void *opaque, const char *name, const struct vdisk_open_params *p,
                        struct vdisk_dev **filep)
{
    const struct chain_input *in = opaque;
    size_t i = 0, sum = 0;
    bool digits = *name != '\0';
    for (const char *c = name; *c; c++) {
        sum += (unsigned char)*c;
        if (*c < '0' || *c > '9')
            digits = false;
        else
            i = (i * 10 + (size_t)(*c - '0')) % 1000003;
    }
    i = digits ? i % in->count : sum % in->count;
    return dev_open_memory(filep, in->img[i], in->len[i], MEM_LIMIT, p);
}

static void split(const uint8_t *data, size_t size, struct chain_input *in)
{
    in->count = 0;
    const uint8_t *p = data, *end = data + size;
    while (in->count < MAX_IMAGES) {
        const uint8_t *s = in->count + 1 < MAX_IMAGES
                               ? memmem(p, (size_t)(end - p), SEP, sizeof SEP - 1) : NULL;
        in->img[in->count] = p;
        in->len[in->count] = s ? (size_t)(s - p) : (size_t)(end - p);
        in->count++;
        if (!s)
            break;
        p = s + sizeof SEP - 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chain_input in;
    split(data, size, &in);
    struct vdisk_open_params p = fuzz_params(false);
    p.no_backing = false;
    p.open_backing = open_backing;
    p.backing_opaque = &in;
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, in.img[0], in.len[0], MEM_LIMIT, &p) < 0)
        return 0;
    if (dev_open_format(&dev, file, "qcow2", &p, NULL) < 0) {
        struct vdisk_open_params ro = p;
        ro.read_only = true;
        dev_unref(file);
        if (dev_open_memory(&file, in.img[0], in.len[0], MEM_LIMIT, &ro) < 0)
            return 0;
        if (dev_open_format(&dev, file, "qcow2", &ro, NULL) < 0) {
            dev_unref(file);
            return 0;
        }
    }
    uint64_t vsize = dev_size(dev);
    uint8_t *buf = malloc(1 << 16);
    if (!buf)
        abort();
    for (uint64_t off = 0; off < vsize && off < (2u << 20); off += 1 << 16)
        dev_pread(dev, buf, vsize - off < (1 << 16) ? (size_t)(vsize - off) : 1 << 16, off);
    /* The map, as vdisk map walks it (at most 256 extents). */
    struct vdisk_extent ext;
    for (uint64_t off = 0, i = 0; off < vsize && i < 256; i++) {
        if (vdisk_block_status(dev, off, vsize - off, &ext) < 0 || ext.length == 0)
            break;
        off += ext.length;
    }
    if (!dev->params.read_only) {
        memset(buf, 0x5a, 1 << 16);
        /* Part clusters at a few places (copy on write from the chain). */
        for (uint64_t i = 0; i < 4 && vsize > 1024; i++) {
            uint64_t off = (vsize / 4 * i + 512 * i + 100) % (vsize - 1024);
            dev_pwrite(dev, buf, 1000, off);
        }
        if (vsize > 8192) {
            dev_write_zeroes(dev, 4096, 4096, 0);
            dev_discard(dev, vsize / 2, vsize / 4);
        }
        dev_flush(dev);
        dev_pread(dev, buf, vsize < (1 << 16) ? (size_t)vsize : 1 << 16, 0);
    }
    struct vdisk_check_result res = {.struct_size = sizeof res};
    if (dev->drv->check) {
        dev->drv->check(dev, 0, &res, NULL, NULL);
        if (!dev->params.read_only)
            dev->drv->check(dev, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, &res,
                            NULL, NULL);
    }
    free(buf);
    dev_unref(dev);
    return 0;
}
