/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/powerloss.c: power loss at every write of qcow2
 * workloads, on the fault-injecting device (tests/common/fault.h).
 *
 * A seeded workload (allocating and unaligned writes, discards, write
 * zeroes, compressed clusters (one or a run at a time) and their
 * overwrites, snapshots, resize both ways, amend, make_empty as qemu-img
 * commit does, flushes, and batches of requests in flight at once from
 * two threads through the async queue)
 * runs on qcow2 over a fault disk.  The workloads cover v2 and v3 images,
 * refcount widths 1, 16 and 64, zlib and zstd, clusters of 512 bytes to
 * 64 KiB, extended L2 entries, lazy refcounts and backing files; the
 * 512-byte-cluster ones grow the file over many refcount blocks, grow the
 * refcount table and move the L1 table again and again.
 *
 * At every write that reaches the disk, a hook takes the post-crash images
 * under several policies (drop the cache, keep it, random writes, random
 * sectors, an ordered prefix, a torn last write); after the guest
 * operation returns, each image is opened and checked:
 *   - it opens (a dirty lazy-refcounts image is repaired on open);
 *   - its size is one the guest has seen since the last completed flush;
 *   - every byte equals its value at the last completed flush or a value
 *     written (or being written) since, never anything else;
 *   - it has every snapshot the guest took (and did not start deleting),
 *     perhaps the one being taken or deleted, no other; each one reads
 *     back exactly as the disk was when it was taken;
 *   - vdisk's check finds no corruption (leaks allowed), a leak repair
 *     leaves none, and on a sample qemu-img check agrees.
 * A second test cuts the power for real (the device dies at write N) at a
 * sample of points and checks the same after the library's error paths.
 *
 * Each crash point (write) is classified by what it lands on in the image
 * (refcount block, new or updated; refcount table, new or an entry; L1
 * table, moved or updated; L2 table; snapshot table and L1 tables; header
 * fields; guest data), comparing the image's layout before and after the
 * operation; the run ends with that table and the crash points per
 * operation.
 *
 * Environment:
 *   VDISK_POWERLOSS_SEED     the run's seed (default: random; printed, and
 *                            every failure prints how to replay it).  Runs
 *                            with async batches interleave two threads, so
 *                            their crash points vary a little between
 *                            replays; the operations do not.
 *   VDISK_POWERLOSS_ONLY     run only the workloads whose name contains it
 *   VDISK_POWERLOSS_IMAGES   crash images to check over all workloads
 *                            (default 15000, a fifth of it in sanitizer
 *                            builds; shared by the workloads by weight;
 *                            the real power cuts come on top)
 *   VDISK_POWERLOSS_NIGHTLY  1: twenty times as many images, qemu-img check
 *                            twice as often (a nightly run: 30 to 60
 *                            minutes; run the program, not CTest)
 *   VDISK_POWERLOSS_QEMU_EVERY  qemu-img check on one image in N (default
 *                            100), and on the first image of each kind of
 *                            crash point of each workload; 0: never
 *   VDISK_POWERLOSS_CUTS     real power cuts per workload (default 6)
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <vdisk/queue.h>
#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"
#include "options_internal.h"

#define VSIZE (2u << 20)        /* initial virtual size (default) */
#define MAXV (3u << 20)         /* after resizes (default) */
#define LIMIT (64u << 20)
#define SNAP_SLOTS 16
#define MAX_FAILURES 5
#define BATCH_MAX 10

/* The sanitizer pass checks the same paths fewer times; qemu-img, not
 * sanitized, checks the kinds of crash point in the normal pass
 * (SANITIZED: harness.h). */
#if SANITIZED
#define BUDGET_DIVISOR 5
#define FIRST_OF_EACH 0
#else
#define BUDGET_DIVISOR 1
#define FIRST_OF_EACH 1
#endif

enum opk { OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH, OP_COMPRESS, OP_SNAP_CREATE,
           OP_SNAP_APPLY, OP_SNAP_DELETE, OP_RESIZE, OP_AMEND, OP_EMPTY, OP_BATCH, OP_SHRINK,
           OP_KINDS };
#define OP_CLOSE OP_KINDS /* the final flush and close, in the statistics */
static const char *const op_names[] = {"write", "write-zeroes", "discard", "flush",
                                       "compressed-write", "snapshot-create", "snapshot-apply",
                                       "snapshot-delete", "resize", "amend", "make-empty",
                                       "async-batch", "shrink", "close"};

/* What a crash point's write lands on (see classify()). */
enum wclass { W_DATA, W_HEADER, W_HEADER_REFT, W_HEADER_L1, W_HEADER_SNAP, W_REFT_GROW,
              W_REFT_ENTRY, W_RB_NEW, W_RB_UPDATE, W_L1_GROW, W_L1_UPDATE, W_L2_NEW,
              W_L2_UPDATE, W_SNAPTABLE, W_SNAPL1, W_CLASSES };
static const char *const class_names[] = {
    "guest data (compressed too)",
    "header, other fields",
    "header: refcount table moved",
    "header: L1 table moved",
    "header: snapshot table",
    "refcount table, the new one (growth)",
    "refcount table entry (a new block)",
    "refcount block, new (allocation)",
    "refcount block, update",
    "L1 table, the new one (growth)",
    "L1 table, update",
    "L2 table, new",
    "L2 table, update",
    "snapshot table",
    "snapshot L1 table",
};

struct cfg {
    const char *name;
    unsigned cluster;
    bool lazy, backing, extl2;
    unsigned weights[OP_KINDS];
    unsigned ops;      /* guest operations per round */
    /* 0 means the default. */
    unsigned compat;          /* 2: compat=0.10 (else 1.1) */
    unsigned refbits;         /* refcount_bits (16) */
    bool amend_refbits;       /* amend changes refcount_bits (16 <-> 4), a rebuild of
                                 the refcount structure, instead of lazy_refcounts */
    const char *compression;  /* compression_type (zlib) */
    unsigned vsize, maxv;     /* initial and largest virtual size (VSIZE, MAXV) */
    unsigned maxwrite;        /* longest guest write (3 clusters + 100) */
    unsigned resize_step;     /* largest growth per resize (4 clusters) */
    unsigned snaps;           /* snapshots kept at once (3) */
    bool sequential;          /* writes one after the other (grows the file fast) */
    unsigned prefill;         /* bytes written and flushed before the crash points
                                 (less up to 256 KiB, at random) */
    unsigned share;           /* weight in the image budget (1) */
};

/* A value some byte may hold after a crash: what an operation since the
 * last completed flush wrote (or was writing) there. */
struct alt {
    uint64_t off, len;
    uint8_t *data;
};

/* A snapshot the guest took (or is taking, or deleting). */
struct snap {
    char name[16];
    uint8_t *data;     /* the disk when it was taken; NULL: a free slot */
    uint64_t size;
    bool sure;         /* every crash image has it; else it may be there */
    bool alive;        /* the guest has it */
};

/* A crash image, kept as the sectors where it differs from the image the
 * operation began on (struct ctx.ref). */
struct capture {
    uint32_t *sec;
    uint8_t *data;
    size_t nsec, len;
    enum fault_policy policy;
    uint64_t wno;
    size_t wi;         /* its write in struct ctx.wlog */
};

/* A write of the current operation: a crash point. */
struct wlog {
    uint64_t wno, off, len;
    int cls;
};

/* The layout of an image: what each cluster holds. */
enum kind { K_DATA, K_L2, K_RB, K_SNAPL1, K_SNAPT, K_L1, K_REFT, K_HEADER };
struct layout {
    unsigned cbits;
    uint64_t nclusters, l1_off, reft_off, snap_off;
    uint32_t l1_size, reft_clusters, nsnaps;
    uint8_t *kind;
};

/* A request of an async batch. */
struct breq {
    int kind;          /* OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH */
    uint64_t off, len;
    uint64_t zs, ze;   /* what reads as zeroes after it (discard: whole clusters) */
    unsigned flags;
    uint8_t *buf;
    int result;
};

/* Per workload, over its rounds. */
struct cfg_stats {
    unsigned images, qemu_cls[W_CLASSES];
};

struct ctx {
    const struct cfg *cfg;
    struct cfg_stats *st;
    uint64_t seed;
    struct fault_disk *f;
    struct vdisk_dev *dev;
    uint64_t rng;
    uint64_t opno;
    const char *cur_op;
    int cur_k;
    uint64_t maxv, base_size, cursor;
    unsigned stop_at;           /* images: the round ends when it has checked them */
    /* The model. */
    uint8_t *now, *acked, *base;
    uint64_t vsize, acked_size;
    struct alt *alts;
    size_t nalts, capalts;
    uint64_t sizes[64];
    unsigned nsizes;
    struct snap snaps[SNAP_SLOTS];
    unsigned nalive, snap_serial;
    struct snap *snap_done;     /* created or deleted by the last operation */
    bool lazy_now;
    unsigned refbits_now;
    bool ack_pending;           /* a flush completed: ack after the checks */
    /* An async batch: its requests, and the disk before it. */
    struct breq batch[BATCH_MAX];
    unsigned nbatch;
    bool batch_ack;             /* its flush completed */
    uint8_t *pre;
    /* Crash images waiting to be checked; the hook may run on two threads. */
    pthread_mutex_t mu;
    uint8_t *ref;
    size_t reflen;
    struct capture *caps;
    size_t ncaps, capcaps;
    struct wlog *wlog;
    size_t nwlog, capwlog;
    struct layout before;
    uint64_t drop_flushes;      /* fault_flushes() at the last drop-all image */
    bool drop_taken;
    /* Results. */
    unsigned points, images, qemu_checks, qemu_every, snap_qemu;
    unsigned long cls_points[W_CLASSES], cls_images[W_CLASSES], op_points[OP_KINDS + 1];
    unsigned failures;
    char failure[MAX_FAILURES][768];
};

static unsigned env_uint(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

static bool have_qemu(void)
{
    static int have = -1;
    if (have < 0)
        have = have_program("qemu-img");
    return have;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t run_seed;

static void flag(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void flag(struct ctx *c, const char *fmt, ...)
{
    if (c->failures < MAX_FAILURES) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->failure[c->failures], sizeof c->failure[0], fmt, ap);
        va_end(ap);
        fprintf(stderr, "FAIL %s [replay: VDISK_POWERLOSS_SEED=%llu VDISK_POWERLOSS_ONLY=%s; "
                "round seed %llu]\n", c->failure[c->failures], (unsigned long long)run_seed,
                c->cfg->name, (unsigned long long)c->seed);
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
    memcpy(c->acked, c->now, c->maxv);
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

/* ---- What a write lands on ------------------------------------------------ */

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void mark(struct layout *L, uint64_t off, uint64_t bytes, enum kind k)
{
    if (!bytes || off >= L->nclusters << L->cbits)
        return;
    uint64_t a = off >> L->cbits, b = (off + bytes - 1) >> L->cbits;
    for (uint64_t i = a; i <= b && i < L->nclusters; i++)
        if (L->kind[i] < k)
            L->kind[i] = (uint8_t)k;
}

static void mark_l2s(struct layout *L, const uint8_t *img, size_t len, uint64_t l1_off,
                     uint64_t l1_size)
{
    for (uint64_t i = 0; i < l1_size; i++) {
        uint64_t o = l1_off + i * 8;
        if (o < l1_off || o + 8 > len)
            break;
        uint64_t e = be64(img + o) & 0x00fffffffffffe00ull;
        if (e)
            mark(L, e, 1ull << L->cbits, K_L2);
    }
}

/* Reads the layout of a qcow2 image (bounds-checked: a crash image may
 * hold anything). */
static void layout_parse(struct layout *L, const uint8_t *img, size_t len)
{
    memset(L, 0, sizeof *L);
    if (len < 72)
        return;
    unsigned cbits = be32(img + 20);
    if (cbits < 9 || cbits > 21)
        return;
    L->cbits = cbits;
    uint64_t cs = 1ull << cbits;
    L->nclusters = (len + cs - 1) >> cbits;
    L->kind = calloc(L->nclusters, 1);
    ck_assert(L->kind != NULL);
    L->l1_size = be32(img + 36);
    L->l1_off = be64(img + 40);
    L->reft_off = be64(img + 48);
    L->reft_clusters = be32(img + 56);
    L->nsnaps = be32(img + 60);
    L->snap_off = be64(img + 64);
    mark_l2s(L, img, len, L->l1_off, L->l1_size);
    for (uint64_t i = 0; i < (uint64_t)L->reft_clusters * cs / 8; i++) {
        uint64_t o = L->reft_off + i * 8;
        if (o + 8 > len)
            break;
        uint64_t e = be64(img + o) & ~(cs - 1);
        if (e)
            mark(L, e, cs, K_RB);
    }
    uint64_t p = L->snap_off;
    for (uint32_t n = 0; n < L->nsnaps && n < 65536; n++) {
        if (p + 40 > len)
            break;
        uint64_t l1o = be64(img + p);
        uint32_t l1s = be32(img + p + 8);
        mark(L, l1o, (uint64_t)l1s * 8, K_SNAPL1);
        mark_l2s(L, img, len, l1o, l1s);
        p += (40 + be32(img + p + 36) + be16(img + p + 12) + be16(img + p + 14) + 7) & ~7ull;
    }
    if (L->nsnaps)
        mark(L, L->snap_off, p - L->snap_off, K_SNAPT);
    mark(L, L->l1_off, (uint64_t)L->l1_size * 8, K_L1);
    mark(L, L->reft_off, (uint64_t)L->reft_clusters * cs, K_REFT);
    mark(L, 0, cs, K_HEADER);
}

static void layout_free(struct layout *L)
{
    free(L->kind);
    L->kind = NULL;
}

static enum kind range_kind(const struct layout *L, uint64_t off, uint64_t len)
{
    enum kind k = K_DATA;
    if (!L->kind || !len)
        return k;
    uint64_t a = off >> L->cbits, b = (off + len - 1) >> L->cbits;
    for (uint64_t i = a; i <= b && i < L->nclusters; i++)
        if (L->kind[i] > k)
            k = (enum kind)L->kind[i];
    return k;
}

/* What the write [OFF, OFF + LEN) of an operation lands on, from the
 * image's layout before (B) and after (A) the operation. */
static int classify(const struct layout *B, const struct layout *A, uint64_t off, uint64_t len)
{
    enum kind k = range_kind(A, off, len);
    if (k == K_DATA)
        k = range_kind(B, off, len);
    bool before = range_kind(B, off, len) == k;
    switch (k) {
    case K_HEADER:
        if (off < 56 && off + len > 48 && A->reft_off != B->reft_off)
            return W_HEADER_REFT;
        if (off < 48 && off + len > 36 && A->l1_off != B->l1_off)
            return W_HEADER_L1;
        if (off < 72 && off + len > 60 && (A->snap_off != B->snap_off || A->nsnaps != B->nsnaps))
            return W_HEADER_SNAP;
        return W_HEADER;
    case K_REFT:
        return A->reft_off != B->reft_off && range_kind(A, off, len) == K_REFT ? W_REFT_GROW
                                                                              : W_REFT_ENTRY;
    case K_RB:
        return before ? W_RB_UPDATE : W_RB_NEW;
    case K_L1:
        return A->l1_off != B->l1_off && range_kind(A, off, len) == K_L1 ? W_L1_GROW
                                                                        : W_L1_UPDATE;
    case K_L2:
        return before ? W_L2_UPDATE : W_L2_NEW;
    case K_SNAPT:
        return W_SNAPTABLE;
    case K_SNAPL1:
        return W_SNAPL1;
    default:
        return W_DATA;
    }
}

/* ---- Crash images --------------------------------------------------------- */

/* With c->mu held. */
static size_t wlog_add(struct ctx *c, uint64_t wno, uint64_t off, uint64_t len)
{
    if (c->nwlog == c->capwlog) {
        c->capwlog = c->capwlog ? c->capwlog * 2 : 64;
        c->wlog = realloc(c->wlog, c->capwlog * sizeof *c->wlog);
        ck_assert(c->wlog != NULL);
    }
    c->wlog[c->nwlog] = (struct wlog){wno, off, len, W_DATA};
    return c->nwlog++;
}

/* With c->mu held. */
static void capture(struct ctx *c, enum fault_policy p, uint64_t wno, size_t wi)
{
    if (c->ncaps == c->capcaps) {
        c->capcaps = c->capcaps ? c->capcaps * 2 : 16;
        c->caps = realloc(c->caps, c->capcaps * sizeof *c->caps);
        ck_assert(c->caps != NULL);
    }
    struct capture *k = &c->caps[c->ncaps];
    uint8_t *img;
    size_t len;
    ck_assert(fault_image(c->f, p, c->rng ^ wno * 0x9e3779b97f4a7c15ull, &img, &len) == 0);
    /* Only the sectors that differ from the image the operation began on. */
    size_t nsec = (len + FAULT_SECTOR - 1) / FAULT_SECTOR, n = 0;
    uint32_t *sec = malloc((nsec ? nsec : 1) * sizeof *sec);
    ck_assert(sec != NULL);
    for (size_t s = 0; s < nsec; s++) {
        size_t o = s * FAULT_SECTOR, l = len - o < FAULT_SECTOR ? len - o : FAULT_SECTOR;
        if (o + l > c->reflen || memcmp(img + o, c->ref + o, l))
            sec[n++] = (uint32_t)s;
    }
    k->data = malloc(n ? n * FAULT_SECTOR : 1);
    ck_assert(k->data != NULL);
    for (size_t i = 0; i < n; i++) {
        size_t o = (size_t)sec[i] * FAULT_SECTOR;
        size_t l = len - o < FAULT_SECTOR ? len - o : FAULT_SECTOR;
        memcpy(k->data + i * FAULT_SECTOR, img + o, l);
    }
    free(img);
    k->sec = sec;
    k->nsec = n;
    k->len = len;
    k->policy = p;
    k->wno = wno;
    k->wi = wi;
    c->ncaps++;
}

static uint8_t *capture_image(const struct ctx *c, const struct capture *k)
{
    uint8_t *img = malloc(k->len ? k->len : 1);
    ck_assert(img != NULL);
    size_t keep = k->len < c->reflen ? k->len : c->reflen;
    memcpy(img, c->ref, keep);
    memset(img + keep, 0, k->len - keep);
    for (size_t i = 0; i < k->nsec; i++) {
        size_t o = (size_t)k->sec[i] * FAULT_SECTOR;
        size_t l = k->len - o < FAULT_SECTOR ? k->len - o : FAULT_SECTOR;
        memcpy(img + o, k->data + i * FAULT_SECTOR, l);
    }
    return img;
}

/* The fault disk's hook: the power may go off at this write. */
static void on_write(struct fault_disk *f, uint64_t wno, uint64_t off, uint64_t len,
                     void *opaque)
{
    struct ctx *c = opaque;
    pthread_mutex_lock(&c->mu);
    c->points++;
    size_t wi = wlog_add(c, wno, off, len);
    /* Dropping the cache gives the same image until the next flush. */
    if (!c->drop_taken || c->drop_flushes != fault_flushes(f)) {
        capture(c, FAULT_DROP_ALL, wno, wi);
        c->drop_taken = true;
        c->drop_flushes = fault_flushes(f);
    }
    if (fault_cached(f) != 0) {
        capture(c, FAULT_KEEP_ALL, wno, wi);
        /* One more policy per write, in turn, with its own random choices. */
        static const enum fault_policy more[] = {FAULT_RANDOM_SECTORS, FAULT_TEAR_LAST,
                                                 FAULT_RANDOM_WRITES, FAULT_KEEP_PREFIX};
        if (fault_cached(f) > 1 || wno % 2)
            capture(c, more[wno % 4], wno, wi);
    }
    pthread_mutex_unlock(&c->mu);
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

static struct snap *snap_find(struct ctx *c, const char *name)
{
    for (unsigned i = 0; i < SNAP_SLOTS; i++)
        if (c->snaps[i].data && !strcmp(c->snaps[i].name, name))
            return &c->snaps[i];
    return NULL;
}

/* The image's snapshots against the model: every sure one is there, and
 * each one there is one the guest took, of the size it had.  Marks in SEEN
 * the slots found. */
static void check_snapshot_list(struct ctx *c, struct vdisk_dev *dev, const char *label,
                                bool *seen)
{
    int n = vdisk_snapshot_count(dev);
    if (n < 0) {
        flag(c, "%s: the snapshots cannot be counted: %s", label, vdisk_get_error());
        return;
    }
    for (int i = 0; i < n; i++) {
        struct vdisk_snapshot sn = {.struct_size = sizeof sn};
        if (vdisk_snapshot_get(dev, (unsigned)i, &sn) < 0) {
            flag(c, "%s: snapshot %d cannot be read: %s", label, i, vdisk_get_error());
            continue;
        }
        struct snap *s = snap_find(c, sn.name);
        if (!s) {
            flag(c, "%s: the image has a snapshot '%s' that the guest does not have", label,
                 sn.name);
            continue;
        }
        if (sn.disk_size != s->size)
            flag(c, "%s: snapshot '%s' has a disk size of %llu, not %llu", label, sn.name,
                 (unsigned long long)sn.disk_size, (unsigned long long)s->size);
        seen[s - c->snaps] = true;
    }
    for (unsigned i = 0; i < SNAP_SLOTS; i++)
        if (c->snaps[i].data && c->snaps[i].sure && !seen[i])
            flag(c, "%s: snapshot '%s' is gone (%d snapshots in the image)", label,
                 c->snaps[i].name, n);
}

/* Snapshot S of the image on G reads back as the disk was when it was
 * taken (a read-only open of the snapshot, as qemu-img convert -l). */
static void check_snapshot_data(struct ctx *c, struct fault_disk *g, const struct snap *s,
                                const char *label)
{
    struct vdisk_open_params p = fault_params(false);
    p.read_only = true;
    vdisk_options *o;
    ck_assert(vdisk_options_new(&o) == 0);
    vdisk_options_set(o, "snapshot.name", s->name);
    struct opt_set os;
    ck_assert(opt_set_init(&os, o) == 0);
    struct vdisk_dev *file, *dev;
    ck_assert(fault_open(&file, g, scratch("top.qcow2"), &p) == 0);
    int r = dev_open_format(&dev, file, "qcow2", &p, &os);
    opt_set_fini(&os);
    vdisk_options_free(o);
    if (r < 0) {
        flag(c, "%s: snapshot '%s' does not open: %s", label, s->name, vdisk_get_error());
        dev_unref(file);
        return;
    }
    uint64_t n = dev_size(dev) < c->maxv ? dev_size(dev) : c->maxv;
    uint8_t *got = malloc(n ? n : 1);
    ck_assert(got != NULL);
    if (dev_size(dev) != s->size) {
        flag(c, "%s: snapshot '%s' opens with %llu bytes, not %llu", label, s->name,
             (unsigned long long)dev_size(dev), (unsigned long long)s->size);
    } else if (dev_pread(dev, got, n, 0) < 0) {
        flag(c, "%s: snapshot '%s' cannot be read: %s", label, s->name, vdisk_get_error());
    } else if (memcmp(got, s->data, n)) {
        uint64_t i = 0;
        while (got[i] == s->data[i])
            i++;
        flag(c, "%s: snapshot '%s': byte %llu reads 0x%02x, not 0x%02x as when it was taken",
             label, s->name, (unsigned long long)i, got[i], s->data[i]);
    }
    free(got);
    dev_unref(dev);
}

/* Checks one post-crash image against the model; CLS: what its crash
 * point's write lands on (-1: not a hooked crash point). */
static void check_image(struct ctx *c, const uint8_t *img, size_t len, const char *what,
                        int cls)
{
    char label[256];
    snprintf(label, sizeof label, "%s: %s (op %llu %s)", c->cfg->name, what,
             (unsigned long long)c->opno, c->cur_op);
    c->images++;
    c->st->images++;
    if (cls >= 0)
        c->cls_images[cls]++;
    /* qemu-img check on one image in N, on the first of each kind of crash
     * point of the workload, and on every image taken inside a snapshot
     * operation (COPIED and refcounts must agree at every write there). */
    bool snap_op = strncmp(c->cur_op, "snapshot-", 9) == 0;
    bool sample = c->qemu_every && (snap_op || c->st->images % c->qemu_every == 0 ||
                                    (cls >= 0 && c->st->qemu_cls[cls] + 1 <= FIRST_OF_EACH));
    if (sample && cls >= 0)
        c->st->qemu_cls[cls]++;
    bool qemu = sample && have_qemu();
    bool dirty = len >= 80 && (img[79] & 1);
    const char *crash_file = scratch("crash.qcow2");
    if (qemu && !dirty) {
        /* Before vdisk touches it: leaks allowed, nothing else. */
        write_file(crash_file, img, len);
        struct run *r = run("qemu-img check -q '%s'", crash_file);
        c->qemu_checks++;
        if (snap_op)
            c->snap_qemu++;
        if (!qemu_ok(r->status, true))
            flag(c, "%s: qemu-img check of the crash image exits %d: %s%s", label, r->status,
                 r->out, r->err);
    }
    struct vdisk_open_params p = fault_params(false);
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
    uint64_t n = size < c->maxv ? size : c->maxv;
    uint8_t *got = malloc(n ? n : 1);
    ck_assert(got != NULL);
    if (dev_pread(dev, got, n, 0) < 0) {
        flag(c, "%s: read fails: %s", label, vdisk_get_error());
    } else {
        for (uint64_t i = 0; i < n; i++) {
            /* What the guest sees now is a flushed value or one written
             * since, byte by byte: both are fine. */
            if (got[i] == c->acked[i] || got[i] == c->now[i])
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
    bool seen[SNAP_SLOTS] = {false};
    check_snapshot_list(c, dev, label, seen);
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
    /* Every snapshot there reads back as it was taken. */
    for (unsigned i = 0; i < SNAP_SLOTS; i++)
        if (seen[i])
            check_snapshot_data(c, g, &c->snaps[i], label);
    fault_free(g);
}

static void check_captures(struct ctx *c)
{
    for (size_t i = 0; i < c->ncaps; i++) {
        struct capture *k = &c->caps[i];
        char what[160];
        int cls = c->wlog[k->wi].cls;
        snprintf(what, sizeof what, "crash at write %llu (%s), %s", (unsigned long long)k->wno,
                 class_names[cls], fault_policy_name(k->policy));
        uint8_t *img = capture_image(c, k);
        check_image(c, img, k->len, what, cls);
        free(img);
        free(k->sec);
        free(k->data);
    }
    c->ncaps = 0;
}

/*
 * After each guest operation: classifies its writes (the crash points) by
 * the image's layout before and after it, checks its crash images, then
 * takes its flush.
 */
static void settle(struct ctx *c)
{
    uint8_t *cur;
    size_t clen;
    ck_assert(fault_current(c->f, &cur, &clen) == 0);
    struct layout after;
    layout_parse(&after, cur, clen);
    for (size_t i = 0; i < c->nwlog; i++) {
        struct wlog *w = &c->wlog[i];
        w->cls = classify(&c->before, &after, w->off, w->len);
        c->cls_points[w->cls]++;
    }
    c->op_points[c->cur_k] += c->nwlog;
    check_captures(c);
    c->nwlog = 0;
    struct snap *sd = c->snap_done;
    if (sd && !sd->alive) {
        sd->sure = sd->alive = true;
        c->nalive++;
    } else if (sd) {
        free(sd->data);
        sd->data = NULL;
        sd->alive = false;
        c->nalive--;
    }
    c->snap_done = NULL;
    layout_free(&c->before);
    c->before = after;
    free(c->ref);
    c->ref = cur;
    c->reflen = clen;
    if (c->ack_pending)
        model_acked(c);
    c->ack_pending = false;
    if (c->batch_ack) {
        /* The batch's flush made the disk before the batch durable; its
         * other requests may or may not be. */
        memcpy(c->acked, c->pre, c->maxv);
        c->acked_size = c->vsize;
        alts_clear(c);
        c->nsizes = 0;
        size_seen(c, c->vsize);
        for (unsigned i = 0; i < c->nbatch; i++) {
            const struct breq *b = &c->batch[i];
            if (b->kind == OP_WRITE)
                alt_add(c, b->off, b->len, b->buf);
            else if (b->kind != OP_FLUSH)
                alt_add(c, b->zs, b->ze - b->zs, NULL);
        }
    }
    c->batch_ack = false;
    for (unsigned i = 0; i < c->nbatch; i++)
        free(c->batch[i].buf);
    c->nbatch = 0;
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

static uint64_t write_len(struct ctx *c)
{
    uint64_t cs = c->cfg->cluster;
    if (c->cfg->maxwrite)
        return 1 + rng_next(&c->rng) % (rng_next(&c->rng) % 4 ? c->cfg->maxwrite / 2
                                                               : c->cfg->maxwrite);
    return 1 + rng_next(&c->rng) % (rng_next(&c->rng) % 4 ? cs * 2 : 3 * cs + 100);
}

/* ---- Async batches: two threads, each with its own queue ------------------ */

struct bthread {
    struct ctx *c;
    struct breq *reqs[BATCH_MAX];
    unsigned n;
};

static void breq_done(void *user, int result)
{
    ((struct breq *)user)->result = result;
}

static void *batch_thread(void *arg)
{
    struct bthread *t = arg;
    vdisk_queue *q;
    int qr = vdisk_queue_new(&q, t->c->dev, 16);
    for (unsigned i = 0; i < t->n; i++) {
        struct breq *b = t->reqs[i];
        struct iovec v = {b->buf, b->len};
        int r = qr;
        if (r == 0) {
            switch (b->kind) {
            case OP_WRITE:
                r = vdisk_aio_pwritev(q, &v, 1, b->off, 0, breq_done, b);
                break;
            case OP_ZERO:
                r = vdisk_aio_write_zeroes(q, b->off, b->len, b->flags, breq_done, b);
                break;
            case OP_DISCARD:
                r = vdisk_aio_discard(q, b->off, b->len, breq_done, b);
                break;
            default:
                r = vdisk_aio_flush(q, breq_done, b);
                break;
            }
        }
        if (r < 0)
            b->result = r;
    }
    /* All of them in flight at once: the power may go in the middle. */
    if (q) {
        vdisk_queue_drain(q);
        vdisk_queue_free(q);
    }
    return NULL;
}

static bool overlaps(const struct ctx *c, uint64_t off, uint64_t len)
{
    for (unsigned i = 0; i < c->nbatch; i++) {
        const struct breq *b = &c->batch[i];
        if (b->kind != OP_FLUSH && off < b->off + b->len && b->off < off + len)
            return true;
    }
    return false;
}

/* A batch of writes, write zeroes, discards and perhaps a flush on
 * disjoint byte ranges (often sharing clusters, L2 tables and refcount
 * blocks), started from two threads at once. */
static int async_batch(struct ctx *c, uint64_t tag)
{
    uint64_t cs = c->cfg->cluster;
    unsigned want = 2 + (unsigned)(rng_next(&c->rng) % (BATCH_MAX - 1));
    bool flush = false;
    memcpy(c->pre, c->now, c->maxv);
    for (unsigned i = 0; i < want; i++) {
        unsigned pick = (unsigned)(rng_next(&c->rng) % 20);
        struct breq *b = &c->batch[c->nbatch];
        memset(b, 0, sizeof *b);
        b->result = 1;
        if (pick >= 19 && !flush) {
            b->kind = OP_FLUSH;
            flush = true;
            c->nbatch++;
            continue;
        }
        b->kind = pick < 13 ? OP_WRITE : pick < 16 ? OP_ZERO : OP_DISCARD;
        bool placed = false;
        for (int tries = 0; tries < 10 && !placed; tries++) {
            b->len = write_len(c);
            if (b->len >= c->vsize)
                b->len = c->vsize / 2;
            b->off = rng_next(&c->rng) % (c->vsize - b->len);
            if (rng_next(&c->rng) % 2)
                b->off &= ~511ull, b->len = (b->len + 511) & ~511ull;
            if (b->off + b->len > c->vsize)
                b->len = c->vsize - b->off;
            placed = !overlaps(c, b->off, b->len);
        }
        if (!placed)
            continue;
        b->zs = b->off;
        b->ze = b->off + b->len;
        if (b->kind == OP_WRITE) {
            b->buf = malloc(b->len);
            ck_assert(b->buf != NULL);
            pattern(b->buf, b->off, b->len, tag * 16 + i, false);
            alt_add(c, b->off, b->len, b->buf);
        } else if (b->kind == OP_ZERO) {
            b->flags = rng_next(&c->rng) % 2 ? VDISK_REQ_MAY_UNMAP : 0;
            alt_add(c, b->off, b->len, NULL);
        } else {
            /* Whole clusters read as zeroes; partial ones do not change. */
            b->zs = (b->off + cs - 1) / cs * cs;
            b->ze = (b->off + b->len) / cs * cs;
            if (b->off + b->len == c->vsize)
                b->ze = c->vsize;
            if (b->ze < b->zs)
                b->ze = b->zs;
            alt_add(c, b->zs, b->ze - b->zs, NULL);
        }
        c->nbatch++;
    }
    struct bthread t[2] = {{.c = c}, {.c = c}};
    for (unsigned i = 0; i < c->nbatch; i++)
        t[i % 2].reqs[t[i % 2].n++] = &c->batch[i];
    pthread_t th;
    ck_assert(pthread_create(&th, NULL, batch_thread, &t[1]) == 0);
    batch_thread(&t[0]);
    pthread_join(th, NULL);
    int r = 0;
    for (unsigned i = 0; i < c->nbatch; i++) {
        struct breq *b = &c->batch[i];
        if (b->result == 1) {
            flag(c, "%s: op %llu: a request of the batch never completed", c->cfg->name,
                 (unsigned long long)c->opno);
            continue;
        }
        if (b->result < 0) {
            r = b->result;
            continue;
        }
        if (b->kind == OP_WRITE)
            memcpy(c->now + b->off, b->buf, b->len);
        else if (b->kind == OP_FLUSH)
            c->batch_ack = true;
        else
            memset(c->now + b->zs, 0, b->ze - b->zs);
    }
    return r;
}

/* VDISK_POWERLOSS_TRACE=1: the guest operations on stderr. */
static void trace(const struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(const struct ctx *c, const char *fmt, ...)
{
    static int on = -1;
    if (on < 0)
        on = (int)env_uint("VDISK_POWERLOSS_TRACE", 0);
    if (!on)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "op %llu: ", (unsigned long long)c->opno);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Runs one guest operation; returns false when the device went dead. */
static bool guest_op(struct ctx *c, int k)
{
    uint64_t cs = c->cfg->cluster;
    uint64_t tag = ++c->opno;
    int r = 0;
    c->cur_op = op_names[k];
    c->cur_k = k;
    switch (k) {
    case OP_WRITE: {
        uint64_t len = write_len(c);
        if (len >= c->vsize)
            len = c->vsize / 2;
        uint64_t off = rng_next(&c->rng) % (c->vsize - len);
        if (c->cfg->sequential) {
            if (c->cursor + len > c->vsize)
                c->cursor = 0;
            off = c->cursor;
            c->cursor += len;
        }
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
        trace(c, "write %llu+%llu -> %d", (unsigned long long)off, (unsigned long long)len, r);
        free(buf);
        break;
    }
    case OP_ZERO:
    case OP_DISCARD: {
        uint64_t len = 1 + rng_next(&c->rng) % (4 * cs);
        if (len >= c->vsize)
            len = c->vsize / 2;
        uint64_t off = rng_next(&c->rng) % (c->vsize - len);
        if (rng_next(&c->rng) % 2)
            off = off / cs * cs;
        if (k == OP_ZERO) {
            alt_add(c, off, len, NULL);
            unsigned fl = rng_next(&c->rng) % 2 ? VDISK_REQ_MAY_UNMAP : 0;
            r = dev_write_zeroes(c->dev, off, len, fl);
            if (r == 0)
                memset(c->now + off, 0, len);
            trace(c, "write zeroes %llu+%llu flags %u -> %d", (unsigned long long)off,
                  (unsigned long long)len, fl, r);
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
            trace(c, "discard %llu+%llu -> %d", (unsigned long long)off,
                  (unsigned long long)len, r);
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
        /* Every third one stores a run of up to 4 clusters with one call
         * (vdisk_pwrite_compressed_datav, as convert -c does). */
        uint64_t run = rng_next(&c->rng) % 3 ? 1 : 1 + rng_next(&c->rng) % 4;
        if (run > (c->vsize - off) / cs)
            run = (c->vsize - off) / cs;
        if (run > 1) {
            uint8_t *data = malloc(run * cs), *out = malloc(run * cs);
            struct iovec v[4];
            ck_assert(data && out);
            r = 0;
            for (uint64_t i = 0; i < run && r == 0; i++) {
                size_t clen = 0;
                pattern(data + i * cs, off + i * cs, cs, tag + i, true);
                r = vdisk_compress(c->dev, data + i * cs, cs, out + i * cs, cs, &clen);
                ck_assert_msg(r < 0 || clen > 0, "a compressible cluster did not shrink");
                v[i] = (struct iovec){out + i * cs, clen};
            }
            alt_add(c, off, run * cs, data);
            if (r == 0)
                r = vdisk_pwrite_compressed_datav(c->dev, v, (int)run, off);
            trace(c, "compressed write of %llu clusters at %llu -> %d", (unsigned long long)run,
                  (unsigned long long)off, r);
            if (r == 0)
                memcpy(c->now + off, data, run * cs);
            free(data);
            free(out);
            break;
        }
        uint8_t *buf = malloc(cs);
        pattern(buf, off, cs, tag, true);
        alt_add(c, off, cs, buf);
        r = vdisk_pwrite_compressed(c->dev, buf, cs, off);
        trace(c, "compressed write %llu -> %d", (unsigned long long)off, r);
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
                trace(c, "  write %llu+%llu -> %d", (unsigned long long)o,
                      (unsigned long long)l, r);
            }
        }
        free(buf);
        break;
    }
    case OP_SNAP_CREATE: {
        unsigned most = c->cfg->snaps ? c->cfg->snaps : 3;
        struct snap *s = NULL;
        for (unsigned i = 0; i < SNAP_SLOTS && !s; i++)
            if (!c->snaps[i].data)
                s = &c->snaps[i];
        if (c->nalive >= most || !s)
            return true;
        /* While it is being taken, crash images may have it or not. */
        snprintf(s->name, sizeof s->name, "s%u", c->snap_serial++);
        s->data = malloc(c->maxv);
        ck_assert(s->data != NULL);
        memcpy(s->data, c->now, c->maxv);
        s->size = c->vsize;
        s->sure = s->alive = false;
        r = vdisk_snapshot_create(c->dev, s->name);
        if (r == 0)
            c->snap_done = s; /* there for sure once its crash images are checked */
        break;
    }
    case OP_SNAP_APPLY:
    case OP_SNAP_DELETE: {
        if (!c->nalive)
            return true;
        unsigned pick = (unsigned)(rng_next(&c->rng) % c->nalive), i = 0;
        struct snap *s = NULL;
        for (; i < SNAP_SLOTS; i++)
            if (c->snaps[i].alive && pick-- == 0) {
                s = &c->snaps[i];
                break;
            }
        ck_assert(s != NULL);
        if (k == OP_SNAP_APPLY) {
            alt_add(c, 0, c->maxv, s->data);
            size_seen(c, s->size);
            r = vdisk_snapshot_apply(c->dev, s->name);
            if (r == 0) {
                memcpy(c->now, s->data, c->maxv);
                c->vsize = s->size;
            }
        } else {
            s->sure = false;
            r = vdisk_snapshot_delete(c->dev, s->name);
            if (r == 0)
                c->snap_done = s;
        }
        break;
    }
    case OP_RESIZE: {
        uint64_t step = c->cfg->resize_step ? c->cfg->resize_step : cs * 4;
        if (c->vsize + 512 > c->maxv)
            return true;
        uint64_t ns = c->vsize + 512 * (1 + rng_next(&c->rng) % (step / 512));
        if (ns > c->maxv)
            ns = c->maxv;
        alt_add(c, c->vsize, ns - c->vsize, NULL);
        size_seen(c, ns);
        r = vdisk_resize(c->dev, ns, 0);
        if (r == 0)
            set_size(c, ns);
        break;
    }
    case OP_SHRINK: {
        /* To a cluster boundary: a shrink keeps the tail of a partial last
         * cluster, which a later growth would show again (as qemu-img). */
        uint64_t least = (c->cfg->vsize ? c->cfg->vsize : VSIZE) / 2;
        if (c->nalive || c->vsize < least + cs)
            return true;
        uint64_t ns = (least + rng_next(&c->rng) % (c->vsize - least)) / cs * cs;
        if (ns < least || ns >= c->vsize)
            return true;
        /* If the old size survives, what lay past the new end may be gone. */
        alt_add(c, ns, c->vsize - ns, NULL);
        size_seen(c, ns);
        r = vdisk_resize(c->dev, ns, VDISK_RESIZE_SHRINK);
        if (r == 0)
            set_size(c, ns);
        break;
    }
    case OP_AMEND: {
        vdisk_options *o;
        ck_assert(vdisk_options_new(&o) == 0);
        unsigned bits = c->refbits_now == 16 ? 4 : 16;
        if (c->cfg->amend_refbits)
            vdisk_options_set(o, "refcount_bits", bits == 4 ? "4" : "16");
        else
            vdisk_options_set(o, "lazy_refcounts", c->lazy_now ? "off" : "on");
        r = vdisk_amend(c->dev, o);
        vdisk_options_free(o);
        if (r == 0 && c->cfg->amend_refbits)
            c->refbits_now = bits;
        else if (r == 0)
            c->lazy_now = !c->lazy_now;
        break;
    }
    case OP_EMPTY: {
        /* qemu-img commit: the data went to the backing file (not modelled
         * here: the backing file is not on the fault disk), the overlay is
         * emptied.  Refused with snapshots. */
        if (c->nalive)
            return true;
        uint8_t *after = calloc(1, c->maxv);
        if (c->cfg->backing)
            memcpy(after, c->base, c->base_size);
        memset(after + c->vsize, 0, c->maxv - c->vsize);
        alt_add(c, 0, c->maxv, after);
        r = vdisk_make_empty(c->dev);
        if (r == 0)
            memcpy(c->now, after, c->maxv);
        free(after);
        break;
    }
    case OP_BATCH:
        r = async_batch(c, tag);
        break;
    }
    if (k != OP_WRITE && k != OP_ZERO && k != OP_DISCARD && k != OP_COMPRESS)
        trace(c, "%s -> %d (size %llu)", op_names[k], r, (unsigned long long)c->vsize);
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
    char cs[32], rb[32];
    snprintf(cs, sizeof cs, "%u", c->cfg->cluster);
    vdisk_options_set(o, "cluster_size", cs);
    if (c->cfg->compat == 2)
        vdisk_options_set(o, "compat", "0.10");
    else
        vdisk_options_set(o, "lazy_refcounts", c->cfg->lazy ? "on" : "off");
    if (c->cfg->refbits) {
        snprintf(rb, sizeof rb, "%u", c->cfg->refbits);
        vdisk_options_set(o, "refcount_bits", rb);
    }
    if (c->cfg->compression)
        vdisk_options_set(o, "compression_type", c->cfg->compression);
    if (c->cfg->extl2)
        vdisk_options_set(o, "extended_l2", "on");
    if (c->cfg->backing) {
        vdisk_options_set(o, "backing_file", "base.raw");
        vdisk_options_set(o, "backing_fmt", "raw");
    }
    ck_assert_msg(vdisk_create(tmpl, "qcow2", c->vsize, o) == 0, "%s: %s", c->cfg->name,
                  vdisk_get_error());
    vdisk_options_free(o);
    return read_file(tmpl, len);
}

static void ctx_init(struct ctx *c, const struct cfg *cfg, struct cfg_stats *st, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->st = st;
    c->seed = seed;
    c->rng = mix(seed) | 1;
    c->maxv = cfg->maxv ? cfg->maxv : MAXV;
    c->vsize = cfg->vsize ? cfg->vsize : VSIZE;
    c->now = calloc(1, c->maxv);
    c->acked = calloc(1, c->maxv);
    c->base = calloc(1, c->maxv);
    c->pre = calloc(1, c->maxv);
    ck_assert(c->now && c->acked && c->base && c->pre);
    pthread_mutex_init(&c->mu, NULL);
    c->qemu_every = env_uint("VDISK_POWERLOSS_QEMU_EVERY", 100);
    if (env_uint("VDISK_POWERLOSS_NIGHTLY", 0))
        c->qemu_every = (c->qemu_every + 1) / 2;
    c->lazy_now = cfg->lazy;
    c->refbits_now = cfg->refbits ? cfg->refbits : 16;
    if (cfg->backing) {
        /* One base file for every workload with a backing file. */
        ck_assert(c->vsize == VSIZE);
        c->base_size = VSIZE;
        pattern(c->base, 0, VSIZE, 7777, false);
        const char *b = scratch("base.raw");
        if (access(b, F_OK) != 0)
            write_file(b, c->base, VSIZE);
        memcpy(c->now, c->base, VSIZE);
    }
    model_acked(c);
}

static void ctx_fini(struct ctx *c)
{
    alts_clear(c);
    free(c->alts);
    for (size_t i = 0; i < c->ncaps; i++) {
        free(c->caps[i].sec);
        free(c->caps[i].data);
    }
    free(c->caps);
    free(c->wlog);
    free(c->ref);
    layout_free(&c->before);
    for (unsigned i = 0; i < SNAP_SLOTS; i++)
        free(c->snaps[i].data);
    for (unsigned i = 0; i < c->nbatch; i++)
        free(c->batch[i].buf);
    free(c->now);
    free(c->acked);
    free(c->base);
    free(c->pre);
    pthread_mutex_destroy(&c->mu);
}

/* Opens the workload's image over a fresh fault disk. */
static void open_image(struct ctx *c)
{
    size_t len;
    uint8_t *img = make_image(c, &len);
    c->f = fault_new(img, len, LIMIT);
    layout_free(&c->before);
    layout_parse(&c->before, img, len);
    free(c->ref);
    c->ref = img;
    c->reflen = len;
    ck_assert(c->f != NULL);
    struct vdisk_open_params p = fault_params(false);
    if (c->cfg->weights[OP_BATCH])
        p.threads = 2;
    struct vdisk_dev *file;
    ck_assert(fault_open(&file, c->f, scratch("top.qcow2"), &p) == 0);
    ck_assert_msg(dev_open_format(&c->dev, file, "qcow2", &p, NULL) == 0, "%s",
                  vdisk_get_error());
}

/* Every write a crash point: one round of the workload. */
static void round_hooked(struct ctx *c)
{
    open_image(c);
    if (c->cfg->prefill) {
        /* Up to near the interesting part (a refcount table growth): not
         * crash points. */
        uint64_t end = c->cfg->prefill - rng_next(&c->rng) % (256 << 10);
        uint8_t *buf = malloc(64 << 10);
        ck_assert(buf != NULL);
        for (uint64_t off = 0; off < end; off += 64 << 10) {
            uint64_t len = end - off < (64 << 10) ? end - off : 64 << 10;
            pattern(buf, off, len, 424242, false);
            ck_assert_msg(dev_pwrite(c->dev, buf, len, off) == 0, "%s", vdisk_get_error());
            memcpy(c->now + off, buf, len);
        }
        free(buf);
        ck_assert_msg(dev_flush(c->dev) == 0, "%s", vdisk_get_error());
        model_acked(c);
        c->cursor = end;
        settle(c);
    }
    fault_set_hook(c->f, on_write, c);
    for (unsigned i = 0; i < c->cfg->ops; i++) {
        int k = pick_op(c);
        guest_op(c, k);
        settle(c);
        if (c->failures >= MAX_FAILURES || (c->stop_at && c->images >= c->stop_at))
            break;
    }
    /* The final flush and close are crash points too. */
    c->cur_op = "close";
    c->cur_k = OP_CLOSE;
    dev_unref(c->dev);
    settle(c);
    fault_set_hook(c->f, NULL, NULL);
    /* Closed cleanly: everything reads back as the guest left it. */
    c->cur_op = "clean close";
    model_acked(c);
    uint8_t *img;
    size_t len;
    ck_assert(fault_durable(c->f, &img, &len) == 0);
    check_image(c, img, len, "after a clean close", -1);
    free(img);
    fault_free(c->f);
}

/* Weights: write, zero, discard, flush, compress, snapshot create, apply,
 * delete, resize, amend, make-empty, async batch, shrink. */
static const struct cfg configs[] = {
    {.name = "alloc", .cluster = 4096,
     .weights = {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "alloc-backing", .cluster = 4096, .backing = true,
     .weights = {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "alloc-lazy", .cluster = 4096, .lazy = true,
     .weights = {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "alloc-lazy-backing", .cluster = 4096, .lazy = true, .backing = true,
     .weights = {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "alloc-64k-extl2-backing", .cluster = 65536, .backing = true, .extl2 = true,
     .weights = {10, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0}, .ops = 40},
    {.name = "compressed", .cluster = 4096,
     .weights = {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "compressed-lazy-backing", .cluster = 4096, .lazy = true, .backing = true,
     .weights = {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "snapshots", .cluster = 4096,
     .weights = {8, 2, 2, 3, 2, 2, 2, 2, 0, 0, 0}, .ops = 50},
    {.name = "snapshots-lazy-backing", .cluster = 4096, .lazy = true, .backing = true,
     .weights = {8, 2, 2, 3, 2, 2, 2, 2, 0, 0, 0}, .ops = 50},
    {.name = "resize-amend-commit", .cluster = 4096, .backing = true,
     .weights = {8, 2, 2, 3, 1, 0, 0, 0, 2, 2, 1}, .ops = 50},
    {.name = "resize-amend-commit-lazy", .cluster = 4096, .lazy = true,
     .weights = {8, 2, 2, 3, 1, 0, 0, 0, 2, 2, 1}, .ops = 50},
    /* The refcount structure rebuilt at another width: the old one must
     * stay whole until the header points to the new one. */
    {.name = "amend-refcount-bits", .cluster = 4096, .amend_refbits = true,
     .weights = {8, 2, 2, 3, 1, 0, 0, 0, 0, 4, 0}, .ops = 40},
    /* Growth past many refcount blocks (a 512-byte block of 64-bit
     * refcounts covers 32 KiB) and refcount table growth (one cluster of
     * table covers 2 MiB of file). */
    {.name = "grow-512-rb64", .cluster = 512, .refbits = 64, .vsize = 4 << 20, .maxv = 5 << 20,
     .maxwrite = 256 << 10, .resize_step = 64 << 10,
     .weights = {12, 1, 1, 2, 1, 0, 0, 0, 1, 0, 0, 0, 0}, .ops = 60, .share = 2},
    {.name = "reftable-512-rb64", .cluster = 512, .refbits = 64, .vsize = 4 << 20,
     .maxv = 4 << 20, .maxwrite = 256 << 10, .sequential = true, .prefill = 1900 << 10,
     .weights = {12, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0}, .ops = 8, .share = 4},
    {.name = "grow-512-rb1-lazy", .cluster = 512, .refbits = 1, .lazy = true,
     .vsize = 3 << 20, .maxv = 3 << 20, .maxwrite = 96 << 10,
     .weights = {12, 1, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "grow-512-v2", .cluster = 512, .compat = 2, .vsize = 3 << 20, .maxv = 3 << 20,
     .maxwrite = 96 << 10, .weights = {12, 1, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    /* The L1 table moves at every growth past 32 KiB multiples (512-byte
     * clusters) and, with 4 KiB clusters, past 2 MiB. */
    {.name = "resize-l1-512-rb64", .cluster = 512, .refbits = 64, .vsize = 1 << 20,
     .maxv = 4 << 20, .maxwrite = 16 << 10, .resize_step = 96 << 10,
     .weights = {6, 1, 1, 2, 1, 0, 0, 0, 4, 0, 0, 0, 2}, .ops = 60, .share = 2},
    {.name = "resize-l1-4k-v2", .cluster = 4096, .compat = 2, .vsize = 1 << 20, .maxv = 8 << 20,
     .resize_step = 3 << 20, .weights = {6, 1, 1, 2, 1, 0, 0, 0, 3, 0, 0, 0, 2}, .ops = 50,
     .share = 2},
    /* Many snapshots, their contents checked after every crash. */
    {.name = "snapshots-many-512-rb64", .cluster = 512, .refbits = 64, .vsize = 1 << 20,
     .maxv = 1 << 20, .maxwrite = 8 << 10, .snaps = 8,
     .weights = {8, 1, 1, 2, 1, 3, 1, 2, 0, 0, 0, 0, 0}, .ops = 50, .share = 2},
    {.name = "snapshots-v2-4k", .cluster = 4096, .compat = 2, .snaps = 6,
     .weights = {8, 2, 2, 3, 2, 3, 2, 2, 0, 0, 0, 0, 0}, .ops = 50},
    {.name = "snapshots-64k-extl2-zstd", .cluster = 65536, .extl2 = true, .compression = "zstd",
     .snaps = 6, .weights = {8, 2, 2, 3, 2, 3, 2, 2, 1, 0, 0, 0, 0}, .ops = 40},
    /* Compression: zlib and zstd at 4 KiB and 64 KiB clusters. */
    {.name = "compressed-zstd-4k", .cluster = 4096, .compression = "zstd",
     .weights = {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0, 0, 0}, .ops = 60},
    {.name = "compressed-zlib-64k-rb64", .cluster = 65536, .refbits = 64,
     .weights = {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0, 0, 0}, .ops = 40},
    {.name = "compressed-zstd-64k-extl2-lazy", .cluster = 65536, .extl2 = true, .lazy = true,
     .compression = "zstd", .weights = {6, 2, 2, 3, 6, 0, 0, 0, 0, 0, 0, 0, 0}, .ops = 40},
    /* Several requests in flight from two threads when the power goes. */
    {.name = "async-512-rb64", .cluster = 512, .refbits = 64, .vsize = 2 << 20,
     .maxwrite = 24 << 10, .snaps = 3,
     .weights = {2, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 10, 0}, .ops = 50, .share = 2},
    {.name = "async-64k-extl2-lazy-backing", .cluster = 65536, .extl2 = true, .lazy = true,
     .backing = true, .maxwrite = 40 << 10,
     .weights = {2, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 10, 0}, .ops = 40},
    {.name = "async-4k-zstd", .cluster = 4096, .compression = "zstd", .maxwrite = 20 << 10,
     .weights = {2, 0, 0, 1, 2, 0, 0, 0, 1, 0, 0, 10, 0}, .ops = 40},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

static struct cfg_stats cstats[NCONFIGS];
static unsigned total_points, total_images, total_qemu, total_snap_qemu;
static unsigned long tot_cls_points[W_CLASSES], tot_cls_images[W_CLASSES];
static unsigned long tot_op_points[OP_KINDS + 1];

static bool selected(const struct cfg *cfg)
{
    const char *only = getenv("VDISK_POWERLOSS_ONLY");
    return !only || !*only || strstr(cfg->name, only);
}

static void run_config(unsigned i)
{
    const struct cfg *cfg = &configs[i];
    if (!selected(cfg))
        return;
    unsigned shares = 0;
    for (unsigned k = 0; k < NCONFIGS; k++)
        if (selected(&configs[k]))
            shares += configs[k].share ? configs[k].share : 1;
    unsigned budget = env_uint("VDISK_POWERLOSS_IMAGES", 15000);
    budget /= BUDGET_DIVISOR;
    if (env_uint("VDISK_POWERLOSS_NIGHTLY", 0))
        budget *= 20;
    unsigned want = (unsigned)((uint64_t)budget * (cfg->share ? cfg->share : 1) / shares) + 1;
    unsigned points = 0, images = 0, qemu = 0, failures = 0, rounds = 0;
    char first[MAX_FAILURES][768];
    unsigned nfirst = 0;
    uint64_t fail_seed = 0;
    for (uint64_t round = 0; images < want && failures == 0; round++, rounds++) {
        struct ctx c;
        ctx_init(&c, cfg, &cstats[i], mix(run_seed ^ mix(i * 1000003ull + round)));
        c.stop_at = want - images;
        round_hooked(&c);
        points += c.points;
        images += c.images;
        qemu += c.qemu_checks;
        failures += c.failures;
        total_snap_qemu += c.snap_qemu;
        for (int k = 0; k < W_CLASSES; k++) {
            tot_cls_points[k] += c.cls_points[k];
            tot_cls_images[k] += c.cls_images[k];
        }
        for (int k = 0; k <= OP_KINDS; k++)
            tot_op_points[k] += c.op_points[k];
        if (c.failures)
            fail_seed = c.seed;
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
    fflush(stdout);
    ck_assert_msg(failures == 0, "%s: %u failures (replay: VDISK_POWERLOSS_SEED=%llu "
                  "VDISK_POWERLOSS_ONLY=%s; round seed %llu); first: %s%s%s", cfg->name,
                  failures, (unsigned long long)run_seed, cfg->name,
                  (unsigned long long)fail_seed, nfirst ? first[0] : "",
                  nfirst > 1 ? "\nsecond: " : "", nfirst > 1 ? first[1] : "");
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
    if (!selected(cfg))
        return;
    uint64_t seed = mix(run_seed ^ mix(0xdead0000ull + (unsigned)_i));
    /* Count the writes of the round. */
    struct ctx c;
    ctx_init(&c, cfg, &cstats[_i], seed);
    open_image(&c);
    for (unsigned i = 0; i < cfg->ops; i++) {
        guest_op(&c, pick_op(&c));
        settle(&c);
    }
    dev_unref(c.dev);
    uint64_t total = fault_writes(c.f);
    fault_free(c.f);
    ctx_fini(&c);
    unsigned samples = env_uint("VDISK_POWERLOSS_CUTS", 6), failures = 0, checked = 0;
#if SANITIZED
    samples = (samples + 1) / 2;
#endif
    for (unsigned s = 0; s < samples; s++) {
        uint64_t n = 1 + (total * s) / samples + s % 3;
        ctx_init(&c, cfg, &cstats[_i], seed);
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
            check_image(&c, img, len, what, -1);
            free(img);
            checked++;
        }
        failures += c.failures;
        total_snap_qemu += c.snap_qemu;
        char first[768];
        snprintf(first, sizeof first, "%s", c.failures ? c.failure[0] : "");
        fault_free(c.f);
        ctx_fini(&c);
        ck_assert_msg(failures == 0, "%s (replay: VDISK_POWERLOSS_SEED=%llu "
                      "VDISK_POWERLOSS_ONLY=%s)", first, (unsigned long long)run_seed,
                      cfg->name);
    }
    total_images += checked;
    printf("powerloss cuts %s: %u power cuts of %llu writes, %u images checked\n", cfg->name,
           samples, (unsigned long long)total, checked);
}
END_TEST

static void print_stats(void)
{
    printf("powerloss: crash points by what the write lands on (points, images checked):\n");
    for (int k = 0; k < W_CLASSES; k++)
        printf("  %-40s %8lu %8lu\n", class_names[k], tot_cls_points[k], tot_cls_images[k]);
    printf("powerloss: crash points by guest operation:\n");
    for (int k = 0; k <= OP_KINDS; k++)
        if (tot_op_points[k])
            printf("  %-40s %8lu\n", op_names[k], tot_op_points[k]);
    unsigned long snap = tot_op_points[OP_SNAP_CREATE] + tot_op_points[OP_SNAP_APPLY] +
                         tot_op_points[OP_SNAP_DELETE];
    printf("powerloss: metadata paths: refcount-block allocation %lu points (%lu images), "
           "refcount-table growth %lu (%lu), L1 growth %lu (%lu), snapshot operations %lu\n",
           tot_cls_points[W_RB_NEW] + tot_cls_points[W_REFT_ENTRY],
           tot_cls_images[W_RB_NEW] + tot_cls_images[W_REFT_ENTRY],
           tot_cls_points[W_REFT_GROW] + tot_cls_points[W_HEADER_REFT],
           tot_cls_images[W_REFT_GROW] + tot_cls_images[W_HEADER_REFT],
           tot_cls_points[W_L1_GROW] + tot_cls_points[W_HEADER_L1],
           tot_cls_images[W_L1_GROW] + tot_cls_images[W_HEADER_L1], snap);
}

int main(void)
{
    if (chdir(scratch_dir()) != 0)
        return 1;
#ifdef M_MMAP_THRESHOLD
    /* Crash images are megabytes, made and freed by the thousand: kept in
     * the heap, their pages are not faulted in afresh every time. */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
    const char *sv = getenv("VDISK_POWERLOSS_SEED");
    if (sv && *sv) {
        run_seed = strtoull(sv, NULL, 0);
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        run_seed = mix((uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec) ^
                   mix((uint64_t)getpid());
        run_seed &= 0xffffffffffffull; /* short enough to type */
    }
    printf("powerloss: seed %llu (replay: VDISK_POWERLOSS_SEED=%llu)\n",
           (unsigned long long)run_seed, (unsigned long long)run_seed);
    fflush(stdout);
    if (env_uint("VDISK_POWERLOSS_QEMU_EVERY", 100) && !have_qemu())
        skip_note("qemu-img check of the crash images: qemu-img is not installed");
    Suite *s = suite_create("powerloss");
    TCase *tc = tcase_create("every-write");
    tcase_set_timeout(tc, 36000);
    tcase_add_loop_test(tc, every_write, 0, (int)NCONFIGS);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("device-dies");
    tcase_set_timeout(tc2, 36000);
    tcase_add_loop_test(tc2, device_dies, 0, (int)NCONFIGS);
    suite_add_tcase(s, tc2);
    int r = run_suite(s);
    print_stats();
    printf("powerloss: seed %llu: %u crash points, %u images checked, %u qemu-img checks "
           "(%u of them inside snapshot operations; nothing waived)\n",
           (unsigned long long)run_seed, total_points, total_images, total_qemu,
           total_snap_qemu);
    return r;
}
