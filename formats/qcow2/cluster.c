/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/cluster.c: the guest-to-host mapping.  L1 and L2 lookups
 * (every entry validated before use), L2 tables made writable (allocated,
 * or copied when a snapshot shares them), L1 entry updates.  The caller
 * holds s->lock, except for qcow2_make_l2_unlocked(), which takes it
 * itself and lets it go across its I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "qcow2.h"

uint64_t qcow2_l2e_get(const struct qcow2 *s, const uint8_t *l2, uint64_t i)
{
    return be64_load(l2 + i * s->l2_entry_bytes);
}

uint64_t qcow2_l2e_bitmap(const struct qcow2 *s, const uint8_t *l2, uint64_t i)
{
    return s->ext_l2 ? be64_load(l2 + i * 16 + 8) : 0;
}

void qcow2_l2e_set(const struct qcow2 *s, uint8_t *l2, uint64_t i, uint64_t e, uint64_t bitmap)
{
    be64_store(l2 + i * s->l2_entry_bytes, e);
    if (s->ext_l2)
        be64_store(l2 + i * 16 + 8, bitmap);
}

void qcow2_compressed_range(const struct qcow2 *s, uint64_t l2e, uint64_t *off, uint64_t *len)
{
    uint64_t o = l2e & s->coffset_mask;
    uint64_t sectors = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
    *off = o;
    *len = sectors * 512 - (o & 511);
}

/* The L2 table offset of L1 entry I (0: none), validated. */
static int l1_table(struct qcow2 *s, uint64_t i, uint64_t *l2_off)
{
    *l2_off = 0;
    if (i >= s->l1_size)
        return 0;
    uint64_t e = s->l1[i];
    if (e & QCOW2_L1E_RESERVED)
        return qcow2_corrupt(s, "L1 entry %" PRIu64 " (0x%" PRIx64 ") has reserved bits set", i, e);
    uint64_t off = e & QCOW2_OFFSET_MASK;
    if (off % s->cluster_size)
        return qcow2_corrupt(s, "L2 table offset 0x%" PRIx64 " (L1 entry %" PRIu64
                             ") is not aligned to a cluster", off, i);
    if (off && off >= dev_size(s->file))
        return qcow2_corrupt(s, "L2 table offset 0x%" PRIx64 " (L1 entry %" PRIu64
                             ") is beyond the end of the file (%" PRIu64 " bytes)", off, i,
                             dev_size(s->file));
    *l2_off = off;
    return 0;
}

/* Status of one L2 entry at subcluster SC (0 without extended L2). */
static int classify(struct qcow2 *s, uint64_t e, uint64_t bitmap, unsigned sc, uint64_t guest,
                    struct qcow2_map *m)
{
    memset(m, 0, sizeof *m);
    if (e & QCOW2_OFLAG_COMPRESSED) {
        if (qcow2_has_data_file(s))
            return qcow2_corrupt(s, "compressed cluster entry for guest offset 0x%" PRIx64
                                 " in an image with an external data file (0x%" PRIx64 ")",
                                 guest, e);
        if (e & QCOW2_OFLAG_COPIED)
            return qcow2_corrupt(s, "compressed L2 entry 0x%" PRIx64 " for guest offset 0x%"
                                 PRIx64 " has the COPIED flag", e, guest);
        uint64_t off, len;
        qcow2_compressed_range(s, e, &off, &len);
        if (off < s->cluster_size || off >= align_up(dev_size(s->file), 512))
            return qcow2_corrupt(s, "compressed cluster for guest offset 0x%" PRIx64
                                 " at host offset 0x%" PRIx64 " is outside the file (%" PRIu64
                                 " bytes)", guest, off, dev_size(s->file));
        m->type = QCOW2_COMPRESSED;
        m->l2e = e;
        return 0;
    }
    uint64_t reserved = QCOW2_L2E_RESERVED | (s->version < 3 || s->ext_l2 ? QCOW2_OFLAG_ZERO : 0);
    if (e & reserved)
        return qcow2_corrupt(s, "L2 entry 0x%" PRIx64 " for guest offset 0x%" PRIx64
                             " has reserved bits set", e, guest);
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if (host % s->cluster_size)
        return qcow2_corrupt(s, "L2 entry for guest offset 0x%" PRIx64 ": host offset 0x%"
                             PRIx64 " is not aligned to a cluster", guest, host);
    /* With an external data file, COPIED marks host offset 0 allocated
     * (guest cluster 0 at the data file's start), as QEMU reads it. */
    bool df = qcow2_has_data_file(s);
    if (host == 0 && (e & QCOW2_OFLAG_COPIED) && !df)
        return qcow2_corrupt(s, "L2 entry for guest offset 0x%" PRIx64
                             " has the COPIED flag but no host offset", guest);
    bool alloc, zero;
    if (s->ext_l2) {
        uint32_t a = (uint32_t)bitmap, z = (uint32_t)(bitmap >> 32);
        if (a & z)
            return qcow2_corrupt(s, "extended L2 entry for guest offset 0x%" PRIx64
                                 " marks subclusters both allocated and zero (0x%016" PRIx64
                                 ")", guest, bitmap);
        if (a && !host && !(df && (e & QCOW2_OFLAG_COPIED)))
            return qcow2_corrupt(s, "extended L2 entry for guest offset 0x%" PRIx64
                                 " has allocated subclusters but no host offset", guest);
        alloc = (a >> sc) & 1;
        zero = (z >> sc) & 1;
    } else {
        alloc = (host != 0 || (df && (e & QCOW2_OFLAG_COPIED))) && !(e & QCOW2_OFLAG_ZERO);
        zero = (e & QCOW2_OFLAG_ZERO) != 0;
    }
    /* An external data file holds guest cluster N at N's offset (QEMU
     * refuses any other mapping as corruption). */
    uint64_t gc = guest & ~(s->cluster_size - 1);
    if (df && (host || (e & QCOW2_OFLAG_COPIED)) && host != gc)
        return qcow2_corrupt(s, "external data file host cluster offset 0x%" PRIx64 " does not "
                             "match guest cluster offset 0x%" PRIx64, host, gc);
    /* (An external data file reads zeroes past its end.) */
    if (alloc && !qcow2_has_data_file(s) &&
        host + s->cluster_size > align_up(dev_size(s->file), s->cluster_size))
        return qcow2_corrupt(s, "L2 entry for guest offset 0x%" PRIx64 " points to host offset 0x%"
                             PRIx64 ", beyond the end of the file (%" PRIu64 " bytes)", guest,
                             host, dev_size(s->file));
    m->copied = (e & QCOW2_OFLAG_COPIED) != 0;
    /* A host offset also for zero or unallocated subclusters of a cluster
     * that has one (QEMU reports it). */
    m->host = host || (df && (e & QCOW2_OFLAG_COPIED)) ? host + (uint64_t)sc * s->sc_size : 0;
    m->type = zero ? QCOW2_ZERO : alloc ? QCOW2_NORMAL : QCOW2_UNALLOCATED;
    return 0;
}

static int lookup(struct qcow2 *s, uint64_t off, uint64_t max, struct qcow2_map *m,
                  uint64_t *need);

int qcow2_lookup(struct qcow2 *s, uint64_t off, uint64_t max, struct qcow2_map *m)
{
    return lookup(s, off, max, m, NULL);
}

int qcow2_lookup_cached(struct qcow2 *s, uint64_t off, uint64_t max, struct qcow2_map *m,
                        uint64_t *need)
{
    return lookup(s, off, max, m, need);
}

/* With NEED, a table that is not cached is not read: 1, *NEED its offset. */
static int lookup(struct qcow2 *s, uint64_t off, uint64_t max, struct qcow2_map *m,
                  uint64_t *need)
{
    uint64_t cs = s->cluster_size, unit = s->sc_size;
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    uint64_t l1i = off >> span_bits;
    uint64_t table_end = (l1i + 1) << span_bits;
    uint64_t limit = table_end - off < max ? table_end - off : max;
    uint64_t l2_off;
    int r = l1_table(s, l1i, &l2_off);
    if (r < 0)
        return r;
    if (!l2_off) {
        memset(m, 0, sizeof *m);
        m->type = QCOW2_UNALLOCATED;
        m->len = limit;
        return 0;
    }
    uint8_t *l2;
    if (need) {
        r = qcow2_cache_peek(&s->l2c, l2_off, &l2);
        if (r == 1) {
            *need = l2_off;
            return 1;
        }
    } else {
        r = qcow2_cache_get(&s->l2c, l2_off, true, &l2);
    }
    if (r < 0)
        return r;
    uint64_t pos = off, done = 0, pe = 0;
    uint64_t file_end = qcow2_has_data_file(s) ? UINT64_MAX / 2 : align_up(dev_size(s->file), cs);
    bool first = true;
    while (done < limit) {
        uint64_t i = (pos >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t e = qcow2_l2e_get(s, l2, i);
        if (!first && !s->ext_l2) {
            /* The common case first: the entry that continues the previous
             * one (the same entry without a host cluster, else the next
             * host cluster with the same flags) has its status, and is
             * valid where the previous one was, unless it ends past the
             * file (classify() says). */
            uint64_t ph = pe & QCOW2_OFFSET_MASK;
            if (ph ? e == pe + cs && !((e ^ pe) & ~QCOW2_OFFSET_MASK) && ph + 2 * cs <= file_end
                   : e == pe && !(qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED))) {
                uint64_t piece = cs < limit - done ? cs : limit - done;
                m->len += piece;
                pe = e;
                pos += piece;
                done += piece;
                continue;
            }
        }
        uint64_t bm = qcow2_l2e_bitmap(s, l2, i);
        unsigned sc = s->ext_l2 ? (unsigned)((pos & (cs - 1)) / unit) : 0;
        struct qcow2_map cur;
        r = classify(s, e, bm, sc, pos, &cur);
        if (r < 0)
            break;
        uint64_t piece = cur.type == QCOW2_COMPRESSED ? cs - (pos & (cs - 1))
                                                      : unit - (pos & (unit - 1));
        if (piece > limit - done)
            piece = limit - done;
        if (first) {
            *m = cur;
            if (cur.host || cur.type == QCOW2_NORMAL) /* (NORMAL: 0 is a data file's start) */
                m->host += pos & (unit - 1);
            m->len = piece;
            first = false;
            if (cur.type == QCOW2_COMPRESSED)
                break;
        } else {
            /* Same status, and where there are host offsets, contiguous ones. */
            bool ch = cur.host || cur.type == QCOW2_NORMAL;
            bool mh = m->host || m->type == QCOW2_NORMAL;
            bool same = cur.type == m->type && cur.type != QCOW2_COMPRESSED &&
                        cur.copied == m->copied && ch == mh &&
                        (!ch || cur.host == m->host + m->len);
            if (!same)
                break;
            m->len += piece;
        }
        pe = e;
        pos += piece;
        done += piece;
    }
    qcow2_cache_put(&s->l2c, l2);
    return r;
}

static int write_l1_value(struct qcow2 *s, uint64_t i, uint64_t v)
{
    uint8_t b[8];
    be64_store(b, v);
    /* Under wb_lock: an 8-byte write is a read-modify-write of its sector
     * with O_DIRECT, and a table made without the lock writes its entry too. */
    pthread_mutex_lock(&s->wb_lock);
    int r = dev_pwrite(s->file, b, 8, s->l1_offset + i * 8);
    pthread_mutex_unlock(&s->wb_lock);
    return r;
}

int qcow2_write_l1_entry(struct qcow2 *s, uint64_t i)
{
    return write_l1_value(s, i, s->l1[i]);
}

int qcow2_make_l2_unlocked(struct qcow2 *s, uint64_t l1i)
{
    uint64_t cs = s->cluster_size, old, new_off = 0;
    uint8_t *buf = aligned_alloc_or_null(4096, cs);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_lock(&s->lock);
    int r = l1_table(s, l1i, &old);
    if (r < 0 || l1i >= s->l1_size || (old && (s->l1[l1i] & QCOW2_OFLAG_COPIED)) ||
        s->making || s->corrupt || s->read_only) {
        pthread_mutex_unlock(&s->lock);
        free(buf);
        return r < 0 ? r : 0; /* nothing to make here, or left to the locked path */
    }
    r = qcow2_alloc_clusters(s, 1, &new_off);
    if (r == 0 && old) {
        uint8_t *o;
        r = qcow2_cache_get(&s->l2c, old, true, &o);
        if (r == 0) {
            memcpy(buf, o, cs);
            qcow2_cache_put(&s->l2c, o);
        }
    } else if (r == 0) {
        memset(buf, 0, cs);
    }
    if (r < 0) {
        if (new_off)
            qcow2_free_later(s, new_off, 1);
        pthread_mutex_unlock(&s->lock);
        free(buf);
        return r;
    }
    /* Until it is done, no other path makes this table (qcow2_l2_for_write
     * waits), and nothing writes into a table that is not this image's own. */
    s->making = true;
    s->making_l1i = l1i;
    pthread_mutex_unlock(&s->lock);

    /* Its refcount (with the other dirty tables), then the table, durable
     * before the L1 entry points to it. */
    r = qcow2_writeback_unlocked(s, false);
    pthread_mutex_lock(&s->wb_lock);
    if (r == 0)
        r = dev_pwrite(s->file, buf, cs, new_off);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0)
        r = write_l1_value(s, l1i, new_off | QCOW2_OFLAG_COPIED);
    pthread_mutex_unlock(&s->wb_lock);

    pthread_mutex_lock(&s->lock);
    if (r == 0) {
        s->l1[l1i] = new_off | QCOW2_OFLAG_COPIED;
        qcow2_cache_install(&s->l2c, new_off, buf); /* clean: as on disk */
        if (old)
            r = qcow2_free_later(s, old, 1);
    } else {
        qcow2_free_later(s, new_off, 1); /* nothing points to it */
    }
    s->making = false;
    pthread_cond_broadcast(&s->made);
    pthread_mutex_unlock(&s->lock);
    free(buf);
    return r;
}

int qcow2_l2_for_write(struct qcow2 *s, uint64_t l1i, uint8_t **l2)
{
    if (l1i >= s->l1_size)
        return qcow2_corrupt(s, "guest offset beyond the L1 table (index %" PRIu64 ")", l1i);
    while (s->making && s->making_l1i == l1i)
        pthread_cond_wait(&s->made, &s->lock); /* the worker is making it */
    uint64_t old;
    int r = l1_table(s, l1i, &old);
    if (r < 0)
        return r;
    if (old && (s->l1[l1i] & QCOW2_OFLAG_COPIED))
        return qcow2_cache_get(&s->l2c, old, true, l2);

    /* A new table, or a copy of one a snapshot shares. */
    uint64_t new_off;
    r = qcow2_alloc_clusters(s, 1, &new_off);
    if (r < 0)
        return r;
    uint8_t *t;
    r = qcow2_cache_get(&s->l2c, new_off, false, &t);
    if (r < 0)
        return r;
    if (old) {
        uint8_t *o;
        r = qcow2_cache_get(&s->l2c, old, true, &o);
        if (r < 0) {
            qcow2_cache_put(&s->l2c, t);
            return r;
        }
        memcpy(t, o, s->cluster_size);
        qcow2_cache_put(&s->l2c, o);
    }
    qcow2_cache_dirty(&s->l2c, t);
    /* The table (and its refcount) durable before the L1 entry points to it. */
    r = qcow2_cache_write_back(&s->l2c);
    if (r == 0)
        r = dev_flush(s->file);
    uint64_t prev = s->l1[l1i];
    if (r == 0) {
        s->l1[l1i] = new_off | QCOW2_OFLAG_COPIED;
        r = qcow2_write_l1_entry(s, l1i);
        if (r < 0) {
            /* The table on disk does not point to the new table: neither
             * may the one in memory, or what goes into it is lost. */
            s->l1[l1i] = prev;
        }
    }
    if (r == 0 && old)
        r = qcow2_free_later(s, old, 1);
    if (r < 0) {
        qcow2_cache_put(&s->l2c, t);
        if (s->l1[l1i] == prev) {
            qcow2_cache_forget(&s->l2c, new_off);
            qcow2_free_later(s, new_off, 1);
        }
        return r;
    }
    *l2 = t;
    return 0;
}

int qcow2_release_entry(struct qcow2 *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t off, len;
        qcow2_compressed_range(s, e, &off, &len);
        uint64_t first = off & ~(s->cluster_size - 1);
        uint64_t last = (off + len - 1) & ~(s->cluster_size - 1);
        /* QEMU counts one reference per compressed cluster per host cluster. */
        for (uint64_t c = first; c <= last; c += s->cluster_size) {
            int r = qcow2_free_later(s, c, 1);
            if (r < 0)
                return r;
        }
        return 0;
    }
    uint64_t host = e & QCOW2_OFFSET_MASK;
    /* Clusters of an external data file have no refcounts. */
    if (qcow2_has_data_file(s))
        return 0;
    return host ? qcow2_free_later(s, host, 1) : 0;
}
