/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_measure.c: vdisk measure, as qemu-img measure: the size a
 * new image needs, for a given virtual size or to hold a source image's
 * data.  The qcow2 figures follow QEMU's accounting: one header cluster,
 * L2 and L1 tables for the whole disk, and the refcount structure that
 * counts every cluster, itself included (found as a fixed point).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static uint64_t div_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a;
}

/* Clusters of refcount blocks and table to count CLUSTERS clusters and
 * themselves. */
static uint64_t refcount_bytes(uint64_t clusters, uint64_t cs, unsigned refcount_bits)
{
    uint64_t per_block = cs * 8 / refcount_bits, per_table = cs / 8;
    uint64_t blocks = 0, table = 0, n = 0, last;
    do {
        last = n;
        blocks = div_up(clusters + table + blocks, per_block);
        table = div_up(blocks, per_table);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

/* The size of a qcow2 image of SIZE bytes with every cluster allocated. */
static uint64_t qcow2_full_size(uint64_t size, uint64_t cs, unsigned refcount_bits,
                                bool extl2)
{
    uint64_t total = round_up(size, cs), entry = extl2 ? 16 : 8;
    uint64_t meta = cs;                                /* the header */
    uint64_t l2e = round_up(total / cs, cs / entry);   /* L2 tables */
    meta += l2e * entry;
    uint64_t l1e = round_up(l2e * entry / cs, cs / 8); /* the L1 table */
    meta += l1e * 8;
    meta += refcount_bytes((meta + total) / cs, cs, refcount_bits);
    return meta + total;
}

static void help(void)
{
    printf("usage: vdisk measure [--output=human|json] [-O FMT] [-o OPTIONS]\n"
           "                     (--size SIZE | [-f FMT] [-l snapshot.name=NAME] FILE)\n"
           "\n"
           "Prints the size an image of format FMT (raw or qcow2; default raw) needs:\n"
           "'required' to hold the data of FILE (or an empty disk of SIZE), and\n"
           "'fully allocated' with every cluster of it allocated.  The qcow2 options\n"
           "cluster_size, refcount_bits and extended_l2 are taken into account.\n"
           "-U (--force-share) opens FILE even while another process writes it (see\n"
           "IMAGE LOCKING in vdisk(1)).\n");
}

int cmd_measure(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'J'},
        {"size", required_argument, NULL, 'z'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.read_only = true};
    const char *out_fmt = "raw", *snap = NULL;
    int json = 0;
    uint64_t size = 0;
    bool have_size = false;
    vdisk_options *o = NULL;
    vdisk_options_new(&o);
    int c, ret = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "+hf:O:o:l:sU", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f': oa.format = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o':
            if (vdisk_options_parse(o, optarg) < 0) {
                cli_lib_error();
                goto out;
            }
            break;
        case 'l':
            snap = strncmp(optarg, "snapshot.name=", 14) == 0 ? optarg + 14 : optarg;
            break;
        case 'J':
            if ((json = parse_output_format(optarg)) < 0)
                goto out;
            break;
        case 'z':
            if (vdisk_parse_size(optarg, 1, &size) < 0) {
                cli_error("Invalid image size specified. You may use k, M, G, T, P or E "
                          "suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes "
                          "and exabytes.");
                goto out;
            }
            have_size = true;
            break;
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
    if (have_size == (optind < argc) || argc - optind > 1) {
        cli_error(have_size ? "--size N cannot be used together with a filename."
                            : "Either --size N or one filename must be specified.");
        goto out;
    }
    if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "qcow2")) {
        cli_error("Format '%s' does not support size measurement", out_fmt);
        goto out;
    }
    uint64_t cs = 65536;
    unsigned rbits = 16;
    bool extl2 = false;
    const char *v;
    if ((v = vdisk_options_get(o, "cluster_size")) &&
        (vdisk_parse_size(v, 1, &cs) < 0 || cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))) {
        cli_error("Invalid cluster size '%s'", v);
        goto out;
    }
    if ((v = vdisk_options_get(o, "refcount_bits")))
        rbits = (unsigned)strtoul(v, NULL, 10);
    if (rbits < 1 || rbits > 64 || (rbits & (rbits - 1))) {
        cli_error("Refcount width must be a power of two and may not exceed 64 bits");
        goto out;
    }
    if ((v = vdisk_options_get(o, "extended_l2")))
        extl2 = !strcmp(v, "on") || !strcmp(v, "true");
    /* The data the source holds, counted in whole clusters of the output. */
    uint64_t data = 0;
    bool bitmaps = false;
    if (!have_size) {
        vdisk_dev *dev = NULL;
        vdisk_options *so = NULL;
        vdisk_options_new(&so);
        vdisk_options_set(so, "read-only", "on");
        if (oa.format)
            vdisk_options_set(so, "format", oa.format);
        if (oa.force_share)
            vdisk_options_set(so, "force-share", "on");
        if (snap)
            vdisk_options_set(so, "snapshot.name", snap);
        int r = vdisk_open(&dev, argv[optind], so);
        vdisk_options_free(so);
        if (r < 0) {
            cli_lib_error();
            goto out;
        }
        size = vdisk_get_size(dev);
        bitmaps = strcmp(vdisk_get_format(dev), "qcow2") == 0;
        uint64_t unit = strcmp(out_fmt, "qcow2") == 0 ? cs : 512;
        for (uint64_t off = 0; off < size;) {
            struct vdisk_extent e;
            if (vdisk_block_status(dev, off, size - off, &e) < 0) {
                cli_lib_error();
                vdisk_close(dev);
                goto out;
            }
            uint64_t n = e.length;
            if (!(e.flags & VDISK_EXT_ZERO) && (e.flags & VDISK_EXT_DATA)) {
                /* To the end of the output's cluster. */
                n = round_up(off + n, unit) - off;
                if (n > size - off)
                    n = size - off;
                data += off % unit + n;
            }
            off += n;
        }
        vdisk_close(dev);
    }
    uint64_t full, required;
    if (strcmp(out_fmt, "qcow2") == 0) {
        full = qcow2_full_size(size, cs, rbits, extl2);
        required = full - round_up(size, cs) + data;
    } else {
        full = round_up(size, 512);
        required = have_size ? full : round_up(size, 512);
        bitmaps = false;
    }
    if (json) {
        printf("{\n");
        if (bitmaps)
            printf("    \"bitmaps\": 0,\n");
        printf("    \"required\": %" PRIu64 ",\n    \"fully-allocated\": %" PRIu64 "\n}\n",
               required, full);
    } else {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", required,
               full);
        if (bitmaps)
            printf("bitmaps size: 0\n");
    }
    ret = 0;
out:
    vdisk_options_free(o);
    return ret;
}
