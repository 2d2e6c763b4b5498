/* SPDX-License-Identifier: MIT */
/*
 * vdisk/info.h: what an image says about itself: the fields of
 * `qemu-img info`, and the backing chain.
 *
 * Thread-safety: the strings returned belong to the device and stay valid
 * while it is open, except the backing file's names and format, which
 * vdisk_set_backing() (vdisk/image.h) frees; these calls may run
 * concurrently with I/O.
 */
#ifndef VDISK_INFO_H
#define VDISK_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/device.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A persistent dirty bitmap stored in the image (qcow2).  Fixed layout: it
 * comes in an array (vdisk_info.bitmaps) that the caller indexes with its
 * own sizeof (see "Structures that grow" in vdisk/device.h).
 */
#define VDISK_BITMAP_IN_USE (1u << 0) /* not saved cleanly: may be inconsistent */
#define VDISK_BITMAP_AUTO   (1u << 1) /* enabled: tracks every write */
struct vdisk_bitmap_info {
    const char *name;
    uint64_t granularity;            /* bytes per bit */
    uint32_t flags;                  /* VDISK_BITMAP_* */
};

/*
 * One extent of a VMDK image (qemu-img info's "extents").  Fixed layout: it
 * comes in an array (vdisk_info.extents) that the caller indexes with its
 * own sizeof.
 */
struct vdisk_extent_info {
    const char *filename;            /* the extent's file, as opened */
    const char *format;              /* the descriptor's type ("SPARSE", "FLAT",
                                        "ZERO"), or "" for a sparse file opened
                                        directly */
    uint64_t virtual_size;           /* bytes of the disk it holds */
    uint32_t cluster_size;           /* grain bytes; 0 for flat and zero extents */
    bool compressed;                 /* grains compressed (streamOptimized) */
};

/*
 * One LUKS key slot (qemu-img info's "slots").  Fixed layout, in
 * vdisk_encrypt_info.slots.
 */
struct vdisk_luks_slot_info {
    bool active;
    uint32_t iters;                  /* PBKDF2 iterations (active slots) */
    uint64_t key_offset;             /* bytes from the LUKS header's start */
    uint32_t stripes;
};

/*
 * The encryption of an image (raw LUKS, qcow2 encrypt.format=luks):
 * qemu-img info's "encrypt" block.  Fixed layout: the library fills it,
 * vdisk_info.encrypt points to it.
 */
struct vdisk_encrypt_info {
    const char *format;              /* "luks" */
    const char *cipher_alg;          /* "aes-256", "serpent-128", ... */
    const char *cipher_mode;         /* "xts", "cbc", "ecb", "ctr" */
    const char *ivgen_alg;           /* "plain64", "plain", "essiv" */
    const char *ivgen_hash_alg;      /* ESSIV's hash ("sha256"), else NULL */
    const char *hash_alg;            /* PBKDF2's ("sha256") */
    const char *uuid;
    uint64_t payload_offset;         /* bytes */
    uint32_t master_key_iters;
    uint32_t nb_slots;               /* 8 */
    struct vdisk_luks_slot_info slots[8];
    /* Added with LUKS2 (read from images cryptsetup makes; the library
     * fills them, older programs never read them): the LUKS version (1 or
     * 2), the data sector size (512, or LUKS2's up to 4096), and for LUKS2
     * each active slot's key derivation ("pbkdf2", "argon2i", "argon2id":
     * iters is then Argon2's time cost), NULL for LUKS1. */
    uint32_t version;
    uint32_t sector_size;
    const char *slot_kdf[8];
};

/*
 * Image information.  The caller sets struct_size to sizeof(struct
 * vdisk_info) before the call, so that fields added at the end in later
 * versions do not break older programs (see "Structures that grow" in
 * vdisk/device.h).  Fields a format does not have are 0 or NULL.
 */
struct vdisk_info {
    size_t struct_size;
    const char *format;              /* "raw", "qcow2", ... */
    const char *filename;            /* as opened */
    uint64_t virtual_size;           /* bytes */
    int64_t actual_size;             /* host bytes allocated, or -1 if unknown */
    uint32_t cluster_size;           /* 0 when the format has no clusters */
    bool dirty;                      /* the image needs a refcount repair */
    const char *backing_filename;    /* as stored in the image, or NULL */
    const char *full_backing_filename; /* resolved as QEMU does, or NULL */
    const char *backing_format;      /* from the image, or NULL */

    /* qcow2 ("format-specific" in qemu-img info); compat is NULL otherwise. */
    const char *compat;              /* "0.10" (v2) or "1.1" (v3) */
    const char *compression_type;    /* "zlib" or "zstd" */
    bool lazy_refcounts;
    bool corrupt;
    bool extended_l2;
    uint32_t refcount_bits;

    /* Persistent dirty bitmaps (qcow2 v3), in the image's order; qemu-img
     * info's "bitmaps".  Kept up to date by read-write opens and changed
     * through vdisk/bitmap.h; valid until the next bitmap operation. */
    uint32_t nb_bitmaps;
    const struct vdisk_bitmap_info *bitmaps;

    /* VMDK ("format-specific" in qemu-img info); create_type is NULL for
     * other formats. */
    const char *create_type;         /* "monolithicSparse", "streamOptimized", ... */
    uint32_t cid, parent_cid;        /* content IDs (0xffffffff: no parent) */
    uint32_t nb_extents;
    const struct vdisk_extent_info *extents;

    /* Encryption (qemu-img info's "encrypted: yes" and the "encrypt"
     * block), NULL for images that are not encrypted. */
    const struct vdisk_encrypt_info *encrypt;

    /* qcow2's external data file: the name its header gives (NULL: none),
     * and whether it is a raw image of the disk by itself (qemu-img info's
     * "data file" and "data file raw"); has_data_file: the image uses an
     * external data file (its header may not name it). */
    const char *data_file;
    bool data_file_raw;
    bool has_data_file;              /* the image uses one (named or not) */
};

/* The first version of struct vdisk_info ended with refcount_bits. */
#define VDISK_INFO_SIZE_V1 VDISK_STRUCT_END(struct vdisk_info, refcount_bits)

/*
 * vdisk_get_info: fills *INFO.  Returns 0, or -EINVAL when
 * info->struct_size is smaller than VDISK_INFO_SIZE_V1 (nothing is written
 * then).  A smaller (older) structure is filled up to its size, and never
 * past it; struct_size is set to the size filled.
 */
int vdisk_get_info(vdisk_dev *dev, struct vdisk_info *info);

/*
 * vdisk_get_backing: the device that the image's unallocated areas read
 * from (its backing file), or NULL.  The handle is borrowed: it lives as
 * long as DEV, or until vdisk_set_backing() replaces it; do not close it.
 */
vdisk_dev *vdisk_get_backing(vdisk_dev *dev);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_INFO_H */
