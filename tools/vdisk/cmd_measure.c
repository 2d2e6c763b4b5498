/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_measure.c: vdisk measure, as qemu-img measure: the size a
 * new image needs, for a given virtual size or to hold a source image's
 * data.  The library measures (vdisk_measure, vdisk/measure.h); this opens
 * the source and prints.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk measure [--output=human|json] [-O FMT] [-o OPTIONS]\n"
           "                     (--size SIZE | [-f FMT] [-l snapshot.name=NAME] FILE)\n"
           "\n"
           "Prints the size an image of format FMT (raw or qcow2; default raw) needs:\n"
           "'required' to hold the data of FILE (or an empty disk of SIZE), and\n"
           "'fully allocated' with every cluster of it allocated.  OPTIONS are those\n"
           "of vdisk create; for qcow2, cluster_size, refcount_bits, extended_l2,\n"
           "preallocation, backing_file and compat are taken into account, and\n"
           "'bitmaps size' is what FILE's persistent dirty bitmaps would take.\n"
           "-U (--force-share) opens FILE even while another process writes it (see\n"
           "IMAGE LOCKING in vdisk(1)).\n");
}

int cmd_measure(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'J'},
        {"size", required_argument, NULL, 'z'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true};
    const char *out_fmt = "raw", *snap = NULL;
    int json = 0;
    uint64_t size = 0;
    bool have_size = false;
    vdisk_options *o = NULL;
    vdisk_options_new(&o);
    int c, ret = 1;
    bool help_opts = false;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:O:o:l:sU", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f': oa.format = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o':
            if (cli_is_help_option(optarg)) {
                help_opts = true;
                break;
            }
            if (vdisk_options_parse(o, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            break;
        case 'l':
            snap = strncmp(optarg, "snapshot.name=", 14) == 0 ? optarg + 14 : optarg;
            break;
        case 'J':
            if ((json = parse_output_format(optarg)) < 0)
                goto out;
            break;
        case 'z': {
            int r = vdisk_parse_size(optarg, 1, &size);
            if (r == -ERANGE || (r == 0 && size > INT64_MAX)) {
                cli_error("Invalid image size specified. Must be between 0 and %" PRId64 ".",
                          INT64_MAX);
                goto out;
            }
            if (r < 0) {
                cli_error("Invalid image size specified. You may use k, M, G, T, P or E "
                          "suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes "
                          "and exabytes.");
                goto out;
            }
            have_size = true;
            break;
        }
        case 'U':
            oa.force_share = true;
            break;
        case 's':
            break;
        default:
            fprintf(stderr, "Try 'vdisk measure --help' for more information.\n");
            goto out;
        }
    }
    if (have_size == (optind < argc) || argc - optind > 1) {
        cli_error(have_size ? "--size N cannot be used together with a filename."
                            : "Either --size N or one filename must be specified.");
        goto out;
    }
    if (help_opts) {
        /* -o help: the output format's create options (qemu-img 7.2
         * refuses "help" here) */
        ret = cli_print_create_options(out_fmt);
        goto out;
    }
    vdisk_dev *dev = NULL;
    if (!have_size) {
        vdisk_options *so = NULL;
        vdisk_options_new(&so);
        vdisk_options_set(so, "read-only", "on");
        if (oa.format)
            vdisk_options_set(so, "format", oa.format);
        if (oa.force_share)
            vdisk_options_set(so, "force-share", "on");
        if (snap)
            vdisk_options_set(so, "snapshot.name", snap);
        int r = vdisk_open(&dev, argv[optind], so);
        vdisk_options_free(so);
        if (r < 0) {
            cli_lib_error();
            goto out;
        }
    }
    struct vdisk_measure_result m = {.struct_size = sizeof m};
    int r = vdisk_measure(out_fmt, have_size ? size : 0, o, dev, &m);
    vdisk_close(dev);
    if (r < 0) {
        cli_lib_error();
        goto out;
    }
    if (json) {
        printf("{\n");
        if (m.has_bitmaps)
            printf("    \"bitmaps\": %" PRIu64 ",\n", m.bitmaps);
        printf("    \"required\": %" PRIu64 ",\n    \"fully-allocated\": %" PRIu64 "\n}\n",
               m.required, m.fully_allocated);
    } else {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", m.required,
               m.fully_allocated);
        if (m.has_bitmaps)
            printf("bitmaps size: %" PRIu64 "\n", m.bitmaps);
    }
    ret = 0;
out:
    vdisk_options_free(o);
    return ret;
}
