/* SPDX-License-Identifier: MIT */
/*
 * formats/raw/raw.c: raw images: regular files and host block devices.
 *
 * Block N of the device is block N of the file.  This is also the protocol
 * driver under every other format: it is the only driver that owns a file
 * descriptor and talks to the I/O engine.
 *
 *   discard       regular file: fallocate(PUNCH_HOLE); block device: BLKDISCARD
 *   write_zeroes  fallocate(ZERO_RANGE), or PUNCH_HOLE when unmapping is
 *                 allowed; writes of zeroes where the file system has neither
 *   block status  SEEK_DATA / SEEK_HOLE
 *   cache=none    O_DIRECT, with bounce buffers for unaligned memory and the
 *                 core's read-modify-write for unaligned offsets
 *   iovecs        more than the kernel takes (1024) go through a bounce buffer
 *   locking       QEMU's OFD lock bytes (lib/lock.c), taken once the format on
 *                 top is known (take_perms) and when creating
 *
 * Like QEMU, the size of a regular file is rounded up to 512 bytes: the tail
 * past the end of the file reads as zeroes and writing it extends the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"

#define ZERO_CHUNK (1u << 20)

struct raw {
    int fd;
    bool is_bdev;
    bool direct;
    uint32_t mem_align;
    uint64_t file_id;
    struct file_lock *lock;     /* the image locks this open holds, or NULL */
    unsigned perm, shared;      /* ... and what they take and share */
    atomic_bool no_discard;     /* the file system refused a hole punch */
    atomic_bool no_zero_range;  /* ... or a zero range */
};

static atomic_uint_fast64_t next_file_id = 1;

/* ---- Open and create ------------------------------------------------------ */

/* The alignment O_DIRECT needs, from statx, or found by trying. */
static void dio_alignment(int fd, const char *filename, uint32_t *off_align, uint32_t *mem_align)
{
    *off_align = 0;
    *mem_align = 0;
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        *off_align = stx.stx_dio_offset_align;
        *mem_align = stx.stx_dio_mem_align;
    }
#endif
    (void)filename;
    if (!*off_align) {
        /* Try reads of growing sizes at offset 0 (past EOF is fine too). */
        void *buf = aligned_alloc_or_null(4096, 4096);
        *off_align = 4096;
        if (buf) {
            for (uint32_t a = 512; a <= 4096; a *= 2) {
                if (pread(fd, buf, a, 0) >= 0) {
                    *off_align = a;
                    break;
                }
            }
            free(buf);
        }
    }
    if (!*mem_align || *mem_align < *off_align)
        *mem_align = *off_align;
    if (*mem_align < 512)
        *mem_align = 512;
}

static int raw_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)file;
    (void)os;
    const struct vdisk_open_params *p = &dev->params;
    bool direct = p->cache == VDISK_CACHE_NONE || p->cache == VDISK_CACHE_DIRECTSYNC;
    int flags = O_CLOEXEC | (p->read_only ? O_RDONLY : O_RDWR) | (direct ? O_DIRECT : 0);
    int fd = open(dev->filename, flags);
    if (fd < 0) {
        int e = errno;
        if (direct && e == EINVAL)
            return err_set(-EINVAL, "%s: the file system does not support O_DIRECT "
                           "(cache=none); use cache=writeback", dev->filename);
        return err_set(-e, "Could not open '%s': %s", dev->filename, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "%s: stat failed: %s", dev->filename, strerror(e));
    }
    struct raw *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return err_set(-ENOMEM, "out of memory");
    }
    r->fd = fd;
    r->direct = direct;
    r->file_id = atomic_fetch_add(&next_file_id, 1);
    if (S_ISBLK(st.st_mode)) {
        uint64_t size;
        int ssz = 512;
        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            int e = errno;
            close(fd);
            free(r);
            return err_set(-e, "%s: BLKGETSIZE64 failed: %s", dev->filename, strerror(e));
        }
        if (ioctl(fd, BLKSSZGET, &ssz) < 0 || ssz < 512 || ssz > 65536)
            ssz = 512;
        r->is_bdev = true;
        dev->size = size;
        dev->block_size = (uint32_t)ssz;
        if (direct) {
            dev->align = (uint32_t)ssz;
            r->mem_align = (uint32_t)ssz;
        }
    } else if (S_ISDIR(st.st_mode)) {
        close(fd);
        free(r);
        return err_set(-EISDIR, "%s: is a directory, not an image", dev->filename);
    } else {
        off_t end = S_ISREG(st.st_mode) ? st.st_size : lseek(fd, 0, SEEK_END);
        dev->size = end > 0 ? align_up((uint64_t)end, 512) : 0;
        dev->file_length = end > 0 ? (uint64_t)end : 0;
        if (direct) {
            uint32_t off_align;
            dio_alignment(fd, dev->filename, &off_align, &r->mem_align);
            dev->align = off_align;
        }
    }
    dev->caps = VDISK_CAN_FLUSH | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                VDISK_CAN_ZERO_UNMAP;
    if (!p->read_only)
        dev->caps |= VDISK_CAN_WRITE;
    dev->priv = r;
    return 0;
}

/* Locks are taken when the format on top is known (dev_take_perms), since
 * a format's readers share less than a raw image's. */
static int raw_lock(struct vdisk_dev *dev, unsigned perm, unsigned shared, bool opening)
{
    struct raw *r = dev->priv;
    struct file_lock *l;
    int ret = file_lock_acquire(&l, r->fd, dev->filename, dev->params.locking, perm, shared,
                                !opening);
    if (ret < 0)
        return ret;
    /* The new locks are in place before the old ones go. */
    file_lock_release(r->lock);
    r->lock = l;
    r->perm = perm;
    r->shared = shared;
    return 0;
}

static int raw_take_perms(struct vdisk_dev *dev, unsigned perm, unsigned shared)
{
    return raw_lock(dev, perm, shared, true);
}

static void raw_close(struct vdisk_dev *dev)
{
    struct raw *r = dev->priv;
    if (!r)
        return;
    file_lock_release(r->lock);
    close(r->fd);
    free(r);
    dev->priv = NULL;
}

/* The preallocation option of create (and measure), checked: 0 or -EINVAL. */
static int raw_prealloc_opt(struct opt_set *os, const char **prealloc)
{
    *prealloc = opt_take(os, "preallocation");
    if (*prealloc && strcmp(*prealloc, "off") && strcmp(*prealloc, "falloc") &&
        strcmp(*prealloc, "full"))
        return err_set(-EINVAL, "invalid preallocation mode '%s' for raw (expected off, "
                       "falloc or full)", *prealloc);
    return 0;
}

static int raw_create(const char *filename, uint64_t size, struct opt_set *os)
{
    const char *prealloc;
    if (raw_prealloc_opt(os, &prealloc) < 0)
        return -EINVAL;
    if (size > INT64_MAX)
        return err_set(-EFBIG, "%s: size %" PRIu64 " is too large", filename, size);
    /* Every option is checked before the file is touched. */
    int r = opt_check_all_taken(os, "raw");
    if (r < 0)
        return r;
    struct file_lock *lock;
    int fd = file_create_locked(filename, &lock);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        file_lock_release(lock);
        close(fd);
        return 0; /* a block device has the size it has */
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        r = err_set(-errno, "%s: could not resize to %" PRIu64 " bytes: %s", filename, size,
                    strerror(errno));
    } else if (!prealloc || !strcmp(prealloc, "off")) {
        /* As QEMU does: allocate the first block, so that tools probing the
         * file system's alignment on it find real blocks (and both tools
         * report the same allocation for a new image). */
        uint8_t zero[4096] = {0};
        size_t n = size < sizeof zero ? (size_t)size : sizeof zero;
        if (n && pwrite(fd, zero, n, 0) != (ssize_t)n)
            r = err_set(-errno, "%s: could not write the first block: %s", filename,
                        strerror(errno));
    } else if (prealloc && !strcmp(prealloc, "falloc") && size) {
        int e = posix_fallocate(fd, 0, (off_t)size);
        if (e)
            r = err_set(-e, "%s: could not preallocate %" PRIu64 " bytes: %s", filename, size,
                        strerror(e));
    } else if (prealloc && !strcmp(prealloc, "full")) {
        char *zero = calloc(1, ZERO_CHUNK);
        if (!zero)
            r = err_set(-ENOMEM, "out of memory");
        for (uint64_t off = 0; r == 0 && off < size;) {
            size_t n = size - off < ZERO_CHUNK ? (size_t)(size - off) : ZERO_CHUNK;
            r = file_write_all(fd, zero, n, off, filename);
            off += n;
        }
        free(zero);
    }
    r = file_create_done(fd, lock, r, filename);
    return r;
}

/* ---- I/O ------------------------------------------------------------------ */

/* A request's state while raw writes zeroes the slow way (zero_write_next). */
struct raw_req {
    uint64_t next;             /* the next offset to write */
};
_Static_assert(sizeof(struct raw_req) <= REQ_STATE_MAX, "raw's request state fits");

static void raw_engine(struct vdisk_req *req, enum eng_op op, int mode,
                       long (*call)(struct vdisk_req *req, int fd))
{
    struct raw *r = req->dev->priv;
    struct eng_file f = {.fd = r->fd, .id = r->file_id, .direct = r->direct};
    req_start_file_io(req, &f, op, mode, call);
}

static bool iov_aligned(const struct iovec *iov, int iovcnt, uint32_t a)
{
    for (int i = 0; i < iovcnt; i++)
        if ((uintptr_t)iov[i].iov_base % a || iov[i].iov_len % a)
            return false;
    return true;
}

/* O_DIRECT with a caller's buffer that is not aligned: use a bounce buffer. */
static void bounce_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    void *buf = child->done_arg;
    if (ret == 0 && req->op == VDISK_OP_READ)
        iov_from_buf(req->iov, req->iovcnt, 0, buf, req->length);
    free(buf);
    req_child_finishes_parent(child, ret);
}

static void raw_bounce(struct vdisk_req *req)
{
    struct raw *r = req->dev->priv;
    /* On a page boundary, not just the device's minimum: a buffer that
     * starts inside a page costs the disk one more segment per request. */
    void *buf = aligned_alloc_or_null(r->mem_align > 4096 ? r->mem_align : 4096, req->length);
    if (!buf) {
        req_fail(req, -ENOMEM, "out of memory for a %" PRIu64 "-byte bounce buffer",
                 req->length);
        return;
    }
    if (req->op == VDISK_OP_WRITE)
        iov_to_buf(req->iov, req->iovcnt, 0, buf, req->length);
    struct iovec v = {buf, req->length};
    struct vdisk_req *c = req_new_child(req, req->dev, req->op, req->offset, req->length, &v, 1,
                                        req->flags, bounce_done, buf);
    if (!c) {
        free(buf);
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    raw_engine(c, req->op == VDISK_OP_READ ? ENG_READ : ENG_WRITE, 0, NULL);
}

/* Discard of a block device: an ioctl, run where blocking is allowed. */
static long bdev_discard(struct vdisk_req *req, int fd)
{
    uint64_t range[2] = {req->offset, req->length};
    return ioctl(fd, BLKDISCARD, range) < 0 ? -errno : 0;
}

static void discard_done(struct vdisk_req *child, int ret)
{
    struct raw *r = child->dev->priv;
    if (ret == -EOPNOTSUPP || ret == -ENOTTY || ret == -EINVAL) {
        atomic_store(&r->no_discard, true);
        ret = 0; /* discard is advisory */
    }
    req_child_finishes_parent(child, ret);
}

/* A read-only chunk of zeroes for file systems without zero ranges. */
static uint8_t *zero_buf;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_alloc(void)
{
    zero_buf = aligned_alloc_or_null(4096, ZERO_CHUNK);
    if (zero_buf)
        memset(zero_buf, 0, ZERO_CHUNK);
}

static const uint8_t *zero_chunk(void)
{
    pthread_once(&zero_once, zero_alloc);
    return zero_buf;
}

/* Writes zeroes the slow way, ZERO_CHUNK at a time (struct raw_req). */
static void zero_write_next(struct vdisk_req *req);

static void zero_write_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    req_take_error(req, child);
    req_free(child);
    if (ret < 0) {
        req_complete(req, ret);
        return;
    }
    zero_write_next(req);
}

static void zero_write_next(struct vdisk_req *req)
{
    struct raw_req *rr = req_state(req);
    uint64_t off = rr->next, end = req->offset + req->length;
    if (off >= end) {
        req_complete(req, 0);
        return;
    }
    const uint8_t *zero = zero_chunk();
    if (!zero) {
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    uint64_t n = end - off < ZERO_CHUNK ? end - off : ZERO_CHUNK;
    struct iovec v = {(void *)zero, n};
    struct vdisk_req *c = req_new_child(req, req->dev, VDISK_OP_WRITE, off, n, &v, 1,
                                        req->flags & VDISK_REQ_FUA, zero_write_done, NULL);
    if (!c) {
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    rr->next = off + n;
    raw_engine(c, ENG_WRITE, 0, NULL);
}

static void zeroes_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    struct raw *r = req->dev->priv;
    if (ret == -EOPNOTSUPP || ret == -EINVAL || ret == -ENOTTY) {
        atomic_store(&r->no_zero_range, true);
        req_free(child);
        if (req->flags & VDISK_REQ_NO_FALLBACK) {
            req_fail(req, -ENOTSUP, "the file system cannot zero a range without writing "
                     "zeroes (no fallback asked)");
            return;
        }
        ((struct raw_req *)req_state(req))->next = req->offset;
        zero_write_next(req);
        return;
    }
    req_child_finishes_parent(child, ret);
}

static void raw_submit(struct vdisk_req *req)
{
    struct raw *r = req->dev->priv;
    switch (req->op) {
    case VDISK_OP_READ:
    case VDISK_OP_WRITE:
        if (req->iovcnt > REQ_MAX_IOV ||
            (r->direct && !iov_aligned(req->iov, req->iovcnt, r->mem_align))) {
            raw_bounce(req);
            return;
        }
        raw_engine(req, req->op == VDISK_OP_READ ? ENG_READ : ENG_WRITE, 0, NULL);
        return;
    case VDISK_OP_FLUSH:
        raw_engine(req, ENG_FSYNC, ENG_FDATASYNC, NULL);
        return;
    case VDISK_OP_DISCARD: {
        if (atomic_load(&r->no_discard)) {
            req_complete(req, 0);
            return;
        }
        struct vdisk_req *c = req_new_child(req, req->dev, req->op, req->offset, req->length,
                                            NULL, 0, 0, discard_done, NULL);
        if (!c) {
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        if (r->is_bdev) {
            raw_engine(c, ENG_CALL, 0, bdev_discard);
        } else {
            raw_engine(c, ENG_FALLOCATE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, NULL);
        }
        return;
    }
    case VDISK_OP_WRITE_ZEROES: {
        /* No fallback: a block device's zeroing (ZERO_RANGE, BLKZEROOUT)
         * may write zeroes in the kernel, so only its discard is cheap; a
         * file needs a zeroing or punching fallocate. */
        if ((req->flags & VDISK_REQ_NO_FALLBACK) &&
            (atomic_load(&r->no_zero_range) || r->is_bdev)) {
            req_fail(req, -ENOTSUP, "%s cannot zero a range without writing zeroes (no "
                     "fallback asked)", r->is_bdev ? "a block device" : "the file system");
            return;
        }
        if (atomic_load(&r->no_zero_range)) {
            ((struct raw_req *)req_state(req))->next = req->offset;
            zero_write_next(req);
            return;
        }
        struct vdisk_req *c = req_new_child(req, req->dev, req->op, req->offset, req->length,
                                            NULL, 0, req->flags, zeroes_done, NULL);
        if (!c) {
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        /* Punching keeps the size; zeroing past the end of file extends it. */
        int mode = (req->flags & VDISK_REQ_MAY_UNMAP) && !r->is_bdev
                       ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                       : FALLOC_FL_ZERO_RANGE;
        raw_engine(c, ENG_FALLOCATE, mode, NULL);
        return;
    }
    }
    req_fail(req, -EINVAL, "unknown operation");
}

/* ---- Block status --------------------------------------------------------- */

static int raw_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                            struct vdisk_extent *ext)
{
    struct raw *r = dev->priv;
    ext->length = len;
    ext->flags = VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
    ext->host_offset = off;
    ext->host_file = dev->filename;
    if (r->is_bdev) {
        ext->flags |= VDISK_EXT_DATA;
        return 0;
    }
    off_t data = lseek(r->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* no data from here to the end of the file */
            ext->flags |= VDISK_EXT_ZERO;
            return 0;
        }
        ext->flags |= VDISK_EXT_DATA; /* cannot tell: say data */
        return 0;
    }
    if ((uint64_t)data > off) {
        ext->flags |= VDISK_EXT_ZERO;
        if ((uint64_t)data - off < len)
            ext->length = (uint64_t)data - off;
        return 0;
    }
    off_t hole = lseek(r->fd, (off_t)off, SEEK_HOLE);
    ext->flags |= VDISK_EXT_DATA;
    /* With O_DIRECT, I/O is in whole blocks of dev->align: data that ends
     * inside one (only the file's end can) covers the whole block, as
     * QEMU reports it with cache.direct. */
    if (r->direct && hole > (off_t)off && dev->align > 1 && (uint64_t)hole % dev->align)
        hole = (off_t)align_up((uint64_t)hole, dev->align);
    if (hole > (off_t)off && (uint64_t)hole - off < len)
        ext->length = (uint64_t)hole - off;
    return 0;
}

/* The bytes are the file's own, through its page cache (not with O_DIRECT,
 * which keeps them out of it); past the file's end they read as zeroes,
 * which the reader finds out (the file's length may have grown since). */
static int raw_map_file(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                        struct dev_file_run *run)
{
    struct raw *r = dev->priv;
    if (r->direct)
        return -ENOTSUP;
    run->len = len;
    run->fd = r->fd;
    run->host = off;
    return 0;
}

/* A raw image is opened without the resize permission (as in QEMU): take
 * it when the file is to change size, and keep it. */
static int take_resize(struct vdisk_dev *dev)
{
    struct raw *r = dev->priv;
    if (r->lock && !(r->perm & PERM_RESIZE))
        return raw_lock(dev, r->perm | PERM_RESIZE, r->shared, false);
    return 0;
}

/* A raw image of SIZE bytes takes SIZE bytes, holes included, whatever
 * the source holds and however it is preallocated. */
static int raw_measure(uint64_t size, struct vdisk_dev *src, struct opt_set *os,
                       struct vdisk_measure_result *res)
{
    const char *prealloc;
    if (raw_prealloc_opt(os, &prealloc) < 0)
        return -EINVAL;
    int r = opt_check_all_taken(os, "raw");
    if (r < 0)
        return r;
    res->required = res->fully_allocated = size;
    return 0;
}

static int raw_preallocate(struct vdisk_dev *dev, uint64_t size)
{
    struct raw *r = dev->priv;
    uint64_t cur = __atomic_load_n(&dev->size, __ATOMIC_ACQUIRE);
    if (r->is_bdev || size > INT64_MAX)
        return err_set(-ENOTSUP, "%s: cannot preallocate", dev->filename);
    if (size <= cur)
        return 0;
    int ret = take_resize(dev);
    if (ret < 0)
        return ret;
    if (fallocate(r->fd, 0, (off_t)cur, (off_t)(size - cur)) < 0) {
        int e = errno;
        return err_set(e == EOPNOTSUPP ? -ENOTSUP : -e, "%s: fallocate of %" PRIu64 " bytes at "
                       "offset %" PRIu64 ": %s", dev->filename, size - cur, cur, strerror(e));
    }
    dev_size_grow(dev, size);
    return 0;
}

static int raw_truncate(struct vdisk_dev *dev, uint64_t size)
{
    struct raw *r = dev->priv;
    if (r->is_bdev)
        return err_set(-ENOTSUP, "%s: a block device cannot be resized", dev->filename);
    int ret = take_resize(dev);
    if (ret < 0)
        return ret;
    if (size > INT64_MAX || ftruncate(r->fd, (off_t)size) < 0)
        return err_set(size > INT64_MAX ? -EFBIG : -errno, "%s: could not resize to %" PRIu64
                       " bytes: %s", dev->filename, size,
                       size > INT64_MAX ? "too large" : strerror(errno));
    __atomic_store_n(&dev->size, align_up(size, 512), __ATOMIC_RELEASE);
    return 0;
}

static int64_t raw_allocated_size(struct vdisk_dev *dev)
{
    struct raw *r = dev->priv;
    struct stat st;
    if (fstat(r->fd, &st) < 0)
        return err_set(-errno, "%s: stat failed: %s", dev->filename, strerror(errno));
    if (r->is_bdev)
        return 0;
    return (int64_t)st.st_blocks * 512;
}

/* The options create takes (vdisk_create_option). */
static const struct create_opt raw_create_opts[] = {
    {"preallocation", "str",
     "off (default), falloc or full"},
    {"size", "size",
     "the virtual disk's size in bytes"},
    {NULL, NULL, NULL},
};

const struct vdisk_driver vdisk_driver_raw = {
    .name = "raw",
    .req_state_size = sizeof(struct raw_req),
    .protocol = true,
    .probe = NULL, /* raw is what is left when no other format claims a file */
    .open = raw_open,
    .take_perms = raw_take_perms,
    .close = raw_close,
    .submit = raw_submit,
    .block_status = raw_block_status,
    .map_file = raw_map_file,
    .allocated_size = raw_allocated_size,
    .truncate = raw_truncate,
    .preallocate = raw_preallocate,
    .create = raw_create,
    .create_opts = raw_create_opts,
    .measure = raw_measure,
};
