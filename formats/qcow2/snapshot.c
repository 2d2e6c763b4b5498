/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/snapshot.c: internal snapshots: the snapshot table, and
 * taking, applying and deleting snapshots on an open image.
 *
 * Ordering: taking, applying and deleting a snapshot change refcounts and
 * COPIED flags together, which no order of writes in place keeps in step
 * across a crash (see "Changing trees in one switch" below).  Each of them
 * writes every cluster that changes anew, past everything the refcounts
 * count, and switches to the new image with one write in the header's
 * first sector: a crash leaves the old image or the new one, and qemu-img
 * check finds either clean.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"
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

/* How a table is read: at open (every fault an error), or by a check,
 * reporting, and with FIX cutting what QEMU's check -r all cuts. */
struct load_mode {
    bool check, fix;
    void (*report)(void *, const char *);
    void *opaque;
    uint64_t dropped, reduced;
};

static int load_snapshots(struct qcow2 *s, uint64_t file_size, struct window *w,
                          struct load_mode *m);

/* window_read(), where a check reads past the end of the file as QEMU
 * does: zeroes there. */
static int read_padded(struct qcow2 *s, struct window *w, uint64_t file_size, uint64_t pos,
                       void *dst, size_t len)
{
    if (range_inside(pos, len, file_size))
        return window_read(s, w, file_size, pos, dst, len);
    memset(dst, 0, len);
    return pos < file_size ? window_read(s, w, file_size, pos, dst, (size_t)(file_size - pos))
                           : 0;
}

static int load_table(struct qcow2 *s, uint64_t file_size, struct load_mode *m)
{
    if (!s->nb_snapshots)
        return 0;
    struct window w = {malloc(WINDOW_BYTES), 0, 0};
    if (!w.buf)
        return err_set(-ENOMEM, "out of memory");
    int r = load_snapshots(s, file_size, &w, m);
    free(w.buf);
    return r;
}

int qcow2_load_snapshots(struct qcow2 *s, uint64_t file_size)
{
    struct load_mode m = {0};
    return load_table(s, file_size, &m);
}

static int load_snapshots(struct qcow2 *s, uint64_t file_size, struct window *w,
                          struct load_mode *m)
{
    s->snaps = calloc(s->nb_snapshots, sizeof *s->snaps);
    if (!s->snaps)
        return err_set(-ENOMEM, "out of memory");
    uint64_t pos = s->snapshots_offset;
    /* The table's length as QEMU counts it: extra data cut to 1024 bytes
     * counts as cut. */
    uint64_t length = 0;
    /* (s->nb_snapshots counts the entries allocated so far, for a failure
     * to free; the whole count once all are read) */
    uint32_t total = s->nb_snapshots;
    s->nb_snapshots = 0;
    for (uint32_t i = 0; i < total; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        uint64_t entry_pos = pos;
        length = (length + 7) & ~7ull;
        uint8_t h[40];
        if (!m->check && !range_inside(pos, 40, file_size)) {
            s->nb_snapshots = i;
            return err_set(-EINVAL, "%s: snapshot %" PRIu32 " at offset %" PRIu64 " lies beyond "
                           "the end of the file", s->dev->filename, i, pos);
        }
        int r = read_padded(s, w, file_size, pos, h, 40);
        if (r < 0)
            return r;
        sn->l1_offset = be64_load(h);
        sn->l1_size = be32_load(h + 8);
        uint16_t id_len = be16_load(h + 12), name_len = be16_load(h + 14);
        sn->date_sec = be32_load(h + 16);
        sn->date_nsec = be32_load(h + 20);
        sn->vm_clock_nsec = be64_load(h + 24);
        sn->vm_state_size = be32_load(h + 32);
        uint32_t extra_on_disk = be32_load(h + 36);
        sn->extra_size = extra_on_disk;
        if (extra_on_disk > MAX_EXTRA) {
            if (!m->fix) {
                s->nb_snapshots = i; /* (what was read is freed) */
                return err_set(-EFBIG, "Too much extra metadata in snapshot table entry %" PRIu32
                               "\nYou can force-remove this extra metadata with vdisk check -r "
                               "all", i);
            }
            check_reportf(m->report, m->opaque, "Discarding too much extra metadata in snapshot "
                          "table entry %" PRIu32 " (%" PRIu32 " > %u)", i, extra_on_disk, MAX_EXTRA);
            m->dropped++;
            sn->extra_size = MAX_EXTRA; /* the first 1024 bytes kept */
        }
        uint64_t len = 40 + (uint64_t)extra_on_disk + id_len + name_len;
        if (!m->check && !range_inside(pos, len, file_size)) {
            s->nb_snapshots = i;
            return err_set(-EINVAL, "%s: snapshot %" PRIu32 " at offset %" PRIu64 " (%" PRIu64
                           " bytes) lies beyond the end of the file", s->dev->filename, i, pos,
                           len);
        }
        length += 40 + (uint64_t)sn->extra_size + id_len + name_len;
        if (length > MAX_TABLE_BYTES) {
            uint32_t over = total - i;
            total = i;
            s->nb_snapshots = i;
            if (!m->fix)
                return err_set(-EFBIG, "Snapshot table is too big\nYou can force-remove all %"
                               PRIu32 " overhanging snapshots with vdisk check -r all", over);
            check_reportf(m->report, m->opaque, "Discarding %" PRIu32 " overhanging snapshots "
                          "(snapshot table is too big)", over);
            m->reduced += over;
            memset(sn, 0, sizeof *sn);
            pos = entry_pos;
            break;
        }
        /* The entry's bytes after its 40: the extra data kept (at most
         * 1024 bytes; what a repair drops is not read), then id and name
         * (at most 64 KiB each). */
        s->nb_snapshots = i + 1;
        sn->extra = malloc(sn->extra_size + 1);
        sn->id = calloc(1, (size_t)id_len + 1);
        sn->name = calloc(1, (size_t)name_len + 1);
        if (!sn->extra || !sn->id || !sn->name)
            return err_set(-ENOMEM, "out of memory");
        uint64_t at = pos + 40;
        r = read_padded(s, w, file_size, at, sn->extra, sn->extra_size);
        at += extra_on_disk;
        if (r == 0)
            r = read_padded(s, w, file_size, at, sn->id, id_len);
        if (r == 0)
            r = read_padded(s, w, file_size, at + id_len, sn->name, name_len);
        if (r < 0)
            return r;
        /* (a NUL inside ends the names, as QEMU reads them) */
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
    s->nb_snapshots = total;
    s->snapshots_size = pos - s->snapshots_offset;
    return 0;
}

int qcow2_check_snapshot_table(struct qcow2 *s, bool fix, void (*report)(void *, const char *),
                               void *opaque, uint64_t *dropped, uint64_t *reduced)
{
    struct load_mode m = {.check = true, .fix = fix, .report = report, .opaque = opaque};
    *dropped = *reduced = 0;
    if (!s->table_unread)
        return 0; /* (read at open) */
    uint32_t nb = s->table_unread_nb;
    uint64_t off = s->table_unread_offset;
    s->table_unread = false;
    s->nb_snapshots = 0;
    s->snapshots_offset = 0;
    s->snapshots_size = 0;
    uint64_t file_size = dev_size(s->file);
    if (nb > QCOW2_MAX_SNAPSHOTS && fix) {
        check_reportf(m.report, m.opaque, "Discarding %" PRIu32 " overhanging snapshots",
                      nb - QCOW2_MAX_SNAPSHOTS);
        m.reduced += nb - QCOW2_MAX_SNAPSHOTS;
        nb = QCOW2_MAX_SNAPSHOTS;
    }
    /* Where the table lies (qemu-img's words for what it checks). */
    int r = 0;
    if (nb > QCOW2_MAX_SNAPSHOTS)
        r = err_set(-EFBIG, "ERROR snapshot table too large\nYou can force-remove all %" PRIu32
                    " overhanging snapshots with vdisk check -r all", nb - QCOW2_MAX_SNAPSHOTS);
    else if (off % s->cluster_size || off > (uint64_t)INT64_MAX - (uint64_t)nb * 40)
        r = err_set(-EINVAL, "ERROR snapshot table offset invalid");
    else if (nb && (off == 0 || !range_inside(off, (uint64_t)nb * 40, file_size)))
        r = err_set(-EINVAL, "ERROR snapshot table at offset 0x%" PRIx64 " (%" PRIu32 " entries) "
                    "lies beyond the end of the file (%" PRIu64 " bytes)", off, nb, file_size);
    if (r < 0)
        return r;
    s->nb_snapshots = nb;
    s->snapshots_offset = nb ? off : 0;
    r = load_table(s, file_size, &m);
    if (r < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_detail());
        qcow2_free_snapshots(s);
        s->nb_snapshots = 0;
        s->snapshots_offset = 0;
        s->snapshots_size = 0;
        return err_set(r, "ERROR failed to read the snapshot table: %s", msg);
    }
    if (m.reduced) {
        /* The header's count now: the check of the refcounts counts what
         * the header says (the entries cut become leaks). */
        uint8_t b[4];
        be32_store(b, s->nb_snapshots);
        r = dev_pwrite(s->file, b, 4, 60);
        if (r == 0)
            r = dev_flush(s->file);
        if (r < 0)
            return r;
    }
    *dropped = m.dropped;
    *reduced = m.reduced;
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
            if (qcow2_has_data_file(s))
                rc = 1; /* a data file's clusters have no refcounts here */
            else
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

/* The bytes the table of snapshots SNAPS (N of them) takes, or -EFBIG. */
static int table_size(struct qcow2 *s, const struct qcow2_snapshot *snaps, uint32_t n,
                      uint64_t *size)
{
    *size = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t extra = snaps[i].extra_size < 24 ? 24 : snaps[i].extra_size;
        *size += (40 + extra + strlen(snaps[i].id) + strlen(snaps[i].name) + 7) & ~7ull;
    }
    if (*size > MAX_TABLE_BYTES)
        return err_set(-EFBIG, "%s: the snapshot table would exceed %u bytes", s->dev->filename,
                       MAX_TABLE_BYTES);
    return 0;
}

/* The table of snapshots SNAPS (N of them) into BUF (zeroed, large enough). */
static void table_fill(uint8_t *buf, const struct qcow2_snapshot *snaps, uint32_t n)
{
    uint8_t *p = buf;
    for (uint32_t i = 0; i < n; i++) {
        const struct qcow2_snapshot *sn = &snaps[i];
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
}

/* Writes the table of snapshots SNAPS (N of them) to new clusters and
 * switches the header to it; the old table is freed (check -r all: the
 * entries dropped are corrupt, what their trees held is left as leaks).
 * An error after the switch (freeing the old table) leaves s->nb_snapshots
 * N: the caller's entries are the image's then. */
static int write_table(struct qcow2 *s, struct qcow2_snapshot *snaps, uint32_t n)
{
    uint64_t size;
    int r = table_size(s, snaps, n, &size);
    if (r < 0)
        return r;
    uint64_t clusters = (size + s->cluster_size - 1) / s->cluster_size, off = 0;
    uint8_t *buf = calloc(1, clusters ? clusters * s->cluster_size : 1);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    r = clusters ? qcow2_alloc_clusters(s, clusters, &off) : 0;
    if (r == 0)
        table_fill(buf, snaps, n);
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

bool qcow2_snapshot_incomplete(const struct qcow2 *s, const struct qcow2_snapshot *sn)
{
    return s->version >= 3 && sn->extra_size < 16;
}

int qcow2_snapshots_complete(struct qcow2 *s, bool all, uint64_t *completed)
{
    *completed = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        n += all ? s->snaps[i].extra_size < 16 : qcow2_snapshot_incomplete(s, &s->snaps[i]);
    if (!n)
        return 0;
    int r = qcow2_snapshots_write(s);
    if (r == 0)
        *completed = n;
    return r;
}

int qcow2_snapshots_write(struct qcow2 *s)
{
    int r = check_writable(s);
    if (r < 0)
        return r;
    /* In memory first: the known 24 bytes, from the fields (a disk size
     * not recorded is the image's now, an icount not recorded "none"). */
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        if (sn->extra_size >= 24)
            continue;
        uint8_t *e = calloc(1, 24);
        if (!e)
            return err_set(-ENOMEM, "out of memory");
        be64_store(e, sn->vm_state_size);
        be64_store(e + 8, sn->disk_size);
        be64_store(e + 16, sn->icount);
        free(sn->extra);
        sn->extra = e;
        sn->extra_size = 24;
    }
    r = qcow2_flush_metadata(s);
    if (r == 0)
        r = write_table(s, s->snaps, s->nb_snapshots);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    return r;
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
    uint32_t old_n = s->nb_snapshots;
    r = qcow2_flush_metadata(s);
    if (r == 0)
        r = write_table(s, rest, n);
    if (r < 0 && s->nb_snapshots == old_n) { /* (the header still names the old table) */
        free(rest);
        return r;
    }
    /* The table no longer names them (also when freeing the old table's
     * clusters failed after the switch); what only they referenced is a
     * leak (check repairs leaks before this). */
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
    if (r < 0)
        return r;
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

/* ---- Changing trees in one switch ----------------------------------------- */

/*
 * qemu-img check wants, at every moment, COPIED on an entry of the active
 * tables exactly when the stored refcount of the cluster it points to is 1:
 * a flag set on a refcount of 2, or clear on a refcount of 1, is an error
 * either way.  Taking, applying or deleting a snapshot changes both the
 * refcounts and those flags, and they live in different clusters (refcount
 * blocks, L2 and L1 tables): no order of writes in place keeps the rule
 * across a crash.  So every cluster that changes is written anew, past
 * everything the refcounts count: the L2 tables whose flags change, the
 * active L1 table, a new snapshot's L1 table, the snapshot table, the
 * refcount blocks whose counts change and the refcount table.  Then one
 * write inside the header's first sector (virtual size, L1 table, refcount
 * table and snapshot table: bytes 24 to 71) switches from the old image to
 * the new one.  A crash before it leaves the old image as it was (the new
 * clusters are free in its refcounts), a crash after it the new one whole.
 * The clusters left behind are free in the new refcounts: nothing leaks.
 */

struct delta {
    uint64_t c;     /* host cluster */
    int64_t d;      /* change of its refcount */
    uint64_t old;   /* its stored refcount, once known */
    bool known;
};

struct txn {
    struct qcow2 *s;
    struct delta *v;
    size_t n, cap;
    size_t merged;  /* v[0..merged): sorted, one per cluster, stored refcount known */
};

/* D more references to the N clusters from HOST on. */
static int txn_add(struct txn *t, uint64_t host, uint64_t n, int64_t d)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t c = (host >> t->s->cluster_bits) + i;
        /* The same cluster again (an L2 table full of one cluster): one
         * entry, so that memory follows the clusters, not the references. */
        if (t->n && t->v[t->n - 1].c == c && !t->v[t->n - 1].known) {
            t->v[t->n - 1].d += d;
            continue;
        }
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 256;
            struct delta *v = realloc(t->v, cap * sizeof *v);
            if (!v)
                return err_set(-ENOMEM, "out of memory");
            t->v = v;
            t->cap = cap;
        }
        t->v[t->n++] = (struct delta){c, d, 0, false};
    }
    return 0;
}

static int cmp_delta(const void *a, const void *b)
{
    uint64_t x = ((const struct delta *)a)->c, y = ((const struct delta *)b)->c;
    return x < y ? -1 : x > y;
}

/* One entry per cluster, sorted, with its stored refcount. */
static int txn_merge(struct txn *t)
{
    if (t->n)
        qsort(t->v, t->n, sizeof *t->v, cmp_delta);
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct delta *e = &t->v[i];
        if (w && t->v[w - 1].c == e->c) {
            struct delta *m = &t->v[w - 1];
            m->d += e->d;
            if (!m->known && e->known) {
                m->old = e->old;
                m->known = true;
            }
            continue;
        }
        t->v[w++] = *e;
    }
    t->n = w;
    for (size_t i = 0; i < w; i++) {
        if (t->v[i].known)
            continue;
        int r = qcow2_refcount_get(t->s, t->v[i].c, &t->v[i].old);
        if (r < 0)
            return r;
        t->v[i].known = true;
    }
    t->merged = w;
    return 0;
}

static uint64_t delta_new(const struct delta *e)
{
    uint64_t m = (uint64_t)0 - (uint64_t)e->d; /* -d, for d < 0 */
    return e->d < 0 ? (e->old < m ? 0 : e->old - m) : e->old + (uint64_t)e->d;
}

/* The refcount host cluster C will have (after txn_merge). */
static int txn_rc(struct txn *t, uint64_t c, uint64_t *rc)
{
    struct delta key = {.c = c};
    const struct delta *e = bsearch(&key, t->v, t->merged, sizeof *t->v, cmp_delta);
    if (!e)
        return qcow2_refcount_get(t->s, c, rc);
    *rc = delta_new(e);
    return 0;
}

/* The L2 table that entry I (E) of an L1 table points to (0: none). */
static int l2_of(struct qcow2 *s, uint64_t e, uint64_t i, uint64_t *l2)
{
    *l2 = e & QCOW2_OFFSET_MASK;
    if (*l2 && (*l2 % s->cluster_size || !range_inside(*l2, s->cluster_size, dev_size(s->file))))
        return qcow2_corrupt(s, "L1 entry %" PRIu64 " (0x%" PRIx64 ") points to an L2 table "
                             "that is not cluster aligned or lies beyond the end of the file",
                             i, e);
    return 0;
}

/* D more references to every data cluster the tree of the L1 table L1
 * (N entries) reaches, one per L2 entry as qemu-img counts them.  An L2
 * table that several entries point to is walked once, its references
 * counted that many times (a hostile image points 16384 entries at one
 * table: walked each time, that was 2^27 entries). */
static int walk_data(struct txn *t, const uint64_t *l1, uint32_t n, int64_t d)
{
    struct qcow2 *s = t->s;
    uint64_t *tables = malloc((n ? n : 1) * sizeof *tables);
    if (!tables)
        return err_set(-ENOMEM, "out of memory");
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2_off;
        int r = l2_of(s, l1[i], i, &l2_off);
        if (r < 0) {
            free(tables);
            return r;
        }
        if (l2_off)
            tables[m++] = l2_off;
    }
    if (m)
        qsort(tables, m, sizeof *tables, cmp_u64);
    int r = 0;
    for (uint32_t k = 0; k < m && r == 0;) {
        uint64_t l2_off = tables[k];
        uint32_t next = k;
        while (next < m && tables[next] == l2_off)
            next++;
        int64_t dd = d * (int64_t)(next - k);
        k = next;
        uint8_t *l2;
        r = qcow2_cache_get(&s->l2c, l2_off, true, &l2);
        if (r < 0)
            break;
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t e = qcow2_l2e_get(s, l2, j), host = e & QCOW2_OFFSET_MASK;
            if (e & QCOW2_OFLAG_COMPRESSED) {
                uint64_t off, len;
                qcow2_compressed_range(s, e, &off, &len);
                uint64_t first = off >> s->cluster_bits;
                uint64_t last = (off + len - 1) >> s->cluster_bits;
                /* Checked before it is counted: a reference far past the
                 * file would make the refcounts grow towards it. */
                if (off >= dev_size(s->file))
                    r = qcow2_corrupt(s, "the compressed cluster at 0x%" PRIx64 " (L2 table at "
                                      "0x%" PRIx64 ", entry %" PRIu64 ") lies beyond the end of "
                                      "the image file (%" PRIu64 " bytes)", off, l2_off, j,
                                      dev_size(s->file));
                else
                    r = txn_add(t, first << s->cluster_bits, last - first + 1, dd);
            } else if (host % s->cluster_size) {
                r = qcow2_corrupt(s, "entry %" PRIu64 " (0x%" PRIx64 ") of the L2 table at "
                                  "0x%" PRIx64 " is not cluster aligned", j, e, l2_off);
            } else if (host >= dev_size(s->file)) {
                r = qcow2_corrupt(s, "entry %" PRIu64 " (0x%" PRIx64 ") of the L2 table at "
                                  "0x%" PRIx64 " points to a data cluster beyond the end of "
                                  "the image file (%" PRIu64 " bytes)", j, e, l2_off,
                                  dev_size(s->file));
            } else if (host) {
                r = txn_add(t, host, 1, dd);
            }
        }
        qcow2_cache_put(&s->l2c, l2);
    }
    free(tables);
    return r;
}

/* Whether the COPIED flags of the L2 table L2 disagree with the refcounts
 * to be (*STALE); FIX: set them right. */
static int l2_flags(struct txn *t, uint8_t *l2, bool fix, bool *stale)
{
    struct qcow2 *s = t->s;
    *stale = false;
    for (uint64_t j = 0; j < s->l2_entries; j++) {
        uint64_t e = qcow2_l2e_get(s, l2, j), host = e & QCOW2_OFFSET_MASK, rc;
        if ((e & QCOW2_OFLAG_COMPRESSED) || !host)
            continue;
        int r = txn_rc(t, host >> s->cluster_bits, &rc);
        if (r < 0)
            return r;
        uint64_t want = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
        if (want == e)
            continue;
        *stale = true;
        if (!fix)
            return 0;
        qcow2_l2e_set(s, l2, j, want, qcow2_l2e_bitmap(s, l2, j));
    }
    return 0;
}

/* The first cluster past the file's contents and past every cluster with a
 * refcount. */
static int tail(struct qcow2 *s, uint64_t *p)
{
    uint64_t cs = s->cluster_size, end;
    *p = (qcow2_file_end(s) + cs - 1) / cs;
    if (*p == 0)
        *p = 1;
    int r = qcow2_refcounted_end(s, &end);
    if (r == 0 && end > *p)
        *p = end;
    return r;
}

static int cmp_u64(const void *a, const void *b);

static int add_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        uint64_t *nv = realloc(*v, c * sizeof *nv);
        if (!nv)
            return err_set(-ENOMEM, "out of memory");
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static size_t sort_unique(uint64_t *v, size_t n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    size_t w = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[w - 1])
            v[w++] = v[i];
    return w;
}

/* The refcount block offset of table index T (0: none). */
static uint64_t block_of(const struct qcow2 *s, uint64_t t)
{
    return t < s->reft_entries ? s->reft[t] & ~QCOW2_REFT_RESERVED : 0;
}

/* The refcount blocks (table indexes, sorted) whose counts change when the
 * clusters P..END are used and the blocks and table replaced are freed. */
static int touched_blocks(struct txn *t, uint64_t p, uint64_t end, uint64_t **ts, size_t *n)
{
    struct qcow2 *s = t->s;
    size_t cap = 0;
    *n = 0;
    int r = 0;
    for (size_t i = 0; i < t->merged && r == 0; i++)
        if (t->v[i].d)
            r = add_u64(ts, n, &cap, t->v[i].c >> s->rb_bits);
    for (uint64_t b = p >> s->rb_bits; r == 0 && b <= (end - 1) >> s->rb_bits; b++)
        r = add_u64(ts, n, &cap, b);
    for (uint64_t i = 0; r == 0 && i < s->reft_clusters; i++)
        r = add_u64(ts, n, &cap, ((s->reft_offset >> s->cluster_bits) + i) >> s->rb_bits);
    if (r < 0)
        return r;
    /* A block replaced frees its old cluster, which may lie in another. */
    for (bool more = true; more;) {
        *n = sort_unique(*ts, *n);
        more = false;
        size_t n0 = *n;
        for (size_t i = 0; i < n0; i++) {
            uint64_t b = block_of(s, (*ts)[i]), bt = (b >> s->cluster_bits) >> s->rb_bits;
            if (b && !bsearch(&bt, *ts, n0, sizeof bt, cmp_u64)) {
                r = add_u64(ts, n, &cap, bt);
                if (r < 0)
                    return r;
                more = true;
            }
        }
    }
    return 0;
}

struct change {
    /* The new active tree: its L1 entries (flags set here), virtual size. */
    const uint64_t *l1;
    uint32_t l1_size;
    uint64_t disk_size;
    /* The tree whose data clusters gain a reference, the one whose lose one. */
    const uint64_t *added, *dropped;
    uint32_t added_size, dropped_size;
    /* DROPPED is a snapshot that goes: its L2 tables, and its L1 table at
     * GONE_OFF (GONE_CLUSTERS), lose their reference too. */
    bool gone;
    uint64_t gone_off, gone_clusters;
    /* The new snapshot table (NULL: unchanged), NSNAPS entries; NEW_SNAP
     * (or -1): the index of a new snapshot that shares the new active tree
     * (its L1 table is placed here). */
    struct qcow2_snapshot *snaps;
    uint32_t nsnaps;
    int new_snap;
};

static int switch_trees(struct qcow2 *s, struct change *ch)
{
    uint64_t cs = s->cluster_size;
    int r = qcow2_flush_metadata(s);
    if (r < 0)
        return r;
    s->compress_cluster = 0; /* the next compressed write starts a cluster */
    struct txn t = {.s = s};
    uint64_t *l1 = calloc(ch->l1_size ? ch->l1_size : 1, 8);
    uint64_t *copy_from = calloc(ch->l1_size ? ch->l1_size : 1, 8);
    uint32_t *slot = calloc(ch->l1_size ? ch->l1_size : 1, sizeof *slot);
    uint64_t *ts = NULL, *reft = NULL;
    size_t nts = 0, ncopies = 0;
    uint8_t *buf = aligned_alloc_or_null(4096, cs);
    if (!l1 || !copy_from || !slot || !buf) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }

    /* The data clusters of the trees that come and go... */
    if (ch->added)
        r = walk_data(&t, ch->added, ch->added_size, +1);
    if (r == 0 && ch->dropped)
        r = walk_data(&t, ch->dropped, ch->dropped_size, -1);
    /* ...the L2 tables and L1 clusters that lose a reference: the old
     * active tree's (the new one counts its own below), a gone snapshot's,
     * and the old snapshot table. */
    for (uint32_t i = 0; r == 0 && i < s->l1_size; i++) {
        uint64_t o;
        r = l2_of(s, s->l1[i], i, &o);
        if (r == 0 && o)
            r = txn_add(&t, o, 1, -1);
    }
    uint64_t old_l1c = ((uint64_t)s->l1_size * 8 + cs - 1) / cs;
    if (r == 0 && s->l1_offset && old_l1c)
        r = txn_add(&t, s->l1_offset, old_l1c, -1);
    for (uint32_t i = 0; r == 0 && ch->gone && i < ch->dropped_size; i++) {
        uint64_t o;
        r = l2_of(s, ch->dropped[i], i, &o);
        if (r == 0 && o)
            r = txn_add(&t, o, 1, -1);
    }
    if (r == 0 && ch->gone && ch->gone_off)
        r = txn_add(&t, ch->gone_off, ch->gone_clusters, -1);
    if (r == 0 && ch->snaps && s->snapshots_offset && s->snapshots_size)
        r = txn_add(&t, s->snapshots_offset, (s->snapshots_size + cs - 1) / cs, -1);
    if (r == 0)
        r = txn_merge(&t);

    /* The L2 tables of the new active tree whose flags change are copied. */
    for (uint32_t i = 0; r == 0 && i < ch->l1_size; i++) {
        uint64_t o;
        r = l2_of(s, ch->l1[i], i, &o);
        if (r < 0 || !o)
            continue;
        uint8_t *l2;
        bool stale = false;
        r = qcow2_cache_get(&s->l2c, o, true, &l2);
        if (r == 0) {
            r = l2_flags(&t, l2, false, &stale);
            qcow2_cache_put(&s->l2c, l2);
        }
        l1[i] = o;
        if (stale) {
            copy_from[ncopies] = o;
            slot[i] = (uint32_t)++ncopies;
        }
    }

    /* Where the new clusters go: past everything counted, in this order:
     * L2 copies, the active L1 table, the new snapshot's, refcount blocks,
     * the refcount table, and last the snapshot table (as QEMU leaves it,
     * at the end of the file). */
    uint64_t l1c = ((uint64_t)ch->l1_size * 8 + cs - 1) / cs, snc = 0, tc = 0, tsize = 0;
    if (!l1c)
        l1c = 1;
    if (ch->new_snap >= 0)
        snc = l1c;
    if (r == 0 && ch->snaps) {
        r = table_size(s, ch->snaps, ch->nsnaps, &tsize);
        tc = (tsize + cs - 1) / cs;
    }
    uint64_t p = 0;
    if (r == 0)
        r = tail(s, &p);
    uint64_t k = ncopies + l1c + snc;
    uint64_t l1_off = (p + ncopies) * cs, sn_off = (p + ncopies + l1c) * cs;
    if (r == 0 && ch->new_snap >= 0) {
        ch->snaps[ch->new_snap].l1_offset = sn_off;
        ch->snaps[ch->new_snap].l1_size = ch->l1_size;
    }
    for (uint32_t i = 0; r == 0 && i < ch->l1_size; i++) {
        if (slot[i])
            l1[i] = (p + slot[i] - 1) * cs;
        if (l1[i])
            r = txn_add(&t, l1[i], 1, ch->new_snap >= 0 ? 2 : 1);
    }
    if (r == 0)
        r = txn_add(&t, l1_off, l1c, +1);
    if (r == 0 && snc)
        r = txn_add(&t, sn_off, snc, +1);
    if (r == 0)
        r = txn_merge(&t);
    /* Nothing on the old refcounts' word that does not hold. */
    for (size_t i = 0; r == 0 && i < t.merged; i++) {
        const struct delta *e = &t.v[i];
        uint64_t host = e->c << s->cluster_bits;
        if (e->d < 0 && e->old < (uint64_t)0 - (uint64_t)e->d)
            r = qcow2_corrupt(s, "the refcount of cluster 0x%" PRIx64 " (%" PRIu64 ") is lower "
                              "than its references", host, e->old);
        else if (e->d > 0 && e->old == 0 && (e->c < p || e->c >= p + k))
            r = qcow2_corrupt(s, "cluster 0x%" PRIx64 " is referenced but its refcount is 0",
                              host);
        else if (e->d > 0 && (uint64_t)e->d > s->refcount_max - e->old)
            r = err_set(-ERANGE, "%s: the refcount of cluster 0x%" PRIx64 " would exceed %"
                        PRIu64 " (%" PRIu32 "-bit refcounts)", s->dev->filename, host,
                        s->refcount_max, s->refcount_bits);
    }

    /* The refcount blocks that change, and the table, are written anew. */
    uint64_t nb = 0, rt = s->reft_clusters, need = 0;
    for (int iter = 0; r == 0; iter++) {
        if (iter > 64) {
            r = qcow2_corrupt(s, "cannot place the new refcount blocks");
            break;
        }
        r = touched_blocks(&t, p, p + k + nb + rt + tc, &ts, &nts);
        if (r < 0)
            break;
        need = s->reft_entries;
        if (nts && ts[nts - 1] + 1 > need)
            need = ts[nts - 1] + 1;
        uint64_t rt2 = (need * 8 + cs - 1) / cs;
        if (rt2 * cs > QCOW2_MAX_REFTABLE_BYTES)
            r = err_set(-EFBIG, "%s: the refcount table would exceed %u bytes",
                        s->dev->filename, QCOW2_MAX_REFTABLE_BYTES);
        else if (nts == nb && rt2 == rt)
            break;
        nb = nts;
        rt = rt2;
    }
    uint64_t reft_off = (p + k + nb) * cs, reft_entries = rt * cs / 8;
    uint64_t table_off = tc ? (p + k + nb + rt) * cs : 0;
    if (r == 0)
        qcow2_note_used(s, (p + k + nb + rt + tc) * cs);
    if (r == 0)
        r = qcow2_check_overlap(s, p * cs, (k + nb + rt + tc) * cs);
    if (r == 0 && !(reft = calloc(reft_entries, 8)))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0)
        memcpy(reft, s->reft, s->reft_entries * 8);
    for (size_t j = 0; r == 0 && j < nts; j++) {
        uint64_t old = block_of(s, ts[j]);
        reft[ts[j]] = (p + k + j) * cs;
        r = txn_add(&t, reft[ts[j]], 1, +1);
        if (r == 0 && old)
            r = txn_add(&t, old, 1, -1);
    }
    if (r == 0)
        r = txn_add(&t, reft_off, rt, +1);
    if (r == 0 && tc)
        r = txn_add(&t, table_off, tc, +1);
    if (r == 0)
        r = txn_add(&t, s->reft_offset, s->reft_clusters, -1);
    if (r == 0)
        r = txn_merge(&t);

    /* The active L1 entries' flags, from the L2 tables' refcounts to be. */
    for (uint32_t i = 0; r == 0 && i < ch->l1_size; i++) {
        uint64_t rc;
        if (l1[i] && (r = txn_rc(&t, l1[i] >> s->cluster_bits, &rc)) == 0 && rc == 1)
            l1[i] |= QCOW2_OFLAG_COPIED;
    }

    /* Write it all past the end... */
    for (size_t j = 0; r == 0 && j < ncopies; j++) {
        uint8_t *l2;
        bool stale;
        r = qcow2_cache_get(&s->l2c, copy_from[j], true, &l2);
        if (r < 0)
            break;
        memcpy(buf, l2, cs);
        qcow2_cache_put(&s->l2c, l2);
        r = l2_flags(&t, buf, true, &stale);
        if (r == 0)
            r = dev_pwrite(s->file, buf, cs, (p + j) * cs);
    }
    for (int pass = 0; pass < 2 && r == 0; pass++) {
        if (pass == 1 && !snc)
            break;
        for (uint64_t c = 0; c < l1c && r == 0; c++) {
            memset(buf, 0, cs);
            for (uint64_t i = c * cs / 8; i < ch->l1_size && i < (c + 1) * cs / 8; i++)
                be64_store(buf + (i - c * cs / 8) * 8,
                           pass ? l1[i] & ~QCOW2_OFLAG_COPIED : l1[i]);
            r = dev_pwrite(s->file, buf, cs, (pass ? sn_off : l1_off) + c * cs);
        }
    }
    if (r == 0 && tc) {
        uint8_t *tb = calloc(tc, cs);
        if (!tb) {
            r = err_set(-ENOMEM, "out of memory");
        } else {
            table_fill(tb, ch->snaps, ch->nsnaps);
            r = dev_pwrite(s->file, tb, tc * cs, table_off);
            free(tb);
        }
    }
    size_t cur = 0;
    for (size_t j = 0; r == 0 && j < nts; j++) {
        uint64_t old = block_of(s, ts[j]), lo = ts[j] << s->rb_bits;
        if (old)
            r = dev_pread(s->file, buf, cs, old);
        else
            memset(buf, 0, cs);
        while (cur < t.merged && t.v[cur].c < lo)
            cur++;
        for (; r == 0 && cur < t.merged && t.v[cur].c - lo < s->rb_entries; cur++)
            qcow2_rb_set(s, buf, t.v[cur].c - lo, delta_new(&t.v[cur]));
        if (r == 0)
            r = dev_pwrite(s->file, buf, cs, reft[ts[j]]);
    }
    for (uint64_t c = 0; c < rt && r == 0; c++) {
        for (uint64_t i = 0; i < cs / 8; i++)
            be64_store(buf + i * 8, reft[c * cs / 8 + i]);
        r = dev_pwrite(s->file, buf, cs, reft_off + c * cs);
    }
    if (r == 0)
        r = dev_flush(s->file);
    /* ...then switch, in one sector. */
    if (r == 0) {
        uint8_t h[48];
        be64_store(h, ch->disk_size);
        be32_store(h + 8, s->crypt_method);
        be32_store(h + 12, ch->l1_size);
        be64_store(h + 16, l1_off);
        be64_store(h + 24, reft_off);
        be32_store(h + 32, (uint32_t)rt);
        be32_store(h + 36, ch->snaps ? ch->nsnaps : s->nb_snapshots);
        be64_store(h + 40, ch->snaps ? table_off : s->snapshots_offset);
        r = dev_pwrite(s->file, h, sizeof h, 24);
    }
    if (r == 0)
        r = dev_flush(s->file);
    if (r < 0)
        goto out;

    /* The image in memory follows. */
    uint64_t lowest_freed = UINT64_MAX;
    for (size_t i = 0; i < t.merged; i++) {
        if (t.v[i].d && delta_new(&t.v[i]) == 0) {
            uint64_t host = t.v[i].c << s->cluster_bits;
            qcow2_cache_forget(&s->l2c, host);
            qcow2_cache_forget(&s->rbc, host);
            if (t.v[i].c < lowest_freed)
                lowest_freed = t.v[i].c;
        }
    }
    if (lowest_freed < s->free_cluster_index)
        s->free_cluster_index = lowest_freed;
    free(s->l1);
    s->l1 = l1;
    l1 = NULL;
    s->l1_size = ch->l1_size;
    s->l1_offset = l1_off;
    s->size = ch->disk_size;
    __atomic_store_n(&s->dev->size, s->size, __ATOMIC_RELEASE);
    free(s->reft);
    s->reft = reft;
    reft = NULL;
    s->reft_offset = reft_off;
    s->reft_clusters = (uint32_t)rt;
    s->reft_entries = reft_entries;
    s->reft_used = need;
    if (ch->snaps) {
        s->nb_snapshots = ch->nsnaps;
        s->snapshots_offset = table_off;
        s->snapshots_size = tsize;
    }
out:
    free(t.v);
    free(l1);
    free(copy_from);
    free(slot);
    free(ts);
    free(reft);
    free(buf);
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
    /* The table with one more entry, sharing the active tree (whose data
     * clusters gain a reference). */
    struct qcow2_snapshot *snaps = calloc(s->nb_snapshots + 1, sizeof *snaps);
    if (!snaps)
        return err_set(-ENOMEM, "out of memory");
    if (s->nb_snapshots)
        memcpy(snaps, s->snaps, s->nb_snapshots * sizeof *snaps);
    struct qcow2_snapshot *sn = &snaps[s->nb_snapshots];
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
    sn->date_sec = (uint32_t)now.tv_sec;
    sn->date_nsec = (uint32_t)now.tv_nsec;
    sn->disk_size = s->size;
    sn->icount = 0;
    if (!sn->id || !sn->name || !sn->extra) {
        r = err_set(-ENOMEM, "out of memory");
    } else {
        struct change ch = {
            .l1 = s->l1, .l1_size = s->l1_size, .disk_size = s->size,
            .added = s->l1, .added_size = s->l1_size,
            .snaps = snaps, .nsnaps = s->nb_snapshots + 1, .new_snap = (int)s->nb_snapshots,
        };
        r = switch_trees(s, &ch);
    }
    if (r < 0) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        free(snaps);
        return r;
    }
    free(s->snaps);
    s->snaps = snaps;
    return 0;
}

int qcow2_snapshot_apply(struct qcow2 *s, const char *name)
{
    int k = writable_snapshot(s, name);
    if (k < 0)
        return k;
    struct qcow2_snapshot *sn = &s->snaps[k];
    if (sn->bad)
        return refuse_bad(s, k);
    uint64_t *snl1 = NULL;
    int r = read_l1(s, sn->l1_offset, sn->l1_size, &snl1);
    if (r < 0)
        return r;
    /* The snapshot's tree becomes the active one too: its data clusters
     * gain a reference, the old active tree's lose one. */
    struct change ch = {
        .l1 = snl1, .l1_size = sn->l1_size, .disk_size = sn->disk_size,
        .added = snl1, .added_size = sn->l1_size,
        .dropped = s->l1, .dropped_size = s->l1_size,
        .new_snap = -1,
    };
    r = switch_trees(s, &ch);
    free(snl1);
    return r;
}

int qcow2_snapshot_delete(struct qcow2 *s, const char *name)
{
    int k = writable_snapshot(s, name);
    if (k < 0)
        return k;
    struct qcow2_snapshot gone = s->snaps[k];
    struct qcow2_snapshot *rest = calloc(s->nb_snapshots, sizeof *rest);
    if (!rest)
        return err_set(-ENOMEM, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if ((int)i != k)
            rest[n++] = s->snaps[i];
    /* A corrupt entry goes alone: what its tree held is left as leaks for
     * check -r leaks, rather than freed on the word of a broken entry. */
    uint64_t *l1 = NULL;
    int r = gone.bad ? 0 : read_l1(s, gone.l1_offset, gone.l1_size, &l1);
    uint64_t l1c = ((uint64_t)gone.l1_size * 8 + s->cluster_size - 1) / s->cluster_size;
    struct change ch = {
        .l1 = s->l1, .l1_size = s->l1_size, .disk_size = s->size,
        .dropped = l1, .dropped_size = gone.bad ? 0 : gone.l1_size,
        .gone = !gone.bad, .gone_off = gone.bad ? 0 : gone.l1_offset,
        .gone_clusters = l1c ? l1c : 1,
        .snaps = rest, .nsnaps = n, .new_snap = -1,
    };
    if (r == 0)
        r = switch_trees(s, &ch);
    free(l1);
    if (r < 0) {
        free(rest);
        return r;
    }
    free(s->snaps);
    s->snaps = rest;
    free(gone.id);
    free(gone.name);
    free(gone.extra);
    return 0;
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
