/* SPDX-License-Identifier: MIT */
/* fuzz/fuzz.h: what the harnesses share. */
#ifndef VDISK_FUZZ_H
#define VDISK_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The entry point every harness defines (libFuzzer's). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parameters for devices opened by a harness: no backing files (an input
 * must not reach host files), the thread engine (no io_uring per input). */
static inline struct vdisk_open_params fuzz_params(bool read_only)
{
    struct vdisk_open_params p = {
        .read_only = read_only,
        .cache = VDISK_CACHE_WRITEBACK,
        .engine = VDISK_ENGINE_THREADS,
        .threads = 1,
        .no_backing = true,
    };
    return p;
}

#endif /* VDISK_FUZZ_H */
