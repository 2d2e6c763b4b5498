/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/errors.c: the per-thread error of vdisk/error.h.
 *
 * Every failing public call returns a negative errno and leaves a message
 * that starts with the call's name; the messages are kept per thread,
 * successful calls (vdisk_close included) leave them alone, and open
 * failures say what was wrong (missing file, unknown option, bad cache mode
 * or engine, a directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "harness.h"

#define MiB (1024 * 1024)

/* Asserts the thread's error: the errno and the exact message. */
#define ck_assert_error(err, msg)                                                  \
    do {                                                                           \
        ck_assert_int_eq(vdisk_get_errno(), (err));                                \
        ck_assert_str_eq(vdisk_get_error(), (msg));                                \
    } while (0)

static vdisk_options *opts_of(const char *list)
{
    vdisk_options *o;
    ck_assert_int_eq(vdisk_options_new(&o), 0);
    if (list)
        ck_assert_msg(vdisk_options_parse(o, list) == 0, "%s", vdisk_get_error());
    return o;
}

/* Creates a raw image of SIZE bytes and opens it with the options LIST. */
static vdisk_dev *new_image(const char *name, uint64_t size, const char *list)
{
    const char *path = scratch(name);
    ck_assert_msg(vdisk_create(path, "raw", size, NULL) == 0, "%s", vdisk_get_error());
    vdisk_options *o = opts_of(list);
    vdisk_dev *dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == 0, "open %s: %s", path, vdisk_get_error());
    return dev;
}

/* ---- Messages of the synchronous calls ---------------------------------- */

START_TEST(read_beyond_end_message)
{
    vdisk_dev *dev = new_image("a.raw", 1 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);
    char buf[4096];
    memset(buf, 0xaa, sizeof buf);

    ck_assert_int_eq(vdisk_pread(dev, buf, 4096, 1ull << 40), -EIO);
    ck_assert_error(EIO, fmt("vdisk_pread: %s: read of 4096 bytes at offset 1099511627776 is "
                             "beyond the end of the device (1048576 bytes)", path));

    /* A request that only reaches past the end fails as a whole, before any
     * I/O: the buffer is left alone. */
    ck_assert_int_eq(vdisk_pread(dev, buf, 4096, MiB - 512), -EIO);
    ck_assert_error(EIO, fmt("vdisk_pread: %s: read of 4096 bytes at offset 1048064 is "
                             "beyond the end of the device (1048576 bytes)", path));
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq((uint8_t)buf[i], 0xaa);

    /* Offset + length overflowing 64 bits is beyond the end too. */
    ck_assert_int_eq(vdisk_pread(dev, buf, 4096, UINT64_MAX - 100), -EIO);
    ck_assert_error(EIO, fmt("vdisk_pread: %s: read of 4096 bytes at offset %" PRIu64
                             " is beyond the end of the device (1048576 bytes)", path,
                             UINT64_MAX - 100));

    struct iovec v[2] = {{buf, 1000}, {buf + 1000, 1000}};
    ck_assert_int_eq(vdisk_preadv(dev, v, 2, MiB - 1999), -EIO);
    ck_assert_error(EIO, fmt("vdisk_preadv: %s: read of 2000 bytes at offset 1046577 is "
                             "beyond the end of the device (1048576 bytes)", path));
    vdisk_close(dev);
}
END_TEST

START_TEST(write_beyond_end_message)
{
    vdisk_dev *dev = new_image("a.raw", 1 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);
    char buf[4096] = {1};

    ck_assert_int_eq(vdisk_pwrite(dev, buf, 4096, MiB), -EIO);
    ck_assert_error(EIO, fmt("vdisk_pwrite: %s: write of 4096 bytes at offset 1048576 is "
                                "beyond the end of the device (1048576 bytes)", path));
    struct iovec v = {buf, 4096};
    ck_assert_int_eq(vdisk_pwritev(dev, &v, 1, MiB - 1), -EIO);
    ck_assert_error(EIO, fmt("vdisk_pwritev: %s: write of 4096 bytes at offset 1048575 is "
                                "beyond the end of the device (1048576 bytes)", path));
    ck_assert_int_eq(vdisk_discard(dev, MiB - 4096, 8192), -EIO);
    ck_assert_error(EIO, fmt("vdisk_discard: %s: discard of 8192 bytes at offset 1044480 is "
                                "beyond the end of the device (1048576 bytes)", path));
    ck_assert_int_eq(vdisk_write_zeroes(dev, 2 * MiB, 512, VDISK_ZEROES_MAY_UNMAP), -EIO);
    ck_assert_error(EIO, fmt("vdisk_write_zeroes: %s: write_zeroes of 512 bytes at offset "
                                "2097152 is beyond the end of the device (1048576 bytes)",
                                path));
    /* Nothing reached the file. */
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, MiB);
    vdisk_close(dev);
}
END_TEST

START_TEST(other_calls_messages)
{
    vdisk_dev *dev = new_image("a.raw", 1 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);
    char buf[16];
    struct vdisk_extent ext;

    ck_assert_int_eq(vdisk_preadv(dev, NULL, -1, 0), -EINVAL);
    ck_assert_error(EINVAL, "vdisk_preadv: invalid iovec (count -1)");
    ck_assert_int_eq(vdisk_pwritev(dev, NULL, 3, 0), -EINVAL);
    ck_assert_error(EINVAL, "vdisk_pwritev: invalid iovec (count 3)");

    ck_assert_int_eq(vdisk_block_status(dev, MiB, 512, &ext), -EINVAL);
    ck_assert_error(EINVAL, fmt("vdisk_block_status: %s: block status at offset 1048576 is "
                                "beyond the end of the device (1048576 bytes)", path));
    ck_assert_int_eq(vdisk_block_status(dev, 0, 0, &ext), -EINVAL);
    ck_assert_error(EINVAL, fmt("vdisk_block_status: %s: block status of an empty range", path));

    vdisk_dev *range;
    ck_assert_int_eq(vdisk_open_range(&range, dev, MiB - 100, 200, 0), -EINVAL);
    ck_assert_ptr_null(range);
    ck_assert_error(EINVAL, fmt("vdisk_open_range: %s: the range of 200 bytes at offset 1048476 "
                                "does not fit in the device (1048576 bytes)", path));

    vdisk_queue *q;
    ck_assert_int_eq(vdisk_queue_new(&q, dev, 5000), -EINVAL);
    ck_assert_ptr_null(q);
    ck_assert_error(EINVAL, "vdisk_queue_new: queue depth 5000 is out of range (1 to 4096)");

    ck_assert_int_eq(vdisk_create(scratch("b.raw"), "qcow9", MiB, NULL), -ENOTSUP);
    ck_assert_error(ENOTSUP, "vdisk_create: cannot create images of format 'qcow9'");
    ck_assert_int_eq(vdisk_create("", "raw", MiB, NULL), -EINVAL);
    ck_assert_error(EINVAL, "vdisk_create: no file name given");

    vdisk_options *o = opts_of("preallocation=sparse");
    ck_assert_int_eq(vdisk_create(scratch("b.raw"), "raw", MiB, o), -EINVAL);
    ck_assert_error(EINVAL, "vdisk_create: invalid preallocation mode 'sparse' for raw "
                            "(expected off, falloc or full)");
    vdisk_options_free(o);
    o = opts_of("cluster_size=65536");
    ck_assert_int_eq(vdisk_create(scratch("b.raw"), "raw", MiB, o), -EINVAL);
    ck_assert_error(EINVAL, "vdisk_create: raw does not support the option 'cluster_size'");
    vdisk_options_free(o);

    /* A successful call in between changes nothing. */
    ck_assert_int_eq(vdisk_pread(dev, buf, sizeof buf, 0), 0);
    ck_assert_error(EINVAL, "vdisk_create: raw does not support the option 'cluster_size'");
    vdisk_close(dev);
}
END_TEST

/* ---- Successful calls leave the error alone ----------------------------- */

START_TEST(successful_calls_keep_error)
{
    vdisk_dev *dev = new_image("a.raw", 64 * 1024, NULL);
    const char *path = vdisk_get_filename(dev);
    char buf[512] = {0};
    ck_assert_int_eq(vdisk_pread(dev, buf, 512, 64 * 1024), -EIO);
    char *want = strdup(fmt("vdisk_pread: %s: read of 512 bytes at offset 65536 is beyond "
                            "the end of the device (65536 bytes)", path));
    ck_assert_error(EIO, want);

    ck_assert_int_eq(vdisk_pwrite(dev, buf, 512, 0), 0);
    ck_assert_int_eq(vdisk_pread(dev, buf, 512, 0), 0);
    ck_assert_int_eq(vdisk_flush(dev), 0);
    ck_assert_error(EIO, want);

    /* vdisk_close(NULL) is a no-op, for the error too. */
    vdisk_close(NULL);
    ck_assert_error(EIO, want);

    /* Closing a device (which flushes it) is a successful call as well: the
     * message still names the call that failed. */
    vdisk_close(dev);
    ck_assert_error(EIO, want);
    free(want);
}
END_TEST

START_TEST(close_null_is_noop)
{
    vdisk_close(NULL);
    vdisk_queue_free(NULL);
    vdisk_options_free(NULL);
    ck_assert_ptr_nonnull(vdisk_get_error());
}
END_TEST

/* ---- Per-thread errors -------------------------------------------------- */

struct thread_arg {
    vdisk_dev *dev;
    uint64_t offset;       /* where this thread fails to read */
    pthread_barrier_t *barrier;
    char initial[256];
    int initial_errno;
    char msg[1024];
    int err;
    int ret;
};

static void *reader_thread(void *p)
{
    struct thread_arg *a = p;
    snprintf(a->initial, sizeof a->initial, "%s", vdisk_get_error());
    a->initial_errno = vdisk_get_errno();
    char buf[4096];
    a->ret = vdisk_pread(a->dev, buf, sizeof buf, a->offset);
    /* Both threads have failed before either looks at its message. */
    pthread_barrier_wait(a->barrier);
    snprintf(a->msg, sizeof a->msg, "%s", vdisk_get_error());
    a->err = vdisk_get_errno();
    pthread_barrier_wait(a->barrier);
    return NULL;
}

START_TEST(errors_are_per_thread)
{
    vdisk_dev *dev = new_image("a.raw", 1 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);

    /* The main thread's own error. */
    vdisk_dev *none;
    ck_assert_int_eq(vdisk_open(&none, scratch("missing.raw"), NULL), -ENOENT);
    char *main_msg = strdup(vdisk_get_error());

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    struct thread_arg a[2] = {
        {.dev = dev, .offset = 2 * MiB, .barrier = &barrier},
        {.dev = dev, .offset = 3 * MiB, .barrier = &barrier},
    };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, reader_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&barrier);

    for (int i = 0; i < 2; i++) {
        /* A new thread starts without an error. */
        ck_assert_str_eq(a[i].initial, "");
        ck_assert_int_eq(a[i].initial_errno, 0);
        ck_assert_int_eq(a[i].ret, -EIO);
        ck_assert_int_eq(a[i].err, EIO);
        ck_assert_str_eq(a[i].msg, fmt("vdisk_pread: %s: read of 4096 bytes at offset %" PRIu64
                                       " is beyond the end of the device (1048576 bytes)",
                                       path, a[i].offset));
    }
    /* ...and the main thread still has its own. */
    ck_assert_error(ENOENT, main_msg);
    free(main_msg);
    vdisk_close(dev);
}
END_TEST

/* ---- vdisk_open failures ------------------------------------------------ */

START_TEST(open_missing_file)
{
    const char *path = scratch("does-not-exist.raw");
    vdisk_dev *dev = (vdisk_dev *)&dev;
    ck_assert_int_eq(vdisk_open(&dev, path, NULL), -ENOENT);
    ck_assert_ptr_null(dev);
    ck_assert_error(ENOENT,
                    fmt("vdisk_open: Could not open '%s': No such file or directory", path));

    dev = (vdisk_dev *)&dev;
    ck_assert_int_eq(vdisk_open(&dev, "", NULL), -EINVAL);
    ck_assert_ptr_null(dev);
    ck_assert_error(EINVAL, "vdisk_open: no file name given");
}
END_TEST

/* Opens PATH with the options LIST, expecting failure ERR; returns the
 * message. */
static const char *open_fails(const char *path, const char *list, int err)
{
    vdisk_options *o = opts_of(list);
    vdisk_dev *dev = (vdisk_dev *)&dev;
    int r = vdisk_open(&dev, path, o);
    vdisk_options_free(o);
    ck_assert_msg(r == -err, "open %s with %s: expected %d, got %d (%s)", path, list, -err, r,
                  vdisk_get_error());
    ck_assert_ptr_null(dev);
    ck_assert_int_eq(vdisk_get_errno(), err);
    return vdisk_get_error();
}

START_TEST(open_bad_options)
{
    const char *path = scratch("a.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", MiB, NULL), 0);

    ck_assert_str_eq(open_fails(path, "bogus=1", EINVAL),
                     "vdisk_open: raw does not support the option 'bogus'");
    ck_assert_str_eq(open_fails(path, "format=raw,preallocation=full", EINVAL),
                     "vdisk_open: raw does not support the option 'preallocation'");
    ck_assert_str_eq(open_fails(path, "cache=fast", EINVAL),
                     "vdisk_open: invalid cache mode 'fast' (expected writeback, none, "
                     "writethrough, directsync or unsafe)");
    ck_assert_str_eq(open_fails(path, "engine=turbo", EINVAL),
                     "vdisk_open: option 'engine': unknown engine 'turbo' (expected auto, "
                     "uring or threads)");
    ck_assert_str_eq(open_fails(path, "read-only=maybe", EINVAL),
                     "vdisk_open: option 'read-only' expects 'on' or 'off', not 'maybe'");
    ck_assert_str_eq(open_fails(path, "threads=0", EINVAL),
                     "vdisk_open: option 'threads' expects a number from 1 to 256, not '0'");
    ck_assert_str_eq(open_fails(path, "threads=257", EINVAL),
                     "vdisk_open: option 'threads' expects a number from 1 to 256, not '257'");
    ck_assert_str_eq(open_fails(path, "threads=-1", EINVAL),
                     "vdisk_open: option 'threads' expects a number from 1 to 256, not '-1'");
    ck_assert_str_eq(open_fails(path, "format=vmdk9", ENOTSUP),
                     "vdisk_open: unknown format 'vmdk9'");
}
END_TEST

START_TEST(open_bad_engine_from_environment)
{
    const char *path = scratch("a.raw");
    ck_assert_int_eq(vdisk_create(path, "raw", MiB, NULL), 0);
    char *saved = getenv("VDISK_ENGINE") ? strdup(getenv("VDISK_ENGINE")) : NULL;
    setenv("VDISK_ENGINE", "warp", 1);
    vdisk_options *o = opts_of(NULL);
    vdisk_dev *dev;
    int r1 = vdisk_open(&dev, path, o);
    char *msg = strdup(vdisk_get_error());
    /* The option wins over the environment. */
    vdisk_options *t = opts_of("engine=threads");
    vdisk_dev *dev2;
    int r2 = vdisk_open(&dev2, path, t);
    if (saved) {
        setenv("VDISK_ENGINE", saved, 1);
        free(saved);
    } else {
        unsetenv("VDISK_ENGINE");
    }
    vdisk_options_free(o);
    vdisk_options_free(t);
    ck_assert_int_eq(r1, -EINVAL);
    ck_assert_str_eq(msg, "vdisk_open: VDISK_ENGINE: unknown engine 'warp' (expected auto, "
                          "uring or threads)");
    free(msg);
    ck_assert_msg(r2 == 0, "%s", vdisk_get_error());
    ck_assert_str_eq(vdisk_get_engine(dev2), "threads");
    vdisk_close(dev2);
}
END_TEST

START_TEST(open_directory)
{
    const char *dir = scratch("dir.raw");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    /* Read-write: open(2) itself refuses. */
    const char *m = open_fails(dir, NULL, EISDIR);
    ck_assert_str_eq(m, fmt("vdisk_open: Could not open '%s': Is a directory", dir));
    /* Read-only: the directory opens, and the raw driver refuses it. */
    m = open_fails(dir, "read-only=on", EISDIR);
    ck_assert_str_eq(m, fmt("vdisk_open: %s: is a directory, not an image", dir));
}
END_TEST

/* ---- I/O errors --------------------------------------------------------- */

/* Writes beyond LIMIT bytes fail with EFBIG (SIGXFSZ ignored). */
static struct rlimit saved_fsize;

static void limit_file_size(rlim_t limit)
{
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {limit, saved_fsize.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void unlimit_file_size(void)
{
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
}

START_TEST(io_error_message)
{
    vdisk_dev *dev = new_image("a.raw", 4 * MiB, NULL);
    const char *path = vdisk_get_filename(dev);
    /* Make the file short, so that writes past 2 MiB extend it. */
    ck_assert_int_eq(truncate(path, 2 * MiB), 0);
    static char buf[8192];
    memset(buf, 0x5a, sizeof buf);

    limit_file_size(2 * MiB);
    int r1 = vdisk_pwrite(dev, buf, 4096, 2 * MiB);
    char *m1 = strdup(vdisk_get_error());
    int e1 = vdisk_get_errno();
    /* Half of it fits: the message is about the part that failed. */
    int r2 = vdisk_pwrite(dev, buf, 8192, 2 * MiB - 4096);
    char *m2 = strdup(vdisk_get_error());
    unlimit_file_size();

    ck_assert_int_eq(r1, -EFBIG);
    ck_assert_int_eq(e1, EFBIG);
    ck_assert_str_eq(m1, fmt("vdisk_pwrite: %s: write of 4096 bytes at offset 2097152 failed: "
                             "File too large", path));
    ck_assert_int_eq(r2, -EFBIG);
    ck_assert_str_eq(m2, fmt("vdisk_pwrite: %s: write of 4096 bytes at offset 2097152 failed: "
                             "File too large", path));
    free(m1);
    free(m2);
    vdisk_close(dev);
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("messages");
    tcase_add_test(tc, read_beyond_end_message);
    tcase_add_test(tc, write_beyond_end_message);
    tcase_add_test(tc, other_calls_messages);
    tcase_add_test(tc, io_error_message);
    suite_add_tcase(s, tc);
    tc = tcase_create("per-thread");
    tcase_add_test(tc, successful_calls_keep_error);
    tcase_add_test(tc, close_null_is_noop);
    tcase_add_test(tc, errors_are_per_thread);
    suite_add_tcase(s, tc);
    tc = tcase_create("open");
    tcase_add_test(tc, open_missing_file);
    tcase_add_test(tc, open_bad_options);
    tcase_add_test(tc, open_bad_engine_from_environment);
    tcase_add_test(tc, open_directory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(errors_suite());
}
