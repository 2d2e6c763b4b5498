/* SPDX-License-Identifier: MIT */
/*
 * tests/ceph/rbd_lib.c: the rbd protocol driver through the library, on a
 * real single-node cluster (tests/ceph/with-cluster.sh): random reads,
 * writes (FUA or not, several iovecs, many in flight on a queue) and
 * zeroes of many sizes and offsets against a model, every byte compared,
 * and then by rbd export; block status against the model; a qcow2 image in
 * the pool under the same load, checked clean by qemu-img; growing and
 * shrinking; the library's messages.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define MiB (1024 * 1024)

static const char *pool(void)
{
    const char *p = getenv("VDISK_CEPH_POOL");
    ck_assert_msg(p, "VDISK_CEPH_POOL is not set: run under tests/ceph/with-cluster.sh");
    return p;
}

static const char *rbd_name(const char *image)
{
    return fmt("rbd:%s/%s", pool(), image);
}

static vdisk_dev *open_rw(const char *name, const char *format)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", format), 0);
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, name, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "open %s: %s", name, vdisk_get_error());
    return d;
}

/* A raw image in the pool: random I/O, then rbd export reads the same. */
START_TEST(raw_against_model)
{
    const uint64_t sizes[] = {512, 4096 + 512, 3 * MiB + 1024, 13 * MiB};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint64_t size = sizes[si];
        const char *img = fmt("raw%zu", si), *name = rbd_name(img);
        ck_assert_msg(vdisk_create(name, "raw", size, NULL) == 0, "%s", vdisk_get_error());
        vdisk_dev *d = open_rw(name, "raw");
        ck_assert_uint_eq(vdisk_get_size(d), size);
        ck_assert_str_eq(vdisk_get_format(d), "raw");
        uint8_t *model = calloc(1, size);
        ck_assert_ptr_nonnull(model);
        random_io_against_model(d, model, size, size < 8192 ? 60 : 300, 0x726264 + si);
        uint8_t *got = malloc(size);
        ck_assert_int_eq(vdisk_pread(d, got, size, 0), 0);
        assert_same_bytes(got, model, size, 0, "whole image");
        free(got);
        vdisk_close(d);
        const char *out = scratch(fmt("%s.exp", img)), *want = scratch(fmt("%s.want", img));
        RUN_OK("rbd export --no-progress '%s/%s' '%s' 2>/dev/null", pool(), img, out);
        write_file(want, model, size);
        RUN_OK("cmp '%s' '%s'", out, want);
        free(model);
    }
}
END_TEST

/* A qcow2 image in the pool, under the same load: qemu-img checks it clean
 * and reads the same bytes. */
START_TEST(qcow2_in_pool)
{
    const uint64_t size = 24 * MiB;
    const char *name = rbd_name("q");
    ck_assert_msg(vdisk_create(name, "qcow2", size, NULL) == 0, "%s", vdisk_get_error());
    vdisk_dev *d = open_rw(name, "qcow2");
    ck_assert_str_eq(vdisk_get_format(d), "qcow2");
    uint8_t *model = calloc(1, size);
    ck_assert_ptr_nonnull(model);
    random_io_against_model(d, model, size, 300, 0x71636f77);
    vdisk_close(d);
    RUN_OK("qemu-img check -f qcow2 '%s'", name);
    const char *want = scratch("q.want");
    write_file(want, model, size);
    RUN_OK("qemu-img compare -f raw -F qcow2 '%s' '%s'", want, name);
    free(model);
}
END_TEST

/* Growing and shrinking through vdisk_resize; the cluster agrees. */
START_TEST(resize)
{
    const char *name = rbd_name("rs");
    ck_assert_int_eq(vdisk_create(name, "raw", MiB, NULL), 0);
    vdisk_dev *d = open_rw(name, "raw");
    uint8_t b[4096];
    memset(b, 0x5a, sizeof b);
    ck_assert_int_eq(vdisk_pwrite(d, b, sizeof b, MiB - sizeof b), 0);
    ck_assert_msg(vdisk_resize(d, 3 * MiB, 0) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(vdisk_get_size(d), 3 * MiB);
    ck_assert_int_eq(vdisk_pread(d, b, sizeof b, 2 * MiB), 0);
    for (size_t i = 0; i < sizeof b; i++)
        ck_assert_int_eq(b[i], 0);
    vdisk_close(d);
    struct run *r = run("rbd info --format json '%s/rs' | "
                        "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"size\"])'",
                        pool());
    ck_assert_str_eq(r->out, "3145728\n");
}
END_TEST

/* Messages: the library says which image and why. */
START_TEST(messages)
{
    vdisk_dev *d = NULL;
    ck_assert_int_eq(vdisk_open(&d, rbd_name("none"), NULL), -ENOENT);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_open: rbd:%s/none: there is no image 'none' in the pool '%s'",
                         pool(), pool()));
    ck_assert_int_eq(vdisk_open(&d, "rbd:nopool/x", NULL), -ENOENT);
    ck_assert_int_eq(vdisk_create(rbd_name("bad@snap"), "raw", MiB, NULL), -EINVAL);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "cluster_size", "3000"), 0);
    ck_assert_int_eq(vdisk_create(rbd_name("odd"), "raw", MiB, o), -EINVAL);
    vdisk_options_free(o);
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "cluster_size", "65536"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "features", "layering+exclusive-lock"), 0);
    ck_assert_msg(vdisk_create(rbd_name("small"), "raw", MiB, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    struct run *r = run("rbd info --format json '%s/small' | python3 -c 'import json,sys; "
                        "j=json.load(sys.stdin); print(j[\"object_size\"], sorted(j[\"features\"]))'",
                        pool());
    ck_assert_str_eq(r->out, "65536 ['exclusive-lock', 'layering']\n");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("rbd-lib");
    TCase *tc = tcase_create("rbd");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, raw_against_model);
    tcase_add_test(tc, qcow2_in_pool);
    tcase_add_test(tc, resize);
    tcase_add_test(tc, messages);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_program("qemu-img");
    require_program("rbd");
    return run_suite(make_suite());
}
