/* SPDX-License-Identifier: MIT */
/*
 * lib/backing_name.c: the name of a backing file (a qcow2 backing file, a
 * VHD parent) as the image's header gives it: resolved against the image's
 * folder as QEMU resolves it, and the backing-confine test.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "error_internal.h"
#include "options_internal.h"

/* A name that is not resolved against the image's folder: an absolute
 * path, or a protocol's name (a URI, an rbd: image). */
static bool stands_alone(const char *name)
{
    return name[0] == '/' || strstr(name, "://") || dev_is_network_name(name);
}

char *backing_resolve(const char *image, const char *name)
{
    if (stands_alone(name))
        return strdup(name);
    const char *slash = strrchr(image, '/');
    if (!slash)
        return strdup(name);
    return str_printf("%.*s/%s", (int)(slash - image), image, name);
}

bool backing_escapes(const char *image, const char *name, const char *full)
{
    if (stands_alone(name))
        return true;
    long depth = 0;
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return true;
        } else if (n && !(n == 1 && p[0] == '.')) {
            depth++;
        }
        p += n;
        p += strspn(p, "/");
    }
    /* Symbolic links: compare real paths when the file exists (a missing
     * file fails the open later with its own message). */
    char dir[PATH_MAX], real_dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(image, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == image)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - image), image);
    if (!realpath(full, real) || !realpath(dir, real_dir))
        return false;
    size_t dl = strlen(real_dir);
    if (dl == 1) /* the folder is "/" */
        return false;
    return strncmp(real, real_dir, dl) != 0 || real[dl] != '/';
}

/* Whether option K is a backing file's key ("backing.[...]key-secret"). */
static bool is_backing_key(const char *k)
{
    size_t n = strlen(k);
    return !strncmp(k, "backing.", 8) && n >= 18 && !strcmp(k + n - 10, "key-secret");
}

/* Whether OS holds a key for the backing file, or asks to open without
 * keys (no-key, which goes down the chain). */
static bool has_backing_key(const struct opt_set *os)
{
    for (size_t i = 0; i < os->count; i++) {
        const char *k = opt_key(os, i);
        if (is_backing_key(k) || (!strcmp(k, "no-key") && !strcmp(opt_value(os, i), "on")))
            return true;
    }
    return false;
}

/* The backing file's keys of OS, one "backing." less, and every secret,
 * into BO.  0 or -ENOMEM. */
static int pass_keys(struct opt_set *os, vdisk_options *bo)
{
    for (size_t i = 0; i < os->count; i++) {
        const char *k = opt_key(os, i), *v = opt_value(os, i);
        int e = 0;
        if (is_backing_key(k)) {
            opt_take(os, k);
            e = opt_add(bo, k + 8, v);
        } else if (!strncmp(k, "secret.", 7) || !strcmp(k, "no-key")) {
            e = opt_add(bo, k, v);
        }
        if (e < 0)
            return e;
    }
    return 0;
}

int backing_open(struct vdisk_dev *overlay, const struct backing_spec *b, struct vdisk_dev **out,
                 char **full)
{
    const char *fn = overlay->filename;
    const struct vdisk_open_params *up = &overlay->params;
    *out = NULL;
    *full = NULL;
    if (up->no_backing)
        return err_set(-EPERM, "%s: backing files are not allowed here (the image names '%s')",
                       fn, b->name);
    char self[PATH_MAX];
    const char *me = up->open_backing ? fn : realpath(fn, self) ? self : fn;
    struct chain_link link = {me, up->chain, up->chain ? up->chain->depth + 1 : 1};
    if (link.depth > b->max_depth)
        return err_set(-ELOOP, "%s: the backing chain is deeper than %u images", fn,
                       b->max_depth);
    struct vdisk_open_params p = *up;
    p.read_only = true;
    p.chain = &link;
    int r;
    if (up->open_backing) {
        /* Fuzzing: the backing file comes from the caller. */
        if (!(*full = strdup(b->name)))
            return err_set(-ENOMEM, "out of memory");
        struct vdisk_dev *file;
        r = up->open_backing(up->backing_opaque, b->name, &p, &file);
        if (r == 0) {
            r = dev_open_format(out, file, b->format, &p, NULL);
            if (r < 0)
                dev_unref(file);
        }
    } else {
        if (!(*full = backing_resolve(fn, b->name)))
            return err_set(-ENOMEM, "out of memory");
        if (b->confine && backing_escapes(fn, b->name, *full))
            return err_set(-EPERM, "%s: the backing file name '%s' leads outside the image's "
                           "folder, which backing-confine=on forbids", fn, b->name);
        /* A network export named by the image's header (which whoever made
         * the image chose) is not connected to unless the user said so. */
        if (dev_is_network_name(b->name) && !b->allow_network)
            return err_set(-EPERM, "%s: the image's backing file is the network export '%s'; "
                           "opening it needs the open option backing-allow-network=on (or "
                           "VDISK_BACKING_ALLOW_NETWORK=on in the environment)", fn, b->name);
        char other[PATH_MAX];
        if (realpath(*full, other)) {
            for (const struct chain_link *l = &link; l; l = l->up)
                if (strcmp(l->path, other) == 0)
                    /* QEMU's words (qemu-img info --backing-chain's). */
                    return err_set(-ELOOP, "Backing file '%s' creates an infinite loop.",
                                   *full);
        }
        /* A backing format that is one of QEMU's protocol drivers (qemu-img
         * rebase -u -F host_device records one): the file as it is. */
        const char *fmt = b->format;
        if (fmt && (!strcmp(fmt, "file") || !strcmp(fmt, "host_device") ||
                    !strcmp(fmt, "host_cdrom")))
            fmt = "raw";
        if (fmt && !driver_by_name(fmt))
            return err_set(-EINVAL, "Could not open backing file: Unknown driver '%s'", fmt);
        /* Confinement goes down the chain, and so does the network choice;
         * the backing file's key when the user gave one. */
        vdisk_options *bo = NULL;
        struct opt_set bos = {0};
        bool keys = b->os && has_backing_key(b->os);
        bool pass = b->confine || b->allow_network || keys;
        if (pass) {
            const char *ctx = err_context();
            int e = vdisk_options_new(&bo);
            if (e == 0 && b->confine)
                e = vdisk_options_set(bo, "backing-confine", "on");
            if (e == 0 && b->allow_network)
                e = vdisk_options_set(bo, "backing-allow-network", "on");
            if (e == 0 && keys)
                e = pass_keys(b->os, bo);
            if (e == 0)
                e = opt_set_init(&bos, bo);
            err_enter(ctx);
            if (e < 0) {
                vdisk_options_free(bo);
                return err_set(-ENOMEM, "out of memory");
            }
        }
        r = dev_open(out, *full, fmt, &p, pass ? &bos : NULL);
        opt_set_fini(&bos);
        vdisk_options_free(bo);
    }
    if (r < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_detail());
        /* QEMU's words; the message below names the file that failed. */
        return err_set(r, "Could not open backing file: %s", msg);
    }
    return 0;
}

int backing_take_options(struct opt_set *os, bool *confine, bool *allow_network)
{
    *confine = false;
    *allow_network = false;
    const char *env = getenv("VDISK_BACKING_ALLOW_NETWORK");
    if (env && opt_bool("VDISK_BACKING_ALLOW_NETWORK", env, allow_network) < 0)
        *allow_network = false; /* (a bad value allows nothing) */
    const char *v = opt_take(os, "backing-allow-network");
    int r = 0;
    if (v)
        r = opt_bool("backing-allow-network", v, allow_network);
    v = opt_take(os, "backing-confine");
    if (r == 0 && v)
        r = opt_bool("backing-confine", v, confine);
    return r;
}

/* UTF-16 (BE or LE) to UTF-8, up to the first NUL; NULL when invalid. */
char *utf16_to_utf8(const uint8_t *p, size_t bytes, bool be)
{
    size_t units = bytes / 2;
    char *out = malloc(units * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < units; i++) {
        uint32_t c = be ? be16_load(p + 2 * i) : le16_load(p + 2 * i);
        if (c == 0)
            break;
        if (c >= 0xd800 && c < 0xdc00) {
            uint32_t d = i + 1 < units ? (be ? be16_load(p + 2 * i + 2) : le16_load(p + 2 * i + 2)) : 0;
            if (d < 0xdc00 || d >= 0xe000) {
                free(out);
                return NULL;
            }
            c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            i++;
        } else if (c >= 0xdc00 && c < 0xe000) {
            free(out);
            return NULL;
        }
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xc0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xe0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (c & 0x3f));
        } else {
            /* 4 bytes: room, since a surrogate pair took 2 units (6 bytes). */
            out[o++] = (char)(0xf0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    out[o] = 0;
    return out;
}
