/* SPDX-License-Identifier: MIT */
/*
 * lib/json_name.c: json:{...} file names (json_name.h), the form qemu-img
 * takes besides plain names, e.g.
 *
 *   json:{"driver": "qcow2", "file": {"driver": "file", "filename": "a.qcow2"}}
 *   json:{"driver": "raw", "file": {"driver": "rbd", "pool": "rbd", "image": "vm1"}}
 *   json:{"driver": "nbd", "server": {"type": "unix", "path": "/run/s"}, "export": "e"}
 *
 * The JSON is read strictly (RFC 8259: UTF-8, no trailing bytes, no
 * duplicate keys), at most JSON_NAME_MAX bytes, JSON_NAME_DEPTH levels and
 * JSON_NAME_KEYS keys; a message says where the reading stopped ("at byte
 * N", counted from 0 in the whole name).  Nested objects and dotted keys are the same thing
 * ("file": {"driver": "rbd"} is "file.driver": "rbd"), as in QEMU.
 *
 * The keys vdisk takes:
 *   driver       a format (raw, qcow2: the image is then in "file") or a
 *                protocol (file, host_device, nbd, rbd: the object is the
 *                protocol's, the image is raw); without it the format is
 *                probed
 *   read-only    true or false
 *   file         the protocol's object, with a format (or none)
 *   filename     in the protocol's object: a plain name (path, NBD URI,
 *                rbd: name); without the protocol's "driver" the name
 *                says which
 * and in the protocol's object:
 *   file, host_device   filename
 *   nbd          server.type (inet, the default, or unix), server.host,
 *                server.port (10809), server.path, export; or filename (a URI)
 *   rbd          pool, namespace, image, snapshot, conf, user; or filename
 *   null-co, null-aio   size, read-zeroes, latency-ns (formats/null)
 *   blkdebug     config, image (a file name or a protocol's object),
 *                inject-error and set-state (arrays of rules: event, state,
 *                new_state, errno, sector, once, immediately, iotype),
 *                handed to formats/blkdebug as the open option
 *                blkdebug.rules in its config file's syntax
 * and beside a format's driver:
 *   encrypt.key-secret (qcow2), key-secret (luks)   an encrypted image's
 *                secret ID, handed to the format as options (fmt_key)
 *   offset, size (raw)   a range of the file (open options raw.offset,
 *                raw.size)
 *   backing      null: no backing file (the open option backing.null)
 *   l2-cache-size, refcount-cache-size (qcow2)   passed on; qcow2's other
 *                tuning options dropped
 *   file.driver  a format: its own "file" the protocol's object (the open
 *                option file.format)
 * cache.direct on (at the top or the file's level) becomes the open's
 * cache mode none (O_DIRECT).  At any level cache.no-flush, node-name,
 * discard, detect-zeroes, aio, aio-max-batch and auto-read-only are
 * dropped (and cache.direct elsewhere), and locking becomes the open's
 * locking.
 * As QEMU's parser, strings may be single-quoted ('...', with \' as an
 * escape in both kinds); arrays are read as QEMU flattens them (KEY.0,
 * KEY.1, ...).  Any other key is refused (QEMU's words: "... does not
 * support the option"), so that nothing the name asks for is silently left
 * out (rbd's server list: name the monitors in a conf file or :mon_host=
 * instead).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json_name.h"

enum jtype { J_STR, J_NUM, J_BOOL, J_NULL };

struct jkey {
    char *key, *val;
    enum jtype type;
    bool used;
};

struct jp {
    const char *name;           /* the whole json: name, for messages */
    const char *start, *p, *end;
    struct jkey keys[JSON_NAME_KEYS];
    unsigned n;
    int err;
};

static int jp_fail(struct jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jp_fail(struct jp *j, const char *fmt, ...)
{
    if (j->err)
        return j->err;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    j->err = err_set(-EINVAL, "%s: Could not parse the JSON options: %s (at byte %zu)", j->name,
                     why, (size_t)(j->p - j->start) + 5);
    return j->err;
}

static void skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static void put_utf8(char *out, size_t *w, uint32_t c)
{
    if (c < 0x80) {
        out[(*w)++] = (char)c;
    } else if (c < 0x800) {
        out[(*w)++] = (char)(0xc0 | (c >> 6));
        out[(*w)++] = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out[(*w)++] = (char)(0xe0 | (c >> 12));
        out[(*w)++] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[(*w)++] = (char)(0x80 | (c & 0x3f));
    } else {
        out[(*w)++] = (char)(0xf0 | (c >> 18));
        out[(*w)++] = (char)(0x80 | ((c >> 12) & 0x3f));
        out[(*w)++] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[(*w)++] = (char)(0x80 | (c & 0x3f));
    }
}

/* The length of the valid UTF-8 sequence at P (before END), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    uint32_t c, min;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2, c = p[0] & 0x1f, min = 0x80;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3, c = p[0] & 0x0f, min = 0x800;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4, c = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return n;
}

static int hex4(struct jp *j, uint32_t *out)
{
    if (j->end - j->p < 4)
        return jp_fail(j, "a \\u escape is cut short");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = j->p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0)
            return jp_fail(j, "a \\u escape has a non-hex digit");
        v = v << 4 | (uint32_t)d;
    }
    j->p += 4;
    *out = v;
    return 0;
}

/* A string at j->p (its opening quote, '"' or, as QEMU also takes, '\''):
 * decoded into a new buffer. */
static char *parse_string(struct jp *j)
{
    char quote = *j->p++;
    /* Decoded, it is never longer than it is written. */
    const char *q = j->p;
    while (q < j->end && *q != quote)
        q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
    if (q >= j->end) {
        jp_fail(j, "a string has no closing quote");
        return NULL;
    }
    char *out = malloc((size_t)(q - j->p) + 1);
    if (!out) {
        j->err = err_set(-ENOMEM, "out of memory");
        return NULL;
    }
    size_t w = 0;
    while (*j->p != quote) {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) {
            jp_fail(j, "a control character in a string");
            goto fail;
        }
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
            if (!n) {
                jp_fail(j, "a string is not valid UTF-8");
                goto fail;
            }
            memcpy(out + w, j->p, n);
            w += n;
            j->p += n;
            continue;
        }
        j->p++;
        if (c != '\\') {
            out[w++] = (char)c;
            continue;
        }
        c = (unsigned char)*j->p++;
        static const char from[] = "\"'\\/bfnrt", to[] = "\"'\\/\b\f\n\r\t";
        const char *e = c ? strchr(from, c) : NULL;
        if (e) {
            out[w++] = to[e - from];
            continue;
        }
        if (c != 'u') {
            j->p--;
            jp_fail(j, "an unknown escape in a string");
            goto fail;
        }
        uint32_t u, lo;
        if (hex4(j, &u) < 0)
            goto fail;
        if (u >= 0xd800 && u <= 0xdbff) {
            if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') {
                jp_fail(j, "a lone UTF-16 surrogate");
                goto fail;
            }
            j->p += 2;
            if (hex4(j, &lo) < 0)
                goto fail;
            if (lo < 0xdc00 || lo > 0xdfff) {
                jp_fail(j, "a lone UTF-16 surrogate");
                goto fail;
            }
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            jp_fail(j, "a lone UTF-16 surrogate");
            goto fail;
        }
        if (u == 0) {
            jp_fail(j, "a NUL character in a string");
            goto fail;
        }
        put_utf8(out, &w, u);
    }
    j->p++; /* the closing quote */
    out[w] = '\0';
    return out;
fail:
    free(out);
    return NULL;
}

static int add_key(struct jp *j, const char *path, char *val, enum jtype type)
{
    for (unsigned i = 0; i < j->n; i++) {
        if (!strcmp(j->keys[i].key, path)) {
            free(val);
            return jp_fail(j, "the key '%s' is given twice", path);
        }
    }
    if (j->n == JSON_NAME_KEYS) {
        free(val);
        return jp_fail(j, "more than %d keys", JSON_NAME_KEYS);
    }
    char *k = strdup(path);
    if (!k) {
        free(val);
        return j->err = err_set(-ENOMEM, "out of memory");
    }
    j->keys[j->n++] = (struct jkey){.key = k, .val = val, .type = type};
    return 0;
}

static int parse_value(struct jp *j, const char *path, int depth);
static int parse_array(struct jp *j, const char *path, int depth);

/* An object at j->p; its keys are PREFIX.KEY ("" at the top). */
static int parse_object(struct jp *j, const char *prefix, int depth)
{
    if (depth > JSON_NAME_DEPTH)
        return jp_fail(j, "objects nest deeper than %d levels", JSON_NAME_DEPTH);
    j->p++; /* '{' */
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        skip_ws(j);
        if (j->p >= j->end || (*j->p != '"' && *j->p != '\''))
            return jp_fail(j, "a key (a string) was expected");
        char *key = parse_string(j);
        if (!key)
            return j->err;
        size_t pl = strlen(prefix), kl = strlen(key);
        char *path = malloc(pl + kl + 2);
        if (!path) {
            free(key);
            return j->err = err_set(-ENOMEM, "out of memory");
        }
        if (pl)
            snprintf(path, pl + kl + 2, "%s.%s", prefix, key);
        else
            memcpy(path, key, kl + 1);
        bool empty = kl == 0;
        free(key);
        if (empty) {
            free(path);
            return jp_fail(j, "an empty key");
        }
        skip_ws(j);
        if (j->p >= j->end || *j->p != ':') {
            free(path);
            return jp_fail(j, "':' was expected after a key");
        }
        j->p++;
        int r = parse_value(j, path, depth);
        free(path);
        if (r < 0)
            return r;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 0;
        }
        return jp_fail(j, "',' or '}' was expected");
    }
}

/* An array at j->p: its elements are PATH.0, PATH.1, ... (QEMU's flattened
 * form, "inject-error.0.event"). */
static int parse_array(struct jp *j, const char *path, int depth)
{
    if (depth > JSON_NAME_DEPTH)
        return jp_fail(j, "objects nest deeper than %d levels", JSON_NAME_DEPTH);
    j->p++; /* '[' */
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    size_t pl = strlen(path);
    char *el = malloc(pl + 16);
    if (!el)
        return j->err = err_set(-ENOMEM, "out of memory");
    for (unsigned i = 0;; i++) {
        snprintf(el, pl + 16, "%s.%u", path, i);
        int r = parse_value(j, el, depth);
        if (r < 0) {
            free(el);
            return r;
        }
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        free(el);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 0;
        }
        return jp_fail(j, "',' or ']' was expected");
    }
}

static int parse_number(struct jp *j, const char *path)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return jp_fail(j, "a number was expected");
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    bool integer = true;
    if (j->p < j->end && *j->p == '.') {
        integer = false;
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return jp_fail(j, "a digit was expected after '.'");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        integer = false;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return jp_fail(j, "a digit was expected in an exponent");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (!integer)
        return jp_fail(j, "'%s': only whole numbers are taken", path);
    char *v = strndup(s, (size_t)(j->p - s));
    if (!v)
        return j->err = err_set(-ENOMEM, "out of memory");
    return add_key(j, path, v, J_NUM);
}

static int parse_value(struct jp *j, const char *path, int depth)
{
    skip_ws(j);
    if (j->p >= j->end)
        return jp_fail(j, "a value was expected");
    static const struct {
        const char *word;
        enum jtype type;
    } words[] = {{"true", J_BOOL}, {"false", J_BOOL}, {"null", J_NULL}};
    switch (*j->p) {
    case '{':
        return parse_object(j, path, depth + 1);
    case '[':
        return parse_array(j, path, depth + 1);
    case '"':
    case '\'': {
        char *v = parse_string(j);
        return v ? add_key(j, path, v, J_STR) : j->err;
    }
    default:
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
            size_t n = strlen(words[i].word);
            if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, words[i].word, n)) {
                j->p += n;
                char *v = strdup(words[i].word);
                if (!v)
                    return j->err = err_set(-ENOMEM, "out of memory");
                return add_key(j, path, v, words[i].type);
            }
        }
        return parse_number(j, path);
    }
}

/* ---- From the keys to a plain name ---------------------------------------- */

static struct jkey *get(struct jp *j, const char *key)
{
    for (unsigned i = 0; i < j->n; i++) {
        if (!strcmp(j->keys[i].key, key)) {
            j->keys[i].used = true;
            return &j->keys[i];
        }
    }
    return NULL;
}

/* Whether KEY is given (it is not marked used). */
static bool given(struct jp *j, const char *key)
{
    for (unsigned i = 0; i < j->n; i++)
        if (!strcmp(j->keys[i].key, key))
            return true;
    return false;
}

/* Whether a key under PREFIX (e.g. "file.") is given. */
static bool has_prefix(struct jp *j, const char *prefix)
{
    for (unsigned i = 0; i < j->n; i++)
        if (!strncmp(j->keys[i].key, prefix, strlen(prefix)))
            return true;
    return false;
}

static bool is_protocol(const char *d)
{
    return !strcmp(d, "file") || !strcmp(d, "host_device") || !strcmp(d, "nbd") ||
           !strcmp(d, "rbd") || !strcmp(d, "null-co") || !strcmp(d, "null-aio") ||
           !strcmp(d, "blkdebug");
}

static int bad(struct jp *j, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct jp *j, int r, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return j->err = err_set(r, "%s: %s", j->name, why);
}

/* The string value of KEY (prefixed with P), NULL when it is not given;
 * numbers are taken as their digits (and with BOOLS, booleans as "true" or
 * "false").  *R: -EINVAL for another type. */
static const char *str_of(struct jp *j, const char *p, const char *key, int *r, bool bools)
{
    char full[128];
    int n = snprintf(full, sizeof full, "%s%s", p, key);
    if (n < 0 || (size_t)n >= sizeof full) { /* no key is that long: not given */
        return NULL;
    }
    struct jkey *k = get(j, full);
    if (!k)
        return NULL;
    if (k->type == J_NULL || (k->type == J_BOOL && !bools)) {
        *r = bad(j, -EINVAL, "'%s' must be a string", full);
        return NULL;
    }
    return k->val;
}

static const char *str(struct jp *j, const char *p, const char *key, int *r)
{
    return str_of(j, p, key, r, false);
}

/* An option's value: a string, a number or a boolean. */
static const char *val(struct jp *j, const char *p, const char *key, int *r)
{
    return str_of(j, p, key, r, true);
}

/* Appends S to the string being built in *B (of *LEN bytes, room *CAP),
 * a backslash before each character of ESC; or, with PCT, %XX for each
 * byte not unreserved in a URI (RFC 3986) nor '/'. */
static int append(char **b, size_t *len, size_t *cap, const char *s, const char *esc, bool pct)
{
    size_t need = *len + strlen(s) * 3 + 1;
    if (need > *cap) {
        size_t c = need * 2;
        char *nb = realloc(*b, c);
        if (!nb)
            return -ENOMEM;
        *b = nb;
        *cap = c;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (pct && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     strchr("-._~/", c))) {
            static const char hex[] = "0123456789ABCDEF";
            (*b)[(*len)++] = '%';
            (*b)[(*len)++] = hex[c >> 4];
            (*b)[(*len)++] = hex[c & 15];
            continue;
        }
        if (esc && strchr(esc, c))
            (*b)[(*len)++] = '\\';
        (*b)[(*len)++] = (char)c;
    }
    (*b)[*len] = '\0';
    return 0;
}

/* Builds the name from PARTS: pairs of (text, how) ending with NULL; how:
 * 0 as it is, 1 rbd-escaped, 2 percent-encoded. */
static char *build(const char *first, ...)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    va_list ap;
    va_start(ap, first);
    int r = append(&b, &len, &cap, first, NULL, false);
    for (const char *s; r == 0 && (s = va_arg(ap, const char *));) {
        int how = va_arg(ap, int);
        r = append(&b, &len, &cap, s, how == 1 ? "\\/@:" : NULL, how == 2);
    }
    va_end(ap);
    if (r < 0) {
        free(b);
        return NULL;
    }
    return b;
}

static int add_opt(struct jp *j, struct json_name *jn, const char *key, const char *val)
{
    if (jn->nopts == JSON_NAME_OPTS)
        return bad(j, -EINVAL, "more than %d options", JSON_NAME_OPTS);
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) {
        free(k);
        free(v);
        return j->err = err_set(-ENOMEM, "out of memory");
    }
    jn->opt_key[jn->nopts] = k;
    jn->opt_val[jn->nopts++] = v;
    return 0;
}

static int protocol(struct jp *j, const char *p, const char *drv, char **out,
                    struct json_name *jn);

/* null-co's options under P as the open options null.KEY. */
static int null_options(struct jp *j, const char *p, struct json_name *jn)
{
    static const char *const keys[] = {"size", "read-zeroes", "latency-ns"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int r = 0;
        const char *v = val(j, p, keys[i], &r);
        if (r < 0)
            return r;
        char k[32];
        snprintf(k, sizeof k, "null.%s", keys[i]);
        if (v && (r = add_opt(j, jn, k, v)) < 0)
            return r;
    }
    return 0;
}

/* Appends to *B one blkdebug rule, the keys under P (e.g.
 * "file.inject-error.0."), as a section [SECTION] of its config file. */
static int blkdebug_rule(struct jp *j, const char *p, const char *section, char **b,
                         size_t *len, size_t *cap)
{
    static const char *const keys[] = {"event", "state", "new_state", "errno", "sector",
                                       "once", "immediately", "iotype"};
    char head[64];
    snprintf(head, sizeof head, "[%s]\n", section);
    int r = append(b, len, cap, head, NULL, false);
    for (size_t i = 0; r == 0 && i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = val(j, p, keys[i], &r);
        if (r < 0)
            return r;
        if (!v)
            continue;
        if (strpbrk(v, "\"\n"))
            return bad(j, -EINVAL, "'%s%s' has a quote or a line break", p, keys[i]);
        r = append(b, len, cap, keys[i], NULL, false);
        if (r == 0)
            r = append(b, len, cap, " = \"", NULL, false);
        if (r == 0)
            r = append(b, len, cap, v, NULL, false);
        if (r == 0)
            r = append(b, len, cap, "\"\n", NULL, false);
    }
    return r < 0 && !j->err ? (j->err = err_set(-ENOMEM, "out of memory")) : r;
}

/* blkdebug's object under P: *OUT "blkdebug:CONFIG:IMAGE", its inline
 * rules as the open option blkdebug.rules. */
static int blkdebug(struct jp *j, const char *p, char **out, struct json_name *jn)
{
    int r = 0;
    const char *config = str(j, p, "config", &r);
    if (r < 0)
        return r;
    char ip[128];
    snprintf(ip, sizeof ip, "%simage.", p);
    char *inner = NULL;
    const char *image = str(j, p, "image", &r);
    if (r < 0)
        return r;
    if (image) {
        /* (A node name in QEMU; vdisk has no nodes: a file name.) */
        if (!*image)
            return bad(j, -EINVAL, "'%simage' is empty", p);
        inner = strdup(image);
    } else if (has_prefix(j, ip)) {
        const char *d = str(j, ip, "driver", &r);
        if (r < 0)
            return r;
        if (d && !is_protocol(d))
            return bad(j, -ENOTSUP, "'%sdriver': blkdebug over a format ('%s') is not "
                       "supported", ip, d);
        if ((r = protocol(j, ip, d, &inner, jn)) < 0)
            return r;
    } else {
        return bad(j, -EINVAL, "'%simage' is required", p);
    }
    if (!inner)
        return j->err = err_set(-ENOMEM, "out of memory");
    char *rules = NULL;
    size_t len = 0, cap = 0;
    r = append(&rules, &len, &cap, "", NULL, false);
    static const char *const kinds[] = {"inject-error", "set-state"};
    for (size_t k = 0; r == 0 && k < 2; k++) {
        for (unsigned i = 0; r == 0 && i < JSON_NAME_KEYS; i++) {
            char rp[160];
            snprintf(rp, sizeof rp, "%s%s.%u.", p, kinds[k], i);
            if (!has_prefix(j, rp))
                break;
            r = blkdebug_rule(j, rp, kinds[k], &rules, &len, &cap);
        }
    }
    if (r == 0 && len)
        r = add_opt(j, jn, "blkdebug.rules", rules);
    free(rules);
    if (r < 0) {
        free(inner);
        return j->err ? j->err : (j->err = err_set(-ENOMEM, "out of memory"));
    }
    *out = build("blkdebug:", config ? config : "", 0, ":", 0, inner, 0, (char *)NULL);
    free(inner);
    if (!*out)
        return j->err = err_set(-ENOMEM, "out of memory");
    return 0;
}

/* The protocol's object under P ("" or "file."), driver DRV (NULL: none
 * given, the name says): *OUT the plain name, options it says added to JN. */
static int protocol(struct jp *j, const char *p, const char *drv, char **out,
                    struct json_name *jn)
{
    int r = 0;
    const char *filename = str(j, p, "filename", &r);
    if (r < 0)
        return r;
    if (filename && !*filename)
        return bad(j, -EINVAL, "'%sfilename' is empty", p);
    if (drv && (!strcmp(drv, "null-co") || !strcmp(drv, "null-aio"))) {
        if ((r = null_options(j, p, jn)) < 0)
            return r;
        *out = strdup(!strcmp(drv, "null-co") ? "null-co://" : "null-aio://");
    } else if (drv && !strcmp(drv, "blkdebug")) {
        if (filename)
            return bad(j, -EINVAL, "'%sfilename' is not an option of blkdebug", p);
        return blkdebug(j, p, out, jn);
    } else if (!drv || !strcmp(drv, "file") || !strcmp(drv, "host_device")) {
        if (!filename)
            return bad(j, -EINVAL, "'%sfilename' is required", p);
        if (drv && (dev_is_network_name(filename)))
            return bad(j, -EINVAL, "'%sfilename' (%s) is not a file", p, filename);
        *out = strdup(filename);
    } else if (!strcmp(drv, "nbd")) {
        const char *type = str(j, p, "server.type", &r), *host = str(j, p, "server.host", &r);
        const char *port = str(j, p, "server.port", &r), *path = str(j, p, "server.path", &r);
        const char *exp = str(j, p, "export", &r);
        if (r < 0)
            return r;
        if (filename) {
            if (!dev_is_nbd_name(filename))
                return bad(j, -EINVAL, "'%sfilename' (%s) is not an NBD URI (nbd://HOST/EXPORT, "
                           "nbd+unix:///EXPORT?socket=PATH)", p, filename);
            if (type || host || port || path || exp)
                return bad(j, -EINVAL, "'%sfilename' and the server's options cannot be given "
                           "together", p);
            *out = strdup(filename);
        } else if (!type || !strcmp(type, "inet")) {
            if (!host)
                return bad(j, -EINVAL, "'%sserver.host' is required", p);
            if (path)
                return bad(j, -EINVAL, "'%sserver.path' is for server.type unix", p);
            bool v6 = strchr(host, ':') != NULL;
            if (v6 && strspn(host, "0123456789abcdefABCDEF:.") != strlen(host))
                return bad(j, -EINVAL, "'%sserver.host' (%s) is not a host name or address", p,
                           host);
            *out = build("nbd://", v6 ? "[" : "", 0, host, v6 ? 0 : 2, v6 ? "]" : "", 0, ":", 0,
                         port ? port : "10809", 2, "/", 0, exp ? exp : "", 2, (char *)NULL);
        } else if (!strcmp(type, "unix")) {
            if (!path)
                return bad(j, -EINVAL, "'%sserver.path' is required", p);
            if (host || port)
                return bad(j, -EINVAL, "'%sserver.host' and 'server.port' are for server.type "
                           "inet", p);
            *out = build("nbd+unix:///", exp ? exp : "", 2, "?socket=", 0, path, 2, (char *)NULL);
        } else {
            return bad(j, -ENOTSUP, "'%sserver.type' %s is not supported (inet or unix)", p,
                       type);
        }
    } else if (!strcmp(drv, "rbd")) {
        const char *pool = str(j, p, "pool", &r), *ns = str(j, p, "namespace", &r);
        const char *image = str(j, p, "image", &r), *snap = str(j, p, "snapshot", &r);
        const char *conf = str(j, p, "conf", &r), *user = str(j, p, "user", &r);
        if (r < 0)
            return r;
        if (filename) {
            if (strncmp(filename, "rbd:", 4))
                return bad(j, -EINVAL, "'%sfilename' (%s) is not an rbd: name", p, filename);
            if (pool || ns || image || snap || conf || user)
                return bad(j, -EINVAL, "'%sfilename' and the image's options cannot be given "
                           "together", p);
            *out = strdup(filename);
        } else {
            if (!pool || !image)
                return bad(j, -EINVAL, "'%s%s' is required", p, pool ? "image" : "pool");
            if (!*pool || !*image)
                return bad(j, -EINVAL, "'%s%s' is empty", p, *pool ? "image" : "pool");
            bool has_ns = ns && *ns;
            *out = build("rbd:", pool, 1, has_ns ? "/" : "", 0, has_ns ? ns : "", 1, "/", 0,
                         image, 1, snap ? "@" : "", 0, snap ? snap : "", 1, conf ? ":conf=" : "",
                         0, conf ? conf : "", 1, user ? ":id=" : "", 0, user ? user : "", 1,
                         (char *)NULL);
        }
    } else {
        return bad(j, -ENOTSUP, "Unknown protocol '%s' (file, host_device, nbd, rbd, null-co, "
                   "null-aio and blkdebug are supported)", drv);
    }
    if (!*out)
        return j->err = err_set(-ENOMEM, "out of memory");
    return 0;
}

/* Appends "KEY": VALUE (a JSON string; ", " before it unless FIRST). */
static int shown_key(char **b, size_t *len, size_t *cap, const char *key, const char *v,
                     bool first)
{
    char pre[64];
    snprintf(pre, sizeof pre, "%s\"%s\": \"", first ? "" : ", ", key);
    if (append(b, len, cap, pre, NULL, false) < 0)
        return -ENOMEM;
    /* Room for the worst case: \u00XX for each byte. */
    size_t need = *len + strlen(v) * 6 + 2;
    if (need > *cap) {
        char *nb = realloc(*b, need);
        if (!nb)
            return -ENOMEM;
        *b = nb;
        *cap = need;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            (*b)[(*len)++] = '\\';
            (*b)[(*len)++] = (char)*p;
        } else if (*p < 0x20) {
            *len += (size_t)snprintf(*b + *len, 7, "\\u%04x", *p);
        } else {
            (*b)[(*len)++] = (char)*p;
        }
    }
    (*b)[(*len)++] = '"';
    (*b)[*len] = '\0';
    return 0;
}

/* An RBD image given by its keys under P: its object as qemu-img shows
 * it, {...} with the keys given in QEMU's order (with a plain rbd: name
 * QEMU adds "namespace": ""; given so, it lists only what was given). */
static char *rbd_shown(struct jp *j, const char *p)
{
    static const char *const order[] = {"pool", "image", "conf", "snapshot", "driver",
                                        "namespace", "user"};
    char *b = NULL;
    size_t len = 0, cap = 0;
    int r = append(&b, &len, &cap, "{", NULL, false);
    bool first = true;
    for (size_t i = 0; r == 0 && i < sizeof order / sizeof order[0]; i++) {
        char full[64];
        snprintf(full, sizeof full, "%s%s", p, order[i]);
        struct jkey *k = get(j, full);
        if (k) {
            r = shown_key(&b, &len, &cap, order[i], k->val, first);
            first = false;
        }
    }
    if (r == 0)
        r = append(&b, &len, &cap, "}", NULL, false);
    if (r < 0) {
        free(b);
        return NULL;
    }
    return b;
}


/* Options QEMU takes that change nothing vdisk does (or that it already
 * does its way), at any level: taken and dropped. */
static void drop_ignored(struct jp *j)
{
    static const char *const ignored[] = {"cache.direct", "cache.no-flush", "node-name",
                                          "discard", "detect-zeroes", "aio", "aio-max-batch",
                                          "auto-read-only"};
    for (unsigned i = 0; i < j->n; i++) {
        const char *k = j->keys[i].key;
        size_t kl = strlen(k);
        for (size_t n = 0; n < sizeof ignored / sizeof ignored[0]; n++) {
            size_t il = strlen(ignored[n]);
            if (kl >= il && !strcmp(k + kl - il, ignored[n]) &&
                (kl == il || k[kl - il - 1] == '.'))
                j->keys[i].used = true;
        }
    }
}

/* "locking" at any level: the open's image locking (auto, on, off). */
static int take_locking(struct jp *j, struct json_name *out)
{
    for (unsigned i = 0; i < j->n; i++) {
        const char *k = j->keys[i].key;
        size_t kl = strlen(k);
        if (kl < 7 || strcmp(k + kl - 7, "locking") || (kl > 7 && k[kl - 8] != '.'))
            continue;
        j->keys[i].used = true;
        const char *v = j->keys[i].val;
        if (j->keys[i].type == J_BOOL)
            v = !strcmp(v, "true") ? "on" : "off";
        if (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "auto"))
            return bad(j, -EINVAL, "'%s' must be on, off or auto", k);
        return add_opt(j, out, "locking", v);
    }
    return 0;
}

/* cache.direct (at the top or the file's level): the open's cache mode
 * none, O_DIRECT, as QEMU's "cache.direct": true. */
static int take_cache_direct(struct jp *j, struct json_name *out)
{
    bool direct = false;
    for (unsigned i = 0; i < j->n; i++) {
        const char *k = j->keys[i].key, *v = j->keys[i].val;
        if (strcmp(k, "cache.direct") && strcmp(k, "file.cache.direct"))
            continue;
        if (!strcmp(v, "true") || !strcmp(v, "on"))
            direct = true;
        else if (strcmp(v, "false") && strcmp(v, "off"))
            return bad(j, -EINVAL, "Parameter '%s' expects 'on' or 'off'", k);
    }
    return direct ? add_opt(j, out, "cache", "none") : 0;
}

/* blkdebug over a format that says nothing but request limits (align,
 * max-transfer, ...): the blkdebug layer is taken out, its image's keys
 * lifted to the top, the limits made open options limits.KEY (the device
 * over the format that cuts requests as QEMU does, formats/blkdebug/
 * limits.c).  Rules, a config file or anything else leave it (refused
 * later: blkdebug goes over protocols). */
static int lift_blkdebug_limits(struct jp *j, const char **drv, struct json_name *out)
{
    static const char *const limits[] = {"align", "max-transfer", "opt-write-zero",
                                         "max-write-zero", "opt-discard", "max-discard"};
    int r = 0;
    const char *d = str(j, "image.", "driver", &r);
    if (r < 0 || !d || is_protocol(d) || !driver_by_name(d))
        return r;
    for (unsigned i = 0; i < j->n; i++) {
        const char *k = j->keys[i].key;
        bool ok = !strcmp(k, "driver") || !strncmp(k, "image.", 6);
        for (size_t l = 0; !ok && l < sizeof limits / sizeof limits[0]; l++)
            ok = !strcmp(k, limits[l]);
        if (!ok)
            return 0;
    }
    /* The limits, for formats/blkdebug/limits.c. */
    for (unsigned i = 0; i < j->n && r == 0; i++) {
        const char *k = j->keys[i].key;
        if (strcmp(k, "driver") && strncmp(k, "image.", 6)) {
            char key[32];
            snprintf(key, sizeof key, "limits.%s", k);
            r = add_opt(j, out, key, j->keys[i].val);
        }
    }
    if (r < 0)
        return r;
    unsigned n = 0;
    for (unsigned i = 0; i < j->n; i++) {
        struct jkey *k = &j->keys[i];
        if (strncmp(k->key, "image.", 6) != 0) {
            free(k->key);
            free(k->val);
            continue;
        }
        memmove(k->key, k->key + 6, strlen(k->key + 6) + 1);
        j->keys[n++] = *k;
    }
    j->n = n;
    *drv = str(j, "", "driver", &r);
    return r;
}

static int translate(struct jp *j, struct json_name *out)
{
    int r = 0;
    const char *drv = str(j, "", "driver", &r);
    if (r == 0 && drv && !strcmp(drv, "blkdebug"))
        r = lift_blkdebug_limits(j, &drv, out);
    if (r < 0)
        return r;
    drop_ignored(j);
    if ((r = take_cache_direct(j, out)) < 0 || (r = take_locking(j, out)) < 0)
        return r;
    if (drv && !strcmp(drv, "raw")) {
        /* raw's range of its file */
        static const char *const keys[] = {"offset", "size"};
        for (size_t i = 0; i < 2; i++) {
            const char *v = str(j, "", keys[i], &r);
            char k[16];
            snprintf(k, sizeof k, "raw.%s", keys[i]);
            if (r == 0 && v)
                r = add_opt(j, out, k, v);
            if (r < 0)
                return r;
        }
    }
    if (!drv || !strcmp(drv, "qcow2")) {
        /* qcow2's runtime options: the cache sizes vdisk takes, the others
         * (tuning and discard policy) dropped. */
        static const char *const taken[] = {"l2-cache-size", "refcount-cache-size"};
        for (size_t i = 0; i < 2; i++) {
            const char *v = str(j, "", taken[i], &r);
            if (r == 0 && v)
                r = add_opt(j, out, taken[i], v);
            if (r < 0)
                return r;
        }
        static const char *const dropped[] = {"cache-size", "l2-cache-entry-size",
                                              "cache-clean-interval", "lazy-refcounts",
                                              "pass-discard-request", "pass-discard-snapshot",
                                              "pass-discard-other", "overlap-check",
                                              "discard-no-unref"};
        for (unsigned i = 0; i < j->n; i++)
            for (size_t k = 0; k < sizeof dropped / sizeof dropped[0]; k++) {
                size_t dl = strlen(dropped[k]);
                if (!strncmp(j->keys[i].key, dropped[k], dl) &&
                    (!j->keys[i].key[dl] || j->keys[i].key[dl] == '.'))
                    j->keys[i].used = true;
            }
    }
    struct jkey *bk = get(j, "backing");
    if (bk && bk->type != J_NULL)
        return bad(j, -ENOTSUP, "'backing' other than null (a reference to another node) is "
                   "not supported");
    if (bk && (r = add_opt(j, out, "backing.null", "on")) < 0)
        return r;
    /* A backing file given by options: its format (and its file's driver,
     * the file protocol alone). */
    const char *bd = str(j, "", "backing.driver", &r);
    if (r == 0 && bd)
        r = add_opt(j, out, "backing.format", bd);
    const char *bfd = r == 0 ? str(j, "", "backing.file.driver", &r) : NULL;
    if (r == 0 && bfd && strcmp(bfd, "file"))
        r = bad(j, -ENOTSUP, "'backing.file.driver' %s: a backing file given by options is a "
                "file", bfd);
    if (r < 0)
        return r;
    struct jkey *ro = get(j, "read-only");
    if (ro) {
        if (ro->type == J_BOOL || (ro->type == J_STR && (!strcmp(ro->val, "on") ||
                                                        !strcmp(ro->val, "off") ||
                                                        !strcmp(ro->val, "true") ||
                                                        !strcmp(ro->val, "false"))))
            out->read_only = !strcmp(ro->val, "true") || !strcmp(ro->val, "on");
        else
            return bad(j, -EINVAL, "'read-only' must be true or false");
    }
    const char *pd = NULL; /* the protocol's driver, when said */
    if (drv && is_protocol(drv)) {
        /* The object is the protocol's; the image is raw. */
        pd = drv;
        drv = NULL;
        out->protocol_only = true;
        if (!(out->protocol = strdup(pd)))
            return j->err = err_set(-ENOMEM, "out of memory");
        r = protocol(j, "", pd, &out->filename, out);
    } else {
        if (drv && !driver_by_name(drv))
            return bad(j, -ENOTSUP, "Unknown driver '%s'", drv);
        if (drv && !(out->format = strdup(drv)))
            return j->err = err_set(-ENOMEM, "out of memory");
        struct jkey *f = get(j, "file");
        if (f)
            return bad(j, -EINVAL, "'file' must be an object (a reference to another node "
                       "is not supported)");
        if (has_prefix(j, "file.")) {
            pd = str(j, "file.", "driver", &r);
            if (r < 0)
                return r;
            if (pd && !is_protocol(pd) && driver_by_name(pd)) {
                /* A format whose file is an image of another format
                 * (one level: its own file a protocol's object). */
                if (!has_prefix(j, "file.file."))
                    return bad(j, -EINVAL, "A block device must be specified for "
                               "\"file.file\"");
                const char *ipd = str(j, "file.file.", "driver", &r);
                if (r < 0)
                    return r;
                if (ipd && !is_protocol(ipd))
                    return bad(j, -ENOTSUP, "'file.file.driver' %s: formats nested deeper "
                               "than two are not supported", ipd);
                if ((r = add_opt(j, out, "file.format", pd)) < 0)
                    return r;
                r = protocol(j, "file.file.", ipd, &out->filename, out);
                pd = ipd;
            } else {
                r = protocol(j, "file.", pd, &out->filename, out);
            }
            if (r == 0 && pd && !strcmp(pd, "rbd") && !given(j, "file.filename") &&
                !(out->shown_file = rbd_shown(j, "file.")))
                return j->err = err_set(-ENOMEM, "out of memory");
        } else {
            /* (A "filename" beside a format's "driver" is not its file
             * in QEMU either.) */
            return bad(j, -EINVAL, drv ? "A block device must be specified for \"file\""
                                       : "Must specify either driver or file");
        }
    }
    if (r < 0)
        return r;
    /* The key of an encrypted image, for the format (qcow2's
     * encrypt.key-secret, luks's key-secret), and qcow2's data file. */
    static const char *const fmt_keys[JSON_NAME_FMT_OPTS][2] = {
        {"encrypt.key-secret", "qcow2"}, {"key-secret", "luks"},
        /* qcow2's external data file (a file's name) */
        {"data-file.filename", "qcow2"}, {"data-file", "qcow2"},
        {"data-file.driver", "qcow2"}, {"data-file.size", "qcow2"},
        /* the backing file the user names, and its key */
        {"backing.file.filename", "qcow2"}, {"backing.encrypt.key-secret", "qcow2"},
        {"backing.key-secret", "qcow2"}};
    for (unsigned f = 0; f < JSON_NAME_FMT_OPTS && !out->protocol_only; f++) {
        if (drv && strcmp(drv, fmt_keys[f][1]))
            continue;
        const char *v = str(j, "", fmt_keys[f][0], &r);
        if (r < 0)
            return r;
        if (!v)
            continue;
        unsigned n = out->fmt_opts;
        if (!(out->fmt_key[n] = strdup(fmt_keys[f][0])) || !(out->fmt_val[n] = strdup(v))) {
            free(out->fmt_key[n]);
            out->fmt_key[n] = NULL;
            return j->err = err_set(-ENOMEM, "out of memory");
        }
        out->fmt_opts++;
    }
    for (unsigned i = 0; i < j->n; i++) {
        const char *k = j->keys[i].key;
        if (j->keys[i].used)
            continue;
        /* Whose option it would be: the protocol's object, else the format's. */
        if (out->protocol_only || !strncmp(k, "file.", 5))
            return bad(j, -ENOTSUP, "Block protocol '%s' does not support the option '%s'",
                       pd ? pd : "file", k);
        return bad(j, -ENOTSUP, "Block format '%s' does not support the option '%s'",
                   drv ? drv : "(probed)", k);
    }
    return 0;
}

bool json_name_is(const char *name)
{
    return name && !strncmp(name, "json:", 5);
}

void json_name_free(struct json_name *n)
{
    for (unsigned i = 0; i < n->nopts; i++) {
        free(n->opt_key[i]);
        free(n->opt_val[i]);
    }
    n->nopts = 0;
    free(n->filename);
    free(n->format);
    free(n->shown_file);
    free(n->protocol);
    n->protocol = NULL;
    n->filename = n->format = n->shown_file = NULL;
    for (unsigned i = 0; i < n->fmt_opts; i++) {
        free(n->fmt_key[i]);
        free(n->fmt_val[i]);
        n->fmt_key[i] = n->fmt_val[i] = NULL;
    }
    n->fmt_opts = 0;
    n->read_only = -1;
}

int json_name_parse(const char *name, struct json_name *out)
{
    *out = (struct json_name){.read_only = -1};
    size_t len = strlen(name);
    if (!json_name_is(name))
        return err_set(-EINVAL, "%s: not a json: name", name);
    if (len > JSON_NAME_MAX)
        return err_set(-ENAMETOOLONG, "a json: name of %zu bytes (at most %d)", len,
                       JSON_NAME_MAX);
    struct jp *j = calloc(1, sizeof *j);
    if (!j)
        return err_set(-ENOMEM, "out of memory");
    j->name = name;
    j->start = j->p = name + 5;
    j->end = name + len;
    skip_ws(j);
    int r;
    if (j->p >= j->end || *j->p != '{')
        r = jp_fail(j, "an object ({...}) was expected");
    else
        r = parse_object(j, "", 1);
    if (r == 0) {
        skip_ws(j);
        if (j->p != j->end)
            r = jp_fail(j, "bytes follow the object");
    }
    if (r == 0)
        r = translate(j, out);
    for (unsigned i = 0; i < j->n; i++) {
        free(j->keys[i].key);
        free(j->keys[i].val);
    }
    free(j);
    if (r < 0)
        json_name_free(out);
    return r;
}
