/* SPDX-License-Identifier: MIT */
/*
 * tests/vhost/api.c: the calls of vdisk/vhost_user.h and vdisk/monitor.h
 * themselves: their errors (negative errno and the exact message),
 * struct_size, a front end added over a socketpair, the helper thread's
 * start and stop, and the monitor's grammar without a socket.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static vdisk_dev *dev;
static vdisk_virtio *model;

static void setup(void)
{
    const char *img = scratch("api.raw");
    static uint8_t zero[65536];
    write_file(img, zero, sizeof zero);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    struct vdisk_virtio_blk_params p = {.struct_size = sizeof p};
    ck_assert_msg(vdisk_virtio_blk_new(&model, dev, &p) == 0, "%s", vdisk_get_error());
}

static void teardown(void)
{
    vdisk_virtio_free(model);
    vdisk_close(dev);
}

/* read(), again after a signal interrupted it (the helper thread's start
 * and stop may deliver one to this thread). */
static ssize_t read_again(int fd, void *buf, size_t len)
{
    ssize_t n;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static void quiet(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
}

START_TEST(errors)
{
    vdisk_vhost *h = (vdisk_vhost *)1;
    ck_assert_int_eq(vdisk_vhost_new(&h, NULL, -1, NULL), -EINVAL);
    ck_assert_ptr_null(h);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_vhost_new: no virtio model given (NULL)");
    struct vdisk_vhost_params p = {.struct_size = 4};
    ck_assert_int_eq(vdisk_vhost_new(&h, model, -1, &p), -EINVAL);
    ck_assert_msg(strstr(vdisk_get_error(), "struct vdisk_vhost_params: struct_size is 4 bytes"),
                  "%s", vdisk_get_error());
    p = (struct vdisk_vhost_params){.struct_size = sizeof p, .flags = 1u << 20};
    ck_assert_int_eq(vdisk_vhost_new(&h, model, -1, &p), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_vhost_new: unknown flags 0x100000");

    const char *file = scratch("not-a-socket");
    write_file(file, "x", 1);
    ck_assert_int_eq(vdisk_vhost_listen(&h, model, file, NULL), -EEXIST);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_vhost_listen: '%s' exists and is not a socket", file));
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    ck_assert_int_eq(vdisk_vhost_listen(&h, model, longpath, NULL), -ENAMETOOLONG);

    /* One live server per socket path. */
    const char *sock = scratch("api.sock");
    vdisk_vhost *a;
    ck_assert_msg(vdisk_vhost_listen(&a, model, sock, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_vhost_listen(&h, model, sock, NULL), -EADDRINUSE);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_vhost_listen: '%s' is in use by another server", sock));
    vdisk_vhost_free(a);
    ck_assert_int_ne(access(sock, F_OK), 0);
    vdisk_vhost_free(NULL);
}
END_TEST

START_TEST(connection_and_thread)
{
    struct vdisk_vhost_params p = {.struct_size = sizeof p, .flags = VDISK_VHOST_QUIET,
                                   .log = quiet};
    vdisk_vhost *h;
    ck_assert_msg(vdisk_vhost_new(&h, model, -1, &p) == 0, "%s", vdisk_get_error());
    ck_assert_int_ge(vdisk_vhost_get_fd(h), 0);
    ck_assert_int_eq(vdisk_vhost_connected(h), 0);
    ck_assert_int_eq(vdisk_vhost_process(h), 0);
    ck_assert_int_eq(vdisk_vhost_stop(h), -EINVAL);

    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(vdisk_vhost_add_connection(h, sv[1]), 0);
    ck_assert_int_eq(vdisk_vhost_connected(h), 1);
    ck_assert_uint_eq(vdisk_vhost_connections(h), 1);
    int sv2[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
    ck_assert_int_eq(vdisk_vhost_add_connection(h, sv2[1]), -EBUSY);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_vhost_add_connection: a front end is connected");
    close(sv2[0]);
    close(sv2[1]);

    /* GET_FEATURES through the caller's loop. */
    uint32_t get[3] = {1, 1, 0};
    ck_assert_int_eq(write(sv[0], get, sizeof get), (ssize_t)sizeof get);
    struct pollfd pf = {.fd = vdisk_vhost_get_fd(h), .events = POLLIN};
    ck_assert_int_eq(poll(&pf, 1, 10000), 1);
    ck_assert_int_ge(vdisk_vhost_process(h), 1);
    uint8_t reply[20];
    ck_assert_int_eq(read_again(sv[0], reply, sizeof reply), 20);
    uint32_t hdr[3];
    memcpy(hdr, reply, 12);
    ck_assert_uint_eq(hdr[0], 1);
    ck_assert_uint_eq(hdr[1], 1 | 4);
    ck_assert_uint_eq(hdr[2], 8);
    uint64_t feat;
    memcpy(&feat, reply + 12, 8);
    ck_assert_uint_eq(feat, vdisk_virtio_features(model) | (1ull << 30));

    /* The same through the helper thread. */
    ck_assert_int_eq(vdisk_vhost_start(h), 0);
    ck_assert_int_eq(vdisk_vhost_start(h), -EBUSY);
    ck_assert_int_eq(vdisk_vhost_process(h), -EBUSY);
    uint32_t getq[3] = {17, 1, 0}; /* GET_QUEUE_NUM */
    ck_assert_int_eq(write(sv[0], getq, sizeof getq), (ssize_t)sizeof getq);
    struct timeval tv = {10, 0};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(read_again(sv[0], reply, sizeof reply), 20);
    memcpy(hdr, reply, 12);
    ck_assert_uint_eq(hdr[0], 17);
    uint64_t nq;
    memcpy(&nq, reply + 12, 8);
    ck_assert_uint_eq(nq, vdisk_virtio_num_queues(model));
    ck_assert_int_eq(vdisk_vhost_stop(h), 0);

    /* The front end hangs up: dropped at the next round. */
    close(sv[0]);
    ck_assert_int_eq(poll(&pf, 1, 10000), 1);
    ck_assert_int_ge(vdisk_vhost_process(h), 1);
    ck_assert_int_eq(vdisk_vhost_connected(h), 0);
    ck_assert_int_eq(vdisk_vhost_start(h), 0);
    vdisk_vhost_free(h); /* stops the thread */
}
END_TEST

START_TEST(monitor_grammar)
{
    vdisk_monitor *m;
    struct vdisk_monitor_params p = {.struct_size = sizeof p};
    ck_assert_int_eq(vdisk_monitor_new(&m, &p), 0);
    char r[256];
    ck_assert_uint_eq(vdisk_monitor_command(m, " \t\r", r, sizeof r), 0);
    ck_assert_str_eq(r, "");
    vdisk_monitor_command(m, "  help\r", r, sizeof r);
    ck_assert_str_eq(r, "commands: change PATH | eject | info | help\n");
    vdisk_monitor_command(m, "info", r, sizeof r);
    ck_assert_str_eq(r, "error: no CD-ROM is served\n");
    /* Cut short to fit, NUL-ended. */
    ck_assert_uint_eq(vdisk_monitor_command(m, "help", r, 9), 8);
    ck_assert_str_eq(r, "commands");
    vdisk_monitor_free(m);

    const char *file = scratch("root-file");
    write_file(file, "x", 1);
    p.root = file;
    ck_assert_int_eq(vdisk_monitor_new(&m, &p), -ENOTDIR);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_monitor_new: the root '%s': not a folder", file));
    p.root = scratch("no-such-folder");
    ck_assert_int_eq(vdisk_monitor_new(&m, &p), -ENOENT);
    p = (struct vdisk_monitor_params){.struct_size = 8};
    ck_assert_int_eq(vdisk_monitor_new(&m, &p), -EINVAL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vhost-api");
    TCase *tc = tcase_create("api");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, connection_and_thread);
    tcase_add_test(tc, monitor_grammar);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return run_suite(suite());
}
