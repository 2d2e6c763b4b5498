/* SPDX-License-Identifier: MIT */
/*
 * formats/vdi/vdi.c: VirtualBox disk images (VDI 1.1), static and dynamic,
 * read and written, as QEMU 7.2's vdi driver reads and writes them.
 *
 * Layout (little-endian):
 *   0     the pre-header: a text line (64 bytes), the signature 0xbeda107f
 *         and the version 1.1 (0x00010001)
 *   72    the header: its size, the image type (1 dynamic, 2 static), the
 *         offsets of the block map and of the data, the sector size (512),
 *         the disk size, the block size (1 MiB, the only one QEMU takes),
 *         the number of blocks and of allocated blocks, and four UUIDs
 *         (image, last snapshot, link, parent: the last two must be null)
 *   bmap  one 32-bit entry per block of the disk: the index of its data
 *         block (data at offset_data + index * block size), or
 *         0xffffffff (unallocated) / 0xfffffffe (discarded), both zeroes
 *
 * Every header field is checked against the real length of the file before
 * anything is allocated: the block map lies inside the file (so its size
 * is bounded by the file's), and within VDI_MAX_BMAP_BYTES.  Map entries
 * that point outside the file, beyond the blocks of the image, or at a
 * block another entry uses are found at open: the image then opens
 * read-only only (for check and salvage), and reading such a block fails
 * with a message naming the entry.
 *
 * Reads of allocated blocks go to the file as child requests; writes to
 * allocated blocks too.  A write that needs a new block runs on the
 * image's worker thread, which allocates one block at a time: the whole
 * block (the data, zeroes around it) goes at the end of the data area,
 * and the map entry that points to it is set in memory.  The map's changed
 * sectors and the header (the count of allocated blocks) are written at
 * the next flush (or FUA write, or close), after a flush of the file, and
 * are flushed in turn: a map entry never reaches the disk before the data
 * it points to, whatever order the disk writes in (QEMU writes the header
 * and the map right after the data, with no flush between).  A crash
 * before a flush loses the unflushed allocations (the data blocks past
 * the count are reused); one during the write-back may leave the map
 * ahead of the header's count, which check reports and which makes the
 * image open read-only (QEMU would allocate over the block).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"

#define VDI_HEADER_SIZE      512u        /* the pre-header and header, as QEMU writes them */
#define VDI_SIGNATURE        0xbeda107fu
#define VDI_VERSION_1_1      0x00010001u
#define VDI_TYPE_DYNAMIC     1u
#define VDI_TYPE_STATIC      2u
#define VDI_SECTOR_SIZE      512u
#define VDI_BLOCK_SIZE       (1u << 20)  /* the only block size QEMU accepts */
#define VDI_UNALLOCATED      0xffffffffu
#define VDI_DISCARDED        0xfffffffeu
#define VDI_IS_ALLOCATED(e)  ((e) < VDI_DISCARDED)
/* QEMU's limit: a block map that one request can read (0x7ffffe00 bytes). */
#define VDI_BLOCKS_MAX       0x1fffff80u
#define VDI_DISK_SIZE_MAX    ((uint64_t)VDI_BLOCKS_MAX * VDI_BLOCK_SIZE)
/* vdisk's own bound on the block map it holds in memory: 256 MiB, disks of
 * up to 64 TiB. */
#define VDI_MAX_BMAP_BYTES   (256u << 20)
/* Blocks of N bytes (no overflow: N is below 2^63). */
#define DIV_ROUND_UP_U64(n, d) (((n) + (d) - 1) / (d))
#define VDI_TEXT             "<<< QEMU VM Virtual Disk Image >>>\n"

/* Field offsets in the first 512 bytes. */
#define OFF_SIGNATURE        64
#define OFF_VERSION          68
#define OFF_HEADER_SIZE      72
#define OFF_IMAGE_TYPE       76
#define OFF_OFFSET_BMAP      340
#define OFF_OFFSET_DATA      344
#define OFF_SECTOR_SIZE      360
#define OFF_DISK_SIZE        368
#define OFF_BLOCK_SIZE       376
#define OFF_BLOCKS           384
#define OFF_BLOCKS_ALLOCATED 388
#define OFF_UUID_IMAGE       392
#define OFF_UUID_LAST_SNAP   408
#define OFF_UUID_LINK        424
#define OFF_UUID_PARENT      440

struct vdi {
    struct vdisk_dev *dev;
    struct vdisk_dev *file;
    struct offload *offload;
    pthread_mutex_t lock;        /* the map, the header copy, next_index */
    uint8_t hdr[VDI_HEADER_SIZE];
    uint32_t type;
    uint64_t disk_size;          /* rounded up to 512 */
    uint64_t offset_bmap, offset_data;
    uint32_t blocks;             /* entries in the map */
    uint32_t blocks_allocated;   /* the header's count */
    uint8_t *bmap;               /* the map as on disk (little-endian), whole sectors */
    size_t bmap_bytes;
    uint64_t file_size;          /* the file's length at open */
    uint8_t *bad;                /* a bit per entry that must not be used, or NULL */
    uint32_t nbad;
    uint32_t used;               /* entries that point at a valid block */
    uint64_t next_index;         /* the data block the next allocation takes */
    size_t dirty_lo, dirty_hi;   /* the map's bytes not yet written (lo < hi) */
    bool hdr_dirty;              /* the header's count not yet written */
    bool read_only;
    bool repair;                 /* opened for vdisk check -r: the map may be bad */
    bool map_broken;             /* ... and is: writes are refused */
};

/* A request's walk over the blocks it touches. */
struct vdi_req {
    uint64_t pos;
};
_Static_assert(sizeof(struct vdi_req) <= REQ_STATE_MAX, "vdi's request state fits");

static uint32_t entry_get(const struct vdi *s, uint32_t b)
{
    return le32_load(s->bmap + (size_t)b * 4);
}

static bool is_bad(const struct vdi *s, uint32_t b)
{
    return s->bad && (s->bad[b / 8] >> (b % 8) & 1);
}

/* Why entry B must not be used, in MSG; false when it may. */
static bool entry_problem(const struct vdi *s, uint32_t b, char *msg, size_t size)
{
    if (!is_bad(s, b))
        return false;
    uint32_t e = entry_get(s, b);
    uint64_t at = s->offset_bmap + (uint64_t)b * 4;
    if (e >= s->blocks) {
        snprintf(msg, size, "%s: block map entry %" PRIu32 " (offset %" PRIu64 ") is %" PRIu32
                 ", expected below %" PRIu32 " (the blocks in the image)", s->dev->filename, b,
                 at, e, s->blocks);
        return true;
    }
    uint64_t start = s->offset_data + (uint64_t)e * VDI_BLOCK_SIZE;
    if (start + VDI_BLOCK_SIZE > s->file_size) {
        snprintf(msg, size, "%s: block map entry %" PRIu32 " (offset %" PRIu64 ") points to "
                 "data block %" PRIu32 " at offset %" PRIu64 ", expected a block inside the "
                 "file, found its end at offset %" PRIu64, s->dev->filename, b, at, e, start,
                 s->file_size);
        return true;
    }
    uint32_t first = 0;
    while (first < b && entry_get(s, first) != e)
        first++;
    snprintf(msg, size, "%s: block map entry %" PRIu32 " (offset %" PRIu64 ") points to data "
             "block %" PRIu32 ", expected a block of its own, found it used by entry %" PRIu32,
             s->dev->filename, b, at, e, first);
    return true;
}

/* ---- Probe and open ------------------------------------------------------- */

static int vdi_probe(const uint8_t *buf, size_t len)
{
    /* As QEMU: the signature, in a buffer that holds a whole header. */
    if (len >= VDI_HEADER_SIZE && le32_load(buf + OFF_SIGNATURE) == VDI_SIGNATURE)
        return 100;
    return 0;
}

static bool uuid_is_null(const uint8_t *u)
{
    for (int i = 0; i < 16; i++)
        if (u[i])
            return false;
    return true;
}

/* Checks the header in s->hdr against the file; fills in s. */
static int parse_header(struct vdi *s)
{
    const char *fn = s->dev->filename;
    const uint8_t *h = s->hdr;
    uint32_t sig = le32_load(h + OFF_SIGNATURE);
    if (sig != VDI_SIGNATURE)
        return err_set(-EINVAL, "%s: not a VDI image: the signature at offset %d is 0x%08" PRIx32
                       ", expected 0x%08x", fn, OFF_SIGNATURE, sig, VDI_SIGNATURE);
    uint32_t ver = le32_load(h + OFF_VERSION);
    if (ver != VDI_VERSION_1_1)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the version at offset %d is %"
                       PRIu32 ".%" PRIu32 ", expected 1.1", fn, OFF_VERSION, ver >> 16,
                       ver & 0xffff);
    s->type = le32_load(h + OFF_IMAGE_TYPE);
    if (s->type != VDI_TYPE_DYNAMIC && s->type != VDI_TYPE_STATIC)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the image type at offset %d is %"
                       PRIu32 ", expected 1 (dynamic) or 2 (static)", fn, OFF_IMAGE_TYPE,
                       s->type);
    uint32_t ss = le32_load(h + OFF_SECTOR_SIZE);
    if (ss != VDI_SECTOR_SIZE)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the sector size at offset %d is %"
                       PRIu32 ", expected %u", fn, OFF_SECTOR_SIZE, ss, VDI_SECTOR_SIZE);
    uint32_t bs = le32_load(h + OFF_BLOCK_SIZE);
    if (bs != VDI_BLOCK_SIZE)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the block size at offset %d is %"
                       PRIu32 ", expected %u", fn, OFF_BLOCK_SIZE, bs, VDI_BLOCK_SIZE);
    uint64_t size = le64_load(h + OFF_DISK_SIZE);
    if (size > VDI_DISK_SIZE_MAX)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the disk size at offset %d is %"
                       PRIu64 ", expected at most %" PRIu64, fn, OFF_DISK_SIZE, size,
                       VDI_DISK_SIZE_MAX);
    /* VBoxManage convertfromraw makes odd sizes: QEMU rounds them up. */
    s->disk_size = align_up(size, VDI_SECTOR_SIZE);
    s->blocks = le32_load(h + OFF_BLOCKS);
    if (s->blocks > VDI_BLOCKS_MAX)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the block count at offset %d is %"
                       PRIu32 ", expected at most %u", fn, OFF_BLOCKS, s->blocks,
                       VDI_BLOCKS_MAX);
    if (s->disk_size > (uint64_t)s->blocks * VDI_BLOCK_SIZE)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the disk size at offset %d is %"
                       PRIu64 ", expected at most %" PRIu64 " (the room of its %" PRIu32
                       " blocks)", fn, OFF_DISK_SIZE, size, (uint64_t)s->blocks * VDI_BLOCK_SIZE,
                       s->blocks);
    s->blocks_allocated = le32_load(h + OFF_BLOCKS_ALLOCATED);
    if (!uuid_is_null(h + OFF_UUID_LINK))
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the link UUID at offset %d is not "
                       "null (a differencing image)", fn, OFF_UUID_LINK);
    if (!uuid_is_null(h + OFF_UUID_PARENT))
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the parent UUID at offset %d is "
                       "not null (a differencing image)", fn, OFF_UUID_PARENT);
    s->offset_bmap = le32_load(h + OFF_OFFSET_BMAP);
    s->offset_data = le32_load(h + OFF_OFFSET_DATA);
    if (s->offset_bmap % VDI_SECTOR_SIZE || s->offset_bmap < VDI_HEADER_SIZE)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the block map offset at offset %d "
                       "is %" PRIu64 ", expected a multiple of %u from %u on", fn,
                       OFF_OFFSET_BMAP, s->offset_bmap, VDI_SECTOR_SIZE, VDI_HEADER_SIZE);
    uint64_t need = align_up((uint64_t)s->blocks * 4, VDI_SECTOR_SIZE);
    if (need > VDI_MAX_BMAP_BYTES)
        return err_set(-EFBIG, "%s: the block map of %" PRIu32 " blocks (block count at offset "
                       "%d) takes %" PRIu64 " bytes, more than vdisk's limit of %u", fn,
                       s->blocks, OFF_BLOCKS, need, VDI_MAX_BMAP_BYTES);
    if (s->offset_bmap + need > s->file_size)
        return err_set(-EINVAL, "%s: the block map at offset %" PRIu64 " (%" PRIu64 " bytes for "
                       "%" PRIu32 " blocks) ends at %" PRIu64 ", expected inside the file, "
                       "found its end at %" PRIu64, fn, s->offset_bmap, need, s->blocks,
                       s->offset_bmap + need, s->file_size);
    if (s->offset_data % VDI_SECTOR_SIZE || s->offset_data < s->offset_bmap + need)
        return err_set(-ENOTSUP, "%s: unsupported VDI image: the data offset at offset %d is %"
                       PRIu64 ", expected a multiple of %u from %" PRIu64 " (the end of the "
                       "block map) on", fn, OFF_OFFSET_DATA, s->offset_data, VDI_SECTOR_SIZE,
                       s->offset_bmap + need);
    if (s->blocks_allocated > s->blocks)
        return err_set(-EINVAL, "%s: the allocated block count at offset %d is %" PRIu32
                       ", expected at most %" PRIu32 " (the blocks in the image)", fn,
                       OFF_BLOCKS_ALLOCATED, s->blocks_allocated, s->blocks);
    s->bmap_bytes = (size_t)need;
    return 0;
}

/* Reads the map and marks the entries that must not be used. */
static int load_map(struct vdi *s)
{
    s->bmap = malloc(s->bmap_bytes ? s->bmap_bytes : 1);
    if (!s->bmap)
        return err_set(-ENOMEM, "out of memory for a block map of %zu bytes", s->bmap_bytes);
    if (s->bmap_bytes) {
        int r = dev_pread(s->file, s->bmap, s->bmap_bytes, s->offset_bmap);
        if (r < 0)
            return r;
    }
    uint8_t *seen = calloc((size_t)s->blocks / 8 + 1, 1);
    if (!seen)
        return err_set(-ENOMEM, "out of memory");
    uint64_t max_next = 0;
    for (uint32_t b = 0; b < s->blocks; b++) {
        uint32_t e = entry_get(s, b);
        if (!VDI_IS_ALLOCATED(e))
            continue;
        bool bad = e >= s->blocks ||
                   s->offset_data + ((uint64_t)e + 1) * VDI_BLOCK_SIZE > s->file_size ||
                   (seen[e / 8] >> (e % 8) & 1);
        if (!bad) {
            seen[e / 8] |= (uint8_t)(1u << (e % 8));
            s->used++;
            if ((uint64_t)e + 1 > max_next)
                max_next = (uint64_t)e + 1;
            continue;
        }
        if (!s->bad) {
            s->bad = calloc((size_t)s->blocks / 8 + 1, 1);
            if (!s->bad) {
                free(seen);
                return err_set(-ENOMEM, "out of memory");
            }
        }
        s->bad[b / 8] |= (uint8_t)(1u << (b % 8));
        s->nbad++;
    }
    free(seen);
    s->next_index = s->blocks_allocated;
    if (s->read_only)
        return 0;
    /* Writing allocates block number blocks_allocated: the map must agree. */
    const char *fn = s->dev->filename;
    s->map_broken = s->nbad || s->used != s->blocks_allocated || max_next > s->blocks_allocated;
    if (s->repair)
        return 0; /* for check -r, which refuses without writing (as QEMU's) */
    if (s->nbad) {
        uint32_t b = 0;
        while (!is_bad(s, b))
            b++;
        char msg[512];
        entry_problem(s, b, msg, sizeof msg);
        return err_set(-EINVAL, "%s; the image has %" PRIu32 " bad block map entr%s and can "
                       "only be opened read-only (see vdisk check)", msg, s->nbad,
                       s->nbad == 1 ? "y" : "ies");
    }
    if (s->used != s->blocks_allocated || max_next > s->blocks_allocated)
        return err_set(-EINVAL, "%s: the allocated block count at offset %d is %" PRIu32
                       ", expected %" PRIu32 " (the entries of the block map, the highest "
                       "using block %" PRIu64 "); the image can only be opened read-only "
                       "(see vdisk check)", fn, OFF_BLOCKS_ALLOCATED, s->blocks_allocated,
                       s->used, max_next ? max_next - 1 : 0);
    return 0;
}

static void free_state(struct vdi *s)
{
    offload_free(s->offload);
    free(s->bmap);
    free(s->bad);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int vdi_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    bool repair = false;
    const char *rep = os ? opt_take(os, "repair") : NULL;
    if (rep && opt_bool("repair", rep, &repair) < 0)
        return -EINVAL;
    struct vdi *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    s->repair = repair;
    pthread_mutex_init(&s->lock, NULL);
    s->dev = dev;
    s->file = file;
    s->read_only = dev->params.read_only;
    s->file_size = dev_size(file);
    if (file->file_length && file->file_length < s->file_size)
        s->file_size = file->file_length;
    int r = 0;
    if (s->file_size < VDI_HEADER_SIZE)
        r = err_set(-EINVAL, "%s: the image is too short for a VDI header (%" PRIu64 " of %u "
                    "bytes)", dev->filename, s->file_size, VDI_HEADER_SIZE);
    if (r == 0)
        r = dev_pread(file, s->hdr, VDI_HEADER_SIZE, 0);
    if (r == 0)
        r = parse_header(s);
    if (r == 0)
        r = load_map(s);
    if (r == 0 && !s->read_only) {
        s->offload = offload_new();
        if (!s->offload)
            r = err_set(-ENOMEM, "out of memory");
    }
    if (r < 0) {
        free_state(s);
        return r;
    }
    dev->priv = s;
    dev->size = s->disk_size;
    dev->block_size = 512;
    dev->align = 1;
    dev->caps = VDISK_CAN_FLUSH | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                (s->read_only ? 0 : VDISK_CAN_WRITE);
    return 0;
}

static int writeback(struct vdi *s);
static bool meta_dirty(struct vdi *s);

static void vdi_close(struct vdisk_dev *dev)
{
    struct vdi *s = dev->priv;
    if (!s)
        return;
    offload_free(s->offload);
    s->offload = NULL;
    if (!s->read_only && meta_dirty(s)) {
        struct err_saved saved;
        err_save(&saved);
        if (writeback(s) < 0)
            warn_report("vdisk: warning: %s: the block map could not be written at close: %s",
                        dev->filename, err_detail());
        err_restore(&saved);
    }
    dev_unref(s->file);
    free_state(s);
    dev->priv = NULL;
}

/* ---- I/O ------------------------------------------------------------------ */

static struct vdi_req *vreq(struct vdisk_req *req)
{
    return req_state(req);
}

/* The file offset of disk byte POS when its block is allocated and
 * usable: 1 (with *HOST), 0 when it reads as zeroes, or -EIO with a
 * message for a bad entry. */
static int locate(struct vdi *s, uint64_t pos, uint64_t *host)
{
    uint32_t b = (uint32_t)(pos / VDI_BLOCK_SIZE);
    pthread_mutex_lock(&s->lock);
    uint32_t e = entry_get(s, b);
    char msg[512];
    bool bad = VDI_IS_ALLOCATED(e) && entry_problem(s, b, msg, sizeof msg);
    pthread_mutex_unlock(&s->lock);
    if (bad)
        return err_set(-EIO, "%s", msg);
    if (!VDI_IS_ALLOCATED(e))
        return 0;
    *host = s->offset_data + (uint64_t)e * VDI_BLOCK_SIZE + pos % VDI_BLOCK_SIZE;
    return 1;
}

/* Reads, and writes that allocate nothing: one child per block. */
static void vdi_rw_walk(struct vdisk_req *req)
{
    struct vdi *s = req->dev->priv;
    req_hold(req); /* the walk's own */
    uint64_t end = req->offset + req->length;
    for (uint64_t pos = req->offset; pos < end;) {
        uint64_t n = VDI_BLOCK_SIZE - pos % VDI_BLOCK_SIZE;
        if (n > end - pos)
            n = end - pos;
        uint64_t host = 0;
        int r = locate(s, pos, &host);
        if (r < 0) {
            req_set_error(req, r, err_detail());
            break;
        }
        if (r == 0) {
            if (req->op == VDISK_OP_READ)
                iov_memset(req->iov, req->iovcnt, (size_t)(pos - req->offset), 0, (size_t)n);
        } else {
            unsigned fua = req->flags & VDISK_REQ_FUA;
            int rc = 0;
            if (req->op == VDISK_OP_WRITE_ZEROES) {
                rc = req_write_zeroes_child(req, s->file, host, n, fua);
            } else if (req->op == VDISK_OP_READ) {
                rc = req_read_slice(req, s->file, host, pos - req->offset, n);
            } else {
                rc = req_write_slice(req, s->file, host, pos - req->offset, n, fua);
            }
            if (rc < 0) {
                req_set_error(req, rc, "out of memory");
                break;
            }
        }
        pos += n;
    }
    req_release(req, 0);
}

/*
 * Makes the allocations so far durable: the file is flushed (the new
 * blocks' data on stable storage), then the map's changed sectors and the
 * header are written from copies taken under the lock, then the file is
 * flushed again.  A map entry thus never reaches the disk before the data
 * it points to, whatever order the disk writes in.  Runs on the worker
 * (which alone allocates) or at close; no lock is held across the I/O.
 * Returns 0 or -errno (the metadata stays dirty for the next flush).
 */
static int writeback(struct vdi *s)
{
    pthread_mutex_lock(&s->lock);
    size_t lo = s->dirty_lo, hi = s->dirty_hi;
    bool hdr = s->hdr_dirty;
    uint8_t h[VDI_HEADER_SIZE];
    memcpy(h, s->hdr, sizeof h);
    uint8_t *map = hi > lo ? malloc(hi - lo) : NULL;
    if (map)
        memcpy(map, s->bmap + lo, hi - lo);
    s->dirty_lo = s->dirty_hi = 0;
    s->hdr_dirty = false;
    pthread_mutex_unlock(&s->lock);
    int r = 0;
    if (hi > lo && !map)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0)
        r = dev_flush(s->file);
    if (r == 0 && map)
        r = dev_pwrite(s->file, map, hi - lo, s->offset_bmap + lo);
    if (r == 0 && hdr)
        r = dev_pwrite(s->file, h, sizeof h, 0);
    if (r == 0 && (map || hdr))
        r = dev_flush(s->file);
    free(map);
    if (r < 0) {
        pthread_mutex_lock(&s->lock);
        if (hi > lo) {
            if (s->dirty_hi <= s->dirty_lo) {
                s->dirty_lo = lo;
                s->dirty_hi = hi;
            } else {
                s->dirty_lo = lo < s->dirty_lo ? lo : s->dirty_lo;
                s->dirty_hi = hi > s->dirty_hi ? hi : s->dirty_hi;
            }
        }
        s->hdr_dirty |= hdr;
        pthread_mutex_unlock(&s->lock);
    }
    return r;
}

static bool meta_dirty(struct vdi *s)
{
    pthread_mutex_lock(&s->lock);
    bool d = s->hdr_dirty || s->dirty_hi > s->dirty_lo;
    pthread_mutex_unlock(&s->lock);
    return d;
}

/* On the worker: a write that may allocate blocks, one block at a time. */
static int write_work(struct vdisk_req *req)
{
    struct vdi *s = req->dev->priv;
    uint64_t end = req->offset + req->length;
    uint8_t *block = NULL;
    bool allocated = false;
    int r = 0;
    for (uint64_t pos = req->offset; r == 0 && pos < end;) {
        uint64_t in = pos % VDI_BLOCK_SIZE, n = VDI_BLOCK_SIZE - in;
        if (n > end - pos)
            n = end - pos;
        uint32_t b = (uint32_t)(pos / VDI_BLOCK_SIZE);
        uint64_t host = 0;
        r = locate(s, pos, &host);
        if (r < 0)
            break;
        if (r == 1) {
            r = req_pwrite_slice(req, s->file, host, pos - req->offset, n,
                                 req->flags & VDISK_REQ_FUA);
        } else if (req->op == VDISK_OP_WRITE) {
            /* Only this thread allocates: the entry stays unallocated until
             * the data is in place. */
            if (!block && !(block = malloc(VDI_BLOCK_SIZE))) {
                r = err_set(-ENOMEM, "out of memory for a %u-byte block", VDI_BLOCK_SIZE);
                break;
            }
            memset(block, 0, VDI_BLOCK_SIZE);
            iov_to_buf(req->iov, req->iovcnt, (size_t)(pos - req->offset), block + in,
                       (size_t)n);
            pthread_mutex_lock(&s->lock);
            uint64_t idx = s->next_index;
            pthread_mutex_unlock(&s->lock);
            if (idx >= s->blocks) { /* cannot happen in a map that passed load_map */
                r = err_set(-ENOSPC, "%s: no data block left for block %" PRIu32,
                            s->dev->filename, b);
                break;
            }
            r = dev_pwrite(s->file, block, VDI_BLOCK_SIZE,
                           s->offset_data + idx * VDI_BLOCK_SIZE);
            if (r < 0)
                break;
            pthread_mutex_lock(&s->lock);
            le32_store(s->bmap + (size_t)b * 4, (uint32_t)idx);
            s->next_index = idx + 1;
            s->blocks_allocated++;
            s->used++;
            le32_store(s->hdr + OFF_BLOCKS_ALLOCATED, s->blocks_allocated);
            /* The map's sector and the header go at the next flush. */
            size_t sec = (size_t)b * 4 / VDI_SECTOR_SIZE * VDI_SECTOR_SIZE;
            if (s->dirty_hi <= s->dirty_lo) {
                s->dirty_lo = sec;
                s->dirty_hi = sec + VDI_SECTOR_SIZE;
            } else {
                s->dirty_lo = sec < s->dirty_lo ? sec : s->dirty_lo;
                s->dirty_hi = sec + VDI_SECTOR_SIZE > s->dirty_hi ? sec + VDI_SECTOR_SIZE
                                                                   : s->dirty_hi;
            }
            s->hdr_dirty = true;
            uint64_t fend = s->offset_data + (idx + 1) * VDI_BLOCK_SIZE;
            if (fend > s->file_size)
                s->file_size = fend;
            pthread_mutex_unlock(&s->lock);
            allocated = true;
        } else {
            r = 0; /* zeroes on an unallocated block: already zeroes */
        }
        pos += n;
    }
    free(block);
    /* FUA: the new blocks' data and metadata are on stable storage too. */
    if (r == 0 && allocated && (req->flags & VDISK_REQ_FUA))
        r = writeback(s);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r < 0 ? r : 0;
}

/* On the worker: a flush with metadata to write back. */
static int flush_work(struct vdisk_req *req)
{
    int r = writeback(req->dev->priv);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

/* True when every block REQ touches is allocated. */
static bool all_allocated(struct vdi *s, const struct vdisk_req *req)
{
    uint64_t first = req->offset / VDI_BLOCK_SIZE;
    uint64_t last = (req->offset + req->length - 1) / VDI_BLOCK_SIZE;
    bool all = true;
    pthread_mutex_lock(&s->lock);
    for (uint64_t b = first; all && b <= last; b++)
        all = VDI_IS_ALLOCATED(entry_get(s, (uint32_t)b));
    pthread_mutex_unlock(&s->lock);
    return all;
}

static void vdi_submit(struct vdisk_req *req)
{
    struct vdi *s = req->dev->priv;
    vreq(req)->pos = req->offset;
    switch (req->op) {
    case VDISK_OP_WRITE_ZEROES:
        if (s->map_broken) {
            req_fail(req, -EIO, "the block map is damaged: the image takes no writes (see "
                     "vdisk check)");
            return;
        }
        /* fall through */
    case VDISK_OP_READ:
        if (req->length)
            vdi_rw_walk(req);
        else
            req_complete(req, 0);
        return;
    case VDISK_OP_WRITE:
        if (s->map_broken)
            req_fail(req, -EIO, "the block map is damaged: the image takes no writes (see "
                     "vdisk check)");
        else if (!req->length)
            req_complete(req, 0);
        else if (all_allocated(s, req))
            vdi_rw_walk(req);
        else
            offload_req(s->offload, req, write_work, NULL);
        return;
    case VDISK_OP_DISCARD:
        req_complete(req, 0); /* advisory; QEMU's vdi discards nothing either */
        return;
    case VDISK_OP_FLUSH: {
        if (meta_dirty(s)) {
            /* (Every allocating write done before this flush has marked
             * the metadata dirty before it completed.) */
            offload_req(s->offload, req, flush_work, NULL);
            return;
        }
        req_send_child(req, s->file, VDISK_OP_FLUSH, 0, 0, NULL, 0, 0);
        return;
    }
    }
    req_fail(req, -EINVAL, "unknown operation");
}

/* ---- Block status, info, check -------------------------------------------- */

static int vdi_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                            struct vdisk_extent *ext)
{
    struct vdi *s = dev->priv;
    uint64_t n = VDI_BLOCK_SIZE - off % VDI_BLOCK_SIZE;
    ext->length = n < len ? n : len;
    ext->depth = 0;
    uint64_t host = 0;
    int r = locate(s, off, &host);
    if (r < 0)
        return r;
    if (r == 0) {
        /* As QEMU: an unallocated block is a known run of zeroes. */
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED;
        return 0;
    }
    ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
    ext->host_offset = host;
    ext->host_file = s->file->filename;
    /* A static image's blocks are preallocated: QEMU asks the file which
     * of them hold data. */
    struct vdisk_extent fe;
    if (s->type == VDI_TYPE_STATIC && dev_block_status(s->file, host, ext->length, &fe) == 0) {
        if (fe.flags & VDISK_EXT_ZERO)
            ext->flags |= VDISK_EXT_ZERO;
        if (fe.length && fe.length < ext->length)
            ext->length = fe.length;
    }
    return 0;
}

static void vdi_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    (void)dev;
    info->cluster_size = VDI_BLOCK_SIZE;
}

static int64_t vdi_allocated_size(struct vdisk_dev *dev)
{
    struct vdi *s = dev->priv;
    return dev_allocated_size(s->file);
}



/* As QEMU's vdi check: entries beyond the image's blocks, entries sharing a
 * block, and the header's count of allocated blocks; no repairs. */
static int vdi_check(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                     vdisk_check_report_fn report, void *opaque)
{
    struct vdi *s = dev->priv;
    if (flags)
        return err_set(-ENOTSUP, "%s: vdi images cannot be repaired", dev->filename);
    uint8_t *seen = calloc((size_t)s->blocks / 8 + 1, 1);
    if (!seen) {
        res->check_errors++;
        return err_set(-ENOMEM, "out of memory");
    }
    uint32_t allocated = 0;
    pthread_mutex_lock(&s->lock);
    for (uint32_t b = 0; b < s->blocks; b++) {
        uint32_t e = entry_get(s, b);
        if (!VDI_IS_ALLOCATED(e))
            continue;
        if (e >= s->blocks) {
            check_reportf(report, opaque, "ERROR: block index %" PRIu32 " too large, is %" PRIu32, b,
                    e);
            res->corruptions++;
            continue;
        }
        allocated++;
        if (seen[e / 8] >> (e % 8) & 1) {
            /* (QEMU names the data block twice.) */
            check_reportf(report, opaque, "ERROR: block index %" PRIu32 " also used by %" PRIu32, e,
                    e);
            res->corruptions++;
        } else {
            seen[e / 8] |= (uint8_t)(1u << (e % 8));
        }
    }
    if (allocated != s->blocks_allocated) {
        check_reportf(report, opaque, "ERROR: allocated blocks mismatch, is %" PRIu32 ", should be %"
                PRIu32, allocated, s->blocks_allocated);
        res->corruptions++;
    }
    pthread_mutex_unlock(&s->lock);
    free(seen);
    return 0;
}

/* ---- Create --------------------------------------------------------------- */

/* A random (version 4) UUID, stored as VirtualBox and QEMU store them: the
 * first three fields little-endian. */
static int make_uuid(uint8_t *u)
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(u + got, 16 - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    u[7] = (uint8_t)((u[7] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    return 0;
}

/* The static option of create: 0 or -EINVAL. */
static int static_opt(struct opt_set *os, bool *is_static)
{
    *is_static = false;
    const char *v = opt_take(os, "static");
    return v ? opt_bool("static", v, is_static) : 0;
}

static int check_size(const char *filename, uint64_t size)
{
    if (size > VDI_DISK_SIZE_MAX)
        return err_set(-ENOTSUP, "%s: Unsupported VDI image size (size is 0x%" PRIx64 ", max "
                       "supported is 0x%" PRIx64 ")", filename, size, VDI_DISK_SIZE_MAX);
    uint64_t need = align_up(DIV_ROUND_UP_U64(size, VDI_BLOCK_SIZE) * 4, VDI_SECTOR_SIZE);
    if (need > VDI_MAX_BMAP_BYTES)
        return err_set(-EFBIG, "%s: a VDI image of %" PRIu64 " bytes needs a block map of %"
                       PRIu64 " bytes, more than vdisk's limit of %u", filename, size, need,
                       VDI_MAX_BMAP_BYTES);
    return 0;
}

static int vdi_create(const char *filename, uint64_t size, struct opt_set *os)
{
    bool is_static;
    int r = static_opt(os, &is_static);
    if (r < 0)
        return r;
    r = opt_check_all_taken(os, "vdi");
    if (r < 0)
        return r;
    r = check_size(filename, size);
    if (r < 0)
        return r;
    uint32_t blocks = (uint32_t)DIV_ROUND_UP_U64(size, VDI_BLOCK_SIZE);
    size_t bmap_bytes = (size_t)align_up((uint64_t)blocks * 4, VDI_SECTOR_SIZE);
    uint8_t *buf = calloc(1, VDI_HEADER_SIZE + bmap_bytes);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    memcpy(buf, VDI_TEXT, sizeof VDI_TEXT - 1);
    le32_store(buf + OFF_SIGNATURE, VDI_SIGNATURE);
    le32_store(buf + OFF_VERSION, VDI_VERSION_1_1);
    le32_store(buf + OFF_HEADER_SIZE, 0x180);
    le32_store(buf + OFF_IMAGE_TYPE, is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
    le32_store(buf + OFF_OFFSET_BMAP, VDI_HEADER_SIZE);
    le32_store(buf + OFF_OFFSET_DATA, (uint32_t)(VDI_HEADER_SIZE + bmap_bytes));
    le32_store(buf + OFF_SECTOR_SIZE, VDI_SECTOR_SIZE);
    le64_store(buf + OFF_DISK_SIZE, size);
    le32_store(buf + OFF_BLOCK_SIZE, VDI_BLOCK_SIZE);
    le32_store(buf + OFF_BLOCKS, blocks);
    le32_store(buf + OFF_BLOCKS_ALLOCATED, is_static ? blocks : 0);
    if (make_uuid(buf + OFF_UUID_IMAGE) < 0 || make_uuid(buf + OFF_UUID_LAST_SNAP) < 0) {
        free(buf);
        return err_set(-EIO, "%s: no random bytes for the image's UUIDs", filename);
    }
    for (uint32_t b = 0; b < blocks; b++)
        le32_store(buf + VDI_HEADER_SIZE + (size_t)b * 4, is_static ? b : VDI_UNALLOCATED);
    struct file_lock *lock;
    int fd = file_create_locked(filename, &lock);
    if (fd < 0) {
        free(buf);
        return fd;
    }
    size_t total = VDI_HEADER_SIZE + bmap_bytes;
    if (r == 0)
        r = file_write_all(fd, buf, total, 0, filename);
    free(buf);
    if (r == 0 && is_static &&
        ftruncate(fd, (off_t)(total + (uint64_t)blocks * VDI_BLOCK_SIZE)) < 0)
        r = err_set(-errno, "%s: could not resize to %" PRIu64 " bytes: %s", filename,
                    total + (uint64_t)blocks * VDI_BLOCK_SIZE, strerror(errno));
    r = file_create_done(fd, lock, r, filename);
    return r;
}

/* The options create takes (vdisk_create_option). */
static const struct create_opt vdi_create_opts[] = {
    {"size", "size",
     "the virtual disk's size in bytes"},
    {"static", "bool (on/off)",
     "allocate every block now (a static VDI)"},
    {NULL, NULL, NULL},
};

const struct vdisk_driver vdisk_driver_vdi = {
    .name = "vdi",
    .req_state_size = sizeof(struct vdi_req),
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .submit = vdi_submit,
    .block_status = vdi_block_status,
    .allocated_size = vdi_allocated_size,
    .get_info = vdi_get_info,
    .check = vdi_check,
    .create = vdi_create,
    .create_opts = vdi_create_opts,
};
