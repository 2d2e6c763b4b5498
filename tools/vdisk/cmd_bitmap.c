/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_bitmap.c: vdisk bitmap, qemu-img bitmap's syntax.
 * Persistent dirty bitmaps come later: the arguments are read and checked
 * as qemu-img 7.2 checks them (so that usage errors read the same), the
 * image is opened as qemu-img opens it, and then the verb refuses to go on.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
    OPT_ADD = 0x2000,
    OPT_REMOVE,
    OPT_CLEAR,
    OPT_ENABLE,
    OPT_DISABLE,
    OPT_MERGE,
    OPT_OBJECT,
};

static void help(void)
{
    printf("usage: vdisk bitmap (--merge SRC | --add | --remove | --clear | --enable |\n"
           "                    --disable)... [-b SOURCE [-F FMT]] [-g GRANULARITY]\n"
           "                    [--object OBJ] [--image-opts | -f FMT] FILE BITMAP\n"
           "\n"
           "Changes the persistent dirty bitmap BITMAP of the qcow2 image FILE, as\n"
           "qemu-img bitmap does.  The arguments are checked as qemu-img checks them,\n"
           "but persistent dirty bitmaps are not supported yet: the verb then fails.\n");
}

int cmd_bitmap(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"add", no_argument, NULL, OPT_ADD},
        {"remove", no_argument, NULL, OPT_REMOVE},
        {"clear", no_argument, NULL, OPT_CLEAR},
        {"enable", no_argument, NULL, OPT_ENABLE},
        {"disable", no_argument, NULL, OPT_DISABLE},
        {"merge", required_argument, NULL, OPT_MERGE},
        {"granularity", required_argument, NULL, 'g'},
        {"source-file", required_argument, NULL, 'b'},
        {"source-format", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    const char *src_file = NULL, *src_fmt = NULL;
    bool add = false, merge = false, image_opts = false;
    unsigned actions = 0;
    uint64_t granularity = 0;
    int c;
    optind = 0;
    opterr = 0;
    /* (a leading ':' in the option string: a missing argument is ':') */
    while ((c = getopt_long(argc, argv, ":b:f:F:g:h", longopts, NULL)) != -1) {
        switch (c) {
        case ':':
            cli_error("missing argument for option '%s'", argv[optind - 1]);
            fprintf(stderr, "Try 'vdisk bitmap --help' for more information\n");
            return 1;
        case '?':
            cli_error("unrecognized option '%s'", argv[optind - 1]);
            fprintf(stderr, "Try 'vdisk bitmap --help' for more information\n");
            return 1;
        case 'h':
            help();
            return 0;
        case 'b': src_file = optarg; break;
        case 'f': oa.format = optarg; break;
        case 'F': src_fmt = optarg; break;
        case 'g': {
            int r = vdisk_parse_size(optarg, 1, &granularity);
            if (r < 0 && r != -ERANGE) {
                cli_error("Invalid granularity specified. You may use k, M, G, T, P or E "
                          "suffixes for");
                cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and "
                          "exabytes.");
                return 1;
            }
            if (r == -ERANGE || granularity > INT64_MAX) {
                cli_error("Invalid granularity specified. Must be between 0 and %" PRId64 ".",
                          INT64_MAX);
                return 1;
            }
            break;
        }
        case OPT_ADD: add = true, actions++; break;
        case OPT_MERGE: merge = true, actions++; break;
        case OPT_REMOVE:
        case OPT_CLEAR:
        case OPT_ENABLE:
        case OPT_DISABLE: actions++; break;
        case OPT_OBJECT:
            cli_error("--object is not supported");
            return 1;
        case CLI_OPT_IMAGE_OPTS: image_opts = true; break;
        }
    }
    opterr = 1;
    if (!actions) {
        cli_error("Need at least one of --add, --remove, --clear, --enable, --disable, or "
                  "--merge");
        return 1;
    }
    if (granularity && !add) {
        cli_error("granularity only supported with --add");
        return 1;
    }
    if (src_fmt && !src_file) {
        cli_error("-F only supported with -b");
        return 1;
    }
    if (src_file && !merge) {
        cli_error("Merge bitmap source file only supported with --merge");
        return 1;
    }
    if (optind != argc - 2) {
        cli_error("Expecting filename and bitmap name");
        return 1;
    }
    const char *file = argv[optind];
    if (image_opts && !(file = cli_image_opts(file, oa.format)))
        return 1;
    /* The image is opened for writing, as qemu-img opens it, so that a
     * missing or locked file is refused in the same words. */
    vdisk_dev *dev = cli_open(file, &oa);
    if (image_opts)
        free((char *)file);
    if (!dev)
        return 1;
    vdisk_close(dev);
    if (src_file) {
        struct open_args sa = {.format = src_fmt, .read_only = true};
        vdisk_dev *src = cli_open(src_file, &sa);
        if (!src)
            return 1;
        vdisk_close(src);
    }
    cli_error("bitmap: persistent dirty bitmaps are not supported yet");
    return 1;
}
