/* SPDX-License-Identifier: MIT */
/* tests/vhost/frontend.c: the tests' vhost-user front end (frontend.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"
#include "frontend.h"

pid_t server_pid = -1;
char server_log[512];

void wait_for_file(const char *path, pid_t pid)
{
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            size_t len;
            char *log = read_file(server_log, &len);
            ck_abort_msg("vdisk serve exited (status 0x%x) before creating %s:\n%s", status, path,
                         log);
        }
        usleep(10000);
    }
    ck_abort_msg("no socket %s after 10 s", path);
}

/* Starts `vdisk serve ARGS...` (NULL-terminated), waits for SOCKET. */
void start_server(const char *socket_path, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)vdisk_bin();
    argv[n++] = "serve";
    va_list ap;
    va_start(ap, socket_path);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    start_program(socket_path, argv);
}

void start_program(const char *socket_path, char *const argv[])
{
    snprintf(server_log, sizeof server_log, "%s", scratch("serve.log"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(server_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    server_pid = pid;
    wait_for_file(socket_path, pid);
}

/* SIGTERM; returns the exit status (or 128 + signal). */
int stop_server(void)
{
    ck_assert_int_gt(server_pid, 0);
    kill(server_pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(server_pid, &status, WNOHANG) == server_pid)
            break;
        if (i == 1999) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, &status, 0);
            ck_abort_msg("vdisk serve did not exit within 20 s of SIGTERM");
        }
        usleep(10000);
    }
    server_pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void kill_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
}

void assert_server_alive(void)
{
    int status;
    pid_t p = waitpid(server_pid, &status, WNOHANG);
    if (p == server_pid) {
        size_t len;
        char *log = read_file(server_log, &len);
        server_pid = -1;
        ck_abort_msg("vdisk serve died (status 0x%x):\n%s", status, log);
    }
}

int fe_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect %s: %s", path,
                  strerror(errno));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

void send_raw(int sock, uint32_t req, uint32_t flags, uint32_t size, const void *payload,
                     uint32_t payload_len, const int *fds, unsigned nfds)
{
    uint8_t buf[4096];
    uint32_t hdr[3] = {req, flags, size};
    memcpy(buf, hdr, 12);
    ck_assert_uint_le(payload_len, sizeof buf - 12);
    if (payload_len)
        memcpy(buf + 12, payload, payload_len);
    struct iovec iov = {.iov_base = buf, .iov_len = 12 + payload_len};
    union {
        char c[CMSG_SPACE(16 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        mh.msg_control = ctl.c;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);
    ck_assert_msg(w == (ssize_t)(12 + payload_len), "sendmsg request %u: %s", req,
                  w < 0 ? strerror(errno) : "short");
}

void send_msg(struct fe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t len,
                     const int *fds, unsigned nfds)
{
    send_raw(f->sock, req, F_VERSION | flags, len, payload, len, fds, nfds);
}

/* Reads a reply to REQ; returns its payload size, the payload in BUF. */
uint32_t recv_reply(struct fe *f, uint32_t req, void *buf, uint32_t cap)
{
    uint32_t hdr[3];
    ssize_t n;
    /* With SO_RCVTIMEO a stop and continue (a frozen cgroup) is EINTR. */
    do
        n = recv(f->sock, hdr, 12, MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    ck_assert_msg(n == 12, "reply to request %u: %s", req,
                  n < 0 ? strerror(errno) : n == 0 ? "connection closed" : "short");
    ck_assert_uint_eq(hdr[0], req);
    ck_assert_uint_eq(hdr[1], F_VERSION | F_REPLY);
    ck_assert_uint_le(hdr[2], cap);
    if (hdr[2]) {
        n = recv(f->sock, buf, hdr[2], MSG_WAITALL);
        ck_assert_int_eq(n, hdr[2]);
    }
    return hdr[2];
}

uint64_t get_u64(struct fe *f, uint32_t req)
{
    send_msg(f, req, 0, NULL, 0, NULL, 0);
    uint64_t v = 0;
    ck_assert_uint_eq(recv_reply(f, req, &v, 8), 8);
    return v;
}

/* Sends REQ with need_reply and returns the acknowledgement (0: success). */
uint64_t acked(struct fe *f, uint32_t req, const void *payload, uint32_t len, const int *fds,
                      unsigned nfds)
{
    send_msg(f, req, F_NEED_REPLY, payload, len, fds, nfds);
    uint64_t v = 0xdead;
    ck_assert_uint_eq(recv_reply(f, req, &v, 8), 8);
    return v;
}

void ok(struct fe *f, uint32_t req, const void *payload, uint32_t len, const int *fds,
               unsigned nfds)
{
    uint64_t r = acked(f, req, payload, len, fds, nfds);
    ck_assert_msg(r == 0, "request %u failed (%llu); server log:\n%s", req, (unsigned long long)r,
                  (char *)read_file(server_log, NULL));
}

void state(struct fe *f, uint32_t req, uint32_t idx, uint32_t num)
{
    uint32_t st[2] = {idx, num};
    ok(f, req, st, 8, NULL, 0);
}

void fe_memory(struct fe *f)
{
    f->memfd = memfd_create("vhost-test-guest", MFD_CLOEXEC);
    ck_assert_int_ge(f->memfd, 0);
    ck_assert_int_eq(ftruncate(f->memfd, GUEST_SIZE), 0);
    f->mem = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
    ck_assert_ptr_ne(f->mem, MAP_FAILED);
}

void fe_free(struct fe *f)
{
    for (int i = 0; i < 8; i++) {
        if (f->kick[i] > 0)
            close(f->kick[i]);
        if (f->call[i] > 0)
            close(f->call[i]);
        f->kick[i] = f->call[i] = 0;
    }
    if (f->sock > 0)
        close(f->sock);
    f->sock = 0;
}

uint64_t uva(struct fe *f, uint32_t off)
{
    return (uint64_t)(uintptr_t)(f->mem + off);
}

void *host(struct fe *f, uint32_t off)
{
    return f->mem + off;
}

/* Each ring Q has its own 64 KiB page of ring structures. */
uint32_t ring_off(unsigned q, uint32_t what)
{
    return 0x40000u + q * 0x10000u + what;
}

/* Connects and negotiates: features (without EVENT_IDX), protocol
 * features, owner, memory table. */
void fe_start(struct fe *f, const char *path)
{
    f->sock = fe_connect(path);
    uint64_t feat = get_u64(f, GET_FEATURES);
    ck_assert_msg(feat & (1ull << PROTOCOL_FEATURES_BIT), "features 0x%llx",
                  (unsigned long long)feat);
    ck_assert_msg(feat & (1ull << VIRTIO_F_VERSION_1), "features 0x%llx", (unsigned long long)feat);
    uint64_t proto = get_u64(f, GET_PROTOCOL_FEATURES);
    uint64_t want = (1ull << PROTO_MQ) | (1ull << PROTO_REPLY_ACK);
    ck_assert_msg((proto & want) == want, "protocol features 0x%llx", (unsigned long long)proto);
    f->proto = proto & (want | (1ull << PROTO_CONFIG));
    send_msg(f, SET_PROTOCOL_FEATURES, 0, &f->proto, 8, NULL, 0);
    ok(f, SET_OWNER, NULL, 0, NULL, 0);
    f->features = feat & ~(1ull << VIRTIO_F_RING_EVENT_IDX);
    ok(f, SET_FEATURES, &f->features, 8, NULL, 0);
    uint64_t region[5] = {1, GPA_BASE, GUEST_SIZE, uva(f, 0), 0};
    ok(f, SET_MEM_TABLE, region, sizeof region, &f->memfd, 1);
}

/* Sets up ring Q (size QSIZE, base 0) and enables it. */
void fe_ring_layout(struct fe *f, unsigned q)
{
    memset(host(f, ring_off(q, 0)), 0, 0x10000);
    f->avail_idx[q] = f->used_seen[q] = 0;
    state(f, SET_VRING_NUM, q, QSIZE);
    state(f, SET_VRING_BASE, q, 0);
    struct {
        uint32_t index, flags;
        uint64_t desc, used, avail, log;
    } addr = {q, 0, uva(f, ring_off(q, OFF_DESC)), uva(f, ring_off(q, OFF_USED)),
              uva(f, ring_off(q, OFF_AVAIL)), 0};
    ok(f, SET_VRING_ADDR, &addr, sizeof addr, NULL, 0);
}

void fe_ring(struct fe *f, unsigned q)
{
    fe_ring_layout(f, q);
    if (f->kick[q] > 0)
        close(f->kick[q]);
    if (f->call[q] > 0)
        close(f->call[q]);
    f->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    f->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uint64_t idx = q;
    ok(f, SET_VRING_CALL, &idx, 8, &f->call[q], 1);
    ok(f, SET_VRING_KICK, &idx, 8, &f->kick[q], 1);
    state(f, SET_VRING_ENABLE, q, 1);
}

/* Puts a descriptor chain at descriptors FIRST.. in ring Q's table and
 * makes it available (without kicking). */
void fe_add(struct fe *f, unsigned q, unsigned first, const struct buf *b, unsigned n)
{
    uint8_t *desc = host(f, ring_off(q, OFF_DESC));
    for (unsigned i = 0; i < n; i++) {
        unsigned d = (first + i) % QSIZE;
        uint64_t addr = GPA_BASE + b[i].off;
        uint32_t len = b[i].len;
        uint16_t flags = (uint16_t)((b[i].write ? VRING_DESC_F_WRITE : 0) |
                                    (i + 1 < n ? VRING_DESC_F_NEXT : 0));
        uint16_t next = (uint16_t)((first + i + 1) % QSIZE);
        memcpy(desc + d * 16, &addr, 8);
        memcpy(desc + d * 16 + 8, &len, 4);
        memcpy(desc + d * 16 + 12, &flags, 2);
        memcpy(desc + d * 16 + 14, &next, 2);
    }
    uint8_t *avail = host(f, ring_off(q, OFF_AVAIL));
    uint16_t head = (uint16_t)first;
    memcpy(avail + 4 + 2 * (f->avail_idx[q] % QSIZE), &head, 2);
    f->avail_idx[q]++;
    __atomic_store_n((uint16_t *)(avail + 2), f->avail_idx[q], __ATOMIC_RELEASE);
}

void fe_kick(struct fe *f, unsigned q)
{
    uint64_t one = 1;
    ck_assert_int_eq(write(f->kick[q], &one, 8), 8);
}

/* Waits until ring Q's used index reaches the available one. */
void fe_wait(struct fe *f, unsigned q)
{
    volatile uint16_t *used_idx = (uint16_t *)host(f, ring_off(q, OFF_USED) + 2);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (__atomic_load_n(used_idx, __ATOMIC_ACQUIRE) != f->avail_idx[q]) {
        struct pollfd p = {.fd = f->call[q], .events = POLLIN};
        poll(&p, 1, 100);
        uint64_t v;
        if (read(f->call[q], &v, 8) < 0 && errno != EAGAIN)
            ck_abort_msg("call eventfd: %s", strerror(errno));
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10) {
            assert_server_alive();
            ck_abort_msg("ring %u: used index %u, available %u after 10 s; server log:\n%s", q,
                         *used_idx, f->avail_idx[q], (char *)read_file(server_log, NULL));
        }
    }
    f->used_seen[q] = f->avail_idx[q];
}

/* The length the device reported for the used entry of the N-th request. */
uint32_t used_len(struct fe *f, unsigned q, uint16_t nth)
{
    uint32_t len;
    memcpy(&len, host(f, ring_off(q, OFF_USED) + 4 + 8 * (nth % QSIZE) + 4), 4);
    return len;
}

/* One virtio-blk request on ring 0 with data at OFF_DATA; returns the status. */
uint8_t blk_req(struct fe *f, uint32_t type, uint64_t sector, uint32_t len, unsigned segs)
{
    struct {
        uint32_t type, reserved;
        uint64_t sector;
    } h = {type, 0, sector};
    memcpy(host(f, OFF_HDR), &h, sizeof h);
    *(uint8_t *)host(f, OFF_STATUS) = 0xee;
    struct buf b[8];
    unsigned n = 0;
    b[n++] = (struct buf){OFF_HDR, 16, false};
    if (len) {
        uint32_t per = len / segs;
        for (unsigned i = 0; i < segs; i++)
            b[n++] = (struct buf){OFF_DATA + i * per, i + 1 == segs ? len - i * per : per,
                                  type != BLK_OUT};
    }
    b[n++] = (struct buf){OFF_STATUS, 1, true};
    fe_add(f, 0, (f->avail_idx[0] * 8u) % QSIZE, b, n);
    fe_kick(f, 0);
    fe_wait(f, 0);
    return *(uint8_t *)host(f, OFF_STATUS);
}

const char *make_qcow2(uint64_t *seed, uint8_t **content, size_t size)
{
    const char *raw = scratch("base.raw"), *img = scratch("disk.qcow2");
    uint8_t *data = malloc(size);
    fill_random(data, size, seed);
    write_file(raw, data, size);
    RUN_OK("'%s' convert -f raw -O qcow2 '%s' '%s'", vdisk_bin(), raw, img);
    *content = data;
    return img;
}

void read_image(const char *img, void *buf, size_t len, uint64_t off)
{
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_pread(dev, buf, len, off) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
}

/* One SCSI command on request ring 2: CDB, data-in of LEN bytes at OFF_DATA.
 * Returns the SCSI status; the response's sense key in *KEY. */
uint8_t scsi_cmd(struct fe *f, const uint8_t *cdb, unsigned cdb_len, uint32_t len,
                        uint8_t *key)
{
    uint8_t req[51] = {1, 0, 0x40, 0}; /* LUN: target 0, LUN 0 */
    memcpy(req + 19, cdb, cdb_len);
    memcpy(host(f, OFF_HDR), req, sizeof req);
    memset(host(f, OFF_STATUS), 0xee, 108);
    struct buf b[3] = {{OFF_HDR, sizeof req, false}, {OFF_STATUS, 108, true},
                       {OFF_DATA, len, true}};
    fe_add(f, 2, (f->avail_idx[2] * 4u) % QSIZE, b, len ? 3 : 2);
    fe_kick(f, 2);
    fe_wait(f, 2);
    uint8_t *resp = host(f, OFF_STATUS);
    ck_assert_msg(resp[11] == 0, "virtio-scsi response %u", resp[11]);
    *key = resp[10] == 2 ? resp[12 + 2] & 0xf : 0;
    return resp[10];
}

/* A command retried past unit attentions (power on, medium changed). */
uint8_t scsi_cmd_ua(struct fe *f, const uint8_t *cdb, unsigned cdb_len, uint32_t len,
                           uint8_t *key)
{
    uint8_t st = 0;
    for (int i = 0; i < 4; i++) {
        st = scsi_cmd(f, cdb, cdb_len, len, key);
        if (!(st == 2 && *key == 6))
            break;
    }
    return st;
}

void monitor(const char *path, const char *cmd, const char *expect)
{
    int fd = fe_connect(path);
    ck_assert_int_eq(send(fd, cmd, strlen(cmd), MSG_NOSIGNAL), (ssize_t)strlen(cmd));
    shutdown(fd, SHUT_WR);
    char buf[512];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    close(fd);
    ck_assert_msg(strncmp(buf, expect, strlen(expect)) == 0, "monitor '%s' said '%s'", cmd, buf);
}

void fe_close(struct fe *f)
{
    fe_free(f);
    if (f->mem && f->mem != MAP_FAILED)
        munmap(f->mem, GUEST_SIZE);
    if (f->memfd > 0)
        close(f->memfd);
    f->mem = NULL;
    f->memfd = 0;
}

bool log_has(const char *what)
{
    char *log = read_file(server_log, NULL);
    bool has = strstr(log, what) != NULL;
    free(log);
    return has;
}

/* One SCSI READ(10) of block LBA on the CD (rings set up); 2048 bytes at OFF_DATA. */
void cd_read(struct fe *f, uint32_t lba)
{
    uint8_t cdb[10] = {0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
                       (uint8_t)lba, 0, 0, 1, 0};
    uint8_t key;
    ck_assert_uint_eq(scsi_cmd_ua(f, cdb, 10, 2048, &key), 0);
}

/* The server's CPU time so far (user + system), in seconds. */
double server_cpu(void)
{
    char stat[1024];
    int fd = open(fmt("/proc/%d/stat", (int)server_pid), O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ssize_t len = read(fd, stat, sizeof stat - 1);
    close(fd);
    ck_assert_int_gt(len, 0);
    stat[len] = 0;
    char *p = strrchr(stat, ')');
    ck_assert_ptr_nonnull(p);
    unsigned long utime = 0, stime = 0;
    /* After the name: state, then fields 4..13, then utime (14), stime (15). */
    int n = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
    ck_assert_int_eq(n, 2);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* A fresh front end reads the image's sectors 8.. through ring 0. */
void assert_serves(const char *sock, const uint8_t *orig)
{
    assert_server_alive();
    struct fe g = {0};
    fe_memory(&g);
    fe_start(&g, sock);
    fe_ring(&g, 0);
    ck_assert_uint_eq(blk_req(&g, BLK_IN, 8, 4096, 1), 0);
    assert_same_bytes(host(&g, OFF_DATA), orig + 4096, 4096, 4096, "read by a fresh front end");
    fe_close(&g);
}

/* The image holds ORIG (LEN bytes) still. */
void assert_image_unchanged(const char *img, const uint8_t *orig, size_t len)
{
    uint8_t *back = malloc(len);
    read_image(img, back, len, 0);
    assert_same_bytes(back, orig, len, 0, "image");
    free(back);
}
