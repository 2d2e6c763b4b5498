/* SPDX-License-Identifier: MIT */
/*
 * vdisk/snapshot.h: internal snapshots (qcow2), as qemu-img snapshot.
 *
 * A snapshot keeps the disk as it was when it was taken, inside the image.
 * Taking one is cheap (the tables are copied and the data clusters they
 * reach become shared); writes after it copy the clusters they change.
 * Taking, applying and deleting a snapshot are atomic: the changed tables
 * and refcount blocks are written to new clusters and one header write
 * switches to them, so after a crash the image is the one before or the
 * one after, and qemu-img check finds it clean.
 * Snapshots may be taken, applied and deleted while the image is open and
 * in use (a hypervisor's live disk snapshot).
 *
 * Thread-safety: vdisk_snapshot_create, _apply and _delete run inside a
 * quiesce section of their own (vdisk_dev_quiesce in vdisk/queue.h): each
 * waits for the requests in flight, holds back those other threads start
 * until it returns, and so may be called while other threads keep their
 * queues going.  They block.  vdisk_snapshot_count and _get read the table
 * in memory; do not call them while another thread changes it.
 */
#ifndef VDISK_SNAPSHOT_H
#define VDISK_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/* See "Structures that grow" in vdisk/device.h for struct_size. */
struct vdisk_snapshot {
    size_t struct_size;       /* set by the caller to sizeof(struct vdisk_snapshot) */
    const char *id;           /* "1", "2", ... */
    const char *name;         /* the tag */
    uint64_t vm_state_size;   /* bytes of VM state (0 for disk-only snapshots) */
    uint32_t date_sec;        /* when it was taken (seconds since the Epoch) */
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;   /* guest run time when it was taken */
    uint64_t disk_size;       /* the virtual disk size then */
    uint64_t icount;          /* instruction count, when has_icount */
    bool has_icount;
};

/* The first version of struct vdisk_snapshot ended with has_icount. */
#define VDISK_SNAPSHOT_SIZE_V1 VDISK_STRUCT_END(struct vdisk_snapshot, has_icount)

/* vdisk_snapshot_count: the number of snapshots (0 for formats without). */
int vdisk_snapshot_count(vdisk_dev *dev);

/*
 * vdisk_snapshot_get: snapshot number INDEX (0 .. count-1, in the order of
 * the image's table) in *SN.  The strings belong to the device and stay
 * valid until the snapshot table changes.  *SN is filled up to its
 * struct_size, which is set to the bytes filled.  Returns 0, -ENOENT for
 * an index out of range, -ENOTSUP for formats without snapshots, -EINVAL
 * when sn->struct_size is below VDISK_SNAPSHOT_SIZE_V1 (nothing written).
 */
int vdisk_snapshot_get(vdisk_dev *dev, unsigned index, struct vdisk_snapshot *sn);

/*
 * vdisk_snapshot_create: takes a disk-only snapshot named NAME.  Returns 0,
 * -EEXIST when a snapshot has that name, -EROFS on a read-only device,
 * -ENOTSUP for formats without snapshots, or another -errno.
 */
int vdisk_snapshot_create(vdisk_dev *dev, const char *name);

/*
 * vdisk_snapshot_apply: makes the disk what it was when the snapshot NAME
 * (or with the id NAME) was taken; what was written since is lost.
 * Returns 0, -ENOENT when there is no such snapshot, or another -errno.
 */
int vdisk_snapshot_apply(vdisk_dev *dev, const char *name);

/*
 * vdisk_snapshot_delete: deletes the snapshot NAME (or with the id NAME)
 * and frees the clusters only it used, VM state included.  Returns 0,
 * -ENOENT when there is no such snapshot, or another -errno.
 */
int vdisk_snapshot_delete(vdisk_dev *dev, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_SNAPSHOT_H */
