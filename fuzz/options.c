/* SPDX-License-Identifier: MIT */
/*
 * fuzz/options.c: the fuzz input is an option string, as given to -o
 * ("key=value,key=value", ",," for a comma): parsed by the library's
 * parser (lib/options.c), then used as qemu-img uses such strings: to
 * create a qcow2 image (qcow2's create options), to open it (the open
 * options, with backing-confine=on forced so that a backing file name
 * cannot reach outside a private folder) and to amend an image held in
 * memory.  Every file is made in a private folder under /tmp, 1 MiB at
 * most.  Any crash, sanitizer report, leak or hang is a bug.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/image.h>

#include "fuzz.h"
#include "options_internal.h"

#define MEM_LIMIT (16u << 20)

static char dir[64], image[96], base[96];
static uint8_t *base_data;
static size_t base_len;

static void cleanup(void)
{
    unlink(image);
    unlink(base);
    rmdir(dir);
}

static void setup(void)
{
    strcpy(dir, "/tmp/vdisk-fuzz-options-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(image, sizeof image, "%s/image", dir);
    snprintf(base, sizeof base, "%s/base", dir);
    atexit(cleanup);
    /* A small qcow2 image to amend in memory. */
    if (vdisk_create(base, "qcow2", 1 << 20, NULL) < 0)
        abort();
    FILE *f = fopen(base, "rb");
    if (!f)
        abort();
    base_data = malloc(1 << 20);
    base_len = base_data ? fread(base_data, 1, 1 << 20, f) : 0;
    fclose(f);
    if (!base_len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        setup();
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    vdisk_options *o = NULL;
    if (vdisk_options_new(&o) < 0)
        abort();
    int r = vdisk_options_parse(o, s);
    free(s);
    if (r < 0) {
        vdisk_options_free(o);
        return 0;
    }
    vdisk_options_get(o, "format");
    /* Create: qcow2's create options (the size is fixed: 1 MiB). */
    if (vdisk_create(image, "qcow2", 1 << 20, o) == 0) {
        /* Open it with the same options, confined to the folder. */
        if (vdisk_options_set(o, "backing-confine", "on") == 0) {
            vdisk_dev *dev;
            if (vdisk_open(&dev, image, o) == 0)
                vdisk_close(dev);
        }
    }
    unlink(image);
    /* Amend an image in memory. */
    struct vdisk_open_params p = fuzz_params(false);
    struct vdisk_dev *file, *dev;
    if (dev_open_memory(&file, base_data, base_len, MEM_LIMIT, &p) == 0) {
        if (dev_open_format(&dev, file, "qcow2", &p, NULL) == 0) {
            vdisk_amend(dev, o);
            dev_unref(dev);
        } else {
            dev_unref(file);
        }
    }
    vdisk_options_free(o);
    return 0;
}
