/* SPDX-License-Identifier: MIT */
/*
 * tests/part/part_sfdisk.c: vdisk part prints what sfdisk (util-linux 2.38)
 * prints, byte for byte, on the same images:
 *   - `part list` as `sfdisk -l` (type names, columns, sizes, notes), also
 *     of a qcow2 image (as sfdisk lists the same disk raw),
 *     `--output=json` as `sfdisk -J`, `part dump` as `sfdisk -d`, for MBRs
 *     (extended, logical, bootable, type 0 with a size, no sectors), GPTs
 *     (named types, unknown ones, table-length, small disks' grain);
 *   - new tables (`part create` + `add`, `part apply`) are the images sfdisk
 *     writes from the same script, ids fixed (4096-byte sectors too, where
 *     a loop device of 4096-byte sectors can be set up);
 *   - MBRs of 4096-byte-sector disks through IMAGE:pN and --sector-size
 *     (fdisk -b 4096 makes and lists them: sfdisk 2.38 has no option for it);
 *   - sun, sgi and bsd disklabels are listed as sfdisk lists them and
 *     refused for edits;
 *   - hybrid ISOs (an MBR without an 0xEE entry beside a GPT) read as "dos",
 *     as sfdisk and blkid read them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

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
    ck_abort_msg("%s differ at:\n vdisk: %.400s\n other: %.400s", what, x, y);
}

/* `vdisk ARGS IMG` and `TOOL IMG` (both run in the scratch folder, so the
 * device names agree) print the same, both exiting 0. */
static void same(const char *vargs, const char *tool, const char *img)
{
    struct run *r = run("cd '%s' && %s %s '%s'", scratch_dir(), vdisk_bin(), vargs, img);
    ck_assert_msg(r->status == 0, "vdisk %s %s: %s", vargs, img, r->err);
    char *v = strdup(r->out);
    r = run("cd '%s' && %s '%s'", scratch_dir(), tool, img);
    ck_assert_msg(r->status == 0, "%s %s: %s", tool, img, r->err);
    char what[256];
    snprintf(what, sizeof what, "vdisk %s and %s of %s", vargs, tool, img);
    assert_same(v, r->out, what);
    free(v);
}

/* The listing, the JSON and the dump of IMG as sfdisk's. */
static void same_as_sfdisk(const char *img)
{
    same("part list", "sfdisk -l", img);
    same("part list --output=json", "sfdisk -J", img);
    same("part dump", "sfdisk -d", img);
}

/* IMG (in the scratch folder) of SIZE with the table sfdisk makes from SCRIPT. */
static void sfdisk_image(const char *img, const char *size, const char *script)
{
    RUN_OK("cd '%s' && rm -f '%s' && truncate -s %s '%s' && printf '%s' | sfdisk -q '%s'",
           scratch_dir(), img, size, img, script, img);
}

START_TEST(listings_as_sfdisk)
{
    require_program("sfdisk");
    /* MBR: bootable, named types, an extended partition with logical ones. */
    sfdisk_image("dos.img", "64M", "label: dos\\nsize=4M, type=83, bootable\\nsize=3M, type=c\\n"
                 "type=5\\nsize=2M, type=82\\nsize=1500K, type=7\\nsize=2M, type=99\\n"
                 "size=1M, type=fd\\n");
    same_as_sfdisk("dos.img");
    /* The same table in a qcow2 image (of the same name, in another
     * folder): listed as sfdisk lists the raw disk. */
    RUN_OK("cd '%s' && rm -rf q && mkdir q && %s convert -f raw -O qcow2 dos.img q/dos.img &&"
           " cd q && %s part list dos.img > ../q.list && %s part list --output=json dos.img >"
           " ../q.json && %s part dump dos.img > ../q.dump && cd .. && sfdisk -l dos.img |"
           " cmp - q.list && sfdisk -J dos.img | cmp - q.json && sfdisk -d dos.img | cmp - q.dump",
           scratch_dir(), vdisk_bin(), vdisk_bin(), vdisk_bin(), vdisk_bin());
    /* Type 0 with a size (listed as "Empty"), an entry with no sectors. */
    RUN_OK("cd '%s' && cp dos.img zero.img && printf '\\000' |"
           " dd of=zero.img bs=1 seek=%d conv=notrunc status=none && cp dos.img nosize.img &&"
           " dd if=/dev/zero of=nosize.img bs=1 seek=%d count=4 conv=notrunc status=none",
           scratch_dir(), 446 + 16 + 4, 446 + 16 + 12);
    same_as_sfdisk("zero.img");
    same_as_sfdisk("nosize.img");
    /* Entries not in disk order. */
    sfdisk_image("order.img", "16M", "label: dos\\nstart=20480, size=2048\\nstart=2048, size=2048\\n");
    same_as_sfdisk("order.img");
    /* GPT: named types, an unknown one, a name; sizes of G and of tenths. */
    sfdisk_image("gpt.img", "3G", "label: gpt\\nsize=1G, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\\n"
                 "size=100M, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE\\nsize=1500M, type=L\\n"
                 "size=1M, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\\n"
                 "size=300M, type=U\\nsize=7M, type=S\\n"
                 "type=0FC63DAF-8483-4772-8E79-3D69D8477DE5\\n");
    same_as_sfdisk("gpt.img");
    /* The disk grown after the GPT was written; the primary header damaged
     * (sfdisk and vdisk read the backup; sfdisk's warnings go to stderr). */
    sfdisk_image("grown.img", "16M", "label: gpt\nsize=1M\nsize=2M, type=S, name=\"two\"\n");
    RUN_OK("cd '%s' && cp grown.img bad.img && truncate -s 20M grown.img && printf XXXX |"
           " dd of=bad.img bs=1 seek=612 conv=notrunc status=none", scratch_dir());
    same_as_sfdisk("grown.img");
    same_as_sfdisk("bad.img");
    /* A shorter entry array (table-length), a disk of 2 MiB (the grain). */
    sfdisk_image("len.img", "16M", "label: gpt\\ntable-length: 64\\nsize=1M\\n");
    same_as_sfdisk("len.img");
    sfdisk_image("small.img", "2M", "label: gpt\\n,\\n");
    same_as_sfdisk("small.img");
    /* No partitions; a name ending in a digit (nodes get a "p"). */
    sfdisk_image("empty.img", "10M", "label: dos\\n");
    same_as_sfdisk("empty.img");
    sfdisk_image("disk0", "10M", "label: gpt\\nsize=1M\\nsize=2M\\n");
    same_as_sfdisk("disk0");
}
END_TEST

/* part create + add write the image sfdisk writes from the same script. */
START_TEST(new_tables_as_sfdisk)
{
    require_program("sfdisk");
    static const char *const sizes[] = {"2M", "5M", "64M", "3G"};
    const char *guid = "11111111-2222-3333-4444-555555555555";
    const char *u1 = "AAAAAAAA-BBBB-CCCC-DDDD-000000000001";
    const char *u2 = "AAAAAAAA-BBBB-CCCC-DDDD-000000000002";
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char script[512];
        snprintf(script, sizeof script, "label: gpt\\nlabel-id: %s\\nsize=1M, uuid=%s\\n"
                 "uuid=%s, type=S\\n", guid, u1, u2);
        sfdisk_image("s.img", sizes[i], script);
        RUN_OK("cd '%s' && rm -f v.img && truncate -s %s v.img && %s part create -f raw"
               " --table=gpt --id=%s v.img && %s part add -f raw --size=1M --uuid=%s v.img &&"
               " %s part add -f raw --uuid=%s --type=S v.img && cmp s.img v.img", scratch_dir(),
               sizes[i], vdisk_bin(), guid, vdisk_bin(), u1, vdisk_bin(), u2);
    }
    /* MBR with an extended partition and logical ones. */
    sfdisk_image("s.img", "64M", "label: dos\\nlabel-id: 0x12345678\\nsize=1M\\ntype=5\\n"
                 "size=1M\\n,\\n");
    RUN_OK("cd '%s' && rm -f v.img && truncate -s 64M v.img && %s part create -f raw"
           " --table=mbr --id=0x12345678 v.img && %s part add -f raw --size=1M v.img &&"
           " %s part add -f raw --type=5 v.img && %s part add -f raw --size=1M v.img &&"
           " %s part add -f raw v.img && cmp s.img v.img", scratch_dir(), vdisk_bin(),
           vdisk_bin(), vdisk_bin(), vdisk_bin(), vdisk_bin());
    /* Sizes with a unit end on the grain (the nearest), sizes in sectors
     * do not: through add and through apply. */
    static const char *const scripts[] = {
        "label: dos\\nlabel-id: 0x12345678\\nsize=1500K\\nsize=3000\\ntype=5\\n"
        "size=5000K\\n,\\n",
        "label: gpt\\nlabel-id: 11111111-2222-3333-4444-555555555555\\n"
        "size=1500K, uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000001\\n"
        "size=3000, uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000002\\n"
        "size=5000K, uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000003\\n"
        "uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000004\\n",
    };
    for (int i = 0; i < 2; i++) {
        sfdisk_image("s.img", "64M", scripts[i]);
        RUN_OK("cd '%s' && rm -f v.img && truncate -s 64M v.img && printf '%s' |"
               " %s part apply -f raw v.img && cmp s.img v.img", scratch_dir(), scripts[i],
               vdisk_bin());
    }
    RUN_OK("cd '%s' && rm -f v.img && truncate -s 64M v.img && %s part create -f raw"
           " --table=gpt --id=11111111-2222-3333-4444-555555555555 v.img && for s in 1500K:1"
           " 3000:2 5000K:3 :4; do z=${s%%:*}; %s part add -f raw ${z:+--size=$z}"
           " --uuid=AAAAAAAA-BBBB-CCCC-DDDD-00000000000${s#*:} v.img || exit 1; done &&"
           " cmp s.img v.img", scratch_dir(), vdisk_bin(), vdisk_bin());
}
END_TEST

/* The same with 4096-byte sectors: sfdisk writes through a loop device of
 * 4096-byte sectors, vdisk into the file with --sector-size=4096. */
START_TEST(new_4096_tables_as_sfdisk)
{
    require_program("sfdisk");
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && rm -f s.img && truncate -s 64M s.img", d);
    struct run *r = run("cd '%s' && losetup -f --show -b 4096 s.img", d);
    if (r->status != 0) {
        skip_note("new_4096_tables_as_sfdisk: no loop device with 4096-byte sectors"
                  " (losetup -b 4096: %s)", r->err);
        return;
    }
    char loop[64];
    snprintf(loop, sizeof loop, "%s", r->out);
    loop[strcspn(loop, "\n")] = '\0';
    static const char *const scripts[] = {
        "label: gpt\\nlabel-id: 11111111-2222-3333-4444-555555555555\\n"
        "size=1M, uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000001\\n"
        "size=1500K, type=S, uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000002\\n"
        "uuid=AAAAAAAA-BBBB-CCCC-DDDD-000000000003\\n",
        "label: dos\\nlabel-id: 0x12345678\\nsize=1M\\nsize=1500K, type=82\\ntype=5\\nsize=2M\\n"
        ",\\n",
    };
    for (int i = 0; i < 2; i++) {
        r = run("cd '%s' && dd if=/dev/zero of=%s bs=1M count=64 status=none && printf '%s' |"
                " sfdisk -q --no-reread --no-tell-kernel %s", d, loop, scripts[i], loop);
        if (r->status != 0)
            break;
        r = run("cd '%s' && rm -f v.img && truncate -s 64M v.img && printf '%s' | %s part apply"
                " -f raw --sector-size=4096 v.img && cmp s.img v.img", d, scripts[i],
                vdisk_bin());
        if (r->status != 0)
            break;
    }
    int status = r->status;
    char *why = strdup(r->err), *cmd = strdup(harness_last_cmd());
    RUN_OK("losetup -d %s", loop);
    ck_assert_msg(status == 0, "%s: %s", cmd, why);
    free(why);
    free(cmd);
    RUN_OK("cd '%s' && rm -f v.img && truncate -s 64M v.img && %s part create -f raw"
           " --sector-size=4096 --table=mbr --id=0x12345678 v.img && for a in --size=1M"
           " '--size=1500K --type=82' --type=5 --size=2M ''; do %s part add -f raw"
           " --sector-size=4096 $a v.img || exit 1; done && cmp s.img v.img", d, vdisk_bin(),
           vdisk_bin());
}
END_TEST

/* An MBR of a 4096-byte-sector disk in an image file: --sector-size for
 * part and for every verb that takes IMAGE:pN. */
START_TEST(mbr_of_4096_byte_sectors)
{
    require_program("fdisk");
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && rm -f s4.img && truncate -s 64M s4.img && printf"
           " 'o\\nn\\np\\n1\\n\\n+4M\\nn\\np\\n2\\n\\n\\nw\\n' | fdisk -b 4096 s4.img", d);
    same("part list --sector-size=4096", "fdisk -b 4096 -l", "s4.img");
    same("part list --sector-size 4096", "fdisk -b 4096 -l", "s4.img");
    /* Partition 2 starts at sector 1280 of 4096 bytes. */
    RUN_OK("cd '%s' && %s io -f raw -c 'write -P 0x5a 0 4096' 's4.img:p2' --sector-size 4096",
           d, vdisk_bin());
    struct run *r = run("cd '%s' && dd if=s4.img bs=4096 skip=1280 count=1 status=none |"
                        " tr -d Z | wc -c", d);
    ck_assert_msg(r->status == 0 && atoi(r->out) == 0, "%s%s", r->out, r->err);
    r = run("cd '%s' && %s --sector-size=4096 info -f raw --output=json"
                        " 's4.img:p1'", d, vdisk_bin());
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "\"virtual-size\": 4194304") != NULL, "%s", r->out);
    r = run("cd '%s' && %s io -f raw -c 'read -P 0x5a 0 4096' 's4.img:p2' --sector-size=4096",
            d, vdisk_bin());
    ck_assert_msg(r->status == 0 && strstr(r->out, "read 4096/4096") != NULL, "%s%s", r->out,
                  r->err);
    /* Anything but 512 and 4096 is refused before the image is opened. */
    r = run("cd '%s' && %s info 's4.img:p1' --sector-size=1024", d, vdisk_bin());
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "--sector-size must be 512 or 4096") != NULL, "%s", r->err);
}
END_TEST

/* sun, sgi, bsd: listed as sfdisk lists them, never edited. */
START_TEST(disklabels_read_only)
{
    require_program("sfdisk");
    require_program("fdisk");
    const char *d = scratch_dir();
    sfdisk_image("sun.img", "64M", "label: sun\\nsize=16M, type=83\\nsize=8M, type=82\\n,,5\\n");
    same_as_sfdisk("sun.img");
    /* Sun's flags: u (unmountable), r (read-only), both; the checksum redone. */
    FILE *f = fopen(scratch("sun.img"), "r+b");
    ck_assert_ptr_nonnull(f);
    unsigned char s0[512];
    ck_assert_uint_eq(fread(s0, 1, 512, f), 512);
    s0[145] = 0x01, s0[149] = 0x10, s0[153] = 0x11;
    s0[510] = s0[511] = 0;
    unsigned x = 0;
    for (int i = 0; i < 255; i++)
        x ^= (unsigned)s0[2 * i] << 8 | s0[2 * i + 1];
    s0[510] = (unsigned char)(x >> 8), s0[511] = (unsigned char)x;
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    ck_assert_uint_eq(fwrite(s0, 1, 512, f), 512);
    ck_assert_int_eq(fclose(f), 0);
    same_as_sfdisk("sun.img");
    sfdisk_image("sgi.img", "64M", "label: sgi\\nsize=16M, type=83\\nsize=8M, type=82\\n");
    same_as_sfdisk("sgi.img");
    /* A BSD label: fdisk nests one in a FreeBSD MBR partition; its sector
     * copied to sector 1 of a bare disk is a BSD-labelled disk. */
    sfdisk_image("nest.img", "64M", "label: dos\\nsize=32M, type=a5\\n");
    RUN_OK("cd '%s' && printf 'b\\ny\\nn\\na\\n\\n+4M\\nn\\nb\\n\\n+8M\\nw\\n' | fdisk nest.img"
           " && rm -f bsd.img && truncate -s 64M bsd.img && dd if=nest.img of=bsd.img bs=512"
           " skip=2049 seek=1 count=1 conv=notrunc status=none", d);
    same_as_sfdisk("bsd.img");
    static const char *const labels[] = {"sun.img", "sgi.img", "bsd.img"};
    for (int i = 0; i < 3; i++) {
        struct run *r = run("cd '%s' && %s part add -f raw '%s'", d, vdisk_bin(), labels[i]);
        ck_assert_int_eq(r->status, 1);
        ck_assert_msg(strstr(r->err, "disklabels are read-only") != NULL, "%s", r->err);
    }
    /* Their partitions are devices: sun's second one starts at cylinder 3. */
    RUN_OK("cd '%s' && printf 'sunpart2' | dd of=sun.img bs=512 seek=48195 conv=notrunc"
           " status=none", d);
    struct run *r = run("cd '%s' && %s io -f raw -c 'read -v 0 8' 'sun.img:p2'", d, vdisk_bin());
    ck_assert_msg(r->status == 0 && strstr(r->out, "sunpart2") != NULL, "%s%s", r->out, r->err);
}
END_TEST

/* A hybrid ISO: MBR entries of type 0 and 0xef, no 0xEE, a GPT beside. */
START_TEST(hybrid_iso_as_dos)
{
    require_program("sfdisk");
    require_program("xorriso");
    require_program("blkid");
    const char *d = scratch_dir();
    RUN_OK("cd '%s' && rm -rf isod && mkdir isod && echo hi > isod/a.txt && truncate -s 1M"
           " isod/efi.img && head -c 432 /dev/zero > mbr.bin && xorriso -as mkisofs -o h.iso"
           " -R -J -isohybrid-mbr mbr.bin -e efi.img -no-emul-boot -isohybrid-gpt-basdat isod",
           d);
    RUN_OK("cd '%s' && test \"$(dd if=h.iso bs=1 skip=512 count=8 status=none)\" = 'EFI PART'",
           d);
    struct run *r = run("cd '%s' && blkid -p -o value -s PTTYPE h.iso", d);
    ck_assert_str_eq(r->out, "dos\n");
    same_as_sfdisk("h.iso");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("part-sfdisk");
    TCase *tc = tcase_create("listings_as_sfdisk");
    tcase_add_test(tc, listings_as_sfdisk);
    suite_add_tcase(s, tc);
    tc = tcase_create("new_tables_as_sfdisk");
    tcase_add_test(tc, new_tables_as_sfdisk);
    suite_add_tcase(s, tc);
    tc = tcase_create("new_4096_tables_as_sfdisk");
    tcase_add_test(tc, new_4096_tables_as_sfdisk);
    suite_add_tcase(s, tc);
    tc = tcase_create("mbr_of_4096_byte_sectors");
    tcase_add_test(tc, mbr_of_4096_byte_sectors);
    suite_add_tcase(s, tc);
    tc = tcase_create("disklabels_read_only");
    tcase_add_test(tc, disklabels_read_only);
    suite_add_tcase(s, tc);
    tc = tcase_create("hybrid_iso_as_dos");
    tcase_add_test(tc, hybrid_iso_as_dos);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
