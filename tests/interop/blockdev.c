/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/blockdev.c: raw host block devices, through loop devices:
 * size and logical block size from the kernel, discard (BLKDISCARD), write
 * zeroes, O_DIRECT with 512- and 4096-byte sectors; qemu-img agrees on the
 * size and qemu-io reads what vdisk wrote.  Skipped where loop devices
 * cannot be set up (no root, a container without /dev/loop*).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static char loopdev[64];

static void detach(void)
{
    if (loopdev[0])
        run("losetup -d %s", loopdev);
    loopdev[0] = '\0';
}

/* Attaches a 32 MiB file with the given sector size; false when impossible. */
static bool attach(unsigned sector)
{
    const char *f = scratch("loop.img");
    if (run("truncate -s 32M '%s'", f)->status != 0)
        return false;
    struct run *r = run("losetup --sector-size %u -f --show '%s'", sector, f);
    if (r->status != 0)
        return false;
    snprintf(loopdev, sizeof loopdev, "%s", r->out);
    loopdev[strcspn(loopdev, "\n")] = '\0';
    return loopdev[0] == '/';
}

static void exercise(unsigned sector)
{
    ck_assert_msg(attach(sector), "losetup failed: %s", run("true")->err);
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_int_eq(vdisk_options_set(o, "cache", "none"), 0);
    vdisk_dev *dev;
    ck_assert_msg(vdisk_open(&dev, loopdev, o) == 0, "%s", vdisk_get_error());
    vdisk_options_free(o);
    ck_assert_uint_eq(vdisk_get_size(dev), 32u << 20);
    ck_assert_uint_eq(vdisk_get_block_size(dev), sector);

    /* Unaligned I/O on an O_DIRECT block device: read-modify-write. */
    unsigned char buf[5000], back[5000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, sizeof buf, 12345), 0);
    ck_assert_int_eq(vdisk_pread(dev, back, sizeof back, 12345), 0);
    ck_assert_mem_eq(buf, back, sizeof buf);
    ck_assert_int_eq(vdisk_flush(dev), 0);

    /* Zeroes and discard. */
    memset(buf, 0xee, sizeof buf);
    ck_assert_int_eq(vdisk_pwrite(dev, buf, 4096, 1 << 20), 0);
    ck_assert_int_eq(vdisk_write_zeroes(dev, 1 << 20, 4096, VDISK_ZEROES_MAY_UNMAP), 0);
    ck_assert_int_eq(vdisk_pread(dev, back, 4096, 1 << 20), 0);
    for (int i = 0; i < 4096; i++)
        ck_assert_int_eq(back[i], 0);
    ck_assert_int_eq(vdisk_discard(dev, 2 << 20, 1 << 20), 0);
    vdisk_close(dev);

    /* qemu-img sees the same size; qemu-io reads what vdisk wrote. */
    struct run *r = run("qemu-img info --output=json -f raw %s", loopdev);
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, "\"virtual-size\": 33554432,"), "%s", r->out);
    RUN_OK("%s io -f raw -n -c 'write -P 0x42 %u 777' %s", vdisk_bin(), sector + 1, loopdev);
    RUN_OK("qemu-io -f raw -c 'read -P 0x42 %u 777' %s", sector + 1, loopdev);
    detach();
}

START_TEST(sectors_512)
{
    exercise(512);
}
END_TEST

START_TEST(sectors_4096)
{
    exercise(4096);
}
END_TEST

int main(void)
{
    require_program("losetup");
    require_program("qemu-img");
    if (!attach(512))
        skip_test("cannot set up a loop device here (losetup: %s)", harness_last_run()->err);
    detach();
    atexit(detach);
    Suite *s = suite_create("blockdev");
    TCase *tc = tcase_create("loop");
    tcase_add_test(tc, sectors_512);
    tcase_add_test(tc, sectors_4096);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
