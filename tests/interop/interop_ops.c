/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_ops.c: image operations against qemu-img 7.2 on twin
 * images: snapshots (made by one tool, listed and applied by the other),
 * convert (plain, compressed, from a snapshot, as an overlay of
 * differences), compare, commit, rebase, resize, measure and amend; and a
 * seeded sequence of snapshot and image operations checked after every
 * step by qemu-img check and against a model of the content.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* qemu-img's warning after its refusal to shrink without --shrink. */
#define SHRINK_WARNING                                                             \
    "vdisk: warning: Shrinking an image will delete all data beyond the shrunken " \
    "image's end. Before performing such an operation, make sure there is no "     \
    "important data there.\n"

#define V vdisk_bin()

/* The same command's standard output and status from both tools. */
static void same(const char *vargs, const char *qargs)
{
    struct run *r = run("%s %s", V, vargs);
    char *out = strdup(r->out);
    int st = r->status;
    r = run("qemu-img %s", qargs);
    ck_assert_msg(strcmp(out, r->out) == 0 && st == r->status,
                  "vdisk %s (exit %d):\n%s\nqemu-img %s (exit %d):\n%s", vargs, st, out, qargs,
                  r->status, r->out);
    free(out);
}

static void clean(const char *img)
{
    struct run *r = run("qemu-img check '%s'", img);
    ck_assert_msg(r->status == 0, "qemu-img check %s: %s %s", img, r->out, r->err);
}

static void identical(const char *a, const char *b)
{
    struct run *r = run("qemu-img compare '%s' '%s'", a, b);
    ck_assert_msg(r->status == 0, "%s and %s: %s", a, b, r->out);
}

/* A base with data, zeroes and a hole; its twin for qemu-img. */
static void make_pair(const char *name)
{
    RUN_OK("qemu-img create -q -f qcow2 %s 8M", name);
    RUN_OK("qemu-io -c 'write -P 0x11 0 3M' -c 'write -z 1M 64k' -c 'write -P 0x12 5M 100k' %s",
           name);
}

START_TEST(snapshots_both_ways)
{
    make_pair("s.qcow2");
    /* vdisk takes them, qemu-img lists and applies them. */
    RUN_OK("%s snapshot -c one s.qcow2", V);
    RUN_OK("%s io -c 'write -P 0x21 0 64k' s.qcow2", V);
    RUN_OK("%s snapshot -c two s.qcow2", V);
    RUN_OK("%s io -c 'write -P 0x22 64k 64k' s.qcow2", V);
    clean("s.qcow2");
    struct run *r = run("qemu-img snapshot -l s.qcow2");
    ck_assert_msg(strstr(r->out, "one") && strstr(r->out, "two"), "%s", r->out);
    same("snapshot -l s.qcow2", "snapshot -l s.qcow2");
    same("info --output=json s.qcow2", "info --output=json s.qcow2");
    RUN_OK("qemu-img snapshot -a one s.qcow2");
    RUN_OK("qemu-io -c 'read -P 0x11 0 1M' -c 'read -P 0 1M 64k' s.qcow2");
    RUN_OK("qemu-img snapshot -a two s.qcow2");
    RUN_OK("qemu-io -c 'read -P 0x21 0 64k' -c 'read -P 0x11 64k 64k' s.qcow2");
    /* qemu-img takes one, vdisk applies and deletes. */
    RUN_OK("qemu-io -c 'write -P 0x23 2M 64k' s.qcow2");
    RUN_OK("qemu-img snapshot -c three s.qcow2");
    RUN_OK("qemu-io -c 'write -P 0x24 2M 64k' s.qcow2");
    RUN_OK("%s snapshot -a three s.qcow2", V);
    RUN_OK("%s io -c 'read -P 0x23 2M 64k' -c 'read -P 0x21 0 64k' s.qcow2", V);
    clean("s.qcow2");
    RUN_OK("%s snapshot -d one s.qcow2", V);
    RUN_OK("%s snapshot -d 2 s.qcow2", V);
    clean("s.qcow2");
    same("snapshot -l s.qcow2", "snapshot -l s.qcow2");
    r = run("%s snapshot -a nosuch s.qcow2", V);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: s.qcow2: there is no snapshot "
                             "'nosuch'\n");
    r = run("%s snapshot -c three s.qcow2", V);
    ck_assert_str_eq(r->err, "vdisk: s.qcow2: a snapshot named 'three' "
                             "already exists\n");
    /* Deleting a snapshot frees what only it used: no leaks. */
    RUN_OK("%s snapshot -d three s.qcow2", V);
    clean("s.qcow2");
    r = run("qemu-img check --output=json s.qcow2");
    ck_assert_msg(!strstr(r->out, "leaks"), "%s", r->out);
}
END_TEST

/*
 * Extended L2 entries: a write into a cluster that a snapshot shares must
 * keep the cluster's other subclusters.  The old write path looked at the
 * L2 entry only when the L1 entry had COPIED set, which a snapshot clears:
 * the cluster was reallocated with the new subcluster alone, and the data
 * written before the snapshot read as the backing file's.
 */
START_TEST(extended_l2_write_after_snapshot)
{
    RUN_OK("rm -f xb.qcow2 xt.qcow2 xs.raw && qemu-img create -q -f qcow2 xb.qcow2 1M && "
           "qemu-io -c 'write -q -P 0x5b 0 1M' xb.qcow2");
    for (int backing = 0; backing < 2; backing++) {
        if (backing)
            RUN_OK("rm -f xt.qcow2 && %s create -q -f qcow2 -o extended_l2=on -b xb.qcow2 "
                   "-F qcow2 xt.qcow2", V);
        else
            RUN_OK("rm -f xt.qcow2 && %s create -q -f qcow2 -o extended_l2=on xt.qcow2 1M", V);
        int under = backing ? 0x5b : 0;
        RUN_OK("%s io -c 'write -P 1 0 4k' -c 'write -P 3 64k 2k' xt.qcow2", V);
        RUN_OK("%s snapshot -c s xt.qcow2", V);
        RUN_OK("%s io -c 'write -P 2 16k 4k' -c 'write -P 4 66k 2k' xt.qcow2", V);
        RUN_OK("qemu-io -c 'read -P 1 0 4k' -c 'read -P %d 4k 12k' -c 'read -P 2 16k 4k' "
               "-c 'read -P %d 20k 44k' -c 'read -P 3 64k 2k' -c 'read -P 4 66k 2k' "
               "-c 'read -P %d 68k 956k' xt.qcow2", under, under, under);
        RUN_OK("qemu-img check xt.qcow2");
        RUN_OK("rm -f xs.raw && qemu-img convert -O raw -l snapshot.name=s xt.qcow2 xs.raw && "
               "qemu-io -f raw -c 'read -P 1 0 4k' -c 'read -P %d 4k 60k' -c 'read -P 3 64k 2k' "
               "-c 'read -P %d 66k 958k' xs.raw", under, under);
    }
}
END_TEST

/*
 * Extended L2: write zeroes up to the end of an image whose size is not a
 * multiple of the subcluster size (QEMU's iotest 271).  The last, short
 * subcluster was left out of the zero bits, and kept reading the backing
 * file's data under a request that had succeeded.
 */
START_TEST(extended_l2_zeroes_to_the_end)
{
    const char *ranges[] = {"2048k 35k", "2049k 34k", "2050k 33k", "2082k 1k", "2081k 2k"};
    RUN_OK("rm -f zb.raw && qemu-img create -q -f raw zb.raw 2132992 && "
           "qemu-io -f raw -c 'write -q -P 7 0 2132992' zb.raw");
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        for (int unmap = 0; unmap < 2; unmap++) {
            RUN_OK("rm -f zt.qcow2 && %s create -q -f qcow2 -o extended_l2=on -b zb.raw -F raw "
                   "zt.qcow2", V);
            RUN_OK("%s io -c 'write -q -z %s %s' zt.qcow2", V, unmap ? "-u" : "", ranges[i]);
            RUN_OK("qemu-io -c 'read -q -P 0 %s' zt.qcow2", ranges[i]);
            RUN_OK("%s io -c 'read -q -P 0 %s' zt.qcow2", V, ranges[i]);
            clean("zt.qcow2");
        }
    }
}
END_TEST

/* A write over clusters of the image's own that lie one after another in
 * the file, written ones and preallocated zero ones, keeps them all (one
 * write, as QEMU's, iotest 066): the same map as qemu-io leaves, the same
 * data, whatever part of the edge clusters the write covers. */
START_TEST(write_over_own_clusters)
{
    const char *ranges[] = {"0 192k", "1000 190000", "64k 128k", "70k 100k", "0 100k",
                            "100k 92k", "65535 2"};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        for (int t = 0; t < 2; t++) {
            RUN_OK("rm -f o%d.qcow2 && qemu-img create -q -f qcow2 o%d.qcow2 192k && qemu-io "
                   "-c 'write -q -P 42 0 192k' -c 'write -q -z 64k 64k' o%d.qcow2", t, t, t);
            RUN_OK("%s -c 'write -q -P 43 %s' o%d.qcow2", t ? fmt("%s io", V) : "qemu-io",
                   ranges[i], t);
        }
        struct run *r = run("qemu-img map --output=json o0.qcow2");
        char *want = strdup(r->out);
        r = run("qemu-img map --output=json o1.qcow2");
        ck_assert_msg(strcmp(want, r->out) == 0, "write %s: qemu-io's map\n%svdisk's\n%s",
                      ranges[i], want, r->out);
        free(want);
        identical("o0.qcow2", "o1.qcow2");
        clean("o1.qcow2");
    }
    /* one write to the file: a second one would fail here */
    RUN_OK("rm -f o1.qcow2 && qemu-img create -q -f qcow2 o1.qcow2 192k && qemu-io "
           "-c 'write -q -P 42 0 192k' -c 'write -q -z 64k 64k' o1.qcow2");
    RUN_OK("%s io -c 'write -q -P 44 0 192k' \"json:{'driver': 'qcow2', 'file': {'driver': "
           "'blkdebug', 'image.filename': 'o1.qcow2', 'set-state': [{'event': 'write_aio', "
           "'new_state': 2}], 'inject-error': [{'event': 'write_aio', 'state': 2}]}}\"", V);
    RUN_OK("qemu-io -c 'read -q -P 44 0 192k' o1.qcow2");
}
END_TEST

START_TEST(convert_like_qemu)
{
    make_pair("c.qcow2");
    RUN_OK("qemu-img snapshot -c snap c.qcow2");
    RUN_OK("qemu-io -c 'write -P 0x13 0 64k' c.qcow2");
    static const char *const outs[] = {
        "-O raw", "-O qcow2", "-O qcow2 -o cluster_size=4k", "-c -O qcow2",
        "-c -O qcow2 -o compression_type=zstd", "-O qcow2 -o compat=0.10 -S 0",
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        RUN_OK("rm -f out.img && %s convert %s c.qcow2 out.img", V, outs[i]);
        identical("c.qcow2", "out.img");
        if (strstr(outs[i], "qcow2"))
            clean("out.img");
    }
    /* A snapshot as the source. */
    RUN_OK("rm -f snap.raw && %s convert -l snapshot.name=snap c.qcow2 snap.raw", V);
    RUN_OK("qemu-img convert -l snapshot.name=snap c.qcow2 snap-q.raw");
    identical("snap.raw", "snap-q.raw");
    /* Concatenated sources. */
    RUN_OK("qemu-img create -q -f raw a.raw 1M && qemu-io -f raw -c 'write -P 1 0 1M' a.raw");
    RUN_OK("rm -f cat.raw && %s convert -f raw a.raw a.raw cat.raw", V);
    RUN_OK("qemu-io -f raw -c 'read -P 1 0 2M' cat.raw");
    /* An overlay holding only what differs from a backing file. */
    make_pair("base.qcow2");
    RUN_OK("cp base.qcow2 mod.qcow2 && qemu-io -c 'write -P 0x31 4M 64k' mod.qcow2");
    RUN_OK("rm -f ov.qcow2 && %s convert -O qcow2 -B base.qcow2 -F qcow2 mod.qcow2 ov.qcow2", V);
    identical("mod.qcow2", "ov.qcow2");
    clean("ov.qcow2");
    struct run *r = run("qemu-img map --output=json ov.qcow2");
    ck_assert_msg(strstr(r->out, "{ \"start\": 4194304, \"length\": 65536, \"depth\": 0, "
                                 "\"present\": true, \"zero\": false, \"data\": true"),
                  "%s", r->out);
    /* Sparse raw output: zeroes are holes. */
    RUN_OK("rm -f sparse.raw && %s convert c.qcow2 sparse.raw", V);
    same("map --output=json -f raw sparse.raw", "map --output=json -f raw sparse.raw");
    r = run("du -k sparse.raw");
    ck_assert_msg(atoi(r->out) < 5000, "not sparse: %s", r->out);
    /* Errors. */
    r = run("%s convert -c -O raw c.qcow2 x.raw", V);
    ck_assert_str_eq(r->err, "vdisk: Compression not supported for this file format\n");
}
END_TEST

/* Compressed clusters are packed as tightly as qemu-img packs them: a piece
 * spans into the next cluster when that one follows, and the output is no
 * larger than qemu-img's. */
START_TEST(convert_compressed_packing)
{
    RUN_OK("for i in $(seq 1 120); do cat /usr/share/common-licenses/GPL-3; done | "
           "head -c 4M > text.raw && head -c 1M /dev/urandom >> text.raw && "
           "for i in $(seq 1 60); do cat /usr/share/common-licenses/Apache-2.0; done | "
           "head -c 2M >> text.raw");
    static const char *const types[] = {"zstd", "zlib"};
    for (size_t i = 0; i < 2; i++) {
        RUN_OK("rm -f pv.qcow2 pq.qcow2 && %s convert -c -O qcow2 -o compression_type=%s "
               "text.raw pv.qcow2", V, types[i]);
        RUN_OK("qemu-img convert -c -O qcow2 -o compression_type=%s text.raw pq.qcow2",
               types[i]);
        identical("text.raw", "pv.qcow2");
        clean("pv.qcow2");
        struct run *r = run("stat -c %%s pv.qcow2 pq.qcow2");
        long long v = 0, q = 0;
        ck_assert_int_eq(sscanf(r->out, "%lld %lld", &v, &q), 2);
        ck_assert_msg(v <= q, "%s: vdisk's output is %lld bytes, qemu-img's %lld", types[i], v, q);
        /* The same clusters in use: no cluster holds less than qemu-img's would. */
        same("check pv.qcow2", "check pq.qcow2");
    }
}
END_TEST

START_TEST(compare_like_qemu)
{
    make_pair("a.qcow2");
    RUN_OK("cp a.qcow2 b.qcow2");
    same("compare a.qcow2 b.qcow2", "compare a.qcow2 b.qcow2");
    RUN_OK("qemu-io -c 'write -P 0x99 1234567 1' b.qcow2");
    same("compare a.qcow2 b.qcow2", "compare a.qcow2 b.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 big.qcow2 16M && qemu-img create -q -f qcow2 small.qcow2 8M");
    same("compare big.qcow2 small.qcow2", "compare big.qcow2 small.qcow2");
    same("compare -s big.qcow2 small.qcow2", "compare -s big.qcow2 small.qcow2");
    RUN_OK("qemu-io -c 'write -P 1 12M 1' big.qcow2");
    same("compare big.qcow2 small.qcow2", "compare big.qcow2 small.qcow2");
    struct run *r = run("%s compare a.qcow2 missing.qcow2", V);
    ck_assert_int_eq(r->status, 2);
}
END_TEST

static void twin_chain(const char *p)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "qemu-img create -q -f qcow2 %s-base.qcow2 8M && "
             "qemu-io -c 'write -P 1 0 4M' -c 'write -z 1M 64k' %s-base.qcow2 && "
             "qemu-img create -q -f qcow2 -b %s-base.qcow2 -F qcow2 %s-top.qcow2 && "
             "qemu-io -c 'write -P 2 512k 1M' -c 'write -P 3 6M 100k' -c 'discard 3M 128k' "
             "%s-top.qcow2", p, p, p, p, p);
    RUN_OK("%s", cmd);
}

START_TEST(commit_rebase_resize_like_qemu)
{
    twin_chain("v");
    twin_chain("q");
    RUN_OK("%s commit v-top.qcow2", V);
    RUN_OK("qemu-img commit q-top.qcow2");
    identical("v-base.qcow2", "q-base.qcow2");
    identical("v-top.qcow2", "q-top.qcow2");
    clean("v-base.qcow2");
    clean("v-top.qcow2");
    /* The emptied overlay holds nothing. */
    struct run *r = run("qemu-img map --output=json v-top.qcow2");
    ck_assert_msg(!strstr(r->out, "\"depth\": 0, \"present\": true"), "%s", r->out);

    twin_chain("v2");
    twin_chain("q2");
    RUN_OK("qemu-img create -q -f qcow2 nb.qcow2 8M && qemu-io -c 'write -P 9 2M 2M' nb.qcow2");
    RUN_OK("%s rebase -b nb.qcow2 -F qcow2 v2-top.qcow2", V);
    RUN_OK("qemu-img rebase -b nb.qcow2 -F qcow2 q2-top.qcow2");
    identical("v2-top.qcow2", "q2-top.qcow2");
    clean("v2-top.qcow2");
    same("info --output=json v2-top.qcow2", "info --output=json v2-top.qcow2");
    RUN_OK("%s rebase -b '' v2-top.qcow2", V);
    identical("v2-top.qcow2", "q2-top.qcow2");
    r = run("qemu-img info v2-top.qcow2");
    ck_assert_msg(!strstr(r->out, "backing"), "%s", r->out);
    RUN_OK("%s rebase -u -b q2-base.qcow2 -F qcow2 v2-top.qcow2", V);
    r = run("qemu-img info --output=json v2-top.qcow2");
    ck_assert_msg(strstr(r->out, "\"backing-filename\": \"q2-base.qcow2\""), "%s", r->out);

    twin_chain("v3");
    twin_chain("q3");
    RUN_OK("%s resize v3-top.qcow2 +3G", V);
    RUN_OK("qemu-img resize q3-top.qcow2 +3G");
    identical("v3-top.qcow2", "q3-top.qcow2");
    clean("v3-top.qcow2");
    r = run("%s resize v3-top.qcow2 1M", V);
    ck_assert_str_eq(r->err, "vdisk: Use the --shrink option to perform a shrink operation.\n"
                  SHRINK_WARNING);
    RUN_OK("%s resize --shrink v3-top.qcow2 2M", V);
    RUN_OK("qemu-img resize --shrink q3-top.qcow2 2M");
    identical("v3-top.qcow2", "q3-top.qcow2");
    clean("v3-top.qcow2");
    /* A v3 image with a snapshot shrinks too, as in qemu 7.2. */
    RUN_OK("qemu-img snapshot -c s v3-top.qcow2 && qemu-img snapshot -c s q3-top.qcow2");
    RUN_OK("%s resize --shrink v3-top.qcow2 1M", V);
    RUN_OK("qemu-img resize --shrink q3-top.qcow2 1M");
    RUN_OK("qemu-img compare -q v3-top.qcow2 q3-top.qcow2");
    clean("v3-top.qcow2");
    RUN_OK("qemu-img create -q -f raw r.raw 1M && %s resize -f raw r.raw 3M", V);
    r = run("stat -c %%s r.raw");
    ck_assert_str_eq(r->out, "3145728\n");
}
END_TEST

START_TEST(measure_and_amend_like_qemu)
{
    make_pair("m.qcow2");
    /* Persistent dirty bitmaps (their size), a version 2 image (none), a
     * raw file whose data ends inside a cluster (counted whole). */
    RUN_OK("cp m.qcow2 mb.qcow2 && qemu-img bitmap --add mb.qcow2 b0 && "
           "qemu-img bitmap --add -g 4k mb.qcow2 a-longer-name && "
           "qemu-img create -q -f qcow2 -o compat=0.10 m2.qcow2 4M && "
           "qemu-io -c 'write -P 3 0 1M' m2.qcow2 && head -c 100000 /dev/zero | tr '\\0' x > "
           "m.raw");
    static const char *const m[] = {
        "-O qcow2 --size 1G", "--output=json -O qcow2 --size 1G -o cluster_size=512,refcount_bits=64",
        "-O qcow2 -o extended_l2=on --size 10G", "-O raw --size 1000", "-O qcow2 m.qcow2",
        "--output=json -O qcow2 -o cluster_size=2M m.qcow2", "-O raw m.qcow2",
        "-O qcow2 -o preallocation=full --size 1G", "-O qcow2 -o preallocation=falloc m.qcow2",
        "-O qcow2 -o preallocation=metadata m.qcow2", "-O qcow2 -o backing_file=x m.qcow2",
        "-O qcow2 -o compat=0.10 m.qcow2", "-O qcow2 mb.qcow2",
        "--output=json -O qcow2 -o cluster_size=512 mb.qcow2", "-O qcow2 -o compat=0.10 mb.qcow2",
        "--output=json -O qcow2 m2.qcow2", "-O qcow2 -f raw m.raw", "-O raw -f raw m.raw",
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        char a[300], b[300];
        snprintf(a, sizeof a, "measure %s", m[i]);
        snprintf(b, sizeof b, "measure %s", m[i]);
        same(a, b);
    }
    static const char *const am[] = {"lazy_refcounts=on", "refcount_bits=1", "refcount_bits=64",
                                     "compat=0.10", "compat=0.10,refcount_bits=16"};
    for (size_t i = 0; i < sizeof am / sizeof am[0]; i++) {
        RUN_OK("rm -f a.qcow2 b.qcow2 && qemu-img create -q -f qcow2 a.qcow2 8M && "
               "qemu-io -c 'write -P 1 0 2M' -c 'write -z 3M 1M' -c 'write -P 2 5M 64k' "
               "-c 'write -z -u 5M 64k' a.qcow2 && cp a.qcow2 b.qcow2");
        RUN_OK("%s amend -o %s a.qcow2", V, am[i]);
        RUN_OK("qemu-img amend -o %s b.qcow2", am[i]);
        identical("a.qcow2", "b.qcow2");
        clean("a.qcow2");
        struct run *r = run("qemu-img info --output=json a.qcow2 | grep -v actual-size | "
                            "sed s/a.qcow2/X/");
        char *ours = strdup(r->out);
        r = run("qemu-img info --output=json b.qcow2 | grep -v actual-size | sed s/b.qcow2/X/");
        ck_assert_msg(strcmp(ours, r->out) == 0, "%s:\n%s\n%s", am[i], ours, r->out);
        free(ours);
    }
}
END_TEST

/* A seeded sequence of operations; after each, qemu-img check is clean
 * and the content equals a model (a raw file kept by qemu-io). */
START_TEST(seeded_sequence)
{
    RUN_OK("qemu-img create -q -f qcow2 seq.qcow2 4M && qemu-img create -q -f raw model.raw 4M");
    uint64_t seed = 77;
    int snaps = 0;
    char names[16][16];
    int live[16] = {0};
    for (int step = 0; step < 60; step++) {
        unsigned op = (unsigned)(rng_next(&seed) % 8);
        uint64_t off = rng_next(&seed) % (4u << 20), len = 1 + rng_next(&seed) % 200000;
        if (off + len > (4u << 20))
            len = (4u << 20) - off; /* writes stay in the first 4 MiB */
        int pat = (int)(1 + rng_next(&seed) % 250);
        if (op <= 2) {
            RUN_OK("%s io -c 'write -q -P %d %llu %llu' seq.qcow2", V, pat,
                   (unsigned long long)off, (unsigned long long)len);
            RUN_OK("qemu-io -f raw -c 'write -q -P %d %llu %llu' model.raw", pat,
                   (unsigned long long)off, (unsigned long long)len);
        } else if (op == 3 && snaps < 16) {
            snprintf(names[snaps], sizeof names[0], "s%d", snaps);
            RUN_OK("%s snapshot -c %s seq.qcow2", V, names[snaps]);
            RUN_OK("cp model.raw model-%s.raw", names[snaps]);
            live[snaps++] = 1;
        } else if (op == 4 && snaps) {
            int k = (int)(rng_next(&seed) % (uint64_t)snaps);
            if (live[k]) {
                RUN_OK("%s snapshot -a %s seq.qcow2", V, names[k]);
                RUN_OK("cp model-%s.raw model.raw", names[k]);
            }
        } else if (op == 5 && snaps) {
            int k = (int)(rng_next(&seed) % (uint64_t)snaps);
            if (live[k]) {
                RUN_OK("%s snapshot -d %s seq.qcow2", V, names[k]);
                live[k] = 0;
            }
        } else if (op == 7 && step % 3 == 0) {
            /* Grow by a cluster and a bit (snapshots keep their own size). */
            RUN_OK("%s resize seq.qcow2 +65536 && qemu-img resize -q -f raw model.raw +65536", V);
        } else if (op == 6) {
            static const char *const a[] = {"refcount_bits=8", "lazy_refcounts=on",
                                            "lazy_refcounts=off", "refcount_bits=16"};
            RUN_OK("%s amend -o %s seq.qcow2", V, a[rng_next(&seed) % 4]);
        }
        struct run *r = run("qemu-img check seq.qcow2");
        ck_assert_msg(r->status == 0, "step %d (op %u): %s %s", step, op, r->out, r->err);
        r = run("qemu-img compare -f qcow2 -F raw seq.qcow2 model.raw");
        ck_assert_msg(r->status == 0, "step %d (op %u): %s", step, op, r->out);
    }
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("interop-ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, snapshots_both_ways);
    tcase_add_test(tc, extended_l2_write_after_snapshot);
    tcase_add_test(tc, extended_l2_zeroes_to_the_end);
    tcase_add_test(tc, write_over_own_clusters);
    tcase_add_test(tc, convert_like_qemu);
    tcase_add_test(tc, convert_compressed_packing);
    tcase_add_test(tc, compare_like_qemu);
    tcase_add_test(tc, commit_rebase_resize_like_qemu);
    tcase_add_test(tc, measure_and_amend_like_qemu);
    tcase_add_test(tc, seeded_sequence);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
