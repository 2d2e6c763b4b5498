/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/qcow2.c: the qcow2 driver: probe, open (header, tables,
 * caches, backing chain), close, block status, information, preallocation.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "qcow2.h"

#define DEFAULT_L2_CACHE_BYTES (32u << 20)

static int qcow2_probe(const uint8_t *buf, size_t len)
{
    /* As QEMU: any version from 2 up is qcow2 (an unknown version then
     * fails the open with its own message instead of reading as raw). */
    if (len >= 8 && be32_load(buf) == QCOW2_MAGIC && be32_load(buf + 4) >= 2)
        return 100;
    return 0;
}

/* The backing file (from the params' open_backing call when fuzzing:
 * images in memory). */
int qcow2_open_backing(struct qcow2 *s, struct opt_set *os)
{
    const struct vdisk_open_params *up = &s->dev->params;
    /* json:{..., "backing": null}: opened without its backing file. */
    const char *none = os ? opt_take(os, "backing.null") : NULL;
    if (none && !strcmp(none, "on")) {
        /* Its name resolved all the same, for info's "actual path". */
        s->full_backing = backing_resolve(s->dev->filename, s->backing_name);
        return s->full_backing ? 0 : err_set(-ENOMEM, "out of memory");
    }
    if (!up->no_backing && !up->open_backing && !strncmp(s->backing_name, "json:", 5))
        return err_set(-ENOTSUP, "%s: the backing file name is a json: name ('%s'), which "
                       "vdisk does not follow in images (rebase -u onto the plain name)",
                       s->dev->filename, s->backing_name);
    /* Without a recorded format the backing file's format is probed, as
     * QEMU does (never a qcow2 read as raw); a raw one found so keeps its
     * block 0 guarded like any probed raw image. */
    const char *fmt = os ? opt_take(os, "backing.format") : NULL;
    if (!fmt)
        fmt = s->backing_fmt;
    struct backing_spec b = {.name = s->backing_name, .format = fmt, .confine = s->confine,
                             .allow_network = s->allow_network,
                             .max_depth = QCOW2_MAX_CHAIN_DEPTH, .os = os};
    /* The user's backing file (backing.file.filename) instead of the
     * header's: taken as given (a relative name from the working folder),
     * so not confined. */
    const char *user = os && !up->open_backing ? opt_take(os, "backing.file.filename") : NULL;
    char *abs = NULL;
    if (user) {
        char cwd[PATH_MAX];
        if (user[0] != '/' && !strstr(user, "://") && !dev_is_network_name(user) &&
            getcwd(cwd, sizeof cwd))
            abs = str_printf("%s/%s", cwd, user);
        b.name = abs ? abs : user;
        b.confine = false;
        b.allow_network = true;
    }
    int r = backing_open(s->dev, &b, &s->backing, &s->full_backing);
    free(abs);
    if (r < 0)
        return r;
    if (!fmt && !up->open_backing)
        warn_report_once("vdisk: warning: %s: the image does not record the format of its "
                         "backing file '%s'; probing found %s", s->dev->filename,
                         s->backing_name, s->backing->drv->name);
    return 0;
}

/*
 * The external data file (incompatible bit 2): the data-file open option
 * (data-file.filename, or data-file naming a file) if given, else the name
 * the header extension gives, resolved against the image's folder as a
 * backing file's is, and under the same rules: refused where backing files
 * are, confined with backing-confine=on, a network name only with
 * backing-allow-network=on.  It is never the image file itself (its writes
 * would land on the metadata).  With no-key=on (info) a data file that
 * cannot be opened leaves the image without one (data I/O fails).
 */
static int open_data_file(struct qcow2 *s, struct opt_set *os)
{
    const struct vdisk_open_params *up = &s->dev->params;
    const char *fn = s->dev->filename;
    const char *opt = opt_take(os, "data-file.filename");
    const char *opt2 = opt_take(os, "data-file");
    const char *drv = opt_take(os, "data-file.driver");
    if (!opt)
        opt = opt2;
    const char *dsize = opt_take(os, "data-file.size");
    bool null_drv = drv && (!strcmp(drv, "null-co") || !strcmp(drv, "null-aio"));
    if (drv && strcmp(drv, "file") && strcmp(drv, "raw") && !null_drv)
        return err_set(-ENOTSUP, "%s: the data file driver '%s' is not supported (file, "
                       "null-co)", fn, drv);
    if (dsize && !null_drv)
        return err_set(-EINVAL, "%s: data-file.size is an option of null-co", fn);
    if (!qcow2_has_data_file(s)) {
        if (opt || null_drv)
            return err_set(-EINVAL, "'data-file' can only be set for images that use an "
                           "external data file");
        return 0;
    }
    if (s->version < 3)
        return err_set(-EINVAL, "%s: an external data file in a version 2 image", fn);
    const char *nokey = opt_take(os, "no-key");
    bool lenient = nokey && !strcmp(nokey, "on");
    if (null_drv) {
        /* The user's null device (QEMU's iotests): stores nothing. */
        vdisk_options *o = NULL;
        struct opt_set nos = {0};
        int e = vdisk_options_new(&o) < 0 ? -ENOMEM : 0;
        if (e == 0 && dsize)
            e = opt_add(o, "null.size", dsize);
        if (e == 0)
            e = opt_set_init(&nos, o);
        struct vdisk_open_params p = *up;
        p.chain = NULL;
        struct vdisk_dev *nd = NULL;
        if (e == 0 && !(nd = dev_alloc(&vdisk_driver_null, !strcmp(drv, "null-co")
                                                               ? "null-co://" : "null-aio://", &p)))
            e = -ENOMEM;
        if (e == 0 && (e = vdisk_driver_null.open(nd, NULL, &nos)) < 0) {
            dev_free(nd);
            nd = NULL;
        }
        opt_set_fini(&nos);
        vdisk_options_free(o);
        if (e < 0)
            return e == -ENOMEM ? err_set(e, "out of memory") : e;
        s->full_data_file = strdup(drv);
        s->data_file = nd;
        return s->full_data_file ? 0 : err_set(-ENOMEM, "out of memory");
    }
    const char *name = opt ? opt : s->data_file_name;
    if (!name) {
        if (lenient)
            return 0;
        return err_set(-EINVAL, "'data-file' is required for this image");
    }
    if (up->no_backing)
        return err_set(-EPERM, "%s: external data files are not allowed here (the image names "
                       "'%s')", fn, name);
    struct vdisk_dev *file = NULL;
    int r;
    if (up->open_backing) {
        /* Fuzzing: the file comes from the caller. */
        s->full_data_file = strdup(name);
        if (!s->full_data_file)
            return err_set(-ENOMEM, "out of memory");
        r = up->open_backing(up->backing_opaque, name, up, &file);
    } else {
        /* A name the user gave is taken as given; the header's name goes
         * through the backing-file rules. */
        s->full_data_file = opt ? strdup(name) : backing_resolve(fn, name);
        if (!s->full_data_file)
            return err_set(-ENOMEM, "out of memory");
        if (!opt && s->confine && backing_escapes(fn, name, s->full_data_file))
            return err_set(-EPERM, "%s: the data file name '%s' leads outside the image's "
                           "folder, which backing-confine=on forbids", fn, name);
        if (!opt && dev_is_network_name(name) && !s->allow_network)
            return err_set(-EPERM, "%s: the image's data file is the network export '%s'; "
                           "opening it needs the open option backing-allow-network=on (or "
                           "VDISK_BACKING_ALLOW_NETWORK=on in the environment)", fn, name);
        char me[PATH_MAX], other[PATH_MAX];
        if (realpath(fn, me) && realpath(s->full_data_file, other) && !strcmp(me, other))
            return err_set(-EINVAL, "%s: the data file '%s' is the image file itself", fn,
                           name);
        struct vdisk_open_params p = *up;
        p.chain = NULL;
        r = dev_open_file(&file, s->full_data_file, NULL, &p);
        if (r < 0 && lenient)
            return 0;
        if (r < 0) /* (qemu's words) */
            return err_set(r, "Could not open '%s': %s", name, strerror(-r));
    }
    if (r < 0)
        return r;
    dev_set_growable(file); /* past its end reads zeroes, writes extend it */
    s->data_file = file;
    return 0;
}

static int read_table(struct qcow2 *s, uint64_t off, uint64_t count, uint64_t **out)
{
    uint64_t *t = calloc(count ? count : 1, 8);
    if (!t)
        return err_set(-ENOMEM, "out of memory for a table of %" PRIu64 " entries", count);
    if (count) {
        int r = dev_pread(s->file, t, count * 8, off);
        if (r < 0) {
            free(t);
            return r;
        }
        for (uint64_t i = 0; i < count; i++)
            t[i] = be64_load(&t[i]);
    }
    *out = t;
    return 0;
}

static void free_state(struct qcow2 *s)
{
    offload_free(s->offload);
    qcow2_crypto_close(s);
    qcow2_free_snapshots(s);
    qcow2_free_bitmaps(s);
    qcow2_cache_fini(&s->l2c);
    qcow2_cache_fini(&s->rbc);
    free(s->l1);
    free(s->reft);
    free(s->deferred);
    if (s->data_file)
        dev_unref(s->data_file);
    free(s->data_file_name);
    free(s->full_data_file);
    free(s->backing_name);
    free(s->backing_fmt);
    free(s->full_backing);
    free(s->shown_name);
    for (unsigned i = 0; i < s->nexts; i++)
        free(s->exts[i].data);
    free(s->exts);
    free(s->features);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->wb_lock);
    pthread_cond_destroy(&s->made);
    free(s);
}

static int cache_entries(struct opt_set *os, const char *key, uint64_t dflt, uint64_t cs,
                         unsigned *n)
{
    uint64_t bytes = dflt;
    const char *v = opt_take(os, key);
    if (v) {
        int r = opt_size(key, v, 0, 1ull << 40, &bytes);
        if (r < 0)
            return r;
    }
    uint64_t e = bytes / cs;
    *n = (unsigned)(e < 4 ? 4 : e > 65536 ? 65536 : e);
    return 0;
}

static int qcow2_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    struct qcow2 *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->wb_lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&s->made, NULL);
    s->offload = offload_new();
    s->dev = dev;
    s->file = file;
    s->shown_name = dev_shown_name(file, "qcow2");
    s->read_only = dev->params.read_only;
    s->discard_passthrough = true;
    dev->priv = s;
    /* backing-allow-network: the option, else the environment's default. */
    int e = backing_take_options(os, &s->confine, &s->allow_network);
    if (e < 0) {
        free_state(s);
        dev->priv = NULL;
        return e;
    }
    /* Opened for a check: the check reads the snapshot table. */
    bool for_check = false;
    const char *chk = opt_take(os, "check");
    if (chk && (e = opt_bool("check", chk, &for_check)) < 0) {
        free_state(s);
        dev->priv = NULL;
        return e;
    }
    s->table_unread = for_check;
    uint64_t fsize = dev_size(file);
    if (file->file_length && file->file_length < fsize)
        fsize = file->file_length; /* the header checks need the exact length */
    uint8_t first[QCOW2_V3_HEADER_LENGTH + 8];
    size_t n = fsize < sizeof first ? (size_t)fsize : sizeof first;
    int r = n ? dev_pread(file, first, n, 0) : 0;
    uint8_t *hdr = NULL;
    if (r == 0) {
        if (n < QCOW2_V2_HEADER_LENGTH || be32_load(first) != QCOW2_MAGIC) {
            r = err_set(-EINVAL, "%s: the image is too short for a qcow2 header (%zu of %d "
                        "bytes)", dev->filename, n, QCOW2_V2_HEADER_LENGTH);
            if (n >= 4 && be32_load(first) != QCOW2_MAGIC)
                r = err_set(-EINVAL, "Image is not in qcow2 format");
        }
    }
    if (r == 0) {
        /* The whole first cluster holds the header and its extensions. */
        uint32_t cb = be32_load(first + 20);
        uint64_t hlen = cb >= QCOW2_MIN_CLUSTER_BITS && cb <= QCOW2_MAX_CLUSTER_BITS
                            ? 1ull << cb : QCOW2_V2_HEADER_LENGTH;
        if (hlen > fsize)
            hlen = fsize;
        hdr = malloc(hlen);
        if (!hdr)
            r = err_set(-ENOMEM, "out of memory");
        else
            r = dev_pread(file, hdr, hlen, 0);
        if (r == 0)
            r = qcow2_parse_header(s, hdr, hlen, fsize);
        if (r == 0 && s->table_unread) {
            s->table_unread_nb = s->nb_snapshots;
            s->table_unread_offset = s->snapshots_offset;
            s->nb_snapshots = 0;
            s->snapshots_offset = 0;
        }
    }
    free(hdr);
    unsigned l2n = 0, rbn = 0;
    if (r == 0) {
        uint64_t need = (uint64_t)s->l1_size * s->cluster_size;
        uint64_t dflt = need < DEFAULT_L2_CACHE_BYTES ? need : DEFAULT_L2_CACHE_BYTES;
        r = cache_entries(os, "l2-cache-size", dflt, s->cluster_size, &l2n);
    }
    if (r == 0)
        r = cache_entries(os, "refcount-cache-size", (uint64_t)l2n * s->cluster_size / 4,
                          s->cluster_size, &rbn);
    s->file_at_open = s->grown_to = dev_size(file);
    if (r == 0)
        r = read_table(s, s->l1_offset, s->l1_size, &s->l1);
    if (r == 0) {
        s->reft_entries = (uint64_t)s->reft_clusters * s->cluster_size / 8;
        r = read_table(s, s->reft_offset, s->reft_entries, &s->reft);
        s->reft_used = s->reft_entries;
        while (r == 0 && s->reft_used && !s->reft[s->reft_used - 1])
            s->reft_used--;
    }
    if (r == 0)
        r = qcow2_cache_init(&s->l2c, s, "L2 table", l2n);
    if (r == 0)
        r = qcow2_cache_init(&s->rbc, s, "refcount block", rbn);
    if (r == 0)
        r = qcow2_load_snapshots(s, fsize);
    if (r == 0)
        r = qcow2_load_bitmaps(s, fsize);
    bool drop_bitmaps = false;
    const char *drop = opt_take(os, "drop-bitmaps");
    if (r == 0 && drop && opt_bool("drop-bitmaps", drop, &drop_bitmaps) < 0)
        r = -EINVAL;
    const char *snap = opt_take(os, "snapshot.name");
    if (!snap)
        snap = opt_take(os, "snapshot.id");
    if (r == 0 && snap) {
        if (!s->read_only)
            r = err_set(-EINVAL, "%s: a snapshot can only be opened read-only", dev->filename);
        else
            r = qcow2_snapshot_select(s, snap);
    }
    bool repair = false;
    const char *rep = opt_take(os, "repair");
    if (r == 0 && rep && opt_bool("repair", rep, &repair) < 0)
        r = -EINVAL;
    if (r == 0 && (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        s->corrupt = true;
        if (!s->read_only && !repair)
            r = err_set(-EIO, "%s: the image is marked corrupt; it can only be opened "
                        "read-only (repair it with vdisk check -r all)", dev->filename);
    }
    if (r == 0)
        r = open_data_file(s, os);
    if (r == 0)
        r = qcow2_crypto_open(s, os, fsize);
    if (r == 0 && s->backing_name)
        r = qcow2_open_backing(s, os);
    if (r == 0 && s->data_file && s->full_backing && s->full_data_file) {
        /* Guest writes would land in the backing file. */
        char a[PATH_MAX], b[PATH_MAX];
        if (realpath(s->full_backing, a) && realpath(s->full_data_file, b) && !strcmp(a, b))
            r = err_set(-EINVAL, "%s: the data file '%s' is the image's backing file",
                        dev->filename, s->full_data_file);
    }
    if (r == 0 && !s->read_only) {
        s->lazy = (s->compat & QCOW2_COMPAT_LAZY) != 0;
        if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
            /* Refcounts may be stale after a crash with lazy refcounts. */
            r = qcow2_rebuild_refcounts(s);
            qcow2_meta_moved(s);
            if (r == 0)
                r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
        }
        if (r == 0 && drop_bitmaps)
            r = qcow2_drop_bitmaps(s);
        uint64_t keep = (s->nb_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0) |
                        (s->data_raw ? QCOW2_AUTOCLEAR_RAW_DATA : 0);
        if (r == 0 && ((s->autoclear & ~keep) || s->bitmaps_stale)) {
            /* Features vdisk does not keep up to date, and a bitmaps
             * extension that their bit no longer covers, go, as QEMU
             * drops them. */
            s->autoclear &= keep;
            s->bitmaps_stale = false;
            r = qcow2_write_header(s);
        }
        /* Bitmaps kept up to date: flagged in use before any write. */
        if (r == 0 && s->nb_bitmaps)
            r = qcow2_bitmaps_open_rw(s);
    }
    if (r < 0) {
        if (s->backing)
            dev_unref(s->backing);
        free_state(s);
        dev->priv = NULL;
        return r;
    }
    dev->size = s->size;
    dev->block_size = 512;
    /* Encrypted data is whole sectors (as QEMU's request alignment). */
    dev->align = qcow2_encrypted(s) ? 512 : 1;
    dev->caps = VDISK_CAN_FLUSH | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                VDISK_CAN_ZERO_UNMAP | (s->read_only ? 0 : VDISK_CAN_WRITE);
    return 0;
}

static void qcow2_close(struct vdisk_dev *dev)
{
    struct qcow2 *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    s->offload = NULL;
    if (!s->read_only && !s->corrupt) {
        pthread_mutex_lock(&s->lock);
        int r = qcow2_bitmaps_close(s);
        if (r == 0)
            r = qcow2_flush_metadata(s);
        if (r == 0 && s->dirty_on_disk)
            qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, false);
        /* The file back to what is used, if it was grown ahead: its size at
         * open, or the end of the last cluster with a refcount. */
        uint64_t used = 0;
        if (r == 0 && s->grown_to > s->file_at_open &&
            qcow2_refcounted_end(s, &used) == 0) {
            uint64_t keep = used << s->cluster_bits;
            /* A cluster being packed with compressed data ends where its
             * data does (to the sector), as the file would have. */
            if (s->compress_cluster && s->compress_cluster + s->cluster_size == keep)
                keep = s->compress_cluster + align_up(s->compress_used, 512);
            if (keep < s->file_at_open)
                keep = s->file_at_open;
            if (dev_size(s->file) > keep) {
                struct err_saved saved;
                err_save(&saved);
                dev_truncate(s->file, keep);
                err_restore(&saved);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (s->backing)
        dev_unref(s->backing);
    qcow2_crypto_close(s);
    if (s->data_file) {
        dev_unref(s->data_file);
        s->data_file = NULL;
    }
    dev_unref(s->file);
    free_state(s);
    dev->priv = NULL;
}

/*
 * Whether the image looks preallocated (metadata), by QEMU's rule: at
 * least a ninth more clusters in use (non-zero refcount) than the file
 * system holds, and at least two more.  Only then does block
 * status ask the file about holes inside data clusters (QEMU recurses into
 * the file layer only then); otherwise a data cluster is data, however
 * little of it was written, and no lseek is made per extent.
 */
static bool metadata_preallocation(struct qcow2 *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->prealloc_checked) {
        s->prealloc_checked = true;
        int64_t real = dev_allocated_size(s->file);
        uint64_t real_clusters = real >= 0 ? (uint64_t)real >> s->cluster_bits : 0;
        uint64_t threshold = real_clusters * 10 / 9 > real_clusters + 2 ? real_clusters * 10 / 9
                                                                         : real_clusters + 2;
        uint64_t end = (dev_size(s->file) + s->cluster_size - 1) >> s->cluster_bits, used = 0;
        for (uint64_t c = 0; real >= 0 && c < end && used < threshold;) {
            /* The first refcount of each block through the refcount code
             * (which checks the table entry), the rest from the block. */
            uint64_t rc;
            if (qcow2_refcount_get(s, c, &rc) < 0) {
                used = 0;
                break;
            }
            used += rc != 0;
            uint64_t t = c >> s->rb_bits, next = (t + 1) << s->rb_bits;
            uint64_t b = t < s->reft_entries ? s->reft[t] & ~QCOW2_REFT_RESERVED : 0;
            if (next > end)
                next = end;
            if (!b) {
                c = next;
                continue;
            }
            uint8_t *blk;
            if (qcow2_cache_get(&s->rbc, b, true, &blk) < 0) {
                used = 0;
                break;
            }
            for (c++; c < next && used < threshold; c++)
                used += qcow2_rb_get(s, blk, c & (s->rb_entries - 1)) != 0;
            qcow2_cache_put(&s->rbc, blk);
        }
        s->prealloc = real >= 0 && used >= threshold;
    }
    bool r = s->prealloc;
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int qcow2_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                              struct vdisk_extent *ext)
{
    struct qcow2 *s = dev->priv;
    struct qcow2_map m;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_lookup(s, off, len, &m);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    ext->length = m.len;
    ext->depth = 0;
    switch (m.type) {
    case QCOW2_NORMAL: {
        if (qcow2_encrypted(s)) {
            /* The file holds ciphertext there: no offset (as QEMU). */
            ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED;
            return 0;
        }
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = m.host;
        ext->host_file = s->data->filename;
        /* With preallocated metadata, holes in the file read as zeroes and
         * are reported so (as QEMU does). */
        struct vdisk_extent fe;
        if (!metadata_preallocation(s)) {
        } else if (m.host < dev_size(s->data) &&
                   dev_block_status(s->data, m.host, m.len, &fe) == 0) {
            if (fe.flags & VDISK_EXT_ZERO)
                ext->flags |= VDISK_EXT_ZERO;
            ext->length = fe.length;
        } else if (m.host >= dev_size(s->data)) {
            ext->flags |= VDISK_EXT_ZERO;
        }
        return 0;
    }
    case QCOW2_COMPRESSED:
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED;
        return 0;
    case QCOW2_ZERO:
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED;
        if (m.host) {
            ext->flags |= VDISK_EXT_OFFSET;
            ext->host_offset = m.host;
            ext->host_file = s->data->filename;
        }
        return 0;
    case QCOW2_UNALLOCATED:
        break;
    }
    uint64_t bsize = s->backing ? dev_size(s->backing) : 0;
    if (m.host && off >= bsize) {
        /* An unallocated subcluster of an allocated cluster. */
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_OFFSET;
        ext->host_offset = m.host;
        ext->host_file = s->data->filename;
        return 0;
    }
    if (off < bsize) {
        uint64_t n = bsize - off < m.len ? bsize - off : m.len;
        r = dev_block_status(s->backing, off, n, ext);
        if (r < 0)
            return r;
        ext->depth++;
        return 0;
    }
    /* No backing file, or past its end: zeroes at this level (QEMU stops
     * there too, so the depth counts the images above this one only). */
    ext->flags = VDISK_EXT_ZERO;
    ext->depth = 0;
    return 0;
}

/* As the read path (io.c qc_read_loop) finds the bytes, from the cached
 * tables only: data clusters in the data file, unallocated ones in the
 * backing file up to its size, zeroes elsewhere. */
static int qcow2_map_file(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                          struct dev_file_run *run)
{
    struct qcow2 *s = dev->priv;
    if (qcow2_encrypted(s))
        return -ENOTSUP;
    struct qcow2_map m;
    uint64_t need;
    if (pthread_mutex_trylock(&s->lock) != 0)
        return -EAGAIN;
    int r = qcow2_lookup_cached(s, off, len, &m, &need);
    pthread_mutex_unlock(&s->lock);
    if (r == 1)
        return -EAGAIN;
    if (r < 0)
        return -ENOTSUP; /* (a damaged table: the read path says what) */
    switch (m.type) {
    case QCOW2_NORMAL:
        return dev_map_file(s->data, m.host, m.len, run);
    case QCOW2_COMPRESSED:
        return -ENOTSUP;
    case QCOW2_ZERO:
        break;
    case QCOW2_UNALLOCATED: {
        uint64_t bsize = s->backing ? dev_size(s->backing) : 0;
        if (off < bsize)
            return dev_map_file(s->backing, off, bsize - off < m.len ? bsize - off : m.len, run);
        break;
    }
    }
    run->len = m.len;
    run->fd = -1;
    run->host = 0;
    return 0;
}

/* A repair may place a new refcount structure. */
static int qcow2_check_op(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                          vdisk_check_report_fn report, void *opaque)
{
    int r = qcow2_check(dev, flags, res, report, opaque);
    struct qcow2 *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    qcow2_meta_moved(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int qcow2_snapshot_op(struct vdisk_dev *dev, enum snapshot_op op, const char *name)
{
    struct qcow2 *s = dev->priv;
    int r = -EINVAL;
    pthread_mutex_lock(&s->lock);
    switch (op) {
    case SNAPSHOT_CREATE:
        /* Internal snapshots would share data clusters that an external
         * data file does not count (QEMU refuses them too). */
        if (qcow2_has_data_file(s))
            r = err_set(-ENOTSUP, "%s: internal snapshots are not supported with an external "
                        "data file", dev->filename);
        else
            r = qcow2_snapshot_create(s, name);
        break;
    case SNAPSHOT_APPLY:
        r = qcow2_snapshot_apply(s, name);
        if (r == 0 && s->bm_live) /* every byte may differ now */
            qcow2_bitmaps_mark(s, 0, s->size);
        break;
    case SNAPSHOT_DELETE:
        r = qcow2_snapshot_delete(s, name);
        break;
    }
    qcow2_meta_moved(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int qcow2_snapshot_get(struct vdisk_dev *dev, unsigned index, struct vdisk_snapshot *sn)
{
    struct qcow2 *s = dev->priv;
    if (index >= s->nb_snapshots)
        return -ENOENT;
    const struct qcow2_snapshot *q = &s->snaps[index];
    sn->id = q->id;
    sn->name = q->name;
    sn->vm_state_size = q->vm_state_size;
    sn->date_sec = q->date_sec;
    sn->date_nsec = q->date_nsec;
    sn->vm_clock_nsec = q->vm_clock_nsec;
    sn->disk_size = q->disk_size;
    sn->has_icount = q->icount != UINT64_MAX;
    sn->icount = sn->has_icount ? q->icount : 0;
    return 0;
}

static int qcow2_snapshot_count(struct vdisk_dev *dev)
{
    struct qcow2 *s = dev->priv;
    return (int)s->nb_snapshots;
}

static struct vdisk_dev *qcow2_backing(struct vdisk_dev *dev)
{
    struct qcow2 *s = dev->priv;
    return s->backing;
}

static void qcow2_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    struct qcow2 *s = dev->priv;
    if (s->shown_name)
        info->filename = s->shown_name;
    info->cluster_size = (uint32_t)s->cluster_size;
    info->dirty = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
    info->backing_filename = s->backing_name;
    info->full_backing_filename = s->full_backing;
    info->backing_format = s->backing_fmt;
    info->compat = s->version >= 3 ? "1.1" : "0.10";
    info->compression_type = s->compression_type == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib";
    info->lazy_refcounts = (s->compat & QCOW2_COMPAT_LAZY) != 0;
    info->corrupt = (s->incompat & QCOW2_INCOMPAT_CORRUPT) != 0;
    info->extended_l2 = s->ext_l2;
    info->refcount_bits = s->refcount_bits;
    info->nb_bitmaps = s->nb_bitmaps;
    info->bitmaps = s->bitmap_info;
    info->encrypt = s->crypto_info;
    if (qcow2_has_data_file(s)) {
        info->has_data_file = true;
        info->data_file = s->data_file_name;
        info->data_file_raw = s->data_raw;
    }
}

static int64_t qcow2_allocated_size(struct vdisk_dev *dev)
{
    struct qcow2 *s = dev->priv;
    return dev_allocated_size(s->file);
}

/* The options create takes (vdisk_create_option). */
static const struct create_opt qcow2_create_opts[] = {
    {"backing_file", "str",
     "the backing file (the image this one reads through)"},
    {"backing_fmt", "str",
     "the backing file's format (required with backing_file)"},
    {"cluster_size", "size",
     "bytes per cluster: a power of two, 512 to 2M (default 64k)"},
    {"compat", "str",
     "the qcow2 version: 1.1 or v3 (default), 0.10 or v2"},
    {"compression_type", "str",
     "how compressed clusters are written: zlib (default) or zstd"},
    {"data_file", "str",
     "an external data file for the guest data (the image holds the metadata)"},
    {"data_file_raw", "bool (on/off)",
     "the data file is kept a raw image of the disk by itself"},
    {"encrypt.cipher-alg", "str", "Name of encryption cipher algorithm"},
    {"encrypt.cipher-mode", "str", "Name of encryption cipher mode"},
    {"encrypt.format", "str", "Encrypt the image, format choices: 'aes', 'luks'"},
    {"encrypt.hash-alg", "str", "Name of encryption hash algorithm"},
    {"encrypt.iter-time", "num", "Time to spend in PBKDF in milliseconds"},
    {"encrypt.ivgen-alg", "str", "Name of IV generator algorithm"},
    {"encrypt.ivgen-hash-alg", "str", "Name of IV generator hash algorithm"},
    {"encrypt.key-secret", "str", "ID of secret providing qcow AES key or LUKS passphrase"},
    {"encryption", "bool (on/off)",
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)"},
    {"extended_l2", "bool (on/off)",
     "extended L2 entries: 32 subclusters per cluster"},
    {"lazy_refcounts", "bool (on/off)",
     "update reference counts lazily (needs compat=1.1)"},
    {"preallocation", "str",
     "off (default), metadata, falloc or full"},
    {"refcount_bits", "num",
     "bits per reference count: 1, 2, 4, 8, 16 (default), 32 or 64"},
    {"size", "size",
     "the virtual disk's size in bytes"},
    {NULL, NULL, NULL},
};

/* Breakpoints: those of the blkdebug device the image is stored on. */
static int qcow2_debug_break(struct vdisk_dev *dev, enum debug_break_op op, const char *event,
                             const char *tag)
{
    struct qcow2 *s = dev->priv;
    return dev_debug_break(s->file, op, event, tag);
}

const struct vdisk_driver vdisk_driver_qcow2 = {
    .name = "qcow2",
    .req_state_size = sizeof(struct qcow2_req),
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .submit = qcow2_submit,
    .compress = qcow2_compress_cluster,
    .write_compressed = qcow2_write_compressed,
    .block_status = qcow2_block_status,
    .map_file = qcow2_map_file,
    .allocated_size = qcow2_allocated_size,
    .get_info = qcow2_get_info,
    .backing = qcow2_backing,
    .check = qcow2_check_op,
    .resize = qcow2_resize,
    .make_empty = qcow2_make_empty,
    .vmstate = qcow2_vmstate,
    .set_backing = qcow2_set_backing,
    .amend = qcow2_amend,
    .snapshot_count = qcow2_snapshot_count,
    .snapshot_get = qcow2_snapshot_get,
    .snapshot_op = qcow2_snapshot_op,
    .create = qcow2_create,
    .create_opts = qcow2_create_opts,
    .measure = qcow2_measure,
    .bitmap = qcow2_bitmap_op,
    .debug_break = qcow2_debug_break,
};
