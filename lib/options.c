/* SPDX-License-Identifier: MIT */
/*
 * lib/options.c: key=value options (vdisk/options.h), and the option sets
 * through which an open or create takes them (options_internal.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "options_internal.h"
#include "size.h"

struct vdisk_options {
    size_t count, cap;
    char **keys;
    char **values;
};

VDISK_EXPORT int vdisk_options_new(vdisk_options **optsp)
{
    err_enter(__func__);
    *optsp = calloc(1, sizeof **optsp);
    if (!*optsp)
        return err_set(-ENOMEM, "out of memory");
    return 0;
}

VDISK_EXPORT void vdisk_options_free(vdisk_options *opts)
{
    if (!opts)
        return;
    for (size_t i = 0; i < opts->count; i++) {
        free(opts->keys[i]);
        free(opts->values[i]);
    }
    free(opts->keys);
    free(opts->values);
    free(opts);
}

static int options_set(vdisk_options *opts, const char *key, const char *value)
{
    if (!key || !*key || strpbrk(key, "=,"))
        return err_set(-EINVAL, "invalid option name '%s'", key ? key : "(null)");
    if (!value)
        return err_set(-EINVAL, "option '%s' has no value", key);
    char *v = strdup(value);
    if (!v)
        return err_set(-ENOMEM, "out of memory");
    for (size_t i = 0; i < opts->count; i++) {
        if (strcmp(opts->keys[i], key) == 0) {
            free(opts->values[i]);
            opts->values[i] = v;
            return 0;
        }
    }
    if (opts->count == opts->cap) {
        size_t cap = opts->cap ? opts->cap * 2 : 8;
        char **k = realloc(opts->keys, cap * sizeof *k);
        if (k)
            opts->keys = k;
        char **vv = realloc(opts->values, cap * sizeof *vv);
        if (vv)
            opts->values = vv;
        if (!k || !vv) {
            free(v);
            return err_set(-ENOMEM, "out of memory");
        }
        opts->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return err_set(-ENOMEM, "out of memory");
    }
    opts->keys[opts->count] = k;
    opts->values[opts->count] = v;
    opts->count++;
    return 0;
}

VDISK_EXPORT int vdisk_options_set(vdisk_options *opts, const char *key, const char *value)
{
    err_enter(__func__);
    return options_set(opts, key, value);
}

VDISK_EXPORT int vdisk_options_parse(vdisk_options *opts, const char *list)
{
    err_enter(__func__);
    size_t n = strlen(list);
    char *buf = malloc(n + 1);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    const char *p = list;
    int ret = 0;
    while (*p && ret == 0) {
        /* Copy one pair, turning ",," into ",". */
        size_t len = 0;
        for (; *p; p++) {
            if (*p == ',') {
                if (p[1] == ',') {
                    buf[len++] = ',';
                    p++;
                    continue;
                }
                p++;
                break;
            }
            buf[len++] = *p;
        }
        buf[len] = '\0';
        if (len == 0)
            continue;
        char *eq = strchr(buf, '=');
        if (!eq) {
            ret = err_set(-EINVAL, "option '%s' has no value (expected key=value)", buf);
            break;
        }
        *eq = '\0';
        ret = options_set(opts, buf, eq + 1);
    }
    free(buf);
    return ret;
}

VDISK_EXPORT const char *vdisk_options_get(const vdisk_options *opts, const char *key)
{
    if (!opts)
        return NULL;
    for (size_t i = 0; i < opts->count; i++)
        if (strcmp(opts->keys[i], key) == 0)
            return opts->values[i];
    return NULL;
}

/* ---- Option sets used during one open or create --------------------------- */

int opt_set_init(struct opt_set *s, const vdisk_options *opts)
{
    s->opts = opts;
    s->count = opts ? opts->count : 0;
    s->taken = NULL;
    if (s->count) {
        s->taken = calloc(s->count, 1);
        if (!s->taken)
            return err_set(-ENOMEM, "out of memory");
    }
    return 0;
}

void opt_set_fini(struct opt_set *s)
{
    free(s->taken);
    s->taken = NULL;
}

const char *opt_take(struct opt_set *s, const char *key)
{
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->opts->keys[i], key) == 0) {
            s->taken[i] = 1;
            return s->opts->values[i];
        }
    }
    return NULL;
}

const char *opt_key(const struct opt_set *s, size_t i)
{
    return s->opts->keys[i];
}

const char *opt_value(const struct opt_set *s, size_t i)
{
    return s->opts->values[i];
}

int opt_check_all_taken(struct opt_set *s, const char *what)
{
    for (size_t i = 0; i < s->count; i++)
        /* backing-confine, backing-allow-network, repair and check hold
         * trivially for formats without backing files, a corrupt mark or
         * tables that a check reads itself, so that callers can give them
         * for any image. */
        if (!s->taken[i] && strcmp(s->opts->keys[i], "backing-confine") != 0 &&
            strcmp(s->opts->keys[i], "backing-allow-network") != 0 &&
            strcmp(s->opts->keys[i], "repair") != 0 &&
            strcmp(s->opts->keys[i], "check") != 0 &&
            /* Secrets (secret.ID) are there for whichever image names
             * them; no-key asks encrypted images alone. */
            strncmp(s->opts->keys[i], "secret.", 7) != 0 &&
            strcmp(s->opts->keys[i], "no-key") != 0)
            return err_set(-EINVAL, "%s does not support the option '%s'", what,
                           s->opts->keys[i]);
    return 0;
}

int opt_bool(const char *key, const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) {
        *out = false;
        return 0;
    }
    return err_set(-EINVAL, "option '%s' expects 'on' or 'off', not '%s'", key, v);
}

int opt_uint(const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*v || *v == '-')
        goto bad;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno || *end || x < min || x > max)
        goto bad;
    *out = x;
    return 0;
bad:
    return err_set(-EINVAL, "option '%s' expects a number from %llu to %llu, not '%s'", key,
                   (unsigned long long)min, (unsigned long long)max, v);
}

int opt_size(const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t x;
    int r = size_parse(v, 0, &x);
    if (r == -ERANGE)
        return err_set(-EINVAL, "Value '%s' is out of range for parameter '%s'", v, key);
    if (r < 0)
        return err_set(-EINVAL, "Parameter '%s' expects a non-negative number below 2^64 "
                       "(with an optional suffix k, M, G, T, P or E), not '%s'", key, v);
    if (x < min || x > max)
        return err_set(-EINVAL, "option '%s' expects a size from %llu to %llu bytes, not '%s'",
                       key, (unsigned long long)min, (unsigned long long)max, v);
    *out = x;
    return 0;
}

vdisk_options *opt_dup(const vdisk_options *from)
{
    vdisk_options *o = calloc(1, sizeof *o);
    for (size_t i = 0; o && from && i < from->count; i++) {
        if (options_set(o, from->keys[i], from->values[i]) < 0) {
            vdisk_options_free(o);
            return NULL;
        }
    }
    return o;
}

int opt_add(vdisk_options *opts, const char *key, const char *value)
{
    return options_set(opts, key, value);
}
