/* SPDX-License-Identifier: MIT */
/* tools/vdisk/cli.h: what the vdisk subcommands share. */
#ifndef VDISK_CLI_H
#define VDISK_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vdisk/vdisk.h>

/* Each subcommand: returns the process exit status. */
int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_io(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_part(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_amend(int argc, char **argv);
int cmd_iso(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_nbd(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);

/* vdisk part apply's work (fuzz/part_apply.c calls it): writes the table
 * that the sfdisk script read from IN describes to DEV, with SECTOR_SIZE
 * (0: from the script or the device).  Returns the exit status (0 or 1). */
int part_apply_script(vdisk_dev *dev, FILE *in, unsigned sector_size);

/* vdisk io's command loop (fuzz/io_cmds.c calls it): runs the commands
 * read from IN, one a line, on DEV until the end of IN or "quit"; PROMPT
 * prints "vdisk io> " before each.  With HOST_FILES false, write -s (which
 * reads a host file) is refused.  Returns the exit status (0, or 1 when a
 * command failed). */
int io_run_script(vdisk_dev *dev, FILE *in, bool prompt, bool host_files);

/* The "Format specific information:" block of IN as qemu-img info (and
 * qemu-io's info) prints it: qcow2's and vmdk's; nothing for the others. */
void print_format_specific(const struct vdisk_info *in);
/* The name of the Kth flag set in a bitmap's FLAGS ("in-use", "auto"), or
 * NULL past the last. */
const char *bitmap_flag(uint32_t flags, unsigned k);

/* The snapshot table as qemu-img prints it ("Snapshot list:" ...). */
void print_snapshot_table(vdisk_dev *dev);

/* The name errors start with: "vdisk", or "qemu-img"/"qemu-io" when vdisk
 * runs as them (main.c: argv[0]'s name or $VDISK_PROG). */
extern const char *cli_progname;
/* Prints "PROGNAME: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints qemu-img's refusal of the size option KEY that is not a size,
 * after "WHERE: " when WHERE is not NULL. */
void cli_bad_size_option(const char *where, const char *key);
/* Prints the library's last error on stderr ("vdisk: ..."), without the
 * name of the library call that failed (cli_lib_detail()). */
void cli_lib_error(void);
/* The library's failure to open FILE as cli_lib_error() prints it, or
 * run as qemu-img "qemu-img: Could not open 'FILE': MESSAGE" and as
 * qemu-io "qemu-io: can't open device FILE: MESSAGE", their words. */
void cli_open_error(const char *file);
/* The library's last message on this thread without the name of the call
 * that failed, for the CLI's own words before it. */
const char *cli_lib_detail(void);

/* Sizes as qemu-img prints them: "1 MiB", "4 KiB", "1.5 GiB", "0 B". */
void size_to_str(uint64_t v, char *buf, size_t len);
/* Sizes as qemu-io prints them: "1 MiB", "512 bytes", "1.500 KiB". */
void cvtstr(double v, char *buf, size_t len);

/* Writes S as a JSON string (with quotes) as QEMU writes one: valid JSON
 * whatever the bytes (U+FFFD for what is not UTF-8), non-ASCII escaped. */
void json_string(FILE *f, const char *s);
/* The same with S's bytes as they are, only '"', '\\' and control
 * characters escaped, as sfdisk writes names (and for json: names vdisk
 * reads back, where a file name need not be UTF-8). */
void json_string_bytes(FILE *f, const char *s);

/* The --output=FORMAT value: 0 human, 1 json, -1 invalid (message printed). */
int parse_output_format(const char *v);

/*
 * Opens PATH with the usual CLI options; PATH may name a partition of an
 * image as IMAGE:pN (see partpath.h).  Prints the error and returns NULL.
 * cli_open_image() opens a whole image only.
 */
struct open_args {
    const char *format;
    bool read_only;
    const char *cache;     /* NULL: the library's default */
    const char *engine;    /* NULL: the library's default */
    bool repair;           /* open for vdisk_check's repair ("repair" option) */
    bool check;            /* open for vdisk_check ("check" option) */
    bool backing_confine;  /* backing-confine=on (untrusted images) */
    bool force_share;      /* -U: read even while another process writes */
    const char *const *options; /* more library options: KEY, VALUE, ..., NULL */
    bool unnamed;          /* qemu-io: the image given by options alone, open
                            * errors as "qemu-io: can't open: MESSAGE" */
    bool bare_errors;      /* open errors as the message alone (qemu-io's
                            * reopen) */
    bool no_key;           /* encrypted images open without their key (info) */
    const char *key_secret; /* the secret ID of an encrypted image of FORMAT
                               (luks: key-secret, qcow2: encrypt.key-secret) */
};
vdisk_dev *cli_open(const char *path, const struct open_args *a);
/* --image-opts: LIST is an image given by options (KEY=VALUE,..., ",," a
 * comma), as qemu-img takes it: the json: name it stands for (malloc'd),
 * or NULL with the reason printed (-f FORMAT may not be given with it). */
char *cli_image_opts(const char *list, const char *format);
/* The end of the item of an option list (KEY=VALUE,...) that starts at P:
 * its single comma, or its terminating NUL (",," is a comma inside it). */
const char *cli_list_item_end(const char *p);
/* getopt_long values of --image-opts and --target-image-opts. */
#define CLI_OPT_IMAGE_OPTS        0x1000
#define CLI_OPT_TARGET_IMAGE_OPTS 0x1001
vdisk_dev *cli_open_image(const char *file, const struct open_args *a);

/* Opens NAME (of FORMAT, raw when NULL) read-only as IMAGE's backing file
 * would be opened: a relative NAME is taken from IMAGE's folder. */
vdisk_dev *cli_open_beside(const char *image, const char *name, const char *format);

/*
 * A backing file NAME given without its format, as qemu-img 7.2 refuses
 * it: prints "IMAGE: Backing file specified without backing format" and,
 * unless UNSAFE (-u: the file is not opened), the format that probing
 * NAME (beside IMAGE) detects, as qemu-img's hint does; when NAME cannot
 * be opened, the error opening it instead.  Always returns -1.
 */
int cli_refuse_backing_without_format(const char *image, const char *name, bool unsafe);

/* The cache mode given to -t or -T, checked before anything is touched:
 * 0, or -1 with "Invalid cache option: MODE" printed. */
int cli_check_cache(const char *mode);
/* LEN bytes (at least 1) on a page boundary, or NULL: buffers that go to
 * O_DIRECT files as they are (a buffer off the page boundary costs the
 * disk one more segment per request, or the library a bounce copy).
 * Release with free(). */
void *cli_page_alloc(size_t len);

/* The edit distance between A and B (insertions, deletions, substitutions
 * and swaps of neighbours), for short words; at most 99. */
unsigned cli_distance(const char *a, const char *b);

/*
 * getopt_long() for every verb: the same, and after glibc's "unrecognized
 * option '--outptu'" it names the nearest long option ("Did you mean
 * '--output'?") when one is near (at once, or through
 * cli_print_option_hint() for a verb that prints its own message).  Every
 * verb's getopt_long call is this one through the macro below.
 */
int cli_getopt_long(int argc, char *const argv[], const char *optstring,
                    const struct option *longopts, int *longindex);
#define getopt_long cli_getopt_long
/* A verb whose optstring starts with ':' prints its own "unrecognized
 * option" message, then this: the hint, if one was found (else nothing). */
void cli_print_option_hint(void);

/* Common option handling: prints help for "-h" / "--help". */
bool is_help(const char *arg);

/* True when the -o list LIST asks for help: an element "help" or "?". */
bool cli_is_help_option(const char *list);
/* Prints the create options of FORMAT as `qemu-img create -o help` lists
 * them; 0, or 1 after an error message (no such format, or one vdisk does
 * not create). */
int cli_print_create_options(const char *format);

/* VALUE as a size in [MIN, MAX] (MIN >= 0), as qemu-img's cvtnum_full()
 * reads it for NAME ("bs", "rate limit"): -1 with qemu-img's messages
 * printed ("Invalid NAME specified. You may use k, M, ..." on two lines,
 * or "... Must be between MIN and MAX."). */
int64_t cli_cvtnum(const char *name, const char *value, int64_t min, int64_t max);

/* vdisk dd, as qemu-img dd. */
int cmd_dd(int argc, char **argv);

/* convert --bitmaps (cmd_bitmap.c): what qemu-img refuses before the
 * target is made (NSRC sources, SRC the first), then the source's bitmaps
 * added to DST with their bits, as qemu-img convert copies them. */
int cli_convert_bitmaps_check(int nsrc, vdisk_dev *src, const char *out_fmt, bool skip_broken);
int cli_convert_bitmaps(vdisk_dev *src, vdisk_dev *dst, bool skip_broken);
/* --object (tools/vdisk/secret.c): qemu-img's secret objects
 * (secret,id=ID,file=PATH|data=TEXT[,format=raw|base64]), kept for the
 * verb's opens and creates.  cli_object_add: 0, or -1 with the reason
 * printed.  cli_secrets_apply: sets the options secret.ID=VALUE in O for
 * every one (which an image's key-secret=ID names); 0 or -1. */
#define CLI_OPT_OBJECT 0x1002
int cli_object_add(const char *arg);
int cli_secrets_apply(vdisk_options *o);

/* The encryption block of qemu-img info (secret.c), INDENT spaces in;
 * WITH_FORMAT: qcow2's "format: luks" line.  The JSON object is printed
 * from "{" at the cursor to its "}" at INDENT. */
void print_encrypt_human(const struct vdisk_encrypt_info *e, int indent, bool with_format);
void print_encrypt_json(const struct vdisk_encrypt_info *e, int indent, bool with_format);

/* An -o list qemu-img accepts (not empty, not starting with a comma, not
 * ending in a lone comma): true, or false with qemu-img's "Invalid option
 * list: LIST" printed. */
bool cli_valid_option_list(const char *list);

#endif /* VDISK_CLI_H */
