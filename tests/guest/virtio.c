/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/virtio.c: the virtio 1.x driver side over virtio-mmio: device
 * initialisation (virtio 1.x section 3.1.1), split virtqueues in the
 * guest's own memory, and one request at a time, completed by polling the
 * used ring (no interrupts: the guest runs with them off).
 */
#include "guest.h"
#include "virtio/mmio_regs.h"

/* How long a request may take: polls, each one an MMIO read (a VM exit). */
#define POLL_LIMIT 2000000u

struct vdev *vdev_probe(const u8 *info, u32 i, unsigned *nblk, unsigned *nscsi)
{
    struct vdev *d = alloc(sizeof *d, 16);
    if (!d)
        return 0;
    d->base = le32(info + 12 + 8 * i);
    d->irq = le32(info + 16 + 8 * i);
    u32 magic = vdev_reg(d, R_MAGIC), version = vdev_reg(d, R_VERSION);
    d->device_id = vdev_reg(d, R_DEVICE_ID);
    if (magic != VIRTIO_MMIO_MAGIC || version != 2) {
        fail("device %u at %p: magic 0x%08x version %u, expected 0x%08x and 2", i,
             (void *)d->base, magic, version, VIRTIO_MMIO_MAGIC);
        return 0;
    }
    if (d->device_id == 2) {
        d->name[0] = 'b', d->name[1] = 'l', d->name[2] = 'k';
        d->name[3] = (char)('0' + (*nblk)++ % 10);
    } else if (d->device_id == 8) {
        d->name[0] = 's', d->name[1] = 'c', d->name[2] = 's', d->name[3] = 'i';
        d->name[4] = (char)('0' + (*nscsi)++ % 10);
    }
    return d;
}

u32 vdev_reg(const struct vdev *d, u32 off)
{
    return mmio_read32(d->base + off);
}

void vdev_set_reg(const struct vdev *d, u32 off, u32 v)
{
    mmio_write32(d->base + off, v);
}

u32 vdev_config32(const struct vdev *d, u32 off)
{
    return mmio_read32(d->base + R_CONFIG + off);
}

u64 vdev_config64(const struct vdev *d, u32 off)
{
    /* Two 32-bit halves, retried until the config generation holds still. */
    for (int tries = 0;; tries++) {
        u32 gen = vdev_reg(d, R_CONFIG_GEN);
        u32 lo = vdev_config32(d, off);
        u32 hi = vdev_config32(d, off + 4);
        if (vdev_reg(d, R_CONFIG_GEN) == gen || tries == 10)
            return (u64)hi << 32 | lo;
    }
}

static void set_status(struct vdev *d, u32 bits)
{
    vdev_set_reg(d, R_STATUS, vdev_reg(d, R_STATUS) | bits);
}

int vdev_begin(struct vdev *d, u64 want)
{
    vdev_set_reg(d, R_STATUS, 0);
    u32 st = 1;
    for (int i = 0; i < 1000 && st; i++)
        st = vdev_reg(d, R_STATUS);
    if (st) {
        fail("%s: status 0x%x after reset, not 0", d->name, st);
        return -1;
    }
    set_status(d, S_ACKNOWLEDGE);
    set_status(d, S_DRIVER);

    vdev_set_reg(d, R_DEV_FEATURES_SEL, 0);
    u64 offered = vdev_reg(d, R_DEV_FEATURES);
    vdev_set_reg(d, R_DEV_FEATURES_SEL, 1);
    offered |= (u64)vdev_reg(d, R_DEV_FEATURES) << 32;
    if (!(offered >> VIRTIO_F_VERSION_1 & 1)) {
        fail("%s: device features 0x%llx lack VERSION_1", d->name, offered);
        set_status(d, S_FAILED);
        return -1;
    }
    d->features = offered & want;
    vdev_set_reg(d, R_DRV_FEATURES_SEL, 0);
    vdev_set_reg(d, R_DRV_FEATURES, (u32)d->features);
    vdev_set_reg(d, R_DRV_FEATURES_SEL, 1);
    vdev_set_reg(d, R_DRV_FEATURES, (u32)(d->features >> 32));
    set_status(d, S_FEATURES_OK);
    st = vdev_reg(d, R_STATUS);
    if (!(st & S_FEATURES_OK)) {
        fail("%s: the device refused features 0x%llx (status 0x%x)", d->name, d->features, st);
        set_status(d, S_FAILED);
        return -1;
    }
    return 0;
}

int vdev_queue(struct vdev *d, unsigned qi, u32 size)
{
    struct virtq *q = &d->q[qi];
    vdev_set_reg(d, R_QUEUE_SEL, qi);
    if (vdev_reg(d, R_QUEUE_READY)) {
        fail("%s: queue %u is ready before setup", d->name, qi);
        return -1;
    }
    u32 max = vdev_reg(d, R_QUEUE_NUM_MAX);
    if (!max) {
        fail("%s: queue %u is not available (QueueNumMax 0)", d->name, qi);
        return -1;
    }
    if (size > max)
        size = max;
    while (size & (size - 1)) /* a power of two */
        size &= size - 1;
    q->size = size;
    q->desc = alloc(16 * size, 4096);
    q->avail = alloc(6 + 2 * size, 4096);
    q->used = alloc(6 + 8 * size, 4096);
    if (!q->desc || !q->avail || !q->used)
        return -1;
    q->next_avail = q->last_used = 0;
    vdev_set_reg(d, R_QUEUE_NUM, size);
    vdev_set_reg(d, R_QUEUE_DESC_LO, (u32)q->desc);
    vdev_set_reg(d, R_QUEUE_DESC_HI, 0);
    vdev_set_reg(d, R_QUEUE_DRIVER_LO, (u32)q->avail);
    vdev_set_reg(d, R_QUEUE_DRIVER_HI, 0);
    vdev_set_reg(d, R_QUEUE_DEVICE_LO, (u32)q->used);
    vdev_set_reg(d, R_QUEUE_DEVICE_HI, 0);
    vdev_set_reg(d, R_QUEUE_READY, 1);
    if (vdev_reg(d, R_QUEUE_READY) != 1) {
        fail("%s: queue %u did not become ready", d->name, qi);
        return -1;
    }
    return 0;
}

int vdev_ready(struct vdev *d)
{
    set_status(d, S_DRIVER_OK);
    u32 st = vdev_reg(d, R_STATUS);
    if (!(st & S_DRIVER_OK) || (st & (S_DEVICE_NEEDS_RESET | S_FAILED))) {
        fail("%s: status 0x%x after DRIVER_OK", d->name, st);
        return -1;
    }
    return 0;
}

static u16 used_idx(const struct virtq *q)
{
    return *(volatile const u16 *)(q->used + 2);
}

int vdev_request(struct vdev *d, unsigned qi, const struct vbuf *bufs, unsigned n,
                 u32 *used_len)
{
    struct virtq *q = &d->q[qi];
    if (n == 0 || n > q->size) {
        fail("%s: %u buffers for a queue of %u", d->name, n, q->size);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        q->desc[i].addr = (u32)bufs[i].addr;
        q->desc[i].len = bufs[i].len;
        q->desc[i].flags = (u16)((bufs[i].write ? VRING_DESC_F_WRITE : 0) |
                                 (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        q->desc[i].next = (u16)(i + 1 < n ? i + 1 : 0);
    }
    return vdev_submit(d, qi, 0, used_len);
}

int vdev_submit(struct vdev *d, unsigned qi, u16 head, u32 *used_len)
{
    struct virtq *q = &d->q[qi];
    /* avail: flags at 0, idx at 1, ring from 2. */
    q->avail[2 + q->next_avail % q->size] = head;
    barrier();
    q->next_avail++;
    *(volatile u16 *)&q->avail[1] = q->next_avail;
    barrier();
    vdev_set_reg(d, R_QUEUE_NOTIFY, qi);

    /*
     * Poll the used ring.  Each round also reads InterruptStatus (and
     * acknowledges it): an MMIO exit, so that a VMM that completes requests
     * on its vCPU thread gets the chance to.
     */
    u32 polls = 0;
    while (used_idx(q) == q->last_used) {
        if (++polls == POLL_LIMIT) {
            fail("%s: queue %u: no answer after %u polls (status 0x%x)", d->name, qi, polls,
                 vdev_reg(d, R_STATUS));
            return -1;
        }
        u32 isr = vdev_reg(d, R_INT_STATUS);
        if (isr)
            vdev_set_reg(d, R_INT_ACK, isr);
        if ((polls & 1023) == 0 && (vdev_reg(d, R_STATUS) & S_DEVICE_NEEDS_RESET)) {
            fail("%s: queue %u: the device needs a reset", d->name, qi);
            return -1;
        }
    }
    barrier();
    u16 idx = used_idx(q);
    if ((u16)(idx - q->last_used) != 1) {
        fail("%s: queue %u: used idx went from %u to %u for one request", d->name, qi,
             q->last_used, idx);
        q->last_used = idx;
        return -1;
    }
    const u8 *elem = q->used + 4 + 8 * (q->last_used % q->size);
    u32 id = le32(elem), len = le32(elem + 4);
    q->last_used++;
    u32 isr = vdev_reg(d, R_INT_STATUS);
    if (isr)
        vdev_set_reg(d, R_INT_ACK, isr);
    if (id != head) {
        fail("%s: queue %u: used entry names descriptor %u, not %u", d->name, qi, id, head);
        return -1;
    }
    if (used_len)
        *used_len = len;
    return 0;
}
