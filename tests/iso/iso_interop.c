/* SPDX-License-Identifier: MIT */
/*
 * tests/iso/iso_interop.c: vdisk reads the ISOs that xorriso and
 * genisoimage build from a tree with long and non-ASCII names, a
 * 13-level-deep directory (relocated to rr_moved by genisoimage),
 * symlinks, an empty file and an El Torito no-emulation boot image:
 *   - vdisk iso ls -R -l equals bsdtar tvf (Rock Ridge, and the Joliet view
 *     with --options iso9660:!rockridge) and xorriso -find / -exec lsdl;
 *   - every file's bytes equal bsdtar's extraction (cat and extract);
 *   - the El Torito boot image equals 7z's [BOOT]/Boot-NoEmul.img;
 *   - isoinfo -d's fields equal vdisk iso info's;
 *   - every block of the CD-ROM drive equals the ISO file's, writes fail
 *     with EROFS, an empty drive with ENOMEDIUM;
 *   - a multi-extent file the test crafts reads back whole.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static void require_tools(void)
{
    require_program("xorriso");
    require_program("genisoimage");
    require_program("isoinfo");
    require_program("bsdtar");
    require_program("7z");
}

static void assert_same(const char *a, const char *b, const char *what)
{
    if (strcmp(a, b) == 0)
        return;
    const char *x = a, *y = b;
    while (*x && *x == *y)
        x++, y++;
    while (x > a && x[-1] != '\n')
        x--, y--;
    ck_abort_msg("%s differ at:\n vdisk: %.300s\n other: %.300s", what, x, y);
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * One "MODE SIZE PATH[ -> TARGET]" line per entry, sorted.  KIND: 0 vdisk
 * ls -l (2 date fields), 1 bsdtar tvf (3 date fields), 2 xorriso lsdl (3
 * date fields, quoted paths from '/', rr_moved left out).  Directory sizes are left out
 * (xorriso shows 0), and xorriso's 'e' (boot catalog) is a file.
 */
static char *normalize(const char *text, int kind)
{
    char **lines = calloc(65536, sizeof *lines);
    size_t n = 0;
    char *copy = strdup(text), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l && n < 65536; l = strtok_r(NULL, "\n", &save)) {
        char mode[16];
        unsigned long long size;
        int pos = 0;
        if (kind == 0 && sscanf(l, "%15s %*s %*s %*s %llu %*s %*s %n", mode, &size, &pos) < 2)
            continue;
        if (kind != 0 && sscanf(l, "%15s %*s %*s %*s %llu %*s %*s %*s %n", mode, &size, &pos) < 2)
            continue;
        if (!pos)
            continue;
        if (mode[0] == 'e')
            mode[0] = '-';
        char path[8192];
        const char *p = l + pos;
        if (kind == 2) {
            /* '/path' [-> 'target'] */
            size_t o = 0;
            for (int part = 0; part < 2 && *p == '\''; part++) {
                p++;
                while (*p && *p != '\'' && o < sizeof path - 8)
                    path[o++] = *p++;
                if (*p == '\'')
                    p++;
                if (part == 0 && !strncmp(p, " -> ", 4)) {
                    memcpy(path + o, " -> ", 4);
                    o += 4;
                    p += 4;
                }
            }
            path[o] = '\0';
            if (!strcmp(path, "/"))
                strcpy(path, ".");
            else if (path[0] == '/')
                memmove(path, path + 1, strlen(path));
        } else {
            snprintf(path, sizeof path, "%s", p);
        }
        /* libisofs keeps genisoimage's emptied rr_moved, bsdtar (and vdisk) hide it. */
        if (kind == 2 && !strcmp(path, "rr_moved"))
            continue;
        if (mode[0] == 'd')
            size = 0;
        char *line = malloc(strlen(path) + 64);
        sprintf(line, "%s %llu %s", mode, size, path);
        lines[n++] = line;
    }
    qsort(lines, n, sizeof *lines, line_cmp);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *out = malloc(total), *o = out;
    *o = '\0';
    for (size_t i = 0; i < n; i++) {
        o += sprintf(o, "%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    free(copy);
    return out;
}

static char *vdisk_listing(const char *iso, const char *ns)
{
    struct run *r = run("%s iso ls -R -l --namespace=%s '%s'", vdisk_bin(), ns, iso);
    ck_assert_msg(r->status == 0, "vdisk iso ls %s: %s", iso, r->err);
    return normalize(r->out, 0);
}

static void build_tree(void)
{
    const char *t = scratch("tree");
    RUN_OK("rm -rf '%s' && mkdir -p '%s/a/b/c/d/e/f/g/h/i/j/k/l/m' '%s/boot' '%s/docs/sub'", t, t,
           t, t);
    RUN_OK("cd '%s' && echo deep > a/b/c/d/e/f/g/h/i/j/k/l/m/deep.txt && echo hello > hello.txt"
           " && : > empty && printf '%%0300d' 7 > 'this is a very long file name that goes on and"
           " on beyond sixty four characters of Joliet.txt' && echo 'grüße' > 'grüße-日本語.txt'"
           " && ln -s hello.txt link && ln -s a/b/c dirlink && ln -s ../hello.txt docs/up"
           " && head -c 100000 /dev/zero | tr '\\0' 'z' > docs/sub/big.txt"
           " && head -c 2048 /dev/zero | tr '\\0' 'B' > boot/boot.img"
           " && touch -d '2020-01-02 03:04:05' hello.txt", t);
}

static void build_isos(void)
{
    const char *t = scratch("tree");
    RUN_OK("xorriso -as mkisofs -quiet -R -J -V XORRISO_VOL -b boot/boot.img -no-emul-boot "
           "-boot-load-size 4 -o '%s' '%s' 2>/dev/null", scratch("x.iso"), t);
    RUN_OK("genisoimage -quiet -R -J -V GENISO_VOL -b boot/boot.img -no-emul-boot "
           "-boot-load-size 4 -o '%s' '%s'", scratch("g.iso"), t);
}

static void setup(void)
{
    static bool done;
    if (done)
        return;
    require_tools();
    build_tree();
    build_isos();
    done = true;
}

static const char *const isos[] = {"x.iso", "g.iso"};

START_TEST(listing_equals_bsdtar)
{
    setup();
    const char *iso = scratch(isos[_i]);
    struct run *r = run("bsdtar tvf '%s'", iso);
    ck_assert_msg(r->status == 0, "bsdtar: %s", r->err);
    char *b = normalize(r->out, 1);
    char *v = vdisk_listing(iso, "rockridge");
    assert_same(v, b, "vdisk iso ls -R -l and bsdtar tvf");
    free(b);
    free(v);
    /* The plain -R listing is bsdtar tf's, as a set. */
    r = run("bsdtar tf '%s' | LC_ALL=C sort", iso);
    char *bt = strdup(r->out);
    r = run("%s iso ls -R '%s' | LC_ALL=C sort", vdisk_bin(), iso);
    assert_same(r->out, bt, "vdisk iso ls -R and bsdtar tf");
    free(bt);
}
END_TEST

START_TEST(joliet_equals_bsdtar)
{
    setup();
    /* bsdtar refuses genisoimage's deep Joliet tree; xorriso's is compared. */
    const char *iso = scratch("x.iso");
    struct run *r = run("bsdtar --options 'iso9660:!rockridge' -tvf '%s'", iso);
    ck_assert_msg(r->status == 0, "bsdtar: %s", r->err);
    char *b = normalize(r->out, 1);
    char *v = vdisk_listing(iso, "joliet");
    assert_same(v, b, "vdisk iso ls -R -l --namespace=joliet and bsdtar (!rockridge)");
    free(b);
    free(v);
}
END_TEST

START_TEST(listing_equals_xorriso)
{
    setup();
    const char *iso = scratch(isos[_i]);
    struct run *r = run("xorriso -indev '%s' -find / -exec lsdl", iso);
    ck_assert_msg(r->status == 0, "xorriso: %s", r->err);
    char *x = normalize(r->out, 2);
    char *v = vdisk_listing(iso, "rockridge");
    assert_same(v, x, "vdisk iso ls -R -l and xorriso -find -exec lsdl");
    free(x);
    free(v);
}
END_TEST

START_TEST(bytes_equal_bsdtar)
{
    setup();
    const char *iso = scratch(isos[_i]);
    const char *bx = scratch(_i ? "g-bsdtar" : "x-bsdtar"), *vx = scratch(_i ? "g-vdisk" : "x-vdisk");
    RUN_OK("rm -rf '%s' '%s' && mkdir '%s' && bsdtar xf '%s' -C '%s'", bx, vx, bx, iso, bx);
    RUN_OK("%s iso extract '%s' / '%s'", vdisk_bin(), iso, vx);
    RUN_OK("diff -r --no-dereference '%s' '%s'", bx, vx);
    /* cat, file by file. */
    struct run *r = run("cd '%s' && find . -type f | LC_ALL=C sort", bx);
    char *files = strdup(r->out), *save = NULL;
    int count = 0;
    for (char *f = strtok_r(files, "\n", &save); f; f = strtok_r(NULL, "\n", &save)) {
        RUN_OK("%s iso cat '%s' '%s' | cmp - '%s/%s'", vdisk_bin(), iso, f + 2, bx, f + 2);
        count++;
    }
    ck_assert_int_ge(count, 8);
    free(files);
    /* A symlink is followed inside the image. */
    r = run("%s iso cat '%s' dirlink/d/e/f/g/h/i/j/k/l/m/deep.txt", vdisk_bin(), iso);
    ck_assert_str_eq(r->out, "deep\n");
    r = run("%s iso cat '%s' docs/up", vdisk_bin(), iso);
    ck_assert_str_eq(r->out, "hello\n");
}
END_TEST

START_TEST(eltorito_equals_7z)
{
    setup();
    const char *iso = scratch(isos[_i]);
    const char *d = scratch(_i ? "g-7z" : "x-7z");
    RUN_OK("rm -rf '%s' && mkdir '%s' && cd '%s' && 7z x -y '%s' '[BOOT]/Boot-NoEmul.img' "
           ">/dev/null", d, d, d, iso);
    char path[4096];
    snprintf(path, sizeof path, "%s/[BOOT]/Boot-NoEmul.img", d);
    size_t len;
    void *want = read_file(path, &len);
    vdisk_dev *dev, *boot;
    vdisk_iso *i;
    ck_assert_msg(vdisk_open(&dev, iso, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_msg(vdisk_iso_open(&i, dev, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    ck_assert_uint_eq(vdisk_iso_boot_count(i), 1);
    struct vdisk_iso_boot b = {.struct_size = sizeof b};
    ck_assert_int_eq(vdisk_iso_boot_get(i, 0, &b), 0);
    ck_assert_int_eq(b.bootable, 1);
    ck_assert_uint_eq(b.platform, VDISK_ELTORITO_PLATFORM_X86);
    ck_assert_uint_eq(b.media, VDISK_ELTORITO_NOEMUL);
    ck_assert_uint_eq(b.sector_count, 4);
    ck_assert_msg(vdisk_iso_open_boot(i, 0, &boot) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(vdisk_get_size(boot), len);
    void *got = malloc(len);
    ck_assert_int_eq(vdisk_pread(boot, got, len, 0), 0);
    ck_assert_msg(memcmp(got, want, len) == 0, "boot image differs from 7z's");
    ck_assert_int_eq(vdisk_pwrite(boot, got, 512, 0), -EROFS);
    free(got);
    free(want);
    vdisk_close(boot);
    vdisk_iso_close(i);
}
END_TEST

START_TEST(info_equals_isoinfo)
{
    setup();
    const char *iso = scratch(isos[_i]);
    struct run *r = run("isoinfo -d -i '%s'", iso);
    ck_assert_msg(r->status == 0, "isoinfo: %s", r->err);
    char *ii = strdup(r->out);
    r = run("%s iso info '%s'", vdisk_bin(), iso);
    ck_assert_msg(r->status == 0, "vdisk iso info: %s", r->err);
    static const char *const keys[] = {
        "CD-ROM is in", "System id:", "Volume id:", "Volume set id:", "Publisher id:",
        "Data preparer id:", "Application id:", "Copyright File id:", "Abstract File id:",
        "Bibliographic File id:", "Volume set size is:", "Volume set sequence number is:",
        "Logical block size is:", "Volume size is:", "Joliet with UCS level",
        "Rock Ridge signatures version"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        char *l = strstr(ii, keys[k]);
        ck_assert_msg(l != NULL, "isoinfo -d prints no '%s'", keys[k]);
        size_t n = strcspn(l, "\n");
        char line[1024];
        snprintf(line, sizeof line, "\n%.*s\n", (int)n, l);
        ck_assert_msg(strstr(r->out, line) || !strncmp(r->out, line + 1, n + 1),
                      "vdisk iso info lacks isoinfo's line '%.*s':\n%s", (int)n, l, r->out);
    }
    char want[64];
    char *cat = strstr(ii, "boot catalog is in sector ");
    ck_assert_ptr_nonnull(cat);
    snprintf(want, sizeof want, "El Torito boot catalog is in sector %d\n",
             atoi(cat + strlen("boot catalog is in sector ")));
    ck_assert_msg(strstr(r->out, want), "vdisk iso info lacks '%s'", want);
    free(ii);
    r = run("%s iso info --output=json '%s'", vdisk_bin(), iso);
    ck_assert_msg(r->status == 0 && strstr(r->out, "\"namespaces\": [\"rockridge\", \"joliet\", "
                                           "\"iso9660\"]"), "%s", r->out);
}
END_TEST

START_TEST(cdrom_blocks_equal_file)
{
    setup();
    const char *iso = scratch(isos[_i]);
    size_t len;
    uint8_t *file = read_file(iso, &len);
    vdisk_dev *cd;
    ck_assert_msg(vdisk_open_cdrom(&cd, iso, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(vdisk_get_block_size(cd), 2048);
    ck_assert_int_eq(vdisk_is_read_only(cd), 1);
    struct vdisk_cdrom_media m = {.struct_size = sizeof m};
    ck_assert_int_eq(vdisk_cdrom_get_media(cd, &m), 0);
    ck_assert_int_eq(m.loaded, 1);
    ck_assert_uint_eq(m.blocks, len / 2048);
    ck_assert_uint_eq(m.tracks, 1);
    ck_assert_str_eq(m.volume_id, _i ? "GENISO_VOL" : "XORRISO_VOL");
    ck_assert_uint_eq(vdisk_get_size(cd), len);
    uint8_t buf[2048];
    for (size_t b = 0; b < len / 2048; b++) {
        ck_assert_msg(vdisk_pread(cd, buf, 2048, b * 2048) == 0, "%s", vdisk_get_error());
        ck_assert_msg(memcmp(buf, file + b * 2048, 2048) == 0, "block %zu differs", b);
    }
    ck_assert_int_eq(vdisk_pread(cd, buf, 2048, len), -EIO);
    /* Read-only medium. */
    ck_assert_int_eq(vdisk_pwrite(cd, buf, 2048, 0), -EROFS);
    ck_assert_msg(strstr(vdisk_get_error(), "read-only medium"), "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_discard(cd, 0, 2048), -EROFS);
    ck_assert_int_eq(vdisk_write_zeroes(cd, 0, 2048, 0), -EROFS);
    ck_assert_int_eq(vdisk_flush(cd), 0);
    /* The file API through the drive. */
    vdisk_iso *i;
    ck_assert_msg(vdisk_iso_open(&i, cd, VDISK_ISO_NS_AUTO) == 0, "%s", vdisk_get_error());
    char target[64];
    ck_assert_int_eq(vdisk_iso_readlink(i, "/link", target, sizeof target), 9);
    ck_assert_str_eq(target, "hello.txt");
    struct vdisk_iso_entry e;
    ck_assert_int_eq(vdisk_iso_stat(i, "/hello.txt", 1, &e), 0);
    ck_assert_int_eq(e.mtime, 1577934245); /* 2020-01-02 03:04:05 UTC */
    ck_assert_int_eq(vdisk_iso_stat(i, "/nope", 1, &e), -ENOENT);
    ck_assert_int_eq(vdisk_iso_stat(i, "/hello.txt/x", 1, &e), -ENOTDIR);
    vdisk_iso_close(i);
    /* Eject: no medium. */
    ck_assert_int_eq(vdisk_cdrom_change_medium(cd, NULL), 0);
    ck_assert_int_eq(vdisk_cdrom_get_media(cd, &m), 0);
    ck_assert_int_eq(m.loaded, 0);
    ck_assert_uint_eq(m.blocks, 0);
    ck_assert_uint_eq(m.media_changes, 1);
    ck_assert_int_eq(vdisk_pread(cd, buf, 2048, 0), -ENOMEDIUM);
    ck_assert_msg(strstr(vdisk_get_error(), "no medium"), "%s", vdisk_get_error());
    /* Load the other ISO. */
    const char *other = scratch(isos[!_i]);
    ck_assert_int_eq(vdisk_cdrom_change_medium(cd, other), 0);
    ck_assert_int_eq(vdisk_cdrom_get_media(cd, &m), 0);
    ck_assert_int_eq(m.loaded, 1);
    ck_assert_uint_eq(m.media_changes, 2);
    ck_assert_str_eq(m.volume_id, _i ? "XORRISO_VOL" : "GENISO_VOL");
    size_t olen;
    uint8_t *ofile = read_file(other, &olen);
    ck_assert_uint_eq(vdisk_get_size(cd), olen);
    ck_assert_int_eq(vdisk_pread(cd, buf, 2048, 16 * 2048), 0);
    ck_assert_int_eq(memcmp(buf, ofile + 16 * 2048, 2048), 0);
    free(ofile);
    free(file);
    vdisk_close(cd);
    /* An empty drive from the start. */
    ck_assert_int_eq(vdisk_open_cdrom(&cd, NULL, NULL), 0);
    ck_assert_int_eq(vdisk_pread(cd, buf, 2048, 0), -ENOMEDIUM);
    vdisk_close(cd);
}
END_TEST

/* A file in two sections: the test rewrites one record of a plain ISO. */
START_TEST(multi_extent)
{
    require_program("xorriso");
    const char *t = scratch("mtree"), *iso = scratch("multi.iso");
    RUN_OK("rm -rf '%s' && mkdir '%s' && head -c 20000 /dev/urandom > '%s/big' && "
           "xorriso -as mkisofs -quiet -o '%s' '%s'", t, t, t, iso, t);
    size_t len;
    uint8_t *img = read_file(iso, &len);
    uint32_t root = img[16 * 2048 + 156 + 2] | img[16 * 2048 + 156 + 3] << 8 |
                    img[16 * 2048 + 156 + 4] << 16 | (uint32_t)img[16 * 2048 + 156 + 5] << 24;
    uint8_t *dir = img + (size_t)root * 2048;
    size_t pos = 0;
    while (pos < 2048 && dir[pos] && memcmp(dir + pos + 33, "BIG", 3) != 0)
        pos += dir[pos];
    ck_assert_msg(pos < 2048 && dir[pos], "BIG not found in the root directory");
    uint8_t rl = dir[pos];
    size_t end = pos;
    while (end < 2048 && dir[end])
        end += dir[end];
    ck_assert_uint_lt(end + rl, 2048);
    memmove(dir + pos + rl, dir + pos, end - pos);
    /* First section: 8192 bytes, flag 0x80; second: the rest, 4 blocks on. */
    uint8_t *a = dir + pos, *b = dir + pos + rl;
    uint32_t ext = a[2] | a[3] << 8 | a[4] << 16 | (uint32_t)a[5] << 24, rest = 20000 - 8192;
    for (int k = 0; k < 4; k++) {
        a[10 + k] = (uint8_t)(8192u >> (8 * k));
        a[17 - k] = (uint8_t)(8192u >> (8 * k));
        b[2 + k] = (uint8_t)((ext + 4) >> (8 * k));
        b[9 - k] = (uint8_t)((ext + 4) >> (8 * k));
        b[10 + k] = (uint8_t)(rest >> (8 * k));
        b[17 - k] = (uint8_t)(rest >> (8 * k));
    }
    a[25] |= 0x80;
    write_file(iso, img, len);
    RUN_OK("%s iso cat '%s' big | cmp - '%s/big'", vdisk_bin(), iso, t);
    struct run *r = run("%s iso ls --output=json '%s'", vdisk_bin(), iso);
    ck_assert_msg(strstr(r->out, "\"size\": 20000") && strstr(r->out, "\"extents\": 2"), "%s",
                  r->out);
    if (have_program("bsdtar"))
        RUN_OK("bsdtar xOf '%s' big | cmp - '%s/big'", iso, t);
    else
        skip_note("multi_extent: bsdtar's reading: bsdtar is not installed");
    free(img);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("iso-interop");
    TCase *tc = tcase_create("iso");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, listing_equals_bsdtar, 0, 2);
    tcase_add_test(tc, joliet_equals_bsdtar);
    tcase_add_loop_test(tc, listing_equals_xorriso, 0, 2);
    tcase_add_loop_test(tc, bytes_equal_bsdtar, 0, 2);
    tcase_add_loop_test(tc, eltorito_equals_7z, 0, 2);
    tcase_add_loop_test(tc, info_equals_isoinfo, 0, 2);
    tcase_add_loop_test(tc, cdrom_blocks_equal_file, 0, 2);
    tcase_add_test(tc, multi_extent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
