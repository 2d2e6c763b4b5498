/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_iso.c: vdisk iso: look inside ISO 9660 images (or an ISO
 * inside any image: IMAGE:pN, qcow2) without mounting them.
 *   info     the volume descriptors as isoinfo -d prints them, namespaces,
 *            El Torito entries
 *   ls       a directory; -R: every path, one a line, as bsdtar tf prints them
 *   cat      a file's bytes (zisofs files uncompressed)
 *   extract  a file or a directory tree into DEST, with Rock Ridge modes,
 *            symlinks, FIFOs, times (owners and devices as root); what it
 *            cannot make is named on stderr
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

#define MAX_DEPTH VDISK_ISO_DEPTH_MAX

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
           "sticky too), symlinks, FIFOs and times, and owners and devices when run as root;\n"
           "sockets (and devices when not root) are skipped with a warning.  Trees deeper\n"
           "than 1024 levels are listed and extracted down to there, with a warning.\n"
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

static bool is_device(uint32_t mode)
{
    return (mode & S_IFMT) == S_IFCHR || (mode & S_IFMT) == S_IFBLK;
}

/*
 * A Rock Ridge PN entry's device number, read as the Linux kernel reads
 * it (and so as a mounted ISO shows it): a high word of 0 leaves a dev_t
 * in the low word (xorriso), otherwise the high word is the major and the
 * low one the minor (genisoimage).  bsdtar and xorriso take the two words
 * as one 64-bit dev_t instead: they agree for xorriso's images and show
 * genisoimage's 7,200 as 0,7340232.
 */
static dev_t pn_dev(uint64_t rdev)
{
    uint32_t hi = (uint32_t)(rdev >> 32), lo = (uint32_t)rdev;
    return hi ? makedev(hi, lo) : (dev_t)lo;
}

/*
 * The directories already walked, by extent: a hostile image can make its
 * directories a graph (a Joliet tree, or Rock Ridge CL entries, are not
 * checked at open), with loops or with paths that meet again, whose walk
 * would never end; each directory is walked once.
 */
struct seen {
    uint32_t *v;
    size_t n, cap;
};

/* Adds BLOCK: 1 when it was there already, 0, -1 when out of memory. */
static int seen_add(struct seen *s, uint32_t block)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid] == block)
            return 1;
        if (s->v[mid] < block)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint32_t *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = cap;
    }
    memmove(s->v + lo + 1, s->v + lo, (s->n - lo) * sizeof *s->v);
    s->v[lo] = block;
    s->n++;
    return 0;
}

struct lsstate {
    vdisk_iso *iso;
    const struct iopts *o;
    bool first;
    bool failed;   /* a directory could not be listed: exit 1 */
    struct seen seen;
    uint32_t stack[MAX_DEPTH + 1];
};

static void print_entry(struct lsstate *st, const char *path, const struct vdisk_iso_entry *e)
{
    char mode[11];
    mode_str(e->mode, mode);
    dev_t dev = pn_dev(e->rdev);
    if (st->o->json) {
        printf("%s\n    {\"path\": ", st->first ? "" : ",");
        st->first = false;
        json_string(stdout, path);
        printf(", \"type\": \"%s\", \"mode\": \"%s\", \"nlink\": %" PRIu32 ", \"uid\": %" PRIu32
               ", \"gid\": %" PRIu32 ", \"size\": %" PRIu64 ", \"mtime\": %" PRId64
               ", \"atime\": %" PRId64 ", \"ctime\": %" PRId64
               ", \"extent\": %" PRIu32 ", \"extents\": %u",
               e->type == VDISK_ISO_DIR ? "directory" : e->type == VDISK_ISO_SYMLINK ? "symlink"
               : e->type == VDISK_ISO_FILE ? "file" : "other",
               mode, e->nlink, e->uid, e->gid, e->size, e->mtime, e->atime, e->ctime, e->extent,
               e->extents);
        if (is_device(e->mode))
            printf(", \"major\": %u, \"minor\": %u", major(dev), minor(dev));
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
    /* Devices: "major,minor" where the size goes, as ls, bsdtar and xorriso show them. */
    char size[48];
    if (is_device(e->mode))
        snprintf(size, sizeof size, "%u,%u", major(dev), minor(dev));
    else
        snprintf(size, sizeof size, "%" PRIu64, e->size);
    printf("%s %3" PRIu32 " %-6" PRIu32 " %-6" PRIu32 " %10s %s %s%s%s\n", mode, e->nlink, e->uid,
           e->gid, size, date, path, e->type == VDISK_ISO_SYMLINK ? " -> " : "",
           e->type == VDISK_ISO_SYMLINK ? e->target : "");
}

/*
 * Whether the walk goes into the directory E at DEPTH + 1 (its path S, as
 * looked up P): not into one of its own ancestors (a loop: an error), not
 * past MAX_DEPTH levels or VDISK_ISO_LOOKUP_MAX bytes (a warning: what is
 * above is listed).
 */
static bool may_descend(struct lsstate *st, const char *p, const char *s,
                        const struct vdisk_iso_entry *e, unsigned depth)
{
    for (unsigned k = 0; k <= depth; k++)
        if (st->stack[k] == e->extent) {
            cli_error("%s: directory loop (the directory at block %" PRIu32 " is one of its "
                      "parents); not listed again", s, e->extent);
            st->failed = true;
            return false;
        }
    if (depth + 1 > MAX_DEPTH || strlen(p) > VDISK_ISO_LOOKUP_MAX) {
        cli_error("warning: %s: more than %d levels (or %d bytes) deep; its entries are not "
                  "listed", s, MAX_DEPTH, VDISK_ISO_LOOKUP_MAX);
        return false;
    }
    int r = seen_add(&st->seen, e->extent);
    if (r) {
        if (r < 0)
            cli_error("out of memory");
        else
            cli_error("%s: the directory at block %" PRIu32 " is listed already, under another "
                      "path; not listed again", s, e->extent);
        st->failed = true;
        return false;
    }
    return true;
}

/* The entries below DIR, depth first; iterative, so that depth costs no stack. */
struct frame {
    struct vdisk_iso_entry *v;
    size_t n, i;
    char *p, *s;   /* the directory's path (looked up) and its shown path */
};

static void walk(struct lsstate *st, const char *dir, const char *shown)
{
    struct frame *fr = calloc(MAX_DEPTH + 1, sizeof *fr);
    if (!fr) {
        cli_error("out of memory");
        st->failed = true;
        return;
    }
    unsigned depth = 0;
    fr[0].p = strdup(dir);
    fr[0].s = strdup(shown);
    if (!fr[0].p || !fr[0].s || vdisk_iso_list(st->iso, fr[0].p, &fr[0].v, &fr[0].n) < 0) {
        fr[0].p && fr[0].s ? cli_lib_error() : cli_error("out of memory");
        st->failed = true;
        free(fr[0].p);
        free(fr[0].s);
        free(fr);
        return;
    }
    for (;;) {
        struct frame *f = &fr[depth];
        if (f->i == f->n) {
            vdisk_iso_list_free(f->v);
            free(f->p);
            free(f->s);
            if (depth == 0)
                break;
            depth--;
            continue;
        }
        const struct vdisk_iso_entry *e = &f->v[f->i++];
        char *p = NULL, *s = NULL;
        if (asprintf(&p, "%s/%s", f->p, e->name) < 0)
            p = NULL;
        if (asprintf(&s, "%s%s%s", f->s, *f->s ? "/" : "", e->name) < 0)
            s = NULL;
        if (!p || !s) {
            cli_error("out of memory");
            st->failed = true;
            free(p);
            free(s);
            continue;
        }
        print_entry(st, s, e);
        if (!st->o->recursive || e->type != VDISK_ISO_DIR || !may_descend(st, p, s, e, depth)) {
            free(p);
            free(s);
            continue;
        }
        struct frame *c = &fr[depth + 1];
        if (vdisk_iso_list(st->iso, p, &c->v, &c->n) < 0) {
            cli_lib_error();
            st->failed = true;
            free(p);
            free(s);
            continue;
        }
        c->i = 0;
        c->p = p;
        c->s = s;
        st->stack[++depth] = e->extent;
    }
    free(fr);
}

static int do_ls(vdisk_iso *iso, const struct iopts *o, const char *path)
{
    struct lsstate st = {.iso = iso, .o = o, .first = true};
    struct vdisk_iso_entry *e = malloc(sizeof *e);
    if (!e) {
        cli_error("out of memory");
        return 1;
    }
    if (vdisk_iso_stat(iso, path, 1, e) < 0) {
        cli_lib_error();
        free(e);
        return 1;
    }
    if (o->json)
        printf("[");
    /* The shown prefix: "" for the root, else the path without outer slashes. */
    char *shown = strdup(path);
    if (!shown) {
        cli_error("out of memory");
        free(e);
        return 1;
    }
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
        if (seen_add(&st.seen, e->extent) < 0) {
            cli_error("out of memory");
            st.failed = true;
        } else {
            walk(&st, *path ? path : "/", sh);
        }
    }
    free(st.seen.v);
    if (o->json)
        printf("%s]\n", st.first ? "" : "\n");
    free(shown);
    free(e);
    return st.failed;
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
    bool owners;   /* Rock Ridge and run as root: owners too, as tar does */
    bool failed;   /* something was not created: exit 1 at the end */
    struct seen seen; /* directories extracted (a graph is not a tree) */
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

/*
 * Owner, permission bits and times of DEST, created from E, in that order
 * (chown clears setuid and setgid; the times last).  FD: an open DEST, or
 * -1 (then by name, without following a symlink).
 */
static int apply_attrs(struct xstate *x, int fd, const char *dest, const struct vdisk_iso_entry *e)
{
    bool link = e->type == VDISK_ISO_SYMLINK;
    if (x->owners && (fd >= 0 ? fchown(fd, e->uid, e->gid)
                              : fchownat(AT_FDCWD, dest, e->uid, e->gid, AT_SYMLINK_NOFOLLOW)) < 0) {
        cli_error("%s: chown: %s", dest, strerror(errno));
        return 1;
    }
    if (x->modes && !link && (fd >= 0 ? fchmod(fd, e->mode & 07777)
                                      : chmod(dest, e->mode & 07777)) < 0) {
        cli_error("%s: chmod: %s", dest, strerror(errno));
        return 1;
    }
    const struct timespec ts[2] = {{.tv_sec = (time_t)e->atime}, {.tv_sec = (time_t)e->mtime}};
    if ((fd >= 0 ? futimens(fd, ts) : utimensat(AT_FDCWD, dest, ts, AT_SYMLINK_NOFOLLOW)) < 0) {
        cli_error("%s: setting its times: %s", dest, strerror(errno));
        return 1;
    }
    return 0;
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
    if (rc == 0)
        rc = apply_attrs(x, fd, dest, e);
    if (close(fd) < 0 && rc == 0) {
        cli_error("%s: %s", dest, strerror(errno));
        rc = 1;
    }
    return rc;
}

/*
 * A FIFO, or a device when run as root; sockets, and devices otherwise,
 * are skipped with a warning (as an unprivileged tar cannot make them
 * either).
 */
static int extract_special(struct xstate *x, const char *path, const char *dest,
                           const struct vdisk_iso_entry *e)
{
    uint32_t type = e->mode & S_IFMT;
    dev_t dev = pn_dev(e->rdev);
    char what[96];
    if (is_device(e->mode))
        snprintf(what, sizeof what, "%s %u,%u", special_kind(e->mode), major(dev), minor(dev));
    else
        snprintf(what, sizeof what, "%s", special_kind(e->mode));
    int r;
    if (type == S_IFIFO) {
        r = mkfifo(dest, 0600);
    } else if (is_device(e->mode) && geteuid() == 0) {
        r = mknod(dest, type | 0600, dev);
        if (r < 0 && errno == EPERM) {
            cli_error("warning: skipped %s (%s): %s", path, what, strerror(errno));
            return 0;
        }
    } else {
        cli_error("warning: skipped %s (%s)%s", path, what,
                  is_device(e->mode) ? ": devices are made only when run as root" : "");
        return 0;
    }
    if (r < 0) {
        cli_error("%s (%s): %s", dest, what, strerror(errno));
        return 1;
    }
    struct vdisk_iso_entry attrs = *e;
    if (!x->modes)
        attrs.mode = (attrs.mode & S_IFMT) | 0644;
    struct xstate y = *x;
    y.modes = true;
    return apply_attrs(&y, -1, dest, &attrs);
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
            return 0;
        }
        if (apply_attrs(x, -1, dest, e))
            x->failed = true;
        return 0;
    }
    if (e->type == VDISK_ISO_FILE)
        return extract_file(x, path, dest, e);
    if (e->type != VDISK_ISO_DIR) {
        if (extract_special(x, path, dest, e))
            x->failed = true;
        return 0;
    }
    if (depth > MAX_DEPTH || strlen(path) > VDISK_ISO_LOOKUP_MAX) {
        cli_error("warning: %s: more than %d levels (or %d bytes) deep; not extracted", path,
                  MAX_DEPTH, VDISK_ISO_LOOKUP_MAX);
        return 0;
    }
    int seen = seen_add(&x->seen, e->extent);
    if (seen) {
        if (seen < 0)
            cli_error("out of memory");
        else
            cli_error("%s: the directory at block %" PRIu32 " is extracted already, under "
                      "another path (a directory loop?); not again", path, e->extent);
        x->failed = true;
        return seen < 0;
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
    /* The directory's own mode and times last, once its entries are written. */
    if (rc == 0 && created)
        rc = apply_attrs(x, -1, dest, e);
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
    bool rr = vdisk_iso_namespace(iso) == VDISK_ISO_NS_ROCKRIDGE;
    struct xstate x = {.iso = iso, .modes = rr, .owners = rr && geteuid() == 0};
    int rc = extract(&x, *path ? path : "/", dest, e, 0);
    free(x.seen.v);
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
