/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/mmc.c: the MMC CD-ROM logical unit (lib/virtio/mmc.c) driven
 * through mmc_execute() with CDBs as Linux's sr and cdrom drivers send
 * them: the exact reply bytes, the sense data of every error, unit
 * attentions and media events, the tray, and reads checked against the
 * medium.  Media are raw files of a known number of 2048-byte blocks (the
 * CD-ROM drive takes any file) and, where xorriso is installed, a real ISO.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/device.h>
#include <vdisk/iso9660.h>

#include "harness.h"
#include "virtio/mmc.h"

static uint8_t buf[MMC_REPLY_MAX];
static struct mmc_reply rep;

/* Runs CDB (padded to 16 bytes) with DIN bytes of data-in room. */
static void exec(struct mmc_lun *lun, size_t din, const uint8_t *cdb, size_t len)
{
    uint8_t c[16] = {0};
    ck_assert_uint_le(len, sizeof c);
    memcpy(c, cdb, len);
    struct mmc_cmd cmd = {.cdb = c, .cdb_len = sizeof c, .data_in_len = din, .data_out_len = 0};
    memset(buf, 0xee, sizeof buf);
    memset(&rep, 0xcc, sizeof rep);
    mmc_execute(lun, &cmd, buf, &rep);
}

#define CDB(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define RUN(lun, ...) exec(lun, 65536, CDB(__VA_ARGS__))
#define RUN_DIN(lun, din, ...) exec(lun, din, CDB(__VA_ARGS__))

static void expect_sense(uint8_t key, uint8_t asc, uint8_t ascq)
{
    ck_assert_int_eq(rep.action, MMC_REPLY);
    ck_assert_int_eq(rep.status, MMC_STATUS_CHECK_CONDITION);
    ck_assert_uint_eq(rep.sense_len, 18);
    ck_assert_uint_eq(rep.data_len, 0);
    const uint8_t want[18] = {0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0};
    if (memcmp(rep.sense, want, 18) != 0)
        ck_abort_msg("sense %x/%02x/%02x, expected %x/%02x/%02x (bytes 0 %02x 7 %02x)",
                     rep.sense[2], rep.sense[12], rep.sense[13], key, asc, ascq,
                     rep.sense[0], rep.sense[7]);
}

static void expect_good(size_t len)
{
    ck_assert_int_eq(rep.action, MMC_REPLY);
    ck_assert_msg(rep.status == MMC_STATUS_GOOD, "status %u, sense %x/%02x/%02x", rep.status,
                  rep.sense[2], rep.sense[12], rep.sense[13]);
    ck_assert_uint_eq(rep.sense_len, 0);
    ck_assert_uint_eq(rep.data_len, len);
}

#define EXPECT_DATA(...)                                                           \
    do {                                                                           \
        const uint8_t w_[] = {__VA_ARGS__};                                        \
        expect_good(sizeof w_);                                                    \
        assert_same_bytes(buf, w_, sizeof w_, 0, "reply");                         \
    } while (0)

static void expect_read(uint64_t offset, uint64_t length)
{
    ck_assert_int_eq(rep.action, MMC_READ);
    ck_assert_int_eq(rep.status, MMC_STATUS_GOOD);
    ck_assert_uint_eq(rep.sense_len, 0);
    ck_assert_uint_eq(rep.offset, offset);
    ck_assert_uint_eq(rep.length, length);
}

/* A raw medium of BLOCKS blocks, block N filled with the byte N + 1. */
static const char *make_medium(const char *name, unsigned blocks)
{
    const char *path = scratch(name);
    uint8_t *data = malloc((size_t)blocks * 2048);
    ck_assert_ptr_nonnull(data);
    for (unsigned i = 0; i < blocks; i++)
        memset(data + (size_t)i * 2048, (int)(i + 1), 2048);
    write_file(path, data, (size_t)blocks * 2048);
    free(data);
    return path;
}

/* A sparse medium of BLOCKS zero blocks. */
static const char *make_sparse(const char *name, uint64_t blocks)
{
    const char *path = scratch(name);
    write_file(path, "", 0);
    ck_assert_int_eq(truncate(path, (off_t)(blocks * 2048)), 0);
    return path;
}

/* A LUN over a CD-ROM drive holding ISO (NULL: empty).  Unless FRESH, the
 * power-on unit attention is consumed. */
static struct mmc_lun *new_lun(const char *iso, bool fresh)
{
    vdisk_dev *cd;
    ck_assert_int_eq(vdisk_open_cdrom(&cd, iso, NULL), 0);
    int err = 1;
    struct mmc_lun *lun = mmc_lun_new(cd, NULL, NULL, &err);
    ck_assert_ptr_nonnull(lun);
    ck_assert_int_eq(err, 0);
    vdisk_close(cd); /* the LUN holds its own reference */
    if (!fresh) {
        RUN(lun, 0x00, 0, 0, 0, 0, 0);
        expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x29, 0x00);
    }
    return lun;
}

static struct mmc_lun *lun100(void)
{
    return new_lun(make_medium("m100.img", 100), false);
}

/* ---- Unit attentions ------------------------------------------------------------ */

START_TEST(power_on_attention)
{
    struct mmc_lun *lun = new_lun(make_medium("a.img", 100), true);
    /* INQUIRY, REPORT LUNS, GET CONFIGURATION, GESN run with it pending. */
    RUN(lun, 0x12, 0, 0, 0, 36, 0);
    expect_good(36);
    RUN(lun, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0);
    expect_good(16);
    RUN(lun, 0x46, 0x01, 0, 0, 0, 0, 0, 0, 8, 0);
    expect_good(8);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    expect_good(8);
    /* An unknown opcode sees the unit attention first. */
    RUN(lun, 0xff, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x29, 0x00);
    RUN(lun, 0xff, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x20, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_good(0);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(request_sense_clears_attention)
{
    struct mmc_lun *lun = new_lun(make_medium("a.img", 100), true);
    RUN(lun, 0x03, 0, 0, 0, 252, 0);
    EXPECT_DATA(0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0);
    RUN(lun, 0x03, 0, 0, 0, 252, 0);
    EXPECT_DATA(0x70, 0, 0x00, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x00, 0x00, 0, 0, 0, 0);
    /* Truncated to the allocation length. */
    RUN(lun, 0x03, 0, 0, 0, 8, 0);
    expect_good(8);
    /* Descriptor format is not supported. */
    RUN(lun, 0x03, 0x01, 0, 0, 252, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_good(0);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(attention_order)
{
    struct mmc_lun *lun = new_lun(make_medium("a.img", 100), true);
    ck_assert_int_eq(mmc_change_medium(lun, make_medium("b.img", 50)), 0);
    /* GESN reports the event and leaves the attentions pending. */
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x02, 0x02, 0x00, 0x00);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x29, 0x00);
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x28, 0x00);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_DATA(0, 0, 0, 49, 0, 0, 0x08, 0);
    mmc_lun_free(lun);
}
END_TEST

/* ---- Identification ---------------------------------------------------------------- */

START_TEST(inquiry)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0x12, 0, 0, 0, 36, 0);
    EXPECT_DATA(0x05, 0x80, 0x05, 0x02, 91, 0, 0, 0,
                'V', 'D', 'I', 'S', 'K', ' ', ' ', ' ',
                'C', 'D', '-', 'R', 'O', 'M', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
                '1', '.', '0', ' ');
    RUN(lun, 0x12, 0, 0, 0, 255, 0);
    expect_good(96);
    for (int i = 36; i < 96; i++)
        ck_assert_uint_eq(buf[i], 0);
    RUN(lun, 0x12, 0, 0, 0, 5, 0);
    EXPECT_DATA(0x05, 0x80, 0x05, 0x02, 91);
    /* A page code without EVPD, CMDDT, an unknown page. */
    RUN(lun, 0x12, 0, 0x80, 0, 255, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0x12, 0x02, 0, 0, 255, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0x12, 0x01, 0xb0, 0, 255, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    /* VPD pages. */
    RUN(lun, 0x12, 0x01, 0x00, 0, 255, 0);
    EXPECT_DATA(0x05, 0x00, 0x00, 0x03, 0x00, 0x80, 0x83);
    RUN(lun, 0x12, 0x01, 0x80, 0, 255, 0);
    ck_assert_int_eq(rep.status, MMC_STATUS_GOOD);
    ck_assert_uint_eq(buf[0], 0x05);
    ck_assert_uint_eq(buf[1], 0x80);
    size_t slen = (size_t)buf[2] << 8 | buf[3];
    ck_assert_uint_eq(rep.data_len, 4 + slen);
    ck_assert_uint_ge(slen, 1);
    char serial[256];
    memcpy(serial, buf + 4, slen);
    for (size_t i = 0; i < slen; i++)
        ck_assert_msg(serial[i] > 0x20 && serial[i] < 0x7f, "serial byte %zu", i);
    RUN(lun, 0x12, 0x01, 0x83, 0, 255, 0);
    ck_assert_int_eq(rep.status, MMC_STATUS_GOOD);
    ck_assert_uint_eq(buf[1], 0x83);
    ck_assert_uint_eq((size_t)buf[2] << 8 | buf[3], 4 + 24 + slen);
    ck_assert_uint_eq(rep.data_len, 4 + 4 + 24 + slen);
    ck_assert_uint_eq(buf[4], 0x02);   /* ASCII */
    ck_assert_uint_eq(buf[5], 0x01);   /* LU, T10 vendor id */
    ck_assert_uint_eq(buf[7], 24 + slen);
    ck_assert_int_eq(memcmp(buf + 8, "VDISK   CD-ROM          ", 24), 0);
    ck_assert_int_eq(memcmp(buf + 32, serial, slen), 0);
    RUN(lun, 0x12, 0x01, 0x83, 0, 6, 0);
    expect_good(6);
    mmc_lun_free(lun);

    /* Named vendor and product, padded or cut. */
    vdisk_dev *cd;
    ck_assert_int_eq(vdisk_open_cdrom(&cd, NULL, NULL), 0);
    lun = mmc_lun_new(cd, "ACME", "A very long product name", NULL);
    vdisk_close(cd);
    RUN(lun, 0x12, 0, 0, 0, 36, 0);
    expect_good(36);
    ck_assert_int_eq(memcmp(buf + 8, "ACME    A very long prod", 24), 0);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(report_luns)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0);
    EXPECT_DATA(0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    RUN(lun, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0xa0, 0, 0x03, 0, 0, 0, 0, 0, 0, 16, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

/* ---- Capacity and reads ---------------------------------------------------------------- */

START_TEST(read_capacity)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_DATA(0, 0, 0, 99, 0, 0, 0x08, 0x00);
    RUN(lun, 0x25, 0, 0, 0, 0, 5, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(reads)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0);
    expect_read(0, 4 * 2048);
    RUN(lun, 0x28, 0, 0, 0, 0, 99, 0, 0, 1, 0);
    expect_read(99 * 2048, 2048);
    RUN_DIN(lun, 90 * 2048, 0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 90, 0, 0);
    expect_read(10 * 2048, 90 * 2048);
    /* The reply names bytes of the medium: block N holds the byte N + 1. */
    RUN(lun, 0x28, 0, 0, 0, 0, 42, 0, 0, 1, 0);
    expect_read(42 * 2048, 2048);
    mmc_lun_free(lun);

    vdisk_dev *cd;
    ck_assert_int_eq(vdisk_open_cdrom(&cd, scratch("m100.img"), NULL), 0);
    uint8_t blk[2048];
    ck_assert_int_eq(vdisk_pread(cd, blk, sizeof blk, 42 * 2048), 0);
    ck_assert_uint_eq(blk[0], 43);
    ck_assert_uint_eq(blk[2047], 43);
    vdisk_close(cd);
}
END_TEST

START_TEST(read_zero_length)
{
    struct mmc_lun *lun = lun100();
    RUN_DIN(lun, 0, 0x28, 0, 0, 0, 0, 5, 0, 0, 0, 0);
    expect_good(0);
    RUN_DIN(lun, 0, 0xa8, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0);
    expect_good(0);
    RUN_DIN(lun, 0, 0x28, 0, 0, 0, 0, 101, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(read_out_of_range)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0x28, 0, 0, 0, 0, 99, 0, 0, 2, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    RUN(lun, 0x28, 0, 0, 0, 0, 100, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    /* Overflow: lba + count and count * 2048 do not wrap. */
    RUN(lun, 0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    RUN(lun, 0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    RUN(lun, 0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    RUN(lun, 0xa8, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    RUN(lun, 0xa8, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    /* RDPROTECT. */
    RUN(lun, 0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(read_buffer_too_small)
{
    struct mmc_lun *lun = lun100();
    RUN_DIN(lun, 4 * 2048 - 1, 0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN_DIN(lun, 0, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN_DIN(lun, 4 * 2048, 0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0);
    expect_read(0, 4 * 2048);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(read_cd)
{
    struct mmc_lun *lun = lun100();
    /* Mode 1, user data only. */
    RUN(lun, 0xbe, 2 << 2, 0, 0, 0, 7, 0, 0, 3, 0x10, 0, 0);
    expect_read(7 * 2048, 3 * 2048);
    RUN(lun, 0xbe, 0, 0, 0, 0, 7, 0, 0, 3, 0x00, 0, 0);
    expect_good(0);
    /* Raw sectors, audio, subchannels: refused. */
    RUN(lun, 0xbe, 0, 0, 0, 0, 7, 0, 0, 1, 0xf8, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0xbe, 1 << 2, 0, 0, 0, 7, 0, 0, 1, 0x10, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0xbe, 0, 0, 0, 0, 7, 0, 0, 1, 0x10, 0x01, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0xbe, 0, 0, 0, 0, 99, 0, 0, 2, 0x10, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x21, 0x00);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(read_failed)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_read(0, 2048);
    mmc_read_failed(lun, -ENOMEDIUM, &rep);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    mmc_read_failed(lun, -EIO, &rep);
    expect_sense(MMC_SENSE_MEDIUM_ERROR, 0x11, 0x00);
    mmc_lun_free(lun);
}
END_TEST

/* ---- Table of contents, disc and track ------------------------------------------------------ */

START_TEST(read_toc)
{
    struct mmc_lun *lun = lun100();
    /* Format 0, LBA. */
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0);
    EXPECT_DATA(0x00, 0x12, 1, 1,
                0, 0x14, 1, 0, 0, 0, 0, 0,
                0, 0x14, 0xaa, 0, 0, 0, 0, 100);
    /* Format 0, MSF: 00:02:00 and 100 + 150 frames = 00:03:25. */
    RUN(lun, 0x43, 0x02, 0, 0, 0, 0, 1, 0x03, 0x24, 0);
    EXPECT_DATA(0x00, 0x12, 1, 1,
                0, 0x14, 1, 0, 0, 0, 2, 0,
                0, 0x14, 0xaa, 0, 0, 0, 3, 25);
    /* Starting at the lead-out. */
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 0xaa, 0x03, 0x24, 0);
    EXPECT_DATA(0x00, 0x0a, 1, 1, 0, 0x14, 0xaa, 0, 0, 0, 0, 100);
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 2, 0x03, 0x24, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    /* Format 1 (session), LBA and MSF, and in byte 9 as sr_cd_check asks. */
    RUN(lun, 0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0);
    EXPECT_DATA(0x00, 0x0a, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0);
    RUN(lun, 0x43, 0x02, 1, 0, 0, 0, 0, 0, 12, 0);
    EXPECT_DATA(0x00, 0x0a, 1, 1, 0, 0x14, 1, 0, 0, 0, 2, 0);
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40);
    EXPECT_DATA(0x00, 0x0a, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0);
    /* Truncated; unsupported formats. */
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 0, 0, 4, 0);
    EXPECT_DATA(0x00, 0x12, 1, 1);
    RUN(lun, 0x43, 0, 2, 0, 0, 0, 0, 0x03, 0x24, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);

    /* A large medium in MSF: 400000 + 150 frames = 88:55:25. */
    lun = new_lun(make_sparse("big.img", 400000), false);
    RUN(lun, 0x43, 0x02, 0, 0, 0, 0, 0xaa, 0, 12, 0);
    EXPECT_DATA(0x00, 0x0a, 1, 1, 0, 0x14, 0xaa, 0, 0, 88, 55, 25);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(disc_and_track_information)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0);
    EXPECT_DATA(0x00, 0x20, 0x0e, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    RUN(lun, 0x51, 0, 0, 0, 0, 0, 0, 0, 2, 0);
    EXPECT_DATA(0x00, 0x20);
    RUN(lun, 0x51, 0x01, 0, 0, 0, 0, 0, 0, 34, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    /* Track 1, as cdrom_get_last_written asks (36 bytes). */
    RUN(lun, 0x52, 0x01, 0, 0, 0, 1, 0, 0, 36, 0);
    EXPECT_DATA(0x00, 0x2e, 1, 1, 0, 0x04, 0x01, 0x00,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0);
    RUN(lun, 0x52, 0x00, 0, 0, 0, 99, 0, 0, 0xff, 0);
    expect_good(48);
    RUN(lun, 0x52, 0x02, 0, 0, 0, 1, 0, 0, 8, 0);
    expect_good(8);
    RUN(lun, 0x52, 0x00, 0, 0, 0, 100, 0, 0, 0xff, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0x52, 0x01, 0, 0, 0, 2, 0, 0, 0xff, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0x52, 0x01, 0, 0, 0, 0xff, 0, 0, 0xff, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

/* ---- Configuration, events, mode pages ---------------------------------------------------- */

START_TEST(get_configuration)
{
    struct mmc_lun *lun = lun100();
    /* RT 2, feature 0: the profile list; CD-ROM current. */
    RUN(lun, 0x46, 0x02, 0, 0, 0, 0, 0, 0, 0xff, 0);
    EXPECT_DATA(0, 0, 0, 16, 0, 0, 0x00, 0x08,
                0x00, 0x00, 0x03, 8, 0x00, 0x10, 0x00, 0, 0x00, 0x08, 0x01, 0);
    /* RT 1: the current features. */
    RUN(lun, 0x46, 0x01, 0, 0, 0, 0, 0, 0x01, 0x00, 0);
    EXPECT_DATA(0, 0, 0, 64, 0, 0, 0x00, 0x08,
                0x00, 0x00, 0x03, 8, 0x00, 0x10, 0x00, 0, 0x00, 0x08, 0x01, 0,
                0x00, 0x01, 0x0b, 8, 0, 0, 0, 1, 0, 0, 0, 0,
                0x00, 0x02, 0x07, 4, 0x02, 0, 0, 0,
                0x00, 0x03, 0x03, 4, 0x29, 0, 0, 0,
                0x00, 0x10, 0x01, 8, 0, 0, 0x08, 0, 0, 1, 0, 0,
                0x00, 0x1e, 0x01, 4, 0, 0, 0, 0);
    /* RT 0 from feature 0x10: random readable, CD read, DVD read (not current). */
    RUN(lun, 0x46, 0x00, 0, 0x10, 0, 0, 0, 0x01, 0x00, 0);
    EXPECT_DATA(0, 0, 0, 32, 0, 0, 0x00, 0x08,
                0x00, 0x10, 0x01, 8, 0, 0, 0x08, 0, 0, 1, 0, 0,
                0x00, 0x1e, 0x01, 4, 0, 0, 0, 0,
                0x00, 0x1f, 0x00, 4, 0, 0, 0, 0);
    /* What cdrom_mmc3_profile reads: the header; truncated. */
    RUN(lun, 0x46, 0x00, 0, 0, 0, 0, 0, 0, 8, 0);
    expect_good(8);
    ck_assert_uint_eq(buf[6] << 8 | buf[7], 0x0008);
    RUN(lun, 0x46, 0x03, 0, 0, 0, 0, 0, 0, 8, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);

    /* More than a CD holds: DVD-ROM. */
    lun = new_lun(make_sparse("big.img", 400000), false);
    RUN(lun, 0x46, 0x02, 0, 0, 0, 0, 0, 0, 0xff, 0);
    EXPECT_DATA(0, 0, 0, 16, 0, 0, 0x00, 0x10,
                0x00, 0x00, 0x03, 8, 0x00, 0x10, 0x01, 0, 0x00, 0x08, 0x00, 0);
    mmc_lun_free(lun);

    /* Empty: no current profile. */
    lun = new_lun(NULL, false);
    RUN(lun, 0x46, 0x02, 0, 0, 0, 0, 0, 0, 0xff, 0);
    EXPECT_DATA(0, 0, 0, 16, 0, 0, 0x00, 0x00,
                0x00, 0x00, 0x03, 8, 0x00, 0x10, 0x00, 0, 0x00, 0x08, 0x00, 0);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(event_status)
{
    struct mmc_lun *lun = lun100();
    /* As sr_get_events asks: polled, media class, 8 bytes. */
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x00, 0x02, 0x00, 0x00);
    ck_assert_int_eq(mmc_change_medium(lun, make_medium("b.img", 10)), 0);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x02, 0x02, 0x00, 0x00);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x00, 0x02, 0x00, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x28, 0x00);
    ck_assert_int_eq(mmc_change_medium(lun, NULL), 0);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x03, 0x00, 0x00, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    /* No supported class asked for; truncated; asynchronous. */
    RUN(lun, 0x4a, 0x01, 0, 0, 0x02, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x02, 0x80, 0x10);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 4, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10);
    RUN(lun, 0x4a, 0x00, 0, 0, 0x10, 0, 0, 0, 8, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(mode_sense)
{
    struct mmc_lun *lun = lun100();
    /* MODE SENSE(10) page 2Ah, as sr's get_capabilities asks (128 bytes). */
    RUN(lun, 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 128, 0);
    EXPECT_DATA(0x00, 28, 0, 0, 0, 0, 0, 0,
                0x2a, 20, 0x0b, 0x00, 0x70, 0x00, 0x29, 0x00,
                0x10, 0x80, 0, 0, 0, 0, 0x10, 0x80, 0, 0, 0, 0, 0, 0);
    /* MODE SENSE(6). */
    RUN(lun, 0x1a, 0, 0x2a, 0, 0xff, 0);
    EXPECT_DATA(25, 0, 0, 0,
                0x2a, 20, 0x0b, 0x00, 0x70, 0x00, 0x29, 0x00,
                0x10, 0x80, 0, 0, 0, 0, 0x10, 0x80, 0, 0, 0, 0, 0, 0);
    /* The lock state follows PREVENT ALLOW MEDIUM REMOVAL. */
    RUN(lun, 0x1e, 0, 0, 0, 1, 0);
    expect_good(0);
    RUN(lun, 0x1a, 0, 0x2a, 0, 0xff, 0);
    expect_good(26);
    ck_assert_uint_eq(buf[4 + 6], 0x2b);
    RUN(lun, 0x1e, 0, 0, 0, 0, 0);
    expect_good(0);
    /* Changeable values: none. */
    RUN(lun, 0x5a, 0, 0x40 | 0x2a, 0, 0, 0, 0, 0, 128, 0);
    EXPECT_DATA(0x00, 28, 0, 0, 0, 0, 0, 0,
                0x2a, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    /* Pages 01h and 0Dh; all pages. */
    RUN(lun, 0x5a, 0, 0x01, 0, 0, 0, 0, 0, 128, 0);
    EXPECT_DATA(0x00, 18, 0, 0, 0, 0, 0, 0, 0x01, 10, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0);
    RUN(lun, 0x5a, 0, 0x0d, 0, 0, 0, 0, 0, 128, 0);
    EXPECT_DATA(0x00, 14, 0, 0, 0, 0, 0, 0, 0x0d, 6, 0, 0, 0, 60, 0, 75);
    RUN(lun, 0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 128, 0);
    expect_good(8 + 12 + 8 + 22);
    ck_assert_uint_eq(buf[1], 8 + 12 + 8 + 22 - 2);
    ck_assert_uint_eq(buf[8], 0x01);
    ck_assert_uint_eq(buf[20], 0x0d);
    ck_assert_uint_eq(buf[28], 0x2a);
    /* Truncated. */
    RUN(lun, 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 28, 0, 0, 0, 0, 0, 0);
    /* Saved values, unknown pages, subpages. */
    RUN(lun, 0x5a, 0, 0xc0 | 0x2a, 0, 0, 0, 0, 0, 128, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x39, 0x00);
    RUN(lun, 0x5a, 0, 0x05, 0, 0, 0, 0, 0, 128, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    RUN(lun, 0x1a, 0, 0x2a, 0x01, 0xff, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

START_TEST(mechanism_status_and_misc)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0);
    EXPECT_DATA(0, 0, 0, 0, 0, 0, 0, 0);
    RUN(lun, 0xbb, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0);
    expect_good(0);
    RUN(lun, 0xac, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0);
    EXPECT_DATA(0, 0, 0, 20, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0x10, 0x80, 0, 0, 0, 99, 0, 0, 0x10, 0x80);
    RUN(lun, 0xac, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_DATA(0, 0, 0, 4, 0, 0, 0, 0);
    RUN(lun, 0xac, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0x03, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    mmc_lun_free(lun);
}
END_TEST

/* ---- Tray -------------------------------------------------------------------------------- */

START_TEST(eject_load_prevent)
{
    struct mmc_lun *lun = lun100();
    /* PREVENT, then eject: refused. */
    RUN(lun, 0x1e, 0, 0, 0, 1, 0);
    expect_good(0);
    RUN(lun, 0x1b, 0, 0, 0, 0x02, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x53, 0x02);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_good(0);
    /* ALLOW, eject: the tray opens. */
    RUN(lun, 0x1e, 0, 0, 0, 0, 0);
    expect_good(0);
    RUN(lun, 0x1b, 0, 0, 0, 0x02, 0);
    expect_good(0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x02);
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x02);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x02);
    RUN(lun, 0x03, 0, 0, 0, 18, 0);
    EXPECT_DATA(0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3a, 0x02, 0, 0, 0, 0);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x03, 0x01, 0x00, 0x00);
    RUN(lun, 0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0);
    EXPECT_DATA(0, 0x10, 0, 0, 0, 0, 0, 0);
    RUN(lun, 0x46, 0x02, 0, 0, 0, 0, 0, 0, 8, 0);
    EXPECT_DATA(0, 0, 0, 16, 0, 0, 0x00, 0x00);
    /* Eject again: nothing more happens. */
    RUN(lun, 0x1b, 0, 0, 0, 0x02, 0);
    expect_good(0);
    /* Load: the medium is back, with a unit attention and an event. */
    RUN(lun, 0x1b, 0, 0, 0, 0x03, 0);
    expect_good(0);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x02, 0x02, 0x00, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x28, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_good(0);
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_read(0, 2048);
    /* Load with the tray closed, start / stop without LoEj, power conditions. */
    RUN(lun, 0x1b, 0, 0, 0, 0x03, 0);
    expect_good(0);
    RUN(lun, 0x1b, 0, 0, 0, 0x01, 0);
    expect_good(0);
    RUN(lun, 0x1b, 0, 0, 0, 0x00, 0);
    expect_good(0);
    RUN(lun, 0x1b, 0, 0, 0, 0x32, 0);
    expect_good(0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_good(0);
    /* The host's change closes an open tray. */
    RUN(lun, 0x1b, 0, 0, 0, 0x02, 0);
    expect_good(0);
    ck_assert_int_eq(mmc_change_medium(lun, make_medium("c.img", 20)), 0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x28, 0x00);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_DATA(0, 0, 0, 19, 0, 0, 0x08, 0x00);
    mmc_lun_free(lun);
}
END_TEST

/* ---- Errors ------------------------------------------------------------------------------ */

START_TEST(writes_are_refused)
{
    struct mmc_lun *lun = lun100();
    static const uint8_t ops[] = {0x0a, 0x2a, 0xaa, 0x2e, 0xae, 0x8a, 0x41, 0x04, 0xa1};
    for (size_t i = 0; i < sizeof ops; i++) {
        uint8_t cdb[16] = {ops[i], 0, 0, 0, 0, 0, 0, 0, 1, 0};
        exec(lun, 0, cdb, sizeof cdb);
        expect_sense(MMC_SENSE_DATA_PROTECT, 0x27, 0x00);
    }
    mmc_lun_free(lun);
}
END_TEST

START_TEST(bad_commands)
{
    struct mmc_lun *lun = lun100();
    RUN(lun, 0xff, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x20, 0x00);
    RUN(lun, 0x15, 0, 0, 0, 0, 0); /* MODE SELECT(6) */
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x20, 0x00);
    /* A CDB shorter than its opcode's, and none at all. */
    uint8_t cdb[16] = {0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    struct mmc_cmd c = {.cdb = cdb, .cdb_len = 6, .data_in_len = 2048};
    mmc_execute(lun, &c, buf, &rep);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x24, 0x00);
    c.cdb_len = 0;
    mmc_execute(lun, &c, buf, &rep);
    expect_sense(MMC_SENSE_ILLEGAL_REQUEST, 0x20, 0x00);
    mmc_sense(&rep, MMC_SENSE_HARDWARE_ERROR, 0x44, 0x01);
    expect_sense(MMC_SENSE_HARDWARE_ERROR, 0x44, 0x01);
    mmc_lun_free(lun);

    /* Not a CD-ROM drive. */
    vdisk_dev *d;
    ck_assert_int_eq(vdisk_open(&d, scratch("m100.img"), NULL), 0);
    int err = 0;
    ck_assert_ptr_null(mmc_lun_new(d, NULL, NULL, &err));
    ck_assert_int_eq(err, -EINVAL);
    vdisk_close(d);
}
END_TEST

START_TEST(empty_drive)
{
    struct mmc_lun *lun = new_lun(NULL, true);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x29, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    RUN(lun, 0x03, 0, 0, 0, 18, 0);
    EXPECT_DATA(0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3a, 0x01, 0, 0, 0, 0);
    RUN(lun, 0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0);
    EXPECT_DATA(0x00, 0x06, 0x04, 0x10, 0x00, 0x00, 0x00, 0x00);
    RUN(lun, 0x12, 0, 0, 0, 36, 0);
    expect_good(36);
    RUN(lun, 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 128, 0);
    expect_good(30);
    /* Eject and load of an empty drive: no attention. */
    RUN(lun, 0x1b, 0, 0, 0, 0x02, 0);
    expect_good(0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x02);
    RUN(lun, 0x1b, 0, 0, 0, 0x03, 0);
    expect_good(0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    /* A failed load leaves the drive empty. */
    ck_assert_int_lt(mmc_change_medium(lun, scratch("missing.iso")), 0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_NOT_READY, 0x3a, 0x01);
    /* A medium arrives. */
    ck_assert_int_eq(mmc_change_medium(lun, make_medium("d.img", 3)), 0);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x28, 0x00);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_good(0);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_DATA(0, 0, 0, 2, 0, 0, 0x08, 0x00);
    mmc_lun_free(lun);
}
END_TEST

/* ---- A real ISO ------------------------------------------------------------------------------ */

START_TEST(xorriso_iso)
{
    CASE_REQUIRE_PROGRAM("xorriso");
    const char *t = scratch("tree"), *iso = scratch("x.iso");
    RUN_OK("rm -rf '%s' && mkdir '%s' && echo hello > '%s/hello.txt' && "
           "xorriso -as mkisofs -quiet -V MMC_TEST -o '%s' '%s'", t, t, t, iso, t);
    vdisk_dev *cd;
    ck_assert_int_eq(vdisk_open_cdrom(&cd, iso, NULL), 0);
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    ck_assert_int_eq(vdisk_cdrom_get_media(cd, &m), 0);
    ck_assert_str_eq(m.volume_id, "MMC_TEST");
    struct mmc_lun *lun = mmc_lun_new(cd, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(lun);
    RUN(lun, 0x00, 0, 0, 0, 0, 0);
    expect_sense(MMC_SENSE_UNIT_ATTENTION, 0x29, 0x00);
    RUN(lun, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    expect_good(8);
    uint32_t last = (uint32_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3];
    ck_assert_uint_eq(last + 1, m.blocks);
    /* The primary volume descriptor, through the read the LUN asks for. */
    RUN(lun, 0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0);
    expect_read(16 * 2048, 2048);
    uint8_t pvd[2048];
    ck_assert_int_eq(vdisk_pread(cd, pvd, (size_t)rep.length, rep.offset), 0);
    ck_assert_uint_eq(pvd[0], 1);
    ck_assert_int_eq(memcmp(pvd + 1, "CD001", 5), 0);
    /* The lead-out is the capacity. */
    RUN(lun, 0x43, 0, 0, 0, 0, 0, 0xaa, 0, 12, 0);
    expect_good(12);
    ck_assert_uint_eq((uint32_t)buf[8] << 24 | buf[9] << 16 | buf[10] << 8 | buf[11], m.blocks);
    mmc_lun_free(lun);
    vdisk_close(cd);
}
END_TEST

static Suite *mmc_suite(void)
{
    Suite *s = suite_create("mmc");
    TCase *tc = tcase_create("attention");
    tcase_add_test(tc, power_on_attention);
    tcase_add_test(tc, request_sense_clears_attention);
    tcase_add_test(tc, attention_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("identity");
    tcase_add_test(tc, inquiry);
    tcase_add_test(tc, report_luns);
    suite_add_tcase(s, tc);
    tc = tcase_create("read");
    tcase_add_test(tc, read_capacity);
    tcase_add_test(tc, reads);
    tcase_add_test(tc, read_zero_length);
    tcase_add_test(tc, read_out_of_range);
    tcase_add_test(tc, read_buffer_too_small);
    tcase_add_test(tc, read_cd);
    tcase_add_test(tc, read_failed);
    suite_add_tcase(s, tc);
    tc = tcase_create("mmc");
    tcase_add_test(tc, read_toc);
    tcase_add_test(tc, disc_and_track_information);
    tcase_add_test(tc, get_configuration);
    tcase_add_test(tc, event_status);
    tcase_add_test(tc, mode_sense);
    tcase_add_test(tc, mechanism_status_and_misc);
    suite_add_tcase(s, tc);
    tc = tcase_create("tray");
    tcase_add_test(tc, eject_load_prevent);
    tcase_add_test(tc, empty_drive);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, writes_are_refused);
    tcase_add_test(tc, bad_commands);
    suite_add_tcase(s, tc);
    tc = tcase_create("iso");
    tcase_add_test(tc, xorriso_iso);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(mmc_suite());
}
