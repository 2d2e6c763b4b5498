/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_iso.c: vdisk iso (being written). */
#include "cli.h"

int cmd_iso(int argc, char **argv)
{
    if (argc > 1 && is_help(argv[1])) {
        printf("usage: vdisk iso info|ls|cat|extract [OPTIONS] ISO [PATH] [DEST]\n");
        return 0;
    }
    (void)argv;
    cli_error("iso: not built yet");
    return 1;
}
