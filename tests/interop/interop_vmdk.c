/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_vmdk.c: VMDK images, which vdisk reads (it does not
 * write them yet), against qemu-img 7.2 and qemu-io: every subformat
 * qemu-img makes (monolithicSparse, monolithicFlat, twoGbMaxExtentSparse,
 * twoGbMaxExtentFlat, streamOptimized) written by QEMU, read
 * byte-identically with the same info (format-specific data included),
 * map and check output; a parent chain, with the parentCID checked;
 * extents confined like backing files; writes refused with the convert
 * command; hostile headers and descriptors refused with exact messages; a
 * grain past the end of its file failing the read that meets it, and
 * checked as qemu-img checks it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static const char *const subformats[] = {"monolithicSparse", "monolithicFlat",
                                         "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"};

START_TEST(qemu_images_read_identically)
{
    static const char *const sizes[] = {"1M", "5000192", "20M"};
    for (size_t f = 0; f < sizeof subformats / sizeof subformats[0]; f++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            RUN_OK("cd '%s' && rm -f q*.vmdk && qemu-img create -q -f vmdk -o subformat=%s "
                   "q.vmdk %s && qemu-io -f vmdk -c 'write -P 0x5a 100000 100000' "
                   "-c 'write -P 0x77 512k 4k' q.vmdk >/dev/null", scratch_dir(), subformats[f],
                   sizes[i]);
            if (strcmp(sizes[i], "20M") == 0)
                RUN_OK("cd '%s' && qemu-io -f vmdk -c 'write -z 2M 1M' -c 'write -P 0xa5 3M 1M' "
                       "-c 'write -P 0x11 %s 512' q.vmdk >/dev/null", scratch_dir(),
                       "20971008");
            same_as_qemu_img("info", "q.vmdk");
            same_as_qemu_img("info", "--output=json q.vmdk");
            same_as_qemu_img("map", "q.vmdk");
            same_as_qemu_img("map", "--output=json q.vmdk");
            same_as_qemu_img("check", "q.vmdk");
            same_as_qemu_img("check", "--output=json q.vmdk");
            same_raw_as_qemu_img("q.vmdk");
            same_as_qemu_img("compare", "-f vmdk -F raw q.vmdk q.raw");
        }
    }
    /* A 5 GiB twoGbMaxExtentSparse: three extents. */
    RUN_OK("cd '%s' && rm -f q*.vmdk && qemu-img create -q -f vmdk -o "
           "subformat=twoGbMaxExtentSparse q.vmdk 5G && qemu-io -f vmdk -c 'write -P 1 2047M 2M' "
           "-c 'write -P 2 4095M 1M' q.vmdk >/dev/null", scratch_dir());
    same_as_qemu_img("info", "--output=json q.vmdk");
    same_as_qemu_img("map", "--output=json q.vmdk");
    same_as_qemu_img("compare", "q.vmdk q.vmdk");
    RUN_OK("cd '%s' && '%s' convert -O qcow2 q.vmdk v.qcow2 && qemu-img compare q.vmdk v.qcow2",
           scratch_dir(), vdisk_bin());
}
END_TEST

START_TEST(stream_optimized)
{
    /* Random bytes with a run of zeroes, compressed grain by grain; the
     * last grain holds 1536 bytes (QEMU compresses only those). */
    uint64_t seed = 7;
    size_t n = (6u << 20) + 1536;
    uint8_t *b = malloc(n);
    fill_random(b, n, &seed);
    memset(b + (2u << 20), 0, 1u << 20);
    memset(b + (4u << 20), 0x33, 1u << 20);
    write_file(scratch("src.raw"), b, n);
    free(b);
    RUN_OK("cd '%s' && rm -f so.vmdk && qemu-img convert -O vmdk -o subformat=streamOptimized "
           "src.raw so.vmdk", scratch_dir());
    same_as_qemu_img("info", "so.vmdk");
    same_as_qemu_img("info", "--output=json so.vmdk");
    same_as_qemu_img("map", "--output=json so.vmdk");
    same_as_qemu_img("check", "so.vmdk");
    same_raw_as_qemu_img("so.vmdk");
    RUN_OK("cd '%s' && cmp v.raw src.raw", scratch_dir());
}
END_TEST

START_TEST(parent_chain)
{
    RUN_OK("cd '%s' && rm -f base.vmdk child.vmdk && qemu-img create -q -f vmdk base.vmdk 10M && "
           "qemu-io -f vmdk -c 'write -P 0x33 0 10M' base.vmdk >/dev/null && "
           "qemu-img create -q -f vmdk -b base.vmdk -F vmdk child.vmdk 10M && "
           "qemu-io -f vmdk -c 'write -P 0x44 64k 64k' -c 'write -P 0x55 9M 4k' child.vmdk "
           ">/dev/null", scratch_dir());
    same_as_qemu_img("info", "--backing-chain child.vmdk");
    same_as_qemu_img("info", "--backing-chain --output=json child.vmdk");
    same_as_qemu_img("map", "--output=json child.vmdk");
    same_raw_as_qemu_img("child.vmdk");
    /* The base changed after the child was made: its CID no longer is the
     * child's parentCID. */
    size_t n;
    uint8_t *b = read_file(scratch("base.vmdk"), &n);
    char *cid = memmem(b, n, "\nCID=", 5);
    ck_assert_ptr_nonnull(cid);
    /* QEMU prints the CID without leading zeroes: the value may be shorter
     * than 8 digits, so the rest of the descriptor moves up into its NUL
     * padding. */
    char *val = cid + 5, *eol = memchr(val, '\n', n - (size_t)(val - (char *)b));
    ck_assert_ptr_nonnull(eol);
    char *pad = memchr(eol, 0, n - (size_t)(eol - (char *)b));
    size_t len = (size_t)(eol - val);
    ck_assert(pad && len <= 8 && (size_t)(n - (size_t)(pad - (char *)b)) >= 8 - len);
    memmove(val + 8, eol, (size_t)(pad - eol));
    memcpy(val, "0badc0de", 8);
    write_file(scratch("base.vmdk"), b, n);
    free(b);
    struct run *r = run("cd '%s' && '%s' info child.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "vdisk: child.vmdk: the parent 'base.vmdk' has CID "
                                 "0badc0de; the descriptor's parentCID is ") != NULL, "%s",
                  r->err);
}
END_TEST

START_TEST(extents_confined_flat_written)
{
    RUN_OK("cd '%s' && mkdir -p d && rm -f d/*.vmdk e-flat.vmdk && qemu-img create -q -f vmdk "
           "-o subformat=monolithicFlat d/e.vmdk 1M && mv d/e-flat.vmdk . && "
           "sed -i 's|\"e-flat.vmdk\"|\"../e-flat.vmdk\"|' d/e.vmdk", scratch_dir());
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    const char *e = scratch("d/e.vmdk");
    ck_assert_msg(vdisk_open(&d, e, o) == 0, "%s", vdisk_get_error());
    vdisk_close(d);
    ck_assert_int_eq(vdisk_options_set(o, "backing-confine", "on"), 0);
    ck_assert_int_eq(vdisk_open(&d, e, o), -EPERM);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: the extent file name "
                                            "'../e-flat.vmdk' leads outside the image's folder, "
                                            "which backing-confine=on forbids", e));
    vdisk_options_free(o);
    /* A flat extent is written in place. */
    struct run *r = run("cd '%s' && '%s' io -c 'write -P 0x5c 4k 8k' d/e.vmdk && "
                        "qemu-io -f vmdk -c 'read -P 0x5c 4k 8k' d/e.vmdk", scratch_dir(),
                        vdisk_bin());
    ck_assert_msg(r->status == 0 && !strstr(r->out, "Pattern"), "%s%s", r->out, r->err);
    /* A streamOptimized image takes each grain once, whole (or to the end
     * of the disk), as QEMU writes it. */
    RUN_OK("cd '%s' && head -c 1M /dev/zero > z.raw && rm -f so2.vmdk && qemu-img convert -O "
           "vmdk -o subformat=streamOptimized z.raw so2.vmdk", scratch_dir());
    r = run("cd '%s' && '%s' io --debug -c 'write 0 4k' so2.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "vdisk_pwrite: so2.vmdk: extent 'so2.vmdk': a streamOptimized "
                                 "VMDK is written a whole grain (65536 bytes) at a time, not "
                                 "4096 bytes at byte 0") != NULL, "%s", r->err);
    RUN_OK("cd '%s' && '%s' io -c 'write -P 0x6d 64k 64k' -c 'write -P 0x6e 960k 64k' so2.vmdk "
           "&& qemu-img check so2.vmdk && qemu-io -f vmdk -c 'read -P 0 0 64k' "
           "-c 'read -P 0x6d 64k 64k' -c 'read -P 0 128k 832k' -c 'read -P 0x6e 960k 64k' "
           "so2.vmdk | grep -v Pattern >/dev/null", scratch_dir(), vdisk_bin());
    r = run("cd '%s' && '%s' io --debug -c 'write 64k 64k' so2.vmdk", scratch_dir(),
            vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "vdisk_pwrite: so2.vmdk: extent 'so2.vmdk': could not write to "
                                 "allocated cluster for streamOptimized (the grain at byte 65536 "
                                 "is written already)") != NULL, "%s", r->err);
    /* One whose grain directory is in a footer (as VMware streams it: the
     * header says "at the end"; a copy of the header with the real offset
     * in the second sector from the end, then the end-of-stream marker) is
     * read, never written. */
    size_t n;
    uint8_t *b = read_file(scratch("so2.vmdk"), &n);
    b = realloc(b, n + 1024);
    memcpy(b + n, b, 512);
    memset(b + n + 512, 0, 512);
    memset(b + 56, 0xff, 8);
    write_file(scratch("so3.vmdk"), b, n + 1024);
    free(b);
    RUN_OK("cd '%s' && '%s' compare so2.vmdk so3.vmdk", scratch_dir(), vdisk_bin());
    r = run("cd '%s' && '%s' io -c 'write 128k 64k' so3.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_str_eq(r->err, "vdisk: so3.vmdk: vdisk writes sparse and flat VMDK "
                     "extents, and streamOptimized ones with their grain directory in place, "
                     "not one whose grain directory is in its footer (open it read-only, or "
                     "convert it: vdisk convert -f vmdk -O qcow2 so3.vmdk IMAGE.qcow2)\n");
}
END_TEST

/* Images vdisk makes and writes, read by QEMU: create as qemu-img creates
 * (the Formatting line and every byte but the CID and the extent's name),
 * writes checked by qemu-io, qemu-img check and compare; convert -O vmdk. */
START_TEST(vdisk_images_read_by_qemu)
{
    static const char *const opts[] = {"", "-o adapter_type=lsilogic,hwversion=7,toolsversion=9",
                                       "-o compat6=on", "-o zeroed_grain=on"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        struct run *q = run("cd '%s' && rm -f q.vmdk && qemu-img create -f vmdk %s q.vmdk 70M",
                            scratch_dir(), opts[i]);
        char *qout = strdup(q->out);
        struct run *v = run("cd '%s' && rm -f v.vmdk && '%s' create -f vmdk %s v.vmdk 70M",
                            scratch_dir(), vdisk_bin(), opts[i]);
        ck_assert_msg(v->status == 0, "%s", v->err);
        char *want = fmt("%s", qout);
        char *at = strstr(want, "q.vmdk");
        ck_assert_ptr_nonnull(at);
        at[0] = 'v';
        ck_assert_str_eq(v->out, want);
        free(qout);
        size_t qn, vn;
        uint8_t *qb = read_file(scratch("q.vmdk"), &qn), *vb = read_file(scratch("v.vmdk"), &vn);
        ck_assert_uint_eq(qn, vn);
        assert_same_bytes(vb, qb, 512, 0, "the header");
        assert_same_bytes(vb + 512 * 21, qb + 512 * 21, qn - 512 * 21, 512 * 21, "the tables");
        free(qb);
        free(vb);
        RUN_OK("cd '%s' && '%s' io -c 'write -P 0x11 0 100k' -c 'write -P 0x22 32M 2M' "
               "-c 'write -z 32M 4k' -c 'write -P 0x33 70655k 1k' v.vmdk >/dev/null && "
               "qemu-img check v.vmdk && qemu-io -f vmdk -c 'read -P 0x11 0 100k' "
               "-c 'read -P 0 100k 100k' -c 'read -P 0 32M 4k' -c 'read -P 0x22 32772k 2044k' "
               "-c 'read -P 0x33 70655k 1k' v.vmdk | grep -v Pattern >/dev/null",
               scratch_dir(), vdisk_bin());
        same_as_qemu_img("map", "--output=json v.vmdk");
        same_raw_as_qemu_img("v.vmdk");
    }
    /* convert -O vmdk, and back. */
    uint64_t seed = 3;
    uint8_t *b = malloc(9u << 20);
    fill_random(b, 9u << 20, &seed);
    memset(b + (3u << 20), 0, 2u << 20);
    write_file(scratch("src.raw"), b, 9u << 20);
    free(b);
    RUN_OK("cd '%s' && rm -f c.vmdk && '%s' convert -O vmdk src.raw c.vmdk && qemu-img check "
           "c.vmdk && qemu-img compare src.raw c.vmdk && '%s' compare src.raw c.vmdk",
           scratch_dir(), vdisk_bin(), vdisk_bin());
}
END_TEST

/* The embedded descriptor of the image at PATH with its CID line and the
 * extent's file name left out (they differ between any two images). */
static char *descriptor_but_cid(const uint8_t *b, size_t n)
{
    ck_assert_uint_ge(n, 21 * 512);
    char *d = strndup((const char *)b + 512, 20 * 512), *out = calloc(1, strlen(d) + 1);
    for (char *line = strtok(d, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "CID=", 4))
            continue;
        if (!strncmp(line, "RW ", 3) && strchr(line, '"'))
            strchr(line, '"')[1] = 0;
        strcat(strcat(out, line), "\n");
    }
    free(d);
    return out;
}

/* Checks that vdisk's V.vmdk is qemu-img's Q.vmdk but for the CID and the
 * extent's name (a new CID may have a digit less, so the descriptors are
 * compared line by line; every other byte as it is). */
static void same_vmdk_but_cid(const char *what)
{
    size_t qn, vn;
    uint8_t *qb = read_file(scratch("q.vmdk"), &qn), *vb = read_file(scratch("v.vmdk"), &vn);
    ck_assert_msg(qn == vn, "%s: qemu-img's image has %zu bytes, vdisk's %zu", what, qn, vn);
    assert_same_bytes(vb, qb, 512, 0, "the header");
    char *qd = descriptor_but_cid(qb, qn), *vd = descriptor_but_cid(vb, vn);
    ck_assert_str_eq(vd, qd);
    assert_same_bytes(vb + 512 * 21, qb + 512 * 21, qn - 512 * 21, 512 * 21,
                      "the tables and grains");
    free(qd);
    free(vd);
    free(qb);
    free(vb);
}

/* One record of a streamOptimized extent's stream: a grain (its LBA and
 * its inflated bytes) or a metadata marker (its type and sectors). */
struct stream_rec {
    bool grain;
    uint64_t val;      /* the grain's LBA, or the metadata's sectors */
    uint32_t type;     /* the metadata's type (0 end, 1 GT, 2 GD, 3 footer) */
    uint8_t *data;     /* the inflated grain */
    unsigned long len; /* its bytes */
};

/* The records of the stream of the image in B (N bytes), from the header's
 * overHead to the end-of-stream marker; *COUNT of them. */
static struct stream_rec *stream_records(const uint8_t *b, size_t n, size_t *count)
{
    ck_assert_uint_ge(n, 512);
    uint64_t grain = 0, pos = 0;
    memcpy(&grain, b + 20, 8);
    memcpy(&pos, b + 64, 8);
    pos *= 512;
    size_t cap = 64, k = 0;
    struct stream_rec *r = calloc(cap, sizeof *r);
    /* The file's end ends the stream too (an image of zeroes has no grain
     * and no marker after the header's overHead). */
    while (pos < n) {
        ck_assert_msg(pos + 512 <= n, "the stream runs past the file (%zu bytes) at byte %llu",
                      n, (unsigned long long)pos);
        if (k == cap)
            r = realloc(r, (cap *= 2) * sizeof *r);
        struct stream_rec *e = &r[k++];
        memset(e, 0, sizeof *e);
        uint32_t size;
        memcpy(&e->val, b + pos, 8);
        memcpy(&size, b + pos + 8, 4);
        if (size == 0) {
            memcpy(&e->type, b + pos + 12, 4);
            if (e->type == 0)
                break;
            pos += 512 + e->val * 512;
            continue;
        }
        e->grain = true;
        ck_assert_uint_le(pos + 12 + size, n);
        e->len = (unsigned long)(grain * 512);
        e->data = malloc(e->len);
        ck_assert_int_eq(uncompress(e->data, &e->len, b + pos + 12, size), Z_OK);
        pos += (12 + size + 511) / 512 * 512;
    }
    *count = k;
    return r;
}

/*
 * Checks vdisk's V.vmdk against qemu-img's Q.vmdk, both streamOptimized
 * with data: the header as it is, the descriptor but the CID, and the
 * stream record by record (each grain's LBA and inflated bytes, each
 * metadata marker's type and length, in the same order).  The deflated
 * bytes themselves may differ (vdisk deflates with libdeflate where it has
 * it), so vdisk's file may be at most 1% larger than qemu-img's.
 */
static void same_stream_but_deflate(const char *what)
{
    size_t qn, vn;
    uint8_t *qb = read_file(scratch("q.vmdk"), &qn), *vb = read_file(scratch("v.vmdk"), &vn);
    ck_assert_msg(vn <= qn + qn / 100, "%s: vdisk's image has %zu bytes, qemu-img's %zu", what,
                  vn, qn);
    /* The header whole: a stream's grain directory is in its footer, so
     * nothing in it depends on the deflated sizes. */
    assert_same_bytes(vb, qb, 512, 0, "the header");
    char *qd = descriptor_but_cid(qb, qn), *vd = descriptor_but_cid(vb, vn);
    ck_assert_str_eq(vd, qd);
    size_t qk, vk;
    struct stream_rec *q = stream_records(qb, qn, &qk), *v = stream_records(vb, vn, &vk);
    ck_assert_msg(qk == vk, "%s: qemu-img's stream has %zu records, vdisk's %zu", what, qk, vk);
    for (size_t i = 0; i < qk; i++) {
        ck_assert_msg(q[i].grain == v[i].grain && q[i].val == v[i].val &&
                      q[i].type == v[i].type && q[i].len == v[i].len,
                      "%s: record %zu differs (qemu-img: %s %llu type %u, vdisk: %s %llu "
                      "type %u)", what, i, q[i].grain ? "grain" : "marker",
                      (unsigned long long)q[i].val, q[i].type, v[i].grain ? "grain" : "marker",
                      (unsigned long long)v[i].val, v[i].type);
        if (q[i].grain)
            assert_same_bytes(v[i].data, q[i].data, q[i].len, q[i].val * 512, what);
        free(q[i].data);
        free(v[i].data);
    }
    free(q);
    free(v);
    free(qd);
    free(vd);
    free(qb);
    free(vb);
}

/* streamOptimized images vdisk makes: created as qemu-img creates them,
 * byte for byte, and converted to as qemu-img converts (each grain behind
 * its marker in the same order, inflating to the same bytes), over many
 * sizes and shapes of data; read back by qemu-img. */
START_TEST(stream_optimized_written)
{
    RUN_OK("cd '%s' && rm -f q.vmdk v.vmdk && qemu-img create -q -f vmdk -o "
           "subformat=streamOptimized,adapter_type=lsilogic q.vmdk 300M && '%s' create -q -f "
           "vmdk -o subformat=streamOptimized,adapter_type=lsilogic v.vmdk 300M", scratch_dir(),
           vdisk_bin());
    same_vmdk_but_cid("create");
    static const size_t sizes[] = {512, 65024, 65536, 66048, (3u << 20) + 1536, 9u << 20};
    uint64_t seed = 11;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *b = malloc(n);
        fill_random(b, n, &seed);
        /* Shapes: runs of zeroes (whole grains and not), a byte pattern,
         * text-like bytes that deflate well, random bytes that do not. */
        for (size_t at = 0; at < n; at += 65536 * 3) {
            size_t run = n - at < 70000 ? n - at : 70000;
            switch ((at / (65536 * 3) + i) % 4) {
            case 0: memset(b + at, 0, run); break;
            case 1: memset(b + at, 0x5a, run); break;
            case 2:
                for (size_t k = 0; k < run; k++)
                    b[at + k] = (uint8_t)"vdisk streamOptimized "[k % 22];
                break;
            default: break;
            }
        }
        write_file(scratch("src.raw"), b, n);
        free(b);
        RUN_OK("cd '%s' && rm -f q.vmdk v.vmdk && qemu-img convert -O vmdk -o "
               "subformat=streamOptimized src.raw q.vmdk && '%s' convert -O vmdk -o "
               "subformat=streamOptimized src.raw v.vmdk && qemu-img check v.vmdk && "
               "qemu-img compare src.raw v.vmdk", scratch_dir(), vdisk_bin());
        same_stream_but_deflate(fmt("convert of %zu bytes", n));
    }
    /* From qcow2, with -p; -c is implied. */
    RUN_OK("cd '%s' && rm -f s.qcow2 q.vmdk v.vmdk && qemu-img convert -O qcow2 src.raw s.qcow2 "
           "&& qemu-img convert -c -O vmdk -o subformat=streamOptimized s.qcow2 q.vmdk && '%s' "
           "convert -p -O vmdk -o subformat=streamOptimized s.qcow2 v.vmdk >/dev/null",
           scratch_dir(), vdisk_bin());
    same_stream_but_deflate("convert from qcow2");
    /* -c to a monolithicSparse image writes it uncompressed, as qemu-img. */
    RUN_OK("cd '%s' && rm -f q.vmdk v.vmdk && qemu-img convert -c -O vmdk src.raw q.vmdk && '%s' "
           "convert -c -O vmdk src.raw v.vmdk", scratch_dir(), vdisk_bin());
    same_vmdk_but_cid("convert -c to monolithicSparse");
}
END_TEST

/* libvmdk (vmdkinfo, vmdkmount), a reader independent of QEMU, reads the
 * images vdisk makes and writes as vdisk and qemu-img read them. */
START_TEST(libvmdk_reads)
{
    uint64_t seed = 23;
    size_t n = (7u << 20) + 1536;
    uint8_t *b = malloc(n);
    fill_random(b, n, &seed);
    memset(b + (1u << 20), 0, 2u << 20);
    memset(b + (5u << 20), 0x3c, 1u << 20);
    write_file(scratch("src.raw"), b, n);
    free(b);
    /* streamOptimized and monolithicSparse, made by vdisk convert. */
    RUN_OK("cd '%s' && rm -f s.vmdk m.vmdk && '%s' convert -O vmdk -o "
           "subformat=streamOptimized src.raw s.vmdk && '%s' convert -O vmdk src.raw m.vmdk",
           scratch_dir(), vdisk_bin(), vdisk_bin());
    libyal_reads("vmdk", scratch("s.vmdk"), scratch("src.raw"), "streamOptimized");
    libyal_reads("vmdk", scratch("m.vmdk"), scratch("src.raw"), "monolithicSparse");
    /* An image vdisk creates and writes over several grain tables, a
     * write of zeroes among them. */
    RUN_OK("cd '%s' && rm -f w.vmdk && '%s' create -q -f vmdk w.vmdk 70M && '%s' io "
           "-c 'write -P 0x11 0 100k' -c 'write -P 0x22 32M 2M' -c 'write -z 32M 4k' "
           "-c 'write -P 0x33 70655k 1k' w.vmdk >/dev/null && qemu-img check -q w.vmdk && "
           "qemu-img convert -O raw w.vmdk w.raw", scratch_dir(), vdisk_bin(), vdisk_bin());
    libyal_reads("vmdk", scratch("w.vmdk"), scratch("w.raw"), "written by vdisk");
    /* An image in two sparse extents, written by vdisk. */
    RUN_OK("cd '%s' && rm -f t*.vmdk && qemu-img create -q -f vmdk -o "
           "subformat=twoGbMaxExtentSparse t.vmdk 3G && '%s' io -c 'write -P 0x44 2047M 2M' "
           "-c 'write -P 0x55 0 64k' t.vmdk >/dev/null && qemu-img check -q t.vmdk && "
           "qemu-img convert -O raw t.vmdk t.raw", scratch_dir(), vdisk_bin());
    libyal_reads("vmdk", scratch("t.vmdk"), scratch("t.raw"), "twoGbMaxExtentSparse");
}
END_TEST

static void put32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static void put64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

/* A descriptor file NAME of CREATE_TYPE with one extent: SECTORS of TYPE
 * in FILE. */
static void write_descriptor(const char *name, const char *create_type, unsigned sectors,
                             const char *type, const char *file)
{
    char *d = fmt("# Disk DescriptorFile\nversion=1\nCID=2a5b1f07\nparentCID=ffffffff\n"
                  "createType=\"%s\"\n\n# Extent description\nRW %u %s \"%s\"\n\n"
                  "# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n",
                  create_type, sectors, type, file);
    write_file(scratch(name), d, strlen(d));
}

#define ESX_SECTORS 12300u

/* An ESX vmfsSparse (COWD) extent of ESX_SECTORS made by hand: 1-sector
 * grains, tables of 4096 entries, the 2nd and 4th not allocated; WANT gets
 * the disk's bytes.  Returns the file's bytes and size. */
static uint8_t *make_cowd(uint8_t *want, size_t *size, uint64_t *seed)
{
    const unsigned gd = 1, gt0 = 2, gt2 = 34, grains = 66;
    static const unsigned sectors[] = {0, 1, 2, 77, 4095, 8192, 8193, 8200, 12287};
    unsigned n = sizeof sectors / sizeof sectors[0];
    *size = (size_t)(grains + n) * 512;
    uint8_t *f = calloc(1, *size);
    memcpy(f, "COWD", 4);
    put32(f + 4, 1);            /* version */
    put32(f + 8, 3);            /* flags */
    put32(f + 12, ESX_SECTORS); /* disk sectors */
    put32(f + 16, 1);           /* granularity */
    put32(f + 20, gd);          /* GD sector */
    put32(f + 24, 4);           /* GD entries */
    put32(f + 512 * gd, gt0);
    put32(f + 512 * gd + 8, gt2);
    memset(want, 0, (size_t)ESX_SECTORS * 512);
    for (unsigned i = 0; i < n; i++) {
        unsigned s = sectors[i], gt = s < 4096 ? gt0 : gt2;
        put32(f + 512 * gt + 4 * (s % 4096), grains + i);
        fill_random(f + 512 * (grains + i), 512, seed);
        memcpy(want + 512 * (size_t)s, f + 512 * (grains + i), 512);
    }
    return f;
}

/* An ESX seSparse extent of ESX_SECTORS made by hand: 4 KiB grains, one
 * table; grains allocated (numbers whose bits 0-11 and 12+ both matter),
 * zeroed, unmapped and not allocated. */
static uint8_t *make_sesparse(uint8_t *want, size_t *size, uint64_t *seed)
{
    const unsigned vh = 1, gd = 2, gts = 3, grains = 67;
    static const struct { unsigned grain; uint64_t number; } g[] = {
        {0, 0}, {1, 4097}, {5, 2}, {700, 1}, {1536, 4096}};
    unsigned maxk = 4097;
    *size = (size_t)(grains + (maxk + 1) * 8) * 512;
    uint8_t *f = calloc(1, *size);
    put64(f, 0xcafebabe);
    put64(f + 8, 0x0000000200000001ull);
    put64(f + 16, ESX_SECTORS);
    put64(f + 24, 8);
    put64(f + 32, 64);
    put64(f + 80, vh);
    put64(f + 88, 1);
    put64(f + 128, gd);
    put64(f + 136, 1);
    put64(f + 144, gts);
    put64(f + 152, 64);
    put64(f + 192, grains);
    put64(f + 200, (maxk + 1) * 8);
    put64(f + 512 * vh, 0xcafecafe);
    put64(f + 512 * gd, 0x1000000000000000ull); /* GT number 0 */
    memset(want, 0, (size_t)ESX_SECTORS * 512);
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        uint64_t k = g[i].number;
        put64(f + 512 * gts + 8 * g[i].grain,
              0x3000000000000000ull | ((k & 0xfff) << 48) | (k >> 12));
        uint8_t *at = f + 512 * (grains + k * 8);
        fill_random(at, 4096, seed);
        memcpy(want + 4096 * (size_t)g[i].grain, at, 4096);
    }
    put64(f + 512 * gts + 8 * 2, 0x2000000000000000ull);  /* zeroed */
    put64(f + 512 * gts + 8 * 3, 0x1000000000000000ull);  /* unmapped */
    return f;
}

static void esx_reads_as(const char *desc, const uint8_t *want)
{
    reads_as_qemu_img(desc);
    size_t n;
    uint8_t *got = read_file(scratch("v.raw"), &n);
    ck_assert_uint_eq(n, (size_t)ESX_SECTORS * 512);
    assert_same_bytes(got, want, n, 0, desc);
    free(got);
}

/* ESX's sparse extents, read as QEMU reads them: vmfsSparse (COWD) and
 * seSparse, behind their descriptors; never written; hostile tables. */
START_TEST(esx_sparse_extents)
{
    uint64_t seed = 31;
    size_t n, wn = (size_t)ESX_SECTORS * 512;
    uint8_t *want = malloc(wn);
    uint8_t *f = make_cowd(want, &n, &seed);
    write_file(scratch("d-delta.vmdk"), f, n);
    write_descriptor("d.vmdk", "vmfsSparse", ESX_SECTORS, "VMFSSPARSE", "d-delta.vmdk");
    esx_reads_as("d.vmdk", want);
    /* (a SPARSE extent line may name a COWD file too) */
    write_descriptor("d2.vmdk", "vmfsSparse", ESX_SECTORS, "SPARSE", "d-delta.vmdk");
    esx_reads_as("d2.vmdk", want);
    struct run *r = run("cd '%s' && '%s' io -c 'write 0 512' d.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "vdisk reads ESX vmfsSparse (COWD) extents but does not write "
                         "them"), "%s", r->err);
    /* A GD that does not cover the disk. */
    uint8_t *bad = malloc(n);
    memcpy(bad, f, n);
    put32(bad + 24, 2);
    write_file(scratch("d-delta.vmdk"), bad, n);
    open_refused("vmdk", scratch("d.vmdk"), -EINVAL, "extent 'd-delta.vmdk': the grain directory has "
                 "2 entries; the extent's 12300 sectors need 4");
    free(bad);
    free(f);

    f = make_sesparse(want, &n, &seed);
    write_file(scratch("s-sesparse.vmdk"), f, n);
    write_descriptor("s.vmdk", "seSparse", ESX_SECTORS, "SESPARSE", "s-sesparse.vmdk");
    esx_reads_as("s.vmdk", want);
    r = run("cd '%s' && '%s' io -c 'write 0 512' s.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "vdisk reads ESX seSparse extents but does not write them"),
                  "%s", r->err);
    /* A grain entry of no known kind fails the read that meets it (QEMU
     * 7.2 reads zeroes there); the rest reads. */
    bad = malloc(n);
    memcpy(bad, f, n);
    put64(bad + 512 * 3 + 8 * 9, 0x7000000000000000ull);
    write_file(scratch("s-sesparse.vmdk"), bad, n);
    RUN_OK("cd '%s' && '%s' io -r -c 'read 0 36k' -c 'read 40k 4k' s.vmdk >/dev/null && "
           "! '%s' io --debug -r -c 'read 36k 4k' s.vmdk 2>err && grep -q 'entry 9 of the "
           "seSparse grain table at sector 3 is not a valid grain entry' err", scratch_dir(),
           vdisk_bin(), vdisk_bin());
    /* Dirty (a journal to replay), and a GD entry of no known kind. */
    memcpy(bad, f, n);
    put64(bad + 512 + 24, 1);
    write_file(scratch("s-sesparse.vmdk"), bad, n);
    open_refused("vmdk", scratch("s.vmdk"), -ENOTSUP, "extent 's-sesparse.vmdk': the seSparse image "
                 "is dirty; vdisk does not replay its journal");
    memcpy(bad, f, n);
    put64(bad + 1024, 0x2000000000000000ull);
    write_file(scratch("s-sesparse.vmdk"), bad, n);
    open_refused("vmdk", scratch("s.vmdk"), -EINVAL, "extent 's-sesparse.vmdk': seSparse grain "
                 "directory entry 0 is 0x2000000000000000; expected 0 or 0x10000000 and a grain "
                 "table's number");
    free(bad);
    free(f);
    free(want);
}
END_TEST

/* A child written by vdisk over a parent: the parent's bytes around each
 * write; once the parent is written, its new CID keeps vdisk from reading
 * the child on a changed parent. */
START_TEST(child_written)
{
    RUN_OK("cd '%s' && rm -f pa.vmdk ch.vmdk && qemu-img create -q -f vmdk pa.vmdk 10M && "
           "qemu-io -f vmdk -c 'write -P 0x33 0 10M' pa.vmdk >/dev/null && "
           "'%s' create -q -f vmdk -b pa.vmdk -F vmdk ch.vmdk && "
           "'%s' io -c 'write -P 0x44 100k 8k' -c 'write -z 1M 4k' ch.vmdk >/dev/null && "
           "qemu-img check ch.vmdk", scratch_dir(), vdisk_bin(), vdisk_bin());
    struct run *r = run("cd '%s' && qemu-io -f vmdk -c 'read -P 0x33 0 100k' "
                        "-c 'read -P 0x44 100k 8k' -c 'read -P 0x33 108k 916k' "
                        "-c 'read -P 0 1M 4k' -c 'read -P 0x33 1028k 9212k' ch.vmdk",
                        scratch_dir());
    ck_assert_msg(r->status == 0 && !strstr(r->out, "Pattern"), "%s%s", r->out, r->err);
    same_as_qemu_img("info", "--backing-chain ch.vmdk");
    same_raw_as_qemu_img("ch.vmdk");
    RUN_OK("cd '%s' && '%s' io -c 'write -P 1 0 4k' pa.vmdk >/dev/null", scratch_dir(),
           vdisk_bin());
    r = run("cd '%s' && '%s' info ch.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_msg(strstr(r->err, "the parent 'pa.vmdk' has CID ") != NULL, "%s", r->err);
}
END_TEST

/* Random I/O through the library against a model, then qemu-img check and
 * compare with the model. */
START_TEST(random_io_through_library)
{
    RUN_OK("cd '%s' && rm -f rio.vmdk && '%s' create -q -f vmdk rio.vmdk 20M", scratch_dir(),
           vdisk_bin());
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "vmdk"), 0);
    vdisk_dev *d = NULL;
    ck_assert_msg(vdisk_open(&d, scratch("rio.vmdk"), o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    uint64_t size = 20u << 20;
    uint8_t *model = calloc(1, size);
    random_io_against_model(d, model, size, 60, 11);
    vdisk_close(d);
    write_file(scratch("rio.raw"), model, size);
    free(model);
    RUN_OK("cd '%s' && qemu-img check rio.vmdk && qemu-img compare rio.raw rio.vmdk",
           scratch_dir());
}
END_TEST

/* One read across 7 grain tables (32 MiB each), more than a request may
 * load one after another: served whole on the worker, right. */
START_TEST(reads_across_many_tables)
{
    RUN_OK("cd '%s' && rm -f m.vmdk && qemu-img create -q -f vmdk m.vmdk 256M && "
           "qemu-io -f vmdk -c 'write -P 2 0 100M' -c 'write -P 3 150M 100M' m.vmdk >/dev/null",
           scratch_dir());
    struct run *r = run("cd '%s' && '%s' io -r -c 'read -P 2 0 100M' -c 'read -P 0 100M 50M' "
                        "-c 'read -P 3 150M 100M' m.vmdk", scratch_dir(), vdisk_bin());
    ck_assert_msg(r->status == 0 && !strstr(r->out, "Pattern"), "%s%s", r->out, r->err);
    same_raw_as_qemu_img("m.vmdk");
}
END_TEST

/* g.vmdk: a 10 MiB monolithicSparse image with data at 1 MiB and 5 MiB. */
static const char *good_image(void)
{
    const char *f = scratch("g.vmdk");
    RUN_OK("rm -f '%s' && qemu-img create -q -f vmdk '%s' 10M && qemu-io -f vmdk "
           "-c 'write -P 0x11 1M 4k' -c 'write -P 0x22 5M 64k' '%s' >/dev/null", f, f, f);
    return f;
}

static const char *patched(uint64_t off, unsigned len, uint64_t v)
{
    return patched_copy(good_image(), "h.vmdk", off, len, v);
}

static void refused(const char *path, int err, const char *msg)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "vmdk"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    int r = vdisk_open(&d, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == err, "%s: open gave %d, expected %d (%s)", msg, r, err,
                  r ? vdisk_get_error() : "opened");
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", path, msg));
}

START_TEST(hostile_images_refused)
{
    /* Header fields: version 4, flags 8, capacity 12, grain 20, GTEs 44,
     * GD 56, compression 77. */
    const char *h = patched(4, 4, 9);
    refused(h, -ENOTSUP, "sparse extent version 9 (offset 4); expected 1, 2 or 3");
    patched(20, 8, 0);
    refused(h, -EINVAL, "the grain size (offset 20) is 0 sectors; expected a power of two up to "
            "2097152");
    patched(20, 8, 3);
    refused(h, -EINVAL, "the grain size (offset 20) is 3 sectors; expected a power of two up to "
            "2097152");
    patched(44, 4, 0);
    refused(h, -EINVAL, "0 entries per grain table (offset 44); expected 1 to 512");
    patched(44, 4, 100000);
    refused(h, -EINVAL, "100000 entries per grain table (offset 44); expected 1 to 512");
    patched(56, 8, 1ull << 40);
    refused(h, -EINVAL, "the grain directory at sector 1099511627776 (1 entries) does not lie "
            "in the file (196608 bytes)");
    patched(12, 8, 1ull << 62);
    refused(h, -EFBIG, "a grain directory of 70368744177664 entries; vdisk holds at most "
            "67108864 bytes of it");
    patched(8, 4, 0x30003);
    refused(h, -ENOTSUP, "compression algorithm 0 (offset 77); only deflate (1) is known");
    patched(0, 4, 0x44574f43);
    refused(h, -ENOTSUP, "ESX sparse images (COWD, vmfsSparse) are not supported");
    /* Descriptors. */
    static const char *const bad[][2] = {
        {"version=1\ncreateType=\"weird\"\nRW 2048 FLAT \"x\" 0\n",
         "unsupported VMDK create type 'weird'"},
        {"version=1\nCID=xyz\ncreateType=\"monolithicFlat\"\n", "the descriptor's CID is 'xyz'; "
         "expected a hexadecimal number of up to 8 digits"},
        {"version=1\ncreateType=\"monolithicFlat\"\n", "the descriptor lists no extent"},
        {"version=1\ncreateType=\"monolithicFlat\"\nRW 0 ZERO\n", "descriptor line 3: an "
         "extent of 0 sectors (the disk would be 0 sectors before it)"},
        {"version=1\ncreateType=\"monolithicFlat\"\nRW 18014398509481984 ZERO\n", "descriptor "
         "line 3: an extent of 18014398509481984 sectors (the disk would be 0 sectors before "
         "it)"},
        {"version=1\ncreateType=\"monolithicFlat\"\nRW 2048 VMFSRDM \"x\"\n", "descriptor line "
         "3: extents of type VMFSRDM are not supported"},
        {"version=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT\n", "descriptor line 3: a FLAT "
         "extent names no file"},
        {"version=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"x\n", "descriptor line 3: the "
         "file name has no closing quote"},
        {"version=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"g.vmdk\" 1000\n", "extent "
         "'g.vmdk' (line 3) covers sectors 1000 to 3048 of its file, which holds 196608 bytes"},
    };
    good_image();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = scratch("desc.vmdk");
        write_file(p, bad[i][0], strlen(bad[i][0]));
        refused(p, strstr(bad[i][1], "not supported") || strstr(bad[i][1], "unsupported")
                ? -ENOTSUP : -EINVAL, bad[i][1]);
    }
    /* A ZERO extent reads as zeroes. */
    const char *z = scratch("z.vmdk");
    static const char zd[] = "version=1\ncreateType=\"monolithicFlat\"\nRW 2048 ZERO\n";
    write_file(z, zd, strlen(zd));
    struct run *r = run("cd '%s' && '%s' io -r -c 'read -P 0 0 1M' z.vmdk", scratch_dir(),
                        vdisk_bin());
    ck_assert_msg(r->status == 0, "%s", r->err);
}
END_TEST

/* A grain whose offset is past the end of the file: the read that meets it
 * fails, naming it; the others read; qemu-img check and vdisk check say
 * the same. */
START_TEST(bad_grain)
{
    const char *g = good_image();
    /* The GD's first entry (sector of the first GT), then that GT's entry
     * for the grain at 1 MiB (grain 16). */
    size_t n;
    uint8_t *b = read_file(g, &n);
    uint64_t gd = (uint64_t)b[56] | (uint64_t)b[57] << 8 | (uint64_t)b[58] << 16;
    uint64_t gt = b[gd * 512] | b[gd * 512 + 1] << 8 | b[gd * 512 + 2] << 16;
    free(b);
    const char *h = patched(gt * 512 + 16 * 4, 4, 0x7fffff);
    RUN_OK("cp '%s' '%s'", h, scratch("e1.vmdk"));
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(vdisk_open(&d, h, o), 0);
    vdisk_options_free(o);
    uint8_t buf[4096];
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 1 << 20), -EIO);
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_pread: %s: extent '%s': entry 16 of the "
                                            "grain table at sector %llu points at a grain at "
                                            "sector 8388607, which is not inside the file "
                                            "(196608 bytes)", h, h, (unsigned long long)gt));
    ck_assert_int_eq(vdisk_pread(d, buf, sizeof buf, 5 << 20), 0);
    ck_assert_uint_eq(buf[0], 0x22);
    vdisk_close(d);
    same_as_qemu_img("check", "e1.vmdk");
    same_as_qemu_img("check", "--output=json e1.vmdk");
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("interop-vmdk");
    TCase *tc = tcase_create("vmdk");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, qemu_images_read_identically);
    tcase_add_test(tc, stream_optimized);
    tcase_add_test(tc, parent_chain);
    tcase_add_test(tc, extents_confined_flat_written);
    tcase_add_test(tc, reads_across_many_tables);
    tcase_add_test(tc, vdisk_images_read_by_qemu);
    tcase_add_test(tc, stream_optimized_written);
    tcase_add_test(tc, child_written);
    tcase_add_test(tc, libvmdk_reads);
    tcase_add_test(tc, esx_sparse_extents);
    tcase_add_test(tc, random_io_through_library);
    tcase_add_test(tc, hostile_images_refused);
    tcase_add_test(tc, bad_grain);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
