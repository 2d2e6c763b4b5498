/* SPDX-License-Identifier: MIT */
/*
 * lib/abi.h: public structures that carry struct_size (the rule is in
 * vdisk/device.h, "Structures that grow").
 *
 * Every such structure starts with `size_t struct_size`.  A public call
 * that takes one:
 *   - output (the library fills it):
 *         size_t have;
 *         int r = ABI_SIZE(vdisk_x, out, VDISK_X_SIZE_V1, &have);
 *         if (r < 0) return r;
 *         struct vdisk_x full;  ... memset, fill ...
 *         abi_copy_out(out, &full, have, sizeof full);
 *   - input (the caller fills it):
 *         struct vdisk_x in;
 *         int r = ABI_IN(vdisk_x, &in, caller, VDISK_X_SIZE_V1);
 *     which leaves the fields the caller's version lacks at 0 (each field's
 *     default is 0 by design).
 * Nothing is ever read or written past min(struct_size, sizeof) bytes of
 * the caller's structure.
 */
#ifndef VDISK_ABI_H
#define VDISK_ABI_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "error_internal.h"

/*
 * abi_size: checks the struct_size of the caller's structure S (named TYPE
 * in messages): at least V1, the size of the structure's first version.
 * Stores it in *HAVE.  Returns 0, or -EINVAL with a message naming the
 * structure and the sizes (also for a NULL S).
 */
static inline int abi_size(const char *type, const void *s, size_t v1, size_t cur, size_t *have)
{
    *have = 0;
    if (!s)
        return err_set(-EINVAL, "no struct %s given (NULL)", type);
    size_t n;
    memcpy(&n, s, sizeof n);
    if (n < v1)
        return err_set(-EINVAL, "struct %s: struct_size is %zu bytes, smaller than its first "
                       "version (%zu bytes; %zu in this library): set it to sizeof(struct %s)",
                       type, n, v1, cur, type);
    *have = n;
    return 0;
}

/*
 * abi_copy_out: FULL is the library's copy of the structure (CUR bytes),
 * filled in full; copies to DST the HAVE bytes (from abi_size) the caller
 * has, at most CUR, with struct_size set to that many.
 */
static inline void abi_copy_out(void *dst, void *full, size_t have, size_t cur)
{
    size_t n = have < cur ? have : cur;
    memcpy(full, &n, sizeof n);
    memcpy(dst, full, n);
}

/*
 * abi_copy_in: the caller's input structure SRC (HAVE bytes, from
 * abi_size) into the library's DST (CUR bytes): the fields the caller has,
 * 0 (the default) for those its version lacks; fields past CUR (a newer
 * caller's) are not read.  DST's struct_size says how much was read.
 */
static inline void abi_copy_in(void *dst, size_t cur, const void *src, size_t have)
{
    size_t n = have < cur ? have : cur;
    memset(dst, 0, cur);
    memcpy(dst, src, n);
    memcpy(dst, &n, sizeof n);
}

/* The checks and copies above for `struct TYPE`. */
#define ABI_SIZE(type, s, v1, have) abi_size(#type, (s), (v1), sizeof(struct type), (have))

static inline int abi_in(const char *type, void *dst, size_t cur, const void *src, size_t v1)
{
    size_t have;
    int r = abi_size(type, src, v1, cur, &have);
    if (r == 0)
        abi_copy_in(dst, cur, src, have);
    return r;
}
#define ABI_IN(type, dst, src, v1) abi_in(#type, (dst), sizeof(struct type), (src), (v1))

/* An output structure the library already holds in full (FULL, a copy it
 * may change): checked and copied out in one step. */
static inline int abi_out(const char *type, void *dst, void *full, size_t cur, size_t v1)
{
    size_t have;
    int r = abi_size(type, dst, v1, cur, &have);
    if (r == 0)
        abi_copy_out(dst, full, have, cur);
    return r;
}
#define ABI_OUT(type, dst, full, v1) abi_out(#type, (dst), (full), sizeof(struct type), (v1))

#endif /* VDISK_ABI_H */
