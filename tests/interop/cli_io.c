/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_io.c: vdisk io against qemu-io 7.2 (issue 21, item 3).
 * Each case runs qemu-io and vdisk io with the same commands on copies of
 * the same raw and qcow2 images and compares their standard output (the
 * timings of the statistics lines masked), their exit statuses, standard
 * error where asked (each "qemu-io: " read as "vdisk: ") and the images
 * left (qemu-img compare).  One case per command or behaviour.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *const formats[] = {"raw", "qcow2"};

/* The base images b.raw and b.qcow2: 1 MiB, the bytes 64k..128k set to 1,
 * written by qemu-io. */
static void make_images(void)
{
    RUN_OK("cd '%s' && qemu-img create -q -f raw b.raw 1M && qemu-img create -q -f qcow2 "
           "b.qcow2 1M && qemu-io -f raw -c 'write -q -P 1 64k 64k' b.raw && "
           "qemu-io -f qcow2 -c 'write -q -P 1 64k 64k' b.qcow2", scratch_dir());
}

/* S with the times and rates of qemu-io's statistics lines cut: after
 * " ops;" in "N bytes, 1 ops; TIME (RATE/sec and OPS ops/sec)", and after
 * the second comma in -C's "BYTES,OPS,TIME,RATE,OPS". */
static char *mask_times(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        const char *ops = NULL;
        for (const char *p = s; p + 5 <= s + len && !ops; p++)
            if (strncmp(p, " ops;", 5) == 0)
                ops = p + 5;
        size_t keep = len;
        if (ops) {
            keep = (size_t)(ops - s);
        } else {
            /* digits ',' digits ',' then a time with ':' */
            size_t i = 0, commas = 0;
            while (i < len && ((s[i] >= '0' && s[i] <= '9') || s[i] == ',') && commas < 2)
                commas += s[i++] == ',';
            if (commas == 2 && i > 3 && memchr(s + i, ':', len - i))
                keep = i;
        }
        memcpy(o, s, keep);
        o += keep;
        if (nl)
            *o++ = '\n';
        s += len + (nl ? 1 : 0);
    }
    *o = 0;
    return out;
}

static char *qemu_as_vdisk(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    while (*s) {
        if (strncmp(s, "qemu-io: ", 9) == 0) {
            o = stpcpy(o, "vdisk: ");
            s += 9;
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
    return out;
}

enum {
    SAME_STDERR = 1,  /* standard error must match too */
    NO_IMAGE_CHECK = 2, /* the images may differ (nothing to compare) */
};

/* qemu-io -f FMT ARGS q.FMT and vdisk io -f FMT ARGS v.FMT (copies of
 * b.FMT), for raw and qcow2: the same masked standard output and exit
 * status, and the same image after. */
static void same_as_qemu_io(unsigned flags, const char *args)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        const char *f = formats[i];
        RUN_OK("cd '%s' && cp b.%s q.%s && cp b.%s v.%s", scratch_dir(), f, f, f, f);
        struct run *r = run("cd '%s' && qemu-io -f %s %s q.%s", scratch_dir(), f, args, f);
        int qst = r->status;
        char *qout = mask_times(r->out), *qerr = qemu_as_vdisk(r->err);
        r = run("cd '%s' && '%s' io -f %s %s v.%s", scratch_dir(), vdisk_bin(), f, args, f);
        char *vout = mask_times(r->out);
        ck_assert_msg(strcmp(qout, vout) == 0, "%s: %s: stdout differs\nqemu-io:\n%s\nvdisk:\n%s",
                      f, args, qout, vout);
        ck_assert_msg(qst == r->status, "%s: %s: exit status: qemu-io %d, vdisk %d", f, args,
                      qst, r->status);
        if (flags & SAME_STDERR)
            ck_assert_msg(strcmp(qerr, r->err) == 0,
                          "%s: %s: stderr differs\nqemu-io:\n%s\nvdisk:\n%s", f, args, qerr,
                          r->err);
        free(qout);
        free(qerr);
        free(vout);
        if (!(flags & NO_IMAGE_CHECK))
            RUN_OK("cd '%s' && qemu-img compare -q -f %s -F %s q.%s v.%s", scratch_dir(), f, f,
                   f, f);
    }
}

/* S with every FROM replaced by TO (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    char *out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1), *o = out;
    for (const char *p; (p = strstr(s, from)); s = p + fl) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, to, tl);
        o += tl;
    }
    strcpy(o, s);
    return out;
}

/* TEMPLATE with @FMT@ as F, @IMG@ as IMG and @IO@ as IO. */
static char *expand(const char *template, const char *f, const char *img, const char *io)
{
    char *a = replace_all(template, "@FMT@", f);
    char *b = replace_all(a, "@IMG@", img);
    char *c = replace_all(b, "@IO@", io);
    free(a);
    free(b);
    return c;
}

/*
 * The shell command CMD run with qemu-io and with vdisk as qemu-io
 * (VDISK_PROG=qemu-io, as the iotests run it: messages start "qemu-io: ")
 * for @IO@, in the scratch folder, for raw and qcow2 (@FMT@), each on its
 * copy of SRC (@FMT@ expanded; the copy is @IMG@): the same masked
 * standard output, standard error (with SAME_STDERR; the copy's name
 * read as the other's), exit status, and images after.
 */
static void same_cmd(unsigned flags, const char *src, const char *cmd)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        const char *f = formats[i];
        char *from = expand(src, f, "", "");
        char *qimg = fmt("q-%s", from), *vimg = NULL;
        qimg = strdup(qimg);
        vimg = strdup(fmt("v-%s", from));
        RUN_OK("cd '%s' && cp %s %s && cp %s %s", scratch_dir(), from, qimg, from, vimg);
        char *vio = strdup(fmt("VDISK_PROG=qemu-io '%s'", vdisk_bin()));
        char *qcmd = expand(cmd, f, qimg, "qemu-io"), *vcmd = expand(cmd, f, vimg, vio);
        struct run *r = run("cd '%s' && %s", scratch_dir(), qcmd);
        int qst = r->status;
        char *qo = mask_times(r->out);
        char *qout = replace_all(qo, qimg, vimg), *qerr = replace_all(r->err, qimg, vimg);
        r = run("cd '%s' && %s", scratch_dir(), vcmd);
        char *vout = mask_times(r->out);
        ck_assert_msg(strcmp(qout, vout) == 0, "%s: %s: stdout differs\nqemu-io:\n%s\nvdisk:\n%s",
                      f, vcmd, qout, vout);
        ck_assert_msg(qst == r->status, "%s: %s: exit status: qemu-io %d, vdisk %d", f, vcmd,
                      qst, r->status);
        if (flags & SAME_STDERR)
            ck_assert_msg(strcmp(qerr, r->err) == 0,
                          "%s: %s: stderr differs\nqemu-io:\n%s\nvdisk:\n%s", f, vcmd, qerr,
                          r->err);
        if (!(flags & NO_IMAGE_CHECK))
            RUN_OK("cd '%s' && qemu-img compare -q %s %s", scratch_dir(), qimg, vimg);
        free(from);
        free(qimg);
        free(vimg);
        free(vio);
        free(qcmd);
        free(vcmd);
        free(qo);
        free(qout);
        free(qerr);
        free(vout);
    }
}

/* The commands both tools read and write with, and which ones vdisk's
 * earlier version already had, still as qemu-io prints them. */
START_TEST(read_write_discard)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'read -P 1 64k 64k' -c 'read -P 1 -s 0 -l 512 64k 1k' "
                    "-c 'read -v 64k 20' -c 'read -C 0 1' -c 'r -q 0 1' -c 'read -P 2 64k 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'read 1M 1' -c 'read 0 3G' -c 'read x 1' -c 'read 0' "
                    "-c 'read -z 0 1' -c 'read -s 1 0 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'write -P 9 0 4k' -c 'write -z 64k 4k' -c 'write -z -u "
                    "68k 4k' -c 'write -f 8k 1' -c 'write 1M 1' -c 'w -q 0 1' -c 'write -C 4k 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'write -b -z 0 1' -c 'write -f -c 0 64k' -c 'write -n 0 1' "
                    "-c 'write -u -z -P 1 0 1' -c 'write -z -s x 0 1' -c 'write -u -P 1 0 1' "
                    "-c 'write -b 1 512' -c 'write -b 0 1' -c 'read -b 1 1' -c 'read -b 0 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'discard 64k 64k' -c 'discard 1M 1' -c 'discard -q 0 512' "
                    "-c 'discard -C 0 64k' -c map -c flush -c length -c 'map x' -c 'flush 1'");
}
END_TEST

/* readv and writev: several lengths, -P, -C, -q, -v, and their errors. */
START_TEST(readv_writev)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'writev -P 5 512 1k 1k' -c 'readv -P 5 512 1k 1k' "
                    "-c 'readv -P 6 512 1k 1k' -c 'readv -C 0 512 512' -c 'readv -v 0 16 16'");
    same_as_qemu_io(SAME_STDERR, "-c 'readv 0 1' -c 'readv 0 0' -c 'readv 0' -c readv "
                    "-c 'writev 1M 512' -c 'readv 1048064 512 512'");
    same_as_qemu_io(SAME_STDERR, "-c 'readv 0 512 x' -c 'readv -P 300 0 512' -c 'readv -z 0 1' "
                    "-c 'writev -z 0 512' -c 'readv 0 3G' -c 'readv 0 2G 2G' "
                    "-c 'readv 0 1G 1G 1G'");
    same_as_qemu_io(SAME_STDERR, "-c 'writev -q -P 7 -C 0 512' -c 'writev -f -P 7 4k 512 1k 3' "
                    "-c 'read -P 7 0 512' -c 'readv -q -P 7 4k 512 1k 3' "
                    "-c 'writev -P 3 60k 4k 4k 4k' -c 'readv -P 3 60k 12k'");
}
END_TEST

/* aio_read, aio_write and aio_flush: what each completion prints, at
 * aio_flush and at the end; failures and pattern mismatches do not fail
 * the command. */
START_TEST(aio)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'aio_write -P 3 0 512' -c aio_flush -c 'aio_read -P 3 0 "
                    "512' -c aio_flush -c 'aio_read -P 4 0 512 3' -c aio_flush "
                    "-c 'aio_read -v 0 16'");
    same_as_qemu_io(SAME_STDERR, "-c 'aio_read 1M 512' -c aio_flush -c 'aio_read -i 0 512' "
                    "-c 'aio_write -i 0 x' -c 'aio_write 1M 512' -c aio_flush "
                    "-c 'aio_write -z 0 3G' -c aio_flush -c 'aio_write -z 0 x' "
                    "-c 'aio_write -z 0 512 512'");
    same_as_qemu_io(SAME_STDERR, "-c 'aio_write -z -u 64k 4k' -c aio_flush -c 'aio_write -u 0 "
                    "512' -c 'aio_write -q -C -P 6 4k 1k 1k' -c aio_flush -c 'read -P 6 4k 2k' "
                    "-c 'aio_read 0' -c 'aio_flush 1'");
    /* A completion comes after the commands that do not wait for it. */
    same_as_qemu_io(SAME_STDERR, "-c 'aio_write -P 1 0 512' -c length -c 'read -q 0 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'aio_write -P 1 0 512' -c flush -c length");
    same_as_qemu_io(SAME_STDERR, "-c 'aio_write -P 1 0 512' -c 'sleep 100' -c length");
    same_as_qemu_io(SAME_STDERR, "-c 'aio_read -P 1 64k 512' -c close -c 'help quit'");
}
END_TEST

/* alloc OFF [COUNT]: "N/N bytes allocated at offset X". */
START_TEST(alloc_cmd)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'alloc 0' -c 'alloc 0 1M' -c 'alloc 512 4k' -c 'alloc 1M' "
                    "-c 'alloc 1M 512' -c 'alloc 2M' -c 'alloc 100 1' -c 'alloc 0 0' "
                    "-c 'alloc 0x10000 64k' -c 'alloc 60k 8k' -c 'alloc 0 3G'");
    same_as_qemu_io(SAME_STDERR, "-c 'alloc x' -c 'alloc 0 1 2' -c 'alloc 0 -1' -c 'alloc -1' "
                    "-c alloc");
    same_as_qemu_io(SAME_STDERR, "-c 'discard 64k 64k' -c 'alloc 0 1M' -c 'write -z 0 64k' "
                    "-c 'alloc 0 1M'");
}
END_TEST

/* info: format name, cluster size, vm state offset, format-specific. */
START_TEST(info_cmd)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c info -c 'info x'");
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 -o cluster_size=4k,compat=0.10 b.qcow2 3M && "
           "qemu-img create -q -f raw b.raw 3M", scratch_dir());
    same_as_qemu_io(SAME_STDERR, "-c info");
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 -o cluster_size=2M b.qcow2 5G",
           scratch_dir());
    same_as_qemu_io(SAME_STDERR, "-c info");
    /* QEMU's null drivers: the name twice (format and protocol), then the
     * command fails without a word (iotest 133). */
    static const char *const nulls[] = {
        "-f null-co -c info null-co://",
        "-c info \"json:{'driver': 'null-co', 'size': 65536}\"",
        "-f null-co -c reopen -c info \"json:{'driver': 'null-co', 'size': 65536}\"",
        "-f null-aio -c info null-aio://",
    };
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
        struct run *q = run("qemu-io %s", nulls[i]);
        int qst = q->status;
        char *qout = strdup(q->out), *qerr = strdup(q->err);
        struct run *v = run("'%s' io %s", vdisk_bin(), nulls[i]);
        ck_assert_msg(!strcmp(qout, v->out) && !strcmp(qerr, v->err) && qst == v->status,
                      "%s:\nqemu-io (%d): %s%s\nvdisk (%d): %s%s", nulls[i], qst, qout, qerr,
                      v->status, v->out, v->err);
        free(qout);
        free(qerr);
    }
}
END_TEST

/* truncate [-m MODE] SIZE, and length after it. */
START_TEST(truncate_cmd)
{
    make_images();
    same_as_qemu_io(0, "-c 'truncate 2M' -c length -c 'truncate 512k' -c length "
                    "-c 'truncate x' -c 'truncate -m full 3M' -c length -c 'truncate -m bad 3M' "
                    "-c truncate -c 'truncate 1 2' -c 'truncate -x 1' -c 't 1M' -c l");
    same_as_qemu_io(0, "-c 'truncate 1536k' -c length -c 'truncate 100' -c length");
}
END_TEST

START_TEST(sleep_cmd)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'sleep 10' -c 'sleep x' -c sleep -c 'sleep 1 2' "
                    "-c 'sleep -1' -c 'sleep 0x5'");
}
END_TEST

/* help and help CMD, as qemu-io lists them (less the commands vdisk io
 * does not have: abort, break and the like). */
START_TEST(help_cmd)
{
    make_images();
    struct run *r = run("cd '%s' && qemu-io -f raw -c help b.raw | grep -v '^abort '",
                        scratch_dir());
    ck_assert_int_eq(r->status, 0);
    char *q = strdup(r->out);
    r = run("cd '%s' && '%s' io -f raw -c help b.raw", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(q, r->out);
    free(q);
    static const char *const cmds[] = {
        "r", "w", "read", "write", "readv", "writev", "aio_read", "aio_write", "aio_flush",
        "discard", "flush", "length", "map", "alloc", "info", "truncate", "sleep", "open", "o",
        "close", "c", "quit", "q", "?", "help", "l", "t", "nosuch", "reopen", "sigraise",
        "break", "remove_break", "resume", "wait_break",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        same_as_qemu_io(SAME_STDERR, fmt("-c 'help %s'", cmds[i]));
    same_as_qemu_io(SAME_STDERR, "-c 'help x y'");
}
END_TEST

/* open and close: commands without an image, a second open, -r, -o
 * driver=FMT. */
START_TEST(open_close)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c close -c length -c 'read 0 1' -c info -c 'open -o "
                    "driver=raw b.raw' -c info -c 'read -P 1 64k 64k' -c 'open b.raw' -c close "
                    "-c close");
    same_as_qemu_io(SAME_STDERR, "-c close -c 'open -r -o driver=qcow2 b.qcow2' -c 'write 0 1' "
                    "-c 'writev 0 1' -c 'aio_write 0 1' -c 'discard 0 1' -c 'truncate 1' "
                    "-c 'read -P 1 64k 1' -c open -c 'open a b' -c 'open -x y'");
    same_as_qemu_io(0, "-c close -c 'open -o driver=raw nosuch' -c length");
}
END_TEST

/* A read-only image refuses the writing commands before they run. */
START_TEST(read_only)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-r -c 'write 0 1' -c 'writev 0 1' -c 'aio_write 0 1' "
                    "-c 'discard 0 1' -c 'truncate 2M' -c 'read -P 1 64k 1' -c 'write -z 0 1'");
}
END_TEST

/* quit (and q) ends the commands; an unknown command fails. */
START_TEST(quit_and_unknown)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'read 0 1' -c quit -c 'read 0 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'aio_write -P 1 0 1' -c q -c 'read 0 1'");
    same_as_qemu_io(SAME_STDERR, "-c nosuch -c 'read 0 1' -c ''");
}
END_TEST

/* A failed request: qemu-io's line alone, no library message on stderr
 * (it comes with --debug). */
START_TEST(errors)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'read 1M 512' -c 'write 1M 1' -c 'discard 2M 1' "
                    "-c 'readv 1M 1' -c 'writev 1M 1'");
    struct run *r = run("cd '%s' && '%s' io --debug -f raw -c 'read 1M 512' b.raw", scratch_dir(),
                        vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "read failed: Input/output error\n");
    ck_assert_msg(strstr(r->err, "beyond the end of the device"), "%s", r->err);
}
END_TEST

/* qemu-io started without an image: open -o with the image given by
 * options (driver, file.driver, file.filename, filename, locking), errors
 * in qemu-io's words, commands from standard input. */
START_TEST(open_options)
{
    make_images();
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o driver=@FMT@,file.filename=@IMG@' "
             "-c 'read -P 1 64k 64k' -c 'write -P 2 0 4k'");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o driver=@FMT@,file.driver=file,"
             "file.filename=@IMG@,file.locking=off,node-name=a' -c 'read -P 1 64k 512' "
             "-c close -c 'open -o filename=@IMG@,driver=file' -c 'read -P 1 64k 1'");
    same_cmd(SAME_STDERR, "b.@FMT@", "printf 'open -o driver=@FMT@ @IMG@\\nread -P 1 64k 1k"
             "\\nwrite -P 3 1k 1k\\nmap\\n' | @IO@");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o driver=@FMT@' -c 'open -o "
             "driver=@FMT@,foo=bar @IMG@' -c 'open -o file.foo=bar @IMG@' -c 'open -o "
             "read-only=x @IMG@' -c 'open -o driver=nosuch @IMG@' -c 'open -o driver=@FMT@,"
             "file.filename=@IMG@ @IMG@' -c 'read 0 1'");
    /* the protocol drivers' checks of the file's kind */
    same_cmd(SAME_STDERR, "b.@FMT@", "mkdir -p d && @IO@ -c 'open -r -o driver=file,filename=d' "
             "-c 'open -o driver=file,filename=d' -c 'open -r -o driver=host_device,"
             "filename=@IMG@' -c 'open -o driver=host_cdrom,filename=d' -c 'open -r -o "
             "driver=file,filename=/dev/null,locking=off'");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -r -o driver=host_device,filename=/dev/null,"
             "locking=off' -c length");
    /* qcow2's cache options, checked as QEMU does (raw refuses them) */
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o cache-size=1M,l2-cache-size=2M @IMG@' "
             "-c 'open -o cache-size=1M,refcount-cache-size=2M @IMG@' -c 'open -o cache-size=0,"
             "l2-cache-size=0,refcount-cache-size=0 @IMG@' -c 'open -o l2-cache-entry-size=4242 "
             "@IMG@' -c 'open -o l2-cache-entry-size=128k @IMG@'");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o cache-size=2M,l2-cache-size=1M @IMG@' "
             "-c 'read -P 1 64k 64k'");
    /* An image stored inside an image of the same format (iotest 072). */
    same_cmd(SAME_STDERR, "b.@FMT@", "qemu-img convert -f raw -O @FMT@ @IMG@ n.@FMT@ && @IO@ -c "
             "'open -o driver=@FMT@,file.driver=@FMT@,file.file.filename=n.@FMT@' -c 'read -P 1 "
             "64k 64k' -c 'read -P 0 0 64k'");
    /* A write that needs the outer image to grow past the inner disk's end
     * fails (qemu-io 7.2 says it wrote, and the data is gone once the image
     * is opened again); one inside it works. */
    RUN_OK("cd '%s' && rm -f n.qcow2 && qemu-img convert -f raw -O qcow2 b.qcow2 n.qcow2",
           scratch_dir());
    struct run *r = run("cd '%s' && '%s' io -c 'open -o driver=qcow2,file.driver=qcow2,"
                        "file.file.filename=n.qcow2' -c 'write -P 5 0 4k' -c 'write -P 6 64k 4k' "
                        "-c close -c 'open -o driver=qcow2,file.driver=qcow2,"
                        "file.file.filename=n.qcow2' -c 'read -P 6 64k 4k' -c 'read -P 0 0 4k'",
                        scratch_dir(), vdisk_bin());
    const char *first = "write failed: Input/output error\nwrote 4096/4096 bytes at offset "
                        "65536\n";
    ck_assert_msg(strncmp(r->out, first, strlen(first)) == 0 && strstr(r->out, "\nread 4096/4096 bytes "
                          "at offset 65536\n") && strstr(r->out, "\nread 4096/4096 bytes at "
                          "offset 0\n"), "%s", r->out);
}
END_TEST

/* blkdebug layers that only cut requests (align, max-transfer, ...), as
 * a driver and as a blkdebug::FILE name, and inject-error on cor_write. */
START_TEST(blkdebug_limits)
{
    make_images();
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o driver=blkdebug,image.driver=@FMT@,"
             "image.file.filename=@IMG@,align=4k,max-transfer=64k' -c 'write -P 3 1000 128k' "
             "-c 'read -P 3 1000 128k' -c 'read -P 1 128k 1k'");
    same_cmd(SAME_STDERR, "b.@FMT@", "printf 'open -o driver=@FMT@,file.align=4k "
             "blkdebug::@IMG@\\nwrite -z 1k 8k\\nread -P 0 0 16k\\n' | @IO@");
    /* A format's file grows through blkdebug (it used to end at the size
     * the file had when opened: qcow2 failed its first allocating write,
     * then called its tables past the end and marked itself corrupt). */
    same_cmd(SAME_STDERR, "b.@FMT@", "printf '[inject-error]\\nevent = \"l2_load\"\\n"
             "sector = \"999999\"\\n' > g.conf && @IO@ -c 'write -P 3 256k 512k' -c "
             "'read -P 3 256k 512k' blkdebug:g.conf:@IMG@ && @IO@ -c 'read -P 3 256k 512k' "
             "-c 'read -P 1 64k 64k' @IMG@");
}
END_TEST

/* blkdebug's breakpoints (break, wait_break, resume, remove_break): a write
 * held at one, writes started meanwhile, then let go; with align=4k the
 * read-modify-write's events hold it between its reads and its write, and
 * an overlapping write waits for it.  The completions' offsets are masked
 * (their order is the engines'), and the prompts (qemu-io says that a
 * request is held where its coroutine stops, vdisk io at wait_break), not
 * the data read back. */
START_TEST(breakpoints)
{
    make_images();
#define MASK " | sed -e 's|[0-9]*/[0-9]* bytes at offset [0-9]*|XXX|' -e 's/qemu-io> //g'"
    same_cmd(SAME_STDERR, "b.@FMT@", "printf 'break write_aio A\naio_write -P 10 0x18000 "
             "0x2000\nwait_break A\naio_write -P 11 0x12000 0x2000\nresume A\naio_flush\n"
             "read -P 10 0x18000 0x2000\nread -P 11 0x12000 0x2000\n' | @IO@ -f @FMT@ "
             "blkdebug::@IMG@" MASK);
    /* (raw: a qcow2 image writes whole clusters, no read-modify-write) */
    same_cmd(SAME_STDERR, "b.raw", "printf 'open -o driver=raw,file.align=4k "
             "blkdebug::@IMG@\nbreak pwritev_rmw_after_tail A\naio_write -P 10 0x5000 0x200\n"
             "wait_break A\naio_write -P 11 0x5200 0x200\nbreak pwritev_rmw_after_head B\n"
             "aio_write -P 12 0x7e00 0x200\nwait_break B\nresume B\nsleep 10\nresume A\n"
             "aio_flush\nread -P 10 0x5000 0x200\nread -P 11 0x5200 0x200\n"
             "read -P 12 0x7e00 0x200\nread -P 0 0x5400 0x2a00\n' | @IO@" MASK);
    same_cmd(SAME_STDERR, "b.raw", "printf 'open -o driver=raw,file.align=4k "
             "blkdebug::@IMG@\nbreak pwritev A\naio_write -P 10 0x10000 0x800\nwait_break A\n"
             "aio_write -P 11 0x10000 0x1000\nsleep 10\nresume A\naio_flush\n"
             "read -P 11 0x10000 0x1000\n' | @IO@" MASK);
    /* The refusals, in qemu-io's words. */
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -f @FMT@ -c 'break nosuch A' -c 'resume A' -c "
             "'remove_break A' -c 'break write_aio A' -c 'remove_break A' -c 'resume A' "
             "blkdebug::@IMG@");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -f @FMT@ -c 'break write_aio A' -c 'resume A' "
             "@IMG@");
#undef MASK
}
END_TEST

/* reopen: -r, -w, -c, -o, and what cannot change. */
START_TEST(reopen_cmd)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-r -c 'write 0 1' -c 'reopen -w' -c 'write -P 7 0 512' "
                    "-c 'reopen -r' -c 'write 0 1' -c 'read -P 7 0 512' -c 'reopen -w -c none' "
                    "-c 'write -P 8 512 512'");
    same_as_qemu_io(SAME_STDERR, "-c 'reopen -r -w' -c 'reopen -c foo' -c 'reopen x' "
                    "-c 'reopen -o x=y' -c 'reopen -o node-name=foo' -c 'reopen -o "
                    "file.node-name=foo' -c 'reopen -o file.locking=off' -c 'reopen -o "
                    "file.driver=file' -c 'reopen -o file.driver=qcow2' -c 'reopen -r -o "
                    "read-only=on' -c 'reopen -c none -o cache.direct=on' -c 'reopen -o "
                    "read-only=foo' -c 'reopen -o cache.no-flush=bar' -c 'reopen -o "
                    "auto-read-only=x' -c 'reopen -o cache.direct=on'");
    same_as_qemu_io(SAME_STDERR, "-c 'reopen -o driver=raw' -c 'reopen -o driver=qcow2' "
                    "-c 'reopen -o lazy-refcounts=x' -c 'reopen -o lazy-refcounts=off'");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -o node-name=foo @IMG@' -c 'reopen -o "
             "node-name=foo' -c 'reopen' -c 'reopen -o node-name=bar' -c close -c reopen");
    /* raw's range of its file moves (what is not given stays); one past
     * the file is refused and the old range kept */
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ 'json:{\"driver\": \"raw\", \"offset\": \"512\", "
             "\"size\": \"512\", \"file\": {\"driver\": \"file\", \"filename\": "
             "\"@IMG@\"}}' -c 'write -P 1 0 512' -c 'write -P 2 511 1' -c 'write 512 1' "
             "-c 'reopen -o driver=raw,offset=1536,size=1024' -c 'write -P 3 0 1024' "
             "-c 'write 1024 1' -c 'reopen -o offset=2048' -c 'write -P 4 1023 1' "
             "-c 'reopen -o offset=999999999' -c 'read -P 4 1023 1' -c 'reopen -o size=x'");
}
END_TEST

/* sigraise: the signal raised, after what was printed. */
START_TEST(sigraise_cmd)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-c 'sigraise 100' -c 'sigraise x' -c 'sigraise -1' "
                    "-c 'read -P 1 64k 1'");
    same_as_qemu_io(SAME_STDERR, "-c 'write -P 4 0 512' -c flush -c 'sigraise 15' "
                    "-c 'read 0 1'");
    /* writethrough by default, as qemu-io: what was written before the
     * crash is in the image, and a qcow2 image without lazy refcounts is
     * consistent */
    same_as_qemu_io(SAME_STDERR, "-c 'write -P 4 0 512' -c 'writev -P 5 64k 4k 4k' "
                    "-c 'sigraise 9'");
    RUN_OK("cd '%s' && qemu-img check -q v.qcow2", scratch_dir());
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'sigraise 15' -c 'read 0 1'");
}
END_TEST

/* -s and open -s: writes go to a temporary overlay, the image is left as
 * it was. */
START_TEST(snapshot_mode)
{
    make_images();
    same_as_qemu_io(SAME_STDERR, "-s -c 'write -P 9 0 128k' -c 'read -P 9 0 128k' -c map");
    same_cmd(SAME_STDERR, "b.@FMT@", "@IO@ -c 'open -s -o driver=@FMT@ @IMG@' -c 'write -P 9 "
             "4k 4k' -c 'read -P 9 4k 4k' -c 'read -P 1 64k 64k' && @IO@ -f @FMT@ -c 'read -P 0 "
             "4k 4k' @IMG@");
}
END_TEST

/* -C, open -C and the copy-on-read driver: what a read touches is copied
 * into the image from its backing file (zeroes as zero clusters);
 * read-only refused. */
START_TEST(copy_on_read)
{
    make_images();
    RUN_OK("cd '%s' && for f in raw qcow2; do qemu-img create -q -f qcow2 -b b.$f -F $f "
           "o-$f.qcow2 && qemu-io -f qcow2 -c 'write -q -P 5 512k 64k' o-$f.qcow2; done",
           scratch_dir());
    same_cmd(SAME_STDERR, "o-@FMT@.qcow2", "@IO@ -f qcow2 -C -c 'read 0 0' -c 'read -P 1 65k 1k' "
             "-c 'read 1000k 24k' -c 'read -P 5 500k 40k' @IMG@ && @IO@ -f qcow2 -c map @IMG@");
    same_cmd(SAME_STDERR, "o-@FMT@.qcow2", "@IO@ -c 'open -o driver=copy-on-read,"
             "file.driver=qcow2 @IMG@' -c 'read -P 0 200k 100k' && @IO@ -c 'open -C @IMG@' "
             "-c 'readv -P 1 64k 1k 1k' -c 'aio_read 300k 1k' && @IO@ -f qcow2 -c map @IMG@");
    same_cmd(SAME_STDERR, "o-@FMT@.qcow2", "@IO@ -f qcow2 -C -r @IMG@ </dev/null; @IO@ -c "
             "'open -r -o driver=copy-on-read,file.driver=qcow2 @IMG@' -c 'open -r -C @IMG@'");
}
END_TEST

int main(void)
{
    require_program("qemu-io");
    require_program("qemu-img");
    Suite *s = suite_create("cli-io");
    TCase *tc = tcase_create("cli-io");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, read_write_discard);
    tcase_add_test(tc, readv_writev);
    tcase_add_test(tc, aio);
    tcase_add_test(tc, alloc_cmd);
    tcase_add_test(tc, info_cmd);
    tcase_add_test(tc, truncate_cmd);
    tcase_add_test(tc, sleep_cmd);
    tcase_add_test(tc, help_cmd);
    tcase_add_test(tc, open_close);
    tcase_add_test(tc, read_only);
    tcase_add_test(tc, quit_and_unknown);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, open_options);
    tcase_add_test(tc, blkdebug_limits);
    tcase_add_test(tc, breakpoints);
    tcase_add_test(tc, reopen_cmd);
    tcase_add_test(tc, sigraise_cmd);
    tcase_add_test(tc, snapshot_mode);
    tcase_add_test(tc, copy_on_read);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
