/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/qcow2_hostile.c: damaged and hostile qcow2 images, in the
 * manner of QEMU's iotest 080.  Each one gets a clear error naming the
 * problem (exact messages asserted), never a crash, a hang or an
 * allocation beyond the file's size.
 *
 * The base image: vdisk create -f qcow2 (64 KiB clusters) of 1 MiB, with
 * 128 KiB of 0x01 at offset 0.  Layout: header at 0, refcount table at
 * 0x10000, refcount block at 0x20000, L1 table at 0x30000 (one entry),
 * the L2 table at 0x40000 (made before the data, as QEMU orders them),
 * data at 0x50000 and 0x60000.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

static const char *img;

static void make_base(void)
{
    img = scratch("h.qcow2");
    RUN_OK("%s create -q -f qcow2 '%s' 1M", vdisk_bin(), img);
    RUN_OK("%s io -c 'write -q -P 1 0 128k' '%s'", vdisk_bin(), img);
}

static void patch(uint64_t off, const void *data, size_t len)
{
    int fd = open(img, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void patch32(uint64_t off, uint32_t v)
{
    uint8_t b[4];
    be32_store(b, v);
    patch(off, b, 4);
}

static void patch64(uint64_t off, uint64_t v)
{
    uint8_t b[8];
    be64_store(b, v);
    patch(off, b, 8);
}

static int try_open(bool rw, vdisk_dev **devp)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "qcow2"), 0);
    if (!rw)
        ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    int r = vdisk_open(devp, img, o);
    vdisk_options_free(o);
    return r;
}

/* Opening fails with ERR and exactly "vdisk_open: <img>: MSG". */
static void open_fails(int err, const char *msg)
{
    vdisk_dev *dev;
    int r = try_open(false, &dev);
    ck_assert_msg(r == err, "vdisk_open returned %d (expected %d): %s", r, err, vdisk_get_error());
    char want[1024];
    snprintf(want, sizeof want, "vdisk_open: %s: %s", img, msg);
    ck_assert_str_eq(vdisk_get_error(), want);
}

/* The same for a message in QEMU's words, which do not name the file. */
static void open_fails_bare(int err, const char *msg)
{
    vdisk_dev *dev;
    int r = try_open(false, &dev);
    ck_assert_msg(r == err, "vdisk_open returned %d (expected %d): %s", r, err, vdisk_get_error());
    char want[1024];
    snprintf(want, sizeof want, "vdisk_open: %s", msg);
    ck_assert_str_eq(vdisk_get_error(), want);
}

START_TEST(truncated_header)
{
    make_base();
    RUN_OK("truncate -s 50 '%s'", img);
    open_fails(-EINVAL, "the image is too short for a qcow2 header (50 of 72 bytes)");
}
END_TEST

START_TEST(cluster_bits_out_of_range)
{
    make_base();
    patch32(20, 8);
    open_fails_bare(-EINVAL, "Unsupported cluster size: 2^8");
    patch32(20, 22);
    open_fails_bare(-EINVAL, "Unsupported cluster size: 2^22");
    patch32(20, 0xffffffff);
    open_fails_bare(-EINVAL, "Unsupported cluster size: 2^4294967295");
}
END_TEST

START_TEST(header_length)
{
    make_base();
    patch32(100, 0x10000 + 8);
    open_fails_bare(-EINVAL, "qcow2 header exceeds cluster size");
    patch32(100, 105);
    open_fails(-EINVAL, "header_length 105 is invalid (a multiple of 8 from 104 to the "
                        "cluster size, 65536)");
    patch32(100, 96);
    open_fails_bare(-EINVAL, "qcow2 header too short");
}
END_TEST

START_TEST(l1_table)
{
    make_base();
    patch64(40, 0x30001);
    open_fails_bare(-EINVAL, "Active L1 table offset invalid");
    patch64(40, 0x7000000);
    open_fails(-EINVAL, "the L1 table at offset 0x7000000 (8 bytes) is beyond the end of the "
                        "file (458752 bytes)");
    patch64(40, 0);
    open_fails(-EINVAL, "the L1 table at offset 0 overlaps the header");
    patch64(40, 0x30000);
    patch32(36, 0x7fffffff);
    open_fails_bare(-EINVAL, "Active L1 table too large");
    patch32(36, 0);
    open_fails_bare(-EINVAL, "L1 table is too small");
    patch32(36, 1);
    patch64(40, 0x10000);
    open_fails(-EINVAL, "the L1 table (0x10000) overlaps the refcount table (0x10000)");
}
END_TEST

START_TEST(refcount_table)
{
    make_base();
    patch32(56, 0);
    open_fails_bare(-EINVAL, "Image does not contain a reference count table");
    patch32(56, 0xffffff);
    open_fails_bare(-EINVAL, "Reference count table too large");
    patch32(56, 1);
    patch64(48, 0x10008);
    open_fails_bare(-EINVAL, "Reference count table offset invalid");
    patch64(48, 0x100000);
    open_fails(-EINVAL, "the refcount table at offset 0x100000 (65536 bytes) is beyond the end "
                        "of the file (458752 bytes)");
    patch64(48, 0);
    open_fails(-EINVAL, "the refcount table at offset 0 overlaps the header");
}
END_TEST

START_TEST(snapshot_table)
{
    make_base();
    patch32(60, 1);
    patch64(64, 0x10001);
    open_fails_bare(-EINVAL, "Snapshot table offset invalid");
    patch64(64, 0x1000000);
    open_fails(-EINVAL, "the snapshot table at offset 0x1000000 (40 bytes) is beyond the end of "
                        "the file (458752 bytes)");
    patch32(60, 0x7fffffff);
    open_fails_bare(-EINVAL, "Snapshot table too large");
}
END_TEST

START_TEST(sizes)
{
    make_base();
    patch64(24, 0x8000000000000000ull);
    open_fails(-EINVAL, "virtual size 9223372036854775808 is too large");
    patch64(24, 1ull << 40);
    open_fails_bare(-EINVAL, "L1 table is too small");
    patch64(24, 1 << 20);
    patch32(96, 7);
    open_fails_bare(-EINVAL, "Reference count entry width too large; may not exceed 64 bits");
}
END_TEST

START_TEST(backing_name)
{
    make_base();
    patch64(8, 0x1000);
    patch32(16, 1024);
    open_fails_bare(-EINVAL, "Backing file name too long");
    patch64(8, 0xfff0);
    patch32(16, 100);
    open_fails_bare(-EINVAL, "Backing file name too long");
    patch64(8, 0x10008);
    patch32(16, 0);
    open_fails_bare(-EINVAL, "Invalid backing file offset");
    patch64(8, 0x10);
    patch32(16, 4);
    open_fails(-EINVAL, "the backing file name at offset 16 overlaps the header");
    /* The image as its own backing file: a loop. */
    patch64(8, 0x8000);
    patch32(16, 7);
    patch(0x8000, "h.qcow2", 7);
    char msg[600];
    snprintf(msg, sizeof msg, "Backing file '%s' creates an infinite loop.", img);
    open_fails_bare(-ELOOP, msg);
}
END_TEST

START_TEST(features)
{
    make_base();
    patch64(72, 1ull << 40);
    open_fails_bare(-ENOTSUP, "Unsupported qcow2 feature(s): Unknown incompatible feature: "
                              "10000000000");
    /* A name from the image's own feature table. */
    uint8_t entry[48] = {0, 40};
    memcpy(entry + 2, "time travel", 11);
    /* The table written by vdisk create starts at 112 + 8. */
    patch(120 + 8 * 48, entry, 48);
    uint8_t len[4];
    be32_store(len, 9 * 48);
    patch(116, len, 4);
    open_fails_bare(-ENOTSUP, "Unsupported qcow2 feature(s): time travel");
    patch64(72, 1ull << 2); /* an external data file, without its name */
    open_fails_bare(-EINVAL, "'data-file' is required for this image");
    patch64(72, 0);
    patch32(32, 2);
    open_fails(-EINVAL, "LUKS encryption without the encryption header extension");
}
END_TEST

/* The external data file extension at 112 (over the feature table) naming
 * NAME (LEN bytes), then the end of the extensions. */
static void put_data_ext(const char *name, size_t len)
{
    uint8_t buf[2048] = {0};
    be32_store(buf, 0x44415441u);
    be32_store(buf + 4, (uint32_t)len);
    memcpy(buf + 8, name, len);
    patch(112, buf, 8 + (len + 7) / 8 * 8 + 8);
}

static int open_with(vdisk_dev **devp, const char *k, const char *v)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "qcow2"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    if (k)
        ck_assert_int_eq(vdisk_options_set(o, k, v), 0);
    int r = vdisk_open(devp, img, o);
    vdisk_options_free(o);
    return r;
}

/* External data files: the header's name is bounded, confined as backing
 * files are (backing-confine=on), never the image itself; raw data
 * without a data file and compressed clusters with one are refused. */
START_TEST(data_file)
{
    make_base();
    vdisk_dev *dev;
    char want[1024];
    /* data-file-raw without a data file */
    patch64(88, 2);
    open_fails_bare(-EINVAL, "data-file-raw requires a data file");
    patch64(88, 0);
    /* the data-file option on an image without one */
    ck_assert_int_eq(open_with(&dev, "data-file", "x.raw"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: 'data-file' can only be set for images "
                     "that use an external data file");
    patch64(72, 1ull << 2);
    /* a name too long, an empty one, one with a NUL byte, two of them */
    char longname[1100];
    memset(longname, 'a', sizeof longname);
    put_data_ext(longname, 1024);
    open_fails(-EINVAL, "the external data file name is 1024 bytes long (1 to 1023)");
    put_data_ext("", 0);
    open_fails(-EINVAL, "the external data file name is 0 bytes long (1 to 1023)");
    put_data_ext("d\0.raw", 6);
    open_fails(-EINVAL, "the external data file name contains a NUL byte");
    uint8_t two[32] = {0};
    be32_store(two, 0x44415441u);
    be32_store(two + 4, 1);
    two[8] = 'x';
    memcpy(two + 16, two, 16);
    patch(112, two, sizeof two);
    open_fails(-EINVAL, "two external data file extensions");
    /* outside the image's folder, with backing-confine=on */
    put_data_ext("/etc/shadow", 11);
    ck_assert_int_eq(open_with(&dev, "backing-confine", "on"), -EPERM);
    snprintf(want, sizeof want, "vdisk_open: %s: the data file name '/etc/shadow' leads outside "
             "the image's folder, which backing-confine=on forbids", img);
    ck_assert_str_eq(vdisk_get_error(), want);
    put_data_ext("../d.raw", 8);
    ck_assert_int_eq(open_with(&dev, "backing-confine", "on"), -EPERM);
    /* the image itself */
    put_data_ext("h.qcow2", 7);
    snprintf(want, sizeof want, "the data file 'h.qcow2' is the image file itself");
    open_fails(-EINVAL, want);
    /* the image's backing file */
    RUN_OK("%s create -q -f qcow2 b.qcow2 1M", vdisk_bin());
    struct run *cr = run("%s create -q -f qcow2 -b b.qcow2 -F qcow2 -o data_file=b.qcow2 x.qcow2 "
                         "1M", vdisk_bin());
    ck_assert_msg(cr->status != 0 && strstr(cr->err, "would be the image itself or its backing "
                  "file"), "%d %s", cr->status, cr->err);
    RUN_OK("%s create -q -f qcow2 -b b.qcow2 -F qcow2 -o data_file=x.raw x.qcow2 1M", vdisk_bin());
    RUN_OK("%s amend -o data_file=b.qcow2 x.qcow2", vdisk_bin());
    const char *keep = img;
    img = scratch("x.qcow2");
    snprintf(want, sizeof want, "the data file '%s' is the image's backing file",
             scratch("b.qcow2"));
    open_fails(-EINVAL, want);
    img = keep;
    /* missing, then there: the data clusters are read from it */
    put_data_ext("d.raw", 5);
    ck_assert_int_lt(try_open(false, &dev), 0);
    RUN_OK("%s create -q -f raw d.raw 1M", vdisk_bin());
    RUN_OK("%s io -f raw -c 'write -q -P 5 0 128k' d.raw", vdisk_bin());
    /* guest cluster N at N's offset (cluster 0: offset 0 with COPIED) */
    ck_assert_int_eq(try_open(false, &dev), 0);
    uint8_t buf[512];
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), -EIO);
    snprintf(want, sizeof want, "vdisk_pread: %s: external data file host cluster offset "
             "0x50000 does not match guest cluster offset 0x0", img);
    ck_assert_str_eq(vdisk_get_error(), want);
    vdisk_close(dev);
    patch64(0x40000, 0x8000000000000000ull);
    patch64(0x40008, 0x8000000000010000ull);
    RUN_OK("%s io -r -c 'read -q -P 5 0 128k' -c 'read -q -P 0 128k 128k' '%s'", vdisk_bin(),
           img);
    if (have_program("qemu-io"))
        RUN_OK("qemu-io -r -c 'read -q -P 5 0 128k' '%s'", img);
    /* a compressed cluster entry */
    patch64(0x40000, 0x4000000000050000ull);
    ck_assert_int_eq(try_open(false, &dev), 0);
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), -EIO);
    snprintf(want, sizeof want, "vdisk_pread: %s: compressed cluster entry for guest offset 0x0 "
             "in an image with an external data file (0x4000000000050000)", img);
    ck_assert_str_eq(vdisk_get_error(), want);
    vdisk_close(dev);
}
END_TEST

/* The warnings given since the last call of take_warnings(). */
static char warnings[2048];

static void keep_warning(void *opaque, const char *msg)
{
    (void)opaque;
    size_t n = strlen(warnings);
    snprintf(warnings + n, sizeof warnings - n, "%s\n", msg);
}

static const char *take_warnings(void)
{
    static char taken[sizeof warnings];
    memcpy(taken, warnings, sizeof warnings);
    warnings[0] = 0;
    return taken;
}

/* A read of the first cluster fails with EIO and MSG; the image is marked
 * corrupt when opened read-write, with QEMU's warning, once. */
static void read_fails(const char *msg)
{
    vdisk_dev *dev;
    ck_assert_msg(try_open(true, &dev) == 0, "%s", vdisk_get_error());
    uint8_t buf[512];
    vdisk_set_warning_handler(keep_warning, NULL);
    take_warnings();
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), -EIO);
    char want[1024];
    snprintf(want, sizeof want, "vdisk_pread: %s: %s; the image is marked corrupt, and further "
             "writes are refused (run vdisk check -r all)", img, msg);
    ck_assert_str_eq(vdisk_get_error(), want);
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), -EIO);
    vdisk_set_warning_handler(NULL, NULL);
    ck_assert_str_eq(take_warnings(), fmt("qcow2: Marking image as corrupt: %s; further "
                                          "corruption events will be suppressed\n", msg));
    /* Writes are refused now. */
    ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 512 << 10), -EIO);
    vdisk_close(dev);
    /* And the image opens read-only only, until repaired, where the same
     * read gives QEMU's warning for read-only images. */
    ck_assert_int_eq(try_open(true, &dev), -EIO);
    ck_assert_int_eq(try_open(false, &dev), 0);
    vdisk_set_warning_handler(keep_warning, NULL);
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), -EIO);
    vdisk_set_warning_handler(NULL, NULL);
    ck_assert_str_eq(take_warnings(), fmt("qcow2: Image is corrupt: %s; further non-fatal "
                                          "corruption events will be suppressed\n", msg));
    vdisk_close(dev);
}

START_TEST(l2_entries)
{
    make_base();
    patch64(0x40000, 0x8000000000050000ull | (1ull << 5));
    read_fails("L2 entry 0x8000000000050020 for guest offset 0x0 has reserved bits set");
    make_base();
    patch64(0x40000, 0x8000000000051000ull);
    read_fails("L2 entry for guest offset 0x0: host offset 0x51000 is not aligned to a cluster");
    make_base();
    patch64(0x40000, 0x8000000100000000ull);
    read_fails("L2 entry for guest offset 0x0 points to host offset 0x100000000, beyond the end "
               "of the file (458752 bytes)");
    make_base();
    patch64(0x30000, 0x8000000000041000ull);
    read_fails("L2 table offset 0x41000 (L1 entry 0) is not aligned to a cluster");
    make_base();
    patch64(0x30000, 0x8000000010000000ull);
    read_fails("L2 table offset 0x10000000 (L1 entry 0) is beyond the end of the file (458752 "
               "bytes)");
    make_base();
    patch64(0x30000, 0x8000000000060001ull);
    read_fails("L1 entry 0 (0x8000000000060001) has reserved bits set");
}
END_TEST

START_TEST(compressed)
{
    CASE_REQUIRE_PROGRAM("qemu-img"); /* the compressed image is qemu-img's */
    CASE_REQUIRE_PROGRAM("qemu-io");
    const char *raw = scratch("z.raw");
    img = scratch("z.qcow2");
    RUN_OK("qemu-img create -q -f raw '%s' 256k", raw);
    RUN_OK("qemu-io -f raw -c 'write -q -P 0x61 0 256k' '%s'", raw);
    RUN_OK("qemu-img convert -c -O qcow2 '%s' '%s'", raw, img);
    /* Find the first L2 entry: L1 at 0x30000 in qemu-img's layout. */
    int fd = open(img, O_RDWR);
    uint8_t b[8];
    ck_assert_int_eq(pread(fd, b, 8, 0x30000), 8);
    uint64_t l2 = be64_load(b) & 0x00fffffffffffe00ull;
    ck_assert_int_eq(pread(fd, b, 8, (off_t)l2), 8);
    uint64_t e = be64_load(b);
    ck_assert_msg(e >> 62 == 1, "not compressed: %llx", (unsigned long long)e);
    uint64_t coff = e & ((1ull << 54) - 1);
    /* Garbage in the payload: EIO on that cluster, the rest still reads. */
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    ck_assert_int_eq(pwrite(fd, junk, sizeof junk, (off_t)coff), (ssize_t)sizeof junk);
    close(fd);
    vdisk_dev *dev;
    ck_assert_int_eq(try_open(false, &dev), 0);
    uint8_t buf[4096];
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), -EIO);
    char want[600];
    snprintf(want, sizeof want, "vdisk_pread: %s: the compressed cluster at host offset 0x%llx "
             "is corrupt (it does not inflate to 65536 bytes)", img, (unsigned long long)coff);
    ck_assert_str_eq(vdisk_get_error(), want);
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 65536), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_int_eq(buf[i], 0x61);
    vdisk_close(dev);
    /* A descriptor pointing past the end of the file. */
    fd = open(img, O_RDWR);
    be64_store(b, (1ull << 62) | 0x40000000ull);
    ck_assert_int_eq(pwrite(fd, b, 8, (off_t)l2 + 8), 8);
    close(fd);
    ck_assert_int_eq(try_open(false, &dev), 0);
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 65536), -EIO);
    snprintf(want, sizeof want, "vdisk_pread: %s: compressed cluster for guest offset 0x10000 at "
             "host offset 0x40000000 is outside the file", img);
    ck_assert_msg(strncmp(vdisk_get_error(), want, strlen(want)) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
}
END_TEST

START_TEST(bitmaps)
{
    /* One bitmap added by qemu-img to the base image: the extension at 504
     * (after the feature table), its directory of 32 bytes at 0x80000 (the
     * end of the file, 524320 bytes), the bitmap table at 0x70000. */
    CASE_REQUIRE_PROGRAM("qemu-img");
    make_base();
    RUN_OK("qemu-img bitmap --add '%s' b0", img);
    const uint64_t ext = 504 + 8, dir = 0x80000;
    vdisk_dev *dev;
    patch32(ext + 4, 1);
    open_fails(-EINVAL, "the bitmaps extension's reserved field is 0x00000001 (0 expected)");
    patch32(ext + 4, 0);
    patch32(ext, 0);
    open_fails(-EINVAL, "the bitmaps extension has 0 bitmaps (1 to 65535)");
    patch32(ext, 70000);
    open_fails(-EINVAL, "the bitmaps extension has 70000 bitmaps (1 to 65535)");
    patch32(ext, 2);
    open_fails(-EINVAL, "the bitmap directory of 2 bitmaps is 32 bytes long (48 to 67107840)");
    patch32(ext, 1);
    patch64(ext + 8, 1ull << 40);
    open_fails(-EINVAL, "the bitmap directory of 1 bitmaps is 1099511627776 bytes long (24 to "
                        "67107840)");
    patch64(ext + 8, 40);
    open_fails(-EINVAL, "the bitmap directory at offset 0x80000 (40 bytes) lies beyond the end "
                        "of the file (524320 bytes)");
    patch64(ext + 8, 32);
    patch64(ext + 16, 0x80200);
    open_fails(-EINVAL, "the bitmap directory offset 0x80200 is not a cluster boundary after the "
                        "header");
    patch64(ext + 16, dir);
    /* The directory entry. */
    const char *where = "bitmap directory entry 0 (at offset 0x80000): ";
    char want[512];
    patch64(dir, 0x7fff0000);
    snprintf(want, sizeof want, "%sthe bitmap table at offset 0x7fff0000 (8 bytes) is not cluster "
             "aligned or lies beyond the end of the file (524320 bytes)", where);
    open_fails(-EINVAL, want);
    patch64(dir, 0x70000);
    patch32(dir + 8, 0);
    snprintf(want, sizeof want, "%sthe bitmap table has 0 entries (1 to 134217728)", where);
    open_fails(-EINVAL, want);
    patch32(dir + 8, 1);
    patch32(dir + 12, 0x10);
    snprintf(want, sizeof want, "%sreserved flags set (0x00000010)", where);
    open_fails(-EINVAL, want);
    patch32(dir + 12, 2);
    patch(dir + 16, "\x02", 1);
    snprintf(want, sizeof want, "%sunknown bitmap type 2 (1, dirty tracking, expected)", where);
    open_fails(-EINVAL, want);
    patch(dir + 16, "\x01\x08", 2);
    snprintf(want, sizeof want, "%sgranularity bits 8 out of range (9 to 31)", where);
    open_fails(-EINVAL, want);
    patch(dir + 17, "\x10", 1);
    patch32(dir + 20, 0x7fffffff);
    snprintf(want, sizeof want, "%sthe entry (2147483680 bytes with 2147483647 bytes of extra "
             "data) runs past the end of the directory (32 bytes)", where);
    open_fails(-EINVAL, want);
    patch32(dir + 20, 0);
    patch(dir + 24, "\0", 1);
    snprintf(want, sizeof want, "%sthe name contains a NUL byte", where);
    open_fails(-EINVAL, want);
    patch(dir + 24, "b", 1);
    /* Sound again: both opens (the read-write one moves the directory,
     * not the bitmap table: no bit changed), check counts the clusters. */
    ck_assert_int_eq(try_open(false, &dev), 0);
    vdisk_close(dev);
    ck_assert_msg(try_open(true, &dev) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    struct run *r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 0, "%d %s %s", r->status, r->out, r->err);
    /* A bitmap table entry with reserved bits: check reports it, and a
     * read-write open (which loads the bits) refuses it. */
    patch64(0x70000, 0x00000000000a0002ull);
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2 && strstr(r->err, "ERROR bitmap 'b0' table entry 0 "
                  "(0x00000000000a0002) is invalid; bitmap table corrupted\n"), "%d %s",
                  r->status, r->err);
    ck_assert_int_eq(try_open(true, &dev), -EINVAL);
    snprintf(want, sizeof want, "vdisk_open: %s: bitmap 'b0': bitmap table entry 0 "
             "(0x00000000000a0002) is invalid", img);
    ck_assert_str_eq(vdisk_get_error(), want);
    /* Data past the end of the file, and data on the L1 table. */
    patch64(0x70000, 0x40000000ull);
    ck_assert_int_eq(try_open(true, &dev), -EINVAL);
    snprintf(want, sizeof want, "vdisk_open: %s: bitmap 'b0': bitmap table entry 0 "
             "(0x0000000040000000) is invalid", img);
    ck_assert_str_eq(vdisk_get_error(), want);
    patch64(0x70000, 0x30000ull);
    ck_assert_int_lt(try_open(true, &dev), 0);
    ck_assert_int_eq(try_open(false, &dev), 0);
    vdisk_close(dev);
}
END_TEST

START_TEST(check_survives)
{
    /* vdisk check on damaged tables (an L2 entry not cluster aligned, the
     * refcount table's entry 0 not either) names both problems; check -r all
     * rebuilds the refcounts as qemu-img does, and what it cannot repair (the
     * L2 entry) is the one error left, by then and on every later check; the
     * cluster of the other L2 entry still reads its data. */
    const char *l2_error = "ERROR offset=51000: Data cluster is not properly aligned; L2 "
                           "entry corrupted.\n";
    make_base();
    patch64(0x40000, 0x8000000000051000ull);
    patch64(0x10000, 0x123);
    struct run *r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2, "exit %d: %s %s", r->status, r->out, r->err);
    ck_assert_msg(strncmp(r->err, l2_error, strlen(l2_error)) == 0, "%s", r->err);
    ck_assert_msg(strstr(r->err, "\nERROR refcount block 0 is not cluster aligned or is beyond "
                                 "the end of the file; refcount table entry corrupted\n"),
                  "%s", r->err);
    r = run("%s check -r all '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2, "check -r all: exit %d (2 expected: one error left): %s %s",
                  r->status, r->out, r->err);
    ck_assert_msg(strncmp(r->err, l2_error, strlen(l2_error)) == 0, "%s", r->err);
    ck_assert_msg(strstr(r->err, "\nRebuilding refcount structure\n"), "%s", r->err);
    ck_assert_msg(strstr(r->out, "The following inconsistencies were found and repaired:\n") &&
                  strstr(r->out, "\nDouble checking the fixed image now...\n\n1 errors were "
                                 "found on the image.\n"), "%s", r->out);
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2, "check after the repair: exit %d: %s %s", r->status, r->out,
                  r->err);
    ck_assert_str_eq(r->err, l2_error);
    const char *one = "\n1 errors were found on the image.\n";
    ck_assert_msg(strncmp(r->out, one, strlen(one)) == 0, "%s", r->out);
    RUN_OK("%s io -c 'read -q -P 1 64k 64k' '%s'", vdisk_bin(), img);
    /* qemu-img agrees: the misaligned entry's clusters stay counted as used
     * (the old repair left cluster 4 at refcount 0 under it: four errors). */
    if (have_program("qemu-img")) {
        r = run("qemu-img check '%s'", img);
        ck_assert_msg(r->status == 2 && !strcmp(r->err, l2_error), "qemu-img check: exit %d: "
                      "%s", r->status, r->err);
    } else {
        skip_note("check_survives: qemu-img is not installed; its check of the repaired image "
                  "was left out");
    }
    /* A misaligned entry that holds no data (zero flag set) is mended by
     * -r all, as qemu-img does: the image is clean afterwards. */
    make_base();
    patch64(0x40000, 0x8000000000051001ull);
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2 && strstr(r->err, "ERROR offset=51000: Preallocated cluster is "
                  "not properly aligned; L2 entry corrupted.\n"), "%d %s", r->status, r->err);
    r = run("%s check -r all '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 0 && strstr(r->err, "Repairing offset=51000: Preallocated "
                  "cluster is not properly aligned; L2 entry corrupted.\n"), "%d %s %s",
                  r->status, r->out, r->err);
    RUN_OK("%s check '%s'", vdisk_bin(), img);
    if (have_program("qemu-img"))
        RUN_OK("qemu-img check '%s'", img);
    RUN_OK("%s io -c 'read -q -P 0 0 64k' -c 'read -q -P 1 64k 64k' '%s'", vdisk_bin(), img);
}
END_TEST

int main(void)
{
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("qcow2-hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, truncated_header);
    tcase_add_test(tc, cluster_bits_out_of_range);
    tcase_add_test(tc, header_length);
    tcase_add_test(tc, l1_table);
    tcase_add_test(tc, refcount_table);
    tcase_add_test(tc, snapshot_table);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, backing_name);
    tcase_add_test(tc, features);
    tcase_add_test(tc, data_file);
    tcase_add_test(tc, l2_entries);
    tcase_add_test(tc, compressed);
    tcase_add_test(tc, bitmaps);
    tcase_add_test(tc, check_survives);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
