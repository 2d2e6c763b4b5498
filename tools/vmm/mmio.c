/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the virtio-mmio transport (virtio 1.x, "modern" only, Version
 * register 2) in front of a libvdisk virtio model.
 *
 * Registers are accessed on MMIO exits from the vCPU threads; queue kicks
 * arrive through ioeventfds and completions through the model's fd, both in
 * the I/O thread.  Every call into the model is made under the device's
 * mutex (the model is single-threaded).  Interrupts go to KVM through an
 * irqfd.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <vdisk/error.h>

#include "endian.h"
#include "virtio/mmio_regs.h"
#include "vmm.h"

#define MMIO_VENDOR  0x4B534456u  /* "VDSK" */

#define ISR_USED   1u
#define ISR_CONFIG 2u

/* Kinds of guest mistakes, logged once per device each. */
enum {
    LOG_WIDTH = 1u << 0,
    LOG_OFFSET = 1u << 1,
    LOG_QUEUE_SEL = 1u << 2,
    LOG_QUEUE_SIZE = 1u << 3,
    LOG_QUEUE_SETUP = 1u << 4,
    LOG_NOTIFY = 1u << 5,
    LOG_FEATURES = 1u << 6,
    LOG_WHILE_READY = 1u << 7,
    LOG_BROKEN = 1u << 8,
    LOG_CONFIG = 1u << 9,
    LOG_POLL = 1u << 10,
};

static void dev_log_once(struct vmm_mmio_dev *d, unsigned kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void dev_log_once(struct vmm_mmio_dev *d, unsigned kind, const char *fmt, ...)
{
    if (d->logged & kind)
        return;
    d->logged |= kind;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vmm_log("%s: %s (logged once)", d->name, msg);
}

static void raise_irq(struct vmm_mmio_dev *d, unsigned bits)
{
    atomic_fetch_or(&d->isr, bits);
    if (d->irqfd >= 0) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(d->irqfd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
        return;
    }
    struct kvm_irq_level l = { .irq = d->irq, .level = 1 };
    ioctl(d->vm_fd, KVM_IRQ_LINE, &l);
    l.level = 0;
    ioctl(d->vm_fd, KVM_IRQ_LINE, &l);
}

/* The model's notify callback: called under the device's lock. */
static void model_notify(void *opaque, unsigned q)
{
    (void)q;
    raise_irq(opaque, ISR_USED);
}

static void model_log(void *opaque, const char *message)
{
    struct vmm_mmio_dev *d = opaque;
    vmm_log("%s: %s", d->name, message);
}

/* A queue broke (DEVICE_NEEDS_RESET): tell the driver once, with a config interrupt. */
static void check_broken(struct vmm_mmio_dev *d)
{
    if (d->broken_reported || !vdisk_virtio_needs_reset(d->model))
        return;
    d->broken_reported = 1;
    dev_log_once(d, LOG_BROKEN, "a queue is broken: DEVICE_NEEDS_RESET");
    if (d->status & S_DRIVER_OK)
        raise_irq(d, ISR_CONFIG);
}

int vmm_mmio_dev_init(struct vmm_mmio_dev *d, unsigned index, int vm_fd, vdisk_virtio *model,
                      const struct vmm_mem *mem, const char *name, int is_cdrom)
{
    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->lock, NULL);
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->is_cdrom = is_cdrom;
    d->index = index;
    d->base = VMM_MMIO_BASE + (uint64_t)index * VMM_MMIO_SIZE;
    d->irq = VMM_MMIO_IRQ_BASE + index;
    d->vm_fd = vm_fd;
    d->model = model;
    d->irqfd = -1;
    for (unsigned i = 0; i < VMM_MMIO_MAX_QUEUES; i++)
        d->kickfd[i] = -1;
    d->nqueues = vdisk_virtio_num_queues(model);
    d->queue_max = vdisk_virtio_queue_max_size(model);
    if (d->nqueues == 0 || d->nqueues > VMM_MMIO_MAX_QUEUES) {
        vmm_log("%s: the model has %u queues (1..%u supported)", name, d->nqueues,
                VMM_MMIO_MAX_QUEUES);
        return -EINVAL;
    }
    if (d->queue_max > 32768)
        d->queue_max = 32768;

    struct vdisk_virtio_host host = { .struct_size = sizeof host,
                                      .notify = model_notify, .log = model_log, .opaque = d };
    vdisk_virtio_set_host(model, &host);
    int r = vdisk_virtio_set_mem(model, mem->gmem);
    if (r < 0) {
        vmm_log("%s: setting guest memory: %s", name, vdisk_get_error());
        return r;
    }

    /* Interrupts: an irqfd on GSI irq (edge: each write is a pulse). */
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd >= 0) {
        struct kvm_irqfd irqfd = { .fd = (uint32_t)efd, .gsi = d->irq };
        if (ioctl(vm_fd, KVM_IRQFD, &irqfd) == 0) {
            d->irqfd = efd;
        } else {
            vmm_log("%s: KVM_IRQFD: %s; interrupts through KVM_IRQ_LINE", name, strerror(errno));
            close(efd);
        }
    }

    /* Kicks: one ioeventfd per queue on QueueNotify, matching the queue index. */
    for (unsigned q = 0; q < d->nqueues; q++) {
        efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
            break;
        struct kvm_ioeventfd io = {
            .datamatch = q,
            .addr = d->base + R_QUEUE_NOTIFY,
            .len = 4,
            .fd = efd,
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };
        if (ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0) {
            if (q == 0)
                vmm_log("%s: KVM_IOEVENTFD: %s; kicks through MMIO exits", name,
                        strerror(errno));
            close(efd);
            break;
        }
        d->kickfd[q] = efd;
    }
    return 0;
}

void vmm_mmio_dev_destroy(struct vmm_mmio_dev *d)
{
    for (unsigned q = 0; q < VMM_MMIO_MAX_QUEUES; q++) {
        if (d->kickfd[q] < 0)
            continue;
        struct kvm_ioeventfd io = {
            .datamatch = q,
            .addr = d->base + R_QUEUE_NOTIFY,
            .len = 4,
            .fd = d->kickfd[q],
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_DEASSIGN,
        };
        ioctl(d->vm_fd, KVM_IOEVENTFD, &io);
        close(d->kickfd[q]);
        d->kickfd[q] = -1;
    }
    if (d->irqfd >= 0) {
        struct kvm_irqfd irqfd = { .fd = (uint32_t)d->irqfd, .gsi = d->irq,
                                   .flags = KVM_IRQFD_FLAG_DEASSIGN };
        ioctl(d->vm_fd, KVM_IRQFD, &irqfd);
        close(d->irqfd);
        d->irqfd = -1;
    }
    vdisk_virtio_free(d->model);
    d->model = NULL;
    pthread_mutex_destroy(&d->lock);
}

/* Device reset (Status written 0): the transport's state and the model's. */
static void dev_reset(struct vmm_mmio_dev *d)
{
    vdisk_virtio_reset(d->model);
    d->device_features_sel = 0;
    d->driver_features_sel = 0;
    d->driver_features = 0;
    d->queue_sel = 0;
    memset(d->q, 0, sizeof(d->q));
    d->status = 0;
    atomic_store(&d->isr, 0);
    d->broken_reported = 0;
}

static void queue_ready(struct vmm_mmio_dev *d, uint32_t value)
{
    unsigned qi = d->queue_sel;
    if (qi >= d->nqueues) {
        dev_log_once(d, LOG_QUEUE_SEL, "QueueReady for queue %u (the device has %u)", qi,
                     d->nqueues);
        return;
    }
    struct vmm_queue_regs *q = &d->q[qi];
    if (value == 0) {
        if (q->ready)
            vdisk_virtio_queue_enable(d->model, qi, 0);
        q->ready = 0;
        return;
    }
    if (q->ready)
        return;
    uint32_t n = q->num;
    if (n == 0 || n > d->queue_max || (n & (n - 1)) != 0) {
        dev_log_once(d, LOG_QUEUE_SIZE,
                     "queue %u: size %u is not a power of two in 1..%u: not made ready", qi, n,
                     d->queue_max);
        return;
    }
    int r = vdisk_virtio_queue_setup(d->model, qi, n, q->desc, q->driver, q->device);
    if (r == 0)
        r = vdisk_virtio_queue_enable(d->model, qi, 1);
    if (r < 0) {
        dev_log_once(d, LOG_QUEUE_SETUP, "queue %u: not made ready: %s", qi, vdisk_get_error());
        return;
    }
    q->ready = 1;
}

static void queue_notify(struct vmm_mmio_dev *d, uint32_t qi)
{
    if (qi >= d->nqueues || !d->q[qi].ready) {
        dev_log_once(d, LOG_NOTIFY, "QueueNotify for queue %u, which is not ready", qi);
        return;
    }
    int r = vdisk_virtio_queue_notify(d->model, qi);
    if (r < 0)
        dev_log_once(d, LOG_NOTIFY, "queue %u: %s", qi, vdisk_get_error());
    check_broken(d);
}

static void write_status(struct vmm_mmio_dev *d, uint32_t v)
{
    if (v == 0) {
        dev_reset(d);
        return;
    }
    v &= 0xFF & ~S_DEVICE_NEEDS_RESET;
    if ((v & S_FEATURES_OK) && !(d->status & S_FEATURES_OK)) {
        int r = vdisk_virtio_set_features(d->model, d->driver_features);
        if (r < 0) {
            dev_log_once(d, LOG_FEATURES, "features 0x%llx refused: %s",
                         (unsigned long long)d->driver_features, vdisk_get_error());
            v &= ~S_FEATURES_OK; /* the driver reads Status back and sees it */
        }
    }
    d->status = v;
}

static uint32_t reg_read(struct vmm_mmio_dev *d, uint64_t off)
{
    struct vmm_queue_regs *q = d->queue_sel < d->nqueues ? &d->q[d->queue_sel] : NULL;
    uint64_t features;
    switch (off) {
    case R_MAGIC: return VIRTIO_MMIO_MAGIC;
    case R_VERSION: return 2;
    case R_DEVICE_ID: return vdisk_virtio_device_id(d->model);
    case R_VENDOR_ID: return MMIO_VENDOR;
    case R_DEV_FEATURES:
        features = vdisk_virtio_features(d->model);
        if (d->device_features_sel == 0)
            return (uint32_t)features;
        if (d->device_features_sel == 1)
            return (uint32_t)(features >> 32);
        return 0;
    case R_QUEUE_NUM_MAX: return q ? d->queue_max : 0;
    case R_QUEUE_READY: return q ? q->ready : 0;
    case R_INT_STATUS: return atomic_load(&d->isr);
    case R_STATUS:
        return d->status | (vdisk_virtio_needs_reset(d->model) ? S_DEVICE_NEEDS_RESET : 0);
    case R_SHM_LEN_LO: case R_SHM_LEN_HI: case R_SHM_BASE_LO: case R_SHM_BASE_HI:
        return 0xFFFFFFFFu; /* no shared memory regions */
    case R_CONFIG_GEN: return d->config_generation;
    /* write-only registers read 0 */
    case R_DEV_FEATURES_SEL: case R_DRV_FEATURES: case R_DRV_FEATURES_SEL: case R_QUEUE_SEL:
    case R_QUEUE_NUM: case R_QUEUE_NOTIFY: case R_INT_ACK: case R_QUEUE_DESC_LO:
    case R_QUEUE_DESC_HI: case R_QUEUE_DRIVER_LO: case R_QUEUE_DRIVER_HI:
    case R_QUEUE_DEVICE_LO: case R_QUEUE_DEVICE_HI: case R_SHM_SEL: case R_QUEUE_RESET:
        return 0;
    default:
        dev_log_once(d, LOG_OFFSET, "read of unknown register 0x%03llx", (unsigned long long)off);
        return 0;
    }
}

static void set_lo(uint64_t *r, uint32_t v) { *r = (*r & ~0xFFFFFFFFull) | v; }
static void set_hi(uint64_t *r, uint32_t v) { *r = (*r & 0xFFFFFFFFull) | ((uint64_t)v << 32); }

static void reg_write(struct vmm_mmio_dev *d, uint64_t off, uint32_t v)
{
    struct vmm_queue_regs *q = d->queue_sel < d->nqueues ? &d->q[d->queue_sel] : NULL;
    switch (off) {
    case R_DEV_FEATURES_SEL: d->device_features_sel = v; return;
    case R_DRV_FEATURES_SEL: d->driver_features_sel = v; return;
    case R_DRV_FEATURES:
        if (d->status & S_FEATURES_OK) {
            dev_log_once(d, LOG_FEATURES, "DriverFeatures written after FEATURES_OK: ignored");
            return;
        }
        if (d->driver_features_sel == 0)
            set_lo(&d->driver_features, v);
        else if (d->driver_features_sel == 1)
            set_hi(&d->driver_features, v);
        return;
    case R_QUEUE_SEL: d->queue_sel = v; return;
    case R_QUEUE_NUM: case R_QUEUE_DESC_LO: case R_QUEUE_DESC_HI: case R_QUEUE_DRIVER_LO:
    case R_QUEUE_DRIVER_HI: case R_QUEUE_DEVICE_LO: case R_QUEUE_DEVICE_HI:
        if (!q) {
            dev_log_once(d, LOG_QUEUE_SEL, "queue register 0x%03llx written for queue %u (the device has %u)",
                         (unsigned long long)off, d->queue_sel, d->nqueues);
            return;
        }
        if (q->ready) {
            dev_log_once(d, LOG_WHILE_READY, "queue %u: register 0x%03llx written while ready: ignored",
                         d->queue_sel, (unsigned long long)off);
            return;
        }
        switch (off) {
        case R_QUEUE_NUM: q->num = v; break;
        case R_QUEUE_DESC_LO: set_lo(&q->desc, v); break;
        case R_QUEUE_DESC_HI: set_hi(&q->desc, v); break;
        case R_QUEUE_DRIVER_LO: set_lo(&q->driver, v); break;
        case R_QUEUE_DRIVER_HI: set_hi(&q->driver, v); break;
        case R_QUEUE_DEVICE_LO: set_lo(&q->device, v); break;
        case R_QUEUE_DEVICE_HI: set_hi(&q->device, v); break;
        }
        return;
    case R_QUEUE_READY: queue_ready(d, v); return;
    case R_QUEUE_NOTIFY: queue_notify(d, v); return;
    case R_INT_ACK: atomic_fetch_and(&d->isr, ~v); return;
    case R_STATUS: write_status(d, v); return;
    case R_SHM_SEL: case R_QUEUE_RESET: return;
    /* read-only registers ignore writes */
    case R_MAGIC: case R_VERSION: case R_DEVICE_ID: case R_VENDOR_ID: case R_DEV_FEATURES:
    case R_QUEUE_NUM_MAX: case R_INT_STATUS: case R_SHM_LEN_LO: case R_SHM_LEN_HI:
    case R_SHM_BASE_LO: case R_SHM_BASE_HI: case R_CONFIG_GEN:
        return;
    default:
        dev_log_once(d, LOG_OFFSET, "write of unknown register 0x%03llx", (unsigned long long)off);
        return;
    }
}

void vmm_mmio_access(struct vmm_mmio_dev *d, uint64_t off, uint8_t *data, unsigned len,
                     int is_write)
{
    pthread_mutex_lock(&d->lock);
    if (off >= R_CONFIG) {
        uint32_t coff = (uint32_t)(off - R_CONFIG);
        if (len != 1 && len != 2 && len != 4 && len != 8) {
            dev_log_once(d, LOG_WIDTH, "config access of %u bytes", len);
            if (!is_write)
                memset(data, 0, len);
        } else if (is_write) {
            if (vdisk_virtio_config_write(d->model, coff, data, len) < 0)
                dev_log_once(d, LOG_CONFIG, "config write at 0x%x: %s", coff, vdisk_get_error());
        } else if (vdisk_virtio_config_read(d->model, coff, data, len) < 0) {
            memset(data, 0, len);
        }
        pthread_mutex_unlock(&d->lock);
        return;
    }
    if (len != 4 || (off & 3) != 0) {
        dev_log_once(d, LOG_WIDTH, "%s of %u bytes at register 0x%03llx: %s",
                     is_write ? "write" : "read", len, (unsigned long long)off,
                     is_write ? "ignored" : "reads 0");
        if (!is_write)
            memset(data, 0, len);
        pthread_mutex_unlock(&d->lock);
        return;
    }
    if (is_write) {
        reg_write(d, off, le32_load(data));
    } else {
        le32_store(data, reg_read(d, off));
    }
    pthread_mutex_unlock(&d->lock);
}

void vmm_mmio_kick(struct vmm_mmio_dev *d, unsigned q)
{
    pthread_mutex_lock(&d->lock);
    queue_notify(d, q);
    pthread_mutex_unlock(&d->lock);
}

void vmm_mmio_poll(struct vmm_mmio_dev *d)
{
    pthread_mutex_lock(&d->lock);
    int r = vdisk_virtio_poll(d->model);
    if (r < 0)
        dev_log_once(d, LOG_POLL, "poll: %s", vdisk_get_error());
    check_broken(d);
    pthread_mutex_unlock(&d->lock);
}

void vmm_mmio_bus_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write)
{
    vmm_mmio_access(opaque, off, data, len, is_write);
}
