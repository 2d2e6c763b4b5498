/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_rebase.c: vdisk rebase, as qemu-img rebase.  Safe mode
 * keeps the image's content: where the image holds nothing itself and the
 * old and new backing files differ, the old data is copied into the image
 * first.  -u only changes the name in the header.  -b "" flattens.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk rebase [-f FMT] [-t CACHE] [-u] [-p] [-q] -b BACKING -F FMT FILE\n"
           "\n"
           "Changes FILE's backing file to BACKING (a path relative to FILE's folder,\n"
           "or absolute), keeping what FILE reads: data that differs between the old\n"
           "and the new backing file is copied into FILE first.  -u (unsafe) only\n"
           "changes the name.  -b \"\" removes the backing file (flattening FILE).\n"
           "-F (BACKING's format) is required with a backing file, as in qemu-img 7.2.\n");
}

int cmd_rebase(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    const char *nb = NULL, *nf = NULL;
    bool unsafe = false, quiet = false, prog = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:t:T:ub:F:pqU", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return 0;
        case 'f': oa.format = optarg; break;
        case 't': oa.cache = optarg; break;
        case 'T': break;
        case 'u': unsafe = true; break;
        case 'b': nb = optarg; break;
        case 'F': nf = optarg; break;
        case 'p': prog = true; break;
        case 'q': quiet = true; break;
        case 'U': break;
        default:
            fprintf(stderr, "Try 'vdisk rebase --help' for more information.\n");
            return 1;
        }
    }
    (void)quiet;
    if (argc - optind != 1 || !nb) {
        cli_error(!nb ? "Must specify backing file (-b) or use '-b \"\"' to remove it"
                      : "Expecting one image file name");
        return 1;
    }
    const char *file = argv[optind];
    /* As qemu-img 7.2: the new backing file's format must be given (safe
     * mode first says why the file cannot be opened, if it cannot). */
    if (*nb && !nf) {
        if (!unsafe) {
            vdisk_options *po = NULL;
            vdisk_dev *probe = NULL;
            char *path = NULL;
            const char *slash = strrchr(file, '/');
            if (nb[0] != '/' && !strstr(nb, "://") && slash) {
                if (asprintf(&path, "%.*s/%s", (int)(slash - file), file, nb) < 0)
                    path = NULL;
            } else {
                path = strdup(nb);
            }
            int pr = path && vdisk_options_new(&po) == 0 &&
                             vdisk_options_set(po, "read-only", "on") == 0
                         ? vdisk_open(&probe, path, po)
                         : -1;
            vdisk_options_free(po);
            if (pr < 0)
                cli_error("Could not open new backing file '%s': %s", nb, vdisk_get_error());
            else
                vdisk_close(probe);
            free(path);
            if (pr < 0)
                return 1;
        }
        cli_error("Could not change the backing file to '%s': backing format must be specified",
                  nb);
        return 1;
    }
    /* -u: the old backing file is not opened (qemu-img's rebase -u does
     * not open it: it may be missing, or of a format no one knows). */
    static const char *const no_backing[] = {"backing.null", "on", NULL};
    if (unsafe)
        oa.options = no_backing;
    vdisk_dev *dev = cli_open(file, &oa);
    if (!dev)
        return 1;
    int r = 0;
    if (!unsafe) {
        vdisk_dev *old = vdisk_get_backing(dev);
        vdisk_dev *neu = *nb ? cli_open_beside(file, nb, nf) : NULL;
        if (*nb && !neu) {
            vdisk_close(dev);
            return 1;
        }
        uint64_t size = vdisk_get_size(dev), chunk = 1 << 20;
        uint64_t osize = old ? vdisk_get_size(old) : 0, nsize = neu ? vdisk_get_size(neu) : 0;
        uint8_t *a = malloc(chunk), *b = malloc(chunk);
        for (uint64_t off = 0; r == 0 && off < size;) {
            struct vdisk_extent e;
            r = vdisk_block_status(dev, off, size - off < chunk ? size - off : chunk, &e);
            if (r < 0)
                break;
            uint64_t n = e.length;
            if (!(e.flags & VDISK_EXT_ALLOCATED) || e.depth > 0) {
                /* Read through to the backing: keep it if the new one differs. */
                memset(a, 0, n);
                memset(b, 0, n);
                if (off < osize)
                    r = vdisk_pread(old, a, osize - off < n ? osize - off : n, off);
                if (r == 0 && off < nsize)
                    r = vdisk_pread(neu, b, nsize - off < n ? nsize - off : n, off);
                /* Only the runs (of 512-byte sectors) that differ are
                 * written, as qemu-img rebase does: past the old backing
                 * file's end as zeroes (no data), else as data. */
                for (uint64_t p = 0; r == 0 && p < n;) {
                    uint64_t q = p + (n - p < 512 ? n - p : 512);
                    bool differs = memcmp(a + p, b + p, q - p) != 0;
                    while (q < n) {
                        uint64_t e2 = q + (n - q < 512 ? n - q : 512);
                        if ((memcmp(a + q, b + q, e2 - q) != 0) != differs)
                            break;
                        q = e2;
                    }
                    if (differs) {
                        r = off + p >= osize ? vdisk_write_zeroes(dev, off + p, q - p, 0)
                                 : vdisk_pwrite(dev, a + p, q - p, off + p);
                    }
                    p = q;
                }
            }
            off += n;
            if (prog)
                printf("    (%.2f/100%%)\r", (double)off * 100.0 / (double)size), fflush(stdout);
        }
        free(a);
        free(b);
        vdisk_close(neu);
        if (prog)
            printf("    (100.00/100%%)\n");
    }
    if (r == 0)
        r = vdisk_set_backing(dev, nb, *nb ? nf : NULL);
    if (r < 0)
        cli_lib_error();
    vdisk_close(dev);
    return r < 0 ? 1 : 0;
}
