/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_commit.c: vdisk commit, as qemu-img commit: what the
 * overlay (and the images between it and the base) holds is written into
 * the base, and the overlay is emptied unless -d.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define CHUNK (1u << 20)

/* -r RATE as qemu-img 7.2 reads it (cvtnum_full): a size in bytes per
 * second from 0 (no limit) to INT64_MAX; -1 with qemu-img's message. */
static int64_t parse_rate(const char *s)
{
    uint64_t v;
    int r = vdisk_parse_size(s, 1, &v);
    if (r < 0 && r != -ERANGE) {
        cli_error("Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for");
        cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (r == -ERANGE || v > INT64_MAX) {
        cli_error("Invalid rate limit specified. Must be between 0 and %" PRId64 ".", INT64_MAX);
        return -1;
    }
    return (int64_t)v;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Holds the copy to RATE bytes a second: COPIED bytes may have gone since
 * START only after COPIED / RATE seconds (the first chunk goes at once). */
static void rate_wait(int64_t rate, double start, uint64_t copied)
{
    if (rate <= 0)
        return;
    double wait = start + (double)copied / (double)rate - now_s();
    if (wait <= 0)
        return;
    struct timespec t = {.tv_sec = (time_t)wait,
                         .tv_nsec = (long)((wait - (double)(time_t)wait) * 1e9)};
    while (nanosleep(&t, &t) < 0 && errno == EINTR)
        ;
}

static void help(void)
{
    printf("usage: vdisk commit [-f FMT] [-t CACHE] [-b BASE] [-r RATE] [-d] [-p] [-q] OVERLAY\n"
           "\n"
           "Writes what OVERLAY holds into its backing file (or into BASE, further\n"
           "down the chain: then everything above BASE), then empties OVERLAY so that\n"
           "it reads through to the backing file again.\n"
           "\n"
           "  -b BASE   the image of the chain to commit into (default: the backing file)\n"
           "  -d        keep OVERLAY's data (do not empty it)\n"
           "  -r RATE   copy at most RATE bytes a second (k, M, G... suffixes; 0: no\n"
           "            limit)\n"
           "  -p        show progress\n");
}

/* The value of "backing." DEPTH times then the key-secret option of FMT
 * in the --image-opts LIST (KEY=VALUE,...; ",," a comma), malloc'd, or
 * NULL. */
static char *base_key(const char *list, int depth, const char *fmt)
{
    char key[512] = "";
    for (int i = 0; i < depth && strlen(key) + 8 < sizeof key - 24; i++)
        strcat(key, "backing.");
    strcat(key, strcmp(fmt, "luks") ? "encrypt.key-secret" : "key-secret");
    size_t kl = strlen(key);
    for (const char *p = list; p && *p;) {
        const char *e = cli_list_item_end(p);
        if ((size_t)(e - p) > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            /* (",," in the value: one comma) */
            char *v = malloc((size_t)(e - p - (ptrdiff_t)kl));
            if (!v)
                return NULL;
            size_t n = 0;
            for (const char *q = p + kl + 1; q < e; q++) {
                v[n++] = *q;
                if (*q == ',' && q[1] == ',')
                    q++;
            }
            v[n] = '\0';
            return v;
        }
        p = *e ? e + 1 : NULL;
    }
    return NULL;
}

int cmd_commit(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    const char *image_opts = NULL;
    bool want_image_opts = false;
    const char *base_name = NULL;
    bool keep = false, quiet = false, prog = false;
    int64_t rate = 0;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:t:b:dpqr:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return 0;
        case CLI_OPT_IMAGE_OPTS:
            want_image_opts = true;
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                return 1;
            break;
        case 'f': oa.format = optarg; break;
        case 't': oa.cache = optarg; break;
        case 'b': base_name = optarg; keep = true; break; /* (-b implies -d, as in qemu-img) */
        case 'd': keep = true; break;
        case 'p': prog = true; break;
        case 'q': quiet = true; break;
        case 'r':
            if ((rate = parse_rate(optarg)) < 0)
                return 1;
            break;
        default:
            fprintf(stderr, "Try 'vdisk commit --help' for more information.\n");
            return 1;
        }
    }
    if (argc - optind != 1) {
        cli_error("Expecting one image file name");
        return 1;
    }
    if (want_image_opts) {
        image_opts = argv[optind];
        if (!(argv[optind] = cli_image_opts(image_opts, oa.format)))
            return 1;
    }
    vdisk_dev *top = cli_open(argv[optind], &oa);
    if (!top)
        return 1;
    /* Find the base in the chain, and how deep it is. */
    int depth = 0;
    vdisk_dev *b = vdisk_get_backing(top);
    struct vdisk_info bi = {.struct_size = sizeof bi};
    vdisk_dev *chain = top;
    for (depth = 1; b; depth++) {
        struct vdisk_info ci = {.struct_size = sizeof ci};
        vdisk_get_info(chain, &ci);
        bi = (struct vdisk_info){.struct_size = sizeof bi};
        vdisk_get_info(b, &bi);
        if (!base_name || strcmp(base_name, ci.backing_filename) == 0 ||
            strcmp(base_name, ci.full_backing_filename) == 0 ||
            strcmp(base_name, vdisk_get_filename(b)) == 0)
            break;
        chain = b;
        b = vdisk_get_backing(b);
    }
    if (!b) {
        cli_error(base_name ? "Base '%s' not found" : "Image does not have a backing file",
                  base_name);
        vdisk_close(top);
        return 1;
    }
    /* The base, opened again for writing, in the format it was opened in;
     * probed again when the image above does not record it, so that a raw
     * base keeps its probed-raw guard of block 0 (what is copied down may
     * hold a guest's image header). */
    struct vdisk_info ai = {.struct_size = sizeof ai};
    vdisk_get_info(chain, &ai);
    struct open_args ba = {.format = ai.backing_format ? vdisk_get_format(b) : NULL,
                           .cache = oa.cache};
    /* An encrypted base: the key the image options gave it
     * (backing.[backing....]encrypt.key-secret). */
    char *bkey = image_opts ? base_key(image_opts, depth, vdisk_get_format(b)) : NULL;
    ba.key_secret = bkey;
    if (bkey)
        ba.format = vdisk_get_format(b);
    vdisk_dev *base = cli_open(vdisk_get_filename(b), &ba);
    free(bkey);
    if (!base) {
        vdisk_close(top);
        return 1;
    }
    uint64_t size = vdisk_get_size(top), done = 0;
    if (vdisk_get_size(base) < size && vdisk_resize(base, size, 0) < 0) {
        cli_lib_error();
        vdisk_close(base);
        vdisk_close(top);
        return 1;
    }
    uint8_t *buf = malloc(CHUNK);
    int r = 0;
    uint64_t copied = 0;
    double start = now_s();
    for (uint64_t off = 0; r == 0 && off < size;) {
        struct vdisk_extent e;
        r = vdisk_block_status(top, off, size - off < CHUNK ? size - off : CHUNK, &e);
        if (r < 0)
            break;
        /* Held above the base: copy it down. */
        if ((e.flags & VDISK_EXT_ALLOCATED) && e.depth < depth) {
            rate_wait(rate, start, copied);
            copied += e.length;
            /* Zeroes may deallocate the base's clusters, as qemu-img's
             * commit (a mirror job with unmap) does: a qcow2 base gets
             * zero clusters without their data clusters. */
            if (e.flags & VDISK_EXT_ZERO)
                r = vdisk_write_zeroes(base, off, e.length, VDISK_ZEROES_MAY_UNMAP);
            else if ((r = vdisk_pread(top, buf, e.length, off)) == 0)
                r = vdisk_pwrite(base, buf, e.length, off);
        }
        off += e.length;
        done += e.length;
        if (prog)
            printf("    (%.2f/100%%)\r", (double)done * 100.0 / (double)size), fflush(stdout);
    }
    free(buf);
    if (r == 0)
        r = vdisk_flush(base);
    if (r == 0 && !keep && depth == 1)
        r = vdisk_make_empty(top);
    if (r < 0)
        cli_lib_error();
    else if (!quiet)
        printf("%sImage committed.\n", prog ? "    (100.00/100%)\n" : "");
    vdisk_close(base);
    vdisk_close(top);
    return r < 0 ? 1 : 0;
}
