/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_io.c: vdisk io, a qemu-io (7.2) compatible subset for
 * scripts and tests: read, readv, write, writev, aio_read, aio_write,
 * aio_flush, discard, flush, alloc, map, info, length, truncate, sleep,
 * open, close, help and quit.
 *
 * Commands take qemu-io's syntax and print what qemu-io prints on standard
 * output; the process exits 1 when any command failed, else 0.  The
 * library's detailed message for a failed request goes to standard error
 * with --debug only.
 *
 * aio_read and aio_write run their request at once, but print what its
 * completion prints where qemu-io's reliably does: at aio_flush, sleep (of
 * 1 ms or more), close, quit and at the end, the latest request first (as
 * QEMU's completions usually arrive); I/O errors and pattern mismatches in
 * them do not fail the command, as in qemu-io.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_REQUEST 2147483136ULL /* as qemu-io: INT_MAX rounded down to 512 */
/* The most a command holds in memory at once: longer reads and writes go
 * to the library in pieces of this size (a multiple of 16 for -v's dump,
 * and of every cluster size for write -c). */
#define IO_CHUNK (16ULL << 20)
#define MAX_IOV 62 /* lengths one readv/writev takes (the line has 64 words) */

/* write -s, open and sleep use the host; fuzz/io_cmds.c turns that off. */
static bool host_files = true;

/* The session: the open image (NULL after close), whether vdisk io opened
 * it (and closes it), --debug, and quit. */
static struct {
    vdisk_dev *dev;
    bool owned;
    bool debug;
    bool quit;
} st;

enum {
    CMD_NOFILE_OK = 1, /* runs without an open image */
    CMD_WRITES = 2,    /* needs a writable image */
};

struct io_cmd {
    const char *name;
    const char *altname;
    int argmin, argmax; /* -1: no limit */
    unsigned flags;
    const char *args;
    const char *oneline;
    const char *help; /* the extended help (help CMD), or NULL */
    int (*fn)(int argc, char **argv);
};

static const struct io_cmd *find_cmd(const char *name);

static void usage_of(const char *name)
{
    const struct io_cmd *c = find_cmd(name);
    printf("%s %s -- %s\n", c->name, c->args, c->oneline);
}

/* ---- Completions of aio requests ------------------------------------------ */

/* What the completions of the aio requests not yet reported print, in the
 * order started. */
static char **pending;
static size_t npending, cap_pending;

/* A stream for what one completion prints; done_output() keeps it. */
static FILE *completion_output(char **buf, size_t *len)
{
    FILE *f = open_memstream(buf, len);
    return f ? f : stdout;
}

static void done_output(FILE *f, char **bufp)
{
    if (f == stdout)
        return;
    fclose(f);
    char *buf = *bufp;
    if (!buf)
        return;
    if (npending == cap_pending) {
        size_t n = cap_pending ? cap_pending * 2 : 8;
        char **p = realloc(pending, n * sizeof *p);
        if (!p) {
            fputs(buf, stdout);
            free(buf);
            return;
        }
        pending = p;
        cap_pending = n;
    }
    pending[npending++] = buf;
}

/* Prints the completions waiting, the latest first. */
static void settle(void)
{
    while (npending) {
        char *s = pending[--npending];
        fputs(s, stdout);
        free(s);
    }
    free(pending);
    pending = NULL;
    cap_pending = 0;
    fflush(stdout);
}

/* ---- Helpers -------------------------------------------------------------- */

static int parse_num(const char *s, uint64_t *out)
{
    int r = s[0] == '-' ? -EINVAL : vdisk_parse_size(s, 1, out);
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

static void report(FILE *o, const char *verb, double t, uint64_t off, uint64_t count, bool csv)
{
    char ts[64], s1[64], s2[64];
    double rate = t > 0 ? (double)count / t : 0;
    double ops = t > 0 ? 1.0 / t : 0;
    time_str(t, ts, sizeof ts, csv);
    if (csv) {
        fprintf(o, "%" PRIu64 ",1,%s,%.3f,%.3f\n", count, ts, rate, ops);
        return;
    }
    cvtstr((double)count, s1, sizeof s1);
    cvtstr(rate, s2, sizeof s2);
    fprintf(o, "%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", verb, count, count,
            off);
    fprintf(o, "%s, 1 ops; %s (%s/sec and %.4f ops/sec)\n", s1, ts, s2, ops);
}

static void hexdump(FILE *o, const uint8_t *buf, uint64_t off, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 16) {
        uint64_t n = len - i < 16 ? len - i : 16;
        fprintf(o, "%08" PRIx64 ":  ", off + i);
        for (uint64_t j = 0; j < n; j++)
            fprintf(o, "%02x ", buf[i + j]);
        fprintf(o, " ");
        for (uint64_t j = 0; j < n; j++) {
            uint8_t ch = buf[i + j];
            fputc(ch >= 0x20 && ch < 0x7f ? ch : '.', o);
        }
        fprintf(o, "\n");
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

/* readv's, writev's and the aio commands' lengths (ARGV[0..N-1]) into
 * LENS; their sum in *TOTAL.  Prints qemu-io's message. */
static int parse_lens(char **argv, int n, uint64_t *lens, uint64_t *total)
{
    *total = 0;
    for (int i = 0; i < n; i++) {
        if (parse_num(argv[i], &lens[i]) < 0)
            return -1;
        if (lens[i] > MAX_REQUEST) {
            printf("Argument '%s' exceeds maximum size %llu\n", argv[i], MAX_REQUEST);
            return -1;
        }
        if (*total > MAX_REQUEST - lens[i]) {
            printf("The total number of bytes exceed the maximum size %llu\n", MAX_REQUEST);
            return -1;
        }
        *total += lens[i];
    }
    return 0;
}

/* read -b and write -b (the VM state): OFF and LEN sector-aligned, as
 * qemu-io checks them; then "WHAT failed: Operation not supported" (vdisk
 * keeps no VM state).  Always -1. */
static int vmstate_refused(const char *what, uint64_t off, uint64_t len)
{
    if (off % 512)
        printf("%" PRIu64 " is not a sector-aligned value for 'offset'\n", off);
    else if (len % 512)
        printf("%" PRIu64 " is not a sector-aligned value for 'count'\n", len);
    else
        printf("%s failed: %s\n", what, strerror(ENOTSUP));
    return -1;
}

/* The library's message for the last failure, with --debug. */
static void debug_detail(void)
{
    if (st.debug)
        fprintf(stderr, "%s\n", vdisk_get_error());
}

/*
 * Whether LEN bytes at OFF lie inside the image, checked before any buffer
 * is allocated; when not, prints "WHAT failed: Input/output error" to O,
 * as qemu-io (with --debug, why on stderr).
 */
static bool in_device(FILE *o, const char *fn, const char *what, uint64_t off, uint64_t len)
{
    uint64_t size = vdisk_get_size(st.dev);
    if (off <= size && len <= size - off)
        return true;
    if (st.debug)
        fprintf(stderr, "%s: %s: %s of %" PRIu64 " bytes at offset %" PRIu64
                " is beyond the end of the device (%" PRIu64 " bytes)\n", fn,
                vdisk_get_filename(st.dev), strncmp(what, "read", 4) ? "write" : "read", len,
                off, size);
    fprintf(o, "%s failed: %s\n", what, strerror(EIO));
    return false;
}

static void io_failed(FILE *o, const char *what)
{
    fprintf(o, "%s failed: %s\n", what, strerror(vdisk_get_errno()));
    debug_detail();
}

/* An iovec list over BUF with the lengths LENS[N] (summing to the length
 * of the request), or one element for BUF (LEN bytes) when N < 2. */
static int make_iov(struct iovec *iov, uint8_t *buf, uint64_t len, const uint64_t *lens, int n)
{
    if (n < 2) {
        iov[0] = (struct iovec){buf, len};
        return 1;
    }
    uint64_t o = 0;
    for (int i = 0; i < n; i++) {
        iov[i] = (struct iovec){buf + o, lens[i]};
        o += lens[i];
    }
    return n;
}

/* ---- Reads and writes ----------------------------------------------------- */

struct rd_args {
    const char *what;     /* "read", or "readv" (readv, aio_read) in messages */
    bool pflag;
    int pattern;
    uint64_t poff, plen;  /* the part of the buffer -P checks */
    bool verbose, quiet, csv;
    FILE *o;              /* where the result goes */
};

/* Reads LEN bytes at OFF (in the buffers LENS[NLENS], when it fits in one
 * piece), checks and reports them: read's, readv's and aio_read's work. */
static int read_range(uint64_t off, uint64_t len, const uint64_t *lens, int nlens,
                      const struct rd_args *a)
{
    FILE *o = a->o;
    if (!in_device(o, nlens > 1 ? "vdisk_preadv" : "vdisk_pread", a->what, off, len))
        return -1;
    uint64_t chunk = len < IO_CHUNK ? len : IO_CHUNK;
    uint8_t *buf = alloc_buf(chunk, 0xab);
    if (!buf) {
        fprintf(o, "out of memory\n");
        return -1;
    }
    struct iovec iov[MAX_IOV];
    double t = 0;
    int ret = 0;
    uint64_t done = 0;
    do {
        uint64_t n = len - done < chunk ? len - done : chunk;
        int cnt = make_iov(iov, buf, n, lens, n == len ? nlens : 1);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = !n ? 0 : cnt > 1 ? vdisk_preadv(st.dev, iov, cnt, off + done)
                                 : vdisk_pread(st.dev, buf, n, off + done);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t += elapsed(&t0, &t1);
        if (r < 0) {
            io_failed(o, a->what);
            free(buf);
            return -1;
        }
        /* The part of [poff, poff + plen) in this piece. */
        uint64_t from = a->poff > done ? a->poff : done;
        uint64_t to = a->poff + a->plen < done + n ? a->poff + a->plen : done + n;
        for (uint64_t i = from; a->pflag && ret == 0 && i < to; i++) {
            if (buf[i - done] != a->pattern) {
                fprintf(o, "Pattern verification failed at offset %" PRIu64 ", %" PRIu64
                        " bytes\n", off + a->poff, a->plen);
                ret = -1;
            }
        }
        if (!a->quiet && a->verbose)
            hexdump(o, buf, off + done, n);
        done += n;
    } while (done < len);
    if (!a->quiet)
        report(o, "read", t, off, len, a->csv);
    free(buf);
    return ret;
}

struct wr_args {
    const char *what;     /* "write", "writev" or "aio_write" in messages */
    bool zero, unmap, fua, compressed, quiet, csv;
    int pattern;
    FILE *src;            /* write -s: the file the data comes from */
    const char *src_name;
    FILE *o;
};

/* write's, writev's and aio_write's work: LEN bytes at OFF (in the
 * buffers LENS[NLENS], when they fit in one piece). */
static int write_range(uint64_t off, uint64_t len, const uint64_t *lens, int nlens,
                       const struct wr_args *a)
{
    FILE *o = a->o;
    struct timespec t0, t1;
    int r;
    if (a->zero) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = vdisk_write_zeroes(st.dev, off, len, a->unmap ? VDISK_ZEROES_MAY_UNMAP : 0);
        if (r == 0 && a->fua)
            r = vdisk_flush(st.dev);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r < 0) {
            io_failed(o, a->what);
            return -1;
        }
        if (!a->quiet)
            report(o, "wrote", elapsed(&t0, &t1), off, len, a->csv);
        return 0;
    }
    if (!in_device(o, a->compressed ? "vdisk_pwrite_compressed" :
                   nlens > 1 ? "vdisk_pwritev" : "vdisk_pwrite", a->what, off, len))
        return -1;
    /* write -c: one call per cluster, as qemu-io's write -c does it. */
    uint64_t cs = 0;
    if (a->compressed) {
        struct vdisk_info in = {.struct_size = sizeof in};
        if (vdisk_get_info(st.dev, &in) == 0)
            cs = in.cluster_size;
    }
    uint64_t chunk = len < IO_CHUNK ? len : IO_CHUNK;
    if (cs > chunk)
        chunk = cs < len ? cs : len;
    uint8_t *buf = alloc_buf(chunk, a->pattern);
    if (!buf) {
        fprintf(o, "out of memory\n");
        return -1;
    }
    struct iovec iov[MAX_IOV];
    double t = 0;
    uint64_t done = 0, from_file = 0;
    r = 0;
    do {
        uint64_t n = len - done < chunk ? len - done : chunk;
        if (a->src && fill_from_file(a->src, a->src_name, buf, n, &from_file) < 0) {
            free(buf);
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (a->compressed) {
            uint64_t step = cs ? cs : n;
            for (uint64_t p = 0; r == 0 && p < n; p += step)
                r = vdisk_pwrite_compressed(st.dev, buf + p, n - p < step ? n - p : step,
                                            off + done + p);
        } else if (n) {
            int cnt = make_iov(iov, buf, n, lens, n == len ? nlens : 1);
            r = cnt > 1 ? vdisk_pwritev(st.dev, iov, cnt, off + done)
                        : vdisk_pwrite(st.dev, buf, n, off + done);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t += elapsed(&t0, &t1);
        done += n;
    } while (r == 0 && done < len);
    free(buf);
    if (r == 0 && a->fua) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = vdisk_flush(st.dev);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t += elapsed(&t0, &t1);
    }
    if (r < 0) {
        io_failed(o, a->what);
        return -1;
    }
    if (!a->quiet)
        report(o, "wrote", t, off, len, a->csv);
    return 0;
}

/* ---- Commands ------------------------------------------------------------- */

static int do_read(int argc, char **argv)
{
    struct rd_args a = {.what = "read", .o = stdout};
    bool has_poff = false, has_plen = false, vmstate = false;
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+abCpqvP:s:l:")) != -1) {
        switch (c) {
        case 'a':
        case 'p':
            break;
        case 'b':
            vmstate = true;
            break;
        case 'C':
            a.csv = true;
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'v':
            a.verbose = true;
            break;
        case 'P':
            a.pflag = true;
            if ((a.pattern = parse_pattern(optarg)) < 0)
                return -1;
            break;
        case 's':
            if (parse_num(optarg, &a.poff) < 0)
                return -1;
            has_poff = true;
            break;
        case 'l':
            if (parse_num(optarg, &a.plen) < 0)
                return -1;
            has_plen = true;
            break;
        default:
            usage_of("read");
            return -1;
        }
    }
    if (optind != argc - 2 || ((has_poff || has_plen) && !a.pflag)) {
        usage_of("read");
        return -1;
    }
    uint64_t off, len;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &len) < 0)
        return -1;
    if (check_len(len, argv[optind + 1]) < 0)
        return -1;
    if (!has_plen)
        a.plen = len - (a.poff < len ? a.poff : len);
    if (a.poff > len || a.plen > len - a.poff) {
        printf("pattern verification range exceeds end of read data\n");
        return -1;
    }
    if (vmstate)
        return vmstate_refused("read", off, len);
    return read_range(off, len, NULL, 0, &a);
}

/* readv and aio_read: [-Cqv] [-P pattern] (aio_read: -i) off len [len..]. */
static int readv_common(int argc, char **argv, bool aio)
{
    const char *name = aio ? "aio_read" : "readv";
    struct rd_args a = {.what = "readv", .o = stdout};
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, aio ? "+CiqvP:" : "+CqvP:")) != -1) {
        switch (c) {
        case 'C':
            a.csv = true;
            break;
        case 'i':
            printf("injecting invalid read request\n");
            return 0;
        case 'q':
            a.quiet = true;
            break;
        case 'v':
            a.verbose = true;
            break;
        case 'P':
            a.pflag = true;
            if ((a.pattern = parse_pattern(optarg)) < 0)
                return -1;
            break;
        default:
            usage_of(name);
            return -1;
        }
    }
    if (optind > argc - 2) {
        usage_of(name);
        return -1;
    }
    uint64_t off, total, lens[MAX_IOV];
    int n = argc - optind - 1;
    if (parse_num(argv[optind], &off) < 0 || parse_lens(argv + optind + 1, n, lens, &total) < 0)
        return -1;
    a.plen = total;
    if (!aio)
        return read_range(off, total, lens, n, &a);
    char *out = NULL;
    size_t outlen = 0;
    a.o = completion_output(&out, &outlen);
    read_range(off, total, lens, n, &a);
    done_output(a.o, &out);
    return 0;
}

static int do_readv(int argc, char **argv)
{
    return readv_common(argc, argv, false);
}

static int do_aio_read(int argc, char **argv)
{
    return readv_common(argc, argv, true);
}

static int do_write(int argc, char **argv)
{
    struct wr_args a = {.what = "write", .pattern = 0xcd, .o = stdout};
    bool pflag = false, vmstate = false, nofallback = false;
    const char *src = NULL;
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+bcCfnpquzP:s:")) != -1) {
        switch (c) {
        case 'p':
            break;
        case 'b':
            vmstate = true;
            break;
        case 'n':
            nofallback = true;
            break;
        case 'c':
            a.compressed = true;
            break;
        case 'C':
            a.csv = true;
            break;
        case 'f':
            a.fua = true;
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'u':
            a.unmap = true;
            break;
        case 'z':
            a.zero = true;
            break;
        case 'P':
            pflag = true;
            if ((a.pattern = parse_pattern(optarg)) < 0)
                return -1;
            break;
        case 's':
            src = optarg;
            break;
        default:
            usage_of("write");
            return -1;
        }
    }
    if (optind != argc - 2) {
        usage_of("write");
        return -1;
    }
    /* qemu-io 7.2's checks, in its order */
    if (vmstate && a.zero) {
        printf("-b and -z cannot be specified at the same time\n");
        return -1;
    }
    if (a.fua && (vmstate || a.compressed)) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -1;
    }
    if (nofallback && !a.zero) {
        printf("-n requires -z to be specified\n");
        return -1;
    }
    if (a.unmap && !a.zero) {
        printf("-u requires -z to be specified\n");
        return -1;
    }
    if ((a.zero ? 1 : 0) + (pflag ? 1 : 0) + (src ? 1 : 0) > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -1;
    }
    uint64_t off, len;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &len) < 0)
        return -1;
    if (check_len(len, argv[optind + 1]) < 0)
        return -1;
    if (vmstate)
        return vmstate_refused("write", off, len);
    if (src) {
        if (!host_files) {
            printf("%s: %s\n", src, strerror(EPERM));
            return -1;
        }
        if (!(a.src = fopen(src, "rb"))) {
            printf("%s: %s\n", src, strerror(errno));
            return -1;
        }
        a.src_name = src;
    }
    int r = write_range(off, len, NULL, 0, &a);
    if (a.src)
        fclose(a.src);
    return r;
}

/* writev [-Cfq] [-P pattern] and aio_write [-Cfiquz] [-P pattern]:
 * off len [len..]. */
static int writev_common(int argc, char **argv, bool aio)
{
    const char *name = aio ? "aio_write" : "writev";
    struct wr_args a = {.what = name, .pattern = 0xcd, .o = stdout};
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, aio ? "+CfiquzP:" : "+CfqP:")) != -1) {
        switch (c) {
        case 'C':
            a.csv = true;
            break;
        case 'f':
            a.fua = true;
            break;
        case 'i':
            printf("injecting invalid write request\n");
            return 0;
        case 'q':
            a.quiet = true;
            break;
        case 'u':
            a.unmap = true;
            break;
        case 'z':
            a.zero = true;
            break;
        case 'P':
            if ((a.pattern = parse_pattern(optarg)) < 0)
                return -1;
            break;
        default:
            usage_of(name);
            return -1;
        }
    }
    if (optind > argc - 2) {
        usage_of(name);
        return -1;
    }
    if (a.zero && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -1;
    }
    if (a.unmap && !a.zero) {
        printf("-u requires -z to be specified\n");
        return -1;
    }
    uint64_t off, total, lens[MAX_IOV];
    int n = argc - optind - 1;
    if (parse_num(argv[optind], &off) < 0)
        return -1;
    if (a.zero) {
        /* qemu-io's aio_write -z takes any length; the request fails. */
        if (parse_num(argv[optind + 1], &total) < 0)
            return -1;
    } else if (parse_lens(argv + optind + 1, n, lens, &total) < 0) {
        return -1;
    }
    if (!aio)
        return write_range(off, total, lens, n, &a);
    char *out = NULL;
    size_t outlen = 0;
    a.o = completion_output(&out, &outlen);
    if (a.zero && total > MAX_REQUEST)
        fprintf(a.o, "aio_write failed: %s\n", strerror(EIO));
    else
        write_range(off, total, lens, n, &a);
    done_output(a.o, &out);
    return 0;
}

static int do_writev(int argc, char **argv)
{
    return writev_common(argc, argv, false);
}

static int do_aio_write(int argc, char **argv)
{
    return writev_common(argc, argv, true);
}

static int do_aio_flush(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    settle();
    return 0;
}

static int do_discard(int argc, char **argv)
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
            usage_of("discard");
            return -1;
        }
    }
    if (optind != argc - 2) {
        usage_of("discard");
        return -1;
    }
    uint64_t off, len;
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &len) < 0)
        return -1;
    if (check_len(len, argv[optind + 1]) < 0)
        return -1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = vdisk_discard(st.dev, off, len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0) {
        io_failed(stdout, "discard");
        return -1;
    }
    if (!quiet)
        report(stdout, "discard", elapsed(&t0, &t1), off, len, csv);
    return 0;
}

static int do_flush(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (vdisk_flush(st.dev) < 0) {
        io_failed(stdout, "flush");
        return -1;
    }
    return 0;
}

static int do_length(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char s[64];
    cvtstr((double)vdisk_get_size(st.dev), s, sizeof s);
    printf("%s\n", s);
    return 0;
}

/* Whether LEN bytes at OFF (inside the image) are allocated in the image
 * itself (not a backing file): 1 or 0, with the length that shares it in
 * *N; -1 when the status cannot be had. */
static int allocated(uint64_t off, uint64_t len, uint64_t *n)
{
    struct vdisk_extent e;
    if (vdisk_block_status(st.dev, off, len, &e) < 0)
        return -1;
    *n = e.length < len ? e.length : len;
    return (e.flags & VDISK_EXT_ALLOCATED) && e.depth == 0;
}

/* qemu-io's map: runs of "allocated in this image" and "not allocated". */
static int do_map(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    uint64_t size = vdisk_get_size(st.dev);
    uint64_t off = 0;
    while (off < size) {
        uint64_t start = off, n = 0;
        int alloc = -1;
        while (off < size) {
            int a = allocated(off, size - off, &n);
            if (a < 0) {
                printf("Failed to get allocation status: %s\n", strerror(vdisk_get_errno()));
                debug_detail();
                return -1;
            }
            if (alloc == -1)
                alloc = a;
            else if (a != alloc)
                break;
            if (n == 0)
                n = size - off;
            off += n;
        }
        char s1[64], s2[64];
        cvtstr((double)(off - start), s1, sizeof s1);
        cvtstr((double)start, s2, sizeof s2);
        printf("%s (0x%" PRIx64 ") bytes %s allocated at offset %s (0x%" PRIx64 ")\n", s1,
               off - start, alloc ? "   " : "not", s2, start);
    }
    return 0;
}

/* alloc OFF [COUNT]: "A/C bytes allocated at offset O", COUNT (512 when
 * not given) cut at the end of the image, as qemu-io 7.2 prints it. */
static int do_alloc(int argc, char **argv)
{
    uint64_t off, count = 512;
    if (parse_num(argv[1], &off) < 0 || (argc == 3 && parse_num(argv[2], &count) < 0))
        return -1;
    uint64_t size = vdisk_get_size(st.dev);
    if (off >= size)
        count = 0;
    else if (count > size - off)
        count = size - off;
    uint64_t sum = 0;
    for (uint64_t o = off; o < off + count;) {
        uint64_t n;
        int a = allocated(o, off + count - o, &n);
        if (a < 0) {
            printf("is_allocated failed: %s\n", strerror(vdisk_get_errno()));
            debug_detail();
            return -1;
        }
        if (n == 0) {
            count = o - off;
            break;
        }
        if (a)
            sum += n;
        o += n;
    }
    char s[64];
    cvtstr((double)off, s, sizeof s);
    printf("%" PRIu64 "/%" PRIu64 " bytes allocated at offset %s\n", sum, count, s);
    return 0;
}

/* info: the format, cluster size and VM state offset (qcow2: past the
 * last L1 entry the disk needs), then the format-specific fields. */
static int do_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct vdisk_info in = {.struct_size = sizeof in};
    printf("format name: %s\n", vdisk_get_format(st.dev));
    if (vdisk_get_info(st.dev, &in) < 0) {
        debug_detail();
        return -1;
    }
    uint64_t vmstate = 0;
    if (in.compat && in.cluster_size) {
        uint64_t per_l1 = (uint64_t)in.cluster_size * (in.cluster_size / (in.extended_l2 ? 16 : 8));
        vmstate = (in.virtual_size + per_l1 - 1) / per_l1 * per_l1;
    }
    char s1[64], s2[64];
    cvtstr((double)in.cluster_size, s1, sizeof s1);
    cvtstr((double)vmstate, s2, sizeof s2);
    printf("cluster size: %s\nvm state offset: %s\n", s1, s2);
    print_format_specific(&in);
    return 0;
}

/* truncate [-m prealloc_mode] SIZE: grows or shrinks the image (the
 * preallocation modes are taken and not applied: the new area reads as
 * zeroes either way). */
static int do_truncate(int argc, char **argv)
{
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+m:")) != -1) {
        switch (c) {
        case 'm':
            if (strcmp(optarg, "off") && strcmp(optarg, "metadata") &&
                strcmp(optarg, "falloc") && strcmp(optarg, "full")) {
                cli_error("Invalid preallocation mode '%s'", optarg);
                return -1;
            }
            break;
        default:
            usage_of("truncate");
            return -1;
        }
    }
    /* (qemu-io reads the first word left and ignores the rest) */
    if (optind >= argc) {
        usage_of("truncate");
        return -1;
    }
    uint64_t size;
    if (parse_num(argv[optind], &size) < 0)
        return -1;
    if (size % 512 && strcmp(vdisk_get_format(st.dev), "qcow2") == 0) {
        cli_error("The new size must be a multiple of 512");
        return -1;
    }
    if (vdisk_resize(st.dev, size, VDISK_RESIZE_SHRINK) < 0) {
        cli_error("%s", cli_lib_detail());
        return -1;
    }
    return 0;
}

static int do_sleep(int argc, char **argv)
{
    (void)argc;
    char *end;
    errno = 0;
    long ms = strtol(argv[1], &end, 0);
    if (errno || ms < 0 || *end) {
        printf("%s is not a valid number\n", argv[1]);
        return -1;
    }
    if (ms > 0)
        settle(); /* (qemu-io's completions come in a sleep, not in "sleep 0") */
    if (host_files) {
        struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return 0;
}

static void close_image(void)
{
    settle();
    if (st.dev && st.owned)
        vdisk_close(st.dev);
    st.dev = NULL;
}

static int do_close(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    close_image();
    return 0;
}

/* open [-rnkCsU] [-t cache] [-d discard] [-i aio] [-o options] [-f fmt]
 * FILE: -o takes driver=FMT (the format); -f FMT is vdisk's own. */
static int do_open(int argc, char **argv)
{
    struct open_args oa = {0};
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+snCrkUt:d:i:o:f:")) != -1) {
        switch (c) {
        case 's':
        case 'C':
        case 'k':
        case 'd':
            break;
        case 'n':
            oa.cache = "none";
            break;
        case 'r':
            oa.read_only = true;
            break;
        case 'U':
            oa.force_share = true;
            break;
        case 't':
            if (cli_check_cache(optarg) < 0)
                return -1;
            oa.cache = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "io_uring") == 0)
                oa.engine = "uring";
            else if (strcmp(optarg, "threads") == 0)
                oa.engine = "threads";
            else if (strcmp(optarg, "native") != 0) {
                cli_error("Invalid aio option: %s", optarg);
                return -1;
            }
            break;
        case 'o':
            if (strncmp(optarg, "driver=", 7) != 0 || strchr(optarg, ',')) {
                cli_error("Invalid open options '%s' (vdisk io takes driver=FORMAT only)",
                          optarg);
                return -1;
            }
            oa.format = optarg + 7;
            break;
        case 'f':
            oa.format = optarg;
            break;
        default:
            usage_of("open");
            return -1;
        }
    }
    if (optind != argc - 1) {
        usage_of("open");
        return -1;
    }
    if (st.dev) {
        cli_error("file open already, try 'help close'");
        return -1;
    }
    if (!host_files) {
        printf("%s: %s\n", argv[optind], strerror(EPERM));
        return -1;
    }
    vdisk_dev *d = cli_open(argv[optind], &oa);
    if (!d)
        return -1;
    st.dev = d;
    st.owned = true;
    return 0;
}

static int do_quit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    st.quit = true;
    return 0;
}

static void help_oneline(const char *name, const struct io_cmd *c)
{
    printf("%s ", name);
    if (c->args)
        printf("%s ", c->args);
    printf("-- %s\n", c->oneline);
}

static void help_all(void);

static int do_help(int argc, char **argv)
{
    if (argc == 1) {
        help_all();
        return 0;
    }
    const struct io_cmd *c = find_cmd(argv[1]);
    if (!c) {
        printf("command %s not found\n", argv[1]);
        return -1;
    }
    help_oneline(argv[1], c);
    if (c->help)
        printf("\n%s", c->help);
    return 0;
}

/* ---- The command table, as qemu-io 7.2 lists it --------------------------- */

static const char help_aio_read[] =
    " asynchronously reads a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
    "\n"
    " Reads a segment of the currently open file, optionally dumping it to the\n"
    " standard output stream (with -v option) for subsequent inspection.\n"
    " The read is performed asynchronously and the aio_flush command must be\n"
    " used to ensure all outstanding aio requests have been completed.\n"
    " Note that due to its asynchronous nature, this command will be\n"
    " considered successful once the request is submitted, independently\n"
    " of potential I/O errors or pattern mismatches.\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -P, -- use a pattern to verify read data\n"
    " -i, -- treat request as invalid, for exercising stats\n"
    " -v, -- dump buffer to standard output\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

static const char help_aio_write[] =
    " asynchronously writes a range of bytes from the given offset source\n"
    " from multiple buffers\n"
    "\n"
    " Example:\n"
    " 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
    "\n"
    " Writes into a segment of the currently open file, using a buffer\n"
    " filled with a set pattern (0xcdcdcdcd).\n"
    " The write is performed asynchronously and the aio_flush command must be\n"
    " used to ensure all outstanding aio requests have been completed.\n"
    " Note that due to its asynchronous nature, this command will be\n"
    " considered successful once the request is submitted, independently\n"
    " of potential I/O errors or pattern mismatches.\n"
    " -P, -- use different pattern to fill file\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -f, -- use Force Unit Access semantics\n"
    " -i, -- treat request as invalid, for exercising stats\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    " -u, -- with -z, allow unmapping\n"
    " -z, -- write zeroes using blk_aio_pwrite_zeroes\n"
    "\n";

static const char help_discard[] =
    " discards a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n"
    "\n"
    " Discards a segment of the currently open file.\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

static const char help_open[] =
    " opens a new file in the requested mode\n"
    "\n"
    " Example:\n"
    " 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n"
    "\n"
    " Opens a file for subsequent use by all of the other qemu-io commands.\n"
    " -r, -- open file read-only\n"
    " -s, -- use snapshot file\n"
    " -C, -- use copy-on-read\n"
    " -n, -- disable host cache, short for -t none\n"
    " -U, -- force shared permissions\n"
    " -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n"
    " -i, -- use AIO mode (threads, native or io_uring)\n"
    " -t, -- use the given cache mode for the image\n"
    " -d, -- use the given discard mode for the image\n"
    " -o, -- options to be given to the block driver\n";

static const char help_read[] =
    " reads a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file\n"
    "\n"
    " Reads a segment of the currently open file, optionally dumping it to the\n"
    " standard output stream (with -v option) for subsequent inspection.\n"
    " -b, -- read from the VM state rather than the virtual disk\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -l, -- length for pattern verification (only with -P)\n"
    " -p, -- ignored for backwards compatibility\n"
    " -P, -- use a pattern to verify read data\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    " -s, -- start offset for pattern verification (only with -P)\n"
    " -v, -- dump buffer to standard output\n"
    "\n";

static const char help_readv[] =
    " reads a range of bytes from the given offset into multiple buffers\n"
    "\n"
    " Example:\n"
    " 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
    "\n"
    " Reads a segment of the currently open file, optionally dumping it to the\n"
    " standard output stream (with -v option) for subsequent inspection.\n"
    " Uses multiple iovec buffers if more than one byte range is specified.\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -P, -- use a pattern to verify read data\n"
    " -v, -- dump buffer to standard output\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

static const char help_write[] =
    " writes a range of bytes from the given offset\n"
    "\n"
    " Example:\n"
    " 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file\n"
    "\n"
    " Writes into a segment of the currently open file, using a buffer\n"
    " filled with a set pattern (0xcdcdcdcd).\n"
    " -b, -- write to the VM state rather than the virtual disk\n"
    " -c, -- write compressed data with blk_write_compressed\n"
    " -f, -- use Force Unit Access semantics\n"
    " -n, -- with -z, don't allow slow fallback\n"
    " -p, -- ignored for backwards compatibility\n"
    " -P, -- use different pattern to fill file\n"
    " -s, -- use a pattern file to fill the write buffer\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    " -u, -- with -z, allow unmapping\n"
    " -z, -- write zeroes using blk_co_pwrite_zeroes\n"
    "\n";

static const char help_writev[] =
    " writes a range of bytes from the given offset source from multiple buffers\n"
    "\n"
    " Example:\n"
    " 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
    "\n"
    " Writes into a segment of the currently open file, using a buffer\n"
    " filled with a set pattern (0xcdcdcdcd).\n"
    " -P, -- use different pattern to fill file\n"
    " -C, -- report statistics in a machine parsable format\n"
    " -f, -- use Force Unit Access semantics\n"
    " -q, -- quiet mode, do not show I/O statistics\n"
    "\n";

/* In qemu-io's (alphabetical) order; qemu-io's abort, break, reopen,
 * resume, sigraise, remove_break and wait_break are left out. */
static const struct io_cmd io_cmds[] = {
    {"aio_flush", NULL, 0, 0, 0, NULL, "completes all outstanding aio requests", NULL,
     do_aio_flush},
    {"aio_read", NULL, 2, -1, 0, "[-Ciqv] [-P pattern] off len [len..]",
     "asynchronously reads a number of bytes", help_aio_read, do_aio_read},
    {"aio_write", NULL, 2, -1, CMD_WRITES, "[-Cfiquz] [-P pattern] off len [len..]",
     "asynchronously writes a number of bytes", help_aio_write, do_aio_write},
    {"alloc", NULL, 1, 2, 0, "offset [count]", "checks if offset is allocated in the file",
     NULL, do_alloc},
    {"close", "c", 0, 0, 0, NULL, "close the current open file", NULL, do_close},
    {"discard", NULL, 2, -1, CMD_WRITES, "[-Cq] off len",
     "discards a number of bytes at a specified offset", help_discard, do_discard},
    {"flush", NULL, 0, 0, 0, NULL, "flush all in-core file state to disk", NULL, do_flush},
    {"help", "?", 0, 1, CMD_NOFILE_OK, "[command]", "help for one or all commands", NULL,
     do_help},
    {"info", NULL, 0, 0, 0, NULL, "prints information about the current file", NULL, do_info},
    {"length", "l", 0, 0, 0, NULL, "gets the length of the current file", NULL, do_length},
    {"map", NULL, 0, 0, 0, "", "prints the allocated areas of a file", NULL, do_map},
    {"open", "o", 1, -1, CMD_NOFILE_OK,
     "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]", "open the file specified by path",
     help_open, do_open},
    {"quit", "q", 0, 0, CMD_NOFILE_OK, NULL, "exit the program", NULL, do_quit},
    {"read", "r", 2, -1, 0, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
     "reads a number of bytes at a specified offset", help_read, do_read},
    {"readv", NULL, 2, -1, 0, "[-Cqv] [-P pattern] off len [len..]",
     "reads a number of bytes at a specified offset", help_readv, do_readv},
    {"sleep", NULL, 1, 1, CMD_NOFILE_OK, NULL, "waits for the given value in milliseconds",
     NULL, do_sleep},
    {"truncate", "t", 1, 3, CMD_WRITES, "[-m prealloc_mode] off",
     "truncates the current file at the given offset", NULL, do_truncate},
    {"write", "w", 2, -1, CMD_WRITES, "[-bcCfnquz] [-P pattern | -s source_file] off len",
     "writes a number of bytes at a specified offset", help_write, do_write},
    {"writev", NULL, 2, -1, CMD_WRITES, "[-Cfq] [-P pattern] off len [len..]",
     "writes a number of bytes at a specified offset", help_writev, do_writev},
};
static const size_t n_io_cmds = sizeof io_cmds / sizeof io_cmds[0];

static void help_all(void)
{
    for (size_t i = 0; i < n_io_cmds; i++)
        help_oneline(io_cmds[i].name, &io_cmds[i]);
    printf("\nUse 'help commandname' for extended help.\n");
}

static const struct io_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < n_io_cmds; i++)
        if (strcmp(io_cmds[i].name, name) == 0 ||
            (io_cmds[i].altname && strcmp(io_cmds[i].altname, name) == 0))
            return &io_cmds[i];
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
static int run_line(const char *text)
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
    if (!st.dev && !(c->flags & CMD_NOFILE_OK)) {
        fprintf(stderr, "no file open, try 'help open'\n");
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
    if ((c->flags & CMD_WRITES) && vdisk_is_read_only(st.dev)) {
        fflush(stdout);
        cli_error("Block node is read-only");
        ret = -1;
        goto out;
    }
    ret = c->fn(argc, argv);
out:
    fflush(stdout);
    free(line);
    return ret;
}

int io_run_script(vdisk_dev *dev, FILE *in, bool prompt, bool files)
{
    char *line = NULL;
    size_t cap = 0;
    int failed = 0;
    vdisk_dev *saved = st.dev;
    bool owned = st.owned;
    if (dev) {
        st.dev = dev;
        st.owned = false;
    }
    st.quit = false;
    host_files = files;
    while (!st.quit) {
        if (prompt) {
            printf("vdisk io> ");
            fflush(stdout);
        }
        if (getline(&line, &cap, in) < 0)
            break;
        if (run_line(line) < 0)
            failed = 1;
    }
    free(line);
    host_files = true;
    settle();
    if (dev) {
        /* A device given here stays the caller's; one opened after it is
         * closed. */
        if (st.dev != dev && st.dev && st.owned)
            vdisk_close(st.dev);
        st.dev = saved;
        st.owned = owned;
    }
    return failed;
}

static void help(void)
{
    printf("usage: vdisk io [-f FMT] [-r] [-n] [-t CACHE] [-i ENGINE] [--debug] [-c CMD]... "
           "[FILE]\n"
           "\n"
           "Runs qemu-io style commands on the image FILE, in order; without -c,\n"
           "reads them from standard input, one a line.  Exits 1 when any command\n"
           "failed.  Without FILE, a command opens one (open).\n"
           "\n"
           "  -f FMT       the image's format (probed when not given)\n"
           "  -r           open read-only\n"
           "  -U           (with -r) open even while another process writes FILE\n"
           "  -n           cache=none: bypass the host page cache (O_DIRECT)\n"
           "  -t CACHE     writeback, none, writethrough, directsync or unsafe\n"
           "  -i ENGINE    io_uring (or uring), threads, or auto\n"
           "  --debug      the library's detailed message on stderr when a request fails\n"
           "  -c CMD       a command (repeatable)\n"
           "\n"
           "Commands:\n");
    for (size_t i = 0; i < n_io_cmds; i++)
        printf("  %s%s%s\n      %s\n", io_cmds[i].name,
               io_cmds[i].args && *io_cmds[i].args ? " " : "",
               io_cmds[i].args ? io_cmds[i].args : "", io_cmds[i].oneline);
    printf("\nOffsets and lengths take the suffixes k, M, G, T, P, E, or 0x for hex;\n"
           "a length is at most 2147483136 bytes, and a range must lie inside the\n"
           "image (long ones are read and written in 16 MiB pieces).\n"
           "write without -P writes the byte 0xcd, with -s FILE the bytes of FILE\n"
           "(repeated); -z writes zeroes (-u may unmap);\n"
           "-f makes the write durable (FUA).  read -P checks every byte (or the\n"
           "range -s/-l of the buffer) against a pattern; -v dumps the data.\n"
           "aio_read and aio_write run at once; what they print comes at aio_flush,\n"
           "sleep, close or the end, the latest first, as qemu-io's\n"
           "completions.  help [CMD] describes the commands as qemu-io does.\n");
}

#define OPT_DEBUG 0x100

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
        {"debug", no_argument, NULL, OPT_DEBUG},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {0};
    bool image_opts = false;
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
        case OPT_DEBUG:
            st.debug = true;
            break;
        case CLI_OPT_OBJECT:
            if (cli_object_add(optarg) < 0)
                goto out;
            break;
        case CLI_OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            fprintf(stderr, "Try 'vdisk io --help' for more information.\n");
            goto out;
        }
    }
    if (optind < argc - 1 || (optind == argc && !ncmds)) {
        cli_error(optind >= argc ? "Expecting an image file name" : "Unexpected argument: %s",
                  argv[argc - 1]);
        goto out;
    }
    st.dev = NULL;
    st.quit = false;
    if (optind == argc - 1) {
        if (image_opts && !(argv[optind] = cli_image_opts(argv[optind], oa.format)))
            goto out;
        if (!(st.dev = cli_open(argv[optind], &oa)))
            goto out;
        st.owned = true;
    }
    int failed = 0;
    if (ncmds) {
        for (int i = 0; i < ncmds && !st.quit; i++)
            if (run_line(cmds[i]) < 0)
                failed = 1;
    } else {
        failed = io_run_script(NULL, stdin, isatty(STDIN_FILENO), true);
    }
    close_image();
    ret = failed;
out:
    free(cmds);
    return ret;
}
