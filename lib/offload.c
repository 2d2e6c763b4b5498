/* SPDX-License-Identifier: MIT */
/*
 * lib/offload.c: a worker thread that runs the blocking part of a request
 * (a format's metadata write-back and fdatasync, a discard's table walk)
 * away from the queue's thread, then hands the request back to that thread.
 *
 * One worker per user (a format driver's open image), started on first use
 * and joined when the user stops it; jobs run in the order they came.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

struct offload {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool started, stop;
    struct vdisk_req *head, *tail;  /* jobs, linked through req->next */
};

struct offload *offload_new(void)
{
    struct offload *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    return o;
}

/* The job's functions travel in the request's offload fields. */
static void run_job(struct vdisk_req *req)
{
    int r = req->core->offload_work(req);
    /* Back to the request's own queue: THEN runs there with the result in
     * req->result (queue_post sets it), or the request completes. */
    req->resume = req->core->offload_then;
    queue_post(req->q, req, r);
}

static void *worker(void *arg)
{
    struct offload *o = arg;
    pthread_mutex_lock(&o->lock);
    for (;;) {
        while (!o->head && !o->stop)
            pthread_cond_wait(&o->cond, &o->lock);
        struct vdisk_req *req = o->head;
        if (!req)
            break; /* stopping, nothing left */
        o->head = req->next;
        if (!o->head)
            o->tail = NULL;
        pthread_mutex_unlock(&o->lock);
        run_job(req);
        pthread_mutex_lock(&o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int lib_thread_start(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    int e = pthread_attr_init(&attr);
    if (e)
        return e;
    pthread_attr_setstacksize(&attr, 1u << 20);
    e = pthread_create(tid, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return e;
}

void offload_req(struct offload *o, struct vdisk_req *req, int (*work)(struct vdisk_req *),
                 void (*then)(struct vdisk_req *))
{
    req->core->offload_work = work;
    req->core->offload_then = then;
    if (!o) {
        run_job(req);
        return;
    }
    pthread_mutex_lock(&o->lock);
    if (!o->started && !o->stop) {
        if (lib_thread_start(&o->thread, worker, o) == 0)
            o->started = true;
    }
    if (!o->started) {
        /* No thread to be had: the work runs here, as before. */
        pthread_mutex_unlock(&o->lock);
        run_job(req);
        return;
    }
    req_list_append(&o->head, &o->tail, req);
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

void offload_free(struct offload *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->stop = true;
    pthread_cond_signal(&o->cond);
    bool started = o->started;
    pthread_mutex_unlock(&o->lock);
    if (started)
        pthread_join(o->thread, NULL);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

void offload_read_only(struct offload *o, struct vdisk_req *req, int (*read)(struct vdisk_req *),
                       const char *format)
{
    switch (req->op) {
    case VDISK_OP_READ:
        offload_req(o, req, read, NULL);
        return;
    case VDISK_OP_FLUSH:
        req_complete(req, 0); /* nothing is written */
        return;
    default:
        req_fail(req, -EROFS, "%s images are read-only in vdisk", format);
        return;
    }
}
