/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/convert_compress.c: compressed clusters stored a run at a
 * time (issue 16 item 5).
 *
 * vdisk_pwrite_compressed_datav stores a run of compressed clusters with
 * one write: it must pack them as storing them one at a time does (the
 * same file, byte for byte, while the run stays in one L2 table; a valid
 * image no larger when a run crosses tables), at every refcount width, and
 * refuse bad lists with exact messages, changing nothing.  Compressing
 * with a thread's reused context gives the same bytes every time.
 *
 * vdisk convert -c reads and compresses 4 MiB at a time on a pool and
 * stores runs of compressed clusters, runs of clusters that do not shrink
 * and runs of zeroes each with one call: sources whose clusters alternate
 * between those kinds, with holes across job boundaries and a short last
 * cluster (compressible or not), at 4 KiB and 64 KiB clusters, zstd and
 * zlib, plain, -S 0, -B and -n: the output passes qemu-img check, reads as
 * the source (qemu-img compare), is no larger than qemu-img convert -c's,
 * and two runs give the same file byte for byte.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Text-like data: compresses, to a size that varies with SEED. */
static void fill_text(uint8_t *buf, size_t len, uint64_t seed)
{
    static const char *const words[] = {"qcow2 ", "cluster ", "zstd ", "the ", "compressed ",
                                        "write ", "of ", "a ", "run\n", "0123456789 "};
    size_t i = 0;
    while (i < len) {
        const char *w = words[rng_next(&seed) % 10];
        for (size_t k = 0; w[k] && i < len; k++)
            buf[i++] = (uint8_t)w[k];
    }
}

static off_t file_size(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "stat %s", path);
    return st.st_size;
}

static vdisk_dev *make_image(const char *path, uint64_t size, const char *opts)
{
    vdisk_options *o = NULL;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_msg(vdisk_options_parse(o, opts) == 0, "%s", vdisk_get_error());
    unlink(path);
    ck_assert_msg(vdisk_create(path, "qcow2", size, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    vdisk_dev *d = NULL;
    ck_assert_msg(vdisk_open(&d, path, NULL) == 0, "%s", vdisk_get_error());
    return d;
}

/*
 * Writes NCL compressed clusters of DATA to two new images: to A one at a
 * time, to B in runs of the lengths RUNS (repeated).  Returns whether the
 * files are the same byte for byte; both pass qemu-img check and read
 * alike (and as DATA).
 */
static bool one_by_one_vs_runs(const char *opts, uint64_t cs, const uint8_t *data, size_t ncl,
                               const unsigned *runs, size_t nruns)
{
    const char *a = strdup(scratch("one.qcow2")), *b = strdup(scratch("runs.qcow2"));
    uint64_t size = ncl * cs + 8 * cs;
    uint8_t *out = malloc(ncl * cs);
    size_t *clen = calloc(ncl, sizeof *clen);
    struct iovec *v = calloc(ncl, sizeof *v);
    ck_assert(out && clen && v);
    vdisk_dev *da = make_image(a, size, opts), *db = make_image(b, size, opts);
    for (size_t i = 0; i < ncl; i++) {
        ck_assert_msg(vdisk_compress(da, data + i * cs, cs, out + i * cs, cs, &clen[i]) == 0,
                      "%s", vdisk_get_error());
        ck_assert_msg(clen[i] > 0, "cluster %zu did not shrink", i);
        v[i] = (struct iovec){out + i * cs, clen[i]};
        ck_assert_msg(vdisk_pwrite_compressed_data(da, out + i * cs, clen[i], i * cs) == 0,
                      "%s", vdisk_get_error());
    }
    for (size_t i = 0, k = 0; i < ncl; k++) {
        size_t n = runs[k % nruns] < ncl - i ? runs[k % nruns] : ncl - i;
        ck_assert_msg(vdisk_pwrite_compressed_datav(db, v + i, (int)n, i * cs) == 0, "%s",
                      vdisk_get_error());
        i += n;
    }
    /* What was just written reads back through the same handle. */
    uint8_t *back = malloc(ncl * cs);
    ck_assert(back);
    ck_assert_int_eq(vdisk_pread(db, back, ncl * cs, 0), 0);
    assert_same_bytes(back, data, ncl * cs, 0, "read back after the runs");
    vdisk_close(da);
    vdisk_close(db);
    RUN_OK("qemu-img check -q '%s' && qemu-img check -q '%s'", a, b);
    RUN_OK("qemu-img compare -q '%s' '%s'", a, b);
    write_file(scratch("data.raw"), data, ncl * cs);
    RUN_OK("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", scratch("data.raw"), b);
    ck_assert_msg(file_size(b) <= file_size(a), "%s: runs make %jd bytes, one by one %jd", opts,
                  (intmax_t)file_size(b), (intmax_t)file_size(a));
    size_t la, lb;
    uint8_t *fa = read_file(a, &la), *fb = read_file(b, &lb);
    bool same = la == lb && memcmp(fa, fb, la) == 0;
    free(fa);
    free(fb);
    free(back);
    free(out);
    free(clen);
    free(v);
    free((void *)a);
    free((void *)b);
    return same;
}

/* Within one L2 table, a run packs exactly as one cluster at a time. */
START_TEST(datav_packs_as_one_at_a_time)
{
    static const char *const opts[] = {
        "cluster_size=65536,compression_type=zstd",
        "cluster_size=65536",
        "cluster_size=4096,compression_type=zstd,refcount_bits=1",
        "cluster_size=4096,refcount_bits=2",
        "cluster_size=65536,compression_type=zstd,extended_l2=on,lazy_refcounts=on",
    };
    static const unsigned runs[] = {1, 7, 13, 2, 19};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        uint64_t cs = strstr(opts[k], "4096") ? 4096 : 65536;
        size_t ncl = 60;
        uint8_t *data = malloc(ncl * cs);
        ck_assert(data);
        for (size_t i = 0; i < ncl; i++)
            fill_text(data + i * cs, cs, 1000 * k + i);
        ck_assert_msg(one_by_one_vs_runs(opts[k], cs, data, ncl, runs, 5),
                      "%s: the runs packed otherwise than one at a time", opts[k]);
        free(data);
    }
}
END_TEST

/* Runs across L2 tables (512-byte clusters: a table maps 32 KiB), and long
 * ones (more pieces than one write takes): a valid image, no larger. */
START_TEST(datav_across_tables)
{
    static const unsigned runs[] = {100, 1, 2000, 63, 64, 65};
    uint64_t cs = 512;
    size_t ncl = 4000;
    uint8_t *data = malloc(ncl * cs);
    ck_assert(data);
    for (size_t i = 0; i < ncl; i++)
        fill_text(data + i * cs, cs, 7 * i);
    one_by_one_vs_runs("cluster_size=512,compression_type=zstd", cs, data, ncl, runs, 6);
    one_by_one_vs_runs("cluster_size=512,compat=0.10", cs, data, ncl, runs, 6);
    free(data);
}
END_TEST

START_TEST(datav_refuses_bad_lists)
{
    const char *img = scratch("bad.qcow2");
    vdisk_dev *d = make_image(img, 1 * MiB + 1024, "cluster_size=65536,compression_type=zstd");
    uint8_t in[65536], out[3][65536];
    size_t clen[3];
    for (int i = 0; i < 3; i++) {
        fill_text(in, sizeof in, (uint64_t)i);
        ck_assert_int_eq(vdisk_compress(d, in, sizeof in, out[i], sizeof out[i], &clen[i]), 0);
    }
    struct iovec v[3] = {{out[0], clen[0]}, {out[1], clen[1]}, {out[2], clen[2]}};
    struct {
        struct iovec piece1;
        int n;
        uint64_t off;
        int err;
        const char *msg;
    } cases[] = {
        {{out[1], 0}, 3, 0, -EINVAL,
         "%s: 0 compressed bytes for offset 65536 do not make a compressed cluster"},
        {{out[1], 65536}, 3, 0, -EINVAL,
         "%s: 65536 compressed bytes for offset 65536 do not make a compressed cluster"},
        {{out[1], clen[1]}, 3, 512, -EINVAL,
         "%s: compressed clusters must start at a multiple of the cluster size (65536 "
         "bytes), not at offset 512"},
        {{out[1], clen[1]}, 3, 15 * 65536, -EINVAL,
         "%s: 3 compressed clusters at offset 983040 run past the end of the image "
         "(1049600 bytes)"},
        {{out[1], clen[1]}, -1, 0, -EINVAL, "invalid list of compressed clusters (count -1)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        v[1] = cases[k].piece1;
        int r = vdisk_pwrite_compressed_datav(d, v, cases[k].n, cases[k].off);
        ck_assert_int_eq(r, cases[k].err);
        char want[512];
        int n = snprintf(want, sizeof want, "vdisk_pwrite_compressed_datav: ");
        snprintf(want + n, sizeof want - (size_t)n, cases[k].msg, img);
        ck_assert_str_eq(vdisk_get_error(), want);
    }
    ck_assert_int_eq(vdisk_pwrite_compressed_datav(d, NULL, 0, 0), 0);
    /* The last cluster is short (1024 bytes): a run may end with it. */
    v[1] = (struct iovec){out[1], clen[1]};
    ck_assert_msg(vdisk_pwrite_compressed_datav(d, v, 2, 15 * 65536) == 0, "%s",
                  vdisk_get_error());
    vdisk_close(d);
    /* Nothing but the last run was stored. */
    RUN_OK("qemu-img check -q '%s'", img);
    RUN_OK("qemu-img map --output=json '%s'", img);
    ck_assert_msg(strstr(harness_last_run()->out,
                         "{ \"start\": 0, \"length\": 983040, \"depth\": 0, \"present\": "
                         "false, \"zero\": true, \"data\": false}") != NULL,
                  "%s", harness_last_run()->out);
    /* Formats without compression. */
    const char *raw = scratch("bad.raw");
    unlink(raw);
    ck_assert_int_eq(vdisk_create(raw, "raw", 1 * MiB, NULL), 0);
    ck_assert_int_eq(vdisk_open(&d, raw, NULL), 0);
    ck_assert_int_eq(vdisk_pwrite_compressed_datav(d, v, 1, 0), -ENOTSUP);
    vdisk_close(d);
}
END_TEST

/* A thread's reused context: the same bytes for the same cluster, before
 * and after compressing others (zstd and zlib). */
START_TEST(reused_context_gives_the_same_bytes)
{
    static const char *const opts[] = {"compression_type=zstd", "compression_type=zlib"};
    for (size_t k = 0; k < 2; k++) {
        vdisk_dev *d = make_image(scratch("ctx.qcow2"), 1 * MiB, opts[k]);
        static uint8_t in[3][65536], out[3][65536];
        size_t clen[3];
        fill_text(in[0], sizeof in[0], 1);
        fill_text(in[1], sizeof in[1], 2);
        uint64_t seed = 3;
        fill_random(in[2], sizeof in[2], &seed);
        ck_assert_int_eq(vdisk_compress(d, in[0], 65536, out[0], 65536, &clen[0]), 0);
        ck_assert_int_eq(vdisk_compress(d, in[1], 65536, out[1], 65536, &clen[1]), 0);
        ck_assert_int_eq(vdisk_compress(d, in[2], 65536, out[2], 65536, &clen[2]), 0);
        ck_assert_uint_eq(clen[2], 0); /* random data does not shrink */
        ck_assert_int_eq(vdisk_compress(d, in[0], 65536, out[2], 65536, &clen[2]), 0);
        ck_assert_uint_eq(clen[2], clen[0]);
        ck_assert_mem_eq(out[2], out[0], clen[0]);
        vdisk_close(d);
    }
}
END_TEST

/* The convert sources.  Cluster by cluster (64 KiB units): text, text,
 * random (does not shrink), written zeroes, text, a hole, text...; holes
 * of several megabytes across the 4 MiB jobs, one ending inside a
 * cluster; the last cluster short, text or random. */
static void make_source(const char *path, uint64_t size, bool random_tail, uint64_t seed)
{
    uint8_t *buf = calloc(1, size);
    ck_assert(buf);
    for (uint64_t off = 0, i = 0; off < size; off += 65536, i++) {
        uint64_t n = size - off < 65536 ? size - off : 65536;
        bool hole = (off >= 3 * MiB && off < 8 * MiB + 32 * KiB) ||
                    (off >= 13 * MiB && off < 17 * MiB);
        if (hole)
            continue;
        switch (off + n == size ? (random_tail ? 2 : 0) : i % 6) {
        case 0:
        case 1:
        case 4:
            fill_text(buf + off, n, seed + i);
            break;
        case 2:
            fill_random(buf + off, n, &seed);
            break;
        case 3:
            break; /* written zeroes */
        case 5:
            /* Half text, half zeroes. */
            fill_text(buf + off, n / 2, seed + i);
            break;
        }
    }
    /* Written as data except the holes (a sparse file). */
    unlink(path);
    RUN_OK("truncate -s %" PRIu64 " '%s'", size, path);
    FILE *f = fopen(path, "r+");
    ck_assert(f != NULL);
    for (uint64_t off = 0; off < size; off += 65536) {
        uint64_t n = size - off < 65536 ? size - off : 65536;
        bool hole = (off >= 3 * MiB && off < 8 * MiB + 32 * KiB) ||
                    (off >= 13 * MiB && off < 17 * MiB);
        if (hole) {
            /* The first hole ends inside a 64 KiB cluster. */
            if (off == 8 * MiB) {
                fseeko(f, (off_t)(off + 32 * KiB), SEEK_SET);
                ck_assert_uint_eq(fwrite(buf + off + 32 * KiB, 1, n - 32 * KiB, f),
                                  n - 32 * KiB);
            }
            continue;
        }
        fseeko(f, (off_t)off, SEEK_SET);
        ck_assert_uint_eq(fwrite(buf + off, 1, n, f), n);
    }
    fclose(f);
    free(buf);
}

START_TEST(convert_c_stores_runs)
{
    static const char *const types[] = {"zstd", "zlib"};
    static const uint64_t clusters[] = {65536, 4096};
    static const char *const variants[] = {"plain", "-S 0", "-B", "-n"};
    /* zstd at both cluster sizes with both tails, zlib once. */
    static const struct {
        int type, cluster, tail;
    } combos[] = {{0, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 1, 1}, {1, 0, 1}};
    char *src = strdup(scratch("src.raw")), *base = strdup(scratch("base.raw"));
    char *out = strdup(scratch("out.qcow2")), *again = strdup(scratch("again.qcow2"));
    char *peer = strdup(scratch("peer.qcow2"));
    uint64_t size = 21 * MiB + 3 * 65536 + 1000;
    for (size_t m = 0; m < sizeof combos / sizeof combos[0]; m++) {
        int tail = combos[m].tail;
        if (m == 0 || tail != combos[m - 1].tail) {
            make_source(src, size, tail, 77 + (uint64_t)tail);
            /* -B's base: the source with other data in places, and with
             * data where the source has holes and zeroes. */
            RUN_OK("cp --sparse=always '%s' '%s' && qemu-io -f raw -c 'write -P 0x5a 1M 200k' "
                   "-c 'write -P 0x33 4M 1M' -c 'write -P 0x44 20M 64k' '%s'", src, base, base);
        }
        char o[128];
        snprintf(o, sizeof o, "compression_type=%s,cluster_size=%" PRIu64,
                 types[combos[m].type], clusters[combos[m].cluster]);
        for (int v = 0; v < 4; v++) {
            char what[256], extra[512] = "";
            snprintf(what, sizeof what, "%s, %s tail, %s", o, tail ? "random" : "text",
                     variants[v]);
            if (v == 1)
                snprintf(extra, sizeof extra, "-S 0");
            else if (v == 2)
                snprintf(extra, sizeof extra, "-B '%s' -F raw", base);
            char *targets[] = {out, again};
            for (int rep = 0; rep < 2; rep++) {
                unlink(targets[rep]);
                if (v == 3) {
                    /* -n over an image full of other data. */
                    RUN_OK("qemu-img create -q -f qcow2 -o %s '%s' %" PRIu64 " && qemu-io -c "
                           "'write -P 0xee 0 %" PRIu64 "' '%s'", o, targets[rep], size, size,
                           targets[rep]);
                    RUN_OK("%s convert -n -c -f raw -O qcow2 '%s' '%s'", vdisk_bin(), src,
                           targets[rep]);
                } else {
                    RUN_OK("%s convert -c -t none -f raw -O qcow2 -o %s %s '%s' '%s'",
                           vdisk_bin(), o, extra, src, targets[rep]);
                }
            }
            RUN_OK("qemu-img check -q '%s'", out);
            struct run *r = run("qemu-img compare -f raw -F qcow2 '%s' '%s'", src, out);
            ck_assert_msg(r->status == 0, "%s: the output differs from the source: %s%s", what,
                          r->out, r->err);
            size_t la, lb;
            uint8_t *fa = read_file(out, &la), *fb = read_file(again, &lb);
            ck_assert_msg(la == lb && memcmp(fa, fb, la) == 0, "%s: two runs made different "
                          "files", what);
            free(fa);
            free(fb);
            if (v == 3)
                continue;
            unlink(peer);
            RUN_OK("qemu-img convert -c -f raw -O qcow2 -o %s %s '%s' '%s'", o, extra, src, peer);
            ck_assert_msg(file_size(out) <= file_size(peer), "%s: vdisk's output has %jd bytes, "
                          "qemu-img's %jd", what, (intmax_t)file_size(out),
                          (intmax_t)file_size(peer));
        }
    }
    free(src);
    free(base);
    free(out);
    free(again);
    free(peer);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("convert-compress");
    TCase *tc = tcase_create("convert-compress");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, datav_packs_as_one_at_a_time);
    tcase_add_test(tc, datav_across_tables);
    tcase_add_test(tc, datav_refuses_bad_lists);
    tcase_add_test(tc, reused_context_gives_the_same_bytes);
    tcase_add_test(tc, convert_c_stores_runs);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
