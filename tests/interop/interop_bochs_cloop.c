/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_bochs_cloop.c: Bochs growing redologs and cloop
 * images, which vdisk reads (it does not write them), against qemu-img
 * 7.2, which reads them too (and makes neither): images built here byte by
 * byte (Bochs versions 1 and 2, extents not in the file, in it with some
 * sectors and with all; cloop blocks of random, patterned and zero bytes)
 * read as qemu-img reads them (info, map, the bytes); writable opens
 * refused with the command that converts; each header field made hostile
 * refused with its exact message, and bad blocks failing the reads that
 * meet them.  QEMU's own samples of both are read in sample-images.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

/* A Bochs image of 5 extents of 4 KiB (the disk 18 KiB: the last extent
 * half used): extent 0 not in the file, 1 with sectors 0, 3 and 7, 2 with
 * all, 3 not in the file, 4 with sector 1.  Version 1 or 2. */
static void make_bochs(const char *name, bool v1)
{
    enum { EXT = 4096, ENTRIES = 5, BITMAP = 1, HDR = 512 };
    size_t blocks = 3, block_bytes = 512 + EXT;
    size_t n = HDR + ENTRIES * 4 + blocks * block_bytes;
    uint8_t *b = calloc(1, n);
    strcpy((char *)b, "Bochs Virtual HD Image");
    strcpy((char *)b + 32, "Redolog");
    strcpy((char *)b + 48, "Growing");
    le32_store(b + 64, v1 ? 0x00010000 : 0x00020000);
    le32_store(b + 68, HDR);
    le32_store(b + 72, ENTRIES);
    le32_store(b + 76, BITMAP);
    le32_store(b + 80, EXT);
    le64_store(b + (v1 ? 84 : 88), 18 * 1024);
    static const uint32_t cat[ENTRIES] = {0xffffffff, 0, 2, 0xffffffff, 1};
    static const uint8_t bits[3] = {0x89, 0x02, 0xff}; /* blocks 0, 1, 2 */
    for (int i = 0; i < ENTRIES; i++)
        le32_store(b + HDR + i * 4, cat[i]);
    uint64_t seed = v1 ? 5 : 6;
    uint8_t *data = b + HDR + ENTRIES * 4;
    for (size_t k = 0; k < blocks; k++) {
        data[k * block_bytes] = bits[k];
        fill_random(data + k * block_bytes + 512, EXT, &seed);
    }
    write_file(scratch(name), b, n);
    free(b);
}

/* A cloop image of 4 blocks of 64 KiB: random, a pattern, zeroes, random;
 * its offsets table in place. */
static void make_cloop(const char *name)
{
    enum { BS = 65536, N = 4 };
    uint8_t *raw = malloc((size_t)BS * N);
    uint64_t seed = 9;
    fill_random(raw, BS, &seed);
    memset(raw + BS, 0x5c, BS);
    memset(raw + 2 * BS, 0, BS);
    fill_random(raw + 3 * BS, BS, &seed);
    size_t cap = 136 + (N + 1) * 8 + N * (size_t)compressBound(BS);
    uint8_t *b = calloc(1, cap);
    strcpy((char *)b, "#!/bin/sh\n#V2.0 Format\n"
                      "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n");
    be32_store(b + 128, BS);
    be32_store(b + 132, N);
    size_t at = 136 + (N + 1) * 8;
    for (int i = 0; i < N; i++) {
        be64_store(b + 136 + i * 8, at);
        uLongf len = compressBound(BS);
        ck_assert_int_eq(compress(b + at, &len, raw + (size_t)i * BS, BS), Z_OK);
        at += len;
    }
    be64_store(b + 136 + N * 8, at);
    write_file(scratch(name), b, at);
    write_file(scratch("cloop-src.raw"), raw, (size_t)BS * N);
    free(b);
    free(raw);
}

START_TEST(images_read_as_qemu_img_reads_them)
{
    make_bochs("v2.bochs", false);
    reads_as_qemu_img("v2.bochs");
    make_bochs("v1.bochs", true);
    reads_as_qemu_img("v1.bochs");
    make_cloop("c.cloop");
    reads_as_qemu_img("c.cloop");
    RUN_OK("cd '%s' && cmp v.raw cloop-src.raw && '%s' convert -O qcow2 c.cloop c.qcow2 && "
           "qemu-img compare c.cloop c.qcow2", scratch_dir(), vdisk_bin());
    /* Read-only: a writable open says how to convert. */
    struct run *r = run("cd '%s' && '%s' io -c 'write 0 512' v2.bochs", scratch_dir(),
                        vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: v2.bochs: vdisk reads Bochs images but does "
                             "not write them (open it read-only, or convert it: vdisk convert "
                             "-f bochs -O qcow2 v2.bochs IMAGE.qcow2)\n");
    r = run("cd '%s' && '%s' io -c 'write 0 512' c.cloop", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: c.cloop: vdisk reads cloop images but does "
                             "not write them (open it read-only, or convert it: vdisk convert "
                             "-f cloop -O qcow2 c.cloop IMAGE.qcow2)\n");
}
END_TEST

/* Reading PATH fails at byte OFF with MSG (after the file's name). */
static void read_fails(const char *path, uint64_t off, const char *msg)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    ck_assert_msg(vdisk_open(&d, path, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    uint8_t buf[512];
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, off), -EIO);
    ck_assert_msg(strstr(vdisk_get_error(), fmt("%s: %s", path, msg)) != NULL, "%s",
                  vdisk_get_error());
    vdisk_close(d);
}

START_TEST(hostile_bochs_refused)
{
    make_bochs("g.bochs", false);
    const char *g = scratch("g.bochs");
#define refused(...) open_refused("bochs", __VA_ARGS__)
#define P(name, off, len, v) patched_copy(g, name, off, len, v)
    refused(P("e1.bochs", 80, 4, 3000), -EINVAL, "the extent size (offset 80) is 3000 bytes; "
            "expected a power of two from 512 to 8388608");
    refused(P("e2.bochs", 80, 4, 16u << 20), -EINVAL, "the extent size (offset 80) is 16777216 "
            "bytes; expected a power of two from 512 to 8388608");
    refused(P("e3.bochs", 80, 4, 256), -EINVAL, "the extent size (offset 80) is 256 bytes; "
            "expected a power of two from 512 to 8388608");
    refused(P("c1.bochs", 72, 4, 0x100001), -EFBIG, "a catalog of 1048577 entries (offset 72); "
            "vdisk reads at most 1048576");
    refused(P("c2.bochs", 72, 4, 4), -EINVAL, "a catalog of 4 entries cannot cover a disk of "
            "18432 bytes in extents of 4096 (5 needed)");
    /* A disk of nearly 2^64 bytes: the catalog's cover is counted without
     * overflow (the fuzzer found a read past the catalog). */
    refused(P("c4.bochs", 88, 8, 0xffffffffffffffffull), -EINVAL, "a catalog of 5 entries "
            "cannot cover a disk of 18446744073709551104 bytes in extents of 4096 "
            "(4503599627370496 needed)");
    refused(P("c3.bochs", 68, 4, 100000), -EINVAL, "the catalog (5 entries at offset 100000) "
            "does not lie in the file (14356 bytes)");
    refused(P("b1.bochs", 76, 4, 0), -EINVAL, "the bitmap size (offset 76) is 0 bytes; an "
            "extent of 8 sectors needs 1 to 1048576");
    refused(P("v.bochs", 64, 4, 3), -EINVAL, "not a Bochs growing redolog image (no \"Bochs "
            "Virtual HD Image\", \"Redolog\", \"Growing\" and version 1 or 2 at offset 0)");
    read_fails(P("x.bochs", 512 + 4, 4, 7), 4096, "catalog entry 1 names block 7 (offset "
               "32788), which is not inside the file (14356 bytes)");
    read_fails(P("y.bochs", 512 + 4, 4, 0xfffffffe), 4096, "catalog entry 1 names block "
               "4294967294");
#undef P
#undef refused
}
END_TEST

START_TEST(hostile_cloop_refused)
{
    make_cloop("g.cloop");
    const char *g = scratch("g.cloop");
    size_t n;
    free(read_file(g, &n));
#define refused(...) open_refused("cloop", __VA_ARGS__)
#define P(name, off, len, v) patched_copy(g, name, off, len, v)
    refused(P("s1.cloop", 128, 4, 0), -EINVAL, "the block size (offset 128) is 0 bytes; "
            "expected a multiple of 512 up to 67108864");
    /* (The fields are big-endian: patched_copy stores little-endian.) */
    refused(P("s2.cloop", 128, 4, 0x00011000), -EINVAL, "the block size (offset 128) is "
            "1048832 bytes; expected a multiple of 512 up to 67108864");
    refused(P("s3.cloop", 128, 4, 0x00000008), -EINVAL, "the block size (offset 128) is "
            "134217728 bytes; expected a multiple of 512 up to 67108864");
    refused(P("n1.cloop", 132, 4, 0xffffffffu), -EINVAL,
            fmt("4294967295 blocks need an offsets table of 34359738368 bytes at offset 136; "
                "the file holds %zu bytes (vdisk reads at most 536870912 of it)", n));
    /* Offsets: block 1 starting before block 0, block 2 ending past the
     * file, block 0 longer than a block can deflate to; bad zlib bytes. */
    refused(P("o1.cloop", 136 + 8, 8, 0x0100000000000000ull), -EINVAL,
            fmt("block 0 runs from offset 176 to 1: backwards, or past the end of the file "
                "(%zu bytes)", n));
    uint8_t *off2 = read_file_at(g, 136 + 16, 8);
    refused(P("o2.cloop", 136 + 24, 8, 0x0000000100000000ull), -EINVAL,
            fmt("block 2 runs from offset %llu to 16777216: backwards, or past the end of the "
                "file (%zu bytes)", (unsigned long long)be64_load(off2), n));
    free(off2);
    read_fails(P("z.cloop", 176, 4, 0xdeadbeef), 0, "block 0 (");
#undef P
#undef refused
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    Suite *s = suite_create("interop-bochs-cloop");
    TCase *tc = tcase_create("bochs-cloop");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, images_read_as_qemu_img_reads_them);
    tcase_add_test(tc, hostile_bochs_refused);
    tcase_add_test(tc, hostile_cloop_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
