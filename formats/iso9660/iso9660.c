/* SPDX-License-Identifier: MIT */
/*
 * formats/iso9660/iso9660.c: the ISO 9660 file system (ECMA-119) with
 * Rock Ridge (SUSP/RRIP), Joliet and El Torito, read from any device.
 *
 * Every on-disk position is checked against the device's size before it
 * is read, every loop is bounded: at most ISO_MAX_VD volume descriptors,
 * ISO_MAX_CE continuation areas per record (a repeated area is a loop),
 * ISO_MAX_DEPTH directories deep, ISO_MAX_DIR_BYTES per directory, and a
 * set of visited directory extents when the tree is walked.
 *
 * zisofs (Rock Ridge ZF/Z2 entries) is decompressed block by block with
 * zlib: the file header is checked against the ZF entry, every block
 * pointer used is checked to lie after the pointer table, before the last
 * pointer (itself inside the file) and not before its predecessor, and a
 * block must inflate to exactly its size.  Memory: two block buffers.
 *
 * The path table is checked against the tree but never used: when it
 * disagrees, vdisk_iso_open succeeds with a warning (vdisk_iso_warning).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <vdisk/iso9660.h>

#include "driver.h"
#include "iso9660.h"

#define ISO_MAX_VD 64
#define ISO_MAX_CE 32
#define ISO_MAX_CE_BYTES (64u * 1024)
#define ISO_MAX_DEPTH VDISK_ISO_DEPTH_MAX
#define ISO_MAX_DIR_BYTES (16u << 20)
#define ISO_MAX_DIRS 65536
#define ISO_MAX_EXTENTS 1024
#define ISO_MAX_HOPS 40
#define ISO_MAX_BOOT 64

struct extent {
    uint64_t off, len; /* bytes in the device */
};

/* A Rock Ridge ZF (or zisofs2 Z2) entry. */
struct zisofs {
    bool on;
    char sig;            /* 'F' (ZF) or '2' (Z2) */
    uint8_t len;         /* the entry's length */
    uint8_t version;     /* 1: zisofs, 2: zisofs2 */
    char alg[2];         /* "pz" (zisofs), "PZ" (zisofs2 zlib), ... */
    uint8_t hdr_words;   /* the file header's size in 4-byte words */
    uint8_t log2_bs;     /* log2 of the block size */
    uint64_t size;       /* uncompressed bytes */
};

/* A directory entry while it is being parsed. */
struct node {
    struct vdisk_iso_entry e;
    uint64_t dir_off, dir_len; /* a directory's extent */
    struct extent *ext;        /* a file's sections */
    unsigned next;
    bool relocated;            /* RE: shown where its CL entry is */
    bool child_link;           /* CL: a directory relocated elsewhere */
    uint8_t flags;             /* the record's file flags */
    struct zisofs zf;          /* a compressed file's ZF entry */
};

struct vdisk_iso {
    struct vdisk_dev *dev;
    uint64_t size;
    struct vdisk_iso_info info;
    int ns;
    uint8_t pvd_root[34], svd_root[34];
    bool has_rr;
    unsigned susp_skip;
    struct vdisk_iso_boot boot[ISO_MAX_BOOT];
    unsigned nboot;
    char warning[640];         /* "" when none */
    /* The last directory looked up by descent alone (no ".", "..", symlink):
     * its path, the end of each component in it, the extents of the
     * directories down to it.  A lookup below it starts there, so that a
     * walk of the tree costs one directory read per lookup, not its depth. */
    char *lc_path;
    size_t *lc_ends;           /* [1..lc_depth] */
    struct extent *lc_dirs;    /* [0..lc_depth] */
    unsigned lc_depth;
};

/* ---- Small helpers -------------------------------------------------------- */

static int rd(struct vdisk_iso *iso, void *buf, size_t len, uint64_t off, const char *what)
{
    if (!range_inside(off, len, iso->size))
        return err_set(-EINVAL, "%s: %s: %zu bytes at offset %" PRIu64
                       " lie beyond the end of the image (%" PRIu64 " bytes)",
                       iso->dev->filename, what, len, off, iso->size);
    return dev_pread(iso->dev, buf, len, off);
}

/* A fixed-width, space-padded field as a C string without trailing spaces. */
static void field(char *dst, const uint8_t *src, size_t len)
{
    memcpy(dst, src, len);
    dst[len] = '\0';
    while (len && (dst[len - 1] == ' ' || dst[len - 1] == '\0'))
        dst[--len] = '\0';
}

/* Days from 1970-01-01 to Y-M-D (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int64_t mktime_utc(int year, int mon, int day, int h, int mi, int s, int gmtoff_q)
{
    if (mon < 1 || mon > 12 || day < 1 || day > 31)
        return 0;
    int64_t t = days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 + h * 3600 + mi * 60 + s;
    return t - (int64_t)gmtoff_q * 15 * 60;
}

/* The 7-byte recording date of a directory record (and TF short form). */
static int64_t time7(const uint8_t *p)
{
    return mktime_utc(1900 + p[0], p[1], p[2], p[3], p[4], p[5], (int8_t)p[6]);
}

static int digits(const uint8_t *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : 0);
    return v;
}

/* The 17-byte date of volume descriptors (and TF long form). */
static int64_t time17(const uint8_t *p)
{
    return mktime_utc(digits(p, 4), digits(p + 4, 2), digits(p + 6, 2), digits(p + 8, 2),
                      digits(p + 10, 2), digits(p + 12, 2), (int8_t)p[16]);
}

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Joliet: UCS-2 (UTF-16) big-endian to UTF-8. */
static void ucs2_name(char *out, const uint8_t *p, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i + 1 < len && o + 4 < VDISK_ISO_NAME_MAX; i += 2) {
        uint32_t c = be16_load(p + i);
        if (c >= 0xd800 && c < 0xdc00 && i + 3 < len) {
            uint32_t d = be16_load(p + i + 2);
            if (d >= 0xdc00 && d < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
                i += 2;
            }
        }
        if (c == 0)
            c = '_';
        o += put_utf8(out + o, c);
    }
    out[o] = '\0';
}

/* Plain ISO 9660 and Joliet: without ";N" (and a bare trailing dot). */
static void strip_version(char *name, bool dir)
{
    char *semi = strrchr(name, ';');
    if (semi && !dir)
        *semi = '\0';
    size_t l = strlen(name);
    if (!dir && l > 1 && name[l - 1] == '.')
        name[l - 1] = '\0';
}

/* ---- Rock Ridge (SUSP) -------------------------------------------------------- */

struct rr {
    bool sp, er, px, nm, sl, re, cl, pn;
    unsigned sp_skip;
    uint32_t mode, nlink, uid, gid, cl_block;
    uint64_t rdev;
    int64_t mtime, atime, ctime;
    bool has_mtime, has_atime, has_ctime;
    size_t nlen, tlen;
    bool sl_more; /* the last SL entry had its CONTINUE flag */
    bool sl_sep;  /* and its last component takes a '/' after it */
    struct zisofs zf;
    /* Last, so that rr_parse clears what comes before and only the first
     * byte of these (5 KiB, for every record read). */
    char name[VDISK_ISO_NAME_MAX + 1];
    char target[VDISK_ISO_PATH_MAX + 1];
};

static int rr_append(char *dst, size_t *len, size_t max, const void *src, size_t n,
                     const char *what)
{
    if (n > max - *len)
        return err_set(-ENAMETOOLONG, "Rock Ridge %s longer than %zu bytes", what, max);
    memcpy(dst + *len, src, n);
    *len += n;
    dst[*len] = '\0';
    return 0;
}

/*
 * One SL entry (LEN bytes at P), joined as libarchive (bsdtar) and the
 * Linux kernel join them, which keeps the components mkisofs 2.01 wrote
 * for empty ones:
 *   - an SL entry after one without the CONTINUE flag (bit 0 of its flags
 *     byte) starts the target afresh; a flags byte other than 0 or 1 ends
 *     the entry (nothing more of it is read);
 *   - a component goes on after a '/', except the target's first one, one
 *     after a component with its CONTINUE bit (the text goes on) and one
 *     after ROOT (which is a "/" itself);
 *   - CURRENT is ".", PARENT "..", ROOT "/" (in the middle too: mkisofs
 *     2.01 wrote ".///file" as CURRENT ROOT ROOT "file"), bit 4 (once
 *     VOLROOT) restarts the target as "ROOT", bit 5 (once HOST) is
 *     "hostname"; a component with other flags, or running past the
 *     entry, ends the entry.
 * libarchive leaves out the '/' between the last component of an SL entry
 * and the first of the next one (genisoimage splits long targets there:
 * "comp010comp011"); the kernel, xorriso and isoinfo keep it, and so does
 * vdisk, which gives the target the symlink was made with.
 */
static int rr_sl(struct rr *rr, const uint8_t *p, size_t len)
{
    if (!rr->sl_more || rr->tlen == 0) {
        rr->tlen = 0;
        rr->target[0] = '\0';
    }
    const char *sep = rr->sl_more && rr->sl_sep ? "/" : "";
    rr->sl_more = rr->sl_sep = false;
    if (len < 5 || p[4] > 1)
        return 0;
    rr->sl_more = p[4] == 1;
    size_t i = 5;
    while (i + 2 <= len) {
        unsigned cf = p[i], cl = p[i + 1];
        const uint8_t *c = p + i + 2;
        i += 2;
        int r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, sep, strlen(sep), "symlink");
        sep = "/";
        switch (cf) {
        case 0x00:
        case 0x01:
            if (cl > len - i)
                return r;
            if (r == 0)
                r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, c, cl, "symlink");
            if (cf)
                sep = "";
            break;
        case 0x02:
            if (r == 0)
                r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, ".", 1, "symlink");
            break;
        case 0x04:
            if (r == 0)
                r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, "..", 2, "symlink");
            break;
        case 0x08:
            if (r == 0)
                r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, "/", 1, "symlink");
            sep = "";
            break;
        case 0x10:
            rr->tlen = 0;
            if (r == 0)
                r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, "ROOT", 4, "symlink");
            break;
        case 0x20:
            if (r == 0)
                r = rr_append(rr->target, &rr->tlen, VDISK_ISO_PATH_MAX, "hostname", 8,
                              "symlink");
            break;
        default:
            return r;
        }
        if (r < 0)
            return r;
        rr->sl_sep = *sep != '\0';
        if (cl > len - i)
            break;
        i += cl;
    }
    return 0;
}

/*
 * Parses one System Use area; *CE gets a continuation area when one is
 * named.  In a continuation area (LENIENT), an entry whose length does not
 * fit ends the area: genisoimage names continuation areas longer than
 * what it wrote in them, and the bytes after are another record's (the
 * kernel and libarchive stop there too).  In a record's own area it is
 * damage: -EINVAL.
 */
static int rr_area(struct rr *rr, const uint8_t *a, size_t len, uint64_t *ce_off,
                   uint32_t *ce_len, bool *stop, bool lenient)
{
    size_t i = 0;
    while (i + 4 <= len) {
        const uint8_t *p = a + i;
        unsigned l = p[2];
        if (p[0] == 0)
            break; /* padding */
        if ((l < 4 || l > len - i) && lenient)
            break;
        if (l < 4 || l > len - i)
            return err_set(-EINVAL, "SUSP entry '%c%c' at byte %zu of a System Use area of "
                           "%zu bytes: length %u, expected 4 to %zu",
                           p[0] >= 32 && p[0] < 127 ? p[0] : '?',
                           p[1] >= 32 && p[1] < 127 ? p[1] : '?', i, len, l, len - i);
        int r = 0;
        if (p[0] == 'S' && p[1] == 'T') {
            *stop = true;
            return 0;
        } else if (p[0] == 'C' && p[1] == 'E' && l >= 28) {
            *ce_off = (uint64_t)both32_load(p + 4) * ISO_SECTOR + both32_load(p + 12);
            *ce_len = both32_load(p + 20);
        } else if (p[0] == 'S' && p[1] == 'P' && l >= 7 && p[4] == 0xbe && p[5] == 0xef) {
            rr->sp = true;
            rr->sp_skip = p[6];
        } else if (p[0] == 'E' && p[1] == 'R') {
            rr->er = true;
        } else if (p[0] == 'P' && p[1] == 'X' && l >= 36) {
            rr->px = true;
            rr->mode = both32_load(p + 4);
            rr->nlink = both32_load(p + 12);
            rr->uid = both32_load(p + 20);
            rr->gid = both32_load(p + 28);
        } else if (p[0] == 'P' && p[1] == 'N' && l >= 20) {
            rr->pn = true;
            rr->rdev = (uint64_t)both32_load(p + 4) << 32 | both32_load(p + 12);
        } else if (p[0] == 'N' && p[1] == 'M' && l >= 5) {
            if (!rr->nm) {
                rr->nm = true;
                rr->nlen = 0;
                rr->name[0] = '\0';
            }
            if (p[4] & 2)
                r = rr_append(rr->name, &rr->nlen, VDISK_ISO_NAME_MAX, ".", 1, "name");
            else if (p[4] & 4)
                r = rr_append(rr->name, &rr->nlen, VDISK_ISO_NAME_MAX, "..", 2, "name");
            else
                r = rr_append(rr->name, &rr->nlen, VDISK_ISO_NAME_MAX, p + 5, l - 5, "name");
        } else if (p[0] == 'S' && p[1] == 'L' && l >= 5) {
            rr->sl = true;
            r = rr_sl(rr, p, l);
        } else if (p[0] == 'T' && p[1] == 'F' && l >= 5) {
            unsigned fl = p[4];
            size_t ts = fl & 0x80 ? 17 : 7, o = 5;
            for (int b = 0; b < 7; b++) {
                if (!(fl & (1u << b)))
                    continue;
                if (o + ts > l)
                    return err_set(-EINVAL, "Rock Ridge TF entry of %u bytes too short for its "
                                   "flags 0x%02x", l, fl);
                int64_t t = ts == 17 ? time17(p + o) : time7(p + o);
                if (b == 1) {
                    rr->mtime = t;
                    rr->has_mtime = true;
                } else if (b == 2) {
                    rr->atime = t;
                    rr->has_atime = true;
                } else if (b == 3) {
                    rr->ctime = t;
                    rr->has_ctime = true;
                }
                o += ts;
            }
        } else if (p[0] == 'R' && p[1] == 'E') {
            rr->re = true;
        } else if (p[0] == 'C' && p[1] == 'L' && l >= 12) {
            rr->cl = true;
            rr->cl_block = both32_load(p + 4);
        } else if (p[0] == 'Z' && (p[1] == 'F' || p[1] == '2')) {
            /* zisofs: checked when the file is read. */
            memset(&rr->zf, 0, sizeof rr->zf);
            rr->zf.on = true;
            rr->zf.sig = (char)p[1];
            rr->zf.len = (uint8_t)l;
            rr->zf.version = p[3];
            if (l >= 16) {
                rr->zf.alg[0] = (char)p[4];
                rr->zf.alg[1] = (char)p[5];
                rr->zf.hdr_words = p[6];
                rr->zf.log2_bs = p[7];
                rr->zf.size = p[3] == 1 ? both32_load(p + 8) : le64_load(p + 8);
            }
        }
        if (r < 0)
            return r;
        i += l;
    }
    return 0;
}

/* The System Use area of record REC (LEN bytes) and its continuation areas. */
static int rr_parse(struct vdisk_iso *iso, const uint8_t *rec, size_t len, unsigned skip,
                    struct rr *rr)
{
    memset(rr, 0, offsetof(struct rr, name));
    rr->name[0] = rr->target[0] = '\0';
    size_t su = 33 + (size_t)rec[32] + !(rec[32] & 1);
    if (su + skip >= len)
        return 0;
    uint64_t ce_off = 0, seen[ISO_MAX_CE];
    uint32_t ce_len = 0;
    bool stop = false;
    int r = rr_area(rr, rec + su + skip, len - su - skip, &ce_off, &ce_len, &stop, false);
    uint8_t *buf = NULL;
    for (unsigned n = 0; r == 0 && !stop && ce_len; n++) {
        if (n >= ISO_MAX_CE) {
            r = err_set(-ELOOP, "%s: more than %d SUSP continuation areas for one record",
                        iso->dev->filename, ISO_MAX_CE);
            break;
        }
        for (unsigned k = 0; k < n; k++)
            if (seen[k] == ce_off) {
                r = err_set(-ELOOP, "%s: SUSP continuation areas loop back to offset %" PRIu64,
                            iso->dev->filename, ce_off);
                break;
            }
        if (r < 0)
            break;
        seen[n] = ce_off;
        if (ce_len > ISO_MAX_CE_BYTES) {
            r = err_set(-EINVAL, "%s: SUSP continuation area of %" PRIu32 " bytes, expected at "
                        "most %u", iso->dev->filename, ce_len, ISO_MAX_CE_BYTES);
            break;
        }
        uint8_t *nb = realloc(buf, ce_len);
        if (!nb) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        buf = nb;
        r = rd(iso, buf, ce_len, ce_off, "SUSP continuation area");
        if (r < 0)
            break;
        uint32_t l = ce_len;
        ce_len = 0;
        r = rr_area(rr, buf, l, &ce_off, &ce_len, &stop, true);
    }
    free(buf);
    return r;
}

/* ---- Directory records ------------------------------------------------------- */

static void node_free(struct node *n)
{
    free(n->ext);
    n->ext = NULL;
    n->next = 0;
}

/*
 * Parses the record REC (LEN bytes, checked to lie inside its sector) of
 * namespace NS into N.  Multi-extent sections are appended to N when
 * APPEND.
 */
static int parse_record(struct vdisk_iso *iso, const uint8_t *rec, size_t len, int ns,
                        struct node *n, bool append)
{
    unsigned nl = rec[32];
    if (33 + (size_t)nl > len)
        return err_set(-EINVAL, "%s: a directory record of %zu bytes holds a name of %u bytes",
                       iso->dev->filename, len, nl);
    uint32_t block = both32_load(rec + 2), dlen = both32_load(rec + 10);
    uint64_t off = ((uint64_t)block + rec[1]) * ISO_SECTOR;
    uint8_t flags = rec[25];
    if (dlen && !range_inside(off, dlen, iso->size))
        return err_set(-EINVAL, "%s: the extent of %" PRIu32 " bytes at block %" PRIu32
                       " lies beyond the end of the image (%" PRIu64 " bytes)",
                       iso->dev->filename, dlen, block, iso->size);
    if (append) {
        if (n->next >= ISO_MAX_EXTENTS)
            return err_set(-EINVAL, "%s: '%s' has more than %d sections", iso->dev->filename,
                           n->e.name, ISO_MAX_EXTENTS);
        struct extent *ne = realloc(n->ext, (n->next + 1) * sizeof *ne);
        if (!ne)
            return err_set(-ENOMEM, "out of memory");
        n->ext = ne;
        n->ext[n->next++] = (struct extent){off, dlen};
        n->e.stored_size += dlen;
        if (!n->e.compressed)
            n->e.size += dlen;
        n->e.extents = n->next;
        n->flags = flags;
        return 0;
    }
    /* The entry's two strings are cleared by their first byte only: a
     * record is parsed for every entry a lookup passes. */
    n->e.name[0] = n->e.target[0] = '\0';
    memset((char *)&n->e + offsetof(struct vdisk_iso_entry, type), 0,
           offsetof(struct vdisk_iso_entry, target) - offsetof(struct vdisk_iso_entry, type));
    n->e.compressed = 0;
    n->e.stored_size = 0;
    n->dir_off = n->dir_len = 0;
    n->ext = NULL;
    n->next = 0;
    n->relocated = n->child_link = false;
    memset(&n->zf, 0, sizeof n->zf);
    n->flags = flags;
    bool dir = flags & 2;
    n->e.extent = block;
    n->e.size = n->e.stored_size = dlen;
    n->e.mtime = n->e.atime = n->e.ctime = time7(rec + 18);
    if (dir) {
        n->dir_off = off;
        n->dir_len = dlen;
        n->e.type = VDISK_ISO_DIR;
        n->e.mode = S_IFDIR | 0700;
        n->e.nlink = 2;
        n->e.extents = 1;
    } else {
        n->ext = malloc(sizeof *n->ext);
        if (!n->ext)
            return err_set(-ENOMEM, "out of memory");
        n->ext[0] = (struct extent){off, dlen};
        n->next = 1;
        n->e.extents = 1;
        n->e.type = VDISK_ISO_FILE;
        n->e.mode = S_IFREG | 0400;
        n->e.nlink = 1;
    }
    const uint8_t *name = rec + 33;
    if (nl == 1 && (name[0] == 0 || name[0] == 1))
        strcpy(n->e.name, name[0] ? ".." : ".");
    else if (ns == VDISK_ISO_NS_JOLIET) {
        ucs2_name(n->e.name, name, nl);
        strip_version(n->e.name, dir);
    } else {
        memcpy(n->e.name, name, nl);
        n->e.name[nl] = '\0';
        for (unsigned i = 0; i < nl; i++)
            if (!n->e.name[i])
                n->e.name[i] = '_';
        strip_version(n->e.name, dir);
    }
    if (ns != VDISK_ISO_NS_ROCKRIDGE || !iso->has_rr)
        return 0;
    struct rr *rr = malloc(sizeof *rr);
    if (!rr)
        return err_set(-ENOMEM, "out of memory");
    int r = rr_parse(iso, rec, len, iso->susp_skip, rr);
    if (r == 0) {
        if (rr->nm && strcmp(n->e.name, ".") && strcmp(n->e.name, ".."))
            memcpy(n->e.name, rr->name, rr->nlen + 1);
        if (rr->px) {
            n->e.mode = rr->mode;
            n->e.nlink = rr->nlink;
            n->e.uid = rr->uid;
            n->e.gid = rr->gid;
        }
        if (rr->pn)
            n->e.rdev = rr->rdev;
        if (rr->has_mtime)
            n->e.mtime = rr->mtime;
        if (rr->has_atime)
            n->e.atime = rr->atime;
        if (rr->has_ctime)
            n->e.ctime = rr->ctime;
        n->relocated = rr->re;
        if (rr->cl) {
            n->child_link = true;
            n->e.extent = rr->cl_block;
            n->e.type = VDISK_ISO_DIR;
            n->e.mode = (n->e.mode & 07777) | S_IFDIR;
            node_free(n);
        } else if (rr->px) {
            switch (rr->mode & S_IFMT) {
            case S_IFDIR:
                if (!dir)
                    r = err_set(-EINVAL, "%s: '%s': Rock Ridge says directory, the record says "
                                "file", iso->dev->filename, n->e.name);
                break;
            case S_IFREG:
                if (dir)
                    n->e.mode = (n->e.mode & 07777) | S_IFDIR;
                break;
            case S_IFLNK:
                n->e.type = dir ? VDISK_ISO_DIR : VDISK_ISO_SYMLINK;
                if (dir)
                    n->e.mode = (n->e.mode & 07777) | S_IFDIR;
                break;
            default:
                if (dir)
                    n->e.mode = (n->e.mode & 07777) | S_IFDIR;
                else
                    n->e.type = VDISK_ISO_OTHER;
            }
        }
        if (rr->sl && n->e.type == VDISK_ISO_SYMLINK)
            memcpy(n->e.target, rr->target, rr->tlen + 1);
        if (rr->zf.on && n->e.type == VDISK_ISO_FILE) {
            n->zf = rr->zf;
            n->e.compressed = 1;
            if (rr->zf.len == 16 && (rr->zf.version == 1 || rr->zf.version == 2))
                n->e.size = rr->zf.size;
        }
    }
    free(rr);
    return r;
}

/* Reads the directory record "." at the start of the extent at BLOCK. */
static int read_dot(struct vdisk_iso *iso, uint64_t off, int ns, struct node *n)
{
    uint8_t sec[ISO_SECTOR];
    int r = rd(iso, sec, sizeof sec, off, "directory");
    if (r < 0)
        return r;
    if (sec[0] < 34 || sec[32] != 1 || sec[33] != 0)
        return err_set(-EINVAL, "%s: the directory at block %" PRIu64 " does not start with "
                       "its '.' record", iso->dev->filename, off / ISO_SECTOR);
    r = parse_record(iso, sec, sec[0], ns, n, false);
    if (r == 0 && !(n->flags & 2))
        r = err_set(-EINVAL, "%s: the '.' record at block %" PRIu64 " is not a directory",
                    iso->dev->filename, off / ISO_SECTOR);
    return r;
}

typedef int (*dir_fn)(void *ctx, struct node *n);

/*
 * Calls FN for each entry of the directory at DIR_OFF (DIR_LEN bytes) in
 * namespace NS, "." and ".." and relocated entries left out, multi-extent
 * files joined.  FN returns 0 to go on, 1 to stop, or -errno.  The node's
 * sections belong to the walk (FN may take them by setting n->ext NULL).
 */
static int walk_dir(struct vdisk_iso *iso, uint64_t dir_off, uint64_t dir_len, int ns,
                    dir_fn fn, void *ctx)
{
    if (dir_len > ISO_MAX_DIR_BYTES)
        return err_set(-EINVAL, "%s: a directory of %" PRIu64 " bytes at block %" PRIu64
                       ", expected at most %u", iso->dev->filename, dir_len,
                       dir_off / ISO_SECTOR, ISO_MAX_DIR_BYTES);
    uint8_t *buf = malloc(dir_len ? dir_len : 1);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    int r = rd(iso, buf, dir_len, dir_off, "directory");
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        r = err_set(-ENOMEM, "out of memory");
    bool pending = false; /* n holds the first sections of a multi-extent file */
    size_t pos = 0;
    while (r == 0 && pos < dir_len) {
        size_t sec_end = align_down(pos, ISO_SECTOR) + ISO_SECTOR;
        if (sec_end > dir_len)
            sec_end = dir_len;
        unsigned len = buf[pos];
        if (len == 0) {
            pos = sec_end;
            continue;
        }
        if (len < 34 || pos + len > sec_end) {
            r = err_set(-EINVAL, "%s: directory record of %u bytes at byte %zu of the directory "
                        "at block %" PRIu64 ": expected 34 bytes or more inside its sector",
                        iso->dev->filename, len, pos, dir_off / ISO_SECTOR);
            break;
        }
        const uint8_t *rec = buf + pos;
        pos += len;
        if (rec[32] == 1 && (rec[33] == 0 || rec[33] == 1) && !pending)
            continue;
        if (pending) {
            r = parse_record(iso, rec, len, ns, n, true);
            if (r < 0)
                break;
        } else {
            r = parse_record(iso, rec, len, ns, n, false);
            if (r < 0)
                break;
        }
        if (n->flags & 0x80) {
            if (n->e.type != VDISK_ISO_FILE) {
                r = err_set(-EINVAL, "%s: '%s': a directory with several sections",
                            iso->dev->filename, n->e.name);
                break;
            }
            pending = true;
            continue;
        }
        pending = false;
        if (n->relocated) {
            node_free(n);
            continue;
        }
        if (n->child_link) {
            /* The relocated directory: its size from its "." record. */
            struct node *d = calloc(1, sizeof *d);
            if (!d) {
                r = err_set(-ENOMEM, "out of memory");
                break;
            }
            r = read_dot(iso, (uint64_t)n->e.extent * ISO_SECTOR, VDISK_ISO_NS_ISO9660, d);
            if (r == 0) {
                n->dir_off = d->dir_off;
                n->dir_len = d->dir_len;
                n->e.size = d->e.size;
                n->e.extents = 1;
            }
            node_free(d);
            free(d);
            if (r < 0)
                break;
        }
        r = fn(ctx, n);
        node_free(n);
    }
    if (r == 0 && pending)
        r = err_set(-EINVAL, "%s: '%s': the last section of a multi-extent file is missing",
                    iso->dev->filename, n->e.name);
    if (n)
        node_free(n);
    free(n);
    free(buf);
    return r < 0 ? r : 0;
}

/* ---- Lookup ------------------------------------------------------------------- */

static int root_node(struct vdisk_iso *iso, struct node *n)
{
    const uint8_t *rec = iso->ns == VDISK_ISO_NS_JOLIET ? iso->svd_root : iso->pvd_root;
    uint64_t off = ((uint64_t)both32_load(rec + 2) + rec[1]) * ISO_SECTOR;
    int r = read_dot(iso, off, iso->ns, n);
    if (r == 0)
        strcpy(n->e.name, ".");
    return r;
}

struct find_ctx {
    const char *name;
    size_t len;
    struct node *out;
    bool found;
};

static int find_fn(void *ctx, struct node *n)
{
    struct find_ctx *f = ctx;
    if (strlen(n->e.name) != f->len || memcmp(n->e.name, f->name, f->len))
        return 0;
    node_free(f->out);
    *f->out = *n;
    n->ext = NULL;
    n->next = 0;
    f->found = true;
    return 1;
}

/* Hides Rock Ridge's rr_moved: a root folder holding relocated directories only. */
static int count_fn(void *ctx, struct node *n)
{
    (void)n;
    ++*(unsigned *)ctx;
    return 1;
}

static bool hidden(struct vdisk_iso *iso, uint64_t dir_off, const struct node *n)
{
    if (iso->ns != VDISK_ISO_NS_ROCKRIDGE || n->e.type != VDISK_ISO_DIR ||
        dir_off != ((uint64_t)both32_load(iso->pvd_root + 2) + iso->pvd_root[1]) * ISO_SECTOR)
        return false;
    if (strcmp(n->e.name, "rr_moved") && strcmp(n->e.name, ".rr_moved") &&
        strcmp(n->e.name, "RR_MOVED"))
        return false;
    unsigned count = 0;
    if (walk_dir(iso, n->dir_off, n->dir_len, iso->ns, count_fn, &count) < 0)
        return false;
    return count == 0;
}

/* Resolves PATH to *OUT (symlinks followed inside the image). */
static int lookup(struct vdisk_iso *iso, const char *path, bool follow, struct node *out)
{
    if (!path)
        path = "";
    if (strlen(path) > VDISK_ISO_LOOKUP_MAX)
        return err_set(-ENAMETOOLONG, "path longer than %d bytes", VDISK_ISO_LOOKUP_MAX);
    /* DIRS: the extents of the directories from the root down to the
     * current one (up to ISO_MAX_DEPTH + 1 of them, grown as the path goes
     * deeper); CUR: the current entry whole (some 5 KiB), unless STALE
     * after "..": then it is read again, from its "." record, only if the
     * path ends there.  WORK, the path left to resolve, is as long as it
     * needs to be (at most 2 * VDISK_ISO_LOOKUP_MAX after symlinks). */
    unsigned cap = 16;
    while (cap < iso->lc_depth + 2)
        cap *= 2;
    struct extent *dirs = malloc(cap * sizeof *dirs);
    size_t *ends = malloc(cap * sizeof *ends);
    struct node *cur = calloc(1, sizeof *cur), *child = calloc(1, sizeof *child);
    char *work = strdup(path);
    int r = 0;
    if (!dirs || !ends || !cur || !child || !work) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    unsigned depth = 0, hops = 0;
    bool stale = false, pure = true; /* pure: descent alone, cacheable */
    r = root_node(iso, cur);
    if (r == 0)
        dirs[0] = (struct extent){cur->dir_off, cur->dir_len};
    ends[0] = 0;
    size_t pos = 0;
    /* Below the longest cached directory on the way, when a component is
     * left to resolve after it (the entry itself is then read whole). */
    for (unsigned j = iso->lc_depth; r == 0 && j >= 1; j--) {
        size_t e = iso->lc_ends[j], q = e;
        if (strncmp(work, iso->lc_path, e) || work[e] != '/')
            continue;
        while (work[q] == '/')
            q++;
        if (!work[q])
            continue;
        memcpy(dirs, iso->lc_dirs, (j + 1) * sizeof *dirs);
        memcpy(ends, iso->lc_ends, (j + 1) * sizeof *ends);
        depth = j;
        pos = e;
        stale = true;
        break;
    }
    while (r == 0) {
        while (work[pos] == '/')
            pos++;
        if (!work[pos])
            break;
        const char *comp = work + pos;
        size_t clen = strcspn(comp, "/");
        pos += clen;
        if (clen == 1 && comp[0] == '.') {
            pure = false;
            continue;
        }
        if (clen == 2 && comp[0] == '.' && comp[1] == '.') {
            pure = false;
            if (depth) {
                depth--;
                stale = true;
            }
            continue;
        }
        /* A stale entry is one of the directories above: a directory. */
        if (!stale && cur->e.type != VDISK_ISO_DIR) {
            r = err_set(-ENOTDIR, "%.200s: '%.*s' is not a directory", path,
                        (int)(comp - work > 200 ? 200 : comp - work), work);
            break;
        }
        if (depth >= ISO_MAX_DEPTH) {
            r = err_set(-ELOOP, "%.200s: more than %d directories deep", path, ISO_MAX_DEPTH);
            break;
        }
        if (depth + 1 >= cap) {
            unsigned ncap = cap * 2 > ISO_MAX_DEPTH + 1 ? ISO_MAX_DEPTH + 1 : cap * 2;
            struct extent *nd = realloc(dirs, ncap * sizeof *dirs);
            if (nd)
                dirs = nd;
            size_t *ne = nd ? realloc(ends, ncap * sizeof *ends) : NULL;
            if (!ne) {
                r = err_set(-ENOMEM, "out of memory");
                break;
            }
            ends = ne;
            cap = ncap;
        }
        struct find_ctx f = {comp, clen, child, false};
        r = walk_dir(iso, dirs[depth].off, dirs[depth].len, iso->ns, find_fn, &f);
        if (r < 0)
            break;
        if (!f.found || hidden(iso, dirs[depth].off, child)) {
            r = err_set(-ENOENT, "%.200s: no such file or directory", path);
            break;
        }
        bool last = true;
        for (size_t k = pos; work[k]; k++)
            if (work[k] != '/')
                last = false;
        if (child->e.type == VDISK_ISO_SYMLINK && (!last || follow)) {
            pure = false;
            if (++hops > ISO_MAX_HOPS) {
                r = err_set(-ELOOP, "%.200s: more than %d symlinks", path, ISO_MAX_HOPS);
                break;
            }
            size_t tl = strlen(child->e.target), rl = strlen(work + pos);
            size_t n = tl + 1 + rl;
            if (n > VDISK_ISO_LOOKUP_MAX * 2) {
                r = err_set(-ENAMETOOLONG, "%.200s: the path through symlinks is too long", path);
                break;
            }
            char *tmp = malloc(n + 1);
            if (!tmp) {
                r = err_set(-ENOMEM, "out of memory");
                break;
            }
            memcpy(tmp, child->e.target, tl);
            tmp[tl] = '/';
            memcpy(tmp + tl + 1, work + pos, rl + 1);
            if (child->e.target[0] == '/' && depth) {
                depth = 0;
                stale = true;
            }
            node_free(child);
            free(work);
            work = tmp;
            pos = 0;
            continue;
        }
        struct node *t = cur;
        node_free(cur);
        cur = child;
        child = t;
        stale = false;
        depth++;
        dirs[depth] = (struct extent){cur->dir_off, cur->dir_len};
        ends[depth] = pos;
    }
    if (r == 0 && stale) {
        node_free(cur);
        r = depth ? read_dot(iso, dirs[depth].off, iso->ns, cur) : root_node(iso, cur);
    }
    if (r == 0 && pure && depth && cur->e.type == VDISK_ISO_DIR) {
        /* Kept for the next lookup (a failed copy only loses the cache). */
        char *cp = strndup(work, ends[depth]);
        size_t *ce = malloc((depth + 1) * sizeof *ce);
        struct extent *cd = malloc((depth + 1) * sizeof *cd);
        if (cp && ce && cd) {
            memcpy(ce, ends, (depth + 1) * sizeof *ce);
            memcpy(cd, dirs, (depth + 1) * sizeof *cd);
            free(iso->lc_path);
            free(iso->lc_ends);
            free(iso->lc_dirs);
            iso->lc_path = cp;
            iso->lc_ends = ce;
            iso->lc_dirs = cd;
            iso->lc_depth = depth;
        } else {
            free(cp);
            free(ce);
            free(cd);
        }
    }
    if (r == 0) {
        *out = *cur;
        cur->ext = NULL;
        cur->next = 0;
    }
out:
    if (cur)
        node_free(cur);
    if (child)
        node_free(child);
    free(cur);
    free(child);
    free(dirs);
    free(ends);
    free(work);
    return r;
}

/* ---- Volume descriptors, path table, El Torito ---------------------------------- */

struct dirset {
    uint32_t *v;
    size_t n, cap;
};

/* Adds BLOCK; returns 1 when it was already there, 0, or -ENOMEM. */
static int dirset_add(struct dirset *s, uint32_t block)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->v[mid] == block)
            return 1;
        if (s->v[mid] < block)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint32_t *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    memmove(s->v + lo + 1, s->v + lo, (s->n - lo) * sizeof *s->v);
    s->v[lo] = block;
    s->n++;
    return 0;
}

static bool dirset_has(const struct dirset *s, uint32_t block)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->v[mid] == block)
            return true;
        if (s->v[mid] < block)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

struct tree_ctx {
    struct vdisk_iso *iso;
    struct dirset seen;
    struct extent *queue; /* directories to walk */
    size_t qn, qcap;
};

static int tree_fn(void *ctx, struct node *n)
{
    struct tree_ctx *t = ctx;
    if (n->e.type != VDISK_ISO_DIR)
        return 0;
    int r = dirset_add(&t->seen, n->e.extent);
    if (r < 0)
        return err_set(-ENOMEM, "out of memory");
    if (r == 1)
        return err_set(-ELOOP, "%s: directory loop: '%s' at block %" PRIu32
                       " is already in the tree", t->iso->dev->filename, n->e.name, n->e.extent);
    if (t->seen.n > ISO_MAX_DIRS)
        return err_set(-EINVAL, "%s: more than %d directories", t->iso->dev->filename,
                       ISO_MAX_DIRS);
    if (t->qn == t->qcap) {
        size_t cap = t->qcap ? t->qcap * 2 : 64;
        struct extent *nq = realloc(t->queue, cap * sizeof *nq);
        if (!nq)
            return err_set(-ENOMEM, "out of memory");
        t->queue = nq;
        t->qcap = cap;
    }
    t->queue[t->qn++] = (struct extent){n->dir_off, n->dir_len};
    return 0;
}

/* Sets the open's warning (the first one is kept). */
static void warn(struct vdisk_iso *iso, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct vdisk_iso *iso, const char *fmt, ...)
{
    if (iso->warning[0])
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(iso->warning, sizeof iso->warning, "%s: %s; the directory tree is used",
             iso->dev->filename, msg);
}

/*
 * The path table against the tree's directories SEEN: one record per
 * directory, each naming one of the tree.  Nothing reads files through
 * the path table, so a disagreement is a warning; only an I/O error fails.
 */
static int check_path_table(struct vdisk_iso *iso, uint32_t pt_block, uint32_t pt_size,
                            const struct dirset *seen)
{
    uint64_t pt_off = (uint64_t)pt_block * ISO_SECTOR;
    if (pt_size > ISO_MAX_DIR_BYTES) {
        warn(iso, "path table of %" PRIu32 " bytes, expected at most %u", pt_size,
             ISO_MAX_DIR_BYTES);
        return 0;
    }
    if (!range_inside(pt_off, pt_size, iso->size)) {
        warn(iso, "path table of %" PRIu32 " bytes at block %" PRIu32 " lies beyond the end "
             "of the image (%" PRIu64 " bytes)", pt_size, pt_block, iso->size);
        return 0;
    }
    uint8_t *pt = malloc(pt_size);
    if (!pt)
        return err_set(-ENOMEM, "out of memory");
    int r = dev_pread(iso->dev, pt, pt_size, pt_off);
    size_t pos = 0, count = 0;
    bool bad = false;
    while (r == 0 && !bad && pos + 8 <= pt_size) {
        unsigned nl = pt[pos];
        if (nl == 0 || pos + 8 + nl > pt_size) {
            warn(iso, "path table record %zu at byte %zu: name of %u bytes, expected 1 to %zu",
                 count + 1, pos, nl, pt_size - pos - 8);
            bad = true;
            break;
        }
        uint32_t block = le32_load(pt + pos + 2);
        if (!dirset_has(seen, block)) {
            warn(iso, "path table record %zu names a directory at block %" PRIu32 " that is "
                 "not in the directory tree", count + 1, block);
            bad = true;
        }
        count++;
        pos += 8 + nl + (nl & 1);
    }
    if (r == 0 && !bad && count != seen->n)
        warn(iso, "the path table lists %zu directories, the tree holds %zu", count, seen->n);
    free(pt);
    return r;
}

/* Walks the primary tree (loops refused) and checks the path table against it. */
static int check_tree(struct vdisk_iso *iso, uint32_t pt_block, uint32_t pt_size)
{
    struct tree_ctx t = {.iso = iso};
    struct node root = {0};
    int saved = iso->ns;
    iso->ns = VDISK_ISO_NS_ISO9660;
    int r = root_node(iso, &root);
    if (r == 0 && dirset_add(&t.seen, root.e.extent) < 0)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0 && !(t.queue = malloc(64 * sizeof *t.queue)))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        t.qcap = 64;
        t.queue[t.qn++] = (struct extent){root.dir_off, root.dir_len};
    }
    for (size_t i = 0; r == 0 && i < t.qn; i++)
        r = walk_dir(iso, t.queue[i].off, t.queue[i].len, VDISK_ISO_NS_ISO9660, tree_fn, &t);
    iso->ns = saved;
    node_free(&root);
    if (r == 0 && pt_size)
        r = check_path_table(iso, pt_block, pt_size, &t.seen);
    free(t.seen.v);
    free(t.queue);
    return r;
}

static int read_boot_catalog(struct vdisk_iso *iso, uint32_t block)
{
    uint8_t cat[ISO_SECTOR];
    int r = rd(iso, cat, sizeof cat, (uint64_t)block * ISO_SECTOR, "El Torito boot catalog");
    if (r < 0)
        return r;
    if (cat[0] != 1 || cat[30] != 0x55 || cat[31] != 0xaa)
        return err_set(-EINVAL, "%s: El Torito validation entry at block %" PRIu32
                       ": expected header id 1 and key 55 AA, found %u and %02X %02X",
                       iso->dev->filename, block, cat[0], cat[30], cat[31]);
    uint16_t sum = 0;
    for (int i = 0; i < 32; i += 2)
        sum = (uint16_t)(sum + le16_load(cat + i));
    if (sum != 0)
        return err_set(-EINVAL, "%s: El Torito validation entry checksum: the words sum to "
                       "0x%04x, expected 0", iso->dev->filename, sum);
    unsigned platform = cat[1];
    char id[29];
    field(id, cat + 4, 24);
    unsigned n = 0;
    size_t pos = 32;
    bool more = true;
    unsigned section_left = 1; /* the default entry */
    while (pos + 32 <= sizeof cat && n < ISO_MAX_BOOT) {
        const uint8_t *e = cat + pos;
        pos += 32;
        if (section_left == 0) {
            if (!more)
                break;
            if (e[0] != 0x90 && e[0] != 0x91)
                break;
            more = e[0] == 0x90;
            platform = e[1];
            section_left = le16_load(e + 2);
            field(id, e + 4, 28);
            continue;
        }
        if (e[0] == 0x44) /* an extension of the previous entry */
            continue;
        section_left--;
        if (e[0] != 0x88 && e[0] != 0x00) {
            if (n == 0)
                return err_set(-EINVAL, "%s: El Torito default entry: boot indicator 0x%02x, "
                               "expected 0x88 or 0x00", iso->dev->filename, e[0]);
            continue;
        }
        struct vdisk_iso_boot *b = &iso->boot[n];
        memset(b, 0, sizeof *b);
        b->index = n;
        b->bootable = e[0] == 0x88;
        b->platform = platform;
        memcpy(b->id, id, sizeof id);
        b->media = e[1] & 0x0f;
        b->load_segment = le16_load(e + 2);
        b->system_type = e[4];
        b->sector_count = le16_load(e + 6);
        b->load_rba = le32_load(e + 8);
        b->image_offset = (uint64_t)b->load_rba * ISO_SECTOR;
        switch (b->media) {
        case 1: b->image_size = 1200 * 1024; break;
        case 2: b->image_size = 1440 * 1024; break;
        case 3: b->image_size = 2880 * 1024; break;
        default: b->image_size = (uint64_t)(b->sector_count ? b->sector_count : 1) * 512;
        }
        n++;
        if (n == 1)
            section_left = 0;
    }
    iso->nboot = n;
    iso->info.boot_entries = n;
    return 0;
}

static int open_volume(struct vdisk_iso *iso, int ns)
{
    uint8_t vd[ISO_SECTOR];
    bool pvd = false, term = false;
    uint32_t pt_block = 0, pt_size = 0, boot_cat = 0;
    unsigned i;
    for (i = 0; i < ISO_MAX_VD && !term; i++) {
        uint64_t off = ISO_VD_START + (uint64_t)i * ISO_SECTOR;
        if (!range_inside(off, ISO_SECTOR, iso->size)) {
            if (i == 0)
                return err_set(-ENODATA, "%s: no ISO 9660 volume: the image (%" PRIu64
                               " bytes) ends before the volume descriptors",
                               iso->dev->filename, iso->size);
            return err_set(-EINVAL, "%s: the volume descriptor set runs past the end of the "
                           "image without a terminator", iso->dev->filename);
        }
        int r = dev_pread(iso->dev, vd, sizeof vd, off);
        if (r < 0)
            return r;
        if (memcmp(vd + 1, "CD001", 5) != 0) {
            if (i == 0)
                return err_set(-ENODATA, "%s: no ISO 9660 volume: no 'CD001' at byte 32769",
                               iso->dev->filename);
            return err_set(-EINVAL, "%s: volume descriptor %u (block %u): expected 'CD001'",
                           iso->dev->filename, i, 16 + i);
        }
        switch (vd[0]) {
        case 0:
            if (!memcmp(vd + 7, "EL TORITO SPECIFICATION", 23)) {
                boot_cat = le32_load(vd + 0x47);
                iso->info.namespaces |= VDISK_ISO_HAS_ELTORITO;
            }
            break;
        case 1:
            if (pvd)
                break;
            pvd = true;
            field(iso->info.system_id, vd + 8, 32);
            field(iso->info.volume_id, vd + 40, 32);
            iso->info.volume_space_size = both32_load(vd + 80);
            iso->info.volume_set_size = both16_load(vd + 120);
            iso->info.volume_sequence = both16_load(vd + 124);
            iso->info.block_size = both16_load(vd + 128);
            iso->info.path_table_size = pt_size = both32_load(vd + 132);
            pt_block = le32_load(vd + 140);
            memcpy(iso->pvd_root, vd + 156, 34);
            field(iso->info.volume_set_id, vd + 190, 128);
            field(iso->info.publisher_id, vd + 318, 128);
            field(iso->info.preparer_id, vd + 446, 128);
            field(iso->info.application_id, vd + 574, 128);
            field(iso->info.copyright_file, vd + 702, 37);
            field(iso->info.abstract_file, vd + 739, 37);
            field(iso->info.bibliographic_file, vd + 776, 37);
            memcpy(iso->info.creation_date, vd + 813, 16);
            memcpy(iso->info.modification_date, vd + 830, 16);
            memcpy(iso->info.expiration_date, vd + 847, 16);
            memcpy(iso->info.effective_date, vd + 864, 16);
            break;
        case 2:
            iso->info.svd_count++;
            if (vd[88] == '%' && vd[89] == '/' && (vd[90] == '@' || vd[90] == 'C' || vd[90] == 'E') &&
                !iso->info.joliet_level) {
                iso->info.joliet_level = vd[90] == '@' ? 1 : vd[90] == 'C' ? 2 : 3;
                iso->info.namespaces |= VDISK_ISO_HAS_JOLIET;
                memcpy(iso->svd_root, vd + 156, 34);
            }
            break;
        case 255:
            term = true;
            break;
        default:
            break;
        }
    }
    iso->info.descriptors = i;
    if (!term)
        return err_set(-EINVAL, "%s: no volume descriptor set terminator in the first %d "
                       "descriptors", iso->dev->filename, ISO_MAX_VD);
    if (!pvd)
        return err_set(-EINVAL, "%s: no primary volume descriptor", iso->dev->filename);
    if (iso->info.block_size != ISO_SECTOR)
        return err_set(-EINVAL, "%s: logical block size %" PRIu32 ", expected 2048",
                       iso->dev->filename, iso->info.block_size);
    if (iso->pvd_root[0] < 34 || !(iso->pvd_root[25] & 2))
        return err_set(-EINVAL, "%s: the root directory record is not a directory",
                       iso->dev->filename);
    if (iso->info.joliet_level && (iso->svd_root[0] < 34 || !(iso->svd_root[25] & 2)))
        return err_set(-EINVAL, "%s: the Joliet root directory record is not a directory",
                       iso->dev->filename);
    /* Rock Ridge: SP (and ER or PX) in the root's "." record. */
    uint8_t sec[ISO_SECTOR];
    uint64_t root_off = ((uint64_t)both32_load(iso->pvd_root + 2) + iso->pvd_root[1]) * ISO_SECTOR;
    int r = rd(iso, sec, sizeof sec, root_off, "root directory");
    if (r < 0)
        return r;
    if (sec[0] < 34 || sec[32] != 1 || sec[33] != 0)
        return err_set(-EINVAL, "%s: the root directory does not start with its '.' record",
                       iso->dev->filename);
    struct rr *rr = malloc(sizeof *rr);
    if (!rr)
        return err_set(-ENOMEM, "out of memory");
    r = rr_parse(iso, sec, sec[0], 0, rr);
    if (r == 0 && rr->sp && (rr->er || rr->px)) {
        iso->has_rr = true;
        iso->susp_skip = rr->sp_skip;
        iso->info.rr_version = 1;
        iso->info.namespaces |= VDISK_ISO_HAS_ROCKRIDGE;
    }
    free(rr);
    if (r < 0)
        return r;
    if (ns == VDISK_ISO_NS_AUTO)
        ns = iso->has_rr ? VDISK_ISO_NS_ROCKRIDGE
             : iso->info.joliet_level ? VDISK_ISO_NS_JOLIET : VDISK_ISO_NS_ISO9660;
    if ((ns == VDISK_ISO_NS_ROCKRIDGE && !iso->has_rr) ||
        (ns == VDISK_ISO_NS_JOLIET && !iso->info.joliet_level))
        return err_set(-ENOENT, "%s: the image has no %s names", iso->dev->filename,
                       ns == VDISK_ISO_NS_JOLIET ? "Joliet" : "Rock Ridge");
    if (ns < VDISK_ISO_NS_AUTO || ns > VDISK_ISO_NS_ISO9660)
        return err_set(-EINVAL, "unknown namespace %d", ns);
    iso->ns = ns;
    r = check_tree(iso, pt_block, pt_size);
    if (r < 0)
        return r;
    if (boot_cat) {
        iso->info.boot_catalog = boot_cat;
        r = read_boot_catalog(iso, boot_cat);
    }
    return r;
}

/* ---- zisofs ------------------------------------------------------------------------- */

static const uint8_t zf_magic1[8] = {0x37, 0xe4, 0x53, 0x96, 0xc9, 0xdb, 0xd6, 0x07};
static const uint8_t zf_magic2[8] = {0xef, 0x22, 0x55, 0xa1, 0xbc, 0x1b, 0x95, 0xa0};

#define ZF_PTRS 64 /* block pointers read at a time */

/*
 * Up to LEN bytes at OFFSET of N's bytes as stored in the image, across
 * its extents.  Returns the count (short at the end) or -errno.
 */
static int64_t stored_read(struct vdisk_iso *iso, const struct node *n, void *buf, size_t len,
                           uint64_t offset)
{
    if (offset >= n->e.stored_size)
        return 0;
    if (len > n->e.stored_size - offset)
        len = (size_t)(n->e.stored_size - offset);
    uint64_t done = 0, pos = 0;
    for (unsigned i = 0; i < n->next && done < len; i++) {
        const struct extent *x = &n->ext[i];
        if (offset + done < pos + x->len) {
            uint64_t in = offset + done - pos;
            uint64_t chunk = x->len - in;
            if (chunk > len - done)
                chunk = len - done;
            int r = rd(iso, (uint8_t *)buf + done, (size_t)chunk, x->off + in, "file data");
            if (r < 0)
                return r;
            done += chunk;
        }
        pos += x->len;
    }
    return (int64_t)done;
}

/* A zisofs file being read. */
struct zfile {
    struct vdisk_iso *iso;
    const struct node *n;
    const char *path;
    unsigned pw;              /* bytes per block pointer: 4, or 8 (zisofs2) */
    unsigned log2_bs;
    uint32_t bs;              /* block size */
    uint64_t size;            /* uncompressed bytes */
    uint64_t nblocks;
    uint64_t table_off;       /* the block pointers, in the stored file */
    uint64_t table_end;       /* where the data may start */
    uint64_t data_end;        /* the last pointer: where the data ends */
    uint64_t ptr[ZF_PTRS + 1];
    uint64_t ptr_first;       /* ptr[0] is block ptr_first's pointer */
    unsigned ptr_count;       /* pointers loaded (0: none) */
    size_t in_max;            /* compressBound(bs) */
    uint8_t *in, *tmp;
    z_stream zs;
    bool zs_ready;
};

static int zf_err(const struct zfile *z, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int zf_err(const struct zfile *z, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(err, "%s: '%s': %s", z->iso->dev->filename, z->path, msg);
}

/* Exactly LEN stored bytes at OFF. */
static int zf_pread(struct zfile *z, void *buf, size_t len, uint64_t off, const char *what)
{
    int64_t got = stored_read(z->iso, z->n, buf, len, off);
    if (got < 0)
        return (int)got;
    if ((uint64_t)got != len)
        return zf_err(z, -EINVAL, "zisofs %s: %zu bytes at byte %" PRIu64 " run past the "
                      "file's %" PRIu64 " bytes", what, len, off, z->n->e.stored_size);
    return 0;
}

static uint64_t zf_ptr(const struct zfile *z, const uint8_t *p)
{
    return z->pw == 4 ? le32_load(p) : le64_load(p);
}

/* Checks the ZF entry and the file header, reads the last block pointer. */
static int zf_open(struct zfile *z)
{
    const struct zisofs *zf = &z->n->zf;
    const char *name = zf->sig == '2' ? "Z2" : "ZF";
    if (zf->len != 16)
        return zf_err(z, -EINVAL, "Rock Ridge %s entry of %u bytes, expected 16", name, zf->len);
    unsigned max_log2, hdr_min;
    if (zf->version == 1 && zf->sig == 'F') {
        if (memcmp(zf->alg, "pz", 2))
            return zf_err(z, -ENOTSUP, "zisofs algorithm '%c%c' is not supported, expected "
                          "'pz' (zlib)", zf->alg[0], zf->alg[1]);
        z->pw = 4;
        max_log2 = 17;
        hdr_min = 16;
    } else if (zf->version == 2) {
        if (memcmp(zf->alg, "PZ", 2))
            return zf_err(z, -ENOTSUP, "zisofs2 algorithm '%c%c' is not supported, only 'PZ' "
                          "(zlib)", zf->alg[0], zf->alg[1]);
        z->pw = 8;
        max_log2 = 20;
        hdr_min = 24;
    } else {
        return zf_err(z, -ENOTSUP, "Rock Ridge %s entry version %u is not supported, expected "
                      "%s", name, zf->version, zf->sig == '2' ? "2 (zisofs2)"
                      : "1 (zisofs) or 2 (zisofs2)");
    }
    if (zf->log2_bs < 15 || zf->log2_bs > max_log2)
        return zf_err(z, -EINVAL, "zisofs block size 2^%u, expected 2^15 to 2^%u", zf->log2_bs,
                      max_log2);
    if ((unsigned)zf->hdr_words * 4 < hdr_min)
        return zf_err(z, -EINVAL, "zisofs header of %u bytes, expected %u or more",
                      zf->hdr_words * 4u, hdr_min);
    uint8_t h[24];
    int r = zf_pread(z, h, hdr_min, 0, "header");
    if (r < 0)
        return r;
    uint64_t size;
    unsigned words, log2_bs;
    if (z->pw == 4) {
        if (memcmp(h, zf_magic1, 8))
            return zf_err(z, -EINVAL, "no zisofs header: expected the magic 37 E4 53 96 C9 DB "
                          "D6 07, found %02X %02X %02X %02X %02X %02X %02X %02X", h[0], h[1],
                          h[2], h[3], h[4], h[5], h[6], h[7]);
        size = le32_load(h + 8);
        words = h[12];
        log2_bs = h[13];
        if (h[14] || h[15])
            return zf_err(z, -EINVAL, "zisofs header: reserved bytes %02X %02X, expected 0",
                          h[14], h[15]);
    } else {
        if (memcmp(h, zf_magic2, 8))
            return zf_err(z, -EINVAL, "no zisofs2 header: expected the magic EF 22 55 A1 BC 1B "
                          "95 A0, found %02X %02X %02X %02X %02X %02X %02X %02X", h[0], h[1],
                          h[2], h[3], h[4], h[5], h[6], h[7]);
        if (h[8] != 0 || h[10] != 1)
            return zf_err(z, -EINVAL, "zisofs2 header version %u and algorithm %u, expected 0 "
                          "and 1 (zlib)", h[8], h[10]);
        words = h[9];
        log2_bs = h[11];
        size = le64_load(h + 12);
    }
    if (size != zf->size || words != zf->hdr_words || log2_bs != zf->log2_bs)
        return zf_err(z, -EINVAL, "the zisofs header (%" PRIu64 " bytes, header of %u words, "
                      "block size 2^%u) disagrees with the %s entry (%" PRIu64 " bytes, %u "
                      "words, 2^%u)", size, words, log2_bs, name, zf->size, zf->hdr_words,
                      zf->log2_bs);
    z->size = size;
    z->log2_bs = log2_bs;
    z->bs = UINT32_C(1) << log2_bs;
    z->nblocks = (size >> log2_bs) + ((size & (z->bs - 1)) != 0);
    z->table_off = (uint64_t)words * 4;
    /* nblocks < 2^49: no overflow. */
    z->table_end = z->table_off + (z->nblocks + 1) * z->pw;
    if (z->table_end > z->n->e.stored_size)
        return zf_err(z, -EINVAL, "the zisofs block pointer table (%" PRIu64 " pointers of %u "
                      "bytes at byte %" PRIu64 ") runs past the file's %" PRIu64 " bytes",
                      z->nblocks + 1, z->pw, z->table_off, z->n->e.stored_size);
    uint8_t p[8];
    r = zf_pread(z, p, z->pw, z->table_off + z->nblocks * z->pw, "block pointer");
    if (r < 0)
        return r;
    z->data_end = zf_ptr(z, p);
    if (z->data_end < z->table_end || z->data_end > z->n->e.stored_size)
        return zf_err(z, -EINVAL, "the last zisofs block pointer is %" PRIu64 ", expected %"
                      PRIu64 " to %" PRIu64 " (the pointer table's end to the file's size)",
                      z->data_end, z->table_end, z->n->e.stored_size);
    z->in_max = compressBound(z->bs);
    z->in = malloc(z->in_max);
    z->tmp = malloc(z->bs);
    if (!z->in || !z->tmp)
        return err_set(-ENOMEM, "out of memory");
    if (inflateInit(&z->zs) != Z_OK)
        return err_set(-ENOMEM, "zlib: %s", z->zs.msg ? z->zs.msg : "inflateInit failed");
    z->zs_ready = true;
    return 0;
}

static void zf_close(struct zfile *z)
{
    if (z->zs_ready)
        inflateEnd(&z->zs);
    free(z->in);
    free(z->tmp);
}

/* Loads block B's pointer and the next one (and a few more), each checked. */
static int zf_load_ptrs(struct zfile *z, uint64_t b)
{
    if (z->ptr_count && b >= z->ptr_first && b + 1 < z->ptr_first + z->ptr_count)
        return 0;
    uint64_t left = z->nblocks - b;
    unsigned count = (unsigned)(left < ZF_PTRS ? left : ZF_PTRS) + 1;
    uint8_t raw[(ZF_PTRS + 1) * 8];
    int r = zf_pread(z, raw, (size_t)count * z->pw, z->table_off + b * z->pw, "block pointers");
    if (r < 0)
        return r;
    z->ptr_count = 0;
    for (unsigned i = 0; i < count; i++) {
        uint64_t v = zf_ptr(z, raw + (size_t)i * z->pw);
        if (v < z->table_end || v > z->data_end)
            return zf_err(z, -EINVAL, "zisofs block pointer %" PRIu64 " is %" PRIu64 ", expected %"
                          PRIu64 " to %" PRIu64 " (the pointer table's end to the last pointer)",
                          b + i, v, z->table_end, z->data_end);
        if (i && v < z->ptr[i - 1])
            return zf_err(z, -EINVAL, "zisofs block pointer %" PRIu64 " is %" PRIu64 ", before "
                          "the previous one (%" PRIu64 ")", b + i, v, z->ptr[i - 1]);
        z->ptr[i] = v;
    }
    z->ptr_first = b;
    z->ptr_count = count;
    return 0;
}

/* Block B's uncompressed bytes (WANT of them: the block size, or the tail) into DST. */
static int zf_block(struct zfile *z, uint64_t b, uint8_t *dst, size_t want)
{
    int r = zf_load_ptrs(z, b);
    if (r < 0)
        return r;
    uint64_t start = z->ptr[b - z->ptr_first], clen = z->ptr[b - z->ptr_first + 1] - start;
    if (clen == 0) {
        memset(dst, 0, want); /* a block of zeros */
        return 0;
    }
    if (clen > z->in_max)
        return zf_err(z, -EINVAL, "zisofs block %" PRIu64 " holds %" PRIu64 " compressed bytes, "
                      "more than zlib makes of %" PRIu32 " (%zu)", b, clen, z->bs, z->in_max);
    r = zf_pread(z, z->in, (size_t)clen, start, "block");
    if (r < 0)
        return r;
    if (inflateReset(&z->zs) != Z_OK)
        return zf_err(z, -EINVAL, "zlib: inflateReset failed");
    z->zs.next_in = z->in;
    z->zs.avail_in = (uInt)clen;
    z->zs.next_out = dst;
    z->zs.avail_out = (uInt)want;
    int zr = inflate(&z->zs, Z_FINISH);
    if (zr != Z_STREAM_END && z->zs.avail_out == 0) {
        /* Full: either only the end of the stream is left, or more data. */
        uint8_t extra;
        z->zs.next_out = &extra;
        z->zs.avail_out = 1;
        zr = inflate(&z->zs, Z_FINISH);
        if (z->zs.avail_out == 0)
            return zf_err(z, -EINVAL, "zisofs block %" PRIu64 " inflates to more than %zu bytes",
                          b, want);
        z->zs.avail_out = 0;
    }
    if (zr == Z_STREAM_END && z->zs.avail_out)
        return zf_err(z, -EINVAL, "zisofs block %" PRIu64 " inflates to %zu bytes, expected %zu",
                      b, want - z->zs.avail_out, want);
    if (zr != Z_STREAM_END)
        return zf_err(z, -EINVAL, "zisofs block %" PRIu64 " (%" PRIu64 " bytes at byte %" PRIu64
                      ") does not inflate: %s", b, clen, start,
                      z->zs.msg ? z->zs.msg
                      : zr == Z_BUF_ERROR ? "the compressed data ends early" : "zlib error");
    return 0;
}

/* Up to LEN uncompressed bytes at OFFSET of the zisofs file N. */
static int64_t zf_read(struct vdisk_iso *iso, const struct node *n, const char *path, void *buf,
                       size_t len, uint64_t offset)
{
    struct zfile *z = calloc(1, sizeof *z);
    if (!z)
        return err_set(-ENOMEM, "out of memory");
    z->iso = iso;
    z->n = n;
    z->path = path;
    int r = zf_open(z);
    uint64_t done = 0;
    if (r == 0 && offset < z->size) {
        if (len > z->size - offset)
            len = (size_t)(z->size - offset);
        while (r == 0 && done < len) {
            uint64_t pos = offset + done, b = pos >> z->log2_bs;
            size_t in_block = (size_t)(pos & (z->bs - 1));
            size_t want = z->size - (b << z->log2_bs) < z->bs
                          ? (size_t)(z->size - (b << z->log2_bs)) : z->bs;
            size_t copy = want - in_block;
            if (copy > len - done)
                copy = (size_t)(len - done);
            if (in_block == 0 && copy == want) {
                r = zf_block(z, b, (uint8_t *)buf + done, want);
            } else {
                r = zf_block(z, b, z->tmp, want);
                if (r == 0)
                    memcpy((uint8_t *)buf + done, z->tmp + in_block, copy);
            }
            done += copy;
        }
    }
    zf_close(z);
    free(z);
    return r < 0 ? r : (int64_t)done;
}

/* ---- Public API ------------------------------------------------------------------ */

int iso_read_pvd_basic(struct vdisk_dev *dev, uint32_t *blocks, char *volume_id)
{
    uint8_t vd[ISO_SECTOR];
    uint64_t size = dev_size(dev);
    for (unsigned i = 0; i < ISO_MAX_VD; i++) {
        uint64_t off = ISO_VD_START + (uint64_t)i * ISO_SECTOR;
        if (!range_inside(off, ISO_SECTOR, size))
            return 0;
        int r = dev_pread(dev, vd, sizeof vd, off);
        if (r < 0)
            return r;
        if (memcmp(vd + 1, "CD001", 5) != 0 || vd[0] == 255)
            return 0;
        if (vd[0] == 1) {
            if (blocks)
                *blocks = both32_load(vd + 80);
            if (volume_id)
                field(volume_id, vd + 40, 32);
            return 1;
        }
    }
    return 0;
}

VDISK_EXPORT int vdisk_iso_probe(vdisk_dev *dev, char *volume_id, size_t len)
{
    err_enter(__func__);
    if (!dev)
        return err_set(-EINVAL, "no device");
    char id[33] = "";
    int r = iso_read_pvd_basic(dev, NULL, id);
    if (r > 0 && volume_id && len)
        snprintf(volume_id, len, "%s", id);
    return r;
}

VDISK_EXPORT int vdisk_iso_open(vdisk_iso **out, vdisk_dev *dev, int ns)
{
    err_enter(__func__);
    *out = NULL;
    if (!dev)
        return err_set(-EINVAL, "no device");
    if (ns < VDISK_ISO_NS_AUTO || ns > VDISK_ISO_NS_ISO9660)
        return err_set(-EINVAL, "unknown namespace %d", ns);
    struct vdisk_iso *iso = calloc(1, sizeof *iso);
    if (!iso)
        return err_set(-ENOMEM, "out of memory");
    iso->dev = dev;
    iso->size = dev_size(dev);
    int r = open_volume(iso, ns);
    if (r < 0) {
        free(iso);
        return r;
    }
    dev_ref(dev);
    *out = iso;
    return 0;
}

VDISK_EXPORT void vdisk_iso_close(vdisk_iso *iso)
{
    if (!iso)
        return;
    dev_unref(iso->dev);
    free(iso->lc_path);
    free(iso->lc_ends);
    free(iso->lc_dirs);
    free(iso);
}

VDISK_EXPORT const char *vdisk_iso_warning(const vdisk_iso *iso)
{
    return iso && iso->warning[0] ? iso->warning : NULL;
}

VDISK_EXPORT int vdisk_iso_namespace(const vdisk_iso *iso)
{
    return iso->ns;
}

VDISK_EXPORT int vdisk_iso_get_info(const vdisk_iso *iso, struct vdisk_iso_info *info)
{
    err_enter(__func__);
    struct vdisk_iso_info full = iso->info;
    return ABI_OUT(vdisk_iso_info, info, &full, VDISK_ISO_INFO_SIZE_V1);
}

VDISK_EXPORT int vdisk_iso_stat(vdisk_iso *iso, const char *path, int follow,
                                struct vdisk_iso_entry *e)
{
    err_enter(__func__);
    struct node n = {0};
    int r = lookup(iso, path, follow, &n);
    if (r == 0)
        *e = n.e;
    node_free(&n);
    return r;
}

struct list_ctx {
    struct vdisk_iso *iso;
    const struct node *dir;
    struct vdisk_iso_entry *v;
    size_t n, cap;
};

static int list_fn(void *ctx, struct node *n)
{
    struct list_ctx *l = ctx;
    if (hidden(l->iso, l->dir->dir_off, n))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct vdisk_iso_entry *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return err_set(-ENOMEM, "out of memory");
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = n->e;
    return 0;
}

VDISK_EXPORT int vdisk_iso_list(vdisk_iso *iso, const char *path, struct vdisk_iso_entry **out,
                                size_t *count)
{
    err_enter(__func__);
    *out = NULL;
    *count = 0;
    struct node d = {0};
    int r = lookup(iso, path, true, &d);
    if (r == 0 && d.e.type != VDISK_ISO_DIR)
        r = err_set(-ENOTDIR, "%s: not a directory", path);
    struct list_ctx l = {iso, &d, NULL, 0, 0};
    if (r == 0)
        r = walk_dir(iso, d.dir_off, d.dir_len, iso->ns, list_fn, &l);
    node_free(&d);
    if (r < 0) {
        free(l.v);
        return r;
    }
    *out = l.v ? l.v : calloc(1, sizeof *l.v);
    if (!*out)
        return err_set(-ENOMEM, "out of memory");
    *count = l.n;
    return 0;
}

VDISK_EXPORT void vdisk_iso_list_free(struct vdisk_iso_entry *entries)
{
    free(entries);
}

VDISK_EXPORT int64_t vdisk_iso_read(vdisk_iso *iso, const char *path, void *buf, size_t len,
                                    uint64_t offset)
{
    err_enter(__func__);
    struct node n = {0};
    int r = lookup(iso, path, true, &n);
    if (r == 0 && n.e.type == VDISK_ISO_DIR)
        r = err_set(-EISDIR, "%s: is a directory", path);
    if (r < 0) {
        node_free(&n);
        return r;
    }
    if (len > INT64_MAX)
        len = INT64_MAX;
    int64_t got = n.e.compressed ? zf_read(iso, &n, path, buf, len, offset)
                                 : stored_read(iso, &n, buf, len, offset);
    node_free(&n);
    return got;
}

VDISK_EXPORT int vdisk_iso_readlink(vdisk_iso *iso, const char *path, char *buf, size_t len)
{
    err_enter(__func__);
    struct node n = {0};
    int r = lookup(iso, path, false, &n);
    node_free(&n);
    if (r < 0)
        return r;
    if (n.e.type != VDISK_ISO_SYMLINK)
        return err_set(-EINVAL, "%s: not a symlink", path);
    size_t l = strlen(n.e.target);
    if (l >= len)
        return err_set(-ERANGE, "%s: the target of %zu bytes does not fit in %zu", path, l, len);
    memcpy(buf, n.e.target, l + 1);
    return (int)l;
}

VDISK_EXPORT unsigned vdisk_iso_boot_count(const vdisk_iso *iso)
{
    return iso->nboot;
}

VDISK_EXPORT int vdisk_iso_boot_get(const vdisk_iso *iso, unsigned index, struct vdisk_iso_boot *b)
{
    err_enter(__func__);
    if (index >= iso->nboot)
        return err_set(-ERANGE, "no El Torito entry %u (the image has %u)", index, iso->nboot);
    size_t have;
    int r = ABI_SIZE(vdisk_iso_boot, b, VDISK_ISO_BOOT_SIZE_V1, &have);
    if (r < 0)
        return r;
    struct vdisk_iso_boot full = iso->boot[index];
    abi_copy_out(b, &full, have, sizeof full);
    return 0;
}

VDISK_EXPORT int vdisk_iso_open_boot(vdisk_iso *iso, unsigned index, vdisk_dev **out)
{
    err_enter(__func__);
    *out = NULL;
    if (index >= iso->nboot)
        return err_set(-ERANGE, "no El Torito entry %u (the image has %u)", index, iso->nboot);
    const struct vdisk_iso_boot *b = &iso->boot[index];
    if (!range_inside(b->image_offset, b->image_size, iso->size))
        return err_set(-EINVAL, "%s: El Torito entry %u: the boot image of %" PRIu64
                       " bytes at block %" PRIu32 " lies beyond the end of the image (%" PRIu64
                       " bytes)", iso->dev->filename, index, b->image_size, b->load_rba,
                       iso->size);
    return vdisk_open_range(out, iso->dev, b->image_offset, b->image_size, VDISK_OPEN_RDONLY);
}
