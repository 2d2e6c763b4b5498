/* SPDX-License-Identifier: MIT */
/*
 * lib/nbd/transport.c: the NBD server's sockets and loop (see
 * nbd_internal.h): the listening socket (TCP or Unix, or the caller's),
 * the clients' connections (non-blocking: read into what handler.c wants,
 * replies sent without waiting), each connection's queue, the handle's
 * epoll set (vdisk_nbd_get_fd), the deadlines (a timerfd ticking while
 * clients are connected), the helper thread; the public calls of
 * vdisk/nbd.h.
 *
 * At most max_clients connections at once: while that many are
 * connected, the listening socket is not watched and the next client
 * waits in its backlog (as qemu-nbd -e does).
 *
 * TLS (tls.c): once STARTTLS's ack is sent the connection's TLS handshake
 * runs, polled for the direction GnuTLS waits for; then reads and sends go
 * through the session.  GnuTLS may hold decrypted bytes the handler did not
 * want yet (back-pressure, or the batch's end) while the socket itself has
 * nothing more: the kick eventfd then wakes the loop for them.  So it does
 * for requests read ahead that wait (back-pressure, or the turn's block
 * status lookups used: NBD_MAX_STATUS_CALLS).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <vdisk/bitmap.h>
#include <vdisk/error.h>
#include <vdisk/nbd.h>
#include <vdisk/queue.h>

#include "abi.h"
#include "error_internal.h"
#include "nbd_internal.h"

enum { EV_LISTEN = 1, EV_CONN, EV_QUEUE, EV_TIMER, EV_KICK };
#define EV(kind, slot) (((uint64_t)(kind) << 32) | (uint64_t)(slot))

/* Reads and sends per wake-up of one connection, before the others' turn. */
#define CONN_BATCH 64u
/* Replies handed to one sendmsg. */
#define TX_IOV 64

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void listen_watch(struct vdisk_nbd *s, bool on)
{
    if (s->listen_fd < 0 || on == s->listen_watched)
        return;
    if (on) {
        struct epoll_event e = {.events = EPOLLIN, .data.u64 = EV(EV_LISTEN, 0)};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0) {
            nbd_log(s, "epoll: the listening socket: %s", strerror(errno));
            return;
        }
    } else {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    }
    s->listen_watched = on;
}

/* The deadline tick runs while clients are connected. */
static void tick(struct vdisk_nbd *s, bool on)
{
    if (on == s->timer_armed)
        return;
    struct itimerspec t = {{0, 0}, {0, 0}};
    if (on) {
        t.it_interval.tv_nsec = (long)NBD_TICK_MS * 1000000L;
        t.it_value = t.it_interval;
    }
    if (timerfd_settime(s->timer_fd, 0, &t, NULL) == 0)
        s->timer_armed = on;
}

static void log_drop(struct nbd_conn *c, const char *why)
{
    if (why)
        nbd_log(c->srv, "client %" PRIu64 ": %s; connection closed", c->id, why);
    else
        nbd_info(c->srv, "client %" PRIu64 " disconnected", c->id);
}

/* Frees C now: waits for its requests in flight (none, or vdisk_nbd_free). */
static void free_conn(struct nbd_conn *c, const char *why)
{
    struct vdisk_nbd *s = c->srv;
    if (c->q && c->q_watched)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, vdisk_queue_get_fd(c->q), NULL);
    if (c->fd >= 0 && !c->hup)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    nbd_conn_end(c);
    nbd_tls_end(c, !c->hup && !why);
    close_fd(&c->fd);
    if (!c->abandoned)
        log_drop(c, why);
    s->conns[c->slot] = NULL;
    s->nconns--;
    free(c->rbuf);
    free(c);
    if (s->nconns < s->max_clients) {
        s->accept_retry = 0; /* a client went: its descriptors are free */
        listen_watch(s, true);
    }
    if (s->nconns == 0)
        tick(s, false);
}

static bool watch_queue(struct nbd_conn *c)
{
    if (c->q_watched)
        return true;
    int qfd = vdisk_queue_get_fd(c->q);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = EV(EV_QUEUE, c->slot)};
    if (qfd < 0 || epoll_ctl(c->srv->epfd, EPOLL_CTL_ADD, qfd, &e) < 0)
        return false;
    c->q_watched = true;
    return true;
}

/* Drops C (logging WHY, or NULL for a clean end) without waiting: with no
 * request in flight it is freed at once; otherwise its socket is closed,
 * nothing more is read or sent, and C (with its queue, still polled) stays
 * in its slot until its requests complete (settle frees it then). */
static void drop_conn(struct nbd_conn *c, const char *why)
{
    if (c->abandoned)
        return;
    if (!c->q || c->in_flight == 0 || !watch_queue(c)) {
        free_conn(c, why);
        return;
    }
    log_drop(c, why);
    if (c->fd >= 0 && !c->hup)
        epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->hup = true;
    nbd_tls_end(c, false);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    close_fd(&c->fd);
    nbd_conn_abandon(c);
    if (c->in_flight == 0) {
        /* Only reads waiting for room in its pipe were in flight: no
         * completion is to come. */
        free_conn(c, NULL);
        return;
    }
    /* Requests read but not handed to the engine yet go now. */
    if (vdisk_queue_submit(c->q) < 0)
        nbd_log(c->srv, "client %" PRIu64 ": submitting: %s", c->id, vdisk_get_error());
}

/* Sends what is queued, without waiting.  Returns 0, or -1 when the
 * connection failed. */
static int flush_tx(struct nbd_conn *c)
{
    if (c->tls_state == NBD_TLS_UP) {
        for (unsigned k = 0; k < CONN_BATCH && c->tx_head; k++) {
            const char *why;
            struct nbd_tx *t = c->tx_head;
            long w = nbd_tls_send(c, t->data + t->off, t->len - t->off, &why);
            if (w == -EAGAIN)
                return 0;
            if (w <= 0) {
                nbd_log(c->srv, "client %" PRIu64 ": TLS: %s", c->id, why);
                return -1;
            }
            nbd_tx_sent(c, (size_t)w);
        }
        return 0;
    }
    for (unsigned k = 0; k < CONN_BATCH && c->tx_head; k++) {
        /* The replies up to the first one whose data waits in a pipe (a
         * zero-copy read's: its header goes in this sendmsg, its data
         * next, spliced). */
        struct iovec iov[TX_IOV];
        int n = 0;
        bool more = false;
        for (struct nbd_tx *t = c->tx_head; t && n < TX_IOV; t = t->next) {
            if (t->off < t->len) {
                iov[n].iov_base = t->data + t->off;
                iov[n].iov_len = t->len - t->off;
                n++;
            }
            if (t->pipe_left) {
                more = true;
                break;
            }
        }
        ssize_t w;
        if (n) {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
        } else {
            struct nbd_tx *t = c->tx_head;
            w = splice(c->pipe->rd, NULL, c->fd, NULL, t->pipe_left,
                       SPLICE_F_NONBLOCK | (t->next ? SPLICE_F_MORE : 0));
            if (w > 0) {
                t->pipe_left -= (size_t)w;
                if (!t->pipe_left)
                    c->srv->spliced += t->pipe_len;
            }
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w <= 0)
            return -1;
        nbd_tx_sent(c, n ? (size_t)w : 0);
    }
    return 0;
}

/* What the connection waits for now: readable when the handler wants
 * bytes, writable when replies wait. */
static void update_events(struct nbd_conn *c)
{
    if (c->hup)
        return;
    uint8_t *dst;
    unsigned ev = (nbd_rx_want(c, &dst) ? EPOLLIN : 0) | (c->tx_head ? EPOLLOUT : 0);
    if (c->tls_state == NBD_TLS_HANDSHAKE)
        ev = c->tls_pending ? EPOLLOUT : EPOLLIN;
    if (ev == c->ev)
        return;
    struct epoll_event e = {.events = ev, .data.u64 = EV(EV_CONN, c->slot)};
    if (epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->ev = ev;
}

/* Runs C's TLS handshake on.  Returns false when C was dropped. */
static bool tls_handshake(struct nbd_conn *c)
{
    const char *why = NULL;
    int r = nbd_tls_handshake(c, &why);
    if (r < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "the TLS handshake failed: %s", why);
        drop_conn(c, msg);
        return false;
    }
    return true;
}

/* Hands the bytes read ahead to the handler, as far as it wants them now.
 * Returns false when C was dropped. */
static bool rx_pump(struct nbd_conn *c)
{
    while (c->rb_off < c->rb_len) {
        /* The wake-up's block status lookups used: the rest waits for the
         * loop's next turn (the kick brings it back: settle). */
        if (c->status_calls >= NBD_MAX_STATUS_CALLS)
            return true;
        uint8_t *dst;
        size_t want = nbd_rx_want(c, &dst);
        if (!want)
            return true; /* back-pressure, or closing: they wait (or go) */
        size_t n = c->rb_len - c->rb_off;
        if (n > want)
            n = want;
        memcpy(dst, c->rbuf + c->rb_off, n);
        c->rb_off += n;
        if (nbd_rx_got(c, n) == NBD_CLOSE) {
            drop_conn(c, "protocol error");
            return false;
        }
    }
    c->rb_off = c->rb_len = 0;
    return true;
}

/* Whether the handler wants bytes that were read ahead already. */
static bool rx_pending(struct nbd_conn *c)
{
    uint8_t *dst;
    return c->rb_off < c->rb_len && c->status_calls < NBD_MAX_STATUS_CALLS &&
           nbd_rx_want(c, &dst);
}

/* Bytes C wants that wait already read (ahead, or decrypted in its TLS
 * session): the socket may not poll readable for them. */
static bool rx_waiting(struct nbd_conn *c)
{
    uint8_t *dst;
    return (c->rb_off < c->rb_len || nbd_tls_has_pending(c)) && nbd_rx_want(c, &dst);
}

/* One read from C's socket into DST (WANT bytes wanted; the read-ahead is
 * empty).  In the transmission phase the same recvmsg also takes up to
 * NBD_RBUF_SIZE bytes more into the read-ahead: the next requests, many
 * per system call.  (Never during the handshake: what follows an option
 * there, STARTTLS's, may not be read as plain bytes.)  Returns the bytes
 * of DST filled, 0 at the end of the stream, or -1 (errno); *DRAINED says
 * that the socket had less than was asked for. */
static ssize_t sock_read(struct nbd_conn *c, uint8_t *dst, size_t want, bool *drained)
{
    if (c->transmission && !c->rbuf)
        c->rbuf = malloc(NBD_RBUF_SIZE); /* none: one read at a time */
    struct iovec iov[2] = {{.iov_base = dst, .iov_len = want},
                           {.iov_base = c->rbuf, .iov_len = NBD_RBUF_SIZE}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = c->transmission && c->rbuf ? 2 : 1};
    ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT);
    *drained = n >= 0 && (size_t)n < want + (mh.msg_iovlen == 2 ? NBD_RBUF_SIZE : 0);
    if (n > (ssize_t)want) {
        c->rb_off = 0;
        c->rb_len = (size_t)n - want;
        n = (ssize_t)want;
    }
    return n;
}

/* After reading or completing: the queue watched once there is one, the
 * requests started handed to the engine (and those it completed at once,
 * as io_uring does reads from the page cache, completed: their replies
 * leave in the same send), the replies sent, the requests read ahead
 * started as room is made for them.  QUEUE_READY: the queue's fd polled
 * readable (it is cleared, even with nothing in flight).  Returns false
 * when C was dropped. */
static bool settle(struct nbd_conn *c, bool queue_ready)
{
    struct vdisk_nbd *s = c->srv;
    if (c->abandoned) {
        /* Gone: freed once its last request completed. */
        if (c->in_flight == 0)
            free_conn(c, NULL);
        else if (vdisk_queue_submit(c->q) < 0)
            nbd_log(s, "client %" PRIu64 ": submitting: %s", c->id, vdisk_get_error());
        return false;
    }
    if (c->q && !c->q_watched && !watch_queue(c)) {
        drop_conn(c, "its queue cannot be polled");
        return false;
    }
    do {
        if (!rx_pump(c))
            return false;
        /* Zero-copy reads waiting for room in the pipe go on as far as the
         * replies sent made room (before the reap, which hands those that
         * are copied after all to the engine). */
        if (c->pipe_room && c->sp_head && nbd_resume_reads(c) == NBD_CLOSE) {
            drop_conn(c, "protocol error");
            return false;
        }
        if (c->q && (c->in_flight || queue_ready) && vdisk_queue_reap(c->q, 0, 0) < 0)
            nbd_log(s, "client %" PRIu64 ": completions: %s", c->id, vdisk_get_error());
        queue_ready = false;
        if (flush_tx(c) < 0) {
            drop_conn(c, "sending a reply failed");
            return false;
        }
        /* (Each turn hands over at least one byte read ahead, or sends a
         * reply whose data was in the pipe: it ends.) */
    } while (rx_pending(c) || (c->pipe_room && c->sp_head));
    if (c->tls_state == NBD_TLS_STARTING && !c->tx_head) {
        /* STARTTLS's ack is out: the TLS handshake begins. */
        if (nbd_tls_begin(c) < 0) {
            drop_conn(c, "no TLS session for it (out of memory)");
            return false;
        }
        if (!tls_handshake(c))
            return false;
    }
    if (nbd_conn_finished(c)) {
        drop_conn(c, NULL);
        return false;
    }
    update_events(c);
    if (rx_waiting(c) && !s->kicked) {
        /* Bytes wait, read ahead or decrypted in GnuTLS: the loop comes
         * back for them. */
        uint64_t one = 1;
        if (write(s->kick_fd, &one, sizeof one) == (ssize_t)sizeof one)
            s->kicked = true;
    }
    return true;
}

/* The connection is readable (or writable, or hung up: EVENTS): reads what
 * the handler wants, a batch at a time. */
static void on_conn(struct nbd_conn *c, uint32_t events)
{
    uint8_t *d;
    if (c->tls_state == NBD_TLS_HANDSHAKE) {
        if (!tls_handshake(c))
            return;
        if (c->tls_state == NBD_TLS_HANDSHAKE) {
            update_events(c);
            return;
        }
    }
    if ((events & (EPOLLHUP | EPOLLERR)) && !nbd_rx_want(c, &d)) {
        /* Gone while nothing is read (back-pressure, or after DISC): its
         * requests in flight complete without replies (drop_conn). */
        drop_conn(c, c->closing ? NULL : "the client hung up with requests in flight");
        return;
    }
    c->status_calls = 0;
    if (!rx_pump(c))
        return;
    for (unsigned k = 0; k < CONN_BATCH; k++) {
        uint8_t *dst;
        /* Block status lookups run here, synchronously: a wake-up's worth
         * used, the rest waits for the loop's next turn (still readable). */
        if (c->status_calls >= NBD_MAX_STATUS_CALLS)
            break;
        size_t want = nbd_rx_want(c, &dst);
        if (!want)
            break;
        ssize_t n;
        const char *why = NULL;
        bool drained = false;
        if (c->tls_state == NBD_TLS_UP) {
            long g = nbd_tls_recv(c, dst, want, &why);
            if (g == -EAGAIN)
                break;
            n = g < 0 ? -1 : g;
        } else {
            n = sock_read(c, dst, want, &drained);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0)
                why = strerror(errno);
        }
        if (n <= 0) {
            bool quiet = n == 0 && c->got == 0 && (c->transmission || c->rx == RX_OPT_HDR);
            char msg[200];
            if (why && c->tls_state == NBD_TLS_UP) {
                snprintf(msg, sizeof msg, "TLS: %s", why);
                why = msg;
            }
            drop_conn(c, quiet ? NULL : n < 0 ? why
                                               : "the client hung up in the middle of a message");
            return;
        }
        if (nbd_rx_got(c, (size_t)n) == NBD_CLOSE) {
            drop_conn(c, "protocol error");
            return;
        }
        if (!rx_pump(c))
            return;
        if (drained)
            break; /* nothing more now: no read just to hear EAGAIN */
    }
    settle(c, false);
}

static void on_queue(struct nbd_conn *c)
{
    if (!c->q)
        return;
    if (c->abandoned) {
        if (vdisk_queue_reap(c->q, 0, 0) < 0)
            nbd_log(c->srv, "client %" PRIu64 ": completions: %s", c->id, vdisk_get_error());
        settle(c, false);
        return;
    }
    settle(c, true);
}

static void on_tick(struct vdisk_nbd *s)
{
    uint64_t n;
    if (read(s->timer_fd, &n, sizeof n) < 0) {
        /* nothing expired */
    }
    uint64_t now = nbd_now_ms();
    if (s->accept_retry && now >= s->accept_retry) {
        s->accept_retry = 0;
        if (s->nconns < s->max_clients)
            listen_watch(s, true);
        if (s->nconns == 0)
            tick(s, false);
    }
    for (unsigned i = 0; i < s->max_clients; i++) {
        struct nbd_conn *c = s->conns[i];
        if (!c)
            continue;
        if (c->deadline && now >= c->deadline)
            drop_conn(c, c->transmission ? "a request begun stalled (none of it came in time)"
                                         : "the handshake did not end in time");
        else if (c->tx_head && c->tx_stall && now - c->tx_stall >= s->request_ms)
            drop_conn(c, "it does not read its replies");
    }
}

/* Connections with bytes they want now waiting already read (ahead, or
 * decrypted in their TLS session). */
static void on_kick(struct vdisk_nbd *s)
{
    uint64_t n;
    if (read(s->kick_fd, &n, sizeof n) < 0) {
        /* not signalled */
    }
    s->kicked = false;
    for (unsigned i = 0; i < s->max_clients; i++) {
        struct nbd_conn *c = s->conns[i];
        if (c && !c->hup && rx_waiting(c))
            on_conn(c, 0);
    }
}

/* Takes FD (connected) as a client.  Returns 0 or -errno (FD left open). */
static int take_connection(struct vdisk_nbd *s, int fd)
{
    unsigned slot = 0;
    while (slot < s->max_clients && s->conns[slot])
        slot++;
    if (slot == s->max_clients)
        return -EBUSY;
    struct nbd_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->srv = s;
    c->slot = slot;
    c->fd = fd;
    c->id = ++s->connections;
    int r = nbd_conn_start(c);
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u64 = EV(EV_CONN, slot)};
    if (r == 0 && epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        r = -errno;
    if (r < 0) {
        c->fd = -1;
        nbd_conn_end(c);
        free(c);
        s->connections--;
        return r;
    }
    c->ev = e.events;
    s->conns[slot] = c;
    s->nconns++;
    if (s->nconns >= s->max_clients)
        listen_watch(s, false);
    tick(s, true);
    nbd_info(s, "client %" PRIu64 " connected", c->id);
    settle(c, false);
    return 0;
}

static void on_accept(struct vdisk_nbd *s)
{
    if (s->nconns >= s->max_clients) {
        listen_watch(s, false);
        return;
    }
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED)
            return;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            /* The pending connection keeps the socket readable: it is
             * not watched for a while (on_tick, or a client going, watches
             * it again), else the loop would spin. */
            if (!s->accept_failing)
                nbd_log(s, "accept: %s; new clients wait (retried every %u ms)", strerror(e),
                        NBD_ACCEPT_PAUSE_MS);
            s->accept_failing = true;
            listen_watch(s, false);
            s->accept_retry = nbd_now_ms() + NBD_ACCEPT_PAUSE_MS;
            tick(s, true);
            return;
        }
        nbd_log(s, "accept: %s", strerror(e));
        return;
    }
    s->accept_failing = false;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on Unix: fine */
    int r = take_connection(s, fd);
    if (r < 0) {
        nbd_log(s, "a new client: %s", strerror(-r));
        close(fd);
    }
}

/* ---- The handle ---------------------------------------------------------------- */

static char *dup_string(const char *v, const char *what, int *r)
{
    if (strlen(v) > NBD_MAX_STRING) {
        *r = err_set(-EINVAL, "the %s is longer than %u bytes", what, NBD_MAX_STRING);
        return NULL;
    }
    char *d = strdup(v);
    if (!d)
        *r = err_set(-ENOMEM, "out of memory");
    return d;
}

static int process_cb(void *opaque);
static void failed_cb(void *opaque);

static int make_handle(struct vdisk_nbd **out, vdisk_dev *dev,
                       const struct vdisk_nbd_params *caller)
{
    *out = NULL;
    struct vdisk_nbd_params p;
    memset(&p, 0, sizeof p);
    int r;
    if (caller && (r = ABI_IN(vdisk_nbd_params, &p, caller, VDISK_NBD_PARAMS_SIZE_V1)) < 0)
        return r;
    if (!dev)
        return err_set(-EINVAL, "no device given (NULL)");
    if (p.flags & ~(unsigned)(VDISK_NBD_READ_ONLY | VDISK_NBD_UNMAP | VDISK_NBD_DETECT_ZEROES |
                              VDISK_NBD_QUIET | VDISK_NBD_TLS_VERIFY_PEER |
                              VDISK_NBD_ALLOCATION_DEPTH | VDISK_NBD_NO_SPLICE))
        return err_set(-EINVAL, "unknown flags 0x%x", p.flags);
    if (p.tls == VDISK_NBD_TLS_NONE && (p.flags & VDISK_NBD_TLS_VERIFY_PEER))
        return err_set(-EINVAL, "VDISK_NBD_TLS_VERIFY_PEER without TLS");
    if (p.max_clients > NBD_MAX_CLIENTS)
        return err_set(-EINVAL, "max_clients %u is above %u", p.max_clients, NBD_MAX_CLIENTS);
    struct vdisk_nbd *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    s->listen_fd = s->epfd = s->timer_fd = s->kick_fd = -1;
    /* Zero-copy reads' pipes: two file descriptors each, a quarter of
     * those allowed above the reserve at most (96 with the usual 1024). */
    struct rlimit rl;
    s->max_pipes = NBD_MAX_CLIENTS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < NBD_FD_RESERVE + 8u * NBD_MAX_CLIENTS)
        s->max_pipes = rl.rlim_cur > NBD_FD_RESERVE
                           ? (unsigned)((rl.rlim_cur - NBD_FD_RESERVE) / 8u) : 0;
    loop_thread_init(&s->loop, -1, process_cb, failed_cb, s);
    s->dev = dev;
    s->size = vdisk_get_size(dev);
    s->flags = p.flags;
    s->read_only = (p.flags & VDISK_NBD_READ_ONLY) || vdisk_is_read_only(dev) == 1;
    s->max_clients = p.max_clients ? p.max_clients : 1;
    s->handshake_ms = p.handshake_timeout_ms ? p.handshake_timeout_ms
                                             : VDISK_NBD_HANDSHAKE_TIMEOUT_MS;
    s->request_ms = p.request_timeout_ms ? p.request_timeout_ms : VDISK_NBD_REQUEST_TIMEOUT_MS;
    s->log = p.log;
    s->log_opaque = p.log_opaque;
    s->log_tokens = NBD_LOG_BURST;
    r = 0;
    if (!(s->export_name = dup_string(p.export_name ? p.export_name : "", "export name", &r)))
        goto fail;
    if (p.description && !(s->description = dup_string(p.description, "description", &r)))
        goto fail;
    if (p.bitmap) {
        /* The bitmap must be there and usable (its bits are read now). */
        uint64_t blen;
        bool bdirty;
        r = vdisk_bitmap_status(dev, p.bitmap, 0, s->size ? s->size : 1, &blen, &bdirty);
        if (r == -EINVAL && !s->size)
            r = 0; /* (an empty disk: no offset to ask about) */
        if (r < 0)
            goto fail;
        if (!(s->bitmap = dup_string(p.bitmap, "bitmap", &r)))
            goto fail;
        size_t n = strlen(p.bitmap) + sizeof "qemu:dirty-bitmap:";
        if (n > 4096 || !(s->bitmap_ctx = malloc(n))) {
            r = err_set(n > 4096 ? -EINVAL : -ENOMEM, "the bitmap name is too long");
            goto fail;
        }
        snprintf(s->bitmap_ctx, n, "qemu:dirty-bitmap:%s", p.bitmap);
    }
    if (!(s->conns = calloc(s->max_clients, sizeof *s->conns))) {
        r = err_set(-ENOMEM, "out of memory");
        goto fail;
    }
    s->epfd = s->loop.epfd = epoll_create1(EPOLL_CLOEXEC);
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (s->epfd < 0 || s->timer_fd < 0) {
        r = err_set(-errno, "%s: %s", s->epfd < 0 ? "epoll" : "timerfd", strerror(errno));
        goto fail;
    }
    struct epoll_event t = {.events = EPOLLIN, .data.u64 = EV(EV_TIMER, 0)};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timer_fd, &t) < 0) {
        r = err_set(-errno, "epoll: %s", strerror(errno));
        goto fail;
    }
    if (p.tls != VDISK_NBD_TLS_NONE &&
        (r = nbd_tls_new(&s->tls, p.tls, p.tls_dir, p.flags & VDISK_NBD_TLS_VERIFY_PEER)) < 0)
        goto fail;
    struct epoll_event k = {.events = EPOLLIN, .data.u64 = EV(EV_KICK, 0)};
    if ((s->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->kick_fd, &k) < 0) {
        r = err_set(-errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    vdisk_nbd_free(s);
    return r;
}

VDISK_EXPORT int vdisk_nbd_listen_tcp(vdisk_nbd **out, vdisk_dev *dev, const char *addr,
                                      uint16_t port, const struct vdisk_nbd_params *params)
{
    err_enter(__func__);
    if (!out)
        return err_set(-EINVAL, "no handle pointer given (NULL)");
    *out = NULL;
    struct vdisk_nbd *s;
    int r = make_handle(&s, dev, params);
    if (r < 0)
        return r;
    if (!addr)
        addr = "0.0.0.0";
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(addr, ps, &hints, &ai);
    if (g) {
        r = err_set(g == EAI_SYSTEM ? -errno : -ENOENT, "address %s: %s", addr, gai_strerror(g));
        vdisk_nbd_free(s);
        return r;
    }
    r = -EADDRNOTAVAIL;
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        r = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        r = err_set(r, "Failed to bind socket: %s (%s port %u)", strerror(-r), addr,
                    (unsigned)port);
        vdisk_nbd_free(s);
        return r;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    s->listen_fd = fd;
    s->own_listen = true;
    listen_watch(s, true);
    *out = s;
    return 0;
}

VDISK_EXPORT int vdisk_nbd_listen_unix(vdisk_nbd **out, vdisk_dev *dev, const char *path,
                                       const struct vdisk_nbd_params *params)
{
    err_enter(__func__);
    if (!out)
        return err_set(-EINVAL, "no handle pointer given (NULL)");
    *out = NULL;
    if (!path)
        return err_set(-EINVAL, "no socket path given (NULL)");
    struct vdisk_nbd *s;
    int r = make_handle(&s, dev, params);
    if (r < 0)
        return r;
    r = unix_listen(path, 0600, (gid_t)-1, &s->sock);
    if (r < 0 || !(s->path = strdup(path))) {
        if (r >= 0) {
            close(r);
            unix_unlink(path, &s->sock);
            r = err_set(-ENOMEM, "out of memory");
        }
        s->sock.created = false;
        vdisk_nbd_free(s);
        return r;
    }
    s->listen_fd = r;
    s->own_listen = true;
    listen_watch(s, true);
    *out = s;
    return 0;
}

VDISK_EXPORT int vdisk_nbd_new(vdisk_nbd **out, vdisk_dev *dev, int listen_fd,
                               const struct vdisk_nbd_params *params)
{
    err_enter(__func__);
    if (!out)
        return err_set(-EINVAL, "no handle pointer given (NULL)");
    *out = NULL;
    if (listen_fd < -1)
        return err_set(-EBADF, "listening fd %d", listen_fd);
    if (listen_fd >= 0) {
        int fl = fcntl(listen_fd, F_GETFL);
        if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0))
            return err_set(-errno, "listening fd %d: %s", listen_fd, strerror(errno));
    }
    struct vdisk_nbd *s;
    int r = make_handle(&s, dev, params);
    if (r < 0)
        return r;
    s->listen_fd = listen_fd;
    listen_watch(s, true);
    if (listen_fd >= 0 && !s->listen_watched) {
        r = err_set(-EINVAL, "listening fd %d cannot be polled", listen_fd);
        vdisk_nbd_free(s);
        return r;
    }
    *out = s;
    return 0;
}

VDISK_EXPORT int vdisk_nbd_add_connection(vdisk_nbd *s, int fd)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no handle given (NULL)");
    if (s->nconns >= s->max_clients)
        return err_set(-EBUSY, "%u clients are connected already", s->nconns);
    int type;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return err_set(-EINVAL, "fd %d is not a stream socket", fd);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return err_set(-errno, "fd %d: %s", fd, strerror(errno));
    int r = take_connection(s, fd);
    if (r < 0)
        return err_set(r, "fd %d: %s", fd, strerror(-r));
    return 0;
}

VDISK_EXPORT int vdisk_nbd_get_fd(const vdisk_nbd *s)
{
    return s ? s->epfd : -1;
}

VDISK_EXPORT uint16_t vdisk_nbd_get_port(const vdisk_nbd *s)
{
    return s ? s->port : 0;
}

VDISK_EXPORT unsigned vdisk_nbd_clients(const vdisk_nbd *s)
{
    return s ? s->nconns : 0;
}

VDISK_EXPORT uint64_t vdisk_nbd_connections(const vdisk_nbd *s)
{
    return s ? s->connections : 0;
}

VDISK_EXPORT uint64_t vdisk_nbd_served(const vdisk_nbd *s)
{
    return s ? s->served : 0;
}

static int process(struct vdisk_nbd *s)
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
        struct nbd_conn *c = i < s->max_clients ? s->conns[i] : NULL;
        switch (kind) {
        case EV_LISTEN:
            on_accept(s);
            break;
        case EV_CONN:
            if (c && !c->hup)
                on_conn(c, ev[k].events);
            break;
        case EV_QUEUE:
            if (c)
                on_queue(c);
            break;
        case EV_TIMER:
            on_tick(s);
            break;
        case EV_KICK:
            on_kick(s);
            break;
        }
    }
    return n;
}

static int process_cb(void *opaque)
{
    return process(opaque);
}

static void failed_cb(void *opaque)
{
    nbd_log(opaque, "%s; the helper thread stops", vdisk_get_error());
}

VDISK_EXPORT int vdisk_nbd_process(vdisk_nbd *s)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no handle given (NULL)");
    return loop_thread_process(&s->loop);
}

VDISK_EXPORT int vdisk_nbd_start(vdisk_nbd *s)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no handle given (NULL)");
    return loop_thread_start(&s->loop);
}

VDISK_EXPORT int vdisk_nbd_stop(vdisk_nbd *s)
{
    err_enter(__func__);
    if (!s)
        return err_set(-EINVAL, "no helper thread runs");
    return loop_thread_stop(&s->loop);
}

VDISK_EXPORT uint64_t vdisk_nbd_spliced(const vdisk_nbd *s)
{
    return s ? s->spliced : 0;
}

VDISK_EXPORT void vdisk_nbd_free(vdisk_nbd *s)
{
    if (!s)
        return;
    loop_thread_fini(&s->loop); /* stops the helper thread */
    listen_watch(s, false);
    s->listen_fd = s->own_listen ? s->listen_fd : -1; /* a caller's stays open */
    for (unsigned i = 0; s->conns && i < s->max_clients; i++)
        if (s->conns[i])
            free_conn(s->conns[i], NULL); /* waits for its requests in flight */
    listen_watch(s, false);
    nbd_log_flush(s);
    close_fd(&s->listen_fd);
    if (s->path)
        unix_unlink(s->path, &s->sock);
    close_fd(&s->epfd);
    close_fd(&s->timer_fd);
    close_fd(&s->kick_fd);
    nbd_pipe_free(&s->scratch);
    nbd_tls_free(s->tls);
    free(s->conns);
    free(s->path);
    free(s->export_name);
    free(s->description);
    free(s->bitmap);
    free(s->bitmap_ctx);
    free(s);
}
