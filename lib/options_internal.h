/* SPDX-License-Identifier: MIT */
/* lib/options_internal.h: option sets during an open or create. */
#ifndef VDISK_OPTIONS_INTERNAL_H
#define VDISK_OPTIONS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vdisk/options.h>

struct opt_set {
    const vdisk_options *opts;
    size_t count;
    unsigned char *taken;
};

int opt_set_init(struct opt_set *s, const vdisk_options *opts);
void opt_set_fini(struct opt_set *s);
const char *opt_take(struct opt_set *s, const char *key);
/* The key and value of option I (< s->count), taken or not. */
const char *opt_key(const struct opt_set *s, size_t i);
const char *opt_value(const struct opt_set *s, size_t i);
/* Fails with a message naming the first option that nothing took. */
int opt_check_all_taken(struct opt_set *s, const char *what);
int opt_bool(const char *key, const char *v, bool *out);
int opt_uint(const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out);
/* A size option: vdisk_parse_size()'s grammar (bytes without a suffix), in
 * [MIN, MAX]; -EINVAL with a message naming KEY and V otherwise. */
int opt_size(const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out);

/* A copy of FROM (NULL: an empty set), or NULL when out of memory. */
vdisk_options *opt_dup(const vdisk_options *from);
/* vdisk_options_set() for the library's own use (no error context). */
int opt_add(vdisk_options *opts, const char *key, const char *value);

#endif /* VDISK_OPTIONS_INTERNAL_H */
