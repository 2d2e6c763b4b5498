/* SPDX-License-Identifier: MIT */
/*
 * tests/iso/iso_zisofs.c: zisofs files (Rock Ridge ZF entries) read back
 * uncompressed, and iso extract keeps Rock Ridge modes (issue 13 item 8).
 *   - ISOs made by xorriso's --zisofs filter (32k, 64k and 128k blocks), by
 *     mkzftree + xorriso -as mkisofs -z, and zisofs2 (xorriso -zisofs
 *     version_2=on, 128k and 1m blocks): vdisk iso cat and extract give the
 *     original files byte for byte, and bsdtar's extraction (version 1;
 *     bsdtar does not know zisofs2);
 *   - the extracted modes (executable, setuid, setgid, sticky, a read-only
 *     directory) equal the originals' and bsdtar -p's, by stat;
 *   - extract makes the FIFO, and the devices when run as root (see
 *     iso_interop.c for the warnings of a run as another user);
 *   - the file API: sizes, reads at any offset and length, zero blocks;
 *   - hostile zisofs headers, ZF entries and block pointers: exact errors,
 *     no crash, and the rest of the image still lists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static bool as_root(void)
{
    return geteuid() == 0;
}

/* The tree every image is made from (modes set explicitly, umask aside). */
static void build_tree(void)
{
    static bool done;
    if (done)
        return;
    const char *t = scratch("tree");
    RUN_OK("rm -rf '%s' && mkdir -p '%s/bin' '%s/tmp' '%s/ro' && cd '%s' && "
           "seq 1 60000 | sed 's/^/zisofs line /' > text.txt && "
           "head -c 131072 text.txt > exact && head -c 131073 text.txt > plus1 && "
           "head -c 1000000 /dev/zero > zeros && "
           "{ head -c 100000 /dev/zero; head -c 100000 text.txt; head -c 100000 /dev/zero; } > mixed && "
           "head -c 300000 /dev/urandom > rand.bin && printf 'short\\n' > small && : > empty && "
           "cp text.txt bin/tool && cp text.txt bin/suid && cp text.txt bin/sgid && "
           "cp exact bin/private && cp plus1 ro/readonly && ln -s text.txt link && mkfifo fifo && "
           "chmod 0644 text.txt exact plus1 zeros mixed rand.bin small empty && "
           "chmod 0755 bin/tool . bin && chmod 4755 bin/suid && chmod 2755 bin/sgid && "
           "chmod 0600 bin/private && chmod 0444 ro/readonly && chmod 1777 tmp && chmod 0644 fifo",
           t, t, t, t, t);
    if (as_root())
        RUN_OK("cd '%s' && mknod cdev c 1 3 && mknod bdev b 7 0 && chmod 0640 cdev bdev", t);
    else
        skip_note("the device files of the ISO tree (extract skips them): mknod needs root");
    /* Last: the read-only directory. */
    RUN_OK("chmod 0555 '%s/ro'", t);
    done = true;
}

struct image {
    const char *name;
    const char *xorriso_args; /* NULL: mkzftree + xorriso -as mkisofs -z */
    bool bsdtar;              /* bsdtar decodes it (zisofs version 1) */
};

static const struct image images[] = {
    {"x32.iso", "", true},
    {"x64.iso", "-zisofs block_size=64k", true},
    {"x128.iso", "-zisofs block_size=128k", true},
    {"mkz.iso", NULL, true},
    {"v2.iso", "-zisofs version_2=on", false},
    {"v2-1m.iso", "-zisofs version_2=on:block_size_v2=1m", false},
};
#define NIMAGES (int)(sizeof images / sizeof *images)

static const char *make_image(const struct image *im)
{
    require_program("xorriso");
    require_program("mkzftree");
    build_tree();
    const char *iso = scratch(im->name), *t = scratch("tree");
    if (access(iso, F_OK) == 0)
        return iso;
    if (im->xorriso_args) {
        RUN_OK("xorriso -outdev '%s' %s -map '%s' / -set_filter_r --zisofs / -- -commit "
               ">/dev/null 2>&1", iso, im->xorriso_args, t);
    } else {
        const char *z = scratch("tree.z");
        RUN_OK("rm -rf '%s' && mkzftree '%s' '%s' && "
               "xorriso -as mkisofs -quiet -R -z -o '%s' '%s'", z, t, z, iso, z);
    }
    return iso;
}

/* One "MODE PATH[ TARGET]" line per entry but special files, sorted. */
static char *modes(const char *dir)
{
    struct run *r = run("cd '%s' && find . -mindepth 1 ! -type p ! -type c ! -type b ! -type s "
                        "-printf '%%M %%p %%l\\n' | LC_ALL=C sort", dir);
    ck_assert_msg(r->status == 0, "find: %s", r->err);
    return strdup(r->out);
}

static void same_text(const char *a, const char *b, const char *what)
{
    ck_assert_msg(strcmp(a, b) == 0, "%s differ:\n--- vdisk\n%s--- other\n%s", what, a, b);
}

static const char *const compressed_files[] = {"text.txt", "exact", "plus1", "zeros", "mixed",
                                               "bin/tool", "ro/readonly"};

START_TEST(files_equal_original)
{
    const struct image *im = &images[_i];
    const char *iso = make_image(im), *t = scratch("tree");
    /* The image really holds compressed files. */
    vdisk_dev *dev;
    vdisk_iso *v;
    ck_assert_msg(vdisk_open(&dev, iso, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_iso_open(&v, dev, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    for (size_t k = 0; k < sizeof compressed_files / sizeof *compressed_files; k++) {
        struct vdisk_iso_entry e;
        char p[64];
        snprintf(p, sizeof p, "/%s", compressed_files[k]);
        ck_assert_msg(vdisk_iso_stat(v, p, 1, &e) == 0, "%s", vdisk_get_error());
        ck_assert_msg(e.compressed == 1, "%s: %s is not zisofs compressed", im->name, p);
        ck_assert_uint_lt(e.stored_size, e.size);
    }
    vdisk_iso_close(v);
    /* cat, file by file. */
    struct run *r = run("cd '%s' && find . -type f | LC_ALL=C sort", t);
    char *files = strdup(r->out), *save = NULL;
    int count = 0;
    for (char *f = strtok_r(files, "\n", &save); f; f = strtok_r(NULL, "\n", &save), count++)
        RUN_OK("%s iso cat '%s' '%s' | cmp - '%s/%s'", vdisk_bin(), iso, f + 2, t, f + 2);
    ck_assert_int_eq(count, 13);
    free(files);
    /* extract: the bytes, the modes, and the skipped special files. */
    const char *x = scratch(fmt("%s-vdisk", im->name));
    RUN_OK("chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", x, x);
    r = run("%s iso extract '%s' / '%s'", vdisk_bin(), iso, x);
    ck_assert_msg(r->status == 0, "vdisk iso extract: %s", r->err);
    /* The FIFO is made, and the devices (in the tree only when run as root). */
    ck_assert_str_eq(r->err, "");
    RUN_OK("test -p '%s/fifo'", x);
    if (as_root())
        RUN_OK("test \"$(stat -c '%%A %%t,%%T' '%s/cdev' '%s/bdev')\" = "
               "\"$(printf 'crw-r----- 1,3\\nbrw-r----- 7,0')\"", x, x);
    RUN_OK("diff -r --no-dereference -x fifo -x cdev -x bdev '%s' '%s'", t, x);
    char *want = modes(t), *got = modes(x);
    same_text(got, want, "modes of the extracted tree and the original");
    ck_assert_msg(strstr(got, "-rwsr-xr-x ./bin/suid") && strstr(got, "-rwxr-sr-x ./bin/sgid") &&
                  strstr(got, "drwxrwxrwt ./tmp") && strstr(got, "dr-xr-xr-x ./ro") &&
                  strstr(got, "-rw------- ./bin/private"), "%s", got);
    if (im->bsdtar && !have_program("bsdtar"))
        skip_note("files_equal_original %s: bsdtar's extraction: bsdtar is not installed",
                  im->name);
    if (im->bsdtar && have_program("bsdtar")) {
        const char *b = scratch(fmt("%s-bsdtar", im->name));
        RUN_OK("chmod -R u+w '%s' 2>/dev/null; rm -rf '%s' && mkdir '%s'", b, b, b);
        /* Without root bsdtar fails on nothing here (no devices in the tree). */
        RUN_OK("bsdtar -x -p -f '%s' -C '%s'", iso, b);
        RUN_OK("diff -r --no-dereference -x fifo -x cdev -x bdev '%s' '%s'", b, x);
        char *bm = modes(b);
        same_text(got, bm, "modes of vdisk's and bsdtar -p's extractions");
        free(bm);
        RUN_OK("chmod -R u+w '%s'", b);
    }
    free(want);
    free(got);
    RUN_OK("chmod -R u+w '%s'", x);
}
END_TEST

/* The file API: reads at any offset and length equal the original's bytes. */
START_TEST(reads_at_any_offset)
{
    const struct image *im = &images[_i];
    const char *iso = make_image(im), *t = scratch("tree");
    vdisk_dev *dev;
    vdisk_iso *v;
    ck_assert_msg(vdisk_open(&dev, iso, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_iso_open(&v, dev, VDISK_ISO_NS_ROCKRIDGE) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    static const char *const names[] = {"text.txt", "mixed", "zeros", "plus1", "exact"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t len;
        uint8_t *want = read_file(fmt("%s/%s", t, names[k]), &len);
        char p[64];
        snprintf(p, sizeof p, "/%s", names[k]);
        struct vdisk_iso_entry e;
        ck_assert_int_eq(vdisk_iso_stat(v, p, 1, &e), 0);
        ck_assert_uint_eq(e.size, len);
        uint8_t *got = malloc(len + 4096);
        const uint64_t cases[][2] = {
            {0, 1}, {32767, 2}, {32768, 32768}, {65535, 65538}, {100, 200000},
            {131071, 3}, {len - 5, 100}, {len, 10}, {len + 100, 10}, {0, len + 4096},
            {1, len}, {len / 2, 1},
        };
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            uint64_t off = cases[c][0], n = cases[c][1];
            uint64_t expect = off >= len ? 0 : len - off < n ? len - off : n;
            int64_t r = vdisk_iso_read(v, p, got, (size_t)n, off);
            ck_assert_msg(r == (int64_t)expect, "%s %s: read of %llu at %llu: %lld, expected "
                          "%llu: %s", im->name, p, (unsigned long long)n,
                          (unsigned long long)off, (long long)r, (unsigned long long)expect,
                          r < 0 ? vdisk_get_error() : "");
            assert_same_bytes(got, want + off, (size_t)expect, off, p);
        }
        free(got);
        free(want);
    }
    /* Joliet and plain ISO 9660 names carry no ZF entry: bytes as stored,
     * as bsdtar reads them. */
    vdisk_iso_close(v);
    ck_assert_msg(vdisk_open(&dev, iso, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_iso_open(&v, dev, VDISK_ISO_NS_ISO9660), 0);
    vdisk_close(dev);
    struct vdisk_iso_entry e;
    ck_assert_int_eq(vdisk_iso_stat(v, "/TEXT.TXT", 1, &e), 0);
    ck_assert_int_eq(e.compressed, 0);
    ck_assert_uint_eq(e.size, e.stored_size);
    uint8_t magic[8];
    ck_assert_int_eq(vdisk_iso_read(v, "/TEXT.TXT", magic, 8, 0), 8);
    ck_assert_msg(!memcmp(magic, im->xorriso_args && strstr(im->xorriso_args, "version_2")
                          ? "\xef\x22\x55\xa1\xbc\x1b\x95\xa0" : "\x37\xe4\x53\x96\xc9\xdb\xd6\x07",
                          8), "no zisofs magic in the stored bytes");
    vdisk_iso_close(v);
}
END_TEST

/* ---- Hostile zisofs files ------------------------------------------------------- */

static uint8_t *img;
static size_t img_len;
static uint32_t t_ext, r_ext;       /* the files' first blocks */
static uint64_t t_stored, r_stored; /* their stored sizes */
static uint8_t *t_zf;               /* t's ZF entry */
static uint8_t t_orig[100000];

static uint32_t le32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static void put_both32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
        p[7 - k] = (uint8_t)(v >> (8 * k));
    }
}

/* The ZF entry in the root directory record of the file at block EXT. */
static uint8_t *find_zf(uint32_t ext)
{
    uint8_t *d = img + (size_t)le32(img + 16 * 2048 + 156 + 2) * 2048;
    for (size_t pos = 0; pos < 2048 && d[pos]; pos += d[pos]) {
        if (le32(d + pos + 2) != ext)
            continue;
        for (size_t i = 33 + d[pos + 32]; i + 16 <= d[pos]; i++)
            if (d[pos + i] == 'Z' && d[pos + i + 1] == 'F' && d[pos + i + 2] == 16)
                return d + pos + i;
    }
    ck_abort_msg("no ZF entry for the file at block %u", ext);
    return NULL;
}

/*
 * "t": 100000 bytes of text in 4 blocks of 32 KiB; "r": 70000 random
 * bytes compressed anyway (mkzftree -f), 3 blocks.
 */
static void load(void)
{
    require_program("xorriso");
    require_program("mkzftree");
    const char *t = scratch("htree"), *z = scratch("htree.z"), *iso = scratch("hostile.iso");
    if (access(iso, F_OK) != 0)
        RUN_OK("rm -rf '%s' '%s' && mkdir '%s' && seq 1 20000 | sed 's/^/hostile /' | "
               "head -c 100000 > '%s/t' && head -c 70000 /dev/urandom > '%s/r' && "
               "mkzftree -f '%s' '%s' && xorriso -as mkisofs -quiet -R -z -o '%s' '%s' "
               "2>/dev/null", t, z, t, t, t, t, z, iso, z);
    free(img);
    img = read_file(iso, &img_len);
    size_t l;
    uint8_t *orig = read_file(fmt("%s/t", t), &l);
    ck_assert_uint_eq(l, sizeof t_orig);
    memcpy(t_orig, orig, l);
    free(orig);
    vdisk_dev *dev;
    vdisk_iso *v;
    ck_assert_int_eq(vdisk_open(&dev, iso, NULL), 0);
    ck_assert_int_eq(vdisk_iso_open(&v, dev, VDISK_ISO_NS_AUTO), 0);
    vdisk_close(dev);
    struct vdisk_iso_entry e;
    ck_assert_int_eq(vdisk_iso_stat(v, "/t", 1, &e), 0);
    ck_assert_int_eq(e.compressed, 1);
    t_ext = e.extent;
    t_stored = e.stored_size;
    ck_assert_int_eq(vdisk_iso_stat(v, "/r", 1, &e), 0);
    ck_assert_int_eq(e.compressed, 1);
    r_ext = e.extent;
    r_stored = e.stored_size;
    vdisk_iso_close(v);
    t_zf = find_zf(t_ext);
}

static uint8_t *tdata(void)
{
    return img + (size_t)t_ext * 2048;
}

/* t's block pointer I. */
static uint32_t tptr(unsigned i)
{
    return le32(tdata() + 16 + 4 * i);
}

static uint8_t got[200000];

/* Reads PATH of the patched image whole; the CLI's cat gives the same error. */
static int64_t try_read(const char *path, char *msg, size_t len)
{
    const char *bad = scratch("bad.iso");
    write_file(bad, img, img_len);
    vdisk_dev *dev;
    vdisk_iso *v;
    ck_assert_int_eq(vdisk_open(&dev, bad, NULL), 0);
    ck_assert_msg(vdisk_iso_open(&v, dev, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    int64_t r = vdisk_iso_read(v, path, got, sizeof got, 0);
    snprintf(msg, len, "%s", r < 0 ? vdisk_get_error() : "");
    vdisk_iso_close(v);
    struct run *c = run("%s iso cat '%s' '%s' > /dev/null", vdisk_bin(), bad, path);
    if (r < 0) {
        ck_assert_int_eq(c->status, 1);
        char want[1200];
        /* The CLI prints the library's message without the call's name. */
        const char *call = "vdisk_iso_read: ";
        snprintf(want, sizeof want, "vdisk: %s\n",
                 strncmp(msg, call, strlen(call)) == 0 ? msg + strlen(call) : msg);
        ck_assert_str_eq(c->err, want);
    } else {
        ck_assert_msg(c->status == 0, "%s", c->err);
    }
    /* The rest of the image still lists. */
    c = run("%s iso ls -R -l '%s'", vdisk_bin(), bad);
    ck_assert_msg(c->status == 0, "%s", c->err);
    return r;
}

static void expect_error(const char *path, int err, const char *text)
{
    char m[1024], want[1200];
    int64_t r = try_read(path, m, sizeof m);
    ck_assert_msg(r == err, "expected %d, got %lld: %s", err, (long long)r, m);
    snprintf(want, sizeof want, "vdisk_iso_read: %s: '%s': %s", scratch("bad.iso"), path, text);
    ck_assert_str_eq(m, want);
}

START_TEST(sound)
{
    load();
    char m[1024];
    ck_assert_int_eq(try_read("/t", m, sizeof m), 100000);
    ck_assert_int_eq(memcmp(got, t_orig, sizeof t_orig), 0);
    ck_assert_int_eq(try_read("/r", m, sizeof m), 70000);
}
END_TEST

START_TEST(bad_magic)
{
    load();
    tdata()[0] ^= 0xff;
    expect_error("/t", -EINVAL, "no zisofs header: expected the magic 37 E4 53 96 C9 DB D6 07, "
                 "found C8 E4 53 96 C9 DB D6 07");
}
END_TEST

START_TEST(reserved_bytes)
{
    load();
    tdata()[14] = 1;
    expect_error("/t", -EINVAL, "zisofs header: reserved bytes 01 00, expected 0");
}
END_TEST

START_TEST(block_size_out_of_range)
{
    load();
    t_zf[7] = 18;
    expect_error("/t", -EINVAL, "zisofs block size 2^18, expected 2^15 to 2^17");
    load();
    t_zf[7] = 14;
    expect_error("/t", -EINVAL, "zisofs block size 2^14, expected 2^15 to 2^17");
}
END_TEST

START_TEST(header_disagrees_with_zf)
{
    load();
    t_zf[7] = 16;
    expect_error("/t", -EINVAL, "the zisofs header (100000 bytes, header of 4 words, block size "
                 "2^15) disagrees with the ZF entry (100000 bytes, 4 words, 2^16)");
    load();
    put_both32(t_zf + 8, 99999);
    expect_error("/t", -EINVAL, "the zisofs header (100000 bytes, header of 4 words, block size "
                 "2^15) disagrees with the ZF entry (99999 bytes, 4 words, 2^15)");
    load();
    t_zf[6] = 3;
    expect_error("/t", -EINVAL, "zisofs header of 12 bytes, expected 16 or more");
}
END_TEST

START_TEST(unknown_algorithm)
{
    load();
    t_zf[4] = 'x';
    t_zf[5] = 'z';
    expect_error("/t", -ENOTSUP, "zisofs algorithm 'xz' is not supported, expected 'pz' (zlib)");
    load();
    t_zf[3] = 2;
    t_zf[4] = 'X';
    t_zf[5] = 'Z';
    expect_error("/t", -ENOTSUP, "zisofs2 algorithm 'XZ' is not supported, only 'PZ' (zlib)");
    load();
    t_zf[3] = 3;
    expect_error("/t", -ENOTSUP, "Rock Ridge ZF entry version 3 is not supported, expected 1 "
                 "(zisofs) or 2 (zisofs2)");
}
END_TEST

START_TEST(pointer_table_past_file)
{
    load();
    put_both32(t_zf + 8, 0x7fffffff);
    put_le32(tdata() + 8, 0x7fffffff);
    expect_error("/t", -EINVAL, fmt("the zisofs block pointer table (65537 pointers of 4 bytes "
                                    "at byte 16) runs past the file's %llu bytes",
                                    (unsigned long long)t_stored));
}
END_TEST

START_TEST(last_pointer_past_file)
{
    load();
    put_le32(tdata() + 16 + 4 * 4, (uint32_t)t_stored + 1);
    expect_error("/t", -EINVAL, fmt("the last zisofs block pointer is %llu, expected 36 to %llu "
                                    "(the pointer table's end to the file's size)",
                                    (unsigned long long)t_stored + 1,
                                    (unsigned long long)t_stored));
}
END_TEST

START_TEST(pointer_inside_table)
{
    load();
    put_le32(tdata() + 16, 0);
    expect_error("/t", -EINVAL, fmt("zisofs block pointer 0 is 0, expected 36 to %u (the pointer "
                                    "table's end to the last pointer)", tptr(4)));
    load();
    put_le32(tdata() + 16 + 4 * 2, tptr(4) + 1);
    expect_error("/t", -EINVAL, fmt("zisofs block pointer 2 is %u, expected 36 to %u (the "
                                    "pointer table's end to the last pointer)", tptr(4) + 1,
                                    tptr(4)));
}
END_TEST

START_TEST(pointers_not_monotonic)
{
    load();
    uint32_t p1 = tptr(1), p2 = tptr(2);
    put_le32(tdata() + 16 + 4, p2);
    put_le32(tdata() + 16 + 8, p1);
    expect_error("/t", -EINVAL, fmt("zisofs block pointer 2 is %u, before the previous one (%u)",
                                    p1, p2));
}
END_TEST

START_TEST(corrupt_block)
{
    load();
    uint32_t p0 = tptr(0), p1 = tptr(1);
    memset(tdata() + p0 + 2, 0xff, 16);
    char m[1024];
    ck_assert_int_eq(try_read("/t", m, sizeof m), -EINVAL);
    char want[256];
    snprintf(want, sizeof want, "'/t': zisofs block 0 (%u bytes at byte %u) does not inflate: ",
             p1 - p0, p0);
    ck_assert_msg(strstr(m, want), "%s", m);
}
END_TEST

START_TEST(truncated_block)
{
    load();
    uint32_t p1 = tptr(1);
    put_le32(tdata() + 16 + 8, p1 + 10);
    expect_error("/t", -EINVAL, fmt("zisofs block 1 (10 bytes at byte %u) does not inflate: the "
                                    "compressed data ends early", p1));
}
END_TEST

/* Block 1 replaced by a zlib stream of N bytes of 'a' (its pointers kept). */
static void put_stream(unsigned n)
{
    static uint8_t src[65536], dst[1024];
    memset(src, 'a', n);
    uLongf dlen = sizeof dst;
    ck_assert_int_eq(compress2(dst, &dlen, src, n, 9), Z_OK);
    ck_assert_uint_le(dlen, tptr(2) - tptr(1));
    memcpy(tdata() + tptr(1), dst, dlen);
}

START_TEST(block_inflates_too_much)
{
    load();
    put_stream(40000);
    expect_error("/t", -EINVAL, "zisofs block 1 inflates to more than 32768 bytes");
    /* Exactly one byte more. */
    load();
    put_stream(32769);
    expect_error("/t", -EINVAL, "zisofs block 1 inflates to more than 32768 bytes");
}
END_TEST

START_TEST(block_inflates_too_little)
{
    load();
    put_stream(100);
    expect_error("/t", -EINVAL, "zisofs block 1 inflates to 100 bytes, expected 32768");
    /* The last block (1696 bytes) must not grow either. */
    load();
    uint32_t p3 = tptr(3);
    static uint8_t src[4096], dst[256];
    memset(src, 'b', sizeof src);
    uLongf dlen = sizeof dst;
    ck_assert_int_eq(compress2(dst, &dlen, src, 1697, 9), Z_OK);
    memcpy(tdata() + p3, dst, dlen);
    expect_error("/t", -EINVAL, "zisofs block 3 inflates to more than 1696 bytes");
}
END_TEST

START_TEST(zero_length_block)
{
    load();
    /* Block 1 empty: zeros; block 2 then starts with block 1's stream. */
    put_le32(tdata() + 16 + 8, tptr(1));
    char m[1024];
    ck_assert_msg(try_read("/t", m, sizeof m) == 100000, "%s", m);
    static uint8_t want[100000];
    memcpy(want, t_orig, 32768);
    memset(want + 32768, 0, 32768);
    memcpy(want + 65536, t_orig + 32768, 32768);
    memcpy(want + 98304, t_orig + 98304, 1696);
    assert_same_bytes(got, want, sizeof want, 0, "t with block 1 empty");
}
END_TEST

START_TEST(block_larger_than_zlib_makes)
{
    load();
    uint8_t *r = img + (size_t)r_ext * 2048;
    uint32_t p0 = le32(r + 16), p2 = le32(r + 24);
    put_le32(r + 20, p2);
    expect_error("/r", -EINVAL, fmt("zisofs block 0 holds %u compressed bytes, more than zlib "
                                    "makes of 32768 (%lu)", p2 - p0,
                                    (unsigned long)compressBound(32768)));
    (void)r_stored;
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("iso-zisofs");
    TCase *tc = tcase_create("interop");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, files_equal_original, 0, NIMAGES);
    tcase_add_loop_test(tc, reads_at_any_offset, 0, NIMAGES);
    suite_add_tcase(s, tc);
    TCase *th = tcase_create("hostile");
    tcase_set_timeout(th, 300);
    tcase_add_test(th, sound);
    tcase_add_test(th, bad_magic);
    tcase_add_test(th, reserved_bytes);
    tcase_add_test(th, block_size_out_of_range);
    tcase_add_test(th, header_disagrees_with_zf);
    tcase_add_test(th, unknown_algorithm);
    tcase_add_test(th, pointer_table_past_file);
    tcase_add_test(th, last_pointer_past_file);
    tcase_add_test(th, pointer_inside_table);
    tcase_add_test(th, pointers_not_monotonic);
    tcase_add_test(th, corrupt_block);
    tcase_add_test(th, truncated_block);
    tcase_add_test(th, block_inflates_too_much);
    tcase_add_test(th, block_inflates_too_little);
    tcase_add_test(th, zero_length_block);
    tcase_add_test(th, block_larger_than_zlib_makes);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    int r = run_suite(suite());
    free(img);
    /* The read-only directories, removable again. */
    if (run("chmod -R u+w '%s'", scratch_dir())->status != 0)
        r = 1;
    return r;
}
