/* SPDX-License-Identifier: MIT */
/*
 * lib/driver.h: the interface between the core and the drivers.
 *
 * A driver is one layer of a device stack:
 *   - a protocol driver (raw) owns a file descriptor and hands requests to
 *     the queue's I/O engine;
 *   - a format driver (qcow2, ...) is opened over a protocol device, which it
 *     reads and writes through child requests and the dev_*() calls;
 *   - a filter (offset) maps requests onto another device.
 *
 * The core checks every request once, at the layer boundary, before the
 * driver sees it: the range lies inside the device, writes are refused on
 * read-only devices, and offsets and lengths are multiples of dev->align
 * (the core reads, modifies and writes whole blocks otherwise).  A driver
 * never reaches into another driver's state.
 */
#ifndef VDISK_DRIVER_H
#define VDISK_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>
#include <vdisk/options.h>
#include <vdisk/info.h>
#include <vdisk/check.h>
#include <vdisk/snapshot.h>
#include <vdisk/image.h>
#include <vdisk/measure.h>

struct vdisk_dev;
struct vdisk_req;
struct vdisk_open_params;
struct opt_set;

struct vdisk_driver {
    const char *name;

    /* True for drivers that own storage (files, memory): their failed
     * flushes are remembered (the fsync-gate rule). */
    bool protocol;

    /*
     * How sure the driver is that the first LEN bytes of a file (BUF) are
     * its format, 0 (not mine) to 100.  NULL for drivers never probed.
     */
    int (*probe)(const uint8_t *buf, size_t len);

    /*
     * Opens DEV.  For a protocol driver FILE is NULL and dev->filename names
     * the file.  For a format driver FILE is the protocol device below,
     * whose reference passes to the driver on success.  The driver fills in
     * dev->size, block_size, align, caps and priv, and takes the options it
     * understands from OPTS with opt_take().  Returns 0 or -errno (with a
     * message set).
     */
    int (*open)(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *opts);

    /*
     * Protocol drivers: takes the image locks for the permission bits PERM
     * and SHARED (PERM_* in internal.h) in place of those held so far, or
     * fails with -EAGAIN and a message when another process conflicts.
     * NULL: the protocol has nothing to lock.
     */
    int (*take_perms)(struct vdisk_dev *dev, unsigned perm, unsigned shared);

    /* Releases the driver's state (after the core flushed the device). */
    void (*close)(struct vdisk_dev *dev);

    /*
     * Starts REQ (already checked by the core).  The driver completes it,
     * now or later, with req_complete() or req_fail() from the queue's
     * thread, or queue_post() from another thread.
     */
    void (*submit)(struct vdisk_req *req);

    /* Compresses one whole cluster (*OUT_LEN 0: it does not shrink), and
     * stores N compressed clusters (the clusters at OFF, OFF + cluster
     * size, ...; PIECES[i] the i-th one's bytes); NULL: no compression. */
    int (*compress)(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off,
                    void *out, size_t out_size, size_t *out_len);
    int (*write_compressed)(struct vdisk_dev *dev, const struct iovec *pieces, size_t n,
                            uint64_t off);

    /* Describes the extent at OFF (see vdisk_block_status). */
    int (*block_status)(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                        struct vdisk_extent *ext);

    /* Sets the size of a file (raw only); NULL: not supported. */
    int (*truncate)(struct vdisk_dev *dev, uint64_t size);

    /* Makes the file at least SIZE bytes long with the new part allocated
     * (and reading as zeroes) without writing it, as fallocate does; never
     * by writing zeroes.  -ENOTSUP when the file system cannot, or NULL. */
    int (*preallocate)(struct vdisk_dev *dev, uint64_t size);

    /* Host bytes used, or -errno; NULL: ask the device below. */
    int64_t (*allocated_size)(struct vdisk_dev *dev);

    /* Fills the format's fields of *INFO (the core has set the common ones). */
    void (*get_info)(struct vdisk_dev *dev, struct vdisk_info *info);

    /* The backing device, or NULL. */
    struct vdisk_dev *(*backing)(struct vdisk_dev *dev);

    /* Checks (and repairs) the image's metadata; NULL: nothing to check. */
    int (*check)(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                 vdisk_check_report_fn report, void *opaque);

    /* Internal snapshots; NULL: the format has none.  OP: 0 create,
     * 1 apply, 2 delete. */
    int (*snapshot_count)(struct vdisk_dev *dev);
    int (*snapshot_get)(struct vdisk_dev *dev, unsigned index, struct vdisk_snapshot *sn);
    int (*snapshot_op)(struct vdisk_dev *dev, int op, const char *name);

    /* Whole-image operations (vdisk/image.h); NULL: not supported. */
    int (*resize)(struct vdisk_dev *dev, uint64_t size, unsigned flags);
    int (*make_empty)(struct vdisk_dev *dev);
    int (*set_backing)(struct vdisk_dev *dev, const char *name, const char *format);
    int (*amend)(struct vdisk_dev *dev, struct opt_set *opts);

    /* Creates an image; takes its options from OPTS with opt_take(). */
    int (*create)(const char *filename, uint64_t size, struct opt_set *opts);

    /*
     * Sizes an image that create would make (vdisk_measure): fills *RES
     * (the library's full structure, zeroed) for SIZE bytes (a multiple of
     * 512, at most INT64_MAX), an empty disk when SRC is NULL, else the
     * size of SRC (rounded up to 512) whose data measure_data() finds.
     * Takes its options from OPTS with opt_take() and checks them as
     * create does, before any I/O.  NULL: the format cannot be measured.
     */
    int (*measure)(uint64_t size, struct vdisk_dev *src, struct opt_set *opts,
                   struct vdisk_measure_result *res);
};

extern const struct vdisk_driver vdisk_driver_raw;
extern const struct vdisk_driver vdisk_driver_offset;
extern const struct vdisk_driver vdisk_driver_qcow2;

/* The format drivers, in probing order; NULL-terminated. */
extern const struct vdisk_driver *const vdisk_format_drivers[];

const struct vdisk_driver *driver_by_name(const char *name);

/*
 * For measure: the bytes of SRC that hold data, as qemu-img measure counts
 * them: each extent that reads stored data (not zeroes) through SRC's
 * backing chain, widened to whole blocks of UNIT bytes (the new image's
 * clusters), counted once, into *BYTES.  Returns 0 or -errno (a block
 * status error, with its message).  lib/measure.c.
 */
int measure_data(struct vdisk_dev *src, uint64_t unit, uint64_t *bytes);

/*
 * Options during an open or create: the caller's key=value pairs, each
 * marked when a layer takes it, so that one nobody took is reported.
 */
struct opt_set;
const char *opt_take(struct opt_set *s, const char *key);

#endif /* VDISK_DRIVER_H */
