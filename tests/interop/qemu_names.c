/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/qemu_names.c: QEMU's file name syntaxes beyond plain
 * names, as qemu-img 7.2 and qemu-io 7.2 read them (issue 21, items 1 and
 * 7: what QEMU's iotests give the tools): json:{...} names with QEMU's
 * single-quoted strings, arrays, nested formats, "backing": null, raw's
 * offset and size, options QEMU takes that change nothing here; the null
 * driver (null-co://, null-aio://); blkdebug's error injection
 * (blkdebug:CONFIG:IMAGE and inline json rules).  Each case runs the real
 * tool and vdisk on the same input and compares outputs (timings cut) and
 * exit statuses.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* S without qemu-io's statistics lines (their times and rates vary). */
static char *no_stats(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    ck_assert_ptr_nonnull(out);
    size_t w = 0;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) + 1 : strlen(s);
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)n, s);
        if (!strstr(line, " ops; ")) {
            memcpy(out + w, s, n);
            w += n;
        }
        s += n;
    }
    out[w] = '\0';
    return out;
}

/* In the scratch folder, `qemu-io ARGS` and vdisk as qemu-io (VDISK_PROG)
 * with ARGS: the same output (statistics cut), errors and status. */
static void same_as_qemu_io(const char *args)
{
    struct run *r = run("cd '%s' && qemu-io %s", scratch_dir(), args);
    int qst = r->status;
    char *qout = no_stats(r->out), *qerr = strdup(r->err);
    r = run("cd '%s' && VDISK_PROG=qemu-io '%s' %s", scratch_dir(), vdisk_bin(), args);
    char *vout = no_stats(r->out);
    ck_assert_msg(strcmp(qout, vout) == 0, "qemu-io %s: stdout differs\nqemu-io:\n%s\nvdisk:\n%s",
                  args, qout, vout);
    ck_assert_msg(strcmp(qerr, r->err) == 0, "qemu-io %s: stderr differs\nqemu-io:\n%s\nvdisk:\n%s",
                  args, qerr, r->err);
    ck_assert_msg(qst == r->status, "qemu-io %s: exit status: qemu-io %d, vdisk %d", args, qst,
                  r->status);
    free(qout);
    free(qerr);
    free(vout);
}

/* The compress filter: writes through it, whole clusters and parts of
 * them, stored compressed by the qcow2 image below, as QEMU stores them;
 * everything else passes through; formats without compression refused. */
START_TEST(compress_filter)
{
#define CF_OPTS "--image-opts driver=compress,file.driver=qcow2,file.file.driver=file," \
                "file.file.filename="
#define CF_CMDS "-c 'write -P 0xbb 0 229376' -c 'write -P 0xcc 278528 229376' " \
                "-c 'write -P 0xdd 600000 1000' -c 'write -P 0xee 2096000 1152' " \
                "-c 'read -P 0xdd 600000 1000' -c 'write -z 1M 64k' -c 'discard 1536k 64k' " \
                "-c 'read -P 0xee 2096000 1152' -c 'read -P 0xcc 278528 4096' -c flush"
    const char *tools[2] = {"qemu-io", fmt("VDISK_PROG=qemu-io '%s'", vdisk_bin())};
    char *out[2], *check[2];
    for (int i = 0; i < 2; i++) {
        RUN_OK("cd '%s' && rm -f c%d.qcow2 && qemu-img create -q -f qcow2 c%d.qcow2 2M",
               scratch_dir(), i, i);
        RUN_OK("cd '%s' && %s " CF_CMDS " " CF_OPTS "c%d.qcow2", scratch_dir(), tools[i], i);
        out[i] = no_stats(harness_last_run()->out);
        RUN_OK("cd '%s' && qemu-img check --output=json c%d.qcow2 | grep -v '\"filename\"'",
               scratch_dir(), i);
        check[i] = strdup(harness_last_run()->out);
    }
    ck_assert_str_eq(out[1], out[0]);
    ck_assert_str_eq(check[1], check[0]);
    ck_assert_ptr_nonnull(strstr(check[0], "\"compressed-clusters\": 10,"));
    RUN_OK("cd '%s' && qemu-img compare c0.qcow2 c1.qcow2", scratch_dir());
    for (int i = 0; i < 2; i++) {
        free(out[i]);
        free(check[i]);
    }
    /* Over clusters that hold data already (QEMU 7.2 fails such a write
     * with EIO; vdisk stores the new data compressed and frees the old) */
    RUN_OK("cd '%s' && qemu-io -c 'write -P 0x11 64k 128k' c1.qcow2 >/dev/null && "
           "VDISK_PROG=qemu-io '%s' -c 'write -P 0x22 100000 4096' " CF_OPTS "c1.qcow2 && "
           "qemu-io -c 'read -P 0x11 64k 34464' -c 'read -P 0x22 100000 4096' "
           "-c 'read -P 0x11 104096 92512' c1.qcow2 && qemu-img check c1.qcow2",
           scratch_dir(), vdisk_bin());
    /* A size that is not a multiple of the cluster size: QEMU refuses to
     * write it ("Image size is not a multiple of request alignment"), vdisk
     * merges the last, short cluster as the others. */
    RUN_OK("cd '%s' && rm -f c2.qcow2 && qemu-img create -q -f qcow2 c2.qcow2 2100000 && "
           "VDISK_PROG=qemu-io '%s' -c 'write -P 0xee 2096000 4224' -c 'write -P 0xab 0 512' "
           CF_OPTS "c2.qcow2 && qemu-io -c 'read -P 0xab 0 512' -c 'read -P 0 512 2095488' "
           "-c 'read -P 0xee 2096000 4224' c2.qcow2 && qemu-img check c2.qcow2 && "
           "qemu-img check --output=json c2.qcow2 | grep -q '\"compressed-clusters\": 3,'",
           scratch_dir(), vdisk_bin());
    /* over a format that cannot compress */
    RUN_OK("cd '%s' && qemu-img create -q -f raw c.raw 1M", scratch_dir());
    same_as_qemu_io("-c 'write 0 64k' --image-opts driver=compress,file.driver=raw,"
                    "file.file.driver=file,file.file.filename=c.raw");
#undef CF_OPTS
#undef CF_CMDS
}
END_TEST

/* "K=V,K=V" as the JSON members "'K': 'V', 'K': 'V'" (malloc'd). */
static char *json_members(const char *opts)
{
    char *out = strdup(""), *copy = strdup(opts), *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        *eq = 0;
        char *next = fmt("%s%s'%s': '%s'", out, *out ? ", " : "", kv, eq + 1);
        free(out);
        out = strdup(next);
    }
    free(copy);
    return out;
}

/* blkdebug's request limits over qcow2 (formats/blkdebug/limits.c, iotest
 * 204): writes of zeroes and discards cut as QEMU cuts them, the pieces
 * shorter than the zero alignment written as zero bytes, so that the maps
 * of the two images agree to the cluster. */
START_TEST(blkdebug_limits)
{
    static const char *const limits[] = {
        "align=512,opt-write-zero=960k,max-write-zero=960k,opt-discard=960k,max-discard=960k",
        "align=512,max-transfer=64k,opt-write-zero=256k",
        "align=4k,max-transfer=8k,opt-write-zero=128k,max-write-zero=384k,opt-discard=192k",
        "align=512,max-write-zero=64k,max-discard=128k",
    };
    /* (one command per run: vdisk reuses the clusters a discard frees only
     * once the change is on disk, QEMU at once, qemu-iotests 250) */
    static const char *const cmds[][3] = {
        {"write -z 2M 2M", "discard 5000001 1900000", "write -z 123456 654321"},
        {"write -z -u 1M 3M", "discard 0 1M", "write -z 7340000 700000"},
        {"discard 4096 6M", "write -z 512 2M", "write -z -u 6M 1M"},
    };
    /* (fmt's buffers rotate: json_members uses them) */
    char *tools[2] = {strdup("qemu-io"), strdup(fmt("VDISK_PROG=qemu-io '%s'", vdisk_bin()))};
    for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++)
        for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
            char *map[2], *out[2] = {strdup(""), strdup("")};
            for (int i = 0; i < 2; i++) {
                RUN_OK("cd '%s' && rm -f l%d.qcow2 lb%d.qcow2 && qemu-img create -q -f qcow2 "
                       "lb%d.qcow2 8M && qemu-io -c 'write -P 0x11 0 8M' lb%d.qcow2 >/dev/null && "
                       "qemu-img create -q -f qcow2 -b lb%d.qcow2 -F qcow2 l%d.qcow2 && "
                       "qemu-io -c 'write -P 0x22 0 7M' l%d.qcow2 >/dev/null",
                       scratch_dir(), i, i, i, i, i, i, i);
                /* qemu-io's open -o for one command list, a json: name for the other */
                for (int k = 0; k < 3; k++) {
                    if (c % 2 == 0) {
                        RUN_OK("cd '%s' && %s -c 'open -o driver=blkdebug,image.driver=qcow2,%s "
                               "blkdebug::l%d.qcow2' -c '%s'", scratch_dir(), tools[i],
                               limits[l], i, cmds[c][k]);
                    } else {
                        char *members = json_members(limits[l]);
                        RUN_OK("cd '%s' && %s -c '%s' \"json:{'driver': 'blkdebug', 'image': "
                               "{'driver': 'qcow2', 'file': {'driver': 'file', 'filename': "
                               "'l%d.qcow2'}}, %s}\"", scratch_dir(), tools[i], cmds[c][k], i,
                               members);
                        free(members);
                    }
                    char *o = no_stats(harness_last_run()->out);
                    char *all = malloc(strlen(out[i]) + strlen(o) + 1);
                    strcat(strcpy(all, out[i]), o);
                    free(o);
                    free(out[i]);
                    out[i] = all;
                }
                RUN_OK("cd '%s' && qemu-img map --output=json l%d.qcow2 | sed 's/l%d/lN/g' && "
                       "qemu-img check -q l%d.qcow2", scratch_dir(), i, i, i);
                map[i] = strdup(harness_last_run()->out);
            }
            for (int k = 0; k < 2; k++) {
                char **v = k ? map : out;
                if (strcmp(v[0], v[1]))
                    fprintf(stderr, "%s / %s...:\n%s\nvdisk:\n%s\n", limits[l], cmds[c][0],
                            v[0], v[1]);
                ck_assert_msg(!strcmp(v[0], v[1]), "%s differs: %s / %s...",
                              k ? "the map" : "the output", limits[l], cmds[c][0]);
            }
            RUN_OK("cd '%s' && qemu-img compare l0.qcow2 l1.qcow2", scratch_dir());
            for (int i = 0; i < 2; i++) {
                free(out[i]);
                free(map[i]);
            }
        }
    free(tools[0]);
    free(tools[1]);
}
END_TEST

/* QEMU's null driver: size, read-zeroes, and its block status. */
START_TEST(null_driver)
{
    same_as_qemu_img("map", "--output=json \"json:{ 'driver': 'null-co', 'size': 1048576, "
                     "'read-zeroes': true }\"");
    same_as_qemu_img("map", "--output=json -f raw \"json:{'driver': 'raw', 'file': {'driver': "
                     "'null-aio', 'size': '65536', 'read-zeroes': 'on'}}\"");
    same_as_qemu_img("map", "-f raw null-co://");
    same_as_qemu_img("info", "null-co://");
    same_as_qemu_img("info", "-f null-co null-co://");
    same_as_qemu_io("-c 'write -P 1 0 64k' -c 'read -P 0 0 64k' "
                    "\"json:{'driver': 'null-co', 'size': 1048576, 'read-zeroes': true}\"");
    /* (without read-zeroes QEMU leaves the buffer as it was: vdisk zeroes it) */
    same_as_qemu_io("-f null-co -c 'read 0 64k' \"json:{'driver': 'null-co'}\"");
    /* a format beside a protocol's object: refused as QEMU does */
    same_as_qemu_io("-f raw -c 'read 0 512' \"json:{'driver': 'null-co'}\"");
    /* iotest 150: a conversion from a null-co source */
    RUN_OK("cd '%s' && rm -f qn.raw vn.raw && qemu-img convert -O raw \"json:{ 'driver': "
           "'null-co', 'size': 1048576, 'read-zeroes': true }\" qn.raw && '%s' convert -O raw "
           "\"json:{ 'driver': 'null-co', 'size': 1048576, 'read-zeroes': true }\" vn.raw && "
           "cmp qn.raw vn.raw", scratch_dir(), vdisk_bin());
}
END_TEST

/* raw's offset and size options (iotest 171). */
START_TEST(raw_range)
{
    RUN_OK("cd '%s' && rm -f r.raw && qemu-img create -q -f raw r.raw 4096", scratch_dir());
    const char *j = "'json:{\"driver\":\"raw\", \"offset\":\"512\", \"size\":\"2048\", "
                    "\"file\": {\"driver\":\"file\", \"filename\":\"r.raw\"}}'";
    const char *a = fmt("-c 'write -P 0x0a 0 2048' -c 'write 2047 2' -c 'read -P 0x0a 0 2048' "
                  "-c 'read 2048 1' -c 'writev 0 512 2048' %s", j);
    same_as_qemu_io(a);
    same_as_qemu_io("-f raw -c 'read -v 510 4' -c 'read -v 2558 4' r.raw");
    a = fmt("-c 'write -z 0 512' -c 'discard 2046 2' %s", j);
    same_as_qemu_io(a);
    same_as_qemu_io("-f raw -c 'read -v 510 4' -c 'read -v 2558 4' r.raw");
    /* Without size: to the end of the file. */
    same_as_qemu_io("-c 'write -P 3 3000 584' -c 'read 3583 2' 'json:{\"driver\":\"raw\", "
                    "\"offset\":512, \"file.filename\":\"r.raw\"}'");
    same_as_qemu_img("info", "-f raw r.raw");
    /* ranges that do not fit the file */
    same_as_qemu_io("-c 'read 0 1' 'json:{\"driver\":\"raw\",\"offset\":\"1024\",\"size\":\"4096\","
                    "\"file.filename\":\"r.raw\"}'");
    same_as_qemu_io("-c 'read 0 1' 'json:{\"driver\":\"raw\",\"offset\":\"5000\","
                    "\"file.filename\":\"r.raw\"}'");
}
END_TEST

/* The json: syntax QEMU reads: single quotes, arrays, nested formats,
 * backing null, options that change nothing, the format given beside the
 * name winning over the name's. */
START_TEST(json_syntax)
{
    RUN_OK("cd '%s' && rm -f b.qcow2 o.qcow2 n.qcow2 && qemu-img create -q -f qcow2 b.qcow2 1M "
           "&& qemu-io -f qcow2 -c 'write -P 7 0 64k' b.qcow2 >/dev/null && qemu-img create -q "
           "-f qcow2 -b b.qcow2 -F qcow2 o.qcow2 && qemu-img create -q -f qcow2 n.qcow2 4M && "
           "qemu-img create -q -f qcow2 n.in 1M && qemu-img convert -n -f raw -O qcow2 n.in "
           "n.qcow2", scratch_dir());
    /* backing null: the backing file's data is not read */
    same_as_qemu_io("-c 'read -P 0 0 64k' \"json:{'driver': 'qcow2', 'backing': null, "
                    "'file': {'driver': 'file', 'filename': 'o.qcow2'}}\"");
    same_as_qemu_io("-c 'read -P 7 0 64k' \"json:{'driver': 'qcow2', "
                    "'file': {'driver': 'file', 'filename': 'o.qcow2'}}\"");
    /* a qcow2 image stored in a qcow2 image (iotest 089) */
    same_as_qemu_io("-c 'write -P 5 4k 4k' -c 'read -P 5 4k 4k' \"json:{'driver': 'qcow2', "
                    "'file': {'driver': 'qcow2', 'file': {'filename': 'n.qcow2'}}}\"");
    same_as_qemu_io("-c 'read -P 0 4k 4k' -f qcow2 n.qcow2");
    /* options vdisk takes and drops (iotest 253) */
    same_as_qemu_img("map", "--output=json --image-opts "
                     "driver=qcow2,file.driver=file,file.filename=b.qcow2,cache.direct=on,"
                     "node-name=n0,file.aio=threads,discard=unmap,detect-zeroes=off");
    same_as_qemu_img("info", "\"json:{'driver': 'qcow2', 'file': {'driver': 'file', "
                     "'filename': 'b.qcow2', 'locking': 'off', 'cache': {'no-flush': true}}}\"");
    /* the format given beside the name wins (iotest 089) */
    same_as_qemu_io("-c 'open -o driver=qcow2 json:{\"driver\":\"raw\",\"file.filename\":"
                    "\"b.qcow2\"}' -c 'read -P 7 0 4k'");
    same_as_qemu_img("info", "-f qcow2 'json:{\"driver\":\"raw\",\"file.filename\":\"b.qcow2\"}'");
    /* escapes in single-quoted strings */
    same_as_qemu_img("info", "\"json:{'driver': 'qcow2', 'file.filename': 'b\\\\u002eqcow2'}\"");
}
END_TEST

/* blkdebug's error injection, from a config file and inline. */
START_TEST(blkdebug)
{
    RUN_OK("cd '%s' && rm -f d.raw d.qcow2 && qemu-img create -q -f raw d.raw 1M && "
           "qemu-img create -q -f qcow2 d.qcow2 1M && qemu-io -f qcow2 -c 'write -P 3 224k 512' "
           "d.qcow2 >/dev/null && printf '# errors\\n[inject-error]\\nevent = \"read_aio\"\\n"
           "errno = \"5\"\\nonce = \"on\"\\n' > once.conf && printf '[set-state]\\nevent = "
           "\"write_aio\"\\nnew_state = \"2\"\\n[inject-error]\\nevent = \"write_aio\"\\n"
           "state = \"2\"\\nerrno = \"28\"\\nsector = \"8\"\\n' > state.conf", scratch_dir());
    same_as_qemu_io("-f raw -c 'read 0 512' -c 'read 0 512' blkdebug:once.conf:d.raw");
    same_as_qemu_io("-f raw -c 'write 0 512' -c 'write 0 512' -c 'write 4k 512' "
                    "-c 'write 0 512' blkdebug:state.conf:d.raw");
    same_as_qemu_io("-f raw -c 'read 0 512' blkdebug::d.raw");
    same_as_qemu_io("-c 'read -P 3 224k 512' -c 'read -P 3 224k 512' "
                    "blkdebug:once.conf:d.qcow2");
    /* inline rules (iotests 020, 066, 089) */
    same_as_qemu_io("-f raw -c 'write 0 512' -c 'write 0 512' \"json:{'driver': 'raw', 'file': "
                    "{'driver': 'blkdebug', 'inject-error': [{'event': 'write_aio', 'errno': 28, "
                    "'once': true}], 'image': {'driver': 'file', 'filename': 'd.raw'}}}\"");
    same_as_qemu_io("-c 'read 224k 512' 'json:{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                    "\"blkdebug\", \"inject-error\": [{\"event\": \"l2_load\"}], "
                    "\"image.filename\": \"d.qcow2\"}}'");
    /* blkdebug over a format with request limits only (iotest 204): vdisk's
     * requests come whole, the image reads as without the layer */
    same_as_qemu_img("map", "--image-opts driver=blkdebug,image.driver=qcow2,"
                     "image.file.driver=file,image.file.filename=d.qcow2,align=4k,"
                     "max-transfer=64k");
    same_as_qemu_img("map", "--output=json 'json:{\"driver\": \"blkdebug\", \"align\": "
                     "\"512\", \"image\": {\"driver\": \"qcow2\", \"file\": {\"driver\": "
                     "\"file\", \"filename\": \"d.qcow2\"}}}'");
    /* compare's read error (iotest 074) */
    same_as_qemu_img("compare", "-f raw -F raw d.raw blkdebug:once.conf:d.raw");
    same_as_qemu_img("compare", "d.qcow2 blkdebug:once.conf:d.qcow2");
    /* refused names and rules */
    same_as_qemu_io("-f raw -c 'read 0 512' blkdebug:d.raw");
    RUN_OK("cd '%s' && printf '[inject-error]\\nevent = \"no_such_event\"\\n' > bad.conf",
           scratch_dir());
    struct run *r = run("cd '%s' && '%s' io -f raw -c 'read 0 512' blkdebug:bad.conf:d.raw",
                        scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_ptr_nonnull(strstr(r->err, "Invalid event name \"no_such_event\""));
    /* Not from an image's header: a backing file named blkdebug:... or
     * null-co:// is a file name there (QEMU follows them; vdisk does not
     * let an image read config files or files outside its folder). */
    RUN_OK("cd '%s' && rm -f h.qcow2 h2.qcow2 && qemu-img create -q -f qcow2 -u -b "
           "'blkdebug::d.raw' -F raw h.qcow2 1M && qemu-img create -q -f qcow2 -u -b "
           "'null-co://' -F raw h2.qcow2 1M", scratch_dir());
    r = run("cd '%s' && '%s' io -c 'read 0 512' h.qcow2", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
    ck_assert_ptr_nonnull(strstr(r->err, "No such file or directory"));
    r = run("cd '%s' && '%s' io -c 'read 0 512' h2.qcow2", scratch_dir(), vdisk_bin());
    ck_assert_int_ne(r->status, 0);
}
END_TEST

int main(void)
{
    require_program("qemu-img");
    require_program("qemu-io");
    Suite *s = suite_create("qemu-names");
    TCase *tc = tcase_create("qemu-names");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, null_driver);
    tcase_add_test(tc, raw_range);
    tcase_add_test(tc, json_syntax);
    tcase_add_test(tc, blkdebug);
    tcase_add_test(tc, compress_filter);
    tcase_add_test(tc, blkdebug_limits);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
