/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/blk.c: the virtio-blk test.  Reads the capacity and the
 * serial (GET_ID), reads sector 0 (the backing file's data under a qcow2
 * overlay) and prints its CRC-32, writes 64 KiB of the pattern
 * byte i = (i * 7 + 3) & 0xff at sector 2048, flushes, reads it back and
 * compares, and reads past the end expecting IOERR.
 */
#include "guest.h"

#define BLK_F_SIZE_MAX 1
#define BLK_F_SEG_MAX  2
#define BLK_F_RO       5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH    9

#define BLK_T_IN     0
#define BLK_T_OUT    1
#define BLK_T_FLUSH  4
#define BLK_T_GET_ID 8

#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2

#define PATTERN_SECTOR 2048u
#define PATTERN_BYTES  65536u
#define QUEUE_SIZE     64u
#define SEGMENT        4096u

static struct blk_hdr *hdr;
static u8 *status;
static u32 seg_bytes, seg_count;

static const char *status_name(u8 s)
{
    switch (s) {
    case BLK_S_OK: return "OK";
    case BLK_S_IOERR: return "IOERR";
    case BLK_S_UNSUPP: return "UNSUPP";
    default: return "unknown";
    }
}

/*
 * One request: header, LEN bytes of DATA cut into segments (device-writable
 * for IN and GET_ID), status.  With PERIOD (a multiple of the segment
 * size), every PERIOD bytes of the request come from the same PERIOD bytes
 * at DATA.  Returns the status byte, or -1 when the request got no answer.
 */
static int blk_request_rep(struct vdev *d, u32 type, u64 sector, void *data, u32 len,
                           u32 period)
{
    struct vbuf bufs[QUEUE_SIZE];
    unsigned n = 0;
    int in = type == BLK_T_IN || type == BLK_T_GET_ID;
    hdr->type = type;
    hdr->reserved = 0;
    hdr->sector = sector;
    bufs[n++] = (struct vbuf){hdr, sizeof *hdr, 0};
    for (u32 off = 0; off < len; off += seg_bytes) {
        if (n == seg_count + 1) {
            fail("%s: a request of %u bytes needs more than %u segments", d->name, len,
                 seg_count);
            return -1;
        }
        u32 piece = len - off < seg_bytes ? len - off : seg_bytes;
        bufs[n++] = (struct vbuf){(u8 *)data + (period ? off % period : off), piece, in};
    }
    *status = 0xff;
    bufs[n++] = (struct vbuf){status, 1, 1};
    u32 used = 0;
    if (vdev_request(d, 0, bufs, n, &used) < 0)
        return -1;
    return *status;
}

static int blk_request(struct vdev *d, u32 type, u64 sector, void *data, u32 len)
{
    return blk_request_rep(d, type, sector, data, len, 0);
}

static void feature_names(char *buf, u64 f)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        {VIRTIO_F_VERSION_1, "VERSION_1"}, {BLK_F_SIZE_MAX, "SIZE_MAX"},
        {BLK_F_SEG_MAX, "SEG_MAX"},        {BLK_F_RO, "RO"},
        {BLK_F_BLK_SIZE, "BLK_SIZE"},      {BLK_F_FLUSH, "FLUSH"},
    };
    char *p = buf;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(f >> names[i].bit & 1))
            continue;
        if (p != buf)
            *p++ = ' ';
        for (const char *s = names[i].name; *s;)
            *p++ = *s++;
    }
    *p = 0;
}

void test_blk(struct vdev *d)
{
    u64 want = 1ull << VIRTIO_F_VERSION_1 | 1u << BLK_F_SIZE_MAX | 1u << BLK_F_SEG_MAX |
               1u << BLK_F_RO | 1u << BLK_F_BLK_SIZE | 1u << BLK_F_FLUSH;
    if (vdev_begin(d, want) < 0 || vdev_queue(d, 0, QUEUE_SIZE) < 0 || vdev_ready(d) < 0)
        return;
    hdr = alloc(sizeof *hdr, 16);
    status = alloc(1, 16);
    if (!hdr || !status)
        return;

    /* Segments: 4 KiB, fewer bytes when size_max says so, as many as
     * seg_max and the queue (less header and status) allow. */
    seg_bytes = SEGMENT;
    if (d->features >> BLK_F_SIZE_MAX & 1) {
        u32 size_max = vdev_config32(d, 8);
        if (size_max >= 512 && size_max < seg_bytes)
            seg_bytes = size_max & ~511u;
    }
    seg_count = d->q[0].size - 2;
    if (d->features >> BLK_F_SEG_MAX & 1) {
        u32 seg_max = vdev_config32(d, 12);
        if (seg_max && seg_max < seg_count)
            seg_count = seg_max;
    }
    char names[80];
    feature_names(names, d->features);
    say("%s: init ok, features %s, queue size %u", d->name, names, d->q[0].size);

    u64 capacity = vdev_config64(d, 0);
    u32 blk_size = d->features >> BLK_F_BLK_SIZE & 1 ? vdev_config32(d, 20) : 512;
    say("%s: capacity %llu sectors (%llu MiB), block size %u", d->name, capacity,
        capacity >> 11, blk_size);

    u8 *id = alloc(32, 16);
    if (!id)
        return;
    int st = blk_request(d, BLK_T_GET_ID, 0, id, 20);
    if (st == BLK_S_OK) {
        char serial[21];
        unsigned i;
        for (i = 0; i < 20 && id[i]; i++)
            serial[i] = id[i] >= 0x20 && id[i] < 0x7f ? (char)id[i] : '?';
        serial[i] = 0;
        say("%s: GET_ID serial '%s' ok", d->name, serial);
    } else if (st >= 0) {
        fail("%s: GET_ID: status %s", d->name, status_name((u8)st));
    }

    u8 *first = alloc(512, 512);
    if (!first)
        return;
    if (capacity >= 1) {
        st = blk_request(d, BLK_T_IN, 0, first, 512);
        if (st == BLK_S_OK)
            say("%s: read 512 bytes at sector 0, crc32 %08x ok", d->name,
                crc32_update(0, first, 512));
        else if (st >= 0)
            fail("%s: read at sector 0: status %s", d->name, status_name((u8)st));
    }

    if (d->features >> BLK_F_RO & 1) {
        say("%s: read-only, write test skipped", d->name);
    } else if (capacity < PATTERN_SECTOR + PATTERN_BYTES / 512) {
        say("%s: smaller than %u sectors, write test skipped", d->name,
            PATTERN_SECTOR + PATTERN_BYTES / 512);
    } else {
        /*
         * The pattern repeats every 256 bytes, so every segment of the
         * write is the same: one 4 KiB buffer serves all of them (the
         * guest's instructions may be emulated, each costs).
         */
        u8 *out = alloc_raw(seg_bytes, 4096), *back = alloc_raw(PATTERN_BYTES, 4096);
        if (!out || !back)
            return;
        for (u32 i = 0; i < 256; i++)
            out[i] = (u8)(i * 7 + 3);
        for (u32 off = 256; off < seg_bytes; off *= 2)
            memcpy(out + off, out, seg_bytes - off < off ? seg_bytes - off : off);
        st = blk_request_rep(d, BLK_T_OUT, PATTERN_SECTOR, out, PATTERN_BYTES, seg_bytes);
        if (st == BLK_S_OK)
            say("%s: wrote %u bytes at sector %u ok", d->name, PATTERN_BYTES, PATTERN_SECTOR);
        else if (st >= 0)
            fail("%s: write at sector %u: status %s", d->name, PATTERN_SECTOR,
                 status_name((u8)st));
        if (d->features >> BLK_F_FLUSH & 1) {
            st = blk_request(d, BLK_T_FLUSH, 0, 0, 0);
            if (st == BLK_S_OK)
                say("%s: flush ok", d->name);
            else if (st >= 0)
                fail("%s: flush: status %s", d->name, status_name((u8)st));
        } else {
            fail("%s: the device does not offer FLUSH", d->name);
        }
        st = blk_request(d, BLK_T_IN, PATTERN_SECTOR, back, PATTERN_BYTES);
        if (st == BLK_S_OK) {
            /* BACK has never held the pattern: a read that misses a part fails. */
            u32 i = PATTERN_BYTES;
            for (u32 off = 0; off < PATTERN_BYTES; off += seg_bytes) {
                u32 len = PATTERN_BYTES - off < seg_bytes ? PATTERN_BYTES - off : seg_bytes;
                u32 k = first_difference(back + off, out, len);
                if (k != len) {
                    i = off + k;
                    break;
                }
            }
            if (i == PATTERN_BYTES)
                say("%s: read back %u bytes at sector %u, pattern ok", d->name,
                    PATTERN_BYTES, PATTERN_SECTOR);
            else
                fail("%s: read back: byte %u is 0x%02x, wrote 0x%02x", d->name, i, back[i],
                     out[i % seg_bytes]);
        } else if (st >= 0) {
            fail("%s: read back at sector %u: status %s", d->name, PATTERN_SECTOR,
                 status_name((u8)st));
        }
    }

    /* A request past the end gets IOERR, and the device goes on. */
    st = blk_request(d, BLK_T_IN, capacity, first, 512);
    if (st == BLK_S_IOERR)
        say("%s: read past the end: status IOERR ok", d->name);
    else if (st >= 0)
        fail("%s: read past the end (sector %llu): status %s, expected IOERR", d->name,
             capacity, status_name((u8)st));
}
