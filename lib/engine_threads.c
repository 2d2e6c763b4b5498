/* SPDX-License-Identifier: MIT */
/*
 * lib/engine_threads.c: the worker-thread engine, for kernels or sandboxes
 * where io_uring is missing or blocked.
 *
 * Each queue has a pool of worker threads (started as the load needs them,
 * up to the "threads" option) that run preadv2 / pwritev2 / fdatasync /
 * fallocate and post the result back to the queue, whose wake eventfd is
 * the fd the user polls.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vdisk_req *head, *tail;
    unsigned nthreads, idle, max;
    bool stop;
    pthread_t *tids;
    struct vdisk_queue *q;
};

static void *worker(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->cond, &p->lock);
            p->idle--;
        }
        if (!p->head)
            break; /* stopping, nothing left */
        struct vdisk_req *req = p->head;
        p->head = req->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        long res = engine_do_sync(req);
        engine_post(p->q, req, res);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int threads_init(struct vdisk_queue *q)
{
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return err_set(-ENOMEM, "out of memory");
    p->max = q->threads;
    p->tids = calloc(p->max, sizeof *p->tids);
    if (!p->tids) {
        free(p);
        return err_set(-ENOMEM, "out of memory");
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->q = q;
    q->eng_priv = p;
    return 0;
}

static void threads_fini(struct vdisk_queue *q)
{
    struct pool *p = q->eng_priv;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->tids);
    free(p);
}

static void threads_start(struct vdisk_queue *q, struct vdisk_req *req)
{
    struct pool *p = q->eng_priv;
    pthread_mutex_lock(&p->lock);
    req_list_append(&p->head, &p->tail, req);
    if (p->idle == 0 && p->nthreads < p->max) {
        if (lib_thread_start(&p->tids[p->nthreads], worker, p) == 0)
            p->nthreads++;
    }
    bool none = p->nthreads == 0;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (none) {
        /* Not even one worker could be started: do it here. */
        pthread_mutex_lock(&p->lock);
        p->head = p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        engine_defer(q, req, engine_do_sync(req));
    }
}

static int threads_submit(struct vdisk_queue *q)
{
    (void)q;
    return 0;
}

static int threads_poll(struct vdisk_queue *q, int timeout_ms)
{
    if (timeout_ms == 0)
        return 0;
    struct pollfd pfd = {.fd = q->wake_fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno != EINTR)
        return err_set(-errno, "poll: %s", strerror(errno));
    if (r > 0) {
        uint64_t v;
        ssize_t rr = read(q->wake_fd, &v, sizeof v);
        (void)rr;
    }
    return 0;
}

static int threads_get_fd(struct vdisk_queue *q)
{
    return q->wake_fd;
}

const struct engine_ops engine_threads_ops = {
    .name = "threads",
    .init = threads_init,
    .fini = threads_fini,
    .start = threads_start,
    .submit = threads_submit,
    .poll = threads_poll,
    .get_fd = threads_get_fd,
};
