/* SPDX-License-Identifier: MIT */
/*
 * tests/vhost/frontend.h: a small vhost-user front end for the tests of
 * `vdisk serve` (vhost_user.c, hostile.c): the server process started and
 * stopped, messages sent and replies read, guest memory in a memfd, split
 * virtqueues built in it, kicks and calls through eventfds, virtio-blk and
 * virtio-scsi requests.  Every helper fails the running check test on an
 * unexpected answer.
 *
 * The protocol's numbers are written out here again on purpose (from QEMU's
 * docs/interop/vhost-user.rst), not shared with the server.
 */
#ifndef VDISK_TESTS_VHOST_FRONTEND_H
#define VDISK_TESTS_VHOST_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "virtio/ring.h" /* lib/virtio/ring.h: the ring flags, feature bits */

/* Requests. */
#define GET_FEATURES 1
#define SET_FEATURES 2
#define SET_OWNER 3
#define RESET_OWNER 4
#define SET_MEM_TABLE 5
#define SET_VRING_NUM 8
#define SET_VRING_ADDR 9
#define SET_VRING_BASE 10
#define GET_VRING_BASE 11
#define SET_VRING_KICK 12
#define SET_VRING_CALL 13
#define SET_VRING_ERR 14
#define GET_PROTOCOL_FEATURES 15
#define SET_PROTOCOL_FEATURES 16
#define GET_QUEUE_NUM 17
#define SET_VRING_ENABLE 18
#define GET_CONFIG 24
#define SET_CONFIG 25

#define F_VERSION 0x1u
#define F_REPLY 0x4u
#define F_NEED_REPLY 0x8u
#define PROTOCOL_FEATURES_BIT 30
#define PROTO_MQ 0
#define PROTO_REPLY_ACK 3
#define PROTO_CONFIG 9

#define GUEST_SIZE (4u << 20)
#define GPA_BASE 0x100000ull  /* guest physical address of the memfd's first byte */
#define QSIZE 16u

/* Where things live in guest memory (offsets from GPA_BASE). */
#define OFF_DESC 0x0000u
#define OFF_AVAIL 0x1000u
#define OFF_USED 0x2000u
#define OFF_HDR 0x10000u
#define OFF_STATUS 0x11000u
#define OFF_DATA 0x20000u

struct fe {
    int sock;
    int memfd;
    uint8_t *mem;
    int kick[8], call[8];
    uint16_t avail_idx[8], used_seen[8];
    uint64_t features, proto;
};

/* A chain element: LEN bytes at guest memory offset OFF. */
struct buf {
    uint32_t off;   /* offset in guest memory */
    uint32_t len;
    bool write;     /* the device writes it */
};

#define BLK_IN 0
#define BLK_OUT 1
#define BLK_FLUSH 4
#define BLK_GET_ID 8

/* The `vdisk serve` process started last (-1: none), and its stderr. */
extern pid_t server_pid;
extern char server_log[512];

/* ---- The server process ---- */

/* Waits until PATH is a socket (10 s), failing if PID exits first. */
void wait_for_file(const char *path, pid_t pid);
/* Starts `vdisk serve ARGS...` (NULL-terminated), waits for SOCKET. */
void start_server(const char *socket_path, ...);
/* Starts the program ARGV (its path first, NULL-terminated), its stderr in
 * server_log, and waits for SOCKET. */
void start_program(const char *socket_path, char *const argv[]);
/* SIGTERM; returns the exit status (or 128 + signal). */
int stop_server(void);
void kill_server(void);
void assert_server_alive(void);
/* Whether the server's log holds WHAT. */
bool log_has(const char *what);
/* The server's CPU time so far (user + system), in seconds. */
double server_cpu(void);

/* ---- Messages ---- */

/* A connected socket (10 s receive timeout). */
int fe_connect(const char *path);
/* One message as given: header fields, PAYLOAD_LEN bytes, NFDS fds. */
void send_raw(int sock, uint32_t req, uint32_t flags, uint32_t size, const void *payload,
              uint32_t payload_len, const int *fds, unsigned nfds);
void send_msg(struct fe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t len,
              const int *fds, unsigned nfds);
/* Reads a reply to REQ; returns its payload size, the payload in BUF. */
uint32_t recv_reply(struct fe *f, uint32_t req, void *buf, uint32_t cap);
uint64_t get_u64(struct fe *f, uint32_t req);
/* Sends REQ with need_reply and returns the acknowledgement (0: success). */
uint64_t acked(struct fe *f, uint32_t req, const void *payload, uint32_t len, const int *fds,
               unsigned nfds);
/* The same, and it must succeed. */
void ok(struct fe *f, uint32_t req, const void *payload, uint32_t len, const int *fds,
        unsigned nfds);
/* A vring state message (index, num) that must succeed. */
void state(struct fe *f, uint32_t req, uint32_t idx, uint32_t num);

/* ---- The front end ---- */

/* GUEST_SIZE bytes of guest memory in a memfd, mapped. */
void fe_memory(struct fe *f);
/* Closes the socket and the ring fds (not the memory). */
void fe_free(struct fe *f);
/* fe_free and the memory too. */
void fe_close(struct fe *f);
/* The front end's address, and the test's pointer, of guest offset OFF. */
uint64_t uva(struct fe *f, uint32_t off);
void *host(struct fe *f, uint32_t off);
/* Each ring Q has its own 64 KiB page of ring structures. */
uint32_t ring_off(unsigned q, uint32_t what);
/* Connects and negotiates: features (without EVENT_IDX), protocol
 * features, owner, memory table. */
void fe_start(struct fe *f, const char *path);
/* Ring Q's size (QSIZE), base (0) and addresses, its structures zeroed. */
void fe_ring_layout(struct fe *f, unsigned q);
/* fe_ring_layout, then call and kick fds, and the ring enabled. */
void fe_ring(struct fe *f, unsigned q);
/* Puts a descriptor chain at descriptors FIRST.. in ring Q's table and
 * makes it available (without kicking). */
void fe_add(struct fe *f, unsigned q, unsigned first, const struct buf *b, unsigned n);
void fe_kick(struct fe *f, unsigned q);
/* Waits until ring Q's used index reaches the available one (10 s). */
void fe_wait(struct fe *f, unsigned q);
/* The length the device reported for the used entry of the N-th request. */
uint32_t used_len(struct fe *f, unsigned q, uint16_t nth);

/* ---- Devices ---- */

/* One virtio-blk request on ring 0 with data at OFF_DATA; returns the status. */
uint8_t blk_req(struct fe *f, uint32_t type, uint64_t sector, uint32_t len, unsigned segs);
/* A qcow2 image (scratch disk.qcow2) of SIZE random bytes, given in *CONTENT. */
const char *make_qcow2(uint64_t *seed, uint8_t **content, size_t size);
void read_image(const char *img, void *buf, size_t len, uint64_t off);
/* One SCSI command on request ring 2: CDB, data-in of LEN bytes at OFF_DATA.
 * Returns the SCSI status; the response's sense key in *KEY. */
uint8_t scsi_cmd(struct fe *f, const uint8_t *cdb, unsigned cdb_len, uint32_t len, uint8_t *key);
/* A command retried past unit attentions (power on, medium changed). */
uint8_t scsi_cmd_ua(struct fe *f, const uint8_t *cdb, unsigned cdb_len, uint32_t len,
                    uint8_t *key);
/* One SCSI READ(10) of block LBA on the CD (rings set up); 2048 bytes at OFF_DATA. */
void cd_read(struct fe *f, uint32_t lba);
/* Sends CMD to the monitor at PATH; the answer must start with EXPECT. */
void monitor(const char *path, const char *cmd, const char *expect);
/* A fresh front end reads the image's sectors 8.. through ring 0. */
void assert_serves(const char *sock, const uint8_t *orig);
/* The image holds ORIG (LEN bytes) still. */
void assert_image_unchanged(const char *img, const uint8_t *orig, size_t len);

#endif
