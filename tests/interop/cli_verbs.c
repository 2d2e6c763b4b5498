/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_verbs.c: verbs and flags read and carried out as
 * qemu-img 7.2 does (issue 21, item 2): commit -r, resize
 * --preallocation, amend -o size= and --force, check -r on images with
 * leaked clusters and on ones -r leaks cannot mend, and the bitmap verb's
 * syntax.  Each case runs qemu-img and vdisk on copies of the same image
 * and compares stdout, stderr (the tool's name aside), the exit status and
 * where the verb writes, the image.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* "qemu-img: " at the start of a line as "vdisk: ". */
static char *renamed(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    for (const char *p = s; *p;) {
        if (strncmp(p, "qemu-img: ", 10) == 0 && (p == s || p[-1] == '\n')) {
            o = stpcpy(o, "vdisk: ");
            p += 10;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/*
 * VERB ARGS run by qemu-img on a copy of SRC named x.img, and by vdisk on
 * a fresh copy under the same name (so that file names printed agree):
 * the same stdout, stderr and status; with SAME_BYTES the images after
 * are the same bytes.  Returns the status.
 */
static int same_on_copies(const char *src, bool same_bytes, const char *verb, const char *args)
{
    const char *d = scratch_dir();
    struct run *r = run("cd '%s' && cp '%s' x.img && qemu-img %s %s; s=$?; cp x.img xq.img; "
                        "exit $s", d, src, verb, args);
    int qst = r->status;
    char *qout = strdup(r->out), *qerr = renamed(r->err);
    r = run("cd '%s' && cp '%s' x.img && '%s' %s %s; s=$?; cp x.img xv.img; exit $s", d, src,
            vdisk_bin(), verb, args);
    ck_assert_msg(strcmp(qout, r->out) == 0, "%s %s: stdout differs\nqemu-img:\n%s\nvdisk:\n%s",
                  verb, args, qout, r->out);
    ck_assert_msg(strcmp(qerr, r->err) == 0, "%s %s: stderr differs\nqemu-img:\n%s\nvdisk:\n%s",
                  verb, args, qerr, r->err);
    ck_assert_msg(qst == r->status, "%s %s: exit status: qemu-img %d, vdisk %d", verb, args, qst,
                  r->status);
    if (same_bytes)
        RUN_OK("cd '%s' && cmp xq.img xv.img", d);
    free(qout);
    free(qerr);
    return qst;
}

/* Only the first line of stderr and the status compared (usage errors
 * end with "Try 'qemu-img --help'", vdisk's with its own verb named). */
static void same_first_line(const char *verb, const char *args)
{
    struct run *r = run("cd '%s' && qemu-img %s %s", scratch_dir(), verb, args);
    int qst = r->status;
    char *qerr = renamed(r->err);
    char *nl = strchr(qerr, '\n');
    if (nl)
        nl[1] = '\0';
    r = run("cd '%s' && '%s' %s %s", scratch_dir(), vdisk_bin(), verb, args);
    ck_assert_msg(strncmp(qerr, r->err, strlen(qerr)) == 0,
                  "%s %s: stderr differs\nqemu-img:\n%s\nvdisk:\n%s", verb, args, qerr, r->err);
    ck_assert_msg(qst == r->status, "%s %s: exit status: qemu-img %d, vdisk %d", verb, args, qst,
                  r->status);
    free(qerr);
}

/* ---- commit -r ----------------------------------------------------------- */

/* The rate limit read as qemu-img reads it: suffixes, hexadecimal, 0 (no
 * limit); fractions of a byte, signs, "kB" and values past INT64_MAX
 * refused in its two messages. */
START_TEST(commit_rate_parsing)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 base.qcow2 1M && qemu-img create -q -f qcow2 "
           "-b base.qcow2 -F qcow2 top.qcow2 && cp base.qcow2 base0.qcow2 && cp top.qcow2 "
           "top0.qcow2", scratch_dir());
    static const char *const rates[] = {"0", "1", "1k", "1M", "0x10", "1e", "1T", "1b", "-1",
                                        "abc", "1.5", "''", "1kB", "8E", "16E",
                                        "9999999999999999999999"};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        same_as_qemu_img("commit", fmt("-r %s top.qcow2", rates[i]));
}
END_TEST

/* A rate-limited commit copies what qemu-img's does (the time it takes is
 * not checked). */
START_TEST(commit_rate_copies)
{
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 b.qcow2 4M && qemu-io -f qcow2 -c "
           "'write -P 1 0 4M' b.qcow2 >/dev/null && qemu-img create -q -f qcow2 -b b.qcow2 -F "
           "qcow2 t.qcow2 && qemu-io -f qcow2 -c 'write -P 2 64k 192k' -c 'write -z 1M 64k' "
           "t.qcow2 >/dev/null && cp b.qcow2 qb.qcow2 && cp t.qcow2 qt.qcow2 && qemu-img rebase "
           "-u -b qb.qcow2 -F qcow2 qt.qcow2", d);
    RUN_OK("cd '%s' && qemu-img commit -q -r 64M qt.qcow2 && '%s' commit -q -r 64M t.qcow2 && "
           "qemu-img compare -q -f qcow2 -F qcow2 qb.qcow2 b.qcow2 && qemu-img compare -q "
           "qt.qcow2 t.qcow2 && qemu-img check -q b.qcow2", d, vdisk_bin());
}
END_TEST

/* Zeroes committed down deallocate the base's clusters as qemu-img's commit
 * does (iotest 313): the base's map (with its host offsets) and check
 * output are qemu-img's. */
START_TEST(commit_zeroes_unmap)
{
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && rm -f zb.qcow2 zt.qcow2 && qemu-img create -q -f qcow2 -o "
           "cluster_size=4k zb.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 0 1M' zb.qcow2 "
           ">/dev/null && qemu-img create -q -f qcow2 -b zb.qcow2 -F qcow2 zt.qcow2 && qemu-io "
           "-f qcow2 -c 'write -z 0 512k' -c 'write -P 2 768k 4k' zt.qcow2 >/dev/null && cp "
           "zb.qcow2 qzb.qcow2 && cp zt.qcow2 qzt.qcow2 && qemu-img rebase -u -b qzb.qcow2 -F "
           "qcow2 qzt.qcow2", d);
    RUN_OK("cd '%s' && qemu-img commit -q qzt.qcow2 && '%s' commit -q zt.qcow2", d, vdisk_bin());
    struct run *q = run("cd '%s' && qemu-img map --output=json qzb.qcow2 && qemu-img check "
                        "qzb.qcow2", d);
    char *qout = strdup(q->out);
    struct run *v = run("cd '%s' && qemu-img map --output=json zb.qcow2 && qemu-img check "
                        "zb.qcow2", d);
    ck_assert_str_eq(v->out, qout);
    free(qout);
}
END_TEST

/* amend --force on LUKS keyslots (iotest 293): without it the refusals in
 * qemu-img's words; with it an active keyslot is overwritten and an
 * inactive one erased again, as qemu-img does. */
START_TEST(amend_force_keyslots)
{
#define SECRETS "--object secret,id=sec0,data=pass0 --object secret,id=sec1,data=pass1"
#define OPTS(s) "--image-opts driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=" s
    RUN_OK("cd '%s' && rm -f e.qcow2 && qemu-img create -q -f qcow2 " SECRETS " -o "
           "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 e.qcow2 1M && "
           "qemu-io " SECRETS " " OPTS("sec0") " -c 'write -P 7 0 64k' >/dev/null",
           scratch_dir());
    same_as_qemu_img("amend", SECRETS " -o encrypt.state=active,encrypt.new-secret=sec1,"
                     "encrypt.keyslot=0 " OPTS("sec0"));
    same_as_qemu_img("amend", SECRETS " -o encrypt.state=inactive,encrypt.keyslot=0 "
                     OPTS("sec0"));
    same_as_qemu_img("amend", SECRETS " -o encrypt.state=inactive,encrypt.old-secret=sec0 "
                     OPTS("sec0"));
    same_as_qemu_img("amend", SECRETS " -o encrypt.state=inactive,encrypt.keyslot=1 "
                     OPTS("sec0"));
    same_as_qemu_img("amend", SECRETS " -o encrypt.state=inactive,encrypt.keyslot=1 --force "
                     OPTS("sec0"));
    RUN_OK("cd '%s' && '%s' amend " SECRETS " -o encrypt.state=active,encrypt.new-secret=sec1,"
           "encrypt.iter-time=10,encrypt.keyslot=0 --force " OPTS("sec0"), scratch_dir(),
           vdisk_bin());
    RUN_OK("cd '%s' && qemu-io " SECRETS " " OPTS("sec1") " -c 'read -P 7 0 64k' >/dev/null",
           scratch_dir());
    struct run *r = run("cd '%s' && qemu-io " SECRETS " " OPTS("sec0") " -c 'read 0 512'",
                        scratch_dir());
    ck_assert_str_eq(r->err, "qemu-io: can't open: Invalid password, cannot unlock any "
                     "keyslot\n");
#undef OPTS
#undef SECRETS
}
END_TEST

/* ---- resize --preallocation ---------------------------------------------- */

/* Modes refused as qemu-img refuses them: an unknown mode, metadata on
 * raw, any mode but off when shrinking. */
START_TEST(resize_preallocation_refused)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 p.qcow2 1M && qemu-img create -q -f raw "
           "p.raw 1M", scratch_dir());
    static const char *const cases[] = {
        "-f raw --preallocation=bogus p.raw 2M",
        "-f raw --preallocation=metadata p.raw 2M",
        "-f raw --preallocation=metadata --shrink p.raw 512k",
        "-f raw --preallocation=falloc --shrink p.raw 512k",
        "-f raw --preallocation=full --shrink p.raw 512k",
        "-f raw --preallocation=full p.raw 512k",
        "-f qcow2 --preallocation=bogus p.qcow2 2M",
        "-f qcow2 --preallocation=falloc --shrink p.qcow2 512k",
        "-f qcow2 --preallocation=metadata --shrink p.qcow2 512k",
        "-f qcow2 --preallocation=full p.qcow2 512k",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        same_on_copies(scratch("p.qcow2"), true, "resize", cases[i]);
        same_on_copies(scratch("p.raw"), true, "resize", cases[i]);
    }
}
END_TEST

/* Growing a raw image with each mode: the same messages, map (full
 * writes zeroes: data; falloc reserves: zeroes) and allocated size as
 * qemu-img's. */
START_TEST(resize_preallocation_raw)
{
    RUN_OK("cd '%s' && qemu-img create -q -f raw g.raw 1M && qemu-io -f raw -c "
           "'write -P 3 0 64k' g.raw >/dev/null", scratch_dir());
    static const char *const modes[] = {"off", "falloc", "full"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        same_on_copies(scratch("g.raw"), true, "resize",
                       fmt("-f raw --preallocation=%s x.img 3M", modes[i]));
        RUN_OK("cd '%s' && qemu-img map --output=json -f raw xq.img > q.map && qemu-img map "
               "--output=json -f raw xv.img > v.map && cmp q.map v.map && test $(stat -c %%b "
               "xq.img) = $(stat -c %%b xv.img)", scratch_dir());
    }
    same_on_copies(scratch("g.raw"), true, "resize", "-f raw --preallocation=full x.img +1M");
}
END_TEST

/* Growing qcow2 with each mode.  A new image's new clusters land where
 * qemu-img puts them: the same map (falloc and full: data; metadata:
 * allocated, reading as zeroes) and, for falloc and metadata, the same
 * allocated size.  With data, and across L2 tables, the same contents and
 * a clean check (metadata across tables: the same map; falloc and full
 * place the data a cluster apart from qemu-img, which first moves the
 * refcount table to the end). */
START_TEST(resize_preallocation_qcow2)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 g.qcow2 1M && qemu-img create -q -f qcow2 "
           "gd.qcow2 1M && qemu-io -f qcow2 -c 'write -P 3 0 64k' gd.qcow2 >/dev/null && "
           "qemu-img create -q -f qcow2 -o "
           "cluster_size=4k g4.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 700k' g4.qcow2 "
           ">/dev/null", scratch_dir());
    static const char *const modes[] = {"falloc", "full", "metadata"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        same_on_copies(scratch("g.qcow2"), false, "resize",
                       fmt("--preallocation=%s x.img 3M", modes[i]));
        RUN_OK("cd '%s' && qemu-img map --output=json xq.img > q.map && qemu-img map "
               "--output=json xv.img > v.map && cmp q.map v.map && qemu-img check -q xv.img && "
               "qemu-img compare -q xq.img xv.img", scratch_dir());
        if (strcmp(modes[i], "full") != 0)
            RUN_OK("cd '%s' && test $(stat -c %%b xq.img) = $(stat -c %%b xv.img)",
                   scratch_dir());
        same_on_copies(scratch("gd.qcow2"), false, "resize",
                       fmt("--preallocation=%s x.img 3M", modes[i]));
        RUN_OK("cd '%s' && qemu-img check -q xv.img && qemu-img compare -q xq.img xv.img",
               scratch_dir());
        same_on_copies(scratch("g4.qcow2"), false, "resize",
                       fmt("--preallocation=%s x.img 5M", modes[i]));
        RUN_OK("cd '%s' && qemu-img check -q xv.img && qemu-img compare -q xq.img xv.img",
               scratch_dir());
        if (strcmp(modes[i], "metadata") == 0)
            RUN_OK("cd '%s' && qemu-img map --output=json xq.img > q.map && qemu-img map "
                   "--output=json xv.img > v.map && cmp q.map v.map", scratch_dir());
    }
}
END_TEST

/* ---- amend -o size= and --force ---------------------------------------------- */

/* Growing, shrinking (data past the end dropped), with a downgrade, 0
 * (the size left alone), and the refusals; the images after agree with
 * qemu-img's (virtual size, map, contents, a clean check). */
START_TEST(amend_size)
{
    const char *src = scratch("a.qcow2");
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 a.qcow2 1M && qemu-io -f qcow2 -c "
           "'write -P 5 0 1M' a.qcow2 >/dev/null && qemu-img create -q -f qcow2 -o compat=0.10 "
           "v2.qcow2 1M && qemu-img snapshot -c sn v2.qcow2 && qemu-img create -q -f raw a.raw 1M",
           scratch_dir());
    static const char *const opts[] = {"size=2M", "size=512k", "size=3M,compat=0.10", "size=0",
                                       "size=1M", "size=1M,lazy_refcounts=on", "size=abc",
                                       "size=1000", "size=2M --force", "compat=0.10 --force"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        same_on_copies(src, false, "amend", fmt("-o %s x.img", opts[i]));
        RUN_OK("cd '%s' && qemu-img compare -q xq.img xv.img && qemu-img check -q xv.img && "
               "qemu-img info --output=json xq.img | grep -v actual-size | sed 's/xq.img/x/' "
               "> q.json && qemu-img info --output=json xv.img | grep -v actual-size | "
               "sed 's/xv.img/x/' > v.json && cmp q.json v.json && qemu-img map --output=json "
               "xq.img > q.map && qemu-img map --output=json xv.img > v.map && cmp q.map v.map",
               scratch_dir());
    }
    /* A v2 image with snapshots is not resized; raw has no amend. */
    same_on_copies(scratch("v2.qcow2"), true, "amend", "-o size=2M x.img");
    same_on_copies(scratch("a.raw"), true, "amend", "-f raw -o size=2M x.img");
}
END_TEST

/* A v3 image with a snapshot shrinks (the snapshot keeps its data), as
 * in qemu 7.2. */
START_TEST(amend_size_with_snapshot)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 s.qcow2 1M && qemu-io -f qcow2 -c "
           "'write -P 5 0 1M' s.qcow2 >/dev/null && qemu-img snapshot -c sn s.qcow2",
           scratch_dir());
    same_on_copies(scratch("s.qcow2"), false, "amend", "-o size=512k x.img");
    RUN_OK("cd '%s' && qemu-img compare -q xq.img xv.img && qemu-img check -q xv.img && "
           "qemu-img snapshot -a sn xv.img && qemu-io -f qcow2 -c 'read -P 5 0 1M' xv.img | "
           "grep -q '^read 1048576/'", scratch_dir());
}
END_TEST

/* ---- check -r ------------------------------------------------------------------ */

/* A qcow2 image of 4 KiB clusters made by qemu-img with two data
 * clusters; its refcount block is cluster 2 (offset 8192). */
static void make_base(void)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 1M && "
           "qemu-io -f qcow2 -c 'write -P 9 0 8k' base.qcow2 >/dev/null && truncate -s +8192 "
           "base.qcow2", scratch_dir());
    size_t n;
    uint8_t *b = read_file(scratch("base.qcow2"), &n);
    ck_assert_uint_eq(n, 36864);
    /* (the refcount table at 4096 names the block at 8192) */
    ck_assert_uint_eq(b[4096 + 6], 0x20);
    free(b);
}

/* The refcount of cluster C set to V (16-bit refcounts, big-endian). */
static const char *with_refcount(const char *src, const char *name, unsigned c, unsigned v)
{
    uint16_t be = (uint16_t)((v >> 8) | (v << 8));
    return patched_copy(src, name, 8192 + 2 * c, 2, be);
}

static void all_checks(const char *img)
{
    same_on_copies(img, true, "check", "x.img");
    same_on_copies(img, true, "check", "-r leaks x.img");
    same_on_copies(img, true, "check", "-r all x.img");
    same_on_copies(img, true, "check", "--output=json -r leaks x.img");
    same_on_copies(img, true, "check", "--output=json -r all x.img");
}

/* Leaked clusters past the end of what is used (allocated in the refcount
 * block, referenced by nothing): "Leaked cluster" lines, then
 * "Repairing cluster" lines, the summary, exit 0; the same image bytes. */
START_TEST(check_repairs_appended_leaks)
{
    make_base();
    const char *l = with_refcount(scratch("base.qcow2"), "l1.qcow2", 7, 1);
    l = with_refcount(l, "leak.qcow2", 8, 1);
    all_checks(l);
    ck_assert_int_eq(same_on_copies(l, true, "check", "x.img"), 3);
    ck_assert_int_eq(same_on_copies(l, true, "check", "-r leaks x.img"), 0);
}
END_TEST

/* A refcount bumped past the references (2 for one). */
START_TEST(check_repairs_bumped_refcount)
{
    make_base();
    const char *l = with_refcount(scratch("base.qcow2"), "bump.qcow2", 5, 2);
    all_checks(l);
}
END_TEST

/* A refcount of 0 on a used cluster: -r leaks cannot mend it (qemu-img
 * needs to rebuild the refcount structure): "ERROR need to rebuild
 * refcount structures", "Check failed: Input/output error", exit 1, the
 * image unchanged; with leaks as well, none repaired. */
START_TEST(check_leaks_cannot_fix)
{
    make_base();
    const char *c = with_refcount(scratch("base.qcow2"), "zero.qcow2", 6, 0);
    ck_assert_int_eq(same_on_copies(c, true, "check", "x.img"), 2);
    ck_assert_int_eq(same_on_copies(c, true, "check", "-r leaks x.img"), 1);
    ck_assert_int_eq(same_on_copies(c, true, "check", "--output=json -r leaks x.img"), 1);
    RUN_OK("cd '%s' && cmp zero.qcow2 xv.img", scratch_dir());
    const char *both = with_refcount(c, "zl.qcow2", 7, 1);
    ck_assert_int_eq(same_on_copies(both, true, "check", "-r leaks x.img"), 1);
    ck_assert_int_eq(same_on_copies(both, true, "check", "x.img"), 2);
}
END_TEST

/* ---- bitmap ---------------------------------------------------------------- */

/* qemu-img's usage errors, in its order and words. */
START_TEST(bitmap_usage)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 c.qcow2 1M", scratch_dir());
    static const char *const args[] = {
        "",
        "c.qcow2",
        "c.qcow2 b0",
        "--add c.qcow2",
        "--add c.qcow2 b0 extra",
        "-g 64k c.qcow2 b0",
        "--remove -g 64k c.qcow2 b0",
        "--add -g abc c.qcow2 b1",
        "--add -g 8E c.qcow2 b1",
        "-b c.qcow2 --add c.qcow2 b1",
        "--merge x -F raw c.qcow2 b1",
        "--merge x -F raw -g 64k --add c.qcow2 b1",
        "--add -f qcow2 --image-opts c.qcow2 b",
    };
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        same_as_qemu_img("bitmap", args[i]);
    same_first_line("bitmap", "--add c.qcow2 -g");
    same_first_line("bitmap", "--add c.qcow2 b -f");
    same_first_line("bitmap", "--bogus c.qcow2 b");
    same_first_line("bitmap", "-x c.qcow2 b");
    same_first_line("bitmap", "--merge");
}
END_TEST

/* Valid arguments: each sequence of actions run by both tools on their
 * own copy of the image (issue 23): the same messages and exit status,
 * the same bitmaps after it, and clean for qemu-img check. */
START_TEST(bitmap_like_qemu)
{
    RUN_OK("cd '%s' && mkdir -p v q && qemu-img create -q -f qcow2 v/c.qcow2 1M && "
           "cp v/c.qcow2 q/c.qcow2 && qemu-img create -q -f qcow2 v/c0.qcow2 1M && "
           "qemu-img bitmap --add v/c0.qcow2 src && cp v/c0.qcow2 q/c0.qcow2", scratch_dir());
    static const char *const args[] = {
        "--add c.qcow2 b0",
        "--add c.qcow2 b0",
        "--add -g 64k c.qcow2 b1",
        "--add -g 3k c.qcow2 b2",
        "--remove --clear --enable --disable c.qcow2 b0",
        "--remove c.qcow2 nope",
        "--add --disable c.qcow2 b3",
        "--merge src -b c0.qcow2 -F qcow2 c.qcow2 b1",
        "--merge nope -b c0.qcow2 c.qcow2 b1",
        "--merge b1 c.qcow2 b3",
        "--add --remove --add c.qcow2 b4",
        "--clear --add c.qcow2 b5",
        "--disable --enable --clear c.qcow2 b3",
        "--add --image-opts driver=qcow2,file.filename=c.qcow2 b6",
    };
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        struct run *r = run("cd '%s/v' && '%s' bitmap %s", scratch_dir(), vdisk_bin(), args[i]);
        char *ve = strdup(r->err);
        int vs = r->status;
        ck_assert_str_eq(r->out, "");
        r = run("cd '%s/q' && { qemu-img bitmap %s 2>../q.err; st=$?; "
                "sed 's/^qemu-img: /vdisk: /' ../q.err >&2; exit $st; }", scratch_dir(), args[i]);
        ck_assert_msg(strcmp(ve, r->err) == 0 && vs == r->status,
                      "bitmap %s: vdisk (%d):\n%s\nqemu-img (%d):\n%s", args[i], vs, ve,
                      r->status, r->err);
        free(ve);
        RUN_OK("cd '%s' && qemu-img check -q v/c.qcow2 && qemu-img info v/c.qcow2 | "
               "sed '1d;/^disk size/d' > v.info && qemu-img info q/c.qcow2 | "
               "sed '1d;/^disk size/d' > q.info && "
               "diff -u q.info v.info", scratch_dir());
    }
    struct run *r = run("cd '%s' && '%s' bitmap --add nofile.qcow2 b0", scratch_dir(),
                        vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "Could not open 'nofile.qcow2'"), "%s", r->err);
}
END_TEST

/* ---- create's output and errors ------------------------------------------ */

/*
 * "create ARGS" run by qemu-img and by vdisk in the scratch folder, with
 * n.img (the name ARGS use) removed before each: the same stdout (the
 * "Formatting" line, and whether it comes before an error), stderr, status,
 * and file size.
 */
static void same_create(const char *args)
{
    const char *d = scratch_dir();
    struct run *r = run("cd '%s' && rm -f n.img && qemu-img create %s; s=$?; "
                        "stat -c %%s n.img 2>/dev/null; exit $s", d, args);
    int qst = r->status;
    char *qout = strdup(r->out), *qerr = renamed(r->err);
    r = run("cd '%s' && rm -f n.img && '%s' create %s; s=$?; stat -c %%s n.img 2>/dev/null; "
            "exit $s", d, vdisk_bin(), args);
    ck_assert_msg(strcmp(qout, r->out) == 0, "create %s: stdout differs\nqemu-img:\n%s\n"
                  "vdisk:\n%s", args, qout, r->out);
    ck_assert_msg(strcmp(qerr, r->err) == 0, "create %s: stderr differs\nqemu-img:\n%s\n"
                  "vdisk:\n%s", args, qerr, r->err);
    ck_assert_msg(qst == r->status, "create %s: exit status: qemu-img %d, vdisk %d", args, qst,
                  r->status);
    free(qout);
    free(qerr);
}

/* The size as given on the "Formatting" line (raw rounds the file to 512
 * bytes, as qemu-img), option values checked after it, names before it. */
START_TEST(create_messages)
{
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 cb.qcow2 1M", scratch_dir());
    static const char *const args[] = {
        "-f raw n.img 1234",
        "-f qcow2 n.img 1234",
        "-f raw n.img 65537",
        "-f qcow2 -o foo=1 n.img 1M",
        "-f raw -o bogus=1 n.img 1M",
        "-f qcow2 -o cluster_size=4M n.img 1M",
        "-f qcow2 -o cluster_size=1000 n.img 1M",
        "-f qcow2 -o compat=0.42 n.img 1M",
        "-f qcow2 -o preallocation=1234 n.img 1M",
        "-f qcow2 -o refcount_bits=3 n.img 1M",
        "-f qcow2 -o refcount_bits=128 n.img 1M",
        "-f qcow2 -o compat=0.10,lazy_refcounts=on n.img 1M",
        "-f qcow2 -o compat=0.10,refcount_bits=8 n.img 1M",
        "-f qcow2 -o compat=0.10,extended_l2=on n.img 1M",
        "-f qcow2 -o compat=0.10,compression_type=zstd n.img 1M",
        "-f qcow2 -o compression_type=foo n.img 1M",
        "-f qcow2 -o extended_l2=on,cluster_size=1k n.img 1M",
        "-f qcow2 -o preallocation=full,backing_file=cb.qcow2,backing_fmt=qcow2 n.img 1M",
        "-f qcow2 -b cb.qcow2 -F bogus -u n.img 1M",
        "-f qcow2 -b nonexistent n.img",
        "-f qcow2 -b nonexistent -F qcow2 n.img 1M",
        "-f qcow2 -b '' n.img 1M",
        "-f raw -b cb.qcow2 -F qcow2 n.img 1M",
        "-f nosuchformat n.img 1M",
        "-f qcow2 n.img 1E",
        "-f qcow2 n.img -- -1k",
        "-f qcow2 n.img 1kilobyte",
        "-f qcow2 -o size=10M n.img 20M",
    };
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        same_create(args[i]);
}
END_TEST

/* convert -p's lines as qemu-img prints them to a file: the share of the
 * source's data, a line per step of its 2 MiB buffer.  With several
 * requests in flight (-m, 8 by default) steps finish out of order and the
 * printed ones differ from run to run, for qemu-img and for vdisk: one
 * request (-m 1) prints the same every time, the same as qemu-img; with -m
 * 8 the steps still rise from 0 to 100. */
START_TEST(convert_progress)
{
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 p.qcow2 128M && "
           "qemu-io -c 'write 0 1M' -c 'write 2M 1M' -c 'write 4M 1M' -c 'write 32M 1M' "
           "-c 'write 40M 10M' p.qcow2 >/dev/null", d);
    static const char *const args[] = {"-p -O qcow2 p.qcow2 n.img", "-p -O raw p.qcow2 n.img",
                                       "-p -f qcow2 -O qcow2 p.qcow2 n.img"};
    /* 14 MiB of data: a step per MiB up to 33M, then 2 MiB buffers. */
    static const char expect[] =
        "    (0.00/100%)\r    (7.14/100%)\r    (14.29/100%)\r    (21.43/100%)\r"
        "    (28.57/100%)\r    (42.86/100%)\r    (57.14/100%)\r"
        "    (71.43/100%)\r    (85.71/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n";
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        struct run *r = run("cd '%s' && rm -f n.img && qemu-img convert -m 1 %s", d, args[i]);
        ck_assert_int_eq(r->status, 0);
        ck_assert_msg(strcmp(r->out, expect) == 0, "qemu-img convert -m 1 %s:\n%s", args[i],
                      r->out);
        r = run("cd '%s' && rm -f n.img && '%s' convert -m 1 %s", d, vdisk_bin(), args[i]);
        ck_assert_int_eq(r->status, 0);
        ck_assert_msg(strcmp(r->out, expect) == 0, "vdisk convert -m 1 %s:\n%s", args[i],
                      r->out);
        r = run("cd '%s' && rm -f n.img && '%s' convert %s", d, vdisk_bin(), args[i]);
        ck_assert_int_eq(r->status, 0);
        double last = -1;
        unsigned steps = 0;
        for (const char *p = r->out; (p = strstr(p, "    (")); p++, steps++) {
            double v = strtod(p + 5, NULL);
            ck_assert_msg(v >= last && v <= 100, "vdisk convert %s:\n%s", args[i], r->out);
            last = v;
        }
        static const char first[] = "    (0.00/100%)\r";
        ck_assert_msg(steps >= 3 && !strncmp(r->out, first, strlen(first)) &&
                      strstr(r->out, "    (100.00/100%)\r    (100.00/100%)\r\n"),
                      "vdisk convert %s:\n%s", args[i], r->out);
    }
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("cli-verbs");
    TCase *tc = tcase_create("verbs");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, commit_rate_parsing);
    tcase_add_test(tc, commit_rate_copies);
    tcase_add_test(tc, commit_zeroes_unmap);
    tcase_add_test(tc, amend_force_keyslots);
    tcase_add_test(tc, resize_preallocation_refused);
    tcase_add_test(tc, resize_preallocation_raw);
    tcase_add_test(tc, resize_preallocation_qcow2);
    tcase_add_test(tc, amend_size);
    tcase_add_test(tc, amend_size_with_snapshot);
    tcase_add_test(tc, check_repairs_appended_leaks);
    tcase_add_test(tc, check_repairs_bumped_refcount);
    tcase_add_test(tc, check_leaks_cannot_fix);
    tcase_add_test(tc, bitmap_usage);
    tcase_add_test(tc, bitmap_like_qemu);
    tcase_add_test(tc, create_messages);
    tcase_add_test(tc, convert_progress);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
