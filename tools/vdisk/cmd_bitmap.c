/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_bitmap.c: vdisk bitmap, as qemu-img bitmap (7.2): the
 * actions run in the order given, each one a step of its own on the image
 * (vdisk/bitmap.h); the first that fails stops the rest, with qemu-img's
 * "Operation ACTION on bitmap NAME failed: ..." line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/bitmap.h>

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
           "qemu-img bitmap does; the actions run in the order given:\n"
           "  --add          adds BITMAP, enabled (-g: bytes per bit; default the\n"
           "                 cluster size, within 4k and 64k)\n"
           "  --remove       removes it\n"
           "  --clear        makes every bit clean\n"
           "  --enable       it tracks writes from now on\n"
           "  --disable      it tracks no more writes\n"
           "  --merge SRC    sets the bits that bitmap SRC has set (SRC in SOURCE,\n"
           "                 -b, of format FMT, -F; else in FILE)\n");
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
    /* The actions in order (each option at most once per argv slot). */
    int *ops = calloc((size_t)argc + 1, sizeof *ops);
    const char **merge_src = calloc((size_t)argc + 1, sizeof *merge_src);
    int ret = 1;
    if (!ops || !merge_src) {
        cli_error("out of memory");
        goto out;
    }
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
            goto out;
        case '?':
            cli_error("unrecognized option '%s'", argv[optind - 1]);
            fprintf(stderr, "Try 'vdisk bitmap --help' for more information\n");
            goto out;
        case 'h':
            help();
            ret = 0;
            goto out;
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
                goto out;
            }
            if (r == -ERANGE || granularity > INT64_MAX) {
                cli_error("Invalid granularity specified. Must be between 0 and %" PRId64 ".",
                          INT64_MAX);
                goto out;
            }
            break;
        }
        case OPT_ADD: add = true, ops[actions++] = c; break;
        case OPT_MERGE: merge = true, merge_src[actions] = optarg, ops[actions++] = c; break;
        case OPT_REMOVE:
        case OPT_CLEAR:
        case OPT_ENABLE:
        case OPT_DISABLE: ops[actions++] = c; break;
        case OPT_OBJECT:
            cli_error("--object is not supported");
            goto out;
        case CLI_OPT_IMAGE_OPTS: image_opts = true; break;
        }
    }
    opterr = 1;
    if (!actions) {
        cli_error("Need at least one of --add, --remove, --clear, --enable, --disable, or "
                  "--merge");
        goto out;
    }
    if (granularity && !add) {
        cli_error("granularity only supported with --add");
        goto out;
    }
    if (src_fmt && !src_file) {
        cli_error("-F only supported with -b");
        goto out;
    }
    if (src_file && !merge) {
        cli_error("Merge bitmap source file only supported with --merge");
        goto out;
    }
    if (optind != argc - 2) {
        cli_error("Expecting filename and bitmap name");
        goto out;
    }
    const char *file = argv[optind], *name = argv[optind + 1];
    if (image_opts && !(file = cli_image_opts(file, oa.format)))
        goto out;
    /* Opened for writing, as qemu-img opens it: a missing or locked file
     * is refused in the same words. */
    vdisk_dev *dev = cli_open(file, &oa);
    if (image_opts)
        free((char *)file);
    if (!dev)
        goto out;
    vdisk_dev *src = NULL;
    if (src_file) {
        struct open_args sa = {.format = src_fmt, .read_only = true};
        src = cli_open(src_file, &sa);
        if (!src) {
            vdisk_close(dev);
            goto out;
        }
    }
    ret = 0;
    for (unsigned i = 0; i < actions && ret == 0; i++) {
        const char *what = "";
        int r = 0;
        switch (ops[i]) {
        case OPT_ADD:
            what = "add";
            r = vdisk_bitmap_add(dev, name, granularity, 0);
            break;
        case OPT_REMOVE:
            what = "remove";
            r = vdisk_bitmap_remove(dev, name);
            break;
        case OPT_CLEAR:
            what = "clear";
            r = vdisk_bitmap_clear(dev, name);
            break;
        case OPT_ENABLE:
            what = "enable";
            r = vdisk_bitmap_enable(dev, name);
            break;
        case OPT_DISABLE:
            what = "disable";
            r = vdisk_bitmap_disable(dev, name);
            break;
        case OPT_MERGE:
            what = "merge";
            r = vdisk_bitmap_merge(dev, name, src ? src : dev, merge_src[i]);
            break;
        }
        if (r < 0) {
            cli_error("Operation %s on bitmap %s failed: %s", what, name, cli_lib_detail());
            ret = 1;
        }
    }
    if (src)
        vdisk_close(src);
    vdisk_close(dev);
out:
    free(ops);
    free(merge_src);
    return ret;
}

/* ---- convert --bitmaps ------------------------------------------------------ */

int cli_convert_bitmaps_check(int nsrc, vdisk_dev *src, const char *out_fmt, bool skip_broken)
{
    if (out_fmt && strcmp(out_fmt, "qcow2") != 0) { /* (NULL: the target's name says) */
        cli_error("Format driver '%s' does not support bitmaps", out_fmt);
        return -1;
    }
    if (nsrc > 1) {
        cli_error("Copying bitmaps only possible with single source");
        return -1;
    }
    if (strcmp(vdisk_get_format(src), "qcow2") != 0) {
        cli_error("Source lacks bitmap support");
        return -1;
    }
    struct vdisk_info in = {.struct_size = sizeof in};
    if (vdisk_get_info(src, &in) < 0) {
        cli_lib_error();
        return -1;
    }
    /* (QEMU looks at them last to first) */
    for (uint32_t i = in.nb_bitmaps; i-- > 0 && !skip_broken;) {
        if (in.bitmaps[i].flags & VDISK_BITMAP_IN_USE) {
            cli_error("Cannot copy inconsistent bitmap '%s'", in.bitmaps[i].name);
            fprintf(stderr, "Try --skip-broken-bitmaps, or use '%s bitmap --remove' to delete "
                    "it\n", cli_progname);
            return -1;
        }
    }
    return 0;
}

int cli_convert_bitmaps(vdisk_dev *src, vdisk_dev *dst, bool skip_broken)
{
    struct vdisk_info in = {.struct_size = sizeof in};
    if (vdisk_get_info(src, &in) < 0) {
        cli_lib_error();
        return -1;
    }
    for (uint32_t i = in.nb_bitmaps; i-- > 0 && skip_broken;)
        if (in.bitmaps[i].flags & VDISK_BITMAP_IN_USE)
            fprintf(stderr, "%s: warning: Skipping inconsistent bitmap '%s'\n", cli_progname,
                    in.bitmaps[i].name);
    for (uint32_t i = 0; i < in.nb_bitmaps; i++) {
        const struct vdisk_bitmap_info *b = &in.bitmaps[i];
        if (b->flags & VDISK_BITMAP_IN_USE)
            continue;
        unsigned flags = b->flags & VDISK_BITMAP_AUTO ? 0 : VDISK_BITMAP_ADD_DISABLED;
        if (vdisk_bitmap_add(dst, b->name, b->granularity, flags) < 0 ||
            vdisk_bitmap_merge(dst, b->name, src, b->name) < 0) {
            cli_lib_error();
            return -1;
        }
    }
    return 0;
}
