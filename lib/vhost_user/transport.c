/* SPDX-License-Identifier: MIT */
/*
 * lib/vhost_user/transport.c: the vhost-user back end's socket and loop
 * (see vhost_user_internal.h): the listening socket, one front end's
 * connection, messages put together from a non-blocking stream (read_msg)
 * and handed to handler.c, replies sent without waiting (send_reply), the
 * handle's epoll set (vdisk_vhost_get_fd), the deadline of a message begun
 * (a timerfd in that set), the helper thread; the public calls of
 * vdisk/vhost_user.h.
 *
 * A message that cannot be read (larger than any request, of another
 * protocol version, cut short, with too many fds, not whole within
 * VU_MSG_DEADLINE_MS of its first byte) closes the connection, and the
 * next front end is accepted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <vdisk/error.h>
#include <vdisk/vhost_user.h>

#include "abi.h"
#include "endian.h"
#include "error_internal.h"
#include "vhost_user_internal.h"

#define EV(kind) ((uint64_t)(kind) << 32)

/* ---- Messages ------------------------------------------------------------------ */

/*
 * Sends a reply.  The socket is non-blocking and never waited on: a front
 * end whose socket buffer is full has not read hundreds of replies, and
 * loses its connection rather than stalling the loop.  Returns 0 or -EPIPE (the connection must close).
 */
static int send_reply(struct vdisk_vhost *s, const struct vu_reply *rep)
{
    uint8_t buf[VU_HDR_SIZE + VU_MAX_REPLY];
    uint32_t request = rep->request, len = rep->size;
    if (len > sizeof buf - VU_HDR_SIZE)
        return -EINVAL;
    le32_store(buf, request);
    le32_store(buf + 4, VU_VERSION | VU_FLAG_REPLY);
    le32_store(buf + 8, len);
    if (len)
        memcpy(buf + VU_HDR_SIZE, rep->payload, len);
    size_t total = VU_HDR_SIZE + len, done = 0;
    while (done < total) {
        ssize_t w = send(s->conn_fd, buf + done, total - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            vu_log(s, "reply to %s: the front end does not read its replies (socket full)",
                 vu_req_name(request));
            return -EPIPE;
        }
        if (w <= 0) {
            vu_log(s, "reply to %s: %s", vu_req_name(request), w < 0 ? strerror(errno) : "short write");
            return -EPIPE;
        }
        done += (size_t)w;
    }
    return 0;
}


/* Arms the deadline timer for the message begun, or disarms it. */
static void deadline_timer(struct vdisk_vhost *s, bool on)
{
    if (on == s->timer_armed)
        return;
    struct itimerspec t = {{0, 0}, {0, 0}};
    if (on) {
        t.it_value.tv_sec = (time_t)(s->rx_deadline / 1000u);
        t.it_value.tv_nsec = (long)(s->rx_deadline % 1000u) * 1000000L;
    }
    if (timerfd_settime(s->timer_fd, on ? TFD_TIMER_ABSTIME : 0, &t, NULL) == 0)
        s->timer_armed = on;
}

/* Forgets the message being read, closing the fds that came with it. */
static void rx_reset(struct vdisk_vhost *s)
{
    for (unsigned i = 0; i < s->rx.nfds; i++)
        vu_close_fd(&s->rx.fds[i]);
    s->rx.nfds = 0;
    s->rx_got = 0;
    s->rx_deadline = 0;
    deadline_timer(s, false);
}

/*
 * Reads what has come of the current message, without waiting: the socket
 * is non-blocking, and a message arrives in as many pieces as the front end
 * likes, its file descriptors with any of them (QEMU sends them with the
 * first byte).  Never reads past the message's end, so that the next
 * message's fds stay with it.  Returns 1 when s->rx holds a whole message,
 * 0 when more must come (s->rx_deadline set), -1 at the end of the
 * connection or when the stream cannot be trusted any more (logged).
 */
static int read_msg(struct vdisk_vhost *s)
{
    struct vu_msg *m = &s->rx;
    for (;;) {
        uint8_t *dst;
        size_t want;
        if (s->rx_got < VU_HDR_SIZE) {
            dst = s->rx_hdr + s->rx_got;
            want = VU_HDR_SIZE - s->rx_got;
        } else {
            dst = m->payload + (s->rx_got - VU_HDR_SIZE);
            want = VU_HDR_SIZE + m->size - s->rx_got;
        }
        if (want == 0)
            return 1;
        union {
            char buf[CMSG_SPACE(VU_MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = dst, .iov_len = want};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(s->conn_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        bool too_many = mh.msg_flags & MSG_CTRUNC;
        if (n > 0) {
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    if (m->nfds < VU_MAX_FDS) {
                        m->fds[m->nfds++] = fd;
                    } else {
                        close(fd);
                        too_many = true;
                    }
                }
            }
        }
        if (n < 0) {
            if (errno != ECONNRESET)
                vu_log(s, "reading a message: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            if (s->rx_got)
                vu_log(s, "a message was cut short (%zu bytes of %s)", s->rx_got,
                     s->rx_got < VU_HDR_SIZE ? "its header" : vu_req_name(m->request));
            return -1;
        }
        if (too_many) {
            vu_log(s, "a message came with more than %u file descriptors", VU_MAX_FDS);
            return -1;
        }
        if (s->rx_got == 0)
            s->rx_deadline = vu_now_ms() + VU_MSG_DEADLINE_MS;
        bool had_hdr = s->rx_got >= VU_HDR_SIZE;
        s->rx_got += (size_t)n;
        if (!had_hdr && s->rx_got == VU_HDR_SIZE) {
            m->request = le32_load(s->rx_hdr);
            m->flags = le32_load(s->rx_hdr + 4);
            m->size = le32_load(s->rx_hdr + 8);
            if ((m->flags & VU_FLAG_VERSION_MASK) != VU_VERSION) {
                vu_log(s, "%s: protocol version %" PRIu32 " (expected 1)", vu_req_name(m->request),
                     m->flags & VU_FLAG_VERSION_MASK);
                return -1;
            }
            if (m->size > VU_MAX_PAYLOAD) {
                vu_log(s, "%s: payload of %" PRIu32 " bytes (at most %u)", vu_req_name(m->request),
                     m->size, VU_MAX_PAYLOAD);
                return -1;
            }
        }
    }
}

/* ---- Connections ------------------------------------------------------------------ */

static void listen_watch(struct vdisk_vhost *s, bool on)
{
    if (s->listen_fd < 0 || on == s->listen_watched)
        return;
    if (on) {
        struct epoll_event e = {.events = EPOLLIN, .data.u64 = EV(VU_EV_LISTEN)};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0) {
            vu_log(s, "epoll: the listening socket: %s", strerror(errno));
            return;
        }
    } else {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    }
    s->listen_watched = on;
}

/* The front end went away (or must): requests in flight finish, everything
 * it gave is forgotten, and the next front end is accepted. */
void vu_disconnect(struct vdisk_vhost *s)
{
    if (s->conn_fd < 0)
        return;
    vu_forget_front_end(s);
    rx_reset(s);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->conn_fd, NULL);
    vu_close_fd(&s->conn_fd);
    vu_info(s, "front end disconnected");
    listen_watch(s, true);
}

/* Takes FD (connected, non-blocking) as the front end.  Returns 0 or -errno
 * (FD left open). */
static int take_connection(struct vdisk_vhost *s, int fd)
{
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = EV(VU_EV_CONN)};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        return -errno;
    s->conn_fd = fd;
    rx_reset(s);
    listen_watch(s, false);
    s->connections++;
    vu_info(s, "front end connected");
    return 0;
}

static void on_accept(struct vdisk_vhost *s)
{
    /* Non-blocking: a front end that stops in the middle of a message, or
     * does not read its replies, must not hang the loop (read_msg,
     * send_reply). */
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            vu_log(s, "accept: %s", strerror(errno));
        return;
    }
    int r = take_connection(s, fd);
    if (r < 0) {
        vu_log(s, "epoll: %s", strerror(-r));
        close(fd);
    }
}

/* The connection is readable: the messages that are whole are handled, a
 * batch at a time (the loop comes back while more wait), and a message
 * begun is kept for later (read_msg), its deadline timed. */
static void on_message(struct vdisk_vhost *s)
{
    for (unsigned k = 0; k < VU_MSG_BATCH && s->conn_fd >= 0; k++) {
        int r = read_msg(s);
        if (r == 0) {
            if (s->rx_got)
                deadline_timer(s, true);
            return;
        }
        if (r < 0) {
            vu_disconnect(s);
            return;
        }
        r = vu_handle(s, &s->rx, &s->tx);
        rx_reset(s);
        if (r == VU_CLOSE) {
            vu_log(s, "closing the connection");
            vu_disconnect(s);
            return;
        }
        if (s->tx.send && send_reply(s, &s->tx) < 0) {
            vu_disconnect(s);
            return;
        }
    }
}

/* The deadline timer fired: the message begun is late, or was done since. */
static void on_timer(struct vdisk_vhost *s)
{
    uint64_t n;
    if (read(s->timer_fd, &n, sizeof n) < 0) {
        /* not expired after all (re-armed or disarmed meanwhile) */
    }
    s->timer_armed = false;
    if (s->conn_fd < 0 || !s->rx_got || !s->rx_deadline)
        return;
    if (vu_now_ms() < s->rx_deadline) {
        deadline_timer(s, true);
        return;
    }
    vu_log(s, "a message did not come whole within %u s (%zu bytes so far); closing the "
           "connection", VU_MSG_DEADLINE_MS / 1000u, s->rx_got);
    vu_disconnect(s);
}

/* ---- The handle ------------------------------------------------------------------- */

static int get_params(struct vdisk_vhost_params *p, const struct vdisk_vhost_params *caller)
{
    memset(p, 0, sizeof *p);
    if (!caller)
        return 0;
    int r = ABI_IN(vdisk_vhost_params, p, caller, VDISK_VHOST_PARAMS_SIZE_V1);
    if (r < 0)
        return r;
    if (p->flags & ~(unsigned)(VDISK_VHOST_QUIET | VDISK_VHOST_NO_CONFIG |
                               VDISK_VHOST_SOCKET_GROUP))
        return err_set(-EINVAL, "unknown flags 0x%x", p->flags);
    return 0;
}

/* A handle for MODEL with P, its epoll set ready, no listener yet. */
static int process_cb(void *opaque);
static void failed_cb(void *opaque);

static int make_handle(struct vdisk_vhost **out, vdisk_virtio *model,
                       const struct vdisk_vhost_params *p, const char *name)
{
    *out = NULL;
    if (!model)
        return err_set(-EINVAL, "no virtio model given (NULL)");
    struct vdisk_vhost *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    s->listen_fd = s->conn_fd = s->epfd = s->timer_fd = -1;
    loop_thread_init(&s->loop, -1, process_cb, failed_cb, s);
    s->v = model;
    s->flags = p->flags;
    s->log = p->log;
    s->log_opaque = p->log_opaque;
    int r;
    if (!(s->name = strdup(name))) {
        r = err_set(-ENOMEM, "out of memory");
        goto fail;
    }
    s->epfd = s->loop.epfd = epoll_create1(EPOLL_CLOEXEC);
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (s->epfd < 0 || s->timer_fd < 0) {
        r = err_set(-errno, "%s: %s", s->epfd < 0 ? "epoll" : "timerfd", strerror(errno));
        goto fail;
    }
    if ((r = vu_attach(s)) < 0)
        goto fail;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = EV(VU_EV_DONE)};
    struct epoll_event t = {.events = EPOLLIN, .data.u64 = EV(VU_EV_TIMER)};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, vdisk_virtio_get_fd(model), &e) < 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timer_fd, &t) < 0) {
        r = err_set(-errno, "epoll: %s", strerror(errno));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    vdisk_vhost_free(s);
    return r;
}

VDISK_EXPORT int vdisk_vhost_listen(vdisk_vhost **out, vdisk_virtio *model, const char *path,
                       const struct vdisk_vhost_params *params)
{
    err_enter(__func__);
    struct vdisk_vhost_params p;
    int r;
    if (!out)
        return err_set(-EINVAL, "no handle pointer given (NULL)");
    *out = NULL;
    if ((r = get_params(&p, params)) < 0)
        return r;
    if (!path)
        return err_set(-EINVAL, "no socket path given (NULL)");
    struct vdisk_vhost *s;
    if ((r = make_handle(&s, model, &p, path)) < 0)
        return r;
    bool group = p.flags & VDISK_VHOST_SOCKET_GROUP;
    r = unix_listen(path, group ? 0660 : 0600, group ? (gid_t)p.socket_gid : (gid_t)-1, &s->sock);
    if (r < 0 || !(s->path = strdup(path))) {
        if (r >= 0) {
            close(r);
            unix_unlink(path, &s->sock);
            r = err_set(-ENOMEM, "out of memory");
        }
        s->sock.created = false;
        vdisk_vhost_free(s);
        return r;
    }
    s->listen_fd = r;
    s->own_listen = true;
    listen_watch(s, true);
    *out = s;
    return 0;
}

VDISK_EXPORT int vdisk_vhost_new(vdisk_vhost **out, vdisk_virtio *model, int listen_fd,
                    const struct vdisk_vhost_params *params)
{
    err_enter(__func__);
    struct vdisk_vhost_params p;
    int r;
    if (!out)
        return err_set(-EINVAL, "no handle pointer given (NULL)");
    *out = NULL;
    if ((r = get_params(&p, params)) < 0)
        return r;
    if (listen_fd < -1)
        return err_set(-EBADF, "listening fd %d", listen_fd);
    if (listen_fd >= 0) {
        int fl = fcntl(listen_fd, F_GETFL);
        if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0))
            return err_set(-errno, "listening fd %d: %s", listen_fd, strerror(errno));
    }
    struct vdisk_vhost *s;
    char name[32];
    if (listen_fd >= 0)
        snprintf(name, sizeof name, "fd %d", listen_fd);
    else
        snprintf(name, sizeof name, "vhost-user");
    if ((r = make_handle(&s, model, &p, name)) < 0)
        return r;
    s->listen_fd = listen_fd;
    listen_watch(s, true);
    if (listen_fd >= 0 && !s->listen_watched) {
        r = err_set(-EINVAL, "listening fd %d cannot be polled", listen_fd);
        vdisk_vhost_free(s);
        return r;
    }
    *out = s;
    return 0;
}

VDISK_EXPORT int vdisk_vhost_add_connection(vdisk_vhost *s, int fd)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no handle given (NULL)");
    if (s->conn_fd >= 0)
        return err_set(-EBUSY, "a front end is connected");
    int type;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return err_set(-EINVAL, "fd %d is not a stream socket", fd);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return err_set(-errno, "fd %d: %s", fd, strerror(errno));
    int r = take_connection(s, fd);
    if (r < 0)
        return err_set(r, "epoll: %s", strerror(-r));
    return 0;
}

VDISK_EXPORT int vdisk_vhost_get_fd(const vdisk_vhost *s)
{
    return s ? s->epfd : -1;
}

VDISK_EXPORT int vdisk_vhost_connected(const vdisk_vhost *s)
{
    return s && s->conn_fd >= 0;
}

VDISK_EXPORT uint64_t vdisk_vhost_connections(const vdisk_vhost *s)
{
    return s ? s->connections : 0;
}

VDISK_EXPORT void vdisk_vhost_disconnect(vdisk_vhost *s)
{
    if (s)
        vu_disconnect(s);
}

/* One round: the events ready now.  Returns their number or -errno. */
static int process(struct vdisk_vhost *s)
{
    struct epoll_event ev[32];
    int n;
    do
        n = epoll_wait(s->epfd, ev, 32, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return err_set(-errno, "epoll_wait: %s", strerror(errno));
    for (int k = 0; k < n; k++) {
        unsigned kind = (unsigned)(ev[k].data.u64 >> 32), i = (unsigned)ev[k].data.u64;
        switch (kind) {
        case VU_EV_LISTEN:
            if (s->conn_fd < 0)
                on_accept(s);
            break;
        case VU_EV_CONN:
            if (s->conn_fd >= 0)
                on_message(s);
            break;
        case VU_EV_KICK:
            if (i < s->nq && s->q[i].kick_fd >= 0)
                vu_on_kick(s, i);
            break;
        case VU_EV_DONE:
            if (vdisk_virtio_poll(s->v) < 0)
                vu_log(s, "completions: %s", vdisk_get_error());
            break;
        case VU_EV_TIMER:
            on_timer(s);
            break;
        }
    }
    int ri = vu_mem_vanished(s);
    if (ri >= 0 && s->conn_fd >= 0) {
        vu_log(s, "guest memory region %d vanished under its mapping (the file was shrunk: "
               "SIGBUS caught); closing the connection", ri);
        vu_disconnect(s);
    }
    return n;
}

static int process_cb(void *opaque)
{
    return process(opaque);
}

static void failed_cb(void *opaque)
{
    vu_log(opaque, "%s; the helper thread stops", vdisk_get_error());
}

VDISK_EXPORT int vdisk_vhost_process(vdisk_vhost *s)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no handle given (NULL)");
    return loop_thread_process(&s->loop);
}

VDISK_EXPORT int vdisk_vhost_start(vdisk_vhost *s)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no handle given (NULL)");
    return loop_thread_start(&s->loop);
}

VDISK_EXPORT int vdisk_vhost_stop(vdisk_vhost *s)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no helper thread runs");
    return loop_thread_stop(&s->loop);
}

VDISK_EXPORT void vdisk_vhost_free(vdisk_vhost *s)
{
    if (!s)
        return;
    loop_thread_fini(&s->loop); /* stops the helper thread */
    if (s->q) {
        listen_watch(s, false);
        vu_disconnect(s);
        vdisk_virtio_drain(s->v);
        vu_log_flush(s);
        /* The model is the caller's again: no callbacks into freed memory. */
        struct vdisk_virtio_host none = {.struct_size = sizeof none};
        vdisk_virtio_set_host(s->v, &none);
    }
    if (s->own_listen)
        vu_close_fd(&s->listen_fd);
    unix_unlink(s->path, &s->sock);
    vu_close_fd(&s->epfd);
    vu_close_fd(&s->timer_fd);
    free(s->q);
    free(s->path);
    free(s->name);
    free(s);
}
