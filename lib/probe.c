/* SPDX-License-Identifier: MIT */
/*
 * lib/probe.c: format probing.
 *
 * The first 512 bytes of a file (zero-padded when the file is shorter, as
 * QEMU reads them) go to every format driver's probe and to the signatures
 * of the formats that QEMU reads and vdisk does not.  The highest score
 * wins, as in QEMU; nothing scoring leaves the file raw.  A file of a format
 * vdisk does not read is refused, never read as raw: its container bytes
 * are not the disk.
 *
 * The signatures are those QEMU 7.2's probe functions look for (qcow;
 * LUKS, versions 1 and 2, qed, vdi, vmdk, vpc, vhdx, bochs, cloop and
 * parallels have drivers), with their
 * scores.  DMG, which has a driver too, QEMU knows by the name alone (a
 * ".dmg" ending, score 2), as vdisk does: its "koly" trailer lies at the
 * end of the file, where a guest of a raw image could write one, and only
 * block 0 is guarded; the driver then refuses a file without the trailer,
 * never reading it as raw.  The same test, without a file name, guards block 0 of a probed
 * raw image (lib/request.c): a write that would make one of them appear
 * there is refused.
 */
#include <string.h>

#include "endian.h"
#include "internal.h"

/* VMware: a sparse extent ("KDMV", or "COWD" for ESX), or a text descriptor
 * whose first line that is neither a comment nor blank is version=1..3. */
static int probe_qcow1(const uint8_t *b, const char *name)
{
    (void)name;
    return be32_load(b) == 0x514649fb && be32_load(b + 4) == 1 ? 100 : 0;
}

/* QEMU knows a DMG image by its file name only. */
static int probe_dmg_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 4 && strcmp(name + n - 4, ".dmg") == 0 ? 2 : 0;
}

static const struct foreign_format foreign_formats[] = {
    {"QCOW", "qcow", probe_qcow1},
};

void probe_block(const uint8_t *buf, const char *filename, struct probe_result *res)
{
    memset(res, 0, sizeof *res);
    int best = 0;
    for (size_t i = 0; vdisk_format_drivers[i]; i++) {
        const struct vdisk_driver *d = vdisk_format_drivers[i];
        int s = d->probe ? d->probe(buf, PROBE_SIZE) : 0;
        if (s > best) {
            best = s;
            res->drv = d;
        }
    }
    int by_name = probe_dmg_name(filename);
    if (by_name > best) {
        best = by_name;
        res->drv = &vdisk_driver_dmg;
    }
    for (size_t i = 0; i < sizeof foreign_formats / sizeof foreign_formats[0]; i++) {
        int s = foreign_formats[i].probe(buf, filename);
        if (s > best) {
            best = s;
            res->drv = NULL;
            res->foreign = &foreign_formats[i];
        }
    }
}
