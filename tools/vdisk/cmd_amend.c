/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_amend.c: vdisk amend, as qemu-img amend. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk amend [-f FMT] [-p] [-q] -o OPTIONS FILE\n"
           "\n"
           "Changes format options of the image in place, as qemu-img amend does.\n"
           "qcow2: compat=0.10|1.1 (a downgrade turns zero clusters into written or\n"
           "unallocated ones), refcount_bits=1..64 (rewrites the refcount structure),\n"
           "lazy_refcounts=on|off, size=SIZE (a resize, shrinking too, as qemu-img's\n"
           "amend does; a multiple of 512).\n"
           "\n"
           "  --force  as qemu-img's: LUKS keyslot changes (luks images, qcow2's\n"
           "           encrypt.*) may overwrite an active keyslot (keyslot=N with\n"
           "           state=active) and erase the last active ones.\n");
}

int cmd_amend(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"force", no_argument, NULL, 'F'},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    vdisk_options *o = NULL;
    vdisk_options_new(&o);
    bool have = false, image_opts = false;
    int c, ret = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:o:pqt:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f': oa.format = optarg; break;
        case 't': oa.cache = optarg; break;
        case 'o':
            if (!cli_valid_option_list(optarg))
                goto out;
            if (vdisk_options_parse(o, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            have = true;
            break;
        case 'p':
        case 'q':
            break;
        case 'F':
            vdisk_options_set(o, "force", "on");
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                goto out;
            break;
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk amend --help' for more information.\n");
            goto out;
        }
    }
    if (!have) {
        cli_error("Must specify options (-o)");
        goto out;
    }
    if (argc - optind != 1) {
        cli_error("Expecting one image file name");
        goto out;
    }
    if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
        goto out;
    vdisk_dev *dev = cli_open(argv[optind], &oa);
    if (!dev)
        goto out;
    if (cli_secrets_apply(o) < 0 || vdisk_amend(dev, o) < 0)
        cli_error("%s", cli_lib_detail());
    else
        ret = 0;
    vdisk_close(dev);
out:
    vdisk_options_free(o);
    return ret;
}
