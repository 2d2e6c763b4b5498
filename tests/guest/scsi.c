/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/scsi.c: the virtio-scsi CD-ROM test (target 0, LUN 0).
 * TEST UNIT READY (a unit attention first, then GOOD), INQUIRY (peripheral
 * type 5), READ CAPACITY(10), READ(10) of block 16 (the ISO 9660 primary
 * volume descriptor), then the root directory, the blocks of HELLO.TXT and
 * their CRC-32, and a READ past the end (ILLEGAL REQUEST).
 */
#include "guest.h"

/* Queues: control, event, then requests. */
#define Q_CONTROL 0
#define Q_EVENT   1
#define Q_REQUEST 2

#define VIRTIO_SCSI_S_OK 0

#define SCSI_GOOD            0x00
#define SCSI_CHECK_CONDITION 0x02
#define KEY_ILLEGAL_REQUEST  0x5
#define KEY_UNIT_ATTENTION   0x6

#define QUEUE_SIZE 32u
#define SEGMENT    4096u
#define DATA_MAX   65536u
#define BLOCK      2048u
#define FILE_NAME  "HELLO.TXT"

struct scsi_result {
    u8 response;   /* virtio-scsi response (VIRTIO_SCSI_S_*) */
    u8 status;     /* SCSI status */
    u8 key, asc, ascq;
    u32 residual;
};

static u8 *req, *resp, *data;
static u32 cdb_size, sense_size, seg_count;
static u64 tag;

/* Runs CDB; LEN bytes of data in (device-writable) at DATA.  0 or -1. */
static int scsi_cmd(struct vdev *d, const u8 *cdb, u32 cdb_len, u32 len, struct scsi_result *r)
{
    struct vbuf bufs[QUEUE_SIZE];
    unsigned n = 0;
    u32 req_len = 19 + cdb_size, resp_len = 12 + sense_size;
    memset(req, 0, req_len);
    req[0] = 1;    /* LUN addressing: 1, target, then LUN 0 in the flat space */
    req[1] = 0;    /* target 0 */
    req[2] = 0x40; /* LUN 0 */
    req[3] = 0x00;
    tag++;
    memcpy(req + 8, &tag, 8);
    req[16] = 0;   /* SIMPLE */
    memcpy(req + 19, cdb, cdb_len);
    memset(resp, 0xAA, resp_len);
    bufs[n++] = (struct vbuf){req, req_len, 0};
    bufs[n++] = (struct vbuf){resp, resp_len, 1};
    for (u32 off = 0; off < len; off += SEGMENT) {
        if (n - 2 == seg_count) {
            fail("%s: %u bytes need more than %u segments", d->name, len, seg_count);
            return -1;
        }
        bufs[n++] = (struct vbuf){data + off, len - off < SEGMENT ? len - off : SEGMENT, 1};
    }
    if (vdev_request(d, Q_REQUEST, bufs, n, 0) < 0)
        return -1;
    u32 sense_len = le32(resp);
    r->residual = le32(resp + 4);
    r->status = resp[10];
    r->response = resp[11];
    r->key = r->asc = r->ascq = 0;
    if (sense_len >= 14 && (resp[12] & 0x7e) == 0x70) { /* fixed format */
        r->key = resp[12 + 2] & 0xf;
        r->asc = resp[12 + 12];
        r->ascq = resp[12 + 13];
    } else if (sense_len >= 4 && (resp[12] & 0x7e) == 0x72) { /* descriptor format */
        r->key = resp[12 + 1] & 0xf;
        r->asc = resp[12 + 2];
        r->ascq = resp[12 + 3];
    }
    if (r->response != VIRTIO_SCSI_S_OK) {
        fail("%s: CDB 0x%02x: virtio-scsi response %u", d->name, cdb[0], r->response);
        return -1;
    }
    return 0;
}

static int read10(struct vdev *d, u32 lba, u32 blocks, struct scsi_result *r)
{
    u8 cdb[10] = {0x28};
    put_be32(cdb + 2, lba);
    put_be16(cdb + 7, (u16)blocks);
    return scsi_cmd(d, cdb, sizeof cdb, blocks * BLOCK, r);
}

/* Reads BLOCKS blocks at LBA into data[]: 0, or -1 after fail(). */
static int read_blocks(struct vdev *d, u32 lba, u32 blocks, const char *what)
{
    struct scsi_result r;
    if (read10(d, lba, blocks, &r) < 0)
        return -1;
    if (r.status != SCSI_GOOD) {
        fail("%s: READ(10) of %u blocks at %u (%s): status 0x%02x, sense %x/%02x/%02x",
             d->name, blocks, lba, what, r.status, r.key, r.asc, r.ascq);
        return -1;
    }
    if (r.residual) {
        fail("%s: READ(10) of %u blocks at %u (%s): residual %u", d->name, blocks, lba, what,
             r.residual);
        return -1;
    }
    return 0;
}

/* Copies LEN bytes of space-padded text without the padding. */
static void trimmed(char *out, const u8 *p, u32 len)
{
    while (len && (p[len - 1] == ' ' || p[len - 1] == 0))
        len--;
    for (u32 i = 0; i < len; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[len] = 0;
}

/* Whether an ISO 9660 name (maybe with ";version") is NAME, ignoring case. */
static int name_is(const u8 *p, u32 len, const char *name)
{
    u32 i = 0;
    for (; i < len && p[i] != ';'; i++) {
        u8 c = p[i];
        if (c >= 'a' && c <= 'z')
            c = (u8)(c - 'a' + 'A');
        if (!name[i] || (u8)name[i] != c)
            return 0;
    }
    return name[i] == 0;
}

static void test_unit_ready(struct vdev *d)
{
    u8 cdb[6] = {0x00};
    struct scsi_result r;
    if (scsi_cmd(d, cdb, sizeof cdb, 0, &r) < 0)
        return;
    if (r.status != SCSI_CHECK_CONDITION || r.key != KEY_UNIT_ATTENTION) {
        fail("%s: first TEST UNIT READY: status 0x%02x sense %x/%02x/%02x, expected a unit "
             "attention", d->name, r.status, r.key, r.asc, r.ascq);
        return;
    }
    u8 asc = r.asc, ascq = r.ascq;
    for (int i = 0; i < 8; i++) {
        if (scsi_cmd(d, cdb, sizeof cdb, 0, &r) < 0)
            return;
        if (r.status == SCSI_GOOD) {
            say("%s: TEST UNIT READY: unit attention (asc 0x%02x ascq 0x%02x), then GOOD ok",
                d->name, asc, ascq);
            return;
        }
    }
    fail("%s: TEST UNIT READY: status 0x%02x sense %x/%02x/%02x after the unit attention",
         d->name, r.status, r.key, r.asc, r.ascq);
}

static void inquiry(struct vdev *d)
{
    u8 cdb[6] = {0x12, 0, 0, 0, 36, 0};
    struct scsi_result r;
    memset(data, 0, 36);
    if (scsi_cmd(d, cdb, sizeof cdb, 36, &r) < 0)
        return;
    if (r.status != SCSI_GOOD) {
        fail("%s: INQUIRY: status 0x%02x sense %x/%02x/%02x", d->name, r.status, r.key, r.asc,
             r.ascq);
        return;
    }
    char vendor[9], product[17];
    trimmed(vendor, data + 8, 8);
    trimmed(product, data + 16, 16);
    unsigned type = data[0] & 0x1f;
    if (type != 5 || (data[0] >> 5) != 0) {
        fail("%s: INQUIRY: peripheral qualifier %u type %u, expected 0 and 5 (CD/DVD)",
             d->name, data[0] >> 5, type);
        return;
    }
    say("%s: INQUIRY: peripheral type 5 (CD/DVD), %s, vendor '%s' product '%s' ok", d->name,
        data[1] & 0x80 ? "removable" : "not removable", vendor, product);
}

/* Returns the number of blocks, 0 on failure. */
static u32 read_capacity(struct vdev *d)
{
    u8 cdb[10] = {0x25};
    struct scsi_result r;
    if (scsi_cmd(d, cdb, sizeof cdb, 8, &r) < 0)
        return 0;
    if (r.status != SCSI_GOOD) {
        fail("%s: READ CAPACITY(10): status 0x%02x sense %x/%02x/%02x", d->name, r.status,
             r.key, r.asc, r.ascq);
        return 0;
    }
    u32 last = be32(data), bsize = be32(data + 4);
    if (bsize != BLOCK || last == 0xffffffffu) {
        fail("%s: READ CAPACITY(10): last block %u, block size %u", d->name, last, bsize);
        return 0;
    }
    say("%s: READ CAPACITY(10): %u blocks of %u bytes ok", d->name, last + 1, bsize);
    return last + 1;
}

static void read_file(struct vdev *d, u32 blocks, u32 root_lba, u32 root_size)
{
    if (root_size == 0 || root_size > DATA_MAX || root_lba >= blocks ||
        blocks - root_lba < (root_size + BLOCK - 1) / BLOCK) {
        fail("%s: root directory of %u bytes at block %u does not fit", d->name, root_size,
             root_lba);
        return;
    }
    if (read_blocks(d, root_lba, (root_size + BLOCK - 1) / BLOCK, "root directory") < 0)
        return;
    u32 off = 0, lba = 0, size = 0;
    int found = 0;
    char name[40];
    while (off < root_size) {
        u32 len = data[off];
        if (len == 0) { /* the rest of this block is padding */
            off = (off / BLOCK + 1) * BLOCK;
            continue;
        }
        if (len < 34 || off + len > root_size || 33u + data[off + 32] > len) {
            fail("%s: bad directory record of %u bytes at offset %u", d->name, len, off);
            return;
        }
        u32 name_len = data[off + 32];
        if (!(data[off + 25] & 2) && name_is(data + off + 33, name_len, FILE_NAME)) {
            lba = le32(data + off + 2);
            size = le32(data + off + 10);
            trimmed(name, data + off + 33, name_len < 39 ? name_len : 39);
            found = 1;
            break;
        }
        off += len;
    }
    if (!found) {
        fail("%s: no %s in the root directory", d->name, FILE_NAME);
        return;
    }
    u32 nblocks = (size + BLOCK - 1) / BLOCK;
    if (lba >= blocks || blocks - lba < nblocks) {
        fail("%s: %s: %u bytes at block %u, beyond the %u blocks of the medium", d->name, name,
             size, lba, blocks);
        return;
    }
    u32 crc = 0, left = size;
    for (u32 done = 0; done < nblocks;) {
        u32 chunk = nblocks - done < DATA_MAX / BLOCK ? nblocks - done : DATA_MAX / BLOCK;
        if (read_blocks(d, lba + done, chunk, name) < 0)
            return;
        u32 bytes = left < chunk * BLOCK ? left : chunk * BLOCK;
        crc = crc32_update(crc, data, bytes);
        left -= bytes;
        done += chunk;
    }
    say("%s: %s: %u bytes at block %u, crc32 %08x ok", d->name, name, size, lba, crc);
}

void test_scsi(struct vdev *d)
{
    if (vdev_begin(d, 1ull << VIRTIO_F_VERSION_1) < 0)
        return;
    u32 num_queues = vdev_config32(d, 0);
    u32 seg_max = vdev_config32(d, 4);
    sense_size = vdev_config32(d, 20);
    cdb_size = vdev_config32(d, 24);
    if (num_queues < 1 || cdb_size < 10 || cdb_size > 256 || sense_size < 18 ||
        sense_size > 256) {
        fail("%s: config: num_queues %u, cdb_size %u, sense_size %u", d->name, num_queues,
             cdb_size, sense_size);
        return;
    }
    if (vdev_queue(d, Q_CONTROL, 8) < 0 || vdev_queue(d, Q_EVENT, 8) < 0 ||
        vdev_queue(d, Q_REQUEST, QUEUE_SIZE) < 0 || vdev_ready(d) < 0)
        return;
    seg_count = d->q[Q_REQUEST].size - 2;
    if (seg_max && seg_max < seg_count)
        seg_count = seg_max;
    req = alloc(19 + cdb_size, 16);
    resp = alloc(12 + sense_size, 16);
    data = alloc_raw(DATA_MAX, 4096);
    if (!req || !resp || !data)
        return;
    say("%s: init ok, %u request queue(s), cdb size %u, sense size %u, queue size %u",
        d->name, num_queues, cdb_size, sense_size, d->q[Q_REQUEST].size);

    test_unit_ready(d);
    inquiry(d);
    u32 blocks = read_capacity(d);
    if (!blocks)
        return;

    if (blocks <= 16 || read_blocks(d, 16, 1, "primary volume descriptor") < 0)
        return;
    if (data[0] != 1 || memcmp(data + 1, "CD001", 5) != 0 || data[6] != 1) {
        fail("%s: block 16 is not a primary volume descriptor (type %u, id %02x%02x%02x%02x%02x)",
             d->name, data[0], data[1], data[2], data[3], data[4], data[5]);
        return;
    }
    char volume[33];
    trimmed(volume, data + 40, 32);
    u32 lbsize = data[128] | data[129] << 8;
    if (lbsize != BLOCK) {
        fail("%s: logical block size %u, expected 2048", d->name, lbsize);
        return;
    }
    say("%s: primary volume descriptor: CD001, volume '%s' ok", d->name, volume);
    read_file(d, blocks, le32(data + 156 + 2), le32(data + 156 + 10));

    struct scsi_result r;
    if (read10(d, blocks, 1, &r) < 0)
        return;
    if (r.status == SCSI_CHECK_CONDITION && r.key == KEY_ILLEGAL_REQUEST)
        say("%s: READ(10) past the end: ILLEGAL REQUEST (asc 0x%02x) ok", d->name, r.asc);
    else
        fail("%s: READ(10) past the end: status 0x%02x sense %x/%02x/%02x, expected ILLEGAL "
             "REQUEST", d->name, r.status, r.key, r.asc, r.ascq);
}
