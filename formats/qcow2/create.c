/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/create.c: new qcow2 images, byte for byte as qemu-img 7.2
 * makes them.
 *
 * qemu-img does not lay an image out in one go: it writes a header, a
 * refcount table of one cluster and an empty refcount block (clusters 0 to
 * 2), opens that image, counts those three clusters, then grows it to its
 * size through its allocator: the L1 table, then (preallocation=metadata)
 * an L2 table and its data clusters, table by table, or (falloc, full) a
 * new refcount structure sized for everything, the data clusters after it
 * and the L2 tables.  Where each piece lands follows from that allocator's
 * rules: a free cluster search from a moving index; a refcount block made
 * on demand in the first free cluster (then the search starts over, from
 * the start of the allocation under way); a refcount table that is full
 * replaced by a larger one, 50% to spare, placed with its new blocks after
 * the range covered by the blocks so far, the old table's cluster freed
 * and reused.  The rules are replayed here in memory (a bit per cluster:
 * nothing is referenced twice in a new image), then the file is written:
 * the same clusters, the same bytes, the same length.
 *
 * Measuring (vdisk_measure, qemu-img measure) takes the same options and
 * counts a fully allocated image with the same refcount arithmetic.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
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
    const char *data_file;      /* an external data file (NULL: none) */
    bool data_raw;              /* data_file_raw=on */
    struct qcow2_crypto_create crypto; /* encrypt.*: free it */
};

/* The options of a new image.  CREATE: the messages of qemu-img create
 * (its QAPI words: "version", "use version=v3"), else those of qemu-img
 * measure. */
static int parse_opts(struct opt_set *os, struct create_opts *o, bool create)
{
    const char *use_v3 = create ? "use version=v3 or greater" : "use compat=1.1 or greater";
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
            return err_set(-EINVAL, "Cluster size must be a power of two between 512 and "
                           "2048k");
    }
    if ((v = opt_take(os, "refcount_bits"))) {
        uint64_t n = 0;
        /* 0, a negative width and past 64: qemu-img's one message. */
        int r = *v == '-' ? -EINVAL : opt_uint("refcount_bits", v, 0, UINT64_MAX, &n);
        if (r < 0 && *v != '-')
            return r;
        if (r < 0 || n > 64 || log2_exact(n) < 0)
            return err_set(-EINVAL, "Refcount width must be a power of two and may not exceed "
                           "64 bits");
        o->refcount_bits = (uint32_t)n;
    }
    if ((v = opt_take(os, "compat"))) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            o->version = 2;
        else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            o->version = 3;
        else if (create)
            return err_set(-EINVAL, "Parameter 'version' does not accept value '%s'", v);
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
        else if (create)
            return err_set(-EINVAL, "Parameter 'compression-type' does not accept value '%s'",
                           v);
        else
            return err_set(-EINVAL, "Invalid compression type '%s' (zlib or zstd)", v);
    }
    o->prealloc = opt_take(os, "preallocation");
    if (o->prealloc && strcmp(o->prealloc, "off") && strcmp(o->prealloc, "metadata") &&
        strcmp(o->prealloc, "falloc") && strcmp(o->prealloc, "full"))
        return create ? err_set(-EINVAL, "Parameter 'preallocation' does not accept value '%s'",
                                o->prealloc)
                      : err_set(-EINVAL, "Invalid preallocation mode: '%s'", o->prealloc);
    if (o->prealloc && !strcmp(o->prealloc, "off"))
        o->prealloc = NULL;
    o->backing = opt_take(os, "backing_file");
    o->backing_fmt = opt_take(os, "backing_fmt");
    if (o->backing && !*o->backing)
        o->backing = NULL;
    if (o->backing && strlen(o->backing) > QCOW2_MAX_BACKING_NAME)
        return err_set(-EINVAL, "the backing file name is longer than %d bytes",
                       QCOW2_MAX_BACKING_NAME);
    if (o->backing && !strncmp(o->backing, "json:", 5))
        return err_set(-ENOTSUP, "the backing file name '%s' is a json: name, which vdisk does "
                       "not follow in images; give the plain name (a path, an NBD URI or an "
                       "rbd: name)", o->backing);
    if (o->backing_fmt && !o->backing)
        return err_set(-EINVAL, "a backing format needs a backing file");
    if (o->backing_fmt && !driver_by_name(o->backing_fmt))
        return create ? err_set(-EINVAL, "Parameter 'backing-fmt' does not accept value '%s'",
                                o->backing_fmt)
                      : err_set(-EINVAL, "unknown backing format '%s'", o->backing_fmt);
    if (o->backing && o->prealloc && !o->extl2)
        return err_set(-EINVAL, "Backing file and preallocation can only be used at the same "
                       "time if extended_l2 is on");
    if (o->backing && o->prealloc)
        return err_set(-ENOTSUP, "Backing file and preallocation together are not supported "
                       "(give preallocation=off)");
    if (o->version == 2) {
        if (o->lazy)
            return err_set(-EINVAL, "Lazy refcounts only supported with compatibility level 1.1 "
                           "and above (%s)", use_v3);
        if (o->refcount_bits != 16)
            return err_set(-EINVAL, "Different refcount widths than 16 bits require "
                           "compatibility level 1.1 or above (%s)", use_v3);
        if (o->extl2)
            return err_set(-EINVAL, "Extended L2 entries are only supported with "
                           "compatibility level 1.1 and above (%s)", use_v3);
        if (o->compression != QCOW2_COMPRESS_ZLIB)
            return create ? err_set(-EINVAL, "Non-zlib compression type is only supported with "
                                    "compatibility level 1.1 and above (%s)", use_v3)
                          : err_set(-EINVAL, "Compression type 'zstd' requires compatibility "
                                    "level 1.1 or above (%s)", use_v3);
    }
    o->data_file = opt_take(os, "data_file");
    if (o->data_file && !*o->data_file)
        o->data_file = NULL;
    if ((v = opt_take(os, "data_file_raw")) && opt_bool("data_file_raw", v, &o->data_raw) < 0)
        return -EINVAL;
    if (o->data_file && o->version == 2)
        return err_set(-EINVAL, "External data files are only supported with compatibility "
                       "level 1.1 and above (%s)", use_v3);
    if (o->data_raw && !o->data_file)
        return err_set(-EINVAL, "data-file-raw requires data-file");
    if (o->data_raw && o->backing)
        return err_set(-EINVAL, "Backing file and data-file-raw cannot be used at the same "
                       "time");
    if (o->data_file && strlen(o->data_file) > QCOW2_MAX_BACKING_NAME)
        return err_set(-EINVAL, "the data file name is longer than %d bytes",
                       QCOW2_MAX_BACKING_NAME);
    if (o->extl2 && o->cluster_size < 16384)
        return err_set(-EINVAL, "Extended L2 entries are only supported with cluster sizes of "
                       "at least 16384 bytes");
    /* The file protocol's hints (qemu-img's file options): accepted and
     * checked, nothing to do here. */
    uint64_t hint;
    if ((v = opt_take(os, "extent_size_hint")) &&
        opt_size("extent_size_hint", v, 0, UINT32_MAX, &hint) < 0)
        return -EINVAL;
    bool nocow;
    if ((v = opt_take(os, "nocow")) && opt_bool("nocow", v, &nocow) < 0)
        return -EINVAL;
    int r = qcow2_crypto_take_create_opts(os, &o->crypto);
    if (r < 0)
        return r;
    /* Every option is checked before the file is touched. */
    r = opt_check_all_taken(os, "qcow2");
    if (r < 0)
        qcow2_crypto_create_free(&o->crypto);
    return r;
}


/* ---- qemu-img's allocator, replayed ------------------------------------------ */

struct qsim {
    const char *filename;
    int fd;                     /* a file, or -1: */
    struct vdisk_dev *file;     /* a protocol device (an image in RBD) */
    struct qcow2 fmt;           /* geometry and refcount width (qcow2_rb_set) */
    uint64_t cs;
    uint32_t cbits, rb_bits;    /* refcounts per block: 1 << rb_bits */
    uint64_t limit;             /* clusters addressable (offsets below 2^56) */
    uint64_t *used;             /* bit per cluster: refcount 1 */
    uint64_t used_words;
    uint64_t *reft;             /* the refcount table in use */
    uint64_t reft_size;         /* its entries */
    uint64_t reft_off;
    uint64_t fci;               /* where the free cluster search starts */
    uint64_t end;               /* the file's length so far */
    /* The L2 table being filled (preallocation). */
    uint8_t *l2;
    uint64_t l2_index, l2_off;  /* its L1 index; 0: none */
    uint64_t *l1;
    uint64_t l1_size, l1_off;
};

static bool q_used(const struct qsim *q, uint64_t c)
{
    return c / 64 < q->used_words && (q->used[c / 64] >> (c % 64) & 1);
}

static int q_set_used(struct qsim *q, uint64_t c, bool on)
{
    if (c / 64 >= q->used_words) {
        if (!on)
            return 0;
        uint64_t n = q->used_words ? q->used_words : 64;
        while (n <= c / 64)
            n *= 2;
        uint64_t *u = realloc(q->used, n * sizeof *u);
        if (!u)
            return err_set(-ENOMEM, "out of memory for the refcounts of %" PRIu64 " clusters",
                           n * 64);
        memset(u + q->used_words, 0, (n - q->used_words) * sizeof *u);
        q->used = u;
        q->used_words = n;
    }
    if (on)
        q->used[c / 64] |= 1ull << (c % 64);
    else
        q->used[c / 64] &= ~(1ull << (c % 64));
    return 0;
}

/* The stored refcount of cluster C: 0 where no refcount block covers it. */
static bool q_refcount(const struct qsim *q, uint64_t c)
{
    uint64_t t = c >> q->rb_bits;
    return t < q->reft_size && q->reft[t] && q_used(q, c);
}

static void q_wrote(struct qsim *q, uint64_t off, uint64_t len)
{
    if (off + len > q->end)
        q->end = off + len;
}

static int q_pwrite(struct qsim *q, const void *buf, uint64_t len, uint64_t off)
{
    if (q->file) {
        int r = dev_pwrite(q->file, buf, (size_t)len, off);
        if (r < 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", err_detail());
            return err_set(r, "%s: write of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
                           q->filename, len, off, msg);
        }
        return 0;
    }
    return file_write_all(q->fd, buf, (size_t)len, off, q->filename);
}

/* The refcount table as it stands, written at its place. */
static int q_write_table(struct qsim *q, const uint64_t *table, uint64_t size, uint64_t off)
{
    uint8_t *buf = malloc(size * 8);
    if (!buf)
        return err_set(-ENOMEM, "out of memory for a refcount table of %" PRIu64 " entries",
                       size);
    for (uint64_t i = 0; i < size; i++)
        be64_store(buf + i * 8, table[i]);
    int r = q_pwrite(q, buf, size * 8, off);
    free(buf);
    return r;
}

/* N free clusters in a row from the search index on (not counted yet). */
static int q_alloc_noref(struct qsim *q, uint64_t n, uint64_t *start)
{
    for (uint64_t i = 0; i < n;) {
        uint64_t c = q->fci++;
        if (c >= q->limit)
            return err_set(-EFBIG, "%s: no room for %" PRIu64 " more clusters below 64 PiB",
                           q->filename, n);
        i = q_refcount(q, c) ? 0 : i + 1;
    }
    *start = q->fci - n;
    return 0;
}

static int q_alloc_block(struct qsim *q, uint64_t c);

/* Adds one to (or takes one from) the refcounts of clusters [C0, C0 + N);
 * -EAGAIN: a refcount block was made, the caller looks for room again.
 * On failure what was counted is taken back. */
static int q_update(struct qsim *q, uint64_t c0, uint64_t n, bool down)
{
    uint64_t c = c0, old_t = UINT64_MAX;
    int r = 0;
    for (; c < c0 + n; c++) {
        uint64_t t = c >> q->rb_bits;
        if (t != old_t) {
            r = q_alloc_block(q, c);
            /* The search starts over from this range: it may still be free. */
            if (r == -EAGAIN && q->fci > c0)
                q->fci = c0;
            if (r < 0)
                break;
        }
        old_t = t;
        if (down) {
            if (!q_used(q, c)) {
                r = err_set(-EIO, "%s: refcount of cluster %" PRIu64 " below 0", q->filename, c);
                break;
            }
            q_set_used(q, c, false);
            if (c < q->fci)
                q->fci = c;
        } else {
            if (q_used(q, c)) {
                r = err_set(-EIO, "%s: cluster %" PRIu64 " allocated twice", q->filename, c);
                break;
            }
            r = q_set_used(q, c, true);
            if (r < 0)
                break;
        }
    }
    if (r < 0 && c > c0) {
        int undo = q_update(q, c0, c - c0, !down);
        (void)undo;
    }
    return r;
}

/* qemu's qcow2_refcount_metadata_size(): the refcount blocks (of 2^RB_BITS
 * entries) that count CLUSTERS clusters of CS bytes and the refcount
 * structure itself, blocks and table (with half the table's size to spare
 * when GENEROUS); *TABLE: the table's clusters. */
static uint64_t refblocks_for(uint64_t cs, uint32_t rb_bits, uint64_t clusters, bool generous,
                              uint64_t *table)
{
    uint64_t per_table = cs / 8, per_block = 1ull << rb_bits;
    uint64_t blocks = 0, last, n = 0;
    *table = 0;
    do {
        last = n;
        blocks = (clusters + *table + blocks + per_block - 1) / per_block;
        *table = (blocks + per_table - 1) / per_table;
        n = clusters + blocks + *table;
        if (n == last && generous) {
            clusters += (*table + 1) / 2;
            n = 0;
            generous = false;
        }
    } while (n != last);
    return blocks;
}

static uint64_t q_refblocks_for(const struct qsim *q, uint64_t clusters, bool generous)
{
    uint64_t table;
    return refblocks_for(q->cs, q->rb_bits, clusters, generous, &table);
}

/* A new refcount table and the blocks it needs at START (a cluster index,
 * nothing used from there on), covering themselves and ADDITIONAL clusters
 * after them; the table is half as large again unless EXACT.  NEW_OFF, if
 * not 0, is a block just made for table index NEW_IDX.  *AFTER: the first
 * cluster after the new structure. */
static int q_refcount_area(struct qsim *q, uint64_t start, uint64_t additional, bool exact,
                           uint64_t new_idx, uint64_t new_off, uint64_t *after)
{
    uint64_t cs = q->cs, per_block = 1ull << q->rb_bits;
    if (additional > q->limit || start > q->limit - additional)
        return err_set(-EFBIG, "%s: the image would exceed 64 PiB", q->filename);
    uint64_t total = q_refblocks_for(q, start + additional, !exact);
    uint64_t size = exact ? total : total + (total + 1) / 2;
    size = (size + cs / 8 - 1) / (cs / 8) * (cs / 8);
    if (size > QCOW2_MAX_REFTABLE_BYTES / 8)
        return err_set(-EFBIG, "%s: the refcount table would exceed %u bytes", q->filename,
                       QCOW2_MAX_REFTABLE_BYTES);
    uint64_t tclusters = size * 8 / cs, area = start / per_block;
    uint64_t *table = calloc(size, 8);
    if (!table)
        return err_set(-ENOMEM, "out of memory for a refcount table of %" PRIu64 " entries",
                       size);
    memcpy(table, q->reft, (q->reft_size < size ? q->reft_size : size) * 8);
    if (new_off && new_idx >= total) {
        free(table);
        return err_set(-EIO, "%s: refcount block %" PRIu64 " outside a new table of %" PRIu64
                       " blocks", q->filename, new_idx, total);
    }
    if (new_off)
        table[new_idx] = new_off;
    uint64_t nnew = 0;
    for (uint64_t i = area; i < total; i++)
        nnew += !table[i];
    uint64_t table_c = start + nnew, end = table_c + tclusters, next = start;
    int r = 0;
    for (uint64_t i = area; i < total && r == 0; i++) {
        if (!table[i]) {
            table[i] = next * cs;
            q_wrote(q, next * cs, cs);
            next++;
        }
        uint64_t lo = i * per_block, hi = lo + per_block;
        if (lo < start)
            lo = start;
        if (hi > end)
            hi = end;
        for (uint64_t c = lo; c < hi && r == 0; c++)
            r = q_set_used(q, c, true);
    }
    if (r == 0)
        r = q_write_table(q, q->reft, q->reft_size, q->reft_off); /* as it was left */
    if (r < 0) {
        free(table);
        return r;
    }
    q_wrote(q, table_c * cs, size * 8);
    uint64_t old_off = q->reft_off, old_size = q->reft_size;
    free(q->reft);
    q->reft = table;
    q->reft_size = size;
    q->reft_off = table_c * cs;
    *after = end;
    /* The old table is free again. */
    return q_update(q, old_off / cs, (old_size * 8 + cs - 1) / cs, true);
}

/* Makes sure a refcount block covers cluster C: 0 if one did, else
 * -EAGAIN once it is made (or an error). */
static int q_alloc_block(struct qsim *q, uint64_t c)
{
    uint64_t t = c >> q->rb_bits, per_block = 1ull << q->rb_bits;
    if (t < q->reft_size && q->reft[t])
        return 0;
    uint64_t nb;
    int r = q_alloc_noref(q, 1, &nb);
    if (r < 0)
        return r;
    if (nb == 0)
        return err_set(-EIO, "%s: a refcount block at offset 0", q->filename);
    if ((nb >> q->rb_bits) == t)
        r = q_set_used(q, nb, true); /* it describes itself */
    else
        r = q_update(q, nb, 1, false);
    if (r < 0)
        return r;
    q_wrote(q, nb * q->cs, q->cs);
    if (t < q->reft_size) {
        q->reft[t] = nb * q->cs;
        return -EAGAIN;
    }
    /* The table is full: a new one after the range of the blocks so far. */
    uint64_t top = (c > nb ? c : nb) + 1;
    uint64_t blocks_used = (top + per_block - 1) / per_block, after;
    if (blocks_used > q->limit / per_block)
        return err_set(-EFBIG, "%s: the image would exceed 64 PiB", q->filename);
    r = q_refcount_area(q, blocks_used * per_block, 0, false, t, nb * q->cs, &after);
    return r < 0 ? r : -EAGAIN;
}

static int q_alloc(struct qsim *q, uint64_t n, uint64_t *start)
{
    int r;
    do {
        r = q_alloc_noref(q, n, start);
        if (r < 0)
            return r;
        r = q_update(q, *start, n, false);
    } while (r == -EAGAIN);
    return r;
}

/* Up to N free clusters from C on: *GOT of them counted. */
static int q_alloc_at(struct qsim *q, uint64_t c, uint64_t n, uint64_t *got)
{
    int r;
    do {
        uint64_t i = 0;
        while (i < n && c + i < q->limit && !q_refcount(q, c + i))
            i++;
        *got = i;
        r = q_update(q, c, i, false);
    } while (r == -EAGAIN);
    return r;
}

/* ---- The tables --------------------------------------------------------------- */

static uint64_t q_l2_entries(const struct qsim *q)
{
    return q->cs / (q->fmt.ext_l2 ? 16 : 8);
}

static int q_flush_l2(struct qsim *q)
{
    if (!q->l2_off)
        return 0;
    int r = q_pwrite(q, q->l2, q->cs, q->l2_off);
    q->l2_off = 0;
    return r;
}

/* The L2 table for guest cluster G, made (and the L1 entry set) if need be. */
static int q_l2_for(struct qsim *q, uint64_t g)
{
    uint64_t i = g / q_l2_entries(q);
    if (i >= q->l1_size)
        return err_set(-EIO, "%s: guest cluster %" PRIu64 " beyond the L1 table", q->filename, g);
    if (q->l1[i] && q->l2_off && q->l2_index == i)
        return 0;
    if (q->l1[i])
        return err_set(-EIO, "%s: L2 table %" PRIu64 " filled twice", q->filename, i);
    int r = q_flush_l2(q);
    uint64_t c = 0;
    if (r == 0)
        r = q_alloc(q, 1, &c);
    if (r < 0)
        return r;
    memset(q->l2, 0, q->cs);
    q->l2_off = c * q->cs;
    q->l2_index = i;
    q_wrote(q, q->l2_off, q->cs);
    q->l1[i] = q->l2_off | QCOW2_OFLAG_COPIED;
    return 0;
}

/* Guest clusters [G, G + N) at host clusters [H, H + N). */
static int q_map(struct qsim *q, uint64_t g, uint64_t n, uint64_t h)
{
    for (uint64_t k = 0; k < n; k++) {
        int r = q_l2_for(q, g + k);
        if (r < 0)
            return r;
        uint64_t j = (g + k) % q_l2_entries(q);
        qcow2_l2e_set(&q->fmt, q->l2, j, ((h + k) * q->cs) | QCOW2_OFLAG_COPIED, 0);
    }
    return 0;
}

/* preallocation=metadata: qemu's preallocate_co(), a request of at most
 * INT_MAX bytes (cluster aligned) at a time, each mapped as its allocator
 * maps a write: the L2 table, then the data clusters of that table in one
 * run, then the next table's data right after if it is free.  *FILE_END:
 * the end of the last run. */
static int q_prealloc_metadata(struct qsim *q, uint64_t size, uint64_t *file_end)
{
    const uint64_t cs = q->cs, none = UINT64_MAX;
    uint64_t chunk = (uint64_t)INT_MAX / cs * cs, off = 0, last_host = 0, last_bytes = 0;
    while (off < size) {
        uint64_t want = size - off < chunk ? size - off : chunk;
        uint64_t start = off, remaining = want, host = none, cl = none, cur = 0;
        for (;;) {
            if (host == none && cl != none)
                host = cl;
            start += cur;
            remaining -= cur;
            if (cl != none)
                cl += cur;
            if (remaining == 0)
                break;
            cur = remaining;
            uint64_t g = start / cs, j = g % q_l2_entries(q);
            int r = q_l2_for(q, g);
            if (r < 0)
                return r;
            uint64_t n = (cur + cs - 1) / cs, h = 0;
            if (n > q_l2_entries(q) - j)
                n = q_l2_entries(q) - j;
            if (cl == none) {
                r = q_alloc(q, n, &h);
            } else {
                h = cl / cs;
                r = q_alloc_at(q, h, n, &n);
            }
            if (r < 0)
                return r;
            if (n == 0) {
                cur = 0;
                break;
            }
            r = q_map(q, g, n, h);
            if (r < 0)
                return r;
            cl = h * cs;
            if (cur > n * cs)
                cur = n * cs;
        }
        want -= remaining;
        last_host = host;
        last_bytes = want;
        off += want;
    }
    /* The file then ends with the last data subcluster, a whole one (a
     * whole cluster without extended L2 entries). */
    uint64_t sub = q->fmt.ext_l2 ? cs / QCOW2_SUBCLUSTERS : cs;
    *file_end = (last_host + last_bytes + sub - 1) / sub * sub;
    return 0;
}

/* With an external data file: every guest cluster mapped at its own
 * offset there (preallocation, and always with data_file_raw), the L2
 * tables placed one after the other as the allocator finds room. */
static int q_prealloc_identity(struct qsim *q, uint64_t size)
{
    uint64_t n = (size + q->cs - 1) / q->cs;
    for (uint64_t g = 0; g < n; g++) {
        int r = q_l2_for(q, g);
        if (r < 0)
            return r;
        qcow2_l2e_set(&q->fmt, q->l2, g % q_l2_entries(q), (g * q->cs) | QCOW2_OFLAG_COPIED, 0);
    }
    return 0;
}

/* The external data file, made as qemu-img makes it (before the image): a
 * raw file of SIZE bytes, falloc and full preallocation there. */
static int make_data_file(const char *name, uint64_t size, const char *prealloc)
{
    const struct vdisk_driver *raw = driver_by_name("raw");
    if (!raw || !raw->create)
        return err_set(-ENOTSUP, "%s: cannot create the data file", name);
    vdisk_options *o = NULL;
    struct opt_set os = {0};
    int r = vdisk_options_new(&o) < 0 ? -ENOMEM : 0;
    if (r == 0 && prealloc && strcmp(prealloc, "metadata"))
        r = opt_add(o, "preallocation", prealloc);
    if (r == 0)
        r = opt_set_init(&os, o);
    if (r < 0) {
        vdisk_options_free(o);
        return err_set(-ENOMEM, "out of memory");
    }
    r = raw->create(name, size, &os);
    opt_set_fini(&os);
    vdisk_options_free(o);
    return r;
}

/* preallocation=falloc/full: qemu's truncate, a refcount structure at the
 * end of the used clusters that covers everything to come, the data
 * clusters after it, then the L2 tables where the allocator finds room.
 * [*FROM, *TO): the part of the file that gets space (and zeroes). */
static int q_prealloc_space(struct qsim *q, uint64_t size, uint64_t *from, uint64_t *to)
{
    uint64_t cs = q->cs, last = (q->end + cs - 1) / cs;
    while (last > 0 && !q_refcount(q, last - 1))
        last--;
    uint64_t data = (size + cs - 1) / cs;
    uint64_t tables = (data + q_l2_entries(q) - 1) / q_l2_entries(q) + 1, start, got;
    int r = q_refcount_area(q, last, data + tables, true, 0, 0, &start);
    if (r == 0)
        r = q_alloc_at(q, start, data, &got);
    if (r == 0 && got != data)
        r = err_set(-EIO, "%s: %" PRIu64 " of %" PRIu64 " data clusters free", q->filename, got,
                    data);
    if (r < 0)
        return r;
    *from = q->end;
    *to = (start + data) * cs;
    q_wrote(q, 0, *to);
    return q_map(q, 0, data, start);
}

/* Space for [FROM, TO): allocated (falloc) or written with zeroes (full). */
static int q_fill(struct qsim *q, uint64_t from, uint64_t to, bool full)
{
    if (from >= to)
        return 0;
    if (!full && q->file) {
        int r = dev_preallocate(q->file, to);
        if (r == -ENOTSUP)
            r = dev_write_zeroes(q->file, from, to - from, 0);
        return r;
    }
    if (!full) {
        int e = posix_fallocate(q->fd, (off_t)from, (off_t)(to - from));
        if (e)
            return err_set(-e, "%s: cannot allocate %" PRIu64 " bytes at offset %" PRIu64 ": %s",
                           q->filename, to - from, from, strerror(e));
        return 0;
    }
    size_t chunk = 1 << 20;
    uint8_t *zero = calloc(1, chunk);
    if (!zero)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    for (uint64_t o = from; o < to && r == 0; o += chunk)
        r = q_pwrite(q, zero, to - o < chunk ? to - o : chunk, o);
    free(zero);
    return r;
}

/* Everything but the retired refcount tables (written as they were left):
 * the refcount blocks from the counts, the table, the L1 table, the header
 * cluster, and the length. */
static int q_finish(struct qsim *q, struct qcow2 *s, uint64_t length)
{
    uint64_t cs = q->cs, per_block = 1ull << q->rb_bits;
    int r = q_flush_l2(q);
    uint8_t *buf = calloc(1, cs);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    for (uint64_t t = 0; t < q->reft_size && r == 0; t++) {
        if (!q->reft[t])
            continue;
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < per_block; i++)
            if (q_used(q, t * per_block + i))
                qcow2_rb_set(&q->fmt, buf, i, 1);
        r = q_pwrite(q, buf, cs, q->reft[t]);
    }
    if (r == 0)
        r = q_write_table(q, q->reft, q->reft_size, q->reft_off);
    if (r == 0 && q->l1_size) {
        uint8_t *l1 = malloc(q->l1_size * 8);
        if (!l1)
            r = err_set(-ENOMEM, "out of memory");
        for (uint64_t i = 0; l1 && i < q->l1_size; i++)
            be64_store(l1 + i * 8, q->l1[i]);
        if (l1)
            r = q_pwrite(q, l1, q->l1_size * 8, q->l1_off);
        free(l1);
    }
    if (r == 0) {
        s->l1_offset = q->l1_off;
        s->l1_size = (uint32_t)q->l1_size;
        s->reft_offset = q->reft_off;
        s->reft_clusters = (uint32_t)(q->reft_size * 8 / cs);
        r = qcow2_build_header(s, buf, cs);
    }
    if (r == 0)
        r = q_pwrite(q, buf, cs, 0);
    free(buf);
    if (r == 0 && q->file)
        r = dev_truncate(q->file, length);
    else if (r == 0 && ftruncate(q->fd, (off_t)length) < 0)
        r = err_set(-errno, "%s: cannot set the length to %" PRIu64 ": %s", q->filename, length,
                    strerror(errno));
    return r;
}

static void q_free(struct qsim *q)
{
    free(q->used);
    free(q->reft);
    free(q->l1);
    free(q->l2);
}

static int create_with(const char *filename, uint64_t size, struct create_opts *op);

int qcow2_create(const char *filename, uint64_t size, struct opt_set *os)
{
    struct create_opts o;
    int r = parse_opts(os, &o, true);
    if (r < 0)
        return r;
    if (o.crypto.enabled && !o.crypto.pass) {
        qcow2_crypto_create_free(&o.crypto);
        return err_set(-EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    }
    r = create_with(filename, size, &o);
    qcow2_crypto_create_free(&o.crypto);
    return r;
}

static int q_write_cb(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct qsim *q = opaque;
    q_wrote(q, off, len);
    return q_pwrite(q, buf, len, off);
}

static int create_with(const char *filename, uint64_t size, struct create_opts *op)
{
    struct create_opts o = *op;
    int r;
    struct qcow2 s;
    memset(&s, 0, sizeof s);
    s.version = (uint32_t)o.version;
    s.cluster_bits = (uint32_t)log2_exact(o.cluster_size);
    s.cluster_size = o.cluster_size;
    s.size = size;
    s.refcount_order = (uint32_t)log2_exact(o.refcount_bits);
    s.refcount_bits = o.refcount_bits;
    s.header_length = s.version >= 3 ? 112 : QCOW2_V2_HEADER_LENGTH;
    s.compression_type = (uint8_t)o.compression;
    s.ext_l2 = o.extl2;
    if (o.compression)
        s.incompat |= QCOW2_INCOMPAT_COMPRESSION;
    if (o.extl2)
        s.incompat |= QCOW2_INCOMPAT_EXTL2;
    if (o.lazy)
        s.compat |= QCOW2_COMPAT_LAZY;
    s.backing_name = (char *)o.backing;
    s.backing_fmt = (char *)o.backing_fmt;
    if (o.data_file) {
        s.incompat |= QCOW2_INCOMPAT_DATA_FILE;
        s.data_file_name = (char *)o.data_file;
        if (o.data_raw)
            s.autoclear |= QCOW2_AUTOCLEAR_RAW_DATA;
    }

    uint64_t cs = o.cluster_size;
    uint32_t l2_bits = s.cluster_bits - (o.extl2 ? 4 : 3);
    uint64_t span = 1ull << (s.cluster_bits + l2_bits);
    uint64_t l1_size = size / span + (size % span != 0);
    if (l1_size > QCOW2_MAX_L1_BYTES / 8)
        /* (qemu-img's words: the L1 table would exceed its 32 MiB) */
        return err_set(-EFBIG, "The image size is too large for file format 'qcow2' (try "
                       "using a larger cluster size)");
    /* The header is checked before the file is touched. */
    uint8_t *hdr = malloc(cs);
    if (!hdr)
        return err_set(-ENOMEM, "out of memory");
    r = qcow2_build_header(&s, hdr, cs);
    free(hdr);
    if (r < 0)
        return r;

    /* The data file first, as qemu-img makes it: where opening the image
     * will look for it (its name resolved against the image's folder), and
     * never over the image or its backing file. */
    if (o.data_file) {
        char *full = backing_resolve(filename, o.data_file);
        char *bfull = o.backing ? backing_resolve(filename, o.backing) : NULL;
        char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
        bool have = full && realpath(full, a);
        if (!full || (o.backing && !bfull))
            r = err_set(-ENOMEM, "out of memory");
        else if (have && ((realpath(filename, b) && !strcmp(a, b)) ||
                          (bfull && realpath(bfull, c) && !strcmp(a, c))))
            r = err_set(-EINVAL, "%s: the data file '%s' would be the image itself or its "
                        "backing file", filename, o.data_file);
        else
            r = make_data_file(full, size, o.prealloc);
        free(full);
        free(bfull);
        if (r < 0)
            return r;
    }
    struct qsim q;
    memset(&q, 0, sizeof q);
    q.filename = filename;
    q.fmt = s;
    q.fmt.l2_entry_bytes = o.extl2 ? 16 : 8;
    q.cs = cs;
    q.cbits = s.cluster_bits;
    q.rb_bits = s.cluster_bits + 3 - s.refcount_order;
    q.limit = (QCOW2_OFFSET_MASK >> s.cluster_bits) + 1;
    q.reft_size = cs / 8;
    q.reft_off = cs;
    q.l1_size = l1_size;
    q.reft = calloc(q.reft_size, 8);
    q.l1 = calloc(l1_size ? l1_size : 1, 8);
    q.l2 = malloc(cs);
    if (!q.reft || !q.l1 || !q.l2) {
        q_free(&q);
        return err_set(-ENOMEM, "out of memory for the tables of a %" PRIu64 "-byte image",
                       size);
    }
    struct file_lock *lock = NULL; /* image locking: see lib/lock.c */
    const struct vdisk_driver *proto = protocol_for_name(filename);
    if (proto && proto != &vdisk_driver_raw) {
        /* An image of a protocol (RBD): made empty by its driver, then
         * written through it, growing as qemu-img grows it. */
        struct opt_set none = {0};
        struct vdisk_open_params p = {.cache = VDISK_CACHE_WRITEBACK};
        q.fd = -1;
        r = proto->create ? proto->create(filename, 0, &none)
                          : err_set(-ENOTSUP, "%s: cannot create images there", filename);
        if (r == 0)
            r = dev_open_file(&q.file, filename, NULL, &p);
        if (r < 0) {
            q_free(&q);
            return r;
        }
        dev_set_growable(q.file);
    } else {
        q.fd = proto ? file_create_locked(filename, &lock) : -ENOTSUP;
        if (q.fd < 0) {
            q_free(&q);
            return q.fd;
        }
    }
    /* Clusters 0 to 2: the header, the table, its first (empty) block;
     * then counted through the allocator. */
    q.reft[0] = 2 * cs;
    q_wrote(&q, 0, 3 * cs);
    uint64_t c = 0, length = 0, from = 0, to = 0;
    r = q_alloc(&q, 3, &c);
    if (r == 0 && c != 0)
        r = err_set(-EIO, "%s: the first clusters are not free", filename);
    /* The L1 table, exactly as long as it needs to be. */
    if (r == 0 && l1_size) {
        r = q_alloc(&q, (l1_size * 8 + cs - 1) / cs, &c);
        q.l1_off = c * cs;
        q_wrote(&q, q.l1_off, l1_size * 8);
    }
    if (r == 0 && o.data_file) {
        /* (the data file holds the data: the image the mapping alone) */
        if (o.prealloc || o.data_raw)
            r = q_prealloc_identity(&q, size);
    } else if (r == 0 && o.prealloc && !strcmp(o.prealloc, "metadata")) {
        r = q_prealloc_metadata(&q, size, &length);
    } else if (r == 0 && o.prealloc) {
        r = q_prealloc_space(&q, size, &from, &to);
        if (r == 0)
            r = q_fill(&q, from, to, !strcmp(o.prealloc, "full"));
    }
    if (r == 0 && o.crypto.enabled) {
        /* As qemu-img: after the disk's size is set, the LUKS header in
         * clusters of its own, zeroed, then written (crypto.c). */
        uint64_t hb = qcow2_crypto_header_bytes(&o.crypto), hc = (hb + cs - 1) / cs;
        r = q_alloc(&q, hc, &c);
        uint64_t base = c * cs;
        if (r == 0) {
            q_wrote(&q, base, hc * cs);
            r = q_fill(&q, base, base + hc * cs, true);
        }
        if (r == 0)
            r = qcow2_crypto_make_header(&o.crypto, base, q_write_cb, &q, &s.crypto_length);
        s.crypt_method = QCOW2_CRYPT_LUKS;
        s.crypto_offset = base;
    } else if (o.crypto.aes) {
        s.crypt_method = QCOW2_CRYPT_AES; /* (the header alone says so) */
    }
    if (r == 0)
        r = q_finish(&q, &s, q.end > length ? q.end : length);
    q_free(&q);
    if (q.file) {
        if (r == 0)
            r = dev_flush(q.file);
        dev_unref(q.file);
        return r;
    }
    return file_create_done(q.fd, lock, r, filename);
}

/* ---- Sizing (qemu-img measure) ------------------------------------------------ */

/* qemu's qcow2_calc_prealloc_size(): the bytes of an image of SIZE bytes
 * (a multiple of CS) with every cluster allocated: the header cluster, L2
 * tables and an L1 table for the whole disk, the data, and the refcount
 * structure that counts all of it and itself. */
static uint64_t full_size(uint64_t size, uint64_t cs, uint32_t rb_bits, bool extl2)
{
    uint64_t entry = extl2 ? 16 : 8;
    uint64_t meta = cs;
    uint64_t l2e = align_up(size / cs, cs / entry);
    meta += l2e * entry;
    uint64_t l1e = align_up(l2e * entry / cs, cs / 8);
    meta += l1e * 8;
    uint64_t table, blocks = refblocks_for(cs, rb_bits, (meta + size) / cs, false, &table);
    return meta + (blocks + table) * cs + size;
}

/* qemu's qcow2_get_persistent_dirty_bitmap_size(): the bytes the bitmaps of
 * S (a disk of SIZE bytes) take in an image of clusters of CS bytes, each
 * bitmap whole, its table, and the directory. */
static uint64_t bitmaps_size(const struct qcow2 *s, uint64_t size, uint64_t cs)
{
    uint64_t total = 0, dir = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t gran = 1ull << bm->granularity_bits;
        uint64_t bits = size / gran + (size % gran != 0);
        uint64_t bytes = bits / 8 + (bits % 8 != 0);
        uint64_t clusters = bytes / cs + (bytes % cs != 0);
        total += clusters * cs + align_up(clusters * 8, cs);
        /* A directory entry: 24 bytes, the name, to a multiple of 8. */
        dir += align_up(24 + strlen(bm->name), 8);
    }
    return total + align_up(dir, cs);
}

int qcow2_measure(uint64_t size, struct vdisk_dev *src, struct opt_set *os,
                  struct vdisk_measure_result *res)
{
    struct create_opts o;
    int r = parse_opts(os, &o, false);
    uint64_t crypto_bytes = o.crypto.enabled ? qcow2_crypto_header_bytes(&o.crypto) : 0;
    qcow2_crypto_create_free(&o.crypto);
    if (r < 0)
        return r;
    uint64_t cs = o.cluster_size;
    uint32_t cbits = (uint32_t)log2_exact(cs);
    uint32_t rb_bits = cbits + 3 - (uint32_t)log2_exact(o.refcount_bits);
    uint64_t disk = align_up(size, cs), per_l2 = cs / (o.extl2 ? 16 : 8);
    if ((disk / cs + per_l2 - 1) / per_l2 > QCOW2_MAX_L1_BYTES / 8)
        return err_set(-EFBIG, "The image size is too large (try using a larger cluster size)");
    /* The data clusters: none for an empty disk, those SRC holds data in,
     * all of them where a backing file may share nothing with SRC, or
     * where preallocation allocates them. */
    uint64_t data = 0;
    bool prealloc_all = o.prealloc && strcmp(o.prealloc, "metadata") != 0;
    if (src && !prealloc_all) {
        if (o.backing)
            data = disk;
        else if ((r = measure_data(src, cs, &data)) < 0)
            return r;
    }
    if (prealloc_all)
        data = disk;
    res->fully_allocated = full_size(disk, cs, rb_bits, o.extl2);
    res->required = res->fully_allocated - disk + data;
    /* The LUKS header's clusters (qemu-img adds them to both). */
    res->fully_allocated += align_up(crypto_bytes, cs);
    res->required += align_up(crypto_bytes, cs);
    /* Bitmaps carry over from a qcow2 v3 image into a v3 image. */
    const struct qcow2 *ss = src && src->drv == &vdisk_driver_qcow2 ? src->priv : NULL;
    res->has_bitmaps = o.version >= 3 && ss && ss->version >= 3;
    if (res->has_bitmaps)
        res->bitmaps = bitmaps_size(ss, size, cs);
    return 0;
}
