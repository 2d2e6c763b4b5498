/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/check.c: consistency check and repair, as qemu-img check.
 *
 * The check counts, for every host cluster up to the end of the file, the
 * references that the metadata makes to it (header, L1 tables, L2 tables,
 * data and compressed clusters, the refcount structure, snapshots), then
 * compares them with the stored refcounts: a refcount above the count is a
 * leak, one below it a corruption.  It then checks the COPIED flags of the
 * active tables against the refcounts.  Repairs set leaked refcounts right
 * (-r leaks), and with -r all rebuild the refcount structure when refcounts
 * are too low, and fix the COPIED flags.  The memory used is 4 bytes per
 * host cluster of the file (12 when L2 tables are shared, as with
 * snapshots), so it is bounded by the file's size.
 *
 * The time is bounded by the file's size too, however the tables point:
 * an L2 table referenced many times (snapshots share them; a hostile image
 * may point every L1 entry at one) is read and walked once, and its later
 * references are counted and applied in one more walk at the end; an L1
 * table of a snapshot that overlaps another L1 table (never the case in a
 * sound image, where each has its own clusters) is reported, not walked.
 *
 * The stored refcounts are read a refcount block at a time (rc_get()).  A
 * check that repairs nothing also checks the COPIED flags of the active
 * tables during the first walk, so that only the tables with something to
 * report are read again for the report (in qemu-img's order).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "qcow2.h"

/* See rc_get(). */
struct rc_cursor {
    uint8_t *blk;             /* block T, pinned; NULL: T has no block */
    uint64_t t;
    bool valid;               /* T is known */
};

struct ck {
    struct qcow2 *s;
    uint32_t *refs;           /* references found, per host cluster (NB + 1) */
    uint64_t nb;              /* clusters in the file */
    uint64_t nrefs;           /* clusters compared: NB, or NB + 1 when the
                                 cluster past the end is referenced */
    struct vdisk_check_result *res;
    vdisk_check_report_fn report;
    void *opaque;
    uint8_t *buf;             /* one cluster */
    bool rebuild;             /* the refcount structure cannot be trusted */
    uint8_t *seen;            /* bit per cluster: walked as an L2 table */
    uint8_t *l1seen;          /* bit per cluster: holds a walked L1 table */
    uint32_t *again;          /* per cluster, lazily: later references as an
                                 L2 table, from any L1 table... */
    uint32_t *again_active;   /* ...and from the active one */
    uint64_t bad_snapshots;   /* snapshot table entries with an unusable L1 table */
    uint64_t incomplete_snapshots; /* v3 entries without their 16 bytes of extra data */
    bool fix_errors;          /* -r all: L2 entries that can be mended are */
    /* A scan that repairs nothing checks the COPIED flags of the active
     * tables on its way (then check_copied() reads again only the tables
     * that have something to report): */
    uint8_t *clean;           /* bit per active L1 entry: found right */
    struct rc_cursor cur_l2, cur_data; /* the refcounts of tables, of data */
};

static bool bit_test_set(uint8_t *map, uint64_t c)
{
    bool was = map[c / 8] & (1u << (c % 8));
    map[c / 8] |= (uint8_t)(1u << (c % 8));
    return was;
}

/* The per-walk state, allocated with refs (NB clusters). */
static int ck_alloc(struct ck *ck)
{
    ck->refs = calloc(ck->nb + 1, sizeof *ck->refs);
    ck->seen = calloc(ck->nb / 8 + 1, 1);
    ck->l1seen = calloc(ck->nb / 8 + 1, 1);
    ck->buf = malloc(ck->s->cluster_size);
    if (!ck->refs || !ck->seen || !ck->l1seen || !ck->buf)
        return err_set(-ENOMEM, "out of memory for the check of %" PRIu64 " clusters", ck->nb);
    return 0;
}

static void ck_free(struct ck *ck)
{
    free(ck->refs);
    free(ck->seen);
    free(ck->l1seen);
    free(ck->again);
    free(ck->again_active);
    free(ck->buf);
    free(ck->clean);
    ck->refs = ck->again = ck->again_active = NULL;
    ck->seen = ck->l1seen = ck->buf = ck->clean = NULL;
}

/* A line of the check's report. */
#define say(ck, ...) check_reportf((ck)->report, (ck)->opaque, __VA_ARGS__)

/*
 * Counts WEIGHT references to the clusters of OFF+LEN, by qemu-img's rule:
 * a region that ends less than a cluster past the end of the file counts
 * (the last cluster of an image may be written only in part), the cluster
 * past the end included (compare() then finds its refcount too low); one
 * that reaches a whole cluster or more past the end is a corruption of its
 * own and counts nothing.
 */
static void mark_n(struct ck *ck, uint64_t off, uint64_t len, uint64_t weight)
{
    if (!len)
        return;
    uint64_t cs = ck->s->cluster_size, file_len = dev_size(ck->s->file);
    if (len > UINT64_MAX - off || (off + len > file_len && off + len - file_len >= cs)) {
        say(ck, "ERROR: counting reference for region exceeding the end of the file by one "
            "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64, off, len);
        ck->res->corruptions++;
        return;
    }
    uint64_t first = off >> ck->s->cluster_bits;
    uint64_t last = (off + len - 1) >> ck->s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        /* At most the one cluster past the file's (refs has room for it). */
        if (c > ck->nb)
            break;
        if (c >= ck->nrefs)
            ck->nrefs = c + 1;
        uint64_t v = ck->refs[c] + weight;
        ck->refs[c] = v < UINT32_MAX ? (uint32_t)v : UINT32_MAX;
    }
}

static void mark(struct ck *ck, uint64_t off, uint64_t len)
{
    mark_n(ck, off, len, 1);
}

/*
 * Walks one L2 table as WEIGHT references to it, ACTIVE of them from the
 * active L1 table (statistics); QUIET: the problems were reported at the
 * first walk, count them only.
 */
/* Entry J of the L2 table at L2_OFF (held in L2) becomes unallocated and
 * reading zeroes, on disk; returns whether it was written. */
static bool mend_l2_entry(struct ck *ck, uint8_t *l2, uint64_t l2_off, uint64_t j)
{
    struct qcow2 *s = ck->s;
    uint64_t esize = s->ext_l2 ? 16 : 8;
    if (s->ext_l2)
        qcow2_l2e_set(s, l2, j, 0, (uint64_t)0xffffffffu << 32);
    else
        qcow2_l2e_set(s, l2, j, QCOW2_OFLAG_ZERO, 0);
    if (dev_pwrite(s->file, l2 + j * esize, esize, l2_off + j * esize) < 0 ||
        dev_flush(s->file) < 0)
        return false;
    qcow2_cache_forget(&s->l2c, l2_off);
    return true;
}

static void walk_l2(struct ck *ck, uint8_t *l2, uint64_t l2_off, uint64_t weight,
                    uint64_t active, bool quiet)
{
    vdisk_check_report_fn report = ck->report;
    if (quiet)
        ck->report = NULL;
    struct qcow2 *s = ck->s;
    uint64_t contig = 0, *next_contig = &contig; /* QEMU counts within each table */
    for (uint64_t j = 0; j < s->l2_entries; j++) {
        uint64_t e = qcow2_l2e_get(s, l2, j), bm = qcow2_l2e_bitmap(s, l2, j);
        if (e & QCOW2_OFLAG_COMPRESSED) {
            uint64_t off, len;
            qcow2_compressed_range(s, e, &off, &len);
            mark_n(ck, off, len, weight);
            ck->res->allocated_clusters += (int64_t)active;
            ck->res->compressed_clusters += (int64_t)active;
            ck->res->fragmented_clusters += (int64_t)active;
            continue;
        }
        uint64_t host = e & QCOW2_OFFSET_MASK;
        uint64_t reserved = QCOW2_L2E_RESERVED | (s->version < 3 || s->ext_l2 ? 1 : 0);
        if (e & reserved) {
            say(ck, "ERROR: L2 entry 0x%016" PRIx64 " has reserved bits set", e);
            ck->res->corruptions += (int64_t)weight;
            continue;
        }
        if (s->ext_l2 && ((uint32_t)bm & (uint32_t)(bm >> 32))) {
            say(ck, "ERROR: extended L2 entry 0x%016" PRIx64 " 0x%016" PRIx64
                " has subclusters both allocated and zero", e, bm);
            ck->res->corruptions += (int64_t)weight;
        }
        if (host % s->cluster_size) {
            /* As qemu-img: the clusters it reaches still count as used
             * (nothing else may take them); one that holds no data (zero,
             * preallocated) is mended by -r all. */
            bool data = s->ext_l2 ? (uint32_t)bm != 0 : !(e & QCOW2_OFLAG_ZERO);
            ck->res->corruptions += (int64_t)weight;
            if (data) {
                say(ck, "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; L2 "
                    "entry corrupted.", host);
            } else {
                say(ck, "%s offset=%" PRIx64 ": Preallocated cluster is not properly aligned; "
                    "L2 entry corrupted.", ck->fix_errors && !quiet ? "Repairing" : "ERROR",
                    host);
                if (ck->fix_errors && !quiet && mend_l2_entry(ck, l2, l2_off, j)) {
                    ck->res->corruptions -= (int64_t)weight;
                    ck->res->corruptions_fixed += (int64_t)weight;
                    continue;
                }
            }
        }
        bool df = qcow2_has_data_file(s);
        if (!host && !(df && (e & QCOW2_OFLAG_COPIED)))
            continue;
        /* Data clusters in an external data file have no refcounts here. */
        if (!df)
            mark_n(ck, host, s->cluster_size, weight);
        ck->res->allocated_clusters += (int64_t)active;
        if (*next_contig && host != *next_contig)
            ck->res->fragmented_clusters += (int64_t)active;
        *next_contig = host + s->cluster_size;
    }
    ck->report = report;
}

/* A stored refcount; 0 where the refcount table entry itself is broken
 * (that is reported once, as a corruption, by scan()). */
static int ck_refcount(struct ck *ck, uint64_t c, uint64_t *rc)
{
    struct qcow2 *s = ck->s;
    uint64_t t = c >> s->rb_bits, b = t < s->reft_entries ? s->reft[t] : 0;
    *rc = 0;
    if ((b & QCOW2_REFT_RESERVED) || b % s->cluster_size || b >= dev_size(s->file))
        return 0;
    return qcow2_refcount_get(s, c, rc);
}

/*
 * Refcounts read in cluster order, a refcount block at a time: the block
 * of the last cluster asked for stays pinned in the cache, so a walk over
 * every cluster costs one cache look-up per block, not one per cluster.
 * Refcounts set meanwhile go into that same cached block.  A block that
 * cannot be read is not kept: every cluster of it is asked for again, as
 * ck_refcount() would.  rc_done() unpins.
 */
static void rc_done(struct ck *ck, struct rc_cursor *cur)
{
    if (cur->blk)
        qcow2_cache_put(&ck->s->rbc, cur->blk);
    cur->blk = NULL;
    cur->valid = false;
}

static int rc_get(struct ck *ck, struct rc_cursor *cur, uint64_t c, uint64_t *rc)
{
    struct qcow2 *s = ck->s;
    uint64_t t = c >> s->rb_bits;
    *rc = 0;
    if (!cur->valid || cur->t != t) {
        rc_done(ck, cur);
        uint64_t b = t < s->reft_entries ? s->reft[t] : 0;
        /* No block, or a broken entry (scan() reports it): zeroes. */
        if (b && !(b & QCOW2_REFT_RESERVED) && !(b % s->cluster_size) &&
            b < dev_size(s->file)) {
            int r = qcow2_cache_get(&s->rbc, b, true, &cur->blk);
            if (r < 0) {
                cur->blk = NULL;
                return r;
            }
        }
        cur->t = t;
        cur->valid = true;
    }
    if (cur->blk)
        *rc = qcow2_rb_get(s, cur->blk, c & (s->rb_entries - 1));
    return 0;
}

/*
 * Whether a COPIED flag is wrong: qemu-img's rule, set exactly when the
 * stored refcount is 1.  A flag set on a refcount of 2 is an error even when
 * one of the two references has leaked: a write in place would then be
 * refused by qemu (or done by another writer that trusts the refcount), and
 * qemu-img check calls it corruption.  -r leaks settles the flags of the
 * refcounts it repairs; -r all repairs the rest.
 */
static bool copied_wrong(const struct ck *ck, uint64_t c, uint64_t stored, bool copied)
{
    (void)ck;
    (void)c;
    return copied != (stored == 1);
}

/*
 * Whether check_copied() would find nothing to report for active L1 entry
 * I (E as read from the file, pointing to the table at L2) and, when the
 * table is walked here first, for the table in L2BUF (NULL: it is not).
 */
static bool copied_clean(struct ck *ck, uint64_t i, uint64_t e, uint64_t l2,
                         const uint8_t *l2buf)
{
    struct qcow2 *s = ck->s;
    uint64_t rc;
    if (i >= s->l1_size || e != s->l1[i] ||
        rc_get(ck, &ck->cur_l2, l2 >> s->cluster_bits, &rc) < 0 ||
        copied_wrong(ck, l2 >> s->cluster_bits, rc, (e & QCOW2_OFLAG_COPIED) != 0))
        return false;
    for (uint64_t j = 0; l2buf && j < s->l2_entries; j++) {
        uint64_t le = qcow2_l2e_get(s, l2buf, j), host = le & QCOW2_OFFSET_MASK;
        if ((le & QCOW2_OFLAG_COMPRESSED) || !host)
            continue;
        if (qcow2_has_data_file(s)) {
            if (!(le & QCOW2_OFLAG_COPIED))
                return false; /* (data file clusters: refcount 1) */
            continue;
        }
        if (rc_get(ck, &ck->cur_data, host >> s->cluster_bits, &rc) < 0 ||
            copied_wrong(ck, host >> s->cluster_bits, rc, (le & QCOW2_OFLAG_COPIED) != 0))
            return false;
    }
    return true;
}

static int read_cluster(struct ck *ck, uint64_t off, uint8_t *buf)
{
    int r = dev_pread(ck->s->file, buf, ck->s->cluster_size, off);
    if (r < 0)
        ck->res->check_errors++;
    return r;
}

/* Walks an L1 table of COUNT entries at OFF (the active one, or a snapshot's). */
static int walk_l1(struct ck *ck, uint64_t off, uint64_t count, bool active)
{
    struct qcow2 *s = ck->s;
    uint64_t bytes = count * 8;
    if (count > QCOW2_MAX_L1_BYTES / 8 || off % s->cluster_size ||
        !range_inside(off, bytes, dev_size(s->file))) {
        say(ck, "ERROR: L1 table at offset 0x%" PRIx64 " with %" PRIu64
            " entries is invalid or beyond the end of the file", off, count);
        ck->res->corruptions++;
        return 0;
    }
    mark(ck, off, bytes);
    uint64_t *l1 = malloc(bytes ? bytes : 1);
    if (!l1)
        return err_set(-ENOMEM, "out of memory");
    if (bytes && dev_pread(s->file, l1, bytes, off) < 0) {
        ck->res->check_errors++;
        free(l1);
        return 0;
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t e = be64_load(&l1[i]);
        uint64_t l2 = e & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if (l2 % s->cluster_size) {
            say(ck, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                "corrupted", l2);
            ck->res->corruptions++;
            continue;
        }
        mark(ck, l2, s->cluster_size);
        if (l2 >= dev_size(s->file))
            continue;
        uint64_t c = l2 >> s->cluster_bits;
        if (c < ck->nb && bit_test_set(ck->seen, c)) {
            /* Walked before: count this reference for the walk at the end. */
            if (!ck->again) {
                ck->again = calloc(ck->nb, sizeof *ck->again);
                ck->again_active = calloc(ck->nb, sizeof *ck->again_active);
                if (!ck->again || !ck->again_active) {
                    free(l1);
                    return err_set(-ENOMEM, "out of memory");
                }
            }
            if (ck->again[c] < UINT32_MAX)
                ck->again[c]++;
            if (active && ck->again_active[c] < UINT32_MAX)
                ck->again_active[c]++;
            if (active && ck->clean && copied_clean(ck, i, e, l2, NULL))
                bit_test_set(ck->clean, i);
            continue;
        }
        if (read_cluster(ck, l2, ck->buf) == 0) {
            walk_l2(ck, ck->buf, l2, 1, active, false);
            if (active && ck->clean && copied_clean(ck, i, e, l2, ck->buf))
                bit_test_set(ck->clean, i);
        }
    }
    free(l1);
    return 0;
}

/* The later references to L2 tables walked before, in one walk each. */
static void walk_again(struct ck *ck)
{
    if (!ck->again)
        return;
    for (uint64_t c = 0; c < ck->nb; c++) {
        if (!ck->again[c])
            continue;
        if (read_cluster(ck, c << ck->s->cluster_bits, ck->buf) == 0)
            walk_l2(ck, ck->buf, c << ck->s->cluster_bits, ck->again[c], ck->again_active[c],
                    true);
        ck->again[c] = ck->again_active[c] = 0;
    }
}

/* Whether the L1 table at OFF (COUNT entries) lies on clusters that hold
 * another L1 table walked before; marks its clusters as holding one. */
static bool l1_overlaps(struct ck *ck, uint64_t off, uint64_t count)
{
    if (!count || off % ck->s->cluster_size || !range_inside(off, count * 8, dev_size(ck->s->file)))
        return false; /* walk_l1 reports it */
    uint64_t c0 = off >> ck->s->cluster_bits, c1 = (off + count * 8 - 1) >> ck->s->cluster_bits;
    for (uint64_t c = c0; c <= c1 && c < ck->nb; c++)
        if (ck->l1seen[c / 8] & (1u << (c % 8)))
            return true;
    for (uint64_t c = c0; c <= c1 && c < ck->nb; c++)
        bit_test_set(ck->l1seen, c);
    return false;
}

/* The snapshot table: each snapshot's L1 table and what it references. */
static int walk_snapshots(struct ck *ck)
{
    struct qcow2 *s = ck->s;
    if (!s->nb_snapshots)
        return 0;
    mark(ck, s->snapshots_offset, s->snapshots_size);
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (qcow2_snapshot_incomplete(s, &s->snaps[i])) {
            say(ck, "%s snapshot table entry %" PRIu32 " is incomplete",
                ck->fix_errors ? "Repairing" : "ERROR", i);
            ck->res->corruptions++;
            ck->incomplete_snapshots++;
        }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snaps[i];
        if (sn->bad) {
            /* qemu-img check's words for the cases it names. */
            if (sn->bad == QCOW2_SNAP_UNALIGNED)
                say(ck, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not "
                    "cluster aligned; snapshot table entry corrupted", sn->id, sn->name,
                    sn->l1_offset);
            else if (sn->bad == QCOW2_SNAP_TOO_LARGE)
                say(ck, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too large; "
                    "snapshot table entry corrupted", sn->id, sn->name, sn->l1_size);
            else if (sn->bad == QCOW2_SNAP_PAST_EOF)
                say(ck, "ERROR: counting reference for region exceeding the end of the file by "
                    "one cluster or more: offset %#" PRIx64 " size %#" PRIx64, sn->l1_offset,
                    (uint64_t)sn->l1_size * 8);
            else
                say(ck, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table %s; snapshot "
                    "table entry corrupted", sn->id, sn->name, sn->l1_offset, qcow2_snap_bad_text(sn->bad));
            ck->res->corruptions++;
            ck->bad_snapshots++;
            continue;
        }
        if (l1_overlaps(ck, s->snaps[i].l1_offset, s->snaps[i].l1_size)) {
            say(ck, "ERROR: the L1 table of snapshot %" PRIu32 " (offset 0x%" PRIx64 ", %" PRIu32
                " entries) overlaps another L1 table", i, s->snaps[i].l1_offset,
                s->snaps[i].l1_size);
            ck->res->corruptions++;
            continue;
        }
        int r = walk_l1(ck, s->snaps[i].l1_offset, s->snaps[i].l1_size, false);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The clusters of the persistent dirty bitmaps. */
static void bitmap_mark(void *opaque, uint64_t off, uint64_t len)
{
    mark(opaque, off, len);
}

static void bitmap_bad(void *opaque, const char *msg)
{
    struct ck *ck = opaque;
    say(ck, "%s", msg);
    ck->res->corruptions++;
}

/* Compares the stored refcounts with the references counted, and repairs
 * leaks when FLAGS ask for it. */
static int compare(struct ck *ck, unsigned flags)
{
    struct qcow2 *s = ck->s;
    uint64_t cs = s->cluster_size;
    int r;
    uint64_t highest = 0;
    bool any = false, unreadable = false;
    struct rc_cursor cur = {0};
    for (uint64_t c = 0; c < ck->nrefs; c++) {
        uint64_t rc = 0;
        if (!unreadable) {
            r = rc_get(ck, &cur, c, &rc);
            if (r < 0) {
                ck->res->check_errors++;
                ck->rebuild = true;
                unreadable = true;
                continue;
            }
        }
        uint64_t ref = ck->refs[c];
        if (rc || ref) { /* qemu-img: the end of what is stored or referenced */
            highest = c;
            any = true;
        }
        if (rc == ref)
            continue;
        bool leak = rc > ref;
        if (leak && !(flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS))) {
            say(ck, "Leaked cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, c,
                rc, ref);
            ck->res->leaks++;
        } else if (leak || (rc && (flags & VDISK_CHECK_REPAIR_ERRORS))) {
            /* A leak, or a refcount too low but not 0: set right in place,
             * as qemu-img does. */
            say(ck, "Repairing cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                c, rc, ref);
            r = qcow2_refcount_set(s, c, ref);
            if (r < 0) {
                rc_done(ck, &cur);
                return r;
            }
            if (leak)
                ck->res->leaks_fixed++;
            else
                ck->res->corruptions_fixed++;
        } else {
            say(ck, "ERROR cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, c, rc,
                ref);
            ck->res->corruptions++;
            /* (qemu-img rebuilds the structure for a refcount of 0 only) */
            if (!rc)
                ck->rebuild = true;
        }
    }
    rc_done(ck, &cur);
    ck->res->image_end_offset = any ? (highest + 1) * cs : cs;
    return 0;
}

/* Counts every reference, then compares with the stored refcounts. */
/* scan(): compare with the repairs made at once, without the report-only
 * pass first (after a rebuild, as QEMU's check does). */
#define SCAN_REPAIR_AT_ONCE 0x80000000u
static int scan(struct ck *ck, unsigned flags)
{
    struct qcow2 *s = ck->s;
    uint64_t cs = s->cluster_size;
    ck->fix_errors = flags & VDISK_CHECK_REPAIR_ERRORS;
    memset(ck->refs, 0, (ck->nb + 1) * sizeof *ck->refs);
    ck->nrefs = ck->nb;
    memset(ck->seen, 0, ck->nb / 8 + 1);
    memset(ck->l1seen, 0, ck->nb / 8 + 1);
    free(ck->clean);
    ck->clean = NULL;
    if (!(flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS)))
        ck->clean = calloc(s->l1_size / 8 + 1, 1); /* none: check_copied() does it all */
    mark(ck, 0, cs);
    l1_overlaps(ck, s->l1_offset, s->l1_size);
    int r = walk_l1(ck, s->l1_offset, s->l1_size, true);
    rc_done(ck, &ck->cur_l2);
    rc_done(ck, &ck->cur_data);
    if (r == 0)
        r = walk_snapshots(ck);
    if (r < 0)
        return r;
    walk_again(ck);
    r = qcow2_bitmap_clusters(s, bitmap_mark, bitmap_bad, ck);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        ck->res->check_errors++;
    /* The LUKS header of an encrypted image (as QEMU counts it). */
    if (s->crypto_offset && s->crypto_offset != UINT64_MAX)
        mark(ck, s->crypto_offset, s->crypto_length);
    mark(ck, s->reft_offset, (uint64_t)s->reft_clusters * cs);
    for (uint64_t t = 0; t < s->reft_entries; t++) {
        uint64_t off = s->reft[t] & ~QCOW2_REFT_RESERVED;
        if (!s->reft[t])
            continue;
        if ((s->reft[t] & QCOW2_REFT_RESERVED) || off % cs || off >= dev_size(s->file)) {
            say(ck, "ERROR refcount block %" PRIu64 " is not cluster aligned or is beyond the "
                "end of the file; refcount table entry corrupted", t);
            ck->res->corruptions++;
            ck->rebuild = true;
            continue;
        }
        mark(ck, off, cs);
    }
    ck->res->total_clusters = (s->size + cs - 1) / cs;

    /* Stored refcounts against the references: first only reported, as
     * qemu-img does; then, when repairing and unless the structure is to be
     * rebuilt, once more from the same counts with the repairs made. */
    if (flags & SCAN_REPAIR_AT_ONCE)
        return compare(ck, flags & ~SCAN_REPAIR_AT_ONCE);
    struct vdisk_check_result pre = *ck->res;
    r = compare(ck, 0);
    if (r < 0 || !(flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS)))
        return r;
    if (ck->rebuild && (flags & VDISK_CHECK_REPAIR_ERRORS))
        return 0;
    if (ck->rebuild) {
        /* -r leaks cannot rebuild: qemu-img stops here, the check failed. */
        say(ck, "ERROR need to rebuild refcount structures");
        ck->res->check_errors++;
        return err_set(-EIO, "%s", strerror(EIO));
    }
    if (!ck->res->leaks && !ck->res->corruptions)
        return 0;
    *ck->res = pre;
    return compare(ck, flags);
}

/* Sets the refcount width fields of S for ORDER. */
static void set_order(struct qcow2 *s, uint32_t order)
{
    s->refcount_order = order;
    s->refcount_bits = 1u << order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - order;
    s->rb_entries = 1ull << s->rb_bits;
}

/*
 * A new refcount structure from the references counted (CK's refs, which
 * count the old structure too), with ORDER's width, as QEMU 7.2's check
 * rebuilds it: the old structure is left in place, untouched, until the
 * header points to the new one (a crash before leaves the old image as it
 * was), then the caller frees it as the leak it has become.  Clusters are
 * taken first fit in an in-memory copy of the counts: each refblock's in
 * its own range or later, then the table; a table that had to grow is
 * placed again (the places given up are leaks too).
 */
struct rebuild_state {
    struct qcow2 *s;
    uint32_t *rc;         /* the counts, per cluster (NC of them, CAP held) */
    uint64_t nc, cap;
    uint64_t *tab;        /* the new table: host offsets of refblocks */
    uint64_t ntab;
};

/* N free clusters in a row from *FIRST_FREE on (extending the counts past
 * the end where needed), counted as used; *FIRST_FREE moves to the first
 * free cluster seen.  Their first cluster, or UINT64_MAX out of memory. */
static uint64_t rb_alloc(struct rebuild_state *b, uint64_t n, uint64_t *first_free)
{
    uint64_t c = *first_free, run = 0;
    bool first_gap = true;
    for (; c < b->nc && run < n; c++) {
        if (b->rc[c]) {
            run = 0;
            continue;
        }
        run++;
        if (first_gap) {
            *first_free = c;
            first_gap = false;
        }
    }
    uint64_t need = c + (n - run);
    if (need > b->cap) {
        uint64_t cap = need + need / 4 + 64;
        uint32_t *rc = realloc(b->rc, cap * sizeof *rc);
        if (!rc)
            return UINT64_MAX;
        memset(rc + b->cap, 0, (cap - b->cap) * sizeof *rc);
        b->rc = rc;
        b->cap = cap;
    }
    if (need > b->nc)
        b->nc = need;
    uint64_t start = c - run;
    for (uint64_t i = 0; i < n; i++)
        b->rc[start + i] = 1;
    return start;
}

/* Gives every used cluster in [FROM, TO) a refblock (QEMU's
 * rebuild_refcounts_write_refblocks, the writes left for later): 1 when
 * the table had to grow, 0, or -ENOMEM. */
static int rb_cover(struct rebuild_state *b, uint64_t from, uint64_t to)
{
    struct qcow2 *s = b->s;
    uint64_t first_free = 0;
    int grown = 0;
    for (uint64_t c = from; c < to && c < b->nc; c++) {
        if (!b->rc[c])
            continue;
        uint64_t bi = c >> s->rb_bits, start = bi << s->rb_bits;
        if (bi >= b->ntab || !b->tab[bi]) {
            if (first_free < start)
                first_free = start; /* (not in a refblock already filled) */
            uint64_t off = rb_alloc(b, 1, &first_free);
            if (off == UINT64_MAX)
                return err_set(-ENOMEM, "out of memory");
            if (off >= to)
                to = off + 1; /* its own refblock needs covering too */
            if (bi >= b->ntab) {
                uint64_t n = ((bi + 1) * 8 + s->cluster_size - 1) / s->cluster_size *
                             s->cluster_size / 8;
                uint64_t *t = realloc(b->tab, n * sizeof *t);
                if (!t)
                    return err_set(-ENOMEM, "out of memory");
                memset(t + b->ntab, 0, (n - b->ntab) * sizeof *t);
                b->tab = t;
                b->ntab = n;
                grown = 1;
            }
            b->tab[bi] = off << s->cluster_bits;
        }
        c = start + s->rb_entries - 1; /* this refblock is done */
    }
    return grown;
}

static int rebuild(struct ck *ck, uint32_t order)
{
    struct qcow2 *s = ck->s;
    uint64_t cs = s->cluster_size;
    uint32_t old_order = s->refcount_order;
    set_order(s, order);
    struct rebuild_state b = {.s = s, .nc = ck->nrefs, .cap = ck->nrefs + 64};
    b.rc = calloc(b.cap, sizeof *b.rc);
    uint8_t *blk = NULL, *tbuf = NULL;
    uint64_t rt = 0, p = 0;
    int r = 0;
    if (!b.rc) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    memcpy(b.rc, ck->refs, ck->nrefs * sizeof *b.rc);
    for (uint64_t c = 0; c < b.nc; c++)
        if (b.rc[c] > s->refcount_max) {
            r = err_set(-ERANGE, "%s: cluster %" PRIu64 " has %" PRIu32 " references, more "
                        "than %" PRIu32 "-bit refcounts hold", s->dev->filename, c, b.rc[c],
                        s->refcount_bits);
            goto out;
        }
    r = rb_cover(&b, 0, b.nc);
    /* The table, placed again until it no longer grows. */
    for (int iter = 0; r >= 0 && iter < 64; iter++) {
        uint64_t first_free = 0;
        rt = (b.ntab * 8 + cs - 1) / cs;
        if (rt * cs > QCOW2_MAX_REFTABLE_BYTES) {
            r = err_set(-EFBIG, "%s: the rebuilt refcount table would be too large",
                        s->dev->filename);
            break;
        }
        p = rb_alloc(&b, rt, &first_free);
        if (p == UINT64_MAX) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        r = rb_cover(&b, p, p + rt);
        if (r == 0)
            break;
    }
    if (r > 0)
        r = err_set(-EIO, "%s: the rebuilt refcount table does not settle", s->dev->filename);
    if (r < 0)
        goto out;
    /* The refblocks, then the table, then the header. */
    blk = malloc(cs);
    tbuf = calloc(rt, cs);
    if (!blk || !tbuf) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t bi = 0; r == 0 && bi < b.ntab; bi++) {
        if (!b.tab[bi])
            continue;
        memset(blk, 0, cs);
        for (uint64_t i = 0; i < s->rb_entries; i++) {
            uint64_t c = (bi << s->rb_bits) + i;
            if (c < b.nc && b.rc[c])
                qcow2_rb_set(s, blk, i, b.rc[c]);
        }
        r = dev_pwrite(s->file, blk, cs, b.tab[bi]);
    }
    for (uint64_t bi = 0; bi < b.ntab; bi++)
        be64_store(tbuf + bi * 8, b.tab[bi]);
    if (r == 0)
        r = dev_pwrite(s->file, tbuf, rt * cs, p * cs);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0) {
        /* The table and the width change with one write of the header. */
        uint8_t h[52];
        be64_store(h, p * cs);
        be32_store(h + 8, (uint32_t)rt);
        be32_store(h + 12, s->nb_snapshots);
        be64_store(h + 16, s->snapshots_offset);
        be64_store(h + 24, s->incompat);
        be64_store(h + 32, s->compat);
        be64_store(h + 40, s->autoclear);
        be32_store(h + 48, order);
        r = s->version >= 3 ? dev_pwrite(s->file, h, 52, 48) : dev_pwrite(s->file, h, 12, 48);
    }
    if (r == 0)
        r = dev_flush(s->file);
    if (r < 0)
        goto out;
    /* Forget the old structure. */
    for (unsigned i = 0; i < s->rbc.n; i++) {
        s->rbc.e[i].offset = 0;
        s->rbc.e[i].dirty = false;
    }
    uint64_t *table = calloc(rt * cs / 8, 8);
    if (!table) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    memcpy(table, b.tab, b.ntab * 8);
    free(s->reft);
    s->reft = table;
    s->reft_offset = p * cs;
    s->reft_clusters = (uint32_t)rt;
    s->reft_entries = rt * cs / 8;
    s->reft_used = s->reft_entries;
    while (s->reft_used && !s->reft[s->reft_used - 1])
        s->reft_used--;
    s->free_cluster_index = 0;
    s->ndeferred = 0;
out:
    if (r < 0 && s->refcount_order != old_order)
        set_order(s, old_order);
    free(b.rc);
    free(b.tab);
    free(blk);
    free(tbuf);
    return r;
}

/* After rebuild(): the old structure, now a leak, freed (REPORT, if not
 * NULL, hears of each cluster as qemu-img's check prints it).  The counts
 * found here are not the caller's: the rebuild made these leaks. */
static int free_old_structure(struct ck *ck, vdisk_check_report_fn report, void *opaque)
{
    struct vdisk_check_result fresh = {.struct_size = sizeof fresh};
    struct vdisk_check_result *saved = ck->res;
    vdisk_check_report_fn saved_report = ck->report;
    void *saved_opaque = ck->opaque;
    int r = 0;
    uint64_t nb = (dev_size(ck->s->file) + ck->s->cluster_size - 1) / ck->s->cluster_size;
    if (nb > ck->nb) {
        ck_free(ck);
        ck->nb = nb;
        r = ck_alloc(ck);
    }
    ck->res = &fresh;
    ck->report = report;
    ck->opaque = opaque;
    ck->rebuild = false;
    if (r == 0)
        r = scan(ck, VDISK_CHECK_REPAIR_LEAKS | SCAN_REPAIR_AT_ONCE);
    if (r == 0 && ck->rebuild)
        say(ck, "ERROR rebuilt refcount structure is still broken");
    ck->res = saved;
    ck->report = saved_report;
    ck->opaque = saved_opaque;
    ck->rebuild = false;
    return r;
}

/* The COPIED flags of the active tables against the refcounts. */
struct copied_report {
    struct ck *ck;
    bool fix;
};

static void copied_found(void *opaque, uint64_t index, uint64_t entry, bool l1)
{
    struct copied_report *cr = opaque;
    struct ck *ck = cr->ck;
    uint64_t host = entry & QCOW2_OFFSET_MASK, rc = 0;
    if (!l1 && qcow2_has_data_file(ck->s))
        rc = 1;
    else
        ck_refcount(ck, host >> ck->s->cluster_bits, &rc);
    if (l1)
        say(ck, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64
            " refcount=%" PRIu64, cr->fix ? "Repairing" : "ERROR", index, entry, rc);
    else
        say(ck, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
            cr->fix ? "Repairing" : "ERROR", entry, rc);
    if (!cr->fix)
        ck->res->corruptions++;
}

static int check_copied(struct ck *ck, bool fix)
{
    struct qcow2 *s = ck->s;
    struct copied_report cr = {ck, fix};
    uint64_t fixed = 0;
    if (!fix) {
        /* Count without changing anything: work on copies of the tables.
         * An L2 table that several L1 entries share is walked once. */
        struct rc_cursor cur = {0};
        memset(ck->seen, 0, ck->nb / 8 + 1);
        for (uint64_t i = 0; i < s->l1_size; i++) {
            uint64_t e = s->l1[i], l2 = e & QCOW2_OFFSET_MASK, rc;
            if (!l2 || l2 % s->cluster_size || l2 >= dev_size(s->file))
                continue;
            if (rc_get(ck, &cur, l2 >> s->cluster_bits, &rc) < 0) {
                ck->res->check_errors++;
                continue;
            }
            if (ck->clean && (ck->clean[i / 8] & (1u << (i % 8)))) {
                /* Found right by scan(): only what it leaves behind. */
                if ((l2 >> s->cluster_bits) < ck->nb)
                    bit_test_set(ck->seen, l2 >> s->cluster_bits);
                continue;
            }
            if (copied_wrong(ck, l2 >> s->cluster_bits, rc, (e & QCOW2_OFLAG_COPIED) != 0))
                copied_found(&cr, i, e, true);
            if ((l2 >> s->cluster_bits) < ck->nb && bit_test_set(ck->seen, l2 >> s->cluster_bits))
                continue;
            if (read_cluster(ck, l2, ck->buf) < 0)
                continue;
            for (uint64_t j = 0; j < s->l2_entries; j++) {
                uint64_t le = qcow2_l2e_get(s, ck->buf, j), host = le & QCOW2_OFFSET_MASK;
                if ((le & QCOW2_OFLAG_COMPRESSED) || !host)
                    continue;
                if (qcow2_has_data_file(s)) {
                    /* A data file's clusters count once (QEMU's rule). */
                    if (!(le & QCOW2_OFLAG_COPIED))
                        copied_found(&cr, j, le, false);
                    continue;
                }
                if (rc_get(ck, &cur, host >> s->cluster_bits, &rc) < 0) {
                    ck->res->check_errors++;
                    continue;
                }
                if (copied_wrong(ck, host >> s->cluster_bits, rc,
                                 (le & QCOW2_OFLAG_COPIED) != 0))
                    copied_found(&cr, j, le, false);
            }
        }
        rc_done(ck, &cur);
        return 0;
    }
    int r = qcow2_fix_copied(s, copied_found, &cr, &fixed);
    ck->res->corruptions_fixed += (int64_t)fixed;
    return r;
}

static int run_check(struct qcow2 *s, unsigned flags, struct vdisk_check_result *res,
                     vdisk_check_report_fn report, void *opaque)
{
    struct ck ck = {.s = s, .res = res, .report = report, .opaque = opaque};
    int r = qcow2_flush_metadata(s);
    if (r < 0 && !s->read_only)
        return r;
    ck.nb = (dev_size(s->file) + s->cluster_size - 1) / s->cluster_size;
    r = ck_alloc(&ck);
    if (r < 0) {
        ck_free(&ck);
        return r;
    }
    bool fix_errors = flags & VDISK_CHECK_REPAIR_ERRORS, rebuilt = false;
    /* The snapshot table, when the open left it to the check (what -r all
     * cuts of it counts as corruptions; entries cut are fixed at once)... */
    uint64_t dropped = 0, reduced = 0;
    r = qcow2_check_snapshot_table(s, fix_errors, report, opaque, &dropped, &reduced);
    if (r < 0) {
        res->check_errors++;
        ck_free(&ck);
        return r;
    }
    res->corruptions += (int64_t)dropped;
    res->corruptions_fixed += (int64_t)reduced;
    /* ...refcounts against references (leaks repaired on the way)... */
    r = scan(&ck, flags);
    if (r == 0 && ck.rebuild && fix_errors) {
        if (report)
            report(opaque, "Rebuilding refcount structure");
        r = rebuild(&ck, s->refcount_order);
        if (r == 0)
            r = free_old_structure(&ck, report, opaque);
        if (r == 0) {
            res->corruptions_fixed += res->corruptions;
            res->corruptions = 0;
            rebuilt = true;
        }
    }
    /* ...snapshot table entries that cannot be used removed, now that the
     * refcounts can be trusted for the new table's clusters... */
    if (r == 0 && fix_errors && ck.bad_snapshots) {
        uint64_t removed = 0;
        r = qcow2_snapshot_remove_bad(s, report, opaque, &removed);
        if (r == 0 && !rebuilt)
            res->corruptions_fixed += (int64_t)removed;
    }
    /* ...the table written again: v3 entries without their extra data
     * completed, extra data past 1024 bytes dropped... */
    if (r == 0 && fix_errors && (ck.incomplete_snapshots || dropped)) {
        r = qcow2_snapshots_write(s);
        if (r == 0 && !rebuilt)
            res->corruptions_fixed += (int64_t)(ck.incomplete_snapshots + dropped);
    }
    /* ...then the COPIED flags against the refcounts.  Repaired leaks may
     * leave flags that the new refcounts make stale: -r leaks sets them. */
    if (r == 0 && !fix_errors && res->leaks_fixed)
        r = qcow2_fix_copied(s, NULL, NULL, NULL);
    if (r == 0)
        r = check_copied(&ck, fix_errors);
    if (r == 0 && (res->leaks_fixed || res->corruptions_fixed)) {
        /* Check again: what is left stays counted. */
        r = qcow2_flush_metadata(s);
        struct vdisk_check_result again = {.struct_size = sizeof again};
        uint64_t nb = (dev_size(s->file) + s->cluster_size - 1) / s->cluster_size;
        if (r == 0 && nb > ck.nb) {
            ck_free(&ck);
            ck.nb = nb;
            r = ck_alloc(&ck);
        }
        ck.res = &again;
        ck.rebuild = false;
        ck.bad_snapshots = 0;
        ck.incomplete_snapshots = 0;
        ck.report = NULL;
        if (r == 0)
            r = scan(&ck, 0);
        if (r == 0)
            r = check_copied(&ck, false);
        res->corruptions = again.corruptions;
        /* Leaks a rebuild removed count as fixed, as in qemu-img. */
        if (again.leaks < res->leaks)
            res->leaks_fixed += res->leaks - again.leaks;
        res->leaks = again.leaks;
        res->check_errors += again.check_errors;
        res->image_end_offset = again.image_end_offset;
        res->total_clusters = again.total_clusters;
        res->allocated_clusters = again.allocated_clusters;
        res->fragmented_clusters = again.fragmented_clusters;
        res->compressed_clusters = again.compressed_clusters;
        res->repaired = 1;
    }
    ck_free(&ck);
    return r;
}

int qcow2_check(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                vdisk_check_report_fn report, void *opaque)
{
    struct qcow2 *s = dev->priv;
    if (flags && s->read_only)
        return err_set(-EROFS, "%s: repairing needs the image opened read-write",
                       dev->filename);
    pthread_mutex_lock(&s->lock);
    bool was_corrupt = s->corrupt, was_warned = s->corrupt_warned;
    s->corrupt = false; /* the check reads through the refcount code */
    s->corrupt_warned = true; /* and reports what it finds itself */
    int r = run_check(s, flags, res, report, opaque);
    s->corrupt = was_corrupt;
    s->corrupt_warned = was_warned;
    if (r == 0 && flags && res->corruptions == 0 && (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        r = qcow2_set_incompat(s, QCOW2_INCOMPAT_CORRUPT, false);
        if (r == 0)
            s->corrupt = false;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_change_refcount_order(struct qcow2 *s, uint32_t order)
{
    struct vdisk_check_result res = {.struct_size = sizeof res};
    struct ck ck = {.s = s, .res = &res};
    ck.nb = (dev_size(s->file) + s->cluster_size - 1) / s->cluster_size;
    int r = ck_alloc(&ck);
    if (r == 0)
        r = scan(&ck, 0);
    if (r == 0 && (res.corruptions || res.check_errors))
        r = err_set(-EIO, "%s: the image has %" PRId64 " corruptions; repair it first",
                    s->dev->filename, res.corruptions);
    if (r == 0)
        r = rebuild(&ck, order);
    if (r == 0)
        r = free_old_structure(&ck, NULL, NULL);
    ck_free(&ck);
    return r;
}

int qcow2_rebuild_refcounts(struct qcow2 *s)
{
    struct vdisk_check_result res = {.struct_size = sizeof res};
    return run_check(s, VDISK_CHECK_REPAIR_ERRORS, &res, NULL, NULL);
}

int qcow2_repair_leaks(struct qcow2 *s)
{
    struct vdisk_check_result res = {.struct_size = sizeof res};
    return run_check(s, VDISK_CHECK_REPAIR_LEAKS, &res, NULL, NULL);
}
