/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/compress.c: compressed clusters as QEMU writes them:
 * raw deflate with a 4 KiB window (windowBits -12) for compression type
 * zlib, one zstd frame for zstd.  Decompression must yield exactly one
 * cluster; trailing bytes in the last sector are ignored, and zstd data
 * may hold several frames.
 */
#include <errno.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "qcow2.h"

static int inflate_raw(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
    z_stream z = {0};
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)slen;
    z.next_out = dst;
    z.avail_out = (uInt)dlen;
    int r = inflate(&z, Z_FINISH);
    size_t out = dlen - z.avail_out;
    inflateEnd(&z);
    /* The stream may end with the cluster, or the input may run out with
     * the cluster full: both are fine, as in QEMU. */
    if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && out == dlen)
        return 0;
    return -EIO;
}

static int zstd_decompress(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d)
        return -ENOMEM;
    ZSTD_inBuffer in = {src, slen, 0};
    ZSTD_outBuffer out = {dst, dlen, 0};
    int ret = -EIO;
    while (out.pos < out.size) {
        size_t before_in = in.pos, before_out = out.pos;
        size_t r = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(r))
            break;
        if (out.pos == out.size) {
            ret = 0;
            break;
        }
        if (in.pos == in.size || (in.pos == before_in && out.pos == before_out))
            break; /* input exhausted before a full cluster */
    }
    ZSTD_freeDCtx(d);
    return ret;
}

int qcow2_decompress(const struct qcow2 *s, const uint8_t *src, size_t slen, uint8_t *dst,
                     size_t dlen)
{
    if (s->compression_type == QCOW2_COMPRESS_ZSTD)
        return zstd_decompress(src, slen, dst, dlen);
    return inflate_raw(src, slen, dst, dlen);
}

long qcow2_compress(int type, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
    if (type == QCOW2_COMPRESS_ZSTD) {
        size_t r = ZSTD_compress(dst, dlen, src, slen, ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
        return (long)r;
    }
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)slen;
    z.next_out = dst;
    z.avail_out = (uInt)dlen;
    int r = deflate(&z, Z_FINISH);
    long out = (long)(dlen - z.avail_out);
    deflateEnd(&z);
    if (r != Z_STREAM_END)
        return 0; /* did not fit */
    return out;
}
