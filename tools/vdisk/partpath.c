/* SPDX-License-Identifier: MIT */
/* tools/vdisk/partpath.c: IMAGE:pN paths (see partpath.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "partpath.h"

int cli_split_path(const char *path, char **image, unsigned *number)
{
    *image = NULL;
    *number = 0;
    struct stat st;
    if (stat(path, &st) == 0)
        return 0; /* an existing file of that exact name */
    const char *colon = strrchr(path, ':');
    if (!colon || colon == path || colon[1] != 'p' || !colon[2])
        return 0;
    unsigned long n = 0;
    for (const char *d = colon + 2; *d; d++) {
        if (*d < '0' || *d > '9' || n > 1000000)
            return 0;
        n = n * 10 + (unsigned long)(*d - '0');
    }
    if (n == 0)
        return 0;
    *image = strndup(path, (size_t)(colon - path));
    if (!*image) {
        cli_error("out of memory");
        return -1;
    }
    *number = (unsigned)n;
    return 1;
}

vdisk_dev *cli_open_path(const char *path, const struct open_args *a)
{
    char *image;
    unsigned number;
    int r = cli_split_path(path, &image, &number);
    if (r < 0)
        return NULL;
    if (r == 0)
        return cli_open_image(path, a);
    vdisk_dev *disk = cli_open_image(image, a);
    free(image);
    if (!disk)
        return NULL;
    vdisk_dev *part = NULL;
    if (vdisk_open_partition(&part, disk, number, a->read_only ? VDISK_OPEN_RDONLY : 0) < 0)
        cli_lib_error();
    vdisk_close(disk); /* the partition holds its own reference */
    return part;
}
