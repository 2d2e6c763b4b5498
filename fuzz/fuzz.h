/* SPDX-License-Identifier: MIT */
/* fuzz/fuzz.h: what the harnesses share. */
#ifndef VDISK_FUZZ_H
#define VDISK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* The entry point every harness defines (libFuzzer's). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parameters for devices opened by a harness: no backing files (an input
 * must not reach host files), the thread engine (no io_uring per input). */
static inline struct vdisk_open_params fuzz_params(bool read_only)
{
    struct vdisk_open_params p = {
        .read_only = read_only,
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = VDISK_ENGINE_THREADS,
        .threads = 1,
        .no_backing = true,
    };
    return p;
}

static char fuzz_cd_path[64];

static inline void fuzz_cd_remove(void)
{
    if (fuzz_cd_path[0])
        unlink(fuzz_cd_path);
}

/* A 1 MiB medium for a CD-ROM (block N filled with N's low byte), made on
 * first use and removed at exit. */
static inline const char *fuzz_cd_medium(void)
{
    if (fuzz_cd_path[0])
        return fuzz_cd_path;
    strcpy(fuzz_cd_path, "/tmp/vdisk-fuzz-cd-XXXXXX");
    int fd = mkstemp(fuzz_cd_path);
    if (fd < 0)
        abort();
    static uint8_t block[2048];
    for (unsigned i = 0; i < 512; i++) {
        memset(block, (int)i, sizeof block);
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
            abort();
    }
    close(fd);
    atexit(fuzz_cd_remove);
    return fuzz_cd_path;
}

/* Eight bytes of the input from AT on (wrapping around), big endian. */
static inline uint64_t fuzz_pick(const uint8_t *data, size_t size, size_t at)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (size ? data[(at + i) % size] : 0);
    return v;
}

/* What the image-format harnesses do to the device DEV their input opened:
 * reads of the first 4 MiB and of four places the input picks (with block
 * status there); then, when DEV is writable, four writes, discards or
 * zeroes (WRITE_KINDS of them: 3, or 4 for zeroes that may unmap) where
 * the input picks, each read back when REREAD, and a flush. */
static inline void fuzz_format_ops(struct vdisk_dev *dev, const uint8_t *data, size_t size,
                                   unsigned write_kinds, bool reread)
{
    uint64_t vsize = dev_size(dev);
    uint8_t *buf = malloc(1 << 16);
    if (!buf)
        abort();
    for (uint64_t off = 0; off < vsize && off < (4u << 20); off += 1 << 16)
        dev_pread(dev, buf, vsize - off < (1 << 16) ? (size_t)(vsize - off) : 1 << 16, off);
    for (size_t i = 0; i < 4 && vsize; i++) {
        uint64_t off = fuzz_pick(data, size, 200 + i * 8) % vsize;
        uint64_t len = 1 + fuzz_pick(data, size, 240 + i * 8) % (1 << 16);
        if (len > vsize - off)
            len = vsize - off;
        dev_pread(dev, buf, (size_t)len, off);
        struct vdisk_extent ext;
        dev_block_status(dev, off, len, &ext);
    }
    if (dev->caps & VDISK_CAN_WRITE) {
        memset(buf, 0xa5, 1 << 16);
        for (size_t i = 0; i < 4 && vsize; i++) {
            uint64_t off = fuzz_pick(data, size, 300 + i * 8) % vsize;
            uint64_t len = 1 + fuzz_pick(data, size, 340 + i * 8) % (1 << 16);
            if (len > vsize - off)
                len = vsize - off;
            switch (fuzz_pick(data, size, 380 + i) % write_kinds) {
            case 0: dev_pwrite(dev, buf, (size_t)len, off); break;
            case 1: dev_discard(dev, off, len); break;
            case 2: dev_write_zeroes(dev, off, len, 0); break;
            default: dev_write_zeroes(dev, off, len, VDISK_REQ_MAY_UNMAP); break;
            }
            if (reread)
                dev_pread(dev, buf, (size_t)len, off);
        }
        dev_flush(dev);
    }
    free(buf);
}

/* A harness input, for backing files (and extent files) made of it. */
struct fuzz_input {
    const uint8_t *data;
    size_t size;
};

/* An open_backing hook (vdisk_open_params) whose backing files are the
 * input itself again, in memory of at most 64 MiB: never a host file.  A
 * name "@N" (N decimal, at most the input's size) is the input from byte N
 * on: a VMDK descriptor's extent file inside the same input. */
static inline int fuzz_open_self(void *opaque, const char *name,
                                 const struct vdisk_open_params *p, struct vdisk_dev **filep)
{
    const struct fuzz_input *in = opaque;
    size_t at = 0;
    if (name[0] == '@') {
        for (const char *c = name + 1; *c >= '0' && *c <= '9' && at <= in->size; c++)
            at = at * 10 + (size_t)(*c - '0');
        if (at > in->size)
            at = in->size;
    }
    return dev_open_memory(filep, in->data + at, in->size - at, 64u << 20, p);
}

/* The input opened as an image of FORMAT over a memory device (of at most
 * 64 MiB), read-only or not, its backing files the input itself again
 * (fuzz_open_self); NULL when it does not open. */
static inline struct vdisk_dev *fuzz_open_image(struct fuzz_input *in, const char *format,
                                                bool read_only)
{
    struct vdisk_open_params p = fuzz_params(read_only);
    p.no_backing = false;
    p.open_backing = fuzz_open_self;
    p.backing_opaque = in;
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, in->data, in->size, 64u << 20, &p) < 0)
        return NULL;
    if (dev_open_format(&dev, file, format, &p, NULL) < 0) {
        dev_unref(file);
        return NULL;
    }
    return dev;
}

#endif /* VDISK_FUZZ_H */
