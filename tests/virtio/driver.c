/* SPDX-License-Identifier: MIT */
/* tests/virtio/driver.c: the test driver of driver.h. */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"

#if defined(__SANITIZE_ADDRESS__)
#define DRV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRV_ASAN 1
#endif
#endif
#ifdef DRV_ASAN
/* AddressSanitizer's allocator (sanitizer/allocator_interface.h, which
 * GCC does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#define DRV_ASAN 0
#include <malloc.h>
#endif

static void on_notify(void *opaque, unsigned q)
{
    struct drv *d = opaque;
    (void)q;
    d->notifies++;
}

static void on_log(void *opaque, const char *msg)
{
    struct drv *d = opaque;
    d->logs++;
    snprintf(d->last_log, sizeof d->last_log, "%s", msg);
}

void drv_init(struct drv *d, vdisk_virtio *v, unsigned size)
{
    memset(d, 0, sizeof *d);
    d->mem = aligned_alloc(4096, DRV_MEM_SIZE);
    ck_assert_ptr_nonnull(d->mem);
    memset(d->mem, 0, DRV_MEM_SIZE);
    d->bump = DRV_MEM_GPA;
    struct vdisk_guest_region r = {.gpa = DRV_MEM_GPA, .size = DRV_MEM_SIZE, .host = d->mem};
    ck_assert_int_eq(vdisk_guest_mem_new(&d->gm, &r, 1), 0);
    d->v = v;
    struct vdisk_virtio_host h = {.struct_size = sizeof h,
                                  .notify = on_notify, .log = on_log, .opaque = d};
    vdisk_virtio_set_host(v, &h);
    ck_assert_int_eq(vdisk_virtio_set_features(v, vdisk_virtio_features(v)), 0);
    ck_assert_int_eq(vdisk_virtio_set_mem(v, d->gm), 0);
    unsigned nq = vdisk_virtio_num_queues(v);
    ck_assert_uint_le(nq, 8);
    for (unsigned i = 0; i < nq; i++) {
        struct drv_queue *q = &d->q[i];
        q->size = size;
        q->desc = drv_alloc(d, 16 * size);
        q->avail = drv_alloc(d, 6 + 2 * size);
        q->used = drv_alloc(d, 6 + 8 * size);
        ck_assert_int_eq(vdisk_virtio_queue_setup(v, i, size, q->desc, q->avail, q->used), 0);
        ck_assert_int_eq(vdisk_virtio_queue_enable(v, i, 1), 0);
    }
}

void drv_restart(struct drv *d)
{
    vdisk_virtio *v = d->v;
    ck_assert_int_eq(vdisk_virtio_set_features(v, vdisk_virtio_features(v)), 0);
    unsigned nq = vdisk_virtio_num_queues(v);
    for (unsigned i = 0; i < nq; i++) {
        struct drv_queue *q = &d->q[i];
        memset(drv_host(d, q->desc), 0, 16 * q->size);
        memset(drv_host(d, q->avail), 0, 6 + 2 * q->size);
        memset(drv_host(d, q->used), 0, 6 + 8 * q->size);
        q->avail_idx = q->used_seen = 0;
        q->next_desc = 0;
        ck_assert_int_eq(vdisk_virtio_queue_setup(v, i, q->size, q->desc, q->avail, q->used), 0);
        ck_assert_int_eq(vdisk_virtio_queue_enable(v, i, 1), 0);
    }
}

void drv_restart_queue(struct drv *d, unsigned qi)
{
    struct drv_queue *q = &d->q[qi];
    uint16_t base;
    ck_assert_int_eq(vdisk_virtio_queue_enable(d->v, qi, 0), 0);
    ck_assert_int_eq(vdisk_virtio_queue_get_base(d->v, qi, &base), 0);
    ck_assert_int_eq(vdisk_virtio_queue_setup(d->v, qi, q->size, q->desc, q->avail, q->used), 0);
    ck_assert_int_eq(vdisk_virtio_queue_set_base(d->v, qi, base), 0);
    ck_assert_int_eq(vdisk_virtio_queue_enable(d->v, qi, 1), 0);
}

long long drv_heap_bytes(void)
{
#if DRV_ASAN
    return (long long)__sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return (long long)(mi.uordblks + mi.hblkhd);
#endif
}

void drv_fini(struct drv *d)
{
    vdisk_virtio_free(d->v);
    vdisk_guest_mem_free(d->gm);
    free(d->mem);
}

uint64_t drv_alloc(struct drv *d, size_t len)
{
    uint64_t g = (d->bump + 15) & ~15ull;
    ck_assert_uint_le(g + len, DRV_MEM_GPA + DRV_MEM_SIZE);
    d->bump = g + len;
    memset(drv_host(d, g), 0, len);
    return g;
}

void *drv_host(struct drv *d, uint64_t gpa)
{
    return d->mem + (gpa - DRV_MEM_GPA);
}

static void put_desc(uint8_t *p, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    memcpy(p, &addr, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &flags, 2);
    memcpy(p + 14, &next, 2);
}

void drv_add_head(struct drv *d, unsigned qi, uint16_t head)
{
    struct drv_queue *q = &d->q[qi];
    uint16_t *avail = drv_host(d, q->avail);
    avail[2 + (q->avail_idx % q->size)] = head;
    q->avail_idx++;
    __atomic_store_n(&avail[1], q->avail_idx, __ATOMIC_RELEASE);
}

unsigned drv_add(struct drv *d, unsigned qi, const struct drv_seg *segs, unsigned n, int indirect)
{
    struct drv_queue *q = &d->q[qi];
    uint8_t *desc = drv_host(d, q->desc);
    unsigned head = q->next_desc % q->size;
    if (indirect) {
        uint64_t t = drv_alloc(d, 16 * n);
        uint8_t *tab = drv_host(d, t);
        for (unsigned i = 0; i < n; i++)
            put_desc(tab + 16 * i, segs[i].gpa, segs[i].len,
                     (uint16_t)((segs[i].write ? 2 : 0) | (i + 1 < n ? 1 : 0)),
                     (uint16_t)(i + 1));
        put_desc(desc + 16 * head, t, 16 * n, 4, 0);
        q->next_desc++;
    } else {
        for (unsigned i = 0; i < n; i++) {
            unsigned idx = q->next_desc % q->size, nxt = (q->next_desc + 1) % q->size;
            put_desc(desc + 16 * idx, segs[i].gpa, segs[i].len,
                     (uint16_t)((segs[i].write ? 2 : 0) | (i + 1 < n ? 1 : 0)), (uint16_t)nxt);
            q->next_desc++;
        }
    }
    drv_add_head(d, qi, (uint16_t)head);
    return head;
}

int drv_kick(struct drv *d, unsigned q)
{
    return vdisk_virtio_queue_notify(d->v, q);
}

void drv_used(struct drv *d, unsigned qi, uint16_t i, uint32_t *id, uint32_t *len)
{
    struct drv_queue *q = &d->q[qi];
    uint8_t *used = drv_host(d, q->used);
    uint8_t *e = used + 4 + 8 * (i % q->size);
    if (id)
        memcpy(id, e, 4);
    if (len)
        memcpy(len, e + 4, 4);
}

void drv_wait(struct drv *d, unsigned qi, unsigned count, uint32_t *id, uint32_t *len)
{
    struct drv_queue *q = &d->q[qi];
    uint16_t *used = drv_host(d, q->used);
    uint16_t want = (uint16_t)(q->used_seen + count);
    time_t start = time(NULL);
    while ((uint16_t)(__atomic_load_n(&used[1], __ATOMIC_ACQUIRE) - q->used_seen) < count) {
        ck_assert_msg(time(NULL) - start < 10, "queue %u: %u of %u completions after 10 s",
                      qi, (unsigned)(uint16_t)(used[1] - q->used_seen), count);
        struct pollfd p = {.fd = vdisk_virtio_get_fd(d->v), .events = POLLIN};
        poll(&p, 1, 100);
        ck_assert_int_ge(vdisk_virtio_poll(d->v), 0);
    }
    q->used_seen = want;
    drv_used(d, qi, (uint16_t)(want - 1), id, len);
}
