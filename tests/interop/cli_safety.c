/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/cli_safety.c: a failing command leaves files as they were
 * (issue 13 item 6) and a backing file needs its format (item 4, the CLI).
 * create, convert, amend and resize check every option before they touch a
 * target: each failing command here exits 1 with its exact message and the
 * existing file keeps every byte.  A failed convert removes a target it
 * created, never one that was there before (-n or not).  create, convert
 * and rebase refuse -b/-B without -F as qemu-img 7.2 does, with its
 * message ("vdisk" for "qemu-img").
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* qemu-img's warning after its refusal to shrink without --shrink. */
#define SHRINK_WARNING                                                             \
    "vdisk: warning: Shrinking an image will delete all data beyond the shrunken " \
    "image's end. Before performing such an operation, make sure there is no "     \
    "important data there.\n"

#define V vdisk_bin()

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/*
 * Runs "vdisk ARGS" (printf-style) and asserts exit status 1, standard
 * error exactly WANT, and FILE holding exactly the bytes it held before
 * (or, when it did not exist, still missing).
 */
static void fails_unchanged(const char *file, const char *want, const char *args, ...)
    __attribute__((format(printf, 3, 4)));
static void fails_unchanged(const char *file, const char *want, const char *args, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, args);
    vsnprintf(cmd, sizeof cmd, args, ap);
    va_end(ap);
    bool had = exists(file);
    size_t before_len = 0;
    uint8_t *before = had ? read_file(file, &before_len) : NULL;
    struct run *r = run("%s %s", V, cmd);
    ck_assert_msg(r->status == 1, "'vdisk %s' exited %d (expected 1)\nstderr: %s", cmd,
                  r->status, r->err);
    ck_assert_msg(strcmp(r->err, want) == 0, "'vdisk %s':\n got: %s want: %s", cmd, r->err,
                  want);
    /* Nothing is announced either (create's "Formatting" line comes only
     * once the options have passed). */
    ck_assert_msg(r->out[0] == 0, "'vdisk %s' printed: %s", cmd, r->out);
    if (!had) {
        ck_assert_msg(!exists(file), "'vdisk %s' left %s behind", cmd, file);
        return;
    }
    size_t after_len = 0;
    uint8_t *after = read_file(file, &after_len);
    ck_assert_msg(after_len == before_len, "'vdisk %s' changed %s from %zu to %zu bytes", cmd,
                  file, before_len, after_len);
    assert_same_bytes(after, before, after_len, 0, fmt("%s after 'vdisk %s'", file, cmd));
    free(before);
    free(after);
}

/* A file of LEN seeded random bytes. */
static void random_file(const char *path, size_t len, uint64_t seed)
{
    uint8_t *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    fill_random(b, len, &seed);
    write_file(path, b, len);
    free(b);
}

/* ---- create ------------------------------------------------------------ */

/* vdisk create's error on FILE, as qemu-img words it: "vdisk: FILE: MSG\n"
 * (the last four stay valid). */
static const char *on(const char *file, const char *msg)
{
    static char buf[4][1024];
    static unsigned n;
    char *b = buf[n++ % 4];
    snprintf(b, sizeof buf[0], "vdisk: %s: %s\n", file, msg);
    return b;
}

START_TEST(create_checks_before_touching)
{
    const char *f = scratch("keep.img");
    random_file(f, 5000, 1);
    const char *base = scratch("cbase.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", base);
    /* A mistyped option, for each format. */
    fails_unchanged(f, on(f, "Invalid parameter 'bogus'"),
                    "create -q -f raw -o bogus=1 '%s' 1M", f);
    fails_unchanged(f, on(f, "Invalid parameter 'cluster_sise'"),
                    "create -q -f qcow2 -o cluster_sise=1M '%s' 1M", f);
    fails_unchanged(f, on(f, "Invalid parameter 'bogus'"),
                    "create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on,bogus=1 '%s' 1M",
                    f);
    /* Bad values. */
    fails_unchanged(f, on(f, "invalid preallocation mode 'x' for raw (expected off, falloc or "
                          "full)"),
                    "create -q -f raw -o preallocation=x '%s' 1M", f);
    fails_unchanged(f, on(f, "Cluster size must be a power of two between 512 and 2048k"),
                    "create -q -f qcow2 -o cluster_size=3000 '%s' 1M", f);
    fails_unchanged(f, on(f, "Refcount width must be a power of two and may not exceed 64 bits"),
                    "create -q -f qcow2 -o refcount_bits=3 '%s' 1M", f);
    fails_unchanged(f, on(f, "Parameter 'version' does not accept value '2'"),
                    "create -q -f qcow2 -o compat=2 '%s' 1M", f);
    fails_unchanged(f, on(f, "Parameter 'compression-type' does not accept value 'lz4'"),
                    "create -q -f qcow2 -o compression_type=lz4 '%s' 1M", f);
    fails_unchanged(f, on(f, "option 'extended_l2' expects 'on' or 'off', not 'maybe'"),
                    "create -q -f qcow2 -o extended_l2=maybe '%s' 1M", f);
    fails_unchanged(f, on(f, "Parameter 'preallocation' does not accept value 'sideways'"),
                    "create -q -f qcow2 -o preallocation=sideways '%s' 1M", f);
    fails_unchanged(f, on(f, "Lazy refcounts only supported with compatibility level 1.1 and "
                          "above (use version=v3 or greater)"),
                    "create -q -f qcow2 -o compat=0.10,lazy_refcounts=on '%s' 1M", f);
    fails_unchanged(f, on(f, "Unknown file format 'nope'"),
                    "create -q -f nope '%s' 1M", f);
    fails_unchanged(f, on(f, "Backing file not supported for file format 'raw'"),
                    "create -q -f raw -b '%s' -F qcow2 '%s' 1M", base, f);
    fails_unchanged(f, on(f, "Parameter 'backing-fmt' does not accept value 'bogus'"),
                    "create -q -f qcow2 -u -b '%s' -F bogus '%s' 1M", base, f);
    /* Bad sizes. */
    fails_unchanged(f, "vdisk: Invalid image size specified. You may use k, M, G, T, P or E "
                       "suffixes for\nvdisk: kilobytes, megabytes, gigabytes, terabytes, "
                       "petabytes and exabytes.\n",
                    "create -q -f raw '%s' 1Q", f);
    fails_unchanged(f, "vdisk: Image size must be less than 8 EiB!\n",
                    "create -q -f qcow2 '%s' 9E", f);
    fails_unchanged(f, on(f, "The image size is too large for file format 'qcow2' (try using a "
                          "larger cluster size)"),
                    "create -q -f qcow2 -o cluster_size=512 '%s' 1E", f);
    fails_unchanged(f, "vdisk: Image creation needs a size parameter\n", "create -q -f raw '%s'",
                    f);
}
END_TEST

/* ---- convert ----------------------------------------------------------- */

/* A qcow2 image whose compressed clusters are all corrupt: it opens, and
 * reading its first cluster fails. */
static const char *corrupt_source(void)
{
    const char *txt = scratch("text.raw");
    uint8_t *b = malloc(1 << 20);
    uint64_t seed = 7;
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < 1 << 20; i++)
        b[i] = (uint8_t)('a' + (rng_next(&seed) >> 62));
    write_file(txt, b, 1 << 20);
    free(b);
    const char *src = scratch("corrupt.qcow2");
    RUN_OK("qemu-img convert -f raw -O qcow2 -c '%s' '%s'", txt, src);
    /* Header, refcount table and block, L1, L2: the data from 0x50000. */
    size_t len = 0;
    uint8_t *img = read_file(src, &len);
    ck_assert_uint_gt(len, 0x50000);
    /* Only the first compressed cluster is damaged (deflate: a reserved
     * block type), so that the error names it whichever engine reads the
     * clusters in whatever order. */
    memset(img + 0x50000, 0xff, 16);
    write_file(src, img, len);
    free(img);
    return src;
}

START_TEST(convert_checks_before_touching)
{
    const char *src = scratch("src.raw");
    random_file(src, 1 << 20, 2);
    random_file(scratch("other.raw"), 4096, 9);
    const char *dst = scratch("dst.img");
    random_file(dst, 70000, 3);
    const char *base = scratch("vbase.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", base);
    const char *missing = scratch("new.img");
    char want[2048];

    /* Each on an existing target and on a new one. */
    for (int t = 0; t < 2; t++) {
        const char *d = t ? missing : dst;
        fails_unchanged(d, "vdisk: qcow2 does not support the option 'bogus'\n",
                        "convert -f raw -O qcow2 -o bogus=1 '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: Cluster size must be a power of two between "
                           "512 and 2048k\n",
                        "convert -f raw -O qcow2 -o cluster_size=3000 '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: cannot create images of format 'nope'\n",
                        "convert -f raw -O nope '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: Invalid cache option: bogus\n",
                        "convert -f raw -O raw -t bogus '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: Invalid cache option: fast\n",
                        "convert -f raw -O raw -T fast '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: Compression not supported for this file format\n",
                        "convert -f raw -O raw -c '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: Invalid buffer size for sparse output specified. Valid sizes "
                           "are multiples of 512 up to 16 MiB, or 0.\n",
                        "convert -f raw -O raw -S 1000 '%s' '%s'", src, d);
        fails_unchanged(d, "vdisk: Use of backing file requires explicit backing format\n",
                        "convert -f raw -O qcow2 -B '%s' '%s' '%s'", base, src, d);
        snprintf(want, sizeof want, "vdisk: %s: Backing format cannot be used without backing "
                 "file\n", d);
        fails_unchanged(d, want, "convert -f raw -O qcow2 -F qcow2 '%s' '%s'", src, d);
        snprintf(want, sizeof want, "vdisk: Could not open '%s': No such file or "
                 "directory\n", scratch("nonexist.qcow2"));
        fails_unchanged(d, want, "convert -f raw -O qcow2 -B '%s' -F qcow2 '%s' '%s'",
                        scratch("nonexist.qcow2"), src, d);
        fails_unchanged(d, "vdisk: raw does not support the option "
                           "'backing_file'\n",
                        "convert -f raw -O raw -B '%s' -F qcow2 '%s' '%s'", base, src, d);
        snprintf(want, sizeof want, "vdisk: Could not open '%s': No such file or "
                 "directory\n", scratch("nosrc.raw"));
        fails_unchanged(d, want, "convert -f raw -O raw '%s' '%s'", scratch("nosrc.raw"), d);
    }
    /* -n: the target is not created, so -o means nothing; it must be large enough. */
    fails_unchanged(dst, "vdisk: -o has no effect when skipping image creation\n",
                    "convert -n -f raw -O raw -o preallocation=full '%s' '%s'", src, dst);
    snprintf(want, sizeof want, "vdisk: %s: the target (70144 bytes) is smaller than the "
             "sources (1048576 bytes)\n", dst);
    fails_unchanged(dst, want, "convert -n -f raw -O raw '%s' '%s'", src, dst);

    /* The target is never a source or a backing file of one. */
    snprintf(want, sizeof want, "vdisk: %s: the target is the source %s; converting would "
             "overwrite it\n", src, src);
    fails_unchanged(src, want, "convert -f raw -O raw '%s' '%s'", src, src);
    fails_unchanged(src, want, "convert -n -f raw -O raw '%s' '%s'", src, src);
    const char *over = scratch("over.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -b '%s' -F raw '%s'", src, over);
    snprintf(want, sizeof want, "vdisk: %s: the target is a backing file of the source %s; "
             "converting would overwrite it\n", src, over);
    fails_unchanged(src, want, "convert -f qcow2 -O raw '%s' '%s'", over, src);
    snprintf(want, sizeof want, "vdisk: %s: the target is in the backing chain of -B %s; "
             "converting would overwrite it\n", src, over);
    fails_unchanged(src, want, "convert -f raw -O qcow2 -B '%s' -F qcow2 '%s' '%s'", over,
                    scratch("other.raw"), src);
    /* Named by a json: name or by --target-image-opts, the target is the
     * same file, and refused the same. */
    snprintf(want, sizeof want, "vdisk: json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
             "\"filename\":\"%s\"}}: the target is the source %s; converting would overwrite it\n",
             src, src);
    fails_unchanged(src, want, "convert -f raw -O raw '%s' 'json:{\"driver\":\"raw\",\"file\":"
                    "{\"driver\":\"file\",\"filename\":\"%s\"}}'", src, src);
    snprintf(want, sizeof want, "vdisk: json:{\"driver\": \"raw\", \"file.filename\": \"%s\"}: "
             "the target is the source %s; converting would overwrite it\n", src, src);
    fails_unchanged(src, want, "convert -n -f raw --target-image-opts '%s' "
                    "driver=raw,file.filename='%s'", src, src);
}
END_TEST

/* --image-opts and json: names as qemu-img takes them: the same output. */
START_TEST(image_opts_as_qemu_img)
{
    const char *a = scratch("io-a.qcow2"), *b = scratch("io-b.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", a);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0x33 64k 64k' '%s'", a);
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", b);
    char opts[1024], json[1024];
    snprintf(opts, sizeof opts, "driver=qcow2,file.driver=file,file.filename=%s", a);
    snprintf(json, sizeof json, "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\","
             "\"filename\":\"%s\"}}", a);
    static const char *const verbs[] = {"info", "info --output=json", "map", "map --output=json",
                                        "check", "snapshot -l"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        for (int form = 0; form < 2; form++) {
            const char *how = form ? "" : "--image-opts ";
            const char *name = form ? json : opts;
            struct run *q = run("qemu-img %s %s'%s'", verbs[i], how, name);
            char *want = strdup(q->out);
            int qs = q->status;
            struct run *v = run("%s %s %s'%s'", V, verbs[i], how, name);
            ck_assert_msg(v->status == qs, "vdisk %s %s: exit %d, qemu-img %d", verbs[i], how,
                          v->status, qs);
            ck_assert_msg(strcmp(v->out, want) == 0, "vdisk %s %s'%s':\n%s\nqemu-img:\n%s",
                          verbs[i], how, name, v->out, want);
            free(want);
        }
    }
    struct run *r = run("%s compare --image-opts '%s' 'driver=qcow2,file.filename=%s'", V, opts,
                        b);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "Content mismatch at offset 65536!\n");
    RUN_OK("%s convert -n --image-opts --target-image-opts '%s' 'driver=qcow2,file.filename=%s'",
           V, opts, b);
    RUN_OK("qemu-img compare '%s' '%s'", a, b);
    RUN_OK("%s resize --image-opts 'driver=qcow2,file.filename=%s' 2M", V, b);
    r = run("qemu-img info '%s' | grep '^virtual size'", b);
    ck_assert_str_eq(r->out, "virtual size: 2 MiB (2097152 bytes)\n");
    fails_unchanged(b, "vdisk: --image-opts and --format are mutually exclusive\n",
                    "info -f qcow2 --image-opts 'driver=qcow2,file.filename=%s'", b);
    fails_unchanged(b, "vdisk: --target-image-opts requires use of -n flag\n",
                    "convert --target-image-opts '%s' 'driver=qcow2,file.filename=%s'", a, b);
    fails_unchanged(b, "vdisk: Invalid parameter 'file.filename' in --image-opts (expected "
                    "KEY=VALUE)\n", "info --image-opts 'driver=qcow2,file.filename'");
}
END_TEST

/* A convert that fails while copying removes the target it created, and
 * only that one. */
START_TEST(convert_failure_removes_only_its_target)
{
    const char *src = corrupt_source();
    char want[2048];
    snprintf(want, sizeof want, "vdisk: error while reading at byte 0: %s: the compressed cluster at host offset "
             "0x50000 is corrupt (it does not inflate to 65536 bytes)\n", src);
    const char *fresh = scratch("fresh.img");
    for (int o = 0; o < 3; o++) {
        static const char *const outs[] = {"-O raw", "-O qcow2", "-O qcow2 -c"};
        struct run *r = run("%s convert -f qcow2 %s '%s' '%s'", V, outs[o], src, fresh);
        ck_assert_int_eq(r->status, 1);
        ck_assert_str_eq(r->err, want);
        ck_assert_msg(!exists(fresh), "a failed convert %s left its new target", outs[o]);
    }
    /* -n: the target stays (its size too). */
    const char *kept = scratch("kept.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", kept);
    struct run *r = run("%s convert -n -f qcow2 -O qcow2 '%s' '%s'", V, src, kept);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, want);
    ck_assert(exists(kept));
    RUN_OK("qemu-img check -q '%s'", kept);
    /* A file that was there before is not removed either. */
    const char *old = scratch("old.raw");
    random_file(old, 4096, 4);
    r = run("%s convert -f qcow2 -O raw '%s' '%s'", V, src, old);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, want);
    ck_assert(exists(old));
}
END_TEST

/* ---- amend ------------------------------------------------------------- */

START_TEST(amend_checks_before_touching)
{
    const char *img = scratch("amend.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o compat=1.1 '%s' 1M", img);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' -c 'write -z 64k 64k' '%s'", img);
    /* The valid compat change must not happen before the typo is seen. */
    fails_unchanged(img, "vdisk: qcow2 does not support the option 'bogus'\n",
                    "amend -f qcow2 -o compat=0.10,bogus=1 '%s'", img);
    fails_unchanged(img, "vdisk: qcow2 does not support the option 'lazy_refcont'\n",
                    "amend -f qcow2 -o refcount_bits=8,lazy_refcont=on '%s'", img);
    fails_unchanged(img, "vdisk: qcow2 does not support the option 'cluster_size'\n",
                    "amend -f qcow2 -o cluster_size=4096 '%s'", img);
    fails_unchanged(img, "vdisk: The new size must be a multiple of 512\n",
                    "amend -f qcow2 -o compat=0.10,size=1000 '%s'", img);
    fails_unchanged(img, "vdisk: Refcount width must be a power of two and may not "
                         "exceed 64 bits\n",
                    "amend -f qcow2 -o refcount_bits=3 '%s'", img);
    fails_unchanged(img, "vdisk: Unknown compatibility level 2\n",
                    "amend -f qcow2 -o compat=2 '%s'", img);
    fails_unchanged(img, "vdisk: option 'lazy_refcounts' expects 'on' or 'off', "
                         "not 'maybe'\n",
                    "amend -f qcow2 -o lazy_refcounts=maybe '%s'", img);
    fails_unchanged(img, "vdisk: Different refcount widths than 16 bits require "
                         "compatibility level 1.1 or above (use compat=1.1 or greater)\n",
                    "amend -f qcow2 -o compat=0.10,refcount_bits=8 '%s'", img);
    fails_unchanged(img, "vdisk: Must specify options (-o)\n", "amend -f qcow2 '%s'", img);
    fails_unchanged(img, "vdisk: option 'compat' has no value (expected "
                         "key=value)\n",
                    "amend -f qcow2 -o compat '%s'", img);
    const char *raw = scratch("amend.raw");
    random_file(raw, 8192, 5);
    fails_unchanged(raw, "vdisk: Format driver 'raw' does not support option amendment\n",
                    "amend -f raw -o compat=0.10 '%s'", raw);
}
END_TEST

/* ---- resize ------------------------------------------------------------ */

START_TEST(resize_checks_before_touching)
{
    const char *img = scratch("rs.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", img);
    RUN_OK("qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' '%s'", img);
    RUN_OK("qemu-img snapshot -c s1 '%s'", img);
    const char *raw = scratch("rs.raw");
    random_file(raw, 1 << 20, 6);
    char want[1024];
    fails_unchanged(img, "vdisk: Invalid size specified. You may use k, M, G, T, P or E suffixes "
                         "for kilobytes, megabytes, gigabytes, terabytes, petabytes and "
                         "exabytes.\n",
                    "resize -f qcow2 '%s' +1Q", img);
    fails_unchanged(img, "vdisk: Use the --shrink option to perform a shrink operation.\n"
                  SHRINK_WARNING,
                    "resize -f qcow2 '%s' 512k", img);
    fails_unchanged(img, "vdisk: Use the --shrink option to perform a shrink operation.\n"
                  SHRINK_WARNING,
                    "resize -f qcow2 '%s' -- -512", img);
    fails_unchanged(img, "vdisk: New image size must be positive\n",
                    "resize -f qcow2 '%s' -- -2M", img);
    const char *v2 = scratch("rs2.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o compat=0.10 '%s' 1M && qemu-img snapshot -c s1 '%s'",
           v2, v2);
    fails_unchanged(v2, "vdisk: Can't resize a v2 image which has snapshots\n",
                    "resize -f qcow2 --shrink '%s' 512k", v2);
    snprintf(want, sizeof want, "vdisk: %s: 1152921504606846976 bytes need an L1 "
             "table larger than 33554432 bytes\n", img);
    fails_unchanged(img, want, "resize -f qcow2 '%s' 1E", img);
    fails_unchanged(img, "vdisk: Preallocation can only be used for growing images\n",
                    "resize -f qcow2 --preallocation=falloc '%s' 1M", img);
    snprintf(want, sizeof want, "vdisk: %s: size 9223372036854775808 is too "
             "large\n", raw);
    fails_unchanged(raw, want, "resize -f raw '%s' 8E", raw);
    /* A +SIZE that wraps around 2^64 once shrank the image. */
    snprintf(want, sizeof want, "vdisk: %s: size 1048576 + 18446744073709547520 is too large\n",
             raw);
    fails_unchanged(raw, want, "resize -f raw --shrink '%s' +0xfffffffffffff000", raw);
    snprintf(want, sizeof want, "vdisk: Image is not in qcow2 format\n");
    fails_unchanged(raw, want, "resize -f qcow2 '%s' 2M", raw);
    fails_unchanged(raw, "vdisk: unknown format 'bogus'\n",
                    "resize -f bogus '%s' 2M", raw);
}
END_TEST

/* ---- Backing files need their format (item 4) -------------------------- */

/* vdisk's message is qemu-img 7.2's with "vdisk" for "qemu-img" (and the
 * line qemu-img leaves unterminated ended). */
static void same_message_as_qemu_img(const char *qemu_args, const char *vdisk_args,
                                     const char *file)
{
    struct run *r = run("qemu-img %s", qemu_args);
    ck_assert_int_eq(r->status, 1);
    char want[2048];
    const char *q = r->err;
    ck_assert_msg(strncmp(q, "qemu-img: ", 10) == 0, "%s", q);
    snprintf(want, sizeof want, "vdisk: %s%s", q + 10,
             *q && q[strlen(q) - 1] == '\n' ? "" : "\n");
    fails_unchanged(file, want, "%s", vdisk_args);
}

START_TEST(backing_needs_format)
{
    const char *bq = scratch("bq.qcow2"), *br = scratch("br.raw"), *ov = scratch("ov.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", bq);
    random_file(br, 1 << 20, 8);
    const char *cases[][2] = {
        {"-b '%s'", NULL}, {"-u -b '%s'", "1M"}, {"-o backing_file='%s'", NULL},
    };
    const char *bases[] = {bq, br};
    for (unsigned b = 0; b < 2; b++) {
        for (unsigned c = 0; c < 3; c++) {
            char opt[1024], qa[2048], va[2048];
            snprintf(opt, sizeof opt, cases[c][0], bases[b]);
            snprintf(qa, sizeof qa, "create -q -f qcow2 %s '%s' %s", opt, ov,
                     cases[c][1] ? cases[c][1] : "");
            snprintf(va, sizeof va, "create -q -f qcow2 %s '%s' %s", opt, ov,
                     cases[c][1] ? cases[c][1] : "");
            same_message_as_qemu_img(qa, va, ov);
        }
    }
    char want[1024];
    snprintf(want, sizeof want, "vdisk: %s: Backing file specified without backing format\n"
             "Detected format of qcow2.\n", ov);
    fails_unchanged(ov, want, "create -q -f qcow2 -b '%s' '%s'", bq, ov);
    snprintf(want, sizeof want, "vdisk: %s: Backing format cannot be used without backing "
             "file\n", ov);
    fails_unchanged(ov, want, "create -q -f qcow2 -F qcow2 '%s' 1M", ov);
    /* qemu-img's two lines */
    snprintf(want, sizeof want, "vdisk: %s: Could not open '%s': No such file or "
             "directory\nCould not open backing image.\n", ov, scratch("nonexist.qcow2"));
    fails_unchanged(ov, want, "create -q -f qcow2 -b '%s' '%s'", scratch("nonexist.qcow2"), ov);
    /* With -F, the overlay reads the base's data, not its header. */
    RUN_OK("%s create -q -f qcow2 -b '%s' -F raw '%s'", V, br, ov);
    RUN_OK("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", br, ov);

    /* rebase, safe and unsafe: the image keeps every byte. */
    const char *nb = scratch("nb.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 1M", nb);
    for (int u = 0; u < 2; u++) {
        char qa[2048], va[2048];
        snprintf(qa, sizeof qa, "rebase -f qcow2 %s -b '%s' '%s'", u ? "-u" : "", nb, ov);
        snprintf(va, sizeof va, "rebase -f qcow2 %s -b '%s' '%s'", u ? "-u" : "", nb, ov);
        same_message_as_qemu_img(qa, va, ov);
    }
    snprintf(want, sizeof want, "vdisk: Could not change the backing file to '%s': backing "
             "format must be specified\n", nb);
    fails_unchanged(ov, want, "rebase -f qcow2 -u -b '%s' '%s'", nb, ov);
    snprintf(want, sizeof want, "vdisk: Could not open new backing file '%s': vdisk_open: Could "
             "not open '%s': No such file or directory\n", scratch("nonexist.qcow2"),
             scratch("nonexist.qcow2"));
    fails_unchanged(ov, want, "rebase -f qcow2 -b '%s' '%s'", scratch("nonexist.qcow2"), ov);
    fails_unchanged(ov, "vdisk: unknown backing format 'bogus'\n",
                    "rebase -f qcow2 -u -b '%s' -F bogus '%s'", nb, ov);
    fails_unchanged(ov, "vdisk: unknown format 'bogus'\n",
                    "rebase -f qcow2 -b '%s' -F bogus '%s'", nb, ov);
    /* With -F it works, as before. */
    RUN_OK("%s rebase -f qcow2 -b '%s' -F qcow2 '%s'", V, nb, ov);
    RUN_OK("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", br, ov);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("cli-safety");
    TCase *tc = tcase_create("safety");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, create_checks_before_touching);
    tcase_add_test(tc, convert_checks_before_touching);
    tcase_add_test(tc, convert_failure_removes_only_its_target);
    tcase_add_test(tc, image_opts_as_qemu_img);
    tcase_add_test(tc, amend_checks_before_touching);
    tcase_add_test(tc, resize_checks_before_touching);
    tcase_add_test(tc, backing_needs_format);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
