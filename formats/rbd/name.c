/* SPDX-License-Identifier: MIT */
/*
 * formats/rbd/name.c: RBD image names as qemu-img writes them:
 *
 *   rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE[:KEY=VALUE...]]
 *
 * A backslash takes the next character as it is (so "\:" is a colon in a
 * value, "\@" an at sign in a name).  KEY is "conf" (a Ceph configuration
 * file), "id" (the user, without "client."), or any Ceph option, set with
 * rados_conf_set (mon_host, keyring, key, ...).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbd_internal.h"

#define RBD_MAX_OPTS 32

void rbd_name_free(struct rbd_name *n)
{
    free(n->buf);
    free(n->opts);
    memset(n, 0, sizeof *n);
}

/*
 * Cuts *P at the first unescaped character of DELIMS (removing the
 * backslashes before it), writes a NUL there and returns the delimiter
 * found (0 at the end); *P moves past it.  The token is at TOK.
 */
static char next_token(char **p, const char *delims, char **tok)
{
    char *r = *p, *w = *p;
    *tok = r;
    while (*r) {
        if (*r == '\\' && r[1]) {
            *w++ = r[1];
            r += 2;
            continue;
        }
        if (strchr(delims, *r)) {
            char d = *r;
            *w = '\0';
            *p = r + 1;
            return d;
        }
        *w++ = *r++;
    }
    *w = '\0';
    *p = r;
    return 0;
}

int rbd_name_parse(const char *filename, struct rbd_name *n)
{
    memset(n, 0, sizeof *n);
    if (strncmp(filename, "rbd:", 4) != 0)
        return err_set(-EINVAL, "%s: not an RBD name (rbd:POOL/IMAGE[@SNAP][:KEY=VALUE...])",
                       filename);
    if (strlen(filename) > RBD_MAX_NAME)
        return err_set(-ENAMETOOLONG, "%s: the RBD name is longer than %d bytes", filename,
                       RBD_MAX_NAME);
    n->buf = strdup(filename + 4);
    n->opts = calloc(RBD_MAX_OPTS, sizeof *n->opts);
    if (!n->buf || !n->opts) {
        rbd_name_free(n);
        return err_set(-ENOMEM, "out of memory");
    }
    char *p = n->buf, *tok;
    char d = next_token(&p, "/@:", &tok);
    if (d != '/' || !*tok)
        goto bad;
    n->pool = tok;
    d = next_token(&p, "/@:", &tok);
    if (d == '/') {
        n->ns = tok;
        d = next_token(&p, "@:", &tok);
    }
    if (!*tok || (n->ns && !*n->ns))
        goto bad;
    n->image = tok;
    if (d == '@') {
        d = next_token(&p, ":", &tok);
        if (!*tok)
            goto bad;
        n->snap = tok;
    }
    while (d == ':') {
        d = next_token(&p, ":", &tok);
        char *val = strchr(tok, '=');
        if (!val || val == tok)
            goto bad_opt;
        *val++ = '\0';
        if (!strcmp(tok, "conf")) {
            n->conf = val;
        } else if (!strcmp(tok, "id")) {
            n->user = val;
        } else {
            if (n->nopts == RBD_MAX_OPTS)
                return rbd_name_fail(n, -EINVAL, filename, "more than 32 options");
            n->opts[n->nopts].key = tok;
            n->opts[n->nopts].value = val;
            n->nopts++;
        }
    }
    return 0;
bad:
    return rbd_name_fail(n, -EINVAL, filename,
                         "expected rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:KEY=VALUE...]");
bad_opt:
    return rbd_name_fail(n, -EINVAL, filename, "an option is not KEY=VALUE");
}

int rbd_name_fail(struct rbd_name *n, int r, const char *filename, const char *why)
{
    rbd_name_free(n);
    return err_set(r, "%s: %s", filename, why);
}

/* Appends S to *P (inside BUF .. END) as a JSON string. */
static void json_str(char **p, char *end, const char *s)
{
    if (*p < end)
        *(*p)++ = '"';
    for (; *s && *p < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *(*p)++ = '\\';
            if (*p < end)
                *(*p)++ = (char)c;
        } else if (c < 0x20) {
            *p += snprintf(*p, (size_t)(end - *p), "\\u%04x", c);
            if (*p > end)
                *p = end;
        } else {
            *(*p)++ = (char)c;
        }
    }
    if (*p < end)
        *(*p)++ = '"';
}

static void json_key(char **p, char *end, const char *key, const char *value)
{
    int w = snprintf(*p, (size_t)(end - *p), ", \"%s\": ", key);
    *p = w < 0 || w >= end - *p ? end : *p + w;
    json_str(p, end, value);
}

char *rbd_name_json(const struct rbd_name *n, const char *format)
{
    size_t cap = 256 + 6 * (strlen(n->pool) + strlen(n->image) +
                            (n->ns ? strlen(n->ns) : 0) + (n->snap ? strlen(n->snap) : 0) +
                            (n->conf ? strlen(n->conf) : 0) + (n->user ? strlen(n->user) : 0));
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    char *p = buf, *end = buf + cap - 1;
    p += snprintf(p, cap, "json:{\"driver\": \"%s\", \"file\": {\"pool\": ", format);
    json_str(&p, end, n->pool);
    json_key(&p, end, "image", n->image);
    if (n->conf)
        json_key(&p, end, "conf", n->conf);
    if (n->snap)
        json_key(&p, end, "snapshot", n->snap);
    json_key(&p, end, "driver", "rbd");
    json_key(&p, end, "namespace", n->ns ? n->ns : "");
    if (n->user)
        json_key(&p, end, "user", n->user);
    if (p + 2 <= end) {
        *p++ = '}';
        *p++ = '}';
    }
    *p = '\0';
    return buf;
}
