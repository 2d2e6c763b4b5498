/* SPDX-License-Identifier: MIT */
/* tests/hostile/images.c: see images.h. */
#include "images.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endian.h"
#include "harness.h"

const char *hostile_base(const char *name)
{
    const char *img = scratch(name);
    RUN_OK("rm -f '%s' && %s create -q -f qcow2 '%s' 1M", img, vdisk_bin(), img);
    RUN_OK("%s io -c 'write -q -P 1 0 128k' '%s'", vdisk_bin(), img);
    return img;
}

void patch_at(const char *path, uint64_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

void make_shared_tables(const char *path)
{
    uint8_t *l1 = malloc(16384 * 8), *l2 = malloc(8192 * 8);
    ck_assert_ptr_nonnull(l1);
    ck_assert_ptr_nonnull(l2);
    for (int i = 0; i < 16384; i++)
        be64_store(l1 + 8 * i, 0x8000000000040000ull);
    for (int i = 0; i < 8192; i++)
        be64_store(l2 + 8 * i, 0x8000000000050000ull);
    patch_at(path, 0x70000, l1, 16384 * 8);
    patch_at(path, 0x40000, l2, 8192 * 8);
    free(l1);
    free(l2);
    uint8_t b[8];
    be64_store(b, 8ull << 40); /* size */
    patch_at(path, 24, b, 8);
    be32_store(b, 16384); /* l1_size */
    patch_at(path, 36, b, 4);
    be64_store(b, 0x70000); /* l1_table_offset */
    patch_at(path, 40, b, 8);
}
