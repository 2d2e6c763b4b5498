/* SPDX-License-Identifier: MIT */
/*
 * lib/crypto.h: the ciphers, hashes and key derivation of encrypted images
 * (LUKS, qcow2 encrypt.format=luks), through GnuTLS, nettle and libargon2.
 *
 * A data cipher (struct vcrypt) encrypts whole 512-byte sectors, each with
 * the IV its sector number gives (plain, plain64 or ESSIV), as QEMU's
 * qcrypto block layer does.  It holds no per-call state a caller sees: any
 * number of threads may encrypt and decrypt with one at once.
 */
#ifndef VDISK_CRYPTO_H
#define VDISK_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VCRYPT_SECTOR 512u
/* The largest sector a data cipher takes (LUKS2's, dm-crypt's limit). */
#define VCRYPT_MAX_SECTOR 4096u

/* Cipher algorithms, with QEMU's names (vcrypt_alg_name). */
enum vcrypt_alg {
    VCRYPT_AES_128,
    VCRYPT_AES_192,
    VCRYPT_AES_256,
    VCRYPT_SERPENT_128,
    VCRYPT_SERPENT_192,
    VCRYPT_SERPENT_256,
    VCRYPT_TWOFISH_128,
    VCRYPT_TWOFISH_192,
    VCRYPT_TWOFISH_256,
    VCRYPT_CAST5_128,
    VCRYPT_ALG_COUNT
};

enum vcrypt_mode { VCRYPT_ECB, VCRYPT_CBC, VCRYPT_XTS, VCRYPT_CTR, VCRYPT_MODE_COUNT };

enum vcrypt_ivgen { VCRYPT_IV_PLAIN, VCRYPT_IV_PLAIN64, VCRYPT_IV_ESSIV, VCRYPT_IVGEN_COUNT };

enum vcrypt_hash {
    VCRYPT_MD5,
    VCRYPT_SHA1,
    VCRYPT_SHA224,
    VCRYPT_SHA256,
    VCRYPT_SHA384,
    VCRYPT_SHA512,
    VCRYPT_RIPEMD160,
    VCRYPT_HASH_COUNT
};

#define VCRYPT_MAX_DIGEST 64
#define VCRYPT_MAX_KEY 64

/* QEMU's names ("aes-256", "xts", "plain64", "sha256"), and the reverse
 * (-1 for an unknown name). */
const char *vcrypt_alg_name(enum vcrypt_alg a);
const char *vcrypt_mode_name(enum vcrypt_mode m);
const char *vcrypt_ivgen_name(enum vcrypt_ivgen g);
const char *vcrypt_hash_name(enum vcrypt_hash h);
int vcrypt_alg_by_name(const char *s);
int vcrypt_mode_by_name(const char *s);
int vcrypt_ivgen_by_name(const char *s);
int vcrypt_hash_by_name(const char *s);

/* The cipher's family as LUKS names it ("aes", "serpent", "twofish",
 * "cast5"), its key bytes, its block bytes. */
const char *vcrypt_alg_family(enum vcrypt_alg a);
size_t vcrypt_alg_key_len(enum vcrypt_alg a);
size_t vcrypt_alg_block_len(enum vcrypt_alg a);
/* The algorithm of FAMILY with KEY_LEN bytes of key, or -1. */
int vcrypt_alg_find(const char *family, size_t key_len);
size_t vcrypt_hash_len(enum vcrypt_hash h);

/* The key bytes a data cipher of ALG in MODE takes (twice the algorithm's
 * for XTS). */
size_t vcrypt_key_len(enum vcrypt_alg alg, enum vcrypt_mode mode);

/*
 * Whether the combination can be used: 0, or -ENOTSUP with a message
 * (XTS and CTR need 16-byte blocks; ESSIV needs a cipher of the family
 * whose key is the hash's digest).
 */
int vcrypt_check(enum vcrypt_alg alg, enum vcrypt_mode mode, enum vcrypt_ivgen ivgen,
                 enum vcrypt_hash ivhash);

struct vcrypt;
/* A data cipher with KEY (vcrypt_key_len bytes).  IVHASH is used by ESSIV
 * only.  Returns 0 or -errno with a message. */
int vcrypt_new(struct vcrypt **cp, enum vcrypt_alg alg, enum vcrypt_mode mode,
               enum vcrypt_ivgen ivgen, enum vcrypt_hash ivhash, const uint8_t *key,
               size_t key_len);
void vcrypt_free(struct vcrypt *c);
/* Encrypts (decrypts) LEN bytes (a multiple of VCRYPT_SECTOR) in place,
 * the first being sector SECTOR.  Returns 0 or -EIO with a message. */
int vcrypt_encrypt(struct vcrypt *c, uint64_t sector, uint8_t *buf, size_t len);
int vcrypt_decrypt(struct vcrypt *c, uint64_t sector, uint8_t *buf, size_t len);

/* The sector size of C (VCRYPT_SECTOR unless set): each sector of SIZE
 * bytes is encrypted as one unit, with the IV of its first 512-byte sector
 * (vcrypt_encrypt's SECTOR still counts 512-byte sectors; LEN is a
 * multiple of SIZE).  That is LUKS2's sector_size as cryptsetup and
 * dm-crypt use it (without iv_large_sectors): a 4096-byte sector at byte B
 * has the IV B / 512.  Set it before any use.  Returns 0 or -ENOTSUP with
 * a message (a power of two from 512 to VCRYPT_MAX_SECTOR). */
int vcrypt_set_sector_size(struct vcrypt *c, uint32_t size);
uint32_t vcrypt_sector_size(const struct vcrypt *c);

/* H(IN) into OUT (vcrypt_hash_len bytes). */
void vcrypt_hash_buf(enum vcrypt_hash h, const void *in, size_t len, uint8_t *out);
/* H(PREFIX || IN), for LUKS's anti-forensic diffusion. */
void vcrypt_hash2(enum vcrypt_hash h, const void *prefix, size_t plen, const void *in,
                  size_t len, uint8_t *out);

/* PBKDF2-HMAC-H.  Returns 0 or -EIO with a message. */
int vcrypt_pbkdf2(enum vcrypt_hash h, const void *pass, size_t pass_len, const uint8_t *salt,
                  size_t salt_len, uint32_t iterations, uint8_t *out, size_t out_len);
/* Argon2 (version 1.3, as LUKS2 keyslots use it) with T_COST passes over
 * M_KIB KiB in LANES lanes, through libargon2.  The caller bounds the
 * costs.  Returns 0 or -EINVAL / -ENOMEM with a message. */
enum vcrypt_argon2_type { VCRYPT_ARGON2I, VCRYPT_ARGON2ID };
int vcrypt_argon2(enum vcrypt_argon2_type type, const void *pass, size_t pass_len,
                  const uint8_t *salt, size_t salt_len, uint32_t t_cost, uint32_t m_kib,
                  uint32_t lanes, uint8_t *out, size_t out_len);
/* How many PBKDF2 iterations of H (OUT_LEN bytes made) this thread does in
 * a second, measured.  Returns 0 or -errno with a message. */
int vcrypt_pbkdf2_rate(enum vcrypt_hash h, size_t out_len, uint64_t *per_second);

/* Random bytes for keys and salts (GnuTLS's key generator). */
int vcrypt_random(void *buf, size_t len);

#endif /* VDISK_CRYPTO_H */
