/* SPDX-License-Identifier: MIT */
/*
 * formats/mbr/mbr.c: MBR partition tables (sfdisk's "dos" label).
 *
 * Sector 0 holds boot code, the 32-bit disk signature at byte 440, four
 * 16-byte entries at 446 and 0x55 0xAA at 510.  An entry: status (0x80
 * active), CHS of the first sector, type, CHS of the last sector, the first
 * sector (LBA, 32 bits) and the number of sectors (32 bits).
 *
 * Logical partitions live in the extended partition (type 0x05, 0x0f or
 * 0x85) as a chain of EBRs: each EBR's first entry is a logical partition,
 * its start relative to the EBR; its second entry points at the next EBR,
 * relative to the start of the extended partition.  The chain is followed
 * at most PT_MAX_LOGICAL links, every EBR must lie inside the extended
 * partition and a visited EBR ends the walk with an error (a loop).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../part/part.h"

#define MBR_ENTRY(i) (446 + 16 * (i))

static bool is_extended(uint8_t t)
{
    return t == 0x05 || t == 0x0f || t == 0x85;
}

bool mbr_is_protective(const uint8_t *s)
{
    if (s[510] != 0x55 || s[511] != 0xaa)
        return false;
    for (int i = 0; i < 4; i++)
        if (s[MBR_ENTRY(i) + 4] == 0xee)
            return true;
    return false;
}

/* The last sector an MBR can address: 2^32 - 1, or the disk's last one. */
uint64_t mbr_last_lba(const struct vdisk_ptable *t)
{
    uint64_t last = t->sectors ? t->sectors - 1 : 0;
    return last > UINT32_MAX ? UINT32_MAX : last;
}

/* CHS of LBA in a 255-head, 63-sector geometry; beyond cylinder 1023 the
 * conventional 1023/254/63. */
void mbr_chs(uint64_t lba, uint8_t out[3])
{
    uint64_t c = lba / (255 * 63), h = lba / 63 % 255, s = lba % 63 + 1;
    if (c > 1023) {
        c = 1023;
        h = 254;
        s = 63;
    }
    out[0] = (uint8_t)h;
    out[1] = (uint8_t)(s | (c >> 2 & 0xc0));
    out[2] = (uint8_t)c;
}

static void put_entry(uint8_t *e, uint8_t type, bool boot, uint64_t lba_abs, uint64_t start_rel,
                      uint64_t size)
{
    memset(e, 0, 16);
    if (!type && !size)
        return;
    e[0] = boot ? 0x80 : 0;
    mbr_chs(lba_abs, e + 1);
    e[4] = type;
    mbr_chs(size ? lba_abs + size - 1 : lba_abs, e + 5);
    le32_store(e + 8, (uint32_t)start_rel);
    le32_store(e + 12, (uint32_t)size);
}

static int read_chain(struct vdisk_ptable *t, const struct pt_part *ext, struct pt_report *f)
{
    const char *fn = t->disk->filename;
    uint64_t ext_end = ext->start + ext->size; /* exclusive */
    uint64_t *seen = malloc(PT_MAX_LOGICAL * sizeof *seen);
    uint8_t *buf = malloc(t->ss);
    int ret = 0;
    if (!seen || !buf) {
        ret = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    uint64_t cur = ext->start;
    unsigned number = 5;
    for (size_t links = 0;; links++) {
        if (links >= PT_MAX_LOGICAL) {
            ret = err_set(-EINVAL, "%s: the chain of EBRs goes on for more than %d links",
                          fn, PT_MAX_LOGICAL);
            goto out;
        }
        for (size_t i = 0; i < links; i++)
            if (seen[i] == cur) {
                ret = err_set(-EINVAL, "%s: the chain of EBRs loops: the EBR at sector %"
                              PRIu64 " links back to the EBR at sector %" PRIu64, fn,
                              links ? seen[links - 1] : cur, cur);
                goto out;
            }
        seen[links] = cur;
        if (cur < ext->start || cur >= ext_end || cur >= t->sectors) {
            ret = err_set(-EINVAL, "%s: an EBR link points to sector %" PRIu64 ", outside the"
                          " extended partition (sectors %" PRIu64 "-%" PRIu64 ") or the disk"
                          " (%" PRIu64 " sectors)", fn, cur, ext->start, ext_end - 1, t->sectors);
            goto out;
        }
        ret = pt_read(t, buf, cur, 1);
        if (ret < 0)
            goto out;
        if (buf[510] != 0x55 || buf[511] != 0xaa) {
            if (links > 0)
                pt_report(f, "The EBR at sector %" PRIu64 " has no 0x55AA signature.", cur);
            break; /* an extended partition without logical partitions */
        }
        /* As libfdisk picks them: the logical partition is the first
         * entry with sectors and a type that is not extended, the link the
         * first extended one with sectors; failing that, the first two
         * entries in their usual roles. */
        const uint8_t *e0 = NULL, *e1 = NULL, *q = buf + MBR_ENTRY(0);
        for (int i = 0; i < 4; i++) {
            const uint8_t *e = buf + MBR_ENTRY(i);
            if (!le32_load(e + 12))
                continue;
            if (is_extended(e[4]) && !e1)
                e1 = e;
            else if (!is_extended(e[4]) && e[4] && !e0)
                e0 = e;
        }
        if (!e0)
            e0 = q != e1 ? q : q + 16;
        if (!e1)
            e1 = q != e0 ? q : q + 16;
        uint32_t rel = le32_load(e0 + 8), size = le32_load(e0 + 12);
        if (size) { /* sfdisk lists a logical partition of type 0 too */
            uint64_t start = cur + rel;
            struct pt_part *p = pt_insert(t, number++);
            if (!p) {
                ret = err_set(-ENOMEM, "out of memory");
                goto out;
            }
            p->start = start;
            p->size = size;
            p->mbr_type = e0[4];
            p->bootable = e0[0] & 0x80;
            p->ebr = cur;
            if (rel == 0 || start + size > ext_end)
                pt_report(f, "Logical partition %u (sectors %" PRIu64 "-%" PRIu64 ") does not"
                          " lie inside the extended partition after its EBR (sector %" PRIu64
                          ").", p->number, start, start + size - 1, cur);
        }
        if (!is_extended(e1[4]) || !le32_load(e1 + 12))
            break;
        cur = ext->start + le32_load(e1 + 8);
    }
    ret = 0;
out:
    free(seen);
    free(buf);
    return ret;
}

int mbr_read(struct vdisk_ptable *t, const uint8_t *s, struct pt_report *f)
{
    memcpy(t->boot_code, s, 440);
    t->mbr_id = le32_load(s + 440);
    const struct pt_part *ext = NULL;
    for (int i = 0; i < 4; i++) {
        const uint8_t *e = s + MBR_ENTRY(i);
        uint32_t start = le32_load(e + 8), size = le32_load(e + 12);
        /* sfdisk lists every entry that is not all zero: of type 0 (the
         * hybrid ISOs' first entry) or of no sectors too. */
        static const uint8_t zero[16];
        if (memcmp(e, zero, 16) == 0)
            continue;
        struct pt_part *p = pt_insert(t, (unsigned)i + 1);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        p->start = start;
        p->size = size;
        p->mbr_type = e[4];
        p->bootable = e[0] & 0x80;
        if (e[0] & 0x7f)
            pt_report(f, "Partition %d has an invalid status byte 0x%02x.", i + 1, e[0]);
    }
    for (size_t i = 0; i < t->n; i++) {
        if (!is_extended(t->parts[i].mbr_type) || !t->parts[i].size)
            continue;
        if (ext) {
            pt_report(f, "Partition %u is a second extended partition; it is ignored.",
                      t->parts[i].number);
            continue;
        }
        ext = &t->parts[i];
    }
    if (ext) {
        struct pt_part e = *ext; /* pt_insert may move the array */
        return read_chain(t, &e, f);
    }
    return 0;
}

int mbr_write(struct vdisk_ptable *t)
{
    uint8_t *buf = calloc(1, t->ss);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    memcpy(buf, t->boot_code, 440);
    le32_store(buf + 440, t->mbr_id);
    const struct pt_part *ext = NULL;
    for (unsigned i = 1; i <= 4; i++) {
        const struct pt_part *p = pt_lookup(t, i);
        if (!p)
            continue;
        if (is_extended(p->mbr_type) && !ext)
            ext = p;
        put_entry(buf + MBR_ENTRY(i - 1), p->mbr_type, p->bootable, p->start, p->start, p->size);
    }
    buf[510] = 0x55;
    buf[511] = 0xaa;
    r = pt_write(t, buf, 0, 1);
    if (r < 0 || !ext)
        goto out;
    /* The chain: logical partitions in number order, the first EBR at the
     * start of the extended partition. */
    size_t first = t->n;
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].number > 4) {
            first = i;
            break;
        }
    if (first < t->n)
        t->parts[first].ebr = ext->start;
    if (first == t->n) {
        memset(buf, 0, t->ss);
        buf[510] = 0x55;
        buf[511] = 0xaa;
        r = pt_write(t, buf, ext->start, 1);
        goto out;
    }
    for (size_t i = first; i < t->n; i++) {
        const struct pt_part *p = &t->parts[i], *next = i + 1 < t->n ? &t->parts[i + 1] : NULL;
        memset(buf, 0, t->ss);
        put_entry(buf + MBR_ENTRY(0), p->mbr_type, p->bootable, p->start, p->start - p->ebr,
                  p->size);
        if (next)
            put_entry(buf + MBR_ENTRY(1), 0x05, false, next->ebr, next->ebr - ext->start,
                      next->start + next->size - next->ebr);
        buf[510] = 0x55;
        buf[511] = 0xaa;
        r = pt_write(t, buf, p->ebr, 1);
        if (r < 0)
            goto out;
    }
out:
    free(buf);
    return r;
}
