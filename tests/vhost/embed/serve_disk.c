/* SPDX-License-Identifier: MIT */
/*
 * tests/vhost/embed/serve_disk.c: a program outside the tree that serves a
 * raw disk image to a vhost-user front end with <vdisk/vhost_user.h> alone,
 * built by the vhost-embed test against the installed headers and library.
 *   serve_disk IMAGE SOCKET loop|thread   (IMAGE: raw)
 * loop: the program's own poll loop over vdisk_vhost_get_fd(); thread: the
 * library's helper thread.  SIGTERM or SIGINT: the handle is freed, the
 * image flushed, exit status 0.
 */
#define _GNU_SOURCE /* signalfd */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <vdisk/vhost_user.h>

static int fail(const char *what)
{
    fprintf(stderr, "serve_disk: %s: %s\n", what, vdisk_get_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "loop") != 0 && strcmp(argv[3], "thread") != 0)) {
        fprintf(stderr, "usage: serve_disk IMAGE SOCKET loop|thread\n");
        return 2;
    }
    /* Blocked before the helper thread starts, so that it inherits it. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    vdisk_dev *dev;
    vdisk_virtio *v;
    vdisk_vhost *h;
    vdisk_options *o;
    if (vdisk_options_new(&o) < 0 || vdisk_options_set(o, "format", "raw") < 0 ||
        vdisk_open(&dev, argv[1], o) < 0)
        return fail("open");
    vdisk_options_free(o);
    struct vdisk_virtio_blk_params bp = {.struct_size = sizeof bp};
    if (vdisk_virtio_blk_new(&v, dev, &bp) < 0)
        return fail("virtio-blk");
    if (vdisk_vhost_sigbus_install() < 0)
        return fail("sigbus");
    if (vdisk_vhost_listen(&h, v, argv[2], NULL) < 0)
        return fail("listen");

    if (strcmp(argv[3], "thread") == 0) {
        if (vdisk_vhost_start(h) < 0)
            return fail("start");
        int sig;
        sigwait(&mask, &sig);
        if (vdisk_vhost_stop(h) < 0)
            return fail("stop");
    } else {
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        struct pollfd p[2] = {{.fd = vdisk_vhost_get_fd(h), .events = POLLIN},
                              {.fd = sfd, .events = POLLIN}};
        while (sfd >= 0 && !p[1].revents) {
            if (poll(p, 2, -1) < 0)
                continue;
            if (p[0].revents && vdisk_vhost_process(h) < 0)
                return fail("process");
        }
        if (sfd >= 0)
            close(sfd);
    }
    printf("%llu connection(s)\n", (unsigned long long)vdisk_vhost_connections(h));
    vdisk_vhost_free(h);
    int r = vdisk_flush(dev);
    vdisk_virtio_free(v);
    vdisk_close(dev);
    return r < 0 ? fail("flush") : 0;
}
