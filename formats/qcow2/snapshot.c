/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/snapshot.c: internal snapshots: the snapshot table, and
 * taking, applying and deleting snapshots on an open image.
 *
 * Ordering, as for every metadata change (see qcow2.h): refcount increments
 * reach the disk before anything points to the clusters, and decrements
 * are applied only after nothing on disk points to them any more.  A new
 * snapshot table is written in full to new clusters and the header switched
 * to it with one write, so a crash leaves the old table or the new one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "endian.h"
#include "qcow2.h"

#define MAX_EXTRA 1024u                 /* QEMU's limit on extra data */
#define MAX_TABLE_BYTES (64u << 20)     /* QEMU's limit on the whole table */

void qcow2_free_snapshots(struct qcow2 *s)
{
    for (unsigned i = 0; i < s->nb_snapshots && s->snaps; i++) {
        free(s->snaps[i].id);
        free(s->snaps[i].name);
        free(s->snaps[i].extra);
    }
    free(s->snaps);
    s->snaps = NULL;
}

/*
 * The snapshot table is read through a window of up to 1 MiB: one read per
 * MiB rather than two per snapshot (65536 snapshots cost 131072 reads,
 * over a second on the threads engine).  An entry is at most 40 + 1024 +
 * 2 * 65535 bytes, so it always fits in the window.
 */
#define WINDOW_BYTES (1u << 20)

struct window {
    uint8_t *buf;
    uint64_t off, len;
};

/* LEN bytes at POS (inside the file of FILE_SIZE bytes) into DST. */
static int window_read(struct qcow2 *s, struct window *w, uint64_t file_size, uint64_t pos,
                       void *dst, size_t len)
{
    if (pos < w->off || pos + len > w->off + w->len) {
        uint64_t n = file_size - pos < WINDOW_BYTES ? file_size - pos : WINDOW_BYTES;
        w->len = 0;
        int r = dev_pread(s->file, w->buf, n, pos);
        if (r < 0)
            return r;
        w->off = pos;
        w->len = n;
    }
    memcpy(dst, w->buf + (pos - w->off), len);
    return 0;
}

static int load_snapshots(struct qcow2 *s, uint64_t file_size, struct window *w);

int qcow2_load_snapshots(struct qcow2 *s, uint64_t file_size)
{
    if (!s->nb_snapshots)
        return 0;
    struct window w = {malloc(WINDOW_BYTES), 0, 0};
    if (!w.buf)
        return err_set(-ENOMEM, "out of memory");
    int r = load_snapshots(s, file_size, &w);
    free(w.buf);
    return r;
}

static int load_snapshots(struct qcow2 *s, uint64_t file_size, struct window *w)
{
    s->snaps = calloc(s->nb_snapshots, sizeof *s->snaps);
    if (!s->snaps)
        return err_set(-ENOMEM, "out of memory");
    uint64_t pos = s->snapshots_offset;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        uint8_t h[40];
        if (pos - s->snapshots_offset + 40 > MAX_TABLE_BYTES || !range_inside(pos, 40, file_size))
            return err_set(-EINVAL, "%s: snapshot %" PRIu32 " at offset %" PRIu64 " lies beyond "
                           "the end of the file or the table's limit (%u bytes)",
                           s->dev->filename, i, pos, MAX_TABLE_BYTES);
        int r = window_read(s, w, file_size, pos, h, 40);
        if (r < 0)
            return r;
        sn->l1_offset = be64_load(h);
        sn->l1_size = be32_load(h + 8);
        uint16_t id_len = be16_load(h + 12), name_len = be16_load(h + 14);
        sn->date_sec = be32_load(h + 16);
        sn->date_nsec = be32_load(h + 20);
        sn->vm_clock_nsec = be64_load(h + 24);
        sn->vm_state_size = be32_load(h + 32);
        sn->extra_size = be32_load(h + 36);
        if (sn->extra_size > MAX_EXTRA)
            return err_set(-EINVAL, "%s: snapshot %" PRIu32 " has %" PRIu32 " bytes of extra "
                           "data (at most %u)", s->dev->filename, i, sn->extra_size, MAX_EXTRA);
        uint64_t len = 40 + (uint64_t)sn->extra_size + id_len + name_len;
        if (pos - s->snapshots_offset + len > MAX_TABLE_BYTES || !range_inside(pos, len, file_size))
            return err_set(-EINVAL, "%s: snapshot %" PRIu32 " at offset %" PRIu64 " (%" PRIu64
                           " bytes) lies beyond the end of the file", s->dev->filename, i, pos,
                           len);
        uint8_t *rest = malloc(len - 40 + 1);
        if (!rest)
            return err_set(-ENOMEM, "out of memory");
        r = window_read(s, w, file_size, pos + 40, rest, len - 40);
        if (r < 0) {
            free(rest);
            return r;
        }
        sn->extra = malloc(sn->extra_size + 1);
        sn->id = strndup((char *)rest + sn->extra_size, id_len);
        sn->name = strndup((char *)rest + sn->extra_size + id_len, name_len);
        if (sn->extra)
            memcpy(sn->extra, rest, sn->extra_size);
        free(rest);
        if (!sn->extra || !sn->id || !sn->name)
            return err_set(-ENOMEM, "out of memory");
        sn->disk_size = s->size;
        sn->icount = UINT64_MAX;
        if (sn->extra_size >= 8)
            sn->vm_state_size = be64_load(sn->extra);
        if (sn->extra_size >= 16)
            sn->disk_size = be64_load(sn->extra + 8);
        if (sn->extra_size >= 24)
            sn->icount = be64_load(sn->extra + 16);
        /* A snapshot whose L1 table cannot be used spoils only itself, as
         * with QEMU: the active layer and the other snapshots stay readable,
         * check reports it, and check -r all removes it. */
        uint64_t l1_bytes = (uint64_t)sn->l1_size * 8;
        if (sn->l1_offset % s->cluster_size)
            sn->bad = QCOW2_SNAP_UNALIGNED;
        else if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8)
            sn->bad = QCOW2_SNAP_TOO_LARGE;
        else if (sn->l1_size && sn->l1_offset == 0)
            sn->bad = QCOW2_SNAP_ON_HEADER;
        else if (sn->l1_size && !range_inside(sn->l1_offset, l1_bytes, file_size))
            sn->bad = QCOW2_SNAP_PAST_EOF;
        pos += (len + 7) & ~7ull;
    }
    s->snapshots_size = pos - s->snapshots_offset;
    return 0;
}

/* ---- Walking trees -------------------------------------------------------- */

static int read_l1(struct qcow2 *s, uint64_t off, uint32_t n, uint64_t **out)
{
    uint64_t *t = calloc(n ? n : 1, 8);
    if (!t)
        return err_set(-ENOMEM, "out of memory");
    int r = n ? dev_pread(s->file, t, (size_t)n * 8, off) : 0;
    if (r < 0) {
        free(t);
        return r;
    }
    for (uint32_t i = 0; i < n; i++)
        t[i] = be64_load(&t[i]);
    *out = t;
    return 0;
}

static int ref(struct qcow2 *s, uint64_t host, int delta)
{
    return delta > 0 ? qcow2_refcount_update(s, host >> s->cluster_bits, 1)
                     : qcow2_free_later(s, host, 1);
}

/* HOST, a cluster-aligned offset taken from a table (WHAT), must lie in
 * the image file: a reference beyond its end would grow the refcount
 * table towards it.  Returns 0 or -EUCLEAN (the image is corrupt). */
static int valid_host(struct qcow2 *s, uint64_t host, const char *what)
{
    if (host % s->cluster_size)
        return qcow2_corrupt(s, "%s at 0x%" PRIx64 " is not cluster aligned", what, host);
    if (host >= dev_size(s->file))
        return qcow2_corrupt(s, "%s at 0x%" PRIx64 " lies beyond the end of the image file "
                             "(%" PRIu64 " bytes)", what, host, dev_size(s->file));
    return 0;
}

/* Adds DELTA (+1 now, or -1 at the next flush) to the refcount of every L2
 * table and data cluster that the L1 table L1 reaches.  Every offset is
 * checked against the file first, as QEMU does: an image with one out of
 * place is corrupt, and nothing is counted for it. */
static int tree_refcount(struct qcow2 *s, const uint64_t *l1, uint32_t n, int delta)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2_off = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2_off)
            continue;
        int r = valid_host(s, l2_off, "an L2 table");
        if (r == 0)
            r = ref(s, l2_off, delta);
        uint8_t *l2;
        if (r == 0)
            r = qcow2_cache_get(&s->l2c, l2_off, true, &l2);
        if (r < 0)
            return r;
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t e = qcow2_l2e_get(s, l2, j);
            if (e & QCOW2_OFLAG_COMPRESSED) {
                uint64_t off, len;
                qcow2_compressed_range(s, e, &off, &len);
                uint64_t first = off & ~(s->cluster_size - 1);
                uint64_t last = (off + len - 1) & ~(s->cluster_size - 1);
                if (first >= dev_size(s->file)) {
                    r = qcow2_corrupt(s, "the compressed cluster at 0x%" PRIx64 " (L2 table at "
                                      "0x%" PRIx64 ", entry %" PRIu64 ") lies beyond the end of "
                                      "the image file (%" PRIu64 " bytes)", off, l2_off, j,
                                      dev_size(s->file));
                    break;
                }
                for (uint64_t c = first; c <= last && r == 0; c += s->cluster_size)
                    r = ref(s, c, delta);
            } else if (e & QCOW2_OFFSET_MASK) {
                r = valid_host(s, e & QCOW2_OFFSET_MASK, "a data cluster");
                if (r == 0)
                    r = ref(s, e & QCOW2_OFFSET_MASK, delta);
            }
        }
        qcow2_cache_put(&s->l2c, l2);
        if (r < 0)
            return r;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The refcount CLUSTER will have once the decrements waiting in
 * s->deferred (sorted into SORTED, N of them) are applied. */
static int effective_refcount(struct qcow2 *s, const uint64_t *sorted, size_t n,
                              uint64_t cluster, uint64_t *rc)
{
    int r = qcow2_refcount_get(s, cluster, rc);
    if (r < 0 || !n)
        return r;
    const uint64_t *hit = bsearch(&cluster, sorted, n, sizeof *sorted, cmp_u64);
    if (!hit)
        return 0;
    while (hit > sorted && hit[-1] == cluster)
        hit--;
    for (; hit < sorted + n && *hit == cluster && *rc; hit++)
        (*rc)--;
    return 0;
}

int qcow2_fix_copied(struct qcow2 *s, void (*report)(void *, uint64_t, uint64_t, bool),
                     void *opaque, uint64_t *fixed)
{
    /* COPIED follows the refcounts as they will be once the frees waiting
     * for the next flush are applied: a flag is then set before the
     * refcount reaches 1 on disk, never after (a leak at most in between). */
    uint64_t *sorted = NULL;
    size_t n = s->ndeferred;
    if (n) {
        sorted = malloc(n * sizeof *sorted);
        if (!sorted)
            return err_set(-ENOMEM, "out of memory");
        memcpy(sorted, s->deferred, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_u64);
    }
    /* An L2 table that several L1 entries share is walked once (a hostile
     * image points every entry at one table). */
    uint64_t file_clusters = (dev_size(s->file) + s->cluster_size - 1) >> s->cluster_bits;
    uint8_t *walked = calloc(file_clusters / 8 + 1, 1);
    if (!walked) {
        free(sorted);
        return err_set(-ENOMEM, "out of memory");
    }
    int ret = 0;
    for (uint64_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1[i], l2_off = e & QCOW2_OFFSET_MASK, rc;
        if (!l2_off || l2_off % s->cluster_size || l2_off >= dev_size(s->file))
            continue;
        int r = effective_refcount(s, sorted, n, l2_off >> s->cluster_bits, &rc);
        if (r < 0) {
            ret = r;
            break;
        }
        uint64_t want = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
        if (want != e) {
            if (report)
                report(opaque, i, e, true);
            s->l1[i] = want;
            r = qcow2_write_l1_entry(s, i);
            if (r < 0) {
                ret = r;
                break;
            }
            if (fixed)
                (*fixed)++;
        }
        uint64_t c = l2_off >> s->cluster_bits;
        if (walked[c / 8] & (1u << (c % 8)))
            continue;
        walked[c / 8] |= (uint8_t)(1u << (c % 8));
        uint8_t *l2;
        r = qcow2_cache_get(&s->l2c, l2_off, true, &l2);
        if (r < 0) {
            ret = r;
            break;
        }
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t le = qcow2_l2e_get(s, l2, j), host = le & QCOW2_OFFSET_MASK;
            if ((le & QCOW2_OFLAG_COMPRESSED) || !host || host % s->cluster_size)
                continue;
            r = effective_refcount(s, sorted, n, host >> s->cluster_bits, &rc);
            uint64_t w = rc == 1 ? le | QCOW2_OFLAG_COPIED : le & ~QCOW2_OFLAG_COPIED;
            if (r == 0 && w != le) {
                if (report)
                    report(opaque, j, le, false);
                qcow2_l2e_set(s, l2, j, w, qcow2_l2e_bitmap(s, l2, j));
                qcow2_cache_dirty(&s->l2c, l2);
                if (fixed)
                    (*fixed)++;
            }
        }
        qcow2_cache_put(&s->l2c, l2);
        if (r < 0) {
            ret = r;
            break;
        }
    }
    free(walked);
    free(sorted);
    return ret;
}

/* ---- The table ------------------------------------------------------------ */

/* Writes the table of snapshots SNAPS (N of them) to new clusters and
 * switches the header to it; the old table is freed. */
static int write_table(struct qcow2 *s, struct qcow2_snapshot *snaps, uint32_t n)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t extra = snaps[i].extra_size < 24 ? 24 : snaps[i].extra_size;
        size += (40 + extra + strlen(snaps[i].id) + strlen(snaps[i].name) + 7) & ~7ull;
    }
    if (size > MAX_TABLE_BYTES)
        return err_set(-EFBIG, "%s: the snapshot table would exceed %u bytes", s->dev->filename,
                       MAX_TABLE_BYTES);
    uint64_t clusters = (size + s->cluster_size - 1) / s->cluster_size, off = 0;
    uint8_t *buf = calloc(1, clusters ? clusters * s->cluster_size : 1);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    int r = clusters ? qcow2_alloc_clusters(s, clusters, &off) : 0;
    uint8_t *p = buf;
    for (uint32_t i = 0; r == 0 && i < n; i++) {
        struct qcow2_snapshot *sn = &snaps[i];
        uint32_t extra = sn->extra_size < 24 ? 24 : sn->extra_size;
        size_t idl = strlen(sn->id), nl = strlen(sn->name);
        be64_store(p, sn->l1_offset);
        be32_store(p + 8, sn->l1_size);
        be16_store(p + 12, (uint16_t)idl);
        be16_store(p + 14, (uint16_t)nl);
        be32_store(p + 16, sn->date_sec);
        be32_store(p + 20, sn->date_nsec);
        be64_store(p + 24, sn->vm_clock_nsec);
        be32_store(p + 32, sn->vm_state_size > UINT32_MAX ? 0 : (uint32_t)sn->vm_state_size);
        be32_store(p + 36, extra);
        if (sn->extra_size)
            memcpy(p + 40, sn->extra, sn->extra_size);
        be64_store(p + 40, sn->vm_state_size);
        be64_store(p + 48, sn->disk_size);
        be64_store(p + 56, sn->icount);
        memcpy(p + 40 + extra, sn->id, idl);
        memcpy(p + 40 + extra + idl, sn->name, nl);
        p += (40 + extra + idl + nl + 7) & ~7ull;
    }
    /* The new table durable, then the header points to it. */
    if (r == 0 && clusters)
        r = qcow2_flush_metadata(s);
    if (r == 0 && clusters)
        r = dev_pwrite(s->file, buf, clusters * s->cluster_size, off);
    if (r == 0)
        r = dev_flush(s->file);
    free(buf);
    if (r == 0) {
        uint8_t h[12];
        be32_store(h, n);
        be64_store(h + 4, off);
        r = dev_pwrite(s->file, h, 12, 60);
    }
    if (r == 0)
        r = dev_flush(s->file);
    if (r < 0)
        return r;
    uint64_t old = s->snapshots_offset, old_size = s->snapshots_size;
    s->snapshots_offset = off;
    s->snapshots_size = size;
    s->nb_snapshots = n;
    if (old && old_size)
        r = qcow2_free_later(s, old, (old_size + s->cluster_size - 1) / s->cluster_size);
    return r;
}

static int find(struct qcow2 *s, const char *name)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (strcmp(s->snaps[i].name, name) == 0)
            return (int)i;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (strcmp(s->snaps[i].id, name) == 0)
            return (int)i;
    return -1;
}

/* ---- Create, apply, delete ------------------------------------------------ */

static int check_writable(struct qcow2 *s)
{
    if (s->read_only)
        return err_set(-EROFS, "%s: the image is open read-only", s->dev->filename);
    if (s->corrupt)
        return err_set(-EIO, "%s: the image is marked corrupt", s->dev->filename);
    return 0;
}

const char *qcow2_snap_bad_text(enum qcow2_snap_bad bad)
{
    switch (bad) {
    case QCOW2_SNAP_OK:
        break;
    case QCOW2_SNAP_UNALIGNED:
        return "is not cluster aligned";
    case QCOW2_SNAP_TOO_LARGE:
        return "is too large";
    case QCOW2_SNAP_ON_HEADER:
        return "overlaps the header";
    case QCOW2_SNAP_PAST_EOF:
        return "lies beyond the end of the file";
    }
    return "is valid";
}

/* The snapshot K's L1 table cannot be used: -errno with a message. */
static int refuse_bad(struct qcow2 *s, int k)
{
    return err_set(-EINVAL, "%s: snapshot %s (%s) is corrupt: its L1 table (%" PRIu32
                   " entries at offset 0x%" PRIx64 ") %s (vdisk check -r all removes it)",
                   s->dev->filename, s->snaps[k].id, s->snaps[k].name, s->snaps[k].l1_size,
                   s->snaps[k].l1_offset, qcow2_snap_bad_text(s->snaps[k].bad));
}

int qcow2_snapshot_remove_bad(struct qcow2 *s, void (*report)(void *, const char *),
                              void *opaque, uint64_t *removed)
{
    uint32_t n = 0, nbad = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        nbad += s->snaps[i].bad != QCOW2_SNAP_OK;
    *removed = 0;
    if (!nbad)
        return 0;
    int r = check_writable(s);
    if (r < 0)
        return r;
    struct qcow2_snapshot *rest = calloc(s->nb_snapshots, sizeof *rest);
    if (!rest)
        return err_set(-ENOMEM, "out of memory");
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!s->snaps[i].bad)
            rest[n++] = s->snaps[i];
    r = qcow2_flush_metadata(s);
    if (r == 0)
        r = write_table(s, rest, n);
    if (r < 0) {
        free(rest);
        return r;
    }
    /* The table no longer names them; what only they referenced is a leak
     * (check repairs leaks before this). */
    uint32_t old_n = n + nbad;
    for (uint32_t i = 0; i < old_n; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        if (!sn->bad)
            continue;
        if (report) {
            char line[512];
            snprintf(line, sizeof line, "Repairing snapshot %s (%s): the snapshot table entry "
                     "is removed (its L1 table %s)", sn->id, sn->name,
                     qcow2_snap_bad_text(sn->bad));
            report(opaque, line);
        }
        free(sn->id);
        free(sn->name);
        free(sn->extra);
    }
    free(s->snaps);
    s->snaps = rest;
    *removed = nbad;
    return qcow2_flush_metadata(s);
}

/* The snapshot NAME (by name, else by id) of a writable image, with the
 * metadata flushed; its index, or -errno. */
static int writable_snapshot(struct qcow2 *s, const char *name)
{
    int r = check_writable(s);
    if (r < 0)
        return r;
    int k = find(s, name);
    if (k < 0)
        return err_set(-ENOENT, "%s: there is no snapshot '%s'", s->dev->filename, name);
    r = qcow2_flush_metadata(s);
    return r < 0 ? r : k;
}

/* After references moved: COPIED set right for the refcounts to come,
 * then the metadata flushed (tables first, the frees after them). */
static int settle(struct qcow2 *s)
{
    int r = qcow2_fix_copied(s, NULL, NULL, NULL);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    s->hold_frees = false;
    if (r == 0)
        r = qcow2_flush_metadata(s);
    return r;
}

int qcow2_snapshot_create(struct qcow2 *s, const char *name)
{
    int r = check_writable(s);
    if (r < 0)
        return r;
    if (!*name || strlen(name) > UINT16_MAX)
        return err_set(-EINVAL, "%s: invalid snapshot name", s->dev->filename);
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (strcmp(s->snaps[i].name, name) == 0)
            return err_set(-EEXIST, "%s: a snapshot named '%s' already exists",
                           s->dev->filename, name);
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
        return err_set(-EFBIG, "%s: too many snapshots (%d)", s->dev->filename,
                       QCOW2_MAX_SNAPSHOTS);
    r = qcow2_flush_metadata(s);
    if (r < 0)
        return r;
    /* A copy of the active L1 table, and one more reference to its tree. */
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    uint64_t l1_clusters = (l1_bytes + s->cluster_size - 1) / s->cluster_size, copy = 0;
    if (!l1_clusters)
        l1_clusters = 1;
    r = qcow2_alloc_clusters(s, l1_clusters, &copy);
    uint8_t *buf = r == 0 ? calloc(l1_clusters, s->cluster_size) : NULL;
    if (r == 0 && !buf)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0)
        r = tree_refcount(s, s->l1, s->l1_size, +1);
    if (r == 0) {
        for (uint32_t i = 0; i < s->l1_size; i++)
            be64_store(buf + i * 8, s->l1[i] & ~QCOW2_OFLAG_COPIED);
        r = qcow2_flush_metadata(s);
    }
    if (r == 0)
        r = dev_pwrite(s->file, buf, l1_clusters * s->cluster_size, copy);
    free(buf);
    /* Nothing in the active tree is owned alone any more. */
    if (r == 0)
        r = settle(s);
    if (r < 0)
        return r;

    /* The table with one more entry. */
    struct qcow2_snapshot *snaps = realloc(s->snaps, (s->nb_snapshots + 1) * sizeof *snaps);
    if (!snaps)
        return err_set(-ENOMEM, "out of memory");
    s->snaps = snaps;
    struct qcow2_snapshot *sn = &snaps[s->nb_snapshots];
    memset(sn, 0, sizeof *sn);
    unsigned long max_id = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(snaps[i].id, NULL, 10);
        if (v > max_id)
            max_id = v;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sn->id = str_printf("%lu", max_id + 1);
    sn->name = strdup(name);
    sn->extra = calloc(1, 24);
    sn->extra_size = 24;
    sn->l1_offset = copy;
    sn->l1_size = s->l1_size;
    sn->date_sec = (uint32_t)now.tv_sec;
    sn->date_nsec = (uint32_t)now.tv_nsec;
    sn->disk_size = s->size;
    sn->icount = 0;
    if (!sn->id || !sn->name || !sn->extra) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        return err_set(-ENOMEM, "out of memory");
    }
    r = write_table(s, snaps, s->nb_snapshots + 1);
    if (r < 0) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
    }
    return r;
}

int qcow2_snapshot_apply(struct qcow2 *s, const char *name)
{
    int k = writable_snapshot(s, name);
    if (k < 0)
        return k;
    struct qcow2_snapshot *sn = &s->snaps[k];
    if (sn->bad)
        return refuse_bad(s, k);
    int r = 0;
    uint64_t *snl1 = NULL;
    if (r == 0)
        r = read_l1(s, sn->l1_offset, sn->l1_size, &snl1);
    if (r < 0)
        return r;
    /* The snapshot's tree gains the active table's reference... */
    r = tree_refcount(s, snl1, sn->l1_size, +1);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    /* ...the active L1 table becomes the snapshot's (moved if it grows)... */
    uint64_t old_clusters = ((uint64_t)s->l1_size * 8 + s->cluster_size - 1) / s->cluster_size;
    uint64_t new_clusters = ((uint64_t)sn->l1_size * 8 + s->cluster_size - 1) / s->cluster_size;
    uint64_t l1_off = s->l1_offset;
    if (r == 0 && new_clusters > old_clusters)
        r = qcow2_alloc_clusters(s, new_clusters, &l1_off);
    uint8_t *buf = r == 0 ? calloc(new_clusters ? new_clusters : 1, s->cluster_size) : NULL;
    if (r == 0 && !buf)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        for (uint32_t i = 0; i < sn->l1_size; i++)
            be64_store(buf + i * 8, snl1[i]);
        r = qcow2_flush_metadata(s);
    }
    if (r == 0 && new_clusters)
        r = dev_pwrite(s->file, buf, new_clusters * s->cluster_size, l1_off);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0) {
        uint8_t h[24];
        be64_store(h, sn->disk_size);
        be32_store(h + 8, s->crypt_method);
        be32_store(h + 12, sn->l1_size);
        be64_store(h + 16, l1_off);
        r = dev_pwrite(s->file, h, 24, 24);
    }
    if (r == 0)
        r = dev_flush(s->file);
    free(buf);
    if (r < 0) {
        free(snl1);
        return r;
    }
    /* ...and the old active tree loses it. */
    uint64_t *old = s->l1;
    uint32_t old_size = s->l1_size;
    uint64_t old_off = s->l1_offset;
    s->l1 = snl1;
    s->l1_size = sn->l1_size;
    s->l1_offset = l1_off;
    s->size = sn->disk_size;
    __atomic_store_n(&s->dev->size, s->size, __ATOMIC_RELEASE);
    s->hold_frees = true;
    r = tree_refcount(s, old, old_size, -1);
    free(old);
    if (r == 0 && l1_off != old_off)
        r = qcow2_free_later(s, old_off, old_clusters);
    return r < 0 ? r : settle(s);
}

int qcow2_snapshot_delete(struct qcow2 *s, const char *name)
{
    int k = writable_snapshot(s, name);
    if (k < 0)
        return k;
    struct qcow2_snapshot gone = s->snaps[k];
    int r;
    /* The table without it first: then nothing on disk points to its tree. */
    struct qcow2_snapshot *rest = calloc(s->nb_snapshots, sizeof *rest);
    if (!rest)
        return err_set(-ENOMEM, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if ((int)i != k)
            rest[n++] = s->snaps[i];
    r = write_table(s, rest, n);
    if (r < 0) {
        free(rest);
        return r;
    }
    free(s->snaps);
    s->snaps = rest;
    uint64_t *l1 = NULL;
    /* A corrupt entry goes alone: what its tree held is left as leaks for
     * check -r leaks, rather than freed on the word of a broken entry. */
    r = gone.bad ? 0 : read_l1(s, gone.l1_offset, gone.l1_size, &l1);
    if (r == 0 && !gone.bad)
        s->hold_frees = true, r = tree_refcount(s, l1, gone.l1_size, -1);
    free(l1);
    uint64_t l1_clusters = ((uint64_t)gone.l1_size * 8 + s->cluster_size - 1) / s->cluster_size;
    if (r == 0 && gone.l1_offset && !gone.bad)
        r = qcow2_free_later(s, gone.l1_offset, l1_clusters ? l1_clusters : 1);
    free(gone.id);
    free(gone.name);
    free(gone.extra);
    return r < 0 ? r : settle(s);
}

int qcow2_snapshot_select(struct qcow2 *s, const char *name)
{
    int k = find(s, name);
    if (k < 0)
        return err_set(-ENOENT, "%s: there is no snapshot '%s'", s->dev->filename, name);
    if (s->snaps[k].bad)
        return refuse_bad(s, k);
    uint64_t *l1 = NULL;
    int r = read_l1(s, s->snaps[k].l1_offset, s->snaps[k].l1_size, &l1);
    if (r < 0)
        return r;
    free(s->l1);
    s->l1 = l1;
    s->l1_size = s->snaps[k].l1_size;
    s->l1_offset = s->snaps[k].l1_offset;
    s->size = s->snaps[k].disk_size;
    return 0;
}
