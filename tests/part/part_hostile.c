/* SPDX-License-Identifier: MIT */
/*
 * tests/part/part_hostile.c: damaged and hostile partition tables.  Each
 * gives a clear error (exact messages asserted) or a verify finding, never
 * a crash, a hang or an allocation beyond the limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define DISK_SECTORS 4096u /* 2 MiB */

static const char *img;

static void patch(uint64_t off, const void *data, size_t len)
{
    int fd = open(img, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void blank_disk(void)
{
    img = scratch("h.img");
    RUN_OK("rm -f '%s' && truncate -s %u '%s'", img, DISK_SECTORS * 512, img);
}

/* An MBR entry (and the 0x55AA signature) in the sector at LBA. */
static void entry(uint64_t lba, int slot, uint8_t type, uint32_t start, uint32_t size)
{
    uint8_t e[16] = {0}, sig[2] = {0x55, 0xaa};
    e[4] = type;
    le32_store(e + 8, start);
    le32_store(e + 12, size);
    patch(lba * 512 + 446 + 16 * (unsigned)slot, e, sizeof e);
    patch(lba * 512 + 510, sig, 2);
}

/* vdisk_part_read's error on the image. */
static int read_error(char *msg, size_t len)
{
    vdisk_dev *dev;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    vdisk_ptable *t = NULL;
    int r = vdisk_part_read(&t, dev, 0);
    snprintf(msg, len, "%s", r < 0 ? vdisk_get_error() : "");
    vdisk_part_free(t);
    vdisk_close(dev);
    return r;
}

static void expect_error(int err, const char *what)
{
    char msg[1024], want[1024];
    ck_assert_int_eq(read_error(msg, sizeof msg), err);
    snprintf(want, sizeof want, "vdisk_part_read: %s: %s", img, what);
    ck_assert_str_eq(msg, want);
    /* verify lists the same problem and exits 1; list fails with it. */
    struct run *r = run("%s part verify '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    snprintf(want, sizeof want, "%s: %s\n", img, what);
    ck_assert_str_eq(r->out, want);
    r = run("%s part list '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
}

START_TEST(ebr_loop)
{
    blank_disk();
    entry(0, 0, 0x05, 2048, 2000);
    entry(2048, 0, 0x83, 64, 64);
    entry(2048, 1, 0x05, 200, 200);
    entry(2248, 0, 0x83, 64, 64);
    entry(2248, 1, 0x05, 0, 200); /* back to the first EBR */
    expect_error(-EINVAL, "the chain of EBRs loops: the EBR at sector 2248 links back to the EBR"
                          " at sector 2048");
}
END_TEST

START_TEST(ebr_outside)
{
    blank_disk();
    entry(0, 0, 0x0f, 2048, 2000);
    entry(2048, 0, 0x83, 64, 64);
    entry(2048, 1, 0x05, 0xfffffff0u, 200);
    expect_error(-EINVAL, "an EBR link points to sector 4294969328, outside the extended"
                          " partition (sectors 2048-4047) or the disk (4096 sectors)");
}
END_TEST

START_TEST(ebr_backwards_and_long)
{
    blank_disk();
    /* 1500 EBRs, one per sector, walking backwards from the end. */
    entry(0, 0, 0x05, 100, 3900);
    uint8_t *disk = calloc(DISK_SECTORS, 512);
    for (unsigned i = 0; i < 1500; i++) {
        unsigned lba = i == 0 ? 100 : 3999 - i;
        unsigned next = 3999 - (i + 1);
        uint8_t *s = disk + (size_t)lba * 512;
        s[446 + 16 + 4] = 0x05;
        le32_store(s + 446 + 16 + 8, next - 100);
        le32_store(s + 446 + 16 + 12, 1);
        s[510] = 0x55;
        s[511] = 0xaa;
    }
    patch(100 * 512, disk + 100 * 512, (DISK_SECTORS - 100) * 512);
    free(disk);
    expect_error(-EINVAL, "the chain of EBRs goes on for more than 1024 links");
}
END_TEST

START_TEST(mbr_beyond_disk)
{
    blank_disk();
    entry(0, 0, 0x83, 2048, 100000);
    entry(0, 1, 0x83, 2048, 100);
    struct run *r = run("%s part verify '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "Partition 1 (sectors 2048-102047) lies beyond the end of the disk"
                     " (4096 sectors).\nPartitions 1 and 2 overlap: 1 is sectors 2048-102047,"
                     " 2 is sectors 2048-2147.\n");
    vdisk_dev *dev, *part;
    ck_assert_int_eq(vdisk_open(&dev, img, NULL), 0);
    ck_assert_int_eq(vdisk_open_partition(&part, dev, 1, 0), -EINVAL);
    ck_assert_int_eq(vdisk_open_partition(&part, dev, 2, 0), 0);
    vdisk_close(part);
    vdisk_close(dev);
}
END_TEST

/* ---- GPT ---------------------------------------------------------------------- */

static void make_gpt(void)
{
    blank_disk();
    RUN_OK("%s part create --table=gpt '%s'", vdisk_bin(), img);
    RUN_OK("%s part add --size=512K '%s'", vdisk_bin(), img);
}

/* Sets a header field (LEN 4 or 8 bytes) at LBA and fixes its CRC. */
static void set_hdr(uint64_t lba, unsigned off, uint64_t v, unsigned len)
{
    int fd = open(img, O_RDWR);
    uint8_t h[512];
    ck_assert_int_eq(pread(fd, h, 512, (off_t)(lba * 512)), 512);
    if (len == 4)
        le32_store(h + off, (uint32_t)v);
    else
        le64_store(h + off, v);
    le32_store(h + 16, 0);
    le32_store(h + 16, (uint32_t)crc32(0, h, 92));
    ck_assert_int_eq(pwrite(fd, h, 512, (off_t)(lba * 512)), 512);
    close(fd);
}

START_TEST(gpt_entry_count_overflow)
{
    make_gpt();
    set_hdr(1, 80, 0xffffffffu, 4);
    set_hdr(DISK_SECTORS - 1, 80, 0x80000000u, 4);
    set_hdr(DISK_SECTORS - 1, 84, 0x100u, 4);
    expect_error(-EINVAL, "both GPT headers are damaged: primary: 4294967295 entries of 128"
                          " bytes: expected 1-65536 entries and at most 4194304 bytes; backup:"
                          " 2147483648 entries of 256 bytes: expected 1-65536 entries and at"
                          " most 4194304 bytes");
}
END_TEST

START_TEST(gpt_sizes_out_of_range)
{
    make_gpt();
    set_hdr(1, 12, 10000, 4);
    set_hdr(DISK_SECTORS - 1, 84, 96, 4);
    expect_error(-EINVAL, "both GPT headers are damaged: primary: header size 10000 is outside"
                          " 92-512; backup: entry size 96 is not a power of two from 128 to"
                          " 4096");
    make_gpt();
    set_hdr(1, 72, UINT64_MAX - 2, 8);
    set_hdr(DISK_SECTORS - 1, 48, 1u << 30, 8);
    expect_error(-EINVAL, "both GPT headers are damaged: primary: the entry array (32 sectors at"
                          " 18446744073709551613) lies beyond the disk (4096 sectors); backup:"
                          " usable sectors 34-1073741824 do not fit in the disk (4096 sectors)");
    /* Entries that fit but exceed the disk. */
    make_gpt();
    set_hdr(1, 80, 32768, 4);
    set_hdr(DISK_SECTORS - 1, 80, 32768, 4);
    expect_error(-EINVAL, "both GPT headers are damaged: primary: the entry array (8192 sectors"
                          " at 2) lies beyond the disk (4096 sectors); backup: the entry array"
                          " (8192 sectors at 4063) lies beyond the disk (4096 sectors)");
}
END_TEST

START_TEST(gpt_one_header_damaged)
{
    make_gpt();
    set_hdr(1, 12, 10000, 4);
    struct run *r = run("%s part verify '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "The primary GPT header is damaged: header size 10000 is outside"
                     " 92-512.\n");
    RUN_OK("%s part list '%s'", vdisk_bin(), img); /* read from the backup */
    r = run("%s part repair '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, "Fixed: The primary GPT header is damaged: header size 10000 is"
                     " outside 92-512.\n");
    RUN_OK("%s part verify '%s'", vdisk_bin(), img);
}
END_TEST

START_TEST(gpt_partition_outside)
{
    make_gpt();
    /* Entry 2: sectors 4000-9000, beyond the usable range and the disk. */
    uint8_t e[128] = {0};
    e[0] = 1;
    e[16] = 2;
    le64_store(e + 32, 4000);
    le64_store(e + 40, 9000);
    patch(2 * 512 + 128, e, sizeof e);
    patch((DISK_SECTORS - 33) * 512 + 128, e, sizeof e);
    uint8_t arr[128 * 128];
    int fd = open(img, O_RDONLY);
    ck_assert_int_eq(pread(fd, arr, sizeof arr, 1024), (ssize_t)sizeof arr);
    close(fd);
    uint32_t c = (uint32_t)crc32(0, arr, sizeof arr);
    set_hdr(1, 88, c, 4);
    set_hdr(DISK_SECTORS - 1, 88, c, 4);
    struct run *r = run("%s part verify '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "Partition 2 (sectors 4000-9000) lies beyond the end of the disk"
                     " (4096 sectors).\n");
    vdisk_dev *dev, *part;
    ck_assert_int_eq(vdisk_open(&dev, img, NULL), 0);
    ck_assert_int_eq(vdisk_open_partition(&part, dev, 2, 0), -EINVAL);
    ck_assert_int_eq(vdisk_open_partition(&part, dev, 1, 0), 0);
    vdisk_close(part);
    vdisk_close(dev);
}
END_TEST

/* ---- Sun, SGI, BSD ------------------------------------------------------------ */

/* The findings of vdisk part verify, and its exit status. */
static const char *verify_out(int *status)
{
    struct run *r = run("%s part verify -f raw '%s'", vdisk_bin(), img);
    *status = r->status;
    return r->out;
}

/* A Sun label: 65535 heads and sectors a track, partition 1 at cylinder
 * 2^32 - 1 (a start near 2^64: held in 64 bits, beyond any disk), partition
 * 2 of a sane size; SUM_OK: a right checksum. */
static void sun_label(bool sum_ok)
{
    uint8_t s[512] = {0};
    be32_store(s + 128, 1);           /* VTOC version */
    be16_store(s + 140, 8);           /* partitions */
    be32_store(s + 188, 0x600DDEEE);  /* VTOC sanity */
    be16_store(s + 432, 1);           /* cylinders */
    be16_store(s + 436, 0xffff);      /* heads */
    be16_store(s + 438, 0xffff);      /* sectors a track */
    be16_store(s + 142, 0x83);
    be32_store(s + 444, 0xffffffff);
    be32_store(s + 448, 0xffffffff);
    be16_store(s + 146, 0x82);
    be32_store(s + 452, 0);
    be32_store(s + 456, 100);
    be16_store(s + 508, 0xDABE);
    uint16_t x = 0;
    for (int i = 0; i < 255; i++)
        x ^= be16_load(s + 2 * i);
    be16_store(s + 510, sum_ok ? x : (uint16_t)(x ^ 1));
    patch(0, s, sizeof s);
}

START_TEST(sun_hostile)
{
    blank_disk();
    sun_label(true);
    int st;
    const char *out = verify_out(&st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_eq(out, "Partition 1 (sectors 18446181123756261375-18446181128051228669)"
                     " lies beyond the end of the disk (4096 sectors).\n");
    vdisk_dev *dev, *part;
    ck_assert_int_eq(vdisk_open(&dev, img, NULL), 0);
    ck_assert_int_eq(vdisk_open_partition(&part, dev, 1, VDISK_OPEN_RDONLY), -EINVAL);
    ck_assert_int_eq(vdisk_open_partition(&part, dev, 2, VDISK_OPEN_RDONLY), 0);
    ck_assert_uint_eq(vdisk_get_size(part), 100 * 512);
    vdisk_close(part);
    vdisk_ptable *t;
    ck_assert_int_eq(vdisk_part_read(&t, dev, 0), 0);
    ck_assert_int_eq(vdisk_part_kind(t), VDISK_PT_SUN);
    ck_assert_int_eq(vdisk_part_delete(t, 2), -ENOTSUP);
    ck_assert_int_eq(vdisk_part_write(t), -ENOTSUP);
    struct vdisk_partition p = {.struct_size = sizeof p};
    ck_assert_int_eq(vdisk_part_find(t, 1, &p), 0);
    ck_assert_str_eq(vdisk_part_type_name(t, &p), "Linux native");
    vdisk_part_free(t);
    vdisk_close(dev);
    /* A wrong checksum: found, and the geometry (255 heads, 63 sectors) is
     * sfdisk's default, as sfdisk lists such a label. */
    sun_label(false);
    out = verify_out(&st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_eq(out, "The Sun disklabel's checksum is wrong; its geometry is not used.\n"
                     "Partition 1 (sectors 68998649594175-69002944561469) lies beyond the end of the"
                     " disk (4096 sectors).\n");
}
END_TEST

START_TEST(sgi_bsd_hostile)
{
    /* SGI: a wrong checksum, a partition beyond the disk. */
    blank_disk();
    uint8_t s[512] = {0};
    be32_store(s, 0x0BE5A941);
    be32_store(s + 312, 0xffffffff);
    be32_store(s + 316, 0xffffffff);
    patch(0, s, sizeof s);
    int st;
    const char *out = verify_out(&st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_eq(out, "The SGI disklabel's checksum is wrong.\nPartition 1 (sectors"
                     " 4294967295-8589934589) lies beyond the end of the disk (4096 sectors).\n");
    /* BSD: 65535 partitions said, 16 read. */
    blank_disk();
    uint8_t d[512] = {0};
    le32_store(d, 0x82564557);
    le32_store(d + 132, 0x82564557);
    le16_store(d + 138, 0xffff);
    for (int i = 0; i < 16; i++) {
        le32_store(d + 148 + 16 * i, 10);
        le32_store(d + 152 + 16 * i, (uint32_t)(100 + 10 * i));
        d[148 + 16 * i + 12] = 7; /* 4.2BSD */
    }
    patch(512, d, sizeof d);
    out = verify_out(&st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_eq(out, "The BSD disklabel says 65535 partitions; at most 16 are read.\n");
    struct run *r = run("%s part list -f raw --output=json '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "h.img16\","));
    ck_assert_ptr_null(strstr(r->out, "h.img17"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("part-hostile");
    TCase *tc = tcase_create("hostile");
    tcase_add_test(tc, ebr_loop);
    tcase_add_test(tc, ebr_outside);
    tcase_add_test(tc, ebr_backwards_and_long);
    tcase_add_test(tc, mbr_beyond_disk);
    tcase_add_test(tc, gpt_entry_count_overflow);
    tcase_add_test(tc, gpt_sizes_out_of_range);
    tcase_add_test(tc, gpt_one_header_damaged);
    tcase_add_test(tc, gpt_partition_outside);
    tcase_add_test(tc, sun_hostile);
    tcase_add_test(tc, sgi_bsd_hostile);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
