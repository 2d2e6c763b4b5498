/* SPDX-License-Identifier: MIT */
/*
 * fuzz/part_apply.c: the fuzz input is an sfdisk script for `vdisk part
 * apply` (tools/vdisk/cmd_part.c compiled in): applied to an empty 4 MiB
 * disk in memory, and the table written read back, verified and each
 * partition opened.  Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuzz.h"

#define DISK_SIZE (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *zeroes;
    if (!zeroes && !(zeroes = calloc(1, DISK_SIZE)))
        abort();
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *disk;
    if (dev_open_memory(&disk, zeroes, DISK_SIZE, DISK_SIZE, &p) < 0)
        return 0;
    FILE *in = fmemopen((void *)data, size ? size : 1, "r");
    if (in) {
        if (size)
            part_apply_script(disk, in, 0);
        fclose(in);
    }
    vdisk_ptable *t = NULL;
    vdisk_part_verify(disk, 0, NULL, NULL);
    if (vdisk_part_read(&t, disk, 0) == 0) {
        struct vdisk_partition part = {.struct_size = sizeof part};
        uint8_t buf[512];
        for (size_t i = 0; i < vdisk_part_count(t) && i < 128; i++) {
            vdisk_dev *pd;
            if (vdisk_part_get(t, i, &part) == 0 &&
                vdisk_open_partition(&pd, disk, part.number, VDISK_OPEN_RDONLY) == 0) {
                if (vdisk_get_size(pd) >= sizeof buf)
                    vdisk_pread(pd, buf, sizeof buf, 0);
                vdisk_close(pd);
            }
        }
        vdisk_part_free(t);
    }
    dev_unref(disk);
    return 0;
}
