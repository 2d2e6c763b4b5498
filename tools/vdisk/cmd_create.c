/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_create.c: vdisk create, as qemu-img create. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk create [-q] [-f FMT] [-b BACKING -F BACKING_FMT] [-u] [-o OPTIONS]\n"
           "                    FILE [SIZE]\n"
           "\n"
           "Creates the image FILE of format FMT (raw, qcow2, vdi or vpc; default raw)\n"
           "holding SIZE bytes (suffixes k, M, G, T, P, E; rounded up to 512 bytes).\n"
           "With a backing file, SIZE defaults to the backing file's size.\n"
           "\n"
           "  -f FMT        image format: raw, qcow2, vmdk, vdi, vpc (VHD) or vhdx; -o help\n"
           "                lists a format's options\n"
           "  -b BACKING    qcow2: a linked clone of BACKING (a path relative to FILE's\n"
           "                folder, or absolute)\n"
           "  -F FMT        the backing file's format (raw or qcow2); required with -b\n"
           "  -u            do not open the backing file (SIZE is then required)\n"
           "  -o OPTIONS    comma-separated format options:\n"
           "                  raw:   preallocation=off|falloc|full\n"
           "                  vdi:   static=on|off (all blocks allocated)\n"
           "                  qcow2: cluster_size=512..2M, refcount_bits=1..64,\n"
           "                         compat=0.10|1.1, lazy_refcounts=on|off,\n"
           "                         extended_l2=on|off, compression_type=zlib|zstd,\n"
           "                         preallocation=off|metadata|falloc|full,\n"
           "                         backing_file=NAME, backing_fmt=FMT\n"
           "                  vpc:   subformat=dynamic|fixed, force_size=on|off (the size\n"
           "                         as given, not rounded to a CHS geometry: Azure),\n"
           "                         preallocation=off|falloc|full (no effect, as in\n"
           "                         qemu-img)\n"
           "  -q            quiet: do not print the 'Formatting ...' line\n");
}

/* The "Formatting" line, with the options in the order qemu-img prints them. */
static void print_formatting(const char *file, const char *fmt, uint64_t size,
                             const vdisk_options *o, const char *optlist)
{
    printf("Formatting '%s', fmt=%s", file, fmt);
    /* Encryption options (qcow2's encrypt.*, luks's), in qemu-img's order. */
    static const char *const crypt_keys[] = {"key-secret", "cipher-alg", "cipher-mode",
                                             "ivgen-alg", "ivgen-hash-alg", "hash-alg",
                                             "iter-time"};
    char ck[64];
    if (strcmp(fmt, "luks") == 0) {
        printf(" size=%" PRIu64, size);
        for (size_t i = 0; i < sizeof crypt_keys / sizeof crypt_keys[0]; i++)
            if (vdisk_options_get(o, crypt_keys[i]))
                printf(" %s=%s", crypt_keys[i], vdisk_options_get(o, crypt_keys[i]));
    } else if (strcmp(fmt, "qcow2") == 0) {
        const char *v;
        if ((v = vdisk_options_get(o, "encrypt.format")))
            printf(" encrypt.format=%s", v);
        for (size_t i = 0; i < sizeof crypt_keys / sizeof crypt_keys[0]; i++) {
            snprintf(ck, sizeof ck, "encrypt.%s", crypt_keys[i]);
            if ((v = vdisk_options_get(o, ck)))
                printf(" %s=%s", ck, v);
        }
        uint64_t cs = 65536;
        if ((v = vdisk_options_get(o, "cluster_size")))
            vdisk_parse_size(v, 1, &cs);
        printf(" cluster_size=%" PRIu64, cs);
        v = vdisk_options_get(o, "extended_l2");
        printf(" extended_l2=%s", v && (!strcmp(v, "on") || !strcmp(v, "true")) ? "on" : "off");
        if ((v = vdisk_options_get(o, "preallocation")))
            printf(" preallocation=%s", v);
        v = vdisk_options_get(o, "compression_type");
        printf(" compression_type=%s", v ? v : "zlib");
        printf(" size=%" PRIu64, size);
        if ((v = vdisk_options_get(o, "backing_file")))
            printf(" backing_file=%s", v);
        if ((v = vdisk_options_get(o, "backing_fmt")))
            printf(" backing_fmt=%s", v);
        if ((v = vdisk_options_get(o, "compat")))
            printf(" compat=%s", v);
        v = vdisk_options_get(o, "lazy_refcounts");
        printf(" lazy_refcounts=%s", v && (!strcmp(v, "on") || !strcmp(v, "true")) ? "on" : "off");
        v = vdisk_options_get(o, "refcount_bits");
        printf(" refcount_bits=%s", v ? v : "16");
    } else if (strcmp(fmt, "vdi") == 0) {
        const char *v = vdisk_options_get(o, "static");
        printf(" size=%" PRIu64 " static=%s", size,
               v && (!strcmp(v, "on") || !strcmp(v, "true")) ? "on" : "off");
    } else if (strcmp(fmt, "vmdk") == 0) {
        /* qemu-img's order; compat6 and hwversion always. */
        printf(" size=%" PRIu64, size);
        const char *v;
        static const char *const first[] = {"adapter_type", "backing_file", "backing_fmt"};
        for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
            if ((v = vdisk_options_get(o, first[i])))
                printf(" %s=%s", first[i], v);
        v = vdisk_options_get(o, "compat6");
        printf(" compat6=%s", v && (!strcmp(v, "on") || !strcmp(v, "true")) ? "on" : "off");
        v = vdisk_options_get(o, "hwversion");
        printf(" hwversion=%s", v ? v : "undefined");
        static const char *const last[] = {"toolsversion", "subformat", "zeroed_grain"};
        for (size_t i = 0; i < sizeof last / sizeof last[0]; i++)
            if ((v = vdisk_options_get(o, last[i])))
                printf(" %s=%s", last[i], v);
    } else if (strcmp(fmt, "vhdx") == 0) {
        /* qemu-img's order, log_size and block_size always (as bytes). */
        const char *v;
        uint64_t n = 1048576;
        if ((v = vdisk_options_get(o, "log_size")))
            vdisk_parse_size(v, 1, &n);
        printf(" size=%" PRIu64 " log_size=%" PRIu64, size, n);
        n = 0;
        if ((v = vdisk_options_get(o, "block_size")))
            vdisk_parse_size(v, 1, &n);
        printf(" block_size=%" PRIu64, n);
        if ((v = vdisk_options_get(o, "subformat")))
            printf(" subformat=%s", v);
        if ((v = vdisk_options_get(o, "block_state_zero")))
            printf(" block_state_zero=%s", !strcmp(v, "on") || !strcmp(v, "true") ? "on" : "off");
    } else if (strcmp(fmt, "vpc") == 0) {
        /* qemu-img's order: the format's options, then the file's. */
        static const char *const keys[] = {"subformat", "force_size", "preallocation"};
        printf(" size=%" PRIu64, size);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const char *v = vdisk_options_get(o, keys[i]);
            if (v)
                printf(" %s=%s", keys[i], v);
        }
    } else {
        printf(" size=%" PRIu64, size);
        if (optlist) {
            char *copy = strdup(optlist);
            for (char *tok = copy ? strtok(copy, ",") : NULL; tok; tok = strtok(NULL, ","))
                if (strncmp(tok, "size=", 5) != 0) /* (printed above) */
                    printf(" %s", tok);
            free(copy);
        }
    }
    printf("\n");
    fflush(stdout);
}

/* The size of the backing file, opened as the new image will open it. */
static int backing_size(const char *file, const char *backing, const char *fmt, uint64_t *size)
{
    vdisk_dev *dev = cli_open_beside(file, backing, fmt);
    if (!dev)
        return -1;
    *size = vdisk_get_size(dev);
    vdisk_close(dev);
    return 0;
}

int cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"quiet", no_argument, NULL, 'q'},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {NULL, 0, NULL, 0},
    };
    const char *fmt = "raw", *backing = NULL, *backing_fmt = NULL;
    bool quiet = false, unsafe = false;
    vdisk_options *opts = NULL;
    int ret = 1;
    if (vdisk_options_new(&opts) < 0) {
        cli_lib_error();
        return 1;
    }
    char *optlist = NULL;
    bool help_opts = false;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hqf:o:b:F:u", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'q':
            quiet = true;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'b':
            backing = optarg;
            break;
        case 'F':
            backing_fmt = optarg;
            break;
        case 'u':
            unsafe = true;
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                goto out;
            break;
        case 'o':
            if (cli_is_help_option(optarg)) {
                help_opts = true;
                break;
            }
            if (vdisk_options_parse(opts, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            free(optlist);
            optlist = strdup(optarg);
            break;
        default:
            fprintf(stderr, "Try 'vdisk create --help' for more information.\n");
            goto out;
        }
    }
    if (help_opts) {
        /* -o help: the format's create options, as qemu-img lists them. */
        ret = cli_print_create_options(fmt);
        goto out;
    }
    if (optind >= argc) {
        cli_error("Expecting image file name");
        goto out;
    }
    const char *file = argv[optind++];
    if ((backing && vdisk_options_set(opts, "backing_file", backing) < 0) ||
        (backing_fmt && vdisk_options_set(opts, "backing_fmt", backing_fmt) < 0)) {
        cli_lib_error();
        goto out;
    }
    backing = vdisk_options_get(opts, "backing_file");
    backing_fmt = vdisk_options_get(opts, "backing_fmt");
    if (backing && !*backing)
        backing = NULL;
    /* As qemu-img 7.2: a backing file needs its format, never guessed (a
     * qcow2 backing file read as raw shows its header to the guest). */
    if (backing_fmt && !backing) {
        cli_error("%s: Backing format cannot be used without backing file", file);
        goto out;
    }
    if (backing && !backing_fmt) {
        cli_refuse_backing_without_format(file, backing, unsafe);
        goto out;
    }
    uint64_t size = 0;
    const char *osize = vdisk_options_get(opts, "size");
    if (osize && optind < argc) {
        cli_error("%s: The image size must be specified only once", file);
        goto out;
    }
    if (osize) {
        /* -o size=N, when no size follows the name (as qemu-img) */
        if (vdisk_parse_size(osize, 1, &size) < 0) {
            cli_error("%s: Parameter 'size' expects a non-negative number below 2^64\n"
                      "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                      "peta-\nand exabytes, respectively.", file);
            goto out;
        }
    } else if (optind < argc) {
        int r = vdisk_parse_size(argv[optind], 1, &size);
        if (r < 0) {
            cli_error("Invalid image size specified: '%s'. You may use k, M, G, T, P or E "
                      "suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes "
                      "and exabytes.", argv[optind]);
            goto out;
        }
        optind++;
    } else if (backing && !unsafe) {
        if (backing_size(file, backing, backing_fmt, &size) < 0)
            goto out;
    } else {
        cli_error("Image creation needs a size parameter");
        goto out;
    }
    if (optind < argc) {
        cli_error("Unexpected argument: %s", argv[optind]);
        goto out;
    }
    if (size > INT64_MAX) {
        cli_error("Image size must be less than 8 EiB!");
        goto out;
    }
    /* The line comes once the options have passed: a mistyped option is
     * refused before anything is printed or touched, as in qemu-img.
     * The --object secrets go with the options (secret.ID, which the
     * Formatting line does not show). */
    if (cli_secrets_apply(opts) < 0 || vdisk_create(file, fmt, size, opts) < 0) {
        cli_lib_error();
        goto out;
    }
    if (!quiet)
        print_formatting(file, fmt, (size + 511) / 512 * 512, opts, optlist);
    ret = 0;
out:
    free(optlist);
    vdisk_options_free(opts);
    return ret;
}
