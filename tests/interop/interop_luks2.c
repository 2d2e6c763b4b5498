/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_luks2.c: LUKS2 images made by cryptsetup 2.6
 * (luksFormat --type luks2 on a plain file, no device-mapper), opened by
 * vdisk's luks format (formats/luks/luks2.c), which QEMU 7.2 refuses.
 *
 * The data is checked both ways without device-mapper, with the master key
 * from cryptsetup luksDump --dump-volume-key: python3-cryptography
 * (tests/interop/luks2_data.py) encrypts a known pattern into the data
 * segment and vdisk must read it; vdisk writes (unaligned, through
 * read-modify-write of 4096-byte sectors) and python decrypts every byte.
 * cryptsetup's own offline encryption (reencrypt --encrypt) of a known
 * plaintext checks the IVs independently of both.  The header is never
 * written (the first 16 MiB compared), cryptsetup luksDump still reads it.
 * Hostile headers (checksums, seqids, JSON, areas, KDF costs,
 * requirements) are refused with exact messages, or the valid copy used.
 *
 * Keyslots use small KDF costs (argon2 32 MiB, forced iterations) to keep
 * the test quick, except one image with cryptsetup's defaults.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define PASS "correct horse battery staple"
#define PASS2 "second passphrase"
#define OBJ "--object secret,id=s0,file=pw"
#define FAST_ARGON "--pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4"
#define FAST_PBKDF2 "--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
#define MIB (1024u * 1024u)
/* Images: 16 MiB of header and keyslots, then 4 MiB of data. */
#define IMG_MB 20
#define DATA_OFF (16u * MIB)
#define DATA_LEN (4u * MIB)

static const char *helper(void)
{
    return VDISK_SOURCE_DIR "/tests/interop/luks2_data.py";
}

static void write_pw(void)
{
    write_file(scratch("pw"), PASS, strlen(PASS));
    write_file(scratch("pw2"), PASS2, strlen(PASS2));
}

static const char *opts(const char *img)
{
    return fmt("driver=luks,key-secret=s0,file.filename=%s", img);
}

/* A LUKS2 image NAME by cryptsetup luksFormat with ARGS. */
static void format(const char *name, const char *args)
{
    RUN_OK("cd '%s' && rm -f %s && truncate -s %uM %s && cryptsetup luksFormat --type luks2 "
           "-q --key-file pw %s %s", scratch_dir(), name, IMG_MB, name, args, name);
}

/* The master key of NAME in hex. */
static char *master_key(const char *name)
{
    RUN_OK("cd '%s' && cryptsetup luksDump --dump-volume-key -q --key-file pw %s | "
           "sed -n '/MK dump/,$p' | sed 's/MK dump://' | tr -d ' \\t\\n'", scratch_dir(), name);
    return strdup(harness_last_run()->out);
}

/* A field of cryptsetup luksDump's data segment ("cipher:", "sector:"). */
static char *dump_field(const char *name, const char *field)
{
    RUN_OK("cd '%s' && cryptsetup luksDump %s | sed -n '/^Data segments/,/^Keyslots/p' | "
           "awk '$1 == \"%s\" {print $2}'", scratch_dir(), name, field);
    char *s = strdup(harness_last_run()->out);
    s[strcspn(s, "\n")] = '\0';
    return s;
}

/* The data of NAME (DATA_LEN bytes) decrypted by python into OUT. */
static uint8_t *py_decrypt(const char *name, const char *key, const char *cipher, const char *ss)
{
    RUN_OK("cd '%s' && python3 '%s' dec %s %s %s %s %u %u py.dec", scratch_dir(), helper(), name,
           key, cipher, ss, DATA_OFF, DATA_LEN);
    size_t len;
    uint8_t *b = read_file(scratch("py.dec"), &len);
    ck_assert_uint_eq(len, DATA_LEN);
    return b;
}

/* vdisk's whole disk of NAME (convert -O raw), checked to be DATA_LEN. */
static uint8_t *vdisk_reads(const char *name)
{
    RUN_OK("cd '%s' && rm -f v.raw && '%s' convert " OBJ " --image-opts %s -O raw v.raw",
           scratch_dir(), vdisk_bin(), opts(name));
    size_t len;
    uint8_t *b = read_file(scratch("v.raw"), &len);
    ck_assert_uint_eq(len, DATA_LEN);
    return b;
}

/*
 * One image made with ARGS: python's pattern read by vdisk; vdisk's writes
 * read by python; the header untouched; info's block.
 */
static void data_both_ways(const char *what, const char *args, const char *want_cipher,
                           const char *want_sector)
{
    format("d.img", args);
    char *key = master_key("d.img");
    char *cipher = dump_field("d.img", "cipher:");
    char *ss = dump_field("d.img", "sector:");
    ck_assert_msg(!strcmp(cipher, want_cipher), "%s: cipher %s", what, cipher);
    if (want_sector)
        ck_assert_msg(!strcmp(ss, want_sector), "%s: sector %s", what, ss);
    RUN_OK("cd '%s' && cp d.img d.orig", scratch_dir());

    /* python encrypts, vdisk reads. */
    uint64_t seed = 0x12u + strlen(what);
    uint8_t *pat = malloc(DATA_LEN);
    ck_assert_ptr_nonnull(pat);
    fill_random(pat, DATA_LEN, &seed);
    write_file(scratch("pat"), pat, DATA_LEN);
    RUN_OK("cd '%s' && python3 '%s' enc d.img %s %s %s %u pat", scratch_dir(), helper(), key,
           cipher, ss, DATA_OFF);
    uint8_t *got = vdisk_reads("d.img");
    assert_same_bytes(pat, got, DATA_LEN, 0, what);
    free(got);
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'read -v 0 16' | head -1",
           scratch_dir(), vdisk_bin(), opts("d.img"));
    char want_line[80];
    snprintf(want_line, sizeof want_line, "00000000:  %02x %02x %02x %02x", pat[0], pat[1],
             pat[2], pat[3]);
    ck_assert_msg(!strncmp(harness_last_run()->out, want_line, strlen(want_line)), "%s: %s",
                  what, harness_last_run()->out);

    /* vdisk writes (unaligned: read-modify-write of whole sectors),
     * python decrypts. */
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'write -P 0x5a 1000 70000' "
           "-c 'write -P 0xa5 1M 64k' -c 'write -z 3M 5000' -c 'write -P 0x3c 4190000 4304' "
           ">/dev/null", scratch_dir(), vdisk_bin(), opts("d.img"));
    memset(pat + 1000, 0x5a, 70000);
    memset(pat + MIB, 0xa5, 65536);
    memset(pat + 3 * MIB, 0, 5000);
    memset(pat + 4190000, 0x3c, 4304);
    got = py_decrypt("d.img", key, cipher, ss);
    assert_same_bytes(pat, got, DATA_LEN, 0, what);
    free(got);

    /* The header and keyslots untouched; cryptsetup still reads them. */
    RUN_OK("cd '%s' && cmp -n %u d.img d.orig && cryptsetup luksDump d.img >/dev/null && "
           "cryptsetup luksDump --dump-volume-key -q --key-file pw d.img >/dev/null",
           scratch_dir(), DATA_OFF);

    /* info: the LUKS block, version 2. */
    RUN_OK("cd '%s' && '%s' info d.img", scratch_dir(), vdisk_bin());
    const char *out = harness_last_run()->out;
    ck_assert_msg(strstr(out, "file format: luks\n") && strstr(out, "virtual size: 4 MiB "
                  "(4194304 bytes)\n") && strstr(out, "    version: 2\n") &&
                  strstr(out, fmt("    sector size: %s\n", ss)) &&
                  strstr(out, "    payload offset: 16777216\n"), "%s: %s", what, out);
    free(pat);
    free(key);
    free(cipher);
    free(ss);
}

START_TEST(formats)
{
    write_pw();
    data_both_ways("argon2id", FAST_ARGON, "aes-xts-plain64", "4096");
    data_both_ways("pbkdf2", FAST_PBKDF2, "aes-xts-plain64", NULL);
    data_both_ways("argon2i", "--pbkdf argon2i --pbkdf-memory 32768 --pbkdf-force-iterations 4",
                   "aes-xts-plain64", NULL);
    data_both_ways("sector 512", FAST_PBKDF2 " --sector-size 512", "aes-xts-plain64", "512");
    data_both_ways("sector 4096", FAST_PBKDF2 " --sector-size 4096", "aes-xts-plain64", "4096");
    data_both_ways("cbc-essiv", FAST_PBKDF2 " --cipher aes-cbc-essiv:sha256 --key-size 256",
                   "aes-cbc-essiv:sha256", NULL);
    data_both_ways("xts-256", FAST_PBKDF2 " --cipher aes-xts-plain64 --key-size 256",
                   "aes-xts-plain64", NULL);
    data_both_ways("label", FAST_PBKDF2 " --label my-disk --subsystem my-sub",
                   "aes-xts-plain64", NULL);
    data_both_ways("iter-time", "--pbkdf-memory 32768 --iter-time 100", "aes-xts-plain64",
                   NULL);
}
END_TEST

/* cryptsetup's own encryption of a known plaintext (offline reencrypt
 * --encrypt, no device-mapper) read back by vdisk: the IVs of 512 and
 * 4096-byte sectors (XTS and CBC-ESSIV) as cryptsetup makes them. */
START_TEST(cryptsetup_encrypts)
{
    write_pw();
    uint64_t seed = 7;
    uint8_t *plain = malloc(8 * MIB);
    ck_assert_ptr_nonnull(plain);
    fill_random(plain, 8 * MIB, &seed);
    write_file(scratch("plain"), plain, 8 * MIB);
    static const char *const sizes[] = {"512", "4096", "4096"};
    static const char *const ciphers[] = {"aes-xts-plain64 --key-size 512",
                                          "aes-xts-plain64 --key-size 256",
                                          "aes-cbc-essiv:sha256 --key-size 256"};
    for (size_t i = 0; i < 3; i++) {
        RUN_OK("cd '%s' && cp plain e.img && truncate -s 40M e.img && cryptsetup reencrypt "
               "--encrypt --type luks2 --sector-size %s --cipher %s --reduce-device-size 32M "
               "--force-offline-reencrypt " FAST_PBKDF2 " -q --key-file pw e.img",
               scratch_dir(), sizes[i], ciphers[i]);
        char *ss = dump_field("e.img", "sector:");
        ck_assert_str_eq(ss, sizes[i]);
        free(ss);
        RUN_OK("cd '%s' && rm -f v.raw && '%s' convert " OBJ " --image-opts %s -O raw v.raw",
               scratch_dir(), vdisk_bin(), opts("e.img"));
        size_t len;
        uint8_t *got = read_file(scratch("v.raw"), &len);
        ck_assert_uint_ge(len, 8 * MIB);
        assert_same_bytes(plain, got, 8 * MIB, 0, ciphers[i]);
        free(got);
    }
    free(plain);
}
END_TEST

/* A second keyslot (luksAddKey): either passphrase opens; a wrong one is
 * refused with qemu's words for LUKS1. */
START_TEST(keyslots)
{
    write_pw();
    format("k.img", FAST_PBKDF2);
    RUN_OK("cd '%s' && cryptsetup luksAddKey -q --key-file pw " FAST_ARGON " k.img pw2",
           scratch_dir());
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'write -P 0x11 0 4k' >/dev/null",
           scratch_dir(), vdisk_bin(), opts("k.img"));
    RUN_OK("cd '%s' && '%s' io --object secret,id=s0,file=pw2 --image-opts %s "
           "-c 'read -P 0x11 0 4k' >/dev/null", scratch_dir(), vdisk_bin(), opts("k.img"));
    RUN_OK("cd '%s' && '%s' info k.img", scratch_dir(), vdisk_bin());
    ck_assert_msg(strstr(harness_last_run()->out, "        [1]:\n            active: true\n"
                         "            kdf: argon2id\n            time cost: 4\n"),
                  "%s", harness_last_run()->out);
    /* A keyslot the passphrase does not open. */
    write_file(scratch("pw3"), "wrong", 5);
    struct run *r = run("cd '%s' && '%s' io --object secret,id=s0,file=pw3 --image-opts %s "
                        "-c 'read 0 512'", scratch_dir(), vdisk_bin(), opts("k.img"));
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: Invalid password, cannot unlock any keyslot\n");
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "luks"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "secret.k", "wrong"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "key-secret", "k"), 0);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(vdisk_open(&d, scratch("k.img"), o), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: Invalid password, cannot unlock any keyslot");
    vdisk_options_free(o);
    /* Without a secret: as LUKS1. */
    r = run("cd '%s' && '%s' io -f luks k.img -c 'read 0 512'", scratch_dir(), vdisk_bin());
    ck_assert_str_eq(r->err, "vdisk: Parameter 'key-secret' is required for cipher\n");
    /* amend: not for LUKS2. */
    r = run("cd '%s' && '%s' amend " OBJ " --object secret,id=s1,file=pw2 --image-opts %s "
            "-o state=active,new-secret=s1", scratch_dir(), vdisk_bin(), opts("k.img"));
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: k.img: amend of LUKS2 images is not supported (cryptsetup "
                     "luksAddKey and luksKillSlot change their keyslots)\n");
}
END_TEST

/* convert out of LUKS2 (raw, qcow2) and into an existing one (-n); nbd. */
START_TEST(verbs)
{
    write_pw();
    format("c.img", FAST_PBKDF2);
    char *key = master_key("c.img");
    char *cipher = dump_field("c.img", "cipher:");
    char *ss = dump_field("c.img", "sector:");
    uint64_t seed = 99;
    uint8_t *pat = malloc(DATA_LEN);
    ck_assert_ptr_nonnull(pat);
    fill_random(pat, DATA_LEN, &seed);
    write_file(scratch("src.raw"), pat, DATA_LEN);
    /* raw -> existing LUKS2 (-n), read by python. */
    RUN_OK("cd '%s' && '%s' convert -n " OBJ " -f raw --target-image-opts src.raw %s",
           scratch_dir(), vdisk_bin(), opts("c.img"));
    uint8_t *got = py_decrypt("c.img", key, cipher, ss);
    assert_same_bytes(pat, got, DATA_LEN, 0, "convert -n");
    free(got);
    /* LUKS2 -> qcow2 and raw, compared by qemu-img. */
    RUN_OK("cd '%s' && rm -f o.qcow2 && '%s' convert " OBJ " --image-opts %s -O qcow2 o.qcow2 "
           "&& qemu-img compare -f raw -F qcow2 src.raw o.qcow2", scratch_dir(), vdisk_bin(),
           opts("c.img"));
    got = vdisk_reads("c.img");
    assert_same_bytes(pat, got, DATA_LEN, 0, "convert -O raw");
    free(got);
    /* NBD: qemu-io writes and reads through vdisk nbd. */
    RUN_OK("cd '%s' && rm -f n.sock n.pid && '%s' nbd --fork --pid-file=n.pid -k n.sock " OBJ
           " --image-opts %s && qemu-io -f raw 'nbd+unix:///?socket=n.sock' "
           "-c 'write -P 0x77 5000 10000' -c 'read -P 0x77 5000 10000' >/dev/null && "
           "for t in $(seq 100); do [ -e n.pid ] || break; sleep 0.1; done && ! [ -e n.pid ]",
           scratch_dir(), vdisk_bin(), opts("c.img"));
    memset(pat + 5000, 0x77, 10000);
    got = py_decrypt("c.img", key, cipher, ss);
    assert_same_bytes(pat, got, DATA_LEN, 0, "nbd");
    free(got);
    /* Opened for writing, the image is locked as a LUKS1 one. */
    RUN_OK("cd '%s' && rm -f n.sock n.pid && '%s' nbd --fork --pid-file=n.pid -k n.sock " OBJ
           " --image-opts %s", scratch_dir(), vdisk_bin(), opts("c.img"));
    struct run *r = run("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'write 0 4k'",
                        scratch_dir(), vdisk_bin(), opts("c.img"));
    char *err = strdup(r->err);
    RUN_OK("cd '%s' && qemu-io -f raw 'nbd+unix:///?socket=n.sock' -c 'read 0 512' >/dev/null "
           "&& for t in $(seq 100); do [ -e n.pid ] || break; sleep 0.1; done && ! [ -e n.pid ]",
           scratch_dir());
    ck_assert_str_eq(err, "vdisk: Could not open 'c.img': Failed to get \"write\" lock\n"
                          "Is another process using the image [c.img]?\n");
    free(err);
    free(pat);
    free(key);
    free(cipher);
    free(ss);
}
END_TEST

/* cryptsetup's defaults (argon2id, 2 s, up to 1 GiB). */
START_TEST(default_parameters)
{
    write_pw();
    format("def.img", "");
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'write -P 0x42 0 64k' "
           "-c 'read -P 0x42 0 64k' >/dev/null", scratch_dir(), vdisk_bin(), opts("def.img"));
}
END_TEST

/* ---- Hostile headers ------------------------------------------------------ */

/* A fresh copy h.img of the base image with STMT applied to WHICH copies
 * (luks2_data.py meta). */
static void edited(const char *which, const char *stmt)
{
    RUN_OK("cd '%s' && cp base.img h.img && python3 '%s' meta h.img %s \"%s\"", scratch_dir(),
           helper(), which, stmt);
}

static void refused(int err, const char *msg)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "luks"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "secret.k", PASS), 0);
    ck_assert_int_eq(vdisk_options_set(o, "key-secret", "k"), 0);
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, scratch("h.img"), o);
    vdisk_options_free(o);
    ck_assert_msg(r == err, "open gave %d (%s), not %d", r, vdisk_get_error(), err);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", scratch("h.img"), msg));
}

/* h.img opens and reads its pattern; its virtual size is SIZE. */
static void opens(uint64_t size)
{
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'read -P 0x61 0 4k' >/dev/null",
           scratch_dir(), vdisk_bin(), opts("h.img"));
    RUN_OK("cd '%s' && '%s' info -f luks --output=json h.img | grep '\"virtual-size\"'",
           scratch_dir(), vdisk_bin());
    ck_assert_msg(strstr(harness_last_run()->out, fmt("\"virtual-size\": %llu,",
                                                       (unsigned long long)size)),
                  "%s", harness_last_run()->out);
}

START_TEST(hostile)
{
    write_pw();
    format("base.img", FAST_PBKDF2);
    RUN_OK("cd '%s' && '%s' io " OBJ " --image-opts %s -c 'write -P 0x61 0 4k' >/dev/null",
           scratch_dir(), vdisk_bin(), opts("base.img"));
    RUN_OK("cd '%s' && python3 '%s' csum base.img 0", scratch_dir(), helper());
    char *sum1 = strndup(harness_last_run()->out, 64);
    RUN_OK("cd '%s' && python3 '%s' csum base.img 16384", scratch_dir(), helper());
    char *sum2 = strndup(harness_last_run()->out, 64);
    const char *zeros = "0000000000000000000000000000000000000000000000000000000000000000";

    /* The primary's checksum wrong: the secondary is used. */
    RUN_OK("cd '%s' && cp base.img h.img && printf '\\0' | dd of=h.img bs=1 seek=448 "
           "conv=notrunc status=none", scratch_dir());
    opens(DATA_LEN);
    /* Both wrong (the checksum fields zeroed): refused, both named. */
    RUN_OK("cd '%s' && cp base.img h.img && dd if=/dev/zero of=h.img bs=1 seek=448 count=32 "
           "conv=notrunc status=none && dd if=/dev/zero of=h.img bs=1 seek=16832 count=32 "
           "conv=notrunc status=none", scratch_dir());
    refused(-EINVAL, fmt("no valid LUKS2 header: primary at offset 0: checksum mismatch "
                         "(expected %s, found %s); secondary at offset 16384: checksum mismatch "
                         "(expected %s, found %s)", sum1, zeros, sum2, zeros));
    /* Bad magic on the primary, the secondary found without its size (the
     * format named: nothing to probe at the start). */
    RUN_OK("cd '%s' && cp base.img h.img && printf 'X' | dd of=h.img bs=1 seek=0 "
           "conv=notrunc status=none", scratch_dir());
    opens(DATA_LEN);

    /* seqid: the copy with the higher one wins (its segment is smaller). */
    const char *small = "j['segments']['0']['size']='1048576'";
    edited("secondary", fmt("%s; hdr[16:24]=(int.from_bytes(hdr[16:24],'big')+1)"
                            ".to_bytes(8,'big')", small));
    opens(MIB);
    edited("secondary", small);
    opens(DATA_LEN);
    edited("primary", fmt("%s; hdr[16:24]=(int.from_bytes(hdr[16:24],'big')+1)"
                          ".to_bytes(8,'big')", small));
    opens(MIB);

    /* JSON: truncated, filling the whole area without a NUL, not an object. */
    edited("both", "text=text or __import__('json').dumps(j)[:200]");
    refused(-EINVAL, "LUKS2 metadata is not valid JSON: unterminated string at byte 200");
    edited("both", "text='{' * 20000");
    refused(-EINVAL, "no valid LUKS2 header: primary at offset 0: the JSON area (12288 bytes) "
            "is not NUL-terminated; secondary at offset 16384: the JSON area (12288 bytes) is "
            "not NUL-terminated");
    edited("both", "text='[1, 2]'");
    refused(-EINVAL, "LUKS2 metadata is not valid JSON: not a JSON object at byte 0");
    edited("both", "text='{' * 100 + '}' * 100");
    refused(-EINVAL, "LUKS2 metadata is not valid JSON: expected a string at byte 1");
    edited("both", "text='{\\\"a\\\":' * 100 + '1' + '}' * 100");
    refused(-EINVAL, "LUKS2 metadata is not valid JSON: nested too deep at byte 80");

    /* Keyslot area outside the keyslots area, past the end of the file. */
    edited("both", "j['keyslots']['0']['area']['offset']='16773120'");
    refused(-EINVAL, "LUKS2 metadata: keyslot 0 area (258048 bytes at offset 16773120) lies "
            "outside the keyslots area (32768 to 16777216)");
    /* Argon2 memory of 1 TiB: refused before any KDF runs. */
    edited("both", "j['keyslots']['0']['kdf']={'type':'argon2id','time':4,"
                   "'memory':1073741824,'cpus':4,'salt':j['keyslots']['0']['kdf']['salt']}");
    refused(-EINVAL, "LUKS2 metadata: keyslot 0 kdf \"memory\" 1073741824 is out of range (8 to "
            "4194304)");
    edited("both", "j['keyslots']['0']['kdf']={'type':'argon2id','time':1000,"
                   "'memory':4194304,'cpus':4,'salt':j['keyslots']['0']['kdf']['salt']}");
    refused(-EINVAL, "LUKS2 metadata: keyslot 0 kdf: time 1000 x memory 4194304 KiB exceeds "
            "the limit of 67108864 KiB");
    edited("both", "j['keyslots']['0']['kdf']['iterations']=4000000000");
    refused(-EINVAL, "LUKS2 metadata: keyslot 0 kdf \"iterations\" 4000000000 is out of range "
            "(1 to 100000000)");
    /* The segment past the end of the file. */
    edited("both", "j['segments']['0']['offset']='1099511627776'");
    refused(-EINVAL, "LUKS2 metadata: segment 0 offset 1099511627776 lies past the end of the "
            "file (20971520 bytes)");
    edited("both", "j['segments']['0']['size']='8388608'");
    refused(-EINVAL, "LUKS2 metadata: segment 0 (8388608 bytes at offset 16777216) lies past "
            "the end of the file (20971520 bytes)");
    edited("both", "j['segments']['0']['offset']='99999999999999999999'");
    refused(-EINVAL, "LUKS2 metadata: segment 0 \"offset\" \"99999999999999999999\" is not a "
            "number up to 9223372036854775807");
    /* What vdisk does not do. */
    edited("both", "j['config']['requirements']={'mandatory':['online-reencrypt-v2']}");
    refused(-ENOTSUP, "LUKS2 metadata: the image has the requirement 'online-reencrypt-v2' "
            "(e.g. an unfinished reencryption), which vdisk does not support");
    edited("both", "j['segments']['1']=dict(j['segments']['0'])");
    refused(-ENOTSUP, "LUKS2 metadata: 2 data segments (vdisk supports exactly one, \"0\")");
    edited("both", "j['segments']['0']['integrity']={'type':'hmac(sha256)'}");
    refused(-ENOTSUP, "LUKS2 metadata: segment 0: integrity protection (dm-integrity) is not "
            "supported");
    edited("both", "j['segments']['0']['encryption']='camellia-xts-plain64'");
    refused(-ENOTSUP, "LUKS2 metadata: segment 0: cipher 'camellia-xts-plain64' with a 512-bit "
            "key is not supported");
    edited("both", "j['segments']['0']['encryption']='aes-gcm-random'");
    refused(-ENOTSUP, "LUKS2 metadata: segment 0: unsupported cipher mode in 'aes-gcm-random'");
    edited("both", "j['keyslots']['0']['type']='reencrypt'");
    refused(-ENOTSUP, "LUKS2 metadata: keyslot 0: keyslot type 'reencrypt' is not supported");
    edited("both", "j['segments']['0']['sector_size']=8192");
    refused(-EINVAL, "LUKS2 metadata: segment 0 \"sector_size\" 8192 is out of range (512 to "
            "4096)");
    edited("both", "j['config']['json_size']='1000'");
    refused(-EINVAL, "LUKS2 metadata: config json_size 1000 does not match the header size "
            "(12288 expected)");
    free(sum1);
    free(sum2);
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create("interop-luks2");
    TCase *tc = tcase_create("luks2");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, formats);
    tcase_add_test(tc, cryptsetup_encrypts);
    tcase_add_test(tc, keyslots);
    tcase_add_test(tc, verbs);
    tcase_add_test(tc, default_parameters);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("hostile");
    tcase_set_timeout(th, 300);
    tcase_add_test(th, hostile);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    require_program("cryptsetup");
    require_program("python3");
    require_program("qemu-img");
    require_program("qemu-io");
    struct run *r = run("python3 -c 'import cryptography'");
    if (r->status != 0)
        skip_test("python3's cryptography module is not installed");
    return run_suite(make_suite());
}
