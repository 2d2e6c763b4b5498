/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/crypto.c: qcow2 images with encrypt.format=luks.
 *
 * The header's crypt_method is 2 and the "full disk encryption header
 * pointer" extension (0x0537be77: offset, length) names clusters holding
 * a LUKS1 header with its key slots (formats/luks).  Guest data clusters
 * are encrypted with the master key, sector by sector, each by its host
 * offset / 512 (QEMU's crypt_physical_offset for LUKS); metadata is not
 * encrypted.  The driver reaches the data through s->data, an encrypting
 * layer over the file (luks_crypt_open with base 0), and everything else
 * through s->file.  Compressed clusters are refused, as QEMU refuses them.
 *
 * Legacy AES encryption (crypt_method 1, encrypt.format=aes or
 * encryption=on), as qemu-img 7.2 reads and creates it: AES-128-CBC, the
 * key the passphrase's first 16 bytes (zero-padded, no key derivation),
 * each 512-byte sector's IV its guest sector number (plain64): the data
 * clusters go through the same encrypting layer, each request told the
 * difference between its guest and host offsets (req->iv_shift, set in
 * io.c).  No header extension.  QEMU's system emulators refuse these
 * images (weak: no salt, no key derivation, IVs that can be guessed);
 * the tools read and write them so that they can be converted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../luks/luks.h"
#include "qcow2.h"

/* A LUKS header area larger than this is not one QEMU made (2 MiB for
 * 64-byte keys). */
#define QCOW2_MAX_CRYPTO_HEADER (64u << 20)

int qcow2_crypto_parse_ext(struct qcow2 *s, const uint8_t *data, uint32_t len)
{
    if (len != 16)
        return err_set(-EINVAL, "%s: Invalid encryption header extension (length %" PRIu32
                       ", 16 expected)", s->dev->filename, len);
    s->crypto_offset = be64_load(data);
    s->crypto_length = be64_load(data + 8);
    if (!s->crypto_offset)
        s->crypto_offset = UINT64_MAX; /* given: checked at open */
    return 0;
}

/* The legacy AES method: the layer over BASE keyed with PASS (none with
 * NO_KEY: it refuses data I/O). */
static int aes_open(struct qcow2 *s, struct vdisk_dev *base, const char *fmt, const char *pass,
                    bool no_key)
{
    const char *fname = s->dev->filename;
    if (fmt && strcmp(fmt, "aes"))
        return err_set(-EINVAL, "%s: Header reported 'aes' encryption format but options "
                       "specify '%s'", fname, fmt);
    if (s->crypto_offset)
        return err_set(-EINVAL, "%s: CRYPTO header extension only expected with LUKS "
                       "encryption method", fname);
    struct vdisk_encrypt_info *info = calloc(1, sizeof *info);
    if (!info)
        return err_set(-ENOMEM, "out of memory");
    info->format = "aes";
    s->crypto_info = info;
    if (!pass && !no_key)
        return err_set(-EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    struct vcrypt *c = NULL;
    if (!no_key) {
        uint8_t key[16] = {0};
        size_t n = strlen(pass);
        memcpy(key, pass, n < sizeof key ? n : sizeof key);
        int r = vcrypt_new(&c, VCRYPT_AES_128, VCRYPT_CBC, VCRYPT_IV_PLAIN64, VCRYPT_SHA256,
                           key, sizeof key);
        memset(key, 0, sizeof key);
        if (r < 0)
            return r;
    }
    int r = luks_crypt_open(&s->data, base, c, 0, align_down(INT64_MAX, 512), s->read_only);
    if (r < 0) {
        vcrypt_free(c);
        s->data = base;
    }
    return r;
}

int qcow2_crypto_open(struct qcow2 *s, struct opt_set *os, uint64_t fsize)
{
    const char *pass;
    int r = luks_take_secret(os, "encrypt.", &pass);
    bool no_key = false;
    const char *v = opt_take(os, "no-key");
    if (v && opt_bool("no-key", v, &no_key) < 0)
        return -EINVAL;
    if (r < 0 && !no_key) /* (without the key, a missing secret does not matter) */
        return r;
    if (r < 0)
        pass = NULL;
    const char *fmt = opt_take(os, "encrypt.format");
    const char *fname = s->dev->filename;
    /* Guest data: the external data file when there is one. */
    struct vdisk_dev *base = s->data_file ? s->data_file : s->file;
    s->data = base;
    if (s->crypt_method == QCOW2_CRYPT_NONE) {
        if (s->crypto_offset)
            return err_set(-EINVAL, "%s: CRYPTO header extension only expected with LUKS "
                           "encryption method", fname);
        if (fmt)
            return err_set(-EINVAL, "%s: No encryption in image header, but options specified "
                           "format '%s'", fname, fmt);
        return 0;
    }
    if (s->crypt_method == QCOW2_CRYPT_AES)
        return aes_open(s, base, fmt, pass, no_key);
    if (s->crypt_method != QCOW2_CRYPT_LUKS)
        return err_set(-EINVAL, "%s: Unsupported encryption method %" PRIu32, fname,
                       s->crypt_method);
    if (fmt && strcmp(fmt, "luks"))
        return err_set(-EINVAL, "%s: Header reported 'luks' encryption format but options "
                       "specify '%s'", fname, fmt);
    if (!s->crypto_offset || s->crypto_offset == UINT64_MAX)
        return err_set(-EINVAL, "%s: LUKS encryption without the encryption header "
                       "extension", fname);
    if (s->crypto_offset % s->cluster_size)
        return err_set(-EINVAL, "%s: Encryption header offset '%" PRIu64 "' is not a multiple "
                       "of cluster size '%" PRIu64 "'", fname, s->crypto_offset,
                       s->cluster_size);
    if (s->crypto_length < LUKS_HEADER_BYTES || s->crypto_length > QCOW2_MAX_CRYPTO_HEADER ||
        !range_inside(s->crypto_offset, s->crypto_length, fsize))
        return err_set(-EINVAL, "%s: the encryption header (%" PRIu64 " bytes at offset %" PRIu64
                       ") does not fit in the file (%" PRIu64 " bytes)", fname,
                       s->crypto_length, s->crypto_offset, fsize);
    uint8_t buf[LUKS_HEADER_BYTES];
    r = dev_pread(s->file, buf, sizeof buf, s->crypto_offset);
    if (r < 0)
        return r;
    struct luks_header *h = calloc(1, sizeof *h);
    struct vdisk_encrypt_info *info = calloc(1, sizeof *info);
    if (!h || !info) {
        free(h);
        free(info);
        return err_set(-ENOMEM, "out of memory");
    }
    s->luks = h;
    s->crypto_info = info;
    r = luks_parse(buf, s->crypto_length, fname, h);
    if (r < 0)
        return r;
    luks_fill_info(h, info);
    if (!pass && !no_key)
        return err_set(-EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    /* no-key=on (info): the header alone; the layer has no cipher and
     * refuses data I/O, never handing out ciphertext. */
    struct vcrypt *c = NULL;
    if (!no_key) {
        uint8_t mk[VCRYPT_MAX_KEY];
        r = luks_unlock(s->file, s->crypto_offset, h, pass, strlen(pass), mk);
        if (r >= 0)
            r = vcrypt_new(&c, h->alg, h->mode, h->ivgen, h->ivhash, mk, h->key_bytes);
        if (r >= 0 && !(s->crypto_mk = malloc(VCRYPT_MAX_KEY)))
            r = err_set(-ENOMEM, "out of memory");
        if (r >= 0)
            memcpy(s->crypto_mk, mk, sizeof mk);
        memset(mk, 0, sizeof mk);
        if (r < 0) {
            vcrypt_free(c);
            return r;
        }
    }
    /* The whole range of host offsets qcow2 can address. */
    r = luks_crypt_open(&s->data, base, c, 0, align_down(INT64_MAX, 512), s->read_only);
    if (r < 0) {
        vcrypt_free(c);
        s->data = base;
    }
    return r;
}

void qcow2_crypto_close(struct qcow2 *s)
{
    if (s->data && s->data != s->file && s->data != s->data_file)
        dev_unref(s->data);
    s->data = NULL;
    free(s->luks);
    free(s->crypto_info);
    if (s->crypto_mk)
        memset(s->crypto_mk, 0, VCRYPT_MAX_KEY);
    free(s->crypto_mk);
    s->crypto_mk = NULL;
    s->luks = NULL;
    s->crypto_info = NULL;
}

bool qcow2_encrypted(const struct qcow2 *s)
{
    return s->crypt_method != QCOW2_CRYPT_NONE;
}

/* ---- Amend ---------------------------------------------------------------- */

bool qcow2_crypto_amend_wanted(struct qcow2 *s, struct opt_set *os)
{
    (void)s;
    return luks_amend_wanted(os, "encrypt.");
}

int qcow2_crypto_amend(struct qcow2 *s, struct opt_set *os)
{
    if (s->crypt_method != QCOW2_CRYPT_LUKS || !s->luks)
        return err_set(-EINVAL, "%s: the image is not encrypted: its key slots cannot be "
                       "amended", s->dev->filename);
    if (!s->crypto_mk)
        return err_set(-ENOKEY, "%s: the image was opened without its key", s->dev->filename);
    if (s->read_only)
        return err_set(-EROFS, "%s: the image is opened read-only", s->dev->filename);
    int r = luks_amend_at(s->luks, s->crypto_mk, os, "encrypt.", s->file, s->crypto_offset);
    if (r == 0)
        luks_fill_info(s->luks, s->crypto_info);
    return r;
}

/* ---- Create --------------------------------------------------------------- */

int qcow2_crypto_take_create_opts(struct opt_set *os, struct qcow2_crypto_create *cc)
{
    memset(cc, 0, sizeof *cc);
    const char *fmt = opt_take(os, "encrypt.format");
    const char *legacy = opt_take(os, "encryption");
    bool on = false;
    if (legacy && opt_bool("encryption", legacy, &on) < 0)
        return -EINVAL;
    if (on && fmt)
        return err_set(-EINVAL, "'encrypt.format' and its alias 'encryption' can't be used at "
                       "the same time");
    if (on || (fmt && !strcmp(fmt, "aes"))) {
        /* The legacy method has a key and nothing else. */
        static const char *const luks_only[] = {"cipher-alg", "cipher-mode", "ivgen-alg",
                                                "ivgen-hash-alg", "hash-alg", "iter-time"};
        for (size_t i = 0; i < sizeof luks_only / sizeof luks_only[0]; i++) {
            char k[32];
            snprintf(k, sizeof k, "encrypt.%s", luks_only[i]);
            if (opt_take(os, k))
                return err_set(-EINVAL, "Parameter '%s' is unexpected", k);
        }
        int r = luks_take_secret(os, "encrypt.", &cc->pass);
        if (r == 0 && !cc->pass)
            r = err_set(-EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
        cc->aes = r == 0;
        return r;
    }
    if (fmt && strcmp(fmt, "luks"))
        return err_set(-EINVAL, "Parameter 'encrypt.format' does not accept value '%s'", fmt);
    struct luks_create_opts *o = malloc(sizeof *o);
    if (!o)
        return err_set(-ENOMEM, "out of memory");
    int r = luks_take_create_opts(os, "encrypt.", o);
    if (r == 0)
        r = luks_take_secret(os, "encrypt.", &cc->pass);
    if (r == 0 && fmt && !cc->pass)
        r = err_set(-EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    if (r < 0 || !fmt) {
        free(o);
        return r;
    }
    cc->opts = o;
    cc->enabled = true;
    return 0;
}

void qcow2_crypto_create_free(struct qcow2_crypto_create *cc)
{
    free(cc->opts);
    cc->opts = NULL;
}

struct at_base {
    int (*write)(void *opaque, const void *buf, size_t len, uint64_t off);
    void *opaque;
    uint64_t base;
};

static int write_at_base(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct at_base *a = opaque;
    return a->write(a->opaque, buf, len, a->base + off);
}

int qcow2_crypto_make_header(struct qcow2_crypto_create *cc, uint64_t base,
                             int (*write)(void *opaque, const void *buf, size_t len,
                                          uint64_t off),
                             void *opaque, uint64_t *length)
{
    struct luks_header h;
    uint8_t mk[VCRYPT_MAX_KEY];
    struct at_base a = {write, opaque, base};
    int r = luks_create_header(cc->opts, cc->pass, strlen(cc->pass), &h, mk, write_at_base, &a);
    memset(mk, 0, sizeof mk);
    if (r < 0)
        return r;
    uint8_t hb[LUKS_HEADER_BYTES];
    luks_serialize(&h, hb);
    *length = luks_header_area(&h);
    return write(opaque, hb, sizeof hb, base);
}

uint64_t qcow2_crypto_header_bytes(const struct qcow2_crypto_create *cc)
{
    /* QEMU's layout (luks_create_header): 4 KiB, then 8 slots of the split
     * key on 4 KiB boundaries. */
    uint64_t split = (uint64_t)vcrypt_key_len(cc->opts->alg, cc->opts->mode) * LUKS_STRIPES;
    return LUKS_KEY_SLOT_OFFSET +
           LUKS_SLOTS * align_up(split, LUKS_KEY_SLOT_ALIGN);
}
