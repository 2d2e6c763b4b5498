/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/qcow2_meta.c: qcow2 metadata that vdisk keeps but does not
 * maintain, against qemu-img / qemu-io 7.2 (issue 13, items 7, 9, 11):
 *   - persistent dirty bitmaps made by QEMU: check counts their clusters
 *     (exit 0, qemu-img's numbers), info shows them as qemu-img does,
 *     read-write opens keep them up to date (issue 23), and
 *     drop-bitmaps=on deletes them cleanly;
 *   - a snapshot table entry with an unusable L1 table: the active layer
 *     reads, check reports it as qemu-img does, -r all removes it;
 *   - map prints what qemu-img map prints, 2 MiB clusters included.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

/* The same command's standard output and exit status from both tools;
 * with ERR_TOO, standard error as well. */
static void same_output(bool err_too, const char *vdisk_args, const char *qemu_args)
{
    struct run *r = run("%s %s", vdisk_bin(), vdisk_args);
    char *v = strdup(r->out), *ve = strdup(r->err);
    int vs = r->status;
    r = run("%s", qemu_args);
    ck_assert_msg(strcmp(v, r->out) == 0, "vdisk %s:\n%s\n%s:\n%s", vdisk_args, v, qemu_args,
                  r->out);
    if (err_too)
        ck_assert_msg(strcmp(ve, r->err) == 0, "vdisk %s (stderr):\n%s\n%s (stderr):\n%s",
                      vdisk_args, ve, qemu_args, r->err);
    ck_assert_msg(vs == r->status, "vdisk %s exited %d, %s exited %d (%s)", vdisk_args, vs,
                  qemu_args, r->status, ve);
    free(v);
    free(ve);
}

static void patch(const char *path, uint64_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static uint64_t peek(const char *path, uint64_t off, size_t n)
{
    uint8_t b[8] = {0};
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, b, n, (off_t)off), (ssize_t)n);
    close(fd);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

/* The offset of the first header extension of TYPE (its type field). */
static uint64_t find_ext(const char *path, uint32_t type)
{
    uint64_t pos = peek(path, 100, 4);
    for (int n = 0; n < 64; n++) {
        uint32_t t = (uint32_t)peek(path, pos, 4), len = (uint32_t)peek(path, pos + 4, 4);
        if (t == type)
            return pos;
        ck_assert_msg(t != 0, "no header extension 0x%08x in %s", type, path);
        pos += 8 + (len + 7) / 8 * 8;
    }
    ck_abort_msg("too many header extensions in %s", path);
    return 0;
}

#define BITMAPS_EXT 0x23852875u

/* An image with three bitmaps made by QEMU: b0 enabled (auto) with data
 * written through qemu-io, b1 disabled with 128 KiB granularity, b2
 * disabled with b0 merged into it; and b3, enabled, left "in use" as by a
 * QEMU that died. */
static const char *bitmap_image(const char *name)
{
    const char *img = scratch(name);
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", img);
    RUN_OK("qemu-img bitmap --add '%s' b0", img);
    RUN_OK("qemu-img bitmap --add -g 128k --disable '%s' b1", img);
    RUN_OK("qemu-io -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 10M 64k' '%s'", img);
    RUN_OK("qemu-img bitmap --add --disable '%s' b2", img);
    RUN_OK("qemu-img bitmap --merge b0 '%s' b2", img);
    RUN_OK("qemu-img bitmap --add '%s' b3", img);
    return img;
}

/* Sets the in-use flag of the last bitmap (b3) in the directory. */
static void mark_last_in_use(const char *img)
{
    uint64_t ext = find_ext(img, BITMAPS_EXT);
    uint64_t dir = peek(img, ext + 8 + 16, 8), dsize = peek(img, ext + 8 + 8, 8);
    uint64_t pos = dir, last = dir;
    while (pos < dir + dsize) {
        last = pos;
        uint64_t len = 24 + peek(img, pos + 20, 4) + peek(img, pos + 18, 2);
        pos += (len + 7) & ~7ull;
    }
    uint8_t flags[4];
    be32_store(flags, (uint32_t)peek(img, last + 12, 4) | 1);
    patch(img, last + 12, flags, 4);
}

START_TEST(bitmaps_info_and_check)
{
    const char *img = bitmap_image("bm.qcow2");
    mark_last_in_use(img);
    same_output(false, fmt("info '%s'", img), fmt("qemu-img info '%s'", img));
    same_output(false, fmt("info --output=json '%s'", img),
                fmt("qemu-img info --output=json '%s'", img));
    struct run *r = run("qemu-img info '%s'", img);
    ck_assert_msg(strstr(r->out, "    bitmaps:\n        [0]:\n            flags:\n"
                                 "                [0]: auto\n            name: b0\n"
                                 "            granularity: 65536\n        [1]:\n"
                                 "            flags:\n            name: b1\n"
                                 "            granularity: 131072\n"),
                  "%s", r->out);
    ck_assert_msg(strstr(r->out, "                [0]: in-use\n                [1]: auto\n"
                                 "            name: b3\n"), "%s", r->out);
    /* No leaks: the directory, the tables and the data are referenced. */
    same_output(true, fmt("check '%s'", img), fmt("qemu-img check '%s'", img));
    same_output(true, fmt("check --output=json '%s'", img),
                fmt("qemu-img check --output=json '%s'", img));
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 0);
    /* The active layer reads as QEMU reads it. */
    RUN_OK("%s convert -O raw '%s' v.raw && qemu-img convert -O raw '%s' q.raw && cmp v.raw q.raw",
           vdisk_bin(), img, img);
}
END_TEST

START_TEST(bitmaps_kept_read_write)
{
    /* vdisk keeps the bitmaps up to date (issue 23): every verb that
     * writes leaves them consistent, clean for qemu-img check. */
    const char *img = bitmap_image("rw.qcow2");
    const char *verbs[] = {
        "io -c 'write -P 1 0 4k'",
        "resize %s 128M",
        "snapshot -c s1",
        "check -r all",
        "check -r leaks",
        "amend -o lazy_refcounts=on",
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        char args[256];
        if (strstr(verbs[i], "%s"))
            snprintf(args, sizeof args, "resize '%s' 128M", img);
        else
            snprintf(args, sizeof args, "%s '%s'", verbs[i], img);
        struct run *r = run("%s %s", vdisk_bin(), args);
        ck_assert_msg(r->status == 0, "vdisk %s exited %d: %s", args, r->status, r->err);
        r = run("qemu-img check '%s'", img);
        ck_assert_msg(r->status == 0 && !strstr(r->out, "leaked") && r->err[0] == 0,
                      "after vdisk %s: %s %s", args, r->out, r->err);
        r = run("qemu-img info --output=json '%s'", img);
        ck_assert_msg(!strstr(r->out, "in-use") && strstr(r->out, "\"name\": \"b3\""),
                      "after vdisk %s: %s", args, r->out);
    }
    RUN_OK("%s io -r -c 'read -P 1 0 4k' -c 'read -P 0x5a 4k 1020k' '%s'", vdisk_bin(), img);
    /* The library: open read-write, the enabled bitmaps in use meanwhile. */
    vdisk_dev *dev = NULL;
    ck_assert_msg(vdisk_open(&dev, img, NULL) == 0, "%s", vdisk_get_error());
    struct vdisk_info in = {.struct_size = sizeof in};
    ck_assert_int_eq(vdisk_get_info(dev, &in), 0);
    ck_assert_int_eq(in.nb_bitmaps, 4);
    ck_assert_str_eq(in.bitmaps[1].name, "b1");
    ck_assert_int_eq(in.bitmaps[1].granularity, 131072);
    ck_assert_int_eq(in.bitmaps[1].flags, 0);
    ck_assert_int_eq(in.bitmaps[0].flags, VDISK_BITMAP_AUTO | VDISK_BITMAP_IN_USE);
    struct run *r = run("qemu-img info --output=json -U '%s'", img);
    ck_assert_msg(strstr(r->out, "in-use"), "%s", r->out);
    vdisk_close(dev);
    r = run("qemu-img info --output=json '%s'", img);
    ck_assert_msg(!strstr(r->out, "in-use"), "%s", r->out);
}
END_TEST

START_TEST(bitmaps_dropped_on_request)
{
    const char *img = bitmap_image("drop.qcow2");
    vdisk_dev *dev = NULL;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "drop-bitmaps", "on"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    uint8_t buf[4096];
    memset(buf, 0x77, sizeof buf);
    ck_assert_msg(vdisk_pwrite(dev, buf, sizeof buf, 1 << 20) == 0, "%s", vdisk_get_error());
    vdisk_close(dev);
    /* Clean for qemu-img: no leaks, no bitmaps, no warning. */
    struct run *r = run("qemu-img check '%s'", img);
    ck_assert_msg(r->status == 0 && strstr(r->out, "No errors were found on the image.") &&
                  !strstr(r->out, "leaked") && r->err[0] == 0, "%d %s %s", r->status, r->out,
                  r->err);
    r = run("qemu-img info --output=json '%s'", img);
    ck_assert_msg(!strstr(r->out, "bitmaps") && r->err[0] == 0, "%s %s", r->out, r->err);
    ck_assert_int_eq(peek(img, 88, 8), 0); /* the autoclear bit went with them */
    RUN_OK("qemu-io -c 'read -P 0x5a 0 1M' -c 'read -P 0x77 1M 4k' -c 'read -P 0x6b 10M 64k' "
           "'%s'", img);
    same_output(true, fmt("check '%s'", img), fmt("qemu-img check '%s'", img));
}
END_TEST

START_TEST(bitmaps_without_autoclear_bit)
{
    /* A program without bitmap support wrote the image (it cleared the
     * autoclear bit): QEMU ignores the bitmaps, their clusters are leaks,
     * and a read-write open drops the extension. */
    const char *img = bitmap_image("stale.qcow2");
    uint8_t zero[8] = {0};
    patch(img, 88, zero, 8);
    same_output(false, fmt("info --output=json '%s'", img),
                fmt("qemu-img info --output=json '%s'", img));
    same_output(false, fmt("check --output=json '%s'", img),
                fmt("qemu-img check --output=json '%s'", img));
    struct run *r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, 3);
    RUN_OK("%s io -c 'write -P 2 0 4k' '%s'", vdisk_bin(), img);
    r = run("qemu-img info '%s'", img);
    ck_assert_msg(r->status == 0 && r->err[0] == 0 && !strstr(r->out, "bitmaps"), "%s %s",
                  r->out, r->err);
    RUN_OK("%s check -r leaks '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
}
END_TEST

/* ---- Item 9: one corrupt snapshot table entry ------------------------------ */

/* An image with snapshots s1 and s2 (qemu-img), whose second entry then
 * gets KIND of damage. */
static const char *snapshot_image(const char *name, const char *kind)
{
    const char *img = scratch(name);
    RUN_OK("qemu-img create -q -f qcow2 '%s' 16M", img);
    RUN_OK("qemu-io -c 'write -P 0x11 0 64k' '%s'", img);
    RUN_OK("qemu-img snapshot -c s1 '%s'", img);
    RUN_OK("qemu-io -c 'write -P 0x22 64k 64k' '%s'", img);
    RUN_OK("qemu-img snapshot -c s2 '%s'", img);
    RUN_OK("qemu-io -c 'write -P 0x33 128k 64k' '%s'", img);
    uint64_t st = peek(img, 64, 8);
    uint64_t len1 = 40 + peek(img, st + 36, 4) + peek(img, st + 12, 2) + peek(img, st + 14, 2);
    uint64_t e = st + ((len1 + 7) & ~7ull);
    uint8_t b[8];
    if (strcmp(kind, "unaligned") == 0) {
        be64_store(b, peek(img, e, 8) + 512);
        patch(img, e, b, 8);
    } else if (strcmp(kind, "eof") == 0) {
        be64_store(b, 1ull << 40);
        patch(img, e, b, 8);
    } else {
        be32_store(b, 0x10000000);
        patch(img, e + 8, b, 4);
    }
    return img;
}

START_TEST(bad_snapshot_entry)
{
    static const struct {
        const char *kind, *line;
    } cases[] = {
        {"unaligned", "ERROR snapshot 2 (s2) l1_offset=0xa0200: L1 table is not cluster aligned; "
                      "snapshot table entry corrupted\n"},
        {"eof", "ERROR: counting reference for region exceeding the end of the file by one "
                "cluster or more: offset 0x10000000000 size 0x8\n"},
        {"large", "ERROR snapshot 2 (s2) l1_size=0x10000000: L1 table is too large; snapshot "
                  "table entry corrupted\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *img = snapshot_image("snap.qcow2", cases[i].kind);
        /* info, convert and check as qemu-img: the active layer is fine. */
        same_output(true, "info --output=json snap.qcow2", "qemu-img info --output=json snap.qcow2");
        same_output(true, "info snap.qcow2", "qemu-img info snap.qcow2");
        RUN_OK("%s convert -O raw snap.qcow2 v.raw && qemu-img convert -O raw snap.qcow2 q.raw "
               "&& cmp v.raw q.raw", vdisk_bin());
        same_output(true, "check snap.qcow2", "qemu-img check snap.qcow2");
        same_output(true, "check --output=json snap.qcow2",
                    "qemu-img check --output=json snap.qcow2");
        struct run *r = run("%s check snap.qcow2", vdisk_bin());
        ck_assert_int_eq(r->status, 2);
        ck_assert_msg(strncmp(r->err, cases[i].line, strlen(cases[i].line)) == 0, "%s", r->err);
        /* The snapshot itself cannot be used. */
        r = run("%s snapshot -a s2 snap.qcow2", vdisk_bin());
        ck_assert_msg(r->status == 1 && strstr(r->err, "snapshot 2 (s2) is corrupt: its L1 table"),
                      "%d %s", r->status, r->err);
        RUN_OK("cmp q.raw v.raw");
        /* -r all removes the entry: clean for both tools, s1 intact. */
        r = run("%s check -r all snap.qcow2", vdisk_bin());
        ck_assert_msg(r->status == 0, "%d %s %s", r->status, r->out, r->err);
        ck_assert_msg(strstr(r->err, "Repairing snapshot 2 (s2): the snapshot table entry is "
                                     "removed (its L1 table "), "%s", r->err);
        ck_assert_msg(strstr(r->out, "No errors were found on the image."), "%s", r->out);
        RUN_OK("qemu-img check snap.qcow2");
        r = run("qemu-img snapshot -l snap.qcow2");
        ck_assert_msg(strstr(r->out, " s1 ") && !strstr(r->out, " s2 "), "%s", r->out);
        RUN_OK("qemu-img convert -O raw snap.qcow2 after.raw && cmp after.raw q.raw");
        RUN_OK("qemu-img convert -O raw -l snapshot.name=s1 snap.qcow2 s1.raw");
        RUN_OK("qemu-io -f raw -c 'read -P 0x11 0 64k' -c 'read -P 0 64k 64k' s1.raw");
        (void)img;
    }
}
END_TEST

/* ---- Snapshot entries without v3's extra data (iotest 261) --------------- */

/* The snapshot table of IMG as bytes (malloc'd, *LEN of them). */
static uint8_t *snapshot_table(const char *img, size_t *len)
{
    uint32_t n = (uint32_t)peek(img, 60, 4);
    uint64_t st = peek(img, 64, 8), pos = st;
    for (uint32_t i = 0; i < n; i++)
        pos += (40 + peek(img, pos + 36, 4) + peek(img, pos + 12, 2) + peek(img, pos + 14, 2) +
                7) & ~7ull;
    *len = (size_t)(pos - st);
    return read_file_at(img, st, *len);
}

/* A v2 image (qemu-img) with snapshots sn0, sn1, sn2 whose extra data is
 * then 0 bytes, 50 bytes (the known 24, then unknown data) and 8 bytes. */
static void v2_short_extras(const char *img)
{
    RUN_OK("qemu-img create -q -f qcow2 -o compat=0.10 '%s' 64M", img);
    RUN_OK("qemu-io -c 'write -P 0x11 0 64k' '%s'", img);
    for (int i = 0; i < 3; i++)
        RUN_OK("qemu-img snapshot -c sn%d '%s'", i, img);
    size_t len;
    uint8_t *t = snapshot_table(img, &len), *out = calloc(1, len + 256), *o = out;
    static const uint32_t extra[3] = {0, 50, 8};
    uint8_t *p = t;
    for (int i = 0; i < 3; i++) {
        uint32_t old = be32_load(p + 36), names = be16_load(p + 12) + be16_load(p + 14);
        memcpy(o, p, 40);
        be32_store(o + 36, extra[i]);
        memcpy(o + 40, p + 40, extra[i] < old ? extra[i] : old);
        if (extra[i] > 24)
            memcpy(o + 40 + 24, "very important data", 19);
        memcpy(o + 40 + extra[i], p + 40 + old, names);
        o += (40 + extra[i] + names + 7) & ~7u;
        p += (40 + old + names + 7) & ~7u;
    }
    patch(img, peek(img, 64, 8), out, (size_t)(o - out));
    free(t);
    free(out);
}

START_TEST(incomplete_snapshot_entries)
{
    /* An upgrade to v3 completes them (24 bytes: the VM state size, the
     * disk size, icount "none"), the unknown data kept: as qemu-img does. */
    const char *v = scratch("v2v.qcow2"), *q = scratch("v2q.qcow2");
    v2_short_extras(v);
    RUN_OK("cp '%s' '%s' && qemu-img check '%s'", v, q, v);
    RUN_OK("%s amend -o compat=1.1 '%s' && qemu-img amend -o compat=1.1 '%s'", vdisk_bin(), v, q);
    size_t vl, ql;
    uint8_t *vt = snapshot_table(v, &vl), *qt = snapshot_table(q, &ql);
    ck_assert_uint_eq(vl, ql);
    assert_same_bytes(vt, qt, vl, 0, "the upgraded snapshot table");
    ck_assert_uint_eq(be32_load(vt + 36), 24);
    free(vt);
    free(qt);
    RUN_OK("qemu-img check '%s' && %s check '%s'", v, vdisk_bin(), v);
    /* A v3 header over such entries: check reports them as qemu-img does,
     * -r all completes them. */
    v2_short_extras(v);
    static const uint8_t v3[4] = {0, 0, 0, 3}, hlen[4] = {0, 0, 0, 0x68}, order[4] = {0, 0, 0, 4};
    patch(v, 4, v3, 4);
    patch(v, 100, hlen, 4);
    patch(v, 96, order, 4);
    RUN_OK("cp '%s' '%s'", v, q);
    same_output(true, fmt("check '%s'", v), fmt("qemu-img check '%s'", v));
    struct run *r = run("%s check '%s'", vdisk_bin(), v);
    ck_assert_msg(r->status == 2 && strstr(r->err, "ERROR snapshot table entry 0 is incomplete\n"
                                                   "ERROR snapshot table entry 2 is incomplete\n"),
                  "%d %s", r->status, r->err);
    same_output(true, fmt("check -r all '%s'", v), fmt("qemu-img check -r all '%s'", q));
    vt = snapshot_table(v, &vl);
    qt = snapshot_table(q, &ql);
    ck_assert_uint_eq(vl, ql);
    assert_same_bytes(vt, qt, vl, 0, "the repaired snapshot table");
    free(vt);
    free(qt);
    RUN_OK("qemu-img check '%s' && %s check '%s'", v, vdisk_bin(), v);
    RUN_OK("qemu-img convert -O raw -l snapshot.name=sn1 '%s' s1.raw && "
           "qemu-io -f raw -c 'read -P 0x11 0 64k' s1.raw", v);
}
END_TEST

/* ---- Snapshot tables that the open refuses and check -r all cuts (261) --- */

/* Sets the 16-bit refcounts of clusters [FIRST, END) of IMG to 1 (in its
 * first refblock). */
static void refcounts_one(const char *img, uint64_t first, uint64_t end)
{
    uint64_t rb = peek(img, peek(img, 48, 8), 8);
    static const uint8_t one[2] = {0, 1};
    for (uint64_t c = first; c < end; c++)
        patch(img, rb + c * 2, one, 2);
}

/* IMG (made by qemu-img, so that both tools see the same clusters) and a
 * copy: check, then check -r all, print and exit the same from both, and
 * the repaired images check clean with both. */
static void same_repair(const char *img, bool all_verbs)
{
    const char *copy = scratch("repair-q.qcow2");
    RUN_OK("cp '%s' '%s'", img, copy);
    /* (vdisk as qemu-img, so that its messages start as qemu-img's; with
     * 65536 snapshots qemu-img takes seconds for each, ALL_VERBS false
     * keeps the two that matter) */
    static const char *const verbs[] = {"info", "check", "check -r all"};
    for (size_t i = all_verbs ? 0 : 1; i < 3; i++) {
        struct run *r = run("VDISK_PROG=qemu-img %s %s '%s' 2>&1", vdisk_bin(), verbs[i], img);
        char *v = strdup(r->out);
        int vs = r->status;
        r = run("qemu-img %s '%s' >q.out 2>&1; s=$?; sed 's|repair-q.qcow2|repair.qcow2|g' "
                "q.out; exit $s", verbs[i], copy);
        ck_assert_msg(strcmp(v, r->out) == 0 && vs == r->status,
                      "%s: vdisk (exit %d):\n%s\nqemu-img (exit %d):\n%s", verbs[i], vs, v,
                      r->status, r->out);
        free(v);
    }
    RUN_OK("qemu-img check '%s'", img);
    if (all_verbs)
        same_output(true, fmt("snapshot -l '%s'", img), fmt("qemu-img snapshot -l '%s'", copy));
}

START_TEST(snapshot_table_repair)
{
    /* An entry with 64 KiB of extra data (QEMU's limit: 1024 bytes). */
    const char *img = scratch("repair.qcow2");
    RUN_OK("rm -f '%s' && qemu-img create -q -f qcow2 '%s' 64M", img, img);
    for (int i = 0; i < 4; i++)
        RUN_OK("qemu-img snapshot -c sn%d '%s'", i, img);
    uint64_t pos = peek(img, 64, 8);
    for (int i = 0; i < 3; i++)
        pos += (40 + peek(img, pos + 36, 4) + peek(img, pos + 12, 2) + peek(img, pos + 14, 2) +
                7) & ~7ull;
    static const uint8_t big[4] = {0, 1, 0, 0};
    patch(img, pos + 36, big, 4);
    struct run *r = run("%s info '%s'", vdisk_bin(), img);
    ck_assert_str_eq(r->err, "vdisk: Too much extra metadata in snapshot table entry 3\n"
                             "You can force-remove this extra metadata with vdisk check -r all\n");
    same_repair(img, true);
    /* 131072 entries (QEMU's limit: 65536), the one after the limit with an
     * L1 table of its own, as iotest 261 makes them. */
    RUN_OK("rm -f '%s' && qemu-img create -q -f qcow2 -o compat=0.10 '%s' 64M", img, img);
    uint8_t b[8];
    be64_store(b, 1 << 20);
    patch(img, 64, b, 8);
    be32_store(b, 131072);
    patch(img, 60, b, 4);
    RUN_OK("truncate -s %d '%s'", (1 << 20) + 40 * 131072, img);
    be64_store(b, 0xe0000);
    patch(img, (1 << 20) + 40 * 65536, b, 8);
    be32_store(b, 1);
    patch(img, (1 << 20) + 40 * 65536 + 8, b, 4);
    be64_store(b, 0x80000000000f0000ull);
    patch(img, 0xe0000, b, 8);
    refcounts_one(img, 14, ((1 << 20) + 40 * 131072 + 65535) / 65536);
    same_repair(img, false);
    r = run("%s snapshot -l '%s' | wc -l", vdisk_bin(), img);
    ck_assert_str_eq(r->out, "65538\n"); /* (two lines of heading) */
}
END_TEST

/* ---- Item 11: map ---------------------------------------------------------- */

static void same_map(const char *img)
{
    same_output(true, fmt("map --output=json '%s'", img),
                fmt("qemu-img map --output=json '%s'", img));
    same_output(true, fmt("map '%s'", img), fmt("qemu-img map '%s'", img));
}

START_TEST(map_like_qemu)
{
    /* 2 MiB clusters, 4 KiB written: each by qemu-io and by vdisk io, in
     * images each tool created. */
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=2M big1.qcow2 64M");
    RUN_OK("qemu-io -c 'write 0 4k' -c 'write 6M 4k' big1.qcow2");
    same_map("big1.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=2M big2.qcow2 64M");
    RUN_OK("%s io -c 'write 0 4k' -c 'write 6M 4k' big2.qcow2", vdisk_bin());
    same_map("big2.qcow2");
    struct run *r = run("%s map --output=json big2.qcow2", vdisk_bin());
    const char *first = "[{ \"start\": 0, \"length\": 2097152, \"depth\": 0, \"present\": true, "
                        "\"zero\": false, \"data\": true, \"offset\": ";
    ck_assert_msg(strncmp(r->out, first, strlen(first)) == 0, "%s", r->out);
    RUN_OK("%s create -q -f qcow2 -o cluster_size=2M big3.qcow2 64M", vdisk_bin());
    RUN_OK("%s io -c 'write 0 4k' big3.qcow2", vdisk_bin());
    same_map("big3.qcow2");
    /* A sparse source converted into 2 MiB clusters. */
    RUN_OK("head -c 4096 /dev/urandom > src.raw && truncate -s 64M src.raw");
    RUN_OK("%s convert -O qcow2 -o cluster_size=2M src.raw big4.qcow2", vdisk_bin());
    same_map("big4.qcow2");
    /* Small clusters. */
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 4M");
    RUN_OK("qemu-io -c 'write 0 1k' -c 'write 5k 3k' -c 'write 1M 100k' small.qcow2");
    same_map("small.qcow2");
    /* Zero clusters, a discard, and a backing chain. */
    RUN_OK("qemu-img create -q -f qcow2 base.qcow2 8M");
    RUN_OK("qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 4M 128k' base.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2");
    RUN_OK("qemu-io -c 'write -z 64k 64k' -c 'write -P 3 2M 64k' mid.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 10M");
    RUN_OK("qemu-io -c 'write -P 4 512k 4k' -c 'discard 4M 64k' top.qcow2");
    same_map("top.qcow2");
    same_map("mid.qcow2");
    /* Compressed clusters: JSON, and the human format's refusal. */
    RUN_OK("qemu-img create -q -f qcow2 comp.qcow2 4M");
    RUN_OK("qemu-io -c 'write -c -P 5 0 64k' -c 'write -P 6 64k 64k' comp.qcow2");
    same_output(true, "map --output=json comp.qcow2", "qemu-img map --output=json comp.qcow2");
    r = run("%s map comp.qcow2", vdisk_bin());
    char *ours = strdup(r->out);
    int st = r->status;
    r = run("qemu-img map comp.qcow2");
    ck_assert_str_eq(ours, r->out);
    ck_assert_int_eq(st, r->status);
    free(ours);
    /* Preallocated metadata: there QEMU does look into the file's holes. */
    RUN_OK("qemu-img create -q -f qcow2 -o preallocation=metadata pre.qcow2 8M");
    RUN_OK("qemu-io -c 'write 1M 4k' pre.qcow2");
    same_map("pre.qcow2");
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    if (chdir(scratch_dir()) != 0)
        return 1;
    Suite *s = suite_create("interop-qcow2-meta");
    TCase *tc = tcase_create("meta");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bitmaps_info_and_check);
    tcase_add_test(tc, bitmaps_kept_read_write);
    tcase_add_test(tc, bitmaps_dropped_on_request);
    tcase_add_test(tc, bitmaps_without_autoclear_bit);
    tcase_add_test(tc, bad_snapshot_entry);
    tcase_add_test(tc, incomplete_snapshot_entries);
    tcase_add_test(tc, snapshot_table_repair);
    tcase_add_test(tc, map_like_qemu);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
