/* SPDX-License-Identifier: MIT */
/*
 * lib/decompress.c: one compressed block made whole, for the read-only
 * formats that store their blocks compressed (cloop: zlib; DMG: zlib and
 * bzip2).  Each call decompresses one stream into a buffer of the size the
 * block must have, and fails unless the stream ends exactly there: a
 * stream that stops short, runs long or is damaged is an error, never a
 * partial block.  No state survives a call.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <zlib.h>
#ifdef VDISK_HAVE_BZIP2
#include <bzlib.h>
#endif

#include "driver.h"

int inflate_exact(const void *in, size_t in_len, void *out, size_t out_len, int *code,
                  uint64_t *got)
{
    *code = 0;
    *got = 0;
    if (in_len > UINT_MAX || out_len > UINT_MAX)
        return -EINVAL;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    int zr = inflate(&z, Z_FINISH);
    *code = zr;
    *got = z.total_out;
    inflateEnd(&z);
    return zr == Z_STREAM_END && *got == out_len ? 0 : -EIO;
}

bool bunzip2_available(void)
{
#ifdef VDISK_HAVE_BZIP2
    return true;
#else
    return false;
#endif
}

int bunzip2_exact(const void *in, size_t in_len, void *out, size_t out_len, int *code,
                  uint64_t *got)
{
    *code = 0;
    *got = 0;
#ifdef VDISK_HAVE_BZIP2
    if (in_len > UINT_MAX || out_len > UINT_MAX)
        return -EINVAL;
    bz_stream b;
    memset(&b, 0, sizeof b);
    if (BZ2_bzDecompressInit(&b, 0, 0) != BZ_OK)
        return -ENOMEM;
    b.next_in = (char *)in;
    b.avail_in = (unsigned)in_len;
    b.next_out = out;
    b.avail_out = (unsigned)out_len;
    int br;
    do {
        unsigned before_in = b.avail_in, before_out = b.avail_out;
        br = BZ2_bzDecompress(&b);
        if (br == BZ_OK && b.avail_in == before_in && b.avail_out == before_out)
            break; /* no progress: the input ended, or the output is full */
    } while (br == BZ_OK);
    *code = br;
    *got = ((uint64_t)b.total_out_hi32 << 32) | b.total_out_lo32;
    BZ2_bzDecompressEnd(&b);
    return br == BZ_STREAM_END && *got == out_len ? 0 : -EIO;
#else
    (void)in;
    (void)in_len;
    (void)out;
    (void)out_len;
    return -ENOTSUP;
#endif
}
