/* SPDX-License-Identifier: MIT */
/*
 * fuzz/mbr.c: the fuzz input is a disk with an MBR partition table (primary entries, a chain of EBRs).
 * See part_fuzz.h for what is done with it (512-byte sectors forced after
 * the probed size).  Any crash, sanitizer report, leak or hang is a bug.
 */
#include "part_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_part_table(data, size, 512);
}
