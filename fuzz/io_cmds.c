/* SPDX-License-Identifier: MIT */
/*
 * fuzz/io_cmds.c: the fuzz input is a `vdisk io` script, the commands one
 * a line as `vdisk io` reads them from standard input (tools/vdisk/cmd_io.c
 * compiled in: its parser and executor, io_run_script()), run on a small
 * image in memory.  A first line "@N" picks the image (N modulo 6, else
 * the first):
 *   0 qcow2, 1 MiB, 64 KiB clusters
 *   1 qcow2, 4 MiB, 4 KiB clusters (two L2 tables), refcount_bits=1
 *   2 qcow2, 1 MiB, extended L2, zstd
 *   3 qcow2, 1 MiB, compat=0.10
 *   4 qcow2, 1 MiB, 512-byte clusters (32 L2 tables), refcount_bits=64,
 *     lazy refcounts
 *   5 raw, 1 MiB
 * (small, so that commands on the whole image stay fast).
 * write -s (a host file) is refused.  Afterwards the qcow2 images are
 * checked: the commands run without I/O errors, so any corruption or leak
 * they leave is a bug, as is any crash, sanitizer report, leak or hang.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/check.h>
#include <vdisk/image.h>

#include "cli.h"
#include "fuzz.h"

#define MiB (1u << 20)
#define MEM_LIMIT (32u << 20)

static const char *const create_opts[] = {
    "",
    "cluster_size=4096,refcount_bits=1",
    "extended_l2=on,compression_type=zstd",
    "compat=0.10",
    "cluster_size=512,refcount_bits=64,lazy_refcounts=on",
    NULL, /* raw */
};
static const uint32_t image_size[] = {MiB, 4 * MiB, MiB, MiB, MiB, MiB};
#define NIMAGES (sizeof create_opts / sizeof create_opts[0])

static uint8_t *image_data[NIMAGES];
static size_t image_len[NIMAGES];
static char dir[64];

/* The images, made once in a private folder and kept in memory. */
static void setup(void)
{
    strcpy(dir, "/tmp/vdisk-fuzz-io-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    char path[96];
    snprintf(path, sizeof path, "%s/image", dir);
    for (size_t i = 0; i < NIMAGES; i++) {
        if (create_opts[i]) {
            vdisk_options *o = NULL;
            if (vdisk_options_new(&o) < 0 || vdisk_options_parse(o, create_opts[i]) < 0 ||
                vdisk_create(path, "qcow2", image_size[i], o) < 0)
                abort();
            vdisk_options_free(o);
            FILE *f = fopen(path, "rb");
            if (!f || fseek(f, 0, SEEK_END) != 0)
                abort();
            long len = ftell(f);
            rewind(f);
            image_data[i] = malloc((size_t)len);
            if (len <= 0 || !image_data[i] ||
                fread(image_data[i], 1, (size_t)len, f) != (size_t)len)
                abort();
            image_len[i] = (size_t)len;
            fclose(f);
            unlink(path);
        } else {
            image_data[i] = calloc(1, image_size[i]);
            if (!image_data[i])
                abort();
            image_len[i] = image_size[i];
        }
    }
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        setup();
    size_t which = 0;
    if (size >= 3 && data[0] == '@' && data[1] >= '0' && data[1] <= '9' && data[2] == '\n') {
        which = (size_t)(data[1] - '0') % NIMAGES;
        data += 3;
        size -= 3;
    }
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, image_data[which], image_len[which], MEM_LIMIT, &p) < 0)
        return 0;
    if (dev_open_format(&dev, file, create_opts[which] ? "qcow2" : "raw", &p, NULL) < 0) {
        dev_unref(file);
        return 0;
    }
    FILE *in = fmemopen((void *)data, size ? size : 1, "r");
    if (in) {
        if (size)
            io_run_script(dev, in, false, false);
        fclose(in);
    }
    if (create_opts[which]) {
        struct vdisk_check_result res = {.struct_size = sizeof res};
        if (vdisk_check(dev, 0, &res, NULL, NULL) < 0 || res.corruptions || res.leaks ||
            res.check_errors) {
            fprintf(stderr, "io_cmds: image %zu after the script: %lld corruptions, %lld "
                    "leaks, %lld check errors (%s)\n", which, (long long)res.corruptions,
                    (long long)res.leaks, (long long)res.check_errors, vdisk_get_error());
            abort();
        }
    }
    dev_unref(dev);
    return 0;
}
