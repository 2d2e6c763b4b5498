/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/interop_vpc.c: VHD ("vpc") images between vdisk and
 * qemu-img 7.2: images qemu-img makes read byte for byte as qemu-img reads
 * them, with its info output; images vdisk makes (create, convert -O vpc,
 * writes through vdisk io) read identically by qemu-img and qemu-io;
 * differencing images over a dynamic parent; damaged images refused with
 * exact messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "endian.h"
#include "harness.h"

#define IN_SCRATCH(cmd, ...) run("cd '%s' && " cmd, scratch_dir(), __VA_ARGS__)

static void same_output(const char *a_cmd, const char *b_cmd)
{
    struct run *r = run("%s", a_cmd);
    ck_assert_msg(r->status == 0, "%s: %s", a_cmd, r->err);
    char *a = strdup(r->out);
    r = run("%s", b_cmd);
    ck_assert_msg(r->status == 0, "%s: %s", b_cmd, r->err);
    ck_assert_msg(strcmp(a, r->out) == 0, "outputs differ:\n%s\n%s\n%s\n%s", a_cmd, a, b_cmd,
                  r->out);
    free(a);
}

static void same_files(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *x = read_file(a, &na), *y = read_file(b, &nb);
    ck_assert_msg(na == nb, "%s has %zu bytes, %s %zu", a, na, b, nb);
    assert_same_bytes(x, y, na, 0, b);
    free(x);
    free(y);
}

/* Sizes with odd CHS geometries, and force_size. */
static const char *const sizes[] = {"1M", "10M", "1000001", "130M", "1G"};
static const char *const opts[] = {"subformat=dynamic", "subformat=fixed",
                                   "subformat=dynamic,force_size=on",
                                   "subformat=fixed,force_size=on"};

START_TEST(qemu_images_read_identically)
{
    const char *img = scratch("q.vhd"), *va = scratch("v.raw"), *qa = scratch("q.raw");
    for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unlink(img);
            RUN_OK("qemu-img create -q -f vpc -o %s '%s' %s", opts[o], img, sizes[i]);
            RUN_OK("qemu-io -f vpc -c 'write -P 0xa5 0 64k' -c 'write -P 0x5a 300k 3k' "
                   "-c 'write -P 0x11 900k 60k' '%s'", img);
            bool fixed = strstr(opts[o], "fixed") != NULL;
            if (!strcmp(sizes[i], "1G"))
                RUN_OK("qemu-io -f vpc -c 'write -P 0x77 1000M 2M' -c 'write -z 1000M 4k' '%s'",
                       img);
            /* info: probed for dynamic images, -f vpc for fixed (which both
             * probe as raw). */
            const char *f = fixed ? "-f vpc" : "";
            same_output(fmt("qemu-img info %s '%s'", f, img),
                        fmt("%s info %s '%s'", vdisk_bin(), f, img));
            same_output(fmt("qemu-img info --output=json %s '%s'", f, img),
                        fmt("%s info --output=json %s '%s'", vdisk_bin(), f, img));
            same_output(fmt("qemu-img map --output=json -f vpc '%s'", img),
                        fmt("%s map --output=json -f vpc '%s'", vdisk_bin(), img));
            RUN_OK("qemu-img convert -f vpc -O raw '%s' '%s'", img, qa);
            RUN_OK("%s convert -f vpc -O raw '%s' '%s'", vdisk_bin(), img, va);
            same_files(qa, va);
        }
    }
}
END_TEST

START_TEST(vdisk_images_read_by_qemu)
{
    const char *v = scratch("v.vhd"), *q = scratch("q.vhd");
    for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unlink(v);
            unlink(q);
            /* The same "Formatting" line, file and header bytes, but for the
             * timestamp, the UUID and the checksum. */
            if (strcmp(sizes[i], "1000001") != 0) { /* (vdisk shows sizes rounded to 512) */
                same_output(fmt("qemu-img create -f vpc -o %s '%s' %s", opts[o], q, sizes[i]),
                            fmt("%s create -f vpc -o %s '%s' %s", vdisk_bin(), opts[o], q,
                                sizes[i]));
                unlink(q);
            }
            RUN_OK("qemu-img create -q -f vpc -o %s '%s' %s", opts[o], q, sizes[i]);
            RUN_OK("%s create -q -f vpc -o %s '%s' %s", vdisk_bin(), opts[o], v, sizes[i]);
            struct stat sv, sq;
            ck_assert_int_eq(stat(v, &sv), 0);
            ck_assert_int_eq(stat(q, &sq), 0);
            ck_assert_int_eq(sv.st_size, sq.st_size);
            bool fixed = strstr(opts[o], "fixed") != NULL;
            uint64_t foot = fixed ? (uint64_t)sv.st_size - 512 : 0;
            uint8_t *a = read_file_at(v, foot, 2048), *b = read_file_at(q, foot, 2048);
            size_t n = fixed ? 512 : 2048;
            for (size_t k = 0; k < n; k++) {
                if ((k >= 24 && k < 28) || (k >= 64 && k < 84))
                    continue; /* timestamp, checksum, UUID */
                ck_assert_msg(a[k] == b[k], "%s %s: byte %zu differs", opts[o], sizes[i], k);
            }
            free(a);
            free(b);
            same_output(fmt("qemu-img info --output=json -f vpc '%s' | grep -v filename", q),
                        fmt("qemu-img info --output=json -f vpc '%s' | grep -v filename", v));
            /* Writes through vdisk io read back by qemu-io. */
            RUN_OK("%s io -f vpc -c 'write -P 0x3c 4k 8k' -c 'write -P 0xc3 500k 200k' "
                   "-c 'write -P 0x99 0 512' '%s'", vdisk_bin(), v);
            RUN_OK("qemu-io -f vpc -c 'write -P 0x3c 4k 8k' -c 'write -P 0xc3 500k 200k' "
                   "-c 'write -P 0x99 0 512' '%s'", q);
            struct run *r = run("qemu-img compare -f vpc -F vpc '%s' '%s'", q, v);
            ck_assert_msg(r->status == 0, "%s %s: %s%s", opts[o], sizes[i], r->out, r->err);
            r = run("qemu-io -f vpc -c 'read -P 0x99 0 512' -c 'read -P 0 512 3584' "
                    "-c 'read -P 0x3c 4k 8k' -c 'read -P 0xc3 500k 200k' '%s'", v);
            ck_assert_msg(r->status == 0 && !strstr(r->out, "mismatch"), "%s", r->out);
        }
    }
}
END_TEST


START_TEST(convert_to_vpc)
{
    const char *raw = scratch("src.raw"), *out = scratch("out.vhd");
    RUN_OK("qemu-img create -q -f raw '%s' 77M && qemu-io -f raw -c 'write -P 0x42 0 1M' "
           "-c 'write -P 0x24 40M 3M' -c 'write -P 0x66 76M 1M' '%s'", raw, raw);
    for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
        unlink(out);
        RUN_OK("%s convert -f raw -O vpc -o %s '%s' '%s'", vdisk_bin(), opts[o], raw, out);
        struct run *r = run("qemu-img compare -f raw -F vpc '%s' '%s'", raw, out);
        ck_assert_msg(r->status == 0, "%s: %s%s", opts[o], r->out, r->err);
        RUN_OK("qemu-img convert -f vpc -O raw '%s' '%s'", out, scratch("back.raw"));
        libyal_reads("vhdi", out, scratch("back.raw"), opts[o]);
        if (strstr(opts[o], "force_size")) {
            r = run("qemu-img info --output=json -f vpc '%s'", out);
            ck_assert_msg(strstr(r->out, "\"virtual-size\": 80740352,"), "%s", r->out);
        }
    }
    /* And back: a qemu-made VHD through vdisk to qcow2. */
    unlink(out);
    RUN_OK("qemu-img convert -f raw -O vpc '%s' '%s'", raw, out);
    RUN_OK("%s convert -O qcow2 '%s' '%s'", vdisk_bin(), out, scratch("out.qcow2"));
    struct run *r = run("qemu-img compare '%s' '%s'", out, scratch("out.qcow2"));
    ck_assert_msg(r->status == 0, "%s%s", r->out, r->err);
}
END_TEST

/* ---- Differencing images -------------------------------------------------- */

static uint32_t checksum(const uint8_t *b, size_t n, size_t at)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        if (i < at || i >= at + 4)
            s += b[i];
    return ~s;
}

static void fix_checksums(uint8_t *img, size_t len)
{
    be32_store(img + 64, 0);
    be32_store(img + 64, checksum(img, 512, 64));
    be32_store(img + 512 + 36, checksum(img + 512, 1024, 36));
    memcpy(img + len - 512, img, 512);
}

/* A differencing image CHILD over the dynamic qemu-made PARENT (its name in
 * the header as PNAME, a W2ru locator holding WNAME when not NULL). */
static void make_child(const char *parent, const char *child, const char *pname,
                       const char *wname)
{
    size_t plen;
    uint8_t *p = read_file(parent, &plen);
    uint64_t bat = be64_load(p + 512 + 16);
    uint32_t entries = be32_load(p + 512 + 28);
    uint64_t bat_bytes = ((uint64_t)entries * 4 + 511) / 512 * 512;
    size_t len = (size_t)(bat + bat_bytes + 512 + 512);
    uint8_t *c = calloc(1, len);
    memcpy(c, p, 512 + 1024);
    memset(c + bat, 0xff, bat_bytes);
    be32_store(c + 60, 4); /* differencing */
    c[68] ^= 0x55;         /* a UUID of its own */
    uint8_t *h = c + 512;
    memcpy(h + 40, p + 68, 16); /* the parent's UUID */
    for (size_t i = 0; pname[i]; i++)
        be16_store(h + 64 + 2 * i, (uint8_t)pname[i]);
    if (wname) {
        uint64_t loc = bat + bat_bytes;
        size_t n = strlen(wname);
        for (size_t i = 0; i < n; i++)
            le16_store(c + loc + 2 * i, (uint8_t)wname[i]);
        memcpy(h + 576, "W2ru", 4);
        be32_store(h + 576 + 4, 512);
        be32_store(h + 576 + 8, (uint32_t)(2 * n));
        be64_store(h + 576 + 16, loc);
    }
    fix_checksums(c, len);
    write_file(child, c, len);
    free(c);
    free(p);
}

static void read_all(const char *img, uint8_t *buf, size_t len)
{
    vdisk_dev *d;
    ck_assert_msg(vdisk_open(&d, img, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_int_eq(vdisk_pread(d, buf, len, 0), 0);
    vdisk_close(d);
}

START_TEST(differencing_over_dynamic)
{
    ck_assert_int_eq(mkdir(scratch("vm"), 0755), 0);
    const char *base = scratch("vm/base.vhd"), *child = scratch("vm/child.vhd");
    RUN_OK("qemu-img create -q -f vpc '%s' 10M && qemu-io -f vpc -c 'write -P 0x61 0 3M' "
           "-c 'write -P 0x62 8M 1M' '%s'", base, base);
    make_child(base, child, "base.vhd", ".\\base.vhd");
    size_t size = 10514432;
    uint8_t *want = malloc(size), *got = malloc(size);
    RUN_OK("qemu-img convert -f vpc -O raw '%s' '%s'", base, scratch("base.raw"));
    size_t n;
    uint8_t *b = read_file(scratch("base.raw"), &n);
    ck_assert_uint_eq(n, size);
    memcpy(want, b, size);
    free(b);
    /* Through the parent before any write. */
    read_all(child, got, size);
    assert_same_bytes(got, want, size, 0, "child");
    /* Sector writes in the child: the rest of each block stays the parent's. */
    RUN_OK("%s io -c 'write -P 0x71 4096 1024' -c 'write -P 0x72 2M 512' "
           "-c 'write -P 0x73 9M 8k' -c 'write -z 8M 512' '%s'", vdisk_bin(), child);
    memset(want + 4096, 0x71, 1024);
    memset(want + (2 << 20), 0x72, 512);
    memset(want + (9 << 20), 0x73, 8192);
    memset(want + (8 << 20), 0, 512);
    read_all(child, got, size);
    assert_same_bytes(got, want, size, 0, "child after writes");
    /* The parent is untouched. */
    RUN_OK("qemu-img compare -f vpc -F raw '%s' '%s'", base, scratch("base.raw"));
    /* info names the parent; convert flattens the chain. */
    struct run *r = run("%s info '%s'", vdisk_bin(), child);
    ck_assert_msg(strstr(r->out, "backing file: base.vhd (actual path: "), "%s", r->out);
    RUN_OK("%s convert -O raw '%s' '%s'", vdisk_bin(), child, scratch("flat.raw"));
    b = read_file(scratch("flat.raw"), &n);
    ck_assert_uint_eq(n, size);
    assert_same_bytes(b, want, size, 0, "flattened");
    free(b);
    /* Without a locator the header's name finds the parent. */
    make_child(base, scratch("vm/c2.vhd"), "base.vhd", NULL);
    read_all(scratch("vm/c2.vhd"), got, size);
    b = read_file(scratch("base.raw"), &n);
    assert_same_bytes(got, b, size, 0, "child without locators");
    free(b);
    /* backing-confine=on refuses a parent outside the folder. */
    make_child(base, scratch("out.vhd"), "x", "vm\\base.vhd");
    RUN_OK("%s info '%s'", vdisk_bin(), scratch("out.vhd"));
    make_child(base, scratch("vm/up.vhd"), "x", "..\\vm\\base.vhd");
    vdisk_options *o;
    vdisk_dev *d;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "backing-confine", "on"), 0);
    ck_assert_int_eq(vdisk_open(&d, scratch("vm/up.vhd"), o), -EPERM);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_open: %s: the backing file name '../vm/base.vhd' leads outside "
                         "the image's folder, which backing-confine=on forbids",
                         scratch("vm/up.vhd")));
    vdisk_options_free(o);
    /* A parent whose UUID is not the one recorded. */
    make_child(base, scratch("vm/bad.vhd"), "base.vhd", NULL);
    size_t bl;
    uint8_t *bb = read_file(scratch("vm/bad.vhd"), &bl);
    bb[512 + 40] ^= 1;
    fix_checksums(bb, bl);
    write_file(scratch("vm/bad.vhd"), bb, bl);
    free(bb);
    ck_assert_int_eq(vdisk_open(&d, scratch("vm/bad.vhd"), NULL), -EINVAL);
    ck_assert_msg(strstr(vdisk_get_error(), "; the image's header (parent UUID at offset 552) "
                         "expects "), "%s", vdisk_get_error());
    /* libvhdi, an independent reader, sees the child as vdisk does. */
    libyal_reads("vhdi", child, scratch("flat.raw"), "differencing");
    free(want);
    free(got);
}
END_TEST

/* ---- Damaged images ------------------------------------------------------- */

/* Among them the classes of QEMU's 2014 vpc fixes (CVE-2014-0144: a block
 * size of 0 or not a power of two, a max_table_entries that overflows the
 * BAT's allocation or lies past the file) and BAT entries past the end of
 * the file. */

static char sum_msg[200];

/* A qemu-made dynamic image of 10 MiB, changed by EDIT, must be refused with
 * "vdisk_open: FILE: " + MSG. */
static void refused(const char *what, void (*edit)(uint8_t *img, size_t len), bool sums,
                    int err, const char *msg)
{
    const char *img = scratch("h.vhd");
    unlink(img);
    RUN_OK("qemu-img create -q -f vpc '%s' 10M && qemu-io -f vpc -c 'write 2M 4k' '%s'", img,
           img);
    size_t len;
    uint8_t *b = read_file(img, &len);
    edit(b, len);
    if (sums)
        fix_checksums(b, len);
    write_file(img, b, len);
    free(b);
    vdisk_dev *d;
    ck_assert_msg(vdisk_open(&d, img, NULL) == err, "%s: opened (or other error): %s", what,
                  vdisk_get_error());
    ck_assert_str_eq(vdisk_get_error(), fmt("vdisk_open: %s: %s", img, msg ? msg : sum_msg));
}

static void e_footer_sum(uint8_t *b, size_t len)
{
    b[100] = 1;
    snprintf(sum_msg, sizeof sum_msg, "the VHD footer at offset 0 has a bad checksum: it records "
             "0x%08x, its bytes sum to 0x%08x", be32_load(b + 64), checksum(b, 512, 64));
}
static void e_block_0(uint8_t *b, size_t len) { be32_store(b + 512 + 32, 0); }
static void e_block_huge(uint8_t *b, size_t len) { be32_store(b + 512 + 32, 0x80000000u); }
static void e_block_odd(uint8_t *b, size_t len) { be32_store(b + 512 + 32, 3 << 20); }
static void e_entries(uint8_t *b, size_t len) { be32_store(b + 512 + 28, 0xffffffffu); }
static void e_entries_few(uint8_t *b, size_t len) { be32_store(b + 512 + 28, 2); }
static void e_bat_far(uint8_t *b, size_t len) { be64_store(b + 512 + 16, 1ull << 40); }
static void e_bat_entry(uint8_t *b, size_t len) { be32_store(b + 1536 + 4, 0x7fffffff); }
static void e_bat_overlap(uint8_t *b, size_t len) { be32_store(b + 1536 + 4, 2); }
static void e_size(uint8_t *b, size_t len)
{
    memcpy(b + 28, "win ", 4);
    be64_store(b + 48, 1ull << 60);
}
static void e_type(uint8_t *b, size_t len) { be32_store(b + 60, 7); }
static void e_locator(uint8_t *b, size_t len)
{
    be32_store(b + 60, 4);
    memcpy(b + 512 + 576 + 24, "W2ru", 4);
    be32_store(b + 512 + 576 + 24 + 8, 20);
    be64_store(b + 512 + 576 + 24 + 16, 1ull << 50);
}
static void e_truncated(uint8_t *b, size_t len) { be32_store(b + 1536 + 4, 0x5000); }

START_TEST(hostile_headers_messages)
{
    /* The checksums: the recorded and the computed value. */
    refused("footer checksum", e_footer_sum, false, -EINVAL, NULL);
    refused("block size 0", e_block_0, true, -EINVAL,
            "the dynamic disk header at offset 512 has block size 0; expected a power of two "
            "from 512 to 268435456");
    refused("block size 2G", e_block_huge, true, -EINVAL,
            "the dynamic disk header at offset 512 has block size 2147483648; expected a power "
            "of two from 512 to 268435456");
    refused("block size 3M", e_block_odd, true, -EINVAL,
            "the dynamic disk header at offset 512 has block size 3145728; expected a power "
            "of two from 512 to 268435456");
    refused("max_table_entries 2^32-1", e_entries, true, -EINVAL,
            "the BAT at offset 1536 (4294967295 entries, 17179869180 bytes) does not lie in "
            "the file (2100224 bytes)");
    refused("too few BAT entries", e_entries_few, true, -EINVAL,
            "the BAT has 2 entries (dynamic disk header at offset 512); the disk's 10514432 "
            "bytes need 6");
    refused("BAT past EOF", e_bat_far, true, -EINVAL,
            "the BAT at offset 1099511627776 (6 entries, 24 bytes) does not lie in the file "
            "(2100224 bytes)");
    refused("BAT entry past EOF", e_bat_entry, true, -EINVAL,
            "BAT entry 1 (at offset 1540) points at sector 2147483647: its block (2097664 "
            "bytes at offset 1099511627264) is not inside the file (2100224 bytes)");
    refused("BAT entry past EOF, near", e_truncated, true, -EINVAL,
            "BAT entry 1 (at offset 1540) points at sector 20480: its block (2097664 bytes at "
            "offset 10485760) is not inside the file (2100224 bytes)");
    refused("BAT entry over the metadata", e_bat_overlap, true, -EINVAL,
            "BAT entry 1 (at offset 1540) points at sector 2: its block (2097664 bytes at "
            "offset 1024) overlaps the dynamic disk header (offset 512) or the BAT (offset "
            "1536)");
    refused("size 2^60", e_size, true, -EFBIG,
            "the VHD footer at offset 0 claims 2251799813685248 sectors, more than the "
            "4278190080 (2040 GiB) a VHD may hold");
    refused("disk type 7", e_type, true, -EINVAL,
            "the VHD footer at offset 0 has disk type 7; expected 2 (fixed), 3 (dynamic) or 4 "
            "(differencing)");
    refused("parent locator out of range", e_locator, true, -EINVAL,
            "parent locator 1 (platform 0x57327275) claims 20 bytes at offset "
            "1125899906842624; expected at most 4096 bytes inside the file (2100224 bytes)");
    /* The header's checksum (the footer's is fixed, the header's not). */
    const char *h = scratch("h.vhd");
    unlink(h);
    RUN_OK("qemu-img create -q -f vpc '%s' 10M", h);
    size_t n;
    uint8_t *b = read_file(h, &n);
    uint32_t want = be32_load(b + 512 + 36);
    b[512 + 1000] = 1;
    uint32_t got = checksum(b + 512, 1024, 36);
    write_file(h, b, n);
    free(b);
    vdisk_dev *d;
    ck_assert_int_eq(vdisk_open(&d, h, NULL), -EINVAL);
    ck_assert_str_eq(vdisk_get_error(),
                     fmt("vdisk_open: %s: the dynamic disk header at offset 512 has a bad "
                         "checksum: it records 0x%08x, its bytes sum to 0x%08x", h, want, got));
    /* A file too short, and one without a footer: -f vpc refuses them. */
    write_file(h, "conectix", 8);
    RUN_OK("true");
    struct run *r = run("%s info -f vpc '%s'", vdisk_bin(), h);
    ck_assert_str_eq(r->err, fmt("vdisk: %s: the file (8 bytes) is too short for a "
                                 "VHD footer (512 bytes)\n", h));
}
END_TEST

/* Random I/O (eight requests in flight, zeroes, unaligned pieces) on a
 * dynamic image and on a differencing image over it, against a model; then
 * qemu-img reads the dynamic one as the model says. */
START_TEST(random_io)
{
    ck_assert_int_eq(mkdir(scratch("r"), 0755), 0);
    const char *img = scratch("r/base.vhd");
    RUN_OK("%s create -q -f vpc '%s' 24M", vdisk_bin(), img);
    uint64_t size = 25171968; /* the geometry's (qemu-img: the same) */
    uint8_t *model = calloc(1, size);
    vdisk_dev *d;
    ck_assert_msg(vdisk_open(&d, img, NULL) == 0, "%s", vdisk_get_error());
    ck_assert_uint_eq(vdisk_get_size(d), size);
    random_io_against_model(d, model, size, 200, 0x766863);
    vdisk_close(d);
    write_file(scratch("r/model.raw"), model, size);
    RUN_OK("qemu-img compare -f vpc -F raw '%s' '%s'", img, scratch("r/model.raw"));
    /* A differencing image over it: writes land in the child only. */
    make_child(img, scratch("r/child.vhd"), "base.vhd", ".\\base.vhd");
    ck_assert_msg(vdisk_open(&d, scratch("r/child.vhd"), NULL) == 0, "%s", vdisk_get_error());
    random_io_against_model(d, model, size, 200, 0x646966);
    vdisk_close(d);
    RUN_OK("qemu-img compare -f vpc -F raw '%s' '%s'", img, scratch("r/model.raw"));
    uint8_t *got = malloc(size);
    read_all(scratch("r/child.vhd"), got, size);
    assert_same_bytes(got, model, size, 0, "child");
    free(got);
    free(model);
}
END_TEST

/* vdisk check says what qemu-img says: vpc has no check. */
START_TEST(check_not_supported)
{
    const char *img = scratch("c.vhd");
    RUN_OK("qemu-img create -q -f vpc '%s' 1M", img);
    struct run *r = run("qemu-img check '%s'", img);
    int qst = r->status;
    char *qerr = strdup(r->err);
    r = run("%s check '%s'", vdisk_bin(), img);
    ck_assert_int_eq(r->status, qst);
    ck_assert_msg(strstr(qerr, "This image format does not support checks") &&
                  strstr(r->err, "This image format does not support checks"),
                  "qemu-img: %s\nvdisk: %s", qerr, r->err);
    free(qerr);
}
END_TEST

Suite *make_suite(void);
Suite *make_suite(void)
{
    Suite *s = suite_create("interop-vpc");
    TCase *tc = tcase_create("vpc");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, qemu_images_read_identically);
    tcase_add_test(tc, vdisk_images_read_by_qemu);
    tcase_add_test(tc, convert_to_vpc);
    tcase_add_test(tc, differencing_over_dynamic);
    tcase_add_test(tc, hostile_headers_messages);
    tcase_add_test(tc, check_not_supported);
    tcase_add_test(tc, random_io);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    return run_suite(make_suite());
}
