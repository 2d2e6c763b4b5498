/* SPDX-License-Identifier: MIT */
/*
 * formats/iso9660/cdrom.c: the emulated read-only CD-ROM drive.
 *
 * Block N (2048 bytes) of the drive is block N of the medium, an ISO file
 * opened read-only.  The capacity is the volume space size of the ISO's
 * primary volume descriptor, or the file's size when larger; bytes past
 * the end of the file read as zeroes.  The drive is marked growable so
 * that the core leaves the range check to it: with no medium a read fails
 * with -ENOMEDIUM rather than as beyond the end.  Each request holds a
 * reference to the medium it started on, so that a medium change never
 * pulls a file from under a read in flight.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/iso9660.h>

#include "driver.h"
#include "iso9660.h"

#define CDROM_NAME "CD-ROM (read-only medium)"

struct cdrom {
    pthread_mutex_t lock;
    struct vdisk_dev *medium; /* NULL: the drive is empty */
    uint64_t capacity;        /* bytes, a multiple of 2048 */
    char volume_id[33];
    uint64_t changes;
    vdisk_options *opts;      /* how media are opened */
};

static void cdrom_child_done(struct vdisk_req *child, int ret)
{
    struct vdisk_dev *medium = child->done_arg;
    req_child_finishes_parent(child, ret);
    dev_unref(medium);
}

static void cdrom_submit(struct vdisk_req *req)
{
    struct cdrom *cd = req->dev->priv;
    if (req->op == VDISK_OP_FLUSH) {
        req_complete(req, 0);
        return;
    }
    if (req->op != VDISK_OP_READ) {
        req_fail(req, -EROFS, "%s of %" PRIu64 " bytes at offset %" PRIu64
                 " refused: the medium is read-only", op_name(req->op), req->length,
                 req->offset);
        return;
    }
    pthread_mutex_lock(&cd->lock);
    struct vdisk_dev *m = cd->medium;
    uint64_t cap = cd->capacity;
    if (m)
        dev_ref(m);
    pthread_mutex_unlock(&cd->lock);
    if (!m) {
        req_fail(req, -ENOMEDIUM, "read of %" PRIu64 " bytes at offset %" PRIu64
                 ": no medium in the drive", req->length, req->offset);
        return;
    }
    if (!range_inside(req->offset, req->length, cap)) {
        dev_unref(m);
        req_fail(req, -EIO, "read of %" PRIu64 " bytes at offset %" PRIu64
                 " is beyond the end of the medium (%" PRIu64 " bytes)", req->length,
                 req->offset, cap);
        return;
    }
    uint64_t msize = dev_size(m);
    uint64_t in = req->offset >= msize ? 0
                  : msize - req->offset < req->length ? msize - req->offset : req->length;
    if (in < req->length)
        iov_memset(req->iov, req->iovcnt, (size_t)in, 0, (size_t)(req->length - in));
    if (in == 0) {
        dev_unref(m);
        req_complete(req, 0);
        return;
    }
    struct iovec small[16], *iov = req->iov;
    int cnt = req->iovcnt;
    if (in < req->length) {
        iov = req->iovcnt <= 16 ? small : malloc((size_t)req->iovcnt * sizeof *iov);
        if (!iov) {
            dev_unref(m);
            req_fail(req, -ENOMEM, "out of memory");
            return;
        }
        cnt = iov_slice(req->iov, req->iovcnt, 0, (size_t)in, iov);
    }
    struct vdisk_req *c = req_new_child(req, m, VDISK_OP_READ, req->offset, in, iov, cnt, 0,
                                        cdrom_child_done, m);
    if (iov != small && iov != req->iov)
        free(iov);
    if (!c) {
        dev_unref(m);
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    req_submit(c);
}

static void cdrom_close(struct vdisk_dev *dev)
{
    struct cdrom *cd = dev->priv;
    dev_unref(cd->medium);
    vdisk_options_free(cd->opts);
    pthread_mutex_destroy(&cd->lock);
    free(cd);
}

static void cdrom_get_info(struct vdisk_dev *dev, struct vdisk_info *info)
{
    (void)dev;
    (void)info;
}

const struct vdisk_driver vdisk_driver_cdrom = {
    .name = "cdrom",
    .submit = cdrom_submit,
    .close = cdrom_close,
    .get_info = cdrom_get_info,
};

/* Opens ISO as a medium: the device, its capacity and volume id. */
static int open_medium(struct cdrom *cd, const char *iso, struct vdisk_dev **mp, uint64_t *cap,
                       char *volid)
{
    struct vdisk_dev *m;
    int r = vdisk_open(&m, iso, cd->opts);
    if (r < 0)
        return r;
    uint32_t blocks = 0;
    volid[0] = '\0';
    r = iso_read_pvd_basic(m, &blocks, volid);
    if (r < 0) {
        dev_unref(m);
        return r;
    }
    /* The raw driver rounds sizes up to 512; the file's own length counts. */
    uint64_t fsize = m->file_length ? m->file_length : dev_size(m);
    uint64_t c = align_up(fsize, ISO_SECTOR);
    if ((uint64_t)blocks * ISO_SECTOR > c)
        c = (uint64_t)blocks * ISO_SECTOR;
    *mp = m;
    *cap = c;
    return 0;
}

static int copy_opts(vdisk_options **out, const vdisk_options *opts)
{
    static const char *const keys[] = {"format", "cache", "engine", "threads"};
    vdisk_options *o;
    int r = vdisk_options_new(&o);
    if (r < 0)
        return r;
    for (size_t i = 0; r == 0 && opts && i < sizeof keys / sizeof *keys; i++) {
        const char *v = vdisk_options_get(opts, keys[i]);
        if (v)
            r = vdisk_options_set(o, keys[i], v);
    }
    if (r == 0)
        r = vdisk_options_set(o, "read-only", "on");
    if (r < 0) {
        vdisk_options_free(o);
        return r;
    }
    *out = o;
    return 0;
}

VDISK_EXPORT int vdisk_open_cdrom(vdisk_dev **out, const char *iso, const vdisk_options *opts)
{
    err_enter(__func__);
    *out = NULL;
    struct cdrom *cd = calloc(1, sizeof *cd);
    if (!cd)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&cd->lock, NULL);
    int r = copy_opts(&cd->opts, opts);
    if (r == 0 && iso)
        r = open_medium(cd, iso, &cd->medium, &cd->capacity, cd->volume_id);
    struct vdisk_open_params params = {
        .read_only = true,
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = cd->medium ? cd->medium->engine
                  : engine_uring_available() ? VDISK_ENGINE_URING : VDISK_ENGINE_THREADS,
        .threads = cd->medium ? cd->medium->params.threads : 0,
    };
    struct vdisk_dev *dev = r == 0 ? dev_alloc(&vdisk_driver_cdrom, CDROM_NAME, &params) : NULL;
    if (r == 0 && !dev)
        r = err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        dev_unref(cd->medium);
        vdisk_options_free(cd->opts);
        pthread_mutex_destroy(&cd->lock);
        free(cd);
        return r;
    }
    dev->priv = cd;
    dev->size = cd->capacity;
    dev->growable = true; /* the driver checks ranges itself (no medium: -ENOMEDIUM) */
    dev->block_size = VDISK_CDROM_BLOCK_SIZE;
    dev->align = 1;
    dev->caps = 0;
    *out = dev;
    return 0;
}

VDISK_EXPORT int vdisk_cdrom_change_medium(vdisk_dev *dev, const char *iso)
{
    err_enter(__func__);
    if (!dev || dev->drv != &vdisk_driver_cdrom)
        return err_set(-EINVAL, "%s: not a CD-ROM drive", dev ? dev->filename : "(null)");
    struct cdrom *cd = dev->priv;
    struct vdisk_dev *m = NULL;
    uint64_t cap = 0;
    char volid[33] = "";
    int r = iso ? open_medium(cd, iso, &m, &cap, volid) : 0;
    pthread_mutex_lock(&cd->lock);
    struct vdisk_dev *old = cd->medium;
    if (old)
        cd->changes++;
    cd->medium = m;
    cd->capacity = cap;
    memcpy(cd->volume_id, volid, sizeof volid);
    if (m)
        cd->changes++;
    __atomic_store_n(&dev->size, cap, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&cd->lock);
    dev_unref(old);
    return r;
}

VDISK_EXPORT int vdisk_cdrom_get_media(vdisk_dev *dev, struct vdisk_cdrom_media *m)
{
    err_enter(__func__);
    if (!dev || dev->drv != &vdisk_driver_cdrom)
        return err_set(-EINVAL, "%s: not a CD-ROM drive", dev ? dev->filename : "(null)");
    size_t have;
    int r = ABI_SIZE(vdisk_cdrom_media, m, VDISK_CDROM_MEDIA_SIZE_V1, &have);
    if (r < 0)
        return r;
    struct cdrom *cd = dev->priv;
    struct vdisk_cdrom_media f;
    memset(&f, 0, sizeof f);
    pthread_mutex_lock(&cd->lock);
    f.loaded = cd->medium != NULL;
    f.blocks = cd->capacity / ISO_SECTOR;
    memcpy(f.volume_id, cd->volume_id, sizeof f.volume_id);
    f.media_changes = cd->changes;
    pthread_mutex_unlock(&cd->lock);
    f.tracks = f.loaded ? 1 : 0;
    f.track_start = 0;
    f.lead_out = f.blocks;
    abi_copy_out(m, &f, have, sizeof f);
    return 0;
}
