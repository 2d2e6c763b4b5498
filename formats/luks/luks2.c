/* SPDX-License-Identifier: MIT */
/*
 * formats/luks/luks2.c: LUKS2 headers (luks2.h) as cryptsetup makes them:
 * the two binary headers and their checksums, a small strict JSON reader
 * for the metadata, the keyslots (PBKDF2 or Argon2, the anti-forensic
 * split of header.c) and the master key digest.
 *
 * Every number is checked against the file's real size and for overflow;
 * the KDF costs against the limits of luks2.h, before any KDF runs.  What
 * the header asks for and vdisk does not do (requirements such as an
 * online reencryption, integrity, several segments, unknown types or
 * ciphers) is refused with a message saying so.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luks.h"
#include "luks2.h"

/* ---- Messages ------------------------------------------------------------- */

static int bad(int err, const char *filename, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(int err, const char *filename, const char *fmt, ...)
{
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return err_set(err, "%s: %s", filename, why);
}

/* ---- A small JSON reader -------------------------------------------------- */

/*
 * RFC 8259 values into a flat array of nodes (children linked by index),
 * strings decoded into one arena.  At most LUKS2_JSON_MAX_NODES nodes and
 * LUKS2_JSON_DEPTH levels; duplicate keys are found when looked up.
 */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jnode {
    enum jtype type;
    const char *key;   /* in an object: its key */
    const char *text;  /* J_STR: the decoded string; J_NUM: the number's text */
    bool b;
    uint32_t child, next; /* node numbers + 1; 0 none */
};

struct jdoc {
    struct jnode *n;
    uint32_t count, cap;
    char *arena;
    size_t apos, acap;
    const char *start, *p, *end;
    char err[160];
};

static void jfail(struct jdoc *d, const char *what)
{
    if (!d->err[0])
        snprintf(d->err, sizeof d->err, "%s at byte %zu", what, (size_t)(d->p - d->start));
}

static void jws(struct jdoc *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

static uint32_t jnew(struct jdoc *d, enum jtype t)
{
    if (d->count >= LUKS2_JSON_MAX_NODES) {
        jfail(d, "too many values");
        return 0;
    }
    if (d->count == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 256;
        if (cap > LUKS2_JSON_MAX_NODES)
            cap = LUKS2_JSON_MAX_NODES;
        struct jnode *n = realloc(d->n, (size_t)cap * sizeof *n);
        if (!n) {
            jfail(d, "out of memory");
            return 0;
        }
        d->n = n;
        d->cap = cap;
    }
    struct jnode *x = &d->n[d->count++];
    memset(x, 0, sizeof *x);
    x->type = t;
    return d->count;
}

static void aput(struct jdoc *d, char c)
{
    /* The arena holds twice the text: never full (see jparse). */
    if (d->apos < d->acap)
        d->arena[d->apos++] = c;
}

static void aput_utf8(struct jdoc *d, uint32_t c)
{
    if (c < 0x80) {
        aput(d, (char)c);
    } else if (c < 0x800) {
        aput(d, (char)(0xc0 | (c >> 6)));
        aput(d, (char)(0x80 | (c & 0x3f)));
    } else if (c < 0x10000) {
        aput(d, (char)(0xe0 | (c >> 12)));
        aput(d, (char)(0x80 | ((c >> 6) & 0x3f)));
        aput(d, (char)(0x80 | (c & 0x3f)));
    } else {
        aput(d, (char)(0xf0 | (c >> 18)));
        aput(d, (char)(0x80 | ((c >> 12) & 0x3f)));
        aput(d, (char)(0x80 | ((c >> 6) & 0x3f)));
        aput(d, (char)(0x80 | (c & 0x3f)));
    }
}

static bool hex4(struct jdoc *d, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (d->p >= d->end)
            return false;
        char c = *d->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

/* A string at d->p (the opening quote), decoded into the arena. */
static const char *jstring(struct jdoc *d)
{
    if (d->p >= d->end || *d->p != '"') {
        jfail(d, "expected a string");
        return NULL;
    }
    d->p++;
    const char *s = d->arena + d->apos;
    for (;;) {
        if (d->p >= d->end) {
            jfail(d, "unterminated string");
            return NULL;
        }
        unsigned char c = (unsigned char)*d->p;
        if (c == '"') {
            d->p++;
            aput(d, '\0');
            return s;
        }
        if (c < 0x20) {
            jfail(d, "control character in a string");
            return NULL;
        }
        if (c != '\\') {
            aput(d, (char)c);
            d->p++;
            continue;
        }
        d->p++;
        if (d->p >= d->end) {
            jfail(d, "unterminated string");
            return NULL;
        }
        char e = *d->p++;
        switch (e) {
        case '"': aput(d, '"'); break;
        case '\\': aput(d, '\\'); break;
        case '/': aput(d, '/'); break;
        case 'b': aput(d, '\b'); break;
        case 'f': aput(d, '\f'); break;
        case 'n': aput(d, '\n'); break;
        case 'r': aput(d, '\r'); break;
        case 't': aput(d, '\t'); break;
        case 'u': {
            uint32_t u, lo;
            if (!hex4(d, &u)) {
                jfail(d, "bad \\u escape");
                return NULL;
            }
            if (u >= 0xd800 && u < 0xdc00) {
                if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u') {
                    jfail(d, "lone surrogate");
                    return NULL;
                }
                d->p += 2;
                if (!hex4(d, &lo) || lo < 0xdc00 || lo >= 0xe000) {
                    jfail(d, "lone surrogate");
                    return NULL;
                }
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            } else if (u >= 0xdc00 && u < 0xe000) {
                jfail(d, "lone surrogate");
                return NULL;
            }
            if (u == 0) {
                jfail(d, "NUL in a string");
                return NULL;
            }
            aput_utf8(d, u);
            break;
        }
        default:
            jfail(d, "bad escape");
            return NULL;
        }
    }
}

static uint32_t jvalue(struct jdoc *d, int depth);

static uint32_t jcontainer(struct jdoc *d, int depth, bool obj)
{
    if (depth >= LUKS2_JSON_DEPTH) {
        jfail(d, "nested too deep");
        return 0;
    }
    uint32_t me = jnew(d, obj ? J_OBJ : J_ARR);
    if (!me)
        return 0;
    d->p++;
    jws(d);
    char close = obj ? '}' : ']';
    if (d->p < d->end && *d->p == close) {
        d->p++;
        return me;
    }
    uint32_t last = 0;
    for (;;) {
        const char *key = NULL;
        jws(d);
        if (obj) {
            key = jstring(d);
            if (!key)
                return 0;
            jws(d);
            if (d->p >= d->end || *d->p != ':') {
                jfail(d, "expected ':'");
                return 0;
            }
            d->p++;
        }
        uint32_t v = jvalue(d, depth + 1);
        if (!v)
            return 0;
        d->n[v - 1].key = key;
        if (last)
            d->n[last - 1].next = v;
        else
            d->n[me - 1].child = v;
        last = v;
        jws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == close) {
            d->p++;
            return me;
        }
        jfail(d, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        return 0;
    }
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static uint32_t jvalue(struct jdoc *d, int depth)
{
    jws(d);
    if (d->p >= d->end) {
        jfail(d, "unexpected end");
        return 0;
    }
    char c = *d->p;
    if (c == '{' || c == '[')
        return jcontainer(d, depth, c == '{');
    if (c == '"') {
        const char *s = jstring(d);
        uint32_t v = s ? jnew(d, J_STR) : 0;
        if (v)
            d->n[v - 1].text = s;
        return v;
    }
    static const struct { const char *w; enum jtype t; bool b; } words[] = {
        {"true", J_BOOL, true}, {"false", J_BOOL, false}, {"null", J_NULL, false}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].w);
        if ((size_t)(d->end - d->p) >= n && memcmp(d->p, words[i].w, n) == 0) {
            d->p += n;
            uint32_t v = jnew(d, words[i].t);
            if (v)
                d->n[v - 1].b = words[i].b;
            return v;
        }
    }
    if (c == '-' || is_digit(c)) {
        const char *s = d->p;
        if (*d->p == '-')
            d->p++;
        if (d->p >= d->end || !is_digit(*d->p)) {
            jfail(d, "bad number");
            return 0;
        }
        if (*d->p == '0' && d->p + 1 < d->end && is_digit(d->p[1])) {
            jfail(d, "bad number");
            return 0;
        }
        while (d->p < d->end && is_digit(*d->p))
            d->p++;
        if (d->p < d->end && *d->p == '.') {
            d->p++;
            if (d->p >= d->end || !is_digit(*d->p)) {
                jfail(d, "bad number");
                return 0;
            }
            while (d->p < d->end && is_digit(*d->p))
                d->p++;
        }
        if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
            d->p++;
            if (d->p < d->end && (*d->p == '+' || *d->p == '-'))
                d->p++;
            if (d->p >= d->end || !is_digit(*d->p)) {
                jfail(d, "bad number");
                return 0;
            }
            while (d->p < d->end && is_digit(*d->p))
                d->p++;
        }
        const char *t = d->arena + d->apos;
        for (const char *q = s; q < d->p; q++)
            aput(d, *q);
        aput(d, '\0');
        uint32_t v = jnew(d, J_NUM);
        if (v)
            d->n[v - 1].text = t;
        return v;
    }
    jfail(d, "unexpected character");
    return 0;
}

static void jfree(struct jdoc *d)
{
    free(d->n);
    free(d->arena);
    memset(d, 0, sizeof *d);
}

/* TEXT (LEN bytes) parsed; the top value must be an object.  0, or -1 with
 * d->err set. */
static int jparse(struct jdoc *d, const char *text, size_t len)
{
    memset(d, 0, sizeof *d);
    d->start = d->p = text;
    d->end = text + len;
    /* Every string or number's decoded text (with its NUL) is no longer
     * than its bytes in the text plus one. */
    d->acap = 2 * len + 2;
    d->arena = malloc(d->acap);
    if (!d->arena) {
        snprintf(d->err, sizeof d->err, "out of memory");
        return -1;
    }
    jws(d);
    if (d->p >= d->end || *d->p != '{') {
        jfail(d, "not a JSON object");
        return -1;
    }
    uint32_t top = jvalue(d, 0);
    if (!top)
        return -1;
    jws(d);
    if (d->p != d->end) {
        jfail(d, "trailing bytes after the object");
        return -1;
    }
    return 0;
}

static struct jnode *jnode(struct jdoc *d, uint32_t i)
{
    return i ? &d->n[i - 1] : NULL;
}

/* ---- Reading the metadata ------------------------------------------------- */

/* What the metadata reading needs: the document, the file's name for
 * messages, the first error. */
struct meta {
    struct jdoc *d;
    const char *filename;
    int err;
};

static int mbad(struct meta *m, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int mbad(struct meta *m, int err, const char *fmt, ...)
{
    if (m->err)
        return m->err;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    m->err = err_set(err, "%s: LUKS2 metadata: %s", m->filename, why);
    return m->err;
}

/* Member KEY of object OBJ (a node), or NULL; two of them are an error. */
static struct jnode *member(struct meta *m, struct jnode *obj, const char *key, const char *where)
{
    struct jnode *found = NULL;
    if (!obj || obj->type != J_OBJ)
        return NULL;
    for (struct jnode *c = jnode(m->d, obj->child); c; c = jnode(m->d, c->next)) {
        if (strcmp(c->key, key) == 0) {
            if (found) {
                mbad(m, -EINVAL, "%s has two \"%s\"", where, key);
                return NULL;
            }
            found = c;
        }
    }
    return found;
}

static struct jnode *need(struct meta *m, struct jnode *obj, const char *key, enum jtype t,
                          const char *where)
{
    static const char *const names[] = {"null", "a boolean", "a number", "a string",
                                        "an array", "an object"};
    struct jnode *v = member(m, obj, key, where);
    if (m->err)
        return NULL;
    if (!v) {
        mbad(m, -EINVAL, "%s has no \"%s\"", where, key);
        return NULL;
    }
    if (v->type != t) {
        mbad(m, -EINVAL, "%s \"%s\" is not %s", where, key, names[t]);
        return NULL;
    }
    return v;
}

/* A decimal unsigned integer (no sign, fraction or exponent) up to MAX. */
static bool dec_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || (s[0] == '0' && s[1]))
        return false;
    for (; *s; s++) {
        if (!is_digit(*s))
            return false;
        unsigned dgt = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            return false;
        v = v * 10 + dgt;
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Number member KEY (a JSON number) in MIN..MAX. */
static uint64_t num(struct meta *m, struct jnode *obj, const char *key, uint64_t min,
                    uint64_t max, const char *where)
{
    struct jnode *v = need(m, obj, key, J_NUM, where);
    uint64_t x = 0;
    if (v && (!dec_u64(v->text, max, &x) || x < min))
        mbad(m, -EINVAL, "%s \"%s\" %s is out of range (%" PRIu64 " to %" PRIu64 ")", where,
             key, v->text, min, max);
    return x;
}

/* String member KEY holding a decimal number (offsets and sizes). */
static uint64_t strnum(struct meta *m, struct jnode *obj, const char *key, uint64_t max,
                       const char *where)
{
    struct jnode *v = need(m, obj, key, J_STR, where);
    uint64_t x = 0;
    if (v && !dec_u64(v->text, max, &x))
        mbad(m, -EINVAL, "%s \"%s\" \"%.40s\" is not a number up to %" PRIu64, where, key,
             v->text, max);
    return x;
}

static const char *str(struct meta *m, struct jnode *obj, const char *key, const char *where)
{
    struct jnode *v = need(m, obj, key, J_STR, where);
    return v ? v->text : NULL;
}

/* Base64 (with padding) into OUT (at most MAX bytes); the length, or -1. */
static long b64_decode(const char *s, uint8_t *out, size_t max)
{
    size_t n = strlen(s), o = 0;
    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad)
                    return -1;
                v[k] = base64_digit((unsigned char)s[i + k]);
                if (v[k] < 0)
                    return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        int bytes = 3 - pad;
        if (o + (size_t)bytes > max)
            return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (bytes > 1)
            out[o++] = (uint8_t)(w >> 8);
        if (bytes > 2)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

static size_t b64(struct meta *m, struct jnode *obj, const char *key, uint8_t *out, size_t max,
                  const char *where)
{
    const char *s = str(m, obj, key, where);
    if (!s)
        return 0;
    long n = b64_decode(s, out, max);
    if (n <= 0) {
        mbad(m, -EINVAL, "%s \"%s\" is not base64 of 1 to %zu bytes", where, key, max);
        return 0;
    }
    return (size_t)n;
}

static enum vcrypt_hash hash_of(struct meta *m, struct jnode *obj, const char *key,
                                const char *where)
{
    const char *s = str(m, obj, key, where);
    if (!s)
        return VCRYPT_SHA256;
    int h = vcrypt_hash_by_name(s);
    if (h < 0) {
        mbad(m, -ENOTSUP, "%s: unsupported hash '%.40s'", where, s);
        return VCRYPT_SHA256;
    }
    return (enum vcrypt_hash)h;
}

/* A number "0" .. "N-1" as an object key or array element. */
static int small_id(const char *s, int n)
{
    uint64_t v;
    return dec_u64(s, (uint64_t)n - 1, &v) ? (int)v : -1;
}

/* "aes-xts-plain64", "aes-cbc-essiv:sha256" with KEY_BYTES bytes of key. */
static int cipher_of(struct meta *m, const char *spec, uint64_t key_bytes, const char *where,
                     struct luks2_cipher *c)
{
    if (strlen(spec) >= sizeof c->spec)
        return mbad(m, -ENOTSUP, "%s: unsupported cipher '%.40s...'", where, spec);
    snprintf(c->spec, sizeof c->spec, "%s", spec);
    char buf[64];
    snprintf(buf, sizeof buf, "%s", spec);
    char *d1 = strchr(buf, '-');
    if (!d1)
        return mbad(m, -ENOTSUP, "%s: unsupported cipher '%s'", where, spec);
    *d1 = '\0';
    char *modes = d1 + 1, *d2 = strchr(modes, '-');
    const char *iv = "plain64";
    if (d2) {
        *d2 = '\0';
        iv = d2 + 1;
    }
    int mode = vcrypt_mode_by_name(modes);
    if (mode < 0)
        return mbad(m, -ENOTSUP, "%s: unsupported cipher mode in '%s'", where, spec);
    char ivb[64];
    snprintf(ivb, sizeof ivb, "%s", iv);
    char *colon = strchr(ivb, ':');
    int ivhash = VCRYPT_SHA256;
    if (colon) {
        *colon = '\0';
        ivhash = vcrypt_hash_by_name(colon + 1);
        if (ivhash < 0)
            return mbad(m, -ENOTSUP, "%s: unsupported IV hash in '%s'", where, spec);
    }
    int ivgen = vcrypt_ivgen_by_name(ivb);
    if (ivgen < 0 || (ivgen == VCRYPT_IV_ESSIV) != (colon != NULL))
        return mbad(m, -ENOTSUP, "%s: unsupported IV generator in '%s'", where, spec);
    size_t alg_key = mode == VCRYPT_XTS ? key_bytes / 2 : key_bytes;
    int alg = key_bytes == 0 || key_bytes > VCRYPT_MAX_KEY || (mode == VCRYPT_XTS && key_bytes % 2)
                  ? -1 : vcrypt_alg_find(buf, alg_key);
    if (alg < 0)
        return mbad(m, -ENOTSUP, "%s: cipher '%s' with a %" PRIu64 "-bit key is not supported",
                    where, spec, key_bytes * 8);
    if (vcrypt_check(alg, mode, ivgen, ivhash) < 0)
        return mbad(m, -ENOTSUP, "%s: %s", where, vdisk_get_error());
    c->key_bytes = (uint32_t)key_bytes;
    c->alg = alg;
    c->mode = mode;
    c->ivgen = ivgen;
    c->ivhash = ivhash;
    return 0;
}

static int parse_keyslot(struct meta *m, struct jnode *o, int id, struct luks2_keyslot *k)
{
    char where[32];
    snprintf(where, sizeof where, "keyslot %d", id);
    memset(k, 0, sizeof *k);
    k->id = id;
    k->digest = -1;
    if (o->type != J_OBJ)
        return mbad(m, -EINVAL, "%s is not an object", where);
    const char *type = str(m, o, "type", where);
    if (type && strcmp(type, "luks2"))
        return mbad(m, -ENOTSUP, "%s: keyslot type '%.40s' is not supported", where, type);
    k->key_bytes = (uint32_t)num(m, o, "key_size", 1, VCRYPT_MAX_KEY, where);
    k->priority = 1;
    struct jnode *pr = member(m, o, "priority", where);
    if (pr) {
        uint64_t p = 0;
        if (pr->type != J_NUM || !dec_u64(pr->text, 2, &p))
            return mbad(m, -EINVAL, "%s \"priority\" is not 0, 1 or 2", where);
        k->priority = (int)p;
    }
    char sub[48];
    snprintf(sub, sizeof sub, "%s area", where);
    struct jnode *area = need(m, o, "area", J_OBJ, where);
    if (area) {
        const char *at = str(m, area, "type", sub);
        if (at && strcmp(at, "raw"))
            return mbad(m, -ENOTSUP, "%s: area type '%.40s' is not supported", where, at);
        k->area_offset = strnum(m, area, "offset", INT64_MAX, sub);
        k->area_size = strnum(m, area, "size", INT64_MAX, sub);
        uint64_t kb = num(m, area, "key_size", 1, VCRYPT_MAX_KEY, sub);
        const char *enc = str(m, area, "encryption", sub);
        if (!m->err)
            cipher_of(m, enc, kb, sub, &k->area);
    }
    snprintf(sub, sizeof sub, "%s kdf", where);
    struct jnode *kdf = need(m, o, "kdf", J_OBJ, where);
    if (kdf) {
        const char *kt = str(m, kdf, "type", sub);
        if (kt && !strcmp(kt, "pbkdf2")) {
            k->kdf = LUKS2_KDF_PBKDF2;
            k->kdf_hash = hash_of(m, kdf, "hash", sub);
            k->iterations = (uint32_t)num(m, kdf, "iterations", 1, LUKS_MAX_ITERATIONS, sub);
        } else if (kt && (!strcmp(kt, "argon2i") || !strcmp(kt, "argon2id"))) {
            k->kdf = !strcmp(kt, "argon2i") ? LUKS2_KDF_ARGON2I : LUKS2_KDF_ARGON2ID;
            k->time = (uint32_t)num(m, kdf, "time", 1, LUKS2_MAX_ARGON2_TIME, sub);
            k->memory = (uint32_t)num(m, kdf, "memory", 8, LUKS2_MAX_ARGON2_MEMORY, sub);
            k->cpus = (uint32_t)num(m, kdf, "cpus", 1, LUKS2_MAX_ARGON2_LANES, sub);
            if (!m->err && (uint64_t)k->time * k->memory > LUKS2_MAX_ARGON2_WORK)
                return mbad(m, -EINVAL, "%s: time %" PRIu32 " x memory %" PRIu32 " KiB exceeds "
                            "the limit of %llu KiB", sub, k->time, k->memory,
                            (unsigned long long)LUKS2_MAX_ARGON2_WORK);
        } else if (kt) {
            return mbad(m, -ENOTSUP, "%s: KDF '%.40s' is not supported", where, kt);
        }
        if (!m->err)
            k->salt_len = b64(m, kdf, "salt", k->salt, LUKS2_SALT_MAX, sub);
        if (!m->err && k->kdf != LUKS2_KDF_PBKDF2 && k->salt_len < 8)
            return mbad(m, -EINVAL, "%s: an argon2 salt of %zu bytes is too short", sub,
                        k->salt_len);
    }
    snprintf(sub, sizeof sub, "%s af", where);
    struct jnode *af = need(m, o, "af", J_OBJ, where);
    if (af) {
        const char *t = str(m, af, "type", sub);
        if (t && strcmp(t, "luks1"))
            return mbad(m, -ENOTSUP, "%s: anti-forensic type '%.40s' is not supported", where, t);
        k->stripes = (uint32_t)num(m, af, "stripes", LUKS2_STRIPES, LUKS2_STRIPES, sub);
        k->af_hash = hash_of(m, af, "hash", sub);
    }
    return m->err;
}

static int parse_digest(struct meta *m, struct jnode *o, int id, struct luks2_digest *g,
                        struct luks2_header *h)
{
    char where[32];
    snprintf(where, sizeof where, "digest %d", id);
    memset(g, 0, sizeof *g);
    g->id = id;
    if (o->type != J_OBJ)
        return mbad(m, -EINVAL, "%s is not an object", where);
    const char *type = str(m, o, "type", where);
    if (type && strcmp(type, "pbkdf2"))
        return mbad(m, -ENOTSUP, "%s: digest type '%.40s' is not supported", where, type);
    g->hash = hash_of(m, o, "hash", where);
    g->iterations = (uint32_t)num(m, o, "iterations", 1, LUKS_MAX_ITERATIONS, where);
    if (!m->err)
        g->salt_len = b64(m, o, "salt", g->salt, LUKS2_SALT_MAX, where);
    if (!m->err)
        g->digest_len = b64(m, o, "digest", g->digest, VCRYPT_MAX_DIGEST, where);
    if (!m->err && g->digest_len != vcrypt_hash_len(g->hash))
        return mbad(m, -EINVAL, "%s: %zu digest bytes, not the %zu of %s", where, g->digest_len,
                    vcrypt_hash_len(g->hash), vcrypt_hash_name(g->hash));
    struct jnode *ks = need(m, o, "keyslots", J_ARR, where);
    struct jnode *sg = need(m, o, "segments", J_ARR, where);
    if (m->err)
        return m->err;
    for (struct jnode *e = jnode(m->d, ks->child); e; e = jnode(m->d, e->next)) {
        int k = e->type == J_STR ? small_id(e->text, LUKS2_KEYSLOTS) : -1;
        int found = -1;
        for (int i = 0; i < h->nkeyslots && k >= 0; i++)
            if (h->keyslots[i].id == k)
                found = i;
        if (found < 0)
            return mbad(m, -EINVAL, "%s names a keyslot that does not exist", where);
        if (h->keyslots[found].digest >= 0)
            return mbad(m, -EINVAL, "keyslot %d is in two digests", k);
        h->keyslots[found].digest = h->ndigests;
        g->keyslots |= 1u << k;
    }
    for (struct jnode *e = jnode(m->d, sg->child); e; e = jnode(m->d, e->next)) {
        if (e->type != J_STR || small_id(e->text, 1) != 0)
            return mbad(m, -EINVAL, "%s names a segment that does not exist", where);
        g->segment0 = true;
    }
    return 0;
}

static int parse_segment(struct meta *m, struct jnode *o, struct luks2_header *h)
{
    const char *where = "segment 0";
    if (o->type != J_OBJ)
        return mbad(m, -EINVAL, "%s is not an object", where);
    const char *type = str(m, o, "type", where);
    if (type && strcmp(type, "crypt"))
        return mbad(m, -ENOTSUP, "%s: segment type '%.40s' is not supported", where, type);
    if (member(m, o, "integrity", where))
        return mbad(m, -ENOTSUP, "%s: integrity protection (dm-integrity) is not supported",
                    where);
    struct jnode *fl = member(m, o, "flags", where);
    if (fl && (fl->type != J_ARR || fl->child))
        return mbad(m, -ENOTSUP, "%s: segment flags (a reencryption's) are not supported",
                    where);
    h->seg_offset = strnum(m, o, "offset", INT64_MAX, where);
    struct jnode *sz = need(m, o, "size", J_STR, where);
    if (sz && !strcmp(sz->text, "dynamic"))
        h->seg_dynamic = true;
    else if (sz)
        h->seg_size = strnum(m, o, "size", INT64_MAX, where);
    h->iv_tweak = strnum(m, o, "iv_tweak", INT64_MAX, where);
    h->sector_size = (uint32_t)num(m, o, "sector_size", LUKS_SECTOR, VCRYPT_MAX_SECTOR, where);
    if (m->err)
        return m->err;
    if (h->sector_size & (h->sector_size - 1))
        return mbad(m, -EINVAL, "%s: sector size %" PRIu32 " is not a power of two", where,
                    h->sector_size);
    if (h->seg_offset % h->sector_size || h->seg_size % h->sector_size)
        return mbad(m, -EINVAL, "%s: offset %" PRIu64 " or size %" PRIu64 " is not a multiple "
                    "of the sector size %" PRIu32, where, h->seg_offset, h->seg_size,
                    h->sector_size);
    /* The IV of the sector at byte B of the segment is B / 512 + iv_tweak,
     * whatever the sector size: cryptsetup sets no iv_large_sectors for
     * LUKS2 (checked against its own offline encryption in
     * tests/interop/interop_luks2.c). */
    if (!h->seg_dynamic && h->seg_size == 0)
        return mbad(m, -EINVAL, "%s: size 0", where);
    const char *enc = str(m, o, "encryption", where);
    snprintf(h->seg.spec, sizeof h->seg.spec, "%.63s", enc ? enc : "");
    return m->err;
}

/* The metadata of JSON (LEN bytes, no NUL) into H; the binary header's
 * fields are set.  FSIZE: the file's size. */
static int parse_json(const char *json, size_t len, uint64_t fsize, const char *filename,
                      struct luks2_header *h)
{
    struct jdoc d;
    struct meta m = {&d, filename, 0};
    if (jparse(&d, json, len) < 0) {
        int r = bad(-EINVAL, filename, "LUKS2 metadata is not valid JSON: %s", d.err);
        jfree(&d);
        return r;
    }
    struct jnode *top = &d.n[0];
    struct jnode *ks = need(&m, top, "keyslots", J_OBJ, "the metadata");
    struct jnode *dg = need(&m, top, "digests", J_OBJ, "the metadata");
    struct jnode *sg = need(&m, top, "segments", J_OBJ, "the metadata");
    struct jnode *cf = need(&m, top, "config", J_OBJ, "the metadata");
    struct jnode *tk = need(&m, top, "tokens", J_OBJ, "the metadata");
    (void)tk;
    if (m.err)
        goto out;

    /* config first: requirements refuse the image whatever else it says. */
    struct jnode *rq = member(&m, cf, "requirements", "config");
    if (rq) {
        struct jnode *mand = rq->type == J_OBJ ? member(&m, rq, "mandatory", "requirements")
                                               : NULL;
        if (rq->type != J_OBJ || (mand && mand->type != J_ARR)) {
            mbad(&m, -EINVAL, "config \"requirements\" is not an object of arrays");
            goto out;
        }
        if (mand && mand->child) {
            struct jnode *e = jnode(&d, mand->child);
            mbad(&m, -ENOTSUP, "the image has the requirement '%.40s' (e.g. an unfinished "
                 "reencryption), which vdisk does not support",
                 e->type == J_STR ? e->text : "?");
            goto out;
        }
    }
    h->json_size = strnum(&m, cf, "json_size", LUKS2_MAX_HDR, "config");
    h->keyslots_size = strnum(&m, cf, "keyslots_size", INT64_MAX, "config");
    if (m.err)
        goto out;
    if (h->json_size != h->hdr_size - LUKS2_BIN_HDR) {
        mbad(&m, -EINVAL, "config json_size %" PRIu64 " does not match the header size (%"
             PRIu64 " expected)", h->json_size, h->hdr_size - LUKS2_BIN_HDR);
        goto out;
    }
    uint64_t meta_end = 2 * h->hdr_size;
    if (h->keyslots_size > INT64_MAX - meta_end) {
        mbad(&m, -EINVAL, "config keyslots_size %" PRIu64 " is too large", h->keyslots_size);
        goto out;
    }
    uint64_t ks_end = meta_end + h->keyslots_size;

    /* segments: exactly one, "0". */
    int nseg = 0;
    struct jnode *seg0 = NULL;
    for (struct jnode *e = jnode(&d, sg->child); e; e = jnode(&d, e->next)) {
        nseg++;
        if (!strcmp(e->key, "0"))
            seg0 = e;
    }
    if (nseg != 1 || !seg0) {
        mbad(&m, -ENOTSUP, "%d data segments (vdisk supports exactly one, \"0\")", nseg);
        goto out;
    }
    if (parse_segment(&m, seg0, h) < 0)
        goto out;
    if (h->seg_offset < ks_end) {
        mbad(&m, -EINVAL, "segment 0 offset %" PRIu64 " lies inside the metadata and keyslots "
             "(which end at %" PRIu64 ")", h->seg_offset, ks_end);
        goto out;
    }
    if (h->seg_offset > fsize) {
        mbad(&m, -EINVAL, "segment 0 offset %" PRIu64 " lies past the end of the file (%" PRIu64
             " bytes)", h->seg_offset, fsize);
        goto out;
    }
    if (!h->seg_dynamic && h->seg_size > fsize - h->seg_offset) {
        mbad(&m, -EINVAL, "segment 0 (%" PRIu64 " bytes at offset %" PRIu64 ") lies past the "
             "end of the file (%" PRIu64 " bytes)", h->seg_size, h->seg_offset, fsize);
        goto out;
    }

    /* keyslots. */
    for (struct jnode *e = jnode(&d, ks->child); e; e = jnode(&d, e->next)) {
        int id = small_id(e->key, LUKS2_KEYSLOTS);
        if (id < 0) {
            mbad(&m, -EINVAL, "keyslot \"%.40s\" is not a number from 0 to %d", e->key,
                 LUKS2_KEYSLOTS - 1);
            goto out;
        }
        for (int i = 0; i < h->nkeyslots; i++)
            if (h->keyslots[i].id == id) {
                mbad(&m, -EINVAL, "keyslot %d is there twice", id);
                goto out;
            }
        struct luks2_keyslot *k = &h->keyslots[h->nkeyslots];
        if (parse_keyslot(&m, e, id, k) < 0)
            goto out;
        h->nkeyslots++;
        uint64_t split = (uint64_t)k->key_bytes * k->stripes;
        uint64_t need_bytes = (split + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
        if (k->area_size < need_bytes) {
            mbad(&m, -EINVAL, "keyslot %d area (%" PRIu64 " bytes) is smaller than its key "
                 "material (%" PRIu64 " bytes)", id, k->area_size, need_bytes);
            goto out;
        }
        if (k->area_offset < meta_end || k->area_offset % LUKS_SECTOR ||
            k->area_size > ks_end - k->area_offset || k->area_offset > ks_end) {
            mbad(&m, -EINVAL, "keyslot %d area (%" PRIu64 " bytes at offset %" PRIu64 ") lies "
                 "outside the keyslots area (%" PRIu64 " to %" PRIu64 ")", id, k->area_size,
                 k->area_offset, meta_end, ks_end);
            goto out;
        }
        if (k->area_offset + need_bytes > fsize) {
            mbad(&m, -EINVAL, "keyslot %d area (%" PRIu64 " bytes at offset %" PRIu64 ") lies "
                 "past the end of the file (%" PRIu64 " bytes)", id, need_bytes,
                 k->area_offset, fsize);
            goto out;
        }
    }

    /* digests. */
    for (struct jnode *e = jnode(&d, dg->child); e; e = jnode(&d, e->next)) {
        int id = small_id(e->key, LUKS2_DIGESTS);
        if (id < 0) {
            mbad(&m, -EINVAL, "digest \"%.40s\" is not a number from 0 to %d", e->key,
                 LUKS2_DIGESTS - 1);
            goto out;
        }
        for (int i = 0; i < h->ndigests; i++)
            if (h->digests[i].id == id) {
                mbad(&m, -EINVAL, "digest %d is there twice", id);
                goto out;
            }
        if (parse_digest(&m, e, id, &h->digests[h->ndigests], h) < 0)
            goto out;
        h->ndigests++;
    }
    /* The master key's size: that of the keyslots of the segment's digest. */
    int seg_digests = 0;
    uint32_t key_bytes = 0;
    for (int i = 0; i < h->ndigests; i++)
        seg_digests += h->digests[i].segment0;
    if (seg_digests != 1) {
        mbad(&m, -EINVAL, "%d digests cover segment 0 (one expected)", seg_digests);
        goto out;
    }
    for (int i = 0; i < h->nkeyslots; i++) {
        const struct luks2_keyslot *k = &h->keyslots[i];
        if (k->digest < 0 || !h->digests[k->digest].segment0)
            continue;
        if (key_bytes && key_bytes != k->key_bytes) {
            mbad(&m, -EINVAL, "keyslots of segment 0 hold keys of %" PRIu32 " and %" PRIu32
                 " bytes", key_bytes, k->key_bytes);
            goto out;
        }
        key_bytes = k->key_bytes;
    }
    if (!key_bytes) {
        mbad(&m, -EINVAL, "no keyslot holds the key of segment 0");
        goto out;
    }
    char spec[64];
    snprintf(spec, sizeof spec, "%s", h->seg.spec);
    cipher_of(&m, spec, key_bytes, "segment 0", &h->seg);
out:
    jfree(&d);
    return m.err;
}

/* ---- The binary headers --------------------------------------------------- */

typedef int (*read_fn)(void *opaque, void *buf, size_t len, uint64_t off);

static const uint64_t hdr_sizes[] = {16u << 10, 32u << 10, 64u << 10, 128u << 10, 256u << 10,
                                     512u << 10, 1u << 20, 2u << 20, 4u << 20};

static bool valid_hdr_size(uint64_t s)
{
    for (size_t i = 0; i < sizeof hdr_sizes / sizeof hdr_sizes[0]; i++)
        if (hdr_sizes[i] == s)
            return true;
    return false;
}

static void hexs(char *out, size_t outsz, const uint8_t *b, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 <= outsz; i++)
        o += (size_t)snprintf(out + o, outsz - o, "%02x", b[i]);
    if (!n && outsz)
        out[0] = '\0';
}

/* One copy: its binary header, checksum and JSON syntax.  0 and *BUFP (its
 * hdr_size bytes, the caller's to free) when valid, else -1 with WHY. */
struct copy {
    uint8_t *buf;
    uint64_t hdr_size, seqid;
    char why[320];
};

static void copy_fail(struct copy *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void copy_fail(struct copy *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    free(c->buf);
    c->buf = NULL;
}

static int read_copy(read_fn rd, void *opaque, uint64_t off, uint64_t fsize, struct copy *c)
{
    memset(c, 0, sizeof *c);
    uint8_t bin[LUKS2_BIN_HDR];
    const char *magic = off ? LUKS2_MAGIC2 : LUKS2_MAGIC1;
    if (off + LUKS2_BIN_HDR > fsize || rd(opaque, bin, sizeof bin, off) < 0) {
        copy_fail(c, "cannot be read (the file has %" PRIu64 " bytes)", fsize);
        return -1;
    }
    if (memcmp(bin, magic, 6)) {
        char f[16], e[16];
        hexs(f, sizeof f, bin, 6);
        hexs(e, sizeof e, (const uint8_t *)magic, 6);
        copy_fail(c, "bad magic (expected %s, found %s)", e, f);
        return -1;
    }
    uint16_t version = be16_load(bin + 6);
    if (version != 2) {
        copy_fail(c, "version %u (expected 2)", version);
        return -1;
    }
    uint64_t hs = be64_load(bin + 8);
    if (!valid_hdr_size(hs)) {
        copy_fail(c, "header size %" PRIu64 " (expected 16 KiB, 32 KiB, ... or 4 MiB)", hs);
        return -1;
    }
    uint64_t ho = be64_load(bin + 256);
    if (ho != off) {
        copy_fail(c, "header offset field %" PRIu64 " (expected %" PRIu64 ")", ho, off);
        return -1;
    }
    if (off && hs != off) {
        copy_fail(c, "header size %" PRIu64 " (expected %" PRIu64 ", its offset)", hs, off);
        return -1;
    }
    char alg[33];
    memcpy(alg, bin + 72, 32);
    alg[32] = '\0';
    int hash = vcrypt_hash_by_name(alg);
    if (hash < 0) {
        copy_fail(c, "checksum algorithm '%.32s' (expected sha256)", alg);
        return -1;
    }
    if (off + hs > fsize) {
        copy_fail(c, "%" PRIu64 " header bytes lie past the end of the file (%" PRIu64 " bytes)",
                  hs, fsize);
        return -1;
    }
    c->buf = malloc(hs);
    if (!c->buf) {
        copy_fail(c, "out of memory for %" PRIu64 " bytes", hs);
        return -1;
    }
    memcpy(c->buf, bin, sizeof bin);
    if (rd(opaque, c->buf + LUKS2_BIN_HDR, hs - LUKS2_BIN_HDR, off + LUKS2_BIN_HDR) < 0) {
        copy_fail(c, "cannot be read: %s", vdisk_get_error());
        return -1;
    }
    uint8_t stored[64], got[VCRYPT_MAX_DIGEST];
    memcpy(stored, c->buf + 448, 64);
    memset(c->buf + 448, 0, 64);
    vcrypt_hash_buf(hash, c->buf, hs, got);
    memcpy(c->buf + 448, stored, 64);
    size_t dl = vcrypt_hash_len(hash);
    if (memcmp(got, stored, dl)) {
        char f[2 * VCRYPT_MAX_DIGEST + 1], e[2 * VCRYPT_MAX_DIGEST + 1];
        hexs(f, sizeof f, stored, dl);
        hexs(e, sizeof e, got, dl);
        copy_fail(c, "checksum mismatch (expected %s, found %s)", e, f);
        return -1;
    }
    const char *json = (const char *)c->buf + LUKS2_BIN_HDR;
    size_t jlen = strnlen(json, hs - LUKS2_BIN_HDR);
    if (jlen == hs - LUKS2_BIN_HDR) {
        copy_fail(c, "the JSON area (%" PRIu64 " bytes) is not NUL-terminated",
                  hs - LUKS2_BIN_HDR);
        return -1;
    }
    c->hdr_size = hs;
    c->seqid = be64_load(bin + 16);
    return 0;
}

static void str_field(char *dst, size_t dsz, const uint8_t *src, size_t n)
{
    size_t l = strnlen((const char *)src, n);
    if (l >= dsz)
        l = dsz - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
}

static int load(read_fn rd, void *opaque, uint64_t fsize, const char *filename,
                struct luks2_header *h)
{
    memset(h, 0, sizeof *h);
    struct copy p, s;
    uint64_t soff = 0;
    read_copy(rd, opaque, 0, fsize, &p);
    if (p.buf) {
        soff = p.hdr_size;
        read_copy(rd, opaque, soff, fsize, &s);
    } else {
        /* As cryptsetup: the secondary looked for at every size. */
        memset(&s, 0, sizeof s);
        snprintf(s.why, sizeof s.why, "not found at any of the offsets 16 KiB to 4 MiB");
        for (size_t i = 0; i < sizeof hdr_sizes / sizeof hdr_sizes[0]; i++) {
            uint8_t mg[6];
            if (hdr_sizes[i] + LUKS2_BIN_HDR > fsize)
                break;
            if (rd(opaque, mg, 6, hdr_sizes[i]) < 0 || memcmp(mg, LUKS2_MAGIC2, 6))
                continue;
            soff = hdr_sizes[i];
            read_copy(rd, opaque, soff, fsize, &s);
            break;
        }
    }
    struct copy *use = NULL;
    if (p.buf && s.buf)
        use = s.seqid > p.seqid ? &s : &p;
    else
        use = p.buf ? &p : s.buf ? &s : NULL;
    if (!use) {
        int r;
        if (soff)
            r = bad(-EINVAL, filename, "no valid LUKS2 header: primary at offset 0: %s; "
                    "secondary at offset %" PRIu64 ": %s", p.why, soff, s.why);
        else
            r = bad(-EINVAL, filename, "no valid LUKS2 header: primary at offset 0: %s; "
                    "secondary: %s", p.why, s.why);
        free(p.buf);
        free(s.buf);
        return r;
    }
    const uint8_t *b = use->buf;
    h->hdr_size = use->hdr_size;
    h->seqid = use->seqid;
    h->hdr_offset = use == &p ? 0 : soff;
    str_field(h->label, sizeof h->label, b + 24, 48);
    str_field(h->checksum_alg, sizeof h->checksum_alg, b + 72, 32);
    str_field(h->uuid, sizeof h->uuid, b + 168, 40);
    str_field(h->subsystem, sizeof h->subsystem, b + 208, 48);
    const char *json = (const char *)b + LUKS2_BIN_HDR;
    int r = parse_json(json, strlen(json), fsize, filename, h);
    free(p.buf);
    free(s.buf);
    return r;
}

struct buf_reader {
    const uint8_t *b;
    size_t len;
};

static int buf_read(void *opaque, void *out, size_t len, uint64_t off)
{
    struct buf_reader *br = opaque;
    if (off > br->len || len > br->len - off)
        return err_set(-EIO, "past the end of the buffer");
    memcpy(out, br->b + off, len);
    return 0;
}

static int dev_read(void *opaque, void *out, size_t len, uint64_t off)
{
    return dev_pread(opaque, out, len, off);
}

int luks2_parse_buf(const uint8_t *buf, size_t len, uint64_t fsize, const char *filename,
                    struct luks2_header *h)
{
    struct buf_reader br = {buf, len};
    return load(buf_read, &br, fsize, filename, h);
}

int luks2_load(struct vdisk_dev *file, uint64_t fsize, const char *filename,
               struct luks2_header *h)
{
    return load(dev_read, file, fsize, filename, h);
}

uint64_t luks2_data_size(const struct luks2_header *h, uint64_t fsize)
{
    if (!h->seg_dynamic)
        return h->seg_size;
    uint64_t n = fsize > h->seg_offset ? fsize - h->seg_offset : 0;
    return n / h->sector_size * h->sector_size;
}

/* ---- Unlocking ------------------------------------------------------------ */

/* 1 when keyslot K opens with PASS (MK set), 0 when not, or -errno. */
static int try_keyslot(struct vdisk_dev *file, const struct luks2_header *h,
                       const struct luks2_keyslot *k, const char *pass, size_t pass_len,
                       uint8_t *mk)
{
    const struct luks2_digest *g = &h->digests[k->digest];
    uint8_t slot_key[VCRYPT_MAX_KEY], cand[VCRYPT_MAX_KEY], digest[VCRYPT_MAX_DIGEST];
    int r;
    if (k->kdf == LUKS2_KDF_PBKDF2)
        r = vcrypt_pbkdf2(k->kdf_hash, pass, pass_len, k->salt, k->salt_len, k->iterations,
                          slot_key, k->area.key_bytes);
    else
        r = vcrypt_argon2(k->kdf == LUKS2_KDF_ARGON2I ? VCRYPT_ARGON2I : VCRYPT_ARGON2ID, pass,
                          pass_len, k->salt, k->salt_len, k->time, k->memory, k->cpus, slot_key,
                          k->area.key_bytes);
    if (r < 0)
        return err_set(r, "%s: keyslot %d: %s", file->filename, k->id, vdisk_get_error());
    size_t split = (size_t)k->key_bytes * k->stripes;
    size_t n = (split + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
    uint8_t *buf = malloc(n);
    if (!buf) {
        memset(slot_key, 0, sizeof slot_key);
        return err_set(-ENOMEM, "out of memory");
    }
    r = dev_pread(file, buf, n, k->area_offset);
    if (r < 0)
        r = err_set(r, "%s: cannot read keyslot %d: %s", file->filename, k->id,
                    vdisk_get_error());
    struct vcrypt *c = NULL;
    if (r == 0)
        r = vcrypt_new(&c, k->area.alg, k->area.mode, k->area.ivgen, k->area.ivhash, slot_key,
                       k->area.key_bytes);
    memset(slot_key, 0, sizeof slot_key);
    if (r == 0)
        r = vcrypt_decrypt(c, 0, buf, n);
    vcrypt_free(c);
    if (r == 0) {
        luks_af_merge(k->af_hash, buf, k->key_bytes, k->stripes, cand);
        r = vcrypt_pbkdf2(g->hash, cand, k->key_bytes, g->salt, g->salt_len, g->iterations,
                          digest, g->digest_len);
        if (r == 0 && memcmp(digest, g->digest, g->digest_len) == 0) {
            memcpy(mk, cand, k->key_bytes);
            r = 1;
        }
    }
    memset(cand, 0, sizeof cand);
    memset(buf, 0, n);
    free(buf);
    return r;
}

int luks2_unlock(struct vdisk_dev *file, const struct luks2_header *h, const char *pass,
                 size_t pass_len, uint8_t *mk)
{
    /* High priority first, then normal; "ignore" (0) never, as cryptsetup
     * does without a keyslot named. */
    for (int prio = 2; prio >= 1; prio--) {
        for (int i = 0; i < h->nkeyslots; i++) {
            const struct luks2_keyslot *k = &h->keyslots[i];
            if (k->priority != prio || k->digest < 0 || !h->digests[k->digest].segment0)
                continue;
            int r = try_keyslot(file, h, k, pass, pass_len, mk);
            if (r < 0)
                return r;
            if (r == 1)
                return k->id;
        }
    }
    return err_set(-EPERM, "Invalid password, cannot unlock any keyslot");
}

/* ---- Info ----------------------------------------------------------------- */

void luks2_fill_info(const struct luks2_header *h, struct vdisk_encrypt_info *in)
{
    memset(in, 0, sizeof *in);
    const struct luks2_digest *g = NULL;
    for (int i = 0; i < h->ndigests; i++)
        if (h->digests[i].segment0)
            g = &h->digests[i];
    in->format = "luks";
    in->cipher_alg = vcrypt_alg_name(h->seg.alg);
    in->cipher_mode = vcrypt_mode_name(h->seg.mode);
    in->ivgen_alg = vcrypt_ivgen_name(h->seg.ivgen);
    in->ivgen_hash_alg = h->seg.ivgen == VCRYPT_IV_ESSIV ? vcrypt_hash_name(h->seg.ivhash)
                                                         : NULL;
    in->hash_alg = g ? vcrypt_hash_name(g->hash) : "";
    in->uuid = h->uuid;
    in->payload_offset = h->seg_offset;
    in->master_key_iters = g ? g->iterations : 0;
    in->nb_slots = 8;
    in->version = 2;
    in->sector_size = h->sector_size;
    static const char *const kdfs[] = {"pbkdf2", "argon2i", "argon2id"};
    for (int i = 0; i < h->nkeyslots; i++) {
        const struct luks2_keyslot *k = &h->keyslots[i];
        if (k->id >= 8)
            continue;
        struct vdisk_luks_slot_info *s = &in->slots[k->id];
        s->active = true;
        s->iters = k->kdf == LUKS2_KDF_PBKDF2 ? k->iterations : k->time;
        s->key_offset = k->area_offset;
        s->stripes = k->stripes;
        in->slot_kdf[k->id] = kdfs[k->kdf];
    }
}
