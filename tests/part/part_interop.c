/* SPDX-License-Identifier: MIT */
/*
 * tests/part/part_interop.c: partition tables go both ways between vdisk
 * and sfdisk, sgdisk, parted (and fdisk -b 4096 for 4Kn disks).
 *   - tables vdisk part writes (raw and qcow2) are read identically by
 *     sfdisk --json, sgdisk -p and parted -m, and sgdisk -v finds no problem;
 *   - tables the tools make are listed by vdisk exactly as sfdisk --json;
 *   - sfdisk -d dumps round-trip through vdisk part apply / dump;
 *   - data written through a partition device lands at the partition's
 *     offset on the disk;
 *   - verify finds damage, repair mends it (sgdisk agrees).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static void require_tools(void)
{
    require_program("sfdisk");
    require_program("sgdisk");
    require_program("parted");
    require_program("qemu-img");
}

/* S without the lines naming device nodes ("device", "node"). */
static char *no_nodes(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s + 1) : strlen(s);
        if (!memmem(s, len, "\"device\":", 9) && !memmem(s, len, "\"node\":", 7)) {
            memcpy(o, s, len);
            o += len;
        }
        s += len;
    }
    *o = '\0';
    return out;
}

/* Asserts A == B, showing the first line that differs. */
static void assert_same(const char *a, const char *b, const char *what)
{
    if (strcmp(a, b) == 0)
        return;
    const char *x = a, *y = b;
    while (*x && *x == *y)
        x++, y++;
    while (x > a && x[-1] != '\n')
        x--, y--;
    ck_abort_msg("%s differ at:\n vdisk: %.300s\n other: %.300s", what, x, y);
}

/* vdisk part list --output=json IMG equals sfdisk --json RAW (less the
 * device names when IMG is not RAW). */
static void same_json(const char *img, const char *raw)
{
    struct run *r = run("cd '%s' && %s part list --output=json '%s'", scratch_dir(), vdisk_bin(),
                        img);
    ck_assert_msg(r->status == 0, "vdisk part list %s: %s", img, r->err);
    char *v = strdup(r->out);
    r = run("cd '%s' && sfdisk --json '%s'", scratch_dir(), raw);
    ck_assert_msg(r->status == 0, "sfdisk --json %s: %s", raw, r->err);
    if (strcmp(img, raw) == 0) {
        assert_same(v, r->out, "vdisk part list and sfdisk --json");
    } else {
        char *a = no_nodes(v), *b = no_nodes(r->out);
        assert_same(a, b, "vdisk part list and sfdisk --json");
        free(a);
        free(b);
    }
    free(v);
}

/* "N START END" lines of the table as vdisk reads it (GPT: no extended). */
static char *vdisk_triples(const char *img)
{
    vdisk_dev *dev;
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "read-only", "on"), 0);
    ck_assert_msg(vdisk_open(&dev, img, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    vdisk_ptable *t;
    ck_assert_msg(vdisk_part_read(&t, dev, 0) == 0, "%s", vdisk_get_error());
    char *out = calloc(1, 65536);
    size_t len = 0;
    for (size_t i = 0; i < vdisk_part_count(t); i++) {
        struct vdisk_partition p = {.struct_size = sizeof p};
        ck_assert_int_eq(vdisk_part_get(t, i, &p), 0);
        len += (size_t)snprintf(out + len, 65536 - len, "%u %llu %llu\n", p.number,
                                (unsigned long long)p.start,
                                (unsigned long long)(p.start + p.size - 1));
    }
    vdisk_part_free(t);
    vdisk_close(dev);
    return out;
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* S's lines sorted, in place (parted lists by start, the others by number). */
static char *sorted(char *s)
{
    char *lines[4096], *copy = strdup(s);
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l && n < 4096;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, n, sizeof *lines, line_cmp);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(s + o, "%s\n", lines[i]);
    free(copy);
    return s;
}

/* The same from parted -m ("N:STARTs:ENDs:..."). */
static char *parted_triples(const char *raw)
{
    struct run *r = run("parted -m -s '%s' unit s print", raw);
    ck_assert_msg(r->status == 0, "parted: %s", r->err);
    char *out = calloc(1, 65536);
    size_t len = 0;
    for (char *l = r->out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        unsigned n;
        unsigned long long s, e;
        if (sscanf(l, "%u:%llus:%llus:", &n, &s, &e) == 3)
            len += (size_t)snprintf(out + len, 65536 - len, "%u %llu %llu\n", n, s, e);
    }
    return out;
}

/* ... and from sgdisk -p (GPT). */
static char *sgdisk_triples(const char *raw)
{
    struct run *r = run("sgdisk -p '%s'", raw);
    ck_assert_msg(r->status == 0, "sgdisk: %s", r->err);
    char *out = calloc(1, 65536);
    size_t len = 0;
    char *l = strstr(r->out, "Number  Start");
    for (l = l ? strchr(l, '\n') : NULL; l && *++l; l = strchr(l, '\n')) {
        unsigned n;
        unsigned long long s, e;
        if (sscanf(l, "%u %llu %llu", &n, &s, &e) == 3)
            len += (size_t)snprintf(out + len, 65536 - len, "%u %llu %llu\n", n, s, e);
        if (!strchr(l, '\n'))
            break;
    }
    return out;
}

static void tools_agree(const char *img, const char *raw, bool gpt)
{
    same_json(img, raw);
    char *v = sorted(vdisk_triples(img)), *p = sorted(parted_triples(raw));
    assert_same(v, p, "vdisk and parted");
    free(p);
    if (gpt) {
        char *s = sorted(sgdisk_triples(raw));
        assert_same(v, s, "vdisk and sgdisk");
        free(s);
        struct run *r = run("sgdisk -v '%s'", raw);
        ck_assert_msg(strstr(r->out, "No problems found.") != NULL, "sgdisk -v: %.1000s", r->out);
    }
    free(v);
}

#define VD(...) RUN_OK("%s part " __VA_ARGS__)

static void build_mbr(const char *img)
{
    const char *b = vdisk_bin();
    VD("create --table=mbr --id=0x0badcafe '%s'", b, img);
    VD("add --size=8M --bootable '%s'", b, img);
    VD("add --size=8M --type=7 '%s'", b, img);
    VD("add --size=4M --type=S '%s'", b, img);
    VD("add --type=E '%s'", b, img);
    VD("add --size=6M '%s'", b, img);
    VD("add --size=3M --type=b '%s'", b, img);
    VD("add '%s'", b, img);
}

static void build_gpt(const char *img, unsigned ss)
{
    const char *b = vdisk_bin();
    VD("create --table=gpt --sector-size=%u --id=11111111-2222-3333-4444-555555555555 '%s'", b,
       ss, img);
    VD("add --size=4M --type=U --name='EFI system' '%s'", b, img);
    VD("add --size=8M --name='räksmörgås ✓' --uuid=01234567-89AB-CDEF-0123-456789ABCDEF '%s'",
       b, img);
    VD("add --size=2M --type=S --attrs='RequiredPartition LegacyBIOSBootable GUID:60,63' '%s'",
       b, img);
    VD("add --number=9 --size=1M --type=0FC63DAF-8483-4772-8E79-3D69D8477DE4 '%s'", b, img);
    VD("add --name=rest '%s'", b, img);
    VD("set --name=renamed --type=H '%s' 2", b, img);
    VD("resize '%s' 3 1M", b, img);
    VD("delete '%s' 1", b, img);
}

START_TEST(vdisk_tables_read_by_tools)
{
    require_tools();
    const char *raw = scratch("m.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", raw, raw);
    build_mbr(raw);
    tools_agree(raw, raw, false);
    RUN_OK("%s part verify '%s'", vdisk_bin(), raw);
    /* The same on qcow2, read by the tools after qemu-img convert. */
    const char *q = scratch("m.qcow2"), *conv = scratch("conv.img");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", q);
    build_mbr(q);
    RUN_OK("qemu-img convert -O raw '%s' '%s'", q, conv);
    tools_agree(q, conv, false);

    const char *g = scratch("g.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", g, g);
    build_gpt(g, 512);
    tools_agree(g, g, true);
    RUN_OK("%s part verify '%s'", vdisk_bin(), g);
    const char *gq = scratch("g.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64M", gq);
    build_gpt(gq, 512);
    RUN_OK("qemu-img convert -O raw '%s' '%s'", gq, conv);
    tools_agree(gq, conv, true);
}
END_TEST

/* A table made by a tool is listed by vdisk exactly as sfdisk lists it. */
START_TEST(tool_tables_listed_the_same)
{
    require_tools();
    const char *m = scratch("sm.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", m, m);
    RUN_OK("printf 'label: dos\\n,8M,83,*\\n,8M,7\\n,8M,b\\n,,E\\n,4M,83\\n,4M,82\\n,,8e\\n' |"
           " sfdisk -q '%s'", m);
    same_json("sm.img", "sm.img");

    const char *g = scratch("sg.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", g, g);
    RUN_OK("sgdisk -o -U 33333333-4444-5555-6666-777777777777 '%s'", g);
    for (int i = 1; i <= 40; i++)
        RUN_OK("sgdisk -n %d:0:+1M -c %d:'part %d ü€' -t %d:%s '%s'", i, i, i, i,
               i % 3 ? "8300" : "8200", g);
    RUN_OK("sgdisk -A 5:set:2 -A 6:set:0 -A 7:set:60 '%s'", g);
    same_json("sg.img", "sg.img");
    RUN_OK("%s part verify '%s'", vdisk_bin(), g);

    const char *p = scratch("sp.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", p, p);
    RUN_OK("parted -s '%s' mklabel gpt mkpart 'données' ext4 1MiB 9MiB"
           " mkpart swap linux-swap 9MiB 20MiB mkpart x 20MiB 100%%", p);
    same_json("sp.img", "sp.img");
    const char *pm = scratch("spm.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", pm, pm);
    RUN_OK("parted -s '%s' mklabel msdos mkpart primary 1MiB 9MiB mkpart extended 9MiB 60MiB"
           " mkpart logical 10MiB 20MiB mkpart logical 21MiB 30MiB set 1 boot on", pm);
    same_json("spm.img", "spm.img");
}
END_TEST

/* 4096-byte sectors: fdisk -b 4096 makes the tables; sfdisk reads them
 * through a loop device with 4096-byte sectors where one can be set up. */
START_TEST(sectors_of_4096)
{
    require_tools();
    require_program("fdisk");
    const char *img = scratch("f4.img");
    RUN_OK("rm -f '%s' && truncate -s 32M '%s'", img, img);
    RUN_OK("printf 'g\\nn\\n1\\n\\n+4M\\nn\\n2\\n\\n+8M\\nn\\n3\\n\\n\\nw\\n' |"
           " fdisk -b 4096 '%s'", img);
    struct run *r = run("%s part list --output=json '%s'", vdisk_bin(), img);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_ptr_nonnull(strstr(r->out, "\"sectorsize\": 4096"));
    ck_assert_ptr_nonnull(strstr(r->out, "\"start\": 256,\n            \"size\": 1024,"));
    ck_assert_ptr_nonnull(strstr(r->out, "\"start\": 1280,\n            \"size\": 2048,"));
    ck_assert_ptr_nonnull(strstr(r->out, "\"firstlba\": 256,\n      \"lastlba\": 8186,"));
    /* vdisk's own 4Kn GPT, and an MBR, compared with sfdisk through a loop device. */
    const char *g = scratch("v4.img");
    RUN_OK("rm -f '%s' && truncate -s 64M '%s'", g, g);
    build_gpt(g, 4096);
    r = run("%s part list --output=json '%s'", vdisk_bin(), g);
    ck_assert_ptr_nonnull(strstr(r->out, "\"sectorsize\": 4096"));
    r = run("l=$(losetup -f --show -b 4096 '%s' 2>/dev/null) && losetup -d $l", img);
    if (r->status != 0)
        SKIP_CASE("4Kn tables not compared with sfdisk: no loop device with 4096-byte sectors "
                  "(losetup -b 4096: %s)", r->err);
    const char *tbl[] = {img, g};
    char loop[64];
    for (int i = 0; i < 2; i++) {
        r = run("losetup -f --show -b 4096 '%s'", tbl[i]);
        ck_assert_int_eq(r->status, 0);
        snprintf(loop, sizeof loop, "%s", r->out);
        loop[strcspn(loop, "\n")] = '\0';
        r = run("sfdisk --json %s", loop);
        char *s = no_nodes(r->out);
        r = run("%s part list --output=json '%s'", vdisk_bin(), tbl[i]);
        char *v = no_nodes(r->out);
        RUN_OK("losetup -d %s", loop);
        assert_same(v, s, "vdisk and sfdisk (4096)");
        free(s);
        free(v);
    }
}
END_TEST

/* sfdisk -d | vdisk part apply | vdisk part dump gives the dump back, and
 * sfdisk reads the applied table as it wrote it. */
START_TEST(dumps_round_trip)
{
    require_tools();
    const char *scripts[] = {
        "label: dos\\nlabel-id: 0x5eed1234\\n,8M,83,*\\n,8M,7\\n,8M,b\\n,,E\\n,4M,83\\n,4M,82\\n,,8e\\n",
        "label: gpt\\nlabel-id: 227FA491-8D66-5342-9CAC-8984BE0AD6D4\\n"
        "size=10M, type=L, name=\"hello wörld\"\\nsize=10M, type=S\\n"
        "size=5M, type=U, attrs=\"RequiredPartition LegacyBIOSBootable GUID:60,62\"\\n"
        "start=40M, size=1M, name=\"semi;colon: x\"\\n",
    };
    for (int i = 0; i < 2; i++) {
        const char *a = scratch("a.img"), *b = scratch("b.img");
        RUN_OK("cd '%s' && rm -f a.img b.img && truncate -s 64M a.img b.img", scratch_dir());
        RUN_OK("printf '%s' | sfdisk -q '%s'", scripts[i], a);
        RUN_OK("cd '%s' && sfdisk -d a.img > a.dump && sed 's/a\\.img/b.img/' a.dump > b.dump",
               scratch_dir());
        RUN_OK("cd '%s' && %s part apply b.img b.dump", scratch_dir(), vdisk_bin());
        RUN_OK("cd '%s' && %s part dump b.img > b.vdump && cmp b.dump b.vdump", scratch_dir(),
               vdisk_bin());
        RUN_OK("cd '%s' && sfdisk -d b.img | cmp - b.dump", scratch_dir());
        RUN_OK("cd '%s' && %s part dump b.img | %s part apply a.img - && sfdisk -d a.img |"
               " cmp - a.dump", scratch_dir(), vdisk_bin(), vdisk_bin());
        same_json("b.img", "b.img");
        (void)b;
    }
}
END_TEST

/* Data written through a partition device lands at start * sector size. */
START_TEST(partition_devices)
{
    require_tools();
    const char *formats[] = {"raw", "qcow2"};
    for (int f = 0; f < 2; f++) {
        const char *img = scratch(f ? "d.qcow2" : "d.img");
        RUN_OK("rm -f '%s' && qemu-img create -q -f %s '%s' 32M", img, formats[f], img);
        RUN_OK("printf 'label: dos\\n,4M\\n,,E\\n,4M\\n,4M\\n' | %s part apply '%s'", vdisk_bin(),
               img);
        vdisk_dev *disk, *part;
        ck_assert_msg(vdisk_open(&disk, img, NULL) == 0, "%s", vdisk_get_error());
        static const struct { unsigned n; uint64_t start; } parts[] = {
            {1, 2048}, {5, 12288}, {6, 22528}};
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(vdisk_open_partition(&part, disk, parts[i].n, 0) == 0, "%s",
                          vdisk_get_error());
            ck_assert_uint_eq(vdisk_get_size(part), 4u << 20);
            uint8_t buf[4096], back[4096];
            memset(buf, 0x40 + i, sizeof buf);
            ck_assert_int_eq(vdisk_pwrite(part, buf, sizeof buf, 8192), 0);
            vdisk_close(part);
            vdisk_dev *range;
            ck_assert_int_eq(vdisk_open_range(&range, disk, parts[i].start * 512, 1 << 20,
                                              VDISK_OPEN_RDONLY), 0);
            ck_assert_int_eq(vdisk_pread(range, back, sizeof back, 8192), 0);
            ck_assert_int_eq(memcmp(buf, back, sizeof buf), 0);
            vdisk_close(range);
            /* Writes beyond the partition's end are refused. */
            ck_assert_int_eq(vdisk_open_partition(&part, disk, parts[i].n, VDISK_OPEN_RDONLY), 0);
            ck_assert_int_eq(vdisk_pread(part, back, 512, 4u << 20), -EIO);
            vdisk_close(part);
        }
        ck_assert_int_eq(vdisk_open_partition(&part, disk, 2, 0), -EINVAL);
        ck_assert_int_eq(vdisk_open_partition(&part, disk, 3, 0), -ENOENT);
        char want[600];
        snprintf(want, sizeof want, "vdisk_open_partition: %s: there is no partition 3", img);
        ck_assert_str_eq(vdisk_get_error(), want);
        vdisk_close(disk);
    }
    /* The raw disk, read at the partition's offset, has the bytes. */
    struct run *r = run("od -An -tx1 -v -j %d -N 4096 '%s' | tr ' ' '\\n' | grep . | sort -u",
                        2048 * 512 + 8192, scratch("d.img"));
    ck_assert_str_eq(r->out, "40\n");
    r = run("od -An -tx1 -v -j %d -N 4096 '%s' | tr ' ' '\\n' | grep . | sort -u", 12288 * 512 + 8192, scratch("d.img"));
    ck_assert_str_eq(r->out, "41\n");
}
END_TEST

/* verify finds damage (one line per problem, exit 1); repair mends it. */
START_TEST(verify_and_repair)
{
    require_tools();
    const char *g = scratch("r.img");
    RUN_OK("rm -f '%s' && truncate -s 16M '%s'", g, g);
    RUN_OK("printf 'label: gpt\\nsize=4M\\nsize=4M\\n' | sfdisk -q '%s'", g);
    RUN_OK("%s part verify '%s'", vdisk_bin(), g);
    /* A flipped byte in the primary header's disk GUID. */
    RUN_OK("printf '\\377' | dd of='%s' bs=1 seek=%d conv=notrunc status=none", g, 512 + 60);
    struct run *r = run("%s part verify '%s'", vdisk_bin(), g);
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strncmp(r->out, "The primary GPT header is damaged: header CRC32 0x", 50) == 0,
                  "%s", r->out);
    RUN_OK("%s part repair '%s'", vdisk_bin(), g);
    RUN_OK("%s part verify '%s'", vdisk_bin(), g);
    r = run("sgdisk -v '%s'", g);
    ck_assert_msg(strstr(r->out, "No problems found.") != NULL, "%s", r->out);
    /* A damaged entry array. */
    RUN_OK("printf 'x' | dd of='%s' bs=1 seek=%d conv=notrunc status=none", g, 1024 + 200);
    r = run("%s part verify '%s'", vdisk_bin(), g);
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->out, "The primary GPT header is damaged: entry array CRC32") != NULL,
                  "%s", r->out);
    RUN_OK("%s part repair '%s'", vdisk_bin(), g);
    RUN_OK("%s part verify '%s'", vdisk_bin(), g);
    /* The disk grew: the backup moves to the new end. */
    RUN_OK("truncate -s 32M '%s'", g);
    r = run("%s part verify '%s'", vdisk_bin(), g);
    ck_assert_int_eq(r->status, 1);
    ck_assert_str_eq(r->out, "The backup GPT header is at sector 32767, not at the end of the"
                     " disk (sector 65535): the disk grew?\n");
    RUN_OK("%s part repair '%s'", vdisk_bin(), g);
    RUN_OK("%s part verify '%s'", vdisk_bin(), g);
    r = run("sgdisk -v '%s'", g);
    ck_assert_msg(strstr(r->out, "No problems found.") != NULL, "%s", r->out);
    r = run("sfdisk --json '%s'", g);
    ck_assert_ptr_nonnull(strstr(r->out, "\"lastlba\": 65502,"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("part-interop");
    TCase *tc_vdisk_tables_read_by_tools = tcase_create("vdisk_tables_read_by_tools");
    tcase_add_test(tc_vdisk_tables_read_by_tools, vdisk_tables_read_by_tools);
    suite_add_tcase(s, tc_vdisk_tables_read_by_tools);
    TCase *tc_tool_tables_listed_the_same = tcase_create("tool_tables_listed_the_same");
    tcase_add_test(tc_tool_tables_listed_the_same, tool_tables_listed_the_same);
    suite_add_tcase(s, tc_tool_tables_listed_the_same);
    TCase *tc_sectors_of_4096 = tcase_create("sectors_of_4096");
    tcase_add_test(tc_sectors_of_4096, sectors_of_4096);
    suite_add_tcase(s, tc_sectors_of_4096);
    TCase *tc_dumps_round_trip = tcase_create("dumps_round_trip");
    tcase_add_test(tc_dumps_round_trip, dumps_round_trip);
    suite_add_tcase(s, tc_dumps_round_trip);
    TCase *tc_partition_devices = tcase_create("partition_devices");
    tcase_add_test(tc_partition_devices, partition_devices);
    suite_add_tcase(s, tc_partition_devices);
    TCase *tc_verify_and_repair = tcase_create("verify_and_repair");
    tcase_add_test(tc_verify_and_repair, verify_and_repair);
    suite_add_tcase(s, tc_verify_and_repair);
    return run_suite(s);
}
