/* SPDX-License-Identifier: MIT */
/* tools/vdisk/main.c: the vdisk command: dispatch to the subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "partpath.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *synopsis;
} commands[] = {
    {"create", cmd_create, "create [-q] [-f FMT] [-b BACKING -F FMT] [-u] [-o OPTIONS] FILE [SIZE]"},
    {"info", cmd_info, "info [-f FMT] [--output=human|json] [--debug] FILE"},
    {"check", cmd_check, "check [-f FMT] [-r leaks|all] [--output=human|json] [-q] FILE"},
    {"snapshot", cmd_snapshot, "snapshot [-q] [-f FMT] [-l | -c NAME | -a NAME | -d NAME] FILE"},
    {"convert", cmd_convert, "convert [-f FMT] [-O FMT] [-o OPTS] [-c] [-p] [-n] [-S SIZE] "
                             "[-B BACKING [-F FMT]] [-l snapshot.name=NAME] [-m N] [-C] [-r RATE] "
                             "[--salvage] [--target-is-zero] SRC... DST"},
    {"compare", cmd_compare, "compare [-f FMT] [-F FMT] [-s] [-p] [-q] IMAGE1 IMAGE2"},
    {"resize", cmd_resize, "resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] FILE "
                             "[+|-]SIZE"},
    {"commit", cmd_commit, "commit [-f FMT] [-t CACHE] [-b BASE] [-r RATE] [-d] [-p] [-q] OVERLAY"},
    {"rebase", cmd_rebase, "rebase [-f FMT] [-u] [-p] [-q] -b BACKING -F FMT FILE"},
    {"measure", cmd_measure, "measure [--output=human|json] [-O FMT] [-o OPTS] "
                             "(--size SIZE | [-f FMT] FILE)"},
    {"amend", cmd_amend, "amend [-f FMT] [-p] [-q] [--force] -o OPTIONS FILE"},
    {"map", cmd_map, "map [-f FMT] [--output=human|json] [--start-offset=OFF] "
                     "[--max-length=LEN] FILE"},
    {"bench", cmd_bench, "bench [-c COUNT] [-d DEPTH] [-f FMT] [--flush-interval=N] [-i AIO] "
                         "[-n] [--no-drain] [-o OFFSET] [--pattern=BYTE] [-q] [-s SIZE] "
                         "[-S STEP] [-t CACHE] [-w] [-U] [--random[=SEED]] FILE"},
    {"part", cmd_part, "part COMMAND [OPTIONS] IMAGE  (list, dump, apply, create, add, delete, "
                       "resize, set, verify, repair)"},
    {"iso", cmd_iso, "iso info|ls|cat|extract [OPTIONS] ISO [PATH] [DEST]"},
    {"serve", cmd_serve, "serve [--vhost-user-blk SOCKET [-r] [-f FMT] IMAGE] "
                         "[--vhost-user-scsi SOCKET [--cdrom ISO]] [--monitor SOCKET]"},
    {"nbd", cmd_nbd, "nbd [-p PORT] [-b ADDR | -k SOCKET] [-e N] [-t] [-x NAME] [-D DESC] "
                     "[-f FMT] [-r] [--cache=MODE] [--discard=MODE] [--detect-zeroes=MODE] "
                     "[--fork] [--pid-file=PATH] IMAGE"},
    {"io", cmd_io, "io [-f FMT] [-r] [-n] [-t CACHE] [-i ENGINE] -c CMD [-c CMD ...] FILE"},
    {"dd", cmd_dd, "dd [-f FMT] [-O FMT] [-U] [--image-opts] [bs=SIZE] [count=N] [skip=N] "
                   "if=INPUT of=OUTPUT"},
    {"bitmap", cmd_bitmap, "bitmap (--merge SRC | --add | --remove | --clear | --enable | "
                           "--disable)... [-b SOURCE [-F FMT]] [-g GRANULARITY] "
                           "[--image-opts | -f FMT] FILE BITMAP"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vdisk COMMAND [OPTIONS]\n"
            "\n"
            "vdisk %s: disk images, partitions and CD-ROMs as block devices.\n"
            "Flags follow qemu-img's (and qemu-io's for 'vdisk io').\n"
            "\n"
            "Commands:\n",
            vdisk_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  vdisk %s\n", commands[i].synopsis);
    fprintf(f,
            "\n"
            "Sizes take the suffixes k, M, G, T, P and E (powers of 1024), fractions\n"
            "(1.5G) and hexadecimal (0x10000), as qemu-img takes them.\n"
            "'vdisk help COMMAND' or 'vdisk COMMAND --help' describes a command; see\n"
            "also vdisk(1).\n"
            "Environment: VDISK_ENGINE=uring|threads chooses the I/O engine.\n");
}

/* An unknown command, in qemu-img's words, with the nearest one named. */
static int unknown_command(const char *name)
{
    cli_error("Command not found: %s", name);
    size_t best = 0;
    unsigned dmin = 99;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        unsigned d = cli_distance(name, commands[i].name);
        if (d < dmin) {
            dmin = d;
            best = i;
        }
    }
    if (dmin <= 2 && dmin < strlen(name))
        fprintf(stderr, "Did you mean '%s %s'?\n", cli_progname, commands[best].name);
    fprintf(stderr, "Try '%s --help' for more information\n", cli_progname);
    return 1;
}

/*
 * vdisk as a drop-in for qemu-img and qemu-io: run under either name (a
 * link named qemu-img or qemu-io, or $VDISK_PROG naming one of them), it
 * takes their command lines ("qemu-img info FILE", "qemu-io -c CMD FILE")
 * and starts its messages with their name, as scripts that grep for them
 * expect.  Returns 1 for qemu-io (the io verb's arguments are ARGV as it
 * is), 0 otherwise.
 */
static int drop_in(const char *argv0)
{
    const char *name = getenv("VDISK_PROG");
    if (!name || !*name) {
        name = argv0 ? strrchr(argv0, '/') : NULL;
        name = name ? name + 1 : argv0;
    }
    if (!name)
        return 0;
    if (strcmp(name, "qemu-img") == 0)
        cli_progname = "qemu-img";
    else if (strcmp(name, "qemu-io") == 0) {
        cli_progname = "qemu-io";
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (drop_in(argv[0]))
        return cmd_io(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("vdisk version %s\n", vdisk_version());
        return 0;
    }
    /* vdisk help [COMMAND]: the synopsis of every command, or COMMAND's
     * --help. */
    if (strcmp(argv[1], "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return 0;
        }
        char help_flag[] = "--help";
        char *args[] = {argv[2], help_flag, NULL};
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(argv[2], commands[i].name) == 0)
                return commands[i].fn(2, args);
        return unknown_command(argv[2]);
    }
    /* --sector-size for every verb: the tables behind IMAGE:pN (partpath.c). */
    argc = cli_take_sector_size(argc, argv);
    if (argc < 0)
        return 1;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    return unknown_command(argv[1]);
}
