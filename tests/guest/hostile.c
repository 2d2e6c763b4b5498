/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/hostile.c: the hostile test guest (guest-hostile.bin), the
 * main program of a second guest built from the same start.S, lib.c and
 * virtio.c as guest.bin.  It makes the mistakes of issue 8 item 6 ("bad
 * guests") on purpose and checks that vdisk-vmm answers each one as the
 * virtio spec and tools/vmm/mmio.c say, then that the devices still serve:
 *
 *   - set-up: features not offered (FEATURES_OK refused); QueueNum 0, not
 *     a power of two, above QueueNumMax, rings outside RAM or misaligned, a
 *     queue the device does not have: QueueReady stays 0 (mmio.c refuses
 *     to make such a queue ready);
 *   - MMIO: 1- and 2-byte and unaligned accesses to the 32-bit registers
 *     (reads return 0, writes are ignored), QueueNotify of a queue that
 *     does not exist (ignored), an unknown register and a
 *     configuration offset beyond the configuration space (read 0);
 *   - virtio-blk: data buffers outside guest RAM or across its end (status
 *     IOERR in the valid status byte), requests beyond the disk (IOERR),
 *     an unknown request type (UNSUPP), a looping chain, a next index
 *     beyond the table and an indirect table outside RAM (completed with
 *     used length 0), an available entry beyond the table (the queue
 *     breaks: DEVICE_NEEDS_RESET, served again after a reset), a write to
 *     the read-only disk (IOERR);
 *   - virtio-scsi: a command to target 5 (BAD_TARGET), READ(10) past the
 *     medium (ILLEGAL REQUEST, asc 0x21), WRITE(10) (DATA PROTECT, asc
 *     0x27), a data buffer outside RAM (FAILURE);
 *   - then a normal write and read-back on the disk, a normal read of the
 *     CD, "GUEST: hostile done" and power-off.
 *
 * The devices it expects (vdisk-vmm's order): a writable virtio-blk disk,
 * a read-only one, the virtio-scsi CD-ROM.
 */
#include "guest.h"
#include "virtio/mmio_regs.h"

#define INFO_MAGIC 0x4B534456u
#define MAX_DEVICES 16

#define BLK_F_RO    5
#define BLK_F_FLUSH 9

#define BLK_T_IN  0
#define BLK_T_OUT 1
#define BLK_T_BAD 127

#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2

#define BLK_QUEUE 64u

/* An address no guest RAM is at (with --mem below 3.75 GiB): no device
 * model may read or write there. */
#define OUTSIDE_RAM 0xF0000000u

#define SCSI_Q_REQUEST 2
#define SCSI_QUEUE     32u
#define SCSI_S_OK          0
#define SCSI_S_BAD_TARGET  3
#define SCSI_S_FAILURE     9
#define SCSI_GOOD            0x00
#define SCSI_CHECK_CONDITION 0x02
#define KEY_ILLEGAL_REQUEST  0x5
#define KEY_DATA_PROTECT     0x7
#define CD_BLOCK 2048u

#define FINAL_SECTOR 4096u
#define FINAL_BYTES  4096u

void guest_main(u32 info_addr);

static u32 mem_size;

static const char *blk_status_name(int s)
{
    switch (s) {
    case BLK_S_OK: return "OK";
    case BLK_S_IOERR: return "IOERR";
    case BLK_S_UNSUPP: return "UNSUPP";
    case 0xff: return "untouched";
    default: return "unknown";
    }
}

static void set_desc(struct virtq *q, unsigned i, u32 addr, u32 len, u16 flags, u16 next)
{
    q->desc[i].addr = addr;
    q->desc[i].len = len;
    q->desc[i].flags = flags;
    q->desc[i].next = next;
}

/* ---- virtio-blk ---------------------------------------------------------------- */

static struct blk_hdr *hdr;
static u8 *status;

/*
 * One request from descriptor 0: header, LEN bytes at ADDR (device-writable
 * for IN), the status byte.  Returns the status byte (0xff: untouched) and
 * the used length in *USED, or -1 when the request got no answer.
 */
static int blk_raw(struct vdev *d, u32 type, u64 sector, u32 addr, u32 len, u32 *used)
{
    struct virtq *q = &d->q[0];
    hdr->type = type;
    hdr->reserved = 0;
    hdr->sector = sector;
    *status = 0xff;
    unsigned n = 0;
    set_desc(q, n, (u32)hdr, sizeof *hdr, VRING_DESC_F_NEXT, (u16)(n + 1));
    n++;
    if (len) {
        set_desc(q, n, addr, len, (u16)((type == BLK_T_IN ? VRING_DESC_F_WRITE : 0) | VRING_DESC_F_NEXT),
                 (u16)(n + 1));
        n++;
    }
    set_desc(q, n, (u32)status, 1, VRING_DESC_F_WRITE, 0);
    *used = 0xdead;
    if (vdev_submit(d, 0, 0, used) < 0)
        return -1;
    return *(volatile u8 *)status;
}

/* Checks a request's status (and used length, unless WANT_USED is ~0). */
static void expect_blk(struct vdev *d, const char *what, int st, u32 used, int want,
                       u32 want_used)
{
    if (st < 0)
        return; /* vdev_submit failed already */
    if (st != want) {
        fail("%s: %s: status %s (%d), expected %s", d->name, what, blk_status_name(st), st,
             blk_status_name(want));
    } else if (want_used != ~0u && used != want_used) {
        fail("%s: %s: status %s but used length %u, expected %u", d->name, what,
             blk_status_name(st), used, want_used);
    } else if (want_used != ~0u) {
        say("%s: %s: status %s, used length %u ok", d->name, what, blk_status_name(st), used);
    } else {
        say("%s: %s: status %s ok", d->name, what, blk_status_name(st));
    }
}

/* A chain the device must refuse: completed, used length 0, status untouched. */
static void expect_refused(struct vdev *d, const char *what)
{
    u32 used = 0xdead;
    *status = 0xff;
    if (vdev_submit(d, 0, 0, &used) < 0)
        return;
    if (used != 0)
        fail("%s: %s: used length %u, expected 0", d->name, what, used);
    else if (*(volatile u8 *)status != 0xff)
        fail("%s: %s: the status byte was written (0x%02x)", d->name, what, *status);
    else
        say("%s: %s: completed, used length 0 ok", d->name, what);
}

static int blk_begin(struct vdev *d, u64 want)
{
    if (vdev_begin(d, want) < 0)
        return -1;
    if (!hdr) {
        hdr = alloc(sizeof *hdr, 16);
        status = alloc(1, 16);
        if (!hdr || !status)
            return -1;
    }
    return 0;
}

/* QueueNum values the device must refuse to make ready. */
static void bad_queue_sizes(struct vdev *d)
{
    u8 *rings = alloc(8192, 4096);
    if (!rings)
        return;
    vdev_set_reg(d, R_QUEUE_SEL, 0);
    u32 max = vdev_reg(d, R_QUEUE_NUM_MAX);
    if (max == 0 || max > 16384 || (max & (max - 1))) {
        fail("%s: QueueNumMax %u", d->name, max);
        return;
    }
    const struct { u32 num; const char *why; } bad[] = {
        {0, "zero"}, {100, "not a power of two"}, {max * 2, "above QueueNumMax"},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0] + 2; i++) {
        u32 desc = (u32)rings, num = i < 3 ? bad[i].num : 64;
        const char *why = i < 3 ? bad[i].why : i == 3 ? "rings at 0xf0000000, outside RAM"
                                                      : "descriptor table not 16-byte aligned";
        if (i == 3)
            desc = OUTSIDE_RAM;
        else if (i == 4)
            desc += 8;
        vdev_set_reg(d, R_QUEUE_NUM, num);
        vdev_set_reg(d, R_QUEUE_DESC_LO, desc);
        vdev_set_reg(d, R_QUEUE_DESC_HI, 0);
        vdev_set_reg(d, R_QUEUE_DRIVER_LO, (u32)rings + 4096);
        vdev_set_reg(d, R_QUEUE_DRIVER_HI, 0);
        vdev_set_reg(d, R_QUEUE_DEVICE_LO, (u32)rings + 6144);
        vdev_set_reg(d, R_QUEUE_DEVICE_HI, 0);
        vdev_set_reg(d, R_QUEUE_READY, 1);
        u32 ready = vdev_reg(d, R_QUEUE_READY);
        if (ready != 0) {
            fail("%s: QueueNum %u (%s): QueueReady reads %u, expected 0", d->name, num, why,
                 ready);
            vdev_set_reg(d, R_QUEUE_READY, 0);
        } else {
            say("%s: QueueNum %u (%s, QueueNumMax %u): QueueReady reads 0 ok", d->name, num,
                why, max);
        }
    }

    /* A queue the device does not have. */
    vdev_set_reg(d, R_QUEUE_SEL, 5);
    u32 max5 = vdev_reg(d, R_QUEUE_NUM_MAX);
    vdev_set_reg(d, R_QUEUE_NUM, 64);
    vdev_set_reg(d, R_QUEUE_READY, 1);
    u32 ready5 = vdev_reg(d, R_QUEUE_READY);
    vdev_set_reg(d, R_QUEUE_SEL, 0);
    if (max5 || ready5)
        fail("%s: queue 5 (the device has 1): QueueNumMax %u, QueueReady %u, expected 0",
             d->name, max5, ready5);
    else
        say("%s: queue 5 (the device has 1): QueueNumMax 0, QueueReady stays 0 ok", d->name);
}

/* Features the device did not offer: FEATURES_OK does not stick. */
static void bad_features(struct vdev *d)
{
    vdev_set_reg(d, R_STATUS, 0);
    vdev_set_reg(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    vdev_set_reg(d, R_DRV_FEATURES_SEL, 0);
    vdev_set_reg(d, R_DRV_FEATURES, 0);
    vdev_set_reg(d, R_DRV_FEATURES_SEL, 1);
    vdev_set_reg(d, R_DRV_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32) | 1u << (60 - 32));
    vdev_set_reg(d, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    u32 st = vdev_reg(d, R_STATUS);
    if (st & S_FEATURES_OK)
        fail("%s: feature bit 60 (not offered) accepted: status 0x%x", d->name, st);
    else
        say("%s: feature bit 60 (not offered): FEATURES_OK refused ok", d->name);
}

/*
 * An available ring entry naming descriptor 999 of 64: the queue breaks
 * (DEVICE_NEEDS_RESET), later kicks are not served, and a reset brings the
 * device back.
 */
static void broken_ring(struct vdev *d)
{
    struct virtq *q = &d->q[0];
    q->avail[2 + q->next_avail % q->size] = 999;
    barrier();
    q->next_avail++;
    *(volatile u16 *)&q->avail[1] = q->next_avail;
    barrier();
    vdev_set_reg(d, R_QUEUE_NOTIFY, 0);
    u32 st = 0;
    for (int i = 0; i < 100000 && !(st & S_DEVICE_NEEDS_RESET); i++)
        st = vdev_reg(d, R_STATUS);
    if (!(st & S_DEVICE_NEEDS_RESET)) {
        fail("%s: available entry 999: status 0x%x, no DEVICE_NEEDS_RESET", d->name, st);
        return;
    }
    vdev_set_reg(d, R_QUEUE_NOTIFY, 0);
    for (int i = 0; i < 100; i++)
        st = vdev_reg(d, R_STATUS);
    u16 idx = *(volatile u16 *)(q->used + 2);
    if (idx != q->last_used) {
        fail("%s: a broken queue completed something (used idx %u, was %u)", d->name, idx,
             q->last_used);
        return;
    }
    if (vdev_begin(d, 1ull << VIRTIO_F_VERSION_1 | 1u << BLK_F_FLUSH) < 0 ||
        vdev_queue(d, 0, BLK_QUEUE) < 0 || vdev_ready(d) < 0)
        return;
    u8 *buf = alloc(512, 512);
    u32 used;
    int rst = buf ? blk_raw(d, BLK_T_IN, 0, (u32)buf, 512, &used) : -1;
    if (rst == BLK_S_OK && used == 513)
        say("%s: available entry 999: DEVICE_NEEDS_RESET, after a reset a read ok", d->name);
    else if (rst >= 0)
        fail("%s: read after the reset: status %s, used length %u", d->name,
             blk_status_name(rst), used);
}

/* Accesses of the wrong width and to registers that do not exist. */
static void bad_mmio(struct vdev *d)
{
    u32 b = d->base;
    u32 r8 = mmio_read8(b + R_MAGIC), r16 = mmio_read16(b + R_VERSION);
    u32 r_unaligned = mmio_read32(b + R_MAGIC + 2);
    u32 r8_status = mmio_read8(b + R_STATUS);
    if (r8 || r16 || r_unaligned || r8_status)
        fail("%s: narrow or unaligned MMIO reads: 0x%x 0x%x 0x%x 0x%x, expected 0", d->name,
             r8, r16, r_unaligned, r8_status);
    else
        say("%s: MMIO reads of 1, 2 and 4 unaligned bytes read 0 ok", d->name);

    /* A byte write of 0 to Status would reset the device; a word write to
     * QueueSel would select queue 1, which does not exist. */
    u32 before = vdev_reg(d, R_STATUS);
    mmio_write8(b + R_STATUS, 0);
    mmio_write16(b + R_QUEUE_SEL, 1);
    mmio_write16(b + R_QUEUE_NOTIFY + 2, 0);
    u32 after = vdev_reg(d, R_STATUS), ready = vdev_reg(d, R_QUEUE_READY);
    if (after != before || ready != 1)
        fail("%s: after narrow MMIO writes: status 0x%x (was 0x%x), QueueReady %u", d->name,
             after, before, ready);
    else
        say("%s: MMIO writes of 1 and 2 bytes ignored (status 0x%02x, queue 0 ready) ok",
            d->name, after);

    vdev_set_reg(d, R_QUEUE_NOTIFY, 7);
    after = vdev_reg(d, R_STATUS);
    if (after != before)
        fail("%s: QueueNotify of queue 7: status 0x%x (was 0x%x)", d->name, after, before);
    else
        say("%s: QueueNotify of queue 7 (the device has 1) ignored ok", d->name);

    u32 unknown = mmio_read32(b + 0x0c8);
    mmio_write32(b + 0x0c8, 0xdeadbeef);
    u32 unknown2 = mmio_read32(b + 0x0c8);
    u32 beyond = mmio_read32(b + 0x1f0);
    after = vdev_reg(d, R_STATUS);
    if (unknown || unknown2 || beyond || after != before)
        fail("%s: unknown register 0x0c8 reads 0x%x then 0x%x, config 0x1f0 reads 0x%x, "
             "status 0x%x", d->name, unknown, unknown2, beyond, after);
    else
        say("%s: unknown register 0x0c8 and config offset 0x0f0 (0x1f0) read 0 ok", d->name);
}

static void hostile_blk(struct vdev *d)
{
    bad_features(d);
    if (blk_begin(d, 1ull << VIRTIO_F_VERSION_1 | 1u << BLK_F_FLUSH |
                         1u << VIRTIO_F_RING_INDIRECT_DESC) < 0)
        return;
    bad_queue_sizes(d);
    if (vdev_queue(d, 0, BLK_QUEUE) < 0 || vdev_ready(d) < 0)
        return;
    if (!(d->features >> VIRTIO_F_RING_INDIRECT_DESC & 1)) {
        fail("%s: the device does not offer INDIRECT_DESC", d->name);
        return;
    }
    say("%s: init ok, INDIRECT_DESC, queue size %u", d->name, d->q[0].size);
    bad_mmio(d);

    u64 capacity = vdev_config64(d, 0);
    u8 *buf = alloc(1024, 512);
    if (!buf)
        return;
    u32 used;
    int st;

    st = blk_raw(d, BLK_T_IN, 0, OUTSIDE_RAM, 512, &used);
    expect_blk(d, "read into 0xf0000000 (outside RAM)", st, used, BLK_S_IOERR, 1);
    st = blk_raw(d, BLK_T_OUT, 0, OUTSIDE_RAM, 512, &used);
    expect_blk(d, "write from 0xf0000000 (outside RAM)", st, used, BLK_S_IOERR, 1);
    st = blk_raw(d, BLK_T_IN, 0, mem_size - 256, 512, &used);
    expect_blk(d, "read into a buffer across the end of RAM", st, used, BLK_S_IOERR, 1);
    st = blk_raw(d, BLK_T_IN, capacity - 1, (u32)buf, 1024, &used);
    expect_blk(d, "read across the end of the disk", st, used, BLK_S_IOERR, ~0u);
    st = blk_raw(d, BLK_T_OUT, capacity, (u32)buf, 512, &used);
    expect_blk(d, "write past the end of the disk", st, used, BLK_S_IOERR, ~0u);
    st = blk_raw(d, BLK_T_OUT, ~0ull >> 1, (u32)buf, 512, &used);
    expect_blk(d, "write at sector 2^63-1", st, used, BLK_S_IOERR, ~0u);
    st = blk_raw(d, BLK_T_BAD, 0, (u32)buf, 512, &used);
    expect_blk(d, "request type 127", st, used, BLK_S_UNSUPP, ~0u);

    struct virtq *q = &d->q[0];
    hdr->type = BLK_T_IN;
    hdr->sector = 0;
    /* 0 -> 1 -> 0 -> ..., all driver-readable: only the loop is wrong. */
    set_desc(q, 0, (u32)hdr, sizeof *hdr, VRING_DESC_F_NEXT, 1);
    set_desc(q, 1, (u32)buf, 512, VRING_DESC_F_NEXT, 0);
    expect_refused(d, "looping descriptor chain");
    set_desc(q, 0, (u32)hdr, sizeof *hdr, VRING_DESC_F_NEXT, 200);
    expect_refused(d, "next index 200 beyond the table of 64");
    set_desc(q, 0, OUTSIDE_RAM, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    expect_refused(d, "indirect table at 0xf0000000 (outside RAM)");
    set_desc(q, 0, mem_size - 32, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    expect_refused(d, "indirect table across the end of RAM");
    broken_ring(d);
}

static void hostile_blk_ro(struct vdev *d)
{
    if (blk_begin(d, 1ull << VIRTIO_F_VERSION_1 | 1u << BLK_F_RO) < 0 ||
        vdev_queue(d, 0, BLK_QUEUE) < 0 || vdev_ready(d) < 0)
        return;
    if (!(d->features >> BLK_F_RO & 1)) {
        fail("%s: the read-only disk does not offer RO", d->name);
        return;
    }
    say("%s: init ok, RO, queue size %u", d->name, d->q[0].size);
    u8 *buf = alloc(512, 512);
    if (!buf)
        return;
    for (u32 i = 0; i < 512; i++)
        buf[i] = 0xEE;
    u32 used;
    int st = blk_raw(d, BLK_T_OUT, 0, (u32)buf, 512, &used);
    expect_blk(d, "write to the read-only disk", st, used, BLK_S_IOERR, ~0u);
    st = blk_raw(d, BLK_T_IN, 0, (u32)buf, 512, &used);
    if (st == BLK_S_OK && buf[0] == 0x3c && buf[511] == 0x3c)
        say("%s: read of sector 0: status OK, data 0x3c ok", d->name);
    else if (st >= 0)
        fail("%s: read of sector 0: status %s, bytes 0x%02x 0x%02x, expected OK and 0x3c",
             d->name, blk_status_name(st), buf[0], buf[511]);
}

/* After everything: the disk still writes and reads. */
static void final_blk(struct vdev *d)
{
    u8 *out = alloc_raw(FINAL_BYTES, 4096), *back = alloc(FINAL_BYTES, 4096);
    if (!out || !back)
        return;
    memset(out, 0xA5, FINAL_BYTES);
    u32 used;
    int st = blk_raw(d, BLK_T_OUT, FINAL_SECTOR, (u32)out, FINAL_BYTES, &used);
    if (st != BLK_S_OK) {
        if (st >= 0)
            fail("%s: final write: status %s", d->name, blk_status_name(st));
        return;
    }
    st = blk_raw(d, BLK_T_IN, FINAL_SECTOR, (u32)back, FINAL_BYTES, &used);
    if (st != BLK_S_OK) {
        if (st >= 0)
            fail("%s: final read: status %s", d->name, blk_status_name(st));
        return;
    }
    u32 k = first_difference(back, out, FINAL_BYTES);
    if (k != FINAL_BYTES || used != FINAL_BYTES + 1)
        fail("%s: final read back: byte %u differs, used length %u", d->name, k, used);
    else
        say("%s: after all that, wrote and read back %u bytes at sector %u ok", d->name,
            FINAL_BYTES, FINAL_SECTOR);
}

/* ---- virtio-scsi --------------------------------------------------------------- */

static u8 *req, *resp, *data;
static u32 cdb_size, sense_size;
static u64 tag;

struct scsi_result {
    u8 response, status, key, asc;
};

/*
 * One command to TARGET: request, data-out (OUT_LEN bytes at OUT), response,
 * data-in (IN_LEN bytes at IN).  0, or -1 when it got no answer.
 */
static int scsi_raw(struct vdev *d, u8 target, const u8 *cdb, u32 cdb_len, u32 out, u32 out_len,
                    u32 in, u32 in_len, struct scsi_result *r)
{
    struct virtq *q = &d->q[SCSI_Q_REQUEST];
    u32 req_len = 19 + cdb_size, resp_len = 12 + sense_size;
    memset(req, 0, req_len);
    req[0] = 1;
    req[1] = target;
    req[2] = 0x40; /* LUN 0, flat space */
    tag++;
    memcpy(req + 8, &tag, 8);
    memcpy(req + 19, cdb, cdb_len);
    memset(resp, 0xAA, resp_len);
    unsigned n = 0;
    set_desc(q, n, (u32)req, req_len, VRING_DESC_F_NEXT, (u16)(n + 1));
    n++;
    if (out_len) {
        set_desc(q, n, out, out_len, VRING_DESC_F_NEXT, (u16)(n + 1));
        n++;
    }
    set_desc(q, n, (u32)resp, resp_len, (u16)(VRING_DESC_F_WRITE | (in_len ? VRING_DESC_F_NEXT : 0)),
             (u16)(in_len ? n + 1 : 0));
    n++;
    if (in_len)
        set_desc(q, n, in, in_len, VRING_DESC_F_WRITE, 0);
    if (vdev_submit(d, SCSI_Q_REQUEST, 0, 0) < 0)
        return -1;
    r->response = resp[11];
    r->status = resp[10];
    r->key = r->asc = 0;
    if (le32(resp) >= 14 && (resp[12] & 0x7e) == 0x70) {
        r->key = resp[14] & 0xf;
        r->asc = resp[24];
    } else if (le32(resp) >= 4 && (resp[12] & 0x7e) == 0x72) {
        r->key = resp[13] & 0xf;
        r->asc = resp[14];
    }
    return 0;
}

static int read10(struct vdev *d, u32 lba, u32 blocks, u32 in, struct scsi_result *r)
{
    u8 cdb[10] = {0x28};
    put_be32(cdb + 2, lba);
    put_be16(cdb + 7, (u16)blocks);
    return scsi_raw(d, 0, cdb, sizeof cdb, 0, 0, in, blocks * CD_BLOCK, r);
}

static void expect_sense(struct vdev *d, const char *what, const struct scsi_result *r,
                         u8 key, const char *key_name, u8 asc)
{
    if (r->response != SCSI_S_OK || r->status != SCSI_CHECK_CONDITION || r->key != key ||
        r->asc != asc)
        fail("%s: %s: response %u status 0x%02x sense key %x asc 0x%02x, expected CHECK "
             "CONDITION %s asc 0x%02x", d->name, what, r->response, r->status, r->key, r->asc,
             key_name, asc);
    else
        say("%s: %s: CHECK CONDITION, %s, asc 0x%02x ok", d->name, what, key_name, r->asc);
}

static void hostile_scsi(struct vdev *d)
{
    if (vdev_begin(d, 1ull << VIRTIO_F_VERSION_1) < 0)
        return;
    sense_size = vdev_config32(d, 20);
    cdb_size = vdev_config32(d, 24);
    if (cdb_size < 10 || cdb_size > 256 || sense_size < 18 || sense_size > 256) {
        fail("%s: config: cdb_size %u, sense_size %u", d->name, cdb_size, sense_size);
        return;
    }
    if (vdev_queue(d, 0, 8) < 0 || vdev_queue(d, 1, 8) < 0 ||
        vdev_queue(d, SCSI_Q_REQUEST, SCSI_QUEUE) < 0 || vdev_ready(d) < 0)
        return;
    req = alloc(19 + cdb_size, 16);
    resp = alloc(12 + sense_size, 16);
    data = alloc(2 * CD_BLOCK, 4096);
    if (!req || !resp || !data)
        return;
    say("%s: init ok, queue size %u", d->name, d->q[SCSI_Q_REQUEST].size);

    struct scsi_result r;
    u8 tur[6] = {0x00};
    if (scsi_raw(d, 5, tur, sizeof tur, 0, 0, 0, 0, &r) < 0)
        return;
    if (r.response == SCSI_S_BAD_TARGET)
        say("%s: command to target 5: response BAD_TARGET ok", d->name);
    else
        fail("%s: command to target 5: response %u, expected %u (BAD_TARGET)", d->name,
             r.response, SCSI_S_BAD_TARGET);

    /* The unit attention of a new medium, then GOOD. */
    int good = 0;
    for (int i = 0; i < 8 && !good; i++) {
        if (scsi_raw(d, 0, tur, sizeof tur, 0, 0, 0, 0, &r) < 0)
            return;
        good = r.response == SCSI_S_OK && r.status == SCSI_GOOD;
    }
    if (!good) {
        fail("%s: TEST UNIT READY never GOOD (status 0x%02x)", d->name, r.status);
        return;
    }
    u8 cap[10] = {0x25};
    if (scsi_raw(d, 0, cap, sizeof cap, 0, 0, (u32)data, 8, &r) < 0)
        return;
    if (r.response != SCSI_S_OK || r.status != SCSI_GOOD) {
        fail("%s: READ CAPACITY(10): response %u status 0x%02x", d->name, r.response, r.status);
        return;
    }
    u32 blocks = be32(data) + 1;

    if (read10(d, blocks, 1, (u32)data, &r) == 0)
        expect_sense(d, "READ(10) past the end", &r, KEY_ILLEGAL_REQUEST, "ILLEGAL REQUEST",
                     0x21);
    if (read10(d, blocks - 1, 2, (u32)data, &r) == 0)
        expect_sense(d, "READ(10) across the end", &r, KEY_ILLEGAL_REQUEST, "ILLEGAL REQUEST",
                     0x21);
    u8 wr[10] = {0x2a};
    put_be32(wr + 2, 16);
    put_be16(wr + 7, 1);
    if (scsi_raw(d, 0, wr, sizeof wr, (u32)data, CD_BLOCK, 0, 0, &r) == 0)
        expect_sense(d, "WRITE(10)", &r, KEY_DATA_PROTECT, "DATA PROTECT", 0x27);
    if (read10(d, 16, 1, OUTSIDE_RAM, &r) == 0) {
        if (r.response == SCSI_S_FAILURE)
            say("%s: READ(10) into 0xf0000000 (outside RAM): response FAILURE ok", d->name);
        else
            fail("%s: READ(10) into 0xf0000000: response %u status 0x%02x, expected %u "
                 "(FAILURE)", d->name, r.response, r.status, SCSI_S_FAILURE);
    }

    memset(data, 0, CD_BLOCK);
    if (read10(d, 16, 1, (u32)data, &r) < 0)
        return;
    if (r.response == SCSI_S_OK && r.status == SCSI_GOOD && data[0] == 1 &&
        memcmp(data + 1, "CD001", 5) == 0)
        say("%s: after all that, READ(10) of block 16: CD001 ok", d->name);
    else
        fail("%s: READ(10) of block 16 after the mistakes: response %u status 0x%02x, "
             "type %u", d->name, r.response, r.status, data[0]);
}

/* ---- main ---------------------------------------------------------------------- */

void guest_main(u32 info_addr)
{
    serial_init();
    say("vdisk hostile guest");

    const u8 *info = (const u8 *)info_addr;
    struct vdev *blk[2] = {0, 0}, *scsi = 0;
    unsigned nblk = 0;
    if (info_addr == 0 || le32(info) != INFO_MAGIC) {
        fail("no info block at %p (EBX)", (void *)info_addr);
        goto out;
    }
    u32 count = le32(info + 4);
    mem_size = le32(info + 8);
    say("info block: %u virtio-mmio device(s), %u MiB of memory", count, mem_size >> 20);
    if (count > MAX_DEVICES)
        count = MAX_DEVICES;
    if (mem_size < 0x400000 || mem_size > OUTSIDE_RAM) {
        fail("%u bytes of memory: the hostile guest wants 4 MiB to 3.75 GiB", mem_size);
        goto out;
    }
    heap_init(mem_size);

    unsigned nscsi = 0;
    for (u32 i = 0; i < count; i++) {
        struct vdev *d = vdev_probe(info, i, &nblk, &nscsi);
        if (!d)
            continue;
        if (d->device_id == 2 && nblk <= 2)
            blk[nblk - 1] = d;
        else if (d->device_id == 8 && !scsi)
            scsi = d;
    }
    if (!blk[0] || !blk[1] || !scsi) {
        fail("expected two virtio-blk disks and a virtio-scsi CD-ROM");
        goto out;
    }
    hostile_blk(blk[0]);
    hostile_blk_ro(blk[1]);
    hostile_scsi(scsi);
    final_blk(blk[0]);
out:
    if (failures)
        say("hostile done, %u failure(s)", failures);
    else
        say("hostile done");
    power_off();
}
