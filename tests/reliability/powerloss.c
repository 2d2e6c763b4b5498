/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/powerloss.c: power loss at every write of qcow2
 * workloads, on the fault-injecting device (formats/fault).
 *
 * A seeded workload (allocating and unaligned writes, discards, write
 * zeroes, compressed clusters and their overwrites, snapshots, resize,
 * amend, make_empty as qemu-img commit does, flushes) runs on qcow2 over
 * a fault disk.  At every write that reaches the disk, a hook takes the
 * post-crash images under several policies (drop the cache, keep it,
 * random writes, random sectors, an ordered prefix, a torn last write);
 * after the guest operation returns, each image is opened and checked:
 *   - it opens (a dirty lazy-refcounts image is repaired on open);
 *   - its size is one the guest has seen since the last completed flush;
 *   - every byte equals its value at the last completed flush or a value
 *     written (or being written) since, never anything else;
 *   - vdisk's check finds no corruption (leaks allowed), a leak repair
 *     leaves none, and qemu-img check agrees (leaks at most, nothing
 *     waived) on a sample, and on every image taken inside a snapshot
 *     operation.
 * A second test cuts the power for real (the device dies at write N) at a
 * sample of points and checks the same after the library's error paths.
 *
 * VDISK_POWERLOSS_POINTS (default 1200) is the number of write positions
 * to reach over all workloads; VDISK_POWERLOSS_QEMU_EVERY (default 20) how
 * often qemu-img check runs outside snapshot operations (0: never).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"

#define VSIZE (2u << 20)        /* initial virtual size */
#define MAXV (3u << 20)         /* after resizes */
#define LIMIT (64u << 20)
#define MAX_SNAPS 3
#define MAX_FAILURES 5

enum opk { OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH, OP_COMPRESS, OP_SNAP_CREATE,
           OP_SNAP_APPLY, OP_SNAP_DELETE, OP_RESIZE, OP_AMEND, OP_EMPTY, OP_KINDS };
static const char *const op_names[] = {"write", "write-zeroes", "discard", "flush",
                                       "compressed-write", "snapshot-create", "snapshot-apply",
                                       "snapshot-delete", "resize", "amend", "make-empty"};

struct cfg {
    const char *name;
    unsigned cluster;
    bool lazy, backing, extl2;
    unsigned weights[OP_KINDS];
    unsigned ops;      /* guest operations per round */
};

/* A value some byte may hold after a crash: what an operation since the
 * last completed flush wrote (or was writing) there. */
struct alt {
    uint64_t off, len;
    uint8_t *data;
};

struct snap {
    char name[16];
    uint8_t *data;
    uint64_t size;
};

struct capture {
    uint8_t *img;
    size_t len;
    enum fault_policy policy;
    uint64_t wno;
};

struct ctx {
    const struct cfg *cfg;
    struct fault_disk *f;
    struct vdisk_dev *dev;
    uint64_t rng;
    uint64_t opno;
    const char *cur_op;
    /* The model. */
    uint8_t *now, *acked, *base;
    uint64_t vsize, acked_size;
    struct alt *alts;
    size_t nalts, capalts;
    uint64_t sizes[64];
    unsigned nsizes;
    struct snap snaps[MAX_SNAPS];
    unsigned nsnaps, snap_serial;
    bool lazy_now;
    bool ack_pending;           /* a flush completed: ack after the checks */
    /* Crash images waiting to be checked. */
    struct capture *caps;
    size_t ncaps, capcaps;
    uint64_t drop_flushes;      /* fault_flushes() at the last drop-all image */
    bool drop_taken;
    /* Results. */
    unsigned points, images, qemu_checks, qemu_every;
    int cur_kind;                     /* the operation running (enum opk) */
    unsigned op_points[OP_KINDS];     /* crash points (writes) inside each kind */
    unsigned snap_qemu[OP_KINDS];     /* qemu-img checks of their crash images */
    unsigned failures;
    char failure[MAX_FAILURES][768];
};

static struct vdisk_open_params test_params(void)
{
    struct vdisk_open_params p = {
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = VDISK_ENGINE_THREADS,
        .threads = 1,
    };
    return p;
}

static unsigned env_uint(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

static void flag(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void flag(struct ctx *c, const char *fmt, ...)
{
    if (c->failures < MAX_FAILURES) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->failure[c->failures], sizeof c->failure[0], fmt, ap);
        va_end(ap);
        fprintf(stderr, "FAIL %s\n", c->failure[c->failures]);
    }
    c->failures++;
}

/* ---- The model ------------------------------------------------------------ */

static void alt_add(struct ctx *c, uint64_t off, uint64_t len, const uint8_t *data)
{
    if (len == 0)
        return;
    if (c->nalts == c->capalts) {
        c->capalts = c->capalts ? c->capalts * 2 : 16;
        c->alts = realloc(c->alts, c->capalts * sizeof *c->alts);
        ck_assert(c->alts != NULL);
    }
    struct alt *a = &c->alts[c->nalts++];
    a->off = off;
    a->len = len;
    a->data = malloc(len);
    ck_assert(a->data != NULL);
    if (data)
        memcpy(a->data, data, len);
    else
        memset(a->data, 0, len);
}

static void alts_clear(struct ctx *c)
{
    for (size_t i = 0; i < c->nalts; i++)
        free(c->alts[i].data);
    c->nalts = 0;
}

static void size_seen(struct ctx *c, uint64_t size)
{
    for (unsigned i = 0; i < c->nsizes; i++)
        if (c->sizes[i] == size)
            return;
    ck_assert(c->nsizes < 64);
    c->sizes[c->nsizes++] = size;
}

/* A guest flush completed: what the guest sees now is durable. */
static void model_acked(struct ctx *c)
{
    memcpy(c->acked, c->now, MAXV);
    c->acked_size = c->vsize;
    alts_clear(c);
    c->nsizes = 0;
    size_seen(c, c->vsize);
}

static void set_size(struct ctx *c, uint64_t size)
{
    if (size < c->vsize)
        memset(c->now + size, 0, c->vsize - size);
    c->vsize = size;
    size_seen(c, size);
}

/* ---- Crash images --------------------------------------------------------- */

static void capture(struct ctx *c, enum fault_policy p, uint64_t wno)
{
    if (c->ncaps == c->capcaps) {
        c->capcaps = c->capcaps ? c->capcaps * 2 : 16;
        c->caps = realloc(c->caps, c->capcaps * sizeof *c->caps);
        ck_assert(c->caps != NULL);
    }
    struct capture *k = &c->caps[c->ncaps];
    ck_assert(fault_image(c->f, p, c->rng ^ wno * 0x9e3779b97f4a7c15ull, &k->img, &k->len) == 0);
    k->policy = p;
    k->wno = wno;
    c->ncaps++;
}

/* The fault disk's hook: the power may go off at this write. */
static void on_write(struct fault_disk *f, uint64_t wno, void *opaque)
{
    struct ctx *c = opaque;
    c->points++;
    c->op_points[c->cur_kind]++;
    /* Dropping the cache gives the same image until the next flush. */
    if (!c->drop_taken || c->drop_flushes != fault_flushes(f)) {
        capture(c, FAULT_DROP_ALL, wno);
        c->drop_taken = true;
        c->drop_flushes = fault_flushes(f);
    }
    if (fault_cached(f) == 0)
        return;
    capture(c, FAULT_KEEP_ALL, wno);
    /* One more policy per write, in turn, with its own random choices. */
    static const enum fault_policy more[] = {FAULT_RANDOM_SECTORS, FAULT_TEAR_LAST,
                                             FAULT_RANDOM_WRITES, FAULT_KEEP_PREFIX};
    if (fault_cached(f) > 1 || wno % 2)
        capture(c, more[wno % 4], wno);
}

static void report_line(void *opaque, const char *line)
{
    char *buf = opaque;
    size_t n = strlen(buf);
    if (n < 1000)
        snprintf(buf + n, 1024 - n, "%s%s", n ? "; " : "", line);
}

static bool qemu_ok(int status, bool leaks_ok)
{
    return status == 0 || (leaks_ok && status == 3);
}

/* Checks one post-crash image against the model. */
static void check_image(struct ctx *c, const uint8_t *img, size_t len, const char *what)
{
    char label[256];
    snprintf(label, sizeof label, "%s: %s (op %llu %s)", c->cfg->name, what,
             (unsigned long long)c->opno, c->cur_op);
    c->images++;
    /* qemu-img check on a sample, and on every image of a snapshot
     * operation (COPIED and refcounts must agree at every write there). */
    bool snap_op = strncmp(c->cur_op, "snapshot-", 9) == 0;
    bool qemu = c->qemu_every && (snap_op || c->images % c->qemu_every == 0) &&
                have_program("qemu-img");
    bool dirty = len >= 80 && (img[79] & 1);
    const char *crash_file = scratch("crash.qcow2");
    if (qemu && !dirty) {
        /* Before vdisk touches it: leaks allowed, nothing else. */
        write_file(crash_file, img, len);
        struct run *r = run("qemu-img check -q '%s'", crash_file);
        c->qemu_checks++;
        if (snap_op)
            c->snap_qemu[c->cur_kind]++;
        if (!qemu_ok(r->status, true))
            flag(c, "%s: qemu-img check of the crash image exits %d: %s%s", label, r->status,
                 r->out, r->err);
    }
    struct vdisk_open_params p = test_params();
    struct fault_disk *g = fault_new(img, len, LIMIT);
    ck_assert(g != NULL);
    struct vdisk_dev *file, *dev;
    ck_assert(fault_open(&file, g, scratch("top.qcow2"), &p) == 0);
    if (dev_open_format(&dev, file, "qcow2", &p, NULL) < 0) {
        flag(c, "%s: the image does not open: %s", label, vdisk_get_error());
        write_file(scratch("failed.qcow2"), img, len);
        dev_unref(file);
        fault_free(g);
        return;
    }
    uint64_t size = dev_size(dev);
    bool size_ok = false;
    for (unsigned i = 0; i < c->nsizes; i++)
        size_ok |= c->sizes[i] == size;
    if (!size_ok)
        flag(c, "%s: the virtual size is %llu, not one of the %u sizes since the last flush "
             "(now %llu)", label, (unsigned long long)size, c->nsizes,
             (unsigned long long)c->vsize);
    uint64_t n = size < MAXV ? size : MAXV;
    uint8_t *got = malloc(n ? n : 1);
    ck_assert(got != NULL);
    if (dev_pread(dev, got, n, 0) < 0) {
        flag(c, "%s: read fails: %s", label, vdisk_get_error());
    } else {
        for (uint64_t i = 0; i < n; i++) {
            if (got[i] == c->acked[i])
                continue;
            bool ok = false;
            for (size_t k = 0; k < c->nalts && !ok; k++) {
                const struct alt *a = &c->alts[k];
                ok = i >= a->off && i - a->off < a->len && a->data[i - a->off] == got[i];
            }
            if (!ok) {
                flag(c, "%s: byte %llu reads 0x%02x; flushed 0x%02x, now 0x%02x, and no "
                     "write since the last flush (%zu of them) put it there", label,
                     (unsigned long long)i, got[i], c->acked[i], c->now[i], c->nalts);
                write_file(scratch("failed.qcow2"), img, len);
                break;
            }
        }
    }
    free(got);
    char lines[1024] = "";
    struct vdisk_check_result res = {.struct_size = sizeof res};
    int r = vdisk_check(dev, 0, &res, report_line, lines);
    if (r < 0 || res.corruptions || res.check_errors)
        flag(c, "%s: check returns %d (%s): %lld corruptions, %lld check errors: %s", label, r,
             r < 0 ? vdisk_get_error() : "", (long long)res.corruptions,
             (long long)res.check_errors, lines);
    lines[0] = '\0';
    r = vdisk_check(dev, VDISK_CHECK_REPAIR_LEAKS, &res, report_line, lines);
    if (r < 0 || res.corruptions || res.check_errors || res.leaks)
        flag(c, "%s: check -r leaks returns %d: %lld corruptions, %lld leaks left: %s", label,
             r, (long long)res.corruptions, (long long)res.leaks, lines);
    dev_unref(dev);
    if (qemu) {
        uint8_t *after;
        size_t alen;
        ck_assert(fault_durable(g, &after, &alen) == 0);
        write_file(crash_file, after, alen);
        free(after);
        struct run *q = run("qemu-img check -q '%s'", crash_file);
        c->qemu_checks++;
        if (!qemu_ok(q->status, false))
            flag(c, "%s: qemu-img check after vdisk's repair exits %d: %s%s", label, q->status,
                 q->out, q->err);
    }
    fault_free(g);
}

static void check_captures(struct ctx *c)
{
    for (size_t i = 0; i < c->ncaps; i++) {
        struct capture *k = &c->caps[i];
        char what[96];
        snprintf(what, sizeof what, "crash at write %llu, %s", (unsigned long long)k->wno,
                 fault_policy_name(k->policy));
        check_image(c, k->img, k->len, what);
        free(k->img);
    }
    c->ncaps = 0;
}

/* Checks the crash images of the last operation, then takes its flush. */
static void settle(struct ctx *c)
{
    check_captures(c);
    if (c->ack_pending)
        model_acked(c);
    c->ack_pending = false;
}

/* ---- The workload --------------------------------------------------------- */

static void pattern(uint8_t *buf, uint64_t off, uint64_t len, uint64_t tag, bool compressible)
{
    for (uint64_t i = 0; i < len; i++) {
        uint64_t x = off + i;
        buf[i] = compressible ? (uint8_t)(tag * 37 + (x & 15) * 11 + 1)
                              : (uint8_t)((x >> 4) * 29 + (x & 15) + tag * 151 + 1);
    }
}

static int pick_op(struct ctx *c)
{
    unsigned total = 0;
    for (int k = 0; k < OP_KINDS; k++)
        total += c->cfg->weights[k];
    unsigned r = (unsigned)(rng_next(&c->rng) % total);
    for (int k = 0; k < OP_KINDS; k++) {
        if (r < c->cfg->weights[k])
            return k;
        r -= c->cfg->weights[k];
    }
    return OP_WRITE;
}

/* Runs one guest operation; returns false when the device went dead. */
static bool guest_op(struct ctx *c, int k)
{
    uint64_t cs = c->cfg->cluster;
    uint64_t tag = ++c->opno;
    int r = 0;
    c->cur_op = op_names[k];
    c->cur_kind = k;
    switch (k) {
    case OP_WRITE: {
        uint64_t len = 1 + rng_next(&c->rng) % (rng_next(&c->rng) % 4 ? cs * 2 : 3 * cs + 100);
        uint64_t off = rng_next(&c->rng) % (c->vsize - len);
        if (rng_next(&c->rng) % 2) /* often sector-aligned, as guests write */
            off &= ~511ull, len = (len + 511) & ~511ull;
        if (off + len > c->vsize)
            len = c->vsize - off;
        uint8_t *buf = malloc(len);
        pattern(buf, off, len, tag, false);
        alt_add(c, off, len, buf);
        r = dev_pwrite(c->dev, buf, len, off);
        if (r == 0)
            memcpy(c->now + off, buf, len);
        free(buf);
        break;
    }
    case OP_ZERO:
    case OP_DISCARD: {
        uint64_t len = 1 + rng_next(&c->rng) % (4 * cs);
        uint64_t off = rng_next(&c->rng) % (c->vsize - len);
        if (rng_next(&c->rng) % 2)
            off = off / cs * cs;
        if (k == OP_ZERO) {
            alt_add(c, off, len, NULL);
            unsigned fl = rng_next(&c->rng) % 2 ? VDISK_REQ_MAY_UNMAP : 0;
            r = dev_write_zeroes(c->dev, off, len, fl);
            if (r == 0)
                memset(c->now + off, 0, len);
        } else {
            /* Whole clusters read as zeroes; partial ones do not change. */
            uint64_t s = (off + cs - 1) / cs * cs, e = (off + len) / cs * cs;
            if (off + len == c->vsize)
                e = c->vsize;
            if (s < e)
                alt_add(c, s, e - s, NULL);
            r = dev_discard(c->dev, off, len);
            if (r == 0 && s < e)
                memset(c->now + s, 0, e - s);
        }
        break;
    }
    case OP_FLUSH:
        /* Crash images taken during the flush are checked against the
         * model before it: the flush had not completed. */
        r = dev_flush(c->dev);
        if (r == 0)
            c->ack_pending = true;
        break;
    case OP_COMPRESS: {
        uint64_t off = rng_next(&c->rng) % (c->vsize / cs) * cs;
        uint8_t *buf = malloc(cs);
        pattern(buf, off, cs, tag, true);
        alt_add(c, off, cs, buf);
        r = vdisk_pwrite_compressed(c->dev, buf, cs, off);
        if (r == 0) {
            memcpy(c->now + off, buf, cs);
            /* Often overwrite part of the compressed cluster right away. */
            if (rng_next(&c->rng) % 2) {
                uint64_t o = off + rng_next(&c->rng) % cs, l = 1 + rng_next(&c->rng) % (cs / 2);
                if (o + l > c->vsize)
                    l = c->vsize - o;
                pattern(buf, o, l, tag + 1000000, false);
                alt_add(c, o, l, buf);
                r = dev_pwrite(c->dev, buf, l, o);
                if (r == 0)
                    memcpy(c->now + o, buf, l);
            }
        }
        free(buf);
        break;
    }
    case OP_SNAP_CREATE: {
        if (c->nsnaps == MAX_SNAPS)
            return true;
        struct snap *s = &c->snaps[c->nsnaps];
        snprintf(s->name, sizeof s->name, "s%u", c->snap_serial++);
        r = vdisk_snapshot_create(c->dev, s->name);
        if (r == 0) {
            s->data = malloc(MAXV);
            memcpy(s->data, c->now, MAXV);
            s->size = c->vsize;
            c->nsnaps++;
        }
        break;
    }
    case OP_SNAP_APPLY: {
        if (!c->nsnaps)
            return true;
        struct snap *s = &c->snaps[rng_next(&c->rng) % c->nsnaps];
        alt_add(c, 0, MAXV, s->data);
        size_seen(c, s->size);
        r = vdisk_snapshot_apply(c->dev, s->name);
        if (r == 0) {
            memcpy(c->now, s->data, MAXV);
            c->vsize = s->size;
        }
        break;
    }
    case OP_SNAP_DELETE: {
        if (!c->nsnaps)
            return true;
        unsigned i = (unsigned)(rng_next(&c->rng) % c->nsnaps);
        r = vdisk_snapshot_delete(c->dev, c->snaps[i].name);
        if (r == 0) {
            free(c->snaps[i].data);
            c->snaps[i] = c->snaps[--c->nsnaps];
        }
        break;
    }
    case OP_RESIZE: {
        if (c->vsize + cs * 4 > MAXV)
            return true;
        uint64_t ns = c->vsize + 512 * (1 + rng_next(&c->rng) % (cs * 4 / 512));
        alt_add(c, c->vsize, ns - c->vsize, NULL);
        size_seen(c, ns);
        r = vdisk_resize(c->dev, ns, 0);
        if (r == 0)
            set_size(c, ns);
        break;
    }
    case OP_AMEND: {
        vdisk_options *o;
        ck_assert(vdisk_options_new(&o) == 0);
        vdisk_options_set(o, "lazy_refcounts", c->lazy_now ? "off" : "on");
        r = vdisk_amend(c->dev, o);
        vdisk_options_free(o);
        if (r == 0)
            c->lazy_now = !c->lazy_now;
        break;
    }
    case OP_EMPTY: {
        /* qemu-img commit: the data went to the backing file (not modelled
         * here: the backing file is not on the fault disk), the overlay is
         * emptied.  Refused with snapshots. */
        if (c->nsnaps)
            return true;
        uint8_t *after = calloc(1, MAXV);
        if (c->cfg->backing)
            memcpy(after, c->base, VSIZE);
        memset(after + c->vsize, 0, MAXV - c->vsize);
        alt_add(c, 0, MAXV, after);
        r = vdisk_make_empty(c->dev);
        if (r == 0)
            memcpy(c->now, after, MAXV);
        free(after);
        break;
    }
    }
    if (r < 0 && !fault_crashed(c->f))
        flag(c, "%s: op %llu (%s) fails: %s", c->cfg->name, (unsigned long long)c->opno,
             op_names[k], vdisk_get_error());
    return !fault_crashed(c->f);
}

/* Makes the image the workloads start from; returns its bytes. */
static uint8_t *make_image(struct ctx *c, size_t *len)
{
    const char *tmpl = scratch("template.qcow2");
    unlink(tmpl);
    vdisk_options *o;
    ck_assert(vdisk_options_new(&o) == 0);
    char cs[32];
    snprintf(cs, sizeof cs, "%u", c->cfg->cluster);
    vdisk_options_set(o, "cluster_size", cs);
    vdisk_options_set(o, "lazy_refcounts", c->cfg->lazy ? "on" : "off");
    if (c->cfg->extl2)
        vdisk_options_set(o, "extended_l2", "on");
    if (c->cfg->backing) {
        vdisk_options_set(o, "backing_file", "base.raw");
        vdisk_options_set(o, "backing_fmt", "raw");
    }
    ck_assert_msg(vdisk_create(tmpl, "qcow2", VSIZE, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    return read_file(tmpl, len);
}

static void ctx_init(struct ctx *c, const struct cfg *cfg, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    c->now = calloc(1, MAXV);
    c->acked = calloc(1, MAXV);
    c->base = calloc(1, MAXV);
    ck_assert(c->now && c->acked && c->base);
    c->qemu_every = env_uint("VDISK_POWERLOSS_QEMU_EVERY", 20);
    c->lazy_now = cfg->lazy;
    if (cfg->backing) {
        pattern(c->base, 0, VSIZE, 7777, false);
        const char *b = scratch("base.raw");
        if (access(b, F_OK) != 0)
            write_file(b, c->base, VSIZE);
        memcpy(c->now, c->base, VSIZE);
    }
    c->vsize = VSIZE;
    model_acked(c);
}

static void ctx_fini(struct ctx *c)
{
    alts_clear(c);
    free(c->alts);
    for (size_t i = 0; i < c->ncaps; i++)
        free(c->caps[i].img);
    free(c->caps);
    for (unsigned i = 0; i < c->nsnaps; i++)
        free(c->snaps[i].data);
    free(c->now);
    free(c->acked);
    free(c->base);
}

/* Opens the workload's image over a fresh fault disk. */
static void open_image(struct ctx *c)
{
    size_t len;
    uint8_t *img = make_image(c, &len);
    c->f = fault_new(img, len, LIMIT);
    free(img);
    ck_assert(c->f != NULL);
    struct vdisk_open_params p = test_params();
    struct vdisk_dev *file;
    ck_assert(fault_open(&file, c->f, scratch("top.qcow2"), &p) == 0);
    ck_assert_msg(dev_open_format(&c->dev, file, "qcow2", &p, NULL) == 0, "%s",
                  vdisk_get_error());
}

/* Every write a crash point: one round of the workload. */
static void round_hooked(struct ctx *c)
{
    open_image(c);
    fault_set_hook(c->f, on_write, c);
    for (unsigned i = 0; i < c->cfg->ops; i++) {
        int k = pick_op(c);
        guest_op(c, k);
        settle(c);
        if (c->failures >= MAX_FAILURES)
            break;
    }
    /* The final flush and close are crash points too. */
    c->cur_op = "close";
    c->cur_kind = OP_FLUSH;
    dev_unref(c->dev);
    check_captures(c);
    fault_set_hook(c->f, NULL, NULL);
    /* Closed cleanly: everything reads back as the guest left it. */
    c->cur_op = "clean close";
    model_acked(c);
    uint8_t *img;
    size_t len;
    ck_assert(fault_durable(c->f, &img, &len) == 0);
    check_image(c, img, len, "after a clean close");
    free(img);
    fault_free(c->f);
}

static const struct cfg configs[] = {
    {"alloc", 4096, false, false, false, {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, 60},
    {"alloc-backing", 4096, false, true, false, {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, 60},
    {"alloc-lazy", 4096, true, false, false, {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, 60},
    {"alloc-lazy-backing", 4096, true, true, false, {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, 60},
    {"alloc-64k-extl2-backing", 65536, false, true, true, {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, 40},
    {"compressed", 4096, false, false, false, {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0}, 60},
    {"compressed-lazy-backing", 4096, true, true, false, {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0}, 60},
    {"snapshots", 4096, false, false, false, {8, 2, 2, 3, 2, 2, 2, 2, 0, 0, 0}, 50},
    {"snapshots-lazy-backing", 4096, true, true, false, {8, 2, 2, 3, 2, 2, 2, 2, 0, 0, 0}, 50},
    {"resize-amend-commit", 4096, false, true, false, {8, 2, 2, 3, 1, 0, 0, 0, 2, 2, 1}, 50},
    {"resize-amend-commit-lazy", 4096, true, false, false, {8, 2, 2, 3, 1, 0, 0, 0, 2, 2, 1}, 50},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

static unsigned total_points, total_images, total_qemu;

static void run_config(unsigned i)
{
    const struct cfg *cfg = &configs[i];
    unsigned want = (env_uint("VDISK_POWERLOSS_POINTS", 1200) + NCONFIGS - 1) / NCONFIGS;
    unsigned points = 0, images = 0, qemu = 0, failures = 0, rounds = 0;
    unsigned op_points[OP_KINDS] = {0}, snap_qemu[OP_KINDS] = {0};
    char first[MAX_FAILURES][768];
    unsigned nfirst = 0;
    /* Rounds until the budget of crash points is spent, and (up to 20
     * rounds) until every snapshot operation the workload runs has had 20
     * crash points of its own. */
    for (uint64_t seed = 1; failures == 0; seed++, rounds++) {
        bool snaps_short = false;
        for (int k = OP_SNAP_CREATE; k <= OP_SNAP_DELETE; k++)
            snaps_short |= cfg->weights[k] && op_points[k] < 20;
        if (points >= want && (!snaps_short || rounds >= 20))
            break;
        struct ctx c;
        ctx_init(&c, cfg, seed * 1000 + i);
        round_hooked(&c);
        for (int k = 0; k < OP_KINDS; k++) {
            op_points[k] += c.op_points[k];
            snap_qemu[k] += c.snap_qemu[k];
        }
        points += c.points;
        images += c.images;
        qemu += c.qemu_checks;
        failures += c.failures;
        for (unsigned k = 0; k < c.failures && k < MAX_FAILURES && nfirst < MAX_FAILURES; k++)
            memcpy(first[nfirst++], c.failure[k], sizeof first[0]);
        ctx_fini(&c);
    }
    total_points += points;
    total_images += images;
    total_qemu += qemu;
    printf("powerloss %s: %u rounds, %u crash points (writes), %u images checked, "
           "%u qemu-img checks, %u failures\n", cfg->name, rounds, points, images, qemu,
           failures);
    printf("powerloss %s: crash points by operation:", cfg->name);
    for (int k = 0; k < OP_KINDS; k++)
        if (op_points[k])
            printf(" %s %u", op_names[k], op_points[k]);
    printf("\n");
    fflush(stdout);
    ck_assert_msg(failures == 0, "%s: %u failures; first: %s%s%s", cfg->name, failures,
                  nfirst ? first[0] : "", nfirst > 1 ? "\nsecond: " : "",
                  nfirst > 1 ? first[1] : "");
    /* The snapshot operations are reached, and qemu-img judges their
     * crash images (it calls a COPIED flag out of step an error). */
    for (int k = OP_SNAP_CREATE; k <= OP_SNAP_DELETE; k++) {
        if (!cfg->weights[k])
            continue;
        ck_assert_msg(op_points[k] >= 20, "%s: only %u crash points inside %s", cfg->name,
                      op_points[k], op_names[k]);
        /* (A lazy-refcounts image is dirty from its first write on: qemu-img
         * check would count what the dirty bit allows, vdisk repairs it.) */
        if (!cfg->lazy && have_program("qemu-img") && env_uint("VDISK_POWERLOSS_QEMU_EVERY", 20))
            ck_assert_msg(snap_qemu[k] >= 20, "%s: only %u qemu-img checks of %s crash images",
                          cfg->name, snap_qemu[k], op_names[k]);
    }
}

START_TEST(every_write)
{
    run_config((unsigned)_i);
}
END_TEST

/* ---- Real power cuts ------------------------------------------------------ */

/*
 * The device dies at write N: the library's error paths run (every later
 * request fails), the device is closed, and the image left behind is
 * checked like the others, under every policy.
 */
START_TEST(device_dies)
{
    const struct cfg *cfg = &configs[(unsigned)_i];
    /* Count the writes of round 1. */
    struct ctx c;
    ctx_init(&c, cfg, 4242);
    open_image(&c);
    for (unsigned i = 0; i < cfg->ops; i++) {
        guest_op(&c, pick_op(&c));
        settle(&c);
    }
    dev_unref(c.dev);
    uint64_t total = fault_writes(c.f);
    fault_free(c.f);
    ctx_fini(&c);
    unsigned samples = env_uint("VDISK_POWERLOSS_CUTS", 12), failures = 0, checked = 0;
    for (unsigned s = 0; s < samples; s++) {
        uint64_t n = 1 + (total * s) / samples + s % 3;
        ctx_init(&c, cfg, 4242);
        open_image(&c);
        fault_crash_at(c.f, n);
        for (unsigned i = 0; i < cfg->ops && guest_op(&c, pick_op(&c)); i++)
            settle(&c);
        dev_unref(c.dev); /* the flush fails: the power is off */
        if (!fault_crashed(c.f))
            fault_crash_now(c.f);
        for (int p = 0; p < FAULT_POLICIES; p++) {
            uint8_t *img;
            size_t len;
            ck_assert(fault_image(c.f, (enum fault_policy)p, n, &img, &len) == 0);
            char what[96];
            snprintf(what, sizeof what, "power cut at write %llu, %s", (unsigned long long)n,
                     fault_policy_name((enum fault_policy)p));
            check_image(&c, img, len, what);
            free(img);
            checked++;
        }
        failures += c.failures;
        char first[768];
        snprintf(first, sizeof first, "%s", c.failures ? c.failure[0] : "");
        fault_free(c.f);
        ctx_fini(&c);
        ck_assert_msg(failures == 0, "%s", first);
    }
    printf("powerloss cuts %s: %u power cuts of %llu writes, %u images checked\n", cfg->name,
           samples, (unsigned long long)total, checked);
}
END_TEST

int main(void)
{
    if (chdir(scratch_dir()) != 0)
        return 1;
    if (env_uint("VDISK_POWERLOSS_QEMU_EVERY", 20) && !have_program("qemu-img"))
        skip_note("qemu-img check of the crash images: qemu-img is not installed");
    Suite *s = suite_create("powerloss");
    TCase *tc = tcase_create("every-write");
    tcase_set_timeout(tc, 3600);
    tcase_add_loop_test(tc, every_write, 0, (int)NCONFIGS);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("device-dies");
    tcase_set_timeout(tc2, 3600);
    tcase_add_loop_test(tc2, device_dies, 0, (int)NCONFIGS);
    suite_add_tcase(s, tc2);
    int r = run_suite(s);
    printf("powerloss: %u crash points, %u images checked, %u qemu-img checks\n", total_points,
           total_images, total_qemu);
    return r;
}
