/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/convert_prop.c: a property test of vdisk convert (issue 13
 * item 1): whatever the source (raw or qcow2, any size from 1 byte to 20 MiB,
 * odd sizes and sizes one off around 512, 2048, 4096, 64 KiB, 1 MiB and
 * cluster multiples, with holes, written zeroes, zero clusters and
 * compressed clusters) and whatever the output (raw or qcow2, -c, -S 0,
 * -S 4k, -B with a backing file that differs from the source in places, -n
 * over a target full of other data), every byte of the output reads as the
 * source.  Checked with qemu-img compare and byte by byte through qemu-img
 * convert (never through vdisk); -S 0 outputs must be fully allocated
 * (qemu-img map, st_blocks).  Seeded and deterministic: each case names
 * its seed.  The engine is the one VDISK_ENGINE picks (CI runs both).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define MiB (1024u * 1024u)

/* The source sizes: boundaries one off each way, odd sizes, large ones. */
static const uint64_t sizes[] = {
    1,           511,          513,         1000,            2047,
    2049,        4095,         4097,        65535,           65537,
    1000000,     1049600,      1048575,     1048577,         2 * MiB - 1,
    2 * MiB + 513, 3 * 65536 + 1, 20 * MiB,  20 * MiB - 1,    0 /* random */,
    0 /* random */,
};
#define NCASES (sizeof sizes / sizeof sizes[0])

/* What each conversion does. */
struct variant {
    const char *name;
    bool qcow2;              /* -O qcow2 (else raw) */
    bool compress;           /* -c */
    const char *sparse;      /* -S value, NULL for the default */
    bool backing;            /* -B */
    int existing;            /* -n over a target full of other data (2: an
                                overlay whose backing file holds it) */
};

static const struct variant variants[] = {
    {"raw", false, false, NULL, false, false},
    {"qcow2", true, false, NULL, false, false},
    {"qcow2 -c", true, true, NULL, false, false},
    {"raw -S 0", false, false, "0", false, false},
    {"qcow2 -S 0", true, false, "0", false, false},
    {"qcow2 -c -S 0", true, true, "0", false, false},
    {"raw -S 4k", false, false, "4k", false, false},
    {"qcow2 -S 4k", true, false, "4k", false, false},
    {"qcow2 -B", true, false, NULL, true, false},
    {"qcow2 -B -S 4k", true, false, "4k", true, false},
    {"qcow2 -B -c", true, true, NULL, true, false},
    {"raw -n", false, false, NULL, false, true},
    {"qcow2 -n", true, false, NULL, false, true},
    {"qcow2 -n -c", true, true, NULL, false, true},
    {"raw -n -S 0", false, false, "0", false, true},
    {"qcow2 -n -S 512", true, false, "512", false, true},
    {"qcow2 -B -S 0", true, false, "0", true, false},
    {"qcow2 -n over an overlay", true, false, NULL, false, 2},
};
#define NVARIANTS (sizeof variants / sizeof variants[0])
#define PER_CASE 3

static const uint64_t cluster_sizes[] = {512, 4096, 65536, 65536, 2 * MiB};

static uint64_t below(uint64_t *seed, uint64_t n)
{
    return n ? rng_next(seed) % n : 0;
}

static uint64_t round512(uint64_t n)
{
    return (n + 511) / 512 * 512;
}

/* Writes LEN bytes of BUF at OFF of the open file FD. */
static void pwrite_all(int fd, const uint8_t *buf, uint64_t len, uint64_t off)
{
    while (len) {
        ssize_t w = pwrite(fd, buf, len, (off_t)off);
        ck_assert_msg(w > 0, "pwrite failed");
        buf += w;
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
}

/*
 * Fills WANT (SIZE bytes, zeroed by the caller) with runs of random data,
 * written zeroes, holes and data with zero runs inside, and writes it to the
 * raw file PATH of SIZE bytes, holes left as holes.  The last bytes are
 * always data: losing the tail must show.
 */
static void make_raw(const char *path, uint8_t *want, uint64_t size, uint64_t *seed)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_msg(fd >= 0, "cannot create %s", path);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    uint64_t scale = size > 4 * MiB ? 8 : 1;
    for (uint64_t off = 0; off < size;) {
        uint64_t len;
        switch (below(seed, 5)) {
        case 0: len = 1 + below(seed, 5000); break;
        case 1: len = 4096 * (1 + below(seed, 16)); break;
        case 2: len = 512 * (1 + below(seed, 300)); break;
        case 3: len = 65536 * (1 + below(seed, 8)); break;
        default: len = 1 + below(seed, MiB); break;
        }
        len *= 1 + below(seed, scale);
        if (len > size - off)
            len = size - off;
        unsigned kind = (unsigned)below(seed, 8);
        if (kind <= 3 || kind == 7) {
            fill_random(want + off, len, seed);
            if (kind == 7) {
                /* Zero runs inside the data, aligned and not. */
                for (int z = 0; z < 4; z++) {
                    uint64_t zo = below(seed, len), zl = 1 + below(seed, 3 * 4096);
                    if (z & 1)
                        zo &= ~(uint64_t)4095;
                    if (zl > len - zo)
                        zl = len - zo;
                    memset(want + off + zo, 0, zl);
                }
            }
        }
        if (kind != 5 && kind != 6) /* 5, 6: a hole */
            pwrite_all(fd, want + off, len, off);
        off += len;
    }
    uint64_t tail = 1 + below(seed, 700);
    if (tail > size)
        tail = size;
    fill_random(want + size - tail, tail, seed);
    pwrite_all(fd, want + size - tail, tail, size - tail);
    ck_assert_int_eq(close(fd), 0);
}

/* One source: its path, format, and what every byte of it reads as. */
struct source {
    char path[512];
    const char *fmt;
    uint8_t *want;           /* vsize bytes */
    uint64_t vsize;          /* its virtual size (a multiple of 512) */
    char desc[256];
};

static void make_source(struct source *s, unsigned i, uint64_t *seed)
{
    uint64_t size = sizes[i] ? sizes[i] : 1 + below(seed, 6 * MiB);
    s->vsize = round512(size);
    s->want = calloc(1, s->vsize);
    ck_assert_ptr_nonnull(s->want);
    const char *raw = scratch(fmt("src%02u.raw", i));
    make_raw(raw, s->want, size, seed);
    if (i % 2 == 0) {
        snprintf(s->path, sizeof s->path, "%s", raw);
        s->fmt = "raw";
        snprintf(s->desc, sizeof s->desc, "raw source of %" PRIu64 " bytes", size);
        return;
    }
    /* qcow2: some compressed, some with zero clusters, some fully allocated. */
    uint64_t cs = cluster_sizes[below(seed, sizeof cluster_sizes / sizeof cluster_sizes[0])];
    snprintf(s->path, sizeof s->path, "%s", scratch(fmt("src%02u.qcow2", i)));
    s->fmt = "qcow2";
    unsigned how = (unsigned)below(seed, 4);
    RUN_OK("qemu-img convert -f raw -O qcow2 -o cluster_size=%" PRIu64 " %s '%s' '%s'", cs,
           how == 1 ? "-c" : how == 2 ? "-S 0" : "", raw, s->path);
    unlink(raw);
    char extra[128] = "";
    if (how == 3 || how == 2) {
        /* Zero clusters (and partial ones) over data. */
        char cmds[512] = "";
        size_t n = 0;
        for (int z = 0; z < 3; z++) {
            uint64_t zo = below(seed, s->vsize / 512) * 512;
            uint64_t zl = 512 * (1 + below(seed, 512));
            if (zl > s->vsize - zo)
                zl = s->vsize - zo;
            n += (size_t)snprintf(cmds + n, sizeof cmds - n,
                                  " -c 'write -z %" PRIu64 " %" PRIu64 "'", zo, zl);
            memset(s->want + zo, 0, zl);
        }
        RUN_OK("qemu-io -f qcow2%s '%s'", cmds, s->path);
        snprintf(extra, sizeof extra, ", zero clusters");
    }
    snprintf(s->desc, sizeof s->desc, "qcow2 source of %" PRIu64 " bytes (cluster %" PRIu64
             "%s%s%s)", size, cs, how == 1 ? ", compressed" : "",
             how == 2 ? ", fully allocated" : "", extra);
}

/* A backing file for -B: the source with some runs changed, of a size near
 * the source's; returns its format and sets PATH. */
static const char *make_backing(const struct source *s, const char *path, uint64_t *seed)
{
    uint64_t bsize;
    switch (below(seed, 3)) {
    case 0: bsize = s->vsize; break;
    case 1: bsize = 1 + below(seed, s->vsize); break;
    default: bsize = s->vsize + 1 + below(seed, 300000); break;
    }
    uint8_t *b = calloc(1, bsize);
    ck_assert_ptr_nonnull(b);
    memcpy(b, s->want, bsize < s->vsize ? bsize : s->vsize);
    for (int n = 0; n < 4; n++) {
        uint64_t o = below(seed, bsize), l = 1 + below(seed, 200000);
        if (l > bsize - o)
            l = bsize - o;
        if (n & 1)
            memset(b + o, 0, l);
        else
            fill_random(b + o, l, seed);
    }
    bool qcow2 = below(seed, 2);
    const char *raw = qcow2 ? fmt("%s.raw", path) : path;
    write_file(raw, b, bsize);
    free(b);
    if (!qcow2)
        return "raw";
    RUN_OK("qemu-img convert -f raw -O qcow2 '%s' '%s'", raw, path);
    unlink(raw);
    return "qcow2";
}

/* A target for -n: of the source's virtual size, full of other data (or,
 * with OVERLAY, an empty qcow2 whose backing file is). */
static void make_existing(const struct source *s, const char *path, bool qcow2, uint64_t cs,
                          bool overlay, uint64_t *seed)
{
    uint8_t *g = malloc(s->vsize);
    ck_assert_ptr_nonnull(g);
    fill_random(g, s->vsize, seed);
    const char *raw = qcow2 ? fmt("%s.raw", path) : path;
    write_file(raw, g, s->vsize);
    free(g);
    if (overlay) {
        RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=%" PRIu64 " -b '%s' -F raw '%s'",
               cs, raw, path);
    } else if (qcow2) {
        RUN_OK("qemu-img convert -f raw -O qcow2 -o cluster_size=%" PRIu64 " '%s' '%s'", cs,
               raw, path);
        unlink(raw);
    }
}

/* Every byte of OUT (format OFMT) reads as the source, by qemu-img. */
static void verify(const struct source *s, const char *out, const char *ofmt, bool full,
                   bool check, const char *what)
{
    struct run *r = run("qemu-img compare -f %s -F %s '%s' '%s'", s->fmt, ofmt, s->path, out);
    ck_assert_msg(r->status == 0 && strcmp(r->out, "Images are identical.\n") == 0,
                  "%s: qemu-img compare exited %d: %s%s", what, r->status, r->out, r->err);
    const char *flat = fmt("%s.flat", out);
    RUN_OK("qemu-img convert -f %s -O raw '%s' '%s'", ofmt, out, flat);
    size_t len = 0;
    uint8_t *got = read_file(flat, &len);
    ck_assert_msg(len == s->vsize, "%s: the output holds %zu bytes, not %" PRIu64, what, len,
                  s->vsize);
    assert_same_bytes(got, s->want, len, 0, what);
    free(got);
    unlink(flat);
    if (check) {
        r = run("qemu-img check -f qcow2 '%s'", out);
        ck_assert_msg(r->status == 0, "%s: qemu-img check exited %d: %s%s", what, r->status,
                      r->out, r->err);
    }
    if (!full)
        return;
    /* -S 0: fully allocated, nothing left to holes or zero clusters. */
    if (!strcmp(ofmt, "raw")) {
        struct stat st;
        ck_assert_int_eq(stat(out, &st), 0);
        ck_assert_msg((uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size,
                      "%s: -S 0 left holes (%" PRIu64 " of %" PRIu64 " bytes allocated)", what,
                      (uint64_t)st.st_blocks * 512, (uint64_t)st.st_size);
    } else {
        r = run("qemu-img map -f qcow2 --output=json '%s'", out);
        ck_assert_int_eq(r->status, 0);
        ck_assert_msg(!strstr(r->out, "\"data\": false") && !strstr(r->out, "\"zero\": true") &&
                          !strstr(r->out, "\"depth\": 1"),
                      "%s: -S 0 output not fully allocated:\n%s", what, r->out);
    }
}

/* Without -W the chunks are written in guest order: OUT's data clusters
 * (a new qcow2 image) lie in the file in guest order, as qemu-img lays
 * them out. */
static void in_guest_order(const char *out, const char *what)
{
    struct run *r = run("qemu-img map -f qcow2 --output=json '%s'", out);
    ck_assert_int_eq(r->status, 0);
    uint64_t last = 0;
    for (const char *p = r->out; (p = strstr(p, "\"offset\": ")); p++) {
        /* (the image's own data: not the backing file's, depth 1) */
        const char *line = p;
        while (line > r->out && line[-1] != '\n')
            line--;
        if (!strstr(line, "\"depth\": 0,") || strstr(line, "\"depth\": 0,") > p)
            continue;
        uint64_t host = strtoull(p + strlen("\"offset\": "), NULL, 10);
        ck_assert_msg(host > last, "%s: data at host offset %" PRIu64 " after %" PRIu64
                      " (not in guest order):\n%s", what, host, last, r->out);
        last = host;
    }
}

START_TEST(convert_property)
{
    unsigned i = (unsigned)_i;
    uint64_t seed = 0x13c0de00ull + i;
    struct source s;
    make_source(&s, i, &seed);
    for (unsigned k = 0; k < PER_CASE; k++) {
        const struct variant *v = &variants[(i * PER_CASE + k) % NVARIANTS];
        uint64_t cs = cluster_sizes[below(&seed, sizeof cluster_sizes / sizeof cluster_sizes[0])];
        const char *ofmt = v->qcow2 ? "qcow2" : "raw";
        char out[512], what[2048], opts[1024] = "";
        snprintf(out, sizeof out, "%s", scratch(fmt("out%02u-%u.%s", i, k, ofmt)));
        size_t n = 0;
        if (v->qcow2 && !v->existing)
            n += (size_t)snprintf(opts + n, sizeof opts - n, " -o cluster_size=%" PRIu64, cs);
        if (v->compress)
            n += (size_t)snprintf(opts + n, sizeof opts - n, " -c");
        /* requests in flight, and whether writes wait for their turn */
        static const unsigned ms[] = {1, 2, 8, 16};
        n += (size_t)snprintf(opts + n, sizeof opts - n, " -m %u", ms[below(&seed, 4)]);
        bool any_order = below(&seed, 2);
        if (any_order)
            n += (size_t)snprintf(opts + n, sizeof opts - n, " -W");
        if (v->sparse)
            n += (size_t)snprintf(opts + n, sizeof opts - n, " -S %s", v->sparse);
        if (v->backing) {
            const char *bpath = scratch(fmt("back%02u-%u", i, k));
            const char *bfmt = make_backing(&s, bpath, &seed);
            n += (size_t)snprintf(opts + n, sizeof opts - n, " -B '%s' -F %s", bpath, bfmt);
        }
        if (v->existing) {
            make_existing(&s, out, v->qcow2, cs, v->existing == 2, &seed);
            n += (size_t)snprintf(opts + n, sizeof opts - n, " -n");
        }
        snprintf(what, sizeof what, "case %u (seed %#" PRIx64 ", %s) -> %s%s", i,
                 (uint64_t)0x13c0de00ull + i, s.desc, ofmt, opts);
        struct run *r = run("%s convert -f %s -O %s%s '%s' '%s'", vdisk_bin(), s.fmt, ofmt,
                            opts, s.path, out);
        ck_assert_msg(r->status == 0 && !*r->err, "%s: vdisk convert exited %d: %s", what,
                      r->status, r->err);
        bool full = v->sparse && !strcmp(v->sparse, "0");
        /* qemu-img check where the metadata is more than a plain copy's. */
        bool check = v->qcow2 && (v->compress || v->backing || v->existing);
        verify(&s, out, ofmt, full, check, what);
        if (v->qcow2 && !v->existing && !v->compress && !any_order)
            in_guest_order(out, what);
        run("rm -f '%s' '%s.raw' '%s'*", out, out, scratch(fmt("back%02u-%u", i, k)));
    }
    unlink(s.path);
    free(s.want);
}
END_TEST

/* Several sources of odd sizes, concatenated (each rounded up to 512 bytes
 * as qemu-img does), into raw and compressed qcow2. */
START_TEST(convert_concatenated)
{
    static const uint64_t part_sizes[] = {1000, 513, 70001, 4095};
    uint64_t seed = 0xc0ca7ull, total = 0;
    char args[4096] = "";
    size_t n = 0;
    for (unsigned p = 0; p < 4; p++)
        total += round512(part_sizes[p]);
    uint8_t *want = calloc(1, total);
    ck_assert_ptr_nonnull(want);
    uint64_t at = 0;
    for (unsigned p = 0; p < 4; p++) {
        const char *path = scratch(fmt("part%u.raw", p));
        make_raw(path, want + at, part_sizes[p], &seed);
        at += round512(part_sizes[p]);
        n += (size_t)snprintf(args + n, sizeof args - n, " '%s'", path);
    }
    static const char *const outs[] = {"-O raw", "-O qcow2 -c", "-O qcow2 -S 0"};
    for (unsigned o = 0; o < 3; o++) {
        const char *out = scratch(fmt("cat%u.img", o));
        RUN_OK("%s convert -f raw %s%s '%s'", vdisk_bin(), outs[o], args, out);
        const char *flat = scratch("cat.flat");
        RUN_OK("qemu-img convert -f %s -O raw '%s' '%s'", o ? "qcow2" : "raw", out, flat);
        size_t len = 0;
        uint8_t *got = read_file(flat, &len);
        ck_assert_msg(len == total, "%s: %zu bytes, not %" PRIu64, outs[o], len, total);
        assert_same_bytes(got, want, len, 0, outs[o]);
        free(got);
    }
    free(want);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("convert-prop");
    TCase *tc = tcase_create("convert");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, convert_property, 0, (int)NCASES);
    tcase_add_test(tc, convert_concatenated);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
