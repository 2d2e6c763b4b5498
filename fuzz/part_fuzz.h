/* SPDX-License-Identifier: MIT */
/*
 * fuzz/part_fuzz.h: what the partition-table harnesses (mbr.c, gpt.c,
 * disklabel.c)
 * share: the table on a memory device read (sector size found, then the
 * one given), listed, verified, edited, written and repaired, and each
 * partition opened as a device and read.
 */
#ifndef VDISK_PART_FUZZ_H
#define VDISK_PART_FUZZ_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MEM_LIMIT (64u << 20)

static inline void exercise(struct vdisk_dev *disk, unsigned ss)
{
    vdisk_ptable *t = NULL;
    vdisk_part_verify(disk, ss, NULL, NULL);
    if (vdisk_part_read(&t, disk, ss) == 0) {
        struct vdisk_partition p = {.struct_size = sizeof p};
        uint8_t buf[4096];
        unsigned heads, track;
        uint64_t cyls;
        vdisk_part_geometry(t, &heads, &track, &cyls);
        (void)vdisk_part_grain(t);
        (void)vdisk_part_label_name(t);
        for (size_t i = 0; i < vdisk_part_count(t) && i < 64; i++) {
            if (vdisk_part_get(t, i, &p) < 0)
                continue;
            if (!vdisk_part_type_name(t, &p))
                abort();
            vdisk_dev *part;
            if (vdisk_open_partition(&part, disk, p.number, VDISK_OPEN_RDONLY) == 0) {
                uint64_t n = vdisk_get_size(part) < sizeof buf ? vdisk_get_size(part)
                                                               : sizeof buf;
                vdisk_pread(part, buf, (size_t)n, 0);
                vdisk_close(part);
            }
        }
        /* Edits: add into free space, resize, retype and delete the first, write. */
        memset(&p, 0, sizeof p);
        vdisk_part_add(t, &p);
        if (vdisk_part_count(t) && vdisk_part_get(t, 0, &p) == 0) {
            vdisk_part_resize(t, p.number, 0);
            vdisk_part_set_type(t, p.number, "L");
            vdisk_part_delete(t, p.number);
        }
        int kind = vdisk_part_kind(t);
        if (vdisk_part_write(t) != -ENOTSUP && kind != VDISK_PT_MBR && kind != VDISK_PT_GPT)
            abort(); /* sun, sgi and bsd labels are read-only */
        vdisk_part_free(t);
    }
    vdisk_part_repair(disk, ss, NULL, NULL);
    vdisk_part_verify(disk, ss, NULL, NULL);
}

static inline int fuzz_part_table(const uint8_t *data, size_t size, unsigned sector_size)
{
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *disk;
    if (dev_open_memory(&disk, data, size, MEM_LIMIT, &p) < 0)
        return 0;
    exercise(disk, 0);
    exercise(disk, sector_size);
    dev_unref(disk);
    return 0;
}

#endif /* VDISK_PART_FUZZ_H */
