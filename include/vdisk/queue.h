/* SPDX-License-Identifier: MIT */
/*
 * vdisk/queue.h: the asynchronous interface, for hypervisors and event loops.
 *
 * A queue is bound to one device and used by one thread at a time.  Requests
 * are started with vdisk_aio_*() and completed by vdisk_queue_reap(), which
 * calls each request's completion callback on the reaping thread.  A queue
 * keeps any number of requests in flight (hundreds are normal), runs them on
 * the device's I/O engine (io_uring, or worker threads where io_uring is not
 * available) and hands the event loop one file descriptor to poll.
 *
 * A typical virtio queue handler:
 *
 *     for each descriptor chain:  vdisk_aio_preadv(q, ..., done, chain);
 *     vdisk_queue_submit(q);                 // one system call for all
 *     ...poll(vdisk_queue_get_fd(q)) says readable...
 *     vdisk_queue_reap(q, 0, 0);             // runs done() for finished ones
 *
 * Contract: when a vdisk_aio_*() call returns 0, its callback runs exactly
 * once, later, from vdisk_queue_reap() (or vdisk_queue_reap_max(),
 * vdisk_queue_drain(), vdisk_queue_free()) on the queue's thread, never from
 * inside the vdisk_aio_*() call, even when the request fails or finishes at
 * once.  When it returns a negative errno, the request was refused before any
 * I/O (bad arguments, bad range, read-only device, no memory) and the
 * callback never runs; vdisk_get_error() says why.  The iovec array is
 * copied; the buffers it points to must stay valid until the callback runs.
 *
 * Blocking: the vdisk_aio_*() calls and vdisk_queue_submit() do not wait for
 * I/O to complete, on any driver and engine.  On qcow2, a read or a write
 * whose L2 table is not cached waits for the table, read as a child request
 * on its own queue (one read however many requests need it; requests on
 * other tables go on).  The rest of the metadata I/O a request needs
 * (refcount blocks, a new L2 table, growing the file, writing tables back,
 * flushes, the table walks of discards and write zeroes) runs on the
 * image's worker thread, which does not hold the image's lock across that
 * I/O, so calls on other threads do not wait for it.  A call may still wait
 * for that lock while the worker holds it for rarer metadata I/O: a new
 * refcount block or a larger refcount table, a discard's copy of an L2
 * table shared with a snapshot, lazy refcounts' dirty bit at the first
 * write, a write-back when every slot of the table cache is dirty.
 * vdisk_pwrite_compressed*() and the management calls (snapshots, resize,
 * amend, check) are synchronous.  vdisk_queue_reap() waits only as
 * its TIMEOUT_MS allows.
 *
 * Thread-safety: a queue must be used by one thread at a time (it has no
 * lock on its hot path); several queues on one device, each used by its own
 * thread, run in parallel.  Completion callbacks may start new requests on
 * the same queue; those complete in a later reap call, so one busy queue
 * cannot keep its reaper for ever.
 */
#ifndef VDISK_QUEUE_H
#define VDISK_QUEUE_H

#include <stdint.h>
#include <sys/uio.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_queue vdisk_queue;

/*
 * The completion callback: RESULT is 0 on success or a negative errno; on
 * failure vdisk_get_error() holds the message.  USER is the pointer that was
 * given when the request was started.
 */
typedef void (*vdisk_completion_fn)(void *user, int result);

/*
 * vdisk_queue_new: a queue on DEV with room for DEPTH requests in the
 * engine at once (1..4096; 0 means 128).  More requests than DEPTH may be
 * started; the excess waits inside the queue.  The queue holds a reference
 * to DEV.  Returns 0 or -errno; *qp is NULL on failure.
 */
int vdisk_queue_new(vdisk_queue **qp, vdisk_dev *dev, unsigned depth);

/*
 * vdisk_queue_free: frees the queue, first waiting for (and completing) any
 * request still in flight.  NULL is a no-op.
 */
void vdisk_queue_free(vdisk_queue *q);

/*
 * vdisk_queue_get_fd: a file descriptor that becomes readable when the
 * queue has completions to reap.  Poll it for POLLIN (or add it to epoll);
 * vdisk_queue_reap() clears it.  The queue owns it: do not close it.
 * Returns the fd, or -errno when the io_uring engine cannot make it.
 */
int vdisk_queue_get_fd(vdisk_queue *q);

/*
 * vdisk_queue_register_buffers: tells the queue that the N memory regions
 * in IOV (at most 1024, each at most 1 GiB) will be used as I/O buffers
 * again and again, as a VMM's guest RAM is.  On the io_uring engine the
 * kernel pins them once and requests whose single buffer lies inside a
 * region skip the per-request page pinning (READ_FIXED / WRITE_FIXED).
 * Requests with other buffers work as before.  The regions must stay
 * mapped until the queue is freed or buffers are registered again (which
 * replaces the set).  Returns 0 (also on the threads engine, where it has
 * no effect) or -errno (-ENOMEM when the pinned-memory limit is too low,
 * -EINVAL for bad regions).
 */
int vdisk_queue_register_buffers(vdisk_queue *q, const struct iovec *iov, unsigned n);

/* vdisk_queue_engine: "io_uring" or "threads". */
const char *vdisk_queue_engine(const vdisk_queue *q);

/* vdisk_queue_in_flight: requests started and not yet completed. */
unsigned vdisk_queue_in_flight(const vdisk_queue *q);

/* Flags for the vdisk_aio_*() calls; each call names those it takes, and
 * any other bit makes it fail with -EINVAL. */
#define VDISK_REQ_FUA        0x1u /* the write is durable when it completes */
#define VDISK_REQ_MAY_UNMAP  0x2u /* write_zeroes may deallocate */
#define VDISK_REQ_NO_FALLBACK 0x4u /* write_zeroes: fail with -ENOTSUP rather
                                    * than write buffers of zeroes */

/* The most iovec entries a read or write may have. */
#define VDISK_AIO_IOV_MAX    1024
/* The most bytes a read or write may move (Linux's limit for one call). */
#define VDISK_AIO_LEN_MAX    0x7ffff000ull

/*
 * Errors common to the vdisk_aio_*() calls (returned, the callback never
 * runs): -EINVAL for a NULL queue or callback, flags the call does not take,
 * an iovec count outside 0..VDISK_AIO_IOV_MAX, an entry with bytes at NULL,
 * or more than VDISK_AIO_LEN_MAX bytes in all; -EIO for a range that is not
 * inside the device (formats' files grow instead); -EROFS for a write,
 * discard or write_zeroes on a read-only device; -ENOMEM.  Errors of the
 * I/O itself (-EIO, -ENOSPC, ...) come to the callback as its RESULT.
 * Offsets and lengths need no alignment: the core reads, modifies and writes
 * whole blocks where the device needs them.  None of these calls blocks
 * (see "Blocking" above) and none runs a callback.
 */

/*
 * vdisk_aio_preadv: reads the bytes at OFFSET into the buffers of IOV
 * (IOVCNT entries), whose total length is the request's length.  FLAGS: none
 * (0); in particular VDISK_REQ_FUA has no meaning for reads and is refused.
 * Past the end of a growable image file the bytes read as zeroes.
 */
int vdisk_aio_preadv(vdisk_queue *q, const struct iovec *iov, int iovcnt,
                     uint64_t offset, unsigned flags,
                     vdisk_completion_fn cb, void *user);

/*
 * vdisk_aio_pwritev: writes the buffers of IOV at OFFSET.  FLAGS:
 * VDISK_REQ_FUA, the data (and the metadata that finds it) is on stable
 * storage when the callback runs with 0.  Writes that overlap a write still
 * in flight on any queue of the device land in the order they were started
 * where the device needs read-modify-write; otherwise, as with a disk,
 * overlapping writes in flight together have no defined order.
 */
int vdisk_aio_pwritev(vdisk_queue *q, const struct iovec *iov, int iovcnt,
                      uint64_t offset, unsigned flags,
                      vdisk_completion_fn cb, void *user);

/*
 * vdisk_aio_flush: makes every write completed before this call durable
 * (fdatasync, after the format's metadata is written back).  A failed flush
 * is remembered: every later flush of the device fails too, since what the
 * failed one covered may be lost.  No flags.
 */
int vdisk_aio_flush(vdisk_queue *q, vdisk_completion_fn cb, void *user);

/*
 * vdisk_aio_discard: the guest no longer needs [OFFSET, OFFSET + LENGTH);
 * the device may deallocate it (raw: punches a hole; qcow2: whole clusters,
 * as QEMU does).  What a later read returns there is unspecified (zeroes, or
 * the backing file's data where no zeroes can be kept).  No flags.
 */
int vdisk_aio_discard(vdisk_queue *q, uint64_t offset, uint64_t length,
                      vdisk_completion_fn cb, void *user);

/*
 * vdisk_aio_write_zeroes: [OFFSET, OFFSET + LENGTH) reads as zeroes once the
 * callback runs with 0.  FLAGS: VDISK_REQ_MAY_UNMAP lets the device
 * deallocate the range while doing so; VDISK_REQ_FUA as for writes.
 * VDISK_REQ_NO_FALLBACK: the zeroes are made cheaply (metadata, a
 * fallocate that zeroes or punches, an NBD fast zero) or not at all: where
 * the device would have to write buffers of zeroes (a file system or block
 * device without a zeroing fallocate, the unaligned edges of a range, the
 * partial clusters of a qcow2 image, an NBD server without fast zero), the
 * callback runs with -ENOTSUP instead, and what the range holds then is
 * unspecified (a part may be zeroed already).  QEMU's BDRV_REQ_NO_FALLBACK;
 * the NBD server uses it for NBD_CMD_FLAG_FAST_ZERO.
 */
int vdisk_aio_write_zeroes(vdisk_queue *q, uint64_t offset, uint64_t length,
                           unsigned flags, vdisk_completion_fn cb, void *user);

/*
 * vdisk_queue_submit: hands every started request to the kernel (one
 * io_uring_enter for the lot).  vdisk_queue_reap() does it too; call this
 * when you start requests and go back to your event loop.  Called from a
 * completion callback that a reap of this same queue runs, it returns 0 at
 * once and the reap hands what its callbacks started to the kernel in one
 * io_uring_enter when they have run, before it returns (or waits).  Returns
 * the number of requests passed to the engine, or -errno.
 */
int vdisk_queue_submit(vdisk_queue *q);

/*
 * vdisk_queue_reap: submits what is pending, then completes requests,
 * running their callbacks, until at least MIN_COMPLETE requests have
 * completed in this call, nothing is left in flight, or TIMEOUT_MS
 * milliseconds have passed (-1: no limit; 0: do not wait).  Requests that
 * the callbacks start complete in a later call unless MIN_COMPLETE needs
 * them.  Returns the number of requests completed (possibly 0), or -errno.
 * May block as TIMEOUT_MS allows.
 */
int vdisk_queue_reap(vdisk_queue *q, unsigned min_complete, int timeout_ms);

/*
 * vdisk_queue_reap_max: vdisk_queue_reap() that runs at most MAX_COMPLETE
 * callbacks (0: no limit), so that an event loop serving many queues (or
 * other fds) gives each its turn.  What is left stays ready: the queue's fd
 * stays readable and the next call completes it first.  -EINVAL when
 * MIN_COMPLETE is above a non-zero MAX_COMPLETE.
 */
int vdisk_queue_reap_max(vdisk_queue *q, unsigned min_complete, unsigned max_complete,
                         int timeout_ms);

/*
 * vdisk_queue_drain: completes every request in flight.  Returns the number
 * completed, or -errno.
 */
int vdisk_queue_drain(vdisk_queue *q);

/*
 * vdisk_dev_quiesce: begins a quiesce section on DEV: waits until no
 * request is inside the device (other threads' requests complete as their
 * queues' threads reap them; the calling thread's own are moved on, see
 * below), and from then on holds back every request that other threads
 * start, on any queue of DEV or of a range or partition opened over it
 * (vdisk_open_range(), vdisk_open_partition(), at any depth), counted in
 * flight, never failed, and their synchronous calls (vdisk_pread() ...),
 * until vdisk_dev_resume().  The calling thread's new requests go through.
 * Sections nest in one thread; a second thread's section waits for the
 * first to end.  Whole-image operations on an open device (vdisk_resize,
 * vdisk_amend, vdisk_check, vdisk_make_empty, vdisk_set_backing and the
 * snapshot calls) take a section of their own, so they may be called while
 * other threads keep their queues busy.
 *
 * The other threads must keep reaping their queues meanwhile (their
 * callbacks run as usual), or be inside a vdisk call that waits for the
 * section: such a thread, and the calling thread, move their own queues'
 * requests on while they wait, without running callbacks (those run from
 * the thread's next reap).  Blocks.  Returns 0 or -errno.
 */
int vdisk_dev_quiesce(vdisk_dev *dev);

/*
 * vdisk_dev_resume: ends the calling thread's innermost section; at the
 * outermost one, held-back requests start (each queue's fd becomes readable
 * so that its thread's next reap or submit starts them) and synchronous
 * callers go on.  -EINVAL when this thread holds no section on DEV.
 */
int vdisk_dev_resume(vdisk_dev *dev);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_QUEUE_H */
