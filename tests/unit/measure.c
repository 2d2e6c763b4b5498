/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/measure.c (CTest unit-measure): vdisk_measure (vdisk/measure.h)
 * against qemu-img 7.2's numbers, hard-coded so that no qemu program runs:
 *   - empty disks: each row of `sizes` is what `qemu-img measure
 *     --output=json -O FMT --size SIZE -o OPTS` printed, over sizes, cluster
 *     sizes, refcount widths, extended L2 entries, preallocation modes and
 *     the options that change nothing;
 *   - sources: images built here with the library (qcow2 images made by
 *     vdisk_create are qemu-img's byte for byte, and their block status
 *     comes from their tables, not from the file system), each measured as
 *     `qemu-img measure -O FMT -o OPTS FILE` measured the same files: data,
 *     zeroes, a backing chain, a raw file whose size is not a multiple of
 *     the cluster size, a version 2 image, and an image given persistent
 *     dirty bitmaps by hand (the bitmaps size);
 *   - the errors, and that nothing is written on an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define KiB UINT64_C(1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)
#define PiB (1024 * TiB)

static vdisk_options *opts(const char *list)
{
    if (!list)
        return NULL;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    return o;
}

/* vdisk_measure of FMT with OPTS (a -o list, or NULL), for SIZE or SRC;
 * asserts success. */
static struct vdisk_measure_result measure(const char *fmt, uint64_t size, const char *list,
                                           vdisk_dev *src)
{
    vdisk_options *o = opts(list);
    struct vdisk_measure_result m;
    memset(&m, 0xa5, sizeof m);
    m.struct_size = sizeof m;
    int r = vdisk_measure(fmt, size, o, src, &m);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "measure %s %" PRIu64 " %s: %d %s", fmt, size, list ? list : "", r,
                  vdisk_get_error());
    ck_assert_uint_eq(m.struct_size, sizeof m);
    return m;
}

/* ---- Empty disks -------------------------------------------------------------- */

struct size_case {
    const char *fmt;
    uint64_t size;
    const char *opts;
    uint64_t required, full;  /* qemu-img 7.2 */
};

static const struct size_case sizes[] = {
    /* The default cluster size (64k) and refcount width (16). */
    {"qcow2", 0, NULL, 196608, 196608},
    {"qcow2", 1, NULL, 327680, 393216},
    {"qcow2", 1000, NULL, 327680, 393216},
    {"qcow2", 65536, NULL, 327680, 393216},
    {"qcow2", 65537, NULL, 327680, 458752},
    {"qcow2", 64 * MiB, NULL, 327680, 67436544},
    {"qcow2", 1 * GiB, NULL, 393216, 1074135040},
    {"qcow2", 10 * GiB, NULL, 1900544, 10739318784},
    {"qcow2", 1 * TiB, NULL, 168034304, 1099679662080},
    {"qcow2", 256 * TiB, NULL, 42956423168, 281517933133824},
    /* The largest a 64k-cluster image can be: an L1 table of 32 MiB. */
    {"qcow2", 2 * PiB, NULL, 343650009088, 2252143463694336},
    /* Cluster sizes. */
    {"qcow2", 1 * GiB, "cluster_size=512", 21385216, 1095127040},
    {"qcow2", 64 * MiB, "cluster_size=512", 1337856, 68446720},
    {"qcow2", 1 * GiB, "cluster_size=4k", 2637824, 1076379648},
    {"qcow2", 100 * GiB, "cluster_size=4k", 262795264, 107636977664},
    {"qcow2", 0, "cluster_size=2M", 6291456, 6291456},
    {"qcow2", 1 * GiB, "cluster_size=2M", 10485760, 1084227584},
    {"qcow2", 1 * TiB, "cluster_size=2M", 12582912, 1099524210688},
    {"qcow2", 100 * TiB, "cluster_size=2M", 532676608, 109951695454208},
    /* Refcount widths. */
    {"qcow2", 1 * GiB, "refcount_bits=1", 393216, 1074135040},
    {"qcow2", 1 * GiB, "refcount_bits=2", 393216, 1074135040},
    {"qcow2", 1 * GiB, "refcount_bits=4", 393216, 1074135040},
    {"qcow2", 1 * GiB, "refcount_bits=8", 393216, 1074135040},
    {"qcow2", 1 * GiB, "refcount_bits=32", 458752, 1074200576},
    {"qcow2", 1 * GiB, "refcount_bits=64", 524288, 1074266112},
    {"qcow2", 1 * TiB, "refcount_bits=1", 136577024, 1099648204800},
    {"qcow2", 1 * TiB, "refcount_bits=64", 268697600, 1099780325376},
    {"qcow2", 64 * MiB, "cluster_size=512,refcount_bits=1", 1082880, 68191744},
    {"qcow2", 1 * GiB, "cluster_size=512,refcount_bits=64", 34629120, 1108370944},
    {"qcow2", 100 * GiB, "cluster_size=2M,refcount_bits=64", 10485760, 107384668160},
    /* Extended L2 entries. */
    {"qcow2", 10 * GiB, "extended_l2=on", 3211264, 10740629504},
    {"qcow2", 1 * GiB, "extended_l2=on,cluster_size=16k", 1245184, 1074987008},
    {"qcow2", 1 * TiB, "extended_l2=on,cluster_size=2M", 16777216, 1099528404992},
    /* Preallocation: falloc and full allocate everything; metadata is
     * always counted. */
    {"qcow2", 1 * GiB, "preallocation=off", 393216, 1074135040},
    {"qcow2", 1 * GiB, "preallocation=metadata", 393216, 1074135040},
    {"qcow2", 1 * GiB, "preallocation=falloc", 1074135040, 1074135040},
    {"qcow2", 1 * GiB, "preallocation=full", 1074135040, 1074135040},
    {"qcow2", 10 * GiB, "preallocation=full,cluster_size=4k,refcount_bits=8", 10761072640,
     10761072640},
    {"qcow2", 100 * MiB, "preallocation=falloc,extended_l2=on", 105185280, 105185280},
    /* Options that change nothing here. */
    {"qcow2", 1 * GiB, "compat=0.10", 393216, 1074135040},
    {"qcow2", 1 * GiB, "backing_file=base.qcow2,backing_fmt=qcow2", 393216, 1074135040},
    {"qcow2", 1 * GiB, "lazy_refcounts=on,compression_type=zstd", 393216, 1074135040},
    /* raw: the size, rounded up to 512. */
    {"raw", 0, NULL, 0, 0},
    {"raw", 1000, NULL, 1024, 1024},
    {"raw", 1 * GiB, NULL, 1073741824, 1073741824},
    {"raw", 1 * GiB, "preallocation=full", 1073741824, 1073741824},
    {NULL, 1 * GiB, NULL, 1073741824, 1073741824},
};

START_TEST(empty_disks)
{
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const struct size_case *c = &sizes[i];
        struct vdisk_measure_result m = measure(c->fmt, c->size, c->opts, NULL);
        ck_assert_msg(m.required == c->required && m.fully_allocated == c->full,
                      "%s %" PRIu64 " %s: required %" PRIu64 " (qemu-img %" PRIu64 "), fully "
                      "allocated %" PRIu64 " (qemu-img %" PRIu64 ")", c->fmt ? c->fmt : "NULL",
                      c->size, c->opts ? c->opts : "", m.required, c->required,
                      m.fully_allocated, c->full);
        /* No source: no bitmaps. */
        ck_assert(!m.has_bitmaps);
        ck_assert_uint_eq(m.bitmaps, 0);
    }
}
END_TEST

/* ---- Sources ------------------------------------------------------------------ */

static vdisk_dev *open_image(const char *path, const char *format)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    if (format)
        ck_assert_int_eq(vdisk_options_set(o, "format", format), 0);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, path, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    return dev;
}

static void create(const char *path, const char *format, uint64_t size, const char *list)
{
    vdisk_options *o = opts(list);
    ck_assert_msg(vdisk_create(path, format, size, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
}

static void fill(vdisk_dev *dev, uint8_t pattern, uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    memset(buf, pattern, len);
    ck_assert_msg(vdisk_pwrite(dev, buf, len, off) == 0, "%s", vdisk_get_error());
    free(buf);
}

/* A 64 MiB qcow2 image: 2 MiB of data at 0, 1 MiB of zeroes at 3 MiB,
 * 100 KiB of data at 5 MiB, 1 KiB at 33 MiB. */
static const char *data_image(void)
{
    const char *img = scratch("data.qcow2");
    create(img, "qcow2", 64 * MiB, NULL);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    fill(dev, 1, 0, 2 * MiB);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 3 * MiB, 1 * MiB, 0), 0);
    fill(dev, 2, 5 * MiB, 100 * KiB);
    fill(dev, 3, 33 * MiB, 1 * KiB);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    vdisk_close(dev);
    return img;
}

struct src_case {
    const char *fmt;
    const char *opts;
    uint64_t required, full;  /* qemu-img 7.2 on the same file */
    bool has_bitmaps;
    uint64_t bitmaps;
};

static void measure_source(const char *what, vdisk_dev *src, const struct src_case *cases,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct src_case *c = &cases[i];
        struct vdisk_measure_result m = measure(c->fmt, 0, c->opts, src);
        ck_assert_msg(m.required == c->required && m.fully_allocated == c->full &&
                      m.has_bitmaps == c->has_bitmaps && m.bitmaps == c->bitmaps,
                      "%s -O %s %s: required %" PRIu64 " (qemu-img %" PRIu64 "), fully "
                      "allocated %" PRIu64 " (%" PRIu64 "), bitmaps %d %" PRIu64 " (%d %" PRIu64
                      ")", what, c->fmt, c->opts ? c->opts : "", m.required, c->required,
                      m.fully_allocated, c->full, m.has_bitmaps, m.bitmaps, c->has_bitmaps,
                      c->bitmaps);
    }
}

START_TEST(qcow2_source)
{
    static const struct src_case cases[] = {
        /* The data clusters: 2 MiB, 2 of 100 KiB, 1 of 1 KiB (the zeroes
         * are not data); no bitmaps, but a qcow2 v3 source could have them. */
        {"qcow2", NULL, 2621440, 67436544, true, 0},
        {"qcow2", "cluster_size=2M", 16777216, 77594624, true, 0},
        {"qcow2", "cluster_size=512,refcount_bits=1", 3376640, 68191744, true, 0},
        {"qcow2", "extended_l2=on", 2621440, 67436544, true, 0},
        /* Every cluster: the backing file may share none of them. */
        {"qcow2", "backing_file=other.qcow2", 67436544, 67436544, true, 0},
        {"qcow2", "preallocation=full", 67436544, 67436544, true, 0},
        {"qcow2", "preallocation=metadata", 2621440, 67436544, true, 0},
        /* A version 2 image holds no bitmaps. */
        {"qcow2", "compat=0.10", 2621440, 67436544, false, 0},
        {"raw", NULL, 67108864, 67108864, false, 0},
    };
    vdisk_dev *src = open_image(data_image(), "qcow2");
    measure_source("data.qcow2", src, cases, sizeof cases / sizeof cases[0]);
    vdisk_close(src);
}
END_TEST

START_TEST(backing_chain)
{
    /* The data of the whole chain counts: the base's and the top's own. */
    static const struct src_case cases[] = {
        {"qcow2", NULL, 2686976, 67436544, true, 0},
        {"qcow2", "cluster_size=4k", 2539520, 67289088, true, 0},
        {"raw", NULL, 67108864, 67108864, false, 0},
    };
    const char *base = data_image(), *top = scratch("top.qcow2");
    create(top, "qcow2", 64 * MiB, fmt("backing_file=%s,backing_fmt=qcow2", base));
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, top, NULL) == 0, "%s", vdisk_get_error());
    fill(dev, 5, 8 * MiB, 64 * KiB);
    vdisk_close(dev);
    vdisk_dev *src = open_image(top, "qcow2");
    measure_source("top.qcow2", src, cases, sizeof cases / sizeof cases[0]);
    vdisk_close(src);
}
END_TEST

START_TEST(raw_source)
{
    /* 100000 bytes: the data reaches into a cluster the file ends in,
     * which counts whole, as the disk's size is rounded up to it. */
    static const struct src_case cases[] = {
        {"qcow2", NULL, 458752, 458752, false, 0},
        {"qcow2", "cluster_size=2M", 12582912, 12582912, false, 0},
        {"raw", NULL, 100352, 100352, false, 0},
    };
    const char *img = scratch("odd.raw");
    uint8_t *buf = malloc(100000);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0x3c, 100000);
    write_file(img, buf, 100000);
    free(buf);
    vdisk_dev *src = open_image(img, "raw");
    measure_source("odd.raw", src, cases, sizeof cases / sizeof cases[0]);
    vdisk_close(src);
}
END_TEST

START_TEST(v2_source)
{
    static const struct src_case cases[] = {
        {"qcow2", NULL, 1376256, 17104896, false, 0},
        {"qcow2", "cluster_size=2M", 12582912, 27262976, false, 0},
    };
    const char *img = scratch("v2.qcow2");
    create(img, "qcow2", 16 * MiB, "compat=0.10");
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    fill(dev, 7, 0, 1 * MiB);
    vdisk_close(dev);
    vdisk_dev *src = open_image(img, "qcow2");
    measure_source("v2.qcow2", src, cases, sizeof cases / sizeof cases[0]);
    vdisk_close(src);
}
END_TEST

/* ---- Bitmaps -------------------------------------------------------------------- */

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    ck_assert_int_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
}

/*
 * Gives the qcow2 image IMG (64 KiB clusters, 16-bit refcounts, no backing
 * file) persistent dirty bitmaps, as QEMU stores them: a directory in a new
 * cluster, an empty (all clear) bitmap table for each in a new cluster of
 * its own, those clusters counted in the first refcount block, and the
 * bitmaps header extension with its autoclear bit.
 */
static void add_bitmaps(const char *img, const char *const *names, const uint8_t *gran_bits,
                        unsigned n)
{
    const uint64_t cs = 64 * KiB;
    int fd = open(img, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t *hdr = calloc(1, cs);
    ck_assert_ptr_nonnull(hdr);
    ck_assert_int_eq(pread(fd, hdr, cs, 0), (ssize_t)cs);
    ck_assert_uint_eq(be32_load(hdr + 20), 16);  /* cluster bits */
    ck_assert_uint_eq(be32_load(hdr + 96), 4);   /* refcount order */
    ck_assert_uint_eq(be64_load(hdr + 8), 0);    /* no backing file name */
    uint64_t disk = be64_load(hdr + 24);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    uint64_t dir_c = ((uint64_t)st.st_size + cs - 1) / cs;

    /* The directory: one entry per bitmap, each table in the clusters after it. */
    uint8_t dir[4096] = {0};
    size_t dir_len = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t gran = 1ull << gran_bits[i], bits = (disk + gran - 1) / gran;
        uint64_t table = ((bits + 7) / 8 + cs - 1) / cs;
        size_t name_len = strlen(names[i]);
        uint8_t *e = dir + dir_len;
        be64_store(e, (dir_c + 1 + i) * cs);
        be32_store(e + 8, (uint32_t)table);
        be32_store(e + 12, 2);  /* auto: tracks writes */
        e[16] = 1;              /* dirty tracking */
        e[17] = gran_bits[i];
        be16_store(e + 18, (uint16_t)name_len);
        be32_store(e + 20, 0);  /* no extra data */
        memcpy(e + 24, names[i], name_len);
        dir_len += (24 + name_len + 7) / 8 * 8;
        ck_assert_uint_le(dir_len, sizeof dir);
    }
    uint8_t *zero = calloc(1, cs);
    ck_assert_ptr_nonnull(zero);
    memcpy(zero, dir, dir_len);
    pwrite_all(fd, zero, cs, dir_c * cs);
    memset(zero, 0, cs);
    for (unsigned i = 0; i < n; i++)
        pwrite_all(fd, zero, cs, (dir_c + 1 + i) * cs);
    free(zero);

    /* Their refcounts: 1 each in the first refcount block. */
    uint8_t be[8];
    ck_assert_int_eq(pread(fd, be, 8, (off_t)be64_load(hdr + 48)), 8);
    uint64_t block = be64_load(be);
    ck_assert_uint_ne(block, 0);
    ck_assert_uint_lt(dir_c + n, cs / 2);
    for (uint64_t c = dir_c; c <= dir_c + n; c++) {
        be16_store(be, 1);
        pwrite_all(fd, be, 2, block + c * 2);
    }

    /* The extension, in place of the end of the extensions. */
    uint64_t pos = be32_load(hdr + 100);
    while (be32_load(hdr + pos) != 0)
        pos += 8 + (be32_load(hdr + pos + 4) + 7ull) / 8 * 8;
    ck_assert_uint_lt(pos + 8 + 24 + 8, cs);
    be32_store(hdr + pos, 0x23852875);
    be32_store(hdr + pos + 4, 24);
    be32_store(hdr + pos + 8, n);
    be32_store(hdr + pos + 12, 0);
    be64_store(hdr + pos + 16, dir_len);
    be64_store(hdr + pos + 24, dir_c * cs);
    memset(hdr + pos + 32, 0, 8);
    be64_store(hdr + 88, be64_load(hdr + 88) | 1);  /* autoclear: bitmaps */
    pwrite_all(fd, hdr, cs, 0);
    free(hdr);
    ck_assert_int_eq(close(fd), 0);
}

START_TEST(bitmaps)
{
    /* Two bitmaps on a 64 MiB disk: at 64 KiB granularity (128 bytes of
     * bitmap) and at 4 KiB (2 KiB); each takes a cluster of data and one
     * of table, and the directory one more, in the new image's clusters. */
    static const struct src_case cases[] = {
        {"qcow2", NULL, 1376256, 67436544, true, 327680},
        {"qcow2", "cluster_size=512", 2386432, 68446720, true, 4096},
        {"qcow2", "cluster_size=2M", 12582912, 77594624, true, 10485760},
        {"qcow2", "refcount_bits=64,extended_l2=on", 1376256, 67436544, true, 327680},
        /* Into a version 2 image, or a raw one, they do not carry over. */
        {"qcow2", "compat=0.10", 1376256, 67436544, false, 0},
        {"raw", NULL, 67108864, 67108864, false, 0},
    };
    const char *img = scratch("bitmaps.qcow2");
    create(img, "qcow2", 64 * MiB, NULL);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    fill(dev, 9, 0, 1 * MiB);
    vdisk_close(dev);
    static const char *const names[] = {"b0", "a-longer-bitmap-name"};
    static const uint8_t grans[] = {16, 12};
    add_bitmaps(img, names, grans, 2);

    vdisk_dev *src = open_image(img, "qcow2");
    struct vdisk_info info = {.struct_size = sizeof info};
    ck_assert_int_eq(vdisk_get_info(src, &info), 0);
    ck_assert_uint_eq(info.nb_bitmaps, 2);
    ck_assert_str_eq(info.bitmaps[1].name, "a-longer-bitmap-name");
    ck_assert_uint_eq(info.bitmaps[1].granularity, 4096);
    measure_source("bitmaps.qcow2", src, cases, sizeof cases / sizeof cases[0]);
    vdisk_close(src);
}
END_TEST

/* ---- Errors ------------------------------------------------------------------- */

/* vdisk_measure fails with ERR and MSG, and leaves *RES as it was. */
static void fails(const char *fmt, uint64_t size, const char *list, vdisk_dev *src, int err,
                  const char *msg)
{
    vdisk_options *o = opts(list);
    struct vdisk_measure_result m, before;
    memset(&m, 0x5a, sizeof m);
    m.struct_size = sizeof m;
    before = m;
    int r = vdisk_measure(fmt, size, o, src, &m);
    vdisk_options_free(o);
    ck_assert_msg(r == err, "%s %" PRIu64 " %s: %d, %d expected (%s)", fmt, size,
                  list ? list : "", r, err, vdisk_get_error());
    ck_assert_str_eq(vdisk_get_error(), msg);
    ck_assert_msg(memcmp(&m, &before, sizeof m) == 0, "the result was written on an error");
}

START_TEST(errors)
{
    fails("vmdk", 1 * GiB, NULL, NULL, -ENOTSUP,
          "vdisk_measure: Format 'vmdk' does not support size measurement");
    fails("qcow2", 1 * GiB, "foo=bar", NULL, -EINVAL,
          "vdisk_measure: qcow2 does not support the option 'foo'");
    fails("raw", 1 * GiB, "cluster_size=4k", NULL, -EINVAL,
          "vdisk_measure: raw does not support the option 'cluster_size'");
    fails("raw", 1 * GiB, "preallocation=sometimes", NULL, -EINVAL,
          "vdisk_measure: invalid preallocation mode 'sometimes' for raw (expected off, "
          "falloc or full)");
    fails("qcow2", 1 * GiB, "cluster_size=1000", NULL, -EINVAL,
          "vdisk_measure: Cluster size must be a power of two between 512 and 2048k");
    fails("qcow2", 1 * GiB, "refcount_bits=3", NULL, -EINVAL,
          "vdisk_measure: Refcount width must be a power of two and may not exceed 64 "
          "bits");
    fails("qcow2", 1 * GiB, "compat=0.10,refcount_bits=8", NULL, -EINVAL,
          "vdisk_measure: Different refcount widths than 16 bits require compatibility "
          "level 1.1 or above (use compat=1.1 or greater)");
    fails("qcow2", 1 * GiB, "extended_l2=on,cluster_size=4k", NULL, -EINVAL,
          "vdisk_measure: Extended L2 entries are only supported with cluster sizes of at "
          "least 16384 bytes");
    fails("qcow2", 1 * GiB, "preallocation=sometimes", NULL, -EINVAL,
          "vdisk_measure: Invalid preallocation mode: 'sometimes'");
    /* Past what an L1 table of 32 MiB maps, and past qemu-img's sizes. */
    fails("qcow2", 2 * PiB + 1, NULL, NULL, -EFBIG,
          "vdisk_measure: The image size is too large (try using a larger cluster size)");
    fails("qcow2", 4 * TiB, "cluster_size=512", NULL, -EFBIG,
          "vdisk_measure: The image size is too large (try using a larger cluster size)");
    fails("raw", (uint64_t)INT64_MAX + 1, NULL, NULL, -EFBIG,
          "vdisk_measure: size 9223372036854775808 is too large (at most "
          "9223372036854775807 bytes)");
    struct vdisk_measure_result m = measure("raw", INT64_MAX, NULL, NULL);
    ck_assert_uint_eq(m.required, UINT64_C(1) << 63);

    /* A size and a source. */
    const char *img = scratch("e.qcow2");
    create(img, "qcow2", 1 * MiB, NULL);
    vdisk_dev *src = open_image(img, "qcow2");
    fails("qcow2", 1 * MiB, NULL, src, -EINVAL,
          fmt("vdisk_measure: both a size (1048576) and a source image (%s) given: the size "
              "of a source is its own", img));
    vdisk_close(src);

    /* No result structure. */
    ck_assert_int_eq(vdisk_measure("qcow2", 1 * GiB, NULL, NULL, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_measure: no struct vdisk_measure_result given (NULL)");
}
END_TEST

static Suite *measure_suite(void)
{
    Suite *s = suite_create("measure");
    TCase *tc = tcase_create("sizes");
    tcase_add_test(tc, empty_disks);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("sources");
    tcase_add_test(tc, qcow2_source);
    tcase_add_test(tc, backing_chain);
    tcase_add_test(tc, raw_source);
    tcase_add_test(tc, v2_source);
    tcase_add_test(tc, bitmaps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(measure_suite());
}
