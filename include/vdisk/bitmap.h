/* SPDX-License-Identifier: MIT */
/*
 * vdisk/bitmap.h: persistent dirty bitmaps (qcow2 v3), as qemu-img bitmap
 * and QEMU's block-dirty-bitmap-* commands keep them.
 *
 * A bitmap has one bit per GRANULARITY bytes of the virtual disk.  An
 * enabled bitmap's bits are set by every write, write zeroes and discard
 * made through any vdisk device of the image (vdisk_pwrite, the queues,
 * vdisk io, serve, nbd, vdisk-vmm), so it tells "what changed since the
 * bitmap was added or cleared": what an incremental backup copies.
 *
 * The list of bitmaps, their granularity and flags is vdisk_get_info's
 * "bitmaps" (vdisk/info.h).  VDISK_BITMAP_IN_USE there marks a bitmap
 * that was not stored back cleanly (a crash, or another program has it
 * open): such a bitmap is inconsistent and can only be removed.  While a
 * device has the image open read-write its enabled bitmaps are flagged in
 * use on disk too, and stored back when it is closed.
 *
 * Consistency: every change below is atomic on disk (new bitmap tables and
 * directory written and flushed, then one header write switches to them),
 * so after a crash the image has the bitmaps before the call or after it.
 *
 * Memory: an image's loaded bitmaps take at most 256 MiB (a 64 TiB disk at
 * 64 KiB granularity takes 128 MiB); past that the open or the call fails
 * with -ENOMEM and a message.  Enabled bitmaps are loaded when the image
 * is opened read-write; others when a call needs their bits.
 *
 * Thread-safety: vdisk_bitmap_add, _remove, _clear, _enable, _disable,
 * _merge and _checkpoint run inside a quiesce section of their own (see
 * vdisk_dev_quiesce in vdisk/queue.h): each waits for the requests in
 * flight and holds back new ones until it returns, so it may be called
 * while other threads keep their queues going; what was written before
 * the call is in the bitmaps it changes, what is written after is not.
 * vdisk_bitmap_status may run concurrently with I/O.  All of them block.
 * Strings passed in are copied; nothing returned needs freeing.
 *
 * Errors: -ENOTSUP for formats without bitmaps (and qcow2 v2 images),
 * -EROFS on a read-only device (all but _status), -ENOENT for a bitmap
 * that does not exist, -EEXIST for a name that does, -EBUSY for an
 * inconsistent bitmap, -EINVAL for bad arguments, -ENOMEM, or the I/O
 * error; vdisk_get_error() has the message (qemu-img's words).
 */
#ifndef VDISK_BITMAP_H
#define VDISK_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/* vdisk_bitmap_add flags. */
#define VDISK_BITMAP_ADD_DISABLED (1u << 0) /* added disabled (tracks nothing) */

/*
 * vdisk_bitmap_add: adds the bitmap NAME (1 to 1023 bytes), all clean,
 * enabled unless FLAGS has VDISK_BITMAP_ADD_DISABLED.  GRANULARITY is a
 * power of two from 512 to 2 GiB, or 0 for qemu-img's default (the cluster
 * size, within 4 KiB and 64 KiB).
 */
int vdisk_bitmap_add(vdisk_dev *dev, const char *name, uint64_t granularity, unsigned flags);

/* vdisk_bitmap_remove: removes the bitmap NAME (inconsistent ones too). */
int vdisk_bitmap_remove(vdisk_dev *dev, const char *name);

/* vdisk_bitmap_clear: makes every bit of NAME clean. */
int vdisk_bitmap_clear(vdisk_dev *dev, const char *name);

/* vdisk_bitmap_enable, _disable: NAME tracks writes from now on, or no
 * more (its bits are kept). */
int vdisk_bitmap_enable(vdisk_dev *dev, const char *name);
int vdisk_bitmap_disable(vdisk_dev *dev, const char *name);

/*
 * vdisk_bitmap_merge: sets in NAME every bit that SRC_NAME has set.
 * SRC_DEV is the device that has SRC_NAME: DEV itself, or another image
 * (read-only is fine) of the same virtual size; granularities may differ.
 */
int vdisk_bitmap_merge(vdisk_dev *dev, const char *name, vdisk_dev *src_dev,
                       const char *src_name);

/*
 * vdisk_bitmap_checkpoint: the point in time of an incremental backup.
 * Adds the bitmap NAME, enabled (GRANULARITY as vdisk_bitmap_add), and,
 * when PREVIOUS is not NULL, disables the bitmap PREVIOUS, in one step:
 * every write lands in exactly one of the two.  PREVIOUS then holds what
 * changed since it was added, for the backup to read with
 * vdisk_bitmap_status; remove it when the backup is done.
 */
int vdisk_bitmap_checkpoint(vdisk_dev *dev, const char *name, const char *previous,
                            uint64_t granularity);

/*
 * vdisk_bitmap_status: from byte OFFSET of the virtual disk (below its
 * size) for up to LENGTH bytes (> 0): *PLEN bytes (> 0, whole granules
 * but at the disk's end) that are all dirty (*DIRTY true) or all clean in
 * the bitmap NAME.  Walk the disk by calling it again at OFFSET + *PLEN.
 */
int vdisk_bitmap_status(vdisk_dev *dev, const char *name, uint64_t offset, uint64_t length,
                        uint64_t *plen, bool *dirty);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_BITMAP_H */
