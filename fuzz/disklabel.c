/* SPDX-License-Identifier: MIT */
/*
 * fuzz/disklabel.c: the fuzz input is a disk with a Sun, SGI or BSD
 * disklabel (or a hybrid ISO's MBR beside a GPT).  See part_fuzz.h for what
 * is done with it: read, listed with sfdisk's type names, verified, each
 * partition opened and read; every edit must be refused for these labels.
 * Any crash, sanitizer report, leak or hang is a bug.
 */
#include "part_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_part_table(data, size, 512);
}
