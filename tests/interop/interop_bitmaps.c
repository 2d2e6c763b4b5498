/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_bitmaps.c: persistent dirty bitmaps in qcow2
 * (issue 23) against QEMU 7.2: qemu-img, qemu-nbd (whose writes through
 * NBD set the bits of enabled bitmaps, and whose -B NAME export gives
 * QEMU's exact view of a bitmap, read with nbdinfo --map).
 *   - writes, write zeroes and discards through vdisk set the same bits
 *     that the same requests through QEMU set; the image stays clean for
 *     qemu-img check;
 *   - bits set by QEMU read the same through vdisk_bitmap_status;
 *   - a bitmap left in use (a crash) is inconsistent for both;
 *   - vdisk nbd -B serves a bitmap as qemu-nbd -B does; convert --bitmaps
 *     and check as qemu-img's;
 *   - an incremental backup end to end: full copy, checkpoint, more
 *     writes, an overlay of exactly the dirty clusters, restored and
 *     compared byte for byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

/* The requests both tools make, in qemu-io syntax. */
static const char *const writes[] = {
    "write -P 0x11 0 4k",
    "write -P 0x22 1M 70k",
    "write -z 8M 128k",
    "write -P 0x33 12345 1",
    "discard 32M 64k",
    "write -P 0x44 63M 1M",
};

static char *io_args(void)
{
    char *s = strdup("");
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        char *n = fmt("%s -c '%s'", s, writes[i]);
        free(s);
        s = strdup(n);
    }
    return s;
}

/* QEMU's view of the bitmap NAME of IMG: nbdinfo --map over qemu-nbd -B. */
static char *qemu_map(const char *img, const char *name)
{
    const char *sock = scratch("map.sock"), *pid = scratch("map.pid");
    RUN_OK("qemu-nbd -r -t -f qcow2 -B '%s' -k '%s' --fork --pid-file '%s' '%s'", name, sock,
           pid, img);
    struct run *r = run("nbdinfo --map=qemu:dirty-bitmap:%s 'nbd+unix:///?socket=%s'", name,
                        sock);
    char *out = strdup(r->out);
    int st = r->status;
    RUN_OK("kill $(cat '%s'); while kill -0 $(cat '%s') 2>/dev/null; do sleep 0.05; done; "
           "rm -f '%s'", pid, pid, sock);
    ck_assert_msg(st == 0, "nbdinfo failed: %s", out);
    return out;
}

/* vdisk's view, in nbdinfo --map's lines. */
static char *vdisk_map(const char *img, const char *name)
{
    vdisk_dev *dev;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    out[0] = 0;
    uint64_t size = vdisk_get_size(dev);
    for (uint64_t off = 0; off < size;) {
        uint64_t len;
        bool dirty;
        ck_assert_msg(vdisk_bitmap_status(dev, name, off, size - off, &len, &dirty) == 0, "%s",
                      vdisk_get_error());
        ck_assert_uint_gt(len, 0);
        n += (size_t)snprintf(out + n, cap - n, "%10llu  %10llu    %d  %s\n",
                              (unsigned long long)off, (unsigned long long)len, dirty,
                              dirty ? "dirty" : "clean");
        ck_assert_uint_lt(n, cap - 100);
        off += len;
    }
    vdisk_close(dev);
    return out;
}

static void check_clean(const char *img)
{
    struct run *r = run("qemu-img check '%s'", img);
    ck_assert_msg(r->status == 0 && !strstr(r->out, "leaked") && r->err[0] == 0, "%s: %s %s",
                  img, r->out, r->err);
    r = run("qemu-img info --output=json '%s'", img);
    ck_assert_msg(!strstr(r->out, "in-use"), "%s", r->out);
}

/* The bitmaps bFIRST to bLAST of V (written by vdisk) as QEMU reads them
 * are those of Q (QEMU's writes); with VDISK_TOO vdisk reads V's so. */
static void same_bits(const char *v, const char *q, int first, int last, bool vdisk_too)
{
    for (int i = first; i <= last; i++) {
        char name[4] = {'b', (char)('0' + i), 0};
        char *qv = qemu_map(v, name), *qq = qemu_map(q, name);
        ck_assert_msg(strcmp(qv, qq) == 0, "%s: vdisk's writes:\n%s\nQEMU's writes:\n%s", name,
                      qv, qq);
        char *vv = vdisk_too ? vdisk_map(v, name) : NULL;
        ck_assert_msg(!vv || strcmp(vv, qv) == 0, "%s: vdisk reads:\n%s\nQEMU reads:\n%s", name,
                      vv, qv);
        free(qv);
        free(qq);
        free(vv);
    }
}

/* An image with b0 (enabled, 64 KiB), b1 (enabled, 4 KiB) and b2 (disabled). */
static const char *bitmap_image(const char *name)
{
    const char *img = scratch(name);
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", img);
    RUN_OK("qemu-img bitmap --add '%s' b0", img);
    RUN_OK("qemu-img bitmap --add -g 4k '%s' b1", img);
    RUN_OK("qemu-img bitmap --add --disable '%s' b2", img);
    return img;
}

START_TEST(writes_set_the_bits_qemu_sets)
{
    const char *v = bitmap_image("v.qcow2");
    const char *q = scratch("q.qcow2");
    RUN_OK("cp '%s' '%s'", v, q);
    char *args = io_args();
    RUN_OK("%s io %s '%s'", vdisk_bin(), args, v);
    /* The same requests through QEMU: qemu-nbd, writable, with discards. */
    const char *sock = scratch("w.sock"), *pid = scratch("w.pid");
    RUN_OK("qemu-nbd -t -f qcow2 --discard=unmap -k '%s' --fork --pid-file '%s' '%s'", sock,
           pid, q);
    RUN_OK("qemu-io -f raw %s 'nbd+unix:///?socket=%s'", args, sock);
    RUN_OK("kill $(cat '%s'); while kill -0 $(cat '%s') 2>/dev/null; do sleep 0.05; done",
           pid, pid);
    free(args);
    check_clean(v);
    check_clean(q);
    same_bits(v, q, 0, 2, true);
    /* b2 is disabled: nothing. */
    char *b2 = vdisk_map(v, "b2");
    ck_assert_str_eq(b2, "         0    67108864    0  clean\n");
    free(b2);
    /* The data reads as QEMU wrote it. */
    RUN_OK("qemu-img compare '%s' '%s'", v, q);
}
END_TEST

/* A bitmap of 512 MiB of bits (2 TiB at 512-byte granularity, QEMU's
 * largest) is kept in pages for what is set: vdisk adds it, writes set its
 * bits (a part of a page, whole pages, the last bit), and QEMU reads what
 * QEMU's own writes set. */
START_TEST(huge_sparse_bitmap)
{
    const char *v = scratch("h.qcow2"), *q = scratch("hq.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=2M '%s' 2T", v);
    RUN_OK("%s bitmap --add --granularity 512 '%s' b1 && %s bitmap --add -g 2M '%s' b2",
           vdisk_bin(), v, vdisk_bin(), v);
    RUN_OK("cp '%s' '%s'", v, q);
    const char *args = "-c 'write -P 1 0 4k' -c 'write -P 2 1T 1M' -c 'write -P 3 100G 32M' "
                       "-c 'write -P 4 2199023255040 512' -c 'write -z 1536G 8M'";
    RUN_OK("%s io %s '%s'", vdisk_bin(), args, v);
    RUN_OK("qemu-io %s '%s'", args, q);
    check_clean(v);
    same_bits(v, q, 1, 2, true);
    /* cleared, then written again, and merged into the other */
    RUN_OK("%s bitmap --clear '%s' b1 && %s io -c 'write 5G 64k' '%s' && "
           "%s bitmap --merge b1 '%s' b2", vdisk_bin(), v, vdisk_bin(), v, vdisk_bin(), v);
    RUN_OK("qemu-img bitmap --clear '%s' b1 && qemu-io -c 'write 5G 64k' '%s' && "
           "qemu-img bitmap --merge b1 '%s' b2", q, q, q);
    same_bits(v, q, 1, 2, false);
    check_clean(v);
}
END_TEST

START_TEST(qemu_bits_read_by_vdisk)
{
    /* Bits QEMU set, read by vdisk, then kept through vdisk's writes. */
    const char *q = bitmap_image("q2.qcow2");
    const char *sock = scratch("w2.sock"), *pid = scratch("w2.pid");
    RUN_OK("qemu-nbd -t -f qcow2 -k '%s' --fork --pid-file '%s' '%s'", sock, pid, q);
    RUN_OK("qemu-io -f raw -c 'write 5M 3M' -c 'write 40M 512' 'nbd+unix:///?socket=%s'", sock);
    RUN_OK("kill $(cat '%s'); while kill -0 $(cat '%s') 2>/dev/null; do sleep 0.05; done",
           pid, pid);
    char *qv = qemu_map(q, "b1"), *vv = vdisk_map(q, "b1");
    ck_assert_msg(strcmp(vv, qv) == 0, "vdisk reads:\n%s\nQEMU reads:\n%s", vv, qv);
    free(qv);
    free(vv);
    RUN_OK("%s io -c 'write 50M 4k' '%s'", vdisk_bin(), q);
    check_clean(q);
    qv = qemu_map(q, "b0");
    ck_assert_str_eq(qv, "         0     5242880    0  clean\n"
                         "   5242880     3145728    1  dirty\n"
                         "   8388608    33554432    0  clean\n"
                         "  41943040       65536    1  dirty\n"
                         "  42008576    10420224    0  clean\n"
                         "  52428800       65536    1  dirty\n"
                         "  52494336    14614528    0  clean\n");
    free(qv);
}
END_TEST

START_TEST(crash_leaves_bitmaps_in_use)
{
    const char *img = bitmap_image("crash.qcow2");
    pid_t p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0) {
        vdisk_dev *dev;
        char buf[4096];
        memset(buf, 7, sizeof buf);
        if (vdisk_open(&dev, img, NULL) < 0 || vdisk_pwrite(dev, buf, sizeof buf, 0) < 0 ||
            vdisk_flush(dev) < 0)
            _exit(1);
        _exit(0); /* no close: as if the process died (the data flushed, so
                   * that the tables have no leak of their own) */
    }
    int st;
    ck_assert_int_eq(waitpid(p, &st, 0), p);
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    /* Enabled bitmaps are in use for QEMU: never silently wrong. */
    struct run *r = run("qemu-img info '%s'", img);
    ck_assert_msg(strstr(r->out, "in-use"), "%s", r->out);
    const char *qimg = scratch("crash-q.qcow2");
    RUN_OK("cp '%s' '%s'", img, qimg);
    /* vdisk and qemu-img refuse it alike, and both remove it. */
    static const char *const acts[] = {"--clear", "--enable", "--disable", "--merge b2",
                                       "--remove"};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        r = run("%s bitmap %s '%s' b0", vdisk_bin(), acts[i], img);
        char *ve = strdup(r->err);
        int vs = r->status;
        r = run("qemu-img bitmap %s '%s' b0 2>'%s'; st=$?; sed 's/^qemu-img: /vdisk: /' '%s' "
                ">&2; exit $st", acts[i], qimg, scratch("q.err"), scratch("q.err"));
        ck_assert_msg(vs == r->status && strcmp(ve, r->err) == 0,
                      "%s: vdisk %d:\n%s\nqemu-img %d:\n%s", acts[i], vs, ve, r->status, r->err);
        ck_assert_int_eq(vs, strcmp(acts[i], "--remove") == 0 ? 0 : 1);
        free(ve);
    }
    r = run("qemu-img bitmap --clear '%s' b1", img);
    ck_assert_int_eq(r->status, 1);
    r = run("%s bitmap --clear '%s' b1", vdisk_bin(), img);
    ck_assert_str_eq(r->err, fmt("vdisk: Operation clear on bitmap b1 failed: Bitmap 'b1' is "
                                 "inconsistent and cannot be used\nTry "
                                 "block-dirty-bitmap-remove to delete this bitmap from disk\n"));
    RUN_OK("%s bitmap --remove '%s' b1", vdisk_bin(), img);
    check_clean(img);
    r = run("qemu-img info '%s'", img);
    ck_assert_msg(!strstr(r->out, "b0") && !strstr(r->out, "b1") && strstr(r->out, "b2"),
                  "%s", r->out);
}
END_TEST

/* Copies the dirty extents of bitmap NAME of SRC into DST (same size). */
static void copy_dirty(vdisk_dev *src, const char *name, vdisk_dev *dst, uint64_t *copied)
{
    uint64_t size = vdisk_get_size(src);
    char *buf = malloc(1 << 20);
    *copied = 0;
    for (uint64_t off = 0; off < size;) {
        uint64_t len;
        bool dirty;
        ck_assert_msg(vdisk_bitmap_status(src, name, off, size - off, &len, &dirty) == 0, "%s",
                      vdisk_get_error());
        for (uint64_t p = off; dirty && p < off + len;) {
            uint64_t n = off + len - p < (1 << 20) ? off + len - p : (1 << 20);
            ck_assert_int_eq(vdisk_pread(src, buf, n, p), 0);
            ck_assert_int_eq(vdisk_pwrite(dst, buf, n, p), 0);
            p += n;
            *copied += n;
        }
        off += len;
    }
    free(buf);
}

START_TEST(incremental_backup)
{
    const char *img = scratch("disk.qcow2"), *full = scratch("full.qcow2");
    const char *inc = scratch("inc.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 32M", img);
    RUN_OK("%s io -c 'write -P 0x5a 0 8M' -c 'write -P 0x6b 20M 1M' '%s'", vdisk_bin(), img);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    /* The full backup and the first checkpoint, at one point in time. */
    ck_assert_msg(vdisk_bitmap_checkpoint(dev, "since-full", NULL, 0) == 0, "%s",
                  vdisk_get_error());
    vdisk_close(dev);
    RUN_OK("%s convert -O qcow2 '%s' '%s'", vdisk_bin(), img, full);
    /* More writes (a guest), through vdisk. */
    RUN_OK("%s io -c 'write -P 0x77 1M 4k' -c 'write -z 4M 64k' -c 'discard 20M 64k' "
           "-c 'write -P 0x88 30M 100k' '%s'", vdisk_bin(), img);
    /* The incremental: a new checkpoint, then the old bitmap's extents. */
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_bitmap_checkpoint(dev, "since-inc1", "since-full", 0) == 0, "%s",
                  vdisk_get_error());
    RUN_OK("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", full, inc);
    vdisk_dev *out;
    ck_assert_msg(vdisk_open(&out, inc, NULL) == 0, "%s", vdisk_get_error());
    uint64_t copied;
    copy_dirty(dev, "since-full", out, &copied);
    vdisk_close(out);
    ck_assert_int_eq(copied, 5 * 65536); /* 1M, 4M, 20M; 30M + 100k: 2 */
    ck_assert_int_eq(vdisk_bitmap_remove(dev, "since-full"), 0);
    vdisk_close(dev);
    /* The overlay holds exactly the changed clusters. */
    struct run *r = run("qemu-img map '%s' | tail -n +2 | grep -c '%s'", inc, inc);
    ck_assert_int_eq(atoi(r->out), 4);
    /* Restore: the chain, flattened, is the disk byte for byte. */
    RUN_OK("qemu-img convert -O raw '%s' '%s'", inc, scratch("restored.raw"));
    RUN_OK("qemu-img convert -O raw '%s' '%s'", img, scratch("disk.raw"));
    RUN_OK("cmp '%s' '%s'", scratch("restored.raw"), scratch("disk.raw"));
    check_clean(img);
    r = run("qemu-img info '%s'", img);
    ck_assert_msg(strstr(r->out, "since-inc1") && !strstr(r->out, "since-full"), "%s", r->out);
}
END_TEST

START_TEST(convert_bitmaps)
{
    /* convert --bitmaps: the same bitmaps, flags and bits as qemu-img's
     * copy; the same refusals. */
    const char *src = bitmap_image("cs.qcow2");
    RUN_OK("%s io -c 'write 1M 64k' -c 'write 7M 1k' '%s'", vdisk_bin(), src);
    RUN_OK("%s convert --bitmaps -O qcow2 '%s' '%s'", vdisk_bin(), src, scratch("cv.qcow2"));
    RUN_OK("qemu-img convert --bitmaps -O qcow2 '%s' '%s'", src, scratch("cq.qcow2"));
    check_clean(scratch("cv.qcow2"));
    RUN_OK("cd '%s' && qemu-img info cv.qcow2 | sed '1d;/^disk size/d' > v.info && "
           "qemu-img info cq.qcow2 | sed '1d;/^disk size/d' > q.info && diff -u q.info v.info",
           scratch_dir());
    for (int i = 0; i < 3; i++) {
        char name[4] = {'b', (char)('0' + i), 0};
        char *a = qemu_map(scratch("cv.qcow2"), name), *b = qemu_map(scratch("cq.qcow2"), name);
        ck_assert_msg(strcmp(a, b) == 0, "%s:\n%s\n%s", name, a, b);
        free(a);
        free(b);
    }
    static const char *const bad[] = {
        "--bitmaps -O raw cs.qcow2 o.raw",
        "--bitmaps -O qcow2 cs.qcow2 cs.qcow2 o.qcow2",
        "--skip-broken-bitmaps -O qcow2 cs.qcow2 o.qcow2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct run *r = run("cd '%s' && %s convert %s", scratch_dir(), vdisk_bin(), bad[i]);
        char *ve = strdup(r->err);
        int vs = r->status;
        r = run("cd '%s' && { qemu-img convert %s 2>q.err; st=$?; "
                "sed 's/^qemu-img: /vdisk: /' q.err >&2; exit $st; }", scratch_dir(), bad[i]);
        ck_assert_msg(vs == r->status && strcmp(ve, r->err) == 0, "%s: vdisk %d %s, qemu %d %s",
                      bad[i], vs, ve, r->status, r->err);
        free(ve);
    }
}
END_TEST

/* The first bitmap table entry of IMG's first bitmap: its offset in the
 * file. */
static uint64_t first_table_entry(const char *img)
{
    uint8_t *h = read_file_at(img, 0, 4096);
    uint64_t pos = (uint64_t)h[100] << 24 | h[101] << 16 | h[102] << 8 | h[103];
    uint64_t dir = 0;
    while (pos + 32 <= 4096) {
        uint32_t t = (uint32_t)h[pos] << 24 | h[pos + 1] << 16 | h[pos + 2] << 8 | h[pos + 3];
        uint32_t l = (uint32_t)h[pos + 4] << 24 | h[pos + 5] << 16 | h[pos + 6] << 8 | h[pos + 7];
        if (t == 0x23852875u) {
            for (int i = 0; i < 8; i++)
                dir = dir << 8 | h[pos + 24 + i];
            break;
        }
        ck_assert_uint_ne(t, 0);
        pos += 8 + (l + 7) / 8 * 8;
    }
    free(h);
    ck_assert_uint_ne(dir, 0);
    uint8_t *e = read_file_at(img, dir, 8);
    uint64_t table = 0;
    for (int i = 0; i < 8; i++)
        table = table << 8 | e[i];
    free(e);
    return table;
}

static void put64(const char *img, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    int fd = open(img, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, b, 8, (off_t)off), 8);
    close(fd);
}

START_TEST(check_like_qemu)
{
    /* Bitmap data clusters past the end of the file, or on a cluster
     * something else uses: check reports what qemu-img check reports. */
    const char *img = scratch("k.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M && qemu-img bitmap --add '%s' b0", img, img);
    RUN_OK("%s io -c 'write 0 64k' '%s'", vdisk_bin(), img);
    uint64_t te = first_table_entry(img);
    static const uint64_t bad[] = {0x200000, 0x50000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *k = scratch(fmt("k%zu.qcow2", i));
        RUN_OK("cp '%s' '%s'", img, k);
        put64(k, te, bad[i]);
        struct run *r = run("%s check '%s'", vdisk_bin(), k);
        char *vo = strdup(r->out), *ve = strdup(r->err);
        int vs = r->status;
        r = run("qemu-img check '%s'", k);
        ck_assert_msg(vs == r->status && strcmp(vo, r->out) == 0 && strcmp(ve, r->err) == 0,
                      "entry 0x%llx: vdisk %d:\n%s%s\nqemu-img %d:\n%s%s",
                      (unsigned long long)bad[i], vs, vo, ve, r->status, r->out, r->err);
        ck_assert_int_eq(vs, 2);
        free(vo);
        free(ve);
    }
}
END_TEST

START_TEST(nbd_exports_bitmap)
{
    /* vdisk nbd -B NAME serves qemu:dirty-bitmap:NAME as qemu-nbd -B does. */
    const char *img = bitmap_image("n.qcow2");
    RUN_OK("%s io -c 'write 3M 100k' -c 'write 40M 512' '%s'", vdisk_bin(), img);
    const char *sock = scratch("v.sock"), *pid = scratch("v.pid");
    for (int i = 0; i < 3; i++) {
        char name[4] = {'b', (char)('0' + i), 0};
        RUN_OK("%s nbd -r -t -B %s -k '%s' --fork --pid-file '%s' '%s'", vdisk_bin(), name,
               sock, pid, img);
        struct run *r = run("nbdinfo --map=qemu:dirty-bitmap:%s 'nbd+unix:///?socket=%s'",
                            name, sock);
        char *v = strdup(r->out);
        int st = r->status;
        RUN_OK("kill $(cat '%s'); while kill -0 $(cat '%s') 2>/dev/null; do sleep 0.05; done; "
               "rm -f '%s'", pid, pid, sock);
        ck_assert_msg(st == 0, "nbdinfo: %s", v);
        char *q = qemu_map(img, name);
        ck_assert_msg(strcmp(v, q) == 0, "%s: vdisk nbd:\n%s\nqemu-nbd:\n%s", name, v, q);
        free(v);
        free(q);
    }
    struct run *r = run("%s nbd -r -B nope -k '%s' '%s'", vdisk_bin(), sock, img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: Bitmap 'nope' is not found\n");
}
END_TEST

START_TEST(library_errors)
{
    const char *img = bitmap_image("lib.qcow2");
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_bitmap_add(dev, "b0", 0, 0), -EEXIST);
    ck_assert_int_eq(vdisk_bitmap_add(dev, "x", 1000, 0), -EINVAL);
    ck_assert_int_eq(vdisk_bitmap_remove(dev, "nope"), -ENOENT);
    uint64_t len;
    bool dirty;
    ck_assert_int_eq(vdisk_bitmap_status(dev, "b0", 64 << 20, 1, &len, &dirty), -EINVAL);
    ck_assert_int_eq(vdisk_bitmap_status(dev, "b0", 0, 0, &len, &dirty), -EINVAL);
    ck_assert_int_eq(vdisk_bitmap_add(dev, "new", 512, VDISK_BITMAP_ADD_DISABLED), 0);
    ck_assert_int_eq(vdisk_bitmap_merge(dev, "new", dev, "b1"), 0);
    char buf[512] = {1};
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 512, 1536), 0);
    ck_assert_int_eq(vdisk_bitmap_status(dev, "b1", 0, 64 << 20, &len, &dirty), 0);
    ck_assert(dirty == true && len == 4096);
    ck_assert_int_eq(vdisk_bitmap_status(dev, "new", 0, 64 << 20, &len, &dirty), 0);
    ck_assert(dirty == false && len == 64 << 20); /* disabled */
    vdisk_close(dev);
    check_clean(img);
    /* A read-only device reads bitmaps and changes none. */
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    ck_assert_int_eq(vdisk_bitmap_add(dev, "y", 0, 0), -EROFS);
    ck_assert_int_eq(vdisk_bitmap_status(dev, "b1", 4096, 64 << 20, &len, &dirty), 0);
    ck_assert(dirty == false && len == (64 << 20) - 4096);
    vdisk_close(dev);
    /* Raw images have none. */
    RUN_OK("qemu-img create -q -f raw '%s' 1M", scratch("r.raw"));
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_msg(vdisk_open(&dev, scratch("r.raw"), o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    ck_assert_int_eq(vdisk_bitmap_add(dev, "z", 0, 0), -ENOTSUP);
    vdisk_close(dev);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    require_program("qemu-nbd");
    require_program("nbdinfo");
    Suite *s = suite_create("interop-bitmaps");
    TCase *tc = tcase_create("bitmaps");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, writes_set_the_bits_qemu_sets);
    tcase_add_test(tc, huge_sparse_bitmap);
    tcase_add_test(tc, qemu_bits_read_by_vdisk);
    tcase_add_test(tc, crash_leaves_bitmaps_in_use);
    tcase_add_test(tc, incremental_backup);
    tcase_add_test(tc, convert_bitmaps);
    tcase_add_test(tc, check_like_qemu);
    tcase_add_test(tc, nbd_exports_bitmap);
    tcase_add_test(tc, library_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
