/* SPDX-License-Identifier: MIT */
/*
 * tests/virtio/blk.c: the virtio-blk model driven through virtqueues built
 * in memory: every request type, chained and indirect descriptors, requests
 * beyond the device, malformed chains and rings, many requests in flight.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/iso9660.h>
#include <vdisk/vdisk.h>
#include <vdisk/virtio.h>

#include "driver.h"
#include "harness.h"

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define DISK_SIZE (8u << 20)

static vdisk_dev *make_disk(const char *name, const char *format, int read_only)
{
    const char *path = scratch(name);
    ck_assert_int_eq(vdisk_create(path, format, DISK_SIZE, NULL), 0);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (read_only)
        ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, path, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    return dev;
}

static vdisk_virtio *make_blk(vdisk_dev *dev, const struct vdisk_virtio_blk_params *p)
{
    vdisk_virtio *v;
    ck_assert_msg(vdisk_virtio_blk_new(&v, dev, p) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);   /* the model keeps its own reference */
    return v;
}

/* A request of TYPE at SECTOR with the data at DATA (LEN bytes), split into
 * buffers of at most SPLIT bytes.  Returns the status byte; *USED gets the
 * used length. */
static int blk_req(struct drv *d, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                   uint32_t split, int indirect, uint32_t *used)
{
    uint64_t hdr = drv_alloc(d, 16), st = drv_alloc(d, 1);
    uint8_t *h = drv_host(d, hdr);
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    *(uint8_t *)drv_host(d, st) = 0xee;
    struct drv_seg segs[64];
    unsigned n = 0;
    segs[n++] = (struct drv_seg){hdr, 16, 0};
    int wr = type == T_IN || type == T_GET_ID;
    for (uint32_t off = 0; off < len; off += split) {
        uint32_t k = len - off < split ? len - off : split;
        ck_assert_uint_lt(n, 63);
        segs[n++] = (struct drv_seg){data + off, k, wr};
    }
    segs[n++] = (struct drv_seg){st, 1, 1};
    drv_add(d, 0, segs, n, indirect);
    ck_assert_int_eq(drv_kick(d, 0), 0);
    uint32_t id, l;
    drv_wait(d, 0, 1, &id, &l);
    if (used)
        *used = l;
    return *(uint8_t *)drv_host(d, st);
}

START_TEST(features_and_config)
{
    vdisk_virtio *v = make_blk(make_disk("f.raw", "raw", 0), NULL);
    ck_assert_uint_eq(vdisk_virtio_device_id(v), 2);
    uint64_t f = vdisk_virtio_features(v);
    ck_assert(f >> 32 & 1);              /* VERSION_1 */
    ck_assert(f >> 28 & 1);              /* INDIRECT_DESC */
    ck_assert(f >> 29 & 1);              /* EVENT_IDX */
    ck_assert(f >> 2 & 1);               /* SEG_MAX */
    ck_assert(f >> 9 & 1);               /* FLUSH */
    ck_assert(f >> 13 & 1);              /* DISCARD */
    ck_assert(f >> 14 & 1);              /* WRITE_ZEROES */
    ck_assert(!(f >> 5 & 1));            /* not RO */
    ck_assert_uint_eq(vdisk_virtio_config_size(v), 60);
    uint64_t cap = 0;
    uint32_t blk = 0, seg = 0;
    ck_assert_int_eq(vdisk_virtio_config_read(v, 0, &cap, 8), 0);
    ck_assert_int_eq(vdisk_virtio_config_read(v, 20, &blk, 4), 0);
    ck_assert_int_eq(vdisk_virtio_config_read(v, 12, &seg, 4), 0);
    ck_assert_uint_eq(cap, DISK_SIZE / 512);
    ck_assert_uint_eq(blk, 512);
    ck_assert_uint_eq(seg, 254);
    ck_assert_int_eq(vdisk_virtio_config_read(v, 60, &blk, 4), -EINVAL);
    /* legacy drivers and unknown features are refused */
    ck_assert_int_eq(vdisk_virtio_set_features(v, 0), -EINVAL);
    ck_assert_int_eq(vdisk_virtio_set_features(v, f | 1ull << 40), -EINVAL);
    ck_assert_int_eq(vdisk_virtio_queue_setup(v, 0, 100, 0, 0, 0), -EINVAL);
    ck_assert_int_eq(vdisk_virtio_queue_setup(v, 1, 64, 0, 0, 0), -EINVAL);
    vdisk_virtio_free(v);

    v = make_blk(make_disk("ro.raw", "raw", 1), NULL);
    f = vdisk_virtio_features(v);
    ck_assert(f >> 5 & 1);
    ck_assert(!(f >> 13 & 1));
    vdisk_virtio_free(v);
}
END_TEST

static void rw_roundtrip(const char *format, int indirect)
{
    vdisk_dev *dev = make_disk(indirect ? "rw-i.img" : "rw.img", format, 0);
    vdisk_virtio *v = make_blk(dev, NULL);
    struct drv d;
    drv_init(&d, v, 64);
    uint64_t seed = 7;
    uint64_t wbuf = drv_alloc(&d, 64 << 10), rbuf = drv_alloc(&d, 64 << 10);
    fill_random(drv_host(&d, wbuf), 64 << 10, &seed);
    uint32_t used;
    ck_assert_int_eq(blk_req(&d, T_OUT, 2048, wbuf, 64 << 10, 4096, indirect, &used), 0);
    ck_assert_uint_eq(used, 1);
    ck_assert_int_eq(blk_req(&d, T_FLUSH, 0, 0, 0, 512, indirect, &used), 0);
    ck_assert_int_eq(blk_req(&d, T_IN, 2048, rbuf, 64 << 10, 12288, indirect, &used), 0);
    ck_assert_uint_eq(used, (64 << 10) + 1);
    assert_same_bytes(drv_host(&d, rbuf), drv_host(&d, wbuf), 64 << 10, 2048 * 512,
                      "read back through the queue");
    drv_fini(&d);
    /* and on the image itself */
    vdisk_dev *dev2;
    ck_assert_int_eq(vdisk_open(&dev2, scratch(indirect ? "rw-i.img" : "rw.img"), NULL), 0);
    uint8_t *buf = malloc(64 << 10), *want = malloc(64 << 10);
    ck_assert_int_eq(vdisk_pread(dev2, buf, 64 << 10, 2048 * 512), 0);
    seed = 7;
    fill_random(want, 64 << 10, &seed);
    assert_same_bytes(buf, want, 64 << 10, 2048 * 512, "the image");
    free(buf);
    free(want);
    vdisk_close(dev2);
}

START_TEST(read_write_raw) { rw_roundtrip("raw", 0); }
END_TEST
START_TEST(read_write_qcow2_indirect) { rw_roundtrip("qcow2", 1); }
END_TEST

START_TEST(get_id_and_zeroes)
{
    struct vdisk_virtio_blk_params p = {.struct_size = sizeof p, .serial = "disk-serial-01"};
    vdisk_virtio *v = make_blk(make_disk("z.qcow2", "qcow2", 0), &p);
    struct drv d;
    drv_init(&d, v, 16);
    uint64_t id = drv_alloc(&d, 20);
    uint32_t used;
    ck_assert_int_eq(blk_req(&d, T_GET_ID, 0, id, 20, 20, 0, &used), 0);
    ck_assert_mem_eq(drv_host(&d, id), "disk-serial-01\0\0\0\0\0\0", 20);
    ck_assert_uint_eq(used, 21);

    uint64_t buf = drv_alloc(&d, 8192);
    memset(drv_host(&d, buf), 0x5a, 8192);
    ck_assert_int_eq(blk_req(&d, T_OUT, 8, buf, 8192, 8192, 0, NULL), 0);
    uint64_t seg = drv_alloc(&d, 16);
    uint64_t sector = 10;
    uint32_t n = 4, flags = 1;   /* unmap allowed */
    memcpy(drv_host(&d, seg), &sector, 8);
    memcpy((uint8_t *)drv_host(&d, seg) + 8, &n, 4);
    memcpy((uint8_t *)drv_host(&d, seg) + 12, &flags, 4);
    ck_assert_int_eq(blk_req(&d, T_WRITE_ZEROES, 0, seg, 16, 16, 0, NULL), 0);
    /* discard with the unmap flag is not allowed by the spec: UNSUPP */
    ck_assert_int_eq(blk_req(&d, T_DISCARD, 0, seg, 16, 16, 0, NULL), 2);
    flags = 0;
    memcpy((uint8_t *)drv_host(&d, seg) + 12, &flags, 4);
    sector = 100;
    memcpy(drv_host(&d, seg), &sector, 8);
    ck_assert_int_eq(blk_req(&d, T_DISCARD, 0, seg, 16, 16, 0, NULL), 0);
    memset(drv_host(&d, buf), 0xff, 8192);
    ck_assert_int_eq(blk_req(&d, T_IN, 8, buf, 8192, 8192, 0, NULL), 0);
    uint8_t want[8192];
    memset(want, 0x5a, sizeof want);
    memset(want + 1024, 0, 2048);
    assert_same_bytes(drv_host(&d, buf), want, 8192, 8 * 512, "after write_zeroes");
    /* a segment beyond the device */
    sector = DISK_SIZE / 512 - 2;
    memcpy(drv_host(&d, seg), &sector, 8);
    ck_assert_int_eq(blk_req(&d, T_WRITE_ZEROES, 0, seg, 16, 16, 0, NULL), 1);
    drv_fini(&d);
}
END_TEST

START_TEST(bad_requests_complete_with_errors)
{
    vdisk_virtio *v = make_blk(make_disk("bad.raw", "raw", 0), NULL);
    struct drv d;
    drv_init(&d, v, 32);
    uint64_t buf = drv_alloc(&d, 4096);
    /* beyond the end, overflowing the sector, unaligned length, unknown type */
    ck_assert_int_eq(blk_req(&d, T_IN, DISK_SIZE / 512, buf, 512, 512, 0, NULL), 1);
    ck_assert_int_eq(blk_req(&d, T_IN, DISK_SIZE / 512 - 1, buf, 1024, 1024, 0, NULL), 1);
    ck_assert_int_eq(blk_req(&d, T_OUT, UINT64_MAX / 512 + 1, buf, 512, 512, 0, NULL), 1);
    ck_assert_int_eq(blk_req(&d, T_OUT, UINT64_MAX, buf, 512, 512, 0, NULL), 1);
    ck_assert_int_eq(blk_req(&d, T_IN, 0, buf, 100, 100, 0, NULL), 1);
    ck_assert_int_eq(blk_req(&d, 77, 0, buf, 512, 512, 0, NULL), 2);
    ck_assert_uint_ge(d.logs, 1);

    /* a buffer outside guest memory: completed with nothing written */
    uint64_t hdr = drv_alloc(&d, 16), st = drv_alloc(&d, 1);
    *(uint8_t *)drv_host(&d, st) = 0xee;
    struct drv_seg s1[] = {{hdr, 16, 0}, {0x7000000000ull, 4096, 1}, {st, 1, 1}};
    drv_add(&d, 0, s1, 3, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    uint32_t id, len;
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 1);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, st), 1);     /* IOERR */
    /* a buffer straddling the end of guest memory */
    *(uint8_t *)drv_host(&d, st) = 0xee;
    struct drv_seg s2[] = {{hdr, 16, 0}, {DRV_MEM_GPA + DRV_MEM_SIZE - 512, 1024, 1}, {st, 1, 1}};
    drv_add(&d, 0, s2, 3, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 1);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, st), 1);
    /* the status byte itself outside guest memory: nothing written */
    struct drv_seg s2b[] = {{hdr, 16, 0}, {0x7000000000ull, 1, 1}};
    drv_add(&d, 0, s2b, 2, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    /* no status byte; a header too short */
    struct drv_seg s3[] = {{hdr, 16, 0}};
    drv_add(&d, 0, s3, 1, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    struct drv_seg s4[] = {{hdr, 8, 0}, {st, 1, 1}};
    drv_add(&d, 0, s4, 2, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, st), 1);
    /* a readable buffer after a writable one */
    struct drv_seg s5[] = {{hdr, 16, 0}, {buf, 512, 1}, {buf, 512, 0}, {st, 1, 1}};
    drv_add(&d, 0, s5, 4, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    /* a chain that loops: descriptor 0 -> 1 -> 0 */
    struct drv_queue *q = &d.q[0];
    uint8_t *desc = drv_host(&d, q->desc);
    uint64_t a = hdr;
    uint32_t l = 16;
    uint16_t fl = 1, nx = 1;
    memcpy(desc, &a, 8), memcpy(desc + 8, &l, 4), memcpy(desc + 12, &fl, 2),
        memcpy(desc + 14, &nx, 2);
    nx = 0;
    memcpy(desc + 16, &a, 8), memcpy(desc + 24, &l, 4), memcpy(desc + 28, &fl, 2),
        memcpy(desc + 30, &nx, 2);
    drv_add_head(&d, 0, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(id, 0);
    ck_assert_uint_eq(len, 0);
    /* a next index beyond the table */
    nx = 500;
    memcpy(desc + 14, &nx, 2);
    drv_add_head(&d, 0, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    /* an indirect table inside an indirect table, and one of odd length */
    uint64_t t = drv_alloc(&d, 32);
    uint8_t *tab = drv_host(&d, t);
    uint64_t t2 = drv_alloc(&d, 16);
    fl = 4;
    l = 16;
    memcpy(tab, &t2, 8), memcpy(tab + 8, &l, 4), memcpy(tab + 12, &fl, 2);
    l = 32;
    memcpy(desc, &t, 8), memcpy(desc + 8, &l, 4), memcpy(desc + 12, &fl, 2);
    drv_add_head(&d, 0, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    l = 24;
    memcpy(desc + 8, &l, 4);
    drv_add_head(&d, 0, 0);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);

    /* requests still work after all that */
    q->next_desc = 8;
    ck_assert_int_eq(blk_req(&d, T_IN, 0, buf, 512, 512, 0, NULL), 0);

    /* a head beyond the queue breaks the queue: needs reset, no crash */
    drv_add_head(&d, 0, 1000);
    ck_assert_int_eq(drv_kick(&d, 0), -EIO);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 1);
    vdisk_virtio_reset(v);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);
    drv_fini(&d);
}
END_TEST

START_TEST(read_only_device)
{
    vdisk_virtio *v = make_blk(make_disk("rodev.raw", "raw", 1), NULL);
    struct drv d;
    drv_init(&d, v, 8);
    uint64_t buf = drv_alloc(&d, 512);
    ck_assert_int_eq(blk_req(&d, T_OUT, 0, buf, 512, 512, 0, NULL), 1);
    ck_assert_int_eq(blk_req(&d, T_IN, 0, buf, 512, 512, 0, NULL), 0);
    drv_fini(&d);
}
END_TEST

START_TEST(ring_jump_breaks_queue)
{
    vdisk_virtio *v = make_blk(make_disk("jump.raw", "raw", 0), NULL);
    struct drv d;
    drv_init(&d, v, 8);
    uint16_t *avail = drv_host(&d, d.q[0].avail);
    avail[1] = 100;
    ck_assert_int_eq(drv_kick(&d, 0), -EIO);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 1);
    ck_assert_ptr_nonnull(strstr(d.last_log, "moved by more than the queue size"));
    drv_fini(&d);
}
END_TEST

/* A read of sector 0 into 512 bytes on queue Q: its head (made available). */
static unsigned read_chain(struct drv *d, unsigned q, uint64_t *status)
{
    uint64_t hdr = drv_alloc(d, 16), buf = drv_alloc(d, 512), st = drv_alloc(d, 1);
    uint32_t type = T_IN;
    memcpy(drv_host(d, hdr), &type, 4);
    *(uint8_t *)drv_host(d, st) = 0xee;
    struct drv_seg s[] = {{hdr, 16, 0}, {buf, 512, 1}, {st, 1, 1}};
    *status = st;
    return drv_add(d, q, s, 3, 0);
}

/*
 * Issue 14 item 1: a guest that makes the same head available again and
 * again, faster than the device uses it.  Each request is a new one for
 * the device: before the fix the requests in flight, and host memory, grew
 * without bound.  The queue now breaks (needs reset, logged once) when one
 * more than its size would be in flight; the other queue still serves and
 * a reset brings the device back.
 */
START_TEST(same_head_flood_breaks_queue)
{
    enum { QS = 256, ROUNDS = 1000 };
    struct vdisk_virtio_blk_params p = {.struct_size = sizeof p, .num_queues = 2};
    vdisk_virtio *v = make_blk(make_disk("flood.raw", "raw", 0), &p);
    struct drv d;
    drv_init(&d, v, QS);
    uint64_t st;
    unsigned head = read_chain(&d, 0, &st);
    long long heap0 = drv_heap_bytes();
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    /* Never polled: nothing completes, every request taken stays in flight. */
    int r = 0;
    unsigned rounds = 0;
    while (r == 0 && rounds < ROUNDS) {
        for (unsigned i = 0; i < QS; i++)
            drv_add_head(&d, 0, (uint16_t)head);
        r = drv_kick(&d, 0);
        rounds++;
    }
    long long grown = drv_heap_bytes() - heap0;
    ck_assert_msg(r == -EIO, "the queue took %u rounds of %u requests without breaking "
                  "(the heap grew by %lld bytes)", rounds, QS, grown);
    ck_assert_uint_eq(rounds, 1);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 1);
    ck_assert_str_eq(d.last_log, "virtio-blk: queue 0: virtqueue size exceeded: more requests "
                     "in flight than the queue's size (256); the queue is stopped until the "
                     "driver resets the device");
    struct vdisk_virtio_stats stats = {.struct_size = sizeof stats};
    vdisk_virtio_get_stats(v, &stats);
    ck_assert_uint_le(stats.bytes_read, (uint64_t)QS * 512);
    ck_assert_msg(grown < 16 << 20, "the heap grew by %lld bytes", grown);
    /* More kicks: refused, not logged again. */
    unsigned logs = d.logs;
    drv_add_head(&d, 0, (uint16_t)head);
    ck_assert_int_eq(drv_kick(&d, 0), -EIO);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_virtio_queue_notify: queue 0 is broken; the "
                     "device needs a reset");
    ck_assert_uint_eq(d.logs, logs);

    /* The other queue still serves. */
    unsigned h1 = read_chain(&d, 1, &st);
    ck_assert_int_eq(drv_kick(&d, 1), 0);
    uint32_t id, len;
    drv_wait(&d, 1, 1, &id, &len);
    ck_assert_uint_eq(id, h1);
    ck_assert_uint_eq(len, 513);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, st), 0);

    /* A reset brings queue 0 back. */
    vdisk_virtio_reset(v);
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);
    drv_restart(&d);
    head = read_chain(&d, 0, &st);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(id, head);
    ck_assert_uint_eq(len, 513);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, st), 0);
    drv_fini(&d);
}
END_TEST

/*
 * A driver whose used ring lies over its available ring: every request the
 * device completes writes the used index, which is the available index, so
 * the ring is never empty.  Chains that fail at once (descriptor 0 points
 * outside guest memory) complete inside the kick.  Found by fuzz-vmm_exits
 * (a libFuzzer timeout): the kick never returned.  Now one kick takes at
 * most a ring's worth of chains, the completion fd turns readable, and each
 * vdisk_virtio_poll() takes one more ring's worth, until the driver resets.
 */
START_TEST(ring_that_refills_itself_is_taken_in_bounded_passes)
{
    enum { QS = 8 };
    vdisk_virtio *v = make_blk(make_disk("refill.raw", "raw", 0), NULL);
    struct drv d;
    drv_init(&d, v, QS);
    struct drv_queue *q = &d.q[0];
    ck_assert_int_eq(vdisk_virtio_queue_enable(v, 0, 0), 0);
    uint16_t *ring = drv_host(&d, q->avail);
    ring[1] = 1; /* avail idx 1, and used idx 1 */
    ck_assert_int_eq(vdisk_virtio_queue_setup(v, 0, QS, q->desc, q->avail, q->avail), 0);
    ck_assert_int_eq(vdisk_virtio_queue_enable(v, 0, 1), 0);

    struct vdisk_virtio_stats st = {.struct_size = sizeof st};
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    vdisk_virtio_get_stats(v, &st);
    ck_assert_uint_eq(st.requests, QS);
    struct pollfd pfd = {.fd = vdisk_virtio_get_fd(v), .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    for (unsigned i = 2; i <= 4; i++) {
        ck_assert_int_ge(vdisk_virtio_poll(v), 0);
        vdisk_virtio_get_stats(v, &st);
        ck_assert_uint_eq(st.requests, (uint64_t)QS * i);
    }
    ck_assert_int_eq(vdisk_virtio_needs_reset(v), 0);

    /* A reset ends it: nothing is left to take. */
    vdisk_virtio_reset(v);
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    drv_restart(&d);
    uint64_t status;
    unsigned head = read_chain(&d, 0, &status);
    ck_assert_int_eq(drv_kick(&d, 0), 0);
    uint32_t id, len;
    drv_wait(&d, 0, 1, &id, &len);
    ck_assert_uint_eq(id, head);
    ck_assert_uint_eq(*(uint8_t *)drv_host(&d, status), 0);
    drv_fini(&d);
}
END_TEST

/* A CD-ROM served as a disk: read-only, 2048-byte blocks. */
START_TEST(cdrom_as_disk)
{
    const char *path = scratch("medium.bin");
    uint8_t *img = malloc(1 << 20);
    for (unsigned i = 0; i < (1 << 20); i++)
        img[i] = (uint8_t)(i / 2048 * 3 + i);
    write_file(path, img, 1 << 20);
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, path, NULL) == 0, "%s", vdisk_get_error());
    vdisk_virtio *v = make_blk(cd, NULL);
    uint64_t f = vdisk_virtio_features(v);
    ck_assert(f >> 5 & 1);
    uint32_t blk;
    ck_assert_int_eq(vdisk_virtio_config_read(v, 20, &blk, 4), 0);
    ck_assert_uint_eq(blk, 2048);
    struct drv d;
    drv_init(&d, v, 8);
    uint64_t buf = drv_alloc(&d, 4096);
    ck_assert_int_eq(blk_req(&d, T_IN, 12, buf, 4096, 4096, 0, NULL), 0);
    assert_same_bytes(drv_host(&d, buf), img + 12 * 512, 4096, 12 * 512, "CD-ROM data");
    ck_assert_int_eq(blk_req(&d, T_OUT, 12, buf, 4096, 4096, 0, NULL), 1);
    drv_fini(&d);
    free(img);
}
END_TEST

/* Many requests in flight against a model of the disk. */
START_TEST(many_in_flight)
{
    struct vdisk_virtio_blk_params p = {.struct_size = sizeof p, .num_queues = 2};
    vdisk_virtio *v = make_blk(make_disk("many.qcow2", "qcow2", 0), &p);
    struct drv d;
    drv_init(&d, v, 256);
    enum { N = 120, BS = 4096, SLOTS = 512 };
    uint8_t *model = calloc(SLOTS, BS);
    uint64_t seed = 99;
    uint64_t bufs = drv_alloc(&d, (size_t)N * BS);
    uint64_t hdrs = drv_alloc(&d, (size_t)N * 16), sts = drv_alloc(&d, N);
    for (int round = 0; round < 4; round++) {
        unsigned *perm = permutation(SLOTS, &seed);
        for (unsigned qi = 0; qi < 2; qi++) {
            for (unsigned i = 0; i < N / 2; i++) {
                unsigned k = qi * (N / 2) + i, slot = perm[k];
                uint8_t *b = drv_host(&d, bufs + (uint64_t)k * BS);
                uint32_t type = (round % 2 == 0) ? T_OUT : T_IN;
                if (type == T_OUT) {
                    fill_random(b, BS, &seed);
                    memcpy(model + (size_t)slot * BS, b, BS);
                }
                uint8_t *h = drv_host(&d, hdrs + 16 * k);
                uint64_t sector = (uint64_t)slot * (BS / 512);
                memcpy(h, &type, 4);
                memcpy(h + 8, &sector, 8);
                struct drv_seg s[] = {{hdrs + 16 * k, 16, 0},
                                      {bufs + (uint64_t)k * BS, BS, type == T_IN},
                                      {sts + k, 1, 1}};
                drv_add(&d, qi, s, 3, (k & 1));
            }
            ck_assert_int_eq(drv_kick(&d, qi), 0);
        }
        drv_wait(&d, 0, N / 2, NULL, NULL);
        drv_wait(&d, 1, N / 2, NULL, NULL);
        for (unsigned k = 0; k < N; k++) {
            ck_assert_uint_eq(*(uint8_t *)drv_host(&d, sts + k), 0);
            if (round % 2)
                assert_same_bytes(drv_host(&d, bufs + (uint64_t)k * BS),
                                  model + (size_t)perm[k] * BS, BS, (uint64_t)perm[k] * BS,
                                  "read in flight");
        }
        free(perm);
    }
    struct vdisk_virtio_stats st = {.struct_size = sizeof st};
    vdisk_virtio_get_stats(v, &st);
    ck_assert_uint_eq(st.requests, 4 * N);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_ge(d.notifies, 1);
    free(model);
    drv_fini(&d);
}
END_TEST

static Suite *blk_suite(void)
{
    Suite *s = suite_create("virtio-blk");
    TCase *tc = tcase_create("requests");
    tcase_add_test(tc, features_and_config);
    tcase_add_test(tc, read_write_raw);
    tcase_add_test(tc, read_write_qcow2_indirect);
    tcase_add_test(tc, get_id_and_zeroes);
    tcase_add_test(tc, read_only_device);
    tcase_add_test(tc, cdrom_as_disk);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_test(tc, bad_requests_complete_with_errors);
    tcase_add_test(tc, ring_jump_breaks_queue);
    tcase_add_test(tc, same_head_flood_breaks_queue);
    tcase_add_test(tc, ring_that_refills_itself_is_taken_in_bounded_passes);
    suite_add_tcase(s, tc);
    tc = tcase_create("load");
    tcase_add_test(tc, many_in_flight);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(blk_suite());
}
