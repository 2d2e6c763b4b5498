/* SPDX-License-Identifier: MIT */
/*
 * formats/part/part.h: the in-memory partition table shared by the MBR and
 * GPT code (formats/mbr, formats/gpt) and the public calls (part.c).
 * Nothing here is public.
 */
#ifndef VDISK_PART_INTERNAL_H
#define VDISK_PART_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"

/* Limits that bound what a hostile table can make us do. */
#define PT_MAX_LOGICAL      1024        /* EBRs followed before giving up */
#define GPT_MAX_ENTRIES     65536u      /* entries in an array */
#define GPT_MAX_ENTRY_SIZE  4096u       /* bytes per entry */
#define GPT_MAX_ARRAY_BYTES (4u << 20)  /* bytes of an entry array */
#define PT_MAX_PARTS        (GPT_MAX_ENTRIES + 4)

struct pt_part {
    unsigned number;
    uint64_t start, size;       /* sectors */
    uint8_t mbr_type;
    bool bootable;
    uint64_t ebr;               /* MBR logical: where its EBR lies (0: none yet) */
    uint8_t type_guid[16];      /* on-disk byte order */
    uint8_t uuid[16];
    char name[VDISK_PART_NAME_MAX + 1];
    uint64_t attrs;
    /* Sun, SGI, BSD */
    uint32_t code;              /* the type code */
    char flags[8];              /* sfdisk's Flags/Attrs column */
    bool whole;                 /* the whole-disk slice */
    uint64_t fsize, bsize, cpg; /* bsd */
};

struct vdisk_ptable {
    struct vdisk_dev *disk;
    int kind;
    unsigned ss;                /* sector size */
    uint64_t sectors;           /* disk size in sectors */
    uint64_t grain;             /* alignment in sectors (1 MiB) */
    unsigned heads, track;      /* CHS geometry: heads, sectors a track */
    uint64_t cylinders;
    /* MBR */
    uint32_t mbr_id;
    uint8_t boot_code[446];     /* kept from sector 0 */
    /* GPT */
    uint8_t disk_guid[16];
    uint64_t first_usable, last_usable;
    uint32_t nentries, entry_size;
    uint64_t entries_lba;       /* of the primary array */
    uint64_t backup_lba;        /* where the backup header was found */
    /* Partitions, by ascending number. */
    struct pt_part *parts;
    size_t n, cap;
};

/* A finding: verify reports, the count goes up. */
struct pt_report {
    vdisk_part_report_fn fn;
    void *opaque;
    int count;
};
void pt_report(struct pt_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Table life. */
struct vdisk_ptable *pt_alloc(struct vdisk_dev *disk, int kind, unsigned ss);
struct pt_part *pt_insert(struct vdisk_ptable *t, unsigned number); /* NULL: ENOMEM */
struct pt_part *pt_lookup(const struct vdisk_ptable *t, unsigned number);
void pt_remove(struct vdisk_ptable *t, struct pt_part *p);

/* Sector I/O: COUNT sectors at LBA, bounds-checked against the disk. */
int pt_read(const struct vdisk_ptable *t, void *buf, uint64_t lba, uint64_t count);
int pt_write(const struct vdisk_ptable *t, const void *buf, uint64_t lba, uint64_t count);

/* GUIDs: 16 bytes in on-disk (mixed-endian) order <-> text. */
void guid_to_str(const uint8_t g[16], char out[37]);
int guid_from_str(const char *s, uint8_t g[16]);
void guid_random(uint8_t g[16]);
bool guid_is_zero(const uint8_t g[16]);
uint32_t random_u32(void);

/* UTF-16LE (N units) <-> UTF-8.  The decoder stops at a NUL. */
void utf16le_to_utf8(const uint8_t *in, size_t units, char *out, size_t outlen);
/* Returns the number of units written, or -EINVAL (bad UTF-8 / too long). */
int utf8_to_utf16le(const char *in, uint8_t *out, size_t units);

/* Overlap checks of the partitions (of one level), shared by verify. */
void pt_check_overlaps(const struct vdisk_ptable *t, struct pt_report *r);

/* MBR (formats/mbr/mbr.c). */
int mbr_read(struct vdisk_ptable *t, const uint8_t *sector0, struct pt_report *findings);
int mbr_write(struct vdisk_ptable *t);
bool mbr_is_protective(const uint8_t *sector0);
void mbr_chs(uint64_t lba, uint8_t out[3]);
uint64_t mbr_last_lba(const struct vdisk_ptable *t);

/* Sun, SGI and BSD disklabels, read only (formats/disklabel/disklabel.c).
 * Each probe looks at S0 (the first 1024 bytes of the disk) and returns
 * true when its label is there; each read fills T (0 or -errno). */
bool sun_probe(const uint8_t *s0);
bool sgi_probe(const uint8_t *s0);
bool bsd_probe(const uint8_t *s0);
int sun_read(struct vdisk_ptable *t, const uint8_t *s0, struct pt_report *findings);
int sgi_read(struct vdisk_ptable *t, const uint8_t *s0, struct pt_report *findings);
int bsd_read(struct vdisk_ptable *t, const uint8_t *s0, struct pt_report *findings);

/* sfdisk's name of a type of a table of KIND: CODE (MBR, sun, sgi, bsd) or
 * GUID (GPT); "unknown" when sfdisk has no name for it (types.c). */
const char *pt_type_name(int kind, uint32_t code, const char *guid);

/* GPT (formats/gpt/gpt.c). */
bool gpt_signature_at(struct vdisk_dev *disk, unsigned ss);
int gpt_read(struct vdisk_ptable *t, struct pt_report *findings);
int gpt_write(struct vdisk_ptable *t);
void gpt_init(struct vdisk_ptable *t);
uint64_t gpt_array_sectors(const struct vdisk_ptable *t);
int gpt_repair(struct vdisk_dev *disk, unsigned ss, struct pt_report *fixes);

#endif /* VDISK_PART_INTERNAL_H */
