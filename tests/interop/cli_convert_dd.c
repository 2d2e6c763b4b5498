/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_convert_dd.c: vdisk dd and convert's -C, --salvage,
 * --target-is-zero, -r and -U against qemu-img 7.2 (issue 21, item 2).
 *
 * Each case runs qemu-img and vdisk side by side on the same inputs: the
 * same command in two folders (scratch/q for qemu-img, scratch/v for
 * vdisk; the inputs one folder up), so that the names in the messages are
 * the same.  Their exit statuses, standard output and standard error (with
 * "qemu-img" read as "vdisk") must be equal, and so must the images they
 * write: byte for byte for raw outputs, by `qemu-img compare -s` (data and
 * allocation) for the others.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* S with every "qemu-img" read as "vdisk" (malloc'd). */
static char *as_vdisk_words(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    ck_assert_ptr_nonnull(out);
    while (*s) {
        if (strncmp(s, "qemu-img", 8) == 0) {
            o = stpcpy(o, "vdisk");
            s += 8;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* Runs PRE (a shell command, or NULL) then `TOOL ARGS` in scratch/q with
 * qemu-img and in scratch/v with vdisk; asserts the same status and the
 * same words.  Returns the status. */
static int same_run(const char *pre, const char *args)
{
    RUN_OK("cd '%s' && rm -rf q v && mkdir q v", scratch_dir());
    struct run *r = run("cd '%s/q' && %s%s qemu-img %s", scratch_dir(), pre ? pre : "",
                        pre ? " &&" : "", args);
    int qst = r->status;
    char *qout = as_vdisk_words(r->out), *qerr = as_vdisk_words(r->err);
    r = run("cd '%s/v' && %s%s '%s' %s", scratch_dir(), pre ? pre : "", pre ? " &&" : "",
            vdisk_bin(), args);
    ck_assert_msg(strcmp(qout, r->out) == 0, "%s: stdout differs\nqemu-img:\n%s\nvdisk:\n%s",
                  args, qout, r->out);
    ck_assert_msg(strcmp(qerr, r->err) == 0, "%s: stderr differs\nqemu-img:\n%s\nvdisk:\n%s",
                  args, qerr, r->err);
    ck_assert_msg(qst == r->status, "%s: exit status: qemu-img %d, vdisk %d", args, qst,
                  r->status);
    free(qout);
    free(qerr);
    return qst;
}

/* NAME in scratch/q and scratch/v: both there or both missing, and the
 * same bytes. */
static void same_bytes(const char *name, const char *what)
{
    struct run *r = run("cd '%s' && test -e 'q/%s'", scratch_dir(), name);
    bool q = r->status == 0;
    r = run("cd '%s' && test -e 'v/%s'", scratch_dir(), name);
    ck_assert_msg(q == (r->status == 0), "%s: %s made by %s only", what, name,
                  q ? "qemu-img" : "vdisk");
    if (!q)
        return;
    size_t qn, vn;
    uint8_t *qb = read_file(fmt("%s/q/%s", scratch_dir(), name), &qn);
    uint8_t *vb = read_file(fmt("%s/v/%s", scratch_dir(), name), &vn);
    ck_assert_msg(qn == vn, "%s: sizes differ: qemu-img %zu, vdisk %zu", what, qn, vn);
    assert_same_bytes(vb, qb, qn, 0, what);
    free(qb);
    free(vb);
}

/* NAME in scratch/q and scratch/v: the same data, sizes and allocation. */
static void same_image(const char *name, const char *what)
{
    struct run *r = run("cd '%s' && qemu-img compare -s 'q/%s' 'v/%s'", scratch_dir(), name,
                        name);
    ck_assert_msg(r->status == 0, "%s: qemu-img compare -s: %s%s", what, r->out, r->err);
}

/* The allocation map of a raw NAME, as qemu-img map prints it, is the same
 * in both folders. */
static void same_map(const char *name, const char *what)
{
    struct run *r = run("cd '%s/q' && qemu-img map -f raw --output=json '%s'", scratch_dir(),
                        name);
    ck_assert_int_eq(r->status, 0);
    char *q = strdup(r->out);
    r = run("cd '%s/v' && qemu-img map -f raw --output=json '%s'", scratch_dir(), name);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strcmp(q, r->out) == 0, "%s: maps differ\nqemu-img:\n%s\nvdisk:\n%s", what, q,
                  r->out);
    free(q);
}

/* A raw input of SIZE bytes: random data with runs of zeroes and holes. */
static void make_input(const char *name, size_t size, uint64_t *seed)
{
    uint8_t *b = calloc(1, size ? size : 1);
    ck_assert_ptr_nonnull(b);
    fill_random(b, size, seed);
    for (int i = 0; i < 4 && size; i++) {
        size_t off = rng_next(seed) % size, len = rng_next(seed) % (size / 3 + 1);
        memset(b + off, 0, off + len > size ? size - off : len);
    }
    write_file(scratch(name), b, size);
    free(b);
}

/* dd: bs, count and skip of every shape (odd, larger than the input,
 * past its end), over inputs of odd sizes; the outputs byte for byte. */
START_TEST(dd_data_property)
{
    static const size_t sizes[] = {0, 1, 511, 4097, 10000, 65537, 1048576 + 3};
    static const unsigned bss[] = {1, 7, 512, 1000, 4096, 65536, 1048577};
    uint64_t seed = 21;
    unsigned runs = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t size = sizes[i];
        make_input("in.raw", size, &seed);
        for (size_t k = 0; k < sizeof bss / sizeof bss[0]; k++) {
            unsigned bs = bss[k];
            if (bs < 512 && size > 10000)
                continue; /* qemu-img reads one block at a time: slow */
            uint64_t blocks = size / bs + 2;
            /* Three of the four shapes (none, count, skip, both), in turn. */
            for (int t = 0; t < 3; t++) {
                int shape = (int)((i + k + (size_t)t) % 4);
                char args[256];
                int n = snprintf(args, sizeof args, "dd bs=%u", bs);
                if (shape == 1 || shape == 3)
                    n += snprintf(args + n, sizeof args - (size_t)n, " count=%" PRIu64,
                                  rng_next(&seed) % blocks);
                if (shape >= 2)
                    n += snprintf(args + n, sizeof args - (size_t)n, " skip=%" PRIu64,
                                  rng_next(&seed) % blocks);
                snprintf(args + n, sizeof args - (size_t)n, " if=../in.raw of=out");
                same_run(NULL, args);
                same_bytes("out", fmt("%s (input of %zu bytes)", args, size));
                runs++;
            }
        }
        /* The default block size, no operands but the files. */
        same_run(NULL, "dd if=../in.raw of=out");
        same_bytes("out", fmt("dd, input of %zu bytes", size));
    }
    ck_assert_uint_gt(runs, 100);
}
END_TEST

/* dd from a qcow2 input (holes, compressed clusters) to every format
 * qemu-img and vdisk both create: the same data, size and allocation
 * (dd writes every block, zeroes too). */
START_TEST(dd_formats)
{
    uint64_t seed = 7;
    make_input("in.raw", 300000, &seed);
    RUN_OK("cd '%s' && qemu-img convert -c -O qcow2 in.raw in.qcow2", scratch_dir());
    static const char *const formats[] = {"raw", "qcow2", "vdi", "vpc", "vmdk", "vhdx"};
    static const char *const shapes[] = {"", "bs=1000 count=7", "bs=4k skip=3",
                                         "bs=3 skip=5 count=1000", "bs=64k count=2 skip=1"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            char *args = fmt("dd -f qcow2 -O %s %s if=../in.qcow2 of=out", formats[f],
                             shapes[s]);
            ck_assert_int_eq(same_run(NULL, args), 0);
            same_image("out", args);
        }
    /* --image-opts and -U take the input as qemu-img takes it. */
    same_run(NULL, "dd --image-opts if=driver=qcow2,file.filename=../in.qcow2 of=out");
    same_bytes("out", "dd --image-opts");
    same_run(NULL, "dd -U bs=4k count=5 if=../in.qcow2 of=out");
    same_bytes("out", "dd -U");
    same_run(NULL, "dd --force-share bs=4k if=../in.qcow2 of=out");
    same_bytes("out", "dd --force-share");
}
END_TEST

/* dd's refusals: qemu-img's messages and exit statuses, nothing made. */
START_TEST(dd_errors)
{
    uint64_t seed = 3;
    make_input("in.raw", 10000, &seed);
    static const char *const cases[] = {
        "dd bs=0 if=../in.raw of=out",
        "dd bs=abc if=../in.raw of=out",
        "dd bs=3G if=../in.raw of=out",
        "dd bs=2G if=../in.raw of=out",
        "dd bs=1k count=1.5 if=../in.raw of=out",
        "dd count=-1 if=../in.raw of=out",
        "dd count=abc if=../in.raw of=out",
        "dd skip=x if=../in.raw of=out",
        "dd skip=99999999999999999999 if=../in.raw of=out",
        "dd if=../in.raw",
        "dd of=out",
        "dd",
        "dd foo if=../in.raw of=out",
        "dd foo=1 if=../in.raw of=out",
        "dd if=../in.raw of=out bar",
        "dd -x if=../in.raw of=out",
        "dd --bogus if=../in.raw of=out",
        "dd -f",
        "dd if=../in.raw of=out -O",
        "dd -O nosuch if=../in.raw of=out",
        "dd -O bochs if=../in.raw of=out",
        "dd --image-opts -f raw if=../in.raw of=out",
        "dd if=../in.raw of=/nonexistent-dir/out",
        "dd if=../in.raw of=.",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(same_run(NULL, cases[i]), 1);
        same_bytes("out", cases[i]);
    }
    /* An input that cannot be opened: both fail (the library's words for
     * why are vdisk's own), and no output is made. */
    static const char *const opens[] = {"dd if=nonexistent of=out",
                                        "dd -f qcow2 if=../in.raw of=out"};
    for (size_t i = 0; i < sizeof opens / sizeof opens[0]; i++) {
        RUN_OK("cd '%s' && rm -rf q v && mkdir q v", scratch_dir());
        struct run *r = run("cd '%s/q' && qemu-img %s", scratch_dir(), opens[i]);
        ck_assert_int_eq(r->status, 1);
        r = run("cd '%s/v' && '%s' %s", scratch_dir(), vdisk_bin(), opens[i]);
        ck_assert_int_eq(r->status, 1);
        ck_assert_msg(strncmp(r->err, "vdisk: ", 7) == 0 && strchr(r->err, '\n') ==
                      r->err + strlen(r->err) - 1, "%s: %s", opens[i], r->err);
        same_bytes("out", opens[i]);
    }
    /* A skip past the input's end: an empty output, a message, status 0. */
    ck_assert_int_eq(same_run(NULL, "dd bs=1000 skip=11 if=../in.raw of=out"), 0);
    same_bytes("out", "skip past the end");
    /* An existing output is overwritten (truncated) as qemu-img does. */
    ck_assert_int_eq(same_run("head -c 50000 /dev/urandom > out", "dd bs=4k if=../in.raw of=out"),
                     0);
    same_bytes("out", "dd over an existing file");
}
END_TEST

/* vdisk dd never writes over its input (qemu-img truncates it first and
 * copies zeroes): refused, the input unchanged. */
START_TEST(dd_refuses_its_input)
{
    uint64_t seed = 5;
    make_input("in.raw", 10000, &seed);
    RUN_OK("cd '%s' && cp in.raw keep.raw && qemu-img create -q -f qcow2 -b in.raw -F raw "
           "top.qcow2", scratch_dir());
    struct run *r = run("cd '%s' && '%s' dd if=in.raw of=in.raw", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, "vdisk: in.raw: the output is the input in.raw (or in its backing "
                     "chain); dd would overwrite it\n");
    r = run("cd '%s' && '%s' dd if=top.qcow2 of=./in.raw", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    RUN_OK("cd '%s' && cmp in.raw keep.raw", scratch_dir());
}
END_TEST

/* convert -C: the same bytes and allocation as qemu-img's copy offloading
 * (raw to raw with copy_file_range, seen with strace where it is; qcow2
 * too); refused by the kernel (EXDEV injected), the copy falls back. */
START_TEST(convert_copy_offload)
{
    uint64_t seed = 11;
    make_input("in.raw", 3000000, &seed);
    RUN_OK("cd '%s' && truncate -s 8M in.raw && qemu-img convert -O qcow2 in.raw in.qcow2",
           scratch_dir());
    ck_assert_int_eq(same_run(NULL, "convert -C ../in.raw out"), 0);
    same_bytes("out", "convert -C raw to raw");
    same_map("out", "convert -C raw to raw");
    ck_assert_int_eq(same_run(NULL, "convert -C -O qcow2 ../in.raw out"), 0);
    same_image("out", "convert -C raw to qcow2");
    ck_assert_int_eq(same_run(NULL, "convert -C -f qcow2 ../in.qcow2 out"), 0);
    same_bytes("out", "convert -C qcow2 to raw");
    ck_assert_int_eq(same_run("qemu-img create -q -f raw out 8M", "convert -C -n ../in.raw out"),
                     0);
    same_bytes("out", "convert -C -n");
    ck_assert_int_eq(same_run(NULL, "convert -C ../in.raw ../in.raw out"), 0);
    same_bytes("out", "convert -C of two sources");
    if (!have_program("strace")) {
        skip_note("strace is missing: copy_file_range is not seen being called");
        return;
    }
    /* With more than one thread (the threads engine) strace starts each
     * line with "[pid N] ".  LeakSanitizer cannot stop a traced process's
     * threads at exit: under strace (only here) an ASan build does not
     * look for leaks; the same conversions run untraced above. */
#define NO_LSAN "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "
    struct run *r = run("cd '%s' && rm -f s.raw && " NO_LSAN "strace -f -qq -e "
                        "trace=copy_file_range '%s' convert -C in.raw s.raw 2>&1 >/dev/null | "
                        "grep -c "
                        "'^\\(\\[pid *[0-9]*\\] \\)\\{0,1\\}copy_file_range(.*= [0-9]'",
                        scratch_dir(), vdisk_bin());
    ck_assert_msg(atoi(r->out) >= 1, "no copy_file_range call: %s", r->out);
    RUN_OK("cd '%s' && cmp in.raw s.raw && rm s.raw && " NO_LSAN "strace -f -qq -o /dev/null "
           "-e trace=copy_file_range -e inject=copy_file_range:error=EXDEV '%s' convert -C "
           "in.raw s.raw && cmp in.raw s.raw", scratch_dir(), vdisk_bin());
}
END_TEST

/* convert's refusals of the new options, in qemu-img's order and words
 * (--target-is-zero with -B exits 0 in qemu-img 7.2, and so here). */
START_TEST(convert_refusals)
{
    uint64_t seed = 13;
    make_input("in.raw", 10000, &seed);
    static const char *const cases[] = {
        "convert -C -c -O qcow2 ../in.raw out",
        "convert -c -C ../in.raw out",
        "convert -C -S 4k ../in.raw out",
        "convert -C -S 0 ../in.raw out",
        "convert -C --salvage ../in.raw out",
        "convert -C -S 4k --salvage -c ../in.raw out",
        "convert --target-is-zero ../in.raw out",
        "convert --target-is-zero --target-image-opts ../in.raw out",
        "convert -n --target-is-zero -o cluster_size=4k ../in.raw out",
        "convert -r abc ../in.raw out",
        "convert -r -1 ../in.raw out",
        "convert -r 1.5 ../in.raw out",
        "convert -r 99999999999999999999 ../in.raw out",
        "convert -r 8E ../in.raw out",
        "convert -r",
        "convert",
        "convert ../in.raw",
        "convert -C",
        "convert -x ../in.raw out",
        "convert --bogus ../in.raw out",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(same_run(NULL, cases[i]), 1);
        same_bytes("out", cases[i]);
    }
    ck_assert_int_eq(same_run("cp ../in.raw out", "convert --target-is-zero -n -B ../in.raw "
                              "-F raw ../in.raw out"), 0);
    same_bytes("out", "--target-is-zero -n -B");
}
END_TEST

/* A qcow2 image whose third cluster is compressed and corrupt (reads of
 * it fail with EIO in both tools). */
static void make_corrupt(const char *name)
{
    char *text = malloc(1 << 20);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < (1u << 20); i++)
        text[i] = "block 0123456789 \n"[i % 18] + (char)(i / 18 % 3);
    write_file(scratch("text.raw"), text, 1 << 20);
    free(text);
    RUN_OK("cd '%s' && rm -f '%s' && qemu-img convert -c -O qcow2 text.raw '%s'", scratch_dir(),
           name, name);
    size_t n;
    uint8_t *b = read_file(scratch(name), &n);
    uint64_t be = 0, l1 = 0, l2 = 0, e = 0;
    unsigned cb = 0;
    for (int i = 0; i < 4; i++)
        cb = cb << 8 | b[20 + i];
    for (int i = 0; i < 8; i++)
        l1 = l1 << 8 | b[40 + i];
    ck_assert_uint_lt(l1 + 8, n);
    for (int i = 0; i < 8; i++)
        be = be << 8 | b[l1 + (unsigned)i];
    l2 = be & 0x00fffffffffffe00ULL;
    ck_assert_uint_lt(l2 + 24, n);
    for (int i = 0; i < 8; i++)
        e = e << 8 | b[l2 + 16 + (unsigned)i];
    ck_assert_msg(e >> 62 == 1, "cluster 2 is not compressed: %" PRIx64, e);
    uint64_t host = e & ((1ULL << (62 - (cb - 8))) - 1);
    ck_assert_uint_lt(host + 64, n);
    memset(b + host, 0xff, 64);
    write_file(scratch(name), b, n);
    free(b);
}

/* convert --salvage: every unreadable sector warned of in qemu-img's
 * words (none with -q), written as zeroes; the rest copied; status 0.
 * Without it, both fail. */
START_TEST(convert_salvage)
{
    make_corrupt("bad.qcow2");
    ck_assert_int_eq(same_run(NULL, "convert --salvage ../bad.qcow2 out"), 0);
    same_bytes("out", "convert --salvage");
    ck_assert_int_eq(same_run(NULL, "convert --salvage -q ../bad.qcow2 out"), 0);
    same_bytes("out", "convert --salvage -q");
    /* (raw: qemu-img compare -s of qcow2 outputs would flag extents that
     * merely end elsewhere in the file, their EOF flag) */
    ck_assert_int_eq(same_run(NULL, "convert --salvage -m 1 ../bad.qcow2 ../text.raw out"), 0);
    same_bytes("out", "convert --salvage of two sources");
    same_map("out", "convert --salvage of two sources");
    /* The unreadable cluster reads as zeroes in the output, the rest as
     * the sources. */
    RUN_OK("cd '%s' && cmp -n 131072 text.raw v/out && cmp -i 196608 -n 851968 text.raw v/out "
           "&& cmp -i 0:1048576 text.raw v/out && test \"$(head -c 196608 v/out | tail -c 65536 | "
           "tr -d '\\0' | wc -c)\" = 0",
           scratch_dir());
    ck_assert_int_eq(same_run(NULL, "convert --salvage -O qcow2 ../bad.qcow2 out"), 0);
    same_image("out", "convert --salvage to qcow2");
    RUN_OK("cd '%s' && rm -rf q v && mkdir q v", scratch_dir());
    struct run *r = run("cd '%s/q' && qemu-img convert ../bad.qcow2 out", scratch_dir());
    ck_assert_int_eq(r->status, 1);
    r = run("cd '%s/v' && '%s' convert ../bad.qcow2 out", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    /* (the same offset as qemu-img's; the reason in the library's words) */
    ck_assert_msg(!strncmp(r->err, "vdisk: error while reading at byte 131072: ", 43), "%s",
                  r->err);
}
END_TEST

/* convert --target-is-zero -n: zeroes are not written to the target (a
 * raw file or a qcow2 image that reads as zeroes), as qemu-img. */
START_TEST(convert_target_is_zero)
{
    uint64_t seed = 17;
    make_input("in.raw", 1 << 20, &seed);
    RUN_OK("cd '%s' && truncate -s 4M in.raw", scratch_dir());
    ck_assert_int_eq(same_run("truncate -s 4M out", "convert --target-is-zero -n ../in.raw out"),
                     0);
    same_bytes("out", "--target-is-zero raw");
    same_map("out", "--target-is-zero raw");
    ck_assert_int_eq(same_run("qemu-img create -q -f qcow2 out 4M",
                              "convert --target-is-zero -n -O qcow2 ../in.raw out"), 0);
    same_image("out", "--target-is-zero qcow2");
    /* (a target that does not read as zeroes keeps what it had where the
     * source reads as zeroes: the user said it was zero) */
    ck_assert_int_eq(same_run("head -c 4194304 /dev/zero | tr '\\0' x > out",
                              "convert --target-is-zero -n ../in.raw out"), 0);
    same_bytes("out", "--target-is-zero over data");
}
END_TEST

/* convert -r: a rate that qemu-img takes converts the same bytes (no
 * timing is asserted); -U is taken. */
START_TEST(convert_rate_and_share)
{
    uint64_t seed = 19;
    make_input("in.raw", 300000, &seed);
    static const char *const cases[] = {
        "convert -r 0 ../in.raw out",
        "convert -r 1k ../in.raw out",
        "convert -r 1.5M ../in.raw out",
        "convert -r 0x100000 -O qcow2 -c ../in.raw out",
        "convert -r 64M -C ../in.raw out",
        "convert -U ../in.raw out",
        "convert --force-share -r 1G ../in.raw out",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(same_run(NULL, cases[i]), 0);
        same_image("out", cases[i]);
    }
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    Suite *s = suite_create("cli-convert-dd");
    TCase *tc = tcase_create("cli-convert-dd");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, dd_data_property);
    tcase_add_test(tc, dd_formats);
    tcase_add_test(tc, dd_errors);
    tcase_add_test(tc, dd_refuses_its_input);
    tcase_add_test(tc, convert_copy_offload);
    tcase_add_test(tc, convert_refusals);
    tcase_add_test(tc, convert_salvage);
    tcase_add_test(tc, convert_target_is_zero);
    tcase_add_test(tc, convert_rate_and_share);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
