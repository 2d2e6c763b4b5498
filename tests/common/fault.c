/* SPDX-License-Identifier: MIT */
/*
 * tests/common/fault.c: the fault-injecting protocol device (see fault.h).
 * Test code: built into the tests' library vdisk_fault, never into libvdisk.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"

/* A write in the volatile cache: DATA NULL means zeroes. */
struct fault_entry {
    uint64_t off, len;
    uint8_t *data;
};

struct fault_disk {
    pthread_mutex_t lock;
    uint8_t *dur;              /* the durable image */
    uint64_t dlen, dcap;
    uint8_t *cur;              /* what reads see */
    uint64_t clen, ccap;
    uint64_t limit;
    struct fault_entry *log;   /* cached writes, oldest first */
    size_t nlog, caplog;

    uint64_t writes, flushes, reads;
    uint64_t reads_started;     /* atomic */
    uint64_t crash_at;
    bool crashed;
    uint64_t wfail_from;
    unsigned wfail_count;
    int wfail_err;
    uint64_t rfail_from;
    unsigned rfail_count;
    int rfail_err;
    uint64_t ffail_from;
    unsigned ffail_count;
    int ffail_err;
    bool ffail_lose;

    fault_hook_fn hook;
    void *hook_opaque;
    struct vdisk_dev *dev;     /* the device open over the disk, or NULL */

    bool hold_flushes;         /* fault_hold_flushes */
    unsigned flushes_held;     /* flushes waiting for its release */
    uint64_t hold_roff, hold_rlen; /* fault_hold_reads */
    unsigned reads_held;
    pthread_cond_t released;

    unsigned delay_ms;         /* slow mode (fault_set_delay) */
    struct offload *slow;      /* its thread */
};

const char *fault_policy_name(enum fault_policy p)
{
    static const char *const names[] = {"drop-all", "keep-all", "keep-prefix", "random-writes",
                                        "random-sectors", "tear-last"};
    return (unsigned)p < FAULT_POLICIES ? names[p] : "?";
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Makes *BUF (capacity *CAP, length *LEN) at least END bytes long. */
static int buf_grow(uint8_t **buf, uint64_t *len, uint64_t *cap, uint64_t end)
{
    if (end <= *len)
        return 0;
    if (end > *cap) {
        uint64_t n = *cap ? *cap : 4096;
        while (n < end)
            n *= 2;
        uint8_t *b = realloc(*buf, n);
        if (!b)
            return -ENOMEM;
        *buf = b;
        *cap = n;
    }
    memset(*buf + *len, 0, end - *len);
    *len = end;
    return 0;
}

static void log_clear(struct fault_disk *f)
{
    for (size_t i = 0; i < f->nlog; i++)
        free(f->log[i].data);
    f->nlog = 0;
}

struct fault_disk *fault_new(const void *data, size_t len, uint64_t limit)
{
    struct fault_disk *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (buf_grow(&f->dur, &f->dlen, &f->dcap, len) < 0 ||
        buf_grow(&f->cur, &f->clen, &f->ccap, len) < 0) {
        free(f->dur);
        free(f->cur);
        free(f);
        return NULL;
    }
    if (len) {
        memcpy(f->dur, data, len);
        memcpy(f->cur, data, len);
    }
    f->limit = limit < len ? len : limit;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->released, NULL);
    return f;
}

int fault_set_delay(struct fault_disk *f, unsigned ms)
{
    if (ms && !f->slow && !(f->slow = offload_new()))
        return -ENOMEM;
    __atomic_store_n(&f->delay_ms, ms, __ATOMIC_RELAXED);
    return 0;
}

void fault_hold_flushes(struct fault_disk *f, bool hold)
{
    pthread_mutex_lock(&f->lock);
    f->hold_flushes = hold;
    if (!hold)
        pthread_cond_broadcast(&f->released);
    pthread_mutex_unlock(&f->lock);
}

void fault_hold_reads(struct fault_disk *f, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&f->lock);
    f->hold_roff = off;
    f->hold_rlen = len;
    pthread_cond_broadcast(&f->released);
    pthread_mutex_unlock(&f->lock);
}

unsigned fault_reads_held(struct fault_disk *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->reads_held;
    pthread_mutex_unlock(&f->lock);
    return n;
}

unsigned fault_flushes_held(struct fault_disk *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->flushes_held;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void fault_free(struct fault_disk *f)
{
    if (!f)
        return;
    offload_free(f->slow);
    log_clear(f);
    free(f->log);
    free(f->dur);
    free(f->cur);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->released);
    free(f);
}

/* ---- The device ----------------------------------------------------------- */

/* Adds a write to the cache and to the current image; DATA NULL: zeroes. */
static int cache_write(struct fault_disk *f, uint64_t off, uint64_t len, const struct iovec *iov,
                       int iovcnt)
{
    if (len == 0)
        return 0;
    if (f->nlog == f->caplog) {
        size_t n = f->caplog ? f->caplog * 2 : 64;
        struct fault_entry *l = realloc(f->log, n * sizeof *l);
        if (!l)
            return -ENOMEM;
        f->log = l;
        f->caplog = n;
    }
    struct fault_entry e = {off, len, NULL};
    if (iov) {
        e.data = malloc(len);
        if (!e.data)
            return -ENOMEM;
        iov_to_buf(iov, iovcnt, 0, e.data, len);
    }
    if (buf_grow(&f->cur, &f->clen, &f->ccap, off + len) < 0) {
        free(e.data);
        return -ENOMEM;
    }
    if (e.data)
        memcpy(f->cur + off, e.data, len);
    else
        memset(f->cur + off, 0, len);
    f->log[f->nlog++] = e;
    return 0;
}

/* Applies the cache to the durable image (a completed flush). */
static int cache_commit(struct fault_disk *f)
{
    for (size_t i = 0; i < f->nlog; i++) {
        struct fault_entry *e = &f->log[i];
        if (buf_grow(&f->dur, &f->dlen, &f->dcap, e->off + e->len) < 0)
            return -ENOMEM;
        if (e->data)
            memcpy(f->dur + e->off, e->data, e->len);
        else
            memset(f->dur + e->off, 0, e->len);
    }
    log_clear(f);
    return 0;
}

/* Carries out REQ; returns 0 or -errno (with the request's message set). */
static int fault_do(struct vdisk_req *req)
{
    struct fault_disk *f = req->dev->priv;
    uint64_t off = req->offset, len = req->length;
    uint64_t wno = 0;
    bool injected = false;
    int r = 0;
    pthread_mutex_lock(&f->lock);
    if (f->crashed) {
        pthread_mutex_unlock(&f->lock);
        return req_errorf(req, -EIO, "%s of %" PRIu64 " bytes at offset %" PRIu64
                          " failed: the power is off (simulated crash)", op_name(req->op), len,
                          off);
    }
    switch (req->op) {
    case VDISK_OP_READ: {
        while (f->hold_rlen && off < f->hold_roff + f->hold_rlen && f->hold_roff < off + len) {
            f->reads_held++;
            pthread_cond_wait(&f->released, &f->lock);
            f->reads_held--;
        }
        uint64_t rno = ++f->reads;
        if (f->rfail_count && rno >= f->rfail_from && rno - f->rfail_from < f->rfail_count) {
            r = f->rfail_err;
            injected = true;
            break;
        }
        uint64_t have = off < f->clen ? (f->clen - off < len ? f->clen - off : len) : 0;
        if (have)
            iov_from_buf(req->iov, req->iovcnt, 0, f->cur + off, have);
        if (have < len)
            iov_memset(req->iov, req->iovcnt, have, 0, len - have);
        break;
    }
    case VDISK_OP_WRITE:
    case VDISK_OP_WRITE_ZEROES:
    case VDISK_OP_DISCARD: {
        wno = ++f->writes;
        if (f->wfail_count && wno >= f->wfail_from && wno - f->wfail_from < f->wfail_count) {
            r = f->wfail_err;
            injected = true;
            break;
        }
        bool grows = req->op == VDISK_OP_WRITE ||
                     (req->op == VDISK_OP_WRITE_ZEROES && !(req->flags & VDISK_REQ_MAY_UNMAP));
        if (!grows) { /* discards and unmapping zeroes stay inside the file */
            if (off >= f->clen)
                len = 0;
            else if (len > f->clen - off)
                len = f->clen - off;
        } else if (off + len > f->limit) {
            r = -ENOSPC;
            break;
        }
        r = cache_write(f, off, len, req->op == VDISK_OP_WRITE ? req->iov : NULL, req->iovcnt);
        if (r == 0 && grows)
            dev_size_grow(req->dev, align_up(off + len, FAULT_SECTOR));
        if (r == 0 && f->crash_at && wno == f->crash_at) {
            f->crashed = true; /* the write stays in flight in the cache */
            pthread_mutex_unlock(&f->lock);
            return req_errorf(req, -EIO, "%s of %" PRIu64 " bytes at offset %" PRIu64
                              " failed: the power went off (simulated crash)",
                              op_name(req->op), req->length, off);
        }
        break;
    }
    case VDISK_OP_FLUSH: {
        while (f->hold_flushes) {
            f->flushes_held++;
            pthread_cond_wait(&f->released, &f->lock);
            f->flushes_held--;
        }
        uint64_t n = ++f->flushes;
        if (f->ffail_count && n >= f->ffail_from && n - f->ffail_from < f->ffail_count) {
            r = f->ffail_err;
            injected = true;
            if (f->ffail_lose)
                log_clear(f);
            break;
        }
        r = cache_commit(f);
        break;
    }
    }
    if (getenv("VDISK_FAULT_TRACE"))
        fprintf(stderr, "fault: %s #%" PRIu64 " %" PRIu64 "+%" PRIu64 " -> %d\n",
                op_name(req->op), req->op == VDISK_OP_FLUSH ? f->flushes : wno, off, len, r);
    fault_hook_fn hook = r == 0 && wno ? f->hook : NULL;
    void *opaque = f->hook_opaque;
    pthread_mutex_unlock(&f->lock);
    if (hook)
        hook(f, wno, off, len, opaque);
    if (r < 0)
        req_errorf(req, r, "%s of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s%s",
                   op_name(req->op), req->length, off, strerror(-r),
                   injected ? " (injected)" : "");
    return r;
}

/* Slow mode: each request waits DELAY_MS on the disk's own thread first. */
static int fault_do_slowly(struct vdisk_req *req)
{
    struct fault_disk *f = req->dev->priv;
    unsigned ms = __atomic_load_n(&f->delay_ms, __ATOMIC_RELAXED);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return fault_do(req);
}

static void fault_submit(struct vdisk_req *req)
{
    struct fault_disk *f = req->dev->priv;
    if (req->op == VDISK_OP_READ)
        __atomic_add_fetch(&f->reads_started, 1, __ATOMIC_RELEASE);
    if (__atomic_load_n(&f->delay_ms, __ATOMIC_RELAXED) && f->slow) {
        offload_req(f->slow, req, fault_do_slowly, NULL);
        return;
    }
    req_complete(req, fault_do(req));
}



static int fault_truncate(struct vdisk_dev *dev, uint64_t size)
{
    /* A size change is treated as durable at once (a journalled file
     * system's metadata); only qcow2 preallocation uses it. */
    struct fault_disk *f = dev->priv;
    int r = 0;
    pthread_mutex_lock(&f->lock);
    if (f->crashed)
        r = -EIO;
    else if (size > f->limit)
        r = -ENOSPC;
    else if (buf_grow(&f->cur, &f->clen, &f->ccap, size) < 0 ||
             buf_grow(&f->dur, &f->dlen, &f->dcap, size) < 0)
        r = -ENOMEM;
    if (r == 0) {
        if (size < f->clen)
            f->clen = size;
        if (size < f->dlen)
            f->dlen = size;
        __atomic_store_n(&dev->size, align_up(size, FAULT_SECTOR), __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&f->lock);
    return r < 0 ? err_set(r, "%s: cannot resize to %" PRIu64 " bytes: %s", dev->filename, size,
                           strerror(-r))
                 : 0;
}

static int64_t fault_allocated(struct vdisk_dev *dev)
{
    struct fault_disk *f = dev->priv;
    pthread_mutex_lock(&f->lock);
    int64_t n = (int64_t)f->clen;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static void fault_close(struct vdisk_dev *dev)
{
    struct fault_disk *f = dev->priv;
    pthread_mutex_lock(&f->lock);
    f->dev = NULL;
    pthread_mutex_unlock(&f->lock);
}

static const struct vdisk_driver vdisk_driver_fault = {
    .name = "fault",
    .protocol = true,
    .submit = fault_submit,
    .truncate = fault_truncate,
    .allocated_size = fault_allocated,
    .close = fault_close,
};

struct vdisk_open_params fault_params(bool read_only)
{
    struct vdisk_open_params p = {
        .read_only = read_only,
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = VDISK_ENGINE_THREADS,
        .threads = 1,
    };
    return p;
}

int fault_open(struct vdisk_dev **devp, struct fault_disk *f, const char *filename,
               const struct vdisk_open_params *params)
{
    if (f->dev)
        return err_set(-EBUSY, "%s: the fault disk is already open", filename);
    struct vdisk_dev *dev = dev_alloc(&vdisk_driver_fault, filename, params);
    if (!dev)
        return err_set(-ENOMEM, "out of memory");
    dev->priv = f;
    pthread_mutex_lock(&f->lock);
    dev->size = align_up(f->clen, FAULT_SECTOR);
    dev->file_length = f->clen;
    f->dev = dev;
    pthread_mutex_unlock(&f->lock);
    dev->caps = VDISK_CAN_FLUSH | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                VDISK_CAN_ZERO_UNMAP | (params->read_only ? 0 : VDISK_CAN_WRITE);
    *devp = dev;
    return 0;
}

/* ---- Control -------------------------------------------------------------- */

uint64_t fault_writes(const struct fault_disk *f)
{
    return __atomic_load_n(&f->writes, __ATOMIC_ACQUIRE);
}

uint64_t fault_flushes(const struct fault_disk *f)
{
    return __atomic_load_n(&f->flushes, __ATOMIC_ACQUIRE);
}

uint64_t fault_reads_started(const struct fault_disk *f)
{
    return __atomic_load_n(&f->reads_started, __ATOMIC_ACQUIRE);
}

uint64_t fault_reads(const struct fault_disk *f)
{
    return __atomic_load_n(&f->reads, __ATOMIC_ACQUIRE);
}

size_t fault_cached(const struct fault_disk *f)
{
    return __atomic_load_n(&f->nlog, __ATOMIC_ACQUIRE);
}

void fault_crash_at(struct fault_disk *f, uint64_t n)
{
    pthread_mutex_lock(&f->lock);
    f->crash_at = n;
    pthread_mutex_unlock(&f->lock);
}

void fault_crash_now(struct fault_disk *f)
{
    pthread_mutex_lock(&f->lock);
    f->crashed = true;
    pthread_mutex_unlock(&f->lock);
}

bool fault_crashed(const struct fault_disk *f)
{
    return __atomic_load_n(&f->crashed, __ATOMIC_ACQUIRE);
}

void fault_fail_reads(struct fault_disk *f, uint64_t n, unsigned count, int err)
{
    pthread_mutex_lock(&f->lock);
    f->rfail_from = n;
    f->rfail_count = count;
    f->rfail_err = err;
    pthread_mutex_unlock(&f->lock);
}

void fault_fail_writes(struct fault_disk *f, uint64_t n, unsigned count, int err)
{
    pthread_mutex_lock(&f->lock);
    f->wfail_from = n;
    f->wfail_count = count;
    f->wfail_err = err;
    pthread_mutex_unlock(&f->lock);
}

void fault_fail_flushes(struct fault_disk *f, uint64_t n, unsigned count, int err, bool lose)
{
    pthread_mutex_lock(&f->lock);
    f->ffail_from = n;
    f->ffail_count = count;
    f->ffail_err = err;
    f->ffail_lose = lose;
    pthread_mutex_unlock(&f->lock);
}

void fault_set_limit(struct fault_disk *f, uint64_t limit)
{
    pthread_mutex_lock(&f->lock);
    f->limit = limit;
    pthread_mutex_unlock(&f->lock);
}

void fault_set_hook(struct fault_disk *f, fault_hook_fn fn, void *opaque)
{
    pthread_mutex_lock(&f->lock);
    f->hook = fn;
    f->hook_opaque = opaque;
    pthread_mutex_unlock(&f->lock);
}

/* Applies the part [LO, HI) of entry E to IMG. */
static int apply_part(uint8_t **img, uint64_t *len, uint64_t *cap, const struct fault_entry *e,
                      uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return 0;
    if (buf_grow(img, len, cap, hi) < 0)
        return -ENOMEM;
    if (e->data)
        memcpy(*img + lo, e->data + (lo - e->off), hi - lo);
    else
        memset(*img + lo, 0, hi - lo);
    return 0;
}

static int apply_entry(uint8_t **img, uint64_t *len, uint64_t *cap, const struct fault_entry *e)
{
    return apply_part(img, len, cap, e, e->off, e->off + e->len);
}

/* The sectors an entry touches. */
static uint64_t entry_sectors(const struct fault_entry *e)
{
    return (e->off + e->len - 1) / FAULT_SECTOR - e->off / FAULT_SECTOR + 1;
}

/* The part of entry E in its sector number I (0 = its first). */
static void entry_sector(const struct fault_entry *e, uint64_t i, uint64_t *lo, uint64_t *hi)
{
    uint64_t s = (e->off / FAULT_SECTOR + i) * FAULT_SECTOR;
    *lo = s < e->off ? e->off : s;
    *hi = s + FAULT_SECTOR < e->off + e->len ? s + FAULT_SECTOR : e->off + e->len;
}

int fault_image(struct fault_disk *f, enum fault_policy policy, uint64_t seed, uint8_t **data,
                size_t *len)
{
    pthread_mutex_lock(&f->lock);
    uint64_t ilen = 0, icap = 0;
    uint8_t *img = NULL;
    int r = buf_grow(&img, &ilen, &icap, f->dlen ? f->dlen : 1);
    if (r == 0) {
        ilen = f->dlen;
        memcpy(img, f->dur, f->dlen);
    }
    size_t n = f->nlog;
    uint64_t rng = seed ^ 0x5eed5eed5eedull;
    size_t prefix = policy == FAULT_KEEP_PREFIX ? (size_t)(splitmix(&rng) % (n + 1)) : 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        const struct fault_entry *e = &f->log[i];
        switch (policy) {
        case FAULT_DROP_ALL:
            break;
        case FAULT_KEEP_ALL:
            r = apply_entry(&img, &ilen, &icap, e);
            break;
        case FAULT_KEEP_PREFIX:
            if (i < prefix)
                r = apply_entry(&img, &ilen, &icap, e);
            break;
        case FAULT_RANDOM_WRITES:
            if (splitmix(&rng) & 1)
                r = apply_entry(&img, &ilen, &icap, e);
            break;
        case FAULT_RANDOM_SECTORS:
            for (uint64_t s = 0; r == 0 && s < entry_sectors(e); s++) {
                uint64_t lo, hi;
                entry_sector(e, s, &lo, &hi);
                if (splitmix(&rng) & 1)
                    r = apply_part(&img, &ilen, &icap, e, lo, hi);
            }
            break;
        case FAULT_TEAR_LAST:
            if (i + 1 < n) {
                r = apply_entry(&img, &ilen, &icap, e);
            } else {
                uint64_t keep = splitmix(&rng) % entry_sectors(e);
                for (uint64_t s = 0; r == 0 && s < keep; s++) {
                    uint64_t lo, hi;
                    entry_sector(e, s, &lo, &hi);
                    r = apply_part(&img, &ilen, &icap, e, lo, hi);
                }
            }
            break;
        default:
            r = -EINVAL;
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    if (r < 0) {
        free(img);
        return r;
    }
    *data = img;
    *len = (size_t)ilen;
    return 0;
}

static int copy_out(struct fault_disk *f, bool durable, uint8_t **data, size_t *len)
{
    pthread_mutex_lock(&f->lock);
    uint64_t n = durable ? f->dlen : f->clen;
    uint8_t *b = malloc(n ? n : 1);
    if (b)
        memcpy(b, durable ? f->dur : f->cur, n);
    pthread_mutex_unlock(&f->lock);
    if (!b)
        return -ENOMEM;
    *data = b;
    *len = (size_t)n;
    return 0;
}

int fault_durable(struct fault_disk *f, uint8_t **data, size_t *len)
{
    return copy_out(f, true, data, len);
}

int fault_current(struct fault_disk *f, uint8_t **data, size_t *len)
{
    return copy_out(f, false, data, len);
}

struct fault_disk *fault_after_crash(struct fault_disk *f, enum fault_policy policy,
                                     uint64_t seed)
{
    uint8_t *img;
    size_t len;
    if (fault_image(f, policy, seed, &img, &len) < 0)
        return NULL;
    struct fault_disk *n = fault_new(img, len, f->limit);
    free(img);
    return n;
}
