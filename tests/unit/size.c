/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/size.c: vdisk_parse_size() (vdisk/options.h), the one size
 * grammar of the library, the CLI and vdisk-vmm: what qemu-img 7.2 accepts
 * (the values marked "qemu" below are what `qemu-img create -f raw x TEXT`
 * printed as its size), what it refuses, exact fractions and their
 * rounding, overflow at 2^64, units for bare numbers; and the size options
 * that go through it (qcow2 cluster_size, l2-cache-size).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define EiB (1ull << 60)

struct good {
    const char *text;
    uint64_t want;
};

static const struct good goods[] = {
    /* Plain bytes, leading zeros, white space and "+" before the number. */
    {"0", 0}, {"1", 1}, {"07", 7}, {"512", 512}, {" 1k", KiB}, {"\t1k", KiB},
    {"+1k", KiB}, {" +1k", KiB}, {"010k", 10 * KiB},
    /* Every suffix, both cases; b/B is bytes. */
    {"1b", 1}, {"1B", 1}, {"1k", KiB}, {"1K", KiB}, {"1m", MiB}, {"1M", MiB},
    {"1g", GiB}, {"1G", GiB}, {"1t", 1ull << 40}, {"1T", 1ull << 40},
    {"1p", 1ull << 50}, {"1P", 1ull << 50}, {"1e", EiB}, {"1E", EiB},
    /* Fractions (qemu: 1536, 1024, 1, 1, 4509715661, 1729382256910270464). */
    {"1.5k", 1536}, {"1.5K", 1536}, {"1.k", KiB}, {"1.", 1}, {"1.0", 1},
    {"1.000b", 1}, {"4.2G", 4509715661ull}, {"1.5E", 1729382256910270464ull},
    {"0.1k", 102}, {"0.3M", 314573}, {"1.5e", EiB + EiB / 2},
    /* Rounding to the nearest byte, halves up (qemu: 0, 1, 0, 1, 1025,
     * 1025, 1024). */
    {"0.0001k", 0}, {"0.00048828125k", 1}, {"0.00048828124k", 0},
    {"0.00048828126k", 1}, {"1.0009765625k", 1025}, {"1.00048828125k", 1025},
    {"1.000488281249k", 1024},
    /* Exact where a double is not: qemu-img says 1024 here. */
    {"1.99999999999999999999k", 2 * KiB},
    /* Digits far past the 61 that can matter: only "some are not zero". */
    {"0.000488281250000000000000000000000000000000000000000000000000000000000000000000000k", 1},
    {"0.000488281249999999999999999999999999999999999999999999999999999999999999999999999k", 0},
    {"0.000488281250000000000000000000000000000000000000000000000000000000000000000000001k", 1},
    /* Hexadecimal: b and e are digits; a suffix after the digits counts. */
    {"0x10", 16}, {"0X1F", 31}, {"0x1e", 30}, {"0x1b", 27}, {"0x10k", 16 * KiB},
    {" +0x10", 16}, {"0x1G", GiB}, {"0xffffffffffffffff", UINT64_MAX},
    {"0x0000000000000000000001", 1},
    /* The largest size, 2^64 - 1, written every way. */
    {"18446744073709551615", UINT64_MAX}, {"18446744073709551615b", UINT64_MAX},
    {"00000000000000000000000000018446744073709551615", UINT64_MAX},
    {"15.999999999999999999132638262011596452794037759304046630859375E", UINT64_MAX},
    /* Just under half a byte below 2^64: rounds down to 2^64 - 1. */
    {"15.9999999999999999995663191310057982263970188796520233154296874E", UINT64_MAX},
    {"16383.999999999999999P", UINT64_MAX}, {"16383.9999999999999985P", UINT64_MAX - 1},
};

/* What qemu-img refuses ("Invalid image size specified"), and a few more. */
static const char *const bads[] = {
    "", " ", "k", "+", "-0", "-1", " -1", "+-1", "++1", "-1k",
    "1.5", "1.5b", "1.5B", "0.5", "1.0000000000000000001", /* fractions of a byte */
    ".5k", ".", "..", "1.5.5k", "1.-5k", "1.+5k", "1. 5k", "1,5k", "1.e5k",
    "1 k", "1k ", "1k\n", "1kB", "1KiB", "1kk", "1x", "1Z", "1i",
    "1e3", "1.5e3k", "1e+3", "inf", "nan", "0x1p3",
    "0x", "0x.8k", "0xg", "00x10", "0x0x10", "0x1.8k", "0x1.", "0x-1",
    "18446744073709551616x", /* bad syntax wins over range, as in QEMU */
};

/* 2^64 bytes or more. */
static const char *const too_large[] = {
    "16E", "16e", "16384P", "16777216T", "18446744073709551616", "18446744073709551616b",
    "99999999999999999999999999k", "0x10000000000000000", "0x10000000000000000b",
    "0x4000000000000000k", "18014398509481984k", "18014398509481985k",
    /* Exactly half a byte below 2^64 rounds up to 2^64. */
    "15.9999999999999999995663191310057982263970188796520233154296875E",
    "15.99999999999999999999999E",
};

START_TEST(accepts_qemu_grammar)
{
    const struct good *g = &goods[_i];
    uint64_t v = 12345;
    int r = vdisk_parse_size(g->text, 1, &v);
    ck_assert_msg(r == 0, "'%s': %d (%s)", g->text, r, vdisk_get_error());
    ck_assert_msg(v == g->want, "'%s' is %llu, not %llu", g->text, (unsigned long long)v,
                  (unsigned long long)g->want);
}
END_TEST

START_TEST(refuses_bad_syntax)
{
    const char *text = bads[_i];
    uint64_t v = 12345;
    int r = vdisk_parse_size(text, 1, &v);
    ck_assert_msg(r == -EINVAL, "'%s': %d, not -EINVAL (value %llu)", text, r,
                  (unsigned long long)v);
    ck_assert_uint_eq(v, 12345); /* left alone */
    ck_assert_int_eq(vdisk_get_errno(), EINVAL);
    char want[256];
    snprintf(want, sizeof want, "vdisk_parse_size: invalid size '%s': ", text);
    ck_assert_msg(strncmp(vdisk_get_error(), want, strlen(want)) == 0, "'%s': message '%s'",
                  text, vdisk_get_error());
}
END_TEST

START_TEST(refuses_overflow)
{
    const char *text = too_large[_i];
    uint64_t v = 12345;
    int r = vdisk_parse_size(text, 1, &v);
    ck_assert_msg(r == -ERANGE, "'%s': %d, not -ERANGE (value %llu)", text, r,
                  (unsigned long long)v);
    ck_assert_uint_eq(v, 12345);
    char want[256];
    snprintf(want, sizeof want,
             "vdisk_parse_size: size '%s' is too large (at most 16 EiB - 1 byte)", text);
    ck_assert_str_eq(vdisk_get_error(), want);
}
END_TEST

START_TEST(fraction_messages)
{
    uint64_t v;
    ck_assert_int_eq(vdisk_parse_size("1.5", 1, &v), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_parse_size: invalid size '1.5': a fraction of "
                     "a byte (a fraction needs a suffix k, M, G, T, P or E)");
    ck_assert_int_eq(vdisk_parse_size("0x1.8k", 1, &v), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_parse_size: invalid size '0x1.8k': a "
                     "hexadecimal number cannot have a fraction");
    ck_assert_int_eq(vdisk_parse_size("12 GB", 1, &v), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_parse_size: invalid size '12 GB': expected a "
                     "number with an optional suffix (b, k, M, G, T, P or E)");
}
END_TEST

/* A bare number in other units, as QEMU's -m reads "256" as 256 MiB. */
START_TEST(bare_units)
{
    uint64_t v = 0;
    ck_assert_int_eq(vdisk_parse_size("256", MiB, &v), 0);
    ck_assert_uint_eq(v, 256 * MiB);
    ck_assert_int_eq(vdisk_parse_size("1.5", MiB, &v), 0);
    ck_assert_uint_eq(v, MiB + MiB / 2);
    ck_assert_int_eq(vdisk_parse_size("1.", MiB, &v), 0);
    ck_assert_uint_eq(v, MiB);
    ck_assert_int_eq(vdisk_parse_size("0x10", MiB, &v), 0);
    ck_assert_uint_eq(v, 16 * MiB);
    ck_assert_int_eq(vdisk_parse_size("4096b", MiB, &v), 0); /* a suffix wins */
    ck_assert_uint_eq(v, 4096);
    ck_assert_int_eq(vdisk_parse_size("64k", MiB, &v), 0);
    ck_assert_uint_eq(v, 64 * KiB);
    ck_assert_int_eq(vdisk_parse_size("1.5b", MiB, &v), -EINVAL);
    ck_assert_int_eq(vdisk_parse_size("3", KiB, &v), 0);
    ck_assert_uint_eq(v, 3 * KiB);
    ck_assert_int_eq(vdisk_parse_size("15", EiB, &v), 0);
    ck_assert_uint_eq(v, 15 * EiB);
    ck_assert_int_eq(vdisk_parse_size("16", EiB, &v), -ERANGE);
    ck_assert_int_eq(vdisk_parse_size("17592186044416", MiB, &v), -ERANGE); /* 2^44 MiB */

    /* Units that are not a power of 1024. */
    static const uint64_t bad_units[] = {0, 2, 3, 512, 1000, 2048, MiB + 1, 1ull << 61,
                                         UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_units / sizeof bad_units[0]; i++) {
        v = 7;
        ck_assert_int_eq(vdisk_parse_size("1", bad_units[i], &v), -EINVAL);
        ck_assert_uint_eq(v, 7);
        ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "cannot count in units of"));
    }
    ck_assert_int_eq(vdisk_parse_size(NULL, 1, &v), -EINVAL);
    ck_assert_int_eq(vdisk_parse_size("1", 1, NULL), -EINVAL);
}
END_TEST

/* Every value from 0 to 2^16 in decimal and hexadecimal, and every 1/1024
 * step of a KiB: the same bytes as the integer arithmetic gives. */
START_TEST(round_trips)
{
    char text[64];
    uint64_t v;
    for (uint64_t n = 0; n <= 65536; n++) {
        snprintf(text, sizeof text, "%llu", (unsigned long long)n);
        ck_assert_int_eq(vdisk_parse_size(text, 1, &v), 0);
        ck_assert_uint_eq(v, n);
        snprintf(text, sizeof text, "0x%llx", (unsigned long long)n);
        ck_assert_int_eq(vdisk_parse_size(text, 1, &v), 0);
        ck_assert_uint_eq(v, n);
    }
    /* n/1024 k is n bytes; n/1000 k is round(n * 1.024) bytes. */
    for (unsigned n = 0; n < 4096; n++) {
        snprintf(text, sizeof text, "%u.%010llu", n / 1024,
                 (unsigned long long)(n % 1024) * 9765625ull); /* (n % 1024) / 1024 */
        strcat(text, "k");
        ck_assert_int_eq(vdisk_parse_size(text, 1, &v), 0);
        ck_assert_msg(v == n, "'%s' is %llu, not %u", text, (unsigned long long)v, n);
        snprintf(text, sizeof text, "%u.%03uk", n / 1000, n % 1000);
        ck_assert_int_eq(vdisk_parse_size(text, 1, &v), 0);
        uint64_t want = ((uint64_t)n * 1024 + 500) / 1000; /* halves up */
        ck_assert_msg(v == want, "'%s' is %llu, not %llu", text, (unsigned long long)v,
                      (unsigned long long)want);
    }
    /* Each power of two with each suffix, up to the last that fits. */
    static const char sfx[] = "bkmgtpe";
    for (unsigned s = 0; s < 7; s++) {
        for (unsigned b = 0; b < 64; b++) {
            snprintf(text, sizeof text, "%llu%c", 1ull << b, sfx[s]);
            int r = vdisk_parse_size(text, 1, &v);
            if (b + 10 * s < 64) {
                ck_assert_int_eq(r, 0);
                ck_assert_uint_eq(v, 1ull << (b + 10 * s));
            } else {
                ck_assert_msg(r == -ERANGE, "'%s': %d", text, r);
            }
        }
    }
}
END_TEST

static void create_qcow2(const char *path, const char *cluster_size)
{
    vdisk_options *o = NULL;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "cluster_size", cluster_size), 0);
    int r = vdisk_create(path, "qcow2", 4 * MiB, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "cluster_size=%s: %s", cluster_size, vdisk_get_error());
}

static uint64_t cluster_size_of(const char *path)
{
    size_t len;
    uint8_t *h = read_file(path, &len);
    ck_assert_uint_ge(len, 24);
    uint32_t bits = be32_load(h + 20);
    free(h);
    return 1ull << bits;
}

static void create_fails(const char *path, const char *cluster_size, const char *msg)
{
    vdisk_options *o = NULL;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "cluster_size", cluster_size), 0);
    unlink(path);
    int r = vdisk_create(path, "qcow2", 4 * MiB, o);
    vdisk_options_free(o);
    ck_assert_msg(r == -EINVAL, "cluster_size=%s: %d", cluster_size, r);
    ck_assert_msg(strstr(vdisk_get_error(), msg), "cluster_size=%s: '%s' lacks '%s'",
                  cluster_size, vdisk_get_error(), msg);
    ck_assert_int_ne(access(path, F_OK), 0);
}

/* qcow2's cluster_size takes the whole grammar, overflow-checked. */
START_TEST(qcow2_cluster_size)
{
    const char *img = scratch("c.qcow2");
    /* 2^64 + 1 KiB: a shift without overflow check made it 1 KiB. */
    create_fails(img, "18014398509481985k",
                 "Value '18014398509481985k' is out of range for parameter 'cluster_size'");
    static const struct good sizes[] = {
        {"65536", 65536}, {"64k", 65536}, {"64K", 65536}, {"2M", 2 * MiB}, {"0x1000", 4096},
        {"0.5k", 512}, {"1.5M", 0}, {"512b", 512}, {" 4k", 4096},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (!sizes[i].want)
            continue;
        create_qcow2(img, sizes[i].text);
        ck_assert_uint_eq(cluster_size_of(img), sizes[i].want);
    }
    create_fails(img, "16E", "Value '16E' is out of range for parameter 'cluster_size'");
    create_fails(img, "64 k", "Parameter 'cluster_size' expects a non-negative number below "
                 "2^64 (with an optional suffix k, M, G, T, P or E), not '64 k'");
    create_fails(img, "1.5M", "Cluster size must be a power of two between 512 and 2048k");
    create_fails(img, "4G", "Cluster size must be a power of two between 512 and 2048k");
}
END_TEST

/* The qcow2 cache sizes take suffixes, as QEMU's do. */
START_TEST(qcow2_cache_sizes)
{
    const char *img = scratch("cache.qcow2");
    create_qcow2(img, "64k");
    static const char *const good[] = {"1M", "0x100000", "1048576", "1.5M", "1T"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        vdisk_options *o = NULL;
        ck_assert_int_eq(vdisk_options_new(&o), 0);
        ck_assert_int_eq(vdisk_options_set(o, "l2-cache-size", good[i]), 0);
        ck_assert_int_eq(vdisk_options_set(o, "refcount-cache-size", good[i]), 0);
        vdisk_dev *dev = NULL;
        int r = vdisk_open(&dev, img, o);
        ck_assert_msg(r == 0, "%s: %s", good[i], vdisk_get_error());
        vdisk_close(dev);
        vdisk_options_free(o);
    }
    static const char *const bad[] = {"1.5", "1MB", "1.5T", "16E"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vdisk_options *o = NULL;
        ck_assert_int_eq(vdisk_options_new(&o), 0);
        ck_assert_int_eq(vdisk_options_set(o, "l2-cache-size", bad[i]), 0);
        vdisk_dev *dev = NULL;
        ck_assert_int_eq(vdisk_open(&dev, img, o), -EINVAL);
        ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "l2-cache-size"));
        ck_assert_ptr_nonnull(strstr(vdisk_get_error(), bad[i]));
        vdisk_options_free(o);
    }
}
END_TEST

static Suite *size_suite(void)
{
    Suite *s = suite_create("size");
    TCase *tc = tcase_create("grammar");
    tcase_add_loop_test(tc, accepts_qemu_grammar, 0, (int)(sizeof goods / sizeof goods[0]));
    tcase_add_loop_test(tc, refuses_bad_syntax, 0, (int)(sizeof bads / sizeof bads[0]));
    tcase_add_loop_test(tc, refuses_overflow, 0, (int)(sizeof too_large / sizeof too_large[0]));
    tcase_add_test(tc, fraction_messages);
    tcase_add_test(tc, bare_units);
    tcase_add_test(tc, round_trips);
    suite_add_tcase(s, tc);
    tc = tcase_create("options");
    tcase_add_test(tc, qcow2_cluster_size);
    tcase_add_test(tc, qcow2_cache_sizes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(size_suite());
}
