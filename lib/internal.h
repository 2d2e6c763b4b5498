/* SPDX-License-Identifier: MIT */
/*
 * lib/internal.h: the device object, requests and queues shared by the core,
 * the engines and the drivers.  Nothing here is public.
 */
#ifndef VDISK_INTERNAL_H
#define VDISK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vdisk/vdisk.h>

#include "driver.h"
#include "error_internal.h"

#define VDISK_EXPORT __attribute__((visibility("default")))

/* ---- Devices -------------------------------------------------------------- */

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

/* Settings that a stack of devices shares: the top device's open options. */
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

struct write_track; /* lib/device.c: overlapping read-modify-write */

/*
 * The quiesce section of a device (lib/quiesce.c).  ACTIVE counts the
 * top-level requests that the device's queues have handed to the driver and
 * that the driver has not finished; DEPTH is non-zero while a thread holds
 * the section.  A queue that starts a request increments ACTIVE and then
 * reads DEPTH; the quiescing thread sets DEPTH and then reads ACTIVE (both
 * sequentially consistent), so that either the request waits on its queue
 * or the quiescing thread waits for it.
 */
struct quiesce_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_uint depth;
    atomic_uintptr_t owner;      /* the holding thread's token, or 0 */
    atomic_long active;
    struct vdisk_queue *queues;  /* every queue on the device (under LOCK) */
    struct vdisk_dev *uppers;    /* ranges opened over the device (under LOCK),
                                    linked through their upper_next */
};

void quiesce_init(struct quiesce_state *qs);
void quiesce_fini(struct quiesce_state *qs);
/* True when requests on DEV must wait: a section is held by another thread,
 * on DEV or on a device DEV is a range of. */
bool quiesce_blocks(struct vdisk_dev *dev);
/* Accounting of top-level requests: quiesce_enter() returns false (and counts
 * nothing) when the request must wait; quiesce_leave() ends one. */
bool quiesce_enter(struct vdisk_queue *q);
void quiesce_leave(struct vdisk_queue *q);
/* Queues register so that a resume can wake those with waiting requests. */
void quiesce_add_queue(struct vdisk_dev *dev, struct vdisk_queue *q);
void quiesce_remove_queue(struct vdisk_dev *dev, struct vdisk_queue *q);
/* A range UPPER over DEV: DEV's sections hold UPPER's requests back (and
 * wait for those in flight); removed before UPPER goes. */
void quiesce_add_upper(struct vdisk_dev *dev, struct vdisk_dev *upper);
void quiesce_remove_upper(struct vdisk_dev *dev, struct vdisk_dev *upper);
/* Synchronous callers (vdisk_pread ...) wait here while another thread
 * holds the section. */
void quiesce_wait_sync(struct vdisk_dev *dev);
/* Driver calls made outside any queue (compressed writes) count as requests
 * in flight between these two, after waiting for a section to end. */
void quiesce_sync_begin(struct vdisk_dev *dev);
void quiesce_sync_end(struct vdisk_dev *dev);
/* Whole-image operations run inside a section of their own. */
int quiesce_begin_op(struct vdisk_dev *dev);
void quiesce_end_op(struct vdisk_dev *dev);

struct vdisk_dev {
    atomic_int refs;
    const struct vdisk_driver *drv;
    void *priv;                /* the driver's state */
    char *filename;
    uint64_t size;             /* bytes; use dev_size() where it may grow */
    bool growable;             /* a format's file: writes past the end extend it */
    uint64_t file_length;      /* raw files: the exact length at open (size is
                                  rounded up to 512), else 0 */
    uint32_t block_size;       /* logical block size reported to users */
    uint32_t align;            /* request alignment the driver needs (>= 1) */
    unsigned caps;             /* VDISK_CAN_* */
    struct vdisk_open_params params;
    enum vdisk_engine_kind engine; /* resolved: URING or THREADS */
    bool probed_raw;           /* raw by probing, not by the caller's word:
                                  writes that would put a format signature
                                  into block 0 are refused (as QEMU does) */

    /* The queue that the synchronous calls use, created on first use. */
    pthread_mutex_t sync_lock;
    struct vdisk_queue *sync_q;

    /* The first flush failure: later flushes fail too, since what the
     * failed one covered may be lost (the fsync-gate rule). */
    atomic_int flush_error;

    /* In-flight writes, kept only when align > 1 (read-modify-write). */
    pthread_mutex_t track_lock;
    struct write_track *tracks;

    /* The quiesce section (vdisk_dev_quiesce, lib/quiesce.c). */
    struct quiesce_state quiesce;
    /* A range over another device: that device's section holds this one's
     * requests back too (its requests reach the other only as children). */
    struct vdisk_dev *quiesce_under;
    struct vdisk_dev *upper_next;
};

/* Allocates a device with one reference; the driver fills in the rest. */
struct vdisk_dev *dev_alloc(const struct vdisk_driver *drv, const char *filename,
                            const struct vdisk_open_params *params);
/* Frees a device that never became visible (open failed). */
void dev_free(struct vdisk_dev *dev);
void dev_ref(struct vdisk_dev *dev);
/* Drops a reference; the last one flushes, closes and frees the device. */
void dev_unref(struct vdisk_dev *dev);
/* Opens FILENAME with the protocol driver (raw), for formats' backing files. */
int dev_open_file(struct vdisk_dev **devp, const char *filename, struct opt_set *os,
                  const struct vdisk_open_params *params);

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
/* What an open with P takes and shares (RAW_FORMAT: no format on top). */
void lock_perms_for_open(const struct vdisk_open_params *p, bool raw_format, unsigned *perm,
                         unsigned *shared);
/* Takes the locks for opening FMT over the protocol device FILE (no-op for
 * protocols without locks). */
int dev_take_perms(struct vdisk_dev *file, const struct vdisk_driver *fmt,
                   const struct vdisk_open_params *p);

/* The size of a device that may be growing under another thread. */
static inline uint64_t dev_size(const struct vdisk_dev *dev)
{
    return __atomic_load_n(&dev->size, __ATOMIC_ACQUIRE);
}

/* Raises a growable device's size to at least END. */
void dev_size_grow(struct vdisk_dev *dev, uint64_t end);

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

/* ---- Probing (lib/probe.c) ------------------------------------------------ */

/* Probes look at the first PROBE_SIZE bytes of a file, zero-padded. */
#define PROBE_SIZE 512

/* A format that QEMU reads and vdisk does not: refused, never read as raw. */
struct foreign_format {
    const char *human;  /* "VHD" */
    const char *name;   /* QEMU's driver name: "vpc" */
    int (*probe)(const uint8_t *buf, const char *filename);
};

struct probe_result {
    const struct vdisk_driver *drv;          /* a format vdisk reads, or NULL */
    const struct foreign_format *foreign;    /* else one it refuses, or NULL */
};

/*
 * Which format BUF (PROBE_SIZE bytes) is the start of; FILENAME (may be
 * NULL) for the formats QEMU knows by name.  Both results NULL: raw.
 */
void probe_block(const uint8_t *buf, const char *filename, struct probe_result *res);

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

/* ---- Requests ------------------------------------------------------------- */

enum vdisk_op {
    VDISK_OP_READ,
    VDISK_OP_WRITE,
    VDISK_OP_FLUSH,
    VDISK_OP_DISCARD,
    VDISK_OP_WRITE_ZEROES,
};

const char *op_name(enum vdisk_op op);

#define REQ_INLINE_IOV 4
#define REQ_MAX_IOV 1024

/* What a protocol driver asks the engine to do. */
enum eng_op {
    ENG_READ,      /* preadv at offset + done_bytes */
    ENG_WRITE,     /* pwritev; VDISK_REQ_FUA makes it RWF_DSYNC */
    ENG_FSYNC,     /* eng_mode 1: fdatasync, else fsync */
    ENG_FALLOCATE, /* fallocate(eng_mode, offset, length) */
    ENG_CALL,      /* eng_fn(req), on a thread that may block */
};

struct vdisk_req;
typedef void (*req_done_fn)(struct vdisk_req *req, int ret);

struct vdisk_req {
    struct vdisk_queue *q;
    struct vdisk_dev *dev;
    enum vdisk_op op;
    unsigned flags;            /* VDISK_REQ_* */
    uint64_t offset;
    uint64_t length;
    struct iovec *iov;         /* iov_inline, iov_alloc, or into them after a
                                  short transfer consumed the first bytes */
    struct iovec *iov_alloc;   /* a malloc'd array, or NULL */
    int iovcnt;
    struct iovec iov_inline[REQ_INLINE_IOV];

    /* Who is told when the request is done. */
    req_done_fn done;
    void *done_arg;
    struct vdisk_req *parent;
    vdisk_completion_fn user_cb;  /* top-level requests */
    void *user_data;

    int result;
    char *errmsg;              /* set on failure, with context */

    /* Engine state, set by the protocol driver that hands the request to
     * the engine: the operation, the file, progress of a short transfer. */
    enum eng_op eng_op;
    int eng_mode;              /* fallocate mode; fsync: 1 = fdatasync */
    long (*eng_fn)(struct vdisk_req *req); /* ENG_CALL: runs the operation */
    int fd;
    uint64_t file_id;          /* unique per open file (registered files) */
    bool eng_direct;           /* O_DIRECT: a short read means end of file */
    uint64_t done_bytes;
    long eng_res;              /* a result waiting to be processed */

    /* Core state: write serialisation, resumption, read-modify-write and
     * fan-out to several children. */
    struct write_track *track;
    void (*resume)(struct vdisk_req *req); /* run instead of completing */
    void *rmw_buf;
    uint64_t rmw_start, rmw_len;
    void *guard_buf;           /* block 0 of a probed raw image, as checked */
    void *owned_buf;           /* the data of a write-zeroes part; both are
                                  freed when the request completes */
    unsigned pending;          /* children still in flight */
    int first_err;             /* first child error (negative), or 0 */

    /* Work handed to a worker thread (lib/offload.c). */
    int (*offload_work)(struct vdisk_req *req);
    void (*offload_then)(struct vdisk_req *req);

    /* Scratch space for the driver that owns the request. */
    uint64_t u[4];
    void *p[4];

    struct vdisk_req *next;    /* list link (pending, ready, free, waiters) */
};

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

/*
 * Starts a request: checks it against its device (range, read-only,
 * alignment) and hands it to the device's driver.  It never completes the
 * request from inside the call: failures are reported through req->done
 * later, from the reaping thread.
 */
void req_submit(struct vdisk_req *req);

/*
 * The checks of the layer boundary: the range lies inside the device (else
 * -EIO) and writes go to a writable device (else -EROFS).  On failure *MSG
 * is a new message "FILE: what was asked and why it was refused".
 */
int dev_check_request(struct vdisk_dev *dev, enum vdisk_op op, uint64_t off, uint64_t len,
                      char **msg);

/*
 * Completes a request with RET (0 or -errno).  May be called from the
 * queue's thread only; other threads use queue_post().
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

/*
 * A worker thread for the blocking part of requests (lib/offload.c).
 * offload_req() runs WORK(REQ) on the worker, which must touch only state
 * under the driver's own locks (and do synchronous I/O on devices below),
 * never the request's children or holds; then, on REQ's queue thread,
 * THEN(REQ) with WORK's result in req->result, or (THEN NULL) the request
 * completes with it.  Where no thread can be started WORK runs at once.
 * offload_free() runs what is queued, then joins the thread.
 */
struct offload;
struct offload *offload_new(void);

/*
 * Start a thread of the library's own (engine workers, the offload worker)
 * with a 1 MiB stack: their frames are small, and a process embedding
 * libvdisk should not pay glibc's default 8 MiB of address space per thread.
 * Returns pthread_create's result.
 */
int lib_thread_start(pthread_t *tid, void *(*fn)(void *), void *arg);
void offload_req(struct offload *o, struct vdisk_req *req, int (*work)(struct vdisk_req *),
                 void (*then)(struct vdisk_req *));
void offload_free(struct offload *o);

/* Runs FN(REQ) later on REQ's queue thread (CURRENT: the caller's queue). */
void req_resume_later(struct vdisk_req *req, void (*fn)(struct vdisk_req *),
                      struct vdisk_queue *current);

/* A done function for children whose parent simply finishes with them. */
void req_child_finishes_parent(struct vdisk_req *child, int ret);

/* Copies LEN bytes of the request's iovec at byte POS to/from BUF. */
void iov_to_buf(const struct iovec *iov, int iovcnt, size_t pos, void *buf, size_t len);
void iov_from_buf(const struct iovec *iov, int iovcnt, size_t pos, const void *buf,
                  size_t len);
void iov_memset(const struct iovec *iov, int iovcnt, size_t pos, int c, size_t len);
size_t iov_length(const struct iovec *iov, int iovcnt);
/* The LEN bytes at SKIP of SRC as an iovec in DST (room for CNT entries);
 * returns the number of entries. */
int iov_slice(const struct iovec *src, int cnt, size_t skip, size_t len, struct iovec *dst);

/* ---- Queues and engines --------------------------------------------------- */

struct engine_ops {
    const char *name;
    int (*init)(struct vdisk_queue *q);
    void (*fini)(struct vdisk_queue *q);
    /* Queue one request of a protocol driver for the kernel.  May complete it
     * (through queue_defer) when the engine cannot do the operation itself. */
    void (*start)(struct vdisk_queue *q, struct vdisk_req *req);
    /* Pass queued requests to the kernel; returns how many, or -errno. */
    int (*submit)(struct vdisk_queue *q);
    /* Complete what the kernel has finished, waiting up to TIMEOUT_MS
     * (-1 forever) when nothing has.  Returns the number of engine
     * completions processed, or -errno. */
    int (*poll)(struct vdisk_queue *q, int timeout_ms);
    /* Make the user-visible fd readable on completions; returns the fd. */
    int (*get_fd)(struct vdisk_queue *q);
    /* Register buffers (NULL: not supported, a no-op). */
    int (*register_buffers)(struct vdisk_queue *q, const struct iovec *iov, unsigned n);
};

extern const struct engine_ops engine_uring_ops;
extern const struct engine_ops engine_threads_ops;

/* True when io_uring can be set up in this process (probed once). */
bool engine_uring_available(void);
/* Tests: how many times the io_uring engine of Q has entered the kernel to
 * hand it SQEs (0 on the threads engine). */
unsigned long engine_uring_submit_calls(const struct vdisk_queue *q);

struct vdisk_queue {
    struct vdisk_dev *dev;
    const struct engine_ops *eng;
    void *eng_priv;
    unsigned depth;
    unsigned threads;            /* worker threads for the threads engine */

    unsigned in_flight;          /* top-level requests not yet completed */
    unsigned completed;          /* top-level completions since reap started */

    /* Requests completed on this thread, waiting for reap to run them. */
    struct vdisk_req *local_head, *local_tail;

    /* Requests completed on other threads (worker threads, other queues). */
    pthread_mutex_t post_lock;
    struct vdisk_req *post_head, *post_tail;
    int wake_fd;                 /* eventfd written after a post */
    int user_fd;                 /* the fd for vdisk_queue_get_fd, or -1 */

    struct vdisk_req *free_list;
    unsigned free_count;
    bool holds_ref;              /* false for a device's own sync queue */

    /* Top-level requests the driver has finished, waiting for reap to run
     * their callbacks (never from inside a vdisk_aio_*() call). */
    struct vdisk_req *done_head, *done_tail;
    /* Requests started while the device is quiesced: started on resume. */
    struct vdisk_req *parked_head, *parked_tail;
    struct vdisk_queue *dev_next;  /* the device's list of queues */
    atomic_long active;            /* its requests in the driver */
    atomic_uintptr_t user;         /* the thread that last started one */
    bool reaping;                  /* inside vdisk_queue_reap() */
    bool delivering;               /* running its callbacks (deliver()) */
};

/* Queue life: REF says whether the queue holds a reference to DEV. */
int queue_create(struct vdisk_queue **qp, struct vdisk_dev *dev, unsigned depth, bool ref);
void queue_destroy(struct vdisk_queue *q);
/* Starts a top-level request (checks as vdisk_aio_*; message on failure). */
int queue_start(struct vdisk_queue *q, enum vdisk_op op, const struct iovec *iov, int iovcnt,
                uint64_t offset, uint64_t length, unsigned flags, vdisk_completion_fn cb,
                void *user);
/* Waits for at least MIN_COMPLETE completions (or none left in flight). */
int queue_reap_internal(struct vdisk_queue *q, unsigned min_complete);
/*
 * Blocking audit: dev_sync_io() calls queue_note_sync_wait(), which counts
 * the synchronous waits made inside a vdisk_aio_*() call (a driver that
 * blocks its caller), and those made inside a reap of a public queue
 * outside the user's callbacks (a driver that blocks the reaper); tests
 * read the counts.
 */
void queue_note_sync_wait(void);
unsigned long queue_sync_waits_in_submit(void);
unsigned long queue_sync_waits_in_reap(void);

/* Wakes the queue's thread from another thread (its poll returns). */
void queue_wake(struct vdisk_queue *q);
/* Moves the queue's requests on, waiting up to TIMEOUT_MS for the engine,
 * without running any callback (they wait for the next reap). */
void queue_progress(struct vdisk_queue *q, int timeout_ms);
struct vdisk_req *req_new(struct vdisk_queue *q, struct vdisk_dev *dev, enum vdisk_op op,
                          uint64_t offset, uint64_t length, const struct iovec *iov,
                          int iovcnt, unsigned flags);

/* Engine completion of a protocol request: RES is bytes or -errno.  Handles
 * short transfers (restarting the rest) and completes the request. */
void engine_complete(struct vdisk_req *req, long res);

/* Runs an engine operation with plain system calls; returns bytes or -errno. */
long engine_do_sync(struct vdisk_req *req);

/* Completes REQ later with the engine result RES (from this thread). */
void engine_defer(struct vdisk_queue *q, struct vdisk_req *req, long res);
/* ...from another thread. */
void engine_post(struct vdisk_queue *q, struct vdisk_req *req, long res);

/* Completes REQ with RET later, from this (the queue's) thread. */
void queue_defer(struct vdisk_queue *q, struct vdisk_req *req, int ret);

/* Completes REQ with RET later, from any thread (wakes the queue). */
void queue_post(struct vdisk_queue *q, struct vdisk_req *req, int ret);

/* Runs every deferred and posted completion; returns how many ran. */
unsigned queue_run_ready(struct vdisk_queue *q);

/* Signals the user fd, if one was asked for. */
void queue_notify(struct vdisk_queue *q);

/* ---- Utilities ------------------------------------------------------------ */

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

#endif /* VDISK_INTERNAL_H */
