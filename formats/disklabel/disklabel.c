/* SPDX-License-Identifier: MIT */
/*
 * formats/disklabel/disklabel.c: Sun, SGI and BSD disklabels, read only,
 * as util-linux's sfdisk finds and lists them.
 *
 * Sun (sector 0, big-endian): 128 bytes of text, the VTOC (version at 128,
 * 8 partition tags {u16 tag, u16 flags} at 142), the geometry (heads at
 * 436, sectors a track at 438, data cylinders at 432), 8 partitions
 * {u32 first cylinder, u32 sectors} at 444, the magic 0xDABE at 508 and a
 * checksum at 510 that makes the XOR of the sector's 256 16-bit words 0.
 * A partition starts at cylinder * heads * sectors-a-track; with a bad
 * checksum sfdisk warns and uses the default geometry (255 heads, 63
 * sectors), so do we.
 *
 * SGI (sector 0, big-endian): magic 0x0BE5A941 at 0, the root and swap
 * partition numbers (u16) at 4 and 6, 16 partitions {u32 blocks, u32 first
 * block, u32 type} at 312, a checksum at 504 (the 32-bit sum of the
 * 128 words is 0; sfdisk only warns when it is not).
 *
 * BSD (byte 512 of the disk, little-endian as on the PCs that write it):
 * d_magic 0x82564557 at 0 and again (d_magic2) at 132, the geometry
 * (sectors a track at 44, tracks at 48, cylinders at 52), the number of
 * partitions (u16) at 138, at most 16 partitions {u32 size, u32 offset,
 * u32 fsize, u8 fstype, u8 frag, u16 cpg} at 148.
 *
 * Every field is read from a fixed-size buffer at a fixed offset; counts
 * are capped (8, 16, 16) and the products held in 64 bits, so no label
 * can make us read out of bounds or overflow.  Partitions that lie beyond
 * the disk are listed (as sfdisk lists them) and refused as devices.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../part/part.h"

#define SUN_MAGIC 0xDABEu
#define SUN_PARTS 8
#define SUN_TAG_WHOLEDISK 0x05
#define SUN_FLAG_UNMNT 0x01
#define SUN_FLAG_RONLY 0x10

#define SGI_MAGIC 0x0BE5A941u
#define SGI_PARTS 16
#define SGI_TYPE_VOLUME 0x06

#define BSD_MAGIC 0x82564557u
#define BSD_OFFSET 512
#define BSD_PARTS 16
#define BSD_FS_UNUSED 0
#define BSD_FS_BSDFFS 7

/* sfdisk's geometry for a disk that says none. */
static void default_geometry(struct vdisk_ptable *t)
{
    t->heads = 255;
    t->track = 63;
    t->cylinders = t->sectors / (255 * 63);
}

bool sun_probe(const uint8_t *s0)
{
    return be16_load(s0 + 508) == SUN_MAGIC;
}

int sun_read(struct vdisk_ptable *t, const uint8_t *s0, struct pt_report *f)
{
    uint16_t x = 0;
    for (int i = 0; i < 256; i++)
        x ^= be16_load(s0 + 2 * i);
    default_geometry(t);
    if (x != 0) {
        pt_report(f, "The Sun disklabel's checksum is wrong; its geometry is not used.");
    } else {
        t->heads = be16_load(s0 + 436);
        t->track = be16_load(s0 + 438);
        t->cylinders = be16_load(s0 + 432);
        if (be32_load(s0 + 128) != 1)
            pt_report(f, "The Sun disklabel's VTOC version is %" PRIu32 ", not 1.",
                      be32_load(s0 + 128));
        if (be32_load(s0 + 188) != 0x600DDEEEu)
            pt_report(f, "The Sun disklabel's VTOC sanity is 0x%08" PRIx32 ", not 0x600ddeee.",
                      be32_load(s0 + 188));
    }
    uint64_t cyl = (uint64_t)t->heads * t->track;
    for (unsigned i = 0; i < SUN_PARTS; i++) {
        const uint8_t *e = s0 + 444 + 8 * i, *info = s0 + 142 + 4 * i;
        uint32_t size = be32_load(e + 4);
        if (!size)
            continue;
        struct pt_part *p = pt_insert(t, i + 1);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        p->start = be32_load(e) * cyl; /* < 2^64: 32 + 16 + 16 bits */
        p->size = size;
        p->code = be16_load(info);
        uint16_t fl = be16_load(info + 2);
        if (fl & (SUN_FLAG_UNMNT | SUN_FLAG_RONLY))
            snprintf(p->flags, sizeof p->flags, "%c%c", fl & SUN_FLAG_UNMNT ? 'u' : ' ',
                     fl & SUN_FLAG_RONLY ? 'r' : ' ');
        p->whole = p->code == SUN_TAG_WHOLEDISK;
    }
    return 0;
}

bool sgi_probe(const uint8_t *s0)
{
    return be32_load(s0) == SGI_MAGIC;
}

int sgi_read(struct vdisk_ptable *t, const uint8_t *s0, struct pt_report *f)
{
    uint32_t sum = 0;
    for (int i = 0; i < 128; i++)
        sum += be32_load(s0 + 4 * i);
    if (sum != 0)
        pt_report(f, "The SGI disklabel's checksum is wrong.");
    default_geometry(t);
    unsigned root = be16_load(s0 + 4), swap = be16_load(s0 + 6);
    for (unsigned i = 0; i < SGI_PARTS; i++) {
        const uint8_t *e = s0 + 312 + 12 * i;
        uint32_t size = be32_load(e);
        if (!size)
            continue;
        struct pt_part *p = pt_insert(t, i + 1);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        p->start = be32_load(e + 4);
        p->size = size;
        p->code = be32_load(e + 8);
        p->whole = p->code == SGI_TYPE_VOLUME;
        if (i == swap)
            strcpy(p->flags, "swap");
        else if (i == root)
            strcpy(p->flags, "boot");
    }
    return 0;
}

bool bsd_probe(const uint8_t *s0)
{
    const uint8_t *d = s0 + BSD_OFFSET;
    return le32_load(d) == BSD_MAGIC && le32_load(d + 132) == BSD_MAGIC;
}

int bsd_read(struct vdisk_ptable *t, const uint8_t *s0, struct pt_report *f)
{
    const uint8_t *d = s0 + BSD_OFFSET;
    t->track = le32_load(d + 44) > 0xffff ? 0 : (unsigned)le32_load(d + 44);
    t->heads = le32_load(d + 48) > 0xffff ? 0 : (unsigned)le32_load(d + 48);
    t->cylinders = le32_load(d + 52);
    unsigned n = le16_load(d + 138);
    if (n > BSD_PARTS) {
        pt_report(f, "The BSD disklabel says %u partitions; at most %d are read.", n, BSD_PARTS);
        n = BSD_PARTS;
    }
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e = d + 148 + 16 * i;
        uint32_t size = le32_load(e);
        if (!size)
            continue;
        struct pt_part *p = pt_insert(t, i + 1);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        p->start = le32_load(e + 4);
        p->size = size;
        p->code = e[12];
        if (e[12] == BSD_FS_UNUSED || e[12] == BSD_FS_BSDFFS) {
            p->fsize = le32_load(e + 8);
            p->bsize = (uint64_t)le32_load(e + 8) * e[13];
        }
        if (e[12] == BSD_FS_BSDFFS)
            p->cpg = le16_load(e + 14);
    }
    return 0;
}
