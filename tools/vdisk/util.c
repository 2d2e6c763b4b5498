/* SPDX-License-Identifier: MIT */
/* tools/vdisk/util.c: size printing, JSON, opening images. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "partpath.h"

const char *cli_progname = "vdisk";

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_bad_size_option(const char *where, const char *key)
{
    cli_error("%s%sParameter '%s' expects a non-negative number below 2^64\nOptional suffix "
              "k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, "
              "respectively.", where ? where : "", where ? ": " : "", key);
}

void cli_lib_error(void)
{
    fprintf(stderr, "%s: %s\n", cli_progname, cli_lib_detail());
}

const char *cli_lib_detail(void)
{
    /* The library's messages begin with the call that failed
     * ("vdisk_pread: "): the CLI says what it was doing instead. */
    const char *e = vdisk_get_error(), *p = e;
    if (strncmp(p, "vdisk_", 6) == 0) {
        p += 6;
        while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
            p++;
        if (p[0] == ':' && p[1] == ' ')
            e = p + 2;
    }
    /* Run as qemu-img or qemu-io, the repair a message suggests is named
     * as the user runs it ("qemu-img check -r all"). */
    static const char ours[] = "vdisk check -r";
    const char *at = strcmp(cli_progname, "vdisk") ? strstr(e, ours) : NULL;
    if (!at)
        return e;
    static char buf[4096];
    snprintf(buf, sizeof buf, "%.*sqemu-img%s", (int)(at - e), e, at + 5);
    return buf;
}

unsigned cli_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 30 || m > 30)
        return 99;
    unsigned d[32][32];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

/* The hint kept for a verb whose optstring starts with ':' (it prints its
 * own message, then cli_print_option_hint()). */
static char option_hint[64];

/* After an unrecognized long option ARG ("--name" or "--name=value"): the
 * nearest of LONGOPTS into option_hint, when it is near enough to be a
 * typo; else an empty hint. */
static void suggest_option(const char *arg, const struct option *longopts)
{
    char name[32];
    option_hint[0] = '\0';
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len >= sizeof name || len == 0)
        return;
    memcpy(name, arg, len);
    name[len] = '\0';
    const char *best = NULL;
    unsigned dmin = 99;
    for (const struct option *o = longopts; o && o->name; o++) {
        /* A prefix of several options is glibc's "ambiguous", not a typo. */
        if (strncmp(o->name, name, len) == 0)
            return;
        unsigned d = cli_distance(name, o->name);
        if (d < dmin) {
            dmin = d;
            best = o->name;
        }
    }
    if (best && dmin <= 2 && dmin < len)
        snprintf(option_hint, sizeof option_hint, "Did you mean '--%s'?\n", best);
}

void cli_print_option_hint(void)
{
    fputs(option_hint, stderr);
    option_hint[0] = '\0';
}

/* glibc's own, from here on in this file. */
#undef getopt_long

int cli_getopt_long(int argc, char *const argv[], const char *optstring,
                    const struct option *longopts, int *longindex)
{
    int c = getopt_long(argc, argv, optstring, longopts, longindex);
    if (c == '?' && optopt == 0 && optind > 0 && optind <= argc &&
        strncmp(argv[optind - 1], "--", 2) == 0) {
        suggest_option(argv[optind - 1] + 2, longopts);
        /* glibc has printed its message: the hint follows it. */
        if (opterr && optstring[0] != ':')
            cli_print_option_hint();
    }
    return c;
}

/* The flags of a bitmap as qemu-img names them, in its order. */
const char *bitmap_flag(uint32_t flags, unsigned k)
{
    static const struct { uint32_t bit; const char *name; } names[] = {
        {VDISK_BITMAP_IN_USE, "in-use"},
        {VDISK_BITMAP_AUTO, "auto"},
    };
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((flags & names[i].bit) && k-- == 0)
            return names[i].name;
    return NULL;
}

void print_format_specific(const struct vdisk_info *in)
{
    if (in->compat) {
        bool v3 = strcmp(in->compat, "0.10") != 0;
        printf("Format specific information:\n    compat: %s\n    compression type: %s\n",
               in->compat, in->compression_type);
        if (v3)
            printf("    lazy refcounts: %s\n", in->lazy_refcounts ? "true" : "false");
        if (v3 && in->nb_bitmaps) {
            printf("    bitmaps:\n");
            for (uint32_t b = 0; b < in->nb_bitmaps; b++) {
                const struct vdisk_bitmap_info *bm = &in->bitmaps[b];
                printf("        [%" PRIu32 "]:\n            flags:\n", b);
                const char *f;
                for (unsigned k = 0; (f = bitmap_flag(bm->flags, k)); k++)
                    printf("                [%u]: %s\n", k, f);
                printf("            name: %s\n            granularity: %" PRIu64 "\n", bm->name,
                       bm->granularity);
            }
        }
        printf("    refcount bits: %" PRIu32 "\n", in->refcount_bits);
        if (in->data_file)
            printf("    data file: %s\n", in->data_file);
        if (in->encrypt) {
            printf("    encrypt:\n");
            print_encrypt_human(in->encrypt, 8, true);
        }
        if (in->has_data_file) /* (after encrypt, as qemu-img orders them) */
            printf("    data file raw: %s\n", in->data_file_raw ? "true" : "false");
        if (v3)
            printf("    corrupt: %s\n    extended l2: %s\n", in->corrupt ? "true" : "false",
                   in->extended_l2 ? "true" : "false");
    }
    if (!in->compat && in->encrypt) {
        /* A raw LUKS image: the block alone. */
        printf("Format specific information:\n");
        print_encrypt_human(in->encrypt, 4, false);
    }
    if (in->create_type) {
        printf("Format specific information:\n    cid: %" PRIu32 "\n    parent cid: %" PRIu32
               "\n    create type: %s\n    extents:\n", in->cid, in->parent_cid,
               in->create_type);
        for (uint32_t k = 0; k < in->nb_extents; k++) {
            const struct vdisk_extent_info *e = &in->extents[k];
            printf("        [%" PRIu32 "]:\n", k);
            if (e->compressed)
                printf("            compressed: true\n");
            printf("            virtual size: %" PRIu64 "\n            filename: %s\n",
                   e->virtual_size, e->filename);
            if (e->cluster_size)
                printf("            cluster size: %" PRIu32 "\n", e->cluster_size);
            printf("            format: %s\n", e->format);
        }
    }
}

bool is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

void size_to_str(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    /* The largest unit in which the value is at least 1000/1024 of one. */
    int i = 0;
    while (i < 6 && (double)v / (double)(1ULL << (10 * (i + 1))) >= 1000.0 / 1024.0)
        i++;
    snprintf(buf, len, "%0.3g %sB", (double)v / (double)(1ULL << (10 * i)), units[i]);
}

void cvtstr(double v, char *buf, size_t len)
{
    static const struct { double div; const char *suffix; } units[] = {
        {1152921504606846976.0, " EiB"}, {1125899906842624.0, " PiB"},
        {1099511627776.0, " TiB"}, {1073741824.0, " GiB"}, {1048576.0, " MiB"},
        {1024.0, " KiB"},
    };
    char num[64];
    const char *suffix = " bytes";
    snprintf(num, sizeof num, "%f", v);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (v >= units[i].div) {
            snprintf(num, sizeof num, "%.3f", v / units[i].div);
            suffix = units[i].suffix;
            break;
        }
    }
    char *z = strstr(num, ".000");
    if (z)
        *z = '\0';
    snprintf(buf, len, "%s%s", num, suffix);
}

/*
 * The code point of the UTF-8 sequence at P, as QEMU's JSON writer decodes
 * it, with *LEN the bytes it takes; -1 for a sequence QEMU replaces by
 * U+FFFD: a stray continuation byte, 0xFE or 0xFF, a sequence cut short
 * (*LEN stops before the byte that is not a continuation), an overlong
 * form (but 0xC0 0x80, NUL in modified UTF-8), a surrogate, a
 * noncharacter, or a value past U+10FFFF.  At most 6 bytes are read, and
 * never past the string's NUL.
 */
static long utf8_codepoint(const unsigned char *p, size_t *len)
{
    unsigned c = p[0];
    *len = 1;
    if (c < 0x80)
        return c;
    if (c >= 0xfe || !(c & 0x40))
        return -1;
    size_t n = 0;
    for (unsigned m = 0x80; c & m; m >>= 1)
        n++;
    unsigned long cp = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* a NUL ends it here too */
            return -1;
        cp = cp << 6 | (p[i] & 0x3f);
        *len = i + 1;
    }
    static const unsigned long least[] = {0x80, 0x800, 0x10000, 0x200000, 0x4000000};
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0xfdd0 && cp <= 0xfdef) ||
        (cp & 0xfffe) == 0xfffe || (cp < least[n - 2] && !(cp == 0 && n == 2)))
        return -1;
    return (long)cp;
}

/* Writes C's two-character JSON escape (\" \\ \n \t \r \b \f) and returns
 * true; false for any other C. */
static bool json_short_escape(FILE *f, long c)
{
    static const char from[] = "\"\\\n\t\r\b\f", to[] = "\"\\ntrbf";
    const char *at = c > 0 && c < 0x80 ? strchr(from, (int)c) : NULL;
    if (!at)
        return false;
    fputc('\\', f);
    fputc(to[at - from], f);
    return true;
}

/* As QEMU writes JSON strings: printable ASCII as it is, the usual escapes,
 * every other code point as \uXXXX (upper-case hex; past U+FFFF a surrogate
 * pair), and U+FFFD for each sequence that is not UTF-8: always valid JSON,
 * whatever bytes a file name or an ISO name holds. */
void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len;
        long cp = utf8_codepoint(p, &len);
        p += len;
        if (json_short_escape(f, cp))
            continue;
        if (cp < 0)
            cp = 0xfffd;
        if (cp > 0xffff)
            fprintf(f, "\\u%04lX\\u%04lX", 0xd800 + ((unsigned long)(cp - 0x10000) >> 10),
                    0xdc00 + ((unsigned long)(cp - 0x10000) & 0x3ff));
        else if (cp < 0x20 || cp >= 0x7f)
            fprintf(f, "\\u%04lX", (unsigned long)cp);
        else
            fputc((int)cp, f);
    }
    fputc('"', f);
}

void json_string_bytes(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (json_short_escape(f, *p))
            continue;
        if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

char *cli_image_opts(const char *list, const char *format)
{
    if (format) {
        cli_error("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    char *out = NULL, *item = malloc(strlen(list) + 1);
    size_t size = 0;
    FILE *f = item ? open_memstream(&out, &size) : NULL;
    if (!f) {
        free(item);
        cli_error("Out of memory");
        return NULL;
    }
    fputs("json:{", f);
    bool first = true, ok = true;
    for (const char *p = list; *p && ok;) {
        /* One KEY=VALUE item, ",," being a comma. */
        size_t n = 0;
        for (; *p; p++) {
            if (*p == ',') {
                if (p[1] != ',') {
                    p++;
                    break;
                }
                p++;
            }
            item[n++] = *p;
        }
        item[n] = '\0';
        if (!n)
            continue;
        char *eq = strchr(item, '=');
        const char *key = item, *value = eq ? eq + 1 : item;
        if (eq) {
            *eq = '\0';
        } else if (first) {
            key = "file"; /* as in qemu-img: the first item names "file" */
        } else {
            cli_error("Invalid parameter '%s' in --image-opts (expected KEY=VALUE)", item);
            ok = false;
            break;
        }
        fputs(first ? "" : ", ", f);
        /* The bytes as they are: a file name need not be UTF-8. */
        json_string_bytes(f, key);
        fputs(": ", f);
        json_string_bytes(f, value);
        first = false;
    }
    fputc('}', f);
    fclose(f);
    free(item);
    if (!ok) {
        free(out);
        return NULL;
    }
    /* Kept until the program ends (the verb's argv points to it). */
    static char *kept[8];
    static unsigned nkept;
    if (nkept < sizeof kept / sizeof kept[0])
        kept[nkept++] = out;
    return out;
}

int parse_output_format(const char *v)
{
    if (strcmp(v, "human") == 0)
        return 0;
    if (strcmp(v, "json") == 0)
        return 1;
    cli_error("--output must be used with human or json as argument.");
    return -1;
}

vdisk_dev *cli_open_image(const char *file, const struct open_args *a)
{
    vdisk_options *o = NULL;
    if (vdisk_options_new(&o) < 0) {
        cli_lib_error();
        return NULL;
    }
    int r = 0;
    if (a->format)
        r = vdisk_options_set(o, "format", a->format);
    if (r == 0 && a->read_only)
        r = vdisk_options_set(o, "read-only", "on");
    if (r == 0 && a->cache)
        r = vdisk_options_set(o, "cache", a->cache);
    if (r == 0 && a->engine)
        r = vdisk_options_set(o, "engine", a->engine);
    if (r == 0 && a->repair)
        r = vdisk_options_set(o, "repair", "on");
    if (r == 0 && a->check)
        r = vdisk_options_set(o, "check", "on");
    if (r == 0 && a->backing_confine)
        r = vdisk_options_set(o, "backing-confine", "on");
    if (r == 0 && a->force_share)
        r = vdisk_options_set(o, "force-share", "on");
    for (size_t i = 0; r == 0 && a->options && a->options[i]; i += 2)
        r = vdisk_options_set(o, a->options[i], a->options[i + 1]);
    if (r == 0 && a->no_key)
        r = vdisk_options_set(o, "no-key", "on");
    if (r == 0 && a->key_secret && a->format)
        r = vdisk_options_set(o, strcmp(a->format, "luks") ? "encrypt.key-secret" : "key-secret",
                              a->key_secret);
    if (r == 0)
        r = cli_secrets_apply(o);
    vdisk_dev *dev = NULL;
    if (r == 0)
        r = vdisk_open(&dev, file, o);
    vdisk_options_free(o);
    if (r < 0) {
        if (a->bare_errors)
            cli_error("%s", cli_lib_detail());
        else if (a->unnamed && strcmp(cli_progname, "qemu-io") == 0)
            fprintf(stderr, "qemu-io: can't open: %s\n", cli_lib_detail());
        else
            cli_open_error(file);
        return NULL;
    }
    return dev;
}

void cli_open_error(const char *file)
{
    /* A backing chain that loops: qemu-img info --backing-chain's one line
     * ("Backing file 'X' creates an infinite loop."), without the opens
     * that led to it. */
    const char *loop = cli_lib_detail();
    while (loop && !strncmp(loop, "Could not open backing file: ", 29))
        loop += 29;
    if (vdisk_get_errno() == ELOOP && loop && !strncmp(loop, "Backing file '", 14)) {
        cli_error("%s", loop);
        return;
    }
    /* As qemu-img and qemu-io word it (their scripts grep for it); vdisk
     * itself prints the library's message alone, which names the file. */
    if (strcmp(cli_progname, "qemu-img") == 0)
        fprintf(stderr, "qemu-img: Could not open '%s': %s\n", file, cli_lib_detail());
    else if (strcmp(cli_progname, "qemu-io") == 0)
        fprintf(stderr, "qemu-io: can't open device %s: %s\n", file, cli_lib_detail());
    else
        cli_lib_error();
}

/* NAME, a backing file name stored in IMAGE, as a path to open (malloc'd;
 * NULL when out of memory): resolved against IMAGE's folder, unless it is
 * absolute or names a protocol (a URI, an rbd: image, a json: name), which
 * stands alone. */
static char *beside_path(const char *image, const char *name)
{
    const char *slash = strrchr(image, '/');
    if (name[0] == '/' || strstr(name, "://") || !strncmp(name, "rbd:", 4) ||
        !strncmp(name, "json:", 5) || !slash)
        return strdup(name);
    char *path;
    return asprintf(&path, "%.*s/%s", (int)(slash - image), image, name) < 0 ? NULL : path;
}

vdisk_dev *cli_open_beside(const char *image, const char *name, const char *format)
{
    char *path = beside_path(image, name);
    struct open_args a = {.format = format ? format : "raw", .read_only = true};
    vdisk_dev *d = path ? cli_open(path, &a) : NULL;
    free(path);
    return d;
}

int cli_refuse_backing_without_format(const char *image, const char *name, bool unsafe)
{
    char *path = NULL;
    const char *detected = NULL;
    vdisk_dev *d = NULL;
    vdisk_options *o = NULL;
    if (!unsafe) {
        path = beside_path(image, name);
        if (!path || vdisk_options_new(&o) < 0 || vdisk_options_set(o, "read-only", "on") < 0 ||
            vdisk_open(&d, path, o) < 0) {
            cli_lib_error();
            vdisk_options_free(o);
            free(path);
            return -1;
        }
        detected = vdisk_get_format(d);
    }
    fprintf(stderr, "%s: %s: Backing file specified without backing format\n", cli_progname, image);
    if (detected)
        fprintf(stderr, "Detected format of %s.\n", detected);
    if (d)
        vdisk_close(d);
    vdisk_options_free(o);
    free(path);
    return -1;
}

int cli_check_cache(const char *mode)
{
    static const char *const modes[] = {"none", "writeback", "writethrough",
                                        "directsync", "unsafe"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(mode, modes[i]) == 0)
            return 0;
    cli_error("Invalid cache option: %s", mode);
    return -1;
}

vdisk_dev *cli_open(const char *path, const struct open_args *a)
{
    return cli_open_path(path, a);
}

void *cli_page_alloc(size_t len)
{
    /* Large buffers in transparent huge pages where the kernel has them
     * (madvise mode is Debian's default): a 1 MiB O_DIRECT write from 4 KiB
     * pages needs 256 segments, more than a virtio disk takes in one request
     * (254 here), so the block layer split every such write in two; from
     * one huge page it is one segment and one request. */
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (len >= huge / 2 && len <= SIZE_MAX - huge) {
        size_t n = (len + huge - 1) & ~(huge - 1);
        if (posix_memalign(&p, huge, n) != 0)
            return NULL;
        madvise(p, n, MADV_HUGEPAGE); /* a hint: without it, small pages */
        return p;
    }
    if (posix_memalign(&p, 4096, len ? len : 1) != 0)
        return NULL;
    return p;
}

const char *cli_list_item_end(const char *p)
{
    while (*p && !(*p == ',' && p[1] != ','))
        p += (*p == ',' && p[1] == ',') ? 2 : 1;
    return p;
}

bool cli_is_help_option(const char *list)
{
    for (const char *p = list; p;) {
        const char *e = cli_list_item_end(p);
        size_t n = (size_t)(e - p);
        if ((n == 4 && !strncmp(p, "help", 4)) || (n == 1 && *p == '?'))
            return true;
        p = *e ? e + 1 : NULL;
    }
    return false;
}

int cli_print_create_options(const char *format)
{
    const char *name, *type, *help;
    int r = vdisk_create_option(format, 0, &name, &type, &help);
    if (r < 0) {
        cli_lib_error();
        return 1;
    }
    printf("Supported %s options:\n", format);
    for (unsigned i = 1; r == 1; i++) {
        char left[128];
        snprintf(left, sizeof left, "%s=<%s>", name, type);
        printf("  %-22s - %s\n", left, help);
        r = vdisk_create_option(format, i, &name, &type, &help);
    }
    return 0;
}

int64_t cli_cvtnum(const char *name, const char *value, int64_t min, int64_t max)
{
    uint64_t v;
    int r = vdisk_parse_size(value, 1, &v);
    if (r < 0 && r != -ERANGE) {
        cli_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
        cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (r == -ERANGE || v > (uint64_t)max || (int64_t)v < min) {
        cli_error("Invalid %s specified. Must be between %lld and %lld.", name, (long long)min,
                  (long long)max);
        return -1;
    }
    return (int64_t)v;
}

bool cli_valid_option_list(const char *list)
{
    size_t len = strlen(list), commas = 0;
    while (commas < len && list[len - 1 - commas] == ',')
        commas++;
    if (!list[0] || list[0] == ',' || commas % 2) {
        cli_error("Invalid option list: %s", list);
        return false;
    }
    return true;
}
