/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_snapshot.c: vdisk snapshot, as qemu-img snapshot. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk snapshot [-q] [-f FMT] [-l | -c NAME | -a NAME | -d NAME]\n"
           "                      [--image-opts] FILE\n"
           "\n"
           "Lists, creates, applies or deletes internal snapshots of a qcow2 image,\n"
           "as qemu-img snapshot does.\n"
           "\n"
           "  -l        list the snapshots (the default)\n"
           "  -c NAME   take a snapshot of the disk as it is now\n"
           "  -a NAME   apply (revert to) a snapshot, by name or id\n"
           "  -d NAME   delete a snapshot, by name or id\n"
           "  -f FMT    the image's format\n"
           "  -q        quiet\n"
           "  -U        with -l: list even while another process writes FILE\n");
}

void print_snapshot_table(vdisk_dev *dev)
{
    int n = vdisk_snapshot_count(dev);
    printf("Snapshot list:\n");
    printf("%-9s %-17s %7s %19s %12s %10s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
           "ICOUNT");
    for (int i = 0; i < n; i++) {
        struct vdisk_snapshot sn = {.struct_size = sizeof sn};
        if (vdisk_snapshot_get(dev, (unsigned)i, &sn) < 0)
            continue;
        char size[64], date[64], clock[64], icount[32] = "";
        size_to_str(sn.vm_state_size, size, sizeof size);
        time_t t = (time_t)sn.date_sec;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t ms = sn.vm_clock_nsec / 1000000;
        snprintf(clock, sizeof clock, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64,
                 ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
        if (sn.has_icount)
            snprintf(icount, sizeof icount, "%" PRIu64, sn.icount);
        printf("%-9s %-17s %7s %19s %12s %10s\n", sn.id, sn.name, size, date, clock, icount);
    }
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    char action = 'l';
    const char *name = NULL;
    bool quiet = false;
    int c, actions = 0;
    bool image_opts = false;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:lc:a:d:qU", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case 'h':
            help();
            return 0;
        case 'f':
            oa.format = optarg;
            break;
        case 'l':
            action = 'l';
            actions++;
            break;
        case 'c':
        case 'a':
        case 'd':
            action = (char)c;
            name = optarg;
            actions++;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            oa.force_share = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk snapshot --help' for more information.\n");
            return 1;
        }
    }
    if (actions > 1) {
        cli_error("Cannot mix '-l', '-a', '-c', '-d'");
        return 1;
    }
    if (optind != argc - 1) {
        cli_error("Expecting one image file name");
        return 1;
    }
    oa.read_only = action == 'l';
    if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
        return 1;
    vdisk_dev *dev = cli_open(argv[optind], &oa);
    if (!dev)
        return 1;
    int r = 0;
    switch (action) {
    case 'l':
        if (vdisk_snapshot_count(dev) > 0)
            print_snapshot_table(dev);
        break;
    case 'c':
        r = vdisk_snapshot_create(dev, name);
        break;
    case 'a':
        r = vdisk_snapshot_apply(dev, name);
        break;
    case 'd':
        r = vdisk_snapshot_delete(dev, name);
        break;
    }
    (void)quiet;
    if (r < 0)
        cli_lib_error();
    vdisk_close(dev);
    return r < 0 ? 1 : 0;
}
