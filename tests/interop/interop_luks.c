/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_luks.c: encrypted images against qemu-img 7.2,
 * qemu-io and cryptsetup: raw LUKS images (QEMU's "luks" format) and qcow2
 * with encrypt.format=luks, made by qemu-img and written by qemu-io, read
 * byte for byte by vdisk (CLI and library), and the reverse; every cipher,
 * mode, IV generator and hash qemu-img 7.2 creates here; convert into and
 * out of encryption; cryptsetup luksDump's fields of vdisk's headers;
 * wrong and missing passphrases and hostile headers refused with exact
 * messages; qcow2's legacy AES method as qemu-img 7.2 makes and reads it.  Key slots are made with iter-time=10 (milliseconds) to keep
 * the test quick.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define PASS "correct horse battery staple"
#define OBJ "--object secret,id=sec0,file=pw"

static void write_pw(void)
{
    write_file(scratch("pw"), PASS, strlen(PASS));
}

/* The image opened through the library with the passphrase. */
static int open_enc(vdisk_dev **d, const char *format, const char *path, const char *pass,
                    bool rw)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", format), 0);
    if (!rw)
        ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    if (pass) {
        ck_assert_int_eq(vdisk_options_set(o, "secret.k", pass), 0);
        ck_assert_int_eq(vdisk_options_set(o, strcmp(format, "luks") ? "encrypt.key-secret"
                                                                    : "key-secret", "k"), 0);
    }
    int r = vdisk_open(d, path, o);
    vdisk_options_free(o);
    return r;
}

/* The whole disk through the library equals the raw file RAW. */
static void library_reads_as(const char *format, const char *img, const char *raw)
{
    vdisk_dev *d = NULL;
    int r = open_enc(&d, format, scratch(img), PASS, false);
    ck_assert_msg(r == 0, "open %s: %s", img, vdisk_get_error());
    size_t len;
    uint8_t *want = read_file(scratch(raw), &len);
    ck_assert_uint_eq(vdisk_get_size(d), len);
    uint8_t *got = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(vdisk_pread(d, got, len, 0), 0);
    assert_same_bytes(want, got, len, 0, img);
    free(got);
    free(want);
    vdisk_close(d);
}

static const char *image_opts(const char *format, const char *file)
{
    return fmt("driver=%s,file.filename=%s,%s=sec0", format, file,
               strcmp(format, "luks") ? "encrypt.key-secret" : "key-secret");
}

/* qemu-img's -o for encryption options OPTS of FORMAT. */
static const char *create_opts(const char *format, const char *opts)
{
    const char *p = strcmp(format, "luks") ? "encrypt." : "";
    char *o = fmt("%s%s%skey-secret=sec0,%siter-time=10", strcmp(format, "luks") ?
                  "encrypt.format=luks," : "", "", p, p);
    if (!*opts)
        return o;
    /* Each option of OPTS with the prefix. */
    char *copy = strdup(opts), *out = strdup(o);
    for (char *t = strtok(copy, ","); t; t = strtok(NULL, ",")) {
        char *n = fmt("%s,%s%s", out, p, t);
        free(out);
        out = strdup(n);
    }
    free(copy);
    char *r = fmt("%s", out);
    free(out);
    return r;
}

/* Cipher settings qemu-img 7.2 creates here (the 192-bit keys of modes
 * other than XTS make it assert: 24 * 4000 bytes are not whole sectors). */
static const char *const ciphers[] = {
    "",
    "cipher-alg=aes-128,cipher-mode=xts",
    "cipher-alg=aes-192,cipher-mode=xts",
    "cipher-alg=aes-256,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256",
    "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain64",
    "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain",
    "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=md5",
    "cipher-alg=aes-256,cipher-mode=ecb",
    "cipher-alg=aes-256,cipher-mode=ctr",
    "cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=essiv,ivgen-hash-alg=sha256",
    "cipher-alg=serpent-256,cipher-mode=xts",
    "cipher-alg=serpent-128,cipher-mode=cbc",
    "cipher-alg=serpent-192,cipher-mode=xts",
    "cipher-alg=twofish-128,cipher-mode=xts",
    "cipher-alg=twofish-256,cipher-mode=cbc",
    "cipher-alg=twofish-128,cipher-mode=ctr,hash-alg=sha512",
    "cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=plain",
    "hash-alg=sha1",
    "hash-alg=sha224",
    "hash-alg=sha384",
    "hash-alg=ripemd160",
};

#define WRITES "-c 'write -P 0x5a 1536 70000' -c 'write -P 0xa5 1M 64k' -c 'write -z 2M 4k' " \
               "-c 'write -P 0x3c 3000k 72k'"

/* The settings of ciphers[] whose images qemu-img makes here (each of its
 * creates spends a second measuring PBKDF2, so not all of them): one of
 * each cipher, mode, IV generator and hash family. */
static const unsigned qemu_made[] = {0, 3, 5, 7, 8, 12, 16, 20};

/* An image made by qemu-img and written by qemu-io reads the same through
 * vdisk's library, vdisk io and vdisk convert as through qemu-img convert. */
static void qemu_made_read_by_vdisk(const char *format)
{
    write_pw();
    for (size_t k = 0; k < sizeof qemu_made / sizeof qemu_made[0]; k++) {
        size_t i = qemu_made[k];
        RUN_OK("cd '%s' && rm -f q.img && qemu-img create -q -f %s " OBJ " -o %s q.img 4M",
               scratch_dir(), format, create_opts(format, ciphers[i]));
        RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s " WRITES " >/dev/null",
               scratch_dir(), image_opts(format, "q.img"));
        RUN_OK("cd '%s' && qemu-img convert " OBJ " --image-opts -O raw %s q.raw", scratch_dir(),
               image_opts(format, "q.img"));
        library_reads_as(format, "q.img", "q.raw");
        RUN_OK("cd '%s' && '%s' convert " OBJ " --image-opts -O raw %s v.raw", scratch_dir(),
               vdisk_bin(), image_opts(format, "q.img"));
        RUN_OK("cd '%s' && cmp q.raw v.raw", scratch_dir());
        RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'read -P 0x5a 1536 70000' "
               "-c 'read -P 0xa5 1M 64k' -c 'read -P 0 2M 4k' -c 'read -P 0x3c 3000k 72k'",
               scratch_dir(), vdisk_bin(), image_opts(format, "q.img"));
    }
}

/* An image made by vdisk and written by vdisk io reads the same through
 * qemu-img and qemu-io; qemu-img check finds nothing wrong. */
static void vdisk_made_read_by_qemu(const char *format)
{
    write_pw();
    /* Every setting for raw LUKS; for qcow2 (the same layer) one of each
     * family. */
    bool qcow2 = !strcmp(format, "qcow2");
    for (size_t i = 0; i < sizeof ciphers / sizeof ciphers[0]; i++) {
        if (qcow2 && i % 3)
            continue;
        RUN_OK("cd '%s' && rm -f v.img && '%s' create -q -f %s " OBJ " -o %s v.img 4M",
               scratch_dir(), vdisk_bin(), format, create_opts(format, ciphers[i]));
        RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s " WRITES " >/dev/null", scratch_dir(),
               vdisk_bin(), image_opts(format, "v.img"));
        RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s -c 'read -P 0x5a 1536 70000' "
               "-c 'read -P 0xa5 1M 64k' -c 'read -P 0 2M 4k' -c 'read -P 0x3c 3000k 72k'",
               scratch_dir(), image_opts(format, "v.img"));
        RUN_OK("cd '%s' && qemu-img convert " OBJ " --image-opts -O raw %s q.raw", scratch_dir(),
               image_opts(format, "v.img"));
        library_reads_as(format, "v.img", "q.raw");
        if (qcow2)
            RUN_OK("cd '%s' && qemu-img check " OBJ " --image-opts %s", scratch_dir(),
                   image_opts(format, "v.img"));
    }
}

START_TEST(luks_qemu_made)
{
    qemu_made_read_by_vdisk("luks");
}
END_TEST

START_TEST(luks_vdisk_made)
{
    vdisk_made_read_by_qemu("luks");
}
END_TEST

START_TEST(qcow2_qemu_made)
{
    qemu_made_read_by_vdisk("qcow2");
}
END_TEST

START_TEST(qcow2_vdisk_made)
{
    vdisk_made_read_by_qemu("qcow2");
}
END_TEST

/* vdisk's new images are laid out as qemu-img's: the same file length,
 * the same qcow2 header cluster (the LUKS header's place in it), the same
 * key slot offsets and payload offset, and the Formatting line. */
START_TEST(same_layout_as_qemu_img)
{
    write_pw();
    static const char *const sizes[] = {"1M", "3G"};
    /* The Formatting lines (run() tries qemu-img again while its PBKDF2
     * calibration fails). */
    static const char *const lines[][2] = {
        {"qcow2", "cipher-alg=aes-128,hash-alg=sha1"},
        {"luks", "cipher-mode=xts,ivgen-alg=plain64"},
    };
    for (size_t i = 0; i < 2; i++) {
        const char *args = fmt("-f %s " OBJ " -o %s f.img 1M", lines[i][0],
                               create_opts(lines[i][0], lines[i][1]));
        RUN_OK("cd '%s' && rm -f f.img && qemu-img create %s", scratch_dir(), args);
        char *want = strdup(harness_last_run()->out);
        RUN_OK("cd '%s' && rm -f f.img && '%s' create %s", scratch_dir(), vdisk_bin(), args);
        ck_assert_str_eq(harness_last_run()->out, want);
        free(want);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        RUN_OK("cd '%s' && rm -f q.qcow2 v.qcow2 q.luks v.luks", scratch_dir());
        RUN_OK("cd '%s' && qemu-img create -q -f qcow2 " OBJ " -o %s q.qcow2 %s", scratch_dir(),
               create_opts("qcow2", ""), sizes[i]);
        RUN_OK("cd '%s' && '%s' create -q -f qcow2 " OBJ " -o %s v.qcow2 %s", scratch_dir(),
               vdisk_bin(), create_opts("qcow2", ""), sizes[i]);
        size_t ql, vl;
        uint8_t *q = read_file(scratch("q.qcow2"), &ql), *v = read_file(scratch("v.qcow2"), &vl);
        ck_assert_uint_eq(ql, vl);
        assert_same_bytes(q, v, 65536, 0, "the header cluster");
        free(q);
        free(v);
        RUN_OK("cd '%s' && qemu-img create -q -f luks " OBJ " -o %s q.luks %s",
               scratch_dir(), create_opts("luks", ""), sizes[i]);
        RUN_OK("cd '%s' && '%s' create -q -f luks " OBJ " -o %s v.luks %s", scratch_dir(),
               vdisk_bin(), create_opts("luks", ""), sizes[i]);
        RUN_OK("cd '%s' && test $(stat -c %%s q.luks) = $(stat -c %%s v.luks)", scratch_dir());
        /* The header bytes that are not random or timed: magic, version,
         * names, payload offset, key bytes; slot 0's offset and stripes and
         * every inactive slot. */
        q = read_file_at(scratch("q.luks"), 0, 592);
        v = read_file_at(scratch("v.luks"), 0, 592);
        assert_same_bytes(q, v, 112, 0, "LUKS header");
        for (int s = 0; s < 8; s++) {
            size_t at = 208 + 48 * (size_t)s;
            if (s == 0) {
                assert_same_bytes(q + at, v + at, 4, at, "slot 0 state");
                assert_same_bytes(q + at + 40, v + at + 40, 8, at + 40, "slot 0 layout");
            } else {
                assert_same_bytes(q + at, v + at, 48, at, "an inactive slot");
            }
        }
        free(q);
        free(v);
    }
}
END_TEST

/* cryptsetup reads vdisk's LUKS headers as LUKS1 with the fields asked for. */
START_TEST(cryptsetup_reads_vdisk_headers)
{
    if (!have_program("cryptsetup")) {
        skip_note("cryptsetup is not installed (Debian: cryptsetup-bin)");
        return;
    }
    write_pw();
    static const struct {
        const char *opts, *cipher, *mode, *hash, *bits, *payload;
    } cases[] = {
        {"", "aes", "xts-plain64", "sha256", "512", "4040"},
        {"cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256", "aes",
         "cbc-essiv:sha256", "sha256", "128", "1032"},
        {"cipher-alg=serpent-256,cipher-mode=xts,hash-alg=sha512", "serpent", "xts-plain64",
         "sha512", "512", "4040"},
        {"cipher-alg=twofish-128,cipher-mode=cbc,ivgen-alg=plain,hash-alg=sha1", "twofish",
         "cbc-plain", "sha1", "128", "1032"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RUN_OK("cd '%s' && rm -f v.luks && '%s' create -q -f luks " OBJ " -o %s v.luks 1M",
               scratch_dir(), vdisk_bin(), create_opts("luks", cases[i].opts));
        struct run *r = run("cryptsetup luksDump '%s'", scratch("v.luks"));
        ck_assert_msg(r->status == 0, "luksDump: %s", r->err);
        const char *want[] = {
            "Version:       \t1\n",
            fmt("Cipher name:   \t%s\n", cases[i].cipher),
            fmt("Cipher mode:   \t%s\n", cases[i].mode),
            fmt("Hash spec:     \t%s\n", cases[i].hash),
            fmt("Payload offset:\t%s\n", cases[i].payload),
            fmt("MK bits:       \t%s\n", cases[i].bits),
            "Key Slot 0: ENABLED\n",
            "\tKey material offset:\t8\n",
            "\tAF stripes:            \t4000\n",
            "Key Slot 1: DISABLED\n",
            "Key Slot 7: DISABLED\n",
        };
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
            ck_assert_msg(strstr(r->out, want[k]), "luksDump lacks '%s':\n%s", want[k], r->out);
        /* cryptsetup opens key slot 0 with the passphrase, and not with
         * another (--dump-master-key needs no device mapper).  AES only:
         * cryptsetup decrypts key slots through the kernel's AF_ALG, whose
         * serpent and twofish modules a kernel may lack (it then wants
         * device-mapper). */
        if (strcmp(cases[i].cipher, "aes"))
            continue;
        r = run("cryptsetup luksDump -q --dump-master-key --key-file '%s' '%s'", scratch("pw"),
                scratch("v.luks"));
        ck_assert_msg(r->status == 0 && strstr(r->out, "MK dump:"),
                      "cryptsetup --dump-master-key: %s", r->err);
        write_file(scratch("bad"), "wrong", 5);
        r = run("cryptsetup luksDump -q --dump-master-key --key-file '%s' '%s'", scratch("bad"),
                scratch("v.luks"));
        ck_assert_msg(r->status != 0 && strstr(r->err, "No key available with this passphrase"),
                      "cryptsetup took a wrong passphrase: %s", r->err);
    }
}
END_TEST

/* Convert into and out of encryption, both tools, one result. */
START_TEST(convert_in_and_out)
{
    write_pw();
    RUN_OK("cd '%s' && rm -f s.raw && qemu-img create -q -f raw s.raw 5M && qemu-io -f raw "
           "-c 'write -P 0x11 0 100k' -c 'write -P 0x22 1M 512k' -c 'write -P 0x33 4M 1M' s.raw "
           ">/dev/null", scratch_dir());
    static const char *const formats[] = {"luks", "qcow2"};
    for (size_t i = 0; i < 2; i++) {
        const char *f = formats[i];
        RUN_OK("cd '%s' && rm -f e.img && '%s' convert " OBJ " -O %s -o %s s.raw e.img",
               scratch_dir(), vdisk_bin(), f, create_opts(f, ""));
        RUN_OK("cd '%s' && qemu-img compare " OBJ " --image-opts driver=raw,file.filename=s.raw "
               "%s", scratch_dir(), image_opts(f, "e.img"));
        RUN_OK("cd '%s' && rm -f o.raw && '%s' convert " OBJ " --image-opts -O raw %s o.raw",
               scratch_dir(), vdisk_bin(), image_opts(f, "e.img"));
        RUN_OK("cd '%s' && cmp s.raw o.raw", scratch_dir());
        /* qemu-img's encrypted image converted by vdisk into the other
         * encrypted format. */
        RUN_OK("cd '%s' && rm -f q.img && qemu-img convert " OBJ " -O %s -o %s s.raw q.img",
               scratch_dir(), f, create_opts(f, ""));
        const char *other = i ? "luks" : "qcow2";
        RUN_OK("cd '%s' && rm -f x.img && '%s' convert " OBJ " --image-opts -O %s -o %s %s x.img",
               scratch_dir(), vdisk_bin(), other, create_opts(other, ""), image_opts(f, "q.img"));
        RUN_OK("cd '%s' && qemu-img compare " OBJ " --image-opts driver=raw,file.filename=s.raw "
               "%s", scratch_dir(), image_opts(other, "x.img"));
    }
}
END_TEST

/* qcow2's legacy AES method (encryption=on, encrypt.format=aes), which
 * qemu-img 7.2 still creates and reads: the same image files, info and
 * refusals; data written by either tool read the same by the other (the
 * passphrase longer than the 16 key bytes, so cut as QEMU cuts it), also
 * over a backing file; convert into it and out of it. */
START_TEST(qcow2_legacy_aes)
{
    write_pw();
    static const char *const on[] = {"encryption=on,encrypt.key-secret=sec0",
                                     "encrypt.format=aes,encrypt.key-secret=sec0"};
    for (size_t i = 0; i < 2; i++) {
        RUN_OK("cd '%s' && rm -f q.img v.img", scratch_dir());
        struct run *r = run("cd '%s' && qemu-img create -f qcow2 " OBJ " -o %s q.img 4M",
                            scratch_dir(), on[i]);
        ck_assert_msg(r->status == 0, "%s", r->err);
        char *qout = strdup(r->out);
        r = run("cd '%s' && '%s' create -f qcow2 " OBJ " -o %s q.img 4M", scratch_dir(),
                vdisk_bin(), on[i]);
        ck_assert_int_eq(r->status, 0);
        ck_assert_str_eq(r->out, qout);
        free(qout);
        RUN_OK("cd '%s' && mv q.img v.img && qemu-img create -q -f qcow2 " OBJ " -o %s q.img 4M "
               "&& cmp q.img v.img", scratch_dir(), on[i]);
        /* info needs no key. */
        same_as_qemu_img("info", "v.img");
        same_as_qemu_img("info", "--output=json v.img");
    }
    /* qemu-io writes, vdisk reads; vdisk writes, qemu reads. */
    RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s " WRITES " >/dev/null && "
           "qemu-img convert " OBJ " --image-opts -O raw %s q.raw", scratch_dir(),
           image_opts("qcow2", "q.img"), image_opts("qcow2", "q.img"));
    library_reads_as("qcow2", "q.img", "q.raw");
    RUN_OK("cd '%s' && '%s' convert " OBJ " --image-opts -O raw %s v.raw && cmp q.raw v.raw",
           scratch_dir(), vdisk_bin(), image_opts("qcow2", "q.img"));
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s " WRITES " >/dev/null", scratch_dir(),
           vdisk_bin(), image_opts("qcow2", "v.img"));
    RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s -c 'read -P 0x5a 1536 70000' "
           "-c 'read -P 0xa5 1M 64k' -c 'read -P 0 2M 4k' -c 'read -P 0x3c 3000k 72k' && "
           "qemu-img check " OBJ " --image-opts %s && qemu-img compare " OBJ " --image-opts %s %s",
           scratch_dir(), image_opts("qcow2", "v.img"), image_opts("qcow2", "v.img"),
           image_opts("qcow2", "v.img"), image_opts("qcow2", "q.img"));
    /* An encrypted overlay over a plain backing file: copy on write. */
    RUN_OK("cd '%s' && rm -f b.img o1.img o2.img && qemu-img create -q -f qcow2 b.img 4M && "
           "qemu-io -c 'write -P 0x77 0 4M' b.img >/dev/null && "
           "qemu-img create -q -f qcow2 -b b.img -F qcow2 " OBJ " -o encrypt.format=aes,"
           "encrypt.key-secret=sec0 o1.img && cp o1.img o2.img", scratch_dir());
    const char *cow = "-c 'write -P 0x33 4096 512' -c 'write -P 0x44 70000 100000'";
    RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s %s >/dev/null && "
           "'%s' io " OBJ " --image-opts %s %s >/dev/null", scratch_dir(),
           image_opts("qcow2", "o1.img"), cow, vdisk_bin(), image_opts("qcow2", "o2.img"), cow);
    RUN_OK("cd '%s' && qemu-img convert " OBJ " --image-opts -O raw %s a.raw && "
           "'%s' convert " OBJ " --image-opts -O raw %s b.raw && cmp a.raw b.raw", scratch_dir(),
           image_opts("qcow2", "o2.img"), vdisk_bin(), image_opts("qcow2", "o1.img"));
    /* Convert into the method and out of it. */
    RUN_OK("cd '%s' && rm -f c.img && '%s' convert " OBJ " -O qcow2 -o encryption=on,"
           "encrypt.key-secret=sec0 q.raw c.img && qemu-img compare " OBJ " --image-opts "
           "driver=raw,file.filename=q.raw %s", scratch_dir(), vdisk_bin(),
           image_opts("qcow2", "c.img"));
    /* qemu-img's refusals, in its words. */
    same_as_qemu_img("create", "-f qcow2 " OBJ " -o encryption=on,encrypt.format=luks,"
                     "encrypt.key-secret=sec0 x.img 1M");
    same_as_qemu_img("create", "-f qcow2 " OBJ " -o encrypt.format=aes,encrypt.key-secret=sec0,"
                     "encrypt.cipher-alg=aes-256 x.img 1M");
    same_as_qemu_img("create", "-f qcow2 -o encryption=on x.img 1M");
    /* Data without the key: refused (under qemu-img's name, its words). */
    struct run *r = run("cd '%s' && qemu-img map q.img", scratch_dir());
    char *qerr = strdup(r->err);
    r = run("cd '%s' && VDISK_PROG=qemu-img '%s' map q.img", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, qerr);
    free(qerr);
}
END_TEST

/* A chain of encrypted images, each with its own key: created over a
 * backing file whose key is not given (its size alone is read, as
 * qemu-img reads it), info without keys, the backing file's key given as
 * backing.encrypt.key-secret (qemu-io's --image-opts and vdisk's json:
 * names), info of such a name as qemu-img shows it, and commit of the
 * overlay into its encrypted base. */
START_TEST(encrypted_chain)
{
    const char *objs = "--object secret,id=s0,data=basepass --object secret,id=s1,data=toppass";
    const char *spec = "driver=qcow2,file.filename=t.img,encrypt.key-secret=s1,"
                       "backing.driver=qcow2,backing.file.filename=b.img,"
                       "backing.encrypt.key-secret=s0";
    RUN_OK("cd '%s' && rm -f b.img t.img && qemu-img create -q -f qcow2 %s -o encrypt.format=luks,"
           "encrypt.key-secret=s0,encrypt.iter-time=10 b.img 4M && qemu-io %s --image-opts "
           "driver=qcow2,file.filename=b.img,encrypt.key-secret=s0 -c 'write -P 0xa 0 4M' "
           ">/dev/null", scratch_dir(), objs, objs);
    same_as_qemu_img("create", "-f qcow2 --object secret,id=s1,data=toppass -o encrypt.format=luks,"
                     "encrypt.key-secret=s1,encrypt.iter-time=10 -b b.img -F qcow2 t.img");
    same_as_qemu_img("info", "t.img");
    same_as_qemu_img("info", "--image-opts driver=qcow2,file.filename=t.img,encrypt.key-secret=s1");
    same_as_qemu_img("info", "--output=json --image-opts driver=qcow2,file.filename=t.img,"
                     "encrypt.key-secret=s1");
    RUN_OK("cd '%s' && '%s' io %s --image-opts %s -c 'write -P 0xe 0 1024' -c 'read -P 0xa 1024 "
           "4k' >/dev/null && qemu-io %s --image-opts %s -c 'read -P 0xe 0 1024' -c 'read -P 0xa "
           "1024 64512' >/dev/null", scratch_dir(), vdisk_bin(), objs, spec, objs, spec);
    same_as_qemu_img("map", fmt("%s --image-opts %s", objs, spec));
    RUN_OK("cd '%s' && '%s' commit %s --image-opts %s && qemu-io %s --image-opts driver=qcow2,"
           "file.filename=b.img,encrypt.key-secret=s0 -c 'read -P 0xe 0 1024' -c 'read -P 0xa "
           "1024 64512' >/dev/null", scratch_dir(), vdisk_bin(), objs, spec, objs);
}
END_TEST

/* vdisk nbd serves an encrypted image given with --object secret and
 * --image-opts, as qemu-nbd: qemu-io writes and reads it over NBD, then
 * reads the file itself with the passphrase. */
START_TEST(nbd_serves_encrypted)
{
    write_pw();
    static const char *const formats[] = {"luks", "qcow2"};
    for (size_t i = 0; i < 2; i++) {
        const char *f = formats[i];
        RUN_OK("cd '%s' && rm -f n.img && '%s' create -q -f %s " OBJ " -o %s n.img 4M",
               scratch_dir(), vdisk_bin(), f, create_opts(f, ""));
        RUN_OK("cd '%s' && rm -f n.sock && '%s' nbd --fork --pid-file=n.pid -k n.sock " OBJ
               " --image-opts %s && qemu-io -f raw 'nbd+unix:///?socket=n.sock' " WRITES
               " -c 'read -P 0x5a 1536 70000' -c 'read -P 0 2M 4k' -c 'read -P 0x3c 3000k 72k' "
               ">/dev/null && for t in $(seq 100); do [ -e n.pid ] || break; sleep 0.1; done && "
               "! [ -e n.pid ]", scratch_dir(), vdisk_bin(), image_opts(f, "n.img"));
        RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s -c 'read -P 0x5a 1536 70000' "
               "-c 'read -P 0xa5 1M 64k' -c 'read -P 0 2M 4k' -c 'read -P 0x3c 3000k 72k'",
               scratch_dir(), image_opts(f, "n.img"));
    }
}
END_TEST

/* What goes wrong is said as qemu says it. */
START_TEST(keys_refused)
{
    write_pw();
    RUN_OK("cd '%s' && rm -f q.luks && qemu-img create -q -f luks " OBJ " -o %s q.luks 1M",
                scratch_dir(), create_opts("luks", ""));
    RUN_OK("cd '%s' && rm -f q.qcow2 && qemu-img create -q -f qcow2 " OBJ " -o %s q.qcow2 1M",
                scratch_dir(), create_opts("qcow2", ""));
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_enc(&d, "luks", scratch("q.luks"), "wrong", false), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: Invalid password, cannot unlock any keyslot");
    ck_assert_int_eq(open_enc(&d, "qcow2", scratch("q.qcow2"), "wrong", false), -EPERM);
    ck_assert_int_eq(open_enc(&d, "luks", scratch("q.luks"), NULL, false), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: Parameter 'key-secret' is required for cipher");
    ck_assert_int_eq(open_enc(&d, "qcow2", scratch("q.qcow2"), NULL, false), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_open: Parameter 'encrypt.key-secret' is required for cipher");
    /* The CLI's words for secrets as qemu-img's. */
    same_as_qemu_img("info", "--object secret,id=s q.luks");
    same_as_qemu_img("info", "--object secret,id=s,data=a,file=pw q.luks");
    same_as_qemu_img("info", "--object secret,data=x q.luks");
    same_as_qemu_img("info", "--object secret,id=s,data=x,format=hex q.luks");
    same_as_qemu_img("info", "--object secret,id=s,data=x,bogus=1 q.luks");
    same_as_qemu_img("info", "--object secret,id=s,data=!!!,format=base64 q.luks");
    same_as_qemu_img("info", "--object secret,id=s,data=x --object secret,id=s,data=y q.luks");
    /* data= and base64 open it too. */
    RUN_OK("cd '%s' && '%s' io --object secret,id=sec0,data='" PASS "' --image-opts %s "
           "-c 'read 0 512' >/dev/null", scratch_dir(), vdisk_bin(),
           image_opts("luks", "q.luks"));
    RUN_OK("cd '%s' && '%s' io --object secret,id=sec0,format=base64,data=$(base64 -w0 pw) "
           "--image-opts %s -c 'read 0 512' >/dev/null", scratch_dir(), vdisk_bin(),
           image_opts("qcow2", "q.qcow2"));
}
END_TEST

/* A copy of q.luks with the 4 bytes at OFF set to V (big-endian). */
static const char *patched_be32(uint64_t off, uint32_t v)
{
    RUN_OK("cd '%s' && cp q.luks h.luks", scratch_dir());
    uint8_t b[4];
    be32_store(b, v);
    FILE *f = fopen(scratch("h.luks"), "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, (long)off, SEEK_SET), 0);
    ck_assert_uint_eq(fwrite(b, 1, 4, f), 4);
    fclose(f);
    return scratch("h.luks");
}

static void refused(const char *path, int err, const char *msg)
{
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_enc(&d, "luks", path, PASS, false), err);
    ck_assert_str_eq(vdisk_get_error(), msg);
}

START_TEST(hostile_headers)
{
    write_pw();
    RUN_OK("cd '%s' && rm -f q.luks && qemu-img create -q -f luks " OBJ " -o %s q.luks 1M",
                scratch_dir(), create_opts("luks", ""));
    const char *h;
    /* Iterations that would take hours: bounded. */
    h = patched_be32(164, 0xffffffffu);
    refused(h, -EINVAL, fmt("vdisk_open: %s: LUKS master key digest iterations 4294967295 out "
                            "of range (1 to 100000000)", h));
    h = patched_be32(208 + 4, 2000000000u);
    refused(h, -EINVAL, fmt("vdisk_open: %s: Keyslot 0 PBKDF2 iterations 2000000000 out of "
                            "range (1 to 100000000)", h));
    /* Key material past the end of the file. */
    RUN_OK("cd '%s' && cp q.luks t.luks && truncate -s 100000 t.luks", scratch_dir());
    refused(scratch("t.luks"), -EINVAL,
            fmt("vdisk_open: %s: Keyslot 0 key material (256000 bytes at offset 4096) lies past "
                "the end of the file (100000 bytes)", scratch("t.luks")));
    h = patched_be32(104, 100);
    refused(h, -EINVAL, fmt("vdisk_open: %s: Keyslot 0 is overlapping with the encrypted "
                            "payload", h));
    h = patched_be32(208 + 44, 3999);
    refused(h, -EINVAL, fmt("vdisk_open: %s: Keyslot 0 is corrupted (stripes 3999 != 4000)", h));
    h = patched_be32(208 + 40, 2);
    refused(h, -EINVAL, fmt("vdisk_open: %s: Keyslot 0 is overlapping with the LUKS header", h));
    h = patched_be32(208 + 48 + 40, 100);
    refused(h, -EINVAL, fmt("vdisk_open: %s: Keyslots 0 and 1 are overlapping in the header", h));
    h = patched_be32(208, 0x1234);
    refused(h, -EINVAL, fmt("vdisk_open: %s: Keyslot 0 state 0x1234 is neither active nor "
                            "inactive", h));
    h = patched_be32(108, 4096);
    refused(h, -ENOTSUP, fmt("vdisk_open: %s: Algorithm 'aes' with key size 4096 bytes not "
                             "supported", h));
    h = patched_be32(104, 0x7fffffff);
    refused(h, -EINVAL, fmt("vdisk_open: %s: LUKS payload offset 1099511627264 lies past the "
                            "end of the file (3117056 bytes)", h));
    h = patched_be32(4, 0xbabe0002u);
    /* Version 2: read as a LUKS2 header (formats/luks/luks2.c), which it
     * is not. */
    refused(h, -EINVAL, fmt("vdisk_open: %s: no valid LUKS2 header: primary at offset 0: "
                            "header size 7018142038163980288 (expected 16 KiB, 32 KiB, ... or "
                            "4 MiB); secondary: not found at any of the offsets 16 KiB to "
                            "4 MiB", h));
}
END_TEST

/* Key slots added and erased by vdisk amend open with qemu-io and
 * cryptsetup, and the reverse; the refusals as qemu-img words them. */
START_TEST(amend_key_slots)
{
    write_pw();
    write_file(scratch("pw2"), "second passphrase", 17);
#define OBJ2 OBJ " --object secret,id=sec1,file=pw2"
    static const char *const formats[] = {"luks", "qcow2"};
    for (size_t i = 0; i < 2; i++) {
        const char *f = formats[i], *p = i ? "encrypt." : "";
        RUN_OK("cd '%s' && rm -f a.img && '%s' create -q -f %s " OBJ " -o %s a.img 1M && "
               "'%s' io " OBJ " --image-opts %s -c 'write -P 0x42 0 64k' >/dev/null",
               scratch_dir(), vdisk_bin(), f, create_opts(f, ""), vdisk_bin(),
               image_opts(f, "a.img"));
        /* A second passphrase in slot 3 by vdisk; qemu-io opens with it. */
        RUN_OK("cd '%s' && '%s' amend " OBJ2 " -o %sstate=active,%snew-secret=sec1,%skeyslot=3,"
               "%siter-time=10 --image-opts %s", scratch_dir(), vdisk_bin(), p, p, p, p,
               image_opts(f, "a.img"));
        const char *io2 = fmt("driver=%s,file.filename=a.img,%skey-secret=sec1", f, p);
        RUN_OK("cd '%s' && qemu-io " OBJ2 " --image-opts %s -c 'read -P 0x42 0 64k'",
               scratch_dir(), io2);
        /* The only other slot would go: refused; slot 0 erased by qemu-img,
         * vdisk opens with the second passphrase only. */
        RUN_OK("cd '%s' && qemu-img amend " OBJ2 " -o %sstate=inactive,%sold-secret=sec0 "
               "--image-opts %s", scratch_dir(), p, p, image_opts(f, "a.img"));
        RUN_OK("cd '%s' && '%s' io " OBJ2 " --image-opts %s -c 'read -P 0x42 0 64k'",
               scratch_dir(), vdisk_bin(), io2);
        vdisk_dev *d = NULL;
        ck_assert_int_eq(open_enc(&d, f, scratch("a.img"), PASS, false), -EPERM);
        struct run *r = run("cd '%s' && '%s' amend " OBJ2 " -o %sstate=inactive,%skeyslot=3 "
                            "--image-opts %s", scratch_dir(), vdisk_bin(), p, p, io2);
        ck_assert_int_eq(r->status, 1);
        ck_assert_msg(strstr(r->err, "Attempt to erase the only active keyslot 3 which will "
                             "erase all the data in the image irreversibly - refusing "
                             "operation"), "%s", r->err);
        /* Slot 0 back by vdisk, with the first passphrase. */
        RUN_OK("cd '%s' && '%s' amend " OBJ2 " -o %sstate=active,%snew-secret=sec0,"
               "%siter-time=10 --image-opts %s", scratch_dir(), vdisk_bin(), p, p, p, io2);
        RUN_OK("cd '%s' && qemu-io " OBJ " --image-opts %s -c 'read -P 0x42 0 64k'",
               scratch_dir(), image_opts(f, "a.img"));
        if (!i && have_program("cryptsetup")) {
            r = run("cryptsetup luksDump '%s'", scratch("a.img"));
            ck_assert_msg(strstr(r->out, "Key Slot 0: ENABLED") &&
                          strstr(r->out, "Key Slot 3: ENABLED") &&
                          strstr(r->out, "Key Slot 1: DISABLED"), "%s", r->out);
        }
        if (i)
            RUN_OK("cd '%s' && qemu-img check " OBJ " --image-opts %s", scratch_dir(),
                   image_opts(f, "a.img"));
    }
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create("interop-luks");
    TCase *tc = tcase_create("luks");
    tcase_set_timeout(tc, 540);
    tcase_add_test(tc, luks_qemu_made);
    tcase_add_test(tc, luks_vdisk_made);
    tcase_add_test(tc, qcow2_qemu_made);
    tcase_add_test(tc, qcow2_vdisk_made);
    tcase_add_test(tc, same_layout_as_qemu_img);
    tcase_add_test(tc, cryptsetup_reads_vdisk_headers);
    tcase_add_test(tc, convert_in_and_out);
    tcase_add_test(tc, qcow2_legacy_aes);
    tcase_add_test(tc, encrypted_chain);
    tcase_add_test(tc, keys_refused);
    tcase_add_test(tc, hostile_headers);
    tcase_add_test(tc, nbd_serves_encrypted);
    suite_add_tcase(s, tc);
    TCase *am = tcase_create("amend");
    tcase_set_timeout(am, 300);
    tcase_add_test(am, amend_key_slots);
    suite_add_tcase(s, am);
    return s;
}

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    return run_suite(make_suite());
}
