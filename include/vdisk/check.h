/* SPDX-License-Identifier: MIT */
/*
 * vdisk/check.h: consistency check and repair of images (qemu-img check).
 *
 * Thread-safety: vdisk_check runs inside a quiesce section of its own
 * (vdisk_dev_quiesce in vdisk/queue.h): it waits for the requests in
 * flight, holds back those other threads start until it returns, and so
 * may be called while other threads keep their queues going.  Blocks.
 */
#ifndef VDISK_CHECK_H
#define VDISK_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for vdisk_check(). */
#define VDISK_CHECK_REPAIR_LEAKS  0x1u /* -r leaks: free what nothing uses */
#define VDISK_CHECK_REPAIR_ERRORS 0x2u /* -r all: also fix refcounts too low and
                                          wrong COPIED flags, rebuilding the
                                          refcount structure if needed */

/*
 * The result, with qemu-img check's fields.  The caller sets struct_size
 * to sizeof(struct vdisk_check_result); see "Structures that grow" in
 * vdisk/device.h.
 */
struct vdisk_check_result {
    size_t struct_size;
    int64_t corruptions;        /* found and not repaired */
    int64_t leaks;              /* found and not repaired */
    int64_t check_errors;       /* what could not be checked (I/O errors) */
    int64_t corruptions_fixed;
    int64_t leaks_fixed;
    uint64_t image_end_offset;  /* where the image's used clusters end */
    uint64_t total_clusters;    /* of the virtual disk */
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
    int repaired;               /* 1 when a repair was made (then the image
                                   was checked again: the counts above are
                                   the second check's, plus the *_fixed) */
};

/* The first version of struct vdisk_check_result ended with repaired. */
#define VDISK_CHECK_RESULT_SIZE_V1 VDISK_STRUCT_END(struct vdisk_check_result, repaired)

/* A line of detail ("Leaked cluster 9 refcount=1 reference=0"). */
typedef void (*vdisk_check_report_fn)(void *opaque, const char *line);

/*
 * vdisk_check: checks DEV's metadata, repairing what FLAGS allow (the
 * device must then be writable).  REPORT (may be NULL) receives one line
 * per problem found or fixed.  Returns 0 when the check ran to the end
 * (problems are counted in *RES), -ENOTSUP for formats without metadata
 * to check (raw), -EINVAL when res->struct_size is below
 * VDISK_CHECK_RESULT_SIZE_V1 (nothing written), or another -errno when the
 * check could not run.  *RES is filled up to its struct_size (set to the
 * bytes filled), also when the check stopped on an error: the counts then
 * cover what was checked.
 */
int vdisk_check(vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                vdisk_check_report_fn report, void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_CHECK_H */
