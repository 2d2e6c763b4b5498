/* SPDX-License-Identifier: MIT */
/*
 * formats/vpc/vpc.c: the VHD driver ("vpc", as QEMU names it): probe, open
 * (footer, dynamic disk header, BAT, parent), I/O, block status, info.
 *
 * Probing is QEMU's: "conectix" at offset 0, which a dynamic or
 * differencing image has (the footer's copy).  A fixed image has its footer
 * only at the end, so QEMU, and vdisk, probe it as raw; -f vpc opens it.
 *
 * The virtual size follows QEMU 7.2: the CHS geometry's size, except for
 * creators that use the footer's current size ("win ", "qem2", "d2v ",
 * "CTXS", "tap") and for the largest geometry; the open option
 * force_size_calc=chs|current_size chooses, as QEMU's does.
 *
 * I/O: reads and writes inside allocated blocks whose bitmap is all ones
 * (what QEMU and Hyper-V write) go to the file as child requests.  The rest
 * (allocation, bitmaps, parents) runs on the image's worker with
 * synchronous I/O under the lock.  A new block is written in this order:
 * the footer past its end, its data (in a differencing image with the
 * parent's bytes around the write), its bitmap, a flush, then its BAT entry;
 * a crash before the BAT entry leaves an unused block, never a BAT entry
 * pointing at unwritten data.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "vpc.h"

uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t skip)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < skip || i >= skip + 4)
            sum += buf[i];
    return ~sum;
}

static int vpc_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && memcmp(buf, "conectix", 8) == 0 ? 100 : 0;
}

/* ---- Open ----------------------------------------------------------------- */

static void free_state(struct vpc *s)
{
    if (!s)
        return;
    offload_free(s->offload);
    free(s->bat);
    free(s->full);
    free(s->bitmap);
    free(s->parent_name);
    free(s->full_parent);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The footer: at 0 (dynamic, differencing), else in the last sector. */
static int read_footer(struct vpc *s, uint64_t fsize, uint64_t *where)
{
    const char *fn = s->dev->filename;
    if (fsize < VPC_FOOTER_SIZE)
        return err_set(-EINVAL, "%s: the file (%" PRIu64 " bytes) is too short for a VHD "
                       "footer (%u bytes)", fn, fsize, VPC_FOOTER_SIZE);
    int r = dev_pread(s->file, s->footer, VPC_FOOTER_SIZE, 0);
    if (r < 0)
        return r;
    *where = 0;
    if (memcmp(s->footer, "conectix", 8) != 0) {
        *where = fsize - VPC_FOOTER_SIZE;
        r = dev_pread(s->file, s->footer, VPC_FOOTER_SIZE, *where);
        if (r < 0)
            return r;
        if (memcmp(s->footer, "conectix", 8) != 0)
            return err_set(-EINVAL, "%s: not a VHD image: no footer cookie \"conectix\" at "
                           "offset 0 or at offset %" PRIu64, fn, *where);
    }
    uint32_t want = be32_load(s->footer + VPC_F_CHECKSUM);
    uint32_t got = vpc_checksum(s->footer, VPC_FOOTER_SIZE, VPC_F_CHECKSUM);
    if (want != got)
        return err_set(-EINVAL, "%s: the VHD footer at offset %" PRIu64 " has a bad checksum: "
                       "it records 0x%08" PRIx32 ", its bytes sum to 0x%08" PRIx32, fn, *where,
                       want, got);
    return 0;
}

/* The virtual size, as QEMU 7.2 computes it. */
static int footer_size(struct vpc *s, const char *calc)
{
    const uint8_t *f = s->footer;
    uint64_t sectors = (uint64_t)be16_load(f + VPC_F_CYLS) * f[VPC_F_HEADS] * f[VPC_F_SPT];
    const uint8_t *app = f + VPC_F_CREATOR_APP;
    bool use_chs = memcmp(app, "win ", 4) && memcmp(app, "qem2", 4) && memcmp(app, "d2v ", 4) &&
                   memcmp(app, "CTXS", 4) && memcmp(app, "tap", 4);
    if (calc && !strcmp(calc, "chs"))
        use_chs = true;
    if (!use_chs || sectors == VPC_MAX_GEOMETRY || (calc && !strcmp(calc, "current_size")))
        sectors = be64_load(f + VPC_F_CUR_SIZE) / VPC_SECTOR;
    if (sectors > VPC_MAX_SECTORS)
        return err_set(-EFBIG, "%s: the VHD footer at offset 0 claims %" PRIu64 " sectors, "
                       "more than the %" PRIu64 " (2040 GiB) a VHD may hold", s->dev->filename,
                       sectors, VPC_MAX_SECTORS);
    s->size = sectors * VPC_SECTOR;
    return 0;
}

static int read_dynamic(struct vpc *s, uint64_t fsize, uint8_t *h)
{
    const char *fn = s->dev->filename;
    uint64_t hoff = be64_load(s->footer + VPC_F_DATA_OFFSET);
    if (hoff % VPC_SECTOR || !range_inside(hoff, VPC_HEADER_SIZE, fsize))
        return err_set(-EINVAL, "%s: the VHD footer's data offset %" PRIu64 " (the dynamic "
                       "disk header) is not a sector inside the file (%" PRIu64 " bytes) with "
                       "room for %u bytes", fn, hoff, fsize, VPC_HEADER_SIZE);
    int r = dev_pread(s->file, h, VPC_HEADER_SIZE, hoff);
    if (r < 0)
        return r;
    if (memcmp(h, "cxsparse", 8) != 0)
        return err_set(-EINVAL, "%s: no dynamic disk header cookie at offset %" PRIu64 ": "
                       "expected \"cxsparse\", found \"%.8s\"", fn, hoff, (const char *)h);
    uint32_t want = be32_load(h + VPC_H_CHECKSUM);
    uint32_t got = vpc_checksum(h, VPC_HEADER_SIZE, VPC_H_CHECKSUM);
    if (want != got)
        return err_set(-EINVAL, "%s: the dynamic disk header at offset %" PRIu64 " has a bad "
                       "checksum: it records 0x%08" PRIx32 ", its bytes sum to 0x%08" PRIx32,
                       fn, hoff, want, got);
    uint32_t bs = be32_load(h + VPC_H_BLOCK_SIZE);
    if (bs < VPC_MIN_BLOCK_SIZE || bs > VPC_MAX_BLOCK_SIZE || (bs & (bs - 1)))
        return err_set(-EINVAL, "%s: the dynamic disk header at offset %" PRIu64 " has block "
                       "size %" PRIu32 "; expected a power of two from %u to %u", fn, hoff, bs,
                       VPC_MIN_BLOCK_SIZE, VPC_MAX_BLOCK_SIZE);
    s->block_size = bs;
    s->bitmap_size = (uint32_t)align_up(bs / (8 * VPC_SECTOR), VPC_SECTOR);
    uint32_t max = be32_load(h + VPC_H_MAX_ENTRIES);
    uint64_t need = (s->size + bs - 1) / bs;
    if (max < need)
        return err_set(-EINVAL, "%s: the BAT has %" PRIu32 " entries (dynamic disk header at "
                       "offset %" PRIu64 "); the disk's %" PRIu64 " bytes need %" PRIu64, fn,
                       max, hoff, s->size, need);
    if (need * 4 > VPC_MAX_BAT_BYTES)
        return err_set(-EFBIG, "%s: the disk's %" PRIu64 " bytes in blocks of %" PRIu32 " need "
                       "a BAT of %" PRIu64 " bytes, more than vdisk's limit of %u", fn, s->size,
                       bs, need * 4, VPC_MAX_BAT_BYTES);
    s->bat_offset = be64_load(h + VPC_H_TABLE_OFFSET);
    if (s->bat_offset % VPC_SECTOR || !range_inside(s->bat_offset, (uint64_t)max * 4, fsize))
        return err_set(-EINVAL, "%s: the BAT at offset %" PRIu64 " (%" PRIu32 " entries, %"
                       PRIu64 " bytes) does not lie in the file (%" PRIu64 " bytes)", fn,
                       s->bat_offset, max, (uint64_t)max * 4, fsize);
    s->entries = (uint32_t)need;
    s->bat = malloc(need ? need * 4 : 4);
    s->full = calloc(need ? need : 1, 1);
    s->bitmap = malloc(s->bitmap_size);
    s->bitmap_block = VPC_UNALLOCATED;
    if (!s->bat || !s->full || !s->bitmap)
        return err_set(-ENOMEM, "out of memory for a BAT of %" PRIu64 " entries", need);
    if (need && (r = dev_pread(s->file, s->bat, need * 4, s->bat_offset)) < 0)
        return r;
    /* Blocks go after the whole BAT (as QEMU places them), and after the
     * last block in use. */
    s->free_off = align_up(s->bat_offset + (uint64_t)max * 4, VPC_SECTOR);
    uint64_t data_end = (uint64_t)s->bitmap_size + bs;
    for (uint32_t i = 0; i < s->entries; i++) {
        uint32_t e = be32_load(&s->bat[i]);
        s->bat[i] = e;
        if (e == VPC_UNALLOCATED)
            continue;
        uint64_t off = (uint64_t)e * VPC_SECTOR;
        if (off < VPC_FOOTER_SIZE || !range_inside(off, data_end, fsize))
            return err_set(-EINVAL, "%s: BAT entry %" PRIu32 " (at offset %" PRIu64 ") points "
                           "at sector %" PRIu32 ": its block (%" PRIu64 " bytes at offset %"
                           PRIu64 ") is not inside the file (%" PRIu64 " bytes)", fn, i,
                           s->bat_offset + (uint64_t)4 * i, e, data_end, off, fsize);
        uint64_t bat_end = s->bat_offset + (uint64_t)max * 4;
        if ((off < hoff + VPC_HEADER_SIZE && off + data_end > hoff) ||
            (off < bat_end && off + data_end > s->bat_offset))
            return err_set(-EINVAL, "%s: BAT entry %" PRIu32 " (at offset %" PRIu64 ") points "
                           "at sector %" PRIu32 ": its block (%" PRIu64 " bytes at offset %"
                           PRIu64 ") overlaps the dynamic disk header (offset %" PRIu64 ") or "
                           "the BAT (offset %" PRIu64 ")", fn, i,
                           s->bat_offset + (uint64_t)4 * i, e, data_end, off, hoff,
                           s->bat_offset);
        if (off + data_end > s->free_off)
            s->free_off = off + data_end;
    }
    /* ... and after the header and the parent locators' data. */
    if (hoff + VPC_HEADER_SIZE > s->free_off)
        s->free_off = align_up(hoff + VPC_HEADER_SIZE, VPC_SECTOR);
    for (unsigned i = 0; i < VPC_LOCATORS; i++) {
        const uint8_t *l = h + VPC_H_LOCATORS + i * VPC_LOCATOR_SIZE;
        uint64_t off = be64_load(l + 16), len = be32_load(l + 8);
        if (be32_load(l) && len && range_inside(off, len, fsize) &&
            align_up(off + len, VPC_SECTOR) > s->free_off)
            s->free_off = align_up(off + len, VPC_SECTOR);
    }
    /* A footer at the end of the file: new blocks go where it is. */
    uint8_t cookie[8];
    if (fsize >= VPC_FOOTER_SIZE && fsize % VPC_SECTOR == 0 && fsize - VPC_FOOTER_SIZE > s->free_off &&
        dev_pread(s->file, cookie, 8, fsize - VPC_FOOTER_SIZE) == 0 &&
        memcmp(cookie, "conectix", 8) == 0)
        s->free_off = fsize - VPC_FOOTER_SIZE;
    return 0;
}

static int vpc_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    struct vpc *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->dev = dev;
    s->file = file;
    s->read_only = dev->params.read_only;
    s->bitmap_block = VPC_UNALLOCATED;
    dev->priv = s;
    int r = 0;
    const char *calc = opt_take(os, "force_size_calc");
    if (calc && strcmp(calc, "chs") && strcmp(calc, "current_size"))
        r = err_set(-EINVAL, "Invalid size calculation mode: %s", calc);
    if (r == 0)
        r = backing_take_options(os, &s->confine, &s->allow_network);
    uint64_t fsize = dev_size(file);
    if (file->file_length && file->file_length < fsize)
        fsize = file->file_length;
    uint64_t where = 0;
    if (r == 0)
        r = read_footer(s, fsize, &where);
    if (r == 0) {
        s->type = (int)be32_load(s->footer + VPC_F_TYPE);
        memcpy(s->uuid, s->footer + VPC_F_UUID, 16);
        if (s->type != VPC_TYPE_FIXED && s->type != VPC_TYPE_DYNAMIC &&
            s->type != VPC_TYPE_DIFF)
            r = err_set(-EINVAL, "%s: the VHD footer at offset %" PRIu64 " has disk type %d; "
                        "expected 2 (fixed), 3 (dynamic) or 4 (differencing)", dev->filename,
                        where, s->type);
    }
    if (r == 0)
        r = footer_size(s, calc);
    uint8_t *hdr = NULL;
    if (r == 0 && s->type == VPC_TYPE_FIXED) {
        if (s->size > fsize - VPC_FOOTER_SIZE)
            r = err_set(-EINVAL, "%s: the fixed VHD's footer at offset %" PRIu64 " claims %"
                        PRIu64 " bytes of data; the file holds %" PRIu64 " before it (the "
                        "image is truncated)", dev->filename, where, s->size,
                        fsize - VPC_FOOTER_SIZE);
    } else if (r == 0) {
        hdr = malloc(VPC_HEADER_SIZE);
        r = hdr ? read_dynamic(s, fsize, hdr) : err_set(-ENOMEM, "out of memory");
        if (r == 0 && s->free_off > fsize)
            r = err_set(-EINVAL, "%s: the blocks end at offset %" PRIu64 ", past the end of "
                        "the file (%" PRIu64 " bytes): the image is truncated", dev->filename,
                        s->free_off, fsize);
    }
    if (r == 0 && s->type == VPC_TYPE_DIFF)
        r = vpc_open_parent(s, hdr, os);
    free(hdr);
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        if (s->parent)
            dev_unref(s->parent);
        free_state(s);
        dev->priv = NULL;
        return r;
    }
    dev->size = s->size;
    dev->block_size = VPC_SECTOR;
    dev->align = VPC_SECTOR;
    dev->caps = VDISK_CAN_FLUSH | (s->read_only ? 0 : VDISK_CAN_WRITE);
    return 0;
}

static void vpc_close(struct vdisk_dev *dev)
{
    struct vpc *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    s->offload = NULL;
    if (s->parent)
        dev_unref(s->parent);
    dev_unref(s->file);
    free_state(s);
    dev->priv = NULL;
}

/* ---- Synchronous I/O (the worker) ----------------------------------------- */

static bool bit_set(const uint8_t *bm, uint32_t i)
{
    return (bm[i >> 3] >> (7 - (i & 7))) & 1;
}

/* The bitmap of block IDX (allocated) into s->bitmap. */
static int load_bitmap(struct vpc *s, uint32_t idx)
{
    if (s->bitmap_block == idx)
        return 0;
    s->bitmap_block = VPC_UNALLOCATED;
    int r = dev_pread(s->file, s->bitmap, s->bitmap_size, (uint64_t)s->bat[idx] * VPC_SECTOR);
    if (r < 0)
        return r;
    s->bitmap_block = idx;
    uint32_t sectors = s->block_size / VPC_SECTOR;
    bool all = true;
    for (uint32_t i = 0; i < sectors / 8 && all; i++)
        all = s->bitmap[i] == 0xff;
    s->full[idx] = all ? VPC_FULL : VPC_PARTIAL;
    return 0;
}

/* An iovec covering LEN bytes at POS of IOV, for a synchronous call. */
struct slice {
    struct iovec small[8];
    struct iovec *v;
    int n;
};

static int slice_make(struct slice *sl, const struct iovec *iov, int iovcnt, size_t pos,
                      size_t len)
{
    sl->v = iovcnt <= 8 ? sl->small : malloc(sizeof(struct iovec) * (size_t)iovcnt);
    if (!sl->v)
        return err_set(-ENOMEM, "out of memory");
    sl->n = iov_slice(iov, iovcnt, pos, len, sl->v);
    return 0;
}

static void slice_free(struct slice *sl)
{
    if (sl->v != sl->small)
        free(sl->v);
}

static int file_io(struct vpc *s, bool write, const struct iovec *iov, int iovcnt, size_t pos,
                   size_t len, uint64_t off)
{
    struct slice sl;
    int r = slice_make(&sl, iov, iovcnt, pos, len);
    if (r == 0)
        r = write ? dev_pwritev(s->file, sl.v, sl.n, off, 0) : dev_preadv(s->file, sl.v, sl.n, off);
    slice_free(&sl);
    return r;
}

/* What the image does not hold: the parent's bytes, or zeroes. */
static int read_below(struct vpc *s, const struct iovec *iov, int iovcnt, size_t pos,
                      size_t len, uint64_t off)
{
    uint64_t psize = s->parent ? dev_size(s->parent) : 0;
    size_t n = off >= psize ? 0 : psize - off < len ? (size_t)(psize - off) : len;
    if (n) {
        struct slice sl;
        int r = slice_make(&sl, iov, iovcnt, pos, n);
        if (r == 0)
            r = dev_preadv(s->parent, sl.v, sl.n, off);
        slice_free(&sl);
        if (r < 0)
            return r;
    }
    if (n < len)
        iov_memset(iov, iovcnt, pos + n, 0, len - n);
    return 0;
}

static int read_work_locked(struct vpc *s, struct vdisk_req *req)
{
    uint64_t off = req->offset, end = req->offset + req->length;
    size_t pos = 0;
    while (off < end) {
        uint32_t idx = (uint32_t)(off / s->block_size);
        uint64_t inb = off % s->block_size;
        size_t n = (size_t)(end - off < s->block_size - inb ? end - off : s->block_size - inb);
        int r = 0;
        if (idx >= s->entries || s->bat[idx] == VPC_UNALLOCATED) {
            r = read_below(s, req->iov, req->iovcnt, pos, n, off);
        } else {
            uint64_t data = (uint64_t)s->bat[idx] * VPC_SECTOR + s->bitmap_size;
            if (s->full[idx] != VPC_FULL)
                r = load_bitmap(s, idx); /* (cached: one block's) */
            if (r == 0 && s->full[idx] == VPC_FULL) {
                r = file_io(s, false, req->iov, req->iovcnt, pos, n, data + inb);
            } else {
                /* Runs of sectors present here, or not. */
                for (size_t done = 0; r == 0 && done < n;) {
                    uint32_t sec = (uint32_t)((inb + done) / VPC_SECTOR);
                    bool here = bit_set(s->bitmap, sec);
                    size_t run = VPC_SECTOR;
                    while (done + run < n && bit_set(s->bitmap, sec + (uint32_t)(run / VPC_SECTOR)) == here)
                        run += VPC_SECTOR;
                    if (here)
                        r = file_io(s, false, req->iov, req->iovcnt, pos + done, run,
                                    data + inb + done);
                    else
                        r = read_below(s, req->iov, req->iovcnt, pos + done, run, off + done);
                    done += run;
                }
            }
        }
        if (r < 0)
            return r;
        off += n;
        pos += n;
    }
    return 0;
}

/* Copies the parent's bytes FROM..TO of block IDX into the new block at BASE
 * (what a differencing image's new block holds besides the write). */
static int copy_parent(struct vpc *s, uint32_t idx, uint64_t base, uint64_t from, uint64_t to)
{
    size_t chunk = 1u << 20;
    uint8_t *buf = from < to ? malloc(chunk) : NULL;
    if (from < to && !buf)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    uint64_t vstart = (uint64_t)idx * s->block_size;
    for (uint64_t at = from; r == 0 && at < to;) {
        size_t n = to - at < chunk ? (size_t)(to - at) : chunk;
        struct iovec v = {buf, n};
        r = read_below(s, &v, 1, 0, n, vstart + at);
        if (r == 0)
            r = dev_pwrite(s->file, buf, n, base + s->bitmap_size + at);
        at += n;
    }
    free(buf);
    return r;
}

/* A new block for block IDX, holding the LEN bytes at POS of IOV at INB. */
static int alloc_block(struct vpc *s, uint32_t idx, const struct iovec *iov, int iovcnt,
                       size_t pos, size_t len, uint64_t inb)
{
    const char *fn = s->dev->filename;
    uint64_t base = s->free_off, end = base + s->bitmap_size + s->block_size;
    if (base / VPC_SECTOR >= VPC_UNALLOCATED || end > (uint64_t)INT64_MAX - VPC_FOOTER_SIZE)
        return err_set(-EFBIG, "%s: no room for another block: it would start at offset %"
                       PRIu64 ", past what a BAT entry can name", fn, base);
    uint64_t flen = dev_size(s->file);
    /* Bytes past the old footer that the block now covers must read zero. */
    int r = 0;
    if (flen > base + VPC_FOOTER_SIZE)
        r = dev_write_zeroes(s->file, base, (flen < end ? flen : end) - base, 0);
    /* The footer moves past the block first. */
    if (r == 0)
        r = dev_pwrite(s->file, s->footer, VPC_FOOTER_SIZE, end);
    uint8_t *bm = calloc(1, s->bitmap_size);
    if (r == 0 && !bm)
        r = err_set(-ENOMEM, "out of memory");
    /* A differencing image's new block gets the parent's bytes around the
     * write, so that its bitmap is all ones too: readers that take a block
     * whole (QEMU) or by bitmap bytes (libvhdi) read what this one does. */
    if (r == 0 && s->parent)
        r = copy_parent(s, idx, base, 0, inb);
    if (r == 0 && s->parent)
        r = copy_parent(s, idx, base, inb + len, s->block_size);
    if (r == 0) {
        uint32_t sectors = s->block_size / VPC_SECTOR;
        memset(bm, 0xff, sectors / 8 ? sectors / 8 : 1);
        if (sectors < 8)
            bm[0] = (uint8_t)(0xff << (8 - sectors));
        r = dev_pwrite(s->file, bm, s->bitmap_size, base);
    }
    if (r == 0)
        r = file_io(s, true, iov, iovcnt, pos, len, base + s->bitmap_size + inb);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0) {
        uint8_t e[4];
        be32_store(e, (uint32_t)(base / VPC_SECTOR));
        r = dev_pwrite(s->file, e, 4, s->bat_offset + (uint64_t)4 * idx);
    }
    if (r == 0) {
        s->bat[idx] = (uint32_t)(base / VPC_SECTOR);
        s->free_off = end;
        s->full[idx] = VPC_FULL;
    }
    free(bm);
    return r;
}

/* Writes LEN bytes of IOV at POS to the disk at OFF, inside one block. */
static int write_block(struct vpc *s, const struct iovec *iov, int iovcnt, size_t pos,
                       size_t len, uint64_t off)
{
    uint32_t idx = (uint32_t)(off / s->block_size);
    uint64_t inb = off % s->block_size;
    if (s->bat[idx] == VPC_UNALLOCATED)
        return alloc_block(s, idx, iov, iovcnt, pos, len, inb);
    uint64_t base = (uint64_t)s->bat[idx] * VPC_SECTOR;
    int r = s->full[idx] == VPC_FULL ? 0 : load_bitmap(s, idx);
    if (r == 0)
        r = file_io(s, true, iov, iovcnt, pos, len, base + s->bitmap_size + inb);
    if (r < 0 || s->full[idx] == VPC_FULL)
        return r;
    /* Mark the sectors present once their data is down. */
    uint32_t first = (uint32_t)(inb / VPC_SECTOR), last = (uint32_t)((inb + len) / VPC_SECTOR);
    bool change = false;
    for (uint32_t i = first; i < last; i++) {
        if (!bit_set(s->bitmap, i)) {
            s->bitmap[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
            change = true;
        }
    }
    if (!change)
        return 0;
    r = dev_flush(s->file);
    uint32_t b0 = first / 8 / VPC_SECTOR * VPC_SECTOR;
    uint32_t b1 = (uint32_t)align_up((last + 7) / 8, VPC_SECTOR);
    if (b1 > s->bitmap_size)
        b1 = s->bitmap_size;
    if (r == 0)
        r = dev_pwrite(s->file, s->bitmap + b0, b1 - b0, base + b0);
    if (r < 0)
        s->bitmap_block = VPC_UNALLOCATED; /* reread what the file has */
    return r;
}

static uint8_t zero_chunk[64 << 10];

static int write_work_locked(struct vpc *s, struct vdisk_req *req)
{
    uint64_t off = req->offset, end = req->offset + req->length;
    size_t pos = 0;
    bool zeroes = req->op == VDISK_OP_WRITE_ZEROES;
    while (off < end) {
        uint32_t idx = (uint32_t)(off / s->block_size);
        uint64_t inb = off % s->block_size;
        size_t n = (size_t)(end - off < s->block_size - inb ? end - off : s->block_size - inb);
        int r = 0;
        if (!zeroes) {
            r = write_block(s, req->iov, req->iovcnt, pos, n, off);
        } else if (s->bat[idx] == VPC_UNALLOCATED && !s->parent) {
            /* Reads zero already. */
        } else if (req->flags & VDISK_REQ_NO_FALLBACK) {
            return err_set(-ENOTSUP, "%s: zeroes in a VHD are written as data (no fallback "
                           "asked)", s->dev->filename);
        } else {
            for (size_t d = 0; r == 0 && d < n;) {
                size_t k = n - d < sizeof zero_chunk ? n - d : sizeof zero_chunk;
                struct iovec z = {zero_chunk, k};
                r = write_block(s, &z, 1, 0, k, off + d);
                d += k;
            }
        }
        if (r < 0)
            return r;
        off += n;
        pos += n;
    }
    return 0;
}

static int io_work(struct vdisk_req *req)
{
    struct vpc *s = req->dev->priv;
    pthread_mutex_lock(&s->lock);
    int r = req->op == VDISK_OP_READ ? read_work_locked(s, req) : write_work_locked(s, req);
    if (r == 0 && req->op != VDISK_OP_READ && (req->flags & VDISK_REQ_FUA))
        r = dev_flush(s->file);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

/* ---- Requests ------------------------------------------------------------- */

static void vpc_submit(struct vdisk_req *req);

/* The first request to a block reads its bitmap on the worker, then starts
 * again: a full block then goes to the file directly. */
static int bitmap_work(struct vdisk_req *req)
{
    struct vpc *s = req->dev->priv;
    uint32_t idx = (uint32_t)(req->offset / s->block_size);
    pthread_mutex_lock(&s->lock);
    int r = s->full[idx] == VPC_UNKNOWN ? load_bitmap(s, idx) : 0;
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void bitmap_then(struct vdisk_req *req)
{
    if (req->result < 0) {
        req_complete(req, req->result);
        return;
    }
    vpc_submit(req);
}

static void to_file(struct vdisk_req *req, enum vdisk_op op, uint64_t off)
{
    struct vpc *s = req->dev->priv;
    req_send_child(req, s->file, op, off, req->length, req->iov, req->iovcnt,
                   req->flags & VDISK_REQ_FUA);
}

static void vpc_submit(struct vdisk_req *req)
{
    struct vpc *s = req->dev->priv;
    switch (req->op) {
    case VDISK_OP_FLUSH:
        to_file(req, VDISK_OP_FLUSH, 0);
        return;
    case VDISK_OP_DISCARD:
        req_complete(req, 0); /* advisory; blocks are never freed */
        return;
    case VDISK_OP_READ:
    case VDISK_OP_WRITE:
        if (s->type == VPC_TYPE_FIXED) {
            to_file(req, req->op, req->offset);
            return;
        } else {
            /* One allocated block whose bitmap is all ones: the file's bytes. */
            uint64_t idx = req->offset / s->block_size, inb = req->offset % s->block_size;
            if (req->length <= s->block_size - inb) {
                pthread_mutex_lock(&s->lock);
                bool here = idx < s->entries && s->bat[idx] != VPC_UNALLOCATED;
                uint8_t state = here ? s->full[idx] : VPC_PARTIAL;
                uint64_t host = here ? (uint64_t)s->bat[idx] * VPC_SECTOR + s->bitmap_size + inb : 0;
                pthread_mutex_unlock(&s->lock);
                if (state == VPC_FULL) {
                    to_file(req, req->op, host);
                    return;
                }
                if (state == VPC_UNKNOWN) {
                    offload_req(s->offload, req, bitmap_work, bitmap_then);
                    return;
                }
            }
        }
        break;
    case VDISK_OP_WRITE_ZEROES:
        if (s->type == VPC_TYPE_FIXED) {
            req_send_child(req, s->file, VDISK_OP_WRITE_ZEROES, req->offset, req->length,
                           NULL, 0, req->flags & ~VDISK_REQ_MAY_UNMAP);
            return;
        }
        break;
    }
    offload_req(s->offload, req, io_work, NULL);
}

/* ---- Queries -------------------------------------------------------------- */

static int vpc_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                            struct vdisk_extent *ext)
{
    struct vpc *s = dev->priv;
    ext->depth = 0;
    if (s->type == VPC_TYPE_FIXED) {
        int r = dev_block_status(s->file, off, len, ext);
        if (r < 0)
            return r;
        /* As QEMU shows it: data, zero where the file has a hole. */
        ext->flags |= VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = off;
        ext->host_file = s->file->filename;
        ext->depth = 0;
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    uint32_t idx = (uint32_t)(off / s->block_size);
    uint64_t inb = off % s->block_size;
    uint64_t n = len < s->block_size - inb ? len : s->block_size - inb;
    uint32_t e = idx < s->entries ? s->bat[idx] : VPC_UNALLOCATED;
    int r = 0;
    bool here = e != VPC_UNALLOCATED;
    if (here && s->type == VPC_TYPE_DIFF && s->full[idx] != VPC_FULL) {
        r = load_bitmap(s, idx);
        if (r == 0 && s->full[idx] != VPC_FULL) {
            uint32_t sec = (uint32_t)(inb / VPC_SECTOR);
            here = bit_set(s->bitmap, sec);
            uint64_t run = VPC_SECTOR;
            while (run < n && bit_set(s->bitmap, sec + (uint32_t)(run / VPC_SECTOR)) == here)
                run += VPC_SECTOR;
            n = run;
        }
    } else if (!here) {
        /* Unallocated blocks run on. */
        while (n < len) {
            uint32_t j = (uint32_t)((off + n) / s->block_size);
            if (j < s->entries && s->bat[j] != VPC_UNALLOCATED)
                break;
            n += len - n < s->block_size ? len - n : s->block_size;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    ext->length = n;
    if (here) {
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = (uint64_t)e * VPC_SECTOR + s->bitmap_size + inb;
        ext->host_file = s->file->filename;
        return 0;
    }
    uint64_t psize = s->parent ? dev_size(s->parent) : 0;
    if (off < psize) {
        r = dev_block_status(s->parent, off, psize - off < n ? psize - off : n, ext);
        if (r < 0)
            return r;
        ext->depth++;
        return 0;
    }
    /* As QEMU: unallocated blocks of an image without a parent are zeroes
     * that this image answers for. */
    ext->flags = VDISK_EXT_ZERO | (s->parent ? 0 : VDISK_EXT_ALLOCATED);
    return 0;
}

static struct vdisk_dev *vpc_backing(struct vdisk_dev *dev)
{
    struct vpc *s = dev->priv;
    return s->parent;
}

static void vpc_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    struct vpc *s = dev->priv;
    if (s->type != VPC_TYPE_FIXED)
        info->cluster_size = s->block_size;
    info->backing_filename = s->parent_name;
    info->full_backing_filename = s->full_parent;
    if (s->parent)
        info->backing_format = "vpc";
}

static int64_t vpc_allocated_size(struct vdisk_dev *dev)
{
    struct vpc *s = dev->priv;
    return dev_allocated_size(s->file);
}

/* The options create takes (vdisk_create_option). */
static const struct create_opt vpc_create_opts[] = {
    {"force_size", "bool (on/off)",
     "keep the size exactly as given, not rounded to a CHS geometry "
     "(what Azure needs)"},
    {"preallocation", "str",
     "off (default), falloc or full (fixed images)"},
    {"size", "size",
     "the virtual disk's size in bytes"},
    {"subformat", "str",
     "dynamic (default) or fixed"},
    {NULL, NULL, NULL},
};

const struct vdisk_driver vdisk_driver_vpc = {
    .name = "vpc",
    .probe = vpc_probe,
    .open = vpc_open,
    .close = vpc_close,
    .submit = vpc_submit,
    .block_status = vpc_block_status,
    .allocated_size = vpc_allocated_size,
    .get_info = vpc_get_info,
    .backing = vpc_backing,
    .create = vpc_create,
    .create_opts = vpc_create_opts,
};
