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

#endif /* VDISK_SIZE_H */
