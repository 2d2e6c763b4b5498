/* SPDX-License-Identifier: MIT */
/*
 * formats/luks/luks.h: LUKS1 headers and key slots as QEMU writes them
 * (raw LUKS images, and the encryption header of qcow2 images with
 * encrypt.format=luks), and the encrypting layer over a device.
 *
 * On disk (big-endian), 592 bytes at the header's start:
 *   magic "LUKS\xba\xbe", version 1, cipher name ("aes"), cipher mode
 *   ("xts-plain64", "cbc-essiv:sha256"), hash spec ("sha256"), payload
 *   offset (sectors), key bytes, master key digest (20 bytes), its salt
 *   (32) and PBKDF2 iterations, UUID (40), and 8 key slots: state, PBKDF2
 *   iterations, salt, key material offset (sectors), stripes (4000).
 * A key slot holds the master key split into 4000 stripes (the
 * anti-forensic splitter, diffused with the header's hash), encrypted with
 * the data cipher under PBKDF2(password, slot salt).
 */
#ifndef VDISK_LUKS_H
#define VDISK_LUKS_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define LUKS_MAGIC          "LUKS\xba\xbe"
#define LUKS_HEADER_BYTES   592
#define LUKS_SLOTS          8
#define LUKS_SALT_LEN       32
#define LUKS_DIGEST_LEN     20
#define LUKS_STRIPES        4000
#define LUKS_SECTOR         512
#define LUKS_SLOT_ACTIVE    0x00ac71f3u
#define LUKS_SLOT_INACTIVE  0x0000deadu
/* Where QEMU puts the first key slot, and how it aligns them. */
#define LUKS_KEY_SLOT_OFFSET 4096u
#define LUKS_KEY_SLOT_ALIGN  4096u
/* PBKDF2 iterations a header may ask for (master key digest or key slot):
 * QEMU's default of 2 s per slot comes to a few million on today's
 * machines; more than this would keep an open busy for minutes. */
#define LUKS_MAX_ITERATIONS 100000000u
/* QEMU's least iterations when creating. */
#define LUKS_MIN_ITERATIONS 1000u

struct luks_slot {
    uint32_t active;          /* LUKS_SLOT_ACTIVE or LUKS_SLOT_INACTIVE */
    uint32_t iterations;
    uint8_t salt[LUKS_SALT_LEN];
    uint32_t key_offset;      /* sectors */
    uint32_t stripes;
};

struct luks_header {
    char cipher_name[33], cipher_mode[33], hash_spec[33];
    uint32_t payload_offset;  /* sectors */
    uint32_t key_bytes;
    uint8_t mk_digest[LUKS_DIGEST_LEN];
    uint8_t mk_salt[LUKS_SALT_LEN];
    uint32_t mk_iterations;
    char uuid[41];
    struct luks_slot slots[LUKS_SLOTS];
    /* What the names say. */
    enum vcrypt_alg alg;
    enum vcrypt_mode mode;
    enum vcrypt_ivgen ivgen;
    enum vcrypt_hash ivhash;  /* ESSIV's hash */
    enum vcrypt_hash hash;    /* PBKDF2's and the splitter's */
};

/* How an image is created (qemu-img's options of the same names). */
struct luks_create_opts {
    enum vcrypt_alg alg;
    enum vcrypt_mode mode;
    enum vcrypt_ivgen ivgen;
    enum vcrypt_hash ivhash;
    enum vcrypt_hash hash;
    uint64_t iter_time_ms;
};

/* The defaults: aes-256, xts, plain64, sha256, 2000 ms. */
void luks_create_opts_default(struct luks_create_opts *o);
/*
 * Takes PREFIX"cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg",
 * "hash-alg", "iter-time" from OS into *O (PREFIX "" for luks,
 * "encrypt." for qcow2).  Returns 0 or -EINVAL with qemu-img's message.
 */
int luks_take_create_opts(struct opt_set *os, const char *prefix, struct luks_create_opts *o);

/*
 * The passphrase the options give: PREFIX"key-secret" names a secret,
 * whose value is the option "secret.ID" (the CLI's --object secret,id=ID).
 * *PASS points into the options; NULL when PREFIX"key-secret" is not
 * given.  Returns 0, or -EINVAL when the secret is missing.
 */
int luks_take_secret(struct opt_set *os, const char *prefix, const char **pass);

/*
 * Parses and checks the 592 header bytes BUF of FILENAME, whose storage
 * holds AVAIL bytes from the header's start (key slots must fit in it).
 * Returns 0 or -EINVAL / -ENOTSUP with a message naming FILENAME.
 */
int luks_parse(const uint8_t *buf, uint64_t avail, const char *filename, struct luks_header *h);
/* The 592 bytes of H. */
void luks_serialize(const struct luks_header *h, uint8_t *buf);

/*
 * Finds the master key (H->key_bytes into MK) with the passphrase PASS:
 * each active slot's key material is read from FILE at BASE plus its
 * offset.  Returns the slot number, or -EPERM ("Invalid password, cannot
 * unlock any keyslot"), -EIO, -ENOMEM with a message.
 */
int luks_unlock(struct vdisk_dev *file, uint64_t base, const struct luks_header *h,
                const char *pass, size_t pass_len, uint8_t *mk);

/* The anti-forensic merge: SPLIT (STRIPES pieces of LEN <= VCRYPT_MAX_KEY
 * bytes, diffused with HASH) back to the key it holds, in OUT (LUKS2
 * keyslots use it too). */
void luks_af_merge(enum vcrypt_hash hash, const uint8_t *split, size_t len, unsigned stripes,
                   uint8_t *out);

/* Writes LEN bytes of BUF at OFF bytes from the header's start. */
typedef int (*luks_write_fn)(void *opaque, const void *buf, size_t len, uint64_t off);
/*
 * Makes a new header in *H (key slot 0 holding a new random master key
 * under PASS) as QEMU lays it out: slots after the first 4096 bytes, each
 * on 4 KiB, the payload after the last.  The key material of slot 0 is
 * written with WRITE (the header itself is the caller's: luks_serialize).
 * MK gets the master key.
 */
int luks_create_header(const struct luks_create_opts *o, const char *pass, size_t pass_len,
                       struct luks_header *h, uint8_t *mk, luks_write_fn write, void *opaque);

/* Key slot SLOT of H made to hold MK under PASS (PBKDF2 for ITER_TIME_MS
 * on this machine), its key material written with WRITE; H updated (the
 * caller writes the header). */
int luks_write_slot(struct luks_header *h, int slot, const uint8_t *mk, const char *pass,
                    size_t pass_len, uint64_t iter_time_ms, luks_write_fn write, void *opaque);
/* Key slot SLOT's key material overwritten with noise, the slot inactive. */
int luks_erase_slot(struct luks_header *h, int slot, luks_write_fn write, void *opaque);
/*
 * qemu-img amend's key slot options (PREFIX"state" = active | inactive,
 * "keyslot", "old-secret", "new-secret", "iter-time", secrets as
 * secret.ID) applied to H, whose master key is MK: a slot added, or slots
 * erased (by number, or those OLD-SECRET opens, read from FILE at BASE),
 * never the last active one.  The key material goes through WRITE; the
 * caller writes the header (luks_serialize) when this returns 0.
 */
int luks_amend(struct luks_header *h, const uint8_t *mk, struct opt_set *os, const char *prefix,
               struct vdisk_dev *file, uint64_t base, luks_write_fn write, void *opaque);

/* luks_amend on the header at BASE of FILE: key material, flush, header,
 * flush; *HDR updated when done. */
int luks_amend_at(struct luks_header *hdr, const uint8_t *mk, struct opt_set *os,
                  const char *prefix, struct vdisk_dev *file, uint64_t base);
/* Whether OS holds any of the key slot options of luks_amend. */
bool luks_amend_wanted(struct opt_set *os, const char *prefix);

/* Bytes from the header's start to the payload (the whole header area). */
static inline uint64_t luks_header_area(const struct luks_header *h)
{
    return (uint64_t)h->payload_offset * LUKS_SECTOR;
}

/*
 * The encrypting layer: a device over FILE whose byte N is FILE's byte
 * BASE + N, encrypted with CIPHER as sector N / 512 (the layer owns
 * CIPHER; a reference to FILE is taken).  SIZE bytes.  Used by the luks
 * format (BASE: the payload) and by qcow2 for its data clusters (BASE 0:
 * QEMU encrypts them by their host offset).
 */
int luks_crypt_open(struct vdisk_dev **devp, struct vdisk_dev *file, struct vcrypt *cipher,
                    uint64_t base, uint64_t size, bool read_only);

/* Fills INFO's encryption fields from H (strings point into H). */
void luks_fill_info(const struct luks_header *h, struct vdisk_encrypt_info *info);

#endif /* VDISK_LUKS_H */
