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
    struct run *r = run("cd '%s' && qemu-io -f raw -c help b.raw | grep -Ev '^(abort|break|"
                        "remove_break|reopen|resume|sigraise|wait_break) '", scratch_dir());
    ck_assert_int_eq(r->status, 0);
    char *q = strdup(r->out);
    r = run("cd '%s' && '%s' io -f raw -c help b.raw", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(q, r->out);
    free(q);
    static const char *const cmds[] = {
        "r", "w", "read", "write", "readv", "writev", "aio_read", "aio_write", "aio_flush",
        "discard", "flush", "length", "map", "alloc", "info", "truncate", "sleep", "open", "o",
        "close", "c", "quit", "q", "?", "help", "l", "t", "nosuch",
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
    suite_add_tcase(s, tc);
    return run_suite(s);
}
