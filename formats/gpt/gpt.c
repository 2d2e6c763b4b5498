/* SPDX-License-Identifier: MIT */
/*
 * formats/gpt/gpt.c: GUID partition tables (UEFI specification, chapter 5).
 *
 * LBA 0 holds a protective MBR (one entry of type 0xEE), LBA 1 the primary
 * header, the primary entry array follows it; the backup array and then
 * the backup header sit at the end of the disk.  A header (little-endian):
 *
 *    0  "EFI PART"          40  last usable LBA
 *    8  revision 1.0        48  disk GUID
 *   12  header size (92)    64  entry array LBA
 *   16  header CRC32        72  number of entries
 *   20  reserved            76  entry size (128 * 2^n)
 *   24  this header's LBA   80  entry array CRC32
 *   32  the other's LBA     84  reserved (to the end of the sector)
 *
 * An entry: type GUID, unique GUID, first LBA, last LBA (inclusive),
 * attributes, 36 UTF-16LE units of name.  Every field read is checked
 * against the disk's size; the entry array is at most GPT_MAX_ARRAY_BYTES.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../part/part.h"

#define GPT_SIG "EFI PART"
#define GPT_HDR_SIZE 92u
#define GPT_REVISION 0x00010000u

struct gpt_hdr {
    uint32_t hsize, n, esize, array_crc;
    uint64_t my, alt, first, last, array_lba;
    uint8_t guid[16];
};

static uint32_t crc(const void *buf, size_t len)
{
    uint32_t c = (uint32_t)crc32(0, Z_NULL, 0);
    const uint8_t *p = buf;
    while (len) { /* zlib takes uInt lengths */
        uInt n = len > (1u << 30) ? 1u << 30 : (uInt)len;
        c = (uint32_t)crc32(c, p, n);
        p += n;
        len -= n;
    }
    return c;
}

bool gpt_signature_at(struct vdisk_dev *disk, unsigned ss)
{
    char sig[8];
    if (dev_size(disk) < 2ull * ss || dev_pread(disk, sig, 8, ss) < 0)
        return false;
    return memcmp(sig, GPT_SIG, 8) == 0;
}

static uint64_t array_sectors(uint64_t bytes, unsigned ss)
{
    return (bytes + ss - 1) / ss;
}

uint64_t gpt_array_sectors(const struct vdisk_ptable *t)
{
    return array_sectors((uint64_t)t->nentries * t->entry_size, t->ss);
}

/*
 * Reads and checks the header at LBA.  Returns 0 (valid), 1 (invalid:
 * WHY says why), or a negative I/O error.
 */
static int read_header(const struct vdisk_ptable *t, uint64_t lba, struct gpt_hdr *h, char *why,
                       size_t whylen)
{
    if (lba >= t->sectors) {
        snprintf(why, whylen, "its LBA %" PRIu64 " lies beyond the disk (%" PRIu64 " sectors)",
                 lba, t->sectors);
        return 1;
    }
    uint8_t *s = malloc(t->ss);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    int r = pt_read(t, s, lba, 1);
    if (r < 0)
        goto out;
    r = 1;
    if (memcmp(s, GPT_SIG, 8) != 0) {
        snprintf(why, whylen, "no \"EFI PART\" signature at sector %" PRIu64, lba);
        goto out;
    }
    h->hsize = le32_load(s + 12);
    if (h->hsize < GPT_HDR_SIZE || h->hsize > t->ss) {
        snprintf(why, whylen, "header size %" PRIu32 " is outside %u-%u", h->hsize,
                 GPT_HDR_SIZE, t->ss);
        goto out;
    }
    uint32_t stored = le32_load(s + 16);
    le32_store(s + 16, 0);
    uint32_t calc = crc(s, h->hsize);
    if (stored != calc) {
        snprintf(why, whylen, "header CRC32 0x%08" PRIx32 " does not match its contents"
                 " (0x%08" PRIx32 ")", stored, calc);
        goto out;
    }
    h->my = le64_load(s + 24);
    h->alt = le64_load(s + 32);
    h->first = le64_load(s + 40);
    h->last = le64_load(s + 48);
    memcpy(h->guid, s + 56, 16);
    h->array_lba = le64_load(s + 72);
    h->n = le32_load(s + 80);
    h->esize = le32_load(s + 84);
    h->array_crc = le32_load(s + 88);
    if (h->my != lba) {
        snprintf(why, whylen, "it says it lies at sector %" PRIu64 ", not %" PRIu64, h->my, lba);
        goto out;
    }
    if (h->first > h->last || h->last >= t->sectors) {
        snprintf(why, whylen, "usable sectors %" PRIu64 "-%" PRIu64 " do not fit in the disk"
                 " (%" PRIu64 " sectors)", h->first, h->last, t->sectors);
        goto out;
    }
    if (h->esize < 128 || h->esize > GPT_MAX_ENTRY_SIZE || (h->esize & (h->esize - 1))) {
        snprintf(why, whylen, "entry size %" PRIu32 " is not a power of two from 128 to %u",
                 h->esize, GPT_MAX_ENTRY_SIZE);
        goto out;
    }
    uint64_t bytes = (uint64_t)h->n * h->esize;
    if (h->n == 0 || h->n > GPT_MAX_ENTRIES || bytes > GPT_MAX_ARRAY_BYTES) {
        snprintf(why, whylen, "%" PRIu32 " entries of %" PRIu32 " bytes: expected 1-%u entries"
                 " and at most %u bytes", h->n, h->esize, GPT_MAX_ENTRIES, GPT_MAX_ARRAY_BYTES);
        goto out;
    }
    uint64_t as = array_sectors(bytes, t->ss);
    if (h->array_lba < 1 || h->array_lba > t->sectors || as > t->sectors - h->array_lba) {
        snprintf(why, whylen, "the entry array (%" PRIu64 " sectors at %" PRIu64 ") lies beyond"
                 " the disk (%" PRIu64 " sectors)", as, h->array_lba, t->sectors);
        goto out;
    }
    r = 0;
out:
    free(s);
    return r;
}

/* Reads the array of H; returns 0 (CRC good), 1 (bad, WHY), or -errno. */
static int read_array(const struct vdisk_ptable *t, const struct gpt_hdr *h, uint8_t **arr,
                      char *why, size_t whylen)
{
    uint64_t as = array_sectors((uint64_t)h->n * h->esize, t->ss);
    *arr = malloc((size_t)(as * t->ss));
    if (!*arr)
        return err_set(-ENOMEM, "out of memory");
    int r = pt_read(t, *arr, h->array_lba, as);
    if (r < 0) {
        free(*arr);
        *arr = NULL;
        return r;
    }
    uint32_t c = crc(*arr, (size_t)h->n * h->esize);
    if (c != h->array_crc) {
        snprintf(why, whylen, "entry array CRC32 0x%08" PRIx32 " does not match its contents"
                 " (0x%08" PRIx32 ")", h->array_crc, c);
        return 1;
    }
    return 0;
}

static int load_entries(struct vdisk_ptable *t, const struct gpt_hdr *h, const uint8_t *arr,
                        struct pt_report *f)
{
    t->first_usable = h->first;
    t->last_usable = h->last;
    t->nentries = h->n;
    t->entry_size = h->esize;
    memcpy(t->disk_guid, h->guid, 16);
    for (uint32_t i = 0; i < h->n; i++) {
        const uint8_t *e = arr + (size_t)i * h->esize;
        if (guid_is_zero(e))
            continue;
        uint64_t first = le64_load(e + 32), last = le64_load(e + 40);
        if (first > last) {
            pt_report(f, "Partition %" PRIu32 " ends (sector %" PRIu64 ") before it starts"
                      " (sector %" PRIu64 ").", i + 1, last, first);
            continue;
        }
        struct pt_part *p = pt_insert(t, i + 1);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        memcpy(p->type_guid, e, 16);
        memcpy(p->uuid, e + 16, 16);
        p->start = first;
        p->size = last - first + 1; /* first <= last: no wrap except the whole range */
        p->attrs = le64_load(e + 48);
        utf16le_to_utf8(e + 56, 36, p->name, sizeof p->name);
    }
    return 0;
}

static bool same_header(const struct gpt_hdr *a, const struct gpt_hdr *b)
{
    return a->first == b->first && a->last == b->last && a->n == b->n && a->esize == b->esize &&
           a->array_crc == b->array_crc && memcmp(a->guid, b->guid, 16) == 0 &&
           a->alt == b->my && b->alt == a->my;
}

int gpt_read(struct vdisk_ptable *t, struct pt_report *f)
{
    const char *fn = t->disk->filename;
    struct gpt_hdr ph, bh;
    char pwhy[200] = "", bwhy[200] = "";
    uint8_t *parr = NULL, *barr = NULL;
    int ret;
    uint8_t *s0 = malloc(t->ss);
    if (!s0)
        return err_set(-ENOMEM, "out of memory");
    ret = pt_read(t, s0, 0, 1);
    if (ret < 0)
        goto out;
    if (!mbr_is_protective(s0))
        pt_report(f, "The protective MBR is missing (no entry of type 0xEE in sector 0).");
    memcpy(t->boot_code, s0, 440);
    t->mbr_id = le32_load(s0 + 440);

    int pst = read_header(t, 1, &ph, pwhy, sizeof pwhy);
    if (pst < 0) {
        ret = pst;
        goto out;
    }
    if (pst == 0) {
        pst = read_array(t, &ph, &parr, pwhy, sizeof pwhy);
        if (pst < 0) {
            ret = pst;
            goto out;
        }
    }
    /* The backup: where the primary says, else at the end of the disk. */
    uint64_t blba = t->sectors - 1;
    if (pst == 0 || (pst == 1 && parr))
        blba = ph.alt;
    int bst = read_header(t, blba, &bh, bwhy, sizeof bwhy);
    if (bst == 1 && blba != t->sectors - 1) {
        char why2[200];
        if (read_header(t, t->sectors - 1, &bh, why2, sizeof why2) == 0)
            bst = 0, blba = t->sectors - 1;
    }
    if (bst < 0) {
        ret = bst;
        goto out;
    }
    if (bst == 0) {
        bst = read_array(t, &bh, &barr, bwhy, sizeof bwhy);
        if (bst < 0) {
            ret = bst;
            goto out;
        }
    }
    if (pst == 0 && bst == 0 && !same_header(&ph, &bh))
        pt_report(f, "The primary and backup GPT headers disagree.");
    if (pst == 0 && bst == 0 && parr && barr &&
        memcmp(parr, barr, (size_t)ph.n * ph.esize) != 0 && ph.n == bh.n && ph.esize == bh.esize)
        pt_report(f, "The primary and backup entry arrays differ.");
    const struct gpt_hdr *use = pst == 0 ? &ph : bst == 0 ? &bh : NULL;
    if (!use) {
        ret = err_set(-EINVAL, "%s: both GPT headers are damaged: primary: %s; backup: %s", fn,
                      pwhy, bwhy);
        goto out;
    }
    if (pst)
        pt_report(f, "The primary GPT header is damaged: %s.", pwhy);
    if (bst)
        pt_report(f, "The backup GPT header is damaged: %s.", bwhy);
    if (use->alt != t->sectors - 1 && use == &ph)
        pt_report(f, "The backup GPT header is at sector %" PRIu64 ", not at the end of the disk"
                  " (sector %" PRIu64 "): the disk grew?", use->alt, t->sectors - 1);
    else if (use == &bh && blba != t->sectors - 1)
        pt_report(f, "The backup GPT header is at sector %" PRIu64 ", not at the end of the disk"
                  " (sector %" PRIu64 ").", blba, t->sectors - 1);
    t->backup_lba = use == &ph ? ph.alt : blba;
    ret = load_entries(t, use, use == &ph ? parr : barr, f);
    /* Where the rewritten primary array goes. */
    t->entries_lba = use == &ph ? ph.array_lba : 2;
    if (use != &ph) {
        uint64_t end = 2 + gpt_array_sectors(t);
        if (t->first_usable < end)
            t->entries_lba = 2;
    }
out:
    free(s0);
    free(parr);
    free(barr);
    return ret;
}

void gpt_init(struct vdisk_ptable *t)
{
    t->nentries = 128;
    t->entry_size = 128;
    t->entries_lba = 2;
    uint64_t as = gpt_array_sectors(t);
    t->first_usable = 2 + as;
    t->last_usable = t->sectors >= 3 + 2 * as ? t->sectors - 2 - as : 0;
    /* As sfdisk: partitions from the first aligned sector (2048 with
     * 512-byte sectors) when the disk has room for it. */
    if (t->first_usable < t->grain && t->grain < t->last_usable)
        t->first_usable = t->grain;
    guid_random(t->disk_guid);
}

static void put_header(const struct vdisk_ptable *t, uint8_t *s, uint64_t my, uint64_t alt,
                       uint64_t array_lba, uint32_t array_crc)
{
    memset(s, 0, t->ss);
    memcpy(s, GPT_SIG, 8);
    le32_store(s + 8, GPT_REVISION);
    le32_store(s + 12, GPT_HDR_SIZE);
    le64_store(s + 24, my);
    le64_store(s + 32, alt);
    le64_store(s + 40, t->first_usable);
    le64_store(s + 48, t->last_usable);
    memcpy(s + 56, t->disk_guid, 16);
    le64_store(s + 72, array_lba);
    le32_store(s + 80, t->nentries);
    le32_store(s + 84, t->entry_size);
    le32_store(s + 88, array_crc);
    le32_store(s + 16, crc(s, GPT_HDR_SIZE));
}

int gpt_write(struct vdisk_ptable *t)
{
    uint64_t as = gpt_array_sectors(t);
    uint64_t last = t->sectors - 1;
    if (t->sectors < 3 + 2 * as)
        return err_set(-EINVAL, "%s: the disk (%" PRIu64 " sectors) is too small for a GPT",
                       t->disk->filename, t->sectors);
    uint64_t barray = last - as;
    if (t->entries_lba + as > t->first_usable || t->last_usable >= barray ||
        t->first_usable > t->last_usable)
        return err_set(-EINVAL, "%s: usable sectors %" PRIu64 "-%" PRIu64 " overlap the entry"
                       " arrays (sectors %" PRIu64 "-%" PRIu64 " and %" PRIu64 "-%" PRIu64 ")",
                       t->disk->filename, t->first_usable, t->last_usable, t->entries_lba,
                       t->entries_lba + as - 1, barray, last - 1);
    size_t abytes = (size_t)(as * t->ss);
    uint8_t *arr = calloc(1, abytes), *s = calloc(1, t->ss);
    int r = 0;
    if (!arr || !s) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct pt_part *p = &t->parts[i];
        if (p->number < 1 || p->number > t->nentries)
            continue;
        uint8_t *e = arr + (size_t)(p->number - 1) * t->entry_size;
        memcpy(e, p->type_guid, 16);
        memcpy(e + 16, p->uuid, 16);
        le64_store(e + 32, p->start);
        le64_store(e + 40, p->start + p->size - 1);
        le64_store(e + 48, p->attrs);
        utf8_to_utf16le(p->name, e + 56, 36);
    }
    uint32_t acrc = crc(arr, (size_t)t->nentries * t->entry_size);
    /* Protective MBR: the boot code is kept. */
    memcpy(s, t->boot_code, 440);
    le32_store(s + 440, t->mbr_id);
    uint64_t psize = last > UINT32_MAX ? UINT32_MAX : last;
    uint8_t *e = s + 446;
    e[2] = 0x02; /* CHS 0/0/2: LBA 1 */
    e[4] = 0xee;
    e[5] = e[6] = e[7] = 0xff; /* the end's CHS: "beyond", as sfdisk writes it */
    le32_store(e + 8, 1);
    le32_store(e + 12, (uint32_t)psize);
    s[510] = 0x55;
    s[511] = 0xaa;
    if ((r = pt_write(t, s, 0, 1)) < 0)
        goto out;
    /* Backup first: a crash between leaves a valid primary or a valid backup. */
    if ((r = pt_write(t, arr, barray, as)) < 0)
        goto out;
    put_header(t, s, last, 1, barray, acrc);
    if ((r = pt_write(t, s, last, 1)) < 0)
        goto out;
    if ((r = pt_write(t, arr, t->entries_lba, as)) < 0)
        goto out;
    put_header(t, s, 1, last, t->entries_lba, acrc);
    r = pt_write(t, s, 1, 1);
out:
    free(arr);
    free(s);
    return r;
}

static void count_line(void *opaque, const char *line)
{
    struct pt_report *fixes = opaque;
    pt_report(fixes, "Fixed: %s", line);
}

int gpt_repair(struct vdisk_dev *disk, unsigned ss, struct pt_report *fixes)
{
    struct vdisk_ptable *t = pt_alloc(disk, VDISK_PT_GPT, ss);
    if (!t)
        return err_set(-ENOMEM, "out of memory");
    struct pt_report found = {.fn = count_line, .opaque = fixes};
    int r = gpt_read(t, &found);
    if (r == 0 && found.count) {
        uint64_t as = gpt_array_sectors(t);
        uint64_t max_last = t->sectors >= 3 + 2 * as ? t->sectors - 2 - as : 0;
        if (t->last_usable > max_last)
            r = err_set(-EINVAL, "%s: the usable sectors end at %" PRIu64 ", beyond where the"
                        " backup array must start on a disk of %" PRIu64 " sectors",
                        disk->filename, t->last_usable, t->sectors);
        else {
            if (t->backup_lba != t->sectors - 1)
                t->last_usable = max_last; /* the backup moves to the end: use the room */
            r = gpt_write(t);
        }
    }
    vdisk_part_free(t);
    return r < 0 ? r : found.count;
}
