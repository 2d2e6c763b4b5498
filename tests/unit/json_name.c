/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/json_name.c: json:{...} file names (lib/json_name.c): the
 * plain names they come to (files, NBD URIs, rbd: names with their
 * escapes), the format and read-only flag they say, the JSON refused with
 * its exact message, and vdisk_open/vdisk_create taking them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "harness.h"
#include "json_name.h"

/* Parses NAME, which must be taken: checks the plain name, the format
 * (NULL: none) and read-only (-1: not said). */
static void takes(const char *name, const char *filename, const char *format, int ro)
{
    struct json_name n;
    int r = json_name_parse(name, &n);
    ck_assert_msg(r == 0, "%s: %s", name, vdisk_get_error());
    ck_assert_str_eq(n.filename, filename);
    if (format)
        ck_assert_str_eq(n.format, format);
    else
        ck_assert_ptr_null(n.format);
    ck_assert_int_eq(n.read_only, ro);
    json_name_free(&n);
}

/* Parses NAME, which must be refused with ERR and the message
 * "NAME: WHY". */
static void refuses(const char *name, int err, const char *why)
{
    struct json_name n;
    ck_assert_int_eq(json_name_parse(name, &n), err);
    ck_assert_ptr_null(n.filename);
    char want[4096];
    snprintf(want, sizeof want, "%s: %s", name, why);
    const char *got = vdisk_get_error();
    const char *colon = strstr(got, ": ");
    ck_assert_ptr_nonnull(colon);
    ck_assert_str_eq(colon + 2, want); /* after "json_name_parse: "-like context */
    json_name_free(&n);
}

START_TEST(files)
{
    takes("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"a.qcow2\"}}",
          "a.qcow2", "qcow2", -1);
    /* Dotted keys are nested objects; whitespace anywhere between tokens. */
    takes("json: { \"driver\" : \"raw\" ,\n\t\"file.driver\": \"host_device\", "
          "\"file.filename\": \"/dev/sdz\" } ", "/dev/sdz", "raw", -1);
    /* Without a format: probed. */
    takes("json:{\"file\":{\"driver\":\"file\",\"filename\":\"x\"}}", "x", NULL, -1);
    /* Without the protocol's driver, the name says which. */
    takes("json:{\"driver\":\"raw\",\"file\":{\"filename\":\"rbd:p/i\"}}", "rbd:p/i", "raw",
          -1);
    /* A protocol at the top: the image is raw, the format not probed. */
    struct json_name n;
    ck_assert_int_eq(json_name_parse("json:{\"driver\":\"file\",\"filename\":\"f.img\"}", &n), 0);
    ck_assert_str_eq(n.filename, "f.img");
    ck_assert_ptr_null(n.format);
    ck_assert(n.protocol_only);
    json_name_free(&n);
    /* read-only, as a boolean or as QEMU's on/off. */
    takes("json:{\"driver\":\"qcow2\",\"read-only\":true,\"file.filename\":\"a\"}", "a", "qcow2",
          1);
    takes("json:{\"driver\":\"qcow2\",\"read-only\":\"off\",\"file.filename\":\"a\"}", "a",
          "qcow2", 0);
    /* String escapes, UTF-16 surrogate pairs, UTF-8 as it is. */
    takes("json:{\"file\":{\"filename\":\"a\\\"b\\\\c\\/d\\u00e9\\ud83d\\ude00\xc3\xa9\\t\"}}",
          "a\"b\\c/d\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9\t", NULL, -1);
}
END_TEST

START_TEST(rbd)
{
    takes("json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\",\"pool\":\"rbd\","
          "\"image\":\"vm1\"}}", "rbd:rbd/vm1", "raw", -1);
    /* As qemu-img shows an RBD image (rbd_name_json), with every part. */
    takes("json:{\"driver\": \"qcow2\", \"file\": {\"pool\": \"p:1\", \"image\": \"i@2/x\", "
          "\"conf\": \"/etc/c:e.conf\", \"snapshot\": \"s\\\\1\", \"driver\": \"rbd\", "
          "\"namespace\": \"ns\", \"user\": \"u\"}}",
          "rbd:p\\:1/ns/i\\@2\\/x@s\\\\1:conf=\\/etc\\/c\\:e.conf:id=u", "qcow2", -1);
    /* An empty namespace is none. */
    takes("json:{\"driver\":\"rbd\",\"pool\":\"p\",\"namespace\":\"\",\"image\":\"i\"}",
          "rbd:p/i", NULL, -1);
    takes("json:{\"driver\":\"rbd\",\"filename\":\"rbd:p/i@s:id=u\"}", "rbd:p/i@s:id=u", NULL,
          -1);
    /* Shown as qemu-img shows it: the keys given, in QEMU's order. */
    struct json_name n;
    ck_assert_int_eq(json_name_parse("json:{\"file\":{\"user\":\"u\\\"\",\"image\":\"i\","
                                     "\"driver\":\"rbd\",\"pool\":\"p\"},\"driver\":\"qcow2\"}",
                                     &n), 0);
    ck_assert_str_eq(n.shown_file, "{\"pool\": \"p\", \"image\": \"i\", \"driver\": \"rbd\", "
                     "\"user\": \"u\\\"\"}");
    json_name_free(&n);
    /* Given as a plain name: shown as that name is. */
    ck_assert_int_eq(json_name_parse("json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\","
                                     "\"filename\":\"rbd:p/i\"}}", &n), 0);
    ck_assert_ptr_null(n.shown_file);
    json_name_free(&n);
}
END_TEST

START_TEST(nbd)
{
    takes("json:{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\",\"host\":\"127.0.0.1\","
          "\"port\":\"10810\"},\"export\":\"disk\"}", "nbd://127.0.0.1:10810/disk", NULL, -1);
    /* Numbers are taken for the port; the port is 10809 by default; IPv6
     * addresses in brackets; the export name percent-encoded. */
    takes("json:{\"driver\":\"nbd\",\"server\":{\"host\":\"::1\",\"port\":10811},"
          "\"export\":\"a b%/c\"}", "nbd://[::1]:10811/a%20b%25/c", NULL, -1);
    takes("json:{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\",\"host\":\"h\"}}",
          "nbd://h:10809/", NULL, -1);
    takes("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\","
          "\"path\":\"/run/a b.sock\"},\"export\":\"e\"}}",
          "nbd+unix:///e?socket=/run/a%20b.sock", "qcow2", -1);
    takes("json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"filename\":"
          "\"nbds://h/e\"}}", "nbds://h/e", "raw", -1);
}
END_TEST

START_TEST(bad_json)
{
    refuses("json:", -EINVAL, "Could not parse the JSON options: an object ({...}) was "
            "expected (at byte 5)");
    refuses("json:[1]", -EINVAL, "Could not parse the JSON options: an object ({...}) was "
            "expected (at byte 5)");
    refuses("json:{\"driver\":\"raw\",}", -EINVAL, "Could not parse the JSON options: a key "
            "(a string) was expected (at byte 21)");
    refuses("json:{\"driver\":\"raw\"} x", -EINVAL, "Could not parse the JSON options: bytes "
            "follow the object (at byte 22)");
    refuses("json:{\"driver\" \"raw\"}", -EINVAL, "Could not parse the JSON options: ':' was "
            "expected after a key (at byte 15)");
    refuses("json:{\"driver\":\"raw", -EINVAL, "Could not parse the JSON options: a string "
            "has no closing quote (at byte 16)");
    refuses("json:{\"a\":\"x\ty\"}", -EINVAL, "Could not parse the JSON options: a control "
            "character in a string (at byte 12)");
    refuses("json:{\"a\":\"\\x\"}", -EINVAL, "Could not parse the JSON options: an unknown "
            "escape in a string (at byte 12)");
    refuses("json:{\"a\":\"\\u12g4\"}", -EINVAL, "Could not parse the JSON options: a \\u "
            "escape has a non-hex digit (at byte 13)");
    refuses("json:{\"a\":\"\\ud800x\"}", -EINVAL, "Could not parse the JSON options: a lone "
            "UTF-16 surrogate (at byte 17)");
    refuses("json:{\"a\":\"\\udc00\"}", -EINVAL, "Could not parse the JSON options: a lone "
            "UTF-16 surrogate (at byte 17)");
    refuses("json:{\"a\":\"\\u0000\"}", -EINVAL, "Could not parse the JSON options: a NUL "
            "character in a string (at byte 17)");
    refuses("json:{\"a\":\"\xc3\x28\"}", -EINVAL, "Could not parse the JSON options: a string "
            "is not valid UTF-8 (at byte 11)");
    refuses("json:{\"a\":\"\xed\xa0\x80\"}", -EINVAL, "Could not parse the JSON options: a "
            "string is not valid UTF-8 (at byte 11)");
    refuses("json:{\"a\":01}", -EINVAL, "Could not parse the JSON options: ',' or '}' was "
            "expected (at byte 11)");
    refuses("json:{\"a\":1.5}", -EINVAL, "Could not parse the JSON options: 'a': only whole "
            "numbers are taken (at byte 13)");
    refuses("json:{\"a\":tru}", -EINVAL, "Could not parse the JSON options: a number was "
            "expected (at byte 10)");
    refuses("json:{\"\":1}", -EINVAL, "Could not parse the JSON options: an empty key (at "
            "byte 8)");
    refuses("json:{\"driver\":\"raw\",\"driver\":\"qcow2\"}", -EINVAL, "Could not parse the "
            "JSON options: the key 'driver' is given twice (at byte 37)");
    refuses("json:{\"file\":{\"driver\":\"file\"},\"file.driver\":\"nbd\"}", -EINVAL,
            "Could not parse the JSON options: the key 'file.driver' is given twice (at byte "
            "50)");
    /* Arrays are read (QEMU's flattened keys KEY.N), and refused where
     * vdisk has no use for them. */
    refuses("json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\",\"pool\":\"p\","
            "\"image\":\"i\",\"server\":[{\"host\":\"h\"}]}}", -ENOTSUP,
            "Block protocol 'rbd' does not support the option 'file.server.0.host'");
    refuses("json:{\"a\":[1,]}", -EINVAL, "Could not parse the JSON options: a number was "
            "expected (at byte 13)");
    refuses("json:{\"a\":[1 2]}", -EINVAL, "Could not parse the JSON options: ',' or ']' was "
            "expected (at byte 13)");
    refuses("json:{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}", -EINVAL,
            "Could not parse the JSON options: objects nest deeper than 8 levels (at byte 45)");
    /* Bounded: keys, and the name's length. */
    char big[2048] = "json:{\"a\":[";
    for (int i = 0; i < JSON_NAME_KEYS + 1; i++)
        strcat(big, i ? ",0" : "0");
    strcat(big, "]}");
    struct json_name n;
    ck_assert_int_eq(json_name_parse(big, &n), -EINVAL);
    ck_assert_ptr_nonnull(strstr(vdisk_get_error(), "more than 256 keys"));
    size_t len = JSON_NAME_MAX + 1;
    char *huge = malloc(len + 1);
    ck_assert_ptr_nonnull(huge);
    memcpy(huge, "json:{", 6);
    memset(huge + 6, ' ', len - 7);
    huge[len - 1] = '}';
    huge[len] = '\0';
    ck_assert_int_eq(json_name_parse(huge, &n), -ENAMETOOLONG);
    huge[len - 2] = '}';
    huge[len - 1] = '\0';
    ck_assert_int_eq(json_name_parse(huge, &n), -EINVAL); /* no driver: short enough */
    free(huge);
}
END_TEST

START_TEST(bad_keys)
{
    refuses("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"a\","
            "\"x-aio\":\"native\"}}", -ENOTSUP,
            "Block protocol 'file' does not support the option 'file.x-aio'");
    refuses("json:{\"driver\":\"qcow2\",\"backing\":\"n0\",\"file.filename\":\"a\"}", -ENOTSUP,
            "'backing' other than null (a reference to another node) is not supported");
    refuses("json:{\"driver\":\"qcow\",\"file.filename\":\"a\"}", -ENOTSUP,
            "Unknown driver 'qcow'");
    refuses("json:{\"driver\":\"raw\",\"file\":{\"driver\":\"gluster\"}}", -ENOTSUP,
            "Unknown protocol 'gluster' (file, host_device, nbd, rbd, null-co, null-aio "
            "and blkdebug are supported)");
    refuses("json:{\"driver\":\"qcow2\",\"filename\":\"a\"}", -EINVAL,
            "A block device must be specified for \"file\"");
    refuses("json:{\"filename\":\"a\"}", -EINVAL, "Must specify either driver or file");
    refuses("json:{\"driver\":\"qcow2\",\"file\":\"node0\"}", -EINVAL, "'file' must be an "
            "object (a reference to another node is not supported)");
    refuses("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\"}}", -EINVAL,
            "'file.filename' is required");
    refuses("json:{\"driver\":\"qcow2\",\"file\":{\"filename\":\"\"}}", -EINVAL,
            "'file.filename' is empty");
    refuses("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":"
            "\"nbd://h/e\"}}", -EINVAL, "'file.filename' (nbd://h/e) is not a file");
    refuses("json:{\"driver\":\"qcow2\",\"file.filename\":true}", -EINVAL,
            "'file.filename' must be a string");
    refuses("json:{\"driver\":\"qcow2\",\"read-only\":\"yes\",\"file.filename\":\"a\"}",
            -EINVAL, "'read-only' must be true or false");
    refuses("json:{\"driver\":\"rbd\",\"image\":\"i\"}", -EINVAL, "'pool' is required");
    refuses("json:{\"driver\":\"rbd\",\"pool\":\"p\",\"image\":\"\"}", -EINVAL,
            "'image' is empty");
    refuses("json:{\"driver\":\"rbd\",\"pool\":\"p\",\"image\":\"i\",\"key-secret\":\"s\"}",
            -ENOTSUP, "Block protocol 'rbd' does not support the option 'key-secret'");
    refuses("json:{\"driver\":\"rbd\",\"filename\":\"rbd:p/i\",\"pool\":\"p\"}", -EINVAL,
            "'filename' and the image's options cannot be given together");
    refuses("json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\"}}", -EINVAL,
            "'server.path' is required");
    refuses("json:{\"driver\":\"nbd\",\"server\":{\"type\":\"vsock\",\"cid\":\"3\"}}", -ENOTSUP,
            "'server.type' vsock is not supported (inet or unix)");
    refuses("json:{\"driver\":\"nbd\",\"server\":{\"host\":\"h\"},\"tls-creds\":\"t\"}",
            -ENOTSUP, "Block protocol 'nbd' does not support the option 'tls-creds'");
    refuses("json:{\"driver\":\"nbd\",\"filename\":\"/tmp/x\"}", -EINVAL,
            "'filename' (/tmp/x) is not an NBD URI (nbd://HOST/EXPORT, "
            "nbd+unix:///EXPORT?socket=PATH)");
}
END_TEST

/* vdisk_create and vdisk_open take json: names as qemu-img does. */
START_TEST(open_and_create)
{
    const char *path = scratch("j.qcow2");
    char name[1024];
    snprintf(name, sizeof name, "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\","
             "\"filename\":\"%s\"}}", path);
    ck_assert_int_eq(vdisk_create(name, "qcow2", 1 << 20, NULL), 0);
    /* -f raw beside a name that says qcow2: refused. */
    ck_assert_int_eq(vdisk_create(name, "raw", 1 << 20, NULL), -EINVAL);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(vdisk_open(&d, name, NULL), 0);
    ck_assert_str_eq(vdisk_get_format(d), "qcow2");
    ck_assert_str_eq(vdisk_get_filename(d), path);
    ck_assert_int_eq(vdisk_is_read_only(d), 0);
    char buf[512];
    memset(buf, 0x5a, sizeof buf);
    ck_assert_int_eq(vdisk_pwrite(d, buf, sizeof buf, 4096), 0);
    vdisk_close(d);
    /* The format option wins over the name's (QEMU's rule for options
     * given beside a json: name). */
    vdisk_options *o = NULL;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "format", "raw"), 0);
    ck_assert_int_eq(vdisk_open(&d, name, o), 0);
    ck_assert_str_eq(vdisk_get_format(d), "raw");
    vdisk_close(d);
    ck_assert_int_eq(vdisk_options_set(o, "format", "qcow2"), 0);
    ck_assert_int_eq(vdisk_open(&d, name, o), 0);
    vdisk_close(d);
    vdisk_options_free(o);
    /* read-only in the name. */
    snprintf(name, sizeof name, "json:{\"driver\":\"qcow2\",\"read-only\":true,"
             "\"file.filename\":\"%s\"}", path);
    ck_assert_int_eq(vdisk_open(&d, name, NULL), 0);
    ck_assert_int_eq(vdisk_is_read_only(d), 1);
    uint8_t back[512];
    ck_assert_int_eq(vdisk_pread(d, back, sizeof back, 4096), 0);
    ck_assert_mem_eq(back, buf, sizeof buf);
    ck_assert_int_lt(vdisk_pwrite(d, buf, sizeof buf, 0), 0);
    vdisk_close(d);
    /* A protocol at the top: the qcow2 file read as raw (not probed). */
    snprintf(name, sizeof name, "json:{\"driver\":\"file\",\"filename\":\"%s\"}", path);
    ck_assert_int_eq(vdisk_open(&d, name, NULL), 0);
    ck_assert_str_eq(vdisk_get_format(d), "raw");
    vdisk_close(d);
    /* A bad name fails the open with its message. */
    ck_assert_int_eq(vdisk_open(&d, "json:{", NULL), -EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_str_eq(vdisk_get_error(), "vdisk_open: json:{: Could not parse the JSON options: "
                     "a key (a string) was expected (at byte 6)");
}
END_TEST

/* An image's backing file name may not be a json: name: refused when
 * creating one, and when opening one that qemu-img made. */
START_TEST(not_as_backing)
{
    const char *base = scratch("b.raw"), *over = scratch("o.qcow2");
    ck_assert_int_eq(vdisk_create(base, "raw", 1 << 20, NULL), 0);
    char name[1024];
    snprintf(name, sizeof name, "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
             "\"filename\":\"%s\"}}", base);
    vdisk_options *o = NULL;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    ck_assert_int_eq(vdisk_options_set(o, "backing_file", name), 0);
    ck_assert_int_eq(vdisk_options_set(o, "backing_fmt", "raw"), 0);
    ck_assert_int_eq(vdisk_create(over, "qcow2", 1 << 20, o), -ENOTSUP);
    vdisk_options_free(o);
    char want[2048];
    snprintf(want, sizeof want, "vdisk_create: the backing file name '%s' is a json: name, "
             "which vdisk does not follow in images; give the plain name (a path, an NBD URI "
             "or an rbd: name)", name);
    ck_assert_str_eq(vdisk_get_error(), want);
    CASE_REQUIRE_PROGRAM("qemu-img");
    RUN_OK("qemu-img create -q -f qcow2 -u -b '%s' -F raw '%s' 1M", name, over);
    vdisk_dev *d = NULL;
    ck_assert_int_eq(vdisk_open(&d, over, NULL), -ENOTSUP);
    snprintf(want, sizeof want, "vdisk_open: %s: the backing file name is a json: name ('%s'), "
             "which vdisk does not follow in images (rebase -u onto the plain name)", over, name);
    ck_assert_str_eq(vdisk_get_error(), want);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json-name");
    TCase *tc = tcase_create("json-name");
    tcase_add_test(tc, files);
    tcase_add_test(tc, rbd);
    tcase_add_test(tc, nbd);
    tcase_add_test(tc, bad_json);
    tcase_add_test(tc, bad_keys);
    tcase_add_test(tc, open_and_create);
    tcase_add_test(tc, not_as_backing);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
