/* SPDX-License-Identifier: MIT */
/*
 * tests/hostile/images.h: the qcow2 images that tests/hostile/cve.c and
 * tests/hostile/bounds.c both build, and the byte patches they build them
 * with.
 */
#ifndef VDISK_TEST_HOSTILE_IMAGES_H
#define VDISK_TEST_HOSTILE_IMAGES_H

#include <stddef.h>
#include <stdint.h>

/* The base image of tests/hostile at scratch(NAME) (made afresh; returns
 * its path): vdisk create -f qcow2 of 1 MiB, 64 KiB clusters, with 128 KiB
 * of 0x01 at offset 0: header at 0, refcount table at 0x10000, refcount
 * block at 0x20000, L1 table at 0x30000 (one entry), the L2 table at
 * 0x40000 (made before the data, as QEMU orders them), data at 0x50000 and
 * 0x60000; 458752 bytes. */
const char *hostile_base(const char *name);

/* Writes LEN bytes of DATA at OFF of the file PATH. */
void patch_at(const char *path, uint64_t off, const void *data, size_t len);

/* The size of the file PATH. */
uint64_t file_size(const char *path);

/* Turns the base image at PATH into the CVE-2015-5162 image: an 8 TiB
 * disk whose L1 table (16384 entries, moved to 0x70000..0x90000) points
 * 16384 times at the L2 table at 0x40000, whose 8192 entries all point at
 * the data cluster at 0x50000. */
void make_shared_tables(const char *path);

#endif /* VDISK_TEST_HOSTILE_IMAGES_H */
