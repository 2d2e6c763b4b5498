/* SPDX-License-Identifier: MIT */
/*
 * fuzz/iso9660.c: the fuzz input is an ISO 9660 image (Rock Ridge, Joliet,
 * El Torito).  It is opened over a memory device in each namespace; the
 * tree is listed (a bounded walk), every entry is stat'ed, files are read
 * (zisofs files decompressed, also across a block boundary), symlinks
 * (Rock Ridge SL, joined across entries and continuation areas) read and
 * followed, "DIR/.." looked up, and each El Torito boot image opened as a
 * device and read.  Any crash, sanitizer report, leak or hang is a bug.
 *
 * The input is the image from its volume descriptors on (block 16): the
 * harness puts the 32 KiB system area, which ISO 9660 leaves to others
 * (hybrid MBRs, boot loaders), in front as zeroes, so that no mutation is
 * spent there.  Work per input is bounded (MAX_VISIT entries per walk, a
 * walk per namespace; the automatic choice is only opened, since it is one
 * of the other three), so that the harness runs 1,000+ inputs a second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MEM_LIMIT (64u << 20)
#define MAX_VISIT 512
#define SYSTEM_AREA 32768

static unsigned visited;
static struct vdisk_iso_entry entry;

static void walk(vdisk_iso *iso, const char *dir, unsigned depth)
{
    struct vdisk_iso_entry *v;
    size_t n;
    if (depth > 24 || vdisk_iso_list(iso, dir, &v, &n) < 0)
        return;
    static uint8_t buf[8192];
    for (size_t i = 0; i < n && visited < MAX_VISIT; i++, visited++) {
        char path[VDISK_ISO_PATH_MAX + 1];
        size_t l = strlen(dir) + 1 + strlen(v[i].name);
        if (l > VDISK_ISO_PATH_MAX)
            continue;
        strcpy(path, dir);
        strcat(path, "/");
        strcat(path, v[i].name);
        /* Followed for symlinks only: for the rest both are the same lookup. */
        vdisk_iso_stat(iso, path, v[i].type == VDISK_ISO_SYMLINK, &entry);
        if (v[i].type == VDISK_ISO_FILE || v[i].type == VDISK_ISO_SYMLINK) {
            vdisk_iso_read(iso, path, buf, sizeof buf, 0);
            vdisk_iso_read(iso, path, buf, sizeof buf, v[i].size > 100 ? v[i].size - 100 : 0);
            /* zisofs: across a block boundary, and in the middle. */
            if (v[i].compressed) {
                vdisk_iso_read(iso, path, buf, 64, 32768 - 32);
                vdisk_iso_read(iso, path, buf, sizeof buf, v[i].size / 2 + 1);
            }
        }
        if (v[i].type == VDISK_ISO_SYMLINK) {
            char t[256];
            vdisk_iso_readlink(iso, path, t, sizeof t);
        }
        if (v[i].type == VDISK_ISO_DIR) {
            /* ".." from inside: the lookup reads the parent's "." record. */
            if (l + 3 <= VDISK_ISO_PATH_MAX) {
                char up[VDISK_ISO_PATH_MAX + 1];
                memcpy(up, path, l);
                memcpy(up + l, "/..", 4);
                vdisk_iso_stat(iso, up, 1, &entry);
            }
            walk(iso, path, depth + 1);
        }
    }
    vdisk_iso_list_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vdisk_open_params p = fuzz_params(true);
    struct vdisk_dev *disk;
    static uint8_t *image;
    static size_t image_cap;
    if (SYSTEM_AREA + size > image_cap) {
        free(image);
        image_cap = SYSTEM_AREA + size;
        image = calloc(1, image_cap);
        if (!image)
            abort();
    }
    memcpy(image + SYSTEM_AREA, data, size);
    int r = dev_open_memory(&disk, image, SYSTEM_AREA + size, MEM_LIMIT, &p);
    if (r < 0)
        return 0;
    char volid[33];
    vdisk_iso_probe(disk, volid, sizeof volid);
    for (int ns = VDISK_ISO_NS_AUTO; ns <= VDISK_ISO_NS_ISO9660; ns++) {
        vdisk_iso *iso;
        if (vdisk_iso_open(&iso, disk, ns) < 0)
            continue;
        struct vdisk_iso_info info = {.struct_size = sizeof info};
        vdisk_iso_get_info(iso, &info);
        visited = 0;
        if (ns != VDISK_ISO_NS_AUTO)
            walk(iso, "", 0);
        for (unsigned i = 0; i < vdisk_iso_boot_count(iso); i++) {
            struct vdisk_iso_boot b = {.struct_size = sizeof b};
            vdisk_dev *boot;
            vdisk_iso_boot_get(iso, i, &b);
            if (vdisk_iso_open_boot(iso, i, &boot) == 0) {
                uint8_t buf[512];
                vdisk_pread(boot, buf, sizeof buf, 0);
                vdisk_close(boot);
            }
        }
        vdisk_iso_close(iso);
    }
    dev_unref(disk);
    return 0;
}
