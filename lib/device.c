/* SPDX-License-Identifier: MIT */
/*
 * lib/device.c: the device object: open (with format probing), create,
 * close, properties, block status, the whole-image calls (info, check,
 * resize, make empty, set backing, amend, snapshots: each passed to the
 * format driver, most inside a quiesce section) and the synchronous I/O
 * calls, which run on a queue of the device's own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "internal.h"
#include "json_name.h"
#include "options_internal.h"

/* ---- Driver registry ------------------------------------------------------ */

const struct vdisk_driver *const vdisk_format_drivers[] = {
    &vdisk_driver_raw,
    &vdisk_driver_qcow2,
    &vdisk_driver_vdi,
    &vdisk_driver_qed,
    &vdisk_driver_vmdk,
    &vdisk_driver_vpc,
    &vdisk_driver_vhdx,
    &vdisk_driver_bochs,
    &vdisk_driver_cloop,
    &vdisk_driver_dmg,
    &vdisk_driver_parallels,
    &vdisk_driver_luks,
    &vdisk_driver_compress,
    NULL,
};

const struct vdisk_driver *driver_by_name(const char *name)
{
    for (size_t i = 0; vdisk_format_drivers[i]; i++)
        if (strcmp(vdisk_format_drivers[i]->name, name) == 0)
            return vdisk_format_drivers[i];
    return NULL;
}

VDISK_EXPORT int vdisk_create_option(const char *format, unsigned index, const char **name,
                                     const char **type, const char **help)
{
    err_enter(__func__);
    if (!format)
        return err_set(-ENOENT, "vdisk_create_option: no format given");
    const struct vdisk_driver *drv = driver_by_name(format);
    if (!drv)
        return err_set(-ENOENT, "Unknown file format '%s'", format);
    if (!drv->create || !drv->create_opts)
        return err_set(-ENOTSUP, "Format driver '%s' does not support image creation", format);
    for (unsigned i = 0; i < index; i++)
        if (!drv->create_opts[i].name)
            return 0;
    const struct create_opt *o = &drv->create_opts[index];
    if (!o->name)
        return 0;
    if (name)
        *name = o->name;
    if (type)
        *type = o->type;
    if (help)
        *help = o->help;
    return 1;
}

/* ---- Device objects ------------------------------------------------------- */

struct vdisk_dev *dev_alloc(const struct vdisk_driver *drv, const char *filename,
                            const struct vdisk_open_params *params)
{
    if (drv->req_state_size > REQ_STATE_MAX) {
        err_set(-EINVAL, "%s: the %s driver wants %zu bytes of state per request, more than "
                "the %d a request has", filename, drv->name, drv->req_state_size, REQ_STATE_MAX);
        return NULL;
    }
    /* The device and the core's part of it are one allocation. */
    struct dev_full *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    struct vdisk_dev *dev = &f->dev;
    dev->core = &f->core;
    dev->filename = strdup(filename);
    if (!dev->filename) {
        free(f);
        return NULL;
    }
    atomic_init(&dev->core->refs, 1);
    dev->drv = drv;
    dev->params = *params;
    dev->engine = params->engine;
    dev->block_size = 512;
    dev->align = 1;
    pthread_mutex_init(&dev->core->sync_lock, NULL);
    pthread_mutex_init(&dev->core->track_lock, NULL);
    quiesce_init(&dev->core->quiesce);
    return dev;
}

void dev_free(struct vdisk_dev *dev)
{
    if (!dev)
        return;
    if (dev->core->sync_q)
        queue_destroy(dev->core->sync_q);
    pthread_mutex_destroy(&dev->core->sync_lock);
    pthread_mutex_destroy(&dev->core->track_lock);
    quiesce_fini(&dev->core->quiesce);
    free(dev->core->shown);
    free(dev->filename);
    free((struct dev_full *)dev);
}

void dev_ref(struct vdisk_dev *dev)
{
    atomic_fetch_add(&dev->core->refs, 1);
}

void dev_unref(struct vdisk_dev *dev)
{
    if (!dev || atomic_fetch_sub(&dev->core->refs, 1) != 1)
        return;
    if (dev->caps & VDISK_CAN_WRITE) {
        /* The caller's last error, if any, survives this internal flush. */
        struct err_saved saved;
        err_save(&saved);
        dev_flush(dev);
        err_restore(&saved);
    }
    if (dev->drv->close)
        dev->drv->close(dev);
    dev_free(dev);
}

/* ---- Open ----------------------------------------------------------------- */

static int parse_params(struct opt_set *os, struct vdisk_open_params *p)
{
    const char *v;
    memset(p, 0, sizeof *p);
    if ((v = opt_take(os, "read-only"))) {
        int r = opt_bool("read-only", v, &p->read_only);
        if (r < 0)
            return r;
    }
    p->cache = VDISK_CACHE_WRITEBACK;
    if ((v = opt_take(os, "cache"))) {
        static const struct { const char *name; enum vdisk_cache_mode mode; } modes[] = {
            {"writeback", VDISK_CACHE_WRITEBACK}, {"none", VDISK_CACHE_NONE},
            {"writethrough", VDISK_CACHE_WRITETHROUGH}, {"directsync", VDISK_CACHE_DIRECTSYNC},
            {"unsafe", VDISK_CACHE_UNSAFE},
        };
        size_t i;
        for (i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (strcmp(v, modes[i].name) == 0)
                break;
        if (i == sizeof modes / sizeof modes[0])
            return err_set(-EINVAL, "invalid cache mode '%s' (expected writeback, none, "
                           "writethrough, directsync or unsafe)", v);
        p->cache = modes[i].mode;
    }
    v = opt_take(os, "engine");
    const char *from = "option 'engine'";
    if (!v) {
        v = getenv("VDISK_ENGINE");
        from = "VDISK_ENGINE";
    }
    if (!v || !*v || strcmp(v, "auto") == 0) {
        p->engine = engine_uring_available() ? VDISK_ENGINE_URING : VDISK_ENGINE_THREADS;
    } else if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0) {
        if (!engine_uring_available())
            return err_set(-ENOSYS, "%s asks for io_uring, which this kernel or sandbox "
                           "does not allow (use engine=threads or auto)", from);
        p->engine = VDISK_ENGINE_URING;
    } else if (strcmp(v, "threads") == 0) {
        p->engine = VDISK_ENGINE_THREADS;
    } else {
        return err_set(-EINVAL, "%s: unknown engine '%s' (expected auto, uring or threads)",
                       from, v);
    }
    if ((v = opt_take(os, "locking"))) {
        if (strcmp(v, "auto") == 0)
            p->locking = LOCK_AUTO;
        else if (strcmp(v, "on") == 0)
            p->locking = LOCK_ON;
        else if (strcmp(v, "off") == 0)
            p->locking = LOCK_OFF;
        else
            return err_set(-EINVAL, "invalid locking mode '%s' (expected auto, on or off)", v);
    }
    if ((v = opt_take(os, "force-share"))) {
        int r = opt_bool("force-share", v, &p->force_share);
        if (r < 0)
            return r;
        if (p->force_share && !p->read_only)
            return err_set(-EINVAL, "force-share=on can only be used with read-only images");
    }
    if ((v = opt_take(os, "threads"))) {
        uint64_t n;
        int r = opt_uint("threads", v, 1, 256, &n);
        if (r < 0)
            return r;
        p->threads = (unsigned)n;
    }
    return 0;
}

/*
 * Reads the first bytes of FILE and asks each format driver, and the
 * signatures of the formats vdisk does not read (lib/probe.c).
 */
static int probe_format(struct vdisk_dev *file, struct probe_result *res)
{
    memset(res, 0, sizeof *res);
    uint64_t size = dev_size(file);
    if (file->file_length && file->file_length < size)
        size = file->file_length;
    if (size == 0)
        return 0; /* an empty file is raw, as in QEMU */
    uint8_t buf[PROBE_SIZE] = {0};
    int r = dev_pread(file, buf, size < PROBE_SIZE ? (size_t)size : PROBE_SIZE, 0);
    if (r < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_detail());
        return err_set(r, "%s: could not read the first bytes to probe the format: %s",
                       file->filename, msg);
    }
    probe_block(buf, file->filename, res);
    return 0;
}

bool dev_is_nbd_name(const char *filename)
{
    static const char *const schemes[] = {"nbd://", "nbd+unix://", "nbds://", "nbds+unix://",
                                          "nbd+vsock://", "nbds+vsock://"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(filename, schemes[i], strlen(schemes[i])) == 0)
            return true;
    return false;
}

static bool is_rbd_name(const char *filename)
{
    return strncmp(filename, "rbd:", 4) == 0;
}

bool dev_is_network_name(const char *filename)
{
    return dev_is_nbd_name(filename) || is_rbd_name(filename);
}

const struct vdisk_driver *protocol_for_name(const char *filename)
{
    if (dev_is_nbd_name(filename))
        return &vdisk_driver_nbd;
    if (is_rbd_name(filename)) {
#ifdef VDISK_HAVE_RBD
        return &vdisk_driver_rbd;
#else
        err_set(-ENOTSUP, "%s: this vdisk was built without librbd: RBD images cannot be "
                "opened", filename);
        return NULL;
#endif
    }
    return &vdisk_driver_raw;
}

/* The protocol layer: an NBD export for an NBD URI, an RBD image for an
 * rbd: name, else a file. */
int dev_open_file(struct vdisk_dev **devp, const char *filename, struct opt_set *os,
                  const struct vdisk_open_params *params)
{
    const struct vdisk_driver *drv = protocol_for_name(filename);
    if (!drv)
        return -ENOTSUP;
    struct vdisk_dev *dev = dev_alloc(drv, filename, params);
    if (!dev)
        return err_set(-ENOMEM, "out of memory");
    int r = drv->open(dev, NULL, os);
    if (r < 0) {
        dev_free(dev);
        return r;
    }
    *devp = dev;
    return 0;
}

void dev_debug_event(struct vdisk_dev *file, const char *event)
{
    if (file && file->drv->debug_event)
        file->drv->debug_event(file, event);
}

void check_reportf(vdisk_check_report_fn report, void *opaque, const char *fmt, ...)
{
    if (!report)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    report(opaque, line);
}

/* The device below a filter (its state's first member). */
static struct vdisk_dev *filter_child(struct vdisk_dev *dev)
{
    return *(struct vdisk_dev **)dev->priv;
}

int filter_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                        struct vdisk_extent *ext)
{
    return dev_block_status(filter_child(dev), off, len, ext);
}

int64_t filter_allocated_size(struct vdisk_dev *dev)
{
    return dev_allocated_size(filter_child(dev));
}

int filter_truncate(struct vdisk_dev *dev, uint64_t size)
{
    struct vdisk_dev *child = filter_child(dev);
    int r = dev_truncate(child, size);
    if (r == 0)
        __atomic_store_n(&dev->size, dev_size(child), __ATOMIC_RELEASE);
    return r;
}

int filter_take_perms(struct vdisk_dev *dev, unsigned perm, unsigned shared)
{
    return dev_pass_perms(filter_child(dev), perm, shared);
}

int dev_debug_break(struct vdisk_dev *dev, enum debug_break_op op, const char *event,
                    const char *tag)
{
    if (!dev || !dev->drv->debug_break)
        return err_set(-ENOTSUP, "no blkdebug device below %s", dev ? dev->filename : "(none)");
    return dev->drv->debug_break(dev, op, event, tag);
}

static int debug_call(vdisk_dev *dev, enum debug_break_op op, const char *event,
                      const char *tag)
{
    if (!dev || !tag || (op == DEBUG_BREAK && !event))
        return err_set(-EINVAL, "no device, event or tag given (NULL)");
    return dev_debug_break(dev, op, event, tag);
}

VDISK_EXPORT int vdisk_debug_break(vdisk_dev *dev, const char *event, const char *tag)
{
    err_enter(__func__);
    return debug_call(dev, DEBUG_BREAK, event, tag);
}

VDISK_EXPORT int vdisk_debug_remove_break(vdisk_dev *dev, const char *tag)
{
    err_enter(__func__);
    return debug_call(dev, DEBUG_REMOVE_BREAK, NULL, tag);
}

VDISK_EXPORT int vdisk_debug_resume(vdisk_dev *dev, const char *tag)
{
    err_enter(__func__);
    return debug_call(dev, DEBUG_RESUME, NULL, tag);
}

VDISK_EXPORT int vdisk_debug_is_suspended(vdisk_dev *dev, const char *tag)
{
    err_enter(__func__);
    return debug_call(dev, DEBUG_IS_SUSPENDED, NULL, tag);
}

int dev_pass_perms(struct vdisk_dev *dev, unsigned perm, unsigned shared)
{
    return dev->drv->take_perms ? dev->drv->take_perms(dev, perm, shared) : 0;
}

void dev_size_grow(struct vdisk_dev *dev, uint64_t end)
{
    uint64_t cur = dev_size(dev);
    while (cur < end &&
           !__atomic_compare_exchange_n(&dev->size, &cur, end, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
        ;
}

int dev_open_format(struct vdisk_dev **devp, struct vdisk_dev *file, const char *format,
                    const struct vdisk_open_params *params, struct opt_set *os)
{
    struct opt_set none = {0};
    if (!os)
        os = &none;
    const struct vdisk_driver *drv = NULL;
    if (format) {
        drv = driver_by_name(format);
        if (!drv)
            return err_set(-ENOTSUP, "unknown format '%s'", format);
    } else {
        struct probe_result pr;
        int r = probe_format(file, &pr);
        if (r < 0)
            return r;
        if (pr.foreign)
            return err_set(-ENOTSUP, "%s: %s (%s) images are not supported", file->filename,
                           pr.foreign->human, pr.foreign->name);
        drv = pr.drv ? pr.drv : &vdisk_driver_raw;
        if (drv == &vdisk_driver_raw) {
            /* As QEMU: a guessed raw image keeps block 0 free of format
             * signatures (lib/request.c), and requests to it are whole
             * 512-byte blocks so that block 0 is checked whole. */
            file->core->probed_raw = true;
            if (file->caps & VDISK_CAN_WRITE) {
                if (file->align < PROBE_SIZE)
                    file->align = PROBE_SIZE;
                warn_report("WARNING: Image format was not specified for '%s' and probing "
                            "guessed raw.\n"
                            "         Automatically detecting the format is dangerous for raw "
                            "images, write operations on block 0 will be restricted.\n"
                            "         Specify the 'raw' format explicitly to remove the "
                            "restrictions.", file->filename);
            }
        }
    }
    int r = dev_take_perms(file, drv, params); /* image locking (lib/lock.c) */
    if (r < 0)
        return r;
    if (drv == &vdisk_driver_raw) {
        file->raw_image = true;
        *devp = file; /* a raw image is its protocol device (file or NBD) */
        return 0;
    }
    struct vdisk_dev *dev = dev_alloc(drv, file->filename, params);
    if (!dev)
        return err_set(-ENOMEM, "out of memory");
    /* A file (a protocol's device) grows under the format's writes; an
     * image inside another image (file.format) has the size it has, and a
     * write past its end fails at the boundary, never lands past the disk. */
    if (file->drv->protocol)
        dev_set_growable(file);
    r = drv->open(dev, file, os);
    if (r < 0) {
        dev_free(dev);
        return r;
    }
    dev->params.chain = NULL;
    *devp = dev;
    return 0;
}

int dev_open(struct vdisk_dev **devp, const char *filename, const char *format,
             const struct vdisk_open_params *params, struct opt_set *os)
{
    if (format && !driver_by_name(format))
        return err_set(-ENOTSUP, "unknown format '%s'", format);
    /* The protocol layer: the file itself. */
    struct vdisk_dev *file = NULL;
    int r = dev_open_file(&file, filename, os ? os : &(struct opt_set){0}, params);
    if (r < 0)
        return r;
    r = dev_open_format(devp, file, format, params, os);
    if (r < 0)
        dev_unref(file);
    return r;
}

static const char *format_name(const struct vdisk_dev *dev);

/*
 * dev_open() for a name the caller gave (vdisk_open), where QEMU's test
 * drivers are taken too: null-co:// and null-aio:// (formats/null), and
 * blkdebug:CONFIG:IMAGE (formats/blkdebug).  Names that images hold
 * (backing files, extents) never reach these drivers: dev_open_file()
 * knows only files and network protocols, so that an image cannot make
 * vdisk read a config file or a file outside its folder through blkdebug.
 */
static int dev_open_named(struct vdisk_dev **devp, const char *filename, const char *format,
                          const struct vdisk_open_params *params, struct opt_set *os)
{
    const struct vdisk_driver *drv = null_is_name(filename) ? &vdisk_driver_null
                                     : blkdebug_is_name(filename) ? &vdisk_driver_blkdebug
                                     : NULL;
    if (!drv)
        return dev_open(devp, filename, format, params, os);
    if (format && !driver_by_name(format))
        return err_set(-ENOTSUP, "unknown format '%s'", format);
    struct vdisk_dev *file = dev_alloc(drv, filename, params);
    if (!file)
        return err_set(-ENOMEM, "out of memory");
    int r = drv->open(file, NULL, os);
    if (r < 0) {
        dev_free(file);
        return r;
    }
    r = dev_open_format(devp, file, format, params, os);
    if (r < 0)
        dev_unref(file);
    return r;
}

/* A json: name's format beside the option "format" (FORMAT): on open the
 * option's when given (QEMU: the options given beside a json: name win
 * over its own), else the name's; on create (STRICT) they must agree. */
static int json_format(const struct json_name *jn, const char *name, const char **format,
                       bool strict)
{
    if (strict && jn->format && *format && strcmp(jn->format, *format))
        return err_set(-EINVAL, "%s: the name says the format '%s', the options '%s'", name,
                       jn->format, *format);
    if (jn->format && !*format)
        *format = jn->format;
    return 0;
}

/* raw's "offset" and "size" options (a json: name's raw.offset, raw.size):
 * *DEVP becomes that range of itself. */
static int raw_range(struct vdisk_dev **devp, struct opt_set *os)
{
    const char *vo = opt_take(os, "raw.offset"), *vs = opt_take(os, "raw.size");
    if (!vo && !vs)
        return 0;
    struct vdisk_dev *dev = *devp;
    uint64_t size = dev->file_length ? dev->file_length : dev_size(dev), off = 0, len;
    int r = 0;
    if (vo)
        r = opt_size("offset", vo, 0, INT64_MAX, &off);
    if (r < 0)
        return r;
    if (off > size)
        return err_set(-EINVAL, "Offset (%" PRIu64 ") cannot be greater than size of the "
                       "containing file (%" PRIu64 ")", off, size);
    len = size - off;
    if (vs && (r = opt_size("size", vs, 0, INT64_MAX, &len)) < 0)
        return r;
    if (len > size - off)
        return err_set(-EINVAL, "The sum of offset (%" PRIu64 ") and size (%" PRIu64 ") has "
                       "to be smaller or equal to the  actual size of the containing file (%"
                       PRIu64 ")", off, len, size);
    struct vdisk_dev *range;
    r = vdisk_open_range(&range, dev, off, len, dev->caps & VDISK_CAN_WRITE ? 0 :
                         VDISK_OPEN_RDONLY);
    if (r < 0)
        return r;
    dev_unref(dev);
    *devp = range;
    return 0;
}

/* An encrypted image's key-secret is one of QEMU's "strong" options: a
 * json: name giving one is shown as QEMU shows it, the key first:
 * json:{"encrypt.key-secret": ID, "driver": FMT, "file": {"driver":
 * "file", "filename": NAME}} (a plain file; names needing JSON escapes
 * keep the plain name).  0 or -ENOMEM. */
static int key_shown_name(struct vdisk_dev *dev, const struct json_name *jn)
{
    const char *k = NULL, *v = NULL;
    for (unsigned i = 0; i < jn->fmt_opts; i++)
        if (!strcmp(jn->fmt_key[i], "encrypt.key-secret") || !strcmp(jn->fmt_key[i], "key-secret")) {
            k = jn->fmt_key[i];
            v = jn->fmt_val[i];
        }
    if (!k || !jn->filename || jn->protocol_only || (jn->protocol && strcmp(jn->protocol, "file")) ||
        strpbrk(v, "\"\\") || strpbrk(jn->filename, "\"\\"))
        return 0;
    if (!(dev->core->shown = str_printf("json:{\"%s\": \"%s\", \"driver\": \"%s\", \"file\": "
                                        "{\"driver\": \"file\", \"filename\": \"%s\"}}", k, v,
                                        format_name(dev), jn->filename)))
        return err_set(-ENOMEM, "out of memory");
    return 0;
}

/* A name the caller gives as "file:PATH" (QEMU's file protocol named, so
 * that a colon in PATH is not read as a protocol's): PATH, as QEMU shows it
 * ("./" before a relative PATH whose first colon comes before any slash,
 * which would read as a protocol without the prefix); malloc'd in *OUT,
 * or *OUT NULL when NAME has no such prefix.  0 or -ENOMEM. */
static int file_prefix(const char *name, char **out)
{
    *out = NULL;
    if (strncmp(name, "file:", 5) != 0 || !name[5])
        return 0;
    const char *path = name + 5, *colon = strchr(path, ':'), *slash = strchr(path, '/');
    bool dot = path[0] != '/' && colon && (!slash || colon < slash);
    *out = str_printf("%s%s", dot ? "./" : "", path);
    return *out ? 0 : err_set(-ENOMEM, "out of memory");
}

VDISK_EXPORT int vdisk_open(vdisk_dev **devp, const char *filename, const vdisk_options *opts)
{
    err_enter(__func__);
    *devp = NULL;
    if (!filename || !*filename)
        return err_set(-EINVAL, "no file name given");
    char *plain;
    if (file_prefix(filename, &plain) < 0)
        return -ENOMEM;
    if (plain) {
        int r = vdisk_open(devp, plain, opts);
        free(plain);
        return r;
    }
    struct json_name jn = {.read_only = -1};
    vdisk_options *merged = NULL;
    if (json_name_is(filename)) {
        int r = json_name_parse(filename, &jn);
        if (r < 0)
            return r;
        /* The options the name says (and the format options it gives, an
         * encrypted image's key-secret), with the caller's, which win. */
        if (jn.nopts || jn.fmt_opts) {
            if (!(merged = opt_dup(opts)))
                r = err_set(-ENOMEM, "out of memory");
            for (unsigned i = 0; r == 0 && i < jn.nopts + jn.fmt_opts; i++) {
                const char *k = i < jn.nopts ? jn.opt_key[i] : jn.fmt_key[i - jn.nopts];
                const char *v = i < jn.nopts ? jn.opt_val[i] : jn.fmt_val[i - jn.nopts];
                if (!vdisk_options_get(merged, k) && opt_add(merged, k, v) < 0)
                    r = err_set(-ENOMEM, "out of memory");
            }
            if (r < 0) {
                vdisk_options_free(merged);
                json_name_free(&jn);
                return r;
            }
            opts = merged;
        }
    }
    struct opt_set os;
    int r = opt_set_init(&os, opts);
    if (r < 0) {
        vdisk_options_free(merged);
        json_name_free(&jn);
        return r;
    }
    struct vdisk_open_params params;
    r = parse_params(&os, &params);
    if (jn.read_only == 1)
        params.read_only = true; /* (false: the options may still ask for it) */
    const char *format = opt_take(&os, "format");
    /* A protocol's object with a format beside it: QEMU takes that format
     * for the object's driver; only the protocol itself fits. */
    if (r == 0 && jn.protocol_only && format && strcmp(format, jn.protocol))
        r = err_set(-EINVAL, "A block device must be specified for \"file\"");
    /* null-co as a format (qemu-io -f null-co): QEMU's null driver is a
     * protocol, the image on it raw; QEMU names the format after it. */
    const char *null_format = NULL;
    if (format && (!strcmp(format, "null-co") || !strcmp(format, "null-aio")))
        null_format = !strcmp(format, "null-co") ? "null-co" : "null-aio";
    else if (!format && jn.protocol_only && (!strcmp(jn.protocol, "null-co") ||
                                             !strcmp(jn.protocol, "null-aio")))
        null_format = !strcmp(jn.protocol, "null-co") ? "null-co" : "null-aio";
    if (format && (null_format || (jn.protocol_only && !strcmp(format, jn.protocol))))
        format = "raw";
    if (r == 0 && jn.filename) {
        r = json_format(&jn, filename, &format, false);
        if (jn.protocol_only && !format)
            format = "raw";
        filename = jn.filename;
    }
    struct vdisk_dev *dev = NULL;
    /* json:{"driver": F, "file": {"driver": G, "file": ...}}: an image of
     * F stored in an image of G. */
    const char *inner_format = opt_take(&os, "file.format");
    if (r == 0 && inner_format) {
        struct vdisk_dev *inner = NULL;
        r = dev_open_named(&inner, filename, inner_format, &params, &os);
        if (r == 0 && (r = dev_open_format(&dev, inner, format, &params, &os)) < 0)
            dev_unref(inner);
    } else if (r == 0) {
        r = dev_open_named(&dev, filename, format, &params, &os);
    }
    if (r == 0) {
        opt_take(&os, "backing.null"); /* (an image without a backing file) */
        if (null_format && dev->drv == &vdisk_driver_null)
            dev->core->format_shown = null_format;
        r = raw_range(&dev, &os);
        if (r == 0)
            r = limits_wrap(&dev, &os);
        if (r == 0)
            r = opt_check_all_taken(&os, dev->drv->name);
        if (r < 0)
            dev_unref(dev);
        else
            *devp = dev;
    }
    if (r == 0 && jn.shown_file &&
        !(dev->core->shown = str_printf("json:{\"driver\": \"%s\", \"file\": %s}",
                                        format_name(dev), jn.shown_file))) {
        dev_unref(dev);
        *devp = NULL;
        r = err_set(-ENOMEM, "out of memory");
    }
    if (r == 0 && !jn.shown_file && (r = key_shown_name(dev, &jn)) < 0) {
        dev_unref(dev);
        *devp = NULL;
    }
    opt_set_fini(&os);
    vdisk_options_free(merged);
    json_name_free(&jn);
    return r;
}

VDISK_EXPORT int vdisk_plain_name(const char *name, char **out)
{
    err_enter(__func__);
    if (!out)
        return err_set(-EINVAL, "no result pointer given (NULL)");
    *out = NULL;
    if (!name)
        return err_set(-EINVAL, "no name given (NULL)");
    if (!json_name_is(name)) {
        *out = strdup(name);
        return *out ? 0 : err_set(-ENOMEM, "out of memory");
    }
    struct json_name jn;
    int r = json_name_parse(name, &jn);
    if (r == 0) {
        *out = jn.filename;
        jn.filename = NULL;
    }
    json_name_free(&jn);
    return r;
}

VDISK_EXPORT void vdisk_close(vdisk_dev *dev)
{
    err_enter(__func__);
    dev_unref(dev);
}

static int create_in(const char *filename, const char *format, uint64_t size,
                     const vdisk_options *opts);

VDISK_EXPORT int vdisk_create(const char *filename, const char *format, uint64_t size,
                              const vdisk_options *opts)
{
    err_enter(__func__);
    if (!filename || !*filename)
        return err_set(-EINVAL, "no file name given");
    char *plain;
    if (file_prefix(filename, &plain) < 0)
        return -ENOMEM;
    if (plain) {
        int r = vdisk_create(plain, format, size, opts);
        free(plain);
        return r;
    }
    struct json_name jn = {.read_only = -1};
    if (json_name_is(filename)) {
        /* The name of the image's storage (its protocol object). */
        int r = json_name_parse(filename, &jn);
        if (r == 0 && jn.read_only == 1)
            r = err_set(-EROFS, "%s: the name says read-only", filename);
        if (r == 0)
            r = json_format(&jn, filename, &format, true);
        if (r < 0) {
            json_name_free(&jn);
            return r;
        }
        filename = jn.filename;
    }
    int r = create_in(filename, format, size, opts);
    json_name_free(&jn);
    return r;
}

static int create_in(const char *filename, const char *format, uint64_t size,
                     const vdisk_options *opts)
{
    if (!format)
        format = "raw";
    const struct vdisk_driver *drv = driver_by_name(format);
    if (!drv || !drv->create)
        return err_set(-ENOTSUP, "cannot create images of format '%s'", format);
    const struct vdisk_driver *proto = protocol_for_name(filename);
    if (!proto)
        return -ENOTSUP;
    if (proto == &vdisk_driver_nbd) {
        /* An NBD export exists already: a raw image on it only checks it. */
        if (drv != &vdisk_driver_raw)
            return err_set(-ENOTSUP, "%s: only raw images can be created on an NBD export",
                           filename);
        drv = proto;
    } else if (proto != &vdisk_driver_raw && drv == &vdisk_driver_raw) {
        drv = proto; /* a raw image in RBD is the RBD image; a format is
                        written into one (qcow2_create) */
    }
    struct opt_set os;
    int r = opt_set_init(&os, opts);
    if (r < 0)
        return r;
    /* The "size" option, as qemu-img's -o size=: the size when SIZE is 0. */
    const char *osize = opt_take(&os, "size");
    uint64_t n;
    if (osize && (r = vdisk_parse_size(osize, 1, &n)) < 0) {
        opt_set_fini(&os);
        return r;
    }
    if (osize && size == 0)
        size = n;
    /* The file protocol's extent_size_hint, for any format in a file. */
    const char *hint = proto == &vdisk_driver_raw ? opt_take(&os, "extent_size_hint") : NULL;
    uint64_t hint_bytes = FILE_EXTENT_HINT_DEFAULT;
    if (hint && (r = vdisk_parse_size(hint, 1, &hint_bytes)) < 0) {
        opt_set_fini(&os);
        return r;
    }
    if (hint_bytes > UINT32_MAX) {
        opt_set_fini(&os);
        return err_set(-EINVAL, "%s: Extent size hint is too large", filename);
    }
    if (size > UINT64_MAX - 511) {
        opt_set_fini(&os);
        return err_set(-EINVAL, "size %" PRIu64 " is too large", size);
    }
    size = align_up(size, 512);
    file_create_hint(hint_bytes, hint != NULL);
    r = drv->create(filename, size, &os);
    file_create_hint(FILE_EXTENT_HINT_DEFAULT, false);
    if (r == 0)
        r = opt_check_all_taken(&os, drv->name);
    opt_set_fini(&os);
    return r;
}

/* ---- Properties ----------------------------------------------------------- */

VDISK_EXPORT uint64_t vdisk_get_size(const vdisk_dev *dev)
{
    return dev_size(dev);
}

VDISK_EXPORT uint32_t vdisk_get_block_size(const vdisk_dev *dev)
{
    return dev->block_size;
}

/* The format of an image: its driver's name, but an NBD export read as it
 * is is a raw image (as qemu-img reports it). */
static const char *format_name(const struct vdisk_dev *dev)
{
    if (dev->core->format_shown)
        return dev->core->format_shown;
    return dev->drv->protocol ? "raw" : dev->drv->name;
}

VDISK_EXPORT const char *vdisk_get_format(const vdisk_dev *dev)
{
    return format_name(dev);
}

VDISK_EXPORT const char *vdisk_get_filename(const vdisk_dev *dev)
{
    return dev->filename;
}

VDISK_EXPORT const char *vdisk_get_engine(const vdisk_dev *dev)
{
    return dev->engine == VDISK_ENGINE_URING ? engine_uring_ops.name : engine_threads_ops.name;
}

VDISK_EXPORT unsigned vdisk_can(const vdisk_dev *dev)
{
    return dev->caps;
}

VDISK_EXPORT int vdisk_is_read_only(const vdisk_dev *dev)
{
    return !(dev->caps & VDISK_CAN_WRITE);
}

char *dev_shown_name(struct vdisk_dev *dev, const char *format)
{
    return dev->drv->shown_name ? dev->drv->shown_name(dev, format) : NULL;
}

int64_t dev_allocated_size(struct vdisk_dev *dev)
{
    return dev->drv->allocated_size ? dev->drv->allocated_size(dev) : -ENOTSUP;
}

VDISK_EXPORT int64_t vdisk_get_allocated_size(vdisk_dev *dev)
{
    err_enter(__func__);
    if (!dev->drv->allocated_size)
        return err_set(-ENOTSUP, "%s: the %s driver cannot tell its allocated size",
                       dev->filename, dev->drv->name);
    return dev_allocated_size(dev);
}

VDISK_EXPORT int vdisk_get_info(vdisk_dev *dev, struct vdisk_info *info)
{
    err_enter(__func__);
    size_t have;
    int r = ABI_SIZE(vdisk_info, info, VDISK_INFO_SIZE_V1, &have);
    if (r < 0)
        return r;
    /* Filled in full here, then copied as far as the caller's version goes. */
    struct vdisk_info in;
    memset(&in, 0, sizeof in);
    in.format = format_name(dev);
    in.filename = dev->filename;
    in.virtual_size = dev_size(dev);
    int64_t a = dev_allocated_size(dev);
    in.actual_size = a < 0 ? -1 : a;
    if (dev->drv->get_info)
        dev->drv->get_info(dev, &in);
    if (dev->core->shown)
        in.filename = dev->core->shown;
    abi_copy_out(info, &in, have, sizeof in);
    return 0;
}

VDISK_EXPORT int vdisk_check(vdisk_dev *dev, unsigned flags, struct vdisk_check_result *res,
                             vdisk_check_report_fn report, void *opaque)
{
    err_enter(__func__);
    size_t have;
    int r = ABI_SIZE(vdisk_check_result, res, VDISK_CHECK_RESULT_SIZE_V1, &have);
    if (r < 0)
        return r;
    struct vdisk_check_result full = {.struct_size = sizeof full};
    if (!dev->drv->check)
        r = err_set(-ENOTSUP, "%s: the %s format has no metadata to check", dev->filename,
                    dev->drv->name);
    else if ((r = quiesce_begin_op(dev)) == 0) {
        r = dev->drv->check(dev, flags, &full, report, opaque);
        quiesce_end_op(dev);
    }
    abi_copy_out(res, &full, have, sizeof full);
    return r;
}

/* ---- Whole images --------------------------------------------------------- */

static int raw_like_resize(struct vdisk_dev *dev, uint64_t size, unsigned flags)
{
    if (size < dev_size(dev) && !(flags & VDISK_RESIZE_SHRINK))
        return err_set(-EINVAL, "%s: use the shrink flag (--shrink) to make the image smaller",
                       dev->filename);
    uint64_t old = dev_size(dev);
    if (flags & VDISK_RESIZE_PREALLOC_FALLOC)
        return dev_preallocate(dev, size);
    int r = dev_truncate(dev, size);
    if (r < 0 || !(flags & VDISK_RESIZE_PREALLOC_FULL))
        return r;
    /* full: zeroes written over the grown part */
    const size_t chunk = 1u << 20;
    void *zero = calloc(1, chunk);
    if (!zero)
        return err_set(-ENOMEM, "out of memory");
    for (uint64_t off = old; r == 0 && off < size; off += chunk)
        r = dev_pwrite(dev, zero, size - off < chunk ? (size_t)(size - off) : chunk, off);
    free(zero);
    return r;
}

VDISK_EXPORT int vdisk_resize(vdisk_dev *dev, uint64_t new_size, unsigned flags)
{
    err_enter(__func__);
    if (new_size > (uint64_t)INT64_MAX - 511)
        return err_set(-EINVAL, "%s: size %" PRIu64 " is too large", dev->filename, new_size);
    new_size = align_up(new_size, 512);
    if (!(dev->caps & VDISK_CAN_WRITE))
        return err_set(-EROFS, "%s: the image is open read-only", dev->filename);
    if (!dev->drv->resize && !dev->drv->truncate)
        return err_set(-ENOTSUP, "%s: the %s format cannot be resized", dev->filename,
                       dev->drv->name);
    unsigned pre = flags & (VDISK_RESIZE_PREALLOC_FALLOC | VDISK_RESIZE_PREALLOC_FULL |
                            VDISK_RESIZE_PREALLOC_METADATA);
    if (pre & (pre - 1))
        return err_set(-EINVAL, "%s: more than one preallocation mode", dev->filename);
    if (pre && new_size <= dev_size(dev))
        return err_set(-EINVAL, "Preallocation can only be used for growing images");
    if (pre == VDISK_RESIZE_PREALLOC_METADATA && !dev->drv->resize)
        return err_set(-ENOTSUP, "Unsupported preallocation mode: metadata"); /* (qemu's) */
    if (pre && dev->drv->resize && strcmp(dev->drv->name, "qcow2") != 0)
        return err_set(-ENOTSUP, "%s: resize with preallocation=%s is not supported for %s "
                       "images yet", dev->filename,
                       pre == VDISK_RESIZE_PREALLOC_FULL     ? "full"
                       : pre == VDISK_RESIZE_PREALLOC_FALLOC ? "falloc"
                                                             : "metadata",
                       dev->drv->name);
    int r = quiesce_begin_op(dev);
    if (r < 0)
        return r;
    r = dev->drv->resize ? dev->drv->resize(dev, new_size, flags)
                         : raw_like_resize(dev, new_size, flags);
    quiesce_end_op(dev);
    return r;
}

VDISK_EXPORT int vdisk_make_empty(vdisk_dev *dev)
{
    err_enter(__func__);
    if (!dev->drv->make_empty)
        return err_set(-ENOTSUP, "%s: the %s format cannot be emptied", dev->filename,
                       dev->drv->name);
    int r = quiesce_begin_op(dev);
    if (r < 0)
        return r;
    r = dev->drv->make_empty(dev);
    quiesce_end_op(dev);
    return r;
}

VDISK_EXPORT int vdisk_set_backing(vdisk_dev *dev, const char *name, const char *format)
{
    err_enter(__func__);
    if (!dev->drv->set_backing)
        return err_set(-ENOTSUP, "%s: the %s format has no backing files", dev->filename,
                       dev->drv->name);
    int r = quiesce_begin_op(dev);
    if (r < 0)
        return r;
    r = dev->drv->set_backing(dev, name && *name ? name : NULL, format);
    quiesce_end_op(dev);
    return r;
}

VDISK_EXPORT int vdisk_amend(vdisk_dev *dev, const vdisk_options *opts)
{
    err_enter(__func__);
    if (!dev->drv->amend)
        return err_set(-ENOTSUP, "Format driver '%s' does not support option amendment",
                       dev->drv->name); /* (qemu-img's words) */
    struct opt_set os;
    int r = opt_set_init(&os, opts);
    bool held = r == 0 && (r = quiesce_begin_op(dev)) == 0;
    if (held) {
        r = dev->drv->amend(dev, &os);
        quiesce_end_op(dev);
    }
    if (r == 0)
        r = opt_check_all_taken(&os, dev->drv->name);
    opt_set_fini(&os);
    return r;
}

/* ---- Snapshots ------------------------------------------------------------ */

VDISK_EXPORT int vdisk_snapshot_count(vdisk_dev *dev)
{
    err_enter(__func__);
    return dev->drv->snapshot_count ? dev->drv->snapshot_count(dev) : 0;
}

VDISK_EXPORT int vdisk_snapshot_get(vdisk_dev *dev, unsigned index, struct vdisk_snapshot *sn)
{
    err_enter(__func__);
    size_t have;
    int r = ABI_SIZE(vdisk_snapshot, sn, VDISK_SNAPSHOT_SIZE_V1, &have);
    if (r < 0)
        return r;
    if (!dev->drv->snapshot_get)
        return err_set(-ENOTSUP, "%s: the %s format has no snapshots", dev->filename,
                       dev->drv->name);
    struct vdisk_snapshot full = {.struct_size = sizeof full};
    r = dev->drv->snapshot_get(dev, index, &full);
    if (r == -ENOENT)
        return err_set(r, "%s: there is no snapshot number %u", dev->filename, index);
    if (r == 0)
        abi_copy_out(sn, &full, have, sizeof full);
    return r;
}

static int snapshot_op(vdisk_dev *dev, enum snapshot_op op, const char *name)
{
    if (!name)
        return err_set(-EINVAL, "no snapshot name");
    if (!dev->drv->snapshot_op)
        return err_set(-ENOTSUP, "%s: the %s format has no snapshots", dev->filename,
                       dev->drv->name);
    int r = quiesce_begin_op(dev);
    if (r < 0)
        return r;
    r = dev->drv->snapshot_op(dev, op, name);
    quiesce_end_op(dev);
    return r;
}

VDISK_EXPORT int vdisk_snapshot_create(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return snapshot_op(dev, SNAPSHOT_CREATE, name);
}

VDISK_EXPORT int vdisk_snapshot_apply(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return snapshot_op(dev, SNAPSHOT_APPLY, name);
}

VDISK_EXPORT int vdisk_snapshot_delete(vdisk_dev *dev, const char *name)
{
    err_enter(__func__);
    return snapshot_op(dev, SNAPSHOT_DELETE, name);
}

VDISK_EXPORT vdisk_dev *vdisk_get_backing(vdisk_dev *dev)
{
    return dev->drv->backing ? dev->drv->backing(dev) : NULL;
}

/* ---- Block status --------------------------------------------------------- */

int dev_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                     struct vdisk_extent *ext)
{
    uint64_t size = dev_size(dev);
    if (off >= size)
        return err_set(-EINVAL, "%s: block status at offset %" PRIu64
                       " is beyond the end of the device (%" PRIu64 " bytes)",
                       dev->filename, off, size);
    if (len > size - off)
        len = size - off;
    if (len == 0)
        return err_set(-EINVAL, "%s: block status of an empty range", dev->filename);
    memset(ext, 0, sizeof *ext);
    ext->offset = off;
    if (!dev->drv->block_status) {
        ext->length = len;
        ext->flags = VDISK_EXT_DATA | VDISK_EXT_ALLOCATED;
        return 0;
    }
    int r = dev->drv->block_status(dev, off, len, ext);
    if (r < 0)
        return r;
    ext->offset = off;
    if (ext->length == 0 || ext->length > len)
        return err_set(-EIO, "%s: the %s driver described an extent of %" PRIu64
                       " bytes at offset %" PRIu64 " (expected 1 to %" PRIu64 ")",
                       dev->filename, dev->drv->name, ext->length, off, len);
    return 0;
}

int dev_map_file(struct vdisk_dev *dev, uint64_t off, uint64_t len, struct dev_file_run *run)
{
    uint64_t size = dev_size(dev);
    if (off >= size || len == 0)
        return -EINVAL;
    if (len > size - off)
        len = size - off;
    if (!dev->drv->map_file)
        return -ENOTSUP;
    int r = dev->drv->map_file(dev, off, len, run);
    if (r == 0 && (run->len == 0 || run->len > len))
        return -EIO; /* a driver's bug: read the usual way */
    return r;
}

VDISK_EXPORT int vdisk_block_status(vdisk_dev *dev, uint64_t offset, uint64_t length,
                                    struct vdisk_extent *ext)
{
    err_enter(__func__);
    quiesce_sync_begin(dev);
    int r = dev_block_status(dev, offset, length, ext);
    quiesce_sync_end(dev);
    return r;
}

/* ---- Synchronous I/O ------------------------------------------------------ */

struct sync_wait {
    bool done;
    int ret;
};

static void sync_done(void *user, int ret)
{
    struct sync_wait *w = user;
    w->done = true;
    w->ret = ret;
}

static int dev_sync_io(struct vdisk_dev *dev, enum vdisk_op op, const struct iovec *iov,
                       int iovcnt, uint64_t off, uint64_t len, unsigned flags)
{
    const char *ctx = err_context();
    int r;
    struct sync_wait w = {false, 0};
    queue_note_sync_wait();
    for (;;) {
        /* While another thread holds the device's quiesce section, wait
         * for it to end without holding the synchronous queue. */
        quiesce_wait_sync(dev);
        pthread_mutex_lock(&dev->core->sync_lock);
        r = 0;
        if (!dev->core->sync_q)
            r = queue_create(&dev->core->sync_q, dev, 16, false);
        if (r == 0)
            r = queue_start(dev->core->sync_q, op, iov, iovcnt, off, len, flags, sync_done, &w);
        if (r != -EAGAIN)
            break;
        pthread_mutex_unlock(&dev->core->sync_lock);
    }
    while (r == 0 && !w.done) {
        r = queue_reap_internal(dev->core->sync_q, 1);
        if (r > 0)
            r = 0;
    }
    if (r == 0)
        r = w.ret;
    pthread_mutex_unlock(&dev->core->sync_lock);
    if (r < 0) {
        /* The message is the request's, under the caller's name. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_detail());
        err_set_in(ctx, r, msg);
    }
    err_enter(ctx);
    return r;
}

int dev_preadv(struct vdisk_dev *dev, const struct iovec *iov, int iovcnt, uint64_t off)
{
    return dev_sync_io(dev, VDISK_OP_READ, iov, iovcnt, off, iov_length(iov, iovcnt), 0);
}

int dev_pwritev(struct vdisk_dev *dev, const struct iovec *iov, int iovcnt, uint64_t off,
                unsigned flags)
{
    return dev_sync_io(dev, VDISK_OP_WRITE, iov, iovcnt, off, iov_length(iov, iovcnt), flags);
}

int dev_pread(struct vdisk_dev *dev, void *buf, size_t len, uint64_t off)
{
    struct iovec v = {buf, len};
    return dev_preadv(dev, &v, 1, off);
}

int dev_pwrite(struct vdisk_dev *dev, const void *buf, size_t len, uint64_t off)
{
    struct iovec v = {(void *)buf, len};
    return dev_pwritev(dev, &v, 1, off, 0);
}

int dev_flush(struct vdisk_dev *dev)
{
    return dev_sync_io(dev, VDISK_OP_FLUSH, NULL, 0, 0, 0, 0);
}

void dev_set_growable(struct vdisk_dev *dev)
{
    dev->growable = true;
    if (dev->drv->set_growable)
        dev->drv->set_growable(dev);
}

int dev_truncate(struct vdisk_dev *dev, uint64_t size)
{
    if (!dev->drv->truncate)
        return err_set(-ENOTSUP, "%s: the %s driver cannot resize", dev->filename,
                       dev->drv->name);
    return dev->drv->truncate(dev, size);
}

int dev_preallocate(struct vdisk_dev *dev, uint64_t size)
{
    if (!dev->drv->preallocate)
        return err_set(-ENOTSUP, "%s: the %s driver cannot preallocate", dev->filename,
                       dev->drv->name);
    return dev->drv->preallocate(dev, size);
}

int dev_discard(struct vdisk_dev *dev, uint64_t off, uint64_t len)
{
    return dev_sync_io(dev, VDISK_OP_DISCARD, NULL, 0, off, len, 0);
}

int dev_write_zeroes(struct vdisk_dev *dev, uint64_t off, uint64_t len, unsigned flags)
{
    return dev_sync_io(dev, VDISK_OP_WRITE_ZEROES, NULL, 0, off, len, flags);
}

static int compressed_check(struct vdisk_dev *dev, uint64_t offset, uint64_t count)
{
    char *msg;
    int r = dev_check_request(dev, VDISK_OP_WRITE, offset, count, &msg);
    if (r < 0) {
        err_set(r, "%s", msg ? msg : strerror(-r));
        free(msg);
        return r;
    }
    if (!dev->drv->compress)
        return err_set(-ENOTSUP, "%s: the %s format cannot store compressed data",
                       dev->filename, dev->drv->name);
    return 0;
}

VDISK_EXPORT int vdisk_compress(vdisk_dev *dev, const void *buf, size_t count, void *out,
                                size_t out_size, size_t *out_len)
{
    err_enter(__func__);
    if (!dev->drv->compress)
        return err_set(-ENOTSUP, "%s: the %s format cannot store compressed data",
                       dev->filename, dev->drv->name);
    return dev->drv->compress(dev, buf, count, 0, out, out_size, out_len);
}

VDISK_EXPORT int vdisk_pwrite_compressed_data(vdisk_dev *dev, const void *data, size_t clen,
                                              uint64_t offset)
{
    err_enter(__func__);
    int r = compressed_check(dev, offset, 1);
    if (r < 0)
        return r;
    struct iovec piece = {(void *)data, clen};
    quiesce_sync_begin(dev);
    r = dev->drv->write_compressed(dev, &piece, 1, offset);
    quiesce_sync_end(dev);
    return r;
}

VDISK_EXPORT int vdisk_pwrite_compressed_datav(vdisk_dev *dev, const struct iovec *pieces,
                                               int n, uint64_t offset)
{
    err_enter(__func__);
    if (n < 0 || (n && !pieces))
        return err_set(-EINVAL, "invalid list of compressed clusters (count %d)", n);
    if (n == 0)
        return 0;
    int r = compressed_check(dev, offset, 1);
    if (r < 0)
        return r;
    quiesce_sync_begin(dev);
    r = dev->drv->write_compressed(dev, pieces, (size_t)n, offset);
    quiesce_sync_end(dev);
    return r;
}

bool dev_can_compress(const struct vdisk_dev *dev)
{
    return dev->drv->compress && dev->drv->write_compressed;
}

uint32_t dev_cluster_size(struct vdisk_dev *dev)
{
    struct vdisk_info in = {.struct_size = sizeof in};
    if (dev->drv->get_info)
        dev->drv->get_info(dev, &in);
    return in.cluster_size;
}

VDISK_EXPORT int vdisk_pwrite_compressed(vdisk_dev *dev, const void *buf, size_t count,
                                         uint64_t offset)
{
    err_enter(__func__);
    return dev_pwrite_compressed(dev, buf, count, offset);
}

int dev_pwrite_compressed(struct vdisk_dev *dev, const void *buf, size_t count, uint64_t offset)
{
    int r = compressed_check(dev, offset, count);
    if (r < 0)
        return r;
    void *out = malloc(count ? count : 1);
    if (!out)
        return err_set(-ENOMEM, "out of memory");
    size_t clen = 0;
    r = dev->drv->compress(dev, buf, count, offset, out, count, &clen);
    if (r == 0 && clen) {
        struct iovec piece = {out, clen};
        quiesce_sync_begin(dev);
        r = dev->drv->write_compressed(dev, &piece, 1, offset);
        quiesce_sync_end(dev);
    } else if (r == 0) {
        r = dev_pwrite(dev, buf, count, offset);
    }
    free(out);
    return r;
}

VDISK_EXPORT int vdisk_pread(vdisk_dev *dev, void *buf, size_t count, uint64_t offset)
{
    err_enter(__func__);
    return dev_pread(dev, buf, count, offset);
}

VDISK_EXPORT int vdisk_pwrite(vdisk_dev *dev, const void *buf, size_t count, uint64_t offset)
{
    err_enter(__func__);
    return dev_pwrite(dev, buf, count, offset);
}

VDISK_EXPORT int vdisk_preadv(vdisk_dev *dev, const struct iovec *iov, int iovcnt,
                              uint64_t offset)
{
    err_enter(__func__);
    if (iovcnt < 0 || (iovcnt && !iov))
        return err_set(-EINVAL, "invalid iovec (count %d)", iovcnt);
    return dev_preadv(dev, iov, iovcnt, offset);
}

VDISK_EXPORT int vdisk_pwritev(vdisk_dev *dev, const struct iovec *iov, int iovcnt,
                               uint64_t offset)
{
    err_enter(__func__);
    if (iovcnt < 0 || (iovcnt && !iov))
        return err_set(-EINVAL, "invalid iovec (count %d)", iovcnt);
    return dev_pwritev(dev, iov, iovcnt, offset, 0);
}

/* The VM state area: the driver checks the range and makes room (in a
 * quiesce section), then the I/O goes to the offset it gives, as a
 * REQ_VMSTATE request that the core keeps past the disk's end. */
static int vmstate_io(vdisk_dev *dev, bool write, void *buf, size_t count, uint64_t pos)
{
    if (!dev->drv->vmstate)
        return err_set(-ENOTSUP, "%s: the %s format has no VM state area", dev->filename,
                       dev->drv->name);
    if (count && !buf)
        return err_set(-EINVAL, "%s: no buffer for the VM state", dev->filename);
    if (count > VDISK_AIO_LEN_MAX)
        return err_set(-EINVAL, "%s: a VM state %s of %zu bytes is too long (at most %llu)",
                       dev->filename, write ? "write" : "read", count, VDISK_AIO_LEN_MAX);
    if (dev->align > 1 && (pos % dev->align || count % dev->align))
        return err_set(-EINVAL, "%s: VM state offset %" PRIu64 " and length %zu must be "
                       "multiples of %u bytes", dev->filename, pos, count, dev->align);
    if (write && !(dev->caps & VDISK_CAN_WRITE))
        return err_set(-EROFS, "%s: the image is open read-only", dev->filename);
    uint64_t off = 0;
    int r = quiesce_begin_op(dev);
    if (r < 0)
        return r;
    r = dev->drv->vmstate(dev, write, pos, count, &off);
    quiesce_end_op(dev);
    if (r < 0 || count == 0)
        return r;
    struct iovec v = {buf, count};
    return dev_sync_io(dev, write ? VDISK_OP_WRITE : VDISK_OP_READ, &v, 1, off, count,
                       REQ_VMSTATE);
}

VDISK_EXPORT int vdisk_vmstate_pread(vdisk_dev *dev, void *buf, size_t count, uint64_t pos)
{
    err_enter(__func__);
    return vmstate_io(dev, false, buf, count, pos);
}

VDISK_EXPORT int vdisk_vmstate_pwrite(vdisk_dev *dev, const void *buf, size_t count,
                                      uint64_t pos)
{
    err_enter(__func__);
    return vmstate_io(dev, true, (void *)buf, count, pos);
}

VDISK_EXPORT int vdisk_flush(vdisk_dev *dev)
{
    err_enter(__func__);
    return dev_flush(dev);
}

VDISK_EXPORT int vdisk_discard(vdisk_dev *dev, uint64_t offset, uint64_t length)
{
    err_enter(__func__);
    return dev_discard(dev, offset, length);
}

VDISK_EXPORT int vdisk_write_zeroes(vdisk_dev *dev, uint64_t offset, uint64_t length,
                                    unsigned flags)
{
    err_enter(__func__);
    return dev_write_zeroes(dev, offset, length,
                            (flags & VDISK_ZEROES_MAY_UNMAP) ? VDISK_REQ_MAY_UNMAP : 0);
}
