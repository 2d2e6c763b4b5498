/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_resize.c: vdisk resize, as qemu-img resize. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] [--image-opts]\n"
           "                    FILE [+|-]SIZE\n"
           "\n"
           "Sets the image's virtual size to SIZE, or grows (+) or shrinks (-) it by\n"
           "SIZE.  Making an image smaller needs --shrink (data past the new end is\n"
           "lost); a qcow2 image with snapshots can be resized when it is compat=1.1.\n"
           "\n"
           "  --preallocation=off|falloc|full|metadata  how the grown part is\n"
           "        allocated (only when growing): falloc reserves it (fallocate),\n"
           "        full writes zeroes, metadata (qcow2) maps its clusters without\n"
           "        writing them; qcow2 maps the new clusters in all three.\n");
}

int cmd_resize(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"shrink", no_argument, NULL, 's'},
        {"preallocation", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    bool shrink = false, quiet = false;
    const char *prealloc = NULL; /* --preallocation other than off */
    int c;
    bool image_opts = false;
    optind = 0;
    /* The size is the last argument, taken before the options are read
     * (as qemu-img does), so that "-1G" is a size, not an option; options
     * may stand before or after the file name. */
    const char *size_arg = NULL;
    if (argc < 3 && !(argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))) {
        cli_error("Not enough arguments");
        fprintf(stderr, "Try 'vdisk resize --help' for more information.\n");
        return 1;
    }
    if (argc >= 3 && strcmp(argv[argc - 1], "--help") != 0 && strcmp(argv[argc - 1], "-h") != 0)
        size_arg = argv[--argc];
    while ((c = getopt_long(argc, argv, "hf:q", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return 0;
        case 'f': oa.format = optarg; break;
        case 'q': quiet = true; break;
        case CLI_OPT_IMAGE_OPTS: image_opts = true; break;
        case 's': shrink = true; break;
        case 'P':
            /* (qemu-img: checked as it is read) */
            if (!strcmp(optarg, "off"))
                prealloc = NULL;
            else if (!strcmp(optarg, "metadata") || !strcmp(optarg, "falloc") ||
                     !strcmp(optarg, "full"))
                prealloc = optarg;
            else {
                cli_error("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        default:
            fprintf(stderr, "Try 'vdisk resize --help' for more information.\n");
            return 1;
        }
    }
    /* A "--" may stand before a negative size, as qemu-img accepts it. */
    const char *pos[2];
    int npos = 0;
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0 && npos == 0 && i + 1 == argc)
            continue;
        if (npos == 1) {
            npos = 3;
            break;
        }
        pos[npos++] = argv[i];
    }
    if (size_arg && npos == 1)
        pos[npos++] = size_arg;
    if (npos != 2) {
        cli_error("Expecting image file name and size");
        return 1;
    }
    const char *arg = pos[1];
    int sign = arg[0] == '+' ? 1 : arg[0] == '-' ? -1 : 0;
    uint64_t n;
    if (vdisk_parse_size(arg + (sign != 0), 1, &n) < 0) {
        cli_error("Invalid size specified. You may use k, M, G, T, P or E suffixes for "
                  "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return 1;
    }
    if (image_opts && !(pos[0] = cli_image_opts(pos[0], oa.format)))
        return 1;
    vdisk_dev *dev = cli_open(pos[0], &oa);
    if (!dev)
        return 1;
    uint64_t cur = vdisk_get_size(dev), size = n;
    if (sign > 0 && n > UINT64_MAX - cur) {
        /* A sum that wraps around would shrink the image. */
        cli_error("%s: size %" PRIu64 " + %" PRIu64 " is too large", pos[0], cur, n);
        vdisk_close(dev);
        return 1;
    }
    if (sign > 0)
        size = cur + n;
    if (sign < 0) {
        if (n > cur) {
            cli_error("New image size must be positive");
            vdisk_close(dev);
            return 1;
        }
        size = cur - n;
    }
    if (prealloc && size <= cur) {
        cli_error("Preallocation can only be used for growing images");
        vdisk_close(dev);
        return 1;
    }
    if (size < cur && !shrink) {
        cli_error("Use the --shrink option to perform a shrink operation.");
        cli_error("warning: Shrinking an image will delete all data beyond the shrunken "
                  "image's end. Before performing such an operation, make sure there is no "
                  "important data there.");
        vdisk_close(dev);
        return 1;
    }
    unsigned flags = shrink ? VDISK_RESIZE_SHRINK : 0;
    if (prealloc)
        flags |= !strcmp(prealloc, "full")     ? VDISK_RESIZE_PREALLOC_FULL
                 : !strcmp(prealloc, "falloc") ? VDISK_RESIZE_PREALLOC_FALLOC
                                               : VDISK_RESIZE_PREALLOC_METADATA;
    int r = vdisk_resize(dev, size, flags);
    if (r < 0)
        cli_error("%s", cli_lib_detail());
    else if (!quiet)
        printf("Image resized.\n");
    vdisk_close(dev);
    return r < 0 ? 1 : 0;
}
