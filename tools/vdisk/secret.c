/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/secret.c: --object secret,id=ID,... as qemu-img takes it,
 * for the passphrases of encrypted images: file=PATH (the file's bytes as
 * they are) or data=TEXT, each format=raw (default) or base64.  The
 * secrets go to every image the verb opens or creates as the library's
 * options secret.ID (see luks_take_secret), which an image's
 * key-secret=ID (qcow2: encrypt.key-secret=ID) names.
 *
 * Secrets encrypted with another secret (keyid=, iv=) are refused.
 *
 * And the encryption block of qemu-img info (a raw LUKS image's "Format
 * specific information", a qcow2 image's "encrypt:"), with qemu-img's keys
 * in qemu-img's order.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_SECRETS 16
/* A passphrase file larger than this is not a passphrase. */
#define MAX_SECRET_BYTES (64u << 10)

static struct {
    char *id;
    char *value;
} secrets[MAX_SECRETS];
static unsigned nsecrets;

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* IN (LEN bytes) as base64 (RFC 4648, '=' padding), into a new string. */
static char *b64_decode(const char *in, size_t len, size_t *out_len)
{
    char *out = malloc(len / 4 * 3 + 4);
    if (!out)
        return NULL;
    uint32_t acc = 0;
    unsigned bits = 0, pad = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)(acc >> bits);
        }
    }
    if (pad > 2 || (len + 0) % 4) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("Unable to read %s: Failed to open file \xe2\x80\x9c%s\xe2\x80\x9d: %s", path,
                  path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_SECRET_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_SECRET_BYTES + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n > MAX_SECRET_BYTES) {
        cli_error("Unable to read %s: %s", path,
                  !buf ? "out of memory" : err ? "read error" : "larger than 64 KiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cli_object_add(const char *arg)
{
    char *copy = strdup(arg);
    if (!copy) {
        cli_error("Out of memory");
        return -1;
    }
    const char *type = NULL, *id = NULL, *data = NULL, *file = NULL, *format = NULL;
    int ret = -1;
    /* KEY=VALUE items, the first may be the type alone; ",," is a comma. */
    char *items[32];
    unsigned nitems = 0;
    char *w = copy;
    for (char *p = copy; *p;) {
        if (nitems == 32) {
            cli_error("Too many parameters in --object");
            goto out;
        }
        items[nitems++] = w;
        for (; *p; p++) {
            if (*p == ',' && p[1] == ',') {
                *w++ = ',';
                p++;
            } else if (*p == ',') {
                p++;
                break;
            } else {
                *w++ = *p;
            }
        }
        *w++ = '\0';
    }
    for (unsigned i = 0; i < nitems; i++) {
        char *eq = strchr(items[i], '=');
        if (!eq) {
            if (i == 0) {
                type = items[i];
                continue;
            }
            cli_error("Invalid parameter '%s'", items[i]);
            goto out;
        }
        *eq = '\0';
        const char *k = items[i], *v = eq + 1;
        if (!strcmp(k, "qom-type"))
            type = v;
        else if (!strcmp(k, "id"))
            id = v;
        else if (!strcmp(k, "data"))
            data = v;
        else if (!strcmp(k, "file"))
            file = v;
        else if (!strcmp(k, "format"))
            format = v;
        else if (!strcmp(k, "keyid") || !strcmp(k, "iv")) {
            cli_error("Secrets encrypted with another secret ('%s') are not supported", k);
            goto out;
        } else {
            cli_error("Parameter '%s' is unexpected", k);
            goto out;
        }
    }
    if (!type) {
        cli_error("Parameter 'qom-type' is missing");
        goto out;
    }
    if (strcmp(type, "secret")) {
        cli_error("Parameter 'qom-type' does not accept value '%s'", type);
        goto out;
    }
    if (!id) {
        cli_error("Parameter 'id' is missing");
        goto out;
    }
    if (format && strcmp(format, "raw") && strcmp(format, "base64")) {
        cli_error("Parameter 'format' does not accept value '%s'", format);
        goto out;
    }
    if (data && file) {
        cli_error("'file' and 'data' are mutually exclusive");
        goto out;
    }
    if (!data && !file) {
        cli_error("Either 'file' or 'data' must be provided");
        goto out;
    }
    for (unsigned i = 0; i < nsecrets; i++) {
        if (!strcmp(secrets[i].id, id)) {
            cli_error("attempt to add duplicate property '%s' to object (type 'container')",
                      id);
            goto out;
        }
    }
    if (nsecrets == MAX_SECRETS) {
        cli_error("Too many secrets (at most %d)", MAX_SECRETS);
        goto out;
    }
    size_t len = data ? strlen(data) : 0;
    char *value = data ? strdup(data) : read_file(file, &len);
    if (!value) {
        if (data)
            cli_error("Out of memory");
        goto out;
    }
    if (format && !strcmp(format, "base64")) {
        size_t n;
        char *dec = b64_decode(value, len, &n);
        free(value);
        if (!dec) {
            cli_error("Base64 data contains invalid characters");
            goto out;
        }
        value = dec;
        len = n;
    }
    if (memchr(value, '\0', len)) {
        cli_error("Secret '%s' holds a NUL byte, which vdisk does not take", id);
        free(value);
        goto out;
    }
    secrets[nsecrets].id = strdup(id);
    if (!secrets[nsecrets].id) {
        free(value);
        cli_error("Out of memory");
        goto out;
    }
    secrets[nsecrets++].value = value;
    ret = 0;
out:
    free(copy);
    return ret;
}

int cli_secrets_apply(vdisk_options *o)
{
    for (unsigned i = 0; i < nsecrets; i++) {
        char key[256];
        snprintf(key, sizeof key, "secret.%s", secrets[i].id);
        if (vdisk_options_set(o, key, secrets[i].value) < 0)
            return -1;
    }
    return 0;
}

/* ---- The encryption block of info ---------------------------------------- */

void print_encrypt_human(const struct vdisk_encrypt_info *e, int ind, bool with_format)
{
    if (!strcmp(e->format, "aes")) { /* (qcow2's legacy method: nothing else to say) */
        printf("%*sformat: aes\n", ind, "");
        return;
    }
    printf("%*sivgen alg: %s\n%*shash alg: %s\n%*scipher alg: %s\n%*suuid: %s\n", ind, "",
           e->ivgen_alg, ind, "", e->hash_alg, ind, "", e->cipher_alg, ind, "", e->uuid);
    if (e->ivgen_hash_alg)
        printf("%*sivgen hash alg: %s\n", ind, "", e->ivgen_hash_alg);
    if (with_format)
        printf("%*sformat: %s\n", ind, "", e->format);
    printf("%*scipher mode: %s\n", ind, "", e->cipher_mode);
    /* LUKS2 (qemu-img has no output for it): the version and sector size,
     * and each slot's KDF; LUKS1 exactly as qemu-img. */
    bool v2 = e->version == 2;
    if (v2)
        printf("%*sversion: 2\n%*ssector size: %" PRIu32 "\n", ind, "", ind, "",
               e->sector_size);
    printf("%*sslots:\n", ind, "");
    for (uint32_t i = 0; i < e->nb_slots && i < 8; i++) {
        const struct vdisk_luks_slot_info *s = &e->slots[i];
        printf("%*s[%" PRIu32 "]:\n%*sactive: %s\n", ind + 4, "", i, ind + 8, "",
               s->active ? "true" : "false");
        if (s->active && v2 && e->slot_kdf[i])
            printf("%*skdf: %s\n", ind + 8, "", e->slot_kdf[i]);
        if (s->active && v2 && e->slot_kdf[i] && strcmp(e->slot_kdf[i], "pbkdf2"))
            printf("%*stime cost: %" PRIu32 "\n", ind + 8, "", s->iters);
        else if (s->active)
            printf("%*siters: %" PRIu32 "\n", ind + 8, "", s->iters);
        printf("%*skey offset: %" PRIu64 "\n", ind + 8, "", s->key_offset);
        if (s->active)
            printf("%*sstripes: %" PRIu32 "\n", ind + 8, "", s->stripes);
    }
    printf("%*spayload offset: %" PRIu64 "\n%*smaster key iters: %" PRIu32 "\n", ind, "",
           e->payload_offset, ind, "", e->master_key_iters);
}

static void str_field(int ind, const char *k, const char *v, bool comma)
{
    printf("%*s\"%s\": ", ind, "", k);
    json_string(stdout, v);
    printf("%s\n", comma ? "," : "");
}

void print_encrypt_json(const struct vdisk_encrypt_info *e, int ind, bool with_format)
{
    printf("{\n");
    int j = ind + 4;
    if (!strcmp(e->format, "aes")) {
        printf("%*s\"format\": \"aes\"\n%*s}", j, "", ind, "");
        return;
    }
    str_field(j, "ivgen-alg", e->ivgen_alg, true);
    str_field(j, "hash-alg", e->hash_alg, true);
    str_field(j, "cipher-alg", e->cipher_alg, true);
    str_field(j, "uuid", e->uuid, true);
    if (e->ivgen_hash_alg)
        str_field(j, "ivgen-hash-alg", e->ivgen_hash_alg, true);
    if (with_format)
        str_field(j, "format", e->format, true);
    str_field(j, "cipher-mode", e->cipher_mode, true);
    bool v2 = e->version == 2;
    if (v2)
        printf("%*s\"version\": 2,\n%*s\"sector-size\": %" PRIu32 ",\n", j, "", j, "",
               e->sector_size);
    printf("%*s\"slots\": [\n", j, "");
    for (uint32_t i = 0; i < e->nb_slots && i < 8; i++) {
        const struct vdisk_luks_slot_info *s = &e->slots[i];
        printf("%*s{\n%*s\"active\": %s,\n", j + 4, "", j + 8, "", s->active ? "true" : "false");
        if (s->active && v2 && e->slot_kdf[i])
            str_field(j + 8, "kdf", e->slot_kdf[i], true);
        if (s->active)
            printf("%*s\"iters\": %" PRIu32 ",\n", j + 8, "", s->iters);
        printf("%*s\"key-offset\": %" PRIu64 "%s\n", j + 8, "", s->key_offset,
               s->active ? "," : "");
        if (s->active)
            printf("%*s\"stripes\": %" PRIu32 "\n", j + 8, "", s->stripes);
        printf("%*s}%s\n", j + 4, "", i + 1 < e->nb_slots && i < 7 ? "," : "");
    }
    printf("%*s],\n%*s\"payload-offset\": %" PRIu64 ",\n%*s\"master-key-iters\": %" PRIu32 "\n",
           j, "", j, "", e->payload_offset, j, "", e->master_key_iters);
    printf("%*s}", ind, "");
}
