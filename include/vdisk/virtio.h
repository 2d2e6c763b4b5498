/* SPDX-License-Identifier: MIT */
/*
 * vdisk/virtio.h: virtio device models over vdisk devices, for VMMs and
 * vhost-user backends.
 *
 * Two models are offered:
 *   - virtio-blk (device id 2) over any vdisk device: IN, OUT, FLUSH,
 *     GET_ID, DISCARD, WRITE_ZEROES, read-only devices, multiqueue;
 *   - virtio-scsi (device id 8) with one MMC CD-ROM logical unit (target 0,
 *     LUN 0) over a CD-ROM device from vdisk_open_cdrom(): the guest sees a
 *     CD drive (/dev/sr0 in Linux).
 *
 * The models know nothing about KVM, MMIO or sockets.  The host (a VMM's
 * virtio-mmio transport, a vhost-user server, a unit test) hands them:
 *   - guest memory, as regions (vdisk_guest_mem);
 *   - the negotiated features and each queue's size and ring addresses
 *     (guest physical addresses);
 *   - a call to vdisk_virtio_queue_notify() when the guest kicks a queue;
 *   - a call to vdisk_virtio_poll() when vdisk_virtio_get_fd() is readable.
 * and the model calls the host's notify() callback when the guest should be
 * interrupted for a queue (after event-index / NO_INTERRUPT suppression).
 *
 * Requests run on the device's asynchronous queue (one vdisk_queue per
 * virtqueue, io_uring where available), many in flight.  Every request is
 * validated before any I/O: descriptor addresses and lengths must lie inside
 * guest memory, be device-writable where the device writes, and sector
 * ranges are checked against the device size with overflow-safe arithmetic.
 * A bad request completes with VIRTIO_BLK_S_IOERR / UNSUPP or SCSI sense
 * data; it is never dropped.  Only a ring that cannot be used at all (a head
 * index out of range, an avail index that jumps by more than the queue
 * size, or a request made available while as many requests as the queue
 * size are in flight: a head published again before the device used it,
 * QEMU's "Virtqueue size exceeded") stops its queue: it is marked broken,
 * logged once, and vdisk_virtio_needs_reset() says so (the transport then
 * sets DEVICE_NEEDS_RESET).  The other queues go on serving.
 *
 * Memory: a queue never has more requests in flight than its size, on
 * every queue of both models (virtio-scsi's held event buffers included),
 * so what a guest or front end can make the model allocate is bounded by
 * the queue sizes, however it fills its rings.
 *
 * Thread-safety: a vdisk_virtio object is used by one thread at a time (its
 * event loop).  Different objects are independent.
 *
 * Ownership: the model holds a reference to the vdisk device it serves
 * (released by vdisk_virtio_free()).  Guest memory (vdisk_guest_mem) is the
 * host's: it must stay valid while the model uses it (until it is replaced
 * with vdisk_virtio_set_mem() or the model is reset or freed).
 */
#ifndef VDISK_VIRTIO_H
#define VDISK_VIRTIO_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Guest memory ---------------------------------------------------------- */

/*
 * One region of guest physical memory, mapped at HOST in this process.
 * Fixed layout, without struct_size: it is passed in arrays (see
 * "Structures that grow" in vdisk/device.h).
 */
struct vdisk_guest_region {
    uint64_t gpa;   /* guest physical address of the region's first byte */
    uint64_t size;  /* bytes (> 0) */
    void *host;     /* where those bytes are mapped here */
};

typedef struct vdisk_guest_mem vdisk_guest_mem;

/*
 * vdisk_guest_mem_new: a guest memory map of N regions (1..256), which must
 * not overlap and must not wrap around 2^64.  The array is copied; the
 * mappings are not (they must outlive the map).  Returns 0 or -EINVAL /
 * -ENOMEM.
 */
int vdisk_guest_mem_new(vdisk_guest_mem **out, const struct vdisk_guest_region *r, unsigned n);

/* vdisk_guest_mem_free: frees the map (not the mappings).  NULL is a no-op. */
void vdisk_guest_mem_free(vdisk_guest_mem *m);

/*
 * vdisk_guest_mem_translate: a host pointer to the LEN bytes at GPA when
 * all of them lie inside one region, else NULL (also for LEN 0 at an
 * address outside every region, and when GPA + LEN overflows).
 */
void *vdisk_guest_mem_translate(const vdisk_guest_mem *m, uint64_t gpa, uint64_t len);

/* ---- Feature bits and constants (virtio 1.x) ------------------------------- */

#define VDISK_VIRTIO_ID_BLOCK 2
#define VDISK_VIRTIO_ID_SCSI  8

#define VDISK_VIRTIO_F_RING_INDIRECT_DESC 28
#define VDISK_VIRTIO_F_RING_EVENT_IDX     29
#define VDISK_VIRTIO_F_VERSION_1          32

/* Largest queue the models accept (a power of two). */
#define VDISK_VIRTIO_QUEUE_MAX 1024

/* ---- Models ---------------------------------------------------------------- */

typedef struct vdisk_virtio vdisk_virtio;

/*
 * Parameters of vdisk_virtio_blk_new(); zero means the default.  The
 * caller sets struct_size to sizeof(struct vdisk_virtio_blk_params) (see
 * "Structures that grow" in vdisk/device.h: the fields an older caller's
 * version lacks take their defaults).
 */
struct vdisk_virtio_blk_params {
    size_t struct_size;
    unsigned num_queues;   /* request queues (1..64; default 1) */
    unsigned queue_size;   /* the largest queue size offered (default 256) */
    const char *serial;    /* GET_ID's answer, at most 20 bytes (default "vdisk") */
    unsigned seg_max;      /* data segments per request (default 254) */
    int read_only;         /* 1: offer VIRTIO_BLK_F_RO even on a writable device */
};
#define VDISK_VIRTIO_BLK_PARAMS_SIZE_V1 \
    VDISK_STRUCT_END(struct vdisk_virtio_blk_params, read_only)

/*
 * vdisk_virtio_blk_new: a virtio-blk device over DEV (which it references).
 * Read-only devices get VIRTIO_BLK_F_RO; blk_size is the device's block
 * size (2048 for a CD-ROM).  PARAMS may be NULL (every default).  Returns
 * 0 or -errno (-EINVAL for a bad parameter, or params->struct_size below
 * VDISK_VIRTIO_BLK_PARAMS_SIZE_V1).
 */
int vdisk_virtio_blk_new(vdisk_virtio **out, vdisk_dev *dev,
                         const struct vdisk_virtio_blk_params *params);

/*
 * Parameters of vdisk_virtio_scsi_cdrom_new(); zero means the default.
 * The caller sets struct_size to sizeof(struct vdisk_virtio_scsi_params),
 * as for vdisk_virtio_blk_params.
 */
struct vdisk_virtio_scsi_params {
    size_t struct_size;
    unsigned num_queues;   /* request queues (1..16; default 1) */
    unsigned queue_size;   /* the largest queue size offered (default 256) */
    const char *vendor;    /* INQUIRY vendor, 8 chars (default "VDISK") */
    const char *product;   /* INQUIRY product, 16 chars (default "CD-ROM") */
};
#define VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1 \
    VDISK_STRUCT_END(struct vdisk_virtio_scsi_params, product)

/*
 * vdisk_virtio_scsi_cdrom_new: a virtio-scsi controller with one MMC
 * CD-ROM at target 0 LUN 0 over CDROM, a device from vdisk_open_cdrom()
 * (which it references).  PARAMS may be NULL (every default).  Returns 0
 * or -errno (-EINVAL when CDROM is not a CD-ROM device, for a bad
 * parameter, or when params->struct_size is below
 * VDISK_VIRTIO_SCSI_PARAMS_SIZE_V1).
 */
int vdisk_virtio_scsi_cdrom_new(vdisk_virtio **out, vdisk_dev *cdrom,
                                const struct vdisk_virtio_scsi_params *params);

/*
 * vdisk_virtio_scsi_change_medium: the host changes the CD: ISO is loaded
 * (or the drive left empty when NULL) and the tray closed.  The guest sees
 * a media-change unit attention and a NewMedia event when a medium is
 * loaded, a MediaRemoval event when the drive is left empty.  Requests in
 * flight finish on the medium they started on.  Returns 0, -EINVAL (V is
 * not the virtio-scsi CD-ROM) or the open error (the drive is then empty).
 */
int vdisk_virtio_scsi_change_medium(vdisk_virtio *v, const char *iso);

/* vdisk_virtio_free: waits for requests in flight, frees.  NULL is a no-op. */
void vdisk_virtio_free(vdisk_virtio *v);

/* ---- The host's side ------------------------------------------------------- */

/*
 * The host's callbacks.  The caller sets struct_size to sizeof(struct
 * vdisk_virtio_host) (see "Structures that grow" in vdisk/device.h:
 * callbacks an older caller's version lacks are NULL, not called).
 */
struct vdisk_virtio_host {
    size_t struct_size;
    /* The guest should be interrupted for queue Q (used buffers added). */
    void (*notify)(void *opaque, unsigned q);
    /*
     * A guest mistake (bad descriptor, request beyond the device, ...),
     * reported once per kind per device; may be NULL.
     */
    void (*log)(void *opaque, const char *message);
    void *opaque;
};
#define VDISK_VIRTIO_HOST_SIZE_V1 VDISK_STRUCT_END(struct vdisk_virtio_host, opaque)

/*
 * vdisk_virtio_set_host: sets the callbacks (copied; NULL removes them).
 * Returns 0, or -EINVAL when host->struct_size is below
 * VDISK_VIRTIO_HOST_SIZE_V1 (the callbacks set before are kept).
 */
int vdisk_virtio_set_host(vdisk_virtio *v, const struct vdisk_virtio_host *host);

uint32_t vdisk_virtio_device_id(const vdisk_virtio *v);

/*
 * vdisk_virtio_features: the feature bits the device offers (always
 * VERSION_1, RING_INDIRECT_DESC and RING_EVENT_IDX, plus the model's).
 */
uint64_t vdisk_virtio_features(const vdisk_virtio *v);

/*
 * vdisk_virtio_set_features: the features the driver accepted.  Returns 0,
 * or -EINVAL when they are not a subset of the offered ones or lack
 * VERSION_1 (legacy devices are not offered).
 */
int vdisk_virtio_set_features(vdisk_virtio *v, uint64_t features);

/* The number of virtqueues (virtio-scsi: control, event, then requests). */
unsigned vdisk_virtio_num_queues(const vdisk_virtio *v);

/* The largest size for each queue. */
unsigned vdisk_virtio_queue_max_size(const vdisk_virtio *v);

/* The size of the device's configuration space in bytes. */
uint32_t vdisk_virtio_config_size(const vdisk_virtio *v);

/*
 * vdisk_virtio_config_read / _write: LEN bytes (1, 2, 4 or 8, or any for
 * reads) at OFFSET of the configuration space, little-endian as the guest
 * sees it.  A read that starts inside the space and runs past its end
 * reads zeroes for the bytes past it; one that starts at or past the end
 * fails with -EINVAL (BUF zeroed).  Writes to read-only fields are
 * ignored.  virtio-scsi's writable cdb_size and sense_size apply to the
 * commands taken after the write: a command in flight keeps the sizes its
 * buffers were checked against, to its used length.  Return 0 or -EINVAL
 * (out of range).
 */
int vdisk_virtio_config_read(vdisk_virtio *v, uint32_t offset, void *buf, uint32_t len);
int vdisk_virtio_config_write(vdisk_virtio *v, uint32_t offset, const void *buf, uint32_t len);

/*
 * vdisk_virtio_set_mem: the guest memory the rings and buffers live in
 * (borrowed; NULL detaches).  Requests in flight are completed first.
 * Returns 0.
 */
int vdisk_virtio_set_mem(vdisk_virtio *v, const vdisk_guest_mem *mem);

/*
 * vdisk_virtio_queue_setup: queue Q's size (a power of two, 1..max size)
 * and the guest physical addresses of its descriptor table, available
 * ring and used ring.  The rings must lie in guest memory and be aligned
 * (16, 2 and 4 bytes).  The queue starts disabled, with last_avail 0.
 * Returns 0, or -EINVAL with the reason in vdisk_get_error().
 */
int vdisk_virtio_queue_setup(vdisk_virtio *v, unsigned q, unsigned size,
                             uint64_t desc, uint64_t avail, uint64_t used);

/*
 * vdisk_virtio_queue_enable: starts (1) or stops (0) serving queue Q.
 * Stopping completes the requests in flight first; the buffers a model
 * holds without completing them (virtio-scsi's event queue) are given up
 * without writing the used ring, so that stopping and starting a queue
 * again and again holds no more than one queue's worth.  Returns 0, or
 * -EINVAL for a queue that does not exist or, to start it, is not set up
 * or has its rings outside guest memory.
 */
int vdisk_virtio_queue_enable(vdisk_virtio *v, unsigned q, int enable);

/*
 * vdisk_virtio_queue_set_base / _get_base: the next available-ring index
 * the device will read (vhost-user SET/GET_VRING_BASE).  The used index is
 * taken from the used ring when the queue is enabled.
 */
int vdisk_virtio_queue_set_base(vdisk_virtio *v, unsigned q, uint16_t last_avail);
int vdisk_virtio_queue_get_base(vdisk_virtio *v, unsigned q, uint16_t *last_avail);

/*
 * vdisk_virtio_queue_notify: the guest kicked queue Q: start the requests
 * in its available ring, at most the queue's size of them in one call (a
 * driver may refill the ring as fast as the device takes from it); what is
 * left makes vdisk_virtio_get_fd() readable, and vdisk_virtio_poll() takes
 * the next part.  Returns 0 or -errno (the queue is broken or not enabled).
 */
int vdisk_virtio_queue_notify(vdisk_virtio *v, unsigned q);

/*
 * vdisk_virtio_get_fd: a file descriptor that becomes readable when
 * requests have completed, or when a queue has requests left that the last
 * call did not take (see vdisk_virtio_queue_notify); then call
 * vdisk_virtio_poll().  The model owns it.
 */
int vdisk_virtio_get_fd(vdisk_virtio *v);

/*
 * vdisk_virtio_poll: completes finished requests: writes their status and
 * used-ring entries, starts the next part of a queue's ring left by the
 * last call (as vdisk_virtio_queue_notify does) and calls notify() for the
 * queues that need it.  Does not wait.  Returns the number of requests
 * completed, or -errno.
 */
int vdisk_virtio_poll(vdisk_virtio *v);

/*
 * vdisk_virtio_drain: waits for and completes every request in flight.
 * Returns the number completed or -errno.
 */
int vdisk_virtio_drain(vdisk_virtio *v);

/*
 * vdisk_virtio_reset: the driver reset the device: requests in flight are
 * completed (their results are not written to the rings, which the driver
 * has given up), every queue is forgotten, the negotiated features are
 * cleared.  Guest memory stays set.
 */
void vdisk_virtio_reset(vdisk_virtio *v);

/* vdisk_virtio_needs_reset: 1 when a queue broke (see above), else 0. */
int vdisk_virtio_needs_reset(const vdisk_virtio *v);

/*
 * Counters, for benchmarks and tests.  The caller sets struct_size to
 * sizeof(struct vdisk_virtio_stats).
 */
struct vdisk_virtio_stats {
    size_t struct_size;
    uint64_t requests;      /* requests completed */
    uint64_t errors;        /* ... with an error status */
    uint64_t notifies;      /* notify() calls */
    uint64_t bytes_read;
    uint64_t bytes_written;
};
#define VDISK_VIRTIO_STATS_SIZE_V1 VDISK_STRUCT_END(struct vdisk_virtio_stats, bytes_written)

/*
 * vdisk_virtio_get_stats: the counters in *s, filled up to s->struct_size
 * (set to the bytes filled).  Returns 0, or -EINVAL when s->struct_size is
 * below VDISK_VIRTIO_STATS_SIZE_V1.
 */
int vdisk_virtio_get_stats(const vdisk_virtio *v, struct vdisk_virtio_stats *s);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_VIRTIO_H */
