/* SPDX-License-Identifier: MIT */
/*
 * formats/luks/luks2.h: LUKS2 headers as cryptsetup 2.x writes them
 * (cryptsetup's docs/on-disk-format-luks2), read only: the raw luks format
 * opens, reads and writes the data of such images; their metadata never
 * changes (no amend, no create).
 *
 * On disk: two copies of the header, the primary at 0 and the secondary at
 * hdr_size (16 KiB .. 4 MiB), each a 4096-byte binary header (big-endian:
 * magic "LUKS\xba\xbe" / "SKUL\xba\xbe", version 2, hdr_size, seqid, label,
 * checksum_alg, salt, uuid, subsystem, hdr_offset, checksum) followed by
 * hdr_size - 4096 bytes of NUL-terminated JSON: keyslots, digests,
 * segments, tokens and config.  The copy whose checksum (over the whole
 * hdr_size bytes with the checksum field zeroed) is right and whose seqid
 * is the higher is used.  Then the binary keyslot areas, then the data
 * segment.
 *
 * What is taken (anything else is refused, never guessed): keyslots of
 * type luks2 (PBKDF2, argon2i or argon2id; anti-forensic split luks1 with
 * 4000 stripes; the area encrypted with a cipher lib/crypto has, 512-byte
 * sectors), digests of type pbkdf2, exactly one data segment of type crypt
 * (offset, size or "dynamic", iv_tweak, encryption, sector_size 512..4096),
 * config without mandatory requirements.  Tokens are ignored.
 */
#ifndef VDISK_LUKS2_H
#define VDISK_LUKS2_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define LUKS2_MAGIC1        "LUKS\xba\xbe"
#define LUKS2_MAGIC2        "SKUL\xba\xbe"
#define LUKS2_BIN_HDR       4096u
/* The header sizes the spec allows: 16 KiB doubling up to 4 MiB. */
#define LUKS2_MIN_HDR       (16u << 10)
#define LUKS2_MAX_HDR       (4u << 20)
#define LUKS2_KEYSLOTS      32
#define LUKS2_DIGESTS       32
#define LUKS2_SALT_MAX      64
#define LUKS2_STRIPES       4000
/* Argon2 costs a header may ask for: cryptsetup's own maximum memory
 * (4 GiB), a time cost and lane count well above what it makes (4 passes
 * and 4 lanes by default), and time x memory at most 64 GiB of work, so
 * that a hostile header keeps an open busy for a minute at most. */
#define LUKS2_MAX_ARGON2_MEMORY 4194304u   /* KiB */
#define LUKS2_MAX_ARGON2_TIME   1000u
#define LUKS2_MAX_ARGON2_LANES  16u
#define LUKS2_MAX_ARGON2_WORK   (64ull << 20) /* time x memory, KiB */
/* Nodes (values) the JSON may hold, and how deep it may nest. */
#define LUKS2_JSON_MAX_NODES 100000u
#define LUKS2_JSON_DEPTH     16

enum luks2_kdf { LUKS2_KDF_PBKDF2, LUKS2_KDF_ARGON2I, LUKS2_KDF_ARGON2ID };

/* A cipher spec ("aes-xts-plain64") with its key bytes, as lib/crypto
 * takes it. */
struct luks2_cipher {
    char spec[64];
    uint32_t key_bytes;
    enum vcrypt_alg alg;
    enum vcrypt_mode mode;
    enum vcrypt_ivgen ivgen;
    enum vcrypt_hash ivhash;
};

struct luks2_keyslot {
    int id;                   /* its number in "keyslots" */
    int priority;             /* 0 ignore, 1 normal, 2 high */
    uint32_t key_bytes;       /* the master key's */
    uint64_t area_offset, area_size;
    struct luks2_cipher area; /* key_bytes: the area cipher's key */
    enum luks2_kdf kdf;
    enum vcrypt_hash kdf_hash;          /* pbkdf2 */
    uint32_t iterations;                /* pbkdf2 */
    uint32_t time, memory, cpus;        /* argon2 (memory in KiB) */
    uint8_t salt[LUKS2_SALT_MAX];
    size_t salt_len;
    enum vcrypt_hash af_hash;
    uint32_t stripes;
    int digest;               /* index into digests, or -1 */
};

struct luks2_digest {
    int id;
    enum vcrypt_hash hash;
    uint32_t iterations;
    uint8_t salt[LUKS2_SALT_MAX];
    size_t salt_len;
    uint8_t digest[VCRYPT_MAX_DIGEST];
    size_t digest_len;
    uint32_t keyslots;        /* bit mask */
    bool segment0;            /* covers the data segment */
};

struct luks2_header {
    uint64_t hdr_size, seqid;
    uint64_t hdr_offset;      /* the copy used: 0 or hdr_size */
    char label[49], subsystem[49], uuid[41];
    char checksum_alg[33];
    uint64_t json_size, keyslots_size;
    int nkeyslots;
    struct luks2_keyslot keyslots[LUKS2_KEYSLOTS];
    int ndigests;
    struct luks2_digest digests[LUKS2_DIGESTS];
    /* The data segment. */
    uint64_t seg_offset, seg_size;  /* bytes; seg_size 0 with seg_dynamic */
    bool seg_dynamic;
    uint64_t iv_tweak;
    uint32_t sector_size;
    struct luks2_cipher seg;
};

/*
 * Reads and checks the LUKS2 header of FILE (FSIZE bytes) into *H: both
 * copies, the valid one with the higher seqid, its JSON.  Returns 0 or
 * -EINVAL / -ENOTSUP / -EIO / -ENOMEM with a message naming FILENAME.
 */
int luks2_load(struct vdisk_dev *file, uint64_t fsize, const char *filename,
               struct luks2_header *h);

/*
 * The same on the bytes BUF (LEN of them, the file's start, of a file of
 * FSIZE bytes): the checks luks2_load makes without reading (the fuzz
 * harness's entry).  A copy that does not lie in BUF counts as unreadable.
 */
int luks2_parse_buf(const uint8_t *buf, size_t len, uint64_t fsize, const char *filename,
                    struct luks2_header *h);

/*
 * Finds the master key (H->seg.key_bytes into MK) with PASS: each keyslot
 * whose digest covers the data segment, by priority.  Returns the keyslot
 * id, or -EPERM ("Invalid password, cannot unlock any keyslot"), -EIO,
 * -ENOMEM with a message.
 */
int luks2_unlock(struct vdisk_dev *file, const struct luks2_header *h, const char *pass,
                 size_t pass_len, uint8_t *mk);

/* The data segment's bytes in a file of FSIZE bytes (whole sectors). */
uint64_t luks2_data_size(const struct luks2_header *h, uint64_t fsize);

/* Fills INFO's encryption fields from H (strings point into H). */
void luks2_fill_info(const struct luks2_header *h, struct vdisk_encrypt_info *info);

#endif /* VDISK_LUKS2_H */
