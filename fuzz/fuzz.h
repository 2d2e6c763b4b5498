/* SPDX-License-Identifier: MIT */
/* fuzz/fuzz.h: what the harnesses share. */
#ifndef VDISK_FUZZ_H
#define VDISK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static char fuzz_cd_path[64];

static inline void fuzz_cd_remove(void)
{
    if (fuzz_cd_path[0])
        unlink(fuzz_cd_path);
}

/* A 1 MiB medium for a CD-ROM (block N filled with N's low byte), made on
 * first use and removed at exit. */
static inline const char *fuzz_cd_medium(void)
{
    if (fuzz_cd_path[0])
        return fuzz_cd_path;
    strcpy(fuzz_cd_path, "/tmp/vdisk-fuzz-cd-XXXXXX");
    int fd = mkstemp(fuzz_cd_path);
    if (fd < 0)
        abort();
    static uint8_t block[2048];
    for (unsigned i = 0; i < 512; i++) {
        memset(block, (int)i, sizeof block);
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
            abort();
    }
    close(fd);
    atexit(fuzz_cd_remove);
    return fuzz_cd_path;
}

#endif /* VDISK_FUZZ_H */
