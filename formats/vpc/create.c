/* SPDX-License-Identifier: MIT */
/*
 * formats/vpc/create.c: new VHD images, as qemu-img 7.2 makes them.
 *
 *   subformat=dynamic (default)  footer copy, dynamic disk header at 512,
 *                                BAT at 1536 (all unallocated), footer
 *   subformat=fixed              the data (a sparse file), footer
 *   force_size=on                the size as given (rounded up to 512), the
 *                                largest geometry and creator "qem2": what
 *                                Azure needs (a whole number of MiB);
 *                                otherwise the size is rounded up to a CHS
 *                                geometry's, creator "qemu"
 * preallocation=off|falloc|full is accepted and, as in qemu-img 7.2 for vpc,
 * changes nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "vpc.h"

/* The geometry of SECTORS, by the VHD specification's algorithm. */
void vpc_chs(uint64_t sectors, uint16_t *c, uint8_t *h, uint8_t *spt)
{
    uint64_t cth;
    if (sectors > VPC_MAX_GEOMETRY)
        sectors = VPC_MAX_GEOMETRY;
    if (sectors >= 65535ull * 16 * 63) {
        *spt = 255;
        *h = 16;
        cth = sectors / 255;
    } else {
        *spt = 17;
        cth = sectors / 17;
        uint64_t heads = (cth + 1023) / 1024;
        if (heads < 4)
            heads = 4;
        if (cth >= heads * 1024 || heads > 16) {
            *spt = 31;
            heads = 16;
            cth = sectors / 31;
        }
        if (cth >= heads * 1024) {
            *spt = 63;
            heads = 16;
            cth = sectors / 63;
        }
        *h = (uint8_t)heads;
    }
    *c = (uint16_t)(cth / *h);
}

/* The disk's sectors and geometry for SIZE bytes, as qemu-img rounds them. */
static int rounded_size(const char *fn, uint64_t size, bool force, uint64_t *sectors,
                        uint16_t *c, uint8_t *h, uint8_t *spt)
{
    *c = 0;
    *h = 0;
    *spt = 0;
    if (force) {
        *c = VPC_CHS_MAX_C;
        *h = VPC_CHS_MAX_H;
        *spt = VPC_CHS_MAX_S;
    } else {
        uint64_t want = size / VPC_SECTOR < VPC_MAX_GEOMETRY ? size / VPC_SECTOR
                                                              : VPC_MAX_GEOMETRY;
        for (uint64_t i = 0; want > (uint64_t)*c * *h * *spt; i++)
            vpc_chs(want + i, c, h, spt);
    }
    if ((uint64_t)*c * *h * *spt == VPC_MAX_GEOMETRY) {
        *sectors = size / VPC_SECTOR;
        if (*sectors > VPC_MAX_SECTORS)
            return err_set(-EFBIG, "%s: The image size is too large for file format 'vpc'", fn);
    } else {
        *sectors = (uint64_t)*c * *h * *spt;
    }
    return 0;
}

static void make_footer(uint8_t *f, int type, uint64_t size, bool force, uint16_t c, uint8_t h,
                        uint8_t spt)
{
    memset(f, 0, VPC_FOOTER_SIZE);
    memcpy(f + VPC_F_COOKIE, "conectix", 8);
    be32_store(f + VPC_F_FEATURES, 2);
    be32_store(f + VPC_F_VERSION, 0x00010000);
    be64_store(f + VPC_F_DATA_OFFSET, type == VPC_TYPE_FIXED ? UINT64_MAX : VPC_FOOTER_SIZE);
    be32_store(f + VPC_F_TIMESTAMP, (uint32_t)(time(NULL) - VPC_TIME_BASE));
    memcpy(f + VPC_F_CREATOR_APP, force ? "qem2" : "qemu", 4);
    be16_store(f + VPC_F_CREATOR_VER, 5); /* Virtual PC 2007's version, 5.3 */
    be16_store(f + VPC_F_CREATOR_VER + 2, 3);
    memcpy(f + VPC_F_CREATOR_OS, "Wi2k", 4);
    be64_store(f + VPC_F_ORIG_SIZE, size);
    be64_store(f + VPC_F_CUR_SIZE, size);
    be16_store(f + VPC_F_CYLS, c);
    f[VPC_F_HEADS] = h;
    f[VPC_F_SPT] = spt;
    be32_store(f + VPC_F_TYPE, (uint32_t)type);
    uint8_t *u = f + VPC_F_UUID;
    if (getrandom(u, 16, 0) != 16) {
        for (int i = 0; i < 16; i++)
            u[i] = (uint8_t)rand();
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    be32_store(f + VPC_F_CHECKSUM, vpc_checksum(f, VPC_FOOTER_SIZE, VPC_F_CHECKSUM));
}

int vpc_create(const char *filename, uint64_t size, struct opt_set *os)
{
    int type = VPC_TYPE_DYNAMIC;
    bool force = false;
    const char *v = opt_take(os, "subformat");
    if (v && !strcmp(v, "fixed"))
        type = VPC_TYPE_FIXED;
    else if (v && strcmp(v, "dynamic"))
        return err_set(-EINVAL, "%s: Parameter 'subformat' does not accept value '%s'",
                       filename, v);
    v = opt_take(os, "force_size");
    if (v && opt_bool("force_size", v, &force) < 0)
        return err_set(-EINVAL, "%s: Parameter 'force_size' expects 'on' or 'off'", filename);
    v = opt_take(os, "preallocation");
    if (v && strcmp(v, "off") && strcmp(v, "falloc") && strcmp(v, "full"))
        return err_set(-EINVAL, "%s: invalid parameter value: %s", filename, v);
    int r = opt_check_all_taken(os, "vpc");
    if (r < 0)
        return r;
    if (dev_is_network_name(filename))
        return err_set(-ENOTSUP, "%s: vdisk creates VHD images in local files only", filename);
    size = align_up(size, VPC_SECTOR);
    uint64_t sectors;
    uint16_t c;
    uint8_t h, spt;
    r = rounded_size(filename, size, force, &sectors, &c, &h, &spt);
    if (r < 0)
        return r;
    uint64_t bytes = sectors * VPC_SECTOR;
    uint8_t footer[VPC_FOOTER_SIZE];
    make_footer(footer, type, bytes, force, c, h, spt);

    struct file_lock *lock;
    int fd = file_create_locked(filename, &lock);
    if (fd < 0)
        return fd;
    if (type == VPC_TYPE_FIXED) {
        if (ftruncate(fd, (off_t)(bytes + VPC_FOOTER_SIZE)) < 0)
            r = err_set(-errno, "%s: could not resize to %" PRIu64 " bytes: %s", filename,
                        bytes + VPC_FOOTER_SIZE, strerror(errno));
        /* As QEMU's file creation: the first block allocated, so that
         * the file system's alignment can be probed on it. */
        uint8_t zero[4096] = {0};
        size_t n = bytes < sizeof zero ? (size_t)bytes : sizeof zero;
        if (r == 0 && n)
            r = file_write_all(fd, zero, n, 0, filename);
        if (r == 0)
            r = file_write_all(fd, footer, VPC_FOOTER_SIZE, bytes, filename);
    } else {
        uint64_t entries = (sectors + VPC_DEFAULT_BLOCK / VPC_SECTOR - 1) /
                           (VPC_DEFAULT_BLOCK / VPC_SECTOR);
        uint64_t bat_bytes = align_up(entries * 4, VPC_SECTOR);
        uint64_t bat_off = VPC_FOOTER_SIZE + VPC_HEADER_SIZE;
        uint8_t *buf = malloc(VPC_HEADER_SIZE + bat_bytes);
        if (!buf)
            r = err_set(-ENOMEM, "out of memory");
        if (r == 0) {
            uint8_t *hd = buf;
            memset(hd, 0, VPC_HEADER_SIZE);
            memcpy(hd + VPC_H_COOKIE, "cxsparse", 8);
            be64_store(hd + VPC_H_DATA_OFFSET, UINT64_MAX);
            be64_store(hd + VPC_H_TABLE_OFFSET, bat_off);
            be32_store(hd + VPC_H_VERSION, 0x00010000);
            be32_store(hd + VPC_H_MAX_ENTRIES, (uint32_t)entries);
            be32_store(hd + VPC_H_BLOCK_SIZE, VPC_DEFAULT_BLOCK);
            be32_store(hd + VPC_H_CHECKSUM, vpc_checksum(hd, VPC_HEADER_SIZE, VPC_H_CHECKSUM));
            memset(buf + VPC_HEADER_SIZE, 0xff, bat_bytes);
            r = file_write_all(fd, footer, VPC_FOOTER_SIZE, 0, filename);
        }
        if (r == 0)
            r = file_write_all(fd, buf, VPC_HEADER_SIZE + bat_bytes, VPC_FOOTER_SIZE, filename);
        if (r == 0)
            r = file_write_all(fd, footer, VPC_FOOTER_SIZE, bat_off + bat_bytes, filename);
        free(buf);
    }
    return file_create_done(fd, lock, r, filename);
}
