/* SPDX-License-Identifier: MIT */
/*
 * lib/driver.h: the interface between the core and the drivers, and the
 * only lib/ header a file under formats/ includes.
 *
 * A driver is one layer of a device stack:
 *   - a protocol driver owns storage: raw hands requests to the queue's
 *     I/O engine with req_start_file_io(), memory serves them in place;
 *   - a format driver (qcow2, ...) is opened over a protocol device, which it
 *     reads and writes through child requests (req_new_child) and the
 *     synchronous dev_*() calls;
 *   - a filter (offset) maps requests onto another device.
 * A driver reaches the device below it only through those calls, never
 * through the lower driver's functions or state.
 *
 * The core checks every request once, at the layer boundary, before the
 * driver sees it: the range lies inside the device, writes are refused on
 * read-only devices, and offsets and lengths are multiples of dev->align
 * (the core reads, modifies and writes whole blocks otherwise).
 *
 * What a driver sees of a device (struct vdisk_dev) and of a request
 * (struct vdisk_req) is declared here; the core's own state (references,
 * queues, engines, the quiesce section, write tracking, fan-out counts)
 * sits behind the opaque `core` pointers and is defined in lib/internal.h,
 * which drivers do not include.  A driver keeps its per-request state in
 * the typed area it declares (req_state_size, req_state()).
 *
 * The driver's toolkit comes with this header: error messages
 * (error_internal.h), the key=value options of an open or create
 * (options_internal.h), sized public structures (abi.h), byte order
 * (endian.h) and sizes (size.h).
 */
#ifndef VDISK_DRIVER_H
#define VDISK_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vdisk/vdisk.h>

#include "abi.h"
#include "crypto.h" /* encryption for formats (lib/crypto.c) */
#include "endian.h"
#include "error_internal.h"
#include "options_internal.h"
#include "size.h"

/* Marks the functions that libvdisk.so exports (those the headers declare). */
#define VDISK_EXPORT __attribute__((visibility("default")))

struct vdisk_dev;
struct vdisk_req;
struct vdisk_queue;  /* opaque to drivers */
struct dev_core;     /* the core's part of a device (lib/internal.h) */
struct req_core;     /* the core's part of a request (lib/internal.h) */

/* ---- Open parameters ------------------------------------------------------ */

enum vdisk_cache_mode {
    VDISK_CACHE_WRITEBACK,
    VDISK_CACHE_NONE,
    VDISK_CACHE_WRITETHROUGH,
    VDISK_CACHE_DIRECTSYNC,
    VDISK_CACHE_UNSAFE,
};

enum vdisk_engine_kind {
    VDISK_ENGINE_AUTO,
    VDISK_ENGINE_URING,
    VDISK_ENGINE_THREADS,
};

/* True when io_uring can be set up in this process (probed once). */
bool engine_uring_available(void);

/* The images already open above this one in a backing chain (loops). */
struct chain_link {
    const char *path;          /* realpath of an image */
    const struct chain_link *up;
    unsigned depth;
};

/* Image locking (the "locking" option). */
enum lock_mode {
    LOCK_AUTO,                 /* lock where the file system supports OFD locks */
    LOCK_ON,                   /* lock, and fail where locks do not work */
    LOCK_OFF,                  /* take no locks and ignore other processes' */
};

/* Settings that a stack of devices shares: the top device's open options. */
struct vdisk_open_params {
    bool read_only;
    enum lock_mode locking;
    bool force_share;          /* read-only: let others write (qemu-img -U) */
    enum vdisk_cache_mode cache;
    enum vdisk_engine_kind engine;
    unsigned threads;
    const struct chain_link *chain; /* during open only; NULL afterwards */
    bool no_backing;           /* refuse images with backing files (fuzzing) */
    /* Fuzzing: when set, a backing file NAME is not looked for on the host
     * but given by this call, as a protocol device (one reference passes to
     * the caller) opened with P; returns 0 or -errno.  The backing chain's
     * depth limit still applies. */
    int (*open_backing)(void *opaque, const char *name, const struct vdisk_open_params *p,
                        struct vdisk_dev **filep);
    void *backing_opaque;
};

/* ---- Devices -------------------------------------------------------------- */

/* What a driver sets (in open) and reads of a device. */
struct vdisk_dev {
    const struct vdisk_driver *drv;
    void *priv;                /* the driver's state */
    char *filename;
    uint64_t size;             /* bytes; use dev_size() where it may grow */
    bool growable;             /* a format's file: writes past the end extend it */
    bool raw_image;            /* set when the device is opened as a raw image
                                  itself (no format above it) */
    uint64_t file_length;      /* raw files: the exact length at open (size is
                                  rounded up to 512), else 0 */
    uint32_t block_size;       /* logical block size reported to users */
    uint32_t align;            /* request alignment the driver needs (>= 1) */
    unsigned caps;             /* VDISK_CAN_* */
    struct vdisk_open_params params;
    enum vdisk_engine_kind engine; /* resolved: URING or THREADS */
    struct dev_core *core;     /* the core's state; not for drivers */
};

/* Allocates a device with one reference; the driver fills in the rest. */
struct vdisk_dev *dev_alloc(const struct vdisk_driver *drv, const char *filename,
                            const struct vdisk_open_params *params);
/* Frees a device that never became visible (open failed). */
void dev_free(struct vdisk_dev *dev);
void dev_ref(struct vdisk_dev *dev);
/* Drops a reference; the last one flushes, closes and frees the device. */
void dev_unref(struct vdisk_dev *dev);
/* Opens FILENAME with its protocol driver (nbd for NBD URIs, else raw), for
 * formats' backing files. */
int dev_open_file(struct vdisk_dev **devp, const char *filename, struct opt_set *os,
                  const struct vdisk_open_params *params);
/*
 * Opens FILENAME as an image of FORMAT (probed when NULL, never with a
 * backing file allowed to choose) with PARAMS; format drivers use it for
 * backing files.  Options are taken from OS (may be NULL).
 */
int dev_open(struct vdisk_dev **devp, const char *filename, const char *format,
             const struct vdisk_open_params *params, struct opt_set *os);
/*
 * Opens a format (probed when NULL) over FILE, an already open protocol
 * device whose reference passes to the new device on success.
 */
int dev_open_format(struct vdisk_dev **devp, struct vdisk_dev *file, const char *format,
                    const struct vdisk_open_params *params, struct opt_set *os);
/* A protocol device holding a copy of DATA, growing up to LIMIT bytes. */
int dev_open_memory(struct vdisk_dev **devp, const void *data, size_t len, uint64_t limit,
                    const struct vdisk_open_params *params);

/* The size of a device that may be growing under another thread. */
static inline uint64_t dev_size(const struct vdisk_dev *dev)
{
    return __atomic_load_n(&dev->size, __ATOMIC_ACQUIRE);
}

/* Raises a growable device's size to at least END. */
void dev_size_grow(struct vdisk_dev *dev, uint64_t end);

/*
 * A range UPPER (a filter such as offset) opened over DEV: DEV's quiesce
 * sections hold UPPER's requests back and wait for those in flight.  Add
 * in UPPER's open; remove before UPPER goes.
 */
void dev_add_upper(struct vdisk_dev *dev, struct vdisk_dev *upper);
void dev_remove_upper(struct vdisk_dev *dev, struct vdisk_dev *upper);

/* Compressed clusters (the "compress" filter): whether DEV's format can
 * store them; its cluster size (0: none); and one cluster written
 * compressed, as vdisk_pwrite_compressed (synchronous). */
bool dev_can_compress(const struct vdisk_dev *dev);
uint32_t dev_cluster_size(struct vdisk_dev *dev);
int dev_pwrite_compressed(struct vdisk_dev *dev, const void *buf, size_t count,
                          uint64_t offset);

/* The name qemu-img shows for an image of FORMAT stored on DEV (its
 * driver's shown_name: an RBD image's json:{...}), malloc'd; NULL when DEV
 * shows its file name (or out of memory). */
char *dev_shown_name(struct vdisk_dev *dev, const char *format);

/* Host bytes DEV uses (its driver's allocated_size; formats and filters
 * ask the device below with this call), or -errno (-ENOTSUP when the
 * driver has no allocated_size). */
int64_t dev_allocated_size(struct vdisk_dev *dev);

/* Synchronous I/O for drivers on the devices below them. */
int dev_preadv(struct vdisk_dev *dev, const struct iovec *iov, int iovcnt, uint64_t off);
int dev_pwritev(struct vdisk_dev *dev, const struct iovec *iov, int iovcnt, uint64_t off,
                unsigned flags);
int dev_pread(struct vdisk_dev *dev, void *buf, size_t len, uint64_t off);
int dev_pwrite(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off);
int dev_flush(struct vdisk_dev *dev);
int dev_discard(struct vdisk_dev *dev, uint64_t off, uint64_t len);
int dev_truncate(struct vdisk_dev *dev, uint64_t size);
/* The driver's preallocate (-ENOTSUP without one). */
int dev_preallocate(struct vdisk_dev *dev, uint64_t size);
int dev_write_zeroes(struct vdisk_dev *dev, uint64_t off, uint64_t len, unsigned flags);
int dev_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                     struct vdisk_extent *ext);

/* A run of a device's bytes as they lie in a host file (dev_map_file). */
struct dev_file_run {
    uint64_t len;   /* bytes from the offset asked, 1 or more */
    int fd;         /* the file that holds them at HOST; -1: they read as
                     * zeroes */
    uint64_t host;
};

/*
 * Where the bytes at OFF (at most LEN of them, clipped to the device) lie:
 * *RUN describes the first run, found without I/O and without waiting for
 * a lock another thread holds.  Returns 0; -EAGAIN when that needs a
 * metadata read or a lock held elsewhere (read the usual way); -ENOTSUP
 * when the bytes are not as they are in a file (compressed, encrypted, a
 * filter's, a file opened with O_DIRECT) or the driver cannot tell;
 * -EINVAL for a range outside the device.  Sets no error message (it is
 * asked once per zero-copy read: lib/splice.c).  A file's run may end
 * past the file's end (a raw image's last sector, a damaged image): the
 * reader finds out.
 */
int dev_map_file(struct vdisk_dev *dev, uint64_t off, uint64_t len, struct dev_file_run *run);

/* ---- Image locks (protocol drivers) --------------------------------------- */

/*
 * Image locking (lib/lock.c): QEMU's permission bits, published as OFD locks
 * on the image file so that QEMU, qemu-img and vdisk see each other.
 */
#define PERM_CONSISTENT_READ  0x1u
#define PERM_WRITE            0x2u
#define PERM_WRITE_UNCHANGED  0x4u
#define PERM_RESIZE           0x8u
#define PERM_ALL              0xfu
#define PERM_COUNT            4

struct file_lock;
/*
 * Takes the locks of an open of the file FD that takes PERM and shares
 * SHARED, after checking that no other process holds conflicting ones.
 * MODE LOCK_OFF takes nothing (*LP = NULL); LOCK_AUTO goes on without locks
 * where the file system has none.  CREATING words the message for a change
 * other than an open (create, resize).
 * Returns 0, or -EAGAIN ("Failed to get "write" lock" ...) or -errno with a
 * message.  Release with file_lock_release() (NULL is a no-op).
 */
int file_lock_acquire(struct file_lock **lp, int fd, const char *filename, enum lock_mode mode,
                      unsigned perm, unsigned shared, bool creating);
void file_lock_release(struct file_lock *l);
/*
 * Opens FILENAME to create an image in it (O_RDWR | O_CREAT), takes the
 * creator's locks and only then empties a regular file.  Returns the
 * descriptor, or -errno with a message.  Release *LOCKP before closing it.
 */
int file_create_locked(const char *filename, struct file_lock **lockp);
/* Lets a format write past DEV's end (a file that grows, and any file
 * below a filter), as the format on top of it needs. */
void dev_set_growable(struct vdisk_dev *dev);
/*
 * The extent size hint that file_create_locked() gives the regular files it
 * creates on this thread (FS_XFLAG_EXTSIZE: XFS allocates in extents of
 * that many bytes; other file systems ignore it), as QEMU's file driver
 * does: 1 MiB unless create's extent_size_hint option says otherwise, 0 for
 * none.  GIVEN: the user asked for it, so a failure to set it is warned
 * about (else it is silent).  vdisk_create() sets it around a driver's
 * create.
 */
#define FILE_EXTENT_HINT_DEFAULT (1u << 20)
void file_create_hint(uint64_t bytes, bool given);
/* Writes the LEN bytes of BUF at byte OFF of FD, all of them (short writes
 * continued).  Returns 0, or -errno with a message naming FILENAME. */
int file_write_all(int fd, const void *buf, size_t len, uint64_t off, const char *filename);
/* Ends a creation: releases LOCK and closes FD.  Returns R, or when R is
 * 0 and the close fails, -errno with a message. */
int file_create_done(int fd, struct file_lock *lock, int r, const char *filename);

/* ---- Requests ------------------------------------------------------------- */

/* What vdisk_debug_* asks of a blkdebug device's breakpoints. */
enum debug_break_op { DEBUG_BREAK, DEBUG_REMOVE_BREAK, DEBUG_RESUME, DEBUG_IS_SUSPENDED };

enum vdisk_op {
    VDISK_OP_READ,
    VDISK_OP_WRITE,
    VDISK_OP_FLUSH,
    VDISK_OP_DISCARD,
    VDISK_OP_WRITE_ZEROES,
};

const char *op_name(enum vdisk_op op);

/* A request flag of the library's own: a read or write of the format's VM
 * state area (vdisk_vmstate_pread/pwrite; QEMU's savevm data in qcow2), at
 * the offset its driver's vmstate op gave, past the end of the disk.  Only
 * the library sets it (on a device's own synchronous queue: user queues
 * never pass it on), and the core refuses it on requests that are not
 * wholly past the device's end; a driver passes it on to its children on
 * the same device (copy on write) and reads zeroes, never the backing
 * file, where the area is unallocated. */
#define REQ_VMSTATE 0x20000u

#define REQ_INLINE_IOV 4
#define REQ_MAX_IOV 1024

/* The most per-request state a driver may declare (req_state_size). */
#define REQ_STATE_MAX 64

typedef void (*req_done_fn)(struct vdisk_req *req, int ret);

/* What a driver sees of a request. */
struct vdisk_req {
    struct vdisk_queue *q;     /* the queue it runs on (opaque) */
    struct vdisk_dev *dev;
    enum vdisk_op op;
    unsigned flags;            /* VDISK_REQ_* */
    uint64_t offset;
    uint64_t length;
    struct iovec *iov;
    int iovcnt;
    /* For an encrypting layer (formats/luks): the IV sector of the data at
     * OFFSET is OFFSET / 512 + IV_SHIFT.  0 (IVs by offset) unless the
     * parent says otherwise: qcow2's legacy AES encrypts by guest offset
     * what it stores at a host offset. */
    int64_t iv_shift;

    /* Who is told when the request is done: a child's DONE(req, ret) runs
     * on its parent's queue thread and must release it with req_free(). */
    req_done_fn done;
    void *done_arg;
    struct vdisk_req *parent;

    int result;
    char *errmsg;              /* set on failure, with context */

    /* Set by the driver: run instead of completing when the core hands the
     * request back (req_resume_later). */
    void (*resume)(struct vdisk_req *req);

    /* A list link the driver may use while the request waits on it (the
     * core uses it only before submit and after completion). */
    struct vdisk_req *next;

    struct req_core *core;     /* the core's state; not for drivers */

    /* The request's driver's own state (req_state()), zeroed when the
     * request is made. */
    _Alignas(16) unsigned char state[REQ_STATE_MAX];
};

/*
 * The per-request state of the driver of REQ's device: the type the driver
 * declares (sizeof <= REQ_STATE_MAX, given as req_state_size).  While a
 * request is handed over whole (req_forward), the area belongs to the
 * device it was handed to.
 */
static inline void *req_state(struct vdisk_req *req)
{
    return req->state;
}

/* Appends REQ to the list *HEAD .. *TAIL linked through req->next. */
static inline void req_list_append(struct vdisk_req **head, struct vdisk_req **tail,
                                   struct vdisk_req *req)
{
    req->next = NULL;
    if (*tail)
        (*tail)->next = req;
    else
        *head = req;
    *tail = req;
}

/*
 * A child request: an operation on DEV (usually the device below the
 * parent's) on behalf of PARENT.  DONE runs when it completes, from the
 * queue's reaping thread; it must release the child with req_free().
 * The iovec array is copied.  Returns NULL when out of memory.
 */
struct vdisk_req *req_new_child(struct vdisk_req *parent, struct vdisk_dev *dev,
                                enum vdisk_op op, uint64_t offset, uint64_t length,
                                const struct iovec *iov, int iovcnt, unsigned flags,
                                req_done_fn done, void *done_arg);
void req_free(struct vdisk_req *req);
/* Serves PARENT by one child request to DEV (OP at OFFSET, LENGTH bytes,
 * IOV, FLAGS) that finishes PARENT with its result, submitted; or fails
 * PARENT with -ENOMEM when no child can be made. */
void req_send_child(struct vdisk_req *parent, struct vdisk_dev *dev, enum vdisk_op op,
                    uint64_t offset, uint64_t length, const struct iovec *iov, int iovcnt,
                    unsigned flags);
/*
 * A child read on DEV at OFFSET into the N bytes at SKIP of PARENT's
 * buffer, whose completion releases PARENT (req_child_releases_parent):
 * PARENT is held once more and the child submitted.  Returns 0, or
 * -ENOMEM (nothing held or submitted).
 */
int req_read_slice(struct vdisk_req *parent, struct vdisk_dev *dev, uint64_t offset,
                   uint64_t skip, uint64_t n);
/* The same for a write of those bytes at OFFSET of DEV, with FLAGS (e.g.
 * VDISK_REQ_FUA). */
int req_write_slice(struct vdisk_req *parent, struct vdisk_dev *dev, uint64_t offset,
                    uint64_t skip, uint64_t n, unsigned flags);
/* The same for a write of N zeroes at OFFSET of DEV (no buffer). */
int req_write_zeroes_child(struct vdisk_req *parent, struct vdisk_dev *dev, uint64_t offset,
                           uint64_t n, unsigned flags);
/*
 * Synchronous twins, for drivers working on a worker thread: read into (or
 * write from) the N bytes at SKIP of REQ's buffer at OFFSET of DEV with
 * dev_preadv()/dev_pwritev(), on the caller's thread.  Nothing is held or
 * submitted; REQ is not completed.  Return 0 or -errno with the error set.
 */
int req_pread_slice(struct vdisk_req *req, struct vdisk_dev *dev, uint64_t offset,
                    uint64_t skip, uint64_t n);
int req_pwrite_slice(struct vdisk_req *req, struct vdisk_dev *dev, uint64_t offset,
                     uint64_t skip, uint64_t n, unsigned flags);

/*
 * Starts a request: checks it against its device (range, read-only,
 * alignment) and hands it to the device's driver.  A request the checks
 * refuse is not completed from inside the call: its req->done runs later,
 * from the reaping thread.  The driver may complete it at once (memory
 * does), so REQ must not be touched after the call.
 */
void req_submit(struct vdisk_req *req);

/*
 * Hands REQ over whole to DEV, as the operation on OFFSET with FLAGS, in
 * place of a child request; when DEV's driver completes it, its device,
 * offset, flags and done are put back and its done runs.  Allowed only when
 * req_may_forward(REQ): the driver holds the one count of req_hold() that it
 * took when it began, and nothing else happened to the request yet; that
 * count goes with it.  REQ must not be touched afterwards: it may be done.
 */
bool req_may_forward(const struct vdisk_req *req);
void req_forward(struct vdisk_req *req, struct vdisk_dev *dev, uint64_t offset,
                 unsigned flags);

/*
 * Completes a request with RET (0 or -errno), from the queue's thread
 * (the worker's results come back there through offload_req).
 */
void req_complete(struct vdisk_req *req, int ret);

/*
 * Completes with an error and a message in the context of the request's
 * device ("FILE: MESSAGE"); returns RET.
 */
int req_fail(struct vdisk_req *req, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the request's message as req_fail() does, without completing it;
 * returns RET. */
int req_errorf(struct vdisk_req *req, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hands a child's failure message to its parent (when the parent has none). */
void req_take_error(struct vdisk_req *parent, struct vdisk_req *child);

/*
 * Fan-out: a request waiting for several children (or steps).  req_hold()
 * counts one more; req_release() counts one done (recording the first
 * error) and completes the request when none is left.
 */
void req_hold(struct vdisk_req *req);
void req_release(struct vdisk_req *req, int ret);
/* A done function for children of a fan-out: takes the error, releases. */
void req_child_releases_parent(struct vdisk_req *child, int ret);
/* Records an error (first wins) without completing; returns RET. */
int req_set_error(struct vdisk_req *req, int ret, const char *msg);

/* A done function for children whose parent simply finishes with them. */
void req_child_finishes_parent(struct vdisk_req *child, int ret);

/* Runs FN(REQ) later on REQ's queue thread (CURRENT: the caller's queue). */
void req_resume_later(struct vdisk_req *req, void (*fn)(struct vdisk_req *),
                      struct vdisk_queue *current);

/* True when REQ runs on a device's own queue for the synchronous calls
 * (vdisk_pread ...; dev_pread ...), not on a user's queue. */
bool req_on_sync_queue(const struct vdisk_req *req);

/* ---- Protocol drivers: the I/O engine ------------------------------------- */

/* What a protocol driver asks the engine to do. */
enum eng_op {
    ENG_READ,      /* preadv at the request's offset */
    ENG_WRITE,     /* pwritev; VDISK_REQ_FUA makes it RWF_DSYNC */
    ENG_FSYNC,     /* mode ENG_FDATASYNC: fdatasync, else fsync */
    ENG_FALLOCATE, /* fallocate(mode, offset, length) */
    ENG_CALL,      /* call(req, fd), on a thread that may block */
};

/* ENG_FSYNC's mode for fdatasync. */
#define ENG_FDATASYNC 1

/* The open file a protocol driver's requests go to. */
struct eng_file {
    int fd;
    uint64_t id;               /* unique per open file (registered files) */
    bool direct;               /* O_DIRECT: a short read means end of file */
};

/*
 * Hands REQ to its queue's I/O engine as OP (MODE as above) on FILE; for
 * ENG_CALL, CALL(REQ, fd) runs the operation and returns bytes or -errno.
 * Short transfers are continued by the engine; the request completes when
 * all is done or on the first error.
 */
void req_start_file_io(struct vdisk_req *req, const struct eng_file *file, enum eng_op op,
                       int mode, long (*call)(struct vdisk_req *req, int fd));

/* ---- The worker thread (lib/offload.c) ------------------------------------ */

/*
 * A worker thread for the blocking part of requests.  offload_req() runs
 * WORK(REQ) on the worker, which must touch only state under the driver's
 * own locks (and do synchronous I/O on devices below), never the request's
 * children or holds; then, on REQ's queue thread, THEN(REQ) with WORK's
 * result in req->result, or (THEN NULL) the request completes with it.
 * Where no thread can be started WORK runs at once.  offload_free() runs
 * what is queued, then joins the thread.
 */
struct offload;
struct offload *offload_new(void);
void offload_req(struct offload *o, struct vdisk_req *req, int (*work)(struct vdisk_req *),
                 void (*then)(struct vdisk_req *));
void offload_free(struct offload *o);
/* The submit of a read-only format whose reads are synchronous: a read
 * runs READ on O's worker, a flush completes at once (nothing is
 * written), anything else fails with -EROFS ("FORMAT images are read-only
 * in vdisk"). */
void offload_read_only(struct offload *o, struct vdisk_req *req, int (*read)(struct vdisk_req *),
                       const char *format);

/* ---- Compressed blocks (lib/decompress.c) --------------------------------- */

/*
 * Decompresses the zlib stream IN (IN_LEN bytes) into OUT, which the block
 * fills exactly (OUT_LEN bytes, both at most UINT_MAX).  Returns 0 when the
 * stream ends there; -EIO when it is damaged, ends short or runs past OUT
 * (*CODE is zlib's last return, *GOT the bytes made, for the caller's
 * message); -ENOMEM when zlib cannot start; -EINVAL for lengths over
 * UINT_MAX.  No message is set.  Thread-safe; no state is kept.
 */
int inflate_exact(const void *in, size_t in_len, void *out, size_t out_len, int *code,
                  uint64_t *got);
/* The same for a bzip2 stream (*CODE: libbz2's BZ_* return); -ENOTSUP when
 * vdisk was built without libbz2 (bunzip2_available() false). */
int bunzip2_exact(const void *in, size_t in_len, void *out, size_t out_len, int *code,
                  uint64_t *got);
bool bunzip2_available(void);

/*
 * Deflates the IN_LEN bytes of IN into one zlib stream (RFC 1950) at OUT,
 * OUT_SIZE bytes at most, at zlib's default level: *OUT_LEN its length, 0
 * when it does not fit.  Returns 0, -ENOMEM, or -EINVAL / -EIO from zlib
 * (no message set).  Thread-safe; with libdeflate each calling thread keeps
 * a compressor until it ends (lib/compress.c).  zlib_bound(): the bytes
 * OUT needs at most for IN_LEN bytes.
 */
int zlib_deflate(const void *in, size_t in_len, void *out, size_t out_size, size_t *out_len);
size_t zlib_bound(size_t in_len);

/* ---- Buffers -------------------------------------------------------------- */

/* Copies LEN bytes of the request's iovec at byte POS to/from BUF. */
void iov_to_buf(const struct iovec *iov, int iovcnt, size_t pos, void *buf, size_t len);
void iov_from_buf(const struct iovec *iov, int iovcnt, size_t pos, const void *buf,
                  size_t len);
void iov_memset(const struct iovec *iov, int iovcnt, size_t pos, int c, size_t len);
size_t iov_length(const struct iovec *iov, int iovcnt);
/* The LEN bytes at SKIP of SRC as an iovec in DST (room for CNT entries);
 * returns the number of entries. */
int iov_slice(const struct iovec *src, int cnt, size_t skip, size_t len, struct iovec *dst);

/* Overflow-safe helpers. */
static inline bool add_overflows_u64(uint64_t a, uint64_t b, uint64_t *sum)
{
    return __builtin_add_overflow(a, b, sum);
}

static inline bool range_inside(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
    return v - v % a;
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
    return align_down(v + a - 1, a);
}

void *aligned_alloc_or_null(size_t align, size_t size);

/* The value (0 to 63) of base64 character C (RFC 4648's alphabet), or -1
 * for any other byte, '=' included. */
static inline int base64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* ---- Drivers -------------------------------------------------------------- */

/* Whole-image snapshot operations (vdisk/snapshot.h). */
enum snapshot_op {
    SNAPSHOT_CREATE,
    SNAPSHOT_APPLY,
    SNAPSHOT_DELETE,
};

/* Persistent dirty bitmaps (vdisk/bitmap.h): what the driver's bitmap op
 * is asked to do. */
enum bitmap_op {
    BITMAP_ADD,        /* NAME, granularity (0: default), flags; OTHER: a
                          bitmap disabled at the same point (may be NULL) */
    BITMAP_REMOVE,
    BITMAP_CLEAR,
    BITMAP_ENABLE,
    BITMAP_DISABLE,
    BITMAP_MERGE,      /* OTHER on SRC (a device, maybe this one) into NAME */
    BITMAP_STATUS,     /* NAME from offset, up to length: out_len, out_dirty */
};

struct bitmap_args {
    enum bitmap_op op;
    const char *name;
    const char *other;
    struct vdisk_dev *src;
    uint64_t granularity;
    unsigned flags;
    uint64_t offset, length;
    uint64_t out_len;
    bool out_dirty;
};

/* One option a driver's create takes: NAME=<TYPE>, and a line of help. */
struct create_opt {
    const char *name, *type, *help;
};

struct vdisk_driver {
    const char *name;

    /* Bytes of per-request state the driver keeps in req->state (at most
     * REQ_STATE_MAX; see req_state()).  0: none. */
    size_t req_state_size;

    /* True for drivers that own storage (files, memory): their failed
     * flushes are remembered (the fsync-gate rule). */
    bool protocol;

    /*
     * How sure the driver is that the first LEN bytes of a file (BUF) are
     * its format, 0 (not mine) to 100.  NULL for drivers never probed.
     */
    int (*probe)(const uint8_t *buf, size_t len);

    /*
     * Opens DEV.  For a protocol driver FILE is NULL and dev->filename names
     * the file.  For a format driver FILE is the protocol device below,
     * whose reference passes to the driver on success.  The driver fills in
     * dev->size, block_size, align, caps and priv, and takes the options it
     * understands from OPTS with opt_take().  Returns 0 or -errno (with a
     * message set).
     */
    int (*open)(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *opts);

    /*
     * Protocol drivers: takes the image locks for the permission bits PERM
     * and SHARED (PERM_* below) in place of those held so far, or
     * fails with -EAGAIN and a message when another process conflicts.
     * NULL: the protocol has nothing to lock.
     */
    int (*take_perms)(struct vdisk_dev *dev, unsigned perm, unsigned shared);

    /* Releases the driver's state (after the core flushed the device). */
    void (*close)(struct vdisk_dev *dev);

    /* Filters (blkdebug): the format above says that the named point
     * EVENT of its work happens next (QEMU's BLKDBG_EVENT names:
     * "l2_load", "write_aio", ...).  NULL: ignored. */
    void (*debug_event)(struct vdisk_dev *dev, const char *event);
    /* Breakpoints of a blkdebug device (formats pass them to their file):
     * OP on the breakpoint TAG (EVENT for DEBUG_BREAK).  0, 1/0 for
     * DEBUG_IS_SUSPENDED, or -errno with the error set.  NULL: -ENOTSUP. */
    int (*debug_break)(struct vdisk_dev *dev, enum debug_break_op op, const char *event,
                       const char *tag);

    /* Filters over a file (blkdebug): the format above grows this device
     * (dev_set_growable()), so the file below must grow too.  NULL: a
     * protocol's own storage, nothing below. */
    void (*set_growable)(struct vdisk_dev *dev);

    /*
     * Starts REQ (already checked by the core).  The driver completes it,
     * now or later, with req_complete() or req_fail() from the queue's
     * thread; work done on another thread comes back to that thread
     * through offload_req() or req_resume_later().
     */
    void (*submit)(struct vdisk_req *req);

    /* Compresses one whole cluster (*OUT_LEN 0: it does not shrink), and
     * stores N compressed clusters (the clusters at OFF, OFF + cluster
     * size, ...; PIECES[i] the i-th one's bytes); NULL: no compression. */
    int (*compress)(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off,
                    void *out, size_t out_size, size_t *out_len);
    int (*write_compressed)(struct vdisk_dev *dev, const struct iovec *pieces, size_t n,
                            uint64_t off);

    /* Describes the extent at OFF (see vdisk_block_status). */
    int (*block_status)(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                        struct vdisk_extent *ext);

    /* Where the bytes at OFF lie in a host file (see dev_map_file, which
     * has checked and clipped the range); NULL: -ENOTSUP. */
    int (*map_file)(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                    struct dev_file_run *run);

    /* Sets the size of a file (raw only); NULL: not supported. */
    int (*truncate)(struct vdisk_dev *dev, uint64_t size);

    /* Makes the file at least SIZE bytes long with the new part allocated
     * (and reading as zeroes) without writing it, as fallocate does; never
     * by writing zeroes.  -ENOTSUP when the file system cannot, or NULL. */
    int (*preallocate)(struct vdisk_dev *dev, uint64_t size);

    /* Host bytes used, or -errno; a format or filter asks the device below
     * (dev_allocated_size).  NULL: unknown, -ENOTSUP. */
    int64_t (*allocated_size)(struct vdisk_dev *dev);

    /* Protocol drivers: the name qemu-img shows for an image of FORMAT on
     * DEV (an RBD image's json:{"driver": FORMAT, "file": {...}}), as a
     * string the caller frees; NULL: DEV's file name. */
    char *(*shown_name)(struct vdisk_dev *dev, const char *format);

    /* Fills the format's fields of *INFO (the core has set the common ones). */
    void (*get_info)(struct vdisk_dev *dev, struct vdisk_info *info);

    /* The backing device, or NULL. */
    struct vdisk_dev *(*backing)(struct vdisk_dev *dev);

    /* Checks (and repairs) the image's metadata; NULL: nothing to check. */
    int (*check)(struct vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                 vdisk_check_report_fn report, void *opaque);

    /* Internal snapshots; NULL: the format has none. */
    int (*snapshot_count)(struct vdisk_dev *dev);
    int (*snapshot_get)(struct vdisk_dev *dev, unsigned index, struct vdisk_snapshot *sn);
    int (*snapshot_op)(struct vdisk_dev *dev, enum snapshot_op op, const char *name);

    /* Whole-image operations (vdisk/image.h); NULL: not supported. */
    int (*resize)(struct vdisk_dev *dev, uint64_t size, unsigned flags);
    int (*make_empty)(struct vdisk_dev *dev);
    int (*set_backing)(struct vdisk_dev *dev, const char *name, const char *format);
    int (*amend)(struct vdisk_dev *dev, struct opt_set *opts);

    /* Creates an image; takes its options from OPTS with opt_take(). */
    int (*create)(const char *filename, uint64_t size, struct opt_set *opts);
    /* The options create takes, in name order, ended by a NULL name
     * (vdisk_create_option(), `vdisk create -o help`). */
    const struct create_opt *create_opts;

    /*
     * Sizes an image that create would make (vdisk_measure): fills *RES
     * (the library's full structure, zeroed) for SIZE bytes (a multiple of
     * 512, at most INT64_MAX), an empty disk when SRC is NULL, else the
     * size of SRC (rounded up to 512) whose data measure_data() finds.
     * Takes its options from OPTS with opt_take() and checks them as
     * create does, before any I/O.  NULL: the format cannot be measured.
     */
    int (*measure)(uint64_t size, struct vdisk_dev *src, struct opt_set *opts,
                   struct vdisk_measure_result *res);

    /*
     * The VM state area (vdisk_vmstate_pread/pwrite), run in a quiesce
     * section before the I/O: checks the LEN bytes at POS of the area
     * (and for a WRITE makes room for them: qcow2 grows its L1 table), and
     * gives in *OFF where the core then reads or writes them on this device
     * as a REQ_VMSTATE request (past the disk's end).  NULL: no VM state.
     */
    int (*vmstate)(struct vdisk_dev *dev, bool write, uint64_t pos, uint64_t len, uint64_t *off);

    /* Persistent dirty bitmaps (vdisk/bitmap.h); NULL: the format has none.
     * The core holds a quiesce section around all but BITMAP_STATUS. */
    int (*bitmap)(struct vdisk_dev *dev, struct bitmap_args *a);
};

/* Another device's bitmaps (a merge from another image, lib/bitmap.c):
 * whether its format keeps any, and its bitmap op (-ENOTSUP, with a
 * message naming it, when it keeps none). */
bool dev_has_bitmaps(const struct vdisk_dev *dev);
int dev_bitmap(struct vdisk_dev *dev, struct bitmap_args *a);

extern const struct vdisk_driver vdisk_driver_raw;
extern const struct vdisk_driver vdisk_driver_offset;
extern const struct vdisk_driver vdisk_driver_qcow2;
extern const struct vdisk_driver vdisk_driver_vdi;
/* QED images (formats/qed), read only. */
extern const struct vdisk_driver vdisk_driver_qed;
extern const struct vdisk_driver vdisk_driver_bochs;
extern const struct vdisk_driver vdisk_driver_compress;
extern const struct vdisk_driver vdisk_driver_cloop;
/* DMG (UDIF) images (formats/dmg), read only. */
extern const struct vdisk_driver vdisk_driver_dmg;
extern const struct vdisk_driver vdisk_driver_parallels;
/* VMDK images (formats/vmdk), read only for now. */
extern const struct vdisk_driver vdisk_driver_vmdk;
/* VHD images (formats/vpc), "vpc" as QEMU names the format. */
extern const struct vdisk_driver vdisk_driver_vpc;
/* VHDX images (formats/vhdx), read and written. */
extern const struct vdisk_driver vdisk_driver_vhdx;
/* Raw LUKS images (formats/luks), QEMU's "luks" format. */
extern const struct vdisk_driver vdisk_driver_luks;
/* NBD exports (formats/nbd/nbd.c): the protocol of names that
 * dev_is_nbd_name() accepts. */
extern const struct vdisk_driver vdisk_driver_nbd;

/* Images in a Ceph cluster (formats/rbd/rbd.c), for names "rbd:..."; only
 * in builds with librbd (VDISK_HAVE_RBD). */
extern const struct vdisk_driver vdisk_driver_rbd;

/* QEMU's null block driver (formats/null), for names "null-co://" and
 * "null-aio://" (null_is_name) that the caller of vdisk_open() gives (never
 * names in images: protocol_for_name() does not return it). */
extern const struct vdisk_driver vdisk_driver_null;
bool null_is_name(const char *filename);
/* QEMU's error-injecting filter (formats/blkdebug), for names
 * "blkdebug:CONFIG:IMAGE" (blkdebug_is_name) that the caller of
 * vdisk_open() gives (never names in images, as null's). */
extern const struct vdisk_driver vdisk_driver_blkdebug;
bool blkdebug_is_name(const char *filename);
/* blkdebug's request limits over a format (formats/blkdebug/limits.c):
 * when OS holds any of the open options limits.align, limits.max-transfer,
 * limits.opt-write-zero, limits.max-write-zero, limits.opt-discard and
 * limits.max-discard (a json: name's, lib/json_name.c), takes them and
 * puts over *DEVP a device that cuts its requests as QEMU's block layer
 * cuts them for blkdebug; *DEVP becomes that device (holding the one it
 * was).  0 (also when there are none) or -errno (a bad limit; *DEVP
 * unchanged). */
int limits_wrap(struct vdisk_dev **devp, struct opt_set *os);
/* Reads LEN bytes of blkdebug rules in its config file's syntax (for
 * fuzzing): 0, or -EINVAL with a message. */
int blkdebug_parse_rules(const char *text, size_t len);

/* Tells the device below a format (FILE) that the point EVENT of the
 * format's work happens next (its driver's debug_event; nothing for most). */
void dev_debug_event(struct vdisk_dev *file, const char *event);
/* A check's report line: FMT's text to REPORT(OPAQUE, LINE) (nothing when
 * REPORT is NULL); lines are cut at 511 bytes. */
void check_reportf(vdisk_check_report_fn report, void *opaque, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Filters whose state (dev->priv) begins with the device below them
 * (struct { struct vdisk_dev *child; ... }): driver ops that pass straight
 * through to it (truncate also takes the child's new size). */
int filter_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                        struct vdisk_extent *ext);
int64_t filter_allocated_size(struct vdisk_dev *dev);
int filter_truncate(struct vdisk_dev *dev, uint64_t size);
int filter_take_perms(struct vdisk_dev *dev, unsigned perm, unsigned shared);

/* DEV's driver's debug_break (-ENOTSUP without one: no blkdebug below). */
int dev_debug_break(struct vdisk_dev *dev, enum debug_break_op op, const char *event,
                    const char *tag);
/* A filter's take_perms: hands the permission bits on to DEV, the device
 * below it (its driver's take_perms; 0 when it has none). */
int dev_pass_perms(struct vdisk_dev *dev, unsigned perm, unsigned shared);

/* The protocol driver that opens FILENAME: nbd for NBD URIs, rbd for
 * "rbd:" names (or NULL with a message in builds without librbd), else
 * raw. */
const struct vdisk_driver *protocol_for_name(const char *filename);

/* True when FILENAME names an NBD export (nbd://, nbd+unix://, nbds://,
 * nbds+unix://, nbd+vsock://, nbds+vsock://): dev_open_file opens it with
 * the nbd driver in place of raw. */
bool dev_is_nbd_name(const char *filename);
/* True when FILENAME names storage on the network: an NBD export or an RBD
 * image ("rbd:"), whether or not this build can open it. */
bool dev_is_network_name(const char *filename);

/* lib/backing_name.c.  UTF-16 (big-endian when BE, else little-endian;
 * BYTES bytes) to UTF-8, up to the first NUL, in a new string; NULL when
 * invalid (a lone surrogate) or out of memory.  For parent locators (vpc,
 * vhdx). */
char *utf16_to_utf8(const uint8_t *p, size_t bytes, bool be);
/* lib/backing_name.c.  The file a backing name NAME in the header of IMAGE
 * stands for, resolved against IMAGE's folder as QEMU does (an absolute
 * name, a URI or an rbd: name stands alone); malloc'd, or NULL when out of
 * memory. */
char *backing_resolve(const char *image, const char *name);
/* backing-confine=on: true when NAME, resolved as FULL, leaves IMAGE's
 * folder: an absolute name, a protocol's ("x://", "rbd:"), a ".." that
 * climbs above the folder or, through symbolic links, a file whose real
 * path is outside the folder's real path. */
bool backing_escapes(const char *image, const char *name, const char *full);

/* The backing file an image's header names, and how to open it. */
struct backing_spec {
    const char *name;          /* as in the header */
    const char *format;        /* the backing file's format; NULL: probed */
    bool confine;              /* backing-confine=on (passed down the chain) */
    bool allow_network;        /* backing-allow-network=on (passed down the chain) */
    unsigned max_depth;        /* images in a chain, at most */
    /* The overlay's open options (may be NULL): the backing file's key
     * ("backing.encrypt.key-secret", "backing.key-secret", and deeper
     * "backing.backing...." ones one level down) and the secrets
     * ("secret.ID") go to the backing file's open. */
    struct opt_set *os;
};
/*
 * Opens the backing file of OVERLAY that B names, read-only, under the
 * open parameters' rules: refused with no_backing, through the params'
 * open_backing hook when set (fuzzing), else resolved against OVERLAY's
 * folder, confined, refused for a network name without allow_network, and
 * for a chain that loops or is deeper than max_depth.  *FULL gets the
 * resolved name (malloc'd; may be set on failure too, the caller frees
 * it).  Returns 0 or -errno with QEMU's "Could not open backing file:
 * REASON" (a loop: "Backing file 'X' creates an infinite loop.").
 */
int backing_open(struct vdisk_dev *overlay, const struct backing_spec *b, struct vdisk_dev **out,
                 char **full);
/* The open options of the backing-file rules, taken from OS (may be NULL):
 * backing-confine, and backing-allow-network (or VDISK_BACKING_ALLOW_NETWORK
 * in the environment).  Returns 0 or -EINVAL for a bad value. */
int backing_take_options(struct opt_set *os, bool *confine, bool *allow_network);

/* The format drivers, in probing order; NULL-terminated. */
extern const struct vdisk_driver *const vdisk_format_drivers[];

const struct vdisk_driver *driver_by_name(const char *name);

/*
 * For measure: the bytes of SRC that hold data, as qemu-img measure counts
 * them: each extent that reads stored data (not zeroes) through SRC's
 * backing chain, widened to whole blocks of UNIT bytes (the new image's
 * clusters), counted once, into *BYTES.  Returns 0 or -errno (a block
 * status error, with its message).  lib/measure.c.
 */
int measure_data(struct vdisk_dev *src, uint64_t unit, uint64_t *bytes);

#endif /* VDISK_DRIVER_H */
