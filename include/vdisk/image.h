/* SPDX-License-Identifier: MIT */
/*
 * vdisk/image.h: operations on whole images: resize, empty, change the
 * backing file, amend format options (qemu-img resize, commit, rebase,
 * amend build on these).
 *
 * Thread-safety: each call runs inside a quiesce section of its own
 * (vdisk_dev_quiesce in vdisk/queue.h): it waits for the requests in
 * flight, holds back those other threads start until it returns, and so
 * may be called while other threads keep their queues going.  Blocks.
 */
#ifndef VDISK_IMAGE_H
#define VDISK_IMAGE_H

#include <stdint.h>

#include <vdisk/device.h>
#include <vdisk/options.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for vdisk_resize(). */
#define VDISK_RESIZE_SHRINK 0x1u /* allow a smaller size (data past it is lost) */
/* Preallocation of the grown part (growing only; as qemu-img resize
 * --preallocation=falloc|full|metadata): FALLOC reserves the space
 * (fallocate), FULL writes zeroes, METADATA (qcow2 only) maps the new
 * clusters without writing them.  qcow2 maps the new clusters for all
 * three; raw has FALLOC and FULL. */
#define VDISK_RESIZE_PREALLOC_FALLOC   0x2u
#define VDISK_RESIZE_PREALLOC_FULL     0x4u
#define VDISK_RESIZE_PREALLOC_METADATA 0x8u

/*
 * vdisk_resize: sets the virtual size to NEW_SIZE (rounded up to 512).
 * qcow2 grows its L1 table as needed; shrinking needs VDISK_RESIZE_SHRINK
 * and is refused for images with internal snapshots.  Returns 0, -EINVAL
 * (a shrink without the flag), -ENOTSUP, or -errno.
 */
int vdisk_resize(vdisk_dev *dev, uint64_t new_size, unsigned flags);

/*
 * vdisk_make_empty: drops everything the image holds itself, so that it
 * reads what its backing file holds (qemu-img commit does this after
 * committing).  Returns 0, -ENOTSUP for formats that cannot, or -errno.
 */
int vdisk_make_empty(vdisk_dev *dev);

/*
 * vdisk_set_backing: makes NAME (with format FORMAT, may be NULL) the
 * image's backing file, or removes the backing file when NAME is NULL or
 * "".  Only the header changes (qemu-img rebase -u).  The new backing file
 * is opened for reading when it can be; when it cannot (it may not exist
 * yet), the image reads zeroes where it would read it, until reopened.
 * Returns 0 once the header is written, or -errno.
 */
int vdisk_set_backing(vdisk_dev *dev, const char *name, const char *format);

/*
 * vdisk_amend: changes format options of an image in place, as qemu-img
 * amend: for qcow2 "compat" (0.10 or 1.1), "refcount_bits" (1 to 64) and
 * "lazy_refcounts" (on or off).  Options it cannot change are an error.
 * "force" (on: qemu-img amend --force) lets LUKS keyslot changes overwrite
 * an active keyslot and erase the last active ones.
 * Returns 0 or -errno.
 */
int vdisk_amend(vdisk_dev *dev, const vdisk_options *opts);

/*
 * vdisk_vmstate_pread, vdisk_vmstate_pwrite: read or write COUNT bytes at
 * POS of the image's VM state area: where QEMU's savevm keeps a virtual
 * machine's state, apart from the disk (qemu-io's read -b / write -b).
 * qcow2 keeps it past the disk's last L1 entry, in clusters of its own,
 * and a write grows the L1 table to reach it; unwritten parts read as
 * zeroes.  Not for guests: no queue, device export or server reaches this
 * area, and the disk itself is never touched.  POS and COUNT must be
 * multiples of the device's alignment (vdisk_info's), COUNT at most
 * VDISK_AIO_LEN_MAX (vdisk/queue.h).  Returns 0, -ENOTSUP (the format has
 * no VM state area, or a qcow2 image with an external data file), -EROFS,
 * -EFBIG (past the L1 table's limit), -EINVAL, or -errno.  Blocks; the
 * preparation runs in a quiesce section (see above).
 */
int vdisk_vmstate_pread(vdisk_dev *dev, void *buf, size_t count, uint64_t pos);
int vdisk_vmstate_pwrite(vdisk_dev *dev, const void *buf, size_t count, uint64_t pos);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_IMAGE_H */
