/* SPDX-License-Identifier: MIT */
/*
 * formats/vmdk/create.c: new VMDK images as qemu-img 7.2 lays them out
 * (monolithicSparse and streamOptimized): the sparse header, the embedded descriptor (20
 * sectors from sector 1), the redundant grain directory and its grain
 * tables, the grain directory and its grain tables, all tables present and
 * empty, the metadata rounded up to a grain; grains are added at the end
 * of the file as they are written.  A streamOptimized image is the same
 * file with version 3 and the compressed-grains and markers flags: each
 * grain is written once, deflated behind a marker, as QEMU writes it (no
 * footer; its grain directory stays where the header says).
 *
 * Options: subformat (monolithicSparse, streamOptimized; the others are
 * not made yet),
 * adapter_type (ide, lsilogic, buslogic, legacyESX), hwversion, compat6
 * (hardware version 6), toolsversion, zeroed_grain, backing_file and
 * backing_fmt (vmdk: a child of that image, its CID as the parentCID).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "driver.h"
#include "vmdk.h"

#define GRAIN_SECTORS   128u          /* 64 KiB grains, as qemu-img makes them */
#define GTES            512u
#define DESC_SECTORS    20u
#define CYLINDERS_SECTORS 63u

static int bool_opt(struct opt_set *os, const char *key, bool *out)
{
    const char *v = opt_take(os, key);
    *out = false;
    return v ? opt_bool(key, v, out) : 0;
}

/* The descriptor text of a new monolithicSparse image. */
static int descriptor(char *out, size_t size, uint32_t cid, uint32_t parent_cid,
                      const char *parent, uint64_t sectors, const char *extent,
                      const char *hw, const char *adapter, const char *tools, const char *type)
{
    unsigned heads = strcmp(adapter, "ide") == 0 ? 16 : 255;
    char hint[4200] = "";
    if (parent)
        snprintf(hint, sizeof hint, "parentFileNameHint=\"%s\"\n", parent);
    int n = snprintf(out, size,
                     "# Disk DescriptorFile\n"
                     "version=1\n"
                     "CID=%08" PRIx32 "\n"
                     "parentCID=%08" PRIx32 "\n"
                     "createType=\"%s\"\n"
                     "%s"
                     "# Extent description\n"
                     "RW %" PRIu64 " SPARSE \"%s\"\n"
                     "\n"
                     "# The Disk Data Base\n"
                     "#DDB\n"
                     "\n"
                     "ddb.virtualHWVersion = \"%s\"\n"
                     "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
                     "ddb.geometry.heads = \"%u\"\n"
                     "ddb.geometry.sectors = \"63\"\n"
                     "ddb.adapterType = \"%s\"\n"
                     "ddb.toolsVersion = \"%s\"\n",
                     cid, parent_cid, type, parent ? hint : "\n", sectors, extent, hw,
                     sectors / (heads * CYLINDERS_SECTORS), heads, adapter, tools);
    return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

int vmdk_create(const char *filename, uint64_t size, struct opt_set *os)
{
    const char *sub = opt_take(os, "subformat");
    const char *adapter = opt_take(os, "adapter_type");
    const char *hw = opt_take(os, "hwversion");
    const char *tools = opt_take(os, "toolsversion");
    const char *bfile = opt_take(os, "backing_file");
    const char *bfmt = opt_take(os, "backing_fmt");
    bool compat6 = false, zeroed = false;
    int r = bool_opt(os, "compat6", &compat6);
    if (r == 0)
        r = bool_opt(os, "zeroed_grain", &zeroed);
    if (r == 0)
        r = opt_check_all_taken(os, "vmdk");
    if (r < 0)
        return r;
    if (!sub)
        sub = "monolithicSparse";
    bool stream = strcmp(sub, "streamOptimized") == 0;
    if (!stream && strcmp(sub, "monolithicSparse") != 0)
        return err_set(-ENOTSUP, "%s: vdisk does not make %s VMDK images yet (only "
                       "monolithicSparse and streamOptimized)", filename, sub);
    if (!adapter)
        adapter = "ide";
    if (strcmp(adapter, "ide") && strcmp(adapter, "lsilogic") && strcmp(adapter, "buslogic") &&
        strcmp(adapter, "legacyESX"))
        return err_set(-EINVAL, "%s: invalid parameter value: %s", filename, adapter);
    if (compat6 && hw)
        return err_set(-EINVAL, "%s: compat6 cannot be enabled with hwversion set", filename);
    if (!hw)
        hw = compat6 ? "6" : "4";
    if (!tools)
        tools = "2147483647";
    if (strlen(hw) > 64 || strlen(tools) > 64 || strpbrk(hw, "\"\n") || strpbrk(tools, "\"\n"))
        return err_set(-EINVAL, "%s: hwversion and toolsversion are at most 64 characters, "
                       "without quotes or new lines", filename);
    if (bfmt && strcmp(bfmt, "vmdk") != 0)
        return err_set(-EINVAL, "%s: backing_fmt must be 'vmdk' if present (not '%s')",
                       filename, bfmt);
    uint32_t parent_cid = 0xffffffffu;
    if (bfile) {
        if (strpbrk(bfile, "\"\n") || strlen(bfile) > 4096)
            return err_set(-EINVAL, "%s: the backing file name '%s' cannot be written in a "
                           "descriptor", filename, bfile);
        /* The parent's CID and size. */
        char *full = backing_resolve(filename, bfile);
        if (!full)
            return err_set(-ENOMEM, "out of memory");
        struct vdisk_open_params p = {.read_only = true, .no_backing = true};
        struct vdisk_dev *pd;
        r = dev_open(&pd, full, "vmdk", &p, NULL);
        free(full);
        if (r < 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", err_detail());
            return err_set(r, "%s: could not open the backing file '%s': %s", filename, bfile,
                           msg);
        }
        parent_cid = vmdk_cid(pd);
        if (!size)
            size = dev_size(pd);
        dev_unref(pd);
    }
    uint64_t sectors = (size + 511) / 512;
    uint64_t per_gt = (uint64_t)GRAIN_SECTORS * GTES;
    uint64_t gd_entries = sectors / per_gt + (sectors % per_gt != 0);
    if (gd_entries > (64u << 20) / 4)
        return err_set(-EFBIG, "%s: %" PRIu64 " bytes is too large for a VMDK image vdisk "
                       "makes", filename, size);
    uint64_t gd_sectors = (gd_entries * 4 + 511) / 512;
    uint64_t gt_sectors = gd_entries * (GTES * 4 / 512);
    uint64_t rgd = 1 + DESC_SECTORS, rgt = rgd + gd_sectors;
    uint64_t gd = rgt + gt_sectors, gt = gd + gd_sectors;
    uint64_t overhead = (gt + gt_sectors + GRAIN_SECTORS - 1) / GRAIN_SECTORS * GRAIN_SECTORS;
    size_t total = (size_t)(overhead * 512);
    uint8_t *buf = calloc(1, total);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    le32_store(buf + VMDK_H_MAGIC, VMDK4_MAGIC);
    le32_store(buf + VMDK_H_VERSION, zeroed ? 2 : stream ? 3 : 1);
    le32_store(buf + VMDK_H_FLAGS, VMDK4_F_NL_DETECT | VMDK4_F_RGD |
               (zeroed ? VMDK4_F_ZERO_GRAIN : 0) |
               (stream ? VMDK4_F_COMPRESS | VMDK4_F_MARKER : 0));
    le64_store(buf + VMDK_H_CAPACITY, sectors);
    le64_store(buf + VMDK_H_GRAIN, GRAIN_SECTORS);
    le64_store(buf + VMDK_H_DESC_OFF, 1);
    le64_store(buf + VMDK_H_DESC_SIZE, DESC_SECTORS);
    le32_store(buf + VMDK_H_GTES, GTES);
    le64_store(buf + VMDK_H_RGD, rgd);
    le64_store(buf + VMDK_H_GD, gd);
    le64_store(buf + VMDK_H_OVERHEAD, overhead);
    memcpy(buf + 73, "\n \r\n", 4);
    buf[VMDK_H_COMPRESS] = stream ? VMDK4_COMPRESS_DEFLATE : 0;
    for (uint64_t i = 0; i < gd_entries; i++) {
        le32_store(buf + rgd * 512 + i * 4, (uint32_t)(rgt + i * (GTES * 4 / 512)));
        le32_store(buf + gd * 512 + i * 4, (uint32_t)(gt + i * (GTES * 4 / 512)));
    }
    uint32_t cid;
    if (getrandom(&cid, sizeof cid, 0) != (ssize_t)sizeof cid) {
        free(buf);
        return err_set(-EIO, "%s: no random bytes for the image's CID", filename);
    }
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    if (descriptor((char *)buf + 512, DESC_SECTORS * 512, cid, parent_cid, bfile, sectors, base,
                   hw, adapter, tools, sub) < 0) {
        free(buf);
        return err_set(-ENAMETOOLONG, "%s: the descriptor does not fit in %u sectors", filename,
                       DESC_SECTORS);
    }
    struct file_lock *lock;
    int fd = file_create_locked(filename, &lock);
    if (fd < 0) {
        free(buf);
        return fd;
    }
    r = file_write_all(fd, buf, total, 0, filename);
    free(buf);
    return file_create_done(fd, lock, r, filename);
}
