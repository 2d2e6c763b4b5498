/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_part.c: vdisk part (being written). */
#include "cli.h"

int cmd_part(int argc, char **argv)
{
    (void)argc;
    if (argc > 1 && is_help(argv[1])) {
        printf("usage: vdisk part COMMAND [OPTIONS] IMAGE\n");
        return 0;
    }
    (void)argv;
    cli_error("part: not built yet");
    return 1;
}
