/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_iso.c: vdisk iso: look inside ISO 9660 images (or an ISO
 * inside any image: IMAGE:pN, qcow2) without mounting them.
 *   info     the volume descriptors as isoinfo -d prints them, namespaces,
 *            El Torito entries
 *   ls       a directory; -R: every path, one a line, as bsdtar tf prints them
 *   cat      a file's bytes (zisofs files uncompressed)
 *   extract  a file or a directory tree into DEST, with Rock Ridge modes;
 *            devices, FIFOs and sockets are skipped, each named on stderr
 * A path table that disagrees with the tree is a warning (vdisk_iso_warning):
 * info shows it, the other commands print it on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_DEPTH 128

static void help(void)
{
    printf("usage: vdisk iso COMMAND [OPTIONS] ISO [ARGS]\n"
           "\n"
           "ISO 9660 images (Rock Ridge, Joliet, El Torito), read without mounting them.\n"
           "ISO may be any image vdisk opens, or a partition of one (IMAGE:pN).\n"
           "\n"
           "  info [--output=human|json] ISO    volume descriptors (as isoinfo -d), namespaces,\n"
           "                                    El Torito entries\n"
           "  ls [-R] [-l] [--output=human|json] ISO [PATH]\n"
           "                                    a directory; -R: the whole tree below it, one\n"
           "                                    path a line (as bsdtar tf); -l: long listing\n"
           "  cat ISO PATH                      a file's bytes on standard output\n"
           "  extract ISO PATH DEST             a file, or a directory tree, into DEST\n"
           "\n"
           "zisofs files (Rock Ridge ZF entries, as mkzftree and xorriso --zisofs make them)\n"
           "are decompressed.  extract keeps Rock Ridge permission bits (setuid, setgid and\n"
           "sticky too) and skips devices, FIFOs and sockets, naming each on standard error.\n"
           "A path table that disagrees with the directory tree is a warning: the tree is\n"
           "used, as every ISO reader does.\n"
           "\n"
           "Options for every command:\n"
           "  -f, --format=FMT          the image's format (probed when not given)\n"
           "  -n, --namespace=NS        auto (default: Rock Ridge, else Joliet, else ISO 9660),\n"
           "                            rockridge, joliet or iso9660\n");
}

struct iopts {
    const char *format;
    int ns;
    int json;
    bool recursive, lng;
};

static vdisk_iso *open_iso(const char *path, const struct iopts *o, bool quiet)
{
    struct open_args oa = {.format = o->format, .read_only = true};
    vdisk_dev *dev = cli_open(path, &oa);
    if (!dev)
        return NULL;
    vdisk_iso *iso;
    int r = vdisk_iso_open(&iso, dev, o->ns);
    vdisk_close(dev);
    if (r < 0) {
        cli_lib_error();
        return NULL;
    }
    if (!quiet && vdisk_iso_warning(iso))
        fprintf(stderr, "%s: warning: %s\n", cli_progname, vdisk_iso_warning(iso));
    return iso;
}

static const char *ns_name(int ns)
{
    switch (ns) {
    case VDISK_ISO_NS_ROCKRIDGE: return "rockridge";
    case VDISK_ISO_NS_JOLIET: return "joliet";
    case VDISK_ISO_NS_ISO9660: return "iso9660";
    default: return "auto";
    }
}

static const char *platform_name(unsigned p)
{
    switch (p) {
    case 0x00: return "x86";
    case 0x01: return "PowerPC";
    case 0x02: return "Mac";
    case 0xef: return "EFI";
    default: return "unknown";
    }
}

static const char *media_name(unsigned m)
{
    switch (m) {
    case 0: return "no emulation";
    case 1: return "1.2M floppy";
    case 2: return "1.44M floppy";
    case 3: return "2.88M floppy";
    case 4: return "hard disk";
    default: return "unknown";
    }
}

/* ---- info -------------------------------------------------------------------- */

static int do_info(vdisk_iso *iso, const struct iopts *o)
{
    struct vdisk_iso_info in = {.struct_size = sizeof in};
    vdisk_iso_get_info(iso, &in);
    unsigned nb = vdisk_iso_boot_count(iso);
    if (o->json) {
        printf("{\n");
#define JS(key, val) do { printf("    \"%s\": ", key); json_string(stdout, val); printf(",\n"); } while (0)
        JS("system-id", in.system_id);
        JS("volume-id", in.volume_id);
        JS("volume-set-id", in.volume_set_id);
        JS("publisher-id", in.publisher_id);
        JS("preparer-id", in.preparer_id);
        JS("application-id", in.application_id);
        JS("copyright-file-id", in.copyright_file);
        JS("abstract-file-id", in.abstract_file);
        JS("bibliographic-file-id", in.bibliographic_file);
        JS("creation-date", in.creation_date);
        JS("modification-date", in.modification_date);
        JS("expiration-date", in.expiration_date);
        JS("effective-date", in.effective_date);
#undef JS
        printf("    \"volume-set-size\": %" PRIu32 ",\n", in.volume_set_size);
        printf("    \"volume-sequence-number\": %" PRIu32 ",\n", in.volume_sequence);
        printf("    \"logical-block-size\": %" PRIu32 ",\n", in.block_size);
        printf("    \"volume-size\": %" PRIu32 ",\n", in.volume_space_size);
        printf("    \"path-table-size\": %" PRIu32 ",\n", in.path_table_size);
        printf("    \"volume-descriptors\": %u,\n", in.descriptors);
        printf("    \"namespaces\": [");
        const char *sep = "";
        if (in.namespaces & VDISK_ISO_HAS_ROCKRIDGE)
            printf("%s\"rockridge\"", sep), sep = ", ";
        if (in.namespaces & VDISK_ISO_HAS_JOLIET)
            printf("%s\"joliet\"", sep), sep = ", ";
        printf("%s\"iso9660\"],\n", sep);
        printf("    \"joliet-level\": %d,\n", in.joliet_level);
        printf("    \"boot-catalog\": %" PRIu32 ",\n", in.boot_catalog);
        printf("    \"el-torito\": [");
        for (unsigned i = 0; i < nb; i++) {
            struct vdisk_iso_boot b = {.struct_size = sizeof b};
            vdisk_iso_boot_get(iso, i, &b);
            printf("%s\n        {\"index\": %u, \"bootable\": %s, \"platform\": %u, "
                   "\"platform-name\": \"%s\", \"id\": ", i ? "," : "", b.index,
                   b.bootable ? "true" : "false", b.platform, platform_name(b.platform));
            json_string(stdout, b.id);
            printf(", \"media\": %u, \"media-name\": \"%s\", \"load-segment\": %u, "
                   "\"system-type\": %u, \"sector-count\": %u, \"load-rba\": %" PRIu32
                   ", \"image-offset\": %" PRIu64 ", \"image-size\": %" PRIu64 "}",
                   b.media, media_name(b.media), b.load_segment, b.system_type, b.sector_count,
                   b.load_rba, b.image_offset, b.image_size);
        }
        printf("%s],\n", nb ? "\n    " : "");
        printf("    \"warnings\": [");
        if (vdisk_iso_warning(iso))
            json_string(stdout, vdisk_iso_warning(iso));
        printf("]\n}\n");
        return 0;
    }
    printf("CD-ROM is in ISO 9660 format\n");
    printf("System id: %s\n", in.system_id);
    printf("Volume id: %s\n", in.volume_id);
    printf("Volume set id: %s\n", in.volume_set_id);
    printf("Publisher id: %s\n", in.publisher_id);
    printf("Data preparer id: %s\n", in.preparer_id);
    printf("Application id: %s\n", in.application_id);
    printf("Copyright File id: %s\n", in.copyright_file);
    printf("Abstract File id: %s\n", in.abstract_file);
    printf("Bibliographic File id: %s\n", in.bibliographic_file);
    printf("Volume set size is: %" PRIu32 "\n", in.volume_set_size);
    printf("Volume set sequence number is: %" PRIu32 "\n", in.volume_sequence);
    printf("Logical block size is: %" PRIu32 "\n", in.block_size);
    printf("Volume size is: %" PRIu32 "\n", in.volume_space_size);
    printf("Creation date: %s\n", in.creation_date);
    printf("Modification date: %s\n", in.modification_date);
    printf("Volume descriptors: %u (%u supplementary)\n", in.descriptors, in.svd_count);
    printf("Namespaces:%s%s iso9660\n", in.namespaces & VDISK_ISO_HAS_ROCKRIDGE ? " rockridge" : "",
           in.namespaces & VDISK_ISO_HAS_JOLIET ? " joliet" : "");
    printf("Namespace in use: %s\n", ns_name(vdisk_iso_namespace(iso)));
    if (in.joliet_level)
        printf("Joliet with UCS level %d found\n", in.joliet_level);
    if (in.rr_version)
        printf("Rock Ridge signatures version %d found\n", in.rr_version);
    if (in.boot_catalog)
        printf("El Torito boot catalog is in sector %" PRIu32 "\n", in.boot_catalog);
    for (unsigned i = 0; i < nb; i++) {
        struct vdisk_iso_boot b = {.struct_size = sizeof b};
        vdisk_iso_boot_get(iso, i, &b);
        printf("El Torito entry %u: %s, platform 0x%02x (%s), %s, load segment 0x%x, "
               "system type %u, %u sectors, image at sector %" PRIu32 " (%" PRIu64
               " bytes)%s%s\n",
               i, b.bootable ? "bootable" : "not bootable", b.platform,
               platform_name(b.platform), media_name(b.media), b.load_segment, b.system_type,
               b.sector_count, b.load_rba, b.image_size, b.id[0] ? ", id " : "", b.id);
    }
    if (vdisk_iso_warning(iso))
        printf("Warning: %s\n", vdisk_iso_warning(iso));
    return 0;
}

/* ---- ls ------------------------------------------------------------------------ */

static void mode_str(uint32_t m, char *s)
{
    switch (m & S_IFMT) {
    case S_IFDIR: s[0] = 'd'; break;
    case S_IFLNK: s[0] = 'l'; break;
    case S_IFCHR: s[0] = 'c'; break;
    case S_IFBLK: s[0] = 'b'; break;
    case S_IFIFO: s[0] = 'p'; break;
    case S_IFSOCK: s[0] = 's'; break;
    default: s[0] = '-';
    }
    const char *rwx = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        s[1 + i] = m & (0400u >> i) ? rwx[i] : '-';
    if (m & S_ISUID)
        s[3] = s[3] == 'x' ? 's' : 'S';
    if (m & S_ISGID)
        s[6] = s[6] == 'x' ? 's' : 'S';
    if (m & S_ISVTX)
        s[9] = s[9] == 'x' ? 't' : 'T';
    s[10] = '\0';
}

struct lsstate {
    vdisk_iso *iso;
    const struct iopts *o;
    bool first;
    uint32_t stack[MAX_DEPTH + 1];
};

static void print_entry(struct lsstate *st, const char *path, const struct vdisk_iso_entry *e)
{
    char mode[11];
    mode_str(e->mode, mode);
    if (st->o->json) {
        printf("%s\n    {\"path\": ", st->first ? "" : ",");
        st->first = false;
        json_string(stdout, path);
        printf(", \"type\": \"%s\", \"mode\": \"%s\", \"nlink\": %" PRIu32 ", \"uid\": %" PRIu32
               ", \"gid\": %" PRIu32 ", \"size\": %" PRIu64 ", \"mtime\": %" PRId64
               ", \"extent\": %" PRIu32 ", \"extents\": %u",
               e->type == VDISK_ISO_DIR ? "directory" : e->type == VDISK_ISO_SYMLINK ? "symlink"
               : e->type == VDISK_ISO_FILE ? "file" : "other",
               mode, e->nlink, e->uid, e->gid, e->size, e->mtime, e->extent, e->extents);
        if (e->compressed)
            printf(", \"compression\": \"zisofs\", \"stored-size\": %" PRIu64, e->stored_size);
        if (e->type == VDISK_ISO_SYMLINK) {
            printf(", \"target\": ");
            json_string(stdout, e->target);
        }
        printf("}");
        return;
    }
    if (!st->o->lng) {
        printf("%s\n", path);
        return;
    }
    char date[32];
    time_t t = (time_t)e->mtime;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
    else
        snprintf(date, sizeof date, "?");
    printf("%s %3" PRIu32 " %-6" PRIu32 " %-6" PRIu32 " %10" PRIu64 " %s %s%s%s\n", mode,
           e->nlink, e->uid, e->gid, e->size, date, path,
           e->type == VDISK_ISO_SYMLINK ? " -> " : "", e->type == VDISK_ISO_SYMLINK ? e->target : "");
}

static int walk(struct lsstate *st, const char *dir, const char *shown, unsigned depth)
{
    struct vdisk_iso_entry *v;
    size_t n;
    if (vdisk_iso_list(st->iso, dir, &v, &n) < 0) {
        cli_lib_error();
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = NULL, *s = NULL;
        if (asprintf(&p, "%s/%s", dir, v[i].name) < 0 ||
            asprintf(&s, "%s%s%s", shown, *shown ? "/" : "", v[i].name) < 0) {
            cli_error("out of memory");
            free(p);
            rc = 1;
            break;
        }
        print_entry(st, s, &v[i]);
        if (st->o->recursive && v[i].type == VDISK_ISO_DIR) {
            bool loop = false;
            for (unsigned k = 0; k <= depth; k++)
                if (st->stack[k] == v[i].extent)
                    loop = true;
            if (loop || depth >= MAX_DEPTH) {
                cli_error("%s: directory loop (or more than %d levels)", s, MAX_DEPTH);
                rc = 1;
            } else {
                st->stack[depth + 1] = v[i].extent;
                rc = walk(st, p, s, depth + 1);
            }
        }
        free(p);
        free(s);
    }
    vdisk_iso_list_free(v);
    return rc;
}

static int do_ls(vdisk_iso *iso, const struct iopts *o, const char *path)
{
    struct lsstate st = {.iso = iso, .o = o, .first = true};
    struct vdisk_iso_entry *e = malloc(sizeof *e);
    if (!e) {
        cli_error("out of memory");
        return 1;
    }
    int rc = 0;
    if (vdisk_iso_stat(iso, path, 1, e) < 0) {
        cli_lib_error();
        free(e);
        return 1;
    }
    if (o->json)
        printf("[");
    /* The shown prefix: "" for the root, else the path without outer slashes. */
    char *shown = strdup(path);
    size_t l = strlen(shown);
    while (l && shown[l - 1] == '/')
        shown[--l] = '\0';
    const char *sh = shown;
    while (*sh == '/')
        sh++;
    if (e->type != VDISK_ISO_DIR) {
        print_entry(&st, *sh ? sh : e->name, e);
    } else {
        if (o->recursive)
            print_entry(&st, *sh ? sh : ".", e);
        st.stack[0] = e->extent;
        rc = walk(&st, *path ? path : "/", sh, 0);
    }
    if (o->json)
        printf("%s]\n", st.first ? "" : "\n");
    free(shown);
    free(e);
    return rc;
}

/* ---- cat, extract ------------------------------------------------------------------ */

static int copy_file(vdisk_iso *iso, const char *path, int fd, uint64_t size)
{
    size_t bs = 1 << 20;
    char *buf = malloc(bs);
    if (!buf) {
        cli_error("out of memory");
        return 1;
    }
    uint64_t off = 0;
    while (off < size) {
        int64_t n = vdisk_iso_read(iso, path, buf, bs, off);
        if (n < 0) {
            cli_lib_error();
            free(buf);
            return 1;
        }
        if (n == 0)
            break;
        for (int64_t w = 0; w < n;) {
            ssize_t k = write(fd, buf + w, (size_t)(n - w));
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                cli_error("write: %s", strerror(errno));
                free(buf);
                return 1;
            }
            w += k;
        }
        off += (uint64_t)n;
    }
    free(buf);
    return 0;
}

static int do_cat(vdisk_iso *iso, const char *path)
{
    struct vdisk_iso_entry *e = malloc(sizeof *e);
    if (!e || vdisk_iso_stat(iso, path, 1, e) < 0) {
        e ? cli_lib_error() : cli_error("out of memory");
        free(e);
        return 1;
    }
    int rc;
    if (e->type == VDISK_ISO_DIR) {
        cli_error("%s: is a directory", path);
        rc = 1;
    } else {
        rc = copy_file(iso, path, STDOUT_FILENO, e->size);
    }
    free(e);
    return rc;
}

struct xstate {
    vdisk_iso *iso;
    bool modes;    /* Rock Ridge: the entries' permission bits are applied */
    bool failed;   /* something was not created: exit 1 at the end */
};

static const char *special_kind(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "FIFO";
    case S_IFSOCK: return "socket";
    default: return "special file";
    }
}

static int extract_file(struct xstate *x, const char *path, const char *dest,
                        const struct vdisk_iso_entry *e)
{
    /* O_NOFOLLOW: never write through a symlink made by an earlier entry. */
    int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                  x->modes ? 0600 : 0644);
    if (fd < 0) {
        cli_error("%s: %s", dest, strerror(errno));
        return 1;
    }
    int rc = copy_file(x->iso, path, fd, e->size);
    if (rc == 0 && x->modes && fchmod(fd, e->mode & 07777) < 0) {
        cli_error("%s: chmod: %s", dest, strerror(errno));
        rc = 1;
    }
    if (close(fd) < 0 && rc == 0) {
        cli_error("%s: %s", dest, strerror(errno));
        rc = 1;
    }
    return rc;
}

/* "DIR/NAME" without a doubled '/'. */
static char *join(const char *dir, const char *name)
{
    char *p = NULL;
    size_t l = strlen(dir);
    if (asprintf(&p, "%s%s%s", dir, l && dir[l - 1] == '/' ? "" : "/", name) < 0)
        return NULL;
    return p;
}

static int extract(struct xstate *x, const char *path, const char *dest,
                   const struct vdisk_iso_entry *e, unsigned depth)
{
    if (e->type == VDISK_ISO_SYMLINK) {
        if (symlink(e->target, dest) < 0) {
            cli_error("skipped %s (symlink to %s): %s", path, e->target, strerror(errno));
            x->failed = true;
        }
        return 0;
    }
    if (e->type == VDISK_ISO_FILE)
        return extract_file(x, path, dest, e);
    if (e->type != VDISK_ISO_DIR) {
        /* PN: a dev_t in the low word (xorriso, genisoimage), or major and minor. */
        uint32_t hi = (uint32_t)(e->rdev >> 32), lo = (uint32_t)e->rdev;
        if ((e->mode & S_IFMT) == S_IFCHR || (e->mode & S_IFMT) == S_IFBLK)
            cli_error("skipped %s (%s %u,%u)", path, special_kind(e->mode),
                      hi ? hi : major(lo), hi ? lo : minor(lo));
        else
            cli_error("skipped %s (%s)", path, special_kind(e->mode));
        return 0;
    }
    if (depth > MAX_DEPTH) {
        cli_error("%s: more than %d levels deep", path, MAX_DEPTH);
        return 1;
    }
    bool created = true;
    if (mkdir(dest, x->modes ? 0700 : 0755) < 0) {
        struct stat st;
        if (errno != EEXIST) {
            cli_error("%s: %s", dest, strerror(errno));
            return 1;
        }
        /* An existing directory is used (the top one may be a symlink to one). */
        if ((depth ? lstat(dest, &st) : stat(dest, &st)) < 0 || !S_ISDIR(st.st_mode)) {
            cli_error("%s: exists and is not a directory", dest);
            return 1;
        }
        created = false;
    }
    struct vdisk_iso_entry *v;
    size_t n;
    if (vdisk_iso_list(x->iso, path, &v, &n) < 0) {
        cli_lib_error();
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (strchr(v[i].name, '/') || !strcmp(v[i].name, "..") || !strcmp(v[i].name, ".")) {
            cli_error("%s: refusing the name '%s' (a '/' or a dot entry)", path, v[i].name);
            rc = 1;
            break;
        }
        char *p = join(path, v[i].name), *d = join(dest, v[i].name);
        if (!p || !d) {
            cli_error("out of memory");
            rc = 1;
        } else {
            rc = extract(x, p, d, &v[i], depth + 1);
        }
        free(p);
        free(d);
    }
    vdisk_iso_list_free(v);
    /* The directory's own mode last, once its entries are written. */
    if (rc == 0 && created && x->modes && chmod(dest, e->mode & 07777) < 0) {
        cli_error("%s: chmod: %s", dest, strerror(errno));
        rc = 1;
    }
    return rc;
}

static int do_extract(vdisk_iso *iso, const char *path, const char *dest)
{
    struct vdisk_iso_entry *e = malloc(sizeof *e);
    if (!e || vdisk_iso_stat(iso, path, 0, e) < 0) {
        e ? cli_lib_error() : cli_error("out of memory");
        free(e);
        return 1;
    }
    struct xstate x = {.iso = iso, .modes = vdisk_iso_namespace(iso) == VDISK_ISO_NS_ROCKRIDGE};
    int rc = extract(&x, *path ? path : "/", dest, e, 0);
    free(e);
    return rc || x.failed;
}

int cmd_iso(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        help();
        return argc < 2;
    }
    const char *cmd = argv[1];
    struct iopts o = {.ns = VDISK_ISO_NS_AUTO};
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"namespace", required_argument, NULL, 'n'},
        {"output", required_argument, NULL, 'o'},
        {"recursive", no_argument, NULL, 'R'},
        {"long", no_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "hf:n:Rl", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return 0;
        case 'f':
            o.format = optarg;
            break;
        case 'n':
            if (!strcmp(optarg, "auto"))
                o.ns = VDISK_ISO_NS_AUTO;
            else if (!strcmp(optarg, "rockridge"))
                o.ns = VDISK_ISO_NS_ROCKRIDGE;
            else if (!strcmp(optarg, "joliet"))
                o.ns = VDISK_ISO_NS_JOLIET;
            else if (!strcmp(optarg, "iso9660"))
                o.ns = VDISK_ISO_NS_ISO9660;
            else {
                cli_error("iso: unknown namespace '%s' (auto, rockridge, joliet, iso9660)", optarg);
                return 1;
            }
            break;
        case 'o':
            o.json = parse_output_format(optarg);
            if (o.json < 0)
                return 1;
            break;
        case 'R':
            o.recursive = true;
            break;
        case 'l':
            o.lng = true;
            break;
        default:
            cli_error("iso: try 'vdisk iso --help'");
            return 1;
        }
    }
    char **args = argv + 1 + optind;
    int nargs = argc - 1 - optind;
    int want_min, want_max;
    if (!strcmp(cmd, "info"))
        want_min = want_max = 1;
    else if (!strcmp(cmd, "ls"))
        want_min = 1, want_max = 2;
    else if (!strcmp(cmd, "cat"))
        want_min = want_max = 2;
    else if (!strcmp(cmd, "extract"))
        want_min = want_max = 3;
    else {
        cli_error("iso: unknown command '%s' (info, ls, cat, extract)", cmd);
        return 1;
    }
    if (nargs < want_min || nargs > want_max) {
        cli_error("iso %s: expected %d%s argument%s, got %d (see vdisk iso --help)", cmd,
                  want_min, want_max > want_min ? " or more" : "", want_min > 1 ? "s" : "",
                  nargs);
        return 1;
    }
    vdisk_iso *iso = open_iso(args[0], &o, !strcmp(cmd, "info"));
    if (!iso)
        return 1;
    int rc;
    if (!strcmp(cmd, "info"))
        rc = do_info(iso, &o);
    else if (!strcmp(cmd, "ls"))
        rc = do_ls(iso, &o, nargs > 1 ? args[1] : "");
    else if (!strcmp(cmd, "cat"))
        rc = do_cat(iso, args[1]);
    else
        rc = do_extract(iso, args[1], args[2]);
    vdisk_iso_close(iso);
    return rc;
}
