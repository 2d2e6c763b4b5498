/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/bitmap.c: persistent dirty bitmaps (the bitmaps header
 * extension, docs/interop/qcow2.txt "Bitmaps").
 *
 * vdisk does not update bitmaps.  It reads the bitmap directory so that
 * info shows the bitmaps and check counts their clusters (directory,
 * bitmap tables, bitmap data) as referenced, and an image that has bitmaps
 * opens read-only: a write would leave the bitmaps stale while they claim
 * to be consistent.  The open option drop-bitmaps=on removes them instead
 * (qcow2_drop_bitmaps).
 *
 * Everything is untrusted: the directory is bounded by QEMU's limits and
 * must lie inside the file, every entry inside the directory, every bitmap
 * table inside the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/info.h>

#include "driver.h"
#include "qcow2.h"

#define DIR_ENTRY_HEADER 24

void qcow2_free_bitmaps(struct qcow2 *s)
{
    for (uint32_t i = 0; s->bitmaps && i < s->nb_bitmaps; i++)
        free(s->bitmaps[i].name);
    free(s->bitmaps);
    free(s->bitmap_info);
    s->bitmaps = NULL;
    s->bitmap_info = NULL;
}

static int bad_entry(struct qcow2 *s, uint32_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_entry(struct qcow2 *s, uint32_t i, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(-EINVAL, "%s: bitmap directory entry %" PRIu32 " (at offset 0x%" PRIx64
                   "): %s", s->dev->filename, i, s->bitmap_dir_offset, msg);
}

/* Checks entry I, whose fixed part is at E; LEFT bytes of the directory
 * remain from E.  Stores its length (padded) in *len. */
static int parse_entry(struct qcow2 *s, uint32_t i, const uint8_t *e, uint64_t left,
                       uint64_t file_size, uint64_t *len)
{
    struct qcow2_bitmap *bm = &s->bitmaps[i];
    if (left < DIR_ENTRY_HEADER)
        return bad_entry(s, i, "the entry runs past the end of the directory (%" PRIu64
                         " bytes)", s->bitmap_dir_size);
    bm->table_offset = be64_load(e);
    bm->table_size = be32_load(e + 8);
    bm->flags = be32_load(e + 12);
    uint8_t type = e[16];
    bm->granularity_bits = e[17];
    uint16_t name_size = be16_load(e + 18);
    uint32_t extra = be32_load(e + 20);
    uint64_t n = DIR_ENTRY_HEADER + (uint64_t)extra + name_size;
    n = (n + 7) & ~7ull;
    if (n > left)
        return bad_entry(s, i, "the entry (%" PRIu64 " bytes with %" PRIu32 " bytes of extra "
                         "data) runs past the end of the directory (%" PRIu64 " bytes)", n,
                         extra, s->bitmap_dir_size);
    if (type != QCOW2_BITMAP_TYPE_DIRTY)
        return bad_entry(s, i, "unknown bitmap type %u (1, dirty tracking, expected)", type);
    if (bm->flags & ~QCOW2_BITMAP_FLAGS_KNOWN)
        return bad_entry(s, i, "reserved flags set (0x%08" PRIx32 ")", bm->flags);
    if (bm->granularity_bits < QCOW2_BITMAP_MIN_GRAN ||
        bm->granularity_bits > QCOW2_BITMAP_MAX_GRAN)
        return bad_entry(s, i, "granularity bits %u out of range (%d to %d)",
                         bm->granularity_bits, QCOW2_BITMAP_MIN_GRAN, QCOW2_BITMAP_MAX_GRAN);
    if (name_size == 0 || name_size > QCOW2_MAX_BITMAP_NAME)
        return bad_entry(s, i, "the name is %u bytes long (1 to %d)", name_size,
                         QCOW2_MAX_BITMAP_NAME);
    if (bm->table_size == 0 || bm->table_size > QCOW2_MAX_BITMAP_TABLE)
        return bad_entry(s, i, "the bitmap table has %" PRIu32 " entries (1 to %u)",
                         bm->table_size, QCOW2_MAX_BITMAP_TABLE);
    uint64_t table_bytes = (uint64_t)bm->table_size * 8;
    if (bm->table_offset == 0 || bm->table_offset % s->cluster_size ||
        !range_inside(bm->table_offset, table_bytes, file_size))
        return bad_entry(s, i, "the bitmap table at offset 0x%" PRIx64 " (%" PRIu64 " bytes) "
                         "is not cluster aligned or lies beyond the end of the file (%" PRIu64
                         " bytes)", bm->table_offset, table_bytes, file_size);
    /* The table must cover the virtual disk, within QEMU's bound. */
    uint64_t data_bytes = (uint64_t)bm->table_size << s->cluster_bits;
    uint64_t bits = (s->size >> bm->granularity_bits) +
                    ((s->size & ((1ull << bm->granularity_bits) - 1)) != 0);
    if (data_bytes > QCOW2_MAX_BITMAP_BYTES || (bits + 7) / 8 > data_bytes)
        return bad_entry(s, i, "a bitmap table of %" PRIu32 " entries does not fit a disk of %"
                         PRIu64 " bytes at granularity %" PRIu64, bm->table_size, s->size,
                         (uint64_t)1 << bm->granularity_bits);
    const char *name = (const char *)e + DIR_ENTRY_HEADER + extra;
    bm->name = strndup(name, name_size);
    if (!bm->name)
        return err_set(-ENOMEM, "out of memory");
    if (strlen(bm->name) != name_size)
        return bad_entry(s, i, "the name contains a NUL byte");
    for (uint32_t k = 0; k < i; k++)
        if (strcmp(s->bitmaps[k].name, bm->name) == 0)
            return bad_entry(s, i, "a second bitmap named '%s'", bm->name);
    *len = n;
    return 0;
}

int qcow2_load_bitmaps(struct qcow2 *s, uint64_t file_size)
{
    if (!s->nb_bitmaps)
        return 0;
    if (!range_inside(s->bitmap_dir_offset, s->bitmap_dir_size, file_size))
        return err_set(-EINVAL, "%s: the bitmap directory at offset 0x%" PRIx64 " (%" PRIu64
                       " bytes) lies beyond the end of the file (%" PRIu64 " bytes)",
                       s->dev->filename, s->bitmap_dir_offset, s->bitmap_dir_size, file_size);
    uint8_t *dir = malloc(s->bitmap_dir_size);
    s->bitmaps = calloc(s->nb_bitmaps, sizeof *s->bitmaps);
    s->bitmap_info = calloc(s->nb_bitmaps, sizeof *s->bitmap_info);
    int r = 0;
    if (!dir || !s->bitmaps || !s->bitmap_info)
        r = err_set(-ENOMEM, "out of memory for a bitmap directory of %" PRIu64 " bytes",
                    s->bitmap_dir_size);
    if (r == 0)
        r = dev_pread(s->file, dir, s->bitmap_dir_size, s->bitmap_dir_offset);
    uint64_t pos = 0;
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
        uint64_t len = 0;
        r = parse_entry(s, i, dir + pos, s->bitmap_dir_size - pos, file_size, &len);
        pos += len;
    }
    if (r == 0 && pos != s->bitmap_dir_size)
        r = err_set(-EINVAL, "%s: the bitmap directory is %" PRIu64 " bytes long, but its %"
                    PRIu32 " entries take %" PRIu64, s->dev->filename, s->bitmap_dir_size,
                    s->nb_bitmaps, pos);
    for (uint32_t i = 0; r == 0 && i < s->nb_bitmaps; i++) {
        s->bitmap_info[i].name = s->bitmaps[i].name;
        s->bitmap_info[i].granularity = 1ull << s->bitmaps[i].granularity_bits;
        s->bitmap_info[i].flags = (s->bitmaps[i].flags & QCOW2_BITMAP_IN_USE ? VDISK_BITMAP_IN_USE
                                                                            : 0) |
                                  (s->bitmaps[i].flags & QCOW2_BITMAP_AUTO ? VDISK_BITMAP_AUTO : 0);
    }
    free(dir);
    return r;
}

/* Reads the bitmap table of BM (host byte order) into *out. */
static int read_bitmap_table(struct qcow2 *s, const struct qcow2_bitmap *bm, uint64_t **out)
{
    uint64_t *t = malloc((size_t)bm->table_size * 8);
    if (!t)
        return err_set(-ENOMEM, "out of memory for a bitmap table of %" PRIu32 " entries",
                       bm->table_size);
    int r = dev_pread(s->file, t, (size_t)bm->table_size * 8, bm->table_offset);
    if (r < 0) {
        free(t);
        return r;
    }
    for (uint32_t j = 0; j < bm->table_size; j++)
        t[j] = be64_load(&t[j]);
    *out = t;
    return 0;
}

int qcow2_bitmap_clusters(struct qcow2 *s, void (*mark)(void *, uint64_t, uint64_t),
                          void (*bad)(void *, const char *), void *opaque)
{
    if (!s->nb_bitmaps)
        return 0;
    mark(opaque, s->bitmap_dir_offset, s->bitmap_dir_size);
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        mark(opaque, bm->table_offset, (uint64_t)bm->table_size * 8);
        uint64_t *t = NULL;
        int r = read_bitmap_table(s, bm, &t);
        if (r < 0)
            return r;
        for (uint32_t j = 0; j < bm->table_size; j++) {
            uint64_t e = t[j], off = e & QCOW2_BTE_OFFSET_MASK;
            char msg[256];
            if ((e & QCOW2_BTE_RESERVED) || (off && (e & 1)) || off % s->cluster_size) {
                snprintf(msg, sizeof msg, "ERROR bitmap '%s' table entry %" PRIu32 " (0x%016"
                         PRIx64 ") is invalid; bitmap table corrupted", bm->name, j, e);
                bad(opaque, msg);
                continue;
            }
            if (off)
                mark(opaque, off, s->cluster_size);
        }
        free(t);
    }
    return 0;
}

int qcow2_drop_bitmaps(struct qcow2 *s)
{
    if (!s->nb_bitmaps)
        return 0;
    /* The header without the extension and its autoclear bit first: after a
     * crash past this point the bitmaps' clusters are leaks, never in use
     * twice.  Then the leaks are repaired as check -r leaks does: only
     * clusters that nothing references any more are freed, whatever a
     * hostile bitmap table points to. */
    qcow2_free_bitmaps(s);
    s->nb_bitmaps = 0;
    s->bitmap_dir_offset = s->bitmap_dir_size = 0;
    s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    int r = qcow2_write_header(s);
    if (r == 0)
        r = qcow2_repair_leaks(s);
    return r;
}
