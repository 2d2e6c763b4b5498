/* SPDX-License-Identifier: MIT */
/*
 * formats/cloop/cloop.c: cloop images (the compressed loop device of
 * Knoppix-era live CDs, version 2.0), read: opened read-only, for
 * converting out, info, map and compare, as QEMU reads them.
 *
 * Layout (big-endian):
 *   0    a shell script of 128 bytes ("#!/bin/sh\n#V2.0 Format\n...")
 *   128  the block size (a multiple of 512, at most CLOOP_BLOCK_MAX)
 *   132  the number of blocks, N
 *   136  N + 1 offsets of 64 bits: block i is the zlib stream from
 *        offset i to offset i + 1, and inflates to one block
 *
 * The offsets are checked at open, all of them, before any read: they
 * lie in the file, never decrease, and no block's stream is longer than
 * zlib can make a block (the block plus a byte per 512 and one).  The
 * offsets table is bounded by the file's size and by CLOOP_OFFSETS_MAX.
 * Reads run on the worker thread, one block inflated at a time; the last
 * block inflated is kept for the next read.  Writable opens are refused,
 * with the command that converts.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define SECTOR               512u
#define CLOOP_HEADER_BYTES   136u
/* Named bounds, QEMU's: a block of at most 64 MiB, an offsets table of at
 * most 512 MiB. */
#define CLOOP_BLOCK_MAX      (64u << 20)
#define CLOOP_OFFSETS_MAX    (512u << 20)

static const char cloop_magic[] = "#!/bin/sh\n#V2.0 Format\n"
                                  "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

struct cloop {
    struct vdisk_dev *file;
    struct offload *offload;
    uint64_t file_size;
    uint32_t block_size, n_blocks;
    uint64_t *offsets;
    pthread_mutex_t lock;          /* the kept block */
    uint8_t *kept;                 /* the last block inflated */
    uint64_t kept_index;           /* UINT64_MAX: none */
};

static int cloop_probe(const uint8_t *b, size_t len)
{
    return len >= sizeof cloop_magic - 1 && memcmp(b, cloop_magic, sizeof cloop_magic - 1) == 0
               ? 2 : 0;
}

static void cloop_close(struct vdisk_dev *dev);

static int check_offsets(struct vdisk_dev *dev, struct cloop *s)
{
    uint64_t max_stream = (uint64_t)s->block_size + s->block_size / 512 + 1;
    for (uint32_t i = 0; i < s->n_blocks; i++) {
        uint64_t a = s->offsets[i], b = s->offsets[i + 1];
        if (a > b || b > s->file_size)
            return err_set(-EINVAL, "%s: block %" PRIu32 " runs from offset %" PRIu64 " to %"
                           PRIu64 ": backwards, or past the end of the file (%" PRIu64
                           " bytes)", dev->filename, i, a, b, s->file_size);
        if (b - a > max_stream)
            return err_set(-EINVAL, "%s: block %" PRIu32 " is %" PRIu64 " compressed bytes; a "
                           "block of %" PRIu32 " takes at most %" PRIu64, dev->filename, i,
                           b - a, s->block_size, max_stream);
    }
    return 0;
}

static int cloop_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)os;
    const char *fn = dev->filename;
    if (!dev->params.read_only)
        return err_set(-ENOTSUP, "%s: vdisk reads cloop images but does not write them (open "
                       "it read-only, or convert it: vdisk convert -f cloop -O qcow2 %s "
                       "IMAGE.qcow2)", fn, fn);
    struct cloop *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->kept_index = UINT64_MAX;
    dev->priv = s;
    s->file_size = dev_size(file);
    if (file->file_length && file->file_length < s->file_size)
        s->file_size = file->file_length;
    uint8_t h[CLOOP_HEADER_BYTES];
    int r = 0;
    if (s->file_size < CLOOP_HEADER_BYTES)
        r = err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; a cloop header needs %u", fn,
                    s->file_size, CLOOP_HEADER_BYTES);
    if (r == 0)
        r = dev_pread(file, h, sizeof h, 0);
    if (r == 0 && !cloop_probe(h, sizeof h))
        r = err_set(-EINVAL, "%s: not a cloop image (no \"#V2.0 Format\" script at offset 0)",
                    fn);
    if (r == 0) {
        s->block_size = be32_load(h + 128);
        s->n_blocks = be32_load(h + 132);
        if (s->block_size == 0 || s->block_size % SECTOR || s->block_size > CLOOP_BLOCK_MAX)
            r = err_set(-EINVAL, "%s: the block size (offset 128) is %" PRIu32 " bytes; "
                        "expected a multiple of 512 up to %u", fn, s->block_size,
                        CLOOP_BLOCK_MAX);
    }
    uint64_t table = ((uint64_t)s->n_blocks + 1) * 8;
    if (r == 0 && (table > CLOOP_OFFSETS_MAX || table > s->file_size - CLOOP_HEADER_BYTES))
        r = err_set(-EINVAL, "%s: %" PRIu32 " blocks need an offsets table of %" PRIu64
                    " bytes at offset %u; the file holds %" PRIu64 " bytes (vdisk reads at most "
                    "%u of it)", fn, s->n_blocks, table, CLOOP_HEADER_BYTES, s->file_size,
                    CLOOP_OFFSETS_MAX);
    if (r == 0 && !(s->offsets = malloc((size_t)table)))
        r = err_set(-ENOMEM, "out of memory for %" PRIu32 " block offsets", s->n_blocks);
    if (r == 0)
        r = dev_pread(file, s->offsets, (size_t)table, CLOOP_HEADER_BYTES);
    for (uint64_t i = 0; r == 0 && i <= s->n_blocks; i++)
        s->offsets[i] = be64_load(&s->offsets[i]);
    if (r == 0)
        r = check_offsets(dev, s);
    if (r == 0 && !(s->kept = malloc(s->block_size)))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        cloop_close(dev);
        return r;
    }
    s->file = file;
    dev->size = (uint64_t)s->n_blocks * s->block_size;
    dev->block_size = SECTOR;
    dev->align = SECTOR;
    dev->caps = VDISK_CAN_FLUSH;
    return 0;
}

static void cloop_close(struct vdisk_dev *dev)
{
    struct cloop *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->file)
        dev_unref(s->file);
    free(s->offsets);
    free(s->kept);
    pthread_mutex_destroy(&s->lock);
    free(s);
    dev->priv = NULL;
}

/* Inflates block I into S->kept (under S->lock). */
static int inflate_block(struct vdisk_dev *dev, struct cloop *s, uint64_t i)
{
    if (s->kept_index == i)
        return 0;
    s->kept_index = UINT64_MAX;
    uint64_t a = s->offsets[i], len = s->offsets[i + 1] - a;
    uint8_t *c = malloc(len ? (size_t)len : 1);
    if (!c)
        return err_set(-ENOMEM, "out of memory");
    int r = len ? dev_pread(s->file, c, (size_t)len, a) : 0;
    if (r < 0) {
        free(c);
        return r;
    }
    int code;
    uint64_t got;
    r = inflate_exact(c, (size_t)len, s->kept, s->block_size, &code, &got);
    free(c);
    if (r == -ENOMEM)
        return err_set(-ENOMEM, "zlib: inflateInit failed");
    if (r < 0)
        return err_set(-EIO, "%s: block %" PRIu64 " (%" PRIu64 " bytes at offset %" PRIu64 ") "
                       "does not inflate to %" PRIu32 " bytes (zlib %d, %" PRIu64 " bytes)",
                       dev->filename, i, len, a, s->block_size, code, got);
    s->kept_index = i;
    return 0;
}

static int read_work(struct vdisk_req *req)
{
    struct cloop *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    for (uint64_t pos = req->offset; r == 0 && pos < end;) {
        uint64_t i = pos / s->block_size, in = pos % s->block_size;
        uint64_t n = s->block_size - in < end - pos ? s->block_size - in : end - pos;
        r = inflate_block(req->dev, s, i);
        if (r == 0)
            iov_from_buf(req->iov, req->iovcnt, (size_t)(pos - req->offset), s->kept + in,
                         (size_t)n);
        pos += n;
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void cloop_submit(struct vdisk_req *req)
{
    struct cloop *s = req->dev->priv;
    offload_read_only(s->offload, req, read_work, "cloop");
}

static int64_t cloop_allocated_size(struct vdisk_dev *dev)
{
    struct cloop *s = dev->priv;
    return dev_allocated_size(s->file);
}

const struct vdisk_driver vdisk_driver_cloop = {
    .name = "cloop",
    .probe = cloop_probe,
    .open = cloop_open,
    .close = cloop_close,
    .submit = cloop_submit,
    .allocated_size = cloop_allocated_size,
};
