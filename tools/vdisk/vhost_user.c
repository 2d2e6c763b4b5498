/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/vhost_user.c: the vhost-user back end of `vdisk serve`, one
 * device per struct server: messages read and handled, guest memory mapped
 * and checked, rings started and stopped, kicks and calls.  The process
 * around it (sockets, the monitor, signals, the loop) is cmd_serve.c; the
 * fuzz harness fuzz/vhost_user.c drives it through a socketpair.
 *
 * Everything that comes from the socket is validated: the header's version
 * and size against the request's payload, the file descriptors that came
 * with it, ring indices, ring sizes, memory regions (count, overflow,
 * overlap, the size of the file behind them).  A malformed request gets a
 * failure reply (when the front end asked for one) and the connection goes
 * on; a message that cannot be read (larger than any request, cut short,
 * with too many fds, not whole within VU_MSG_DEADLINE_MS of its first
 * byte) closes the connection, and the next front end is accepted.
 *
 * Nothing the front end does may stall the loop, which serves both devices,
 * the monitor and the signals: the connection is non-blocking and messages
 * are put together as they come (read_msg), replies are never waited for
 * (send_reply), the fds it gives are made non-blocking (get_ring_fd), kick
 * fds must be eventfds (anything else may stay readable for ever and spin
 * the loop), and what it or its guest does wrong is logged through a token
 * bucket (slog).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>
#include <vdisk/virtio.h>

#include "endian.h" /* lib/endian.h */
#include "vhost_user.h"


uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Reports the lines left out, if any. */
void log_flush(struct server *s)
{
    if (!s->log_dropped)
        return;
    fprintf(stderr, "vdisk serve: %s: %" PRIu64 " more message%s suppressed (%u at once, then "
            "one every %u s)\n", s->path, s->log_dropped, s->log_dropped == 1 ? "" : "s",
            LOG_BURST, LOG_REFILL_MS / 1000u);
    s->log_dropped = 0;
}

/* Whether one more line may be logged now (a token bucket per device). */
bool log_allowed(struct server *s)
{
    uint64_t now = now_ms();
    if (s->log_tokens >= LOG_BURST) {
        s->log_stamp = now;
    } else if (now - s->log_stamp >= LOG_REFILL_MS) {
        uint64_t add = (now - s->log_stamp) / LOG_REFILL_MS;
        if (add >= LOG_BURST - s->log_tokens) {
            s->log_tokens = LOG_BURST;
            s->log_stamp = now;
        } else {
            s->log_tokens += (unsigned)add;
            s->log_stamp += add * LOG_REFILL_MS;
        }
    }
    if (s->log_tokens == 0) {
        s->log_dropped++;
        return false;
    }
    s->log_tokens--;
    log_flush(s);
    return true;
}

/* Every line about what a front end or its guest did: rate-limited, so
 * that neither can flood the log (log_allowed). */
void slog(struct server *s, const char *fmt, ...)
{
    if (!log_allowed(s))
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vdisk serve: %s: ", s->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *req_name(uint32_t r)
{
    static const char *const names[] = {
        [VU_GET_FEATURES] = "GET_FEATURES", [VU_SET_FEATURES] = "SET_FEATURES",
        [VU_SET_OWNER] = "SET_OWNER", [VU_RESET_OWNER] = "RESET_OWNER",
        [VU_SET_MEM_TABLE] = "SET_MEM_TABLE", [VU_SET_LOG_BASE] = "SET_LOG_BASE",
        [VU_SET_LOG_FD] = "SET_LOG_FD", [VU_SET_VRING_NUM] = "SET_VRING_NUM",
        [VU_SET_VRING_ADDR] = "SET_VRING_ADDR", [VU_SET_VRING_BASE] = "SET_VRING_BASE",
        [VU_GET_VRING_BASE] = "GET_VRING_BASE", [VU_SET_VRING_KICK] = "SET_VRING_KICK",
        [VU_SET_VRING_CALL] = "SET_VRING_CALL", [VU_SET_VRING_ERR] = "SET_VRING_ERR",
        [VU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
        [VU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
        [VU_GET_QUEUE_NUM] = "GET_QUEUE_NUM", [VU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
        [VU_GET_CONFIG] = "GET_CONFIG", [VU_SET_CONFIG] = "SET_CONFIG",
        [VU_RESET_DEVICE] = "RESET_DEVICE",
    };
    if (r < sizeof names / sizeof names[0] && names[r])
        return names[r];
    return "unknown request";
}

void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- Rings ------------------------------------------------------------------ */

/* The guest physical address of the LEN bytes at front-end address UVA. */
static int uva_to_gpa(const struct server *s, uint64_t uva, uint64_t *gpa)
{
    for (unsigned i = 0; i < s->nreg; i++) {
        const struct vu_region *r = &s->reg[i];
        if (uva >= r->uva && uva - r->uva < r->size) {
            *gpa = r->gpa + (uva - r->uva);
            return 0;
        }
    }
    return -EINVAL;
}

static void signal_fd(struct server *s, unsigned i, int fd, bool *logged, const char *what);

/* The model found ring I broken (needs-reset): said once, and the front end
 * is told through the error fd (SET_VRING_ERR). */
static void ring_broken(struct server *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    if (q->broken_logged)
        return;
    q->broken_logged = true;
    slog(s, "ring %u: %s", i, vdisk_get_error());
    if (q->err_fd >= 0)
        signal_fd(s, i, q->err_fd, &q->err_logged, "error");
}

static bool ring_enabled(const struct server *s, const struct vu_queue *q)
{
    /* Without protocol features a ring is enabled as soon as it starts. */
    return q->enabled || !(s->acked & (1ull << VU_F_PROTOCOL_FEATURES));
}

/*
 * Watches ring I's kick fd, or stops.  Level-triggered (edge-triggered kicks
 * stalled a Linux guest's virtio-scsi probe behind QEMU): it is an eventfd
 * that one read drains (is_counting_eventfd), so it cannot spin the loop.
 * Returns 0 or -errno.
 */
static int kick_watch(struct server *s, unsigned i, bool on)
{
    struct vu_queue *q = &s->q[i];
    if (q->kick_fd < 0)
        return 0;
    if (on) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &q->tag};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, q->kick_fd, &e) < 0 && errno != EEXIST) {
            int r = -errno;
            slog(s, "ring %u: cannot watch the kick fd: %s", i, strerror(errno));
            return r;
        }
    } else {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
    }
    return 0;
}

/* Writes 1 to a call or error fd (non-blocking: get_ring_fd).  An eventfd
 * that would block is at its largest count, already signalled; a pipe that
 * would block is full, with plenty for its reader; any trouble is logged
 * once per fd. */
static void signal_fd(struct server *s, unsigned i, int fd, bool *logged, const char *what)
{
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(fd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)sizeof one || *logged)
        return;
    *logged = true;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        slog(s, "ring %u: the %s fd is full; signals are dropped while it stays so", i, what);
    else
        slog(s, "ring %u: the %s fd: %s", i, what, w < 0 ? strerror(errno) : "short write");
}

static void ring_stop(struct server *s, unsigned i);

/* Ring I cannot be served any more: it stops until the front end gives it
 * a new kick fd (or resets), and the front end hears of it through the
 * error fd (SET_VRING_ERR).  WHY is logged once. */
static void ring_fail(struct server *s, unsigned i, const char *why)
{
    struct vu_queue *q = &s->q[i];
    kick_watch(s, i, false);
    close_fd(&q->kick_fd);
    q->started = false;
    ring_stop(s, i);
    if (!q->broken_logged) {
        q->broken_logged = true;
        slog(s, "ring %u: %s", i, why);
    }
    if (q->err_fd >= 0)
        signal_fd(s, i, q->err_fd, &q->err_logged, "error");
}

static void ring_stop(struct server *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    if (!q->running)
        return;
    if (vdisk_virtio_queue_enable(s->v, i, 0) < 0)
        slog(s, "ring %u: stop: %s", i, vdisk_get_error());
    uint16_t base;
    if (vdisk_virtio_queue_get_base(s->v, i, &base) == 0)
        q->base = base;
    q->running = false;
}

/* Starts or stops ring I as its state asks.  Returns 0 or -errno. */
static int ring_update(struct server *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    bool want = q->started && ring_enabled(s, q) && s->mem && q->num && q->addr_set;
    if (!want) {
        ring_stop(s, i);
        return 0;
    }
    if (q->running)
        return 0;
    uint64_t desc, avail, used;
    if (uva_to_gpa(s, q->desc_uva, &desc) < 0 || uva_to_gpa(s, q->avail_uva, &avail) < 0 ||
        uva_to_gpa(s, q->used_uva, &used) < 0) {
        slog(s, "ring %u: ring addresses outside the memory table", i);
        return -EINVAL;
    }
    int r = vdisk_virtio_queue_setup(s->v, i, q->num, desc, avail, used);
    if (r == 0)
        r = vdisk_virtio_queue_set_base(s->v, i, q->base);
    if (r == 0)
        r = vdisk_virtio_queue_enable(s->v, i, 1);
    if (r < 0) {
        slog(s, "ring %u: %s", i, vdisk_get_error());
        return r;
    }
    q->running = true;
    /* Buffers may be waiting already (a restart, a reconnect). */
    if (vdisk_virtio_queue_notify(s->v, i) < 0)
        ring_broken(s, i);
    return 0;
}

static void ring_forget(struct server *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    kick_watch(s, i, false);
    close_fd(&q->kick_fd);
    close_fd(&q->call_fd);
    close_fd(&q->err_fd);
    q->num = 0;
    q->addr_set = false;
    q->base = 0;
    q->started = q->enabled = q->running = q->broken_logged = false;
    q->call_logged = q->err_logged = false;
}

/* ---- Guest memory ------------------------------------------------------------- */

/*
 * The front end may shrink the file behind a region after SET_MEM_TABLE
 * (a memfd that cannot be sealed, a tmpfs or hugetlbfs file): touching a
 * page past the new end raises SIGBUS, in this thread (the models' ring
 * and status accesses) or in an I/O worker.  Every mapping is registered
 * here; the handler replaces the faulting page of a registered mapping
 * with an anonymous one (the access then goes on, reading zeroes, writing
 * nowhere the front end sees) and marks the slot, and the loop closes
 * that front end's connection.  A SIGBUS anywhere else is fatal as before.
 * The handler is async-signal-safe: atomics, mmap(2), sigaction(2), raise.
 */
#define BUS_SLOTS (4 * VU_MAX_REGIONS) /* two devices, old and new tables */

static _Atomic uintptr_t bus_start[BUS_SLOTS];
static _Atomic size_t bus_len[BUS_SLOTS];
static size_t bus_granule[BUS_SLOTS];     /* the mapping's page size */
static volatile sig_atomic_t bus_hit[BUS_SLOTS];

void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    uintptr_t a = (uintptr_t)si->si_addr;
    for (unsigned i = 0; si->si_code > 0 && i < BUS_SLOTS; i++) {
        size_t len = atomic_load(&bus_len[i]);
        uintptr_t start = atomic_load(&bus_start[i]);
        if (!len || a - start >= len || atomic_load(&bus_len[i]) != len)
            continue;
        size_t g = bus_granule[i];
        uintptr_t page = a & ~(uintptr_t)(g - 1);
        int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
        if (mmap((void *)page, g, PROT_READ | PROT_WRITE, flags, -1, 0) != MAP_FAILED) {
            bus_hit[i] = 1;
            return; /* the access is retried on the anonymous page */
        }
        break;
    }
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig); /* a kernel fault re-raises it anyway when we return */
}

/* A free slot for MAP (LEN bytes, pages of GRANULE), or -1. */
static int bus_guard(void *map, size_t len, size_t granule)
{
    for (unsigned i = 0; i < BUS_SLOTS; i++) {
        if (atomic_load(&bus_len[i]))
            continue;
        bus_granule[i] = granule;
        bus_hit[i] = 0;
        atomic_store(&bus_start[i], (uintptr_t)map);
        atomic_store(&bus_len[i], len);
        return (int)i;
    }
    return -1;
}

static void bus_unguard(int slot)
{
    if (slot < 0)
        return;
    atomic_store(&bus_len[slot], 0);
    atomic_store(&bus_start[slot], 0);
}

static void unmap_regions(struct vu_region *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (!r[i].map)
            continue;
        munmap(r[i].map, r[i].map_len);
        bus_unguard(r[i].slot);
        r[i].map = NULL;
        r[i].slot = -1;
    }
}

/* Whether the front end took memory away under a mapping (SIGBUS caught). */
int mem_vanished(const struct server *s)
{
    for (unsigned i = 0; i < s->nreg; i++)
        if (s->reg[i].slot >= 0 && bus_hit[s->reg[i].slot])
            return (int)i;
    return -1;
}

/*
 * Checks region I's file FD: a regular file (memfd, tmpfs, hugetlbfs) that
 * holds OFF + SIZE bytes, sealed against shrinking when it can still be
 * sealed (QEMU's memfd backend seals it itself).  Returns 0 or -errno;
 * *GRANULE is the page size of its mappings.
 */
static int check_region_file(struct server *s, unsigned i, int fd, uint64_t off, uint64_t size,
                             size_t *granule)
{
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals >= 0 && !(seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        slog(s, "SET_MEM_TABLE: region %u: cannot seal the file against shrinking: %s", i,
             strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        slog(s, "SET_MEM_TABLE: region %u: fstat: %s", i, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        slog(s, "SET_MEM_TABLE: region %u: the file descriptor is not a regular file "
             "(memfd, tmpfs or hugetlbfs)", i);
        return -EINVAL;
    }
    if (st.st_size < 0 || off + size > (uint64_t)st.st_size) {
        slog(s, "SET_MEM_TABLE: region %u: %" PRIu64 " bytes at offset %" PRIu64
             " but the file has %lld bytes", i, size, off, (long long)st.st_size);
        return -EINVAL;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct statfs sf;
    *granule = page;
    if (fstatfs(fd, &sf) == 0 && sf.f_type == 0x958458f6 /* HUGETLBFS_MAGIC */ &&
        st.st_blksize > 0 && (size_t)st.st_blksize > page)
        *granule = (size_t)st.st_blksize;
    return 0;
}

static void mem_forget(struct server *s)
{
    vdisk_virtio_set_mem(s->v, NULL);
    vdisk_guest_mem_free(s->mem);
    s->mem = NULL;
    unmap_regions(s->reg, s->nreg);
    s->nreg = 0;
}

static int set_mem_table(struct server *s, struct msg *m)
{
    if (m->size < 8) {
        slog(s, "SET_MEM_TABLE: payload of %" PRIu32 " bytes", m->size);
        return -EINVAL;
    }
    uint32_t n = le32_load(m->payload);
    if (n < 1 || n > VU_MAX_REGIONS || m->size < 8 + n * VU_REGION_SIZE ||
        m->size > 8 + VU_MAX_REGIONS * VU_REGION_SIZE) {
        slog(s, "SET_MEM_TABLE: %" PRIu32 " regions in %" PRIu32 " bytes", n, m->size);
        return -EINVAL;
    }
    if (m->nfds != n) {
        slog(s, "SET_MEM_TABLE: %" PRIu32 " regions but %u file descriptors", n, m->nfds);
        return -EINVAL;
    }
    struct vu_region nr[VU_MAX_REGIONS];
    struct vdisk_guest_region gr[VU_MAX_REGIONS];
    memset(nr, 0, sizeof nr);
    for (unsigned i = 0; i < VU_MAX_REGIONS; i++)
        nr[i].slot = -1;
    int r = 0;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *p = m->payload + 8 + i * VU_REGION_SIZE;
        uint64_t gpa = le64_load(p), size = le64_load(p + 8), uva = le64_load(p + 16), off = le64_load(p + 24);
        if (size == 0 || gpa + size < gpa || uva + size < uva || off + size < off ||
            off + size > (uint64_t)SIZE_MAX) {
            slog(s, "SET_MEM_TABLE: region %u: bad geometry (guest 0x%" PRIx64 " size 0x%" PRIx64
                 " user 0x%" PRIx64 " offset 0x%" PRIx64 ")", i, gpa, size, uva, off);
            r = -EINVAL;
            break;
        }
        size_t len = (size_t)(off + size), granule = 0;
        if ((r = check_region_file(s, i, m->fds[i], off, size, &granule)) < 0)
            break;
        void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                         m->fds[i], 0);
        if (map == MAP_FAILED) {
            r = -errno;
            slog(s, "SET_MEM_TABLE: region %u: mmap of %zu bytes: %s", i, len, strerror(errno));
            break;
        }
        int slot = bus_guard(map, len, granule);
        nr[i] = (struct vu_region){.gpa = gpa, .size = size, .uva = uva, .map = map,
                                   .map_len = len, .host = (uint8_t *)map + off, .slot = slot};
        if (slot < 0) {
            slog(s, "SET_MEM_TABLE: region %u: too many mappings", i);
            r = -ENOMEM;
            break;
        }
        gr[i] = (struct vdisk_guest_region){.gpa = gpa, .size = size, .host = nr[i].host};
    }
    for (unsigned i = 0; i < m->nfds; i++)
        close_fd(&m->fds[i]);
    vdisk_guest_mem *mem = NULL;
    if (r == 0 && (r = vdisk_guest_mem_new(&mem, gr, n)) < 0)
        slog(s, "SET_MEM_TABLE: %s", vdisk_get_error());
    if (r == 0 && (r = vdisk_virtio_set_mem(s->v, mem)) < 0)
        slog(s, "SET_MEM_TABLE: %s", vdisk_get_error());
    if (r < 0) {
        vdisk_guest_mem_free(mem);
        unmap_regions(nr, n);
        return r;
    }
    /* The model has switched: the old mappings can go. */
    vdisk_guest_mem_free(s->mem);
    unmap_regions(s->reg, s->nreg);
    memcpy(s->reg, nr, sizeof nr);
    s->nreg = n;
    s->mem = mem;
    for (unsigned i = 0; i < s->nq; i++)
        ring_update(s, i);
    return 0;
}

/* ---- Messages ------------------------------------------------------------------ */

/*
 * Sends a reply.  The socket is non-blocking and never waited on: a front
 * end whose socket buffer is full has not read hundreds of replies, and
 * loses its connection rather than stalling the loop (the other device,
 * the monitor, signals).  Returns 0 or -EPIPE (the connection must close).
 */
static int send_reply(struct server *s, uint32_t request, const void *payload, uint32_t len)
{
    uint8_t buf[VU_HDR_SIZE + VU_CONFIG_HDR + VU_CONFIG_MAX];
    if (len > sizeof buf - VU_HDR_SIZE)
        return -EINVAL;
    le32_store(buf, request);
    le32_store(buf + 4, VU_VERSION | VU_FLAG_REPLY);
    le32_store(buf + 8, len);
    if (len)
        memcpy(buf + VU_HDR_SIZE, payload, len);
    size_t total = VU_HDR_SIZE + len, done = 0;
    while (done < total) {
        ssize_t w = send(s->conn_fd, buf + done, total - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            slog(s, "reply to %s: the front end does not read its replies (socket full)",
                 req_name(request));
            return -EPIPE;
        }
        if (w <= 0) {
            slog(s, "reply to %s: %s", req_name(request), w < 0 ? strerror(errno) : "short write");
            return -EPIPE;
        }
        done += (size_t)w;
    }
    return 0;
}

static int reply_u64(struct server *s, uint32_t request, uint64_t v)
{
    uint8_t b[8];
    le64_store(b, v);
    return send_reply(s, request, b, 8);
}

/* Forgets the message being read, closing the fds that came with it. */
static void rx_reset(struct server *s)
{
    for (unsigned i = 0; i < s->rx.nfds; i++)
        close_fd(&s->rx.fds[i]);
    s->rx.nfds = 0;
    s->rx_got = 0;
    s->rx_deadline = 0;
}

/*
 * Reads what has come of the current message, without waiting: the socket
 * is non-blocking, and a message arrives in as many pieces as the front end
 * likes, its file descriptors with any of them (QEMU sends them with the
 * first byte).  Never reads past the message's end, so that the next
 * message's fds stay with it.  Returns 1 when s->rx holds a whole message,
 * 0 when more must come (s->rx_deadline set), -1 at the end of the
 * connection or when the stream cannot be trusted any more (logged).
 */
static int read_msg(struct server *s)
{
    struct msg *m = &s->rx;
    for (;;) {
        uint8_t *dst;
        size_t want;
        if (s->rx_got < VU_HDR_SIZE) {
            dst = s->rx_hdr + s->rx_got;
            want = VU_HDR_SIZE - s->rx_got;
        } else {
            dst = m->payload + (s->rx_got - VU_HDR_SIZE);
            want = VU_HDR_SIZE + m->size - s->rx_got;
        }
        if (want == 0)
            return 1;
        union {
            char buf[CMSG_SPACE(VU_MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = dst, .iov_len = want};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(s->conn_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        bool too_many = mh.msg_flags & MSG_CTRUNC;
        if (n > 0) {
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    if (m->nfds < VU_MAX_FDS) {
                        m->fds[m->nfds++] = fd;
                    } else {
                        close(fd);
                        too_many = true;
                    }
                }
            }
        }
        if (n < 0) {
            if (errno != ECONNRESET)
                slog(s, "reading a message: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            if (s->rx_got)
                slog(s, "a message was cut short (%zu bytes of %s)", s->rx_got,
                     s->rx_got < VU_HDR_SIZE ? "its header" : req_name(m->request));
            return -1;
        }
        if (too_many) {
            slog(s, "a message came with more than %u file descriptors", VU_MAX_FDS);
            return -1;
        }
        if (s->rx_got == 0)
            s->rx_deadline = now_ms() + VU_MSG_DEADLINE_MS;
        bool had_hdr = s->rx_got >= VU_HDR_SIZE;
        s->rx_got += (size_t)n;
        if (!had_hdr && s->rx_got == VU_HDR_SIZE) {
            m->request = le32_load(s->rx_hdr);
            m->flags = le32_load(s->rx_hdr + 4);
            m->size = le32_load(s->rx_hdr + 8);
            if ((m->flags & VU_FLAG_VERSION_MASK) != VU_VERSION) {
                slog(s, "%s: protocol version %" PRIu32 " (expected 1)", req_name(m->request),
                     m->flags & VU_FLAG_VERSION_MASK);
                return -1;
            }
            if (m->size > VU_MAX_PAYLOAD) {
                slog(s, "%s: payload of %" PRIu32 " bytes (at most %u)", req_name(m->request),
                     m->size, VU_MAX_PAYLOAD);
                return -1;
            }
        }
    }
}

/* A vring state (index, num) payload, its index checked. */
static int get_state(struct server *s, const struct msg *m, unsigned *idx, uint32_t *num)
{
    if (m->size != 8) {
        slog(s, "%s: payload of %" PRIu32 " bytes (expected 8)", req_name(m->request), m->size);
        return -EINVAL;
    }
    uint32_t i = le32_load(m->payload);
    if (i >= s->nq) {
        slog(s, "%s: ring %" PRIu32 " (the device has %u)", req_name(m->request), i, s->nq);
        return -EINVAL;
    }
    *idx = i;
    *num = le32_load(m->payload + 4);
    return 0;
}

/* A u64 ring-and-fd payload (KICK, CALL, ERR): the fd taken when any. */
static int get_ring_fd(struct server *s, struct msg *m, unsigned *idx, int *fd)
{
    if (m->size != 8) {
        slog(s, "%s: payload of %" PRIu32 " bytes (expected 8)", req_name(m->request), m->size);
        return -EINVAL;
    }
    uint64_t v = le64_load(m->payload);
    unsigned i = (unsigned)(v & VU_VRING_INDEX_MASK);
    bool nofd = v & VU_VRING_NOFD;
    if (i >= s->nq || (v & ~(uint64_t)(VU_VRING_INDEX_MASK | VU_VRING_NOFD))) {
        slog(s, "%s: bad ring word 0x%" PRIx64 " (the device has %u rings)", req_name(m->request),
             v, s->nq);
        return -EINVAL;
    }
    if (m->nfds != (nofd ? 0u : 1u)) {
        slog(s, "%s: %u file descriptors with the invalid-fd flag %s", req_name(m->request),
             m->nfds, nofd ? "set" : "clear");
        return -EINVAL;
    }
    *idx = i;
    *fd = nofd ? -1 : m->fds[0];
    if (nofd)
        return 0;
    m->fds[0] = -1;
    /* Never wait on a front end's fd: a call fd that is a full pipe, or an
     * eventfd at its largest count, would hang the loop (every device, the
     * monitor, signals). */
    int fl = fcntl(*fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(*fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        slog(s, "%s: ring %u: cannot make the fd non-blocking: %s", req_name(m->request), i,
             strerror(errno));
        close_fd(fd);
        return -EINVAL;
    }
    return 0;
}

/*
 * Whether FD is an eventfd counting (not a semaphore), as a kick fd must be:
 * anything else that polls readable may never be drained by one 8-byte
 * read (a pipe whose writer is gone, a listening socket, /dev/urandom)
 * and would spin the loop.  Without /proc the fd is taken, and on_kick
 * drops it at its first read that is not 8 bytes.
 */
static bool is_counting_eventfd(int fd)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return errno == ENOENT && access("/proc/self/fdinfo", F_OK) < 0;
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n <= 0)
        return false;
    buf[n] = 0;
    const char *sem = strstr(buf, "eventfd-semaphore:");
    if (sem && strtoul(sem + strlen("eventfd-semaphore:"), NULL, 10) != 0)
        return false;
    return strstr(buf, "eventfd-count:") != NULL;
}

static int config_msg(struct server *s, struct msg *m, uint32_t *off, uint32_t *len)
{
    if (m->size < VU_CONFIG_HDR) {
        slog(s, "%s: payload of %" PRIu32 " bytes", req_name(m->request), m->size);
        return -EINVAL;
    }
    *off = le32_load(m->payload);
    *len = le32_load(m->payload + 4);
    if (*len > VU_CONFIG_MAX || m->size != VU_CONFIG_HDR + *len ||
        (uint64_t)*off + *len > VU_CONFIG_MAX) {
        slog(s, "%s: %" PRIu32 " bytes at offset %" PRIu32 " in a payload of %" PRIu32 " bytes",
             req_name(m->request), *len, *off, m->size);
        return -EINVAL;
    }
    return 0;
}

static void reset_device(struct server *s)
{
    vdisk_virtio_drain(s->v);
    for (unsigned i = 0; i < s->nq; i++) {
        ring_stop(s, i);
        ring_forget(s, i);
    }
    vdisk_virtio_reset(s->v);
    s->acked = 0;
    /* The driver starts again from nothing: no completion is owed. */
    for (unsigned i = 0; i < s->nq; i++)
        s->q[i].call_missed = false;
}

/* Handles M; returns 0, -errno (a failure the front end is told about) or VU_CLOSE. */
static int handle(struct server *s, struct msg *m, bool *replied)
{
    unsigned i;
    uint32_t num;
    int fd, r;
    *replied = false;
    switch (m->request) {
    case VU_GET_FEATURES:
        *replied = true;
        return reply_u64(s, m->request, s->offered) < 0 ? VU_CLOSE : 0;
    case VU_SET_FEATURES: {
        if (m->size != 8)
            return -EINVAL;
        uint64_t f = le64_load(m->payload);
        /* QEMU passes on bits that its own device model adds (virtio-scsi's
         * F_CHANGE): the model gets what it offered, the rest is ignored. */
        if ((f & ~s->offered) && !s->quiet)
            slog(s, "SET_FEATURES: ignoring feature bits 0x%" PRIx64 " (not offered)",
                 f & ~s->offered);
        f &= s->offered;
        if ((r = vdisk_virtio_set_features(s->v, f & ~(1ull << VU_F_PROTOCOL_FEATURES))) < 0) {
            slog(s, "SET_FEATURES: %s", vdisk_get_error());
            return r;
        }
        s->acked = f;
        for (i = 0; i < s->nq; i++)
            ring_update(s, i);
        return 0;
    }
    case VU_GET_PROTOCOL_FEATURES:
        *replied = true;
        return reply_u64(s, m->request, s->proto_offered) < 0 ? VU_CLOSE : 0;
    case VU_SET_PROTOCOL_FEATURES: {
        if (m->size != 8)
            return -EINVAL;
        uint64_t f = le64_load(m->payload);
        if (f & ~s->proto_offered) {
            slog(s, "SET_PROTOCOL_FEATURES: 0x%" PRIx64 " has bits not offered", f);
            return -EINVAL;
        }
        s->proto = f;
        return 0;
    }
    case VU_GET_QUEUE_NUM:
        *replied = true;
        return reply_u64(s, m->request, s->nq) < 0 ? VU_CLOSE : 0;
    case VU_SET_OWNER:
        return 0;
    case VU_RESET_OWNER:
    case VU_RESET_DEVICE:
        reset_device(s);
        return 0;
    case VU_SET_MEM_TABLE:
        return set_mem_table(s, m);
    case VU_SET_VRING_NUM:
        if ((r = get_state(s, m, &i, &num)) < 0)
            return r;
        if (num == 0 || (num & (num - 1)) || num > vdisk_virtio_queue_max_size(s->v)) {
            slog(s, "SET_VRING_NUM: ring %u: size %" PRIu32 " (a power of two up to %u)", i, num,
                 vdisk_virtio_queue_max_size(s->v));
            return -EINVAL;
        }
        if (s->q[i].running) {
            slog(s, "SET_VRING_NUM: ring %u is running", i);
            return -EBUSY;
        }
        s->q[i].num = num;
        return 0;
    case VU_SET_VRING_ADDR: {
        if (m->size != 40) {
            slog(s, "SET_VRING_ADDR: payload of %" PRIu32 " bytes (expected 40)", m->size);
            return -EINVAL;
        }
        i = le32_load(m->payload);
        if (i >= s->nq) {
            slog(s, "SET_VRING_ADDR: ring %u (the device has %u)", i, s->nq);
            return -EINVAL;
        }
        struct vu_queue *q = &s->q[i];
        bool was = q->running;
        ring_stop(s, i);
        q->desc_uva = le64_load(m->payload + 8);
        q->used_uva = le64_load(m->payload + 16);
        q->avail_uva = le64_load(m->payload + 24);
        q->addr_set = true;
        if (was)
            return ring_update(s, i);
        return 0;
    }
    case VU_SET_VRING_BASE:
        if ((r = get_state(s, m, &i, &num)) < 0)
            return r;
        if (num > 0xffff) {
            slog(s, "SET_VRING_BASE: ring %u: base %" PRIu32 " (split rings only)", i, num);
            return -EINVAL;
        }
        s->q[i].base = (uint16_t)num;
        if (s->q[i].running && (r = vdisk_virtio_queue_set_base(s->v, i, (uint16_t)num)) < 0)
            return r;
        return 0;
    case VU_GET_VRING_BASE: {
        if ((r = get_state(s, m, &i, &num)) < 0)
            return VU_CLOSE; /* the front end waits for a reply we cannot give */
        struct vu_queue *q = &s->q[i];
        q->started = false;
        ring_stop(s, i);
        kick_watch(s, i, false);
        close_fd(&q->kick_fd);
        uint32_t st[2] = {i, q->base};
        *replied = true;
        return send_reply(s, m->request, st, sizeof st) < 0 ? VU_CLOSE : 0;
    }
    case VU_SET_VRING_KICK: {
        if ((r = get_ring_fd(s, m, &i, &fd)) < 0)
            return r;
        struct vu_queue *q = &s->q[i];
        if (fd < 0) {
            slog(s, "SET_VRING_KICK: ring %u: polling mode is not supported", i);
            return -ENOTSUP;
        }
        kick_watch(s, i, false);
        close_fd(&q->kick_fd);
        if (!is_counting_eventfd(fd)) {
            close(fd);
            ring_fail(s, i, "SET_VRING_KICK: the kick fd is not an eventfd");
            return -EINVAL;
        }
        q->kick_fd = fd;
        if (kick_watch(s, i, true) < 0) {
            ring_fail(s, i, "SET_VRING_KICK: the kick fd cannot be watched");
            return -EINVAL;
        }
        q->started = true;
        return ring_update(s, i);
    }
    case VU_SET_VRING_CALL:
        if ((r = get_ring_fd(s, m, &i, &fd)) < 0)
            return r;
        close_fd(&s->q[i].call_fd);
        s->q[i].call_fd = fd;
        /* QEMU enables the rings before it gives their call fds, and the
         * guest may kick in between: what completed then was never
         * signalled, and the guest would wait for it forever. */
        if (fd >= 0 && s->q[i].call_missed) {
            s->q[i].call_missed = false;
            signal_fd(s, i, fd, &s->q[i].call_logged, "call");
        }
        return 0;
    case VU_SET_VRING_ERR:
        if ((r = get_ring_fd(s, m, &i, &fd)) < 0)
            return r;
        close_fd(&s->q[i].err_fd);
        s->q[i].err_fd = fd;
        return 0;
    case VU_SET_VRING_ENABLE:
        if ((r = get_state(s, m, &i, &num)) < 0)
            return r;
        if (num > 1) {
            slog(s, "SET_VRING_ENABLE: ring %u: %" PRIu32 " (0 or 1)", i, num);
            return -EINVAL;
        }
        s->q[i].enabled = num;
        return ring_update(s, i);
    case VU_GET_CONFIG: {
        uint32_t off, len;
        uint8_t buf[VU_CONFIG_HDR + VU_CONFIG_MAX];
        *replied = true;
        if (config_msg(s, m, &off, &len) < 0 ||
            vdisk_virtio_config_read(s->v, off, buf + VU_CONFIG_HDR, len) < 0)
            return send_reply(s, m->request, NULL, 0) < 0 ? VU_CLOSE : -EINVAL;
        memcpy(buf, m->payload, VU_CONFIG_HDR);
        return send_reply(s, m->request, buf, VU_CONFIG_HDR + len) < 0 ? VU_CLOSE : 0;
    }
    case VU_SET_CONFIG: {
        uint32_t off, len;
        /* Not offered (the SCSI device): its configuration stays the model's. */
        if (!(s->proto_offered & (1ull << VU_PROTO_F_CONFIG)))
            return -ENOTSUP;
        if ((r = config_msg(s, m, &off, &len)) < 0)
            return r;
        const uint8_t *p = m->payload + VU_CONFIG_HDR;
        if (len == 1 || len == 2 || len == 4 || len == 8)
            return vdisk_virtio_config_write(s->v, off, p, len);
        for (uint32_t k = 0; k < len; k++)
            if ((r = vdisk_virtio_config_write(s->v, off + k, p + k, 1)) < 0)
                return r;
        return 0;
    }
    default:
        slog(s, "%s (%" PRIu32 ") is not supported", req_name(m->request), m->request);
        return -ENOTSUP;
    }
}

/* ---- Connections ------------------------------------------------------------------ */

void listen_watch(struct server *s, bool on)
{
    if (on) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->listen_tag};
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &e);
    } else {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    }
}

/* The front end went away (or must): requests in flight finish, everything
 * it gave is forgotten, and the next front end is accepted. */
void disconnect(struct server *s)
{
    if (s->conn_fd < 0)
        return;
    vdisk_virtio_drain(s->v);
    for (unsigned i = 0; i < s->nq; i++) {
        ring_stop(s, i);
        ring_forget(s, i);
    }
    vdisk_virtio_reset(s->v);
    mem_forget(s);
    s->acked = s->proto = 0;
    rx_reset(s);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->conn_fd, NULL);
    close_fd(&s->conn_fd);
    if (!s->quiet && log_allowed(s))
        fprintf(stderr, "vdisk serve: %s: front end disconnected\n", s->path);
    listen_watch(s, true);
}

void on_accept(struct server *s)
{
    /* Non-blocking: a front end that stops in the middle of a message, or
     * does not read its replies, must not hang the loop (read_msg,
     * send_reply). */
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            slog(s, "accept: %s", strerror(errno));
        return;
    }
    s->conn_fd = fd;
    rx_reset(s);
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &s->conn_tag};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        slog(s, "epoll: %s", strerror(errno));
        close_fd(&s->conn_fd);
        return;
    }
    listen_watch(s, false);
    s->connections++;
    if (!s->quiet && log_allowed(s))
        fprintf(stderr, "vdisk serve: %s: front end connected\n", s->path);
}

/* The connection is readable: the messages that are whole are handled, a
 * batch at a time (the loop comes back while more wait), and a message
 * begun is kept for later (read_msg). */
void on_message(struct server *s)
{
    for (unsigned k = 0; k < VU_MSG_BATCH && s->conn_fd >= 0; k++) {
        int r = read_msg(s);
        if (r == 0)
            return;
        if (r < 0) {
            disconnect(s);
            return;
        }
        struct msg *m = &s->rx;
        bool replied;
        r = handle(s, m, &replied);
        uint32_t request = m->request, flags = m->flags;
        rx_reset(s);
        if (r == VU_CLOSE) {
            slog(s, "closing the connection");
            disconnect(s);
            return;
        }
        if (r < 0 && !(flags & VU_FLAG_NEED_REPLY) && request != VU_GET_CONFIG)
            slog(s, "%s failed: %s", req_name(request), strerror(-r));
        if ((flags & VU_FLAG_NEED_REPLY) && !replied &&
            reply_u64(s, request, r < 0 ? (uint64_t)-r : 0) < 0) {
            disconnect(s);
            return;
        }
    }
}

/* Closes the connections whose message has not come whole in time, and
 * returns how long epoll_wait may sleep (ms, -1: no message pending). */
int check_deadlines(struct server *srv, unsigned nsrv)
{
    uint64_t now = now_ms();
    int wait = -1;
    for (unsigned k = 0; k < nsrv; k++) {
        struct server *s = &srv[k];
        if (s->conn_fd < 0 || !s->rx_deadline)
            continue;
        if (now >= s->rx_deadline) {
            slog(s, "a message did not come whole within %u s (%zu bytes so far); closing the "
                 "connection", VU_MSG_DEADLINE_MS / 1000u, s->rx_got);
            disconnect(s);
            continue;
        }
        uint64_t left = s->rx_deadline - now;
        if (wait < 0 || left < (uint64_t)wait)
            wait = (int)left;
    }
    return wait;
}

void on_kick(struct server *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    uint64_t v;
    ssize_t n;
    do
        n = read(q->kick_fd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n != (ssize_t)sizeof v) {
        /* Not an eventfd after all (is_counting_eventfd could not tell):
         * a source that is never drained would spin the loop. */
        char why[128];
        snprintf(why, sizeof why, "the kick fd %s; the ring is stopped",
                 n < 0 ? strerror(errno) : n == 0 ? "is at its end" : "gave a short read");
        ring_fail(s, i, why);
        return;
    }
    if (!q->running)
        return;
    if (vdisk_virtio_queue_notify(s->v, i) < 0)
        ring_broken(s, i);
}

static void model_notify(void *opaque, unsigned qi)
{
    struct server *s = opaque;
    if (qi >= s->nq)
        return;
    if (s->q[qi].call_fd < 0) {
        s->q[qi].call_missed = true;
        return;
    }
    signal_fd(s, qi, s->q[qi].call_fd, &s->q[qi].call_logged, "call");
}

static void model_log(void *opaque, const char *message)
{
    struct server *s = opaque;
    if (!s->quiet)
        slog(s, "guest: %s", message);
}

int server_attach(struct server *s, bool offer_config)
{
    struct vdisk_virtio_host h = {.struct_size = sizeof h,
                                  .notify = model_notify, .log = model_log, .opaque = s};
    vdisk_virtio_set_host(s->v, &h);
    s->listen_fd = s->conn_fd = -1;
    s->log_tokens = LOG_BURST;
    s->log_stamp = now_ms();
    s->nq = vdisk_virtio_num_queues(s->v);
    if (s->nq == 0 || s->nq > VU_MAX_QUEUES)
        return -ERANGE;
    s->offered = vdisk_virtio_features(s->v) | (1ull << VU_F_PROTOCOL_FEATURES);
    s->proto_offered = VU_PROTO_OFFERED;
    if (!offer_config)
        s->proto_offered &= ~(1ull << VU_PROTO_F_CONFIG);
    if (!(s->q = calloc(s->nq, sizeof *s->q)))
        return -ENOMEM;
    for (unsigned i = 0; i < s->nq; i++) {
        s->q[i].kick_fd = s->q[i].call_fd = s->q[i].err_fd = -1;
        s->q[i].tag = (struct ev_tag){EV_KICK, s, i};
    }
    s->listen_tag = (struct ev_tag){EV_LISTEN, s, 0};
    s->conn_tag = (struct ev_tag){EV_CONN, s, 0};
    s->done_tag = (struct ev_tag){EV_DONE, s, 0};
    return 0;
}
