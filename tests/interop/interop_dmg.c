/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_dmg.c: Apple disk images (UDIF, ".dmg"), which
 * vdisk reads (it does not write them), built here byte by byte from random
 * data: raw, zero, ignore, zlib and bzip2 chunks in several mish blocks,
 * their tables in an XML property list or in the older resource fork.
 *   - Every byte vdisk reads is the disk's;
 *   - qemu-img 7.2 reads them alike (info, JSON info, map, the bytes; the
 *     image with bzip2 chunks only where qemu-img has its dmg-bz2 module,
 *     from qemu-block-extra);
 *   - dmg2img, an independent reader, makes the same raw disk;
 *   - a writable open is refused with the command that converts; a ".dmg"
 *     file without a trailer is refused, never read as raw, and a trailer
 *     in a file not named ".dmg" leaves it raw, as in QEMU;
 *   - each hostile field (the trailer's forks past the file, a chunk past
 *     the data fork or the disk, sector counts of 2^60, base64 garbage, a
 *     truncated property list, too many chunks, a chunk too big to
 *     decompress, overlapping chunks) refused with its exact message, and
 *     damaged or unreadable (ADC, lzfse) chunks failing the reads that meet
 *     them, naming the chunk.
 * QEMU's own sample (simple-dmg.dmg) is read in sample-images.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef VDISK_HAVE_BZIP2
#include <bzlib.h>
#endif

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

enum {
    T_ZERO = 0, T_RAW = 1, T_IGNORE = 2, T_ADC = (int)0x80000004, T_ZLIB = (int)0x80000005,
    T_BZIP2 = (int)0x80000006, T_LZFSE = (int)0x80000007,
};
#define T_COMMENT 0x7ffffffeu
#define T_END     0xffffffffu

struct cspec {
    uint32_t type, sectors;
};

/* A field of a mish block patched before it is encoded: entry ENTRY (-1:
 * the block's header) of block MISH, WIDTH bytes at OFF, big-endian. */
struct patch {
    int mish, entry;
    unsigned off, width;
    uint64_t value;
};

struct layout {
    bool rsrc;             /* the tables in the resource fork, not XML */
    uint64_t fork_at;      /* the data fork's offset (junk before it) */
    size_t per_mish;       /* chunks per mish block */
    const struct patch *patches;
    size_t n_patches;
};

struct built {
    uint8_t *file;
    size_t len;
    uint8_t *raw;
    size_t raw_len;
    size_t tables_off, tables_len, koly;
    uint64_t coff[16], clen[16];   /* each chunk's bytes in the file (16 first) */
};

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
    if (n == 0)
        return; /* (D may be NULL then: memcpy must not see it) */
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void base64(struct buf *b, const uint8_t *d, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col = 0;
    puts_(b, "\n\t\t\t\t");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        char q[4] = {a[v >> 18], a[(v >> 12) & 63], i + 1 < n ? a[(v >> 6) & 63] : '=',
                     i + 2 < n ? a[v & 63] : '='};
        put(b, q, 4);
        if ((col += 4) == 52 && i + 3 < n) {
            puts_(b, "\n\t\t\t\t");
            col = 0;
        }
    }
    puts_(b, "\n\t\t\t\t");
}

/* The payload of a chunk of TYPE for the disk bytes D (N bytes). */
static void payload(uint32_t type, const uint8_t *d, size_t n, struct buf *out)
{
    if (type == (uint32_t)T_RAW) {
        put(out, d, n);
    } else if (type == (uint32_t)T_ZLIB) {
        uLongf len = compressBound(n);
        uint8_t *c = malloc(len);
        ck_assert_int_eq(compress2(c, &len, d, n, 9), Z_OK);
        put(out, c, len);
        free(c);
    } else if (type == (uint32_t)T_BZIP2) {
#ifdef VDISK_HAVE_BZIP2
        unsigned len = (unsigned)(n + n / 100 + 600);
        char *c = malloc(len);
        ck_assert_int_eq(BZ2_bzBuffToBuffCompress(c, &len, (char *)d, (unsigned)n, 9, 0, 0),
                         BZ_OK);
        put(out, c, len);
        free(c);
#else
        ck_abort_msg("built without libbz2");
#endif
    } else if (type == (uint32_t)T_ADC || type == (uint32_t)T_LZFSE) {
        put(out, d, n < 64 ? n : 64); /* never decoded */
    }
}

/* Builds a DMG of the chunks C (N), as L lays it out, as scratch(NAME); the
 * disk it holds in B->raw. */
static void build(const char *name, const struct cspec *c, size_t n, const struct layout *l,
                  uint64_t seed, struct built *b)
{
    uint64_t sectors = 0;
    for (size_t i = 0; i < n; i++)
        sectors += c[i].sectors;
    memset(b, 0, sizeof *b);
    b->raw_len = (size_t)sectors * 512;
    b->raw = calloc(1, b->raw_len ? b->raw_len : 1);
    struct buf file = {0}, fork = {0}, tables = {0};
    /* The disk: random bytes, half of each chunk's sectors a pattern. */
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t bytes = (size_t)c[i].sectors * 512;
        if (c[i].type != (uint32_t)T_ZERO && c[i].type != (uint32_t)T_IGNORE) {
            fill_random(b->raw + at, bytes / 2, &seed);
            memset(b->raw + at + bytes / 2, 0x30 + (int)i, bytes - bytes / 2);
        }
        at += bytes;
    }
    for (uint64_t j = 0; j < l->fork_at; j++) {
        uint8_t junk = 0xa5;
        put(&file, &junk, 1);
    }
    /* The mish blocks and the data fork. */
    size_t nm = (n + l->per_mish - 1) / l->per_mish;
    uint8_t **mish = calloc(nm, sizeof *mish);
    size_t *mlen = calloc(nm, sizeof *mlen);
    uint64_t sector = 0;
    for (size_t m = 0; m < nm; m++) {
        size_t first = m * l->per_mish, k = n - first < l->per_mish ? n - first : l->per_mish;
        size_t entries = k + 2; /* a comment first, the terminator last */
        mlen[m] = 204 + entries * 40;
        uint8_t *mb = mish[m] = calloc(1, mlen[m]);
        memcpy(mb, "mish", 4);
        be32_store(mb + 4, 1);
        be64_store(mb + 8, sector);
        be64_store(mb + 0x18, fork.len);
        be32_store(mb + 200, (uint32_t)entries);
        uint64_t rel_sector = 0, base_fork = fork.len;
        uint8_t *e = mb + 204;
        be32_store(e, T_COMMENT);
        e += 40;
        for (size_t i = first; i < first + k; i++, e += 40) {
            size_t before = fork.len;
            payload(c[i].type, b->raw + sector * 512, (size_t)c[i].sectors * 512, &fork);
            if (i < 16) {
                b->coff[i] = l->fork_at + before;
                b->clen[i] = fork.len - before;
            }
            be32_store(e, c[i].type);
            be64_store(e + 8, rel_sector);
            be64_store(e + 0x10, c[i].sectors);
            be64_store(e + 0x18, before - base_fork);
            be64_store(e + 0x20, fork.len - before);
            rel_sector += c[i].sectors;
            sector += c[i].sectors;
        }
        be32_store(e, T_END);
        be64_store(e + 8, rel_sector);
        be64_store(mb + 16, rel_sector);
    }
    for (size_t p = 0; p < l->n_patches; p++) {
        const struct patch *q = &l->patches[p];
        uint8_t *f = mish[q->mish] + (q->entry < 0 ? 0 : 204 + 40 * (size_t)(q->entry + 1)) +
                     q->off;
        for (unsigned i = 0; i < q->width; i++)
            f[i] = (uint8_t)(q->value >> (8 * (q->width - 1 - i)));
    }
    uint64_t fork_len = fork.len;
    put(&file, fork.p, fork.len);
    b->tables_off = file.len;
    if (l->rsrc) {
        uint8_t h[256] = {0};
        size_t data_len = 0;
        for (size_t m = 0; m < nm; m++)
            data_len += 4 + mlen[m];
        be32_store(h, 256);
        be32_store(h + 4, (uint32_t)(256 + data_len));
        be32_store(h + 8, (uint32_t)data_len);
        be32_store(h + 12, 30);
        put(&tables, h, sizeof h);
        for (size_t m = 0; m < nm; m++) {
            uint8_t len[4];
            be32_store(len, (uint32_t)mlen[m]);
            put(&tables, len, 4);
            put(&tables, mish[m], mlen[m]);
        }
        uint8_t map[30] = {0};
        put(&tables, map, sizeof map);
    } else {
        puts_(&tables, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC "
                       "\"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/"
                       "PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n"
                       "\t<key>resource-fork</key>\n\t<dict>\n\t\t<key>blkx</key>\n"
                       "\t\t<array>\n");
        for (size_t m = 0; m < nm; m++) {
            char s[256];
            snprintf(s, sizeof s, "\t\t\t<dict>\n\t\t\t\t<key>Attributes</key>\n\t\t\t\t"
                     "<string>0x0050</string>\n\t\t\t\t<key>CFName</key>\n\t\t\t\t<string>"
                     "part %zu</string>\n\t\t\t\t<key>Data</key>\n\t\t\t\t<data>", m);
            puts_(&tables, s);
            base64(&tables, mish[m], mlen[m]);
            snprintf(s, sizeof s, "</data>\n\t\t\t\t<key>ID</key>\n\t\t\t\t<string>%d</string>"
                     "\n\t\t\t\t<key>Name</key>\n\t\t\t\t<string>part %zu</string>\n"
                     "\t\t\t</dict>\n", (int)m - 1, m);
            puts_(&tables, s);
        }
        puts_(&tables, "\t\t</array>\n\t</dict>\n</dict>\n</plist>\n");
    }
    b->tables_len = tables.len;
    put(&file, tables.p, tables.len);
    uint8_t k[512] = {0};
    memcpy(k, "koly", 4);
    be32_store(k + 4, 4);
    be32_store(k + 8, 512);
    be32_store(k + 12, 1);
    be64_store(k + 0x18, l->fork_at);
    be64_store(k + 0x20, fork_len);
    if (l->rsrc) {
        be64_store(k + 0x28, b->tables_off);
        be64_store(k + 0x30, b->tables_len);
    } else {
        be64_store(k + 0xd8, b->tables_off);
        be64_store(k + 0xe0, b->tables_len);
    }
    be32_store(k + 0x38, 1);
    be32_store(k + 0x3c, 1);
    be32_store(k + 0x1e8, 1);
    be64_store(k + 0x1ec, sectors);
    b->koly = file.len;
    put(&file, k, sizeof k);
    b->file = file.p;
    b->len = file.len;
    write_file(scratch(name), b->file, b->len);
    for (size_t m = 0; m < nm; m++)
        free(mish[m]);
    free(mish);
    free(mlen);
    free(fork.p);
    free(tables.p);
}

static void built_free(struct built *b)
{
    free(b->file);
    free(b->raw);
}

/* vdisk's raw copy of NAME is the disk B holds, byte for byte. */
static void reads_exactly(const char *name, const struct built *b)
{
    RUN_OK("cd '%s' && rm -f v.raw && '%s' convert -O raw '%s' v.raw", scratch_dir(),
           vdisk_bin(), name);
    size_t n;
    uint8_t *v = read_file(scratch("v.raw"), &n);
    ck_assert_uint_eq(n, b->raw_len);
    assert_same_bytes(v, b->raw, n, 0, name);
    free(v);
    /* Reads of odd sizes and places through the library, across chunks. */
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    ck_assert_msg(vdisk_open(&d, scratch(name), o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    uint64_t seed = 77;
    uint8_t *buf = malloc(256 * 1024);
    for (int i = 0; i < 40; i++) {
        uint64_t r;
        fill_random(&r, sizeof r, &seed);
        size_t len = (size_t)(r % (256 * 2) + 1) * 512;
        uint64_t off = (r >> 20) % (b->raw_len / 512) * 512;
        if (off + len > b->raw_len)
            len = b->raw_len - off;
        ck_assert_msg(vdisk_pread(d, buf, len, off) == 0, "%s", vdisk_get_error());
        assert_same_bytes(buf, b->raw + off, len, off, name);
    }
    free(buf);
    vdisk_close(d);
}

/* dmg2img's raw disk of NAME is the disk B holds. */
static void same_as_dmg2img(const char *name, const struct built *b)
{
    RUN_OK("cd '%s' && rm -f d.raw && dmg2img -s -i '%s' -o d.raw", scratch_dir(), name);
    size_t n;
    uint8_t *d = read_file(scratch("d.raw"), &n);
    ck_assert_uint_eq(n, b->raw_len);
    assert_same_bytes(d, b->raw, n, 0, fmt("%s by dmg2img", name));
    free(d);
}

static const struct cspec no_bzip2[] = {
    {T_RAW, 64}, {T_ZERO, 128}, {T_ZLIB, 256}, {T_IGNORE, 32}, {T_ZLIB, 1},
    {T_RAW, 3}, {T_ZLIB, 2048}, {T_ZERO, 4096}, {T_ZLIB, 100},
};
#define N_NO_BZIP2 (sizeof no_bzip2 / sizeof no_bzip2[0])

START_TEST(images_read_exactly)
{
    struct built b;
    struct layout xml = {.per_mish = 3};
    build("x.dmg", no_bzip2, N_NO_BZIP2, &xml, 1, &b);
    reads_exactly("x.dmg", &b);
    reads_as_qemu_img("x.dmg");
    RUN_OK("cd '%s' && cmp v.raw q.raw", scratch_dir());
    built_free(&b);
    /* The older layout, and a data fork that does not start the file. */
    struct layout rsrc = {.rsrc = true, .fork_at = 4096 + 7, .per_mish = 2};
    build("r.dmg", no_bzip2, N_NO_BZIP2, &rsrc, 2, &b);
    reads_exactly("r.dmg", &b);
    reads_as_qemu_img("r.dmg");
    built_free(&b);
    /* One mish block of everything, bzip2 too (qemu-img cannot read it
     * here: no dmg-bz2 module). */
#ifdef VDISK_HAVE_BZIP2
    static const struct cspec all[] = {
        {T_BZIP2, 512}, {T_RAW, 8}, {T_ZERO, 100}, {T_ZLIB, 64}, {T_IGNORE, 1},
        {T_BZIP2, 1}, {T_ZLIB, 33}, {T_BZIP2, 2048},
    };
    struct layout one = {.per_mish = 64};
    build("b.dmg", all, sizeof all / sizeof all[0], &one, 3, &b);
    reads_exactly("b.dmg", &b);
    /* Where qemu-img has its dmg-bz2 module (qemu-block-extra), it reads
     * them alike. */
    if (run("cd '%s' && qemu-img convert -O raw b.dmg q.raw", scratch_dir())->status == 0)
        reads_as_qemu_img("b.dmg");
    built_free(&b);
#endif
    /* A writable open says how to convert. */
    struct run *r = run("cd '%s' && '%s' io -c 'write 0 512' x.dmg", scratch_dir(),
                        vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: x.dmg: vdisk reads DMG images but does not "
                             "write them (open it read-only, or convert it: vdisk convert -f "
                             "dmg -O qcow2 x.dmg IMAGE.qcow2)\n");
}
END_TEST

/* dmg2img (which writes the chunks one after the other, ignoring where the
 * tables place them, and nothing for an ignore chunk) makes the same disk of
 * an image of consecutive raw, zero, zlib and bzip2 chunks. */
START_TEST(same_as_dmg2img_reads_them)
{
    require_program("dmg2img");
    static const struct cspec c[] = {
        {T_RAW, 64}, {T_ZERO, 128}, {T_ZLIB, 256}, {T_ZLIB, 1}, {T_RAW, 3},
#ifdef VDISK_HAVE_BZIP2
        {T_BZIP2, 300},
#endif
        {T_ZLIB, 2048}, {T_ZERO, 4096},
    };
    struct built b;
    struct layout xml = {.per_mish = 2};
    build("d.dmg", c, sizeof c / sizeof c[0], &xml, 4, &b);
    reads_exactly("d.dmg", &b);
    same_as_dmg2img("d.dmg", &b);
    built_free(&b);
}
END_TEST

/* By name, as QEMU: a ".dmg" without a trailer is refused, never raw; a
 * trailer in a file named otherwise leaves it raw. */
START_TEST(probed_by_name)
{
    struct built b;
    struct layout xml = {.per_mish = 4};
    build("p.dmg", no_bzip2, N_NO_BZIP2, &xml, 5, &b);
    write_file(scratch("p.img"), b.file, b.len);
    same_as_qemu_img("info", "p.img");
    uint8_t z[4096] = {0};
    write_file(scratch("z.dmg"), z, sizeof z);
    struct run *r = run("cd '%s' && '%s' info z.dmg", scratch_dir(), vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "");
    ck_assert_str_eq(r->err, "vdisk: z.dmg: not a DMG image (no \"koly\" trailer "
                             "in its last 1023 bytes)\n");
    r = run("cd '%s' && qemu-img info z.dmg", scratch_dir());
    ck_assert_int_eq(r->status, 1);
    write_file(scratch("s.dmg"), z, 100);
    open_refused(NULL, scratch("s.dmg"), -EINVAL, "the file holds 100 bytes; a DMG image ends "
                 "with a trailer of 512");
    built_free(&b);
}
END_TEST

/* Reading PATH at OFF fails with ERR and MSG (after the file's name). */
static void read_fails(const char *path, uint64_t off, int err, const char *msg)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    ck_assert_msg(vdisk_open(&d, path, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    uint8_t buf[512];
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, off), err);
    ck_assert_msg(strstr(vdisk_get_error(), fmt("%s: %s", path, msg)) != NULL, "%s",
                  vdisk_get_error());
    vdisk_close(d);
}

/* A copy of B's file as scratch(NAME), the big-endian WIDTH bytes at OFF
 * set to V. */
static const char *patched(const struct built *b, const char *name, size_t off,
                           unsigned width, uint64_t v)
{
    uint8_t *f = malloc(b->len);
    memcpy(f, b->file, b->len);
    for (unsigned i = 0; i < width; i++)
        f[off + i] = (uint8_t)(v >> (8 * (width - 1 - i)));
    write_file(scratch(name), f, b->len);
    free(f);
    return scratch(name);
}

START_TEST(hostile_trailers_refused)
{
    struct built b;
    struct layout xml = {.per_mish = 3};
    build("g.dmg", no_bzip2, N_NO_BZIP2, &xml, 6, &b);
    size_t k = b.koly;
#define refused(...) open_refused("dmg", __VA_ARGS__)
    refused(patched(&b, "f1.dmg", k + 0x20, 8, 1ull << 40), -EINVAL,
            fmt("the data fork (1099511627776 bytes at offset 0, koly + 0x18) does not end "
                "before the trailer (offset %zu)", k));
    refused(patched(&b, "f2.dmg", k + 0x18, 8, k + 1), -EINVAL,
            fmt("the data fork (%zu bytes at offset %zu, koly + 0x18) does not end before the "
                "trailer (offset %zu)", b.tables_off, k + 1, k));
    refused(patched(&b, "x1.dmg", k + 0xd8, 8, 1ull << 50), -EINVAL,
            fmt("the XML property list (%zu bytes at offset 1125899906842624, koly + 0xd8) "
                "does not end before the trailer (offset %zu)", b.tables_len, k));
    refused(patched(&b, "x2.dmg", k + 0xe0, 8, UINT64_MAX), -EINVAL,
            fmt("the XML property list (18446744073709551615 bytes at offset %zu, koly + "
                "0xd8) does not end before the trailer (offset %zu)", b.tables_off, k));
    refused(patched(&b, "r1.dmg", k + 0x30, 8, 1ull << 40), -EINVAL,
            fmt("the resource fork (1099511627776 bytes at offset 0, koly + 0x28) does not "
                "end before the trailer (offset %zu)", k));
    refused(patched(&b, "x3.dmg", k + 0xe0, 8, 0), -EINVAL,
            "the trailer names neither a resource fork nor an XML property list (koly + 0x30 "
            "and + 0xe0 are 0): no chunk tables");
    refused(patched(&b, "s1.dmg", k + 0x1ec, 8, 1ull << 60), -EFBIG,
            "a disk of 1152921504606846976 sectors (koly + 0x1ec); vdisk reads at most "
            "18014398509481983");
    /* A disk shorter than its chunks: the last one lies past it. */
    refused(patched(&b, "s2.dmg", k + 0x1ec, 8, 4096), -EINVAL,
            "chunk 12 (zero) covers 4096 sectors from sector 484 + 2048, past the disk's 4096 "
            "sectors");
    refused(patched(&b, "m1.dmg", k, 4, 0), -EINVAL,
            "not a DMG image (no \"koly\" trailer in its last 1023 bytes)");
    /* The property list: base64 garbage, cut short inside <data>, too
     * big. */
    const char *x = (const char *)b.file + b.tables_off;
    size_t data = (size_t)(strstr(x, "<data>") - x) + 6;
    refused(patched(&b, "b1.dmg", b.tables_off + data + 10, 1, '*'), -EINVAL,
            fmt("the XML property list's <data> at offset %zu is not base64 (byte 0x2a at "
                "offset %zu)", b.tables_off + data, b.tables_off + data + 10));
    refused(patched(&b, "b2.dmg", b.tables_off + data + 10, 1, '='), -EINVAL,
            fmt("the XML property list's <data> at offset %zu is not base64 (byte 0x3d at "
                "offset %zu)", b.tables_off + data, b.tables_off + data + 10));
    /* Padding in the middle: the data after it is refused. */
    refused(patched(&b, "b3.dmg", b.tables_off + data + 11, 2, ('=' << 8) | '='), -EINVAL,
            fmt("the XML property list's <data> at offset %zu is not base64 (byte 0x%02x at "
                "offset %zu)", b.tables_off + data, b.file[b.tables_off + data + 13],
                b.tables_off + data + 13));
    size_t end = (size_t)(strstr(x, "</data>") - x);
    refused(patched(&b, "t1.dmg", k + 0xe0, 8, end + 3), -EINVAL,
            fmt("the XML property list (%zu bytes at offset %zu) ends inside a <data> element "
                "(offset %zu)", end + 3, b.tables_off, b.tables_off + data - 6));
    refused(patched(&b, "t2.dmg", k + 0xe0, 8, end - 1), -EINVAL,
            fmt("the XML property list (%zu bytes at offset %zu) ends inside a <data> element "
                "(offset %zu)", end - 1, b.tables_off, b.tables_off + data - 6));
    /* A list, and a resource fork, of 17 MiB (the file made that big). */
    size_t big = 17u << 20;
    uint8_t *f = calloc(1, big + 512);
    memcpy(f + big, b.file + k, 512);
    be64_store(f + big + 0xd8, 0);
    be64_store(f + big + 0xe0, big);
    write_file(scratch("l1.dmg"), f, big + 512);
    refused(scratch("l1.dmg"), -EFBIG, "an XML property list of 17825792 bytes (koly + 0xe0); "
            "vdisk reads at most 16777216");
    be64_store(f + big + 0x30, big);
    write_file(scratch("l2.dmg"), f, big + 512);
    refused(scratch("l2.dmg"), -EFBIG, "a resource fork of 17825792 bytes (koly + 0x30); vdisk "
            "reads at most 16777216");
    free(f);
    built_free(&b);
#undef refused
}
END_TEST

START_TEST(hostile_chunks_refused)
{
    struct built b;
#define refused(...) open_refused("dmg", __VA_ARGS__)
#define BUILD(name, ...)                                                                   \
    do {                                                                                   \
        static const struct patch p[] = {__VA_ARGS__};                                     \
        struct layout l = {.per_mish = 3, .patches = p, .n_patches = sizeof p / sizeof p[0]}; \
        build(name, no_bzip2, N_NO_BZIP2, &l, 7, &b);                                      \
    } while (0)
    /* (Chunks are numbered as the tables list their entries, comments and
     * terminators too: block 0 holds entries 0 to 4, raw, zero and zlib
     * being 1, 2 and 3; block 1 (from sector 448) entries 5 to 9; block 2
     * (from sector 484) 10 to 14.) */
    BUILD("c1.dmg", {0, 2, 0x18, 8, 1u << 30});
    refused(scratch("c1.dmg"), -EINVAL, fmt("chunk 3 (zlib) lies at offset 0 + 1073741824 "
            "for %llu bytes, past the data fork's end (offset %zu)",
            (unsigned long long)b.clen[2], b.tables_off));
    built_free(&b);
    BUILD("c2.dmg", {0, 1, 0x10, 8, 1ull << 60});
    refused(scratch("c2.dmg"), -EINVAL, "chunk 2 (zero) covers 1152921504606846976 sectors "
            "from sector 0 + 64, past the disk's 6728 sectors");
    built_free(&b);
    BUILD("c3.dmg", {0, 1, 0x08, 8, UINT64_MAX});
    refused(scratch("c3.dmg"), -EINVAL, "chunk 2 (zero) covers 128 sectors from sector 0 + "
            "18446744073709551615, past the disk's 6728 sectors");
    built_free(&b);
    /* Too big to decompress (in a disk made big enough), too long. */
    BUILD("c4.dmg", {0, 2, 0x10, 8, 131073});
    refused(patched(&b, "c4b.dmg", b.koly + 0x1ec, 8, 1u << 20), -EINVAL, "chunk 3 (zlib) "
            "holds 131073 sectors; vdisk reads at most 131072 sectors (64 MiB) a chunk");
    built_free(&b);
    BUILD("c5.dmg", {1, 1, 0x20, 8, (64u << 20) + 1});
    refused(scratch("c5.dmg"), -EINVAL, "chunk 7 (zlib) is 67108865 bytes long; vdisk reads "
            "at most 67108864 bytes a chunk");
    built_free(&b);
    BUILD("c6.dmg", {1, 2, 0x20, 8, 1535});
    refused(scratch("c6.dmg"), -EINVAL, "chunk 8 (raw) holds 1535 bytes for 3 sectors");
    built_free(&b);
    /* Block 1 moved back over block 0's zlib chunk. */
    BUILD("o1.dmg", {1, -1, 0x08, 8, 400});
    refused(scratch("o1.dmg"), -EINVAL, "chunks 3 (sectors 192 to 447) and 6 (from sector "
            "400) overlap");
    built_free(&b);
    /* Unsorted but apart (block 1 and 2 swapped in place): read right. */
    BUILD("u1.dmg", {1, -1, 0x08, 8, 6728 - 36}, {2, -1, 0x08, 8, 448});
    uint8_t *moved = malloc(b.raw_len);
    memcpy(moved, b.raw, 448 * 512);
    memcpy(moved + 448 * 512, b.raw + 484 * 512, (6728 - 484) * 512);
    memcpy(moved + (6728 - 36) * 512, b.raw + 448 * 512, 36 * 512);
    free(b.raw);
    b.raw = moved;
    reads_exactly("u1.dmg", &b);
    built_free(&b);
    /* The resource fork: a resource longer than what is left. */
    struct layout rl = {.rsrc = true, .per_mish = 3};
    build("rs.dmg", no_bzip2, N_NO_BZIP2, &rl, 8, &b);
    refused(patched(&b, "rs1.dmg", b.tables_off + 256, 4, 0x7fffffff), -EINVAL,
            fmt("the resource at offset 256 of the resource fork claims 2147483647 bytes; "
                "%zu are left", b.tables_len - 256 - 30 - 4));
    refused(patched(&b, "rs2.dmg", b.tables_off + 8, 4, 0x7fffffff), -EINVAL,
            fmt("the resource fork's data (2147483647 bytes at 256) does not lie in the fork "
                "(%zu bytes at offset %zu)", b.tables_len, b.tables_off));
    built_free(&b);
    /* Too many chunks: 2^18 + 1 of one sector each. */
    size_t many = (1u << 18) + 1;
    struct cspec *c = malloc(many * sizeof *c);
    for (size_t i = 0; i < many; i++)
        c[i] = (struct cspec){T_ZERO, 1};
    struct layout ml = {.rsrc = true, .per_mish = many};
    build("many.dmg", c, many, &ml, 9, &b);
    refused(scratch("many.dmg"), -EFBIG, "the chunk tables list more than 262144 chunks, the "
            "most vdisk reads");
    built_free(&b);
    free(c);
#undef BUILD
#undef refused
}
END_TEST

/* Chunks that open but do not read: damaged zlib, ADC, lzfse. */
START_TEST(bad_chunks_fail_reads)
{
    struct built b;
    struct layout xml = {.per_mish = 3};
    build("z.dmg", no_bzip2, N_NO_BZIP2, &xml, 10, &b);
    const char *z = patched(&b, "z1.dmg", b.coff[2] + 4, 4, 0xdeadbeef);
    read_fails(z, 192 * 512, -EIO, fmt("chunk 3 (zlib, %llu bytes at offset %llu) does not "
               "decompress to 256 sectors (zlib ", (unsigned long long)b.clen[2],
               (unsigned long long)b.coff[2]));
    /* The chunks before it still read. */
    read_fails(z, 200 * 512, -EIO, "chunk 3 (zlib");
    built_free(&b);
    static const struct cspec c[] = {{T_RAW, 8}, {T_ADC, 16}, {T_LZFSE, 16}, {T_ZERO, 8}};
    struct layout one = {.per_mish = 8};
    build("a.dmg", c, 4, &one, 11, &b);
    read_fails(scratch("a.dmg"), 8 * 512, -ENOTSUP, fmt("chunk 2 (sectors 8 to 23, 64 bytes "
               "at offset %llu) is compressed with ADC, which vdisk does not read",
               (unsigned long long)b.coff[1]));
    read_fails(scratch("a.dmg"), 30 * 512, -ENOTSUP, fmt("chunk 3 (sectors 24 to 39, 64 bytes "
               "at offset %llu) is compressed with lzfse, which vdisk does not read",
               (unsigned long long)b.coff[2]));
    built_free(&b);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    Suite *s = suite_create("interop-dmg");
    TCase *tc = tcase_create("dmg");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, images_read_exactly);
    tcase_add_test(tc, same_as_dmg2img_reads_them);
    tcase_add_test(tc, probed_by_name);
    tcase_add_test(tc, hostile_trailers_refused);
    tcase_add_test(tc, hostile_chunks_refused);
    tcase_add_test(tc, bad_chunks_fail_reads);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
