/* SPDX-License-Identifier: MIT */
/*
 * tests/iso/iso_hostile.c: damaged and hostile ISOs give clear errors,
 * never a crash or a hang: directory loops, extents beyond the image,
 * SUSP continuation areas that loop or run off the image, path tables
 * disagreeing with the tree, bad record lengths, names longer than their
 * records, SUSP entries with bad lengths, a broken volume descriptor set
 * and El Torito catalog.
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

START_TEST(path_table_disagrees)
{
    load();
    uint32_t pt = le32(img + 16 * 2048 + 140);
    uint8_t *e = img + (size_t)pt * 2048;
    e += 8 + e[0] + (e[0] & 1); /* the second record */
    e[2] = 0xee;
    EXPECT(-EINVAL, "not in the directory tree");
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
    tcase_add_test(tc, path_table_disagrees);
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
