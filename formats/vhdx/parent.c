/* SPDX-License-Identifier: MIT */
/*
 * formats/vhdx/parent.c: the parent of a differencing VHDX ([MS-VHDX]
 * 2.6.2.6): the parent locator metadata item, its keys, and the opening of
 * the parent.
 *
 * The locator is a type GUID (VHDX parents: B04AEFB7-D19E-4A81-B789-
 * 25B8E9445913), a key/value count and 12-byte entries (key offset, value
 * offset, key length, value length; offsets from the locator's start),
 * keys and values in UTF-16LE.  Keys: parent_linkage (the parent's
 * DataWriteGuid, "{...}"), parent_linkage2, relative_path, volume_path,
 * absolute_win32_path.  The parent is opened from relative_path (against
 * the image's folder, '\' read as '/'), else absolute_win32_path when it
 * has no drive letter, under the backing-file rules (confined, no network
 * names unless allowed, a depth limit, no loops), as a VHDX; its current
 * header's DataWriteGuid must be parent_linkage (or parent_linkage2).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "driver.h"
#include "vhdx.h"

/* UTF-16LE (BYTES bytes, no NUL) to UTF-8; NULL when invalid or empty. */
static char *utf16le(const uint8_t *p, size_t bytes)
{
    return bytes % 2 || bytes == 0 ? NULL : utf16_to_utf8(p, bytes, false);
}

static const uint8_t vhdx_parent_type[16] = {0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a,
                                             0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13};

int vhdx_read_locator(struct vhdx *s, uint64_t off, uint32_t len)
{
    const char *fn = s->dev->filename;
    if (len < 20 || len > VHDX_MAX_LOCATOR)
        return err_set(-EINVAL, "%s: the VHDX parent locator at offset %" PRIu64 " has %" PRIu32
                       " bytes; expected 20 to %u", fn, off, len, VHDX_MAX_LOCATOR);
    uint8_t *b = malloc(len);
    if (!b)
        return err_set(-ENOMEM, "out of memory");
    int r = dev_pread(s->file, b, len, off);
    if (r == 0 && memcmp(b, vhdx_parent_type, 16) != 0)
        r = err_set(-ENOTSUP, "%s: the VHDX parent locator at offset %" PRIu64 " is of type "
                    "%08" PRIx32 "-...; vdisk reads VHDX parents (b04aefb7-...) only", fn, off,
                    le32_load(b));
    uint16_t n = r == 0 ? le16_load(b + 18) : 0;
    if (r == 0 && 20 + (uint64_t)n * 12 > len)
        r = err_set(-EINVAL, "%s: the VHDX parent locator at offset %" PRIu64 " has %u "
                    "entries, more than its %" PRIu32 " bytes hold", fn, off, n, len);
    for (uint16_t i = 0; r == 0 && i < n; i++) {
        const uint8_t *e = b + 20 + (size_t)i * 12;
        uint32_t ko = le32_load(e), vo = le32_load(e + 4);
        uint16_t kl = le16_load(e + 8), vl = le16_load(e + 10);
        if (!range_inside(ko, kl, len) || !range_inside(vo, vl, len)) {
            r = err_set(-EINVAL, "%s: VHDX parent locator entry %u (offset %" PRIu64 "): key "
                        "(%" PRIu32 ", %u bytes) or value (%" PRIu32 ", %u bytes) outside "
                        "the locator's %" PRIu32 " bytes", fn, i, off + 20 + 12 * (uint64_t)i,
                        ko, kl, vo, vl, len);
            break;
        }
        char *key = utf16le(b + ko, kl), *val = utf16le(b + vo, vl);
        char **slot = NULL;
        if (key && !strcmp(key, "parent_linkage"))
            slot = &s->parent_linkage;
        else if (key && !strcmp(key, "parent_linkage2"))
            slot = &s->parent_linkage2;
        else if (key && !strcmp(key, "relative_path"))
            slot = &s->relative_path;
        else if (key && !strcmp(key, "absolute_win32_path"))
            slot = &s->absolute_path;
        if (slot && !val) {
            r = err_set(-EINVAL, "%s: VHDX parent locator entry %u (offset %" PRIu64 "): the "
                        "value of %s is not UTF-16 text", fn, i,
                        off + 20 + 12 * (uint64_t)i, key);
        } else if (slot && *slot) {
            r = err_set(-EINVAL, "%s: VHDX parent locator entry %u (offset %" PRIu64 ") "
                        "names %s a second time", fn, i, off + 20 + 12 * (uint64_t)i, key);
        } else if (slot) {
            *slot = val;
            val = NULL;
        }
        free(key);
        free(val);
    }
    free(b);
    if (r == 0 && !s->parent_linkage)
        r = err_set(-EINVAL, "%s: the VHDX parent locator at offset %" PRIu64 " has no "
                    "parent_linkage", fn, off);
    if (r == 0 && !s->relative_path && !s->absolute_path)
        r = err_set(-EINVAL, "%s: the VHDX parent locator at offset %" PRIu64 " has neither "
                    "relative_path nor absolute_win32_path", fn, off);
    return r;
}

/* A Windows path as a POSIX one: '\' to '/', no leading ".\"; NULL for a
 * name with a drive letter or a UNC/volume prefix (no meaning here). */
static char *posix_path(const char *w)
{
    if (((w[0] | 0x20) >= 'a' && (w[0] | 0x20) <= 'z' && w[1] == ':') ||
        (w[0] == '\\' && w[1] == '\\'))
        return NULL;
    if (w[0] == '.' && w[1] == '\\')
        w += 2;
    char *p = strdup(w);
    for (char *q = p; q && *q; q++)
        if (*q == '\\')
            *q = '/';
    return p;
}

static void guid_text(const uint8_t *g, char out[39])
{
    snprintf(out, 39, "{%08" PRIx32 "-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
             le32_load(g), le16_load(g + 4), le16_load(g + 6), g[8], g[9], g[10], g[11], g[12],
             g[13], g[14], g[15]);
}

int vhdx_open_parent(struct vhdx *s)
{
    const char *fn = s->dev->filename;
    char *cand[2] = {s->relative_path ? posix_path(s->relative_path) : NULL,
                     s->absolute_path ? posix_path(s->absolute_path) : NULL};
    int pick = cand[0] ? 0 : 1;
    for (int i = 0; i < 2 && !s->dev->params.open_backing; i++) {
        if (!cand[i])
            continue;
        char *full = backing_resolve(fn, cand[i]);
        bool there = full && access(full, F_OK) == 0;
        free(full);
        if (there) {
            pick = i;
            break;
        }
    }
    if (!cand[pick]) {
        free(cand[0]);
        free(cand[1]);
        return err_set(-ENOTSUP, "%s: the VHDX parent locator names the parent '%s' only by "
                       "a Windows volume or drive path, which vdisk cannot open", fn,
                       s->absolute_path ? s->absolute_path : s->relative_path);
    }
    s->parent_name = cand[pick];
    free(cand[!pick]);
    struct backing_spec b = {.name = s->parent_name, .format = "vhdx", .confine = s->confine,
                             .allow_network = s->allow_network,
                             .max_depth = VHDX_MAX_CHAIN_DEPTH};
    int r = backing_open(s->dev, &b, &s->parent, &s->full_parent);
    if (r < 0)
        return r;
    const struct vhdx *ps = s->parent->drv == &vdisk_driver_vhdx ? s->parent->priv : NULL;
    if (ps) {
        char got[39];
        guid_text(ps->header + VHDX_H_DATA_WRITE, got);
        if (strcasecmp(got, s->parent_linkage) != 0 &&
            (!s->parent_linkage2 || strcasecmp(got, s->parent_linkage2) != 0)) {
            dev_unref(s->parent);
            s->parent = NULL;
            return err_set(-EINVAL, "%s: the parent '%s' has DataWriteGuid %s; the image's "
                           "parent locator expects %s (the parent changed since)", fn,
                           s->full_parent, got, s->parent_linkage);
        }
    }
    return 0;
}
