/* SPDX-License-Identifier: MIT */
/* tools/vdisk/partpath.c: IMAGE:pN paths (see partpath.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "partpath.h"

unsigned cli_sector_size;

int cli_take_sector_size(int argc, char **argv)
{
    int out = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strncmp(argv[i], "--sector-size=", 14) == 0) {
            v = argv[i] + 14;
        } else if (strcmp(argv[i], "--sector-size") == 0) {
            if (i + 1 >= argc) {
                cli_error("option '--sector-size' requires an argument");
                return -1;
            }
            v = argv[++i];
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (strcmp(v, "512") == 0) {
            cli_sector_size = 512;
        } else if (strcmp(v, "4096") == 0) {
            cli_sector_size = 4096;
        } else {
            cli_error("--sector-size must be 512 or 4096");
            return -1;
        }
    }
    argv[out] = NULL;
    return out;
}

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
    if (vdisk_open_partition_ss(&part, disk, number, cli_sector_size,
                                a->read_only ? VDISK_OPEN_RDONLY : 0) < 0)
        cli_lib_error();
    vdisk_close(disk); /* the partition holds its own reference */
    return part;
}
