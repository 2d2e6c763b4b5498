/* SPDX-License-Identifier: MIT */
/*
 * formats/qed/qed.c: QED images (the QEMU Enhanced Disk format of QEMU
 * 0.14 to 1.x deployments), read: opened read-only, for converting out
 * (to qcow2, raw, ...), info, map, compare and check.
 *
 * Layout (little-endian), from QEMU's docs/interop/qed_spec:
 *   0     the header: magic "QED\0", cluster size (2^12 to 2^26), table
 *         size in clusters (1, 2, 4, 8 or 16), header size in clusters,
 *         features (backing file 1, needs check 2, raw backing 4),
 *         compat and autoclear features, the L1 table's offset, the image
 *         size, and the backing file name's place in the header clusters
 *   L1    table_size clusters of 64-bit offsets of L2 tables (0: none)
 *   L2    tables of the same size: offsets of data clusters (0:
 *         unallocated, read from the backing file or as zeroes; 1: a
 *         zero cluster)
 *
 * Every header field is checked against the file's real length before
 * anything is allocated; the L1 table lies in the file, and vdisk holds at
 * most QED_L1_MAX_BYTES of it.  L2 tables are read as requests need them
 * (on the worker thread) into a cache of QED_L2_CACHE tables; an offset
 * that is not cluster-aligned or lies past the end of the file fails the
 * read that meets it, with the table and entry named.  Reads of clusters
 * go to the file (or the backing file) as child requests.
 *
 * Writing QED is not offered (QEMU deprecated the format): a writable open
 * is refused, with the command that converts the image to qcow2.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define QED_MAGIC              0x00444551u   /* "QED\0" */
#define QED_HEADER_BYTES       64u           /* the fields below */
#define QED_CLUSTER_MIN        (1u << 12)
#define QED_CLUSTER_MAX        (1u << 26)
#define QED_TABLE_MIN          1u
#define QED_TABLE_MAX          16u
#define QED_F_BACKING_FILE     0x1ull
#define QED_F_NEED_CHECK       0x2ull
#define QED_F_BACKING_NO_PROBE 0x4ull
#define QED_FEATURES_KNOWN     (QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_NO_PROBE)
#define QED_ZERO_CLUSTER       1ull
/* vdisk's bounds: the L1 table it holds (a 64 MiB table maps any image a
 * 4 KiB-cluster file can), the L2 tables it caches, the backing name. */
#define QED_L1_MAX_BYTES       (64u << 20)
#define QED_L2_CACHE           16u
#define QED_BACKING_NAME_MAX   4096u
#define QED_MAX_CHAIN_DEPTH    64u

/* Field offsets in the header. */
#define H_MAGIC             0
#define H_CLUSTER_SIZE      4
#define H_TABLE_SIZE        8
#define H_HEADER_SIZE       12
#define H_FEATURES          16
#define H_COMPAT_FEATURES   24
#define H_AUTOCLEAR         32
#define H_L1_OFFSET         40
#define H_IMAGE_SIZE        48
#define H_BACKING_OFFSET    56
#define H_BACKING_SIZE      60

struct l2_slot {
    uint64_t off;                /* the table's offset in the file; 0: empty */
    uint64_t *t;                 /* entries, host order */
    uint64_t used;               /* the use counter's value at the last use */
};

/* A request's state: the L2 table to read before it starts again, and how
 * many it read so far. */
struct qed_req {
    uint64_t l2_off;
    uint32_t loads;
};
_Static_assert(sizeof(struct qed_req) <= REQ_STATE_MAX, "qed's request state fits");

/* A request that needed more L2 tables than this, one after another, is
 * served whole on the worker (its tables could evict each other from the
 * cache for ever). */
#define QED_LOADS_BEFORE_SYNC  4u

struct qed {
    struct vdisk_dev *dev, *file, *backing;
    struct offload *offload;
    pthread_mutex_t lock;        /* the L2 cache */
    uint32_t cluster_size, table_size, header_size;
    unsigned cluster_bits;
    uint64_t entries;            /* per table */
    unsigned entry_bits;
    uint64_t features, image_size, l1_offset, file_size;
    uint64_t *l1;                /* host order */
    char *backing_name, *full_backing;
    const char *backing_fmt;     /* "raw" for QED_F_BACKING_NO_PROBE, else probed */
    bool confine, allow_network;
    struct l2_slot cache[QED_L2_CACHE];
    uint64_t clock;
};

static int qed_probe(const uint8_t *buf, size_t len)
{
    return len >= 4 && le32_load(buf) == QED_MAGIC ? 100 : 0;
}

static bool pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static unsigned log2_u64(uint64_t v)
{
    unsigned n = 0;
    while (v >>= 1)
        n++;
    return n;
}

/* A table (TABLE_SIZE clusters) at OFF: aligned, and inside the file. */
static bool table_ok(const struct qed *s, uint64_t off)
{
    uint64_t bytes = (uint64_t)s->table_size * s->cluster_size;
    return off && off % s->cluster_size == 0 && range_inside(off, bytes, s->file_size);
}

/* A data cluster at OFF: aligned, and inside the file (past the header). */
static bool cluster_ok(const struct qed *s, uint64_t off)
{
    return off % s->cluster_size == 0 &&
           off >= (uint64_t)s->header_size * s->cluster_size &&
           range_inside(off, s->cluster_size, s->file_size);
}

static int parse_header(struct qed *s, const uint8_t *h, struct opt_set *os)
{
    const char *fn = s->dev->filename;
    s->cluster_size = le32_load(h + H_CLUSTER_SIZE);
    s->table_size = le32_load(h + H_TABLE_SIZE);
    s->header_size = le32_load(h + H_HEADER_SIZE);
    s->features = le64_load(h + H_FEATURES);
    s->l1_offset = le64_load(h + H_L1_OFFSET);
    s->image_size = le64_load(h + H_IMAGE_SIZE);
    if (s->features & ~QED_FEATURES_KNOWN)
        return err_set(-ENOTSUP, "%s: the QED header (offset %d) has feature bits 0x%" PRIx64
                       " that vdisk does not know (known: 0x%llx)", fn, H_FEATURES,
                       (uint64_t)(s->features & ~QED_FEATURES_KNOWN),
                       (unsigned long long)QED_FEATURES_KNOWN);
    if (!pow2(s->cluster_size) || s->cluster_size < QED_CLUSTER_MIN ||
        s->cluster_size > QED_CLUSTER_MAX)
        return err_set(-EINVAL, "%s: the QED cluster size (offset %d) is %" PRIu32 "; expected "
                       "a power of two from %u to %u", fn, H_CLUSTER_SIZE, s->cluster_size,
                       QED_CLUSTER_MIN, QED_CLUSTER_MAX);
    if (!pow2(s->table_size) || s->table_size < QED_TABLE_MIN || s->table_size > QED_TABLE_MAX)
        return err_set(-EINVAL, "%s: the QED table size (offset %d) is %" PRIu32 " clusters; "
                       "expected a power of two from %u to %u", fn, H_TABLE_SIZE, s->table_size,
                       QED_TABLE_MIN, QED_TABLE_MAX);
    s->cluster_bits = log2_u64(s->cluster_size);
    s->entries = (uint64_t)s->table_size * s->cluster_size / 8;
    s->entry_bits = log2_u64(s->entries);
    /* The most the tables can map: entries^2 clusters (below 2^64: at most
     * 2^25 entries and 2^26-byte clusters make 2^76, so test by bits). */
    unsigned max_bits = 2 * s->entry_bits + s->cluster_bits;
    if (s->image_size % 512 || (max_bits < 64 && s->image_size > (1ull << max_bits)))
        return err_set(-EINVAL, "%s: the QED image size (offset %d) is %" PRIu64 " bytes; "
                       "expected a multiple of 512 of at most 2^%u (what the tables map)", fn,
                       H_IMAGE_SIZE, s->image_size, max_bits);
    if (s->image_size > (uint64_t)INT64_MAX)
        return err_set(-EINVAL, "%s: the QED image size (offset %d) is %" PRIu64 " bytes; at "
                       "most 2^63 - 1 expected", fn, H_IMAGE_SIZE, s->image_size);
    if (s->header_size == 0 ||
        (uint64_t)s->header_size * s->cluster_size > s->file_size)
        return err_set(-EINVAL, "%s: the QED header size (offset %d) is %" PRIu32 " clusters "
                       "of %" PRIu32 " bytes; the file holds %" PRIu64 " bytes", fn,
                       H_HEADER_SIZE, s->header_size, s->cluster_size, s->file_size);
    if (!table_ok(s, s->l1_offset))
        return err_set(-EINVAL, "%s: the QED L1 table offset (offset %d) is %" PRIu64 "; "
                       "expected a multiple of the cluster size (%" PRIu32 ") with the %" PRIu64
                       "-byte table inside the file (%" PRIu64 " bytes)", fn, H_L1_OFFSET,
                       s->l1_offset, s->cluster_size, s->entries * 8, s->file_size);
    if (s->entries * 8 > QED_L1_MAX_BYTES)
        return err_set(-EFBIG, "%s: the QED tables are %" PRIu64 " bytes; vdisk holds an L1 "
                       "table of at most %u", fn, s->entries * 8, QED_L1_MAX_BYTES);
    if (s->features & QED_F_BACKING_FILE) {
        uint32_t boff = le32_load(h + H_BACKING_OFFSET), blen = le32_load(h + H_BACKING_SIZE);
        uint64_t hbytes = (uint64_t)s->header_size * s->cluster_size;
        if (blen == 0 || blen > QED_BACKING_NAME_MAX || (uint64_t)boff + blen > hbytes ||
            boff < QED_HEADER_BYTES)
            return err_set(-EINVAL, "%s: the QED backing file name (offset %" PRIu32 ", %"
                           PRIu32 " bytes; header fields at %d and %d) is not inside the "
                           "%" PRIu64 "-byte header after its fields, or is longer than %u",
                           fn, boff, blen, H_BACKING_OFFSET, H_BACKING_SIZE, hbytes,
                           QED_BACKING_NAME_MAX);
        s->backing_name = malloc((size_t)blen + 1);
        if (!s->backing_name)
            return err_set(-ENOMEM, "out of memory");
        int r = dev_pread(s->file, s->backing_name, blen, boff);
        if (r < 0)
            return r;
        s->backing_name[blen] = 0;
        if (strlen(s->backing_name) != blen)
            return err_set(-EINVAL, "%s: the QED backing file name (offset %" PRIu32 ") holds "
                           "a NUL byte", fn, boff);
        s->backing_fmt = (s->features & QED_F_BACKING_NO_PROBE) ? "raw" : NULL;
    }
    (void)os;
    return 0;
}

static int load_l1(struct qed *s)
{
    size_t bytes = (size_t)(s->entries * 8);
    s->l1 = malloc(bytes);
    if (!s->l1)
        return err_set(-ENOMEM, "out of memory for the %zu-byte L1 table", bytes);
    int r = dev_pread(s->file, s->l1, bytes, s->l1_offset);
    if (r < 0)
        return r;
    for (uint64_t i = 0; i < s->entries; i++)
        s->l1[i] = le64_load(&s->l1[i]);
    return 0;
}

static void free_state(struct qed *s)
{
    for (unsigned i = 0; i < QED_L2_CACHE; i++)
        free(s->cache[i].t);
    free(s->l1);
    free(s->backing_name);
    free(s->full_backing);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int qed_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    if (!dev->params.read_only)
        return err_set(-ENOTSUP, "%s: vdisk reads QED images but does not write them (open it "
                       "read-only, or convert it: vdisk convert -f qed -O qcow2 %s "
                       "IMAGE.qcow2)", dev->filename, dev->filename);
    struct qed *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->dev = dev;
    s->file = file;
    dev->priv = s;
    s->file_size = dev_size(file);
    if (file->file_length && file->file_length < s->file_size)
        s->file_size = file->file_length;
    uint8_t h[QED_HEADER_BYTES];
    int r = backing_take_options(os, &s->confine, &s->allow_network);
    if (r == 0 && s->file_size < QED_HEADER_BYTES)
        r = err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; a QED header needs %u",
                    dev->filename, s->file_size, QED_HEADER_BYTES);
    if (r == 0)
        r = dev_pread(file, h, sizeof h, 0);
    if (r == 0 && le32_load(h + H_MAGIC) != QED_MAGIC)
        r = err_set(-EINVAL, "%s: not a QED image (magic 0x%08" PRIx32 " at offset 0; "
                    "expected 0x%08x)", dev->filename, le32_load(h + H_MAGIC), QED_MAGIC);
    if (r == 0)
        r = parse_header(s, h, os);
    if (r == 0)
        r = load_l1(s);
    if (r == 0 && s->backing_name) {
        struct backing_spec b = {.name = s->backing_name, .format = s->backing_fmt,
                                 .confine = s->confine, .allow_network = s->allow_network,
                                 .max_depth = QED_MAX_CHAIN_DEPTH};
        r = backing_open(dev, &b, &s->backing, &s->full_backing);
    }
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        if (s->backing)
            dev_unref(s->backing);
        free_state(s);
        dev->priv = NULL;
        return r;
    }
    dev->size = s->image_size;
    dev->block_size = 512;
    dev->align = 512;
    dev->caps = VDISK_CAN_FLUSH;
    return 0;
}

static void qed_close(struct vdisk_dev *dev)
{
    struct qed *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->backing)
        dev_unref(s->backing);
    dev_unref(s->file);
    free_state(s);
    dev->priv = NULL;
}

/* ---- Tables ----------------------------------------------------------------- */

/* The cached L2 table at OFF, or NULL (under the lock). */
static uint64_t *cached(struct qed *s, uint64_t off)
{
    for (unsigned i = 0; i < QED_L2_CACHE; i++)
        if (s->cache[i].off == off) {
            s->cache[i].used = ++s->clock;
            return s->cache[i].t;
        }
    return NULL;
}

/* Reads the L2 table at OFF into the cache (a synchronous read: on the
 * worker, or for block status).  Called without the lock. */
static int load_l2(struct qed *s, uint64_t off)
{
    size_t bytes = (size_t)(s->entries * 8);
    uint64_t *t = malloc(bytes);
    if (!t)
        return err_set(-ENOMEM, "out of memory for an L2 table");
    int r = dev_pread(s->file, t, bytes, off);
    if (r < 0) {
        free(t);
        return r;
    }
    for (uint64_t i = 0; i < s->entries; i++)
        t[i] = le64_load(&t[i]);
    pthread_mutex_lock(&s->lock);
    if (cached(s, off)) {
        pthread_mutex_unlock(&s->lock);
        free(t);
        return 0;
    }
    unsigned victim = 0;
    for (unsigned i = 1; i < QED_L2_CACHE; i++)
        if (s->cache[i].used < s->cache[victim].used)
            victim = i;
    free(s->cache[victim].t);
    s->cache[victim] = (struct l2_slot){.off = off, .t = t, .used = ++s->clock};
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Where disk byte POS is (under the lock).  Returns:
 *   1  data at *HOST in the file;
 *   0  a zero cluster;
 *   2  unallocated (the backing file's, or zeroes);
 *   3  its L2 table is not cached: *HOST is the table's offset;
 *   -EIO with a message for an offset that is not usable. */
enum { AT_ZERO = 0, AT_DATA = 1, AT_UNALLOC = 2, AT_NEED_L2 = 3 };

static int locate(struct qed *s, uint64_t pos, uint64_t *host)
{
    uint64_t ci = pos >> s->cluster_bits;
    uint64_t l1i = ci >> s->entry_bits, l2i = ci & (s->entries - 1);
    uint64_t l2off = l1i < s->entries ? s->l1[l1i] : 0;
    if (!l2off)
        return AT_UNALLOC;
    if (!table_ok(s, l2off))
        return err_set(-EIO, "%s: L1 entry %" PRIu64 " (at offset %" PRIu64 ") points at an "
                       "L2 table at %" PRIu64 ", which is not cluster-aligned or not inside "
                       "the file (%" PRIu64 " bytes)", s->dev->filename, l1i,
                       s->l1_offset + l1i * 8, l2off, s->file_size);
    uint64_t *t = cached(s, l2off);
    if (!t) {
        *host = l2off;
        return AT_NEED_L2;
    }
    uint64_t e = t[l2i];
    if (e == 0)
        return AT_UNALLOC;
    if (e == QED_ZERO_CLUSTER)
        return AT_ZERO;
    if (!cluster_ok(s, e))
        return err_set(-EIO, "%s: L2 entry %" PRIu64 " of the table at offset %" PRIu64
                       " points at a cluster at %" PRIu64 ", which is not cluster-aligned or "
                       "not inside the file (%" PRIu64 " bytes)", s->dev->filename, l2i, l2off,
                       e, s->file_size);
    *host = e + (pos & (s->cluster_size - 1));
    return AT_DATA;
}

/* ---- Reads ------------------------------------------------------------------ */

static void qed_submit(struct vdisk_req *req);

static int l2_work(struct vdisk_req *req)
{
    struct qed *s = req->dev->priv;
    struct qed_req *qr = req_state(req);
    int r = load_l2(s, qr->l2_off);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void l2_then(struct vdisk_req *req)
{
    if (req->result < 0) {
        req_complete(req, req->result);
        return;
    }
    qed_submit(req);
}

/* The N bytes at POS that no layer holds: the backing file's (zeroes past
 * its end), or zeroes. */
static int read_unallocated(struct vdisk_req *req, struct qed *s, uint64_t pos, uint64_t n)
{
    uint64_t skip = pos - req->offset, have = 0;
    if (s->backing) {
        uint64_t bsize = dev_size(s->backing);
        have = pos < bsize ? (n < bsize - pos ? n : bsize - pos) : 0;
        if (have) {
            int r = req_read_slice(req, s->backing, pos, skip, have);
            if (r < 0)
                return r;
        }
    }
    if (have < n)
        iov_memset(req->iov, req->iovcnt, (size_t)(skip + have), 0, (size_t)(n - have));
    return 0;
}

/* On the worker: the whole request, synchronously, its L2 tables read as
 * they are met (each used before the next can evict it). */
static int sync_work(struct vdisk_req *req)
{
    struct qed *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    int r = 0;
    for (uint64_t pos = req->offset; pos < end && r == 0;) {
        uint64_t n = s->cluster_size - (pos & (s->cluster_size - 1)), host = 0;
        if (n > end - pos)
            n = end - pos;
        pthread_mutex_lock(&s->lock);
        int kind = locate(s, pos, &host);
        pthread_mutex_unlock(&s->lock);
        if (kind == AT_NEED_L2) {
            r = load_l2(s, host);
            continue;
        }
        size_t skip = (size_t)(pos - req->offset);
        uint64_t have = n;
        struct vdisk_dev *from = s->file;
        if (kind < 0) {
            r = kind;
            break;
        } else if (kind == AT_ZERO || (kind == AT_UNALLOC && !s->backing)) {
            have = 0;
        } else if (kind == AT_UNALLOC) {
            uint64_t bsize = dev_size(s->backing);
            have = pos < bsize ? (n < bsize - pos ? n : bsize - pos) : 0;
            from = s->backing;
            host = pos;
        }
        uint8_t *b = malloc((size_t)n);
        if (!b) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        memset(b + have, 0, (size_t)(n - have));
        if (have == 0 || (r = dev_pread(from, b, (size_t)have, host)) == 0)
            iov_from_buf(req->iov, req->iovcnt, skip, b, (size_t)n);
        free(b);
        pos += n;
    }
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void qed_read(struct vdisk_req *req)
{
    struct qed *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    /* First every table the request needs must be cached: a missing one is
     * read on the worker, and the request starts again. */
    pthread_mutex_lock(&s->lock);
    for (uint64_t pos = req->offset; pos < end;) {
        uint64_t host = 0;
        int r = locate(s, pos, &host);
        if (r == AT_NEED_L2) {
            pthread_mutex_unlock(&s->lock);
            struct qed_req *qr = req_state(req);
            qr->l2_off = host;
            if (++qr->loads > QED_LOADS_BEFORE_SYNC)
                offload_req(s->offload, req, sync_work, NULL);
            else
                offload_req(s->offload, req, l2_work, l2_then);
            return;
        }
        if (r < 0) {
            pthread_mutex_unlock(&s->lock);
            req_set_error(req, r, err_detail());
            req_complete(req, r);
            return;
        }
        pos = (pos | (s->cluster_size - 1)) + 1;
    }
    /* Then runs of clusters of one kind (data runs contiguous in the file)
     * become one child each.  The tables cannot leave the cache meanwhile:
     * only the worker fills it, and this runs under the lock. */
    req_hold(req); /* the walk's own */
    uint64_t pos = req->offset;
    while (pos < end) {
        uint64_t host = 0, n = 0;
        int kind = locate(s, pos, &host);
        uint64_t next_host = host;
        for (;;) {
            uint64_t step = s->cluster_size - ((pos + n) & (s->cluster_size - 1));
            if (step > end - pos - n)
                step = end - pos - n;
            n += step;
            next_host += step;
            if (pos + n >= end)
                break;
            uint64_t h2 = 0;
            int k2 = locate(s, pos + n, &h2);
            if (k2 != kind || (kind == AT_DATA && h2 != next_host))
                break;
        }
        int r = 0;
        if (kind == AT_DATA)
            r = req_read_slice(req, s->file, host, pos - req->offset, n);
        else if (kind == AT_ZERO)
            iov_memset(req->iov, req->iovcnt, (size_t)(pos - req->offset), 0, (size_t)n);
        else
            r = read_unallocated(req, s, pos, n);
        if (r < 0) {
            req_set_error(req, r, "out of memory");
            break;
        }
        pos += n;
    }
    pthread_mutex_unlock(&s->lock);
    req_release(req, 0);
}

static void qed_submit(struct vdisk_req *req)
{
    struct qed *s = req->dev->priv;
    switch (req->op) {
    case VDISK_OP_READ:
        qed_read(req);
        return;
    case VDISK_OP_FLUSH: {
        (void)s;
        req_complete(req, 0); /* nothing is written */
        return;
    }
    default:
        req_fail(req, -EROFS, "QED images are read-only in vdisk");
        return;
    }
}

/* ---- Block status, info ----------------------------------------------------- */

static int qed_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                            struct vdisk_extent *ext)
{
    struct qed *s = dev->priv;
    ext->depth = 0;
    uint64_t end = off + len, n = 0, host = 0;
    int kind;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        kind = locate(s, off, &host);
        pthread_mutex_unlock(&s->lock);
        if (kind != AT_NEED_L2)
            break;
        int r = load_l2(s, host);
        if (r < 0)
            return r;
    }
    if (kind < 0)
        return kind;
    /* Clusters of the same kind that follow, while their table is cached;
     * an L1 entry without an L2 table is skipped whole (an empty 2^46-byte
     * image is one extent, not 2^30 clusters' worth of lookups). */
    uint64_t next_host = host, span = s->entries << s->cluster_bits;
    for (;;) {
        uint64_t pos = off + n, l1i = (pos >> s->cluster_bits) >> s->entry_bits;
        uint64_t step = s->cluster_size - (pos & (s->cluster_size - 1));
        if (kind == AT_UNALLOC && (l1i >= s->entries || s->l1[l1i] == 0))
            step = span - (pos & (span - 1));
        if (step > end - off - n)
            step = end - off - n;
        n += step;
        next_host += step;
        if (off + n >= end)
            break;
        uint64_t h2 = 0;
        pthread_mutex_lock(&s->lock);
        int k2 = locate(s, off + n, &h2);
        pthread_mutex_unlock(&s->lock);
        if (k2 != kind || (kind == AT_DATA && h2 != next_host))
            break;
    }
    if (kind == AT_UNALLOC && s->backing) {
        uint64_t bsize = dev_size(s->backing);
        if (off < bsize) {
            int r = dev_block_status(s->backing, off, bsize - off < n ? bsize - off : n, ext);
            if (r < 0)
                return r;
            ext->depth++;
            return 0;
        }
    }
    ext->length = n;
    switch (kind) {
    case AT_DATA:
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
        ext->host_offset = host;
        ext->host_file = s->file->filename;
        break;
    case AT_ZERO:
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED;
        break;
    default:
        ext->flags = VDISK_EXT_ZERO; /* no backing file, or past its end */
        break;
    }
    return 0;
}

static struct vdisk_dev *qed_backing(struct vdisk_dev *dev)
{
    struct qed *s = dev->priv;
    return s->backing;
}

static void qed_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    struct qed *s = dev->priv;
    info->cluster_size = s->cluster_size;
    info->dirty = (s->features & QED_F_NEED_CHECK) != 0;
    info->backing_filename = s->backing_name;
    info->full_backing_filename = s->full_backing;
    if (s->backing && s->backing_fmt)
        info->backing_format = s->backing_fmt;
}

static int64_t qed_allocated_size(struct vdisk_dev *dev)
{
    struct qed *s = dev->priv;
    return dev_allocated_size(s->file);
}

/* ---- Check ------------------------------------------------------------------- */

/* Marks N clusters from OFF used; false when one already was. */
static bool mark(uint8_t *used, uint64_t nclusters, uint64_t first, uint64_t n)
{
    bool fresh = true;
    for (uint64_t c = first; c < first + n && c < nclusters; c++) {
        if (used[c / 8] & (1u << (c % 8)))
            fresh = false;
        used[c / 8] |= (uint8_t)(1u << (c % 8));
    }
    return fresh;
}

/*
 * As qemu-img check counts a QED image: every L2 table and data cluster
 * must be cluster-aligned, inside the file, and referenced once; a bad
 * offset or a second reference is a corruption, a cluster past the header
 * that nothing references a leak (counted only when every table could be
 * read).  Like qemu-img, it names no cluster.  Repairs need a writable
 * image, which vdisk does not open.
 */
static int qed_check(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                     vdisk_check_report_fn report, void *opaque)
{
    (void)report;
    (void)opaque;
    struct qed *s = dev->priv;
    if (flags & (VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS))
        return err_set(-ENOTSUP, "%s: vdisk does not repair QED images (it opens them "
                       "read-only)", dev->filename);
    uint64_t nclusters = s->file_size >> s->cluster_bits;
    uint8_t *used = calloc((size_t)(nclusters / 8 + 1), 1);
    uint64_t *t = malloc((size_t)(s->entries * 8));
    if (!used || !t) {
        free(used);
        free(t);
        return err_set(-ENOMEM, "out of memory for the check of %" PRIu64 " clusters",
                       nclusters);
    }
    uint64_t corruptions = 0, leaks = 0, allocated = 0, fragmented = 0;
    mark(used, nclusters, 0, s->header_size);
    mark(used, nclusters, s->l1_offset >> s->cluster_bits, s->table_size);
    int r = 0;
    for (uint64_t i = 0; i < s->entries && r == 0; i++) {
        uint64_t l2 = s->l1[i];
        if (!l2)
            continue;
        if (!table_ok(s, l2)) {
            corruptions++;
            continue;
        }
        if (!mark(used, nclusters, l2 >> s->cluster_bits, s->table_size)) {
            corruptions++;
            continue;
        }
        r = dev_pread(s->file, t, (size_t)(s->entries * 8), l2);
        if (r < 0)
            break;
        uint64_t last = 0;
        for (uint64_t j = 0; j < s->entries; j++) {
            uint64_t e = le64_load(&t[j]);
            if (e == 0 || e == QED_ZERO_CLUSTER)
                continue;
            allocated++;
            if (last && last + s->cluster_size != e)
                fragmented++;
            last = e;
            if (!cluster_ok(s, e) || !mark(used, nclusters, e >> s->cluster_bits, 1))
                corruptions++;
        }
    }
    for (uint64_t c = s->header_size; r == 0 && c < nclusters; c++)
        if (!(used[c / 8] & (1u << (c % 8))))
            leaks++;
    free(used);
    free(t);
    if (r < 0)
        return r;
    res->corruptions = corruptions;
    res->leaks = leaks;
    res->allocated_clusters = allocated;
    res->fragmented_clusters = fragmented;
    res->total_clusters = (s->image_size + s->cluster_size - 1) >> s->cluster_bits;
    return 0;
}

const struct vdisk_driver vdisk_driver_qed = {
    .name = "qed",
    .req_state_size = sizeof(struct qed_req),
    .probe = qed_probe,
    .open = qed_open,
    .close = qed_close,
    .submit = qed_submit,
    .block_status = qed_block_status,
    .allocated_size = qed_allocated_size,
    .get_info = qed_get_info,
    .backing = qed_backing,
    .check = qed_check,
};
