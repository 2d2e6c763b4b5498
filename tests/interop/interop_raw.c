/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_raw.c: the vdisk CLI against qemu-img and qemu-io on
 * raw images: info and map output, create, and data written by one tool
 * read back by the other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

/* qemu-io and vdisk io print a timing line after each request: drop it. */
static char *strip_timing(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    size_t o = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s + 1) : strlen(s);
        bool timing = memmem(s, len, " ops; ", 6) != NULL ||
                      (memmem(s, len, ",1,", 3) && memmem(s, len, ":00:", 4));
        if (!timing) {
            memcpy(out + o, s, len);
            o += len;
        }
        s += len;
    }
    out[o] = '\0';
    return out;
}

/* Runs the same qemu-io command list through both tools; asserts equal
 * stdout (less timing lines) and equal exit status. */
static void same_io(const char *file, const char *cmds)
{
    struct run *r = run("qemu-io -f raw %s '%s'", cmds, file);
    int qst = r->status;
    char *qout = strip_timing(r->out);
    r = run("%s io -f raw %s '%s'", vdisk_bin(), cmds, file);
    int vst = r->status;
    char *vout = strip_timing(r->out);
    ck_assert_msg(strcmp(qout, vout) == 0, "outputs differ for %s\nqemu-io:\n%s\nvdisk io:\n%s",
                  cmds, qout, vout);
    ck_assert_msg(qst == vst, "exit status differs for %s: qemu-io %d, vdisk io %d", cmds, qst,
                  vst);
    free(qout);
    free(vout);
}

START_TEST(info_json_matches_qemu_img)
{
    static const char *const sizes[] = {"0", "1000", "512", "1M", "3G", "1T", "1.5K"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *a = scratch("a.raw"), *b = scratch("b.raw");
        RUN_OK("%s create -q -f raw '%s' %s", vdisk_bin(), a, sizes[i]);
        RUN_OK("qemu-img create -q -f raw '%s' %s", b, sizes[i]);
        /* Both tools describe both files identically. */
        const char *files[] = {a, b};
        for (int f = 0; f < 2; f++) {
            struct run *r = run("qemu-img info --output=json -f raw '%s'", files[f]);
            ck_assert_int_eq(r->status, 0);
            char *q = strdup(r->out);
            r = run("%s info --output=json -f raw '%s'", vdisk_bin(), files[f]);
            ck_assert_int_eq(r->status, 0);
            ck_assert_msg(strcmp(q, r->out) == 0, "size %s: qemu-img:\n%s\nvdisk:\n%s", sizes[i],
                          q, r->out);
            free(q);
            r = run("qemu-img info -f raw '%s'", files[f]);
            q = strdup(r->out);
            r = run("%s info -f raw '%s'", vdisk_bin(), files[f]);
            ck_assert_msg(strcmp(q, r->out) == 0, "size %s: qemu-img:\n%s\nvdisk:\n%s", sizes[i],
                          q, r->out);
            free(q);
        }
        /* Same file size and the same allocation. */
        struct stat sa, sb;
        ck_assert_int_eq(stat(a, &sa), 0);
        ck_assert_int_eq(stat(b, &sb), 0);
        ck_assert_int_eq(sa.st_size, sb.st_size);
        ck_assert_int_eq(sa.st_blocks, sb.st_blocks);
    }
}
END_TEST

START_TEST(create_output_matches_qemu_img)
{
    const char *a = scratch("c.raw");
    struct run *r = run("qemu-img create -f raw '%s' 1G", a);
    ck_assert_int_eq(r->status, 0);
    char *q = strdup(r->out);
    r = run("%s create -f raw '%s' 1G", vdisk_bin(), a);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, q);
    free(q);
    r = run("qemu-img create -f raw -o preallocation=falloc '%s' 1M", a);
    q = strdup(r->out);
    r = run("%s create -f raw -o preallocation=falloc '%s' 1M", vdisk_bin(), a);
    ck_assert_str_eq(r->out, q);
    free(q);
    r = run("du -k '%s'", a);
    ck_assert_msg(atoi(r->out) >= 1024, "falloc did not allocate: %s", r->out);
    RUN_OK("%s create -q -f raw -o preallocation=full '%s' 64K", vdisk_bin(), a);
    r = run("qemu-img map --output=json -f raw '%s'", a);
    ck_assert_str_eq(r->out, "[{ \"start\": 0, \"length\": 65536, \"depth\": 0, \"present\": "
                             "true, \"zero\": false, \"data\": true, \"offset\": 0}]\n");
}
END_TEST

START_TEST(map_matches_qemu_img)
{
    const char *f = scratch("m.raw");
    uint64_t seed = 42;
    for (int round = 0; round < 6; round++) {
        RUN_OK("%s create -q -f raw '%s' 16M", vdisk_bin(), f);
        /* Data at 64 KiB-aligned places (file system blocks are 4 KiB). */
        char cmds[4096] = "";
        size_t n = 0;
        for (int i = 0; i < 1 + round * 3; i++) {
            uint64_t off = (rng_next(&seed) % 256) * 65536;
            uint64_t len = (1 + rng_next(&seed) % 4) * 65536;
            if (off + len > 16 << 20)
                len = (16 << 20) - off;
            n += (size_t)snprintf(cmds + n, sizeof cmds - n, " -c 'write -q %llu %llu'",
                                  (unsigned long long)off, (unsigned long long)len);
        }
        if (round % 2)
            n += (size_t)snprintf(cmds + n, sizeof cmds - n, " -c 'discard -q 0 1M'");
        RUN_OK("%s io -f raw %s '%s'", vdisk_bin(), cmds, f);
        for (int json = 0; json < 2; json++) {
            const char *o = json ? "--output=json" : "--output=human";
            struct run *r = run("qemu-img map %s -f raw '%s'", o, f);
            ck_assert_int_eq(r->status, 0);
            char *q = strdup(r->out);
            r = run("%s map %s -f raw '%s'", vdisk_bin(), o, f);
            ck_assert_int_eq(r->status, 0);
            ck_assert_msg(strcmp(q, r->out) == 0, "round %d %s\nqemu-img:\n%s\nvdisk:\n%s", round,
                          o, q, r->out);
            free(q);
        }
    }
}
END_TEST

/* A file whose size is not a multiple of 512 (iotest 253): its data runs
 * to the file's end; read with cache.direct=on (O_DIRECT, whole blocks),
 * the last block counts as data, without it the last byte past the file
 * reads as a hole, both as qemu-img maps them. */
START_TEST(map_unaligned_end)
{
    const char *f = scratch("u.raw");
    RUN_OK("rm -f '%s' && qemu-img create -q -f raw '%s' 1048575 && "
           "qemu-io -f raw -c 'write -q 983040 65535' '%s' && truncate --size=1048575 '%s'",
           f, f, f, f);
    char args[2][1024];
    snprintf(args[0], sizeof args[0], "--output=json --image-opts "
             "driver=raw,file.driver=file,file.filename=%s,cache.direct=on", f);
    snprintf(args[1], sizeof args[1], "--output=json -f raw %s", f);
    for (int i = 0; i < 2; i++)
        same_as_qemu_img("map", args[i]);
}
END_TEST

START_TEST(vdisk_writes_qemu_reads)
{
    const char *f = scratch("w.raw");
    RUN_OK("%s create -q -f raw '%s' 8M", vdisk_bin(), f);
    RUN_OK("%s io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 3M 4097' "
           "-c 'write -P 7 1234567 777' -c 'write -z 6M 100k' -c 'discard 7M 1M' '%s'",
           vdisk_bin(), f);
    RUN_OK("qemu-io -f raw -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 3M 4097' "
           "-c 'read -P 7 1234567 777' -c 'read -P 0 6M 100k' -c 'read -P 0 7M 1M' "
           "-c 'read -P 0 1M 185991' '%s'", f);
    /* qemu-io exits 1 when a pattern does not match: make sure it can fail. */
    struct run *r = run("qemu-io -f raw -c 'read -P 0x5b 0 1M' '%s'", f);
    ck_assert_int_eq(r->status, 1);
    /* Unaligned writes through cache=none (read-modify-write). */
    RUN_OK("%s io -f raw -n -c 'write -P 0x11 513 3000' -c 'write -P 0x22 4095 2' '%s'",
           vdisk_bin(), f);
    RUN_OK("qemu-io -f raw -c 'read -P 0x11 513 3000' -c 'read -P 0x22 4095 2' "
           "-c 'read -P 0x5a 0 513' -c 'read -P 0x5a 4097 1044479' '%s'", f);
}
END_TEST

START_TEST(qemu_writes_vdisk_reads)
{
    const char *f = scratch("q.raw");
    RUN_OK("qemu-img create -q -f raw '%s' 8M", f);
    RUN_OK("qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 3M 4097' "
           "-c 'write -P 7 1234567 777' -c 'write -z 6M 100k' -c 'discard 7M 1M' '%s'", f);
    RUN_OK("%s io -f raw -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 3M 4097' "
           "-c 'read -P 7 1234567 777' -c 'read -P 0 6M 100k' -c 'read -P 0 7M 1M' '%s'",
           vdisk_bin(), f);
    RUN_OK("%s io -f raw -n -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 3M 4097' "
           "-c 'read -P 7 1234567 777' '%s'", vdisk_bin(), f);
    struct run *r = run("%s io -f raw -c 'read -P 0x5b 0 1M' '%s'", vdisk_bin(), f);
    ck_assert_int_eq(r->status, 1);
}
END_TEST

START_TEST(io_output_matches_qemu_io)
{
    const char *f = scratch("o.raw");
    RUN_OK("qemu-img create -q -f raw '%s' 1M", f);
    same_io(f, "-c 'write -P 0xab 512 4096' -c 'read -P 0xab 512 4096' "
               "-c 'read -P 0xac 512 4096' -c 'map' -c 'discard 0 65536' -c 'flush' "
               "-c 'write -z 8192 512' -c 'read -v 0 40' -c 'write -P 65 100 17' "
               "-c 'read -v 96 30' -c 'length'");
    same_io(f, "-c 'read 1048000 4096' -c 'read 0 1'");
    same_io(f, "-c 'read abc 4096'");
    same_io(f, "-c 'read 0 1k' -c 'write -P 1 1M 1'");
    same_io(f, "-c 'write -P 0x1ff 0 512'");
    same_io(f, "-c 'read -l 512 0 512'");
    same_io(f, "-c 'read -q 0 512' -c 'write -q 0x10 0x10' -c 'read -P 0xcd -s 16 -l 16 0 48'");
    same_io(f, "-c 'write -z -u 0 4096' -c 'read -P 0 0 4096'");
    same_io(f, "-c 'write -f 0 4096' -c 'discard 1 4096'");
    same_io(f, "-c 'bogus' -c 'read 0 1'");
    same_io(f, "-c 'read 0'");
    same_io(f, "-c 'flush 1'");
    same_io(f, "-c 'read 1.5k 1'");
    same_io(f, "-c 'read 0 2G'");
    same_io(f, "-r -c 'read 0 512'");
    /* Error messages go to stderr in both. */
    struct run *r = run("qemu-io -f raw -c 'bogus' '%s'", f);
    char *q = strdup(r->err);
    r = run("%s io -f raw -c 'bogus' '%s'", vdisk_bin(), f);
    ck_assert_str_eq(r->err, q);
    free(q);
    r = run("qemu-io -f raw -c 'read 0' '%s'", f);
    q = strdup(r->err);
    r = run("%s io -f raw -c 'read 0' '%s'", vdisk_bin(), f);
    ck_assert_str_eq(r->err, q);
    free(q);
}
END_TEST

START_TEST(read_only_is_enforced)
{
    const char *f = scratch("ro.raw");
    RUN_OK("qemu-img create -q -f raw '%s' 1M", f);
    /* As qemu-io refuses it: before the command runs, on stderr. */
    struct run *r = run("%s io -f raw -r -c 'write 0 512' '%s'", vdisk_bin(), f);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "");
    ck_assert_str_eq(r->err, "vdisk: Block node is read-only\n");
    r = run("qemu-io -f raw -r -c 'write 0 512' '%s'", f);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "");
    ck_assert_str_eq(r->err, "qemu-io: Block node is read-only\n");
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create("interop-raw");
    TCase *tc = tcase_create("raw");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, info_json_matches_qemu_img);
    tcase_add_test(tc, create_output_matches_qemu_img);
    tcase_add_test(tc, map_matches_qemu_img);
    tcase_add_test(tc, map_unaligned_end);
    tcase_add_test(tc, vdisk_writes_qemu_reads);
    tcase_add_test(tc, qemu_writes_vdisk_reads);
    tcase_add_test(tc, io_output_matches_qemu_io);
    tcase_add_test(tc, read_only_is_enforced);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    return run_suite(make_suite());
}
