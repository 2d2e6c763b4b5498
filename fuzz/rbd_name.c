/* SPDX-License-Identifier: MIT */
/*
 * fuzz/rbd_name.c: the fuzz input is the part after "rbd:" of an RBD image
 * name (an image's header may name its backing file so): parsed by the rbd
 * driver's parser (formats/rbd/name.c), and a name it accepts shown as
 * qemu-img shows it (rbd_name_json).  No cluster is contacted.  Any crash,
 * sanitizer report or leak is a bug.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rbd_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * RBD_MAX_NAME)
        return 0;
    char *name = malloc(size + 5);
    if (!name)
        return 0;
    memcpy(name, "rbd:", 4);
    memcpy(name + 4, data, size);
    name[size + 4] = '\0'; /* a NUL inside ends the name early, as in a header */
    struct rbd_name n;
    if (rbd_name_parse(name, &n) == 0) {
        if (!n.pool || !*n.pool || !n.image || !*n.image)
            abort(); /* accepted without a pool or an image */
        char *shown = rbd_name_json(&n, "raw");
        if (shown && strncmp(shown, "json:{", 6) != 0)
            abort();
        free(shown);
        rbd_name_free(&n);
    }
    free(name);
    return 0;
}
