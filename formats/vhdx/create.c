/* SPDX-License-Identifier: MIT */
/*
 * formats/vhdx/create.c: new VHDX images, laid out as qemu-img 7.2 lays
 * them out.
 *
 *   0        file identifier, creator "vdisk"
 *   64 KiB   header 1 (a random sequence number), 128 KiB header 2 (one
 *            more: current); LogGuid zero, the log at 1 MiB
 *   192 KiB  region table 1, 256 KiB region table 2: the BAT right after
 *            the log, the metadata region (1 MiB) right after the BAT
 *            (its length rounded up to 1 MiB)
 *   the metadata: its table, then at 64 KiB the five items (file
 *            parameters, disk size, page 83 data, logical and physical
 *            sector size of 512)
 *   the data  from the BAT's end + 5 MiB: a dynamic image ends there; a
 *            fixed one is that long plus the disk (a sparse file)
 *
 * Options (qemu-img's): size (rounded up to 512), log_size (at least
 * 1 MiB, rounded up to 1 MiB), block_size (0: by the disk size, 8 MiB up
 * to 1 GiB, 16 MiB up to 100 GiB, 32 MiB up to 32 TiB, 64 MiB above;
 * otherwise rounded up to 1 MiB, at most 256 MiB, a power of two),
 * subformat=dynamic|fixed, block_state_zero (on by default: every BAT
 * entry is "zero", with no file offset, in a fixed image too, as QEMU
 * writes it; off: "not present" in a dynamic image, "fully present" with
 * the block's offset in a fixed one).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "driver.h"
#include "vhdx.h"

#define VHDX_DEFAULT_LOG   VHDX_MIB
#define VHDX_MAX_LOG       (UINT64_C(4) << 30)   /* QEMU: below 4 GB */
#define VHDX_CREATE_SECTOR 512u

/* The item GUIDs, as stored (Data1..3 little-endian). */
static const uint8_t guid_bat[16] = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                     0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
static const uint8_t guid_metadata[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                          0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
static const uint8_t guid_items[5][16] = {
    /* file parameters */
    {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7,
     0x6b},
    /* virtual disk size */
    {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4,
     0xb8},
    /* page 83 data */
    {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7,
     0x46},
    /* logical sector size */
    {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab,
     0x5f},
    /* physical sector size */
    {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5,
     0x56},
};

struct create_opts {
    uint64_t log_size, block_size;
    bool fixed, zero_blocks;
};

static int take_opts(const char *fn, uint64_t size, struct opt_set *os, struct create_opts *o)
{
    o->log_size = VHDX_DEFAULT_LOG;
    o->block_size = 0;
    o->fixed = false;
    o->zero_blocks = true;
    const char *v = opt_take(os, "log_size");
    if (v && opt_size("log_size", v, 0, UINT64_MAX, &o->log_size) < 0)
        return -EINVAL;
    v = opt_take(os, "block_size");
    if (v && opt_size("block_size", v, 0, UINT64_MAX, &o->block_size) < 0)
        return -EINVAL;
    v = opt_take(os, "subformat");
    if (v && !strcmp(v, "fixed"))
        o->fixed = true;
    else if (v && strcmp(v, "dynamic"))
        return err_set(-EINVAL, "%s: Parameter 'subformat' does not accept value '%s'", fn, v);
    v = opt_take(os, "block_state_zero");
    if (v && opt_bool("block_state_zero", v, &o->zero_blocks) < 0)
        return -EINVAL;
    int r = opt_check_all_taken(os, "vhdx");
    if (r < 0)
        return r;
    if (size > VHDX_MAX_SIZE)
        return err_set(-EINVAL, "%s: Image size too large; max of 64TB", fn);
    if (o->log_size > UINT64_MAX - VHDX_MIB)
        return err_set(-EINVAL, "%s: Log size must be smaller than 4 GB", fn);
    o->log_size = align_up(o->log_size, VHDX_MIB);
    if (o->log_size >= VHDX_MAX_LOG)
        return err_set(-EINVAL, "%s: Log size must be smaller than 4 GB", fn);
    if (o->log_size < VHDX_MIB)
        return err_set(-EINVAL, "%s: Log size must be a multiple of 1 MB", fn);
    if (o->block_size > VHDX_MAX_BLOCK)
        o->block_size = VHDX_MAX_BLOCK;
    o->block_size = align_up(o->block_size, VHDX_MIB);
    if (o->block_size == 0)
        o->block_size = size > (UINT64_C(32) << 40)    ? 64 * VHDX_MIB
                        : size > (UINT64_C(100) << 30) ? 32 * VHDX_MIB
                        : size > (UINT64_C(1) << 30)   ? 16 * VHDX_MIB
                                                       : 8 * VHDX_MIB;
    if (o->block_size & (o->block_size - 1))
        return err_set(-EINVAL, "%s: Block size must be a power of two", fn);
    return 0;
}

static int write_headers(int fd, const char *fn, uint64_t log_size)
{
    uint8_t h[VHDX_HEADER_SIZE] = {0};
    uint32_t seq;
    int r = vhdx_guid_new(h + VHDX_H_FILE_WRITE);
    if (r == 0)
        r = vhdx_guid_new(h + VHDX_H_DATA_WRITE);
    if (r == 0 && getrandom(&seq, sizeof seq, 0) != (ssize_t)sizeof seq)
        r = err_set(-EIO, "%s: no random bytes for the VHDX header", fn);
    if (r < 0)
        return r;
    memcpy(h + VHDX_H_SIGNATURE, "head", 4);
    le16_store(h + VHDX_H_LOG_VERSION, 0);
    le16_store(h + VHDX_H_VERSION, 1);
    le32_store(h + VHDX_H_LOG_LENGTH, (uint32_t)log_size);
    le64_store(h + VHDX_H_LOG_OFFSET, VHDX_HEADER_SECTION);
    for (int k = 0; k < 2 && r == 0; k++) {
        le64_store(h + VHDX_H_SEQUENCE, (uint64_t)seq + (uint64_t)k);
        le32_store(h + VHDX_H_CHECKSUM, vhdx_crc32c(h, sizeof h, VHDX_H_CHECKSUM));
        r = file_write_all(fd, h, sizeof h, k ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET, fn);
    }
    return r;
}

int vhdx_create(const char *filename, uint64_t size, struct opt_set *os)
{
    const char *fn = filename;
    struct create_opts o;
    size = align_up(size, VHDX_CREATE_SECTOR);
    int r = take_opts(fn, size, os, &o);
    if (r < 0)
        return r;
    if (dev_is_network_name(filename))
        return err_set(-ENOTSUP, "%s: vdisk creates VHDX images in local files only", fn);
    uint64_t chunk_ratio = (UINT64_C(1) << 23) * VHDX_CREATE_SECTOR / o.block_size;
    uint64_t blocks = (size + o.block_size - 1) / o.block_size;
    uint64_t entries = blocks ? blocks + (blocks - 1) / chunk_ratio : 0;
    if (entries * 8 > VHDX_MAX_BAT_BYTES)
        return err_set(-EFBIG, "%s: a VHDX image of %" PRIu64 " bytes in blocks of %" PRIu64
                       " needs a BAT of %" PRIu64 " bytes, more than vdisk's limit of %" PRIu64
                       " (choose a larger block_size)", fn, size, o.block_size, entries * 8,
                       VHDX_MAX_BAT_BYTES);
    uint64_t bat_off = align_up(VHDX_HEADER_SECTION + o.log_size, VHDX_MIB);
    uint64_t bat_len = align_up(entries * 8, VHDX_MIB);
    uint64_t md_off = bat_off + bat_len;
    uint64_t data_off = bat_off + bat_len + 5 * VHDX_MIB;

    uint8_t *rt = calloc(1, VHDX_RT_SIZE);
    uint8_t *md = calloc(1, VHDX_MD_TABLE_SIZE);
    uint8_t *bat = bat_len ? calloc(1, (size_t)bat_len) : NULL;
    if (!rt || !md || (bat_len && !bat)) {
        free(rt);
        free(md);
        free(bat);
        return err_set(-ENOMEM, "out of memory");
    }
    /* Region table: the BAT, then the metadata. */
    memcpy(rt, "regi", 4);
    le32_store(rt + 8, 2);
    memcpy(rt + 16, guid_bat, 16);
    le64_store(rt + 32, bat_off);
    le32_store(rt + 40, (uint32_t)bat_len);
    memcpy(rt + 48, guid_metadata, 16);
    le64_store(rt + 64, md_off);
    le32_store(rt + 72, (uint32_t)VHDX_MIB);
    le32_store(rt + 4, vhdx_crc32c(rt, VHDX_RT_SIZE, 4));

    /* Metadata table and items. */
    memcpy(md, "metadata", 8);
    le16_store(md + 10, 5);
    static const uint32_t lens[5] = {8, 8, 16, 4, 4};
    uint32_t at = VHDX_MD_TABLE_SIZE;
    uint8_t items[40] = {0};
    for (int i = 0; i < 5; i++) {
        uint8_t *e = md + 32 + 32 * i;
        memcpy(e, guid_items[i], 16);
        le32_store(e + 16, at);
        le32_store(e + 20, lens[i]);
        le32_store(e + 24, i == 0 ? VHDX_MD_IS_REQUIRED : VHDX_MD_IS_REQUIRED | 2u);
        at += lens[i];
    }
    le32_store(items, (uint32_t)o.block_size);
    le32_store(items + 4, o.fixed ? VHDX_PARAM_LEAVE_ALLOCATED : 0);
    le64_store(items + 8, size);
    r = vhdx_guid_new(items + 16);
    le32_store(items + 32, VHDX_CREATE_SECTOR);
    le32_store(items + 36, VHDX_CREATE_SECTOR);

    /* The BAT. */
    unsigned state = o.zero_blocks ? VHDX_PAYLOAD_ZERO
                     : o.fixed     ? VHDX_PAYLOAD_FULLY_PRESENT
                                   : VHDX_PAYLOAD_NOT_PRESENT;
    for (uint64_t b = 0; state != VHDX_PAYLOAD_NOT_PRESENT && b < blocks; b++) {
        uint64_t e = state;
        if (state == VHDX_PAYLOAD_FULLY_PRESENT)
            e |= align_up(data_off + b * o.block_size, VHDX_MIB);
        le64_store(bat + 8 * (b + b / chunk_ratio), e);
    }

    struct file_lock *lock = NULL;
    int fd = r == 0 ? file_create_locked(fn, &lock) : r;
    if (fd < 0) {
        free(rt);
        free(md);
        free(bat);
        return fd;
    }
    uint8_t ident[64] = {0};
    memcpy(ident, "vhdxfile", 8);
    static const char creator[] = "vdisk";
    for (size_t i = 0; i < sizeof creator - 1; i++)
        ident[8 + 2 * i] = (uint8_t)creator[i];
    if (ftruncate(fd, (off_t)(data_off + (o.fixed ? size : 0))) < 0)
        r = err_set(-errno, "%s: could not resize to %" PRIu64 " bytes: %s", fn,
                    data_off + (o.fixed ? size : 0), strerror(errno));
    if (r == 0)
        r = file_write_all(fd, ident, sizeof ident, 0, fn);
    if (r == 0)
        r = write_headers(fd, fn, o.log_size);
    if (r == 0)
        r = file_write_all(fd, rt, VHDX_RT_SIZE, VHDX_RT1_OFFSET, fn);
    if (r == 0)
        r = file_write_all(fd, rt, VHDX_RT_SIZE, VHDX_RT2_OFFSET, fn);
    if (r == 0 && bat && state != VHDX_PAYLOAD_NOT_PRESENT)
        r = file_write_all(fd, bat, (size_t)bat_len, bat_off, fn);
    if (r == 0)
        r = file_write_all(fd, md, VHDX_MD_TABLE_SIZE, md_off, fn);
    if (r == 0)
        r = file_write_all(fd, items, sizeof items, md_off + VHDX_MD_TABLE_SIZE, fn);
    free(rt);
    free(md);
    free(bat);
    return file_create_done(fd, lock, r, fn);
}
