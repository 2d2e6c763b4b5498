/* SPDX-License-Identifier: MIT */
/*
 * fuzz/json_name.c: the fuzz input is the part after "json:" of a json:
 * file name (what a user, a script or libvirt passes to every verb): parsed
 * and turned into a plain name by lib/json_name.c.  Nothing is opened.  Any
 * crash, sanitizer report or leak is a bug; so is a name accepted without a
 * plain name, or a plain name that is itself a json: name.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json_name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > JSON_NAME_MAX + 16)
        return 0;
    char *name = malloc(size + 6);
    if (!name)
        return 0;
    memcpy(name, "json:", 5);
    memcpy(name + 5, data, size);
    name[size + 5] = '\0'; /* a NUL inside ends the name early, as in argv */
    struct json_name n;
    if (json_name_parse(name, &n) == 0) {
        if (!n.filename || !*n.filename || json_name_is(n.filename))
            abort();
        if (n.read_only < -1 || n.read_only > 1)
            abort();
    }
    json_name_free(&n);
    free(name);
    return 0;
}
