/* SPDX-License-Identifier: MIT */
/*
 * vdisk/measure.h: the size a new image needs (qemu-img measure), for an
 * empty disk of a given size or to hold the data of an existing image,
 * with qemu-img 7.2's accounting.
 */
#ifndef VDISK_MEASURE_H
#define VDISK_MEASURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>
#include <vdisk/options.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The result, with qemu-img measure's fields.  The caller sets struct_size
 * to sizeof(struct vdisk_measure_result); see "Structures that grow" in
 * vdisk/device.h.
 */
struct vdisk_measure_result {
    size_t struct_size;
    uint64_t required;          /* bytes the new image takes to hold the
                                   source's data ("required size"); for an
                                   empty disk, its metadata alone */
    uint64_t fully_allocated;   /* bytes with every cluster of the disk
                                   allocated ("fully allocated size") */
    bool has_bitmaps;           /* bitmaps applies: a qcow2 (compat 1.1)
                                   image measured from a qcow2 v3 source,
                                   which could carry its persistent dirty
                                   bitmaps over; qemu-img then shows
                                   "bitmaps size" */
    uint64_t bitmaps;           /* bytes those bitmaps would take in the new
                                   image (directory, tables, data: all of
                                   it counted as allocated); 0 without */
};

/* The first version of struct vdisk_measure_result ended with bitmaps. */
#define VDISK_MEASURE_RESULT_SIZE_V1 VDISK_STRUCT_END(struct vdisk_measure_result, bitmaps)

/*
 * vdisk_measure: how large an image of FORMAT ("raw" when NULL, or
 * "qcow2") would be, in *RES: for an empty disk of SIZE bytes when SRC is
 * NULL, or, with SRC, for a copy of SRC (its size and the data it holds;
 * SIZE must then be 0).  Sizes are rounded up to 512 bytes as vdisk_create
 * rounds them.
 *
 * OPTS (may be NULL) are the creation options of vdisk_create() (see
 * vdisk/device.h), checked as vdisk_create checks them; those that change
 * the result:
 *   raw:    none: required and fully allocated are both the size (SRC's
 *           with SRC), holes included, as qemu-img counts them.
 *   qcow2:  cluster_size, refcount_bits and extended_l2 (the metadata);
 *           preallocation=falloc or full (required becomes fully
 *           allocated; metadata changes nothing: the metadata is always
 *           counted); backing_file with SRC (every cluster of SRC counted,
 *           as the new image may share nothing with its backing file);
 *           compat=0.10 (no bitmaps).
 * For qcow2, required is fully_allocated less the clusters of the disk
 * that SRC does not hold data in (clusters of the new image's size that
 * read as zeroes or are unallocated through SRC's whole backing chain).
 *
 * SRC is borrowed (the caller still owns and closes it); any open device
 * will do (a qcow2 image, a raw file, a partition), typically opened
 * read-only.  Its data is found with block status queries
 * (vdisk_block_status), through its backing chain.
 *
 * Returns 0, or a negative errno: -EINVAL for a bad option, a combination
 * vdisk_create refuses, a SIZE given with SRC, or res->struct_size below
 * VDISK_MEASURE_RESULT_SIZE_V1; -ENOTSUP for a format vdisk cannot create;
 * -EFBIG for a size above INT64_MAX bytes, or (qcow2) one whose L1 table
 * would exceed QEMU's 32 MiB ("The image size is too large (try using a
 * larger cluster size)"); or an error of SRC's block status.  *RES is
 * written (up to its struct_size, which is set to the bytes filled) only
 * on success.
 *
 * Thread-safety and blocking: without SRC the call does no I/O, does not
 * block and is thread-safe.  With SRC it reads SRC's metadata (it blocks
 * on that I/O, and on another thread's quiesce section of SRC), as
 * vdisk_block_status does, and may run concurrently with I/O on SRC; what
 * writes on SRC change meanwhile may or may not be counted.
 */
int vdisk_measure(const char *format, uint64_t size, const vdisk_options *opts,
                  vdisk_dev *src, struct vdisk_measure_result *res);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_MEASURE_H */
