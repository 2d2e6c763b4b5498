/* SPDX-License-Identifier: MIT */
/*
 * fuzz/luks.c: the fuzz input is a raw LUKS image (QEMU's luks format),
 * given sparse: records of a big-endian u32 byte offset, a u16 length and
 * that many bytes, laid on zeroes (the image ends with the furthest
 * record, which may be one of no bytes; at most 4 MiB), so that a seed
 * carries its header and key material without the 500 KiB of empty key
 * slots between them.  The image
 * is opened over a memory device with the passphrase "fuzz" (header and
 * key slots parsed, bounded and checked; a slot unlocked; the master key's
 * digest compared), then read, written, zeroed, discarded and flushed.
 * An image whose PBKDF2 iterations would make a run slow (more than
 * FUZZ_MAX_ITERS) is opened with no-key=on: the header alone.  Any crash,
 * sanitizer report, leak or hang is a bug.  Seeds: luks_seeds.py.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "endian.h"

#define IMAGE_MAX (4u << 20)
#define MEM_LIMIT (8u << 20)
#define FUZZ_MAX_ITERS 20000u

/* The image the records describe, in *LEN bytes (malloc'd), or NULL. */
static uint8_t *unpack(const uint8_t *data, size_t size, size_t *len)
{
    size_t end = 0;
    for (size_t p = 0; p + 6 <= size;) {
        uint32_t off = be32_load(data + p);
        size_t n = be16_load(data + p + 4);
        if (n > size - p - 6)
            n = size - p - 6;
        if (off <= IMAGE_MAX && off + n > end)
            end = off + n > IMAGE_MAX ? IMAGE_MAX : off + n;
        p += 6 + n;
    }
    uint8_t *img = calloc(1, end ? end : 1);
    if (!img)
        return NULL;
    for (size_t p = 0; p + 6 <= size;) {
        uint32_t off = be32_load(data + p);
        size_t n = be16_load(data + p + 4);
        if (n > size - p - 6)
            n = size - p - 6;
        if (off < end) {
            size_t m = end - off < n ? end - off : n;
            memcpy(img + off, data + p + 6, m);
        }
        p += 6 + n;
    }
    *len = end;
    return img;
}

/* Whether opening with the key would run PBKDF2 long, or Argon2: anything
 * but a LUKS1 header may be read as LUKS2 (a secondary header found
 * further on), whose KDFs fuzz/luks2.c leaves out too. */
static bool slow(const uint8_t *img, size_t len)
{
    if (len < 592 || memcmp(img, "LUKS\xba\xbe", 6) != 0 || be16_load(img + 6) != 1)
        return true;
    if (be32_load(img + 164) > FUZZ_MAX_ITERS)
        return true;
    for (int i = 0; i < 8; i++) {
        const uint8_t *s = img + 208 + 48 * i;
        if (be32_load(s) == 0x00ac71f3u && be32_load(s + 4) > FUZZ_MAX_ITERS)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;
    uint8_t *img = unpack(data, size, &len);
    if (!img)
        return 0;
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, img, len, MEM_LIMIT, &p) < 0) {
        free(img);
        return 0;
    }
    vdisk_options *o = NULL;
    struct opt_set os;
    bool ok = vdisk_options_new(&o) == 0;
    if (ok && slow(img, len))
        ok = vdisk_options_set(o, "no-key", "on") == 0;
    else if (ok)
        ok = vdisk_options_set(o, "secret.k", "fuzz") == 0 &&
             vdisk_options_set(o, "key-secret", "k") == 0;
    if (!ok || opt_set_init(&os, o) < 0) {
        vdisk_options_free(o);
        dev_unref(file);
        free(img);
        return 0;
    }
    if (dev_open_format(&dev, file, "luks", &p, &os) == 0) {
        fuzz_format_ops(dev, data, size, 3, false);
        struct vdisk_info in = {.struct_size = sizeof in};
        vdisk_get_info(dev, &in);
        dev_unref(dev);
    } else {
        dev_unref(file);
    }
    opt_set_fini(&os);
    vdisk_options_free(o);
    free(img);
    return 0;
}
