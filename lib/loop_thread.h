/* SPDX-License-Identifier: MIT */
/*
 * lib/loop_thread.h: the helper thread of a handle that is driven through
 * an epoll set (vdisk/nbd.h, vdisk/vhost_user.h): the caller's loop calls
 * the handle's process call while no thread runs; between start and stop
 * a thread of the library polls the set and calls it, until an eventfd
 * says stop (or the process call fails: logged, and the thread ends).
 */
#ifndef VDISK_LOOP_THREAD_H
#define VDISK_LOOP_THREAD_H

#include <pthread.h>
#include <stdbool.h>

struct loop_thread {
    int epfd;                        /* the handle's epoll set (not owned) */
    int (*process)(void *opaque);    /* one round: events done, or -errno */
    void (*failed)(void *opaque);    /* the thread stops on a failed round:
                                      * log vdisk_get_error() */
    void *opaque;
    int stop_fd;                     /* an eventfd, made at the first start */
    bool running;
    pthread_t thread;
};

/* Sets T up for the handle OPAQUE (no thread, nothing allocated). */
void loop_thread_init(struct loop_thread *t, int epfd, int (*process)(void *opaque),
                      void (*failed)(void *opaque), void *opaque);

/* The public process call: -EBUSY (with a message) while the thread
 * serves the handle, else PROCESS's result. */
int loop_thread_process(struct loop_thread *t);

/* Starts the thread: 0, -EBUSY (already running) or -errno, with a
 * message. */
int loop_thread_start(struct loop_thread *t);

/* Stops the thread and waits for it: 0, or -EINVAL when none runs. */
int loop_thread_stop(struct loop_thread *t);

/* Stops the thread if it runs and frees what T holds. */
void loop_thread_fini(struct loop_thread *t);

#endif /* VDISK_LOOP_THREAD_H */
