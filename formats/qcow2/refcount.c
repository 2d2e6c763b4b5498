/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/refcount.c: reference counts of host clusters, cluster
 * allocation, growth of the refcount table, and the ordered metadata flush.
 * The caller holds s->lock, except for qcow2_grow_unlocked() and
 * qcow2_writeback_unlocked(), which take it themselves and let it go
 * across their I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "qcow2.h"

/* ---- Refcount block entries of any width ---------------------------------- */

uint64_t qcow2_rb_get(const struct qcow2 *s, const uint8_t *b, uint64_t i)
{
    switch (s->refcount_order) {
    case 0: return (b[i / 8] >> (i % 8)) & 1;
    case 1: return (b[i / 4] >> (2 * (i % 4))) & 3;
    case 2: return (b[i / 2] >> (4 * (i % 2))) & 15;
    case 3: return b[i];
    case 4: return be16_load(b + 2 * i);
    case 5: return be32_load(b + 4 * i);
    default: return be64_load(b + 8 * i);
    }
}

void qcow2_rb_set(const struct qcow2 *s, uint8_t *b, uint64_t i, uint64_t v)
{
    switch (s->refcount_order) {
    case 0:
        b[i / 8] = (uint8_t)((b[i / 8] & ~(1u << (i % 8))) | (v & 1) << (i % 8));
        break;
    case 1:
        b[i / 4] = (uint8_t)((b[i / 4] & ~(3u << (2 * (i % 4)))) | (v & 3) << (2 * (i % 4)));
        break;
    case 2:
        b[i / 2] = (uint8_t)((b[i / 2] & ~(15u << (4 * (i % 2)))) | (v & 15) << (4 * (i % 2)));
        break;
    case 3: b[i] = (uint8_t)v; break;
    case 4: be16_store(b + 2 * i, (uint16_t)v); break;
    case 5: be32_store(b + 4 * i, (uint32_t)v); break;
    default: be64_store(b + 8 * i, v); break;
    }
}

/* The refcount block offset for table index T (0: none), validated. */
static int reft_block(struct qcow2 *s, uint64_t t, uint64_t *off)
{
    *off = 0;
    if (t >= s->reft_entries)
        return 0;
    uint64_t e = s->reft[t];
    if (e & QCOW2_REFT_RESERVED)
        return qcow2_corrupt(s, "refcount table entry %" PRIu64 " (0x%" PRIx64
                             ") has reserved bits set", t, e);
    e &= ~QCOW2_REFT_RESERVED;
    if (e % s->cluster_size)
        return qcow2_corrupt(s, "Refblock offset %#" PRIx64 " unaligned (reftable index: %#"
                             PRIx64 ")", e, t);
    if (e == 0 && s->reft[t])
        return qcow2_corrupt(s, "refcount block at offset 0 (table entry %" PRIu64 ")", t);
    *off = e;
    return 0;
}

int qcow2_refcount_get(struct qcow2 *s, uint64_t cluster, uint64_t *rc)
{
    uint64_t off;
    *rc = 0;
    int r = reft_block(s, cluster >> s->rb_bits, &off);
    if (r < 0 || off == 0)
        return r;
    uint8_t *b;
    r = qcow2_cache_get(&s->rbc, off, true, &b);
    if (r < 0)
        return r;
    *rc = qcow2_rb_get(s, b, cluster & (s->rb_entries - 1));
    qcow2_cache_put(&s->rbc, b);
    return 0;
}

static int write_reft_entry(struct qcow2 *s, uint64_t t)
{
    uint8_t b[8];
    be64_store(b, s->reft[t]);
    return dev_pwrite(s->file, b, 8, s->reft_offset + t * 8);
}

/* ---- The end of the metadata ------------------------------------------------ */

/* Tables placed at or below END - 1 (a bound only ever raised here; walked
 * afresh after qcow2_meta_moved()). */
static void meta_raise(struct qcow2 *s, uint64_t end)
{
    if (s->meta_end && end > s->meta_end)
        s->meta_end = end;
}

void qcow2_meta_moved(struct qcow2 *s)
{
    s->meta_end = 0;
}

/* ---- Growing the refcount table ------------------------------------------- */

static int grow_reftable(struct qcow2 *s, uint64_t min_entries)
{
    uint64_t cs = s->cluster_size, per = cs / 8;
    /* Checked first: the placement below walks the table's clusters. */
    if (min_entries > QCOW2_MAX_REFTABLE_BYTES / 8)
        return err_set(-EFBIG, "%s: the refcount table would exceed %u bytes",
                       s->dev->filename, QCOW2_MAX_REFTABLE_BYTES);
    uint64_t file_clusters = (qcow2_file_end(s) + cs - 1) / cs;
    uint64_t p = file_clusters > s->free_cluster_index ? file_clusters : s->free_cluster_index;
    uint64_t entries = min_entries + min_entries / 2 + 1;
    uint64_t tclusters = 0, nb = 0;
    for (int iter = 0;; iter++) {
        if (iter > 64)
            return qcow2_corrupt(s, "cannot place a larger refcount table");
        tclusters = (entries + per - 1) / per;
        uint64_t end = p + tclusters + nb;
        /* Refcount blocks needed for the new clusters. */
        uint64_t t0 = p >> s->rb_bits, t1 = (end - 1) >> s->rb_bits, need = 0;
        for (uint64_t t = t0; t <= t1; t++)
            if (t >= s->reft_entries || s->reft[t] == 0)
                need++;
        if (t1 + 1 > entries) {
            entries = t1 + 1 + (t1 + 1) / 2;
            continue;
        }
        if (need == nb)
            break;
        nb = need;
    }
    if (tclusters * cs > QCOW2_MAX_REFTABLE_BYTES)
        return err_set(-EFBIG, "%s: the refcount table would exceed %u bytes",
                       s->dev->filename, QCOW2_MAX_REFTABLE_BYTES);
    /* The clusters chosen must be free. */
    for (uint64_t c = p; c < p + tclusters + nb; c++) {
        uint64_t rc;
        int r = qcow2_refcount_get(s, c, &rc);
        if (r < 0)
            return r;
        if (rc)
            return qcow2_corrupt(s, "cluster 0x%" PRIx64 " past the end of the image file has "
                                 "refcount %" PRIu64, c * cs, rc);
    }
    uint64_t new_entries = tclusters * per;
    uint64_t *table = calloc(new_entries, 8);
    uint8_t *blocks = nb ? calloc(nb, cs) : NULL;
    uint8_t *tbuf = malloc(tclusters * cs);
    if (!table || (nb && !blocks) || !tbuf) {
        free(table);
        free(blocks);
        free(tbuf);
        return err_set(-ENOMEM, "out of memory");
    }
    memcpy(table, s->reft, s->reft_entries * 8);
    uint64_t end = p + tclusters + nb, next_block = p + tclusters;
    qcow2_note_used(s, end * cs);
    int r = 0;
    uint64_t t0 = p >> s->rb_bits, t1 = (end - 1) >> s->rb_bits;
    for (uint64_t t = t0; t <= t1 && r == 0; t++) {
        uint64_t lo = t << s->rb_bits, hi = lo + s->rb_entries;
        if (lo < p)
            lo = p;
        if (hi > end)
            hi = end;
        if (table[t]) { /* an existing block: count through the cache */
            for (uint64_t c = lo; c < hi && r == 0; c++)
                r = qcow2_refcount_update(s, c, 1);
            continue;
        }
        uint64_t j = next_block - (p + tclusters);
        uint8_t *blk = blocks + j * cs;
        for (uint64_t c = lo; c < hi; c++)
            qcow2_rb_set(s, blk, c & (s->rb_entries - 1), 1);
        table[t] = next_block * cs;
        next_block++;
    }
    for (uint64_t j = 0; j < nb && r == 0; j++)
        r = dev_pwrite(s->file, blocks + j * cs, cs, (p + tclusters + j) * cs);
    for (uint64_t i = 0; i < new_entries; i++)
        be64_store(tbuf + i * 8, table[i]);
    if (r == 0)
        r = dev_pwrite(s->file, tbuf, tclusters * cs, p * cs);
    if (r == 0)
        r = qcow2_cache_write_back(&s->rbc);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0) {
        uint8_t h[12];
        be64_store(h, p * cs);
        be32_store(h + 8, (uint32_t)tclusters);
        r = dev_pwrite(s->file, h, 12, 48);
    }
    if (r == 0)
        r = dev_flush(s->file);
    free(blocks);
    free(tbuf);
    if (r < 0) {
        free(table);
        return r;
    }
    uint64_t old_off = s->reft_offset, old_clusters = s->reft_clusters;
    free(s->reft);
    s->reft = table;
    s->reft_entries = new_entries;
    s->reft_used = new_entries;
    s->reft_offset = p * cs;
    s->reft_clusters = (uint32_t)tclusters;
    if (s->free_cluster_index < end && s->free_cluster_index >= p)
        s->free_cluster_index = end;
    meta_raise(s, end * cs);
    return qcow2_free_later(s, old_off, old_clusters);
}

/* ---- Refcount blocks on demand -------------------------------------------- */

static int find_free(struct qcow2 *s, uint64_t n, uint64_t *start, bool cached_only);

/* Makes sure the refcount block for table index T exists. */
static int ensure_block(struct qcow2 *s, uint64_t t)
{
    if (t < s->reft_entries && s->reft[t])
        return 0;
    if (t >= s->reft_entries) {
        int r = grow_reftable(s, t + 1);
        if (r < 0)
            return r;
        if (s->reft[t])
            return 0;
    }
    uint64_t c = 0;
    int r = find_free(s, 1, &c, false);
    if (r < 0)
        return r;
    uint64_t off = c << s->cluster_bits;
    r = qcow2_check_overlap(s, off, s->cluster_size);
    if (r < 0)
        return r;
    meta_raise(s, off + s->cluster_size);
    uint8_t *b;
    if ((c >> s->rb_bits) == t) {
        /* The new block describes itself. */
        r = qcow2_cache_get(&s->rbc, off, false, &b);
        if (r < 0)
            return r;
        qcow2_rb_set(s, b, c & (s->rb_entries - 1), 1);
        qcow2_cache_dirty(&s->rbc, b);
        qcow2_cache_put(&s->rbc, b);
    } else {
        r = qcow2_refcount_update(s, c, 1);
        if (r < 0)
            return r;
        if (s->reft[t]) /* the update above created it */
            return qcow2_free_later(s, off, 1);
        r = qcow2_cache_get(&s->rbc, off, false, &b);
        if (r < 0)
            return r;
        qcow2_cache_dirty(&s->rbc, b);
        qcow2_cache_put(&s->rbc, b);
    }
    /* The block and its own refcount on disk before the table points to it. */
    r = qcow2_cache_write_back(&s->rbc);
    if (r == 0)
        r = dev_flush(s->file);
    if (r < 0)
        return r;
    s->reft[t] = off;
    if (t + 1 > s->reft_used)
        s->reft_used = t + 1;
    r = write_reft_entry(s, t);
    if (c == s->free_cluster_index)
        s->free_cluster_index = c + 1;
    return r;
}

/* Cluster CLUSTER's refcount through F: F gets the old value and gives
 * the new one (or -errno, refcount unchanged). */
static int refcount_modify(struct qcow2 *s, uint64_t cluster,
                           int (*f)(struct qcow2 *s, uint64_t cluster, uint64_t old,
                                    uint64_t arg, uint64_t *v),
                           uint64_t arg)
{
    uint64_t t = cluster >> s->rb_bits;
    int r = ensure_block(s, t);
    if (r < 0)
        return r;
    uint64_t off;
    r = reft_block(s, t, &off);
    if (r < 0)
        return r;
    uint8_t *b;
    r = qcow2_cache_get(&s->rbc, off, true, &b);
    if (r < 0)
        return r;
    uint64_t i = cluster & (s->rb_entries - 1);
    uint64_t old = qcow2_rb_get(s, b, i), v = old;
    r = f(s, cluster, old, arg, &v);
    if (r < 0) {
        qcow2_cache_put(&s->rbc, b);
        return r;
    }
    qcow2_rb_set(s, b, i, v);
    qcow2_cache_dirty(&s->rbc, b);
    qcow2_cache_put(&s->rbc, b);
    if (v == 0) {
        uint64_t host = cluster << s->cluster_bits;
        qcow2_cache_forget(&s->l2c, host);
        qcow2_cache_forget(&s->rbc, host);
        if (cluster < s->free_cluster_index)
            s->free_cluster_index = cluster;
    }
    return 0;
}

/* ARG: 0 adds one, 1 takes one away. */
static int step(struct qcow2 *s, uint64_t cluster, uint64_t old, uint64_t down, uint64_t *v)
{
    if (down && old == 0)
        return qcow2_corrupt(s, "the refcount of cluster 0x%" PRIx64 " would drop below 0",
                             cluster << s->cluster_bits);
    if (!down && old >= s->refcount_max)
        return err_set(-ERANGE, "%s: the refcount of cluster 0x%" PRIx64 " would exceed %" PRIu64
                       " (%" PRIu32 "-bit refcounts)", s->dev->filename,
                       cluster << s->cluster_bits, s->refcount_max, s->refcount_bits);
    *v = down ? old - 1 : old + 1;
    return 0;
}

static int assign(struct qcow2 *s, uint64_t cluster, uint64_t old, uint64_t value, uint64_t *v)
{
    (void)old;
    if (value > s->refcount_max)
        return err_set(-ERANGE, "%s: refcount %" PRIu64 " for cluster 0x%" PRIx64 " exceeds %"
                       PRIu64 " (%" PRIu32 "-bit refcounts)", s->dev->filename, value,
                       cluster << s->cluster_bits, s->refcount_max, s->refcount_bits);
    *v = value;
    return 0;
}

int qcow2_refcount_update(struct qcow2 *s, uint64_t cluster, int delta)
{
    if (delta != 1 && delta != -1)
        return err_set(-EINVAL, "refcount step %d (only +1 and -1)", delta);
    return refcount_modify(s, cluster, step, delta < 0);
}

int qcow2_refcount_set(struct qcow2 *s, uint64_t cluster, uint64_t value)
{
    return refcount_modify(s, cluster, assign, value);
}

/* ---- Allocation ----------------------------------------------------------- */

/* The refcount block at OFF (table index T) is not cached: reads it with
 * the blocks that follow it in the table and in the file, not cached
 * either, in one request (up to 64 KiB, a quarter of the cache): the free
 * cluster search walks them in that order.  Best effort: on any failure
 * the blocks are read one by one as before. */
static void read_ahead(struct qcow2 *s, uint64_t t, uint64_t off)
{
    uint64_t cs = s->cluster_size, k = 1, max = 65536 / cs;
    if (max > s->rbc.n / 4)
        max = s->rbc.n / 4;
    while (k < max && t + k < s->reft_entries && s->reft[t + k] == off + k * cs &&
           !qcow2_cache_has(&s->rbc, off + k * cs))
        k++;
    if (k < 2)
        return;
    uint8_t *buf = aligned_alloc_or_null(4096, k * cs);
    if (!buf)
        return;
    struct err_saved saved;
    err_save(&saved);
    if (dev_pread(s->file, buf, k * cs, off) == 0)
        for (uint64_t j = 0; j < k; j++)
            if (qcow2_cache_fill(&s->rbc, off + j * cs, buf + j * cs) < 0)
                break;
    err_restore(&saved);
    free(buf);
}

/* The first cluster the allocator looks at (never the header's). */
static uint64_t alloc_start(const struct qcow2 *s)
{
    return s->free_cluster_index ? s->free_cluster_index : 1;
}

/* Finds N free clusters in a row, from free_cluster_index on.  Each
 * refcount block is looked up once and its entries read in place; a
 * missing block is a run of free clusters as long as it describes.  With
 * CACHED_ONLY, a block that is not cached is not read: 1. */
static int find_free(struct qcow2 *s, uint64_t n, uint64_t *start, bool cached_only)
{
    uint64_t limit = QCOW2_OFFSET_MASK >> s->cluster_bits;
    uint64_t c = alloc_start(s), run = 0;
    while (run < n) {
        uint64_t x = c + run;
        if (x >= limit)
            break;
        uint64_t t = x >> s->rb_bits, off;
        int r = reft_block(s, t, &off);
        if (r < 0)
            return r;
        uint64_t i = x & (s->rb_entries - 1);
        if (off == 0) {
            run += s->rb_entries - i;
            continue;
        }
        if (!qcow2_cache_has(&s->rbc, off)) {
            if (cached_only)
                return 1;
            read_ahead(s, t, off);
        }
        uint8_t *b;
        r = qcow2_cache_get(&s->rbc, off, true, &b);
        if (r < 0)
            return r;
        for (; i < s->rb_entries && run < n; i++) {
            if (qcow2_rb_get(s, b, i)) {
                c = (t << s->rb_bits) + i + 1;
                run = 0;
            } else {
                run++;
            }
        }
        qcow2_cache_put(&s->rbc, b);
    }
    if (c + n > limit || c + n < c)
        return err_set(-ENOSPC, "%s: no room for %" PRIu64 " more clusters below 64 PiB",
                       s->dev->filename, n);
    *start = c;
    return 0;
}

static int take_clusters(struct qcow2 *s, uint64_t c, uint64_t n, uint64_t *host);

int qcow2_alloc_clusters_cached(struct qcow2 *s, uint64_t n, uint64_t *host)
{
    if (s->corrupt)
        return err_set(-EIO, "%s: the image is corrupt; writes are refused", s->dev->filename);
    uint64_t c = 0;
    int r = find_free(s, n, &c, true);
    if (r != 0)
        return r;
    /* A refcount block to make is I/O; so is growing the file. */
    for (uint64_t t = c >> s->rb_bits; t <= (c + n - 1) >> s->rb_bits; t++)
        if (t >= s->reft_entries || !s->reft[t])
            return 1;
    if (!s->no_grow && ((c + n) << s->cluster_bits) > s->grown_to)
        return 1;
    return take_clusters(s, c, n, host);
}

uint64_t qcow2_file_end(struct qcow2 *s)
{
    if (s->grown_to <= s->file_at_open)
        return dev_size(s->file);
    return s->used_end > s->file_at_open ? s->used_end : s->file_at_open;
}

void qcow2_note_used(struct qcow2 *s, uint64_t end)
{
    if (s->used_end < end)
        s->used_end = end;
}

int qcow2_refcounted_end(struct qcow2 *s, uint64_t *clusters)
{
    *clusters = 0;
    for (uint64_t t = s->reft_used < s->reft_entries ? s->reft_used : s->reft_entries; t-- > 0;) {
        uint64_t off;
        int r = reft_block(s, t, &off);
        if (r < 0)
            return r;
        if (!off)
            continue;
        uint8_t *b;
        r = qcow2_cache_get(&s->rbc, off, true, &b);
        if (r < 0)
            return r;
        for (uint64_t i = s->rb_entries; i-- > 0;) {
            if (qcow2_rb_get(s, b, i)) {
                *clusters = (t << s->rb_bits) + i + 1;
                qcow2_cache_put(&s->rbc, b);
                return 0;
            }
        }
        qcow2_cache_put(&s->rbc, b);
    }
    return 0;
}

/* Grows the file ahead of an allocation ending at END (bytes): in steps of
 * an eighth of END, 16 MiB to 512 MiB.  Best effort: where the file cannot
 * be preallocated, writes extend it as before. */
static uint64_t grow_target(uint64_t end)
{
    uint64_t step = end / 8;
    if (step < (16u << 20))
        step = 16u << 20;
    if (step > (512u << 20))
        step = 512u << 20;
    return align_up(end + step, 1u << 20);
}

/* Preallocates the file to TARGET bytes, leaving the thread's error message
 * as it was: true when it did. */
static bool preallocate_quietly(struct qcow2 *s, uint64_t target)
{
    struct err_saved saved;
    err_save(&saved);
    bool ok = dev_preallocate(s->file, target) == 0;
    err_restore(&saved);
    return ok;
}

static void grow_ahead(struct qcow2 *s, uint64_t end)
{
    if (s->no_grow || s->read_only || end <= s->grown_to)
        return;
    uint64_t target = grow_target(end);
    if (preallocate_quietly(s, target))
        s->grown_to = target;
    else
        s->no_grow = true;
}

void qcow2_grow_unlocked(struct qcow2 *s, uint64_t n)
{
    pthread_mutex_lock(&s->lock);
    uint64_t end = (alloc_start(s) + n) << s->cluster_bits;
    bool need = !s->no_grow && !s->read_only && end > s->grown_to;
    pthread_mutex_unlock(&s->lock);
    if (!need)
        return;
    uint64_t target = grow_target(end);
    bool ok = preallocate_quietly(s, target);
    pthread_mutex_lock(&s->lock);
    if (!ok)
        s->no_grow = true;
    else if (target > s->grown_to)
        s->grown_to = target;
    pthread_mutex_unlock(&s->lock);
}

unsigned qcow2_alloc_blocks(struct qcow2 *s, uint64_t n, uint64_t *offs)
{
    uint64_t c = alloc_start(s);
    unsigned k = 0;
    for (uint64_t t = c >> s->rb_bits; k < 2 && t <= (c + n) >> s->rb_bits; t++)
        if (t < s->reft_entries && t < s->reft_used && s->reft[t] &&
            !(s->reft[t] & QCOW2_REFT_RESERVED))
            offs[k++] = s->reft[t];
    return k;
}

int qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, uint64_t *host)
{
    if (s->corrupt)
        return err_set(-EIO, "%s: the image is corrupt; writes are refused", s->dev->filename);
    uint64_t c = 0;
    for (int tries = 0;; tries++) {
        if (tries > 8)
            return qcow2_corrupt(s, "cannot allocate %" PRIu64 " clusters", n);
        int r = find_free(s, n, &c, false);
        if (r < 0)
            return r;
        /* Their refcount blocks may need clusters too: made first; a block
         * that can describe itself right after the run goes there, as
         * QEMU places it (it counts the run's clusters, then finds the
         * block a place); look again if the run was taken. */
        bool made = false;
        for (uint64_t t = c >> s->rb_bits; t <= (c + n - 1) >> s->rb_bits; t++) {
            if (t >= s->reft_entries || !s->reft[t]) {
                uint64_t from = s->free_cluster_index;
                bool after = ((c + n) >> s->rb_bits) == t;
                if (after)
                    s->free_cluster_index = c + n;
                r = ensure_block(s, t);
                if (after)
                    s->free_cluster_index = from;
                if (r < 0)
                    return r;
                made = true;
            }
        }
        if (!made)
            break;
    }
    grow_ahead(s, (c + n) << s->cluster_bits);
    return take_clusters(s, c, n, host);
}

/* Counts the free clusters [C, C + N) as used (their blocks exist). */
static int take_clusters(struct qcow2 *s, uint64_t c, uint64_t n, uint64_t *host)
{
    int r = qcow2_check_overlap(s, c << s->cluster_bits, n << s->cluster_bits);
    if (r < 0)
        return r;
    for (uint64_t i = 0; i < n; i++) {
        r = qcow2_refcount_update(s, c + i, 1);
        if (r < 0)
            return r;
    }
    if (s->free_cluster_index == c || s->free_cluster_index < c + n)
        s->free_cluster_index = c + n;
    qcow2_note_used(s, (c + n) << s->cluster_bits);
    /* The clusters may become tables (L2, L1, snapshot): the end of the
     * metadata moves past them. */
    meta_raise(s, (c + n) << s->cluster_bits);
    *host = c << s->cluster_bits;
    return 0;
}

int qcow2_alloc_bytes(struct qcow2 *s, uint64_t len, uint64_t *host)
{
    if (len == 0 || len > s->cluster_size)
        return err_set(-EINVAL, "cannot pack %" PRIu64 " bytes", len);
    if (s->compress_cluster && s->compress_used < s->cluster_size) {
        /* A cluster whose refcount is at its most (narrow refcounts: one
         * piece with 1 bit, three with 2) takes no more pieces: the next
         * one starts a new cluster, as QEMU does. */
        uint64_t rc;
        int r = qcow2_refcount_get(s, s->compress_cluster >> s->cluster_bits, &rc);
        if (r < 0)
            return r;
        if (rc >= s->refcount_max)
            s->compress_cluster = 0;
    }
    if (s->compress_cluster && s->compress_used + len <= s->cluster_size) {
        /* Another piece in the cluster being packed: one more reference. */
        int r = qcow2_refcount_update(s, s->compress_cluster >> s->cluster_bits, 1);
        if (r < 0)
            return r;
        *host = s->compress_cluster + s->compress_used;
        s->compress_used += len;
        return 0;
    }
    uint64_t c = 0;
    int r = qcow2_alloc_clusters(s, 1, &c);
    if (r < 0)
        return r;
    if (s->compress_cluster && s->compress_used < s->cluster_size &&
        c == s->compress_cluster + s->cluster_size) {
        /* The new cluster follows the one being packed: the piece spans both, as QEMU
         * packs them, and each of the two holds one more reference. */
        r = qcow2_refcount_update(s, s->compress_cluster >> s->cluster_bits, 1);
        if (r < 0)
            return r; /* the new cluster leaks; check -r leaks reclaims it */
        *host = s->compress_cluster + s->compress_used;
        s->compress_used = s->compress_used + len - s->cluster_size;
        s->compress_cluster = c;
        return 0;
    }
    s->compress_cluster = c;
    s->compress_used = len;
    *host = c;
    return 0;
}

int qcow2_free_later(struct qcow2 *s, uint64_t host, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (s->ndeferred == s->capdeferred) {
            size_t cap = s->capdeferred ? s->capdeferred * 2 : 64;
            uint64_t *d = realloc(s->deferred, cap * sizeof *d);
            if (!d)
                return err_set(-ENOMEM, "out of memory");
            s->deferred = d;
            s->capdeferred = cap;
        }
        s->deferred[s->ndeferred++] = (host >> s->cluster_bits) + i;
    }
    s->meta_dirty = true;
    if (host == s->compress_cluster)
        s->compress_cluster = 0;
    if (s->ndeferred >= QCOW2_DEFERRED_FREE_MAX && !s->hold_frees)
        return qcow2_flush_metadata(s);
    return 0;
}

/* Drops the refcounts of the deferred frees DEF[0..N) (no table on disk
 * points to them any more). */
static int apply_frees(struct qcow2 *s, const uint64_t *def, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t c = def[i], rc;
        int r = qcow2_refcount_update(s, c, -1);
        if (r < 0)
            return r;
        if (s->discard_passthrough && qcow2_refcount_get(s, c, &rc) == 0 && rc == 0)
            dev_discard(s->file, c << s->cluster_bits, s->cluster_size);
    }
    return 0;
}

static int flush_locked(struct qcow2 *s)
{
    int r;
    if (qcow2_cache_has_dirty(&s->l2c))
        r = qcow2_cache_write_back(&s->l2c); /* refcounts first, then an fsync */
    else
        r = qcow2_cache_write_back(&s->rbc);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0 && s->data_file)
        r = dev_flush(s->data_file); /* guest data in an external data file */
    if (r < 0)
        return r;
    /* Now that no table on disk points to them, drop the freed clusters. */
    size_t n = s->ndeferred;
    s->ndeferred = 0;
    r = apply_frees(s, s->deferred, n);
    if (r == 0 && n)
        r = qcow2_cache_write_back(&s->rbc);
    s->meta_dirty = false;
    return r;
}

int qcow2_flush_metadata(struct qcow2 *s)
{
    pthread_mutex_lock(&s->wb_lock);
    int r = flush_locked(s);
    pthread_mutex_unlock(&s->wb_lock);
    return r;
}

int qcow2_writeback_unlocked(struct qcow2 *s, bool durable)
{
    pthread_mutex_lock(&s->lock);
    struct qcow2_wb_set rb, l2;
    int r = qcow2_cache_copy_dirty(&s->rbc, &rb);
    if (r == 0 && (r = qcow2_cache_copy_dirty(&s->l2c, &l2)) < 0)
        qcow2_wb_set_free(&rb);
    if (r < 0) {
        /* No memory for the copies: the old way, under the lock. */
        if (durable) {
            r = qcow2_flush_metadata(s);
        } else {
            r = qcow2_cache_write_back(&s->l2c);
            if (r == 0)
                r = qcow2_cache_write_back(&s->rbc);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    /* The frees that these tables make safe go with them. */
    uint64_t *def = NULL;
    size_t ndef = 0;
    if (durable) {
        def = s->deferred;
        ndef = s->ndeferred;
        s->deferred = NULL;
        s->ndeferred = s->capdeferred = 0;
        s->meta_dirty = false; /* set again by whatever changes meanwhile */
        s->wb_busy++;          /* qc_flush: a flush must wait for this one */
    }
    pthread_mutex_lock(&s->wb_lock);
    pthread_mutex_unlock(&s->lock);
    r = qcow2_wb_write(s, &rb);
    if (r == 0 && l2.n)
        r = dev_flush(s->file); /* refcounts (and guest data) durable first */
    if (r == 0 && (l2.n || durable) && s->data_file)
        r = dev_flush(s->data_file); /* guest data in an external data file */
    if (r == 0)
        r = qcow2_wb_write(s, &l2);
    if (r == 0 && durable)
        r = dev_flush(s->file);
    bool io_failed = r < 0;
    struct err_saved saved; /* the I/O's message, whatever comes after */
    if (io_failed)
        err_save(&saved);
    pthread_mutex_unlock(&s->wb_lock);
    pthread_mutex_lock(&s->lock);
    if (r == 0) {
        qcow2_cache_written(&s->rbc, &rb);
        qcow2_cache_written(&s->l2c, &l2);
    }
    if (durable) {
        s->wb_busy--;
        if (r == 0) {
            r = apply_frees(s, def, ndef);
        } else {
            s->meta_dirty = true;
            /* Still deferred: they go with the next flush. */
            for (size_t i = 0; i < ndef; i++)
                qcow2_free_later(s, def[i] << s->cluster_bits, 1);
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(def);
    qcow2_wb_set_free(&rb);
    qcow2_wb_set_free(&l2);
    if (io_failed)
        err_restore(&saved);
    return r;
}

/* ---- Overlap checks ------------------------------------------------------- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* The end of the metadata: every table the overlap check looks at. */
static uint64_t meta_end_walk(struct qcow2 *s)
{
    uint64_t cs = s->cluster_size, end = cs;
#define RAISE(a, n)                                                       \
    do {                                                                  \
        uint64_t a_ = (a), n_ = (n), e_ = a_ + n_;                        \
        if (n_ && (e_ < a_ ? UINT64_MAX : e_) > end)                      \
            end = e_ < a_ ? UINT64_MAX : e_;                              \
    } while (0)
    RAISE(s->l1_offset, (uint64_t)s->l1_size * 8);
    RAISE(s->reft_offset, (uint64_t)s->reft_clusters * cs);
    if (s->nb_snapshots)
        RAISE(s->snapshots_offset, s->snapshots_size);
    for (uint32_t i = 0; i < s->nb_snapshots && s->snaps; i++)
        if (!s->snaps[i].bad)
            RAISE(s->snaps[i].l1_offset, (uint64_t)s->snaps[i].l1_size * 8);
    for (uint64_t t = 0; t < s->reft_used; t++)
        if (s->reft[t])
            RAISE(s->reft[t] & ~QCOW2_REFT_RESERVED, cs);
    for (uint64_t i = 0; i < s->l1_size; i++)
        if (s->l1[i] & QCOW2_OFFSET_MASK)
            RAISE(s->l1[i] & QCOW2_OFFSET_MASK, cs);
#undef RAISE
    return end;
}

/* Where the tables are: a change the callers did not report (check.c
 * rebuilding the refcount structure) shows here too. */
static uint64_t meta_sig(const struct qcow2 *s)
{
    uint64_t v[] = {(uint64_t)(uintptr_t)s->l1, s->l1_offset, s->l1_size,
                    (uint64_t)(uintptr_t)s->reft, s->reft_offset, s->reft_clusters,
                    s->nb_snapshots, s->snapshots_offset, s->snapshots_size};
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        h = (h ^ v[i]) * 0x100000001b3ull;
    return h;
}

int qcow2_check_overlap(struct qcow2 *s, uint64_t host, uint64_t len)
{
    uint64_t sig = meta_sig(s);
    if (!s->meta_end || sig != s->meta_sig) {
        s->meta_end = meta_end_walk(s);
        s->meta_sig = sig;
    }
    if (host >= s->meta_end && len)
        return 0; /* past every table */
    uint64_t cs = s->cluster_size;
    const char *what = NULL;
    if (overlaps(host, len, 0, cs))
        what = "the header";
    else if (overlaps(host, len, s->l1_offset, (uint64_t)s->l1_size * 8))
        what = "the L1 table";
    else if (overlaps(host, len, s->reft_offset, (uint64_t)s->reft_clusters * cs))
        what = "the refcount table";
    else if (s->nb_snapshots && overlaps(host, len, s->snapshots_offset, s->snapshots_size))
        what = "the snapshot table";
    for (uint32_t i = 0; !what && i < s->nb_snapshots && s->snaps; i++)
        if (!s->snaps[i].bad && overlaps(host, len, s->snaps[i].l1_offset, (uint64_t)s->snaps[i].l1_size * 8))
            what = "a snapshot's L1 table";
    for (uint64_t t = 0; !what && t < s->reft_used; t++)
        if (s->reft[t] && overlaps(host, len, s->reft[t] & ~QCOW2_REFT_RESERVED, cs))
            what = "a refcount block";
    for (uint64_t i = 0; !what && i < s->l1_size; i++)
        if ((s->l1[i] & QCOW2_OFFSET_MASK) &&
            overlaps(host, len, s->l1[i] & QCOW2_OFFSET_MASK, cs))
            what = "an L2 table";
    if (what)
        return qcow2_corrupt(s, "allocating host range 0x%" PRIx64 "+0x%" PRIx64
                             " would overwrite %s (the refcounts are wrong)", host, len, what);
    return 0;
}
