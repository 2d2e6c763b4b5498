/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/virtio_internal.h: what the virtio device object (device.c),
 * guest memory (mem.c), the split virtqueue (virtqueue.c) and the models
 * (blk.c, scsi.c) share.
 *
 * A request's life: virtqueue.c pops a head from the available ring, walks
 * its descriptor chain (direct or indirect) and checks every buffer against
 * guest memory, giving the model a vq_req with the driver-readable buffers
 * (out) and the device-writable ones (in) as host iovecs.  The model starts
 * I/O on the queue's vdisk_queue or answers at once; either way it ends
 * with vq_complete(), which puts the head on the used ring.
 */
#ifndef VDISK_VIRTIO_INTERNAL_H
#define VDISK_VIRTIO_INTERNAL_H

#include <stdint.h>
#include <sys/uio.h>

#include <vdisk/queue.h>
#include <vdisk/virtio.h>

#include "endian.h"
#include "internal.h"
#include "virtio/ring.h"

struct vdisk_guest_mem {
    unsigned n;
    struct vdisk_guest_region r[];
};

/* The split ring's layout (virtio 1.x, 2.7); its flags are in ring.h. */
struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* The most buffers one request may have, direct and indirect together. */
#define VQ_SEGS_MAX 1024

struct vq {
    unsigned size;                /* 0: not set up */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;      /* host views of the rings */
    volatile uint16_t *avail;     /* flags, idx, ring[size], used_event */
    volatile uint16_t *used;      /* flags, idx, {u32 id, u32 len}[size], avail_event */
    int enabled;
    int broken;
    uint16_t last_avail;          /* next available entry to take */
    uint16_t used_idx;            /* next used entry to write */
    uint16_t notified_used;       /* used_idx at the last notify decision */
    int pending;                  /* used entries added since then */
    unsigned in_flight;           /* taken and not yet used (at most size) */
    int more;                     /* chains left on the ring after a pass took its
                                     budget: taken by the next vdisk_virtio_poll() */
    vdisk_queue *aq;              /* the model's asynchronous queue, or NULL */
};

struct vq_req {
    struct vdisk_virtio *v;
    unsigned q;
    uint16_t head;
    unsigned nout, nin;
    struct iovec *out, *in;       /* into iov[] */
    size_t out_len, in_len;       /* total bytes */
    uint32_t used_len;            /* bytes written to IN buffers */
    struct vq_req *next_free;
    /* the model's per-request state */
    uint8_t *status;              /* virtio-blk: the status byte */
    uint64_t scratch[4];
    struct iovec iov[];
};

struct virtio_model {
    const char *name;
    /* OFF and LEN are inside the configuration space. */
    int (*config_read)(struct vdisk_virtio *v, uint32_t off, void *buf, uint32_t len);
    int (*config_write)(struct vdisk_virtio *v, uint32_t off, const void *buf, uint32_t len);
    /* Serves one request; ends with vq_complete() now or later. */
    void (*request)(struct vdisk_virtio *v, struct vq_req *r);
    /* Answers a request one of whose buffers is outside guest memory (an
     * empty iovec stands in its place): an error status where the model
     * can write one, then vq_complete().  NULL: completed with nothing. */
    void (*fail)(struct vdisk_virtio *v, struct vq_req *r);
    /* Queue Q was stopped (disabled, or set up again): the model gives up
     * the requests it holds on it without writing the rings (their count
     * is bounded by the queue size only while the queue lives).  NULL: the
     * model holds none. */
    void (*queue_stop)(struct vdisk_virtio *v, unsigned q);
    void (*reset)(struct vdisk_virtio *v);
    void (*free)(struct vdisk_virtio *v);
};

/* Kinds of guest mistakes, each logged once. */
enum vlog_kind {
    VLOG_RING, VLOG_DESC, VLOG_INDIRECT, VLOG_CHAIN, VLOG_REQUEST, VLOG_RANGE,
    VLOG_UNSUPPORTED, VLOG_IO, VLOG_CONFIG, VLOG_INFLIGHT, VLOG_KINDS
};

struct vdisk_virtio {
    const struct virtio_model *model;
    void *priv;                   /* the model's state */
    vdisk_dev *dev;
    uint32_t device_id;
    uint64_t offered, acked;
    unsigned nq, qmax;
    uint32_t config_size;         /* bytes of configuration space */
    struct vq *q;
    const vdisk_guest_mem *mem;
    struct vdisk_virtio_host host;
    int epfd;
    int more_fd;                  /* in epfd: a queue has chains left (vq->more) */
    int resetting;                /* completions are not written to the rings */
    int broken;
    uint32_t logged;              /* bit per vlog_kind already reported */
    struct vdisk_virtio_stats stats;
    void *chain;                  /* virtqueue.c's scratch for walking a chain */
};

/* device.c */
/* A device object with PRIV_SIZE zeroed bytes of model state in ->priv,
 * for queues of at most QSIZE entries (checked: a power of two up to
 * VDISK_VIRTIO_QUEUE_MAX).  Returns 0 or -errno with the error set. */
int virtio_alloc(struct vdisk_virtio **vp, size_t priv_size, unsigned qsize);
int virtio_init(struct vdisk_virtio *v, const struct virtio_model *model, vdisk_dev *dev,
                uint32_t device_id, uint64_t features, unsigned nq, unsigned qmax);
/* Gives queue Q an asynchronous queue on the device (request queues). */
int virtio_attach_aq(struct vdisk_virtio *v, unsigned q);
void vlog(struct vdisk_virtio *v, enum vlog_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int virtio_has(const struct vdisk_virtio *v, unsigned bit);

/* virtqueue.c */
int vq_map(struct vdisk_virtio *v, struct vq *q);
int vq_process(struct vdisk_virtio *v, unsigned qi);
void vq_complete(struct vq_req *r);
void vq_flush_notify(struct vdisk_virtio *v, unsigned qi);
void vq_reset(struct vq *q);

/* A pointer to the byte at SKIP of an iovec array (NULL past its end). */
uint8_t *iov_byte(const struct iovec *iov, unsigned n, size_t skip);

#endif /* VDISK_VIRTIO_INTERNAL_H */
