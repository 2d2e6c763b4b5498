/* SPDX-License-Identifier: MIT */
/*
 * lib/queue.c: asynchronous queues (vdisk/queue.h).
 *
 * A queue owns an engine instance (an io_uring, or a pool of worker threads)
 * and the requests started on it.  Completions are run from
 * vdisk_queue_reap() on the queue's thread: those produced on that thread
 * wait on a local list, those produced elsewhere (worker threads, another
 * queue releasing a serialised write) on a locked list with an eventfd.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- Completion lists ----------------------------------------------------- */

static void eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* EAGAIN means it is already readable */
}

static void eventfd_clear(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

void queue_notify(struct vdisk_queue *q)
{
    if (q->user_fd >= 0)
        eventfd_signal(q->user_fd);
}

void queue_wake(struct vdisk_queue *q)
{
    eventfd_signal(q->wake_fd);
}

void queue_defer(struct vdisk_queue *q, struct vdisk_req *req, int ret)
{
    req->result = ret;
    req_list_append(&q->local_head, &q->local_tail, req);
    queue_notify(q);
}

void queue_post(struct vdisk_queue *q, struct vdisk_req *req, int ret)
{
    req->result = ret;
    pthread_mutex_lock(&q->post_lock);
    req_list_append(&q->post_head, &q->post_tail, req);
    /* Signalled under the lock: once the queue's thread has taken the
     * request (under the lock), it may complete it and free the queue,
     * closing the eventfd, at once. */
    eventfd_signal(q->wake_fd);
    pthread_mutex_unlock(&q->post_lock);
}

static void run_one(struct vdisk_req *req)
{
    if (req->resume) {
        void (*fn)(struct vdisk_req *) = req->resume;
        req->resume = NULL;
        fn(req);
    } else {
        req_complete(req, req->result);
    }
}

unsigned queue_run_ready(struct vdisk_queue *q)
{
    unsigned n = 0;
    for (;;) {
        struct vdisk_req *list = q->local_head;
        q->local_head = q->local_tail = NULL;
        if (!list) {
            pthread_mutex_lock(&q->post_lock);
            list = q->post_head;
            q->post_head = q->post_tail = NULL;
            pthread_mutex_unlock(&q->post_lock);
        }
        if (!list)
            return n;
        while (list) {
            struct vdisk_req *next = list->next;
            run_one(list);
            n++;
            list = next;
        }
    }
}

static bool queue_has_ready(struct vdisk_queue *q)
{
    if (q->local_head)
        return true;
    pthread_mutex_lock(&q->post_lock);
    bool r = q->post_head != NULL;
    pthread_mutex_unlock(&q->post_lock);
    return r;
}

/* ---- Queue life ----------------------------------------------------------- */

static unsigned default_threads(void)
{
    return 16;
}

int queue_create(struct vdisk_queue **qp, struct vdisk_dev *dev, unsigned depth, bool ref)
{
    *qp = NULL;
    if (depth == 0)
        depth = 128;
    if (depth > 4096)
        return err_set(-EINVAL, "queue depth %u is out of range (1 to 4096)", depth);
    struct vdisk_queue *q = calloc(1, sizeof *q);
    if (!q)
        return err_set(-ENOMEM, "out of memory");
    q->dev = dev;
    q->depth = depth;
    q->threads = dev->params.threads ? dev->params.threads : default_threads();
    q->user_fd = -1;
    pthread_mutex_init(&q->post_lock, NULL);
    q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->wake_fd < 0) {
        int e = -errno;
        pthread_mutex_destroy(&q->post_lock);
        free(q);
        return err_set(e, "eventfd: %s", strerror(-e));
    }
    q->eng = dev->engine == VDISK_ENGINE_URING ? &engine_uring_ops : &engine_threads_ops;
    int r = q->eng->init(q);
    if (r < 0) {
        close(q->wake_fd);
        pthread_mutex_destroy(&q->post_lock);
        free(q);
        return r;
    }
    atomic_init(&q->active, 0);
    atomic_init(&q->user, 0);
    q->holds_ref = ref;
    if (ref)
        dev_ref(dev);
    quiesce_add_queue(dev, q);
    *qp = q;
    return 0;
}

static int queue_reap(struct vdisk_queue *q, unsigned min_complete, unsigned max_complete,
                      int timeout_ms);

void queue_destroy(struct vdisk_queue *q)
{
    if (!q)
        return;
    while (q->in_flight)
        if (queue_reap(q, q->in_flight, 0, -1) < 0)
            break;
    quiesce_remove_queue(q->dev, q);
    q->eng->fini(q);
    while (q->free_list) {
        struct vdisk_req *r = q->free_list;
        q->free_list = r->next;
        free(r);
    }
    if (q->user_fd >= 0 && q->user_fd != q->wake_fd)
        close(q->user_fd);
    close(q->wake_fd);
    pthread_mutex_destroy(&q->post_lock);
    struct vdisk_dev *dev = q->dev;
    bool ref = q->holds_ref;
    free(q);
    if (ref)
        vdisk_close(dev);
}

VDISK_EXPORT int vdisk_queue_new(vdisk_queue **qp, vdisk_dev *dev, unsigned depth)
{
    err_enter(__func__);
    if (!dev) {
        *qp = NULL;
        return err_set(-EINVAL, "no device");
    }
    return queue_create(qp, dev, depth, true);
}

VDISK_EXPORT void vdisk_queue_free(vdisk_queue *q)
{
    err_enter(__func__);
    queue_destroy(q);
}

VDISK_EXPORT int vdisk_queue_get_fd(vdisk_queue *q)
{
    err_enter(__func__);
    if (q->user_fd < 0) {
        int fd = q->eng->get_fd(q);
        if (fd < 0)
            return fd;
        q->user_fd = fd;
        /* Completions that are already waiting must show. */
        if (q->local_head)
            queue_notify(q);
    }
    return q->user_fd;
}

VDISK_EXPORT int vdisk_queue_register_buffers(vdisk_queue *q, const struct iovec *iov,
                                              unsigned n)
{
    err_enter(__func__);
    if (n > 1024 || (n && !iov))
        return err_set(-EINVAL, "cannot register %u buffers (1024 at most)", n);
    for (unsigned i = 0; i < n; i++)
        if (!iov[i].iov_base || !iov[i].iov_len || iov[i].iov_len > (1u << 30))
            return err_set(-EINVAL, "buffer %u (%zu bytes) cannot be registered: it must be "
                           "1 byte to 1 GiB long", i, iov[i].iov_len);
    if (!q->eng->register_buffers)
        return 0;
    return q->eng->register_buffers(q, iov, n);
}

VDISK_EXPORT const char *vdisk_queue_engine(const vdisk_queue *q)
{
    return q->eng->name;
}

VDISK_EXPORT unsigned vdisk_queue_in_flight(const vdisk_queue *q)
{
    return q->in_flight;
}

/* ---- Starting requests ---------------------------------------------------- */

/* Inside a vdisk_aio_*() call on this thread (not a synchronous call's),
 * or inside the library's part of a reap of a public queue (not in the
 * user's callbacks, which may well make synchronous calls). */
static _Thread_local bool in_submit, in_reap;
static atomic_ulong sync_waits_in_submit, sync_waits_in_reap;

void queue_note_sync_wait(void)
{
    if (in_submit)
        atomic_fetch_add(&sync_waits_in_submit, 1);
    else if (in_reap)
        atomic_fetch_add(&sync_waits_in_reap, 1);
}

unsigned long queue_sync_waits_in_submit(void)
{
    return atomic_load(&sync_waits_in_submit);
}

unsigned long queue_sync_waits_in_reap(void)
{
    return atomic_load(&sync_waits_in_reap);
}

static const char *const aio_names[] = {
    [VDISK_OP_READ] = "vdisk_aio_preadv",
    [VDISK_OP_WRITE] = "vdisk_aio_pwritev",
    [VDISK_OP_FLUSH] = "vdisk_aio_flush",
    [VDISK_OP_DISCARD] = "vdisk_aio_discard",
    [VDISK_OP_WRITE_ZEROES] = "vdisk_aio_write_zeroes",
};

/* The driver finished a top-level request: its callback waits for reap. */
static void top_done(struct vdisk_req *req, int ret)
{
    struct vdisk_queue *q = req->q;
    req->result = ret;
    bool was_empty = !q->done_head;
    req_list_append(&q->done_head, &q->done_tail, req);
    quiesce_leave(q);
    if (was_empty && !q->reaping)
        queue_notify(q);
}

/*
 * Runs the callbacks of the requests finished so far, at most MAX of them;
 * those finished while the callbacks run (requests they start) wait for the
 * next call.  Returns the number run.
 */
static unsigned deliver(struct vdisk_queue *q, unsigned max)
{
    struct vdisk_req *list = q->done_head, *last = q->done_tail;
    q->done_head = q->done_tail = NULL;
    unsigned n = 0;
    /* What the callbacks start goes to the kernel in one system call when
     * the batch has run (reap_loop and queue_reap submit after deliver),
     * not in one per vdisk_queue_submit() the callbacks make. */
    bool outer_delivering = q->delivering;
    q->delivering = true;
    while (list && n < max) {
        struct vdisk_req *req = list;
        list = req->next;
        vdisk_completion_fn cb = req->core->user_cb;
        void *user = req->core->user_data;
        int ret = req->result;
        if (ret < 0)
            err_set_in(aio_names[req->op], ret, req->errmsg ? req->errmsg : strerror(-ret));
        q->in_flight--;
        q->completed++;
        req_free(req);
        n++;
        if (cb) {
            bool outer = in_reap;
            in_reap = false;
            cb(user, ret);
            in_reap = outer;
        }
    }
    q->delivering = outer_delivering;
    if (list) {
        /* The budget is spent: the rest go first next time. */
        last->next = q->done_head;
        if (!q->done_head)
            q->done_tail = last;
        q->done_head = list;
    }
    return n;
}

/* Parks REQ until the device's quiesce section ends. */
static void park(struct vdisk_queue *q, struct vdisk_req *req)
{
    req_list_append(&q->parked_head, &q->parked_tail, req);
}

/* Starts the parked requests once the section has ended. */
static void start_parked(struct vdisk_queue *q)
{
    while (q->parked_head && quiesce_enter(q)) {
        struct vdisk_req *req = q->parked_head;
        q->parked_head = req->next;
        if (!q->parked_head)
            q->parked_tail = NULL;
        req->next = NULL;
        req_submit(req);
    }
}

int queue_start(struct vdisk_queue *q, enum vdisk_op op, const struct iovec *iov, int iovcnt,
                uint64_t offset, uint64_t length, unsigned flags, vdisk_completion_fn cb,
                void *user)
{
    struct vdisk_dev *dev = q->dev;
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return err_set(-EINVAL, "invalid iovec (count %d)", iovcnt);
    char *msg;
    /* REQ_VMSTATE (vdisk_vmstate_*) only on a device's own synchronous
     * queue, never on a user's. */
    flags &= VDISK_REQ_FUA | VDISK_REQ_MAY_UNMAP | VDISK_REQ_NO_FALLBACK |
             (q->holds_ref ? 0 : REQ_VMSTATE);
    int r = dev_check_request_flags(dev, op, offset, length, flags, &msg);
    if (r < 0) {
        err_set(r, "%s", msg ? msg : strerror(-r));
        free(msg);
        return r;
    }
    struct vdisk_req *req = req_new(q, dev, op, offset, length, iov, iovcnt, flags);
    if (!req)
        return err_set(-ENOMEM, "out of memory");
    req->done = top_done;
    req->core->user_cb = cb;
    req->core->user_data = user;
    if (!quiesce_enter(q)) {
        if (!q->holds_ref) {
            /* A device's own synchronous queue: its caller waits for the
             * section to end (lib/device.c) without holding the queue. */
            req_free(req);
            return -EAGAIN;
        }
        q->in_flight++;
        park(q, req);
        return 0;
    }
    q->in_flight++;
    bool outer = in_submit;
    in_submit = q->holds_ref;
    req_submit(req);
    in_submit = outer;
    return 0;
}

/* What every vdisk_aio_*() call checks before anything else. */
static int check_call(vdisk_queue *q, enum vdisk_op op, unsigned flags, unsigned allowed,
                      vdisk_completion_fn cb)
{
    if (!q)
        return err_set(-EINVAL, "no queue");
    if (!cb)
        return err_set(-EINVAL, "no completion callback");
    if (flags & ~allowed)
        return err_set(-EINVAL, "flags 0x%x are not valid for %s (allowed: 0x%x)",
                       flags & ~allowed, aio_names[op], allowed);
    return 0;
}

static int start_rw(vdisk_queue *q, enum vdisk_op op, const struct iovec *iov, int iovcnt,
                    uint64_t offset, unsigned flags, unsigned allowed, vdisk_completion_fn cb,
                    void *user)
{
    int r = check_call(q, op, flags, allowed, cb);
    if (r < 0)
        return r;
    if (iovcnt < 0 || iovcnt > VDISK_AIO_IOV_MAX || (iovcnt > 0 && !iov))
        return err_set(-EINVAL, "invalid iovec (count %d; 0 to %d)", iovcnt, VDISK_AIO_IOV_MAX);
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len && !iov[i].iov_base)
            return err_set(-EINVAL, "iovec %d has %zu bytes at NULL", i, iov[i].iov_len);
        if (iov[i].iov_len > VDISK_AIO_LEN_MAX - len)
            return err_set(-EINVAL, "the request is longer than %llu bytes",
                           (unsigned long long)VDISK_AIO_LEN_MAX);
        len += iov[i].iov_len;
    }
    return queue_start(q, op, iov, iovcnt, offset, len, flags, cb, user);
}

VDISK_EXPORT int vdisk_aio_preadv(vdisk_queue *q, const struct iovec *iov, int iovcnt,
                                  uint64_t offset, unsigned flags, vdisk_completion_fn cb,
                                  void *user)
{
    err_enter(__func__);
    return start_rw(q, VDISK_OP_READ, iov, iovcnt, offset, flags, 0, cb, user);
}

VDISK_EXPORT int vdisk_aio_pwritev(vdisk_queue *q, const struct iovec *iov, int iovcnt,
                                   uint64_t offset, unsigned flags, vdisk_completion_fn cb,
                                   void *user)
{
    err_enter(__func__);
    return start_rw(q, VDISK_OP_WRITE, iov, iovcnt, offset, flags, VDISK_REQ_FUA, cb, user);
}

VDISK_EXPORT int vdisk_aio_flush(vdisk_queue *q, vdisk_completion_fn cb, void *user)
{
    err_enter(__func__);
    int r = check_call(q, VDISK_OP_FLUSH, 0, 0, cb);
    return r < 0 ? r : queue_start(q, VDISK_OP_FLUSH, NULL, 0, 0, 0, 0, cb, user);
}

VDISK_EXPORT int vdisk_aio_discard(vdisk_queue *q, uint64_t offset, uint64_t length,
                                   vdisk_completion_fn cb, void *user)
{
    err_enter(__func__);
    int r = check_call(q, VDISK_OP_DISCARD, 0, 0, cb);
    return r < 0 ? r : queue_start(q, VDISK_OP_DISCARD, NULL, 0, offset, length, 0, cb, user);
}

VDISK_EXPORT int vdisk_aio_write_zeroes(vdisk_queue *q, uint64_t offset, uint64_t length,
                                        unsigned flags, vdisk_completion_fn cb, void *user)
{
    err_enter(__func__);
    int r = check_call(q, VDISK_OP_WRITE_ZEROES, flags,
                       VDISK_REQ_FUA | VDISK_REQ_MAY_UNMAP | VDISK_REQ_NO_FALLBACK, cb);
    return r < 0 ? r
                 : queue_start(q, VDISK_OP_WRITE_ZEROES, NULL, 0, offset, length, flags, cb, user);
}

/* ---- Reaping -------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int reap_loop(struct vdisk_queue *q, unsigned min_complete, unsigned max_complete,
                     int timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    unsigned before = q->completed;
    for (;;) {
        start_parked(q);
        int r = q->eng->submit(q);
        if (r < 0)
            return r;
        queue_run_ready(q);
        r = q->eng->poll(q, 0);
        if (r < 0)
            return r;
        queue_run_ready(q);
        unsigned done = q->completed - before;
        if (done < max_complete)
            deliver(q, max_complete - done);
        done = q->completed - before;
        if (done >= max_complete || done >= min_complete || q->in_flight == 0)
            return (int)done;
        if (q->done_head || queue_has_ready(q))
            continue;
        int wait = -1;
        if (timeout_ms == 0)
            return (int)done;
        if (timeout_ms > 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return (int)done;
            wait = (int)left;
        }
        r = q->eng->poll(q, wait);
        if (r < 0)
            return r;
    }
}

static int queue_reap(struct vdisk_queue *q, unsigned min_complete, unsigned max_complete,
                      int timeout_ms)
{
    if (max_complete == 0)
        max_complete = UINT_MAX;
    if (q->user_fd >= 0) {
        /* What is pending goes to the engine before the fd is cleared:
         * what completes inside that submission (io_uring reads from the
         * page cache) signals the fd, and is reaped below anyway; cleared
         * after it, the fd does not wake the caller's loop for nothing.
         * (Whatever completes after the clear signals it again.) */
        q->eng->submit(q); /* (a failure: reap_loop's submit says it) */
        eventfd_clear(q->user_fd);
    }
    bool outer = q->reaping, outer_reap = in_reap;
    q->reaping = true;
    in_reap = q->holds_ref;
    int r = reap_loop(q, min_complete, max_complete, timeout_ms);
    /* What the callbacks started goes to the engine now; what is left to
     * deliver keeps the fd readable. */
    int s = q->eng->submit(q);
    if (r >= 0 && s < 0)
        r = s;
    in_reap = outer_reap;
    q->reaping = outer;
    if (q->done_head || (q->parked_head && !quiesce_blocks(q->dev)))
        queue_notify(q);
    return r;
}

void queue_progress(struct vdisk_queue *q, int timeout_ms)
{
    if (q->eng->submit(q) < 0)
        return;
    queue_run_ready(q);
    if (!queue_has_ready(q) && q->eng->poll(q, timeout_ms) < 0)
        return;
    queue_run_ready(q);
}

VDISK_EXPORT int vdisk_queue_submit(vdisk_queue *q)
{
    err_enter(__func__);
    start_parked(q);
    /* From a callback that this queue's reap runs: the reap submits once
     * the batch of callbacks has run, before it returns. */
    if (q->delivering)
        return 0;
    return q->eng->submit(q);
}

VDISK_EXPORT int vdisk_queue_reap(vdisk_queue *q, unsigned min_complete, int timeout_ms)
{
    err_enter(__func__);
    return queue_reap(q, min_complete, 0, timeout_ms);
}

VDISK_EXPORT int vdisk_queue_reap_max(vdisk_queue *q, unsigned min_complete,
                                      unsigned max_complete, int timeout_ms)
{
    err_enter(__func__);
    if (max_complete && min_complete > max_complete)
        return err_set(-EINVAL, "min_complete %u is above max_complete %u", min_complete,
                       max_complete);
    return queue_reap(q, min_complete, max_complete, timeout_ms);
}

VDISK_EXPORT int vdisk_queue_drain(vdisk_queue *q)
{
    err_enter(__func__);
    return queue_reap(q, q->in_flight, 0, -1);
}

int queue_reap_internal(struct vdisk_queue *q, unsigned min_complete)
{
    return queue_reap(q, min_complete, 0, -1);
}
