/* SPDX-License-Identifier: MIT */
/*
 * formats/nbd/nbd.c: the nbd protocol: an export of an NBD server, through
 * libnbd, as the storage under a format (or a raw image itself).
 *
 * Names are libnbd's URIs (nbd_connect_uri): nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH, and with TLS nbds://, nbds+unix://
 * (libnbd's tls-certificates=DIR, or tls-psk-file=FILE in a name the
 * caller gives: a backing file name in an image may not read local files).
 *
 * Threads.  Each connection to the server has a thread of its own, its
 * worker, which alone calls libnbd on the handle once the open is done.
 * (One connection, or up to 16 with the option connections=N when the
 * server allows multi-conn: requests then go to each in turn.)
 * submit() (on a queue's thread) cuts a request into NBD commands of at
 * most the server's maximum payload and hands them to the worker through
 * a locked list and an eventfd; the worker issues them with libnbd's aio
 * calls and polls the socket, so many commands are in flight and no
 * caller's thread blocks.  When the last command of a request is answered
 * the worker gives the request back to its queue with req_resume_later(),
 * and it completes there.  block_status, which the driver interface makes
 * synchronous, goes the same way and its caller waits on a condition.
 *
 *   read, write   NBD_CMD_READ / WRITE; FUA passed on when the server has
 *                 it, else a flush follows the write
 *   flush         NBD_CMD_FLUSH when the server has it, else nothing to do
 *   discard       NBD_CMD_TRIM when the server has it (advisory otherwise)
 *   write_zeroes  NBD_CMD_WRITE_ZEROES (NO_HOLE unless MAY_UNMAP), or
 *                 writes of zeroes when the server lacks it
 *   block status  "base:allocation": HOLE → no data, ZERO → zeroes, as
 *                 QEMU's nbd driver maps them; all data without the context
 *
 * A dropped connection.  When the socket fails, the worker reconnects
 * (RECONNECT_TRIES attempts, backing off from RECONNECT_FIRST_MS) and sends
 * again every command that was unanswered, writes included: NBD commands
 * are idempotent and QEMU's nbd driver resends them in the same way.  (As
 * with QEMU, a write the old server acknowledged without FUA cannot be
 * sent again.)  The server may have lost such a write with its cache, so
 * when a connection drops after a write (or zero, or trim) was answered
 * without FUA and before a flush covered it, and the export can flush,
 * the device is poisoned: every later flush fails with EIO and the message
 * "the NBD connection was lost after N write(s) that no flush covered ...", as
 * the core does after any failed flush (fsync-gate).  Writes are numbered
 * device-wide when answered; a flush covers every write answered before it
 * was sent, on any connection (multi-conn).  A
 * After a reconnect the new server's features are checked against those
 * found at open: a new size, a read-only export or a larger minimum block
 * size fails the reconnect for good: every command waiting fails with EIO
 * and the reason, and so does every later request at once (the device is
 * marked changed: no connection is tried again; close and reopen it);
 * a feature lost (FUA, flush, trim, write zeroes, or multi-conn
 * with several connections) fails, with EIO and a message, each command
 * that needs it on that connection (a flush, for multi-conn), and the
 * command is never sent.  A
 * command goes at most CMD_TRIES times; when reconnecting fails, every
 * command waiting fails with EIO and a message, and the next request tries
 * one connection at once.  An error the server reports is never retried.
 *
 * Timeouts.  The option timeout=SECONDS (1 to 3600, default 30) bounds
 * each attempt to connect (TCP or Unix connect, TLS and the handshake:
 * libnbd's asynchronous connect, polled with a deadline, and stopped early
 * when the device closes) and each command's answer: a command unanswered
 * for that long (counted from when it was handed to libnbd) fails with
 * ETIMEDOUT and a message, and the connection is dropped and made again
 * (the other commands in flight go again on the new one).  A server that
 * is merely slow must answer within the timeout; raise it for such.
 */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

#define NBD_DEFAULT_MAX   (32u << 20) /* payload limit without the server's */
#define NBD_MAX_NONDATA   (1u << 30)  /* trim, zero, block status per command */
#define RECONNECT_TRIES   8
#define RECONNECT_FIRST_MS 100
#define RECONNECT_MAX_MS  1000
#define CMD_TRIES         4
#define ZERO_CHUNK        (1u << 20)
#define DEFAULT_TIMEOUT_S 30
#define MAX_TIMEOUT_S     3600

enum cmd_kind { CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_ZERO, CMD_STATUS };

struct nbd_op;

/* One NBD command: a piece of a request. */
struct nbd_cmd {
    struct nbd_op *op;
    enum cmd_kind kind;
    uint64_t off, len;
    void *buf;
    uint32_t flags;            /* LIBNBD_CMD_FLAG_* */
    uint64_t covers;           /* a flush: the writes answered before it was sent */
    int tries;
    int error;                 /* errno of its answer */
    int64_t deadline_ms;       /* unanswered by then: timed out */
    bool timed_out;
    bool server_error;         /* ... which came from the server */
    struct nbd_cmd *next;      /* on a list of the worker's */
    struct nbd_cmd *prev_inflight, *next_inflight;
};

/* A request (or a synchronous block status) and its commands. */
struct nbd_op {
    struct vdisk_req *req;     /* NULL for block status */
    struct nbd_conn *n;        /* the connection its commands go to */
    int pending;               /* commands unanswered (worker only) */
    int error;                 /* the first error */
    char msg[256];
    void *bounce;              /* reads and writes with several iovecs */
    bool flush_after;          /* FUA without the server's FUA */
    /* block status */
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
    bool done;
    uint32_t st_flags;
    uint64_t st_len;
    size_t ncmds;
    struct nbd_cmd cmds[];
};

/* The open options about TLS (NULL or -1: not given). */
struct nbd_tls_opts {
    char *certificates;        /* tls-certificates=DIR: x509 */
    char *psk_file;            /* tls-psk-file=FILE */
    char *username;            /* tls-username=NAME */
    int verify_peer;           /* tls-verify-peer=on|off */
};

/* What the connections of one open export share. */
struct nbd_dev {
    struct nbd_tls_opts tls;
    struct vdisk_dev *dev;
    char *uri;
    bool local_files;          /* the URI may name local files (not a backing name) */
    uint64_t size;
    bool can_fua, can_flush, can_trim, can_zero, can_fast_zero, have_status, read_only, multi_conn;
    uint64_t max_payload;
    int64_t timeout_ms;        /* option timeout= */
    unsigned nconns;           /* connections open (1, or more with multi-conn) */
    atomic_uint next;          /* the connection the next request goes to */
    /* Durability across reconnects: writes answered without FUA are
     * numbered (acked), a flush that succeeds covers all up to the number
     * when it was sent (flushed).  poisoned: set once, never cleared. */
    atomic_uint_fast64_t acked, flushed;
    atomic_bool poisoned;
    pthread_mutex_t poison_lock; /* guards poison_msg and changed_msg while written */
    char poison_msg[320];
    /* A reconnect found the export changed (size, read-only, block size):
     * set once, never cleared; every later request fails at once with
     * changed_msg, and no connection is made again. */
    atomic_bool changed;
    char changed_msg[320];
    struct nbd_conn *conns;
};

/* One connection to the server and its worker thread. */
struct nbd_conn {
    struct nbd_dev *s;
    struct nbd_handle *h;      /* worker only, after open */
    bool started;              /* the thread runs */
    pthread_t thread;
    int wake_fd;
    pthread_mutex_t lock;      /* guards pending and stop */
    struct nbd_cmd *pend_head, *pend_tail;
    bool stop;

    /* Worker only. */
    struct nbd_cmd *inflight;  /* issued, unanswered */
    struct nbd_cmd *answered, *answered_tail;
    struct nbd_cmd *retry, *retry_tail;
    bool broken;               /* reconnecting failed; try once per batch */
    uint64_t last_write;       /* number of its last write answered without FUA */
    uint64_t unflushed;        /* how many it answered since its last flush */
    const char *lost;          /* a feature the server lost across a reconnect */
    bool lost_fua, lost_flush, lost_trim, lost_zero, lost_fast_zero, lost_multi;
};

struct nbd_req {
    struct nbd_op *op;
};
_Static_assert(sizeof(struct nbd_req) <= REQ_STATE_MAX, "nbd's request state fits");

static void list_push(struct nbd_cmd **head, struct nbd_cmd **tail, struct nbd_cmd *c)
{
    c->next = NULL;
    if (*tail)
        (*tail)->next = c;
    else
        *head = c;
    *tail = c;
}

static void wake(struct nbd_conn *n)
{
    uint64_t one = 1;
    ssize_t w = write(n->wake_fd, &one, sizeof one);
    (void)w; /* a full counter wakes the worker as well */
}

/* ---- Connecting ----------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool stopping(struct nbd_conn *n);

/* A handle connected to URI, or NULL with a message in MSG and the errno
 * in *ERR.  LOCAL_FILES lets the URI name local files (tls-psk-file).
 * Gives up after TIMEOUT_MS (ETIMEDOUT), or when CONN (if not NULL) is
 * stopping (ECANCELED). */
static struct nbd_handle *connect_uri(const char *uri, bool local_files,
                                      const struct nbd_tls_opts *tls, int64_t timeout_ms,
                                      struct nbd_conn *conn, char *msg, size_t msgsize,
                                      int *err)
{
    struct nbd_handle *h = nbd_create();
    *err = ENOMEM;
    if (!h) {
        snprintf(msg, msgsize, "%s", nbd_get_error() ? nbd_get_error() : "out of memory");
        return NULL;
    }
    if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        nbd_set_uri_allow_local_file(h, local_files) < 0 ||
        (tls->certificates && nbd_set_tls_certificates(h, tls->certificates) < 0) ||
        (tls->psk_file && nbd_set_tls_psk_file(h, tls->psk_file) < 0) ||
        (tls->username && nbd_set_tls_username(h, tls->username) < 0) ||
        (tls->verify_peer >= 0 && nbd_set_tls_verify_peer(h, tls->verify_peer) < 0) ||
        nbd_aio_connect_uri(h, uri) < 0)
        goto failed;
    int64_t deadline = now_ms() + timeout_ms;
    while (nbd_aio_is_connecting(h) == 1) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            snprintf(msg, msgsize, "no answer from the server within %" PRId64 " s",
                     timeout_ms / 1000);
            *err = ETIMEDOUT;
            nbd_close(h);
            return NULL;
        }
        if (conn && stopping(conn)) {
            snprintf(msg, msgsize, "the device is closing");
            *err = ECANCELED;
            nbd_close(h);
            return NULL;
        }
        if (nbd_poll(h, left < 100 ? (int)left : 100) < 0)
            goto failed;
    }
    if (nbd_aio_is_ready(h) == 1)
        return h;
failed:
    snprintf(msg, msgsize, "%s", nbd_get_error() ? nbd_get_error() : "the connection failed");
    *err = nbd_get_errno() > 0 ? nbd_get_errno() : EIO;
    nbd_close(h);
    return NULL;
}

/*
 * Reads what the server offers into N at open (FIRST); after a reconnect
 * only checks that the export is the same size and still writable (the
 * features found at open stay: submit reads them on other threads).
 * Returns 0 or -errno with a message.
 */
static int read_features(struct nbd_dev *n, struct nbd_handle *h, bool first)
{
    int64_t size = nbd_get_size(h);
    if (size < 0)
        return err_set(-EIO, "%s: could not get the export's size: %s", n->uri,
                       nbd_get_error());
    bool ro = nbd_is_read_only(h) == 1;
    if (!first) {
        /* -ESTALE: another export now (the reconnect gives up for good). */
        if ((uint64_t)size != n->size)
            return err_set(-ESTALE, "%s: the export's size changed from %" PRIu64 " to %" PRId64
                           " bytes across a reconnect", n->uri, n->size, size);
        if (ro && !n->read_only)
            return err_set(-ESTALE, "%s: the export became read-only across a reconnect",
                           n->uri);
        int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
        if (min > 1 && (uint64_t)min > n->dev->align)
            return err_set(-ESTALE, "%s: the export's minimum block size grew to %" PRId64
                           " bytes across a reconnect", n->uri, min);
        return 0;
    }
    n->size = (uint64_t)size;
    n->read_only = ro;
    n->can_fua = nbd_can_fua(h) == 1;
    n->can_flush = nbd_can_flush(h) == 1;
    n->can_trim = nbd_can_trim(h) == 1;
    n->can_zero = nbd_can_zero(h) == 1;
    n->can_fast_zero = n->can_zero && nbd_can_fast_zero(h) == 1;
    n->have_status = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    n->multi_conn = nbd_can_multi_conn(h) == 1;
    int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    n->max_payload = max > 0 && (uint64_t)max < NBD_DEFAULT_MAX ? (uint64_t)max : NBD_DEFAULT_MAX;
    return 0;
}

/*
 * Says goodbye (NBD_CMD_DISC) without waiting long for a server that does
 * not read, and closes the handle.
 */
static void disconnect_and_close(struct nbd_handle *h)
{
    if (nbd_aio_is_ready(h) == 1 && nbd_aio_disconnect(h, 0) == 0) {
        for (int i = 0; i < 10 && nbd_aio_is_closed(h) != 1 && nbd_aio_is_dead(h) != 1; i++) {
            if (!(nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_WRITE))
                break;
            struct pollfd p = {.fd = nbd_aio_get_fd(h), .events = POLLOUT};
            if (poll(&p, 1, 100) <= 0 || nbd_aio_notify_write(h) < 0)
                break;
        }
    }
    nbd_close(h);
}

/* ---- The worker ----------------------------------------------------------- */

static void inflight_add(struct nbd_conn *n, struct nbd_cmd *c)
{
    c->prev_inflight = NULL;
    c->next_inflight = n->inflight;
    if (n->inflight)
        n->inflight->prev_inflight = c;
    n->inflight = c;
}

static void inflight_remove(struct nbd_conn *n, struct nbd_cmd *c)
{
    if (c->prev_inflight)
        c->prev_inflight->next_inflight = c->next_inflight;
    else
        n->inflight = c->next_inflight;
    if (c->next_inflight)
        c->next_inflight->prev_inflight = c->prev_inflight;
    c->prev_inflight = c->next_inflight = NULL;
}

/* libnbd's completion callback, on the worker (inside a libnbd call). */
static int cmd_answered(void *user_data, int *error)
{
    struct nbd_cmd *c = user_data;
    struct nbd_conn *n = c->op->n;
    c->error = *error;
    /* No libnbd call on the handle here: its lock is held.  Errors of
     * the socket are told from the server's by their errno (and by the
     * handle's state, in process_answered). */
    int e = *error;
    c->server_error = e && e != ENOTCONN && e != ESHUTDOWN && e != ECONNRESET && e != EPIPE &&
                      e != ECONNABORTED;
    inflight_remove(n, c);
    if (!e && !(c->flags & LIBNBD_CMD_FLAG_FUA) &&
        (c->kind == CMD_WRITE || c->kind == CMD_ZERO || c->kind == CMD_TRIM)) {
        n->last_write = atomic_fetch_add(&n->s->acked, 1) + 1;
        n->unflushed++;
    } else if (!e && c->kind == CMD_FLUSH) {
        uint_fast64_t f = atomic_load(&n->s->flushed);
        while (f < c->covers && !atomic_compare_exchange_weak(&n->s->flushed, &f, c->covers))
            ;
        if (n->last_write <= c->covers)
            n->unflushed = 0;
    }
    list_push(&n->answered, &n->answered_tail, c);
    return 1;
}

static int status_extent(void *user_data, const char *metacontext, uint64_t offset,
                         uint32_t *entries, size_t nr_entries, int *error)
{
    struct nbd_cmd *c = user_data;
    (void)offset;
    (void)error;
    if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) || nr_entries < 2 ||
        c->op->st_len)
        return 0;
    uint64_t len = entries[0];
    c->op->st_len = len < c->len ? len : c->len;
    c->op->st_flags = entries[1];
    return 0;
}

static const char *kind_name(enum cmd_kind k)
{
    static const char *const names[] = {"read", "write", "flush", "trim", "write zeroes",
                                        "block status"};
    return names[k];
}

/* Gives a finished op back: a request to its queue, a block status to its
 * waiter. */
static void op_finish_request(struct vdisk_req *req);

static void op_done(struct nbd_op *op)
{
    if (op->req) {
        req_resume_later(op->req, op_finish_request, NULL);
        return;
    }
    pthread_mutex_lock(op->lock);
    op->done = true;
    pthread_cond_broadcast(op->cond);
    pthread_mutex_unlock(op->lock);
}

static void op_fail(struct nbd_op *op, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void op_fail(struct nbd_op *op, int err, const char *fmt, ...)
{
    if (op->error)
        return;
    op->error = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->msg, sizeof op->msg, fmt, ap);
    va_end(ap);
}

static bool connection_lost(struct nbd_conn *n)
{
    return !n->h || nbd_aio_is_dead(n->h) == 1 || nbd_aio_is_closed(n->h) == 1;
}

static void issue(struct nbd_conn *n, struct nbd_cmd *c);

/* One command less for its op; the op is done when none is left. */
static void cmd_finished(struct nbd_conn *n, struct nbd_cmd *c)
{
    struct nbd_op *op = c->op;
    if (--op->pending > 0)
        return;
    if (op->flush_after && !op->error) {
        op->flush_after = false;
        struct nbd_cmd *f = &op->cmds[op->ncmds - 1]; /* the spare one */
        f->kind = CMD_FLUSH;
        f->off = f->len = 0;
        op->pending++;
        issue(n, f);
        return;
    }
    op_done(op);
}

static void fail_cmd(struct nbd_conn *n, struct nbd_cmd *c, int err, const char *why)
{
    op_fail(c->op, err, "NBD %s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
            kind_name(c->kind), c->len, c->off, why);
    cmd_finished(n, c);
}

static void issue(struct nbd_conn *n, struct nbd_cmd *c)
{
    if (connection_lost(n)) {
        list_push(&n->retry, &n->retry_tail, c); /* waits for the reconnect */
        return;
    }
    c->tries++;
    c->error = 0;
    if (c->kind == CMD_STATUS)
        c->op->st_len = 0; /* a resend starts over */
    if (c->kind == CMD_FLUSH && atomic_load(&n->s->poisoned)) {
        pthread_mutex_lock(&n->s->poison_lock);
        op_fail(c->op, EIO, "%s", n->s->poison_msg);
        pthread_mutex_unlock(&n->s->poison_lock);
        cmd_finished(n, c);
        return;
    }
    if (c->kind == CMD_FLUSH)
        c->covers = atomic_load(&n->s->acked);
    const char *lost = NULL;
    if ((c->kind == CMD_WRITE || c->kind == CMD_ZERO) && (c->flags & LIBNBD_CMD_FLAG_FUA) &&
        n->lost_fua)
        lost = "FUA";
    else if (c->kind == CMD_FLUSH && n->lost_flush)
        lost = "flush";
    else if (c->kind == CMD_FLUSH && n->lost_multi)
        lost = "multi-conn (a flush no longer covers the other connections)";
    else if (c->kind == CMD_TRIM && n->lost_trim)
        lost = "trim";
    else if (c->kind == CMD_ZERO && n->lost_zero)
        lost = "write zeroes";
    if (!lost && c->kind == CMD_ZERO && (c->flags & LIBNBD_CMD_FLAG_FAST_ZERO) &&
        n->lost_fast_zero) {
        fail_cmd(n, c, ENOTSUP, "the server no longer offers fast zero since a reconnect");
        return;
    }
    if (lost) {
        char why[200];
        snprintf(why, sizeof why, "the server no longer offers %s since a reconnect",
                 lost);
        fail_cmd(n, c, EIO, why);
        return;
    }
    c->deadline_ms = now_ms() + n->s->timeout_ms;
    c->timed_out = false;
    inflight_add(n, c);
    nbd_completion_callback cb = {.callback = cmd_answered, .user_data = c};
    int64_t cookie = -1;
    switch (c->kind) {
    case CMD_READ:
        cookie = nbd_aio_pread(n->h, c->buf, c->len, c->off, cb, 0);
        break;
    case CMD_WRITE:
        cookie = nbd_aio_pwrite(n->h, c->buf, c->len, c->off, cb, c->flags);
        break;
    case CMD_FLUSH:
        cookie = nbd_aio_flush(n->h, cb, 0);
        break;
    case CMD_TRIM:
        cookie = nbd_aio_trim(n->h, c->len, c->off, cb, 0);
        break;
    case CMD_ZERO:
        cookie = nbd_aio_zero(n->h, c->len, c->off, cb, c->flags);
        break;
    case CMD_STATUS: {
        nbd_extent_callback ecb = {.callback = status_extent, .user_data = c};
        cookie = nbd_aio_block_status(n->h, c->len, c->off, ecb, cb, 0);
        break;
    }
    }
    if (cookie >= 0)
        return;
    /* Not sent: the callback will not run. */
    int e = nbd_get_errno();
    inflight_remove(n, c);
    if (nbd_aio_is_dead(n->h) == 1 || nbd_aio_is_closed(n->h) == 1 || e == ENOTCONN) {
        list_push(&n->retry, &n->retry_tail, c);
        return;
    }
    fail_cmd(n, c, e ? e : EIO, nbd_get_error() ? nbd_get_error() : strerror(e ? e : EIO));
}

/* Commands answered: finish them, or keep them for a resend. */
static void process_answered(struct nbd_conn *n)
{
    while (n->answered) {
        struct nbd_cmd *c = n->answered;
        n->answered = c->next;
        if (!n->answered)
            n->answered_tail = NULL;
        if (c->error && (!c->server_error || connection_lost(n))) {
            list_push(&n->retry, &n->retry_tail, c);
            continue;
        }
        if (c->error)
            fail_cmd(n, c, c->error, strerror(c->error));
        else
            cmd_finished(n, c);
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool stopping(struct nbd_conn *n)
{
    pthread_mutex_lock(&n->lock);
    bool s = n->stop;
    pthread_mutex_unlock(&n->lock);
    return s;
}

/*
 * The connection is gone: everything unanswered waits on the retry list,
 * a new connection is made (TRIES attempts), and the commands go again.
 */
static void reconnect(struct nbd_conn *n, int tries)
{
    /* Commands libnbd still holds are retired by nbd_close (their
     * callbacks may run then); the rest are taken here. */
    struct nbd_handle *old = n->h;
    n->h = NULL;
    if (old) {
        nbd_close(old);
    }
    while (n->inflight) {
        struct nbd_cmd *c = n->inflight;
        inflight_remove(n, c);
        list_push(&n->retry, &n->retry_tail, c);
    }
    /* Answers that came with the close are transport errors, or success. */
    while (n->answered) {
        struct nbd_cmd *c = n->answered;
        n->answered = c->next;
        if (!n->answered)
            n->answered_tail = NULL;
        if (c->error)
            list_push(&n->retry, &n->retry_tail, c);
        else
            cmd_finished(n, c);
    }
    /* Writes the lost server answered and no flush covered may be lost. */
    if (n->last_write > atomic_load(&n->s->flushed) && n->s->can_flush) {
        pthread_mutex_lock(&n->s->poison_lock);
        if (!atomic_load(&n->s->poisoned))
            snprintf(n->s->poison_msg, sizeof n->s->poison_msg,
                     "the NBD connection was lost after %" PRIu64 " write(s) that no flush "
                     "covered; the server may have lost them, so no later flush can succeed",
                     n->unflushed);
        atomic_store(&n->s->poisoned, true);
        pthread_mutex_unlock(&n->s->poison_lock);
    }
    n->last_write = 0;
    n->unflushed = 0;
    char msg[400] = "";
    if (atomic_load(&n->s->changed)) {
        pthread_mutex_lock(&n->s->poison_lock);
        snprintf(msg, sizeof msg, "%s", n->s->changed_msg);
        pthread_mutex_unlock(&n->s->poison_lock);
        tries = 0; /* (another connection found the export changed) */
    }
    unsigned delay = RECONNECT_FIRST_MS;
    for (int i = 0; i < tries && !stopping(n); i++) {
        if (i || tries > 1)
            sleep_ms(delay);
        delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
        int e;
        struct nbd_handle *h = connect_uri(n->s->uri, n->s->local_files, &n->s->tls,
                                           n->s->timeout_ms, n, msg, sizeof msg, &e);
        if (!h)
            continue;
        int fr = read_features(n->s, h, false);
        if (fr < 0 && fr != -ESTALE) {
            snprintf(msg, sizeof msg, "%s", err_detail());
            nbd_close(h);
            continue;
        }
        if (fr < 0) {
            /* Another export now: not worth trying again, ever. */
            pthread_mutex_lock(&n->s->poison_lock);
            if (!atomic_load(&n->s->changed))
                snprintf(n->s->changed_msg, sizeof n->s->changed_msg, "%s; the device is "
                         "unusable (close and open it again)", err_detail());
            atomic_store(&n->s->changed, true);
            snprintf(msg, sizeof msg, "%s", n->s->changed_msg);
            pthread_mutex_unlock(&n->s->poison_lock);
            nbd_close(h);
            break;
        }
        n->h = h;
        n->broken = false;
        struct nbd_dev *s = n->s;
        n->lost_fua = s->can_fua && nbd_can_fua(h) != 1;
        n->lost_flush = s->can_flush && nbd_can_flush(h) != 1;
        n->lost_trim = s->can_trim && nbd_can_trim(h) != 1;
        n->lost_zero = s->can_zero && nbd_can_zero(h) != 1;
        n->lost_fast_zero = s->can_fast_zero && nbd_can_fast_zero(h) != 1;
        n->lost_multi = s->nconns > 1 && nbd_can_multi_conn(h) != 1;
        break;
    }
    struct nbd_cmd *list = n->retry;
    n->retry = n->retry_tail = NULL;
    while (list) {
        struct nbd_cmd *c = list;
        list = c->next;
        if (c->timed_out) {
            char why[96];
            snprintf(why, sizeof why, "no answer from the server within %" PRId64 " s",
                     n->s->timeout_ms / 1000);
            fail_cmd(n, c, ETIMEDOUT, why);
        } else if (!n->h)
            fail_cmd(n, c, EIO, msg[0] ? msg : "the connection was lost");
        else if (c->tries >= CMD_TRIES)
            fail_cmd(n, c, EIO, "the connection was lost too many times");
        else
            issue(n, c);
    }
    if (!n->h)
        n->broken = true;
}

static void *worker(void *arg)
{
    struct nbd_conn *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->lock);
        struct nbd_cmd *todo = n->pend_head;
        n->pend_head = n->pend_tail = NULL;
        bool stop = n->stop;
        pthread_mutex_unlock(&n->lock);
        if (stop && !todo && !n->inflight && !n->retry)
            break;
        if (todo && connection_lost(n)) {
            /* The new commands wait with the others: sent once connected,
             * failed at once if this reconnect fails (not left to start a
             * whole round of attempts when the one attempt of a broken
             * connection failed). */
            while (todo) {
                struct nbd_cmd *c = todo;
                todo = c->next;
                list_push(&n->retry, &n->retry_tail, c);
            }
            reconnect(n, n->broken ? 1 : RECONNECT_TRIES);
        }
        while (todo) {
            struct nbd_cmd *c = todo;
            todo = c->next;
            issue(n, c);
        }
        process_answered(n);
        if (n->retry || (n->inflight && connection_lost(n))) {
            reconnect(n, RECONNECT_TRIES);
            continue;
        }
        struct pollfd p[2] = {{.fd = n->wake_fd, .events = POLLIN}, {.fd = -1}};
        int dir = 0;
        if (n->h && !connection_lost(n)) {
            p[1].fd = nbd_aio_get_fd(n->h);
            dir = nbd_aio_get_direction(n->h);
            if (dir & LIBNBD_AIO_DIRECTION_READ)
                p[1].events |= POLLIN;
            if (dir & LIBNBD_AIO_DIRECTION_WRITE)
                p[1].events |= POLLOUT;
        }
        int wait = -1;
        if (n->inflight) {
            int64_t first = INT64_MAX;
            for (struct nbd_cmd *c = n->inflight; c; c = c->next_inflight)
                if (c->deadline_ms < first)
                    first = c->deadline_ms;
            int64_t left = first - now_ms();
            wait = left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
        }
        if (poll(p, 2, wait) < 0)
            continue;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(n->wake_fd, &v, sizeof v);
            (void)r;
        }
        if (p[1].fd >= 0 && p[1].revents) {
            int r = 0;
            if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
                r = nbd_aio_notify_read(n->h);
            else if (p[1].revents & POLLOUT)
                r = nbd_aio_notify_write(n->h);
            (void)r; /* a failure shows as a dead handle */
            if (!connection_lost(n) && (p[1].revents & POLLOUT) &&
                (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
                nbd_aio_notify_write(n->h);
        }
        process_answered(n);
        /* Commands past their deadline: the connection goes, they fail. */
        bool late = false;
        int64_t t = now_ms();
        for (struct nbd_cmd *c = n->inflight; c; c = c->next_inflight)
            if (c->deadline_ms <= t)
                late = c->timed_out = true;
        if (n->inflight && (late || connection_lost(n)))
            reconnect(n, RECONNECT_TRIES);
    }
    return NULL;
}

/* ---- Open and close ------------------------------------------------------- */

#define MAX_CONNS 16

/* Starts CONN's worker; 0 or -errno with a message. */
static int conn_start(struct nbd_conn *c)
{
    const char *name = c->s->dev->filename;
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0)
        return err_set(-errno, "%s: eventfd: %s", name, strerror(errno));
    int e = pthread_create(&c->thread, NULL, worker, c);
    if (e)
        return err_set(-e, "%s: could not start a connection's thread: %s", name, strerror(e));
    c->started = true;
    return 0;
}

static void conn_stop(struct nbd_conn *c)
{
    if (c->started) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_mutex_unlock(&c->lock);
        wake(c);
        pthread_join(c->thread, NULL);
    }
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    if (c->h)
        disconnect_and_close(c->h);
    pthread_mutex_destroy(&c->lock);
}

static void nbdc_close(struct vdisk_dev *dev);

/*
 * Options: connections=N (1 to 16, default 1): with a server that allows
 * several connections (multi-conn), requests are spread over N of them in
 * turn; a flush on any covers the writes completed on all, as the NBD
 * protocol promises for multi-conn.  Without multi-conn one is used.
 * timeout=SECONDS (1 to 3600, default 30): see "Timeouts" above.
 * TLS, with an nbds:// or nbds+unix:// URI only (libnbd's calls of the same
 * names; the URI's own tls-certificates= and tls-psk-file= queries work
 * too): tls-certificates=DIR (x509: DIR/ca-cert.pem, and client-cert.pem
 * and client-key.pem when the server asks for a certificate),
 * tls-psk-file=FILE (psktool's USERNAME:HEXKEY lines), tls-username=NAME
 * (the PSK identity or the x509 user; default: the URI's user, else the
 * login name), tls-verify-peer=on|off (x509: the server's certificate
 * checked against the CA and the host name; default on).  Options that
 * name files are refused on a backing file's open, as the URI queries are.
 */
static int tls_opts_take(struct nbd_tls_opts *t, struct opt_set *os, const char *uri,
                         bool local_files)
{
    t->verify_peer = -1;
    if (!os)
        return 0;
    static const char *const keys[] = {"tls-certificates", "tls-psk-file", "tls-username"};
    char **dst[] = {&t->certificates, &t->psk_file, &t->username};
    const char *given = NULL;
    for (size_t i = 0; i < 3; i++) {
        const char *v = opt_take(os, keys[i]);
        if (!v)
            continue;
        given = keys[i];
        if (!*v)
            return err_set(-EINVAL, "the option %s is empty", keys[i]);
        if (i < 2 && !local_files)
            return err_set(-EPERM, "the option %s may not name a local file for a backing "
                           "file", keys[i]);
        if (!(*dst[i] = strdup(v)))
            return err_set(-ENOMEM, "out of memory");
    }
    const char *v = opt_take(os, "tls-verify-peer");
    if (v) {
        bool b;
        int r = opt_bool("tls-verify-peer", v, &b);
        if (r < 0)
            return r;
        t->verify_peer = b;
        given = "tls-verify-peer";
    }
    if (given && strncmp(uri, "nbds:", 5) != 0 && strncmp(uri, "nbds+", 5) != 0)
        return err_set(-EINVAL, "the option %s needs TLS: an nbds:// or nbds+unix:// URI",
                       given);
    if (t->certificates && t->psk_file)
        return err_set(-EINVAL, "the options tls-certificates and tls-psk-file exclude each "
                       "other");
    return 0;
}

static void tls_opts_free(struct nbd_tls_opts *t)
{
    free(t->certificates);
    free(t->psk_file);
    free(t->username);
}

static int nbdc_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)file;
    uint64_t want = 1, timeout = DEFAULT_TIMEOUT_S;
    const char *v = os ? opt_take(os, "connections") : NULL;
    if (v) {
        int r = opt_uint("connections", v, 1, MAX_CONNS, &want);
        if (r < 0)
            return r;
    }
    v = os ? opt_take(os, "timeout") : NULL;
    if (v) {
        int r = opt_uint("timeout", v, 1, MAX_TIMEOUT_S, &timeout);
        if (r < 0)
            return r;
    }
    struct nbd_dev *n = calloc(1, sizeof *n);
    if (!n)
        return err_set(-ENOMEM, "out of memory");
    int tr = tls_opts_take(&n->tls, os, dev->filename, !dev->params.chain);
    if (tr < 0) {
        tls_opts_free(&n->tls);
        free(n);
        return tr;
    }
    n->dev = dev;
    n->timeout_ms = (int64_t)timeout * 1000;
    dev->priv = n;
    pthread_mutex_init(&n->poison_lock, NULL);
    int r;
    n->conns = calloc(want, sizeof *n->conns);
    n->uri = strdup(dev->filename);
    if (!n->conns || !n->uri) {
        free(n->conns);
        free(n->uri);
        tls_opts_free(&n->tls);
        pthread_mutex_destroy(&n->poison_lock);
        free(n);
        dev->priv = NULL;
        return err_set(-ENOMEM, "out of memory");
    }
    for (unsigned i = 0; i < want; i++) {
        n->conns[i].s = n;
        n->conns[i].wake_fd = -1;
        pthread_mutex_init(&n->conns[i].lock, NULL);
    }
    n->nconns = 1;
    /* A name from the caller may name a TLS key file (tls-psk-file=); one
     * that an image names as its backing file may not. */
    n->local_files = !dev->params.chain;
    char msg[256];
    int e;
    struct nbd_conn *c0 = &n->conns[0];
    c0->h = connect_uri(n->uri, n->local_files, &n->tls, n->timeout_ms, NULL, msg, sizeof msg,
                        &e);
    if (!c0->h) {
        r = err_set(-e, "Could not open '%s': %s", dev->filename, msg);
        goto fail;
    }
    if ((r = read_features(n, c0->h, true)) < 0)
        goto fail;
    if (n->read_only && !dev->params.read_only) {
        r = err_set(-EROFS, "Could not open '%s' for writing: the NBD export is read-only "
                    "(open it read-only)", dev->filename);
        goto fail;
    }
    int64_t min = nbd_get_block_size(c0->h, LIBNBD_SIZE_MINIMUM);
    dev->size = n->size;
    dev->align = min > 1 && min <= 65536 ? (uint32_t)min : 1;
    dev->block_size = dev->align > 512 ? dev->align : 512;
    n->max_payload = align_down(n->max_payload, dev->align);
    dev->caps = 0;
    if (!dev->params.read_only) {
        dev->caps |= VDISK_CAN_WRITE;
        if (n->can_trim)
            dev->caps |= VDISK_CAN_DISCARD;
        if (n->can_zero)
            dev->caps |= VDISK_CAN_WRITE_ZEROES | VDISK_CAN_ZERO_UNMAP;
    }
    if (n->can_flush)
        dev->caps |= VDISK_CAN_FLUSH;
    if (n->multi_conn) {
        for (unsigned i = 1; i < want; i++) {
            struct nbd_conn *c = &n->conns[i];
            c->h = connect_uri(n->uri, n->local_files, &n->tls, n->timeout_ms, NULL, msg,
                               sizeof msg, &e);
            if (!c->h) {
                r = err_set(-e, "Could not open '%s' (connection %u of %u): %s",
                            dev->filename, i + 1, (unsigned)want, msg);
                goto fail;
            }
            n->nconns++;
            if ((r = read_features(n, c->h, false)) < 0) {
                r = -EIO; /* (an export that changed between two connects) */
                goto fail;
            }
        }
    }
    for (unsigned i = 0; i < n->nconns; i++)
        if ((r = conn_start(&n->conns[i])) < 0)
            goto fail;
    return 0;
fail:
    n->nconns = (unsigned)want; /* every connection is stopped and freed */
    nbdc_close(dev);
    return r;
}

static void nbdc_close(struct vdisk_dev *dev)
{
    struct nbd_dev *n = dev->priv;
    if (!n)
        return;
    for (unsigned i = 0; i < n->nconns; i++)
        conn_stop(&n->conns[i]);
    free(n->conns);
    free(n->uri);
    tls_opts_free(&n->tls);
    pthread_mutex_destroy(&n->poison_lock);
    free(n);
    dev->priv = NULL;
}

/* ---- Requests ------------------------------------------------------------- */

/* A read-only chunk of zeroes, for servers without WRITE_ZEROES. */
static uint8_t *zero_buf;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_alloc(void)
{
    zero_buf = calloc(1, ZERO_CHUNK);
}

static const uint8_t *zero_buffer(void)
{
    pthread_once(&zero_once, zero_alloc);
    return zero_buf;
}

/* The connection for the next request: each in turn. */
static struct nbd_conn *pick_conn(struct nbd_dev *n)
{
    return &n->conns[atomic_fetch_add(&n->next, 1) % n->nconns];
}

/* A new op with N commands (and one spare for a flush). */
static struct nbd_op *op_new(struct nbd_conn *n, struct vdisk_req *req, size_t ncmds)
{
    struct nbd_op *op = calloc(1, sizeof *op + (ncmds + 1) * sizeof(struct nbd_cmd));
    if (!op)
        return NULL;
    op->n = n;
    op->req = req;
    op->ncmds = ncmds + 1;
    for (size_t i = 0; i <= ncmds; i++)
        op->cmds[i].op = op;
    return op;
}

/* Hands the first COUNT commands of OP to the worker. */
static void op_start(struct nbd_conn *n, struct nbd_op *op, size_t count)
{
    op->pending = (int)count;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < count; i++)
        list_push(&n->pend_head, &n->pend_tail, &op->cmds[i]);
    pthread_mutex_unlock(&n->lock);
    wake(n);
}

static void op_finish_request(struct vdisk_req *req)
{
    struct nbd_op *op = ((struct nbd_req *)req_state(req))->op;
    int err = op->error;
    if (!err && req->op == VDISK_OP_READ && op->bounce)
        iov_from_buf(req->iov, req->iovcnt, 0, op->bounce, req->length);
    if (err)
        req_errorf(req, -err, "%s", op->msg);
    free(op->bounce);
    free(op);
    req_complete(req, -err);
}

static void nbdc_submit(struct vdisk_req *req)
{
    struct nbd_dev *n = req->dev->priv;
    if (atomic_load(&n->changed)) {
        pthread_mutex_lock(&n->poison_lock);
        req_errorf(req, -EIO, "NBD %s failed: %s", op_name(req->op), n->changed_msg);
        pthread_mutex_unlock(&n->poison_lock);
        req_complete(req, -EIO);
        return;
    }
    struct nbd_op *op = NULL;
    size_t count = 0;
    enum cmd_kind kind;
    uint64_t chunk;
    switch (req->op) {
    case VDISK_OP_READ:
    case VDISK_OP_WRITE:
        kind = req->op == VDISK_OP_READ ? CMD_READ : CMD_WRITE;
        chunk = n->max_payload;
        break;
    case VDISK_OP_FLUSH:
        if (!n->can_flush) {
            req_complete(req, 0);
            return;
        }
        kind = CMD_FLUSH;
        chunk = 1;
        break;
    case VDISK_OP_DISCARD:
        if (!n->can_trim) {
            req_complete(req, 0);
            return;
        }
        kind = CMD_TRIM;
        chunk = align_down(NBD_MAX_NONDATA, req->dev->align);
        break;
    case VDISK_OP_WRITE_ZEROES:
        if ((req->flags & VDISK_REQ_NO_FALLBACK) && !n->can_fast_zero) {
            /* As QEMU: without the server's fast zero, no promise of one. */
            req_fail(req, -ENOTSUP, "the NBD server cannot %s (no fallback asked)",
                     n->can_zero ? "promise a fast zero (no NBD_FLAG_SEND_FAST_ZERO)"
                                 : "write zeroes without writing them");
            return;
        }
        if (n->can_zero) {
            kind = CMD_ZERO;
            chunk = align_down(NBD_MAX_NONDATA, req->dev->align);
        } else {
            kind = CMD_WRITE;
            chunk = align_down(ZERO_CHUNK, req->dev->align);
        }
        break;
    default:
        req_fail(req, -EINVAL, "unknown operation");
        return;
    }
    count = kind == CMD_FLUSH ? 1 : (size_t)((req->length + chunk - 1) / chunk);
    if (count == 0) {
        req_complete(req, 0);
        return;
    }
    op = op_new(pick_conn(n), req, count);
    if (!op) {
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    ((struct nbd_req *)req_state(req))->op = op;
    uint8_t *base = NULL;
    if (req->op == VDISK_OP_READ || req->op == VDISK_OP_WRITE) {
        if (req->iovcnt == 1) {
            base = req->iov[0].iov_base;
        } else {
            op->bounce = malloc(req->length ? req->length : 1);
            if (!op->bounce) {
                free(op);
                req_fail(req, -ENOMEM, "out of memory for a %" PRIu64 "-byte buffer",
                         req->length);
                return;
            }
            if (req->op == VDISK_OP_WRITE)
                iov_to_buf(req->iov, req->iovcnt, 0, op->bounce, req->length);
            base = op->bounce;
        }
    } else if (req->op == VDISK_OP_WRITE_ZEROES && kind == CMD_WRITE) {
        base = (uint8_t *)zero_buffer();
        if (!base) {
            free(op);
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
    }
    uint32_t flags = 0;
    if (req->flags & VDISK_REQ_FUA) {
        if (n->can_fua)
            flags |= LIBNBD_CMD_FLAG_FUA;
        else if (n->can_flush)
            op->flush_after = true;
    }
    if (kind == CMD_ZERO && !(req->flags & VDISK_REQ_MAY_UNMAP))
        flags |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (kind == CMD_ZERO && (req->flags & VDISK_REQ_NO_FALLBACK))
        flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    for (size_t i = 0; i < count; i++) {
        struct nbd_cmd *c = &op->cmds[i];
        uint64_t pos = i * chunk;
        c->kind = kind;
        c->off = req->offset + pos;
        c->len = req->length - pos < chunk ? req->length - pos : chunk;
        c->flags = kind == CMD_FLUSH || kind == CMD_TRIM ? 0 : flags;
        if (kind == CMD_FLUSH)
            c->off = c->len = 0;
        if (base)
            c->buf = req->op == VDISK_OP_WRITE_ZEROES ? base : base + pos;
    }
    op_start(op->n, op, count);
}

/* ---- Block status --------------------------------------------------------- */

static int nbdc_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                            struct vdisk_extent *ext)
{
    struct nbd_dev *n = dev->priv;
    if (atomic_load(&n->changed)) {
        pthread_mutex_lock(&n->poison_lock);
        int r = err_set(-EIO, "%s: NBD block status failed: %s", dev->filename,
                        n->changed_msg);
        pthread_mutex_unlock(&n->poison_lock);
        return r;
    }
    ext->flags = VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
    ext->host_offset = off;
    ext->host_file = dev->filename;
    ext->length = len;
    if (!n->have_status) {
        ext->flags |= VDISK_EXT_DATA;
        return 0;
    }
    uint64_t max = align_down(NBD_MAX_NONDATA, dev->align);
    if (len > max)
        len = max;
    struct nbd_op *op = op_new(&n->conns[0], NULL, 1);
    if (!op)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    op->lock = &lock;
    op->cond = &cond;
    op->cmds[0].kind = CMD_STATUS;
    op->cmds[0].off = off;
    op->cmds[0].len = len;
    op_start(op->n, op, 1);
    pthread_mutex_lock(&lock);
    while (!op->done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    pthread_cond_destroy(&cond);
    pthread_mutex_destroy(&lock);
    int r = 0;
    if (op->error) {
        r = err_set(-op->error, "%s: %s", dev->filename, op->msg);
    } else if (!op->st_len) {
        ext->flags |= VDISK_EXT_DATA; /* the server said nothing: data */
    } else {
        ext->length = op->st_len;
        /* As QEMU's nbd driver: a hole has no data, ZERO reads zeroes.  A
         * hole that does not read as zeroes is data here (it must be read). */
        if (!(op->st_flags & LIBNBD_STATE_HOLE) || !(op->st_flags & LIBNBD_STATE_ZERO))
            ext->flags |= VDISK_EXT_DATA;
        if (op->st_flags & LIBNBD_STATE_ZERO)
            ext->flags |= VDISK_EXT_ZERO;
    }
    free(op);
    return r;
}

/* ---- Create --------------------------------------------------------------- */

/*
 * "Creating" a raw image on an export, as qemu-img does for protocols that
 * cannot create: the export must open for writing and hold SIZE bytes.
 */
static int nbdc_create(const char *filename, uint64_t size, struct opt_set *os)
{
    int r = opt_check_all_taken(os, "nbd");
    if (r < 0)
        return r;
    struct vdisk_open_params p = {.cache = VDISK_CACHE_WRITEBACK,
                                  .engine = VDISK_ENGINE_THREADS};
    struct vdisk_dev *dev;
    r = dev_open_file(&dev, filename, NULL, &p);
    if (r < 0)
        return r;
    uint64_t have = dev_size(dev);
    dev_unref(dev);
    if (have < size)
        return err_set(-ENOSPC, "%s: the NBD export (%" PRIu64 " bytes) is smaller than the "
                       "image to create (%" PRIu64 " bytes)", filename, have, size);
    return 0;
}

const struct vdisk_driver vdisk_driver_nbd = {
    .name = "nbd",
    .req_state_size = sizeof(struct nbd_req),
    .protocol = true,
    .open = nbdc_open,
    .close = nbdc_close,
    .submit = nbdc_submit,
    .block_status = nbdc_block_status,
    .create = nbdc_create,
};
