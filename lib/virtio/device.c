/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/device.c: the virtio device object shared by the models:
 * feature negotiation, configuration space, queue set-up, the completion
 * fd, polling, reset.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "abi.h"
#include "error_internal.h"
#include "internal.h"
#include "virtio_internal.h"

/* The public feature bits (vdisk/virtio.h) and ring.h's, the guest's. */
_Static_assert(VDISK_VIRTIO_F_RING_INDIRECT_DESC == VIRTIO_F_RING_INDIRECT_DESC, "ring.h");
_Static_assert(VDISK_VIRTIO_F_RING_EVENT_IDX == VIRTIO_F_RING_EVENT_IDX, "ring.h");
_Static_assert(VDISK_VIRTIO_F_VERSION_1 == VIRTIO_F_VERSION_1, "ring.h");

#define BASE_FEATURES (1ull << VDISK_VIRTIO_F_VERSION_1 | \
                       1ull << VDISK_VIRTIO_F_RING_INDIRECT_DESC | \
                       1ull << VDISK_VIRTIO_F_RING_EVENT_IDX)

int virtio_alloc(struct vdisk_virtio **vp, size_t priv_size, unsigned qsize)
{
    *vp = NULL;
    if (qsize > VDISK_VIRTIO_QUEUE_MAX || (qsize & (qsize - 1)))
        return err_set(-EINVAL, "queue size %u is not a power of two up to %d", qsize,
                       VDISK_VIRTIO_QUEUE_MAX);
    struct vdisk_virtio *v = calloc(1, sizeof *v);
    void *priv = calloc(1, priv_size);
    if (!v || !priv) {
        free(v);
        free(priv);
        return err_set(-ENOMEM, "out of memory");
    }
    v->epfd = -1;
    v->more_fd = -1;
    v->priv = priv;
    *vp = v;
    return 0;
}

int virtio_init(struct vdisk_virtio *v, const struct virtio_model *model, vdisk_dev *dev,
                uint32_t device_id, uint64_t features, unsigned nq, unsigned qmax)
{
    v->model = model;
    v->device_id = device_id;
    v->offered = features | BASE_FEATURES;
    v->nq = nq;
    v->qmax = qmax;
    v->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (v->epfd < 0)
        return err_set(-errno, "epoll_create1: %s", strerror(errno));
    v->more_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->more_fd < 0)
        return err_set(-errno, "eventfd: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->more_fd, &ev) < 0)
        return err_set(-errno, "epoll_ctl: %s", strerror(errno));
    v->q = calloc(nq, sizeof v->q[0]);
    if (!v->q)
        return err_set(-ENOMEM, "out of memory");
    dev_ref(dev);
    v->dev = dev;
    return 0;
}

int virtio_attach_aq(struct vdisk_virtio *v, unsigned qi)
{
    struct vq *q = &v->q[qi];
    unsigned depth = v->qmax < 64 ? 64 : v->qmax;
    int r = vdisk_queue_new(&q->aq, v->dev, depth);
    if (r < 0)
        return r;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = qi};
    if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, vdisk_queue_get_fd(q->aq), &ev) < 0)
        return err_set(-errno, "epoll_ctl: %s", strerror(errno));
    return 0;
}

int virtio_has(const struct vdisk_virtio *v, unsigned bit)
{
    return (v->acked >> bit) & 1;
}

void vlog(struct vdisk_virtio *v, enum vlog_kind kind, const char *fmt, ...)
{
    if (v->logged & (1u << kind))
        return;
    v->logged |= 1u << kind;
    if (!v->host.log)
        return;
    char msg[512];
    int k = snprintf(msg, sizeof msg, "%s: ", v->model->name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    v->host.log(v->host.opaque, msg);
}

static int complete(vdisk_virtio *v, bool wait);

/* Completes everything in flight on every queue. */
static void drain_all(struct vdisk_virtio *v)
{
    if (v->q)
        complete(v, true);
}

VDISK_EXPORT void vdisk_virtio_free(vdisk_virtio *v)
{
    if (!v)
        return;
    v->resetting = 1;
    drain_all(v);
    if (v->model && v->model->free)
        v->model->free(v);
    for (unsigned i = 0; v->q && i < v->nq; i++)
        vdisk_queue_free(v->q[i].aq);
    free(v->q);
    free(v->chain);
    if (v->epfd >= 0)
        close(v->epfd);
    if (v->more_fd >= 0)
        close(v->more_fd);
    vdisk_close(v->dev);
    free(v);
}

VDISK_EXPORT int vdisk_virtio_set_host(vdisk_virtio *v, const struct vdisk_virtio_host *host)
{
    err_enter(__func__);
    struct vdisk_virtio_host in = {.struct_size = sizeof in};
    if (host) {
        /* Callbacks the caller's version lacks stay NULL. */
        int r = ABI_IN(vdisk_virtio_host, &in, host, VDISK_VIRTIO_HOST_SIZE_V1);
        if (r < 0)
            return r;
    }
    v->host = in;
    return 0;
}

VDISK_EXPORT uint32_t vdisk_virtio_device_id(const vdisk_virtio *v)
{
    return v->device_id;
}

VDISK_EXPORT uint64_t vdisk_virtio_features(const vdisk_virtio *v)
{
    return v->offered;
}

VDISK_EXPORT int vdisk_virtio_set_features(vdisk_virtio *v, uint64_t features)
{
    err_enter(__func__);
    if (features & ~v->offered)
        return err_set(-EINVAL, "the driver accepted features 0x%llx that were not offered "
                       "(offered 0x%llx)", (unsigned long long)(features & ~v->offered),
                       (unsigned long long)v->offered);
    if (!(features >> VDISK_VIRTIO_F_VERSION_1 & 1))
        return err_set(-EINVAL, "the driver did not accept VIRTIO_F_VERSION_1 (legacy drivers "
                       "are not supported)");
    v->acked = features;
    return 0;
}

VDISK_EXPORT unsigned vdisk_virtio_num_queues(const vdisk_virtio *v)
{
    return v->nq;
}

VDISK_EXPORT unsigned vdisk_virtio_queue_max_size(const vdisk_virtio *v)
{
    return v->qmax;
}

VDISK_EXPORT uint32_t vdisk_virtio_config_size(const vdisk_virtio *v)
{
    return v->config_size;
}

VDISK_EXPORT int vdisk_virtio_config_read(vdisk_virtio *v, uint32_t offset, void *buf, uint32_t len)
{
    err_enter(__func__);
    uint32_t size = vdisk_virtio_config_size(v);
    if (offset > size || len > size - offset) {
        memset(buf, 0, len);
        if (offset >= size)
            return err_set(-EINVAL, "configuration read of %u bytes at offset %u is beyond "
                           "the %u-byte space", len, offset, size);
        uint32_t k = size - offset;
        v->model->config_read(v, offset, buf, k);
        return 0;
    }
    return v->model->config_read(v, offset, buf, len);
}

VDISK_EXPORT int vdisk_virtio_config_write(vdisk_virtio *v, uint32_t offset, const void *buf, uint32_t len)
{
    err_enter(__func__);
    uint32_t size = vdisk_virtio_config_size(v);
    if (offset > size || len > size - offset)
        return err_set(-EINVAL, "configuration write of %u bytes at offset %u is beyond "
                       "the %u-byte space", len, offset, size);
    if (!v->model->config_write)
        return 0;
    return v->model->config_write(v, offset, buf, len);
}

VDISK_EXPORT int vdisk_virtio_set_mem(vdisk_virtio *v, const vdisk_guest_mem *mem)
{
    err_enter(__func__);
    drain_all(v);
    v->mem = mem;
    for (unsigned i = 0; i < v->nq; i++) {
        struct vq *q = &v->q[i];
        if (!q->size)
            continue;
        if (!mem || vq_map(v, q) < 0) {
            q->desc = NULL;
            q->avail = q->used = NULL;
            if (mem && q->enabled)
                vlog(v, VLOG_RING, "queue %u: its rings are outside the new guest memory", i);
        }
    }
    return 0;
}

static int check_queue(const vdisk_virtio *v, unsigned qi)
{
    if (qi >= v->nq)
        return err_set(-EINVAL, "queue %u does not exist (the device has %u)", qi, v->nq);
    return 0;
}

VDISK_EXPORT int vdisk_virtio_queue_setup(vdisk_virtio *v, unsigned qi, unsigned size, uint64_t desc,
                             uint64_t avail, uint64_t used)
{
    err_enter(__func__);
    int r = check_queue(v, qi);
    if (r < 0)
        return r;
    if (size == 0 || size > v->qmax || (size & (size - 1)))
        return err_set(-EINVAL, "queue %u: size %u is not a power of two from 1 to %u", qi,
                       size, v->qmax);
    if (desc % 16 || avail % 2 || used % 4)
        return err_set(-EINVAL, "queue %u: rings at 0x%llx, 0x%llx, 0x%llx are not aligned "
                       "(16, 2 and 4 bytes expected)", qi, (unsigned long long)desc,
                       (unsigned long long)avail, (unsigned long long)used);
    struct vq *q = &v->q[qi];
    if (q->enabled)
        vdisk_virtio_queue_enable(v, qi, 0);
    vq_reset(q);
    q->size = size;
    q->desc_gpa = desc;
    q->avail_gpa = avail;
    q->used_gpa = used;
    if (v->mem && vq_map(v, q) < 0) {
        q->size = 0;
        return err_set(-EINVAL, "queue %u: rings at 0x%llx, 0x%llx, 0x%llx (%u entries) are "
                       "not inside guest memory", qi, (unsigned long long)desc,
                       (unsigned long long)avail, (unsigned long long)used, size);
    }
    return 0;
}

VDISK_EXPORT int vdisk_virtio_queue_enable(vdisk_virtio *v, unsigned qi, int enable)
{
    err_enter(__func__);
    int r = check_queue(v, qi);
    if (r < 0)
        return r;
    struct vq *q = &v->q[qi];
    if (!enable) {
        if (q->aq)
            vdisk_queue_drain(q->aq);
        vq_flush_notify(v, qi);
        if (v->model->queue_stop)
            v->model->queue_stop(v, qi);
        q->enabled = 0;
        return 0;
    }
    if (!q->size)
        return err_set(-EINVAL, "queue %u is not set up", qi);
    if (!v->mem || vq_map(v, q) < 0)
        return err_set(-EINVAL, "queue %u: its rings are not in guest memory", qi);
    q->used_idx = __atomic_load_n(&q->used[1], __ATOMIC_ACQUIRE);
    q->notified_used = q->used_idx;
    q->enabled = 1;
    return 0;
}

VDISK_EXPORT int vdisk_virtio_queue_set_base(vdisk_virtio *v, unsigned qi, uint16_t last_avail)
{
    err_enter(__func__);
    int r = check_queue(v, qi);
    if (r < 0)
        return r;
    v->q[qi].last_avail = last_avail;
    return 0;
}

VDISK_EXPORT int vdisk_virtio_queue_get_base(vdisk_virtio *v, unsigned qi, uint16_t *last_avail)
{
    err_enter(__func__);
    int r = check_queue(v, qi);
    if (r < 0)
        return r;
    *last_avail = v->q[qi].last_avail;
    return 0;
}

VDISK_EXPORT int vdisk_virtio_queue_notify(vdisk_virtio *v, unsigned qi)
{
    err_enter(__func__);
    int r = check_queue(v, qi);
    if (r < 0)
        return r;
    r = vq_process(v, qi);
    err_enter(__func__); /* vq_process called vdisk_queue_submit */
    if (r == -EINVAL)
        return err_set(r, "queue %u is not enabled", qi);
    if (r < 0)
        return err_set(r, "queue %u is broken; the device needs a reset", qi);
    return 0;
}

VDISK_EXPORT int vdisk_virtio_get_fd(vdisk_virtio *v)
{
    return v->epfd;
}

/* Completes requests on every queue (WAIT: all of them), then notifies. */
static int complete(vdisk_virtio *v, bool wait)
{
    int total = 0;
    for (unsigned i = 0; i < v->nq; i++) {
        if (!v->q[i].aq)
            continue;
        int r = wait ? vdisk_queue_drain(v->q[i].aq) : vdisk_queue_reap(v->q[i].aq, 0, 0);
        if (r < 0)
            return r;
        total += r;
    }
    if (!wait && v->more_fd >= 0) {
        /* The queues whose last pass stopped at its budget take the next
         * one (never while resetting: the rings are the driver's then). */
        uint64_t c;
        if (read(v->more_fd, &c, sizeof c) == (ssize_t)sizeof c && !v->resetting) {
            for (unsigned i = 0; i < v->nq; i++) {
                if (!v->q[i].more)
                    continue;
                v->q[i].more = 0;
                vq_process(v, i); /* a broken queue shows in needs_reset */
            }
        }
    }
    for (unsigned i = 0; i < v->nq; i++)
        vq_flush_notify(v, i);
    return total;
}

VDISK_EXPORT int vdisk_virtio_poll(vdisk_virtio *v)
{
    err_enter(__func__);
    return complete(v, false);
}

VDISK_EXPORT int vdisk_virtio_drain(vdisk_virtio *v)
{
    err_enter(__func__);
    return complete(v, true);
}

VDISK_EXPORT void vdisk_virtio_reset(vdisk_virtio *v)
{
    v->resetting = 1;
    drain_all(v);
    v->resetting = 0;
    uint64_t c;
    if (read(v->more_fd, &c, sizeof c) < 0) {
        /* (nothing was left to take) */
    }
    for (unsigned i = 0; i < v->nq; i++)
        vq_reset(&v->q[i]);
    v->acked = 0;
    v->broken = 0;
    if (v->model->reset)
        v->model->reset(v);
}

VDISK_EXPORT int vdisk_virtio_needs_reset(const vdisk_virtio *v)
{
    return v->broken;
}

VDISK_EXPORT int vdisk_virtio_get_stats(const vdisk_virtio *v, struct vdisk_virtio_stats *s)
{
    err_enter(__func__);
    struct vdisk_virtio_stats full = v->stats;
    return ABI_OUT(vdisk_virtio_stats, s, &full, VDISK_VIRTIO_STATS_SIZE_V1);
}
