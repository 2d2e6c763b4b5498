/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/foreign_cve.c: one regression test per class of QEMU's
 * published image-parser CVEs in the drivers of the formats vdisk shares
 * with it besides qcow2 (tests/hostile/cve.c): vmdk, vpc (VHD), vhdx, vdi,
 * qed, and the read-only bochs, cloop, dmg and parallels.
 *
 * The classes are those of QEMU's block-driver audit of March 2014 (QEMU
 * 2.0, with the CVE in each commit's subject; the advisories: RHSA-2014:0420,
 * DSA-3045-1):
 *
 *   CVE-2014-0142  division by zero: bochs "Check extent_size header
 *                  field", parallels "Sanity check for s->tracks", vpc
 *                  "Validate block size"; the same zero divisors in vdi,
 *                  vhdx, vmdk and qed
 *   CVE-2014-0143  integer overflows in table sizes: bochs "Check
 *                  catalog_size header field", cloop "prevent offsets_size
 *                  integer overflow", parallels "Fix catalog size integer
 *                  overflow", and their kin in vpc, vdi, vmdk and qed
 *   CVE-2014-0144  missing header validation: cloop "validate block_size
 *                  header field", "refuse images with huge offsets arrays",
 *                  "refuse images with bogus offsets"; vpc "add bounds
 *                  check for max_table_entries and block_size"; vdi "add
 *                  bounds checks for blocks_in_image and disk_size header
 *                  fields"
 *   CVE-2014-0145  buffer overruns in dmg: "sanitize chunk length and
 *                  sectorcount", "prevent chunk buffer overflow", "prevent
 *                  out-of-bounds array access on terminator"
 *   CVE-2014-0147  bochs "Use unsigned variables for offsets and sizes"
 *                  (catalog entries and offsets read as negative numbers)
 *   CVE-2014-0148  vhdx "Bounds checking for block_size and
 *                  logical_sector_size"
 *
 * and CVE-2015-5162 (a small image claiming huge sizes costing unbounded
 * CPU or memory), which cve.c holds qcow2 to and which found parallels's
 * map stepping cluster by cluster through a disk its BAT does not cover.
 * (CVE-2014-0146 and CVE-2014-0222/0223 are qcow2's and qcow1's: vdisk has
 * no qcow1 driver; qcow2 is in cve.c.)
 *
 * Each hostile image is built here from a good one: QEMU's own sample
 * images for bochs, cloop, parallels and dmg (the ones QEMU's iotests 075,
 * 076 and 078 patch for these CVEs), qemu-img-made ones for the rest, with
 * the field patched.  vdisk must refuse the open with its exact message, or
 * open it and fail the read that meets the bad entry with -EIO and its
 * exact message: never a crash, a hang or a huge allocation.
 *
 * The per-format interop tests (tests/interop/interop_<fmt>.c) hold many
 * more damaged fields; a case already there is named in a comment rather
 * than repeated.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"
#include "images.h"

/* QEMU's sample images (scripts/fetch-qemu-samples.sh), as in
 * tests/interop/sample_images.c. */
static const char *samples_dir(void)
{
    const char *d = getenv("VDISK_QEMU_SAMPLES");
    return d && *d ? d : "/var/cache/vdisk/qemu-samples";
}

/* The sample NAME unpacked into the scratch folder; returns its path. */
static const char *sample(const char *name)
{
    RUN_OK("cd '%s' && bunzip2 -c '%s/%s.bz2' > '%s'", scratch_dir(), samples_dir(), name, name);
    return scratch(name);
}

/* An image NAME of FORMAT and SIZE made by qemu-img (OPTS: more create
 * options, or ""), then written by qemu-io (IO: its -c arguments). */
static const char *qemu_made(const char *format, const char *name, const char *opts,
                             const char *size, const char *io)
{
    RUN_OK("cd '%s' && rm -f '%s' && qemu-img create -q -f %s %s '%s' %s && qemu-io -f %s %s "
           "'%s' >/dev/null", scratch_dir(), name, format, opts, name, size, format, io, name);
    return scratch(name);
}

/* V as patched_copy() must store it for the LEN bytes at its place to read
 * big-endian. */
static uint64_t be(uint64_t v, unsigned len)
{
    uint64_t r = 0;
    for (unsigned i = 0; i < len; i++)
        r |= ((v >> (8 * i)) & 0xff) << (8 * (len - 1 - i));
    return r;
}

/* The one's-complement byte sum that VHD stores in its footer and dynamic
 * header, over N bytes at B, the field at AT counted as 0. */
static void vhd_sum(uint8_t *b, size_t n, size_t at)
{
    be32_store(b + at, 0);
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    be32_store(b + at, ~s);
}

/* A copy of the VHD SRC as NAME with the big-endian field of LEN bytes at
 * OFF set to V and the checksums made right again. */
static const char *vhd_patched(const char *src, const char *name, uint64_t off, unsigned len,
                               uint64_t v)
{
    const char *p = patched_copy(src, name, off, len, be(v, len));
    size_t n;
    uint8_t *b = read_file(p, &n);
    vhd_sum(b, 512, 64);
    vhd_sum(b + n - 512, 512, 64);
    vhd_sum(b + 512, 1024, 36);
    write_file(p, b, n);
    free(b);
    return p;
}

/* PATH opens read-only as FORMAT, and a read of 4 KiB at OFF fails with
 * -EIO and exactly "vdisk_pread: PATH: MSG"; vdisk convert of it to raw
 * fails (exit 1) with the same words. */
static void read_fails(const char *format, const char *path, uint64_t off, const char *msg)
{
    char want[2048];
    snprintf(want, sizeof want, "%s", msg);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", format), 0);
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "%s", vdisk_get_error());
    uint8_t buf[4096];
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, off), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pread: %s: %s", path, want));
    vdisk_close(d);
    struct run *c = run("'%s' convert -f %s -O raw '%s' '%s'", vdisk_bin(), format, path,
                        scratch("out.raw"));
    ck_assert_msg(c->status == 1, "convert: exit %d: %s", c->status, c->err);
    size_t n = strlen(want), e = strlen(c->err);
    ck_assert_msg(e > n && strcmp(c->err + e - n - 1, fmt("%s\n", want)) == 0,
                  "convert said: %s", c->err);
}

/* ---- CVE-2014-0142: division by zero ------------------------------------- */

/* CVE-2014-0142 class: a size that a driver divides by, set to 0.  QEMU
 * 2.0 fixed it in bochs (extent_size), parallels (tracks: sectors per
 * cluster) and vpc (block_size); the others' divisors are here too.  The
 * vpc block size 0 (interop-vpc "block size 0"), the vdi block size 0
 * (interop-vdi, offset 376) and the vmdk grain size 0 (interop-vmdk,
 * offset 20) are refused in the interop tests; cloop's block size 0 is its
 * CVE-2014-0144 fix, below; vhdx's block and logical sector sizes are
 * CVE-2014-0148, below. */
START_TEST(cve_2014_0142_zero_divisors)
{
    /* QEMU iotest 078's empty.bochs; 076's parallels-v1 and -v2. */
    const char *bochs = sample("empty.bochs");
    open_refused("bochs", patched_copy(bochs, "h.bochs", 80, 4, 0), -EINVAL,
                 "the extent size (offset 80) is 0 bytes; expected a power of two from 512 to "
                 "8388608");
    for (int v = 1; v <= 2; v++) {
        const char *par = sample(fmt("parallels-v%d", v));
        open_refused("parallels", patched_copy(par, "h.hdd", 28, 4, 0), -EINVAL,
                     "0 sectors per cluster (offset 28); expected 1 to 4186127");
    }
    /* QED: cluster size and table size (clusters per table). */
    const char *qed = qemu_made("qed", "q.qed", "", "10M", "-c 'write -P 0x11 1M 4k'");
    open_refused("qed", patched_copy(qed, "h.qed", 4, 4, 0), -EINVAL,
                 "the QED cluster size (offset 4) is 0; expected a power of two from 4096 to "
                 "67108864");
    open_refused("qed", patched_copy(qed, "h.qed", 8, 4, 0), -EINVAL,
                 "the QED table size (offset 8) is 0 clusters; expected a power of two from 1 "
                 "to 16");
}
END_TEST

/* ---- CVE-2014-0143: integer overflows in table sizes ---------------------- */

/* CVE-2014-0143 class: entry counts whose byte size (count * entry size,
 * or count * block size) overflows 32 or 64 bits, or asks for a huge
 * allocation.  Refused before anything is allocated.  Also in the interop
 * tests: bochs 0x100001 catalog entries, cloop 0xffffffff blocks, vpc
 * max_table_entries 0xffffffff, vdi 0xffffffff and 0x1fffff80 blocks, vmdk
 * a capacity of 2^62 sectors, qed an image size of 2^47, dmg more than
 * 262144 chunks and a chunk of 2^60 sectors (interop-dmg). */
START_TEST(cve_2014_0143_integer_overflows)
{
    /* Bochs (iotest 078): a catalog of 0xff000000 entries; one of exactly
     * the limit, which then does not lie in the 2560-byte file; a disk
     * larger than the catalog covers. */
    const char *bochs = sample("empty.bochs");
    open_refused("bochs", patched_copy(bochs, "h.bochs", 72, 4, 0xff000000u), -EFBIG,
                 "a catalog of 4278190080 entries (offset 72); vdisk reads at most 1048576");
    open_refused("bochs", patched_copy(bochs, "h.bochs", 72, 4, 0x100000), -EINVAL,
                 "the catalog (1048576 entries at offset 512) does not lie in the file (2560 "
                 "bytes)");
    open_refused("bochs", patched_copy(bochs, "h.bochs", 88, 8, 0x2000000000ull), -EINVAL,
                 "a catalog of 512 entries cannot cover a disk of 137438953472 bytes in extents "
                 "of 4096 (33554432 needed)");
    /* Cloop (iotest 075): (n_blocks + 1) * 8 is 2^32 + 8. */
    const char *cloop = sample("simple-pattern.cloop");
    open_refused("cloop", patched_copy(cloop, "h.cloop", 132, 4, be(0x20000000, 4)), -EINVAL,
                 "536870912 blocks need an offsets table of 4294967304 bytes at offset 136; the "
                 "file holds 1690 bytes (vdisk reads at most 536870912 of it)");
    /* Parallels (iotest 076): catalog_entries * 4 past 2^32 and INT_MAX. */
    const char *par = sample("parallels-v1");
    open_refused("parallels", patched_copy(par, "h.hdd", 32, 4, 0xff000000u), -EINVAL,
                 "a BAT of 4278190080 entries (offset 32) does not lie in the file (327680 "
                 "bytes), or is over vdisk's 67108864");
    open_refused("parallels", patched_copy(par, "h.hdd", 32, 4, 0x7fffffff), -EINVAL,
                 "a BAT of 2147483647 entries (offset 32) does not lie in the file (327680 "
                 "bytes), or is over vdisk's 67108864");
    /* VPC (iotest 088): max_table_entries * 4 is 2^32. */
    const char *vhd = qemu_made("vpc", "q.vhd", "", "10M", "-c 'write -P 0x11 2M 4k'");
    uint64_t vhd_len = file_size(vhd);
    open_refused("vpc", vhd_patched(vhd, "h.vhd", 512 + 28, 4, 0x40000000), -EINVAL,
                 fmt("the BAT at offset 1536 (1073741824 entries, 4294967296 bytes) does not lie "
                     "in the file (%llu bytes)", (unsigned long long)vhd_len));
    /* VDI (iotest 084): blocks_in_image * 4 past 2^32; a disk size near
     * 2^63. */
    const char *vdi = qemu_made("vdi", "q.vdi", "", "10M", "-c 'write -P 0x11 1M 4k'");
    open_refused("vdi", patched_copy(vdi, "h.vdi", 384, 4, 0x40000001), -ENOTSUP,
                 "unsupported VDI image: the block count at offset 384 is 1073741825, expected "
                 "at most 536870784");
    open_refused("vdi", patched_copy(vdi, "h.vdi", 368, 8, 0x7fffffff00000000ull), -ENOTSUP,
                 "unsupported VDI image: the disk size at offset 368 is 9223372032559808512, "
                 "expected at most 562949819203584");
    /* VMDK: a capacity of 2^64 - 1 sectors (the grain directory's size
     * overflows); a grain of 2^31 sectors (its bytes overflow 32 bits). */
    const char *vmdk = qemu_made("vmdk", "q.vmdk", "", "10M", "-c 'write -P 0x11 1M 4k'");
    open_refused("vmdk", patched_copy(vmdk, "h.vmdk", 12, 8, UINT64_MAX), -EFBIG,
                 "a grain directory of 281474976710656 entries; vdisk holds at most 67108864 "
                 "bytes of it");
    open_refused("vmdk", patched_copy(vmdk, "h.vmdk", 20, 8, 0x80000000u), -EINVAL,
                 "the grain size (offset 20) is 2147483648 sectors; expected a power of two up "
                 "to 2097152");
    /* QED: cluster size * table size past 2^32. */
    const char *qed = qemu_made("qed", "q.qed", "", "10M", "-c 'write -P 0x11 1M 4k'");
    open_refused("qed", patched_copy(qed, "h.qed", 8, 4, 0xffffffffu), -EINVAL,
                 "the QED table size (offset 8) is 4294967295 clusters; expected a power of "
                 "two from 1 to 16");
    open_refused("qed", patched_copy(qed, "h.qed", 4, 4, 0x80000000u), -EINVAL,
                 "the QED cluster size (offset 4) is 2147483648; expected a power of two from "
                 "4096 to 67108864");
}
END_TEST

/* ---- CVE-2014-0144: header fields not validated --------------------------- */

/* CVE-2014-0144 class: header fields trusted as they come: cloop's block
 * size, an offsets array too large for the file, offsets that run
 * backwards; vpc's BAT against the file; vdi's block count against the
 * disk size; vmdk's embedded descriptor and grain directory entries.
 * Also in the interop tests: cloop block sizes 0x00011000 and 128 MiB and
 * offsets past the file (interop-bochs-cloop), the vpc BAT offset and BAT
 * entries past the file, the vdi block map offset and data offset, the vmdk
 * grain directory past the file and grain table entries past it
 * (bad_grain), qed's L1 offset and L1/L2 entries past the file
 * (bad_entries), vhdx's region table and metadata entries. */
START_TEST(cve_2014_0144_header_validation)
{
    /* Cloop (iotest 075): block sizes 0 and 64 MiB + 1; 2^29 - 1 blocks,
     * whose offsets need 4 GiB (no overflow: too large for the file);
     * block 0 ending (offsets[1]) at 0, before it starts. */
    const char *cloop = sample("simple-pattern.cloop");
    open_refused("cloop", patched_copy(cloop, "h.cloop", 128, 4, 0), -EINVAL,
                 "the block size (offset 128) is 0 bytes; expected a multiple of 512 up to "
                 "67108864");
    open_refused("cloop", patched_copy(cloop, "h.cloop", 128, 4, be(0x4000001, 4)), -EINVAL,
                 "the block size (offset 128) is 67108865 bytes; expected a multiple of 512 up "
                 "to 67108864");
    open_refused("cloop", patched_copy(cloop, "h.cloop", 132, 4, be(0x1fffffff, 4)), -EINVAL,
                 "536870911 blocks need an offsets table of 4294967296 bytes at offset 136; the "
                 "file holds 1690 bytes (vdisk reads at most 536870912 of it)");
    open_refused("cloop", patched_copy(cloop, "h.cloop", 136 + 8, 8, 0), -EINVAL,
                 "block 0 runs from offset 272 to 0: backwards, or past the end of the file "
                 "(1690 bytes)");
    /* VPC: a consistent header for a 64 TiB disk (2^25 blocks of 2 MiB)
     * whose BAT is far larger than the file. */
    const char *vhd = qemu_made("vpc", "q.vhd", "", "10M", "-c 'write -P 0x11 2M 4k'");
    uint64_t vhd_len = file_size(vhd);
    vhd_patched(vhd, "h.vhd", 40, 8, 1ull << 46);
    vhd_patched(scratch("h.vhd"), "h.vhd", 48, 8, 1ull << 46);
    open_refused("vpc", vhd_patched(scratch("h.vhd"), "h.vhd", 512 + 28, 4, 1u << 25), -EINVAL,
                 fmt("the BAT at offset 1536 (33554432 entries, 134217728 bytes) does not lie "
                     "in the file (%llu bytes)", (unsigned long long)vhd_len));
    /* VDI: no blocks for a disk of 10 MiB. */
    const char *vdi = qemu_made("vdi", "q.vdi", "", "10M", "-c 'write -P 0x11 1M 4k'");
    open_refused("vdi", patched_copy(vdi, "h.vdi", 384, 4, 0), -ENOTSUP,
                 "unsupported VDI image: the disk size at offset 368 is 10485760, expected at "
                 "most 0 (the room of its 0 blocks)");
    /* VMDK: the embedded descriptor's sector and size; a grain directory
     * entry naming a grain table past the end of the file. */
    const char *vmdk = qemu_made("vmdk", "q.vmdk", "", "10M", "-c 'write -P 0x11 1M 4k'");
    uint64_t vmdk_len = file_size(vmdk);
    open_refused("vmdk", patched_copy(vmdk, "h.vmdk", 36, 8, UINT64_MAX), -EINVAL,
                 fmt("the embedded descriptor (sector 1, 18446744073709551615 sectors) is not "
                     "inside the file (%llu bytes) or is larger than 1048576 bytes",
                     (unsigned long long)vmdk_len));
    open_refused("vmdk", patched_copy(vmdk, "h.vmdk", 28, 8, UINT64_MAX), -EINVAL,
                 fmt("the embedded descriptor (sector 18446744073709551615, 20 sectors) is not "
                     "inside the file (%llu bytes) or is larger than 1048576 bytes",
                     (unsigned long long)vmdk_len));
    uint8_t *gd = read_file_at(vmdk, 56, 8);
    uint64_t gd_sector = le64_load(gd);
    free(gd);
    const char *h = patched_copy(vmdk, "h.vmdk", gd_sector * 512, 4, 0xffffffffu);
    read_fails("vmdk", h, 0, fmt("extent '%s': grain directory entry 0 points at a grain table "
                                 "at sector 4294967295, which is not inside the file (%llu "
                                 "bytes)", h, (unsigned long long)vmdk_len));
}
END_TEST

/* ---- CVE-2014-0145: decompression buffer overruns -------------------------- */

/* CVE-2014-0145 class: a compressed chunk that inflates to more than the
 * room its header gives it (dmg's chunk buffer overflow; cloop's blocks
 * meet the same).  The read that meets it fails; nothing is written past
 * the buffer (the ASan build of this test watches).  The dmg chunk length,
 * sector count and terminator cases of the same fixes are refused at open
 * in interop-dmg (hostile_chunks_refused: chunks of 2^60 sectors, of
 * 64 MiB + 1 bytes, raw chunks too short; hostile_trailers_refused: the
 * property list and resource fork against the file). */
START_TEST(cve_2014_0145_inflate_overruns)
{
    /* QEMU's simple-dmg.dmg: chunk 4 (178 bytes of zlib at offset 0 of the
     * data fork, sectors 32 to 63) replaced by a zlib stream of 128 KiB of
     * zeroes, four times its 16 KiB. */
    const char *dmg = sample("simple-dmg.dmg");
    static uint8_t zeroes[128 << 10];
    uint8_t z[178];
    uLongf zn = sizeof z;
    ck_assert_int_eq(compress2(z, &zn, zeroes, sizeof zeroes, 9), Z_OK);
    patch_at(dmg, 0, z, zn);
    read_fails("dmg", dmg, 32 * 512, "chunk 4 (zlib, 178 bytes at offset 0) does not decompress "
                                     "to 32 sectors (zlib -5, 16384 bytes)");
    /* QEMU's simple-pattern.cloop with blocks of 512 bytes: block 0 (84
     * bytes) inflates to far more. */
    const char *cloop = sample("simple-pattern.cloop");
    read_fails("cloop", patched_copy(cloop, "h.cloop", 128, 4, be(512, 4)), 0,
               "block 0 (84 bytes at offset 272) does not inflate to 512 bytes (zlib -5, 512 "
               "bytes)");
}
END_TEST

/* ---- CVE-2014-0147: offsets read as signed numbers ------------------------- */

/* CVE-2014-0147 class: 32-bit offsets and indexes that a signed reading
 * turns negative: bochs's catalog entries and header size, parallels's BAT
 * entries.  The reads that meet them fail; the header size is refused. */
START_TEST(cve_2014_0147_signed_offsets)
{
    const char *bochs = sample("empty.bochs");
    open_refused("bochs", patched_copy(bochs, "h.bochs", 68, 4, 0xffffffffu), -EINVAL,
                 "the catalog (512 entries at offset 4294967295) does not lie in the file (2560 "
                 "bytes)");
    static const struct { uint32_t entry; const char *offset; } e[] = {
        {0x80000000u, "9895604652544"}, {0x7fffffffu, "9895604647936"}, {0, "2560"}};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        const char *h = patched_copy(bochs, "h.bochs", 512, 4, e[i].entry);
        read_fails("bochs", h, 0, fmt("catalog entry 0 names block %u (offset %s), which is not "
                                      "inside the file (2560 bytes)", e[i].entry, e[i].offset));
    }
    /* Parallels (both layouts): BAT entry 0 of 0xfffffff0, in sectors
     * (v1) or clusters (v2). */
    const char *v1 = sample("parallels-v1");
    read_fails("parallels", patched_copy(v1, "h.hdd", 64, 4, 0xfffffff0u), 0,
               "BAT entry 0 places cluster 0 at offset 2199023247360, which is not inside the "
               "file (327680 bytes)");
    const char *v2 = sample("parallels-v2");
    read_fails("parallels", patched_copy(v2, "h.hdd", 64, 4, 0xfffffff0u), 0,
               "BAT entry 0 places cluster 0 at offset 281474975662080, which is not inside the "
               "file (327680 bytes)");
}
END_TEST

/* ---- CVE-2014-0148: vhdx block and logical sector sizes --------------------- */

/* CVE-2014-0148 class: vhdx's block size and logical sector size, from
 * the metadata region, used unchecked (as divisors, and in the sizes of
 * the BAT and sector bitmaps): 0, 2^31 and 2^32 - 1.  Block sizes of 3 MiB
 * and 512 MiB and a logical sector size of 1000 are refused in
 * interop-vhdx (hostile_headers_messages).  The metadata of a qemu-img
 * image with 1 MiB blocks: the file parameters at 3 MiB + 64 KiB, the
 * logical sector size 32 bytes on. */
START_TEST(cve_2014_0148_vhdx_sizes)
{
    const char *vhdx = qemu_made("vhdx", "q.vhdx", "-o block_size=1M", "10M",
                                 "-c 'write -P 0x11 0 1M'");
    const uint64_t params = (3u << 20) + 65536, logical = params + 32;
    static const uint32_t bad[] = {0, 0x80000000u, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        open_refused("vhdx", patched_copy(vhdx, "h.vhdx", params, 4, bad[i]), -EINVAL,
                     fmt("the VHDX file parameters (offset 3211264) give block size %u; "
                         "expected a power of two from 1 MiB to 256 MiB", bad[i]));
        if (bad[i] != 0x80000000u)
            open_refused("vhdx", patched_copy(vhdx, "h.vhdx", logical, 4, bad[i]), -EINVAL,
                         fmt("the VHDX logical sector size (offset 3211296) is %u; expected "
                             "512 or 4096", bad[i]));
    }
}
END_TEST

/* ---- CVE-2015-5162: a tiny image claiming a huge disk ----------------------- */

/* CVE-2015-5162 class (qemu-img info and friends spending unbounded CPU or
 * memory on a small image claiming huge sizes; cve.c holds qcow2 to it):
 * QEMU's parallels-v2 (320 KiB, a BAT of 32 entries) claiming a disk of
 * 2^54 - 256 sectors, nearly 8 EiB, all past the BAT.  Map, check and a
 * read at the end take one step for the part past the BAT, not one per
 * cluster: vdisk stepped through it cluster by cluster (2^47 steps) until
 * the fix, and qemu-img 7.2 fails an assertion in map.  The same claim in
 * a v1 image (32 bits of sectors: 2 TiB). */
START_TEST(cve_2015_5162_huge_parallels)
{
    const char *v2 = sample("parallels-v2");
    patched_copy(v2, "huge.hdd", 36, 8, 0x003fffffffffff00ull);
    struct run *r = run("cd '%s' && timeout 60 '%s' map -f parallels --output=json huge.hdd",
                        scratch_dir(), vdisk_bin());
    ck_assert_msg(r->status == 0, "exit %d: %s", r->status, r->err);
    ck_assert_str_eq(r->out, "[{ \"start\": 0, \"length\": 262144, \"depth\": 0, \"present\": "
                             "true, \"zero\": false, \"data\": true, \"offset\": 65536},\n"
                             "{ \"start\": 262144, \"length\": 9223372036854382592, \"depth\": 0, "
                             "\"present\": false, \"zero\": true, \"data\": false}]\n");
    r = run("cd '%s' && timeout 60 '%s' check -f parallels huge.hdd", scratch_dir(), vdisk_bin());
    ck_assert_msg(r->status == 0, "exit %d: %s%s", r->status, r->out, r->err);
    r = run("cd '%s' && timeout 60 '%s' io -f parallels -r -c 'read -P 0 9223372036854640640 "
            "4096' -c 'read -P 0 262144 1M' huge.hdd", scratch_dir(), vdisk_bin());
    ck_assert_msg(r->status == 0, "exit %d: %s%s", r->status, r->out, r->err);
    const char *v1 = sample("parallels-v1");
    patched_copy(v1, "huge1.hdd", 36, 4, 0xffffffffu);
    r = run("cd '%s' && timeout 60 '%s' map -f parallels --output=json huge1.hdd", scratch_dir(),
            vdisk_bin());
    ck_assert_msg(r->status == 0, "exit %d: %s", r->status, r->err);
    ck_assert_str_eq(r->out, "[{ \"start\": 0, \"length\": 262144, \"depth\": 0, \"present\": "
                             "true, \"zero\": false, \"data\": true, \"offset\": 65536},\n"
                             "{ \"start\": 262144, \"length\": 2199022992896, \"depth\": 0, "
                             "\"present\": false, \"zero\": true, \"data\": false}]\n");
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    require_program("bunzip2");
    if (access(fmt("%s/complete", samples_dir()), F_OK) != 0)
        skip_test("QEMU's sample images are not in %s (scripts/fetch-qemu-samples.sh fetches "
                  "them)", samples_dir());
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("hostile-foreign-cve");
    TCase *tc = tcase_create("foreign-cve");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, cve_2014_0142_zero_divisors);
    tcase_add_test(tc, cve_2014_0143_integer_overflows);
    tcase_add_test(tc, cve_2014_0144_header_validation);
    tcase_add_test(tc, cve_2014_0145_inflate_overruns);
    tcase_add_test(tc, cve_2014_0147_signed_offsets);
    tcase_add_test(tc, cve_2014_0148_vhdx_sizes);
    tcase_add_test(tc, cve_2015_5162_huge_parallels);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
