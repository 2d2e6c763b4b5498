/* SPDX-License-Identifier: MIT */
/*
 * lib/engine_uring.c: the io_uring engine.
 *
 * One ring per queue.  Requests become SQEs as they start; one
 * io_uring_enter passes the batch to the kernel and, when the caller waits,
 * waits for completions in the same call.  Files are registered with the
 * ring on first use (fixed files save the kernel a file table lookup per
 * request).  Operations that io_uring cannot do here (an ioctl, or an
 * opcode this kernel lacks) run inline with plain system calls.
 *
 * A completion posted from another thread wakes the ring through a poll on
 * the queue's wake eventfd.  When the user asks for a pollable fd, a second
 * eventfd is registered with the ring so that every CQE signals it.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

#define WAKE_TAG ((uint64_t)1)
#define FILE_SLOTS 64
#define CQE_BATCH 64

struct file_slot {
    uint64_t file_id; /* 0: free */
    uint64_t last_use;
};

struct uring {
    struct io_uring ring;
    unsigned sq_entries;
    unsigned in_kernel;         /* SQEs handed out and not yet completed */
    struct vdisk_req *backlog_head, *backlog_tail;
    bool wake_armed;
    bool fixed_files;
    bool has_fallocate;
    uint64_t use_clock;
    struct file_slot slots[FILE_SLOTS];
    struct iovec *bufs;         /* registered buffers, sorted by address */
    unsigned nbufs;
    unsigned long submit_calls; /* io_uring_submit*() calls with SQEs ready */
};

/* ---- Probing -------------------------------------------------------------- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool probe_ok;

static void probe_uring(void)
{
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) < 0)
        return;
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    if (p) {
        probe_ok = io_uring_opcode_supported(p, IORING_OP_READV) &&
                   io_uring_opcode_supported(p, IORING_OP_WRITEV) &&
                   io_uring_opcode_supported(p, IORING_OP_FSYNC) &&
                   io_uring_opcode_supported(p, IORING_OP_POLL_ADD);
        io_uring_free_probe(p);
    }
    io_uring_queue_exit(&ring);
}

bool engine_uring_available(void)
{
    pthread_once(&probe_once, probe_uring);
    return probe_ok;
}

/* Counts an io_uring_enter about to hand the kernel SQEs (tests). */
static void count_submit(struct uring *u)
{
    if (io_uring_sq_ready(&u->ring))
        u->submit_calls++;
}

/* Hands the ring's SQEs to the kernel (one io_uring_enter), counted. */
static int submit_ring(struct uring *u)
{
    count_submit(u);
    return io_uring_submit(&u->ring);
}

unsigned long engine_uring_submit_calls(const struct vdisk_queue *q)
{
    return q->eng == &engine_uring_ops ? ((const struct uring *)q->eng_priv)->submit_calls : 0;
}

/* ---- Setup ---------------------------------------------------------------- */

static unsigned round_pow2(unsigned v)
{
    unsigned p = 8;
    while (p < v)
        p <<= 1;
    return p;
}

static void arm_wake(struct vdisk_queue *q, struct uring *u)
{
    if (u->wake_armed)
        return;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        submit_ring(u);
        sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            return;
    }
    io_uring_prep_poll_add(sqe, q->wake_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, WAKE_TAG);
    u->wake_armed = true;
}

static int uring_init(struct vdisk_queue *q)
{
    struct uring *u = calloc(1, sizeof *u);
    if (!u)
        return err_set(-ENOMEM, "out of memory");
    unsigned entries = round_pow2(q->depth + 1);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
    int r = io_uring_queue_init_params(entries, &u->ring, &p);
    if (r == -EINVAL) {
        memset(&p, 0, sizeof p);
        r = io_uring_queue_init_params(entries, &u->ring, &p);
    }
    if (r < 0) {
        free(u);
        return err_set(r, "io_uring setup failed: %s", strerror(-r));
    }
    u->sq_entries = p.sq_entries;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
    if (probe) {
        u->has_fallocate = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
        io_uring_free_probe(probe);
    }
    u->fixed_files = io_uring_register_files_sparse(&u->ring, FILE_SLOTS) == 0;
    q->eng_priv = u;
    arm_wake(q, u);
    return 0;
}

static void uring_fini(struct vdisk_queue *q)
{
    struct uring *u = q->eng_priv;
    io_uring_queue_exit(&u->ring);
    free(u->bufs);
    free(u);
}

static int cmp_iov(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct iovec *)a)->iov_base;
    uintptr_t y = (uintptr_t)((const struct iovec *)b)->iov_base;
    return x < y ? -1 : x > y;
}

static int uring_register_buffers(struct vdisk_queue *q, const struct iovec *iov, unsigned n)
{
    struct uring *u = q->eng_priv;
    if (u->nbufs) {
        io_uring_unregister_buffers(&u->ring);
        free(u->bufs);
        u->bufs = NULL;
        u->nbufs = 0;
    }
    if (n == 0)
        return 0;
    struct iovec *copy = malloc(n * sizeof *copy);
    if (!copy)
        return err_set(-ENOMEM, "out of memory");
    memcpy(copy, iov, n * sizeof *copy);
    qsort(copy, n, sizeof *copy, cmp_iov);
    int r = io_uring_register_buffers(&u->ring, copy, n);
    if (r < 0) {
        free(copy);
        return err_set(r, "io_uring buffer registration failed: %s%s", strerror(-r),
                       r == -ENOMEM ? " (raise the locked-memory limit, ulimit -l)" : "");
    }
    u->bufs = copy;
    u->nbufs = n;
    return 0;
}

/* The registered buffer holding [base, base + len), or -1. */
static int find_buffer(const struct uring *u, const void *base, size_t len)
{
    uintptr_t p = (uintptr_t)base;
    unsigned lo = 0, hi = u->nbufs;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        uintptr_t b = (uintptr_t)u->bufs[mid].iov_base;
        if (p < b) {
            hi = mid;
        } else if (p - b >= u->bufs[mid].iov_len) {
            lo = mid + 1;
        } else {
            return len <= u->bufs[mid].iov_len - (p - b) ? (int)mid : -1;
        }
    }
    return -1;
}

static int uring_get_fd(struct vdisk_queue *q)
{
    struct uring *u = q->eng_priv;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return err_set(-errno, "eventfd: %s", strerror(errno));
    int r = io_uring_register_eventfd(&u->ring, fd);
    if (r < 0) {
        close(fd);
        return err_set(r, "io_uring eventfd registration failed: %s", strerror(-r));
    }
    /* Completions that arrived before the fd existed must show too. */
    if (io_uring_cq_ready(&u->ring)) {
        uint64_t one = 1;
        ssize_t w = write(fd, &one, sizeof one);
        (void)w;
    }
    return fd;
}

/* The registered slot for the request's file, or -1 to use the plain fd. */
static int file_slot(struct uring *u, struct vdisk_req *req)
{
    if (!u->fixed_files || !req->core->file_id)
        return -1;
    int victim = 0;
    u->use_clock++;
    for (int i = 0; i < FILE_SLOTS; i++) {
        if (u->slots[i].file_id == req->core->file_id) {
            u->slots[i].last_use = u->use_clock;
            return i;
        }
        if (u->slots[i].last_use < u->slots[victim].last_use)
            victim = i;
    }
    /* Take the least recently used slot (a free one has last_use 0). */
    int fd = req->core->fd;
    if (io_uring_register_files_update(&u->ring, (unsigned)victim, &fd, 1) < 0)
        return -1;
    u->slots[victim].file_id = req->core->file_id;
    u->slots[victim].last_use = u->use_clock;
    return victim;
}

/* ---- Requests ------------------------------------------------------------- */

static bool prep(struct vdisk_queue *q, struct uring *u, struct vdisk_req *req)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return false;
    int slot = file_slot(u, req);
    int fd = slot >= 0 ? slot : req->core->fd;
    uint64_t off = req->offset + req->core->done_bytes;
    switch (req->core->eng_op) {
    case ENG_READ:
    case ENG_WRITE: {
        bool rd = req->core->eng_op == ENG_READ;
        int buf = -1;
        if (req->iovcnt == 1 && u->nbufs)
            buf = find_buffer(u, req->iov[0].iov_base, req->iov[0].iov_len);
        if (buf >= 0 && rd)
            io_uring_prep_read_fixed(sqe, fd, req->iov[0].iov_base,
                                     (unsigned)req->iov[0].iov_len, off, buf);
        else if (buf >= 0)
            io_uring_prep_write_fixed(sqe, fd, req->iov[0].iov_base,
                                      (unsigned)req->iov[0].iov_len, off, buf);
        else if (req->iovcnt == 1 && rd)
            io_uring_prep_read(sqe, fd, req->iov[0].iov_base, (unsigned)req->iov[0].iov_len,
                               off);
        else if (req->iovcnt == 1)
            io_uring_prep_write(sqe, fd, req->iov[0].iov_base, (unsigned)req->iov[0].iov_len,
                                off);
        else if (rd)
            io_uring_prep_readv(sqe, fd, req->iov, (unsigned)req->iovcnt, off);
        else
            io_uring_prep_writev(sqe, fd, req->iov, (unsigned)req->iovcnt, off);
        if (!rd && (req->flags & VDISK_REQ_FUA))
            sqe->rw_flags = RWF_DSYNC;
        break;
    }
    case ENG_FSYNC:
        io_uring_prep_fsync(sqe, fd, req->core->eng_mode ? IORING_FSYNC_DATASYNC : 0);
        break;
    case ENG_FALLOCATE:
        io_uring_prep_fallocate(sqe, fd, req->core->eng_mode, req->offset, req->length);
        break;
    default:
        break;
    }
    if (slot >= 0)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, req);
    u->in_kernel++;
    (void)q;
    return true;
}

static bool fits_ring(struct vdisk_queue *q, struct uring *u)
{
    return u->in_kernel < q->depth && u->in_kernel < u->sq_entries;
}

static void uring_start(struct vdisk_queue *q, struct vdisk_req *req)
{
    struct uring *u = q->eng_priv;
    if (req->core->eng_op == ENG_CALL || (req->core->eng_op == ENG_FALLOCATE && !u->has_fallocate)) {
        engine_defer(q, req, engine_do_sync(req));
        return;
    }
    if (!u->backlog_head && fits_ring(q, u) && prep(q, u, req))
        return;
    req_list_append(&u->backlog_head, &u->backlog_tail, req);
}

static void refill(struct vdisk_queue *q, struct uring *u)
{
    while (u->backlog_head && fits_ring(q, u)) {
        struct vdisk_req *req = u->backlog_head;
        if (!prep(q, u, req))
            break;
        u->backlog_head = req->next;
        if (!u->backlog_head)
            u->backlog_tail = NULL;
    }
}

static int uring_submit(struct vdisk_queue *q)
{
    struct uring *u = q->eng_priv;
    refill(q, u);
    int r = submit_ring(u);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
        return err_set(r, "io_uring submission failed: %s", strerror(-r));
    return r < 0 ? 0 : r;
}

static int drain_cqes(struct vdisk_queue *q, struct uring *u)
{
    int total = 0;
    for (;;) {
        struct io_uring_cqe *cqes[CQE_BATCH];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, CQE_BATCH);
        if (n == 0)
            return total;
        uint64_t data[CQE_BATCH];
        int res[CQE_BATCH];
        for (unsigned i = 0; i < n; i++) {
            data[i] = cqes[i]->user_data;
            res[i] = cqes[i]->res;
        }
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++) {
            if (data[i] == WAKE_TAG) {
                uint64_t v;
                ssize_t rr = read(q->wake_fd, &v, sizeof v);
                (void)rr;
                u->wake_armed = false;
                arm_wake(q, u);
                continue;
            }
            u->in_kernel--;
            engine_complete((struct vdisk_req *)(uintptr_t)data[i], res[i]);
            total++;
        }
        refill(q, u);
        /* What the callbacks started goes to the kernel at once, so the
         * device does not drain between batches. */
        if (io_uring_sq_ready(&u->ring))
            submit_ring(u);
    }
}

static int uring_poll(struct vdisk_queue *q, int timeout_ms)
{
    struct uring *u = q->eng_priv;
    refill(q, u);
    if (timeout_ms != 0 && io_uring_cq_ready(&u->ring) == 0) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        count_submit(u);
        int r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1,
                                                 timeout_ms > 0 ? &ts : NULL, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            return err_set(r, "io_uring wait failed: %s", strerror(-r));
    }
    int n = drain_cqes(q, u);
    /* Requests moved from the backlog into the ring go to the kernel now,
     * or an event loop would wait for them forever. */
    if (io_uring_sq_ready(&u->ring))
        submit_ring(u);
    return n;
}

const struct engine_ops engine_uring_ops = {
    .name = "io_uring",
    .init = uring_init,
    .fini = uring_fini,
    .start = uring_start,
    .submit = uring_submit,
    .poll = uring_poll,
    .get_fd = uring_get_fd,
    .register_buffers = uring_register_buffers,
};
