/* SPDX-License-Identifier: MIT */
/*
 * tests/nbd/splice.c: the NBD server's zero-copy reads (vdisk/nbd.h,
 * "Zero-copy reads"), served in-process (vdisk_nbd_listen_unix and the
 * helper thread) over a Unix socket and read by libnbd or a client written
 * here byte by byte, every byte compared with what qemu-img reads of the
 * same image:
 *
 *   pipe_room  reads sent together whose data do not all fit in the
 *              connection's pipe (1 MiB, or 4 MiB where allowed): the later
 *              ones wait for room, then are spliced, or copied (a read not
 *              aligned to pages takes a page more; the file's pages dropped
 *              from the cache meanwhile); every reply comes.
 *   freed_clusters  a spliced reply waiting in a client's socket while
 *              another client trims (or zeroes) that qcow2 cluster and
 *              writes another one: the reply holds what was there, or
 *              zeroes, never the other write's bytes.
 *   shapes     a raw file whose size is not a multiple of 512; qcow2 with
 *              64 KiB clusters whose data clusters were written in a
 *              scattered order, with zero, unallocated and compressed
 *              clusters and partial writes, over a qcow2 or a raw backing
 *              file; the same with extended_l2=on; 4 KiB and 2 MiB
 *              clusters; a range of some as an offset device (as a
 *              partition).  Random reads of 1 byte to 4 MiB + 64 KiB
 *              (mostly 64 KiB to 1 MiB; aligned and not), with structured
 *              replies and without, served three ways: by default (the
 *              files cached: vdisk_nbd_spliced() grows, also for a read of
 *              the backing file alone), with VDISK_NBD_NO_SPLICE and with
 *              cache=none (0 spliced).
 *   rw         read after write over two connections (multi-conn): writes
 *              into unallocated, compressed and zero clusters, over the
 *              backing file and over earlier writes, write zeroes, trims
 *              and flushes, each read back (64 KiB and more) from the
 *              other connection against a model; then the image as
 *              qemu-img reads it is the model.  On qcow2 over a raw
 *              backing file and on a raw image.
 *   in_flight  4 connections, each with 64 reads of 1 MiB and 256 KiB in
 *              flight at once over the whole image, more than their pipes
 *              hold: some wait for room, some are copied.
 *   hang_ups   clients that ask for many large reads and go without
 *              reading the replies (closing, after part of a reply, after
 *              shutdown(SHUT_WR), through libnbd), while two clients read
 *              and check meanwhile; then fresh clients are served right,
 *              still spliced, and once the clients are gone the process
 *              holds no file descriptor more than the handle's own pipe,
 *              and none at all once the handle is freed.
 *
 * The seed is fixed (VDISK_TEST_SEED=N runs another) and is in every
 * failure message.  Needs qemu-img and qemu-io (else 77).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>
#include <vdisk/vdisk.h>

#include "harness.h"

#define KiB ((uint64_t)1024)
#define MiB (1024 * KiB)

/* Reads of 64 KiB to 1 MiB (4 MiB where the pipes may be that large) may
 * be spliced (nbd.h); the longest read asked here. */
#define SPLICE_MIN (64 * KiB)
#define MAX_READ (4 * MiB + 64 * KiB)

/* With no client connected, the handle holds one pipe (nbd.h: one a
 * connection, made at its first zero-copy read, and the handle one more). */
#define IDLE_PIPE_FDS 2u

static uint64_t seed0 = 0x5b11ce0fc0ffee1dULL;
/* What runs now, for failure messages. */
static char ctx[512];
/* How long a reply, a connection or a client's going may take. */
static unsigned deadline_ms;

/* ---- Failures ------------------------------------------------------------ */

/* The server's last log lines, shown with a failure. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_ring[16][256];
static unsigned log_count;

static void logger(void *opaque, const char *line)
{
    (void)opaque;
    pthread_mutex_lock(&log_lock);
    snprintf(log_ring[log_count++ % 16], sizeof log_ring[0], "%s", line);
    pthread_mutex_unlock(&log_lock);
}

static _Noreturn void failf(const char *file, int line, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

static _Noreturn void failf(const char *file, int line, const char *f, ...)
{
    char m[4096];
    va_list ap;
    va_start(ap, f);
    vsnprintf(m, sizeof m, f, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    unsigned n = log_count < 16 ? log_count : 16;
    if (n)
        fprintf(stderr, "the server's last %u log lines:\n", n);
    for (unsigned i = log_count - n; i < log_count; i++)
        fprintf(stderr, "  %s\n", log_ring[i % 16]);
    pthread_mutex_unlock(&log_lock);
    ck_abort_msg("%s:%d: %s\n  [%s; seed %#" PRIx64 ": VDISK_TEST_SEED=%#" PRIx64
                 " runs it again]", file, line, m, ctx, seed0, seed0);
    abort();
}

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond))                                                               \
            failf(__FILE__, __LINE__, __VA_ARGS__);                                \
    } while (0)

/* ---- Small things -------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void nap_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A random number below N (0 for N 0). */
static uint64_t rnd(uint64_t *rng, uint64_t n)
{
    return n ? rng_next(rng) % n : 0;
}

/* A generator of its own for the part TAG of the run. */
static uint64_t rng_for(uint64_t tag)
{
    uint64_t s = seed0 ^ (tag * 0x9e3779b97f4a7c15ULL);
    return s ? s : 1;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * Whether GOT (LEN bytes read at OFF) is WANT's bytes there (WANT holds
 * SIZE bytes); if not, MSG says where they differ, and where the first
 * wrong bytes come from when that can be told.
 */
static bool same_bytes(const uint8_t *got, const uint8_t *want, uint64_t size, uint64_t off,
                       size_t len, char *msg, size_t cap)
{
    if (memcmp(got, want + off, len) == 0)
        return true;
    size_t first = 0, last = 0, ndiff = 0;
    for (size_t i = 0; i < len; i++)
        if (got[i] != want[off + i]) {
            if (!ndiff)
                first = i;
            last = i;
            ndiff++;
        }
    size_t w = min_u64(32, len - first);
    const char *src = "bytes found nowhere in the image";
    char where[96];
    bool zero = true, fill = true;
    for (size_t i = 0; i < w; i++) {
        zero &= got[first + i] == 0;
        fill &= got[first + i] == 0xa5;
    }
    if (zero)
        src = "zeroes";
    else if (fill)
        src = "the client's 0xa5 fill: no bytes came for them";
    else if (w >= 8) {
        const uint8_t *at = memmem(want, size, got + first, w);
        if (at) {
            snprintf(where, sizeof where, "the image's bytes at %" PRIu64 " (%+" PRId64 ")",
                     (uint64_t)(at - want),
                     (int64_t)(at - want) - (int64_t)(off + first));
            src = where;
        }
    }
    snprintf(msg, cap,
             "read of %zu bytes at %" PRIu64 ": %zu bytes differ, the first at %" PRIu64
             " (+%zu: got 0x%02x, want 0x%02x), the last at %" PRIu64 "; from there %s",
             len, off, ndiff, off + first, first, got[first], want[off + first], off + last,
             src);
    return false;
}

/* ---- Open file descriptors ----------------------------------------------- */

struct fdset {
    unsigned n;
    int fd[1024];
    char what[1024][64];
};

static void fd_snapshot(struct fdset *s)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d, "/proc/self/fd: %s", strerror(errno));
    s->n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d))
            continue;
        CHECK(s->n < 1024, "more than 1024 open file descriptors");
        s->fd[s->n] = fd;
        char *what = s->what[s->n];
        ssize_t l = readlink(fmt("/proc/self/fd/%d", fd), what, sizeof s->what[0] - 1);
        what[l > 0 ? l : 0] = '\0';
        s->n++;
    }
    closedir(d);
}

static int fd_find(const struct fdset *s, int fd)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->fd[i] == fd)
            return (int)i;
    return -1;
}

/* The descriptors of NOW that BASE lacks ("+fd what"), and those gone
 * ("-fd what"), into MSG; their numbers in *ADDED and *GONE, and in
 * *ADDED_NON_PIPES those added that are not pipes. */
static void fd_diff(const struct fdset *base, const struct fdset *now, unsigned *added,
                    unsigned *added_non_pipes, unsigned *gone, char *msg, size_t cap)
{
    size_t used = 0;
    *added = *added_non_pipes = *gone = 0;
    msg[0] = '\0';
    for (unsigned i = 0; i < now->n; i++) {
        int j = fd_find(base, now->fd[i]);
        if (j >= 0 && strcmp(base->what[j], now->what[i]) == 0)
            continue;
        (*added)++;
        bool pipe = strncmp(now->what[i], "pipe:", 5) == 0;
        if (!pipe)
            (*added_non_pipes)++;
        if (used + 80 < cap && (!pipe || *added <= 8))
            used += (size_t)snprintf(msg + used, cap - used, " +%d %s", now->fd[i], now->what[i]);
    }
    for (unsigned i = 0; i < base->n; i++) {
        int j = fd_find(now, base->fd[i]);
        if (j >= 0 && strcmp(now->what[j], base->what[i]) == 0)
            continue;
        (*gone)++;
        if (used + 80 < cap)
            used += (size_t)snprintf(msg + used, cap - used, " -%d %s", base->fd[i],
                                     base->what[i]);
    }
}

/* ---- The server ----------------------------------------------------------- */

struct server {
    vdisk_nbd *h;
    const char *sock;
};

static void serve(struct server *s, vdisk_dev *d, unsigned flags, unsigned max_clients)
{
    static unsigned nsock;
    s->sock = scratch(fmt("s%u.sock", nsock++));
    pthread_mutex_lock(&log_lock);
    log_count = 0; /* (a failure shows this handle's lines) */
    pthread_mutex_unlock(&log_lock);
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .flags = flags | VDISK_NBD_QUIET,
                                 .max_clients = max_clients, .log = logger,
                                 .request_timeout_ms = 5000};
    int r = vdisk_nbd_listen_unix(&s->h, d, s->sock, &p);
    CHECK(r == 0, "vdisk_nbd_listen_unix: %s", vdisk_get_error());
    CHECK(vdisk_nbd_start(s->h) == 0, "vdisk_nbd_start: %s", vdisk_get_error());
}

/* The handle's counters are read while its thread is stopped (nbd.h:
 * only vdisk_nbd_stop and _free may be called while it runs). */
static uint64_t spliced_now(struct server *s)
{
    CHECK(vdisk_nbd_stop(s->h) == 0, "vdisk_nbd_stop");
    uint64_t v = vdisk_nbd_spliced(s->h);
    CHECK(vdisk_nbd_start(s->h) == 0, "vdisk_nbd_start: %s", vdisk_get_error());
    return v;
}

/* Waits (bounded) until the server has dropped every client. */
static void wait_no_clients(struct server *s, const char *what)
{
    uint64_t end = now_ms() + deadline_ms;
    for (;;) {
        CHECK(vdisk_nbd_stop(s->h) == 0, "vdisk_nbd_stop");
        unsigned n = vdisk_nbd_clients(s->h);
        CHECK(vdisk_nbd_start(s->h) == 0, "vdisk_nbd_start: %s", vdisk_get_error());
        if (n == 0)
            return;
        CHECK(now_ms() < end, "%s: %u clients still connected after %u ms", what, n, deadline_ms);
        nap_ms(10);
    }
}

static void unserve(struct server *s)
{
    vdisk_nbd_free(s->h);
    s->h = NULL;
}

static vdisk_dev *open_dev(const char *path, const char *format, bool ro, const char *cache)
{
    vdisk_options *o;
    CHECK(vdisk_options_new(&o) == 0, "vdisk_options_new");
    CHECK(vdisk_options_set(o, "format", format) == 0, "format");
    if (ro)
        CHECK(vdisk_options_set(o, "read-only", "on") == 0, "read-only");
    if (cache)
        CHECK(vdisk_options_set(o, "cache", cache) == 0, "cache");
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, path, o);
    vdisk_options_free(o);
    CHECK(r == 0, "vdisk_open %s (cache %s): %s", path, cache ? cache : "default",
          vdisk_get_error());
    return d;
}

/* ---- libnbd ------------------------------------------------------------- */

/* A client of SOCK in the transmission phase, or NULL with ERR. */
static struct nbd_handle *client_open(const char *sock, bool structured, char *err, size_t cap)
{
    struct nbd_handle *n = nbd_create();
    if (!n) {
        snprintf(err, cap, "nbd_create: %s", nbd_get_error());
        return NULL;
    }
    /* Unread bytes keep a fill of their own, not libnbd's zeroes. */
    if (nbd_set_request_structured_replies(n, structured) < 0 ||
        nbd_set_pread_initialize(n, false) < 0 || nbd_aio_connect_unix(n, sock) < 0) {
        snprintf(err, cap, "connecting to %s: %s", sock, nbd_get_error());
        nbd_close(n);
        return NULL;
    }
    uint64_t end = now_ms() + deadline_ms;
    while (!nbd_aio_is_ready(n)) {
        if (nbd_aio_is_dead(n) || nbd_aio_is_closed(n) || nbd_poll(n, 100) < 0) {
            snprintf(err, cap, "connecting to %s: %s", sock, nbd_get_error());
            nbd_close(n);
            return NULL;
        }
        if (now_ms() > end) {
            snprintf(err, cap, "connecting to %s: no handshake within %u ms", sock, deadline_ms);
            nbd_close(n);
            return NULL;
        }
    }
    if (nbd_get_structured_replies_negotiated(n) != structured) {
        snprintf(err, cap, "structured replies %s, but negotiated: %d",
                 structured ? "asked" : "not asked", nbd_get_structured_replies_negotiated(n));
        nbd_close(n);
        return NULL;
    }
    return n;
}

static struct nbd_handle *client(const char *sock, bool structured, uint64_t size)
{
    char err[512];
    struct nbd_handle *n = client_open(sock, structured, err, sizeof err);
    CHECK(n, "%s", err);
    CHECK(nbd_get_size(n) == (int64_t)size, "export size %" PRId64 ", want %" PRIu64,
          nbd_get_size(n), size);
    int64_t max = nbd_get_block_size(n, LIBNBD_SIZE_MAXIMUM);
    CHECK(max <= 0 || max >= (int64_t)MAX_READ, "the server's largest request: %" PRId64, max);
    return n;
}

/* One request of a batch. */
struct req {
    uint64_t off;
    size_t len;
    uint8_t *buf;
    int64_t cookie;
};

/* Waits for the CNT requests of R; false with ERR when one fails or the
 * replies do not come within the deadline. */
static bool wait_reqs(struct nbd_handle *n, struct req *r, unsigned cnt, char *err, size_t cap)
{
    uint64_t end = now_ms() + deadline_ms;
    unsigned left = cnt;
    while (left) {
        for (unsigned i = 0; i < cnt; i++) {
            if (r[i].cookie <= 0)
                continue;
            int c = nbd_aio_command_completed(n, (uint64_t)r[i].cookie);
            if (c == 0)
                continue;
            if (c < 0) {
                snprintf(err, cap, "request of %zu bytes at %" PRIu64 " failed: %s", r[i].len,
                         r[i].off, nbd_get_error());
                return false;
            }
            r[i].cookie = 0;
            left--;
        }
        if (!left)
            break;
        if (now_ms() > end) {
            size_t used = (size_t)snprintf(err, cap, "%u of %u requests unanswered after %u ms:",
                                           left, cnt, deadline_ms);
            for (unsigned i = 0; i < cnt && used + 64 < cap; i++)
                if (r[i].cookie > 0)
                    used += (size_t)snprintf(err + used, cap - used, " %zu bytes at %" PRIu64 ";",
                                             r[i].len, r[i].off);
            return false;
        }
        if (nbd_poll(n, 100) < 0) {
            snprintf(err, cap, "nbd_poll: %s", nbd_get_error());
            return false;
        }
    }
    return true;
}

/* Reads the CNT ranges of R at once (their buffers filled with 0xa5
 * first); false with ERR when one fails. */
static bool read_reqs(struct nbd_handle *n, struct req *r, unsigned cnt, char *err, size_t cap)
{
    for (unsigned i = 0; i < cnt; i++) {
        memset(r[i].buf, 0xa5, r[i].len);
        r[i].cookie = nbd_aio_pread(n, r[i].buf, r[i].len, r[i].off, NBD_NULL_COMPLETION, 0);
        if (r[i].cookie < 0) {
            snprintf(err, cap, "nbd_aio_pread of %zu bytes at %" PRIu64 ": %s", r[i].len,
                     r[i].off, nbd_get_error());
            for (unsigned j = 0; j < i; j++)
                r[j].cookie = 0;
            return false;
        }
    }
    return wait_reqs(n, r, cnt, err, cap);
}

/* Reads and compares with WANT (SIZE bytes); fails the test otherwise. */
static void read_check(struct nbd_handle *n, struct req *r, unsigned cnt, const uint8_t *want,
                       uint64_t size, const char *what)
{
    char err[1024];
    CHECK(read_reqs(n, r, cnt, err, sizeof err), "%s: %s", what, err);
    for (unsigned i = 0; i < cnt; i++)
        CHECK(same_bytes(r[i].buf, want, size, r[i].off, r[i].len, err, sizeof err), "%s: %s",
              what, err);
}

static void one_cmd(struct nbd_handle *n, int64_t cookie, const char *what)
{
    char err[512];
    CHECK(cookie > 0, "%s: %s", what, nbd_get_error());
    struct req r = {.cookie = cookie};
    CHECK(wait_reqs(n, &r, 1, err, sizeof err), "%s: %s", what, err);
}

/* ---- Image shapes -------------------------------------------------------- */

enum rkind { R_HOT, R_BACKING_HOT, R_COMPRESSED, R_ZERO, R_UNALLOC, R_PARTIAL, R_SCATTERED,
             R_TAIL };
static const char *const rkind_names[] = {"data written at once", "backing file's data only",
                                          "compressed", "zero", "unallocated",
                                          "partial writes", "scattered clusters",
                                          "the file's end"};

struct region {
    uint64_t off, len;
    enum rkind kind;
};

struct shape {
    const char *name;
    unsigned cs;       /* qcow2's cluster size; 0: raw */
    bool ext_l2;
    int backing;       /* 0: none, 1: raw, 2: qcow2 */
    uint64_t size;     /* the image's (raw: the file's) size */
    /* Made by make_shape(): */
    const char *path, *format, *base;
    uint8_t *want;     /* what qemu-img convert -O raw gives */
    uint64_t dev_size; /* its length */
    uint8_t *backing_view; /* the backing file's bytes under the image, or NULL */
    struct region reg[24];
    unsigned nreg;
};

static void add_region(struct shape *sh, uint64_t off, uint64_t len, enum rkind kind)
{
    CHECK(sh->nreg < sizeof sh->reg / sizeof sh->reg[0], "too many regions");
    sh->reg[sh->nreg++] = (struct region){off, len, kind};
}

/* qemu-io commands, gathered: " -c 'CMD'" each. */
struct cmds {
    char *s;
    size_t len, cap;
};

static void cmd_add(struct cmds *c, const char *f, ...) __attribute__((format(printf, 2, 3)));

static void cmd_add(struct cmds *c, const char *f, ...)
{
    char one[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(one, sizeof one, f, ap);
    va_end(ap);
    size_t n = strlen(one) + 8;
    if (c->len + n + 1 > c->cap) {
        c->cap = (c->len + n + 1) * 2;
        c->s = realloc(c->s, c->cap);
        CHECK(c->s, "out of memory");
    }
    c->len += (size_t)snprintf(c->s + c->len, c->cap - c->len, " -c '%s'", one);
}

/* A file of LEN random bytes, or of bytes that compress well (runs of a
 * few values); its path. */
static const char *data_file(const char *tag, unsigned i, size_t len, bool compressible,
                             uint64_t *rng)
{
    uint8_t *b = malloc(len);
    CHECK(b, "out of memory");
    if (!compressible)
        fill_random(b, len, rng);
    else
        for (size_t j = 0; j < len;) {
            size_t run = 1 + rnd(rng, 24);
            uint8_t v = (uint8_t)(0x40 + rnd(rng, 6));
            for (; run && j < len; run--)
                b[j++] = v;
        }
    const char *path = scratch(fmt("%s-%u.bin", tag, i));
    write_file(path, b, len);
    free(b);
    return path;
}

/* The raw shape: random data, a hole, and a last partial sector; the file's
 * size not a multiple of 512, the device's rounded up. */
static void make_raw(struct shape *sh, uint64_t *rng)
{
    uint64_t whole = sh->size / MiB * MiB;
    sh->path = scratch(fmt("%s.raw", sh->name));
    sh->format = "raw";
    RUN_OK("qemu-img create -q -f raw %s %" PRIu64, sh->path, whole);
    const char *a = data_file(sh->name, 0, 6 * MiB, false, rng);
    const char *b = data_file(sh->name, 1, whole - 8 * MiB, false, rng);
    RUN_OK("qemu-io -f raw -c 'write -q -s %s 0 6M' -c 'write -q -s %s 8M %" PRIu64 "' %s", a,
           b, whole - 8 * MiB, sh->path);
    /* The tail: SIZE - WHOLE random bytes past the last whole MiB. */
    uint8_t tail[4096];
    uint64_t tl = sh->size - whole;
    CHECK(tl > 0 && tl < sizeof tail, "raw shape's size");
    fill_random(tail, tl, rng);
    FILE *f = fopen(sh->path, "r+");
    CHECK(f && fseek(f, (long)whole, SEEK_SET) == 0 && fwrite(tail, 1, tl, f) == tl &&
          fclose(f) == 0, "%s: %s", sh->path, strerror(errno));
    add_region(sh, 0, 6 * MiB, R_HOT);
    add_region(sh, 6 * MiB, 2 * MiB, R_UNALLOC);
    add_region(sh, 8 * MiB, whole - 8 * MiB, R_HOT);
    add_region(sh, whole - MiB, sh->size - whole + MiB, R_TAIL);
}

/* A qcow2 shape, in clusters from the start:
 *   scattered  the first NA clusters: two thirds written one by one in a
 *              shuffled order (host offsets out of the guest's order), the
 *              rest left unallocated;
 *   hot        1 MiB (2 clusters at least) written at once;
 *   a gap, compressed clusters (one, then two adjacent), zero clusters
 *   (write -z; write -z -u), partial writes over the backing file
 *   (crossing clusters, unaligned), with extended L2 sub-cluster writes
 *   and zeroes, the backing file's data alone (1 MiB), the rest
 *   unallocated; the backing file ends 2 clusters before the image. */
static void make_qcow2(struct shape *sh, uint64_t *rng)
{
    uint64_t cs = sh->cs, n = sh->size / cs;
    uint64_t bsize = sh->size - 2 * cs;
    sh->format = "qcow2";
    sh->path = scratch(fmt("%s.qcow2", sh->name));
    const char *bopt = "";
    if (sh->backing) {
        /* Random bytes, but for a hole of 64 KiB (or a cluster) halfway. */
        const char *braw = scratch(fmt("%s-base.raw", sh->name));
        uint8_t *b = calloc(1, bsize);
        CHECK(b, "out of memory");
        uint64_t hole = bsize / 2 / cs * cs, hlen = cs > 64 * KiB ? cs : 64 * KiB;
        fill_random(b, hole, rng);
        fill_random(b + hole + hlen, bsize - hole - hlen, rng);
        write_file(braw, b, bsize);
        sh->backing_view = calloc(1, sh->size);
        CHECK(sh->backing_view, "out of memory");
        memcpy(sh->backing_view, b, bsize);
        free(b);
        if (sh->backing == 1) {
            sh->base = braw;
        } else {
            sh->base = scratch(fmt("%s-base.qcow2", sh->name));
            RUN_OK("qemu-img convert -q -f raw -O qcow2 %s %s", braw, sh->base);
        }
        bopt = fmt(" -b %s -F %s", sh->base, sh->backing == 1 ? "raw" : "qcow2");
    }
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=%u%s%s %s %" PRIu64, sh->cs,
           sh->ext_l2 ? ",extended_l2=on" : "", bopt, sh->path, sh->size);

    struct cmds c = {0};
    unsigned nf = 0;
    uint64_t na = min_u64(n / 4, 128), hot = MiB / cs < 2 ? 2 : MiB / cs;
    unsigned *perm = permutation((unsigned)na, rng);
    for (uint64_t i = 0; i < na; i++)
        if (perm[i] % 3 != 2)
            cmd_add(&c, "write -q -s %s %" PRIu64 " %" PRIu64,
                    data_file(sh->name, nf++, cs, false, rng), perm[i] * cs, cs);
    free(perm);
    add_region(sh, 0, na * cs, R_SCATTERED);
    uint64_t at = na;
    cmd_add(&c, "write -q -s %s %" PRIu64 " %" PRIu64,
            data_file(sh->name, nf++, hot * cs, false, rng), at * cs, hot * cs);
    add_region(sh, at * cs, hot * cs, R_HOT);
    at += hot + 1;
    add_region(sh, (at - 1) * cs, cs, R_UNALLOC);
    for (unsigned k = 0; k < 4; k++) {
        if (k == 1)
            continue;
        cmd_add(&c, "write -q -c -s %s %" PRIu64 " %" PRIu64,
                data_file(sh->name, nf++, cs, true, rng), (at + k) * cs, cs);
        add_region(sh, (at + k) * cs, cs, R_COMPRESSED);
    }
    at += 5;
    cmd_add(&c, "write -q -z %" PRIu64 " %" PRIu64, at * cs, 2 * cs);
    add_region(sh, at * cs, 2 * cs, R_ZERO);
    at += 3;
    cmd_add(&c, "write -q -z -u %" PRIu64 " %" PRIu64, at * cs, cs);
    add_region(sh, at * cs, cs, R_ZERO);
    at += 2;
    uint64_t o1 = at * cs + cs / 3 + 7, l1 = cs + 777, o2 = (at + 3) * cs - 100;
    cmd_add(&c, "write -q -s %s %" PRIu64 " %" PRIu64, data_file(sh->name, nf++, l1, false, rng),
            o1, l1);
    cmd_add(&c, "write -q -s %s %" PRIu64 " 300", data_file(sh->name, nf++, 300, false, rng), o2);
    add_region(sh, at * cs, 4 * cs, R_PARTIAL);
    at += 5;
    if (sh->ext_l2) {
        uint64_t sub = cs / 32;
        cmd_add(&c, "write -q -s %s %" PRIu64 " %" PRIu64,
                data_file(sh->name, nf++, 2 * sub, false, rng), at * cs + 3 * sub, 2 * sub);
        cmd_add(&c, "write -q -z %" PRIu64 " %" PRIu64, at * cs + 10 * sub, 4 * sub);
        cmd_add(&c, "write -q -s %s %" PRIu64 " %" PRIu64,
                data_file(sh->name, nf++, sub + 11, false, rng), at * cs + 20 * sub + 5,
                sub + 11);
        cmd_add(&c, "write -q -z %" PRIu64 " %" PRIu64, (at + 1) * cs + 7 * sub, 9 * sub);
        add_region(sh, at * cs, 2 * cs, R_PARTIAL);
        at += 3;
    }
    if (sh->backing) {
        add_region(sh, at * cs, hot * cs, R_BACKING_HOT);
        at += hot;
    }
    CHECK(at + 2 <= n, "shape %s: %" PRIu64 " clusters laid out of %" PRIu64, sh->name, at, n);
    add_region(sh, at * cs, sh->size - at * cs, R_UNALLOC);
    RUN_OK("qemu-io -f qcow2%s %s", c.s, sh->path);
    free(c.s);
    RUN_OK("qemu-img check -q %s", sh->path);
    /* The shape is what it claims: compressed clusters (data without a
     * host offset), and data clusters out of the guest's order. */
    char map[512];
    snprintf(map, sizeof map, "qemu-img map --output=json -f qcow2 %s | grep '\"depth\": 0'",
             sh->path);
    struct run *r = run("%s | grep '\"data\": true' | grep -vc '\"offset\"'", map);
    CHECK(atoi(r->out) >= 2, "%s: %d compressed extents (want 2 or more)", sh->name,
          atoi(r->out));
    r = run("%s | sed -n 's/.*\"data\": true, \"offset\": \\([0-9]*\\).*/\\1/p' | "
            "awk 'NR > 1 && $1 < p { d = 1 } { p = $1 } END { print d + 0 }'", map);
    CHECK(strcmp(r->out, "1\n") == 0, "%s: the data clusters lie in the guest's order (%s)",
          sh->name, r->out);
}

static void make_shape(struct shape *sh)
{
    uint64_t rng = rng_for((uint64_t)sh->cs * 7 + (uint64_t)sh->backing * 3 + sh->ext_l2 + 1);
    snprintf(ctx, sizeof ctx, "making shape %s", sh->name);
    if (sh->cs)
        make_qcow2(sh, &rng);
    else
        make_raw(sh, &rng);
    const char *want = scratch(fmt("%s-want.raw", sh->name));
    RUN_OK("qemu-img convert -f %s -O raw %s %s", sh->format, sh->path, want);
    size_t len;
    sh->want = read_file(want, &len);
    sh->dev_size = len;
    CHECK(len == (sh->size + 511) / 512 * 512, "%s: qemu-img reads %zu bytes", sh->name, len);
    unlink(want);
}

static void free_shape(struct shape *sh)
{
    free(sh->want);
    free(sh->backing_view);
    sh->want = sh->backing_view = NULL;
}

/* Puts the shape's files in the page cache. */
static void cache_files(const struct shape *sh)
{
    RUN_OK("cat %s %s > /dev/null", sh->path, sh->base ? sh->base : "");
}

/* ---- Reads ----------------------------------------------------------------- */

/* A random read of a device of SIZE bytes (the shape SH's, or NULL): 1
 * byte to MAX_READ, mostly 64 KiB to 1 MiB; unaligned, 4 KiB-aligned or
 * cluster-aligned; a fifth of them in or next to one of SH's regions. */
static void pick_read(const struct shape *sh, uint64_t size, uint64_t *rng, uint64_t *off,
                      uint64_t *len)
{
    uint64_t r = rnd(rng, 100), l;
    if (r < 8)
        l = 1 + rnd(rng, 4 * KiB);
    else if (r < 16)
        l = 4 * KiB + rnd(rng, 60 * KiB);
    else if (r < 76)
        l = 64 * KiB + rnd(rng, 960 * KiB + 1);
    else if (r < 88)
        l = MiB + rnd(rng, MiB + 1);
    else if (r < 94)
        l = 2 * MiB + rnd(rng, MAX_READ - 2 * MiB + 1);
    else
        l = (uint64_t[]){64 * KiB, MiB, 4 * MiB}[rnd(rng, 3)];
    unsigned a = (unsigned)rnd(rng, 3);
    uint64_t cs = sh && sh->cs > 64 * KiB ? sh->cs : 64 * KiB;
    uint64_t align = a == 0 ? 1 : a == 1 ? 4 * KiB : cs;
    l = (l + align - 1) / align * align;
    if (l > MAX_READ)
        l = MAX_READ / align * align;
    if (l == 0)
        l = MAX_READ;
    if (l > size)
        l = size;
    uint64_t lo = 0, hi = size;
    if (sh && sh->nreg && rnd(rng, 5) == 0) {
        const struct region *g = &sh->reg[rnd(rng, sh->nreg)];
        lo = g->off > 64 * KiB ? g->off - rnd(rng, 64 * KiB) : g->off;
        hi = min_u64(size, g->off + g->len + rnd(rng, 64 * KiB));
        if (hi - lo < l)
            l = hi - lo;
    }
    uint64_t o = lo + rnd(rng, hi - lo - l + 1);
    o = o / align * align;
    if (o + l > size)
        o = size - l;
    *off = o;
    *len = l;
}

#define NBUF 8

struct bufs {
    uint8_t *b[NBUF];
};

static void bufs_new(struct bufs *b)
{
    for (unsigned i = 0; i < NBUF; i++) {
        b->b[i] = malloc(MAX_READ);
        CHECK(b->b[i], "out of memory");
    }
}

static void bufs_free(struct bufs *b)
{
    for (unsigned i = 0; i < NBUF; i++)
        free(b->b[i]);
}

/* Reads [OFF, OFF + LEN) through N (in reads of at most 1 MiB, 4 at a
 * time) and compares with WANT. */
static uint64_t read_range(struct nbd_handle *n, struct bufs *b, uint64_t off, uint64_t len,
                           const uint8_t *want, uint64_t size, const char *what)
{
    uint64_t done = 0;
    while (done < len) {
        struct req r[4];
        unsigned k = 0;
        for (; k < 4 && done < len; k++) {
            uint64_t l = min_u64(MiB, len - done);
            r[k] = (struct req){.off = off + done, .len = l, .buf = b->b[k]};
            done += l;
        }
        read_check(n, r, k, want, size, what);
    }
    return len;
}

/* ---- 1. Shapes ------------------------------------------------------------- */

enum run_mode { SPLICED, NO_SPLICE, CACHE_NONE };
static const char *const mode_names[] = {"default flags", "VDISK_NBD_NO_SPLICE", "cache=none"};

/* Whether PATH opens with O_DIRECT here. */
static bool direct_ok(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* The shape SH as the range [START, START + LEN) of its device (an
 * offset device, as partitions are opened): its bytes and regions. */
static struct shape range_view(const struct shape *sh, uint64_t start, uint64_t len)
{
    struct shape v = *sh;
    v.want = sh->want + start;
    v.dev_size = len;
    v.backing_view = NULL;
    v.nreg = 0;
    for (unsigned g = 0; g < sh->nreg; g++) {
        const struct region *rg = &sh->reg[g];
        if (rg->off + rg->len <= start || rg->off >= start + len)
            continue;
        uint64_t lo = rg->off > start ? rg->off : start;
        uint64_t hi = min_u64(rg->off + rg->len, start + len);
        v.reg[v.nreg++] = (struct region){lo - start, hi - lo, rg->kind};
    }
    return v;
}

/*
 * NREADS random reads of the shape SH, and reads of each of its regions
 * and of its end, through a structured-reply and a simple-reply client,
 * served as MODE says; with RANGE_LEN, of the offset device
 * [RANGE_START, RANGE_START + RANGE_LEN) of it.  Then what was spliced:
 * nothing but with MODE SPLICED; there, more for each read of 512 KiB of
 * the data written at once and of the backing file's data alone.
 */
static void read_shape(struct shape *img, enum run_mode mode, unsigned nreads,
                       uint64_t range_start, uint64_t range_len)
{
    struct shape view = range_len ? range_view(img, range_start, range_len) : *img;
    struct shape *sh = &view;
    snprintf(ctx, sizeof ctx, "shape %s%s, %s", sh->name,
             range_len ? fmt(" as its range at %" PRIu64 " (%" PRIu64 " bytes)", range_start,
                             range_len) : "",
             mode_names[mode]);
    uint64_t rng = rng_for(0x100 + (uint64_t)sh->cs * 5 + (uint64_t)sh->backing * 3 +
                           sh->ext_l2 + mode * 0x10000 + range_start);
    vdisk_dev *d = open_dev(img->path, img->format, true, mode == CACHE_NONE ? "none" : NULL);
    vdisk_dev *whole = NULL;
    if (range_len) {
        whole = d;
        CHECK(vdisk_open_range(&d, whole, range_start, range_len, VDISK_OPEN_RDONLY) == 0,
              "vdisk_open_range: %s", vdisk_get_error());
    }
    CHECK((uint64_t)vdisk_get_size(d) == sh->dev_size, "device size %" PRId64 ", want %" PRIu64,
          (int64_t)vdisk_get_size(d), sh->dev_size);
    cache_files(sh);
    struct server s;
    serve(&s, d, mode == NO_SPLICE ? VDISK_NBD_NO_SPLICE : 0, 2);
    struct nbd_handle *c[2] = {client(s.sock, true, sh->dev_size),
                               client(s.sock, false, sh->dev_size)};
    struct bufs b;
    bufs_new(&b);
    uint64_t total = 0;
    char what[160];
    for (unsigned done = 0; done < nreads;) {
        for (unsigned ci = 0; ci < 2 && done < nreads; ci++) {
            struct req r[NBUF];
            unsigned k = 1 + (unsigned)rnd(&rng, 6);
            for (unsigned i = 0; i < k; i++) {
                uint64_t off, len;
                pick_read(sh, sh->dev_size, &rng, &off, &len);
                r[i] = (struct req){.off = off, .len = len, .buf = b.b[i]};
                total += len;
            }
            snprintf(what, sizeof what, "%s client, reads %u..%u",
                     ci ? "simple-reply" : "structured-reply", done, done + k - 1);
            read_check(c[ci], r, k, sh->want, sh->dev_size, what);
            done += k;
        }
    }
    /* Each region: its first 64 KiB, its first MiB, 64 KiB + 1 from an odd
     * offset, its first 4 MiB (all within the device). */
    for (unsigned g = 0; g < sh->nreg; g++) {
        const struct region *rg = &sh->reg[g];
        uint64_t left = sh->dev_size - rg->off;
        uint64_t odd = rg->off + 4095 + 64 * KiB + 1 <= sh->dev_size ? rg->off + 4095 : rg->off;
        struct req r[4] = {
            {.off = rg->off, .len = min_u64(SPLICE_MIN, left), .buf = b.b[0]},
            {.off = rg->off, .len = min_u64(min_u64(rg->len, MiB), left), .buf = b.b[1]},
            {.off = odd, .len = min_u64(64 * KiB + 1, sh->dev_size - odd), .buf = b.b[2]},
            {.off = rg->off, .len = min_u64(min_u64(rg->len, 4 * MiB), left), .buf = b.b[3]},
        };
        for (unsigned ci = 0; ci < 2; ci++) {
            snprintf(what, sizeof what, "region %s at %" PRIu64 " (%s client)",
                     rkind_names[rg->kind], rg->off, ci ? "simple-reply" : "structured-reply");
            read_check(c[ci], r, 4, sh->want, sh->dev_size, what);
            total += r[0].len + r[1].len + r[2].len + r[3].len;
        }
    }
    /* The device's last bytes. */
    uint64_t end = sh->dev_size;
    struct req t[6] = {
        {.off = end - MiB, .len = MiB, .buf = b.b[0]},
        {.off = end - 64 * KiB, .len = 64 * KiB, .buf = b.b[1]},
        {.off = end - 64 * KiB - 24, .len = 64 * KiB + 24, .buf = b.b[2]},
        {.off = end - 1, .len = 1, .buf = b.b[3]},
        {.off = end - 2 * MiB - 511, .len = 2 * MiB + 511, .buf = b.b[4]},
        {.off = end - 4 * MiB, .len = 4 * MiB, .buf = b.b[5]},
    };
    for (unsigned ci = 0; ci < 2; ci++) {
        read_check(c[ci], t, 6, sh->want, sh->dev_size, ci ? "the device's end (simple)"
                                                          : "the device's end (structured)");
        for (unsigned i = 0; i < 6; i++)
            total += t[i].len;
    }

    uint64_t sp = spliced_now(&s);
    if (mode != SPLICED) {
        CHECK(sp == 0, "%" PRIu64 " bytes spliced with %s", sp, mode_names[mode]);
    } else {
        CHECK(sp > 0, "no byte spliced of %" PRIu64 " read (the files cached)", total);
        CHECK(sp <= total, "%" PRIu64 " bytes spliced of %" PRIu64 " read", sp, total);
        /* Now that the tables are cached: 512 KiB of data written at once,
         * and of the backing file alone, from each client, are each
         * spliced. */
        for (unsigned g = 0; g < sh->nreg; g++) {
            const struct region *rg = &sh->reg[g];
            if ((rg->kind != R_HOT && rg->kind != R_BACKING_HOT) || rg->len < 576 * KiB)
                continue;
            for (unsigned ci = 0; ci < 2; ci++) {
                struct req r = {.off = rg->off + 64 * KiB, .len = 512 * KiB, .buf = b.b[0]};
                snprintf(what, sizeof what, "512 KiB of the region %s at %" PRIu64
                         " (%s client)", rkind_names[rg->kind], rg->off,
                         ci ? "simple-reply" : "structured-reply");
                read_check(c[ci], &r, 1, sh->want, sh->dev_size, what);
                uint64_t now = spliced_now(&s);
                CHECK(now > sp, "%s: not spliced (%" PRIu64 " bytes spliced before and after)",
                      what, sp);
                CHECK(now - sp <= r.len, "%s: %" PRIu64 " bytes spliced", what, now - sp);
                sp = now;
            }
        }
    }
    printf("%s%s, %s: %" PRIu64 " bytes read, %" PRIu64 " spliced\n", sh->name,
           range_len ? " (a range)" : "", mode_names[mode], total, sp);
    nbd_close(c[0]);
    nbd_close(c[1]);
    wait_no_clients(&s, "clients closed");
    unserve(&s);
    vdisk_close(d);
    vdisk_close(whole);
    bufs_free(&b);
}

START_TEST(shapes)
{
    struct shape list[] = {
        {.name = "raw-odd", .size = 16 * MiB + 1000},
        {.name = "qcow2-64k-over-qcow2", .cs = 65536, .backing = 2, .size = 24 * MiB},
        {.name = "qcow2-64k-over-raw", .cs = 65536, .backing = 1, .size = 24 * MiB},
        {.name = "qcow2-64k-extl2", .cs = 65536, .ext_l2 = true, .backing = 2,
         .size = 24 * MiB},
        {.name = "qcow2-4k", .cs = 4096, .size = 16 * MiB},
        {.name = "qcow2-2m-over-raw", .cs = 2 << 20, .backing = 1, .size = 64 * MiB},
    };
    unsigned nreads = SANITIZED ? 60 : 120;
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        struct shape *sh = &list[i];
        make_shape(sh);
        read_shape(sh, SPLICED, nreads, 0, 0);
        read_shape(sh, NO_SPLICE, nreads / 2, 0, 0);
        if (!direct_ok(sh->path))
            skip_note_case(__func__, "%s: the file system here refuses O_DIRECT (cache=none)",
                           sh->name);
        else
            read_shape(sh, CACHE_NONE, nreads / 2, 0, 0);
        /* As an offset device (a partition's) from an offset in no page's
         * start, ending short of the end. */
        if (i < 3)
            read_shape(sh, SPLICED, nreads / 2, MiB + 1536, sh->dev_size - MiB - 1536 - 8192);
        free_shape(sh);
    }
}
END_TEST

/* ---- 2. Read after write ---------------------------------------------------- */

struct rw {
    struct shape *sh;
    uint8_t *model;
    struct nbd_handle *c[2];
    struct bufs b;
    uint64_t rng, read_bytes;
    unsigned round;
};

/* Reads [OFF - pad, OFF + LEN + pad) through C (64 KiB at least), against
 * the model. */
static void read_around(struct rw *w, unsigned ci, uint64_t off, uint64_t len, const char *op)
{
    uint64_t size = w->sh->dev_size;
    uint64_t lo = off - rnd(&w->rng, min_u64(off, 128 * KiB) + 1);
    if (rnd(&w->rng, 2))
        lo = lo / (64 * KiB) * (64 * KiB);
    uint64_t hi = min_u64(size, off + len + rnd(&w->rng, 128 * KiB));
    if (hi - lo < SPLICE_MIN) {
        hi = min_u64(size, lo + SPLICE_MIN);
        lo = hi - SPLICE_MIN;
    }
    char what[200];
    snprintf(what, sizeof what, "round %u: read on connection %u after %s of %" PRIu64
             " bytes at %" PRIu64, w->round, ci, op, len, off);
    w->read_bytes += read_range(w->c[ci], &w->b, lo, hi - lo, w->model, size, what);
    /* Sometimes also one read of the whole MiB around it. */
    if (rnd(&w->rng, 3) == 0) {
        uint64_t m = off / MiB * MiB;
        struct req r = {.off = m, .len = min_u64(MiB, size - m), .buf = w->b.b[0]};
        read_check(w->c[ci], &r, 1, w->model, size, what);
        w->read_bytes += r.len;
    }
}

/* An offset for a request of LEN: in a region of the shape (compressed,
 * zero, unallocated, the backing file's ...), over the last write, or
 * anywhere (aligned or not). */
static uint64_t pick_off(struct rw *w, uint64_t len, uint64_t last_off, uint64_t last_len)
{
    uint64_t size = w->sh->dev_size, r = rnd(&w->rng, 10), o;
    if (r < 3 && w->sh->nreg) {
        const struct region *g = &w->sh->reg[rnd(&w->rng, w->sh->nreg)];
        o = g->off + rnd(&w->rng, g->len);
        o = o > len / 2 ? o - rnd(&w->rng, len / 2) : 0;
    } else if (r < 5 && last_len) {
        o = last_off + rnd(&w->rng, last_len);
        o = o > len ? o - rnd(&w->rng, len) : 0;
    } else {
        o = rnd(&w->rng, size);
        if (r < 7)
            o = o / (64 * KiB) * (64 * KiB);
    }
    return o + len > size ? size - len : o;
}

static void rw_run(struct shape *sh, uint64_t tag, unsigned rounds)
{
    snprintf(ctx, sizeof ctx, "read after write on %s", sh->name);
    struct rw w = {.sh = sh, .rng = rng_for(tag)};
    uint64_t size = sh->dev_size;
    w.model = malloc(size);
    CHECK(w.model, "out of memory");
    memcpy(w.model, sh->want, size);
    uint8_t *wbuf = malloc(512 * KiB), *before = malloc(MiB);
    CHECK(wbuf && before, "out of memory");
    bufs_new(&w.b);
    vdisk_dev *d = open_dev(sh->path, sh->format, false, NULL);
    cache_files(sh);
    struct server s;
    serve(&s, d, VDISK_NBD_UNMAP, 2);
    w.c[0] = client(s.sock, true, size);
    w.c[1] = client(s.sock, false, size);
    CHECK(nbd_can_multi_conn(w.c[0]) == 1 && nbd_can_multi_conn(w.c[1]) == 1,
          "multi-conn is not offered with 2 clients");
    uint64_t last_off = 0, last_len = 0;
    char what[200];
    /* First a write into each region (compressed, zero, unallocated
     * clusters, the backing file's data, ...): part of it, from an odd
     * offset, each read back from the other connection. */
    for (unsigned g = 0; g < sh->nreg; g++) {
        const struct region *rg = &sh->reg[g];
        uint64_t off = rg->off + min_u64(1000, rg->len / 2);
        uint64_t len = min_u64(min_u64(rg->len / 2, 200 * KiB), size - off);
        if (!len)
            continue;
        fill_random(wbuf, len, &w.rng);
        snprintf(what, sizeof what, "a write of %" PRIu64 " bytes into the region %s at %" PRIu64,
                 len, rkind_names[rg->kind], rg->off);
        struct nbd_handle *n = w.c[g % 2];
        one_cmd(n, nbd_aio_pwrite(n, wbuf, len, off, NBD_NULL_COMPLETION, 0), what);
        memcpy(w.model + off, wbuf, len);
        read_around(&w, 1 - g % 2, off, len, what);
    }
    for (w.round = 0; w.round < rounds; w.round++) {
        unsigned ci = (unsigned)rnd(&w.rng, 2), other = rnd(&w.rng, 10) < 7 ? 1 - ci : ci;
        struct nbd_handle *n = w.c[ci];
        uint64_t r = rnd(&w.rng, 100);
        if (r < 50) {
            uint64_t len = rnd(&w.rng, 4) ? 256 * KiB : 1 + rnd(&w.rng, 300 * KiB);
            uint64_t off = pick_off(&w, len, last_off, last_len);
            fill_random(wbuf, len, &w.rng);
            snprintf(what, sizeof what, "round %u: write of %" PRIu64 " bytes at %" PRIu64,
                     w.round, len, off);
            one_cmd(n, nbd_aio_pwrite(n, wbuf, len, off, NBD_NULL_COMPLETION, 0), what);
            memcpy(w.model + off, wbuf, len);
            last_off = off;
            last_len = len;
            read_around(&w, other, off, len, "a write");
        } else if (r < 62) {
            uint64_t len = 4 * KiB + rnd(&w.rng, 512 * KiB);
            uint64_t off = pick_off(&w, len, last_off, last_len);
            uint32_t fl = rnd(&w.rng, 2) ? LIBNBD_CMD_FLAG_NO_HOLE : 0;
            snprintf(what, sizeof what, "round %u: write zeroes (%s) of %" PRIu64
                     " bytes at %" PRIu64, w.round, fl ? "NO_HOLE" : "may trim", len, off);
            one_cmd(n, nbd_aio_zero(n, len, off, NBD_NULL_COMPLETION, fl), what);
            memset(w.model + off, 0, len);
            one_cmd(w.c[other], nbd_aio_flush(w.c[other], NBD_NULL_COMPLETION, 0), "flush");
            read_around(&w, other, off, len, "write zeroes");
        } else if (r < 74) {
            /* A trim leaves what was there, zeroes, or the backing file's
             * bytes; both connections then read the same. */
            uint64_t len = 64 * KiB + rnd(&w.rng, MiB - 64 * KiB);
            uint64_t off = pick_off(&w, len, last_off, last_len);
            snprintf(what, sizeof what, "round %u: trim of %" PRIu64 " bytes at %" PRIu64,
                     w.round, len, off);
            memcpy(before, w.model + off, len);
            one_cmd(n, nbd_aio_trim(n, len, off, NBD_NULL_COMPLETION, 0), what);
            one_cmd(n, nbd_aio_flush(n, NBD_NULL_COMPLETION, 0), "flush");
            struct req rq = {.off = off, .len = len, .buf = w.b.b[0]};
            char err[1024];
            CHECK(read_reqs(w.c[other], &rq, 1, err, sizeof err), "%s: %s", what, err);
            for (uint64_t i = 0; i < len; i++) {
                uint8_t v = rq.buf[i];
                CHECK(v == before[i] || v == 0 ||
                          (sh->backing_view && v == sh->backing_view[off + i]),
                      "%s: byte %" PRIu64 " reads 0x%02x: neither what was there (0x%02x), "
                      "nor zero, nor the backing file's", what, off + i, v, before[i]);
            }
            memcpy(w.model + off, rq.buf, len);
            w.read_bytes += len;
            read_around(&w, 1 - other, off, len, "a trim");
        } else if (r < 84) {
            one_cmd(n, nbd_aio_flush(n, NBD_NULL_COMPLETION, 0), "flush");
            uint64_t off, len;
            pick_read(sh, size, &w.rng, &off, &len);
            read_around(&w, other, off, len, "a flush");
        } else {
            uint64_t off, len;
            pick_read(sh, size, &w.rng, &off, &len);
            struct req rq = {.off = off, .len = len, .buf = w.b.b[0]};
            snprintf(what, sizeof what, "round %u: read of %" PRIu64 " bytes at %" PRIu64,
                     w.round, len, off);
            read_check(w.c[ci], &rq, 1, w.model, size, what);
            w.read_bytes += len;
        }
    }
    /* All of it, through each connection. */
    for (unsigned ci = 0; ci < 2; ci++) {
        one_cmd(w.c[ci], nbd_aio_flush(w.c[ci], NBD_NULL_COMPLETION, 0), "flush");
        snprintf(what, sizeof what, "the whole device through connection %u at the end", ci);
        w.read_bytes += read_range(w.c[ci], &w.b, 0, size, w.model, size, what);
    }
    uint64_t sp = spliced_now(&s);
    CHECK(sp > 0, "no byte spliced of %" PRIu64 " read", w.read_bytes);
    CHECK(sp <= w.read_bytes, "%" PRIu64 " bytes spliced of %" PRIu64 " read", sp,
          w.read_bytes);
    printf("%s, read after write: %u rounds, %" PRIu64 " bytes read, %" PRIu64 " spliced\n",
           sh->name, rounds, w.read_bytes, sp);
    nbd_close(w.c[0]);
    nbd_close(w.c[1]);
    wait_no_clients(&s, "clients closed");
    unserve(&s);
    vdisk_close(d);
    /* The image holds the model, as qemu-img reads it. */
    if (sh->cs)
        RUN_OK("qemu-img check -q %s", sh->path);
    const char *out = scratch(fmt("%s-after.raw", sh->name));
    RUN_OK("qemu-img convert -f %s -O raw %s %s", sh->format, sh->path, out);
    size_t len;
    uint8_t *after = read_file(out, &len);
    CHECK(len == size, "qemu-img reads %zu bytes, want %" PRIu64, len, size);
    char err[1024];
    CHECK(same_bytes(after, w.model, size, 0, size, err, sizeof err),
          "qemu-img's reading of the image after the run: %s", err);
    free(after);
    unlink(out);
    bufs_free(&w.b);
    free(w.model);
    free(wbuf);
    free(before);
}

START_TEST(rw)
{
    unsigned rounds = SANITIZED ? 120 : 240;
    struct shape q = {.name = "rw-qcow2-over-raw", .cs = 65536, .backing = 1, .size = 24 * MiB};
    make_shape(&q);
    rw_run(&q, 0x200, rounds);
    free_shape(&q);
    struct shape raw = {.name = "rw-raw", .size = 16 * MiB + 512};
    make_shape(&raw);
    rw_run(&raw, 0x201, rounds);
    free_shape(&raw);
}
END_TEST

/* ---- 3. Many reads in flight ------------------------------------------------ */

#define FLIGHT_CONNS 4
#define FLIGHT_READS 64

struct flight {
    const char *sock;
    bool structured;
    const uint8_t *want;
    uint64_t size, rng, bytes;
    pthread_barrier_t *bar;
    char err[1024];
};

/* A connection with FLIGHT_READS reads in flight at once, alternately
 * 1 MiB (spread over the whole image, some unaligned) and 256 KiB (at
 * random), all compared. */
static void *flight_thread(void *arg)
{
    struct flight *f = arg;
    struct nbd_handle *n = client_open(f->sock, f->structured, f->err, sizeof f->err);
    pthread_barrier_wait(f->bar);
    if (!n)
        return NULL;
    struct req r[FLIGHT_READS];
    for (unsigned i = 0; i < FLIGHT_READS; i++) {
        uint64_t len = i % 2 ? 256 * KiB : MiB, off;
        if (len == MiB) {
            off = (f->size - MiB) / (FLIGHT_READS / 2 - 1) * (i / 2);
            off = rnd(&f->rng, 2) ? off / (4 * KiB) * (4 * KiB) : off + rnd(&f->rng, 4 * KiB);
        } else {
            off = rnd(&f->rng, f->size - len + 1);
        }
        if (off + len > f->size)
            off = f->size - len;
        r[i] = (struct req){.off = off, .len = len, .buf = malloc(len)};
        if (!r[i].buf) {
            snprintf(f->err, sizeof f->err, "out of memory");
            for (unsigned j = 0; j < i; j++)
                free(r[j].buf);
            nbd_close(n);
            return NULL;
        }
    }
    if (read_reqs(n, r, FLIGHT_READS, f->err, sizeof f->err)) {
        for (unsigned i = 0; i < FLIGHT_READS; i++) {
            if (!same_bytes(r[i].buf, f->want, f->size, r[i].off, r[i].len, f->err,
                            sizeof f->err))
                break;
            f->bytes += r[i].len;
        }
    }
    nbd_close(n);
    for (unsigned i = 0; i < FLIGHT_READS; i++)
        free(r[i].buf);
    return NULL;
}

/* FLIGHT_CONNS connections of flight_thread (every other one with
 * structured replies, the i-th's reads from rng_for(TAG + i)). */
struct flights {
    pthread_barrier_t bar;
    struct flight f[FLIGHT_CONNS];
    pthread_t t[FLIGHT_CONNS];
};

/* Starts them; they begin reading once connected and once EXTRA more
 * threads have waited on fl->bar too. */
static void flights_start(struct flights *fl, const char *sock, const uint8_t *want,
                          uint64_t size, uint64_t tag, unsigned extra)
{
    pthread_barrier_init(&fl->bar, NULL, FLIGHT_CONNS + extra);
    for (unsigned i = 0; i < FLIGHT_CONNS; i++) {
        fl->f[i] = (struct flight){.sock = sock, .structured = i % 2 == 0, .want = want,
                                   .size = size, .rng = rng_for(tag + i), .bar = &fl->bar};
        CHECK(pthread_create(&fl->t[i], NULL, flight_thread, &fl->f[i]) == 0, "pthread_create");
    }
}

/* Waits for them and checks what each read; returns the bytes read. */
static uint64_t flights_join(struct flights *fl)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < FLIGHT_CONNS; i++) {
        pthread_join(fl->t[i], NULL);
        total += fl->f[i].bytes;
    }
    pthread_barrier_destroy(&fl->bar);
    for (unsigned i = 0; i < FLIGHT_CONNS; i++)
        CHECK(!fl->f[i].err[0], "connection %u (%s replies): %s", i,
              fl->f[i].structured ? "structured" : "simple", fl->f[i].err);
    return total;
}

START_TEST(in_flight)
{
    /* 40 MiB of random bytes, raw and as qcow2. */
    uint64_t rng = rng_for(0x300), size = 40 * MiB;
    const char *raw = scratch("flight.raw"), *q = scratch("flight.qcow2");
    uint8_t *want = malloc(size);
    CHECK(want, "out of memory");
    fill_random(want, size, &rng);
    write_file(raw, want, size);
    RUN_OK("qemu-img convert -q -f raw -O qcow2 %s %s", raw, q);
    RUN_OK("qemu-img compare -q -f raw -F qcow2 %s %s", raw, q);
    const char *files[2] = {raw, q}, *formats[2] = {"raw", "qcow2"};
    for (unsigned img = 0; img < 2; img++) {
        for (unsigned round = 0; round < 2; round++) {
            snprintf(ctx, sizeof ctx, "%u connections with %u reads in flight each, %s, round %u",
                     FLIGHT_CONNS, FLIGHT_READS, formats[img], round);
            vdisk_dev *d = open_dev(files[img], formats[img], true, NULL);
            RUN_OK("cat %s > /dev/null", files[img]);
            struct server s;
            serve(&s, d, 0, FLIGHT_CONNS);
            struct flights fl;
            flights_start(&fl, s.sock, want, size, 0x310 + 8 * round + 16 * img, 0);
            uint64_t total = flights_join(&fl);
            uint64_t sp = spliced_now(&s);
            CHECK(sp > 0, "no byte spliced of %" PRIu64 " read", total);
            CHECK(sp <= total, "%" PRIu64 " bytes spliced of %" PRIu64 " read", sp, total);
            printf("in flight, %s, round %u: %" PRIu64 " bytes read, %" PRIu64 " spliced\n",
                   formats[img], round, total, sp);
            wait_no_clients(&s, "clients closed");
            unserve(&s);
            vdisk_close(d);
        }
    }
    free(want);
}
END_TEST

/*
 * The connections' pipes take at most a quarter of the file descriptors
 * RLIMIT_NOFILE allows above 256 (nbd.h): with 272 allowed when the handle
 * is made, two connections have a pipe and the others copy; every read is
 * right, and no more than two pipes (and the handle's own) are ever open.
 */
START_TEST(pipe_cap)
{
    uint64_t rng = rng_for(0x700), size = 24 * MiB;
    const char *raw = scratch("cap.raw");
    uint8_t *want = malloc(size);
    CHECK(want, "out of memory");
    fill_random(want, size, &rng);
    write_file(raw, want, size);
    snprintf(ctx, sizeof ctx, "%u connections, pipes for two of them", FLIGHT_CONNS);
    vdisk_dev *d = open_dev(raw, "raw", true, NULL);
    RUN_OK("cat %s > /dev/null", raw);
    static struct fdset base, now;
    fd_snapshot(&base);
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0, "getrlimit: %s", strerror(errno));
    CHECK(base.n + 32 < 272, "%u file descriptors open already", base.n);
    low = old;
    low.rlim_cur = 272;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit: %s", strerror(errno));
    struct server s;
    serve(&s, d, 0, FLIGHT_CONNS);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0, "setrlimit: %s", strerror(errno));
    struct flights fl;
    flights_start(&fl, s.sock, want, size, 0x710, 1);
    pthread_barrier_wait(&fl.bar);
    /* While they read: the pipes open (the connections' sockets and
     * libnbd's are not pipes). */
    unsigned most = 0;
    for (unsigned k = 0; k < 200; k++) {
        fd_snapshot(&now);
        unsigned pipes = 0;
        for (unsigned i = 0; i < now.n; i++)
            if (fd_find(&base, now.fd[i]) < 0 && strncmp(now.what[i], "pipe:", 5) == 0)
                pipes++;
        if (pipes > most)
            most = pipes;
        nap_ms(1);
    }
    uint64_t total = flights_join(&fl);
    CHECK(most <= 2 * 2 + IDLE_PIPE_FDS, "%u pipe descriptors open at once (at most %u)", most,
          2 * 2 + IDLE_PIPE_FDS);
    uint64_t sp = spliced_now(&s);
    CHECK(sp > 0 && sp <= total, "%" PRIu64 " bytes spliced of %" PRIu64 " read", sp, total);
    wait_no_clients(&s, "clients closed");
    unserve(&s);
    vdisk_close(d);
    free(want);
}
END_TEST

/* ---- 4. Clients that hang up on their replies ------------------------------- */

#define NBD_MAGIC_ 0x4e42444d41474943ULL
#define IHAVEOPT_ 0x49484156454f5054ULL
#define REP_MAGIC_ 0x3e889045565a9ULL
#define REQ_MAGIC_ 0x25609513u
#define OPT_GO_ 7u
#define OPT_STRUCTURED_REPLY_ 8u
#define REP_ACK_ 1u
#define REP_INFO_ 3u
#define CMD_READ_ 0u
#define CMD_DISC_ 2u

static bool send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool recv_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* An option reply: its type; its data skipped. */
static uint32_t opt_reply(int fd, uint32_t opt)
{
    uint8_t h[20], skip[4096];
    CHECK(recv_all(fd, h, 20), "option %u: no reply: %s", opt, strerror(errno));
    CHECK(get_be(h, 8) == REP_MAGIC_ && get_be(h + 8, 4) == opt, "option %u: a bad reply", opt);
    for (uint32_t len = (uint32_t)get_be(h + 16, 4); len;) {
        uint32_t k = len < sizeof skip ? len : (uint32_t)sizeof skip;
        CHECK(recv_all(fd, skip, k), "option %u: its reply's data: %s", opt, strerror(errno));
        len -= k;
    }
    return (uint32_t)get_be(h + 12, 4);
}

static void send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t h[16];
    put_be64(h, IHAVEOPT_);
    put_be32(h + 8, opt);
    put_be32(h + 12, len);
    CHECK(send_all(fd, h, 16) && (!len || send_all(fd, data, len)), "option %u: %s", opt,
          strerror(errno));
}

/* A client written here byte by byte, in the transmission phase of the
 * default export (blocking, its waits bounded). */
static int raw_client(const char *sock, bool structured)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct timeval tv = {deadline_ms / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    uint8_t g[18], m[8];
    CHECK(recv_all(fd, g, 18), "no greeting: %s", strerror(errno));
    CHECK(get_be(g, 8) == NBD_MAGIC_ && get_be(g + 8, 8) == IHAVEOPT_ && (g[17] & 1),
          "not a fixed newstyle greeting");
    put_be32(m, 1u | (g[17] & 2u)); /* fixed newstyle (and no zeroes) */
    CHECK(send_all(fd, m, 4), "client flags: %s", strerror(errno));
    if (structured) {
        send_opt(fd, OPT_STRUCTURED_REPLY_, NULL, 0);
        CHECK(opt_reply(fd, OPT_STRUCTURED_REPLY_) == REP_ACK_, "structured replies refused");
    }
    put_be32(m, 0); /* the default export's name, "" */
    put_be16(m + 4, 0); /* no information asked */
    send_opt(fd, OPT_GO_, m, 6);
    for (;;) {
        uint32_t t = opt_reply(fd, OPT_GO_);
        if (t == REP_ACK_)
            break;
        CHECK(t == REP_INFO_, "NBD_OPT_GO answered %#x", t);
    }
    return fd;
}

static void raw_request(int fd, uint16_t type, uint64_t cookie, uint64_t off, uint32_t len)
{
    uint8_t r[28];
    put_be32(r, REQ_MAGIC_);
    put_be16(r + 4, 0);
    put_be16(r + 6, type);
    put_be64(r + 8, cookie);
    put_be64(r + 16, off);
    put_be32(r + 24, len);
    CHECK(send_all(fd, r, 28), "request: %s", strerror(errno));
}

/* Reads the replies to the CNT reads of R, sent with cookies 1..CNT, into
 * their buffers (filled with 0xa5 first by the caller): simple replies
 * (in any order) or structured ones (data and hole chunks, then DONE). */
static void raw_replies(int fd, bool structured, struct req *r, unsigned cnt, const char *what)
{
    unsigned left = cnt;
    bool *done = calloc(cnt, sizeof *done);
    CHECK(done, "out of memory");
    while (left) {
        uint8_t h[32];
        CHECK(recv_all(fd, h, structured ? 20 : 16), "%s: %u of %u replies missing (%s)", what,
              left, cnt, errno == EAGAIN ? "none within the deadline" : strerror(errno));
        uint64_t cookie = get_be(h + (structured ? 8 : 8), 8);
        CHECK(cookie >= 1 && cookie <= cnt && !done[cookie - 1], "%s: a reply with cookie %"
              PRIu64, what, cookie);
        struct req *q = &r[cookie - 1];
        if (!structured) {
            CHECK(get_be(h, 4) == 0x67446698u && get_be(h + 4, 4) == 0,
                  "%s: simple reply %#" PRIx64 ", error %" PRIu64, what, get_be(h, 4),
                  get_be(h + 4, 4));
            CHECK(recv_all(fd, q->buf, q->len), "%s: the data of the read at %" PRIu64 ": %s",
                  what, q->off, strerror(errno));
            done[cookie - 1] = true;
            left--;
            continue;
        }
        CHECK(get_be(h, 4) == 0x668e33efu, "%s: structured reply magic %#" PRIx64, what,
              get_be(h, 4));
        uint16_t flags = (uint16_t)get_be(h + 4, 2), type = (uint16_t)get_be(h + 6, 2);
        uint32_t plen = (uint32_t)get_be(h + 16, 4);
        if (type == 1) { /* OFFSET_DATA */
            CHECK(plen >= 8 && recv_all(fd, h, 8), "%s: a data chunk", what);
            uint64_t at = get_be(h, 8), dl = plen - 8;
            CHECK(at >= q->off && at + dl <= q->off + q->len, "%s: data at %" PRIu64
                  " (%" PRIu64 " bytes) for the read at %" PRIu64, what, at, dl, q->off);
            CHECK(recv_all(fd, q->buf + (at - q->off), dl), "%s: chunk data: %s", what,
                  strerror(errno));
        } else if (type == 2) { /* OFFSET_HOLE */
            CHECK(plen == 12 && recv_all(fd, h, 12), "%s: a hole chunk", what);
            uint64_t at = get_be(h, 8), hl = get_be(h + 8, 4);
            CHECK(at >= q->off && at + hl <= q->off + q->len, "%s: hole at %" PRIu64, what, at);
            memset(q->buf + (at - q->off), 0, hl);
        } else {
            CHECK(type == 0 && plen == 0, "%s: a chunk of type %u (%u bytes) for the read at %"
                  PRIu64, what, type, plen, q->off);
        }
        if (flags & 1) {
            done[cookie - 1] = true;
            left--;
        }
    }
    free(done);
}

/* Sends the CNT reads of R in one send (cookies 1..CNT), their buffers
 * filled with 0xa5. */
static void send_reads(int fd, struct req *r, unsigned cnt, const char *what)
{
    uint8_t msg[16 * 28];
    CHECK(cnt <= 16, "too many reads");
    for (unsigned i = 0; i < cnt; i++) {
        memset(r[i].buf, 0xa5, r[i].len);
        uint8_t *m = msg + 28 * i;
        put_be32(m, REQ_MAGIC_);
        put_be16(m + 4, 0);
        put_be16(m + 6, CMD_READ_);
        put_be64(m + 8, i + 1);
        put_be64(m + 16, r[i].off);
        put_be32(m + 24, (uint32_t)r[i].len);
    }
    CHECK(send_all(fd, msg, 28 * cnt), "%s: %s", what, strerror(errno));
}

/*
 * Reads sent together (the server reads them in one turn) whose data do
 * not all fit in the connection's pipe (1 MiB, or 4 MiB where the process
 * may make such pipes) at once: the later ones wait for room, and are
 * spliced once there is, or copied when they never fit (a read not
 * aligned to pages takes one page more than its length: 1 MiB + 1 page).
 * Then the same while the client does not read its replies yet and the
 * file's pages are dropped from the page cache meanwhile: the reads that
 * waited are copied.  Every reply comes, with the right bytes.
 */
START_TEST(pipe_room)
{
    uint64_t rng = rng_for(0x500), size = 16 * MiB;
    snprintf(ctx, sizeof ctx, "reads waiting for room in the pipe");
    const char *img = scratch("room.raw");
    uint8_t *want = malloc(size);
    CHECK(want, "out of memory");
    fill_random(want, size, &rng);
    write_file(img, want, size);
    vdisk_dev *d = open_dev(img, "raw", true, NULL);
    RUN_OK("cat %s > /dev/null", img);
    struct server s;
    serve(&s, d, 0, 1);
    static const struct {
        uint64_t off, len;
    } sets[][8] = {
        {{0, 64 * KiB}, {1, MiB}},
        {{0, 64 * KiB}, {1, 4 * MiB}},
        {{0, MiB}, {MiB, MiB}, {2 * MiB, MiB}, {3 * MiB + 5, MiB}},
        {{0, 4 * MiB}, {4096 + 1, MiB}, {8 * MiB, 64 * KiB}},
        {{5 * MiB, MiB}, {6 * MiB, MiB}, {7 * MiB + 3, 1020 * KiB}, {8 * MiB, MiB},
         {9 * MiB, 4 * MiB}, {100, 4 * MiB}, {13 * MiB, 2 * MiB + 1}, {0, 64 * KiB}},
    };
    struct req r[8];
    for (unsigned i = 0; i < 8; i++)
        CHECK((r[i].buf = malloc(MAX_READ)), "out of memory");
    char what[160], err[1024];
    for (unsigned structured = 0; structured < 2; structured++) {
        for (unsigned k = 0; k < sizeof sets / sizeof sets[0]; k++) {
            snprintf(what, sizeof what, "reads sent together, set %u (%s replies)", k,
                     structured ? "structured" : "simple");
            int fd = raw_client(s.sock, structured);
            unsigned n = 0;
            for (; n < 8 && sets[k][n].len; n++) {
                r[n].off = sets[k][n].off;
                r[n].len = sets[k][n].len;
            }
            send_reads(fd, r, n, what);
            raw_replies(fd, structured, r, n, what);
            for (unsigned i = 0; i < n; i++)
                CHECK(same_bytes(r[i].buf, want, size, r[i].off, r[i].len, err, sizeof err),
                      "%s: %s", what, err);
            close(fd);
            wait_no_clients(&s, what);
        }
        /* Four reads of 1 MiB fill the pipe, two more wait; the client
         * reads nothing for a while (the socket's buffer fills: the first
         * reply stays in the pipe), meanwhile the file leaves the page
         * cache (but for the pages in the pipe). */
        snprintf(what, sizeof what, "reads waiting for room while the pages are dropped (%s "
                 "replies)", structured ? "structured" : "simple");
        int fd = raw_client(s.sock, structured);
        for (unsigned i = 0; i < 6; i++) {
            r[i].off = i < 4 ? i * MiB : i == 4 ? 8 * MiB : 9 * MiB + 4096;
            r[i].len = i < 5 ? MiB : 4 * MiB;
        }
        send_reads(fd, r, 6, what);
        nap_ms(300); /* (time for the server to take them; not a check) */
        int ifd = open(img, O_RDONLY | O_CLOEXEC);
        CHECK(ifd >= 0 && fdatasync(ifd) == 0 &&
              posix_fadvise(ifd, 0, 0, POSIX_FADV_DONTNEED) == 0, "%s: dropping the pages: %s",
              img, strerror(errno));
        close(ifd);
        raw_replies(fd, structured, r, 6, what);
        for (unsigned i = 0; i < 6; i++)
            CHECK(same_bytes(r[i].buf, want, size, r[i].off, r[i].len, err, sizeof err),
                  "%s: %s", what, err);
        close(fd);
        wait_no_clients(&s, what);
        RUN_OK("cat %s > /dev/null", img);
    }
    CHECK(spliced_now(&s) > 0, "nothing spliced");
    for (unsigned i = 0; i < 8; i++)
        free(r[i].buf);
    unserve(&s);
    vdisk_close(d);
    free(want);
}
END_TEST

/*
 * A reply spliced into a client's socket holds the file's pages until
 * the client reads it.  Meanwhile another client trims (or writes zeroes
 * over, which may deallocate) that cluster and writes another, which
 * qcow2 may place where the first one was: the first client then reads
 * what was there, or zeroes, never the other cluster's new bytes.
 */
START_TEST(freed_clusters)
{
    snprintf(ctx, sizeof ctx, "a cluster freed and taken again while its spliced reply waits");
    uint64_t rng = rng_for(0x600), size = 16 * MiB;
    const char *img = scratch("freed.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 %s %" PRIu64, img, size);
    RUN_OK("qemu-io -f qcow2 -c 'write -q -s %s 1M 1M' %s", data_file("freed", 0, MiB, false, &rng),
           img);
    const char *want_path = scratch("freed-want.raw");
    RUN_OK("qemu-img convert -f qcow2 -O raw %s %s", img, want_path);
    size_t len;
    uint8_t *want = read_file(want_path, &len);
    CHECK(len == size, "qemu-img reads %zu bytes", len);
    vdisk_dev *d = open_dev(img, "qcow2", false, NULL);
    RUN_OK("cat %s > /dev/null", img);
    struct server s;
    serve(&s, d, VDISK_NBD_UNMAP, 2);
    uint8_t *got = malloc(64 * KiB), *other = malloc(64 * KiB);
    CHECK(got && other, "out of memory");
    for (unsigned k = 0; k < 4; k++) {
        bool trim = k % 2 == 0;
        uint64_t g1 = MiB + k * 64 * KiB, g2 = 8 * MiB + k * 64 * KiB;
        char what[160];
        snprintf(what, sizeof what, "%s of the cluster at %" PRIu64 ", then a write at %" PRIu64,
                 trim ? "a trim" : "write zeroes", g1, g2);
        struct nbd_handle *b = client(s.sock, true, size);
        /* Its table cached, and its pages: the read is spliced. */
        struct req w = {.off = g1, .len = 64 * KiB, .buf = got};
        read_check(b, &w, 1, want, size, what);
        int a = raw_client(s.sock, false);
        uint64_t sp = spliced_now(&s);
        struct req r = {.off = g1, .len = 64 * KiB, .buf = got};
        send_reads(a, &r, 1, what);
        uint64_t end = now_ms() + deadline_ms;
        while (spliced_now(&s) < sp + 64 * KiB) {
            CHECK(now_ms() < end, "%s: the read was not spliced within %u ms", what,
                  deadline_ms);
            nap_ms(5);
        }
        /* The reply sits in A's socket; B frees the cluster and writes. */
        if (trim)
            one_cmd(b, nbd_aio_trim(b, 64 * KiB, g1, NBD_NULL_COMPLETION, 0), what);
        else
            one_cmd(b, nbd_aio_zero(b, 64 * KiB, g1, NBD_NULL_COMPLETION, 0), what);
        one_cmd(b, nbd_aio_flush(b, NBD_NULL_COMPLETION, 0), what);
        fill_random(other, 64 * KiB, &rng);
        one_cmd(b, nbd_aio_pwrite(b, other, 64 * KiB, g2, NBD_NULL_COMPLETION, 0), what);
        one_cmd(b, nbd_aio_flush(b, NBD_NULL_COMPLETION, 0), what);
        raw_replies(a, false, &r, 1, what);
        bool old = memcmp(got, want + g1, 64 * KiB) == 0, zero = true;
        for (size_t i = 0; i < 64 * KiB; i++)
            zero &= got[i] == 0;
        size_t from_other = 0;
        for (size_t i = 0; i < 64 * KiB; i++)
            from_other += got[i] == other[i] && got[i] != want[g1 + i];
        CHECK(old || zero, "%s: the read's reply is neither what was there nor zeroes; %zu of "
              "its bytes are the later write's at %" PRIu64, what, from_other, g2);
        close(a);
        nbd_close(b);
        wait_no_clients(&s, what);
    }
    unserve(&s);
    vdisk_close(d);
    RUN_OK("qemu-img check -q %s", img);
    free(got);
    free(other);
    free(want);
    unlink(want_path);
}
END_TEST

/* A client reading random ranges and checking them until told to stop. */
struct checker {
    const char *sock;
    bool structured;
    const uint8_t *want;
    uint64_t size, rng, reads;
    atomic_bool *stop;
    char err[1024];
};

static void *checker_thread(void *arg)
{
    struct checker *k = arg;
    struct nbd_handle *n = client_open(k->sock, k->structured, k->err, sizeof k->err);
    if (!n)
        return NULL;
    uint8_t *bufs[NBUF];
    for (unsigned i = 0; i < NBUF; i++)
        bufs[i] = malloc(MiB);
    while (!atomic_load(k->stop) && !k->err[0]) {
        struct req r[NBUF];
        for (unsigned i = 0; i < NBUF; i++) {
            uint64_t len = 64 * KiB + rnd(&k->rng, MiB - 64 * KiB + 1);
            uint64_t off = rnd(&k->rng, k->size - len + 1);
            if (rnd(&k->rng, 2))
                off = off / (4 * KiB) * (4 * KiB);
            r[i] = (struct req){.off = off, .len = len, .buf = bufs[i]};
        }
        if (!read_reqs(n, r, NBUF, k->err, sizeof k->err))
            break;
        for (unsigned i = 0; i < NBUF; i++)
            if (!same_bytes(r[i].buf, k->want, k->size, r[i].off, r[i].len, k->err,
                            sizeof k->err))
                break;
        k->reads += NBUF;
    }
    nbd_close(n);
    for (unsigned i = 0; i < NBUF; i++)
        free(bufs[i]);
    return NULL;
}

/* Reads the whole image through a new client, 16 reads of 1 MiB in flight
 * at once. */
static void fresh_client(struct server *s, const uint8_t *want, uint64_t size, bool structured)
{
    struct nbd_handle *n = client(s->sock, structured, size);
    struct req r[16];
    for (unsigned i = 0; i < 16; i++) {
        r[i].buf = malloc(MiB);
        CHECK(r[i].buf, "out of memory");
    }
    for (uint64_t off = 0; off < size; off += 16 * MiB) {
        unsigned k = 0;
        for (; k < 16 && off + k * MiB < size; k++) {
            r[k].off = off + k * MiB;
            r[k].len = min_u64(MiB, size - r[k].off);
        }
        read_check(n, r, k, want, size, structured ? "a fresh client (structured replies)"
                                                   : "a fresh client (simple replies)");
    }
    for (unsigned i = 0; i < 16; i++)
        free(r[i].buf);
    nbd_close(n);
}

START_TEST(hang_ups)
{
    uint64_t rng = rng_for(0x400), size = 32 * MiB;
    snprintf(ctx, sizeof ctx, "clients that hang up");
    const char *img = scratch("hangup.raw");
    uint8_t *want = malloc(size);
    CHECK(want, "out of memory");
    fill_random(want, size, &rng);
    write_file(img, want, size);
    vdisk_dev *d = open_dev(img, "raw", true, NULL);
    RUN_OK("cat %s > /dev/null", img);

    /* Once through, for what the library and libnbd set up once and keep. */
    struct server s;
    serve(&s, d, 0, 16);
    fresh_client(&s, want, size, true);
    wait_no_clients(&s, "the first client");
    unserve(&s);
    CHECK(vdisk_nbd_spliced(NULL) == 0, "vdisk_nbd_spliced(NULL)");

    static struct fdset base, live, now;
    fd_snapshot(&base);
    serve(&s, d, 0, 16);
    fd_snapshot(&live);
    CHECK(live.n >= base.n, "the handle closed descriptors");

    atomic_bool stop = false;
    struct checker k[2];
    pthread_t kt[2];
    for (unsigned i = 0; i < 2; i++) {
        k[i] = (struct checker){.sock = s.sock, .structured = i == 0, .want = want,
                                .size = size, .rng = rng_for(0x410 + i), .stop = &stop};
        CHECK(pthread_create(&kt[i], NULL, checker_thread, &k[i]) == 0, "pthread_create");
    }
    unsigned rounds = SANITIZED ? 16 : 32;
    static const uint32_t lens[] = {1 << 20, 1 << 20, 2 << 20, 256 << 10, 64 << 10};
    for (unsigned round = 0; round < rounds; round++) {
        unsigned how = round % 4;
        bool structured = (round / 4) % 2;
        snprintf(ctx, sizeof ctx, "clients that hang up: round %u (%s, %s replies)", round,
                 how == 0 ? "closes at once" : how == 1 ? "closes in a reply"
                 : how == 2 ? "DISC and SHUT_WR, then closes" : "libnbd, closed",
                 structured ? "structured" : "simple");
        unsigned nreq = 40 + (unsigned)rnd(&rng, 25);
        if (how == 3) {
            char err[512];
            struct nbd_handle *n = client_open(s.sock, structured, err, sizeof err);
            CHECK(n, "%s", err);
            uint8_t *big = malloc(32 * MiB);
            CHECK(big, "out of memory");
            for (unsigned i = 0; i < 32; i++)
                CHECK(nbd_aio_pread(n, big + i * MiB, MiB, rnd(&rng, size / MiB) * MiB,
                                    NBD_NULL_COMPLETION, 0) > 0,
                      "nbd_aio_pread: %s", nbd_get_error());
            /* Sent, and maybe a reply or two read, then gone. */
            for (unsigned i = 0; i < 3; i++)
                nbd_poll(n, 20);
            nbd_aio_disconnect(n, 0);
            nbd_close(n);
            free(big);
            continue;
        }
        int fd = raw_client(s.sock, structured);
        for (unsigned i = 0; i < nreq; i++) {
            uint32_t len = lens[rnd(&rng, sizeof lens / sizeof lens[0])];
            uint64_t off = rnd(&rng, size - len + 1);
            if (rnd(&rng, 2))
                off = off / (4 * KiB) * (4 * KiB);
            raw_request(fd, CMD_READ_, i + 1, off, len);
        }
        if (how == 2) {
            raw_request(fd, CMD_DISC_, 9999, 0, 0);
            shutdown(fd, SHUT_WR);
        }
        if (how >= 1) {
            /* Part of the replies: a few bytes to a couple of MiB. */
            size_t part = 1 + rnd(&rng, 3 * MiB), got = 0;
            uint8_t *tmp = malloc(256 * KiB);
            CHECK(tmp, "out of memory");
            while (got < part) {
                ssize_t r = recv(fd, tmp, min_u64(256 * KiB, part - got), 0);
                if (r <= 0)
                    break;
                got += (size_t)r;
            }
            free(tmp);
        }
        close(fd);
    }
    snprintf(ctx, sizeof ctx, "clients that hang up: after %u rounds", rounds);
    atomic_store(&stop, true);
    for (unsigned i = 0; i < 2; i++) {
        pthread_join(kt[i], NULL);
        CHECK(!k[i].err[0], "the checking client (%s replies) meanwhile: %s",
              k[i].structured ? "structured" : "simple", k[i].err);
        CHECK(k[i].reads > 0, "the checking client (%s replies) read nothing",
              k[i].structured ? "structured" : "simple");
    }
    wait_no_clients(&s, "after the clients hung up");
    char msg[2048];
    unsigned added, non_pipes, gone;
    fd_snapshot(&now);
    fd_diff(&live, &now, &added, &non_pipes, &gone, msg, sizeof msg);
    CHECK(non_pipes == 0 && gone == 0 && added <= IDLE_PIPE_FDS,
          "with no client left, %u descriptors more than the handle had at first "
          "(%u not pipes; with no client the handle holds %u pipe ends at most): %s",
          added, non_pipes, IDLE_PIPE_FDS, msg);

    /* A fresh client: served right, and still spliced. */
    uint64_t sp = spliced_now(&s);
    fresh_client(&s, want, size, true);
    fresh_client(&s, want, size, false);
    uint64_t sp2 = spliced_now(&s);
    CHECK(sp2 > sp, "the fresh clients' reads were not spliced (%" PRIu64 " bytes before and "
          "after)", sp);
    printf("hang-ups: %u rounds; the checking clients read %" PRIu64 " and %" PRIu64
           " ranges; %" PRIu64 " bytes spliced in all\n", rounds, k[0].reads, k[1].reads, sp2);
    wait_no_clients(&s, "after the fresh clients");
    fd_snapshot(&now);
    fd_diff(&live, &now, &added, &non_pipes, &gone, msg, sizeof msg);
    CHECK(non_pipes == 0 && gone == 0 && added <= IDLE_PIPE_FDS,
          "after the fresh clients, %u descriptors more than the handle had at first "
          "(%u not pipes; with no client the handle holds %u pipe ends at most): %s",
          added, non_pipes, IDLE_PIPE_FDS, msg);
    unserve(&s);
    fd_snapshot(&now);
    fd_diff(&base, &now, &added, &non_pipes, &gone, msg, sizeof msg);
    CHECK(added == 0 && gone == 0,
          "after vdisk_nbd_free, %u descriptors more than before the handle (%u not pipes), "
          "%u gone: %s", added, non_pipes, gone, msg);
    vdisk_close(d);
    free(want);
}
END_TEST

static Suite *suite(void)
{
    /* A case each, so that CK_RUN_CASE=NAME runs one. */
    const struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"pipe_room", pipe_room}, {"freed_clusters", freed_clusters}, {"shapes", shapes},
        {"rw", rw},
        {"in_flight", in_flight}, {"pipe_cap", pipe_cap}, {"hang_ups", hang_ups},
    };
    Suite *s = suite_create("nbd-splice");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *e = getenv("VDISK_TEST_SEED");
    if (e && *e)
        seed0 = strtoull(e, NULL, 0);
    if (!seed0)
        seed0 = 1;
    deadline_ms = SANITIZED ? 30000 : 20000;
    require_program("qemu-img");
    require_program("qemu-io");
    printf("seed %#" PRIx64 " (VDISK_TEST_SEED)\n", seed0);
    return run_suite(suite());
}
