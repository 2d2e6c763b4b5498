/* SPDX-License-Identifier: MIT */
/*
 * lib/size.h: the one parser of sizes ("64k", "1.5G", "0x1000").  The
 * grammar is vdisk_parse_size()'s in vdisk/options.h; the library's size
 * options (opt_size() in options_internal.h), the CLI and vdisk-vmm all use
 * it.
 */
#ifndef VDISK_SIZE_H
#define VDISK_SIZE_H

#include <stdint.h>

/*
 * size_parse: TEXT as a size in bytes; a number without a suffix counts in
 * units of 2^BARE_SHIFT bytes (0: bytes, 20: MiB; a multiple of 10 up to 60).
 * Returns 0 with *out set, or -EINVAL (not a size) / -ERANGE (2^64 bytes or
 * more) with a message naming TEXT (err_set); *out is untouched on errors.
 */
int size_parse(const char *text, unsigned bare_shift, uint64_t *out);

/* The value of the hexadecimal digit C (either case), or -1. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif /* VDISK_SIZE_H */
