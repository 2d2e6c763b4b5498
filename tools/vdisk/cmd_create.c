/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_create.c: vdisk create, as qemu-img create. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk create [-q] [-f FMT] [-o OPTIONS] FILE [SIZE]\n"
           "\n"
           "Creates the image FILE of format FMT (default raw) holding SIZE bytes\n"
           "(suffixes k, M, G, T, P, E; rounded up to 512 bytes).\n"
           "\n"
           "  -f FMT        image format: raw\n"
           "  -o OPTIONS    comma-separated format options; for raw:\n"
           "                  preallocation=off|falloc|full\n"
           "  -q            quiet: do not print the 'Formatting ...' line\n");
}

int cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *fmt = "raw";
    bool quiet = false;
    vdisk_options *opts = NULL;
    int ret = 1;
    if (vdisk_options_new(&opts) < 0) {
        cli_lib_error();
        return 1;
    }
    char *optlist = NULL;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "+hqf:o:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'q':
            quiet = true;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            if (vdisk_options_parse(opts, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            free(optlist);
            optlist = strdup(optarg);
            break;
        default:
            fprintf(stderr, "Try 'vdisk create --help' for more information.\n");
            goto out;
        }
    }
    if (optind >= argc) {
        cli_error("Expecting image file name");
        goto out;
    }
    const char *file = argv[optind++];
    uint64_t size = 0;
    if (optind < argc) {
        int r = parse_size(argv[optind], &size);
        if (r < 0) {
            cli_error("Invalid image size specified: '%s'. You may use k, M, G, T, P or E "
                      "suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes "
                      "and exabytes.", argv[optind]);
            goto out;
        }
        optind++;
    } else {
        cli_error("Image creation needs a size parameter");
        goto out;
    }
    if (optind < argc) {
        cli_error("Unexpected argument: %s", argv[optind]);
        goto out;
    }
    if (size > INT64_MAX) {
        cli_error("Image size must be less than 8 EiB!");
        goto out;
    }
    uint64_t rounded = (size + 511) / 512 * 512;
    if (!quiet) {
        printf("Formatting '%s', fmt=%s size=%" PRIu64, file, fmt, rounded);
        if (optlist)
            for (char *tok = strtok(optlist, ","); tok; tok = strtok(NULL, ","))
                printf(" %s", tok);
        printf("\n");
        fflush(stdout);
    }
    if (vdisk_create(file, fmt, size, opts) < 0) {
        cli_lib_error();
        goto out;
    }
    ret = 0;
out:
    free(optlist);
    vdisk_options_free(opts);
    return ret;
}
