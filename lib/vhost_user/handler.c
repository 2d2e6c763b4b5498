/* SPDX-License-Identifier: MIT */
/*
 * lib/vhost_user/handler.c: the vhost-user back end's message handling (see
 * vhost_user_internal.h): one message in, its reply out (vu_handle), guest
 * memory mapped and checked, rings started and stopped, kicks and calls.
 * No socket I/O: transport.c reads the messages and sends the replies; the
 * fuzz harness fuzz/vhost_user.c calls vu_handle directly too.
 *
 * Everything in a message is validated: its payload's size against the
 * request, the file descriptors that came with it, ring indices, ring
 * sizes, memory regions (count, overflow, the size of the file behind
 * them).  A malformed request gets a failure reply (when the front end
 * asked for one) and the connection goes on.
 *
 * Nothing the front end does may stall the caller's loop: the fds it gives
 * are made non-blocking (get_ring_fd), kick fds must be eventfds (anything
 * else may stay readable for ever and spin the loop), and what it or its
 * guest does wrong is logged through a token bucket (vu_log).
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
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/error.h>
#include <vdisk/iso9660.h>
#include <vdisk/virtio.h>

#include "endian.h"
#include "error_internal.h"
#include "log_line.h"
#include "vhost_user_internal.h"

uint64_t vu_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

void vu_log_flush(struct vdisk_vhost *s)
{
    if (!s->log_dropped)
        return;
    uint64_t dropped = s->log_dropped;
    s->log_dropped = 0;
    log_line(s->log, s->log_opaque, s->name, "%" PRIu64 " more message%s suppressed (%u at "
             "once, then one every %u s)", dropped, dropped == 1 ? "" : "s", VU_LOG_BURST,
             VU_LOG_REFILL_MS / 1000u);
}

/* Whether one more line may be logged now (a token bucket per handle). */
static bool log_allowed(struct vdisk_vhost *s)
{
    uint64_t now = vu_now_ms();
    if (s->log_tokens >= VU_LOG_BURST) {
        s->log_stamp = now;
    } else if (now - s->log_stamp >= VU_LOG_REFILL_MS) {
        uint64_t add = (now - s->log_stamp) / VU_LOG_REFILL_MS;
        if (add >= VU_LOG_BURST - s->log_tokens) {
            s->log_tokens = VU_LOG_BURST;
            s->log_stamp = now;
        } else {
            s->log_tokens += (unsigned)add;
            s->log_stamp += add * VU_LOG_REFILL_MS;
        }
    }
    if (s->log_tokens == 0) {
        s->log_dropped++;
        return false;
    }
    s->log_tokens--;
    vu_log_flush(s);
    return true;
}

static void vlog(struct vdisk_vhost *s, const char *fmt, va_list ap)
{
    if (log_allowed(s))
        log_vline(s->log, s->log_opaque, s->name, fmt, ap);
}

void vu_log(struct vdisk_vhost *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(s, fmt, ap);
    va_end(ap);
}

void vu_info(struct vdisk_vhost *s, const char *fmt, ...)
{
    if (s->flags & VDISK_VHOST_QUIET)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(s, fmt, ap);
    va_end(ap);
}

const char *vu_req_name(uint32_t r)
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

void vu_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- Rings ------------------------------------------------------------------ */

/* The guest physical address of the LEN bytes at front-end address UVA. */
static int uva_to_gpa(const struct vdisk_vhost *s, uint64_t uva, uint64_t *gpa)
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

static void signal_fd(struct vdisk_vhost *s, unsigned i, int fd, bool *logged, const char *what);

/* The model found ring I broken (needs-reset): said once, and the front end
 * is told through the error fd (SET_VRING_ERR). */
static void ring_broken(struct vdisk_vhost *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    if (q->broken_logged)
        return;
    q->broken_logged = true;
    vu_log(s, "ring %u: %s", i, vdisk_get_error());
    if (q->err_fd >= 0)
        signal_fd(s, i, q->err_fd, &q->err_logged, "error");
}

static bool ring_enabled(const struct vdisk_vhost *s, const struct vu_queue *q)
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
static int kick_watch(struct vdisk_vhost *s, unsigned i, bool on)
{
    struct vu_queue *q = &s->q[i];
    if (q->kick_fd < 0)
        return 0;
    if (on) {
        struct epoll_event e = {.events = EPOLLIN,
                                .data.u64 = (uint64_t)VU_EV_KICK << 32 | i};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, q->kick_fd, &e) < 0 && errno != EEXIST) {
            int r = -errno;
            vu_log(s, "ring %u: cannot watch the kick fd: %s", i, strerror(errno));
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
static void signal_fd(struct vdisk_vhost *s, unsigned i, int fd, bool *logged, const char *what)
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
        vu_log(s, "ring %u: the %s fd is full; signals are dropped while it stays so", i, what);
    else
        vu_log(s, "ring %u: the %s fd: %s", i, what, w < 0 ? strerror(errno) : "short write");
}

static void ring_stop(struct vdisk_vhost *s, unsigned i);

/* Ring I cannot be served any more: it stops until the front end gives it
 * a new kick fd (or resets), and the front end hears of it through the
 * error fd (SET_VRING_ERR).  WHY is logged once. */
static void ring_fail(struct vdisk_vhost *s, unsigned i, const char *why)
{
    struct vu_queue *q = &s->q[i];
    kick_watch(s, i, false);
    vu_close_fd(&q->kick_fd);
    q->started = false;
    ring_stop(s, i);
    if (!q->broken_logged) {
        q->broken_logged = true;
        vu_log(s, "ring %u: %s", i, why);
    }
    if (q->err_fd >= 0)
        signal_fd(s, i, q->err_fd, &q->err_logged, "error");
}

static void ring_stop(struct vdisk_vhost *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    if (!q->running)
        return;
    if (vdisk_virtio_queue_enable(s->v, i, 0) < 0)
        vu_log(s, "ring %u: stop: %s", i, vdisk_get_error());
    uint16_t base;
    if (vdisk_virtio_queue_get_base(s->v, i, &base) == 0)
        q->base = base;
    q->running = false;
}

/* Starts or stops ring I as its state asks.  Returns 0 or -errno. */
static int ring_update(struct vdisk_vhost *s, unsigned i)
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
        vu_log(s, "ring %u: ring addresses outside the memory table", i);
        return -EINVAL;
    }
    int r = vdisk_virtio_queue_setup(s->v, i, q->num, desc, avail, used);
    if (r == 0)
        r = vdisk_virtio_queue_set_base(s->v, i, q->base);
    if (r == 0)
        r = vdisk_virtio_queue_enable(s->v, i, 1);
    if (r < 0) {
        vu_log(s, "ring %u: %s", i, vdisk_get_error());
        return r;
    }
    q->running = true;
    /* Buffers may be waiting already (a restart, a reconnect). */
    if (vdisk_virtio_queue_notify(s->v, i) < 0)
        ring_broken(s, i);
    return 0;
}

static void ring_forget(struct vdisk_vhost *s, unsigned i)
{
    struct vu_queue *q = &s->q[i];
    kick_watch(s, i, false);
    vu_close_fd(&q->kick_fd);
    vu_close_fd(&q->call_fd);
    vu_close_fd(&q->err_fd);
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
 * that front end's connection.  A SIGBUS anywhere else goes to the handler
 * installed before (vdisk_vhost_sigbus_install).  The handler is
 * async-signal-safe: atomics, mmap(2), sigaction(2).
 */
#define BUS_SLOTS (32 * VU_MAX_REGIONS) /* 16 handles, old and new tables */

static _Atomic uintptr_t bus_start[BUS_SLOTS];
static _Atomic size_t bus_len[BUS_SLOTS];
static size_t bus_granule[BUS_SLOTS];     /* the mapping's page size */
static volatile sig_atomic_t bus_hit[BUS_SLOTS];
static struct sigaction bus_old;          /* the disposition before ours */

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
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
    /* Not ours: the disposition from before takes it.  A kernel fault
     * comes again when this returns; a sent signal is sent again. */
    sigaction(sig, &bus_old, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

VDISK_EXPORT int vdisk_vhost_sigbus_install(void)
{
    err_enter(__func__);
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO}, old;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old) < 0)
        return err_set(-errno, "sigaction: %s", strerror(errno));
    if (!(old.sa_flags & SA_SIGINFO) || old.sa_sigaction != on_sigbus)
        bus_old = old;
    return 0;
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
int vu_mem_vanished(const struct vdisk_vhost *s)
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
static int check_region_file(struct vdisk_vhost *s, unsigned i, int fd, uint64_t off, uint64_t size,
                             size_t *granule)
{
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals >= 0 && !(seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        vu_log(s, "SET_MEM_TABLE: region %u: cannot seal the file against shrinking: %s", i,
             strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        vu_log(s, "SET_MEM_TABLE: region %u: fstat: %s", i, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        vu_log(s, "SET_MEM_TABLE: region %u: the file descriptor is not a regular file "
             "(memfd, tmpfs or hugetlbfs)", i);
        return -EINVAL;
    }
    if (st.st_size < 0 || off + size > (uint64_t)st.st_size) {
        vu_log(s, "SET_MEM_TABLE: region %u: %" PRIu64 " bytes at offset %" PRIu64
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

static void mem_forget(struct vdisk_vhost *s)
{
    vdisk_virtio_set_mem(s->v, NULL);
    vdisk_guest_mem_free(s->mem);
    s->mem = NULL;
    unmap_regions(s->reg, s->nreg);
    s->nreg = 0;
}

static int set_mem_table(struct vdisk_vhost *s, struct vu_msg *m)
{
    if (m->size < 8) {
        vu_log(s, "SET_MEM_TABLE: payload of %" PRIu32 " bytes", m->size);
        return -EINVAL;
    }
    uint32_t n = le32_load(m->payload);
    if (n < 1 || n > VU_MAX_REGIONS || m->size < 8 + n * VU_REGION_SIZE ||
        m->size > 8 + VU_MAX_REGIONS * VU_REGION_SIZE) {
        vu_log(s, "SET_MEM_TABLE: %" PRIu32 " regions in %" PRIu32 " bytes", n, m->size);
        return -EINVAL;
    }
    if (m->nfds != n) {
        vu_log(s, "SET_MEM_TABLE: %" PRIu32 " regions but %u file descriptors", n, m->nfds);
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
            vu_log(s, "SET_MEM_TABLE: region %u: bad geometry (guest 0x%" PRIx64 " size 0x%" PRIx64
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
            vu_log(s, "SET_MEM_TABLE: region %u: mmap of %zu bytes: %s", i, len, strerror(errno));
            break;
        }
        int slot = bus_guard(map, len, granule);
        nr[i] = (struct vu_region){.gpa = gpa, .size = size, .uva = uva, .map = map,
                                   .map_len = len, .host = (uint8_t *)map + off, .slot = slot};
        if (slot < 0) {
            vu_log(s, "SET_MEM_TABLE: region %u: too many mappings", i);
            r = -ENOMEM;
            break;
        }
        gr[i] = (struct vdisk_guest_region){.gpa = gpa, .size = size, .host = nr[i].host};
    }
    for (unsigned i = 0; i < m->nfds; i++)
        vu_close_fd(&m->fds[i]);
    vdisk_guest_mem *mem = NULL;
    if (r == 0 && (r = vdisk_guest_mem_new(&mem, gr, n)) < 0)
        vu_log(s, "SET_MEM_TABLE: %s", vdisk_get_error());
    if (r == 0 && (r = vdisk_virtio_set_mem(s->v, mem)) < 0)
        vu_log(s, "SET_MEM_TABLE: %s", vdisk_get_error());
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

/* A vring state (index, num) payload, its index checked. */
static int get_state(struct vdisk_vhost *s, const struct vu_msg *m, unsigned *idx, uint32_t *num)
{
    if (m->size != 8) {
        vu_log(s, "%s: payload of %" PRIu32 " bytes (expected 8)", vu_req_name(m->request), m->size);
        return -EINVAL;
    }
    uint32_t i = le32_load(m->payload);
    if (i >= s->nq) {
        vu_log(s, "%s: ring %" PRIu32 " (the device has %u)", vu_req_name(m->request), i, s->nq);
        return -EINVAL;
    }
    *idx = i;
    *num = le32_load(m->payload + 4);
    return 0;
}

/* A u64 ring-and-fd payload (KICK, CALL, ERR): the fd taken when any. */
static int get_ring_fd(struct vdisk_vhost *s, struct vu_msg *m, unsigned *idx, int *fd)
{
    if (m->size != 8) {
        vu_log(s, "%s: payload of %" PRIu32 " bytes (expected 8)", vu_req_name(m->request), m->size);
        return -EINVAL;
    }
    uint64_t v = le64_load(m->payload);
    unsigned i = (unsigned)(v & VU_VRING_INDEX_MASK);
    bool nofd = v & VU_VRING_NOFD;
    if (i >= s->nq || (v & ~(uint64_t)(VU_VRING_INDEX_MASK | VU_VRING_NOFD))) {
        vu_log(s, "%s: bad ring word 0x%" PRIx64 " (the device has %u rings)", vu_req_name(m->request),
             v, s->nq);
        return -EINVAL;
    }
    if (m->nfds != (nofd ? 0u : 1u)) {
        vu_log(s, "%s: %u file descriptors with the invalid-fd flag %s", vu_req_name(m->request),
             m->nfds, nofd ? "set" : "clear");
        return -EINVAL;
    }
    *idx = i;
    *fd = nofd ? -1 : m->fds[0];
    if (nofd)
        return 0;
    m->fds[0] = -1;
    /* Never wait on a front end's fd: a call fd that is a full pipe, or an
     * eventfd at its largest count, would hang the caller's loop (its other
     * devices, its monitor, its signals). */
    int fl = fcntl(*fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(*fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        vu_log(s, "%s: ring %u: cannot make the fd non-blocking: %s", vu_req_name(m->request), i,
             strerror(errno));
        vu_close_fd(fd);
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

static int config_msg(struct vdisk_vhost *s, struct vu_msg *m, uint32_t *off, uint32_t *len)
{
    if (m->size < VU_CONFIG_HDR) {
        vu_log(s, "%s: payload of %" PRIu32 " bytes", vu_req_name(m->request), m->size);
        return -EINVAL;
    }
    *off = le32_load(m->payload);
    *len = le32_load(m->payload + 4);
    if (*len > VU_CONFIG_MAX || m->size != VU_CONFIG_HDR + *len ||
        (uint64_t)*off + *len > VU_CONFIG_MAX) {
        vu_log(s, "%s: %" PRIu32 " bytes at offset %" PRIu32 " in a payload of %" PRIu32 " bytes",
             vu_req_name(m->request), *len, *off, m->size);
        return -EINVAL;
    }
    return 0;
}

static void reset_device(struct vdisk_vhost *s)
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
static void set_reply(struct vu_reply *rep, uint32_t request, const void *payload, uint32_t len)
{
    rep->send = true;
    rep->request = request;
    rep->size = len;
    if (len)
        memcpy(rep->payload, payload, len);
}

static void reply_u64(struct vu_reply *rep, uint32_t request, uint64_t v)
{
    uint8_t b[8];
    le64_store(b, v);
    set_reply(rep, request, b, 8);
}

/* Handles M; returns 0, -errno (a failure the front end is told about) or
 * VU_CLOSE; the request's own reply (not the acknowledgement) in *REP. */
static int handle(struct vdisk_vhost *s, struct vu_msg *m, struct vu_reply *rep)
{
    unsigned i;
    uint32_t num;
    int fd, r;
    switch (m->request) {
    case VU_GET_FEATURES:
        reply_u64(rep, m->request, s->offered);
        return 0;
    case VU_SET_FEATURES: {
        if (m->size != 8)
            return -EINVAL;
        uint64_t f = le64_load(m->payload);
        /* QEMU passes on bits that its own device model adds (virtio-scsi's
         * F_CHANGE): the model gets what it offered, the rest is ignored. */
        if (f & ~s->offered)
            vu_info(s, "SET_FEATURES: ignoring feature bits 0x%" PRIx64 " (not offered)",
                 f & ~s->offered);
        f &= s->offered;
        if ((r = vdisk_virtio_set_features(s->v, f & ~(1ull << VU_F_PROTOCOL_FEATURES))) < 0) {
            vu_log(s, "SET_FEATURES: %s", vdisk_get_error());
            return r;
        }
        s->acked = f;
        for (i = 0; i < s->nq; i++)
            ring_update(s, i);
        return 0;
    }
    case VU_GET_PROTOCOL_FEATURES:
        reply_u64(rep, m->request, s->proto_offered);
        return 0;
    case VU_SET_PROTOCOL_FEATURES: {
        if (m->size != 8)
            return -EINVAL;
        uint64_t f = le64_load(m->payload);
        if (f & ~s->proto_offered) {
            vu_log(s, "SET_PROTOCOL_FEATURES: 0x%" PRIx64 " has bits not offered", f);
            return -EINVAL;
        }
        s->proto = f;
        return 0;
    }
    case VU_GET_QUEUE_NUM:
        reply_u64(rep, m->request, s->nq);
        return 0;
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
            vu_log(s, "SET_VRING_NUM: ring %u: size %" PRIu32 " (a power of two up to %u)", i, num,
                 vdisk_virtio_queue_max_size(s->v));
            return -EINVAL;
        }
        if (s->q[i].running) {
            vu_log(s, "SET_VRING_NUM: ring %u is running", i);
            return -EBUSY;
        }
        s->q[i].num = num;
        return 0;
    case VU_SET_VRING_ADDR: {
        if (m->size != 40) {
            vu_log(s, "SET_VRING_ADDR: payload of %" PRIu32 " bytes (expected 40)", m->size);
            return -EINVAL;
        }
        i = le32_load(m->payload);
        if (i >= s->nq) {
            vu_log(s, "SET_VRING_ADDR: ring %u (the device has %u)", i, s->nq);
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
            vu_log(s, "SET_VRING_BASE: ring %u: base %" PRIu32 " (split rings only)", i, num);
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
        vu_close_fd(&q->kick_fd);
        uint8_t st[8];
        le32_store(st, i);
        le32_store(st + 4, q->base);
        set_reply(rep, m->request, st, sizeof st);
        return 0;
    }
    case VU_SET_VRING_KICK: {
        if ((r = get_ring_fd(s, m, &i, &fd)) < 0)
            return r;
        struct vu_queue *q = &s->q[i];
        if (fd < 0) {
            vu_log(s, "SET_VRING_KICK: ring %u: polling mode is not supported", i);
            return -ENOTSUP;
        }
        kick_watch(s, i, false);
        vu_close_fd(&q->kick_fd);
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
        vu_close_fd(&s->q[i].call_fd);
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
        vu_close_fd(&s->q[i].err_fd);
        s->q[i].err_fd = fd;
        return 0;
    case VU_SET_VRING_ENABLE:
        if ((r = get_state(s, m, &i, &num)) < 0)
            return r;
        if (num > 1) {
            vu_log(s, "SET_VRING_ENABLE: ring %u: %" PRIu32 " (0 or 1)", i, num);
            return -EINVAL;
        }
        s->q[i].enabled = num;
        return ring_update(s, i);
    case VU_GET_CONFIG: {
        uint32_t off, len;
        uint8_t buf[VU_CONFIG_HDR + VU_CONFIG_MAX];
        if (config_msg(s, m, &off, &len) < 0 ||
            vdisk_virtio_config_read(s->v, off, buf + VU_CONFIG_HDR, len) < 0) {
            set_reply(rep, m->request, NULL, 0);
            return -EINVAL;
        }
        memcpy(buf, m->payload, VU_CONFIG_HDR);
        set_reply(rep, m->request, buf, VU_CONFIG_HDR + len);
        return 0;
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
        vu_log(s, "%s (%" PRIu32 ") is not supported", vu_req_name(m->request), m->request);
        return -ENOTSUP;
    }
}

void vu_on_kick(struct vdisk_vhost *s, unsigned i)
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
    struct vdisk_vhost *s = opaque;
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
    vu_info(opaque, "guest: %s", message);
}

int vu_attach(struct vdisk_vhost *s)
{
    struct vdisk_virtio_host h = {.struct_size = sizeof h,
                                  .notify = model_notify, .log = model_log, .opaque = s};
    s->nq = vdisk_virtio_num_queues(s->v);
    if (s->nq == 0 || s->nq > VU_MAX_QUEUES)
        return err_set(-ERANGE, "the model has %u queues (1 to %u are served)", s->nq,
                       VU_MAX_QUEUES);
    if (!(s->q = calloc(s->nq, sizeof *s->q)))
        return err_set(-ENOMEM, "out of memory");
    const char *call = err_context();
    int r = vdisk_virtio_set_host(s->v, &h);
    err_enter(call); /* messages after this one name the caller's call again */
    if (r < 0)
        return r;
    s->log_tokens = VU_LOG_BURST;
    s->log_stamp = vu_now_ms();
    s->offered = vdisk_virtio_features(s->v) | (1ull << VU_F_PROTOCOL_FEATURES);
    s->proto_offered = VU_PROTO_OFFERED;
    if (s->flags & VDISK_VHOST_NO_CONFIG)
        s->proto_offered &= ~(1ull << VU_PROTO_F_CONFIG);
    for (unsigned i = 0; i < s->nq; i++)
        s->q[i].kick_fd = s->q[i].call_fd = s->q[i].err_fd = -1;
    for (unsigned i = 0; i < VU_MAX_REGIONS; i++)
        s->reg[i].slot = -1;
    return 0;
}

void vu_forget_front_end(struct vdisk_vhost *s)
{
    vdisk_virtio_drain(s->v);
    for (unsigned i = 0; i < s->nq; i++) {
        ring_stop(s, i);
        ring_forget(s, i);
    }
    vdisk_virtio_reset(s->v);
    mem_forget(s);
    s->acked = s->proto = 0;
    for (unsigned i = 0; i < s->nq; i++)
        s->q[i].call_missed = false;
}

int vu_handle(struct vdisk_vhost *s, struct vu_msg *m, struct vu_reply *rep)
{
    rep->send = false;
    int r = handle(s, m, rep);
    if (r == VU_CLOSE)
        return VU_CLOSE;
    uint32_t request = m->request, flags = m->flags;
    if (r < 0 && !(flags & VU_FLAG_NEED_REPLY) && request != VU_GET_CONFIG)
        vu_log(s, "%s failed: %s", vu_req_name(request), strerror(-r));
    /* REPLY_ACK: requests that have no reply of their own are acknowledged
     * (0: success, else the errno). */
    if ((flags & VU_FLAG_NEED_REPLY) && !rep->send)
        reply_u64(rep, request, r < 0 ? (uint64_t)-r : 0);
    return 0;
}
