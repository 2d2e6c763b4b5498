/* SPDX-License-Identifier: MIT */
/*
 * vdisk/vhost_user.h: a vhost-user back end (QEMU docs/interop/vhost-user.rst)
 * serving one virtio device model of vdisk/virtio.h (virtio-blk, or the
 * virtio-scsi CD-ROM) to a hypervisor's front end (QEMU's vhost-user-blk
 * and vhost-user-scsi devices) over a Unix socket.  `vdisk serve` is a
 * command line around it.
 *
 *     vdisk_virtio *v;      ... vdisk_virtio_blk_new(&v, dev, &params) ...
 *     vdisk_vhost *h;
 *     if (vdisk_vhost_listen(&h, v, "/run/disk.sock", NULL) < 0) ... error
 *     vdisk_vhost_start(h);              a helper thread serves it, or:
 *     poll vdisk_vhost_get_fd(h) in the program's loop; when readable,
 *     vdisk_vhost_process(h);
 *     ...
 *     vdisk_vhost_free(h);  vdisk_virtio_free(v);  vdisk_close(dev);
 *
 * A handle serves one front end at a time: while one is connected, the
 * listening socket is not watched (the next connection waits in its
 * backlog); when it goes away (or is dropped), everything it gave (memory,
 * rings, fds, features) is forgotten, requests in flight finish, and the
 * next one is accepted (QEMU's -chardev socket,reconnect=N).
 *
 * The front end is not trusted.  Everything from the socket is validated:
 * the header's version and size against the request's payload, the file
 * descriptors that came with it (counts; kick fds must be eventfds; all
 * are made non-blocking), ring indices and sizes, memory regions (count,
 * overflow, the size of the file behind them, sealed against shrinking
 * where it can be).  A malformed request gets a failure reply (when the
 * front end asked for one) and the connection goes on; a message that
 * cannot be read (larger than any request, cut short, with too many fds,
 * not whole within 5 s of its first byte) drops the connection.  Nothing
 * the front end does blocks the caller's loop: the socket is
 * non-blocking, replies are never waited for (a front end that does not
 * read them is dropped), and what it or its guest does wrong is logged
 * through a token bucket (32 lines at once, then one every 2 s; the lines
 * left out are counted in a later line).
 *
 * Errors: calls return 0 (or a value) or a negative errno, with a message
 * from vdisk_get_error().  What a front end does wrong is never an error
 * of a call: it is logged, and the connection dropped where it must be.
 *
 * Thread-safety: a handle is used by one thread at a time: the caller's
 * loop, or the helper thread between vdisk_vhost_start() and
 * vdisk_vhost_stop() (then only vdisk_vhost_stop() and vdisk_vhost_free()
 * may be called).  The model it serves is driven by that same thread: the
 * caller must not use the model (vdisk_virtio_*) meanwhile.  Different
 * handles are independent.
 *
 * Guest memory: the front end's memory files are mapped in this process.
 * A front end may shrink such a file afterwards; touching the lost pages
 * raises SIGBUS.  vdisk_vhost_sigbus_install() makes that survivable (the
 * connection is dropped); without it the signal kills the process.
 */
#ifndef VDISK_VHOST_USER_H
#define VDISK_VHOST_USER_H

#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>
#include <vdisk/error.h>
#include <vdisk/virtio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdisk_vhost vdisk_vhost;

/* vdisk_vhost_params.flags. */
/* No informational lines (connected, disconnected, guest mistakes); what a
 * front end does wrong is still logged. */
#define VDISK_VHOST_QUIET        (1u << 0)
/* Do not offer VHOST_USER_PROTOCOL_F_CONFIG (GET_CONFIG, SET_CONFIG): the
 * front end keeps the configuration space itself.  QEMU's vhost-user-scsi
 * does so and warns about a back end that offers it; its vhost-user-blk
 * needs it. */
#define VDISK_VHOST_NO_CONFIG    (1u << 1)
/* vdisk_vhost_listen: the socket file is mode 0660 and group socket_gid
 * (instead of mode 0600 and the process's group). */
#define VDISK_VHOST_SOCKET_GROUP (1u << 2)

/*
 * Options of a handle; NULL for the defaults.  The caller sets struct_size
 * to sizeof(struct vdisk_vhost_params) (see "Structures that grow" in
 * vdisk/device.h: fields an older caller's version lacks are 0).
 */
struct vdisk_vhost_params {
    size_t struct_size;
    unsigned flags;        /* VDISK_VHOST_* */
    uint32_t socket_gid;   /* with VDISK_VHOST_SOCKET_GROUP */
    /*
     * Where the log lines go, each one line of text without its newline
     * (e.g. "SET_MEM_TABLE: 2 regions but 1 file descriptors"), called on
     * the thread that drives the handle.  NULL: standard error, as
     * "vdisk: NAME: LINE" (NAME: the socket path, or "vhost-user").
     */
    void (*log)(void *opaque, const char *line);
    void *log_opaque;
};
#define VDISK_VHOST_PARAMS_SIZE_V1 VDISK_STRUCT_END(struct vdisk_vhost_params, log_opaque)

/*
 * vdisk_vhost_listen: a handle serving MODEL on a new listening Unix socket
 * PATH (at most 107 bytes).  The socket file appears only once it accepts
 * connections (bound under a temporary name, then renamed), mode 0600
 * whatever the umask (see VDISK_VHOST_SOCKET_GROUP).  An existing socket
 * file on which nothing listens (a stale one) is replaced; any other file,
 * or a live server's socket, is refused (-EEXIST, -EADDRINUSE).
 * vdisk_vhost_free() removes the file if it is still the one made here.
 *
 * MODEL (vdisk_virtio_blk_new, vdisk_virtio_scsi_cdrom_new) stays the
 * caller's and must outlive the handle; the handle sets its host callbacks
 * (vdisk_virtio_set_host: the caller must not change them).  It must have
 * 1 to 256 queues.
 *
 * Returns 0 and *OUT, or -errno (-EINVAL: bad parameters, -ENAMETOOLONG,
 * -ERANGE: queues, a socket error).  Does not block.
 */
int vdisk_vhost_listen(vdisk_vhost **out, vdisk_virtio *model, const char *path,
                       const struct vdisk_vhost_params *params);

/*
 * vdisk_vhost_new: the same over LISTEN_FD, a listening stream socket the
 * caller made (socket activation, an abstract address, ...), which stays
 * the caller's: never closed by the handle, and it must stay open until
 * vdisk_vhost_free().  It is made non-blocking.  LISTEN_FD -1: no
 * listener; front ends come only through vdisk_vhost_add_connection().
 * Returns 0 and *OUT, or -errno.  Does not block.
 */
int vdisk_vhost_new(vdisk_vhost **out, vdisk_virtio *model, int listen_fd,
                    const struct vdisk_vhost_params *params);

/*
 * vdisk_vhost_add_connection: serves CONN_FD, a connected stream socket
 * (one end of a socketpair(2) the hypervisor was given, ...), as the front
 * end.  The handle takes CONN_FD on success (closed when the front end is
 * dropped) and makes it non-blocking; on failure it stays the caller's.
 * Returns 0, -EBUSY (a front end is connected), -EINVAL (not a socket) or
 * -errno.  Does not block.
 */
int vdisk_vhost_add_connection(vdisk_vhost *h, int conn_fd);

/*
 * vdisk_vhost_get_fd: a file descriptor (an epoll instance) that polls
 * readable when vdisk_vhost_process() has work: a connection to accept, a
 * message, a kick, completed requests, a deadline.  It is the handle's:
 * the caller polls it (poll, epoll, select) and never reads or closes it.
 */
int vdisk_vhost_get_fd(const vdisk_vhost *h);

/*
 * vdisk_vhost_process: does what is ready, without blocking: accepts a
 * front end, handles its messages (a batch of 32 at most, so that the
 * caller's other work gets its turn: the fd stays readable while more
 * wait), kicks and completions, drops a front end whose message is late or
 * whose memory vanished.  Returns the number of events handled (0: none
 * was ready), or -errno when the handle itself fails (epoll).  Not while
 * the helper thread runs (-EBUSY).
 *
 * Blocking: it never waits for the front end (its socket and fds are
 * non-blocking).  It waits for the device only when the front end goes
 * away or resets the device: its requests in flight finish first.
 */
int vdisk_vhost_process(vdisk_vhost *h);

/*
 * vdisk_vhost_start: a helper thread serves the handle (polls its fd and
 * processes) until vdisk_vhost_stop().  Returns 0, -EBUSY (already
 * running) or -errno (the thread could not start).
 */
int vdisk_vhost_start(vdisk_vhost *h);

/*
 * vdisk_vhost_stop: stops the helper thread and waits for it to exit (it
 * finishes the event in hand; requests in flight go on).  The front end
 * stays connected: the caller may vdisk_vhost_process() from then on, or
 * start again.  Returns 0, or -EINVAL when no thread runs.
 */
int vdisk_vhost_stop(vdisk_vhost *h);

/* vdisk_vhost_connected: whether a front end is connected (0 or 1). */
int vdisk_vhost_connected(const vdisk_vhost *h);

/* vdisk_vhost_connections: front ends accepted (or added) so far. */
uint64_t vdisk_vhost_connections(const vdisk_vhost *h);

/*
 * vdisk_vhost_disconnect: drops the front end, if any: requests in flight
 * finish (this waits for them), its memory, rings and fds are forgotten,
 * and the listening socket is watched again.
 */
void vdisk_vhost_disconnect(vdisk_vhost *h);

/*
 * vdisk_vhost_free: stops the helper thread, drops the front end (waiting
 * for requests in flight), closes the socket the handle made and removes
 * its file if it is still the one made, and frees.  The model, and a
 * caller's listening socket, stay the caller's.  NULL is a no-op.
 */
void vdisk_vhost_free(vdisk_vhost *h);

/*
 * vdisk_vhost_sigbus_install: installs the process's SIGBUS handler that
 * survives a front end shrinking a memory file under its mapping: a fault
 * inside a mapping of guest memory gets an anonymous page in place of the
 * lost one (reads see zeroes, writes go nowhere the front end sees) and the
 * handle drops that front end at its next vdisk_vhost_process().  Any other
 * SIGBUS goes to the handler installed before (the default: the process
 * dies).  Call it once, before serving, from the main thread; it replaces
 * the process's SIGBUS disposition.  Returns 0 or -errno.
 */
int vdisk_vhost_sigbus_install(void);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_VHOST_USER_H */
