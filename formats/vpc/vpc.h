/* SPDX-License-Identifier: MIT */
/*
 * formats/vpc/vpc.h: VHD images ("vpc" in QEMU): the on-disk layout, the
 * limits vdisk holds images to, and the driver's state.
 *
 * Microsoft's "Virtual Hard Disk Image Format Specification" (2006):
 *   fixed         the disk's bytes, then a 512-byte footer
 *   dynamic       a copy of the footer at 0, the dynamic disk header (1024
 *                 bytes), the block allocation table (BAT: one big-endian
 *                 32-bit sector number per block, 0xffffffff unallocated),
 *                 the blocks (each a sector bitmap, then the block's data),
 *                 the footer at the end
 *   differencing  a dynamic disk whose clear bitmap bits read the parent,
 *                 named in the header and its parent locators
 * Every field is big-endian; the checksums are the one's complement of the
 * byte sum with the checksum field taken as zero.
 */
#ifndef VDISK_VPC_H
#define VDISK_VPC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define VPC_SECTOR          512u
#define VPC_FOOTER_SIZE     512u
#define VPC_HEADER_SIZE     1024u   /* the dynamic disk header */

/* Footer fields (byte offsets). */
#define VPC_F_COOKIE        0       /* "conectix" */
#define VPC_F_FEATURES      8
#define VPC_F_VERSION       12
#define VPC_F_DATA_OFFSET   16      /* the dynamic header, or all ones */
#define VPC_F_TIMESTAMP     24      /* seconds since 2000-01-01 UTC */
#define VPC_F_CREATOR_APP   28
#define VPC_F_CREATOR_VER   32
#define VPC_F_CREATOR_OS    36
#define VPC_F_ORIG_SIZE     40
#define VPC_F_CUR_SIZE      48
#define VPC_F_CYLS          56
#define VPC_F_HEADS         58
#define VPC_F_SPT           59
#define VPC_F_TYPE          60
#define VPC_F_CHECKSUM      64
#define VPC_F_UUID          68

/* Dynamic disk header fields. */
#define VPC_H_COOKIE        0       /* "cxsparse" */
#define VPC_H_DATA_OFFSET   8
#define VPC_H_TABLE_OFFSET  16
#define VPC_H_VERSION       24
#define VPC_H_MAX_ENTRIES   28
#define VPC_H_BLOCK_SIZE    32
#define VPC_H_CHECKSUM      36
#define VPC_H_PARENT_UUID   40
#define VPC_H_PARENT_TIME   56
#define VPC_H_PARENT_NAME   64      /* UTF-16BE, 512 bytes */
#define VPC_H_PARENT_NAME_LEN 512
#define VPC_H_LOCATORS      576     /* 8 entries of 24 bytes */
#define VPC_LOCATORS        8
#define VPC_LOCATOR_SIZE    24

#define VPC_TYPE_FIXED      2
#define VPC_TYPE_DYNAMIC    3
#define VPC_TYPE_DIFF       4

#define VPC_UNALLOCATED     0xffffffffu

/* What is known of an allocated block's sector bitmap. */
#define VPC_UNKNOWN         0       /* not read yet */
#define VPC_FULL            1       /* all ones: the block's data is all here */
#define VPC_PARTIAL         2       /* some sectors elsewhere (parent, or zero) */
#define VPC_TIME_BASE       946684800 /* 2000-01-01 00:00:00 UTC */

/* QEMU's limits: 2040 GiB, and the largest CHS geometry. */
#define VPC_MAX_SECTORS     UINT64_C(0xff000000)
#define VPC_CHS_MAX_C       65535u
#define VPC_CHS_MAX_H       16u
#define VPC_CHS_MAX_S       255u
#define VPC_MAX_GEOMETRY    ((uint64_t)VPC_CHS_MAX_C * VPC_CHS_MAX_H * VPC_CHS_MAX_S)

/* vdisk's own bounds on what an image may claim. */
#define VPC_MIN_BLOCK_SIZE  VPC_SECTOR
#define VPC_MAX_BLOCK_SIZE  (256u << 20)
#define VPC_MAX_BAT_BYTES   (64u << 20)  /* the BAT entries kept in memory */
#define VPC_MAX_LOCATOR     4096u        /* bytes of one parent locator */
#define VPC_MAX_CHAIN_DEPTH 64           /* differencing images above a parent */
#define VPC_DEFAULT_BLOCK   (2u << 20)

struct vpc {
    struct vdisk_dev *dev;
    struct vdisk_dev *file;
    struct vdisk_dev *parent;         /* differencing images */
    struct offload *offload;
    pthread_mutex_t lock;             /* everything below */

    uint8_t footer[VPC_FOOTER_SIZE];
    uint8_t uuid[16];
    int type;                         /* VPC_TYPE_* */
    bool read_only;
    uint64_t size;                    /* the virtual size */

    uint32_t block_size;
    uint32_t bitmap_size;             /* bytes, a multiple of 512 */
    uint64_t bat_offset;
    uint32_t entries;                 /* BAT entries in memory (those in use) */
    uint32_t *bat;                    /* host order */
    uint8_t *full;                    /* per block: VPC_UNKNOWN, _FULL, _PARTIAL */
    uint64_t free_off;                /* where the next block goes (the footer) */
    uint8_t *bitmap;                  /* one block's bitmap, cached */
    uint32_t bitmap_block;            /* ... of this block, or VPC_UNALLOCATED */

    char *parent_name;                /* as the image names it (UTF-8) */
    char *full_parent;                /* resolved */
    bool confine;
    bool allow_network;
};

int vpc_open_parent(struct vpc *s, const uint8_t *hdr, struct opt_set *os);
void vpc_chs(uint64_t sectors, uint16_t *c, uint8_t *h, uint8_t *spt);
uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t skip);
int vpc_create(const char *filename, uint64_t size, struct opt_set *os);

#endif /* VDISK_VPC_H */
