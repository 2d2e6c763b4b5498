/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/image.c: whole-image operations: resize, make empty,
 * change the backing file, amend (compat, refcount width, lazy refcounts).
 * Each one keeps the on-disk ordering rules of qcow2.h: new tables are
 * durable before the header points to them, and what they replace is freed
 * afterwards.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "qcow2.h"

static int writable(struct qcow2 *s)
{
    if (s->read_only)
        return err_set(-EROFS, "%s: the image is open read-only", s->dev->filename);
    if (s->corrupt)
        return err_set(-EIO, "%s: the image is marked corrupt", s->dev->filename);
    return 0;
}

/* Writes the header fields from size (24) to the L1 table offset (47). */
static int write_geometry(struct qcow2 *s)
{
    uint8_t h[24];
    be64_store(h, s->size);
    be32_store(h + 8, s->crypt_method);
    be32_store(h + 12, s->l1_size);
    be64_store(h + 16, s->l1_offset);
    int r = dev_flush(s->file);
    if (r == 0)
        r = dev_pwrite(s->file, h, 24, 24);
    if (r == 0)
        r = dev_flush(s->file);
    return r;
}

/* Drops the L2 entries of the guest clusters [first, end) (cluster
 * indexes): unallocated, their host clusters freed at the next flush. */
static int drop_entries(struct qcow2 *s, uint64_t first, uint64_t end)
{
    for (uint64_t c = first; c < end;) {
        uint64_t l1i = c >> s->l2_bits, table_end = (l1i + 1) << s->l2_bits;
        uint64_t stop = table_end < end ? table_end : end;
        if (l1i >= s->l1_size)
            break;
        if (!(s->l1[l1i] & QCOW2_OFFSET_MASK)) {
            c = stop;
            continue;
        }
        uint8_t *l2;
        int r = qcow2_l2_for_write(s, l1i, &l2);
        if (r < 0)
            return r;
        for (; c < stop && r == 0; c++) {
            uint64_t i = c & (s->l2_entries - 1);
            uint64_t e = qcow2_l2e_get(s, l2, i);
            if (e || qcow2_l2e_bitmap(s, l2, i)) {
                qcow2_l2e_set(s, l2, i, 0, 0);
                qcow2_cache_dirty(&s->l2c, l2);
                if (e & (QCOW2_OFFSET_MASK | QCOW2_OFLAG_COMPRESSED))
                    r = qcow2_release_entry(s, e);
            }
        }
        qcow2_cache_put(&s->l2c, l2);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A larger L1 table of NEED entries, written in full before the header
 * points to it, with SIZE as the disk's size in the same header write. */
static int grow_l1(struct qcow2 *s, uint64_t need, uint64_t size)
{
    int r;
    uint64_t clusters = (need * 8 + s->cluster_size - 1) / s->cluster_size, off;
    r = qcow2_alloc_clusters(s, clusters, &off);
    uint8_t *buf = r == 0 ? calloc(clusters, s->cluster_size) : NULL;
    uint64_t *l1 = r == 0 ? calloc(need, 8) : NULL;
    if (r == 0 && (!buf || !l1))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        memcpy(l1, s->l1, (size_t)s->l1_size * 8);
        for (uint64_t i = 0; i < need; i++)
            be64_store(buf + i * 8, l1[i]);
        r = qcow2_flush_metadata(s);
    }
    if (r == 0)
        r = dev_pwrite(s->file, buf, clusters * s->cluster_size, off);
    free(buf);
    if (r < 0) {
        free(l1);
        return r;
    }
    uint64_t old_off = s->l1_offset, old_clusters =
        ((uint64_t)s->l1_size * 8 + s->cluster_size - 1) / s->cluster_size;
    uint64_t *old = s->l1;
    uint32_t old_size = s->l1_size;
    s->l1 = l1;
    s->l1_size = (uint32_t)need;
    s->l1_offset = off;
    qcow2_meta_moved(s);
    uint64_t old_vsize = s->size;
    s->size = size;
    r = write_geometry(s);
    if (r < 0) {
        s->l1 = old;
        s->l1_size = old_size;
        s->l1_offset = old_off;
        s->size = old_vsize;
        free(l1);
        return r;
    }
    free(old);
    /* The header that pointed to the old table is durable (write_geometry
     * flushed it), so its clusters are free at once, as in QEMU (whose
     * next allocations reuse them). */
    for (uint64_t i = 0; r == 0 && old_off && i < old_clusters; i++)
        r = qcow2_refcount_update(s, (old_off >> s->cluster_bits) + i, -1);
    return r;
}

static int resize_locked(struct qcow2 *s, uint64_t size, unsigned flags)
{
    int r = writable(s);
    if (r < 0)
        return r;
    /* (qemu 7.2: a v3 image with snapshots may grow and shrink; the
     * snapshots keep their own sizes and tables) */
    if (size != s->size && s->nb_snapshots && s->version < 3)
        return err_set(-ENOTSUP, "Can't resize a v2 image which has snapshots");
    if (size < s->size) {
        if (!(flags & VDISK_RESIZE_SHRINK))
            return err_set(-EINVAL, "%s: use the shrink flag (--shrink) to make the image "
                           "smaller", s->dev->filename);
        /* Clusters wholly past the new end go. */
        r = drop_entries(s, align_up(size, s->cluster_size) >> s->cluster_bits,
                         align_up(s->size, s->cluster_size) >> s->cluster_bits);
        if (r == 0)
            r = qcow2_flush_metadata(s);
        if (r < 0)
            return r;
        s->size = size;
        return write_geometry(s);
    }
    uint64_t span = 1ull << (s->cluster_bits + s->l2_bits);
    uint64_t need = size / span + (size % span != 0);
    if (need > QCOW2_MAX_L1_BYTES / 8)
        return err_set(-EFBIG, "%s: %" PRIu64 " bytes need an L1 table larger than %u bytes",
                       s->dev->filename, size, QCOW2_MAX_L1_BYTES);
    if (need <= s->l1_size) {
        s->size = size;
        return write_geometry(s);
    }
    return grow_l1(s, need, size);
}

/*
 * The clusters of guest [OLD, SIZE) allocated after a grow, as qemu 7.2's
 * qcow2 truncate with a preallocation mode: METADATA maps them (the L2
 * table of each span, then its data clusters in one run) and extends the
 * file over them without writing data; FALLOC and FULL map them (the L2
 * tables first, then the data clusters in one run) and reserve the file's
 * new part with fallocate or write zeroes over it.  Entries already set
 * (a partial cluster at the old end) are left alone.
 */
static int prealloc_locked(struct qcow2 *s, uint64_t old, uint64_t size, unsigned mode)
{
    const uint64_t cs = s->cluster_size;
    if (s->ext_l2)
        return err_set(-ENOTSUP, "%s: resize with preallocation of an image with extended "
                       "L2 entries is not supported yet", s->dev->filename);
    uint64_t first = old / cs, end = (size + cs - 1) / cs, file_end = dev_size(s->file);
    int r = 0;
    if (mode != VDISK_RESIZE_PREALLOC_METADATA) {
        /* Every L2 table first: the data then runs in one piece. */
        for (uint64_t l1i = first >> s->l2_bits; r == 0 && l1i <= (end - 1) >> s->l2_bits;
             l1i++) {
            uint8_t *l2;
            r = qcow2_l2_for_write(s, l1i, &l2);
            if (r == 0)
                qcow2_cache_put(&s->l2c, l2);
        }
    }
    uint64_t host = 0, left = 0; /* the run of data clusters being handed out */
    if (r == 0 && mode != VDISK_RESIZE_PREALLOC_METADATA) {
        left = end - first;
        r = qcow2_alloc_clusters(s, left, &host);
    }
    const uint64_t run_start = host, run_len = left * cs;
    for (uint64_t g = first; r == 0 && g < end;) {
        uint64_t l1i = g >> s->l2_bits, stop = (l1i + 1) << s->l2_bits;
        if (stop > end)
            stop = end;
        uint8_t *l2;
        r = qcow2_l2_for_write(s, l1i, &l2);
        if (r < 0)
            break;
        if (mode == VDISK_RESIZE_PREALLOC_METADATA) {
            left = stop - g;
            r = qcow2_alloc_clusters(s, left, &host);
        }
        for (; r == 0 && g < stop; g++) {
            uint64_t i = g & (s->l2_entries - 1);
            if (qcow2_l2e_get(s, l2, i) & ~QCOW2_OFLAG_COPIED)
                continue; /* (its run cluster stays allocated: freed below) */
            qcow2_l2e_set(s, l2, i, host | QCOW2_OFLAG_COPIED, 0);
            qcow2_cache_dirty(&s->l2c, l2);
            if (host + cs > file_end)
                file_end = host + cs;
            host += cs;
            left--;
        }
        qcow2_cache_put(&s->l2c, l2);
        if (r == 0 && left && mode == VDISK_RESIZE_PREALLOC_METADATA) {
            r = qcow2_free_later(s, host, left);
            left = 0;
        }
    }
    if (r == 0 && left)
        r = qcow2_free_later(s, host, left);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    /* The file covers every cluster handed out. */
    uint64_t now = dev_size(s->file);
    if (r == 0 && file_end > now) {
        if (mode == VDISK_RESIZE_PREALLOC_FALLOC)
            r = dev_preallocate(s->file, file_end);
        else
            r = dev_truncate(s->file, file_end);
    }
    /* full: zeroes written over the data run (the tables hold their own) */
    if (r == 0 && mode == VDISK_RESIZE_PREALLOC_FULL && run_len) {
        const size_t chunk = 1u << 20;
        void *zero = calloc(1, chunk);
        if (!zero)
            return err_set(-ENOMEM, "out of memory");
        for (uint64_t off = run_start; r == 0 && off < run_start + run_len; off += chunk)
            r = dev_pwrite(s->file, zero, run_start + run_len - off < chunk
                                              ? (size_t)(run_start + run_len - off) : chunk, off);
        free(zero);
    }
    return r;
}

/*
 * An image with an external data file after a resize from OLD to SIZE
 * bytes, as qemu 7.2 leaves it: the data file resized with the disk; the
 * new clusters mapped at their own offsets with preallocation (MODE) or
 * data_file_raw, and falloc/full space reserved or zeroed in the data file.
 */
static int resize_data_file_locked(struct qcow2 *s, uint64_t old, uint64_t size, unsigned mode)
{
    const uint64_t cs = s->cluster_size;
    int r = 0;
    if (size > old && (mode || s->data_raw)) {
        uint64_t first = old / cs, end = (size + cs - 1) / cs;
        for (uint64_t g = first; r == 0 && g < end;) {
            uint64_t l1i = g >> s->l2_bits, stop = (l1i + 1) << s->l2_bits;
            if (stop > end)
                stop = end;
            uint8_t *l2;
            r = qcow2_l2_for_write(s, l1i, &l2);
            if (r < 0)
                break;
            for (; g < stop; g++) {
                uint64_t i = g & (s->l2_entries - 1);
                if (qcow2_l2e_get(s, l2, i) || (uint32_t)(qcow2_l2e_bitmap(s, l2, i) >> 32))
                    continue; /* (a partial cluster at the old end) */
                qcow2_l2e_set(s, l2, i, (g * cs) | QCOW2_OFLAG_COPIED,
                              s->ext_l2 ? 0xffffffffu : 0);
                qcow2_cache_dirty(&s->l2c, l2);
            }
            qcow2_cache_put(&s->l2c, l2);
        }
        if (r == 0)
            r = qcow2_flush_metadata(s);
    }
    if (r == 0 && s->data_file) {
        if (size > old && mode == VDISK_RESIZE_PREALLOC_FALLOC)
            r = dev_preallocate(s->data_file, size);
        else
            r = dev_truncate(s->data_file, size);
        if (r == 0 && size > old && mode == VDISK_RESIZE_PREALLOC_FULL)
            r = dev_write_zeroes(s->data_file, old, size - old, 0);
    }
    return r;
}

/*
 * After a grow from OLD to SIZE: the new part reads zeroes, as QEMU makes
 * it.  The rest of the old last cluster (it may still hold data from
 * before a shrink) is written with zeroes when it is allocated or a
 * backing file reaches into it, and where the backing file reaches past
 * OLD the clusters after it become zero clusters, so that the disk never
 * shows the backing file's (or old) data there.  Through the device's own
 * write path, without s->lock (the caller holds the quiesce section).
 */
static int zero_grown(struct vdisk_dev *dev, uint64_t old, uint64_t size)
{
    struct qcow2 *s = dev->priv;
    uint64_t cs = s->cluster_size, mid = align_up(old, cs);
    uint64_t bsize = s->backing ? dev_size(s->backing) : 0;
    if (mid > size)
        mid = size;
    int r = 0;
    if (mid > old) {
        struct qcow2_map m;
        pthread_mutex_lock(&s->lock);
        r = qcow2_lookup(s, old, mid - old, &m);
        pthread_mutex_unlock(&s->lock);
        bool stale = m.type == QCOW2_NORMAL || m.type == QCOW2_COMPRESSED ||
                     (m.type == QCOW2_UNALLOCATED && bsize > old);
        if (r == 0 && stale) {
            uint8_t *z = calloc(1, mid - old);
            r = z ? dev_pwrite(dev, z, mid - old, old) : err_set(-ENOMEM, "out of memory");
            free(z);
        }
    }
    uint64_t zend = s->version >= 3 ? size : (bsize < size ? bsize : size);
    if (r == 0 && bsize > mid && zend > mid)
        r = dev_write_zeroes(dev, mid, zend - mid, 0);
    return r;
}

int qcow2_resize(struct vdisk_dev *dev, uint64_t size, unsigned flags)
{
    struct qcow2 *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    uint64_t old = s->size;
    unsigned pre = flags & (VDISK_RESIZE_PREALLOC_FALLOC | VDISK_RESIZE_PREALLOC_FULL |
                            VDISK_RESIZE_PREALLOC_METADATA);
    /* (with preallocation, the file as qemu leaves it: no space reserved
     * ahead of the allocations) */
    bool no_grow = s->no_grow;
    if (pre)
        s->no_grow = true;
    int r = s->nb_bitmaps && size != old ? qcow2_bitmaps_before_resize(s) : 0;
    if (r == 0)
        r = resize_locked(s, size, flags);
    if (r == 0 && qcow2_has_data_file(s) && s->size != old)
        r = resize_data_file_locked(s, old, s->size, pre);
    else if (r == 0 && pre && s->size > old)
        r = prealloc_locked(s, old, s->size, pre);
    if (r == 0 && s->size != old)
        r = qcow2_bitmaps_after_resize(s);
    s->no_grow = no_grow;
    if (r == 0)
        __atomic_store_n(&dev->size, s->size, __ATOMIC_RELEASE);
    bool grown = r == 0 && s->size > old && !pre && !qcow2_has_data_file(s);
    size = s->size;
    pthread_mutex_unlock(&s->lock);
    return grown ? zero_grown(dev, old, size) : r;
}

int qcow2_make_empty(struct vdisk_dev *dev)
{
    struct qcow2 *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    int r = writable(s);
    if (r == 0)
        r = drop_entries(s, 0, (uint64_t)s->l1_size << s->l2_bits);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_set_backing(struct vdisk_dev *dev, const char *name, const char *format)
{
    struct qcow2 *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    int r = writable(s);
    if (r == 0 && name && strlen(name) > QCOW2_MAX_BACKING_NAME)
        r = err_set(-EINVAL, "%s: the backing file name is longer than %d bytes",
                    dev->filename, QCOW2_MAX_BACKING_NAME);
    /* QEMU's protocol drivers name a backing format too (qemu-img rebase -u
     * -F host_device records it): the file is then read as it is. */
    bool protocol = format && (!strcmp(format, "file") || !strcmp(format, "host_device") ||
                               !strcmp(format, "host_cdrom"));
    if (r == 0 && format && !protocol && !driver_by_name(format))
        r = err_set(-EINVAL, "unknown backing format '%s'", format);
    char *nn = NULL, *nf = NULL;
    if (r == 0 && ((name && !(nn = strdup(name))) || (format && !(nf = strdup(format)))))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        free(nn);
        free(nf);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    char *on = s->backing_name, *of = s->backing_fmt, *ofull = s->full_backing;
    struct vdisk_dev *ob = s->backing;
    s->backing_name = nn;
    s->backing_fmt = nf;
    s->full_backing = NULL;
    s->backing = NULL;
    r = qcow2_flush_metadata(s);
    if (r == 0)
        r = qcow2_write_header(s);
    if (r == 0 && nn && qcow2_open_backing(s, NULL) < 0) {
        /* The header names it now; reads see zeroes until it can be opened
         * (qemu-img rebase -u may name a file that does not exist yet). */
        s->backing = NULL;
    }
    if (r < 0 && ob) {
        /* The header is unchanged: the image keeps reading as before. */
        s->backing = ob;
        ob = NULL;
    }
    if (ob)
        dev_unref(ob);
    free(on);
    free(of);
    free(ofull);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* ---- amend ---------------------------------------------------------------- */

/* Zero clusters cannot be expressed in v2: they become unallocated (when
 * nothing shows through) or clusters of written zeroes. */
static int expand_zero_clusters(struct qcow2 *s)
{
    uint8_t *zero = calloc(1, s->cluster_size);
    if (!zero)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    for (uint64_t l1i = 0; l1i < s->l1_size && r == 0; l1i++) {
        if (!(s->l1[l1i] & QCOW2_OFFSET_MASK))
            continue;
        uint8_t *l2;
        r = qcow2_l2_for_write(s, l1i, &l2);
        for (uint64_t i = 0; r == 0 && i < s->l2_entries; i++) {
            uint64_t e = qcow2_l2e_get(s, l2, i);
            if ((e & QCOW2_OFLAG_COMPRESSED) || !(e & QCOW2_OFLAG_ZERO))
                continue;
            uint64_t host = e & QCOW2_OFFSET_MASK, ne = 0;
            if (s->backing || host) {
                if (!host)
                    r = qcow2_alloc_clusters(s, 1, &host);
                if (r == 0)
                    r = dev_pwrite(s->file, zero, s->cluster_size, host);
                ne = host | QCOW2_OFLAG_COPIED;
                if (r == 0 && (e & QCOW2_OFFSET_MASK) && !(e & QCOW2_OFLAG_COPIED))
                    ne = host; /* shared preallocation stays shared */
            }
            if (r == 0) {
                qcow2_l2e_set(s, l2, i, ne, 0);
                qcow2_cache_dirty(&s->l2c, l2);
            }
        }
        if (l2)
            qcow2_cache_put(&s->l2c, l2);
    }
    free(zero);
    return r;
}

int qcow2_amend(struct vdisk_dev *dev, struct opt_set *os)
{
    struct qcow2 *s = dev->priv;
    /* Key slots of an encrypted image (crypto.c), before the rest. */
    if (qcow2_crypto_amend_wanted(s, os)) {
        int cr = qcow2_crypto_amend(s, os);
        if (cr < 0)
            return cr;
    }
    opt_take(os, "force"); /* (amend --force: for the key slots alone) */
    const char *compat = opt_take(os, "compat");
    const char *rbits = opt_take(os, "refcount_bits");
    const char *lazy = opt_take(os, "lazy_refcounts");
    const char *size_s = opt_take(os, "size");
    const char *dfile = opt_take(os, "data_file");
    const char *draw = opt_take(os, "data_file_raw");
    /* Every option is checked before the image is touched. */
    int r = opt_check_all_taken(os, "qcow2");
    if (r < 0)
        return r;
    /* size: a resize (qemu's amend truncates, shrinking too), after the
     * other changes and before a downgrade, as in qemu 7.2. */
    uint64_t new_size = 0;
    if (size_s && opt_size("size", size_s, 0, UINT64_MAX, &new_size) < 0)
        return err_set(-EINVAL, "Parameter 'size' expects a non-negative number below 2^64\n"
                       "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                       "peta-\nand exabytes, respectively.");
    if (new_size % 512)
        return err_set(-EINVAL, "The new size must be a multiple of 512");
    if (new_size > (uint64_t)INT64_MAX - 511)
        return err_set(-EINVAL, "%s: size %" PRIu64 " is too large", dev->filename, new_size);
    pthread_mutex_lock(&s->lock);
    r = writable(s);
    int version = (int)s->version;
    if (r == 0 && compat) {
        if (!strcmp(compat, "0.10") || !strcmp(compat, "v2"))
            version = 2;
        else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3"))
            version = 3;
        else
            r = err_set(-EINVAL, "Unknown compatibility level %s", compat); /* (qemu's) */
    }
    uint32_t order = s->refcount_order;
    if (r == 0 && rbits) {
        uint64_t n;
        r = opt_uint("refcount_bits", rbits, 1, 64, &n);
        if (r == 0 && (n & (n - 1)))
            r = err_set(-EINVAL, "Refcount width must be a power of two and may not exceed 64 "
                        "bits");
        if (r == 0)
            order = (uint32_t)__builtin_ctzll(n);
    }
    /* The external data file: its name changed or removed (data_file=),
     * data_file_raw only cleared, as qemu-img 7.2 allows. */
    bool want_raw = s->data_raw;
    if (r == 0 && draw)
        r = opt_bool("data_file_raw", draw, &want_raw);
    if (r == 0 && dfile && !qcow2_has_data_file(s))
        r = err_set(-EINVAL, "data-file can only be set for images that use an external data "
                    "file");
    if (r == 0 && dfile && strlen(dfile) > QCOW2_MAX_BACKING_NAME)
        r = err_set(-EINVAL, "the data file name is longer than %d bytes",
                    QCOW2_MAX_BACKING_NAME);
    if (r == 0 && draw && !qcow2_has_data_file(s))
        r = err_set(-EINVAL, "data-file-raw can only be set for images that use an external "
                    "data file");
    if (r == 0 && want_raw && !s->data_raw)
        r = err_set(-EINVAL, "data-file-raw cannot be set on existing images");
    if (r == 0 && version == 2 && s->version >= 3 && qcow2_has_data_file(s))
        r = err_set(-ENOTSUP, "Cannot downgrade an image with a data file");
    bool want_lazy = (s->compat & QCOW2_COMPAT_LAZY) != 0;
    if (r == 0 && lazy)
        r = opt_bool("lazy_refcounts", lazy, &want_lazy);
    if (r == 0 && version == 2 && order != 4)
        r = err_set(-EINVAL, "Different refcount widths than 16 bits require compatibility "
                    "level 1.1 or above (use compat=1.1 or greater)");
    if (r == 0 && version == 2 && want_lazy && lazy)
        r = err_set(-EINVAL, "Lazy refcounts only supported with compatibility level 1.1 and "
                    "above (use compat=1.1 or greater)");
    if (r == 0 && version == 2 && s->version >= 3) {
        uint64_t in = s->incompat & ~(uint64_t)(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
                                                QCOW2_INCOMPAT_COMPRESSION);
        if (in) /* extended L2 entries (qemu-img's words) */
            r = err_set(-ENOTSUP, "Cannot downgrade an image with incompatible features 0x%"
                        PRIx64 " set", in);
        else if (s->compression_type != QCOW2_COMPRESS_ZLIB)
            r = err_set(-ENOTSUP, "%s: an image with zstd compression cannot be downgraded to "
                        "compat=0.10", dev->filename);
        else if (s->nb_snapshots)
            r = err_set(-ENOTSUP, "%s: downgrading an image with snapshots is not supported",
                        dev->filename);
        else if (s->nb_bitmaps) /* (qemu-img drops them; vdisk keeps them) */
            r = err_set(-ENOTSUP, "%s: compat=0.10 has no persistent dirty bitmaps: remove "
                        "them first (vdisk bitmap --remove)", dev->filename);
    }
    /* A new size resizes the bitmaps too (loaded first). */
    if (r == 0 && new_size && new_size != s->size && s->nb_bitmaps)
        r = qcow2_bitmaps_before_resize(s);
    if (r == 0)
        r = qcow2_flush_metadata(s);
    /* The refcount width: a new refcount structure. */
    if (r == 0 && order != s->refcount_order)
        r = qcow2_change_refcount_order(s, order);
    qcow2_meta_moved(s);
    /* Lazy refcounts off: leave the image clean first. */
    if (r == 0 && !want_lazy && s->dirty_on_disk) {
        r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
        if (r == 0)
            s->dirty_on_disk = false;
    }
    if (r == 0 && new_size && new_size != s->size) {
        r = resize_locked(s, new_size, VDISK_RESIZE_SHRINK);
        if (r == 0)
            __atomic_store_n(&dev->size, s->size, __ATOMIC_RELEASE);
        if (r == 0)
            r = qcow2_bitmaps_after_resize(s);
    }
    if (r == 0 && version == 2 && s->version >= 3) {
        r = expand_zero_clusters(s);
        if (r == 0)
            r = qcow2_flush_metadata(s);
    }
    /* v3 requires each snapshot's 64-bit VM state size and disk size:
     * the table completed before the header says v3 (as QEMU upgrades). */
    if (r == 0 && version == 3 && s->version < 3) {
        uint64_t completed;
        r = qcow2_snapshots_complete(s, true, &completed);
    }
    if (r == 0) {
        bool changed = version != (int)s->version ||
                       want_lazy != ((s->compat & QCOW2_COMPAT_LAZY) != 0);
        if (dfile && (!s->data_file_name || strcmp(dfile, s->data_file_name))) {
            char *n = *dfile ? strdup(dfile) : NULL;
            if (*dfile && !n) {
                pthread_mutex_unlock(&s->lock);
                return err_set(-ENOMEM, "out of memory");
            }
            free(s->data_file_name);
            s->data_file_name = n;
            changed = true;
        }
        if (want_raw != s->data_raw) {
            s->data_raw = want_raw;
            s->autoclear &= ~QCOW2_AUTOCLEAR_RAW_DATA;
            changed = true;
        }
        s->version = (uint32_t)version;
        if (want_lazy)
            s->compat |= QCOW2_COMPAT_LAZY;
        else
            s->compat &= ~QCOW2_COMPAT_LAZY;
        s->lazy = want_lazy;
        if (version == 2) {
            s->header_length = QCOW2_V2_HEADER_LENGTH;
            s->incompat = s->compat = s->autoclear = 0;
            free(s->features);
            s->features = NULL;
            s->nfeatures = 0;
        } else if (s->header_length < 112) {
            s->header_length = 112;
        }
        if (changed)
            r = qcow2_write_header(s);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

/*
 * The VM state area, as QEMU's qcow2 keeps it: guest offsets from the
 * first L1 entry past the disk (l1_vm_state_index, the L1 entries the
 * virtual size needs) on, in clusters allocated as the disk's are.  A write
 * past the L1 table grows it as QEMU's writes do (by half again, per L1
 * entry reached), so that the image is laid out as qemu-io leaves it.
 */
int qcow2_vmstate(struct vdisk_dev *dev, bool write, uint64_t pos, uint64_t len, uint64_t *off)
{
    struct qcow2 *s = dev->priv;
    unsigned span_bits = s->cluster_bits + s->l2_bits;
    uint64_t max_l1 = QCOW2_MAX_L1_BYTES / 8;
    pthread_mutex_lock(&s->lock);
    uint64_t base = ((s->size >> span_bits) + ((s->size & ((1ull << span_bits) - 1)) != 0))
                    << span_bits;
    uint64_t start = 0, end = 0;
    int r = 0;
    if (qcow2_has_data_file(s))
        r = err_set(-ENOTSUP, "%s: an image with an external data file keeps no VM state",
                    dev->filename);
    else if (add_overflows_u64(base, pos, &start) || add_overflows_u64(start, len, &end) ||
             end > (max_l1 << span_bits))
        r = err_set(-EFBIG, "%s: VM state offset %" PRIu64 " (%" PRIu64 " bytes) is past "
                    "what an L1 table can reach", dev->filename, pos, len);
    else if (write && len)
        r = writable(s);
    if (r == 0 && write && len) {
        uint64_t last = (end - 1) >> span_bits;
        for (uint64_t i = start >> span_bits; r == 0 && i <= last; i++) {
            if (i < s->l1_size)
                continue;
            uint64_t n = s->l1_size ? s->l1_size : 1;
            while (n < i + 1)
                n = (n * 3 + 1) / 2;
            if (n > max_l1)
                r = err_set(-EFBIG, "%s: the VM state needs an L1 table larger than %u bytes",
                            dev->filename, QCOW2_MAX_L1_BYTES);
            else
                r = grow_l1(s, n, s->size);
        }
    }
    pthread_mutex_unlock(&s->lock);
    *off = start;
    return r;
}
