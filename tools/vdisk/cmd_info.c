/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_info.c: vdisk info, with qemu-img info's output. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk info [-f FMT] [--output=human|json] [--backing-chain] [--debug]\n"
           "                  [--image-opts] FILE\n"
           "\n"
           "Describes the image FILE: format, virtual size, space used on the host,\n"
           "backing file and format-specific fields.  The JSON output has the keys and\n"
           "values of 'qemu-img info --output=json'.\n"
           "\n"
           "  -f FMT              the image's format (probed when not given)\n"
           "  --image-opts        FILE is given as options (driver=qcow2,\n"
           "                      file.filename=F,...), as qemu-img takes them\n"
           "  --output=FORMAT     human (default) or json\n"
           "  --backing-chain     describe every image of the backing chain\n"
           "  --debug             also print the I/O engine and block size\n"
           "  -U, --force-share   open even while another process writes FILE\n"
           "                      (the data may be inconsistent; see IMAGE LOCKING in\n"
           "                      vdisk(1))\n");
}

static void pad(int n)
{
    printf("%*s", n, "");
}

static void json_field_str(int ind, const char *key, const char *v, bool *first)
{
    printf("%s\n", *first ? "" : ",");
    pad(ind);
    printf("\"%s\": ", key);
    json_string(stdout, v);
    *first = false;
}

static void json_field_num(int ind, const char *key, int64_t v, bool *first)
{
    printf("%s\n", *first ? "" : ",");
    pad(ind);
    printf("\"%s\": %" PRId64, key, v);
    *first = false;
}

static void json_field_bool(int ind, const char *key, bool v, bool *first)
{
    printf("%s\n", *first ? "" : ",");
    pad(ind);
    printf("\"%s\": %s", key, v ? "true" : "false");
    *first = false;
}

/* qemu-img info's "bitmaps" array (format-specific data), after a field. */
static void print_json_bitmaps(const struct vdisk_info *in, int ind)
{
    printf(",\n");
    pad(ind);
    printf("\"bitmaps\": [");
    for (uint32_t b = 0; b < in->nb_bitmaps; b++) {
        const struct vdisk_bitmap_info *bm = &in->bitmaps[b];
        printf("%s\n", b ? "," : "");
        pad(ind + 4);
        printf("{\n");
        pad(ind + 8);
        printf("\"flags\": [");
        const char *f;
        for (unsigned k = 0; (f = bitmap_flag(bm->flags, k)); k++) {
            printf("%s\n", k ? "," : "");
            pad(ind + 12);
            json_string(stdout, f);
        }
        printf("\n");
        pad(ind + 8);
        printf("],\n");
        pad(ind + 8);
        printf("\"name\": ");
        json_string(stdout, bm->name);
        printf(",\n");
        pad(ind + 8);
        printf("\"granularity\": %" PRIu64 "\n", bm->granularity);
        pad(ind + 4);
        printf("}");
    }
    printf("\n");
    pad(ind);
    printf("]");
}

/* Whether qemu-img prints "dirty-flag" for FORMAT: not for the formats
 * whose QEMU drivers give no image information (bochs, cloop, dmg,
 * parallels). */
static bool has_dirty_flag(const char *format)
{
    return strcmp(format, "bochs") != 0 && strcmp(format, "cloop") != 0 &&
           strcmp(format, "dmg") != 0 && strcmp(format, "parallels") != 0;
}

static void print_json(vdisk_dev *dev, const struct vdisk_info *in, int ind)
{
    bool first = true;
    pad(ind);
    printf("{");
    int i = ind + 4;
    if (in->backing_format)
        json_field_str(i, "backing-filename-format", in->backing_format, &first);
    int nsn = vdisk_snapshot_count(dev);
    if (nsn > 0) {
        /* The keys in the order qemu-img prints them. */
        printf("%s\n", first ? "" : ",");
        pad(i);
        printf("\"snapshots\": [");
        for (int k = 0; k < nsn; k++) {
            struct vdisk_snapshot sn = {.struct_size = sizeof sn};
            if (vdisk_snapshot_get(dev, (unsigned)k, &sn) < 0)
                continue;
            bool f = true;
            printf("%s\n", k ? "," : "");
            pad(i + 4);
            printf("{");
            if (sn.has_icount)
                json_field_num(i + 8, "icount", (int64_t)sn.icount, &f);
            json_field_num(i + 8, "vm-clock-nsec", (int64_t)(sn.vm_clock_nsec % 1000000000), &f);
            json_field_str(i + 8, "name", sn.name, &f);
            json_field_num(i + 8, "date-sec", sn.date_sec, &f);
            json_field_num(i + 8, "date-nsec", sn.date_nsec, &f);
            json_field_num(i + 8, "vm-clock-sec", (int64_t)(sn.vm_clock_nsec / 1000000000), &f);
            json_field_str(i + 8, "id", sn.id, &f);
            json_field_num(i + 8, "vm-state-size", (int64_t)sn.vm_state_size, &f);
            printf("\n");
            pad(i + 4);
            printf("}");
        }
        printf("\n");
        pad(i);
        printf("]");
        first = false;
    }
    json_field_num(i, "virtual-size", (int64_t)in->virtual_size, &first);
    json_field_str(i, "filename", in->filename, &first);
    if (in->cluster_size)
        json_field_num(i, "cluster-size", in->cluster_size, &first);
    json_field_str(i, "format", in->format, &first);
    if (in->actual_size >= 0)
        json_field_num(i, "actual-size", in->actual_size, &first);
    if (in->compat) {
        printf(",\n");
        pad(i);
        printf("\"format-specific\": {\n");
        pad(i + 4);
        printf("\"type\": ");
        json_string(stdout, in->format);
        printf(",\n");
        pad(i + 4);
        printf("\"data\": {");
        bool f2 = true;
        int j = i + 8;
        json_field_str(j, "compat", in->compat, &f2);
        json_field_str(j, "compression-type", in->compression_type, &f2);
        if (strcmp(in->compat, "0.10") != 0)
            json_field_bool(j, "lazy-refcounts", in->lazy_refcounts, &f2);
        if (strcmp(in->compat, "0.10") != 0 && in->nb_bitmaps)
            print_json_bitmaps(in, j);
        json_field_num(j, "refcount-bits", in->refcount_bits, &f2);
        if (in->data_file)
            json_field_str(j, "data-file", in->data_file, &f2);
        if (in->encrypt) {
            printf(",\n");
            pad(j);
            printf("\"encrypt\": ");
            print_encrypt_json(in->encrypt, j, true);
        }
        if (in->has_data_file) /* (after encrypt, as qemu-img orders them) */
            json_field_bool(j, "data-file-raw", in->data_file_raw, &f2);
        if (strcmp(in->compat, "0.10") != 0) {
            json_field_bool(j, "corrupt", in->corrupt, &f2);
            json_field_bool(j, "extended-l2", in->extended_l2, &f2);
        }
        printf("\n");
        pad(i + 4);
        printf("}\n");
        pad(i);
        printf("}");
    }
    if (!in->compat && in->encrypt) {
        printf(",\n");
        pad(i);
        printf("\"format-specific\": {\n");
        pad(i + 4);
        printf("\"type\": ");
        json_string(stdout, in->format);
        printf(",\n");
        pad(i + 4);
        printf("\"data\": ");
        print_encrypt_json(in->encrypt, i + 4, false);
        printf("\n");
        pad(i);
        printf("}");
    }
    if (in->create_type) {
        printf(",\n");
        pad(i);
        printf("\"format-specific\": {\n");
        pad(i + 4);
        printf("\"type\": \"vmdk\",\n");
        pad(i + 4);
        printf("\"data\": {");
        bool f2 = true;
        int j = i + 8;
        json_field_num(j, "cid", in->cid, &f2);
        json_field_num(j, "parent-cid", in->parent_cid, &f2);
        json_field_str(j, "create-type", in->create_type, &f2);
        printf(",\n");
        pad(j);
        printf("\"extents\": [");
        for (uint32_t k = 0; k < in->nb_extents; k++) {
            const struct vdisk_extent_info *e = &in->extents[k];
            bool f3 = true;
            printf("%s\n", k ? "," : "");
            pad(j + 4);
            printf("{");
            if (e->compressed)
                json_field_bool(j + 8, "compressed", true, &f3);
            json_field_num(j + 8, "virtual-size", (int64_t)e->virtual_size, &f3);
            json_field_str(j + 8, "filename", e->filename, &f3);
            if (e->cluster_size)
                json_field_num(j + 8, "cluster-size", e->cluster_size, &f3);
            json_field_str(j + 8, "format", e->format, &f3);
            printf("\n");
            pad(j + 4);
            printf("}");
        }
        printf("\n");
        pad(j);
        printf("]\n");
        pad(i + 4);
        printf("}\n");
        pad(i);
        printf("}");
    }
    /* (qemu-img's order: "encrypted" between the two backing names) */
    if (in->backing_filename)
        json_field_str(i, "full-backing-filename", in->full_backing_filename, &first);
    if (in->encrypt)
        json_field_bool(i, "encrypted", true, &first);
    if (in->backing_filename)
        json_field_str(i, "backing-filename", in->backing_filename, &first);
    if (has_dirty_flag(in->format))
        json_field_bool(i, "dirty-flag", in->dirty, &first);
    printf("\n");
    pad(ind);
    printf("}");
}

static void print_human(vdisk_dev *dev, const struct vdisk_info *in)
{
    char vs[64], ds[64];
    size_to_str(in->virtual_size, vs, sizeof vs);
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n", in->filename,
           in->format, vs, in->virtual_size);
    if (in->actual_size >= 0) {
        size_to_str((uint64_t)in->actual_size, ds, sizeof ds);
        printf("disk size: %s\n", ds);
    } else {
        printf("disk size: unavailable\n");
    }
    if (in->encrypt)
        printf("encrypted: yes\n");
    if (in->cluster_size)
        printf("cluster_size: %" PRIu32 "\n", in->cluster_size);
    if (in->backing_filename) {
        printf("backing file: %s", in->backing_filename);
        if (strcmp(in->backing_filename, in->full_backing_filename) != 0)
            printf(" (actual path: %s)", in->full_backing_filename);
        printf("\n");
        if (in->backing_format)
            printf("backing file format: %s\n", in->backing_format);
    }
    if (in->dirty)
        printf("cleanly shut down: no\n");
    if (vdisk_snapshot_count(dev) > 0)
        print_snapshot_table(dev);
    char isovol[33];
    if (vdisk_iso_probe(dev, isovol, sizeof isovol) == 1)
        printf("iso9660: yes (volume id '%s')\n", isovol);
    print_format_specific(in);
}

int cmd_info(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'O'},
        {"debug", no_argument, NULL, 'd'},
        {"backing-chain", no_argument, NULL, 'B'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true, .no_key = true};
    int json = 0;
    bool debug = false, chain = false;
    int c;
    bool image_opts = false;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:U", longopts, NULL)) != -1) {
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
        case 'O':
            json = parse_output_format(optarg);
            if (json < 0)
                return 1;
            break;
        case 'd':
            debug = true;
            break;
        case 'B':
            chain = true;
            break;
        case 'U':
            oa.force_share = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk info --help' for more information.\n");
            return 1;
        }
    }
    if (optind != argc - 1) {
        cli_error(optind >= argc ? "Expecting one image file name"
                                 : "Unexpected argument: %s", argv[argc - 1]);
        return 1;
    }
    if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
        return 1;
    /* Without --backing-chain the backing file is not opened, as qemu-img
     * info does not open it: a missing one or one of an unknown format
     * still shows. */
    static const char *const no_backing[] = {"backing.null", "on", NULL};
    if (!chain)
        oa.options = no_backing;
    vdisk_dev *dev = cli_open(argv[optind], &oa);
    if (!dev)
        return 1;
    if (json && chain)
        printf("[\n");
    int n = 0;
    for (vdisk_dev *d = dev; d; d = chain ? vdisk_get_backing(d) : NULL, n++) {
        struct vdisk_info in = {.struct_size = sizeof in};
        if (vdisk_get_info(d, &in) < 0) {
            cli_lib_error();
            vdisk_close(dev);
            return 1;
        }
        /* The name as given, unless the driver shows another (an RBD
         * image's json:{...}, as qemu-img does) or it was a json: name
         * or a file: name (qemu-img shows the plain name they come to). */
        if (d == dev && !strcmp(in.filename, vdisk_get_filename(d)) &&
            strncmp(argv[optind], "json:", 5) != 0 && strncmp(argv[optind], "file:", 5) != 0)
            in.filename = argv[optind];
        if (json) {
            if (n)
                printf(",\n");
            print_json(d, &in, chain ? 4 : 0);
            if (!chain)
                printf("\n");
        } else {
            if (n)
                printf("\n");
            print_human(d, &in);
            if (debug)
                printf("engine: %s\nlogical block size: %u\n", vdisk_get_engine(d),
                       vdisk_get_block_size(d));
        }
    }
    if (json && chain)
        printf("\n]\n");
    vdisk_close(dev);
    return 0;
}
