/* SPDX-License-Identifier: MIT */
/*
 * vdisk/nbd.h: an NBD server (the Network Block Device protocol,
 * NetworkBlockDevice/nbd doc/proto.md) exporting one device to clients such
 * as qemu-img, qemu-io, nbdinfo, nbdcopy or the Linux nbd driver, over TCP
 * or a Unix socket.  `vdisk nbd` is a command line around it.
 *
 *     vdisk_dev *dev;       ... vdisk_open(&dev, "disk.qcow2", NULL) ...
 *     vdisk_nbd *h;
 *     struct vdisk_nbd_params p = {.struct_size = sizeof p, .export_name = "disk"};
 *     if (vdisk_nbd_listen_tcp(&h, dev, "127.0.0.1", 10809, &p) < 0) ... error
 *     vdisk_nbd_start(h);                a helper thread serves it, or:
 *     poll vdisk_nbd_get_fd(h) in the program's loop; when readable,
 *     vdisk_nbd_process(h);
 *     ...
 *     vdisk_nbd_free(h);  vdisk_close(dev);
 *
 * Protocol: the fixed newstyle handshake only (an oldstyle or plain
 * newstyle client is refused); options NBD_OPT_EXPORT_NAME, ABORT, LIST,
 * INFO, GO (NBD_INFO_EXPORT, NAME, DESCRIPTION, BLOCK_SIZE),
 * STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation,
 * qemu:allocation-depth with VDISK_NBD_ALLOCATION_DEPTH, and
 * qemu:dirty-bitmap:NAME with vdisk_nbd_params.bitmap); any other
 * option is answered NBD_REP_ERR_UNSUP.
 * NBD_OPT_STARTTLS when TLS is configured (vdisk_nbd_params.tls: x509
 * certificates or pre-shared keys; then TLS is required, as qemu-nbd
 * --tls-creds), else it is unsupported.  Commands READ (DF), WRITE
 * (FUA), FLUSH, TRIM (FUA), WRITE_ZEROES (FUA, NO_HOLE, FAST_ZERO), CACHE,
 * BLOCK_STATUS (REQ_ONE), DISC; FUA is accepted on every command and
 * ignored where it means nothing (READ, FLUSH, CACHE, BLOCK_STATUS).
 * WRITE_ZEROES with FAST_ZERO goes to the device with
 * VDISK_REQ_NO_FALLBACK: NBD_ENOTSUP where zeroes would be written as
 * buffers (partial qcow2 clusters, unaligned edges, a file system without
 * a zeroing fallocate, a block device), as the spec asks.  Requests of one connection run at once
 * (up to 64 in flight) on a vdisk_queue of their own; replies go out in
 * the order requests complete.  NBD_FLAG_CAN_MULTI_CONN is advertised when
 * max_clients is above 1 (as qemu-nbd 7.2 with -e above 1): all
 * connections share the one device of the handle, whose flush
 * (vdisk_aio_flush) covers the writes completed on any of its queues, so a
 * flush on any connection covers the writes every connection saw
 * completed; with one client at a time a second connection would only wait
 * in the backlog, so it is not advertised then.
 *
 * Clients are not trusted.  Every option and request is validated (magic,
 * lengths, names, the command's flags, offset and length within the
 * export) and answered with an error (NBD_REP_ERR_*, or EINVAL, EPERM,
 * ENOSPC, ENOTSUP, EOVERFLOW) where the stream can go on; what breaks the
 * framing (a wrong magic, a write payload above 32 MiB, an option above
 * 64 KiB) drops the connection.  A handshake must end within
 * handshake_timeout_ms of the connection; a request begun (its header and a
 * write's payload, up to 32 MiB) must keep coming: the client is dropped
 * after request_timeout_ms without a byte of it (the deadline starts again
 * with each byte received, so a slow client that keeps sending is served,
 * and a stalled one is dropped whatever it sent before; between requests
 * there is no deadline); a client that does not read its replies
 * for request_timeout_ms is dropped; each connection holds at most about
 * 64 MiB of buffers (it is not read from while it holds more).  Nothing a
 * client does blocks the caller's loop (the sockets are non-blocking): a
 * client that goes (hangs up, resets, is dropped) with requests in flight
 * has its socket closed at once, and its connection is freed once those
 * requests complete (their replies discarded), from the loop as usual.
 * When accept() fails for want of file descriptors (EMFILE, ENFILE) or
 * memory, the listening socket is left alone for 250 ms (or until a
 * client goes) and new clients wait in its backlog; this is logged once
 * until an accept works again.
 * What clients do wrong is logged through a token bucket (32 lines at
 * once, then one every 2 s; the lines left out are counted later).
 *
 * Errors: calls return 0 (or a value) or a negative errno, with a message
 * from vdisk_get_error().  What a client does wrong is never an error of a
 * call: it is logged, and answered or dropped.
 *
 * Ownership: the device stays the caller's and must stay open until
 * vdisk_nbd_free(); each connection uses it through a queue of its own
 * (vdisk_queue_new), on the thread that drives the handle, made before
 * NBD_OPT_GO is answered (when it cannot be made, the GO gets
 * NBD_REP_ERR_PLATFORM with the reason and the handshake goes on).
 *
 * Thread-safety: a handle is used by one thread at a time: the caller's
 * loop, or the helper thread between vdisk_nbd_start() and
 * vdisk_nbd_stop() (then only vdisk_nbd_stop() and vdisk_nbd_free() may be
 * called).  Other threads may use the device meanwhile, as with any queue.
 *
 * TLS: the handshake runs on the connection's non-blocking socket within
 * handshake_timeout_ms (counted from the connection, as the rest of the
 * handshake); a failed TLS handshake (wrong key, an untrusted certificate,
 * bytes that are not TLS) drops the connection with a log line.  GnuTLS
 * is initialised by the library (thread-safe since GnuTLS 3.3).
 *
 * Zero-copy reads: on a connection without TLS, a READ of 64 KiB to 1 MiB
 * (4 MiB where the process may make pipes that large) whose bytes lie as
 * they are in host files (raw images, and qcow2 data clusters that are not
 * compressed or encrypted, in this image or a backing file, their L2 table
 * cached), files opened through the page cache (not cache=none or
 * directsync), all of it in the page cache now, is answered from there:
 * its bytes are spliced from the file into a pipe when the request is read
 * (splice(2): the pages are referenced, not copied) and from the pipe into
 * the socket, so that neither the server nor the kernel copies them on the
 * way out (a range that reads as zeroes is sent as a hole, with structured
 * replies).  Each connection has a pipe of 1 MiB (or 4) for this (two file
 * descriptors, made at its first such read; at most a quarter of the
 * descriptors RLIMIT_NOFILE allows above 256 go to them, 96 pipes with the
 * usual 1024: other connections copy) and the handle one more; a read that
 * finds no room in its connection's pipe waits for the replies before it
 * to leave.  Anything else is read through memory as usual, and so is
 * everything with VDISK_NBD_NO_SPLICE.  What a client can see: the pages
 * are the file's own until the reply is sent, so a write to the same bytes
 * that reaches the device before then (sent by the client before it had
 * the read's reply, or by another client) may show in the reply; NBD
 * leaves overlapping requests in flight unordered.
 *
 * Blocking: vdisk_nbd_process() never waits for a client.  Reads, writes,
 * flushes, trims and write zeroes run asynchronously; BLOCK_STATUS asks the
 * device synchronously (vdisk_block_status), which may read metadata:
 * bounded to 1024 lookups (so at most 1024 extents) per request, and per
 * connection per turn of the loop (a connection that used them is read
 * again at the next turn, after the others), so that a client sending
 * many BLOCK_STATUS requests at once cannot hold the loop for long.  A
 * reply may so cover less than the range asked (the spec allows it; the
 * client asks again for the rest).
 */
#ifndef VDISK_NBD_H
#define VDISK_NBD_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>
#include <vdisk/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_nbd vdisk_nbd;

/* vdisk_nbd_params.flags. */
/* The export is read-only (NBD_FLAG_READ_ONLY): writes, trims and write
 * zeroes fail with EPERM.  Implied by a read-only device. */
#define VDISK_NBD_READ_ONLY     (1u << 0)
/* TRIM deallocates (vdisk_aio_discard), and WRITE_ZEROES without NO_HOLE
 * may deallocate; without it TRIM succeeds doing nothing and zeroes are
 * written allocated (qemu-nbd --discard=unmap versus ignore). */
#define VDISK_NBD_UNMAP         (1u << 1)
/* A write of zeroes only becomes a write zeroes (deallocating when
 * VDISK_NBD_UNMAP is set too): qemu-nbd --detect-zeroes=on / unmap. */
#define VDISK_NBD_DETECT_ZEROES (1u << 2)
/* No informational lines (client connected, disconnected). */
#define VDISK_NBD_QUIET         (1u << 3)
/* With tls = VDISK_NBD_TLS_X509: a client must present a certificate
 * signed by the CA of tls_dir/ca-cert.pem (qemu's verify-peer=on). */
#define VDISK_NBD_TLS_VERIFY_PEER (1u << 4)

/* vdisk_nbd_params.tls: the credentials TLS uses (qemu's tls-creds-x509
 * and tls-creds-psk objects with endpoint=server). */
#define VDISK_NBD_TLS_NONE 0u  /* no TLS: NBD_OPT_STARTTLS is unsupported */
#define VDISK_NBD_TLS_X509 1u  /* tls_dir/server-cert.pem and server-key.pem
                                * (PEM), tls_dir/ca-cert.pem (required with
                                * VDISK_NBD_TLS_VERIFY_PEER, else used when
                                * present), tls_dir/ca-crl.pem when present */
#define VDISK_NBD_TLS_PSK  2u  /* tls_dir/keys.psk: lines "USERNAME:HEXKEY"
                                * (psktool's format) */

/* The meta context qemu:allocation-depth is served (qemu-nbd -A): for
 * each extent, 0 where no layer of the backing chain holds it (it reads
 * as zeroes), else 1 + the depth of the layer that holds it (1: the
 * image itself, 2: its backing file, ...).  Without it only
 * base:allocation is offered. */
#define VDISK_NBD_ALLOCATION_DEPTH (1u << 5)

/* Every READ is copied through memory, never spliced from the page cache
 * (see "Zero-copy reads" above). */
#define VDISK_NBD_NO_SPLICE (1u << 6)

/* The defaults of the limits below. */
#define VDISK_NBD_DEFAULT_PORT          10809
#define VDISK_NBD_HANDSHAKE_TIMEOUT_MS  10000u
#define VDISK_NBD_REQUEST_TIMEOUT_MS    30000u

/*
 * Options of a handle; NULL for the defaults.  The caller sets struct_size
 * to sizeof(struct vdisk_nbd_params) (see "Structures that grow" in
 * vdisk/device.h: fields an older caller's version lacks are 0).  The
 * strings are copied.
 */
struct vdisk_nbd_params {
    size_t struct_size;
    unsigned flags;            /* VDISK_NBD_* */
    const char *export_name;   /* at most 4096 bytes; NULL: "" (the default export) */
    const char *description;   /* at most 4096 bytes; NULL: none */
    unsigned max_clients;      /* connections at once, 1..1024; 0: 1 (qemu-nbd -e) */
    unsigned handshake_timeout_ms; /* 0: VDISK_NBD_HANDSHAKE_TIMEOUT_MS */
    unsigned request_timeout_ms;   /* 0: VDISK_NBD_REQUEST_TIMEOUT_MS */
    /*
     * Where the log lines go, each one line of text without its newline,
     * called on the thread that drives the handle.  NULL: standard error,
     * as "vdisk: nbd: LINE".
     */
    void (*log)(void *opaque, const char *line);
    void *log_opaque;
    /*
     * Since VDISK_NBD_PARAMS_SIZE_V2: TLS.  TLS (VDISK_NBD_TLS_X509 or
     * _PSK) with the credentials in the directory TLS_DIR, read (and
     * checked) when the handle is made: a file missing or malformed fails
     * the call with -ENOENT, -EINVAL or -EACCES and a message naming it.
     * TLS is then required: before NBD_OPT_STARTTLS a client's options
     * get NBD_REP_ERR_TLS_REQD (NBD_OPT_EXPORT_NAME closes the
     * connection; NBD_OPT_ABORT is served), after it the handshake and
     * everything else run over TLS 1.2 or 1.3 (GnuTLS, non-blocking).
     */
    unsigned tls;              /* VDISK_NBD_TLS_*; 0: no TLS */
    const char *tls_dir;       /* required with TLS; copied (read at once) */
    /*
     * Since VDISK_NBD_PARAMS_SIZE_V3: the persistent dirty bitmap BITMAP of
     * the device (vdisk/bitmap.h) is served as the meta context
     * qemu:dirty-bitmap:BITMAP, as qemu-nbd -B serves it: each extent 1
     * where dirty, 0 where clean.  The handle is refused with the bitmap's
     * error (-ENOENT, -EBUSY: inconsistent, -ENOTSUP) when the device has
     * no such usable bitmap.  NULL: none.
     */
    const char *bitmap;
};
#define VDISK_NBD_PARAMS_SIZE_V1 VDISK_STRUCT_END(struct vdisk_nbd_params, log_opaque)
#define VDISK_NBD_PARAMS_SIZE_V2 VDISK_STRUCT_END(struct vdisk_nbd_params, tls_dir)
#define VDISK_NBD_PARAMS_SIZE_V3 VDISK_STRUCT_END(struct vdisk_nbd_params, bitmap)

/*
 * vdisk_nbd_listen_tcp: a handle exporting DEV on a new listening TCP
 * socket bound to ADDR (a numeric IPv4 or IPv6 address or a host name;
 * NULL: "0.0.0.0", every IPv4 address, as qemu-nbd) and PORT (0: one the
 * kernel picks; vdisk_nbd_get_port() says which).  Returns 0 and *OUT, or
 * -errno (-EINVAL: bad parameters, -EADDRINUSE, -ENOENT: ADDR does not
 * resolve, ...).  Does not block (except to resolve a host name).
 */
int vdisk_nbd_listen_tcp(vdisk_nbd **out, vdisk_dev *dev, const char *addr, uint16_t port,
                         const struct vdisk_nbd_params *params);

/*
 * vdisk_nbd_listen_unix: the same on a new listening Unix socket PATH (at
 * most 107 bytes), mode 0600 whatever the umask, appearing only once it
 * listens.  A stale socket file is replaced; any other file, or a live
 * server's socket, is refused (-EEXIST, -EADDRINUSE).  vdisk_nbd_free()
 * removes the file if it is still the one made here.
 */
int vdisk_nbd_listen_unix(vdisk_nbd **out, vdisk_dev *dev, const char *path,
                          const struct vdisk_nbd_params *params);

/*
 * vdisk_nbd_new: the same over LISTEN_FD, a listening stream socket the
 * caller made (socket activation, ...), which stays the caller's (never
 * closed here; it must stay open until vdisk_nbd_free()) and is made
 * non-blocking.  LISTEN_FD -1: clients come only through
 * vdisk_nbd_add_connection().  Returns 0 and *OUT, or -errno.
 */
int vdisk_nbd_new(vdisk_nbd **out, vdisk_dev *dev, int listen_fd,
                  const struct vdisk_nbd_params *params);

/*
 * vdisk_nbd_add_connection: serves CONN_FD, a connected stream socket, as
 * a client (the handshake starts at once).  The handle takes CONN_FD on
 * success (closed when the client goes) and makes it non-blocking; on
 * failure it stays the caller's.  Returns 0, -EBUSY (max_clients are
 * connected), -EINVAL (not a stream socket) or -errno.
 */
int vdisk_nbd_add_connection(vdisk_nbd *h, int conn_fd);

/*
 * vdisk_nbd_get_fd: a file descriptor (an epoll instance) that polls
 * readable when vdisk_nbd_process() has work.  It is the handle's: poll it,
 * never read or close it.
 */
int vdisk_nbd_get_fd(const vdisk_nbd *h);

/*
 * vdisk_nbd_process: does what is ready, without blocking: accepts
 * clients, reads their options and requests, starts I/O, completes it,
 * sends replies, drops clients that are late or misbehave.  Returns the
 * number of events handled (0: none was ready), or -errno when the handle
 * itself fails (epoll).  -EBUSY while the helper thread runs.
 */
int vdisk_nbd_process(vdisk_nbd *h);

/*
 * vdisk_nbd_start: a helper thread serves the handle until
 * vdisk_nbd_stop().  Returns 0, -EBUSY (already running) or -errno.
 * vdisk_nbd_stop: stops it and waits for it (clients stay connected).
 * Returns 0, or -EINVAL when no thread runs.
 */
int vdisk_nbd_start(vdisk_nbd *h);
int vdisk_nbd_stop(vdisk_nbd *h);

/* vdisk_nbd_get_port: the TCP port the handle listens on (0: not TCP). */
uint16_t vdisk_nbd_get_port(const vdisk_nbd *h);

/* vdisk_nbd_clients: clients connected now, counting those gone whose
 * requests in flight have not completed yet (they hold a slot). */
unsigned vdisk_nbd_clients(const vdisk_nbd *h);

/* vdisk_nbd_connections: clients accepted (or added) so far. */
uint64_t vdisk_nbd_connections(const vdisk_nbd *h);

/* vdisk_nbd_served: clients that reached the transmission phase so far
 * (NBD_OPT_GO or NBD_OPT_EXPORT_NAME answered with success); a client that
 * only listed exports, asked NBD_OPT_INFO, or hung up during the
 * handshake does not count.  `vdisk nbd` without -t exits once a served
 * client went and none is connected (as qemu-nbd).  0 for NULL. */
uint64_t vdisk_nbd_served(const vdisk_nbd *h);

/* vdisk_nbd_spliced: bytes of READ replies sent so far without a copy
 * (spliced from the page cache; see "Zero-copy reads" above).  0 for
 * NULL. */
uint64_t vdisk_nbd_spliced(const vdisk_nbd *h);

/*
 * vdisk_nbd_free: stops the helper thread, drops every client (waiting for
 * its requests in flight), closes the socket the handle made and removes
 * its file (Unix) if it is still the one made, and frees.  The device, and
 * a caller's listening socket, stay the caller's.  NULL is a no-op.
 */
void vdisk_nbd_free(vdisk_nbd *h);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_NBD_H */
