/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_io.c: vdisk io, a qemu-io (7.2) compatible subset for
 * scripts and tests: read, readv, write, writev, aio_read, aio_write,
 * aio_flush, discard, flush, alloc, map, info, length, truncate, sleep,
 * open, reopen, close, sigraise, break, remove_break, resume, wait_break,
 * help and quit; -s (writes to a temporary
 * overlay) and -C (copy-on-read).  Without an image argument, "open"
 * opens one, given by a name or by qemu-io's options (open -o
 * driver=qcow2,file.filename=PATH, driver=file,filename=PATH, ...; the
 * blkdebug and copy-on-read filters are stood in for, see
 * io_from_options()).
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
 * them do not fail the command, as in qemu-io.  Once a breakpoint is set
 * (break, remove_break, resume, wait_break: blkdebug's), aio_write's plain
 * writes are truly in flight until one of those points.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* write -s, open, sleep and sigraise use the host; fuzz/io_cmds.c turns
 * that off. */
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

/*
 * Breakpoints (break, remove_break, resume, wait_break: blkdebug's, see
 * vdisk_debug_break): once one is set, aio_write runs its plain writes
 * through a queue of their own (AQ), truly in flight, so that a write held
 * at a breakpoint leaves the commands after it running.  Their completions
 * come in at aio_flush, sleep, wait_break, close and the end, as qemu-io's
 * come in its event loop; a resume lets the held write go on.
 */
static vdisk_queue *aq;
static unsigned aq_inflight;
static FILE *aq_out; /* what their completions print, in their order */
static char *aq_text;
static size_t aq_len;
#define IO_MAX_TAGS 16
static char tags[IO_MAX_TAGS][32]; /* breakpoints set (to let go at close) */
static unsigned ntags;

static void print_pending(void);

/* Completes what is in flight on AQ (none held at a breakpoint: close
 * and reopen resume those first). */
static void aq_drain(void)
{
    while (aq && aq_inflight)
        if (vdisk_queue_reap(aq, 1, -1) < 0)
            break;
}

/* Prints the completions waiting, the latest first (after those in flight). */
static void settle(void)
{
    aq_drain();
    print_pending();
}

static void print_pending(void)
{
    if (aq_out) {
        fclose(aq_out);
        aq_out = NULL;
        fputs(aq_text ? aq_text : "", stdout);
        free(aq_text);
        aq_text = NULL;
    }
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
 * qemu-io checks them (else a message and false). */
static bool vmstate_aligned(uint64_t off, uint64_t len)
{
    if (off % 512)
        printf("%" PRIu64 " is not a sector-aligned value for 'offset'\n", off);
    else if (len % 512)
        printf("%" PRIu64 " is not a sector-aligned value for 'count'\n", len);
    else
        return true;
    return false;
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

static int copy_on_read(uint64_t off, uint64_t len);

struct rd_args {
    const char *what;     /* "read", or "readv" (readv, aio_read) in messages */
    bool pflag;
    int pattern;
    uint64_t poff, plen;  /* the part of the buffer -P checks */
    bool verbose, quiet, csv;
    bool vmstate;         /* read -b: the VM state area, not the disk */
    FILE *o;              /* where the result goes */
};

/* Reads LEN bytes at OFF (in the buffers LENS[NLENS], when it fits in one
 * piece), checks and reports them: read's, readv's and aio_read's work. */
static int read_range(uint64_t off, uint64_t len, const uint64_t *lens, int nlens,
                      const struct rd_args *a)
{
    FILE *o = a->o;
    if (!a->vmstate &&
        !in_device(o, nlens > 1 ? "vdisk_preadv" : "vdisk_pread", a->what, off, len))
        return -1;
    int cr = a->vmstate ? 0 : copy_on_read(off, len);
    if (cr < 0) {
        fprintf(o, "%s failed: %s\n", a->what, strerror(-cr));
        debug_detail();
        return -1;
    }
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
        int r = !n ? 0 : a->vmstate ? vdisk_vmstate_pread(st.dev, buf, n, off + done)
                       : cnt > 1 ? vdisk_preadv(st.dev, iov, cnt, off + done)
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
    bool vmstate;         /* write -b: the VM state area, not the disk */
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
    if (!a->vmstate && !in_device(o, a->compressed ? "vdisk_pwrite_compressed" :
                                  nlens > 1 ? "vdisk_pwritev" : "vdisk_pwrite", a->what, off,
                                  len))
        return -1;
    /* write -c: one call per cluster, as qemu-io's write -c does it. */
    uint64_t cs = 0;
    if (a->compressed && !a->vmstate) {
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
        if (a->vmstate) {
            r = n ? vdisk_vmstate_pwrite(st.dev, buf, n, off + done) : 0;
        } else if (a->compressed) {
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
    if (vmstate && !vmstate_aligned(off, len))
        return -1;
    a.vmstate = vmstate;
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
    if (vmstate && !vmstate_aligned(off, len))
        return -1;
    a.vmstate = vmstate; /* (before -c, as qemu-io) */
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

/* An aio_write in flight on AQ. */
struct aio_write {
    uint8_t *buf;
    uint64_t off, len;
    struct timespec t0;
    bool quiet, csv;
};

static void aio_write_done(void *user, int r)
{
    struct aio_write *w = user;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    aq_inflight--;
    /* (printed in the order they complete, as qemu-io's) */
    FILE *o = aq_out ? aq_out : (aq_out = open_memstream(&aq_text, &aq_len));
    if (!o)
        o = stdout;
    if (r < 0)
        fprintf(o, "aio_write failed: %s\n", strerror(-r));
    else if (!w->quiet)
        report(o, "wrote", elapsed(&w->t0, &t1), w->off, w->len, w->csv);
    free(w->buf);
    free(w);
}

/* aio_write's plain writes once a breakpoint is set: started on AQ, done
 * later (aio_write_done). */
static int aio_write_async(uint64_t off, uint64_t len, const uint64_t *lens, int nlens,
                           const struct wr_args *a)
{
    if (!in_device(stdout, "vdisk_pwritev", a->what, off, len))
        return -1;
    struct aio_write *w = calloc(1, sizeof *w);
    uint8_t *buf = w ? alloc_buf(len ? len : 1, a->pattern) : NULL;
    if (!buf) {
        free(w);
        printf("out of memory\n");
        return -1;
    }
    *w = (struct aio_write){buf, off, len, {0, 0}, a->quiet, a->csv};
    struct iovec iov[MAX_IOV];
    int cnt = make_iov(iov, buf, len, lens, nlens);
    clock_gettime(CLOCK_MONOTONIC, &w->t0);
    int r = vdisk_aio_pwritev(aq, iov, cnt, off, 0, aio_write_done, w);
    if (r == 0) {
        aq_inflight++;
        vdisk_queue_submit(aq);
        return 0;
    }
    free(buf);
    free(w);
    printf("aio_write failed: %s\n", strerror(-r));
    return 0;
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
    if (aq && !a.zero && !a.fua && total <= MAX_REQUEST)
        return aio_write_async(off, total, lens, n, &a);
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

/* break EVENT TAG: qemu-io's (blkdebug's breakpoint). */
static int do_break(int argc, char **argv)
{
    (void)argc;
    if (!host_files) {
        /* (fuzz/io_cmds.c: a held request makes a later command on its
         * clusters wait for ever, as in qemu-io) */
        printf("Could not set breakpoint: %s\n", strerror(EPERM));
        return -1;
    }
    if (!aq && vdisk_queue_new(&aq, st.dev, 64) < 0) {
        printf("Could not set breakpoint: %s\n", strerror(-vdisk_get_errno()));
        return -1;
    }
    int r = vdisk_debug_break(st.dev, argv[1], argv[2]);
    if (r < 0) {
        printf("Could not set breakpoint: %s\n", strerror(-r));
        return -1;
    }
    if (ntags < IO_MAX_TAGS)
        snprintf(tags[ntags++], sizeof tags[0], "%s", argv[2]);
    return 0;
}

static int do_remove_break(int argc, char **argv)
{
    (void)argc;
    int r = vdisk_debug_remove_break(st.dev, argv[1]);
    if (r < 0) {
        printf("Could not remove breakpoint %s: %s\n", argv[1], strerror(-r));
        return -1;
    }
    return 0;
}

static int do_resume(int argc, char **argv)
{
    (void)argc;
    int r = vdisk_debug_resume(st.dev, argv[1]);
    if (r < 0) {
        printf("Could not resume request: %s\n", strerror(-r));
        return -1;
    }
    printf("blkdebug: Resuming request '%s'\n", argv[1]);
    return 0;
}

/* wait_break TAG: until a request is held at the breakpoint TAG, the
 * requests in flight coming in meanwhile; qemu-io waits for ever, vdisk io
 * for 30 seconds (fuzz/io_cmds.c: not at all). */
static int do_wait_break(int argc, char **argv)
{
    (void)argc;
    for (int i = 0; i < 3000; i++) {
        int r = vdisk_debug_is_suspended(st.dev, argv[1]);
        if (r < 0) {
            printf("wait_break: %s\n", strerror(-r));
            return -1;
        }
        if (r == 1) {
            printf("blkdebug: Suspended request '%s'\n", argv[1]);
            return 0;
        }
        if (!host_files)
            break;
        if (aq && aq_inflight) {
            vdisk_queue_reap(aq, 1, 10);
        } else {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    printf("wait_break: no request reached the breakpoint %s\n", argv[1]);
    return -1;
}

/* Before the image closes: writes held at breakpoints go on, those in
 * flight complete, the queue goes (it holds the image). */
static void aq_release(void)
{
    for (unsigned i = 0; st.dev && i < ntags; i++)
        if (vdisk_debug_is_suspended(st.dev, tags[i]) == 1)
            vdisk_debug_resume(st.dev, tags[i]);
    ntags = 0;
    settle();
    if (aq)
        vdisk_queue_free(aq);
    aq = NULL;
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
    const char *format = vdisk_get_format(st.dev);
    printf("format name: %s\n", format);
    if (!strcmp(format, "null-co") || !strcmp(format, "null-aio")) {
        /* QEMU's null drivers are protocols: qemu-io prints the name again
         * as the protocol's, then fails without a word (they have no
         * driver info). */
        printf("format name: %s\n", format);
        return -1;
    }
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
    if (ms > 0 && aq && aq_inflight && host_files) /* (completions during the sleep) */
        vdisk_queue_reap(aq, aq_inflight, (int)(ms > INT32_MAX ? INT32_MAX : ms));
    if (ms > 0)
        print_pending(); /* (qemu-io's completions come in a sleep, not in "sleep 0") */
    if (host_files) {
        struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return 0;
}

static void forget_open(void);

static void close_image(void)
{
    aq_release();
    if (st.dev && st.owned) {
        vdisk_close(st.dev);
        forget_open();
    }
    st.dev = NULL;
}

static int do_close(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    close_image();
    return 0;
}

/* ---- Opening: qemu-io's open options -------------------------------------- */

#define MAX_QOPTS 32

/* -o KEY=VALUE,... as qemu-io takes them ("," between two, ",," a comma
 * in a value, a KEY alone is KEY=on); the keys used are marked. */
struct qopts {
    unsigned n;
    char *key[MAX_QOPTS], *val[MAX_QOPTS];
    bool used[MAX_QOPTS];
};

static void qopts_free(struct qopts *q)
{
    for (unsigned i = 0; i < q->n; i++)
        free(q->key[i]); /* the value is in the same allocation */
    q->n = 0;
}

static int qopts_parse(const char *s, struct qopts *q)
{
    while (*s) {
        char *item = malloc(strlen(s) + 4);
        if (!item) {
            cli_error("out of memory");
            return -1;
        }
        size_t n = 0;
        for (; *s; s++) {
            if (*s == ',') {
                if (s[1] != ',') {
                    s++;
                    break;
                }
                s++;
            }
            item[n++] = *s;
        }
        item[n] = '\0';
        if (n == 0) {
            free(item);
            continue;
        }
        if (q->n == MAX_QOPTS) {
            free(item);
            cli_error("Too many options (at most %d)", MAX_QOPTS);
            return -1;
        }
        char *eq = strchr(item, '=');
        if (eq) {
            *eq = '\0';
            q->val[q->n] = eq + 1;
        } else {
            memcpy(item + n + 1, "on", 3);
            q->val[q->n] = item + n + 1;
        }
        q->key[q->n] = item;
        q->used[q->n++] = false;
    }
    return 0;
}

/* The value of PREFIX KEY (the last one given), marked used; or NULL. */
static const char *qget(struct qopts *q, const char *prefix, const char *key)
{
    const char *v = NULL;
    size_t pl = strlen(prefix);
    for (unsigned i = 0; i < q->n; i++)
        if (strncmp(q->key[i], prefix, pl) == 0 && strcmp(q->key[i] + pl, key) == 0) {
            v = q->val[i];
            q->used[i] = true;
        }
    return v;
}

/* on/off as QEMU's options take them: 1, 0, or -1. */
static int qbool(const char *v)
{
    if (strcmp(v, "on") == 0)
        return 1;
    if (strcmp(v, "off") == 0)
        return 0;
    return -1;
}

#define MAX_LIBOPTS 8
#define MAX_INJECT 8

/* How the image was opened: what reopen opens again, and what the reads
 * and writes of the session do besides (copy-on-read). */
struct io_open {
    char *path;           /* the name the library opens */
    char *name;           /* the FILE argument, for messages; NULL: none */
    char *format;         /* NULL: probed */
    char *proto;          /* the protocol driver named (file, host_device,
                           * host_cdrom), or NULL */
    char *cache, *engine;
    bool read_only, force_share, snapshot;
    bool cor, cor_filter; /* copy-on-read: -C, or the copy-on-read driver */
    char *libopt[2 * MAX_LIBOPTS + 1]; /* KEY, VALUE, ..., NULL */
    unsigned nlibopt;
    char *node_name[3];   /* node-name, file.node-name, backing.node-name */
    char *backing_driver;
    /* qcow2's cache options, checked as QEMU checks them */
    char *cache_size, *l2_cache_size, *refcount_cache_size, *l2_entry_size;
    /* blkdebug's inject-error rules on the event cor_write: the copy-on-read
     * write that covers the byte fails with the error */
    unsigned ninject;
    uint64_t inject_off[MAX_INJECT];
    int inject_errno[MAX_INJECT];
    bool inject_once[MAX_INJECT];
    struct qopts *unused;  /* during the first open: the options to check
                            * for one that nothing took */
    bool reopening;        /* reopen: failures without "can't open device" */
};

static struct io_open cur; /* how st.dev was opened (when vdisk io opened it) */

static void io_open_free(struct io_open *io)
{
    free(io->path);
    free(io->name);
    free(io->format);
    free(io->proto);
    free(io->cache);
    free(io->engine);
    for (unsigned i = 0; i < 2 * io->nlibopt; i++)
        free(io->libopt[i]);
    for (int i = 0; i < 3; i++)
        free(io->node_name[i]);
    free(io->backing_driver);
    free(io->cache_size);
    free(io->l2_cache_size);
    free(io->refcount_cache_size);
    free(io->l2_entry_size);
    memset(io, 0, sizeof *io);
}

static void forget_open(void)
{
    io_open_free(&cur);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int add_libopt(struct io_open *io, const char *key, const char *val)
{
    if (io->nlibopt == MAX_LIBOPTS) {
        cli_error("Too many options");
        return -1;
    }
    io->libopt[2 * io->nlibopt] = strdup(key);
    io->libopt[2 * io->nlibopt + 1] = strdup(val);
    io->libopt[2 * ++io->nlibopt] = NULL;
    return 0;
}

/* The value of the library option KEY, or NULL. */
static const char *get_libopt(const struct io_open *io, const char *key)
{
    for (unsigned i = 0; i < io->nlibopt; i++)
        if (strcmp(io->libopt[2 * i], key) == 0)
            return io->libopt[2 * i + 1];
    return NULL;
}

/* Sets the library option KEY to VAL (NULL: removes it). */
static int set_libopt(struct io_open *io, const char *key, const char *val)
{
    for (unsigned i = 0; i < io->nlibopt; i++) {
        if (strcmp(io->libopt[2 * i], key) != 0)
            continue;
        if (val) {
            char *v = strdup(val);
            free(io->libopt[2 * i + 1]);
            io->libopt[2 * i + 1] = v;
            return 0;
        }
        free(io->libopt[2 * i]);
        free(io->libopt[2 * i + 1]);
        io->nlibopt--;
        memmove(io->libopt + 2 * i, io->libopt + 2 * i + 2,
                (2 * (io->nlibopt - i) + 1) * sizeof io->libopt[0]);
        return 0;
    }
    return val ? add_libopt(io, key, val) : 0;
}

static void open_failed(const struct io_open *io, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void open_failed(const struct io_open *io, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (io->reopening)
        cli_error("%s", msg);
    else if (io->name)
        cli_error("can't open device %s: %s", io->name, msg);
    else
        cli_error("can't open: %s", msg);
}

/* A size as QEMU's options read it: a number, maybe with a fraction, and
 * an optional suffix k, M, G, T (powers of 1024); -1 when not one. */
static int qsize(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || s[0] == '-')
        return -1;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1048576.0; end++; break;
    case 'G': mul = 1073741824.0; end++; break;
    case 'T': mul = 1099511627776.0; end++; break;
    case 'b': case 'B': end++; break;
    default: break;
    }
    if (*end || v * mul >= 18446744073709549568.0)
        return -1;
    *out = (uint64_t)(v * mul);
    return 0;
}

/*
 * blkdebug's config file: vdisk io honours [inject-error] sections on the
 * event "cor_write" (its own copy-on-read writes) with sector, errno and
 * once; any other rule is refused, as vdisk io cannot inject it.
 */
static int read_blkdebug_config(struct io_open *io, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        open_failed(io, "Could not read blkdebug config file: %s", strerror(errno));
        return -1;
    }
    char line[512];
    int ret = 0;
    bool in_rule = false;
    char event[64] = "";
    uint64_t sector = UINT64_MAX;
    int err = EIO;
    bool once = false;
    for (;;) {
        bool eof = !fgets(line, sizeof line, f);
        char *p = eof ? line : line + strspn(line, " \t");
        if (eof || *p == '[') {
            if (in_rule) {
                if (strcmp(event, "cor_write") != 0) {
                    open_failed(io, "blkdebug: vdisk io injects errors on the event "
                                "cor_write only, not '%s'", event);
                    ret = -1;
                    break;
                }
                if (io->ninject == MAX_INJECT) {
                    open_failed(io, "blkdebug: too many rules");
                    ret = -1;
                    break;
                }
                io->inject_off[io->ninject] = sector == UINT64_MAX ? UINT64_MAX : sector * 512;
                io->inject_errno[io->ninject] = err;
                io->inject_once[io->ninject++] = once;
            }
            if (eof)
                break;
            in_rule = strncmp(p, "[inject-error]", 14) == 0;
            if (!in_rule) {
                p[strcspn(p, "\n")] = '\0';
                open_failed(io, "blkdebug: vdisk io does not take the section %s", p);
                ret = -1;
                break;
            }
            event[0] = '\0';
            sector = UINT64_MAX;
            err = EIO;
            once = false;
            continue;
        }
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        /* KEY = "VALUE" */
        char *eq = strchr(p, '=');
        if (!eq || !in_rule) {
            open_failed(io, "blkdebug: cannot read the config line %s", p);
            ret = -1;
            break;
        }
        char *k_end = eq;
        while (k_end > p && (k_end[-1] == ' ' || k_end[-1] == '\t'))
            k_end--;
        *k_end = '\0';
        char *v = eq + 1 + strspn(eq + 1, " \t");
        v[strcspn(v, "\n")] = '\0';
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t' || v[vl - 1] == '\r'))
            v[--vl] = '\0';
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = '\0';
            v++;
        }
        char *end;
        if (strcmp(p, "event") == 0) {
            snprintf(event, sizeof event, "%s", v);
        } else if (strcmp(p, "sector") == 0) {
            sector = strtoull(v, &end, 0);
        } else if (strcmp(p, "errno") == 0) {
            err = (int)strtol(v, &end, 0);
        } else if (strcmp(p, "once") == 0) {
            once = strcmp(v, "on") == 0 || strcmp(v, "true") == 0;
        } else if (strcmp(p, "immediately") != 0) {
            open_failed(io, "blkdebug: vdisk io does not take the rule key '%s'", p);
            ret = -1;
            break;
        }
    }
    fclose(f);
    return ret;
}

/* The options of a blkdebug layer under PREFIX that change only how the
 * requests are cut, and its config file.  Over the format (TOP) the
 * library cuts them as QEMU does (its open options limits.KEY); below it,
 * where vdisk's format sends its requests whole, they are checked only. */
static int blkdebug_layer(struct qopts *q, const char *prefix, bool top, struct io_open *io)
{
    static const char *const limits[] = {"align", "max-transfer", "opt-write-zero",
                                         "max-write-zero", "opt-discard", "max-discard"};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        const char *v = qget(q, prefix, limits[i]);
        uint64_t n;
        if (v && qsize(v, &n) < 0) {
            open_failed(io, "Parameter '%s' expects a non-negative number below 2^64", limits[i]);
            return -1;
        }
        char key[32];
        snprintf(key, sizeof key, "limits.%s", limits[i]);
        if (v && top && add_libopt(io, key, v) < 0)
            return -1;
    }
    const char *conf = qget(q, prefix, "config");
    return conf && *conf ? read_blkdebug_config(io, conf) : 0;
}

/* The image formats the library opens (lib/device.c's registry). */
static bool is_format_driver(const char *d)
{
    static const char *const formats[] = {"raw", "qcow2", "luks", "vdi", "qed", "vmdk", "vpc",
                                          "vhdx", "bochs", "cloop", "dmg", "parallels",
                                          "compress"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(d, formats[i]) == 0)
            return true;
    return false;
}

static bool is_protocol_driver(const char *d)
{
    return strcmp(d, "file") == 0 || strcmp(d, "host_device") == 0 ||
           strcmp(d, "null-co") == 0 || strcmp(d, "null-aio") == 0 ||
           strcmp(d, "host_cdrom") == 0;
}

/*
 * qemu-io's open -o OPTIONS [FILE] as what the library opens: the layers
 * named by "driver" (a format, over a protocol) with the filters vdisk io
 * can stand in for taken out: blkdebug (its request limits, and
 * inject-error on cor_write), copy-on-read (done here), and a
 * "blkdebug:CONFIG:FILE" name.  Fills IO; prints the error.
 */
/* Whether the blkdebug config file named by CONF (up to its ':') has a
 * rule for the event cor_write. */
static bool config_names_cor_write(const char *conf)
{
    char *name = strndup(conf, strcspn(conf, ":"));
    FILE *f = name ? fopen(name, "r") : NULL;
    free(name);
    bool found = false;
    char line[512];
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, "cor_write") != NULL;
    if (f)
        fclose(f);
    return found;
}

static int io_from_options(struct qopts *q, const char *file, struct io_open *io)
{
    const char *fn = NULL;
    bool blkdebug_name = false, lib_blkdebug = false;
    const char *inner_format = NULL; /* a format inside the format */
    /* blkdebug:CONFIG:IMAGE: the library's blkdebug (events, rules,
     * breakpoints, align); vdisk io's own stand-in layer only where the
     * config asks for copy-on-read's event (cor_write), which the library
     * lacks. */
    lib_blkdebug = file && strncmp(file, "blkdebug:", 9) == 0 && strchr(file + 9, ':');
    if (lib_blkdebug && file[9] != ':' && config_names_cor_write(file + 9)) {
        lib_blkdebug = false;
        const char *c = file + 9, *colon = strchr(c, ':');
        if (colon > c) {
            char *conf = strndup(c, (size_t)(colon - c));
            int r = conf ? read_blkdebug_config(io, conf) : -1;
            free(conf);
            if (r < 0)
                return -1;
        }
        fn = colon + 1;
        blkdebug_name = true;
    }
    const char *ro = qget(q, "", "read-only");
    if (ro) {
        if (qbool(ro) < 0) {
            open_failed(io, "Parameter 'read-only' expects 'on' or 'off'");
            return -1;
        }
        io->read_only = qbool(ro);
    }
    char prefix[128] = "";
    bool have_format = false;
    const char *proto = NULL, *filename = NULL;
    for (unsigned depth = 0;; depth++) {
        if (depth == 8 || strlen(prefix) > sizeof prefix - 16) {
            open_failed(io, "Too many nested drivers");
            return -1;
        }
        const char *drv = qget(q, prefix, "driver");
        const char *nn = qget(q, prefix, "node-name");
        if (nn && depth == 0)
            io->node_name[0] = strdup(nn);
        else if (nn && have_format && !io->node_name[1])
            io->node_name[1] = strdup(nn);
        if (!drv && lib_blkdebug && (depth > 0 || have_format)) {
            /* The library's blkdebug named by FILE: its options here
             * (align: the alignment it asks of the layers above). */
            if (blkdebug_layer(q, prefix, false, io) < 0)
                return -1;
            const char *align = qget(q, prefix, "align");
            if (align && add_libopt(io, "blkdebug.align", align) < 0)
                return -1;
            break;
        }
        if ((drv && strcmp(drv, "blkdebug") == 0) || (!drv && blkdebug_name)) {
            const char *below = drv ? qget(q, prefix, "image.driver") : NULL;
            bool top = !have_format && below && is_format_driver(below);
            if (blkdebug_layer(q, prefix, top, io) < 0)
                return -1;
            blkdebug_name = false;
            if (drv)
                strcat(prefix, "image.");
            else
                break;
            continue;
        }
        if (drv && strcmp(drv, "copy-on-read") == 0) {
            io->cor = io->cor_filter = true;
            strcat(prefix, "file.");
            continue;
        }
        /* No driver at the top, and no filename there: the format is
         * probed, and takes its options all the same. */
        bool probed = !drv && depth == 0 && !qget(q, prefix, "filename");
        if (probed || (drv && is_format_driver(drv))) {
            if (probed) {
                have_format = true;
                goto format_options;
            }
            if (have_format) {
                /* An image stored inside another image (file.driver a
                 * format): one level, as the library opens it. */
                if (inner_format || !drv) {
                    open_failed(io, "vdisk io cannot open a %s image inside a %s image inside "
                                "a %s image", drv ? drv : "probed", inner_format, io->format);
                    return -1;
                }
                inner_format = drv;
                if (add_libopt(io, "file.format", drv) < 0)
                    return -1;
                strcat(prefix, "file.");
                continue;
            }
            have_format = true;
            io->format = strdup(drv);
        format_options:
            if (!drv || strcmp(drv, "qcow2") == 0) {
                io->cache_size = dup_or_null(qget(q, prefix, "cache-size"));
                io->l2_cache_size = dup_or_null(qget(q, prefix, "l2-cache-size"));
                io->refcount_cache_size = dup_or_null(qget(q, prefix, "refcount-cache-size"));
                io->l2_entry_size = dup_or_null(qget(q, prefix, "l2-cache-entry-size"));
                /* An external data file given by name (data-file.filename). */
                const char *df = qget(q, prefix, "data-file.filename");
                if (df && add_libopt(io, "data-file", df) < 0)
                    return -1;
            }
            /* An encrypted image's key: the ID of a --object secret. */
            const char *ks_key = drv && strcmp(drv, "luks") == 0 ? "key-secret"
                                                                 : "encrypt.key-secret";
            const char *ks = qget(q, prefix, ks_key);
            if (ks && add_libopt(io, ks_key, ks) < 0)
                return -1;
            const char *bd = qget(q, prefix, "backing.driver");
            if (bd) {
                io->backing_driver = strdup(bd);
                if (add_libopt(io, "backing.format", bd) < 0)
                    return -1;
            }
            io->node_name[2] = dup_or_null(qget(q, prefix, "backing.node-name"));
            /* The backing file's key (the library passes it down), and its name
             * when the user gives one. */
            static const char *const bks[] = {"backing.encrypt.key-secret", "backing.key-secret",
                                              "backing.file.filename"};
            for (size_t i = 0; i < sizeof bks / sizeof bks[0]; i++) {
                const char *v = qget(q, prefix, bks[i]);
                if (v && add_libopt(io, bks[i], v) < 0)
                    return -1;
            }
            strcat(prefix, "file.");
            continue;
        }
        if (drv && !is_protocol_driver(drv)) {
            open_failed(io, "Unknown driver '%s'", drv);
            return -1;
        }
        /* the protocol */
        proto = drv;
        filename = qget(q, prefix, "filename");
        const char *locking = qget(q, prefix, "locking");
        if (locking && add_libopt(io, "locking", locking) < 0)
            return -1;
        break;
    }
    if (filename && file) {
        open_failed(io, "Can't specify 'file' and 'filename' options at the same time");
        return -1;
    }
    if (!filename)
        filename = fn ? fn : file;
    if (!filename) {
        open_failed(io, "A block device must be specified for \"file\"");
        return -1;
    }
    io->path = strdup(filename);
    io->proto = dup_or_null(proto);
    if (proto && !have_format) /* the protocol's bytes (null-co's: the library knows) */
        io->format = strdup(strncmp(proto, "null-", 5) == 0 ? proto : "raw");
    return 0;
}

/* QEMU's protocol drivers' checks of the kind of file: "file" wants a
 * regular file, host_device and host_cdrom a device. */
static int check_protocol(const struct io_open *io)
{
    struct stat sb;
    if (!io->proto || stat(io->path, &sb) < 0)
        return 0;
    if (S_ISDIR(sb.st_mode) && !io->read_only) {
        open_failed(io, "Could not open '%s': %s", io->path, strerror(EISDIR));
        return -1;
    }
    if (strcmp(io->proto, "file") == 0 && !S_ISREG(sb.st_mode)) {
        open_failed(io, "'file' driver requires '%s' to be a regular file", io->path);
        return -1;
    }
    if (strcmp(io->proto, "file") != 0 && !S_ISCHR(sb.st_mode) && !S_ISBLK(sb.st_mode)) {
        open_failed(io, "'%s' driver requires '%s' to be either a character or block device",
                    io->proto, io->path);
        return -1;
    }
    return 0;
}

/* qcow2's cache-size, l2-cache-size, refcount-cache-size and
 * l2-cache-entry-size: QEMU's checks (the cluster size known), and the
 * sizes the library takes. */
static int check_cache_options(const struct io_open *io, vdisk_dev *d)
{
    if (!io->cache_size && !io->l2_cache_size && !io->refcount_cache_size && !io->l2_entry_size)
        return 0;
    if (strcmp(vdisk_get_format(d), "qcow2") != 0) {
        open_failed(io, "Block format '%s' does not support the option '%s'",
                    vdisk_get_format(d), io->refcount_cache_size ? "refcount-cache-size"
                    : io->cache_size ? "cache-size" : io->l2_entry_size
                    ? "l2-cache-entry-size" : "l2-cache-size");
        return -1;
    }
    uint64_t all = 0, l2 = 0, rc = 0, entry = 0;
    const char *bad = NULL;
    if (io->cache_size && qsize(io->cache_size, &all) < 0)
        bad = "cache-size";
    else if (io->l2_cache_size && qsize(io->l2_cache_size, &l2) < 0)
        bad = "l2-cache-size";
    else if (io->refcount_cache_size && qsize(io->refcount_cache_size, &rc) < 0)
        bad = "refcount-cache-size";
    else if (io->l2_entry_size && qsize(io->l2_entry_size, &entry) < 0)
        bad = "l2-cache-entry-size";
    if (bad) {
        open_failed(io, "Parameter '%s' expects a non-negative number below 2^64", bad);
        return -1;
    }
    if (io->cache_size) {
        if (io->l2_cache_size && io->refcount_cache_size) {
            open_failed(io, "cache-size, l2-cache-size and refcount-cache-size may not be set "
                        "at the same time");
            return -1;
        }
        if (io->l2_cache_size && l2 > all) {
            open_failed(io, "l2-cache-size may not exceed cache-size");
            return -1;
        }
        if (rc > all) {
            open_failed(io, "refcount-cache-size may not exceed cache-size");
            return -1;
        }
    }
    struct vdisk_info in = {.struct_size = sizeof in};
    uint32_t cs = vdisk_get_info(d, &in) == 0 ? in.cluster_size : 65536;
    if (io->l2_entry_size && (entry < 512 || entry > cs || (entry & (entry - 1)))) {
        open_failed(io, "L2 cache entry size must be a power of two between 512 and the "
                    "cluster size (%" PRIu32 ")", cs);
        return -1;
    }
    return 0;
}

/* The library's cache sizes for IO's qcow2 cache options (QEMU's split of
 * cache-size between the L2 and the refcount cache). */
static int cache_libopts(struct io_open *io)
{
    /* (for a format given as qcow2: the library's raw driver takes no such
     * option; a probed qcow2 image has its checks and the default sizes) */
    if (!io->format || strcmp(io->format, "qcow2") != 0)
        return 0;
    uint64_t all = 0, l2 = 0, rc = 0;
    bool has_l2 = io->l2_cache_size && qsize(io->l2_cache_size, &l2) == 0;
    bool has_rc = io->refcount_cache_size && qsize(io->refcount_cache_size, &rc) == 0;
    if (io->cache_size && qsize(io->cache_size, &all) == 0) {
        if (has_l2 && !has_rc && l2 <= all) {
            rc = all - l2;
            has_rc = true;
        } else if (has_rc && !has_l2 && rc <= all) {
            l2 = all - rc;
            has_l2 = true;
        } else if (!has_l2 && !has_rc) {
            l2 = all;
            has_l2 = true;
        }
    }
    char v[32];
    const uint64_t max = 1ULL << 40;
    if (has_l2) {
        snprintf(v, sizeof v, "%" PRIu64, l2 < max ? l2 : max);
        if (add_libopt(io, "l2-cache-size", v) < 0)
            return -1;
    }
    if (has_rc) {
        snprintf(v, sizeof v, "%" PRIu64, rc < max ? rc : max);
        if (add_libopt(io, "refcount-cache-size", v) < 0)
            return -1;
    }
    return 0;
}

/* The image for -s (snapshot): a temporary qcow2 overlay of IO's image,
 * deleted once open, so that writes never reach the image. */
static vdisk_dev *open_snapshot(const struct io_open *io, const struct open_args *oa)
{
    struct open_args ro = *oa;
    ro.read_only = true;
    vdisk_dev *base = cli_open(io->path, &ro);
    if (!base)
        return NULL;
    uint64_t size = vdisk_get_size(base);
    char *format = strdup(vdisk_get_format(base));
    vdisk_close(base);
    char *abs = NULL;
    if (io->path[0] == '/' || strstr(io->path, "://") || strncmp(io->path, "json:", 5) == 0)
        abs = strdup(io->path);
    else
        abs = realpath(io->path, NULL);
    const char *dir = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/vl.XXXXXX", dir && *dir ? dir : "/var/tmp");
    int fd = format && abs ? mkstemp(tmp) : -1;
    vdisk_dev *d = NULL;
    if (fd < 0) {
        open_failed(io, "Could not get temporary filename: %s", strerror(errno));
        goto out;
    }
    close(fd);
    vdisk_options *o = NULL;
    int r = vdisk_options_new(&o);
    if (r == 0)
        r = vdisk_options_set(o, "backing_file", abs);
    if (r == 0)
        r = vdisk_options_set(o, "backing_fmt", format);
    if (r == 0)
        r = vdisk_create(tmp, "qcow2", size, o);
    vdisk_options_free(o);
    if (r < 0) {
        open_failed(io, "Could not create temporary overlay '%s': %s", tmp, cli_lib_detail());
        unlink(tmp);
        goto out;
    }
    struct open_args top = *oa;
    top.format = "qcow2";
    d = cli_open(tmp, &top);
    unlink(tmp);
out:
    free(format);
    free(abs);
    return d;
}

/* The options nothing took: QEMU's error, naming the layer's driver. */
static int unused_options(struct qopts *q, const struct io_open *io, const char *format)
{
    for (unsigned i = 0; i < q->n; i++) {
        const char *k = q->key[i];
        /* the protocol's, before the open (FORMAT NULL), the others after */
        if (q->used[i] || (!format && strncmp(k, "file.", 5) != 0))
            continue;
        if (strncmp(k, "file.", 5) == 0)
            open_failed(io, "Block protocol '%s' doesn't support the option '%s'",
                        io->proto ? io->proto : "file", k + 5);
        else
            open_failed(io, "Block format '%s' does not support the option '%s'", format, k);
        return -1;
    }
    return 0;
}

static void no_warning(void *opaque, const char *msg)
{
    (void)opaque;
    (void)msg;
}

/* Opens the image IO describes (st.dev); 0, or -1 with the error printed. */
static int open_io(struct io_open *io)
{
    if (check_protocol(io) < 0)
        return -1;
    if (io->cor && io->read_only) {
        open_failed(io, io->cor_filter ? "Block node is read-only"
                                       : "Can't use copy-on-read on read-only device");
        return -1;
    }
    struct open_args oa = {
        .format = io->format, .read_only = io->read_only, .cache = io->cache,
        .engine = io->engine, .force_share = io->force_share,
        .options = (const char *const *)io->libopt, .unnamed = !io->name,
        .bare_errors = io->reopening,
    };
    vdisk_dev *d = io->snapshot ? open_snapshot(io, &oa) : cli_open(io->path, &oa);
    if (!d)
        return -1;
    if (check_cache_options(io, d) < 0 ||
        (io->unused && unused_options(io->unused, io, vdisk_get_format(d)) < 0)) {
        vdisk_close(d);
        return -1;
    }
    st.dev = d;
    st.owned = true;
    return 0;
}

/* qemu-io's open flags and main options that say how to open. */
struct open_flags {
    const char *format, *cache, *engine;
    bool read_only, force_share, snapshot, cor;
};

/* Opens FILE (or NULL: the image the options name) with F and the -o
 * OPTIONS (or NULL); 0, or -1 with the error printed. */
static int open_image(const char *file, const char *options, const struct open_flags *f)
{
    struct io_open io = {0};
    struct qopts q = {0};
    int ret = -1;
    io.name = dup_or_null(file);
    io.read_only = f->read_only;
    io.force_share = f->force_share;
    io.snapshot = f->snapshot;
    io.cor = f->cor;
    /* qemu-io's default: writethrough (each write durable before the next
     * command, so that a crash, sigraise 9, leaves what it wrote) */
    io.cache = strdup(f->cache ? f->cache : "writethrough");
    io.engine = dup_or_null(f->engine);
    if (options && qopts_parse(options, &q) < 0)
        goto out;
    if (f->format && !qget(&q, "", "driver")) {
        /* -f FMT is driver=FMT */
        if (q.n == MAX_QOPTS) {
            cli_error("Too many options (at most %d)", MAX_QOPTS);
            goto out;
        }
        char *item = malloc(strlen(f->format) + 8);
        if (!item)
            goto out;
        strcpy(item, "driver");
        strcpy(item + 7, f->format);
        q.key[q.n] = item;
        q.val[q.n] = item + 7;
        q.used[q.n++] = false;
    }
    io.unused = &q;
    if (io_from_options(&q, file, &io) < 0 || unused_options(&q, &io, NULL) < 0 ||
        cache_libopts(&io) < 0 || open_io(&io) < 0)
        goto out;
    io.unused = NULL;
    io_open_free(&cur);
    cur = io;
    memset(&io, 0, sizeof io);
    ret = 0;
out:
    qopts_free(&q);
    io_open_free(&io);
    return ret;
}

/* open [-rnkCsU] [-t cache] [-d discard] [-i aio] [-o options] [-f fmt]
 * [FILE]: -f FMT is vdisk's own. */
static int do_open(int argc, char **argv)
{
    struct open_flags f = {0};
    const char *options = NULL;
    int c;
    optind = 0;
    while ((c = getopt(argc, argv, "+snCrkUt:d:i:o:f:")) != -1) {
        switch (c) {
        case 's':
            f.snapshot = true;
            break;
        case 'C':
            f.cor = true;
            break;
        case 'k':
            break;
        case 'd':
            if (strcmp(optarg, "ignore") && strcmp(optarg, "off") && strcmp(optarg, "unmap") &&
                strcmp(optarg, "on")) {
                cli_error("Invalid discard option: %s", optarg);
                return -1;
            }
            break;
        case 'n':
            f.cache = "none";
            break;
        case 'r':
            f.read_only = true;
            break;
        case 'U':
            f.force_share = true;
            break;
        case 't':
            if (cli_check_cache(optarg) < 0)
                return -1;
            f.cache = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "io_uring") == 0)
                f.engine = "uring";
            else if (strcmp(optarg, "threads") == 0)
                f.engine = "threads";
            else if (strcmp(optarg, "native") != 0) {
                cli_error("Invalid aio option: %s", optarg);
                return -1;
            }
            break;
        case 'o':
            options = optarg;
            break;
        case 'f':
            f.format = optarg;
            break;
        default:
            usage_of("open");
            return -1;
        }
    }
    if (optind < argc - 1 || (optind == argc && !options)) {
        usage_of("open");
        return -1;
    }
    if (st.dev) {
        cli_error("file open already, try 'help close'");
        return -1;
    }
    if (!host_files) {
        printf("%s: %s\n", optind < argc ? argv[optind] : options, strerror(EPERM));
        return -1;
    }
    return open_image(optind < argc ? argv[optind] : NULL, options, &f);
}

/* reopen [-r|-w] [-c cache] [-o options]: the image opened again with
 * the changes; the options that cannot change refused as QEMU refuses
 * them. */
static int do_reopen(int argc, char **argv)
{
    bool has_rw = false, read_only = vdisk_is_read_only(st.dev), has_cache = false;
    const char *cache = NULL;
    struct qopts q = {0};
    char *old_range[2] = {NULL, NULL};
    int c, ret = -1;
    optind = 0;
    while ((c = getopt(argc, argv, "+c:o:rw")) != -1) {
        switch (c) {
        case 'c':
            if (cli_check_cache(optarg) < 0)
                goto out;
            cache = optarg;
            has_cache = true;
            break;
        case 'o':
            if (qopts_parse(optarg, &q) < 0)
                goto out;
            break;
        case 'r':
        case 'w':
            if (has_rw) {
                cli_error("Only one -r/-w option may be given");
                goto out;
            }
            has_rw = true;
            read_only = c == 'r';
            break;
        default:
            usage_of("reopen");
            goto out;
        }
    }
    if (optind != argc) {
        usage_of("reopen");
        goto out;
    }
    const char *ro = qget(&q, "", "read-only");
    if (ro && has_rw) {
        cli_error("Cannot set both -r/-w and 'read-only'");
        goto out;
    }
    const char *direct = qget(&q, "", "cache.direct"), *noflush = qget(&q, "", "cache.no-flush");
    if ((direct || noflush) && has_cache) {
        cli_error("Cannot set both -c and the cache options");
        goto out;
    }
    static const char *const bools[] = {"read-only", "cache.no-flush", "cache.direct",
                                        "auto-read-only"};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        const char *v = qget(&q, "", bools[i]);
        if (v && qbool(v) < 0) {
            cli_error("Parameter '%s' expects 'on' or 'off'", bools[i]);
            goto out;
        }
    }
    if (ro)
        read_only = qbool(ro);
    if (direct || noflush) {
        bool d = direct ? qbool(direct) : false, nf = noflush ? qbool(noflush) : false;
        cache = nf ? (d ? "none" : "unsafe") : d ? "none" : "writeback";
    }
    /* What cannot change: the drivers and node names of the image, its
     * protocol and its backing file. */
    struct vdisk_info in = {.struct_size = sizeof in};
    const char *bfmt = vdisk_get_info(st.dev, &in) == 0 ? in.backing_format : NULL;
    /* (a raw image with an offset or a size is raw to QEMU, and to vdisk
     * its offset driver) */
    const char *format = vdisk_get_format(st.dev);
    bool raw = format && (!strcmp(format, "raw") || !strcmp(format, "offset"));
    const struct {
        const char *prefix, *driver;
        int node;
    } layers[] = {
        {"", raw ? "raw" : format, 0},
        {"file.", cur.proto ? cur.proto : "file", 1},
        {"backing.", bfmt ? bfmt : cur.backing_driver, 2},
    };
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const char *v = qget(&q, layers[i].prefix, "driver");
        if (v && (!layers[i].driver || strcmp(v, layers[i].driver) != 0)) {
            cli_error("Cannot change the option 'driver'");
            goto out;
        }
        const char *old = cur.node_name[layers[i].node];
        v = qget(&q, layers[i].prefix, "node-name");
        if (v && (!old || strcmp(v, old) != 0)) {
            cli_error("Cannot change the option 'node-name'");
            goto out;
        }
    }
    /* qcow2's lazy-refcounts: vdisk follows the image's header, so only
     * the value it has already is taken (QEMU can turn them on for the
     * session) */
    const char *lazy = in.compat ? qget(&q, "", "lazy-refcounts") : NULL;
    if (lazy && qbool(lazy) < 0) {
        cli_error("Parameter 'lazy-refcounts' expects 'on' or 'off'");
        goto out;
    }
    if (lazy && qbool(lazy) != in.lazy_refcounts) {
        cli_error("Cannot change the option 'lazy-refcounts'");
        goto out;
    }
    /* raw's range of its file: the values given replace the old ones, the
     * others stay (qemu-io's reopen keeps the options it is not given) */
    static const char *const range_keys[] = {"raw.offset", "raw.size"};
    const char *range[2] = {raw ? qget(&q, "", "offset") : NULL, raw ? qget(&q, "", "size") : NULL};
    for (unsigned i = 0; i < q.n; i++) {
        if (q.used[i])
            continue;
        const char *k = strrchr(q.key[i], '.');
        cli_error("Cannot change the option '%s'", k ? k + 1 : q.key[i]);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        uint64_t n;
        if (range[i] && qsize(range[i], &n) < 0) {
            cli_bad_size_option(NULL, range_keys[i] + 4);
            goto out;
        }
    }
    if (cur.snapshot) {
        cli_error("vdisk io cannot reopen an image opened with -s (its overlay is gone)");
        goto out;
    }
    if (!st.owned) {
        cli_error("vdisk io cannot reopen this image");
        goto out;
    }
    /* Closed and opened again with the changes; back as it was when that
     * fails. */
    for (int i = 0; i < 2; i++) {
        if (!range[i])
            continue;
        old_range[i] = dup_or_null(get_libopt(&cur, range_keys[i]));
        if (set_libopt(&cur, range_keys[i], range[i]) < 0) {
            if (i)
                set_libopt(&cur, range_keys[0], old_range[0]);
            goto out;
        }
    }
    aq_release();
    bool old_ro = cur.read_only;
    char *old_cache = cur.cache;
    cur.read_only = read_only;
    cur.cache = dup_or_null(cache ? cache : old_cache);
    vdisk_close(st.dev);
    st.dev = NULL;
    /* (the warnings of the first open, a guessed format, were given) */
    vdisk_set_warning_handler(no_warning, NULL);
    cur.reopening = true;
    int opened = open_io(&cur);
    cur.reopening = false;
    if (opened == 0) {
        free(old_cache);
        ret = 0;
        goto restore;
    }
    free(cur.cache);
    cur.cache = old_cache;
    cur.read_only = old_ro;
    for (int i = 0; i < 2; i++)
        if (range[i])
            set_libopt(&cur, range_keys[i], old_range[i]);
    if (open_io(&cur) < 0)
        io_open_free(&cur);
restore:
    vdisk_set_warning_handler(NULL, NULL);
out:
    free(old_range[0]);
    free(old_range[1]);
    qopts_free(&q);
    return ret;
}

/*
 * Copy-on-read (-C, or the copy-on-read driver), as QEMU does it: before
 * a read, the clusters it touches that the image itself does not hold are
 * read (from the backing file, or zeroes) and written into it, as zeroes
 * where they read as zeroes.  0, or -errno.
 */
static int copy_on_read(uint64_t off, uint64_t len)
{
    if (!cur.cor || !len || !st.dev)
        return 0;
    struct vdisk_info in = {.struct_size = sizeof in};
    uint64_t cs = vdisk_get_info(st.dev, &in) == 0 && in.cluster_size ? in.cluster_size : 512;
    uint64_t size = vdisk_get_size(st.dev);
    uint64_t start = off / cs * cs, end = (off + len + cs - 1) / cs * cs;
    if (end > size)
        end = size;
    uint8_t *buf = NULL;
    int ret = 0;
    for (uint64_t o = start; o < end && ret == 0;) {
        struct vdisk_extent e;
        if (vdisk_block_status(st.dev, o, end - o, &e) < 0)
            return -vdisk_get_errno();
        uint64_t n = e.length < end - o ? e.length : end - o;
        if (n == 0)
            break;
        if (!(e.flags & VDISK_EXT_ALLOCATED) || e.depth != 0) {
            if (!buf && !(buf = cli_page_alloc(IO_CHUNK)))
                return -ENOMEM;
            for (uint64_t p = o; p < o + n && ret == 0;) {
                uint64_t k = o + n - p < IO_CHUNK ? o + n - p : IO_CHUNK;
                for (unsigned i = 0; i < cur.ninject; i++) {
                    if (cur.inject_errno[i] && (cur.inject_off[i] == UINT64_MAX ||
                        (cur.inject_off[i] >= p && cur.inject_off[i] < p + k))) {
                        ret = -cur.inject_errno[i];
                        if (cur.inject_once[i])
                            cur.inject_errno[i] = 0;
                        break;
                    }
                }
                if (ret)
                    break;
                if (vdisk_pread(st.dev, buf, k, p) < 0) {
                    ret = -vdisk_get_errno();
                    break;
                }
                bool zero = buf[0] == 0 && memcmp(buf, buf + 1, k - 1) == 0;
                int r = zero ? vdisk_write_zeroes(st.dev, p, k, 0) : vdisk_pwrite(st.dev, buf, k, p);
                if (r < 0)
                    ret = -vdisk_get_errno();
                p += k;
            }
        }
        o += n;
    }
    free(buf);
    return ret;
}

/* sigraise SIGNAL: raise(SIGNAL), after what was printed is out. */
static int do_sigraise(int argc, char **argv)
{
    (void)argc;
    uint64_t sig;
    if (parse_num(argv[1], &sig) < 0)
        return -1;
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n", argv[1]);
        return -1;
    }
    if (!host_files) {
        /* (fuzz/io_cmds.c: the process is not the script's to end) */
        printf("sigraise: %s\n", strerror(EPERM));
        return -1;
    }
    settle();
    fflush(stdout);
    fflush(stderr);
    raise((int)sig);
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

static const char help_reopen[] =
    " Changes the open options of an already opened image\n"
    "\n"
    " Example:\n"
    " 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image\n"
    "\n"
    " -r, -- Reopen the image read-only\n"
    " -w, -- Reopen the image read-write\n"
    " -c, -- Change the cache mode to the given value\n"
    " -o, -- Changes block driver options (cf. 'open' command)\n"
    "\n";

static const char help_sigraise[] =
    " raises the given signal\n"
    "\n"
    " Example:\n"
    " 'sigraise 15' - raises SIGTERM\n"
    "\n"
    " Invokes raise(signal), where \"signal\" is the mandatory integer argument\n"
    " given to sigraise.\n"
    "\n";

/* In qemu-io's (alphabetical) order; qemu-io's abort is left out. */
static const struct io_cmd io_cmds[] = {
    {"aio_flush", NULL, 0, 0, 0, NULL, "completes all outstanding aio requests", NULL,
     do_aio_flush},
    {"aio_read", NULL, 2, -1, 0, "[-Ciqv] [-P pattern] off len [len..]",
     "asynchronously reads a number of bytes", help_aio_read, do_aio_read},
    {"aio_write", NULL, 2, -1, CMD_WRITES, "[-Cfiquz] [-P pattern] off len [len..]",
     "asynchronously writes a number of bytes", help_aio_write, do_aio_write},
    {"alloc", NULL, 1, 2, 0, "offset [count]", "checks if offset is allocated in the file",
     NULL, do_alloc},
    {"break", NULL, 2, 2, 0, "event tag",
     "sets a breakpoint on event and tags the stopped request as tag", NULL, do_break},
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
    {"remove_break", NULL, 1, 1, 0, "tag", "remove a breakpoint by tag", NULL,
     do_remove_break},
    {"reopen", NULL, 0, -1, 0, "[(-r|-w)] [-c cache] [-o options]",
     "reopens an image with new options", help_reopen, do_reopen},
    {"resume", NULL, 1, 1, 0, "tag", "resumes the request tagged as tag", NULL, do_resume},
    {"sigraise", NULL, 1, 1, CMD_NOFILE_OK, "signal", "raises a signal", help_sigraise,
     do_sigraise},
    {"sleep", NULL, 1, 1, CMD_NOFILE_OK, NULL, "waits for the given value in milliseconds",
     NULL, do_sleep},
    {"truncate", "t", 1, 3, CMD_WRITES, "[-m prealloc_mode] off",
     "truncates the current file at the given offset", NULL, do_truncate},
    {"wait_break", NULL, 1, 1, 0, "tag", "waits for the suspension of a request", NULL,
     do_wait_break},
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
            printf("%s> ", strcmp(cli_progname, "qemu-io") == 0 ? "qemu-io" : "vdisk io");
            fflush(stdout);
        }
        if (getline(&line, &cap, in) < 0)
            break;
        if (run_line(line) < 0)
            failed = 1;
    }
    free(line);
    aq_release();
    host_files = true;
    if (dev) {
        /* A device given here stays the caller's; one opened after it is
         * closed. */
        if (st.dev != dev && st.dev && st.owned) {
            vdisk_close(st.dev);
            forget_open();
        }
        st.dev = saved;
        st.owned = owned;
    }
    return failed;
}

static void help(void)
{
    printf("usage: vdisk io [-f FMT] [-r] [-s] [-C] [-n] [-t CACHE] [-i ENGINE] [--debug] "
           "[-c CMD]... [FILE]\n"
           "\n"
           "Runs qemu-io style commands on the image FILE, in order; without -c,\n"
           "reads them from standard input, one a line.  Exits 1 when any command\n"
           "failed.  Without FILE, a command opens one (open).\n"
           "\n"
           "  -f FMT       the image's format (probed when not given)\n"
           "  -r           open read-only\n"
           "  -U           (with -r) open even while another process writes FILE\n"
           "  -s           snapshot: writes go to a temporary overlay, FILE is kept\n"
           "  -C           copy-on-read: what is read from the backing file is\n"
           "               copied into FILE\n"
           "  -n           cache=none: bypass the host page cache (O_DIRECT)\n"
           "  -t CACHE     writethrough (the default, as qemu-io's), writeback, none,\n"
           "               directsync or unsafe\n"
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
        {"snapshot", no_argument, NULL, 's'},
        {"copy-on-read", no_argument, NULL, 'C'},
        {"discard", required_argument, NULL, 'd'},
        {"native-aio", no_argument, NULL, 'k'},
        {"misalign", no_argument, NULL, 'm'},
        {"object", required_argument, NULL, CLI_OPT_OBJECT},
        {"image-opts", no_argument, NULL, CLI_OPT_IMAGE_OPTS},
        {NULL, 0, NULL, 0},
    };
    struct open_flags f = {0};
    bool image_opts = false;
    const char **cmds = calloc((size_t)argc + 1, sizeof *cmds);
    int ncmds = 0;
    if (!cmds)
        return 1;
    int c, ret = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hf:c:rnt:i:UsCd:km", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f':
            f.format = optarg;
            break;
        case 'c':
            cmds[ncmds++] = optarg;
            break;
        case 'r':
            f.read_only = true;
            break;
        case 'n':
            f.cache = "none";
            break;
        case 't':
            f.cache = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "io_uring") == 0 || strcmp(optarg, "uring") == 0)
                f.engine = "uring";
            else if (strcmp(optarg, "threads") == 0 || strcmp(optarg, "auto") == 0)
                f.engine = optarg;
            else if (strcmp(optarg, "native") != 0) {
                cli_error("invalid aio engine '%s' (expected io_uring, threads or auto)", optarg);
                goto out;
            }
            break;
        case 'U':
            f.force_share = true;
            break;
        case 's':
            f.snapshot = true;
            break;
        case 'C':
            f.cor = true;
            break;
        case 'd':
            if (strcmp(optarg, "ignore") && strcmp(optarg, "off") && strcmp(optarg, "unmap") &&
                strcmp(optarg, "on")) {
                cli_error("Invalid discard option: %s", optarg);
                goto out;
            }
            break;
        case 'k':
        case 'm':
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
    if (optind < argc - 1) {
        cli_error("Unexpected argument: %s", argv[argc - 1]);
        goto out;
    }
    st.dev = NULL;
    st.quit = false;
    /* --image-opts: the image is given by options alone, as open -o. */
    if (optind == argc - 1 && open_image(image_opts ? NULL : argv[optind],
                                         image_opts ? argv[optind] : NULL, &f) < 0)
        goto out;
    int failed = 0;
    if (ncmds) {
        for (int i = 0; i < ncmds && !st.quit; i++)
            if (run_line(cmds[i]) < 0)
                failed = 1;
    } else {
        /* (qemu-io prompts whether its input is a terminal or not) */
        failed = io_run_script(NULL, stdin,
                               isatty(STDIN_FILENO) || strcmp(cli_progname, "qemu-io") == 0,
                               true);
    }
    close_image();
    ret = failed;
out:
    free(cmds);
    return ret;
}
