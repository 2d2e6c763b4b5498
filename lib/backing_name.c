/* SPDX-License-Identifier: MIT */
/*
 * lib/backing_name.c: the name of a backing file (a qcow2 backing file, a
 * VHD parent) as the image's header gives it: resolved against the image's
 * folder as QEMU resolves it, and the backing-confine test.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "error_internal.h"

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
