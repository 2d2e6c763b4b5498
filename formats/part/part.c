/* SPDX-License-Identifier: MIT */
/*
 * formats/part/part.c: the public partition calls (vdisk/part.h): finding
 * and reading a table, editing it in memory (free space, alignment,
 * numbering), writing it, verify and repair, partitions as devices.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "part.h"

static bool is_extended(uint8_t t)
{
    return t == 0x05 || t == 0x0f || t == 0x85;
}

static const char *dev_name(const struct vdisk_dev *d)
{
    return d->filename ? d->filename : "(device)";
}

/* ---- Reading ---------------------------------------------------------------- */

/* Finds and reads the table; FINDINGS collects what verify reports. */
static int part_load(struct vdisk_ptable **out, struct vdisk_dev *disk, unsigned ss,
                     struct pt_report *findings)
{
    *out = NULL;
    if (!disk)
        return err_set(-EINVAL, "no device");
    if (ss != 0 && ss != 512 && ss != 4096)
        return err_set(-EINVAL, "%s: sector size %u: expected 512 or 4096", dev_name(disk), ss);
    unsigned cand[2] = {512, 4096};
    if (disk->block_size == 4096)
        cand[0] = 4096, cand[1] = 512;
    if (ss)
        cand[0] = cand[1] = ss;
    if (dev_size(disk) < cand[0])
        return err_set(-ENODATA, "%s: no partition table: the device (%" PRIu64 " bytes) is"
                       " smaller than one sector", dev_name(disk), dev_size(disk));
    /* As sfdisk (libfdisk), blkid and the kernel: a sector 0 with 0x55AA
     * is a GPT's protective MBR only with an 0xEE entry; without one it is
     * an MBR ("dos"), whatever follows (hybrid ISOs keep a GPT beside the
     * MBR that firmware and the kernel ignore).  Without 0x55AA a GPT
     * header still makes a GPT (sfdisk would not list it, vdisk repairs
     * it); then BSD, SGI and Sun labels, in libfdisk's order. */
    uint8_t s0[1024];
    memset(s0, 0, sizeof s0);
    uint64_t head = dev_size(disk) < sizeof s0 ? dev_size(disk) : sizeof s0;
    int r = dev_pread(disk, s0, (size_t)head, 0);
    if (r < 0)
        return r;
    bool sig = s0[510] == 0x55 && s0[511] == 0xaa;
    int kind = 0;
    unsigned use = cand[0];
    if (sig) {
        kind = mbr_is_protective(s0) ? VDISK_PT_GPT : VDISK_PT_MBR;
        for (int i = 0; i < 2 && kind == VDISK_PT_GPT; i++)
            if (gpt_signature_at(disk, cand[i])) {
                use = cand[i];
                break;
            }
    } else {
        for (int i = 0; i < 2 && !kind; i++)
            if (gpt_signature_at(disk, cand[i]))
                kind = VDISK_PT_GPT, use = cand[i];
        if (!kind && head >= 1024 && bsd_probe(s0))
            kind = VDISK_PT_BSD;
        else if (!kind && sgi_probe(s0))
            kind = VDISK_PT_SGI;
        else if (!kind && sun_probe(s0))
            kind = VDISK_PT_SUN;
        if (!kind)
            return err_set(-ENODATA, "%s: no partition table (no 0x55AA signature in sector 0,"
                           " no GPT header, no Sun, SGI or BSD disklabel)", dev_name(disk));
    }
    struct vdisk_ptable *t = pt_alloc(disk, kind, use);
    if (!t)
        return err_set(-ENOMEM, "out of memory");
    if (kind == VDISK_PT_GPT) {
        r = t->sectors < 3 ? err_set(-EINVAL, "%s: the disk is too small for a GPT",
                                     dev_name(disk))
                           : gpt_read(t, findings);
    } else if (kind == VDISK_PT_MBR) {
        uint8_t *s = malloc(t->ss);
        r = s ? pt_read(t, s, 0, 1) : err_set(-ENOMEM, "out of memory");
        if (r == 0)
            r = mbr_read(t, s, findings);
        free(s);
    } else {
        r = kind == VDISK_PT_BSD ? bsd_read(t, s0, findings)
          : kind == VDISK_PT_SGI ? sgi_read(t, s0, findings) : sun_read(t, s0, findings);
    }
    if (r < 0) {
        vdisk_part_free(t);
        return r;
    }
    *out = t;
    return 0;
}

VDISK_EXPORT int vdisk_part_read(vdisk_ptable **out, vdisk_dev *disk, unsigned sector_size)
{
    err_enter(__func__);
    return part_load(out, disk, sector_size, NULL);
}

VDISK_EXPORT int vdisk_part_new(vdisk_ptable **out, vdisk_dev *disk, int kind,
                                unsigned sector_size)
{
    err_enter(__func__);
    *out = NULL;
    if (!disk)
        return err_set(-EINVAL, "no device");
    if (kind != VDISK_PT_MBR && kind != VDISK_PT_GPT)
        return err_set(-EINVAL, "unknown table kind %d", kind);
    unsigned ss = sector_size ? sector_size : disk->block_size == 4096 ? 4096 : 512;
    if (ss != 512 && ss != 4096)
        return err_set(-EINVAL, "%s: sector size %u: expected 512 or 4096", dev_name(disk), ss);
    struct vdisk_ptable *t = pt_alloc(disk, kind, ss);
    if (!t)
        return err_set(-ENOMEM, "out of memory");
    if (kind == VDISK_PT_MBR) {
        t->mbr_id = random_u32();
        if (t->sectors < 2) {
            vdisk_part_free(t);
            return err_set(-EINVAL, "%s: the disk is too small for a partition table",
                           dev_name(disk));
        }
    } else {
        gpt_init(t);
        if (t->sectors < 3 + 2 * gpt_array_sectors(t)) {
            vdisk_part_free(t);
            return err_set(-EINVAL, "%s: the disk (%" PRIu64 " bytes) is too small for a GPT",
                           dev_name(disk), dev_size(disk));
        }
    }
    *out = t;
    return 0;
}

VDISK_EXPORT void vdisk_part_free(vdisk_ptable *t)
{
    if (!t)
        return;
    dev_unref(t->disk);
    free(t->parts);
    free(t);
}

VDISK_EXPORT int vdisk_part_kind(const vdisk_ptable *t)
{
    return t->kind;
}

VDISK_EXPORT const char *vdisk_part_label_name(const vdisk_ptable *t)
{
    switch (t->kind) {
    case VDISK_PT_MBR: return "dos";
    case VDISK_PT_GPT: return "gpt";
    case VDISK_PT_SUN: return "sun";
    case VDISK_PT_SGI: return "sgi";
    default: return "bsd";
    }
}

VDISK_EXPORT const char *vdisk_part_type_name(const vdisk_ptable *t,
                                              const struct vdisk_partition *p)
{
    return pt_type_name(t->kind, p->mbr_type, p->type_guid);
}

VDISK_EXPORT uint64_t vdisk_part_grain(const vdisk_ptable *t)
{
    return t->grain * t->ss;
}

VDISK_EXPORT void vdisk_part_geometry(const vdisk_ptable *t, unsigned *heads, unsigned *sectors,
                                      uint64_t *cylinders)
{
    if (t->heads || t->track || t->cylinders) {
        *heads = t->heads;
        *sectors = t->track;
        *cylinders = t->cylinders;
    } else {
        *heads = 255;
        *sectors = 63;
        *cylinders = t->sectors / (255 * 63);
    }
}

/* Sun, SGI and BSD labels are listed, never edited. */
static bool read_only_kind(const vdisk_ptable *t)
{
    return t->kind != VDISK_PT_MBR && t->kind != VDISK_PT_GPT;
}

static int refuse_edit(const vdisk_ptable *t)
{
    return err_set(-ENOTSUP, "%s: %s disklabels are read-only in vdisk", dev_name(t->disk),
                   vdisk_part_label_name(t));
}

VDISK_EXPORT unsigned vdisk_part_sector_size(const vdisk_ptable *t)
{
    return t->ss;
}

VDISK_EXPORT uint64_t vdisk_part_disk_sectors(const vdisk_ptable *t)
{
    return t->sectors;
}

VDISK_EXPORT int vdisk_part_get_id(const vdisk_ptable *t, char *buf, size_t len)
{
    err_enter(__func__);
    char tmp[40];
    if (t->kind == VDISK_PT_MBR)
        snprintf(tmp, sizeof tmp, "0x%08" PRIx32, t->mbr_id);
    else if (t->kind == VDISK_PT_GPT)
        guid_to_str(t->disk_guid, tmp);
    else
        tmp[0] = '\0'; /* sun, sgi, bsd: none */
    if (strlen(tmp) >= len)
        return err_set(-ERANGE, "the buffer (%zu bytes) is too small", len);
    strcpy(buf, tmp);
    return 0;
}

VDISK_EXPORT int vdisk_part_set_id(vdisk_ptable *t, const char *id)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    if (t->kind == VDISK_PT_GPT) {
        if (guid_from_str(id, t->disk_guid) < 0)
            return err_set(-EINVAL, "'%s' is not a GUID", id);
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(id, &end, 16);
    if (!*id || *end || errno || v > UINT32_MAX || id[0] == '-')
        return err_set(-EINVAL, "'%s' is not a 32-bit hexadecimal disk identifier", id);
    t->mbr_id = (uint32_t)v;
    return 0;
}

VDISK_EXPORT void vdisk_part_usable(const vdisk_ptable *t, uint64_t *first, uint64_t *last)
{
    if (t->kind == VDISK_PT_GPT) {
        *first = t->first_usable;
        *last = t->last_usable;
    } else {
        *first = 1;
        *last = mbr_last_lba(t);
    }
}

VDISK_EXPORT int vdisk_part_set_usable(vdisk_ptable *t, uint64_t first, uint64_t last)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    if (t->kind != VDISK_PT_GPT)
        return err_set(-EINVAL, "MBR tables have no usable range to set");
    uint64_t as = gpt_array_sectors(t);
    if (first < t->entries_lba + as || first > last || t->sectors < 2 + as ||
        last > t->sectors - 2 - as)
        return err_set(-EINVAL, "%s: usable sectors %" PRIu64 "-%" PRIu64 ": expected a range"
                       " within %" PRIu64 "-%" PRIu64, dev_name(t->disk), first, last,
                       t->entries_lba + as, t->sectors >= 2 + as ? t->sectors - 2 - as : 0);
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].start < first || t->parts[i].start + t->parts[i].size - 1 > last)
            return err_set(-EINVAL, "%s: partition %u would lie outside usable sectors %" PRIu64
                           "-%" PRIu64, dev_name(t->disk), t->parts[i].number, first, last);
    t->first_usable = first;
    t->last_usable = last;
    return 0;
}

VDISK_EXPORT unsigned vdisk_part_entries(const vdisk_ptable *t)
{
    return t->kind == VDISK_PT_GPT ? t->nentries : 4;
}

VDISK_EXPORT int vdisk_part_set_entries(vdisk_ptable *t, unsigned count)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    if (t->kind != VDISK_PT_GPT)
        return err_set(-ENOTSUP, "MBR tables have 4 entries");
    if (count < 1 || count > GPT_MAX_ENTRIES ||
        (uint64_t)count * t->entry_size > GPT_MAX_ARRAY_BYTES)
        return err_set(-EINVAL, "%u entries: expected 1-%u", count, GPT_MAX_ENTRIES);
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].number > count)
            return err_set(-EINVAL, "partition %u needs at least %u entries", t->parts[i].number,
                           t->parts[i].number);
    uint64_t old_as = gpt_array_sectors(t);
    uint32_t old = t->nentries;
    t->nentries = count;
    uint64_t as = gpt_array_sectors(t);
    uint64_t first = t->first_usable, last = t->last_usable;
    /* The usable range follows the arrays when it touched them. */
    if (first == t->entries_lba + old_as || first < t->entries_lba + as)
        first = t->entries_lba + as;
    if (last + 2 + old_as == t->sectors || last + 2 + as > t->sectors)
        last = t->sectors >= 2 + as ? t->sectors - 2 - as : 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].start < first || t->parts[i].start + t->parts[i].size - 1 > last) {
            t->nentries = old;
            return err_set(-EINVAL, "%u entries: partition %u would no longer fit", count,
                           t->parts[i].number);
        }
    t->first_usable = first;
    t->last_usable = last;
    return 0;
}

VDISK_EXPORT size_t vdisk_part_count(const vdisk_ptable *t)
{
    return t->n;
}

/* Fills the library's full structure *P (copied to the caller's with abi_copy_out). */
static void export_part(const vdisk_ptable *t, const struct pt_part *s, struct vdisk_partition *p)
{
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->number = s->number;
    p->start = s->start;
    p->size = s->size;
    if (t->kind == VDISK_PT_MBR) {
        p->mbr_type = s->mbr_type;
        p->bootable = s->bootable;
        p->logical = s->number > 4;
    } else if (t->kind != VDISK_PT_GPT) {
        p->mbr_type = s->code;
        memcpy(p->flags, s->flags, sizeof p->flags);
        p->whole_disk = s->whole;
        p->fsize = s->fsize;
        p->bsize = s->bsize;
        p->cpg = s->cpg;
    } else {
        guid_to_str(s->type_guid, p->type_guid);
        guid_to_str(s->uuid, p->uuid);
        memcpy(p->name, s->name, sizeof p->name);
        p->attrs = s->attrs;
    }
}

VDISK_EXPORT int vdisk_part_get(const vdisk_ptable *t, size_t index, struct vdisk_partition *p)
{
    err_enter(__func__);
    size_t have;
    int r = ABI_SIZE(vdisk_partition, p, VDISK_PARTITION_SIZE_V1, &have);
    if (r < 0)
        return r;
    if (index >= t->n)
        return err_set(-ERANGE, "index %zu: the table has %zu partitions", index, t->n);
    struct vdisk_partition full;
    export_part(t, &t->parts[index], &full);
    abi_copy_out(p, &full, have, sizeof full);
    return 0;
}

VDISK_EXPORT int vdisk_part_find(const vdisk_ptable *t, unsigned number, struct vdisk_partition *p)
{
    err_enter(__func__);
    size_t have;
    int r = ABI_SIZE(vdisk_partition, p, VDISK_PARTITION_SIZE_V1, &have);
    if (r < 0)
        return r;
    const struct pt_part *s = pt_lookup(t, number);
    if (!s)
        return err_set(-ENOENT, "%s: there is no partition %u", dev_name(t->disk), number);
    struct vdisk_partition full;
    export_part(t, s, &full);
    abi_copy_out(p, &full, have, sizeof full);
    return 0;
}

/* ---- Free space --------------------------------------------------------------- */

struct span {
    uint64_t a, b;
};

static int span_cmp(const void *x, const void *y)
{
    const struct span *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a;
}

static const struct pt_part *mbr_extended(const vdisk_ptable *t)
{
    for (unsigned i = 1; i <= 4; i++) {
        const struct pt_part *p = pt_lookup(t, i);
        if (p && p->size && is_extended(p->mbr_type))
            return p;
    }
    return NULL;
}

/* The areas taken at the level of a (logical or not) partition, except SKIP's. */
static struct span *level_spans(const vdisk_ptable *t, bool logical, unsigned skip, size_t *n)
{
    struct span *s = malloc((t->n + 1) * sizeof *s);
    *n = 0;
    if (!s)
        return NULL;
    for (size_t i = 0; i < t->n; i++) {
        const struct pt_part *p = &t->parts[i];
        if (p->number == skip || !p->size)
            continue;
        if (t->kind == VDISK_PT_MBR && (p->number > 4) != logical)
            continue;
        s[*n].a = logical && p->ebr && p->ebr < p->start ? p->ebr : p->start;
        s[*n].b = p->start + p->size - 1;
        (*n)++;
    }
    qsort(s, *n, sizeof *s, span_cmp);
    return s;
}

static const struct span *busy_at(const struct span *s, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].a <= x && x <= s[i].b)
            return &s[i];
    return NULL;
}

static uint64_t next_after(const struct span *s, size_t n, uint64_t x)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (s[i].a > x && s[i].a < best)
            best = s[i].a;
    return best;
}

/* The range a partition of this level may use. */
static int level_range(const vdisk_ptable *t, bool logical, uint64_t *lo, uint64_t *hi)
{
    if (t->kind == VDISK_PT_GPT) {
        *lo = t->first_usable;
        *hi = t->last_usable;
    } else if (logical) {
        const struct pt_part *e = mbr_extended(t);
        if (!e)
            return err_set(-EINVAL, "%s: a logical partition needs an extended partition",
                           dev_name(t->disk));
        *lo = e->start;
        *hi = e->start + e->size - 1;
    } else {
        *lo = 1;
        *hi = mbr_last_lba(t);
    }
    if (*lo > *hi)
        return err_set(-ENOSPC, "%s: no usable sectors", dev_name(t->disk));
    return 0;
}

static int parse_type(vdisk_ptable *t, const char *type, uint8_t *mbr, uint8_t guid[16])
{
    static const struct { const char *alias; uint8_t mbr; const char *guid; } aliases[] = {
        {"L", 0x83, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
        {"S", 0x82, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"},
        {"E", 0x05, NULL},
        {"X", 0x85, NULL},
        {"U", 0xef, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
        {"R", 0xfd, "A19D880F-05FC-4D3B-A006-743F0F84911E"},
        {"V", 0x8e, "E6D6D379-F507-44C2-A23C-238F2A3DF928"},
        {"H", 0, "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (strcmp(type, aliases[i].alias) != 0)
            continue;
        if (t->kind == VDISK_PT_MBR && aliases[i].mbr) {
            *mbr = aliases[i].mbr;
            return 0;
        }
        if (t->kind == VDISK_PT_GPT && aliases[i].guid)
            return guid_from_str(aliases[i].guid, guid);
        break;
    }
    if (t->kind == VDISK_PT_GPT) {
        if (guid_from_str(type, guid) < 0 || guid_is_zero(guid))
            return err_set(-EINVAL, "'%s' is not a GPT partition type (a GUID or L, S, U, R, V,"
                           " H)", type);
        return 0;
    }
    const char *h = type;
    if (h[0] == '0' && (h[1] == 'x' || h[1] == 'X'))
        h += 2;
    char *end;
    unsigned long v = strtoul(h, &end, 16);
    if (!*h || *end || strlen(h) > 2 || v == 0 || h[0] == '-' || h[0] == '+')
        return err_set(-EINVAL, "'%s' is not an MBR partition type (a hex byte or L, S, E, X,"
                       " U, R, V)", type);
    *mbr = (uint8_t)v;
    return 0;
}

static struct pt_part *find_part(const vdisk_ptable *t, unsigned number, int *err)
{
    struct pt_part *p = pt_lookup(t, number);
    if (!p)
        *err = err_set(-ENOENT, "%s: there is no partition %u", dev_name(t->disk), number);
    return p;
}

static unsigned last_logical(const vdisk_ptable *t)
{
    unsigned last = 4;
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].number > last)
            last = t->parts[i].number;
    return last;
}

static int part_add(vdisk_ptable *t, struct vdisk_partition *p)
{
    const char *fn = dev_name(t->disk);
    struct pt_part np;
    memset(&np, 0, sizeof np);
    int r;
    /* The fields. */
    if (t->kind == VDISK_PT_MBR) {
        np.mbr_type = p->mbr_type ? (uint8_t)p->mbr_type : 0x83;
        if (p->mbr_type > 0xff)
            return err_set(-EINVAL, "MBR type 0x%x is not a byte", p->mbr_type);
        np.bootable = p->bootable != 0;
    } else {
        if (p->type_guid[0]) {
            if (guid_from_str(p->type_guid, np.type_guid) < 0 || guid_is_zero(np.type_guid))
                return err_set(-EINVAL, "'%s' is not a partition type GUID", p->type_guid);
        } else {
            guid_from_str("0FC63DAF-8483-4772-8E79-3D69D8477DE4", np.type_guid);
        }
        if (p->uuid[0]) {
            if (guid_from_str(p->uuid, np.uuid) < 0)
                return err_set(-EINVAL, "'%s' is not a GUID", p->uuid);
        } else {
            guid_random(np.uuid);
        }
        uint8_t tmp[72];
        if (memchr(p->name, 0, sizeof p->name) == NULL || utf8_to_utf16le(p->name, tmp, 36) < 0)
            return err_set(-EINVAL, "the name is not UTF-8 of at most 36 UTF-16 units");
        memcpy(np.name, p->name, sizeof np.name);
        np.attrs = p->attrs;
    }
    /* Which level and number. */
    bool logical = false;
    const struct pt_part *ext = t->kind == VDISK_PT_MBR ? mbr_extended(t) : NULL;
    unsigned number = p->number;
    if (t->kind == VDISK_PT_GPT) {
        if (number == 0) {
            for (unsigned i = 1; i <= t->nentries && !number; i++)
                if (!pt_lookup(t, i))
                    number = i;
            if (!number)
                return err_set(-ENOSPC, "%s: all %" PRIu32 " entries are in use", fn,
                               t->nentries);
        } else if (number > t->nentries) {
            return err_set(-EINVAL, "%s: partition %u: the table has %" PRIu32 " entries", fn,
                           number, t->nentries);
        }
    } else {
        bool in_ext = ext && p->start >= ext->start && p->start <= ext->start + ext->size - 1;
        if (number >= 5 || (number == 0 && (p->logical || in_ext)))
            logical = true;
        else if (number == 0) {
            for (unsigned i = 1; i <= 4 && !number; i++)
                if (!pt_lookup(t, i))
                    number = i;
            if (!number) {
                if (!ext)
                    return err_set(-ENOSPC, "%s: all four primary entries are in use and there"
                                   " is no extended partition", fn);
                logical = true;
            }
        }
        if (logical) {
            if (number && number != last_logical(t) + 1)
                return err_set(-EINVAL, "%s: the next logical partition is %u, not %u", fn,
                               last_logical(t) + 1, number);
            number = last_logical(t) + 1;
            if (is_extended(np.mbr_type))
                return err_set(-EINVAL, "%s: a logical partition cannot be extended", fn);
        } else if (is_extended(np.mbr_type) && ext) {
            return err_set(-EINVAL, "%s: there is already an extended partition (%u)", fn,
                           ext->number);
        }
    }
    if (pt_lookup(t, number))
        return err_set(-EEXIST, "%s: partition %u already exists", fn, number);
    uint64_t lo, hi;
    if ((r = level_range(t, logical, &lo, &hi)) < 0)
        return r;
    size_t ns;
    struct span *s = level_spans(t, logical, 0, &ns);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    uint64_t start = p->start, ebr = 0;
    const struct span *b;
    r = 0;
    if (!logical) {
        if (!start) {
            start = align_up(lo > t->grain ? lo : t->grain, t->grain);
            while (start <= hi && (b = busy_at(s, ns, start)))
                start = align_up(b->b + 1, t->grain);
            if (start > hi)
                r = err_set(-ENOSPC, "%s: no free space is left", fn);
        } else if (start < lo || start > hi) {
            r = err_set(-EINVAL, "%s: start sector %" PRIu64 " lies outside the usable sectors %"
                        PRIu64 "-%" PRIu64, fn, start, lo, hi);
        } else if ((b = busy_at(s, ns, start))) {
            r = err_set(-EBUSY, "%s: start sector %" PRIu64 " lies in a partition (sectors %"
                        PRIu64 "-%" PRIu64 ")", fn, start, b->a, b->b);
        }
    } else if (!start) {
        uint64_t f = lo;
        for (;;) {
            if ((b = busy_at(s, ns, f))) {
                f = b->b + 1;
                continue;
            }
            start = align_up(f + 1, t->grain);
            if (f > hi || start > hi) {
                r = err_set(-ENOSPC, "%s: no free space is left in the extended partition", fn);
                break;
            }
            uint64_t nx = next_after(s, ns, f);
            if (nx <= start) {
                f = nx;
                continue;
            }
            ebr = f;
            break;
        }
    } else {
        if (start <= lo || start > hi)
            r = err_set(-EINVAL, "%s: start sector %" PRIu64 " lies outside sectors %" PRIu64
                        "-%" PRIu64 " of the extended partition (after its EBR)", fn, start,
                        lo + 1, hi);
        else if ((b = busy_at(s, ns, start)))
            r = err_set(-EBUSY, "%s: start sector %" PRIu64 " lies in a partition (sectors %"
                        PRIu64 "-%" PRIu64 ")", fn, start, b->a, b->b);
        else {
            uint64_t prev = lo; /* the first free sector before START */
            for (size_t i = 0; i < ns; i++)
                if (s[i].b < start && s[i].b + 1 > prev)
                    prev = s[i].b + 1;
            if (start >= t->grain && start - t->grain >= prev)
                ebr = start - t->grain;
            else if (start - 1 >= prev)
                ebr = start - 1;
            else
                r = err_set(-EBUSY, "%s: no free sector before %" PRIu64 " for the EBR", fn,
                            start);
            if (!last_logical(t) || last_logical(t) == 4)
                ebr = lo; /* the chain starts at the extended partition */
            if (r == 0 && ebr == lo && busy_at(s, ns, lo))
                r = err_set(-EBUSY, "%s: the first EBR's sector %" PRIu64 " is in use", fn, lo);
        }
    }
    uint64_t size = p->size;
    if (r == 0) {
        uint64_t nx = next_after(s, ns, start);
        uint64_t limit = nx != UINT64_MAX && nx - 1 < hi ? nx - 1 : hi;
        if (!size && t->kind == VDISK_PT_GPT && limit == hi) {
            /* As libfdisk: the default end of a GPT partition that reaches
             * the last usable sector is aligned down to the grain (then
             * one sector before it), else one sector before the last. */
            uint64_t g = t->grain, a = start, z = hi, end;
            if (a + g <= z) {
                a = a % g ? (a + g) / g * g : a;
                z = z / g * g;
            }
            end = a + g > z ? hi - 1 : z - 1;
            size = end >= start ? end - start + 1 : limit - start + 1;
        } else if (!size) {
            size = limit - start + 1;
        } else if (size - 1 > limit - start)
            r = err_set(nx - 1 < hi ? -EBUSY : -EINVAL, "%s: %" PRIu64 " sectors at %" PRIu64
                        " do not fit: free space ends at sector %" PRIu64, fn, size, start,
                        limit);
    }
    if (r == 0 && t->kind == VDISK_PT_MBR && (start > UINT32_MAX || size > UINT32_MAX))
        r = err_set(-EINVAL, "%s: MBR cannot address %" PRIu64 " sectors at %" PRIu64, fn, size,
                    start);
    free(s);
    if (r < 0)
        return r;
    struct pt_part *q = pt_insert(t, number);
    if (!q)
        return err_set(-ENOMEM, "out of memory");
    np.number = number;
    np.start = start;
    np.size = size;
    np.ebr = ebr;
    *q = np;
    export_part(t, q, p);
    return 0;
}

VDISK_EXPORT int vdisk_part_add(vdisk_ptable *t, struct vdisk_partition *p)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    /* The caller's fields, defaults (0) for those its version lacks. */
    struct vdisk_partition in = {.struct_size = sizeof in};
    int r = ABI_IN(vdisk_partition, &in, p, VDISK_PARTITION_SIZE_V1);
    if (r < 0)
        return r;
    size_t have = in.struct_size;
    struct vdisk_partition q = in;
    r = part_add(t, &q);
    /* MBR: with no room left among the primary partitions, a logical one. */
    if (r == -ENOSPC && t->kind == VDISK_PT_MBR && !in.number && !in.logical && !in.start &&
        mbr_extended(t) && !is_extended((uint8_t)in.mbr_type)) {
        q = in;
        q.logical = 1;
        r = part_add(t, &q);
    }
    if (r == 0)
        abi_copy_out(p, &q, have, sizeof q);
    return r;
}

VDISK_EXPORT int vdisk_part_delete(vdisk_ptable *t, unsigned number)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    if (t->kind == VDISK_PT_MBR && number <= 4 && is_extended(p->mbr_type)) {
        while (t->n && t->parts[t->n - 1].number > 4)
            t->n--;
    } else if (t->kind == VDISK_PT_MBR && number > 4) {
        for (size_t i = 0; i < t->n; i++)
            if (t->parts[i].number > number)
                t->parts[i].number--;
    }
    p = pt_lookup(t, number);
    pt_remove(t, p);
    return 0;
}

VDISK_EXPORT int vdisk_part_resize(vdisk_ptable *t, unsigned number, uint64_t size)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    bool logical = t->kind == VDISK_PT_MBR && number > 4;
    uint64_t lo, hi;
    if ((r = level_range(t, logical, &lo, &hi)) < 0)
        return r;
    size_t ns;
    struct span *s = level_spans(t, logical, number, &ns);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    uint64_t nx = next_after(s, ns, p->start);
    free(s);
    uint64_t limit = nx != UINT64_MAX && nx - 1 < hi ? nx - 1 : hi;
    if (p->start > limit)
        return err_set(-EINVAL, "%s: partition %u starts outside the usable sectors",
                       dev_name(t->disk), number);
    if (!size)
        size = limit - p->start + 1;
    if (size - 1 > limit - p->start)
        return err_set(nx - 1 < hi ? -EBUSY : -EINVAL, "%s: partition %u cannot grow to %"
                       PRIu64 " sectors: free space ends at sector %" PRIu64, dev_name(t->disk),
                       number, size, limit);
    if (t->kind == VDISK_PT_MBR && size > UINT32_MAX)
        return err_set(-EINVAL, "%s: MBR cannot address %" PRIu64 " sectors", dev_name(t->disk),
                       size);
    if (t->kind == VDISK_PT_MBR && !logical && is_extended(p->mbr_type)) {
        for (size_t i = 0; i < t->n; i++)
            if (t->parts[i].number > 4 &&
                t->parts[i].start + t->parts[i].size > p->start + size)
                return err_set(-EBUSY, "%s: the extended partition must hold logical partition"
                               " %u (up to sector %" PRIu64 ")", dev_name(t->disk),
                               t->parts[i].number, t->parts[i].start + t->parts[i].size - 1);
    }
    p->size = size;
    return 0;
}

VDISK_EXPORT int vdisk_part_set_type(vdisk_ptable *t, unsigned number, const char *type)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    uint8_t mbr = 0, guid[16];
    if ((r = parse_type(t, type, &mbr, guid)) < 0)
        return r;
    if (t->kind == VDISK_PT_GPT) {
        memcpy(p->type_guid, guid, 16);
        return 0;
    }
    if (is_extended(mbr) != is_extended(p->mbr_type)) {
        if (number > 4 || (is_extended(mbr) && mbr_extended(t)) || last_logical(t) > 4)
            return err_set(-EINVAL, "%s: partition %u cannot become or stop being the extended"
                           " partition here", dev_name(t->disk), number);
    }
    p->mbr_type = mbr;
    return 0;
}

VDISK_EXPORT int vdisk_part_set_name(vdisk_ptable *t, unsigned number, const char *name)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    if (t->kind != VDISK_PT_GPT)
        return err_set(-ENOTSUP, "MBR partitions have no names");
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    uint8_t tmp[72];
    if (strlen(name) > VDISK_PART_NAME_MAX || utf8_to_utf16le(name, tmp, 36) < 0)
        return err_set(-EINVAL, "the name is not UTF-8 of at most 36 UTF-16 units");
    strcpy(p->name, name);
    return 0;
}

VDISK_EXPORT int vdisk_part_set_uuid(vdisk_ptable *t, unsigned number, const char *uuid)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    if (t->kind != VDISK_PT_GPT)
        return err_set(-ENOTSUP, "MBR partitions have no GUIDs");
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    if (guid_from_str(uuid, p->uuid) < 0)
        return err_set(-EINVAL, "'%s' is not a GUID", uuid);
    return 0;
}

VDISK_EXPORT int vdisk_part_set_bootable(vdisk_ptable *t, unsigned number, int on)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    if (t->kind != VDISK_PT_MBR)
        return err_set(-ENOTSUP, "GPT partitions have no bootable flag (see the"
                       " LegacyBIOSBootable attribute)");
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    p->bootable = on != 0;
    return 0;
}

VDISK_EXPORT int vdisk_part_set_attrs(vdisk_ptable *t, unsigned number, uint64_t attrs)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    int r = 0;
    if (t->kind != VDISK_PT_GPT)
        return err_set(-ENOTSUP, "MBR partitions have no attributes");
    struct pt_part *p = find_part(t, number, &r);
    if (!p)
        return r;
    p->attrs = attrs;
    return 0;
}

VDISK_EXPORT int vdisk_part_write(vdisk_ptable *t)
{
    err_enter(__func__);
    if (read_only_kind(t))
        return refuse_edit(t);
    if (!(t->disk->caps & VDISK_CAN_WRITE))
        return err_set(-EROFS, "%s: the device is read-only", dev_name(t->disk));
    int r = t->kind == VDISK_PT_MBR ? mbr_write(t) : gpt_write(t);
    if (r == 0)
        r = dev_flush(t->disk);
    return r;
}

/* ---- Verify and repair ------------------------------------------------------- */

static void check_ranges(const vdisk_ptable *t, struct pt_report *f)
{
    const struct pt_part *ext = t->kind == VDISK_PT_MBR ? mbr_extended(t) : NULL;
    for (size_t i = 0; i < t->n; i++) {
        const struct pt_part *p = &t->parts[i];
        if (!p->size) {
            pt_report(f, "Partition %u (at sector %" PRIu64 ") has no sectors.", p->number,
                      p->start);
            continue;
        }
        uint64_t end = p->start + p->size - 1;
        if (end < p->start || end >= t->sectors)
            pt_report(f, "Partition %u (sectors %" PRIu64 "-%" PRIu64 ") lies beyond the end of"
                      " the disk (%" PRIu64 " sectors).", p->number, p->start, end, t->sectors);
        else if (t->kind == VDISK_PT_GPT && (p->start < t->first_usable || end > t->last_usable))
            pt_report(f, "Partition %u (sectors %" PRIu64 "-%" PRIu64 ") lies outside the usable"
                      " sectors %" PRIu64 "-%" PRIu64 ".", p->number, p->start, end,
                      t->first_usable, t->last_usable);
        else if (t->kind == VDISK_PT_MBR && p->number > 4 && ext &&
                 (p->start <= ext->start || end > ext->start + ext->size - 1))
            pt_report(f, "Logical partition %u (sectors %" PRIu64 "-%" PRIu64 ") lies outside"
                      " the extended partition.", p->number, p->start, end);
        else if (t->kind == VDISK_PT_MBR && p->start == 0)
            pt_report(f, "Partition %u starts at sector 0, over the MBR.", p->number);
    }
}

VDISK_EXPORT int vdisk_part_verify(vdisk_dev *disk, unsigned sector_size,
                                   vdisk_part_report_fn report, void *opaque)
{
    err_enter(__func__);
    struct pt_report f = {.fn = report, .opaque = opaque};
    vdisk_ptable *t;
    int r = part_load(&t, disk, sector_size, &f);
    if (r == -EINVAL) {
        pt_report(&f, "%s", err_detail());
        return f.count;
    }
    if (r < 0)
        return r;
    check_ranges(t, &f);
    if (!read_only_kind(t)) /* sun/sgi/bsd: slices overlap by design */
        pt_check_overlaps(t, &f);
    vdisk_part_free(t);
    return f.count;
}

VDISK_EXPORT int vdisk_part_repair(vdisk_dev *disk, unsigned sector_size,
                                   vdisk_part_report_fn report, void *opaque)
{
    err_enter(__func__);
    vdisk_ptable *t;
    struct pt_report found = {0};
    int r = part_load(&t, disk, sector_size, &found);
    if (r < 0 && r != -EINVAL)
        return r;
    int kind = r == 0 ? t->kind : 0;
    unsigned ss = r == 0 ? t->ss : sector_size;
    if (r == 0) {
        check_ranges(t, &found);
        if (!read_only_kind(t))
            pt_check_overlaps(t, &found);
        vdisk_part_free(t);
    }
    if (kind == VDISK_PT_GPT) {
        if (!(disk->caps & VDISK_CAN_WRITE))
            return err_set(-EROFS, "%s: the device is read-only", dev_name(disk));
        struct pt_report fixes = {.fn = report, .opaque = opaque};
        r = gpt_repair(disk, ss, &fixes);
        if (r > 0 && (r = dev_flush(disk)) == 0)
            r = fixes.count;
        return r;
    }
    if (r < 0)
        return r; /* both GPT headers damaged, or an MBR that cannot be parsed */
    if (found.count)
        return err_set(-ENOTSUP, "%s: the MBR table has %d problem(s) that repair cannot fix"
                       " (see verify); edit the table", dev_name(disk), found.count);
    return 0;
}

/* ---- Partitions as devices ------------------------------------------------------- */

static int open_partition(vdisk_dev **out, vdisk_dev *disk, unsigned number, unsigned ss,
                          unsigned flags)
{
    *out = NULL;
    if (flags & ~VDISK_OPEN_RDONLY)
        return err_set(-EINVAL, "unknown flags 0x%x", flags & ~VDISK_OPEN_RDONLY);
    vdisk_ptable *t;
    int r = part_load(&t, disk, ss, NULL);
    if (r < 0)
        return r;
    const struct pt_part *p = pt_lookup(t, number);
    uint64_t off = 0, len = 0;
    if (!p)
        r = err_set(-ENOENT, "%s: there is no partition %u", dev_name(disk), number);
    else if (t->kind == VDISK_PT_MBR && number <= 4 && is_extended(p->mbr_type))
        r = err_set(-EINVAL, "%s: partition %u is the extended partition, a container of"
                    " logical partitions", dev_name(disk), number);
    else if (!p->size)
        r = err_set(-EINVAL, "%s: partition %u has no sectors", dev_name(disk), number);
    else if (p->start > UINT64_MAX / t->ss || p->size > UINT64_MAX / t->ss ||
             !range_inside(off = p->start * t->ss, len = p->size * t->ss, dev_size(disk)))
        r = err_set(-EINVAL, "%s: partition %u (sectors %" PRIu64 "+%" PRIu64 ") lies beyond"
                    " the end of the disk (%" PRIu64 " sectors)", dev_name(disk), number,
                    p->start, p->size, t->sectors);
    vdisk_part_free(t);
    if (r < 0)
        return r;
    r = vdisk_open_range(out, disk, off, len, flags);
    if (r < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_detail());
        err_enter(__func__);
        err_set(r, "%s", msg);
    }
    return r;
}

VDISK_EXPORT int vdisk_open_partition(vdisk_dev **out, vdisk_dev *disk, unsigned number,
                                      unsigned flags)
{
    err_enter(__func__);
    return open_partition(out, disk, number, 0, flags);
}

VDISK_EXPORT int vdisk_open_partition_ss(vdisk_dev **out, vdisk_dev *disk, unsigned number,
                                         unsigned sector_size, unsigned flags)
{
    err_enter(__func__);
    return open_partition(out, disk, number, sector_size, flags);
}
