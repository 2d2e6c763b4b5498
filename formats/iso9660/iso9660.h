/* SPDX-License-Identifier: MIT */
/* formats/iso9660/iso9660.h: what the ISO 9660 parser and the CD-ROM drive share. */
#ifndef VDISK_FORMATS_ISO9660_H
#define VDISK_FORMATS_ISO9660_H

#include <stdint.h>

#include "driver.h"

#define ISO_SECTOR 2048u
#define ISO_VD_START (16u * ISO_SECTOR)

/* The emulated CD-ROM drive (cdrom.c). */
extern const struct vdisk_driver vdisk_driver_cdrom;

/*
 * Reads the primary volume descriptor of DEV: its volume space size in
 * blocks and its volume id (33 bytes, trailing spaces removed).  Returns 1
 * when found, 0 when DEV holds no ISO 9660 volume, -errno on I/O errors.
 */
int iso_read_pvd_basic(struct vdisk_dev *dev, uint32_t *blocks, char *volume_id);

#endif /* VDISK_FORMATS_ISO9660_H */
