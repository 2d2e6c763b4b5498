/* SPDX-License-Identifier: MIT */
/*
 * tests/iso/iso_hostile.c: damaged and hostile ISOs give clear errors,
 * never a crash or a hang: directory loops, extents beyond the image,
 * SUSP continuation areas that loop or run off the image, bad record
 * lengths, names longer than their records, SUSP entries with bad
 * lengths, a broken volume descriptor set and El Torito catalog.  A path table that disagrees with the tree is
 * only a warning: the image reads, through the CLI and the CD-ROM drive.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static uint8_t *img;
static size_t img_len;

static uint32_t le32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_both32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
        p[7 - k] = (uint8_t)(v >> (8 * k));
    }
}

static void load(void)
{
    require_program("xorriso");
    const char *t = scratch("tree"), *iso = scratch("base.iso");
    RUN_OK("rm -rf '%s' && mkdir -p '%s/adir/sub' && echo hello > '%s/hello.txt' && "
           "head -c 2048 /dev/zero > '%s/boot.img' && "
           "xorriso -as mkisofs -quiet -R -b boot.img -no-emul-boot -boot-load-size 4 "
           "-o '%s' '%s' 2>/dev/null", t, t, t, t, iso, t);
    free(img);
    img = read_file(iso, &img_len);
}

static uint8_t *root_dir(void)
{
    return img + (size_t)le32(img + 16 * 2048 + 156 + 2) * 2048;
}

/* The root's record whose ISO name starts with NAME. */
static uint8_t *record(const char *name)
{
    uint8_t *d = root_dir();
    for (size_t pos = 0; pos < 2048 && d[pos]; pos += d[pos])
        if (d[pos + 32] >= strlen(name) && !memcmp(d + pos + 33, name, strlen(name)))
            return d + pos;
    ck_abort_msg("no record %s", name);
    return NULL;
}

/* Opens the patched image; lists the whole tree; returns the first error. */
static int try_image(char *msg, size_t len)
{
    const char *path = scratch("bad.iso");
    write_file(path, img, img_len);
    vdisk_dev *dev;
    ck_assert_int_eq(vdisk_open(&dev, path, NULL), 0);
    vdisk_iso *iso;
    int r = vdisk_iso_open(&iso, dev, VDISK_ISO_NS_AUTO);
    vdisk_close(dev);
    if (r == 0) {
        struct vdisk_iso_entry *v;
        size_t n;
        r = vdisk_iso_list(iso, "/", &v, &n);
        if (r == 0) {
            for (size_t i = 0; i < n && r == 0; i++) {
                char p[2048];
                snprintf(p, sizeof p, "/%s", v[i].name);
                struct vdisk_iso_entry *e = malloc(sizeof *e);
                r = vdisk_iso_stat(iso, p, 1, e);
                free(e);
                if (r == 0 && v[i].type == VDISK_ISO_DIR) {
                    struct vdisk_iso_entry *w;
                    size_t m;
                    r = vdisk_iso_list(iso, p, &w, &m);
                    if (r == 0)
                        vdisk_iso_list_free(w);
                }
            }
            vdisk_iso_list_free(v);
        }
        vdisk_iso_close(iso);
    }
    snprintf(msg, len, "%s", r < 0 ? vdisk_get_error() : "");
    /* The CLI: one line, exit 1, never a crash. */
    struct run *c = run("%s iso ls -R -l '%s'", vdisk_bin(), path);
    ck_assert_msg(c->status == (r < 0 ? 1 : 0), "vdisk iso ls exit %d: %s", c->status, c->err);
    if (r < 0)
        ck_assert_msg(!strncmp(c->err, "vdisk: ", 7) && strchr(c->err, '\n') == c->err + strlen(c->err) - 1,
                      "not one line: %s", c->err);
    return r;
}

#define EXPECT(err, text)                                                              \
    do {                                                                               \
        char m_[1024];                                                                 \
        int r_ = try_image(m_, sizeof m_);                                             \
        ck_assert_msg(r_ == (err), "expected %d, got %d: %s", (err), r_, m_);          \
        ck_assert_msg(strstr(m_, text), "message lacks '%s': %s", text, m_);           \
    } while (0)

START_TEST(sound_image)
{
    load();
    char m[1024];
    ck_assert_msg(try_image(m, sizeof m) == 0, "%s", m);
}
END_TEST

START_TEST(directory_loop)
{
    load();
    uint8_t *r = record("ADIR");
    put_both32(r + 2, le32(img + 16 * 2048 + 156 + 2));
    EXPECT(-ELOOP, "directory loop");
}
END_TEST

START_TEST(extent_beyond_image)
{
    load();
    put_both32(record("HELLO") + 2, 0x00ffffff);
    EXPECT(-EINVAL, "lies beyond the end of the image");
}
END_TEST

START_TEST(record_too_short)
{
    load();
    record("HELLO")[0] = 20;
    EXPECT(-EINVAL, "expected 34 bytes or more inside its sector");
}
END_TEST

START_TEST(record_past_sector)
{
    load();
    uint8_t *d = root_dir();
    size_t last = 0;
    for (size_t pos = 0; pos < 2048 && d[pos]; pos += d[pos])
        last = pos;
    size_t pos = last + d[last];
    uint8_t copy[255];
    memcpy(copy, d + last, d[last]);
    memset(copy + d[last], 0, sizeof copy - d[last]);
    copy[0] = 255;
    memset(d + pos, 0, 2048 - pos);
    /* Padded copies of the last record up to the end of the sector; the
     * last one runs past it. */
    for (; pos + 255 <= 2048; pos += 255)
        memcpy(d + pos, copy, 255);
    d[pos] = 255;
    EXPECT(-EINVAL, "inside its sector");
}
END_TEST

START_TEST(name_longer_than_record)
{
    load();
    record("HELLO")[32] = 250;
    EXPECT(-EINVAL, "holds a name of 250 bytes");
}
END_TEST

/*
 * A path table that disagrees with the tree is a warning (issue 13 item
 * 9): the library opens the image with vdisk_iso_warning() set to
 * "FILE: TEXT; the directory tree is used", ls/cat/extract work and print
 * it on stderr, info shows it, and the CD-ROM drive serves the image.
 */
static void expect_warning(const char *text)
{
    const char *path = scratch("bad.iso"), *good = scratch("base.iso");
    char m[1024];
    ck_assert_msg(try_image(m, sizeof m) == 0, "%s", m);
    char *want = strdup(fmt("%s: %s; the directory tree is used", path, text));
    vdisk_dev *dev;
    vdisk_iso *iso;
    ck_assert_int_eq(vdisk_open(&dev, path, NULL), 0);
    ck_assert_msg(vdisk_iso_open(&iso, dev, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    ck_assert_ptr_nonnull(vdisk_iso_warning(iso));
    ck_assert_str_eq(vdisk_iso_warning(iso), want);
    vdisk_iso_close(iso);
    char *line = strdup(fmt("vdisk: warning: %s\n", want));
    /* ls, cat, extract: the same output as the sound image's, the warning on stderr. */
    struct run *r = run("%s iso ls -R -l '%s'", vdisk_bin(), good);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->err, "");
    char *listing = strdup(r->out);
    r = run("%s iso ls -R -l '%s'", vdisk_bin(), path);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, listing);
    ck_assert_str_eq(r->err, line);
    r = run("%s iso cat '%s' hello.txt", vdisk_bin(), path);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->out, "hello\n");
    ck_assert_str_eq(r->err, line);
    const char *x = scratch("pt-extract");
    RUN_OK("rm -rf '%s'", x);
    r = run("%s iso extract '%s' / '%s'", vdisk_bin(), path, x);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->err, line);
    RUN_OK("cmp '%s/hello.txt' '%s/tree/hello.txt' && test -d '%s/adir/sub' && "
           "cmp '%s/boot.img' '%s/tree/boot.img'", x, scratch_dir(), x, x, scratch_dir());
    /* info: in its output, not on stderr. */
    r = run("%s iso info '%s'", vdisk_bin(), path);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->err, "");
    ck_assert_msg(strstr(r->out, fmt("\nWarning: %s\n", want)), "%s", r->out);
    r = run("%s iso info --output=json '%s'", vdisk_bin(), path);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, fmt("\n    \"warnings\": [\"%s\"]\n}\n", want)), "%s", r->out);
    /* The CD-ROM drive serves it, and the file API reads through the drive. */
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, path, NULL) == 0, "%s", vdisk_get_error());
    uint8_t *buf = malloc(img_len);
    ck_assert_int_eq(vdisk_pread(cd, buf, img_len, 0), 0);
    ck_assert_int_eq(memcmp(buf, img, img_len), 0);
    free(buf);
    ck_assert_msg(vdisk_iso_open(&iso, cd, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    ck_assert_ptr_nonnull(vdisk_iso_warning(iso));
    char hello[16] = "";
    ck_assert_int_eq(vdisk_iso_read(iso, "/hello.txt", hello, sizeof hello, 0), 6);
    ck_assert_str_eq(hello, "hello\n");
    vdisk_iso_close(iso);
    vdisk_close(cd);
    free(line);
    free(listing);
    free(want);
}

START_TEST(sound_image_no_warning)
{
    load();
    vdisk_dev *dev;
    vdisk_iso *iso;
    ck_assert_int_eq(vdisk_open(&dev, scratch("base.iso"), NULL), 0);
    ck_assert_int_eq(vdisk_iso_open(&iso, dev, VDISK_ISO_NS_AUTO), 0);
    vdisk_close(dev);
    ck_assert_ptr_null(vdisk_iso_warning(iso));
    vdisk_iso_close(iso);
    struct run *r = run("%s iso info --output=json '%s'", vdisk_bin(), scratch("base.iso"));
    ck_assert_msg(strstr(r->out, "\n    \"warnings\": []\n}\n"), "%s", r->out);
}
END_TEST

/* The second record of the path table. */
static uint8_t *pt_record2(void)
{
    uint8_t *e = img + (size_t)le32(img + 16 * 2048 + 140) * 2048;
    return e + 8 + e[0] + (e[0] & 1);
}

START_TEST(path_table_disagrees)
{
    load();
    uint8_t *e = pt_record2();
    uint32_t block = (le32(e + 2) & ~0xffu) | 0xee;
    e[2] = 0xee;
    expect_warning(fmt("path table record 2 names a directory at block %u that is not in the "
                       "directory tree", block));
}
END_TEST

START_TEST(path_table_misses_directories)
{
    load();
    /* The table cut after its second record: 2 of the tree's 3 directories. */
    uint8_t *e = pt_record2();
    const uint8_t *pt = img + (size_t)le32(img + 16 * 2048 + 140) * 2048;
    uint32_t size = (uint32_t)(e + 8 + e[0] + (e[0] & 1) - pt);
    put_both32(img + 16 * 2048 + 132, size);
    expect_warning("the path table lists 2 directories, the tree holds 3");
}
END_TEST

START_TEST(path_table_bad_record)
{
    load();
    uint32_t size = le32(img + 16 * 2048 + 132);
    pt_record2()[0] = 0;
    expect_warning(fmt("path table record 2 at byte 10: name of 0 bytes, expected 1 to %u",
                       size - 18));
}
END_TEST

START_TEST(path_table_beyond_image)
{
    load();
    uint32_t size = le32(img + 16 * 2048 + 132);
    put_both32(img + 16 * 2048 + 140, 0x00ffffff);
    expect_warning(fmt("path table of %u bytes at block 16777215 lies beyond the end of the "
                       "image (%zu bytes)", size, img_len));
}
END_TEST

/* The first SUSP entry of the HELLO record, overwritten with a CE. */
static void put_ce(uint32_t block, uint32_t offset)
{
    uint8_t *r = record("HELLO");
    uint8_t *su = r + 33 + r[32] + !(r[32] & 1);
    unsigned l = su[2];
    ck_assert_uint_ge(l, 28);
    memset(su, 0, l);
    su[0] = 'C';
    su[1] = 'E';
    su[2] = (uint8_t)l;
    su[3] = 1;
    put_both32(su + 4, block);
    put_both32(su + 12, offset);
    put_both32(su + 20, l);
}

START_TEST(ce_loop)
{
    load();
    uint8_t *r = record("HELLO");
    size_t at = (size_t)(r + 33 + r[32] + !(r[32] & 1) - img);
    put_ce((uint32_t)(at / 2048), (uint32_t)(at % 2048));
    EXPECT(-ELOOP, "SUSP continuation areas loop");
}
END_TEST

START_TEST(ce_off_image)
{
    load();
    put_ce(0x00fffff0, 0);
    EXPECT(-EINVAL, "SUSP continuation area");
}
END_TEST

START_TEST(susp_bad_length)
{
    load();
    uint8_t *r = record("HELLO");
    uint8_t *su = r + 33 + r[32] + !(r[32] & 1);
    su[2] = 2;
    EXPECT(-EINVAL, "expected 4 to");
}
END_TEST

START_TEST(no_terminator)
{
    load();
    for (unsigned s = 16; s < 16 + 64; s++)
        if (img[s * 2048] == 255 && !memcmp(img + s * 2048 + 1, "CD001", 5))
            img[s * 2048] = 3;
    EXPECT(-EINVAL, "CD001");
}
END_TEST

START_TEST(not_an_iso)
{
    load();
    memset(img + 16 * 2048, 0, 2048);
    EXPECT(-ENODATA, "no ISO 9660 volume");
}
END_TEST

START_TEST(eltorito_checksum)
{
    load();
    for (unsigned s = 16; s < 32; s++)
        if (img[s * 2048] == 0 && !memcmp(img + s * 2048 + 7, "EL TORITO", 9)) {
            uint32_t cat = le32(img + s * 2048 + 0x47);
            img[(size_t)cat * 2048 + 4] ^= 0x5a;
        }
    EXPECT(-EINVAL, "checksum");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("iso-hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sound_image);
    tcase_add_test(tc, directory_loop);
    tcase_add_test(tc, extent_beyond_image);
    tcase_add_test(tc, record_too_short);
    tcase_add_test(tc, record_past_sector);
    tcase_add_test(tc, name_longer_than_record);
    tcase_add_test(tc, sound_image_no_warning);
    tcase_add_test(tc, path_table_disagrees);
    tcase_add_test(tc, path_table_misses_directories);
    tcase_add_test(tc, path_table_bad_record);
    tcase_add_test(tc, path_table_beyond_image);
    tcase_add_test(tc, ce_loop);
    tcase_add_test(tc, ce_off_image);
    tcase_add_test(tc, susp_bad_length);
    tcase_add_test(tc, no_terminator);
    tcase_add_test(tc, not_an_iso);
    tcase_add_test(tc, eltorito_checksum);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int r = run_suite(suite());
    free(img);
    return r;
}
