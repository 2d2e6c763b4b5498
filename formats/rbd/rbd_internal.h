/* SPDX-License-Identifier: MIT */
/* formats/rbd/: the rbd protocol's own declarations. */
#ifndef VDISK_RBD_INTERNAL_H
#define VDISK_RBD_INTERNAL_H

#include "driver.h"

/* The longest RBD name taken (pool, image, snapshot and options). */
#define RBD_MAX_NAME 4096

struct rbd_opt {
    const char *key, *value;
};

/* A parsed rbd: name (name.c); the strings point into buf. */
struct rbd_name {
    char *buf;
    const char *pool, *ns, *image, *snap;
    const char *conf, *user;
    struct rbd_opt *opts;      /* the other KEY=VALUE options, for rados_conf_set */
    unsigned nopts;
};

/* Parses FILENAME into *N; returns 0, or -errno with a message.  Free with
 * rbd_name_free() (also after a failure: it is then empty). */
int rbd_name_parse(const char *filename, struct rbd_name *n);
void rbd_name_free(struct rbd_name *n);
/* Frees N and sets the message "FILENAME: WHY"; returns R. */
int rbd_name_fail(struct rbd_name *n, int r, const char *filename, const char *why);

/* The name as qemu-img shows it: json:{"driver": FORMAT, "file": {...}}
 * with the keys in QEMU's order; NULL when out of memory. */
char *rbd_name_json(const struct rbd_name *n, const char *format);

#endif
