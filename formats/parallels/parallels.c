/* SPDX-License-Identifier: MIT */
/*
 * formats/parallels/parallels.c: Parallels disk images (the expanding
 * .hdd of Parallels Desktop and Virtuozzo, header version 2), read: opened
 * read-only, for converting out, info, map and compare, as QEMU reads
 * them.
 *
 * Layout (little-endian):
 *   0    the header, 64 bytes: magic "WithoutFreeSpace" (old: BAT entries
 *        in sectors, the disk's size 32-bit) or "WithouFreSpacExt" (BAT
 *        entries in clusters), version 2, heads, cylinders, sectors per
 *        cluster ("tracks"), BAT entries, the disk's size in sectors, a
 *        use mark, the first data sector, flags, the format extension's
 *        place (dirty bitmaps; not needed to read the disk)
 *   64   the BAT: one 32-bit entry per cluster of the disk, where its data
 *        starts (0: not allocated, reads zeroes)
 *
 * The header is checked before anything is allocated: version 2, a
 * cluster of 1 to PARALLELS_TRACKS_MAX sectors, a BAT of at most
 * PARALLELS_BAT_MAX entries that lies in the file.  A cluster the BAT
 * places outside the file fails the read or map that meets it.  Reads
 * run on the worker thread.  Writable opens are refused, with the
 * command that converts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define SECTOR                 512u
#define PARALLELS_HEADER_BYTES 64u
#define PARALLELS_VERSION      2u
/* Named bounds: QEMU's cluster limit (INT32_MAX / 513 sectors) and BAT
 * entries held in memory (256 MiB of them, QEMU's INT_MAX / 4 being more
 * than a 32-bit BAT needs). */
#define PARALLELS_TRACKS_MAX   (0x7fffffffu / 513u)
#define PARALLELS_BAT_MAX      (64u << 20)

#define H_MAGIC     0
#define H_VERSION   16
#define H_TRACKS    28
#define H_BAT       32
#define H_SECTORS   36
#define H_INUSE     44
#define PARALLELS_INUSE 0x746f6e59u   /* the use mark of an image not closed */

static const char magic_old[16] = "WithoutFreeSpace";
static const char magic_ext[16] = "WithouFreSpacExt";

struct parallels {
    struct vdisk_dev *file;
    struct offload *offload;
    uint64_t file_size;
    uint64_t cluster;              /* bytes */
    uint64_t multiplier;           /* sectors per BAT unit */
    uint32_t *bat;
    uint32_t entries;
    bool unclean;                  /* the use mark is set */
};

static int parallels_probe(const uint8_t *b, size_t len)
{
    if (len < PARALLELS_HEADER_BYTES)
        return 0;
    return (!memcmp(b, magic_old, 16) || !memcmp(b, magic_ext, 16)) &&
                   le32_load(b + H_VERSION) == PARALLELS_VERSION
               ? 100 : 0;
}

static void parallels_close(struct vdisk_dev *dev);

static int parallels_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)os;
    const char *fn = dev->filename;
    if (!dev->params.read_only)
        return err_set(-ENOTSUP, "%s: vdisk reads Parallels images but does not write them "
                       "(open it read-only, or convert it: vdisk convert -f parallels -O qcow2 "
                       "%s IMAGE.qcow2)", fn, fn);
    struct parallels *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    dev->priv = s;
    s->file_size = dev_size(file);
    if (file->file_length && file->file_length < s->file_size)
        s->file_size = file->file_length;
    uint8_t h[PARALLELS_HEADER_BYTES];
    uint64_t size = 0;
    int r = 0;
    if (s->file_size < PARALLELS_HEADER_BYTES)
        r = err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; a Parallels header needs "
                    "%u", fn, s->file_size, PARALLELS_HEADER_BYTES);
    if (r == 0)
        r = dev_pread(file, h, sizeof h, 0);
    if (r == 0 && !parallels_probe(h, sizeof h))
        r = err_set(-EINVAL, "%s: not a Parallels image (no \"WithoutFreeSpace\" or "
                    "\"WithouFreSpacExt\" with version 2 at offset 0)", fn);
    if (r == 0) {
        bool old = memcmp(h, magic_old, 16) == 0;
        uint32_t tracks = le32_load(h + H_TRACKS);
        s->entries = le32_load(h + H_BAT);
        size = le64_load(h + H_SECTORS);
        if (old)
            size &= 0xffffffffu;
        if (tracks == 0 || tracks > PARALLELS_TRACKS_MAX)
            r = err_set(-EINVAL, "%s: %" PRIu32 " sectors per cluster (offset %d); expected 1 "
                        "to %u", fn, tracks, H_TRACKS, PARALLELS_TRACKS_MAX);
        else if (size > ((uint64_t)INT64_MAX - 511) / SECTOR)
            r = err_set(-EINVAL, "%s: a disk of %" PRIu64 " sectors (offset %d) is too large",
                        fn, size, H_SECTORS);
        else if (s->entries > PARALLELS_BAT_MAX ||
                 (uint64_t)s->entries * 4 > s->file_size - PARALLELS_HEADER_BYTES)
            r = err_set(-EINVAL, "%s: a BAT of %" PRIu32 " entries (offset %d) does not lie in "
                        "the file (%" PRIu64 " bytes), or is over vdisk's %u", fn, s->entries,
                        H_BAT, s->file_size, PARALLELS_BAT_MAX);
        s->unclean = le32_load(h + H_INUSE) == PARALLELS_INUSE;
        s->cluster = (uint64_t)tracks * SECTOR;
        s->multiplier = old ? 1 : tracks;
    }
    if (r == 0 && !(s->bat = malloc(s->entries ? (size_t)s->entries * 4 : 1)))
        r = err_set(-ENOMEM, "out of memory for a BAT of %" PRIu32 " entries", s->entries);
    if (r == 0 && s->entries)
        r = dev_pread(file, s->bat, (size_t)s->entries * 4, PARALLELS_HEADER_BYTES);
    for (uint32_t i = 0; r == 0 && i < s->entries; i++)
        s->bat[i] = le32_load(&s->bat[i]);
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        parallels_close(dev);
        return r;
    }
    s->file = file;
    dev->size = size * SECTOR;
    dev->block_size = SECTOR;
    dev->align = SECTOR;
    dev->caps = VDISK_CAN_FLUSH;
    return 0;
}

static void parallels_close(struct vdisk_dev *dev)
{
    struct parallels *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->file)
        dev_unref(s->file);
    free(s->bat);
    free(s);
    dev->priv = NULL;
}

/* Where disk byte POS lies: 0 (not allocated: zeroes) or 1 with *HOST its
 * byte in the file, the rest of its cluster (*N at most) in the file too;
 * or -EIO with a message.  *N is cut to the cluster's end, except past the
 * BAT, where all the rest is zeroes (a huge disk over a short BAT costs
 * one step, not one per cluster). */
static int locate(struct vdisk_dev *dev, struct parallels *s, uint64_t pos, uint64_t *n,
                  uint64_t *host)
{
    uint64_t idx = pos / s->cluster, in = pos % s->cluster;
    if (idx >= s->entries)
        return 0;
    if (*n > s->cluster - in)
        *n = s->cluster - in;
    if (s->bat[idx] == 0)
        return 0;
    uint64_t at = (uint64_t)s->bat[idx] * s->multiplier * SECTOR;
    if (at > s->file_size || in + *n > s->file_size - at)
        return err_set(-EIO, "%s: BAT entry %" PRIu64 " places cluster %" PRIu64 " at offset %"
                       PRIu64 ", which is not inside the file (%" PRIu64 " bytes)",
                       dev->filename, idx, idx, at, s->file_size);
    *host = at + in;
    return 1;
}

static int read_work(struct vdisk_req *req)
{
    struct parallels *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    int r = 0;
    for (uint64_t pos = req->offset; r == 0 && pos < end;) {
        uint64_t n = end - pos, host = 0;
        size_t skip = (size_t)(pos - req->offset);
        r = locate(req->dev, s, pos, &n, &host);
        if (r == 0) {
            iov_memset(req->iov, req->iovcnt, skip, 0, (size_t)n);
        } else if (r == 1) {
            uint8_t *b = malloc((size_t)n);
            r = b ? dev_pread(s->file, b, (size_t)n, host) : err_set(-ENOMEM, "out of memory");
            if (r == 0)
                iov_from_buf(req->iov, req->iovcnt, skip, b, (size_t)n);
            free(b);
        }
        pos += n;
    }
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r < 0 ? r : 0;
}

static void parallels_submit(struct vdisk_req *req)
{
    struct parallels *s = req->dev->priv;
    offload_read_only(s->offload, req, read_work, "Parallels");
}

/* Clusters in the file that follow one another there, or clusters not
 * allocated, as one extent. */
static int parallels_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                                  struct vdisk_extent *ext)
{
    struct parallels *s = dev->priv;
    uint64_t n = len, host = 0;
    int kind = locate(dev, s, off, &n, &host);
    if (kind < 0)
        return kind;
    uint64_t total = n, next = host + n;
    while (total < len) {
        uint64_t m = len - total, h2 = 0;
        int k2 = locate(dev, s, off + total, &m, &h2);
        if (k2 != kind || (kind == 1 && h2 != next))
            break;
        total += m;
        next += m;
    }
    ext->depth = 0;
    ext->length = total;
    if (kind == 1) {
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = host;
        ext->host_file = s->file->filename;
    } else {
        ext->flags = VDISK_EXT_ZERO;
    }
    return 0;
}

/*
 * As qemu-img check counts a Parallels image: the use mark of an image not
 * closed and each BAT entry past the end of the file are corruptions
 * (named, as qemu-img names them); the file's bytes after the last cluster
 * are a leak, counted in clusters.  Repairs need a writable image, which
 * vdisk does not open.
 */
static int parallels_check(struct vdisk_dev *dev, unsigned flags,
                           struct vdisk_check_result *res, vdisk_check_report_fn report,
                           void *opaque)
{
    struct parallels *s = dev->priv;
    if (flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS))
        return err_set(-ENOTSUP, "%s: vdisk does not repair Parallels images (it opens them "
                       "read-only)", dev->filename);
    char line[128];
    if (s->unclean) {
        if (report)
            report(opaque, "ERROR image was not closed correctly");
        res->corruptions++;
    }
    uint64_t high = 0, prev = 0;
    for (uint32_t i = 0; i < s->entries; i++) {
        uint64_t off = (uint64_t)s->bat[i] * s->multiplier * SECTOR;
        if (off == 0) {
            prev = 0;
            continue;
        }
        if (off > s->file_size) {
            snprintf(line, sizeof line, "ERROR cluster %" PRIu32 " is outside image", i);
            if (report)
                report(opaque, line);
            res->corruptions++; /* (and counted on, as qemu-img does without -r) */
        }
        res->allocated_clusters++;
        if (off > high)
            high = off;
        if (prev && prev + s->cluster != off)
            res->fragmented_clusters++;
        prev = off;
    }
    res->total_clusters = s->entries;
    res->image_end_offset = high + s->cluster;
    if (s->file_size > res->image_end_offset) {
        uint64_t extra = s->file_size - res->image_end_offset;
        snprintf(line, sizeof line, "ERROR space leaked at the end of the image %" PRIu64, extra);
        if (report)
            report(opaque, line);
        res->leaks += (extra + s->cluster - 1) / s->cluster;
    }
    return 0;
}

static int64_t parallels_allocated_size(struct vdisk_dev *dev)
{
    struct parallels *s = dev->priv;
    return dev_allocated_size(s->file);
}

const struct vdisk_driver vdisk_driver_parallels = {
    .name = "parallels",
    .probe = parallels_probe,
    .open = parallels_open,
    .close = parallels_close,
    .submit = parallels_submit,
    .block_status = parallels_block_status,
    .allocated_size = parallels_allocated_size,
    .check = parallels_check,
};
