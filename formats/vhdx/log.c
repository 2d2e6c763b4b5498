/* SPDX-License-Identifier: MIT */
/*
 * formats/vhdx/log.c: the VHDX log ([MS-VHDX] 2.3).
 *
 * The log is a circular buffer of entries at the current header's log
 * offset.  An entry (a multiple of 4 KiB) is a 64-byte header ("loge",
 * CRC-32C over the whole entry, length, tail, sequence number, descriptor
 * count, LogGuid, flushed and last file offsets), its descriptors (32
 * bytes each: "zero" ranges, "desc" data sectors) padded to 4 KiB, then one
 * 4 KiB data sector per data descriptor ("data", the sequence number's high
 * half, 4084 bytes, its low half; the sector's first 8 and last 4 bytes are
 * in the descriptor).
 *
 * The active sequence is the run of valid entries, each at the end of the
 * one before with the next sequence number, whose last entry (the head)
 * has the highest sequence number of all such runs and whose tail (an
 * offset the head records) is one of the run's entries.  Replaying applies
 * the entries from the tail to the head: data and zero descriptors written
 * to the file, the file extended to the head's last file offset, a flush,
 * then both headers rewritten with LogGuid zero and higher sequence
 * numbers (as QEMU does, which then reports the replay as a corruption
 * fixed).  A read-only open of an image with an active sequence is refused
 * in qemu-img's words.
 *
 * Bounds: the log read into memory is at most VHDX_MAX_REPLAY_LOG bytes,
 * the search sums at most VHDX_LOG_SEARCH_BUDGET bytes, and a descriptor
 * may write neither the file identifier and headers, nor the log, nor
 * past VHDX_MAX_FILE.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "driver.h"
#include "vhdx.h"

#define VHDX_MAX_REPLAY_LOG    (UINT64_C(64) << 20)
#define VHDX_LOG_SEARCH_BUDGET (UINT64_C(256) << 20)
#define VHDX_MAX_FILE          (UINT64_C(128) << 40)

struct log {
    struct vhdx *s;
    uint8_t *buf;                 /* the whole log */
    uint64_t len;
    uint64_t budget;              /* bytes the search may still sum */
};

/* LEN bytes of the log at OFF (wrapping) into OUT. */
static void log_get(const struct log *l, uint64_t off, void *out, uint64_t len)
{
    uint8_t *o = out;
    off %= l->len;
    uint64_t first = l->len - off < len ? l->len - off : len;
    memcpy(o, l->buf + off, first);
    if (first < len)
        memcpy(o + first, l->buf, len - first);
}

struct entry {
    uint64_t off, len, tail, seq, flushed, last;
    uint32_t ndesc;
};

/* Whether a valid entry starts at OFF; fills *E.  -ENOMEM, -E2BIG (the
 * budget) or 0 / 1. */
static int entry_at(struct log *l, uint64_t off, struct entry *e)
{
    uint8_t h[VHDX_LOG_ENTRY_HDR];
    log_get(l, off, h, sizeof h);
    if (memcmp(h, "loge", 4) != 0 || memcmp(h + 32, l->s->header + VHDX_H_LOG_GUID, 16) != 0)
        return 0;
    e->off = off;
    e->len = le32_load(h + 8);
    e->tail = le32_load(h + 12);
    e->seq = le64_load(h + 16);
    e->ndesc = le32_load(h + 24);
    e->flushed = le64_load(h + 48);
    e->last = le64_load(h + 56);
    if (e->len == 0 || e->len % VHDX_LOG_SECTOR || e->len > l->len ||
        e->tail % VHDX_LOG_SECTOR || e->tail >= l->len || e->seq == 0)
        return 0;
    uint64_t dsec = (VHDX_LOG_ENTRY_HDR + (uint64_t)e->ndesc * VHDX_LOG_DESC_SIZE +
                     VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR;
    if (dsec * VHDX_LOG_SECTOR > e->len)
        return 0;
    if (e->len > l->budget)
        return -E2BIG;
    l->budget -= e->len;
    uint8_t *b = malloc(e->len);
    if (!b)
        return -ENOMEM;
    log_get(l, off, b, e->len);
    int ok = le32_load(b + 4) == vhdx_crc32c(b, e->len, 4);
    uint64_t ndata = 0;
    for (uint32_t i = 0; ok && i < e->ndesc; i++) {
        const uint8_t *d = b + VHDX_LOG_ENTRY_HDR + (size_t)i * VHDX_LOG_DESC_SIZE;
        if (le64_load(d + 24) != e->seq || le64_load(d + 16) % VHDX_LOG_SECTOR) {
            ok = 0;
        } else if (memcmp(d, "desc", 4) == 0) {
            uint64_t at = (dsec + ndata) * VHDX_LOG_SECTOR;
            ndata++;
            if (at + VHDX_LOG_SECTOR > e->len) {
                ok = 0;
                break;
            }
            const uint8_t *sec = b + at;
            uint64_t sq = (uint64_t)le32_load(sec + 4) << 32 | le32_load(sec + 4092);
            ok = memcmp(sec, "data", 4) == 0 && sq == e->seq;
        } else if (memcmp(d, "zero", 4) == 0) {
            ok = le64_load(d + 8) % VHDX_LOG_SECTOR == 0;
        } else {
            ok = 0;
        }
    }
    if (ok && (dsec + ndata) * VHDX_LOG_SECTOR != e->len)
        ok = 0;
    free(b);
    return ok;
}

/*
 * The active sequence: the tail and the head; *FOUND.  A start reached
 * inside another run is not tried again: its run is a suffix of that one,
 * with the same head and no more entries.
 */
static int search(struct log *l, uint64_t *tail, struct entry *head, bool *found)
{
    *found = false;
    uint64_t slots = l->len / VHDX_LOG_SECTOR;
    uint8_t *inside = calloc(slots / 8 + 1, 1);
    uint64_t *offs = malloc(slots * sizeof *offs);
    int r = inside && offs ? 0 : -ENOMEM;
    for (uint64_t k = 0; r == 0 && k < slots; k++) {
        if (inside[k / 8] & (1u << (k % 8)))
            continue;
        struct entry cur;
        r = entry_at(l, k * VHDX_LOG_SECTOR, &cur);
        if (r <= 0)
            continue;
        r = 0;
        /* Walk on while the next entry continues the run. */
        uint64_t n = 0;
        offs[n++] = cur.off;
        while (n < slots) {
            uint64_t at = (cur.off + cur.len) % l->len;
            if (at == offs[0])
                break;
            struct entry next;
            int v = entry_at(l, at, &next);
            if (v < 0) {
                r = v;
                break;
            }
            if (v == 0 || next.seq != cur.seq + 1)
                break;
            cur = next;
            offs[n++] = at;
            inside[at / VHDX_LOG_SECTOR / 8] |= (uint8_t)(1u << (at / VHDX_LOG_SECTOR % 8));
        }
        /* The head's tail must be one of the run's entries. */
        bool tail_in = false;
        for (uint64_t i = 0; i < n && !tail_in; i++)
            tail_in = offs[i] == cur.tail;
        if (r == 0 && tail_in && (!*found || cur.seq > head->seq)) {
            *found = true;
            *head = cur;
            *tail = cur.tail;
        }
    }
    free(inside);
    free(offs);
    return r;
}

/* Writes LEN bytes of BUF (NULL: zeroes) at OFF of the file, inside the
 * bounds a descriptor may write; with DRY, only checks them. */
static int replay_write(struct log *l, const uint8_t *buf, uint64_t off, uint64_t len, bool dry)
{
    struct vhdx *s = l->s;
    if (off < VHDX_RT1_OFFSET || off + len > VHDX_MAX_FILE || off + len < off ||
        (s->log_length && off < s->log_offset + s->log_length && s->log_offset < off + len))
        return err_set(-EINVAL, "%s: a VHDX log descriptor writes %" PRIu64 " bytes at offset %"
                       PRIu64 ": over the file identifier, the headers or the log (at offset %"
                       PRIu64 "), or past %" PRIu64 " bytes", s->dev->filename, len, off,
                       s->log_offset, VHDX_MAX_FILE);
    if (dry)
        return 0;
    return buf ? dev_pwrite(s->file, buf, len, off) : dev_write_zeroes(s->file, off, len, 0);
}

static int replay_entry(struct log *l, const struct entry *e, bool dry)
{
    uint8_t *b = malloc(e->len);
    if (!b)
        return err_set(-ENOMEM, "out of memory");
    log_get(l, e->off, b, e->len);
    uint64_t dsec = (VHDX_LOG_ENTRY_HDR + (uint64_t)e->ndesc * VHDX_LOG_DESC_SIZE +
                     VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR;
    uint64_t ndata = 0;
    int r = 0;
    uint8_t sec[VHDX_LOG_SECTOR];
    for (uint32_t i = 0; r == 0 && i < e->ndesc; i++) {
        const uint8_t *d = b + VHDX_LOG_ENTRY_HDR + (size_t)i * VHDX_LOG_DESC_SIZE;
        uint64_t off = le64_load(d + 16);
        if (memcmp(d, "zero", 4) == 0) {
            r = replay_write(l, NULL, off, le64_load(d + 8), dry);
        } else {
            const uint8_t *ds = b + (dsec + ndata++) * VHDX_LOG_SECTOR;
            memcpy(sec, d + 8, 8);
            memcpy(sec + 8, ds + 8, 4084);
            memcpy(sec + 4092, d + 4, 4);
            r = replay_write(l, sec, off, VHDX_LOG_SECTOR, dry);
        }
    }
    free(b);
    return r;
}

int vhdx_guid_new(uint8_t *g)
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(g + got, 16 - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_set(-errno, "getrandom failed");
        }
        got += (size_t)n;
    }
    /* A version 4 GUID: Data3's top nibble, then the variant. */
    g[7] = (uint8_t)((g[7] & 0x0f) | 0x40);
    g[8] = (uint8_t)((g[8] & 0x3f) | 0x80);
    return 0;
}

int vhdx_update_headers(struct vhdx *s, bool new_data_guid, const uint8_t *log_guid)
{
    uint8_t h[VHDX_HEADER_SIZE];
    memcpy(h, s->header, sizeof h);
    if (log_guid)
        memcpy(h + VHDX_H_LOG_GUID, log_guid, 16);
    else
        memset(h + VHDX_H_LOG_GUID, 0, 16);
    int r = 0;
    if (!s->file_guid_done)
        r = vhdx_guid_new(h + VHDX_H_FILE_WRITE);
    if (r == 0 && new_data_guid)
        r = vhdx_guid_new(h + VHDX_H_DATA_WRITE);
    if (r < 0)
        return r;
    s->file_guid_done = true;
    for (int k = 0; k < 2; k++) {
        int idx = !s->cur;
        le64_store(h + VHDX_H_SEQUENCE, le64_load(s->header + VHDX_H_SEQUENCE) + 1);
        le32_store(h + VHDX_H_CHECKSUM, vhdx_crc32c(h, sizeof h, VHDX_H_CHECKSUM));
        r = dev_pwrite(s->file, h, sizeof h, idx ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET);
        if (r == 0)
            r = dev_flush(s->file);
        if (r < 0)
            return r;
        memcpy(s->header, h, sizeof h);
        s->cur = idx;
    }
    return 0;
}

int vhdx_log_write(struct vhdx *s, const uint64_t *sectors, size_t n, const uint8_t *data)
{
    const char *fn = s->dev->filename;
    uint64_t len = (uint64_t)(n + 1) * VHDX_LOG_SECTOR;
    if (n == 0 || n > VHDX_LOG_MAX_DESC || len > s->log_length)
        return err_set(-EINVAL, "%s: a VHDX log entry of %zu sectors does not fit the log (%"
                       PRIu64 " bytes)", fn, n, s->log_length);
    int r = 0;
    if (!s->log_active) {
        /* A new log: its GUID in both headers first; entries of earlier
         * logs (another GUID) are no longer valid. */
        r = vhdx_guid_new(s->log_guid);
        if (r == 0)
            r = vhdx_update_headers(s, false, s->log_guid);
        if (r < 0)
            return r;
        s->log_active = true;
        s->log_write = 0;
        s->log_seq = 1;
    }
    uint8_t *b = calloc(1, (size_t)len);
    if (!b)
        return err_set(-ENOMEM, "out of memory");
    uint64_t fsize = s->fsize;
    memcpy(b, "loge", 4);
    le32_store(b + 8, (uint32_t)len);
    /* Every entry before this one is in place and flushed: the active
     * sequence is this entry alone. */
    le32_store(b + 12, (uint32_t)s->log_write);
    le64_store(b + 16, s->log_seq);
    le32_store(b + 24, (uint32_t)n);
    memcpy(b + 32, s->log_guid, 16);
    le64_store(b + 48, fsize);
    le64_store(b + 56, fsize);
    for (size_t i = 0; i < n; i++) {
        uint8_t *d = b + VHDX_LOG_ENTRY_HDR + i * VHDX_LOG_DESC_SIZE;
        const uint8_t *src = data + i * VHDX_LOG_SECTOR;
        uint8_t *ds = b + (i + 1) * VHDX_LOG_SECTOR;
        memcpy(d, "desc", 4);
        memcpy(d + 4, src + 4092, 4);
        memcpy(d + 8, src, 8);
        le64_store(d + 16, sectors[i]);
        le64_store(d + 24, s->log_seq);
        memcpy(ds, "data", 4);
        le32_store(ds + 4, (uint32_t)(s->log_seq >> 32));
        memcpy(ds + 8, src + 8, 4084);
        le32_store(ds + 4092, (uint32_t)s->log_seq);
    }
    le32_store(b + 4, vhdx_crc32c(b, (size_t)len, 4));
    /* The entry at the write position, wrapping at the log's end. */
    uint64_t first = s->log_length - s->log_write;
    if (first > len)
        first = len;
    r = dev_pwrite(s->file, b, (size_t)first, s->log_offset + s->log_write);
    if (r == 0 && first < len)
        r = dev_pwrite(s->file, b + first, (size_t)(len - first), s->log_offset);
    free(b);
    if (r == 0)
        r = dev_flush(s->file);
    if (r < 0)
        return r;
    s->log_write = (s->log_write + len) % s->log_length;
    s->log_seq++;
    return 0;
}

int vhdx_log_close(struct vhdx *s)
{
    if (!s->log_active)
        return 0;
    int r = dev_flush(s->file);
    if (r == 0)
        r = vhdx_update_headers(s, false, NULL);
    if (r == 0)
        s->log_active = false;
    return r;
}

int vhdx_log_open(struct vhdx *s, bool writable)
{
    const char *fn = s->dev->filename;
    static const uint8_t zero[16];
    if (memcmp(s->header + VHDX_H_LOG_GUID, zero, 16) == 0)
        return 0;
    if (s->log_length == 0)
        return err_set(-EINVAL, "%s: the VHDX header names a log (LogGuid set) of length 0", fn);
    if (s->log_length > VHDX_MAX_REPLAY_LOG)
        return err_set(-EFBIG, "%s: the VHDX log (%" PRIu64 " bytes at offset %" PRIu64 ") is "
                       "larger than vdisk reads (%" PRIu64 " bytes)", fn, s->log_length,
                       s->log_offset, VHDX_MAX_REPLAY_LOG);
    struct log l = {.s = s, .len = s->log_length, .budget = VHDX_LOG_SEARCH_BUDGET};
    l.buf = malloc(l.len);
    if (!l.buf)
        return err_set(-ENOMEM, "out of memory for the log (%" PRIu64 " bytes)", l.len);
    int r = dev_pread(s->file, l.buf, l.len, s->log_offset);
    uint64_t tail = 0;
    struct entry head = {0};
    bool found = false;
    if (r == 0) {
        r = search(&l, &tail, &head, &found);
        if (r == -E2BIG)
            r = err_set(-EFBIG, "%s: the VHDX log at offset %" PRIu64 " holds more entries "
                        "than vdisk searches (%" PRIu64 " bytes summed)", fn, s->log_offset,
                        VHDX_LOG_SEARCH_BUDGET);
        else if (r < 0)
            r = err_set(r, "out of memory");
    }
    if (r == 0 && found && !writable)
        r = err_set(-EPERM, "VHDX image file '%s' opened read-only, but contains a log that "
                    "needs to be replayed (to replay the log, run: vdisk check -r all '%s')",
                    fn, fn);
    if (r == 0 && found && head.flushed > s->fsize)
        r = err_set(-EINVAL, "%s: the VHDX log's head entry (log offset %" PRIu64 ") says the "
                    "file was flushed up to %" PRIu64 " bytes; it has %" PRIu64 ": the image "
                    "has been truncated", fn, head.off, head.flushed, s->fsize);
    /* From the tail to the head: every descriptor checked, then written
     * (nothing is written when one is refused). */
    l.budget = UINT64_MAX; /* the sequence: at most the log, twice */
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t at = tail; r == 0 && found;) {
            struct entry e;
            r = entry_at(&l, at, &e) == 1 ? replay_entry(&l, &e, pass == 0)
                                           : err_set(-EIO, "%s: the VHDX log changed while "
                                                     "read", fn);
            if (r < 0 || e.seq == head.seq)
                break;
            at = (at + e.len) % l.len;
        }
    }
    free(l.buf);
    if (r == 0 && found && head.last > dev_size(s->file))
        r = dev_truncate(s->file, head.last);
    if (r == 0 && found)
        r = dev_flush(s->file);
    if (r == 0 && found)
        r = vhdx_update_headers(s, false, NULL);
    if (r == 0 && found) {
        s->log_replayed = true;
        s->fsize = dev_size(s->file);
    }
    return r;
}
