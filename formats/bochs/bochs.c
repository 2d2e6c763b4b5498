/* SPDX-License-Identifier: MIT */
/*
 * formats/bochs/bochs.c: Bochs "growing" redolog images (the disks of the
 * Bochs emulator), read: opened read-only, for converting out, info, map
 * and compare, as QEMU reads them.
 *
 * Layout (little-endian):
 *   0    the header, 512 bytes: "Bochs Virtual HD Image", type "Redolog",
 *        subtype "Growing" (NUL-terminated fields of 32, 16 and 16 bytes),
 *        version (0x00020000, or 0x00010000 for the old layout), the
 *        header's size (where the catalog starts), then the catalog's
 *        entries, the bitmap's and the extent's sizes in bytes, (version 2
 *        only: a timestamp,) and the disk's size in bytes
 *   H    the catalog: one 32-bit entry per extent of the disk, the index
 *        of its block in the file, or 0xffffffff (not allocated: zeroes)
 *   D    (H + 4 * entries) the blocks: each a bitmap (one bit per sector
 *        of the extent, 1: the sector is in the block) rounded up to
 *        sectors, then the extent's sectors
 *
 * Every field is checked before anything is allocated: an extent of 512
 * bytes to BOCHS_EXTENT_MAX, a power of two; a catalog of at most
 * BOCHS_CATALOG_MAX entries that lies in the file and covers the disk; a
 * bitmap with a bit for every sector of an extent.  Reads run on the
 * worker thread: a bitmap read per extent met, then the runs of sectors
 * present; a block that is not inside the file fails the read that meets
 * it.  Writable opens are refused, with the command that converts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define SECTOR               512u
#define BOCHS_HEADER_BYTES   512u
#define BOCHS_V1             0x00010000u
#define BOCHS_V2             0x00020000u
#define BOCHS_UNALLOCATED    0xffffffffu
/* Named bounds: catalog entries (4 MiB of them in memory, as QEMU's 1M
 * limit), extent size (QEMU's 8 MiB) and bitmap bytes. */
#define BOCHS_CATALOG_MAX    0x100000u
#define BOCHS_EXTENT_MAX     0x800000u
#define BOCHS_BITMAP_MAX     (1u << 20)

/* Header fields (byte offsets). */
#define H_MAGIC     0
#define H_TYPE      32
#define H_SUBTYPE   48
#define H_VERSION   64
#define H_HEADER    68
#define H_CATALOG   72
#define H_BITMAP    76
#define H_EXTENT    80
#define H_DISK_V1   84
#define H_DISK_V2   88

struct bochs {
    struct vdisk_dev *file;
    struct offload *offload;
    uint64_t file_size, size;
    uint32_t *catalog;
    uint32_t entries;
    uint64_t data_off;            /* the first block */
    uint64_t extent;              /* bytes */
    uint64_t bitmap_bytes;        /* rounded up to sectors */
    uint64_t block_bytes;         /* bitmap and extent */
};

/* A NUL-terminated string field of FIELD bytes at OFF that is exactly S. */
static bool str_field(const uint8_t *b, size_t off, size_t field, const char *s)
{
    size_t n = strlen(s);
    return n < field && memcmp(b + off, s, n + 1) == 0;
}

static int bochs_probe(const uint8_t *b, size_t len)
{
    if (len < BOCHS_HEADER_BYTES)
        return 0;
    uint32_t v = le32_load(b + H_VERSION);
    return str_field(b, H_MAGIC, 32, "Bochs Virtual HD Image") &&
                   str_field(b, H_TYPE, 16, "Redolog") && str_field(b, H_SUBTYPE, 16, "Growing") &&
                   (v == BOCHS_V2 || v == BOCHS_V1)
               ? 100 : 0;
}

static int parse(struct vdisk_dev *dev, struct bochs *s, const uint8_t *h)
{
    const char *fn = dev->filename;
    if (!bochs_probe(h, BOCHS_HEADER_BYTES))
        return err_set(-EINVAL, "%s: not a Bochs growing redolog image (no \"Bochs Virtual HD "
                       "Image\", \"Redolog\", \"Growing\" and version 1 or 2 at offset 0)", fn);
    bool v1 = le32_load(h + H_VERSION) == BOCHS_V1;
    s->size = le64_load(h + (v1 ? H_DISK_V1 : H_DISK_V2)) / SECTOR * SECTOR;
    uint64_t header = le32_load(h + H_HEADER);
    s->entries = le32_load(h + H_CATALOG);
    uint32_t bitmap = le32_load(h + H_BITMAP);
    s->extent = le32_load(h + H_EXTENT);
    if (s->extent < SECTOR || s->extent > BOCHS_EXTENT_MAX || (s->extent & (s->extent - 1)))
        return err_set(-EINVAL, "%s: the extent size (offset %d) is %" PRIu64 " bytes; expected "
                       "a power of two from 512 to %u", fn, H_EXTENT, s->extent,
                       BOCHS_EXTENT_MAX);
    if (s->entries > BOCHS_CATALOG_MAX)
        return err_set(-EFBIG, "%s: a catalog of %" PRIu32 " entries (offset %d); vdisk reads at "
                       "most %u", fn, s->entries, H_CATALOG, BOCHS_CATALOG_MAX);
    uint64_t need = s->size / s->extent + (s->size % s->extent != 0); /* (no overflow) */
    if (s->entries < need)
        return err_set(-EINVAL, "%s: a catalog of %" PRIu32 " entries cannot cover a disk of %"
                       PRIu64 " bytes in extents of %" PRIu64 " (%" PRIu64 " needed)", fn,
                       s->entries, s->size, s->extent, need);
    uint64_t bits = s->extent / SECTOR;
    if ((uint64_t)bitmap * 8 < bits || bitmap > BOCHS_BITMAP_MAX)
        return err_set(-EINVAL, "%s: the bitmap size (offset %d) is %" PRIu32 " bytes; an extent "
                       "of %" PRIu64 " sectors needs %" PRIu64 " to %u", fn, H_BITMAP, bitmap,
                       bits, (bits + 7) / 8, BOCHS_BITMAP_MAX);
    s->bitmap_bytes = ((uint64_t)bitmap + SECTOR - 1) / SECTOR * SECTOR;
    s->block_bytes = s->bitmap_bytes + s->extent;
    if (header > s->file_size || (uint64_t)s->entries * 4 > s->file_size - header)
        return err_set(-EINVAL, "%s: the catalog (%" PRIu32 " entries at offset %" PRIu64 ") does "
                       "not lie in the file (%" PRIu64 " bytes)", fn, s->entries, header,
                       s->file_size);
    s->data_off = header + (uint64_t)s->entries * 4;
    return 0;
}

static void bochs_close(struct vdisk_dev *dev);

static int bochs_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)os;
    if (!dev->params.read_only)
        return err_set(-ENOTSUP, "%s: vdisk reads Bochs images but does not write them (open "
                       "it read-only, or convert it: vdisk convert -f bochs -O qcow2 %s "
                       "IMAGE.qcow2)", dev->filename, dev->filename);
    struct bochs *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    dev->priv = s;
    s->file = file;
    s->file_size = dev_size(file);
    if (file->file_length && file->file_length < s->file_size)
        s->file_size = file->file_length;
    uint8_t h[BOCHS_HEADER_BYTES];
    int r = 0;
    if (s->file_size < BOCHS_HEADER_BYTES)
        r = err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; a Bochs header needs %u",
                    dev->filename, s->file_size, BOCHS_HEADER_BYTES);
    if (r == 0)
        r = dev_pread(file, h, sizeof h, 0);
    if (r == 0)
        r = parse(dev, s, h);
    if (r == 0 && !(s->catalog = malloc(s->entries ? (size_t)s->entries * 4 : 1)))
        r = err_set(-ENOMEM, "out of memory for a catalog of %" PRIu32 " entries", s->entries);
    if (r == 0 && s->entries)
        r = dev_pread(file, s->catalog, (size_t)s->entries * 4, s->data_off - s->entries * 4ull);
    for (uint32_t i = 0; r == 0 && i < s->entries; i++)
        s->catalog[i] = le32_load(&s->catalog[i]);
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        s->file = NULL; /* the caller keeps it on failure */
        bochs_close(dev);
        return r;
    }
    dev->size = s->size;
    dev->block_size = SECTOR;
    dev->align = SECTOR;
    dev->caps = VDISK_CAN_FLUSH;
    return 0;
}

static void bochs_close(struct vdisk_dev *dev)
{
    struct bochs *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->file)
        dev_unref(s->file);
    free(s->catalog);
    free(s);
    dev->priv = NULL;
}

/* Reads the N bytes at disk byte POS (inside one extent) into OUT: zeroes
 * where the extent or a sector is not in the file. */
static int read_extent(struct vdisk_dev *dev, struct bochs *s, uint64_t pos, uint64_t n,
                       uint8_t *out)
{
    uint64_t idx = pos / s->extent;
    uint32_t block = s->catalog[idx];
    memset(out, 0, (size_t)n);
    if (block == BOCHS_UNALLOCATED)
        return 0;
    uint64_t at = s->data_off + (uint64_t)block * s->block_bytes;
    if (block >= (UINT64_MAX - s->data_off) / s->block_bytes || at > s->file_size ||
        s->block_bytes > s->file_size - at)
        return err_set(-EIO, "%s: catalog entry %" PRIu64 " names block %" PRIu32 " (offset %"
                       PRIu64 "), which is not inside the file (%" PRIu64 " bytes)",
                       dev->filename, idx, block, at, s->file_size);
    uint64_t first = pos % s->extent / SECTOR, count = n / SECTOR;
    uint8_t bits[BOCHS_EXTENT_MAX / SECTOR / 8];
    uint64_t b0 = first / 8, b1 = (first + count - 1) / 8;
    int r = dev_pread(s->file, bits, (size_t)(b1 - b0 + 1), at + b0);
    for (uint64_t i = 0; r == 0 && i < count;) {
        uint64_t sec = first + i;
        if (!(bits[sec / 8 - b0] >> (sec % 8) & 1)) {
            i++;
            continue;
        }
        uint64_t e = i + 1;
        while (e < count && (bits[(first + e) / 8 - b0] >> ((first + e) % 8) & 1))
            e++;
        r = dev_pread(s->file, out + i * SECTOR, (size_t)((e - i) * SECTOR),
                      at + s->bitmap_bytes + sec * SECTOR);
        i = e;
    }
    return r;
}

static int read_work(struct vdisk_req *req)
{
    struct bochs *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    uint8_t *buf = malloc((size_t)s->extent);
    int r = buf ? 0 : err_set(-ENOMEM, "out of memory");
    for (uint64_t pos = req->offset; r == 0 && pos < end;) {
        uint64_t n = s->extent - pos % s->extent;
        if (n > end - pos)
            n = end - pos;
        r = read_extent(req->dev, s, pos, n, buf);
        if (r == 0)
            iov_from_buf(req->iov, req->iovcnt, (size_t)(pos - req->offset), buf, (size_t)n);
        pos += n;
    }
    free(buf);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void bochs_submit(struct vdisk_req *req)
{
    struct bochs *s = req->dev->priv;
    offload_read_only(s->offload, req, read_work, "Bochs");
}

static int64_t bochs_allocated_size(struct vdisk_dev *dev)
{
    struct bochs *s = dev->priv;
    return dev_allocated_size(s->file);
}

const struct vdisk_driver vdisk_driver_bochs = {
    .name = "bochs",
    .probe = bochs_probe,
    .open = bochs_open,
    .close = bochs_close,
    .submit = bochs_submit,
    .allocated_size = bochs_allocated_size,
};
