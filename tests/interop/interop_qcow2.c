/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_qcow2.c: qcow2 images go both ways between vdisk
 * and QEMU (qemu-img, qemu-io 7.2).
 *   - images qemu-img makes with every option read byte for byte as
 *     qemu-img convert reads them, and info / map / check print the same;
 *   - images vdisk makes and writes pass qemu-img check and read the same
 *     through qemu-io;
 *   - a seeded random workload applied by vdisk io and by qemu-io to twin
 *     images leaves them identical (qemu-img compare), and both clean.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

/* Reads the whole image through libvdisk and compares it with qemu-img's
 * raw conversion of it. */
static void same_as_qemu(const char *img)
{
    const char *raw = scratch("expect.raw");
    RUN_OK("qemu-img convert -O raw '%s' '%s'", img, raw);
    vdisk_dev *dev;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    int fd = open(raw, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    uint64_t size = vdisk_get_size(dev);
    size_t chunk = 1 << 20;
    uint8_t *a = malloc(chunk), *b = malloc(chunk);
    for (uint64_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
        ck_assert_msg(vdisk_pread(dev, a, n, off) == 0, "%s", vdisk_get_error());
        ssize_t got = pread(fd, b, n, (off_t)off);
        if (got < (ssize_t)n)
            memset(b + (got > 0 ? got : 0), 0, n - (size_t)(got > 0 ? got : 0));
        if (memcmp(a, b, n) != 0) {
            size_t i = 0;
            while (a[i] == b[i])
                i++;
            ck_abort_msg("%s: byte %llu differs: vdisk 0x%02x, qemu 0x%02x", img,
                         (unsigned long long)(off + i), a[i], b[i]);
        }
    }
    free(a);
    free(b);
    close(fd);
    vdisk_close(dev);
}

/* The same command's output from both tools (stdout, then exit status). */
static void same_output(const char *vdisk_args, const char *qemu_args)
{
    struct run *r = run("%s %s", vdisk_bin(), vdisk_args);
    char *v = strdup(r->out);
    int vs = r->status;
    r = run("%s", qemu_args);
    if (strcmp(v, r->out) != 0) {
        /* Show the first line that differs, not the whole output. */
        const char *a = v, *b = r->out;
        while (*a && *a == *b)
            a++, b++;
        while (a > v && a[-1] != '\n')
            a--, b--;
        ck_abort_msg("vdisk %s differs from %s at:\n vdisk: %.200s\n qemu:  %.200s", vdisk_args,
                     qemu_args, a, b);
    }
    ck_assert_msg(vs == r->status, "vdisk %s exited %d, %s exited %d", vdisk_args, vs,
                  qemu_args, r->status);
    free(v);
}

static void describe_same(const char *img)
{
    char va[600], qa[600];
    static const char *const verbs[][2] = {
        {"info --output=json", "qemu-img info --output=json"},
        {"info", "qemu-img info"},
        {"map --output=json", "qemu-img map --output=json"},
        {"map", "qemu-img map"},
        {"check --output=json", "qemu-img check --output=json"},
        {"check", "qemu-img check"},
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        snprintf(va, sizeof va, "%s '%s'", verbs[i][0], img);
        snprintf(qa, sizeof qa, "%s '%s'", verbs[i][1], img);
        same_output(va, qa);
    }
}

/* A qemu-made image with OPTS, holding patterns, zeroes and a hole. */
static const char *qemu_image(const char *name, const char *opts, const char *backing)
{
    const char *img = scratch(name);
    if (backing)
        RUN_OK("qemu-img create -q -f qcow2 -o '%s' -b '%s' -F qcow2 '%s'", opts, backing, img);
    else
        RUN_OK("qemu-img create -q -f qcow2 -o '%s' '%s' 8M", opts, img);
    RUN_OK("qemu-io -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1M 1M' -c 'write -z 1536k 64k'"
           " -c 'write -P 0x33 3000000 77777' -c 'discard 1200k 100k' -c 'write -P 0x44 7M 1k'"
           " '%s'", img);
    return img;
}

START_TEST(qemu_images_read_the_same)
{
    static const char *const opts[] = {
        "cluster_size=512",
        "cluster_size=65536",
        "cluster_size=2M",
        "refcount_bits=1",
        "refcount_bits=64",
        "extended_l2=on",
        "extended_l2=on,cluster_size=16k",
        "lazy_refcounts=on",
        "compat=0.10",
        "compression_type=zstd",
        "cluster_size=4k,refcount_bits=8,compat=1.1",
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *img = qemu_image("q.qcow2", opts[i], NULL);
        same_as_qemu(img);
        describe_same(img);
    }
}
END_TEST

START_TEST(compressed_images_read_the_same)
{
    const char *raw = scratch("src.raw");
    RUN_OK("qemu-img create -q -f raw '%s' 4M", raw);
    RUN_OK("qemu-io -f raw -c 'write -P 0x61 0 1M' -c 'write -P 0x62 2M 100k' '%s'", raw);
    /* Text-like data compresses to varied sizes, packed byte by byte. */
    RUN_OK("seq 1 200000 | head -c 1M | dd of='%s' bs=1k seek=3072 conv=notrunc status=none",
           raw);
    static const char *const types[] = {"zlib", "zstd"};
    static const char *const clusters[] = {"4k", "64k", "2M"};
    for (int t = 0; t < 2; t++) {
        for (int c = 0; c < 3; c++) {
            const char *img = scratch("c.qcow2");
            RUN_OK("qemu-img convert -c -O qcow2 -o compression_type=%s,cluster_size=%s '%s' "
                   "'%s'", types[t], clusters[c], raw, img);
            same_as_qemu(img);
            describe_same(img);
            /* Writing into compressed clusters rewrites them uncompressed. */
            RUN_OK("%s io -c 'write -P 0x55 4000 100' -c 'write -P 0x56 3100k 10' '%s'",
                   vdisk_bin(), img);
            RUN_OK("qemu-img check '%s'", img);
            RUN_OK("qemu-io -c 'read -P 0x55 4000 100' -c 'read -P 0x61 0 4000' "
                   "-c 'read -P 0x56 3100k 10' '%s'", img);
            same_as_qemu(img);
        }
    }
}
END_TEST

START_TEST(backing_chain_of_depth_3)
{
    const char *base = qemu_image("base.qcow2", "cluster_size=64k", NULL);
    const char *mid = scratch("mid.qcow2"), *top = scratch("top.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 '%s'", mid);
    RUN_OK("qemu-io -c 'write -P 0x71 50k 8k' -c 'write -z 1M 4k' '%s'", mid);
    RUN_OK("qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 '%s'", top);
    RUN_OK("qemu-io -c 'write -P 0x72 52k 1k' -c 'write -P 0x73 6M 64k' '%s'", top);
    (void)base;
    same_as_qemu(top);
    describe_same(top);
    same_output("info --backing-chain --output=json top.qcow2",
                "qemu-img info --backing-chain --output=json top.qcow2");
    /* A raw backing file without a backing format opens as raw. */
    const char *raw = scratch("b.raw"), *ov = scratch("ov.qcow2");
    RUN_OK("qemu-img create -q -f raw '%s' 1M", raw);
    RUN_OK("qemu-io -f raw -c 'write -P 0x31 0 1M' '%s'", raw);
    RUN_OK("qemu-img create -q -f qcow2 -b b.raw -F raw '%s'", ov);
    RUN_OK("%s io -c 'read -P 0x31 0 1M' '%s'", vdisk_bin(), ov);
}
END_TEST

/* Commands for a seeded workload of writes, zeroes and discards. */
static void workload(const char *path, uint64_t seed, int n, uint64_t size)
{
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    for (int i = 0; i < n; i++) {
        uint64_t off = rng_next(&seed) % (size - 1);
        uint64_t max = size - off < 300000 ? size - off : 300000;
        uint64_t len = 1 + rng_next(&seed) % max;
        switch (rng_next(&seed) % 6) {
        case 0: case 1: case 2:
            fprintf(f, "write -q -P %d %llu %llu\n", (int)(1 + rng_next(&seed) % 254),
                    (unsigned long long)off, (unsigned long long)len);
            break;
        case 3:
            fprintf(f, "write -q -z %llu %llu\n", (unsigned long long)off,
                    (unsigned long long)len);
            break;
        case 4:
            fprintf(f, "write -q -z -u %llu %llu\n", (unsigned long long)off,
                    (unsigned long long)len);
            break;
        default:
            fprintf(f, "discard -q %llu %llu\n", (unsigned long long)off,
                    (unsigned long long)len);
        }
    }
    fclose(f);
}

START_TEST(random_workload_twins)
{
    static const char *const opts[] = {
        "cluster_size=512", "cluster_size=4k,compat=0.10", "cluster_size=64k",
        "cluster_size=2M", "extended_l2=on,cluster_size=32k", "refcount_bits=1",
        "refcount_bits=64,lazy_refcounts=on",
    };
    const char *base = scratch("wbase.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 8M", base);
    RUN_OK("qemu-io -c 'write -P 0x77 0 5M' -c 'write -z 6M 1M' '%s'", base);
    const char *cmds = scratch("cmds.txt");
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        for (int with_backing = 0; with_backing < 2; with_backing++) {
            const char *a = scratch("a.qcow2"), *b = scratch("b.qcow2");
            if (with_backing)
                RUN_OK("qemu-img create -q -f qcow2 -o '%s' -b wbase.qcow2 -F qcow2 '%s'",
                       opts[i], a);
            else
                RUN_OK("qemu-img create -q -f qcow2 -o '%s' '%s' 8M", opts[i], a);
            RUN_OK("cp '%s' '%s'", a, b);
            workload(cmds, 1000 + i * 2 + (uint64_t)with_backing, 1500, 8 << 20);
            RUN_OK("%s io '%s' < '%s'", vdisk_bin(), a, cmds);
            RUN_OK("qemu-io '%s' < '%s'", b, cmds);
            struct run *r = run("qemu-img compare '%s' '%s'", a, b);
            ck_assert_msg(r->status == 0, "%s backing=%d: %s", opts[i], with_backing, r->out);
            r = run("qemu-img check '%s'", a);
            ck_assert_msg(r->status == 0, "%s backing=%d: qemu-img check: %s %s", opts[i],
                          with_backing, r->out, r->err);
            RUN_OK("%s check '%s'", vdisk_bin(), a);
            /* And vdisk reads qemu's twin as qemu does. */
            same_as_qemu(b);
            describe_same(b);
        }
    }
}
END_TEST

START_TEST(vdisk_images_pass_qemu_check)
{
    static const char *const opts[] = {
        "", "-o cluster_size=512", "-o cluster_size=2M", "-o refcount_bits=1",
        "-o refcount_bits=64", "-o compat=0.10", "-o extended_l2=on",
        "-o lazy_refcounts=on", "-o compression_type=zstd", "-o preallocation=metadata",
        "-o preallocation=falloc,cluster_size=4k", "-o preallocation=full",
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *img = scratch("v.qcow2");
        struct run *r = run("%s create -f qcow2 %s '%s' 8M", vdisk_bin(), opts[i], img);
        ck_assert_msg(r->status == 0, "%s: %s", opts[i], r->err);
        char *ours = strdup(r->out);
        const char *twin = scratch("v-twin.qcow2");
        r = run("qemu-img create -f qcow2 %s '%s' 8M", opts[i], twin);
        /* The same "Formatting" line, but for the file name. */
        char *p = strstr(ours, "', ");
        char *q = strstr(r->out, "', ");
        ck_assert_msg(p && q && strcmp(p, q) == 0, "%s: vdisk said %s qemu-img said %s", opts[i],
                      ours, r->out);
        free(ours);
        RUN_OK("qemu-img check '%s'", img);
        same_output("info --output=json v.qcow2", "qemu-img info --output=json v.qcow2");
        RUN_OK("%s io -c 'write -P 0x41 0 3M' -c 'write -P 0x42 5000 7000' "
               "-c 'write -z 2M 128k' -c 'discard 1M 64k' -c 'write -P 0x43 8388096 512' '%s'",
               vdisk_bin(), img);
        r = run("qemu-img check '%s'", img);
        ck_assert_msg(r->status == 0, "%s: %s %s", opts[i], r->out, r->err);
        RUN_OK("qemu-io -c 'read -P 0x41 0 5000' -c 'read -P 0x42 5000 7000' "
               "-c 'read -P 0 2M 128k' -c 'read -P 0x43 8388096 512' -c 'read -P 0x41 12000 1036576' "
               "'%s'", img);
        same_as_qemu(img);
    }
    /* A linked clone made by vdisk over a qemu-made base. */
    const char *base = qemu_image("cbase.qcow2", "cluster_size=64k", NULL);
    (void)base;
    const char *clone = scratch("clone.qcow2");
    struct run *r = run("%s create -f qcow2 -b cbase.qcow2 -F qcow2 '%s'", vdisk_bin(), clone);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "size=8388608 backing_file=cbase.qcow2 backing_fmt=qcow2"),
                  "%s", r->out);
    RUN_OK("%s io -c 'write -P 0x66 4096 512' '%s'", vdisk_bin(), clone);
    RUN_OK("qemu-img check '%s'", clone);
    RUN_OK("qemu-io -c 'read -P 0x66 4096 512' -c 'read -P 0x11 0 4096' "
           "-c 'read -P 0x11 4608 60k' '%s'", clone);
    same_as_qemu(clone);
    describe_same(clone);
}
END_TEST

/* Whether files A and B hold the same bytes (and are as long); on a
 * difference, its first offset in *AT. */
static bool same_file(const char *a, const char *b, uint64_t *at)
{
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    ck_assert_int_ge(fa, 0);
    ck_assert_int_ge(fb, 0);
    off_t la = lseek(fa, 0, SEEK_END), lb = lseek(fb, 0, SEEK_END);
    size_t chunk = 1 << 20;
    uint8_t *x = malloc(chunk), *y = malloc(chunk);
    bool same = true;
    *at = (uint64_t)(la < lb ? la : lb);
    off_t len = la < lb ? la : lb;
    for (off_t off = 0; same && off < len; off += (off_t)chunk) {
        /* Holes in both read the same: skipped. */
        off_t da = lseek(fa, off, SEEK_DATA), db = lseek(fb, off, SEEK_DATA);
        off_t next = da < 0 ? db : db < 0 ? da : da < db ? da : db;
        if (next < 0)
            break;
        off = next;
        if (off >= len)
            break;
        size_t want = len - off < (off_t)chunk ? (size_t)(len - off) : chunk;
        ssize_t n = pread(fa, x, want, off);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(pread(fb, y, (size_t)n, off), n);
        for (ssize_t i = 0; i < n && same; i++) {
            if (x[i] != y[i]) {
                same = false;
                *at = (uint64_t)off + (uint64_t)i;
            }
        }
    }
    free(x);
    free(y);
    close(fa);
    close(fb);
    return same && la == lb;
}

/*
 * vdisk create makes the file qemu-img create makes, byte for byte and as
 * long, wherever qemu-img's allocator puts things somewhere else than in
 * order: refcount blocks made for the L1 table after it (512-byte
 * clusters, 64-bit refcounts), a refcount table that grows and moves
 * (20 GiB with 512-byte clusters; metadata preallocation), refcount blocks
 * in the midst of preallocated data, the unaligned end of the last data
 * run, the header without the feature table for clusters up to 4 KiB, and
 * the L1 table's length not rounded to a cluster.
 */
START_TEST(create_like_qemu_byte_for_byte)
{
    static const char *const opts[] = {
        "cluster_size=512,refcount_bits=64",
        "cluster_size=512,refcount_bits=1",
        "cluster_size=512",
        "cluster_size=1024,refcount_bits=32",
        "cluster_size=4096,refcount_bits=8",
        "cluster_size=8192,refcount_bits=2",
        "cluster_size=65536",
        "cluster_size=65536,refcount_bits=64",
        "cluster_size=2M,refcount_bits=4",
        "extended_l2=on,cluster_size=16384",
        "extended_l2=on,cluster_size=2M,refcount_bits=64",
        "lazy_refcounts=on,cluster_size=512,refcount_bits=2",
        "compat=0.10,cluster_size=1024",
        "compression_type=zstd,cluster_size=4096",
    };
    static const char *const sizes[] = {"0", "1049088", "1G", "20G", "3T"};
    static const char *const prealloc[] = {"off", "metadata", "falloc", "full"};
    unsigned compared = 0;
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
            for (size_t k = 0; k < sizeof prealloc / sizeof *prealloc; k++) {
                /* Preallocation up to 1 GiB (clusters under 64 KiB: 1 MiB),
                 * the space-taking modes at 1 MiB only. */
                bool small = !strstr(opts[i], "=65536") && !strstr(opts[i], "=2M");
                if ((k >= 1 && j > 2) || (k >= 1 && j == 2 && small) || (k >= 2 && j != 1))
                    continue;
                RUN_OK("rm -f cq.qcow2 cv.qcow2");
                struct run *r = run("qemu-img create -q -f qcow2 -o %s,preallocation=%s "
                                    "cq.qcow2 %s", opts[i], prealloc[k], sizes[j]);
                if (r->status != 0) {
                    /* Too large for the cluster size: both refuse. */
                    ck_assert_msg(strstr(r->err, "too large"), "%s %s: %s", opts[i], sizes[j],
                                  r->err);
                    r = run("%s create -q -f qcow2 -o %s,preallocation=%s cv.qcow2 %s",
                            vdisk_bin(), opts[i], prealloc[k], sizes[j]);
                    ck_assert_int_ne(r->status, 0);
                    continue;
                }
                RUN_OK("%s create -q -f qcow2 -o %s,preallocation=%s cv.qcow2 %s", vdisk_bin(),
                       opts[i], prealloc[k], sizes[j]);
                uint64_t at;
                ck_assert_msg(same_file("cq.qcow2", "cv.qcow2", &at), "-o %s,preallocation=%s "
                              "%s: the files differ from byte %llu on", opts[i], prealloc[k],
                              sizes[j], (unsigned long long)at);
                compared++;
            }
        }
    }
    /* The refcount table outgrown while preallocating, several times. */
    static const char *const grown[][2] = {
        {"cluster_size=512,refcount_bits=64", "64M"},
        {"cluster_size=512,refcount_bits=16", "64M"},
        {"cluster_size=1024,refcount_bits=64", "256M"},
    };
    for (size_t i = 0; i < sizeof grown / sizeof *grown; i++) {
        RUN_OK("rm -f cq.qcow2 cv.qcow2");
        RUN_OK("qemu-img create -q -f qcow2 -o %s,preallocation=metadata cq.qcow2 %s",
               grown[i][0], grown[i][1]);
        RUN_OK("%s create -q -f qcow2 -o %s,preallocation=metadata cv.qcow2 %s", vdisk_bin(),
               grown[i][0], grown[i][1]);
        uint64_t at;
        ck_assert_msg(same_file("cq.qcow2", "cv.qcow2", &at), "-o %s,preallocation=metadata "
                      "%s: the files differ from byte %llu on", grown[i][0], grown[i][1],
                      (unsigned long long)at);
        compared++;
    }
    /* A backing file, opened or not (-u). */
    RUN_OK("qemu-img create -q -f qcow2 cbase.qcow2 1M");
    for (int f = 0; f < 2; f++) {
        for (int c = 0; c < 2; c++) {
            RUN_OK("rm -f cq.qcow2 cv.qcow2");
            const char *o = c ? "-o cluster_size=512 " : "";
            const char *fmtopt = f ? "-F qcow2 " : "-u -F raw ";
            RUN_OK("qemu-img create -q -f qcow2 %s-b cbase.qcow2 %scq.qcow2 1M", o, fmtopt);
            RUN_OK("%s create -q -f qcow2 %s-b cbase.qcow2 %scv.qcow2 1M", vdisk_bin(), o,
                   fmtopt);
            uint64_t at;
            ck_assert_msg(same_file("cq.qcow2", "cv.qcow2", &at), "backing file (%s%s): the "
                          "files differ from byte %llu on", o, fmtopt, (unsigned long long)at);
            compared++;
        }
    }
    ck_assert_uint_ge(compared, 80);
}
END_TEST

START_TEST(check_and_repair_like_qemu)
{
    /* Leaks and a wrong refcount made by hand in the first refcount block. */
    const char *img = scratch("l.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 8M", img);
    RUN_OK("qemu-io -c 'write -P 1 0 200k' -c 'write -P 2 1M 64k' -c 'write -P 3 2M 64k' "
           "-c 'discard 1M 64k' '%s'", img);
    int fd = open(img, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t one[2] = {0, 1}, two[2] = {0, 2};
    ck_assert_int_eq(pwrite(fd, one, 2, 0x20000 + 9 * 2), 2);
    ck_assert_int_eq(pwrite(fd, two, 2, 0x20000 + 5 * 2), 2);
    close(fd);
    same_output("info --output=json l.qcow2", "qemu-img info --output=json l.qcow2");
    same_output("map --output=json l.qcow2", "qemu-img map --output=json l.qcow2");
    /* Two leaks, and the COPIED flag of the leaked data cluster (stored
     * refcount 2, one user) is an error: exit 2, the same report as
     * qemu-img's, word for word. */
    struct run *r0 = run("%s check --output=json l.qcow2", vdisk_bin());
    ck_assert_int_eq(r0->status, 2);
    char *out0 = strdup(r0->out), *err0 = strdup(r0->err);
    struct run *q0 = run("qemu-img check --output=json l.qcow2");
    ck_assert_int_eq(q0->status, 2);
    ck_assert_str_eq(out0, q0->out);
    ck_assert_str_eq(err0, q0->err);
    ck_assert_str_eq(err0, "Leaked cluster 5 refcount=2 reference=1\n"
                           "Leaked cluster 9 refcount=1 reference=0\n"
                           "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000050000 "
                           "refcount=2\n");
    free(out0);
    free(err0);
    /* Repairs of leaks: the same report as qemu-img's on a twin. */
    RUN_OK("mkdir -p twin && cp l.qcow2 twin/l.qcow2");
    struct run *r = run("%s check --output=json -r leaks l.qcow2", vdisk_bin());
    char *ours = strdup(r->out);
    r = run("cd twin && qemu-img check --output=json -r leaks l.qcow2");
    ck_assert_str_eq(ours, r->out);
    free(ours);
    RUN_OK("qemu-img check '%s'", img);
    /* A refcount too low: -r all rebuilds the refcount structure. */
    fd = open(img, O_RDWR);
    uint8_t zero[2] = {0, 0};
    ck_assert_int_eq(pwrite(fd, zero, 2, 0x20000 + 6 * 2), 2);
    close(fd);
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "ERROR cluster 6 refcount=0 reference=1"), "%s", r->err);
    r = run("%s check -r all '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 0, "%s %s", r->out, r->err);
    ck_assert_msg(strstr(r->out, "The following inconsistencies were found and repaired:"),
                  "%s", r->out);
    RUN_OK("qemu-img check '%s'", img);
    RUN_OK("qemu-io -c 'read -P 1 0 200k' -c 'read -P 3 2M 64k' '%s'", img);
    /* Raw images have nothing to check. */
    const char *raw = scratch("x.raw");
    RUN_OK("qemu-img create -q -f raw '%s' 1M", raw);
    r = run("%s check -f raw '%s'", vdisk_bin(), raw);
    ck_assert_int_eq(r->status, 63);
    ck_assert_str_eq(r->err, "vdisk: This image format does not support checks\n");
}
END_TEST

START_TEST(lazy_refcounts_after_a_crash)
{
    /* A process that dies with the image open leaves the dirty bit set;
     * the next read-write open rebuilds the refcounts. */
    const char *img = scratch("lazy.qcow2");
    RUN_OK("%s create -q -f qcow2 -o lazy_refcounts=on '%s' 16M", vdisk_bin(), img);
    pid_t pid = fork();
    if (pid == 0) {
        vdisk_dev *dev;
        if (vdisk_open(&dev, img, NULL) < 0)
            _exit(2);
        static uint8_t buf[65536];
        memset(buf, 0x3c, sizeof buf);
        for (int i = 0; i < 100; i++)
            if (vdisk_pwrite(dev, buf, sizeof buf, (uint64_t)i * 131072) < 0)
                _exit(3);
        if (vdisk_flush(dev) < 0)
            _exit(4);
        _exit(0); /* no close: as if the power went */
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    struct run *r = run("qemu-img info --output=json '%s'", img);
    ck_assert_msg(strstr(r->out, "\"dirty-flag\": true"), "%s", r->out);
    same_output("info --output=json lazy.qcow2", "qemu-img info --output=json lazy.qcow2");
    /* Opening read-write repairs it; the data is all there. */
    RUN_OK("%s io -c 'read -P 0x3c 0 64k' -c 'read -P 0x3c 12845056 64k' '%s'", vdisk_bin(),
           img);
    r = run("qemu-img info --output=json '%s'", img);
    ck_assert_msg(strstr(r->out, "\"dirty-flag\": false"), "%s", r->out);
    RUN_OK("qemu-img check '%s'", img);
    RUN_OK("qemu-io -c 'read -P 0x3c 0 64k' -c 'read -P 0 64k 64k' '%s'", img);
}
END_TEST

/* Writes refcount V of cluster C into the refcount block at 0x20000 of an
 * image with BITS-bit refcounts (sub-byte widths lowest bits first). */
static void poke_refcount(const char *img, unsigned bits, uint64_t c, uint64_t v)
{
    int fd = open(img, O_RDWR);
    ck_assert_int_ge(fd, 0);
    if (bits >= 8) {
        uint8_t b[8];
        unsigned n = bits / 8;
        for (unsigned i = 0; i < n; i++)
            b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
        ck_assert_int_eq(pwrite(fd, b, n, 0x20000 + (off_t)(c * n)), (ssize_t)n);
    } else {
        off_t at = 0x20000 + (off_t)(c * bits / 8);
        unsigned shift = (unsigned)(c * bits % 8), mask = (1u << bits) - 1;
        uint8_t b;
        ck_assert_int_eq(pread(fd, &b, 1, at), 1);
        b = (uint8_t)((b & ~(mask << shift)) | ((v & mask) << shift));
        ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
    }
    close(fd);
}

/*
 * Leaks at every refcount width, up to the width's largest refcount (and,
 * at 64 bits, 2^64 - 256 and 2^63 + 1: the old repair negated the excess as
 * a signed number, which overflowed, and then failed with "would exceed").
 * check and check -r leaks must say what qemu-img says, byte for byte, and
 * leave an image that qemu-img calls clean with the data intact.
 */
START_TEST(check_leaks_at_every_refcount_width)
{
    static const unsigned widths[] = {1, 2, 4, 8, 16, 32, 64};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
        unsigned bits = widths[k];
        uint64_t max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
        RUN_OK("rm -rf w twin && mkdir w twin");
        RUN_OK("qemu-img create -q -f qcow2 -o refcount_bits=%u w/r.qcow2 8M", bits);
        /* Clusters: 0 header, 1 refcount table, 2 refcount block, 3 L1,
         * 4 L2, 5 and 6 data; 6 is freed again (refcount 0, in the file). */
        RUN_OK("qemu-io -c 'write -P 7 0 64k' -c 'write -P 8 1M 64k' -c 'discard 1M 64k' "
               "w/r.qcow2");
        poke_refcount("w/r.qcow2", bits, 6, max);
        if (bits == 64) {
            poke_refcount("w/r.qcow2", bits, 1, UINT64_MAX - 255);
            poke_refcount("w/r.qcow2", bits, 2, (1ull << 63) + 1);
        } else if (bits > 1) {
            poke_refcount("w/r.qcow2", bits, 1, max);
            poke_refcount("w/r.qcow2", bits, 2, max - 1);
        }
        RUN_OK("cp w/r.qcow2 twin/r.qcow2");
        for (int repair = 0; repair < 2; repair++) {
            const char *opt = repair ? "-r leaks " : "";
            struct run *r = run("cd w && %s check --output=json %sr.qcow2", vdisk_bin(), opt);
            char *out = strdup(r->out), *err = strdup(r->err);
            int st = r->status;
            r = run("cd twin && qemu-img check --output=json %sr.qcow2", opt);
            ck_assert_msg(st == r->status && !strcmp(out, r->out) && !strcmp(err, r->err),
                          "%u-bit refcounts, check %s: vdisk (exit %d):\n%s%s\nqemu-img (exit "
                          "%d):\n%s%s", bits, opt, st, out, err, r->status, r->out, r->err);
            ck_assert_int_eq(st, repair ? 0 : 3);
            free(out);
            free(err);
        }
        RUN_OK("qemu-img check w/r.qcow2");
        RUN_OK("qemu-io -c 'read -P 7 0 64k' -c 'read -P 0 1M 64k' w/r.qcow2");
    }
}
END_TEST

/* Big-endian 64-bit value at OFF of IMG. */
static uint64_t peek64(const char *img, uint64_t off)
{
    int fd = open(img, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    uint8_t b[8];
    ck_assert_int_eq(pread(fd, b, 8, (off_t)off), 8);
    close(fd);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static void poke64(const char *img, uint64_t off, uint64_t v)
{
    int fd = open(img, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    ck_assert_int_eq(pwrite(fd, b, 8, (off_t)off), 8);
    close(fd);
}

/* Where the L2 entry of guest cluster GC lies (the first L2 table). */
static uint64_t l2_entry_at(const char *img, uint64_t gc)
{
    uint64_t l1 = peek64(img, 40);
    return (peek64(img, l1) & 0x00fffffffffffe00ull) + 8 * gc;
}

/*
 * L2 entries whose data offset is off a cluster boundary, normal and
 * compressed, inside the file, reaching less than a cluster past its end
 * (the cluster past the end is counted as referenced: "ERROR cluster 8
 * refcount=0 reference=1", and the image end offset includes it), or a
 * whole cluster or more past it ("counting reference for region exceeding
 * the end of the file", nothing counted, and the COPIED flag checked against
 * the refcount of the cluster the offset names).  check and check
 * --output=json print what qemu-img prints, byte for byte, with the same
 * exit status.
 */
START_TEST(check_misaligned_entries_like_qemu)
{
    const uint64_t cs = 65536;
    static const struct {
        bool compressed;
        unsigned gc;      /* guest cluster whose entry is moved */
        uint64_t delta;   /* added to the entry */
        uint64_t set;     /* then these bits set */
        int status;       /* of both checks */
    } cases[] = {
        {false, 5, 512, 0, 2},              /* 512 bytes past the end */
        {false, 0, 512, 0, 2},              /* inside the file */
        {false, 5, 0x8000, 0, 2},           /* half a cluster past the end */
        {false, 5, 65536 + 512, 0, 2},      /* more than a cluster past */
        {false, 5, 65536, 0, 2},            /* aligned, the cluster past the end */
        {false, 5, 3 * 65536, 0, 2},        /* aligned, far past */
        {false, 5, 512, 1, 2},              /* zero flag, 512 bytes past the end */
        {false, 1, 512, 1, 2},              /* zero flag, inside */
        {true, 0, 100, 0, 0},               /* compressed, inside: sound */
        {true, 0, 8 * 65536, 0, 2},         /* compressed, past the end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RUN_OK("rm -rf m && mkdir m");
        if (cases[i].compressed) {
            RUN_OK("qemu-img create -q -f raw m/r.raw 1M");
            RUN_OK("qemu-io -f raw -c 'write -P 1 0 200k' -c 'write -P 3 512k 64k' m/r.raw");
            RUN_OK("qemu-img convert -c -O qcow2 m/r.raw m/u.qcow2");
        } else {
            /* Clusters: 0 header, 1 refcount table, 2 refcount block, 3 L1,
             * 4 L2, 5 and 6 data of guest clusters 0 and 1, 7 of 5. */
            RUN_OK("qemu-img create -q -f qcow2 m/u.qcow2 1M");
            RUN_OK("qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 320k 64k' m/u.qcow2");
            ck_assert_uint_eq(l2_entry_at("m/u.qcow2", 5), 4 * cs + 5 * 8);
        }
        uint64_t at = l2_entry_at("m/u.qcow2", cases[i].gc);
        poke64("m/u.qcow2", at, (peek64("m/u.qcow2", at) + cases[i].delta) | cases[i].set);
        for (int json = 0; json < 2; json++) {
            const char *opt = json ? "--output=json " : "";
            struct run *r = run("cd m && %s check %su.qcow2", vdisk_bin(), opt);
            char *out = strdup(r->out), *err = strdup(r->err);
            int st = r->status;
            r = run("cd m && qemu-img check %su.qcow2", opt);
            ck_assert_msg(st == r->status && !strcmp(out, r->out) && !strcmp(err, r->err),
                          "case %zu, check %s: vdisk (exit %d):\n%s%s\nqemu-img (exit %d):\n%s%s",
                          i, opt, st, out, err, r->status, r->out, r->err);
            ck_assert_int_eq(st, cases[i].status);
            free(out);
            free(err);
        }
    }
    /* The first case word for word. */
    RUN_OK("rm -rf m && mkdir m");
    RUN_OK("qemu-img create -q -f qcow2 m/u.qcow2 1M");
    RUN_OK("qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 320k 64k' m/u.qcow2");
    poke64("m/u.qcow2", 4 * cs + 5 * 8, (1ull << 63) | (7 * cs + 512));
    struct run *r = run("cd m && %s check u.qcow2", vdisk_bin());
    ck_assert_str_eq(r->err, "ERROR offset=70200: Data cluster is not properly aligned; L2 entry "
                             "corrupted.\nERROR cluster 8 refcount=0 reference=1\n");
    ck_assert_msg(strstr(r->out, "\n2 errors were found on the image.\n") &&
                  strstr(r->out, "Image end offset: 589824\n"), "%s", r->out);
}
END_TEST

/*
 * Compressed clusters are packed several to a host cluster, each piece one
 * more reference: with 1- or 2-bit refcounts the host cluster fills up with
 * references before it fills up with bytes.  The next piece then goes to a
 * new cluster, as QEMU does (vdisk failed the write with ERANGE).
 */
START_TEST(compressed_writes_at_narrow_refcount_widths)
{
    static const unsigned widths[] = {1, 2, 16};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
        const char *img = scratch("narrow.qcow2");
        unlink(img);
        RUN_OK("%s create -q -f qcow2 -o cluster_size=4096,refcount_bits=%u '%s' 1M",
               vdisk_bin(), widths[k], img);
        RUN_OK("%s io -c 'write -c -P 0x11 0 4k' -c 'write -c -P 0x22 4k 4k' "
               "-c 'write -c -P 0x33 8k 4k' -c 'write -c -P 0x44 12k 4k' "
               "-c 'write -c -P 0x55 16k 4k' '%s'", vdisk_bin(), img);
        RUN_OK("qemu-img check '%s'", img);
        RUN_OK("qemu-io -c 'read -P 0x11 0 4k' -c 'read -P 0x22 4k 4k' -c 'read -P 0x33 8k 4k' "
               "-c 'read -P 0x44 12k 4k' -c 'read -P 0x55 16k 4k' '%s'", img);
        same_as_qemu(img);
    }
}
END_TEST

/*
 * Write zeroes over part of a compressed cluster with extended L2 entries:
 * a compressed cluster has no subcluster bits, so those bytes are written
 * as zeroes (vdisk skipped them, and the old data stayed).
 */
START_TEST(zeroes_over_part_of_a_compressed_cluster)
{
    for (int ext = 0; ext < 2; ext++) {
        for (int unmap = 0; unmap < 2; unmap++) {
            const char *img = scratch("zc.qcow2");
            unlink(img);
            RUN_OK("%s create -q -f qcow2 -o cluster_size=64k,extended_l2=%s '%s' 2M",
                   vdisk_bin(), ext ? "on" : "off", img);
            /* 448k + 104.8k: cluster 7 whole, then 40,960 bytes of cluster 8
             * (20 subclusters) and 850 bytes more. */
            RUN_OK("%s io -c 'write -c -P 0xe2 512k 64k' -c 'write -c -P 0xe3 576k 64k' "
                   "-c 'write -z %s 458752 107346' -c 'write -z %s 589824 4096' "
                   "-c 'read -P 0 458752 107346' -c 'read -P 0xe2 566098 9838' "
                   "-c 'read -P 0 576k 4k' -c 'read -P 0xe3 580k 60k' '%s'", vdisk_bin(),
                   unmap ? "-u" : "", unmap ? "-u" : "", img);
            RUN_OK("qemu-img check '%s'", img);
            RUN_OK("qemu-io -c 'read -P 0 458752 107346' -c 'read -P 0xe2 566098 9838' "
                   "-c 'read -P 0 576k 4k' -c 'read -P 0xe3 580k 60k' '%s'", img);
        }
    }
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    /* Relative backing names resolve against the image's folder. */
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("interop-qcow2");
    TCase *tc = tcase_create("qcow2");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, qemu_images_read_the_same);
    tcase_add_test(tc, compressed_images_read_the_same);
    tcase_add_test(tc, backing_chain_of_depth_3);
    tcase_add_test(tc, random_workload_twins);
    tcase_add_test(tc, vdisk_images_pass_qemu_check);
    tcase_add_test(tc, check_and_repair_like_qemu);
    tcase_add_test(tc, lazy_refcounts_after_a_crash);
    tcase_add_test(tc, check_leaks_at_every_refcount_width);
    tcase_add_test(tc, compressed_writes_at_narrow_refcount_widths);
    tcase_add_test(tc, zeroes_over_part_of_a_compressed_cluster);
    suite_add_tcase(s, tc);
    tc = tcase_create("check");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, check_misaligned_entries_like_qemu);
    suite_add_tcase(s, tc);
    tc = tcase_create("create");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, create_like_qemu_byte_for_byte);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
