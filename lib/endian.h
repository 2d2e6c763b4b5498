/* SPDX-License-Identifier: MIT */
/*
 * lib/endian.h: unaligned big- and little-endian loads and stores, and ISO
 * 9660's both-byte-order fields.  The one home of byte-order reading for the
 * library and its tools (vdisk-vmm, the vhost-user back end): no hand-written
 * shifts elsewhere.  The host is little-endian (x86-64, arm64, riscv64): the
 * le64 and vhost-user's "native" numbers are plain copies.
 */
#ifndef VDISK_ENDIAN_H
#define VDISK_ENDIAN_H

#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "vdisk runs on little-endian hosts");

static inline uint16_t be16_load(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] << 8 | b[1]);
}

/* A 24-bit big-endian field (SCSI CDBs' transfer lengths). */
static inline uint32_t be24_load(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
}

static inline uint32_t be32_load(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint64_t be64_load(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

static inline void be16_store(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static inline void be32_store(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static inline void be64_store(void *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

static inline uint16_t le16_load(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t le32_load(const void *p)
{
    const uint8_t *b = p;
    return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t le64_load(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void le16_store(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}

static inline void le32_store(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static inline void le64_store(void *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/*
 * ISO 9660's "both-byte orders" fields (ECMA-119 7.2.3 and 7.3.3; Rock
 * Ridge's and zisofs's too): the little-endian copy, then the big-endian
 * one, 4 or 8 bytes in all.  As Linux and libisofs do, the little-endian
 * copy is read and the other is not checked (mastering tools that wrote the
 * two differently exist).
 */
static inline uint16_t both16_load(const void *p)
{
    return le16_load(p);
}

static inline uint32_t both32_load(const void *p)
{
    return le32_load(p);
}

#endif /* VDISK_ENDIAN_H */
