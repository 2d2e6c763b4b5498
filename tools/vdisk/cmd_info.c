/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_info.c: vdisk info, with qemu-img info's output. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk info [-f FMT] [--output=human|json] [--debug] FILE\n"
           "\n"
           "Describes the image FILE: format, virtual size, space used on the host.\n"
           "The JSON output has the keys and values of 'qemu-img info --output=json'.\n"
           "\n"
           "  -f FMT              the image's format (probed when not given)\n"
           "  --output=FORMAT     human (default) or json\n"
           "  --debug             also print the I/O engine and block size\n"
           "  -U, --force-share   accepted for qemu-img compatibility\n");
}

int cmd_info(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'O'},
        {"debug", no_argument, NULL, 'd'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true};
    int json = 0;
    bool debug = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "+hf:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return 0;
        case 'f':
            oa.format = optarg;
            break;
        case 'O':
            json = parse_output_format(optarg);
            if (json < 0)
                return 1;
            break;
        case 'd':
            debug = true;
            break;
        case 'U':
            break;
        default:
            fprintf(stderr, "Try 'vdisk info --help' for more information.\n");
            return 1;
        }
    }
    if (optind != argc - 1) {
        cli_error(optind >= argc ? "Expecting one image file name"
                                 : "Unexpected argument: %s", argv[argc - 1]);
        return 1;
    }
    const char *file = argv[optind];
    vdisk_dev *dev = cli_open(file, &oa);
    if (!dev)
        return 1;
    uint64_t size = vdisk_get_size(dev);
    int64_t alloc = vdisk_get_allocated_size(dev);
    if (json) {
        printf("{\n    \"virtual-size\": %" PRIu64 ",\n    \"filename\": ", size);
        json_string(stdout, file);
        printf(",\n    \"format\": ");
        json_string(stdout, vdisk_get_format(dev));
        if (alloc >= 0)
            printf(",\n    \"actual-size\": %" PRId64, alloc);
        printf(",\n    \"dirty-flag\": false\n}\n");
    } else {
        char vs[64], ds[64];
        size_to_str(size, vs, sizeof vs);
        printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n", file,
               vdisk_get_format(dev), vs, size);
        if (alloc >= 0) {
            size_to_str((uint64_t)alloc, ds, sizeof ds);
            printf("disk size: %s\n", ds);
        } else {
            printf("disk size: unavailable\n");
        }
        if (debug)
            printf("engine: %s\nlogical block size: %u\n", vdisk_get_engine(dev),
                   vdisk_get_block_size(dev));
    }
    vdisk_close(dev);
    return 0;
}
