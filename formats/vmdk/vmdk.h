/* SPDX-License-Identifier: MIT */
/* formats/vmdk/vmdk.h: what vmdk.c and create.c share. */
#ifndef VDISK_FORMATS_VMDK_H
#define VDISK_FORMATS_VMDK_H

#include <stdint.h>

#include "driver.h"

#define VMDK4_MAGIC            0x564d444bu   /* "KDMV" */
#define VMDK3_MAGIC            0x44574f43u   /* "COWD" (ESX vmfsSparse) */
#define VMDK4_F_NL_DETECT      (1u << 0)
#define VMDK4_F_RGD            (1u << 1)
#define VMDK4_F_ZERO_GRAIN     (1u << 2)
#define VMDK4_F_COMPRESS       (1u << 16)
#define VMDK4_F_MARKER         (1u << 17)
#define VMDK4_COMPRESS_DEFLATE 1u          /* the header's compression algorithm */

/* Sparse header fields (byte offsets). */
#define VMDK_H_MAGIC        0
#define VMDK_H_VERSION      4
#define VMDK_H_FLAGS        8
#define VMDK_H_CAPACITY     12
#define VMDK_H_GRAIN        20
#define VMDK_H_DESC_OFF     28
#define VMDK_H_DESC_SIZE    36
#define VMDK_H_GTES         44
#define VMDK_H_RGD          48
#define VMDK_H_GD           56
#define VMDK_H_OVERHEAD     64
#define VMDK_H_COMPRESS     77

/* The CID of an open VMDK device. */
uint32_t vmdk_cid(struct vdisk_dev *dev);
/* create.c: a new image (the driver's create). */
int vmdk_create(const char *filename, uint64_t size, struct opt_set *os);

#endif
