/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/abi.c: the struct_size contract of every public structure
 * that carries one (see "Structures that grow" in vdisk/device.h).
 *
 * Each structure is handed to the library in a buffer with guard bytes on
 * both sides, its own bytes filled with a pattern, and struct_size set to
 * what an older or a newer program would set.  The library must:
 *   - accept any struct_size from the first version's (VDISK_*_SIZE_V1) up,
 *     fill (or read) exactly the fields that fit, and never write past
 *     min(struct_size, its own sizeof): the guard bytes and the bytes a
 *     newer program has past the library's structure stay as they were;
 *   - set struct_size to the bytes filled (output structures);
 *   - refuse a struct_size of 0 or below the first version with -EINVAL and
 *     a message naming the structure and the sizes, writing nothing.
 * An older program is simulated for vdisk_info, whose first version is
 * smaller than today's: a local copy of its first layout is passed in.  For
 * the input structures (all still at their first version), the defaults of
 * the fields an older caller lacks are tested on the library's helper with
 * a structure that grew.  Input structures are also read from a heap
 * block of exactly struct_size bytes, so that ASan catches a read past it.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "abi.h"
#include "harness.h"
#include "nbd/nbd_internal.h"
#include "virtio/virtio_internal.h"

#define GUARD 64
#define EXTRA 40 /* bytes a newer program's structure has past ours */
#define GUARD_BYTE 0xa5
#define FILL_BYTE 0x5a

/* A caller's structure of N bytes between two guards, filled with FILL_BYTE. */
struct guarded {
    uint8_t *base;
    size_t n;
};

static void *g_new(struct guarded *g, size_t n)
{
    g->n = n;
    g->base = malloc(GUARD + n + GUARD);
    ck_assert_ptr_nonnull(g->base);
    memset(g->base, GUARD_BYTE, GUARD);
    memset(g->base + GUARD, FILL_BYTE, n);
    memset(g->base + GUARD + n, GUARD_BYTE, GUARD);
    void *s = g->base + GUARD;
    memcpy(s, &n, sizeof n); /* struct_size */
    return s;
}

/* The guards are intact, and so are the structure's bytes from FROM on. */
static void g_check(const struct guarded *g, size_t from, const char *what)
{
    for (size_t i = 0; i < GUARD; i++) {
        ck_assert_msg(g->base[i] == GUARD_BYTE, "%s: guard byte %zu before the structure "
                      "was written", what, GUARD - i);
        ck_assert_msg(g->base[GUARD + g->n + i] == GUARD_BYTE,
                      "%s: guard byte %zu past the structure (of %zu bytes) was written", what,
                      i, g->n);
    }
    for (size_t i = from; i < g->n; i++)
        ck_assert_msg(g->base[GUARD + i] == FILL_BYTE,
                      "%s: byte %zu of the caller's %zu was written (the library has %zu)",
                      what, i, g->n, from);
}

static size_t size_of(const void *s)
{
    size_t n;
    memcpy(&n, s, sizeof n);
    return n;
}

/* R is -EINVAL with the message for struct TYPE of struct_size N. */
static void expect_size_error(int r, const char *func, const char *type, size_t n, size_t v1,
                              size_t cur)
{
    ck_assert_int_eq(r, -EINVAL);
    char want[512];
    snprintf(want, sizeof want, "%s: struct %s: struct_size is %zu bytes, smaller than its "
             "first version (%zu bytes; %zu in this library): set it to sizeof(struct %s)",
             func, type, n, v1, cur, type);
    ck_assert_str_eq(vdisk_get_error(), want);
}

/*
 * Runs CALL (which passes the structure S) with struct_size 0, V1 - 1
 * (and a structure of that many bytes): -EINVAL, nothing written.
 */
#define EXPECT_TOO_SMALL(type, v1, func, call)                                     \
    do {                                                                           \
        size_t bad_[2] = {0, (v1) - 1};                                            \
        for (int k_ = 0; k_ < 2; k_++) {                                           \
            struct guarded g_;                                                     \
            struct type *s = g_new(&g_, (v1) - 1);                                 \
            memcpy(s, &bad_[k_], sizeof(size_t));                                  \
            expect_size_error((call), func, #type, bad_[k_], (v1), sizeof(struct type)); \
            ck_assert_uint_eq(size_of(s), bad_[k_]);                               \
            g_check(&g_, sizeof(size_t), #type " too small");                     \
            free(g_.base);                                                         \
        }                                                                          \
    } while (0)

/*
 * Runs CALL on the structure S of N bytes (struct_size N); it must return
 * 0, set struct_size to the smaller of N and ours, and write nothing past
 * that.  BODY then checks the fields.
 */
#define WITH_OUTPUT(type, nbytes, call, body)                                      \
    do {                                                                           \
        struct guarded g_;                                                         \
        size_t n_ = (nbytes), cur_ = sizeof(struct type);                          \
        struct type *s = g_new(&g_, n_);                                           \
        int r_ = (call);                                                           \
        ck_assert_msg(r_ == 0, #call ": %d %s", r_, vdisk_get_error());            \
        ck_assert_uint_eq(size_of(s), n_ < cur_ ? n_ : cur_);                      \
        g_check(&g_, n_ < cur_ ? n_ : cur_, #type);                                \
        body;                                                                      \
        free(g_.base);                                                             \
    } while (0)

/* Both sizes a caller may have today: the first version and a newer one. */
#define OUTPUT_SIZES(type, v1, call, body)                                         \
    do {                                                                           \
        WITH_OUTPUT(type, (v1), call, body);                                       \
        WITH_OUTPUT(type, sizeof(struct type) + EXTRA, call, body);                \
    } while (0)

/* A copy of the caller's input structure S in a heap block of exactly N bytes. */
static void *exact_copy(const void *s, size_t n)
{
    void *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    memcpy(p, s, n);
    memcpy(p, &n, sizeof n);
    return p;
}

/* An input structure of a newer program: ours, then EXTRA bytes of fields we do not know. */
static void *newer_copy(const void *s, size_t cur)
{
    uint8_t *p = malloc(cur + EXTRA);
    ck_assert_ptr_nonnull(p);
    memcpy(p, s, cur);
    memset(p + cur, 0xee, EXTRA);
    size_t n = cur + EXTRA;
    memcpy(p, &n, sizeof n);
    return p;
}

/* Opens the raw image PATH, its format given. */
static vdisk_dev *open_raw(const char *path)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, path, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    return dev;
}

/* ---- vdisk_info, vdisk_check_result, vdisk_snapshot, vdisk_measure_result ----- */

/* struct vdisk_info as its first version had it, as an older program was built. */
struct vdisk_info_v1 {
    size_t struct_size;
    const char *format;
    const char *filename;
    uint64_t virtual_size;
    int64_t actual_size;
    uint32_t cluster_size;
    bool dirty;
    const char *backing_filename;
    const char *full_backing_filename;
    const char *backing_format;
    const char *compat;
    const char *compression_type;
    bool lazy_refcounts;
    bool corrupt;
    bool extended_l2;
    uint32_t refcount_bits;
};

static vdisk_dev *qcow2_image(void)
{
    const char *img = scratch("abi.qcow2");
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_parse(o, "cluster_size=4k,compression_type=zstd,"
                                            "refcount_bits=8"), 0);
    ck_assert_msg(vdisk_create(img, "qcow2", 1 << 20, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    uint8_t buf[8192];
    memset(buf, 7, sizeof buf);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 65536), 0);
    ck_assert_msg(vdisk_snapshot_create(dev, "first") == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_flush(dev), 0);
    return dev;
}

START_TEST(info_older_program)
{
    vdisk_dev *dev = qcow2_image();
    ck_assert_uint_eq(VDISK_INFO_SIZE_V1, VDISK_STRUCT_END(struct vdisk_info_v1, refcount_bits));
    ck_assert_uint_lt(VDISK_INFO_SIZE_V1, sizeof(struct vdisk_info));

    /* An older program's structure, in its own layout. */
    struct guarded g;
    struct vdisk_info_v1 *old = g_new(&g, sizeof(struct vdisk_info_v1));
    ck_assert_msg(vdisk_get_info(dev, (struct vdisk_info *)old) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(old->struct_size, sizeof(struct vdisk_info_v1));
    g_check(&g, sizeof(struct vdisk_info_v1), "vdisk_info (first layout)");
    ck_assert_str_eq(old->format, "qcow2");
    ck_assert_uint_eq(old->virtual_size, 1 << 20);
    ck_assert_uint_eq(old->cluster_size, 4096);
    ck_assert_str_eq(old->compat, "1.1");
    ck_assert_str_eq(old->compression_type, "zstd");
    ck_assert_int_eq(old->refcount_bits, 8);
    ck_assert_ptr_null(old->backing_filename);
    free(g.base);

    /* The first version's exact size, and a newer program's. */
    OUTPUT_SIZES(vdisk_info, VDISK_INFO_SIZE_V1, vdisk_get_info(dev, s), {
        ck_assert_str_eq(s->format, "qcow2");
        ck_assert_uint_eq(s->refcount_bits, 8);
        if (n_ >= cur_) {
            ck_assert_uint_eq(s->nb_bitmaps, 0);
            ck_assert_ptr_null(s->bitmaps);
        }
    });
    EXPECT_TOO_SMALL(vdisk_info, VDISK_INFO_SIZE_V1, "vdisk_get_info", vdisk_get_info(dev, s));
    vdisk_close(dev);
}
END_TEST

START_TEST(check_result)
{
    vdisk_dev *dev = qcow2_image();
    ck_assert_uint_eq(VDISK_CHECK_RESULT_SIZE_V1,
                      offsetof(struct vdisk_check_result, repaired) + sizeof(int));
    OUTPUT_SIZES(vdisk_check_result, VDISK_CHECK_RESULT_SIZE_V1,
                 vdisk_check(dev, 0, s, NULL, NULL), {
        ck_assert_int_eq(s->corruptions, 0);
        ck_assert_int_eq(s->leaks, 0);
        ck_assert_int_eq(s->check_errors, 0);
        ck_assert_int_eq(s->corruptions_fixed, 0);
        ck_assert_int_eq(s->leaks_fixed, 0);
        ck_assert_uint_eq(s->total_clusters, 256);
        ck_assert_uint_eq(s->allocated_clusters, 2);
        ck_assert_uint_gt(s->image_end_offset, 0);
        ck_assert_int_eq(s->repaired, 0);
    });
    EXPECT_TOO_SMALL(vdisk_check_result, VDISK_CHECK_RESULT_SIZE_V1, "vdisk_check",
                     vdisk_check(dev, 0, s, NULL, NULL));
    vdisk_close(dev);

    /* A format without metadata: -ENOTSUP, the result still filled (zeroes). */
    const char *raw = scratch("abi.raw");
    ck_assert_int_eq(vdisk_create(raw, "raw", 1 << 20, NULL), 0);
    dev = open_raw(raw);
    struct guarded g;
    struct vdisk_check_result *s = g_new(&g, VDISK_CHECK_RESULT_SIZE_V1);
    ck_assert_int_eq(vdisk_check(dev, 0, s, NULL, NULL), -ENOTSUP);
    ck_assert_uint_eq(s->struct_size, VDISK_CHECK_RESULT_SIZE_V1);
    ck_assert_int_eq(s->corruptions, 0);
    ck_assert_int_eq(s->repaired, 0);
    g_check(&g, VDISK_CHECK_RESULT_SIZE_V1, "vdisk_check_result (raw)");
    free(g.base);
    vdisk_close(dev);
}
END_TEST

START_TEST(snapshot)
{
    vdisk_dev *dev = qcow2_image();
    ck_assert_uint_eq(VDISK_SNAPSHOT_SIZE_V1,
                      offsetof(struct vdisk_snapshot, has_icount) + sizeof(bool));
    OUTPUT_SIZES(vdisk_snapshot, VDISK_SNAPSHOT_SIZE_V1, vdisk_snapshot_get(dev, 0, s), {
        ck_assert_str_eq(s->id, "1");
        ck_assert_str_eq(s->name, "first");
        ck_assert_uint_eq(s->disk_size, 1 << 20);
        ck_assert_uint_eq(s->vm_state_size, 0);
    });
    EXPECT_TOO_SMALL(vdisk_snapshot, VDISK_SNAPSHOT_SIZE_V1, "vdisk_snapshot_get",
                     vdisk_snapshot_get(dev, 0, s));
    /* An index out of range writes nothing. */
    struct guarded g;
    struct vdisk_snapshot *s = g_new(&g, sizeof *s);
    ck_assert_int_eq(vdisk_snapshot_get(dev, 1, s), -ENOENT);
    g_check(&g, sizeof(size_t), "vdisk_snapshot (-ENOENT)");
    free(g.base);
    vdisk_close(dev);
}
END_TEST

START_TEST(measure_result)
{
    ck_assert_uint_eq(VDISK_MEASURE_RESULT_SIZE_V1,
                      offsetof(struct vdisk_measure_result, bitmaps) + sizeof(uint64_t));
    /* qemu-img 7.2: an empty 1 GiB qcow2 image, default options. */
    OUTPUT_SIZES(vdisk_measure_result, VDISK_MEASURE_RESULT_SIZE_V1,
                 vdisk_measure("qcow2", 1 << 30, NULL, NULL, s), {
        ck_assert_uint_eq(s->required, 393216);
        ck_assert_uint_eq(s->fully_allocated, 1074135040);
        ck_assert(!s->has_bitmaps);
        ck_assert_uint_eq(s->bitmaps, 0);
    });
    EXPECT_TOO_SMALL(vdisk_measure_result, VDISK_MEASURE_RESULT_SIZE_V1, "vdisk_measure",
                     vdisk_measure("qcow2", 1 << 30, NULL, NULL, s));
}
END_TEST

/* ---- ISO 9660 and the CD-ROM drive ---------------------------------------------- */

static const char *make_iso(void)
{
    const char *t = scratch("iso-tree"), *iso = scratch("abi.iso");
    RUN_OK("rm -rf '%s' && mkdir -p '%s' && echo hello > '%s/hello.txt' && "
           "head -c 2048 /dev/zero > '%s/boot.img' && "
           "xorriso -as mkisofs -quiet -R -V ABI_VOL -b boot.img -no-emul-boot "
           "-boot-load-size 4 -o '%s' '%s' 2>/dev/null", t, t, t, t, iso, t);
    return iso;
}

START_TEST(iso_structures)
{
    CASE_REQUIRE_PROGRAM("xorriso");
    const char *path = make_iso();
    vdisk_dev *dev = open_raw(path);
    vdisk_iso *iso;
    ck_assert_msg(vdisk_iso_open(&iso, dev, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(VDISK_ISO_INFO_SIZE_V1,
                      offsetof(struct vdisk_iso_info, boot_entries) + sizeof(unsigned));
    OUTPUT_SIZES(vdisk_iso_info, VDISK_ISO_INFO_SIZE_V1, vdisk_iso_get_info(iso, s), {
        ck_assert_str_eq(s->volume_id, "ABI_VOL");
        ck_assert_uint_eq(s->block_size, 2048);
        ck_assert_uint_eq(s->volume_space_size * 2048ull, vdisk_get_size(dev));
        ck_assert_int_eq(s->rr_version, 1);
        ck_assert_uint_eq(s->boot_entries, 1);
    });
    EXPECT_TOO_SMALL(vdisk_iso_info, VDISK_ISO_INFO_SIZE_V1, "vdisk_iso_get_info",
                     vdisk_iso_get_info(iso, s));

    ck_assert_uint_eq(VDISK_ISO_BOOT_SIZE_V1,
                      offsetof(struct vdisk_iso_boot, image_size) + sizeof(uint64_t));
    OUTPUT_SIZES(vdisk_iso_boot, VDISK_ISO_BOOT_SIZE_V1, vdisk_iso_boot_get(iso, 0, s), {
        ck_assert_uint_eq(s->index, 0);
        ck_assert_int_eq(s->bootable, 1);
        ck_assert_uint_eq(s->platform, VDISK_ELTORITO_PLATFORM_X86);
        ck_assert_uint_eq(s->media, VDISK_ELTORITO_NOEMUL);
        ck_assert_uint_eq(s->sector_count, 4);
        ck_assert_uint_eq(s->image_size, 2048);
    });
    EXPECT_TOO_SMALL(vdisk_iso_boot, VDISK_ISO_BOOT_SIZE_V1, "vdisk_iso_boot_get",
                     vdisk_iso_boot_get(iso, 0, s));
    vdisk_iso_close(iso);
    uint64_t size = vdisk_get_size(dev);
    vdisk_close(dev);

    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, path, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(VDISK_CDROM_MEDIA_SIZE_V1,
                      offsetof(struct vdisk_cdrom_media, lead_out) + sizeof(uint64_t));
    OUTPUT_SIZES(vdisk_cdrom_media, VDISK_CDROM_MEDIA_SIZE_V1, vdisk_cdrom_get_media(cd, s), {
        ck_assert_int_eq(s->loaded, 1);
        ck_assert_uint_eq(s->blocks, size / 2048);
        ck_assert_str_eq(s->volume_id, "ABI_VOL");
        ck_assert_uint_eq(s->media_changes, 0);
        ck_assert_uint_eq(s->tracks, 1);
        ck_assert_uint_eq(s->track_start, 0);
        ck_assert_uint_eq(s->lead_out, size / 2048);
    });
    EXPECT_TOO_SMALL(vdisk_cdrom_media, VDISK_CDROM_MEDIA_SIZE_V1, "vdisk_cdrom_get_media",
                     vdisk_cdrom_get_media(cd, s));
    vdisk_close(cd);
}
END_TEST

START_TEST(cdrom_empty)
{
    /* No medium, no outside tool: every field is still written. */
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, NULL, NULL) == 0, "%s", vdisk_get_error());
    OUTPUT_SIZES(vdisk_cdrom_media, VDISK_CDROM_MEDIA_SIZE_V1, vdisk_cdrom_get_media(cd, s), {
        ck_assert_int_eq(s->loaded, 0);
        ck_assert_uint_eq(s->blocks, 0);
        ck_assert_str_eq(s->volume_id, "");
        ck_assert_uint_eq(s->tracks, 0);
        ck_assert_uint_eq(s->lead_out, 0);
    });
    vdisk_close(cd);
}
END_TEST

/* ---- Partitions ------------------------------------------------------------------ */

START_TEST(partition)
{
    const char *img = scratch("abi-part.img");
    ck_assert_int_eq(vdisk_create(img, "raw", 16 << 20, NULL), 0);
    vdisk_dev *disk = open_raw(img);
    vdisk_ptable *t;
    ck_assert_msg(vdisk_part_new(&t, disk, VDISK_PT_GPT, 512) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(VDISK_PARTITION_SIZE_V1,
                      offsetof(struct vdisk_partition, attrs) + sizeof(uint64_t));

    /* vdisk_part_add reads and writes the caller's structure: in and out. */
    struct vdisk_partition in = {.struct_size = sizeof in, .size = 2048};
    snprintf(in.name, sizeof in.name, "first");
    for (int newer = 0; newer < 2; newer++) {
        struct guarded g;
        size_t n = newer ? sizeof in + EXTRA : VDISK_PARTITION_SIZE_V1;
        struct vdisk_partition *s = g_new(&g, n);
        memcpy((uint8_t *)s + sizeof(size_t), (uint8_t *)&in + sizeof(size_t),
               (n < sizeof in ? n : sizeof in) - sizeof(size_t));
        ck_assert_msg(vdisk_part_add(t, s) == 0, "%s", vdisk_get_error());
        /* (version 1's caller gets version 1's bytes back, no more) */
        ck_assert_uint_eq(s->struct_size, n < sizeof in ? n : sizeof in);
        g_check(&g, sizeof in, "vdisk_partition (add)");
        ck_assert_uint_eq(s->number, 1u + (unsigned)newer);
        ck_assert_uint_eq(s->size, 2048);
        ck_assert_uint_eq(s->start, 2048u + 2048u * (unsigned)newer);
        ck_assert_str_eq(s->name, "first");
        ck_assert_str_eq(s->type_guid, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        free(g.base);
    }
    /* Read from exactly struct_size bytes (ASan sees a read past them). */
    struct vdisk_partition *x = exact_copy(&in, VDISK_PARTITION_SIZE_V1);
    ck_assert_msg(vdisk_part_add(t, x) == 0, "%s", vdisk_get_error());
    unsigned number; /* (read as version 1's caller can: x has its bytes only) */
    memcpy(&number, (uint8_t *)x + offsetof(struct vdisk_partition, number), sizeof number);
    ck_assert_uint_eq(number, 3);
    free(x);
    EXPECT_TOO_SMALL(vdisk_partition, VDISK_PARTITION_SIZE_V1, "vdisk_part_add",
                     vdisk_part_add(t, s));
    ck_assert_uint_eq(vdisk_part_count(t), 3);

    OUTPUT_SIZES(vdisk_partition, VDISK_PARTITION_SIZE_V1, vdisk_part_get(t, 1, s), {
        ck_assert_uint_eq(s->number, 2);
        ck_assert_uint_eq(s->start, 4096);
        ck_assert_uint_eq(s->size, 2048);
        ck_assert_str_eq(s->name, "first");
        ck_assert_uint_eq(s->attrs, 0);
    });
    OUTPUT_SIZES(vdisk_partition, VDISK_PARTITION_SIZE_V1, vdisk_part_find(t, 3, s), {
        ck_assert_uint_eq(s->number, 3);
        ck_assert_uint_eq(s->start, 6144);
    });
    EXPECT_TOO_SMALL(vdisk_partition, VDISK_PARTITION_SIZE_V1, "vdisk_part_get",
                     vdisk_part_get(t, 0, s));
    EXPECT_TOO_SMALL(vdisk_partition, VDISK_PARTITION_SIZE_V1, "vdisk_part_find",
                     vdisk_part_find(t, 1, s));
    vdisk_part_free(t);
    vdisk_close(disk);
}
END_TEST

/* ---- virtio ---------------------------------------------------------------------- */

static vdisk_dev *raw_disk(void)
{
    const char *img = scratch("abi-virtio.img");
    ck_assert_int_eq(vdisk_create(img, "raw", 1 << 20, NULL), 0);
    return open_raw(img);
}

#define VIRTIO_BLK_F_RO 5

static uint32_t blk_seg_max(vdisk_virtio *v)
{
    uint32_t seg_max;
    ck_assert_int_eq(vdisk_virtio_config_read(v, 12, &seg_max, 4), 0);
    return seg_max;
}

START_TEST(virtio_blk_params)
{
    vdisk_dev *dev = raw_disk();
    vdisk_virtio *v;
    ck_assert_uint_eq(VDISK_VIRTIO_BLK_PARAMS_SIZE_V1,
                      offsetof(struct vdisk_virtio_blk_params, read_only) + sizeof(int));
    struct vdisk_virtio_blk_params p = {.struct_size = sizeof p, .num_queues = 3,
                                        .queue_size = 64, .serial = "abi", .seg_max = 100,
                                        .read_only = 1};
    /* Exactly the first version's bytes, and a newer program's with fields we ignore. */
    for (int newer = 0; newer < 2; newer++) {
        void *x = newer ? newer_copy(&p, sizeof p)
                        : exact_copy(&p, VDISK_VIRTIO_BLK_PARAMS_SIZE_V1);
        ck_assert_msg(vdisk_virtio_blk_new(&v, dev, x) == 0, "%s", vdisk_get_error());
        free(x);
        ck_assert_uint_eq(vdisk_virtio_num_queues(v), 3);
        ck_assert_uint_eq(vdisk_virtio_queue_max_size(v), 64);
        ck_assert_uint_eq(blk_seg_max(v), 100);
        ck_assert(vdisk_virtio_features(v) & 1ull << VIRTIO_BLK_F_RO);
        vdisk_virtio_free(v);
    }
    /* No parameters: every default. */
    ck_assert_int_eq(vdisk_virtio_blk_new(&v, dev, NULL), 0);
    ck_assert_uint_eq(vdisk_virtio_num_queues(v), 1);
    ck_assert_uint_eq(vdisk_virtio_queue_max_size(v), 256);
    ck_assert_uint_eq(blk_seg_max(v), 254);
    ck_assert(!(vdisk_virtio_features(v) & 1ull << VIRTIO_BLK_F_RO));
    vdisk_virtio_free(v);
    /* Too small: -EINVAL, no device. */
    size_t bad[2] = {0, VDISK_VIRTIO_BLK_PARAMS_SIZE_V1 - 1};
    for (int k = 0; k < 2; k++) {
        p.struct_size = bad[k];
        v = (vdisk_virtio *)&p;
        expect_size_error(vdisk_virtio_blk_new(&v, dev, &p), "vdisk_virtio_blk_new",
                          "vdisk_virtio_blk_params", bad[k], VDISK_VIRTIO_BLK_PARAMS_SIZE_V1,
                          sizeof p);
        ck_assert_ptr_null(v);
    }
    vdisk_close(dev);
}
END_TEST

START_TEST(virtio_scsi_params)
{
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, NULL, NULL) == 0, "%s", vdisk_get_error());
    vdisk_virtio *v;
    ck_assert_uint_eq(VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1,
                      offsetof(struct vdisk_virtio_scsi_params, product) + sizeof(char *));
    struct vdisk_virtio_scsi_params p = {.struct_size = sizeof p, .num_queues = 3,
                                         .queue_size = 32, .vendor = "ABI",
                                         .product = "TEST"};
    for (int newer = 0; newer < 2; newer++) {
        void *x = newer ? newer_copy(&p, sizeof p)
                        : exact_copy(&p, VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1);
        ck_assert_msg(vdisk_virtio_scsi_cdrom_new(&v, cd, x) == 0, "%s", vdisk_get_error());
        free(x);
        ck_assert_uint_eq(vdisk_virtio_num_queues(v), 3 + 2);
        ck_assert_uint_eq(vdisk_virtio_queue_max_size(v), 32);
        vdisk_virtio_free(v);
    }
    ck_assert_int_eq(vdisk_virtio_scsi_cdrom_new(&v, cd, NULL), 0);
    ck_assert_uint_eq(vdisk_virtio_num_queues(v), 1 + 2);
    ck_assert_uint_eq(vdisk_virtio_queue_max_size(v), 256);
    vdisk_virtio_free(v);
    size_t bad[2] = {0, VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1 - 1};
    for (int k = 0; k < 2; k++) {
        p.struct_size = bad[k];
        expect_size_error(vdisk_virtio_scsi_cdrom_new(&v, cd, &p), "vdisk_virtio_scsi_cdrom_new",
                          "vdisk_virtio_scsi_params", bad[k], VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1,
                          sizeof p);
        ck_assert_ptr_null(v);
    }
    vdisk_close(cd);
}
END_TEST

static void on_notify(void *opaque, unsigned q)
{
    (void)opaque;
    (void)q;
}

static void on_log(void *opaque, const char *message)
{
    (void)opaque;
    (void)message;
}

START_TEST(virtio_host_and_stats)
{
    vdisk_dev *dev = raw_disk();
    vdisk_virtio *v;
    ck_assert_int_eq(vdisk_virtio_blk_new(&v, dev, NULL), 0);
    ck_assert_uint_eq(VDISK_VIRTIO_HOST_SIZE_V1,
                      offsetof(struct vdisk_virtio_host, opaque) + sizeof(void *));
    int token;
    struct vdisk_virtio_host h = {.struct_size = sizeof h, .notify = on_notify,
                                  .log = on_log, .opaque = &token};
    for (int newer = 0; newer < 2; newer++) {
        void *x = newer ? newer_copy(&h, sizeof h) : exact_copy(&h, VDISK_VIRTIO_HOST_SIZE_V1);
        ck_assert_int_eq(vdisk_virtio_set_host(v, NULL), 0);
        ck_assert_ptr_null(v->host.notify);
        ck_assert_int_eq(vdisk_virtio_set_host(v, x), 0);
        free(x);
        ck_assert(v->host.notify == on_notify);
        ck_assert(v->host.log == on_log);
        ck_assert_ptr_eq(v->host.opaque, &token);
    }
    /* Too small: -EINVAL, the callbacks set before are kept. */
    size_t bad[2] = {0, VDISK_VIRTIO_HOST_SIZE_V1 - 1};
    struct vdisk_virtio_host other = {.notify = NULL, .log = NULL, .opaque = NULL};
    for (int k = 0; k < 2; k++) {
        other.struct_size = bad[k];
        expect_size_error(vdisk_virtio_set_host(v, &other), "vdisk_virtio_set_host",
                          "vdisk_virtio_host", bad[k], VDISK_VIRTIO_HOST_SIZE_V1, sizeof other);
        ck_assert(v->host.notify == on_notify);
        ck_assert_ptr_eq(v->host.opaque, &token);
    }

    ck_assert_uint_eq(VDISK_VIRTIO_STATS_SIZE_V1,
                      offsetof(struct vdisk_virtio_stats, bytes_written) + sizeof(uint64_t));
    v->stats = (struct vdisk_virtio_stats){.requests = 11, .errors = 2, .notifies = 5,
                                           .bytes_read = 4096, .bytes_written = 512};
    OUTPUT_SIZES(vdisk_virtio_stats, VDISK_VIRTIO_STATS_SIZE_V1, vdisk_virtio_get_stats(v, s), {
        ck_assert_uint_eq(s->requests, 11);
        ck_assert_uint_eq(s->errors, 2);
        ck_assert_uint_eq(s->notifies, 5);
        ck_assert_uint_eq(s->bytes_read, 4096);
        ck_assert_uint_eq(s->bytes_written, 512);
    });
    EXPECT_TOO_SMALL(vdisk_virtio_stats, VDISK_VIRTIO_STATS_SIZE_V1, "vdisk_virtio_get_stats",
                     vdisk_virtio_get_stats(v, s));
    vdisk_virtio_free(v);
    vdisk_close(dev);
}
END_TEST

/* ---- The library's helper, on a structure that grew -------------------------------- */

/* Version 1 of a parameters structure, and version 2 with two more fields. */
struct params_v1 {
    size_t struct_size;
    unsigned a;
    const char *b;
};
struct params_v2 {
    size_t struct_size;
    unsigned a;
    const char *b;
    unsigned c;       /* default 0 */
    uint64_t d;       /* default 0 */
};
#define PARAMS_SIZE_V1 VDISK_STRUCT_END(struct params_v2, b)

START_TEST(helper_input_defaults)
{
    /* An older caller's v1 structure, in exactly its bytes: v2's fields are 0. */
    struct params_v1 old = {.struct_size = sizeof old, .a = 7, .b = "x"};
    struct params_v1 *x = exact_copy(&old, sizeof old);
    struct params_v2 in;
    memset(&in, 0xff, sizeof in);
    err_enter("test_call");
    ck_assert_int_eq(ABI_IN(params_v2, &in, x, PARAMS_SIZE_V1), 0);
    free(x);
    ck_assert_uint_eq(in.struct_size, sizeof old);
    ck_assert_uint_eq(in.a, 7);
    ck_assert_str_eq(in.b, "x");
    ck_assert_uint_eq(in.c, 0);
    ck_assert_uint_eq(in.d, 0);
    /* A newer caller's: what is past v2 is not read. */
    struct params_v2 cur = {.struct_size = sizeof cur, .a = 1, .b = "y", .c = 3, .d = 4};
    void *y = newer_copy(&cur, sizeof cur);
    ck_assert_int_eq(ABI_IN(params_v2, &in, y, PARAMS_SIZE_V1), 0);
    free(y);
    ck_assert_uint_eq(in.struct_size, sizeof cur);
    ck_assert_uint_eq(in.c, 3);
    ck_assert_uint_eq(in.d, 4);
    /* Below v1. */
    old.struct_size = PARAMS_SIZE_V1 - 1;
    expect_size_error(ABI_IN(params_v2, &in, &old, PARAMS_SIZE_V1), "test_call", "params_v2",
                      PARAMS_SIZE_V1 - 1, PARAMS_SIZE_V1, sizeof in);
    ck_assert_int_eq(ABI_IN(params_v2, &in, NULL, PARAMS_SIZE_V1), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "test_call: no struct params_v2 given (NULL)");

    /* Output: an older caller's v1 gets v1's fields, nothing past them. */
    struct guarded g;
    struct params_v1 *o = g_new(&g, sizeof(struct params_v1));
    size_t have;
    ck_assert_int_eq(ABI_SIZE(params_v2, o, PARAMS_SIZE_V1, &have), 0);
    struct params_v2 full = {.a = 9, .b = "z", .c = 10, .d = 11};
    abi_copy_out(o, &full, have, sizeof full);
    ck_assert_uint_eq(o->struct_size, sizeof(struct params_v1));
    ck_assert_uint_eq(o->a, 9);
    ck_assert_str_eq(o->b, "z");
    g_check(&g, sizeof(struct params_v1), "params_v1");
    free(g.base);
}
END_TEST

/* ---- NBD ------------------------------------------------------------------------- */

START_TEST(nbd_params)
{
    vdisk_dev *dev = raw_disk();
    vdisk_nbd *h;
    ck_assert_uint_eq(VDISK_NBD_PARAMS_SIZE_V1,
                      offsetof(struct vdisk_nbd_params, log_opaque) + sizeof(void *));
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .flags = VDISK_NBD_READ_ONLY,
                                 .export_name = "abi", .description = "d", .max_clients = 3,
                                 .handshake_timeout_ms = 5, .request_timeout_ms = 7};
    /* Exactly the first version's bytes, and a newer program's with fields we ignore. */
    for (int newer = 0; newer < 2; newer++) {
        void *x = newer ? newer_copy(&p, sizeof p) : exact_copy(&p, VDISK_NBD_PARAMS_SIZE_V1);
        ck_assert_msg(vdisk_nbd_new(&h, dev, -1, x) == 0, "%s", vdisk_get_error());
        free(x);
        ck_assert(h->read_only);
        ck_assert_str_eq(h->export_name, "abi");
        ck_assert_str_eq(h->description, "d");
        ck_assert_uint_eq(h->max_clients, 3);
        ck_assert_uint_eq(h->handshake_ms, 5);
        ck_assert_uint_eq(h->request_ms, 7);
        vdisk_nbd_free(h);
    }
    /* No parameters: every default. */
    ck_assert_int_eq(vdisk_nbd_new(&h, dev, -1, NULL), 0);
    ck_assert(!h->read_only);
    ck_assert_str_eq(h->export_name, "");
    ck_assert_ptr_null(h->description);
    ck_assert_uint_eq(h->max_clients, 1);
    ck_assert_uint_eq(h->handshake_ms, VDISK_NBD_HANDSHAKE_TIMEOUT_MS);
    ck_assert_uint_eq(h->request_ms, VDISK_NBD_REQUEST_TIMEOUT_MS);
    vdisk_nbd_free(h);
    /* Too small: -EINVAL, no handle. */
    size_t bad[2] = {0, VDISK_NBD_PARAMS_SIZE_V1 - 1};
    for (int k = 0; k < 2; k++) {
        p.struct_size = bad[k];
        h = (vdisk_nbd *)&p;
        expect_size_error(vdisk_nbd_new(&h, dev, -1, &p), "vdisk_nbd_new", "vdisk_nbd_params",
                          bad[k], VDISK_NBD_PARAMS_SIZE_V1, sizeof p);
        ck_assert_ptr_null(h);
    }
    vdisk_close(dev);
}
END_TEST

static Suite *abi_suite(void)
{
    Suite *s = suite_create("abi");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, info_older_program);
    tcase_add_test(tc, check_result);
    tcase_add_test(tc, snapshot);
    tcase_add_test(tc, measure_result);
    suite_add_tcase(s, tc);
    tc = tcase_create("iso");
    tcase_add_test(tc, iso_structures);
    tcase_add_test(tc, cdrom_empty);
    suite_add_tcase(s, tc);
    tc = tcase_create("part");
    tcase_add_test(tc, partition);
    suite_add_tcase(s, tc);
    tc = tcase_create("virtio");
    tcase_add_test(tc, virtio_blk_params);
    tcase_add_test(tc, virtio_scsi_params);
    tcase_add_test(tc, virtio_host_and_stats);
    suite_add_tcase(s, tc);
    tc = tcase_create("nbd");
    tcase_add_test(tc, nbd_params);
    suite_add_tcase(s, tc);
    tc = tcase_create("helper");
    tcase_add_test(tc, helper_input_defaults);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(abi_suite());
}
