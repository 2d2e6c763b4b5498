/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_dd.c: vdisk dd, as qemu-img dd.
 *
 * Copies the input image, from skip*bs bytes on, to a new output image of
 * -O's format, as qemu-img 7.2 does: the output is made as long as what is
 * copied (the input's size, less skip*bs; count*bs when that is less,
 * counted from the start of the input as qemu-img counts it), and every
 * byte is written, zeroes too (the output is fully allocated).  The
 * operands, messages and exit statuses are qemu-img's; a skip past the
 * input's end makes an empty output with a message and exit status 0.
 *
 * One difference: an output that is the input (or a file of its backing
 * chain) is refused, where qemu-img truncates it before reading it.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* Bytes read and written at once when bs is smaller (a multiple of bs). */
#define DD_CHUNK ((uint64_t)1 << 20)

static void help(void)
{
    printf("usage: vdisk dd [--image-opts] [-U] [-f FMT] [-O OUTPUT_FMT] [bs=BLOCK_SIZE]\n"
           "                [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT\n"
           "\n"
           "Copies INPUT to a new image OUTPUT block by block, as qemu-img dd does.\n"
           "\n"
           "  -f FMT          INPUT's format (probed when not given)\n"
           "  -O OUTPUT_FMT   OUTPUT's format (default raw)\n"
           "  -U, --force-share  read INPUT even while another process writes it\n"
           "  --image-opts    INPUT is given as options (driver=qcow2,file.filename=F)\n"
           "  bs=BLOCK_SIZE   the block size (default 512; 1 to 2147483647, with the\n"
           "                  suffixes k, M, G)\n"
           "  count=BLOCKS    copy no more than BLOCKS blocks (counted, as in qemu-img,\n"
           "                  from the start of INPUT, the skipped blocks too)\n"
           "  skip=BLOCKS     skip BLOCKS blocks at the start of INPUT\n"
           "  if=INPUT        the image to read\n"
           "  of=OUTPUT       the image to create (an existing file is overwritten;\n"
           "                  never INPUT or a file of its backing chain)\n"
           "\n"
           "Every byte is written, zeroes too: OUTPUT is fully allocated.\n");
}

/* An option error in qemu-img's words (its error_exit()). */
static int usage_error(const char *what, const char *option)
{
    cli_error("%s '%s'", what, option);
    cli_print_option_hint();
    fprintf(stderr, "Try 'vdisk --help' for more information\n");
    return 1;
}

/* OUTPUT names the input or a file of its backing chain. */
static bool overwrites_input(vdisk_dev *in, const char *output)
{
    struct stat out_st, st;
    if (stat(output, &out_st) != 0)
        return false;
    for (vdisk_dev *b = in; b; b = vdisk_get_backing(b))
        if (stat(vdisk_get_filename(b), &st) == 0 && st.st_dev == out_st.st_dev &&
            st.st_ino == out_st.st_ino)
            return true;
    return false;
}

/* Copies [POS, END) of IN to OUT from 0, reading PIECE bytes (a multiple
 * of BS) at once; after a failed read, the piece again one block at a
 * time, so that the blocks before the failing one are written, as
 * qemu-img's block by block copy writes them. */
static int copy(vdisk_dev *in, vdisk_dev *out, uint64_t pos, uint64_t end, uint64_t bs,
                uint64_t piece, uint8_t *buf)
{
    uint64_t out_pos = 0;
    while (pos < end) {
        uint64_t n = end - pos < piece ? end - pos : piece;
        int r = vdisk_pread(in, buf, n, pos);
        if (r < 0 && n > bs) {
            piece = bs; /* block by block from here */
            continue;
        }
        if (r < 0) {
            cli_error("error while reading from input image file: %s", strerror(-r));
            return -1;
        }
        r = vdisk_pwrite(out, buf, n, out_pos);
        if (r < 0) {
            cli_error("error while writing to output image file: %s", strerror(-r));
            return -1;
        }
        pos += n;
        out_pos += n;
    }
    return 0;
}

int cmd_dd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    const char *fmt = NULL, *out_fmt = "raw";
    bool image_opts = false, force_share = false;
    int ch;
    optind = 0;
    /* The leading ':' as in qemu-img: getopt says nothing, the messages
     * are qemu-img's. */
    while ((ch = getopt_long(argc, argv, ":hf:O:U", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            help();
            return 0;
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'U': force_share = true; break;
        case CLI_OPT_IMAGE_OPTS: image_opts = true; break;
        case ':': return usage_error("missing argument for option", argv[optind - 1]);
        default: return usage_error("unrecognized option", argv[optind - 1]);
        }
    }
    /* The operands, in order; the last of each wins. */
    int64_t bs = 512, count = 0, skip = 0;
    bool have_count = false, have_skip = false;
    const char *in_name = NULL, *out_name = NULL;
    for (int i = optind; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        if (!eq) {
            cli_error("unrecognized operand %s", arg);
            return 1;
        }
        size_t klen = (size_t)(eq - arg);
        const char *v = eq + 1;
        if (klen == 2 && !strncmp(arg, "bs", 2)) {
            if ((bs = cli_cvtnum("bs", v, 1, INT_MAX)) < 0)
                return 1;
        } else if (klen == 5 && !strncmp(arg, "count", 5)) {
            if ((count = cli_cvtnum("count", v, 0, INT64_MAX)) < 0)
                return 1;
            have_count = true;
        } else if (klen == 4 && !strncmp(arg, "skip", 4)) {
            if ((skip = cli_cvtnum("skip", v, 0, INT64_MAX)) < 0)
                return 1;
            have_skip = true;
        } else if (klen == 2 && !strncmp(arg, "if", 2)) {
            in_name = v;
        } else if (klen == 2 && !strncmp(arg, "of", 2)) {
            out_name = v;
        } else {
            cli_error("unrecognized operand %.*s", (int)klen, arg);
            return 1;
        }
    }
    if (!in_name || !out_name) {
        cli_error("Must specify both input and output files");
        return 1;
    }
    const char *in_open = in_name;
    if (image_opts && !(in_open = cli_image_opts(in_name, fmt)))
        return 1;
    struct open_args ia = {.format = fmt, .read_only = true, .force_share = force_share};
    vdisk_dev *in = cli_open(in_open, &ia);
    if (!in)
        return 1;
    int ret = 1;
    vdisk_dev *out = NULL;
    uint8_t *buf = NULL;
    int r = vdisk_create_option(out_fmt, 0, NULL, NULL, NULL);
    if (r == -ENOENT) {
        cli_error("Unknown file format"); /* (qemu-img names none here) */
        goto done;
    }
    if (r < 0) {
        cli_error("%s", cli_lib_detail());
        goto done;
    }
    /* What is copied: [in_pos, size), as qemu-img computes it. */
    int64_t size = (int64_t)vdisk_get_size(in);
    if (have_count && count <= INT64_MAX / bs && count * bs < size)
        size = count * bs;
    bool beyond = have_skip && (skip > INT64_MAX / bs || size < bs * skip);
    int64_t in_pos = beyond ? size : skip * bs;
    if (overwrites_input(in, out_name)) {
        cli_error("%s: the output is the input %s (or in its backing chain); dd would "
                  "overwrite it", out_name, in_name);
        goto done;
    }
    if (vdisk_create(out_name, out_fmt, (uint64_t)(size - in_pos), NULL) < 0) {
        cli_error("%s: error while creating output image: %s", out_name, cli_lib_detail());
        goto done;
    }
    struct open_args oa = {.format = out_fmt};
    if (!(out = cli_open(out_name, &oa)))
        goto done;
    if (beyond)
        cli_error("%s: cannot skip to specified offset", in_name);
    uint64_t ubs = (uint64_t)bs, piece = ubs >= DD_CHUNK ? ubs : DD_CHUNK / ubs * ubs;
    uint64_t len = (uint64_t)(size - in_pos);
    if (len) {
        buf = malloc(len < piece ? len : piece);
        if (!buf) {
            cli_error("Out of memory");
            goto done;
        }
        if (copy(in, out, (uint64_t)in_pos, (uint64_t)size, ubs, piece, buf) < 0)
            goto done;
    }
    if (vdisk_flush(out) < 0) {
        cli_lib_error();
        goto done;
    }
    ret = 0;
done:
    free(buf);
    if (out)
        vdisk_close(out);
    vdisk_close(in);
    return ret;
}
