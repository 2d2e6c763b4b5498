/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_vhdx.c: VHDX images between vdisk and qemu-img
 * 7.2: images qemu-img makes (dynamic and fixed, block sizes 1 to 256 MiB,
 * log sizes, written by qemu-io with patterns, zeroes and discards; a
 * logical sector size of 4096 patched in) read byte for byte as qemu-img
 * reads them, with its info, map and check output; convert to raw and
 * qcow2; an image with a log to replay (written here, as Hyper-V writes
 * one) refused read-only in qemu-img's words and replayed by vdisk check
 * -r all to the bytes qemu-img check -r all gives; damaged images refused
 * with exact messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

/* The driver's CRC-32C (formats/vhdx): the test patches fields and sums
 * them again; qemu-made images check the function itself. */
uint32_t vhdx_crc32c(const uint8_t *buf, size_t len, size_t skip);

#define MIB (1u << 20)
#define H1 (64u << 10)
#define H2 (128u << 10)
#define RT1 (192u << 10)
#define RT2 (256u << 10)

/* The layout qemu-img 7.2 gives a new image: log at 1 MiB (log_size 1M),
 * BAT at 2 MiB, metadata at 3 MiB, items from 64 KiB into it. */
#define BAT (2u * MIB)
#define MD (3u * MIB)
#define MD_PARAMS (MD + 65536)
#define MD_SIZE (MD + 65544)
#define MD_LOGICAL (MD + 65568)

static int open_ro(vdisk_dev **d, const char *file)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    int r = vdisk_open(d, file, o);
    vdisk_options_free(o);
    return r;
}

static void info_map_check_raw(const char *file)
{
    same_as_qemu_img("info", file);
    same_as_qemu_img("info --output=json", file);
    same_as_qemu_img("map --output=json", file);
    same_as_qemu_img("map", file);
    same_as_qemu_img("check", file);
    same_as_qemu_img("check --output=json", file);
    same_raw_as_qemu_img(file);
}

START_TEST(qemu_images_read_identically)
{
    static const char *const bs[] = {"1M", "8M", "32M", "256M"};
    static const char *const sub[] = {"dynamic", "fixed"};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) {
        for (size_t j = 0; j < 2; j++) {
            RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o "
                   "block_size=%s,subformat=%s,log_size=%s q.vhdx 300M", scratch_dir(), bs[i],
                   sub[j], i % 2 ? "2M" : "1M");
            RUN_OK("cd '%s' && qemu-io -f vhdx -c 'write -P 0x5a 1000k 3000k' "
                   "-c 'write -z 40M 2M' -c 'discard 1M 1M' -c 'write -P 0x11 64M 4k' "
                   "-c 'write -P 7 299M 1M' -c 'write -z 299M 4k' q.vhdx", scratch_dir());
            info_map_check_raw("q.vhdx");
        }
    }
    /* Sizes that end inside a block, and an empty image. */
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=8M q.vhdx "
           "1000001 && qemu-io -f vhdx -c 'write -P 0x33 975k 1k' q.vhdx", scratch_dir());
    info_map_check_raw("q.vhdx");
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx q.vhdx 1G", scratch_dir());
    info_map_check_raw("q.vhdx");
}
END_TEST

/* A logical sector size of 4096 (qemu-img 7.2 makes 512 only; it reads
 * 512 only): a small disk keeps the BAT's layout (no sector bitmap entry in
 * range either way). */
START_TEST(logical_sector_4096)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 20M "
           "&& qemu-io -f vhdx -c 'write -P 0x44 4k 1M' q.vhdx", scratch_dir());
    patched_copy(scratch("q.vhdx"), "l.vhdx", MD_LOGICAL, 4, 4096);
    /* qemu-img 7.2 refuses it (-ENOTSUP); vdisk reads what the 512-byte
     * image holds. */
    struct run *r = run("cd '%s' && qemu-img info l.vhdx", scratch_dir());
    ck_assert_int_ne(r->status, 0);
    RUN_OK("cd '%s' && rm -f q.raw v.raw && qemu-img convert -O raw q.vhdx q.raw && "
           "'%s' convert -O raw l.vhdx v.raw && cmp q.raw v.raw", scratch_dir(), vdisk_bin());
    r = run("cd '%s' && '%s' info --output=json l.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_msg(strstr(r->out, "\"cluster-size\": 1048576"), "%s", r->out);
    vdisk_dev *d;
    ck_assert_int_eq(open_ro(&d, scratch("l.vhdx")), 0);
    ck_assert_uint_eq(vdisk_get_block_size(d), 4096);
    vdisk_close(d);
}
END_TEST

START_TEST(convert_out)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 50M "
           "&& qemu-io -f vhdx -c 'write -P 0x5a 100k 3000k' -c 'write -P 0 10M 1M' "
           "-c 'write -P 9 49M 1M' q.vhdx", scratch_dir());
    RUN_OK("cd '%s' && rm -f v.qcow2 && '%s' convert -O qcow2 q.vhdx v.qcow2 && "
           "qemu-img compare -f vhdx -F qcow2 q.vhdx v.qcow2", scratch_dir(), vdisk_bin());
    /* The zeroes written as data are left out, as qemu-img convert leaves
     * them out: no data in 10M..11M. */
    struct run *r = run("cd '%s' && qemu-img map --output=json v.qcow2", scratch_dir());
    ck_assert_msg(strstr(r->out, "\"start\": 3211264, \"length\": 48168960, \"depth\": 0, "
                                 "\"present\": false, \"zero\": true"), "%s", r->out);
}
END_TEST

/* A repair open (repair=on, as check -r opens) replays a log and leaves
 * the device read-only; a read-only open takes no writes. */
START_TEST(read_only)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx q.vhdx 10M", scratch_dir());
    struct run *r = run("cd '%s' && '%s' io -r -c 'write 0 4k' q.vhdx", scratch_dir(),
                        vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    vdisk_dev *d;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "off"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "repair", "on"), 0);
    ck_assert_int_eq(vdisk_open(&d, scratch("q.vhdx"), o), 0);
    vdisk_options_free(o);
    ck_assert_int_eq(vdisk_is_read_only(d), 1);
    vdisk_close(d);
}
END_TEST

/* ---- Writes -------------------------------------------------------------- */

/* FILE's contents as qemu-img and vdisk read them, both equal to MODEL. */
static void both_read(const char *file, const char *model)
{
    RUN_OK("cd '%s' && rm -f wq.raw wv.raw && qemu-img check -q %s && "
           "qemu-img convert -O raw %s wq.raw && '%s' convert -f vhdx -O raw %s wv.raw && "
           "cmp wq.raw %s && cmp wv.raw %s", scratch_dir(), file, file, vdisk_bin(), file, model,
           model);
}

/* The same writes into a raw model and, by vdisk io, into the image. */
static const char *const vdisk_writes =
    "-c 'write -P 0xc1 32k 64k' -c 'write -P 0xc2 1020k 8k' -c 'write -P 0xc3 3M 2M' "
    "-c 'write -z 3200k 4k' -c 'write -P 0xc4 47M 1M' -c 'write -P 0xc5 20M 512' "
    "-c 'write -P 0xc6 25M 8k' -c 'discard 26M 1M' -c flush -c 'write -P 0xc7 49M 1M' -c flush";

/* qemu-io writes one pattern into a qemu-made image, vdisk another over
 * and beside it: qemu-img check is clean and both read the model; then
 * qemu-io writes again into the image vdisk wrote. */
static void qemu_then_vdisk(const char *opts)
{
    RUN_OK("cd '%s' && rm -f w.vhdx m.raw && qemu-img create -q -f vhdx -o %s w.vhdx 50M && "
           "qemu-io -f vhdx -c 'write -P 0xa1 0 2M' -c 'write -P 0xa2 30M 100k' w.vhdx && "
           "qemu-img create -q -f raw m.raw 50M && qemu-io -f raw -c 'write -P 0xa1 0 2M' "
           "-c 'write -P 0xa2 30M 100k' m.raw", scratch_dir(), opts);
    RUN_OK("cd '%s' && '%s' io %s w.vhdx && qemu-io -f raw %s m.raw", scratch_dir(),
           vdisk_bin(), vdisk_writes, vdisk_writes);
    both_read("w.vhdx", "m.raw");
    RUN_OK("cd '%s' && qemu-io -f vhdx -c 'write -P 0xd1 40M 1M' -c 'write -P 0xd2 100k 4k' "
           "w.vhdx && qemu-io -f raw -c 'write -P 0xd1 40M 1M' -c 'write -P 0xd2 100k 4k' m.raw",
           scratch_dir());
    both_read("w.vhdx", "m.raw");
}

START_TEST(write_dynamic)
{
    qemu_then_vdisk("block_size=1M");
    qemu_then_vdisk("block_size=32M,block_state_zero=off");
    qemu_then_vdisk("block_size=8M,log_size=2M");
}
END_TEST

START_TEST(write_fixed)
{
    qemu_then_vdisk("subformat=fixed,block_size=1M,block_state_zero=off");
    qemu_then_vdisk("subformat=fixed,block_size=32M");
}
END_TEST

/* A qemu-made image with 4096-byte logical sectors (patched, as in
 * logical_sector_4096) written by vdisk and read back. */
START_TEST(write_logical_4096)
{
    RUN_OK("cd '%s' && rm -f w.vhdx m.raw && qemu-img create -q -f vhdx -o block_size=1M "
           "w.vhdx 50M && qemu-img create -q -f raw m.raw 50M", scratch_dir());
    size_t n;
    uint8_t *img = read_file(scratch("w.vhdx"), &n);
    le32_store(img + MD_LOGICAL, 4096);
    write_file(scratch("w.vhdx"), img, n);
    free(img);
    RUN_OK("cd '%s' && '%s' io %s w.vhdx && qemu-io -f raw %s m.raw", scratch_dir(),
           vdisk_bin(), vdisk_writes, vdisk_writes);
    /* (qemu-img 7.2 opens no such image.) */
    RUN_OK("cd '%s' && rm -f wv.raw && '%s' check -q w.vhdx && "
           "'%s' convert -f vhdx -O raw w.vhdx wv.raw && cmp wv.raw m.raw", scratch_dir(),
           vdisk_bin(), vdisk_bin());
}
END_TEST

/* A copy taken while vdisk has the image open (its log open, 200 entries
 * that wrapped around a 1 MiB log) is replayed by qemu-img check -r all
 * and by vdisk check -r all: clean after, every write there. */
START_TEST(open_log_replayed)
{
    RUN_OK("cd '%s' && rm -f w.vhdx && '%s' create -q -f vhdx -o block_size=1M w.vhdx 300M",
           scratch_dir(), vdisk_bin());
    vdisk_dev *d;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "off"), 0);
    ck_assert_int_eq(vdisk_open(&d, scratch("w.vhdx"), o), 0);
    vdisk_options_free(o);
    uint8_t buf[4096];
    for (unsigned i = 0; i < 200; i++) {
        memset(buf, (int)(i % 250 + 1), sizeof buf);
        ck_assert_int_eq(vdisk_pwrite(d, buf, sizeof buf, (uint64_t)i * MIB + 8192), 0);
    }
    ck_assert_int_eq(vdisk_flush(d), 0);
    size_t n;
    uint8_t *img = read_file(scratch("w.vhdx"), &n);
    vdisk_close(d);
    write_file(scratch("wq.vhdx"), img, n);
    write_file(scratch("wv.vhdx"), img, n);
    free(img);
    /* Read-only, both refuse it as it is. */
    struct run *r = run("cd '%s' && qemu-img info wq.vhdx", scratch_dir());
    ck_assert_int_ne(r->status, 0);
    RUN_OK("cd '%s' && qemu-img check -q -r all wq.vhdx && qemu-img check -q wq.vhdx && "
           "'%s' check -q -r all wv.vhdx && qemu-img check -q wv.vhdx && "
           "qemu-img compare -q w.vhdx wq.vhdx && qemu-img compare -q w.vhdx wv.vhdx",
           scratch_dir(), vdisk_bin());
}
END_TEST

/* vdisk create: qemu-img's Formatting line and layout; qemu-img check
 * clean, info alike, the images vdisk makes written by qemu-io. */
START_TEST(create)
{
    static const struct {
        const char *opts, *line;
    } cases[] = {
        {"", "size=104857600 log_size=1048576 block_size=0"},
        {"-o subformat=fixed", "size=104857600 log_size=1048576 block_size=0 subformat=fixed"},
        {"-o block_size=1M,log_size=2M,block_state_zero=off",
         "size=104857600 log_size=2097152 block_size=1048576 block_state_zero=off"},
        {"-o subformat=fixed,block_size=32M,block_state_zero=off",
         "size=104857600 log_size=1048576 block_size=33554432 subformat=fixed "
         "block_state_zero=off"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run *r = run("cd '%s' && rm -f v.vhdx q.vhdx && '%s' create -f vhdx %s v.vhdx "
                            "100M", scratch_dir(), vdisk_bin(), cases[i].opts);
        ck_assert_int_eq(r->status, 0);
        char want[512];
        snprintf(want, sizeof want, "Formatting 'v.vhdx', fmt=vhdx %s\n", cases[i].line);
        ck_assert_str_eq(r->out, want);
        r = run("cd '%s' && qemu-img create -f vhdx %s q.vhdx 100M", scratch_dir(),
                cases[i].opts);
        snprintf(want, sizeof want, "Formatting 'q.vhdx', fmt=vhdx %s\n", cases[i].line);
        ck_assert_str_eq(r->out, want);
        /* The same layout: info (but the file names) and map alike, the
         * files the same length. */
        RUN_OK("cd '%s' && qemu-img check v.vhdx && "
               "qemu-img info v.vhdx | sed 1d > vi && qemu-img info q.vhdx | sed 1d > qi && "
               "cmp vi qi && test $(stat -c %%s v.vhdx) = $(stat -c %%s q.vhdx)", scratch_dir());
        RUN_OK("cd '%s' && rm -f m.raw && qemu-img create -q -f raw m.raw 100M && "
               "qemu-io -f vhdx -c 'write -P 0x71 1M 3M' -c 'write -P 0x72 99M 1M' v.vhdx && "
               "qemu-io -f raw -c 'write -P 0x71 1M 3M' -c 'write -P 0x72 99M 1M' m.raw",
               scratch_dir());
        both_read("v.vhdx", "m.raw");
    }
    /* qemu-img's refusals. */
    struct run *r = run("cd '%s' && '%s' create -q -f vhdx -o log_size=0 v.vhdx 1M",
                        scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "Log size must be a multiple of 1 MB"), "%s", r->err);
    r = run("cd '%s' && '%s' create -q -f vhdx -o block_size=3M v.vhdx 1M", scratch_dir(),
            vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "Block size must be a power of two"), "%s", r->err);
}
END_TEST

/* convert -O vhdx from raw and qcow2 images with holes and zeroes. */
START_TEST(convert_in)
{
    RUN_OK("cd '%s' && rm -f h.qcow2 h.raw && qemu-img create -q -f qcow2 h.qcow2 50M && "
           "qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 17M 100k' "
           "-c 'write -z 30M 2M' -c 'write -P 3 49M 1M' h.qcow2 && "
           "qemu-img convert -O raw h.qcow2 h.raw", scratch_dir());
    static const char *const opts[] = {"block_size=1M", "block_size=32M",
                                       "subformat=fixed,block_state_zero=off",
                                       "block_state_zero=off"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        RUN_OK("cd '%s' && rm -f c1.vhdx c2.vhdx && "
               "'%s' convert -f qcow2 -O vhdx -o %s h.qcow2 c1.vhdx && "
               "'%s' convert -f raw -O vhdx -o %s h.raw c2.vhdx && "
               "qemu-img check -q c1.vhdx && qemu-img check -q c2.vhdx && "
               "qemu-img compare -q -f qcow2 -F vhdx h.qcow2 c1.vhdx && "
               "qemu-img compare -q -f raw -F vhdx h.raw c2.vhdx", scratch_dir(), vdisk_bin(),
               opts[i], vdisk_bin(), opts[i]);
        /* libvhdi, a reader independent of QEMU, reads them alike. */
        libyal_reads("vhdi", scratch("c1.vhdx"), scratch("h.raw"), opts[i]);
    }
    /* Holes stay holes: with 1 MiB blocks, 4 blocks of data. */
    RUN_OK("cd '%s' && rm -f c1.vhdx && '%s' convert -q -f qcow2 -O vhdx -o "
           "block_size=1M,block_state_zero=off h.qcow2 c1.vhdx && "
           "test $(stat -c %%s c1.vhdx) -le $((13 * 1048576))", scratch_dir(), vdisk_bin());
}
END_TEST

/* ---- The log ------------------------------------------------------------- */

static void header_sum(uint8_t *img, uint32_t at)
{
    le32_store(img + at + 4, vhdx_crc32c(img + at, 4096, 4));
}

/*
 * A copy of q.vhdx as NAME with one log entry (sequence 5) at the start of
 * its log: a data sector of 0x77 over the first 4 KiB of block 0, a zero
 * range over the next 8 KiB, and a BAT update that makes block 2 (a zero
 * block) a copy of block 0's host block; the current header names the log.
 */
static void make_dirty(const char *name)
{
    size_t n;
    uint8_t *img = read_file(scratch("q.vhdx"), &n);
    uint64_t blk0 = le64_load(img + BAT) & ~(uint64_t)0xfffff;
    ck_assert_uint_ge(blk0, 4 * MIB);
    uint8_t guid[16];
    for (int i = 0; i < 16; i++)
        guid[i] = (uint8_t)(0xa0 + i);
    uint32_t cur = le64_load(img + H2 + 8) > le64_load(img + H1 + 8) ? H2 : H1;
    uint64_t log = le64_load(img + cur + 72);
    uint8_t *e = img + log;
    memset(e, 0, 4 * 4096);
    /* 3 descriptors: one descriptor sector, two data sectors. */
    memcpy(e, "loge", 4);
    le32_store(e + 8, 3 * 4096);
    le32_store(e + 12, 0);
    le64_store(e + 16, 5);
    le32_store(e + 24, 3);
    memcpy(e + 32, guid, 16);
    le64_store(e + 48, n);
    le64_store(e + 56, n);
    uint8_t sector[4096], bat[4096];
    memset(sector, 0x77, sizeof sector);
    memcpy(bat, img + BAT, 4096);
    le64_store(bat + 16, blk0 | 6);
    uint8_t *d = e + 64;
    const uint8_t *secs[2] = {sector, bat};
    uint64_t offs[2] = {blk0, BAT};
    for (int k = 0; k < 2; k++, d += 32) {
        memcpy(d, "desc", 4);
        memcpy(d + 4, secs[k] + 4092, 4);
        memcpy(d + 8, secs[k], 8);
        le64_store(d + 16, offs[k]);
        le64_store(d + 24, 5);
        uint8_t *ds = e + 4096 * (1 + k);
        memcpy(ds, "data", 4);
        le32_store(ds + 4, 0);
        memcpy(ds + 8, secs[k] + 8, 4084);
        le32_store(ds + 4092, 5);
    }
    memcpy(d, "zero", 4);
    le64_store(d + 8, 8192);
    le64_store(d + 16, blk0 + 4096);
    le64_store(d + 24, 5);
    le32_store(e + 4, vhdx_crc32c(e, 3 * 4096, 4));
    memcpy(img + cur + 48, guid, 16);
    header_sum(img, cur);
    write_file(scratch(name), img, n);
    free(img);
}

START_TEST(log_replay)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 10M "
           "&& qemu-io -f vhdx -c 'write -P 0x11 0 1M' -c 'write -P 0x22 4M 1M' q.vhdx",
           scratch_dir());
    make_dirty("d.vhdx");
    /* Read-only: refused, in qemu-img's words. */
    struct run *r = run("cd '%s' && qemu-img info d.vhdx", scratch_dir());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "VHDX image file 'd.vhdx' opened read-only, but contains a "
                                 "log that needs to be replayed"), "%s", r->err);
    r = run("cd '%s' && '%s' info d.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: VHDX image file 'd.vhdx' opened read-only, but "
                             "contains a log that needs to be replayed (to replay the log, run: "
                             "vdisk check -r all 'd.vhdx')\n");
    /* check -r all replays it: the same report, the same disk. */
    RUN_OK("cd '%s' && cp d.vhdx q-dirty.vhdx && cp d.vhdx v-dirty.vhdx", scratch_dir());
    struct run *q = run("cd '%s' && qemu-img check -r all q-dirty.vhdx", scratch_dir());
    char *qout = strdup(q->out);
    int qst = q->status;
    r = run("cd '%s' && '%s' check -r all v-dirty.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_str_eq(r->out, qout);
    ck_assert_int_eq(r->status, qst);
    free(qout);
    RUN_OK("cd '%s' && qemu-img convert -O raw q-dirty.vhdx q.raw && "
           "qemu-img convert -O raw v-dirty.vhdx v.raw && cmp q.raw v.raw", scratch_dir());
    size_t n;
    uint8_t *raw = read_file(scratch("v.raw"), &n);
    ck_assert_uint_eq(n, 10 * MIB);
    ck_assert_uint_eq(raw[0], 0x77);
    ck_assert_uint_eq(raw[4096], 0);
    ck_assert_uint_eq(raw[12288], 0x11);
    ck_assert_uint_eq(raw[2 * MIB], 0x77); /* block 2 now maps block 0's host block */
    free(raw);
    /* The replayed image opens read-only, for vdisk and qemu-img. */
    info_map_check_raw("v-dirty.vhdx");
    /* Its headers: LogGuid zero in the current one. */
    uint8_t *h1 = read_file_at(scratch("v-dirty.vhdx"), H1, 4096);
    uint8_t *h2 = read_file_at(scratch("v-dirty.vhdx"), H2, 4096);
    uint8_t *cur = le64_load(h2 + 8) > le64_load(h1 + 8) ? h2 : h1;
    static const uint8_t zero[16];
    ck_assert(memcmp(cur + 48, zero, 16) == 0);
    free(h1);
    free(h2);
}
END_TEST

/* A log entry at log offset AT of IMG (log at MIB): sequence SEQ, tail
 * TAIL, one data sector of byte V at file offset OFF; returns its length. */
static uint32_t put_entry(uint8_t *img, size_t n, uint32_t at, uint64_t seq, uint32_t tail,
                          uint8_t v, uint64_t off)
{
    uint8_t *e = img + MIB + at;
    memset(e, 0, 2 * 4096);
    memcpy(e, "loge", 4);
    le32_store(e + 8, 2 * 4096);
    le32_store(e + 12, tail);
    le64_store(e + 16, seq);
    le32_store(e + 24, 1);
    for (int i = 0; i < 16; i++)
        e[32 + i] = (uint8_t)(0xa0 + i);
    le64_store(e + 48, n);
    le64_store(e + 56, n);
    uint8_t *d = e + 64;
    memcpy(d, "desc", 4);
    memset(d + 4, v, 4);
    memset(d + 8, v, 8);
    le64_store(d + 16, off);
    le64_store(d + 24, seq);
    uint8_t *ds = e + 4096;
    memcpy(ds, "data", 4);
    le32_store(ds + 4, (uint32_t)(seq >> 32));
    memset(ds + 8, v, 4084);
    le32_store(ds + 4092, (uint32_t)seq);
    le32_store(e + 4, vhdx_crc32c(e, 2 * 4096, 4));
    return 2 * 4096;
}

/*
 * Several entries, as the spec's search sees them: an old sequence (1, 2),
 * then a newer one (7, 8, 9) whose head's tail is its second entry, so that
 * 7 is not replayed (flushed already), 8 and 9 are; qemu-img check -r all
 * is the oracle.
 */
START_TEST(log_sequences)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 10M "
           "&& qemu-io -f vhdx -c 'write -P 0x11 0 2M' q.vhdx", scratch_dir());
    size_t n;
    uint8_t *img = read_file(scratch("q.vhdx"), &n);
    uint64_t blk0 = le64_load(img + BAT) & ~(uint64_t)0xfffff;
    uint32_t at = 0;
    at += put_entry(img, n, at, 1, 0, 0x01, blk0);
    at += put_entry(img, n, at, 2, 0, 0x02, blk0 + 4096);
    uint32_t seven = at;
    at += put_entry(img, n, at, 7, seven, 0x07, blk0 + 8192);
    uint32_t eight = at;
    at += put_entry(img, n, at, 8, seven, 0x08, blk0 + 12288);
    put_entry(img, n, at, 9, eight, 0x09, blk0 + 16384);
    uint32_t cur = le64_load(img + H2 + 8) > le64_load(img + H1 + 8) ? H2 : H1;
    for (int i = 0; i < 16; i++)
        img[cur + 48 + i] = (uint8_t)(0xa0 + i);
    header_sum(img, cur);
    write_file(scratch("q-dirty.vhdx"), img, n);
    write_file(scratch("v-dirty.vhdx"), img, n);
    free(img);
    struct run *q = run("cd '%s' && qemu-img check -r all q-dirty.vhdx", scratch_dir());
    char *qout = strdup(q->out);
    struct run *r = run("cd '%s' && '%s' check -r all v-dirty.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_str_eq(r->out, qout);
    free(qout);
    RUN_OK("cd '%s' && qemu-img convert -O raw q-dirty.vhdx q.raw && "
           "qemu-img convert -O raw v-dirty.vhdx v.raw && cmp q.raw v.raw", scratch_dir());
    uint8_t *raw = read_file(scratch("v.raw"), &n);
    ck_assert_uint_eq(raw[0], 0x11);
    ck_assert_uint_eq(raw[8192], 0x11);  /* 7: before the tail */
    ck_assert_uint_eq(raw[12288], 0x08);
    ck_assert_uint_eq(raw[16384], 0x09);
    free(raw);
}
END_TEST

/* Hostile logs: a descriptor over the headers, a head that says the file
 * was longer: refused, with the place, for a repair; read-only the image
 * is refused as one with a log to replay. */
START_TEST(log_hostile)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 10M",
           scratch_dir());
    size_t n;
    uint8_t *img = read_file(scratch("q.vhdx"), &n);
    uint32_t cur = le64_load(img + H2 + 8) > le64_load(img + H1 + 8) ? H2 : H1;
    for (int i = 0; i < 16; i++)
        img[cur + 48 + i] = (uint8_t)(0xa0 + i);
    header_sum(img, cur);
    put_entry(img, n, 0, 3, 0, 0x55, H1);
    write_file(scratch("h.vhdx"), img, n);
    struct run *r = run("cd '%s' && '%s' check -r all h.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: h.vhdx: a VHDX log descriptor writes 4096 "
                             "bytes at offset 65536: over the file identifier, the headers or "
                             "the log (at offset 1048576), or past 140737488355328 bytes\n");
    r = run("cd '%s' && '%s' info h.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_msg(strstr(r->err, "contains a log that needs to be replayed"), "%s", r->err);
    /* Into the log itself. */
    put_entry(img, n, 0, 3, 0, 0x55, MIB + 65536);
    write_file(scratch("h.vhdx"), img, n);
    r = run("cd '%s' && '%s' check -r all h.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_msg(strstr(r->err, "a VHDX log descriptor writes 4096 bytes at offset 1114112"),
                  "%s", r->err);
    /* Flushed up to more than the file holds. */
    put_entry(img, n, 0, 3, 0, 0x55, 4 * MIB);
    le64_store(img + MIB + 48, n + MIB);
    le32_store(img + MIB + 4, vhdx_crc32c(img + MIB, 2 * 4096, 4));
    write_file(scratch("h.vhdx"), img, n);
    r = run("cd '%s' && '%s' check -r all h.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_str_eq(r->err, fmt("vdisk: h.vhdx: the VHDX log's head entry (log "
                                 "offset 0) says the file was flushed up to %zu bytes; it has "
                                 "%zu: the image has been truncated\n", n + MIB, n));
    free(img);
}
END_TEST

/* A log whose entry is damaged (its CRC) holds no active sequence: the
 * image opens read-only as it is, as qemu-img opens it. */
START_TEST(log_damaged_entry_ignored)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 10M "
           "&& qemu-io -f vhdx -c 'write -P 0x11 0 1M' q.vhdx", scratch_dir());
    make_dirty("d.vhdx");
    size_t n;
    uint8_t *img = read_file(scratch("d.vhdx"), &n);
    img[MIB + 4096 + 100] ^= 1; /* inside the first data sector */
    write_file(scratch("d.vhdx"), img, n);
    free(img);
    info_map_check_raw("d.vhdx");
}
END_TEST

/* ---- Differencing images ------------------------------------------------- */


/* UTF-16LE of ASCII S at P; returns the bytes written. */
static unsigned put_utf16(uint8_t *p, const char *s)
{
    unsigned n = 0;
    for (; *s; s++, n += 2) {
        p[n] = (uint8_t)*s;
        p[n + 1] = 0;
    }
    return n;
}

/*
 * c.vhdx: a differencing image over base.vhdx (qemu-img 7.2 makes
 * neither, nor reads one), from a qemu-made dynamic image (made with
 * block_state_zero=off, so that untouched blocks are not present): block 0
 * fully present (0x11), block 2 partially present (0x22 where its sector
 * bitmap says, sectors 0-7 and 100-163 and the last), block 3 zero, the
 * rest the parent's.  LINKAGE: the parent's DataWriteGuid as text, or
 * NULL to take base.vhdx's.  PATH: the relative_path value.
 */
static void make_child(const char *linkage, const char *path)
{
    RUN_OK("cd '%s' && rm -f c0.vhdx && qemu-img create -q -f vhdx -o "
           "block_size=1M,block_state_zero=off c0.vhdx 8M && qemu-io -f vhdx -c "
           "'write -P 0x11 0 1M' -c 'write -P 0x22 2M 1M' -c 'write -P 0x33 3M 1M' c0.vhdx",
           scratch_dir());
    size_t n;
    uint8_t *img = read_file(scratch("c0.vhdx"), &n);
    ck_assert_uint_eq(n % MIB, 0);
    img = realloc(img, n + MIB);
    memset(img + n, 0, MIB);
    /* The BAT: block 2 partial, block 3 zero, the sector bitmap (chunk
     * ratio 4096: entry 4096) at the end of the file. */
    uint64_t b2 = le64_load(img + BAT + 16) & ~(uint64_t)0xfffff;
    le64_store(img + BAT + 16, b2 | 7);
    le64_store(img + BAT + 24, 2);
    le64_store(img + BAT + 4096 * 8, n | 6);
    uint8_t *sb = img + n;
    uint32_t first = 2 * MIB / 512; /* block 2's first sector */
    for (uint32_t sct = 0; sct < 2048; sct++) {
        bool on = sct < 8 || (sct >= 100 && sct < 164) || sct == 2047;
        if (on)
            sb[(first + sct) / 8] |= (uint8_t)(1u << ((first + sct) % 8));
    }
    /* File parameters: has a parent; a parent locator item. */
    le32_store(img + MD_PARAMS + 4, le32_load(img + MD_PARAMS + 4) | 2);
    uint8_t *t = img + MD;
    uint16_t cnt = le16_load(t + 10);
    uint8_t *e = t + 32 + 32 * cnt;
    static const uint8_t loc_guid[16] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                         0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};
    static const uint8_t vhdx_type[16] = {0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a,
                                          0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13};
    char link[39];
    if (!linkage) {
        uint8_t *h1 = read_file_at(scratch("base.vhdx"), H1, 4096);
        uint8_t *h2 = read_file_at(scratch("base.vhdx"), H2, 4096);
        uint8_t *g = (le64_load(h2 + 8) > le64_load(h1 + 8) ? h2 : h1) + 32;
        snprintf(link, sizeof link, "{%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
                 le32_load(g), le16_load(g + 4), le16_load(g + 6), g[8], g[9], g[10], g[11],
                 g[12], g[13], g[14], g[15]);
        free(h1);
        free(h2);
        linkage = link;
    }
    uint32_t loc_at = 65536 + 4096;
    uint8_t *l = t + loc_at;
    memcpy(l, vhdx_type, 16);
    le16_store(l + 18, 2);
    uint32_t at = 20 + 2 * 12;
    const char *kv[4] = {"parent_linkage", linkage, "relative_path", path};
    for (int i = 0; i < 2; i++) {
        uint8_t *ent = l + 20 + 12 * i;
        unsigned kl = put_utf16(l + at, kv[2 * i]);
        le32_store(ent, at);
        le16_store(ent + 8, (uint16_t)kl);
        at += kl;
        unsigned vl = put_utf16(l + at, kv[2 * i + 1]);
        le32_store(ent + 4, at);
        le16_store(ent + 10, (uint16_t)vl);
        at += vl;
    }
    memcpy(e, loc_guid, 16);
    le32_store(e + 16, loc_at);
    le32_store(e + 20, at);
    le32_store(e + 24, 6);
    le16_store(t + 10, (uint16_t)(cnt + 1));
    write_file(scratch("c.vhdx"), img, n + MIB);
    free(img);
}

/* base.vhdx (qemu-made) and its child c.vhdx (make_child); what the child
 * reads, in a new buffer of *N bytes. */
static uint8_t *child_model(size_t *n)
{
    RUN_OK("cd '%s' && rm -f base.vhdx && qemu-img create -q -f vhdx -o block_size=1M base.vhdx "
           "8M && qemu-io -f vhdx -c 'write -P 0xaa 0 8M' -c 'write -P 0xbb 5M 4k' base.vhdx && "
           "qemu-img convert -O raw base.vhdx base.raw", scratch_dir());
    make_child(NULL, "base.vhdx");
    uint8_t *model = read_file(scratch("base.raw"), n);
    ck_assert_uint_eq(*n, 8 * MIB);
    memset(model, 0x11, MIB);
    for (uint32_t sct = 0; sct < 2048; sct++)
        if (sct < 8 || (sct >= 100 && sct < 164) || sct == 2047)
            memset(model + 2 * MIB + 512 * sct, 0x22, 512);
    memset(model + 3 * MIB, 0, MIB);
    return model;
}

/* Writes to a differencing image: a block not present is copied from the
 * parent, a partially present one completed from it (no sector bitmap
 * changes), then both fully present; the parent is not written. */
START_TEST(write_differencing)
{
    size_t n;
    uint8_t *model = child_model(&n);
    RUN_OK("cd '%s' && cp base.vhdx base0.vhdx && '%s' io -c 'write -P 0xe1 1M 4k' "
           "-c 'write -P 0xe2 2M 512' -c 'write -P 0xe3 2100k 600k' -c 'write -z 5M 1k' "
           "-c 'write -P 0xe4 7M 1M' -c 'write -P 0xe5 3M 4k' -c flush c.vhdx && "
           "cmp base.vhdx base0.vhdx", scratch_dir(), vdisk_bin());
    memset(model + MIB, 0xe1, 4096);
    memset(model + 2 * MIB, 0xe2, 512);
    memset(model + 2100 * 1024, 0xe3, 600 * 1024);
    memset(model + 5 * MIB, 0, 1024);
    memset(model + 7 * MIB, 0xe4, MIB);
    memset(model + 3 * MIB, 0xe5, 4096);
    RUN_OK("cd '%s' && rm -f v.raw && '%s' check c.vhdx && '%s' convert -O raw c.vhdx v.raw",
           scratch_dir(), vdisk_bin(), vdisk_bin());
    size_t vn;
    uint8_t *v = read_file(scratch("v.raw"), &vn);
    ck_assert_uint_eq(vn, n);
    assert_same_bytes(v, model, n, 0, "c.vhdx");
    free(v);
    free(model);
    /* Blocks 1, 3, 5 and 7 new at the file's end in the order written,
     * block 2 (was partially present) where it was. */
    struct run *r = run("cd '%s' && '%s' map --output=json c.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out,
                     "[{ \"start\": 0, \"length\": 1048576, \"depth\": 0,"
                     " \"present\": true, \"zero\": false, \"data\": true, \"offset\": 8388608},\n"
                     "{ \"start\": 1048576, \"length\": 1048576, \"depth\": 0,"
                     " \"present\": true, \"zero\": false, \"data\": true, \"offset\": 12582912},\n"
                     "{ \"start\": 2097152, \"length\": 1048576, \"depth\": 0,"
                     " \"present\": true, \"zero\": false, \"data\": true, \"offset\": 9437184},\n"
                     "{ \"start\": 3145728, \"length\": 1048576, \"depth\": 0,"
                     " \"present\": true, \"zero\": false, \"data\": true, \"offset\": 15728640},\n"
                     "{ \"start\": 4194304, \"length\": 1048576, \"depth\": 1,"
                     " \"present\": true, \"zero\": false, \"data\": true},\n"
                     "{ \"start\": 5242880, \"length\": 1048576, \"depth\": 0,"
                     " \"present\": true, \"zero\": false, \"data\": true, \"offset\": 13631488},\n"
                     "{ \"start\": 6291456, \"length\": 1048576, \"depth\": 1,"
                     " \"present\": true, \"zero\": false, \"data\": true},\n"
                     "{ \"start\": 7340032, \"length\": 1048576, \"depth\": 0,"
                     " \"present\": true, \"zero\": false, \"data\": true, "
                     "\"offset\": 14680064}]\n");
}
END_TEST

START_TEST(differencing)
{
    size_t n;
    uint8_t *model = child_model(&n);
    RUN_OK("cd '%s' && rm -f v.raw && '%s' convert -O raw c.vhdx v.raw", scratch_dir(),
           vdisk_bin());
    size_t vn;
    uint8_t *v = read_file(scratch("v.raw"), &vn);
    ck_assert_uint_eq(vn, n);
    assert_same_bytes(v, model, n, 0, "c.vhdx");
    free(v);
    /* Unaligned reads across the bitmap's runs, through the library. */
    vdisk_dev *d;
    ck_assert_int_eq(open_ro(&d, scratch("c.vhdx")), 0);
    uint8_t buf[70000];
    static const uint64_t offs[] = {2 * MIB - 1000, 2 * MIB + 3000, 2 * MIB + 50000,
                                    3 * MIB - 20000, 5 * MIB - 10};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, offs[i]), 0);
        assert_same_bytes(buf, model + offs[i], sizeof buf, offs[i], "pread");
    }
    vdisk_close(d);
    free(model);
    struct run *r = run("cd '%s' && '%s' info c.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_msg(r->status == 0 && strstr(r->out, "backing file: base.vhdx\n") &&
                  strstr(r->out, "backing file format: vhdx\n"), "%s%s", r->out, r->err);
    /* map: block 0 here, block 2 by runs, block 3 zero, the rest below. */
    r = run("cd '%s' && '%s' map --output=json c.vhdx", scratch_dir(), vdisk_bin());
    ck_assert_msg(r->status == 0 && strstr(r->out, "{ \"start\": 1048576, \"length\": 1048576, "
                  "\"depth\": 1, \"present\": true, \"zero\": false, \"data\": true"), "%s%s",
                  r->out, r->err);
    ck_assert_msg(strstr(r->out, "{ \"start\": 3145728, \"length\": 1048576, \"depth\": 0, "
                  "\"present\": true, \"zero\": true, \"data\": false"), "%s", r->out);
    /* The parent changed: its DataWriteGuid is not the linkage. */
    make_child("{00000000-1111-2222-3333-444444444444}", "base.vhdx");
    ck_assert_int_eq(open_ro(&d, scratch("c.vhdx")), -EINVAL);
    ck_assert_msg(strstr(vdisk_get_error(), "the image's parent locator expects "
                                            "{00000000-1111-2222-3333-444444444444} (the "
                                            "parent changed since)"), "%s", vdisk_get_error());
    /* A Windows relative path; a missing parent. */
    make_child(NULL, ".\\base.vhdx");
    same_as_qemu_img("info --output=json", "base.vhdx");
    RUN_OK("cd '%s' && '%s' convert -O raw c.vhdx v.raw", scratch_dir(), vdisk_bin());
    make_child(NULL, "nothere.vhdx");
    ck_assert_int_ne(open_ro(&d, scratch("c.vhdx")), 0);
    ck_assert_msg(strstr(vdisk_get_error(), "nothere.vhdx"), "%s", vdisk_get_error());
    make_child(NULL, "C:\\VMs\\base.vhdx");
    ck_assert_int_eq(open_ro(&d, scratch("c.vhdx")), -ENOTSUP);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_open: %s: the VHDX parent locator names the parent "
                         "'C:\\VMs\\base.vhdx' only by a Windows volume or drive path, which "
                         "vdisk cannot open", scratch("c.vhdx")));
}
END_TEST

/* ---- Damaged images ------------------------------------------------------ */

static void refused(const char *file, int err, const char *msg)
{
    vdisk_dev *d = NULL;
    int r = open_ro(&d, file);
    ck_assert_msg(r == err, "%s: vdisk_open returned %d, expected %d (%s)", file, r, err,
                  vdisk_get_error());
    if (msg)
        ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", file, msg));
}

/* A copy of q.vhdx with LEN bytes at OFF set to V in both headers (OFF
 * relative to a header) or both region tables, their CRCs summed again. */
static const char *patched_twice(const char *src, const char *name, uint32_t a, uint32_t b, uint32_t size,
                                 uint32_t off, unsigned len, uint64_t v)
{
    size_t n;
    uint8_t *img = read_file(scratch(src), &n);
    uint32_t at[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        for (unsigned i = 0; i < len; i++)
            img[at[k] + off + i] = (uint8_t)(v >> (8 * i));
        le32_store(img + at[k] + 4, vhdx_crc32c(img + at[k], size, 4));
    }
    const char *out = scratch(name);
    write_file(out, img, n);
    free(img);
    return out;
}

START_TEST(hostile_headers_messages)
{
    RUN_OK("cd '%s' && rm -f q.vhdx && qemu-img create -q -f vhdx -o block_size=1M q.vhdx 10M "
           "&& qemu-io -f vhdx -c 'write -P 0x11 0 1M' q.vhdx", scratch_dir());
    size_t n;
    uint8_t *img = read_file(scratch("q.vhdx"), &n);
    free(img);
    /* Headers. */
    refused(patched_twice("q.vhdx", "h.vhdx", H1, H2, 4096, 0, 4, 0x64786568), -EINVAL,
            "no valid VHDX header: header 1 (offset 65536): signature \"hexd\", expected "
            "\"head\"; header 2 (offset 131072): signature \"hexd\", expected \"head\"");
    refused(patched_twice("q.vhdx", "h.vhdx", H1, H2, 4096, 66, 2, 2), -EINVAL,
            "no valid VHDX header: header 1 (offset 65536): version 2, expected 1; header 2 "
            "(offset 131072): version 2, expected 1");
    const char *f = patched_copy(scratch("q.vhdx"), "h.vhdx", H1 + 200, 1, 1);
    f = patched_copy(f, "h.vhdx", H2 + 200, 1, 1);
    refused(f, -EINVAL, NULL);
    ck_assert_msg(strstr(vdisk_get_error(), "no valid VHDX header: header 1 (offset 65536): "
                                            "CRC-32C 0x"), "%s", vdisk_get_error());
    /* One header damaged: the other one serves. */
    patched_copy(scratch("q.vhdx"), "h.vhdx", H2 + 200, 1, 1);
    same_raw_as_qemu_img("h.vhdx");
    refused(patched_twice("q.vhdx", "h.vhdx", H1, H2, 4096, 72, 8, 1ull << 40), -EINVAL,
            fmt("the VHDX header at offset 131072 places the log at offset 1099511627776 with "
                "length 1048576: expected multiples of 1 MiB past the header section (1048576 "
                "bytes) inside the file (%zu bytes)", n));
    refused(patched_twice("q.vhdx", "h.vhdx", H1, H2, 4096, 68, 4, 4096), -EINVAL,
            fmt("the VHDX header at offset 131072 places the log at offset 1048576 with "
                "length 4096: expected multiples of 1 MiB past the header section (1048576 "
                "bytes) inside the file (%zu bytes)", n));
    /* Region tables. */
    refused(patched_twice("q.vhdx", "h.vhdx", RT1, RT2, 65536, 16 + 16, 8, 1ull << 40), -EINVAL,
            fmt("VHDX region table entry 0 (offset 196624) places a region at offset "
                "1099511627776 with length 1048576: expected multiples of 1 MiB past the "
                "header section inside the file (%zu bytes)", n));
    refused(patched_twice("q.vhdx", "h.vhdx", RT1, RT2, 65536, 16 + 32 + 16, 8, BAT), -EINVAL,
            "VHDX region table entry 1 (offset 196656): the region at offset 2097152 (1048576 "
            "bytes) overlaps that of entry 0 at offset 2097152 (1048576 bytes)");
    refused(patched_twice("q.vhdx", "h.vhdx", RT1, RT2, 65536, 16 + 16, 8, MIB), -EINVAL,
            "VHDX region table entry 0 (offset 196624): the region at offset 1048576 (1048576 "
            "bytes) overlaps the log at offset 1048576 (1048576 bytes)");
    patched_twice("q.vhdx", "h.vhdx", RT1, RT2, 65536, 16, 4, 0x12345678);
    refused(patched_twice("h.vhdx", "h.vhdx", RT1, RT2, 65536, 16 + 28, 4, 1), -ENOTSUP,
            "VHDX region table entry 0 (offset 196624) names a required region vdisk does "
            "not know (GUID 12345678-f623-4200-...); the image cannot be read");
    refused(patched_twice("q.vhdx", "h.vhdx", RT1, RT2, 65536, 8, 4, 5000), -EINVAL,
            "no valid VHDX region table: table 1 (offset 196608): 5000 entries, at most 2047 "
            "allowed; table 2 (offset 262144): 5000 entries, at most 2047 allowed");
    /* Metadata (no CRC). */
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_PARAMS, 4, 3 * MIB), -EINVAL,
            "the VHDX file parameters (offset 3211264) give block size 3145728; expected a "
            "power of two from 1 MiB to 256 MiB");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_PARAMS, 4, 512u * MIB), -EINVAL,
            "the VHDX file parameters (offset 3211264) give block size 536870912; expected a "
            "power of two from 1 MiB to 256 MiB");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_LOGICAL, 4, 1000), -EINVAL,
            "the VHDX logical sector size (offset 3211296) is 1000; expected 512 or 4096");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_SIZE, 8, 1000001), -EINVAL,
            "the VHDX virtual disk size (offset 3211272) is 1000001; expected a multiple of "
            "the logical sector size (512) up to 64 TiB");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_SIZE, 8, 1ull << 50), -EINVAL,
            "the VHDX virtual disk size (offset 3211272) is 1125899906842624; expected a "
            "multiple of the logical sector size (512) up to 64 TiB");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_SIZE, 8, 1ull << 40), -EINVAL,
            "the VHDX BAT region at offset 2097152 has 1048576 bytes; the disk's "
            "1099511627776 bytes in blocks of 1048576 need 8390648");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD_PARAMS + 4, 4, 2), -EINVAL,
            "the VHDX file parameters (offset 3211264) say the image has a parent, but the "
            "metadata has no parent locator");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD, 1, 'M'), -EINVAL,
            "the VHDX metadata table at offset 3145728 has signature \"Metadata\", expected "
            "\"metadata\"");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD + 32 + 16, 4, 100), -EINVAL,
            "VHDX metadata entry 0 (offset 3145760): the file parameters item is at offset "
            "100 with length 8; expected 8 bytes past the table (65536 bytes) inside the "
            "metadata region (1048576 bytes)");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", MD + 32 + 16, 4, 0xfffffff0u), -EINVAL,
            NULL);
    /* The BAT. */
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", BAT, 8, (1ull << 40) | 6), -EINVAL,
            fmt("VHDX BAT entry 0 (offset 2097152) places block 0 (1048576 bytes) at offset "
                "1099511627776, not inside the file (%zu bytes) past the header section: the "
                "image has probably been truncated", n));
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", BAT, 8, MD | 6), -EINVAL,
            "VHDX BAT entry 0 (offset 2097152) places block 0 (1048576 bytes) at offset "
            "3145728, over the metadata region");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", BAT, 8, 0x100007), -EINVAL,
            "VHDX BAT entry 0 (offset 2097152) says block 0 is partially present, which only "
            "a differencing image may say");
    refused(patched_copy(scratch("q.vhdx"), "h.vhdx", BAT, 8, 4), -EINVAL,
            "VHDX BAT entry 0 (offset 2097152) has state 4, which no payload block has");
    /* Too short, and not one. */
    RUN_OK("cd '%s' && head -c 100000 q.vhdx > h.vhdx", scratch_dir());
    refused(scratch("h.vhdx"), -EINVAL,
            "the file (100000 bytes) is too short for a VHDX header section (1048576 bytes)");
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create("interop-vhdx");
    TCase *tc = tcase_create("vhdx");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, qemu_images_read_identically);
    tcase_add_test(tc, logical_sector_4096);
    tcase_add_test(tc, convert_out);
    tcase_add_test(tc, read_only);
    tcase_add_test(tc, write_dynamic);
    tcase_add_test(tc, write_fixed);
    tcase_add_test(tc, write_logical_4096);
    tcase_add_test(tc, create);
    tcase_add_test(tc, open_log_replayed);
    tcase_add_test(tc, convert_in);
    tcase_add_test(tc, log_replay);
    tcase_add_test(tc, log_sequences);
    tcase_add_test(tc, log_hostile);
    tcase_add_test(tc, log_damaged_entry_ignored);
    tcase_add_test(tc, differencing);
    tcase_add_test(tc, write_differencing);
    tcase_add_test(tc, hostile_headers_messages);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    return run_suite(make_suite());
}
