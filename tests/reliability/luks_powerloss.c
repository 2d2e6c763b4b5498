/* SPDX-License-Identifier: MIT */
/*
 * tests/reliability/luks_powerloss.c: power cuts during writes to encrypted
 * images (issue 23): a qcow2 image with encrypt.format=luks and a raw LUKS
 * image (QEMU's luks format), made by vdisk with AES-256-XTS (qemu-img's
 * default cipher), on the fault disk (tests/common/fault.h).
 *
 * The workload allocates clusters, overwrites part of what it wrote
 * (in-place rewrites of ciphertext), writes zeroes (an encrypted image
 * writes them as encrypted data) and grows a written run past its end,
 * with a flush after some steps.  It is cut at every write it makes, under
 * every crash policy of the fault disk.  Sectors of the fault disk are 512
 * bytes, as are the sectors of the cipher, so a sector on disk is either
 * its old ciphertext or its new one: every 512-byte sector of the disk must
 * decrypt to the value it held at the last completed flush or to a value
 * written since (the one being written when the power went included),
 * never to anything else (noise: a sector encrypted under the wrong IV or
 * half-written).  After each cut:
 *   - the image opens with its passphrase (header and key slot intact);
 *   - vdisk's check finds no corruption in the qcow2 image (leaks allowed;
 *     QEMU has no check for raw LUKS images, nor has vdisk);
 *   - every sector read by vdisk holds an allowed value, those written and
 *     flushed before the cut the value written;
 *   - a copy of the image (one in VDISK_LUKS_POWERLOSS_QEMU_EVERY) is
 *     checked by qemu-img check (qcow2: clean or
 *     leaks only) and read by qemu-io (--object secret, --image-opts):
 *     every run of sectors reads as vdisk read it (read -P), so the
 *     ciphertext vdisk wrote decrypts for QEMU to the same data.
 *
 * The key slot is made with iter-time=1 (ms: the least iterations allowed) so that the hundreds of
 * opens stay fast; the data cipher does not depend on it.
 *
 * Environment:
 *   VDISK_LUKS_POWERLOSS_QEMU_EVERY  qemu-img check and qemu-io on one
 *                                    crash image in N (default 5, 11 in
 *                                    sanitizer builds: strides prime to the
 *                                    6 policies, so that each policy gets
 *                                    its turn; 1: every image, about twice
 *                                    as long)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "fault.h"
#include "harness.h"
#include "sectors.h"
#include "options_internal.h"

#define MIB (1u << 20)
#define VSIZE (6u * MIB)
#define SECTORS (VSIZE / FAULT_SECTOR)
#define LIMIT (64u << 20)
#define PASS "correct horse battery staple"

enum { OP_WRITE, OP_ZERO, OP_FLUSH };

struct op {
    int kind;
    unsigned pat;      /* the byte written (OP_ZERO: 0) */
    uint64_t off, len; /* whole sectors */
};

/* Patterns are 1..7; a sector's allowed values are a mask of them and 0. */
static const struct op ops[] = {
    {OP_WRITE, 1, 3 * MIB + 586 * 512, 64 << 10},   /* allocating, mid-cluster */
    {OP_WRITE, 2, 0 * MIB + 586 * 512, 64 << 10},
    {OP_FLUSH, 0, 0, 0},
    {OP_WRITE, 3, 5 * MIB + 586 * 512, 64 << 10},
    {OP_WRITE, 4, 3 * MIB + 602 * 512, 16 << 10},   /* overwrite, flushed data */
    {OP_FLUSH, 0, 0, 0},
    {OP_ZERO, 0, 0 * MIB + 590 * 512, 4096},        /* zeroes over flushed data */
    {OP_WRITE, 5, 1 * MIB + 3 * 512, 200 << 10},    /* several clusters */
    {OP_WRITE, 6, 5 * MIB + 600 * 512, 128 << 10},  /* overwrite, unflushed data, growing */
    {OP_FLUSH, 0, 0, 0},
    {OP_WRITE, 7, 1 * MIB + 100 * 512, 8192},       /* overwrite, then close */
};
#define NOPS (sizeof ops / sizeof ops[0])

struct state {
    uint8_t cur[SECTORS];  /* what the guest wrote last */
    uint8_t dur[SECTORS];  /* the value at the last completed flush */
    uint8_t pend[SECTORS]; /* values written since (bit v: value v) */
};

struct fmt_case {
    const char *format;
    const char *secret_key; /* the option naming the secret */
    const char *qemu_opts;  /* --image-opts for qemu, %s: the file */
};

static const struct fmt_case cases[] = {
    {"qcow2", "encrypt.key-secret",
     "driver=qcow2,encrypt.key-secret=s0,file.driver=file,file.filename=%s"},
    {"luks", "key-secret", "driver=luks,key-secret=s0,file.driver=file,file.filename=%s"},
};

static struct opt_set open_opts;
static vdisk_options *open_o;

static void set_open_opts(const struct fmt_case *c)
{
    if (open_o) {
        opt_set_fini(&open_opts);
        vdisk_options_free(open_o);
    }
    ck_assert_int_eq(vdisk_options_new(&open_o), 0);
    ck_assert_int_eq(vdisk_options_set(open_o, c->secret_key, "s0"), 0);
    ck_assert_int_eq(vdisk_options_set(open_o, "secret.s0", PASS), 0);
    ck_assert_int_eq(opt_set_init(&open_opts, open_o), 0);
}

/* Opens the format over a new device on F; the device or NULL. */
static struct vdisk_dev *open_on(struct fault_disk *f, const char *img, const char *format,
                                 bool ro)
{
    struct vdisk_open_params p = fault_params(ro);
    struct vdisk_dev *file, *dev;
    ck_assert_int_eq(fault_open(&file, f, img, &p), 0);
    /* Each open takes its options anew. */
    opt_set_fini(&open_opts);
    ck_assert_int_eq(opt_set_init(&open_opts, open_o), 0);
    if (dev_open_format(&dev, file, format, &p, &open_opts) < 0) {
        dev_unref(file);
        return NULL;
    }
    return dev;
}

/* The workload on DEV, tracking S; stops at the first failure. */
static void workload(struct vdisk_dev *dev, struct state *s, uint8_t *buf)
{
    for (size_t i = 0; i < NOPS; i++) {
        const struct op *o = &ops[i];
        if (o->kind == OP_FLUSH) {
            if (dev_flush(dev) < 0)
                return;
            memcpy(s->dur, s->cur, SECTORS);
            memset(s->pend, 0, SECTORS);
            continue;
        }
        uint64_t s0 = o->off / FAULT_SECTOR, n = o->len / FAULT_SECTOR;
        for (uint64_t k = s0; k < s0 + n; k++)
            s->pend[k] |= (uint8_t)(1u << o->pat);
        int r;
        if (o->kind == OP_WRITE) {
            memset(buf, (int)o->pat, o->len);
            r = dev_pwrite(dev, buf, o->len, o->off);
        } else {
            r = dev_write_zeroes(dev, o->off, o->len, 0);
        }
        if (r < 0)
            return;
        memset(s->cur + s0, (int)o->pat, n);
    }
}

/* Each sector of DATA (the whole disk) holds one allowed value of S. */
static void verify(const uint8_t *data, const struct state *s, const char *what)
{
    sectors_verify(data, s->dur, s->pend, SECTORS, what);
}

/* qemu-io reads the copy COPY as DATA (vdisk's reading): read -P per run
 * of equal sectors; qemu-img check on qcow2. */
static unsigned qemu_reads;

static void qemu_agrees(const struct fmt_case *c, const char *copy, const uint8_t *data,
                        const char *what)
{
    char *opts = strdup(fmt(c->qemu_opts, copy));
    if (strcmp(c->format, "qcow2") == 0) {
        struct run *q = run("qemu-img check --object secret,id=s0,data='" PASS "' "
                            "--image-opts '%s'", opts);
        ck_assert_msg(q->status == 0 || q->status == 3, "%s: qemu-img check exited %d: %s %s",
                      what, q->status, q->out, q->err);
    }
    char *cmds = sectors_qemu_reads(data, SECTORS);
    struct run *q = run("qemu-io --object secret,id=s0,data='" PASS "' --image-opts '%s'%s",
                        opts, cmds);
    ck_assert_msg(q->status == 0 && !strstr(q->out, "failed") && !strstr(q->err, "failed"),
                  "%s: qemu-io reads other data than vdisk (exit %d): %s %s", what, q->status,
                  q->out, q->err);
    qemu_reads++;
    free(cmds);
    free(opts);
}

static void ignore_warning(void *opaque, const char *msg)
{
    (void)opaque;
    (void)msg;
}

static void power_cuts(const struct fmt_case *c)
{
    vdisk_set_warning_handler(ignore_warning, NULL);
    /* qemu-img and qemu-io are not sanitized: fewer of them in a
     * sanitizer build, whose point is vdisk's side. */
    unsigned every = SANITIZED ? 11 : 5;
    const char *e = getenv("VDISK_LUKS_POWERLOSS_QEMU_EVERY");
    if (e && atoi(e) > 0)
        every = (unsigned)atoi(e);
    set_open_opts(c);
    const char *img = scratch(fmt("p.%s", c->format));
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    bool qcow2 = strcmp(c->format, "qcow2") == 0;
    const char *pre = qcow2 ? "encrypt." : "";
    if (qcow2)
        ck_assert_int_eq(vdisk_options_set(o, "encrypt.format", "luks"), 0);
    ck_assert_int_eq(vdisk_options_set(o, fmt("%skey-secret", pre), "s0"), 0);
    ck_assert_int_eq(vdisk_options_set(o, fmt("%siter-time", pre), "1"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "secret.s0", PASS), 0);
    ck_assert_msg(vdisk_create(img, c->format, VSIZE, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    size_t len;
    uint8_t *fresh = read_file(img, &len);
    uint8_t *buf = malloc(VSIZE), *data;
    struct state *s0 = calloc(1, sizeof *s0), *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(s0);
    ck_assert_ptr_nonnull(s);
    struct vdisk_dev *dev;
    struct fault_disk *f;
    if (!qcow2) {
        /* A new LUKS image's payload is zeroes on disk, noise once
         * decrypted (as QEMU's): the disk starts as encrypted zeroes. */
        f = fault_new(fresh, len, LIMIT);
        ck_assert_ptr_nonnull(dev = open_on(f, img, c->format, false));
        ck_assert_int_eq(dev_write_zeroes(dev, 0, VSIZE, 0), 0);
        ck_assert_int_eq(dev_flush(dev), 0);
        dev_unref(dev);
        free(fresh);
        ck_assert_int_eq(fault_durable(f, &fresh, &len), 0);
        fault_free(f);
    }
    /* The whole workload: how many writes it makes; every value lands. */
    f = fault_new(fresh, len, LIMIT);
    ck_assert_ptr_nonnull(dev = open_on(f, img, c->format, false));
    *s = *s0;
    workload(dev, s, buf);
    dev_unref(dev);
    uint64_t total = fault_writes(f);
    struct fault_disk *g = fault_after_crash(f, FAULT_DROP_ALL, 1);
    ck_assert_ptr_nonnull(dev = open_on(g, img, c->format, true));
    ck_assert_int_eq(dev_pread(dev, buf, VSIZE, 0), 0);
    dev_unref(dev);
    memcpy(s->dur, s->cur, SECTORS);
    memset(s->pend, 0, SECTORS);
    verify(buf, s, "the whole workload");
    fault_free(g);
    fault_free(f);
    ck_assert_uint_ge(total, NOPS - 3);
    unsigned images = 0, leaks = 0;
    for (uint64_t n = 1; n <= total; n++) {
        for (int pol = 0; pol < FAULT_POLICIES; pol++) {
            char what[160];
            snprintf(what, sizeof what, "%s: crash at write %llu of %llu (%s)", c->format,
                     (unsigned long long)n, (unsigned long long)total,
                     fault_policy_name((enum fault_policy)pol));
            f = fault_new(fresh, len, LIMIT);
            *s = *s0;
            fault_crash_at(f, n);
            dev = open_on(f, img, c->format, false);
            if (dev) {
                workload(dev, s, buf);
                dev_unref(dev);
            }
            g = fault_after_crash(f, (enum fault_policy)pol, n * 7 + 1);
            ck_assert_ptr_nonnull(g);
            dev = open_on(g, img, c->format, true);
            ck_assert_msg(dev != NULL, "%s: the image does not open: %s", what,
                          vdisk_get_error());
            if (qcow2) {
                struct vdisk_check_result res = {.struct_size = sizeof res};
                ck_assert_int_eq(dev->drv->check(dev, 0, &res, NULL, NULL), 0);
                ck_assert_msg(res.corruptions == 0, "%s: %lld corruptions", what,
                              (long long)res.corruptions);
                leaks += res.leaks > 0;
            }
            ck_assert_int_eq(dev_pread(dev, buf, VSIZE, 0), 0);
            dev_unref(dev);
            verify(buf, s, what);
            if (images++ % every == 0) {
                size_t dlen;
                ck_assert_int_eq(fault_current(g, &data, &dlen), 0);
                const char *copy = scratch(fmt("q.%s", c->format));
                write_file(copy, data, dlen);
                free(data);
                qemu_agrees(c, copy, buf, what);
            }
            fault_free(g);
            fault_free(f);
        }
    }
    printf("%s: %llu crash points x %d policies: %u images (%u with leaks), %u read by "
           "qemu-io\n", c->format, (unsigned long long)total, (int)FAULT_POLICIES, images,
           leaks, qemu_reads);
    ck_assert_uint_gt(qemu_reads, 0);
    qemu_reads = 0;
    free(fresh);
    free(buf);
    free(s0);
    free(s);
    opt_set_fini(&open_opts);
    vdisk_options_free(open_o);
    open_o = NULL;
}

START_TEST(qcow2_luks)
{
    power_cuts(&cases[0]);
}
END_TEST

START_TEST(raw_luks)
{
    power_cuts(&cases[1]);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("luks-powerloss");
    TCase *tc = tcase_create("luks");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, qcow2_luks);
    tcase_add_test(tc, raw_luks);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
