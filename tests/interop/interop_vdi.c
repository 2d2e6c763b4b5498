/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_vdi.c: VirtualBox VDI images against qemu-img 7.2
 * and qemu-io (VBoxManage is not in Debian): images made by qemu-img,
 * static and dynamic, of sizes on and off block boundaries, read
 * byte-identically by vdisk, with the same info, map and check output;
 * images made, written and converted by vdisk read identically by qemu
 * and pass qemu-img check; damaged and hostile images refused with exact
 * messages, and checked as qemu-img checks them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define IN_SCRATCH(cmd, ...) run("cd '%s' && " cmd, scratch_dir(), __VA_ARGS__)

static int open_vdi(vdisk_dev **devp, const char *path, bool rw);

static const char *const sizes[] = {"0", "1000", "512", "1M", "1536k", "5000000", "20M"};

/* Data written by qemu-io where the image has room: a run across a block
 * boundary, a whole block, a few bytes at the end. */
static void qemu_writes(const char *file, const char *size)
{
    uint64_t n;
    ck_assert_int_eq(vdisk_parse_size(size, 1, &n), 0);
    n = (n + 511) / 512 * 512;
    if (n >= (2u << 20))
        RUN_OK("cd '%s' && qemu-io -f vdi -c 'write -P 0x5a 1000000 100000' "
               "-c 'write -P 0xa5 1M 1M' '%s' >/dev/null", scratch_dir(), file);
    if (n >= 4096)
        RUN_OK("cd '%s' && qemu-io -f vdi -c 'write -P 0x77 %llu 512' '%s' >/dev/null",
               scratch_dir(), (unsigned long long)n - 512, file);
}

START_TEST(qemu_images_read_identically)
{
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int st = 0; st < 2; st++) {
            RUN_OK("cd '%s' && rm -f q.vdi && qemu-img create -q -f vdi -o static=%s q.vdi %s",
                   scratch_dir(), st ? "on" : "off", sizes[i]);
            same_as_qemu_img("info", "q.vdi");
            same_as_qemu_img("info", "--output=json q.vdi");
            same_as_qemu_img("check", "q.vdi");
            qemu_writes("q.vdi", sizes[i]);
            same_as_qemu_img("info", "--output=json q.vdi");
            same_as_qemu_img("map", "--output=json q.vdi");
            same_as_qemu_img("map", "q.vdi");
            same_as_qemu_img("check", "--output=json q.vdi");
            same_raw_as_qemu_img("q.vdi");
        }
    }
    /* A large sparse disk: its header and map only. */
    RUN_OK("cd '%s' && rm -f q.vdi && qemu-img create -q -f vdi q.vdi 3T", scratch_dir());
    same_as_qemu_img("info", "q.vdi");
    same_as_qemu_img("info", "--output=json q.vdi");
    same_as_qemu_img("check", "q.vdi");
}
END_TEST

START_TEST(vdisk_images_read_by_qemu)
{
    static const char *const aligned[] = {"0", "512", "1M", "1536k", "20M"};
    for (size_t i = 0; i < sizeof aligned / sizeof aligned[0]; i++) {
        for (int st = 0; st < 2; st++) {
            /* The same Formatting line, and images that describe alike. */
            char args[128];
            snprintf(args, sizeof args, "-f vdi %sv.vdi %s", st ? "-o static=on " : "",
                     aligned[i]);
            IN_SCRATCH("rm -f v.vdi%s", "");
            same_as_qemu_img("create", args);
            RUN_OK("cd '%s' && qemu-img check v.vdi", scratch_dir());
            same_as_qemu_img("info", "--output=json v.vdi");
            same_as_qemu_img("map", "--output=json v.vdi");
            uint64_t n;
            ck_assert_int_eq(vdisk_parse_size(aligned[i], 1, &n), 0);
            /* The same writes through vdisk io into it and through qemu-io
             * into a raw image: qemu-img compare calls them identical. */
            RUN_OK("cd '%s' && rm -f m.raw && qemu-img create -q -f raw m.raw %s", scratch_dir(),
                   aligned[i]);
            if (n >= (2u << 20)) {
                const char *cmds = "-c 'write -P 0x31 1000 70000' -c 'write -P 0x32 2M 1M' "
                                   "-c 'write -P 0x33 1500000 1000000' -c 'write -z 2600k 4k' "
                                   "-c 'discard 0 512' -c 'flush'";
                RUN_OK("cd '%s' && '%s' io %s v.vdi", scratch_dir(), vdisk_bin(), cmds);
                RUN_OK("cd '%s' && qemu-io -f raw %s m.raw", scratch_dir(), cmds);
            }
            if (n >= 4096) {
                RUN_OK("cd '%s' && '%s' io -c 'write -P 0x34 %llu 512' v.vdi", scratch_dir(),
                       vdisk_bin(), (unsigned long long)n - 512);
                RUN_OK("cd '%s' && qemu-io -f raw -c 'write -P 0x34 %llu 512' m.raw",
                       scratch_dir(), (unsigned long long)n - 512);
            }
            RUN_OK("cd '%s' && qemu-img check v.vdi", scratch_dir());
            RUN_OK("cd '%s' && qemu-img compare -f vdi -F raw v.vdi m.raw", scratch_dir());
            if (n >= (2u << 20))
                RUN_OK("cd '%s' && qemu-io -f vdi -r -c 'read -P 0x31 1000 70000' "
                       "-c 'read -P 0x33 1500000 1000000' -c 'read -P 0 2600k 4k' v.vdi",
                       scratch_dir());
            same_as_qemu_img("info", "--output=json v.vdi");
            same_as_qemu_img("map", "--output=json v.vdi");
            same_raw_as_qemu_img("v.vdi");
        }
    }
}
END_TEST

/* qemu-img map's JSON as one letter per 1 MiB block (d: data, z: zeroes,
 * -: not present): two maps that differ only in where the blocks lie in
 * the file (and so in which neighbours qemu-img merges) are the same. */
static char *map_blocks(const char *json)
{
    size_t cap = 64, n = 0;
    char *out = calloc(1, cap);
    for (const char *p = strstr(json, "{ \"start\""); p; p = strstr(p + 1, "{ \"start\"")) {
        unsigned long long start, len;
        ck_assert_int_eq(sscanf(p, "{ \"start\": %llu, \"length\": %llu", &start, &len), 2);
        const char *end = strchr(p, '}');
        ck_assert_ptr_nonnull(end);
        char *ext = strndup(p, (size_t)(end - p)), kind = '-';
        if (strstr(ext, "\"data\": true"))
            kind = 'd';
        else if (strstr(ext, "\"zero\": true"))
            kind = 'z';
        free(ext);
        for (unsigned long long b = 0; b < (len + (1u << 20) - 1) >> 20; b++) {
            if (n + 2 > cap)
                out = realloc(out, cap *= 2);
            out[n++] = kind;
        }
        (void)start;
    }
    out[n] = 0;
    return out;
}

START_TEST(convert_to_vdi)
{
    RUN_OK("cd '%s' && rm -f src.qcow2 && qemu-img create -q -f qcow2 src.qcow2 7340000 && "
           "qemu-io -c 'write -P 0x61 100k 300k' -c 'write -P 0x62 3M 2M' "
           "-c 'write -P 0x63 7339008 512' src.qcow2 >/dev/null", scratch_dir());
    for (int st = 0; st < 2; st++) {
        RUN_OK("cd '%s' && rm -f c.vdi q.vdi && '%s' convert -O vdi %s src.qcow2 c.vdi && "
               "qemu-img convert -O vdi %s src.qcow2 q.vdi", scratch_dir(), vdisk_bin(),
               st ? "-o static=on" : "", st ? "-o static=on" : "");
        RUN_OK("cd '%s' && qemu-img compare src.qcow2 c.vdi", scratch_dir());
        RUN_OK("cd '%s' && qemu-img check c.vdi", scratch_dir());
        /* The same blocks allocated as qemu-img's conversion (where each
         * lies in the file depends on which write allocates first: vdisk
         * converts with requests in flight, as qemu-img -W does). */
        struct run *r = IN_SCRATCH("qemu-img map --output=json c.vdi%s", "");
        char *mine = map_blocks(r->out);
        r = IN_SCRATCH("qemu-img map --output=json q.vdi%s", "");
        char *theirs = map_blocks(r->out);
        ck_assert_str_eq(mine, theirs);
        free(mine);
        free(theirs);
        r = IN_SCRATCH("stat -c %%s c.vdi q.vdi%s", "");
        ck_assert_int_eq(r->status, 0);
        char *nl = strchr(r->out, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_msg(strncmp(r->out, nl + 1, (size_t)(nl - r->out)) == 0, "sizes: %s", r->out);
        /* And back to qcow2: the same as qemu-img's conversion. */
        RUN_OK("cd '%s' && rm -f v.qcow2 q.qcow2 && '%s' convert -O qcow2 q.vdi v.qcow2 && "
               "qemu-img convert -O qcow2 q.vdi q.qcow2 && qemu-img compare v.qcow2 q.qcow2 && "
               "qemu-img compare src.qcow2 v.qcow2 && qemu-img check v.qcow2", scratch_dir(),
               vdisk_bin());
    }
}
END_TEST

/* Random reads, writes and zeroes, several in flight, through the library
 * on a dynamic image (allocating as it goes) and a static one, against a
 * model; then qemu-img checks the image and reads the model's bytes. */
START_TEST(random_io_through_library)
{
    static const uint64_t size = 9u << 20 | 4096;
    for (int st = 0; st < 2; st++) {
        const char *img = scratch("r.vdi");
        unlink(img);
        vdisk_options *o;
        ck_assert_int_eq(vdisk_options_new(&o), 0);
        if (st)
            ck_assert_int_eq(vdisk_options_set(o, "static", "on"), 0);
        ck_assert_int_eq(vdisk_create(img, "vdi", size, o), 0);
        vdisk_options_free(o);
        vdisk_dev *d;
        ck_assert_int_eq(open_vdi(&d, img, true), 0);
        uint8_t *model = calloc(1, size);
        random_io_against_model(d, model, size, 300, 0x766469 + (uint64_t)st);
        vdisk_close(d);
        RUN_OK("qemu-img check '%s'", img);
        const char *raw = scratch("r.raw");
        write_file(raw, model, size);
        RUN_OK("qemu-img compare -f vdi -F raw '%s' '%s'", img, raw);
        free(model);
    }
}
END_TEST

/* ---- Damaged and hostile images ------------------------------------------ */

/* A dynamic image of 10 blocks by qemu-img, blocks 1 and 5 allocated. */
static const char *good_image(void)
{
    const char *f = scratch("g.vdi");
    RUN_OK("rm -f '%s' && qemu-img create -q -f vdi '%s' 10M && qemu-io -f vdi "
           "-c 'write -P 0x11 1536k 4k' -c 'write -P 0x22 5M 1M' '%s' >/dev/null", f, f, f);
    return f;
}

/* g.vdi with the LEN bytes at OFF replaced by V (little-endian), as h.vdi. */
static const char *patched(uint64_t off, unsigned len, uint64_t v)
{
    return patched_copy(good_image(), "h.vdi", off, len, v);
}

static int open_vdi(vdisk_dev **devp, const char *path, bool rw)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "vdi"), 0);
    if (!rw)
        ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    int r = vdisk_open(devp, path, o);
    vdisk_options_free(o);
    return r;
}

/* Opening PATH (read-only, then read-write) fails with ERR and MSG (after
 * "vdisk_open: PATH: "). */
static void refused(const char *path, int err, const char *msg)
{
    for (int rw = 0; rw < 2; rw++) {
        vdisk_dev *d = NULL;
        int r = open_vdi(&d, path, rw);
        ck_assert_msg(r == err, "%s: open gave %d, expected %d (%s)", msg, r, err,
                      r ? vdisk_get_error() : "opened");
        ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", path, msg));
    }
}

START_TEST(hostile_headers_refused)
{
    /* Field offsets: signature 64, version 68, type 76, map 340, data 344,
     * sector size 360, disk size 368, block size 376, blocks 384,
     * allocated 388, link UUID 424, parent UUID 440. */
    const char *h = patched(64, 4, 0x12345678);
    refused(h, -EINVAL, "not a VDI image: the signature at offset 64 is 0x12345678, expected "
            "0xbeda107f");
    /* Probed, it is no VDI image at all. */
    vdisk_dev *d;
    ck_assert_int_eq(vdisk_open(&d, h, NULL), 0);
    ck_assert_str_eq(vdisk_get_format(d), "raw");
    vdisk_close(d);
    refused(patched(68, 4, 0x00010000), -ENOTSUP, "unsupported VDI image: the version at "
            "offset 68 is 1.0, expected 1.1");
    refused(patched(76, 4, 4), -ENOTSUP, "unsupported VDI image: the image type at offset 76 "
            "is 4, expected 1 (dynamic) or 2 (static)");
    refused(patched(360, 4, 4096), -ENOTSUP, "unsupported VDI image: the sector size at offset "
            "360 is 4096, expected 512");
    refused(patched(376, 4, 0), -ENOTSUP, "unsupported VDI image: the block size at offset 376 "
            "is 0, expected 1048576");
    refused(patched(376, 4, 0x80000000), -ENOTSUP, "unsupported VDI image: the block size at "
            "offset 376 is 2147483648, expected 1048576");
    refused(patched(368, 8, 1ull << 60), -ENOTSUP, "unsupported VDI image: the disk size at "
            "offset 368 is 1152921504606846976, expected at most 562949819203584");
    refused(patched(368, 8, 11u << 20), -ENOTSUP, "unsupported VDI image: the disk size at "
            "offset 368 is 11534336, expected at most 10485760 (the room of its 10 blocks)");
    refused(patched(384, 4, 0xffffffff), -ENOTSUP, "unsupported VDI image: the block count at "
            "offset 384 is 4294967295, expected at most 536870784");
    /* A map of 2^29 entries: 2 GiB, never allocated (the file has 2 MiB). */
    refused(patched(384, 4, 0x1fffff80), -EFBIG, "the block map of 536870784 blocks (block "
            "count at offset 384) takes 2147483136 bytes, more than vdisk's limit of 268435456");
    /* A map of 4 Mi entries: 16 MiB, past the end of the file. */
    refused(patched(384, 4, 4u << 20), -EINVAL, "the block map at offset 512 (16777216 bytes "
            "for 4194304 blocks) ends at 16777728, expected inside the file, found its end at "
            "2098176");
    refused(patched(340, 4, 100), -ENOTSUP, "unsupported VDI image: the block map offset at "
            "offset 340 is 100, expected a multiple of 512 from 512 on");
    refused(patched(340, 4, 0xfffffe00), -EINVAL, "the block map at offset 4294966784 (512 "
            "bytes for 10 blocks) ends at 4294967296, expected inside the file, found its end "
            "at 2098176");
    refused(patched(344, 4, 512), -ENOTSUP, "unsupported VDI image: the data offset at offset "
            "344 is 512, expected a multiple of 512 from 1024 (the end of the block map) on");
    refused(patched(388, 4, 11), -EINVAL, "the allocated block count at offset 388 is 11, "
            "expected at most 10 (the blocks in the image)");
    refused(patched(424, 1, 1), -ENOTSUP, "unsupported VDI image: the link UUID at offset 424 "
            "is not null (a differencing image)");
    refused(patched(440, 1, 1), -ENOTSUP, "unsupported VDI image: the parent UUID at offset 440 "
            "is not null (a differencing image)");
    /* An odd disk size (VBoxManage convertfromraw makes them) is rounded
     * up to 512, as QEMU does. */
    RUN_OK("cp '%s' '%s'", patched(368, 8, 10485000), scratch("x.vdi"));
    same_as_qemu_img("info", "--output=json x.vdi");
    same_raw_as_qemu_img("x.vdi");
    /* Too short for a header. */
    const char *t = scratch("t.vdi");
    size_t n;
    uint8_t *b = read_file(good_image(), &n);
    write_file(t, b, 300);
    free(b);
    refused(t, -EINVAL, "the image is too short for a VDI header (300 of 512 bytes)");
}
END_TEST

/* An image whose map is damaged: read-only opens (info, check, the good
 * blocks read), the bad blocks fail with a message, read-write is refused,
 * and check reports what qemu-img check reports. */
static void damaged(const char *path, const char *rw_msg, const char *read_msg, uint64_t bad_off)
{
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_vdi(&d, path, true), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", path, rw_msg));
    ck_assert_int_eq(open_vdi(&d, path, false), 0);
    uint8_t buf[4096];
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 1536 << 10), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_int_eq(buf[i], 0x11);
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, bad_off), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pread: %s: %s", path, read_msg));
    vdisk_close(d);
    RUN_OK("cp '%s' '%s'", path, scratch("x.vdi"));
    same_as_qemu_img("check", "x.vdi");
    same_as_qemu_img("check", "--output=json x.vdi");
    same_as_qemu_img("check", "-r all x.vdi");
    same_as_qemu_img("info", "x.vdi");
}

START_TEST(damaged_maps)
{
    /* Entry 2 (at 520) points past the end of the file. */
    const char *h = patched(520, 4, 7);
    damaged(h, "block map entry 2 (offset 520) points to data block 7 at offset 7341056, "
            "expected a block inside the file, found its end at offset 2098176; the image "
            "has 1 bad block map entry and can only be opened read-only (see vdisk check)",
            "block map entry 2 (offset 520) points to data block 7 at offset 7341056, "
            "expected a block inside the file, found its end at offset 2098176", 2u << 20);
    /* Entry 3 (at 524) uses entry 1's block. */
    h = patched(524, 4, 0);
    damaged(h, "block map entry 3 (offset 524) points to data block 0, expected a block of its "
            "own, found it used by entry 1; the image has 1 bad block map entry and can only "
            "be opened read-only (see vdisk check)",
            "block map entry 3 (offset 524) points to data block 0, expected a block of its "
            "own, found it used by entry 1", 3u << 20);
    /* Entry 4 (at 528) beyond the blocks of the image. */
    h = patched(528, 4, 0x7fffffff);
    damaged(h, "block map entry 4 (offset 528) is 2147483647, expected below 10 (the blocks in "
            "the image); the image has 1 bad block map entry and can only be opened read-only "
            "(see vdisk check)",
            "block map entry 4 (offset 528) is 2147483647, expected below 10 (the blocks in "
            "the image)", 4u << 20);
    /* The count of allocated blocks is wrong: read-only only. */
    h = patched(388, 4, 1);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(open_vdi(&d, h, true), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: the allocated block count at "
                                            "offset 388 is 1, expected 2 (the entries of the "
                                            "block map, the highest using block 1); the image "
                                            "can only be opened read-only (see vdisk check)", h));
    RUN_OK("cp '%s' '%s'", h, scratch("x.vdi"));
    same_as_qemu_img("check", "x.vdi");
    same_as_qemu_img("check", "--output=json x.vdi");
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create("interop-vdi");
    TCase *tc = tcase_create("vdi");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, qemu_images_read_identically);
    tcase_add_test(tc, vdisk_images_read_by_qemu);
    tcase_add_test(tc, convert_to_vdi);
    tcase_add_test(tc, random_io_through_library);
    tcase_add_test(tc, hostile_headers_refused);
    tcase_add_test(tc, damaged_maps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    return run_suite(make_suite());
}
