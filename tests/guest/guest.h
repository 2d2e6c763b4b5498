/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/guest.h: the bundled test guest of vdisk-vmm, a freestanding
 * 32-bit program (no libc) that drives the VMM's virtio-mmio devices itself.
 *
 * It runs in 32-bit protected mode with paging off (guest physical address
 * = pointer) and interrupts off.  Every MMIO access goes through a pointer
 * in a register (mmio_read32 / mmio_write32 below): on KVM hosts that
 * emulate guest instructions the absolute-address `mov eax, [moffs32]`
 * forms have failed on MMIO.  No SSE, MMX or x87.
 *
 * On such hosts (kvm_pvm) every guest instruction goes through the
 * emulator, at roughly half a microsecond each: loops over buffers use
 * 32-bit `rep` string instructions, big buffers are not zeroed, and the
 * checksummed data is kept small, so that the guest stays well under a
 * second.
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>

#include "virtio/ring.h" /* lib/virtio/ring.h: the ring flags, feature bits */

/*
 * Everything is hidden: with -fpie the compiler then calls functions
 * directly and reaches globals relative to the GOT register, never through
 * absolute addresses or the GOT.
 */
#pragma GCC visibility push(hidden)

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef __SIZE_TYPE__ size_t;

_Static_assert(sizeof(u32) == 4 && sizeof(u64) == 8 && sizeof(void *) == 4, "32-bit guest");

/* ---- Port I/O and MMIO ------------------------------------------------------ */

static inline void outb(u16 port, u8 v)
{
    __asm__ __volatile__("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outw(u16 port, u16 v)
{
    __asm__ __volatile__("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

/* 32-bit MMIO, register-indirect on purpose (see above). */
static inline u32 mmio_read32(u32 addr)
{
    u32 v;
    __asm__ __volatile__("movl (%1), %0" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

static inline void mmio_write32(u32 addr, u32 v)
{
    __asm__ __volatile__("movl %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}

/*
 * MMIO of other widths, for the hostile guest's deliberate mistakes (the
 * virtio-mmio registers below the configuration space are 32-bit).
 */
static inline u8 mmio_read8(u32 addr)
{
    u8 v;
    __asm__ __volatile__("movb (%1), %0" : "=q"(v) : "r"(addr) : "memory");
    return v;
}

static inline u16 mmio_read16(u32 addr)
{
    u16 v;
    __asm__ __volatile__("movw (%1), %0" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

static inline void mmio_write8(u32 addr, u8 v)
{
    __asm__ __volatile__("movb %0, (%1)" : : "q"(v), "r"(addr) : "memory");
}

static inline void mmio_write16(u32 addr, u16 v)
{
    __asm__ __volatile__("movw %0, (%1)" : : "r"(v), "r"(addr) : "memory");
}

/* Orders the compiler's memory accesses (x86 keeps stores in order). */
static inline void barrier(void)
{
    __asm__ __volatile__("" : : : "memory");
}

/* ---- lib.c ------------------------------------------------------------------ */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
/* The offset of the first byte where A and B differ, N when none does. */
u32 first_difference(const void *a, const void *b, u32 n);

void serial_init(void);
/*
 * say: one "GUEST: ..." line on the serial port; fail: one "GUEST: FAIL
 * ..." line, counted.  printf formats: %s %c %d %u %x %X %p, with l or ll,
 * a width and the 0 flag.
 */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern unsigned failures;

/*
 * Memory from the guest's heap (2 MiB up to the end of RAM), zeroed by
 * alloc() and not by alloc_raw(); NULL (after fail()) when it runs out.
 */
void heap_init(u32 mem_size);
void *alloc(u32 size, u32 align);
void *alloc_raw(u32 size, u32 align);

/* CRC-32 as zlib and gzip compute it (reflected, polynomial 0xEDB88320). */
void crc32_init(void);
u32 crc32_update(u32 crc, const void *buf, u32 len);

u16 be16(const u8 *p);
u32 be32(const u8 *p);
u32 le32(const u8 *p);
void put_be32(u8 *p, u32 v);
void put_be16(u8 *p, u16 v);

__attribute__((noreturn)) void power_off(void);

/* ---- virtio.c: virtio 1.x over virtio-mmio ---------------------------------- */

struct vq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};

struct virtq {
    u32 size;
    struct vq_desc *desc;
    u16 *avail;           /* flags, idx, ring[size], used_event */
    u8 *used;             /* flags, idx, {id, len}[size], avail_event */
    u16 next_avail;
    u16 last_used;
};

#define VDEV_MAX_QUEUES 3

struct vdev {
    char name[8];         /* "blk0", "scsi0" */
    u32 base;             /* MMIO window */
    u32 irq;
    u32 device_id;
    u64 features;         /* accepted */
    struct virtq q[VDEV_MAX_QUEUES];
};

/* A buffer of a request: device-readable, or device-writable when WRITE. */
struct vbuf {
    void *addr;
    u32 len;
    int write;
};

/* Device I of the info block INFO (its window and interrupt), with its
 * device id and a name ("blkN", "scsiN", numbered through *NBLK and
 * *NSCSI); NULL, reported, when the window holds no virtio-mmio version 2
 * device or memory runs out. */
struct vdev *vdev_probe(const u8 *info, u32 i, unsigned *nblk, unsigned *nscsi);

/* The virtio-blk request header. */
struct blk_hdr {
    u32 type;
    u32 reserved;
    u64 sector;
};

u32 vdev_reg(const struct vdev *d, u32 off);
void vdev_set_reg(const struct vdev *d, u32 off, u32 v);
/* Config space: 32-bit aligned fields (the spec wants their own width). */
u32 vdev_config32(const struct vdev *d, u32 off);
u64 vdev_config64(const struct vdev *d, u32 off);

/*
 * vdev_begin: reset, ACKNOWLEDGE, DRIVER, and the features: those of WANT
 * that the device offers (VERSION_1 required), then FEATURES_OK checked.
 * Returns 0, or -1 after fail().
 */
int vdev_begin(struct vdev *d, u64 want);
/* vdev_queue: sets up queue QI with min(SIZE, QueueNumMax) entries. */
int vdev_queue(struct vdev *d, unsigned qi, u32 size);
/* vdev_ready: DRIVER_OK. */
int vdev_ready(struct vdev *d);
/*
 * vdev_request: N buffers chained from descriptor 0 onto queue QI, the
 * queue kicked, the used ring polled.  *USED_LEN gets what the device
 * wrote.  Returns 0, or -1 after fail() (timeout, bad used entry).
 */
int vdev_request(struct vdev *d, unsigned qi, const struct vbuf *bufs, unsigned n,
                 u32 *used_len);
/*
 * vdev_submit: the chain the caller wrote into the descriptor table from
 * HEAD put on the available ring of queue QI, the queue kicked and the used
 * ring polled as vdev_request does (the used entry must name HEAD).
 */
int vdev_submit(struct vdev *d, unsigned qi, u16 head, u32 *used_len);

/* ---- the device tests -------------------------------------------------------- */

void test_blk(struct vdev *d);
void test_scsi(struct vdev *d);

#pragma GCC visibility pop

#endif
