/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/create.c: new qcow2 images, laid out as qemu-img lays them
 * out: the header in cluster 0, then the refcount table, the refcount
 * blocks and the L1 table.  Preallocation (metadata, falloc, full) then
 * goes through the driver itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endian.h"
#include "qcow2.h"

static int log2_exact(uint64_t v)
{
    if (!v || (v & (v - 1)))
        return -1;
    return __builtin_ctzll(v);
}

struct create_opts {
    uint64_t cluster_size;
    uint32_t refcount_bits;
    int version;
    bool lazy, extl2;
    int compression;
    const char *prealloc;
    const char *backing, *backing_fmt;
};

static int parse_opts(struct opt_set *os, struct create_opts *o)
{
    const char *v;
    memset(o, 0, sizeof *o);
    o->cluster_size = 65536;
    o->refcount_bits = 16;
    o->version = 3;
    if ((v = opt_take(os, "cluster_size"))) {
        int r = opt_size("cluster_size", v, 0, UINT64_MAX, &o->cluster_size);
        if (r < 0)
            return r;
        int b = log2_exact(o->cluster_size);
        if (b < QCOW2_MIN_CLUSTER_BITS || b > QCOW2_MAX_CLUSTER_BITS)
            return err_set(-EINVAL, "Cluster size must be a power of two between 512 and 2048k "
                           "(got %s)", v);
    }
    if ((v = opt_take(os, "refcount_bits"))) {
        uint64_t n;
        int r = opt_uint("refcount_bits", v, 1, 64, &n);
        if (r < 0)
            return r;
        if (log2_exact(n) < 0)
            return err_set(-EINVAL, "Refcount width must be a power of two and may not exceed "
                           "64 bits (got %s)", v);
        o->refcount_bits = (uint32_t)n;
    }
    if ((v = opt_take(os, "compat"))) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            o->version = 2;
        else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            o->version = 3;
        else
            return err_set(-EINVAL, "Invalid compatibility level: '%s'", v);
    }
    if ((v = opt_take(os, "lazy_refcounts")) && opt_bool("lazy_refcounts", v, &o->lazy) < 0)
        return -EINVAL;
    if ((v = opt_take(os, "extended_l2")) && opt_bool("extended_l2", v, &o->extl2) < 0)
        return -EINVAL;
    if ((v = opt_take(os, "compression_type"))) {
        if (!strcmp(v, "zlib"))
            o->compression = QCOW2_COMPRESS_ZLIB;
        else if (!strcmp(v, "zstd"))
            o->compression = QCOW2_COMPRESS_ZSTD;
        else
            return err_set(-EINVAL, "Invalid compression type '%s' (zlib or zstd)", v);
    }
    o->prealloc = opt_take(os, "preallocation");
    if (o->prealloc && strcmp(o->prealloc, "off") && strcmp(o->prealloc, "metadata") &&
        strcmp(o->prealloc, "falloc") && strcmp(o->prealloc, "full"))
        return err_set(-EINVAL, "Invalid preallocation mode: '%s'", o->prealloc);
    if (o->prealloc && !strcmp(o->prealloc, "off"))
        o->prealloc = NULL;
    o->backing = opt_take(os, "backing_file");
    o->backing_fmt = opt_take(os, "backing_fmt");
    if (o->backing && !*o->backing)
        o->backing = NULL;
    if (o->backing && strlen(o->backing) > QCOW2_MAX_BACKING_NAME)
        return err_set(-EINVAL, "the backing file name is longer than %d bytes",
                       QCOW2_MAX_BACKING_NAME);
    if (o->backing_fmt && !o->backing)
        return err_set(-EINVAL, "a backing format needs a backing file");
    if (o->backing_fmt && !driver_by_name(o->backing_fmt))
        return err_set(-EINVAL, "unknown backing format '%s'", o->backing_fmt);
    if (o->backing && o->prealloc)
        return err_set(-EINVAL, "Backing file and preallocation can only be used at the same "
                       "time if preallocation=off");
    if (o->version == 2) {
        if (o->lazy)
            return err_set(-EINVAL, "Lazy refcounts only supported with compatibility level 1.1 "
                           "and above (use compat=1.1 or greater)");
        if (o->refcount_bits != 16)
            return err_set(-EINVAL, "Different refcount widths than 16 bits require "
                           "compatibility level 1.1 or above (use compat=1.1 or greater)");
        if (o->extl2)
            return err_set(-EINVAL, "Extended L2 entries are only supported with "
                           "compatibility level 1.1 and above (use compat=1.1 or greater)");
        if (o->compression != QCOW2_COMPRESS_ZLIB)
            return err_set(-EINVAL, "Compression type 'zstd' requires compatibility level 1.1 "
                           "or above (use compat=1.1 or greater)");
    }
    if (o->extl2 && o->cluster_size < 16384)
        return err_set(-EINVAL, "Extended L2 entries are only supported with cluster sizes of "
                       "at least 16384 bytes");
    /* Every option is checked before the file is touched. */
    return opt_check_all_taken(os, "qcow2");
}

int qcow2_create(const char *filename, uint64_t size, struct opt_set *os)
{
    struct create_opts o;
    int r = parse_opts(os, &o);
    if (r < 0)
        return r;
    struct qcow2 s;
    memset(&s, 0, sizeof s);
    s.version = (uint32_t)o.version;
    s.cluster_bits = (uint32_t)log2_exact(o.cluster_size);
    s.cluster_size = o.cluster_size;
    s.size = size;
    s.refcount_order = (uint32_t)log2_exact(o.refcount_bits);
    s.header_length = s.version >= 3 ? 112 : QCOW2_V2_HEADER_LENGTH;
    s.compression_type = (uint8_t)o.compression;
    if (o.compression)
        s.incompat |= QCOW2_INCOMPAT_COMPRESSION;
    if (o.extl2)
        s.incompat |= QCOW2_INCOMPAT_EXTL2;
    if (o.lazy)
        s.compat |= QCOW2_COMPAT_LAZY;
    s.backing_name = (char *)o.backing;
    s.backing_fmt = (char *)o.backing_fmt;

    uint64_t cs = o.cluster_size;
    uint32_t l2_bits = s.cluster_bits - (o.extl2 ? 4 : 3);
    uint64_t span = 1ull << (s.cluster_bits + l2_bits);
    uint64_t l1_size = size / span + (size % span != 0);
    if (l1_size * 8 > QCOW2_MAX_L1_BYTES)
        return err_set(-EFBIG, "Image size %" PRIu64 " is too large for a cluster size of %"
                       PRIu64 " (the L1 table would exceed %u bytes)", size, cs,
                       QCOW2_MAX_L1_BYTES);
    uint64_t l1_clusters = (l1_size * 8 + cs - 1) / cs;
    uint64_t rb_entries = cs * 8 / o.refcount_bits;
    /* Clusters: header, refcount table, refcount blocks, L1 table. */
    uint64_t rt = 1, nb = 1, total;
    for (;;) {
        total = 1 + rt + nb + l1_clusters;
        uint64_t need_nb = (total + rb_entries - 1) / rb_entries;
        uint64_t need_rt = (need_nb * 8 + cs - 1) / cs;
        if (need_nb == nb && need_rt == rt)
            break;
        nb = need_nb;
        rt = need_rt;
    }
    if (rt * cs > QCOW2_MAX_REFTABLE_BYTES)
        return err_set(-EFBIG, "the refcount table would exceed %u bytes",
                       QCOW2_MAX_REFTABLE_BYTES);
    s.reft_offset = cs;
    s.reft_clusters = (uint32_t)rt;
    s.l1_offset = (1 + rt + nb) * cs;
    s.l1_size = (uint32_t)l1_size;

    uint8_t *buf = calloc(1, total * cs);
    if (!buf)
        return err_set(-ENOMEM, "out of memory for %" PRIu64 " bytes of metadata", total * cs);
    r = qcow2_build_header(&s, buf, cs);
    if (r < 0) {
        free(buf);
        return r;
    }
    for (uint64_t b = 0; b < nb; b++)
        be64_store(buf + cs + b * 8, (1 + rt + b) * cs);
    s.refcount_bits = o.refcount_bits;
    for (uint64_t c = 0; c < total; c++)
        qcow2_rb_set(&s, buf + (1 + rt + c / rb_entries) * cs, c % rb_entries, 1);
    struct file_lock *lock; /* image locking: see lib/lock.c */
    int fd = file_create_locked(filename, &lock);
    if (fd < 0) {
        free(buf);
        return fd;
    }
    size_t len = total * cs, done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, buf + done, len - done, (off_t)done);
        if (w <= 0) {
            r = err_set(w < 0 ? -errno : -EIO, "%s: write failed: %s", filename,
                        w < 0 ? strerror(errno) : "no progress");
            break;
        }
        done += (size_t)w;
    }
    free(buf);
    file_lock_release(lock);
    if (close(fd) < 0 && r == 0)
        r = err_set(-errno, "%s: close failed: %s", filename, strerror(errno));
    if (r < 0 || !o.prealloc)
        return r;

    /* Preallocation runs through the driver. */
    struct vdisk_dev *dev = NULL;
    struct vdisk_open_params params = {.cache = VDISK_CACHE_WRITEBACK,
                                       .engine = engine_uring_available() ? VDISK_ENGINE_URING
                                                                          : VDISK_ENGINE_THREADS};
    r = dev_open(&dev, filename, "qcow2", &params, NULL);
    if (r < 0)
        return r;
    r = qcow2_preallocate(dev, o.prealloc);
    if (r == 0)
        r = dev_flush(dev);
    dev_unref(dev);
    return r;
}
