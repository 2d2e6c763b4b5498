/* SPDX-License-Identifier: MIT */
/*
 * lib/compress.c: one block deflated into a zlib stream (RFC 1950), for
 * the formats whose readers take any zlib stream (VMDK's compressed
 * grains).  With libdeflate (VDISK_HAVE_LIBDEFLATE) the work is done by
 * it, several times faster than zlib at the same level and no larger; each
 * thread keeps one compressor, freed when the thread ends.  Without it,
 * zlib's compress2().
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <zlib.h>
#ifdef VDISK_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#include "driver.h"

#ifdef VDISK_HAVE_LIBDEFLATE
/* zlib's default level (6), the level QEMU's VMDK writer uses. */
#define DEFLATE_LEVEL 6

static pthread_key_t compressor_key;
static pthread_once_t compressor_once = PTHREAD_ONCE_INIT;
static int compressor_key_error;

static void free_compressor(void *c)
{
    libdeflate_free_compressor(c);
}

static void make_key(void)
{
    compressor_key_error = pthread_key_create(&compressor_key, free_compressor);
}

/* This thread's compressor, made on first use; NULL when out of memory. */
static struct libdeflate_compressor *thread_compressor(void)
{
    pthread_once(&compressor_once, make_key);
    if (compressor_key_error)
        return NULL;
    struct libdeflate_compressor *c = pthread_getspecific(compressor_key);
    if (!c) {
        c = libdeflate_alloc_compressor(DEFLATE_LEVEL);
        if (c && pthread_setspecific(compressor_key, c) != 0) {
            libdeflate_free_compressor(c);
            c = NULL;
        }
    }
    return c;
}
#endif

size_t zlib_bound(size_t in_len)
{
#ifdef VDISK_HAVE_LIBDEFLATE
    /* NULL: the bound over any compressor this libdeflate can make. */
    return libdeflate_zlib_compress_bound(NULL, in_len);
#else
    return compressBound((uLong)in_len);
#endif
}

int zlib_deflate(const void *in, size_t in_len, void *out, size_t out_size, size_t *out_len)
{
    *out_len = 0;
#ifdef VDISK_HAVE_LIBDEFLATE
    struct libdeflate_compressor *c = thread_compressor();
    if (!c)
        return -ENOMEM;
    /* 0: the stream does not fit in OUT_SIZE bytes. */
    *out_len = libdeflate_zlib_compress(c, in, in_len, out, out_size);
    return 0;
#else
    if (in_len > UINT_MAX || out_size > UINT_MAX)
        return -EINVAL;
    uLongf len = (uLongf)out_size;
    int zr = compress2(out, &len, in, (uLong)in_len, Z_DEFAULT_COMPRESSION);
    if (zr == Z_BUF_ERROR)
        return 0;
    if (zr != Z_OK)
        return zr == Z_MEM_ERROR ? -ENOMEM : -EIO;
    *out_len = len;
    return 0;
#endif
}
