/* SPDX-License-Identifier: MIT */
/*
 * fuzz/luks2.c: LUKS2 headers (formats/luks/luks2.c): the binary headers,
 * their checksums, the JSON reader and every check of the metadata, with
 * no KDF run and no data read.  The input is a flag byte, then the
 * image's first bytes (the rest of a file of 16 MiB more than that is
 * unreadable zeroes: a data segment at 16 MiB lies inside it).  Flag bit 0
 * (1): the primary's checksum is made anew before the parse, bit 1 (2):
 * the secondary's, so that mutations of the JSON reach the reader rather
 * than stop at the checksum.  Then the info and data size of a header
 * that passes.  Any crash, sanitizer report, leak or hang is a bug.
 * Seeds: luks2_seeds.py (cryptsetup's headers, the first 16 KiB).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "endian.h"
#include "../formats/luks/luks.h"
#include "../formats/luks/luks2.h"

#define INPUT_MAX (8u << 20)

/* The checksum of the copy at OFF of IMG (LEN bytes) made anew. */
static void fix_sum(uint8_t *img, size_t len, uint64_t off)
{
    if (off > len || len - off < LUKS2_BIN_HDR)
        return;
    uint64_t hs = be64_load(img + off + 8);
    if (hs < LUKS2_BIN_HDR || hs > LUKS2_MAX_HDR || hs > len - off)
        return;
    uint8_t *h = img + off;
    memset(h + 448, 0, 64);
    vcrypt_hash_buf(VCRYPT_SHA256, h, hs, h + 448);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > INPUT_MAX)
        return 0;
    uint8_t flags = data[0];
    size_t len = size - 1;
    uint8_t *img = malloc(len ? len : 1);
    if (!img)
        return 0;
    memcpy(img, data + 1, len);
    if (flags & 1)
        fix_sum(img, len, 0);
    if ((flags & 2) && len >= 16)
        fix_sum(img, len, be64_load(img + 8));
    struct luks2_header *h = malloc(sizeof *h);
    if (h && luks2_parse_buf(img, len, (uint64_t)len + (16u << 20), "fuzz", h) == 0) {
        struct vdisk_encrypt_info in;
        luks2_fill_info(h, &in);
        if (h->sector_size < 512 || h->sector_size > 4096 || h->nkeyslots > LUKS2_KEYSLOTS ||
            h->seg.key_bytes == 0 || h->seg.key_bytes > VCRYPT_MAX_KEY)
            abort();
        uint64_t ds = luks2_data_size(h, (uint64_t)len + (16u << 20));
        if (ds % h->sector_size || h->seg_offset > (uint64_t)len + (16u << 20))
            abort();
    }
    free(h);
    free(img);
    return 0;
}
