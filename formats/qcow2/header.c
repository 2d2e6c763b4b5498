/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/header.c: the qcow2 header: parsing with every field
 * checked against named limits and the real file size, building a header
 * cluster, and updating feature bits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "qcow2.h"

static const struct qcow2_feature known_features[] = {
    {0, 0, "dirty bit"},
    {0, 1, "corrupt bit"},
    {0, 2, "external data file"},
    {0, 3, "compression type"},
    {0, 4, "extended L2 entries"},
    {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},
    {2, 1, "raw external data"},
};
#define NKNOWN (sizeof known_features / sizeof known_features[0])

const char *qcow2_feature_name(const struct qcow2 *s, int type, int bit)
{
    for (unsigned i = 0; i < s->nfeatures; i++)
        if (s->features[i].type == type && s->features[i].bit == bit)
            return s->features[i].name;
    for (unsigned i = 0; i < NKNOWN; i++)
        if (known_features[i].type == type && known_features[i].bit == bit)
            return known_features[i].name;
    return NULL;
}

int qcow2_corrupt(struct qcow2 *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The first event of an open image is also a warning, in QEMU's words
     * (scripts and QEMU's own tests look for them); the error carries the
     * file's name and what to do. */
    if (!s->corrupt_warned) {
        s->corrupt_warned = true;
        warn_report(s->read_only ? "qcow2: Image is corrupt: %s; further non-fatal corruption "
                                   "events will be suppressed"
                                 : "qcow2: Marking image as corrupt: %s; further corruption "
                                   "events will be suppressed", msg);
    }
    if (!s->read_only && !s->corrupt) {
        s->corrupt = true;
        /* Mark the image so that nothing writes it until it is repaired. */
        uint8_t b[8];
        be64_store(b, s->incompat | QCOW2_INCOMPAT_CORRUPT);
        if (s->version >= 3 && dev_pwrite(s->file, b, 8, 72) == 0) {
            s->incompat |= QCOW2_INCOMPAT_CORRUPT;
            dev_flush(s->file);
        }
        return err_set(-EIO, "%s: %s; the image is marked corrupt, and further writes are "
                       "refused (run vdisk check -r all)", s->dev->filename, msg);
    }
    s->corrupt = true;
    return err_set(-EIO, "%s: %s", s->dev->filename, msg);
}

/* Fails the open with a message naming the file and the problem. */
static int bad(const struct qcow2 *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const struct qcow2 *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(-EINVAL, "%s: %s", s->dev->filename, msg);
}

/* Fails the open with QEMU's words for the same condition (which do not
 * name the file: qemu-img and qemu-io put the name before them). */
static int bad_q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_q(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(-EINVAL, "%s", msg);
}

/* A table of COUNT entries of SIZE bytes at OFFSET: aligned, inside the
 * file, not over the header, within MAX bytes.  QEMU's words (QNAME "too
 * large", "offset invalid") where QEMU checks the same: the size, the
 * alignment, an end past INT64_MAX; vdisk's for the rest. */
static int check_table(const struct qcow2 *s, const char *what, const char *qname,
                       uint64_t offset, uint64_t count, uint64_t size, uint64_t max,
                       uint64_t file_size)
{
    uint64_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes) || bytes > max)
        return bad_q("%s too large", qname);
    /* (the offset of an empty table too, as QEMU checks it) */
    if (offset % s->cluster_size || offset > (uint64_t)INT64_MAX - bytes)
        return bad_q("%s offset invalid", qname);
    if (count == 0)
        return 0;
    if (offset == 0)
        return bad(s, "%s at offset 0 overlaps the header", what);
    if (!range_inside(offset, bytes, file_size))
        return bad(s, "%s at offset 0x%" PRIx64 " (%" PRIu64 " bytes) is beyond the end of the "
                   "file (%" PRIu64 " bytes)", what, offset, bytes, file_size);
    return 0;
}

static int parse_extensions(struct qcow2 *s, const uint8_t *buf, size_t len)
{
    uint64_t pos = s->header_length;
    uint64_t end = s->backing_name_offset ? s->backing_name_offset : len;
    if (end > len)
        end = len;
    for (unsigned n = 0;; n++) {
        if (n >= QCOW2_MAX_HEADER_EXTS)
            return bad(s, "more than %d header extensions", QCOW2_MAX_HEADER_EXTS);
        if (pos + 8 > end) {
            if (pos >= end)
                return 0; /* no end marker, but nothing more fits */
            return bad_q("Header extension too large"); /* (truncated) */
        }
        uint32_t type = be32_load(buf + pos), elen = be32_load(buf + pos + 4);
        if (type == QCOW2_EXT_END)
            return 0;
        uint64_t data = pos + 8;
        uint64_t next = data + ((uint64_t)elen + 7) / 8 * 8;
        if (elen > end - data || next > len)
            return bad_q("Header extension too large");
        switch (type) {
        case QCOW2_EXT_BACKING_FMT:
            if (elen > QCOW2_MAX_BACKING_NAME)
                return bad(s, "invalid backing format extension (length %" PRIu32 ")", elen);
            /* A second one wins, as in QEMU (which reads them in order). */
            free(s->backing_fmt);
            s->backing_fmt = strndup((const char *)buf + data, elen);
            if (!s->backing_fmt)
                return err_set(-ENOMEM, "out of memory");
            if (strlen(s->backing_fmt) != elen)
                return bad(s, "the backing format name contains a NUL byte");
            break;
        case QCOW2_EXT_FEATURES: {
            if (s->features)
                return bad(s, "two feature name tables");
            /* A short last entry reads as if zero-padded, as QEMU reads it. */
            unsigned cnt = (unsigned)((elen + 47) / 48);
            s->features = calloc(cnt ? cnt : 1, sizeof *s->features);
            if (!s->features)
                return err_set(-ENOMEM, "out of memory");
            for (unsigned i = 0; i < cnt; i++) {
                uint8_t f[48] = {0};
                size_t have = elen - (size_t)i * 48 < 48 ? elen - (size_t)i * 48 : 48;
                memcpy(f, buf + data + (size_t)i * 48, have);
                s->features[i].type = f[0];
                s->features[i].bit = f[1];
                memcpy(s->features[i].name, f + 2, 46);
                s->features[i].name[46] = '\0';
            }
            s->nfeatures = cnt;
            break;
        }
        case QCOW2_EXT_BITMAPS: {
            if (s->nb_bitmaps || s->bitmaps_stale)
                return bad(s, "two bitmaps extensions");
            if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
                /* A program without bitmap support wrote the image: QEMU
                 * considers the bitmaps inconsistent and ignores them (their
                 * clusters are leaks); a read-write open drops it. */
                s->bitmaps_stale = true;
                break;
            }
            if (elen != QCOW2_BITMAPS_EXT_LENGTH)
                return bad(s, "the bitmaps extension is %" PRIu32 " bytes long (%d expected)",
                           elen, QCOW2_BITMAPS_EXT_LENGTH);
            const uint8_t *b = buf + data;
            uint32_t nb = be32_load(b), reserved = be32_load(b + 4);
            uint64_t dsize = be64_load(b + 8), doff = be64_load(b + 16);
            if (reserved)
                return bad(s, "the bitmaps extension's reserved field is 0x%08" PRIx32
                           " (0 expected)", reserved);
            if (nb == 0 || nb > QCOW2_MAX_BITMAPS)
                return bad(s, "the bitmaps extension has %" PRIu32 " bitmaps (1 to %d)", nb,
                           QCOW2_MAX_BITMAPS);
            if (dsize < (uint64_t)nb * 24 || dsize > QCOW2_MAX_BITMAP_DIR)
                return bad(s, "the bitmap directory of %" PRIu32 " bitmaps is %" PRIu64
                           " bytes long (%" PRIu64 " to %u)", nb, dsize, (uint64_t)nb * 24,
                           QCOW2_MAX_BITMAP_DIR);
            if (doff == 0 || doff % s->cluster_size)
                return bad(s, "the bitmap directory offset 0x%" PRIx64 " is not a cluster "
                           "boundary after the header", doff);
            s->nb_bitmaps = nb;
            s->bitmap_dir_size = dsize;
            s->bitmap_dir_offset = doff;
            break;
        }
        case QCOW2_EXT_CRYPTO: {
            if (s->crypto_offset)
                return bad(s, "two encryption header extensions");
            int cr = qcow2_crypto_parse_ext(s, buf + data, elen);
            if (cr < 0)
                return cr;
            break;
        }
        case QCOW2_EXT_DATA_FILE:
            /* The external data file's name (used with incompatible bit 2;
             * a name without the bit is kept, and ignored, as QEMU does). */
            if (s->data_file_name)
                return bad(s, "two external data file extensions");
            if (elen == 0 || elen > QCOW2_MAX_BACKING_NAME)
                return bad(s, "the external data file name is %" PRIu32 " bytes long (1 to "
                           "%d)", elen, QCOW2_MAX_BACKING_NAME);
            s->data_file_name = strndup((const char *)buf + data, elen);
            if (!s->data_file_name)
                return err_set(-ENOMEM, "out of memory");
            if (strlen(s->data_file_name) != elen)
                return bad(s, "the external data file name contains a NUL byte");
            break;
        default: {
            /* Kept as they are. */
            struct qcow2_ext *x = realloc(s->exts, (s->nexts + 1) * sizeof *x);
            if (!x)
                return err_set(-ENOMEM, "out of memory");
            s->exts = x;
            x[s->nexts].type = type;
            x[s->nexts].len = elen;
            x[s->nexts].data = malloc(elen ? elen : 1);
            if (!x[s->nexts].data)
                return err_set(-ENOMEM, "out of memory");
            memcpy(x[s->nexts].data, buf + data, elen);
            s->nexts++;
        }
        }
        pos = next;
    }
}

int qcow2_parse_header(struct qcow2 *s, const uint8_t *buf, size_t len, uint64_t file_size)
{
    if (len < QCOW2_V2_HEADER_LENGTH)
        return bad(s, "the image is too short for a qcow2 header (%zu of %d bytes)", len,
                   QCOW2_V2_HEADER_LENGTH);
    if (be32_load(buf) != QCOW2_MAGIC)
        return bad_q("Image is not in qcow2 format");
    s->version = be32_load(buf + 4);
    if (s->version != 2 && s->version != 3)
        return err_set(-ENOTSUP, "Unsupported qcow2 version %" PRIu32, s->version);
    s->backing_name_offset = be64_load(buf + 8);
    s->backing_name_len = be32_load(buf + 16);
    s->cluster_bits = be32_load(buf + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return bad_q("Unsupported cluster size: 2^%" PRIu32, s->cluster_bits);
    s->cluster_size = 1ull << s->cluster_bits;
    s->size = be64_load(buf + 24);
    s->crypt_method = be32_load(buf + 32);
    s->l1_size = be32_load(buf + 36);
    s->l1_offset = be64_load(buf + 40);
    s->reft_offset = be64_load(buf + 48);
    s->reft_clusters = be32_load(buf + 56);
    s->nb_snapshots = be32_load(buf + 60);
    s->snapshots_offset = be64_load(buf + 64);

    if (s->version == 2) {
        s->refcount_order = 4;
        s->header_length = QCOW2_V2_HEADER_LENGTH;
    } else {
        if (len < QCOW2_V3_HEADER_LENGTH)
            return bad(s, "the image is too short for a version 3 header (%zu of %d bytes)", len,
                       QCOW2_V3_HEADER_LENGTH);
        s->incompat = be64_load(buf + 72);
        s->compat = be64_load(buf + 80);
        s->autoclear = be64_load(buf + 88);
        s->refcount_order = be32_load(buf + 96);
        s->header_length = be32_load(buf + 100);
        if (s->header_length < QCOW2_V3_HEADER_LENGTH)
            return bad_q("qcow2 header too short");
        if (s->header_length > s->cluster_size)
            return bad_q("qcow2 header exceeds cluster size");
        if (s->header_length % 8 || s->header_length > len)
            return bad(s, "header_length %" PRIu32 " is invalid (a multiple of 8 from %d to "
                       "the cluster size, %" PRIu64 ")", s->header_length,
                       QCOW2_V3_HEADER_LENGTH, s->cluster_size);
        if (s->header_length > 104)
            s->compression_type = buf[104];
    }
    if (s->backing_name_offset > s->cluster_size)
        return bad_q("Invalid backing file offset");
    if (s->refcount_order > 6)
        return bad_q("Reference count entry width too large; may not exceed 64 bits");

    /* Features: extensions first, so that unknown bits can be named. */
    if (s->backing_name_offset) {
        if (s->backing_name_len > QCOW2_MAX_BACKING_NAME ||
            s->backing_name_len > s->cluster_size - s->backing_name_offset)
            return bad_q("Backing file name too long");
        if (s->backing_name_offset + s->backing_name_len > len)
            return bad(s, "the backing file name at offset %" PRIu64 " (%" PRIu32
                       " bytes) lies outside the first cluster", s->backing_name_offset,
                       s->backing_name_len);
        if (s->backing_name_offset < s->header_length)
            return bad(s, "the backing file name at offset %" PRIu64 " overlaps the header",
                       s->backing_name_offset);
    }
    int r = parse_extensions(s, buf, len);
    if (r < 0)
        return r;
    uint64_t unknown = s->incompat & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        /* QEMU's words: the names the image's feature table gives them (in
         * its order, up to an entry without a name), then the rest as a
         * mask. */
        char names[1024] = "";
        size_t n = 0;
        for (unsigned i = 0; i < s->nfeatures && s->features[i].name[0]; i++) {
            const struct qcow2_feature *f = &s->features[i];
            if (f->type != 0 || f->bit >= 64 || !(unknown & (1ull << f->bit)))
                continue;
            if (n < sizeof names)
                n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "",
                                      f->name);
            unknown &= ~(1ull << f->bit);
        }
        if (unknown && n < sizeof names)
            snprintf(names + n, sizeof names - n, "%sUnknown incompatible feature: %" PRIx64,
                     n ? ", " : "", unknown);
        return err_set(-ENOTSUP, "Unsupported qcow2 feature(s): %s", names);
    }
    /* The external data file (incompatible bit 2) is opened by qcow2.c;
     * raw data (autoclear bit 1) needs one, as QEMU has it. */
    if ((s->autoclear & QCOW2_AUTOCLEAR_RAW_DATA) && !(s->incompat & QCOW2_INCOMPAT_DATA_FILE))
        return err_set(-EINVAL, "data-file-raw requires a data file");
    s->data_raw = (s->autoclear & QCOW2_AUTOCLEAR_RAW_DATA) != 0;
    /* crypt_method and the encryption header: qcow2_crypto_open(). */
    if (s->incompat & QCOW2_INCOMPAT_COMPRESSION) {
        if (s->header_length <= 104 || s->compression_type != QCOW2_COMPRESS_ZSTD)
            return bad(s, "unknown compression type %u", s->compression_type);
    } else if (s->compression_type != QCOW2_COMPRESS_ZLIB) {
        return bad(s, "compression type %u without the compression type feature bit",
                   s->compression_type);
    }
    s->ext_l2 = (s->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
    if (s->ext_l2 && s->cluster_bits < 14)
        return bad(s, "extended L2 entries need clusters of at least 16 KiB (cluster_bits %"
                   PRIu32 ")", s->cluster_bits);

    /* Geometry. */
    s->l2_entry_bytes = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_entries = 1ull << s->l2_bits;
    s->sc_size = s->ext_l2 ? s->cluster_size / QCOW2_SUBCLUSTERS : s->cluster_size;
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->rb_entries = 1ull << s->rb_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;

    /* The tables, in QEMU's order: the refcount table, the snapshot table,
     * the L1 table, then whether the L1 table covers the virtual size. */
    if (s->reft_clusters == 0)
        return bad_q("Image does not contain a reference count table");
    r = check_table(s, "the refcount table", "Reference count table", s->reft_offset,
                    (uint64_t)s->reft_clusters * (s->cluster_size / 8), 8,
                    QCOW2_MAX_REFTABLE_BYTES, file_size);
    if (r < 0)
        return r;
    if (!s->table_unread) { /* (a check reads it itself) */
        r = check_table(s, "the snapshot table", "Snapshot table", s->snapshots_offset,
                        s->nb_snapshots, 40, 40 * QCOW2_MAX_SNAPSHOTS, file_size);
        if (r < 0)
            return r;
    }
    r = check_table(s, "the L1 table", "Active L1 table", s->l1_offset, s->l1_size, 8,
                    QCOW2_MAX_L1_BYTES, file_size);
    if (r < 0)
        return r;
    if (s->size > (uint64_t)INT64_MAX)
        return bad(s, "virtual size %" PRIu64 " is too large", s->size);
    uint64_t l2_span = 1ull << (s->cluster_bits + s->l2_bits);
    uint64_t need = s->size / l2_span + (s->size % l2_span != 0);
    if (need > INT32_MAX)
        return bad_q("Image is too big");
    if (need > s->l1_size)
        return bad_q("L1 table is too small");
    /* The L1 table and the refcount table must not overlap. */
    uint64_t l1_end = s->l1_offset + (uint64_t)s->l1_size * 8;
    uint64_t rt_end = s->reft_offset + (uint64_t)s->reft_clusters * s->cluster_size;
    if (s->l1_size && s->l1_offset < rt_end && s->reft_offset < l1_end)
        return bad(s, "the L1 table (0x%" PRIx64 ") overlaps the refcount table (0x%" PRIx64
                   ")", s->l1_offset, s->reft_offset);

    if (s->backing_name_offset) {
        s->backing_name = strndup((const char *)buf + s->backing_name_offset,
                                  s->backing_name_len);
        if (!s->backing_name)
            return err_set(-ENOMEM, "out of memory");
        if (strlen(s->backing_name) != s->backing_name_len)
            return bad(s, "the backing file name contains a NUL byte");
    }
    return 0;
}

/* Appends a header extension at *pos; false when it does not fit. */
static bool put_ext(uint8_t *buf, size_t len, size_t *pos, uint32_t type, const void *data,
                    uint32_t dlen)
{
    size_t padded = ((size_t)dlen + 7) / 8 * 8;
    if (*pos + 8 + padded > len)
        return false;
    be32_store(buf + *pos, type);
    be32_store(buf + *pos + 4, dlen);
    memset(buf + *pos + 8, 0, padded);
    if (dlen)
        memcpy(buf + *pos + 8, data, dlen);
    *pos += 8 + padded;
    return true;
}

int qcow2_build_header(const struct qcow2 *s, uint8_t *buf, size_t len)
{
    if (s->nb_bitmaps && s->version < 3)
        return err_set(-ENOTSUP, "%s: a version 2 header would lose the image's bitmaps",
                       s->dev ? s->dev->filename : "qcow2");
    memset(buf, 0, len);
    be32_store(buf, QCOW2_MAGIC);
    be32_store(buf + 4, s->version);
    be32_store(buf + 20, s->cluster_bits);
    be64_store(buf + 24, s->size);
    be32_store(buf + 32, s->crypt_method);
    be32_store(buf + 36, s->l1_size);
    be64_store(buf + 40, s->l1_offset);
    be64_store(buf + 48, s->reft_offset);
    be32_store(buf + 56, s->reft_clusters);
    be32_store(buf + 60, s->table_unread ? s->table_unread_nb : s->nb_snapshots);
    be64_store(buf + 64, s->table_unread ? s->table_unread_offset : s->snapshots_offset);
    size_t pos = QCOW2_V2_HEADER_LENGTH;
    if (s->version >= 3) {
        uint32_t hlen = s->header_length < 112 ? 112 : s->header_length;
        be64_store(buf + 72, s->incompat);
        be64_store(buf + 80, s->compat);
        be64_store(buf + 88, s->autoclear);
        be32_store(buf + 96, s->refcount_order);
        be32_store(buf + 100, hlen);
        buf[104] = s->compression_type;
        pos = hlen;
    }
    bool ok = true;
    if (s->backing_fmt)
        ok = put_ext(buf, len, &pos, QCOW2_EXT_BACKING_FMT, s->backing_fmt,
                     (uint32_t)strlen(s->backing_fmt));
    if (ok && s->data_file_name && s->version >= 3)
        ok = put_ext(buf, len, &pos, QCOW2_EXT_DATA_FILE, s->data_file_name,
                     (uint32_t)strlen(s->data_file_name));
    if (ok && s->crypto_offset && s->crypto_offset != UINT64_MAX) {
        /* The encryption header pointer, after the backing format and the
         * data file's name (QEMU's order). */
        uint8_t ce[16];
        be64_store(ce, s->crypto_offset);
        be64_store(ce + 8, s->crypto_length);
        ok = put_ext(buf, len, &pos, QCOW2_EXT_CRYPTO, ce, sizeof ce);
    }
    /* The feature name table, as QEMU writes it: with version 3 and
     * clusters larger than 4 KiB only (QEMU leaves it out of smaller ones,
     * to keep room for a backing file name), and here also only where it
     * fits with the rest. */
    size_t rest = 8 /* end */ + (s->backing_name ? strlen(s->backing_name) : 0);
    for (unsigned i = 0; i < s->nexts; i++)
        rest += 8 + ((s->exts[i].len + 7u) & ~7u);
    if (s->nb_bitmaps)
        rest += 8 + QCOW2_BITMAPS_EXT_LENGTH;
    if (ok && s->version >= 3 && s->cluster_bits > 12 && pos + 8 + NKNOWN * 48 + rest <= len) {
        uint8_t table[NKNOWN * 48];
        memset(table, 0, sizeof table);
        for (unsigned i = 0; i < NKNOWN; i++) {
            table[i * 48] = known_features[i].type;
            table[i * 48 + 1] = known_features[i].bit;
            memcpy(table + i * 48 + 2, known_features[i].name, strlen(known_features[i].name));
        }
        ok = put_ext(buf, len, &pos, QCOW2_EXT_FEATURES, table, sizeof table);
    }
    if (ok && s->nb_bitmaps) {
        uint8_t ext[QCOW2_BITMAPS_EXT_LENGTH];
        qcow2_bitmaps_ext(s, ext);
        ok = put_ext(buf, len, &pos, QCOW2_EXT_BITMAPS, ext, sizeof ext);
    }
    /* Unknown extensions kept, after the known ones (QEMU's order). */
    for (unsigned i = 0; ok && i < s->nexts; i++)
        ok = put_ext(buf, len, &pos, s->exts[i].type, s->exts[i].data, s->exts[i].len);
    if (ok)
        ok = put_ext(buf, len, &pos, QCOW2_EXT_END, NULL, 0);
    if (!ok)
        return err_set(-ENOSPC, "%s: the header extensions do not fit in one cluster",
                       s->dev ? s->dev->filename : "qcow2");
    if (s->backing_name) {
        size_t bl = strlen(s->backing_name);
        if (bl > QCOW2_MAX_BACKING_NAME || pos + bl > len)
            return err_set(-ENOSPC, "the backing file name does not fit in the header");
        memcpy(buf + pos, s->backing_name, bl);
        be64_store(buf + 8, pos);
        be32_store(buf + 16, (uint32_t)bl);
    }
    return 0;
}

int qcow2_write_header(struct qcow2 *s)
{
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    int r = qcow2_build_header(s, buf, s->cluster_size);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0)
        r = dev_pwrite(s->file, buf, s->cluster_size, 0);
    if (r == 0)
        r = dev_flush(s->file);
    free(buf);
    return r;
}

int qcow2_set_incompat(struct qcow2 *s, uint64_t bits, bool on)
{
    if (s->version < 3)
        return 0;
    uint64_t v = on ? s->incompat | bits : s->incompat & ~bits;
    if (v == s->incompat)
        return 0;
    uint8_t b[8];
    be64_store(b, v);
    int r = dev_flush(s->file);
    if (r == 0)
        r = dev_pwrite(s->file, b, 8, 72);
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0)
        s->incompat = v;
    return r;
}
