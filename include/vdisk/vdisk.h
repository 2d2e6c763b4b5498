/* SPDX-License-Identifier: MIT */
/*
 * vdisk/vdisk.h: the whole public interface of libvdisk.
 *
 * libvdisk opens disk images and host block devices as block devices that
 * a program reads, writes, flushes, discards and queries, synchronously or
 * through asynchronous queues driven by io_uring (or by worker threads
 * where io_uring is not available).  Every public symbol starts
 * with vdisk_ (types) or VDISK_ (macros); handles are opaque.
 *
 *   vdisk/error.h    per-thread error messages
 *   vdisk/options.h  key=value options for open and create
 *   vdisk/device.h   devices: open, create, synchronous I/O, block status
 *   vdisk/queue.h    asynchronous queues
 *   vdisk/info.h     image information (qemu-img info), backing chains
 *   vdisk/check.h    consistency check and repair (qemu-img check)
 *   vdisk/snapshot.h internal snapshots (qemu-img snapshot)
 *   vdisk/image.h    resize, empty, rebase, amend whole images
 *   vdisk/measure.h  the size a new image needs (qemu-img measure)
 *   vdisk/part.h     MBR and GPT partition tables, partitions as devices
 *   vdisk/iso9660.h  ISO 9660 file systems and the emulated CD-ROM drive
 *   vdisk/virtio.h   virtio-blk and virtio-scsi device models for VMMs
 *   vdisk/vhost_user.h  a vhost-user back end serving a device model
 *   vdisk/monitor.h  the monitor's line protocol (change a served CD's medium)
 */
#ifndef VDISK_VDISK_H
#define VDISK_VDISK_H

#include <vdisk/error.h>
#include <vdisk/options.h>
#include <vdisk/device.h>
#include <vdisk/queue.h>
#include <vdisk/info.h>
#include <vdisk/check.h>
#include <vdisk/snapshot.h>
#include <vdisk/image.h>
#include <vdisk/measure.h>
#include <vdisk/part.h>
#include <vdisk/iso9660.h>
#include <vdisk/virtio.h>
#include <vdisk/vhost_user.h>
#include <vdisk/monitor.h>
#include <vdisk/nbd.h>
#include <vdisk/bitmap.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VDISK_VERSION_MAJOR 0
#define VDISK_VERSION_MINOR 1
#define VDISK_VERSION_PATCH 0

/* vdisk_version: the library's version, "MAJOR.MINOR.PATCH". */
const char *vdisk_version(void);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_VDISK_H */
