/* SPDX-License-Identifier: MIT */
/*
 * formats/rbd/rbd.c: the rbd protocol: an image in a Ceph cluster, through
 * librbd, as the storage under a format (or a raw image itself).
 *
 * Names: rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE...] (name.c).  The
 * cluster is found from conf=PATH, else Ceph's own search ($CEPH_CONF,
 * /etc/ceph/ceph.conf ...), as the user id=USER (client.admin without).
 * Other options go to the Ceph client as they are (mon_host=, keyring= ...).
 * A name that an image names as its backing file may not name local files
 * or Ceph options: only POOL, IMAGE, SNAP and id= are taken from it.
 *
 * Requests go to librbd's asynchronous calls straight from the queue's
 * thread, which never waits for the cluster; librbd answers on a thread of
 * its own, which hands the request back to its queue (req_resume_later,
 * the queue's eventfd), where it completes.  No thread is made per request.
 *
 *   read          rbd_aio_readv (past the image's end: zeroes)
 *   write         rbd_aio_writev; FUA: a flush follows
 *   flush         rbd_aio_flush
 *   discard       rbd_aio_discard
 *   write_zeroes  rbd_aio_write_zeroes, thick unless MAY_UNMAP (as QEMU)
 *   block status  rbd_diff_iterate2 with the parent included: what no
 *                 object holds reads as zeroes
 *
 * Under a format (qcow2 in a pool) the image grows: a write (or zeroes)
 * past its end resizes it first, on the device's worker thread; reads past
 * it see zeroes.
 *
 * Timeouts.  The Ceph client waits for ever by default; here the cluster
 * connection (client_mount_timeout) and every request to a monitor or an
 * OSD (rados_mon_op_timeout, rados_osd_op_timeout) give up after 30
 * seconds, or the open option timeout=SECONDS (1 to 3600), and the request
 * fails with ETIMEDOUT.  A name's own option (e.g.
 * :rados_osd_op_timeout=5) overrides that.  A flush that fails leaves the
 * device failing every later flush (the core's fsync-gate rule), so no
 * write a flush did not cover is taken for durable.
 *
 * Caching: librbd's cache (rbd_cache) is on for the writeback and unsafe
 * cache modes, and off for none, writethrough and directsync, as in QEMU.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbd_internal.h"
#include "rbd_syms.h"

#define DEFAULT_TIMEOUT_S 30
#define MAX_TIMEOUT_S     3600
/* Block status without fast-diff lists objects: at most this many a call. */
#define STATUS_OBJECTS    256

struct rbd_dev {
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    uint64_t features;
    uint64_t obj_size;
    bool fast_diff;            /* an object map with valid fast-diff */
    pthread_mutex_t lock;      /* the worker, growth, the snapshot list */
    struct offload *worker;    /* for growth: made on first use */
    rbd_snap_info_t *snaps;    /* the list snapshot_count read last */
    int nsnaps;
    char *shown_name;          /* as qemu-img shows it (json:{...}) */
};

/* Per-request state. */
struct rbd_req {
    int64_t ret;               /* librbd's answer */
    bool flushing;             /* a FUA write's flush is under way */
};

static const char *rbd_errstr(int r)
{
    return strerror(r < 0 ? -r : r);
}

/* ---- Connecting ------------------------------------------------------------ */

static void cluster_close(rados_t cl, rados_ioctx_t io)
{
    rados_ioctx_destroy(io);
    rados_shutdown(cl);
}

static int conf_set(rados_t cl, const char *filename, const char *key, const char *value)
{
    int r = rados_conf_set(cl, key, value);
    if (r == -ENOENT)
        return err_set(-EINVAL, "%s: unknown Ceph option '%s'", filename, key);
    if (r < 0)
        return err_set(r, "%s: Ceph option %s=%s: %s", filename, key, value, rbd_errstr(r));
    return 0;
}

/*
 * Connects to the cluster that N names and opens its pool (and namespace).
 * FROM_IMAGE: the name came from an image's metadata.  Returns 0, or -errno
 * with a message (nothing left open).
 */
static int cluster_connect(const struct rbd_name *n, const char *filename, bool from_image,
                           uint64_t timeout_s, bool cache, rados_t *clp, rados_ioctx_t *iop)
{
    if (from_image) {
        if (n->conf)
            return err_set(-EPERM, "%s: a backing file name may not name a Ceph "
                           "configuration file (conf=)", filename);
        /* Any Ceph option may name a local file (keyring=, log_file=,
         * admin_socket= ...) or a secret: none is taken from an image. */
        if (n->nopts)
            return err_set(-EPERM, "%s: a backing file name may not set the Ceph "
                           "option '%s'", filename, n->opts[0].key);
    }
    rados_t cl;
    int r = rados_create(&cl, n->user);
    if (r < 0)
        return err_set(r, "%s: could not make a Ceph client: %s", filename, rbd_errstr(r));
    if (n->conf) {
        r = rados_conf_read_file(cl, n->conf);
        if (r < 0) {
            rados_shutdown(cl);
            return err_set(r, "%s: could not read the Ceph configuration file '%s': %s",
                           filename, n->conf, rbd_errstr(r));
        }
    } else {
        (void)rados_conf_read_file(cl, NULL); /* none found: options may say all */
    }
    r = rados_conf_parse_env(cl, NULL);
    char t[24];
    snprintf(t, sizeof t, "%" PRIu64, timeout_s);
    static const char *const timeouts[] = {"client_mount_timeout", "rados_mon_op_timeout",
                                           "rados_osd_op_timeout"};
    for (size_t i = 0; r == 0 && i < sizeof timeouts / sizeof timeouts[0]; i++)
        r = conf_set(cl, filename, timeouts[i], t);
    if (r == 0)
        r = conf_set(cl, filename, "rbd_cache", cache ? "true" : "false");
    for (unsigned i = 0; r == 0 && i < n->nopts; i++)
        r = conf_set(cl, filename, n->opts[i].key, n->opts[i].value);
    if (r < 0) {
        rados_shutdown(cl);
        return r;
    }
    r = rados_connect(cl);
    if (r < 0) {
        char waited[32] = "?";
        rados_conf_get(cl, "client_mount_timeout", waited, sizeof waited);
        rados_shutdown(cl);
        const char *user = n->user ? n->user : "admin";
        if (r == -ETIMEDOUT)
            return err_set(r, "%s: could not connect to the Ceph cluster: no monitor answered "
                           "within %s seconds", filename, waited);
        if (r == -EACCES || r == -EPERM)
            return err_set(r, "%s: the Ceph cluster refused the user client.%s: %s", filename,
                           user, rbd_errstr(r));
        if (r == -ENOENT)
            return err_set(r, "%s: could not connect to the Ceph cluster as client.%s: no "
                           "key for that user (keyring) was found", filename, user);
        return err_set(r, "%s: could not connect to the Ceph cluster: %s", filename,
                       rbd_errstr(r));
    }
    rados_ioctx_t io;
    r = rados_ioctx_create(cl, n->pool, &io);
    if (r < 0) {
        rados_shutdown(cl);
        if (r == -ENOENT)
            return err_set(r, "%s: there is no pool '%s' in the Ceph cluster", filename,
                           n->pool);
        return err_set(r, "%s: could not open the pool '%s': %s", filename, n->pool,
                       rbd_errstr(r));
    }
    if (n->ns) {
        bool exists = false;
        r = rbd_namespace_exists(io, n->ns, &exists);
        if (r < 0 || !exists) {
            cluster_close(cl, io);
            return err_set(r < 0 ? r : -ENOENT, "%s: there is no namespace '%s' in the pool "
                           "'%s'%s%s", filename, n->ns, n->pool, r < 0 ? ": " : "",
                           r < 0 ? rbd_errstr(r) : "");
        }
        rados_ioctx_set_namespace(io, n->ns);
    }
    *clp = cl;
    *iop = io;
    return 0;
}

static int take_timeout(struct opt_set *os, uint64_t *timeout)
{
    *timeout = DEFAULT_TIMEOUT_S;
    const char *v = os ? opt_take(os, "timeout") : NULL;
    return v ? opt_uint("timeout", v, 1, MAX_TIMEOUT_S, timeout) : 0;
}

/* ---- Open and close -------------------------------------------------------- */

static void rbd_close_dev(struct vdisk_dev *dev);

static int rbd_open_dev(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)file;
    uint64_t timeout;
    int r = rbd_lib_load(dev->filename);
    if (r == 0)
        r = take_timeout(os, &timeout);
    if (r < 0)
        return r;
    struct rbd_name n;
    r = rbd_name_parse(dev->filename, &n);
    if (r < 0)
        return r;
    if (n.snap && !dev->params.read_only) {
        r = err_set(-EROFS, "%s: an RBD snapshot is read-only (open it read-only)",
                    dev->filename);
        goto out;
    }
    struct rbd_dev *s = calloc(1, sizeof *s);
    if (!s) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    bool cache = dev->params.cache == VDISK_CACHE_WRITEBACK ||
                 dev->params.cache == VDISK_CACHE_UNSAFE;
    r = cluster_connect(&n, dev->filename, dev->params.chain != NULL, timeout, cache,
                        &s->cluster, &s->io);
    if (r < 0) {
        free(s);
        goto out;
    }
    r = dev->params.read_only ? rbd_open_read_only(s->io, n.image, &s->image, n.snap)
                              : rbd_open(s->io, n.image, &s->image, NULL);
    if (r < 0) {
        cluster_close(s->cluster, s->io);
        free(s);
        if (r == -ENOENT && n.snap)
            r = err_set(r, "%s: there is no image '%s' with a snapshot '%s' in the pool '%s'",
                        dev->filename, n.image, n.snap, n.pool);
        else if (r == -ENOENT)
            r = err_set(r, "%s: there is no image '%s' in the pool '%s'", dev->filename,
                        n.image, n.pool);
        else
            r = err_set(r, "%s: could not open the RBD image: %s", dev->filename,
                        rbd_errstr(r));
        goto out;
    }
    pthread_mutex_init(&s->lock, NULL);
    dev->priv = s;
    s->shown_name = rbd_name_json(&n, "raw"); /* a raw image is this device */
    rbd_image_info_t st;
    uint64_t flags = 0;
    if ((r = rbd_stat(s->image, &st, sizeof st)) < 0 ||
        (r = rbd_get_features(s->image, &s->features)) < 0 ||
        (r = rbd_get_flags(s->image, &flags)) < 0) {
        r = err_set(r, "%s: could not read the RBD image's properties: %s", dev->filename,
                    rbd_errstr(r));
        rbd_close_dev(dev);
        goto out;
    }
    s->obj_size = st.obj_size ? st.obj_size : 1u << 22;
    s->fast_diff = (s->features & RBD_FEATURE_FAST_DIFF) && !(flags & RBD_FLAG_FAST_DIFF_INVALID);
    dev->size = st.size;
    dev->block_size = 512;
    dev->align = 1;
    dev->caps = VDISK_CAN_FLUSH;
    if (!dev->params.read_only)
        dev->caps |= VDISK_CAN_WRITE | VDISK_CAN_DISCARD | VDISK_CAN_WRITE_ZEROES |
                     VDISK_CAN_ZERO_UNMAP;
    r = 0;
out:
    rbd_name_free(&n);
    return r;
}

static void free_snaps(struct rbd_dev *s)
{
    if (s->snaps) {
        rbd_snap_list_end(s->snaps);
        free(s->snaps);
    }
    s->snaps = NULL;
    s->nsnaps = 0;
}

static void rbd_close_dev(struct vdisk_dev *dev)
{
    struct rbd_dev *s = dev->priv;
    if (!s)
        return;
    if (s->worker)
        offload_free(s->worker);
    rbd_close(s->image);
    cluster_close(s->cluster, s->io);
    free_snaps(s);
    free(s->shown_name);
    pthread_mutex_destroy(&s->lock);
    free(s);
    dev->priv = NULL;
}

/* ---- Requests -------------------------------------------------------------- */

static void answered(rbd_completion_t c, void *arg);

static void finish(struct vdisk_req *req)
{
    struct rbd_req *st = req_state(req);
    int64_t ret = st->ret;
    if (ret < 0) {
        req_fail(req, (int)ret, "%s of %" PRIu64 " bytes at offset %" PRIu64 "%s: %s%s",
                 op_name(req->op), req->length, req->offset,
                 st->flushing ? " (its flush)" : "", rbd_errstr((int)ret),
                 ret == -ETIMEDOUT ? " (the Ceph cluster did not answer in time)" : "");
        return;
    }
    if (req->op == VDISK_OP_READ && (uint64_t)ret < req->length)
        iov_memset(req->iov, req->iovcnt, (size_t)ret, 0, req->length - (uint64_t)ret);
    if (req->op == VDISK_OP_WRITE && (req->flags & VDISK_REQ_FUA) && !st->flushing) {
        struct rbd_dev *s = req->dev->priv;
        st->flushing = true;
        rbd_completion_t c;
        int r = rbd_aio_create_completion(req, answered, &c);
        if (r == 0 && (r = rbd_aio_flush(s->image, c)) < 0)
            rbd_aio_release(c);
        if (r < 0) {
            st->ret = r;
            finish(req);
        }
        return;
    }
    req_complete(req, 0);
}

/* librbd's thread: the request goes back to its queue. */
static void answered(rbd_completion_t c, void *arg)
{
    struct vdisk_req *req = arg;
    struct rbd_req *st = req_state(req);
    st->ret = rbd_aio_get_return_value(c);
    rbd_aio_release(c);
    req_resume_later(req, finish, NULL);
}

/* Issues REQ to librbd, over the image's first SIZE bytes. */
static void issue(struct vdisk_req *req, uint64_t size)
{
    struct rbd_dev *s = req->dev->priv;
    struct rbd_req *st = req_state(req);
    uint64_t off = req->offset, len = req->length;
    if (req->op != VDISK_OP_FLUSH && req->op != VDISK_OP_WRITE && off + len > size) {
        /* Past the end of a growing image: zeroes to read, nothing to drop. */
        len = off < size ? size - off : 0;
        if (len == 0) {
            if (req->op == VDISK_OP_READ)
                iov_memset(req->iov, req->iovcnt, 0, 0, req->length);
            req_complete(req, 0);
            return;
        }
    }
    rbd_completion_t c;
    int r = rbd_aio_create_completion(req, answered, &c);
    if (r < 0) {
        req_fail(req, r, "could not start a request: %s", rbd_errstr(r));
        return;
    }
    switch (req->op) {
    case VDISK_OP_READ:
        if (len < req->length) {
            /* The part past the end reads as zeroes: finish() fills
             * whatever librbd did not. */
            struct iovec part[REQ_MAX_IOV];
            int cnt = iov_slice(req->iov, req->iovcnt, 0, (size_t)len, part);
            r = rbd_aio_readv(s->image, part, cnt, off, c);
        } else {
            r = rbd_aio_readv(s->image, req->iov, req->iovcnt, off, c);
        }
        break;
    case VDISK_OP_WRITE:
        r = rbd_aio_writev(s->image, req->iov, req->iovcnt, off, c);
        break;
    case VDISK_OP_FLUSH:
        r = rbd_aio_flush(s->image, c);
        break;
    case VDISK_OP_DISCARD:
        r = rbd_aio_discard(s->image, off, len, c);
        break;
    case VDISK_OP_WRITE_ZEROES:
        r = rbd_aio_write_zeroes(s->image, off, (size_t)len, c,
                                 (req->flags & VDISK_REQ_MAY_UNMAP)
                                     ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
        break;
    default:
        r = -EINVAL;
    }
    if (r < 0) {
        rbd_aio_release(c);
        st->ret = r;
        finish(req);
    }
}

/* The worker: makes the image long enough for REQ. */
static int grow(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    struct rbd_dev *s = dev->priv;
    uint64_t end = req->offset + req->length;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (dev_size(dev) < end) {
        r = rbd_resize(s->image, end);
        if (r == 0)
            dev_size_grow(dev, end);
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return req_errorf(req, r, "could not grow the RBD image to %" PRIu64 " bytes: %s",
                          end, rbd_errstr(r));
    return 0;
}

static void grown(struct vdisk_req *req)
{
    if (req->result < 0) {
        req_complete(req, req->result);
        return;
    }
    issue(req, dev_size(req->dev));
}

static void rbd_submit(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    struct rbd_dev *s = dev->priv;
    uint64_t size = dev_size(dev);
    if ((req->op == VDISK_OP_WRITE || req->op == VDISK_OP_WRITE_ZEROES) &&
        req->offset + req->length > size) {
        pthread_mutex_lock(&s->lock);
        if (!s->worker)
            s->worker = offload_new();
        struct offload *w = s->worker;
        pthread_mutex_unlock(&s->lock);
        if (!w) {
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        offload_req(w, req, grow, grown);
        return;
    }
    issue(req, size);
}

/* ---- Block status ---------------------------------------------------------- */

struct diff_walk {
    uint64_t off;              /* where the caller asked */
    uint64_t start, end;       /* the run of data found so far (end 0: none) */
    bool hole_first;           /* the first extent starts later: a hole first */
};

#define WALK_STOP (-1000001)

static int diff_extent(uint64_t off, size_t len, int exists, void *arg)
{
    struct diff_walk *w = arg;
    if (!exists)
        return w->end ? WALK_STOP : 0;
    if (!w->end) {
        if (off > w->off) {
            w->start = w->off;
            w->end = off;
            w->hole_first = true;
            return WALK_STOP;
        }
        w->start = w->off;
        w->end = off + len;
        return 0;
    }
    if (off != w->end)
        return WALK_STOP;
    w->end = off + len;
    return 0;
}

static int rbd_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                            struct vdisk_extent *ext)
{
    struct rbd_dev *s = dev->priv;
    uint64_t size = dev_size(dev);
    if (off >= size) {
        ext->length = len;
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED;
        return 0;
    }
    if (len > size - off)
        len = size - off;
    if (!s->fast_diff && len > (uint64_t)STATUS_OBJECTS * s->obj_size)
        len = (uint64_t)STATUS_OBJECTS * s->obj_size;
    struct diff_walk w = {.off = off};
    int r = rbd_diff_iterate2(s->image, NULL, off, len, 1, s->fast_diff ? 1 : 0, diff_extent, &w);
    if (r < 0 && r != WALK_STOP)
        return err_set(r, "%s: could not read the RBD image's allocation at offset %" PRIu64
                       ": %s", dev->filename, off, rbd_errstr(r));
    /* As QEMU, the protocol layer holds every byte (at its own offset);
     * what no object holds (nor a parent's) reads as zeroes. */
    ext->host_file = dev->filename;
    ext->host_offset = off;
    if (!w.end || w.hole_first) {
        ext->length = w.end ? w.end - off : len;
        ext->flags = VDISK_EXT_ZERO | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
    } else {
        uint64_t end = w.end < off + len ? w.end : off + len;
        ext->length = end - off;
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED | VDISK_EXT_OFFSET;
    }
    return 0;
}

/* ---- Whole-image operations ----------------------------------------------- */

static int rbd_truncate_dev(struct vdisk_dev *dev, uint64_t size)
{
    struct rbd_dev *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    int r = rbd_resize(s->image, size);
    if (r == 0)
        __atomic_store_n(&dev->size, size, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return err_set(r, "%s: could not resize the RBD image to %" PRIu64 " bytes: %s",
                       dev->filename, size, rbd_errstr(r));
    return 0;
}

static int rbd_snapshot_count(struct vdisk_dev *dev)
{
    struct rbd_dev *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    free_snaps(s);
    int max = 16, r;
    for (;;) {
        s->snaps = calloc((size_t)max, sizeof *s->snaps);
        if (!s->snaps) {
            r = -ENOMEM;
            break;
        }
        r = rbd_snap_list(s->image, s->snaps, &max);
        if (r != -ERANGE)
            break;
        free(s->snaps);
        s->snaps = NULL;
        if (max > 1 << 20) {
            r = -EFBIG;
            break;
        }
    }
    if (r < 0) {
        free(s->snaps);
        s->snaps = NULL;
        pthread_mutex_unlock(&s->lock);
        return err_set(r, "%s: could not list the RBD image's snapshots: %s", dev->filename,
                       rbd_errstr(r));
    }
    s->nsnaps = r;
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int rbd_snapshot_get(struct vdisk_dev *dev, unsigned index, struct vdisk_snapshot *sn)
{
    struct rbd_dev *s = dev->priv;
    if (index >= (unsigned)s->nsnaps)
        return -ENOENT;
    /* As QEMU: the name is the id too, the image's size then is shown as
     * the VM state's, and the rest is zero. */
    sn->id = s->snaps[index].name;
    sn->name = s->snaps[index].name;
    sn->vm_state_size = s->snaps[index].size;
    sn->disk_size = s->snaps[index].size;
    sn->has_icount = true;
    return 0;
}

static char *rbd_shown_name(struct vdisk_dev *dev, const char *format)
{
    struct rbd_name n;
    if (rbd_name_parse(dev->filename, &n) < 0)
        return NULL;
    char *shown = rbd_name_json(&n, format);
    rbd_name_free(&n);
    return shown;
}

static void rbd_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    struct rbd_dev *s = dev->priv;
    if (s->shown_name)
        info->filename = s->shown_name;
    info->cluster_size = (uint32_t)s->obj_size;
}

static int rbd_snapshot_op(struct vdisk_dev *dev, enum snapshot_op op, const char *name)
{
    struct rbd_dev *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    int r = -EINVAL;
    const char *what = "";
    switch (op) {
    case SNAPSHOT_CREATE:
        what = "create";
        r = rbd_snap_create(s->image, name);
        break;
    case SNAPSHOT_APPLY:
        what = "revert to";
        r = rbd_snap_rollback(s->image, name);
        if (r == 0) {
            uint64_t size;
            if (rbd_get_size(s->image, &size) == 0)
                __atomic_store_n(&dev->size, size, __ATOMIC_RELEASE);
        }
        break;
    case SNAPSHOT_DELETE:
        what = "delete";
        r = rbd_snap_remove(s->image, name);
        break;
    }
    pthread_mutex_unlock(&s->lock);
    if (r == -ENOENT && op != SNAPSHOT_CREATE)
        return err_set(r, "%s: there is no snapshot '%s'", dev->filename, name);
    if (r == -EEXIST)
        return err_set(r, "%s: a snapshot '%s' exists already", dev->filename, name);
    if (r == -EBUSY)
        return err_set(r, "%s: could not %s the snapshot '%s': it is protected or has clones",
                       dev->filename, what, name);
    if (r < 0)
        return err_set(r, "%s: could not %s the snapshot '%s': %s", dev->filename, what, name,
                       rbd_errstr(r));
    return 0;
}

/* ---- Create ---------------------------------------------------------------- */

static const struct {
    const char *name;
    uint64_t bit;
} feature_names[] = {
    {RBD_FEATURE_NAME_LAYERING, RBD_FEATURE_LAYERING},
    {RBD_FEATURE_NAME_STRIPINGV2, RBD_FEATURE_STRIPINGV2},
    {RBD_FEATURE_NAME_EXCLUSIVE_LOCK, RBD_FEATURE_EXCLUSIVE_LOCK},
    {RBD_FEATURE_NAME_OBJECT_MAP, RBD_FEATURE_OBJECT_MAP},
    {RBD_FEATURE_NAME_FAST_DIFF, RBD_FEATURE_FAST_DIFF},
    {RBD_FEATURE_NAME_DEEP_FLATTEN, RBD_FEATURE_DEEP_FLATTEN},
    {RBD_FEATURE_NAME_JOURNALING, RBD_FEATURE_JOURNALING},
};

/* features=NAME+NAME... (rbd's names) or a number. */
static int parse_features(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long num = strtoull(v, &end, 0);
    if (*v >= '0' && *v <= '9' && !*end && !errno) {
        *out = num;
        return 0;
    }
    *out = 0;
    const char *p = v;
    while (*p) {
        size_t l = strcspn(p, "+");
        size_t i;
        for (i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++)
            if (strlen(feature_names[i].name) == l && !strncmp(p, feature_names[i].name, l))
                break;
        if (i == sizeof feature_names / sizeof feature_names[0])
            return err_set(-EINVAL, "features: unknown RBD feature '%.*s' (layering, striping, "
                           "exclusive-lock, object-map, fast-diff, deep-flatten, journaling)",
                           (int)l, p);
        *out |= feature_names[i].bit;
        p += l;
        if (*p)
            p++;
    }
    return 0;
}

/* Sets the image options of a create: the object size OBJ (0: the
 * pool's default) and FEATURES (when HAVE_FEATURES). */
static void set_image_options(rbd_image_options_t opts, uint64_t obj, bool have_features,
                              uint64_t features)
{
    if (obj) {
        uint64_t order = 0;
        while ((1ull << order) < obj)
            order++;
        rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_ORDER, order);
    }
    if (have_features)
        rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES, features);
}

/*
 * create -b: the new image N (FILENAME) as an RBD clone of BACKING, a
 * snapshot (rbd:POOL[/NS]/IMAGE@SNAP) in the same cluster, made SIZE bytes
 * long when SIZE is not the snapshot's.  Returns 0 or -errno with a message.
 */
static int create_clone(const char *filename, const struct rbd_name *n, const char *backing,
                        uint64_t size, uint64_t timeout, uint64_t obj, bool have_features,
                        uint64_t features)
{
    struct rbd_name b;
    int r = rbd_name_parse(backing, &b);
    if (r < 0)
        return r;
    if (!b.snap || b.conf || b.user || b.nopts) {
        r = err_set(-EINVAL, "%s: the backing file of an RBD image is a snapshot of another "
                    "RBD image in the same cluster, named rbd:POOL[/NAMESPACE]/IMAGE@SNAP "
                    "without options (an RBD clone); '%s' is not", filename, backing);
        rbd_name_free(&b);
        return r;
    }
    rados_t cl;
    rados_ioctx_t io, pio;
    r = cluster_connect(n, filename, false, timeout, false, &cl, &io);
    if (r < 0) {
        rbd_name_free(&b);
        return r;
    }
    r = rados_ioctx_create(cl, b.pool, &pio);
    if (r < 0) {
        r = err_set(r, "%s: could not open the pool '%s' of the backing image: %s", filename,
                    b.pool, rbd_errstr(r));
        goto out;
    }
    if (b.ns)
        rados_ioctx_set_namespace(pio, b.ns);
    rbd_image_options_t opts;
    rbd_image_options_create(&opts);
    set_image_options(opts, obj, have_features, features);
    r = rbd_clone3(pio, b.image, b.snap, io, n->image, opts);
    rbd_image_options_destroy(opts);
    if (r == -EEXIST)
        r = err_set(r, "%s: the image '%s' exists already in the pool '%s'", filename,
                    n->image, n->pool);
    else if (r == -ENOENT)
        r = err_set(r, "%s: there is no snapshot '%s' of the image '%s' in the pool '%s' to "
                    "clone", filename, b.snap, b.image, b.pool);
    else if (r < 0)
        r = err_set(r, "%s: could not clone %s: %s", filename, backing, rbd_errstr(r));
    if (r == 0 && size) {
        rbd_image_t img;
        uint64_t have = 0;
        r = rbd_open(io, n->image, &img, NULL);
        if (r == 0) {
            if ((r = rbd_get_size(img, &have)) == 0 && have != size)
                r = rbd_resize(img, size);
            rbd_close(img);
        }
        if (r < 0)
            r = err_set(r, "%s: could not make the clone %" PRIu64 " bytes long: %s",
                        filename, size, rbd_errstr(r));
    }
    rados_ioctx_destroy(pio);
out:
    cluster_close(cl, io);
    rbd_name_free(&b);
    return r;
}

/*
 * Options: cluster_size=BYTES, the object size (a power of two from 4 KiB
 * to 32 MiB, as qemu-img takes it; the pool's default without);
 * features=NAME+NAME... or a number (rbd's default features without);
 * backing_file=rbd:POOL[/NS]/IMAGE@SNAP (backing_fmt raw, or none): the
 * image is an RBD clone of that snapshot (format 2 clones: the snapshot
 * need not be protected), made SIZE bytes long.  qemu-img refuses -b for
 * raw images; this is where a backing file maps cleanly onto RBD.
 */
static int rbd_create_image(const char *filename, uint64_t size, struct opt_set *os)
{
    uint64_t obj = 0, features = 0, timeout;
    bool have_features = false;
    const char *v = opt_take(os, "cluster_size");
    int r = 0;
    if (v) {
        r = opt_size("cluster_size", v, 4096, 32u << 20, &obj);
        if (r == 0 && (obj & (obj - 1)))
            r = err_set(-EINVAL, "cluster_size: %s is not a power of two", v);
    }
    v = opt_take(os, "features");
    if (r == 0 && v) {
        r = parse_features(v, &features);
        have_features = true;
    }
    const char *backing = opt_take(os, "backing_file");
    const char *backing_fmt = opt_take(os, "backing_fmt");
    if (r == 0)
        r = take_timeout(os, &timeout);
    if (r == 0 && backing && backing_fmt && strcmp(backing_fmt, "raw") != 0)
        r = err_set(-ENOTSUP, "%s: an RBD image's backing file is a raw RBD snapshot (an RBD "
                    "clone), not a %s image", filename, backing_fmt);
    if (r == 0)
        r = opt_check_all_taken(os, "rbd");
    if (r == 0)
        r = rbd_lib_load(filename);
    if (r < 0)
        return r;
    struct rbd_name n;
    r = rbd_name_parse(filename, &n);
    if (r < 0)
        return r;
    if (backing) {
        r = create_clone(filename, &n, backing, size, timeout, obj, have_features, features);
        rbd_name_free(&n);
        return r;
    }
    if (n.snap) {
        rbd_name_free(&n);
        return err_set(-EINVAL, "%s: cannot create a snapshot's image (create the image, "
                       "then the snapshot)", filename);
    }
    rados_t cl;
    rados_ioctx_t io;
    r = cluster_connect(&n, filename, false, timeout, false, &cl, &io);
    if (r < 0) {
        rbd_name_free(&n);
        return r;
    }
    rbd_image_options_t opts;
    rbd_image_options_create(&opts);
    set_image_options(opts, obj, have_features, features);
    r = rbd_create4(io, n.image, size, opts);
    rbd_image_options_destroy(opts);
    if (r == -EEXIST)
        r = err_set(r, "%s: the image '%s' exists already in the pool '%s'", filename, n.image,
                    n.pool);
    else if (r < 0)
        r = err_set(r, "%s: could not create the RBD image: %s", filename, rbd_errstr(r));
    cluster_close(cl, io);
    rbd_name_free(&n);
    return r;
}

const struct vdisk_driver vdisk_driver_rbd = {
    .name = "rbd",
    .req_state_size = sizeof(struct rbd_req),
    .protocol = true,
    .open = rbd_open_dev,
    .close = rbd_close_dev,
    .submit = rbd_submit,
    .block_status = rbd_block_status,
    .truncate = rbd_truncate_dev,
    .get_info = rbd_get_info,
    .shown_name = rbd_shown_name,
    .snapshot_count = rbd_snapshot_count,
    .snapshot_get = rbd_snapshot_get,
    .snapshot_op = rbd_snapshot_op,
    .create = rbd_create_image,
};
