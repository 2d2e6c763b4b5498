/* SPDX-License-Identifier: MIT */
/*
 * formats/luks/header.c: LUKS1 headers (luks.h): parsing them with every
 * field checked against what the file holds, unlocking a key slot, and
 * making new headers as QEMU 7.2 does.
 *
 * The checks follow QEMU's crypto/block-luks.c (what it refuses and its
 * words), and add bounds QEMU leaves to the hardware: PBKDF2 iteration
 * counts (LUKS_MAX_ITERATIONS) and key material inside the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luks.h"

/* ---- Options -------------------------------------------------------------- */

void luks_create_opts_default(struct luks_create_opts *o)
{
    o->alg = VCRYPT_AES_256;
    o->mode = VCRYPT_XTS;
    o->ivgen = VCRYPT_IV_PLAIN64;
    o->ivhash = VCRYPT_SHA256;
    o->hash = VCRYPT_SHA256;
    o->iter_time_ms = 2000;
}

static int take_enum(struct opt_set *os, const char *prefix, const char *name,
                     int (*by_name)(const char *), int *out, bool *given)
{
    char key[64];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    const char *v = opt_take(os, key);
    if (given)
        *given = v != NULL;
    if (!v)
        return 0;
    int x = by_name(v);
    if (x < 0)
        return err_set(-EINVAL, "Parameter '%s' does not accept value '%s'", key, v);
    *out = x;
    return 0;
}

int luks_take_create_opts(struct opt_set *os, const char *prefix, struct luks_create_opts *o)
{
    luks_create_opts_default(o);
    int alg = o->alg, mode = o->mode, ivgen = o->ivgen, ivhash = o->ivhash, hash = o->hash;
    bool ivhash_given = false, ivgen_given = false;
    int r = take_enum(os, prefix, "cipher-alg", vcrypt_alg_by_name, &alg, NULL);
    if (r == 0)
        r = take_enum(os, prefix, "cipher-mode", vcrypt_mode_by_name, &mode, NULL);
    if (r == 0)
        r = take_enum(os, prefix, "ivgen-alg", vcrypt_ivgen_by_name, &ivgen, &ivgen_given);
    if (r == 0)
        r = take_enum(os, prefix, "ivgen-hash-alg", vcrypt_hash_by_name, &ivhash,
                      &ivhash_given);
    if (r == 0)
        r = take_enum(os, prefix, "hash-alg", vcrypt_hash_by_name, &hash, NULL);
    if (r < 0)
        return r;
    char key[64];
    snprintf(key, sizeof key, "%siter-time", prefix);
    const char *v = opt_take(os, key);
    if (v) {
        uint64_t t;
        r = opt_uint(key, v, 1, UINT32_MAX, &t);
        if (r < 0)
            return r;
        o->iter_time_ms = t;
    }
    /* As QEMU: an ivgen hash given makes the default ivgen ESSIV. */
    if (ivhash_given && !ivgen_given)
        ivgen = VCRYPT_IV_ESSIV;
    o->alg = alg;
    o->mode = mode;
    o->ivgen = ivgen;
    o->ivhash = ivhash;
    o->hash = hash;
    /* QEMU splits keys in whole sectors only: 4000 stripes of the key. */
    if (vcrypt_key_len(o->alg, o->mode) * LUKS_STRIPES % LUKS_SECTOR)
        return err_set(-ENOTSUP, "Unsupported cipher %s in mode %s for LUKS (%zu-byte keys "
                       "do not split into whole sectors)", vcrypt_alg_name(o->alg),
                       vcrypt_mode_name(o->mode), vcrypt_key_len(o->alg, o->mode));
    return vcrypt_check(o->alg, o->mode, o->ivgen, o->ivhash);
}

int luks_take_secret(struct opt_set *os, const char *prefix, const char **pass)
{
    char key[64];
    snprintf(key, sizeof key, "%skey-secret", prefix);
    const char *id = opt_take(os, key);
    *pass = NULL;
    if (!id)
        return 0;
    size_t n = strlen(id) + 8;
    char *sk = malloc(n);
    if (!sk)
        return err_set(-ENOMEM, "out of memory");
    snprintf(sk, n, "secret.%s", id);
    *pass = opt_take(os, sk);
    free(sk);
    if (!*pass)
        return err_set(-EINVAL, "No secret with id '%s'", id);
    return 0;
}

/* ---- Parsing -------------------------------------------------------------- */

static int bad(const char *filename, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const char *filename, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return err_set(-EINVAL, "%s: %s", filename, why);
}

static int copy_name(char *dst, const uint8_t *src, const char *filename, const char *what)
{
    if (!memchr(src, '\0', 32))
        return bad(filename, "LUKS header %s is not NUL terminated", what);
    memcpy(dst, src, 32);
    dst[32] = '\0';
    return 0;
}

/* "xts-plain64", "cbc-essiv:sha256", "ecb" into mode, ivgen and its hash. */
static int parse_mode(const char *filename, struct luks_header *h)
{
    char buf[33];
    memcpy(buf, h->cipher_mode, sizeof buf);
    char *dash = strchr(buf, '-');
    const char *iv = dash ? dash + 1 : "plain64";
    if (dash)
        *dash = '\0';
    int m = vcrypt_mode_by_name(buf);
    if (m < 0)
        return err_set(-ENOTSUP, "%s: Unsupported cipher mode '%s'", filename, h->cipher_mode);
    h->mode = m;
    h->ivhash = VCRYPT_SHA256;
    char ivbuf[33];
    snprintf(ivbuf, sizeof ivbuf, "%s", iv);
    char *colon = strchr(ivbuf, ':');
    if (colon) {
        *colon = '\0';
        int hh = vcrypt_hash_by_name(colon + 1);
        if (hh < 0)
            return err_set(-ENOTSUP, "%s: Unsupported hash '%s'", filename, colon + 1);
        h->ivhash = hh;
    }
    int g = vcrypt_ivgen_by_name(ivbuf);
    if (g < 0)
        return err_set(-ENOTSUP, "%s: Unsupported ivgen '%s'", filename, ivbuf);
    if ((g == VCRYPT_IV_ESSIV) != (colon != NULL))
        return err_set(-ENOTSUP, "%s: Unsupported ivgen '%s'", filename, iv);
    h->ivgen = g;
    return 0;
}

int luks_parse(const uint8_t *b, uint64_t avail, const char *filename, struct luks_header *h)
{
    memset(h, 0, sizeof *h);
    if (memcmp(b, LUKS_MAGIC, 6) != 0)
        return bad(filename, "Volume is not in LUKS format");
    uint16_t version = be16_load(b + 6);
    if (version != 1)
        return err_set(-ENOTSUP, "%s: Unsupported LUKS version %u", filename, version);
    int r = copy_name(h->cipher_name, b + 8, filename, "cipher name");
    if (r == 0)
        r = copy_name(h->cipher_mode, b + 40, filename, "cipher mode");
    if (r == 0)
        r = copy_name(h->hash_spec, b + 72, filename, "hash spec");
    if (r < 0)
        return r;
    h->payload_offset = be32_load(b + 104);
    h->key_bytes = be32_load(b + 108);
    memcpy(h->mk_digest, b + 112, LUKS_DIGEST_LEN);
    memcpy(h->mk_salt, b + 132, LUKS_SALT_LEN);
    h->mk_iterations = be32_load(b + 164);
    memcpy(h->uuid, b + 168, 40);
    h->uuid[40] = '\0';
    for (int i = 0; i < LUKS_SLOTS; i++) {
        const uint8_t *s = b + 208 + 48 * i;
        struct luks_slot *k = &h->slots[i];
        k->active = be32_load(s);
        k->iterations = be32_load(s + 4);
        memcpy(k->salt, s + 8, LUKS_SALT_LEN);
        k->key_offset = be32_load(s + 40);
        k->stripes = be32_load(s + 44);
    }

    /* The algorithms. */
    int hh = vcrypt_hash_by_name(h->hash_spec);
    if (hh < 0)
        return err_set(-ENOTSUP, "%s: Unsupported hash '%s'", filename, h->hash_spec);
    h->hash = hh;
    r = parse_mode(filename, h);
    if (r < 0)
        return r;
    size_t alg_key = h->mode == VCRYPT_XTS ? h->key_bytes / 2 : h->key_bytes;
    int a = h->key_bytes == 0 || h->key_bytes > VCRYPT_MAX_KEY ||
            (h->mode == VCRYPT_XTS && h->key_bytes % 2) ? -1
            : vcrypt_alg_find(h->cipher_name, alg_key);
    if (a < 0)
        return err_set(-ENOTSUP, "%s: Algorithm '%s' with key size %" PRIu32 " bytes not "
                       "supported", filename, h->cipher_name, h->key_bytes);
    h->alg = a;
    r = vcrypt_check(h->alg, h->mode, h->ivgen, h->ivhash);
    if (r < 0)
        return err_set(r, "%s: %s", filename, vdisk_get_error());

    /* Iterations, bounded. */
    if (h->mk_iterations == 0 || h->mk_iterations > LUKS_MAX_ITERATIONS)
        return bad(filename, "LUKS master key digest iterations %" PRIu32 " out of range "
                   "(1 to %u)", h->mk_iterations, LUKS_MAX_ITERATIONS);

    /* The key slots: inside the header area, before the payload (when the
     * image has one here), not overlapping, inside the file. */
    uint64_t split = (uint64_t)h->key_bytes * LUKS_STRIPES;
    uint64_t split_sectors = (split + LUKS_SECTOR - 1) / LUKS_SECTOR;
    uint64_t header_sectors = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR;
    for (int i = 0; i < LUKS_SLOTS; i++) {
        const struct luks_slot *k = &h->slots[i];
        if (k->active != LUKS_SLOT_ACTIVE && k->active != LUKS_SLOT_INACTIVE)
            return bad(filename, "Keyslot %d state 0x%" PRIx32 " is neither active nor "
                       "inactive", i, k->active);
        if (k->stripes != LUKS_STRIPES)
            return bad(filename, "Keyslot %d is corrupted (stripes %" PRIu32 " != %d)", i,
                       k->stripes, LUKS_STRIPES);
        if (k->key_offset < header_sectors)
            return bad(filename, "Keyslot %d is overlapping with the LUKS header", i);
        uint64_t end = (uint64_t)k->key_offset + split_sectors;
        if (h->payload_offset && end > h->payload_offset)
            return bad(filename, "Keyslot %d is overlapping with the encrypted payload", i);
        for (int j = i + 1; j < LUKS_SLOTS; j++) {
            uint64_t o = h->slots[j].key_offset;
            if (o < end && k->key_offset < o + split_sectors)
                return bad(filename, "Keyslots %d and %d are overlapping in the header", i, j);
        }
        if (k->active != LUKS_SLOT_ACTIVE)
            continue;
        if (k->iterations == 0 || k->iterations > LUKS_MAX_ITERATIONS)
            return bad(filename, "Keyslot %d PBKDF2 iterations %" PRIu32 " out of range "
                       "(1 to %u)", i, k->iterations, LUKS_MAX_ITERATIONS);
        if (end * LUKS_SECTOR > avail)
            return bad(filename, "Keyslot %d key material (%" PRIu64 " bytes at offset %"
                       PRIu64 ") lies past the end of the file (%" PRIu64 " bytes)", i, split,
                       (uint64_t)k->key_offset * LUKS_SECTOR, avail);
    }
    return 0;
}

void luks_serialize(const struct luks_header *h, uint8_t *b)
{
    memset(b, 0, LUKS_HEADER_BYTES);
    memcpy(b, LUKS_MAGIC, 6);
    be16_store(b + 6, 1);
    memcpy(b + 8, h->cipher_name, strnlen(h->cipher_name, 31));
    memcpy(b + 40, h->cipher_mode, strnlen(h->cipher_mode, 31));
    memcpy(b + 72, h->hash_spec, strnlen(h->hash_spec, 31));
    be32_store(b + 104, h->payload_offset);
    be32_store(b + 108, h->key_bytes);
    memcpy(b + 112, h->mk_digest, LUKS_DIGEST_LEN);
    memcpy(b + 132, h->mk_salt, LUKS_SALT_LEN);
    be32_store(b + 164, h->mk_iterations);
    memcpy(b + 168, h->uuid, strnlen(h->uuid, 40));
    for (int i = 0; i < LUKS_SLOTS; i++) {
        uint8_t *s = b + 208 + 48 * i;
        const struct luks_slot *k = &h->slots[i];
        be32_store(s, k->active);
        be32_store(s + 4, k->iterations);
        memcpy(s + 8, k->salt, LUKS_SALT_LEN);
        be32_store(s + 40, k->key_offset);
        be32_store(s + 44, k->stripes);
    }
}

/* ---- The anti-forensic splitter ------------------------------------------- */

/* LUKS's diffusion of BUF (LEN bytes): each digest-sized piece i replaced
 * by H(be32(i) || piece), the last, shorter one by the start of its hash. */
static void af_diffuse(enum vcrypt_hash hash, uint8_t *buf, size_t len)
{
    size_t d = vcrypt_hash_len(hash);
    uint8_t out[VCRYPT_MAX_DIGEST];
    for (size_t i = 0, pos = 0; pos < len; i++, pos += d) {
        size_t n = len - pos < d ? len - pos : d;
        uint8_t iv[4];
        be32_store(iv, (uint32_t)i);
        vcrypt_hash2(hash, iv, 4, buf + pos, n, out);
        memcpy(buf + pos, out, n);
    }
}

static void xor_into(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] ^= src[i];
}

/* SPLIT (STRIPES * LEN bytes) back to the key it holds, in OUT. */
void luks_af_merge(enum vcrypt_hash hash, const uint8_t *split, size_t len, unsigned stripes,
                   uint8_t *out)
{
    uint8_t block[VCRYPT_MAX_KEY] = {0};
    for (unsigned i = 0; i + 1 < stripes; i++) {
        xor_into(block, split + (size_t)i * len, len);
        af_diffuse(hash, block, len);
    }
    memcpy(out, split + (size_t)(stripes - 1) * len, len);
    xor_into(out, block, len);
}

static int af_split(enum vcrypt_hash hash, const uint8_t *key, size_t len, unsigned stripes,
                    uint8_t *split)
{
    uint8_t block[VCRYPT_MAX_KEY] = {0};
    int r = vcrypt_random(split, (size_t)(stripes - 1) * len);
    if (r < 0)
        return r;
    for (unsigned i = 0; i + 1 < stripes; i++) {
        xor_into(block, split + (size_t)i * len, len);
        af_diffuse(hash, block, len);
    }
    uint8_t *last = split + (size_t)(stripes - 1) * len;
    memcpy(last, key, len);
    xor_into(last, block, len);
    return 0;
}

/* ---- Unlocking ------------------------------------------------------------ */

static size_t split_bytes(const struct luks_header *h)
{
    size_t n = (size_t)h->key_bytes * LUKS_STRIPES;
    return (n + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
}

/* 1 when slot I opens with PASS (MK set), 0 when not, or -errno. */
static int try_slot(struct vdisk_dev *file, uint64_t base, const struct luks_header *h, int i,
                    const char *pass, size_t pass_len, uint8_t *split, uint8_t *mk)
{
    const struct luks_slot *k = &h->slots[i];
    uint8_t slot_key[VCRYPT_MAX_KEY], cand[VCRYPT_MAX_KEY], digest[LUKS_DIGEST_LEN];
    int r = vcrypt_pbkdf2(h->hash, pass, pass_len, k->salt, LUKS_SALT_LEN, k->iterations,
                          slot_key, h->key_bytes);
    if (r < 0)
        return r;
    size_t n = split_bytes(h);
    r = dev_pread(file, split, n, base + (uint64_t)k->key_offset * LUKS_SECTOR);
    if (r < 0)
        return err_set(r, "%s: cannot read key slot %d: %s", file->filename, i,
                       vdisk_get_error());
    struct vcrypt *c;
    r = vcrypt_new(&c, h->alg, h->mode, h->ivgen, h->ivhash, slot_key, h->key_bytes);
    memset(slot_key, 0, sizeof slot_key);
    if (r < 0)
        return r;
    r = vcrypt_decrypt(c, 0, split, n);
    vcrypt_free(c);
    if (r < 0)
        return r;
    luks_af_merge(h->hash, split, h->key_bytes, LUKS_STRIPES, cand);
    r = vcrypt_pbkdf2(h->hash, cand, h->key_bytes, h->mk_salt, LUKS_SALT_LEN, h->mk_iterations,
                      digest, LUKS_DIGEST_LEN);
    if (r == 0 && memcmp(digest, h->mk_digest, LUKS_DIGEST_LEN) == 0) {
        memcpy(mk, cand, h->key_bytes);
        r = 1;
    }
    memset(cand, 0, sizeof cand);
    return r;
}

int luks_unlock(struct vdisk_dev *file, uint64_t base, const struct luks_header *h,
                const char *pass, size_t pass_len, uint8_t *mk)
{
    size_t n = split_bytes(h);
    uint8_t *split = malloc(n);
    if (!split)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    for (int i = 0; i < LUKS_SLOTS && r == 0; i++) {
        if (h->slots[i].active != LUKS_SLOT_ACTIVE)
            continue;
        r = try_slot(file, base, h, i, pass, pass_len, split, mk);
        if (r == 1)
            r = i + 1;
    }
    memset(split, 0, n);
    free(split);
    if (r == 0)
        return err_set(-EPERM, "Invalid password, cannot unlock any keyslot");
    return r < 0 ? r : r - 1;
}

/* ---- Creating ------------------------------------------------------------- */

static uint64_t iterations_for(uint64_t per_second, uint64_t ms)
{
    uint64_t it = per_second > UINT64_MAX / (ms ? ms : 1) ? UINT64_MAX
                                                         : per_second * ms / 1000;
    return it;
}

static int make_uuid(char *out)
{
    uint8_t u[16];
    int r = vcrypt_random(u, sizeof u);
    if (r < 0)
        return r;
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out, 41, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
             u[13], u[14], u[15]);
    return 0;
}

int luks_create_header(const struct luks_create_opts *o, const char *pass, size_t pass_len,
                       struct luks_header *h, uint8_t *mk, luks_write_fn write, void *opaque)
{
    memset(h, 0, sizeof *h);
    h->alg = o->alg;
    h->mode = o->mode;
    h->ivgen = o->ivgen;
    h->ivhash = o->ivhash;
    h->hash = o->hash;
    snprintf(h->cipher_name, sizeof h->cipher_name, "%s", vcrypt_alg_family(o->alg));
    if (o->ivgen == VCRYPT_IV_ESSIV)
        snprintf(h->cipher_mode, sizeof h->cipher_mode, "%s-essiv:%s",
                 vcrypt_mode_name(o->mode), vcrypt_hash_name(o->ivhash));
    else
        snprintf(h->cipher_mode, sizeof h->cipher_mode, "%s-%s", vcrypt_mode_name(o->mode),
                 vcrypt_ivgen_name(o->ivgen));
    snprintf(h->hash_spec, sizeof h->hash_spec, "%s", vcrypt_hash_name(o->hash));
    h->key_bytes = (uint32_t)vcrypt_key_len(o->alg, o->mode);
    int r = vcrypt_random(mk, h->key_bytes);
    if (r == 0)
        r = vcrypt_random(h->mk_salt, LUKS_SALT_LEN);
    if (r == 0)
        r = make_uuid(h->uuid);
    if (r < 0)
        return r;

    /* The master key digest: an eighth of the time, as QEMU (and
     * cryptsetup) give it. */
    uint64_t rate;
    r = vcrypt_pbkdf2_rate(o->hash, LUKS_DIGEST_LEN, &rate);
    if (r < 0)
        return r;
    uint64_t it = iterations_for(rate, o->iter_time_ms) / 8;
    if (it > LUKS_MAX_ITERATIONS)
        return err_set(-EINVAL, "PBKDF2 iterations %" PRIu64 " for the master key exceed the "
                       "limit of %u: use a smaller iter-time", it, LUKS_MAX_ITERATIONS);
    h->mk_iterations = (uint32_t)(it < LUKS_MIN_ITERATIONS ? LUKS_MIN_ITERATIONS : it);
    r = vcrypt_pbkdf2(o->hash, mk, h->key_bytes, h->mk_salt, LUKS_SALT_LEN, h->mk_iterations,
                      h->mk_digest, LUKS_DIGEST_LEN);
    if (r < 0)
        return r;

    /* The layout. */
    uint64_t split = (uint64_t)h->key_bytes * LUKS_STRIPES;
    uint64_t slot_sectors = (split + LUKS_KEY_SLOT_ALIGN - 1) / LUKS_KEY_SLOT_ALIGN *
                            LUKS_KEY_SLOT_ALIGN / LUKS_SECTOR;
    uint64_t first = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR;
    for (int i = 0; i < LUKS_SLOTS; i++) {
        h->slots[i].active = LUKS_SLOT_INACTIVE;
        h->slots[i].stripes = LUKS_STRIPES;
        h->slots[i].key_offset = (uint32_t)(first + (uint64_t)i * slot_sectors);
    }
    h->payload_offset = (uint32_t)(first + LUKS_SLOTS * slot_sectors);

    /* Slot 0. */
    return luks_write_slot(h, 0, mk, pass, pass_len, o->iter_time_ms, write, opaque);
}

int luks_write_slot(struct luks_header *h, int slot, const uint8_t *mk, const char *pass,
                    size_t pass_len, uint64_t iter_time_ms, luks_write_fn write, void *opaque)
{
    struct luks_slot *k = &h->slots[slot];
    uint64_t rate;
    int r = vcrypt_pbkdf2_rate(h->hash, h->key_bytes, &rate);
    if (r < 0)
        return r;
    uint64_t it = iterations_for(rate, iter_time_ms);
    if (it > LUKS_MAX_ITERATIONS)
        return err_set(-EINVAL, "PBKDF2 iterations %" PRIu64 " for the key slot exceed the "
                       "limit of %u: use a smaller iter-time", it, LUKS_MAX_ITERATIONS);
    uint32_t iterations = (uint32_t)(it < LUKS_MIN_ITERATIONS ? LUKS_MIN_ITERATIONS : it);
    uint8_t salt[LUKS_SALT_LEN];
    r = vcrypt_random(salt, LUKS_SALT_LEN);
    if (r < 0)
        return r;
    size_t n = split_bytes(h);
    uint8_t *buf = calloc(1, n);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    uint8_t slot_key[VCRYPT_MAX_KEY];
    struct vcrypt *c = NULL;
    r = af_split(h->hash, mk, h->key_bytes, LUKS_STRIPES, buf);
    if (r == 0)
        r = vcrypt_pbkdf2(h->hash, pass, pass_len, salt, LUKS_SALT_LEN, iterations, slot_key,
                          h->key_bytes);
    if (r == 0)
        r = vcrypt_new(&c, h->alg, h->mode, h->ivgen, h->ivhash, slot_key, h->key_bytes);
    memset(slot_key, 0, sizeof slot_key);
    if (r == 0)
        r = vcrypt_encrypt(c, 0, buf, n);
    vcrypt_free(c);
    if (r == 0)
        r = write(opaque, buf, n, (uint64_t)k->key_offset * LUKS_SECTOR);
    memset(buf, 0, n);
    free(buf);
    if (r == 0) {
        k->active = LUKS_SLOT_ACTIVE;
        k->iterations = iterations;
        memcpy(k->salt, salt, LUKS_SALT_LEN);
    }
    return r;
}

int luks_erase_slot(struct luks_header *h, int slot, luks_write_fn write, void *opaque)
{
    /* The key material overwritten with noise, as QEMU erases it, then
     * the slot marked inactive (the caller writes the header). */
    size_t n = split_bytes(h);
    uint8_t *buf = malloc(n);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    int r = vcrypt_random(buf, n);
    if (r == 0)
        r = write(opaque, buf, n, (uint64_t)h->slots[slot].key_offset * LUKS_SECTOR);
    free(buf);
    if (r == 0) {
        struct luks_slot *k = &h->slots[slot];
        k->active = LUKS_SLOT_INACTIVE;
        k->iterations = 0;
        memset(k->salt, 0, LUKS_SALT_LEN);
    }
    return r;
}

/* ---- Amend ---------------------------------------------------------------- */

static int secret_by_id(struct opt_set *os, const char *id, const char **pass)
{
    char key[256];
    snprintf(key, sizeof key, "secret.%s", id);
    *pass = opt_take(os, key);
    if (!*pass)
        return err_set(-EINVAL, "No secret with id '%s'", id);
    return 0;
}

int luks_amend(struct luks_header *h, const uint8_t *mk, struct opt_set *os, const char *prefix,
               struct vdisk_dev *file, uint64_t base, luks_write_fn write, void *opaque)
{
    char k_state[64], k_slot[64], k_old[64], k_new[64], k_iter[64];
    snprintf(k_state, sizeof k_state, "%sstate", prefix);
    snprintf(k_slot, sizeof k_slot, "%skeyslot", prefix);
    snprintf(k_old, sizeof k_old, "%sold-secret", prefix);
    snprintf(k_new, sizeof k_new, "%snew-secret", prefix);
    snprintf(k_iter, sizeof k_iter, "%siter-time", prefix);
    const char *state = opt_take(os, k_state), *slot_s = opt_take(os, k_slot);
    const char *old_id = opt_take(os, k_old), *new_id = opt_take(os, k_new);
    const char *iter_s = opt_take(os, k_iter);
    /* amend --force (the option "force"): what qemu-img's --force allows,
     * overwriting an active keyslot and erasing the last ones. */
    const char *force_s = opt_take(os, "force");
    bool force = force_s && !strcmp(force_s, "on");
    if (!state)
        return err_set(-EINVAL, "Parameter '%s' is missing", k_state);
    bool active;
    if (!strcmp(state, "active"))
        active = true;
    else if (!strcmp(state, "inactive"))
        active = false;
    else
        return err_set(-EINVAL, "Parameter '%s' does not accept value '%s'", k_state, state);
    uint64_t slot = UINT64_MAX, iter_time = 2000;
    if (slot_s && opt_uint(k_slot, slot_s, 0, LUKS_SLOTS - 1, &slot) < 0)
        return -EINVAL;
    if (iter_s && opt_uint(k_iter, iter_s, 1, UINT32_MAX, &iter_time) < 0)
        return -EINVAL;
    const char *pass;
    int r;
    if (active) {
        if (!new_id)
            return err_set(-EINVAL, "'new-secret' is required to activate a keyslot");
        if (old_id)
            return err_set(-EINVAL, "'old-secret' must not be given when activating keyslots");
        r = secret_by_id(os, new_id, &pass);
        if (r < 0)
            return r;
        if (slot == UINT64_MAX) {
            for (int i = 0; i < LUKS_SLOTS && slot == UINT64_MAX; i++)
                if (h->slots[i].active != LUKS_SLOT_ACTIVE)
                    slot = (uint64_t)i;
            if (slot == UINT64_MAX)
                return err_set(-EINVAL, "Can't add a keyslot - all keyslots are in use");
        } else if (h->slots[slot].active == LUKS_SLOT_ACTIVE && !force) {
            return err_set(-EINVAL, "Refusing to overwrite active keyslot %d - please erase it "
                           "first", (int)slot);
        }
        return luks_write_slot(h, (int)slot, mk, pass, strlen(pass), iter_time, write, opaque);
    }
    if (new_id)
        return err_set(-EINVAL, "'new-secret' must not be given when erasing keyslots");
    if (iter_s)
        return err_set(-EINVAL, "'iter-time' must not be given when erasing keyslots");
    if (slot_s && old_id)
        return err_set(-EINVAL, "'keyslot' and 'old-secret' are mutually exclusive");
    if (!slot_s && !old_id)
        return err_set(-EINVAL, "'keyslot' or 'old-secret' must be given when erasing keyslots");
    int nactive = 0;
    for (int i = 0; i < LUKS_SLOTS; i++)
        nactive += h->slots[i].active == LUKS_SLOT_ACTIVE;
    bool erase[LUKS_SLOTS] = {false};
    int nerase = 0;
    if (slot_s) {
        if (h->slots[slot].active != LUKS_SLOT_ACTIVE && !force)
            return err_set(-EINVAL, "Given keyslot %d is already erased (inactive) ", (int)slot);
        erase[slot] = true;
        nerase = 1;
        if (nactive == 1 && !force)
            return err_set(-EINVAL, "Attempt to erase the only active keyslot %d which will "
                           "erase all the data in the image irreversibly - refusing operation",
                           (int)slot);
    } else {
        r = secret_by_id(os, old_id, &pass);
        if (r < 0)
            return r;
        size_t n = split_bytes(h);
        uint8_t *split = malloc(n), cand[VCRYPT_MAX_KEY];
        if (!split)
            return err_set(-ENOMEM, "out of memory");
        for (int i = 0; i < LUKS_SLOTS && r >= 0; i++) {
            if (h->slots[i].active != LUKS_SLOT_ACTIVE)
                continue;
            r = try_slot(file, base, h, i, pass, strlen(pass), split, cand);
            if (r == 1) {
                erase[i] = true;
                nerase++;
            }
        }
        memset(cand, 0, sizeof cand);
        free(split);
        if (r < 0)
            return r;
        if (!nerase)
            return err_set(-EINVAL, "No keyslots match given (old) password for erase "
                           "operation");
        if (nerase == nactive && !force)
            return err_set(-EINVAL, "All the active keyslots match the (old) password that was "
                           "given and erasing them will erase all the data in the image "
                           "irreversibly - refusing operation");
    }
    for (int i = 0; i < LUKS_SLOTS; i++)
        if (erase[i] && (r = luks_erase_slot(h, i, write, opaque)) < 0)
            return r;
    return 0;
}

/* ---- Info ----------------------------------------------------------------- */

void luks_fill_info(const struct luks_header *h, struct vdisk_encrypt_info *in)
{
    memset(in, 0, sizeof *in);
    in->format = "luks";
    in->cipher_alg = vcrypt_alg_name(h->alg);
    in->cipher_mode = vcrypt_mode_name(h->mode);
    in->ivgen_alg = vcrypt_ivgen_name(h->ivgen);
    in->ivgen_hash_alg = h->ivgen == VCRYPT_IV_ESSIV ? vcrypt_hash_name(h->ivhash) : NULL;
    in->hash_alg = vcrypt_hash_name(h->hash);
    in->uuid = h->uuid;
    in->payload_offset = luks_header_area(h);
    in->master_key_iters = h->mk_iterations;
    in->nb_slots = LUKS_SLOTS;
    in->version = 1;
    in->sector_size = LUKS_SECTOR;
    for (int i = 0; i < LUKS_SLOTS; i++) {
        in->slots[i].active = h->slots[i].active == LUKS_SLOT_ACTIVE;
        in->slots[i].iters = h->slots[i].iterations;
        in->slots[i].key_offset = (uint64_t)h->slots[i].key_offset * LUKS_SECTOR;
        in->slots[i].stripes = h->slots[i].stripes;
    }
}
