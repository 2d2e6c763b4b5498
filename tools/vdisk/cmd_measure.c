/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_measure.c: vdisk measure, as qemu-img measure: the size a
 * new image needs, for a given virtual size or to hold a source image's
 * data.  The library measures (vdisk_measure, vdisk/measure.h); this opens
 * the source and prints.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk measure [--output=human|json] [--object OBJECTDEF] [-O FMT]\n"
           "                     [-o OPTIONS] (--size SIZE | [--image-opts] [-f FMT]\n"
           "                     [-l SNAPSHOT | -l snapshot.name=NAME,snapshot.id=ID] FILE)\n"
           "\n"
           "Prints the size an image of format FMT (raw or qcow2; default raw) needs:\n"
           "'required' to hold the data of FILE (or an empty disk of SIZE), and\n"
           "'fully allocated' with every cluster of it allocated.  OPTIONS are those\n"
           "of vdisk create; for qcow2, cluster_size, refcount_bits, extended_l2,\n"
           "preallocation, backing_file and compat are taken into account, and\n"
           "'bitmaps size' is what FILE's persistent dirty bitmaps would take.\n"
           "-U (--force-share) opens FILE even while another process writes it (see\n"
           "IMAGE LOCKING in vdisk(1)).  --object secret,id=ID,data=TEXT (or file=PATH)\n"
           "gives the key-secret that an encrypted FILE or encrypt.key-secret names.\n");
}

/* -l's snapshot.name=NAME,snapshot.id=ID form, as qemu-img reads it (its
 * words for an unknown key): the name, else the ID (malloc'd), or NULL
 * after the error. */
static char *snapshot_param(const char *arg)
{
    char *copy = strdup(arg), *name = NULL, *id = NULL, *save = NULL;
    if (!copy) {
        cli_error("Out of memory");
        return NULL;
    }
    bool ok = true;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq)
            *eq = '\0';
        if (eq && strcmp(item, "snapshot.name") == 0) {
            name = eq + 1;
        } else if (eq && strcmp(item, "snapshot.id") == 0) {
            id = eq + 1;
        } else {
            cli_error("Invalid parameter '%s'", item);
            ok = false;
        }
    }
    char *r = NULL;
    if (ok && !(name || id))
        cli_error("Invalid parameter 'snapshot.name'");
    else if (ok && !(r = strdup(name ? name : id)))
        cli_error("Out of memory");
    free(copy);
    if (!r)
        cli_error("Failed in parsing snapshot param '%s'", arg);
    return r;
}

int cmd_measure(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'J'},
        {"size", required_argument, NULL, 'z'},
        {"force-share", no_argument, NULL, 'U'},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true};
    const char *out_fmt = "raw";
    char *snap = NULL, *file = NULL;
    bool image_opts = false;
    int json = 0;
    uint64_t size = 0;
    bool have_size = false;
    vdisk_options *o = NULL;
    vdisk_options_new(&o);
    int c, ret = 1;
    bool help_opts = false;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:O:o:l:sU", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f': oa.format = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o':
            if (!cli_valid_option_list(optarg))
                goto out;
            if (cli_is_help_option(optarg)) {
                help_opts = true;
                break;
            }
            if (vdisk_options_parse(o, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            break;
        case 'l':
            free(snap);
            snap = strncmp(optarg, "snapshot.", 9) == 0 ? snapshot_param(optarg) : strdup(optarg);
            if (!snap)
                goto out;
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                goto out;
            break;
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case 'J':
            if ((json = parse_output_format(optarg)) < 0)
                goto out;
            break;
        case 'z': {
            int64_t v = cli_cvtnum("image size", optarg, 0, INT64_MAX);
            if (v < 0)
                goto out;
            size = (uint64_t)v;
            have_size = true;
            break;
        }
        case 'U':
            oa.force_share = true;
            break;
        case 's':
            break;
        default:
            fprintf(stderr, "Try 'vdisk measure --help' for more information.\n");
            goto out;
        }
    }
    /* qemu-img's checks, in its order. */
    if (argc - optind > 1) {
        cli_error("At most one filename argument is allowed.");
        goto out;
    }
    if (optind == argc && (image_opts || oa.format || snap)) {
        cli_error("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (have_size == (optind < argc)) {
        cli_error(have_size ? "--size N cannot be used together with a filename."
                            : "Either --size N or one filename must be specified.");
        goto out;
    }
    if (help_opts) {
        /* -o help: the output format's create options (qemu-img 7.2
         * refuses "help" here) */
        ret = cli_print_create_options(out_fmt);
        goto out;
    }
    vdisk_dev *dev = NULL;
    if (!have_size) {
        if (image_opts && !(file = cli_image_opts(argv[optind], oa.format)))
            goto out;
        vdisk_options *so = NULL;
        vdisk_options_new(&so);
        vdisk_options_set(so, "read-only", "on");
        if (oa.format)
            vdisk_options_set(so, "format", oa.format);
        if (oa.force_share)
            vdisk_options_set(so, "force-share", "on");
        if (snap)
            vdisk_options_set(so, "snapshot.name", snap);
        int r = cli_secrets_apply(so);
        if (r == 0)
            r = vdisk_open(&dev, file ? file : argv[optind], so);
        vdisk_options_free(so);
        if (r < 0) {
            cli_lib_error();
            goto out;
        }
    }
    /* An output format vdisk does not know: qemu-img's words (a known one
     * that cannot be measured fails in vdisk_measure). */
    if (vdisk_create_option(out_fmt, 0, NULL, NULL, NULL) == -ENOENT) {
        vdisk_close(dev);
        cli_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (cli_secrets_apply(o) < 0) {
        cli_lib_error();
        vdisk_close(dev);
        goto out;
    }
    struct vdisk_measure_result m = {.struct_size = sizeof m};
    int r = vdisk_measure(out_fmt, have_size ? size : 0, o, dev, &m);
    vdisk_close(dev);
    if (r < 0) {
        cli_lib_error();
        goto out;
    }
    if (json) {
        printf("{\n");
        if (m.has_bitmaps)
            printf("    \"bitmaps\": %" PRIu64 ",\n", m.bitmaps);
        printf("    \"required\": %" PRIu64 ",\n    \"fully-allocated\": %" PRIu64 "\n}\n",
               m.required, m.fully_allocated);
    } else {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", m.required,
               m.fully_allocated);
        if (m.has_bitmaps)
            printf("bitmaps size: %" PRIu64 "\n", m.bitmaps);
    }
    ret = 0;
out:
    vdisk_options_free(o);
    free(snap);
    free(file);
    return ret;
}
