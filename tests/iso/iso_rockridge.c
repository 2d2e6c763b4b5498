/* SPDX-License-Identifier: MIT */
/*
 * tests/iso/iso_rockridge.c: Rock Ridge file types, modes, owners, times,
 * devices and symlinks in vdisk iso ls -l and extract, on ISOs that
 * genisoimage and xorriso build from a tree of every file type (issue 21
 * item 6):
 *   - ls -R -l equals bsdtar tvf (TZ=UTC): modes with setuid, setgid and
 *     sticky, uid and gid, sizes, devices as major,minor, dates, symlink
 *     targets; the link counts equal isoinfo -l -R's (Rock Ridge PX);
 *   - mtime and device numbers (--output=json) equal the tree's, by stat;
 *     genisoimage's PN (major and minor in two words) is read as Linux
 *     reads it, where bsdtar shows one 64-bit dev_t (0,7340232);
 *   - symlink targets (SL: ROOT, CURRENT, PARENT, empty components, long
 *     ones split over several SL entries and continuation areas) equal
 *     xorriso's reading and the tree's; bsdtar's too but where an SL entry
 *     ends after a whole component (bsdtar drops that '/');
 *   - extract recreates modes, owners, symlinks, FIFOs, devices and mtimes
 *     as root (stat of the tree and of the extraction equal), and as
 *     another user skips the devices with one warning each;
 *   - names that are not UTF-8 give valid JSON;
 *   - a tree 200 levels deep lists as bsdtar tf lists it; one of 1100
 *     levels lists and extracts down to 1024 levels with a warning.
 * Not root: the tree and the ISOs are made under fakeroot (owners and
 * devices), and the extraction is checked as an unprivileged one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

static bool as_root(void)
{
    return geteuid() == 0;
}

/* The command prefix that makes the tree's owners and devices real. */
static const char *fake(void)
{
    return as_root() ? "" : fmt("fakeroot -i '%s' -s '%s' ", scratch("fakeroot.state"),
                                scratch("fakeroot.state"));
}

static const char *const isos[] = {"x.iso", "g.iso"};

static void setup(void)
{
    static bool done;
    if (done)
        return;
    require_program("xorriso");
    require_program("genisoimage");
    require_program("bsdtar");
    require_program("isoinfo");
    require_program("python3");
    if (!as_root())
        require_program("fakeroot");
    const char *t = scratch("tree");
    RUN_OK(": > '%s'", scratch("fakeroot.state"));
    RUN_OK("%ssh -c \"rm -rf '%s' && mkdir -p '%s/d' '%s/sticky' '%s/a' && cd '%s' && "
           "echo hello > f && printf x > suid && chown 1234:5678 suid && chmod 4755 suid && "
           "chmod 2750 d && chmod 1777 sticky && mkfifo fifo && chmod 0640 fifo && "
           "mknod cdev c 1 3 && chmod 0620 cdev && mknod bdev b 7 200 && chmod 0660 bdev && "
           "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\\\"sock\\\")' && "
           "ln -s /abs/path/x absl && chown -h 42:43 absl && ln -s ../../up/./x rel && "
           "ln -s . dot && ln -s .///file s1 && ln -s /tmp//../ s2 && ln -s a/./b/../c s3 && "
           "ln -s ../../.. ups && ln -s / root && ln -s a// trail && "
           "find . -exec touch -h -d '2001-02-03 04:05:06 UTC' {} + && "
           "touch -h -d '2019-07-08 09:10:11 UTC' f rel d . && "
           "genisoimage -quiet -R -o '%s' . && "
           /* Long targets for xorriso only: genisoimage writes SL components
            * longer than their entries past some 100 bytes, and hangs on 50
            * components. */
           "ln -s \\$(seq -f comp%%03g 0 44 | paste -sd/) long && "
           "ln -s \\$(printf %%0250d 0 | tr 0 x)/\\$(printf %%0250d 0 | tr 0 y)/"
           "\\$(printf %%0200d 0 | tr 0 z) huge && "
           "ln -s \\$(seq -f comp%%03g 0 119 | paste -sd/) long2 && "
           "touch -h -d '2001-02-03 04:05:06 UTC' long huge long2 && "
           "touch -h -d '2019-07-08 09:10:11 UTC' . && "
           "xorriso -as mkisofs -quiet -R -o '%s' . 2>/dev/null\"",
           fake(), t, t, t, t, t, scratch("g.iso"), scratch("x.iso"));
    done = true;
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* LINES (n of them) sorted, one a line, and freed. */
static char *join_sorted(char **lines, size_t n)
{
    qsort(lines, n, sizeof *lines, line_cmp);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *out = malloc(total), *o = out;
    *o = '\0';
    for (size_t i = 0; i < n; i++) {
        o += sprintf(o, "%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    return out;
}

static bool skipped(const char *path, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (!strcmp(path, *skip))
            return true;
    return false;
}

/*
 * "MODE UID GID SIZE YYYY-MM-DD PATH[ -> TARGET]" per entry, sorted, the
 * entries named in SKIP left out.  KIND 0: vdisk ls -l ("Y-M-D H:M"), 1:
 * bsdtar tvf ("Mon D YYYY", the dates here are all older than half a year).
 */
static char *long_listing(const char *text, int kind, const char *const *skip)
{
    static const char *const months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char **lines = calloc(4096, sizeof *lines);
    size_t n = 0;
    char *copy = strdup(text), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l && n < 4096; l = strtok_r(NULL, "\n", &save)) {
        char mode[16], uid[16], gid[16], size[32], d1[16], d2[16], d3[16], date[48];
        int pos = 0;
        if (kind == 0) {
            if (sscanf(l, "%15s %*s %15s %15s %31s %15s %15s %n", mode, uid, gid, size, d1, d2,
                       &pos) < 6 || !pos)
                continue;
            snprintf(date, sizeof date, "%s", d1);
        } else {
            if (sscanf(l, "%15s %*s %15s %15s %31s %15s %15s %15s %n", mode, uid, gid, size, d1,
                       d2, d3, &pos) < 7 || !pos)
                continue;
            const char *m = strstr(months, d1);
            ck_assert_msg(m && strlen(d3) == 4, "bsdtar's date: %s", l);
            int day = atoi(d2);
            ck_assert_msg(day >= 1 && day <= 31, "bsdtar's day: %s", l);
            snprintf(date, sizeof date, "%.4s-%02d-%02d", d3, (int)(m - months) / 3 % 12 + 1, day);
        }
        const char *path = l + pos;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(path, " "), path);
        if (skipped(name, skip))
            continue;
        lines[n++] = strdup(fmt("%s %s %s %s %s %s", mode, uid, gid, size, date, path));
    }
    free(copy);
    return join_sorted(lines, n);
}

static void same(const char *vdisk, const char *other, const char *what)
{
    ck_assert_msg(strcmp(vdisk, other) == 0, "%s differ:\n--- vdisk\n%s--- other\n%s", what,
                  vdisk, other);
}

/* Where SL entries end after a whole component: bsdtar drops the '/'. */
static const char *const sl_split[] = {"long", "long2", NULL};
/* genisoimage's PN words, which bsdtar takes for one 64-bit dev_t. */
static const char *const g_skip[] = {"cdev", "bdev", NULL};

START_TEST(listing_equals_bsdtar)
{
    setup();
    const char *iso = scratch(isos[_i]);
    struct run *r = run("TZ=UTC bsdtar tvf '%s'", iso);
    ck_assert_msg(r->status == 0, "bsdtar: %s", r->err);
    char *b = long_listing(r->out, 1, _i ? g_skip : sl_split);
    r = run("%s iso ls -R -l '%s'", vdisk_bin(), iso);
    ck_assert_msg(r->status == 0 && !*r->err, "vdisk iso ls: %s", r->err);
    char *v = long_listing(r->out, 0, _i ? g_skip : sl_split);
    same(v, b, "vdisk iso ls -R -l and bsdtar tvf");
    /* What is there: every type, the special bits, owners, devices. */
    static const char *const want[] = {
        "-rwsr-xr-x 1234 5678 1 2001-02-03 suid\n", "drwxr-s--- 0 0 2048 2019-07-08 d\n",
        "drwxrwxrwt 0 0 2048 2001-02-03 sticky\n", "prw-r----- 0 0 0 2001-02-03 fifo\n",
        "srwxr-xr-x 0 0 0 2001-02-03 sock\n", "lrwxrwxrwx 42 43 0 2001-02-03 absl -> /abs/path/x\n",
        "lrwxrwxrwx 0 0 0 2001-02-03 s1 -> .///file\n",
        "lrwxrwxrwx 0 0 0 2001-02-03 s2 -> /tmp//..\n",
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        ck_assert_msg(strstr(v, want[k]), "%s: no '%s' in\n%s", iso, want[k], v);
    free(b);
    free(v);
    /* genisoimage's devices: as Linux reads PN (bsdtar: 0,7340232 and 0,1048579). */
    r = run("%s iso ls -l '%s' | grep dev$ | awk '{print $1, $5, $8}'", vdisk_bin(), iso);
    ck_assert_str_eq(r->out, "brw-rw---- 7,200 bdev\ncrw--w---- 1,3 cdev\n");
}
END_TEST

/* "NLINK PATH" per entry from isoinfo -l -R (PX's link count), "." and ".." left out. */
START_TEST(nlink_equals_isoinfo)
{
    setup();
    const char *iso = scratch(isos[_i]);
    struct run *r = run("isoinfo -R -l -i '%s' | awk '/^Directory listing of /{d=substr($4,2)} "
                        "/^[-dlpcbsf]/{split(substr($0, index($0, \"]\") + 3), a, \" \"); "
                        "if (a[1]!=\".\" && a[1]!=\"..\") print $2, d a[1]}' | LC_ALL=C sort",
                        iso);
    ck_assert_msg(r->status == 0, "isoinfo: %s", r->err);
    char *want = strdup(r->out);
    r = run("%s iso ls -R -l '%s' | awk '$8!=\".\" {print $2, $8}' | LC_ALL=C sort",
            vdisk_bin(), iso);
    same(r->out, want, "link counts of vdisk iso ls -l and isoinfo -l -R");
    /* genisoimage counts a directory's links, xorriso writes 1. */
    ck_assert_msg(strstr(want, _i ? "2 d\n" : "1 d\n"), "%s", want);
    free(want);
}
END_TEST

/* --output=json: mtime and device numbers equal the tree's (stat). */
START_TEST(json_equals_tree)
{
    setup();
    const char *iso = scratch(isos[_i]), *t = scratch("tree");
    RUN_OK("%s iso ls -R --output=json '%s' > '%s'", vdisk_bin(), iso, scratch("ls.json"));
    struct run *r = run("python3 -c 'import json,sys\n"
                        "for e in json.load(open(sys.argv[1])):\n"
                        "  if e[\"path\"] == \".\": continue\n"
                        "  dev = \"%%d,%%d\" %% (e[\"major\"], e[\"minor\"]) if \"major\" in e "
                        "else \"-\"\n"
                        "  print(e[\"path\"], e[\"mtime\"], dev)' '%s' | LC_ALL=C sort",
                        scratch("ls.json"));
    ck_assert_msg(r->status == 0, "%s", r->err);
    char *v = strdup(r->out);
    r = run("cd '%s' && %sfind . -mindepth 1 %s-printf '%%P %%T@ %%y\\n' | "
            "while read p t y; do d=-; case $y in c|b) d=$(%sstat -c %%Hr,%%Lr \"$p\");; esac; "
            "echo \"$p ${t%%.*} $d\"; done | LC_ALL=C sort", t, fake(),
            _i ? "! -name long ! -name long2 ! -name huge " : "", fake());
    ck_assert_msg(r->status == 0, "%s", r->err);
    same(v, r->out, "vdisk iso ls --output=json and stat of the tree");
    ck_assert_msg(strstr(v, "bdev 981173106 7,200\n") && strstr(v, "cdev 981173106 1,3\n"), "%s", v);
    free(v);
}
END_TEST

/* Symlink targets: xorriso's reading, and the tree's (the makers drop a trailing '/'). */
START_TEST(symlinks_equal_xorriso)
{
    setup();
    const char *iso = scratch(isos[_i]), *t = scratch("tree");
    struct run *r = run("xorriso -indev '%s' -lsl / 2>/dev/null | grep -- ' -> ' | "
                        "sed \"s/.* '\\([^']*\\)' -> '\\(.*\\)'$/\\1 -> \\2/\" | LC_ALL=C sort", iso);
    ck_assert_msg(r->status == 0, "xorriso: %s", r->err);
    char *x = strdup(r->out);
    r = run("%s iso ls -l '%s' | grep -- ' -> ' | sed 's/.* \\([^ ]*\\) -> /\\1 -> /' | "
            "LC_ALL=C sort", vdisk_bin(), iso);
    ck_assert_msg(r->status == 0, "%s", r->err);
    char *v = strdup(r->out);
    same(v, x, "symlink targets of vdisk iso ls -l and xorriso -lsl");
    r = run("cd '%s' && for f in *; do test -L \"$f\" || continue; l=$(readlink \"$f\"); "
            "case $l in */) test \"$l\" = / || test \"$l\" = a// || l=${l%%/};; esac; "
            "%s echo \"$f -> $l\"; done | LC_ALL=C sort", t,
            _i ? "case $f in long|long2|huge) continue;; esac;" : "");
    same(v, r->out, "symlink targets of vdisk iso ls -l and the tree");
    free(x);
    free(v);
}
END_TEST

/*
 * "MODE [UID GID] MTIME DEV PATH -> TARGET" of every entry below DIR; left
 * out: sockets, the long symlinks (not in g.iso), and the targets the makers change
 * (a trailing '/' dropped: symlinks_equal_xorriso has them).
 */
static char *stat_tree(const char *dir, bool owners, bool genisoimage)
{
    struct run *r = run("cd '%s' && find . -mindepth 1 ! -type s %s! -name s2 "
                        "! -name trail -exec stat -c '%%A %s%%Y %%Hr,%%Lr %%N' {} + | "
                        "LC_ALL=C sort", dir,
                        genisoimage ? "! -name long ! -name long2 ! -name huge " : "",
                        owners ? "%u %g " : "");
    ck_assert_msg(r->status == 0, "stat: %s", r->err);
    return strdup(r->out);
}

START_TEST(extract_equals_tree)
{
    setup();
    const char *iso = scratch(isos[_i]);
    const char *x = scratch(fmt("%s-x", isos[_i]));
    RUN_OK("rm -rf '%s'", x);
    struct run *r = run("%s iso extract '%s' / '%s'", vdisk_bin(), iso, x);
    ck_assert_msg(r->status == 0, "vdisk iso extract: %s", r->err);
    if (as_root()) {
        ck_assert_str_eq(r->err, "vdisk: warning: skipped /sock (socket)\n");
        char *want = stat_tree(scratch("tree"), true, _i), *got = stat_tree(x, true, _i);
        same(got, want, "stat of the extraction and of the tree");
        ck_assert_msg(strstr(got, "crw--w---- 0 0 981173106 1,3 './cdev'") &&
                      strstr(got, "-rwsr-xr-x 1234 5678 981173106 0,0 './suid'") &&
                      strstr(got, "lrwxrwxrwx 42 43 981173106 0,0 './absl' -> '/abs/path/x'"),
                      "%s", got);
        free(want);
        free(got);
    }
    /* Not root: no devices, no owners, one warning each. */
    const char *prefix = "";
    if (as_root()) {
        if (!have_program("setpriv")) {
            skip_note("extract_equals_tree: an unprivileged extraction: setpriv is missing");
            return;
        }
        prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
        /* The other user goes through the scratch folder to its own. */
        RUN_OK("chmod o+x '%s'", scratch_dir());
    }
    const char *u = scratch(fmt("%s-user", isos[_i]));
    RUN_OK("rm -rf '%s' && mkdir -m 777 '%s' && cp '%s' '%s/i.iso' && chmod 644 '%s/i.iso'", u,
           u, iso, u, u);
    r = run("%s%s iso extract '%s/i.iso' / '%s/x'", prefix, vdisk_bin(), u, u);
    ck_assert_msg(r->status == 0, "vdisk iso extract: %s", r->err);
    ck_assert_str_eq(r->err,
                     "vdisk: warning: skipped /bdev (block device 7,200): devices are made only "
                     "when run as root\n"
                     "vdisk: warning: skipped /cdev (character device 1,3): devices are made only "
                     "when run as root\n"
                     "vdisk: warning: skipped /sock (socket)\n");
    char *got = stat_tree(fmt("%s/x", u), false, _i);
    ck_assert_msg(strstr(got, "prw-r----- 981173106 0,0 './fifo'") &&
                  strstr(got, "drwxr-s--- 1562577011 0,0 './d'") &&
                  strstr(got, "drwxrwxrwt 981173106 0,0 './sticky'") &&
                  strstr(got, "lrwxrwxrwx 981173106 0,0 './s1' -> './//file'") &&
                  !strstr(got, "cdev"), "%s", got);
    free(got);
}
END_TEST

/* Names that are not UTF-8: the JSON listing stays valid. */
START_TEST(json_names_valid)
{
    setup();
    const char *t = scratch("bytes"), *iso = scratch("bytes.iso");
    RUN_OK("rm -rf '%s' && mkdir '%s' && : > \"%s/$(printf 'bad\\377\\376name')\" && "
           "ln -s \"$(printf 'to\\377')\" '%s/link' && "
           "xorriso -as mkisofs -quiet -R -o '%s' '%s' 2>/dev/null", t, t, t, t, iso, t);
    struct run *r = run("%s iso ls -R --output=json '%s' | python3 -c 'import json,sys; "
                        "print(sorted((e[\"path\"], e.get(\"target\")) for e in json.load(sys.stdin)))'",
                        vdisk_bin(), iso);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, "[('.', None), ('bad\ufffd\ufffdname', None), ('link', 'to\ufffd')]\n");
}
END_TEST

/* A chain of LEVELS directories "d", a file "f" at the bottom, made by xorriso. */
static const char *deep_iso(unsigned levels)
{
    const char *iso = scratch(fmt("deep%u.iso", levels)), *t = scratch(fmt("deep%u", levels));
    if (access(iso, F_OK) == 0)
        return iso;
    RUN_OK("rm -rf '%s' && mkdir '%s' && cd '%s' && p=. && i=0 && "
           "while [ $i -lt %u ]; do p=$p/d; i=$((i + 1)); done && mkdir -p $p && "
           "echo bottom > $p/f && xorriso -as mkisofs -quiet -R -o '%s' . 2>/dev/null",
           t, t, t, levels, iso);
    return iso;
}

START_TEST(deep_tree)
{
    setup();
    /* 200 levels (once refused past 128): all of it, as bsdtar tf. */
    const char *iso = deep_iso(200);
    struct run *r = run("bsdtar tf '%s' | LC_ALL=C sort", iso);
    ck_assert_msg(r->status == 0, "bsdtar: %s", r->err);
    char *b = strdup(r->out);
    r = run("%s iso ls -R '%s' | LC_ALL=C sort", vdisk_bin(), iso);
    ck_assert_msg(r->status == 0 && !*r->err, "%s", r->err);
    same(r->out, b, "vdisk iso ls -R and bsdtar tf of 200 levels");
    ck_assert_int_eq(strlen(r->out), strlen(".\n") + 200 * 201 + 200 * 2 + 2);
    free(b);
    /* 1100 levels: the directories down to 1024 levels are listed (their
     * entries, 1025 levels, too), one warning where it stops, exit 0. */
    iso = deep_iso(1100);
    char *stop = calloc(1, 2 * 1025 + 1);
    for (int i = 0; i < 1025; i++)
        strcat(stop, i ? "/d" : "d");
    r = run("%s iso ls -R '%s' | wc -l | tr -d ' '", vdisk_bin(), iso);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, "1026\n");
    char *want = malloc(strlen(stop) + 128);
    sprintf(want, "vdisk: warning: %s: more than 1024 levels (or 32767 bytes) deep; its entries "
            "are not listed\n", stop);
    ck_assert_str_eq(r->err, want);
    const char *x = scratch("deep-x");
    RUN_OK("rm -rf '%s'", x);
    r = run("%s iso extract '%s' / '%s' && cd '%s' && find . -type d | wc -l | tr -d ' '",
            vdisk_bin(), iso, x, x);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, "1025\n");
    sprintf(want, "vdisk: warning: /%s: more than 1024 levels (or 32767 bytes) deep; not "
            "extracted\n", stop);
    ck_assert_str_eq(r->err, want);
    free(want);
    free(stop);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("iso-rockridge");
    TCase *tc = tcase_create("rockridge");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, listing_equals_bsdtar, 0, 2);
    tcase_add_loop_test(tc, nlink_equals_isoinfo, 0, 2);
    tcase_add_loop_test(tc, json_equals_tree, 0, 2);
    tcase_add_loop_test(tc, symlinks_equal_xorriso, 0, 2);
    tcase_add_loop_test(tc, extract_equals_tree, 0, 2);
    tcase_add_test(tc, json_names_valid);
    tcase_add_test(tc, deep_tree);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
