/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/flood.c: the flooding test guest (guest-flood.bin), a third
 * main program on the same start.S, lib.c and virtio.c as guest.bin.  It
 * makes one head available again and again without waiting for the device
 * to use it (issue 14 item 1), so that a device which counted its requests
 * in flight without bounding them would grow the VMM's memory without end:
 *
 *   - blk0: a read whose chain is an indirect table of 1024 descriptors
 *     (the header, 1022 data buffers of 512 bytes over one guest buffer,
 *     the status byte), made available 256 at a time (the queue size) each
 *     time the device has taken the previous ones (EVENT_IDX: avail_event
 *     reaches the guest's index), for up to BLK_ROUNDS rounds.  The device
 *     either keeps up (every request used: nothing piles up) or breaks the
 *     queue when more than 256 would be in flight (DEVICE_NEEDS_RESET);
 *     which one depends on how fast the host's I/O is, so either is right.
 *     Then a reset and a plain read of sector 0 (the test writes 0x5a
 *     there).
 *   - scsi0: an event buffer (an indirect table of 1024 one-byte buffers)
 *     made available 256 at a time likewise.  The device holds event
 *     buffers (it sends no events), so the second round must break the
 *     event queue (DEVICE_NEEDS_RESET); before issue 14 it held them all.
 *     Then a reset and READ(10) of block 16 of the CD (CD001).
 *
 * The host side (tests/vmm/flood-guest-test.sh) checks the serial lines,
 * the VMM's log and its peak RSS.  Devices expected (vdisk-vmm's order):
 * one virtio-blk disk, then the virtio-scsi CD-ROM.
 */
#include "guest.h"
#include "virtio/mmio_regs.h"

#define INFO_MAGIC 0x4B534456u
#define MAX_DEVICES 16

#define BLK_T_IN 0
#define BLK_S_OK 0

#define TABLE 1024u         /* descriptors per indirect table (the device's maximum) */
#define BLK_ROUNDS 32u
#define EVENT_ROUNDS 128u
#define STATUS_CHECKS 200000u /* Status reads (VM exits) while waiting for one round */

#define SCSI_Q_EVENT   1
#define SCSI_Q_REQUEST 2
#define CD_BLOCK 2048u

void guest_main(u32 info_addr);

static void set_desc(struct vq_desc *t, unsigned i, u32 addr, u32 len, u16 flags, u16 next)
{
    t[i].addr = addr;
    t[i].len = len;
    t[i].flags = flags;
    t[i].next = next;
}

/* The device's avail_event: after the used ring's entries. */
static u16 avail_event(const struct virtq *q)
{
    return *(volatile const u16 *)(q->used + 4 + 8 * q->size);
}

static int needs_reset(const struct vdev *d)
{
    return (vdev_reg(d, R_STATUS) & S_DEVICE_NEEDS_RESET) != 0;
}

/*
 * Makes head 0 of queue QI available ROUNDS times QUEUE SIZE times, a
 * queue's worth at a time once the device has taken the previous one.
 * Returns the round in which the device broke the queue (1-based), 0 when
 * it took them all, -1 (after fail()) when it did neither.
 */
static int flood(struct vdev *d, unsigned qi, unsigned rounds)
{
    struct virtq *q = &d->q[qi];
    for (unsigned r = 1; r <= rounds; r++) {
        for (u32 i = 0; i < q->size; i++)
            q->avail[2 + (u16)(q->next_avail + i) % q->size] = 0;
        barrier();
        q->next_avail = (u16)(q->next_avail + q->size);
        *(volatile u16 *)&q->avail[1] = q->next_avail;
        barrier();
        vdev_set_reg(d, R_QUEUE_NOTIFY, qi);
        /* Wait until the device has taken them all, or broke the queue. */
        u32 checks = 0;
        for (u32 spin = 0; avail_event(q) != q->next_avail; spin++) {
            if ((spin & 255) != 0)
                continue;
            if (needs_reset(d))
                return (int)r;
            if (++checks == STATUS_CHECKS) {
                fail("%s: queue %u: round %u: the device neither took the buffers nor broke "
                     "the queue (avail_event %u, index %u)", d->name, qi, r, avail_event(q),
                     q->next_avail);
                return -1;
            }
        }
    }
    return needs_reset(d) ? (int)rounds : 0;
}

/* ---- virtio-blk ---------------------------------------------------------------- */

static void flood_blk(struct vdev *d)
{
    u64 want = 1ull << VIRTIO_F_VERSION_1 | 1u << VIRTIO_F_RING_EVENT_IDX | 1u << VIRTIO_F_RING_INDIRECT_DESC;
    if (vdev_begin(d, want) < 0 || vdev_queue(d, 0, 256) < 0 || vdev_ready(d) < 0)
        return;
    if (d->features != want) {
        fail("%s: features 0x%llx, expected 0x%llx", d->name, d->features, want);
        return;
    }
    struct virtq *q = &d->q[0];
    say("%s: init ok, EVENT_IDX, INDIRECT_DESC, queue size %u", d->name, q->size);

    struct blk_hdr *hdr = alloc(sizeof *hdr, 16);
    u8 *buf = alloc(512, 512), *status = alloc(16, 16);
    struct vq_desc *table = alloc(TABLE * sizeof *table, 16);
    if (!hdr || !buf || !status || !table)
        return;
    hdr->type = BLK_T_IN;
    hdr->sector = 0;
    set_desc(table, 0, (u32)hdr, sizeof *hdr, VRING_DESC_F_NEXT, 1);
    for (u32 i = 1; i < TABLE - 1; i++)
        set_desc(table, i, (u32)buf, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, (u16)(i + 1));
    set_desc(table, TABLE - 1, (u32)status, 1, VRING_DESC_F_WRITE, 0);
    set_desc(q->desc, 0, (u32)table, TABLE * sizeof *table, VRING_DESC_F_INDIRECT, 0);

    int r = flood(d, 0, BLK_ROUNDS);
    if (r < 0)
        return;
    if (r == 0) {
        /* The device kept up: every request must come back. */
        u32 checks = 0;
        while (*(volatile u16 *)(q->used + 2) != q->next_avail) {
            if (needs_reset(d)) {
                r = 1;
                break;
            }
            if (++checks == STATUS_CHECKS) {
                fail("%s: %u requests made available, %u used", d->name, q->next_avail,
                     *(volatile u16 *)(q->used + 2));
                return;
            }
        }
    }
    say("%s: a read of %u buffers made available again and again: %s ok", d->name, TABLE - 2,
        r ? "DEVICE_NEEDS_RESET" : "every one used");

    /* A reset, and the device serves again. */
    if (vdev_begin(d, 1ull << VIRTIO_F_VERSION_1) < 0 || vdev_queue(d, 0, 64) < 0 ||
        vdev_ready(d) < 0)
        return;
    u8 *data = alloc(512, 512);
    if (!data)
        return;
    *status = 0xff;
    const struct vbuf b[3] = {{hdr, sizeof *hdr, 0}, {data, 512, 1}, {status, 1, 1}};
    u32 used;
    if (vdev_request(d, 0, b, 3, &used) < 0)
        return;
    if (*status == BLK_S_OK && used == 513 && data[0] == 0x5a && data[511] == 0x5a)
        say("%s: after a reset, a read of sector 0: 0x5a ok", d->name);
    else
        fail("%s: read after the reset: status %u, used length %u, data 0x%02x", d->name,
             *status, used, data[0]);
}

/* ---- virtio-scsi --------------------------------------------------------------- */

/* READ(10) of one block at LBA into DATA; returns the SCSI status, -1 for no
 * answer or a response other than OK. */
static int read10(struct vdev *d, u32 lba, u8 *req, u8 *resp, u8 *data)
{
    u32 cdb_size = vdev_config32(d, 24), sense_size = vdev_config32(d, 20);
    memset(req, 0, 19 + cdb_size);
    req[0] = 1;
    req[2] = 0x40; /* target 0, LUN 0 */
    u8 *cdb = req + 19;
    cdb[0] = 0x28;
    put_be32(cdb + 2, lba);
    put_be16(cdb + 7, 1);
    const struct vbuf b[3] = {{req, 19 + cdb_size, 0}, {resp, 12 + sense_size, 1},
                              {data, CD_BLOCK, 1}};
    u32 used;
    if (vdev_request(d, SCSI_Q_REQUEST, b, 3, &used) < 0)
        return -1;
    if (resp[11] != 0) {
        fail("%s: READ(10): response %u", d->name, resp[11]);
        return -1;
    }
    return resp[10];
}

static void flood_scsi(struct vdev *d)
{
    u64 want = 1ull << VIRTIO_F_VERSION_1 | 1u << VIRTIO_F_RING_EVENT_IDX | 1u << VIRTIO_F_RING_INDIRECT_DESC;
    if (vdev_begin(d, want) < 0)
        return;
    if (d->features != want) {
        fail("%s: features 0x%llx, expected 0x%llx", d->name, d->features, want);
        return;
    }
    if (vdev_queue(d, 0, 8) < 0 || vdev_queue(d, SCSI_Q_EVENT, 256) < 0 ||
        vdev_queue(d, SCSI_Q_REQUEST, 8) < 0 || vdev_ready(d) < 0)
        return;
    struct virtq *q = &d->q[SCSI_Q_EVENT];
    say("%s: init ok, EVENT_IDX, INDIRECT_DESC, event queue size %u", d->name, q->size);

    u8 *event = alloc(16, 16);
    struct vq_desc *table = alloc(TABLE * sizeof *table, 16);
    if (!event || !table)
        return;
    for (u32 i = 0; i < TABLE; i++) {
        int last = i + 1 == TABLE;
        set_desc(table, i, (u32)event, 1, (u16)(VRING_DESC_F_WRITE | (last ? 0 : VRING_DESC_F_NEXT)),
                 (u16)(last ? 0 : i + 1));
    }
    set_desc(q->desc, 0, (u32)table, TABLE * sizeof *table, VRING_DESC_F_INDIRECT, 0);

    int r = flood(d, SCSI_Q_EVENT, EVENT_ROUNDS);
    if (r < 0)
        return;
    if (r == 2)
        say("%s: an event buffer made available again and again: DEVICE_NEEDS_RESET in the "
            "second round ok", d->name);
    else if (r == 0)
        fail("%s: %u event buffers made available %u at a time, all taken: no "
             "DEVICE_NEEDS_RESET", d->name, EVENT_ROUNDS * q->size, q->size);
    else
        fail("%s: event queue: DEVICE_NEEDS_RESET in round %d, expected 2", d->name, r);

    /* A reset, and the device serves again (past the power-on unit attention). */
    if (vdev_begin(d, 1ull << VIRTIO_F_VERSION_1) < 0 || vdev_queue(d, 0, 8) < 0 ||
        vdev_queue(d, SCSI_Q_EVENT, 8) < 0 || vdev_queue(d, SCSI_Q_REQUEST, 8) < 0 ||
        vdev_ready(d) < 0)
        return;
    u8 *req = alloc(19 + 256, 16), *resp = alloc(12 + 256, 16), *data = alloc(CD_BLOCK, 4096);
    if (!req || !resp || !data)
        return;
    int st = 2;
    for (int i = 0; i < 4 && st == 2; i++)
        st = read10(d, 16, req, resp, data);
    if (st == 0 && data[0] == 1 && memcmp(data + 1, "CD001", 5) == 0)
        say("%s: after a reset, READ(10) of block 16: CD001 ok", d->name);
    else if (st >= 0)
        fail("%s: READ(10) of block 16 after the reset: status 0x%02x, type %u", d->name, st,
             data[0]);
}

/* ---- main ---------------------------------------------------------------------- */

void guest_main(u32 info_addr)
{
    serial_init();
    say("vdisk flood guest");

    const u8 *info = (const u8 *)info_addr;
    struct vdev *blk = 0, *scsi = 0;
    if (info_addr == 0 || le32(info) != INFO_MAGIC) {
        fail("no info block at %p (EBX)", (void *)info_addr);
        goto out;
    }
    u32 count = le32(info + 4), mem = le32(info + 8);
    say("info block: %u virtio-mmio device(s), %u MiB of memory", count, mem >> 20);
    if (count > MAX_DEVICES)
        count = MAX_DEVICES;
    if (mem < 0x400000) {
        fail("%u bytes of memory, the guest needs 4 MiB", mem);
        goto out;
    }
    heap_init(mem);

    unsigned nblk = 0, nscsi = 0;
    for (u32 i = 0; i < count; i++) {
        struct vdev *d = vdev_probe(info, i, &nblk, &nscsi);
        if (d && d->device_id == 2 && !blk)
            blk = d;
        else if (d && d->device_id == 8 && !scsi)
            scsi = d;
    }
    if (!blk || !scsi) {
        fail("expected a virtio-blk disk and a virtio-scsi CD-ROM");
        goto out;
    }
    flood_blk(blk);
    flood_scsi(scsi);
out:
    if (failures)
        say("flood done, %u failure(s)", failures);
    else
        say("flood done");
    power_off();
}
