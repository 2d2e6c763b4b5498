/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/snapcrash.c: power loss at every write of snapshot
 * create, apply and delete (issue 15, item 3).
 *
 * qemu-img check calls a COPIED flag wrong both ways: set on a cluster
 * whose stored refcount is not 1, or clear on one whose refcount is 1.  A
 * snapshot operation changes refcounts and flags together, so an image
 * left by a crash in the middle of one must still keep them in step.
 *
 * A small qcow2 image holding data (allocated, compressed and zero
 * clusters, some shared with a snapshot and some not) goes through
 * snapshot create, apply and delete on the fault disk.  At every write of
 * each operation, crash images are taken under every policy, and each one
 * must be the image from before the operation or the one after it:
 *   - qemu-img check finds at most leaks (exit 0 or 3), and vdisk check
 *     no corruption;
 *   - the snapshot list is the one before or the one after;
 *   - the active disk reads as before or after (as the list says);
 *   - every snapshot reads as when it was taken (through vdisk, and on a
 *     sample through qemu-img convert -l).
 * A second test checks that vdisk check calls COPIED on a refcount of 2
 * an error, as qemu-img check does, and that -r leaks and -r all repair it
 * as qemu-img's do.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "fault.h"
#include "harness.h"

#define VSIZE (4u << 20)
#define LIMIT (64u << 20)
#define MAX_SNAPS 4

struct cfg {
    const char *name;
    unsigned cluster;
    const char *opts[3][2]; /* extra create options */
};

struct snap {
    char name[16];
    uint8_t *data;
};

/* What the guest sees: the active disk and the snapshots. */
struct state {
    uint8_t *active;
    struct snap snaps[MAX_SNAPS];
    unsigned nsnaps;
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
    struct capture *caps;
    size_t ncaps, capcaps;
    unsigned images, before, after, failures;
};

static void state_copy(struct state *dst, const struct state *src)
{
    dst->active = malloc(VSIZE);
    ck_assert(dst->active != NULL);
    memcpy(dst->active, src->active, VSIZE);
    dst->nsnaps = src->nsnaps;
    for (unsigned i = 0; i < src->nsnaps; i++) {
        dst->snaps[i] = src->snaps[i];
        dst->snaps[i].data = malloc(VSIZE);
        ck_assert(dst->snaps[i].data != NULL);
        memcpy(dst->snaps[i].data, src->snaps[i].data, VSIZE);
    }
}

static void state_free(struct state *st)
{
    free(st->active);
    for (unsigned i = 0; i < st->nsnaps; i++)
        free(st->snaps[i].data);
    memset(st, 0, sizeof *st);
}

/* ---- Crash images --------------------------------------------------------- */

static void capture(struct ctx *c, enum fault_policy p, uint64_t wno, uint64_t seed)
{
    if (c->ncaps == c->capcaps) {
        c->capcaps = c->capcaps ? c->capcaps * 2 : 64;
        c->caps = realloc(c->caps, c->capcaps * sizeof *c->caps);
        ck_assert(c->caps != NULL);
    }
    struct capture *k = &c->caps[c->ncaps++];
    ck_assert(fault_image(c->f, p, seed, &k->img, &k->len) == 0);
    k->policy = p;
    k->wno = wno;
}

/* The fault disk's hook: every write is a crash point, under every policy
 * (the random ones twice, with different choices). */
static void on_write(struct fault_disk *f, uint64_t wno, uint64_t off, uint64_t len,
                     void *opaque)
{
    (void)off;
    (void)len;
    (void)f;
    struct ctx *c = opaque;
    for (int p = 0; p < FAULT_POLICIES; p++) {
        capture(c, (enum fault_policy)p, wno, wno * 2654435761u + 1);
        if (p == FAULT_RANDOM_WRITES || p == FAULT_RANDOM_SECTORS || p == FAULT_KEEP_PREFIX ||
            p == FAULT_TEAR_LAST)
            capture(c, (enum fault_policy)p, wno, wno * 40503u + 77);
    }
}

static void flag(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void flag(struct ctx *c, const char *fmt, ...)
{
    if (c->failures++ < 5) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "FAIL %s: ", c->cfg->name);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
}

static void report_line(void *opaque, const char *line)
{
    char *buf = opaque;
    size_t n = strlen(buf);
    if (n < 1000)
        snprintf(buf + n, 1024 - n, "%s%s", n ? "; " : "", line);
}

/* Whether the snapshots of DEV are those of ST, by name and in order. */
static bool same_list(vdisk_dev *dev, const struct state *st)
{
    if (vdisk_snapshot_count(dev) != (int)st->nsnaps)
        return false;
    for (unsigned i = 0; i < st->nsnaps; i++) {
        struct vdisk_snapshot sn = {.struct_size = sizeof sn};
        if (vdisk_snapshot_get(dev, i, &sn) != 0 || strcmp(sn.name, st->snaps[i].name) != 0)
            return false;
    }
    return true;
}

/* Checks one crash image of the operation WHAT: it is BEFORE or AFTER. */
static void check_image(struct ctx *c, const struct capture *k, const char *what,
                        const struct state *before, const struct state *after)
{
    char label[160];
    snprintf(label, sizeof label, "%s: crash at write %llu, %s", what,
             (unsigned long long)k->wno, fault_policy_name(k->policy));
    c->images++;
    const char *img = scratch("crash.qcow2");
    write_file(img, k->img, k->len);
    struct run *q = run("qemu-img check '%s'", img);
    if (q->status != 0 && q->status != 3) {
        flag(c, "%s: qemu-img check exits %d (leaks at most allowed):\n%s%s", label, q->status,
             q->out, q->err);
        write_file(scratch("failed.qcow2"), k->img, k->len);
        return;
    }
    vdisk_options *o;
    ck_assert(vdisk_options_new(&o) == 0);
    vdisk_options_set(o, "read-only", "on");
    vdisk_dev *dev;
    int r = vdisk_open(&dev, img, o);
    vdisk_options_free(o);
    if (r < 0) {
        flag(c, "%s: the image does not open: %s", label, vdisk_get_error());
        return;
    }
    char lines[1024] = "";
    struct vdisk_check_result res = {.struct_size = sizeof res};
    r = vdisk_check(dev, 0, &res, report_line, lines);
    if (r < 0 || res.corruptions || res.check_errors)
        flag(c, "%s: vdisk check returns %d: %lld corruptions, %lld check errors: %s", label,
             r, (long long)res.corruptions, (long long)res.check_errors, lines);
    /* Which state: the snapshot list says, or (apply) the active disk. */
    uint8_t *got = malloc(VSIZE);
    ck_assert(got != NULL);
    ck_assert_msg(vdisk_pread(dev, got, VSIZE, 0) == 0, "%s: %s", label, vdisk_get_error());
    bool is_before = same_list(dev, before) && memcmp(got, before->active, VSIZE) == 0;
    bool is_after = same_list(dev, after) && memcmp(got, after->active, VSIZE) == 0;
    vdisk_close(dev);
    free(got);
    if (!is_before && !is_after) {
        flag(c, "%s: the image is neither the one before the operation nor the one after "
             "(snapshot list or active disk)", label);
        write_file(scratch("failed.qcow2"), k->img, k->len);
        return;
    }
    c->before += is_before;
    c->after += !is_before;
    /* Every snapshot, as vdisk reads it, and on a sample (every image
     * after the switch) as qemu does. */
    const struct state *st = is_before ? before : after;
    bool qemu = !is_before || c->images % 4 == 0;
    for (unsigned i = 0; i < st->nsnaps; i++) {
        const char *name = st->snaps[i].name;
        vdisk_options *so;
        ck_assert(vdisk_options_new(&so) == 0);
        vdisk_options_set(so, "read-only", "on");
        vdisk_options_set(so, "snapshot.name", name);
        vdisk_dev *sd;
        uint8_t *data = malloc(VSIZE);
        ck_assert(data != NULL);
        r = vdisk_open(&sd, img, so);
        vdisk_options_free(so);
        if (r < 0 || vdisk_pread(sd, data, VSIZE, 0) < 0)
            flag(c, "%s: snapshot %s cannot be read: %s", label, name, vdisk_get_error());
        else if (memcmp(data, st->snaps[i].data, VSIZE) != 0)
            flag(c, "%s: snapshot %s does not read as when it was taken", label, name);
        if (r == 0)
            vdisk_close(sd);
        free(data);
        if (!qemu)
            continue;
        const char *raw = scratch("snap.raw");
        struct run *cv = run("qemu-img convert -f qcow2 -O raw -l snapshot.name=%s '%s' '%s'",
                             name, img, raw);
        if (cv->status != 0) {
            flag(c, "%s: qemu-img convert of snapshot %s fails: %s", label, name, cv->err);
            continue;
        }
        size_t len;
        data = read_file(raw, &len);
        if (len != VSIZE || memcmp(data, st->snaps[i].data, VSIZE) != 0)
            flag(c, "%s: snapshot %s does not read, with qemu-img, as when it was taken", label,
                 name);
        free(data);
    }
}

/* ---- The operations ------------------------------------------------------- */

static void pattern(uint8_t *buf, uint64_t off, uint64_t len, unsigned tag, bool compressible)
{
    for (uint64_t i = 0; i < len; i++) {
        uint64_t x = off + i;
        buf[i] = compressible ? (uint8_t)(tag * 37 + (x & 15) * 11 + 1)
                              : (uint8_t)((x >> 4) * 29 + (x & 15) + tag * 151 + 1);
    }
}

/* Guest writes (not crash points): plain, compressed and zeroes. */
static void guest_writes(struct ctx *c, struct state *st, unsigned tag)
{
    uint64_t cs = c->cfg->cluster;
    uint64_t rng = tag * 0x9e3779b97f4a7c15ull + 5;
    for (int i = 0; i < 12; i++) {
        uint64_t len = 1 + rng_next(&rng) % (3 * cs), off = rng_next(&rng) % (VSIZE - len);
        uint8_t *buf = malloc(len);
        pattern(buf, off, len, tag * 16 + (unsigned)i, false);
        ck_assert_msg(vdisk_pwrite(c->dev, buf, len, off) == 0, "%s", vdisk_get_error());
        memcpy(st->active + off, buf, len);
        free(buf);
    }
    for (int i = 0; i < 3; i++) {
        uint64_t off = rng_next(&rng) % (VSIZE / cs) * cs;
        uint8_t *buf = malloc(cs);
        pattern(buf, off, cs, tag * 16 + 13 + (unsigned)i, true);
        ck_assert_msg(vdisk_pwrite_compressed(c->dev, buf, cs, off) == 0, "%s",
                      vdisk_get_error());
        memcpy(st->active + off, buf, cs);
        free(buf);
    }
    uint64_t off = rng_next(&rng) % (VSIZE / cs - 2) * cs;
    ck_assert(vdisk_write_zeroes(c->dev, off, 2 * cs, VDISK_REQ_MAY_UNMAP) == 0);
    memset(st->active + off, 0, 2 * cs);
    ck_assert(vdisk_flush(c->dev) == 0);
}

enum opk { CREATE, APPLY, DELETE };

/* Runs one snapshot operation with a crash point at every write, and
 * checks the crash images against the states before and after. */
static void crash_op(struct ctx *c, struct state *st, enum opk op, const char *name)
{
    static const char *const verbs[] = {"snapshot -c", "snapshot -a", "snapshot -d"};
    /* The model holds before the operation. */
    uint8_t *now = malloc(VSIZE);
    ck_assert(now != NULL);
    ck_assert(vdisk_pread(c->dev, now, VSIZE, 0) == 0);
    assert_same_bytes(now, st->active, VSIZE, 0, "the active disk before the operation");
    free(now);
    struct state before;
    state_copy(&before, st);
    fault_set_hook(c->f, on_write, c);
    uint64_t w0 = fault_writes(c->f);
    int r = op == CREATE  ? vdisk_snapshot_create(c->dev, name)
            : op == APPLY ? vdisk_snapshot_apply(c->dev, name)
                          : vdisk_snapshot_delete(c->dev, name);
    fault_set_hook(c->f, NULL, NULL);
    ck_assert_msg(r == 0, "%s %s: %s", verbs[op], name, vdisk_get_error());
    ck_assert_msg(fault_writes(c->f) > w0, "%s %s wrote nothing", verbs[op], name);
    /* The model after it. */
    unsigned k = 0;
    while (k < st->nsnaps && strcmp(st->snaps[k].name, name) != 0)
        k++;
    if (op == CREATE) {
        ck_assert(st->nsnaps < MAX_SNAPS);
        struct snap *s = &st->snaps[st->nsnaps++];
        snprintf(s->name, sizeof s->name, "%s", name);
        s->data = malloc(VSIZE);
        memcpy(s->data, st->active, VSIZE);
    } else if (op == APPLY) {
        ck_assert(k < st->nsnaps);
        memcpy(st->active, st->snaps[k].data, VSIZE);
    } else {
        ck_assert(k < st->nsnaps);
        free(st->snaps[k].data);
        memmove(&st->snaps[k], &st->snaps[k + 1], (st->nsnaps - k - 1) * sizeof *st->snaps);
        st->nsnaps--;
    }
    char what[64];
    snprintf(what, sizeof what, "%s %s", verbs[op], name);
    unsigned images0 = c->images;
    /* Policies often build the same image: each is checked once. */
    uint64_t *seen = calloc(c->ncaps + 1, sizeof *seen);
    size_t nseen = 0;
    ck_assert(seen != NULL);
    for (size_t i = 0; i < c->ncaps; i++) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t j = 0; j < c->caps[i].len; j++)
            h = (h ^ c->caps[i].img[j]) * 0x100000001b3ull;
        h ^= c->caps[i].len;
        bool dup = false;
        for (size_t j = 0; j < nseen && !dup; j++)
            dup = seen[j] == h;
        if (!dup) {
            seen[nseen++] = h;
            check_image(c, &c->caps[i], what, &before, st);
        }
        free(c->caps[i].img);
    }
    free(seen);
    printf("%s: %s: %llu writes, %zu crash images, %u different ones checked\n", c->cfg->name,
           what, (unsigned long long)(fault_writes(c->f) - w0), c->ncaps, c->images - images0);
    c->ncaps = 0;
    state_free(&before);
}

static const struct cfg configs[] = {
    {"4k", 4096, {{NULL, NULL}}},
    {"64k-extl2", 65536, {{"extended_l2", "on"}, {NULL, NULL}}},
    {"4k-refcount64-lazy", 4096, {{"refcount_bits", "64"}, {"lazy_refcounts", "on"},
                                  {NULL, NULL}}},
    {"4k-v2", 4096, {{"compat", "0.10"}, {NULL, NULL}}},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

START_TEST(every_write)
{
    const struct cfg *cfg = &configs[_i];
    /* SNAPCRASH_ONLY=NAME runs one configuration (to chase a failure). */
    const char *only = getenv("SNAPCRASH_ONLY");
    if (only && *only && strcmp(only, cfg->name) != 0)
        return;
    struct ctx c = {.cfg = cfg};
    const char *tmpl = scratch("template.qcow2");
    unlink(tmpl);
    vdisk_options *o;
    ck_assert(vdisk_options_new(&o) == 0);
    char cs[32];
    snprintf(cs, sizeof cs, "%u", cfg->cluster);
    vdisk_options_set(o, "cluster_size", cs);
    for (int i = 0; cfg->opts[i][0]; i++)
        vdisk_options_set(o, cfg->opts[i][0], cfg->opts[i][1]);
    ck_assert_msg(vdisk_create(tmpl, "qcow2", VSIZE, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    size_t len;
    uint8_t *img = read_file(tmpl, &len);
    c.f = fault_new(img, len, LIMIT);
    free(img);
    ck_assert(c.f != NULL);
    struct vdisk_open_params p = fault_params(false);
    struct vdisk_dev *file;
    ck_assert(fault_open(&file, c.f, scratch("top.qcow2"), &p) == 0);
    ck_assert_msg(dev_open_format(&c.dev, file, "qcow2", &p, NULL) == 0, "%s",
                  vdisk_get_error());

    struct state st = {.active = calloc(1, VSIZE)};
    ck_assert(st.active != NULL);
    guest_writes(&c, &st, 1);
    crash_op(&c, &st, CREATE, "s1");      /* everything owned alone becomes shared */
    guest_writes(&c, &st, 2);             /* some clusters copied, some still shared */
    crash_op(&c, &st, CREATE, "s2");
    guest_writes(&c, &st, 3);
    crash_op(&c, &st, APPLY, "s1");       /* back to s1: s2's and the active's go */
    guest_writes(&c, &st, 4);
    crash_op(&c, &st, DELETE, "s1");      /* what only s1 shared becomes owned again */
    crash_op(&c, &st, CREATE, "s3");
    crash_op(&c, &st, DELETE, "s2");
    crash_op(&c, &st, DELETE, "s3");      /* no snapshot left: every flag set again */

    dev_unref(c.dev);
    uint8_t *fin;
    ck_assert(fault_durable(c.f, &fin, &len) == 0);
    const char *last = scratch("final.qcow2");
    write_file(last, fin, len);
    free(fin);
    RUN_OK("qemu-img check '%s'", last);
    write_file(scratch("final.raw"), st.active, VSIZE);
    RUN_OK("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", last, scratch("final.raw"));
    fault_free(c.f);
    free(c.caps);
    state_free(&st);
    printf("%s: %u crash images: %u the image before the operation, %u the one after\n",
           cfg->name, c.images, c.before, c.after);
    ck_assert_msg(c.failures == 0, "%s: %u of %u crash images fail (the first are above)",
                  cfg->name, c.failures, c.images);
    /* Both kinds were met: the crash points cover the whole operation. */
    ck_assert(c.before > 0 && c.after > 0);
}
END_TEST

/* ---- vdisk check against qemu-img check ----------------------------------- */

/* Sets the refcount of the cluster at HOST of the image at PATH (16-bit
 * refcounts, one refcount block) to RC. */
static void poke_refcount(const char *path, uint64_t host, uint16_t rc)
{
    int fd = open(path, O_RDWR);
    ck_assert(fd >= 0);
    uint8_t h[104], b[8];
    ck_assert(pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h);
    uint32_t cluster_bits = be32_load(h + 20);
    uint64_t reft = be64_load(h + 48);
    ck_assert(pread(fd, b, 8, (off_t)reft) == 8);
    uint64_t block = be64_load(b);
    uint8_t v[2];
    be16_store(v, rc);
    ck_assert(pwrite(fd, v, 2, (off_t)(block + 2 * (host >> cluster_bits))) == 2);
    close(fd);
}

/* The host offset of guest cluster 0 (L1 entry 0, L2 entry 0). */
static uint64_t host_of_cluster0(const char *path, uint64_t *l2e)
{
    int fd = open(path, O_RDONLY);
    ck_assert(fd >= 0);
    uint8_t h[104], b[8];
    ck_assert(pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h);
    uint64_t l1 = be64_load(h + 40);
    ck_assert(pread(fd, b, 8, (off_t)l1) == 8);
    uint64_t l2 = be64_load(b) & 0x00fffffffffffe00ull;
    ck_assert(pread(fd, b, 8, (off_t)l2) == 8);
    close(fd);
    *l2e = be64_load(b);
    return *l2e & 0x00fffffffffffe00ull;
}

START_TEST(copied_on_refcount_two)
{
    const char *img = scratch("copied.qcow2"), *fix = scratch("copied-fix.qcow2");
    unlink(img);
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 1M", img);
    RUN_OK("qemu-io -c 'write -P 0x5a 0 8k' '%s'", img);
    uint64_t l2e, host = host_of_cluster0(img, &l2e);
    ck_assert_msg(l2e & (1ull << 63), "COPIED is set on a fresh cluster");
    poke_refcount(img, host, 2);
    /* qemu-img: one leak, and COPIED on a refcount of 2 is an error. */
    struct run *q = run("qemu-img check '%s'", img);
    ck_assert_int_eq(q->status, 2);
    char want[160];
    snprintf(want, sizeof want, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=2",
             (unsigned long long)l2e);
    ck_assert_msg(strstr(q->err, want), "qemu-img: %s", q->err);
    /* vdisk agrees, in the same words. */
    struct run *v = run("'%s' check '%s'", vdisk_bin(), img);
    ck_assert_msg(v->status == 2, "vdisk check exits %d: %s%s", v->status, v->out, v->err);
    ck_assert_msg(strstr(v->err, want) || strstr(v->out, want), "vdisk: %s%s", v->out, v->err);
    char leak[96];
    snprintf(leak, sizeof leak, "Leaked cluster %llu refcount=2 reference=1",
             (unsigned long long)(host >> 12));
    ck_assert_msg(strstr(v->err, leak) || strstr(v->out, leak), "vdisk: %s%s", v->out,
                  v->err);
    ck_assert_msg(strstr(v->out, "1 errors were found") || strstr(v->err, "1 errors were found"),
                  "vdisk: %s%s", v->out, v->err);
    /* -r leaks: the refcount back to 1, and the flag is right again. */
    RUN_OK("cp '%s' '%s'", img, fix);
    RUN_OK("qemu-img check -q -r leaks '%s'", fix);
    RUN_OK("qemu-img check '%s'", fix);
    RUN_OK("cp '%s' '%s'", img, fix);
    RUN_OK("'%s' check -q -r leaks '%s'", vdisk_bin(), fix);
    RUN_OK("qemu-img check '%s'", fix);
    RUN_OK("'%s' check '%s'", vdisk_bin(), fix);
    /* -r all, the same. */
    RUN_OK("cp '%s' '%s'", img, fix);
    RUN_OK("'%s' check -q -r all '%s'", vdisk_bin(), fix);
    RUN_OK("qemu-img check '%s'", fix);
    RUN_OK("qemu-io -c 'read -P 0x5a 0 8k' '%s'", fix);
    /* The other way: COPIED clear on a refcount of 1 is an error too. */
    int fd = open(img, O_RDWR);
    ck_assert(fd >= 0);
    uint8_t h[104], b[8];
    ck_assert(pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h);
    ck_assert(pread(fd, b, 8, (off_t)be64_load(h + 40)) == 8);
    uint64_t l2 = be64_load(b) & 0x00fffffffffffe00ull;
    be64_store(b, l2e & ~(1ull << 63));
    ck_assert(pwrite(fd, b, 8, (off_t)l2) == 8);
    close(fd);
    poke_refcount(img, host, 1);
    q = run("qemu-img check '%s'", img);
    ck_assert_int_eq(q->status, 2);
    v = run("'%s' check '%s'", vdisk_bin(), img);
    ck_assert_msg(v->status == 2, "vdisk check exits %d: %s%s", v->status, v->out, v->err);
    snprintf(want, sizeof want, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=1",
             (unsigned long long)(l2e & ~(1ull << 63)));
    ck_assert_msg(strstr(v->err, want) || strstr(v->out, want), "vdisk: %s%s", v->out, v->err);
    RUN_OK("'%s' check -q -r all '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
}
END_TEST

int main(void)
{
    /* qemu-img is the judge here: without it nothing can be checked. */
    require_program("qemu-img");
    require_program("qemu-io");
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("snapcrash");
    TCase *tc = tcase_create("every-write");
    tcase_set_timeout(tc, 1200);
    tcase_add_loop_test(tc, every_write, 0, (int)NCONFIGS);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("check");
    tcase_add_test(tc2, copied_on_refcount_two);
    suite_add_tcase(s, tc2);
    return run_suite(s);
}
