/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/qcow2.c (CTest unit-qcow2): the qcow2 driver through the public
 * library alone, with no qemu-img or qemu-io: create (the header and the
 * tables read back from the file's bytes against the qcow2 specification,
 * the options refused), preallocation, reads and writes at any offset and
 * length across clusters, subclusters and L2 tables, backing files and copy
 * on write, discard and write zeroes (version 2 and 3), lazy refcounts and
 * crash copies, compressed clusters (zlib and zstd, decompressed from the
 * file's bytes with zlib and libzstd), internal snapshots, vdisk_check on
 * clean and deliberately damaged images with repair, the corrupt mark, and
 * resize.
 *
 * What QEMU's own view of an image is stays in tests/interop/: this program
 * runs where qemu-utils is not installed (CI runs it once with qemu-img
 * hidden from the PATH), and so never starts a qemu program.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define KiB UINT64_C(1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

/* Bits of L1 and L2 entries (the qcow2 specification). */
#define OFLAG_COPIED     (UINT64_C(1) << 63)
#define OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define OFLAG_ZERO       UINT64_C(1)
#define OFFSET_MASK      UINT64_C(0x00fffffffffffe00)

/* ---- Files ----------------------------------------------------------------- */


static void file_put(const char *path, uint64_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static uint64_t get_be(const char *path, uint64_t off, unsigned bytes)
{
    uint8_t *b = read_file_at(path, off, bytes);
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v = v << 8 | b[i];
    free(b);
    return v;
}

static void put_be(const char *path, uint64_t off, unsigned bytes, uint64_t v)
{
    uint8_t b[8];
    for (unsigned i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    file_put(path, off, b, bytes);
}

#define be16(p, o) get_be(p, o, 2)
#define be32(p, o) get_be(p, o, 4)
#define be64(p, o) get_be(p, o, 8)

/* ---- Devices --------------------------------------------------------------- */

static vdisk_options *opts_of(const char *list)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (list && *list)
        ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s: %s", list, vdisk_get_error());
    return o;
}

static void create_img(const char *path, uint64_t size, const char *list)
{
    vdisk_options *o = opts_of(list);
    int r = vdisk_create(path, "qcow2", size, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "create %s (%s): %s", path, list ? list : "", vdisk_get_error());
}

static vdisk_dev *open_img(const char *path, const char *list)
{
    vdisk_options *o = opts_of(list);
    ck_assert_int_eq(vdisk_options_set(o, "format", "qcow2"), 0);
    vdisk_dev *dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "open %s (%s): %s", path, list ? list : "", vdisk_get_error());
    ck_assert_str_eq(vdisk_get_format(dev), "qcow2");
    return dev;
}

static void dev_write(vdisk_dev *dev, const void *buf, size_t len, uint64_t off)
{
    int r = vdisk_pwrite(dev, buf, len, off);
    ck_assert_msg(r == 0, "write %zu at %" PRIu64 ": %d %s", len, off, r, vdisk_get_error());
}

static void dev_read(vdisk_dev *dev, void *buf, size_t len, uint64_t off)
{
    int r = vdisk_pread(dev, buf, len, off);
    ck_assert_msg(r == 0, "read %zu at %" PRIu64 ": %d %s", len, off, r, vdisk_get_error());
}

/* Asserts that LEN bytes at OFF of DEV are EXPECT. */
static void expect_dev(vdisk_dev *dev, uint64_t off, const uint8_t *expect, size_t len,
                       const char *what)
{
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0xa5, len);
    dev_read(dev, buf, len, off);
    assert_same_bytes(buf, expect, len, off, what);
    free(buf);
}

static void expect_zero(vdisk_dev *dev, uint64_t off, size_t len, const char *what)
{
    uint8_t *z = calloc(1, len);
    expect_dev(dev, off, z, len, what);
    free(z);
}

/* Bytes that compress well: short lines of text. */
static void fill_text(uint8_t *buf, size_t len, unsigned seed)
{
    size_t i = 0;
    unsigned n = seed;
    while (i < len) {
        char line[64];
        int k = snprintf(line, sizeof line, "line %u of the qcow2 unit test\n", n++);
        for (int j = 0; j < k && i < len; j++)
            buf[i++] = (uint8_t)line[j];
    }
}

/* ---- The image's metadata, read from its bytes ------------------------------ */

struct layout {
    uint32_t version, cluster_bits, l1_size, reft_clusters, refcount_order;
    uint32_t nb_snapshots;
    uint64_t cs, size, l1_off, reft_off, incompat, snapshots_off;
    bool extl2;
};

static struct layout layout_of(const char *path)
{
    struct layout l = {0};
    ck_assert_uint_eq(be32(path, 0), 0x514649fb);
    l.version = (uint32_t)be32(path, 4);
    l.cluster_bits = (uint32_t)be32(path, 20);
    l.cs = 1ull << l.cluster_bits;
    l.size = be64(path, 24);
    l.l1_size = (uint32_t)be32(path, 36);
    l.l1_off = be64(path, 40);
    l.reft_off = be64(path, 48);
    l.reft_clusters = (uint32_t)be32(path, 56);
    l.nb_snapshots = (uint32_t)be32(path, 60);
    l.snapshots_off = be64(path, 64);
    l.refcount_order = 4;
    if (l.version >= 3) {
        l.incompat = be64(path, 72);
        l.refcount_order = (uint32_t)be32(path, 96);
        l.extl2 = (l.incompat & 0x10) != 0;
    }
    return l;
}

static unsigned l2_entry_bytes(const struct layout *l)
{
    return l->extl2 ? 16 : 8;
}

static uint64_t l2_span(const struct layout *l)
{
    return l->cs / l2_entry_bytes(l) * l->cs;
}

/* The offset in the file of the L2 entry of guest offset OFF, or 0 when
 * its L2 table is not allocated. */
static uint64_t l2_entry_pos(const char *path, const struct layout *l, uint64_t off)
{
    uint64_t span = l2_span(l);
    ck_assert_uint_lt(off / span, l->l1_size);
    uint64_t l1e = be64(path, l->l1_off + 8 * (off / span));
    uint64_t l2 = l1e & OFFSET_MASK;
    if (!l2)
        return 0;
    return l2 + (off % span) / l->cs * l2_entry_bytes(l);
}

/* The L2 entry of guest offset OFF (0 when there is no L2 table). */
static uint64_t l2_entry(const char *path, const struct layout *l, uint64_t off)
{
    uint64_t pos = l2_entry_pos(path, l, off);
    return pos ? be64(path, pos) : 0;
}

/* The host cluster of a standard (uncompressed) L2 entry. */
static uint64_t host_of(const char *path, const struct layout *l, uint64_t off)
{
    uint64_t e = l2_entry(path, l, off);
    ck_assert_msg(!(e & OFLAG_COMPRESSED), "guest offset %" PRIu64 " is compressed", off);
    return e & OFFSET_MASK;
}

/* Where the refcount of host cluster C lies: the refcount block's offset,
 * or 0 when it has none. */
static uint64_t refblock_of(const char *path, const struct layout *l, uint64_t c)
{
    uint64_t per_block = l->cs * 8 >> l->refcount_order;
    uint64_t i = c / per_block;
    if (i >= l->reft_clusters * l->cs / 8)
        return 0;
    return be64(path, l->reft_off + 8 * i) & OFFSET_MASK;
}

/* The refcount of host cluster C, read from the refcount block. */
static uint64_t refcount(const char *path, const struct layout *l, uint64_t c)
{
    uint64_t per_block = l->cs * 8 >> l->refcount_order;
    uint64_t rb = refblock_of(path, l, c);
    if (!rb)
        return 0;
    uint64_t i = c % per_block;
    unsigned bits = 1u << l->refcount_order;
    if (bits >= 8)
        return get_be(path, rb + i * bits / 8, bits / 8);
    /* Narrower entries are packed from the lowest bit of each byte. */
    uint64_t byte = get_be(path, rb + i * bits / 8, 1);
    return byte >> (i * bits % 8) & ((1u << bits) - 1);
}

static void set_refcount(const char *path, const struct layout *l, uint64_t c, uint64_t v)
{
    uint64_t per_block = l->cs * 8 >> l->refcount_order;
    uint64_t rb = refblock_of(path, l, c);
    ck_assert_uint_ne(rb, 0);
    unsigned bits = 1u << l->refcount_order;
    ck_assert_uint_ge(bits, 8);
    put_be(path, rb + c % per_block * bits / 8, bits / 8, v);
}

/* ---- Checks ------------------------------------------------------------------ */

struct lines {
    char text[8192];
};

static void collect(void *opaque, const char *line)
{
    struct lines *ls = opaque;
    size_t n = strlen(ls->text);
    snprintf(ls->text + n, sizeof ls->text - n, "%s\n", line);
}

static struct vdisk_check_result check_dev(vdisk_dev *dev, unsigned flags, struct lines *ls)
{
    struct vdisk_check_result res = {.struct_size = sizeof res};
    struct lines mine;
    if (!ls)
        ls = &mine;
    ls->text[0] = 0;
    int r = vdisk_check(dev, flags, &res, collect, ls);
    ck_assert_msg(r == 0, "check: %d %s", r, vdisk_get_error());
    return res;
}

/* Asserts that the image at PATH checks clean: no corruption, no leak, no
 * line of report; returns the result. */
static struct vdisk_check_result expect_clean(const char *path)
{
    vdisk_dev *dev = open_img(path, "read-only=on");
    struct lines ls;
    struct vdisk_check_result res = check_dev(dev, 0, &ls);
    vdisk_close(dev);
    ck_assert_msg(res.corruptions == 0 && res.leaks == 0 && res.check_errors == 0 &&
                  ls.text[0] == 0,
                  "%s: %" PRId64 " corruptions, %" PRId64 " leaks, %" PRId64
                  " check errors:\n%s", path, res.corruptions, res.leaks, res.check_errors,
                  ls.text);
    return res;
}

/* ---- Create ------------------------------------------------------------------ */

/* What qemu-img 7.2 writes for each set of options (the layout of
 * "qemu-img create -f qcow2 -o OPTS FILE SIZE"): the header in cluster 0,
 * the refcount table in cluster 1, its one refcount block in cluster 2, the
 * L1 table from cluster 3. */
static const struct create_case {
    const char *opts;
    uint64_t size;          /* asked for */
    uint32_t version, cluster_bits, refcount_order, l1_size;
    uint64_t incompat, compat;
    uint8_t compression_type;
} create_cases[] = {
    {"", 64 * MiB, 3, 16, 4, 1, 0, 0, 0},
    {"cluster_size=512", 64 * MiB, 3, 9, 4, 2048, 0, 0, 0},
    {"cluster_size=512,refcount_bits=64", 64 * MiB, 3, 9, 6, 2048, 0, 0, 0},
    {"cluster_size=4k,refcount_bits=1", 1 * GiB, 3, 12, 0, 512, 0, 0, 0},
    {"cluster_size=4096,refcount_bits=2", 1 * GiB, 3, 12, 1, 512, 0, 0, 0},
    {"cluster_size=16k,refcount_bits=8", 1 * GiB, 3, 14, 3, 32, 0, 0, 0},
    {"cluster_size=32768,refcount_bits=32", 1 * GiB, 3, 15, 5, 8, 0, 0, 0},
    {"cluster_size=2M", 10 * GiB, 3, 21, 4, 1, 0, 0, 0},
    {"cluster_size=64k,extended_l2=on", 3 * GiB, 3, 16, 4, 12, 0x10, 0, 0},
    {"cluster_size=16k,extended_l2=on", 100 * MiB, 3, 14, 4, 7, 0x10, 0, 0},
    {"compat=0.10", 1 * GiB, 2, 16, 4, 2, 0, 0, 0},
    {"compat=v2,cluster_size=4k", 1 * GiB + 512, 2, 12, 4, 513, 0, 0, 0},
    {"compression_type=zstd", 1 * MiB, 3, 16, 4, 1, 0x8, 0, 1},
    {"compression_type=zlib", 1 * MiB, 3, 16, 4, 1, 0, 0, 0},
    {"lazy_refcounts=on", 1 * MiB, 3, 16, 4, 1, 0, 1, 0},
    {"", 1000000, 3, 16, 4, 1, 0, 0, 0},
};

START_TEST(create_header)
{
    const struct create_case *c = &create_cases[_i];
    const char *path = scratch(fmt("create-%d.qcow2", _i));
    create_img(path, c->size, c->opts);
    const char *what = c->opts;
    uint64_t cs = 1ull << c->cluster_bits;
    uint64_t size = (c->size + 511) / 512 * 512;

    ck_assert_msg(be32(path, 0) == 0x514649fb, "%s: magic", what);
    ck_assert_msg(be32(path, 4) == c->version, "%s: version", what);
    ck_assert_msg(be64(path, 8) == 0 && be32(path, 16) == 0, "%s: backing file", what);
    ck_assert_msg(be32(path, 20) == c->cluster_bits, "%s: cluster_bits", what);
    ck_assert_msg(be64(path, 24) == size, "%s: size %" PRIu64, what, be64(path, 24));
    ck_assert_msg(be32(path, 32) == 0, "%s: crypt_method", what);
    ck_assert_msg(be32(path, 36) == c->l1_size, "%s: l1_size %" PRIu64, what, be32(path, 36));
    ck_assert_msg(be64(path, 40) == 3 * cs, "%s: l1_table_offset %" PRIu64, what,
                  be64(path, 40));
    ck_assert_msg(be64(path, 48) == cs, "%s: refcount_table_offset", what);
    ck_assert_msg(be32(path, 56) == 1, "%s: refcount_table_clusters", what);
    ck_assert_msg(be32(path, 60) == 0 && be64(path, 64) == 0, "%s: snapshots", what);
    if (c->version >= 3) {
        ck_assert_msg(be64(path, 72) == c->incompat, "%s: incompatible_features %#" PRIx64,
                      what, be64(path, 72));
        ck_assert_msg(be64(path, 80) == c->compat, "%s: compatible_features", what);
        ck_assert_msg(be64(path, 88) == 0, "%s: autoclear_features", what);
        ck_assert_msg(be32(path, 96) == c->refcount_order, "%s: refcount_order", what);
        ck_assert_msg(be32(path, 100) == 112, "%s: header_length %" PRIu64, what,
                      be32(path, 100));
        ck_assert_msg(get_be(path, 104, 1) == c->compression_type, "%s: compression_type",
                      what);
    }
    /* The refcount table names the one refcount block, in cluster 2. */
    ck_assert_msg(be64(path, cs) == 2 * cs, "%s: refcount table entry 0", what);
    uint8_t *rest = read_file_at(path, cs + 8, cs - 8);
    uint8_t *zero = calloc(1, cs);
    assert_same_bytes(rest, zero, cs - 8, cs + 8, "the rest of the refcount table");
    free(rest);
    /* The L1 table is empty. */
    uint8_t *l1 = read_file_at(path, 3 * cs, (size_t)c->l1_size * 8);
    uint8_t *z1 = calloc(1, (size_t)c->l1_size * 8);
    assert_same_bytes(l1, z1, (size_t)c->l1_size * 8, 3 * cs, "the L1 table");
    free(l1);
    free(z1);
    /* Exactly the metadata clusters have refcount 1: the header, the
     * refcount table and block and the L1 table. */
    struct layout l = layout_of(path);
    uint64_t l1_clusters = ((uint64_t)c->l1_size * 8 + cs - 1) / cs;
    uint64_t used = 3 + l1_clusters;
    for (uint64_t k = 0; k < used + 8; k++)
        ck_assert_msg(refcount(path, &l, k) == (k < used), "%s: refcount of cluster %" PRIu64
                      " is %" PRIu64, what, k, refcount(path, &l, k));
    ck_assert_msg(file_size(path) >= 3 * cs + (uint64_t)c->l1_size * 8, "%s: file size", what);
    free(zero);

    /* The library opens it, sees its size, reads zeroes and finds it clean. */
    vdisk_dev *dev = open_img(path, "read-only=on");
    ck_assert_uint_eq(vdisk_get_size(dev), size);
    expect_zero(dev, 0, 4096, "a new image");
    expect_zero(dev, size - 512, 512, "the end of a new image");
    struct lines ls;
    struct vdisk_check_result res = check_dev(dev, 0, &ls);
    vdisk_close(dev);
    ck_assert_str_eq(ls.text, "");
    ck_assert_int_eq(res.corruptions, 0);
    ck_assert_int_eq(res.leaks, 0);
    ck_assert_uint_eq(res.allocated_clusters, 0);
    ck_assert_uint_eq(res.total_clusters, (size + cs - 1) / cs);
    ck_assert_uint_eq(res.image_end_offset, used * cs);
}
END_TEST

/* Options that qemu-img refuses are refused before the file is made. */
START_TEST(create_refused)
{
    static const char *const bad[] = {
        "cluster_size=256", "cluster_size=4M", "cluster_size=3000", "refcount_bits=3",
        "refcount_bits=128", "compat=0.10,refcount_bits=8", "compat=0.10,lazy_refcounts=on",
        "compat=0.10,extended_l2=on", "compat=0.10,compression_type=zstd",
        "cluster_size=8k,extended_l2=on", "compression_type=lz4", "compat=2.0",
        "preallocation=sparse", "backing_fmt=raw", "encrypt.format=luks",
        "backing_file=x,preallocation=metadata",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *path = scratch(fmt("refused-%zu.qcow2", i));
        vdisk_options *o = opts_of(bad[i]);
        int r = vdisk_create(path, "qcow2", 1 * MiB, o);
        vdisk_options_free(o);
        ck_assert_msg(r == -EINVAL, "%s: %d", bad[i], r);
        ck_assert_msg(access(path, F_OK) != 0, "%s: the file was made", bad[i]);
    }
}
END_TEST

/* A refcount structure that needs several refcount blocks: 512-byte
 * clusters with 64-bit refcounts (64 per block) and an L1 table of 512
 * clusters.  Every metadata cluster is counted once and nothing else is,
 * and the clusters are where qemu-img 7.2 puts them (interop-qcow2 compares
 * whole files with qemu-img's): its allocator places the L1 table first,
 * right after the first refcount block (clusters 3 to 514), and only then
 * makes the blocks that count it, each in the first free cluster: block 1
 * wanted 515, which block 8 (516, describing itself) had to count first;
 * the search then went on from 517 for blocks 2 to 7.  The file ends with
 * the last block. */
START_TEST(create_many_refblocks)
{
    const char *path = scratch("many-rb.qcow2");
    create_img(path, 1 * GiB, "cluster_size=512,refcount_bits=64");
    struct layout l = layout_of(path);
    ck_assert_uint_eq(l.l1_size, 32768);
    ck_assert_uint_eq(l.l1_off, 3 * 512);
    ck_assert_uint_eq(l.reft_off, 512);
    ck_assert_uint_eq(l.reft_clusters, 1);
    static const uint64_t blocks_at[] = {2, 515, 517, 518, 519, 520, 521, 522, 516, 0};
    for (size_t i = 0; i < sizeof blocks_at / sizeof *blocks_at; i++)
        ck_assert_uint_eq(be64(path, 512 + 8 * i), blocks_at[i] * 512);
    ck_assert_uint_eq(file_size(path), 523 * 512);
    uint64_t nclusters = file_size(path) / 512;
    uint8_t *mark = calloc(1, nclusters + 64);
    mark[0] = 1;
    for (uint64_t k = 0; k < l.reft_clusters; k++)
        mark[l.reft_off / 512 + k]++;
    for (uint64_t k = 0; k < 32768 * 8 / 512; k++)
        mark[l.l1_off / 512 + k]++;
    uint64_t blocks = 0;
    for (uint64_t i = 0; i < l.reft_clusters * 512 / 8; i++) {
        uint64_t rb = be64(path, l.reft_off + 8 * i);
        if (!rb)
            continue;
        ck_assert_uint_eq(rb % 512, 0);
        ck_assert_uint_lt(rb / 512, nclusters);
        mark[rb / 512]++;
        blocks++;
    }
    ck_assert_uint_ge(blocks, (nclusters + 63) / 64);
    for (uint64_t k = 0; k < nclusters + 64; k++)
        ck_assert_msg(refcount(path, &l, k) == mark[k], "refcount of cluster %" PRIu64
                      " is %" PRIu64 ", %u references", k, refcount(path, &l, k), mark[k]);
    free(mark);
    expect_clean(path);
}
END_TEST

/* ---- Reads and writes -------------------------------------------------------- */

/* An image and a model of some windows of it (the rest reads zeroes). */
struct window {
    uint64_t base, len;
    uint8_t *model;
};

static const struct rw_case {
    const char *opts;
    uint64_t size;
    uint64_t windows[3]; /* bases of 3 windows of 16 clusters; the second
                            starts 8 clusters before the end of an L2 table */
} rw_cases[] = {
    {"cluster_size=512", 1 * MiB, {0, 3 * 32 * KiB - 4 * KiB, 1 * MiB - 8 * KiB}},
    {"cluster_size=4k,refcount_bits=8", 16 * MiB, {0, 2 * MiB - 32 * KiB, 12 * MiB}},
    {"cluster_size=64k", 2 * GiB, {0, 512 * MiB - 512 * KiB, 2 * GiB - 1 * MiB}},
    {"cluster_size=16k,extended_l2=on", 64 * MiB, {0, 16 * MiB - 128 * KiB, 40 * MiB}},
    {"compat=0.10,cluster_size=1k", 4 * MiB, {0, 128 * KiB - 8 * KiB, 3 * MiB}},
};

static void rw_op(vdisk_dev *dev, struct window *w, uint64_t off, size_t len, uint64_t *seed)
{
    ck_assert_uint_le(off + len, w->len);
    fill_random(w->model + off, len, seed);
    dev_write(dev, w->model + off, len, w->base + off);
}

static void rw_verify(vdisk_dev *dev, struct window *ws, int n, uint64_t size, const char *what)
{
    for (int i = 0; i < n; i++)
        expect_dev(dev, ws[i].base, ws[i].model, ws[i].len, what);
    /* Between and after the windows: zeroes. */
    if (ws[0].base + ws[0].len < ws[1].base)
        expect_zero(dev, ws[0].base + ws[0].len, 4096, what);
    if (ws[n - 1].base + ws[n - 1].len < size)
        expect_zero(dev, size - 512, 512, what);
}

START_TEST(read_write)
{
    const struct rw_case *c = &rw_cases[_i];
    const char *path = scratch(fmt("rw-%d.qcow2", _i));
    create_img(path, c->size, c->opts);
    struct layout l = layout_of(path);
    uint64_t cs = l.cs;
    struct window ws[3];
    for (int i = 0; i < 3; i++) {
        ws[i].base = c->windows[i];
        ws[i].len = 16 * cs;
        ck_assert_uint_le(ws[i].base + ws[i].len, c->size);
        ws[i].model = calloc(1, ws[i].len);
    }
    vdisk_dev *dev = open_img(path, NULL);
    uint64_t seed = 17 + (uint64_t)_i;
    /* Reads of a new image: zeroes. */
    rw_verify(dev, ws, 3, c->size, "a new image");

    /* Edge cases in the first window: single bytes, sector and cluster
     * edges, a write over three clusters. */
    struct window *w = &ws[0];
    rw_op(dev, w, 0, 1, &seed);
    rw_op(dev, w, 1, 511, &seed);
    rw_op(dev, w, 511, 2, &seed);
    rw_op(dev, w, cs - 1, 2, &seed);
    rw_op(dev, w, 2 * cs - 100, cs + 200, &seed);
    rw_op(dev, w, 5 * cs + 7, 3 * cs + 1, &seed);
    rw_op(dev, w, 10 * cs, cs, &seed);
    rw_op(dev, w, 12 * cs + 513, 1, &seed);
    /* Across the boundary between two L2 tables in the second window
     * (which starts 4 clusters before one for the tables above). */
    w = &ws[1];
    uint64_t span = l2_span(&l);
    uint64_t edge = (w->base + span - 1) / span * span - w->base;
    ck_assert_uint_eq(edge, 8 * cs);
    rw_op(dev, w, edge - 3, 6, &seed);
    rw_op(dev, w, edge - cs / 2 - 3, cs + 9, &seed);
    rw_op(dev, w, edge + cs, 1, &seed);
    /* Then random requests in every window, reads among them. */
    for (int k = 0; k < 300; k++) {
        w = &ws[rng_next(&seed) % 3];
        uint64_t len = 1 + rng_next(&seed) % (3 * cs);
        if (len > w->len)
            len = w->len;
        uint64_t off = rng_next(&seed) % (w->len - len + 1);
        if (rng_next(&seed) % 4 == 0)
            off &= ~511ull;
        if (k % 5 == 4) {
            uint8_t *buf = malloc(len);
            dev_read(dev, buf, len, w->base + off);
            assert_same_bytes(buf, w->model + off, len, w->base + off, "a read among writes");
            free(buf);
        } else {
            rw_op(dev, w, off, len, &seed);
        }
    }
    rw_verify(dev, ws, 3, c->size, "after the writes");
    /* Vectored I/O: three pieces of odd lengths. */
    w = &ws[2];
    uint8_t *v = malloc(3 * cs);
    fill_random(v, 3 * cs, &seed);
    struct iovec iov[3] = {{v, 100}, {v + 100, cs}, {v + 100 + cs, 2 * cs - 100 - 1}};
    ck_assert_int_eq(vdisk_pwritev(dev, iov, 3, w->base + 3 * cs + 1), 0);
    memcpy(w->model + 3 * cs + 1, v, 3 * cs - 1);
    memset(v, 0, 3 * cs);
    ck_assert_int_eq(vdisk_preadv(dev, iov, 3, w->base + 3 * cs + 1), 0);
    assert_same_bytes(v, w->model + 3 * cs + 1, 3 * cs - 1, w->base + 3 * cs + 1, "readv");
    free(v);
    /* Beyond the end: refused as a whole. */
    uint8_t two[2];
    ck_assert_int_eq(vdisk_pread(dev, two, 2, c->size - 1), -EIO);
    ck_assert_int_eq(vdisk_pwrite(dev, two, 2, c->size - 1), -EIO);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    vdisk_close(dev);

    /* Every write reached the file: a new open reads the same, and each
     * written cluster's bytes lie in the file where its L2 entry says. */
    dev = open_img(path, "read-only=on");
    rw_verify(dev, ws, 3, c->size, "after a reopen");
    vdisk_close(dev);
    w = &ws[0];
    uint64_t e = l2_entry(path, &l, 10 * cs);
    ck_assert_msg(e & OFLAG_COPIED, "COPIED: %#" PRIx64, e);
    uint8_t *bytes = read_file_at(path, e & OFFSET_MASK, cs);
    assert_same_bytes(bytes, w->model + 10 * cs, cs, e & OFFSET_MASK, "the file's cluster");
    free(bytes);
    if (l.extl2) {
        /* The cluster is allocated in all 32 subclusters. */
        ck_assert_uint_eq(be64(path, l2_entry_pos(path, &l, 10 * cs) + 8), 0xffffffffu);
    }
    for (int i = 0; i < 3; i++)
        free(ws[i].model);
    expect_clean(path);
}
END_TEST

/* Subclusters: a write fills only the subclusters it touches; the others
 * stay unallocated and read zeroes. */
START_TEST(subclusters)
{
    const char *path = scratch("subclusters.qcow2");
    create_img(path, 4 * MiB, "cluster_size=64k,extended_l2=on");
    struct layout l = layout_of(path);
    vdisk_dev *dev = open_img(path, NULL);
    uint8_t buf[3000];
    uint64_t seed = 5;
    fill_random(buf, sizeof buf, &seed);
    /* Subcluster 3 of cluster 1 (2 KiB each), part of it, and subclusters
     * 4 and 5 in part. */
    dev_write(dev, buf, 100, 64 * KiB + 3 * 2048 + 10);
    dev_write(dev, buf + 100, 2900, 64 * KiB + 4 * 2048 + 100);
    vdisk_close(dev);
    uint64_t pos = l2_entry_pos(path, &l, 64 * KiB);
    ck_assert_uint_ne(pos, 0);
    uint64_t e = be64(path, pos), bm = be64(path, pos + 8);
    ck_assert_msg(e & OFLAG_COPIED, "%#" PRIx64, e);
    ck_assert_uint_eq(bm, 0x38);
    uint8_t *want = calloc(1, 64 * KiB);
    memcpy(want + 3 * 2048 + 10, buf, 100);
    memcpy(want + 4 * 2048 + 100, buf + 100, 2900);
    dev = open_img(path, "read-only=on");
    expect_dev(dev, 64 * KiB, want, 64 * KiB, "subclusters");
    struct vdisk_extent ext;
    ck_assert_int_eq(vdisk_block_status(dev, 64 * KiB, 64 * KiB, &ext), 0);
    ck_assert_uint_eq(ext.length, 3 * 2048);
    ck_assert_uint_eq(ext.flags & VDISK_EXT_DATA, 0);
    ck_assert_int_eq(vdisk_block_status(dev, 64 * KiB + 3 * 2048, 64 * KiB, &ext), 0);
    ck_assert_uint_eq(ext.length, 3 * 2048);
    ck_assert_uint_ne(ext.flags & VDISK_EXT_DATA, 0);
    vdisk_close(dev);
    uint8_t *bytes = read_file_at(path, (e & OFFSET_MASK) + 3 * 2048, 3 * 2048);
    assert_same_bytes(bytes, want + 3 * 2048, 3 * 2048, 3 * 2048, "the subclusters' bytes");
    free(bytes);
    free(want);
    expect_clean(path);
}
END_TEST

/* ---- Backing files ------------------------------------------------------------ */

/* An overlay over a raw or a qcow2 backing file: unwritten clusters read the
 * backing file (zeroes past its end); a write into a cluster copies the rest
 * of the cluster from the backing file; the backing file never changes. */
static const char *const cow_bases[] = {"raw", "qcow2"};

START_TEST(backing_cow)
{
    const char *bfmt = cow_bases[_i];
    const uint64_t cs = 64 * KiB, bsize = 6 * cs, osize = 10 * cs;
    char bname[32];
    snprintf(bname, sizeof bname, "cow-base-%d.img", _i);
    const char *base = scratch(bname);
    const char *top = scratch(fmt("cow-top-%d.qcow2", _i));
    uint8_t *bdata = malloc(bsize);
    uint64_t seed = 99;
    fill_random(bdata, bsize, &seed);
    vdisk_options *bo = opts_of("");
    ck_assert_int_eq(vdisk_create(base, bfmt, bsize, bo), 0);
    vdisk_options_free(bo);
    vdisk_dev *dev;
    vdisk_options *oo = opts_of(fmt("format=%s", bfmt));
    ck_assert_int_eq(vdisk_open(&dev, base, oo), 0);
    vdisk_options_free(oo);
    dev_write(dev, bdata, bsize, 0);
    vdisk_close(dev);
    uint8_t *bfile = read_file_at(base, 0, file_size(base));
    uint64_t bfile_len = file_size(base);

    /* The name is stored as given, relative to the overlay's folder. */
    create_img(top, osize, fmt("backing_file=%s,backing_fmt=%s", bname, bfmt));
    struct layout l = layout_of(top);
    uint64_t name_off = be64(top, 8);
    ck_assert_uint_eq(be32(top, 16), strlen(bname));
    uint8_t *name = read_file_at(top, name_off, strlen(bname));
    ck_assert_int_eq(memcmp(name, bname, strlen(bname)), 0);
    free(name);

    uint8_t *model = calloc(1, osize);
    memcpy(model, bdata, bsize);
    dev = open_img(top, NULL);
    expect_dev(dev, 0, model, osize, "an empty overlay");
    /* 512 bytes in the middle of cluster 1; 1 byte at the end of cluster 3
     * and the start of cluster 4; a part of cluster 7, past the backing
     * file's end. */
    uint8_t patch[1024];
    fill_random(patch, sizeof patch, &seed);
    dev_write(dev, patch, 512, cs + 1000);
    memcpy(model + cs + 1000, patch, 512);
    dev_write(dev, patch + 512, 2, 4 * cs - 1);
    memcpy(model + 4 * cs - 1, patch + 512, 2);
    dev_write(dev, patch + 600, 300, 7 * cs + 5);
    memcpy(model + 7 * cs + 5, patch + 600, 300);
    expect_dev(dev, 0, model, osize, "the overlay after writes");
    struct vdisk_extent ext;
    ck_assert_int_eq(vdisk_block_status(dev, 0, osize, &ext), 0);
    ck_assert_uint_eq(ext.length, cs);
    ck_assert_int_eq(ext.depth, 1);
    vdisk_close(dev);

    /* The allocated clusters hold whole copies; the others none. */
    static const int written[] = {1, 3, 4, 7};
    for (int c = 0; c < 10; c++) {
        bool w = false;
        for (int k = 0; k < 4; k++)
            w |= written[k] == c;
        uint64_t host = host_of(top, &l, (uint64_t)c * cs);
        if (!w) {
            ck_assert_msg(host == 0, "cluster %d allocated", c);
            continue;
        }
        ck_assert_msg(host != 0, "cluster %d not allocated", c);
        uint8_t *bytes = read_file_at(top, host, cs);
        assert_same_bytes(bytes, model + (uint64_t)c * cs, cs, (uint64_t)c * cs,
                          "a copied cluster in the file");
        free(bytes);
    }
    uint8_t *after = read_file_at(base, 0, bfile_len);
    ck_assert_uint_eq(file_size(base), bfile_len);
    assert_same_bytes(after, bfile, bfile_len, 0, "the backing file");
    free(after);

    /* Write zeroes over backing data reads zeroes, not the backing file;
     * discarding the whole overlay (make_empty) reads the backing again. */
    dev = open_img(top, NULL);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 2 * cs, cs, 0), 0);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 5 * cs + 100, 200, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 2 * cs, 0, cs);
    memset(model + 5 * cs + 100, 0, 200);
    expect_dev(dev, 0, model, osize, "zeroes over the backing file");
    vdisk_close(dev);
    ck_assert_uint_eq(l2_entry(top, &l, 2 * cs) & OFLAG_ZERO, OFLAG_ZERO);
    expect_clean(top);
    dev = open_img(top, NULL);
    ck_assert_int_eq(vdisk_make_empty(dev), 0);
    memset(model, 0, osize);
    memcpy(model, bdata, bsize);
    expect_dev(dev, 0, model, osize, "an emptied overlay");
    vdisk_close(dev);
    expect_clean(top);
    free(model);
    free(bdata);
    free(bfile);
}
END_TEST

/* With extended L2 entries a write into an overlay copies only the rest of
 * the subclusters it touches; the other subclusters read the backing file. */
START_TEST(backing_subcluster_cow)
{
    const uint64_t cs = 64 * KiB;
    const char *base = scratch("sc-base.raw");
    const char *top = scratch("sc-top.qcow2");
    uint8_t *bdata = malloc(4 * cs);
    uint64_t seed = 7;
    fill_random(bdata, 4 * cs, &seed);
    write_file(base, bdata, 4 * cs);
    create_img(top, 4 * cs, fmt("cluster_size=64k,extended_l2=on,backing_file=%s,"
                                "backing_fmt=raw", base));
    struct layout l = layout_of(top);
    vdisk_dev *dev = open_img(top, NULL);
    uint8_t patch[100];
    fill_random(patch, sizeof patch, &seed);
    dev_write(dev, patch, 100, cs + 3 * 2048 + 10);
    memcpy(bdata + cs + 3 * 2048 + 10, patch, 100);
    expect_dev(dev, 0, bdata, 4 * cs, "the overlay");
    vdisk_close(dev);
    uint64_t pos = l2_entry_pos(top, &l, cs);
    uint64_t e = be64(top, pos);
    ck_assert_uint_eq(be64(top, pos + 8), 1u << 3);
    uint8_t *bytes = read_file_at(top, (e & OFFSET_MASK) + 3 * 2048, 2048);
    assert_same_bytes(bytes, bdata + cs + 3 * 2048, 2048, cs + 3 * 2048, "the subcluster");
    free(bytes);
    free(bdata);
    expect_clean(top);
}
END_TEST

/* ---- Discard and write zeroes -------------------------------------------------- */

START_TEST(discard_zeroes)
{
    const uint64_t cs = 64 * KiB, size = 12 * cs;
    const char *path = scratch("discard.qcow2");
    create_img(path, size, NULL);
    struct layout l = layout_of(path);
    uint8_t *model = malloc(size);
    uint64_t seed = 3;
    fill_random(model, size, &seed);
    vdisk_dev *dev = open_img(path, NULL);
    dev_write(dev, model, size, 0);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    uint64_t host2 = host_of(path, &l, 2 * cs), host4 = host_of(path, &l, 4 * cs);
    uint64_t host6 = host_of(path, &l, 6 * cs);
    ck_assert_uint_eq(refcount(path, &l, host2 / cs), 1);

    /* Whole clusters discarded: unallocated, freed, read zeroes. */
    ck_assert_int_eq(vdisk_discard(dev, 2 * cs, 2 * cs), 0);
    memset(model + 2 * cs, 0, 2 * cs);
    /* Parts of clusters: zeroes in the range, the rest kept. */
    ck_assert_int_eq(vdisk_write_zeroes(dev, 5 * cs + 100, 1000, 0), 0);
    memset(model + 5 * cs + 100, 0, 1000);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 8 * cs - 10, 20, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 8 * cs - 10, 0, 20);
    /* Whole clusters zeroed: cluster 4 keeps its allocation, cluster 6 may
     * be unmapped. */
    ck_assert_int_eq(vdisk_write_zeroes(dev, 4 * cs, cs, 0), 0);
    memset(model + 4 * cs, 0, cs);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 6 * cs, cs, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 6 * cs, 0, cs);
    expect_dev(dev, 0, model, size, "after discards and zeroes");
    struct vdisk_extent ext;
    ck_assert_int_eq(vdisk_block_status(dev, 2 * cs, size, &ext), 0);
    ck_assert_uint_eq(ext.flags & VDISK_EXT_DATA, 0);
    ck_assert_uint_ne(ext.flags & VDISK_EXT_ZERO, 0);
    ck_assert_uint_eq(ext.length, 2 * cs);
    vdisk_close(dev);

    /* As QEMU discards in a version 3 image: the zero flag, no cluster. */
    ck_assert_uint_eq(l2_entry(path, &l, 2 * cs), OFLAG_ZERO);
    ck_assert_uint_eq(l2_entry(path, &l, 3 * cs), OFLAG_ZERO);
    ck_assert_uint_eq(refcount(path, &l, host2 / cs), 0);
    uint64_t e4 = l2_entry(path, &l, 4 * cs);
    ck_assert_msg(e4 == (host4 | OFLAG_COPIED | OFLAG_ZERO), "cluster 4: %#" PRIx64, e4);
    uint64_t e6 = l2_entry(path, &l, 6 * cs);
    ck_assert_msg(e6 == OFLAG_ZERO || e6 == (host6 | OFLAG_COPIED | OFLAG_ZERO),
                  "cluster 6: %#" PRIx64, e6);
    ck_assert_uint_eq(refcount(path, &l, host6 / cs), e6 == OFLAG_ZERO ? 0 : 1);
    dev = open_img(path, "read-only=on");
    expect_dev(dev, 0, model, size, "after a reopen");
    vdisk_close(dev);
    struct vdisk_check_result res = expect_clean(path);
    ck_assert_uint_eq(res.allocated_clusters, e6 == OFLAG_ZERO ? 9 : 10);
    free(model);
}
END_TEST

/* Version 2 has no zero flag: zeroes and discards leave no bit 0 set, and
 * zeroes over a backing file's data are written as zeroes. */
START_TEST(zeroes_v2)
{
    const uint64_t cs = 64 * KiB, size = 6 * cs;
    const char *base = scratch("v2-base.raw");
    const char *path = scratch("v2.qcow2");
    uint8_t *model = malloc(size);
    uint64_t seed = 19;
    fill_random(model, size, &seed);
    write_file(base, model, size);
    create_img(path, size, fmt("compat=0.10,backing_file=%s,backing_fmt=raw", base));
    struct layout l = layout_of(path);
    ck_assert_uint_eq(l.version, 2);
    vdisk_dev *dev = open_img(path, NULL);
    /* Cluster 0 written; zeroes over 1 (backing data), 2 (in part) and 0
     * (allocated); a discard of 3 reads the backing file or zeroes. */
    fill_random(model, cs, &seed);
    dev_write(dev, model, cs, 0);
    ck_assert_int_eq(vdisk_write_zeroes(dev, cs, cs, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + cs, 0, cs);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 2 * cs + 10, 1000, 0), 0);
    memset(model + 2 * cs + 10, 0, 1000);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 0, cs, 0), 0);
    memset(model, 0, cs);
    expect_dev(dev, 0, model, size, "zeroes in a version 2 overlay");
    vdisk_close(dev);
    for (uint64_t g = 0; g < size; g += cs)
        ck_assert_msg(!(l2_entry(path, &l, g) & OFLAG_ZERO), "guest %" PRIu64 ": %#" PRIx64, g,
                      l2_entry(path, &l, g));
    /* Cluster 1 holds zeroes in the file, since the backing file's data
     * would show through an unallocated one. */
    uint64_t h1 = host_of(path, &l, cs);
    ck_assert_uint_ne(h1, 0);
    uint8_t *bytes = read_file_at(path, h1, cs);
    assert_same_bytes(bytes, model + cs, cs, cs, "zeroes in the file");
    free(bytes);
    expect_clean(path);
    free(model);
}
END_TEST

/* preallocation=metadata, falloc and full: every cluster has its L2 entry
 * and its host cluster (contiguous after the metadata), the disk reads
 * zeroes, and the image checks clean. */
static const char *const preallocations[] = {"metadata", "falloc", "full"};

START_TEST(preallocation)
{
    const uint64_t cs = 64 * KiB, size = 2 * MiB + 512;
    const char *path = scratch(fmt("prealloc-%s.qcow2", preallocations[_i]));
    create_img(path, size, fmt("preallocation=%s", preallocations[_i]));
    struct layout l = layout_of(path);
    uint64_t first = 0;
    for (uint64_t g = 0; g < size; g += cs) {
        uint64_t e = l2_entry(path, &l, g);
        uint64_t host = e & OFFSET_MASK;
        ck_assert_msg(host && (e & OFLAG_COPIED), "guest %" PRIu64 ": %#" PRIx64, g, e);
        if (!first)
            first = host;
        ck_assert_uint_eq(host, first + g);
        ck_assert_uint_eq(refcount(path, &l, host / cs), 1);
    }
    ck_assert_uint_ge(file_size(path), first + (size + cs - 1) / cs * cs);
    vdisk_dev *dev = open_img(path, "read-only=on");
    expect_zero(dev, 0, size, "a preallocated image");
    vdisk_close(dev);
    struct vdisk_check_result res = expect_clean(path);
    ck_assert_uint_eq(res.allocated_clusters, 33);
    ck_assert_uint_eq(res.total_clusters, 33);
    /* Writes go to the preallocated clusters. */
    dev = open_img(path, NULL);
    uint8_t buf[700];
    uint64_t seed = 2;
    fill_random(buf, sizeof buf, &seed);
    dev_write(dev, buf, sizeof buf, 5 * cs + 3);
    vdisk_close(dev);
    uint8_t *bytes = read_file_at(path, first + 5 * cs + 3, sizeof buf);
    assert_same_bytes(bytes, buf, sizeof buf, 5 * cs + 3, "a write into a preallocated cluster");
    free(bytes);
    ck_assert_uint_eq(host_of(path, &l, 5 * cs), first + 5 * cs);
}
END_TEST

/* Lazy refcounts: the image is marked dirty while written (incompatible
 * bit 0) and clean when closed.  Copies of the file taken while it is dirty
 * are crash images: one before a flush (the writes may be lost, the
 * refcounts may be stale), one after (the writes are there); opened for
 * writing, each gets its refcounts rebuilt and checks clean. */
static void copy_file(const char *from, const char *to)
{
    size_t len;
    void *data = read_file(from, &len);
    write_file(to, data, len);
    free(data);
}

START_TEST(lazy_refcounts)
{
    const uint64_t cs = 64 * KiB, size = 1 * MiB;
    const char *path = scratch("lazy.qcow2");
    const char *before = scratch("lazy-before-flush.qcow2");
    const char *after = scratch("lazy-after-flush.qcow2");
    create_img(path, size, "lazy_refcounts=on");
    ck_assert_uint_eq(be64(path, 80), 1);
    ck_assert_uint_eq(be64(path, 72), 0);
    uint8_t *model = calloc(1, size);
    uint64_t seed = 29;
    fill_random(model + cs, 3 * cs, &seed);
    vdisk_dev *dev = open_img(path, NULL);
    dev_write(dev, model + cs, 3 * cs, cs);
    ck_assert_uint_eq(be64(path, 72), 1);
    copy_file(path, before);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    copy_file(path, after);
    vdisk_close(dev);
    ck_assert_uint_eq(be64(path, 72), 0);
    expect_clean(path);

    for (int k = 0; k < 2; k++) {
        const char *crash = k ? after : before;
        dev = open_img(crash, NULL);
        ck_assert_uint_eq(be64(crash, 72), 0);
        uint8_t *got = malloc(size);
        dev_read(dev, got, size, 0);
        vdisk_close(dev);
        for (uint64_t g = 0; g < size; g += cs) {
            bool zero = true;
            for (uint64_t i = 0; i < cs && zero; i++)
                zero = got[g + i] == 0;
            if (k == 0 && zero)
                continue; /* the write did not reach it before the crash */
            assert_same_bytes(got + g, model + g, cs, g, crash);
        }
        free(got);
        expect_clean(crash);
    }
    free(model);
}
END_TEST

/* ---- Compressed clusters --------------------------------------------------------- */

/* Decompresses the compressed cluster at guest offset OFF from the file's
 * bytes, as the specification describes the entry, into OUT (LEN bytes: a
 * compressed cluster always holds a whole cluster, zeroes after the end of
 * the image). */
static void decompress_from_file(const char *path, const struct layout *l, uint64_t off,
                                 bool zstd, uint8_t *out, size_t len)
{
    uint64_t e = l2_entry(path, l, off);
    ck_assert_msg(e & OFLAG_COMPRESSED, "%" PRIu64 " is not compressed: %#" PRIx64, off, e);
    unsigned x = 62 - (l->cluster_bits - 8);
    uint64_t host = e & ((1ull << x) - 1);
    uint64_t sectors = (e >> x & ((1ull << (l->cluster_bits - 8)) - 1)) + 1;
    size_t clen = (size_t)(sectors * 512 - host % 512);
    uint8_t *c = read_file_at(path, host, clen);
    if (zstd) {
        size_t fl = ZSTD_findFrameCompressedSize(c, clen);
        ck_assert_msg(!ZSTD_isError(fl), "zstd frame: %s", ZSTD_getErrorName(fl));
        size_t n = ZSTD_decompress(out, len, c, fl);
        ck_assert_msg(!ZSTD_isError(n) && n == len, "zstd: %s", ZSTD_isError(n) ?
                      ZSTD_getErrorName(n) : "short");
    } else {
        z_stream z;
        memset(&z, 0, sizeof z);
        ck_assert_int_eq(inflateInit2(&z, -12), Z_OK);
        z.next_in = c;
        z.avail_in = (uInt)clen;
        z.next_out = out;
        z.avail_out = (uInt)len;
        int r = inflate(&z, Z_FINISH);
        ck_assert_msg(r == Z_STREAM_END, "inflate: %d", r);
        ck_assert_uint_eq(z.total_out, len);
        inflateEnd(&z);
    }
    free(c);
}

static const char *const compression_types[] = {"zlib", "zstd"};

START_TEST(compressed)
{
    const char *type = compression_types[_i];
    bool zstd = _i == 1;
    const uint64_t cs = 64 * KiB, size = 8 * cs + 4096;
    const char *path = scratch(fmt("compressed-%s.qcow2", type));
    create_img(path, size, fmt("compression_type=%s", type));
    struct layout l = layout_of(path);
    uint8_t *model = calloc(1, size);
    uint64_t seed = 11;
    vdisk_dev *dev = open_img(path, NULL);

    /* Cluster 0: text; cluster 1: random bytes, which do not shrink. */
    fill_text(model, cs, 0);
    ck_assert_int_eq(vdisk_pwrite_compressed(dev, model, cs, 0), 0);
    fill_random(model + cs, cs, &seed);
    ck_assert_int_eq(vdisk_pwrite_compressed(dev, model + cs, cs, cs), 0);
    /* Clusters 2 to 4 compressed by the caller and stored at once: packed
     * one after the other. */
    uint8_t *pieces = malloc(3 * cs);
    struct iovec iov[3];
    for (int k = 0; k < 3; k++) {
        fill_text(model + (2 + k) * cs, cs, 1000u * (k + 1));
        size_t clen;
        ck_assert_int_eq(vdisk_compress(dev, model + (2 + k) * cs, cs, pieces + k * cs, cs,
                                        &clen), 0);
        ck_assert_uint_gt(clen, 0);
        ck_assert_uint_lt(clen, cs / 4);
        iov[k].iov_base = pieces + k * cs;
        iov[k].iov_len = clen;
    }
    ck_assert_int_eq(vdisk_pwrite_compressed_datav(dev, iov, 3, 2 * cs), 0);
    /* The last cluster of the image is 4096 bytes. */
    fill_text(model + 8 * cs, 4096, 77);
    ck_assert_int_eq(vdisk_pwrite_compressed(dev, model + 8 * cs, 4096, 8 * cs), 0);
    /* Not a cluster: refused. */
    ck_assert_int_eq(vdisk_pwrite_compressed(dev, model, cs, 512), -EINVAL);
    ck_assert_int_eq(vdisk_pwrite_compressed(dev, model, cs - 512, 5 * cs), -EINVAL);
    ck_assert_int_eq(vdisk_pwrite_compressed(dev, model, cs, 8 * cs), -EIO); /* past the end */
    expect_dev(dev, 0, model, size, "compressed clusters");
    vdisk_close(dev);

    /* The file's bytes, decompressed without the library. */
    uint8_t *out = malloc(cs);
    static const int comp[] = {0, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
        decompress_from_file(path, &l, comp[k] * cs, zstd, out, cs);
        assert_same_bytes(out, model + comp[k] * cs, cs, comp[k] * cs, "decompressed");
    }
    decompress_from_file(path, &l, 8 * cs, zstd, out, cs);
    uint8_t *last = calloc(1, cs);
    memcpy(last, model + 8 * cs, 4096);
    assert_same_bytes(out, last, cs, 8 * cs, "the last cluster, decompressed");
    free(last);
    unsigned x = 62 - (l.cluster_bits - 8);
    uint64_t mask = (1ull << x) - 1;
    for (int k = 0; k < 2; k++) {
        uint64_t a = l2_entry(path, &l, (2 + k) * cs) & mask;
        uint64_t b = l2_entry(path, &l, (3 + k) * cs) & mask;
        ck_assert_msg(b == a + iov[k].iov_len, "cluster %d at %#" PRIx64 ", the one before "
                      "at %#" PRIx64 " (%zu bytes)", 3 + k, b, a, iov[k].iov_len);
    }
    uint64_t e1 = l2_entry(path, &l, cs);
    ck_assert_msg((e1 & (OFLAG_COMPRESSED | OFLAG_COPIED)) == OFLAG_COPIED, "%#" PRIx64, e1);
    uint8_t *bytes = read_file_at(path, e1 & OFFSET_MASK, cs);
    assert_same_bytes(bytes, model + cs, cs, cs, "the uncompressed cluster");
    free(bytes);
    struct vdisk_check_result res = expect_clean(path);
    ck_assert_uint_eq(res.compressed_clusters, 5);
    ck_assert_uint_eq(res.allocated_clusters, 6);

    /* A write into a compressed cluster: the rest of it is kept, and the
     * cluster is no longer compressed. */
    dev = open_img(path, NULL);
    fill_random(model + 3 * cs + 300, 100, &seed);
    dev_write(dev, model + 3 * cs + 300, 100, 3 * cs + 300);
    expect_dev(dev, 0, model, size, "after a write into a compressed cluster");
    vdisk_close(dev);
    ck_assert_uint_eq(l2_entry(path, &l, 3 * cs) & OFLAG_COMPRESSED, 0);
    res = expect_clean(path);
    ck_assert_uint_eq(res.compressed_clusters, 4);
    /* Discards and zeroes over compressed clusters drop them. */
    dev = open_img(path, NULL);
    ck_assert_int_eq(vdisk_discard(dev, 2 * cs, cs), 0);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 4 * cs, cs, VDISK_ZEROES_MAY_UNMAP), 0);
    memset(model + 2 * cs, 0, cs);
    memset(model + 4 * cs, 0, cs);
    expect_dev(dev, 0, model, size, "after discarding compressed clusters");
    vdisk_close(dev);
    ck_assert_uint_eq(l2_entry(path, &l, 2 * cs), OFLAG_ZERO);
    ck_assert_uint_eq(l2_entry(path, &l, 4 * cs), OFLAG_ZERO);
    res = expect_clean(path);
    ck_assert_uint_eq(res.compressed_clusters, 2);
    dev = open_img(path, "read-only=on");
    expect_dev(dev, 0, model, size, "after a reopen");
    vdisk_close(dev);
    free(out);
    free(pieces);
    free(model);
}
END_TEST

/* ---- Snapshots ----------------------------------------------------------------- */

START_TEST(snapshots)
{
    const uint64_t cs = 64 * KiB, size = 4 * MiB;
    const char *path = scratch("snap.qcow2");
    create_img(path, size, NULL);
    struct layout l = layout_of(path);
    uint8_t *a = calloc(1, size), *b, *c;
    uint64_t seed = 23;
    fill_random(a, 3 * cs, &seed);
    fill_random(a + 40 * cs + 7, 1000, &seed);
    vdisk_dev *dev = open_img(path, NULL);
    dev_write(dev, a, 3 * cs, 0);
    dev_write(dev, a + 40 * cs + 7, 1000, 40 * cs + 7);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    uint64_t host0 = host_of(path, &l, 0);
    ck_assert_uint_ne(host0, 0);
    ck_assert_int_eq(vdisk_snapshot_count(dev), 0);
    ck_assert_int_eq(vdisk_snapshot_create(dev, "one"), 0);
    ck_assert_int_eq(vdisk_snapshot_create(dev, "one"), -EEXIST);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    /* Taking it shares the clusters: refcount 2, COPIED cleared.  (It
     * writes the tables it changes to new clusters: read the header again.) */
    l = layout_of(path);
    ck_assert_uint_eq(refcount(path, &l, host0 / cs), 2);
    ck_assert_uint_eq(l2_entry(path, &l, 0), host0);
    ck_assert_uint_eq(be32(path, 60), 1);

    b = malloc(size);
    memcpy(b, a, size);
    fill_random(b + cs + 5, 2 * cs, &seed);
    dev_write(dev, b + cs + 5, 2 * cs, cs + 5);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 40 * cs, cs, 0), 0);
    memset(b + 40 * cs, 0, cs);
    ck_assert_int_eq(vdisk_snapshot_create(dev, "two"), 0);
    c = malloc(size);
    memcpy(c, b, size);
    fill_random(c, cs, &seed);
    fill_random(c + 60 * cs, cs, &seed);
    dev_write(dev, c, cs, 0);
    dev_write(dev, c + 60 * cs, cs, 60 * cs);
    ck_assert_int_eq(vdisk_discard(dev, 2 * cs, cs), 0);
    memset(c + 2 * cs, 0, cs);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    l = layout_of(path);
    /* Cluster 0 now has a cluster of its own; the old one stays with the
     * snapshots. */
    uint64_t e0 = l2_entry(path, &l, 0);
    ck_assert_uint_ne(e0 & OFFSET_MASK, host0);
    ck_assert_uint_ne(e0 & OFLAG_COPIED, 0);
    /* Frees may be deferred while the image is open (its refcount is then
     * only too high, which is safe): look at the refcounts once closed. */
    vdisk_close(dev);
    dev = open_img(path, NULL);
    ck_assert_uint_eq(refcount(path, &l, host0 / cs), 2);
    expect_dev(dev, 0, c, size, "the disk after two snapshots");

    ck_assert_int_eq(vdisk_snapshot_count(dev), 2);
    struct vdisk_snapshot sn = {.struct_size = sizeof sn};
    ck_assert_int_eq(vdisk_snapshot_get(dev, 0, &sn), 0);
    ck_assert_str_eq(sn.id, "1");
    ck_assert_str_eq(sn.name, "one");
    ck_assert_uint_eq(sn.disk_size, size);
    ck_assert_uint_eq(sn.vm_state_size, 0);
    ck_assert_int_eq(vdisk_snapshot_get(dev, 1, &sn), 0);
    ck_assert_str_eq(sn.id, "2");
    ck_assert_str_eq(sn.name, "two");
    ck_assert_int_eq(vdisk_snapshot_get(dev, 2, &sn), -ENOENT);
    ck_assert_int_eq(vdisk_snapshot_apply(dev, "three"), -ENOENT);
    ck_assert_int_eq(vdisk_snapshot_delete(dev, "three"), -ENOENT);

    ck_assert_int_eq(vdisk_snapshot_apply(dev, "one"), 0);
    expect_dev(dev, 0, a, size, "snapshot one applied");
    ck_assert_int_eq(vdisk_snapshot_apply(dev, "2"), 0); /* by its id */
    expect_dev(dev, 0, b, size, "snapshot two applied");
    /* Writes after an apply do not reach the snapshot. */
    uint8_t patch[700];
    fill_random(patch, sizeof patch, &seed);
    dev_write(dev, patch, sizeof patch, 100);
    vdisk_close(dev);
    expect_clean(path);

    dev = open_img(path, NULL);
    ck_assert_int_eq(vdisk_snapshot_apply(dev, "two"), 0);
    expect_dev(dev, 0, b, size, "snapshot two applied after a reopen");
    ck_assert_int_eq(vdisk_snapshot_delete(dev, "one"), 0);
    ck_assert_int_eq(vdisk_snapshot_count(dev), 1);
    ck_assert_int_eq(vdisk_snapshot_get(dev, 0, &sn), 0);
    ck_assert_str_eq(sn.name, "two");
    expect_dev(dev, 0, b, size, "after deleting snapshot one");
    ck_assert_int_eq(vdisk_snapshot_apply(dev, "one"), -ENOENT);
    vdisk_close(dev);
    ck_assert_uint_eq(be32(path, 60), 1);
    expect_clean(path);

    /* Deleting the last snapshot gives every cluster back: the disk's
     * clusters have refcount 1 and COPIED again. */
    dev = open_img(path, NULL);
    ck_assert_int_eq(vdisk_snapshot_delete(dev, "two"), 0);
    ck_assert_int_eq(vdisk_snapshot_count(dev), 0);
    expect_dev(dev, 0, b, size, "after deleting every snapshot");
    vdisk_close(dev);
    ck_assert_uint_eq(be32(path, 60), 0);
    l = layout_of(path);
    for (uint64_t g = 0; g < size; g += cs) {
        uint64_t e = l2_entry(path, &l, g);
        if (!(e & OFFSET_MASK))
            continue;
        ck_assert_msg(e & OFLAG_COPIED, "guest %" PRIu64 ": %#" PRIx64, g, e);
        ck_assert_uint_eq(refcount(path, &l, (e & OFFSET_MASK) / cs), 1);
    }
    struct vdisk_check_result res = expect_clean(path);
    ck_assert_uint_eq(res.allocated_clusters, 4);
    free(a);
    free(b);
    free(c);
}
END_TEST

/* ---- Check and repair ------------------------------------------------------------ */

/* A clean image with data in guest clusters 0, 1 and 5 (64 KiB clusters).
 * The file holds 8 clusters: the header, the refcount table and block, the
 * L1 table, then the one L2 table and the three data clusters in the order
 * the library allocates them (h0, h1, h5 for the data of guest clusters 0,
 * 1 and 5; l2 for the table), which this records. */
struct damaged {
    const char *path;
    struct layout l;
    uint64_t h0, h1, h5, l2; /* cluster numbers */
    uint8_t *model;          /* the disk's data */
    char found[1024], fixed[2048];
};

static void damage_base(struct damaged *d, const char *name)
{
    const uint64_t cs = 64 * KiB;
    d->path = scratch(name);
    create_img(d->path, 1 * MiB, NULL);
    d->model = calloc(1, 1 * MiB);
    uint64_t seed = 31;
    fill_random(d->model, 2 * cs, &seed);
    fill_random(d->model + 5 * cs, cs, &seed);
    vdisk_dev *dev = open_img(d->path, NULL);
    dev_write(dev, d->model, 2 * cs, 0);
    dev_write(dev, d->model + 5 * cs, cs, 5 * cs);
    vdisk_close(dev);
    struct vdisk_check_result res = expect_clean(d->path);
    ck_assert_uint_eq(res.allocated_clusters, 3);
    ck_assert_uint_eq(res.total_clusters, 16);
    ck_assert_uint_eq(res.image_end_offset, 8 * cs);
    d->l = layout_of(d->path);
    d->h0 = host_of(d->path, &d->l, 0) / cs;
    d->h1 = host_of(d->path, &d->l, cs) / cs;
    d->h5 = host_of(d->path, &d->l, 5 * cs) / cs;
    d->l2 = (be64(d->path, d->l.l1_off) & OFFSET_MASK) / cs;
    ck_assert_uint_eq(be64(d->path, d->l.l1_off), OFLAG_COPIED | d->l2 * cs);
    /* Clusters 4 to 7, each once. */
    ck_assert_uint_eq((1u << d->h0) | (1u << d->h1) | (1u << d->h5) | (1u << d->l2), 0xf0);
    d->found[0] = d->fixed[0] = 0;
}

/* Checks the damaged image: read-only first (the lines D->found, the
 * counts), then repairs with FLAGS (the lines D->fixed, the counts fixed;
 * LEAKS_FIXED -1: not compared), then checks it clean and reads the data
 * back. */
static void damage_check(struct damaged *d, int64_t corruptions, int64_t leaks, unsigned flags,
                         int64_t corruptions_fixed, int64_t leaks_fixed)
{
    vdisk_dev *dev = open_img(d->path, "read-only=on");
    struct lines ls;
    struct vdisk_check_result res = check_dev(dev, 0, &ls);
    vdisk_close(dev);
    ck_assert_str_eq(ls.text, d->found);
    ck_assert_int_eq(res.corruptions, corruptions);
    ck_assert_int_eq(res.leaks, leaks);
    ck_assert_int_eq(res.check_errors, 0);
    ck_assert_int_eq(res.corruptions_fixed, 0);
    ck_assert_int_eq(res.leaks_fixed, 0);
    ck_assert_int_eq(res.repaired, 0);
    /* A repair needs a writable device. */
    dev = open_img(d->path, "read-only=on");
    struct vdisk_check_result r2 = {.struct_size = sizeof r2};
    ck_assert_int_eq(vdisk_check(dev, flags, &r2, NULL, NULL), -EROFS);
    vdisk_close(dev);

    dev = open_img(d->path, "repair=on");
    res = check_dev(dev, flags, &ls);
    ck_assert_str_eq(ls.text, d->fixed);
    ck_assert_int_eq(res.corruptions, 0);
    ck_assert_int_eq(res.leaks, 0);
    ck_assert_int_eq(res.corruptions_fixed, corruptions_fixed);
    if (leaks_fixed >= 0)
        ck_assert_int_eq(res.leaks_fixed, leaks_fixed);
    ck_assert_int_eq(res.repaired, 1);
    expect_dev(dev, 0, d->model, 1 * MiB, "the repaired image");
    vdisk_close(dev);
    expect_clean(d->path);
    dev = open_img(d->path, "read-only=on");
    expect_dev(dev, 0, d->model, 1 * MiB, "the repaired image, reopened");
    vdisk_close(dev);
    /* It takes writes again. */
    dev = open_img(d->path, NULL);
    uint64_t seed = 8;
    fill_random(d->model + 9 * 64 * KiB + 3, 70000, &seed);
    dev_write(dev, d->model + 9 * 64 * KiB + 3, 70000, 9 * 64 * KiB + 3);
    expect_dev(dev, 0, d->model, 1 * MiB, "the repaired image after a write");
    vdisk_close(dev);
    expect_clean(d->path);
    d->l = layout_of(d->path);
}

/* A cluster with refcount 1 past the used ones: a leak, freed by -r leaks. */
START_TEST(check_leak)
{
    struct damaged d;
    damage_base(&d, "leak.qcow2");
    ck_assert_int_eq(truncate(d.path, 10 * 64 * KiB), 0);
    set_refcount(d.path, &d.l, 9, 1);
    strcpy(d.found, "Leaked cluster 9 refcount=1 reference=0\n");
    snprintf(d.fixed, sizeof d.fixed, "%sRepairing cluster 9 refcount=1 reference=0\n", d.found);
    damage_check(&d, 0, 1, VDISK_CHECK_REPAIR_LEAKS, 0, 1);
    free(d.model);
}
END_TEST

/* A refcount above the references, of a data cluster and of the L2 table: a
 * leak, and the COPIED flag is wrong (refcount not 1).  Repairing the leak
 * makes the flag right again. */
START_TEST(check_refcount_too_high)
{
    struct damaged d;
    damage_base(&d, fmt("high-%d.qcow2", _i));
    uint64_t c = _i ? d.l2 : d.h1;
    set_refcount(d.path, &d.l, c, 3);
    int n = snprintf(d.found, sizeof d.found, "Leaked cluster %" PRIu64 " refcount=3 reference=1\n",
                     c);
    if (_i)
        snprintf(d.found + n, sizeof d.found - (size_t)n, "ERROR OFLAG_COPIED L2 cluster: "
                 "l1_index=0 l1_entry=%" PRIx64 " refcount=3\n", OFLAG_COPIED | c * 64 * KiB);
    else
        snprintf(d.found + n, sizeof d.found - (size_t)n, "ERROR OFLAG_COPIED data cluster: "
                 "l2_entry=%" PRIx64 " refcount=3\n", OFLAG_COPIED | c * 64 * KiB);
    snprintf(d.fixed, sizeof d.fixed, "Leaked cluster %" PRIu64 " refcount=3 reference=1\n"
             "Repairing cluster %" PRIu64 " refcount=3 reference=1\n", c, c);
    damage_check(&d, 1, 1, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, 0, 1);
    ck_assert_uint_eq(refcount(d.path, &d.l, c), 1);
    free(d.model);
}
END_TEST

/* A data cluster whose refcount is 0: a corruption (an allocation would hand
 * it out again), and its COPIED flag is wrong; -r all rebuilds the refcount
 * structure, as qemu-img does. */
START_TEST(check_refcount_too_low)
{
    struct damaged d;
    damage_base(&d, "low.qcow2");
    set_refcount(d.path, &d.l, d.h5, 0);
    snprintf(d.found, sizeof d.found, "ERROR cluster %" PRIu64 " refcount=0 reference=1\n"
             "ERROR OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=0\n", d.h5,
             OFLAG_COPIED | d.h5 * 64 * KiB);
    /* The new structure goes past what is in use (as QEMU places it); the
     * old one, left intact until the header points to the new, is freed
     * after (and taken again by the writes damage_check makes). */
    uint64_t old_reft = d.l.reft_off / d.l.cs, old_rb = get_be(d.path, d.l.reft_off, 8) / d.l.cs;
    snprintf(d.fixed, sizeof d.fixed, "ERROR cluster %" PRIu64 " refcount=0 reference=1\n"
             "Rebuilding refcount structure\n"
             "Repairing cluster %" PRIu64 " refcount=1 reference=0\n"
             "Repairing cluster %" PRIu64 " refcount=1 reference=0\n", d.h5,
             old_reft < old_rb ? old_reft : old_rb, old_reft < old_rb ? old_rb : old_reft);
    damage_check(&d, 2, 0, VDISK_CHECK_REPAIR_ERRORS, 1, 0);
    struct layout now = layout_of(d.path);
    ck_assert_uint_gt(now.reft_off / now.cs, 7); /* past the clusters in use */
    ck_assert_uint_eq(refcount(d.path, &now, d.h5), 1);
    free(d.model);
}
END_TEST

/* A bad L2 entry: guest cluster 1 points at guest cluster 0's data.  The
 * refcount (1) is below the references (2) and guest cluster 1's own data
 * cluster leaks.  -r all makes the refcount 2 and clears both COPIED
 * flags, which are wrong then; the disk reads guest cluster 0's data twice. */
START_TEST(check_l2_shared)
{
    struct damaged d;
    damage_base(&d, "shared.qcow2");
    uint64_t pos = l2_entry_pos(d.path, &d.l, 64 * KiB);
    put_be(d.path, pos, 8, OFLAG_COPIED | d.h0 * 64 * KiB);
    memcpy(d.model + 64 * KiB, d.model, 64 * KiB);
    snprintf(d.found, sizeof d.found, "ERROR cluster %" PRIu64 " refcount=1 reference=2\n"
             "Leaked cluster %" PRIu64 " refcount=1 reference=0\n", d.h0, d.h1);
    snprintf(d.fixed, sizeof d.fixed, "%s"
             "Repairing cluster %" PRIu64 " refcount=1 reference=2\n"
             "Repairing cluster %" PRIu64 " refcount=1 reference=0\n"
             "Repairing OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=2\n"
             "Repairing OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=2\n",
             d.found, d.h0, d.h1, OFLAG_COPIED | d.h0 * 64 * KiB,
             OFLAG_COPIED | d.h0 * 64 * KiB);
    /* The refcount (not 0) is set right in place and the leak freed, as
     * qemu-img 7.2 does (its lines, the same; "1 leaked clusters, 3
     * corruptions" repaired). */
    const int64_t leaks_fixed = 1;
    /* The two entries now share a cluster: the write after the repair (in
     * damage_check) does not touch them. */
    damage_check(&d, 1, 1, VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS, 3,
                 leaks_fixed);
    ck_assert_uint_eq(refcount(d.path, &d.l, d.h0), 2);
    ck_assert_uint_eq(refcount(d.path, &d.l, d.h1), 0);
    ck_assert_uint_eq(l2_entry(d.path, &d.l, 0), d.h0 * 64 * KiB);
    ck_assert_uint_eq(l2_entry(d.path, &d.l, 64 * KiB), d.h0 * 64 * KiB);
    /* A write into one of them copies it; the other keeps the data.  Its
     * refcount is 1 again, but its entry's COPIED flag stays clear (as in
     * QEMU, which sets it in snapshot operations and repairs only): check
     * counts that, and -r all sets it. */
    vdisk_dev *dev = open_img(d.path, NULL);
    uint8_t x[10] = "0123456789";
    dev_write(dev, x, sizeof x, 64 * KiB + 5);
    memcpy(d.model + 64 * KiB + 5, x, sizeof x);
    expect_dev(dev, 0, d.model, 1 * MiB, "after a write into a shared cluster");
    vdisk_close(dev);
    dev = open_img(d.path, "read-only=on");
    struct lines ls;
    struct vdisk_check_result res = check_dev(dev, 0, &ls);
    vdisk_close(dev);
    ck_assert_str_eq(ls.text, fmt("ERROR OFLAG_COPIED data cluster: l2_entry=%" PRIx64
                                  " refcount=1\n", d.h0 * 64 * KiB));
    ck_assert_int_eq(res.corruptions, 1);
    ck_assert_int_eq(res.leaks, 0);
    dev = open_img(d.path, NULL);
    res = check_dev(dev, VDISK_CHECK_REPAIR_ERRORS, &ls);
    ck_assert_int_eq(res.corruptions_fixed, 1);
    ck_assert_int_eq(res.corruptions, 0);
    expect_dev(dev, 0, d.model, 1 * MiB, "after the second repair");
    vdisk_close(dev);
    expect_clean(d.path);
    ck_assert_uint_eq(be64(d.path, l2_entry_pos(d.path, &d.l, 0)), OFLAG_COPIED | d.h0 * 64 * KiB);
    free(d.model);
}
END_TEST

/* A bad L2 entry that cannot be repaired: guest cluster 5's data cluster
 * offset moved 512 bytes off its cluster.  The check counts it and the two
 * clusters the misaligned range reaches, as qemu-img 7.2 does: the second
 * one lies past the end of the file, less than a cluster past it, so it is
 * counted as referenced and its refcount (0) is too low.  Reads of that
 * cluster fail, the others read. */
START_TEST(check_l2_unaligned)
{
    struct damaged d;
    damage_base(&d, "unaligned.qcow2");
    uint64_t pos = l2_entry_pos(d.path, &d.l, 5 * 64 * KiB);
    uint64_t bad = (d.h5 * 64 * KiB + 512);
    put_be(d.path, pos, 8, OFLAG_COPIED | bad);
    vdisk_dev *dev = open_img(d.path, "read-only=on");
    struct lines ls;
    struct vdisk_check_result res = check_dev(dev, 0, &ls);
    ck_assert_msg(d.h5 == 7, "guest cluster 5 is in host cluster %" PRIu64, d.h5);
    ck_assert_str_eq(ls.text,
                     "ERROR offset=70200: Data cluster is not properly aligned; L2 entry "
                     "corrupted.\n"
                     "ERROR cluster 8 refcount=0 reference=1\n");
    ck_assert_int_eq(res.corruptions, 2);
    ck_assert_int_eq(res.leaks, 0);
    /* As qemu-img: the end of what is stored or referenced, cluster 8 in. */
    ck_assert_uint_eq(res.image_end_offset, 9 * 64 * KiB);
    uint8_t buf[512];
    ck_assert_int_lt(vdisk_pread(dev, buf, 512, 5 * 64 * KiB), 0);
    expect_dev(dev, 0, d.model, 2 * 64 * KiB, "the undamaged clusters");
    vdisk_close(dev);
    free(d.model);
}
END_TEST

/* The corrupt mark: reading through the bad entry of check_l2_unaligned on
 * a writable device marks the image corrupt (incompatible bit 1) and
 * refuses writes; a writable open is refused until a repair finds nothing
 * left, which clears the mark. */
START_TEST(corrupt_mark)
{
    struct damaged d;
    damage_base(&d, "corrupt.qcow2");
    uint64_t pos = l2_entry_pos(d.path, &d.l, 5 * 64 * KiB);
    uint64_t good = be64(d.path, pos);
    put_be(d.path, pos, 8, good + 512);
    vdisk_dev *dev = open_img(d.path, NULL);
    uint8_t buf[512];
    ck_assert_int_eq(vdisk_pread(dev, buf, 512, 5 * 64 * KiB), -EIO);
    ck_assert_uint_eq(be64(d.path, 72), 2);
    ck_assert_int_lt(vdisk_pwrite(dev, buf, 512, 0), 0);
    vdisk_close(dev);
    ck_assert_uint_eq(be64(d.path, 72), 2);
    vdisk_options *o = opts_of("format=qcow2");
    ck_assert_int_eq(vdisk_open(&dev, d.path, o), -EIO);
    vdisk_options_free(o);
    dev = open_img(d.path, "read-only=on");
    expect_dev(dev, 0, d.model, 2 * 64 * KiB, "a corrupt image, read-only");
    vdisk_close(dev);
    /* The entry put right by hand: a repair finds nothing but the mark. */
    put_be(d.path, pos, 8, good);
    dev = open_img(d.path, "repair=on");
    struct lines ls;
    struct vdisk_check_result res = check_dev(dev, VDISK_CHECK_REPAIR_LEAKS |
                                                       VDISK_CHECK_REPAIR_ERRORS, &ls);
    ck_assert_int_eq(res.corruptions, 0);
    ck_assert_int_eq(res.leaks, 0);
    vdisk_close(dev);
    ck_assert_uint_eq(be64(d.path, 72), 0);
    dev = open_img(d.path, NULL);
    expect_dev(dev, 0, d.model, 1 * MiB, "the image after the mark is cleared");
    dev_write(dev, buf, 512, 0);
    vdisk_close(dev);
    expect_clean(d.path);
    free(d.model);
}
END_TEST

/* ---- Resize ---------------------------------------------------------------------- */

START_TEST(resize)
{
    const char *path = scratch("resize.qcow2");
    /* 512-byte clusters: an L2 table covers 32 KiB, so 64 MiB need 2048 L1
     * entries (4 clusters of the L1 table) and 256 MiB 8192 (128). */
    create_img(path, 64 * MiB, "cluster_size=512");
    uint8_t a[1000], b[1000];
    uint64_t seed = 41;
    fill_random(a, sizeof a, &seed);
    fill_random(b, sizeof b, &seed);
    vdisk_dev *dev = open_img(path, NULL);
    dev_write(dev, a, sizeof a, 64 * MiB - 1000);
    ck_assert_int_eq(vdisk_resize(dev, 256 * MiB, 0), 0);
    ck_assert_uint_eq(vdisk_get_size(dev), 256 * MiB);
    expect_dev(dev, 64 * MiB - 1000, a, sizeof a, "data before the old end");
    expect_zero(dev, 64 * MiB + 300, 8192, "the grown part");
    dev_write(dev, b, sizeof b, 256 * MiB - sizeof b);
    vdisk_close(dev);
    struct layout l = layout_of(path);
    ck_assert_uint_eq(l.size, 256 * MiB);
    ck_assert_uint_eq(l.l1_size, 8192);
    expect_clean(path);
    dev = open_img(path, NULL);
    expect_dev(dev, 64 * MiB - 1000, a, sizeof a, "data before the old end, reopened");
    expect_dev(dev, 256 * MiB - sizeof b, b, sizeof b, "data at the new end");
    /* Shrinking needs the flag; data past the new end is gone, and reads
     * zeroes when the disk grows again. */
    ck_assert_int_eq(vdisk_resize(dev, 64 * MiB, 0), -EINVAL);
    ck_assert_int_eq(vdisk_resize(dev, 64 * MiB - 512, VDISK_RESIZE_SHRINK), 0);
    ck_assert_uint_eq(vdisk_get_size(dev), 64 * MiB - 512);
    expect_dev(dev, 64 * MiB - 1000, a, 188, "data below the new end");
    ck_assert_int_eq(vdisk_resize(dev, 64 * MiB + 1, 0), 0); /* rounded up to 512 */
    ck_assert_uint_eq(vdisk_get_size(dev), 64 * MiB + 512);
    expect_dev(dev, 64 * MiB - 1000, a, 188, "data below the shrunk end");
    expect_zero(dev, 64 * MiB - 512, 1024, "the regrown part");
    vdisk_close(dev);
    ck_assert_uint_eq(layout_of(path).size, 64 * MiB + 512);
    expect_clean(path);

    /* With a snapshot (v3): growing and shrinking work, as in qemu 7.2. */
    dev = open_img(path, NULL);
    ck_assert_int_eq(vdisk_snapshot_create(dev, "s"), 0);
    ck_assert_int_eq(vdisk_resize(dev, 32 * MiB, VDISK_RESIZE_SHRINK), 0);
    ck_assert_int_eq(vdisk_resize(dev, 128 * MiB, 0), 0);
    dev_write(dev, b, sizeof b, 100 * MiB);
    expect_dev(dev, 100 * MiB, b, sizeof b, "written after a grow");
    ck_assert_int_eq(vdisk_snapshot_apply(dev, "s"), 0);
    ck_assert_uint_eq(vdisk_get_size(dev), 64 * MiB + 512);
    expect_dev(dev, 64 * MiB - 1000, a, 188, "the snapshot");
    vdisk_close(dev);
    expect_clean(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("qcow2");
    TCase *tc = tcase_create("create");
    tcase_add_loop_test(tc, create_header, 0, sizeof create_cases / sizeof *create_cases);
    tcase_add_test(tc, create_refused);
    tcase_add_test(tc, create_many_refblocks);
    suite_add_tcase(s, tc);
    tc = tcase_create("io");
    tcase_add_loop_test(tc, read_write, 0, sizeof rw_cases / sizeof *rw_cases);
    tcase_add_test(tc, subclusters);
    tcase_add_loop_test(tc, backing_cow, 0, 2);
    tcase_add_test(tc, backing_subcluster_cow);
    tcase_add_test(tc, discard_zeroes);
    tcase_add_test(tc, zeroes_v2);
    tcase_add_loop_test(tc, preallocation, 0, 3);
    tcase_add_test(tc, lazy_refcounts);
    tcase_add_loop_test(tc, compressed, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("snapshots");
    tcase_add_test(tc, snapshots);
    suite_add_tcase(s, tc);
    tc = tcase_create("check");
    tcase_add_test(tc, check_leak);
    tcase_add_loop_test(tc, check_refcount_too_high, 0, 2);
    tcase_add_test(tc, check_refcount_too_low);
    tcase_add_test(tc, check_l2_shared);
    tcase_add_test(tc, check_l2_unaligned);
    tcase_add_test(tc, corrupt_mark);
    tcase_add_test(tc, resize);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
