/* SPDX-License-Identifier: MIT */
/*
 * tests/common/sectors.h: crash images checked sector by sector, for the
 * power-loss tests whose workloads fill each 512-byte sector of the disk
 * with one byte value (0, or a pattern 1..7).
 *
 * A test tracks, per sector, the value at the last completed flush (DUR)
 * and the values written since (PEND, bit V for value V); after a power
 * cut every sector must read as one of them, whole.
 */
#ifndef VDISK_TEST_SECTORS_H
#define VDISK_TEST_SECTORS_H

#include <stdint.h>

#define SECTOR_BYTES 512u

/* Each of the N sectors of DATA holds one allowed value: DUR[k], or one of
 * the bits of PEND[k]; fails the test naming WHAT and the sector. */
void sectors_verify(const uint8_t *data, const uint8_t *dur, const uint8_t *pend, unsigned n,
                    const char *what);

/* qemu-io arguments that read the N sectors of DATA back as they are: one
 * " -c 'read -q -P 0xVV OFF LEN'" per run of equal sectors (malloc'd). */
char *sectors_qemu_reads(const uint8_t *data, unsigned n);

#endif /* VDISK_TEST_SECTORS_H */
