/* SPDX-License-Identifier: MIT */
/*
 * tests/iso/iso_hostile.c: damaged and hostile ISOs give clear errors,
 * never a crash or a hang: directory loops, extents beyond the image,
 * SUSP continuation areas that loop or run off the image, bad record
 * lengths, names longer than their records, SUSP entries with bad
 * lengths, a broken volume descriptor set and El Torito catalog, a
 * directory loop through a Rock Ridge CL entry, SL records written by
 * hand (compared with bsdtar).  A path table that disagrees with the tree is
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

/* The SUSP entry SIG of REC (its own System Use area), or NULL. */
static uint8_t *susp_entry(uint8_t *rec, const char *sig)
{
    size_t su = 33 + rec[32] + !(rec[32] & 1);
    for (size_t i = su; i + 4 <= rec[0] && rec[i + 2] >= 4; i += rec[i + 2])
        if (rec[i] == (uint8_t)sig[0] && rec[i + 1] == (uint8_t)sig[1])
            return rec + i;
    return NULL;
}

/*
 * A directory loop in the Rock Ridge namespace only (a CL entry naming the
 * root: the ISO 9660 tree walked at open has none): the CLI lists the whole
 * tree, says where the loop is, and exits 1.
 */
START_TEST(rr_cl_loop)
{
    load();
    uint8_t *rec = record("HELLO"), *px = susp_entry(rec, "PX");
    ck_assert_ptr_nonnull(px);
    unsigned l = px[2];
    memset(px, 0, l);
    px[0] = 'C';
    px[1] = 'L';
    px[2] = (uint8_t)l;
    px[3] = 1;
    put_both32(px + 4, le32(img + 16 * 2048 + 156 + 2));
    const char *path = scratch("cl-loop.iso");
    write_file(path, img, img_len);
    struct run *r = run("%s iso ls -R '%s'", vdisk_bin(), path);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, ".\nadir\nadir/sub\nboot.catalog\nboot.img\nhello.txt\n");
    ck_assert_str_eq(r->err, fmt("vdisk: hello.txt: directory loop (the directory at block %u is "
                                 "one of its parents); not listed again\n",
                                 le32(img + 16 * 2048 + 156 + 2)));
    /* Lookups through it are bounded (1024 levels). */
    char *deep = calloc(1, 1100 * 10 + 1);
    for (int i = 0; i < 1100; i++)
        strcat(deep, "hello.txt/");
    vdisk_dev *dev;
    vdisk_iso *iso;
    ck_assert_int_eq(vdisk_open(&dev, path, NULL), 0);
    ck_assert_int_eq(vdisk_iso_open(&iso, dev, VDISK_ISO_NS_AUTO), 0);
    vdisk_close(dev);
    struct vdisk_iso_entry *e = malloc(sizeof *e);
    ck_assert_int_eq(vdisk_iso_stat(iso, deep, 1, e), -ELOOP);
    ck_assert_msg(strstr(vdisk_get_error(), "more than 1024 directories deep"), "%s",
                  vdisk_get_error());
    deep[10 * 1000] = '\0';
    ck_assert_int_eq(vdisk_iso_stat(iso, deep, 1, e), 0);
    ck_assert_int_eq(e->type, VDISK_ISO_DIR);
    ck_assert_int_eq(vdisk_iso_stat(iso, "hello.txt/hello.txt/../adir/..", 1, e), 0);
    ck_assert_str_eq(e->name, ".");
    ck_assert_uint_eq(e->extent, le32(img + 16 * 2048 + 156 + 2));
    free(e);
    free(deep);
    vdisk_iso_close(iso);
}
END_TEST

/*
 * A directory reached by two paths (a CL entry naming "adir" too): walked
 * once, the second path named, exit 1; so a graph whose paths meet again
 * and again (2^N paths over N directories) costs N walks, not 2^N.
 */
START_TEST(rr_cl_shared)
{
    load();
    uint32_t adir = le32(record("ADIR") + 2);
    uint8_t *px = susp_entry(record("HELLO"), "PX");
    ck_assert_ptr_nonnull(px);
    unsigned l = px[2];
    memset(px, 0, l);
    px[0] = 'C';
    px[1] = 'L';
    px[2] = (uint8_t)l;
    px[3] = 1;
    put_both32(px + 4, adir);
    const char *path = scratch("cl-shared.iso"), *x = scratch("cl-shared");
    write_file(path, img, img_len);
    struct run *r = run("%s iso ls -R '%s'", vdisk_bin(), path);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, ".\nadir\nadir/sub\nboot.catalog\nboot.img\nhello.txt\n");
    ck_assert_str_eq(r->err, fmt("vdisk: hello.txt: the directory at block %u is listed "
                                 "already, under another path; not listed again\n", adir));
    RUN_OK("rm -rf '%s'", x);
    r = run("%s iso extract '%s' / '%s'", vdisk_bin(), path, x);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->err, fmt("vdisk: /hello.txt: the directory at block %u is extracted "
                                 "already, under another path (a directory loop?); not "
                                 "again\n", adir));
    RUN_OK("test -d '%s/adir/sub' && test -f '%s/boot.img'", x, x);
}
END_TEST

/*
 * Rock Ridge SL records written by hand over 13-byte targets (an SL entry
 * of 20 bytes): ROOT, CURRENT and PARENT components as mkisofs 2.01 wrote
 * them for empty components, a component continued into the next SL
 * entry, and a target split between SL entries after a whole component.
 * vdisk's targets equal bsdtar's but for the last, where bsdtar drops the
 * '/' (Linux, xorriso and isoinfo keep it).
 */
START_TEST(sl_components)
{
    require_program("xorriso");
    const char *t = scratch("sltree"), *iso = scratch("sl.iso");
    RUN_OK("rm -rf '%s' && mkdir '%s' && cd '%s' && for l in l1 l2 l3 l4; do "
           "ln -s 0123456789abc $l; done && xorriso -as mkisofs -quiet -R -o '%s' . 2>/dev/null",
           t, t, t, iso);
    free(img);
    img = read_file(iso, &img_len);
    static const uint8_t sl[4][20] = {
        /* [continue ""] CURRENT ROOT ROOT "file", and a byte no component fits in. */
        {'S', 'L', 20, 1, 0, 1, 0, 2, 0, 8, 0, 8, 0, 0, 4, 'f', 'i', 'l', 'e', 0},
        /* [continue ""] [continue ""] ROOT "tmp" ROOT PARENT */
        {'S', 'L', 20, 1, 0, 1, 0, 1, 0, 8, 0, 0, 3, 't', 'm', 'p', 8, 0, 4, 0},
        /* "abc" continued into the next SL entry: "def" */
        {'S', 'L', 10, 1, 1, 1, 3, 'a', 'b', 'c', 'S', 'L', 10, 1, 0, 0, 3, 'd', 'e', 'f'},
        /* "abc" whole, then the next SL entry: "def" */
        {'S', 'L', 10, 1, 1, 0, 3, 'a', 'b', 'c', 'S', 'L', 10, 1, 0, 0, 3, 'd', 'e', 'f'},
    };
    for (int k = 0; k < 4; k++) {
        uint8_t *e = susp_entry(record(fmt("L%d", k + 1)), "SL");
        ck_assert_msg(e && e[2] == 20, "L%d: SL entry of %u bytes", k + 1, e ? e[2] : 0);
        memcpy(e, sl[k], 20);
    }
    const char *bad = scratch("sl-hand.iso");
    write_file(bad, img, img_len);
    struct run *r = run("%s iso ls -l '%s' | sed 's/.* \\(l[0-9] -> \\)/\\1/'", vdisk_bin(), bad);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, "l1 -> .///file\nl2 -> /tmp//..\nl3 -> abcdef\nl4 -> abc/def\n");
    if (!have_program("bsdtar")) {
        skip_note("sl_components: bsdtar's reading: bsdtar is not installed");
        return;
    }
    r = run("bsdtar tvf '%s' | grep -- ' -> ' | sed 's/.* \\(l[0-9] -> \\)/\\1/' | LC_ALL=C sort",
            bad);
    ck_assert_str_eq(r->out, "l1 -> .///file\nl2 -> /tmp//..\nl3 -> abcdef\nl4 -> abcdef\n");
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
    tcase_add_test(tc, rr_cl_loop);
    tcase_add_test(tc, rr_cl_shared);
    tcase_add_test(tc, sl_components);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int r = run_suite(suite());
    free(img);
    return r;
}
