/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/probe.c: format probing that a guest cannot turn against
 * the host (issue 13 items 3, 4 and 5).
 *
 *   - A raw image whose format was probed refuses writes that would put a
 *     format signature into block 0 (QEMU's raw driver does the same), on
 *     every path a write takes: pwrite, pwritev, aio, unaligned writes
 *     (read-modify-write), O_DIRECT, and vdisk io; write zeroes and discard
 *     stay allowed; format=raw lifts the guard.  The CLI prints QEMU's
 *     WARNING when it guesses raw for a writable open.
 *   - The exploit end to end: a guest's qcow2 header naming a host file as
 *     backing file, written over its probed raw disk, is refused, so the
 *     next open with the same command is still raw; vdisk serve confines
 *     backing files to the image's folder by default.
 *   - An image whose header names a backing file without its format (QEMU
 *     before 6.1) reads its qcow2 base as qcow2, not as raw, with one
 *     warning; info prints what qemu-img info prints.
 *   - QCOW and LUKS
 *     images are refused with the format's name, never read as raw; -f raw
 *     still opens them as raw.  A guest cannot write their signatures, nor
 *     those of the formats vdisk reads (qcow2, vdi, vpc, qed, vmdk, vhdx,
 *     bochs, cloop, parallels), into a probed raw disk.  DMG, which QEMU
 *     and vdisk know by the ".dmg" name (tests/interop/interop_dmg.c), has
 *     no signature in block 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define WARNING_FMT                                                                      \
    "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"        \
    "         Automatically detecting the format is dangerous for raw images, write "    \
    "operations on block 0 will be restricted.\n"                                        \
    "         Specify the 'raw' format explicitly to remove the restrictions."

#define REFUSED_FMT "%s: " REFUSED_MSG
/* The CLI's words: the library's without the call's name. */
#define REFUSED_MSG                                                                      \
    "%s: write to block 0 refused: the image's format was probed as raw, not "       \
    "given, and the new block 0 would make it probe as %s (give the format raw to "      \
    "allow such writes)"

/* ---- Helpers -------------------------------------------------------------- */

/* The warnings the library gave, one after the other. */
static char warnings[8192];
static unsigned nwarnings;

static void catch_warning(void *opaque, const char *msg)
{
    (void)opaque;
    size_t n = strlen(warnings);
    snprintf(warnings + n, sizeof warnings - n, "%s\n", msg);
    nwarnings++;
}

static void watch_warnings(void)
{
    warnings[0] = '\0';
    nwarnings = 0;
    vdisk_set_warning_handler(catch_warning, NULL);
}

/* Runs a command in the scratch folder (file names in messages stay short). */
#define IN_SCRATCH(cmd, ...) run("cd '%s' && " cmd, scratch_dir(), __VA_ARGS__)

static void require_tools(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
}

static int open_img(vdisk_dev **devp, const char *path, const char *format, bool rw,
                    const char *cache)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (format)
        ck_assert_int_eq(vdisk_options_set(o, "format", format), 0);
    if (!rw)
        ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    if (cache)
        ck_assert_int_eq(vdisk_options_set(o, "cache", cache), 0);
    int r = vdisk_open(devp, path, o);
    vdisk_options_free(o);
    return r;
}

static void make_raw(const char *path, size_t size)
{
    void *z = calloc(1, size);
    write_file(path, z, size);
    free(z);
}

/* The first LEN bytes of a qcow2 image naming BACKING as its backing file,
 * made by qemu-img (-u: the backing file is not opened). */
static uint8_t *qcow2_header(const char *backing, size_t len)
{
    const char *h = scratch("hdr.qcow2");
    unlink(h);
    RUN_OK("qemu-img create -q -f qcow2 -u -b '%s' -F raw '%s' 1M", backing, h);
    size_t n;
    uint8_t *data = read_file(h, &n);
    ck_assert_uint_ge(n, len);
    return data;
}

static const char *expected_warning(const char *name)
{
    return fmt(WARNING_FMT "\n", name);
}

/* ---- Item 3: block 0 of a probed raw image ------------------------------- */

static int aio_result;
static char aio_error[1024];

static void aio_done(void *user, int ret)
{
    (void)user;
    aio_result = ret;
    snprintf(aio_error, sizeof aio_error, "%s", vdisk_get_error());
}

START_TEST(guard_every_write_path)
{
    require_tools();
    const char *img = scratch("g.img");
    make_raw(img, 1 << 20);
    uint8_t *hdr = qcow2_header("/etc/passwd", 4096);
    watch_warnings();
    vdisk_dev *dev;
    ck_assert_int_eq(open_img(&dev, img, NULL, true, NULL), 0);
    ck_assert_str_eq(vdisk_get_format(dev), "raw");
    /* QEMU's warning, once, word for word. */
    ck_assert_uint_eq(nwarnings, 1);
    ck_assert_str_eq(warnings, expected_warning(img));
    char refused_pwrite[1024];
    snprintf(refused_pwrite, sizeof refused_pwrite, REFUSED_FMT, "vdisk_pwrite", img, "qcow2");

    /* Aligned, whole block and more. */
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 512, 0), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), refused_pwrite);
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 4096, 0), -EPERM);
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 4096 + 100, 0), -EPERM);
    /* The header spread over several buffers. */
    struct iovec v[3] = {{hdr, 1}, {hdr + 1, 7}, {hdr + 8, 4088}};
    ck_assert_int_eq(vdisk_pwritev(dev, v, 3, 0), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), fmt(REFUSED_FMT, "vdisk_pwritev", img, "qcow2"));
    /* Unaligned: the merged block is checked. */
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 8, 0), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), refused_pwrite);
    /* In two steps: the header without its magic is harmless, the magic on
     * top of it is not. */
    ck_assert_int_eq(vdisk_pwrite(dev, hdr + 4, 508, 4), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 4, 0), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), refused_pwrite);
    /* Asynchronous requests. */
    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 4), 0);
    struct iovec one = {hdr, 4096};
    aio_result = 1;
    ck_assert_int_eq(vdisk_aio_pwritev(q, &one, 1, 0, 0, aio_done, NULL), 0);
    while (aio_result == 1)
        ck_assert_int_ge(vdisk_queue_reap(q, 1, -1), 0);
    ck_assert_int_eq(aio_result, -EPERM);
    ck_assert_str_eq(aio_error, fmt(REFUSED_FMT, "vdisk_aio_pwritev", img, "qcow2"));
    vdisk_queue_free(q);
    /* Zeroes and discards cannot make a signature. */
    ck_assert_int_eq(vdisk_write_zeroes(dev, 0, 4096, 0), 0);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 2, 5, 0), 0);
    ck_assert_int_eq(vdisk_discard(dev, 0, 65536), 0);
    /* An MBR and a header in block 1 are fine. */
    uint8_t mbr[512] = {0xeb, 0x63, 0x90};
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    ck_assert_int_eq(vdisk_pwrite(dev, mbr, 512, 0), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 512, 512), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, mbr + 100, 300, 100), 0);
    uint8_t back[512];
    ck_assert_int_eq(vdisk_pread(dev, back, 512, 0), 0);
    assert_same_bytes(back, mbr, 512, 0, "block 0");
    vdisk_close(dev);

    /* O_DIRECT (cache=none), where the file system allows it. */
    int r = open_img(&dev, img, NULL, true, "none");
    if (r == 0) {
        ck_assert_int_eq(vdisk_pwrite(dev, hdr, 4096, 0), -EPERM);
        ck_assert_int_eq(vdisk_pwrite(dev, hdr, 8, 0), -EPERM);
        ck_assert_str_eq(vdisk_get_error(), refused_pwrite);
        vdisk_close(dev);
    } else {
        ck_assert_int_eq(r, -EINVAL);
    }
    size_t n;
    uint8_t *disk = read_file(img, &n);
    assert_same_bytes(disk, mbr, 512, 0, "block 0 after the refusals");
    free(disk);

    /* A read-only probed open: no warning (QEMU gives none either). */
    watch_warnings();
    ck_assert_int_eq(open_img(&dev, img, NULL, false, NULL), 0);
    vdisk_close(dev);
    ck_assert_uint_eq(nwarnings, 0);

    /* Requests in whole blocks, as QEMU does for a probed raw image: a
     * write into the tail of a 1000-byte file extends it to 1024 bytes
     * (1018 with format=raw), as with qemu-io. */
    uint8_t tail[1000];
    memset(tail, 0x77, sizeof tail);
    const char *t = scratch("t.raw");
    for (int given = 0; given < 2; given++) {
        write_file(t, tail, sizeof tail);
        ck_assert_int_eq(open_img(&dev, t, given ? "raw" : NULL, true, NULL), 0);
        ck_assert_int_eq(vdisk_pwrite(dev, tail, 8, 1010), 0);
        vdisk_close(dev);
        struct stat st;
        ck_assert_int_eq(stat(t, &st), 0);
        write_file(scratch("q.raw"), tail, sizeof tail);
        RUN_OK("qemu-io %s -c 'write -q 1010 8' '%s' 2>/dev/null", given ? "-f raw" : "",
               scratch("q.raw"));
        struct stat qt;
        ck_assert_int_eq(stat(scratch("q.raw"), &qt), 0);
        ck_assert_int_eq(st.st_size, given ? 1018 : 1024);
        ck_assert_int_eq(st.st_size, qt.st_size);
    }

    /* format=raw given: no guard, no warning. */
    watch_warnings();
    ck_assert_int_eq(open_img(&dev, img, "raw", true, NULL), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 4096, 0), 0);
    vdisk_close(dev);
    ck_assert_uint_eq(nwarnings, 0);
    free(hdr);
}
END_TEST

/* The first block of a file of each format vdisk does not read, and the
 * name it is refused with (or, for one that vdisk reads, the driver's
 * name, for the block 0 guard).  Made by qemu-img where it can, else by
 * hand. */
struct sample {
    const char *file;     /* in the scratch folder */
    const char *name;     /* "QCOW (qcow)" */
    const char *qemu_fmt; /* what qemu-img info calls it, or NULL */
};

static const struct sample samples[] = {
    {"s.vmdk", "vmdk", "vmdk"},              /* read by vdisk: guarded only */
    {"d.vmdk", "vmdk", "vmdk"},              /* text descriptor */
    {"cowd.vmdk", "vmdk", NULL},             /* "COWD" (ESX): vmdk's, refused at open */
    {"s.vhd", "vpc", "vpc"},                 /* read by vdisk: guarded only */
    {"s.vhdx", "vhdx", "vhdx"},              /* read by vdisk: guarded only */
    {"s.vdi", "vdi", "vdi"},                 /* read by vdisk: guarded only */
    {"s.qed", "qed", "qed"},                 /* read by vdisk: guarded only */
    {"s.parallels", "parallels", "parallels"}, /* read by vdisk: guarded only */
    {"s.qcow", "QCOW (qcow)", "qcow"},
    {"s.luks", "luks", "luks"},              /* read by vdisk (with its key): guarded only */
    {"s.bochs", "bochs", "bochs"},           /* read by vdisk: guarded only */
    {"s.cloop", "cloop", NULL},              /* read by vdisk: guarded only */
    {"s.dmg", "dmg", NULL},                  /* read by vdisk: known by its name */
};
#define NSAMPLES (sizeof samples / sizeof samples[0])
static bool luks_by_qemu;

static void make_samples(void)
{
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && qemu-img create -q -f vmdk s.vmdk 1M && "
           "qemu-img create -q -f vmdk -o subformat=monolithicFlat d.vmdk 1M && "
           "qemu-img create -q -f vpc s.vhd 1M && qemu-img create -q -f vhdx s.vhdx 1M && "
           "qemu-img create -q -f vdi s.vdi 1M && qemu-img create -q -f qed s.qed 1M && "
           "qemu-img create -q -f parallels s.parallels 1M && "
           "qemu-img create -q -f qcow s.qcow 1M", d);
    uint8_t b[1024] = {0};
    /* LUKS: qemu-img times its key derivation, which fails on a busy
     * machine ("Unable to get accurate CPU usage"): then a LUKS1 header by
     * hand, which qemu-img cannot open. */
    luks_by_qemu = run("cd '%s' && qemu-img create -q -f luks --object secret,id=k,data=pw "
                       "-o key-secret=k,iter-time=10 s.luks 1M", d)->status == 0;
    if (!luks_by_qemu) {
        memcpy(b, "LUKS\xba\xbe\0\1aes", 11);
        write_file(scratch("s.luks"), b, 1024);
        memset(b, 0, sizeof b);
    }
    /* VMware ESX's sparse extent: just the magic. */
    memcpy(b, "COWD", 4);
    le32_store(b + 4, 1);
    write_file(scratch("cowd.vmdk"), b, 1024);
    /* bochs: a growing redolog of 4 KiB, one extent, catalog at 512. */
    memset(b, 0, sizeof b);
    strcpy((char *)b, "Bochs Virtual HD Image");
    strcpy((char *)b + 32, "Redolog");
    strcpy((char *)b + 48, "Growing");
    le32_store(b + 64, 0x00020000); /* version */
    le32_store(b + 68, 512);        /* header size */
    le32_store(b + 72, 1);          /* catalog entries */
    le32_store(b + 76, 512);        /* bitmap size */
    le32_store(b + 80, 4096);       /* extent size */
    le64_store(b + 88, 4096);       /* disk size */
    le32_store(b + 512, 0xffffffff); /* the extent is not allocated */
    write_file(scratch("s.bochs"), b, 1024);
    /* cloop: the shell-script header of version 2.0. */
    memset(b, 0, sizeof b);
    strcpy((char *)b, "#!/bin/sh\n#V2.0 Format\n"
                      "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n");
    write_file(scratch("s.cloop"), b, 1024);
    /* DMG: QEMU knows it by its name; a "koly" trailer at the end. */
    memset(b, 0, sizeof b);
    memcpy(b + 512, "koly", 4);
    be32_store(b + 516, 4);
    be32_store(b + 520, 512);
    write_file(scratch("s.dmg"), b, 1024);
}

START_TEST(foreign_formats_refused)
{
    require_tools();
    make_samples();
    for (size_t i = 0; i < NSAMPLES; i++) {
        const struct sample *s = &samples[i];
        if (!strchr(s->name, '('))
            continue; /* a format vdisk reads */
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s images are not supported", s->file, s->name);
        /* QEMU reads it as that format. */
        if (s->qemu_fmt && (luks_by_qemu || strcmp(s->qemu_fmt, "luks") != 0)) {
            char *want = fmt("\"format\": \"%s\"", s->qemu_fmt);
            ck_assert_msg(strstr(run("cd '%s' && qemu-img info --output=json '%s'",
                                     scratch_dir(), s->file)->out, want),
                          "qemu-img does not call %s %s", s->file, s->qemu_fmt);
        }
        /* The library. */
        vdisk_dev *dev;
        ck_assert_int_eq(open_img(&dev, scratch(s->file), NULL, false, NULL), -ENOTSUP);
        ck_assert_str_eq(vdisk_get_error(),
                         fmt("vdisk_open: %s: %s images are not supported", scratch(s->file),
                             s->name));
        /* info, convert (no output left behind), io. */
        struct run *r = IN_SCRATCH("'%s' info '%s'", vdisk_bin(), s->file);
        ck_assert_int_eq(r->status, 1);
        ck_assert_str_eq(r->out, "");
        ck_assert_str_eq(r->err, fmt("vdisk: %s\n", msg));
        r = IN_SCRATCH("'%s' convert -O raw '%s' out.raw", vdisk_bin(), s->file);
        ck_assert_int_eq(r->status, 1);
        ck_assert_str_eq(r->err, fmt("vdisk: %s\n", msg));
        ck_assert_int_ne(access(scratch("out.raw"), F_OK), 0);
        r = IN_SCRATCH("'%s' io -c 'read 0 512' '%s'", vdisk_bin(), s->file);
        ck_assert_int_eq(r->status, 1);
        ck_assert_str_eq(r->err, fmt("vdisk: %s\n", msg));
        /* -f raw opens anything as raw. */
        r = IN_SCRATCH("'%s' info -f raw '%s'", vdisk_bin(), s->file);
        ck_assert_msg(r->status == 0, "%s: %s", s->file, r->err);
        ck_assert_msg(strstr(r->out, "file format: raw\n"), "%s", r->out);
        size_t n;
        uint8_t *want = read_file(scratch(s->file), &n);
        ck_assert_int_eq(open_img(&dev, scratch(s->file), "raw", false, NULL), 0);
        uint8_t *got = malloc(n);
        ck_assert_int_eq(vdisk_pread(dev, got, n, 0), 0);
        assert_same_bytes(got, want, n, 0, s->file);
        vdisk_close(dev);
        free(got);
        free(want);
    }
}
END_TEST

/* A guest cannot write any of these signatures into its probed raw disk. */
START_TEST(foreign_signatures_guarded)
{
    require_tools();
    make_samples();
    const char *img = scratch("g.img");
    make_raw(img, 1 << 20);
    vdisk_set_warning_handler(catch_warning, NULL);
    vdisk_dev *dev;
    ck_assert_int_eq(open_img(&dev, img, NULL, true, NULL), 0);
    for (size_t i = 0; i < NSAMPLES; i++) {
        const struct sample *s = &samples[i];
        if (strcmp(s->name, "dmg") == 0)
            continue; /* known by its file name, not by its bytes */
        size_t n;
        uint8_t *data = read_file(scratch(s->file), &n);
        uint8_t block[512] = {0};
        memcpy(block, data, n < 512 ? n : 512);
        free(data);
        ck_assert_int_eq(vdisk_pwrite(dev, block, 512, 0), -EPERM);
        ck_assert_str_eq(vdisk_get_error(), fmt(REFUSED_FMT, "vdisk_pwrite", img, s->name));
    }
    /* qcow2 of any version from 2: QEMU probes them all as qcow2. */
    uint8_t block[512] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 4};
    ck_assert_int_eq(vdisk_pwrite(dev, block, 512, 0), -EPERM);
    vdisk_close(dev);
    /* ... and opening one fails on its version instead of reading it raw. */
    write_file(img, block, 512);
    ck_assert_int_eq(open_img(&dev, img, NULL, false, NULL), -ENOTSUP);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: Unsupported qcow2 version 4");
}
END_TEST

/* The exploit of issue 13: the guest's header names a host file. */
START_TEST(exploit_end_to_end)
{
    require_tools();
    /* The host file, outside the VM's folder. */
    const char *secret = scratch("secret.txt");
    uint8_t s[65536];
    memset(s, 'S', sizeof s);
    write_file(secret, s, sizeof s);
    ck_assert_int_eq(mkdir(scratch("vm"), 0755), 0);
    const char *disk = scratch("vm/disk.img");
    make_raw(disk, 1 << 20);
    uint8_t *hdr = qcow2_header(secret, 4096);
    write_file(scratch("hdr4k"), hdr, 4096);

    /* Through the library, as the virtio models write. */
    watch_warnings();
    vdisk_dev *dev;
    ck_assert_int_eq(open_img(&dev, disk, NULL, true, NULL), 0);
    ck_assert_int_eq(vdisk_pwrite(dev, hdr, 4096, 0), -EPERM);
    vdisk_close(dev);
    /* The same command again: still raw, the host file out of reach. */
    ck_assert_int_eq(open_img(&dev, disk, NULL, true, NULL), 0);
    ck_assert_str_eq(vdisk_get_format(dev), "raw");
    uint8_t back[65536];
    ck_assert_int_eq(vdisk_pread(dev, back, sizeof back, 0), 0);
    for (size_t i = 0; i < sizeof back; i++)
        ck_assert_msg(back[i] == 0, "byte %zu is %#x", i, back[i]);
    vdisk_close(dev);

    /* Through vdisk io: the write fails with QEMU's warning and (--debug)
     * the reason. */
    struct run *r = IN_SCRATCH("cd vm && '%s' io --debug -c 'write -s ../hdr4k 0 4k' disk.img",
                               vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "write failed: Operation not permitted\n");
    ck_assert_str_eq(r->err, fmt("%s%s\n", expected_warning("disk.img"),
                                 fmt(REFUSED_FMT, "vdisk_pwrite", "disk.img", "qcow2")));
    r = IN_SCRATCH("cd vm && '%s' info disk.img", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, "file format: raw\n"), "%s", r->out);
    /* qemu-io refuses it the same way. */
    r = IN_SCRATCH("cd vm && qemu-io -c 'write -s ../hdr4k 0 4k' disk.img%s", "");
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "write failed: Operation not permitted\n");

    /* With the format given the write is the user's choice... */
    r = IN_SCRATCH("cd vm && '%s' io -f raw -c 'write -q -s ../hdr4k 0 4k' disk.img",
                   vdisk_bin());
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->err, "");
    /* ... and vdisk serve (like vdisk-vmm) still keeps the host file out of
     * reach when the format is probed: backing-confine is on by default. */
    r = IN_SCRATCH("cd vm && '%s' serve --vhost-user-blk vu.sock disk.img", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: disk.img: the backing file name '%s' "
                                 "leads outside the image's folder, which "
                                 "backing-confine=on forbids\n", secret));
    ck_assert_int_ne(access(scratch("vm/vu.sock"), F_OK), 0);
    /* --backing-confine=off: served (the socket appears; SIGTERM ends it
     * with status 0). */
    r = IN_SCRATCH("cd vm && { '%s' serve -q --backing-confine=off --vhost-user-blk vu.sock "
                   "disk.img & pid=$!; i=0; while [ ! -S vu.sock ] && [ $i -lt 600 ] && "
                   "kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done; "
                   "[ -S vu.sock ] && echo served; kill -TERM $pid; wait $pid; }",
                   vdisk_bin());
    ck_assert_msg(r->status == 0 && strcmp(r->out, "served\n") == 0, "%d %s %s", r->status,
                  r->out, r->err);
    r = IN_SCRATCH("'%s' serve --backing-confine=maybe --vhost-user-blk x.sock x.img",
                   vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: serve: --backing-confine takes on or off, not 'maybe'\n");
    r = run("'%s' serve --help", vdisk_bin());
    ck_assert_msg(strstr(r->out, "--backing-confine=on|off"), "%s", r->out);
    free(hdr);
}
END_TEST

/* ---- Item 4: backing files named without their format -------------------- */

/* Removes the backing format extension from a qcow2 image's header, as
 * images made by QEMU before 6.1 have none. */
static void drop_backing_format(const char *path)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t h[65536];
    ck_assert_int_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    uint32_t pos = be32_load(h + 100), out = pos;
    uint8_t kept[65536];
    size_t nk = 0;
    bool dropped = false;
    for (;;) {
        ck_assert_uint_lt(pos + 8, sizeof h);
        uint32_t type = be32_load(h + pos), len = be32_load(h + pos + 4);
        if (type == 0)
            break;
        size_t whole = 8 + ((len + 7u) & ~7u);
        if (type == 0xe2792aca)
            dropped = true;
        else {
            memcpy(kept + nk, h + pos, whole);
            nk += whole;
        }
        pos += (uint32_t)whole;
    }
    ck_assert(dropped);
    memcpy(h + out, kept, nk);
    memset(h + out + nk, 0, pos + 8 - out - nk);
    ck_assert_int_eq(pwrite(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
}

static const char *probe_warning(const char *img, const char *backing, const char *found)
{
    return fmt("vdisk: warning: %s: the image does not record the format of its backing file "
               "'%s'; probing found %s\n", img, backing, found);
}

START_TEST(backing_format_probed)
{
    require_tools();
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 base.qcow2 1M && "
           "qemu-io -f qcow2 -c 'write -q -P 0x5a 0 64k' base.qcow2 && "
           "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 o.qcow2 && "
           "qemu-io -f qcow2 -c 'write -q -P 0x33 128k 4k' o.qcow2", scratch_dir());
    drop_backing_format(scratch("o.qcow2"));
    /* qemu-img sees no backing format either. */
    struct run *r = IN_SCRATCH("qemu-img info o.qcow2%s", "");
    ck_assert_int_eq(r->status, 0);
    ck_assert_ptr_null(strstr(r->out, "backing file format"));
    char *qinfo = strdup(r->out);

    /* The base's data, not its header, with one warning. */
    r = IN_SCRATCH("'%s' io -r -c 'read -q -P 0x5a 0 64k' -c 'read -q -P 0x33 128k 4k' "
                   "o.qcow2", vdisk_bin());
    ck_assert_msg(r->status == 0, "%s%s", r->out, r->err);
    ck_assert_str_eq(r->err, probe_warning("o.qcow2", "base.qcow2", "qcow2"));
    /* info prints what qemu-img info prints; it does not open the backing
     * file (as qemu-img info does not), so nothing is probed; with
     * --backing-chain it is, with the warning on stderr. */
    r = IN_SCRATCH("'%s' info o.qcow2", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, qinfo);
    ck_assert_str_eq(r->err, "");
    r = IN_SCRATCH("'%s' info --backing-chain o.qcow2", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->err, probe_warning("o.qcow2", "base.qcow2", "qcow2"));
    free(qinfo);
    const char *variants[] = {"--output=json", "--backing-chain",
                              "--backing-chain --output=json"};
    for (size_t i = 0; i < 3; i++) {
        r = IN_SCRATCH("qemu-img info %s o.qcow2", variants[i]);
        ck_assert_int_eq(r->status, 0);
        char *q = strdup(r->out);
        r = IN_SCRATCH("'%s' info %s o.qcow2", vdisk_bin(), variants[i]);
        ck_assert_int_eq(r->status, 0);
        ck_assert_str_eq(r->out, q);
        free(q);
    }
    /* convert gives qemu-img's bytes. */
    RUN_OK("cd '%s' && '%s' convert -O raw o.qcow2 v.raw && qemu-img convert -O raw o.qcow2 "
           "q.raw && cmp v.raw q.raw", scratch_dir(), vdisk_bin());

    /* The library: the warning goes to the handler, once per process. */
    watch_warnings();
    vdisk_dev *dev;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(open_img(&dev, scratch("o.qcow2"), NULL, false, NULL), 0);
        ck_assert_str_eq(vdisk_get_format(vdisk_get_backing(dev)), "qcow2");
        vdisk_close(dev);
    }
    ck_assert_uint_eq(nwarnings, 1);
    ck_assert_str_eq(warnings, probe_warning(scratch("o.qcow2"), "base.qcow2", "qcow2"));
    /* backing.format given: nothing to probe, nothing to say. */
    watch_warnings();
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "backing.format", "qcow2"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_int_eq(vdisk_open(&dev, scratch("o.qcow2"), o), 0);
    vdisk_options_free(o);
    vdisk_close(dev);
    ck_assert_uint_eq(nwarnings, 0);
}
END_TEST

/* A raw base probed so keeps the block-0 guard: commit cannot copy a
 * guest's header into it (qemu-img commit fails the same way). */
START_TEST(backing_raw_probed_guarded)
{
    require_tools();
    const char *d = scratch_dir();
    make_raw(scratch("base.raw"), 1 << 20);
    RUN_OK("cd '%s' && qemu-io -f raw -c 'write -q -P 0x44 64k 64k' base.raw && "
           "qemu-img create -q -f qcow2 -b base.raw -F raw o.qcow2", d);
    drop_backing_format(scratch("o.qcow2"));
    struct run *r = IN_SCRATCH("'%s' io -r -c 'read -q -P 0 0 64k' -c 'read -q -P 0x44 64k 64k' "
                               "o.qcow2", vdisk_bin());
    ck_assert_msg(r->status == 0, "%s%s", r->out, r->err);
    ck_assert_str_eq(r->err, probe_warning("o.qcow2", "base.raw", "raw"));
    /* The guest writes a header into the overlay (a qcow2: allowed)... */
    uint8_t *hdr = qcow2_header("/etc/passwd", 4096);
    write_file(scratch("hdr4k"), hdr, 4096);
    free(hdr);
    RUN_OK("cd '%s' && '%s' io -c 'write -q -s hdr4k 0 4k' o.qcow2", d, vdisk_bin());
    RUN_OK("cp '%s' '%s'", scratch("o.qcow2"), scratch("o2.qcow2"));
    /* ... and commit refuses to put it into the probed raw base. */
    r = IN_SCRATCH("'%s' commit o.qcow2", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("%s%s" "vdisk: " REFUSED_MSG "\n",
                                 probe_warning("o.qcow2", "base.raw", "raw"),
                                 expected_warning("base.raw"), "base.raw", "qcow2"));
    r = IN_SCRATCH("qemu-img commit o2.qcow2%s", "");
    ck_assert_int_eq(r->status, 1);
    size_t n;
    uint8_t *base = read_file(scratch("base.raw"), &n);
    for (size_t i = 0; i < 65536; i++)
        ck_assert_msg(base[i] == 0, "base byte %zu is %#x", i, base[i]);
    free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("probe");
    TCase *tc = tcase_create("probe");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, guard_every_write_path);
    tcase_add_test(tc, foreign_formats_refused);
    tcase_add_test(tc, foreign_signatures_guarded);
    tcase_add_test(tc, exploit_end_to_end);
    tcase_add_test(tc, backing_format_probed);
    tcase_add_test(tc, backing_raw_probed_guarded);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
