/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_compare.c: vdisk compare, as qemu-img compare. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CHUNK (1u << 20)

static void help(void)
{
    printf("usage: vdisk compare [-f FMT] [-F FMT] [-s] [-p] [-q] [--image-opts]\n"
           "                     IMAGE1 IMAGE2\n"
           "\n"
           "Compares the contents of two images, as qemu-img compare does.  Exit\n"
           "status: 0 identical, 1 different, 2 an error.  Without -s, images of\n"
           "different sizes are the same when the larger one holds only zeroes past\n"
           "the other's end; -s (strict) also requires the same size and the same\n"
           "allocation.  -U (--force-share) opens the images even while another\n"
           "process writes them (see IMAGE LOCKING in vdisk(1)).\n");
}

/* 1 when [off, off + len) of DEV reads as zeroes for sure (block status). */
static uint64_t zero_run(vdisk_dev *dev, uint64_t off, uint64_t len, bool *zero, bool *alloc)
{
    struct vdisk_extent e;
    if (vdisk_block_status(dev, off, len, &e) < 0) {
        *zero = false;
        *alloc = true;
        return len;
    }
    *zero = (e.flags & VDISK_EXT_ZERO) && !(e.flags & VDISK_EXT_DATA);
    *alloc = (e.flags & VDISK_EXT_ALLOCATED) != 0;
    return e.length;
}

static uint64_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static int is_zero(const uint8_t *p, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            *at = i;
            return 0;
        }
    }
    return 1;
}

int cmd_compare(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {NULL, 0, NULL, 0},
    };
    struct open_args a1 = {.read_only = true}, a2 = {.read_only = true};
    bool strict = false, quiet = false;
    int c;
    bool image_opts = false;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:F:spqU", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                return 2;
            break;
        case 'h':
            help();
            return 0;
        case 'f': a1.format = optarg; break;
        case 'F': a2.format = optarg; break;
        case 's': strict = true; break;
        case 'p': break;
        case 'q': quiet = true; break;
        case 'U': a1.force_share = a2.force_share = true; break;
        default:
            fprintf(stderr, "Try 'vdisk compare --help' for more information.\n");
            return 2;
        }
    }
    if (argc - optind != 2) {
        cli_error("Expecting two image file names");
        return 2;
    }
    if (image_opts) {
        if (!(argv[optind] = cli_image_opts(argv[optind], a1.format)) ||
            !(argv[optind + 1] = cli_image_opts(argv[optind + 1], a2.format)))
            return 2;
    } else if (!a2.format) {
        a2.format = a1.format;
    }
    vdisk_dev *d1 = cli_open(argv[optind], &a1);
    vdisk_dev *d2 = d1 ? cli_open(argv[optind + 1], &a2) : NULL;
    if (!d1 || !d2) {
        vdisk_close(d1);
        return 2;
    }
    uint64_t s1 = vdisk_get_size(d1), s2 = vdisk_get_size(d2);
    uint64_t common = s1 < s2 ? s1 : s2;
    int ret = 0;
    uint8_t *b1 = malloc(CHUNK), *b2 = malloc(CHUNK);
    if (s1 != s2 && strict) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        ret = 1;
        goto out;
    }
    for (uint64_t off = 0; off < common && ret == 0;) {
        uint64_t max = common - off < CHUNK ? common - off : CHUNK;
        bool z1, z2, al1, al2;
        uint64_t n1 = zero_run(d1, off, max, &z1, &al1);
        uint64_t n2 = zero_run(d2, off, max, &z2, &al2);
        uint64_t n = n1 < n2 ? n1 : n2;
        if (strict && al1 != al2) {
            if (!quiet)
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            ret = 1;
            break;
        }
        if (z1 && z2) {
            off += n;
            continue;
        }
        n = max; /* read whole chunks when any data is involved */
        int which = 0, rr = vdisk_pread(d1, b1, n, off);
        if (rr == 0 && (rr = vdisk_pread(d2, b2, n, off)) < 0)
            which = 1;
        if (rr < 0) {
            /* qemu-img's words and status (4) */
            cli_error("Error while reading offset %" PRIu64 " of %s: %s", off,
                      argv[optind + which], strerror(-rr));
            ret = 4;
            break;
        }
        uint64_t i = first_diff(b1, b2, n);
        if (i < n) {
            if (!quiet)
                printf("Content mismatch at offset %" PRIu64 "!\n", (uint64_t)((off + i) & ~(uint64_t)511));
            ret = 1;
            break;
        }
        off += n;
    }
    /* Past the smaller image: the larger one must read as zeroes. */
    vdisk_dev *big = s1 > s2 ? d1 : d2;
    if (ret == 0 && s1 != s2 && !quiet)
        printf("Warning: Image size mismatch!\n");
    for (uint64_t off = common, end = s1 > s2 ? s1 : s2; ret == 0 && off < end;) {
        uint64_t max = end - off < CHUNK ? end - off : CHUNK;
        bool z, al;
        uint64_t n = zero_run(big, off, max, &z, &al);
        if (z) {
            off += n;
            continue;
        }
        int rr = vdisk_pread(big, b1, max, off);
        if (rr < 0) {
            cli_error("Error while reading offset %" PRIu64 " of %s: %s", off,
                      argv[optind + (big == d1 ? 0 : 1)], strerror(-rr));
            ret = 4;
            break;
        }
        size_t at;
        if (!is_zero(b1, max, &at)) {
            if (!quiet)
                printf("Content mismatch at offset %" PRIu64 "!\n", (uint64_t)((off + at) & ~(uint64_t)511));
            ret = 1;
        }
        off += max;
    }
    if (ret == 0 && !quiet)
        printf("Images are identical.\n");
out:
    free(b1);
    free(b2);
    vdisk_close(d1);
    vdisk_close(d2);
    return ret;
}
