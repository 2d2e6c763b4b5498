/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_part.c: vdisk part: partition tables (MBR, GPT; sun, sgi
 * and bsd disklabels read only) of raw and qcow2 images.  list prints what
 * sfdisk -l prints, --output=json what sfdisk --json prints, dump and apply
 * speak sfdisk's script format (sfdisk -d); doc/part.md lists where and
 * why vdisk differs.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "partpath.h"

static void help(void)
{
    printf("usage: vdisk part COMMAND [OPTIONS] IMAGE [ARGS]\n"
           "\n"
           "Partition tables (MBR and GPT) of raw and qcow2 images, edited in place;\n"
           "Sun, SGI and BSD disklabels listed (read only).\n"
           "\n"
           "  list [--output=human|json] IMAGE   the partitions as sfdisk -l lists them\n"
           "                                     (json: as sfdisk --json)\n"
           "  dump IMAGE                         the table as an sfdisk script (sfdisk -d)\n"
           "  apply IMAGE [SCRIPT]               writes a table from an sfdisk script\n"
           "                                     (standard input without SCRIPT)\n"
           "  create --table=mbr|gpt [--id=ID] IMAGE   a new, empty table\n"
           "  add [--number=N] [--start=S] [--size=S] [--type=T] [--name=NAME]\n"
           "      [--uuid=GUID] [--attrs=ATTRS] [--bootable] [--logical] IMAGE\n"
           "  delete IMAGE N\n"
           "  resize IMAGE N SIZE                SIZE 'max' (or '+'): as large as possible\n"
           "  set [--type=T] [--name=NAME] [--uuid=GUID] [--attrs=ATTRS]\n"
           "      [--bootable=on|off] IMAGE N\n"
           "  verify IMAGE                       problems one a line; exit 0 only when sound\n"
           "  repair IMAGE                       GPT: rebuilds a damaged header or array from\n"
           "                                     the other copy, moves the backup to the end\n"
           "\n"
           "Options for every command:\n"
           "  -f, --format=FMT      the image's format (probed when not given)\n"
           "  --sector-size=512|4096  the logical sector size (found from the table or\n"
           "                        the device when not given); every vdisk verb takes\n"
           "                        it for IMAGE:pN (an MBR of 4096-byte sectors in a file)\n"
           "\n"
           "Start and size are sectors, or bytes with a suffix (K, M, G, T: powers of\n"
           "1024).  Default start: the first free sector aligned to 1 MiB; default size:\n"
           "up to the end of that free area.  Types: an MBR hex byte (83) or a GPT GUID,\n"
           "or L (Linux), S (swap), E (extended), U (EFI), R (RAID), V (LVM), H (home).\n"
           "Attributes: \"RequiredPartition NoBlockIOProtocol LegacyBIOSBootable GUID:N,...\".\n"
           "\n"
           "Partitions of an image are devices of their own for every vdisk command:\n"
           "IMAGE:pN is partition N of IMAGE (e.g. disk.qcow2:p2).\n");
}

struct popts {
    const char *format;
    unsigned ss;
    int json;
    const char *table, *id, *type, *name, *uuid, *attrs, *start, *size;
    unsigned number;
    int bootable; /* -1 unset */
    bool logical;
};

/* ---- Helpers ------------------------------------------------------------------ */

static vdisk_dev *open_image(const char *file, const struct popts *o, bool rw)
{
    struct open_args oa = {.format = o->format, .read_only = !rw};
    return cli_open_image(file, &oa);
}

static vdisk_ptable *read_table(vdisk_dev *dev, const struct popts *o)
{
    vdisk_ptable *t = NULL;
    if (vdisk_part_read(&t, dev, o->ss) < 0) {
        cli_lib_error();
        return NULL;
    }
    return t;
}

static void node_name(const char *dev, unsigned n, char *buf, size_t len)
{
    size_t l = strlen(dev);
    bool digit = l && isdigit((unsigned char)dev[l - 1]);
    snprintf(buf, len, "%s%s%u", dev, digit ? "p" : "", n);
}

/* A sector count: digits are sectors, a size suffix means bytes. */
static int parse_sectors(const char *s, unsigned ss, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    const char *p = s;
    while (isdigit((unsigned char)*p))
        p++;
    if (!*p)
        return vdisk_parse_size(s, 1, out); /* sectors */
    /* Allow sfdisk's "KiB" / "MiB" spellings. */
    char tmp[64];
    size_t l = strlen(s);
    if (l >= sizeof tmp)
        return -EINVAL;
    memcpy(tmp, s, l + 1);
    if (l > 3 && strcmp(tmp + l - 2, "iB") == 0)
        tmp[l - 2] = '\0';
    uint64_t bytes;
    int r = vdisk_parse_size(tmp, 1, &bytes);
    if (r < 0)
        return r;
    *out = bytes / ss;
    return 0;
}

static const char *const attr_names[3] = {"RequiredPartition", "NoBlockIOProtocol",
                                          "LegacyBIOSBootable"};

static void attrs_to_str(uint64_t a, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < 3; i++)
        if (a & (1ull << i))
            o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? " " : "", attr_names[i]);
    bool first = true;
    for (int i = 48; i < 64 && o < len; i++)
        if (a & (1ull << i)) {
            o += (size_t)snprintf(buf + o, len - o, "%s%d",
                                  first ? (o ? " GUID:" : "GUID:") : ",", i);
            first = false;
        }
}

static int parse_attrs(const char *s, uint64_t *out)
{
    uint64_t a = 0;
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -ENOMEM;
    int r = 0;
    for (char *tok = strtok_r(copy, " \t", &save); tok && r == 0;
         tok = strtok_r(NULL, " \t", &save)) {
        bool known = false;
        for (int i = 0; i < 3; i++)
            if (strcmp(tok, attr_names[i]) == 0)
                a |= 1ull << i, known = true;
        if (known)
            continue;
        char *bits = tok;
        if (strncmp(tok, "GUID:", 5) == 0)
            bits = tok + 5;
        char *save2 = NULL;
        for (char *b = strtok_r(bits, ",", &save2); b; b = strtok_r(NULL, ",", &save2)) {
            char *end;
            long v = strtol(b, &end, 10);
            if (*end || end == b || v < 0 || v > 63) {
                r = -EINVAL;
                break;
            }
            a |= 1ull << v;
        }
    }
    free(copy);
    *out = a;
    return r;
}

/* MBR types: sfdisk's shortcuts or a hex byte; 0 when not one. */
static unsigned mbr_type_of(const char *s)
{
    static const struct { const char *a; unsigned v; } al[] = {
        {"L", 0x83}, {"S", 0x82}, {"E", 0x05}, {"X", 0x85}, {"U", 0xef}, {"R", 0xfd}, {"V", 0x8e},
    };
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++)
        if (strcmp(s, al[i].a) == 0)
            return al[i].v;
    const char *h = s;
    if (h[0] == '0' && (h[1] == 'x' || h[1] == 'X'))
        h += 2;
    char *end;
    unsigned long v = strtoul(h, &end, 16);
    if (!*h || *end || strlen(h) > 2 || !isxdigit((unsigned char)h[0]))
        return 0;
    return (unsigned)v;
}

/* sfdisk's quoting of names in scripts: \xNN for anything but printable ASCII. */
static void script_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* A size given with a unit ("1500K"), not in sectors. */
static bool has_unit(const char *size)
{
    if (size && *size == '+')
        size++;
    return size && *size && size[strspn(size, "0123456789")] != '\0';
}

/*
 * As libfdisk does for a size given with a unit: the end of partition *P,
 * just added, moves to the aligned sector nearest to it within the free
 * area after its start (then one before it), when that area holds more
 * than a grain.  A size in sectors is kept as it is.
 */
static void align_end(vdisk_ptable *t, struct vdisk_partition *p)
{
    uint64_t g = vdisk_part_grain(t) / vdisk_part_sector_size(t);
    uint64_t f = p->start, l = p->start + p->size - 1, want = p->size;
    struct vdisk_partition m = {.struct_size = sizeof m};
    if (g < 2 || vdisk_part_resize(t, p->number, 0) < 0 ||
        vdisk_part_find(t, p->number, &m) < 0)
        return;
    uint64_t dl = m.start + m.size - 1; /* the end of the free area */
    if (vdisk_part_kind(t) == VDISK_PT_GPT) {
        uint64_t first, last;
        vdisk_part_usable(t, &first, &last);
        if (dl == last) { /* the default end there, as vdisk_part_add sets it */
            uint64_t a = f, z = last;
            if (a + g <= z) {
                a = a % g ? (a + g) / g * g : a;
                z = z / g * g;
            }
            dl = a + g > z ? last - 1 : z - 1;
        }
    }
    if (l != dl && l - f > g && f + g <= dl) {
        uint64_t a = f % g ? (f + g) / g * g : f, z = dl / g * g;
        if (a + g <= z) {
            uint64_t x = l % g ? (l + g / 2) / g * g : l;
            uint64_t res = x < a ? a : x > z ? z : x;
            if (res > f)
                want = res - f;
        }
    }
    if (vdisk_part_resize(t, p->number, want) == 0)
        p->size = want;
}

/* ---- list, dump ---------------------------------------------------------------- */

static void print_json(vdisk_ptable *t, const char *device)
{
    char id[40];
    vdisk_part_get_id(t, id, sizeof id);
    int kind = vdisk_part_kind(t);
    bool gpt = kind == VDISK_PT_GPT;
    printf("{\n   \"partitiontable\": {\n      \"label\": \"%s\",\n",
           vdisk_part_label_name(t));
    if (id[0])
        printf("      \"id\": \"%s\",\n", id);
    printf("      \"device\": ");
    json_string_bytes(stdout, device);
    printf(",\n      \"unit\": \"sectors\",\n");
    if (gpt) {
        uint64_t first, last;
        vdisk_part_usable(t, &first, &last);
        printf("      \"firstlba\": %" PRIu64 ",\n      \"lastlba\": %" PRIu64 ",\n", first, last);
        /* sfdisk writes the script's headers: this one as a string. */
        if (vdisk_part_entries(t) != 128)
            printf("      \"table-length\": \"%u\",\n", vdisk_part_entries(t));
    }
    /* The grain, when not 1 MiB (disks of at most 4 MiB), a string too. */
    if (vdisk_part_grain(t) != 1u << 20)
        printf("      \"grain\": \"%" PRIu64 "\",\n", vdisk_part_grain(t));
    printf("      \"sectorsize\": %u", vdisk_part_sector_size(t));
    size_t n = vdisk_part_count(t);
    if (n) {
        printf(",\n      \"partitions\": [\n");
        for (size_t i = 0; i < n; i++) {
            struct vdisk_partition p = {.struct_size = sizeof p};
            vdisk_part_get(t, i, &p);
            char node[4200];
            node_name(device, p.number, node, sizeof node);
            printf("%s", i ? "         },{\n" : "         {\n");
            printf("            \"node\": ");
            json_string_bytes(stdout, node);
            printf(",\n            \"start\": %" PRIu64 ",\n            \"size\": %" PRIu64
                   ",\n", p.start, p.size);
            if (gpt) {
                printf("            \"type\": \"%s\",\n            \"uuid\": \"%s\"", p.type_guid,
                       p.uuid);
                if (p.name[0]) {
                    printf(",\n            \"name\": ");
                    json_string_bytes(stdout, p.name);
                }
                if (p.attrs) {
                    char a[300];
                    attrs_to_str(p.attrs, a, sizeof a);
                    if (a[0])
                        printf(",\n            \"attrs\": \"%s\"", a);
                }
            } else {
                printf("            \"type\": \"%x\"", p.mbr_type);
                if (p.flags[0])
                    printf(",\n            \"attrs\": \"%s\"", p.flags);
                if (p.bootable)
                    printf(",\n            \"bootable\": true");
            }
            printf("\n");
        }
        printf("         }\n      ]");
    }
    printf("\n   }\n}\n");
}

/*
 * A size as util-linux's size_to_human_string() writes it: powers of 1024,
 * one digit after the point rounded half up ("1.5G", "446M"), or two with
 * TWO_DIGITS; LONG_UNITS: a space and "KiB" ("64 MiB", "1.36 MiB").
 */
static void sfdisk_size(uint64_t bytes, bool two_digits, bool long_units, char *buf, size_t len)
{
    int exp = 0;
    while (exp < 60 && bytes >= 1ull << (exp + 10))
        exp += 10;
    char unit = "BKMGTPE"[exp / 10];
    uint64_t dec = bytes >> exp, frac = exp ? bytes & ((1ull << exp) - 1) : 0;
    if (frac) {
        if (frac >= UINT64_MAX / 1000)
            frac = frac / 1024 * 1000 / (1ull << (exp - 10));
        else
            frac = frac * 1000 / (1ull << exp);
        frac = two_digits ? (frac + 5) / 10 : (frac + 50) / 100 * 10;
        if (frac == 100)
            dec++, frac = 0;
    }
    char suffix[8];
    snprintf(suffix, sizeof suffix, "%s%c%s", long_units ? " " : "", unit,
             long_units && unit != 'B' ? "iB" : "");
    if (!frac) {
        snprintf(buf, len, "%" PRIu64 "%s", dec, suffix);
        return;
    }
    char num[48];
    int n = snprintf(num, sizeof num, "%" PRIu64 ".%02" PRIu64, dec, frac);
    if (n > 0 && num[n - 1] == '0')
        num[n - 1] = '\0';
    snprintf(buf, len, "%s%s", num, suffix);
}

/* The columns of sfdisk -l, by kind of table: libfdisk's fields with their
 * width hints (a column is at least its hint wide when its header is
 * narrower than the hint) and alignment. */
enum col { C_DEV, C_BOOT, C_START, C_END, C_SECTORS, C_SIZE, C_ID, C_TYPE, C_FLAGS, C_FSIZE,
           C_BSIZE, C_CPG };
struct column {
    enum col id;
    const char *header;
    unsigned hint;
    bool right;
};

static const struct column dos_cols[] = {
    {C_DEV, "Device", 10, false}, {C_BOOT, "Boot", 1, false}, {C_START, "Start", 5, true},
    {C_END, "End", 5, true}, {C_SECTORS, "Sectors", 5, true}, {C_SIZE, "Size", 5, true},
    {C_ID, "Id", 2, true}, {C_TYPE, "Type", 0, false}};
static const struct column gpt_cols[] = {
    {C_DEV, "Device", 10, false}, {C_START, "Start", 5, true}, {C_END, "End", 5, true},
    {C_SECTORS, "Sectors", 5, true}, {C_SIZE, "Size", 5, true}, {C_TYPE, "Type", 0, false}};
static const struct column sun_cols[] = {
    {C_DEV, "Device", 10, false}, {C_START, "Start", 5, true}, {C_END, "End", 5, true},
    {C_SECTORS, "Sectors", 5, true}, {C_SIZE, "Size", 5, true}, {C_ID, "Id", 2, true},
    {C_TYPE, "Type", 0, false}, {C_FLAGS, "Flags", 0, true}};
static const struct column sgi_cols[] = {
    {C_DEV, "Device", 10, false}, {C_START, "Start", 5, true}, {C_END, "End", 5, true},
    {C_SECTORS, "Sectors", 5, true}, {C_SIZE, "Size", 5, true}, {C_ID, "Id", 2, true},
    {C_TYPE, "Type", 0, false}, {C_FLAGS, "Attrs", 0, true}};
static const struct column bsd_cols[] = {
    {C_DEV, "Slice", 1, false}, {C_START, "Start", 5, true}, {C_END, "End", 5, true},
    {C_SECTORS, "Sectors", 5, true}, {C_SIZE, "Size", 5, true}, {C_TYPE, "Type", 8, false},
    {C_FSIZE, "Fsize", 5, true}, {C_BSIZE, "Bsize", 5, true}, {C_CPG, "Cpg", 5, true}};

#define MAX_COLS 9

/* The text of column ID for partition P ("" for none); malloc'd. */
static char *cell(vdisk_ptable *t, const struct vdisk_partition *p, enum col id,
                  const char *device)
{
    char buf[4200];
    unsigned ss = vdisk_part_sector_size(t);
    int kind = vdisk_part_kind(t);
    buf[0] = '\0';
    switch (id) {
    case C_DEV:
        if (kind == VDISK_PT_BSD)
            snprintf(buf, sizeof buf, "%c", 'a' + (int)(p->number - 1));
        else
            node_name(device, p->number, buf, sizeof buf);
        break;
    case C_BOOT: snprintf(buf, sizeof buf, "%s", p->bootable ? "*" : ""); break;
    case C_START: snprintf(buf, sizeof buf, "%" PRIu64, p->start); break;
    case C_END:
        snprintf(buf, sizeof buf, "%" PRIu64, p->start + p->size - (p->size ? 1 : 0));
        break;
    case C_SECTORS: snprintf(buf, sizeof buf, "%" PRIu64, p->size); break;
    case C_SIZE: sfdisk_size(p->size * ss, false, false, buf, sizeof buf); break;
    case C_ID: snprintf(buf, sizeof buf, "%x", p->mbr_type); break;
    case C_TYPE: snprintf(buf, sizeof buf, "%s", vdisk_part_type_name(t, p)); break;
    case C_FLAGS: snprintf(buf, sizeof buf, "%s", p->flags); break;
    case C_FSIZE: snprintf(buf, sizeof buf, "%" PRIu64, p->fsize); break;
    case C_BSIZE: snprintf(buf, sizeof buf, "%" PRIu64, p->bsize); break;
    case C_CPG: snprintf(buf, sizeof buf, "%" PRIu64, p->cpg); break;
    }
    return strdup(buf);
}

/* One cell as libsmartcols prints it: padded to WIDTH (on the left when
 * RIGHT), a space between columns, the last column not padded on its right. */
static void print_cell(const char *text, size_t width, bool right, bool last)
{
    size_t len = strlen(text);
    if (*text && right)
        for (size_t i = len; i < width; i++)
            putchar(' ');
    fputs(text, stdout);
    if (last) {
        putchar('\n');
        return;
    }
    if (!right || !*text)
        for (size_t i = len; i < width; i++)
            putchar(' ');
    putchar(' ');
}

/* What sfdisk -l prints (as fdisk -l): the disk, then its partitions. */
static int print_human(vdisk_ptable *t, const char *device)
{
    char id[40], sz[64];
    vdisk_part_get_id(t, id, sizeof id);
    int kind = vdisk_part_kind(t);
    unsigned ss = vdisk_part_sector_size(t);
    uint64_t sectors = vdisk_part_disk_sectors(t);
    sfdisk_size(sectors * ss, true, true, sz, sizeof sz);
    printf("Disk %s: %s, %" PRIu64 " bytes, %" PRIu64 " sectors\n", device, sz, sectors * ss,
           sectors);
    if (kind != VDISK_PT_MBR && kind != VDISK_PT_GPT) {
        unsigned heads, track;
        uint64_t cyls;
        vdisk_part_geometry(t, &heads, &track, &cyls);
        printf("Geometry: %u heads, %u sectors/track, %" PRIu64 " cylinders\n", heads, track,
               cyls);
    }
    /* An image file has no physical sector or I/O sizes of its own: the
     * logical sector size for all, as sfdisk says of a file. */
    printf("Units: sectors of 1 * %u = %u bytes\n"
           "Sector size (logical/physical): %u bytes / %u bytes\n"
           "I/O size (minimum/optimal): %u bytes / %u bytes\n"
           "Disklabel type: %s\n", ss, ss, ss, ss, ss, ss, vdisk_part_label_name(t));
    if (id[0])
        printf("Disk identifier: %s\n", id);
    size_t n = vdisk_part_count(t);
    if (!n)
        return 0;
    const struct column *cols;
    size_t nc;
    switch (kind) {
    case VDISK_PT_MBR: cols = dos_cols, nc = sizeof dos_cols / sizeof *dos_cols; break;
    case VDISK_PT_GPT: cols = gpt_cols, nc = sizeof gpt_cols / sizeof *gpt_cols; break;
    case VDISK_PT_SUN: cols = sun_cols, nc = sizeof sun_cols / sizeof *sun_cols; break;
    case VDISK_PT_SGI: cols = sgi_cols, nc = sizeof sgi_cols / sizeof *sgi_cols; break;
    default: cols = bsd_cols, nc = sizeof bsd_cols / sizeof *bsd_cols; break;
    }
    char **cells = calloc(n * nc, sizeof *cells);
    if (!cells) {
        cli_error("out of memory");
        return -1;
    }
    size_t width[MAX_COLS] = {0};
    bool wrong_order = false;
    uint64_t last = 0;
    int ret = 0;
    for (size_t i = 0; i < n; i++) {
        struct vdisk_partition p = {.struct_size = sizeof p};
        vdisk_part_get(t, i, &p);
        if (!p.whole_disk) {
            wrong_order |= p.start < last;
            last = p.start;
        }
        for (size_t c = 0; c < nc; c++) {
            char *x = cell(t, &p, cols[c].id, device);
            if (!x) {
                cli_error("out of memory");
                ret = -1;
                goto out;
            }
            cells[i * nc + c] = x;
            if (strlen(x) > width[c])
                width[c] = strlen(x);
        }
    }
    /* libsmartcols' widths: the widest cell; at least the header; or the
     * hint when both are narrower than it. */
    for (size_t c = 0; c < nc; c++) {
        size_t h = strlen(cols[c].header);
        if (width[c] < h)
            width[c] = h;
        else if (width[c] < cols[c].hint && h < cols[c].hint)
            width[c] = cols[c].hint;
    }
    printf("\n");
    for (size_t c = 0; c < nc; c++)
        print_cell(cols[c].header, width[c], cols[c].right, c + 1 == nc);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < nc; c++)
            print_cell(cells[i * nc + c], width[c], cols[c].right, c + 1 == nc);
    if (wrong_order)
        printf("\nPartition table entries are not in disk order.\n");
out:
    for (size_t i = 0; i < n * nc; i++)
        free(cells[i]);
    free(cells);
    return ret;
}

static void print_dump(vdisk_ptable *t, const char *device)
{
    char id[40];
    vdisk_part_get_id(t, id, sizeof id);
    bool gpt = vdisk_part_kind(t) == VDISK_PT_GPT;
    printf("label: %s\n", vdisk_part_label_name(t));
    if (id[0])
        printf("label-id: %s\n", id);
    printf("device: %s\nunit: sectors\n", device);
    if (gpt) {
        uint64_t first, last;
        vdisk_part_usable(t, &first, &last);
        printf("first-lba: %" PRIu64 "\nlast-lba: %" PRIu64 "\n", first, last);
        if (vdisk_part_entries(t) != 128)
            printf("table-length: %u\n", vdisk_part_entries(t));
    }
    if (vdisk_part_grain(t) != 1u << 20)
        printf("grain: %" PRIu64 "\n", vdisk_part_grain(t));
    printf("sector-size: %u\n", vdisk_part_sector_size(t));
    size_t n = vdisk_part_count(t);
    if (n)
        printf("\n");
    for (size_t i = 0; i < n; i++) {
        struct vdisk_partition p = {.struct_size = sizeof p};
        vdisk_part_get(t, i, &p);
        char node[4200];
        node_name(device, p.number, node, sizeof node);
        printf("%s : start=%12" PRIu64 ", size=%12" PRIu64 ", type=", node, p.start, p.size);
        if (gpt) {
            printf("%s, uuid=%s", p.type_guid, p.uuid);
            if (p.name[0]) {
                printf(", name=");
                script_quoted(stdout, p.name);
            }
            char a[300];
            attrs_to_str(p.attrs, a, sizeof a);
            if (a[0])
                printf(", attrs=\"%s\"", a);
        } else {
            printf("%x", p.mbr_type);
            if (p.flags[0])
                printf(", attrs=\"%s\"", p.flags);
            if (p.bootable)
                printf(", bootable");
        }
        printf("\n");
    }
}

/* ---- apply ------------------------------------------------------------------------ */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    return s;
}

/* Unquotes a value in place: "..." with \xNN, \" and \\ escapes. */
static char *unquote(char *v)
{
    v = trim(v);
    if (*v != '"')
        return v;
    char *o = v, *p = v + 1;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1] == 'x' && isxdigit((unsigned char)p[2]) &&
            isxdigit((unsigned char)p[3])) {
            char hx[3] = {p[2], p[3], 0};
            *o++ = (char)strtoul(hx, NULL, 16);
            p += 4;
        } else if (*p == '\\' && p[1]) {
            *o++ = p[1];
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return v;
}

/* Splits at commas (and, between fields, blanks) outside quotes. */
static size_t split_fields(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *p = line;
    while (n < max) {
        fields[n++] = p;
        bool q = false;
        while (*p && (q || *p != ',')) {
            if (*p == '"')
                q = !q;
            p++;
        }
        if (!*p)
            break;
        *p++ = '\0';
    }
    return n;
}

struct script_part {
    unsigned number;
    const char *start, *size, *type, *uuid, *name, *attrs;
    int bootable;
};

static int apply_part(vdisk_ptable *t, const struct script_part *sp, int lineno)
{
    struct vdisk_partition p = {.struct_size = sizeof p};
    unsigned ss = vdisk_part_sector_size(t);
    bool gpt = vdisk_part_kind(t) == VDISK_PT_GPT;
    p.number = sp->number;
    if (sp->start && *sp->start && parse_sectors(sp->start, ss, &p.start) < 0) {
        cli_error("line %d: bad start '%s'", lineno, sp->start);
        return -1;
    }
    if (sp->size && *sp->size) {
        const char *s = sp->size[0] == '+' ? sp->size + 1 : sp->size;
        if (*s && parse_sectors(s, ss, &p.size) < 0) {
            cli_error("line %d: bad size '%s'", lineno, sp->size);
            return -1;
        }
    }
    if (!gpt && sp->type && *sp->type) {
        p.mbr_type = mbr_type_of(sp->type);
        if (!p.mbr_type) {
            cli_error("line %d: bad MBR type '%s'", lineno, sp->type);
            return -1;
        }
    }
    p.bootable = sp->bootable > 0;
    if (gpt) {
        if (sp->uuid)
            snprintf(p.uuid, sizeof p.uuid, "%s", sp->uuid);
        if (sp->name) {
            if (strlen(sp->name) > VDISK_PART_NAME_MAX) {
                cli_error("line %d: the name is too long", lineno);
                return -1;
            }
            snprintf(p.name, sizeof p.name, "%s", sp->name);
        }
        if (sp->attrs && parse_attrs(sp->attrs, &p.attrs) < 0) {
            cli_error("line %d: bad attributes '%s'", lineno, sp->attrs);
            return -1;
        }
    }
    if (vdisk_part_add(t, &p) < 0 ||
        (gpt && sp->type && *sp->type && vdisk_part_set_type(t, p.number, sp->type) < 0)) {
        fprintf(stderr, "%s: line %d: %s\n", cli_progname, lineno, cli_lib_detail());
        return -1;
    }
    if (has_unit(sp->size))
        align_end(t, &p);
    return 0;
}

static int do_apply(vdisk_dev *dev, FILE *in, const struct popts *o)
{
    char line[8192];
    int lineno = 0;
    vdisk_ptable *t = NULL;
    int kind = VDISK_PT_MBR;
    const char *id = NULL;
    char idbuf[64] = "";
    uint64_t first = 0, last = 0, tlen = 0;
    bool have_first = false, have_last = false;
    unsigned ss = o->ss;
    int ret = 1;
    while (fgets(line, sizeof line, in)) {
        lineno++;
        char *l = trim(line);
        if (!*l || *l == '#')
            continue;
        /* A header line: "key: value" where key has no '=' or ','. */
        char *colon = strchr(l, ':');
        bool header = false;
        if (colon && !t) {
            size_t kl = (size_t)(colon - l);
            header = strcspn(l, "=,\" ") >= kl && colon[1] != '\0' &&
                     (isspace((unsigned char)colon[1]));
            if (header) {
                static const char *const keys[] = {"label", "label-id", "device", "unit",
                                                   "first-lba", "last-lba", "sector-size",
                                                   "table-length", "grain"};
                bool known = false;
                for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                    if (strlen(keys[k]) == kl && strncmp(l, keys[k], kl) == 0)
                        known = true;
                header = known;
            }
        }
        if (header) {
            *colon = '\0';
            char *v = trim(colon + 1);
            if (strcmp(l, "label") == 0) {
                if (strcmp(v, "dos") == 0 || strcmp(v, "mbr") == 0)
                    kind = VDISK_PT_MBR;
                else if (strcmp(v, "gpt") == 0)
                    kind = VDISK_PT_GPT;
                else {
                    cli_error("line %d: unsupported label '%s'", lineno, v);
                    goto out;
                }
            } else if (strcmp(l, "label-id") == 0) {
                snprintf(idbuf, sizeof idbuf, "%s", v);
                id = idbuf;
            } else if (strcmp(l, "unit") == 0) {
                if (strcmp(v, "sectors") != 0) {
                    cli_error("line %d: unsupported unit '%s'", lineno, v);
                    goto out;
                }
            } else if (strcmp(l, "first-lba") == 0 || strcmp(l, "last-lba") == 0 ||
                       strcmp(l, "sector-size") == 0 || strcmp(l, "table-length") == 0) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(v, &end, 10);
                if (!*v || *end || errno) {
                    cli_error("line %d: bad number '%s'", lineno, v);
                    goto out;
                }
                if (l[0] == 'f')
                    first = n, have_first = true;
                else if (l[0] == 'l')
                    last = n, have_last = true;
                else if (l[0] == 't')
                    tlen = n;
                else if (!o->ss) {
                    if (n != 512 && n != 4096) {
                        cli_error("line %d: sector size %llu: expected 512 or 4096", lineno, n);
                        goto out;
                    }
                    ss = (unsigned)n;
                }
            }
            continue;
        }
        if (!t) {
            if (vdisk_part_new(&t, dev, kind, ss) < 0 || (id && vdisk_part_set_id(t, id) < 0) ||
                (tlen && vdisk_part_set_entries(t, (unsigned)tlen) < 0)) {
                cli_lib_error();
                goto out;
            }
            if (kind == VDISK_PT_GPT && (have_first || have_last)) {
                uint64_t f0, l0;
                vdisk_part_usable(t, &f0, &l0);
                if (vdisk_part_set_usable(t, have_first ? first : f0, have_last ? last : l0) < 0) {
                    cli_lib_error();
                    goto out;
                }
            }
        }
        /* A partition line, with an optional "NODE :" in front. */
        struct script_part sp = {.bootable = -1};
        char *body = l;
        if (colon) {
            size_t kl = (size_t)(colon - l);
            if (strcspn(l, "=,\"") > kl) {
                *colon = '\0';
                char *node = trim(l);
                size_t nl = strlen(node), d = nl;
                while (d && isdigit((unsigned char)node[d - 1]))
                    d--;
                if (d < nl)
                    sp.number = (unsigned)strtoul(node + d, NULL, 10);
                body = colon + 1;
            }
        }
        char *fields[16];
        size_t nf = split_fields(body, fields, 16);
        bool named = strchr(body, '=') != NULL;
        for (size_t i = 0; i < nf; i++) {
            char *f = trim(fields[i]);
            if (!named) {
                /* start, size, type, bootable */
                if (i == 0) sp.start = f;
                else if (i == 1) sp.size = f;
                else if (i == 2) sp.type = f;
                else if (i == 3) sp.bootable = strcmp(f, "*") == 0;
                continue;
            }
            if (!*f)
                continue;
            char *eq = strchr(f, '=');
            if (!eq) {
                if (strcmp(f, "bootable") == 0)
                    sp.bootable = 1;
                else {
                    cli_error("line %d: unknown field '%s'", lineno, f);
                    goto out;
                }
                continue;
            }
            *eq = '\0';
            char *k = trim(f), *v = unquote(eq + 1);
            if (strcmp(k, "start") == 0) sp.start = v;
            else if (strcmp(k, "size") == 0) sp.size = v;
            else if (strcmp(k, "type") == 0 || strcmp(k, "Id") == 0) sp.type = v;
            else if (strcmp(k, "uuid") == 0) sp.uuid = v;
            else if (strcmp(k, "name") == 0) sp.name = v;
            else if (strcmp(k, "attrs") == 0) sp.attrs = v;
            else {
                cli_error("line %d: unknown field '%s'", lineno, k);
                goto out;
            }
        }
        if (apply_part(t, &sp, lineno) < 0)
            goto out;
    }
    if (!t && vdisk_part_new(&t, dev, kind, ss) == 0) {
        if ((id && vdisk_part_set_id(t, id) < 0) ||
            (tlen && vdisk_part_set_entries(t, (unsigned)tlen) < 0)) {
            cli_lib_error();
            goto out;
        }
        if (kind == VDISK_PT_GPT && (have_first || have_last)) {
            uint64_t f0, l0;
            vdisk_part_usable(t, &f0, &l0);
            if (vdisk_part_set_usable(t, have_first ? first : f0, have_last ? last : l0) < 0) {
                cli_lib_error();
                goto out;
            }
        }
    }
    if (!t || vdisk_part_write(t) < 0) {
        cli_lib_error();
        goto out;
    }
    ret = 0;
out:
    vdisk_part_free(t);
    return ret;
}

int part_apply_script(vdisk_dev *dev, FILE *in, unsigned sector_size)
{
    struct popts o = {.ss = sector_size, .bootable = -1};
    return do_apply(dev, in, &o);
}

/* ---- The command ------------------------------------------------------------------ */

static void report_line(void *opaque, const char *line)
{
    (void)opaque;
    printf("%s\n", line);
}

static int parse_number(const char *s, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v == 0 || v > 1000000 || !isdigit((unsigned char)s[0])) {
        cli_error("'%s' is not a partition number", s);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int edit(const char *verb, vdisk_dev *dev, const struct popts *o, char **args, int nargs)
{
    vdisk_ptable *t = read_table(dev, o);
    if (!t)
        return 1;
    unsigned ss = vdisk_part_sector_size(t);
    int r = 0;
    unsigned number = 0;
    if (strcmp(verb, "add") == 0) {
        struct vdisk_partition p = {.struct_size = sizeof p};
        p.number = o->number;
        p.logical = o->logical;
        p.bootable = o->bootable > 0;
        if ((o->start && parse_sectors(o->start, ss, &p.start) < 0) ||
            (o->size && parse_sectors(o->size, ss, &p.size) < 0)) {
            cli_error("bad --start or --size");
            r = -1;
        }
        bool gpt = vdisk_part_kind(t) == VDISK_PT_GPT;
        if (r == 0 && !gpt && o->type && !(p.mbr_type = mbr_type_of(o->type))) {
            cli_error("'%s' is not an MBR partition type", o->type);
            r = -1;
        }
        if (r == 0 && gpt) {
            if (o->uuid)
                snprintf(p.uuid, sizeof p.uuid, "%s", o->uuid);
            if (o->name)
                snprintf(p.name, sizeof p.name, "%s", o->name);
            if (o->attrs && parse_attrs(o->attrs, &p.attrs) < 0) {
                cli_error("bad attributes '%s'", o->attrs);
                r = -1;
            }
        }
        if (r == 0 && (vdisk_part_add(t, &p) < 0 ||
                       (gpt && o->type && vdisk_part_set_type(t, p.number, o->type) < 0))) {
            cli_lib_error();
            r = -1;
        }
        if (r == 0 && has_unit(o->size))
            align_end(t, &p);
        if (r == 0)
            printf("Created partition %u: sectors %" PRIu64 "-%" PRIu64 ".\n", p.number,
                   p.start, p.start + p.size - 1);
    } else {
        if (nargs < 1 || parse_number(args[0], &number) < 0) {
            if (nargs < 1)
                cli_error("%s: expecting a partition number", verb);
            vdisk_part_free(t);
            return 1;
        }
        if (strcmp(verb, "delete") == 0) {
            r = vdisk_part_delete(t, number);
        } else if (strcmp(verb, "resize") == 0) {
            uint64_t size = 0;
            if (nargs < 2) {
                cli_error("resize: expecting a size");
                r = -1;
            } else if (strcmp(args[1], "max") != 0 && strcmp(args[1], "+") != 0 &&
                       (parse_sectors(args[1], ss, &size) < 0 || size == 0)) {
                cli_error("'%s' is not a size", args[1]);
                r = -1;
            }
            if (r == 0)
                r = vdisk_part_resize(t, number, size);
        } else { /* set */
            uint64_t attrs;
            if (!o->type && !o->name && !o->uuid && !o->attrs && o->bootable < 0) {
                cli_error("set: nothing to set (--type, --name, --uuid, --attrs, --bootable)");
                r = -1;
            }
            if (r == 0 && o->type)
                r = vdisk_part_set_type(t, number, o->type);
            if (r == 0 && o->name)
                r = vdisk_part_set_name(t, number, o->name);
            if (r == 0 && o->uuid)
                r = vdisk_part_set_uuid(t, number, o->uuid);
            if (r == 0 && o->attrs) {
                if (parse_attrs(o->attrs, &attrs) < 0) {
                    cli_error("bad attributes '%s'", o->attrs);
                    r = -1;
                } else {
                    r = vdisk_part_set_attrs(t, number, attrs);
                }
            }
            if (r == 0 && o->bootable >= 0)
                r = vdisk_part_set_bootable(t, number, o->bootable);
            if (r < -1)
                cli_lib_error();
            if (r < 0) {
                vdisk_part_free(t);
                return 1;
            }
        }
        if (r < -1)
            cli_lib_error();
    }
    if (r == 0 && vdisk_part_write(t) < 0) {
        cli_lib_error();
        r = -1;
    }
    vdisk_part_free(t);
    return r < 0 ? 1 : 0;
}

int cmd_part(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'O'},
        {"sector-size", required_argument, NULL, 'z'},
        {"table", required_argument, NULL, 't'},
        {"id", required_argument, NULL, 'i'},
        {"number", required_argument, NULL, 'n'},
        {"start", required_argument, NULL, 's'},
        {"size", required_argument, NULL, 'S'},
        {"type", required_argument, NULL, 'T'},
        {"name", required_argument, NULL, 'N'},
        {"uuid", required_argument, NULL, 'u'},
        {"attrs", required_argument, NULL, 'a'},
        {"bootable", optional_argument, NULL, 'b'},
        {"logical", no_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        cli_error("part: expecting a command (list, dump, apply, create, add, delete, resize,"
                  " set, verify, repair)");
        return 1;
    }
    if (is_help(argv[1])) {
        help();
        return 0;
    }
    const char *verb = argv[1];
    static const char *const verbs[] = {"list", "dump", "apply", "create", "add", "delete",
                                        "resize", "set", "verify", "repair"};
    bool known = false;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        known |= strcmp(verb, verbs[i]) == 0;
    if (!known) {
        cli_error("part: unknown command '%s'", verb);
        fprintf(stderr, "Try 'vdisk part --help' for more information.\n");
        return 1;
    }
    struct popts o = {.bootable = -1};
    int c;
    optind = 0;
    while ((c = getopt_long(argc - 1, argv + 1, "hf:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            return 0;
        case 'f': o.format = optarg; break;
        case 'O':
            o.json = parse_output_format(optarg);
            if (o.json < 0)
                return 1;
            break;
        case 'z':
            if (strcmp(optarg, "512") == 0)
                o.ss = 512;
            else if (strcmp(optarg, "4096") == 0)
                o.ss = 4096;
            else {
                cli_error("--sector-size must be 512 or 4096");
                return 1;
            }
            break;
        case 't': o.table = optarg; break;
        case 'i': o.id = optarg; break;
        case 'n':
            if (parse_number(optarg, &o.number) < 0)
                return 1;
            break;
        case 's': o.start = optarg; break;
        case 'S': o.size = optarg; break;
        case 'T': o.type = optarg; break;
        case 'N': o.name = optarg; break;
        case 'u': o.uuid = optarg; break;
        case 'a': o.attrs = optarg; break;
        case 'b':
            if (!optarg || strcmp(optarg, "on") == 0)
                o.bootable = 1;
            else if (strcmp(optarg, "off") == 0)
                o.bootable = 0;
            else {
                cli_error("--bootable takes on or off");
                return 1;
            }
            break;
        case 'l': o.logical = true; break;
        default:
            fprintf(stderr, "Try 'vdisk part --help' for more information.\n");
            return 1;
        }
    }
    if (!o.ss)
        o.ss = cli_sector_size; /* main() takes --sector-size for every verb */
    char **args = argv + 1 + optind;
    int nargs = argc - 1 - optind;
    if (nargs < 1) {
        cli_error("part %s: expecting an image file name", verb);
        return 1;
    }
    const char *file = args[0];
    args++;
    nargs--;
    int maxargs = strcmp(verb, "apply") == 0 || strcmp(verb, "delete") == 0 ? 1
                : strcmp(verb, "resize") == 0 ? 2 : strcmp(verb, "set") == 0 ? 1 : 0;
    if (nargs > maxargs) {
        cli_error("Unexpected argument: %s", args[maxargs]);
        return 1;
    }
    bool rw = !(strcmp(verb, "list") == 0 || strcmp(verb, "dump") == 0 ||
                strcmp(verb, "verify") == 0);
    FILE *script = NULL;
    if (strcmp(verb, "apply") == 0) {
        script = nargs && strcmp(args[0], "-") != 0 ? fopen(args[0], "r") : stdin;
        if (!script) {
            cli_error("%s: %s", args[0], strerror(errno));
            return 1;
        }
    }
    vdisk_dev *dev = open_image(file, &o, rw);
    if (!dev) {
        if (script && script != stdin)
            fclose(script);
        return 1;
    }
    int ret = 0;
    if (strcmp(verb, "list") == 0 || strcmp(verb, "dump") == 0) {
        vdisk_ptable *t = read_table(dev, &o);
        if (!t) {
            ret = 1;
        } else {
            if (verb[0] == 'd')
                print_dump(t, file);
            else if (o.json)
                print_json(t, file);
            else if (print_human(t, file) < 0)
                ret = 1;
            vdisk_part_free(t);
        }
    } else if (strcmp(verb, "apply") == 0) {
        ret = do_apply(dev, script, &o);
        if (script != stdin)
            fclose(script);
    } else if (strcmp(verb, "create") == 0) {
        int kind = !o.table ? 0 : strcmp(o.table, "gpt") == 0 ? VDISK_PT_GPT
                 : strcmp(o.table, "mbr") == 0 || strcmp(o.table, "dos") == 0 ? VDISK_PT_MBR : 0;
        vdisk_ptable *t = NULL;
        if (!kind) {
            cli_error("create: --table must be mbr or gpt");
            ret = 1;
        } else if (vdisk_part_new(&t, dev, kind, o.ss) < 0 ||
                   (o.id && vdisk_part_set_id(t, o.id) < 0) || vdisk_part_write(t) < 0) {
            cli_lib_error();
            ret = 1;
        }
        vdisk_part_free(t);
    } else if (strcmp(verb, "verify") == 0) {
        int n = vdisk_part_verify(dev, o.ss, report_line, NULL);
        if (n < 0) {
            cli_lib_error();
            ret = 1;
        } else if (n == 0) {
            printf("No problems found.\n");
        } else {
            ret = 1;
        }
    } else if (strcmp(verb, "repair") == 0) {
        int n = vdisk_part_repair(dev, o.ss, report_line, NULL);
        if (n < 0) {
            cli_lib_error();
            ret = 1;
        } else if (n == 0) {
            printf("Nothing to repair.\n");
        }
    } else {
        ret = edit(verb, dev, &o, args, nargs);
    }
    if (ret == 0 && rw && vdisk_flush(dev) < 0) {
        cli_lib_error();
        ret = 1;
    }
    vdisk_close(dev);
    return ret;
}
