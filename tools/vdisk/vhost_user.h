/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/vhost_user.h: the vhost-user back end of `vdisk serve`: the
 * protocol (QEMU docs/interop/vhost-user.rst), one device's state, and
 * what the process around it (cmd_serve.c: sockets, the monitor, the event
 * loop) calls.  Everything here runs on the loop's one thread, except
 * on_sigbus (a signal handler).
 */
#ifndef VDISK_VHOST_USER_H
#define VDISK_VHOST_USER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <vdisk/virtio.h>

/* ---- The protocol (QEMU docs/interop/vhost-user.rst) ------------------------ */

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

/* A message must be whole this long after its first byte came. */
#define VU_MSG_DEADLINE_MS 5000u
/* Messages handled per wake-up of a connection, before the others' turn. */
#define VU_MSG_BATCH 32u

/* Logging a front end or guest can cause: a burst of LOG_BURST lines, then
 * one every LOG_REFILL_MS; the lines left out are counted and reported. */
#define LOG_BURST 32u
#define LOG_REFILL_MS 2000u

/* A handler's verdict beyond 0 / -errno: drop the connection. */
#define VU_CLOSE 1

/* ---- State ------------------------------------------------------------------ */

enum ev_kind { EV_LISTEN, EV_CONN, EV_KICK, EV_DONE, EV_SIGNAL, EV_MON_LISTEN, EV_MON_CONN };

struct server;

/* A socket file this process made: removed at exit only while it is still
 * the same file (not one that replaced it). */
struct sock_file {
    bool created;
    dev_t dev;
    ino_t ino;
};

struct ev_tag {
    enum ev_kind kind;
    struct server *s;
    unsigned q;
};

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
    struct ev_tag tag;
};

struct msg {
    uint32_t request, flags, size;
    uint8_t payload[VU_MAX_PAYLOAD];
    int fds[VU_MAX_FDS];
    unsigned nfds;
};

struct server {
    const char *kind;         /* "vhost-user-blk" / "vhost-user-scsi" */
    const char *path;
    struct sock_file sock;
    int listen_fd, conn_fd;
    int epfd;
    bool quiet;
    vdisk_virtio *v;
    vdisk_dev *dev;
    unsigned nq;
    uint64_t offered;         /* device features | VU_F_PROTOCOL_FEATURES */
    uint64_t acked;           /* SET_FEATURES */
    uint64_t proto_offered;   /* GET_PROTOCOL_FEATURES */
    uint64_t proto;           /* SET_PROTOCOL_FEATURES */
    struct vu_region reg[VU_MAX_REGIONS];
    unsigned nreg;
    vdisk_guest_mem *mem;
    struct vu_queue *q;       /* nq of them */
    struct ev_tag listen_tag, conn_tag, done_tag;
    uint64_t connections;
    /* The message being read (read_msg): RX_GOT bytes of header and
     * payload so far, its fds in rx.fds; RX_DEADLINE (ms) once begun. */
    struct msg rx;
    uint8_t rx_hdr[VU_HDR_SIZE];
    size_t rx_got;
    uint64_t rx_deadline;
    /* slog's token bucket. */
    unsigned log_tokens;
    uint64_t log_stamp, log_dropped;
};

/* ---- What the loop calls (vhost_user.c) ------------------------------------- */

/*
 * Makes S (its kind, path, epfd, quiet, v and dev set, everything else
 * zero) ready to take a front end: the model's host callbacks, its rings
 * (no fds yet), the features offered (CONFIG only when OFFER_CONFIG), the
 * event tags, the log's token bucket.  Returns 0, -ENOMEM, or -ERANGE (the
 * model has no queues or more than VU_MAX_QUEUES).  free(s->q) after use.
 */
int server_attach(struct server *s, bool offer_config);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t now_ms(void);
/* Reports the log lines left out by the token bucket, if any. */
void log_flush(struct server *s);
/* Whether one more line may be logged now (a token bucket per device). */
bool log_allowed(struct server *s);
/* Every line about what a front end or its guest did (rate-limited). */
void slog(struct server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Closes *FD if open and sets it to -1. */
void close_fd(int *fd);

/* The SIGBUS handler (SA_SIGINFO) that survives a shrunk guest memory file,
 * and which of S's regions it caught (-1: none). */
void on_sigbus(int sig, siginfo_t *si, void *ctx);
int mem_vanished(const struct server *s);

/* Watches S's listening socket for the next front end, or stops. */
void listen_watch(struct server *s, bool on);
/* The loop's events: a connection to accept, a readable connection (a
 * batch of messages), a kick on ring I. */
void on_accept(struct server *s);
void on_message(struct server *s);
void on_kick(struct server *s, unsigned i);
/* Drops the front end: requests in flight finish, its memory, rings and
 * fds are forgotten, the listening socket is watched again. */
void disconnect(struct server *s);
/* Closes the connections whose message is late; returns how long the loop
 * may sleep (ms, -1: no message pending). */
int check_deadlines(struct server *srv, unsigned nsrv);

#endif /* VDISK_VHOST_USER_H */
