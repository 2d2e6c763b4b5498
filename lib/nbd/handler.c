/* SPDX-License-Identifier: MIT */
/*
 * lib/nbd/handler.c: one NBD connection's protocol (see nbd_internal.h),
 * with no socket I/O: the handshake (the greeting, the client's flags, its
 * options and their replies), then the transmission phase: each request's
 * header checked, a WRITE's payload read, the I/O started on the
 * connection's queue, the reply queued when it completes (in completion
 * order).  The transport (transport.c), or the fuzz harness, hands it the
 * bytes it asks for (nbd_rx_want, nbd_rx_got) and sends what it queues.
 *
 * What breaks the framing (a wrong magic, unknown client flags, an option
 * or a WRITE payload larger than the limits, the wrong export name in
 * NBD_OPT_EXPORT_NAME) drops the connection; anything else gets an error
 * reply and the stream goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/bitmap.h>
#include <vdisk/device.h>
#include <vdisk/queue.h>

#include "endian.h"
#include "log_line.h"
#include "nbd_internal.h"
#include "splice.h"

/* A request in the transmission phase. */
struct nbd_req {
    struct nbd_req *next;  /* a READ waiting for room in the pipe */
    struct nbd_conn *c;
    uint64_t cookie, offset;
    uint32_t len;
    uint16_t type, flags;
    struct nbd_tx *tx;     /* READ: the reply, its data read into it */
    uint8_t *payload;      /* WRITE: the data */
    size_t counted;        /* bytes of the request counted in c->mem */
    bool flushing;         /* TRIM with FUA: the flush after the discard */
    struct iovec iov;
};

/* ---- Logging ---------------------------------------------------------------- */

uint64_t nbd_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

void nbd_log_flush(struct vdisk_nbd *s)
{
    if (!s->log_dropped)
        return;
    uint64_t dropped = s->log_dropped;
    s->log_dropped = 0;
    log_line(s->log, s->log_opaque, "nbd", "%" PRIu64 " more message%s suppressed (%u at once, "
             "then one every %u s)", dropped, dropped == 1 ? "" : "s", NBD_LOG_BURST,
             NBD_LOG_REFILL_MS / 1000u);
}

static bool log_allowed(struct vdisk_nbd *s)
{
    uint64_t now = nbd_now_ms();
    if (s->log_tokens >= NBD_LOG_BURST) {
        s->log_stamp = now;
    } else if (now - s->log_stamp >= NBD_LOG_REFILL_MS) {
        uint64_t add = (now - s->log_stamp) / NBD_LOG_REFILL_MS;
        if (add >= NBD_LOG_BURST - s->log_tokens) {
            s->log_tokens = NBD_LOG_BURST;
            s->log_stamp = now;
        } else {
            s->log_tokens += (unsigned)add;
            s->log_stamp += add * NBD_LOG_REFILL_MS;
        }
    }
    if (s->log_tokens == 0) {
        s->log_dropped++;
        return false;
    }
    s->log_tokens--;
    nbd_log_flush(s);
    return true;
}

void nbd_log(struct vdisk_nbd *s, const char *fmt, ...)
{
    if (!log_allowed(s))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vline(s->log, s->log_opaque, "nbd", fmt, ap);
    va_end(ap);
}

void nbd_info(struct vdisk_nbd *s, const char *fmt, ...)
{
    if ((s->flags & VDISK_NBD_QUIET) || !log_allowed(s))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vline(s->log, s->log_opaque, "nbd", fmt, ap);
    va_end(ap);
}

/* ---- Replies -------------------------------------------------------------------- */

/* A reply buffer of SIZE bytes, counted in C's memory; its data starts at
 * the buffer.  A large one is a spare one of the connection when one of
 * about that size is kept (tx_free). */
static struct nbd_tx *tx_new(struct nbd_conn *c, size_t size)
{
    struct nbd_tx *t = NULL;
    if (size >= NBD_SPARE_MIN) {
        for (struct nbd_tx **p = &c->spare; *p; p = &(*p)->next) {
            size_t cap = (*p)->size - sizeof **p;
            if (cap >= size && cap / 2 <= size) {
                t = *p;
                *p = t->next;
                c->spare_bytes -= t->size;
                break;
            }
        }
    }
    if (!t) {
        if (!(t = malloc(sizeof *t + size)))
            return NULL;
        t->size = sizeof *t + size;
    }
    t->next = NULL;
    t->pipe_len = t->pipe_left = 0;
    t->pipe_bufs = 0;
    t->data = t->buf;
    t->len = size;
    t->off = 0;
    c->mem += t->size;
    return t;
}

/* Frees T, or keeps it for the next large reply: reads of 64 KiB and more
 * following one another would otherwise have malloc give their memory
 * back to the system and fault it in again, which costs more than the
 * copy of the data.  The spares (NBD_SPARE_BYTES at most) count in the
 * connection's limit on buffers (nbd_rx_want). */
static void conn_pipe_free(struct nbd_conn *c);

static void tx_free(struct nbd_conn *c, struct nbd_tx *t)
{
    if (t->pipe_len) {
        /* A zero-copy read's reply: its pages leave the pipe.  Unsent
         * (the connection ends): the pipe is no longer in step. */
        c->mem -= t->pipe_len;
        c->pipe_bufs -= t->pipe_bufs;
        c->pipe_room = true;
        if (t->pipe_left) {
            conn_pipe_free(c);
            c->no_pipe = true;
        }
    }
    c->mem -= t->size;
    if (t->size - sizeof *t >= NBD_SPARE_MIN && !c->ending &&
        c->spare_bytes + t->size <= NBD_SPARE_BYTES) {
        t->next = c->spare;
        c->spare = t;
        c->spare_bytes += t->size;
        return;
    }
    free(t);
}

static void tx_push(struct nbd_conn *c, struct nbd_tx *t)
{
    if (c->tx_tail)
        c->tx_tail->next = t;
    else
        c->tx_head = t;
    c->tx_tail = t;
    if (!c->tx_stall)
        c->tx_stall = nbd_now_ms();
}

void nbd_tx_sent(struct nbd_conn *c, size_t n)
{
    while (c->tx_head) {
        struct nbd_tx *t = c->tx_head;
        size_t k = t->len - t->off < n ? t->len - t->off : n;
        t->off += k;
        n -= k;
        if (t->off < t->len || t->pipe_left)
            break;
        c->tx_head = t->next;
        if (!c->tx_head)
            c->tx_tail = NULL;
        tx_free(c, t);
    }
    /* Progress: the stall is measured from now. */
    c->tx_stall = c->tx_head ? nbd_now_ms() : 0;
}

/* Queues an option reply: TYPE for the option being handled, LEN bytes of
 * DATA.  Returns 0 or NBD_CLOSE (no memory). */
static int opt_reply(struct nbd_conn *c, uint32_t type, const void *data, size_t len)
{
    struct nbd_tx *t = tx_new(c, NBD_OPT_REPLY_HDR + len);
    if (!t)
        return NBD_CLOSE;
    be64_store(t->buf, NBD_REP_MAGIC);
    be32_store(t->buf + 8, c->opt);
    be32_store(t->buf + 12, type);
    be32_store(t->buf + 16, (uint32_t)len);
    if (len)
        memcpy(t->buf + NBD_OPT_REPLY_HDR, data, len);
    tx_push(c, t);
    return 0;
}

/* An error reply to the option, with a message for the client's user. */
static int opt_error(struct nbd_conn *c, uint32_t type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int opt_error(struct nbd_conn *c, uint32_t type, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    return opt_reply(c, type, msg, (size_t)n);
}

/* ---- The handshake ---------------------------------------------------------------- */

int nbd_conn_start(struct nbd_conn *c)
{
    struct nbd_tx *t = tx_new(c, NBD_GREETING_SIZE);
    if (!t)
        return -ENOMEM;
    be64_store(t->buf, NBD_MAGIC);
    be64_store(t->buf + 8, NBD_OPTS_MAGIC);
    be16_store(t->buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    tx_push(c, t);
    c->rx = RX_CLIENT_FLAGS;
    c->got = 0;
    c->deadline = nbd_now_ms() + c->srv->handshake_ms;
    return 0;
}

static const char *opt_name(uint32_t o)
{
    switch (o) {
    case NBD_OPT_EXPORT_NAME: return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT: return "NBD_OPT_ABORT";
    case NBD_OPT_LIST: return "NBD_OPT_LIST";
    case NBD_OPT_STARTTLS: return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO: return "NBD_OPT_INFO";
    case NBD_OPT_GO: return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY: return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT: return "NBD_OPT_SET_META_CONTEXT";
    }
    return "an unknown option";
}

/* The transmission flags for C, as they are now. */
static uint16_t trans_flags(const struct nbd_conn *c)
{
    const struct vdisk_nbd *s = c->srv;
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_CACHE;
    /* Multi-conn: the connections share one device, whose flush covers
     * every queue's completed writes; only where several may connect. */
    if (s->max_clients > 1)
        f |= NBD_FLAG_CAN_MULTI_CONN;
    if (s->read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (c->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

static bool name_is_export(const struct nbd_conn *c, const uint8_t *name, size_t len)
{
    const char *e = c->srv->export_name;
    return strlen(e) == len && (len == 0 || memcmp(e, name, len) == 0);
}

/* The connection's queue, made before the export is entered.  Returns 0
 * or -errno (logged). */
static int make_queue(struct nbd_conn *c)
{
    if (c->q)
        return 0;
    int r = vdisk_queue_new(&c->q, c->srv->dev, NBD_MAX_IN_FLIGHT);
    if (r < 0) {
        c->q = NULL;
        nbd_log(c->srv, "client %" PRIu64 ": no queue for it: %s", c->id, vdisk_get_error());
    }
    return r;
}

/* The handshake is over (the queue made): requests come next. */
static int begin_transmission(struct nbd_conn *c)
{
    if (make_queue(c) < 0)
        return NBD_CLOSE;
    c->tflags = trans_flags(c);
    c->transmission = true;
    c->srv->served++;
    c->rx = RX_REQ_HDR;
    c->got = 0;
    c->deadline = 0;
    return 0;
}

static int opt_export_name(struct nbd_conn *c, const uint8_t *d, size_t len)
{
    if (len > NBD_MAX_STRING || !name_is_export(c, d, len)) {
        /* No way to say so in this old option: the connection ends. */
        nbd_log(c->srv, "client %" PRIu64 ": NBD_OPT_EXPORT_NAME: no such export (%zu bytes)",
                c->id, len);
        return NBD_CLOSE;
    }
    struct nbd_tx *t = tx_new(c, 10 + (c->no_zeroes ? 0 : 124));
    if (!t)
        return NBD_CLOSE;
    memset(t->buf, 0, t->len);
    int r = begin_transmission(c);
    if (r) {
        tx_free(c, t);
        return r;
    }
    be64_store(t->buf, c->srv->size);
    be16_store(t->buf + 8, c->tflags);
    tx_push(c, t);
    return 0;
}

static int opt_list(struct nbd_conn *c, size_t len)
{
    if (len)
        return opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    const struct vdisk_nbd *s = c->srv;
    size_t nl = strlen(s->export_name), dl = s->description ? strlen(s->description) : 0;
    uint8_t *b = malloc(4 + nl + dl);
    if (!b)
        return NBD_CLOSE;
    be32_store(b, (uint32_t)nl);
    memcpy(b + 4, s->export_name, nl);
    if (dl)
        memcpy(b + 4 + nl, s->description, dl);
    int r = opt_reply(c, NBD_REP_SERVER, b, 4 + nl + dl);
    free(b);
    return r ? r : opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_INFO and NBD_OPT_GO. */
static int opt_info(struct nbd_conn *c, const uint8_t *d, size_t len, bool go)
{
    const struct vdisk_nbd *s = c->srv;
    if (len < 6)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: %zu bytes of data is too short",
                         opt_name(c->opt), len);
    uint32_t nl = be32_load(d);
    if (nl > len - 6)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: the name's length is past the data",
                         opt_name(c->opt));
    uint16_t nreq = be16_load(d + 4 + nl);
    if (len != 4 + (size_t)nl + 2 + 2 * (size_t)nreq)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: %zu bytes of data for %u information "
                         "requests", opt_name(c->opt), len, nreq);
    if (!name_is_export(c, d + 4, nl))
        return opt_error(c, NBD_REP_ERR_UNKNOWN, "export '%.*s' not present",
                         (int)(nl > 64 ? 64 : nl), (const char *)(d + 4));
    /* GO: the queue first, so that success is answered only once the
     * export can be served (else an error, and the client may try again). */
    if (go && make_queue(c) < 0)
        return opt_error(c, NBD_REP_ERR_PLATFORM, "the server cannot serve the export now: %s",
                         vdisk_get_error());
    bool want_name = false, want_desc = false;
    for (unsigned i = 0; i < nreq; i++) {
        uint16_t type = be16_load(d + 4 + nl + 2 + 2 * i);
        if (type == NBD_INFO_NAME)
            want_name = true;
        else if (type == NBD_INFO_DESCRIPTION)
            want_desc = true;
    }
    uint8_t b[2 + NBD_MAX_STRING];
    uint16_t tflags = trans_flags(c);
    be16_store(b, NBD_INFO_EXPORT);
    be64_store(b + 2, s->size);
    be16_store(b + 10, tflags);
    int r = opt_reply(c, NBD_REP_INFO, b, 12);
    if (!r && want_name) {
        size_t n = strlen(s->export_name);
        be16_store(b, NBD_INFO_NAME);
        memcpy(b + 2, s->export_name, n);
        r = opt_reply(c, NBD_REP_INFO, b, 2 + n);
    }
    if (!r && want_desc && s->description) {
        size_t n = strlen(s->description);
        be16_store(b, NBD_INFO_DESCRIPTION);
        memcpy(b + 2, s->description, n);
        r = opt_reply(c, NBD_REP_INFO, b, 2 + n);
    }
    if (!r) {
        /* Always sent: any alignment works, 32 MiB at most per request. */
        be16_store(b, NBD_INFO_BLOCK_SIZE);
        be32_store(b + 2, 1);
        be32_store(b + 6, NBD_PREF_BLOCK);
        be32_store(b + 10, NBD_MAX_PAYLOAD);
        r = opt_reply(c, NBD_REP_INFO, b, 14);
    }
    if (!r)
        r = opt_reply(c, NBD_REP_ACK, NULL, 0);
    if (!r && go)
        r = begin_transmission(c);
    return r;
}

/* Which contexts the query Q (LEN bytes) names: exactly (SET), or also by
 * its namespace alone (LIST); of those served (AVAIL, a mask by id). */
static unsigned ctx_match(const struct vdisk_nbd *s, const uint8_t *q, size_t len, bool list,
                          unsigned avail)
{
    static const struct {
        const char *name;
        unsigned id;
    } ctx[] = {{"base:allocation", NBD_CTX_BASE_ALLOCATION},
               {"qemu:allocation-depth", NBD_CTX_ALLOCATION_DEPTH}};
    unsigned m = 0;
    for (size_t i = 0; i < sizeof ctx / sizeof ctx[0]; i++) {
        size_t n = strlen(ctx[i].name);
        size_t ns = (size_t)(strchr(ctx[i].name, ':') - ctx[i].name) + 1;
        if ((len == n && memcmp(q, ctx[i].name, n) == 0) ||
            (list && len == ns && memcmp(q, ctx[i].name, ns) == 0))
            m |= 1u << ctx[i].id;
    }
    /* qemu:dirty-bitmap:NAME, listed also for "qemu:dirty-bitmap:". */
    if (s->bitmap_ctx) {
        size_t n = strlen(s->bitmap_ctx);
        static const char pre[] = "qemu:dirty-bitmap:";
        if ((len == n && memcmp(q, s->bitmap_ctx, n) == 0) ||
            (list && ((len == 5 && memcmp(q, "qemu:", 5) == 0) ||
                      (len == sizeof pre - 1 && memcmp(q, pre, len) == 0))))
            m |= 1u << NBD_CTX_DIRTY_BITMAP;
    }
    return m & avail;
}

/* A NBD_REP_META_CONTEXT reply naming context ID, carrying WIRE_ID. */
static int ctx_reply(struct nbd_conn *c, unsigned id, uint32_t wire_id)
{
    const char *name = id == NBD_CTX_BASE_ALLOCATION    ? "base:allocation"
                       : id == NBD_CTX_ALLOCATION_DEPTH ? "qemu:allocation-depth"
                                                        : c->srv->bitmap_ctx;
    uint8_t b[4 + 4096];
    size_t n = strlen(name);
    be32_store(b, wire_id);
    memcpy(b + 4, name, n);
    return opt_reply(c, NBD_REP_META_CONTEXT, b, 4 + n);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static int opt_meta(struct nbd_conn *c, const uint8_t *d, size_t len, bool set)
{
    const char *on = opt_name(c->opt);
    unsigned avail = 1u << NBD_CTX_BASE_ALLOCATION;
    if (c->srv->flags & VDISK_NBD_ALLOCATION_DEPTH)
        avail |= 1u << NBD_CTX_ALLOCATION_DEPTH;
    if (c->srv->bitmap_ctx)
        avail |= 1u << NBD_CTX_DIRTY_BITMAP;
    if (set) {
        /* The spec: SET replaces the selection, also when it fails. */
        c->ctx_base = false;
        c->ctx_depth = false;
        c->ctx_bitmap = false;
    }
    if (set && !c->structured)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: structured replies were not negotiated",
                         on);
    if (len < 8)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: %zu bytes of data is too short", on, len);
    uint32_t nl = be32_load(d);
    if (nl > len - 8)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: the name's length is past the data", on);
    size_t p = 4 + (size_t)nl;
    uint32_t nq = be32_load(d + p);
    p += 4;
    if (nq > NBD_MAX_QUERIES)
        return opt_error(c, NBD_REP_ERR_TOO_BIG, "%s: %" PRIu32 " queries (at most %u)", on, nq,
                         NBD_MAX_QUERIES);
    unsigned m = 0;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - p < 4)
            return opt_error(c, NBD_REP_ERR_INVALID, "%s: query %" PRIu32 " is past the data",
                             on, i);
        uint32_t ql = be32_load(d + p);
        p += 4;
        if (ql > len - p)
            return opt_error(c, NBD_REP_ERR_INVALID, "%s: query %" PRIu32 " is past the data",
                             on, i);
        m |= ctx_match(c->srv, d + p, ql, !set, avail);
        p += ql;
    }
    if (p != len)
        return opt_error(c, NBD_REP_ERR_INVALID, "%s: %zu bytes of data after the queries", on,
                         len - p);
    if (!name_is_export(c, d + 4, nl))
        return opt_error(c, NBD_REP_ERR_UNKNOWN, "export '%.*s' not present",
                         (int)(nl > 64 ? 64 : nl), (const char *)(d + 4));
    if (nq == 0 && !set)
        m = avail;
    if (set) {
        c->ctx_base = m & (1u << NBD_CTX_BASE_ALLOCATION);
        c->ctx_depth = m & (1u << NBD_CTX_ALLOCATION_DEPTH);
        c->ctx_bitmap = m & (1u << NBD_CTX_DIRTY_BITMAP);
    }
    int r = 0;
    /* LIST's replies carry id 0 (the spec: reserved, SHOULD be zero). */
    for (unsigned id = NBD_CTX_BASE_ALLOCATION; !r && id <= NBD_CTX_DIRTY_BITMAP; id++)
        if (m & (1u << id))
            r = ctx_reply(c, id, set ? id : 0);
    return r ? r : opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* With TLS configured: STARTTLS, and what every other option gets until
 * TLS is up (the spec's NBD_REP_ERR_TLS_REQD).  Returns -1 when the option
 * is served as usual. */
static int tls_gate(struct nbd_conn *c, size_t len)
{
    if (c->opt == NBD_OPT_STARTTLS) {
        if (c->tls_state == NBD_TLS_UP)
            return opt_error(c, NBD_REP_ERR_INVALID, "TLS is negotiated already");
        if (len)
            return opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
        /* Nothing more is read: once the ack is sent the TLS handshake
         * begins (transport.c, tls.c). */
        c->tls_state = NBD_TLS_STARTING;
        c->rx = RX_NONE;
        return opt_reply(c, NBD_REP_ACK, NULL, 0);
    }
    if (c->tls_state == NBD_TLS_UP || c->opt == NBD_OPT_ABORT)
        return -1;
    if (c->opt == NBD_OPT_EXPORT_NAME) {
        nbd_log(c->srv, "client %" PRIu64 ": NBD_OPT_EXPORT_NAME without TLS (TLS is "
                "required); closing the connection", c->id);
        return NBD_CLOSE;
    }
    return opt_error(c, NBD_REP_ERR_TLS_REQD, "TLS is required: %s needs NBD_OPT_STARTTLS "
                     "first", opt_name(c->opt));
}

/* The option in c->opt, its LEN bytes of data at D, is whole. */
static int handle_option(struct nbd_conn *c, const uint8_t *d, size_t len)
{
    if (c->srv->tls) {
        int r = tls_gate(c, len);
        if (r >= 0)
            return r;
    }
    switch (c->opt) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(c, d, len);
    case NBD_OPT_ABORT:
        /* Acknowledged, then the connection ends once that is sent. */
        c->closing = true;
        c->rx = RX_NONE;
        return opt_reply(c, NBD_REP_ACK, NULL, 0);
    case NBD_OPT_LIST:
        return opt_list(c, len);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info(c, d, len, c->opt == NBD_OPT_GO);
    case NBD_OPT_STRUCTURED_REPLY:
        if (len)
            return opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
        if (c->structured)
            return opt_error(c, NBD_REP_ERR_INVALID, "structured replies are negotiated already");
        c->structured = true;
        return opt_reply(c, NBD_REP_ACK, NULL, 0);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return opt_meta(c, d, len, c->opt == NBD_OPT_SET_META_CONTEXT);
    case NBD_OPT_STARTTLS:
        /* TLS is not configured (tls_gate serves it otherwise). */
        return opt_error(c, NBD_REP_ERR_UNSUP, "TLS is not configured on this server");
    default:
        return opt_error(c, NBD_REP_ERR_UNSUP, "option %" PRIu32 " is not supported", c->opt);
    }
}

/* ---- Transmission ----------------------------------------------------------------- */

static uint32_t nbd_errno(int err)
{
    switch (-err) {
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EINVAL:
        return NBD_EINVAL;
    case ENOMEM:
        return NBD_ENOMEM;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

/* The NBD error for request Q failing with the negative errno ERR.  The
 * spec: a WRITE_ZEROES without FAST_ZERO MUST NOT fail with NBD_ENOTSUP
 * (SEND_FAST_ZERO is advertised): EIO then. */
static uint32_t req_errno(const struct nbd_req *q, int err)
{
    uint32_t e = nbd_errno(err);
    if (e == NBD_ENOTSUP && q->type == NBD_CMD_WRITE_ZEROES &&
        !(q->flags & NBD_CMD_FLAG_FAST_ZERO))
        e = NBD_EIO;
    return e;
}

/* Whether the reply to a request of TYPE is structured on C. */
static bool structured_reply(const struct nbd_conn *c, uint16_t type)
{
    return c->structured && (type == NBD_CMD_READ || type == NBD_CMD_BLOCK_STATUS);
}

static void req_free(struct nbd_req *q)
{
    struct nbd_conn *c = q->c;
    if (q->tx)
        tx_free(c, q->tx);
    c->mem -= q->counted;
    free(q->payload);
    free(q);
}

/* Queues a reply without data: success (ERR 0) or the negative errno ERR
 * (the NBD value NBD_ERR when not 0).  Returns 0 or NBD_CLOSE. */
static int reply_status(struct nbd_conn *c, uint64_t cookie, uint16_t type, uint32_t nerr)
{
    struct nbd_tx *t;
    if (structured_reply(c, type)) {
        t = tx_new(c, nerr ? NBD_STRUCT_HDR + 6 : NBD_STRUCT_HDR);
        if (!t)
            return NBD_CLOSE;
        be32_store(t->buf, NBD_STRUCTURED_REPLY_MAGIC);
        be16_store(t->buf + 4, NBD_REPLY_FLAG_DONE);
        be16_store(t->buf + 6, nerr ? NBD_REPLY_TYPE_ERROR : NBD_REPLY_TYPE_NONE);
        be64_store(t->buf + 8, cookie);
        be32_store(t->buf + 16, nerr ? 6 : 0);
        if (nerr) {
            be32_store(t->buf + 20, nerr);
            be16_store(t->buf + 24, 0);
        }
    } else {
        t = tx_new(c, NBD_SIMPLE_HDR);
        if (!t)
            return NBD_CLOSE;
        be32_store(t->buf, NBD_SIMPLE_REPLY_MAGIC);
        be32_store(t->buf + 4, nerr);
        be64_store(t->buf + 8, cookie);
    }
    tx_push(c, t);
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t z[256];
    while (n >= sizeof z) {
        if (memcmp(p, z, sizeof z))
            return false;
        p += sizeof z;
        n -= sizeof z;
    }
    return n == 0 || memcmp(p, z, n) == 0;
}

/* Queues a structured reply saying that the whole of Q's range is a hole.
 * Returns 0, or -ENOMEM. */
static int hole_reply(struct nbd_conn *c, const struct nbd_req *q)
{
    struct nbd_tx *h = tx_new(c, NBD_STRUCT_HDR + 12);
    if (!h)
        return -ENOMEM;
    be32_store(h->buf, NBD_STRUCTURED_REPLY_MAGIC);
    be16_store(h->buf + 4, NBD_REPLY_FLAG_DONE);
    be16_store(h->buf + 6, NBD_REPLY_TYPE_OFFSET_HOLE);
    be64_store(h->buf + 8, q->cookie);
    be32_store(h->buf + 16, 12);
    be64_store(h->buf + 20, q->offset);
    be32_store(h->buf + 28, q->len);
    tx_push(c, h);
    return 0;
}

/* The header of a structured reply with all of Q's data (28 bytes at H). */
static void data_header(uint8_t *h, const struct nbd_req *q)
{
    be32_store(h, NBD_STRUCTURED_REPLY_MAGIC);
    be16_store(h + 4, NBD_REPLY_FLAG_DONE);
    be16_store(h + 6, NBD_REPLY_TYPE_OFFSET_DATA);
    be64_store(h + 8, q->cookie);
    be32_store(h + 16, 8 + q->len);
    be64_store(h + 20, q->offset);
}

/* The header of a simple reply of success (16 bytes at H). */
static void simple_header(uint8_t *h, uint64_t cookie)
{
    be32_store(h, NBD_SIMPLE_REPLY_MAGIC);
    be32_store(h + 4, 0);
    be64_store(h + 8, cookie);
}

/* ---- Zero-copy reads -------------------------------------------------------------- */

/*
 * A READ of NBD_SPLICE_MIN bytes or more on a plain connection is
 * spliced (lib/splice.c): its bytes go from the page cache into the
 * handle's scratch pipe, then (pipe buffers moved, not copied) to the end
 * of the connection's pipe, which holds the data of its zero-copy replies
 * in the order of its queued replies (c->tx_head); flush_tx sends each
 * one's header, then splices its data from the pipe into the socket.  The
 * scratch pipe comes first so that a splice that fails midway (the file
 * shorter than its mapping says) leaves the connection's pipe whole: the
 * read is then copied as usual.  A read that finds no room in the
 * connection's pipe waits, in order, for the replies before it to leave
 * (nbd_resume_reads): the socket sets the pace, and copying it meanwhile
 * would cost what the splice saves.
 */

/* A pipe of NBD_PIPE_BIG or NBD_PIPE_SIZE bytes, or NULL (the system
 * refused one). */
static struct nbd_pipe *pipe_new(void)
{
    struct nbd_pipe *p = malloc(sizeof *p);
    int fds[2];
    if (!p || pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(p);
        return NULL;
    }
    /* Linux: up to fs.pipe-max-size (1 MiB by default) without
     * CAP_SYS_RESOURCE, and while the user's pipes stay within
     * fs.pipe-user-pages-soft. */
    int size = fcntl(fds[1], F_SETPIPE_SZ, (int)NBD_PIPE_BIG);
    if (size < (int)NBD_PIPE_BIG)
        size = fcntl(fds[1], F_SETPIPE_SZ, (int)NBD_PIPE_SIZE);
    if (size < (int)NBD_PIPE_SIZE) {
        close(fds[0]);
        close(fds[1]);
        free(p);
        return NULL;
    }
    p->rd = fds[0];
    p->wr = fds[1];
    p->bufs = (unsigned)size / 4096u;
    return p;
}

void nbd_pipe_free(struct nbd_pipe **pp)
{
    struct nbd_pipe *p = *pp;
    if (!p)
        return;
    close(p->rd);
    close(p->wr);
    free(p);
    *pp = NULL;
}

/* C's pipe closed (the handle may make another). */
static void conn_pipe_free(struct nbd_conn *c)
{
    if (!c->pipe)
        return;
    nbd_pipe_free(&c->pipe);
    c->srv->npipes--;
}

/* Whether Q may be spliced on C at all. */
static bool splice_allowed(const struct nbd_conn *c, const struct nbd_req *q)
{
    return !(c->srv->flags & VDISK_NBD_NO_SPLICE) && c->fd >= 0 &&
           c->tls_state == NBD_TLS_NONE && !c->no_pipe && !c->ending &&
           q->len >= NBD_SPLICE_MIN && q->len <= NBD_PIPE_BIG;
}

/* Q's data spliced to the end of C's pipe and its reply queued, or a hole
 * queued.  Returns 0 when done; 1 when there is no room in C's pipe
 * now; -1 when Q is to be copied as usual; NBD_CLOSE when C's pipe is
 * broken. */
static int splice_now(struct nbd_conn *c, struct nbd_req *q)
{
    struct vdisk_nbd *s = c->srv;
    if (!c->pipe) {
        if (s->npipes >= s->max_pipes)
            return -1; /* (another connection's may go meanwhile) */
        if (!(c->pipe = pipe_new())) {
            c->no_pipe = true;
            return -1;
        }
        s->npipes++;
    }
    if (!s->scratch && !(s->scratch = pipe_new()))
        return -1;
    bool zero;
    unsigned bufs;
    unsigned cap = c->pipe->bufs < s->scratch->bufs ? c->pipe->bufs : s->scratch->bufs;
    if (splice_pages(q->offset, q->len) > cap)
        return -1; /* it never fits (in pages, as a file's data aligned as the read) */
    unsigned room = c->pipe->bufs - c->pipe_bufs;
    int r = dev_splice_read(c->q, q->offset, q->len, s->scratch->wr,
                            room < s->scratch->bufs ? room : s->scratch->bufs, &bufs, &zero);
    if (r == -ENOSPC)
        return c->pipe_bufs ? 1 : -1; /* (an empty pipe: it never fits) */
    if (r < 0) {
        if (r != -EAGAIN && r != -ENOTSUP)
            nbd_pipe_free(&s->scratch); /* part of it may be in there */
        return -1;
    }
    if (zero)
        return c->structured && hole_reply(c, q) == 0 ? 0 : -1;
    struct nbd_tx *t = tx_new(c, NBD_STRUCT_HDR + 8);
    if (!t) {
        nbd_pipe_free(&s->scratch);
        return -1;
    }
    for (size_t moved = 0; moved < q->len;) {
        ssize_t w = splice(s->scratch->rd, NULL, c->pipe->wr, NULL, q->len - moved,
                           SPLICE_F_NONBLOCK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* (The room was counted: it cannot happen.) */
            nbd_log(s, "client %" PRIu64 ": a zero-copy read cannot move its data: %s", c->id,
                    w < 0 ? strerror(errno) : "the pipe is empty");
            nbd_pipe_free(&s->scratch);
            tx_free(c, t);
            return NBD_CLOSE;
        }
        moved += (size_t)w;
    }
    if (c->structured) {
        data_header(t->data, q);
    } else {
        simple_header(t->data, q->cookie);
        t->len = NBD_SIMPLE_HDR;
    }
    t->pipe_len = t->pipe_left = q->len;
    t->pipe_bufs = bufs;
    c->pipe_bufs += bufs;
    c->mem += q->len;
    tx_push(c, t);
    return 0;
}

/* A READ answered without a copy when it can be.  Returns 0 when its reply
 * is queued, or it waits for room in the pipe (counted in flight); -1 when
 * it is to be read as usual; NBD_CLOSE. */
static int splice_read(struct nbd_conn *c, struct nbd_req *q)
{
    if (!splice_allowed(c, q))
        return -1;
    int r = c->sp_head ? 1 : splice_now(c, q);
    if (r != 1)
        return r;
    q->next = NULL;
    if (c->sp_tail)
        c->sp_tail->next = q;
    else
        c->sp_head = q;
    c->sp_tail = q;
    c->in_flight++;
    return 0;
}

static int start_read(struct nbd_conn *c, struct nbd_req *q);
static int started(struct nbd_conn *c, struct nbd_req *q, int r);

/* Room was made in C's pipe: the reads waiting for it go on, in order.
 * Returns 0 or NBD_CLOSE. */
int nbd_resume_reads(struct nbd_conn *c)
{
    c->pipe_room = false;
    while (c->sp_head) {
        struct nbd_req *q = c->sp_head;
        int r = c->ending ? -1 : splice_now(c, q);
        if (r == 1)
            return 0;
        c->sp_head = q->next;
        if (!c->sp_head)
            c->sp_tail = NULL;
        c->in_flight--;
        if (r == 0 || r == NBD_CLOSE || c->ending) {
            req_free(q); /* answered, or the connection goes */
            if (r == NBD_CLOSE)
                return NBD_CLOSE;
            continue;
        }
        /* Copied after all. */
        int k = started(c, q, start_read(c, q));
        if (k)
            return k;
    }
    return 0;
}

/* Drops the reads waiting for room in C's pipe (the connection ends). */
static void drop_waiting_reads(struct nbd_conn *c)
{
    while (c->sp_head) {
        struct nbd_req *q = c->sp_head;
        c->sp_head = q->next;
        c->in_flight--;
        req_free(q);
    }
    c->sp_tail = NULL;
}

/* The reply to a READ that completed with 0: its data, or a hole where
 * all of it is zero (structured replies only). */
static void read_reply(struct nbd_conn *c, struct nbd_req *q)
{
    struct nbd_tx *t = q->tx;
    uint8_t *data = t->buf + 32;
    if (!c->structured) {
        t->data = data - NBD_SIMPLE_HDR;
        t->len = NBD_SIMPLE_HDR + q->len;
        simple_header(t->data, q->cookie);
    } else if (all_zero(data, q->len) && hole_reply(c, q) == 0) {
        return; /* q->tx is freed with q */
    } else {
        /* (No memory for a hole: the zeroes are sent after all.) */
        t->data = data - NBD_STRUCT_HDR - 8;
        t->len = NBD_STRUCT_HDR + 8 + q->len;
        data_header(t->data, q);
    }
    q->tx = NULL;
    tx_push(c, t);
}

static void req_done(void *user, int result)
{
    struct nbd_req *q = user;
    struct nbd_conn *c = q->c;
    if (result == 0 && q->type == NBD_CMD_TRIM && (q->flags & NBD_CMD_FLAG_FUA) && !q->flushing &&
        !c->ending) {
        /* The discard is done; FUA: flush it. */
        q->flushing = true;
        result = vdisk_aio_flush(c->q, req_done, q);
        if (result == 0)
            return;
    }
    c->in_flight--;
    if (c->abandoned) {
        /* The client is gone: no reply. */
        req_free(q);
        return;
    }
    /* (A fast zero refused is an answer, not a failure worth a line.) */
    if (result < 0 && !(result == -ENOTSUP && (q->flags & NBD_CMD_FLAG_FAST_ZERO)))
        nbd_log(c->srv, "client %" PRIu64 ": request of type %u at %" PRIu64 " (%" PRIu32
                " bytes): %s", c->id, q->type, q->offset, q->len, vdisk_get_error());
    if (result == 0 && q->type == NBD_CMD_READ)
        read_reply(c, q);
    else
        reply_status(c, q->cookie, q->type, result < 0 ? req_errno(q, result) : 0);
    /* (No memory for a reply: the client waits for it in vain; its
     * connection times out when it gives up.  Rare enough.) */
    req_free(q);
}

/* BLOCK_STATUS, answered at once: the extents of each selected context. */
static int block_status(struct nbd_conn *c, struct nbd_req *q)
{
    struct vdisk_nbd *s = c->srv;
    static const unsigned ids[3] = {NBD_CTX_BASE_ALLOCATION, NBD_CTX_ALLOCATION_DEPTH,
                                    NBD_CTX_DIRTY_BITMAP};
    bool sel[3] = {c->ctx_base, c->ctx_depth, c->ctx_bitmap};
    uint32_t ext[3][NBD_MAX_EXTENTS][2];
    unsigned n[3] = {0, 0, 0};
    unsigned max = (q->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
    uint64_t off = q->offset, end = q->offset + q->len;
    /* The device is asked at most NBD_MAX_STATUS_CALLS times (the reply may
     * cover less than the range asked: the client asks again for the rest). */
    for (unsigned calls = 0; (sel[0] || sel[1]) && off < end && calls < NBD_MAX_STATUS_CALLS;
         calls++) {
        struct vdisk_extent e;
        c->status_calls++;
        int r = vdisk_block_status(s->dev, off, end - off, &e);
        if (r < 0) {
            if (n[0] || n[1])
                break;
            nbd_log(s, "client %" PRIu64 ": block status at %" PRIu64 ": %s", c->id, off,
                    vdisk_get_error());
            return reply_status(c, q->cookie, q->type, nbd_errno(r));
        }
        if (e.length == 0 || e.length > end - off)
            e.length = end - off;
        uint32_t val[2] = {
            ((e.flags & VDISK_EXT_DATA) ? 0 : NBD_STATE_HOLE) |
                ((e.flags & VDISK_EXT_ZERO) ? NBD_STATE_ZERO : 0),
            (e.flags & VDISK_EXT_ALLOCATED) ? (uint32_t)(e.depth + 1) : 0,
        };
        bool full = false;
        for (int k = 0; k < 2; k++) {
            if (!sel[k])
                continue;
            if (n[k] && ext[k][n[k] - 1][1] == val[k])
                ext[k][n[k] - 1][0] += (uint32_t)e.length;
            else if (n[k] < max)
                ext[k][n[k]][0] = (uint32_t)e.length, ext[k][n[k]++][1] = val[k];
            else
                full = true;
        }
        if (full)
            break; /* (the extent stays counted in the other context: fine,
                    * each context's extents are a prefix of the range) */
        off += e.length;
    }
    /* The dirty bitmap's extents: 1 dirty, 0 clean. */
    off = q->offset;
    for (unsigned calls = 0; sel[2] && off < end && calls < NBD_MAX_STATUS_CALLS; calls++) {
        uint64_t alen = 0;
        bool adirty = false;
        int r = vdisk_bitmap_status(s->dev, s->bitmap, off, end - off, &alen, &adirty);
        if (r < 0 || alen == 0) {
            if (n[2])
                break;
            nbd_log(s, "client %" PRIu64 ": dirty bitmap status at %" PRIu64 ": %s", c->id,
                    off, r < 0 ? vdisk_get_error() : "an empty extent");
            return reply_status(c, q->cookie, q->type, nbd_errno(r < 0 ? r : -EIO));
        }
        uint64_t l = alen > end - off ? end - off : alen;
        uint32_t v = adirty ? 1 : 0;
        if (n[2] && ext[2][n[2] - 1][1] == v)
            ext[2][n[2] - 1][0] += (uint32_t)l;
        else if (n[2] < max)
            ext[2][n[2]][0] = (uint32_t)l, ext[2][n[2]++][1] = v;
        else
            break;
        off += l;
    }
    size_t len = 0;
    int last = -1;
    for (int k = 0; k < 3; k++)
        if (sel[k]) {
            len += NBD_STRUCT_HDR + 4 + 8 * (size_t)n[k];
            last = k;
        }
    struct nbd_tx *t = tx_new(c, len);
    if (!t)
        return NBD_CLOSE;
    uint8_t *p = t->buf;
    for (int k = 0; k < 3; k++) {
        if (!sel[k])
            continue;
        be32_store(p, NBD_STRUCTURED_REPLY_MAGIC);
        be16_store(p + 4, k == last ? NBD_REPLY_FLAG_DONE : 0);
        be16_store(p + 6, NBD_REPLY_TYPE_BLOCK_STATUS);
        be64_store(p + 8, q->cookie);
        be32_store(p + 16, 4 + 8 * n[k]);
        be32_store(p + 20, ids[k]);
        p += NBD_STRUCT_HDR + 4;
        for (unsigned i = 0; i < n[k]; i++, p += 8) {
            be32_store(p, ext[k][i][0]);
            be32_store(p + 4, ext[k][i][1]);
        }
    }
    tx_push(c, t);
    return 0;
}

/* The flags each command takes.  FUA is taken by every command (SEND_FUA
 * is always advertised, and the spec says the server MUST accept it on all
 * of them, even by ignoring it): it means something only for WRITE, TRIM
 * and WRITE_ZEROES, and is ignored on the others (old QEMU clients send
 * FLUSH with FUA). */
static uint16_t allowed_flags(const struct nbd_conn *c, uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA | (c->structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return NBD_CMD_FLAG_FUA;
    }
}

/* A READ copied through memory: read into its reply buffer.  Returns 0
 * (in flight) or -errno. */
static int start_read(struct nbd_conn *c, struct nbd_req *q)
{
    if (!(q->tx = tx_new(c, 32 + (size_t)q->len)))
        return -ENOMEM;
    q->iov.iov_base = q->tx->buf + 32;
    q->iov.iov_len = q->len;
    return vdisk_aio_preadv(c->q, &q->iov, 1, q->offset, 0, req_done, q);
}

/*
 * The request Q (its payload read, for a WRITE) checked and started.
 * Returns 0 or NBD_CLOSE; Q is owned by the queue (in flight) or freed.
 */
static int start_request(struct nbd_conn *c, struct nbd_req *q)
{
    struct vdisk_nbd *s = c->srv;
    uint32_t err = 0;
    bool writes = q->type == NBD_CMD_WRITE || q->type == NBD_CMD_TRIM ||
                  q->type == NBD_CMD_WRITE_ZEROES;
    if (q->type > NBD_CMD_BLOCK_STATUS || q->type == NBD_CMD_DISC) {
        nbd_log(s, "client %" PRIu64 ": unknown command %u", c->id, q->type);
        err = NBD_EINVAL;
    } else if (q->flags & ~allowed_flags(c, q->type)) {
        nbd_log(s, "client %" PRIu64 ": command %u with flags 0x%x it does not take", c->id,
                q->type, q->flags);
        err = NBD_EINVAL;
    } else if (writes && s->read_only) {
        err = NBD_EPERM;
    } else if (q->type != NBD_CMD_FLUSH &&
               (q->offset > s->size || q->len > s->size - q->offset)) {
        nbd_log(s, "client %" PRIu64 ": command %u at %" PRIu64 " (%" PRIu32 " bytes) is past "
                "the end of the export (%" PRIu64 " bytes)", c->id, q->type, q->offset, q->len,
                s->size);
        /* The spec: ENOSPC for writes (and write zeroes), EINVAL for
         * reads, trims and the rest. */
        err = q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
                                                                          : NBD_EINVAL;
    } else if (q->type == NBD_CMD_READ && q->len > NBD_MAX_PAYLOAD) {
        nbd_log(s, "client %" PRIu64 ": read of %" PRIu32 " bytes (at most %u)", c->id, q->len,
                NBD_MAX_PAYLOAD);
        err = NBD_EINVAL;
    } else if (q->type == NBD_CMD_BLOCK_STATUS && (q->len == 0 || !(c->ctx_base || c->ctx_depth || c->ctx_bitmap))) {
        nbd_log(s, "client %" PRIu64 ": block status %s", c->id,
                q->len ? "with no meta context selected" : "of 0 bytes");
        err = NBD_EINVAL;
    }
    if (err) {
        int r = reply_status(c, q->cookie, q->type, err);
        req_free(q);
        return r;
    }
    int r = 1; /* 1: done at once, success */
    unsigned zflags = 0;
    switch (q->type) {
    case NBD_CMD_READ:
        if (q->len == 0)
            break;
        r = splice_read(c, q);
        if (r == 0) {
            if (c->sp_tail != q)
                req_free(q); /* its reply is queued (else it waits for room) */
            return 0;
        }
        if (r == NBD_CLOSE) {
            req_free(q);
            return NBD_CLOSE;
        }
        r = start_read(c, q);
        break;
    case NBD_CMD_WRITE:
        if (q->len == 0)
            break;
        if ((s->flags & VDISK_NBD_DETECT_ZEROES) && all_zero(q->payload, q->len)) {
            zflags = (s->flags & VDISK_NBD_UNMAP) ? VDISK_REQ_MAY_UNMAP : 0;
            if (q->flags & NBD_CMD_FLAG_FUA)
                zflags |= VDISK_REQ_FUA;
            r = vdisk_aio_write_zeroes(c->q, q->offset, q->len, zflags, req_done, q);
            break;
        }
        q->iov.iov_base = q->payload;
        q->iov.iov_len = q->len;
        r = vdisk_aio_pwritev(c->q, &q->iov, 1, q->offset,
                              (q->flags & NBD_CMD_FLAG_FUA) ? VDISK_REQ_FUA : 0, req_done, q);
        break;
    case NBD_CMD_FLUSH:
        r = vdisk_aio_flush(c->q, req_done, q);
        break;
    case NBD_CMD_TRIM:
        /* Without VDISK_NBD_UNMAP a trim is a hint ignored. */
        if (q->len == 0 || !(s->flags & VDISK_NBD_UNMAP))
            break;
        r = vdisk_aio_discard(c->q, q->offset, q->len, req_done, q);
        break;
    case NBD_CMD_WRITE_ZEROES: {
        if (!(q->flags & NBD_CMD_FLAG_NO_HOLE) && (s->flags & VDISK_NBD_UNMAP))
            zflags |= VDISK_REQ_MAY_UNMAP;
        if (q->flags & NBD_CMD_FLAG_FUA)
            zflags |= VDISK_REQ_FUA;
        /* FAST_ZERO: the device zeroes cheaply or fails with -ENOTSUP
         * (VDISK_REQ_NO_FALLBACK), never writes buffers of zeroes. */
        unsigned can = vdisk_can(s->dev);
        bool fast = (can & VDISK_CAN_WRITE_ZEROES) ||
                    ((zflags & VDISK_REQ_MAY_UNMAP) && (can & VDISK_CAN_ZERO_UNMAP));
        if (q->flags & NBD_CMD_FLAG_FAST_ZERO) {
            if (!fast) {
                r = -ENOTSUP;
                break;
            }
            zflags |= VDISK_REQ_NO_FALLBACK;
        }
        if (q->len == 0)
            break;
        r = vdisk_aio_write_zeroes(c->q, q->offset, q->len, zflags, req_done, q);
        break;
    }
    case NBD_CMD_CACHE:
        /* A hint: nothing to prefetch into. */
        break;
    case NBD_CMD_BLOCK_STATUS: {
        int k = block_status(c, q);
        req_free(q);
        return k;
    }
    }
    return started(c, q, r);
}

/* Q was started with the result R: 0, in flight (counted); 1, done at
 * once with success; -errno, failed.  Those done are answered and freed.
 * Returns 0 or NBD_CLOSE. */
static int started(struct nbd_conn *c, struct nbd_req *q, int r)
{
    if (r == 0) {
        c->in_flight++;
        return 0;
    }
    int k = reply_status(c, q->cookie, q->type, r < 0 ? req_errno(q, r) : 0);
    req_free(q);
    return k;
}

/* A request's header is whole in c->hdr. */
static int handle_request_header(struct nbd_conn *c)
{
    struct vdisk_nbd *s = c->srv;
    const uint8_t *h = c->hdr;
    if (be32_load(h) != NBD_REQUEST_MAGIC) {
        nbd_log(s, "client %" PRIu64 ": request magic 0x%08" PRIx32 " (expected 0x%08x); "
                "closing the connection", c->id, be32_load(h), NBD_REQUEST_MAGIC);
        return NBD_CLOSE;
    }
    struct nbd_req *q = calloc(1, sizeof *q);
    if (!q)
        return NBD_CLOSE;
    q->c = c;
    q->flags = be16_load(h + 4);
    q->type = be16_load(h + 6);
    q->cookie = be64_load(h + 8);
    q->offset = be64_load(h + 16);
    q->len = be32_load(h + 24);
    c->got = 0;
    if (q->type == NBD_CMD_DISC) {
        /* Requests in flight finish and are answered; nothing more is read. */
        free(q);
        c->closing = true;
        c->rx = RX_NONE;
        c->deadline = 0;
        return 0;
    }
    if (q->type == NBD_CMD_WRITE) {
        if (q->len > NBD_MAX_PAYLOAD) {
            nbd_log(s, "client %" PRIu64 ": write of %" PRIu32 " bytes (at most %u); closing "
                    "the connection", c->id, q->len, NBD_MAX_PAYLOAD);
            free(q);
            return NBD_CLOSE;
        }
        if (q->len) {
            if (!(q->payload = malloc(q->len))) {
                free(q);
                return NBD_CLOSE;
            }
            q->counted = q->len;
            c->mem += q->len;
            c->wreq = q;
            c->rx = RX_REQ_DATA;
            return 0;
        }
    }
    c->deadline = 0;
    return start_request(c, q);
}

/* ---- Reading ---------------------------------------------------------------------- */

size_t nbd_rx_want(struct nbd_conn *c, uint8_t **dst)
{
    switch (c->rx) {
    case RX_CLIENT_FLAGS:
        *dst = c->hdr + c->got;
        return 4 - c->got;
    case RX_OPT_HDR:
        if (c->got == 0 && c->mem > NBD_HANDSHAKE_MEM)
            return 0; /* back-pressure: the client reads its replies first */
        *dst = c->hdr + c->got;
        return NBD_OPT_HDR_SIZE - c->got;
    case RX_OPT_DATA:
        *dst = c->data + c->got;
        return c->data_len - c->got;
    case RX_REQ_HDR:
        if (c->closing)
            return 0;
        if (c->got == 0 && (c->in_flight >= NBD_MAX_IN_FLIGHT ||
                            c->mem + c->spare_bytes + NBD_MAX_PAYLOAD + (64u << 10) >
                                NBD_CONN_MEM))
            return 0; /* back-pressure: the client waits */
        *dst = c->hdr + c->got;
        return NBD_REQ_SIZE - c->got;
    case RX_REQ_DATA:
        *dst = c->wreq->payload + c->got;
        return c->wreq->len - c->got;
    case RX_NONE:
        break;
    }
    return 0;
}

int nbd_rx_got(struct nbd_conn *c, size_t n)
{
    struct vdisk_nbd *s = c->srv;
    if (n == 0)
        return 0;
    /* A request begun must not stall: its deadline starts again with each
     * byte of it (a 32 MiB payload at a slow but steady rate is fine). */
    if (c->transmission && (c->rx == RX_REQ_HDR || c->rx == RX_REQ_DATA))
        c->deadline = nbd_now_ms() + s->request_ms;
    c->got += n;
    switch (c->rx) {
    case RX_CLIENT_FLAGS: {
        if (c->got < 4)
            return 0;
        uint32_t f = be32_load(c->hdr);
        if (!(f & NBD_FLAG_C_FIXED_NEWSTYLE) ||
            (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))) {
            nbd_log(s, "client %" PRIu64 ": client flags 0x%" PRIx32 ": %s; closing the "
                    "connection", c->id, f, (f & NBD_FLAG_C_FIXED_NEWSTYLE)
                    ? "unknown flags" : "not a fixed newstyle client");
            return NBD_CLOSE;
        }
        c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
        c->rx = RX_OPT_HDR;
        c->got = 0;
        return 0;
    }
    case RX_OPT_HDR: {
        if (c->got < NBD_OPT_HDR_SIZE)
            return 0;
        if (be64_load(c->hdr) != NBD_OPTS_MAGIC) {
            nbd_log(s, "client %" PRIu64 ": an option without its magic (IHAVEOPT); closing "
                    "the connection", c->id);
            return NBD_CLOSE;
        }
        c->opt = be32_load(c->hdr + 8);
        uint32_t len = be32_load(c->hdr + 12);
        c->got = 0;
        if (len > NBD_MAX_OPT) {
            nbd_log(s, "client %" PRIu64 ": %s with %" PRIu32 " bytes of data (at most %u); "
                    "closing the connection", c->id, opt_name(c->opt), len, NBD_MAX_OPT);
            return NBD_CLOSE;
        }
        if (len == 0)
            return handle_option(c, NULL, 0);
        if (!(c->data = malloc(len)))
            return NBD_CLOSE;
        c->data_len = len;
        c->mem += len;
        c->rx = RX_OPT_DATA;
        return 0;
    }
    case RX_OPT_DATA: {
        if (c->got < c->data_len)
            return 0;
        c->rx = RX_OPT_HDR;
        c->got = 0;
        int r = handle_option(c, c->data, c->data_len);
        free(c->data);
        c->data = NULL;
        c->mem -= c->data_len;
        c->data_len = 0;
        return r;
    }
    case RX_REQ_HDR:
        if (c->got < NBD_REQ_SIZE)
            return 0;
        return handle_request_header(c);
    case RX_REQ_DATA: {
        if (c->got < c->wreq->len)
            return 0;
        struct nbd_req *q = c->wreq;
        c->wreq = NULL;
        c->rx = RX_REQ_HDR;
        c->got = 0;
        c->deadline = 0;
        return start_request(c, q);
    }
    case RX_NONE:
        break;
    }
    return 0;
}

bool nbd_conn_finished(const struct nbd_conn *c)
{
    return c->closing && c->in_flight == 0 && !c->tx_head;
}

void nbd_conn_abandon(struct nbd_conn *c)
{
    c->abandoned = true;
    c->ending = true;
    c->closing = true;
    if (c->wreq) {
        req_free(c->wreq);
        c->wreq = NULL;
    }
    if (c->data) {
        free(c->data);
        c->mem -= c->data_len;
        c->data = NULL;
        c->data_len = 0;
    }
    drop_waiting_reads(c);
    while (c->tx_head) {
        struct nbd_tx *t = c->tx_head;
        c->tx_head = t->next;
        tx_free(c, t);
    }
    c->tx_tail = NULL;
    conn_pipe_free(c);
    c->rx = RX_NONE;
    c->got = 0;
    c->deadline = 0;
    c->tx_stall = 0;
}

void nbd_conn_end(struct nbd_conn *c)
{
    /* Requests in flight complete (their replies are queued, then freed);
     * none starts another (a trim's flush). */
    c->ending = true;
    vdisk_queue_free(c->q);
    c->q = NULL;
    if (c->wreq) {
        req_free(c->wreq);
        c->wreq = NULL;
    }
    if (c->data) {
        free(c->data);
        c->mem -= c->data_len;
        c->data = NULL;
    }
    drop_waiting_reads(c);
    while (c->tx_head) {
        struct nbd_tx *t = c->tx_head;
        c->tx_head = t->next;
        tx_free(c, t);
    }
    c->tx_tail = NULL;
    conn_pipe_free(c);
    c->rx = RX_NONE;
    while (c->spare) {
        struct nbd_tx *t = c->spare;
        c->spare = t->next;
        free(t);
    }
    c->spare_bytes = 0;
}
