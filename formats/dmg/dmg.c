/* SPDX-License-Identifier: MIT */
/*
 * formats/dmg/dmg.c: Apple disk images (UDIF, ".dmg"), read: opened
 * read-only, for converting out, info, map and compare, as QEMU reads
 * them.
 *
 * Layout (big-endian):
 *   - the "koly" trailer of 512 bytes near the end of the file (QEMU looks
 *     for the magic in the last 1023 bytes, first match, as a file's size
 *     may have been rounded): the data fork's offset (+0x18) and length
 *     (+0x20), the resource fork's (+0x28, +0x30), the XML property
 *     list's (+0xd8, +0xe0) and the disk's sectors (+0x1ec);
 *   - the chunk tables, "mish" blocks: in the resource fork when it is
 *     not empty (the old layout: a 32-bit offset to the resource data at
 *     +0, its length at +8, then resources of a 32-bit length and its
 *     bytes), else base64 in each <data> element of the XML property list;
 *   - a mish block: its first sector (+8), its offset in the data fork
 *     (+0x18), and from +204 entries of 40 bytes: type, comment, first
 *     sector, sectors, offset in the data fork, length; the entries' sectors
 *     and offsets count from the block's.
 * Chunk types: zeroes (0) and ignore (2) read as zeroes, raw (1) is the
 * bytes, zlib (0x80000005) and bzip2 (0x80000006) decompress to exactly the
 * chunk's sectors.  ADC (0x80000004), which QEMU does not read either, and
 * lzfse (0x80000007; no library in Debian 12) fail the reads that meet them,
 * naming the chunk; comments and the terminator are skipped, and entries of
 * other types too, as QEMU skips them (their sectors read as an error).
 *
 * Everything is checked at open, before any read, with named bounds (the
 * property list's and the resource fork's sizes, the number of chunks,
 * QEMU's 64 MiB per chunk, compressed and not): the trailer's fields lie
 * before the trailer, every chunk inside the disk and its bytes inside the
 * data fork, and no two chunks overlap (they are sorted; QEMU searches them
 * as if sorted).  The base64 is decoded strictly: anything but its
 * alphabet, white space and final padding is refused.  Messages number the
 * chunks as the tables list their entries, from 0, comments and
 * terminators counted, across the mish blocks in their order.  Reads run on the
 * worker thread; the last chunk decompressed is kept for the next read.
 * Writable opens are refused, with the command that converts.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define SECTOR             512u
#define KOLY_BYTES         512u
/* QEMU's search window for the trailer's magic: the last 1023 bytes. */
#define KOLY_SEARCH        1023u
/* Named bounds.  QEMU's: at most 64 MiB per chunk (its compressed bytes,
 * and its sectors when they are decompressed or read), an XML property
 * list of at most 16 MiB.  vdisk's: a resource fork of at most 16 MiB
 * too, at most 2^18 chunks (256 GiB in chunks of 1 MiB, as Apple's tools
 * make them; a list of 16 MiB holds at most some 314000), a disk of at
 * most INT64_MAX bytes. */
#define DMG_LENGTH_MAX     (64u << 20)
#define DMG_SECTORS_MAX    (DMG_LENGTH_MAX / SECTOR)
#define DMG_PLIST_MAX      (16u << 20)
#define DMG_RSRC_MAX       (16u << 20)
#define DMG_CHUNKS_MAX     (1u << 18)
#define DMG_DISK_SECTORS_MAX ((uint64_t)INT64_MAX / SECTOR)
#define MISH_HEADER        204u
#define MISH_ENTRY         40u

enum {
    CHUNK_ZERO = 0x00000000,
    CHUNK_RAW = 0x00000001,
    CHUNK_IGNORE = 0x00000002,
    CHUNK_ADC = 0x80000004,
    CHUNK_ZLIB = 0x80000005,
    CHUNK_BZIP2 = 0x80000006,
    CHUNK_LZFSE = 0x80000007,
    CHUNK_COMMENT = 0x7ffffffe,
    CHUNK_END = 0xffffffff,
};

struct chunk {
    uint64_t sector, count;   /* on the disk */
    uint64_t offset, length;  /* in the file */
    uint32_t type;
    uint32_t number;          /* in the order the tables list them */
};

struct dmg {
    struct vdisk_dev *file;
    struct offload *offload;
    uint64_t file_size, koly;
    uint64_t fork_start, fork_end;     /* the data fork */
    uint64_t sectors;                  /* the disk's */
    struct chunk *chunks;
    uint32_t n_chunks, cap_chunks;
    uint32_t next_number;
    uint64_t max_bytes;                /* the largest decompressed chunk */
    pthread_mutex_t lock;              /* the kept chunk */
    uint8_t *kept, *packed;            /* max_bytes and DMG_LENGTH_MAX at most */
    size_t packed_cap;
    uint32_t kept_chunk;               /* UINT32_MAX: none */
};

static const char *type_name(uint32_t t)
{
    switch (t) {
    case CHUNK_ZERO: return "zero";
    case CHUNK_RAW: return "raw";
    case CHUNK_IGNORE: return "ignore";
    case CHUNK_ADC: return "ADC";
    case CHUNK_ZLIB: return "zlib";
    case CHUNK_BZIP2: return "bzip2";
    case CHUNK_LZFSE: return "lzfse";
    default: return "unknown";
    }
}

static bool reads_zero(uint32_t t)
{
    return t == CHUNK_ZERO || t == CHUNK_IGNORE;
}

static void dmg_close(struct vdisk_dev *dev);

/* Adds the chunk entry E of a mish block whose first sector is BASE and
 * whose data starts at file offset DATA. */
static int add_chunk(struct vdisk_dev *dev, struct dmg *s, const uint8_t *e, uint64_t base,
                     uint64_t data)
{
    const char *fn = dev->filename;
    uint32_t type = be32_load(e);
    uint32_t number = s->next_number++;
    switch (type) {
    case CHUNK_ZERO: case CHUNK_RAW: case CHUNK_IGNORE: case CHUNK_ADC: case CHUNK_ZLIB:
    case CHUNK_BZIP2: case CHUNK_LZFSE:
        break;
    default:
        return 0; /* comments, the terminator, types nobody reads: skipped, as QEMU */
    }
    struct chunk c = {.type = type, .number = number};
    uint64_t first = be64_load(e + 8), rel = be64_load(e + 0x18);
    c.count = be64_load(e + 0x10);
    c.length = be64_load(e + 0x20);
    if (c.count == 0)
        return 0; /* covers nothing */
    uint64_t end;
    if (add_overflows_u64(base, first, &c.sector) ||
        add_overflows_u64(c.sector, c.count, &end) || end > s->sectors)
        return err_set(-EINVAL, "%s: chunk %" PRIu32 " (%s) covers %" PRIu64 " sectors from "
                       "sector %" PRIu64 " + %" PRIu64 ", past the disk's %" PRIu64 " sectors",
                       fn, number, type_name(type), c.count, base, first, s->sectors);
    if (!reads_zero(type)) {
        if (c.count > DMG_SECTORS_MAX)
            return err_set(-EINVAL, "%s: chunk %" PRIu32 " (%s) holds %" PRIu64 " sectors; "
                           "vdisk reads at most %u sectors (64 MiB) a chunk", fn, number,
                           type_name(type), c.count, DMG_SECTORS_MAX);
        if (c.length > DMG_LENGTH_MAX)
            return err_set(-EINVAL, "%s: chunk %" PRIu32 " (%s) is %" PRIu64 " bytes long; "
                           "vdisk reads at most %u bytes a chunk", fn, number,
                           type_name(type), c.length, DMG_LENGTH_MAX);
        if (type == CHUNK_RAW && c.length < c.count * SECTOR)
            return err_set(-EINVAL, "%s: chunk %" PRIu32 " (raw) holds %" PRIu64 " bytes for "
                           "%" PRIu64 " sectors", fn, number, c.length, c.count);
        uint64_t stop;
        if (add_overflows_u64(data, rel, &c.offset) ||
            add_overflows_u64(c.offset, c.length, &stop) || stop > s->fork_end)
            return err_set(-EINVAL, "%s: chunk %" PRIu32 " (%s) lies at offset %" PRIu64
                           " + %" PRIu64 " for %" PRIu64 " bytes, past the data fork's end "
                           "(offset %" PRIu64 ")", fn, number, type_name(type), data, rel,
                           c.length, s->fork_end);
        if (c.count * SECTOR > s->max_bytes)
            s->max_bytes = c.count * SECTOR;
    }
    if (s->n_chunks == DMG_CHUNKS_MAX)
        return err_set(-EFBIG, "%s: the chunk tables list more than %u chunks, the most vdisk "
                       "reads", fn, DMG_CHUNKS_MAX);
    if (s->n_chunks == s->cap_chunks) {
        uint32_t cap = s->cap_chunks ? s->cap_chunks * 2 : 64;
        if (cap > DMG_CHUNKS_MAX)
            cap = DMG_CHUNKS_MAX;
        struct chunk *n = realloc(s->chunks, (size_t)cap * sizeof *n);
        if (!n)
            return err_set(-ENOMEM, "out of memory for %" PRIu32 " chunks", cap);
        s->chunks = n;
        s->cap_chunks = cap;
    }
    s->chunks[s->n_chunks++] = c;
    return 0;
}

/* One mish block of LEN bytes; anything else is skipped, as QEMU does. */
static int read_mish(struct vdisk_dev *dev, struct dmg *s, const uint8_t *b, size_t len)
{
    if (len < MISH_HEADER + MISH_ENTRY || memcmp(b, "mish", 4) != 0)
        return 0;
    uint64_t base = be64_load(b + 8), rel = be64_load(b + 0x18), data;
    if (add_overflows_u64(s->fork_start, rel, &data))
        data = UINT64_MAX; /* the chunks' checks refuse it */
    size_t n = (len - MISH_HEADER) / MISH_ENTRY;
    for (size_t i = 0; i < n; i++) {
        int r = add_chunk(dev, s, b + MISH_HEADER + i * MISH_ENTRY, base, data);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The value of a base64 character, -1 for white space, -2 for others. */
static int b64_value(unsigned char c)
{
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        return -1;
    int v = base64_digit(c);
    return v < 0 ? -2 : v;
}

/* Decodes the base64 text IN (LEN bytes, at plist offset AT) into OUT (room
 * for LEN / 4 * 3 bytes); *OUT_LEN its bytes. */
static int b64_decode(struct vdisk_dev *dev, const char *in, size_t len, uint64_t at,
                      uint8_t *out, size_t *out_len)
{
    uint32_t acc = 0;
    unsigned have = 0, pad = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int v = b64_value(c);
        if (v == -1)
            continue;
        if (c == '=' && have >= 2) {
            pad++;
            have++;
            if (have == 4) {
                if (pad == 1) {
                    out[o++] = (uint8_t)(acc >> 10);
                    out[o++] = (uint8_t)(acc >> 2);
                } else {
                    out[o++] = (uint8_t)(acc >> 4);
                }
                have = 0;
            }
            continue;
        }
        if (v < 0 || pad)
            return err_set(-EINVAL, "%s: the XML property list's <data> at offset %" PRIu64
                           " is not base64 (byte 0x%02x at offset %" PRIu64 ")",
                           dev->filename, at, c, at + i);
        acc = acc << 6 | (uint32_t)v;
        if (++have == 4) {
            out[o++] = (uint8_t)(acc >> 16);
            out[o++] = (uint8_t)(acc >> 8);
            out[o++] = (uint8_t)acc;
            have = 0;
            acc = 0;
        }
    }
    if (have)
        return err_set(-EINVAL, "%s: the XML property list's <data> at offset %" PRIu64
                       " is not base64 (it ends inside a group of 4 characters)",
                       dev->filename, at);
    *out_len = o;
    return 0;
}

static const char *find(const char *p, const char *end, const char *what)
{
    size_t n = strlen(what);
    for (; (size_t)(end - p) >= n; p++)
        if (memcmp(p, what, n) == 0)
            return p;
    return NULL;
}

static int read_plist(struct vdisk_dev *dev, struct dmg *s, uint64_t off, uint64_t len)
{
    if (len > DMG_PLIST_MAX)
        return err_set(-EFBIG, "%s: an XML property list of %" PRIu64 " bytes (koly + 0xe0); "
                       "vdisk reads at most %u", dev->filename, len, DMG_PLIST_MAX);
    char *x = malloc((size_t)len);
    uint8_t *mish = malloc((size_t)len / 4 * 3 + 1);
    int r = x && mish ? 0 : err_set(-ENOMEM, "out of memory");
    if (r == 0)
        r = dev_pread(s->file, x, (size_t)len, off);
    const char *end = x + len;
    for (const char *p = x; r == 0 && (p = find(p, end, "<data>"));) {
        p += 6;
        const char *q = find(p, end, "</data>");
        if (!q) {
            r = err_set(-EINVAL, "%s: the XML property list (%" PRIu64 " bytes at offset %"
                        PRIu64 ") ends inside a <data> element (offset %" PRIu64 ")",
                        dev->filename, len, off, off + (uint64_t)(p - 6 - x));
            break;
        }
        size_t n = 0;
        r = b64_decode(dev, p, (size_t)(q - p), off + (uint64_t)(p - x), mish, &n);
        if (r == 0)
            r = read_mish(dev, s, mish, n);
        p = q + 7;
    }
    free(x);
    free(mish);
    return r;
}

static int read_rsrc(struct vdisk_dev *dev, struct dmg *s, uint64_t off, uint64_t len)
{
    const char *fn = dev->filename;
    if (len > DMG_RSRC_MAX)
        return err_set(-EFBIG, "%s: a resource fork of %" PRIu64 " bytes (koly + 0x30); vdisk "
                       "reads at most %u", fn, len, DMG_RSRC_MAX);
    if (len < 12)
        return err_set(-EINVAL, "%s: a resource fork of %" PRIu64 " bytes (koly + 0x30) "
                       "has no room for its header", fn, len);
    uint8_t *b = malloc((size_t)len);
    if (!b)
        return err_set(-ENOMEM, "out of memory");
    int r = dev_pread(s->file, b, (size_t)len, off);
    uint32_t data = r == 0 ? be32_load(b) : 0, count = r == 0 ? be32_load(b + 8) : 0;
    if (r == 0 && (count == 0 || data > len || count > len - data))
        r = err_set(-EINVAL, "%s: the resource fork's data (%" PRIu32 " bytes at %" PRIu32
                    ") does not lie in the fork (%" PRIu64 " bytes at offset %" PRIu64 ")",
                    fn, count, data, len, off);
    for (uint64_t p = data, end = (uint64_t)data + count; r == 0 && p < end;) {
        uint32_t n = end - p >= 4 ? be32_load(b + p) : 0;
        if (n == 0 || n > end - p - 4) {
            r = err_set(-EINVAL, "%s: the resource at offset %" PRIu64 " of the resource fork "
                        "claims %" PRIu32 " bytes; %" PRIu64 " are left", fn, p, n,
                        end - p < 4 ? 0 : end - p - 4);
            break;
        }
        r = read_mish(dev, s, b + p + 4, n);
        p += 4 + (uint64_t)n;
    }
    free(b);
    return r;
}

static int by_sector(const void *a, const void *b)
{
    const struct chunk *x = a, *y = b;
    if (x->sector != y->sector)
        return x->sector < y->sector ? -1 : 1;
    return x->number < y->number ? -1 : x->number > y->number;
}

static int read_trailer(struct vdisk_dev *dev, struct dmg *s, uint64_t *xml_off,
                        uint64_t *xml_len, uint64_t *rsrc_off, uint64_t *rsrc_len)
{
    const char *fn = dev->filename;
    if (s->file_size < KOLY_BYTES)
        return err_set(-EINVAL, "%s: the file holds %" PRIu64 " bytes; a DMG image ends with a "
                       "trailer of %u", fn, s->file_size, KOLY_BYTES);
    uint8_t w[KOLY_SEARCH];
    uint64_t start = s->file_size > KOLY_SEARCH ? s->file_size - KOLY_SEARCH : 0;
    size_t n = (size_t)(s->file_size - start);
    int r = dev_pread(s->file, w, n, start);
    if (r < 0)
        return r;
    size_t i = 0;
    while (i + KOLY_BYTES <= n && memcmp(w + i, "koly", 4) != 0)
        i++;
    if (i + KOLY_BYTES > n)
        return err_set(-EINVAL, "%s: not a DMG image (no \"koly\" trailer in its last 1023 "
                       "bytes)", fn);
    const uint8_t *k = w + i;
    s->koly = start + i;
    uint64_t fork_off = be64_load(k + 0x18), fork_len = be64_load(k + 0x20);
    if (fork_off > s->koly || fork_len > s->koly - fork_off)
        return err_set(-EINVAL, "%s: the data fork (%" PRIu64 " bytes at offset %" PRIu64
                       ", koly + 0x18) does not end before the trailer (offset %" PRIu64 ")",
                       fn, fork_len, fork_off, s->koly);
    s->fork_start = fork_off;
    s->fork_end = fork_off + fork_len;
    *rsrc_off = be64_load(k + 0x28);
    *rsrc_len = be64_load(k + 0x30);
    if (*rsrc_len && (*rsrc_off >= s->koly || *rsrc_len > s->koly - *rsrc_off))
        return err_set(-EINVAL, "%s: the resource fork (%" PRIu64 " bytes at offset %" PRIu64
                       ", koly + 0x28) does not end before the trailer (offset %" PRIu64 ")",
                       fn, *rsrc_len, *rsrc_off, s->koly);
    *xml_off = be64_load(k + 0xd8);
    *xml_len = be64_load(k + 0xe0);
    if (*xml_len && (*xml_off >= s->koly || *xml_len > s->koly - *xml_off))
        return err_set(-EINVAL, "%s: the XML property list (%" PRIu64 " bytes at offset %"
                       PRIu64 ", koly + 0xd8) does not end before the trailer (offset %" PRIu64
                       ")", fn, *xml_len, *xml_off, s->koly);
    s->sectors = be64_load(k + 0x1ec);
    if (s->sectors > DMG_DISK_SECTORS_MAX)
        return err_set(-EFBIG, "%s: a disk of %" PRIu64 " sectors (koly + 0x1ec); vdisk reads "
                       "at most %" PRIu64, fn, s->sectors, DMG_DISK_SECTORS_MAX);
    if (!*rsrc_len && !*xml_len)
        return err_set(-EINVAL, "%s: the trailer names neither a resource fork nor an XML "
                       "property list (koly + 0x30 and + 0xe0 are 0): no chunk tables", fn);
    return 0;
}

static int dmg_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)os;
    const char *fn = dev->filename;
    if (!dev->params.read_only)
        return err_set(-ENOTSUP, "%s: vdisk reads DMG images but does not write them (open it "
                       "read-only, or convert it: vdisk convert -f dmg -O qcow2 %s "
                       "IMAGE.qcow2)", fn, fn);
    struct dmg *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->kept_chunk = UINT32_MAX;
    dev->priv = s;
    s->file = file;
    s->file_size = dev_size(file);
    if (file->file_length && file->file_length < s->file_size)
        s->file_size = file->file_length;
    uint64_t xml_off, xml_len, rsrc_off, rsrc_len;
    int r = read_trailer(dev, s, &xml_off, &xml_len, &rsrc_off, &rsrc_len);
    if (r == 0)
        r = rsrc_len ? read_rsrc(dev, s, rsrc_off, rsrc_len)
                     : read_plist(dev, s, xml_off, xml_len);
    if (r == 0 && s->n_chunks)
        qsort(s->chunks, s->n_chunks, sizeof *s->chunks, by_sector);
    for (uint32_t i = 1; r == 0 && i < s->n_chunks; i++) {
        const struct chunk *a = &s->chunks[i - 1], *b = &s->chunks[i];
        if (a->sector + a->count > b->sector)
            r = err_set(-EINVAL, "%s: chunks %" PRIu32 " (sectors %" PRIu64 " to %" PRIu64
                        ") and %" PRIu32 " (from sector %" PRIu64 ") overlap", fn, a->number,
                        a->sector, a->sector + a->count - 1, b->number, b->sector);
    }
    if (r == 0 && !(s->offload = offload_new()))
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        s->file = NULL; /* the caller keeps its reference on failure */
        dmg_close(dev);
        return r;
    }
    dev->size = s->sectors * SECTOR;
    dev->block_size = SECTOR;
    dev->align = SECTOR;
    dev->caps = VDISK_CAN_FLUSH;
    return 0;
}

static void dmg_close(struct vdisk_dev *dev)
{
    struct dmg *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    if (s->file)
        dev_unref(s->file);
    free(s->chunks);
    free(s->kept);
    free(s->packed);
    pthread_mutex_destroy(&s->lock);
    free(s);
    dev->priv = NULL;
}

/* The chunk holding SECTOR, or NULL; *NEXT the first sector of the next
 * chunk after it (the disk's end when none). */
static const struct chunk *find_chunk(const struct dmg *s, uint64_t sector, uint64_t *next)
{
    uint32_t lo = 0, hi = s->n_chunks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->chunks[mid].sector + s->chunks[mid].count <= sector)
            lo = mid + 1;
        else
            hi = mid;
    }
    *next = lo < s->n_chunks ? s->chunks[lo].sector : s->sectors;
    return lo < s->n_chunks && s->chunks[lo].sector <= sector ? &s->chunks[lo] : NULL;
}

/* Decompresses chunk C into S->kept (under S->lock). */
static int unpack_chunk(struct vdisk_dev *dev, struct dmg *s, const struct chunk *c)
{
    uint32_t idx = (uint32_t)(c - s->chunks);
    if (s->kept_chunk == idx)
        return 0;
    s->kept_chunk = UINT32_MAX;
    const char *fn = dev->filename;
    if (c->type == CHUNK_ADC || c->type == CHUNK_LZFSE ||
        (c->type == CHUNK_BZIP2 && !bunzip2_available()))
        return err_set(-ENOTSUP, "%s: chunk %" PRIu32 " (sectors %" PRIu64 " to %" PRIu64
                       ", %" PRIu64 " bytes at offset %" PRIu64 ") is compressed with %s, "
                       "which %s", fn, c->number, c->sector, c->sector + c->count - 1,
                       c->length, c->offset, type_name(c->type),
                       c->type == CHUNK_BZIP2 ? "this vdisk was built without (libbz2)"
                                              : "vdisk does not read");
    if (!s->kept && !(s->kept = malloc((size_t)s->max_bytes)))
        return err_set(-ENOMEM, "out of memory for a chunk of %" PRIu64 " bytes",
                       s->max_bytes);
    if (s->packed_cap < c->length) {
        free(s->packed);
        s->packed_cap = 0;
        if (!(s->packed = malloc((size_t)c->length)))
            return err_set(-ENOMEM, "out of memory");
        s->packed_cap = (size_t)c->length;
    }
    int r = c->length ? dev_pread(s->file, s->packed, (size_t)c->length, c->offset) : 0;
    if (r < 0)
        return r;
    size_t want = (size_t)(c->count * SECTOR);
    int code;
    uint64_t got;
    r = c->type == CHUNK_ZLIB
            ? inflate_exact(s->packed, (size_t)c->length, s->kept, want, &code, &got)
            : bunzip2_exact(s->packed, (size_t)c->length, s->kept, want, &code, &got);
    if (r == -ENOMEM)
        return err_set(-ENOMEM, "%s: out of memory", type_name(c->type));
    if (r < 0)
        return err_set(-EIO, "%s: chunk %" PRIu32 " (%s, %" PRIu64 " bytes at offset %" PRIu64
                       ") does not decompress to %" PRIu64 " sectors (%s %d, %" PRIu64
                       " bytes)", fn, c->number, type_name(c->type), c->length, c->offset,
                       c->count, type_name(c->type), code, got);
    s->kept_chunk = idx;
    return 0;
}

static int read_work(struct vdisk_req *req)
{
    struct dmg *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    for (uint64_t pos = req->offset; r == 0 && pos < end;) {
        uint64_t sector = pos / SECTOR, next;
        const struct chunk *c = find_chunk(s, sector, &next);
        size_t at = (size_t)(pos - req->offset);
        if (!c) {
            r = err_set(-EIO, "%s: no chunk holds sector %" PRIu64, req->dev->filename,
                        sector);
            break;
        }
        uint64_t in = pos - c->sector * SECTOR, stop = (c->sector + c->count) * SECTOR;
        uint64_t n = (stop < end ? stop : end) - pos;
        if (reads_zero(c->type)) {
            iov_memset(req->iov, req->iovcnt, at, 0, (size_t)n);
        } else if (c->type == CHUNK_RAW) {
            r = req_pread_slice(req, s->file, c->offset + in, at, n);
        } else {
            r = unpack_chunk(req->dev, s, c);
            if (r == 0)
                iov_from_buf(req->iov, req->iovcnt, at, s->kept + in, (size_t)n);
        }
        pos += n;
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void dmg_submit(struct vdisk_req *req)
{
    struct dmg *s = req->dev->priv;
    offload_read_only(s->offload, req, read_work, "dmg");
}

static int64_t dmg_allocated_size(struct vdisk_dev *dev)
{
    struct dmg *s = dev->priv;
    return dev_allocated_size(s->file);
}

/* Never probed by content: QEMU knows DMG images by the ".dmg" ending of
 * their names (lib/probe.c), and the open then needs the trailer. */
const struct vdisk_driver vdisk_driver_dmg = {
    .name = "dmg",
    .open = dmg_open,
    .close = dmg_close,
    .submit = dmg_submit,
    .allocated_size = dmg_allocated_size,
};
