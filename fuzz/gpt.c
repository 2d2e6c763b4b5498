/* SPDX-License-Identifier: MIT */
/*
 * fuzz/gpt.c: the fuzz input is a disk with a GUID partition table (protective MBR, both headers and arrays).
 * See part_fuzz.h for what is done with it (4096-byte sectors forced after
 * the probed size).  Any crash, sanitizer report, leak or hang is a bug.
 */
#include "part_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_part_table(data, size, 4096);
}
