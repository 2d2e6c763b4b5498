/* SPDX-License-Identifier: MIT */
/*
 * vdisk/part.h: partition tables (MBR and GPT) on any device, and
 * partitions as devices of their own.
 *
 * A table is read from a device (raw, qcow2 with its backing chain, a host
 * block device, ...) into memory with vdisk_part_read(), or started empty
 * with vdisk_part_new(); it is listed and edited in memory and written back
 * with vdisk_part_write().  Positions and sizes are in logical sectors of
 * the table (512 or 4096 bytes).
 *
 * MBR: partitions 1-4 are the primary entries, logical partitions inside
 * the extended partition are numbered from 5 in the order of their chain
 * of EBRs, as Linux numbers them.  CHS fields are ignored on read and
 * written from a 255-head, 63-sector geometry.  GPT: partition N is entry
 * N - 1 of the entry array; both headers and arrays are written, with
 * their CRC32s, and a protective MBR.
 *
 * Thread-safety: a vdisk_ptable belongs to one thread at a time.  Reading
 * and writing a table does I/O on its disk, which may be shared.
 *
 * Errors: as everywhere in libvdisk, 0 (or a count) on success, a negative
 * errno with a message for vdisk_get_error() on failure.  A table that
 * cannot be parsed gives -EINVAL with what was expected and what was
 * found; a disk without a table gives -ENODATA.
 */
#ifndef VDISK_PART_H
#define VDISK_PART_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Table kinds. */
#define VDISK_PT_MBR 1 /* "dos" in sfdisk */
#define VDISK_PT_GPT 2
/* Read only: listed and opened as sfdisk lists them, never edited. */
#define VDISK_PT_SUN 3 /* Sun disklabel (VTOC) */
#define VDISK_PT_SGI 4 /* SGI volume header */
#define VDISK_PT_BSD 5 /* BSD disklabel (in sector 1 of the disk) */

/* The longest partition name as UTF-8 (36 UTF-16 units, 3 bytes each). */
#define VDISK_PART_NAME_MAX 108

/* GPT attribute bits. */
#define VDISK_GPT_ATTR_REQUIRED   (1ull << 0)  /* RequiredPartition */
#define VDISK_GPT_ATTR_NOBLOCKIO  (1ull << 1)  /* NoBlockIOProtocol */
#define VDISK_GPT_ATTR_LEGACYBOOT (1ull << 2)  /* LegacyBIOSBootable */

/*
 * One partition.  Fields of the other kind of table are 0 or empty.  The
 * caller sets struct_size to sizeof(struct vdisk_partition), also for the
 * structures it passes in (see "Structures that grow" in vdisk/device.h:
 * an older caller's missing fields take their defaults in vdisk_part_add).
 */
struct vdisk_partition {
    size_t struct_size;
    unsigned number;     /* 1-4 primary, 5... logical (MBR); entry + 1 (GPT) */
    uint64_t start;      /* first sector */
    uint64_t size;       /* sectors */
    /* MBR */
    unsigned mbr_type;   /* the type byte (0x83 Linux, 0x05 extended, ...) */
    int bootable;        /* 1: the active flag (0x80) is set */
    int logical;         /* 1: a logical partition (inside the extended one) */
    /* GPT */
    char type_guid[37];  /* "0FC63DAF-8483-4772-8E79-3D69D8477DE4" */
    char uuid[37];       /* the partition's unique GUID, upper case */
    char name[VDISK_PART_NAME_MAX + 1]; /* UTF-8 */
    uint64_t attrs;      /* attribute bits (VDISK_GPT_ATTR_*, 48-63 type-specific) */
    /* Sun, SGI, BSD (since version 2; mbr_type holds their type code) */
    char flags[8];       /* sfdisk's Flags/Attrs column: sun "u " (unmountable),
                            " r" (read-only), "ur"; sgi "boot", "swap"; or "" */
    int whole_disk;      /* sun "Whole disk", sgi "SGI volume": the whole disk */
    uint64_t fsize, bsize, cpg; /* bsd: fragment size, block size, cylinders/group */
};
#define VDISK_PARTITION_SIZE_V1 VDISK_STRUCT_END(struct vdisk_partition, attrs)
#define VDISK_PARTITION_SIZE_V2 VDISK_STRUCT_END(struct vdisk_partition, cpg)

typedef struct vdisk_ptable vdisk_ptable;

/*
 * vdisk_part_read: reads the partition table of DISK into a new table in
 * *out.  SECTOR_SIZE is 512 or 4096, or 0 to find it: a GPT header is
 * looked for at LBA 1 of both sizes, the device's block size first; an
 * MBR uses the device's block size.  A GPT whose primary header or array
 * is damaged is read from its backup (vdisk_part_verify tells).
 * The table holds a reference to DISK.
 * Returns 0, -ENODATA when the disk has no table, -EINVAL for a table that
 * cannot be parsed (out of the disk, EBR loops, bad sizes, both GPT
 * headers damaged), or an I/O error.  *out is NULL on failure.
 */
int vdisk_part_read(vdisk_ptable **out, vdisk_dev *disk, unsigned sector_size);

/*
 * vdisk_part_new: a new, empty table of KIND (VDISK_PT_MBR or VDISK_PT_GPT)
 * for DISK, in memory only until vdisk_part_write().  SECTOR_SIZE: 512,
 * 4096, or 0 for the device's block size.  MBR: a random disk signature;
 * GPT: a random disk GUID, 128 entries of 128 bytes, usable sectors from
 * just after the primary array to just before the backup one.
 * Returns 0, -EINVAL (bad kind or sector size, disk too small for a
 * table), -ENOMEM.
 */
int vdisk_part_new(vdisk_ptable **out, vdisk_dev *disk, int kind, unsigned sector_size);

/* vdisk_part_free: frees a table (not written changes are lost); NULL is a no-op. */
void vdisk_part_free(vdisk_ptable *t);

/* vdisk_part_kind: VDISK_PT_MBR, VDISK_PT_GPT, or (read only) VDISK_PT_SUN,
 * VDISK_PT_SGI, VDISK_PT_BSD.  The read-only kinds are found by
 * vdisk_part_read; every edit of them fails with -ENOTSUP. */
int vdisk_part_kind(const vdisk_ptable *t);

/* vdisk_part_label_name: the kind as sfdisk names it: "dos", "gpt", "sun",
 * "sgi", "bsd". */
const char *vdisk_part_label_name(const vdisk_ptable *t);

/* vdisk_part_type_name: P's type as sfdisk names it ("Linux filesystem",
 * "W95 FAT32 (LBA)", "Linux native", ...), "unknown" for a type sfdisk does
 * not name.  P comes from vdisk_part_get or vdisk_part_find on T. */
const char *vdisk_part_type_name(const vdisk_ptable *t, const struct vdisk_partition *p);

/* vdisk_part_grain: the alignment of new partitions in bytes, as libfdisk's:
 * 1 MiB, or one sector on disks of at most 4 MiB. */
uint64_t vdisk_part_grain(const vdisk_ptable *t);

/* vdisk_part_geometry: the CHS geometry sfdisk reports: the label's for sun
 * and bsd, else 255 heads, 63 sectors a track, and the cylinders that fit. */
void vdisk_part_geometry(const vdisk_ptable *t, unsigned *heads, unsigned *sectors,
                         uint64_t *cylinders);

/* vdisk_part_sector_size: the table's logical sector size in bytes. */
unsigned vdisk_part_sector_size(const vdisk_ptable *t);

/* vdisk_part_disk_sectors: the disk's size in the table's sectors. */
uint64_t vdisk_part_disk_sectors(const vdisk_ptable *t);

/*
 * vdisk_part_get_id: the disk's identifier as sfdisk prints it:
 * "0x1234abcd" (MBR signature) or the disk GUID (GPT, upper case), in
 * BUF of LEN bytes (40 suffice).  Returns 0 or -ERANGE.
 */
int vdisk_part_get_id(const vdisk_ptable *t, char *buf, size_t len);

/* vdisk_part_set_id: sets the identifier (same syntax).  Returns 0 or -EINVAL. */
int vdisk_part_set_id(vdisk_ptable *t, const char *id);

/*
 * vdisk_part_usable: the first and last sectors partitions may use: the
 * GPT header's fields; for MBR 1 (or the alignment grain) and the last
 * sector of the disk (or of 2^32 - 1 sectors, what MBR can address).
 */
void vdisk_part_usable(const vdisk_ptable *t, uint64_t *first, uint64_t *last);

/*
 * vdisk_part_set_usable: sets GPT's first and last usable sectors.  They
 * must lie between the primary array's end and the backup array's start.
 * Returns 0, -EINVAL (out of range, or an MBR table).
 */
int vdisk_part_set_usable(vdisk_ptable *t, uint64_t first, uint64_t last);

/* vdisk_part_entries: GPT: the number of entries of the array; MBR: 4. */
unsigned vdisk_part_entries(const vdisk_ptable *t);

/*
 * vdisk_part_set_entries: GPT: sets the number of entries (1 to 65536;
 * the usable range shrinks or grows with the arrays).  Fails with -EINVAL
 * when partitions would no longer fit, -ENOTSUP on MBR.
 */
int vdisk_part_set_entries(vdisk_ptable *t, unsigned count);

/* vdisk_part_count: the number of partitions (MBR: extended included). */
size_t vdisk_part_count(const vdisk_ptable *t);

/*
 * vdisk_part_get: the INDEX-th partition (0 <= INDEX < count, by
 * ascending number) in *P, filled up to p->struct_size (set to the bytes
 * filled).  Returns 0, -ERANGE, or -EINVAL when p->struct_size is below
 * VDISK_PARTITION_SIZE_V1.
 */
int vdisk_part_get(const vdisk_ptable *t, size_t index, struct vdisk_partition *p);

/* vdisk_part_find: partition NUMBER in *P, as vdisk_part_get.  Returns 0,
 * -ENOENT or -EINVAL (struct_size). */
int vdisk_part_find(const vdisk_ptable *t, unsigned number, struct vdisk_partition *p);

/*
 * vdisk_part_add: adds a partition described by *P and stores the result
 * in *P.  Defaults: number 0 = the first free (MBR: a primary slot, or a
 * logical one when start lies in the extended partition, p->logical is
 * set, or no primary slot is left); start 0 = the first free sector
 * aligned to 1 MiB; size 0 = up to the end of that free area; MBR type 0 =
 * 0x83; an empty type GUID = Linux filesystem; an empty uuid = a random
 * one.  Returns 0, -EINVAL (bad field, not inside the usable range or the
 * extended partition, or p->struct_size below VDISK_PARTITION_SIZE_V1),
 * -EEXIST (number in use), -EBUSY (overlaps another partition), -ENOSPC
 * (no free slot or free space).  *P is read and written up to its
 * struct_size, and only written on success.
 */
int vdisk_part_add(vdisk_ptable *t, struct vdisk_partition *p);

/*
 * vdisk_part_delete: removes partition NUMBER.  MBR: deleting the extended
 * partition deletes its logical partitions; deleting a logical partition
 * renumbers the ones after it, as Linux does.  Returns 0 or -ENOENT.
 */
int vdisk_part_delete(vdisk_ptable *t, unsigned number);

/*
 * vdisk_part_resize: sets partition NUMBER's size in sectors; 0 = as far
 * as the free space after it goes.  Returns 0, -ENOENT, -EBUSY (would
 * overlap), -EINVAL (outside the usable range or the extended partition).
 */
int vdisk_part_resize(vdisk_ptable *t, unsigned number, uint64_t size);

/*
 * vdisk_part_set_type: MBR: a hex byte ("83", "0x83"); GPT: a GUID; both
 * take sfdisk's shortcuts L (Linux), S (swap), E (extended, MBR),
 * U (EFI system), R (RAID), V (LVM), H (home, GPT), X (linux extended, MBR).
 * Returns 0, -ENOENT, -EINVAL.
 */
int vdisk_part_set_type(vdisk_ptable *t, unsigned number, const char *type);

/* vdisk_part_set_name: GPT: the name (UTF-8, at most 36 UTF-16 units).
 * Returns 0, -ENOENT, -EINVAL (too long, bad UTF-8), -ENOTSUP (MBR). */
int vdisk_part_set_name(vdisk_ptable *t, unsigned number, const char *name);

/* vdisk_part_set_uuid: GPT: the unique GUID.  Returns 0, -ENOENT, -EINVAL, -ENOTSUP. */
int vdisk_part_set_uuid(vdisk_ptable *t, unsigned number, const char *uuid);

/* vdisk_part_set_bootable: MBR: the active flag.  Returns 0, -ENOENT, -ENOTSUP (GPT). */
int vdisk_part_set_bootable(vdisk_ptable *t, unsigned number, int on);

/* vdisk_part_set_attrs: GPT: the attribute bits.  Returns 0, -ENOENT, -ENOTSUP (MBR). */
int vdisk_part_set_attrs(vdisk_ptable *t, unsigned number, uint64_t attrs);

/*
 * vdisk_part_write: writes the table to its disk and flushes it.  MBR:
 * sector 0 (its boot code kept) and one EBR per logical partition; GPT:
 * protective MBR, primary header and array, backup array and header at
 * the end of the disk.  Returns 0, -EROFS, or an I/O error.
 */
int vdisk_part_write(vdisk_ptable *t);

/* A finding of verify or repair, one line without newline. */
typedef void (*vdisk_part_report_fn)(void *opaque, const char *line);

/*
 * vdisk_part_verify: checks the table on DISK (SECTOR_SIZE as for
 * vdisk_part_read): GPT header and array CRCs, primary and backup
 * disagreeing or the backup not at the end of the disk, partitions that
 * overlap, lie outside the usable range or beyond the disk, EBR chains that
 * are damaged.  REPORT (may be NULL) gets one line per problem.
 * Returns the number of problems (0: the table is sound), -ENODATA
 * without a table, or an I/O error.
 */
int vdisk_part_verify(vdisk_dev *disk, unsigned sector_size, vdisk_part_report_fn report,
                      void *opaque);

/*
 * vdisk_part_repair: repairs a GPT on DISK: a damaged header or array is
 * rebuilt from the other copy, and the backup is moved to the end of the
 * disk (the last usable sector with it) when the disk grew.  REPORT gets
 * one line per fix.  Returns the number of fixes (0: nothing to do),
 * -EINVAL when both copies are damaged, -EROFS when a GPT is found on a
 * read-only device, -ENOTSUP for MBR tables with problems (nothing can be
 * rebuilt from a second copy), or an I/O error.
 */
int vdisk_part_repair(vdisk_dev *disk, unsigned sector_size, vdisk_part_report_fn report,
                      void *opaque);

/*
 * vdisk_open_partition: partition NUMBER of DISK's table (found as
 * vdisk_part_read(disk, 0) finds it) as a device in *out, through
 * vdisk_open_range(): block N of it is block N + start of the disk.
 * FLAGS: VDISK_OPEN_RDONLY.  The new device holds a reference to DISK.
 * Returns 0, -ENODATA (no table), -ENOENT (no such partition), -EINVAL
 * (the partition does not lie inside the disk; a damaged table), or
 * another error of vdisk_part_read / vdisk_open_range.
 */
int vdisk_open_partition(vdisk_dev **out, vdisk_dev *disk, unsigned number, unsigned flags);

/* vdisk_open_partition_ss: vdisk_open_partition with the table's logical
 * sector size given (512 or 4096; 0: found as vdisk_part_read finds it), as
 * for an MBR of a 4096-byte-sector disk kept in an image file. */
int vdisk_open_partition_ss(vdisk_dev **out, vdisk_dev *disk, unsigned number,
                            unsigned sector_size, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_PART_H */
