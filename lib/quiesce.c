/* SPDX-License-Identifier: MIT */
/*
 * lib/quiesce.c: the quiesce section of a device (vdisk_dev_quiesce).
 *
 * While a thread holds the section, no top-level request of another thread
 * is in the driver: those in flight when it began have finished, and those
 * started since wait on their queues (counted in flight, never failed) until
 * the section ends, when each queue's thread is woken to start them.  The
 * holding thread's own requests go through, so that the operation it
 * protects (a snapshot, a resize) may use the device.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

/* Each thread's address of this variable names the thread. */
static _Thread_local char thread_token;

static uintptr_t self(void)
{
    return (uintptr_t)&thread_token;
}

void quiesce_init(struct quiesce_state *qs)
{
    pthread_mutex_init(&qs->lock, NULL);
    pthread_cond_init(&qs->cond, NULL);
    atomic_init(&qs->depth, 0);
    atomic_init(&qs->owner, 0);
    atomic_init(&qs->active, 0);
    qs->queues = NULL;
}

void quiesce_fini(struct quiesce_state *qs)
{
    pthread_cond_destroy(&qs->cond);
    pthread_mutex_destroy(&qs->lock);
}

static bool blocks_one(struct vdisk_dev *dev)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    return atomic_load(&qs->depth) != 0 && atomic_load(&qs->owner) != self();
}

bool quiesce_blocks(struct vdisk_dev *dev)
{
    for (struct vdisk_dev *d = dev; d; d = d->core->quiesce_under)
        if (blocks_one(d))
            return true;
    return false;
}

static void leave_one(struct vdisk_dev *dev)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    if (atomic_fetch_sub(&qs->active, 1) == 1 && atomic_load(&qs->depth) != 0) {
        pthread_mutex_lock(&qs->lock);
        pthread_cond_broadcast(&qs->cond);
        pthread_mutex_unlock(&qs->lock);
    }
}

/* Counts one more request in the driver, on DEV and every device it is a
 * range of, unless another thread holds a section on one of them (then
 * nothing stays counted): each increment comes before the look at that
 * device's DEPTH, the quiescing thread's store of DEPTH before its look at
 * ACTIVE. */
static bool try_enter(struct vdisk_dev *dev)
{
    for (struct vdisk_dev *d = dev; d; d = d->core->quiesce_under) {
        atomic_fetch_add(&d->core->quiesce.active, 1);
        if (blocks_one(d)) {
            for (struct vdisk_dev *e = dev;; e = e->core->quiesce_under) {
                leave_one(e);
                if (e == d)
                    break;
            }
            return false;
        }
    }
    return true;
}

void quiesce_leave(struct vdisk_queue *q)
{
    atomic_fetch_sub(&q->active, 1);
    quiesce_sync_end(q->dev);
}

bool quiesce_enter(struct vdisk_queue *q)
{
    if (atomic_load_explicit(&q->user, memory_order_relaxed) != self())
        atomic_store(&q->user, self());
    atomic_fetch_add(&q->active, 1);
    if (try_enter(q->dev))
        return true;
    atomic_fetch_sub(&q->active, 1);
    return false;
}

void quiesce_add_queue(struct vdisk_dev *dev, struct vdisk_queue *q)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    pthread_mutex_lock(&qs->lock);
    q->dev_next = qs->queues;
    qs->queues = q;
    pthread_mutex_unlock(&qs->lock);
}

void quiesce_remove_queue(struct vdisk_dev *dev, struct vdisk_queue *q)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    pthread_mutex_lock(&qs->lock);
    for (struct vdisk_queue **pp = &qs->queues; *pp; pp = &(*pp)->dev_next)
        if (*pp == q) {
            *pp = q->dev_next;
            break;
        }
    pthread_mutex_unlock(&qs->lock);
}

/*
 * Waits (LOCK held) for the section or the requests in flight to change.
 * Requests that this thread started are moved on meanwhile, since no other
 * thread reaps its queues: a section waits for them, and this thread may be
 * waiting for that section (their callbacks still run from its next reap).
 */
/* This thread's queues with requests in the driver, on DEV and the ranges
 * over it (their locks taken after DEV's, which the caller holds). */
static unsigned own_queues(struct vdisk_dev *dev, struct vdisk_queue **own, unsigned n,
                           unsigned max, bool locked)
{
    if (!locked)
        pthread_mutex_lock(&dev->core->quiesce.lock);
    for (struct vdisk_queue *q = dev->core->quiesce.queues; q && n < max; q = q->dev_next)
        if (atomic_load(&q->user) == self() && atomic_load(&q->active) > 0)
            own[n++] = q;
    for (struct vdisk_dev *u = dev->core->quiesce.uppers; u && n < max; u = u->core->upper_next)
        n = own_queues(u, own, n, max, false);
    if (!locked)
        pthread_mutex_unlock(&dev->core->quiesce.lock);
    return n;
}

/* Every queue on DEV and the ranges over it is woken (DEV's lock held). */
static void wake_queues(struct vdisk_dev *dev, bool locked)
{
    if (!locked)
        pthread_mutex_lock(&dev->core->quiesce.lock);
    for (struct vdisk_queue *q = dev->core->quiesce.queues; q; q = q->dev_next)
        queue_wake(q);
    for (struct vdisk_dev *u = dev->core->quiesce.uppers; u; u = u->core->upper_next)
        wake_queues(u, false);
    if (!locked)
        pthread_mutex_unlock(&dev->core->quiesce.lock);
}

static void wait_or_progress(struct vdisk_dev *dev)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    struct vdisk_queue *own[16];
    unsigned n = own_queues(dev, own, 0, 16, true);
    if (n == 0) {
        pthread_cond_wait(&qs->cond, &qs->lock);
        return;
    }
    pthread_mutex_unlock(&qs->lock);
    for (unsigned i = 0; i < n; i++)
        queue_progress(own[i], 5);
    pthread_mutex_lock(&qs->lock);
}

void quiesce_wait_sync(struct vdisk_dev *dev)
{
    for (;;) {
        struct vdisk_dev *d = dev;
        while (d && !blocks_one(d))
            d = d->core->quiesce_under;
        if (!d)
            return;
        pthread_mutex_lock(&d->core->quiesce.lock);
        while (blocks_one(d))
            wait_or_progress(d);
        pthread_mutex_unlock(&d->core->quiesce.lock);
    }
}

void dev_add_upper(struct vdisk_dev *dev, struct vdisk_dev *upper)
{
    pthread_mutex_lock(&dev->core->quiesce.lock);
    upper->core->quiesce_under = dev;
    upper->core->upper_next = dev->core->quiesce.uppers;
    dev->core->quiesce.uppers = upper;
    pthread_mutex_unlock(&dev->core->quiesce.lock);
}

void dev_remove_upper(struct vdisk_dev *dev, struct vdisk_dev *upper)
{
    pthread_mutex_lock(&dev->core->quiesce.lock);
    for (struct vdisk_dev **pp = &dev->core->quiesce.uppers; *pp; pp = &(*pp)->core->upper_next)
        if (*pp == upper) {
            *pp = upper->core->upper_next;
            break;
        }
    pthread_mutex_unlock(&dev->core->quiesce.lock);
}

void quiesce_sync_begin(struct vdisk_dev *dev)
{
    do
        quiesce_wait_sync(dev);
    while (!try_enter(dev));
}

void quiesce_sync_end(struct vdisk_dev *dev)
{
    for (struct vdisk_dev *d = dev; d; d = d->core->quiesce_under)
        leave_one(d);
}

static int quiesce(struct vdisk_dev *dev)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    pthread_mutex_lock(&qs->lock);
    if (atomic_load(&qs->depth) != 0 && atomic_load(&qs->owner) == self()) {
        if (atomic_load(&qs->depth) == UINT32_MAX) {
            pthread_mutex_unlock(&qs->lock);
            return err_set(-EOVERFLOW, "%s: quiesced %u times over", dev->filename,
                           UINT32_MAX);
        }
        atomic_fetch_add(&qs->depth, 1);
        pthread_mutex_unlock(&qs->lock);
        return 0;
    }
    /* Another thread's section ends first. */
    while (atomic_load(&qs->depth) != 0)
        wait_or_progress(dev);
    atomic_store(&qs->owner, self());
    atomic_store(&qs->depth, 1);
    /* Then every request already in the driver, this thread's too. */
    while (atomic_load(&qs->active) != 0)
        wait_or_progress(dev);
    pthread_mutex_unlock(&qs->lock);
    return 0;
}

static int resume(struct vdisk_dev *dev)
{
    struct quiesce_state *qs = &dev->core->quiesce;
    pthread_mutex_lock(&qs->lock);
    if (atomic_load(&qs->depth) == 0 || atomic_load(&qs->owner) != self()) {
        pthread_mutex_unlock(&qs->lock);
        return err_set(-EINVAL, "%s: this thread has not quiesced the device", dev->filename);
    }
    if (atomic_fetch_sub(&qs->depth, 1) == 1) {
        atomic_store(&qs->owner, 0);
        pthread_cond_broadcast(&qs->cond);
        wake_queues(dev, true);
    }
    pthread_mutex_unlock(&qs->lock);
    return 0;
}

int quiesce_begin_op(struct vdisk_dev *dev)
{
    return quiesce(dev);
}

void quiesce_end_op(struct vdisk_dev *dev)
{
    struct err_saved saved;
    err_save(&saved);
    resume(dev);
    err_restore(&saved);
}

VDISK_EXPORT int vdisk_dev_quiesce(vdisk_dev *dev)
{
    err_enter(__func__);
    if (!dev)
        return err_set(-EINVAL, "no device");
    return quiesce(dev);
}

VDISK_EXPORT int vdisk_dev_resume(vdisk_dev *dev)
{
    err_enter(__func__);
    if (!dev)
        return err_set(-EINVAL, "no device");
    return resume(dev);
}
