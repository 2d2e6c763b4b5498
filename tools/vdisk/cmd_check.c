/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_check.c: vdisk check, as qemu-img check (output, exit codes). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk check [-f FMT] [-r leaks|all] [--output=human|json] [-q]\n"
           "                   [--image-opts] FILE\n"
           "\n"
           "Checks the image's metadata for consistency, as qemu-img check does, and\n"
           "with -r repairs it: 'leaks' frees clusters that nothing uses, 'all' also\n"
           "fixes refcounts that are too low (rebuilding the refcount structure) and\n"
           "wrong COPIED flags.  Details go to standard error.\n"
           "\n"
           "Exit status: 0 consistent, 1 the check could not run, 2 corruptions\n"
           "found, 3 leaks found (no corruption), 63 the format cannot be checked.\n"
           "\n"
           "  -U, --force-share  check even while another process writes FILE (not\n"
           "                     with -r; see IMAGE LOCKING in vdisk(1))\n");
}

static void report(void *opaque, const char *line)
{
    (void)opaque;
    fprintf(stderr, "%s\n", line);
}

/* The keys in the order qemu-img prints them. */
static void print_json(const char *file, const char *fmt, const struct vdisk_check_result *r)
{
    printf("{\n");
    if (r->image_end_offset) /* (vdi has none) */
        printf("    \"image-end-offset\": %" PRIu64 ",\n", r->image_end_offset);
    if (r->compressed_clusters)
        printf("    \"compressed-clusters\": %" PRIu64 ",\n", r->compressed_clusters);
    if (r->total_clusters)
        printf("    \"total-clusters\": %" PRIu64 ",\n", r->total_clusters);
    if (r->corruptions)
        printf("    \"corruptions\": %" PRId64 ",\n", r->corruptions);
    if (r->corruptions_fixed)
        printf("    \"corruptions-fixed\": %" PRId64 ",\n", r->corruptions_fixed);
    printf("    \"check-errors\": %" PRId64 ",\n", r->check_errors);
    if (r->leaks)
        printf("    \"leaks\": %" PRId64 ",\n", r->leaks);
    if (r->leaks_fixed)
        printf("    \"leaks-fixed\": %" PRId64 ",\n", r->leaks_fixed);
    if (r->allocated_clusters)
        printf("    \"allocated-clusters\": %" PRIu64 ",\n", r->allocated_clusters);
    printf("    \"filename\": ");
    json_string(stdout, file);
    printf(",\n    \"format\": ");
    json_string(stdout, fmt);
    if (r->fragmented_clusters)
        printf(",\n    \"fragmented-clusters\": %" PRIu64, r->fragmented_clusters);
    printf("\n}\n");
}

static void print_human(const struct vdisk_check_result *r, bool quiet)
{
    if (r->repaired && (r->leaks_fixed || r->corruptions_fixed)) {
        printf("The following inconsistencies were found and repaired:\n\n"
               "    %" PRId64 " leaked clusters\n    %" PRId64 " corruptions\n\n"
               "Double checking the fixed image now...\n",
               r->leaks_fixed, r->corruptions_fixed);
    }
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        if (!quiet)
            printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRId64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        if (r->leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters && !quiet) {
        double a = r->allocated_clusters;
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", r->allocated_clusters, r->total_clusters,
               a * 100.0 / (double)r->total_clusters,
               a ? (double)r->fragmented_clusters * 100.0 / a : 0.0,
               a ? (double)r->compressed_clusters * 100.0 / a : 0.0);
    }
    if (r->image_end_offset && !quiet)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"format", required_argument, NULL, 'f'},
        {"repair", required_argument, NULL, 'r'},
        {"output", required_argument, NULL, 'O'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true};
    int json = 0;
    bool quiet = false;
    unsigned flags = 0;
    int c;
    bool image_opts = false;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:r:qU", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                return 1;
            break;
        case 'h':
            help();
            return 0;
        case 'f':
            oa.format = optarg;
            break;
        case 'r':
            if (strcmp(optarg, "leaks") == 0) {
                flags = VDISK_CHECK_REPAIR_LEAKS;
            } else if (strcmp(optarg, "all") == 0) {
                flags = VDISK_CHECK_REPAIR_LEAKS | VDISK_CHECK_REPAIR_ERRORS;
            } else {
                cli_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                          optarg);
                return 1;
            }
            oa.read_only = false;
            break;
        case 'O':
            json = parse_output_format(optarg);
            if (json < 0)
                return 1;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            oa.force_share = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk check --help' for more information.\n");
            return 1;
        }
    }
    if (optind != argc - 1) {
        cli_error("Expecting one image file name");
        return 1;
    }
    if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
        return 1;
    const char *file = argv[optind];
    /* Repairs open an image marked corrupt read-write (qemu-img does too). */
    oa.repair = flags != 0;
    oa.check = true; /* (the check reads what the open would refuse) */
    vdisk_dev *dev = cli_open(file, &oa);
    if (!dev)
        return 1;
    struct vdisk_check_result res = {.struct_size = sizeof res};
    int r = vdisk_check(dev, flags, &res, report, NULL);
    if (r == -ENOTSUP) {
        cli_error("This image format does not support checks");
        vdisk_close(dev);
        return 63;
    }
    if (r < 0) {
        /* qemu-img's words, then vdisk's detail where it adds one; an
         * error of the check's own ("ERROR ...") on its line first, as
         * qemu-img reports it. */
        const char *detail = cli_lib_detail();
        if (detail && !strncmp(detail, "ERROR ", 6)) {
            cli_error("%s", detail);
            cli_error("Check failed: %s", strerror(-r));
        } else if (detail && *detail && strcmp(detail, strerror(-r)) != 0)
            cli_error("Check failed: %s: %s", strerror(-r), detail);
        else
            cli_error("Check failed: %s", strerror(-r));
        vdisk_close(dev);
        return 1;
    }
    if (json)
        print_json(file, vdisk_get_format(dev), &res);
    else
        print_human(&res, quiet);
    vdisk_close(dev);
    if (res.check_errors)
        return 1;
    if (res.corruptions)
        return 2;
    if (res.leaks)
        return 3;
    return 0;
}
