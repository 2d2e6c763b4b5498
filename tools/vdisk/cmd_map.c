/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cmd_map.c: vdisk map, with qemu-img map's output. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk map [-f FMT] [--output=human|json] [--start-offset=OFF]\n"
           "                 [--max-length=LEN] [--image-opts] FILE\n"
           "\n"
           "Prints where the image's data lies, as 'qemu-img map' does: in JSON every\n"
           "extent with start, length, depth, present, zero, data and offset; in the\n"
           "human format the extents that hold data and where they are stored.\n"
           "-U (--force-share) opens FILE even while another process writes it (see\n"
           "IMAGE LOCKING in vdisk(1)).\n");
}

struct map_entry {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    const char *file;
};

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->depth != b->depth || a->present != b->present || a->zero != b->zero ||
        a->data != b->data || a->has_offset != b->has_offset)
        return false;
    if (a->has_offset && a->offset + a->length != b->offset)
        return false;
    if ((a->file == NULL) != (b->file == NULL) || (a->file && strcmp(a->file, b->file)))
        return false;
    return true;
}

/* Appends S to P. */
static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* Appends V in decimal to P. */
static char *put_u64(char *p, uint64_t v)
{
    char t[20];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = t[--n];
    return p;
}

static void print_entry(const struct map_entry *e, int json, bool first)
{
    if (json) {
        /* An extent per line, formatted by hand: an image of small
         * clusters has hundreds of thousands of them. */
        char line[256], *p = line;
        p = put_str(p, first ? "[{ \"start\": " : ",\n{ \"start\": ");
        p = put_u64(p, e->start);
        p = put_str(p, ", \"length\": ");
        p = put_u64(p, e->length);
        p = put_str(p, ", \"depth\": ");
        if (e->depth < 0) {
            *p++ = '-';
            p = put_u64(p, -(uint64_t)e->depth);
        } else {
            p = put_u64(p, (uint64_t)e->depth);
        }
        p = put_str(p, e->present ? ", \"present\": true" : ", \"present\": false");
        p = put_str(p, e->zero ? ", \"zero\": true" : ", \"zero\": false");
        p = put_str(p, e->data ? ", \"data\": true" : ", \"data\": false");
        if (e->has_offset) {
            p = put_str(p, ", \"offset\": ");
            p = put_u64(p, e->offset);
        }
        *p++ = '}';
        fwrite(line, 1, (size_t)(p - line), stdout);
    } else if (e->data && !e->zero && e->has_offset) {
        printf("%#-15" PRIx64 " %#-15" PRIx64 " %#-15" PRIx64 " %s\n", e->start, e->length,
               e->offset, e->file ? e->file : "");
    }
}

int cmd_map(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'O'},
        {"start-offset", required_argument, NULL, 's'},
        {"max-length", required_argument, NULL, 'l'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true};
    int json = 0;
    uint64_t start = 0, max_len = UINT64_MAX;
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
        case 's':
            if (vdisk_parse_size(optarg, 1, &start) < 0) {
                cli_error("Invalid start offset specified! You may use k, M, G, T, P or E "
                          "suffixes.");
                return 1;
            }
            break;
        case 'l':
            if (vdisk_parse_size(optarg, 1, &max_len) < 0) {
                cli_error("Invalid length specified! You may use k, M, G, T, P or E "
                          "suffixes.");
                return 1;
            }
            break;
        case 'U':
            oa.force_share = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk map --help' for more information.\n");
            return 1;
        }
    }
    if (optind != argc - 1) {
        cli_error("Expecting one image file name");
        return 1;
    }
    if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
        return 1;
    vdisk_dev *dev = cli_open(argv[optind], &oa);
    if (!dev)
        return 1;
    uint64_t size = vdisk_get_size(dev);
    uint64_t end = start < size ? (max_len < size - start ? start + max_len : size) : start;
    if (!json)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    struct map_entry cur = {0};
    bool have = false, first = true;
    int ret = 0;
    for (uint64_t off = start; off < end;) {
        struct vdisk_extent ext;
        if (vdisk_block_status(dev, off, end - off, &ext) < 0) {
            cli_lib_error();
            ret = 1;
            break;
        }
        struct map_entry e = {
            .start = off,
            .length = ext.length,
            .depth = ext.depth,
            .present = (ext.flags & VDISK_EXT_ALLOCATED) != 0,
            .zero = (ext.flags & VDISK_EXT_ZERO) != 0,
            .data = (ext.flags & VDISK_EXT_DATA) != 0,
            .has_offset = (ext.flags & VDISK_EXT_OFFSET) != 0,
            .offset = ext.host_offset,
            .file = ext.host_file,
        };
        if (!json && e.data && !e.has_offset) {
            fflush(stdout);
            cli_error("File contains external, encrypted or compressed clusters.");
            ret = 1;
            break;
        }
        if (have && mergeable(&cur, &e)) {
            cur.length += e.length;
        } else {
            if (have) {
                print_entry(&cur, json, first);
                first = false;
            }
            cur = e;
            have = true;
        }
        off += ext.length;
    }
    if (have && ret == 0)
        print_entry(&cur, json, first);
    if (json && ret == 0 && !have) {
        /* Nothing to map (an empty image): qemu-img shows its first,
         * empty, extent. */
        struct map_entry none = {.start = start};
        print_entry(&none, json, true);
        have = true;
    }
    if (json && ret == 0)
        printf(have ? "]\n" : "[]\n");
    vdisk_close(dev);
    return ret;
}
