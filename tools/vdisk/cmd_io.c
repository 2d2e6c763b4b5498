/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_io.c: vdisk io, a qemu-io compatible subset for scripts
 * and tests: read, write, discard, flush, map, length.
 *
 * Commands take qemu-io's syntax and print what qemu-io prints on standard
 * output; the process exits 1 when any command failed, else 0.  When a
 * request fails, the library's detailed message goes to standard error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_REQUEST 2147483136ULL /* as qemu-io: INT_MAX rounded down to 512 */
/* The most a command holds in memory at once: longer reads and writes go
 * to the library in pieces of this size (a multiple of 16 for -v's dump,
 * and of every cluster size for write -c). */
#define IO_CHUNK (16ULL << 20)

/* write -s reads a host file; fuzz/io_cmds.c turns that off. */
static bool host_files = true;

struct io_cmd {
    const char *name;
    int argmin, argmax; /* -1: no limit */
    const char *args;
    const char *oneline;
    int (*fn)(vdisk_dev *dev, int argc, char **argv);
};

static void usage_of(const struct io_cmd *c)
{
    printf("%s %s -- %s\n", c->name, c->args, c->oneline);
}

static const struct io_cmd *find_cmd(const char *name);

/* ---- Helpers -------------------------------------------------------------- */

static int parse_num(const char *s, uint64_t *out)
{
    int r = vdisk_parse_size(s, 1, out);
    if (r == -ERANGE) {
        printf("Parsing error: argument too large -- %s\n", s);
        return -1;
    }
    if (r < 0) {
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
               s);
        return -1;
    }
    return 0;
}

static int parse_pattern(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || end == s || v < 0 || v > 255) {
        printf("%s is not a valid pattern byte\n", s);
        return -1;
    }
    return (int)v;
}

static double elapsed(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void time_str(double t, char *buf, size_t len, bool fixed)
{
    unsigned secs = (unsigned)t;
    unsigned hundredths = (unsigned)((t - secs) * 100);
    if (fixed)
        snprintf(buf, len, "%u:%02u:%02u.%02u", secs / 3600, secs / 60 % 60, secs % 60,
                 hundredths);
    else if (secs >= 3600)
        snprintf(buf, len, "%u:%02u:%02u.%02u", secs / 3600, secs / 60 % 60, secs % 60,
                 hundredths);
    else if (secs >= 60)
        snprintf(buf, len, "%02u:%02u.%02u", secs / 60, secs % 60, hundredths);
    else
        snprintf(buf, len, "%02u.%02u sec", secs, hundredths);
}

static void report(const char *verb, double t, uint64_t off, uint64_t count, bool csv)
{
    char ts[64], s1[64], s2[64];
    double rate = t > 0 ? (double)count / t : 0;
    double ops = t > 0 ? 1.0 / t : 0;
    time_str(t, ts, sizeof ts, csv);
    if (csv) {
        printf("%" PRIu64 ",1,%s,%.3f,%.3f\n", count, ts, rate, ops);
        return;
    }
    cvtstr((double)count, s1, sizeof s1);
    cvtstr(rate, s2, sizeof s2);
    printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", verb, count, count, off);
    printf("%s, 1 ops; %s (%s/sec and %.4f ops/sec)\n", s1, ts, s2, ops);
}

static void hexdump(const uint8_t *buf, uint64_t off, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 16) {
        uint64_t n = len - i < 16 ? len - i : 16;
        printf("%08" PRIx64 ":  ", off + i);
        for (uint64_t j = 0; j < n; j++)
            printf("%02x ", buf[i + j]);
        printf(" ");
        for (uint64_t j = 0; j < n; j++) {
            uint8_t ch = buf[i + j];
            putchar(ch >= 0x20 && ch < 0x7f ? ch : '.');
        }
        printf("\n");
    }
}

static void *alloc_buf(uint64_t len, int fill)
{
    void *p = cli_page_alloc(len);
    if (!p)
        return NULL;
    memset(p, fill, len);
    return p;
}

/* qemu-io's write -s: the data is FILE's bytes, repeated to the length
 * of the write.  Fills BUF (N bytes) with the next ones from F, starting
 * over at its end; *TOTAL counts what was read.  Prints the error. */
static int fill_from_file(FILE *f, const char *file, uint8_t *buf, size_t n, uint64_t *total)
{
    size_t got = 0;
    while (got < n) {
        size_t r = fread(buf + got, 1, n - got, f);
        if (r == 0) {
            if (ferror(f)) {
                printf("%s: read error\n", file);
                return -1;
            }
            if (*total == 0) {
                printf("%s: file is empty\n", file);
                return -1;
            }
            rewind(f);
            continue;
        }
        got += r;
        *total += r;
    }
    return 0;
}

static int check_len(uint64_t len, const char *given)
{
    if (len > MAX_REQUEST) {
        printf("length cannot exceed %llu, given %s\n", MAX_REQUEST, given);
        return -1;
    }
    return 0;
}

/*
 * Whether LEN bytes at OFF lie inside DEV, checked before any buffer is
 * allocated; when not, prints what the library would print for the
 * request (FN's message on stderr, "WHAT failed" on stdout, as qemu-io).
 */
static bool in_device(vdisk_dev *dev, const char *fn, const char *what, uint64_t off,
                      uint64_t len)
{
    uint64_t size = vdisk_get_size(dev);
    if (off <= size && len <= size - off)
        return true;
    fprintf(stderr, "%s: %s: %s of %" PRIu64 " bytes at offset %" PRIu64
            " is beyond the end of the device (%" PRIu64 " bytes)\n", fn,
            vdisk_get_filename(dev), what, len, off, size);
    printf("%s failed: %s\n", what, strerror(EIO));
    return false;
}

static void io_failed(const char *what)
{
    printf("%s failed: %s\n", what, strerror(vdisk_get_errno()));
    fprintf(stderr, "%s\n", vdisk_get_error());
}

/* ---- Commands ------------------------------------------------------------- */

static int do_read(vdisk_dev *dev, int argc, char **argv)
{
    bool quiet = false, csv = false, verbose = false, pflag = false;
    int pattern = 0;
    uint64_t poff = 0, plen = 0;
    bool has_poff = false, has_plen = false;
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+abCqvP:s:l:")) != -1) {
        switch (c) {
        case 'a':
        case 'b':
            break;
        case 'C':
            csv = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'P':
            pflag = true;
            if ((pattern = parse_pattern(optarg)) < 0)
                return -1;
            break;
        case 's':
            if (parse_num(optarg, &poff) < 0)
                return -1;
            has_poff = true;
            break;
        case 'l':
            if (parse_num(optarg, &plen) < 0)
                return -1;
            has_plen = true;
            break;
        default:
            usage_of(find_cmd("read"));
            return -1;
        }
    }
    if (optind != argc - 2 || ((has_poff || has_plen) && !pflag)) {
        usage_of(find_cmd("read"));
        return -1;
    }
    uint64_t off, len;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &len) < 0)
        return -1;
    if (check_len(len, argv[optind + 1]) < 0)
        return -1;
    if (!has_plen)
        plen = len - (poff < len ? poff : len);
    if (poff > len || plen > len - poff) {
        printf("pattern verification range exceeds end of read data\n");
        return -1;
    }
    if (!in_device(dev, "vdisk_pread", "read", off, len))
        return -1;
    uint64_t chunk = len < IO_CHUNK ? len : IO_CHUNK;
    uint8_t *buf = alloc_buf(chunk, 0xab);
    if (!buf) {
        printf("out of memory\n");
        return -1;
    }
    double t = 0;
    int ret = 0;
    uint64_t done = 0;
    do {
        uint64_t n = len - done < chunk ? len - done : chunk;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = vdisk_pread(dev, buf, n, off + done);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t += elapsed(&t0, &t1);
        if (r < 0) {
            io_failed("read");
            free(buf);
            return -1;
        }
        /* The part of [poff, poff + plen) in this piece. */
        uint64_t from = poff > done ? poff : done;
        uint64_t to = poff + plen < done + n ? poff + plen : done + n;
        for (uint64_t i = from; pflag && ret == 0 && i < to; i++) {
            if (buf[i - done] != pattern) {
                printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
                       off + poff, plen);
                ret = -1;
            }
        }
        if (!quiet && verbose)
            hexdump(buf, off + done, n);
        done += n;
    } while (done < len);
    if (!quiet)
        report("read", t, off, len, csv);
    free(buf);
    return ret;
}

static int do_write(vdisk_dev *dev, int argc, char **argv)
{
    bool quiet = false, csv = false, zero = false, unmap = false, fua = false, pflag = false;
    bool compressed = false;
    int pattern = 0xcd;
    const char *src = NULL;
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+bcCfnquzP:s:")) != -1) {
        switch (c) {
        case 'b':
        case 'n':
            break;
        case 'c':
            compressed = true;
            break;
        case 'C':
            csv = true;
            break;
        case 'f':
            fua = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'u':
            unmap = true;
            break;
        case 'z':
            zero = true;
            break;
        case 'P':
            pflag = true;
            if ((pattern = parse_pattern(optarg)) < 0)
                return -1;
            break;
        case 's':
            src = optarg;
            break;
        default:
            usage_of(find_cmd("write"));
            return -1;
        }
    }
    if (optind != argc - 2) {
        usage_of(find_cmd("write"));
        return -1;
    }
    if (zero && pflag) {
        printf("-z and -P cannot be specified at the same time\n");
        return -1;
    }
    if (src && (zero || pflag)) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -1;
    }
    if (unmap && !zero) {
        printf("-u requires -z to be specified\n");
        return -1;
    }
    uint64_t off, len;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &len) < 0)
        return -1;
    if (check_len(len, argv[optind + 1]) < 0)
        return -1;
    struct timespec t0, t1;
    int r;
    if (zero) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = vdisk_write_zeroes(dev, off, len, unmap ? VDISK_ZEROES_MAY_UNMAP : 0);
        if (r == 0 && fua)
            r = vdisk_flush(dev);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r < 0) {
            io_failed("write");
            return -1;
        }
        if (!quiet)
            report("wrote", elapsed(&t0, &t1), off, len, csv);
        return 0;
    }
    FILE *f = NULL;
    if (src) {
        if (!host_files) {
            printf("%s: %s\n", src, strerror(EPERM));
            return -1;
        }
        if (!(f = fopen(src, "rb"))) {
            printf("%s: %s\n", src, strerror(errno));
            return -1;
        }
    }
    if (!in_device(dev, compressed ? "vdisk_pwrite_compressed" : "vdisk_pwrite", "write", off,
                   len)) {
        if (f)
            fclose(f);
        return -1;
    }
    /* write -c: one call per cluster, as qemu-io's write -c does it. */
    uint64_t cs = 0;
    if (compressed) {
        struct vdisk_info in = {.struct_size = sizeof in};
        if (vdisk_get_info(dev, &in) == 0)
            cs = in.cluster_size;
    }
    uint64_t chunk = len < IO_CHUNK ? len : IO_CHUNK;
    if (cs > chunk)
        chunk = cs < len ? cs : len;
    uint8_t *buf = alloc_buf(chunk, pattern);
    if (!buf) {
        printf("out of memory\n");
        if (f)
            fclose(f);
        return -1;
    }
    double t = 0;
    uint64_t done = 0, from_file = 0;
    r = 0;
    do {
        uint64_t n = len - done < chunk ? len - done : chunk;
        if (f && fill_from_file(f, src, buf, n, &from_file) < 0) {
            free(buf);
            fclose(f);
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (compressed) {
            uint64_t step = cs ? cs : n;
            for (uint64_t o = 0; r == 0 && o < n; o += step)
                r = vdisk_pwrite_compressed(dev, buf + o, n - o < step ? n - o : step,
                                            off + done + o);
        } else {
            r = vdisk_pwrite(dev, buf, n, off + done);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t += elapsed(&t0, &t1);
        done += n;
    } while (r == 0 && done < len);
    free(buf);
    if (f)
        fclose(f);
    if (r == 0 && fua) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = vdisk_flush(dev);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t += elapsed(&t0, &t1);
    }
    if (r < 0) {
        io_failed("write");
        return -1;
    }
    if (!quiet)
        report("wrote", t, off, len, csv);
    return 0;
}

static int do_discard(vdisk_dev *dev, int argc, char **argv)
{
    bool quiet = false, csv = false;
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+Cq")) != -1) {
        switch (c) {
        case 'C':
            csv = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            usage_of(find_cmd("discard"));
            return -1;
        }
    }
    if (optind != argc - 2) {
        usage_of(find_cmd("discard"));
        return -1;
    }
    uint64_t off, len;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &len) < 0)
        return -1;
    if (check_len(len, argv[optind + 1]) < 0)
        return -1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = vdisk_discard(dev, off, len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0) {
        io_failed("discard");
        return -1;
    }
    if (!quiet)
        report("discard", elapsed(&t0, &t1), off, len, csv);
    return 0;
}

static int do_flush(vdisk_dev *dev, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (vdisk_flush(dev) < 0) {
        io_failed("flush");
        return -1;
    }
    return 0;
}

static int do_length(vdisk_dev *dev, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char s[64];
    cvtstr((double)vdisk_get_size(dev), s, sizeof s);
    printf("%s\n", s);
    return 0;
}

/* qemu-io's map: runs of "allocated in this image" and "not allocated". */
static int do_map(vdisk_dev *dev, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uint64_t size = vdisk_get_size(dev);
    uint64_t off = 0;
    while (off < size) {
        uint64_t start = off;
        bool alloc = false;
        bool first = true;
        while (off < size) {
            struct vdisk_extent e;
            if (vdisk_block_status(dev, off, size - off, &e) < 0) {
                printf("Failed to get allocation status: %s\n", strerror(vdisk_get_errno()));
                fprintf(stderr, "%s\n", vdisk_get_error());
                return -1;
            }
            bool a = (e.flags & VDISK_EXT_ALLOCATED) && e.depth == 0;
            if (first) {
                alloc = a;
                first = false;
            } else if (a != alloc) {
                break;
            }
            off += e.length;
        }
        char s1[64], s2[64];
        cvtstr((double)(off - start), s1, sizeof s1);
        cvtstr((double)start, s2, sizeof s2);
        printf("%s (0x%" PRIx64 ") bytes %s allocated at offset %s (0x%" PRIx64 ")\n", s1,
               off - start, alloc ? "   " : "not", s2, start);
    }
    return 0;
}

static const struct io_cmd io_cmds[] = {
    {"read", 2, -1, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
     "reads a number of bytes at a specified offset", do_read},
    {"write", 2, -1, "[-bcCfnquz] [-P pattern | -s source_file] off len",
     "writes a number of bytes at a specified offset", do_write},
    {"discard", 2, -1, "[-Cq] off len", "discards a number of bytes at a specified offset",
     do_discard},
    {"flush", 0, 0, "", "flush all in-core file state to disk", do_flush},
    {"map", 0, 0, "", "prints the allocated areas of a file", do_map},
    {"length", 0, 0, "", "gets the length of the current file", do_length},
};

static const struct io_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof io_cmds / sizeof io_cmds[0]; i++)
        if (strcmp(io_cmds[i].name, name) == 0)
            return &io_cmds[i];
    if (strcmp(name, "r") == 0)
        return &io_cmds[0];
    if (strcmp(name, "w") == 0)
        return &io_cmds[1];
    return NULL;
}

/* Splits LINE at white space into at most MAX words. */
static int split_words(char *line, char **words, int max)
{
    int n = 0;
    for (char *tok = strtok(line, " \t\n"); tok && n < max; tok = strtok(NULL, " \t\n"))
        words[n++] = tok;
    return n;
}

/* Runs one command line; returns 0 or -1 when it failed. */
static int run_line(vdisk_dev *dev, const char *text)
{
    char *line = strdup(text);
    char *argv[64];
    if (!line)
        return -1;
    int argc = split_words(line, argv, 63);
    argv[argc] = NULL;
    int ret = 0;
    if (argc == 0)
        goto out;
    const struct io_cmd *c = find_cmd(argv[0]);
    if (!c) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        ret = -1;
        goto out;
    }
    int nargs = argc - 1;
    if (nargs < c->argmin || (c->argmax != -1 && nargs > c->argmax)) {
        if (c->argmax == -1)
            fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n",
                    nargs, argv[0], c->argmin);
        else if (c->argmin == c->argmax)
            fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", nargs,
                    argv[0], c->argmin);
        else
            fprintf(stderr, "bad argument count %d to %s, expected between %d and %d "
                    "arguments\n", nargs, argv[0], c->argmin, c->argmax);
        ret = -1;
        goto out;
    }
    ret = c->fn(dev, argc, argv);
    fflush(stdout);
out:
    free(line);
    return ret;
}

int io_run_script(vdisk_dev *dev, FILE *in, bool prompt, bool files)
{
    char *line = NULL;
    size_t cap = 0;
    int failed = 0;
    host_files = files;
    for (;;) {
        if (prompt) {
            printf("vdisk io> ");
            fflush(stdout);
        }
        if (getline(&line, &cap, in) < 0)
            break;
        if (strncmp(line, "quit", 4) == 0 || strncmp(line, "q\n", 2) == 0)
            break;
        if (run_line(dev, line) < 0)
            failed = 1;
    }
    free(line);
    host_files = true;
    return failed;
}

static void help(void)
{
    printf("usage: vdisk io [-f FMT] [-r] [-n] [-t CACHE] [-i ENGINE] [-c CMD]... FILE\n"
           "\n"
           "Runs qemu-io style commands on the image FILE, in order; without -c,\n"
           "reads them from standard input, one a line.  Exits 1 when any command\n"
           "failed.\n"
           "\n"
           "  -f FMT       the image's format (probed when not given)\n"
           "  -r           open read-only\n"
           "  -U           (with -r) open even while another process writes FILE\n"
           "  -n           cache=none: bypass the host page cache (O_DIRECT)\n"
           "  -t CACHE     writeback, none, writethrough, directsync or unsafe\n"
           "  -i ENGINE    io_uring (or uring), threads, or auto\n"
           "  -c CMD       a command (repeatable)\n"
           "\n"
           "Commands:\n");
    for (size_t i = 0; i < sizeof io_cmds / sizeof io_cmds[0]; i++)
        printf("  %s %s\n      %s\n", io_cmds[i].name, io_cmds[i].args, io_cmds[i].oneline);
    printf("\nOffsets and lengths take the suffixes k, M, G, T, P, E, or 0x for hex;\n"
           "a length is at most 2147483136 bytes, and a range must lie inside the\n"
           "image (long ones are read and written in 16 MiB pieces).\n"
           "write without -P writes the byte 0xcd, with -s FILE the bytes of FILE\n"
           "(repeated); -z writes zeroes (-u may unmap);\n"
           "-f makes the write durable (FUA).  read -P checks every byte (or the\n"
           "range -s/-l of the buffer) against a pattern; -v dumps the data.\n");
}

int cmd_io(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"cmd", required_argument, NULL, 'c'},
        {"read-only", no_argument, NULL, 'r'},
        {"nocache", no_argument, NULL, 'n'},
        {"cache", required_argument, NULL, 't'},
        {"aio", required_argument, NULL, 'i'},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    const char **cmds = calloc((size_t)argc + 1, sizeof *cmds);
    int ncmds = 0;
    if (!cmds)
        return 1;
    int c, ret = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:c:rnt:i:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f':
            oa.format = optarg;
            break;
        case 'c':
            cmds[ncmds++] = optarg;
            break;
        case 'r':
            oa.read_only = true;
            break;
        case 'n':
            oa.cache = "none";
            break;
        case 't':
            oa.cache = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "io_uring") == 0 || strcmp(optarg, "uring") == 0)
                oa.engine = "uring";
            else if (strcmp(optarg, "threads") == 0 || strcmp(optarg, "auto") == 0)
                oa.engine = optarg;
            else {
                cli_error("invalid aio engine '%s' (expected io_uring, threads or auto)", optarg);
                goto out;
            }
            break;
        case 'U':
            oa.force_share = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk io --help' for more information.\n");
            goto out;
        }
    }
    if (optind != argc - 1) {
        cli_error(optind >= argc ? "Expecting an image file name" : "Unexpected argument: %s",
                  argv[argc - 1]);
        goto out;
    }
    vdisk_dev *dev = cli_open(argv[optind], &oa);
    if (!dev)
        goto out;
    int failed = 0;
    if (ncmds) {
        for (int i = 0; i < ncmds; i++)
            if (run_line(dev, cmds[i]) < 0)
                failed = 1;
    } else {
        failed = io_run_script(dev, stdin, isatty(STDIN_FILENO), true);
    }
    fflush(stdout);
    vdisk_close(dev);
    ret = failed;
out:
    free(cmds);
    return ret;
}
