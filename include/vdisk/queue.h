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
 * once, later, from vdisk_queue_reap() (never from inside the vdisk_aio_*()
 * call).  When it returns a negative errno, the request was refused before
 * any I/O (bad range, read-only device, no memory) and the callback never
 * runs.  The iovec array is copied; the buffers it points to must stay valid
 * until the callback runs.
 *
 * Thread-safety: a queue must be used by one thread at a time (it has no
 * lock on its hot path); several queues on one device, each used by its own
 * thread, run in parallel.  Completion callbacks may start new requests on
 * the same queue.
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

/* Flags for the vdisk_aio_*() calls. */
#define VDISK_REQ_FUA        0x1u /* the write is durable when it completes */
#define VDISK_REQ_MAY_UNMAP  0x2u /* write_zeroes may deallocate */

int vdisk_aio_preadv(vdisk_queue *q, const struct iovec *iov, int iovcnt,
                     uint64_t offset, unsigned flags,
                     vdisk_completion_fn cb, void *user);
int vdisk_aio_pwritev(vdisk_queue *q, const struct iovec *iov, int iovcnt,
                      uint64_t offset, unsigned flags,
                      vdisk_completion_fn cb, void *user);
int vdisk_aio_flush(vdisk_queue *q, vdisk_completion_fn cb, void *user);
int vdisk_aio_discard(vdisk_queue *q, uint64_t offset, uint64_t length,
                      vdisk_completion_fn cb, void *user);
int vdisk_aio_write_zeroes(vdisk_queue *q, uint64_t offset, uint64_t length,
                           unsigned flags, vdisk_completion_fn cb, void *user);

/*
 * vdisk_queue_submit: hands every started request to the kernel (one
 * io_uring_enter for the lot).  vdisk_queue_reap() does it too; call this
 * when you start requests and go back to your event loop.  Returns the
 * number of requests passed to the engine, or -errno.
 */
int vdisk_queue_submit(vdisk_queue *q);

/*
 * vdisk_queue_reap: submits what is pending, then completes requests,
 * running their callbacks, until at least MIN_COMPLETE requests have
 * completed in this call, nothing is left in flight, or TIMEOUT_MS
 * milliseconds have passed (-1: no limit; 0: do not wait).  Returns the
 * number of requests completed (possibly 0), or -errno.
 */
int vdisk_queue_reap(vdisk_queue *q, unsigned min_complete, int timeout_ms);

/*
 * vdisk_queue_drain: completes every request in flight.  Returns the number
 * completed, or -errno.
 */
int vdisk_queue_drain(vdisk_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_QUEUE_H */
