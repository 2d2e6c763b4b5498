/* SPDX-License-Identifier: MIT */
/*
 * fuzz/json_name.c: the fuzz input is the part after "json:" of a json:
 * file name (what a user, a script or libvirt passes to every verb): parsed
 * and turned into a plain name by lib/json_name.c.  Nothing is opened.  Any
 * crash, sanitizer report or leak is a bug; so is a name accepted without a
 * plain name, or a plain name that is itself a json: name.  The blkdebug
 * rules a name carries (its inline inject-error and set-state arrays) are
 * read by blkdebug's config parser; so is the input itself, as a blkdebug
 * config file (formats/blkdebug: [inject-error], key = "value" lines).
 */
#include <stdlib.h>
#include <string.h>

#include "driver.h"
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
        if (n.nopts > JSON_NAME_OPTS)
            abort();
        for (unsigned i = 0; i < n.nopts; i++) {
            if (!n.opt_key[i] || !n.opt_val[i])
                abort();
            if (!strcmp(n.opt_key[i], "blkdebug.rules"))
                blkdebug_parse_rules(n.opt_val[i], strlen(n.opt_val[i]));
        }
    }
    blkdebug_parse_rules((const char *)data, size);
    json_name_free(&n);
    free(name);
    return 0;
}
