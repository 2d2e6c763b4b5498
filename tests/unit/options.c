/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/options.c: key=value options (vdisk/options.h): new, set,
 * parse (with ",," escaping), get, the keys refused, and the options that
 * vdisk_open and vdisk_create understand.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define MiB (1024 * 1024)

static vdisk_options *new_opts(void)
{
    vdisk_options *o = NULL;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_ptr_nonnull(o);
    return o;
}

#define ck_assert_opt(o, key, want)                                                \
    do {                                                                           \
        const char *v_ = vdisk_options_get((o), (key));                            \
        ck_assert_msg(v_ != NULL, "option '%s' is not set", (key));                \
        ck_assert_str_eq(v_, (want));                                              \
    } while (0)

START_TEST(new_set_get)
{
    vdisk_options *o = new_opts();
    ck_assert_ptr_null(vdisk_options_get(o, "format"));
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_opt(o, "format", "raw");
    ck_assert_ptr_null(vdisk_options_get(o, "form"));
    ck_assert_ptr_null(vdisk_options_get(o, "formats"));

    /* Both strings are copied. */
    char key[] = "cache", value[] = "none";
    ck_assert_int_eq(vdisk_options_set(o, key, value), 0);
    strcpy(key, "xxxxx");
    strcpy(value, "yyyy");
    ck_assert_opt(o, "cache", "none");
    ck_assert_ptr_null(vdisk_options_get(o, "xxxxx"));

    /* A key set again replaces its value. */
    ck_assert_int_eq(vdisk_options_set(o, "cache", "unsafe"), 0);
    ck_assert_opt(o, "cache", "unsafe");
    ck_assert_opt(o, "format", "raw");

    /* An empty value is a value. */
    ck_assert_int_eq(vdisk_options_set(o, "empty", ""), 0);
    ck_assert_opt(o, "empty", "");

    /* Keys are case-sensitive. */
    ck_assert_ptr_null(vdisk_options_get(o, "FORMAT"));

    /* Many keys (the object grows). */
    for (int i = 0; i < 200; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "value%d", i * 7);
        ck_assert_int_eq(vdisk_options_set(o, k, v), 0);
    }
    for (int i = 0; i < 200; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "value%d", i * 7);
        ck_assert_opt(o, k, v);
    }
    ck_assert_opt(o, "format", "raw");
    vdisk_options_free(o);

    vdisk_options_free(NULL);
    ck_assert_ptr_null(vdisk_options_get(NULL, "format"));
}
END_TEST

START_TEST(set_refuses_bad_keys)
{
    vdisk_options *o = new_opts();
    ck_assert_int_eq(vdisk_options_set(o, "", "x"), -EINVAL);
    ck_assert_int_eq(vdisk_get_errno(), EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_set: invalid option name ''");
    ck_assert_int_eq(vdisk_options_set(o, "a=b", "x"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_set: invalid option name 'a=b'");
    ck_assert_int_eq(vdisk_options_set(o, "a,b", "x"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_set: invalid option name 'a,b'");
    ck_assert_int_eq(vdisk_options_set(o, "=", "x"), -EINVAL);
    ck_assert_int_eq(vdisk_options_set(o, ",", "x"), -EINVAL);
    ck_assert_int_eq(vdisk_options_set(o, NULL, "x"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_set: invalid option name '(null)'");
    ck_assert_int_eq(vdisk_options_set(o, "k", NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_set: option 'k' has no value");
    /* Nothing was set. */
    ck_assert_ptr_null(vdisk_options_get(o, "a"));
    ck_assert_ptr_null(vdisk_options_get(o, "a=b"));
    ck_assert_ptr_null(vdisk_options_get(o, "a,b"));
    ck_assert_ptr_null(vdisk_options_get(o, ""));
    ck_assert_ptr_null(vdisk_options_get(o, "k"));

    /* Values may hold anything. */
    ck_assert_int_eq(vdisk_options_set(o, "v", "a=b,c,,d"), 0);
    ck_assert_opt(o, "v", "a=b,c,,d");
    vdisk_options_free(o);
}
END_TEST

START_TEST(parse_lists)
{
    vdisk_options *o = new_opts();
    ck_assert_int_eq(vdisk_options_parse(o, "cluster_size=65536,compat=1.1"), 0);
    ck_assert_opt(o, "cluster_size", "65536");
    ck_assert_opt(o, "compat", "1.1");

    /* Later pairs replace earlier ones, and earlier settings stay. */
    ck_assert_int_eq(vdisk_options_parse(o, "compat=0.10,compat=1.1,lazy=on"), 0);
    ck_assert_opt(o, "compat", "1.1");
    ck_assert_opt(o, "lazy", "on");
    ck_assert_opt(o, "cluster_size", "65536");

    /* Only the first '=' separates the key. */
    ck_assert_int_eq(vdisk_options_parse(o, "expr=a=b"), 0);
    ck_assert_opt(o, "expr", "a=b");

    /* Empty values; empty pairs are skipped. */
    ck_assert_int_eq(vdisk_options_parse(o, ",e1=,,,e2=x,"), 0);
    ck_assert_opt(o, "e1", ",");
    ck_assert_opt(o, "e2", "x");
    ck_assert_int_eq(vdisk_options_parse(o, "e3=,e4="), 0);
    ck_assert_opt(o, "e3", "");
    ck_assert_opt(o, "e4", "");
    ck_assert_int_eq(vdisk_options_parse(o, ""), 0);
    ck_assert_int_eq(vdisk_options_parse(o, ","), 0);
    vdisk_options_free(o);
}
END_TEST

START_TEST(parse_comma_escapes)
{
    vdisk_options *o = new_opts();
    ck_assert_int_eq(vdisk_options_parse(o, "file=a,,b,format=raw"), 0);
    ck_assert_opt(o, "file", "a,b");
    ck_assert_opt(o, "format", "raw");
    ck_assert_int_eq(vdisk_options_parse(o, "list=,,,,x,,,,,n=1"), 0);
    ck_assert_opt(o, "list", ",,x,,");
    ck_assert_opt(o, "n", "1");
    ck_assert_int_eq(vdisk_options_parse(o, "end=z,,"), 0);
    ck_assert_opt(o, "end", "z,");
    ck_assert_int_eq(vdisk_options_parse(o, "mid=,,=,,"), 0);
    ck_assert_opt(o, "mid", ",=,");
    vdisk_options_free(o);
}
END_TEST

START_TEST(parse_refuses_bad_pairs)
{
    vdisk_options *o = new_opts();
    ck_assert_int_eq(vdisk_options_parse(o, "foo"), -EINVAL);
    ck_assert_int_eq(vdisk_get_errno(), EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_options_parse: option 'foo' has no value (expected key=value)");
    ck_assert_ptr_null(vdisk_options_get(o, "foo"));

    ck_assert_int_eq(vdisk_options_parse(o, "a=1,bar,b=2"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_options_parse: option 'bar' has no value (expected key=value)");
    ck_assert_ptr_null(vdisk_options_get(o, "bar"));

    /* An escaped comma in a key makes a key with a comma: refused. */
    ck_assert_int_eq(vdisk_options_parse(o, "a,,b=c"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_parse: invalid option name 'a,b'");
    ck_assert_ptr_null(vdisk_options_get(o, "a,b"));

    ck_assert_int_eq(vdisk_options_parse(o, "=v"), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_options_parse: invalid option name ''");
    ck_assert_ptr_null(vdisk_options_get(o, ""));
    vdisk_options_free(o);
}
END_TEST

/* ---- Options in vdisk_open / vdisk_create ------------------------------- */

static int open_with(vdisk_dev **dev, const char *path, const char *list)
{
    vdisk_options *o = new_opts();
    ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    int r = vdisk_open(dev, path, o);
    vdisk_options_free(o);
    return r;
}

START_TEST(open_options)
{
    const char *path = scratch("a.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", MiB, NULL), 0);
    vdisk_dev *dev;

    static const char *const ro_on[] = {"on", "true", "yes", "1"};
    static const char *const ro_off[] = {"off", "false", "no", "0"};
    for (int i = 0; i < 4; i++) {
        char list[64];
        snprintf(list, sizeof list, "read-only=%s", ro_on[i]);
        ck_assert_msg(open_with(&dev, path, list) == 0, "%s: %s", list, vdisk_get_error());
        ck_assert_int_eq(vdisk_is_read_only(dev), 1);
        vdisk_close(dev);
        snprintf(list, sizeof list, "read-only=%s", ro_off[i]);
        ck_assert_msg(open_with(&dev, path, list) == 0, "%s: %s", list, vdisk_get_error());
        ck_assert_int_eq(vdisk_is_read_only(dev), 0);
        vdisk_close(dev);
    }

    static const char *const caches[] = {"writeback", "writethrough", "unsafe"};
    for (int i = 0; i < 3; i++) {
        char list[64];
        snprintf(list, sizeof list, "format=raw,cache=%s", caches[i]);
        ck_assert_msg(open_with(&dev, path, list) == 0, "%s: %s", list, vdisk_get_error());
        ck_assert_str_eq(vdisk_get_format(dev), "raw");
        char buf[512] = {7};
        ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 512), 0);
        ck_assert_int_eq(vdisk_flush(dev), 0);
        vdisk_close(dev);
    }

    ck_assert_int_eq(open_with(&dev, path, "engine=threads,threads=1"), 0);
    ck_assert_str_eq(vdisk_get_engine(dev), "threads");
    vdisk_close(dev);
    ck_assert_int_eq(open_with(&dev, path, "engine=threads,threads=256"), 0);
    vdisk_close(dev);
    ck_assert_int_eq(open_with(&dev, path, "engine=auto"), 0);
    ck_assert(strcmp(vdisk_get_engine(dev), "io_uring") == 0 ||
              strcmp(vdisk_get_engine(dev), "threads") == 0);
    vdisk_close(dev);
    int r = open_with(&dev, path, "engine=uring");
    if (r == 0) {
        ck_assert_str_eq(vdisk_get_engine(dev), "io_uring");
        vdisk_close(dev);
    } else {
        ck_assert_int_eq(r, -ENOSYS);
        printf("io_uring is not available here: %s\n", vdisk_get_error());
    }
}
END_TEST

START_TEST(open_does_not_modify_options)
{
    const char *path = scratch("a.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", MiB, NULL), 0);
    vdisk_options *o = new_opts();
    ck_assert_int_eq(vdisk_options_parse(o, "format=raw,read-only=on"), 0);
    vdisk_dev *a, *b;
    ck_assert_int_eq(vdisk_open(&a, path, o), 0);
    ck_assert_int_eq(vdisk_open(&b, path, o), 0);
    ck_assert_opt(o, "format", "raw");
    ck_assert_opt(o, "read-only", "on");
    ck_assert_int_eq(vdisk_is_read_only(a), 1);
    ck_assert_int_eq(vdisk_is_read_only(b), 1);
    vdisk_close(a);
    vdisk_close(b);

    /* An option nobody takes is an error, and the object is unchanged. */
    ck_assert_int_eq(vdisk_options_set(o, "cluster_size", "65536"), 0);
    ck_assert_int_eq(vdisk_open(&a, path, o), -EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_str_eq(vdisk_get_error(),
                     "vdisk_open: raw does not support the option 'cluster_size'");
    ck_assert_opt(o, "cluster_size", "65536");
    vdisk_options_free(o);
}
END_TEST

static int64_t allocated(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (int64_t)st.st_blocks * 512;
}

START_TEST(create_preallocation)
{
    const char *path = scratch("p.raw");
    vdisk_options *o = new_opts();

    ck_assert_int_eq(vdisk_options_set(o, "preallocation", "off"), 0);
    ck_assert_int_eq(vdisk_create(path, "raw", 4 * MiB, o), 0);
    ck_assert_int_le(allocated(path), 64 * 1024);

    ck_assert_int_eq(vdisk_options_set(o, "preallocation", "falloc"), 0);
    ck_assert_int_eq(vdisk_create(path, "raw", 4 * MiB, o), 0);
    ck_assert_int_ge(allocated(path), 4 * MiB);

    ck_assert_int_eq(vdisk_options_set(o, "preallocation", "full"), 0);
    ck_assert_int_eq(vdisk_create(path, "raw", 4 * MiB + 1, o), 0);
    ck_assert_int_ge(allocated(path), 4 * MiB + 512);
    size_t len;
    uint8_t *data = read_file(path, &len);
    ck_assert_uint_eq(len, 4 * MiB + 512);
    for (size_t i = 0; i < len; i++)
        if (data[i])
            ck_abort_msg("byte %zu of a fully preallocated image is %u", i, data[i]);
    free(data);
    vdisk_options_free(o);
}
END_TEST

static Suite *options_suite(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("object");
    tcase_add_test(tc, new_set_get);
    tcase_add_test(tc, set_refuses_bad_keys);
    tcase_add_test(tc, parse_lists);
    tcase_add_test(tc, parse_comma_escapes);
    tcase_add_test(tc, parse_refuses_bad_pairs);
    suite_add_tcase(s, tc);
    tc = tcase_create("use");
    tcase_add_test(tc, open_options);
    tcase_add_test(tc, open_does_not_modify_options);
    tcase_add_test(tc, create_preallocation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(options_suite());
}
