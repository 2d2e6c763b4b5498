/* SPDX-License-Identifier: MIT */
/*
 * formats/part/util.c: what the MBR and GPT code share: the table object,
 * bounds-checked sector I/O, GUIDs, UTF-16 names, overlap checks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "driver.h"
#include "part.h"

void pt_report(struct pt_report *r, const char *fmt, ...)
{
    if (!r)
        return;
    r->count++;
    if (!r->fn)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->fn(r->opaque, line);
}

struct vdisk_ptable *pt_alloc(struct vdisk_dev *disk, int kind, unsigned ss)
{
    struct vdisk_ptable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->disk = disk;
    t->kind = kind;
    t->ss = ss;
    t->sectors = dev_size(disk) / ss;
    /* libfdisk's grain: 1 MiB, or one sector on disks of at most 4 MiB. */
    t->grain = t->sectors <= (4u << 20) / ss ? 1 : (1u << 20) / ss;
    dev_ref(disk);
    return t;
}

struct pt_part *pt_lookup(const struct vdisk_ptable *t, unsigned number)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].number == number)
            return &t->parts[i];
    return NULL;
}

struct pt_part *pt_insert(struct vdisk_ptable *t, unsigned number)
{
    if (t->n >= PT_MAX_PARTS)
        return NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct pt_part *p = realloc(t->parts, cap * sizeof *p);
        if (!p)
            return NULL;
        t->parts = p;
        t->cap = cap;
    }
    size_t i = t->n;
    while (i > 0 && t->parts[i - 1].number > number)
        i--;
    memmove(&t->parts[i + 1], &t->parts[i], (t->n - i) * sizeof *t->parts);
    t->n++;
    memset(&t->parts[i], 0, sizeof t->parts[i]);
    t->parts[i].number = number;
    return &t->parts[i];
}

void pt_remove(struct vdisk_ptable *t, struct pt_part *p)
{
    size_t i = (size_t)(p - t->parts);
    memmove(&t->parts[i], &t->parts[i + 1], (t->n - i - 1) * sizeof *t->parts);
    t->n--;
}

static int pt_range(const struct vdisk_ptable *t, uint64_t lba, uint64_t count, uint64_t *off,
                    uint64_t *len)
{
    if (count > SIZE_MAX / t->ss || lba > UINT64_MAX / t->ss)
        return -EINVAL;
    *off = lba * t->ss;
    *len = count * t->ss;
    if (!range_inside(*off, *len, dev_size(t->disk)))
        return err_set(-EINVAL, "%s: sectors %" PRIu64 "-%" PRIu64 " lie beyond the end of the"
                       " disk (%" PRIu64 " sectors)", t->disk->filename, lba,
                       lba + count - 1, t->sectors);
    return 0;
}

int pt_read(const struct vdisk_ptable *t, void *buf, uint64_t lba, uint64_t count)
{
    uint64_t off, len;
    int r = pt_range(t, lba, count, &off, &len);
    return r < 0 ? r : dev_pread(t->disk, buf, (size_t)len, off);
}

int pt_write(const struct vdisk_ptable *t, const void *buf, uint64_t lba, uint64_t count)
{
    uint64_t off, len;
    int r = pt_range(t, lba, count, &off, &len);
    return r < 0 ? r : dev_pwrite(t->disk, buf, (size_t)len, off);
}

/* ---- GUIDs ---------------------------------------------------------------- */

/* Text position of each on-disk byte: the first three fields little-endian. */
static const uint8_t guid_order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};

void guid_to_str(const uint8_t g[16], char out[37])
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        uint8_t b = g[guid_order[i]];
        *o++ = hex[b >> 4];
        *o++ = hex[b & 15];
    }
    *o = '\0';
}

int guid_from_str(const char *s, uint8_t g[16])
{
    if (strlen(s) != 36)
        return -EINVAL;
    int i = 0;
    for (const char *p = s; *p; ) {
        long pos = p - s;
        if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
            if (*p != '-')
                return -EINVAL;
            p++;
            continue;
        }
        int hi = hex_digit(p[0]), lo = hex_digit(p[1]);
        if (hi < 0 || lo < 0 || i >= 16)
            return -EINVAL;
        g[guid_order[i++]] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    return i == 16 ? 0 : -EINVAL;
}

static void random_bytes(void *buf, size_t len)
{
    uint8_t *b = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(b + got, len - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < len) { /* no entropy source: still unique enough per call */
        uint64_t x = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)buf;
        for (; got < len; got++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            b[got] = (uint8_t)(x >> 56);
        }
    }
}

void guid_random(uint8_t g[16])
{
    random_bytes(g, 16);
    g[7] = (uint8_t)((g[7] & 0x0f) | 0x40); /* version 4 (time_hi, little-endian) */
    g[8] = (uint8_t)((g[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

uint32_t random_u32(void)
{
    uint32_t v;
    random_bytes(&v, sizeof v);
    return v ? v : 1;
}

bool guid_is_zero(const uint8_t g[16])
{
    for (int i = 0; i < 16; i++)
        if (g[i])
            return false;
    return true;
}

/* ---- Names ---------------------------------------------------------------- */

static void put_utf8(uint32_t c, char *out, size_t outlen, size_t *o)
{
    char tmp[4];
    size_t n;
    if (c < 0x80) {
        tmp[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        tmp[0] = (char)(0xc0 | c >> 6);
        tmp[1] = (char)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        tmp[0] = (char)(0xe0 | c >> 12);
        tmp[1] = (char)(0x80 | (c >> 6 & 0x3f));
        tmp[2] = (char)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        tmp[0] = (char)(0xf0 | c >> 18);
        tmp[1] = (char)(0x80 | (c >> 12 & 0x3f));
        tmp[2] = (char)(0x80 | (c >> 6 & 0x3f));
        tmp[3] = (char)(0x80 | (c & 0x3f));
        n = 4;
    }
    if (*o + n < outlen) {
        memcpy(out + *o, tmp, n);
        *o += n;
    }
}

void utf16le_to_utf8(const uint8_t *in, size_t units, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < units; i++) {
        uint32_t c = le16_load(in + 2 * i);
        if (c == 0)
            break;
        if (c >= 0xd800 && c < 0xdc00 && i + 1 < units) {
            uint32_t lo = le16_load(in + 2 * (i + 1));
            if (lo >= 0xdc00 && lo < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                i++;
            } else {
                c = 0xfffd;
            }
        } else if (c >= 0xd800 && c < 0xe000) {
            c = 0xfffd;
        }
        put_utf8(c, out, outlen, &o);
    }
    out[o] = '\0';
}

int utf8_to_utf16le(const char *in, uint8_t *out, size_t units)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t u = 0;
    memset(out, 0, units * 2);
    while (*p) {
        uint32_t c;
        int more;
        if (*p < 0x80) {
            c = *p;
            more = 0;
        } else if ((*p & 0xe0) == 0xc0) {
            c = *p & 0x1f;
            more = 1;
        } else if ((*p & 0xf0) == 0xe0) {
            c = *p & 0x0f;
            more = 2;
        } else if ((*p & 0xf8) == 0xf0) {
            c = *p & 0x07;
            more = 3;
        } else {
            return -EINVAL;
        }
        p++;
        for (int k = 0; k < more; k++, p++) {
            if ((*p & 0xc0) != 0x80)
                return -EINVAL;
            c = c << 6 | (*p & 0x3f);
        }
        if (c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
            return -EINVAL;
        if (c >= 0x10000) {
            if (u + 2 > units)
                return -EINVAL;
            c -= 0x10000;
            le16_store(out + 2 * u++, (uint16_t)(0xd800 + (c >> 10)));
            le16_store(out + 2 * u++, (uint16_t)(0xdc00 + (c & 0x3ff)));
        } else {
            if (u + 1 > units)
                return -EINVAL;
            le16_store(out + 2 * u++, (uint16_t)c);
        }
    }
    return (int)u;
}

/* ---- Checks ----------------------------------------------------------------- */

static bool mbr_is_extended_type(uint8_t t)
{
    return t == 0x05 || t == 0x0f || t == 0x85;
}

void pt_check_overlaps(const struct vdisk_ptable *t, struct pt_report *r)
{
    /* Quadratic, but the count is bounded (PT_MAX_PARTS) and tables are small;
     * large arrays are mostly empty entries, which are not listed. */
    for (size_t i = 0; i < t->n; i++) {
        const struct pt_part *a = &t->parts[i];
        for (size_t j = i + 1; j < t->n; j++) {
            const struct pt_part *b = &t->parts[j];
            if (t->kind == VDISK_PT_MBR) {
                bool la = a->number > 4, lb = b->number > 4;
                /* A logical partition lies inside the extended one. */
                if (la != lb && ((!la && mbr_is_extended_type(a->mbr_type)) ||
                                 (!lb && mbr_is_extended_type(b->mbr_type))))
                    continue;
            }
            if (a->size && b->size && a->start <= b->start + (b->size - 1) &&
                b->start <= a->start + (a->size - 1))
                pt_report(r, "Partitions %u and %u overlap: %u is sectors %" PRIu64 "-%" PRIu64
                          ", %u is sectors %" PRIu64 "-%" PRIu64 ".", a->number, b->number,
                          a->number, a->start, a->start + (a->size - 1), b->number, b->start,
                          b->start + (b->size - 1));
        }
    }
}
