/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/partpath.h: the CLI's path syntax for partitions.
 *
 *   IMAGE:pN    partition N of IMAGE (N from 1; MBR logical partitions
 *               from 5), e.g. disk.qcow2:p2 or /dev/sdb:p5
 *
 * An existing file whose name is exactly the path wins, so a file named
 * "a:p1" is still opened as a whole.  Any image vdisk opens (raw, qcow2
 * with its backing chain, a block device) can be partitioned this way.
 */
#ifndef VDISK_PARTPATH_H
#define VDISK_PARTPATH_H

#include "cli.h"

/*
 * Splits PATH into the image and the partition number: returns 1 and sets
 * *IMAGE (a new string, to free) and *NUMBER when PATH names a partition,
 * 0 when it names a whole image, -1 (message printed) when out of memory.
 */
int cli_split_path(const char *path, char **image, unsigned *number);

/*
 * Opens PATH as cli_open_image() does; when it names a partition, opens the image
 * and then the partition on it (vdisk_open_partition_ss with
 * cli_sector_size, read-only when a->read_only).  Prints "vdisk: ..." and returns NULL on failure.  The
 * partition device holds the image: one vdisk_close() releases both.
 */
vdisk_dev *cli_open_path(const char *path, const struct open_args *a);

/*
 * --sector-size=512|4096 (or --sector-size N), which every verb takes: the
 * logical sector size of the partition tables behind IMAGE:pN names, for
 * an MBR of a 4096-byte-sector disk kept in an image file (nothing in the
 * file tells its sector size; a GPT's header tells).  main() takes it out
 * of the verb's arguments (before a "--") into cli_sector_size (0: found
 * as vdisk_part_read finds it) and returns the new argc, or -1 after a
 * message when the value is not 512 or 4096.
 */
extern unsigned cli_sector_size;
int cli_take_sector_size(int argc, char **argv);

#endif /* VDISK_PARTPATH_H */
