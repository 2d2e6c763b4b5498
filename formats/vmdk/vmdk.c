/* SPDX-License-Identifier: MIT */
/*
 * formats/vmdk/vmdk.c: VMware disks (VMDK), read: monolithicSparse,
 * streamOptimized (compressed grains with markers), monolithicFlat,
 * twoGbMaxExtentSparse/Flat, vmfs, and ESX's vmfsSparse (COWD) and
 * seSparse extents (multi-extent descriptors), with a parent disk
 * (parentFileNameHint, whose CID must be the child's parentCID).  Written:
 * sparse and flat extents (new grains at the end of the extent's file,
 * grain tables written back at flush) and streamOptimized images; a
 * writable open of the other kinds is refused with the command that
 * converts the image to qcow2.  create.c makes new images.
 *
 * An image is either a sparse extent file (magic "KDMV", a 512-byte header
 * and, for monolithicSparse and streamOptimized, an embedded text
 * descriptor) or a text descriptor file whose extent lines name other
 * files:
 *     RW 2048 SPARSE "disk-s001.vmdk"
 *     RW 4192256 FLAT "disk-flat.vmdk" 0
 *     RW 1024 ZERO
 * Extent files are found next to the descriptor, under the same rules as a
 * backing file (backing-confine, backing-allow-network).
 *
 * A sparse extent (little-endian): capacity and grain size in sectors, a
 * grain directory (GD) of 32-bit sector offsets of grain tables (GTs) of
 * numGTEsPerGT 32-bit sector offsets of grains (0: not allocated, the
 * parent's or zeroes; 1 with the zeroed-grain flag: zeroes).  A
 * streamOptimized extent keeps its header's real copy in a footer at the
 * end of the file, and each grain behind a marker (its LBA and compressed
 * size) as a zlib stream.
 *
 * Every header field and descriptor line is checked against the file's real
 * length and vdisk's named limits before anything is allocated; a GT or
 * grain offset outside its file fails the read that meets it, naming the
 * extent, table and entry.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#include "driver.h"
#include "vmdk.h"

#define SECTOR                 512u
#define VMDK_GD_AT_END         0xffffffffffffffffull
/* vdisk's bounds, named: the descriptor text, extents in one descriptor,
 * a grain (QEMU's 0x200000 sectors; 2 MiB when compressed: a compressed
 * grain is inflated whole), a GT, the GD held in memory, GTs cached, the
 * chain of parents. */
#define VMDK_DESC_MAX          (1u << 20)
#define VMDK_EXTENTS_MAX       1024u
#define VMDK_GRAIN_MAX_SECTORS 0x200000ull
#define VMDK_CGRAIN_MAX        (2u << 20)
#define VMDK_GTES_MAX          512u
/* ESX's sparse extents: a COWD (vmfsSparse) GT holds 4096 entries; an
 * seSparse one 4096 64-bit entries over grains of 8 sectors.  vdisk reads
 * seSparse files under 2 TiB (grain sectors in 32 bits). */
#define VMDK3_GTES             4096u
#define SESPARSE_GTES          4096u
#define SESPARSE_GRAIN         8u
#define SESPARSE_BAD_ENTRY     0xffffffffu   /* a GT entry QEMU calls an error */
#define VMDK_GD_MAX_BYTES      (64u << 20)
#define VMDK_GT_CACHE          16u
#define VMDK_MAX_CHAIN_DEPTH   64u

enum ext_type { EXT_SPARSE, EXT_FLAT, EXT_ZERO };

struct gt_slot {
    uint64_t off;                 /* the GT's sector; 0: empty */
    uint32_t *t;                  /* entries, host order */
    uint64_t used;
    uint64_t gdi;                 /* its grain directory entry */
    bool dirty;                   /* entries set that the file does not have yet */
};

/* Dirty GTs (new grains not yet written back) a cache may hold: the rest
 * stay free for eviction; the writer writes back when it reaches this. */
#define VMDK_GT_DIRTY_MAX (VMDK_GT_CACHE / 2)

struct extent {
    enum ext_type type;
    char kind[16];                /* the descriptor's type word ("" for the image's own) */
    struct vdisk_dev *file;       /* NULL for ZERO */
    char *name;                   /* as in the descriptor (or the image's) */
    uint64_t start, sectors;      /* where it lies in the disk */
    uint64_t flat_off;            /* FLAT: its first sector in the file */
    /* SPARSE */
    uint64_t file_size;
    uint32_t flags;
    uint64_t grain;               /* sectors */
    uint32_t gtes;                /* per GT */
    uint64_t gd_off;              /* sectors */
    uint32_t *gd;                 /* host order */
    uint64_t gd_entries;
    bool compressed, markers, zero_grain;
    bool footer;                  /* the header is the footer's (GD at the end) */
    bool cowd;                    /* an ESX vmfsSparse extent (COWD header) */
    bool se;                      /* an ESX seSparse extent: 64-bit entries */
    uint64_t se_grains;           /* seSparse: the grains' first sector */
    struct gt_slot cache[VMDK_GT_CACHE];
    uint64_t clock;
    /* Writing (sparse extents) */
    uint32_t *rgd;                /* the redundant GD (RGD flag), or NULL */
    uint64_t alloc_next;          /* byte offset of the next new grain */
    uint64_t tail;                /* compressed: the file reaches at least here
                                   * (the last new grain's start plus a grain,
                                   * zeroes after its data, as QEMU leaves it) */
    unsigned ndirty;              /* dirty GTs in the cache */
};

struct vmdk {
    struct vdisk_dev *dev, *file;  /* file: the image's own */
    struct vdisk_dev *parent;
    struct offload *offload;
    pthread_mutex_t lock;          /* the GT caches */
    struct extent *ext;
    unsigned n;
    uint64_t sectors;
    uint32_t cid, parent_cid;
    char create_type[64];
    char *parent_name, *full_parent;
    bool confine, allow_network;
    struct vdisk_extent_info *einfo;  /* for vdisk_get_info */
    /* Writing */
    bool writable;
    bool cid_written;              /* the new CID of the first write is in the descriptor */
    char *desc;                    /* the descriptor's text, where its CID is rewritten */
    uint64_t desc_at;              /* its byte offset in s->file */
};

struct vmdk_req {
    uint64_t gt_ext, gt_off;       /* the GT to load before starting again */
    uint32_t loads;                /* GTs loaded for it so far */
};

/* A request that needed more GTs than this, one after another, is served
 * whole on the worker (its GTs could evict each other from the cache for
 * ever: a GT may map as little as 512 bytes). */
#define VMDK_LOADS_BEFORE_SYNC 4u
_Static_assert(sizeof(struct vmdk_req) <= REQ_STATE_MAX, "vmdk's request state fits");

/* ---- Probing ------------------------------------------------------------- */

/* A text descriptor: comment lines, blank lines, then "version=N". */
static bool looks_like_descriptor(const uint8_t *b, size_t len)
{
    const uint8_t *p = b, *end = b + len;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        if (*p == ' ' || *p == '\r' || *p == '\n') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                return false;
            p++;
            continue;
        }
        size_t left = (size_t)(end - p);
        return left >= 10 && memcmp(p, "version=", 8) == 0 && p[8] >= '1' && p[8] <= '3' &&
               (p[9] == '\n' || (left >= 11 && p[9] == '\r' && p[10] == '\n'));
    }
    return false;
}

static int vmdk_probe(const uint8_t *buf, size_t len)
{
    if (len >= 4 && (le32_load(buf) == VMDK4_MAGIC || le32_load(buf) == VMDK3_MAGIC))
        return 100;
    return looks_like_descriptor(buf, len) ? 100 : 0;
}

/* ---- Descriptor ---------------------------------------------------------- */

/* The value of KEY in the descriptor (KEY=VALUE or KEY = "VALUE"), without
 * quotes, into OUT; false when absent. */
static bool desc_get(const char *desc, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    for (const char *p = desc; *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        const char *q = p;
        while (q < p + ll && (*q == ' ' || *q == '\t'))
            q++;
        if ((size_t)(p + ll - q) > kl && !strncmp(q, key, kl)) {
            const char *v = q + kl;
            while (v < p + ll && (*v == ' ' || *v == '\t'))
                v++;
            if (v < p + ll && *v == '=') {
                v++;
                while (v < p + ll && (*v == ' ' || *v == '\t'))
                    v++;
                const char *ve = p + ll;
                while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                    v++;
                    ve--;
                }
                size_t n = (size_t)(ve - v);
                if (n >= size)
                    n = size - 1;
                memcpy(out, v, n);
                out[n] = 0;
                return true;
            }
        }
        p += ll + (eol ? 1 : 0);
    }
    return false;
}

static int parse_hex32(const char *fn, const char *key, const char *v, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 16);
    if (errno || end == v || *end || x > 0xffffffffull)
        return err_set(-EINVAL, "%s: the descriptor's %s is '%s'; expected a hexadecimal "
                       "number of up to 8 digits", fn, key, v);
    *out = (uint32_t)x;
    return 0;
}

/* ---- Sparse extents ------------------------------------------------------ */

/* Reads the GD of E (E->gd_entries 32-bit entries at sector E->gd_off),
 * checked to lie in the file and to cover the extent's CAPACITY. */
static int read_gd(struct extent *e, uint64_t capacity, const char *what)
{
    uint64_t per_gt = e->grain * e->gtes;
    uint64_t need = capacity / per_gt + (capacity % per_gt != 0);
    if (e->gd_entries < need)
        return err_set(-EINVAL, "%s: the grain directory has %" PRIu64 " entries; the "
                       "extent's %" PRIu64 " sectors need %" PRIu64, what, e->gd_entries,
                       capacity, need);
    if (e->gd_entries > VMDK_GD_MAX_BYTES / 4)
        return err_set(-EFBIG, "%s: a grain directory of %" PRIu64 " entries; vdisk holds at "
                       "most %u bytes of it", what, e->gd_entries, VMDK_GD_MAX_BYTES);
    if (e->gd_off > e->file_size / SECTOR ||
        e->gd_entries * 4 > e->file_size - e->gd_off * SECTOR)
        return err_set(-EINVAL, "%s: the grain directory at sector %" PRIu64 " (%" PRIu64
                       " entries) does not lie in the file (%" PRIu64 " bytes)", what,
                       e->gd_off, e->gd_entries, e->file_size);
    size_t bytes = (size_t)(e->gd_entries * 4);
    e->gd = malloc(bytes ? bytes : 1);
    if (!e->gd)
        return err_set(-ENOMEM, "out of memory for a grain directory");
    int r;
    if (bytes && (r = dev_pread(e->file, e->gd, bytes, e->gd_off * SECTOR)) < 0)
        return r;
    for (uint64_t i = 0; i < e->gd_entries; i++)
        e->gd[i] = le32_load(&e->gd[i]);
    e->type = EXT_SPARSE;
    return 0;
}

/* An ESX vmfsSparse extent, header H (little-endian after the "COWD"
 * magic: version, flags, disk sectors, granularity, GD sector, GD entries;
 * 32-bit fields): grain tables of 4096 entries, no zeroed grains. */
static int open_cowd(struct extent *e, const uint8_t *h, const char *what)
{
    uint64_t capacity = le32_load(h + 12);
    e->grain = le32_load(h + 16);
    e->gd_off = le32_load(h + 20);
    e->gd_entries = le32_load(h + 24);
    e->gtes = VMDK3_GTES;
    e->cowd = true;
    if (e->grain == 0 || e->grain > VMDK_GRAIN_MAX_SECTORS || (e->grain & (e->grain - 1)))
        return err_set(-EINVAL, "%s: the COWD granularity (offset 16) is %" PRIu64 " sectors; "
                       "expected a power of two up to %llu", what, e->grain,
                       (unsigned long long)VMDK_GRAIN_MAX_SECTORS);
    if (capacity < e->sectors)
        return err_set(-EINVAL, "%s: the extent's capacity (offset 12) is %" PRIu64 " sectors; "
                       "the descriptor gives it %" PRIu64, what, capacity, e->sectors);
    return read_gd(e, e->sectors, what);
}

/* An ESX seSparse extent (the "const" header of 64-bit fields at sector 0,
 * a "volatile" header, a GD and GTs of 64-bit entries, 4 KiB grains):
 * checked as strictly as QEMU does, its GD turned into GT sectors and each
 * GT entry into a grain sector (1: zeroes) as it is loaded. */
static int open_sesparse(struct extent *e, const char *what)
{
    uint8_t h[SECTOR], vh[SECTOR];
    e->file_size = dev_size(e->file);
    if (e->file->file_length && e->file->file_length < e->file_size)
        e->file_size = e->file->file_length;
    if (e->file_size < SECTOR)
        return err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; an seSparse header "
                       "needs 512", what, e->file_size);
    if (e->file_size >= (uint64_t)SESPARSE_BAD_ENTRY * SECTOR)
        return err_set(-ENOTSUP, "%s: an seSparse file of %" PRIu64 " bytes; vdisk reads "
                       "seSparse files under 2 TiB", what, e->file_size);
    int r = dev_pread(e->file, h, sizeof h, 0);
    if (r < 0)
        return r;
    uint64_t f[26];
    for (unsigned i = 0; i < 26; i++)
        f[i] = le64_load(h + 8 * i);
    if (f[0] != 0xcafebabeull)
        return err_set(-EINVAL, "%s: bad seSparse header magic 0x%016" PRIx64 " (offset 0; "
                       "expected 0x00000000cafebabe)", what, f[0]);
    if (f[1] != 0x0000000200000001ull)
        return err_set(-ENOTSUP, "%s: seSparse version 0x%016" PRIx64 " (offset 8); expected "
                       "0x0000000200000001", what, f[1]);
    if (f[3] != SESPARSE_GRAIN || f[4] != 64 || f[5] != 0 || f[6] || f[7] || f[8] || f[9])
        return err_set(-ENOTSUP, "%s: an seSparse header with grain size %" PRIu64 ", grain "
                       "table size %" PRIu64 ", flags 0x%" PRIx64 " or reserved fields set; "
                       "vdisk reads grains of 8 sectors, tables of 64 sectors, no flags", what,
                       f[3], f[4], f[5]);
    for (unsigned i = 26 * 8; i < SECTOR; i++)
        if (h[i])
            return err_set(-ENOTSUP, "%s: the seSparse header's padding is not zero (offset "
                           "%u)", what, i);
    uint64_t capacity = f[2], vh_off = f[10], gd_off = f[16], gd_size = f[17];
    uint64_t gts_off = f[18], grains_off = f[24];
    if (vh_off > e->file_size / SECTOR - 1)
        return err_set(-EINVAL, "%s: the seSparse volatile header at sector %" PRIu64 " is not "
                       "inside the file (%" PRIu64 " bytes)", what, vh_off, e->file_size);
    if ((r = dev_pread(e->file, vh, sizeof vh, vh_off * SECTOR)) < 0)
        return r;
    if (le64_load(vh) != 0xcafecafeull)
        return err_set(-EINVAL, "%s: bad seSparse volatile header magic 0x%016" PRIx64 " (sector "
                       "%" PRIu64 "; expected 0x00000000cafecafe)", what, le64_load(vh), vh_off);
    if (le64_load(vh + 24))
        return err_set(-ENOTSUP, "%s: the seSparse image is dirty; vdisk does not replay its "
                       "journal", what);
    for (unsigned i = 32; i < SECTOR; i++)
        if (vh[i])
            return err_set(-ENOTSUP, "%s: the seSparse volatile header's padding is not zero "
                           "(offset %u)", what, i);
    if (capacity < e->sectors)
        return err_set(-EINVAL, "%s: the extent's capacity (offset 16) is %" PRIu64 " sectors; "
                       "the descriptor gives it %" PRIu64, what, capacity, e->sectors);
    if (gd_size > VMDK_GD_MAX_BYTES / SECTOR || gts_off > e->file_size / SECTOR ||
        grains_off > e->file_size / SECTOR)
        return err_set(-EINVAL, "%s: the seSparse grain directory (%" PRIu64 " sectors), grain "
                       "tables (sector %" PRIu64 ") or grains (sector %" PRIu64 ") do not lie "
                       "in the file (%" PRIu64 " bytes)", what, gd_size, gts_off, grains_off,
                       e->file_size);
    e->se = true;
    e->se_grains = grains_off;
    e->grain = SESPARSE_GRAIN;
    e->gtes = SESPARSE_GTES;
    e->zero_grain = true;
    e->gd_off = gd_off;
    uint64_t n = gd_size * SECTOR / 8;
    uint64_t per_gt = e->grain * e->gtes;
    uint64_t need = e->sectors / per_gt + (e->sectors % per_gt != 0);
    if (n < need || gd_off > e->file_size / SECTOR || n * 8 > e->file_size - gd_off * SECTOR)
        return err_set(-EINVAL, "%s: the seSparse grain directory at sector %" PRIu64 " (%"
                       PRIu64 " entries, %" PRIu64 " needed) does not lie in the file (%"
                       PRIu64 " bytes)", what, gd_off, n, need, e->file_size);
    uint64_t *raw = malloc(n ? (size_t)n * 8 : 1);
    e->gd = malloc(n ? (size_t)n * 4 : 1);
    if (!raw || !e->gd) {
        free(raw);
        return err_set(-ENOMEM, "out of memory for a grain directory");
    }
    if (n && (r = dev_pread(e->file, raw, (size_t)n * 8, gd_off * SECTOR)) < 0) {
        free(raw);
        return r;
    }
    e->gd_entries = n;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x = le64_load(&raw[i]);
        uint64_t gt = gts_off + (x & 0xffffffffull) * 64;
        if (x == 0) {
            e->gd[i] = 0;
        } else if ((x >> 32) != 0x10000000ull || gt >= SESPARSE_BAD_ENTRY) {
            free(raw);
            return err_set(-EINVAL, "%s: seSparse grain directory entry %" PRIu64 " is 0x%016"
                           PRIx64 "; expected 0 or 0x10000000 and a grain table's number",
                           what, i, x);
        } else {
            e->gd[i] = (uint32_t)gt;
        }
    }
    free(raw);
    e->type = EXT_SPARSE;
    return 0;
}

static int open_sparse(struct vmdk *s, struct extent *e, const char *what)
{
    uint8_t h[SECTOR];
    e->file_size = dev_size(e->file);
    if (e->file->file_length && e->file->file_length < e->file_size)
        e->file_size = e->file->file_length;
    if (e->file_size < SECTOR)
        return err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; a sparse extent header "
                       "needs 512", what, e->file_size);
    int r = dev_pread(e->file, h, sizeof h, 0);
    if (r < 0)
        return r;
    uint32_t magic = le32_load(h + VMDK_H_MAGIC);
    if (magic == VMDK3_MAGIC)
        return open_cowd(e, h, what);
    if (magic != VMDK4_MAGIC)
        return err_set(-EINVAL, "%s: not a VMDK sparse extent (magic 0x%08" PRIx32 " at offset "
                       "0; expected 0x%08x)", what, magic, VMDK4_MAGIC);
    if (le64_load(h + VMDK_H_GD) == VMDK_GD_AT_END) {
        /* streamOptimized: the real header is the footer's, the second
         * sector from the end (after it only the end-of-stream marker). */
        if (e->file_size < 3 * SECTOR)
            return err_set(-EINVAL, "%s: the header's grain directory is at the end, and the "
                           "file (%" PRIu64 " bytes) has no room for a footer", what,
                           e->file_size);
        uint64_t at = (e->file_size & ~(uint64_t)(SECTOR - 1)) - 2 * SECTOR;
        r = dev_pread(e->file, h, sizeof h, at);
        if (r < 0)
            return r;
        if (le32_load(h + VMDK_H_MAGIC) != VMDK4_MAGIC || le64_load(h + VMDK_H_GD) == VMDK_GD_AT_END)
            return err_set(-EINVAL, "%s: the footer at offset %" PRIu64 " is not a sparse "
                           "header with a grain directory offset", what, at);
        e->footer = true;
    }
    uint32_t version = le32_load(h + VMDK_H_VERSION);
    if (version < 1 || version > 3)
        return err_set(-ENOTSUP, "%s: sparse extent version %" PRIu32 " (offset %d); expected "
                       "1, 2 or 3", what, version, VMDK_H_VERSION);
    e->flags = le32_load(h + VMDK_H_FLAGS);
    uint64_t capacity = le64_load(h + VMDK_H_CAPACITY);
    e->grain = le64_load(h + VMDK_H_GRAIN);
    e->gtes = le32_load(h + VMDK_H_GTES);
    e->gd_off = le64_load(h + VMDK_H_GD);
    e->compressed = (e->flags & VMDK4_F_COMPRESS) != 0;
    e->markers = (e->flags & VMDK4_F_MARKER) != 0;
    e->zero_grain = (e->flags & VMDK4_F_ZERO_GRAIN) != 0;
    if (e->compressed && h[VMDK_H_COMPRESS] != VMDK4_COMPRESS_DEFLATE)
        return err_set(-ENOTSUP, "%s: compression algorithm %u (offset %d); only deflate (1) "
                       "is known", what, h[VMDK_H_COMPRESS], VMDK_H_COMPRESS);
    if (e->grain == 0 || e->grain > VMDK_GRAIN_MAX_SECTORS || (e->grain & (e->grain - 1)))
        return err_set(-EINVAL, "%s: the grain size (offset %d) is %" PRIu64 " sectors; "
                       "expected a power of two up to %llu", what, VMDK_H_GRAIN, e->grain,
                       (unsigned long long)VMDK_GRAIN_MAX_SECTORS);
    if (e->compressed && e->grain * SECTOR > VMDK_CGRAIN_MAX)
        return err_set(-ENOTSUP, "%s: compressed grains of %" PRIu64 " bytes; vdisk inflates "
                       "grains of at most %u", what, e->grain * SECTOR, VMDK_CGRAIN_MAX);
    if (e->gtes == 0 || e->gtes > VMDK_GTES_MAX)
        return err_set(-EINVAL, "%s: %" PRIu32 " entries per grain table (offset %d); expected "
                       "1 to %u", what, e->gtes, VMDK_H_GTES, VMDK_GTES_MAX);
    if (capacity < e->sectors)
        return err_set(-EINVAL, "%s: the extent's capacity (offset %d) is %" PRIu64 " sectors; "
                       "the descriptor gives it %" PRIu64, what, VMDK_H_CAPACITY, capacity,
                       e->sectors);
    uint64_t per_gt = e->grain * e->gtes;
    e->gd_entries = capacity / per_gt + (capacity % per_gt != 0);
    (void)s;
    return read_gd(e, capacity, what);
}

/* ---- Opening -------------------------------------------------------------- */

static void free_extent(struct extent *e)
{
    if (e->file)
        dev_unref(e->file);
    free(e->name);
    free(e->gd);
    free(e->rgd);
    for (unsigned i = 0; i < VMDK_GT_CACHE; i++)
        free(e->cache[i].t);
}

static void free_state(struct vmdk *s)
{
    for (unsigned i = 0; i < s->n; i++)
        free_extent(&s->ext[i]);
    free(s->ext);
    if (s->parent)
        dev_unref(s->parent);
    free(s->parent_name);
    free(s->full_parent);
    free(s->einfo);
    free(s->desc);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Opens the extent file NAME of the descriptor in s->dev's file. */
static int open_extent_file(struct vmdk *s, const char *name, struct vdisk_dev **out)
{
    const char *fn = s->dev->filename;
    const struct vdisk_open_params *up = &s->dev->params;
    struct vdisk_open_params p = *up; /* (read-write when the image is) */
    if (up->open_backing)
        return up->open_backing(up->backing_opaque, name, &p, out);
    char *full = backing_resolve(fn, name);
    if (!full)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    if (s->confine && backing_escapes(fn, name, full))
        r = err_set(-EPERM, "%s: the extent file name '%s' leads outside the image's folder, "
                    "which backing-confine=on forbids", fn, name);
    else if (dev_is_network_name(name) && !s->allow_network)
        r = err_set(-EPERM, "%s: the extent file is the network export '%s'; opening it needs "
                    "the open option backing-allow-network=on", fn, name);
    else if ((r = dev_open_file(out, full, NULL, &p)) < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_detail());
        r = err_set(r, "%s: could not open the extent file '%s': %s", fn, full, msg);
    }
    free(full);
    return r;
}

/* One extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]]. */
static int parse_extent(struct vmdk *s, const char *line, size_t len, unsigned lineno)
{
    const char *fn = s->dev->filename;
    char buf[1024];
    if (len >= sizeof buf)
        return err_set(-EINVAL, "%s: descriptor line %u is longer than %zu bytes", fn, lineno,
                       sizeof buf - 1);
    memcpy(buf, line, len);
    buf[len] = 0;
    char access[16], type[16], name[1024] = "";
    unsigned long long sectors = 0, off = 0;
    int used = 0;
    if (sscanf(buf, "%15s %llu %15s%n", access, &sectors, type, &used) != 3)
        return err_set(-EINVAL, "%s: descriptor line %u ('%s') is not an extent (ACCESS "
                       "SECTORS TYPE [\"FILE\" [OFFSET]])", fn, lineno, buf);
    const char *rest = buf + used;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (*rest == '"') {
        const char *q = strchr(rest + 1, '"');
        if (!q)
            return err_set(-EINVAL, "%s: descriptor line %u: the file name has no closing "
                           "quote", fn, lineno);
        memcpy(name, rest + 1, (size_t)(q - rest - 1));
        name[q - rest - 1] = 0;
        rest = q + 1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest) {
            char *end;
            errno = 0;
            off = strtoull(rest, &end, 10);
            while (*end == ' ' || *end == '\t' || *end == '\r')
                end++;
            if (errno || end == rest || *end)
                return err_set(-EINVAL, "%s: descriptor line %u: the extent offset '%s' is "
                               "not a number of sectors", fn, lineno, rest);
        }
    }
    if (strcmp(access, "RW") && strcmp(access, "RDONLY") && strcmp(access, "NOACCESS"))
        return err_set(-EINVAL, "%s: descriptor line %u: access '%s'; expected RW, RDONLY or "
                       "NOACCESS", fn, lineno, access);
    if (s->n >= VMDK_EXTENTS_MAX)
        return err_set(-EFBIG, "%s: more than %u extents", fn, VMDK_EXTENTS_MAX);
    uint64_t end_sector;
    if (sectors == 0 || add_overflows_u64(s->sectors, sectors, &end_sector) ||
        end_sector > (uint64_t)INT64_MAX / SECTOR)
        return err_set(-EINVAL, "%s: descriptor line %u: an extent of %llu sectors (the disk "
                       "would be %" PRIu64 " sectors before it)", fn, lineno, sectors, s->sectors);
    struct extent *e = &s->ext[s->n];
    memset(e, 0, sizeof *e);
    e->start = s->sectors;
    e->sectors = sectors;
    snprintf(e->kind, sizeof e->kind, "%s", type);
    if (!strcmp(type, "ZERO")) {
        e->type = EXT_ZERO;
    } else if (!strcmp(type, "FLAT") || !strcmp(type, "VMFS") || !strcmp(type, "SPARSE") ||
               !strcmp(type, "VMFSSPARSE") || !strcmp(type, "SESPARSE")) {
        if (!name[0])
            return err_set(-EINVAL, "%s: descriptor line %u: a %s extent names no file", fn,
                           lineno, type);
        if (!(e->name = strdup(name)))
            return err_set(-ENOMEM, "out of memory");
        s->n++; /* freed with the state from here on */
        int r = open_extent_file(s, name, &e->file);
        if (r < 0)
            return r;
        if (strcmp(type, "FLAT") && strcmp(type, "VMFS")) {
            /* New grains go at the extent file's end, as in a sparse
             * image's own file (dev_open() makes that one growable). */
            dev_set_growable(e->file);
            char what[1200];
            snprintf(what, sizeof what, "%s: extent '%s'", fn, name);
            /* (SPARSE and VMFSSPARSE files may each be KDMV or COWD, as
             * QEMU reads them) */
            int r2 = !strcmp(type, "SESPARSE") ? open_sesparse(e, what) : open_sparse(s, e, what);
            if (r2 == 0)
                s->sectors = end_sector;
            return r2;
        }
        e->type = EXT_FLAT;
        e->flat_off = off;
        uint64_t fsize = dev_size(e->file);
        if (off > fsize / SECTOR || sectors > fsize / SECTOR - off)
            return err_set(-EINVAL, "%s: extent '%s' (line %u) covers sectors %llu to %llu of "
                           "its file, which holds %" PRIu64 " bytes", fn, name, lineno, off,
                           off + sectors, fsize);
        s->sectors = end_sector;
        return 0;
    } else {
        return err_set(-ENOTSUP, "%s: descriptor line %u: extents of type %s are not "
                       "supported", fn, lineno, type);
    }
    s->n++;
    s->sectors = end_sector;
    return 0;
}

static const char *const create_types[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
    "streamOptimized", "vmfs", "vmfsPreallocated", "vmfsEagerZeroedThick", "vmfsThin",
    "custom", "vmfsSparse", "seSparse",
};

static int parse_descriptor(struct vmdk *s, char *desc, bool embedded)
{
    const char *fn = s->dev->filename;
    char v[256];
    if (!desc_get(desc, "createType", s->create_type, sizeof s->create_type))
        return err_set(-EINVAL, "%s: the descriptor has no createType", fn);
    bool known = false;
    for (size_t i = 0; i < sizeof create_types / sizeof create_types[0]; i++)
        known |= !strcmp(s->create_type, create_types[i]);
    if (!known)
        return err_set(-ENOTSUP, "%s: unsupported VMDK create type '%s'", fn, s->create_type);
    s->cid = 0xffffffffu;
    s->parent_cid = 0xffffffffu;
    int r = 0;
    if (desc_get(desc, "CID", v, sizeof v))
        r = parse_hex32(fn, "CID", v, &s->cid);
    if (r == 0 && desc_get(desc, "parentCID", v, sizeof v))
        r = parse_hex32(fn, "parentCID", v, &s->parent_cid);
    if (r < 0)
        return r;
    char pname[PATH_MAX];
    if (desc_get(desc, "parentFileNameHint", pname, sizeof pname) && pname[0] &&
        !(s->parent_name = strdup(pname)))
        return err_set(-ENOMEM, "out of memory");
    if (embedded)
        return 0;
    /* The extent lines, in order. */
    unsigned lineno = 0;
    for (char *p = desc; *p;) {
        char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        lineno++;
        while (ll && (p[ll - 1] == '\r' || p[ll - 1] == ' '))
            ll--;
        if (ll >= 3 && (!strncmp(p, "RW ", 3) || !strncmp(p, "RDONLY ", 7) ||
                        !strncmp(p, "NOACCESS ", 9))) {
            r = parse_extent(s, p, ll, lineno);
            if (r < 0)
                return r;
        }
        p += ll;
        while (*p && *p != '\n')
            p++;
        if (*p)
            p++;
    }
    if (s->n == 0)
        return err_set(-EINVAL, "%s: the descriptor lists no extent", fn);
    return 0;
}

static int open_parent(struct vmdk *s)
{
    struct backing_spec b = {.name = s->parent_name, .format = "vmdk", .confine = s->confine,
                             .allow_network = s->allow_network,
                             .max_depth = VMDK_MAX_CHAIN_DEPTH};
    int r = backing_open(s->dev, &b, &s->parent, &s->full_parent);
    if (r < 0)
        return r;
    const struct vmdk *ps = s->parent->drv == &vdisk_driver_vmdk ? s->parent->priv : NULL;
    if (ps && ps->cid != s->parent_cid)
        return err_set(-EINVAL, "%s: the parent '%s' has CID %08" PRIx32 "; the descriptor's "
                       "parentCID is %08" PRIx32 " (the parent changed after the child was "
                       "made)", s->dev->filename, s->full_parent, ps->cid, s->parent_cid);
    return 0;
}

/* A writable open: every extent flat, or sparse (compressed ones with
 * markers and their grain directory in place, as QEMU writes them), each
 * sparse one's redundant GD read, new grains to go at its file's end. */
static int prepare_writes(struct vmdk *s)
{
    const char *fn = s->dev->filename;
    for (unsigned i = 0; i < s->n; i++) {
        struct extent *e = &s->ext[i];
        if (e->type == EXT_ZERO || (e->compressed && (!e->markers || e->footer)))
            return err_set(-ENOTSUP, "%s: vdisk writes sparse and flat VMDK extents, and "
                           "streamOptimized ones with their grain directory in place, not %s "
                           "(open it read-only, or convert it: vdisk convert -f vmdk -O qcow2 "
                           "%s IMAGE.qcow2)", fn, e->type == EXT_ZERO ? "ZERO extents" :
                           e->markers ? "one whose grain directory is in its footer" :
                           "compressed grains without markers", fn);
        if (e->cowd || e->se)
            return err_set(-ENOTSUP, "%s: vdisk reads ESX %s extents but does not write them "
                           "(open it read-only, or convert it: vdisk convert -f vmdk -O qcow2 "
                           "%s IMAGE.qcow2)", fn, e->se ? "seSparse" : "vmfsSparse (COWD)", fn);
        if (e->type != EXT_SPARSE)
            continue;
        e->alloc_next = (e->file_size + SECTOR - 1) / SECTOR * SECTOR;
        if (!(e->flags & VMDK4_F_RGD))
            continue;
        uint8_t h[SECTOR];
        int r = dev_pread(e->file, h, sizeof h, 0);
        if (r < 0)
            return r;
        uint64_t rgd = le64_load(h + VMDK_H_RGD);
        if (rgd > e->file_size / SECTOR || e->gd_entries * 4 > e->file_size - rgd * SECTOR)
            return err_set(-EINVAL, "%s: extent '%s': the redundant grain directory at sector "
                           "%" PRIu64 " does not lie in the file (%" PRIu64 " bytes)", fn,
                           e->name, rgd, e->file_size);
        size_t bytes = (size_t)(e->gd_entries * 4);
        e->rgd = malloc(bytes ? bytes : 1);
        if (!e->rgd)
            return err_set(-ENOMEM, "out of memory for a grain directory");
        if (bytes && (r = dev_pread(e->file, e->rgd, bytes, rgd * SECTOR)) < 0)
            return r;
        for (uint64_t k = 0; k < e->gd_entries; k++)
            e->rgd[k] = le32_load(&e->rgd[k]);
    }
    s->writable = true;
    return 0;
}

static int vmdk_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    struct vmdk *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->dev = dev;
    s->file = file;
    dev->priv = s;
    s->ext = calloc(VMDK_EXTENTS_MAX, sizeof *s->ext);
    int r = s->ext ? backing_take_options(os, &s->confine, &s->allow_network) : err_set(-ENOMEM, "out of memory");
    uint64_t fsize = dev_size(file);
    if (file->file_length && file->file_length < fsize)
        fsize = file->file_length;
    uint8_t head[SECTOR] = {0};
    if (r == 0)
        r = dev_pread(file, head, fsize < SECTOR ? fsize : SECTOR, 0);
    char *desc = NULL;
    if (r == 0 && fsize >= 4 && le32_load(head) == VMDK4_MAGIC) {
        /* A sparse extent file: one extent, the file itself; its embedded
         * descriptor gives the CIDs, the create type and the parent. */
        struct extent *e = &s->ext[0];
        e->file = file;
        dev_ref(file);
        s->n = 1;
        if (!(e->name = strdup(dev->filename)))
            r = err_set(-ENOMEM, "out of memory");
        uint64_t capacity = le64_load(head + VMDK_H_CAPACITY);
        e->sectors = 0;
        if (r == 0)
            r = open_sparse(s, e, dev->filename);
        if (r == 0) {
            uint64_t doff = le64_load(head + VMDK_H_DESC_OFF), dsize = le64_load(head + VMDK_H_DESC_SIZE);
            capacity = le64_load(head + VMDK_H_CAPACITY);
            if (le64_load(head + VMDK_H_GD) == VMDK_GD_AT_END) {
                /* (the footer's capacity) */
                uint8_t f[SECTOR];
                r = dev_pread(file, f, SECTOR, (fsize & ~(uint64_t)(SECTOR - 1)) - 2 * SECTOR);
                capacity = le64_load(f + VMDK_H_CAPACITY);
            }
            e->sectors = capacity;
            s->sectors = capacity;
            if (capacity > (uint64_t)INT64_MAX / SECTOR)
                r = err_set(-EINVAL, "%s: the capacity (offset %d) is %" PRIu64 " sectors",
                            dev->filename, VMDK_H_CAPACITY, capacity);
            if (r == 0 && doff && dsize) {
                if (dsize * SECTOR > VMDK_DESC_MAX || doff > fsize / SECTOR ||
                    dsize > fsize / SECTOR - doff)
                    r = err_set(-EINVAL, "%s: the embedded descriptor (sector %" PRIu64 ", %"
                                PRIu64 " sectors) is not inside the file (%" PRIu64 " bytes) "
                                "or is larger than %u bytes", dev->filename, doff, dsize, fsize,
                                VMDK_DESC_MAX);
                else if (!(desc = calloc(1, (size_t)(dsize * SECTOR) + 1)))
                    r = err_set(-ENOMEM, "out of memory");
                else if ((r = dev_pread(file, desc, (size_t)(dsize * SECTOR), doff * SECTOR)) == 0) {
                    r = parse_descriptor(s, desc, true);
                    s->desc_at = doff * SECTOR;
                }
            } else if (r == 0) {
                snprintf(s->create_type, sizeof s->create_type, "monolithicSparse");
                s->cid = s->parent_cid = 0xffffffffu;
            }
        }
    } else if (r == 0 && fsize >= 4 && le32_load(head) == VMDK3_MAGIC) {
        r = err_set(-ENOTSUP, "%s: ESX sparse images (COWD, vmfsSparse) are not supported",
                    dev->filename);
    } else if (r == 0) {
        if (fsize > VMDK_DESC_MAX)
            r = err_set(-EINVAL, "%s: a VMDK descriptor file of %" PRIu64 " bytes; vdisk reads "
                        "descriptors of at most %u", dev->filename, fsize, VMDK_DESC_MAX);
        else if (!(desc = calloc(1, (size_t)fsize + 1)))
            r = err_set(-ENOMEM, "out of memory");
        else if ((r = dev_pread(file, desc, (size_t)fsize, 0)) == 0)
            r = parse_descriptor(s, desc, false); /* (the text ends at a NUL, as QEMU reads it) */
        s->desc_at = 0;
    }
    s->desc = desc; /* (NULL: a sparse file without a descriptor) */
    if (r == 0 && s->parent_name && s->parent_cid != 0xffffffffu)
        r = open_parent(s);
    if (r == 0 && !dev->params.read_only)
        r = prepare_writes(s);
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0 && !(s->einfo = calloc(s->n, sizeof *s->einfo)))
        r = err_set(-ENOMEM, "out of memory");
    for (unsigned i = 0; r == 0 && i < s->n; i++) {
        const struct extent *e = &s->ext[i];
        s->einfo[i] = (struct vdisk_extent_info){
            .filename = e->file ? e->file->filename : "",
            .format = e->kind,
            .virtual_size = e->sectors * SECTOR,
            .cluster_size = e->type == EXT_SPARSE ? (uint32_t)(e->grain * SECTOR) : 0,
            .compressed = e->compressed,
        };
    }
    if (r < 0) {
        free_state(s);
        dev->priv = NULL;
        return r;
    }
    dev->size = s->sectors * SECTOR;
    dev->block_size = SECTOR;
    dev->align = SECTOR;
    dev->caps = VDISK_CAN_FLUSH | (s->writable ? VDISK_CAN_WRITE : 0);
    return 0;
}

static int writeback(struct vmdk *s);

static void vmdk_close(struct vdisk_dev *dev)
{
    struct vmdk *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->writable && writeback(s) < 0)
        warn_report_once("vdisk: warning: %s: new grain table entries could not be written "
                         "at close: %s", dev->filename, err_detail());
    dev_unref(s->file);
    free_state(s);
    dev->priv = NULL;
}

/* ---- Grain tables ---------------------------------------------------------- */

static uint32_t *gt_cached(struct extent *e, uint64_t off)
{
    for (unsigned i = 0; i < VMDK_GT_CACHE; i++)
        if (e->cache[i].off == off) {
            e->cache[i].used = ++e->clock;
            return e->cache[i].t;
        }
    return NULL;
}

/* The bytes of one GT of extent E in its file. */
static uint64_t gt_bytes(const struct extent *e)
{
    return (uint64_t)e->gtes * (e->se ? 8 : 4);
}

/* Reads the GT at sector OFF of extent E into T (E->gtes entries, host
 * order): grain sectors, 0 not allocated, 1 zeroes when E has zeroed
 * grains.  An seSparse entry is turned into that form (an entry QEMU
 * calls an error: SESPARSE_BAD_ENTRY). */
static int read_gt(struct extent *e, uint64_t off, uint32_t *t)
{
    if (!e->se) {
        int r = dev_pread(e->file, t, (size_t)e->gtes * 4, off * SECTOR);
        for (uint32_t i = 0; r == 0 && i < e->gtes; i++)
            t[i] = le32_load(&t[i]);
        return r;
    }
    uint64_t *raw = malloc((size_t)e->gtes * 8);
    if (!raw)
        return err_set(-ENOMEM, "out of memory for a grain table");
    int r = dev_pread(e->file, raw, (size_t)e->gtes * 8, off * SECTOR);
    for (uint32_t i = 0; r == 0 && i < e->gtes; i++) {
        uint64_t x = le64_load(&raw[i]), sec;
        switch (x >> 60) {
        case 0: t[i] = x ? SESPARSE_BAD_ENTRY : 0; break;
        case 1: /* unmapped */
        case 2: t[i] = 1; break; /* zeroes */
        case 3:
            /* the grain's number: bits 48-59 low, bits 0-47 above them */
            sec = ((x >> 48) & 0xfff) | ((x & 0xffffffffffffull) << 12);
            sec = sec > (SESPARSE_BAD_ENTRY - e->se_grains) / SESPARSE_GRAIN
                      ? SESPARSE_BAD_ENTRY : e->se_grains + sec * SESPARSE_GRAIN;
            t[i] = (uint32_t)sec;
            break;
        default: t[i] = SESPARSE_BAD_ENTRY; break;
        }
    }
    free(raw);
    return r;
}

/* Reads the GT at sector OFF of extent E into its cache (synchronous: on
 * the worker, or for block status).  Called without the lock. */
static int load_gt(struct vmdk *s, struct extent *e, uint64_t off)
{
    size_t bytes = (size_t)e->gtes * 4;
    uint32_t *t = malloc(bytes);
    if (!t)
        return err_set(-ENOMEM, "out of memory for a grain table");
    int r = read_gt(e, off, t);
    if (r < 0) {
        free(t);
        return r;
    }
    pthread_mutex_lock(&s->lock);
    if (gt_cached(e, off)) {
        pthread_mutex_unlock(&s->lock);
        free(t);
        return 0;
    }
    /* The least recently used clean slot (at most half are dirty). */
    unsigned victim = VMDK_GT_CACHE;
    for (unsigned i = 0; i < VMDK_GT_CACHE; i++)
        if (!e->cache[i].dirty && (victim == VMDK_GT_CACHE ||
                                   e->cache[i].used < e->cache[victim].used))
            victim = i;
    free(e->cache[victim].t);
    e->cache[victim] = (struct gt_slot){.off = off, .t = t, .used = ++e->clock};
    pthread_mutex_unlock(&s->lock);
    return 0;
}

enum { AT_ZERO, AT_DATA, AT_UNALLOC, AT_NEED_GT, AT_COMPRESSED };

/* Where sector-relative byte POS of extent E is (under the lock): AT_DATA
 * (*HOST: a byte offset in E's file), AT_ZERO, AT_UNALLOC (the parent's),
 * AT_COMPRESSED (*HOST: the grain's marker, in bytes), AT_NEED_GT (*HOST:
 * the GT's sector), or -EIO with a message. */
static int locate(struct vmdk *s, struct extent *e, uint64_t pos, uint64_t *host)
{
    if (e->type == EXT_ZERO)
        return AT_ZERO;
    if (e->type == EXT_FLAT) {
        *host = e->flat_off * SECTOR + pos;
        return AT_DATA;
    }
    uint64_t gbytes = e->grain * SECTOR;
    uint64_t g = pos / gbytes;
    uint64_t gdi = g / e->gtes, gti = g % e->gtes;
    uint32_t gt = gdi < e->gd_entries ? e->gd[gdi] : 0;
    if (!gt)
        return AT_UNALLOC;
    if ((uint64_t)gt > e->file_size / SECTOR || gt_bytes(e) >
        e->file_size - (uint64_t)gt * SECTOR)
        return err_set(-EIO, "%s: extent '%s': grain directory entry %" PRIu64 " points at a "
                       "grain table at sector %" PRIu32 ", which is not inside the file (%"
                       PRIu64 " bytes)", s->dev->filename, e->name, gdi, gt, e->file_size);
    uint32_t *t = gt_cached(e, gt);
    if (!t) {
        *host = gt;
        return AT_NEED_GT;
    }
    uint32_t ent = t[gti];
    if (ent == 0)
        return AT_UNALLOC;
    if (ent == 1 && e->zero_grain)
        return AT_ZERO;
    if (e->se && ent == SESPARSE_BAD_ENTRY)
        return err_set(-EIO, "%s: extent '%s': entry %" PRIu64 " of the seSparse grain table at "
                       "sector %" PRIu32 " is not a valid grain entry", s->dev->filename,
                       e->name, gti, gt);
    uint64_t need = e->compressed ? SECTOR : gbytes;
    if ((uint64_t)ent > e->file_size / SECTOR || need > e->file_size - (uint64_t)ent * SECTOR)
        return err_set(-EIO, "%s: extent '%s': entry %" PRIu64 " of the grain table at sector %"
                       PRIu32 " points at a grain at sector %" PRIu32 ", which is not inside "
                       "the file (%" PRIu64 " bytes)", s->dev->filename, e->name, gti, gt, ent,
                       e->file_size);
    if (e->compressed) {
        *host = (uint64_t)ent * SECTOR;
        return AT_COMPRESSED;
    }
    *host = (uint64_t)ent * SECTOR + pos % gbytes;
    return AT_DATA;
}

/* The extent that disk byte POS lies in. */
static struct extent *extent_at(struct vmdk *s, uint64_t pos)
{
    uint64_t sec = pos / SECTOR;
    unsigned lo = 0, hi = s->n;
    while (hi - lo > 1) {
        unsigned mid = (lo + hi) / 2;
        if (s->ext[mid].start <= sec)
            lo = mid;
        else
            hi = mid;
    }
    return &s->ext[lo];
}

/* The run of bytes from disk byte POS (at most LEN) that one answer of
 * locate() covers: to the end of the grain, or of the extent. */
static uint64_t piece(const struct extent *e, uint64_t pos, uint64_t len)
{
    uint64_t ext_end = (e->start + e->sectors) * SECTOR;
    uint64_t n = ext_end - pos;
    if (e->type == EXT_SPARSE) {
        uint64_t gbytes = e->grain * SECTOR, rel = pos - e->start * SECTOR;
        uint64_t to_grain = gbytes - rel % gbytes;
        if (to_grain < n)
            n = to_grain;
    }
    return n < len ? n : len;
}

/* Inflates the compressed grain whose marker is at byte MARKER of E's
 * file into OUT (a grain's bytes), the grain at extent-relative byte REL.
 * The grain at the extent's end may hold only the bytes up to that end
 * (QEMU compresses just those); the rest reads zeroes.  Synchronous. */
static int read_compressed(struct vmdk *s, struct extent *e, uint64_t marker, uint64_t rel,
                           uint8_t *out)
{
    uint64_t gbytes = e->grain * SECTOR;
    uint64_t start = rel - rel % gbytes, ext_bytes = e->sectors * SECTOR;
    uint64_t need = ext_bytes - start < gbytes ? ext_bytes - start : gbytes;
    uint8_t m[12];
    int r = dev_pread(e->file, m, sizeof m, marker);
    if (r < 0)
        return r;
    uint64_t csize = e->markers ? le32_load(m + 8) : 0;
    uint64_t data = marker + (e->markers ? 12 : 0);
    if (!e->markers) {
        /* Without markers the stream runs to at most twice a grain. */
        csize = 2 * gbytes;
        if (csize > e->file_size - data)
            csize = e->file_size - data;
    }
    if (csize == 0 || csize > 2 * gbytes || csize > e->file_size - data)
        return err_set(-EIO, "%s: extent '%s': the compressed grain at offset %" PRIu64 " says "
                       "%" PRIu64 " bytes; expected 1 to %" PRIu64 " inside the file",
                       s->dev->filename, e->name, marker, csize, 2 * gbytes);
    uint8_t *c = malloc((size_t)csize);
    if (!c)
        return err_set(-ENOMEM, "out of memory");
    r = dev_pread(e->file, c, (size_t)csize, data);
    if (r < 0) {
        free(c);
        return r;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        free(c);
        return err_set(-ENOMEM, "zlib: inflateInit failed");
    }
    z.next_in = c;
    z.avail_in = (uInt)csize;
    z.next_out = out;
    z.avail_out = (uInt)gbytes;
    int zr = inflate(&z, Z_FINISH);
    uint64_t got = gbytes - z.avail_out;
    inflateEnd(&z);
    free(c);
    if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || got < need)
        return err_set(-EIO, "%s: extent '%s': the compressed grain at offset %" PRIu64 " does "
                       "not inflate to %" PRIu64 " bytes (zlib %d, %" PRIu64 " bytes)",
                       s->dev->filename, e->name, marker, need, zr, got);
    memset(out + got, 0, (size_t)(gbytes - got));
    return 0;
}

/* ---- Reads ------------------------------------------------------------------ */

static void vmdk_submit(struct vdisk_req *req);

/* On the worker: the GT the request needs. */
static int gt_work(struct vdisk_req *req)
{
    struct vmdk *s = req->dev->priv;
    struct vmdk_req *vr = req_state(req);
    int r = load_gt(s, &s->ext[vr->gt_ext], vr->gt_off);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void gt_then(struct vdisk_req *req)
{
    if (req->result < 0) {
        req_complete(req, req->result);
        return;
    }
    vmdk_submit(req);
}

/* On the worker: a request that meets compressed grains, whole and
 * synchronously (GTs loaded as met). */
static int sync_work(struct vdisk_req *req)
{
    struct vmdk *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    uint8_t *grain = NULL;
    int r = 0;
    for (uint64_t pos = req->offset; pos < end && r == 0;) {
        struct extent *e = extent_at(s, pos);
        uint64_t rel = pos - e->start * SECTOR, n = piece(e, pos, end - pos), host = 0;
        pthread_mutex_lock(&s->lock);
        int kind = locate(s, e, rel, &host);
        pthread_mutex_unlock(&s->lock);
        if (kind == AT_NEED_GT) {
            r = load_gt(s, e, host);
            continue;
        }
        size_t skip = (size_t)(pos - req->offset);
        if (kind < 0) {
            r = kind;
        } else if (kind == AT_ZERO || (kind == AT_UNALLOC && !s->parent)) {
            iov_memset(req->iov, req->iovcnt, skip, 0, (size_t)n);
        } else if (kind == AT_UNALLOC) {
            uint64_t psize = dev_size(s->parent), have = pos < psize ? psize - pos : 0;
            if (have > n)
                have = n;
            uint8_t *b = malloc((size_t)n);
            if (!b)
                r = err_set(-ENOMEM, "out of memory");
            else if (!have || (r = dev_pread(s->parent, b, (size_t)have, pos)) == 0) {
                memset(b + have, 0, (size_t)(n - have));
                iov_from_buf(req->iov, req->iovcnt, skip, b, (size_t)n);
            }
            free(b);
        } else if (kind == AT_DATA) {
            uint8_t *b = malloc((size_t)n);
            if (!b)
                r = err_set(-ENOMEM, "out of memory");
            else if ((r = dev_pread(e->file, b, (size_t)n, host)) == 0)
                iov_from_buf(req->iov, req->iovcnt, skip, b, (size_t)n);
            free(b);
        } else {
            if (!grain && !(grain = malloc((size_t)(e->grain * SECTOR))))
                r = err_set(-ENOMEM, "out of memory");
            if (r == 0 && (r = read_compressed(s, e, host, rel, grain)) == 0)
                iov_from_buf(req->iov, req->iovcnt, skip,
                             grain + rel % (e->grain * SECTOR), (size_t)n);
            free(grain);
            grain = NULL;
        }
        pos += n;
    }
    free(grain);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void vmdk_read(struct vdisk_req *req)
{
    struct vmdk *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    /* Every GT the request needs must be cached first (read on the worker,
     * then the request starts again); one compressed grain sends the whole
     * request to the worker. */
    pthread_mutex_lock(&s->lock);
    for (uint64_t pos = req->offset; pos < end;) {
        struct extent *e = extent_at(s, pos);
        uint64_t host = 0, n = piece(e, pos, end - pos);
        int kind = locate(s, e, pos - e->start * SECTOR, &host);
        if (kind == AT_NEED_GT || kind == AT_COMPRESSED) {
            pthread_mutex_unlock(&s->lock);
            if (kind == AT_COMPRESSED) {
                offload_req(s->offload, req, sync_work, NULL);
                return;
            }
            struct vmdk_req *vr = req_state(req);
            vr->gt_ext = (uint64_t)(e - s->ext);
            vr->gt_off = host;
            if (++vr->loads > VMDK_LOADS_BEFORE_SYNC)
                offload_req(s->offload, req, sync_work, NULL);
            else
                offload_req(s->offload, req, gt_work, gt_then);
            return;
        }
        if (kind < 0) {
            pthread_mutex_unlock(&s->lock);
            req_set_error(req, kind, err_detail());
            req_complete(req, kind);
            return;
        }
        pos += n;
    }
    req_hold(req); /* the walk's own */
    for (uint64_t pos = req->offset; pos < end;) {
        struct extent *e = extent_at(s, pos);
        uint64_t host = 0, n = piece(e, pos, end - pos);
        int kind = locate(s, e, pos - e->start * SECTOR, &host);
        uint64_t skip = pos - req->offset;
        int r = 0;
        if (kind == AT_DATA) {
            r = req_read_slice(req, e->file, host, skip, n);
        } else if (kind == AT_ZERO || !s->parent) {
            iov_memset(req->iov, req->iovcnt, (size_t)skip, 0, (size_t)n);
        } else {
            uint64_t psize = dev_size(s->parent), have = pos < psize ? psize - pos : 0;
            if (have > n)
                have = n;
            if (have)
                r = req_read_slice(req, s->parent, pos, skip, have);
            if (have < n)
                iov_memset(req->iov, req->iovcnt, (size_t)(skip + have), 0, (size_t)(n - have));
        }
        if (r < 0) {
            req_set_error(req, r, "out of memory");
            break;
        }
        pos += n;
    }
    pthread_mutex_unlock(&s->lock);
    req_release(req, 0);
}

/* ---- Writes (on the worker) ------------------------------------------------ */

/*
 * Makes the new grains so far durable: their files are flushed (the data
 * on stable storage), then each dirty GT is written whole, and its copy
 * under the redundant GD, then the files are flushed again: a GT entry
 * never reaches the disk before the grain it points to, whatever order the
 * disk keeps (QEMU writes the entry right after the data, unflushed).  A
 * crash before it loses the unflushed grains, which leak (VMDK has no
 * reference counts; qemu-img check does not count leaks in VMDK either).
 * On the worker, or at close.
 */
static int writeback(struct vmdk *s)
{
    int r = 0;
    for (unsigned i = 0; i < s->n && r == 0; i++) {
        struct extent *e = &s->ext[i];
        if (e->tail > e->file_size) {
            /* Zeroes after the last new grain's data, to a whole grain. */
            if ((r = dev_write_zeroes(e->file, e->file_size, e->tail - e->file_size, 0)) < 0)
                break;
            pthread_mutex_lock(&s->lock);
            e->file_size = e->tail;
            pthread_mutex_unlock(&s->lock);
        }
        if (!e->ndirty)
            continue;
        if ((r = dev_flush(e->file)) < 0)
            break;
        size_t bytes = (size_t)e->gtes * 4;
        uint32_t *le = malloc(bytes);
        if (!le)
            return err_set(-ENOMEM, "out of memory");
        for (unsigned k = 0; k < VMDK_GT_CACHE && r == 0; k++) {
            struct gt_slot *g = &e->cache[k];
            if (!g->dirty)
                continue;
            pthread_mutex_lock(&s->lock);
            for (uint32_t j = 0; j < e->gtes; j++)
                le32_store(&le[j], g->t[j]);
            pthread_mutex_unlock(&s->lock);
            r = dev_pwrite(e->file, le, bytes, g->off * SECTOR);
            if (r == 0 && e->rgd && g->gdi < e->gd_entries && e->rgd[g->gdi])
                r = dev_pwrite(e->file, le, bytes, (uint64_t)e->rgd[g->gdi] * SECTOR);
            if (r == 0) {
                pthread_mutex_lock(&s->lock);
                g->dirty = false;
                e->ndirty--;
                pthread_mutex_unlock(&s->lock);
            }
        }
        free(le);
        if (r == 0)
            r = dev_flush(e->file);
    }
    return r;
}

/* The first write gives the image a new CID (in its descriptor), as QEMU
 * does: a child made over it then sees that its parent changed. */
static int new_cid(struct vmdk *s)
{
    s->cid_written = true;
    char *c = s->desc ? strstr(s->desc, "\nCID=") : NULL;
    if (!c && s->desc && !strncmp(s->desc, "CID=", 4))
        c = s->desc - 1;
    size_t digits = c ? strspn(c + 5, "0123456789abcdefABCDEF") : 0;
    if (digits == 0 || digits > 8)
        return 0; /* no CID of 1 to 8 digits: left as it is */
    /* As many digits as before (QEMU writes no leading zeroes), so the
     * descriptor keeps its length. */
    uint32_t mask = digits == 8 ? 0xffffffffu : (1u << (4 * digits)) - 1, cid;
    do {
        if (getrandom(&cid, sizeof cid, 0) != (ssize_t)sizeof cid)
            return err_set(-EIO, "%s: no random bytes for a new CID", s->dev->filename);
        cid &= mask;
    } while (cid == s->cid || cid == 0xffffffffu);
    char hex[9];
    snprintf(hex, sizeof hex, "%0*" PRIx32, (int)digits, cid);
    memcpy(c + 5, hex, digits);
    s->cid = cid;
    return dev_pwrite(s->file, c + 5, digits, s->desc_at + (uint64_t)(c + 5 - s->desc));
}

/* Sets entry GTI of the GT under grain directory entry GDI of extent E to
 * VALUE in the cache (the GT loaded first; the cache written back first
 * when it holds too many dirty GTs) and pins it dirty; the lookup and the
 * change are one step under the lock, so no reader's load evicts the GT
 * between them. */
static int gt_set(struct vmdk *s, struct extent *e, uint64_t gdi, uint64_t gti, uint32_t value)
{
    uint32_t gt = e->gd[gdi];
    if (e->ndirty >= VMDK_GT_DIRTY_MAX) {
        int r = writeback(s);
        if (r < 0)
            return r;
    }
    for (int tries = 0; tries < 3; tries++) {
        pthread_mutex_lock(&s->lock);
        for (unsigned k = 0; k < VMDK_GT_CACHE; k++) {
            struct gt_slot *g = &e->cache[k];
            if (!g->t || g->off != gt)
                continue;
            g->used = ++e->clock;
            g->gdi = gdi;
            g->t[gti] = value;
            if (!g->dirty) {
                g->dirty = true;
                e->ndirty++;
            }
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        pthread_mutex_unlock(&s->lock);
        int r = load_gt(s, e, gt);
        if (r < 0)
            return r;
    }
    return err_set(-EIO, "%s: extent '%s': the grain table at sector %" PRIu32 " does not "
                   "stay in the cache", s->dev->filename, e->name, gt);
}

/* Where extent-relative byte REL of sparse extent E is, as locate() says,
 * its GT loaded first (never AT_NEED_GT); the grain must have a GT. */
static int locate_for_write(struct vmdk *s, struct extent *e, uint64_t rel, uint64_t *host)
{
    uint64_t g = rel / (e->grain * SECTOR), gdi = g / e->gtes;
    if (gdi >= e->gd_entries || !e->gd[gdi])
        return err_set(-ENOTSUP, "%s: extent '%s': grain %" PRIu64 " has no grain table "
                       "(grain directory entry %" PRIu64 " is 0), which vdisk does not add",
                       s->dev->filename, e->name, g, gdi);
    pthread_mutex_lock(&s->lock);
    int kind = locate(s, e, rel, host);
    pthread_mutex_unlock(&s->lock);
    for (int tries = 0; kind == AT_NEED_GT && tries < 3; tries++) {
        int r = load_gt(s, e, *host);
        if (r < 0)
            return r;
        pthread_mutex_lock(&s->lock);
        kind = locate(s, e, rel, host);
        pthread_mutex_unlock(&s->lock);
    }
    if (kind == AT_NEED_GT)
        return err_set(-EIO, "%s: extent '%s': a grain table does not stay in the cache",
                       s->dev->filename, e->name);
    return kind;
}

/* ---- streamOptimized: each grain written once, deflated behind a marker -- */

#define MARKER_BYTES 12u

/* The bytes a grain of N bytes may take in the file, marker and padding
 * to a sector included. */
static uint64_t stream_bound(uint64_t n)
{
    return (MARKER_BYTES + zlib_bound((size_t)n) + SECTOR - 1) / SECTOR * SECTOR;
}

/* Checks that the N bytes at extent-relative byte REL of compressed extent
 * E are a grain vdisk may write: a whole one (or the extent's last bytes),
 * never written before, as QEMU requires.  Returns 0 or -errno. */
static int stream_check(struct vmdk *s, struct extent *e, uint64_t rel, uint64_t n)
{
    uint64_t gbytes = e->grain * SECTOR, ext_bytes = e->sectors * SECTOR;
    if (rel % gbytes || (n != gbytes && rel + n != ext_bytes) || n > gbytes)
        return err_set(-EINVAL, "%s: extent '%s': a streamOptimized VMDK is written a whole "
                       "grain (%" PRIu64 " bytes) at a time, not %" PRIu64 " bytes at byte %"
                       PRIu64, s->dev->filename, e->name, gbytes, n,
                       e->start * SECTOR + rel);
    uint64_t host;
    int kind = locate_for_write(s, e, rel, &host);
    if (kind < 0)
        return kind;
    if (kind == AT_COMPRESSED)
        return err_set(-EIO, "%s: extent '%s': could not write to allocated cluster for "
                       "streamOptimized (the grain at byte %" PRIu64 " is written already)",
                       s->dev->filename, e->name, e->start * SECTOR + rel);
    return 0;
}

/* Lays out the grain at extent-relative byte REL of E, whose deflated
 * bytes are DATA (CLEN of them), at OUT: the marker (the grain's disk
 * sector and CLEN), the data, zeroes to a sector.  Returns its length. */
static size_t stream_pack(const struct extent *e, uint64_t rel, const void *data, size_t clen,
                          uint8_t *out)
{
    size_t len = (MARKER_BYTES + clen + SECTOR - 1) / SECTOR * SECTOR;
    le64_store(out, e->start + rel / SECTOR);
    le32_store(out + 8, (uint32_t)clen);
    memmove(out + MARKER_BYTES, data, clen);
    memset(out + MARKER_BYTES + clen, 0, len - MARKER_BYTES - clen);
    return len;
}

/* Deflates the N bytes of IN into a zlib stream at zlib's default level,
 * as QEMU does, into OUT (OUT_SIZE bytes); *CLEN 0 when they do not fit. */
static int stream_deflate(const void *in, uint64_t n, void *out, size_t out_size, size_t *clen)
{
    int r = zlib_deflate(in, (size_t)n, out, out_size, clen);
    if (r < 0)
        return err_set(r, "deflating a %" PRIu64 "-byte grain failed", n);
    return 0;
}

/* Writes LEN bytes of packed grains (BUF) at the end of E's file and
 * points the GT entries of the N grains from extent-relative byte REL at
 * them (OFFS: each one's offset in BUF). */
static int stream_append(struct vmdk *s, struct extent *e, uint64_t rel, const uint8_t *buf,
                         size_t len, const size_t *offs, size_t n)
{
    uint64_t at = e->alloc_next;
    if (at / SECTOR + len / SECTOR > UINT32_MAX)
        return err_set(-ENOSPC, "%s: extent '%s' is full (grain offsets are 32-bit sectors)",
                       s->dev->filename, e->name);
    int r = dev_pwrite(e->file, buf, len, at);
    if (r < 0)
        return r;
    e->alloc_next = at + len;
    pthread_mutex_lock(&s->lock);
    if (e->file_size < e->alloc_next)
        e->file_size = e->alloc_next; /* (locate's bound) */
    pthread_mutex_unlock(&s->lock);
    uint64_t gbytes = e->grain * SECTOR;
    if (n && e->tail < at + offs[n - 1] + gbytes)
        e->tail = at + offs[n - 1] + gbytes;
    for (size_t i = 0; i < n && r == 0; i++) {
        uint64_t g = rel / gbytes + i;
        r = gt_set(s, e, g / e->gtes, g % e->gtes, (uint32_t)((at + offs[i]) / SECTOR));
    }
    return r;
}

/* Writes the N bytes of BUF (NULL: zeroes) at extent-relative byte REL of
 * compressed extent E: a new grain, deflated. */
static int stream_write(struct vmdk *s, struct extent *e, uint64_t rel, const uint8_t *buf,
                        uint64_t n)
{
    uint64_t host;
    if (!buf) {
        int kind = locate_for_write(s, e, rel, &host);
        if (kind < 0)
            return kind;
        if (kind == AT_ZERO || (kind == AT_UNALLOC && !(s->parent &&
                                                        e->start * SECTOR + rel < dev_size(s->parent))))
            return 0; /* reads zeroes already */
    }
    int r = stream_check(s, e, rel, n);
    if (r < 0)
        return r;
    uint8_t *zero = buf ? NULL : calloc(1, (size_t)n);
    uint8_t *out = malloc((size_t)stream_bound(n));
    size_t clen = 0, off0 = 0;
    if ((!buf && !zero) || !out)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0)
        r = stream_deflate(buf ? buf : zero, n, out + MARKER_BYTES,
                           (size_t)stream_bound(n) - MARKER_BYTES, &clen);
    if (r == 0) {
        size_t len = stream_pack(e, rel, out + MARKER_BYTES, clen, out);
        r = stream_append(s, e, rel, out, len, &off0, 1);
    }
    free(zero);
    free(out);
    return r;
}

/* Writes the N bytes of BUF (NULL: zeroes) at disk byte POS, inside one
 * grain of sparse extent E: to the grain, or to a new one (its other bytes
 * the parent's, or zeroes). */
static int write_grain(struct vmdk *s, struct extent *e, uint64_t pos, const uint8_t *buf,
                       uint64_t n, uint8_t *scratch)
{
    uint64_t gbytes = e->grain * SECTOR, rel = pos - e->start * SECTOR;
    uint64_t g = rel / gbytes, gdi = g / e->gtes, gti = g % e->gtes, in = rel % gbytes;
    if (e->compressed)
        return stream_write(s, e, rel, buf, n);
    uint64_t host = 0;
    int kind = locate_for_write(s, e, rel, &host);
    if (kind < 0)
        return kind;
    if (kind == AT_DATA) {
        if (buf)
            return dev_pwrite(e->file, buf, (size_t)n, host);
        memset(scratch, 0, (size_t)n);
        return dev_pwrite(e->file, scratch, (size_t)n, host);
    }
    /* Zeroes where the grain already reads zeroes: nothing to write. */
    uint64_t grain_pos = pos - in;
    bool from_parent = kind == AT_UNALLOC && s->parent && grain_pos < dev_size(s->parent);
    if (!buf && !from_parent)
        return 0;
    /* A new grain at the end of the file: the parent's bytes (or zeroes)
     * around the write. */
    memset(scratch, 0, (size_t)gbytes);
    if (from_parent) {
        uint64_t psize = dev_size(s->parent);
        uint64_t have = psize - grain_pos < gbytes ? psize - grain_pos : gbytes;
        int r = dev_pread(s->parent, scratch, (size_t)have, grain_pos);
        if (r < 0)
            return r;
    }
    if (buf)
        memcpy(scratch + in, buf, (size_t)n);
    else
        memset(scratch + in, 0, (size_t)n);
    uint64_t at = e->alloc_next;
    if (at / SECTOR > UINT32_MAX - e->grain)
        return err_set(-ENOSPC, "%s: extent '%s' is full (grain offsets are 32-bit sectors)",
                       s->dev->filename, e->name);
    int r = dev_pwrite(e->file, scratch, (size_t)gbytes, at);
    if (r < 0)
        return r;
    e->alloc_next = at + gbytes;
    pthread_mutex_lock(&s->lock);
    if (e->file_size < e->alloc_next)
        e->file_size = e->alloc_next; /* (locate's bound) */
    pthread_mutex_unlock(&s->lock);
    return gt_set(s, e, gdi, gti, (uint32_t)(at / SECTOR));
}

/* The driver's compress: a whole grain of a streamOptimized image
 * deflated as QEMU deflates it (*OUT_LEN 0: it does not fit in OUT_SIZE,
 * and an ordinary write then deflates it into a larger buffer; for an
 * image without compressed extents, always 0: written as it is). */
static int vmdk_compress(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off,
                         void *out, size_t out_size, size_t *out_len)
{
    struct vmdk *s = dev->priv;
    const struct extent *e = extent_at(s, off);
    *out_len = 0;
    if (!e->compressed)
        return 0;
    return stream_deflate(buf, len, out, out_size, out_len);
}

/* The driver's write_compressed: N grains from disk byte OFF, PIECES[i]
 * the i-th deflated, appended with one write, then the GT entries set.
 * The caller holds the device quiesced. */
static int vmdk_write_compressed(struct vdisk_dev *dev, const struct iovec *pieces, size_t n,
                                 uint64_t off)
{
    struct vmdk *s = dev->priv;
    if (!s->writable)
        return err_set(-EROFS, "%s: the image is open read-only", dev->filename);
    struct extent *e = extent_at(s, off);
    uint64_t gbytes = e->type == EXT_SPARSE ? e->grain * SECTOR : 0;
    uint64_t rel = off - e->start * SECTOR, ext_bytes = e->sectors * SECTOR;
    if (!e->compressed || rel % gbytes || n > (ext_bytes - rel + gbytes - 1) / gbytes)
        return err_set(-EINVAL, "%s: %zu compressed grains at byte %" PRIu64 " do not lie in "
                       "one streamOptimized extent", dev->filename, n, off);
    int r = s->cid_written ? 0 : new_cid(s);
    size_t total = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        uint64_t grel = rel + i * gbytes;
        uint64_t glen = ext_bytes - grel < gbytes ? ext_bytes - grel : gbytes;
        if (pieces[i].iov_len == 0 || pieces[i].iov_len > UINT32_MAX)
            r = err_set(-EINVAL, "%s: a compressed grain of %zu bytes", dev->filename,
                        pieces[i].iov_len);
        else
            r = stream_check(s, e, grel, glen);
        total += (MARKER_BYTES + pieces[i].iov_len + SECTOR - 1) / SECTOR * SECTOR;
    }
    if (r < 0)
        return r;
    uint8_t *buf = malloc(total);
    size_t *offs = malloc(n * sizeof *offs);
    if (!buf || !offs)
        r = err_set(-ENOMEM, "out of memory");
    for (size_t i = 0, at = 0; r == 0 && i < n; i++) {
        offs[i] = at;
        memcpy(buf + at + MARKER_BYTES, pieces[i].iov_base, pieces[i].iov_len);
        at += stream_pack(e, rel + i * gbytes, buf + at + MARKER_BYTES, pieces[i].iov_len,
                          buf + at);
    }
    if (r == 0)
        r = stream_append(s, e, rel, buf, total, offs, n);
    free(buf);
    free(offs);
    return r;
}

static int write_work(struct vdisk_req *req)
{
    struct vmdk *s = req->dev->priv;
    int r = s->cid_written ? 0 : new_cid(s);
    uint64_t end = req->offset + req->length;
    uint8_t *buf = NULL, *scratch = NULL;
    bool zeroes = req->op == VDISK_OP_WRITE_ZEROES;
    for (uint64_t pos = req->offset; pos < end && r == 0;) {
        struct extent *e = extent_at(s, pos);
        uint64_t n = piece(e, pos, end - pos);
        uint64_t gbytes = e->type == EXT_SPARSE ? e->grain * SECTOR : n;
        free(buf);
        free(scratch);
        buf = zeroes ? NULL : malloc((size_t)n);
        scratch = malloc((size_t)(gbytes > n ? gbytes : n));
        if ((!zeroes && !buf) || !scratch) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        if (buf)
            iov_to_buf(req->iov, req->iovcnt, (size_t)(pos - req->offset), buf, (size_t)n);
        if (e->type == EXT_FLAT) {
            uint64_t host = e->flat_off * SECTOR + (pos - e->start * SECTOR);
            if (!buf)
                memset(scratch, 0, (size_t)n);
            r = dev_pwrite(e->file, buf ? buf : scratch, (size_t)n, host);
        } else {
            r = write_grain(s, e, pos, buf, n, scratch);
        }
        pos += n;
    }
    free(buf);
    free(scratch);
    if (r == 0 && (req->flags & VDISK_REQ_FUA))
        r = writeback(s);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static int flush_work(struct vdisk_req *req)
{
    struct vmdk *s = req->dev->priv;
    int r = writeback(s);
    for (unsigned i = 0; r == 0 && i < s->n; i++)
        if (s->ext[i].type == EXT_FLAT)
            r = dev_flush(s->ext[i].file);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void vmdk_submit(struct vdisk_req *req)
{
    struct vmdk *s = req->dev->priv;
    switch (req->op) {
    case VDISK_OP_READ:
        vmdk_read(req);
        return;
    case VDISK_OP_FLUSH:
        if (!s->writable) {
            req_complete(req, 0); /* nothing is written */
            return;
        }
        offload_req(s->offload, req, flush_work, NULL);
        return;
    case VDISK_OP_WRITE:
    case VDISK_OP_WRITE_ZEROES:
        offload_req(s->offload, req, write_work, NULL);
        return;
    case VDISK_OP_DISCARD:
        req_complete(req, 0); /* advisory: grains are never freed */
        return;
    default:
        req_fail(req, -EINVAL, "unknown operation");
        return;
    }
}

/* ---- Block status, info ----------------------------------------------------- */

static int vmdk_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                             struct vdisk_extent *ext)
{
    struct vmdk *s = dev->priv;
    struct extent *e = extent_at(s, off);
    uint64_t n = piece(e, off, len), host = 0;
    int kind;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        kind = locate(s, e, off - e->start * SECTOR, &host);
        pthread_mutex_unlock(&s->lock);
        if (kind != AT_NEED_GT)
            break;
        int r = load_gt(s, e, host);
        if (r < 0)
            return r;
    }
    if (kind < 0)
        return kind;
    /* Grains of the same kind that follow in the extent (data contiguous in
     * the file), while their tables are cached; a grain table that is not
     * allocated is skipped whole. */
    uint64_t ext_end = (e->start + e->sectors) * SECTOR, end = off + len;
    if (end > ext_end)
        end = ext_end;
    if (e->type == EXT_SPARSE && kind != AT_COMPRESSED) {
        uint64_t gbytes = e->grain * SECTOR, span = gbytes * e->gtes, next_host = host + n;
        pthread_mutex_lock(&s->lock);
        while (off + n < end) {
            uint64_t rel = off + n - e->start * SECTOR, h2 = 0;
            uint64_t gdi = rel / span;
            uint64_t step = gbytes;
            if (gdi < e->gd_entries && e->gd[gdi] == 0)
                step = span - rel % span;
            if (step > end - off - n)
                step = end - off - n;
            int k2 = locate(s, e, rel, &h2);
            if (k2 != kind || (kind == AT_DATA && h2 != next_host))
                break;
            n += step;
            next_host += step;
        }
        pthread_mutex_unlock(&s->lock);
    }
    ext->depth = 0;
    if (kind == AT_UNALLOC && s->parent) {
        uint64_t psize = dev_size(s->parent);
        if (off < psize) {
            int r = dev_block_status(s->parent, off, psize - off < n ? psize - off : n, ext);
            if (r < 0)
                return r;
            ext->depth++;
            return 0;
        }
    }
    ext->length = n;
    switch (kind) {
    case AT_DATA:
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = host;
        ext->host_file = e->file->filename;
        if (e->type == EXT_FLAT) {
            /* As QEMU shows a flat extent: the file's holes read as zeroes. */
            struct vdisk_extent fe;
            if (dev_block_status(e->file, host, n, &fe) == 0) {
                if (fe.flags & VDISK_EXT_ZERO)
                    ext->flags |= VDISK_EXT_ZERO;
                if (fe.length && fe.length < ext->length)
                    ext->length = fe.length;
            }
        }
        break;
    case AT_COMPRESSED:
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED;
        break;
    case AT_ZERO:
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED;
        break;
    default:
        ext->flags = VDISK_EXT_ZERO;
        break;
    }
    return 0;
}

static struct vdisk_dev *vmdk_backing(struct vdisk_dev *dev)
{
    struct vmdk *s = dev->priv;
    return s->parent;
}

static void vmdk_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    struct vmdk *s = dev->priv;
    if (s->ext[0].type == EXT_SPARSE)
        info->cluster_size = (uint32_t)(s->ext[0].grain * SECTOR);
    info->create_type = s->create_type;
    info->cid = s->cid;
    info->parent_cid = s->parent_cid;
    info->nb_extents = s->n;
    info->extents = s->einfo;
    info->backing_filename = s->parent_name;
    info->full_backing_filename = s->full_parent;
    if (s->parent)
        info->backing_format = "vmdk";
}

static int64_t vmdk_allocated_size(struct vdisk_dev *dev)
{
    struct vmdk *s = dev->priv;
    int64_t total = dev_allocated_size(s->file);
    for (unsigned i = 0; i < s->n && total >= 0; i++) {
        if (!s->ext[i].file || s->ext[i].file == s->file)
            continue;
        int64_t a = dev_allocated_size(s->ext[i].file);
        total = a < 0 ? a : total + a;
    }
    return total;
}

/*
 * As qemu-img check checks a VMDK image: grain by grain, the first grain
 * whose offset lies at or past the end of its extent's file is a
 * corruption, reported by its sector, and the walk stops there; a grain
 * table that cannot be read stops it too.
 */
static int vmdk_check(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                      vdisk_check_report_fn report, void *opaque)
{
    struct vmdk *s = dev->priv;
    if (flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS))
        return err_set(-ENOTSUP, "%s: vdisk does not repair VMDK images (it opens them "
                       "read-only)", dev->filename);
    char line[160];
    for (unsigned i = 0; i < s->n; i++) {
        struct extent *e = &s->ext[i];
        if (e->type != EXT_SPARSE)
            continue;
        uint32_t *t = malloc((size_t)e->gtes * 4);
        if (!t)
            return err_set(-ENOMEM, "out of memory");
        uint64_t grains = e->sectors / e->grain + (e->sectors % e->grain != 0);
        for (uint64_t gdi = 0; gdi < e->gd_entries; gdi++) {
            uint32_t gt = e->gd[gdi];
            uint64_t first = gdi * e->gtes;
            if (!gt || first >= grains)
                continue;
            if ((uint64_t)gt > e->file_size / SECTOR ||
                gt_bytes(e) > e->file_size - (uint64_t)gt * SECTOR || read_gt(e, gt, t) < 0) {
                snprintf(line, sizeof line, "ERROR: could not get cluster_offset for sector %"
                         PRIu64, e->start + first * e->grain);
                if (report)
                    report(opaque, line);
                res->check_errors++;
                free(t);
                return 0;
            }
            for (uint64_t g = first; g < first + e->gtes && g < grains; g++) {
                uint32_t ent = t[g - first];
                if (ent == 0 || (ent == 1 && e->zero_grain))
                    continue;
                if (e->se && ent == SESPARSE_BAD_ENTRY) {
                    snprintf(line, sizeof line, "ERROR: could not get cluster_offset for "
                             "sector %" PRIu64, e->start + g * e->grain);
                    if (report)
                        report(opaque, line);
                    res->check_errors++;
                    free(t);
                    return 0;
                }
                if ((uint64_t)ent * SECTOR >= e->file_size) {
                    snprintf(line, sizeof line, "ERROR: cluster offset for sector %" PRIu64
                             " points after EOF", e->start + g * e->grain);
                    if (report)
                        report(opaque, line);
                    res->corruptions++;
                    free(t);
                    /* As qemu-img: the check fails there (the line says why). */
                    return err_set(-EINVAL, "%s", strerror(EINVAL));
                }
            }
        }
        free(t);
    }
    return 0;
}

uint32_t vmdk_cid(struct vdisk_dev *dev)
{
    const struct vmdk *s = dev->drv == &vdisk_driver_vmdk ? dev->priv : NULL;
    return s ? s->cid : 0xffffffffu;
}

/* The options create takes (vdisk_create_option). */
static const struct create_opt vmdk_create_opts[] = {
    {"adapter_type", "str",
     "the disk's adapter: ide (default), lsilogic, buslogic or legacyESX"},
    {"backing_file", "str",
     "the parent disk (a VMDK)"},
    {"backing_fmt", "str",
     "the parent's format: vmdk when given"},
    {"compat6", "bool (on/off)",
     "write virtualHWVersion 6"},
    {"hwversion", "str",
     "the virtual hardware version written in the descriptor"},
    {"size", "size",
     "the virtual disk's size in bytes"},
    {"subformat", "str",
     "monolithicSparse (default), monolithicFlat, twoGbMaxExtentSparse, "
     "twoGbMaxExtentFlat or streamOptimized"},
    {"toolsversion", "str",
     "the VMware Tools version written in the descriptor"},
    {"zeroed_grain", "bool (on/off)",
     "mark zeroed grains in the grain tables instead of writing zeroes"},
    {NULL, NULL, NULL},
};

const struct vdisk_driver vdisk_driver_vmdk = {
    .name = "vmdk",
    .req_state_size = sizeof(struct vmdk_req),
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .submit = vmdk_submit,
    .block_status = vmdk_block_status,
    .allocated_size = vmdk_allocated_size,
    .get_info = vmdk_get_info,
    .backing = vmdk_backing,
    .check = vmdk_check,
    .create = vmdk_create,
    .create_opts = vmdk_create_opts,
    .compress = vmdk_compress,
    .write_compressed = vmdk_write_compressed,
};
