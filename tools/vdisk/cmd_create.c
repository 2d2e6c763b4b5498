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

/* The library's message about FILE as qemu-img words it, "FILE: MESSAGE"
 * (the file named once when the message starts with it already). */
static void cli_file_error(const char *file)
{
    const char *m = cli_lib_detail();
    size_t n = strlen(file);
    if (strncmp(m, file, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        cli_error("%s", m);
    else
        cli_error("%s: %s", file, m);
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
        if ((v = vdisk_options_get(o, "encryption")))
            printf(" encryption=%s", v);
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
        if ((v = vdisk_options_get(o, "data_file")))
            printf(" data_file=%s", v);
        if ((v = vdisk_options_get(o, "data_file_raw")))
            printf(" data_file_raw=%s", !strcmp(v, "on") || !strcmp(v, "true") ? "on" : "off");
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
                if (strncmp(tok, "size=", 5) != 0 && /* (printed above) */
                    strncmp(tok, "extent_size_hint=", 17) != 0) /* (below) */
                    printf(" %s", tok);
            free(copy);
        }
    }
    /* The file's option last, in bytes. */
    const char *hint = vdisk_options_get(o, "extent_size_hint");
    uint64_t hint_bytes;
    if (hint && vdisk_parse_size(hint, 1, &hint_bytes) == 0)
        printf(" extent_size_hint=%" PRIu64, hint_bytes);
    printf("\n");
    fflush(stdout);
}

/* The size of the backing file, opened as the new image will open it;
 * when it cannot be opened, qemu-img's two lines ("FILE: Could not open
 * 'BACKING': ..." and "Could not open backing image."). */
static int backing_size(const char *file, const char *backing, const char *fmt, uint64_t *size)
{
    const char *slash = strrchr(file, '/');
    char *path = NULL;
    if (backing[0] == '/' || strstr(backing, "://") || !strncmp(backing, "rbd:", 4) ||
        !strncmp(backing, "json:", 5) || !slash)
        path = strdup(backing);
    else if (asprintf(&path, "%.*s/%s", (int)(slash - file), file, backing) < 0)
        path = NULL;
    if (!path) {
        cli_error("out of memory");
        return -1;
    }
    vdisk_options *o = NULL;
    vdisk_dev *dev = NULL;
    /* (Its size alone, as qemu-img: no key, not its own backing file.) */
    if (vdisk_options_new(&o) < 0 || vdisk_options_set(o, "read-only", "on") < 0 ||
        vdisk_options_set(o, "no-key", "on") < 0 || vdisk_options_set(o, "backing.null", "on") < 0 ||
        (fmt && vdisk_options_set(o, "format", fmt) < 0) || vdisk_open(&dev, path, o) < 0) {
        const char *detail = cli_lib_detail();
        if (!strncmp(detail, "Could not open '", 16)) /* (it names the file) */
            cli_error("%s: %s", file, detail);
        else
            cli_error("%s: Could not open '%s': %s", file, path, detail);
        fprintf(stderr, "Could not open backing image.\n");
        vdisk_options_free(o);
        free(path);
        return -1;
    }
    vdisk_options_free(o);
    free(path);
    *size = vdisk_get_size(dev);
    vdisk_close(dev);
    return 0;
}

/* Whether FMT's create options (its -o help list, and size) hold KEY, or
 * QEMU's do and vdisk_create() refuses it in its words (an external data
 * file, encryption, the file protocol's options).  On an rbd: FILE a raw
 * image takes a backing file: the image is made an RBD clone of it. */
static bool known_option(const char *file, const char *fmt, const char *key, size_t len)
{
    if (!strncmp(file, "rbd:", 4) && !strcmp(fmt, "raw") &&
        ((len == 12 && !strncmp(key, "backing_file", 12)) ||
         (len == 11 && !strncmp(key, "backing_fmt", 11))))
        return true;
    static const char *const qemu_only[] = {"encryption",
                                            "nocow", "extent_size_hint"};
    const char *name;
    if (len == 4 && !strncmp(key, "size", 4))
        return true;
    for (unsigned i = 0; vdisk_create_option(fmt, i, &name, NULL, NULL) == 1; i++)
        if (strlen(name) == len && !strncmp(name, key, len))
            return true;
    for (size_t i = 0; i < sizeof qemu_only / sizeof qemu_only[0]; i++)
        if (strlen(qemu_only[i]) == len && !strncmp(qemu_only[i], key, len))
            return true;
    return !strcmp(fmt, "qcow2") && len > 8 && !strncmp(key, "encrypt.", 8);
}

/* Each key of the -o LIST (KEY=VALUE,..., ",," a comma in a value) that FMT
 * does not know refused as qemu-img refuses it, before the "Formatting"
 * line: "FILE: Invalid parameter 'KEY'".  0 or -1. */
static int check_keys(const char *file, const char *fmt, const char *list)
{
    for (const char *p = list; p && *p;) {
        const char *e = cli_list_item_end(p);
        size_t n = strcspn(p, "=");
        if (n > (size_t)(e - p))
            n = (size_t)(e - p);
        if (n == 12 && !strncmp(p, "backing_file", 12) && !known_option(file, fmt, p, n)) {
            cli_error("%s: Backing file not supported for file format '%s'", file, fmt);
            return -1;
        }
        if (n && !known_option(file, fmt, p, n)) {
            cli_error("%s: Invalid parameter '%.*s'", file, (int)n, p);
            return -1;
        }
        p = *e ? e + 1 : NULL;
    }
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
    char *optlist = NULL, *keys = NULL;
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
            if (!cli_valid_option_list(optarg))
                goto out;
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
            /* Every -o's keys, to check them once the format is known. */
            char *all = NULL;
            if (asprintf(&all, "%s%s%s", keys ? keys : "", keys ? "," : "", optarg) < 0) {
                cli_error("out of memory");
                goto out;
            }
            free(keys);
            keys = all;
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
    /* The format and its option names first, as qemu-img checks them (-b
     * and -F count as backing_file and backing_fmt). */
    if (vdisk_create_option(fmt, 0, NULL, NULL, NULL) < 0) {
        cli_file_error(file);
        goto out;
    }
    if (check_keys(file, fmt, backing ? "backing_file=" : NULL) < 0 ||
        check_keys(file, fmt, backing_fmt ? "backing_fmt=" : NULL) < 0 ||
        check_keys(file, fmt, keys) < 0)
        goto out;
    if ((backing && vdisk_options_set(opts, "backing_file", backing) < 0) ||
        (backing_fmt && vdisk_options_set(opts, "backing_fmt", backing_fmt) < 0)) {
        cli_lib_error();
        goto out;
    }
    backing = vdisk_options_get(opts, "backing_file");
    backing_fmt = vdisk_options_get(opts, "backing_fmt");
    if (backing && !*backing) {
        cli_error("%s: Expected backing file name, got empty string", file);
        goto out;
    }
    /* As qemu-img 7.2: a backing file needs its format, never guessed (a
     * qcow2 backing file read as raw shows its header to the guest). */
    if (backing_fmt && !backing) {
        cli_error("%s: Backing format cannot be used without backing file", file);
        goto out;
    }
    if (backing && !backing_fmt) {
        /* qemu-img opens it first: that it cannot is the first error. */
        uint64_t ignored;
        if (!unsafe && backing_size(file, backing, NULL, &ignored) < 0)
            goto out;
        cli_refuse_backing_without_format(file, backing, unsafe);
        goto out;
    }
    uint64_t size = 0;
    bool have_size = true;
    const char *osize = vdisk_options_get(opts, "size");
    if (osize && optind < argc) {
        cli_error("%s: The image size must be specified only once", file);
        goto out;
    }
    /* Size options are parsed before anything is printed, as qemu-img's
     * option parser does. */
    static const char *const size_keys[] = {"size", "extent_size_hint"};
    for (size_t i = 0; i < sizeof size_keys / sizeof size_keys[0]; i++) {
        const char *v = vdisk_options_get(opts, size_keys[i]);
        uint64_t n;
        if (v && vdisk_parse_size(v, 1, &n) < 0) {
            cli_bad_size_option(file, size_keys[i]);
            goto out;
        }
    }
    if (osize) {
        /* -o size=N, when no size follows the name (as qemu-img) */
        vdisk_parse_size(osize, 1, &size);
    } else if (optind < argc) {
        int r = vdisk_parse_size(argv[optind], 1, &size);
        if (r < 0) {
            cli_error("Invalid image size specified. You may use k, M, G, T, P or E "
                      "suffixes for");
            cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            goto out;
        }
        optind++;
    } else if (!backing || unsafe) {
        cli_error("Image creation needs a size parameter");
        goto out;
    } else {
        have_size = false; /* the backing file's */
    }
    if (optind < argc) {
        cli_error("Unexpected argument: %s", argv[optind]);
        goto out;
    }
    /* As qemu-img, the backing file is opened unless -u, whether or not
     * its size is needed. */
    uint64_t bsize;
    if (backing && !unsafe) {
        if (backing_size(file, backing, backing_fmt, &bsize) < 0)
            goto out;
        if (!have_size)
            size = bsize;
    }
    if (size > INT64_MAX) {
        cli_error("Image size must be less than 8 EiB!");
        goto out;
    }
    /* As qemu-img: an option the format does not have is refused before
     * the "Formatting" line (which shows the size as given), one of its
     * options with a bad value after it, naming the file.  The --object
     * secrets go with the options (secret.ID, which the line does not
     * show). */
    if (!quiet)
        print_formatting(file, fmt, size, opts, optlist);
    if (cli_secrets_apply(opts) < 0) {
        cli_lib_error();
        goto out;
    }
    if (vdisk_create(file, fmt, size, opts) < 0) {
        cli_file_error(file);
        goto out;
    }
    ret = 0;
out:
    free(keys);
    free(optlist);
    vdisk_options_free(opts);
    return ret;
}
