/* SPDX-License-Identifier: MIT */
/*
 * tests/virtio/driver.h: a small virtio driver for tests: guest memory in
 * the test's own address space, split virtqueues built by hand, chains of
 * buffers (direct or through an indirect table), kicks and waits.
 */
#ifndef VDISK_TEST_VIRTIO_DRIVER_H
#define VDISK_TEST_VIRTIO_DRIVER_H

#include <stdint.h>

#include <vdisk/virtio.h>

#define DRV_MEM_GPA  0x100000ull        /* guest memory starts here */
#define DRV_MEM_SIZE (16u << 20)

struct drv_seg {
    uint64_t gpa;
    uint32_t len;
    int write;                          /* device-writable */
};

struct drv_queue {
    unsigned size;
    uint64_t desc, avail, used;
    uint16_t avail_idx;                 /* next available entry */
    uint16_t used_seen;                 /* used entries taken so far */
    unsigned next_desc;                 /* descriptors are handed out in turn */
};

struct drv {
    uint8_t *mem;                       /* DRV_MEM_SIZE bytes at DRV_MEM_GPA */
    uint64_t bump;                      /* the next free guest address */
    vdisk_guest_mem *gm;
    vdisk_virtio *v;
    struct drv_queue q[8];
    unsigned notifies;                  /* notify() calls seen */
    unsigned logs;                      /* log() calls seen */
    char last_log[512];
};

/* Sets up D around V: memory, features (all offered ones), every queue of
 * SIZE entries enabled. */
void drv_init(struct drv *d, vdisk_virtio *v, unsigned size);
void drv_fini(struct drv *d);

/* LEN bytes of guest memory (zeroed), aligned to 16. */
uint64_t drv_alloc(struct drv *d, size_t len);
void *drv_host(struct drv *d, uint64_t gpa);

/* Makes the chain of SEGS (through an indirect table when INDIRECT) and
 * puts its head on queue Q's available ring.  Returns the head. */
unsigned drv_add(struct drv *d, unsigned q, const struct drv_seg *segs, unsigned n, int indirect);

/* After vdisk_virtio_reset(): features and every queue again, on the same
 * (zeroed) rings, counters back to 0. */
void drv_restart(struct drv *d);

/* Stops queue Q and starts it again on the same rings from where it
 * stopped, as a vhost-user front end does (GET_VRING_BASE, then the ring's
 * set-up and SET_VRING_BASE). */
void drv_restart_queue(struct drv *d, unsigned q);

/* The bytes the process has allocated and not freed now (malloc's count,
 * or AddressSanitizer's, which does not count its quarantine). */
long long drv_heap_bytes(void);

/* Puts a raw head index on the available ring (for hostile tests). */
void drv_add_head(struct drv *d, unsigned q, uint16_t head);

/* Kicks queue Q; returns vdisk_virtio_queue_notify's result. */
int drv_kick(struct drv *d, unsigned q);

/* Waits until COUNT more used entries are on queue Q (fails the test after
 * 10 s); returns 0.  ID and LEN of the last one are stored when not NULL. */
void drv_wait(struct drv *d, unsigned q, unsigned count, uint32_t *id, uint32_t *len);

/* The used entry I (0-based since the start) of queue Q. */
void drv_used(struct drv *d, unsigned q, uint16_t i, uint32_t *id, uint32_t *len);

#endif
