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
 * and then the partition on it (vdisk_open_partition, read-only when
 * a->read_only).  Prints "vdisk: ..." and returns NULL on failure.  The
 * partition device holds the image: one vdisk_close() releases both.
 */
vdisk_dev *cli_open_path(const char *path, const struct open_args *a);

#endif /* VDISK_PARTPATH_H */
