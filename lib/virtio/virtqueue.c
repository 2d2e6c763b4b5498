/* SPDX-License-Identifier: MIT */
/*
 * lib/virtio/virtqueue.c: the split virtqueue (virtio 1.x, 2.7): taking
 * requests from the available ring, checking their descriptor chains, and
 * putting them on the used ring, with event-index interrupt suppression.
 *
 * The guest can change its rings at any moment, from other CPUs: every
 * descriptor is copied once and checked on the copy, and indices read from
 * the rings are checked against the queue size before use.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio_internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the virtio models read the little-endian rings natively"
#endif

int vq_map(struct vdisk_virtio *v, struct vq *q)
{
    uint64_t n = q->size;
    void *d = vdisk_guest_mem_translate(v->mem, q->desc_gpa, 16 * n);
    void *a = vdisk_guest_mem_translate(v->mem, q->avail_gpa, 6 + 2 * n);
    void *u = vdisk_guest_mem_translate(v->mem, q->used_gpa, 6 + 8 * n);
    if (!d || !a || !u) {
        q->desc = NULL;
        q->avail = q->used = NULL;
        return -EFAULT;
    }
    q->desc = d;
    q->avail = a;
    q->used = u;
    return 0;
}

void vq_reset(struct vq *q)
{
    vdisk_queue *aq = q->aq;
    memset(q, 0, sizeof *q);
    q->aq = aq;
}

static void vq_break(struct vdisk_virtio *v, struct vq *q, unsigned qi, enum vlog_kind kind,
                     const char *why, unsigned value)
{
    q->broken = 1;
    v->broken = 1;
    vlog(v, kind, "queue %u: %s (%u); the queue is stopped until the driver resets the "
         "device", qi, why, value);
}

/* Puts HEAD with LEN bytes written on the used ring. */
static void vq_push(struct vq *q, uint16_t head, uint32_t len)
{
    uint16_t slot = q->used_idx & (uint16_t)(q->size - 1);
    volatile uint32_t *e = (volatile uint32_t *)((volatile uint8_t *)q->used + 4 + 8 * slot);
    e[0] = head;
    e[1] = len;
    q->used_idx++;
    __atomic_store_n(&q->used[1], q->used_idx, __ATOMIC_RELEASE);
    q->pending = 1;
}

/* Takes HEAD out of flight and puts it on the used ring with LEN bytes
 * written (not while resetting, nor on a queue that is gone or broken). */
static void vq_finish(struct vdisk_virtio *v, struct vq *q, uint16_t head, uint32_t len)
{
    if (q->in_flight)
        q->in_flight--;
    if (!v->resetting && q->size && q->used && !q->broken) {
        vq_push(q, head, len);
        v->stats.requests++;
    }
}

void vq_complete(struct vq_req *r)
{
    vq_finish(r->v, &r->v->q[r->q], r->head, r->used_len);
    free(r);
}

void vq_flush_notify(struct vdisk_virtio *v, unsigned qi)
{
    struct vq *q = &v->q[qi];
    if (!q->pending || !q->avail)
        return;
    q->pending = 0;
    /* The used index must be visible before the driver's flags are read. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old = q->notified_used, now = q->used_idx;
    q->notified_used = now;
    int notify;
    if (virtio_has(v, VDISK_VIRTIO_F_RING_EVENT_IDX)) {
        uint16_t event = __atomic_load_n(&q->avail[2 + q->size], __ATOMIC_RELAXED);
        notify = (uint16_t)(now - event - 1) < (uint16_t)(now - old);
    } else {
        notify = !(__atomic_load_n(&q->avail[0], __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);
    }
    if (notify) {
        v->stats.notifies++;
        if (v->host.notify)
            v->host.notify(v->host.opaque, qi);
    }
}

/* Scratch space for walking one chain (the model is single-threaded). */
struct chain {
    struct iovec seg[VQ_SEGS_MAX];
    size_t out_len, in_len;
    unsigned nout, nin;
    int bad;                      /* a buffer is outside guest memory */
};

/*
 * Walks the chain at HEAD into C.  Returns 0, or -1 after logging why the
 * chain cannot be used (the request then completes with nothing written).
 */
static int walk_chain(struct vdisk_virtio *v, struct vq *q, unsigned qi, uint16_t head,
                      struct chain *c)
{
    const struct vring_desc *table = q->desc;
    unsigned tsize = q->size, idx = head, budget = q->size, n = 0;
    int indirect = 0;
    c->out_len = c->in_len = 0;
    c->nout = c->nin = 0;
    c->bad = 0;
    for (;;) {
        if (idx >= tsize) {
            vlog(v, VLOG_CHAIN, "queue %u: descriptor %u's next index %u is beyond the table "
                 "(%u entries)", qi, head, idx, tsize);
            return -1;
        }
        if (budget-- == 0) {
            vlog(v, VLOG_CHAIN, "queue %u: the chain at descriptor %u loops", qi, head);
            return -1;
        }
        struct vring_desc d;
        memcpy(&d, (const void *)&table[idx], sizeof d);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect || !virtio_has(v, VDISK_VIRTIO_F_RING_INDIRECT_DESC) ||
                (d.flags & VRING_DESC_F_NEXT) || n > 0) {
                vlog(v, VLOG_INDIRECT, "queue %u: misplaced indirect descriptor in the chain "
                     "at %u (nested, chained, after buffers, or not negotiated)", qi, head);
                return -1;
            }
            if (d.len == 0 || d.len % sizeof(struct vring_desc) ||
                d.len / sizeof(struct vring_desc) > VQ_SEGS_MAX) {
                vlog(v, VLOG_INDIRECT, "queue %u: indirect table of %u bytes (expected a "
                     "multiple of 16, at most %d entries)", qi, d.len, VQ_SEGS_MAX);
                return -1;
            }
            table = vdisk_guest_mem_translate(v->mem, d.addr, d.len);
            if (!table) {
                vlog(v, VLOG_INDIRECT, "queue %u: indirect table at 0x%llx (%u bytes) is "
                     "outside guest memory", qi, (unsigned long long)d.addr, d.len);
                return -1;
            }
            indirect = 1;
            tsize = budget = d.len / sizeof(struct vring_desc);
            idx = 0;
            continue;
        }
        if (d.len > 0) {
            void *h = vdisk_guest_mem_translate(v->mem, d.addr, d.len);
            if (!h) {
                /* Kept as an empty place, so that the model can still answer
                 * in the buffers that are valid (its status byte). */
                vlog(v, VLOG_DESC, "queue %u: buffer at 0x%llx (%u bytes) is outside guest "
                     "memory", qi, (unsigned long long)d.addr, d.len);
                c->bad = 1;
                d.len = 0;
            }
            if (n == VQ_SEGS_MAX) {
                vlog(v, VLOG_CHAIN, "queue %u: more than %d buffers in one request", qi,
                     VQ_SEGS_MAX);
                return -1;
            }
            if (d.flags & VRING_DESC_F_WRITE) {
                c->nin++;
                c->in_len += d.len;
            } else {
                if (c->nin) {
                    vlog(v, VLOG_CHAIN, "queue %u: a driver-readable buffer follows a "
                         "device-writable one in the chain at %u", qi, head);
                    return -1;
                }
                c->nout++;
                c->out_len += d.len;
            }
            c->seg[n].iov_base = h;
            c->seg[n].iov_len = d.len;
            n++;
        }
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        idx = d.next;
    }
}

static struct vq_req *make_req(struct vdisk_virtio *v, unsigned qi, uint16_t head,
                               const struct chain *c)
{
    unsigned n = c->nout + c->nin;
    struct vq_req *r = malloc(sizeof *r + (n ? n : 1) * sizeof(struct iovec));
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    r->v = v;
    r->q = qi;
    r->head = head;
    r->nout = c->nout;
    r->nin = c->nin;
    r->out = r->iov;
    r->in = r->iov + c->nout;
    r->out_len = c->out_len;
    r->in_len = c->in_len;
    memcpy(r->iov, c->seg, n * sizeof(struct iovec));
    return r;
}

int vq_process(struct vdisk_virtio *v, unsigned qi)
{
    struct vq *q = &v->q[qi];
    if (!q->size || !q->enabled || !q->avail)
        return -EINVAL;
    if (q->broken)
        return -EIO;
    if (!v->chain && !(v->chain = malloc(sizeof(struct chain))))
        return -ENOMEM;
    struct chain *chain = v->chain;
    int event_idx = virtio_has(v, VDISK_VIRTIO_F_RING_EVENT_IDX);
    /* One pass takes at most a ring's worth of chains.  A driver can keep
     * the ring full as fast as the device takes from it (requests that
     * complete at once, a used ring laid over the available one, or data
     * written into the available ring by the device itself): without a
     * budget the call would never return.  What is left is taken by the
     * next vdisk_virtio_poll(), which the completion fd asks for. */
    unsigned budget = q->size;
    q->more = 0;
    for (;;) {
        uint16_t avail_idx = __atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE);
        uint16_t n = (uint16_t)(avail_idx - q->last_avail);
        if (n > q->size) {
            vq_break(v, q, qi, VLOG_RING, "the available index moved by more than the queue "
                     "size", n);
            break;
        }
        if (n == 0) {
            if (!event_idx)
                break;
            /* Ask for a kick at the next buffer, then look once more. */
            __atomic_store_n(&q->used[2 + 4 * q->size], q->last_avail, __ATOMIC_RELAXED);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (__atomic_load_n(&q->avail[1], __ATOMIC_ACQUIRE) == avail_idx)
                break;
            continue;
        }
        while (n--) {
            if (budget == 0) {
                q->more = 1;
                uint64_t one = 1;
                if (write(v->more_fd, &one, sizeof one) < 0) {
                    /* (an eventfd at its maximum count is readable anyway) */
                }
                goto out;
            }
            budget--;
            /* A driver has at most one request per descriptor in flight:
             * more means it made a head available again before the device
             * used it.  Taking it would let the guest grow host memory
             * without bound (QEMU: "Virtqueue size exceeded"). */
            if (q->in_flight >= q->size) {
                vq_break(v, q, qi, VLOG_INFLIGHT, "virtqueue size exceeded: more requests in "
                         "flight than the queue's size", q->size);
                goto out;
            }
            uint16_t head = q->avail[2 + (q->last_avail & (q->size - 1))];
            q->last_avail++;
            if (head >= q->size) {
                vq_break(v, q, qi, VLOG_RING, "available ring entry names a descriptor beyond "
                         "the table", head);
                goto out;
            }
            q->in_flight++;
            struct vq_req *r = NULL;
            if (walk_chain(v, q, qi, head, chain) == 0) {
                r = make_req(v, qi, head, chain);
                if (!r)
                    vlog(v, VLOG_REQUEST, "queue %u: out of memory for a request", qi);
            }
            if (!r) {
                /* Completed with nothing written: never dropped. */
                v->stats.errors++;
                vq_finish(v, q, head, 0);
                continue;
            }
            if (chain->bad) {
                v->stats.errors++;
                if (v->model->fail)
                    v->model->fail(v, r);
                else
                    vq_complete(r);
                continue;
            }
            v->model->request(v, r);
        }
    }
out:
    if (q->aq)
        vdisk_queue_submit(q->aq);
    vq_flush_notify(v, qi);
    return q->broken ? -EIO : 0;
}

/* ---- iovec helpers ---------------------------------------------------------- */

uint8_t *iov_byte(const struct iovec *iov, unsigned n, size_t skip)
{
    for (unsigned i = 0; i < n; i++) {
        if (skip < iov[i].iov_len)
            return (uint8_t *)iov[i].iov_base + skip;
        skip -= iov[i].iov_len;
    }
    return NULL;
}
