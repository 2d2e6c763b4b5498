/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/cve.c: one regression test per class of published image
 * parser bug (QEMU's CVEs and their kin), each asserting the exact error.
 *
 * tests/hostile/qcow2_hostile.c covers every damaged header field one by
 * one; tests/part/part_hostile.c and tests/iso/iso_hostile.c the partition
 * tables and ISOs.  Here each test names the class it guards against, so
 * that a regression points at the bug it would reopen.
 *
 * The base qcow2 image (as in qcow2_hostile.c): vdisk create -f qcow2 of
 * 1 MiB with 128 KiB of 0x01 at offset 0: header at 0, refcount table at
 * 0x10000, refcount block at 0x20000, L1 table at 0x30000 (one entry),
 * the L2 table at 0x40000, data at 0x50000 and 0x60000; 458752 bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"
#include "images.h"

static const char *img;

static void make_base(void)
{
    img = hostile_base("c.qcow2");
}

static void patch16(uint64_t off, uint16_t v)
{
    uint8_t b[2];
    be16_store(b, v);
    patch_at(img, off, b, 2);
}

static void patch32(uint64_t off, uint32_t v)
{
    uint8_t b[4];
    be32_store(b, v);
    patch_at(img, off, b, 4);
}

static void patch64(uint64_t off, uint64_t v)
{
    uint8_t b[8];
    be64_store(b, v);
    patch_at(img, off, b, 8);
}

static uint64_t peek64(uint64_t off)
{
    uint8_t b[8];
    int fd = open(img, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, b, 8, (off_t)off), 8);
    close(fd);
    return be64_load(b);
}

/* vdisk_open(PATH) with the options OPTS (key=value,...; may be NULL). */
static int open_with(vdisk_dev **devp, const char *path, const char *opts)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (opts)
        ck_assert_int_eq(vdisk_options_parse(o, opts), 0);
    int r = vdisk_open(devp, path, o);
    vdisk_options_free(o);
    return r;
}

/* Opening PATH with OPTS fails with ERR and exactly "vdisk_open: PATH: MSG". */
static void fails_with(const char *path, const char *opts, int err, const char *msg)
{
    vdisk_dev *dev = NULL;
    int r = open_with(&dev, path, opts);
    if (r == 0)
        vdisk_close(dev);
    ck_assert_msg(r == err, "vdisk_open(%s, %s) returned %d (expected %d): %s", path,
                  opts ? opts : "", r, err, r ? vdisk_get_error() : "");
    char want[2048];
    snprintf(want, sizeof want, "vdisk_open: %s: %s", path, msg);
    ck_assert_str_eq(vdisk_get_error(), want);
}

/* The same for a message in QEMU's words, which do not name the file. */
static void fails_with_bare(const char *path, const char *opts, int err, const char *msg)
{
    vdisk_dev *dev = NULL;
    int r = open_with(&dev, path, opts);
    if (r == 0)
        vdisk_close(dev);
    ck_assert_msg(r == err, "vdisk_open(%s, %s) returned %d (expected %d): %s", path,
                  opts ? opts : "", r, err, r ? vdisk_get_error() : "");
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s", msg));
}

/* The base image, opened as qcow2 read-only, fails with MSG in QEMU's
 * words; the CLI says the same (without the file's name, as QEMU's words
 * have none) on one line of standard error, exit status 1. */
static void qcow2_fails_bare(const char *msg)
{
    fails_with_bare(img, "format=qcow2,read-only=on", -EINVAL, msg);
    struct run *r = run("%s info -f qcow2 '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: %s\n", msg));
}

/* The base image, opened as qcow2 read-only, fails with MSG; and the CLI
 * says the same on one line of standard error, exit status 1. */
static void qcow2_fails(const char *msg)
{
    fails_with(img, "format=qcow2,read-only=on", -EINVAL, msg);
    struct run *r = run("%s info -f qcow2 '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: %s: %s\n", img, msg));
}

/* A write of LEN bytes of BYTE at 512 KiB of the image, opened read-write
 * as qcow2, allocates a cluster at 0x10000, over the refcount table: it
 * fails with EIO and exactly the error that marks the image corrupt. */
static void write_hits_reftable(size_t len, uint8_t byte)
{
    vdisk_dev *dev;
    ck_assert_msg(open_with(&dev, img, "format=qcow2") == 0, "%s", vdisk_get_error());
    uint8_t buf[4096];
    ck_assert_uint_le(len, sizeof buf);
    memset(buf, byte, len);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, len, 512 << 10), -EIO);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_pwrite: %s: allocating host range 0x10000+0x10000 would "
                         "overwrite the refcount table (the refcounts are wrong); the image is "
                         "marked corrupt, and further writes are refused (run vdisk check -r "
                         "all)", img));
    vdisk_close(dev);
}

/* ---- CVE-2014-0143: integer overflows in table sizes ----------------------- */

/* CVE-2014-0143 class: l1_size * 8 and l1_offset + l1_size * 8 overflow;
 * the virtual size divided into L2 spans overflows the L1 size check. */
START_TEST(cve_2014_0143_l1_size)
{
    make_base();
    patch32(36, 0xffffffffu);
    qcow2_fails_bare("Active L1 table too large");
    patch32(36, 0x400001);
    qcow2_fails_bare("Active L1 table too large");
    patch32(36, 1);
    patch64(40, 0xffffffffffff0000ull);
    qcow2_fails_bare("Active L1 table offset invalid");
    patch64(40, 0xffffffff0000ull);
    qcow2_fails("the L1 table at offset 0xffffffff0000 (8 bytes) is beyond the end of the "
                "file (458752 bytes)");
    patch64(40, 0x30000);
    patch64(24, 0x7ffffffffffffe00ull);
    qcow2_fails_bare("Image is too big");
    patch64(24, 0x20000200ull);
    qcow2_fails_bare("L1 table is too small");
}
END_TEST

/* CVE-2014-0143 class: refcount_table_clusters * cluster_size overflows. */
START_TEST(cve_2014_0143_refcount_table_size)
{
    make_base();
    patch32(56, 0xffffffffu);
    qcow2_fails_bare("Reference count table too large");
    patch32(56, 1);
    patch64(48, 0xffffffffffff0000ull);
    qcow2_fails_bare("Reference count table offset invalid");
    patch64(48, 0xffffffff0000ull);
    qcow2_fails("the refcount table at offset 0xffffffff0000 (65536 bytes) is beyond the "
                "end of the file (458752 bytes)");
}
END_TEST

/* The base image with one internal snapshot; returns the snapshot table's
 * offset. */
static uint64_t make_snapshot(void)
{
    make_base();
    RUN_OK("%s snapshot -c s1 '%s'", vdisk_bin(), img);
    return peek64(64);
}

/* A snapshot table entry with an unusable L1 table spoils only itself (as
 * with QEMU): the image opens, check reports CHECK_LINE (exit 2), and
 * opening the snapshot fails with "vdisk_open: IMG: OPEN_MSG". */
static void bad_snapshot(const char *check_line, const char *open_msg)
{
    vdisk_dev *dev = NULL;
    int r = open_with(&dev, img, "format=qcow2,read-only=on");
    ck_assert_msg(r == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    struct run *c = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(c->status == 2, "exit %d: %s %s", c->status, c->out, c->err);
    ck_assert_msg(strncmp(c->err, check_line, strlen(check_line)) == 0 &&
                  c->err[strlen(check_line)] == '\n', "%s", c->err);
    fails_with(img, "format=qcow2,read-only=on,snapshot.name=s1", -EINVAL, open_msg);
}

/* CVE-2014-0143 class: nb_snapshots * entry size, a snapshot's l1_size,
 * its extra_data_size and name lengths. */
START_TEST(cve_2014_0143_snapshot_table_size)
{
    uint64_t st = make_snapshot();
    uint64_t fs = file_size(img);
    patch32(60, 0xffffffffu);
    qcow2_fails_bare("Snapshot table too large");
    patch32(60, 65537);
    qcow2_fails_bare("Snapshot table too large");
    patch32(60, 1);
    uint64_t l1 = peek64(st);
    patch32(st + 8, 0xffffffffu);
    bad_snapshot("ERROR snapshot 1 (s1) l1_size=0xffffffff: L1 table is too large; snapshot "
                 "table entry corrupted",
                 fmt("snapshot 1 (s1) is corrupt: its L1 table (4294967295 entries at offset "
                     "0x%llx) is too large (vdisk check -r all removes it)",
                     (unsigned long long)l1));
    patch32(st + 8, 1);
    patch32(st + 36, 0xffffffffu);
    /* (QEMU's words; vdisk check -r all drops it) */
    static const char too_much[] = "Too much extra metadata in snapshot table entry 0\n"
                                   "You can force-remove this extra metadata with vdisk check "
                                   "-r all";
    fails_with_bare(img, "format=qcow2,read-only=on", -EFBIG, too_much);
    struct run *r = run("%s info -f qcow2 '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: %s\n", too_much));
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: ERROR failed to read the snapshot table: %s\n"
                                 "vdisk: Check failed: File too large\n", too_much));
    patch32(st + 36, 0);
    /* Names that run past the end of the file. */
    RUN_OK("truncate -s %llu '%s'", (unsigned long long)(st + 4096), img);
    patch16(st + 12, 0xffff);
    patch16(st + 14, 0xffff);
    qcow2_fails(fmt("snapshot 0 at offset %llu (131110 bytes) lies beyond the end of the file",
                    (unsigned long long)st));
    (void)fs;
}
END_TEST

/* ---- CVE-2014-0144: offsets not validated ----------------------------------- */

/* CVE-2014-0144 class: table offsets past the end of the file or not
 * aligned to a cluster, for the L1, refcount and snapshot tables, and a
 * snapshot's own L1 table. */
START_TEST(cve_2014_0144_table_offsets)
{
    make_base();
    patch64(40, 0x30200);
    qcow2_fails_bare("Active L1 table offset invalid");
    patch64(40, 0x100000000ull);
    qcow2_fails("the L1 table at offset 0x100000000 (8 bytes) is beyond the end of the file "
                "(458752 bytes)");
    patch64(40, 0x30000);
    patch64(48, 0x10200);
    qcow2_fails_bare("Reference count table offset invalid");
    patch64(48, 0x70000);
    qcow2_fails("the refcount table at offset 0x70000 (65536 bytes) is beyond the end of the "
                "file (458752 bytes)");
    uint64_t st = make_snapshot();
    uint64_t fs = file_size(img);
    patch64(64, st + 8);
    qcow2_fails_bare("Snapshot table offset invalid");
    patch64(64, 0x10000000ull);
    qcow2_fails(fmt("the snapshot table at offset 0x10000000 (40 bytes) is beyond the end of the "
                    "file (%llu bytes)", (unsigned long long)fs));
    patch64(64, st);
    patch64(st, 0x10000000ull);
    bad_snapshot("ERROR: counting reference for region exceeding the end of the file by one "
                 "cluster or more: offset 0x10000000 size 0x8",
                 "snapshot 1 (s1) is corrupt: its L1 table (1 entries at offset 0x10000000) lies "
                 "beyond the end of the file (vdisk check -r all removes it)");
    patch64(st, 0x30008);
    bad_snapshot("ERROR snapshot 1 (s1) l1_offset=0x30008: L1 table is not cluster aligned; "
                 "snapshot table entry corrupted",
                 "snapshot 1 (s1) is corrupt: its L1 table (1 entries at offset 0x30008) is not "
                 "cluster aligned (vdisk check -r all removes it)");
}
END_TEST

/* CVE-2014-0144 class: a refcount table entry pointing past the end of the
 * file: check reports it, a write that needs it marks the image corrupt
 * instead of reading or writing out there. */
START_TEST(cve_2014_0144_refblock_offset)
{
    make_base();
    patch64(0x10000, 0x10000000ull);
    struct run *r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2, "exit %d: %s %s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->err, "ERROR refcount block 0 is not cluster aligned or is beyond the "
                                 "end of the file; refcount table entry corrupted\n"),
                  "%s", r->err);
    /* The refcounts read there are all 0, so the allocator's overlap check
     * is what stops the write. */
    write_hits_reftable(512, 0);
}
END_TEST

/* ---- CVE-2014-0142: division by zero from a zero size field ----------------- */

/* The GPT header at LBA of IMG with the 4-byte field at OFF set to V and
 * its CRC fixed. */
static void gpt_set32(const char *path, uint64_t lba, unsigned off, uint32_t v)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t h[512];
    ck_assert_int_eq(pread(fd, h, 512, (off_t)(lba * 512)), 512);
    le32_store(h + off, v);
    le32_store(h + 16, 0);
    le32_store(h + 16, (uint32_t)crc32(0, h, 92));
    ck_assert_int_eq(pwrite(fd, h, 512, (off_t)(lba * 512)), 512);
    close(fd);
}

static void part_read_fails(const char *path, const char *msg)
{
    vdisk_dev *dev;
    ck_assert_msg(open_with(&dev, path, "read-only=on") == 0, "%s", vdisk_get_error());
    vdisk_ptable *t = NULL;
    int r = vdisk_part_read(&t, dev, 0);
    char got[1024];
    snprintf(got, sizeof got, "%s", r < 0 ? vdisk_get_error() : "");
    vdisk_part_free(t);
    vdisk_close(dev);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(got, fmt("vdisk_part_read: %s: %s", path, msg));
}

/* A minimal ISO 9660 volume: a primary volume descriptor (block 16) with
 * logical block size BS and a terminator (block 17). */
static void make_iso(const char *path, uint16_t bs, uint32_t volume_blocks)
{
    static uint8_t iso[18 * 2048];
    memset(iso, 0, sizeof iso);
    uint8_t *pvd = iso + 16 * 2048, *term = iso + 17 * 2048;
    pvd[0] = 1;
    memcpy(pvd + 1, "CD001", 5);
    pvd[6] = 1;
    for (int k = 0; k < 4; k++) { /* volume space size, both byte orders */
        pvd[80 + k] = (uint8_t)(volume_blocks >> (8 * k));
        pvd[87 - k] = (uint8_t)(volume_blocks >> (8 * k));
    }
    pvd[128] = (uint8_t)bs;
    pvd[129] = (uint8_t)(bs >> 8);
    pvd[131] = (uint8_t)bs;
    pvd[130] = (uint8_t)(bs >> 8);
    /* The root directory record: 34 bytes, a directory at block 0. */
    pvd[156] = 34;
    pvd[156 + 25] = 2;
    pvd[156 + 32] = 1;
    term[0] = 255;
    memcpy(term + 1, "CD001", 5);
    term[6] = 1;
    write_file(path, iso, sizeof iso);
}

/* CVE-2014-0142 class: sizes that a parser divides by, set to 0: qcow2
 * cluster_bits and header_length, the ISO logical block size, the GPT entry
 * size and entry count. */
START_TEST(cve_2014_0142_zero_sizes)
{
    make_base();
    patch32(20, 0);
    qcow2_fails_bare("Unsupported cluster size: 2^0");
    make_base();
    patch32(100, 0);
    qcow2_fails_bare("qcow2 header too short");

    const char *iso = scratch("zero.iso");
    make_iso(iso, 0, 18);
    vdisk_dev *dev;
    ck_assert_int_eq(open_with(&dev, iso, "format=raw"), 0);
    vdisk_iso *v;
    ck_assert_int_eq(vdisk_iso_open(&v, dev, VDISK_ISO_NS_AUTO), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_iso_open: %s: logical block size 0, expected 2048", iso));
    vdisk_close(dev);
    struct run *r = run("%s iso info '%s'", vdisk_bin(), iso);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: %s: logical block size 0, expected 2048\n", iso));
    /* The CD-ROM drive does not divide by the field: its blocks are 2048
     * bytes whatever the volume says. */
    ck_assert_msg(vdisk_open_cdrom(&dev, iso, NULL) == 0, "%s", vdisk_get_error());
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    ck_assert_int_eq(vdisk_cdrom_get_media(dev, &m), 0);
    ck_assert_uint_eq(m.blocks, 18);
    vdisk_close(dev);

    const char *disk = scratch("zero-gpt.img");
    RUN_OK("rm -f '%s' && truncate -s 2M '%s'", disk, disk);
    RUN_OK("%s part create --table=gpt '%s'", vdisk_bin(), disk);
    gpt_set32(disk, 1, 84, 0);
    gpt_set32(disk, 4095, 84, 0);
    part_read_fails(disk, "both GPT headers are damaged: primary: entry size 0 is not a power of "
                          "two from 128 to 4096; backup: entry size 0 is not a power of two "
                          "from 128 to 4096");
    gpt_set32(disk, 1, 84, 128);
    gpt_set32(disk, 4095, 84, 128);
    gpt_set32(disk, 1, 80, 0);
    gpt_set32(disk, 4095, 80, 0);
    part_read_fails(disk, "both GPT headers are damaged: primary: 0 entries of 128 bytes: "
                          "expected 1-65536 entries and at most 4194304 bytes; backup: 0 "
                          "entries of 128 bytes: expected 1-65536 entries and at most 4194304 "
                          "bytes");
    r = run("%s part list '%s'", vdisk_bin(), disk);
    ck_assert_int_eq(r->status, 1);
}
END_TEST

/* ---- CVE-2015-5162: a tiny image claiming huge sizes ------------------------- */

/* CVE-2015-5162 class: a small file claiming a huge disk and tables costs
 * neither time nor memory in info and check (tests/hostile/bounds.c holds
 * them to hard CPU and memory limits; this is the functional side).  The L1 table claims
 * 16384 entries, all pointing to one L2 table, whose entries all point to
 * one data cluster: 8 TiB of disk over a 448 KiB file. */
START_TEST(cve_2015_5162_huge_claims)
{
    make_base();
    make_shared_tables(img);
    struct run *r = run("%s info '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "virtual size: 8 TiB (8796093022208 bytes)\n"), "%s", r->out);
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 2, "exit %d: %s %s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->err, "ERROR cluster 4 refcount=1 reference=16384\n"), "%s", r->err);
    ck_assert_msg(strstr(r->err, "ERROR cluster 5 refcount=1 reference=134217728\n"), "%s",
                  r->err);
}
END_TEST

/* ---- CVE-2008-2004: a raw image stays raw ----------------------------------- */

/* CVE-2008-2004 class: the guest of a raw disk writes a qcow2 header
 * naming a host file as its backing file.  Opened with format=raw, the
 * image stays raw: same size, the guest's bytes, no backing file.  Probing
 * (no format given) does read such a file as qcow2, as documented in
 * vdisk/options.h (a guest cannot write it through a probed open, see
 * tests/hostile/probe.c, but it can through format=raw), so untrusted
 * images must be opened with their format; backing-confine=on refuses the
 * host file either way. */
START_TEST(cve_2008_2004_raw_stays_raw)
{
    const char *hdr = scratch("evil.qcow2"), *guest = scratch("guest.img");
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 -u -b /etc/passwd -F raw '%s' 1M", hdr,
           vdisk_bin(), hdr);
    RUN_OK("rm -f '%s' && truncate -s 1M '%s' && dd if='%s' of='%s' conv=notrunc status=none",
           guest, guest, hdr, guest);
    vdisk_dev *dev;
    ck_assert_msg(open_with(&dev, guest, "format=raw") == 0, "%s", vdisk_get_error());
    ck_assert_ptr_null(vdisk_get_backing(dev));
    ck_assert_uint_eq(vdisk_get_size(dev), 1 << 20);
    uint8_t b[4];
    ck_assert_int_eq(vdisk_pread(dev, b, 4, 0), 0);
    ck_assert_int_eq(be32_load(b), 0x514649fb); /* "QFI\xfb": the guest's bytes */
    vdisk_close(dev);
    struct run *r = run("%s info -f raw '%s'", vdisk_bin(), guest);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, "file format: raw\n") && !strstr(r->out, "backing"), "%s",
                  r->out);
    /* Probing chooses qcow2 (documented); confinement still refuses. */
    ck_assert_msg(open_with(&dev, guest, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_ptr_nonnull(vdisk_get_backing(dev));
    vdisk_close(dev);
    fails_with(guest, "backing-confine=on", -EPERM,
               "the backing file name '/etc/passwd' leads outside the image's folder, which "
               "backing-confine=on forbids");
    /* A backing file given as raw is read as raw: a raw backing file holding
     * a qcow2 header shows its header bytes and all.  (create -b needs -F;
     * one whose format is not recorded is probed, as in QEMU:
     * tests/hostile/probe.c.) */
    const char *top = scratch("over-guest.qcow2");
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 -b guest.img -F raw '%s' 1M", top, vdisk_bin(),
           top);
    ck_assert_msg(open_with(&dev, top, "backing-confine=on") == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_pread(dev, b, 4, 0), 0);
    ck_assert_int_eq(be32_load(b), 0x514649fb);
    ck_assert_ptr_null(vdisk_get_backing(vdisk_get_backing(dev)));
    vdisk_close(dev);
}
END_TEST

/* ---- Backing and data files outside the image's folder ---------------------- */

/* Host-file disclosure through backing names (the class of CVE-2008-2004
 * and of QEMU's later json:/protocol backing-name issues): with
 * backing-confine=on, a name that is absolute, a protocol, climbs out with
 * "..", or reaches outside through a symbolic link is refused before
 * anything is opened; names inside the folder work, and the rule holds
 * down the chain. */
START_TEST(backing_confine)
{
    const char *dir = scratch("conf");
    RUN_OK("rm -rf '%s' && mkdir -p '%s/sub' '%s/other'", dir, dir, dir);
    const char *base = scratch("conf/sub/base.qcow2");
    RUN_OK("%s create -q -f qcow2 '%s' 1M", vdisk_bin(), base);
    RUN_OK("%s io -c 'write -q -P 0x42 0 4k' '%s'", vdisk_bin(), base);
    const char *top = scratch("conf/top.qcow2");
    /* Inside the folder, "a/../b" included. */
    static const char *const good[] = {"sub/base.qcow2", "./sub/base.qcow2",
                                       "other/../sub/base.qcow2", "sub//base.qcow2"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        RUN_OK("rm -f '%s' && %s create -q -f qcow2 -u -b '%s' -F qcow2 '%s' 1M", top,
               vdisk_bin(), good[i], top);
        vdisk_dev *dev;
        ck_assert_msg(open_with(&dev, top, "backing-confine=on") == 0, "%s: %s", good[i],
                      vdisk_get_error());
        uint8_t b;
        ck_assert_int_eq(vdisk_pread(dev, &b, 1, 0), 0);
        ck_assert_int_eq(b, 0x42);
        vdisk_close(dev);
    }
    /* Outside it. */
    RUN_OK("ln -sf /etc/passwd '%s/link'", dir);
    static const char *const bad[] = {"/etc/passwd", "../../../../../etc/passwd",
                                      "sub/../../conf/sub/base.qcow2", "link",
                                      "nbd://localhost/x", "/dev/zero"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        RUN_OK("rm -f '%s' && %s create -q -f qcow2 -u -b '%s' -F raw '%s' 1M", top,
               vdisk_bin(), bad[i], top);
        fails_with(top, "backing-confine=on", -EPERM,
                   fmt("the backing file name '%s' leads outside the image's folder, which "
                       "backing-confine=on forbids", bad[i]));
        /* Without the option the name is followed, as qemu-img does. */
        vdisk_dev *dev;
        if (i == 0) {
            ck_assert_msg(open_with(&dev, top, NULL) == 0, "%s", vdisk_get_error());
            vdisk_close(dev);
        }
    }
    /* Down the chain: the backing file's own backing name is confined to
     * its folder too. */
    const char *mid = scratch("conf/sub/mid.qcow2");
    RUN_OK("%s create -q -f qcow2 -u -b ../../../etc/passwd -F raw '%s' 1M", vdisk_bin(), mid);
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 -u -b sub/mid.qcow2 -F qcow2 '%s' 1M", top,
           vdisk_bin(), top);
    fails_with_bare(top, "backing-confine=on", -EPERM,
                    fmt("Could not open backing file: %s/sub/mid.qcow2: the backing file name "
                        "'../../../etc/passwd' leads outside the image's folder, which "
                        "backing-confine=on forbids", dir));
    /* A bad value. */
    vdisk_dev *bad_dev;
    ck_assert_int_eq(open_with(&bad_dev, top, "backing-confine=maybe"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_open: option 'backing-confine' expects 'on' or 'off', not 'maybe'");
    /* Raw images take the option too (they have no backing files). */
    vdisk_dev *dev;
    ck_assert_msg(open_with(&dev, base, "format=raw,backing-confine=on") == 0, "%s",
                  vdisk_get_error());
    vdisk_close(dev);
}
END_TEST

/* The external data file ("data-file" names a host file) is confined as a
 * backing file is: with backing-confine=on a name leading outside the
 * image's folder is refused before anything is opened. */
START_TEST(data_file_confined)
{
    make_base();
    /* The data file extension naming a host file, and its feature bit. */
    uint8_t ext[8 + 16] = {0x44, 0x41, 0x54, 0x41, 0, 0, 0, 11};
    memcpy(ext + 8, "/etc/shadow", 11);
    uint8_t end[8] = {0};
    uint32_t hl = 112; /* vdisk create writes 112-byte headers */
    patch_at(img, hl, ext, sizeof ext);
    patch_at(img, hl + sizeof ext, end, sizeof end);
    patch64(72, 1ull << 2);
    fails_with(img, "backing-confine=on", -EPERM,
               "the data file name '/etc/shadow' leads outside the image's folder, which "
               "backing-confine=on forbids");
}
END_TEST

/* ---- The refcount structure ---------------------------------------------------- */

/* refcount_table_clusters of 0: nothing to count with; refused at open
 * rather than divided by or grown from nothing. */
START_TEST(refcount_table_clusters_zero)
{
    make_base();
    patch32(56, 0);
    qcow2_fails_bare("Image does not contain a reference count table");
    struct run *r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: Image does not contain a reference count table\n");
}
END_TEST

/* A refblock at offset 0: the refcount table entry for the first clusters
 * is 0, so the header, the tables and the data all seem free.  The next
 * allocation must not place anything (a refcount block, an L2 table, data)
 * over the header or the tables: the write fails, the image is marked
 * corrupt, the header is intact, and vdisk check -r all repairs it into an
 * image that vdisk reads and writes and qemu-img calls clean. */
START_TEST(refblock_at_offset_0)
{
    make_base();
    patch64(0x10000, 0);
    write_hits_reftable(4096, 7);
    uint8_t b[4];
    int fd = open(img, O_RDONLY);
    ck_assert_int_eq(pread(fd, b, 4, 0), 4);
    close(fd);
    ck_assert_int_eq(be32_load(b), 0x514649fb);
    struct run *r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "ERROR cluster 0 refcount=0 reference=1\n"), "%s", r->err);
    r = run("%s check -r all '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 0, "vdisk check -r all: exit %d: %s%s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "The following inconsistencies were found and repaired:"), "%s",
                  r->out);
    RUN_OK("%s io -c 'write -q -P 7 512k 4k' -c 'read -q -P 7 512k 4k' -c 'read -q -P 1 0 128k' "
           "'%s'", vdisk_bin(), img);
    RUN_OK("%s check '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("hostile-cve");
    TCase *tc = tcase_create("cve");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cve_2014_0143_l1_size);
    tcase_add_test(tc, cve_2014_0143_refcount_table_size);
    tcase_add_test(tc, cve_2014_0143_snapshot_table_size);
    tcase_add_test(tc, cve_2014_0144_table_offsets);
    tcase_add_test(tc, cve_2014_0144_refblock_offset);
    tcase_add_test(tc, cve_2014_0142_zero_sizes);
    tcase_add_test(tc, cve_2015_5162_huge_claims);
    tcase_add_test(tc, cve_2008_2004_raw_stays_raw);
    tcase_add_test(tc, backing_confine);
    tcase_add_test(tc, data_file_confined);
    tcase_add_test(tc, refcount_table_clusters_zero);
    tcase_add_test(tc, refblock_at_offset_0);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
