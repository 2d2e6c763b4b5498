/* SPDX-License-Identifier: MIT */
/*
 * lib/json_name.h: json:{...} file names, as qemu-img takes them, made into
 * the plain name vdisk opens (a path, an NBD URI, an rbd: name), the format
 * and the read-only flag they say (json_name.c has the grammar).
 */
#ifndef VDISK_JSON_NAME_H
#define VDISK_JSON_NAME_H

#include <stdbool.h>

/* The longest json: name taken, and how deep its objects may nest. */
#define JSON_NAME_MAX   65536
#define JSON_NAME_DEPTH 8
/* Keys in one name (all levels). */
#define JSON_NAME_KEYS  256
/* Open options a name may carry (struct json_name's opt_key). */
#define JSON_NAME_OPTS  16
/* Format options a name may carry (json_name.fmt_key). */
#define JSON_NAME_FMT_OPTS 9

struct json_name {
    char *filename; /* the plain name */
    char *format;   /* the format driver it names, or NULL */
    bool protocol_only; /* the object is a protocol's ("driver": "rbd"): on
                         * open the image is raw (not probed), as in QEMU */
    char *protocol;     /* then that driver's name */
    int read_only;  /* "read-only": -1 not given, else 0 or 1 */
    char *shown_file; /* the protocol's object as qemu-img shows it in
                       * json:{"driver": FORMAT, "file": OBJECT} where that
                       * is not how it shows the plain name (an RBD image's
                       * lists the keys given, no others), or NULL */
    /* Options of the open that the name says beyond the plain name, e.g.
     * "null.size" (null-co's size), "raw.offset" and "raw.size" (raw's
     * range of its file), "blkdebug.rules" (blkdebug's inline rules, in
     * its config file's syntax), "locking". */
    unsigned nopts;
    char *opt_key[JSON_NAME_OPTS], *opt_val[JSON_NAME_OPTS];
    /* The format's own options the name gives (an encrypted image's
     * "encrypt.key-secret" for qcow2, "key-secret" for luks), which the
     * open passes to the format as options of those names. */
    char *fmt_key[JSON_NAME_FMT_OPTS], *fmt_val[JSON_NAME_FMT_OPTS];
    unsigned fmt_opts;
};

/* Whether NAME is a json: name. */
bool json_name_is(const char *name);

/* Parses the json: name NAME into *OUT.  Returns 0, or -EINVAL (bad JSON,
 * a missing or unknown key), -ENOTSUP (an option vdisk does not have),
 * -ENAMETOOLONG, -ENOMEM, with a message naming NAME's problem.  Free *OUT
 * with json_name_free() (also after a failure: it is then empty). */
int json_name_parse(const char *name, struct json_name *out);
void json_name_free(struct json_name *n);

#endif /* VDISK_JSON_NAME_H */
