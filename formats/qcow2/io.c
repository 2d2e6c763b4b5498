/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/io.c: guest requests on a qcow2 image, asynchronously.
 *
 * A request is cut into runs of guest clusters with one status each
 * (qcow2_lookup, under the lock).  Reads of allocated clusters go straight
 * to the file as child requests; unallocated ones to the backing device (or
 * zeroes); compressed ones are read and inflated.  Writes to clusters that
 * this image owns alone (COPIED) go straight to the file.  Other writes
 * allocate: the guest range's clusters are reserved (later writes there
 * wait), new host clusters are allocated, the parts of the clusters that
 * the write does not cover are read through this same device (copy on
 * write), the whole is written in one request, and only then is the L2
 * table updated.  Discard and write zeroes change L2 entries only (whole
 * clusters) and write zeroes through the write path for the edges.
 *
 * Locking: s->lock guards the tables in memory, and no request path holds
 * it across I/O.  On a request's queue, a table that is not cached is read
 * as a child request (waited for per table), and a walk that needs more
 * (a refcount block to read, a file to grow, tables to write back) goes to
 * the image's worker thread.  The worker reads the tables it will need and
 * grows the file before it takes the lock (qcow2_prefetch), makes a new L2
 * table for a written run with the lock let go (qcow2_make_l2_unlocked),
 * and flushes write copies of the dirty tables with the lock let go
 * (qcow2_writeback_unlocked).  What still does I/O under the lock, on the
 * worker only: the allocator when the prefetch did not cover it (a new
 * refcount block, a larger refcount table, a refcount block past the
 * first two it looks at), a discard's or write zeroes' copy of an L2 table
 * a snapshot shares, lazy refcounts' dirty bit, and a write-back when
 * every cache slot is dirty again; the management operations (snapshot,
 * resize, amend, check) run inside their quiesce section, and compressed
 * writes (a synchronous call) make their tables under the lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "qcow2.h"

#define ZERO_BUF_SIZE (1u << 21)

static uint8_t *zero_buf;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_alloc(void)
{
    /* Page-aligned, so that O_DIRECT files take it without a bounce. */
    zero_buf = aligned_alloc_or_null(4096, ZERO_BUF_SIZE);
    if (zero_buf)
        memset(zero_buf, 0, ZERO_BUF_SIZE);
}

static const uint8_t *zero_buffer(void)
{
    pthread_once(&zero_once, zero_alloc);
    return zero_buf;
}

/* A child on DEV covering the parent's bytes [skip, skip + len) of its iovec. */
static struct vdisk_req *child_slice(struct vdisk_req *req, struct vdisk_dev *dev,
                                     enum vdisk_op op, uint64_t off, uint64_t skip,
                                     uint64_t len, unsigned flags, req_done_fn done,
                                     void *arg)
{
    struct iovec small[8];
    struct iovec *v = req->iovcnt <= 8 ? small : malloc((size_t)req->iovcnt * sizeof *v);
    if (!v)
        return NULL;
    int n = iov_slice(req->iov, req->iovcnt, skip, len, v);
    struct vdisk_req *c = req_new_child(req, dev, op, off, len, v, n, flags, done, arg);
    if (v != small)
        free(v);
    return c;
}

/*
 * A read, or an overwrite in place, whose whole range is one run of host
 * bytes in the file goes to the file itself, not through a child request
 * (req_forward): the walk has issued nothing yet and hands REQ over.
 */
static bool whole_to_file(const struct vdisk_req *req, uint64_t pos, uint64_t len)
{
    return pos == req->offset && len == req->length && req_may_forward(req);
}

static void fail_msg(struct vdisk_req *req, int r)
{
    req_set_error(req, r, err_detail());
}

/* Legacy AES encrypts each sector by its guest offset, where the data
 * goes to its host offset: the encrypting layer is told the difference
 * (REQ may be NULL). */
static void aes_iv(const struct qcow2 *s, struct vdisk_req *req, uint64_t guest, uint64_t host)
{
    if (req && s->crypt_method == QCOW2_CRYPT_AES)
        req->iv_shift = ((int64_t)guest - (int64_t)host) / VCRYPT_SECTOR;
}

/* ---- L2 tables missing from the cache ------------------------------------- */

/*
 * A request whose walk needs an L2 table that is not cached does not read
 * it under the lock: it waits on the table's load (one per table, however
 * many requests need it), and the first of them reads the table as a child
 * request on its own queue.  When the read completes the table goes into
 * the cache and every waiter resumes its walk where it stopped, on its own
 * queue.  Requests that need other tables, or cached ones, go on meanwhile.
 * A synchronous call never waits for a read on another queue (it reads the
 * table itself; the second copy is dropped).
 * A load that the cache overtook (another path read and changed the table
 * while this read was in flight: qcow2_cache_get marks it stale) is thrown
 * away, and the waiters look again.  When every slot the table could take
 * holds a dirty table, the write-back that must come first is done on the
 * image's worker thread.
 */

static void wake_all(struct vdisk_req *w, struct vdisk_queue *current)
{
    while (w) {
        struct vdisk_req *next = w->next;
        req_resume_later(w, w->resume, current);
        w = next;
    }
}

/* The walk of a waiter whose table could not be read: it ends here, with
 * the error already recorded. */
static void walk_end(struct vdisk_req *req)
{
    req_release(req, 0);
}

/* Every waiter in W (but SKIP) fails with R and MSG; their walks end. */
static void fail_waiters(struct vdisk_req *w, struct vdisk_req *skip, int r, const char *msg)
{
    for (struct vdisk_req *x = w; x; x = x->next) {
        if (x != skip)
            req_set_error(x, r, msg);
        x->resume = walk_end;
    }
}

static void unlink_load(struct qcow2 *s, struct qcow2_load *l)
{
    for (struct qcow2_load **pp = &s->loads; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            return;
        }
    }
}

/* On the worker: dirty tables written back, then the table installed. */
static int install_work(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    struct qcow2_load *l = qreq(req)->load;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (!l->stale && qcow2_cache_install(&s->l2c, l->offset, l->buf) == 1) {
        /* Written back without holding the lock across the I/O; if other
         * threads made every slot dirty again meanwhile, under it. */
        pthread_mutex_unlock(&s->lock);
        r = qcow2_writeback_unlocked(s, false);
        pthread_mutex_lock(&s->lock);
        if (r == 0 && !l->stale) {
            r = qcow2_cache_install(&s->l2c, l->offset, l->buf);
            if (r == 1) {
                r = qcow2_cache_write_back(&s->l2c);
                if (r == 0)
                    r = qcow2_cache_install(&s->l2c, l->offset, l->buf);
            }
        }
    }
    unlink_load(s, l);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r < 0 ? r : 0;
}

static void install_then(struct vdisk_req *req)
{
    struct qcow2_load *l = qreq(req)->load;
    qreq(req)->load = NULL;
    /* The carrier goes first again, with its own walk to resume. */
    req->resume = l->carrier_resume;
    req->next = l->waiters;
    struct vdisk_req *w = req;
    if (req->result < 0)
        fail_waiters(w, req, req->result, req->errmsg ? req->errmsg : "out of memory");
    free(l->buf);
    free(l);
    wake_all(w, req->q);
}

static void load_done(struct vdisk_req *child, int ret)
{
    struct qcow2_load *l = child->done_arg;
    struct vdisk_req *req = child->parent;
    struct qcow2 *s = req->dev->priv;
    char *msg = child->errmsg;
    child->errmsg = NULL;
    req_free(child);
    pthread_mutex_lock(&s->lock);
    int r = ret;
    if (r == 0 && !l->stale) {
        r = qcow2_cache_install(&s->l2c, l->offset, l->buf);
        if (r == 1) {
            /* A write-back first: not on this thread.  The loading request
             * (the first waiter) carries the job; the others stay listed,
             * and requests that come meanwhile join them. */
            l->carrier_resume = req->resume;
            l->waiters = req->next;
            if (!l->waiters)
                l->last = NULL;
            pthread_mutex_unlock(&s->lock);
            free(msg);
            qreq(req)->load = l;
            offload_req(s->offload, req, install_work, install_then);
            return;
        }
        if (r < 0) {
            free(msg);
            msg = strdup(err_detail());
        }
    }
    unlink_load(s, l);
    struct vdisk_req *w = l->waiters;
    pthread_mutex_unlock(&s->lock);
    if (r < 0) {
        char fallback[160];
        if (!msg)
            snprintf(fallback, sizeof fallback, "%s: reading the L2 table at 0x%" PRIx64 ": %s",
                     s->dev->filename, l->offset, strerror(-r));
        fail_waiters(w, NULL, r, msg ? msg : fallback);
    }
    free(msg);
    free(l->buf);
    free(l);
    wake_all(w, req->q);
}

/* Under the lock (released here): REQ waits for the L2 table at OFFSET and
 * then runs RESUME (its walk's own hold stays taken).  Returns 0, or a
 * negative errno with the lock released and nothing waiting. */
static int wait_for_table(struct vdisk_req *req, uint64_t offset,
                          void (*resume)(struct vdisk_req *))
{
    struct qcow2 *s = req->dev->priv;
    req->resume = resume;
    /* A synchronous call (vdisk_pread ..., on a device's own queue) does
     * not wait for a read that runs on another queue: that queue's thread
     * may be this one, or one waiting for this call, and would never reap
     * it.  It reads the table itself. */
    bool sync_call = req_on_sync_queue(req);
    for (struct qcow2_load *l = s->loads; l; l = l->next) {
        if (l->offset == offset && (!sync_call || l->q == req->q)) {
            req->next = NULL;
            if (l->last)
                l->last->next = req;
            else
                l->waiters = req;
            l->last = req;
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
    }
    struct qcow2_load *l = calloc(1, sizeof *l);
    if (l)
        l->buf = aligned_alloc_or_null(4096, s->cluster_size);
    struct iovec v = {l ? l->buf : NULL, s->cluster_size};
    struct vdisk_req *c = l && l->buf ? req_new_child(req, s->file, VDISK_OP_READ, offset,
                                                      s->cluster_size, &v, 1, 0, load_done, l)
                                      : NULL;
    if (!c) {
        pthread_mutex_unlock(&s->lock);
        if (l)
            free(l->buf);
        free(l);
        return err_set(-ENOMEM, "out of memory");
    }
    l->offset = offset;
    l->q = req->q;
    req->next = NULL;
    l->waiters = l->last = req;
    l->next = s->loads;
    s->loads = l;
    pthread_mutex_unlock(&s->lock);
    dev_debug_event(s->file, "l2_load"); /* (blkdebug) */
    req_submit(c);
    return 0;
}

/* ---- Reads ---------------------------------------------------------------- */

struct comp_read {
    uint64_t skip;       /* where the piece goes in the parent's iovec */
    uint64_t len;        /* bytes of the piece */
    uint64_t in_cluster; /* where the piece starts in the cluster */
    uint64_t clen;       /* compressed bytes */
    uint8_t *buf;        /* compressed data, then the cluster after it */
};

static void comp_read_done(struct vdisk_req *child, int ret)
{
    struct vdisk_req *req = child->parent;
    struct qcow2 *s = req->dev->priv;
    struct comp_read *cr = child->done_arg;
    if (ret == 0) {
        uint8_t *out = cr->buf + cr->clen;
        if (qcow2_decompress(s, cr->buf, cr->clen, out, s->cluster_size) < 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s: the compressed cluster at host offset 0x%" PRIx64
                     " is corrupt (it does not inflate to %" PRIu64 " bytes)", s->dev->filename,
                     child->offset, s->cluster_size);
            req_set_error(req, -EIO, msg);
            ret = -EIO;
        } else {
            iov_from_buf(req->iov, req->iovcnt, cr->skip, out + cr->in_cluster, cr->len);
        }
    }
    free(cr->buf);
    free(cr);
    req_child_releases_parent(child, ret);
}

static int read_compressed(struct vdisk_req *req, const struct qcow2_map *m, uint64_t pos,
                           uint64_t len)
{
    struct qcow2 *s = req->dev->priv;
    uint64_t coff, clen;
    qcow2_compressed_range(s, m->l2e, &coff, &clen);
    struct comp_read *cr = calloc(1, sizeof *cr);
    if (cr)
        cr->buf = malloc(clen + s->cluster_size);
    if (!cr || !cr->buf) {
        free(cr);
        return err_set(-ENOMEM, "out of memory");
    }
    cr->skip = pos - req->offset;
    cr->len = len;
    cr->in_cluster = pos & (s->cluster_size - 1);
    cr->clen = clen;
    struct iovec v = {cr->buf, clen};
    struct vdisk_req *c = req_new_child(req, s->file, VDISK_OP_READ, coff, clen, &v, 1, 0,
                                        comp_read_done, cr);
    if (!c) {
        free(cr->buf);
        free(cr);
        return err_set(-ENOMEM, "out of memory");
    }
    req_hold(req);
    req_submit(c);
    return 0;
}

/* Walks the read from its position (qreq()->pos); resumed here after a
 * table load. */
static void qc_read_loop(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    uint64_t pos = qreq(req)->pos, end = req->offset + req->length;
    while (pos < end) {
        struct qcow2_map m;
        uint64_t need;
        pthread_mutex_lock(&s->lock);
        int r = qcow2_lookup_cached(s, pos, end - pos, &m, &need);
        if (r == 1) {
            qreq(req)->pos = pos;
            r = wait_for_table(req, need, qc_read_loop); /* releases the lock */
            if (r == 0)
                return;
            fail_msg(req, r);
            break;
        }
        pthread_mutex_unlock(&s->lock);
        if (r < 0) {
            fail_msg(req, r);
            break;
        }
        uint64_t n = m.len, skip = pos - req->offset;
        struct vdisk_req *c = NULL;
        switch (m.type) {
        case QCOW2_NORMAL:
            dev_debug_event(s->file, "read_aio"); /* (blkdebug) */
            if (whole_to_file(req, pos, n)) {
                aes_iv(s, req, pos, m.host);
                req_forward(req, s->data, m.host, 0);
                return;
            }
            c = child_slice(req, s->data, VDISK_OP_READ, m.host, skip, n, 0,
                            req_child_releases_parent, NULL);
            aes_iv(s, c, pos, m.host);
            break;
        case QCOW2_ZERO:
            iov_memset(req->iov, req->iovcnt, skip, 0, n);
            break;
        case QCOW2_UNALLOCATED: {
            /* (the VM state area reads zeroes where it is unallocated) */
            uint64_t bsize = s->backing && !(req->flags & REQ_VMSTATE) ? dev_size(s->backing) : 0;
            uint64_t part = pos < bsize ? (bsize - pos < n ? bsize - pos : n) : 0;
            if (part < n)
                iov_memset(req->iov, req->iovcnt, skip + part, 0, n - part);
            if (!part)
                goto next; /* all zeroes */
            dev_debug_event(s->file, "read_backing_aio");
            c = child_slice(req, s->backing, VDISK_OP_READ, pos, skip, part, 0,
                            req_child_releases_parent, NULL);
            break;
        }
        case QCOW2_COMPRESSED:
            r = read_compressed(req, &m, pos, n);
            if (r < 0)
                fail_msg(req, r);
            goto next;
        }
        if (m.type == QCOW2_NORMAL || m.type == QCOW2_UNALLOCATED) {
            if (!c) {
                fail_msg(req, err_set(-ENOMEM, "out of memory"));
                break;
            }
            req_hold(req);
            req_submit(c);
        }
    next:
        if (r < 0)
            break;
        pos += n;
    }
    req_release(req, 0); /* the walk's own hold */
}

static void qc_read(struct vdisk_req *req)
{
    qreq(req)->pos = req->offset;
    req_hold(req);
    qc_read_loop(req);
}

/* ---- Allocating writes ---------------------------------------------------- */

struct qc_run {
    struct vdisk_req *req;
    struct qcow2_alloc range;
    uint64_t pos, len;        /* guest bytes of the request */
    uint64_t c0, ncl;         /* first guest cluster (bytes), cluster count */
    uint64_t host;            /* host offset of the first cluster */
    bool fill;                /* extended L2: into the existing host cluster */
    bool whole;               /* the whole cluster is rewritten (every subcluster) */
    uint64_t cow_start, cow_end;
    uint8_t *head, *tail;
    uint64_t head_len, tail_len;
    unsigned pending;
    int err;
    struct vdisk_req *wake;   /* waiters to wake when the run is done */
};

static void qc_write_loop(struct vdisk_req *req);


/* Drops the run's reservation; returns its waiters.  Under the lock. */
static struct vdisk_req *unreserve(struct qcow2 *s, struct qc_run *run)
{
    for (struct qcow2_alloc **pp = &s->allocs; *pp; pp = &(*pp)->next) {
        if (*pp == &run->range) {
            *pp = run->range.next;
            break;
        }
    }
    return run->range.waiters;
}

/* On the worker, before locked work over the guest range [G, END): the L2
 * tables of its first (up to 8) tables, and the refcount blocks that an
 * allocation of NCL clusters would look at first, are read without the
 * lock, and the file grown ahead of it, so the locked part does not do
 * that I/O holding it. */
static void prefetch_for(struct qcow2 *s, uint64_t g, uint64_t end, uint64_t ncl)
{
    uint64_t l2[8], rb[2];
    unsigned nl = 0, nr = 0;
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    pthread_mutex_lock(&s->lock);
    for (uint64_t i = g >> span_bits; nl < 8 && i < s->l1_size && s->l1 && i << span_bits < end;
         i++)
        l2[nl++] = s->l1[i] & QCOW2_OFFSET_MASK;
    if (ncl)
        nr = qcow2_alloc_blocks(s, ncl, rb);
    pthread_mutex_unlock(&s->lock);
    qcow2_prefetch(&s->l2c, l2, nl);
    qcow2_prefetch(&s->rbc, rb, nr);
    if (ncl)
        qcow2_grow_unlocked(s, ncl); /* the file's fallocate, too */
}

/* A child of REQ that is never submitted: it carries one job of REQ's to
 * the image's worker and back (offload_req), so that several can be out at
 * once while REQ goes on.  NULL without memory. */
static struct vdisk_req *carrier_new(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    return req_new_child(req, s->file, VDISK_OP_FLUSH, 0, 0, NULL, 0, 0, NULL, NULL);
}

/* Can the L2 update of RUN be made without I/O?  (Under the lock.)  Its
 * table cached and this image's own, no FUA flush, and no deferred frees
 * that would fill the list (a full list is flushed). */
static bool finish_cached(struct qcow2 *s, const struct qc_run *run)
{
    uint64_t l1i = run->c0 >> (s->cluster_bits + s->l2_bits);
    if (l1i >= s->l1_size || (run->req->flags & VDISK_REQ_FUA))
        return false;
    uint64_t e = s->l1[l1i], off = e & QCOW2_OFFSET_MASK;
    if (!off || !(e & QCOW2_OFLAG_COPIED) || !qcow2_cache_has(&s->l2c, off))
        return false;
    return s->hold_frees || s->ndeferred + 2 * run->ncl < QCOW2_DEFERRED_FREE_MAX;
}

/* The L2 update of a run whose data is written (ERR 0), or the release of
 * its clusters (ERR < 0); returns the error.  Under the lock.  FUA_FLUSH:
 * a FUA write's metadata is flushed here (else the caller does it). */
static int finish_locked(struct qcow2 *s, struct qc_run *run, int err, bool fua_flush)
{
    struct vdisk_req *req = run->req;
    if (err == 0) {
        /* Point the L2 entries at the new data. */
        uint64_t span_bits = s->cluster_bits + s->l2_bits;
        uint8_t *l2 = NULL;
        err = qcow2_l2_for_write(s, run->c0 >> span_bits, &l2);
        for (uint64_t k = 0; err == 0 && k < run->ncl; k++) {
            uint64_t g = run->c0 + k * s->cluster_size;
            uint64_t i = (g >> s->cluster_bits) & (s->l2_entries - 1);
            uint64_t old = qcow2_l2e_get(s, l2, i), bm = qcow2_l2e_bitmap(s, l2, i);
            uint64_t host = run->host + k * s->cluster_size;
            if (s->ext_l2) {
                uint32_t a = (uint32_t)bm, z = (uint32_t)(bm >> 32);
                uint32_t mask;
                if (run->whole) {
                    mask = 0xffffffffu;
                } else {
                    uint64_t first = (run->cow_start - g) / s->sc_size;
                    uint64_t last = (run->cow_end - 1 - g) / s->sc_size;
                    mask = (uint32_t)((last == 31 ? 0xffffffffu : (1u << (last + 1)) - 1) &
                                      ~((1u << first) - 1));
                }
                if (!run->fill && !run->whole)
                    a = 0; /* a new cluster: nothing of the old one is in it */
                a |= mask;
                z &= ~a;
                qcow2_l2e_set(s, l2, i, host | QCOW2_OFLAG_COPIED, (uint64_t)z << 32 | a);
            } else {
                qcow2_l2e_set(s, l2, i, host | QCOW2_OFLAG_COPIED, 0);
            }
            if (!run->fill && (old & (QCOW2_OFFSET_MASK | QCOW2_OFLAG_COMPRESSED)))
                err = qcow2_release_entry(s, old);
        }
        if (l2) {
            qcow2_cache_dirty(&s->l2c, l2);
            qcow2_cache_put(&s->l2c, l2);
        }
        if (err == 0 && fua_flush && (req->flags & VDISK_REQ_FUA))
            err = qcow2_flush_metadata(s);
    } else if (!run->fill && run->host && !qcow2_has_data_file(s)) {
        qcow2_free_later(s, run->host, run->ncl); /* nothing points to them */
    }
    run->wake = unreserve(s, run);
    return err;
}

/* Back on the request's queue: waiters woken, the run's hold dropped. */
static void finish_rest(struct qc_run *run, int err)
{
    struct vdisk_req *req = run->req;
    wake_all(run->wake, req->q);
    free(run->head);
    free(run->tail);
    free(run);
    req_release(req, err);
}

/* On the worker: the L2 update that needs I/O.  The carrier is a child of
 * the run's request that is never submitted: the request itself may be on
 * its way through other runs meanwhile. */
static int finish_work(struct vdisk_req *carrier)
{
    struct qc_run *run = qreq(carrier)->alloc.run;
    struct qcow2 *s = run->req->dev->priv;
    prefetch_for(s, run->c0, run->c0 + run->ncl * s->cluster_size, 1);
    /* Its L2 table, if it must be made, without the lock held across that
     * I/O.  If that fails the write fails (not retried: after a failed
     * write or fsync the file's state is not known) and its clusters go. */
    int made = qcow2_make_l2_unlocked(s, run->c0 >> (s->cluster_bits + s->l2_bits));
    pthread_mutex_lock(&s->lock);
    int err = finish_locked(s, run, made, false); /* only written runs come here */
    pthread_mutex_unlock(&s->lock);
    if (err == 0 && (run->req->flags & VDISK_REQ_FUA))
        err = qcow2_writeback_unlocked(s, true); /* no lock held across it */
    if (err < 0)
        req_set_error(carrier, err, err_detail());
    return err;
}

static void finish_then(struct vdisk_req *carrier)
{
    struct qc_run *run = qreq(carrier)->alloc.run;
    int err = carrier->result;
    if (err < 0) {
        req_take_error(run->req, carrier);
        fail_msg(run->req, err);
    }
    req_free(carrier);
    finish_rest(run, err);
}

static void run_finish(struct qc_run *run, int err)
{
    struct vdisk_req *req = run->req;
    struct qcow2 *s = req->dev->priv;
    pthread_mutex_lock(&s->lock);
    if (err == 0 && !finish_cached(s, run)) {
        pthread_mutex_unlock(&s->lock);
        struct vdisk_req *carrier = carrier_new(req);
        if (carrier) {
            qreq(carrier)->alloc.run = run;
            offload_req(s->offload, carrier, finish_work, finish_then);
            return;
        }
        pthread_mutex_lock(&s->lock); /* no memory for it: done here */
    }
    int r = finish_locked(s, run, err, true);
    pthread_mutex_unlock(&s->lock);
    if (r < 0 && err == 0)
        fail_msg(req, r);
    finish_rest(run, r);
}

static void run_write_done(struct vdisk_req *child, int ret)
{
    struct qc_run *run = child->done_arg;
    req_take_error(run->req, child);
    req_free(child);
    run_finish(run, ret);
}

static void run_write(struct qc_run *run)
{
    struct vdisk_req *req = run->req;
    struct qcow2 *s = req->dev->priv;
    int cnt = req->iovcnt + 2;
    struct iovec *v = malloc((size_t)cnt * sizeof *v);
    if (!v) {
        run_finish(run, err_set(-ENOMEM, "out of memory"));
        return;
    }
    int n = 0;
    if (run->head_len)
        v[n++] = (struct iovec){run->head, run->head_len};
    n += iov_slice(req->iov, req->iovcnt, run->pos - req->offset, run->len, v + n);
    if (run->tail_len)
        v[n++] = (struct iovec){run->tail, run->tail_len};
    uint64_t host = run->host + (run->cow_start - run->c0);
    dev_debug_event(s->file, "write_aio"); /* (blkdebug) */
    struct vdisk_req *c = req_new_child(req, s->data, VDISK_OP_WRITE, host,
                                        run->cow_end - run->cow_start, v, n,
                                        req->flags & VDISK_REQ_FUA, run_write_done, run);
    free(v);
    aes_iv(s, c, run->cow_start, host);
    if (!c) {
        run_finish(run, err_set(-ENOMEM, "out of memory"));
        return;
    }
    req_submit(c);
}

static void run_cow_done(struct vdisk_req *child, int ret)
{
    struct qc_run *run = child->done_arg;
    req_take_error(run->req, child);
    req_free(child);
    if (ret < 0 && !run->err)
        run->err = ret;
    if (--run->pending)
        return;
    if (run->err)
        run_finish(run, run->err);
    else
        run_write(run);
}

/* Reads the parts of the clusters around the write, through this device. */
static void run_cow(struct qc_run *run)
{
    struct vdisk_req *req = run->req;
    struct {
        uint64_t off, len;
        uint8_t **buf;
    } parts[2] = {{run->cow_start, run->head_len, &run->head},
                  {run->pos + run->len, run->tail_len, &run->tail}};
    run->pending = 1;
    for (int i = 0; i < 2; i++) {
        if (!parts[i].len)
            continue;
        *parts[i].buf = aligned_alloc_or_null(4096, parts[i].len);
        struct iovec v = {*parts[i].buf, parts[i].len};
        struct vdisk_req *c = *parts[i].buf
                                  ? req_new_child(req, req->dev, VDISK_OP_READ, parts[i].off,
                                                  parts[i].len, &v, 1,
                                                  req->flags & REQ_VMSTATE, run_cow_done, run)
                                  : NULL;
        if (!c) {
            run->err = err_set(-ENOMEM, "out of memory");
            fail_msg(req, run->err);
            break;
        }
        run->pending++;
        req_submit(c);
    }
    /* Drop the guard; the last of the reads moves on. */
    if (--run->pending == 0) {
        if (run->err)
            run_finish(run, run->err);
        else
            run_write(run);
    }
}

/* The COW parts of RUN read as zeroes: no backing file, and the clusters
 * around the write unallocated or zero.  Under the lock. */
static bool zero_cow(struct qcow2 *s, struct qc_run *run, bool nb)
{
    /* (Encrypted clusters: zeroes in the file are not zeroes in the disk.) */
    if (s->backing || run->fill || s->ext_l2 || qcow2_encrypted(s))
        return false;
    uint64_t tail = run->pos + run->len;
    struct {
        uint64_t off, len;
    } parts[2] = {{run->cow_start, run->pos - run->cow_start},
                  {tail, run->cow_end > tail ? run->cow_end - tail : 0}};
    for (int i = 0; i < 2; i++) {
        uint64_t off = parts[i].off, left = parts[i].len;
        while (left) {
            struct qcow2_map m;
            uint64_t need;
            /* Without I/O, a table not cached is "not known to be zero":
             * the parts are read through the device instead. */
            if ((nb ? qcow2_lookup_cached(s, off, left, &m, &need) : qcow2_lookup(s, off, left, &m)) != 0)
                return false;
            if (m.type != QCOW2_UNALLOCATED && m.type != QCOW2_ZERO)
                return false;
            off += m.len;
            left -= m.len;
        }
    }
    return true;
}

static void run_zero_done(struct vdisk_req *child, int ret)
{
    struct qc_run *run = child->done_arg;
    req_free(child);
    if (ret < 0) {
        run_cow(run); /* no zero range here: copy (zeroes) as before */
        return;
    }
    /* The new clusters read as zeroes: write the guest data alone. */
    run->head_len = run->tail_len = 0;
    run->cow_start = run->pos;
    run->cow_end = run->pos + run->len;
    run_write(run);
}

/* As QEMU's handle_alloc_space(): zero the new clusters with one
 * write-zeroes request (fallocate ZERO_RANGE) instead of writing the
 * zeroes of the COW parts. */
static void run_zero(struct qc_run *run)
{
    struct vdisk_req *req = run->req;
    struct qcow2 *s = req->dev->priv;
    struct vdisk_req *c = req_new_child(req, s->data, VDISK_OP_WRITE_ZEROES, run->host,
                                        run->ncl * s->cluster_size, NULL, 0, 0, run_zero_done,
                                        run);
    aes_iv(s, c, run->c0, run->host);
    if (!c) {
        run_cow(run);
        return;
    }
    req_submit(c);
}

/* How start_run may go about it. */
enum run_mode {
    RUN_NB,     /* on the request's queue, inside a call or a reap: no I/O */
    RUN_WORKER, /* on the image's worker: I/O allowed, no parking */
};

/* Is the L2 table for guest cluster C0 cached, or not there at all?
 * (Under the lock; what start_run reads of it with extended L2.) */
static bool l2_cached_or_none(struct qcow2 *s, uint64_t c0)
{
    uint64_t l1i = c0 >> (s->cluster_bits + s->l2_bits);
    if (l1i >= s->l1_size)
        return true;
    uint64_t off = s->l1[l1i] & QCOW2_OFFSET_MASK;
    return !off || qcow2_cache_has(&s->l2c, off);
}

/* Will a write at guest cluster C0 make an L2 table (none yet, or one a
 * snapshot shares)?  The worker makes it first, so that its cluster comes
 * before the data clusters, as QEMU lays them out (qemu-img map shows
 * sequentially written data in one piece, and QEMU's tests print host
 * offsets).  An external data file keeps data at guest offsets anyway.
 * (Under the lock.) */
static bool needs_new_l2(struct qcow2 *s, uint64_t c0)
{
    uint64_t l1i = c0 >> (s->cluster_bits + s->l2_bits);
    return !qcow2_has_data_file(s) && l1i < s->l1_size &&
           !(s->l1[l1i] & QCOW2_OFLAG_COPIED);
}

/* Which edge clusters of a run over clusters of the image's own hold data
 * (merge_own_clusters): their bytes outside the write stay as they are. */
enum { KEEP_HEAD = 1, KEEP_TAIL = 2 };

/*
 * A write over clusters of the image's own that lie one after another in
 * the file, some holding data (NORMAL, COPIED) and some preallocated zeroes
 * (ZERO with a host cluster, COPIED), is one write, as QEMU makes it: one
 * run over them all that keeps their host clusters, then clears the zero
 * flags.  Turns *M (the extent at POS, of a write that ends at END) into
 * that run's extent when it takes in more than *M and a preallocated zero
 * cluster is among them, with *KEEP saying which edge clusters hold data.
 * Without extended L2 entries or a data file; within one L2 table.  Under
 * the lock, without I/O.
 */
static void merge_own_clusters(struct qcow2 *s, uint64_t pos, uint64_t end, struct qcow2_map *m,
                               unsigned *keep)
{
    *keep = 0;
    bool data = m->type == QCOW2_NORMAL && m->copied;
    bool pre = m->type == QCOW2_ZERO && m->copied && m->host;
    if (s->ext_l2 || qcow2_has_data_file(s) || (!data && !pre))
        return;
    uint64_t cs = s->cluster_size, span = s->cluster_bits + s->l2_bits;
    uint64_t table_end = ((pos >> span) + 1) << span, p = pos + m->len;
    if (end > table_end)
        end = table_end;
    bool any_pre = pre, last_data = data;
    while (p < end && p % cs == 0) {
        struct qcow2_map n;
        uint64_t need;
        if (qcow2_lookup_cached(s, p, end - p, &n, &need) != 0)
            break;
        bool nd = n.type == QCOW2_NORMAL && n.copied;
        bool np = n.type == QCOW2_ZERO && n.copied && n.host;
        if ((!nd && !np) || n.host != m->host + (p - pos))
            break;
        any_pre |= np;
        last_data = nd;
        p += n.len;
    }
    if (!any_pre || p == pos + m->len)
        return;
    *keep = (data ? KEEP_HEAD : 0) | (last_data ? KEEP_TAIL : 0);
    m->type = QCOW2_ZERO;
    m->copied = true;
    m->len = p - pos;
}

/*
 * Prepares an allocating run at POS: reserves the guest clusters,
 * allocates host clusters; the lock is held, and released here.  Returns
 * 0 with *RUNP (start it with launch_run() on the request's queue, and
 * *ZEROP says how), 1 when it waits for an allocation in flight over the
 * same clusters (RUN_NB: parked, resumed at POS later; RUN_WORKER: nothing
 * done, the caller walks again from POS on the queue), 2 (RUN_NB only)
 * when it would need I/O (nothing done: the worker must do it), or a
 * negative errno.  KEEP (merge_own_clusters()): the edge clusters that
 * hold data keep their bytes outside the write when the run keeps its
 * clusters.
 */
static int start_run(struct vdisk_req *req, uint64_t pos, uint64_t len, enum run_mode mode,
                     const struct qcow2_map *m, unsigned keep, struct qc_run **runp,
                     bool *zerop)
{
    struct qcow2 *s = req->dev->priv;
    uint64_t cs = s->cluster_size;
    uint64_t c0 = pos & ~(cs - 1);
    uint64_t ncl = s->ext_l2 ? 1 : (pos + len - c0 + cs - 1) / cs;
    if (s->ext_l2 && len > c0 + cs - pos)
        len = c0 + cs - pos;
    uint64_t cend = c0 + ncl * cs;
    /* Wait for an allocation in flight over the same clusters. */
    for (struct qcow2_alloc *a = s->allocs; a; a = a->next) {
        if (a->start < cend && c0 < a->end) {
            if (mode == RUN_NB) {
                qreq(req)->pos = pos;
                req->resume = qc_write_loop; /* when the allocation is done */
                req->next = a->waiters;
                a->waiters = req;
            }
            pthread_mutex_unlock(&s->lock);
            return 1;
        }
    }
    bool nb = mode == RUN_NB;
    if (nb && ((s->lazy && !s->dirty_on_disk) || (s->ext_l2 && !l2_cached_or_none(s, c0)) ||
               needs_new_l2(s, c0))) {
        pthread_mutex_unlock(&s->lock);
        return 2;
    }
    struct qc_run *run = calloc(1, sizeof *run);
    if (!run) {
        pthread_mutex_unlock(&s->lock);
        return err_set(-ENOMEM, "out of memory");
    }
    run->req = req;
    run->pos = pos;
    run->len = len;
    run->c0 = c0;
    run->ncl = ncl;
    /* (clusters of the VM state area, past the disk, are copied whole) */
    uint64_t limit = (req->flags & REQ_VMSTATE) ? UINT64_MAX : s->size;
    int r = 0;
    if (s->lazy && !s->dirty_on_disk) {
        r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, true);
        if (r == 0)
            s->dirty_on_disk = true;
    }
    if (s->ext_l2) {
        /* Does the cluster already have a host cluster of its own?  Its L2
         * entry is read even when the L2 table is shared (after a snapshot):
         * a shared cluster's allocated subclusters must all be copied. */
        uint64_t span_bits = s->cluster_bits + s->l2_bits, l1i = c0 >> span_bits;
        uint64_t e = 0, bm = 0;
        bool own_l2 = l1i < s->l1_size && (s->l1[l1i] & QCOW2_OFLAG_COPIED);
        if (r == 0 && l1i < s->l1_size && (s->l1[l1i] & QCOW2_OFFSET_MASK)) {
            uint8_t *l2;
            r = qcow2_cache_get(&s->l2c, s->l1[l1i] & QCOW2_OFFSET_MASK, true, &l2);
            if (r == 0) {
                uint64_t i = (c0 >> s->cluster_bits) & (s->l2_entries - 1);
                e = qcow2_l2e_get(s, l2, i);
                bm = qcow2_l2e_bitmap(s, l2, i);
                qcow2_cache_put(&s->l2c, l2);
            }
        }
        bool compressed = (e & QCOW2_OFLAG_COMPRESSED) != 0;
        bool has_host = !compressed && ((e & QCOW2_OFFSET_MASK) ||
                                        (qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED)));
        if (has_host && (e & QCOW2_OFLAG_COPIED) && own_l2) {
            run->fill = true;
            run->host = e & QCOW2_OFFSET_MASK;
        } else if (compressed || (has_host && (uint32_t)bm)) {
            run->whole = true; /* copy every subcluster of a shared cluster */
        }
        if (run->whole) {
            run->cow_start = c0;
            run->cow_end = cend < limit ? cend : limit;
        } else {
            run->cow_start = pos & ~(s->sc_size - 1);
            run->cow_end = align_up(pos + len, s->sc_size);
            if (run->cow_end > limit)
                run->cow_end = limit;
        }
    } else {
        run->cow_start = c0;
        run->cow_end = cend < limit ? cend : limit;
    }
    /* Preallocated zero clusters of this image's own (zero flag, host
     * cluster, COPIED) keep their host clusters, as in QEMU: the write and
     * its copy on write (zeroes) go there, then the entries lose the zero
     * flag.  Only when the clusters lie inside the file and clear of every
     * table (else the image is corrupt, and marked so). */
    uint64_t pre = m && m->type == QCOW2_ZERO && m->copied && m->host >= pos - c0
                       ? m->host - (pos - c0) : 0;
    if (r == 0 && pre && !s->ext_l2 && !qcow2_has_data_file(s) && pre % cs == 0 &&
        pre + ncl * cs <= align_up(dev_size(s->file), cs)) {
        r = qcow2_check_overlap(s, pre, ncl * cs);
        if (r == 0) {
            run->fill = true;
            run->host = pre;
        }
    }
    /* (clusters that cannot be kept get new ones, the edge clusters' data
     * copied over as for any other run) */
    if (r == 0 && run->fill && (keep & KEEP_HEAD))
        run->cow_start = pos;
    if (r == 0 && run->fill && (keep & KEEP_TAIL))
        run->cow_end = pos + len;
    if (r == 0 && !run->fill && qcow2_has_data_file(s))
        run->host = c0; /* an external data file: at the guest offset, as QEMU */
    else if (r == 0 && !run->fill)
        r = nb ? qcow2_alloc_clusters_cached(s, ncl, &run->host)
               : qcow2_alloc_clusters(s, ncl, &run->host);
    if (r != 0) {
        pthread_mutex_unlock(&s->lock);
        free(run);
        return r == 1 ? 2 : r;
    }
    run->range.start = c0;
    run->range.end = cend;
    run->range.next = s->allocs;
    s->allocs = &run->range;
    run->head_len = pos - run->cow_start;
    run->tail_len = run->cow_end > pos + len ? run->cow_end - (pos + len) : 0;
    *zerop = (run->head_len || run->tail_len) && zero_cow(s, run, nb);
    pthread_mutex_unlock(&s->lock);
    *runp = run;
    return 0;
}

/* Starts a prepared run's I/O, on the request's queue. */
static void launch_run(struct qc_run *run, bool zero)
{
    req_hold(run->req);
    if (zero)
        run_zero(run);
    else if (run->head_len || run->tail_len)
        run_cow(run);
    else
        run_write(run);
}

/* ---- Allocations that need I/O, on the worker ------------------------------ */

/* The carrier (a child of the write, never submitted) holds the state in
 * its struct qcow2_req: pos the guest offset, then alloc: what came of it
 * (ALLOC_*), the run and its length, and whether it fills zeroes. */
enum { ALLOC_AGAIN, ALLOC_LAUNCH };

static int alloc_work(struct vdisk_req *carrier)
{
    struct vdisk_req *req = carrier->parent;
    struct qcow2 *s = req->dev->priv;
    struct qcow2_req *cr = qreq(carrier);
    uint64_t pos = cr->pos, end = req->offset + req->length;
    cr->alloc.outcome = ALLOC_AGAIN;
    uint64_t cs = s->cluster_size;
    prefetch_for(s, pos, end, (end - pos + cs - 1) / cs + 2);
    /* The L2 table first (when the write needs a new one), then the data
     * clusters after it: QEMU's order.  Made without the lock held across
     * its I/O; if another table is being made meanwhile, the write makes
     * its own under the lock later (finish_locked), data first. */
    struct qcow2_map m;
    pthread_mutex_lock(&s->lock);
    bool table = needs_new_l2(s, pos & ~(cs - 1)) && qcow2_lookup(s, pos, end - pos, &m) == 0 &&
                 !(m.type == QCOW2_NORMAL && m.copied);
    pthread_mutex_unlock(&s->lock);
    if (table) {
        int made = qcow2_make_l2_unlocked(s, pos >> (s->cluster_bits + s->l2_bits));
        if (made < 0) {
            req_set_error(carrier, made, err_detail());
            return made;
        }
    }
    pthread_mutex_lock(&s->lock);
    /* The lock was let go since the walk looked: look again. */
    int r = qcow2_lookup(s, pos, end - pos, &m);
    if (r < 0 || (m.type == QCOW2_NORMAL && m.copied)) {
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
            req_set_error(carrier, r, err_detail());
        return r; /* an error, or written in place after all: the walk goes on */
    }
    uint64_t len = m.len;
    if (s->ext_l2 && len > s->cluster_size - (pos & (s->cluster_size - 1)))
        len = s->cluster_size - (pos & (s->cluster_size - 1));
    struct qc_run *run;
    bool zero;
    r = start_run(req, pos, len, RUN_WORKER, &m, 0, &run, &zero); /* releases the lock */
    if (r < 0) {
        req_set_error(carrier, r, err_detail());
        return r;
    }
    if (r == 0) {
        cr->alloc.outcome = ALLOC_LAUNCH;
        cr->alloc.len = len;
        cr->alloc.zero = zero;
        cr->alloc.run = run;
    }
    return 0;
}

static void alloc_then(struct vdisk_req *carrier)
{
    struct vdisk_req *req = carrier->parent;
    struct qcow2_req *cr = qreq(carrier);
    uint64_t pos = cr->pos;
    int r = carrier->result;
    if (r < 0) {
        req_take_error(req, carrier);
        fail_msg(req, r);
        req_free(carrier);
        req_release(req, 0); /* the walk's own hold */
        return;
    }
    if (cr->alloc.outcome == ALLOC_LAUNCH) {
        launch_run(cr->alloc.run, cr->alloc.zero);
        pos += cr->alloc.len;
    }
    req_free(carrier);
    qreq(req)->pos = pos;
    qc_write_loop(req);
}

/* The walk stops at POS until the worker has allocated there. */
static int alloc_on_worker(struct vdisk_req *req, uint64_t pos)
{
    struct qcow2 *s = req->dev->priv;
    struct vdisk_req *carrier = carrier_new(req);
    if (!carrier)
        return err_set(-ENOMEM, "out of memory");
    qreq(carrier)->pos = pos;
    offload_req(s->offload, carrier, alloc_work, alloc_then);
    return 0;
}



/* Walks the write from its position (qreq()->pos); resumed here after
 * waiting. */
static void qc_write_loop(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    uint64_t pos = qreq(req)->pos, end = req->offset + req->length;
    while (pos < end) {
        struct qcow2_map m;
        uint64_t need;
        pthread_mutex_lock(&s->lock);
        int r = qcow2_lookup_cached(s, pos, end - pos, &m, &need);
        if (r == 1) {
            qreq(req)->pos = pos;
            r = wait_for_table(req, need, qc_write_loop); /* releases the lock */
            if (r == 0)
                return;
            fail_msg(req, r);
            break;
        }
        if (r < 0) {
            pthread_mutex_unlock(&s->lock);
            fail_msg(req, r);
            break;
        }
        unsigned keep;
        merge_own_clusters(s, pos, end, &m, &keep);
        if (m.type == QCOW2_NORMAL && m.copied) {
            pthread_mutex_unlock(&s->lock);
            dev_debug_event(s->file, "write_aio"); /* (blkdebug) */
            if (whole_to_file(req, pos, m.len)) {
                aes_iv(s, req, pos, m.host);
                req_forward(req, s->data, m.host, req->flags & VDISK_REQ_FUA);
                return;
            }
            struct vdisk_req *c = child_slice(req, s->data, VDISK_OP_WRITE, m.host,
                                              pos - req->offset, m.len,
                                              req->flags & VDISK_REQ_FUA,
                                              req_child_releases_parent, NULL);
            aes_iv(s, c, pos, m.host);
            if (!c) {
                fail_msg(req, err_set(-ENOMEM, "out of memory"));
                break;
            }
            req_hold(req);
            req_submit(c);
            pos += m.len;
            continue;
        }
        uint64_t len = m.len;
        if (s->ext_l2 && len > s->cluster_size - (pos & (s->cluster_size - 1)))
            len = s->cluster_size - (pos & (s->cluster_size - 1));
        struct qc_run *run;
        bool zero;
        r = start_run(req, pos, len, RUN_NB, &m, keep, &run, &zero); /* releases the lock */
        if (r == 1)
            return; /* waiting for another allocation; resumed later */
        if (r == 2) {
            /* Metadata to read or write first: the worker allocates, and
             * the walk goes on from here when it is done. */
            r = alloc_on_worker(req, pos);
            if (r == 0)
                return;
        }
        if (r < 0) {
            fail_msg(req, r);
            break;
        }
        launch_run(run, zero);
        pos += len;
    }
    req_release(req, 0); /* the walk's own hold */
}

static void qc_write(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    if (s->corrupt) {
        req_fail(req, -EIO, "the image is marked corrupt; writes are refused until it is "
                 "repaired (vdisk check -r all)");
        return;
    }
    qreq(req)->pos = req->offset;
    req_hold(req);
    qc_write_loop(req);
}

/* ---- Flush ---------------------------------------------------------------- */

/* On the offload thread: tables written back, then the file flushed. */
static int flush_work(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    int r = qcow2_writeback_unlocked(s, true); /* no lock held across the I/O */
    if (r < 0)
        req_set_error(req, r, err_detail());
    return r;
}

static void qc_flush(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    pthread_mutex_lock(&s->lock);
    bool meta = s->meta_dirty || s->wb_busy; /* a flush in flight covers what it copied */
    meta = meta || s->data_file; /* (flush_work flushes an external data file too) */
    pthread_mutex_unlock(&s->lock);
    if (meta) {
        offload_req(s->offload, req, flush_work, NULL);
        return;
    }
    req_send_child(req, s->file, VDISK_OP_FLUSH, 0, 0, NULL, 0, 0);
}

/* ---- Discard and write zeroes --------------------------------------------- */

/*
 * What QEMU does, which vdisk follows so that the two give the same
 * content:
 *   discard, v3:   whole clusters read as zeroes (ZERO) when a backing file
 *                  could show through or the cluster held data; unallocated
 *                  clusters without a backing file stay so.  Subclusters
 *                  are not discarded one by one.
 *   discard, v2:   whole clusters become unallocated; with a backing file
 *                  nothing happens (it would show through).
 *   zeroes, v3:    whole clusters (subclusters with extended L2) read as
 *                  zeroes; the host cluster is kept unless unmapping is
 *                  allowed.
 *   zeroes, v2:    whole clusters become unallocated; with a backing file,
 *                  zeroes are written.
 * Partial units of write zeroes are written as zeroes.
 *
 * change_entries() applies this to the whole units in [start, end) of one
 * L2 table, leaving clusters with an allocation in flight alone.  Returns
 * the bytes handled from START, 0 when an allocation is in flight there
 * or a compressed cluster is zeroed in part (extended L2), or -errno.
 */
static int64_t change_entries(struct qcow2 *s, uint64_t start, uint64_t end, bool zero,
                              bool unmap)
{
    uint64_t cs = s->cluster_size;
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    uint64_t l1i = start >> span_bits;
    uint64_t table_end = (l1i + 1) << span_bits;
    if (end > table_end)
        end = table_end;
    for (struct qcow2_alloc *a = s->allocs; a; a = a->next)
        if (a->start < end && start < a->end)
            return 0;
    bool v3 = s->version >= 3;
    uint64_t l2_off = l1i < s->l1_size ? s->l1[l1i] & QCOW2_OFFSET_MASK : 0;
    if (!l2_off && !(v3 && (zero || s->backing)))
        return (int64_t)(end - start); /* unallocated stays unallocated */
    uint8_t *l2;
    int r = qcow2_l2_for_write(s, l1i, &l2);
    if (r < 0)
        return r;
    for (uint64_t g = start; g < end;) {
        uint64_t i = (g >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t c0 = g & ~(cs - 1), cend = c0 + cs < end ? c0 + cs : end;
        uint64_t e = qcow2_l2e_get(s, l2, i), bm = qcow2_l2e_bitmap(s, l2, i);
        uint64_t host = e & QCOW2_OFFSET_MASK;
        bool compressed = (e & QCOW2_OFLAG_COMPRESSED) != 0;
        bool has_data = compressed || host ||
                        (qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED));
        bool keep = !compressed && host && (e & QCOW2_OFLAG_COPIED) && zero && !unmap;
        uint64_t ne = e, nbm = bm;
        if (!v3) {
            ne = 0; /* v2: unallocated (the caller ruled out backing files) */
            keep = false;
        } else if (s->ext_l2 && zero && (g != c0 || cend != c0 + cs)) {
            /* Whole subclusters inside a cluster read as zeroes; the
             * image's last subcluster is whole up to the image's end. */
            uint32_t first = (uint32_t)((g - c0) / s->sc_size);
            uint32_t last = (uint32_t)((cend - c0 + (cend == s->size ? s->sc_size - 1 : 0)) /
                                       s->sc_size);
            uint32_t mask = (last == 32 ? 0xffffffffu : (1u << last) - 1) & ~((1u << first) - 1);
            if (compressed) {
                /* A compressed cluster has no subclusters: what is handled
                 * ends here, and the caller writes zeroes from here on. */
                end = g;
                break;
            }
            nbm = (uint64_t)((uint32_t)(bm >> 32) | mask) << 32 | ((uint32_t)bm & ~mask);
            keep = true;
        } else if (s->ext_l2) {
            if (!zero && !has_data && !s->backing && !(uint32_t)(bm >> 32)) {
                g = cend;
                continue;
            }
            ne = keep ? e : 0;
            nbm = (uint64_t)0xffffffffu << 32;
        } else {
            if (!zero && !has_data && !s->backing && !(e & QCOW2_OFLAG_ZERO)) {
                g = cend;
                continue;
            }
            ne = keep ? (e | QCOW2_OFLAG_ZERO) : QCOW2_OFLAG_ZERO;
        }
        if (ne != e || nbm != bm) {
            qcow2_l2e_set(s, l2, i, ne, nbm);
            qcow2_cache_dirty(&s->l2c, l2);
            if (!keep && has_data) {
                r = qcow2_release_entry(s, e);
                if (r < 0)
                    break;
            }
        }
        g = cend;
    }
    qcow2_cache_put(&s->l2c, l2);
    return r < 0 ? r : (int64_t)(end - start);
}

static void zero_write_done(struct vdisk_req *child, int ret)
{
    req_child_releases_parent(child, ret);
}

/* Writes zeroes over [off, off + len) through the write path. */
static int write_zero_bytes(struct vdisk_req *req, uint64_t off, uint64_t len)
{
    const uint8_t *zero = zero_buffer();
    if (!zero)
        return err_set(-ENOMEM, "out of memory");
    while (len) {
        uint64_t n = len < ZERO_BUF_SIZE ? len : ZERO_BUF_SIZE;
        struct iovec v = {(void *)zero, n};
        struct vdisk_req *c = req_new_child(req, req->dev, VDISK_OP_WRITE, off, n, &v, 1,
                                            req->flags & VDISK_REQ_FUA, zero_write_done, NULL);
        if (!c)
            return err_set(-ENOMEM, "out of memory");
        req_hold(req);
        req_submit(c);
        off += n;
        len -= n;
    }
    return 0;
}

#define DZ_ZERO  1u
#define DZ_UNMAP 2u
#define DZ_WIDEN 4u /* partial clusters at the edges may become zero clusters */
static int dz_work(struct vdisk_req *req);
static void dz_then(struct vdisk_req *req);
static void dz_finish(struct vdisk_req *req, int r);

static void qc_discard_or_zero(struct vdisk_req *req, bool zero)
{
    struct qcow2 *s = req->dev->priv;
    if (s->corrupt) {
        req_fail(req, -EIO, "the image is marked corrupt; writes are refused until it is "
                 "repaired (vdisk check -r all)");
        return;
    }
    uint64_t start = req->offset, end = req->offset + req->length;
    bool v2_backing = s->version < 3 && s->backing;
    if (v2_backing && !zero) {
        req_complete(req, 0); /* it would expose the backing file */
        return;
    }
    /* The unit that metadata can mark: subclusters for zeroes with extended
     * L2, clusters otherwise; none for zeroes on v2 over a backing file. */
    uint64_t unit = zero && s->ext_l2 ? s->sc_size : s->cluster_size;
    uint64_t mid_s = align_up(start, unit), mid_e = align_down(end, unit);
    if (end == s->size)
        mid_e = end; /* the image's last, short cluster counts as whole */
    if (v2_backing)
        mid_s = mid_e = end;
    if (zero && (req->flags & VDISK_REQ_NO_FALLBACK) && (start < mid_s || mid_e < end ||
                                                         mid_s >= mid_e)) {
        /* Partial clusters (or a v2 image over a backing file) take
         * written zeroes. */
        req_fail(req, -ENOTSUP, "write zeroes of %" PRIu64 " bytes at offset %" PRIu64 " "
                 "covers partial %s: they would be written as zeroes (no fallback asked)",
                 req->length, req->offset, s->ext_l2 ? "subclusters" : "clusters");
        return;
    }
    bool unmap = !zero || (req->flags & VDISK_REQ_MAY_UNMAP);
    /* Zeroes over part of a cluster whose rest reads zeroes already (this
     * image's zero or unallocated cluster over zeroes in the backing
     * chain): the whole cluster becomes a zero cluster, as QEMU makes it,
     * not a written one.  Decided on the worker (it reads tables). */
    bool widen = zero && !v2_backing && !s->ext_l2 && !s->data_file &&
                 (start < mid_s || mid_e < end);
    req_hold(req);
    struct qcow2_req *qr = qreq(req);
    qr->dz.start = mid_s;
    qr->dz.end = mid_e;
    qr->dz.done_to = mid_s;
    qr->dz.flags = (zero ? DZ_ZERO : 0) | (unmap ? DZ_UNMAP : 0) | (widen ? DZ_WIDEN : 0);
    if (mid_s < mid_e || widen)
        offload_req(s->offload, req, dz_work, dz_then); /* the tables */
    else
        dz_finish(req, 0);
}

/* [OFF, OFF + LEN) of the backing chain reads zeroes (past its end too). */
static bool backing_zero(struct qcow2 *s, uint64_t off, uint64_t len)
{
    uint64_t bsize = s->backing ? dev_size(s->backing) : 0;
    while (len && off < bsize) {
        struct vdisk_extent e;
        uint64_t n = bsize - off < len ? bsize - off : len;
        if (dev_block_status(s->backing, off, n, &e) < 0 || !(e.flags & VDISK_EXT_ZERO) ||
            e.length == 0)
            return false;
        n = e.length < n ? e.length : n;
        off += n;
        len -= n;
    }
    return true;
}

/* The cluster at U, of which [A, B) is to be zeroed, reads zeroes in the
 * rest: this image has it as a zero cluster, or unallocated over zeroes. */
static bool rest_reads_zero(struct qcow2 *s, uint64_t u, uint64_t a, uint64_t b)
{
    uint64_t cl = s->size - u < s->cluster_size ? s->size - u : s->cluster_size;
    struct qcow2_map m;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_lookup(s, u, cl, &m);
    pthread_mutex_unlock(&s->lock);
    if (r < 0 || m.len < cl)
        return false;
    if (m.type == QCOW2_ZERO)
        return true;
    return m.type == QCOW2_UNALLOCATED && backing_zero(s, u, a - u) &&
           backing_zero(s, b, u + cl - b);
}

/* DZ_WIDEN: the partial clusters at the request's edges that read zeroes
 * apart from the part zeroed join the metadata part. */
static void widen_edges(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    struct qcow2_req *qr = qreq(req);
    uint64_t cs = s->cluster_size, start = req->offset, end = req->offset + req->length;
    uint64_t hs = align_down(start, cs), ts = align_down(end, cs);
    uint64_t ms = qr->dz.start, me = qr->dz.end;
    if (ms > me) /* inside one cluster: no whole one between */
        me = ms;
    bool hp = start % cs != 0, tp = end % cs != 0 && end != s->size;
    bool same = hp && tp && hs == ts; /* one cluster holds both edges */
    bool head = hp && rest_reads_zero(s, hs, start, end < hs + cs ? end : hs + cs);
    bool tail = tp && (same ? head : rest_reads_zero(s, ts, start > ts ? start : ts, end));
    if (head)
        ms = hs;
    if (tail)
        me = ts + cs;
    if (me > s->size)
        me = s->size; /* (the image's last, short cluster) */
    if (ms < me && (head || tail)) {
        qr->dz.start = ms;
        qr->dz.end = me;
        qr->dz.done_to = ms;
    }
}

/* Under the lock, before the widened edges are marked: are their
 * clusters still zero or unallocated here (a write may have come since
 * widen_edges looked)?  Else the metadata part shrinks back to the whole
 * clusters inside the request. */
static void widened_still_zero(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    struct qcow2_req *qr = qreq(req);
    uint64_t cs = s->cluster_size, start = req->offset, end = req->offset + req->length;
    uint64_t edge[2] = {qr->dz.start < start ? qr->dz.start : UINT64_MAX,
                        qr->dz.end > end ? align_down(qr->dz.end - 1, cs) : UINT64_MAX};
    bool ok = true;
    for (int i = 0; ok && i < 2; i++) {
        struct qcow2_map m;
        if (edge[i] == UINT64_MAX)
            continue;
        uint64_t cl = s->size - edge[i] < cs ? s->size - edge[i] : cs;
        ok = qcow2_lookup(s, edge[i], cl, &m) == 0 && m.len >= cl &&
             (m.type == QCOW2_ZERO || m.type == QCOW2_UNALLOCATED);
    }
    if (!ok) {
        uint64_t ms = align_up(start, cs), me = end == s->size ? end : align_down(end, cs);
        qr->dz.start = ms;
        qr->dz.end = me > ms ? me : ms;
        qr->dz.done_to = ms;
    }
}

/* On the offload thread: the metadata part, whole units in [mid_s, mid_e). */
static int dz_work(struct vdisk_req *req)
{
    struct qcow2 *s = req->dev->priv;
    struct qcow2_req *qr = qreq(req);
    bool zero = qr->dz.flags & DZ_ZERO, unmap = qr->dz.flags & DZ_UNMAP;
    if (qr->dz.flags & DZ_WIDEN) {
        widen_edges(req);
        if (qr->dz.start >= qr->dz.end)
            return 0; /* nothing whole: dz_finish writes the zeroes */
    }
    uint64_t mid_e = qr->dz.end;
    int r = 0;
    /* A raw data file stays the disk's image: zeroes there first (QEMU's
     * order), for discards too. */
    if (s->data_raw && s->data_file)
        r = dev_write_zeroes(s->data_file, qr->dz.start, mid_e - qr->dz.start,
                             unmap ? VDISK_REQ_MAY_UNMAP : 0);
    if (r < 0) {
        fail_msg(req, r);
        return r;
    }
    prefetch_for(s, qr->dz.start, mid_e, 1);
    pthread_mutex_lock(&s->lock);
    if (qr->dz.flags & DZ_WIDEN) {
        widened_still_zero(req);
        mid_e = qr->dz.end;
    }
    if (s->lazy && !s->dirty_on_disk) {
        r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, true);
        if (r == 0)
            s->dirty_on_disk = true;
    }
    for (uint64_t g = qr->dz.start; r == 0 && g < mid_e;) {
        int64_t n = change_entries(s, g, mid_e, zero, unmap);
        if (n < 0)
            r = (int)n;
        if (n <= 0)
            break; /* an error, or an allocation in flight here */
        g += (uint64_t)n;
        qr->dz.done_to = g;
    }
    pthread_mutex_unlock(&s->lock);
    /* Clusters of a (not raw) data file have no refcounts: what the L2
     * entries let go of is discarded there now, as QEMU does, since a
     * write after this request may take the same place again.  Before
     * the tables reach the disk, a crash shows the old data or zeroes,
     * both allowed for an unfinished discard. */
    if (r == 0 && unmap && !s->data_raw && s->data_file && s->discard_passthrough &&
        qr->dz.done_to > qr->dz.start)
        r = dev_discard(s->data_file, qr->dz.start, qr->dz.done_to - qr->dz.start);
    if (r < 0)
        fail_msg(req, r);
    return r;
}

static void dz_then(struct vdisk_req *req)
{
    dz_finish(req, req->result);
}

/* Back on the queue's thread: the edges, and what metadata could not do, as
 * written zeroes. */
static void dz_finish(struct vdisk_req *req, int r)
{
    const struct qcow2_req *qr = qreq(req);
    bool zero = qr->dz.flags & DZ_ZERO;
    uint64_t start = req->offset, end = req->offset + req->length;
    uint64_t mid_s = qr->dz.start, mid_e = qr->dz.end, done_to = qr->dz.done_to;
    if (r < 0) {
        /* dz_work recorded the error and its message. */
    } else if (zero && (req->flags & VDISK_REQ_NO_FALLBACK) && done_to < end) {
        /* (qc_discard_or_zero ruled out edges.)  An allocation in flight
         * or a compressed cluster: zeroes would be written. */
        r = req_set_error(req, -ENOTSUP, "write zeroes: a part of the range would be written "
                          "as zeroes (an allocation in flight, or a compressed cluster; no "
                          "fallback asked)");
    } else if (zero) {
        /* The edges, and what metadata could not do, as written zeroes. */
        if (mid_s >= mid_e || done_to <= start) {
            r = write_zero_bytes(req, start, req->length);
        } else {
            /* (never outside the request: widened edges are whole zero
             * clusters, or were not marked at all) */
            if (start < mid_s)
                r = write_zero_bytes(req, start, mid_s - start);
            if (r == 0 && done_to < end)
                r = write_zero_bytes(req, done_to, end - done_to);
        }
        if (r < 0)
            fail_msg(req, r);
    }
    req_release(req, 0);
}

void qcow2_submit(struct vdisk_req *req)
{
    struct qcow2 *bs = req->dev->priv;
    if (qcow2_has_data_file(bs) && !bs->data_file && req->op != VDISK_OP_FLUSH) {
        req_fail(req, -EIO, "the image's external data file is not open");
        return;
    }
    if (bs->bm_live && req->op != VDISK_OP_READ && req->op != VDISK_OP_FLUSH &&
        !(req->flags & REQ_VMSTATE)) /* (the VM state is no part of the disk) */
        qcow2_bitmaps_mark(bs, req->offset, req->length); /* dirty bitmaps */
    switch (req->op) {
    case VDISK_OP_READ:
        qc_read(req);
        return;
    case VDISK_OP_WRITE:
        qc_write(req);
        return;
    case VDISK_OP_FLUSH:
        qc_flush(req);
        return;
    case VDISK_OP_DISCARD:
        qc_discard_or_zero(req, false);
        return;
    case VDISK_OP_WRITE_ZEROES:
        qc_discard_or_zero(req, true);
        return;
    }
    req_fail(req, -EINVAL, "unknown operation");
}

/* ---- Compressed writes ---------------------------------------------------- */

/*
 * Each thread keeps its compression contexts from one cluster to the next:
 * making a context afresh (tables allocated and cleared) cost several times
 * what compressing a 64 KiB cluster costs.  A context is used by its thread
 * alone, and freed when the thread ends.  The output is the same as with a
 * new context (qcow2_compress).
 */
struct compress_ctx {
    ZSTD_CCtx *zstd;
    z_stream z;
    bool z_ready;
};

static pthread_key_t compress_key;
static bool compress_key_ok;
static pthread_once_t compress_once = PTHREAD_ONCE_INIT;

static void compress_ctx_free(void *arg)
{
    struct compress_ctx *x = arg;
    ZSTD_freeCCtx(x->zstd);
    if (x->z_ready)
        deflateEnd(&x->z);
    free(x);
}

static void compress_key_make(void)
{
    compress_key_ok = pthread_key_create(&compress_key, compress_ctx_free) == 0;
}

/* This thread's contexts, or NULL (then qcow2_compress does the work). */
static struct compress_ctx *compress_ctx(void)
{
    pthread_once(&compress_once, compress_key_make);
    if (!compress_key_ok)
        return NULL;
    struct compress_ctx *x = pthread_getspecific(compress_key);
    if (x)
        return x;
    x = calloc(1, sizeof *x);
    if (x && pthread_setspecific(compress_key, x) != 0) {
        free(x);
        x = NULL;
    }
    return x;
}

/* As qcow2_compress: the compressed length, 0 when it does not fit in
 * DLEN bytes, or -errno. */
static long compress_reusing(int type, const uint8_t *src, size_t slen, uint8_t *dst,
                             size_t dlen)
{
    struct compress_ctx *x = compress_ctx();
    if (!x)
        return qcow2_compress(type, src, slen, dst, dlen);
    if (type == QCOW2_COMPRESS_ZSTD) {
        if (!x->zstd && !(x->zstd = ZSTD_createCCtx()))
            return qcow2_compress(type, src, slen, dst, dlen);
        size_t r = ZSTD_compressCCtx(x->zstd, dst, dlen, src, slen, ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
        return (long)r;
    }
    /* Raw deflate with a 4 KiB window, as QEMU writes it. */
    if (!x->z_ready) {
        if (deflateInit2(&x->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return qcow2_compress(type, src, slen, dst, dlen);
        x->z_ready = true;
    } else if (deflateReset(&x->z) != Z_OK) {
        return -EIO;
    }
    x->z.next_in = (Bytef *)src;
    x->z.avail_in = (uInt)slen;
    x->z.next_out = dst;
    x->z.avail_out = (uInt)dlen;
    int r = deflate(&x->z, Z_FINISH);
    if (r != Z_STREAM_END)
        return 0; /* did not fit */
    return (long)(dlen - x->z.avail_out);
}

int qcow2_compress_cluster(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off,
                           void *out, size_t out_size, size_t *out_len)
{
    struct qcow2 *s = dev->priv;
    uint64_t cs = s->cluster_size;
    if (qcow2_encrypted(s))
        return err_set(-ENOTSUP, "%s: compression is not supported for encrypted images",
                       dev->filename);
    if (off % cs || len > cs || len == 0 || (len < cs && off + len != s->size && off != 0))
        return err_set(-EINVAL, "%s: a compressed write must be one whole cluster (%" PRIu64
                       " bytes at a multiple of it), not %zu bytes at offset %" PRIu64,
                       dev->filename, cs, len, off);
    /* A short last cluster is compressed as a whole one, zero-padded. */
    const uint8_t *in = buf;
    uint8_t *padded = NULL;
    if (len < cs) {
        padded = calloc(1, cs);
        if (!padded)
            return err_set(-ENOMEM, "out of memory");
        memcpy(padded, buf, len);
        in = padded;
    }
    size_t limit = out_size < cs - 1 ? out_size : cs - 1;
    long clen = compress_reusing(s->compression_type, in, cs, out, limit);
    free(padded);
    if (clen < 0)
        return err_set((int)clen, "%s: compression failed", dev->filename);
    *out_len = (size_t)clen;
    return 0;
}

/* Stores N compressed clusters, the guest clusters at OFF, OFF + cluster, ...:
 * PIECES[i] holds the compressed bytes of the i-th.  The pieces are packed
 * one after the other (as one piece at a time would place them), written
 * with one request per contiguous run of the file, and only then do the L2
 * entries point at them: a crash before that leaves the old data (and at
 * most leaked clusters).  On an error, the clusters whose entries were not
 * set yet keep their old data, and their pieces are freed. */
int qcow2_write_compressed(struct vdisk_dev *dev, const struct iovec *pieces, size_t n,
                           uint64_t off)
{
    struct qcow2 *s = dev->priv;
    uint64_t cs = s->cluster_size;
    if (qcow2_encrypted(s))
        return err_set(-ENOTSUP, "%s: compression is not supported for encrypted images",
                       dev->filename);
    if (qcow2_has_data_file(s))
        return err_set(-ENOTSUP, "error while writing at byte %" PRIu64 ": Operation not "
                       "supported", off); /* (qemu-img convert -c's words) */
    if (n == 0)
        return 0;
    if (off % cs)
        return err_set(-EINVAL, "%s: compressed clusters must start at a multiple of the "
                       "cluster size (%" PRIu64 " bytes), not at offset %" PRIu64,
                       dev->filename, cs, off);
    if (off >= s->size || n > (s->size - off + cs - 1) / cs)
        return err_set(-EINVAL, "%s: %zu compressed clusters at offset %" PRIu64 " run past "
                       "the end of the image (%" PRIu64 " bytes)", dev->filename, n, off,
                       s->size);
    for (size_t k = 0; k < n; k++)
        if (pieces[k].iov_len == 0 || pieces[k].iov_len >= cs)
            return err_set(-EINVAL, "%s: %zu compressed bytes for offset %" PRIu64 " do not "
                           "make a compressed cluster", dev->filename, pieces[k].iov_len,
                           off + k * cs);
    if (s->corrupt)
        return err_set(-EIO, "%s: the image is marked corrupt; writes are refused",
                       dev->filename);
    if (s->bm_live)
        qcow2_bitmaps_mark(s, off, n * cs); /* dirty bitmaps */
    uint64_t *host = calloc(n, sizeof *host);
    if (!host)
        return err_set(-ENOMEM, "out of memory");
    /* Reserve the guest clusters and byte ranges in the file. */
    struct qcow2_alloc range = {.start = off, .end = off + n * cs};
    int r = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool busy = false;
        for (struct qcow2_alloc *a = s->allocs; a; a = a->next)
            busy |= a->start < range.end && range.start < a->end;
        if (!busy)
            break;
        pthread_mutex_unlock(&s->lock);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL); /* a write to the same clusters is finishing */
    }
    if (s->lazy && !s->dirty_on_disk) {
        r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, true);
        if (r == 0)
            s->dirty_on_disk = true;
    }
    /* The L2 tables first, so that a new table does not split the run of
     * packed clusters: a piece can then span into the next cluster. */
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    for (uint64_t t = off >> span_bits; r == 0 && t <= (off + (n - 1) * cs) >> span_bits; t++) {
        uint8_t *l2;
        r = qcow2_l2_for_write(s, t, &l2);
        if (r == 0)
            qcow2_cache_put(&s->l2c, l2);
    }
    size_t nalloc = 0;
    for (; r == 0 && nalloc < n; nalloc++) {
        r = qcow2_alloc_bytes(s, (uint64_t)pieces[nalloc].iov_len, &host[nalloc]);
        if (r < 0)
            break;
    }
    if (r == 0) {
        range.next = s->allocs;
        s->allocs = &range;
    }
    pthread_mutex_unlock(&s->lock);
    /* One write per run of pieces that lie one after the other. */
    for (size_t k = 0; r == 0 && k < n;) {
        size_t e = k + 1;
        while (e < n && e - k < 1024 && host[e] == host[e - 1] + pieces[e - 1].iov_len)
            e++;
        r = dev_pwritev(s->file, &pieces[k], (int)(e - k), host[k], 0);
        k = e;
    }
    /* Point the L2 entries at them. */
    pthread_mutex_lock(&s->lock);
    size_t set = 0; /* pieces that an entry points at */
    for (size_t k = 0; r == 0 && k < n; k++) {
        uint64_t o = off + k * cs;
        uint8_t *l2;
        r = qcow2_l2_for_write(s, o >> span_bits, &l2);
        if (r < 0)
            break;
        uint64_t i = (o >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t old = qcow2_l2e_get(s, l2, i);
        uint64_t sectors = ((host[k] & 511) + (uint64_t)pieces[k].iov_len + 511) / 512 - 1;
        uint64_t e = QCOW2_OFLAG_COMPRESSED | (sectors << s->csize_shift) | host[k];
        qcow2_l2e_set(s, l2, i, e, 0);
        qcow2_cache_dirty(&s->l2c, l2);
        qcow2_cache_put(&s->l2c, l2);
        set = k + 1;
        if (old & (QCOW2_OFFSET_MASK | QCOW2_OFLAG_COMPRESSED))
            r = qcow2_release_entry(s, old);
    }
    if (r < 0) {
        /* The pieces no entry points at go back; a piece may span two
         * clusters, and each took a reference. */
        for (size_t k = set; k < nalloc; k++)
            for (uint64_t c = host[k] & ~(cs - 1); c < host[k] + pieces[k].iov_len; c += cs)
                qcow2_free_later(s, c, 1);
    }
    for (struct qcow2_alloc **pp = &s->allocs; *pp; pp = &(*pp)->next) {
        if (*pp == &range) {
            *pp = range.next;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(host);
    return r;
}
