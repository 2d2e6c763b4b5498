/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_errors.c: the vdisk command's behaviour on bad input:
 * one-line errors, exit status 1, never a crash; --help for every verb.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* vdisk io's memory bound, as tests/hostile/bounds.c's for one qcow2
 * image: 64 MiB plus 40 MiB of caches (sanitizers reserve terabytes of
 * address space: there the bound is not enforced).  One malloc arena:
 * glibc reserves 64 MiB of address space (not memory) for each thread
 * that allocates, which ulimit -v would count as if vdisk had used it. */
#define IO_LIMIT_KB 106496
#define STR_(x) #x
#define STR(x) STR_(x)
#define IO_BOUND (SANITIZED ? "" : "ulimit -v " STR(IO_LIMIT_KB) "; export MALLOC_ARENA_MAX=1;")

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The command fails with exit 1 and exactly the one-line message WANT
 * (or, when WANT is NULL, some single line). */
static void fails_with(const char *want, const char *args)
{
    struct run *r = run("%s %s", vdisk_bin(), args);
    ck_assert_msg(r->status == 1, "'vdisk %s' exited %d (expected 1)\nstderr: %s", args,
                  r->status, r->err);
    ck_assert_msg(count_lines(r->err) >= 1, "'vdisk %s': no error message", args);
    if (want)
        ck_assert_msg(strcmp(r->err, want) == 0, "'vdisk %s':\n got: %s want: %s", args, r->err,
                      want);
    else
        ck_assert_msg(count_lines(r->err) == 1 || strstr(r->err, "Try 'vdisk"),
                      "'vdisk %s': more than one line:\n%s", args, r->err);
}

/* In the scratch folder, COMMAND (with %s for the program: qemu-io or
 * qemu-img) prints the same standard error and exits with the same status
 * run as the real tool and as vdisk under that name. */
static void same_error_as(const char *prog, const char *command)
{
    char real[512], as_vdisk[512];
    snprintf(real, sizeof real, "%s", prog);
    snprintf(as_vdisk, sizeof as_vdisk, "env VDISK_PROG=%s '%s'", prog, vdisk_bin());
    struct run *q = run("cd '%s' && %s", scratch_dir(), fmt(command, real));
    int qst = q->status;
    char *qerr = strdup(q->err);
    struct run *v = run("cd '%s' && %s", scratch_dir(), fmt(command, as_vdisk));
    ck_assert_msg(strcmp(qerr, v->err) == 0, "%s:\n %s: %s vdisk: %s", command, prog, qerr,
                  v->err);
    ck_assert_msg(qst == v->status, "%s: exit status %d, vdisk %d", command, qst, v->status);
    free(qerr);
}

/* A qcow2 image with the big-endian field of LEN bytes (4 or 8) at OFF set
 * to V: qemu-io and qemu-img refuse to open it in the same words (QEMU's
 * header messages, iotests 054 and 080). */
static void header_refused_as_qemu(unsigned off, unsigned len, unsigned long long v)
{
    char bytes[64] = "";
    for (unsigned i = 0; i < len; i++)
        snprintf(bytes + 4 * i, 5, "\\%03o", (unsigned)(v >> (8 * (len - 1 - i))) & 0xff);
    RUN_OK("cd '%s' && rm -f h.qcow2 && qemu-img create -q -f qcow2 h.qcow2 64M && printf '%s' "
           "| dd of=h.qcow2 bs=1 seek=%u conv=notrunc status=none", scratch_dir(), bytes, off);
    same_error_as("qemu-io", "%s -c 'read 0 512' h.qcow2");
    same_error_as("qemu-img", "%s info h.qcow2");
}

START_TEST(open_errors_as_qemu)
{
    header_refused_as_qemu(100, 4, 0xffffffffu);          /* header_length */
    header_refused_as_qemu(100, 4, 0x7fffffffu);
    header_refused_as_qemu(100, 4, 0);
    header_refused_as_qemu(20, 4, 8);                    /* cluster_bits */
    header_refused_as_qemu(20, 4, 22);
    header_refused_as_qemu(8, 8, 0xffffffffffffffffull); /* backing_file_offset */
    header_refused_as_qemu(96, 4, 7);                    /* refcount_order */
    header_refused_as_qemu(56, 4, 0xffffffffu);          /* refcount_table_clusters */
    header_refused_as_qemu(48, 8, 0x1234567890abcdefull); /* refcount_table_offset */
    header_refused_as_qemu(48, 8, 0xffffffffffff0000ull);
    header_refused_as_qemu(60, 4, 0xffffffffu);          /* nb_snapshots */
    header_refused_as_qemu(36, 4, 0x7fffffffu);          /* l1_size */
    header_refused_as_qemu(40, 8, 0x1234567890abcdefull); /* l1_table_offset */
    header_refused_as_qemu(24, 8, 1ull << 60);           /* size: the L1 table */
    header_refused_as_qemu(24, 8, 1ull << 40);
    /* A missing backing file (069); a chain that loops (043). */
    RUN_OK("cd '%s' && rm -f b.qcow2 t.qcow2 && qemu-img create -q -f qcow2 -u -b b.qcow2 -F "
           "qcow2 t.qcow2 64M", scratch_dir());
    same_error_as("qemu-io", "%s -c 'read 0 512' t.qcow2");
    RUN_OK("cd '%s' && qemu-img create -q -f qcow2 b.qcow2 64M && qemu-img rebase -u -b "
           "\"$PWD/t.qcow2\" -F qcow2 b.qcow2", scratch_dir());
    same_error_as("qemu-img", "%s info --backing-chain t.qcow2");
    RUN_OK("cd '%s' && qemu-img rebase -u -b \"$PWD/b.qcow2\" -F qcow2 b.qcow2", scratch_dir());
    same_error_as("qemu-img", "%s info --backing-chain b.qcow2");
}
END_TEST

/* info (without --backing-chain) and rebase -u do not open the backing
 * file, as qemu-img's do not: a missing one is no error (iotest 114). */
START_TEST(backing_not_opened)
{
    RUN_OK("cd '%s' && rm -f nb.qcow2 && qemu-img create -q -f qcow2 -u -b missing.qcow2 -F "
           "qcow2 nb.qcow2 1M", scratch_dir());
    same_as_qemu_img("info", "nb.qcow2");
    same_as_qemu_img("info", "--output=json nb.qcow2");
    same_as_qemu_img("rebase", "-u -b missing2.qcow2 -F qcow2 nb.qcow2");
    same_as_qemu_img("info", "nb.qcow2");
}
END_TEST

START_TEST(help_for_every_verb)
{
    static const char *const verbs[] = {"create", "info", "map", "io", "bench"};
    struct run *r = run("%s --help", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
    char *top = strdup(r->out);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        char word[64];
        snprintf(word, sizeof word, "vdisk %s ", verbs[i]);
        ck_assert_msg(strstr(top, word), "vdisk --help does not list %s", verbs[i]);
        struct run *h = run("%s %s --help", vdisk_bin(), verbs[i]);
        ck_assert_msg(h->status == 0, "vdisk %s --help exited %d", verbs[i], h->status);
        ck_assert_msg(strstr(h->out, "usage: vdisk"), "vdisk %s --help: %s", verbs[i], h->out);
    }
    free(top);
    r = run("%s", vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    r = run("%s --version", vdisk_bin());
    ck_assert_int_eq(r->status, 0);
}
END_TEST

START_TEST(bad_input)
{
    char args[1024], want[1024];
    const char *img = scratch("x.raw");
    RUN_OK("%s create -q -f raw '%s' 1M", vdisk_bin(), img);

    fails_with("vdisk: Command not found: frobnicate\nTry 'vdisk --help' for more "
               "information\n", "frobnicate");
    snprintf(args, sizeof args, "create -f raw '%s' 1Q", img);
    /* qemu-img's two lines */
    fails_with("vdisk: Invalid image size specified. You may use k, M, G, T, P or E suffixes "
               "for\nvdisk: kilobytes, megabytes, gigabytes, terabytes, petabytes and "
               "exabytes.\n", args);
    snprintf(args, sizeof args, "create -f raw '%s' -5", img);
    fails_with(NULL, args);
    snprintf(args, sizeof args, "create -f raw '%s'", img);
    fails_with("vdisk: Image creation needs a size parameter\n", args);
    snprintf(args, sizeof args, "create -f nosuchformat '%s' 1M", img);
    fails_with(fmt("vdisk: %s: Unknown file format 'nosuchformat'\n", img), args);
    snprintf(args, sizeof args, "create -f raw -o preallocation=sideways '%s' 1M", img);
    fails_with(fmt("vdisk: %s: invalid preallocation mode 'sideways' for raw (expected "
                   "off, falloc or full)\n", img), args);
    snprintf(args, sizeof args, "create -f raw -o bogus=1 '%s' 1M", img);
    fails_with(fmt("vdisk: %s: Invalid parameter 'bogus'\n", img), args);
    snprintf(args, sizeof args, "create -f raw -o novalue '%s' 1M", img);
    fails_with("vdisk: option 'novalue' has no value (expected "
               "key=value)\n", args);

    const char *missing = scratch("missing.raw");
    snprintf(args, sizeof args, "info '%s'", missing);
    snprintf(want, sizeof want,
             "vdisk: Could not open '%s': No such file or directory\n", missing);
    fails_with(want, args);
    snprintf(args, sizeof args, "info --output=xml '%s'", img);
    fails_with("vdisk: --output must be used with human or json as argument.\n", args);
    snprintf(args, sizeof args, "info --no-such-option '%s'", img);
    fails_with(NULL, args);
    snprintf(args, sizeof args, "info -f qcow99 '%s'", img);
    fails_with("vdisk: unknown format 'qcow99'\n", args);
    snprintf(args, sizeof args, "info '%s'", scratch_dir());
    snprintf(want, sizeof want, "vdisk: %s: is a directory, not an image\n",
             scratch_dir());
    fails_with(want, args);
    fails_with("vdisk: Expecting one image file name\n", "info");
    snprintf(args, sizeof args, "map --start-offset=zz '%s'", img);
    fails_with(NULL, args);
    snprintf(args, sizeof args, "io -t sideways -c flush '%s'", img);
    fails_with("vdisk: invalid cache mode 'sideways' (expected writeback, none, "
               "writethrough, directsync or unsafe)\n", args);
    snprintf(args, sizeof args, "io -i fast -c flush '%s'", img);
    fails_with("vdisk: invalid aio engine 'fast' (expected io_uring, threads or auto)\n", args);
    fails_with("no file open, try 'help open'\n", "io -c flush"); /* as qemu-io */
    snprintf(args, sizeof args, "io -c flush '%s'", missing);
    snprintf(want, sizeof want,
             "vdisk: Could not open '%s': No such file or directory\n", missing);
    fails_with(want, args);
}
END_TEST

/* `vdisk io -c CMD IMG` under the memory bound: exit status 1, exactly
 * OUT on stdout (what qemu-io 7.2 prints) and ERR on stderr (--debug's
 * detail). */
static void io_fails(const char *img, const char *cmd, const char *out, const char *err)
{
    struct run *r = run("%s %s io --debug -c '%s' '%s'", IO_BOUND,
                        vdisk_bin(), cmd, img);
    ck_assert_msg(r->status == 1, "vdisk io -c '%s' exited %d\nstdout: %s\nstderr: %s", cmd,
                  r->status, r->out, r->err);
    ck_assert_msg(strcmp(r->out, out) == 0, "vdisk io -c '%s':\n got: %s want: %s", cmd, r->out,
                  out);
    ck_assert_msg(strcmp(r->err, err) == 0, "vdisk io -c '%s':\n got: %s want: %s", cmd, r->err,
                  err);
}

/* Reads and writes beyond the device fail before a buffer of their length
 * is allocated; long ones in range run in bounded memory. */
START_TEST(io_out_of_range)
{
    char err[512];
    const char *img = scratch("small.qcow2");
    RUN_OK("%s create -q -f qcow2 '%s' 1M", vdisk_bin(), img);
    static const struct {
        const char *cmd, *out, *fn, *what;
        unsigned long long len, off;
    } cases[] = {
        {"read 0 2147483136", "read failed: Input/output error\n", "vdisk_pread", "read",
         2147483136ull, 0},
        {"read 1G 1G", "read failed: Input/output error\n", "vdisk_pread", "read", 1ull << 30,
         1ull << 30},
        {"read 0x7fffffffffffffff 2", "read failed: Input/output error\n", "vdisk_pread", "read",
         2, 0x7fffffffffffffffull},
        {"read -P 0 -s 1M -l 1M 1M 2G", NULL, NULL, NULL, 0, 0},
        {"write -P 1 1T 1G", "write failed: Input/output error\n", "vdisk_pwrite", "write",
         1ull << 30, 1ull << 40},
        {"write -P 1 0 2147483136", "write failed: Input/output error\n", "vdisk_pwrite",
         "write", 2147483136ull, 0},
        {"write -c 0 1G", "write failed: Input/output error\n", "vdisk_pwrite_compressed",
         "write", 1ull << 30, 0},
        {"write -z 1T 1G", "write failed: Input/output error\n", "vdisk_write_zeroes",
         "write_zeroes", 1ull << 30, 1ull << 40},
        {"discard 1T 1G", "discard failed: Input/output error\n", "vdisk_discard", "discard",
         1ull << 30, 1ull << 40},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!cases[i].out) {
            io_fails(img, cases[i].cmd, "length cannot exceed 2147483136, given 2G\n", "");
            continue;
        }
        snprintf(err, sizeof err, "%s: %s: %s of %llu bytes at offset %llu is beyond the end of "
                 "the device (1048576 bytes)\n", cases[i].fn, img, cases[i].what, cases[i].len,
                 cases[i].off);
        io_fails(img, cases[i].cmd, cases[i].out, err);
    }
    /* write -c out of range writes nothing (qemu-io checks the whole range
     * first too): the first clusters stay unallocated. */
    struct run *r = run("%s map --output=json '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(!strstr(r->out, "\"data\": true"), "%s", r->out);

    /* 160 MiB written and read back, above the memory bound. */
    const char *big = scratch("big.qcow2");
    RUN_OK("%s create -q -f qcow2 '%s' 160M", vdisk_bin(), big);
    r = run("%s %s io -c 'write -q -P 0x5a 0 160M' -c 'read -q -P 0x5a 0 160M' "
            "-c 'write -q -c -P 0x33 32M 33M' -c 'read -q -P 0x33 32M 33M' '%s'",
            IO_BOUND, vdisk_bin(), big);
    ck_assert_msg(r->status == 0 && !*r->out && !*r->err, "exit %d\nstdout: %s\nstderr: %s",
                  r->status, r->out, r->err);
    if (have_program("qemu-io"))
        RUN_OK("qemu-io -r -c 'read -q -P 0x5a 0 32M' -c 'read -q -P 0x33 32M 33M' "
               "-c 'read -q -P 0x5a 65M 95M' '%s'", big);
    unlink(big);
}
END_TEST

/* Sizes, offsets and lengths as qemu-img and qemu-io 7.2 read them (one
 * parser, vdisk_parse_size): fractions round to the nearest byte (the old
 * CLI parser truncated 4.2k to 4300), white space and "+" may lead, and
 * what qemu-io refuses is refused with its message. */
START_TEST(sizes_as_qemu)
{
    const char *img = scratch("sizes.raw");
    RUN_OK("%s create -q -f raw '%s' 1M", vdisk_bin(), img);
    static const struct {
        const char *cmd, *first_line;
    } reads[] = {
        {"read 0 4.2k", "read 4301/4301 bytes at offset 0\n"},
        {"read +1k 0.1k", "read 102/102 bytes at offset 1024\n"},
        {"read 0x10 0.00048828125k", "read 1/1 bytes at offset 16\n"},
        {"read 1.5k 0x1e", "read 30/30 bytes at offset 1536\n"},
        {"read 0.5M 1.k", "read 1024/1024 bytes at offset 524288\n"},
    };
    bool qemu_io = have_program("qemu-io");
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        const char *want = reads[i].first_line;
        struct run *r = run("%s io -f raw -c '%s' '%s'", vdisk_bin(), reads[i].cmd, img);
        ck_assert_msg(r->status == 0 && strncmp(r->out, want, strlen(want)) == 0,
                      "vdisk io -c '%s': exit %d\nstdout: %s\nstderr: %s", reads[i].cmd,
                      r->status, r->out, r->err);
        if (!qemu_io)
            continue;
        r = run("qemu-io -f raw -c '%s' '%s'", reads[i].cmd, img);
        ck_assert_msg(r->status == 0 && strncmp(r->out, want, strlen(want)) == 0,
                      "qemu-io -c '%s': exit %d\nstdout: %s", reads[i].cmd, r->status, r->out);
    }
    static const struct {
        const char *cmd, *out;
    } bad[] = {
        {"read 0 1.5",
         "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1.5\n"},
        {"read 0 1kB",
         "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1kB\n"},
        {"read 0 16E", "Parsing error: argument too large -- 16E\n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct run *r = run("%s io -f raw -c '%s' '%s'", vdisk_bin(), bad[i].cmd, img);
        ck_assert_msg(r->status == 1 && !strcmp(r->out, bad[i].out) && !*r->err,
                      "vdisk io -c '%s': exit %d\nstdout: %s\nstderr: %s", bad[i].cmd,
                      r->status, r->out, r->err);
        if (qemu_io) {
            r = run("qemu-io -f raw -c '%s' '%s'", bad[i].cmd, img);
            ck_assert_msg(r->status == 1 && !strcmp(r->out, bad[i].out),
                          "qemu-io -c '%s': exit %d\nstdout: %s", bad[i].cmd, r->status, r->out);
        }
    }

    const char *made = scratch("made.raw");
    struct run *r = run("%s create -f raw '%s' ' +1.5k'", vdisk_bin(), made);
    ck_assert_int_eq(r->status, 0);
    char want[1024];
    snprintf(want, sizeof want, "Formatting '%s', fmt=raw size=1536\n", made);
    ck_assert_str_eq(r->out, want);
}
END_TEST

START_TEST(engine_selection)
{
    const char *img = scratch("e.raw");
    RUN_OK("%s create -q -f raw '%s' 1M", vdisk_bin(), img);
    struct run *r = run("VDISK_ENGINE=threads %s info --debug '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, "engine: threads\n"), "%s", r->out);
    r = run("VDISK_ENGINE=bogus %s info '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: VDISK_ENGINE: unknown engine 'bogus' "
                             "(expected auto, uring or threads)\n");
    r = run("VDISK_ENGINE=uring %s info --debug '%s'", vdisk_bin(), img);
    if (r->status == 0)
        ck_assert_msg(strstr(r->out, "engine: io_uring\n"), "%s", r->out);
    else
        ck_assert_msg(strstr(r->err, "does not allow"), "%s", r->err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-errors");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, help_for_every_verb);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, engine_selection);
    tcase_add_test(tc, io_out_of_range);
    tcase_add_test(tc, sizes_as_qemu);
    tcase_add_test(tc, open_errors_as_qemu);
    tcase_add_test(tc, backing_not_opened);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
