/* SPDX-License-Identifier: MIT */
/*
 * lib/nbd/nbd_internal.h: the NBD server of vdisk/nbd.h, inside: the
 * protocol's numbers (NetworkBlockDevice/nbd doc/proto.md), the limits, a
 * connection's state, and the two halves that share it:
 *   - handler.c: the bytes a connection wants next (nbd_rx_want) and what
 *     is done when they came (nbd_rx_done): the handshake's options and
 *     replies, the requests checked and started on the connection's queue,
 *     the replies queued (nbd_conn.tx) as they complete.  No socket I/O:
 *     the fuzz harness fuzz/nbd.c feeds it bytes directly;
 *   - transport.c: the sockets (listening on TCP or Unix, accepting, reading
 *     into what the handler wants, sending the replies without waiting),
 *     the handle's epoll set, the deadlines, the helper thread, the public
 *     calls;
 *   - tls.c: TLS with GnuTLS (the credentials, a connection's session once
 *     NBD_OPT_STARTTLS is acknowledged); handler.c only refuses options
 *     until TLS is up (NBD_REP_ERR_TLS_REQD), transport.c runs the
 *     handshake and then reads and sends through the session.
 * Everything runs on the thread that drives the handle.
 */
#ifndef VDISK_NBD_INTERNAL_H
#define VDISK_NBD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/nbd.h>
#include <vdisk/queue.h>

#include "loop_thread.h"
#include "unix_socket.h"

#ifndef VDISK_EXPORT
#define VDISK_EXPORT __attribute__((visibility("default")))
#endif

/* ---- The protocol ---------------------------------------------------------- */

#define NBD_MAGIC             0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC        0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC         0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC     0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* Options. */
enum {
    NBD_OPT_EXPORT_NAME = 1,
    NBD_OPT_ABORT = 2,
    NBD_OPT_LIST = 3,
    NBD_OPT_STARTTLS = 5,
    NBD_OPT_INFO = 6,
    NBD_OPT_GO = 7,
    NBD_OPT_STRUCTURED_REPLY = 8,
    NBD_OPT_LIST_META_CONTEXT = 9,
    NBD_OPT_SET_META_CONTEXT = 10,
};

/* Option replies. */
#define NBD_REP_ACK          1u
#define NBD_REP_SERVER       2u
#define NBD_REP_INFO         3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR(n)       ((1u << 31) | (n))
#define NBD_REP_ERR_UNSUP    NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY   NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID  NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN  NBD_REP_ERR(6)
#define NBD_REP_ERR_TOO_BIG  NBD_REP_ERR(9)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT      0u
#define NBD_INFO_NAME        1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE  3u

/* Commands and their flags. */
enum {
    NBD_CMD_READ = 0,
    NBD_CMD_WRITE = 1,
    NBD_CMD_DISC = 2,
    NBD_CMD_FLUSH = 3,
    NBD_CMD_TRIM = 4,
    NBD_CMD_CACHE = 5,
    NBD_CMD_WRITE_ZEROES = 6,
    NBD_CMD_BLOCK_STATUS = 7,
};
#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Structured replies. */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0u
#define NBD_REPLY_TYPE_OFFSET_DATA   1u
#define NBD_REPLY_TYPE_OFFSET_HOLE   2u
#define NBD_REPLY_TYPE_BLOCK_STATUS  5u
#define NBD_REPLY_TYPE_ERROR         32769u

/* Error values on the wire. */
#define NBD_EPERM     1u
#define NBD_EIO       5u
#define NBD_ENOMEM    12u
#define NBD_EINVAL    22u
#define NBD_ENOSPC    28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP   95u
#define NBD_ESHUTDOWN 108u

/* base:allocation's bits. */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* The meta contexts served, by id. */
#define NBD_CTX_BASE_ALLOCATION 1u
#define NBD_CTX_ALLOCATION_DEPTH 2u
#define NBD_CTX_DIRTY_BITMAP 3u   /* qemu:dirty-bitmap:NAME (vdisk_nbd.bitmap) */

/* Sizes on the wire. */
#define NBD_GREETING_SIZE 18u   /* NBDMAGIC, IHAVEOPT, handshake flags */
#define NBD_OPT_HDR_SIZE 16u    /* IHAVEOPT, option, length */
#define NBD_OPT_REPLY_HDR 20u   /* magic, option, type, length */
#define NBD_REQ_SIZE 28u
#define NBD_SIMPLE_HDR 16u
#define NBD_STRUCT_HDR 20u

/* ---- Limits -------------------------------------------------------------------- */

/* The largest READ or WRITE (NBD_INFO_BLOCK_SIZE's maximum); a larger
 * WRITE drops the connection, a larger READ gets EINVAL. */
#define NBD_MAX_PAYLOAD (32u << 20)
/* The preferred block size advertised. */
#define NBD_PREF_BLOCK 4096u
/* The largest option payload: a larger one drops the connection. */
#define NBD_MAX_OPT (64u << 10)
/* Names and descriptions (the spec's limit on strings). */
#define NBD_MAX_STRING 4096u
/* Meta context queries in one option. */
#define NBD_MAX_QUERIES 128u
/* Requests in flight on one connection. */
#define NBD_MAX_IN_FLIGHT 64u
/* A connection's buffers (payloads, replies waiting to be sent): no new
 * request is read while they hold more than NBD_CONN_MEM - NBD_MAX_PAYLOAD
 * - 64 KiB, so they never hold much more than NBD_CONN_MEM. */
#define NBD_CONN_MEM (64u << 20)
/* During the handshake no option is read while the replies waiting to be
 * sent hold more than this (a client sending options without reading the
 * replies waits, then meets the handshake's deadline). */
#define NBD_HANDSHAKE_MEM (256u << 10)
/* Extents in one BLOCK_STATUS reply chunk. */
#define NBD_MAX_EXTENTS 1024u
/* vdisk_block_status calls (synchronous, on the loop's thread) for one
 * BLOCK_STATUS, and for one connection's wake-up: a connection whose
 * requests used them stops reading until the loop's next turn, so that
 * one client cannot hold the loop for long (each call looks up at most
 * the request's length, below 4 GiB, and returns one extent). */
#define NBD_MAX_STATUS_CALLS 1024u
/* Read-ahead of a connection in the transmission phase (transport.c): one
 * recvmsg takes the bytes the handler wants and up to this many more. */
#define NBD_RBUF_SIZE (64u << 10)
/* Reply buffers of NBD_SPARE_MIN bytes and more that a connection keeps
 * for the next reads once sent, NBD_SPARE_BYTES at most (counted with its
 * buffers in use against NBD_CONN_MEM). */
#define NBD_SPARE_MIN (64u << 10)
#define NBD_SPARE_BYTES (16u << 20)
/* Zero-copy reads (vdisk/nbd.h "Zero-copy reads"; handler.c): READs of
 * NBD_SPLICE_MIN bytes and more are spliced; each connection has a pipe
 * for their data, the handle a scratch pipe, of NBD_PIPE_BIG bytes where
 * the system allows it (CAP_SYS_RESOURCE, or fs.pipe-max-size raised),
 * else NBD_PIPE_SIZE (the default fs.pipe-max-size); a read must fit in
 * both.  Smaller reads are copied: for them the splices' system calls
 * cost more than the copy, and one sendmsg takes many replies. */
#define NBD_SPLICE_MIN (64u << 10)
#define NBD_PIPE_SIZE (1u << 20)
#define NBD_PIPE_BIG (4u << 20)
#define NBD_FD_RESERVE 256u
/* Clients at once. */
#define NBD_MAX_CLIENTS 1024u
/* Token bucket for what clients cause: a burst, then one line per refill. */
#define NBD_LOG_BURST 32u
#define NBD_LOG_REFILL_MS 2000u
/* How often the deadlines are looked at. */
#define NBD_TICK_MS 100u
/* accept() out of file descriptors (EMFILE, ENFILE) or memory: the
 * listening socket is not watched for this long (or until a client goes),
 * so that its pending connection does not wake the loop again and again. */
#define NBD_ACCEPT_PAUSE_MS 250u

/* nbd_rx_done's verdict beyond 0. */
#define NBD_CLOSE 1     /* drop the connection now */

/* ---- State ------------------------------------------------------------------------ */

/* A pipe for zero-copy reads: its ends (non-blocking), its size in pipe
 * buffers (a page each). */
struct nbd_pipe {
    int rd, wr;
    unsigned bufs;
};

/* One reply (or part of the handshake) waiting to be sent: LEN bytes at
 * DATA, OFF of them sent.  DATA points into BUF (an allocation of SIZE
 * bytes counted in the connection's memory).  A zero-copy read's reply
 * (handler.c splice_now) is its header at DATA, then PIPE_LEFT bytes
 * waiting in the connection's pipe (PIPE_LEN in all, also counted in the
 * connection's memory, in PIPE_BUFS pipe buffers). */
struct nbd_tx {
    struct nbd_tx *next;
    uint8_t *data;
    size_t len, off;
    size_t size;
    size_t pipe_len, pipe_left;
    unsigned pipe_bufs;
    uint8_t buf[];
};

/* What the connection is reading. */
enum nbd_rx_state {
    RX_CLIENT_FLAGS,   /* 4 bytes */
    RX_OPT_HDR,        /* 16 bytes */
    RX_OPT_DATA,       /* the option's payload */
    RX_REQ_HDR,        /* 28 bytes */
    RX_REQ_DATA,       /* a WRITE's payload */
    RX_NONE,           /* nothing more (aborted, disconnecting) */
};

struct nbd_req;
struct nbd_tls;

/* Where a connection is with TLS (only with a handle that has TLS). */
enum nbd_tls_state {
    NBD_TLS_NONE,      /* plain: only STARTTLS and ABORT are served */
    NBD_TLS_STARTING,  /* STARTTLS acknowledged: nothing is read until the
                        * ack is sent, then the TLS handshake begins */
    NBD_TLS_HANDSHAKE, /* the TLS handshake runs (tls.c) */
    NBD_TLS_UP,        /* the rest runs over the TLS session */
};

struct nbd_conn {
    struct vdisk_nbd *srv;
    unsigned slot;             /* its index in srv->conns */
    int fd;                    /* -1 in the fuzz harness */
    unsigned ev;               /* epoll events watched now */
    vdisk_queue *q;            /* made at the end of the handshake */
    enum nbd_rx_state rx;
    uint8_t hdr[NBD_REQ_SIZE]; /* flags, option or request header */
    size_t got;                /* bytes of the current item read */
    uint8_t *data;             /* option payload, or the write's request */
    size_t data_len;
    struct nbd_req *wreq;      /* the WRITE whose payload is read */
    bool no_zeroes, structured, transmission, closing;
    uint32_t opt;              /* the option being read */
    uint16_t tflags;           /* transmission flags sent */
    bool ctx_base, ctx_depth;  /* meta contexts selected */
    bool ctx_bitmap;
    bool q_watched;            /* its queue's fd is in the epoll set */
    bool ending;               /* nbd_conn_end: no request is started any more */
    bool hup;                  /* the socket hung up: no longer polled, dropped once
                                * its requests are done */
    bool abandoned;            /* nbd_conn_abandon: the client is gone, its socket
                                * closed; freed once its requests are done */
    unsigned in_flight;
    unsigned status_calls;     /* vdisk_block_status calls since the wake-up began */
    size_t mem;                /* bytes of buffers held */
    struct nbd_tx *tx_head, *tx_tail;
    uint64_t deadline;         /* ms: the handshake's end, or a request's stall
                                * (now + request_ms at each byte of it); 0: none */
    uint64_t tx_stall;         /* ms: when the replies began waiting; 0: none */
    uint64_t id;               /* for log lines */
    enum nbd_tls_state tls_state;
    void *tls_session;         /* gnutls_session_t (tls.c), or NULL */
    bool tls_pending;          /* tls.c: the handshake wants the socket writable */
    /* transport.c, in the transmission phase: bytes read ahead of what the
     * handler asked for (the next requests), NBD_RBUF_SIZE bytes from
     * rbuf, rb_off..rb_len of them not handed over yet. */
    uint8_t *rbuf;
    size_t rb_off, rb_len;
    /* handler.c: large reply buffers kept for the next reads, spare_bytes
     * in all (not in mem). */
    struct nbd_tx *spare;
    size_t spare_bytes;
    /* handler.c, zero-copy reads: the pipe with their data (in the order
     * of their replies in tx_head), the pipe buffers it holds; reads
     * waiting for room in it (in flight), linked through their next;
     * PIPE_ROOM: a reply's data left the pipe since settle looked. */
    struct nbd_pipe *pipe;
    unsigned pipe_bufs;
    bool no_pipe;              /* none could be made, or it broke */
    bool pipe_room;
    struct nbd_req *sp_head, *sp_tail;
};

struct vdisk_nbd {
    vdisk_dev *dev;
    uint64_t size;
    bool read_only;
    unsigned flags;            /* VDISK_NBD_* */
    char *export_name, *description;
    char *bitmap, *bitmap_ctx; /* a dirty bitmap served, its context's name */
    unsigned max_clients;
    unsigned handshake_ms, request_ms;
    void (*log)(void *opaque, const char *line);
    void *log_opaque;
    /* Sockets. */
    char *path;                /* Unix socket made, or NULL */
    struct unix_sock_file sock;
    int listen_fd;
    bool own_listen, listen_watched;
    uint16_t port;
    int epfd, timer_fd;
    bool timer_armed;
    uint64_t accept_retry;     /* ms: when the paused listening socket is
                                * watched again; 0: not paused */
    bool accept_failing;       /* accept() failed for want of resources
                                * (logged once until an accept works) */
    struct nbd_conn **conns;   /* max_clients slots */
    unsigned nconns;
    uint64_t connections;
    uint64_t served;           /* connections that reached transmission */
    /* The token bucket. */
    unsigned log_tokens;
    uint64_t log_stamp, log_dropped;
    struct loop_thread loop;   /* the helper thread */
    /* TLS (tls.c): the credentials, or NULL when TLS is off; the eventfd
     * that wakes the loop for plaintext GnuTLS holds already decrypted
     * (the socket itself may no longer poll readable). */
    struct nbd_tls *tls;
    int kick_fd;
    bool kicked;
    /* Zero-copy reads: the scratch pipe (empty between reads; made on
     * first use), the bytes sent so. */
    struct nbd_pipe *scratch;
    uint64_t spliced;
    /* Connections' pipes made, and how many may be (a quarter of the file
     * descriptors RLIMIT_NOFILE allows above NBD_FD_RESERVE, so that
     * they never take what sockets and images need). */
    unsigned npipes, max_pipes;
};

/* ---- handler.c ------------------------------------------------------------------ */

/* Sets up C (srv, fd, slot set, everything else zero) for a new client:
 * the greeting queued, the client's flags awaited.  Returns 0 or -ENOMEM. */
int nbd_conn_start(struct nbd_conn *c);

/* Where the next bytes go: *DST and how many are wanted (0: none now:
 * requests in flight or buffers full, or nothing more will be read). */
size_t nbd_rx_want(struct nbd_conn *c, uint8_t **dst);

/* The N bytes asked for (N at most what nbd_rx_want said) came.  Returns
 * 0, or NBD_CLOSE when the connection must be dropped (logged).  Replies
 * are queued on c->tx_head. */
int nbd_rx_got(struct nbd_conn *c, size_t n);

/* Whether C is done: closing, nothing in flight, nothing left to send. */
bool nbd_conn_finished(const struct nbd_conn *c);

/* The client of C is gone while requests are in flight: stops reading,
 * frees its buffers and queued replies; the requests in flight complete
 * later without a reply (C and its queue stay until then).  Never waits. */
void nbd_conn_abandon(struct nbd_conn *c);

/* Ends C: waits for its requests in flight, frees its queue, buffers and
 * replies (C itself stays the caller's). */
void nbd_conn_end(struct nbd_conn *c);

/* Removes N sent bytes from the front of C's replies; a zero-copy read's
 * reply goes once its pipe is sent too (N 0: frees what is all sent). */
void nbd_tx_sent(struct nbd_conn *c, size_t n);

/* Closes and frees *P (NULL: nothing); *P becomes NULL. */
void nbd_pipe_free(struct nbd_pipe **p);

/* c->pipe_room: the reads waiting for room in C's pipe go on as far as
 * there is room.  Returns 0 or NBD_CLOSE. */
int nbd_resume_reads(struct nbd_conn *c);

/* ---- tls.c ----------------------------------------------------------------------- */

/* The handle's credentials for MODE (VDISK_NBD_TLS_X509 or _PSK) from DIR
 * (x509: ca-cert.pem, ca-crl.pem, server-cert.pem, server-key.pem; PSK:
 * keys.psk), the client's certificate required and verified when
 * VERIFY_PEER (x509).  Returns 0 and *OUT, or -errno with a message. */
int nbd_tls_new(struct nbd_tls **out, unsigned mode, const char *dir, bool verify_peer);
void nbd_tls_free(struct nbd_tls *t);

/* STARTTLS was acknowledged and sent: C's TLS session is made and its
 * handshake begins.  Returns 0 or -errno (C is to be dropped). */
int nbd_tls_begin(struct nbd_conn *c);
/* Runs C's handshake on as far as the socket allows.  Returns 1 when done
 * (the options come next, over TLS), 0 when it waits for the socket
 * (c->tls_pending: writable, else readable), or -1 when it failed (*WHY
 * says why). */
int nbd_tls_handshake(struct nbd_conn *c, const char **why);
/* Reads (plaintext) or sends over C's session: the bytes, 0 at the end of
 * the stream (recv), -EAGAIN, or another -errno (*WHY says why). */
long nbd_tls_recv(struct nbd_conn *c, void *buf, size_t n, const char **why);
long nbd_tls_send(struct nbd_conn *c, const void *buf, size_t n, const char **why);
/* Whether C's session holds plaintext not read yet. */
bool nbd_tls_has_pending(struct nbd_conn *c);
/* Frees C's session (a close_notify sent first, without waiting, when
 * BYE). */
void nbd_tls_end(struct nbd_conn *c, bool bye);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t nbd_now_ms(void);
/* A line about what a client did: rate-limited per handle. */
void nbd_log(struct vdisk_nbd *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An informational line: not with VDISK_NBD_QUIET. */
void nbd_info(struct vdisk_nbd *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nbd_log_flush(struct vdisk_nbd *s);

#endif /* VDISK_NBD_INTERNAL_H */
