/* SPDX-License-Identifier: MIT */
/*
 * formats/vhdx/vhdx.c: the VHDX driver (Hyper-V images, [MS-VHDX]): probe,
 * open (headers, region tables, metadata, BAT), reads, writes, block
 * status, info, check.  The log is in log.c, creation in create.c.
 *
 * vdisk reads VHDX images as QEMU 7.2 does: fixed and dynamic images; and
 * differencing images, which QEMU refuses: their parent (parent.c) reads
 * where a block is not present, and where a partially present block's
 * sector bitmap (the chunk's, held in memory) has a clear bit.
 * It writes all three (see "Writes" below).  A writable open replays a
 * log left by a crash, as QEMU's does; a repair's (the open option
 * repair=on, which vdisk check -r gives) replays it too and leaves the
 * device read-only.
 *
 * Every offset and length an image gives is checked against the file's
 * length, the header section, and the other regions before it is used;
 * what vdisk cannot read is refused with the file, the place and what was
 * found, never guessed.
 *
 * Block status follows QEMU 7.2, whose VHDX driver has none: the whole
 * disk is data (qemu-img map shows it so, and no host offsets); in a
 * differencing image each layer answers for its part (this file's data
 * with its offsets, zero blocks, the parent's below).  Undefined and
 * unmapped blocks read zeroes, in a differencing image too.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "vhdx.h"

/* ---- CRC-32C -------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t vhdx_crc32c(const uint8_t *buf, size_t len, size_t skip)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = i >= skip && i < skip + 4 ? 0 : buf[i];
        c = crc_table[(c ^ b) & 0xff] ^ (c >> 8);
    }
    return ~c;
}

/* ---- GUIDs ---------------------------------------------------------------- */

/* A GUID as stored: Data1..3 little-endian, then 8 bytes. */
struct guid {
    uint32_t d1;
    uint16_t d2, d3;
    uint8_t d4[8];
};

static bool guid_is(const uint8_t *p, const struct guid *g)
{
    return le32_load(p) == g->d1 && le16_load(p + 4) == g->d2 && le16_load(p + 6) == g->d3 &&
           memcmp(p + 8, g->d4, 8) == 0;
}

static const struct guid bat_guid = {0x2dc27766, 0xf623, 0x4200,
                                     {0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08}};
static const struct guid metadata_guid = {0x8b7ca206, 0x4790, 0x4b9a,
                                          {0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e}};
static const struct guid file_param_guid = {0xcaa16737, 0xfa36, 0x4d43,
                                            {0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b}};
static const struct guid disk_size_guid = {0x2fa54224, 0xcd1b, 0x4876,
                                           {0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8}};
static const struct guid page83_guid = {0xbeca12ab, 0xb2e6, 0x4523,
                                        {0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46}};
static const struct guid logical_guid = {0x8141bf1d, 0xa96f, 0x4709,
                                         {0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f}};
static const struct guid physical_guid = {0xcda348c7, 0x445d, 0x4471,
                                          {0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56}};
static const struct guid locator_guid = {0xa8d35f2d, 0xb30b, 0x454d,
                                         {0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c}};

static int vhdx_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && memcmp(buf, "vhdxfile", 8) == 0 ? 100 : 0;
}

/* ---- Open: headers -------------------------------------------------------- */

/* Why the header in BUF is not valid (written to WHY), or NULL. */
static const char *header_invalid(const uint8_t *buf, char *why, size_t whylen)
{
    if (memcmp(buf + VHDX_H_SIGNATURE, "head", 4) != 0) {
        snprintf(why, whylen, "signature \"%.4s\", expected \"head\"",
                 (const char *)buf + VHDX_H_SIGNATURE);
        return why;
    }
    uint32_t want = le32_load(buf + VHDX_H_CHECKSUM);
    uint32_t got = vhdx_crc32c(buf, VHDX_HEADER_SIZE, VHDX_H_CHECKSUM);
    if (want != got) {
        snprintf(why, whylen, "CRC-32C 0x%08" PRIx32 " recorded, 0x%08" PRIx32 " computed",
                 want, got);
        return why;
    }
    if (le16_load(buf + VHDX_H_VERSION) != 1) {
        snprintf(why, whylen, "version %u, expected 1", le16_load(buf + VHDX_H_VERSION));
        return why;
    }
    return NULL;
}

static int read_headers(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    uint8_t *h[2] = {malloc(VHDX_HEADER_SIZE), malloc(VHDX_HEADER_SIZE)};
    char why[2][128];
    bool ok[2] = {false, false};
    int r = 0;
    if (!h[0] || !h[1])
        r = err_set(-ENOMEM, "out of memory");
    for (int i = 0; i < 2 && r == 0; i++) {
        uint64_t off = i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
        r = dev_pread(s->file, h[i], VHDX_HEADER_SIZE, off);
        ok[i] = r == 0 && !header_invalid(h[i], why[i], sizeof why[i]);
    }
    if (r == 0 && !ok[0] && !ok[1])
        r = err_set(-EINVAL, "%s: no valid VHDX header: header 1 (offset %u): %s; header 2 "
                    "(offset %u): %s", fn, VHDX_HEADER1_OFFSET, why[0], VHDX_HEADER2_OFFSET,
                    why[1]);
    if (r == 0) {
        uint64_t q0 = le64_load(h[0] + VHDX_H_SEQUENCE), q1 = le64_load(h[1] + VHDX_H_SEQUENCE);
        if (ok[0] && ok[1] && q0 == q1 && memcmp(h[0], h[1], VHDX_HEADER_SIZE) != 0)
            r = err_set(-EINVAL, "%s: both VHDX headers (offsets %u and %u) have sequence "
                        "number %" PRIu64 " but differ: which is current is unknown", fn,
                        VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET, q0);
        else
            s->cur = !ok[0] ? 1 : !ok[1] ? 0 : q1 > q0 ? 1 : 0;
    }
    if (r == 0)
        memcpy(s->header, h[s->cur], VHDX_HEADER_SIZE);
    free(h[0]);
    free(h[1]);
    if (r < 0)
        return r;
    uint64_t hoff = s->cur ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
    s->log_offset = le64_load(s->header + VHDX_H_LOG_OFFSET);
    s->log_length = le32_load(s->header + VHDX_H_LOG_LENGTH);
    if (le16_load(s->header + VHDX_H_LOG_VERSION) != 0)
        return err_set(-ENOTSUP, "%s: the VHDX header at offset %" PRIu64 " has log version "
                       "%u; vdisk reads version 0", fn, hoff,
                       le16_load(s->header + VHDX_H_LOG_VERSION));
    if (s->log_length % VHDX_MIB || s->log_offset % VHDX_MIB ||
        (s->log_length && (s->log_offset < VHDX_HEADER_SECTION ||
                           !range_inside(s->log_offset, s->log_length, s->fsize))))
        return err_set(-EINVAL, "%s: the VHDX header at offset %" PRIu64 " places the log at "
                       "offset %" PRIu64 " with length %" PRIu64 ": expected multiples of 1 "
                       "MiB past the header section (%" PRIu64 " bytes) inside the file (%"
                       PRIu64 " bytes)", fn, hoff, s->log_offset, s->log_length,
                       VHDX_HEADER_SECTION, s->fsize);
    return 0;
}

/* ---- Open: region table --------------------------------------------------- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

static const char *region_table_invalid(const uint8_t *rt, char *why, size_t whylen)
{
    if (memcmp(rt, "regi", 4) != 0) {
        snprintf(why, whylen, "signature \"%.4s\", expected \"regi\"", (const char *)rt);
        return why;
    }
    uint32_t want = le32_load(rt + 4), got = vhdx_crc32c(rt, VHDX_RT_SIZE, 4);
    if (want != got) {
        snprintf(why, whylen, "CRC-32C 0x%08" PRIx32 " recorded, 0x%08" PRIx32 " computed",
                 want, got);
        return why;
    }
    uint32_t n = le32_load(rt + 8);
    if (n > VHDX_RT_MAX_ENTRIES) {
        snprintf(why, whylen, "%" PRIu32 " entries, at most %u allowed", n,
                 VHDX_RT_MAX_ENTRIES);
        return why;
    }
    return NULL;
}

static int read_region_table(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    uint8_t *rt = malloc(VHDX_RT_SIZE);
    if (!rt)
        return err_set(-ENOMEM, "out of memory");
    char why[2][128];
    uint64_t rto = VHDX_RT1_OFFSET;
    int r = dev_pread(s->file, rt, VHDX_RT_SIZE, rto);
    if (r == 0 && region_table_invalid(rt, why[0], sizeof why[0])) {
        rto = VHDX_RT2_OFFSET;
        r = dev_pread(s->file, rt, VHDX_RT_SIZE, rto);
        if (r == 0 && region_table_invalid(rt, why[1], sizeof why[1]))
            r = err_set(-EINVAL, "%s: no valid VHDX region table: table 1 (offset %u): %s; "
                        "table 2 (offset %u): %s", fn, VHDX_RT1_OFFSET, why[0],
                        VHDX_RT2_OFFSET, why[1]);
    }
    uint32_t n = r == 0 ? le32_load(rt + 8) : 0;
    bool have_bat = false, have_md = false;
    uint64_t offs[VHDX_RT_MAX_ENTRIES], lens[VHDX_RT_MAX_ENTRIES];
    for (uint32_t i = 0; i < n && r == 0; i++) {
        const uint8_t *e = rt + 16 + (size_t)i * VHDX_RT_ENTRY_SIZE;
        uint64_t off = le64_load(e + 16), len = le32_load(e + 24);
        uint32_t flags = le32_load(e + 28);
        uint64_t eat = rto + 16 + (uint64_t)i * VHDX_RT_ENTRY_SIZE;
        offs[i] = off;
        lens[i] = len;
        if (off % VHDX_MIB || len % VHDX_MIB || len == 0 || off < VHDX_HEADER_SECTION ||
            !range_inside(off, len, s->fsize)) {
            r = err_set(-EINVAL, "%s: VHDX region table entry %" PRIu32 " (offset %" PRIu64
                        ") places a region at offset %" PRIu64 " with length %" PRIu64 ": "
                        "expected multiples of 1 MiB past the header section inside the "
                        "file (%" PRIu64 " bytes)", fn, i, eat, off, len, s->fsize);
            break;
        }
        if (overlaps(off, len, s->log_offset, s->log_length)) {
            r = err_set(-EINVAL, "%s: VHDX region table entry %" PRIu32 " (offset %" PRIu64
                        "): the region at offset %" PRIu64 " (%" PRIu64 " bytes) overlaps "
                        "the log at offset %" PRIu64 " (%" PRIu64 " bytes)", fn, i, eat, off,
                        len, s->log_offset, s->log_length);
            break;
        }
        for (uint32_t j = 0; j < i && r == 0; j++)
            if (overlaps(off, len, offs[j], lens[j]))
                r = err_set(-EINVAL, "%s: VHDX region table entry %" PRIu32 " (offset %"
                            PRIu64 "): the region at offset %" PRIu64 " (%" PRIu64 " bytes) "
                            "overlaps that of entry %" PRIu32 " at offset %" PRIu64 " (%"
                            PRIu64 " bytes)", fn, i, eat, off, len, j, offs[j], lens[j]);
        if (r < 0)
            break;
        bool is_bat = guid_is(e, &bat_guid), is_md = guid_is(e, &metadata_guid);
        if ((is_bat && have_bat) || (is_md && have_md)) {
            r = err_set(-EINVAL, "%s: VHDX region table entry %" PRIu32 " (offset %" PRIu64
                        ") names the %s region a second time", fn, i, eat,
                        is_bat ? "BAT" : "metadata");
        } else if (is_bat) {
            have_bat = true;
            s->bat_offset = off;
            s->bat_length = len;
        } else if (is_md) {
            have_md = true;
            s->md_offset = off;
            s->md_length = len;
        } else if (flags & VHDX_REGION_REQUIRED) {
            r = err_set(-ENOTSUP, "%s: VHDX region table entry %" PRIu32 " (offset %" PRIu64
                        ") names a required region vdisk does not know (GUID %08" PRIx32
                        "-%04x-%04x-...); the image cannot be read", fn, i, eat,
                        le32_load(e), le16_load(e + 4), le16_load(e + 6));
        }
    }
    if (r == 0 && (!have_bat || !have_md))
        r = err_set(-EINVAL, "%s: the VHDX region table at offset %" PRIu64 " has no %s "
                    "region", fn, rto, !have_bat ? "BAT" : "metadata");
    free(rt);
    return r;
}

/* ---- Open: metadata ------------------------------------------------------- */

struct md_item {
    const struct guid *g;
    const char *name;
    uint32_t len;           /* the item's size; 0: any */
    bool required;
    uint64_t off;           /* in the file, once found */
    uint32_t found_len;
    bool found;
};

static int read_item(struct vhdx *s, const struct md_item *it, void *buf)
{
    return dev_pread(s->file, buf, it->len, it->off);
}

static int read_metadata(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    if (s->md_length < VHDX_MD_TABLE_SIZE)
        return err_set(-EINVAL, "%s: the VHDX metadata region at offset %" PRIu64 " has %"
                       PRIu64 " bytes, less than its table's %u", fn, s->md_offset,
                       s->md_length, VHDX_MD_TABLE_SIZE);
    uint8_t *t = malloc(VHDX_MD_TABLE_SIZE);
    if (!t)
        return err_set(-ENOMEM, "out of memory");
    struct md_item items[] = {
        {&file_param_guid, "file parameters", 8, true, 0, 0, false},
        {&disk_size_guid, "virtual disk size", 8, true, 0, 0, false},
        {&page83_guid, "page 83 data", 16, true, 0, 0, false},
        {&logical_guid, "logical sector size", 4, true, 0, 0, false},
        {&physical_guid, "physical sector size", 4, true, 0, 0, false},
        {&locator_guid, "parent locator", 0, false, 0, 0, false},
    };
    const size_t nitems = sizeof items / sizeof items[0];
    int r = dev_pread(s->file, t, VHDX_MD_TABLE_SIZE, s->md_offset);
    if (r == 0 && memcmp(t, "metadata", 8) != 0)
        r = err_set(-EINVAL, "%s: the VHDX metadata table at offset %" PRIu64 " has "
                    "signature \"%.8s\", expected \"metadata\"", fn, s->md_offset,
                    (const char *)t);
    uint16_t n = r == 0 ? le16_load(t + 10) : 0;
    if (r == 0 && n > VHDX_MD_MAX_ENTRIES)
        r = err_set(-EINVAL, "%s: the VHDX metadata table at offset %" PRIu64 " has %u "
                    "entries, at most %u allowed", fn, s->md_offset, n, VHDX_MD_MAX_ENTRIES);
    for (uint16_t i = 0; i < n && r == 0; i++) {
        const uint8_t *e = t + 32 + (size_t)i * VHDX_MD_ENTRY_SIZE;
        uint64_t eat = s->md_offset + 32 + (uint64_t)i * VHDX_MD_ENTRY_SIZE;
        uint32_t off = le32_load(e + 16), len = le32_load(e + 20), flags = le32_load(e + 24);
        size_t k = 0;
        while (k < nitems && !guid_is(e, items[k].g))
            k++;
        if (k == nitems) {
            if (flags & VHDX_MD_IS_REQUIRED)
                r = err_set(-ENOTSUP, "%s: VHDX metadata entry %u (offset %" PRIu64 ") is a "
                            "required item vdisk does not know (GUID %08" PRIx32 "-%04x-%04x-"
                            "...); the image cannot be read", fn, i, eat, le32_load(e),
                            le16_load(e + 4), le16_load(e + 6));
            continue;
        }
        struct md_item *it = &items[k];
        if (it->found) {
            r = err_set(-EINVAL, "%s: VHDX metadata entry %u (offset %" PRIu64 ") names the %s "
                        "a second time", fn, i, eat, it->name);
        } else if ((it->len && len != it->len) || (len && off < VHDX_MD_TABLE_SIZE) ||
                   !range_inside(off, len, s->md_length)) {
            r = err_set(-EINVAL, "%s: VHDX metadata entry %u (offset %" PRIu64 "): the %s "
                        "item is at offset %" PRIu32 " with length %" PRIu32 "; expected %s%"
                        PRIu32 " bytes past the table (%u bytes) inside the metadata region "
                        "(%" PRIu64 " bytes)", fn, i, eat, it->name, off, len,
                        it->len ? "" : "at most ", it->len ? it->len : len,
                        VHDX_MD_TABLE_SIZE, s->md_length);
        } else {
            it->found = true;
            it->off = s->md_offset + off;
            it->found_len = len;
        }
    }
    free(t);
    for (size_t k = 0; k < nitems && r == 0; k++)
        if (items[k].required && !items[k].found)
            r = err_set(-EINVAL, "%s: the VHDX metadata table at offset %" PRIu64 " has no %s "
                        "item", fn, s->md_offset, items[k].name);
    if (r < 0)
        return r;
    uint8_t b[16];
    if ((r = read_item(s, &items[0], b)) < 0)
        return r;
    s->block_size = le32_load(b);
    s->params = le32_load(b + 4);
    if ((r = read_item(s, &items[1], b)) < 0)
        return r;
    s->size = le64_load(b);
    if ((r = read_item(s, &items[2], s->page83)) < 0)
        return r;
    if ((r = read_item(s, &items[3], b)) < 0)
        return r;
    s->logical_sector = le32_load(b);
    if ((r = read_item(s, &items[4], b)) < 0)
        return r;
    s->physical_sector = le32_load(b);
    uint32_t bs = s->block_size;
    if (bs < VHDX_MIN_BLOCK || bs > VHDX_MAX_BLOCK || (bs & (bs - 1)))
        return err_set(-EINVAL, "%s: the VHDX file parameters (offset %" PRIu64 ") give block "
                       "size %" PRIu32 "; expected a power of two from 1 MiB to 256 MiB", fn,
                       items[0].off, bs);
    if (s->logical_sector != 512 && s->logical_sector != 4096)
        return err_set(-EINVAL, "%s: the VHDX logical sector size (offset %" PRIu64 ") is %"
                       PRIu32 "; expected 512 or 4096", fn, items[3].off, s->logical_sector);
    if (s->physical_sector != 512 && s->physical_sector != 4096)
        return err_set(-EINVAL, "%s: the VHDX physical sector size (offset %" PRIu64 ") is %"
                       PRIu32 "; expected 512 or 4096", fn, items[4].off, s->physical_sector);
    if (s->size > VHDX_MAX_SIZE || s->size % s->logical_sector)
        return err_set(-EINVAL, "%s: the VHDX virtual disk size (offset %" PRIu64 ") is %"
                       PRIu64 "; expected a multiple of the logical sector size (%" PRIu32
                       ") up to 64 TiB", fn, items[1].off, s->size, s->logical_sector);
    if (s->params & VHDX_PARAM_HAS_PARENT) {
        if (!items[5].found)
            return err_set(-EINVAL, "%s: the VHDX file parameters (offset %" PRIu64 ") say "
                           "the image has a parent, but the metadata has no parent locator",
                           fn, items[0].off);
        if ((r = vhdx_read_locator(s, items[5].off, items[5].found_len)) < 0)
            return r;
    }
    s->chunk_ratio = (UINT64_C(1) << 23) * s->logical_sector / bs;
    return 0;
}

/* ---- Open: BAT ------------------------------------------------------------ */

/* The sector bitmaps of the chunks that have partially present blocks
 * (differencing images), into memory. */
static int read_bitmaps(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    s->sb = calloc(s->chunks ? s->chunks : 1, sizeof *s->sb);
    if (!s->sb)
        return err_set(-ENOMEM, "out of memory");
    uint64_t total = 0;
    for (uint64_t c = 0; c < s->chunks; c++) {
        uint64_t first = c * (s->chunk_ratio + 1), sbi = first + s->chunk_ratio;
        bool need = false;
        for (uint64_t i = first; i < sbi && !need; i++)
            need = (s->bat[i] & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_PARTIALLY_PRESENT;
        if (!need)
            continue;
        uint64_t e = s->bat[sbi], off = e & VHDX_BAT_OFFSET_MASK;
        uint64_t eat = s->bat_offset + 8 * sbi;
        if ((e & VHDX_BAT_STATE_MASK) != VHDX_SB_PRESENT)
            return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64 "): chunk %"
                           PRIu64 " has partially present blocks but its sector bitmap has "
                           "state %u, not present (6)", fn, sbi, eat, c,
                           (unsigned)(e & VHDX_BAT_STATE_MASK));
        if (off < VHDX_HEADER_SECTION || !range_inside(off, VHDX_SB_SIZE, s->fsize) ||
            overlaps(off, VHDX_SB_SIZE, s->log_offset, s->log_length) ||
            overlaps(off, VHDX_SB_SIZE, s->bat_offset, s->bat_length) ||
            overlaps(off, VHDX_SB_SIZE, s->md_offset, s->md_length))
            return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64 ") places "
                           "the sector bitmap of chunk %" PRIu64 " at offset %" PRIu64 ", not "
                           "inside the file (%" PRIu64 " bytes) clear of the header section, "
                           "the log, the BAT and the metadata", fn, sbi, eat, c, off, s->fsize);
        total += VHDX_SB_SIZE;
        if (total > VHDX_MAX_BITMAP_BYTES)
            return err_set(-EFBIG, "%s: the VHDX image's sector bitmaps in use exceed vdisk's "
                           "limit of %" PRIu64 " bytes", fn, VHDX_MAX_BITMAP_BYTES);
        s->sb[c] = malloc(VHDX_SB_SIZE);
        if (!s->sb[c])
            return err_set(-ENOMEM, "out of memory for a sector bitmap");
        int r = dev_pread(s->file, s->sb[c], VHDX_SB_SIZE, off);
        if (r < 0)
            return r;
    }
    return 0;
}

static int read_bat(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    bool diff = s->params & VHDX_PARAM_HAS_PARENT;
    s->data_blocks = (s->size + s->block_size - 1) / s->block_size;
    s->chunks = (s->data_blocks + s->chunk_ratio - 1) / s->chunk_ratio;
    if (diff)
        s->bat_entries = s->chunks * (s->chunk_ratio + 1);
    else
        s->bat_entries = s->data_blocks ? s->data_blocks + (s->data_blocks - 1) / s->chunk_ratio
                                        : 0;
    uint64_t bytes = s->bat_entries * 8;
    if (bytes > s->bat_length)
        return err_set(-EINVAL, "%s: the VHDX BAT region at offset %" PRIu64 " has %" PRIu64
                       " bytes; the disk's %" PRIu64 " bytes in blocks of %" PRIu32 " need %"
                       PRIu64, fn, s->bat_offset, s->bat_length, s->size, s->block_size,
                       bytes);
    if (bytes > VHDX_MAX_BAT_BYTES)
        return err_set(-EFBIG, "%s: the VHDX BAT has %" PRIu64 " bytes, more than vdisk's "
                       "limit of %" PRIu64, fn, bytes, VHDX_MAX_BAT_BYTES);
    s->bat = malloc(bytes ? bytes : 8);
    if (!s->bat)
        return err_set(-ENOMEM, "out of memory for a BAT of %" PRIu64 " bytes", bytes);
    int r = bytes ? dev_pread(s->file, s->bat, bytes, s->bat_offset) : 0;
    if (r < 0)
        return r;
    for (uint64_t i = 0; i < s->bat_entries; i++) {
        uint64_t e = le64_load(&s->bat[i]);
        s->bat[i] = e;
        unsigned state = e & VHDX_BAT_STATE_MASK;
        uint64_t eat = s->bat_offset + 8 * i;
        if ((i + 1) % (s->chunk_ratio + 1) == 0) {
            /* A sector bitmap entry: meaningful only with a parent. */
            if (state != VHDX_SB_NOT_PRESENT && state != VHDX_SB_PRESENT)
                return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64
                               ", a sector bitmap entry) has state %u; expected 0 or 6", fn, i,
                               eat, state);
            continue;
        }
        uint64_t blk = i - i / (s->chunk_ratio + 1);
        switch (state) {
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_ZERO:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_UNMAPPED_V095:
            continue;
        case VHDX_PAYLOAD_FULLY_PRESENT:
            break;
        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
            if (diff)
                break;
            return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64 ") says "
                           "block %" PRIu64 " is partially present, which only a "
                           "differencing image may say", fn, i, eat, blk);
        default:
            return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64 ") has "
                           "state %u, which no payload block has", fn, i, eat, state);
        }
        uint64_t off = e & VHDX_BAT_OFFSET_MASK;
        uint64_t len = s->size - blk * s->block_size;
        if (len > s->block_size)
            len = s->block_size;
        if (off < VHDX_HEADER_SECTION || !range_inside(off, len, s->fsize))
            return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64 ") places "
                           "block %" PRIu64 " (%" PRIu64 " bytes) at offset %" PRIu64 ", not "
                           "inside the file (%" PRIu64 " bytes) past the header section: the "
                           "image has probably been truncated", fn, i, eat, blk, len, off,
                           s->fsize);
        const char *what = overlaps(off, len, s->log_offset, s->log_length) ? "the log"
                           : overlaps(off, len, s->bat_offset, s->bat_length) ? "the BAT"
                           : overlaps(off, len, s->md_offset, s->md_length) ? "the metadata "
                                                                              "region"
                                                                            : NULL;
        if (what)
            return err_set(-EINVAL, "%s: VHDX BAT entry %" PRIu64 " (offset %" PRIu64 ") places "
                           "block %" PRIu64 " (%" PRIu64 " bytes) at offset %" PRIu64 ", over "
                           "%s", fn, i, eat, blk, len, off, what);
    }
    return diff ? read_bitmaps(s) : 0;
}

/* ---- Open and close ------------------------------------------------------- */

static void free_state(struct vhdx *s)
{
    if (!s)
        return;
    if (s->parent)
        dev_unref(s->parent);
    for (uint64_t c = 0; s->sb && c < s->chunks; c++)
        free(s->sb[c]);
    free(s->sb);
    free(s->parent_linkage);
    free(s->parent_linkage2);
    free(s->relative_path);
    free(s->absolute_path);
    free(s->parent_name);
    free(s->full_parent);
    free(s->bat);
    offload_free(s->offload);
    if (s->lock_ready)
        pthread_mutex_destroy(&s->lock);
    free(s);
}

/*
 * What a writable open needs beyond a read-only one: a log an entry fits
 * in, and a BAT region that holds the BAT's last 4 KiB sector whole.
 */
static int writable_check(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    if (s->log_length < 2 * VHDX_LOG_SECTOR)
        return err_set(-ENOTSUP, "%s: the VHDX image has a log of %" PRIu64 " bytes: vdisk "
                       "writes only images whose log holds an entry (open it read-only)", fn,
                       s->log_length);
    if (s->bat_offset % VHDX_LOG_SECTOR ||
        align_up(s->bat_entries * 8, VHDX_LOG_SECTOR) > s->bat_length)
        return err_set(-ENOTSUP, "%s: the VHDX BAT region (offset %" PRIu64 ", %" PRIu64
                       " bytes) does not hold whole 4 KiB sectors of the BAT: vdisk does not "
                       "write the image (open it read-only)", fn, s->bat_offset, s->bat_length);
    return 0;
}

static int vhdx_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    bool repair = false;
    const char *rep = os ? opt_take(os, "repair") : NULL;
    if (rep && opt_bool("repair", rep, &repair) < 0)
        return -EINVAL;
    struct vhdx *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return err_set(-ENOMEM, "out of memory");
    }
    s->lock_ready = true;
    s->writable = !dev->params.read_only && !repair;
    s->dev = dev;
    s->file = file;
    dev->priv = s;
    s->fsize = dev_size(file);
    if (file->file_length && file->file_length < s->fsize)
        s->fsize = file->file_length;
    uint8_t sig[8];
    int r = backing_take_options(os, &s->confine, &s->allow_network);
    if (r == 0 && s->fsize < VHDX_HEADER_SECTION)
        r = err_set(-EINVAL, "%s: the file (%" PRIu64 " bytes) is too short for a VHDX header "
                    "section (%" PRIu64 " bytes)", dev->filename, s->fsize,
                    VHDX_HEADER_SECTION);
    if (r == 0)
        r = dev_pread(file, sig, 8, 0);
    if (r == 0 && memcmp(sig, "vhdxfile", 8) != 0)
        r = err_set(-EINVAL, "%s: not a VHDX image: expected \"vhdxfile\" at offset 0",
                    dev->filename);
    if (r == 0)
        r = read_headers(s);
    if (r == 0)
        r = vhdx_log_open(s, !dev->params.read_only);
    if (r == 0)
        r = read_region_table(s);
    if (r == 0)
        r = read_metadata(s);
    if (r == 0)
        r = read_bat(s);
    if (r == 0 && (s->params & VHDX_PARAM_HAS_PARENT))
        r = vhdx_open_parent(s);
    if (r == 0 && s->writable)
        r = writable_check(s);
    if (r == 0 && s->writable) {
        s->offload = offload_new();
        if (!s->offload)
            r = err_set(-ENOMEM, "out of memory");
    }
    if (r < 0) {
        free_state(s);
        dev->priv = NULL;
        return r;
    }
    dev->size = s->size;
    dev->block_size = s->logical_sector;
    dev->align = 512;
    dev->caps = VDISK_CAN_FLUSH;
    if (s->writable)
        dev->caps |= VDISK_CAN_WRITE | VDISK_CAN_WRITE_ZEROES | VDISK_CAN_DISCARD;
    return 0;
}

static void vhdx_close(struct vdisk_dev *dev)
{
    struct vhdx *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    s->offload = NULL;
    if (s->writable) {
        struct err_saved saved;
        err_save(&saved);
        if (vhdx_log_close(s) < 0)
            warn_report("vdisk: warning: %s: the VHDX log could not be closed (the next "
                        "writable open replays it): %s", dev->filename, err_detail());
        err_restore(&saved);
    }
    dev_unref(s->file);
    free_state(s);
    dev->priv = NULL;
}

/* ---- Reads ---------------------------------------------------------------- */

enum { AT_ZERO, AT_FILE, AT_PARENT };

/* BAT entry I; the worker changes entries while requests read them. */
static uint64_t bat_get(struct vhdx *s, uint64_t i)
{
    pthread_mutex_lock(&s->lock);
    uint64_t e = s->bat[i];
    pthread_mutex_unlock(&s->lock);
    return e;
}

static bool sb_bit(const struct vhdx *s, uint64_t off)
{
    uint64_t chunk = off / s->block_size / s->chunk_ratio;
    uint64_t bit = off / s->logical_sector % (UINT64_C(1) << 23);
    return (s->sb[chunk][bit / 8] >> (bit % 8)) & 1;
}

/*
 * Where the bytes from OFF (before END) are: AT_FILE at *HOST, zeroes, or
 * the parent's; *N bytes of one kind inside one block.  In a differencing
 * image a block not present reads the parent, one partially present reads
 * the sectors its bitmap marks from this file and the others from the
 * parent; undefined, zero and unmapped blocks read zeroes.
 */
static int locate(struct vhdx *s, uint64_t off, uint64_t end, uint64_t *host,
                  uint64_t *n)
{
    uint64_t blk = off / s->block_size, inb = off % s->block_size;
    uint64_t e = bat_get(s, blk + blk / s->chunk_ratio);
    *n = s->block_size - inb < end - off ? s->block_size - inb : end - off;
    *host = (e & VHDX_BAT_OFFSET_MASK) + inb;
    switch (e & VHDX_BAT_STATE_MASK) {
    case VHDX_PAYLOAD_FULLY_PRESENT:
        return AT_FILE;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT: {
        bool here = sb_bit(s, off);
        uint64_t run = s->logical_sector - off % s->logical_sector;
        while (run < *n && sb_bit(s, off + run) == here)
            run += s->logical_sector;
        if (run < *n)
            *n = run;
        return here ? AT_FILE : AT_PARENT;
    }
    case VHDX_PAYLOAD_NOT_PRESENT:
        return s->parent ? AT_PARENT : AT_ZERO;
    default:
        return AT_ZERO;
    }
}

/* N bytes at POS from the parent (zeroes past its end). */
static int read_parent(struct vdisk_req *req, struct vhdx *s, uint64_t pos, uint64_t n)
{
    uint64_t skip = pos - req->offset, psize = dev_size(s->parent);
    uint64_t have = pos < psize ? (n < psize - pos ? n : psize - pos) : 0;
    if (have) {
        int r = req_read_slice(req, s->parent, pos, skip, have);
        if (r < 0)
            return r;
    }
    if (have < n)
        iov_memset(req->iov, req->iovcnt, (size_t)(skip + have), 0, (size_t)(n - have));
    return 0;
}

static void read_walk(struct vdisk_req *req)
{
    struct vhdx *s = req->dev->priv;
    /* Runs of blocks of one kind (data runs contiguous in the file)
     * become one child each. */
    req_hold(req);
    uint64_t pos = req->offset, end = req->offset + req->length;
    while (pos < end) {
        uint64_t host, n;
        int kind = locate(s, pos, end, &host, &n);
        while (pos + n < end) {
            uint64_t h2, n2;
            int k2 = locate(s, pos + n, end, &h2, &n2);
            if (k2 != kind || (kind == AT_FILE && h2 != host + n))
                break;
            n += n2;
        }
        int r = 0;
        if (kind == AT_FILE)
            r = req_read_slice(req, s->file, host, pos - req->offset, n);
        else if (kind == AT_PARENT)
            r = read_parent(req, s, pos, n);
        else
            iov_memset(req->iov, req->iovcnt, (size_t)(pos - req->offset), 0, (size_t)n);
        if (r < 0) {
            req_set_error(req, r, "out of memory");
            break;
        }
        pos += n;
    }
    req_release(req, 0);
}

/* ---- Writes --------------------------------------------------------------- */

/*
 * Writes (see writable_check for what is refused).  The first write
 * of a session renews the headers' FileWriteGuid and DataWriteGuid (both
 * headers, each flushed, before any data).  A write to fully present
 * blocks goes to the file as children.  One that needs new blocks runs on
 * the worker, which alone changes the BAT: each new block goes at the end
 * of the file (1 MiB aligned, the file extended by the whole block, so
 * that the bytes around the data read as zeroes), its data is written and
 * its entry set in memory; then the changed 4 KiB sectors of the BAT are
 * committed as [MS-VHDX] asks: the file flushed (the data first), a log
 * entry with the sectors written and flushed, the sectors written in
 * place.  The log stays open (LogGuid set) until close, which flushes and
 * clears it; a crash leaves at most the last entry to replay, which
 * rewrites sectors already (or about to be) in place.  Blocks that are not
 * present read as zeroes, so write-zeroes leaves them alone and writes
 * zeroes on present ones; discard does nothing (QEMU 7.2 neither).
 *
 * Differencing images (which QEMU 7.2 neither reads nor writes): a write
 * to a block that reads the parent, not present or partially present,
 * first copies the rest of the block from where it reads now (the parent,
 * or this file's sectors of a partially present block) into a new block
 * or, partially present, into its own; the block then becomes fully
 * present.  No sector bitmap ever changes, and a crash before the BAT
 * commit leaves the block reading as before.  Write-zeroes writes there
 * too (the parent's data must read as zeroes).
 */

#define VHDX_COMMIT_MAX 32u /* BAT sectors one log entry carries */

struct commit {
    uint64_t sec[VHDX_COMMIT_MAX]; /* BAT sector indices, distinct */
    size_t n;
};

static bool block_present(struct vhdx *s, uint64_t blk)
{
    return (bat_get(s, blk + blk / s->chunk_ratio) & VHDX_BAT_STATE_MASK) ==
           VHDX_PAYLOAD_FULLY_PRESENT;
}

/* The dirty BAT sectors of C into the log, then in place. */
static int commit_bat(struct vhdx *s, struct commit *c)
{
    if (c->n == 0)
        return 0;
    uint8_t *data = malloc(c->n * VHDX_LOG_SECTOR);
    uint64_t offs[VHDX_COMMIT_MAX];
    if (!data)
        return err_set(-ENOMEM, "out of memory");
    int r = dev_flush(s->file);
    for (size_t i = 0; r == 0 && i < c->n; i++) {
        uint8_t *d = data + i * VHDX_LOG_SECTOR;
        offs[i] = s->bat_offset + c->sec[i] * VHDX_LOG_SECTOR;
        r = dev_pread(s->file, d, VHDX_LOG_SECTOR, offs[i]);
        uint64_t first = c->sec[i] * (VHDX_LOG_SECTOR / 8);
        pthread_mutex_lock(&s->lock);
        for (uint64_t k = 0; r == 0 && k < VHDX_LOG_SECTOR / 8 && first + k < s->bat_entries;
             k++)
            le64_store(d + 8 * k, s->bat[first + k]);
        pthread_mutex_unlock(&s->lock);
    }
    if (r == 0)
        r = vhdx_log_write(s, offs, c->n, data);
    for (size_t i = 0; r == 0 && i < c->n; i++)
        r = dev_pwrite(s->file, data + i * VHDX_LOG_SECTOR, VHDX_LOG_SECTOR, offs[i]);
    free(data);
    c->n = 0;
    return r;
}

static int commit_add(struct vhdx *s, struct commit *c, uint64_t bat_index)
{
    uint64_t sec = bat_index * 8 / VHDX_LOG_SECTOR;
    for (size_t i = 0; i < c->n; i++)
        if (c->sec[i] == sec)
            return 0;
    if (c->n == VHDX_COMMIT_MAX) {
        int r = commit_bat(s, c);
        if (r < 0)
            return r;
    }
    c->sec[c->n++] = sec;
    return 0;
}

/* A new block for block BLK at the end of the file: its offset. */
static int allocate_block(struct vhdx *s, uint64_t blk, uint64_t *off)
{
    uint64_t len = dev_size(s->file);
    if (len < s->fsize)
        len = s->fsize;
    uint64_t at = align_up(len, VHDX_MIB);
    if (at > VHDX_BAT_OFFSET_MASK - s->block_size)
        return err_set(-EFBIG, "%s: no room for VHDX block %" PRIu64 " past offset %" PRIu64,
                       s->dev->filename, blk, at);
    int r = dev_truncate(s->file, at + s->block_size);
    if (r < 0)
        return r;
    s->fsize = at + s->block_size;
    *off = at;
    return 0;
}

static int first_write(struct vhdx *s)
{
    if (s->data_guid_done)
        return 0;
    int r = vhdx_update_headers(s, true, s->log_active ? s->log_guid : NULL);
    if (r == 0) {
        pthread_mutex_lock(&s->lock);
        s->data_guid_done = true;
        pthread_mutex_unlock(&s->lock);
    }
    return r;
}

/* LEN bytes at disk offset OFF of the parent into BUF (zeroes past its
 * end). */
static int parent_pread(struct vhdx *s, uint64_t off, uint8_t *buf, uint64_t len)
{
    uint64_t psize = dev_size(s->parent);
    uint64_t have = off < psize ? (len < psize - off ? len : psize - off) : 0;
    int r = have ? dev_pread(s->parent, buf, (size_t)have, off) : 0;
    if (r == 0 && have < len)
        memset(buf + have, 0, (size_t)(len - have));
    return r;
}

/* What the LEN bytes at disk offset OFF (inside one block whose BAT entry
 * is E, not fully present) read as now, into BUF. */
static int old_data(struct vhdx *s, uint64_t e, uint64_t off, uint8_t *buf, uint64_t len)
{
    unsigned state = e & VHDX_BAT_STATE_MASK;
    if (state == VHDX_PAYLOAD_NOT_PRESENT && s->parent)
        return parent_pread(s, off, buf, len);
    if (state != VHDX_PAYLOAD_PARTIALLY_PRESENT) {
        memset(buf, 0, (size_t)len);
        return 0;
    }
    uint64_t done = 0;
    while (done < len) {
        uint64_t at = off + done;
        bool here = sb_bit(s, at);
        uint64_t run = s->logical_sector - at % s->logical_sector;
        while (done + run < len && sb_bit(s, at + run) == here)
            run += s->logical_sector;
        if (run > len - done)
            run = len - done;
        int r = here ? dev_pread(s->file, buf + done, (size_t)run,
                                 (e & VHDX_BAT_OFFSET_MASK) + at % s->block_size)
                     : parent_pread(s, at, buf + done, run);
        if (r < 0)
            return r;
        done += run;
    }
    return 0;
}

/*
 * A differencing image's block made whole before a write makes it fully
 * present (copy-on-write, so that no sector bitmap changes): the bytes of
 * the block outside [SKIP_FROM, SKIP_TO) (disk offsets) copied from where
 * they read now into the block at BOFF; zeroes are left out (a new block
 * reads zeroes).  BUF is a scratch buffer of VHDX_MIB bytes.
 */
static int fill_block(struct vhdx *s, uint64_t blk, uint64_t e, uint64_t boff, bool fresh,
                      uint64_t skip_from, uint64_t skip_to, uint8_t *buf)
{
    uint64_t start = blk * s->block_size;
    uint64_t end = s->size - start < s->block_size ? s->size : start + s->block_size;
    for (uint64_t at = start; at < end;) {
        if (at >= skip_from && at < skip_to) {
            at = skip_to;
            continue;
        }
        uint64_t n = end - at < VHDX_MIB ? end - at : VHDX_MIB;
        if (at < skip_from && at + n > skip_from)
            n = skip_from - at;
        int r = old_data(s, e, at, buf, n);
        if (r < 0)
            return r;
        bool zero = fresh;
        for (uint64_t i = 0; zero && i < n; i++)
            zero = buf[i] == 0;
        if (!zero && (r = dev_pwrite(s->file, buf, (size_t)n, boff + (at - start))) < 0)
            return r;
        at += n;
    }
    return 0;
}

/* On the worker: a write or write-zeroes, block by block. */
static int write_work(struct vdisk_req *req)
{
    struct vhdx *s = req->dev->priv;
    struct commit c = {.n = 0};
    uint8_t *scratch = NULL;
    int r = first_write(s);
    bool fua = req->flags & VDISK_REQ_FUA;
    uint64_t end = req->offset + req->length;
    for (uint64_t pos = req->offset; r == 0 && pos < end;) {
        uint64_t blk = pos / s->block_size, inb = pos % s->block_size;
        uint64_t n = s->block_size - inb < end - pos ? s->block_size - inb : end - pos;
        uint64_t bi = blk + blk / s->chunk_ratio;
        uint64_t e = bat_get(s, bi);
        bool present = (e & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT;
        uint64_t host = (e & VHDX_BAT_OFFSET_MASK) + inb;
        unsigned state = e & VHDX_BAT_STATE_MASK;
        /* Reads the parent (differencing images): made whole first. */
        bool cow = !present && s->parent && (state == VHDX_PAYLOAD_NOT_PRESENT ||
                                             state == VHDX_PAYLOAD_PARTIALLY_PRESENT);
        if (req->op == VDISK_OP_WRITE_ZEROES && !cow) {
            if (present)
                r = dev_write_zeroes(s->file, host, n, fua ? VDISK_REQ_FUA : 0);
            pos += n;
            continue;
        }
        uint64_t boff = 0;
        if (!present) {
            bool fresh = state != VHDX_PAYLOAD_PARTIALLY_PRESENT;
            if (fresh)
                r = allocate_block(s, blk, &boff);
            else
                boff = e & VHDX_BAT_OFFSET_MASK;
            if (r == 0 && cow && !scratch && !(scratch = malloc(VHDX_MIB)))
                r = err_set(-ENOMEM, "out of memory");
            if (r == 0 && cow)
                r = fill_block(s, blk, e, boff, fresh, pos, pos + n, scratch);
            if (r < 0)
                break;
            host = boff + inb;
        }
        if (req->op == VDISK_OP_WRITE_ZEROES) {
            r = dev_write_zeroes(s->file, host, n, 0);
            if (r == 0) {
                pthread_mutex_lock(&s->lock);
                s->bat[bi] = boff | VHDX_PAYLOAD_FULLY_PRESENT;
                pthread_mutex_unlock(&s->lock);
                r = commit_add(s, &c, bi);
            }
            pos += n;
            continue;
        }
        r = req_pwrite_slice(req, s->file, host, pos - req->offset, n,
                             present && fua ? VDISK_REQ_FUA : 0);
        if (r < 0)
            break;
        if (!present) {
            pthread_mutex_lock(&s->lock);
            s->bat[bi] = boff | VHDX_PAYLOAD_FULLY_PRESENT;
            pthread_mutex_unlock(&s->lock);
            r = commit_add(s, &c, bi);
        }
        pos += n;
    }
    free(scratch);
    /* What was allocated is committed even when a later block failed. */
    int r2 = commit_bat(s, &c);
    if (r == 0)
        r = r2;
    if (r == 0 && fua)
        r = dev_flush(s->file);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r < 0 ? r : 0;
}

/* Writes that allocate nothing, after the first: children on the file. */
static void write_walk(struct vdisk_req *req)
{
    struct vhdx *s = req->dev->priv;
    req_hold(req);
    uint64_t end = req->offset + req->length;
    unsigned fua = req->flags & VDISK_REQ_FUA;
    for (uint64_t pos = req->offset; pos < end;) {
        uint64_t host, n;
        int kind = locate(s, pos, end, &host, &n);
        if (kind == AT_FILE) {
            int r = 0;
            if (req->op == VDISK_OP_WRITE_ZEROES) {
                r = req_write_zeroes_child(req, s->file, host, n, fua);
            } else {
                r = req_write_slice(req, s->file, host, pos - req->offset, n, fua);
            }
            if (r < 0) {
                req_set_error(req, r, "out of memory");
                break;
            }
        }
        pos += n;
    }
    req_release(req, 0);
}

/* Whether REQ can go straight to the file: the headers renewed, and for a
 * write every block it touches present. */
static bool write_fast(struct vhdx *s, const struct vdisk_req *req)
{
    pthread_mutex_lock(&s->lock);
    bool fast = s->data_guid_done;
    pthread_mutex_unlock(&s->lock);
    if (!fast || (req->op == VDISK_OP_WRITE_ZEROES && !s->parent))
        return fast;
    uint64_t first = req->offset / s->block_size;
    uint64_t last = (req->offset + req->length - 1) / s->block_size;
    for (uint64_t b = first; fast && b <= last; b++)
        fast = block_present(s, b);
    return fast;
}

static void vhdx_submit(struct vdisk_req *req)
{
    struct vhdx *s = req->dev->priv;
    switch (req->op) {
    case VDISK_OP_FLUSH: {
        if (!s->writable) {
            req_complete(req, 0);
            return;
        }
        req_send_child(req, s->file, VDISK_OP_FLUSH, 0, 0, NULL, 0, 0);
        return;
    }
    case VDISK_OP_READ:
        read_walk(req);
        return;
    case VDISK_OP_WRITE:
    case VDISK_OP_WRITE_ZEROES:
    case VDISK_OP_DISCARD:
        if (!s->writable) {
            req_fail(req, -EROFS, "the VHDX image is open read-only");
            return;
        }
        if (req->op == VDISK_OP_DISCARD || !req->length) {
            req_complete(req, 0); /* discard is advisory: nothing, as QEMU 7.2 */
            return;
        }
        if (write_fast(s, req))
            write_walk(req);
        else
            offload_req(s->offload, req, write_work, NULL);
        return;
    }
    req_fail(req, -EINVAL, "unknown operation");
}

/* ---- Queries -------------------------------------------------------------- */

static int vhdx_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                             struct vdisk_extent *ext)
{
    struct vhdx *s = dev->priv;
    ext->depth = 0;
    if (!s->parent) {
        /* As QEMU 7.2 shows it. */
        ext->length = len;
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED;
        return 0;
    }
    uint64_t host, n;
    int kind = locate(s, off, off + len, &host, &n);
    ext->length = n;
    if (kind == AT_FILE) {
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = host;
        ext->host_file = s->file->filename;
        return 0;
    }
    if (kind == AT_ZERO) {
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED;
        return 0;
    }
    uint64_t psize = dev_size(s->parent);
    if (off >= psize) {
        ext->flags = VDISK_EXT_ZERO;
        return 0;
    }
    int r = dev_block_status(s->parent, off, psize - off < n ? psize - off : n, ext);
    if (r < 0)
        return r;
    ext->depth++;
    return 0;
}

static struct vdisk_dev *vhdx_backing(struct vdisk_dev *dev)
{
    struct vhdx *s = dev->priv;
    return s->parent;
}

static void vhdx_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    struct vhdx *s = dev->priv;
    info->cluster_size = s->block_size;
    if (s->parent) {
        info->backing_filename = s->parent_name;
        info->full_backing_filename = s->full_parent;
        info->backing_format = "vhdx";
    }
}

static int64_t vhdx_allocated_size(struct vdisk_dev *dev)
{
    struct vhdx *s = dev->priv;
    return dev_allocated_size(s->file);
}

/*
 * As qemu-img check counts a VHDX image: the open already refused every
 * bad BAT entry (qemu-img refuses those images too), so what is left is a
 * log replayed by this open, a corruption fixed.
 */
static int vhdx_check(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                      vdisk_check_report_fn report, void *opaque)
{
    (void)report;
    (void)opaque;
    struct vhdx *s = dev->priv;
    if (s->log_replayed) {
        res->corruptions_fixed++;
        res->repaired = (flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS)) != 0;
    }
    return 0;
}

/* The options create takes (vdisk_create_option). */
static const struct create_opt vhdx_create_opts[] = {
    {"block_size", "size",
     "bytes per payload block: 1M to 256M, a power of two (0: chosen by the size)"},
    {"block_state_zero", "bool (on/off)",
     "mark new blocks as reading zeroes, without space (default on)"},
    {"log_size", "size",
     "bytes of the log: at least 1M, rounded up to 1M (default 1M)"},
    {"size", "size",
     "the virtual disk's size in bytes (at most 64T)"},
    {"subformat", "str",
     "dynamic (default) or fixed"},
    {NULL, NULL, NULL},
};

const struct vdisk_driver vdisk_driver_vhdx = {
    .name = "vhdx",
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .submit = vhdx_submit,
    .block_status = vhdx_block_status,
    .allocated_size = vhdx_allocated_size,
    .get_info = vhdx_get_info,
    .check = vhdx_check,
    .backing = vhdx_backing,
    .create = vhdx_create,
    .create_opts = vhdx_create_opts,
};
