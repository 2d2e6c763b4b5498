/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/qcow2_datafile.c: qcow2 images with an external data file
 * (data_file, data_file_raw), against qemu-img and qemu-io 7.2, both ways:
 *
 *   - create: for every combination (a data file; raw; preallocation
 *     metadata, falloc, full; small clusters) vdisk makes the same image
 *     file and the same data file, byte for byte, and prints the same
 *     "Formatting" line; qemu-img's refusals in its words;
 *   - images qemu-io wrote (with and without raw, over a backing file)
 *     read the same through vdisk: info, map, check, convert -O raw;
 *   - images vdisk wrote (the same requests) read the same through qemu:
 *     the disks compare equal, qemu-img check finds no errors, and a raw
 *     data file is the disk itself, byte for byte (also after write
 *     zeroes and discards), and the data file's allocation is QEMU's
 *     (what is discarded or unmapped is discarded there too);
 *   - convert into a data-file image, and out of one;
 *   - amend: rename and drop the name, clear data_file_raw, and qemu-img's
 *     refusals; internal snapshots and compressed writes refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* The requests both tools run (qemu-io's syntax). */
static const char *const script =
    "-c 'write -P 0x11 1M 64k' -c 'write -P 0x22 100 4k' -c 'write -z 2M 128k' "
    "-c 'discard 3M 64k' -c 'write -P 0x33 3146728 70000' -c 'write -z 0 512' "
    "-c 'write -z -u 1M 64k' -c 'write -P 0x44 4193792 512'";

/* Fresh folders q/ and v/ in the scratch folder. */
static void fresh_dirs(void)
{
    RUN_OK("cd '%s' && rm -rf q v && mkdir q v", scratch_dir());
}

static const char *const create_opts[] = {
    "data_file=d.raw",
    "data_file=d.raw,data_file_raw=on",
    "data_file=d.raw,preallocation=metadata",
    "data_file=d.raw,preallocation=falloc",
    "data_file=d.raw,preallocation=full",
    "data_file=d.raw,data_file_raw=on,preallocation=full",
    "data_file=d.raw,cluster_size=4k,preallocation=metadata",
    "data_file=d.raw,data_file_raw=on,cluster_size=512,lazy_refcounts=on",
    "data_file=d.raw,extended_l2=on",
    "data_file=d.raw,extended_l2=on,data_file_raw=on",
};

START_TEST(create_same)
{
    for (size_t i = 0; i < sizeof create_opts / sizeof create_opts[0]; i++) {
        const char *o = create_opts[i];
        fresh_dirs();
        struct run *r = run("cd '%s/q' && qemu-img create -f qcow2 -o %s i.qcow2 4M",
                            scratch_dir(), o);
        ck_assert_msg(r->status == 0, "%s: %s", o, r->err);
        char *qout = strdup(r->out);
        r = run("cd '%s/v' && VDISK_PROG=qemu-img %s create -f qcow2 -o %s i.qcow2 4M",
                scratch_dir(), vdisk_bin(), o);
        ck_assert_msg(r->status == 0, "%s: %s", o, r->err);
        ck_assert_str_eq(r->out, qout);
        free(qout);
        RUN_OK("cd '%s' && cmp q/i.qcow2 v/i.qcow2 && cmp q/d.raw v/d.raw", scratch_dir());
        RUN_OK("cd '%s/v' && qemu-img check -q i.qcow2", scratch_dir());
        /* Space: the same for the data file (falloc and full reserve it). */
        struct stat qs, vs;
        ck_assert_int_eq(stat(fmt("%s/q/d.raw", scratch_dir()), &qs), 0);
        ck_assert_int_eq(stat(fmt("%s/v/d.raw", scratch_dir()), &vs), 0);
        ck_assert_msg((qs.st_blocks > 2048) == (vs.st_blocks > 2048), "%s: %lld and %lld "
                      "blocks", o, (long long)qs.st_blocks, (long long)vs.st_blocks);
    }
    /* qemu-img's refusals, in its words. */
    static const char *const bad[] = {
        "-f qcow2 -o data_file_raw=on x.qcow2 1M",
        "-f qcow2 -o data_file=d.raw,compat=0.10 x.qcow2 1M",
        "-f qcow2 -b i.qcow2 -F qcow2 -o data_file=e.raw,data_file_raw=on x.qcow2 1M",
    };
    fresh_dirs();
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 i.qcow2 1M", scratch_dir());
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        same_as_qemu_img("create", bad[i]);
}
END_TEST

/* qemu-io writes, vdisk reads. */
START_TEST(qemu_writes)
{
    static const char *const opts[] = {"data_file=d.raw", "data_file=d.raw,data_file_raw=on",
                                       "data_file=d.raw,preallocation=metadata"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        RUN_OK("cd '%s' && rm -f i.qcow2 d.raw && qemu-img create -q -f qcow2 -o %s i.qcow2 5M "
               "&& qemu-io %s i.qcow2 >/dev/null", scratch_dir(), opts[i], script);
        reads_as_qemu_img("i.qcow2");
    }
    /* Over a backing file: copy on write into the data file. */
    RUN_OK("cd '%s' && rm -f b.qcow2 i.qcow2 d.raw && qemu-img create -q -f qcow2 b.qcow2 5M && "
           "qemu-io -c 'write -P 0x55 0 5M' b.qcow2 >/dev/null && "
           "qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 -o data_file=d.raw i.qcow2 5M && "
           "qemu-io %s i.qcow2 >/dev/null", scratch_dir(), script);
    reads_as_qemu_img("i.qcow2");
    /* Opened with the data-file option, the header's name aside. */
    RUN_OK("cd '%s' && mv d.raw other.raw", scratch_dir());
    RUN_OK("cd '%s' && %s convert -O raw --image-opts "
           "driver=qcow2,file.filename=i.qcow2,data-file.filename=other.raw o.raw && cmp o.raw q.raw",
           scratch_dir(), vdisk_bin());
    struct run *r = run("cd '%s' && %s convert -O raw i.qcow2 o.raw", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "Could not open 'd.raw': No such file or directory"), "%s",
                  r->err);
}
END_TEST

/* vdisk writes, qemu reads. */
START_TEST(vdisk_writes)
{
    static const char *const opts[] = {"data_file=d.raw", "data_file=d.raw,data_file_raw=on",
                                       "data_file=d.raw,preallocation=full,data_file_raw=on",
                                       "data_file=d.raw,cluster_size=4k",
                                       "data_file=d.raw,extended_l2=on",
                                       "data_file=d.raw,extended_l2=on,data_file_raw=on"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        fresh_dirs();
        RUN_OK("cd '%s/q' && qemu-img create -q -f qcow2 -o %s i.qcow2 5M && "
               "qemu-io %s i.qcow2 >/dev/null", scratch_dir(), opts[i], script);
        RUN_OK("cd '%s/v' && %s create -q -f qcow2 -o %s i.qcow2 5M && %s io %s i.qcow2 "
               ">/dev/null", scratch_dir(), vdisk_bin(), opts[i], vdisk_bin(), script);
        /* (qemu 7.2 looks for a relative data file name in its working
         * folder: each image read from its own) */
        RUN_OK("cd '%s/v' && qemu-img check -q i.qcow2", scratch_dir());
        RUN_OK("cd '%s/v' && qemu-img convert -O raw i.qcow2 disk.raw", scratch_dir());
        RUN_OK("cd '%s/q' && qemu-img convert -O raw i.qcow2 disk.raw", scratch_dir());
        RUN_OK("cd '%s' && cmp q/disk.raw v/disk.raw", scratch_dir());
        if (strstr(opts[i], "raw=on")) {
            /* The data file is the disk. */
            RUN_OK("cd '%s/v' && cmp disk.raw d.raw", scratch_dir());
            RUN_OK("cd '%s' && cmp q/d.raw v/d.raw", scratch_dir());
        }
        RUN_OK("cd '%s/v' && %s map --output=json i.qcow2 > vm && qemu-img map --output=json "
               "i.qcow2 > qm && cmp qm vm", scratch_dir(), vdisk_bin());
        /* What was discarded or unmapped is discarded in the data file
         * too, raw or not: its allocation is QEMU's. */
        RUN_OK("cd '%s' && qemu-img map --output=json -f raw q/d.raw > qd && "
               "qemu-img map --output=json -f raw v/d.raw > vd && diff qd vd", scratch_dir());
    }
    /* Over a backing file: copy on write. */
    fresh_dirs();
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 b.qcow2 5M && qemu-io -c 'write -P 0x55 0 5M' "
           "b.qcow2 >/dev/null && cp b.qcow2 q/ && cp b.qcow2 v/", scratch_dir());
    RUN_OK("cd '%s/q' && qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 -o data_file=d.raw "
           "i.qcow2 5M && qemu-io %s i.qcow2 >/dev/null", scratch_dir(), script);
    RUN_OK("cd '%s/v' && %s create -q -f qcow2 -b b.qcow2 -F qcow2 -o data_file=d.raw i.qcow2 "
           "5M && %s io %s i.qcow2 >/dev/null", scratch_dir(), vdisk_bin(), vdisk_bin(), script);
    RUN_OK("cd '%s/q' && qemu-img convert -O raw i.qcow2 disk.raw", scratch_dir());
    RUN_OK("cd '%s/v' && qemu-img convert -O raw i.qcow2 disk.raw && qemu-img check -q i.qcow2",
           scratch_dir());
    RUN_OK("cd '%s' && cmp q/disk.raw v/disk.raw", scratch_dir());
}
END_TEST

/* Resize: the data file follows the disk; with data_file_raw (or
 * preallocation) the new clusters are mapped, as qemu-img resize does. */
START_TEST(resize)
{
    static const char *const cases[][2] = {
        {"data_file=d.raw", ""},
        {"data_file=d.raw,data_file_raw=on", ""},
        {"data_file=d.raw", "--preallocation=metadata"},
        {"data_file=d.raw,data_file_raw=on", "--preallocation=full"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fresh_dirs();
        RUN_OK("cd '%s/q' && qemu-img create -q -f qcow2 -o %s i.qcow2 1M && qemu-io -c "
               "'write -P 3 0 1M' i.qcow2 >/dev/null && qemu-img resize -q %s i.qcow2 3M",
               scratch_dir(), cases[i][0], cases[i][1]);
        RUN_OK("cd '%s/v' && %s create -q -f qcow2 -o %s i.qcow2 1M && %s io -c "
               "'write -P 3 0 1M' i.qcow2 >/dev/null && %s resize -q %s i.qcow2 3M",
               scratch_dir(), vdisk_bin(), cases[i][0], vdisk_bin(), vdisk_bin(), cases[i][1]);
        RUN_OK("cd '%s' && cmp q/d.raw v/d.raw", scratch_dir());
        RUN_OK("cd '%s/q' && qemu-img map --output=json i.qcow2 > ../qm && qemu-img convert -O "
               "raw i.qcow2 ../q.raw", scratch_dir());
        RUN_OK("cd '%s/v' && qemu-img map --output=json i.qcow2 > ../vm && qemu-img convert -O "
               "raw i.qcow2 ../v.raw && qemu-img check -q i.qcow2", scratch_dir());
        RUN_OK("cd '%s' && cmp qm vm && cmp q.raw v.raw", scratch_dir());
    }
}
END_TEST

/* LUKS encryption with a data file: the ciphertext in the data file. */
START_TEST(encrypted)
{
    const char *sec = "--object secret,id=s0,data=pw";
    const char *io = "--image-opts driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=s0";
    RUN_OK("cd '%s' && rm -f e.qcow2 ed.raw && qemu-img create -q -f qcow2 %s -o "
           "data_file=ed.raw,encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "
           "e.qcow2 1M && qemu-io %s %s -c 'write -P 9 4096 8192' >/dev/null", scratch_dir(),
           sec, sec, io);
    same_as_qemu_img("info", "e.qcow2");
    same_as_qemu_img("info", "--output=json e.qcow2");
    RUN_OK("cd '%s' && %s io %s %s -c 'read -P 9 4096 8192' -c 'write -P 7 100000 5000' "
           ">/dev/null", scratch_dir(), vdisk_bin(), sec, io);
    RUN_OK("cd '%s' && qemu-io %s %s -c 'read -P 7 100000 5000' -c 'read -P 9 4096 8192' "
           "-c 'read -P 0 0 4096' | grep -c '^read' | grep -qx 3", scratch_dir(), sec, io);
    RUN_OK("cd '%s' && qemu-img check -q %s %s", scratch_dir(), sec, io);
}
END_TEST

START_TEST(convert)
{
    static const char *const opts[] = {"data_file=d.raw", "data_file=d.raw,data_file_raw=on",
                                       "data_file=d.raw,preallocation=metadata"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        fresh_dirs();
        RUN_OK("cd '%s' && qemu-img create -q -f raw s.raw 3M && qemu-io -f raw -c "
               "'write -P 7 0 64k' -c 'write -P 8 1048581 100k' s.raw >/dev/null && cp s.raw q/ && "
               "cp s.raw v/", scratch_dir());
        RUN_OK("cd '%s/q' && qemu-img convert -O qcow2 -o %s s.raw i.qcow2", scratch_dir(),
               opts[i]);
        RUN_OK("cd '%s/v' && %s convert -O qcow2 -o %s s.raw i.qcow2", scratch_dir(),
               vdisk_bin(), opts[i]);
        RUN_OK("cd '%s' && cmp q/i.qcow2 v/i.qcow2 && cmp q/d.raw v/d.raw", scratch_dir());
        RUN_OK("cd '%s/v' && qemu-img compare s.raw i.qcow2 && qemu-img check -q i.qcow2 && "
               "%s convert -O raw i.qcow2 o.raw && cmp o.raw s.raw", scratch_dir(), vdisk_bin());
    }
    /* Compressed clusters cannot go into a data file. */
    same_as_qemu_img("convert", "-c -O qcow2 -o data_file=z.raw v/s.raw z.qcow2");
}
END_TEST

START_TEST(amend)
{
    fresh_dirs();
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 -o data_file=d.raw a.qcow2 1M && "
           "qemu-img create -q -f qcow2 p.qcow2 1M && qemu-img create -q -f qcow2 -o "
           "data_file=e.raw,data_file_raw=on r.qcow2 1M", scratch_dir());
    same_as_qemu_img("amend", "-o compat=0.10 a.qcow2");
    same_as_qemu_img("amend", "-o data_file=foo p.qcow2");
    same_as_qemu_img("amend", "-o data_file_raw=on a.qcow2");
    same_as_qemu_img("amend", "-o data_file_raw=on r.qcow2");
    same_as_qemu_img("info", "r.qcow2");
    same_as_qemu_img("amend", "-o data_file_raw=off r.qcow2");
    same_as_qemu_img("info", "--output=json r.qcow2");
    same_as_qemu_img("check", "r.qcow2");
    same_as_qemu_img("amend", "-o data_file_raw=on r.qcow2");
    /* A new name; then none (the image then needs the option). */
    RUN_OK("cd '%s' && %s amend -o data_file=foo a.qcow2", scratch_dir(), vdisk_bin());
    same_as_qemu_img("info", "a.qcow2");
    RUN_OK("cd '%s' && %s amend -o data_file= --image-opts "
           "driver=qcow2,file.filename=a.qcow2,data-file.filename=d.raw", scratch_dir(),
           vdisk_bin());
    same_as_qemu_img("info", "a.qcow2");
    same_as_qemu_img("info", "--output=json a.qcow2");
    struct run *r = run("cd '%s' && %s io -c 'read 0 4k' a.qcow2", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "'data-file' is required for this image"), "%s", r->err);
    RUN_OK("cd '%s' && qemu-io -c 'open -o data-file.filename=d.raw,file.filename=a.qcow2' "
           "-c 'read 0 4k' >/dev/null", scratch_dir());
    /* Internal snapshots: refused (the data clusters have no refcounts). */
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 -o data_file=s.raw s.qcow2 1M", scratch_dir());
    r = run("cd '%s' && %s snapshot -c s1 s.qcow2", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    RUN_OK("cd '%s' && qemu-img snapshot -l s.qcow2 | wc -c | grep -qx 0", scratch_dir());
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("qcow2-datafile");
    TCase *tc = tcase_create("datafile");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, create_same);
    tcase_add_test(tc, qemu_writes);
    tcase_add_test(tc, vdisk_writes);
    tcase_add_test(tc, resize);
    tcase_add_test(tc, encrypted);
    tcase_add_test(tc, convert);
    tcase_add_test(tc, amend);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
