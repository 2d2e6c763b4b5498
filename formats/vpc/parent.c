/* SPDX-License-Identifier: MIT */
/*
 * formats/vpc/parent.c: the parent of a differencing VHD.
 *
 * The dynamic disk header names the parent twice over: its file name in
 * UTF-16BE, and up to eight parent locators, each a platform code and a
 * path stored elsewhere in the file:
 *   W2ru  a path relative to the image, UTF-16LE (Windows: ".\base.vhd")
 *   W2ku  an absolute Windows path, UTF-16LE ("C:\VMs\base.vhd"): not
 *         followed here (no drive letters), but checked
 *   MacX  a file URL, UTF-8 (Mac OS X: "file://localhost/Users/a/base.vhd")
 *   Mac   a Mac OS alias record: not followed, checked
 * The first of W2ru, MacX and the header's name whose file exists is
 * opened, as a VHD (a parent is one), under the backing-file rules of the
 * qcow2 driver: names resolved against the image's folder,
 * backing-confine=on keeping them inside it, network names only with
 * backing-allow-network=on, a depth limit and no loops.  The parent's
 * footer UUID must be the one the header records.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "vpc.h"

/* A Windows relative path as a POSIX one: '\' to '/', no leading ".\". */
static void windows_relative(char *p)
{
    for (char *q = p; *q; q++)
        if (*q == '\\')
            *q = '/';
    while (p[0] == '.' && p[1] == '/')
        memmove(p, p + 2, strlen(p + 2) + 1);
}

/* A file URL's path ("file://localhost/a%20b" -> "/a b"); NULL otherwise. */
static char *file_url_path(const char *url)
{
    if (strncmp(url, "file://", 7) != 0)
        return NULL;
    const char *p = url + 7;
    if (!strncmp(p, "localhost/", 10))
        p += 9;
    if (*p != '/')
        return NULL;
    char *out = malloc(strlen(p) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (; *p; p++) {
        if (*p == '%' && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0) {
            out[o++] = (char)(hex_digit(p[1]) * 16 + hex_digit(p[2]));
            p += 2;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
    if (strlen(out) != o) { /* an encoded NUL */
        free(out);
        return NULL;
    }
    return out;
}

/* The candidates' names, in the order they are tried. */
struct names {
    char *name[VPC_LOCATORS + 1];
    unsigned n;
};

static void names_free(struct names *nm)
{
    for (unsigned i = 0; i < nm->n; i++)
        free(nm->name[i]);
}

static int read_locators(struct vpc *s, const uint8_t *hdr, struct names *nm)
{
    const char *fn = s->dev->filename;
    uint64_t fsize = dev_size(s->file);
    if (s->file->file_length && s->file->file_length < fsize)
        fsize = s->file->file_length;
    char *macx = NULL;
    int r = 0;
    for (unsigned i = 0; i < VPC_LOCATORS && r == 0; i++) {
        const uint8_t *l = hdr + VPC_H_LOCATORS + i * VPC_LOCATOR_SIZE;
        uint32_t code = be32_load(l), len = be32_load(l + 8);
        uint64_t off = be64_load(l + 16);
        if (code == 0)
            continue;
        if (len > VPC_MAX_LOCATOR || !range_inside(off, len, fsize)) {
            r = err_set(-EINVAL, "%s: parent locator %u (platform 0x%08" PRIx32 ") claims %"
                        PRIu32 " bytes at offset %" PRIu64 "; expected at most %u bytes inside "
                        "the file (%" PRIu64 " bytes)", fn, i, code, len, off, VPC_MAX_LOCATOR,
                        fsize);
            break;
        }
        bool w2ru = !memcmp(l, "W2ru", 4), mx = !memcmp(l, "MacX", 4);
        if ((!w2ru && !mx) || len == 0)
            continue;
        uint8_t *buf = malloc(len);
        if (!buf) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        r = dev_pread(s->file, buf, len, off);
        char *name = NULL;
        if (r == 0 && w2ru) {
            name = utf16_to_utf8(buf, len, false);
            if (name)
                windows_relative(name);
        } else if (r == 0) {
            char *url = strndup((const char *)buf, len);
            name = url ? file_url_path(url) : NULL;
            free(url);
        }
        free(buf);
        if (r == 0 && (!name || !*name)) {
            free(name);
            r = err_set(-EINVAL, "%s: parent locator %u (%.4s, %" PRIu32 " bytes at offset %"
                        PRIu64 ") does not hold a valid path", fn, i, (const char *)l, len, off);
            break;
        }
        if (r == 0 && w2ru)
            nm->name[nm->n++] = name;
        else if (r == 0 && !macx)
            macx = name;
        else
            free(name);
    }
    if (macx) {
        if (r == 0)
            nm->name[nm->n++] = macx;
        else
            free(macx);
    }
    if (r == 0) {
        char *name = utf16_to_utf8(hdr + VPC_H_PARENT_NAME, VPC_H_PARENT_NAME_LEN, true);
        if (!name)
            return err_set(-EINVAL, "%s: the parent's name in the dynamic disk header is not "
                           "valid UTF-16", fn);
        if (*name)
            nm->name[nm->n++] = name;
        else
            free(name);
    }
    return r;
}

int vpc_open_parent(struct vpc *s, const uint8_t *hdr, struct opt_set *os)
{
    const char *fn = s->dev->filename;
    const struct vdisk_open_params *up = &s->dev->params;
    struct names nm = {0};
    int r = read_locators(s, hdr, &nm);
    if (r == 0 && nm.n == 0)
        r = err_set(-EINVAL, "%s: the differencing image names no parent (no W2ru or MacX "
                    "locator, no name in its header)", fn);
    if (r < 0) {
        names_free(&nm);
        return r;
    }
    /* The first that exists; else the first, to say why it fails. */
    unsigned pick = 0;
    for (unsigned i = 0; i < nm.n && !up->open_backing; i++) {
        char *full = backing_resolve(fn, nm.name[i]);
        bool there = full && access(full, F_OK) == 0;
        free(full);
        if (there) {
            pick = i;
            break;
        }
    }
    s->parent_name = nm.name[pick];
    nm.name[pick] = NULL;
    names_free(&nm);
    struct backing_spec b = {.name = s->parent_name, .format = "vpc", .confine = s->confine,
                             .allow_network = s->allow_network,
                             .max_depth = VPC_MAX_CHAIN_DEPTH};
    r = backing_open(s->dev, &b, &s->parent, &s->full_parent);
    (void)os;
    if (r < 0)
        return r;
    const struct vpc *ps = s->parent->drv == &vdisk_driver_vpc ? s->parent->priv : NULL;
    if (ps && memcmp(ps->uuid, hdr + VPC_H_PARENT_UUID, 16) != 0) {
        char want[33], got[33];
        for (int i = 0; i < 16; i++) {
            snprintf(want + 2 * i, 3, "%02x", hdr[VPC_H_PARENT_UUID + i]);
            snprintf(got + 2 * i, 3, "%02x", ps->uuid[i]);
        }
        dev_unref(s->parent);
        s->parent = NULL;
        return err_set(-EINVAL, "%s: the parent '%s' has UUID %s; the image's header (parent "
                       "UUID at offset %" PRIu64 ") expects %s", fn, s->full_parent, got,
                       be64_load(s->footer + VPC_F_DATA_OFFSET) + VPC_H_PARENT_UUID, want);
    }
    return 0;
}
