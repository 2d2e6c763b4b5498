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

/* ---- Devices -------------------------------------------------------------- */

struct write_track; /* lib/request.c: overlapping read-modify-write */

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

/* The core's part of a device (dev->core). */
struct dev_core {
    atomic_int refs;
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
    /* Opened by a json: name that qemu-img shows otherwise than the plain
     * name it came to (lib/json_name.c): vdisk_get_info's filename. */
    char *shown;
    /* The format a protocol device opened as the image itself shows in
     * place of "raw" (QEMU's null-co given as the driver), or NULL. */
    const char *format_shown;
};

/*
 * Image locking (lib/lock.c): QEMU's permission bits, published as OFD locks
 * on the image file so that QEMU, qemu-img and vdisk see each other.
 */
/* What an open with P takes and shares (RAW_FORMAT: no format on top). */
void lock_perms_for_open(const struct vdisk_open_params *p, bool raw_format, unsigned *perm,
                         unsigned *shared);
/* Takes the locks for opening FMT over the protocol device FILE (no-op for
 * protocols without locks). */
int dev_take_perms(struct vdisk_dev *file, const struct vdisk_driver *fmt,
                   const struct vdisk_open_params *p);

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

/* ---- Requests ------------------------------------------------------------- */

/* A device as the core allocates it. */
struct dev_full {
    struct vdisk_dev dev;
    struct dev_core core;
};

/* The core's part of a request (req->core). */
struct req_core {
    struct iovec *iov_alloc;   /* a malloc'd array, or NULL */
    struct iovec iov_inline[REQ_INLINE_IOV];
    vdisk_completion_fn user_cb;  /* top-level requests */
    void *user_data;

    /* Engine state, set by req_start_file_io(): the operation, the file,
     * progress of a short transfer. */
    enum eng_op eng_op;
    int eng_mode;              /* fallocate mode; fsync: ENG_FDATASYNC or 0 */
    long (*eng_fn)(struct vdisk_req *req, int fd); /* ENG_CALL */
    int fd;
    uint64_t file_id;
    bool eng_direct;
    uint64_t done_bytes;
    long eng_res;              /* a result waiting to be processed */

    /* Write serialisation, read-modify-write and fan-out to children. */
    struct write_track *track;
    void *rmw_buf;
    uint64_t rmw_start, rmw_len;
    void *guard_buf;           /* block 0 of a probed raw image, as checked */
    void *owned_buf;           /* the data of a write-zeroes part; both are
                                  freed when the request completes */
    unsigned pending;          /* children still in flight */
    int first_err;             /* first child error (negative), or 0 */

    /* A request handed over whole (req_forward): what to put back. */
    struct vdisk_dev *fwd_dev;
    uint64_t fwd_offset;
    unsigned fwd_flags;
    req_done_fn fwd_done;

    /* Work handed to a worker thread (lib/offload.c). */
    int (*offload_work)(struct vdisk_req *req);
    void (*offload_then)(struct vdisk_req *req);
};

/* A request as the core allocates it. */
struct req_full {
    struct vdisk_req req;
    struct req_core core;
};

/*
 * The checks of the layer boundary: the range lies inside the device (else
 * -EIO) and writes go to a writable device (else -EROFS).  On failure *MSG
 * is a new message "FILE: what was asked and why it was refused".
 */
int dev_check_request(struct vdisk_dev *dev, enum vdisk_op op, uint64_t off, uint64_t len,
                      char **msg);
/* The same for a request with FLAGS: REQ_VMSTATE checks it as a request
 * on the VM state area (past the device's end, read or write only). */
int dev_check_request_flags(struct vdisk_dev *dev, enum vdisk_op op, uint64_t off, uint64_t len,
                            unsigned flags, char **msg);

/*
 * Start a thread of the library's own (engine workers, the offload worker)
 * with a 1 MiB stack: their frames are small, and a process embedding
 * libvdisk should not pay glibc's default 8 MiB of address space per thread.
 * Returns pthread_create's result.
 */
int lib_thread_start(pthread_t *tid, void *(*fn)(void *), void *arg);
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

#endif /* VDISK_INTERNAL_H */
