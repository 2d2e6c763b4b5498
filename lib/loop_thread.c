/* SPDX-License-Identifier: MIT */
/*
 * lib/loop_thread.c: the helper thread of an epoll-driven handle (see
 * loop_thread.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "error_internal.h"
#include "loop_thread.h"

void loop_thread_init(struct loop_thread *t, int epfd, int (*process)(void *opaque),
                      void (*failed)(void *opaque), void *opaque)
{
    memset(t, 0, sizeof *t);
    t->epfd = epfd;
    t->process = process;
    t->failed = failed;
    t->opaque = opaque;
    t->stop_fd = -1;
}

int loop_thread_process(struct loop_thread *t)
{
    if (t->running)
        return err_set(-EBUSY, "the helper thread serves the handle");
    return t->process(t->opaque);
}

static void *thread_main(void *arg)
{
    struct loop_thread *t = arg;
    struct pollfd p[2] = {{.fd = t->epfd, .events = POLLIN}, {.fd = t->stop_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || p[1].revents)
            break;
        if (p[0].revents && t->process(t->opaque) < 0) {
            t->failed(t->opaque);
            break;
        }
    }
    return NULL;
}

int loop_thread_start(struct loop_thread *t)
{
    if (t->running)
        return err_set(-EBUSY, "the helper thread runs already");
    if (t->stop_fd < 0 && (t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return err_set(-errno, "eventfd: %s", strerror(errno));
    uint64_t v;
    while (read(t->stop_fd, &v, sizeof v) > 0)
        ; /* a stop left from the last run */
    int r = pthread_create(&t->thread, NULL, thread_main, t);
    if (r)
        return err_set(-r, "pthread_create: %s", strerror(r));
    t->running = true;
    return 0;
}

int loop_thread_stop(struct loop_thread *t)
{
    if (!t->running)
        return err_set(-EINVAL, "no helper thread runs");
    uint64_t one = 1;
    if (write(t->stop_fd, &one, sizeof one) < 0) {
        /* at its largest count: signalled already */
    }
    pthread_join(t->thread, NULL);
    t->running = false;
    return 0;
}

void loop_thread_fini(struct loop_thread *t)
{
    if (t->running)
        loop_thread_stop(t);
    if (t->stop_fd >= 0)
        close(t->stop_fd);
    t->stop_fd = -1;
}
