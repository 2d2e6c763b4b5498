/* SPDX-License-Identifier: MIT */
/*
 * lib/vhost_user/vhost_user_internal.h: the vhost-user back end of
 * vdisk/vhost_user.h, inside: the protocol's numbers (QEMU
 * docs/interop/vhost-user.rst), a handle's state, and the two halves that
 * share it:
 *   - handler.c: one message in, its reply out (vu_handle), with no socket
 *     I/O: guest memory mapped and checked, rings started and stopped,
 *     kicks and calls.  The fuzz harness fuzz/vhost_user.c calls it
 *     directly;
 *   - transport.c: the socket (listening, accepting, messages put together
 *     from a non-blocking stream, replies sent without waiting), the
 *     handle's epoll set, the helper thread, the public calls.
 * Everything here runs on the thread that drives the handle, except
 * handler.c's SIGBUS handler (on_sigbus, vdisk_vhost_sigbus_install).
 */
#ifndef VDISK_VHOST_USER_INTERNAL_H
#define VDISK_VHOST_USER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <vdisk/vhost_user.h>
#include <vdisk/virtio.h>

#include "loop_thread.h"
#include "unix_socket.h"

#ifndef VDISK_EXPORT
#define VDISK_EXPORT __attribute__((visibility("default")))
#endif

/* ---- The protocol ------------------------------------------------------------ */

enum {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_RESET_DEVICE = 34,
};

#define VU_VERSION 0x1u
#define VU_FLAG_VERSION_MASK 0x3u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)

#define VU_F_PROTOCOL_FEATURES 30

#define VU_PROTO_F_MQ 0
#define VU_PROTO_F_REPLY_ACK 3
#define VU_PROTO_F_CONFIG 9
#define VU_PROTO_F_RESET_DEVICE 13
#define VU_PROTO_OFFERED                                                           \
    ((1ull << VU_PROTO_F_MQ) | (1ull << VU_PROTO_F_REPLY_ACK) |                    \
     (1ull << VU_PROTO_F_CONFIG) | (1ull << VU_PROTO_F_RESET_DEVICE))

#define VU_VRING_INDEX_MASK 0xffu
#define VU_VRING_NOFD (1u << 8)

#define VU_HDR_SIZE 12u
#define VU_MAX_REGIONS 8u
#define VU_REGION_SIZE 32u
#define VU_MAX_FDS 8u
#define VU_MAX_PAYLOAD 4096u
#define VU_CONFIG_HDR 12u
#define VU_CONFIG_MAX 256u
#define VU_MAX_QUEUES 256u /* ring indices are 8 bits */
/* The largest reply: GET_CONFIG's header and bytes. */
#define VU_MAX_REPLY (VU_CONFIG_HDR + VU_CONFIG_MAX)

/* A message must be whole this long after its first byte came. */
#define VU_MSG_DEADLINE_MS 5000u
/* Messages handled per wake-up of a connection, before the others' turn. */
#define VU_MSG_BATCH 32u

/* Logging a front end or guest can cause: a burst of LOG_BURST lines, then
 * one every LOG_REFILL_MS; the lines left out are counted and reported. */
#define VU_LOG_BURST 32u
#define VU_LOG_REFILL_MS 2000u

/* vu_handle's verdict beyond 0 / -errno: drop the connection. */
#define VU_CLOSE 1

/* What the handle's epoll set tells apart (epoll_event.data.u64: the kind
 * in the high 32 bits, a ring index in the low ones). */
enum vu_ev { VU_EV_LISTEN = 1, VU_EV_CONN, VU_EV_KICK, VU_EV_DONE, VU_EV_TIMER, VU_EV_STOP };

/* ---- State ------------------------------------------------------------------- */

struct vu_region {
    uint64_t gpa, size, uva;
    void *map;      /* the whole mapping (from file offset 0) */
    size_t map_len;
    uint8_t *host;  /* map + mmap_offset: the region's first byte */
    int slot;       /* its entry in the SIGBUS guard (bus_slot), or -1 */
};

struct vu_queue {
    unsigned num;             /* 0: not set */
    bool addr_set;
    uint64_t desc_uva, avail_uva, used_uva;
    uint16_t base;            /* next avail index when the ring (re)starts */
    int kick_fd, call_fd, err_fd;
    bool started;             /* a kick fd came, and no GET_VRING_BASE since */
    bool enabled;             /* SET_VRING_ENABLE 1 */
    bool running;             /* the model serves it */
    bool broken_logged;
    bool call_logged, err_logged; /* a signal could not be written: said once */
    bool call_missed;         /* the model completed requests while there was no
                               * call fd: the next one is signalled at once */
};

/* One message: its header's fields, its payload, the fds that came with it
 * (the handler takes those it keeps and sets their slots to -1). */
struct vu_msg {
    uint32_t request, flags, size;
    uint8_t payload[VU_MAX_PAYLOAD];
    int fds[VU_MAX_FDS];
    unsigned nfds;
};

/* A reply to send: REQUEST's header with the reply flag, SIZE bytes. */
struct vu_reply {
    bool send;
    uint32_t request, size;
    uint8_t payload[VU_MAX_REPLY];
};

struct vdisk_vhost {
    char *path;               /* the socket file made, or NULL */
    char *name;               /* in log lines */
    struct unix_sock_file sock;
    int listen_fd;            /* -1: none */
    bool own_listen;          /* made here: closed at free */
    int conn_fd;              /* the front end, or -1 */
    int epfd;                 /* vdisk_vhost_get_fd */
    int timer_fd;             /* a message's deadline */
    bool timer_armed;
    bool listen_watched;
    unsigned flags;           /* VDISK_VHOST_* */
    void (*log)(void *opaque, const char *line);
    void *log_opaque;
    vdisk_virtio *v;
    unsigned nq;
    uint64_t offered;         /* device features | VU_F_PROTOCOL_FEATURES */
    uint64_t acked;           /* SET_FEATURES */
    uint64_t proto_offered;   /* GET_PROTOCOL_FEATURES */
    uint64_t proto;           /* SET_PROTOCOL_FEATURES */
    struct vu_region reg[VU_MAX_REGIONS];
    unsigned nreg;
    vdisk_guest_mem *mem;
    struct vu_queue *q;       /* nq of them */
    uint64_t connections;
    /* The message being read (read_msg): RX_GOT bytes of header and
     * payload so far, its fds in rx.fds; RX_DEADLINE (ms) once begun. */
    struct vu_msg rx;
    uint8_t rx_hdr[VU_HDR_SIZE];
    size_t rx_got;
    uint64_t rx_deadline;
    struct vu_reply tx;
    /* vu_log's token bucket. */
    unsigned log_tokens;
    uint64_t log_stamp, log_dropped;
    /* The helper thread (vdisk_vhost_start). */
    struct loop_thread loop;
};

/* ---- handler.c ---------------------------------------------------------------- */

/*
 * Prepares H (v, flags, log set; everything else zero) to take a front end:
 * the model's host callbacks, the rings (no fds yet), the features offered.
 * Returns 0, -ENOMEM or -ERANGE (no queues, or more than VU_MAX_QUEUES),
 * with the error message set.
 */
int vu_attach(struct vdisk_vhost *h);

/*
 * Handles M (a whole message, its header checked: version 1, size at most
 * VU_MAX_PAYLOAD) against H's state; the fds H keeps are taken from M (set
 * to -1), the others stay the caller's to close.  *REPLY is what the front
 * end is to be sent (reply->send false: nothing), the acknowledgement of
 * NEED_REPLY included.  No socket I/O; writes to the front end's call and
 * error fds, reads of nothing.  Returns 0 (handled, or a failure the front
 * end is told about) or VU_CLOSE (the connection must be dropped).
 */
int vu_handle(struct vdisk_vhost *h, struct vu_msg *m, struct vu_reply *reply);

/* Forgets what the front end gave: requests in flight finish, the memory,
 * the rings and their fds go, the features are cleared. */
void vu_forget_front_end(struct vdisk_vhost *h);

/* Ring I's kick fd is readable. */
void vu_on_kick(struct vdisk_vhost *h, unsigned i);

/* Which of H's regions the SIGBUS handler caught a fault in (-1: none). */
int vu_mem_vanished(const struct vdisk_vhost *h);

/* The name of request R, for messages. */
const char *vu_req_name(uint32_t r);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t vu_now_ms(void);
/* Every line about what a front end or its guest did: rate-limited (a token
 * bucket per handle), so that neither can flood the log. */
void vu_log(struct vdisk_vhost *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An informational line (connected, disconnected): not with
 * VDISK_VHOST_QUIET, and through the same bucket. */
void vu_info(struct vdisk_vhost *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports the lines left out by the token bucket, if any. */
void vu_log_flush(struct vdisk_vhost *h);
/* Closes *FD if open and sets it to -1. */
void vu_close_fd(int *fd);

/* ---- transport.c ---------------------------------------------------------------- */

/* Drops the front end (vu_forget_front_end), closes its connection, and
 * watches the listening socket again. */
void vu_disconnect(struct vdisk_vhost *h);

#endif /* VDISK_VHOST_USER_INTERNAL_H */
